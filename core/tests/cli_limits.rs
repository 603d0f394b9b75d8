//! The `edgewise` CLI's input limits, through the real binary: numeric flags out of range are
//! usage errors (exit 2) before any work, never an abort or a panic; a text over
//! `MAX_INPUT_BYTES` is a typed error naming its line and size, never its content.

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod common_model;

fn edgewise(args: &[&str], stdin: &[u8]) -> Output {
    let home = std::env::temp_dir().join(format!("edgewise-cli-limits-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewise"))
        .args(args)
        // No catalog model is fetched from here: an empty home.
        .env("EDGEWISE_HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgewise");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // Written from a thread: the child may exit before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// `bench --prompt-tokens 1000000000000` aborted (a 10 TB prompt string) and
/// `--prompt-tokens 18446744073709551615` panicked (exit 101); every count flag is now checked
/// by its range at parse time.
#[test]
fn bench_count_flags_are_usage_errors() {
    // With the real model when fetched, so an unchecked flag would reach the work it sizes.
    let model =
        common_model::model_path().map(|p| p.display().to_string()).unwrap_or_else(|| "/nonexistent/model.gguf".into());
    for (flag, value) in [
        ("--prompt-tokens", "1000000000000"),
        ("--prompt-tokens", "18446744073709551615"),
        ("--prompt-tokens", "0"),
        ("--gen-tokens", "18446744073709551615"),
        ("--gen-tokens", "0"),
        ("--ctx", "18446744073709551615"),
        ("--ctx", "1"),
        ("--threads", "0"),
        ("--threads", "100000"),
    ] {
        let out = edgewise(&["bench", "--backend", "cpu", "--model", &model, flag, value, "--json"], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && !err.contains("panicked"), "{flag} {value}: {err}");
    }
}

/// A minimal WordLevel tokenizer.json ("a" is id 1), so no model is needed.
fn tokenizer_json() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("edgewise-cli-limits-tok-{}.json", std::process::id()));
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}"#;
    std::fs::write(&p, json).unwrap();
    p
}

/// A line over 1 MiB used to be tokenized whatever its size (50 MB aborted the process); now
/// the command stops at it with the line number and size, after the lines before it.
#[test]
fn tokenize_refuses_an_oversized_line() {
    let tok = tokenizer_json();
    let tok = tok.to_str().unwrap();
    let big = "a CANARY ".repeat((2 << 20) / 9);
    let input = format!("a a\n{big}\na\n");
    let out = edgewise(&["tokenize", "--model", tok], input.as_bytes());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "1 1\n");
    assert!(stderr.contains("stdin line 2") && stderr.contains(&format!("input of {} bytes", big.len())), "{stderr}");
    assert!(!stderr.contains("CANARY"), "{stderr}");
    // The same text as a JSON line (decoded size counts), and a line just under the limit passes.
    let input = format!("{}\n", serde_json::json!({ "text": big }));
    let out = edgewise(&["tokenize", "--model", tok, "--jsonl"], input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stdin line 1") && stderr.contains("1048576-byte limit") && !stderr.contains("CANARY"),
        "{stderr}"
    );
    let ok = format!("{}\n", "a ".repeat(edgewise_core::MAX_INPUT_BYTES / 2));
    let out = edgewise(&["tokenize", "--model", tok], ok.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
