//! Config synthesis: GGUF metadata -> `<Arch>Config`. GGUF key strings appear only under `gguf/`.

use super::Metadata;
use crate::model::gemma3::Gemma3Config;
use crate::{Error, Result};

/// Builds a [`Gemma3Config`] from `gemma3.*` metadata. `vocab_size` comes from the embedding.
pub fn gemma3_config(md: &Metadata, vocab_size: usize) -> Result<Gemma3Config> {
    let a = "gemma3";
    let k = |s: &str| format!("{a}.{s}");
    let hidden = md.get_u32(&k("embedding_length"))? as usize;
    let heads = md.get_u32(&k("attention.head_count"))? as usize;
    let kv_heads = md.opt_u32(&k("attention.head_count_kv"))?.map(|v| v as usize).unwrap_or(heads);
    let head_dim = md.opt_u32(&k("attention.key_length"))?.map(|v| v as usize).unwrap_or(256);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(Error::InvalidKey {
            key: k("attention.head_count_kv"),
            reason: format!("{heads} query heads cannot be grouped over {kv_heads} kv heads"),
        });
    }
    let scaling = match md.opt_str(&k("rope.scaling.type"))? {
        Some("linear") => md.opt_f32(&k("rope.scaling.factor"))?.unwrap_or(1.0),
        Some("none") | None => 1.0,
        Some(other) => {
            return Err(Error::InvalidKey { key: k("rope.scaling.type"), reason: format!("unsupported `{other}`") })
        }
    };
    let cfg = Gemma3Config {
        hidden_size: hidden,
        intermediate_size: md.get_u32(&k("feed_forward_length"))? as usize,
        num_hidden_layers: md.get_u32(&k("block_count"))? as usize,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: md.opt_f32(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        rope_theta: md.opt_f32(&k("rope.freq_base"))?.unwrap_or(1_000_000.0),
        rope_local_base_freq: 10_000.0,
        rope_scaling_factor: scaling,
        sliding_window: md.opt_u32(&k("attention.sliding_window"))?.map(|v| v as usize).unwrap_or(512),
        sliding_window_pattern: 6,
        max_position_embeddings: md.opt_u32(&k("context_length"))?.map(|v| v as usize).unwrap_or(32768),
        vocab_size,
        // Gemma 3 uses query_pre_attn_scalar = head_dim for the sizes we ship (llama.cpp: 1/sqrt(n_embd_head_k)).
        query_pre_attn_scalar: head_dim as f32,
        final_logit_softcapping: md.opt_f32(&k("final_logit_softcapping"))?,
        attn_logit_softcapping: md.opt_f32(&k("attn_logit_softcapping"))?,
    };
    validate(&cfg)?;
    Ok(cfg)
}

fn validate(c: &Gemma3Config) -> Result<()> {
    c.check().map_err(|(field, reason)| {
        let key = match field {
            "hidden_size" => "embedding_length",
            "num_hidden_layers" => "block_count",
            "head_dim" => "attention.key_length",
            "intermediate_size" => "feed_forward_length",
            "sliding_window" => "attention.sliding_window",
            other => other,
        };
        Error::InvalidKey { key: format!("gemma3.{key}"), reason }
    })
}
