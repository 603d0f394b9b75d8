//! Scores JSON lines from stdin with the privacy gate (the rules, then the embedded classifier)
//! and prints one JSON line per input line (the one evaluation binary of the pii crate; needs no
//! burn build):
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/pii-target cargo run --release -p edgewise-pii --example gate_check -- [FLAGS] < cases.jsonl
//! ```
//!
//! In: `{"id": ..., "text": "..."}`. Out: `{"id","sensitive","categories","stage","second_stage",
//! "classifier_score","second_stage_failure","rules_sensitive"}` (`categories` come from the rules;
//! plus `"fail_closed"` when the rules did not examine the text, and `"confidence"` and `"spans"`
//! with `--details`). A line that is not a JSON object with a string "text" gets
//! `{"id","line","error"}`; the error never repeats the input.
//!
//! Flags: `--rules-only` (the gate without its second stage), `--details`, `--model FILE --sha256
//! HEX` (a second-stage model other than the embedded one, verified like it; used by
//! tests/privacy/eval_loao.py). Used by tests/privacy/eval_blind.py, eval_gate.py, eval_loao.py
//! and train_classifier.py.

use std::io::{BufRead, Write};

use edgewise_pii::PrivacyGate;
use serde_json::{json, Value};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let details = flag("--details");
    let gate = if flag("--rules-only") {
        PrivacyGate::rules_only()
    } else if let Some(path) = value("--model") {
        let Some(sha) = value("--sha256") else {
            eprintln!("gate_check: --model needs --sha256 HEX");
            std::process::exit(2);
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            eprintln!("gate_check: cannot read {path}: {e}");
            std::process::exit(2);
        });
        PrivacyGate::from_model_bytes(&bytes, &sha)
    } else {
        PrivacyGate::embedded()
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("gate_check: cannot read stdin: {e}");
                std::process::exit(1);
            }
        }
        line_no += 1;
        let Some(v) = answer(&gate, &buf, line_no, details) else { continue };
        if serde_json::to_writer(&mut out, &v).is_err() || out.write_all(b"\n").is_err() {
            std::process::exit(1);
        }
    }
    if out.flush().is_err() {
        std::process::exit(1);
    }
}

fn answer(gate: &PrivacyGate, raw: &[u8], line_no: usize, details: bool) -> Option<Value> {
    let error = |id: Value, reason: &str| Some(json!({ "id": id, "line": line_no, "error": reason }));
    let Ok(line) = std::str::from_utf8(raw) else {
        return error(Value::Null, "line is not valid UTF-8");
    };
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return error(Value::Null, "line is not a JSON object");
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(text) = obj.get("text").and_then(Value::as_str) else {
        return error(id, "missing string field \"text\"");
    };
    let g = gate.check(text);
    let categories: Vec<&str> = g.rules.categories.iter().map(|c| c.as_str()).collect();
    let mut o = json!({
        "id": id,
        "sensitive": g.sensitive,
        "categories": categories,
        "stage": g.stage.as_str(),
        "second_stage": g.second_stage.as_str(),
        "classifier_score": g.classifier_score,
        "second_stage_failure": g.second_stage_failure.map(|f| f.as_str()),
        "rules_sensitive": g.rules.sensitive,
    });
    if let Some(reason) = g.rules.fail_closed {
        o["fail_closed"] = json!(reason.as_str());
    }
    if details {
        o["confidence"] = json!(g.rules.confidence);
        o["spans"] = json!(g
            .rules
            .spans
            .iter()
            .map(|s| json!({ "start": s.start, "end": s.end, "category": s.category.as_str() }))
            .collect::<Vec<_>>());
    }
    Some(o)
}
