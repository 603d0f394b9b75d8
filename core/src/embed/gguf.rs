//! A BERT sentence encoder from a GGUF file of llama.cpp's `bert` architecture, as
//! llama.cpp's `convert_hf_to_gguf.py` (or `tests/reference/minilm_to_gguf.py`) writes it.
//!
//! What is read (llama.cpp's names):
//!
//! ```text
//! general.architecture = "bert"
//! bert.{embedding_length, block_count, attention.head_count, feed_forward_length,
//!       context_length, attention.layer_norm_epsilon, pooling_type (1 mean, 2 CLS)}
//! tokenizer.ggml.{model = "bert", tokens, token_type, token_type_count,
//!       cls/bos, seperator/eos, unknown, padding token ids, normalizer.lowercase/strip_accents}
//! token_embd, position_embd, token_types, token_embd_norm,
//! blk.N.{attn_q, attn_k, attn_v | attn_qkv, attn_output, attn_output_norm, ffn_up, ffn_down,
//!        layer_output_norm}.{weight, bias}
//! ```
//!
//! The vocabulary is stored with llama.cpp's phantom-space convention (`▁word` starts a word,
//! `piece` continues one, `[X]` stays as is); it is turned back into the WordPiece vocabulary
//! (`word`, `##piece`) and run by the same HF `tokenizers` pipeline as a `tokenizer.json` of a
//! BERT model (BertNormalizer, BertPreTokenizer, WordPiece, `[CLS] … [SEP]`), the CONTROL tokens
//! as special tokens (USER_DEFINED ones as plain added tokens). Tensors stored as Q8_0 are used
//! as they are in the products (never requantized); other types are dequantized to f32.

use std::path::Path;

use super::bert::{BertConfig, TensorSource};
use super::Pooling;
use crate::gguf::GgufFile;
use crate::quant::GgmlType;
use crate::{Error, Result};

/// llama.cpp's `llama_pooling_type` values in `bert.pooling_type`.
const POOLING_MEAN: u32 = 1;
const POOLING_CLS: u32 = 2;
/// `tokenizer.ggml.token_type` value of control tokens (llama.cpp `LLAMA_TOKEN_TYPE_CONTROL`).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// `LLAMA_TOKEN_TYPE_USER_DEFINED`: an added token that is not special.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// What a `bert` GGUF holds besides its tensors.
pub(crate) struct GgufBert {
    pub cfg: BertConfig,
    pub pooling: Pooling,
    pub tokenizer_json: String,
    pub source: GgufSource,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidGguf { reason: reason.into() }
}

/// Opens `path` and reads its config, pooling and tokenizer.
pub(crate) fn open(path: &Path) -> Result<GgufBert> {
    let file = GgufFile::open(path)?;
    let md = file.metadata();
    let arch = md.get_str("general.architecture")?;
    if arch != "bert" {
        return Err(Error::UnsupportedArchitecture { name: format!("{arch} (as an embedding model; expected bert)") });
    }
    let key = |k: &str| format!("bert.{k}");
    let u = |k: &str| -> Result<usize> { Ok(md.get_u32(&key(k))? as usize) };
    let tokens = md.get_str_array("tokenizer.ggml.tokens")?;
    let type_vocab = md.opt_u32("tokenizer.ggml.token_type_count")?.unwrap_or(2) as usize;
    let cfg = BertConfig {
        vocab_size: tokens.len(),
        hidden_size: u("embedding_length")?,
        num_hidden_layers: u("block_count")?,
        num_attention_heads: u("attention.head_count")?,
        intermediate_size: u("feed_forward_length")?,
        max_position_embeddings: u("context_length")?,
        type_vocab_size: type_vocab.max(1),
        layer_norm_eps: md.get_f32(&key("attention.layer_norm_epsilon"))? as f64,
        // BERT's own activation (HF `gelu`, erf); llama.cpp's graph uses ggml's tanh
        // approximation, within 1e-5 of it in cosine on MiniLM.
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
    };
    let pooling = match md.opt_u32(&key("pooling_type"))? {
        Some(POOLING_MEAN) => Pooling::Mean,
        Some(POOLING_CLS) => Pooling::Cls,
        None => {
            log::warn!("{}: no bert.pooling_type; mean pooling", path.display());
            Pooling::Mean
        }
        Some(other) => {
            return Err(Error::UnsupportedArchitecture {
                name: format!("bert.pooling_type {other} (only 1 = mean and 2 = CLS give a sentence vector)"),
            })
        }
    };
    let tokenizer_json = tokenizer_json(&file, &tokens)?;
    let source = GgufSource::new(file, cfg.hidden_size)?;
    Ok(GgufBert { cfg, pooling, tokenizer_json, source })
}

