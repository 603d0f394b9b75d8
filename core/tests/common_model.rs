//! Shared test helpers: locate the real model (or skip loudly, unless CI requires it).
#![allow(dead_code)]

use std::path::PathBuf;

/// The default model's path, if fetched. With `EDGEWISE_REQUIRE_MODEL` set (CI), a missing
/// model fails the test instead of skipping it.
pub fn model_path() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("EDGEWISE_MODEL").map(PathBuf::from),
        edgewise_core::catalog::edgewise_home().ok().map(|h| h.join("models").join("gemma-3-270m-q4_k_m.gguf")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.exists() {
            return Some(c);
        }
    }
    if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some() {
        panic!("EDGEWISE_REQUIRE_MODEL is set but the default model is not fetched: run `edgewise models fetch`");
    }
    eprintln!("SKIPPED: default model not fetched (run `edgewise models fetch`; CI sets EDGEWISE_REQUIRE_MODEL)");
    None
}

/// Path of a file under the repository's tests/golden.
pub fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("golden").join(rel)
}

/// The default model exported as a Hugging Face folder by tests/reference/export_hf_folder.py
/// (`.ci/run` writes it to `$EDGEWISE_HOME/reference/gemma3-270m-hf`), if present. Like
/// [`model_path`], missing fails under `EDGEWISE_REQUIRE_MODEL` and skips loudly otherwise.
pub fn hf_folder_path() -> Option<PathBuf> {
    let p = std::env::var_os("EDGEWISE_HF_FOLDER")
        .map(PathBuf::from)
        .or_else(|| edgewise_core::catalog::edgewise_home().ok().map(|h| h.join("reference").join("gemma3-270m-hf")))?;
    if p.join("config.json").exists() {
        return Some(p);
    }
    if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some() {
        panic!("EDGEWISE_REQUIRE_MODEL is set but {} is missing: run tests/reference/export_hf_folder.py", p.display());
    }
    eprintln!("SKIPPED: no HF folder at {} (tests/reference/export_hf_folder.py writes it)", p.display());
    None
}

/// Where a synthesized GGUF lives: `$EDGEWISE_HOME/reference/synth/<name>.gguf`.
pub fn synth_path(name: &str) -> Option<PathBuf> {
    Some(edgewise_core::catalog::edgewise_home().ok()?.join("reference").join("synth").join(format!("{name}.gguf")))
}

/// A synthesized GGUF written by the script `maker` (as `.ci/run` does), if present. Like
/// [`model_path`], missing fails under `EDGEWISE_REQUIRE_MODEL` and skips loudly otherwise.
pub fn synth_model(name: &str, maker: &str) -> Option<PathBuf> {
    let p = synth_path(name)?;
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some() {
        panic!("EDGEWISE_REQUIRE_MODEL is set but {} is missing: run {maker}", p.display());
    }
    eprintln!("SKIPPED: no {} ({maker} writes it)", p.display());
    None
}

/// A temporary copy of the GGUF at `path` whose `tokenizer.chat_template` is the golden template
/// `tests/golden/<template>` (e.g. the real Qwen 3.5 one in place of a vocabulary file's plain
/// ChatML), named with `tag` and the process id; the caller removes it once loaded.
pub fn with_chat_template(path: &std::path::Path, template: &str, tag: &str) -> PathBuf {
    use edgewise_core::gguf::{writer::GgufWriter, GgufFile, MetaValue};
    let text = std::fs::read_to_string(golden(template)).unwrap();
    let f = GgufFile::open(path).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        let v = if k == "tokenizer.chat_template" { MetaValue::String(text.clone()) } else { v.clone() };
        w = w.kv(k, v);
    }
    for t in f.tensors() {
        w = w.tensor(&t.name, &t.shape, t.ty, f.tensor_data(t).unwrap().to_vec());
    }
    let out = std::env::temp_dir().join(format!("edgewise-{tag}-{}.gguf", std::process::id()));
    std::fs::write(&out, w.to_bytes()).unwrap();
    out
}
