//! The `edgewise privacy-check` CLI: pipes JSON lines through the binary. The detector's corpus
//! evaluation and latency test live in `pii/tests/privacy_corpus.rs` (no burn build needed).
//!
//!     cargo test --release -p edgewise-core --test privacy_corpus

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn cli_privacy_check_streams_json_lines() {
    let exe = env!("CARGO_BIN_EXE_edgewise");
    let canary = "Canary Zebrafish";
    let input = format!(
        "{}\n{}\nnot json {canary}\n\n{}\n{}\n",
        r#"{"id": "a", "text": "My card is 4556 7375 8689 9855, exp 12/29"}"#,
        r#"{"id": 7, "text": "What is the capital of Australia?"}"#,
        r#"{"id": "c", "body": "Canary Zebrafish"}"#,
        r#"{"id": "d", "text": "write me at jane.roe@gmail.com"}"#,
    );
    let mut child = Command::new(exe)
        .arg("privacy-check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgewise");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains(canary) && !stderr.contains(canary), "the CLI echoed input text");
    assert!(!stdout.contains("4556"), "the CLI echoed a matched value");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("output line is JSON")).collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["sensitive"], true);
    assert_eq!(lines[0]["categories"], serde_json::json!(["payment_card"]));
    assert_eq!(lines[1]["id"], 7);
    assert_eq!(lines[1]["sensitive"], false);
    assert_eq!(lines[1]["categories"], serde_json::json!([]));
    assert!(lines[2]["error"].is_string() && lines[2]["line"] == 3, "{}", lines[2]);
    assert_eq!(lines[3]["id"], "c");
    assert!(lines[3]["error"].is_string());
    assert_eq!(lines[4]["id"], "d");
    assert_eq!(lines[4]["categories"], serde_json::json!(["email"]));

    // --details adds the confidence and byte spans (offsets only, no values).
    let mut child = Command::new(exe)
        .args(["privacy-check", "--details"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn edgewise");
    child.stdin.take().expect("stdin").write_all(br#"{"id": 1, "text": "Call me on +44 7700 900123"}"#).expect("write");
    let out = child.wait_with_output().expect("wait");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["spans"][0]["start"], 11);
    assert_eq!(v["spans"][0]["end"], 26);
    assert_eq!(v["spans"][0]["category"], "phone");
    assert!(v["confidence"].as_f64().is_some_and(|c| c > 0.5));
}
