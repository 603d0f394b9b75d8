//! The encoder against the NumPy reference (`tests/reference/make_embed_goldens.py`,
//! `make_bert_synth.py`): token ids exactly, vectors by cosine with stated thresholds.

use std::path::{Path, PathBuf};

use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Golden {
    id: u64,
    text: String,
    ids: Vec<u32>,
    truncated: bool,
    embedding: Vec<f32>,
}

/// `texts.jsonl` joined with a goldens file (first line: the header) by id.
fn goldens(file: &str) -> Vec<Golden> {
    let texts: std::collections::HashMap<u64, String> =
        std::fs::read_to_string(repo().join("tests/golden/minilm/texts.jsonl"))
            .expect("texts")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("text line");
                (v["id"].as_u64().expect("id"), v["text"].as_str().expect("text").to_owned())
            })
            .collect();
    std::fs::read_to_string(repo().join(file))
        .expect("goldens")
        .lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("golden line");
            let id = v["id"].as_u64().expect("id");
            Golden {
                id,
                text: texts[&id].clone(),
                ids: v["ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect(),
                truncated: v["truncated"].as_bool().expect("truncated"),
                embedding: v["embedding"]
                    .as_array()
                    .expect("embedding")
                    .iter()
                    .map(|x| x.as_f64().expect("f") as f32)
                    .collect(),
            }
        })
        .collect()
}

/// The unpacked MiniLM folder, or `None` (a loud skip) when it was not fetched; a failure when
/// `EDGEWISE_REQUIRE_MODEL` is set.
fn minilm_dir() -> Option<PathBuf> {
    let c = crate::catalog::Catalog::builtin().expect("catalog");
    let dir = c
        .get(DEFAULT_EMBEDDING_MODEL)
        .expect("entry")
        .unpacked_in(&crate::catalog::edgewise_home().expect("home"))
        .expect("unpack entry");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    let msg = format!("{} is missing (run `edgewise models fetch {DEFAULT_EMBEDDING_MODEL}`)", dir.display());
    if std::env::var_os(crate::catalog::REQUIRE_MODEL_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{msg}");
    }
    eprintln!("SKIP (model-dependent test): {msg}");
    None
}

/// Per golden: (cosine, our vector). Asserts the token ids and the truncation flag first.
fn compare(e: &Embedder, gs: &[Golden]) -> Vec<(f32, Vec<f32>)> {
    let texts: Vec<&str> = gs.iter().map(|g| g.text.as_str()).collect();
    let got = e.embed_batch(&texts).expect("embed");
    gs.iter()
        .zip(got)
        .map(|(g, r)| {
            let (ids, _, truncated) = e.tokenize(&g.text).expect("tokenize");
            assert_eq!(ids, g.ids, "token ids of text {}", g.id);
            assert_eq!((truncated, r.truncated), (g.truncated, g.truncated), "truncation flag of text {}", g.id);
            assert_eq!(r.tokens, g.ids.len());
            (cosine(&r.vector, &g.embedding).expect("same dims"), r.vector)
        })
        .collect()
}

fn min_cos(rs: &[(f32, Vec<f32>)]) -> (usize, f32) {
    rs.iter().enumerate().map(|(i, r)| (i, r.0)).fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
}

/// A copy of `dir` (files linked) with `config.json`'s `hidden_act` replaced.
fn with_act(dir: &Path, act: &str, tag: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("edgewise-embed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("1_Pooling")).expect("mkdir");
    for f in
        ["model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]
    {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), out.join(f)).expect("copy");
        }
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config")).expect("json");
    cfg["hidden_act"] = act.into();
    std::fs::write(out.join("config.json"), cfg.to_string()).expect("write");
    out
}

// Thresholds. f32: the issue asks for cosine >= 0.9999, but GELU-tanh in place of erf still
// reaches 0.999994 on MiniLM, so that bound would not catch a wrong activation; we demand
// 1 − 1e-6. Our f32 path differs from NumPy's only in summation order (gemm blocking, packed vs
// padded batches) and erf (1.2e-7): the measured worst rounds to 1.0 in f32. Q8_0 (the issue's
// 0.999): every weight and activation of the products rounded to 8 bits per block of 32.
const F32_MIN_COS: f32 = 0.999_999;
const Q8_MIN_COS: f32 = 0.999;

#[test]
fn minilm_f32_matches_the_numpy_reference_on_200_texts() {
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    assert_eq!(gs.len(), 200);
    assert!(
        gs.iter().any(|g| g.truncated) && gs.iter().any(|g| g.ids.len() == 2),
        "the set has empty and truncated texts"
    );
    let e = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load");
    assert_eq!((e.dim(), e.max_tokens(), e.pooling(), e.normalizes()), (384, 256, Pooling::Mean, true));
    let rs = compare(&e, &gs);
    let (i, worst) = min_cos(&rs);
    eprintln!("minilm f32: worst cosine {worst:.9} (text {})", gs[i].id);
    assert!(worst >= F32_MIN_COS, "text {}: cosine {worst}", gs[i].id);
    for (_, v) in &rs {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "normalized: {n}");
    }
}

