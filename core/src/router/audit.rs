//! The append-only audit log: one JSON object per line, never any prompt or answer text.
//!
//! Events (field `event`):
//! - `route`: one per answered request: time, decision target, who served it, reasons,
//!   sensitive categories, token counts, estimated cloud cost (and the cost avoided when served
//!   locally), cloud fallback kind and attempts, offline-queue id.
//! - `egress`: one per request body handed to a transport by
//!   [`super::cloud::prepare_request`]: host, port, path, body size and SHA-256 (never the body).
//! - `egress_denied`: a body refused because it contained personal data (categories only).
//! - `queue`: offline-queue activity (`enqueued`, `answered`, `rejected`) with the queue id.
//!
//! Each line is written with a single `write` on a file opened in append mode and synced
//! (`fsync`) before [`AuditLog::record`] returns. The log is never rewritten or rotated by the
//! library; [`AuditStats`] summarises it (`edgewise router stats`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use super::cloud::{Endpoint, FailureKind};
use super::policy::{Reason, Target};
use super::{now_ms, RoutedAnswer};
use crate::{Error, Result};

/// A `route` event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteRecord {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// What the policy decided.
    pub target: Target,
    /// Who produced the answer (`local` after a cloud fallback).
    pub served_by: Target,
    /// Reasons of the decision.
    pub reasons: Vec<Reason>,
    /// Sensitive categories found (snake_case names).
    pub categories: Vec<String>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Answer tokens.
    pub completion_tokens: usize,
    /// Estimated price of this request at the cloud endpoint, in USD.
    pub est_cloud_cost_usd: f64,
    /// The same estimate when the request was served locally (0 when the cloud served it).
    pub cost_avoided_usd: f64,
    /// Kind of cloud failure, when the cloud was chosen and the local model answered instead.
    pub fallback: Option<FailureKind>,
    /// HTTP status of the failed cloud call, if any.
    pub http_status: Option<u16>,
    /// Cloud attempts made (0 when the cloud was not tried).
    pub attempts: u32,
    /// Offline-queue id, when the request was queued for a later cloud answer.
    pub queued: Option<u64>,
}

/// An `egress` or `egress_denied` event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EgressRecord {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Request path.
    pub path: String,
    /// Body size in bytes (0 when denied).
    pub body_bytes: usize,
    /// Hex SHA-256 of the body (empty when denied).
    pub body_sha256: String,
    /// Whether an SSE stream was requested.
    pub stream: bool,
    /// Categories that caused a denial (empty for `egress`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// A `queue` event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueRecord {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// `enqueued`, `answered` or `rejected`.
    pub op: &'static str,
    /// Queue id.
    pub id: u64,
}

/// One audit-log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A routing decision and its outcome.
    Route(RouteRecord),
    /// A request body prepared for sending.
    Egress(EgressRecord),
    /// A request body refused because it contained personal data.
    EgressDenied(EgressRecord),
    /// Offline-queue activity.
    Queue(QueueRecord),
}

impl AuditEvent {
    /// The `route` event for `answer`; `est_cost_usd` is the cloud price estimate.
    pub fn route(answer: &RoutedAnswer, attempts: u32, est_cost_usd: f64) -> Self {
        let local = answer.served_by == Target::Local;
        AuditEvent::Route(RouteRecord {
            ts_ms: now_ms(),
            target: answer.decision.target,
            served_by: answer.served_by,
            reasons: answer.decision.reasons.clone(),
            categories: answer.decision.categories.iter().map(|c| c.as_str().to_string()).collect(),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            est_cloud_cost_usd: est_cost_usd,
            cost_avoided_usd: if local { est_cost_usd } else { 0.0 },
            fallback: answer.fallback.as_ref().map(|f| f.kind),
            http_status: answer.fallback.as_ref().and_then(|f| f.http_status),
            attempts,
            queued: answer.queued,
        })
    }

    pub(crate) fn egress(ep: &Endpoint, path: &str, body_bytes: usize, sha: &str, stream: bool) -> Self {
        AuditEvent::Egress(EgressRecord {
            ts_ms: now_ms(),
            host: ep.host.clone(),
            port: ep.port,
            path: format!("{}{}", ep.path, path),
            body_bytes,
            body_sha256: sha.to_string(),
            stream,
            categories: Vec::new(),
        })
    }

