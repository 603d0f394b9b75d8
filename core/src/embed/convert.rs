//! A sentence-transformers BERT folder written as a GGUF of llama.cpp's `bert` architecture: how
//! the catalog's derived GGUF encoders are made on the user's machine from the pinned folder.
//!
//! Byte for byte what `tests/reference/minilm_to_gguf.py` writes with gguf-py 0.19.0 (the same
//! metadata keys in the same order, the same tensor order, 32-byte alignment, Q8_0 rounded as
//! ggml's `quantize_row_q8_0_ref`), so the sha256 the catalog pins is reproducible by either and
//! a test checks both agree. Only what that script handles: a BERT folder whose tensors carry no
//! `bert.` prefix, a WordPiece `tokenizer.json`, mean pooling.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;

use super::bert::{quantize_q8_0, BertConfig};
use super::SafetensorsSource;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{MetaArray, MetaValue};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// The tensor type of the 2-D matrices (the token-type table, norms and biases stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufFtype {
    /// All f32.
    F32,
    /// Matrices in f16.
    F16,
    /// Matrices in Q8_0 (those with a multiple of 32 columns).
    Q8_0,
}

impl std::str::FromStr for GgufFtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            other => {
                Err(Error::InvalidParameter { name: "ftype", reason: format!("`{other}` is not f32, f16 or q8_0") })
            }
        }
    }
}

/// The data alignment (gguf-py's default, and [`GgufWriter`]'s).
const ALIGN: usize = 32;

#[derive(Deserialize)]
struct TokenizerJson {
    model: WordPieceModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    #[serde(default)]
    normalizer: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WordPieceModel {
    vocab: std::collections::HashMap<String, u32>,
}

#[derive(Deserialize)]
struct AddedToken {
    content: String,
    special: bool,
}

/// Writes the folder `dir` as a `bert` GGUF of type `ftype` to `out`; returns the bytes written.
pub fn folder_to_gguf(dir: &Path, ftype: GgufFtype, out: &mut dyn Write) -> Result<u64> {
    let bad = |reason: String| Error::InvalidModelFolder { reason };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| bad(format!("{name}: {e}")));
    let cfg: BertConfig = serde_json::from_str(&read("config.json")?).map_err(|e| bad(format!("config.json: {e}")))?;
    cfg.validate()?;
    let tj: TokenizerJson =
        serde_json::from_str(&read("tokenizer.json")?).map_err(|e| bad(format!("tokenizer.json: {e}")))?;
    let mut vocab: Vec<(&str, u32)> = tj.model.vocab.iter().map(|(t, &i)| (t.as_str(), i)).collect();
    vocab.sort_by_key(|&(_, i)| i);
    if vocab.iter().enumerate().any(|(n, &(_, i))| n as u32 != i) {
        return Err(bad("tokenizer.json: vocabulary ids are not 0..n".into()));
    }
    let id_of = |t: &str| tj.model.vocab.get(t).copied().ok_or_else(|| bad(format!("tokenizer.json: no {t} token")));

