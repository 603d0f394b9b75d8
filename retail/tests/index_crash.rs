//! `kill -9` the vector index at random points, many times: no committed write is lost, nothing
//! uncommitted half-appears, the file always reopens. And several processes writing one index in
//! turn (the file lock) lose nothing.
//!
//! As in `core/tests/router_queue_crash.rs`, the parent re-executes this test binary with
//! `EDGEWISE_RETAIL_CHILD_DIR` set. In `kill` mode the child loops over puts (updates of 40 keys,
//! the version in an attribute and in the vector) and deletes, printing `BEGIN op key version`
//! before each call and `DONE` once it returned (durable). Compaction is set to run every 64 KiB,
//! so kills also land mid-compaction. The parent SIGKILLs it at a random moment, reopens the
//! index and checks every key against what was acknowledged (or the one op in flight). Set
//! `EDGEWISE_KILL_SEED` to replay.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgewise_retail::{AttrValue, Attributes, IndexConfig, RetailError, VectorIndex};

const CHILD_ENV: &str = "EDGEWISE_RETAIL_CHILD_DIR";
const MODE_ENV: &str = "EDGEWISE_RETAIL_CHILD_MODE";
const DIM: usize = 64;
const KEYS: u64 = 40;

fn config() -> IndexConfig {
    IndexConfig { compact_min_bytes: 64 * 1024, ..IndexConfig::new("crash-model", DIM) }
}

/// The vector of `version`: deterministic, distinct per version.
fn vector(version: u64) -> Vec<f32> {
    let mut s = version.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn open_retrying(path: &std::path::Path) -> VectorIndex {
    let t0 = Instant::now();
    loop {
        match VectorIndex::open(path, config()) {
            Ok(i) => return i,
            Err(RetailError::Locked { .. }) if t0.elapsed() < Duration::from_secs(60) => continue,
            Err(e) => panic!("open: {e}"),
        }
    }
}

/// Child mode only (does nothing in a normal test run).
#[test]
fn index_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    let path = dir.join("index.ewv");
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out).expect("stdout");
    if let Some(writer) = mode.strip_prefix("writer") {
        // Take turns with the other writers: open, write five items, close; ten times.
        for round in 0..10 {
            let idx = open_retrying(&path);
            for j in 0..5 {
                let id = format!("w{writer}-{round}-{j}");
                idx.upsert(&id, &vector(round * 10 + j + 1), Attributes::default()).expect("upsert");
            }
            drop(idx);
            std::thread::sleep(Duration::from_millis(5));
        }
        return;
    }
    let run: u64 = mode.parse().unwrap_or(0);
    let idx = open_retrying(&path);
    for i in 0u64.. {
        let version = run * 1_000_000 + i + 1;
        let key = format!("k{}", (i * 7 + run) % KEYS);
        if i % 5 == 3 {
            writeln!(out, "BEGIN DEL {key} 0").and_then(|_| out.flush()).expect("stdout");
            idx.delete(&key).expect("delete");
        } else {
            writeln!(out, "BEGIN PUT {key} {version}").and_then(|_| out.flush()).expect("stdout");
            let attrs = Attributes::default()
                .with("v", AttrValue::Num(version as f64))
                .with("pad", AttrValue::Str("x".repeat(2000)));
            idx.upsert(&key, &vector(version), attrs).expect("upsert");
        }
        writeln!(out, "DONE").and_then(|_| out.flush()).expect("stdout");
    }
}

/// The acknowledged state of each key (Some(version) or None = deleted) and the op in flight.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, Option<u64>>,
    in_flight: Option<(String, Option<u64>)>,
    done: usize,
}

impl Seen {
    fn line(&mut self, l: &str) {
        let mut it = l.split_whitespace();
        match it.next() {
            Some("BEGIN") => {
                let (op, key, v) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or("0"));
                let v = if op == "PUT" { v.parse().ok() } else { None };
                self.in_flight = Some((key.to_string(), v));
            }
            Some("DONE") => {
                if let Some((k, v)) = self.in_flight.take() {
                    self.acked.insert(k, v);
                    self.done += 1;
                }
            }
            _ => {}
        }
    }
}

fn check(path: &std::path::Path, seen: &mut Seen) {
    let idx = VectorIndex::open(path, config()).expect("reopen after kill -9");
    let flight = seen.in_flight.take();
    for k in 0..KEYS {
        let key = format!("k{k}");
        let got = idx.get(&key).map(|(v, a)| {
            let ver = a.number("v").unwrap_or(-1.0) as u64;
            let want = vector(ver);
            let dot: f32 = v.iter().zip(&want).map(|(a, b)| a * b).sum();
            let n = want.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(dot / n > 0.99, "{key}: vector does not match its version {ver}");
            ver
        });
        let acked = seen.acked.get(&key).copied().flatten();
        let ok = got == acked || flight.as_ref().is_some_and(|(fk, fv)| *fk == key && got == *fv);
        assert!(ok, "{key}: index has {got:?}, acknowledged {acked:?}, in flight {flight:?}");
        // Whatever the index holds is now the truth for the next child.
        seen.acked.insert(key, got);
    }
    assert!(idx.len() as u64 <= KEYS);
}

#[test]
fn kill9_loses_no_committed_write_and_never_corrupts() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let seed: u64 = std::env::var("EDGEWISE_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("kill9 seed: {seed} (EDGEWISE_KILL_SEED={seed} to replay)");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let dir = std::env::temp_dir().join(format!("edgewise-retail-kill9-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("index.ewv");
    let exe = std::env::current_exe().expect("exe");
    let mut seen = Seen::default();
    let runs = 30;
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .args(["--exact", "index_child_process", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(MODE_ENV, run.to_string())
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
        let want = 5 + next() % 120;
        let mut done = 0;
        let started = Instant::now();
        while done < want && started.elapsed() < Duration::from_secs(20) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    if l == "DONE" {
                        done += 1;
                    }
                    seen.line(&l);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // Half the kills land right after an acknowledged write, half after a random delay.
        if next() % 2 == 0 {
            std::thread::sleep(Duration::from_micros(next() % 3000));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child should have been killed");
        let _ = reader.join();
        for l in rx.try_iter() {
            seen.line(&l);
        }
        assert!(done > 0, "child made no progress in run {run}");
        check(&path, &mut seen);
        eprintln!("run {run}: {} writes acknowledged so far", seen.done);
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!("file {size} bytes after {} writes of ~2.3 KB", seen.done);
    assert!(size < (seen.done as u64) * 2300, "compaction ran");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three processes write one index at the same time, taking turns through the file lock: all
/// 150 items are there afterwards.
#[test]
fn concurrent_writer_processes_take_turns() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("edgewise-retail-writers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = std::env::current_exe().expect("exe");
    let children: Vec<_> = (0..3)
        .map(|w| {
            Command::new(&exe)
                .args(["--exact", "index_child_process", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &dir)
                .env(MODE_ENV, format!("writer{w}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a writer failed");
    }
    let idx = VectorIndex::open(dir.join("index.ewv"), config()).expect("open");
    assert_eq!(idx.len(), 150);
    for w in 0..3 {
        for round in 0..10u64 {
            for j in 0..5u64 {
                let (v, _) = idx.get(&format!("w{w}-{round}-{j}")).expect("item written by a writer");
                let want = vector(round * 10 + j + 1);
                let n = want.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!(v.iter().zip(&want).map(|(a, b)| a * b).sum::<f32>() / n > 0.99);
            }
        }
    }
    drop(idx);
    let _ = std::fs::remove_dir_all(&dir);
}