#[test]
fn minilm_batches_give_the_same_vectors_as_one_at_a_time() {
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    // Mixed lengths (empty, short, 256-token) in one pass, and again split into small passes.
    let texts: Vec<&str> = gs.iter().step_by(7).map(|g| g.text.as_str()).collect();
    let one = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load");
    let small =
        Embedder::from_folder(&dir, EmbedOptions { max_batch_tokens: 64, ..EmbedOptions::default() }).expect("load");
    let batch = one.embed_batch(&texts).expect("batch");
    let split = small.embed_batch(&texts).expect("split");
    for (i, t) in texts.iter().enumerate() {
        let single = one.embed(t).expect("single");
        for other in [&batch[i].vector, &split[i].vector] {
            let diff = single.iter().zip(other).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // Same arithmetic per row; only gemm's blocking over a different row count may
            // reorder sums.
            assert!(diff < 1e-5, "text {i}: batch differs from single by {diff}");
        }
    }
}

#[test]
fn minilm_q8_0_matches_the_numpy_reference() {
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    let e = Embedder::from_folder(&dir, EmbedOptions { weights: EncoderWeights::Q8_0, ..EmbedOptions::default() })
        .expect("load");
    let rs = compare(&e, &gs);
    let (i, worst) = min_cos(&rs);
    let mean = rs.iter().map(|r| r.0 as f64).sum::<f64>() / rs.len() as f64;
    eprintln!("minilm q8_0: worst cosine {worst:.6} (text {}), mean {mean:.6}", gs[i].id);
    assert!(worst >= Q8_MIN_COS, "text {}: cosine {worst}", gs[i].id);
    assert_ne!(
        e.fingerprint(),
        Embedder::from_folder(&dir, EmbedOptions::default()).expect("load").fingerprint(),
        "weight modes are told apart"
    );
}

#[test]
fn the_comparison_catches_gelu_tanh_instead_of_erf() {
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    let wrong = with_act(&dir, "gelu_new", "tanh");
    let e = Embedder::from_folder(&wrong, EmbedOptions::default()).expect("load");
    let (_, worst) = min_cos(&compare(&e, &gs));
    eprintln!("minilm with GELU-tanh: worst cosine {worst:.8}");
    assert!(worst < F32_MIN_COS, "a wrong activation must fail the f32 threshold (worst {worst})");
    let _ = std::fs::remove_dir_all(wrong);
}

#[test]
fn the_comparison_catches_attention_across_texts() {
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    let e = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load");
    // Attention over every token of the pass: what a padded batch without its mask does.
    bert::UNMASKED.with(|u| u.set(true));
    let rs = compare(&e, &gs[..32]);
    bert::UNMASKED.with(|u| u.set(false));
    let (_, worst) = min_cos(&rs);
    eprintln!("minilm without the per-text mask: worst cosine {worst:.6}");
    assert!(worst < F32_MIN_COS, "attention leaking across texts must fail (worst {worst})");
}