    let u32v = |v: usize| MetaValue::U32(v as u32);
    let mut w = GgufWriter::new()
        .kv("general.architecture", MetaValue::String("bert".into()))
        .kv("bert.context_length", u32v(cfg.max_position_embeddings))
        .kv("bert.embedding_length", u32v(cfg.hidden_size))
        .kv("bert.feed_forward_length", u32v(cfg.intermediate_size))
        .kv("bert.block_count", u32v(cfg.num_hidden_layers))
        .kv("bert.attention.head_count", u32v(cfg.num_attention_heads))
        .kv("bert.attention.layer_norm_epsilon", MetaValue::F32(cfg.layer_norm_eps as f32))
        .kv("bert.attention.causal", MetaValue::Bool(false))
        .kv("bert.pooling_type", MetaValue::U32(1))
        .kv(
            "general.file_type",
            MetaValue::U32(match ftype {
                GgufFtype::F32 => 0,
                GgufFtype::F16 => 1,
                GgufFtype::Q8_0 => 7,
            }),
        )
        .kv("tokenizer.ggml.model", MetaValue::String("bert".into()));
    // Tokens with convert_hf_to_gguf.py's phantom-space convention.
    let tokens: Vec<String> = vocab
        .iter()
        .map(|&(t, _)| {
            if t.starts_with('[') && t.ends_with(']') {
                t.to_string()
            } else if let Some(rest) = t.strip_prefix("##") {
                rest.to_string()
            } else {
                format!("\u{2581}{t}")
            }
        })
        .collect();
    w = w.kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens.iter().map(String::as_str).collect())));
    // CONTROL (3) for special added tokens, USER_DEFINED (4) for other added ones, NORMAL (1).
    let types: Vec<i32> = vocab
        .iter()
        .map(|&(t, _)| match tj.added_tokens.iter().rev().find(|a| a.content == t) {
            Some(a) if a.special => 3,
            Some(_) => 4,
            None => 1,
        })
        .collect();
    w = w
        .kv("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(types)))
        .kv("tokenizer.ggml.token_type_count", u32v(cfg.type_vocab_size))
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(id_of("[CLS]")?))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(id_of("[SEP]")?))
        .kv("tokenizer.ggml.seperator_token_id", MetaValue::U32(id_of("[SEP]")?))
        .kv("tokenizer.ggml.padding_token_id", MetaValue::U32(id_of("[PAD]")?))
        .kv("tokenizer.ggml.unknown_token_id", MetaValue::U32(id_of("[UNK]")?))
        .kv("tokenizer.ggml.mask_token_id", MetaValue::U32(id_of("[MASK]")?))
        .kv("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        .kv("tokenizer.ggml.add_eos_token", MetaValue::Bool(true));
    if let Some(n) = tj.normalizer.as_ref().filter(|n| n.get("type").and_then(|t| t.as_str()) == Some("BertNormalizer"))
    {
        let lower = n.get("lowercase").and_then(|v| v.as_bool()).unwrap_or(true);
        let strip = n.get("strip_accents").and_then(|v| v.as_bool()).unwrap_or(lower);
        w = w
            .kv("tokenizer.ggml.normalizer.lowercase", MetaValue::Bool(lower))
            .kv("tokenizer.ggml.normalizer.strip_accents", MetaValue::Bool(strip));
    }

    // Tensors, in the script's order.
    let mut names: Vec<(String, String)> = [
        ("embeddings.word_embeddings.weight", "token_embd.weight"),
        ("embeddings.position_embeddings.weight", "position_embd.weight"),
        ("embeddings.token_type_embeddings.weight", "token_types.weight"),
        ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let sub = [
        ("attention.self.query", "attn_q"),
        ("attention.self.key", "attn_k"),
        ("attention.self.value", "attn_v"),
        ("attention.output.dense", "attn_output"),
        ("attention.output.LayerNorm", "attn_output_norm"),
        ("intermediate.dense", "ffn_up"),
        ("output.dense", "ffn_down"),
        ("output.LayerNorm", "layer_output_norm"),
    ];
    for l in 0..cfg.num_hidden_layers {
        for (k, v) in sub {
            for s in ["weight", "bias"] {
                names.push((format!("encoder.layer.{l}.{k}.{s}"), format!("blk.{l}.{v}.{s}")));
            }
        }
    }
    let st = SafetensorsSource::open(&dir.join("model.safetensors"))?;
    for (hf, gg) in &names {
        let dims = st.dims(hf)?;
        let (values, _) = super::TensorSource::get(&st, hf)?;
        let matrix = dims.len() == 2 && !gg.starts_with("token_types");
        let ne: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
        let (ty, data) = match ftype {
            GgufFtype::Q8_0 if matrix && dims[1] % 32 == 0 => (GgmlType::Q8_0, quantize_q8_0(&values)),
            GgufFtype::F16 if matrix => {
                (GgmlType::F16, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect())
            }
            _ => (GgmlType::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        w = w.tensor(gg, &ne, ty, data);
    }

    // gguf-py pads the last tensor's data too.
    let mut bytes = w.to_bytes();
    bytes.resize(bytes.len().div_ceil(ALIGN) * ALIGN, 0);
    out.write_all(&bytes)?;
    let written = bytes.len() as u64;
    Ok(written)
}