    pub(crate) fn egress_denied(ep: &Endpoint, categories: Vec<String>) -> Self {
        AuditEvent::EgressDenied(EgressRecord {
            ts_ms: now_ms(),
            host: ep.host.clone(),
            port: ep.port,
            path: ep.path.clone(),
            body_bytes: 0,
            body_sha256: String::new(),
            stream: false,
            categories,
        })
    }

    pub(crate) fn queued(id: u64) -> Self {
        AuditEvent::Queue(QueueRecord { ts_ms: now_ms(), op: "enqueued", id })
    }

    pub(crate) fn queue_op(op: &'static str, id: u64) -> Self {
        AuditEvent::Queue(QueueRecord { ts_ms: now_ms(), op, id })
    }
}

/// The audit log file. `Send + Sync`; lines from concurrent callers never interleave.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the log at `path` for appending. The log
    /// is the owner's alone: on Unix a directory it creates is 0700 and the file 0600, and a
    /// symbolic link at `path` is refused ([`Error::Storage`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = super::open_private(&path, OpenOptions::new().create(true).append(true))?;
        Ok(Self { path, file: Mutex::new(file) })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line and syncs it to disk.
    pub fn record(&self, event: &AuditEvent) -> Result<()> {
        let mut line =
            serde_json::to_vec(event).map_err(|e| Error::Storage { reason: format!("audit serialization: {e}") })?;
        line.push(b'\n');
        let mut f = self.file.lock().map_err(|_| Error::Storage { reason: "audit log lock poisoned".into() })?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }
}

/// The default audit-log location: `$EDGEWISE_HOME/router/audit.jsonl`, with `EDGEWISE_HOME`
/// defaulting to `~/.cache/edgewise`.
pub fn default_log_path() -> Option<PathBuf> {
    let home = match std::env::var_os("EDGEWISE_HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".cache").join("edgewise"),
    };
    Some(home.join("router").join("audit.jsonl"))
}

/// A summary of an audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuditStats {
    /// `route` events.
    pub decisions: u64,
    /// Decisions by target (`local`, `cloud`).
    pub by_target: BTreeMap<String, u64>,
    /// Answers by who served them.
    pub by_served_by: BTreeMap<String, u64>,
    /// Decisions per reason (a decision can have several).
    pub by_reason: BTreeMap<String, u64>,
    /// Decisions per sensitive category.
    pub by_category: BTreeMap<String, u64>,
    /// Cloud fallbacks per failure kind.
    pub fallbacks: BTreeMap<String, u64>,
    /// Requests queued for a later cloud answer.
    pub queued: u64,
    /// Prompt tokens served locally.
    pub local_prompt_tokens: u64,
    /// Answer tokens served locally.
    pub local_completion_tokens: u64,
    /// Prompt tokens served by the cloud.
    pub cloud_prompt_tokens: u64,
    /// Answer tokens served by the cloud.
    pub cloud_completion_tokens: u64,
    /// Estimated cloud cost avoided by answering locally, in USD.
    pub cost_avoided_usd: f64,
    /// Estimated cloud spend, in USD.
    pub cloud_cost_usd: f64,
    /// Request bodies prepared for the cloud.
    pub egress_requests: u64,
    /// Their total size in bytes.
    pub egress_bytes: u64,
    /// Bodies refused at the egress point.
    pub egress_denied: u64,
    /// Offline-queue events by operation.
    pub queue_events: BTreeMap<String, u64>,
    /// Lines that were not valid events (e.g. a torn last line).
    pub malformed_lines: u64,
    /// Earliest event time (ms since the epoch).
    pub first_ts_ms: Option<u64>,
    /// Latest event time (ms since the epoch).
    pub last_ts_ms: Option<u64>,
}