#[test]
fn a_second_bert_with_cls_pooling_and_f16_weights_matches_the_numpy_reference() {
    let dir = repo().join("tests/golden/bert-synth/model");
    let gs = goldens("tests/golden/bert-synth/embeddings_f32.jsonl");
    let e = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load");
    assert_eq!((e.dim(), e.max_tokens(), e.pooling(), e.normalizes()), (64, 24, Pooling::Cls, false));
    let rs = compare(&e, &gs);
    let (i, worst) = min_cos(&rs);
    eprintln!("bert-synth f32: worst cosine {worst:.8}");
    assert!(worst >= F32_MIN_COS, "text {}: cosine {worst}", gs[i].id);
    // Not normalized: the lengths must agree too (relative 1e-4).
    for ((_, v), g) in rs.iter().zip(&gs) {
        let (a, b) =
            (v.iter().map(|x| x * x).sum::<f32>().sqrt(), g.embedding.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!((a - b).abs() <= 1e-4 * b, "text {}: norm {a} vs {b}", g.id);
    }
    let q8 = Embedder::from_folder(&dir, EmbedOptions { weights: EncoderWeights::Q8_0, ..EmbedOptions::default() })
        .expect("load");
    let (_, worst_q8) = min_cos(&compare(&q8, &gs));
    eprintln!("bert-synth q8_0: worst cosine {worst_q8:.6}");
    // Random, untrained weights over 64 dimensions and an unnormalized CLS vector are harsher on
    // 8-bit products than a trained model (measured 0.9985); the issue's 0.999 applies to MiniLM.
    assert!(worst_q8 >= 0.998, "{worst_q8}");
    // Wrong variant: attention across the texts of a pass fails here as well. (GELU-tanh does
    // not: this random model's FFN inputs stay where tanh and erf agree to ~1e-4; MiniLM's
    // tests above catch it.)
    bert::UNMASKED.with(|u| u.set(true));
    let leaked = compare(&e, &gs[..24]);
    bert::UNMASKED.with(|u| u.set(false));
    let (_, worst_wrong) = min_cos(&leaked);
    assert!(worst_wrong < F32_MIN_COS, "worst {worst_wrong}");
}

#[test]
fn bad_input_and_bad_folders_get_typed_errors() {
    let dir = repo().join("tests/golden/bert-synth/model");
    let e = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load");
    // Empty: [CLS] [SEP]; huge (under the byte limit): truncated to the model's limit, said so.
    let r = e.embed_batch(&["", &"shoe ".repeat(50_000)]).expect("embed");
    assert_eq!((r[0].tokens, r[0].truncated), (2, false));
    assert_eq!((r[1].tokens, r[1].truncated), (24, true));
    assert!(r.iter().all(|x| x.vector.iter().all(|v| v.is_finite())));
    // Over the per-call limit: refused before tokenizing.
    let big = "a".repeat(crate::MAX_INPUT_BYTES + 1);
    assert!(matches!(e.embed(&big), Err(Error::InputTooLarge { .. })));
    // Vectors of the wrong size or with NaN.
    assert!(matches!(check_vector(&[0.0; 3], 4), Err(Error::DimensionMismatch { expected: 4, found: 3 })));
    assert!(matches!(check_vector(&[0.0, f32::NAN], 2), Err(Error::NonFinite { .. })));
    assert!(matches!(cosine(&[1.0], &[1.0, 2.0]), Err(Error::DimensionMismatch { .. })));
    assert!(check_vector(&e.embed("red shoe").expect("embed"), e.dim()).is_ok());
    assert!(matches!(
        EmbedOptions { max_batch_tokens: 0, ..EmbedOptions::default() }.validate(),
        Err(Error::InvalidParameter { .. })
    ));

    // Folders: missing, wrong dims, NaN weights, unsupported pooling.
    let tmp = std::env::temp_dir().join(format!("edgewise-embed-bad-{}", std::process::id()));
    assert!(matches!(Embedder::from_folder(&tmp, EmbedOptions::default()), Err(Error::InvalidModelFolder { .. })));
    let bad = with_act(&dir, "gelu", "bad");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bad.join("config.json")).unwrap()).unwrap();
    cfg["hidden_size"] = 128.into();
    std::fs::write(bad.join("config.json"), cfg.to_string()).unwrap();
    assert!(
        matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::TensorShape { .. })),
        "wrong dims"
    );
    cfg["hidden_size"] = 66.into();
    std::fs::write(bad.join("config.json"), cfg.to_string()).unwrap();
    assert!(
        matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::InvalidModelFolder { .. })),
        "66 is not a multiple of 4 heads"
    );
    cfg["hidden_size"] = 64.into();
    cfg["hidden_act"] = "swish".into();
    std::fs::write(bad.join("config.json"), cfg.to_string()).unwrap();
    assert!(matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::UnsupportedArchitecture { .. })));
    cfg["hidden_act"] = "gelu".into();
    std::fs::write(bad.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(bad.join("1_Pooling/config.json"), r#"{"pooling_mode_max_tokens": true}"#).unwrap();
    assert!(matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::UnsupportedArchitecture { .. })));
    std::fs::copy(dir.join("1_Pooling/config.json"), bad.join("1_Pooling/config.json")).unwrap();
    // A NaN in the weights is refused at load, so no NaN vector can come out of it.
    let mut st = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    st[8 + n..8 + n + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    std::fs::write(bad.join("model.safetensors"), &st).unwrap();
    assert!(matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::Tensor { .. })));
    // A truncated safetensors file.
    std::fs::write(bad.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    assert!(matches!(Embedder::from_folder(&bad, EmbedOptions::default()), Err(Error::InvalidModelFolder { .. })));
    let _ = std::fs::remove_dir_all(bad);
}

// ---- GGUF (llama.cpp's `bert` architecture) against llama.cpp's embedding of the same file ----

/// `(path, goldens)` of the MiniLM GGUF of type `ty` (`tests/reference/minilm_to_gguf.py`) and
/// llama.cpp's embeddings of it (`tests/reference/make_gguf_embed_goldens.py`); `None` (a loud
/// skip, a failure under `EDGEWISE_REQUIRE_MODEL`) when the file was not made. The file must be
/// the one the goldens were made from (sha256 in the goldens' header).
fn minilm_gguf(ty: &str) -> Option<(PathBuf, Vec<Golden>)> {
    let file = format!("tests/golden/minilm/gguf_llama_{ty}.jsonl");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(repo().join(&file)).expect("goldens").lines().next().expect("header"),
    )
    .expect("header json");
    let path = crate::catalog::edgewise_home().expect("home").join(format!("reference/minilm-gguf/minilm-{ty}.gguf"));
    if !path.is_file() {
        let msg = format!(
            "{} is missing (run `tests/reference/minilm_to_gguf.py <all-minilm-l6-v2 folder> {} {ty}`)",
            path.display(),
            path.display()
        );
        if std::env::var_os(crate::catalog::REQUIRE_MODEL_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            panic!("{msg}");
        }
        eprintln!("SKIP (model-dependent test): {msg}");
        return None;
    }
    let sha = hex::encode(Sha256::digest(std::fs::read(&path).expect("read gguf")));
    assert_eq!(
        sha,
        header["header"]["gguf_sha256"].as_str().expect("sha"),
        "{} is not the file the goldens came from",
        path.display()
    );
    Some((path, goldens(&file)))
}