/// The phantom-space token back to its WordPiece spelling.
fn wordpiece_spelling(t: &str) -> String {
    if let Some(rest) = t.strip_prefix('\u{2581}') {
        rest.to_owned()
    } else if t.starts_with('[') && t.ends_with(']') {
        t.to_owned()
    } else {
        format!("##{t}")
    }
}

/// A `tokenizer.json` equivalent to the BERT tokenizer the GGUF's vocabulary came from.
fn tokenizer_json(file: &GgufFile, tokens: &[&str]) -> Result<String> {
    let md = file.metadata();
    let model = md.get_str("tokenizer.ggml.model")?;
    if model != "bert" {
        return Err(Error::UnsupportedArchitecture { name: format!("tokenizer.ggml.model {model} (expected bert)") });
    }
    let id = |keys: &[&str]| -> Result<u32> {
        for k in keys {
            if let Some(v) = md.opt_u32(k)? {
                if (v as usize) < tokens.len() {
                    return Ok(v);
                }
                return Err(Error::InvalidKey { key: (*k).into(), reason: format!("{v} is outside the vocabulary") });
            }
        }
        Err(Error::MissingKey { key: keys[0].into() })
    };
    let cls = id(&["tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"])?;
    let sep = id(&["tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"])?;
    let unk = id(&["tokenizer.ggml.unknown_token_id"])?;
    // llama.cpp's defaults: lowercase on, strip_accents following lowercase.
    let lowercase = md.opt_bool("tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
    let strip = md.opt_bool("tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);
    let types = match md.get("tokenizer.ggml.token_type") {
        Some(_) => md.get_i64_array("tokenizer.ggml.token_type")?,
        None => Vec::new(),
    };
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(bad(format!("{} token types for {} tokens", types.len(), tokens.len())));
    }
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let s = wordpiece_spelling(t);
        if vocab.contains_key(&s) {
            log::warn!("gguf vocabulary: token {i} repeats an earlier spelling; the first is kept");
            continue;
        }
        // As HF's tokenizer.json: special added tokens are matched in the raw text, other added
        // tokens after normalization.
        match types.get(i) {
            Some(&TOKEN_TYPE_CONTROL) => added.push(serde_json::json!({"id": i, "content": s, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})),
            Some(&TOKEN_TYPE_USER_DEFINED) => added.push(serde_json::json!({"id": i, "content": s,
                "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false})),
            _ => {}
        }
        vocab.insert(s, serde_json::Value::from(i as u64));
    }
    let spell = |i: u32| wordpiece_spelling(tokens[i as usize]);
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": strip, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": [spell(sep), sep], "cls": [spell(cls), cls]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": spell(unk), "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab},
    });
    Ok(json.to_string())
}

/// The GGUF's tensors under the encoder's HF names.
pub(crate) struct GgufSource {
    file: GgufFile,
    hidden: usize,
}

impl GgufSource {
    fn new(file: GgufFile, hidden: usize) -> Result<Self> {
        Ok(Self { file, hidden })
    }

