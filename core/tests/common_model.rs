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
