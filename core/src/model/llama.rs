//! Llama (`llama`): Llama 3.x and SmolLM2. Mirrors ggml-org/llama.cpp `src/models/llama.cpp`:
//! pre-norm blocks, SwiGLU, grouped-query attention scaled by `1/sqrt(head_dim)`, RoPE in
//! llama.cpp's "norm" layout (adjacent pairs) over the q/k rows its converter permuted, Llama 3's
//! per-frequency divisors from `rope_freqs.weight` when the file has them, tied or untied output.
//! A Hugging Face folder keeps q/k unpermuted, so it rotates halves (NEOX) instead.

use super::decoder::{DecoderConfig, RopeScaling};
use super::{hf_checked, hf_invalid, hf_llama_tensor, llama_like_from_gguf, llama_like_from_hf, ArchDef, GgufKeys};
use crate::gguf::Metadata;
use crate::weights::{WeightId, WeightSource};
use crate::Result;

/// The registry entry.
pub const ARCH: ArchDef = ArchDef {
    name: "llama",
    hf_model_types: &["llama"],
    from_gguf,
    from_hf,
    hf_tensor: hf_llama_tensor,
    hf_norm_offset: 0.0,
};

fn from_gguf(md: &Metadata, weights: &dyn WeightSource, vocab: usize) -> Result<DecoderConfig> {
    let k = GgufKeys { md, arch: ARCH.name };
    let mut cfg = llama_like_from_gguf(&k, vocab)?;
    if weights.has(WeightId::RopeFreqs) {
        let f = weights.raw(WeightId::RopeFreqs)?.to_f32()?;
        if cfg.rope_scaling != RopeScaling::None {
            return Err(k.invalid("rope.scaling.type", "both a scaling type and rope_freqs factors"));
        }
        cfg.rope_scaling = RopeScaling::Factors(f);
    }
    k.checked(cfg)
}

fn from_hf(v: &serde_json::Value, vocab: usize) -> Result<DecoderConfig> {
    let (cfg, c) = llama_like_from_hf(v, ARCH.name, vocab)?;
    if c.attention_bias == Some(true) {
        return Err(hf_invalid("config.json attention_bias: biased Llama attention is not supported"));
    }
    hf_checked(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decoder::{Activation, NormPlacement, RopeLayout};

    /// Llama 3.2 1B's `config.json` (transformers 4.45 spelling).
    fn llama32() -> serde_json::Value {
        serde_json::json!({
            "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "max_position_embeddings": 131072, "hidden_act": "silu", "attention_bias": false,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "tie_word_embeddings": true
        })
    }

    #[test]
    fn hf_config_has_llama_choices_and_llama3_factors() {
        let c = from_hf(&llama32(), 128_256).unwrap();
        assert_eq!((c.norm, c.activation, c.qk_norm, c.qkv_bias), (NormPlacement::Pre, Activation::Silu, false, false));
        // HF keeps q/k unpermuted: halves rotate (llama.cpp's converter permutes them for "norm").
        assert_eq!(c.rope_layout, RopeLayout::Neox);
        assert_eq!((c.head_dim, c.num_key_value_heads, c.attn_scale), (64, 8, 0.125));
        // What llama.cpp's converter writes as rope_freqs.weight for this config (computed by
        // tests/reference/make_arch_goldens.py's copy of `generate_extra_tensors`).
        let want = [1.651_329_3f32, 3.292_262_8, 9.666_731];
        let RopeScaling::Factors(f) = &c.rope_scaling else { panic!("{:?}", c.rope_scaling) };
        assert_eq!(f.len(), 32);
        assert!(f[..15].iter().all(|&x| x == 1.0) && f[18..].iter().all(|&x| x == 32.0), "{f:?}");
        for (got, want) in f[15..18].iter().zip(want) {
            assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
        }
        let mut bad = llama32();
        bad["attention_bias"] = true.into();
        assert!(from_hf(&bad, 8).is_err());
        let mut bad = llama32();
        bad["hidden_act"] = "gelu".into();
        assert!(from_hf(&bad, 8).is_err());
    }
}