    /// The file (for fingerprinting).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// GGUF name and row range for an HF name; a q/k/v weight or bias may live in a fused
    /// `attn_qkv` tensor (rows `[q; k; v]`).
    fn locate(&self, name: &str) -> Result<(String, Option<std::ops::Range<usize>>)> {
        let missing = || Error::Tensor { name: name.to_owned(), reason: "has no counterpart in the GGUF".into() };
        let fixed = match name {
            "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
            "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
            "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
            "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
            "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
            _ => None,
        };
        if let Some(f) = fixed {
            return Ok((f.to_owned(), None));
        }
        let rest = name.strip_prefix("encoder.layer.").ok_or_else(missing)?;
        let (layer, rest) = rest.split_once('.').ok_or_else(missing)?;
        let (module, suffix) = rest.rsplit_once('.').ok_or_else(missing)?;
        let part = match module {
            "attention.self.query" => "attn_q",
            "attention.self.key" => "attn_k",
            "attention.self.value" => "attn_v",
            "attention.output.dense" => "attn_output",
            "attention.output.LayerNorm" => "attn_output_norm",
            "intermediate.dense" => "ffn_up",
            "output.dense" => "ffn_down",
            "output.LayerNorm" => "layer_output_norm",
            _ => return Err(missing()),
        };
        let direct = format!("blk.{layer}.{part}.{suffix}");
        if self.file.has_tensor(&direct) {
            return Ok((direct, None));
        }
        let slot = match part {
            "attn_q" => 0,
            "attn_k" => 1,
            "attn_v" => 2,
            _ => return Ok((direct, None)),
        };
        let fused = format!("blk.{layer}.attn_qkv.{suffix}");
        if self.file.has_tensor(&fused) {
            let h = self.hidden;
            return Ok((fused, Some(slot * h..(slot + 1) * h)));
        }
        Ok((direct, None))
    }

    /// `(type, bytes, [rows, cols])` of the rows asked for.
    fn raw(&self, name: &str) -> Result<(GgmlType, &[u8], [usize; 2])> {
        let (gname, rows) = self.locate(name)?;
        let info = self.file.tensor(&gname)?;
        let cols = info.row_len() as usize;
        let n_rows = info.n_rows() as usize;
        if info.shape.len() > 2 {
            return Err(Error::Tensor {
                name: gname,
                reason: format!("expected 1 or 2 dimensions, got {:?}", info.shape),
            });
        }
        let data = self.file.tensor_data(info)?;
        let row_bytes = info.ty.bytes_for(cols as u64).ok_or_else(|| Error::Tensor {
            name: gname.clone(),
            reason: format!("rows of {cols} {:?} values", info.ty),
        })? as usize;
        let (rows, data) = match rows {
            None => (n_rows, data),
            Some(r) => {
                // A fused bias is one row of 3·h: take columns, i.e. a byte range of the row.
                if n_rows == 1 {
                    let width = info.ty.bytes_for(r.len() as u64).unwrap_or(0) as usize;
                    let start = info.ty.bytes_for(r.start as u64).unwrap_or(0) as usize;
                    let slice = data
                        .get(start..start + width)
                        .ok_or_else(|| Error::Tensor { name: gname.clone(), reason: "fused bias too short".into() })?;
                    return Ok((info.ty, slice, [1, r.len()]));
                }
                let slice = data.get(r.start * row_bytes..r.end * row_bytes).ok_or_else(|| Error::Tensor {
                    name: gname.clone(),
                    reason: format!("fused tensor has {n_rows} rows, not 3 × {}", self.hidden),
                })?;
                (r.len(), slice)
            }
        };
        Ok((info.ty, data, [rows, cols]))
    }
}

impl TensorSource for GgufSource {
    fn get(&self, name: &str) -> Result<(Vec<f32>, [usize; 2])> {
        let (ty, bytes, shape) = self.raw(name)?;
        let v = crate::quant::dequantize(ty, bytes, shape[0] * shape[1])
            .map_err(|e| Error::Tensor { name: name.to_owned(), reason: e.to_string() })?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Tensor { name: name.to_owned(), reason: "holds NaN or infinity".into() });
        }
        Ok((v, shape))
    }

    fn get_q8_0(&self, name: &str) -> Result<Option<(Vec<u8>, [usize; 2])>> {
        let (ty, bytes, shape) = self.raw(name)?;
        if ty != GgmlType::Q8_0 {
            return Ok(None);
        }
        // Blocks: f16 scale + 32 i8. A non-finite scale would poison every product.
        for b in bytes.chunks_exact(34) {
            if !half::f16::from_le_bytes([b[0], b[1]]).is_finite() {
                return Err(Error::Tensor { name: name.to_owned(), reason: "a Q8_0 scale is NaN or infinite".into() });
            }
        }
        Ok(Some((bytes.to_vec(), shape)))
    }
}
