//! The offline queue: requests that the policy wanted to send to the cloud while the network was
//! down, kept on disk until [`OfflineQueue::drain`] gets them a cloud answer.
//!
//! # Life of an entry
//!
//! `enqueue` → *pending* → `drain` sends it → *answered* (the answer is stored in the queue) →
//! the app reads [`OfflineQueue::answers`] and calls [`OfflineQueue::ack`] → gone.
//!
//! # Crash safety
//!
//! The queue is a write-ahead log: every change is one appended record, and a call returns only
//! after the record is written and `fsync`ed. A record is framed as
//! `magic "EWQ1" | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload (JSON)`.
//! On open the log is replayed; the first record that is incomplete or fails its checksum marks
//! a torn tail (a write cut short by a crash or power loss): it and everything after it are
//! ignored and truncated away, with a warning giving the offset and size. A failed append is
//! rolled back by truncating to the previous length, so a later append never follows garbage.
//!
//! Every entry has an id, never reused (compaction keeps the next id). Replay applies each
//! record by id, so a request is answered at most once in the queue and an acknowledged entry
//! never comes back. Sending is at-least-once: a crash after the cloud answered but before the
//! `answer` record was synced sends that request again on the next drain.
//!
//! # Bounds
//!
//! [`QueueConfig::max_entries`] and [`QueueConfig::max_bytes`] bound live entries (pending and
//! answered-but-not-acknowledged). When full, [`Overflow::Reject`] (the default) fails the new
//! `enqueue` with [`Error::Storage`] (the user still has the local answer); [`Overflow::DropOldest`]
//! drops the oldest entries (recorded as `drop` records) to make room. The log is compacted
//! (rewritten to a temporary file, synced, renamed) when dead records dominate it.
//!
//! Nothing sensitive is ever queued: `enqueue` re-scans the whole request and refuses with
//! [`Error::PolicyDenied`].
//!
//! # Files
//!
//! One process at a time may open a queue: `open` takes an exclusive lock on `<path>.lock`
//! (released when the queue is dropped, or the process dies) and fails with [`Error::Storage`]
//! while another holds it. The log holds request text and cloud answers, so it is the owner's
//! alone: on Unix 0600 (a directory it creates 0700), and a symbolic link at its path is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::audit::{AuditEvent, AuditLog};
use super::cloud::{CloudClient, FailureKind, Transport};
use super::{now_ms, ChatRequest};
use crate::{Error, Result};

const MAGIC: [u8; 4] = *b"EWQ1";
const HEADER: usize = 12;
/// Largest record accepted on replay; anything larger is treated as corruption.
const MAX_RECORD: usize = 256 * 1024 * 1024;
/// Compaction starts once the log is at least this big and mostly dead records.
const COMPACT_MIN_BYTES: u64 = 1024 * 1024;

/// What to do when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Refuse the new request (default).
    #[default]
    Reject,
    /// Drop the oldest entries to make room.
    DropOldest,
}

/// Offline-queue bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Most live entries.
    pub max_entries: usize,
    /// Most bytes of live entries (request JSON plus stored answers).
    pub max_bytes: u64,
    /// Policy when full.
    pub overflow: Overflow,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_entries: 500, max_bytes: 8 * 1024 * 1024, overflow: Overflow::Reject }
    }
}

/// A request waiting for the cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedRequest {
    /// Queue id.
    pub id: u64,
    /// When it was queued (ms since the epoch).
    pub enqueued_ms: u64,
    /// The request (its `Debug` shows no text).
    pub request: ChatRequest,
}

/// A cloud answer to a queued request, waiting for the app to [`OfflineQueue::ack`] it.
#[derive(Clone, PartialEq)]
pub struct QueuedAnswer {
    /// Queue id.
    pub id: u64,
    /// When the request was queued (ms since the epoch).
    pub enqueued_ms: u64,
    /// When the answer arrived (ms since the epoch).
    pub answered_ms: u64,
    /// The request.
    pub request: ChatRequest,
    /// The cloud's answer.
    pub text: String,
}

