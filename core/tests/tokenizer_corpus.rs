//! Acceptance: the tokenizer built from the Gemma 3 GGUF metadata gives exactly the ids of the
//! reference Hugging Face tokenizer.json (loaded with the `tokenizers` crate) on every corpus
//! string, decodes back to the text, and has the same vocabulary, merges and pipeline.
//!
//! Failures name corpus indices only (the corpus may hold arbitrary text).

mod tokenizer_common;

use std::collections::HashSet;
use std::time::Instant;

use edgewise_core::tokenizer::Tokenizer;
use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;

fn reference(path: &std::path::Path) -> HfTokenizer {
    let t = Instant::now();
    let r = HfTokenizer::from_file(path).expect("load reference tokenizer.json");
    eprintln!("loaded reference tokenizer.json in {:.2?}", t.elapsed());
    r
}

#[test]
fn gguf_tokenizer_matches_reference_on_corpus() {
    let Some((model, ref_path)) = tokenizer_common::model_and_reference() else { return };
    let v = tokenizer_common::gguf_vocab(&model);
    let ours = tokenizer_common::build_from_gguf(&v);
    let reference = reference(&ref_path);
    let corpus = tokenizer_common::corpus();
    assert!(corpus.len() >= 1000, "corpus has only {} strings", corpus.len());

    assert_eq!(ours.bos_id(), Some(2));
    assert!(ours.add_bos_default());
    // llama.cpp's end-of-generation set for Gemma 3 (`llama_vocab_is_eog`, tests/golden/stop_tokens.json):
    // <eos>, <end_of_turn> and the plain-text `</s>` piece (id 212).
    assert_eq!(ours.eos_ids(), vec![1, 106, 212]);
    assert_eq!(ours.vocab_size(), 262_144);

    // Strings holding control-token text: encode parses them, encode_user_text must not.
    let control = [
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<bos>",
        "<eos>",
        "<pad>",
        "<unk>",
        "<mask>",
        "<unused",
    ];
    let mut id_mismatch = Vec::new();
    let mut roundtrip_mismatch = Vec::new();
    let mut ref_decode_mismatch = Vec::new();
    let mut user_text_mismatch = Vec::new();
    let t = Instant::now();
    for (i, text) in corpus.iter().enumerate() {
        let want = reference.encode(text.as_str(), true).expect("reference encode");
        let got = ours.encode(text, ours.add_bos_default()).expect("encode");
        if got != want.get_ids() {
            id_mismatch.push(i);
            continue;
        }
        // Decoding gives the text back: drop the BOS the post-processor added, keep every other
        // id (control-token text in the input decodes back to itself).
        let body = got.get(1..).unwrap_or_default();
        if ours.decode(body, false).expect("decode") != *text {
            roundtrip_mismatch.push(i);
        }
        for skip in [false, true] {
            let a = ours.decode(&got, skip).expect("decode");
            if a != reference.decode(want.get_ids(), skip).expect("reference decode") {
                ref_decode_mismatch.push(i);
            }
        }
        // Without control-token strings, the user-text path must give the same ids.
        if !control.iter().any(|c| text.contains(c)) {
            let user = ours.encode_user_text(text, true).expect("encode_user_text");
            if user != got {
                user_text_mismatch.push(i);
            }
        }
    }
    eprintln!(
        "corpus: {} strings, {} id mismatches, {} round-trip mismatches, {} decode-vs-reference \
         mismatches, {} user-text mismatches ({:.2?})",
        corpus.len(),
        id_mismatch.len(),
        roundtrip_mismatch.len(),
        ref_decode_mismatch.len(),
        user_text_mismatch.len(),
        t.elapsed()
    );
    eprintln!("corpus ids: {}/{} match the reference", corpus.len() - id_mismatch.len(), corpus.len());
    assert!(id_mismatch.is_empty(), "ids differ from the reference at corpus indices {id_mismatch:?}");
    assert!(roundtrip_mismatch.is_empty(), "decode(encode(text)) != text at corpus indices {roundtrip_mismatch:?}");
    assert!(ref_decode_mismatch.is_empty(), "decode differs from the reference at {ref_decode_mismatch:?}");
    assert!(user_text_mismatch.is_empty(), "encode_user_text differs from encode at {user_text_mismatch:?}");
}

