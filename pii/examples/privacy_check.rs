//! Scans JSON lines from stdin with the rule detector and prints one JSON line per input line:
//! `{"id": ..., "text": "..."}` in, `{"id": ..., "sensitive": bool, "categories": [...]}` out
//! (plus `"fail_closed"` when the text was not examined, and `"confidence"` and `"spans"` with
//! `--details`). Used by
//! `tests/privacy/eval_blind.py`; needs no model and no burn build:
//!
//!     cargo run --release -p edgewise-pii --example privacy_check < cases.jsonl
//!
//! A line that is not a JSON object with a string "text" gets `{"id", "line", "error"}`; the
//! error never repeats the input text.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

fn main() {
    let details = std::env::args().skip(1).any(|a| a == "--details");
    let det = edgewise_pii::detector();
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
                eprintln!("privacy_check: cannot read stdin: {e}");
                std::process::exit(1);
            }
        }
        line_no += 1;
        let Some(v) = answer(det, &buf, line_no, details) else { continue };
        if serde_json::to_writer(&mut out, &v).is_err() || out.write_all(b"\n").is_err() {
            std::process::exit(1);
        }
    }
    if out.flush().is_err() {
        std::process::exit(1);
    }
}

fn answer(det: &edgewise_pii::PiiDetector, raw: &[u8], line_no: usize, details: bool) -> Option<Value> {
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
    let report = det.scan(text);
    let categories: Vec<&str> = report.categories.iter().map(|c| c.as_str()).collect();
    let mut o = json!({ "id": id, "sensitive": report.sensitive, "categories": categories });
    if let Some(reason) = report.fail_closed {
        o["fail_closed"] = json!(reason.as_str());
    }
    if details {
        o["confidence"] = json!(report.confidence);
        o["spans"] = json!(report
            .spans
            .iter()
            .map(|s| json!({ "start": s.start, "end": s.end, "category": s.category.as_str() }))
            .collect::<Vec<_>>());
    }
    Some(o)
}
