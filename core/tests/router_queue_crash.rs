//! `kill -9` the offline queue at random points, many times, and check that nothing acknowledged
//! is lost and nothing is duplicated.
//!
//! The parent test re-executes this test binary with `EDGEWISE_QUEUE_CHILD_DIR` set; in that mode
//! `queue_child_process` opens the queue and loops: enqueue (print `ENQ id marker` once `enqueue`
//! returned, i.e. once it is durable), now and then drain one entry through an in-process echo
//! transport (print `ANS id`), and acknowledge an answer (print `ACKING id`, then `ACK id`). The
//! parent SIGKILLs it at a random moment, reopens the queue itself and checks the invariants,
//! then starts the next child on the same files. Set `EDGEWISE_KILL_SEED` to replay a run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgewise_core::router::audit::{AuditLog, AuditStats};
use edgewise_core::router::cloud::{
    CloudClient, CloudConfig, OutboundRequest, Transport, TransportError, TransportResponse,
};
use edgewise_core::router::queue::{OfflineQueue, QueueConfig};
use edgewise_core::router::ChatRequest;

const CHILD_ENV: &str = "EDGEWISE_QUEUE_CHILD_DIR";
const RUN_ENV: &str = "EDGEWISE_QUEUE_CHILD_RUN";
/// Request padding: big records widen the window for a kill mid-write and make the log grow
/// past the compaction threshold, so kills also land in compactions.
const PAD: usize = 16_000;

fn config() -> QueueConfig {
    QueueConfig { max_entries: 100_000, max_bytes: 1 << 30, ..QueueConfig::default() }
}

/// Answers like a chat-completions server: `answer-for-<marker>`.
struct EchoTransport;

impl Transport for EchoTransport {
    fn send(&self, request: &OutboundRequest) -> Result<TransportResponse, TransportError> {
        let v: serde_json::Value =
            serde_json::from_slice(request.body()).map_err(|e| TransportError::Io(e.to_string()))?;
        let content = v["messages"][0]["content"].as_str().unwrap_or("");
        let marker = content.split_whitespace().next().unwrap_or("");
        let body = serde_json::json!({"choices":[{"index":0,"message":{"role":"assistant","content":format!("answer-for-{marker}")},"finish_reason":"stop"}]});
        Ok(TransportResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: Box::new(std::io::Cursor::new(body.to_string().into_bytes())),
        })
    }
}

fn marker_of(r: &ChatRequest) -> String {
    r.messages.first().and_then(|m| m.content.split_whitespace().next()).unwrap_or("").to_string()
}

/// Child mode only (does nothing in a normal test run).
#[test]
fn queue_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let run = std::env::var(RUN_ENV).unwrap_or_default();
    let q = OfflineQueue::open(dir.join("queue.wal"), config()).expect("open");
    let audit = AuditLog::open(dir.join("audit.jsonl")).expect("audit");
    let client = CloudClient::new(CloudConfig::new("http://127.0.0.1:9/v1", "m")).expect("client");
    let out = std::io::stdout();
    let mut out = out.lock();
    let pad = "lorem ".repeat(PAD / 6);
    // The test harness has printed "test queue_child_process ... " without a newline.
    writeln!(out).expect("stdout");
    for i in 0u64.. {
        let marker = format!("r{run}i{i}");
        let id = q.enqueue(&ChatRequest::user(format!("{marker} {pad}"))).expect("enqueue");
        writeln!(out, "ENQ {id} {marker}").and_then(|_| out.flush()).expect("stdout");
        if i % 2 == 1 {
            let mut budget = 2;
            let rep = q
                .drain(&client, &EchoTransport, &audit, &mut |_| {
                    budget -= 1;
                    budget >= 0
                })
                .expect("drain");
            for id in rep.answered {
                writeln!(out, "ANS {id}").and_then(|_| out.flush()).expect("stdout");
            }
        }
        {
            if let Some(a) = q.answers().first() {
                writeln!(out, "ACKING {}", a.id).and_then(|_| out.flush()).expect("stdout");
                assert!(q.ack(a.id).expect("ack"));
                writeln!(out, "ACK {}", a.id).and_then(|_| out.flush()).expect("stdout");
            }
        }
    }
}

/// What the parent learned from the children's stdout.
#[derive(Default)]
struct Seen {
    enq: BTreeMap<u64, String>,
    ans: BTreeSet<u64>,
    acking: BTreeSet<u64>,
    ack: BTreeSet<u64>,
}

