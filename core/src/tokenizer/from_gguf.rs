//! GGUF tokenizer metadata → an exact `tokenizers::Tokenizer`.
//!
//! Two vocabulary kinds are supported:
//!
//! - **SentencePiece with scores** (`tokenizer.ggml.model = "llama"`: Gemma 3, Llama 2, Phi-3). The GGUF
//!   holds pieces, scores and token types but no merges. We rebuild the BPE that the Hugging Face
//!   `tokenizer.json` holds by deriving merges from the scores, the way transformers'
//!   `convert_slow_tokenizer.py` (`GemmaConverter` + `generate_merges`) does. The recipe and the
//!   variants that do *not* work are in `shared/ENGINEERING.md` section E; in short:
//!   1. user-defined pieces (type 4) had `'▁'` turned into `' '` by the GGUF converter: undo it;
//!   2. control and user-defined pieces (types 3, 4) get score 0 (the converter wrote −1000); −0.0 == 0.0;
//!   3. merges: for every piece (id order) and every split point **counted in chars**, where both halves
//!      are in the vocab, collect `(l, r, score(piece))`; sort each piece's list by `(id(l), id(r))`;
//!      then **stable**-sort everything by `(score, charlen(l), charlen(r))` descending;
//!   4. `BPE { unk, fuse_unk, byte_fallback }` + `Replace(" ", "▁")` + `Split(" ", MergedWithPrevious)`
//!      + decoder `[Replace("▁", " "), ByteFallback, Fuse]` + `TemplateProcessing("<bos> $A")`;
//!   5. types 2/3/4 become added tokens with `normalized = false`.
//! - **GPT-2 style byte-level BPE** (`tokenizer.ggml.model = "gpt2"`: Llama 3, Qwen 2/3, SmolLM, GPT-2):
//!   the merges are in the file; the pre-tokenizer regex is chosen from `tokenizer.ggml.pre` with the
//!   same table as llama.cpp's `llama_vocab::impl::load` (`src/llama-vocab.cpp`), written in the
//!   Hugging Face `tokenizer.json` form.
//!
//! Nothing here looks at user text; errors name metadata keys only.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};

