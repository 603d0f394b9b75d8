//! `edgewise finetune` through the built binary, on the synthesized Qwen 2 (3 layers, width 256;
//! `tests/reference/make_arch_goldens.py synth` writes it, as CI does): a malformed line is an
//! error naming its line number (never its text), examples over `--max-len` are skipped and
//! counted, the written adapter loads, and a run killed with SIGKILL after a checkpoint resumes
//! to the byte-identical adapter of an uninterrupted run.

mod common_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};

fn model() -> Option<PathBuf> {
    common_model::synth_model("qwen2", "tests/reference/make_arch_goldens.py synth")
}

/// A fresh directory for one test, removed on drop.
struct Dir(PathBuf);
impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("edgewise-finetune-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` short examples in both formats (varied, so the steps differ).
fn examples(n: usize) -> String {
    let words = ["order", "refund", "delivery", "invoice", "repair", "store", "account", "payment"];
    (0..n)
        .map(|i| {
            let (w, v) = (words[i % words.len()], words[(i * 3 + 1) % words.len()]);
            if i % 2 == 0 {
                format!("{{\"prompt\":\"Where is my {w} number {i}?\",\"completion\":\"{v}\"}}\n")
            } else {
                format!(
                    "{{\"messages\":[{{\"role\":\"user\",\"content\":\"Help with {w} {i} please\"}},{{\"role\":\"assistant\",\"content\":\"{v} {w}\"}}]}}\n"
                )
            }
        })
        .collect()
}

fn finetune(model: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgewise"));
    c.arg("finetune")
        .arg("--model")
        .arg(model)
        .args(["--rank", "4", "--alpha", "8", "--lr", "1e-2", "--batch", "2", "--seed", "3"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(model: &Path, args: &[&str]) -> Output {
    finetune(model, args).output().expect("spawn edgewise")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The summary JSON line on stdout.
fn summary(out: &Output) -> serde_json::Value {
    let s = text(&out.stdout);
    serde_json::from_str(s.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("no summary ({e}): {s}"))
}

#[test]
fn malformed_lines_long_examples_and_the_written_adapter() {
    let Some(model) = model() else { return };
    let dir = Dir::new("input");
    let out = dir.join("a.gguf");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Line 4 is not JSON; line 6 lacks the answer. The error names the line, never its text.
    let bad = dir.join("bad.jsonl");
    let mut lines: Vec<String> = examples(3).lines().map(String::from).collect();
    lines.push("{\"prompt\": SECRET-CANARY-4".into());
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let o = run(&model, &["--data", &s(&bad), "--out", &s(&out)]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "a malformed line must fail: {err}");
    assert!(err.contains("line 4") && !err.contains("SECRET-CANARY") && !err.contains("panicked"), "{err}");
    lines[3] = "\n{\"messages\":[{\"role\":\"user\",\"content\":\"SECRET-CANARY-6\"}]}".into();
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let o = run(&model, &["--data", &s(&bad), "--out", &s(&out)]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("line 5") && !err.contains("SECRET-CANARY"), "{err}");
    assert!(!out.exists(), "a failed run must not write an adapter");

    // Two examples over --max-len are skipped and counted; the rest train, and the adapter
    // loads in the engine (and into a session) for the same model.
    let data = dir.join("train.jsonl");
    let long = format!("{{\"prompt\":\"{}\",\"completion\":\"x\"}}\n", "many words again ".repeat(40));
    std::fs::write(&data, format!("{}{long}{}{long}", examples(3), examples(3))).unwrap();
    let o = run(&model, &["--data", &s(&data), "--out", &s(&out), "--max-len", "64", "--max-steps", "2"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("6 training examples") && err.contains("2 skipped as longer than 64"), "{err}");
    assert_eq!(summary(&o)["steps"], 2, "{err}");
    let engine =
        Engine::load(&model, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    let adapter = engine.load_adapter(&out).expect("the written adapter loads");
    assert_eq!((adapter.rank(), adapter.alpha(), adapter.weights()), (4, 8.0, 3 * 7));
    let mut session = engine.new_session(Default::default()).unwrap();
    session.set_adapters(&[(adapter, 1.0)]).unwrap();
    assert!(!out.with_extension("gguf.ckpt").exists(), "a finished run deletes its checkpoint");
}

/// Kills a training run with SIGKILL once a checkpoint exists, runs the same command again, and
/// compares the adapter with an uninterrupted run's: byte-identical.
#[cfg(unix)]
#[test]
fn a_run_killed_with_sigkill_resumes_to_the_same_adapter() {
    let Some(model) = model() else { return };
    let dir = Dir::new("sigkill");
    let data = dir.join("train.jsonl");
    std::fs::write(&data, examples(16)).unwrap();
    let (full, resumed) = (dir.join("full.gguf"), dir.join("resumed.gguf"));
    let ckpt = dir.join("resumed.gguf.ckpt");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = |out: &Path| {
        vec![
            "--data".to_string(),
            s(&data),
            "--out".into(),
            s(out),
            "--max-steps".into(),
            "8".into(),
            "--checkpoint-every".into(),
            "1".into(),
        ]
    };
    let full_args = args(&full);
    let reference = run(&model, &strs(&full_args));
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    assert_eq!(summary(&reference)["resumed_from_step"], 0);

    let killed_args = args(&resumed);
    let mut child = finetune(&model, &strs(&killed_args)).spawn().unwrap();
    let t0 = Instant::now();
    // The first checkpoint, then one step more: killed in the middle of the run.
    while !ckpt.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before writing a checkpoint");
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = std::fs::metadata(&ckpt).unwrap().modified().unwrap();
    while std::fs::metadata(&ckpt).ok().and_then(|m| m.modified().ok()) == Some(first) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its second checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "not killed by SIGKILL: {status:?}");
    assert!(ckpt.exists() && !resumed.exists(), "the kill must leave a checkpoint and no adapter");

    let again = run(&model, &strs(&killed_args));
    let err = text(&again.stderr);
    assert!(again.status.success(), "{err}");
    let from = summary(&again)["resumed_from_step"].as_u64().unwrap();
    assert!((2..8).contains(&from), "resumed from step {from}: {err}");
    assert!(
        std::fs::read(&full).unwrap() == std::fs::read(&resumed).unwrap(),
        "the resumed adapter differs from the uninterrupted run's"
    );
    assert!(!ckpt.exists());
}