/// (worst cosine and its text id, largest |‖v‖ − ‖golden‖|) of `e` against `gs`.
fn gguf_score(e: &Embedder, gs: &[Golden]) -> ((f32, u64), f32) {
    let rs = compare(e, gs);
    let (i, worst) = min_cos(&rs);
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt() as f32;
    let dn = rs.iter().zip(gs).map(|((_, v), g)| (norm(v) - norm(&g.embedding)).abs()).fold(0f32, f32::max);
    ((worst, gs[i].id), dn)
}

#[test]
fn minilm_gguf_matches_llama_cpp_on_200_texts_f32_f16_q8_0() {
    for (ty, min) in [("f32", 0.9999f32), ("f16", 0.9999), ("q8_0", 0.999)] {
        let Some((path, gs)) = minilm_gguf(ty) else { return };
        assert_eq!(gs.len(), 200);
        assert!(gs.iter().any(|g| g.truncated), "the set has texts over 512 tokens");
        let e = Embedder::load(path.to_str().expect("utf-8"), EmbedOptions::default()).expect("load gguf");
        assert_eq!((e.dim(), e.max_tokens(), e.pooling(), e.normalizes()), (384, 512, Pooling::Mean, true));
        // `compare` asserts our GGUF tokenizer's ids equal HF's tokenizer.json ids on every text.
        let ((worst, id), dn) = gguf_score(&e, &gs);
        eprintln!(
            "minilm gguf {ty} vs llama.cpp: worst cosine {worst:.7} (text {id}), largest norm difference {dn:.2e}"
        );
        assert!(worst >= min, "{ty}: text {id}: cosine {worst}");
        assert!(dn < 1e-4, "{ty}: vectors are unit length as llama.cpp's (normalize=True): {dn}");
    }
}

#[test]
fn minilm_gguf_wrong_variants_fail_the_comparison() {
    let Some((path, gs)) = minilm_gguf("f32") else { return };
    let mut e = Embedder::from_gguf(&path, EmbedOptions::default()).expect("load gguf");
    // CLS pooling where the file says mean.
    e.pooling = Pooling::Cls;
    let ((worst, _), _) = gguf_score(&e, &gs);
    eprintln!("minilm gguf with CLS pooling: worst cosine {worst:.6}");
    assert!(worst < 0.9999, "CLS pooling must fail ({worst})");
    // No normalization: the cosine cannot see it, the lengths do.
    e.pooling = Pooling::Mean;
    e.normalize = false;
    let ((worst, _), dn) = gguf_score(&e, &gs);
    eprintln!("minilm gguf without normalization: worst cosine {worst:.7}, largest norm difference {dn:.3}");
    assert!(dn > 1e-2, "unnormalized vectors must fail the length check ({dn})");
    // Attention across the texts of a pass.
    e.normalize = true;
    bert::UNMASKED.with(|u| u.set(true));
    let ((worst, _), _) = gguf_score(&e, &gs[..32]);
    bert::UNMASKED.with(|u| u.set(false));
    assert!(worst < 0.9999, "attention across texts must fail ({worst})");
}

#[test]
fn minilm_gguf_agrees_with_the_safetensors_folder() {
    let Some(dir) = minilm_dir() else { return };
    let st = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    let folder = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load folder");
    for (ty, min) in [("f32", 0.999_999f32), ("f16", 0.9999), ("q8_0", 0.997)] {
        let Some((path, _)) = minilm_gguf(ty) else { return };
        let e = Embedder::from_gguf(&path, EmbedOptions::default()).expect("load gguf");
        // The folder truncates at 256 tokens, the GGUF at 512: the texts under 256.
        let texts: Vec<&str> = st.iter().filter(|g| !g.truncated).map(|g| g.text.as_str()).collect();
        assert!(texts.len() >= 190);
        let a = folder.embed_batch(&texts).expect("folder");
        let b = e.embed_batch(&texts).expect("gguf");
        let mut worst = 1f32;
        for (t, (x, y)) in texts.iter().zip(a.iter().zip(&b)) {
            assert_eq!(folder.tokenize(t).expect("ids").0, e.tokenize(t).expect("ids").0, "same token ids");
            worst = worst.min(cosine(&x.vector, &y.vector).expect("dims"));
        }
        eprintln!(
            "minilm gguf {ty} vs the safetensors folder (f32): worst cosine {worst:.7} over {} texts",
            texts.len()
        );
        assert!(worst >= min, "{ty}: {worst}");
    }
}

