//! Logit inspection for reference comparisons (tests/reference/check_real_llama.py): reads JSON
//! lines `{"ids": [...]}` from stdin and writes, per line, `{"logits": [...]}` — every position's
//! logits of a fresh session fed `ids` (prefill, one chunk).
//! `cargo run --release --example dump_logits -- MODEL [cpu|gpu]`

use std::io::BufRead;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::SessionConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: dump_logits MODEL [cpu|gpu]")?;
    let backend = match args.next().as_deref() {
        Some("gpu") => BackendPreference::Gpu,
        _ => BackendPreference::Cpu,
    };
    let engine =
        Engine::load(std::path::Path::new(&model), EngineConfig { backend, threads: Some(2), gpu_self_test: false })?;
    for line in std::io::stdin().lock().lines() {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let ids: Vec<u32> =
            v["ids"].as_array().ok_or("ids")?.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect();
        let mut s = engine.new_session(SessionConfig {
            max_context: ids.len() + 8,
            prefill_chunk: 512,
            ..Default::default()
        })?;
        let logits = s.prefill_logits(&ids, 0)?;
        println!("{}", serde_json::json!({ "logits": logits }));
    }
    Ok(())
}