fn check(dir: &std::path::Path, seen: &Seen, kills: usize) -> usize {
    let q = OfflineQueue::open(dir.join("queue.wal"), config()).expect("reopen after kill");
    let pending = q.pending();
    let answers = q.answers();
    let mut present: BTreeMap<u64, String> = BTreeMap::new();
    let mut markers = BTreeSet::new();
    for p in &pending {
        let m = marker_of(&p.request);
        assert!(markers.insert(m.clone()), "duplicate marker {m}");
        assert!(present.insert(p.id, m).is_none(), "id {} twice", p.id);
    }
    for a in &answers {
        let m = marker_of(&a.request);
        assert!(markers.insert(m.clone()), "duplicate marker {m}");
        assert_eq!(a.text, format!("answer-for-{m}"), "answer stored under the wrong id");
        assert!(present.insert(a.id, m).is_none(), "id {} both pending and answered", a.id);
    }
    // Nothing acknowledged is lost.
    for (id, m) in &seen.enq {
        if seen.ack.contains(id) {
            assert!(!present.contains_key(id), "acked id {id} came back");
        } else if let Some(pm) = present.get(id) {
            assert_eq!(pm, m, "id {id} holds another request");
        } else {
            assert!(seen.acking.contains(id), "enqueued id {id} ({m}) was lost");
        }
        if seen.ans.contains(id) && !seen.ack.contains(id) && !seen.acking.contains(id) {
            assert!(answers.iter().any(|a| a.id == *id), "answered id {id} lost its answer");
        }
    }
    // Entries the parent never heard of: only the enqueue in flight at each kill.
    let unknown: Vec<_> = present.iter().filter(|(id, _)| !seen.enq.contains_key(id)).collect();
    assert!(unknown.len() <= kills, "{unknown:?} unacknowledged entries after {kills} kills; seen {:?}", seen.enq);
    // The audit log stays readable (a torn last line at most per kill).
    let stats = AuditStats::from_path(dir.join("audit.jsonl")).expect("audit stats");
    assert!(stats.malformed_lines as usize <= kills, "{} malformed audit lines", stats.malformed_lines);
    present.len()
}

#[test]
fn kill9_loses_and_duplicates_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let seed: u64 = std::env::var("EDGEWISE_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("kill9 seed: {seed} (EDGEWISE_KILL_SEED={seed} to replay)");
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let dir = std::env::temp_dir().join(format!("edgewise-kill9-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = std::env::current_exe().expect("exe");
    let mut seen = Seen::default();
    let runs = 12;
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .args(["--exact", "queue_child_process", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(RUN_ENV, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledged enqueues plus a random delay, so kills land
        // anywhere: mid-enqueue, mid-drain, mid-ack, mid-compaction.
        let want = 2 + next() % 25;
        let mut enq = 0;
        let started = Instant::now();
        while enq < want && started.elapsed() < Duration::from_secs(20) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    if l.starts_with("ENQ ") {
                        enq += 1;
                    }
                    record(&mut seen, &l);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(next() % 3000));
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child should have been killed, not exit");
        let _ = reader.join();
        for l in rx.try_iter() {
            record(&mut seen, &l);
        }
        assert!(enq > 0, "child made no progress in run {run}");
        let live = check(&dir, &seen, run + 1);
        eprintln!(
            "run {run}: {} enqueued so far, {} answered, {} acked, {live} live",
            seen.enq.len(),
            seen.ans.len(),
            seen.ack.len()
        );
    }
    assert!(seen.ans.len() >= 3 && !seen.ack.is_empty(), "the children exercised drain and ack");
    // Far more was written than the log holds: compaction ran (under kills) and kept everything.
    let wal = std::fs::metadata(dir.join("queue.wal")).map(|m| m.len()).unwrap_or(0);
    let written = (seen.enq.len() * PAD) as u64;
    eprintln!("log {wal} bytes after ~{written} bytes of requests");
    if written > 3 << 19 {
        assert!(wal < written, "the log was never compacted");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn record(seen: &mut Seen, line: &str) {
    let mut it = line.split_whitespace();
    let (Some(kind), Some(id)) = (it.next(), it.next().and_then(|s| s.parse::<u64>().ok())) else { return };
    match kind {
        "ENQ" => {
            let m = it.next().unwrap_or("").to_string();
            assert!(seen.enq.insert(id, m).is_none(), "id {id} handed out twice");
        }
        "ANS" => {
            seen.ans.insert(id);
        }
        "ACKING" => {
            seen.acking.insert(id);
        }
        "ACK" => {
            seen.ack.insert(id);
        }
        _ => {}
    }
}