#[test]
fn minilm_gguf_tokenizer_matches_tokenizer_json_on_hard_texts() {
    let Some(dir) = minilm_dir() else { return };
    let Some((path, _)) = minilm_gguf("q8_0") else { return };
    let folder = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load folder");
    let e = Embedder::from_gguf(&path, EmbedOptions::default()).expect("load gguf");
    let long_word = "x".repeat(150);
    let texts = [
        "[CLS] a [SEP] b [PAD][MASK]",
        "[unused5] is a normal token in BERT's vocabulary, [UNK] is special",
        "Ünïcödé CAFÉ naïve résumé Ångström",
        "中文字符和日本語のテキスト",
        "e-mail: a.b@c.co, 3.14159, $12.50, 50%!",
        &long_word,
        "tab\there\u{0}nul\u{fffd}replacement\u{200b}zero-width",
        "👍🏽 great ☕ coffee",
        "##ing ## # ###",
        "   leading and trailing   ",
    ];
    for t in texts {
        let (a, b) = (folder.tokenize(t).expect("folder").0, e.tokenize(t).expect("gguf").0);
        assert_eq!(a, b, "token ids of {t:?}");
    }
    // A wrong variant: ignoring llama.cpp's default (lowercase on when the key is absent) gives
    // other ids; the comparison above would catch it.
    let json = crate::embed::gguf::open(&path).expect("open").tokenizer_json;
    let broken = json.replace("\"lowercase\":true", "\"lowercase\":false");
    assert_ne!(broken, json);
    let broken: tokenizers::Tokenizer = broken.parse().expect("parse");
    let t = "Running SHOES, Café";
    let ids = broken.encode(t, true).expect("encode").get_ids().to_vec();
    assert_ne!(ids, folder.tokenize(t).expect("ids").0);
}

/// A copy of `src` with the first occurrence of `from` replaced by `to` (same length).
fn patched(src: &Path, tag: &str, edits: &[(&[u8], &[u8])]) -> PathBuf {
    let mut b = std::fs::read(src).expect("read");
    for (from, to) in edits {
        assert_eq!(from.len(), to.len());
        let at = b.windows(from.len()).position(|w| w == *from).expect("pattern in file");
        b[at..at + to.len()].copy_from_slice(to);
    }
    let out = std::env::temp_dir().join(format!("edgewise-gguf-{tag}-{}.gguf", std::process::id()));
    std::fs::write(&out, b).expect("write");
    out
}

#[test]
fn bad_gguf_files_get_typed_errors_and_the_pooling_key_is_read() {
    let Some((path, gs)) = minilm_gguf("q8_0") else { return };
    let opts = EmbedOptions::default;
    // `bert.pooling_type` (u32, type id 4) = 1 → 2: CLS pooling, which then fails the goldens.
    let key = b"bert.pooling_type";
    let mut from = key.to_vec();
    from.extend_from_slice(&4u32.to_le_bytes());
    from.extend_from_slice(&1u32.to_le_bytes());
    let mut to = from.clone();
    let n = to.len();
    to[n - 4..].copy_from_slice(&2u32.to_le_bytes());
    let cls = patched(&path, "cls", &[(&from, &to)]);
    let e = Embedder::from_gguf(&cls, opts()).expect("load");
    assert_eq!(e.pooling(), Pooling::Cls);
    let ((worst, _), _) = gguf_score(&e, &gs[..40]);
    assert!(worst < 0.999, "CLS pooling read from the file fails the mean goldens ({worst})");
    // pooling_type 0 (none) and 3 (last): no sentence vector.
    for (v, tag) in [(0u32, "none"), (3, "last")] {
        to[n - 4..].copy_from_slice(&v.to_le_bytes());
        let p = patched(&path, tag, &[(&from, &to)]);
        assert!(matches!(Embedder::from_gguf(&p, opts()), Err(Error::UnsupportedArchitecture { .. })), "{tag}");
        let _ = std::fs::remove_file(p);
    }
    // Another architecture; a missing tensor; a truncated file; a file that is not GGUF.
    let arch =
        patched(&path, "arch", &[(b"\x04\x00\x00\x00\x00\x00\x00\x00bert", b"\x04\x00\x00\x00\x00\x00\x00\x00bart")]);
    assert!(matches!(Embedder::from_gguf(&arch, opts()), Err(Error::UnsupportedArchitecture { .. })));
    let tensor = patched(&path, "tensor", &[(b"blk.3.ffn_up.weight", b"blk.3.ffn_uq.weight")]);
    assert!(matches!(Embedder::from_gguf(&tensor, opts()), Err(Error::Tensor { .. })));
    let bytes = std::fs::read(&path).expect("read");
    let short = std::env::temp_dir().join(format!("edgewise-gguf-short-{}.gguf", std::process::id()));
    std::fs::write(&short, &bytes[..bytes.len() / 2]).expect("write");
    assert!(Embedder::from_gguf(&short, opts()).is_err(), "truncated");
    std::fs::write(&short, b"not a gguf at all").expect("write");
    assert!(matches!(Embedder::from_gguf(&short, opts()), Err(Error::InvalidGguf { .. })));
    for p in [cls, arch, tensor, short] {
        let _ = std::fs::remove_file(p);
    }
}

// ---- The wgpu path (on when EDGEWISE_GPU_TESTS=1; tests/run-all.sh's wgpu step) ----

/// Whether the wgpu tests run (a loud skip otherwise).
fn gpu_tests(name: &str) -> bool {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("SKIPPED: {name} (set EDGEWISE_GPU_TESTS=1)");
    false
}