impl fmt::Debug for QueuedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedAnswer")
            .field("id", &self.id)
            .field("enqueued_ms", &self.enqueued_ms)
            .field("answered_ms", &self.answered_ms)
            .field("request", &self.request)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// What a drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Ids answered by the cloud in this drain.
    pub answered: Vec<u64>,
    /// Ids the cloud (or the egress check) refused for good; removed from the queue.
    pub rejected: Vec<u64>,
    /// Set when draining stopped early because the cloud failed (the entry stays pending).
    pub stopped: Option<FailureKind>,
    /// True when draining stopped because the caller's gate (budgets) said no.
    pub gated: bool,
    /// True when another drain was already running (nothing was done).
    pub busy: bool,
    /// Entries still pending afterwards.
    pub remaining: usize,
}

/// One WAL record.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum WalOp {
    /// First record of a compacted log: ids below `next_id` were used before.
    Meta {
        next_id: u64,
    },
    Enqueue {
        id: u64,
        ts_ms: u64,
        request: ChatRequest,
    },
    Answer {
        id: u64,
        ts_ms: u64,
        text: String,
    },
    Ack {
        id: u64,
    },
    Drop {
        id: u64,
        reason: String,
    },
}

struct Entry {
    enqueued_ms: u64,
    request: ChatRequest,
    bytes: u64,
    answer: Option<(u64, String)>,
}

struct State {
    file: File,
    len: u64,
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    live_bytes: u64,
    draining: bool,
}

/// The crash-safe offline queue (see the module docs). `Send + Sync`.
pub struct OfflineQueue {
    path: PathBuf,
    config: QueueConfig,
    state: Mutex<State>,
    /// The inter-process lock on `<path>.lock`, released when the queue is dropped.
    _lock: File,
}

impl fmt::Debug for OfflineQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfflineQueue").field("path", &self.path).field("config", &self.config).finish_non_exhaustive()
    }
}

fn storage(reason: impl Into<String>) -> Error {
    Error::Storage { reason: reason.into() }
}

fn frame(op: &WalOp) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(op).map_err(|e| storage(format!("queue record serialization: {e}")))?;
    let len = u32::try_from(payload.len()).map_err(|_| storage("queue record too large"))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Splits `data` into records (each with its payload size); returns them and the length of the
