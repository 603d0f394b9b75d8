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
            other => Err(Error::InvalidParameter { name: "ftype", reason: format!("`{other}` is not f32, f16 or q8_0") }),
        }
    }
}

const ALIGN: usize = 32;

// GGUF value types.
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

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

/// The metadata section being written.
struct Kv {
    buf: Vec<u8>,
    count: u64,
}

impl Kv {
    fn key(&mut self, k: &str, ty: u32) {
        put_str(&mut self.buf, k);
        self.buf.extend_from_slice(&ty.to_le_bytes());
        self.count += 1;
    }
    fn u32(&mut self, k: &str, v: u32) {
        self.key(k, T_UINT32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, T_FLOAT32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k, T_BOOL);
        self.buf.push(v as u8);
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k, T_STRING);
        put_str(&mut self.buf, v);
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn pad(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
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

    let mut kv = Kv { buf: Vec::new(), count: 0 };
    kv.str("general.architecture", "bert");
    kv.u32("bert.context_length", cfg.max_position_embeddings as u32);
    kv.u32("bert.embedding_length", cfg.hidden_size as u32);
    kv.u32("bert.feed_forward_length", cfg.intermediate_size as u32);
    kv.u32("bert.block_count", cfg.num_hidden_layers as u32);
    kv.u32("bert.attention.head_count", cfg.num_attention_heads as u32);
    kv.f32("bert.attention.layer_norm_epsilon", cfg.layer_norm_eps as f32);
    kv.bool("bert.attention.causal", false);
    kv.u32("bert.pooling_type", 1);
    kv.u32("general.file_type", match ftype {
        GgufFtype::F32 => 0,
        GgufFtype::F16 => 1,
        GgufFtype::Q8_0 => 7,
    });
    kv.str("tokenizer.ggml.model", "bert");
    // Tokens with convert_hf_to_gguf.py's phantom-space convention.
    kv.key("tokenizer.ggml.tokens", T_ARRAY);
    kv.buf.extend_from_slice(&T_STRING.to_le_bytes());
    kv.buf.extend_from_slice(&(vocab.len() as u64).to_le_bytes());
    for &(t, _) in &vocab {
        if t.starts_with('[') && t.ends_with(']') {
            put_str(&mut kv.buf, t);
        } else if let Some(rest) = t.strip_prefix("##") {
            put_str(&mut kv.buf, rest);
        } else {
            put_str(&mut kv.buf, &format!("\u{2581}{t}"));
        }
    }
    // CONTROL (3) for special added tokens, USER_DEFINED (4) for other added ones, NORMAL (1).
    kv.key("tokenizer.ggml.token_type", T_ARRAY);
    kv.buf.extend_from_slice(&T_INT32.to_le_bytes());
    kv.buf.extend_from_slice(&(vocab.len() as u64).to_le_bytes());
    for &(t, _) in &vocab {
        let ty: i32 = match tj.added_tokens.iter().rev().find(|a| a.content == t) {
            Some(a) if a.special => 3,
            Some(_) => 4,
            None => 1,
        };
        kv.buf.extend_from_slice(&ty.to_le_bytes());
    }
    kv.u32("tokenizer.ggml.token_type_count", cfg.type_vocab_size as u32);
    kv.u32("tokenizer.ggml.bos_token_id", id_of("[CLS]")?);
    kv.u32("tokenizer.ggml.eos_token_id", id_of("[SEP]")?);
    kv.u32("tokenizer.ggml.seperator_token_id", id_of("[SEP]")?);
    kv.u32("tokenizer.ggml.padding_token_id", id_of("[PAD]")?);
    kv.u32("tokenizer.ggml.unknown_token_id", id_of("[UNK]")?);
    kv.u32("tokenizer.ggml.mask_token_id", id_of("[MASK]")?);
    kv.bool("tokenizer.ggml.add_bos_token", true);
    kv.bool("tokenizer.ggml.add_eos_token", true);
    if let Some(n) = tj.normalizer.as_ref().filter(|n| n.get("type").and_then(|t| t.as_str()) == Some("BertNormalizer")) {
        let lower = n.get("lowercase").and_then(|v| v.as_bool()).unwrap_or(true);
        let strip = n.get("strip_accents").and_then(|v| v.as_bool()).unwrap_or(lower);
        kv.bool("tokenizer.ggml.normalizer.lowercase", lower);
        kv.bool("tokenizer.ggml.normalizer.strip_accents", strip);
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
    // (gguf name, dims as written (ne0 first), ggml type, data)
    let mut tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = Vec::with_capacity(names.len());
    for (hf, gg) in &names {
        let dims = st.dims(hf)?;
        let (values, _) = super::TensorSource::get(&st, hf)?;
        let matrix = dims.len() == 2 && !gg.starts_with("token_types");
        let ne: Vec<u64> = dims.iter().rev().map(|&d| d as u64).collect();
        let (ty, data) = match ftype {
            GgufFtype::Q8_0 if matrix && dims[1] % 32 == 0 => (8, quantize_q8_0(&values)),
            GgufFtype::F16 if matrix => (1, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
            _ => (0, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        tensors.push((gg.clone(), ne, ty, data));
    }

    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&kv.count.to_le_bytes());
    head.extend_from_slice(&kv.buf);
    let mut offset = 0usize;
    for (name, ne, ty, data) in &tensors {
        put_str(&mut head, name);
        head.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for d in ne {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&ty.to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += pad(data.len());
    }
    head.resize(pad(head.len()), 0);
    out.write_all(&head)?;
    let mut written = head.len() as u64;
    for (_, _, _, data) in &tensors {
        out.write_all(data)?;
        let zeros = pad(data.len()) - data.len();
        out.write_all(&[0u8; ALIGN][..zeros])?;
        written += pad(data.len()) as u64;
    }
    Ok(written)
}