/// Tokenizer-relevant GGUF metadata (`tokenizer.ggml.*`), as plain data.
///
/// The GGUF layer fills it (`GgufVocab::from_metadata`); tests can fill it by hand. Keeping the
/// tokenizer on plain data keeps `tokenizer` independent of the file format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: pre-tokenizer name for BPE vocabularies (`llama-bpe`, `qwen2`, ...).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the pieces, indexed by token id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: SentencePiece scores (required for `"llama"`).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs in rank order (required for `"gpt2"`).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn), `eom_token_id` (end of message),
    /// `fim_pad_token_id`, `fim_rep_token_id`, `fim_sep_token_id`: each ends generation in llama.cpp.
    /// Ids outside the vocabulary are ignored (as llama.cpp does).
    pub eog_key_ids: EogKeyIds,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos_token: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template` (Jinja source).
    pub chat_template: Option<String>,
}

/// Most tokens (and merges) a vocabulary may have: 8× the largest real one (Gemma 3's 262144).
const MAX_VOCAB_ENTRIES: usize = 1 << 21;

impl GgufVocab {
    /// Read the `tokenizer.*` keys of a GGUF file's metadata. Absent optional keys become `None`;
    /// a present key of the wrong type is an error naming the key.
    pub fn from_metadata(md: &crate::gguf::Metadata) -> Result<Self> {
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            match md.get(key) {
                None => Ok(None),
                // Each piece becomes several allocations in the tokenizer: bound the count before.
                Some(crate::gguf::MetaValue::Array(a)) if a.len() > MAX_VOCAB_ENTRIES => {
                    Err(invalid(key, &format!("{} entries (at most {MAX_VOCAB_ENTRIES})", a.len())))
                }
                Some(_) => Ok(Some(md.get_str_array(key)?.into_iter().map(str::to_owned).collect())),
            }
        };
        let scores = match md.get("tokenizer.ggml.scores") {
            None => None,
            Some(_) => Some(md.get_f32_array("tokenizer.ggml.scores")?),
        };
        let token_types = match md.get("tokenizer.ggml.token_type") {
            None => None,
            Some(_) => Some(
                md.get_i64_array("tokenizer.ggml.token_type")?
                    .into_iter()
                    .map(|t| {
                        i32::try_from(t).map_err(|_| invalid("tokenizer.ggml.token_type", "value out of i32 range"))
                    })
                    .collect::<Result<Vec<i32>>>()?,
            ),
        };
        Ok(Self {
            model: md.get_str("tokenizer.ggml.model")?.to_owned(),
            pre: md.opt_str("tokenizer.ggml.pre")?.map(str::to_owned),
            tokens: strings("tokenizer.ggml.tokens")?
                .ok_or_else(|| Error::MissingKey { key: "tokenizer.ggml.tokens".into() })?,
            scores,
            token_types,
            merges: strings("tokenizer.ggml.merges")?,
            bos_token_id: md.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_id: md.opt_u32("tokenizer.ggml.eos_token_id")?,
            eog_key_ids: EogKeyIds {
                eot: md.opt_u32("tokenizer.ggml.eot_token_id")?,
                eom: md.opt_u32("tokenizer.ggml.eom_token_id")?,
                fim_pad: md.opt_u32("tokenizer.ggml.fim_pad_token_id")?,
                fim_rep: md.opt_u32("tokenizer.ggml.fim_rep_token_id")?,
                fim_sep: md.opt_u32("tokenizer.ggml.fim_sep_token_id")?,
            },
            unk_token_id: md.opt_u32("tokenizer.ggml.unknown_token_id")?,
            pad_token_id: md.opt_u32("tokenizer.ggml.padding_token_id")?,
            add_bos_token: md.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos_token: md.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: md.opt_bool("tokenizer.ggml.add_space_prefix")?,
            chat_template: md.opt_str("tokenizer.chat_template")?.map(str::to_owned),
        })
    }
}

/// GGUF token types (llama.cpp `llama_token_type`).
pub(crate) mod token_type {
    /// An ordinary piece.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A control token (`<bos>`, `<start_of_turn>`, `<|im_end|>`).
    pub const CONTROL: i32 = 3;
    /// A user-defined piece matched verbatim before tokenization (whitespace runs, HTML tags).
    pub const USER_DEFINED: i32 = 4;
    // 5 = unused and 6 = byte-fallback `<0xNN>` pieces need no special handling: they are ordinary
    // vocabulary entries here.
}

/// The end-of-generation ids a GGUF names in its metadata besides EOS (see [`GgufVocab`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EogKeyIds {
    /// `tokenizer.ggml.eot_token_id`.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom: Option<u32>,
    /// `tokenizer.ggml.fim_pad_token_id`.
    pub fim_pad: Option<u32>,
    /// `tokenizer.ggml.fim_rep_token_id`.
    pub fim_rep: Option<u32>,
    /// `tokenizer.ggml.fim_sep_token_id`.
    pub fim_sep: Option<u32>,
}

/// Pieces that end generation wherever they occur in a vocabulary, whatever their token type:
/// llama.cpp's list (`llama_vocab::impl::load`, `special_eog_ids`, llama.cpp as vendored in
/// llama-cpp-python 0.3.36).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// Pieces llama.cpp takes for the FIM pad / repository / file-separator tokens when the metadata
/// names none; those end generation too.
const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP: &[&str] = &["<|file_sep|>"];

/// Is `piece` one of the end-of-generation pieces llama.cpp knows?
pub(crate) fn is_end_of_generation(piece: &str) -> bool {
    END_OF_GENERATION.contains(&piece)
}

/// What the builders produce: the HF tokenizer plus the facts the engine needs.
pub(crate) struct Built {
    /// The tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// BOS id, if the vocabulary has one.
    pub bos: Option<u32>,
    /// EOS (`tokenizer.ggml.eos_token_id`), if in the vocabulary.
    pub eos: Option<u32>,
    /// Stop set (EOS + end-of-turn tokens), sorted.
    pub eos_ids: Vec<u32>,
    /// Whether encoding adds BOS by default.
    pub add_bos: bool,
    /// Ids that user text must never produce (all control tokens).
    pub control_ids: Vec<u32>,
    /// Number of ids (embedding rows).
    pub vocab_size: usize,
    /// SentencePiece merges derived during this build (to cache), as id pairs.
    pub merge_ids: Option<Vec<(u32, u32)>>,
}

/// Build the tokenizer described by `v`.
pub(crate) fn build(v: &GgufVocab) -> Result<Built> {
    build_with(v, None)
}

/// [`build`], optionally reusing SentencePiece merges derived earlier for the same vocabulary
/// (`cached`, as id pairs; ignored unless it is valid for `v`). `Built::merge_ids` holds the merges
/// when they were derived here, for the caller to cache.
pub(crate) fn build_with(v: &GgufVocab, cached: Option<Vec<(u32, u32)>>) -> Result<Built> {
    if v.tokens.is_empty() {
        return Err(Error::MissingKey { key: "tokenizer.ggml.tokens".into() });
    }
    if u32::try_from(v.tokens.len()).is_err() {
        return Err(invalid("tokenizer.ggml.tokens", "more than 2^32 tokens"));
    }
    let types = token_types(v)?;
    check_id(v.bos_token_id, v.tokens.len(), "tokenizer.ggml.bos_token_id")?;
    check_id(v.eos_token_id, v.tokens.len(), "tokenizer.ggml.eos_token_id")?;
    check_id(v.unk_token_id, v.tokens.len(), "tokenizer.ggml.unknown_token_id")?;
    check_id(v.pad_token_id, v.tokens.len(), "tokenizer.ggml.padding_token_id")?;
    match v.model.as_str() {
        "llama" => build_sentencepiece(v, &types, cached),
        "gpt2" => build_byte_level(v, &types),
        other => Err(Error::Tokenizer {
            reason: format!("unsupported tokenizer.ggml.model `{other}` (supported: llama, gpt2)"),
        }),
    }
}

fn invalid(key: &str, reason: &str) -> Error {
    Error::InvalidKey { key: key.into(), reason: reason.into() }
}

fn check_id(id: Option<u32>, n: usize, key: &str) -> Result<()> {
    match id {
        Some(id) if id as usize >= n => Err(Error::InvalidKey {
            key: key.into(),
            reason: format!("id {id} is outside the vocabulary of {n} tokens"),
        }),
        _ => Ok(()),
    }
}

/// Token types, defaulting to "normal" when the key is absent.
fn token_types(v: &GgufVocab) -> Result<Vec<i32>> {
    match &v.token_types {
        Some(t) if t.len() != v.tokens.len() => Err(Error::InvalidKey {
            key: "tokenizer.ggml.token_type".into(),
            reason: format!("{} entries for {} tokens", t.len(), v.tokens.len()),
        }),
        Some(t) => Ok(t.clone()),
        None => Ok(vec![token_type::NORMAL; v.tokens.len()]),
    }
}

// ---------------------------------------------------------------------------------------------
// SentencePiece (Gemma 3 recipe)
// ---------------------------------------------------------------------------------------------

/// The `special` flag of an added token, chosen to match the Hugging Face files bit for bit.
///
/// HF marks as special only the tokens named in `tokenizer_config.json` (bos, eos, unk, pad and the
/// extra specials). For Gemma those are ids 0, 1, 2, 3 plus `<start_of_turn>`, `<end_of_turn>`,
/// `<start_of_image>` and `<end_of_image>`; `<unusedN>` and `<mask>` are control tokens but not
/// special. The flag only changes `decode(.., skip_special = true)`; user-text protection covers
/// every control token regardless (see `Tokenizer::encode_user_text`).
fn sentencepiece_special(id: u32, piece: &str, core_ids: &[Option<u32>]) -> bool {
    if core_ids.contains(&Some(id)) {
        return true;
    }
    let Some(inner) = piece.strip_prefix('<').and_then(|p| p.strip_suffix('>')) else {
        return false;
    };
    let Some(rest) = inner.strip_prefix("start_of_").or_else(|| inner.strip_prefix("end_of_")) else {
        return false;
    };
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn build_sentencepiece(v: &GgufVocab, types: &[i32], cached: Option<Vec<(u32, u32)>>) -> Result<Built> {
    let n = v.tokens.len();
    let raw_scores = v.scores.as_ref().ok_or_else(|| Error::MissingKey { key: "tokenizer.ggml.scores".into() })?;
    if raw_scores.len() != n {
        return Err(Error::InvalidKey {
            key: "tokenizer.ggml.scores".into(),
            reason: format!("{} scores for {n} tokens", raw_scores.len()),
        });
    }
    // Steps 1 and 2 of the recipe: undo what convert_hf_to_gguf did to types 3 and 4.
    let mut pieces = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    for ((tok, &ty), &score) in v.tokens.iter().zip(types).zip(raw_scores) {
        if score.is_nan() {
            return Err(invalid("tokenizer.ggml.scores", "a score is NaN"));
        }
        let user_defined = ty == token_type::USER_DEFINED;
        pieces.push(if user_defined { tok.replace(' ', "\u{2581}") } else { tok.clone() });
        let zeroed = ty == token_type::CONTROL || user_defined;
        // `+ 0.0` turns −0.0 into +0.0, so the total order below treats them as equal (Python does).
        scores.push(if zeroed { 0.0 } else { score + 0.0 });
    }

    let t0 = std::time::Instant::now();
    let cached = cached.filter(|m| m.iter().all(|&(l, r)| (l as usize) < n && (r as usize) < n));
    let (merge_ids, derived) = match cached {
        Some(m) => (m, false),
        None => (sentencepiece_merge_ids(&pieces, &scores), true),
    };
    let merges: Vec<(String, String)> =
        merge_ids.iter().map(|&(l, r)| (pieces[l as usize].clone(), pieces[r as usize].clone())).collect();
    log::debug!(
        "tokenizer: {} {} merges in {:.2?}",
        if derived { "derived" } else { "reused" },
        merges.len(),
        t0.elapsed()
    );
    let t0 = std::time::Instant::now();
    let vocab: Vocab = pieces.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
    let duplicates = n - vocab.len();
    if duplicates > 0 {
        log::warn!("tokenizer: {duplicates} duplicate pieces in the GGUF vocabulary; the last id wins");
    }

    let unk_piece = match v.unk_token_id {
        Some(id) => pieces.get(id as usize).cloned(),
        None => vocab.contains_key("<unk>").then(|| "<unk>".to_string()),
    };
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk_piece {
        bpe = bpe.unk_token(unk);
    }
    let bpe = bpe.build().map_err(|e| tok_err("building the BPE model", e))?;
    log::debug!("tokenizer: built the BPE model in {:.2?}", t0.elapsed());
    let t0 = std::time::Instant::now();

    // llama.cpp defaults add_space_prefix to true for SentencePiece vocabularies; Gemma sets false.
    let space_prefix = v.add_space_prefix.unwrap_or(true);
    let replace = Replace::new(" ", "\u{2581}").map_err(|e| tok_err("normalizer", e))?;
    let normalizer: NormalizerWrapper = if space_prefix {
        NormalizerSequence::new(vec![Prepend::new("\u{2581}".into()).into(), replace.into()]).into()
    } else {
        replace.into()
    };
    let pre_tokenizer: PreTokenizerWrapper =
        Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
            .map_err(|e| tok_err("pre-tokenizer", e))?
            .into();
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("\u{2581}", " ").map_err(|e| tok_err("decoder", e))?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| tok_err("normalizer", e))?
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(DecoderSequence::new(decoders)));

    let add_bos = v.add_bos_token.unwrap_or(true);
    let add_eos = v.add_eos_token.unwrap_or(false);
    let bos = v.bos_token_id;
    if let Some(pp) = template_processor(&pieces, bos, v.eos_token_id, add_bos, add_eos)? {
        tokenizer.with_post_processor(Some(pp));
    }

    // Step 5: unknown, control and user-defined pieces are matched verbatim (normalized = false).
    let core_ids = [v.bos_token_id, v.eos_token_id, v.unk_token_id, v.pad_token_id];
    let mut added = Vec::new();
    let mut control_ids = Vec::new();
    for (i, (piece, &ty)) in pieces.iter().zip(types).enumerate() {
        let id = i as u32;
        if ty == token_type::CONTROL {
            control_ids.push(id);
        }
        if matches!(ty, token_type::UNKNOWN | token_type::CONTROL | token_type::USER_DEFINED) {
            let special = sentencepiece_special(id, piece, &core_ids);
            added.push(AddedToken::from(piece.clone(), special).normalized(false));
        }
    }
    tokenizer.add_tokens(added).map_err(|e| tok_err("adding control tokens", e))?;
    log::debug!("tokenizer: pipeline and added tokens in {:.2?}", t0.elapsed());

    Ok(Built {
        eos: v.eos_token_id.filter(|&e| (e as usize) < v.tokens.len()),
        eos_ids: stop_set(v),
        tokenizer,
        bos,
        add_bos: add_bos && bos.is_some(),
        control_ids,
        vocab_size: n,
        merge_ids: derived.then_some(merge_ids),
    })
}

/// A fingerprint of the SentencePiece inputs, so cached merges are only reused for the same pieces
/// and scores (whatever the cache key says).
pub(crate) fn vocab_fingerprint(v: &GgufVocab) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.model.hash(&mut h);
    v.tokens.hash(&mut h);
    if let Some(s) = &v.scores {
        s.iter().for_each(|x| x.to_bits().hash(&mut h));
    }
    v.token_types.hash(&mut h);
    h.finish()
}

/// Derive BPE merges from SentencePiece pieces and scores (transformers `generate_merges`).
///
/// `scores` must not contain NaN (callers reject it). Mirrors the Python exactly, including its
/// dict semantics for duplicate pieces: the piece→id map keeps the last id, and each distinct piece
/// is visited once, at its first position, with the score of its last occurrence.
#[cfg(test)]
pub(crate) fn sentencepiece_merges(pieces: &[String], scores: &[f32]) -> Vec<(String, String)> {
    sentencepiece_merge_ids(pieces, scores)
        .into_iter()
        .map(|(l, r)| (pieces[l as usize].clone(), pieces[r as usize].clone()))
        .collect()
}

/// [`sentencepiece_merges`] as `(id(left), id(right))` pairs (ids of the last occurrence, i.e. the
/// vocabulary's ids).
pub(crate) fn sentencepiece_merge_ids(pieces: &[String], scores: &[f32]) -> Vec<(u32, u32)> {
    // piece -> (id of last occurrence, score of last occurrence)
    let mut index: HashMap<&str, (u32, f32)> = HashMap::with_capacity(pieces.len());
    let mut order: Vec<&str> = Vec::with_capacity(pieces.len());
    for (i, (p, &s)) in pieces.iter().zip(scores).enumerate() {
        if index.insert(p.as_str(), (i as u32, s)).is_none() {
            order.push(p.as_str());
        }
    }

    // (left, right, score, char len left, char len right), built piece by piece.
    struct Cand {
        l: u32,
        r: u32,
        score: f32,
        l_chars: usize,
        r_chars: usize,
    }
    let mut all: Vec<Cand> = Vec::new();
    let mut local: Vec<Cand> = Vec::new();
    for piece in order {
        let Some(&(_, score)) = index.get(piece) else { continue };
        local.clear();
        // Split points are char boundaries, not bytes (Python slices str by code point).
        for (n_chars, (split, _)) in piece.char_indices().enumerate().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(&(lid, _)), Some(&(rid, _))) = (index.get(l), index.get(r)) {
                let r_chars = r.chars().count();
                // `+ 0.0` folds −0.0 into +0.0: Python compares them equal, `total_cmp` would not.
                local.push(Cand { l: lid, r: rid, score: score + 0.0, l_chars: n_chars, r_chars });
            }
        }
        local.sort_by_key(|c| (c.l, c.r));
        all.append(&mut local);
    }

    // Stable sort, descending on (score, len(l), len(r)); equal keys keep their order, as Python's
    // `sorted(.., reverse=True)` does. Scores have no NaN and −0.0 was folded into +0.0.
    all.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.l_chars.cmp(&a.l_chars)).then(b.r_chars.cmp(&a.r_chars)));
    all.into_iter().map(|c| (c.l, c.r)).collect()
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE (GPT-2 style)
// ---------------------------------------------------------------------------------------------

/// Llama 3 (`tokenizer.json` of meta-llama/Meta-Llama-3-8B).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 / 2.5 / 3 (`tokenizer.json` of Qwen/Qwen2-7B): Llama 3's with single digits.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// LLAMA_VOCAB_PRE_TYPE_QWEN35: Qwen 2's with combining marks (`\p{M}`) kept inside words.
const QWEN35_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `tokenizer.ggml.pre` value pre-tokenizes, and its defaults.
struct PreSpec {
    pre_tokenizer: PreTokenizerWrapper,
    nfc: bool,
    ignore_merges: bool,
    add_bos_default: bool,
}

fn pre_spec(pre: &str) -> Result<PreSpec> {
    let regex_then_bytes = |re: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| tok_err("pre-tokenizer regex", e))?;
        Ok(PreTokenizerSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    let spec = match pre {
        // llama.cpp LLAMA_VOCAB_PRE_TYPE_LLAMA3 (ignore_merges, add_bos).
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => PreSpec {
            pre_tokenizer: regex_then_bytes(LLAMA3_REGEX)?,
            nfc: false,
            ignore_merges: true,
            add_bos_default: true,
        },
        // LLAMA_VOCAB_PRE_TYPE_QWEN2; HF's Qwen tokenizer.json also applies NFC.
        "qwen2" | "deepseek-r1-qwen" => PreSpec {
            pre_tokenizer: regex_then_bytes(QWEN2_REGEX)?,
            nfc: true,
            ignore_merges: false,
            add_bos_default: false,
        },
        // LLAMA_VOCAB_PRE_TYPE_QWEN35; no NFC (llama.cpp's expected ids keep `e` + U+0301 apart).
        "qwen35" => PreSpec {
            pre_tokenizer: regex_then_bytes(QWEN35_REGEX)?,
            nfc: false,
            ignore_merges: false,
            add_bos_default: false,
        },
        // LLAMA_VOCAB_PRE_TYPE_SMOLLM / STARCODER / REFACT: digits one by one, then GPT-2.
        "smollm" | "starcoder" | "refact" => PreSpec {
            pre_tokenizer: PreTokenizerSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            nfc: false,
            ignore_merges: false,
            add_bos_default: false,
        },
        "gpt-2" | "gpt2" | "default" | "phi-2" | "mpt" | "olmo" => PreSpec {
            pre_tokenizer: ByteLevel::new(false, true, true).into(),
            nfc: false,
            ignore_merges: false,
            add_bos_default: false,
        },
        other => {
            return Err(Error::Tokenizer {
                reason: format!(
                    "unsupported tokenizer.ggml.pre `{other}` (supported: llama-bpe, qwen2, smollm, starcoder, refact, gpt-2)"
                ),
            })
        }
    };
    Ok(spec)
}

fn build_byte_level(v: &GgufVocab, types: &[i32]) -> Result<Built> {
    let n = v.tokens.len();
    let raw_merges = v.merges.as_ref().ok_or_else(|| Error::MissingKey { key: "tokenizer.ggml.merges".into() })?;
    let spec = pre_spec(v.pre.as_deref().unwrap_or("default"))?;

    // Every id goes into the model vocabulary, added tokens included, so each added token resolves
    // to its GGUF id (tokenizers looks the content up in the model vocab first).
    let vocab: Vocab = v.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let duplicates = n - vocab.len();
    if duplicates > 0 {
        log::warn!("tokenizer: {duplicates} duplicate pieces in the GGUF vocabulary; the last id wins");
    }
    let mut merges = Vec::with_capacity(raw_merges.len());
    for m in raw_merges {
        // llama.cpp splits at the first space after the first character.
        let first = m.chars().next().map_or(0, char::len_utf8);
        let split = m.get(first..).and_then(|rest| rest.find(' ')).map(|p| p + first);
        let Some(split) = split else {
            return Err(invalid("tokenizer.ggml.merges", "a merge has no separating space"));
        };
        let (l, r) = (&m[..split], &m[split + 1..]);
        merges.push((l.to_string(), r.to_string()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|_| invalid("tokenizer.ggml.merges", "a merge refers to a token outside the vocabulary"))?;

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    if spec.nfc {
        tokenizer.with_normalizer(Some(NFC)).map_err(|e| tok_err("normalizer", e))?;
    }
    tokenizer.with_pre_tokenizer(Some(spec.pre_tokenizer)).with_decoder(Some(ByteLevel::default()));

    let add_bos = v.add_bos_token.unwrap_or(spec.add_bos_default);
    let add_eos = v.add_eos_token.unwrap_or(false);
    let bos = v.bos_token_id;
    if let Some(pp) = template_processor(&v.tokens, bos, v.eos_token_id, add_bos, add_eos)? {
        tokenizer.with_post_processor(Some(pp));
    }

    // Control tokens are special; user-defined ones are matched verbatim but are not special
    // (convert_hf_to_gguf maps HF `special` added tokens to CONTROL, the others to USER_DEFINED).
    let mut added = Vec::new();
    let mut control_ids = Vec::new();
    for (i, (tok, &ty)) in v.tokens.iter().zip(types).enumerate() {
        match ty {
            token_type::CONTROL | token_type::UNKNOWN => {
                control_ids.push(i as u32);
                added.push(AddedToken::from(tok.clone(), true).normalized(false));
            }
            token_type::USER_DEFINED => added.push(AddedToken::from(tok.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tokenizer.add_tokens(added).map_err(|e| tok_err("adding control tokens", e))?;

    Ok(Built {
        eos: v.eos_token_id.filter(|&e| (e as usize) < v.tokens.len()),
        eos_ids: stop_set(v),
        tokenizer,
        bos,
        add_bos: add_bos && bos.is_some(),
        control_ids,
        vocab_size: n,
        merge_ids: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// `TemplateProcessing` adding BOS (and EOS) the way HF's converters write it, or `None` when
/// nothing is added.
fn template_processor(
    pieces: &[String],
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
) -> Result<Option<TemplateProcessing>> {
    let bos = bos.filter(|_| add_bos).and_then(|id| Some((pieces.get(id as usize)?.clone(), id)));
    let eos = eos.filter(|_| add_eos).and_then(|id| Some((pieces.get(id as usize)?.clone(), id)));
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let (mut single, mut pair) = (String::new(), String::new());
    if let Some((b, _)) = &bos {
        single.push_str(&format!("{b}:0 "));
        pair.push_str(&format!("{b}:0 "));
    }
    single.push_str("$A:0");
    pair.push_str("$A:0");
    if let Some((e, _)) = &eos {
        single.push_str(&format!(" {e}:0"));
        pair.push_str(&format!(" {e}:0"));
    }
    if let Some((b, _)) = &bos {
        pair.push_str(&format!(" {b}:1"));
    }
    pair.push_str(" $B:1");
    if let Some((e, _)) = &eos {
        pair.push_str(&format!(" {e}:1"));
    }
    let specials: Vec<(String, u32)> = bos.into_iter().chain(eos).collect();
    let tp = TemplateProcessing::builder()
        .try_single(single.as_str())
        .map_err(|_| Error::Tokenizer { reason: "BOS/EOS piece cannot be used in a template".into() })?
        .try_pair(pair.as_str())
        .map_err(|_| Error::Tokenizer { reason: "BOS/EOS piece cannot be used in a template".into() })?
        .special_tokens(specials)
        .build()
        .map_err(|e| tok_err("post-processor", e))?;
    Ok(Some(tp))
}

/// The stop set, decided as llama.cpp decides its end-of-generation ids: EOS, EOT, EOM and the
/// FIM pad/repository/separator ids from the metadata (FIM ids found by their piece when the
/// metadata names none), plus every token whose piece is in [`END_OF_GENERATION`], whatever its
/// type; then llama.cpp's two exceptions: `<|end|>` does not stop where `<|return|>`/`<|call|>`
/// (gpt-oss) or `<|calls|>`/`<|flush|>` (solar-open) do, and `</s>` does not stop where
/// `<|tool_response>` or `<|plamo:eos|>` exist (a plain `</s>` there).
fn stop_set(v: &GgufVocab) -> Vec<u32> {
    let n = v.tokens.len();
    let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
    let by_piece = |names: &[&str]| v.tokens.iter().position(|t| names.contains(&t.as_str())).map(|i| i as u32);
    let k = v.eog_key_ids;
    let mut ids: Vec<u32> = Vec::new();
    ids.extend(in_range(k.fim_pad).or_else(|| by_piece(FIM_PAD)));
    ids.extend(in_range(k.fim_rep).or_else(|| by_piece(FIM_REP)));
    ids.extend(in_range(k.fim_sep).or_else(|| by_piece(FIM_SEP)));
    for (i, t) in v.tokens.iter().enumerate() {
        if is_end_of_generation(t) {
            ids.push(i as u32);
        }
    }
    ids.extend(in_range(v.eos_token_id));
    ids.extend(in_range(k.eot));
    ids.extend(in_range(k.eom));
    for (name, id) in
        [("eot", k.eot), ("eom", k.eom), ("fim_pad", k.fim_pad), ("fim_rep", k.fim_rep), ("fim_sep", k.fim_sep)]
    {
        if id.is_some() && in_range(id).is_none() {
            log::warn!("tokenizer: tokenizer.ggml.{name}_token_id is outside the vocabulary of {n}; ignored");
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let piece = |id: &u32| v.tokens[*id as usize].as_str();
    let has = |ids: &[u32], names: &[&str]| ids.iter().any(|i| names.contains(&piece(i)));
    let (ret, call, flush, end) = (
        has(&ids, &["<|return|>"]),
        has(&ids, &["<|call|>", "<|calls|>"]),
        has(&ids, &["<|flush|>"]),
        has(&ids, &["<|end|>"]),
    );
    if end && call && (ret || flush) {
        ids.retain(|i| piece(i) != "<|end|>");
    }
    if has(&ids, &["</s>"]) && (has(&ids, &["<|tool_response>"]) || v.tokens.iter().any(|t| t == "<|plamo:eos|>")) {
        ids.retain(|i| piece(i) != "</s>");
    }
    ids
}

/// A `tokenizers` error while building: its message names model pieces at most, never user text.
fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { reason: format!("{what}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn pairs(m: &[(String, String)]) -> Vec<(&str, &str)> {
        m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn merges_follow_scores_then_char_lengths() {
        // "ab" (score -1) is more likely than "bc" (-2); "abc" (-3) splits as ab|c and a|bc.
        let pieces = s(&["a", "b", "c", "ab", "bc", "abc"]);
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let m = sentencepiece_merges(&pieces, &scores);
        // Within "abc" the local order is by (id(l), id(r)): (a=0, bc=4) before (ab=3, c=2).
        // Then descending (score, len l, len r): ab|c has len(l)=2 > a|bc len(l)=1.
        assert_eq!(pairs(&m), vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }

    #[test]
    fn split_points_count_chars_not_bytes() {
        // "éa": byte length 3, char length 2. A byte-based walk would try an invalid split.
        let pieces = s(&["é", "a", "éa", "aé"]);
        let m = sentencepiece_merges(&pieces, &[0.0, 0.0, -1.0, -2.0]);
        assert_eq!(pairs(&m), vec![("é", "a"), ("a", "é")]);
        // Char-length tie-break: (xé|y) vs (x|éy) for the same score: longer left first (2 chars vs 1).
        let pieces = s(&["x", "é", "y", "xé", "éy", "xéy"]);
        let m = sentencepiece_merges(&pieces, &[0.0, 0.0, 0.0, -1.0, -1.0, -2.0]);
        assert_eq!(pairs(&m), vec![("x", "é"), ("é", "y"), ("xé", "y"), ("x", "éy")]);
    }

    #[test]
    fn char_length_not_byte_length_breaks_ties() {
        // Same score. Left halves: "é" (1 char, 2 bytes) vs "ab" (2 chars, 2 bytes) vs "c" ...
        // "éc" = é|c (l: 1 char) and "abc" = ab|c (l: 2 chars): by char length ab|c comes first even
        // though both lefts are 2 bytes. Stable order would otherwise keep éc first (lower id).
        let pieces = s(&["a", "b", "c", "é", "ab", "éc", "abc"]);
        let m = sentencepiece_merges(&pieces, &[0.0, 0.0, 0.0, 0.0, -1.0, -5.0, -5.0]);
        assert_eq!(pairs(&m), vec![("a", "b"), ("ab", "c"), ("é", "c")]);
    }

    #[test]
    fn sort_is_stable_and_negative_zero_equals_zero() {
        // "ab" (-0.0) comes before "cd" (+0.0) in id order. Python sees equal keys and keeps that
        // order; `total_cmp` on the raw values (−0.0 < +0.0) would put "cd" first.
        let pieces = s(&["a", "b", "c", "d", "ab", "cd"]);
        let m = sentencepiece_merges(&pieces, &[-9.0, -9.0, -9.0, -9.0, -0.0, 0.0]);
        assert_eq!(pairs(&m), vec![("a", "b"), ("c", "d")]);
        // Stability with plain equal keys: id order is kept, whatever the text order.
        let pieces = s(&["z", "y", "x", "w", "zy", "xw"]);
        let m = sentencepiece_merges(&pieces, &[-9.0, -9.0, -9.0, -9.0, -1.0, -1.0]);
        assert_eq!(pairs(&m), vec![("z", "y"), ("x", "w")]);
    }

    #[test]
    fn duplicate_pieces_follow_python_dict_semantics() {
        // "ab" appears twice: first position kept, last id and score used.
        let pieces = s(&["a", "b", "ab", "x", "ab"]);
        let m = sentencepiece_merges(&pieces, &[0.0, 0.0, -1.0, 0.0, -2.0]);
        assert_eq!(pairs(&m), vec![("a", "b")]);
    }

    fn vocab_of(pieces: &[&str], eos: Option<u32>, keys: EogKeyIds) -> GgufVocab {
        GgufVocab { tokens: s(pieces), eos_token_id: eos, eog_key_ids: keys, ..Default::default() }
    }

    #[test]
    fn stop_set_follows_llama_cpp() {
        // By piece, whatever the type, plus EOS/EOT/EOM from the metadata; out-of-range ids ignored.
        let v = vocab_of(
            &["a", "<|im_end|>", "b", "<|endoftext|>", "x", "<|eom_id|>"],
            Some(2),
            EogKeyIds { eot: Some(4), eom: Some(99), ..Default::default() },
        );
        assert_eq!(stop_set(&v), vec![1, 2, 3, 4, 5]);
        // FIM pad/repo/separator: from the metadata, else found by piece.
        let v = vocab_of(&["<fim_pad>", "<reponame>", "<|file_sep|>", "<PAD>"], None, EogKeyIds::default());
        assert_eq!(stop_set(&v), vec![0, 1, 2]);
        let v = vocab_of(&["<fim_pad>", "q", "r"], None, EogKeyIds { fim_pad: Some(2), ..Default::default() });
        assert_eq!(stop_set(&v), vec![2]);
        // gpt-oss: <|end|> does not stop where <|return|> and <|call|> do.
        let v = vocab_of(&["<|end|>", "<|return|>", "<|call|>"], None, EogKeyIds::default());
        assert_eq!(stop_set(&v), vec![1, 2]);
        let v = vocab_of(&["<|end|>", "<|return|>"], None, EogKeyIds::default());
        assert_eq!(stop_set(&v), vec![0, 1]);
        // A plain </s> next to <|tool_response>.
        let v = vocab_of(&["</s>", "<|tool_response>", "<eos>"], None, EogKeyIds::default());
        assert_eq!(stop_set(&v), vec![1, 2]);
    }

    fn tiny_spm() -> GgufVocab {
        // ids: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <start_of_turn>, 5 <end_of_turn>, 6 "\n",
        // 7 "  " (user-defined, raw spaces as the converter writes them), 8.. bytes/normal
        let mut tokens = s(&["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\n", "  "]);
        let mut types = vec![3, 3, 3, 3, 3, 3, 4, 4];
        let mut scores = vec![-1000.0; 8];
        for b in 0..=255u32 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
            scores.push(0.0);
        }
        for (p, sc) in [("▁", -1.0), ("h", -2.0), ("i", -3.0), ("hi", -4.0), ("▁hi", -5.0)] {
            tokens.push(p.to_string());
            types.push(1);
            scores.push(sc);
        }
        GgufVocab {
            model: "llama".into(),
            pre: Some("default".into()),
            tokens,
            scores: Some(scores),
            token_types: Some(types),
            bos_token_id: Some(2),
            eos_token_id: Some(1),
            eog_key_ids: EogKeyIds::default(),
            unk_token_id: Some(3),
            pad_token_id: Some(0),
            add_bos_token: Some(true),
            add_eos_token: Some(false),
            add_space_prefix: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn tiny_sentencepiece_encodes_like_gemma() {
        let b = build(&tiny_spm()).unwrap();
        let id = |p: &str| b.tokenizer.token_to_id(p).unwrap();
        let enc = b.tokenizer.encode(" hi<start_of_turn>\n", true).unwrap();
        assert_eq!(enc.get_ids(), &[2, id("▁hi"), 4, 6]);
        // The user-defined "  " is stored with raw spaces; the recipe turns it back into "▁▁"
        // so the model vocab and the added token agree.
        assert_eq!(id("▁▁"), 7);
        // Byte fallback for a char with no piece: "é" = C3 A9.
        let enc = b.tokenizer.encode("é", false).unwrap();
        assert_eq!(enc.get_ids(), &[id("<0xC3>"), id("<0xA9>")]);
        assert_eq!(b.tokenizer.decode(enc.get_ids(), false).unwrap(), "é");
        assert_eq!(b.eos_ids, vec![1, 5]);
        assert_eq!(b.control_ids, vec![0, 1, 2, 3, 4, 5]);
        assert!(b.add_bos);
    }

    #[test]
    fn special_flags_match_gemma_tokenizer_config() {
        let core = [Some(2), Some(1), Some(3), Some(0)];
        assert!(sentencepiece_special(2, "<bos>", &core));
        assert!(sentencepiece_special(105, "<start_of_turn>", &core));
        assert!(sentencepiece_special(256000, "<end_of_image>", &core));
        assert!(!sentencepiece_special(4, "<mask>", &core));
        assert!(!sentencepiece_special(6, "<unused0>", &core));
        assert!(!sentencepiece_special(7, "<start_of_>", &core));
    }

    fn tiny_gpt2(pre: &str) -> GgufVocab {
        // Byte-level pieces: 'Ġ' is the space byte.
        let mut tokens: Vec<String> = s(&["h", "e", "l", "o", "Ġ", "w", "r", "d", "1", "2", "3"]);
        let merges = s(&["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2"]);
        for m in &merges {
            tokens.push(m.replace(' ', ""));
        }
        tokens.push("<|endoftext|>".into());
        tokens.push("<|im_end|>".into());
        let n = tokens.len();
        let mut types = vec![1; n];
        types[n - 2] = 3;
        types[n - 1] = 3;
        GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types: Some(types),
            merges: Some(merges),
            bos_token_id: Some(n as u32 - 2),
            eos_token_id: Some(n as u32 - 2),
            eog_key_ids: EogKeyIds::default(),
            ..Default::default()
        }
    }

    #[test]
    fn tiny_gpt2_bpe_merges_in_rank_order() {
        let b = build(&tiny_gpt2("qwen2")).unwrap();
        let t = &b.tokenizer;
        let ids = t.encode("hello world<|im_end|>", false).unwrap().get_ids().to_vec();
        let expect: Vec<u32> = ["hello", "Ġworld", "<|im_end|>"].iter().map(|p| t.token_to_id(p).unwrap()).collect();
        assert_eq!(ids, expect);
        assert_eq!(t.decode(&ids, false).unwrap(), "hello world<|im_end|>");
        // qwen2 splits digits one by one, so "12" is never merged even though "1 2" is a merge.
        let ids = t.encode("12", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![t.token_to_id("1").unwrap(), t.token_to_id("2").unwrap()]);
        // No BOS by default for qwen2; the stop set has <|endoftext|> and <|im_end|>.
        assert!(!b.add_bos);
        assert_eq!(b.eos_ids.len(), 2);
    }

    #[test]
    fn tiny_gpt2_llama3_groups_digits_and_adds_bos() {
        let b = build(&tiny_gpt2("llama-bpe")).unwrap();
        let t = &b.tokenizer;
        let ids = t.encode("12", true).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![b.bos.unwrap(), t.token_to_id("12").unwrap()]);
        assert!(b.add_bos);
    }

    #[test]
    fn bad_metadata_is_a_typed_error() {
        let mut v = tiny_gpt2("qwen2");
        v.merges = Some(s(&["nospace"]));
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        // A multi-byte first character must not break the split ("Ġw or" style merges).
        let mut v = tiny_gpt2("qwen2");
        v.merges = Some(s(&["Ġ w", "Ġ"]));
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_gpt2("qwen2");
        v.merges = Some(s(&[""]));
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_gpt2("qwen2");
        v.merges = Some(s(&["h zz"]));
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_gpt2("nonexistent-pre");
        v.merges = None;
        assert!(matches!(build(&v), Err(Error::MissingKey { .. })));
        assert!(matches!(build(&tiny_gpt2("nonexistent-pre")), Err(Error::Tokenizer { .. })));
        let mut v = tiny_spm();
        v.bos_token_id = Some(100_000);
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_spm();
        v.scores.as_mut().unwrap()[10] = f32::NAN;
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_spm();
        v.scores.as_mut().unwrap().pop();
        assert!(matches!(build(&v), Err(Error::InvalidKey { .. })));
        let mut v = tiny_spm();
        v.model = "bert".into();
        assert!(matches!(build(&v), Err(Error::Tokenizer { .. })));
        assert!(matches!(build(&GgufVocab::default()), Err(Error::MissingKey { .. })));
    }
}
