//! Shared helpers for the tokenizer integration tests: finding the model and the reference
//! tokenizer.json, loading the corpus, building the GGUF tokenizer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgewise_core::gguf::GgufFile;
use edgewise_core::tokenizer::{GgufVocab, Tokenizer};

/// Repository root (core/..).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn edgewise_home() -> PathBuf {
    std::env::var_os("EDGEWISE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("edgewise"))
}

/// First existing path among `$EDGEWISE_HOME/<sub>/<name>` and `/tmp/model/<name>`.
fn find(sub: &str, name: &str) -> Option<PathBuf> {
    [edgewise_home().join(sub).join(name), PathBuf::from("/tmp/model").join(name)].into_iter().find(|p| p.is_file())
}

/// The default model and the reference tokenizer.json, or `None` (after a loud message) when they
/// are missing and `EDGEWISE_REQUIRE_MODEL` is unset. Panics when it is set.
pub fn model_and_reference() -> Option<(PathBuf, PathBuf)> {
    let model = find("models", "gemma-3-270m-q4_k_m.gguf");
    let reference = find("reference", "gemma3-tokenizer.json");
    match (model, reference) {
        (Some(m), Some(r)) => Some((m, r)),
        (m, r) => {
            let msg = format!(
                "tokenizer test needs the Gemma 3 GGUF and the reference tokenizer.json \
                 (run `edgewise models fetch`); found model={m:?} reference={r:?}"
            );
            if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some() {
                panic!("{msg}");
            }
            eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
            None
        }
    }
}

/// Read the GGUF's tokenizer metadata.
pub fn gguf_vocab(model: &Path) -> GgufVocab {
    let t = Instant::now();
    let file = GgufFile::open(model).expect("open GGUF");
    let v = GgufVocab::from_metadata(file.metadata()).expect("tokenizer metadata");
    eprintln!("read GGUF tokenizer metadata in {:.2?}", t.elapsed());
    v
}

/// Build the tokenizer from GGUF metadata (no cache), printing the time it took.
pub fn build_from_gguf(v: &GgufVocab) -> Tokenizer {
    let t = Instant::now();
    let tok = Tokenizer::from_gguf_vocab(v).expect("build tokenizer from GGUF metadata");
    eprintln!("built tokenizer from GGUF metadata ({} tokens) in {:.2?}", v.tokens.len(), t.elapsed());
    tok
}

/// The corpus strings, in file order.
pub fn corpus() -> Vec<String> {
    let path = repo_root().join("tests/tokenizer/corpus.jsonl");
    let text = std::fs::read_to_string(&path).expect("read tests/tokenizer/corpus.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            v["text"].as_str().expect("corpus line has text").to_string()
        })
        .collect()
}