impl AuditStats {
    /// Summarises the log at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let f = File::open(path.as_ref())?;
        Self::from_reader(BufReader::new(f))
    }

    /// Summarises JSON lines from `r`. Unknown or malformed lines are counted, not fatal.
    pub fn from_reader(r: impl BufRead) -> Result<Self> {
        let mut s = AuditStats::default();
        for line in r.split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(&line) {
                Ok(v) if s.add(&v) => {}
                _ => s.malformed_lines += 1,
            }
        }
        Ok(s)
    }

    fn add(&mut self, v: &Value) -> bool {
        let Some(event) = v.get("event").and_then(Value::as_str) else { return false };
        if let Some(ts) = v.get("ts_ms").and_then(Value::as_u64) {
            self.first_ts_ms = Some(self.first_ts_ms.map_or(ts, |t| t.min(ts)));
            self.last_ts_ms = Some(self.last_ts_ms.map_or(ts, |t| t.max(ts)));
        }
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let f = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite()).unwrap_or(0.0);
        let strs = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        match event {
            "route" => {
                let (Some(target), Some(served)) =
                    (v.get("target").and_then(Value::as_str), v.get("served_by").and_then(Value::as_str))
                else {
                    return false;
                };
                self.decisions += 1;
                *self.by_target.entry(target.to_string()).or_default() += 1;
                *self.by_served_by.entry(served.to_string()).or_default() += 1;
                for r in strs("reasons") {
                    *self.by_reason.entry(r).or_default() += 1;
                }
                for c in strs("categories") {
                    *self.by_category.entry(c).or_default() += 1;
                }
                if let Some(fb) = v.get("fallback").and_then(Value::as_str) {
                    *self.fallbacks.entry(fb.to_string()).or_default() += 1;
                }
                if v.get("queued").is_some_and(|q| !q.is_null()) {
                    self.queued += 1;
                }
                if served == "cloud" {
                    self.cloud_prompt_tokens += u("prompt_tokens");
                    self.cloud_completion_tokens += u("completion_tokens");
                    self.cloud_cost_usd += f("est_cloud_cost_usd");
                } else {
                    self.local_prompt_tokens += u("prompt_tokens");
                    self.local_completion_tokens += u("completion_tokens");
                    self.cost_avoided_usd += f("cost_avoided_usd");
                }
            }
            "egress" => {
                self.egress_requests += 1;
                self.egress_bytes += u("body_bytes");
            }
            "egress_denied" => self.egress_denied += 1,
            "queue" => {
                let Some(op) = v.get("op").and_then(Value::as_str) else { return false };
                *self.queue_events.entry(op.to_string()).or_default() += 1;
            }
            _ => return false,
        }
        true
    }

    /// A human-readable report.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let map = |o: &mut String, title: &str, m: &BTreeMap<String, u64>| {
            let _ = writeln!(o, "{title}:");
            if m.is_empty() {
                let _ = writeln!(o, "  (none)");
            }
            let mut items: Vec<_> = m.iter().collect();
            items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, n) in items {
                let _ = writeln!(o, "  {k:<24} {n:>8}");
            }
        };
        let _ = writeln!(o, "decisions: {}", self.decisions);
        map(&mut o, "by target", &self.by_target);
        map(&mut o, "served by", &self.by_served_by);
        map(&mut o, "reasons", &self.by_reason);
        map(&mut o, "sensitive categories", &self.by_category);
        map(&mut o, "cloud fallbacks", &self.fallbacks);
        let _ = writeln!(o, "queued for later: {}", self.queued);
        let _ = writeln!(
            o,
            "tokens (prompt/answer): local {}/{}, cloud {}/{}",
            self.local_prompt_tokens,
            self.local_completion_tokens,
            self.cloud_prompt_tokens,
            self.cloud_completion_tokens
        );
        let _ = writeln!(o, "estimated cloud cost avoided: ${:.6}", self.cost_avoided_usd);
        let _ = writeln!(o, "estimated cloud spend: ${:.6}", self.cloud_cost_usd);
        let _ = writeln!(
            o,
            "egress: {} request bodies, {} bytes; {} refused",
            self.egress_requests, self.egress_bytes, self.egress_denied
        );
        if !self.queue_events.is_empty() {
            map(&mut o, "queue events", &self.queue_events);
        }
        if self.malformed_lines > 0 {
            let _ = writeln!(o, "malformed lines skipped: {}", self.malformed_lines);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_events_and_skip_garbage() {
        // Hand-written lines in the documented format (not produced by our writer).
        let log = concat!(
            r#"{"event":"route","ts_ms":1000,"target":"cloud","served_by":"cloud","reasons":["app_requested"],"categories":[],"prompt_tokens":10,"completion_tokens":5,"est_cloud_cost_usd":0.5,"cost_avoided_usd":0.0,"fallback":null,"http_status":null,"attempts":1,"queued":null}"#,
            "\n",
            r#"{"event":"route","ts_ms":2000,"target":"cloud","served_by":"local","reasons":["app_requested"],"categories":[],"prompt_tokens":7,"completion_tokens":3,"est_cloud_cost_usd":0.25,"cost_avoided_usd":0.25,"fallback":"timeout","http_status":null,"attempts":3,"queued":4}"#,
            "\n",
            r#"{"event":"route","ts_ms":1500,"target":"local","served_by":"local","reasons":["no_escalation_reason","sensitive"],"categories":["email","phone"],"prompt_tokens":1,"completion_tokens":2,"est_cloud_cost_usd":0.125,"cost_avoided_usd":0.125,"fallback":null,"http_status":null,"attempts":0,"queued":null}"#,
            "\n",
            r#"{"event":"egress","ts_ms":1000,"host":"h","port":443,"path":"/v1/chat/completions","body_bytes":120,"body_sha256":"ab","stream":true}"#,
            "\n",
            r#"{"event":"egress_denied","ts_ms":1000,"host":"h","port":443,"path":"/v1","body_bytes":0,"body_sha256":"","stream":false,"categories":["email"]}"#,
            "\n",
            r#"{"event":"queue","ts_ms":1000,"op":"enqueued","id":4}"#,
            "\n",
            "\n",
            r#"{"event":"route","ts_ms":3000,"target":"lo"#,
        );
        let s = AuditStats::from_reader(log.as_bytes()).unwrap_or_default();
        assert_eq!(s.decisions, 3);
        assert_eq!(s.by_target.get("cloud"), Some(&2));
        assert_eq!(s.by_served_by.get("local"), Some(&2));
        assert_eq!(s.by_reason.get("app_requested"), Some(&2));
        assert_eq!(s.by_category.get("phone"), Some(&1));
        assert_eq!(s.fallbacks.get("timeout"), Some(&1));
        assert_eq!(s.queued, 1);
        assert_eq!((s.local_prompt_tokens, s.local_completion_tokens, s.cloud_prompt_tokens), (8, 5, 10));
        assert!((s.cost_avoided_usd - 0.375).abs() < 1e-12);
        assert!((s.cloud_cost_usd - 0.5).abs() < 1e-12);
        assert_eq!((s.egress_requests, s.egress_bytes, s.egress_denied), (1, 120, 1));
        assert_eq!(s.malformed_lines, 1);
        assert_eq!((s.first_ts_ms, s.last_ts_ms), (Some(1000), Some(2000)));
        assert!(s.render_text().contains("decisions: 3"));
    }

    /// The log and the directory it creates are the owner's alone, a wider existing log is
    /// narrowed, and a symbolic link at its path is a typed error that writes nothing.
    #[cfg(unix)]
    #[test]
    fn log_is_private_and_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        let root = std::env::temp_dir().join(format!("edgewise-audit-perm-{}-{}", std::process::id(), now_ms()));
        let dir = root.join("router");
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(&AuditEvent::queued(1)).unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        drop(log);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(AuditLog::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600, "an existing world-readable log is narrowed");
        // A link planted at the log's path, pointing at a file the attacker wants written.
        let target = root.join("elsewhere.txt");
        std::fs::write(&target, b"").unwrap();
        let link = dir.join("linked.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        match AuditLog::open(&link) {
            Err(Error::Storage { reason }) => assert!(reason.contains("symbolic link"), "{reason}"),
            other => panic!("expected Storage, got {other:?}"),
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        let _ = std::fs::remove_dir_all(&root);
    }
}
