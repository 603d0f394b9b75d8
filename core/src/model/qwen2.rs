//! Qwen 2 / 2.5 (`qwen2`). Mirrors ggml-org/llama.cpp `src/models/qwen2.cpp`: Llama's block with
//! biases on the q/k/v projections and NEOX RoPE; tied embeddings in the small sizes.

use super::decoder::{DecoderConfig, RopeLayout};
use super::{hf_checked, hf_invalid, hf_llama_tensor, llama_like_from_gguf, llama_like_from_hf, ArchDef, GgufKeys};
use crate::gguf::Metadata;
use crate::weights::WeightSource;
use crate::Result;

/// The registry entry.
pub const ARCH: ArchDef = ArchDef {
    name: "qwen2",
    hf_model_types: &["qwen2"],
    from_gguf,
    from_hf,
    hf_tensor: hf_llama_tensor,
    hf_norm_offset: 0.0,
};

fn choices(mut cfg: DecoderConfig) -> DecoderConfig {
    cfg.qkv_bias = true;
    cfg.rope_layout = RopeLayout::Neox;
    cfg
}

fn from_gguf(md: &Metadata, _weights: &dyn WeightSource, vocab: usize) -> Result<DecoderConfig> {
    let k = GgufKeys { md, arch: ARCH.name };
    k.checked(choices(llama_like_from_gguf(&k, vocab)?))
}

fn from_hf(v: &serde_json::Value, vocab: usize) -> Result<DecoderConfig> {
    if v.get("use_sliding_window").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(hf_invalid("config.json use_sliding_window: Qwen 2 sliding-window attention is not supported"));
    }
    let (cfg, _) = llama_like_from_hf(v, ARCH.name, vocab)?;
    hf_checked(choices(cfg))
}