#[test]
fn control_tokens_typed_by_users_stay_text() {
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let ours = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    let text = "hi <start_of_turn>model\n<end_of_turn><bos><eos><unused3><mask>";
    let parsed = ours.encode(text, false).unwrap();
    assert!(parsed.contains(&105) && parsed.contains(&106) && parsed.contains(&2));
    let user = ours.encode_user_text(text, false).unwrap();
    // No control id at all: 0..=4, 105, 106 and the <unusedN> range are all control tokens.
    let control: HashSet<u32> = (0..=4).chain([105, 106]).chain(6..=104).collect();
    assert!(user.iter().all(|id| !control.contains(id)), "a control id leaked into user text");
    assert_eq!(ours.decode(&user, false).unwrap(), text);
    // With BOS requested, exactly one BOS at the front.
    let user_bos = ours.encode_user_text(text, true).unwrap();
    assert_eq!(user_bos[0], 2);
    assert_eq!(&user_bos[1..], &user[..]);
}

/// The model JSON (vocab + merges, in order), normalizer, pre-tokenizer, decoder and post-processor
/// are identical to the reference file; so are the added tokens, except the reference's
/// `<image_soft_token>` (262144), which the GGUF does not have.
#[test]
fn vocab_merges_and_pipeline_equal_reference() {
    let Some((model, ref_path)) = tokenizer_common::model_and_reference() else { return };
    let ours = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    let ours: Value = serde_json::from_str(&ours.to_json().unwrap()).unwrap();
    let theirs: Value = serde_json::from_str(&std::fs::read_to_string(&ref_path).unwrap()).unwrap();

    let (om, tm) = (&ours["model"], &theirs["model"]);
    let (ov, tv) = (om["vocab"].as_object().unwrap(), tm["vocab"].as_object().unwrap());
    eprintln!("vocab: ours {} reference {}", ov.len(), tv.len());
    assert_eq!(ov.len(), tv.len(), "vocab sizes differ");
    let vocab_diff = ov.iter().filter(|(k, v)| tv.get(*k) != Some(v)).count();
    assert_eq!(vocab_diff, 0, "{vocab_diff} vocab entries differ");
    let (omerges, tmerges) = (om["merges"].as_array().unwrap(), tm["merges"].as_array().unwrap());
    eprintln!("merges: ours {} reference {}", omerges.len(), tmerges.len());
    assert_eq!(omerges.len(), tmerges.len(), "merge counts differ");
    let first_diff = omerges.iter().zip(tmerges).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "merges differ first at rank {first_diff:?}");
    for key in ["type", "unk_token", "fuse_unk", "byte_fallback", "ignore_merges", "dropout"] {
        assert_eq!(om[key], tm[key], "model.{key}");
    }
    for key in ["normalizer", "pre_tokenizer", "decoder", "post_processor"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    let theirs_added: Vec<&Value> =
        theirs["added_tokens"].as_array().unwrap().iter().filter(|t| t["id"].as_u64() < Some(262_144)).collect();
    let ours_added: Vec<&Value> = ours["added_tokens"].as_array().unwrap().iter().collect();
    eprintln!("added tokens: ours {} reference {} (of which < 262144)", ours_added.len(), theirs_added.len());
    assert_eq!(ours_added, theirs_added, "added tokens differ");
}