/// The goldens the wgpu tests run: every `200 / EDGEWISE_GPU_EMBED_TEXTS`-th (all 200 by default;
/// lavapipe in CI takes minutes per 100 texts, so tests/run-all.sh sets fewer).
fn gpu_subset(gs: Vec<Golden>) -> Vec<Golden> {
    let n = std::env::var("EDGEWISE_GPU_EMBED_TEXTS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(gs.len());
    let step = gs.len().div_ceil(n.clamp(1, gs.len().max(1)));
    gs.into_iter().step_by(step).collect()
}

fn on_gpu(weights: EncoderWeights) -> EmbedOptions {
    EmbedOptions { weights, backend: BackendPreference::Gpu, ..EmbedOptions::default() }
}

/// The wgpu thresholds: the issue's 0.9999 (f32) and 0.999 (Q8_0) against the reference.
const GPU_F32_MIN_COS: f32 = 0.9999;

#[test]
fn gpu_minilm_matches_the_numpy_reference_f32_and_q8_0() {
    if !gpu_tests("gpu_minilm_matches_the_numpy_reference_f32_and_q8_0") {
        return;
    }
    let Some(dir) = minilm_dir() else { return };
    let gs = gpu_subset(goldens("tests/golden/minilm/embeddings_f32.jsonl"));
    let cpu = Embedder::from_folder(&dir, EmbedOptions::default()).expect("load cpu");
    let cpu_vs: Vec<Vec<f32>> = cpu
        .embed_batch(&gs.iter().map(|g| g.text.as_str()).collect::<Vec<_>>())
        .expect("cpu")
        .into_iter()
        .map(|e| e.vector)
        .collect();
    for (weights, min) in [(EncoderWeights::F32, GPU_F32_MIN_COS), (EncoderWeights::Q8_0, Q8_MIN_COS)] {
        let e = Embedder::from_folder(&dir, on_gpu(weights)).expect("load gpu");
        assert_eq!(e.backend(), BackendKind::Gpu);
        // Same model, same settings: the same index key as the CPU path's.
        let cpu_same = Embedder::from_folder(&dir, EmbedOptions { weights, ..EmbedOptions::default() }).expect("load");
        assert_eq!(e.fingerprint(), cpu_same.fingerprint());
        let rs = compare(&e, &gs);
        let (i, worst) = min_cos(&rs);
        let vs_cpu = rs.iter().zip(&cpu_vs).map(|(r, c)| cosine(&r.1, c).expect("dims")).fold(1f32, f32::min);
        eprintln!(
            "minilm {weights:?} on wgpu: worst cosine {worst:.7} vs NumPy (text {}), {vs_cpu:.7} vs the CPU f32 path",
            gs[i].id
        );
        assert!(worst >= min, "{weights:?}: text {}: cosine {worst}", gs[i].id);
        if weights == EncoderWeights::F32 {
            assert!(vs_cpu >= GPU_F32_MIN_COS, "f32 gpu vs cpu: {vs_cpu}");
        }
    }
}

#[test]
fn gpu_padded_batches_give_the_same_vectors_as_one_at_a_time_and_need_the_mask() {
    if !gpu_tests("gpu_padded_batches_give_the_same_vectors_as_one_at_a_time_and_need_the_mask") {
        return;
    }
    let Some(dir) = minilm_dir() else { return };
    let gs = goldens("tests/golden/minilm/embeddings_f32.jsonl");
    // Mixed lengths (empty, short, 256-token) in one pass, and again split into small passes.
    let sub: Vec<&Golden> = gs.iter().step_by(13).collect();
    let texts: Vec<&str> = sub.iter().map(|g| g.text.as_str()).collect();
    let lens: Vec<usize> = sub.iter().map(|g| g.ids.len()).collect();
    assert!(lens.iter().min() < lens.iter().max(), "texts of several lengths, so the passes are padded");
    let one = Embedder::from_folder(&dir, on_gpu(EncoderWeights::F32)).expect("load");
    let small = Embedder::from_folder(&dir, EmbedOptions { max_batch_tokens: 64, ..on_gpu(EncoderWeights::F32) })
        .expect("load");
    let batch = one.embed_batch(&texts).expect("batch");
    let split = small.embed_batch(&texts).expect("split");
    let mut worst = 0f32;
    for (i, t) in texts.iter().enumerate() {
        let single = one.embed(t).expect("single");
        for other in [&batch[i].vector, &split[i].vector] {
            let diff = single.iter().zip(other).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            worst = worst.max(diff);
            // Padded keys weigh exactly 0; only the GPU matmul's blocking over another shape may
            // reorder sums.
            assert!(diff < 1e-5, "text {i}: batch differs from single by {diff}");
        }
    }
    eprintln!("wgpu: padded batch vs one at a time: largest difference {worst:.2e}");
    // Wrong variant: the padded keys visible. The batch then departs from one at a time and
    // from the reference.
    bert::UNMASKED.with(|u| u.set(true));
    let leaked = one.embed_batch(&texts);
    bert::UNMASKED.with(|u| u.set(false));
    let leaked = leaked.expect("unmasked batch");
    let worst_wrong =
        sub.iter().zip(&leaked).map(|(g, r)| cosine(&r.vector, &g.embedding).expect("dims")).fold(1f32, f32::min);
    eprintln!("wgpu without the padding mask: worst cosine {worst_wrong:.6}");
    assert!(worst_wrong < GPU_F32_MIN_COS, "a batch that attends to padding must fail ({worst_wrong})");
}

#[test]
fn gpu_minilm_gguf_matches_llama_cpp_f32_and_q8_0() {
    if !gpu_tests("gpu_minilm_gguf_matches_llama_cpp_f32_and_q8_0") {
        return;
    }
    // (file, goldens, least cosine): the issue's 0.999 for the Q8_0 file against llama.cpp's own
    // vectors of that file. llama.cpp rounds the activations of Q8_0 products to 8 bits (its
    // `vec_dot_type`), and so does the GPU path (`quant::gpu::round_q8_0`), as the CPU path
    // does. Against llama.cpp's f32 vectors the Q8_0 file is held to 0.997, as the CPU path is
    // against the folder: llama.cpp's own Q8_0 vectors reach only 0.9978 against the f32 truth.
    for (ty, golden_ty, min) in [("f32", "f32", GPU_F32_MIN_COS), ("q8_0", "q8_0", Q8_MIN_COS), ("q8_0", "f32", 0.997)]
    {
        let Some((path, gs)) = minilm_gguf(golden_ty) else { return };
        let path = if ty == golden_ty { path } else { minilm_gguf(ty).expect("gguf").0 };
        let gs = gpu_subset(gs);
        let e = Embedder::from_gguf(&path, on_gpu(EncoderWeights::F32)).expect("load gguf on gpu");
        assert_eq!(e.backend(), BackendKind::Gpu);
        let ((worst, id), dn) = gguf_score(&e, &gs);
        eprintln!("minilm gguf {ty} on wgpu vs llama.cpp's {golden_ty} vectors: worst cosine {worst:.7} (text {id}) over {} texts, largest norm difference {dn:.2e}", gs.len());
        assert!(worst >= min, "{ty} vs {golden_ty}: text {id}: cosine {worst}");
        assert!(dn < 1e-4, "{ty}: unit length: {dn}");
        if ty == "q8_0" && golden_ty == "q8_0" {
            // Wrong variant: the Q8_0 products on f32 activations (the path before the rounding).
            bert::F32_ACTIVATIONS.with(|u| u.set(true));
            let ((wrong, id), _) = gguf_score(&e, &gs);
            bert::F32_ACTIVATIONS.with(|u| u.set(false));
            eprintln!("minilm gguf q8_0 on wgpu with f32 activations vs llama.cpp's q8_0 vectors: worst cosine {wrong:.7} (text {id})");
            assert!(wrong < min, "f32 activations should miss {min} against llama.cpp's Q8_0 vectors ({wrong})");
        }
    }
}

#[test]
fn gpu_second_bert_with_cls_pooling_matches_and_auto_avoids_a_software_gpu() {
    if !gpu_tests("gpu_second_bert_with_cls_pooling_matches_and_auto_avoids_a_software_gpu") {
        return;
    }
    let dir = repo().join("tests/golden/bert-synth/model");
    let gs = goldens("tests/golden/bert-synth/embeddings_f32.jsonl");
    let e = Embedder::from_folder(&dir, on_gpu(EncoderWeights::F32)).expect("load");
    let rs = compare(&e, &gs);
    let (i, worst) = min_cos(&rs);
    eprintln!("bert-synth f32 on wgpu: worst cosine {worst:.8}");
    assert!(worst >= GPU_F32_MIN_COS, "text {}: cosine {worst}", gs[i].id);
    for ((_, v), g) in rs.iter().zip(&gs) {
        let (a, b) =
            (v.iter().map(|x| x * x).sum::<f32>().sqrt(), g.embedding.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!((a - b).abs() <= 1e-4 * b, "text {}: norm {a} vs {b}", g.id);
    }
    // Auto: on a software adapter (lavapipe in CI) the CPU; on a hardware GPU the GPU.
    let (_, info) = crate::backend::gpu().expect("gpu");
    let auto =
        Embedder::from_folder(&dir, EmbedOptions { backend: BackendPreference::Auto, ..EmbedOptions::default() })
            .expect("load auto");
    let want = if info.device_type == "Cpu" { BackendKind::Cpu } else { BackendKind::Gpu };
    assert_eq!(auto.backend(), want, "adapter {} ({})", info.name, info.device_type);
}

// ---- The catalog's derived GGUF entries (made offline from the pinned folder) ----

/// A `Write` that hashes.
struct ShaWriter(Sha256);

impl std::io::Write for ShaWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn converted_sha(dir: &Path, ftype: GgufFtype) -> (u64, String) {
    let mut w = ShaWriter(Sha256::new());
    let n = folder_to_gguf(dir, ftype, &mut w).expect("convert");
    (n, hex::encode(w.0.finalize()))
}

/// The sha256 and size of the GGUF llama.cpp's goldens of type `ty` were made from.
fn goldens_gguf(ty: &str) -> (u64, String) {
    let file = format!("tests/golden/minilm/gguf_llama_{ty}.jsonl");
    let text = std::fs::read_to_string(repo().join(file)).expect("goldens");
    let header: serde_json::Value = serde_json::from_str(text.lines().next().expect("header")).expect("json");
    let h = &header["header"];
    (h["gguf_size"].as_u64().expect("size"), h["gguf_sha256"].as_str().expect("sha").to_owned())
}

#[test]
fn the_built_in_conversion_writes_the_reference_scripts_bytes_and_the_pinned_digests() {
    let Some(dir) = minilm_dir() else { return };
    let catalog = crate::catalog::Catalog::builtin().expect("catalog");
    for (id, ty) in [("all-minilm-l6-v2-gguf-q8_0", "q8_0"), ("all-minilm-l6-v2-gguf-f32", "f32")] {
        let e = catalog.get(id).expect("entry");
        let d = e.derived.as_ref().expect("derived");
        assert_eq!(
            (d.from.as_str(), d.conversion.as_str()),
            (DEFAULT_EMBEDDING_MODEL, format!("bert-gguf-{ty}").as_str())
        );
        // The catalog pins the file llama.cpp's goldens were made from (the reference script's).
        assert_eq!((e.size, e.sha256.clone()), goldens_gguf(ty), "{id}");
        assert_eq!(
            converted_sha(&dir, ty.parse().expect("ftype")),
            (e.size, e.sha256.clone()),
            "{id}: built-in conversion"
        );
    }
    // f16 too, though not in the catalog.
    assert_eq!(converted_sha(&dir, GgufFtype::F16), goldens_gguf("f16"));
}

/// A home whose `models/` links the real MiniLM zip and folder (nothing else, no network needed).
fn home_with_minilm(tag: &str) -> Option<PathBuf> {
    let dir = minilm_dir()?;
    let catalog = crate::catalog::Catalog::builtin().expect("catalog");
    let real = crate::catalog::edgewise_home().expect("home");
    let from = catalog.get(DEFAULT_EMBEDDING_MODEL).expect("entry");
    let home = std::env::temp_dir().join(format!("edgewise-derive-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("models")).expect("mkdir");
    std::os::unix::fs::symlink(from.path_in(&real), from.path_in(&home)).expect("link zip");
    std::os::unix::fs::symlink(&dir, from.unpacked_in(&home).expect("folder")).expect("link folder");
    Some(home)
}

#[test]
fn a_derived_catalog_entry_is_made_offline_verified_and_loads() {
    let Some(home) = home_with_minilm("ok") else { return };
    let catalog = crate::catalog::Catalog::builtin().expect("catalog");
    let entry = catalog.get("all-minilm-l6-v2-gguf-q8_0").expect("entry");
    let opts = crate::download::FetchOptions::default();
    let path = entry.derive_in(&catalog, &home, &opts, &|_: crate::download::Progress| {}).expect("derive");
    assert_eq!(path, entry.path_in(&home));
    assert!(crate::download::is_verified_cached(&entry.artifact_in(&home)));
    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
    // Made once: a second call finds the verified file.
    entry.derive_in(&catalog, &home, &opts, &|_: crate::download::Progress| {}).expect("again");
    assert_eq!(std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), mtime);
    // The made file is the one llama.cpp's goldens came from: the GGUF path's thresholds hold.
    let gs = goldens("tests/golden/minilm/gguf_llama_q8_0.jsonl");
    let e = Embedder::from_gguf(&path, EmbedOptions::default()).expect("load");
    let ((worst, id), _) = gguf_score(&e, &gs[..40]);
    assert!(worst >= Q8_MIN_COS, "text {id}: {worst}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_derived_entry_whose_result_does_not_match_its_digest_leaves_no_file() {
    let Some(home) = home_with_minilm("bad") else { return };
    // Wrong variant: the q8_0 entry pinned to another digest (the f16 file's), as a changed
    // conversion would produce.
    let text = include_str!("../../../models/catalog.toml");
    let q8 = goldens_gguf("q8_0").1;
    assert!(text.contains(&q8));
    let catalog = crate::catalog::Catalog::parse(&text.replace(&q8, &goldens_gguf("f16").1)).expect("parse");
    let entry = catalog.get("all-minilm-l6-v2-gguf-q8_0").expect("entry");
    let r =
        entry.derive_in(&catalog, &home, &crate::download::FetchOptions::default(), &|_: crate::download::Progress| {});
    assert!(matches!(r, Err(Error::Checksum { .. })), "{r:?}");
    let left: Vec<_> = std::fs::read_dir(home.join("models")).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(!entry.path_in(&home).exists() && !left.iter().any(|n| n.to_string_lossy().contains(".gguf")), "{left:?}");
    // A catalog entry derived from something that is not a folder entry is refused at parse.
    let bad = text.replace(
        "derived = { from = \"all-minilm-l6-v2\", conversion = \"bert-gguf-q8_0\"",
        "derived = { from = \"gemma-3-270m\", conversion = \"bert-gguf-q8_0\"",
    );
    assert!(matches!(crate::catalog::Catalog::parse(&bad), Err(Error::Catalog { .. })));
    let bad = text.replace("conversion = \"bert-gguf-q8_0\"", "conversion = \"bert-gguf-q4_0\"");
    assert!(matches!(crate::catalog::Catalog::parse(&bad), Err(Error::Catalog { .. })));
    let _ = std::fs::remove_dir_all(&home);
}
