//! Qwen 3 (`qwen3`). Mirrors ggml-org/llama.cpp `src/models/qwen3.cpp`: Llama's block with a
//! per-head RMSNorm of q and k before NEOX RoPE, no biases, `heads × head_dim` wider than the
//! model (0.6B: 16 × 128 over 1024).

use super::decoder::{DecoderConfig, RopeLayout};
use super::{hf_checked, hf_invalid, hf_llama_tensor, llama_like_from_gguf, llama_like_from_hf, ArchDef, GgufKeys};
use crate::gguf::Metadata;
use crate::weights::WeightSource;
use crate::Result;

/// The registry entry.
pub const ARCH: ArchDef = ArchDef {
    name: "qwen3",
    hf_model_types: &["qwen3"],
    from_gguf,
    from_hf,
    hf_tensor: hf_llama_tensor,
    hf_norm_offset: 0.0,
};

fn choices(mut cfg: DecoderConfig) -> DecoderConfig {
    cfg.qk_norm = true;
    cfg.rope_layout = RopeLayout::Neox;
    cfg
}

fn from_gguf(md: &Metadata, _weights: &dyn WeightSource, vocab: usize) -> Result<DecoderConfig> {
    let k = GgufKeys { md, arch: ARCH.name };
    k.checked(choices(llama_like_from_gguf(&k, vocab)?))
}

fn from_hf(v: &serde_json::Value, vocab: usize) -> Result<DecoderConfig> {
    let (cfg, c) = llama_like_from_hf(v, ARCH.name, vocab)?;
    if c.attention_bias == Some(true) {
        return Err(hf_invalid("config.json attention_bias: Qwen 3 has no attention biases"));
    }
    hf_checked(choices(cfg))
}