/// Build once into a temporary cache, load it back, and check the cached tokenizer behaves the same.
#[test]
fn cache_round_trip_and_timings() {
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let v = tokenizer_common::gguf_vocab(&model);
    let dir = std::env::temp_dir().join(format!("edgewise-tok-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let built = Tokenizer::from_gguf_vocab_cached(&v, &dir, "gemma3-test").unwrap();
    let build_time = t.elapsed();
    let t = Instant::now();
    let cached = Tokenizer::from_gguf_vocab_cached(&v, &dir, "gemma3-test").unwrap();
    let load_time = t.elapsed();
    eprintln!("tokenizer: build + write merge cache {build_time:.2?}, build with cached merges {load_time:.2?}");
    let cache_file = dir.join("gemma3-test.merges.bin");
    assert!(cache_file.is_file());
    let as_json = |t: &Tokenizer| -> Value { serde_json::from_str(&t.to_json().unwrap()).unwrap() };
    assert_eq!(as_json(&built), as_json(&cached), "cached build differs");
    for text in tokenizer_common::corpus().iter().step_by(7) {
        assert_eq!(built.encode(text, true).unwrap(), cached.encode(text, true).unwrap());
        assert_eq!(built.encode_user_text(text, true).unwrap(), cached.encode_user_text(text, true).unwrap());
    }
    assert_eq!(built.eos_ids(), cached.eos_ids());
    // A damaged cache is rebuilt, not trusted; so is one from another vocabulary.
    let mut bytes = std::fs::read(&cache_file).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&cache_file, &bytes).unwrap();
    let rebuilt = Tokenizer::from_gguf_vocab_cached(&v, &dir, "gemma3-test").unwrap();
    assert_eq!(as_json(&rebuilt), as_json(&built));
    let mut other = v.clone();
    other.scores.as_mut().unwrap()[1000] -= 0.5;
    let t_other = Tokenizer::from_gguf_vocab_cached(&other, &dir, "gemma3-test").unwrap();
    assert_eq!(
        as_json(&t_other)["model"]["merges"],
        as_json(&Tokenizer::from_gguf_vocab(&other).unwrap())["model"]["merges"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reference file loaded through our wrapper agrees with the GGUF-built tokenizer on the facts
/// the engine uses.
#[test]
fn from_file_detects_special_ids() {
    let Some((_, ref_path)) = tokenizer_common::model_and_reference() else { return };
    let t = Tokenizer::from_file(&ref_path).unwrap();
    assert_eq!(t.bos_id(), Some(2));
    assert!(t.add_bos_default());
    assert_eq!(t.eos_ids(), vec![1, 106, 212]); // as llama.cpp's EOG rule (tests/golden/stop_tokens.json)
    assert_eq!(t.encode("<start_of_turn>user\nHi", true).unwrap()[..3], [2, 105, 2364]);
    assert!(!t.encode_user_text("<start_of_turn>", false).unwrap().contains(&105));
}

/// Optional: llama.cpp's own ids for the corpus, if a teammate produced the golden file.
#[test]
fn matches_llama_cpp_golden_if_present() {
    let path = tokenizer_common::repo_root().join("tests/golden/gemma3/llama_tokenize.jsonl");
    if !path.is_file() {
        eprintln!("SKIPPED: {} not present", path.display());
        return;
    }
    let Some((model, _)) = tokenizer_common::model_and_reference() else { return };
    let ours = tokenizer_common::build_from_gguf(&tokenizer_common::gguf_vocab(&model));
    let text = std::fs::read_to_string(&path).unwrap();
    let (mut n, mut bad) = (0usize, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue }; // header/comment lines
        let (Some(s), Some(ids)) = (v["text"].as_str(), v["ids"].as_array()) else { continue };
        let want: Vec<u32> = ids.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect();
        let add_bos = want.first() == Some(&2);
        n += 1;
        if ours.encode(s, add_bos).unwrap() != want {
            bad.push(i);
        }
    }
    eprintln!("llama.cpp golden: {}/{} match", n - bad.len(), n);
    assert!(bad.is_empty(), "ids differ from llama.cpp at lines {bad:?}");
}
