//! Other vocabulary families, built from llama.cpp's vocab-only GGUFs and checked against the ids
//! in llama.cpp's `.out` files (which llama.cpp generates with the Hugging Face tokenizer).
//!
//! The files come from `tests/reference/fetch_llama_vocab.py` into
//! `$EDGEWISE_HOME/reference/llama-vocab/`. Skipped loudly when absent (CI fetches them).

mod tokenizer_common;

use std::path::PathBuf;

use edgewise_core::gguf::GgufFile;
use edgewise_core::tokenizer::{GgufVocab, Tokenizer};

fn vocab_dir() -> Option<PathBuf> {
    let home = std::env::var_os("EDGEWISE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("edgewise"));
    let dir = home.join("reference").join("llama-vocab");
    if dir.join("ggml-vocab-llama-bpe.gguf").is_file() {
        return Some(dir);
    }
    let msg = format!("llama.cpp vocab files missing in {} (run tests/reference/fetch_llama_vocab.py)", dir.display());
    if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    None
}

/// Open a vocab-only GGUF. These files have no tensors and end right after the metadata, without
/// padding up to `general.alignment`; llama.cpp and gguf-py accept them, and so must we.
fn open_vocab_only(path: &std::path::Path) -> GgufFile {
    GgufFile::open(path).unwrap_or_else(|e| panic!("{} must open as it is: {e}", path.display()))
}

/// Returns (matches, total, mismatching case indices).
fn check_family(name: &str) -> Option<(usize, usize, Vec<usize>)> {
    let dir = vocab_dir()?;
    let gguf = dir.join(format!("ggml-vocab-{name}.gguf"));
    let v = GgufVocab::from_metadata(open_vocab_only(&gguf).metadata()).expect("tokenizer metadata");
    let tok = Tokenizer::from_gguf_vocab(&v).expect("build tokenizer");
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.out"))).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<&str> = out.split('\n').collect();
    assert_eq!(texts.len(), expected.len(), "{name}: .inp and .out disagree on the number of cases");
    let mut bad = Vec::new();
    let mut n = 0;
    for (i, (text, want)) in texts.iter().zip(&expected).enumerate() {
        if i + 1 == texts.len() && text.is_empty() {
            continue; // the trailing separator
        }
        n += 1;
        let want: Vec<u32> = want.split_whitespace().map(|x| x.parse().unwrap()).collect();
        // llama.cpp's test-tokenizer-0 tokenizes without BOS/EOS.
        let got = tok.encode(text, false).unwrap();
        if got != want {
            bad.push(i);
        }
        // Decoding must give the text back (up to the SentencePiece leading space).
        let back = tok.decode(&got, false).unwrap();
        assert!(back == *text || back.trim_start() == text.trim_start(), "{name}: case {i} does not round-trip");
    }
    eprintln!("{name}: {}/{n} cases match llama.cpp's expected ids", n - bad.len());
    Some((n - bad.len(), n, bad))
}

macro_rules! family {
    ($test:ident, $name:literal) => {
        #[test]
        fn $test() {
            let Some((ok, n, bad)) = check_family($name) else { return };
            assert_eq!(ok, n, "{}: cases {:?} differ", $name, bad);
        }
    };
}

family!(llama3_bpe, "llama-bpe");
family!(qwen2_bpe, "qwen2");
family!(qwen35_bpe, "qwen35");
family!(gpt2_bpe, "gpt-2");
family!(starcoder_bpe, "starcoder");
family!(refact_bpe, "refact");
family!(llama2_sentencepiece, "llama-spm");
family!(phi3_sentencepiece, "phi-3");

/// `tests/golden/stop_tokens.json` (tests/reference/make_stop_token_goldens.py): the ids llama.cpp's
/// `llama_vocab_is_eog` accepts, for each vocab-only GGUF (and the default model when present).
#[test]
fn stop_sets_match_llama_cpp() {
    let Some(dir) = vocab_dir() else { return };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/stop_tokens.json"))
            .unwrap(),
    )
    .unwrap();
    let default_model = dir.parent().and_then(|r| r.parent()).map(|h| h.join("models"));
    let mut checked = 0;
    for (file, want) in golden["vocabs"].as_object().unwrap() {
        let path = if file.starts_with("ggml-vocab-") {
            dir.join(file)
        } else {
            match default_model.as_ref().map(|m| m.join(file)).filter(|p| p.is_file()) {
                Some(p) => p,
                None => {
                    eprintln!("stop set of {file}: model file absent, not checked");
                    continue;
                }
            }
        };
        let v = GgufVocab::from_metadata(open_vocab_only(&path).metadata()).expect("tokenizer metadata");
        let tok = Tokenizer::from_gguf_vocab(&v).expect("build tokenizer");
        let want_ids: Vec<u32> =
            want["eog_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.eos_ids(), want_ids, "{file}: stop set differs from llama.cpp's EOG ids");
        assert_eq!(tok.eos_id().map(u64::from), want["eos"].as_u64(), "{file}: EOS");
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} vocabularies checked");
}