/// valid prefix. Parsing stops at the first incomplete, oversized or corrupt record.
fn parse_records(data: &[u8]) -> (Vec<(WalOp, u64)>, usize) {
    let mut ops = Vec::new();
    let mut off = 0usize;
    while let Some(head) = data.get(off..off + HEADER) {
        if head[0..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = data.get(off + HEADER..off + HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(op) = serde_json::from_slice::<WalOp>(payload) else { break };
        ops.push((op, len as u64));
        off += HEADER + len;
    }
    (ops, off)
}

fn sync_dir(path: &Path) {
    // Makes a create/rename durable. Best effort: not every platform can open a directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl State {
    fn apply(&mut self, op: WalOp, bytes: u64) {
        match op {
            WalOp::Meta { next_id } => self.next_id = self.next_id.max(next_id),
            WalOp::Enqueue { id, ts_ms, request } => {
                self.next_id = self.next_id.max(id.saturating_add(1));
                if let std::collections::btree_map::Entry::Vacant(v) = self.entries.entry(id) {
                    v.insert(Entry { enqueued_ms: ts_ms, request, bytes, answer: None });
                    self.live_bytes += bytes;
                }
            }
            WalOp::Answer { id, ts_ms, text } => {
                if let Some(e) = self.entries.get_mut(&id) {
                    if e.answer.is_none() {
                        e.bytes += bytes;
                        self.live_bytes += bytes;
                        e.answer = Some((ts_ms, text));
                    }
                }
            }
            WalOp::Ack { id } | WalOp::Drop { id, .. } => {
                if let Some(e) = self.entries.remove(&id) {
                    self.live_bytes = self.live_bytes.saturating_sub(e.bytes);
                }
            }
        }
    }

    /// Appends one framed record and syncs it; on failure truncates back so the log stays clean.
    fn append(&mut self, rec: &[u8]) -> Result<()> {
        let res = self.file.write_all(rec).and_then(|_| self.file.sync_data());
        if let Err(e) = res {
            let _ = self.file.set_len(self.len);
            let _ = self.file.sync_data();
            return Err(e.into());
        }
        self.len += rec.len() as u64;
        Ok(())
    }

    fn write_op(&mut self, op: WalOp) -> Result<()> {
        let rec = frame(&op)?;
        self.append(&rec)?;
        let payload_len = (rec.len() - HEADER) as u64;
        self.apply(op, payload_len);
        Ok(())
    }
}

impl OfflineQueue {
    /// Opens (or creates) the queue at `path`, replaying the log and discarding a torn tail.
    pub fn open(path: impl AsRef<Path>, config: QueueConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if config.max_entries == 0 || config.max_bytes == 0 {
            return Err(Error::InvalidParameter { name: "queue", reason: "bounds must be > 0".into() });
        }
        // One process at a time: held until the queue is dropped (a separate file, since
        // compaction replaces the log's inode).
        let lock = lock_queue(&path)?;
        // A leftover from a compaction that crashed before its rename: the log itself is intact.
        let _ = std::fs::remove_file(tmp_path(&path));
        let existed = path.exists();
        let mut file = super::open_private(&path, OpenOptions::new().read(true).append(true).create(true))?;
        if !existed {
            sync_dir(&path);
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (ops, valid) = parse_records(&data);
        if valid < data.len() {
            log::warn!(
                "router: offline queue {}: ignoring {} bytes of torn or corrupt tail at offset {}",
                path.display(),
                data.len() - valid,
                valid
            );
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        let mut st =
            State { file, len: valid as u64, next_id: 1, entries: BTreeMap::new(), live_bytes: 0, draining: false };
        for (op, size) in ops {
            st.apply(op, size);
        }
        Ok(Self { path, config, state: Mutex::new(st), _lock: lock })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| storage("offline queue lock poisoned"))
    }

    /// Queues `request` and returns its id once it is durably on disk. Refuses sensitive
    /// requests ([`Error::PolicyDenied`]) and, with [`Overflow::Reject`], a full queue.
    pub fn enqueue(&self, request: &ChatRequest) -> Result<u64> {
        request.validate()?;
        let scan = super::policy::scan_request(request);
        if scan.sensitive {
            let cats: Vec<&str> = scan.categories.iter().map(|c| c.as_str()).collect();
            return Err(Error::PolicyDenied {
                reason: format!("refusing to queue personal data ({})", cats.join(", ")),
            });
        }
        let mut st = self.lock()?;
        let id = st.next_id;
        let op = WalOp::Enqueue { id, ts_ms: now_ms(), request: request.clone() };
        let rec = frame(&op)?;
        let size = (rec.len() - HEADER) as u64;
        if size > self.config.max_bytes {
            return Err(storage("request larger than the offline queue"));
        }
        while st.entries.len() + 1 > self.config.max_entries || st.live_bytes + size > self.config.max_bytes {
            match self.config.overflow {
                Overflow::Reject => return Err(storage("offline queue full")),
                Overflow::DropOldest => {
                    let Some(&oldest) = st.entries.keys().next() else { break };
                    st.write_op(WalOp::Drop { id: oldest, reason: "overflow".into() })?;
                    log::warn!("router: offline queue full; dropped entry {oldest}");
                }
            }
        }
        st.append(&rec)?;
        st.apply(op, size);
        self.maybe_compact(&mut st);
        Ok(id)
    }

    /// Requests waiting for the cloud, oldest first.
    pub fn pending(&self) -> Vec<QueuedRequest> {
        let Ok(st) = self.lock() else { return Vec::new() };
        st.entries
            .iter()
            .filter(|(_, e)| e.answer.is_none())
            .map(|(&id, e)| QueuedRequest { id, enqueued_ms: e.enqueued_ms, request: e.request.clone() })
            .collect()
    }

    /// Cloud answers not yet acknowledged, oldest first.
    pub fn answers(&self) -> Vec<QueuedAnswer> {
        let Ok(st) = self.lock() else { return Vec::new() };
        st.entries
            .iter()
            .filter_map(|(&id, e)| {
                let (answered_ms, text) = e.answer.as_ref()?;
                Some(QueuedAnswer {
                    id,
                    enqueued_ms: e.enqueued_ms,
                    answered_ms: *answered_ms,
                    request: e.request.clone(),
                    text: text.clone(),
                })
            })
            .collect()
    }

    /// Removes an answered (or pending) entry for good. Returns false if the id is unknown
    /// (already acknowledged: acknowledging twice is harmless).
    pub fn ack(&self, id: u64) -> Result<bool> {
        let mut st = self.lock()?;
        if !st.entries.contains_key(&id) {
            return Ok(false);
        }
        st.write_op(WalOp::Ack { id })?;
        self.maybe_compact(&mut st);
        Ok(true)
    }

    /// Live entries (pending + answered).
    pub fn len(&self) -> usize {
        self.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    /// True when there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of live entries.
    pub fn live_bytes(&self) -> u64 {
        self.lock().map(|s| s.live_bytes).unwrap_or(0)
    }

    /// Sends pending requests to the cloud (non-streaming, each through
    /// [`super::cloud::prepare_request`], so re-checked and audited), oldest first, storing each
    /// answer durably before moving on. `gate` is asked before each send (budgets); draining
    /// stops at the first `false`, and at the first failure that may be temporary (network,
    /// 5xx, 429, a malformed answer). Requests refused for good (other 4xx, or personal data found
    /// at the egress check) are dropped and reported in [`DrainReport::rejected`]. One drain runs
    /// at a time; a concurrent call returns with [`DrainReport::busy`].
    pub fn drain(
        &self,
        client: &CloudClient,
        transport: &dyn Transport,
        audit: &AuditLog,
        gate: &mut dyn FnMut(&QueuedRequest) -> bool,
    ) -> Result<DrainReport> {
        {
            let mut st = self.lock()?;
            if st.draining {
                return Ok(DrainReport { busy: true, ..DrainReport::default() });
            }
            st.draining = true;
        }
        let res = self.drain_inner(client, transport, audit, gate);
        if let Ok(mut st) = self.lock() {
            st.draining = false;
        }
        let mut report = res?;
        report.remaining = self.pending().len();
        Ok(report)
    }

    fn drain_inner(
        &self,
        client: &CloudClient,
        transport: &dyn Transport,
        audit: &AuditLog,
        gate: &mut dyn FnMut(&QueuedRequest) -> bool,
    ) -> Result<DrainReport> {
        let mut report = DrainReport::default();
        for q in self.pending() {
            if !gate(&q) {
                report.gated = true;
                break;
            }
            match client.complete_with(transport, audit, &q.request, false, &mut |_| true) {
                Ok(ans) => {
                    let mut st = self.lock()?;
                    st.write_op(WalOp::Answer { id: q.id, ts_ms: now_ms(), text: ans.text })?;
                    self.maybe_compact(&mut st);
                    drop(st);
                    report.answered.push(q.id);
                    if let Err(e) = audit.record(&AuditEvent::queue_op("answered", q.id)) {
                        log::warn!("router: audit write failed: {e}");
                    }
                }
                Err(f) => {
                    let permanent = match f.kind {
                        FailureKind::PolicyDenied => true,
                        FailureKind::HttpStatus => !matches!(f.http_status, Some(408 | 425 | 429 | 500..=599)),
                        _ => false,
                    };
                    if permanent {
                        log::warn!("router: queued request {} refused for good ({f}); dropping it", q.id);
                        let mut st = self.lock()?;
                        st.write_op(WalOp::Drop { id: q.id, reason: f.kind.as_str().into() })?;
                        drop(st);
                        report.rejected.push(q.id);
                        if let Err(e) = audit.record(&AuditEvent::queue_op("rejected", q.id)) {
                            log::warn!("router: audit write failed: {e}");
                        }
                    } else {
                        log::info!("router: drain stopped ({f}); {} stays queued", q.id);
                        report.stopped = Some(f.kind);
                        break;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Rewrites the log with only the live entries (also done automatically when dead records
    /// dominate). Crash-safe: the new log is synced under a temporary name, then renamed.
    pub fn compact(&self) -> Result<()> {
        let mut st = self.lock()?;
        self.compact_locked(&mut st)
    }

    fn maybe_compact(&self, st: &mut State) {
        if st.len >= COMPACT_MIN_BYTES && st.len > 4 * st.live_bytes.max(1) {
            if let Err(e) = self.compact_locked(st) {
                log::warn!("router: offline queue compaction failed: {e}");
            }
        }
    }

    fn compact_locked(&self, st: &mut State) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let mut buf = frame(&WalOp::Meta { next_id: st.next_id })?;
        for (&id, e) in &st.entries {
            buf.extend(frame(&WalOp::Enqueue { id, ts_ms: e.enqueued_ms, request: e.request.clone() })?);
            if let Some((ts_ms, text)) = &e.answer {
                buf.extend(frame(&WalOp::Answer { id, ts_ms: *ts_ms, text: text.clone() })?);
            }
        }
        {
            let _ = std::fs::remove_file(&tmp);
            let mut f = super::open_private(&tmp, OpenOptions::new().write(true).create_new(true))?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path);
        st.file = super::open_private(&self.path, OpenOptions::new().read(true).append(true))?;
        st.len = buf.len() as u64;
        Ok(())
    }
}

/// Takes the exclusive lock on `<path>.lock` (an owner-only file), or fails at once with
/// [`Error::Storage`] when another process (or another queue in this one) holds it.
fn lock_queue(path: &Path) -> Result<File> {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let lock_path = PathBuf::from(p);
    let f = super::open_private(&lock_path, OpenOptions::new().create(true).truncate(false).write(true))?;
    // A holder that is closing (a router an app just closed while its last call unwinds, a
    // process exiting) releases the lock within moments: wait for it, bounded, before refusing.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match fs4::FileExt::try_lock(&f) {
            Ok(()) => return Ok(f),
            Err(fs4::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(storage(format!("offline queue {} is in use by another process", path.display())));
            }
            Err(fs4::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// How long [`lock_queue`] waits for another holder of the queue's lock to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".compact-tmp");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgewise-queue-{name}-{}-{}", std::process::id(), now_ms()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn req(i: usize) -> ChatRequest {
        ChatRequest::user(format!("question number {i} about the weather in general"))
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // CRC-32/ISO-HDLC check value from the CRC catalogue.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn survives_reopen_and_ack() {
        let d = dir("reopen");
        let p = d.join("q.wal");
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok();
        let Some(q) = q else { panic!("open failed") };
        let a = q.enqueue(&req(1)).ok();
        let b = q.enqueue(&req(2)).ok();
        assert_eq!((a, b), (Some(1), Some(2)));
        assert_eq!(q.ack(1).ok(), Some(true));
        assert_eq!(q.ack(1).ok(), Some(false));
        drop(q);
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok();
        let Some(q) = q else { panic!("reopen failed") };
        let pend = q.pending();
        assert_eq!(pend.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(pend[0].request, req(2));
        assert_eq!(q.enqueue(&req(3)).ok(), Some(3));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Cut the log at every byte of its last record (a torn write) and append garbage: each time
    /// the earlier records survive, the torn one is ignored, and new appends work afterwards.
    #[test]
    fn torn_tail_at_every_offset() {
        let d = dir("torn");
        let p = d.join("q.wal");
        {
            let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
            for i in 1..=3 {
                assert!(q.enqueue(&req(i)).is_ok());
            }
        }
        let full = std::fs::read(&p).unwrap_or_default();
        let (ops, valid) = parse_records(&full);
        assert_eq!((ops.len(), valid), (3, full.len()));
        let last_start = {
            let (_, v2) = parse_records(&full[..full.len() - 1]);
            v2
        };
        for cut in last_start..full.len() {
            std::fs::write(&p, &full[..cut]).unwrap_or_default();
            let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open at {cut}"));
            assert_eq!(q.pending().iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2], "cut at {cut}");
            assert_eq!(std::fs::metadata(&p).map(|m| m.len()).ok(), Some(last_start as u64));
            assert_eq!(q.enqueue(&req(9)).ok(), Some(3));
        }
        // A flipped byte in the last payload: checksum catches it.
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x20;
        std::fs::write(&p, &bad).unwrap_or_default();
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
        assert_eq!(q.pending().len(), 2);
        drop(q);
        // Garbage after valid records.
        let mut g = full.clone();
        g.extend_from_slice(b"EWQ1\xff\xff\xff\x7fzzzz");
        std::fs::write(&p, &g).unwrap_or_default();
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
        assert_eq!(q.pending().len(), 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bounds_reject_or_drop_oldest() {
        let d = dir("bounds");
        let cfg = QueueConfig { max_entries: 2, ..QueueConfig::default() };
        let q = OfflineQueue::open(d.join("a.wal"), cfg.clone()).ok().unwrap_or_else(|| panic!("open"));
        assert!(q.enqueue(&req(1)).is_ok());
        assert!(q.enqueue(&req(2)).is_ok());
        assert!(matches!(q.enqueue(&req(3)), Err(Error::Storage { .. })));
        assert_eq!(q.len(), 2);
        let q = OfflineQueue::open(d.join("b.wal"), QueueConfig { overflow: Overflow::DropOldest, ..cfg })
            .ok()
            .unwrap_or_else(|| panic!("open"));
        for i in 1..=5 {
            assert!(q.enqueue(&req(i)).is_ok());
        }
        assert_eq!(q.pending().iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
        drop(q);
        let q = OfflineQueue::open(
            d.join("b.wal"),
            QueueConfig { max_entries: 2, overflow: Overflow::DropOldest, ..QueueConfig::default() },
        )
        .ok()
        .unwrap_or_else(|| panic!("open"));
        assert_eq!(q.pending().iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
        // Byte bound.
        let small = QueueConfig { max_bytes: 300, ..QueueConfig::default() };
        let q = OfflineQueue::open(d.join("c.wal"), small).ok().unwrap_or_else(|| panic!("open"));
        assert!(q.enqueue(&req(1)).is_ok());
        assert!(q.enqueue(&ChatRequest::user("x".repeat(400))).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_sensitive_requests() {
        let d = dir("sensitive");
        let q = OfflineQueue::open(d.join("q.wal"), QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
        let r = ChatRequest::user("weather?")
            .with_attachment("Reach Jane Doe at jane.doe.1984@gmail.com or +44 7911 123456.");
        assert!(matches!(q.enqueue(&r), Err(Error::PolicyDenied { .. })));
        assert!(q.is_empty());
        assert_eq!(std::fs::metadata(q.path()).map(|m| m.len()).ok(), Some(0));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compaction_keeps_live_entries_and_ids() {
        let d = dir("compact");
        let p = d.join("q.wal");
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
        for i in 1..=10 {
            assert!(q.enqueue(&req(i)).is_ok());
        }
        for id in 1..=8 {
            assert_eq!(q.ack(id).ok(), Some(true));
        }
        assert!(q.compact().is_ok());
        drop(q);
        let q = OfflineQueue::open(&p, QueueConfig::default()).ok().unwrap_or_else(|| panic!("open"));
        assert_eq!(q.pending().iter().map(|e| e.id).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(q.enqueue(&req(11)).ok(), Some(11), "ids are never reused");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// One queue per file across processes (an flock on `<path>.lock`, which a second open in
    /// this process meets the same way), owner-only files, and no symbolic links.
    #[test]
    fn queue_is_locked_private_and_never_follows_a_link() {
        let d = dir("private");
        let p = d.join("sub").join("q.wal");
        let q = OfflineQueue::open(&p, QueueConfig::default()).unwrap();
        assert_eq!(q.enqueue(&req(1)).ok(), Some(1));
        match OfflineQueue::open(&p, QueueConfig::default()) {
            Err(Error::Storage { reason }) => assert!(reason.contains("in use"), "{reason}"),
            other => panic!("a second open while the first is alive: {other:?}"),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            let lock = d.join("sub").join("q.wal.lock");
            assert_eq!((mode(&d.join("sub")), mode(&p), mode(&lock)), (0o700, 0o600, 0o600));
            q.compact().unwrap();
            assert_eq!(mode(&p), 0o600, "the compacted log too");
            drop(q);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let q = OfflineQueue::open(&p, QueueConfig::default()).unwrap();
            assert_eq!(mode(&p), 0o600, "an existing world-readable log is narrowed");
            assert_eq!(q.pending().len(), 1);
            drop(q);
            let target = d.join("target.bin");
            std::fs::write(&target, b"").unwrap();
            let link = d.join("link.wal");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            match OfflineQueue::open(&link, QueueConfig::default()) {
                Err(Error::Storage { reason }) => assert!(reason.contains("symbolic link"), "{reason}"),
                other => panic!("expected Storage, got {other:?}"),
            }
            assert_eq!(std::fs::read(&target).unwrap(), b"");
        }
        // Released with the queue: the next open succeeds.
        drop(OfflineQueue::open(&p, QueueConfig::default()).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }
}
