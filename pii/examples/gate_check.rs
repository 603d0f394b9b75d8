//! Reads JSON lines `{"id","text"}` on stdin and prints one line per input with the rules' verdict
//! and the gate's (rules, then the embedded classifier):
//! `{"id","sensitive","stage","second_stage","classifier_score","second_stage_failure","rules_sensitive","categories"}`.
//! `--rules-only` uses the gate without its second stage. Used by tests/privacy/eval_gate.py and
//! train_classifier.py; needs no burn build:
//!
//! ```text
//! cargo run --release -p edgewise-pii --example gate_check < cases.jsonl
//! ```
use std::io::{BufRead, Write};

use edgewise_pii::PrivacyGate;

fn main() {
    let rules_only = std::env::args().any(|a| a == "--rules-only");
    let gate = if rules_only { PrivacyGate::rules_only() } else { PrivacyGate::embedded() };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let Ok(line) = line else {
            eprintln!("line {}: not UTF-8, stopping", n + 1);
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            eprintln!("line {}: not JSON, skipped", n + 1);
            continue;
        };
        let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let text = v.get("text").and_then(|t| t.as_str()).unwrap_or("");
        let g = gate.check(text);
        let cats: Vec<&str> = g.rules.categories.iter().map(|c| c.as_str()).collect();
        let o = serde_json::json!({
            "id": id,
            "sensitive": g.sensitive,
            "stage": g.stage.as_str(),
            "second_stage": g.second_stage.as_str(),
            "classifier_score": g.classifier_score,
            "second_stage_failure": g.second_stage_failure.map(|f| f.as_str()),
            "rules_sensitive": g.rules.sensitive,
            "categories": cats,
        });
        if writeln!(out, "{o}").is_err() {
            break;
        }
    }
}
