//! Gemma 3 (text). Reference: Gemma Team, "Gemma 3 Technical Report" (2025); mirrors
//! ggml-org/llama.cpp `src/models/gemma3.cpp` and huggingface/transformers
//! `models/gemma3/modeling_gemma3.py`. Facts in ENGINEERING.md D: sandwich norms, GeGLU (tanh),
//! NEOX RoPE with base 10k on the sliding-window layers and 1M on every sixth (global) layer,
//! per-head q/k RMSNorm, embeddings scaled by `sqrt(hidden)`, attention scale
//! `query_pre_attn_scalar^-0.5`, tied output.

use std::collections::HashMap;

use serde::Deserialize;

use super::decoder::{Activation, DecoderConfig, NormPlacement, RopeLayout, RopeScaling, SlidingWindow};
use super::{hf_checked, hf_invalid, ArchDef, GgufKeys};
use crate::gguf::{MetaArray, MetaValue, Metadata};
use crate::weights::{WeightId, WeightSource};
use crate::Result;

/// The registry entry.
pub const ARCH: ArchDef = ArchDef {
    name: "gemma3",
    hf_model_types: &["gemma3_text", "gemma3"],
    from_gguf,
    from_hf,
    hf_tensor,
    // HF Gemma's RMSNorm computes `x·(1 + w)` and stores `w`; GGUF stores `1 + w`.
    hf_norm_offset: 1.0,
};

/// Every `SWA_PATTERN`-th layer is global (layers 5, 11, 17, …).
const SWA_PATTERN: usize = 6;

#[allow(clippy::too_many_arguments)]
fn config(
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    rope_theta: f32,
    local_theta: f32,
    scaling: f32,
    window: Option<usize>,
    pattern: usize,
    context: usize,
    vocab: usize,
    query_pre_attn_scalar: f32,
    final_softcap: Option<f32>,
) -> DecoderConfig {
    DecoderConfig {
        arch: ARCH.name,
        hidden_size: hidden,
        intermediate_size: ff,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: eps,
        norm: NormPlacement::Sandwich,
        activation: Activation::GeluTanh,
        qk_norm: true,
        qkv_bias: false,
        rope_layout: RopeLayout::Neox,
        rope_theta,
        rope_scaling: if scaling == 1.0 { RopeScaling::None } else { RopeScaling::Linear(scaling) },
        sliding: window.map(|size| SlidingWindow { size, pattern, rope_theta: local_theta }),
        // llama.cpp scales by sqrtf(n_embd) in f32 (25.2982 for 640), not HF's bf16 25.25.
        embed_scale: (hidden as f32).sqrt(),
        attn_scale: query_pre_attn_scalar.powf(-0.5),
        max_position_embeddings: context,
        vocab_size: vocab,
        final_logit_softcapping: final_softcap,
    }
}

/// The config from `gemma3.*` metadata.
fn from_gguf(md: &Metadata, _weights: &dyn WeightSource, vocab: usize) -> Result<DecoderConfig> {
    let k = GgufKeys { md, arch: ARCH.name };
    let heads = k.usize("attention.head_count")?;
    let kv_heads = k.opt_usize("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = k.opt_usize("attention.key_length")?.unwrap_or(256);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(k.invalid(
            "attention.head_count_kv",
            format!("{heads} query heads cannot be grouped over {kv_heads} kv heads"),
        ));
    }
    let scaling = match k.opt_str("rope.scaling.type")? {
        Some("linear") => k.opt_f32("rope.scaling.factor")?.unwrap_or(1.0),
        Some("none") | None => 1.0,
        Some(other) => return Err(k.invalid("rope.scaling.type", format!("unsupported `{other}`"))),
    };
    if k.opt_f32("attn_logit_softcapping")?.is_some() {
        return Err(
            k.invalid("attn_logit_softcapping", "attention logit softcapping is not supported (Gemma 3 has none)")
        );
    }
    let layers = k.usize("block_count")?;
    // As llama.cpp's gemma3 loader: sliding-window layers only when the file names a window (its
    // converter leaves the key out for a model whose every layer is global); their period from
    // `attention.sliding_window_pattern` (a number, or one flag per layer) or 6; their RoPE base
    // from `rope.freq_base_swa` or 10000.
    let window = k.opt_usize("attention.sliding_window")?.filter(|&w| w > 0);
    let pattern = match k.md.get(&k.key("attention.sliding_window_pattern")) {
        None => SWA_PATTERN,
        Some(MetaValue::Array(flags)) => gguf_sliding_pattern(&k, flags, layers)?,
        // llama.cpp: a period of 0 makes every layer a sliding-window one (a period past the last layer).
        Some(_) => match k.usize("attention.sliding_window_pattern")? {
            0 => layers + 1,
            p => p,
        },
    };
    k.checked(config(
        k.usize("embedding_length")?,
        k.usize("feed_forward_length")?,
        layers,
        heads,
        kv_heads,
        head_dim,
        k.opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        k.opt_f32("rope.freq_base")?.unwrap_or(1_000_000.0),
        k.opt_f32("rope.freq_base_swa")?.unwrap_or(10_000.0),
        scaling,
        window,
        pattern,
        k.opt_usize("context_length")?.unwrap_or(32768),
        vocab,
        // Gemma 3 uses query_pre_attn_scalar = head_dim for the sizes we ship (llama.cpp: 1/sqrt(n_embd_head_k)).
        head_dim as f32,
        k.opt_f32("final_logit_softcapping")?,
    ))
}

/// The period of a per-layer sliding-window flag array (`true` = sliding, as llama.cpp's
/// `is_swa`): only "sliding … sliding global" repeating is supported; anything else is a typed
/// error rather than a model run wrongly.
fn gguf_sliding_pattern(k: &GgufKeys<'_>, flags: &MetaArray, layers: usize) -> Result<usize> {
    let key = "attention.sliding_window_pattern";
    let MetaArray::Bool(flags) = flags else {
        return Err(k.invalid(key, "expected one boolean per layer"));
    };
    if flags.len() != layers {
        return Err(k.invalid(key, format!("{} flags for {layers} layers", flags.len())));
    }
    let pattern = flags.iter().position(|&swa| !swa).map_or(layers + 1, |i| i + 1);
    if flags.iter().enumerate().any(|(i, &swa)| swa != (i % pattern < pattern - 1)) {
        return Err(k.invalid(key, format!("only a repeating pattern of sliding layers then one global layer is supported (period {pattern} does not fit)")));
    }
    Ok(pattern)
}

/// `config.json` of a Gemma 3 text model (transformers 4.5x and 5.x spellings).
#[derive(Debug, Deserialize)]
struct HfGemma3 {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    rope_local_base_freq: Option<f32>,
    rope_scaling: Option<RopeParams>,
    rope_parameters: Option<HashMap<String, RopeParams>>,
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    max_position_embeddings: Option<usize>,
    query_pre_attn_scalar: Option<f32>,
    final_logit_softcapping: Option<f32>,
    attn_logit_softcapping: Option<f32>,
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RopeParams {
    #[serde(alias = "type", rename = "rope_type")]
    kind: Option<String>,
    factor: Option<f32>,
    rope_theta: Option<f32>,
}

/// The config from `config.json`.
fn from_hf(v: &serde_json::Value, vocab: usize) -> Result<DecoderConfig> {
    let c: HfGemma3 = serde_json::from_value(v.clone()).map_err(|e| hf_invalid(format!("config.json: {e}")))?;
    if let Some(act) = c.hidden_activation.as_deref().or(c.hidden_act.as_deref()) {
        if act != "gelu_pytorch_tanh" {
            return Err(hf_invalid(format!("config.json hidden_activation `{act}` (Gemma 3 uses gelu_pytorch_tanh)")));
        }
    }
    if c.attn_logit_softcapping.is_some() {
        return Err(hf_invalid("config.json attn_logit_softcapping is not supported (Gemma 3 has none)"));
    }
    let heads = c.num_attention_heads;
    let head_dim = c.head_dim.unwrap_or(256);
    // transformers 5 nests the RoPE settings per layer kind; 4.x has flat fields.
    let (mut rope_theta, mut local_theta, mut scaling) =
        (c.rope_theta.unwrap_or(1_000_000.0), c.rope_local_base_freq.unwrap_or(10_000.0), c.rope_scaling.clone());
    if let Some(p) = &c.rope_parameters {
        if let Some(full) = p.get("full_attention") {
            rope_theta = full.rope_theta.unwrap_or(rope_theta);
            scaling = Some(full.clone());
        }
        if let Some(local) = p.get("sliding_attention") {
            local_theta = local.rope_theta.unwrap_or(local_theta);
        }
    }
    let rope_scaling_factor = match scaling {
        None => 1.0,
        Some(RopeParams { kind: None, .. }) => 1.0,
        Some(RopeParams { kind: Some(k), .. }) if k == "default" => 1.0,
        Some(RopeParams { kind: Some(k), factor, .. }) if k == "linear" => factor.unwrap_or(1.0),
        Some(RopeParams { kind: Some(k), .. }) => {
            return Err(hf_invalid(format!("config.json rope type `{k}` is not supported")))
        }
    };
    let layers = c.num_hidden_layers;
    let pattern = match (&c.layer_types, c.sliding_window_pattern) {
        (Some(types), _) => sliding_pattern(types, layers)?,
        (None, Some(p)) => p,
        (None, None) => SWA_PATTERN,
    };
    hf_checked(config(
        c.hidden_size,
        c.intermediate_size,
        layers,
        heads,
        c.num_key_value_heads.unwrap_or(heads),
        head_dim,
        c.rms_norm_eps.unwrap_or(1e-6),
        rope_theta,
        local_theta,
        rope_scaling_factor,
        Some(c.sliding_window.unwrap_or(512)),
        pattern,
        c.max_position_embeddings.unwrap_or(32_768),
        vocab,
        c.query_pre_attn_scalar.unwrap_or(head_dim as f32),
        c.final_logit_softcapping,
    ))
}

/// The global-layer period from `layer_types` (`sliding_attention` … `full_attention` repeating);
/// any other arrangement is rejected rather than run wrongly.
fn sliding_pattern(types: &[String], layers: usize) -> Result<usize> {
    if types.len() != layers {
        return Err(hf_invalid(format!("config.json layer_types has {} entries for {layers} layers", types.len())));
    }
    let pattern = types.iter().position(|t| t == "full_attention").map_or(layers + 1, |i| i + 1);
    for (i, t) in types.iter().enumerate() {
        let want = if i % pattern == pattern - 1 { "full_attention" } else { "sliding_attention" };
        if t != want {
            return Err(hf_invalid(format!(
                "config.json layer_types: layer {i} is `{t}`, not the repeating pattern of {pattern}"
            )));
        }
    }
    Ok(pattern)
}

/// HF tensor names: Llama's, but `post_attention_layernorm` is the sandwich's post-attention
/// norm and the pre-FFN norm is `pre_feedforward_layernorm`.
fn hf_tensor(id: WeightId) -> String {
    match id {
        WeightId::PostAttnNorm { layer } => format!("layers.{layer}.post_attention_layernorm.weight"),
        WeightId::FfnNorm { layer } => format!("layers.{layer}.pre_feedforward_layernorm.weight"),
        other => super::hf_llama_tensor(other),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::gguf::writer::GgufWriter;
    use crate::gguf::{GgufFile, MetaValue};
    use crate::model::decoder::Decoder;
    use crate::model::layers::WeightMode;
    use crate::model::CausalLm;
    use crate::quant::GgmlType;
    use crate::weights::GgufWeights;
    use crate::Error;

    #[test]
    fn config_from_both_transformers_spellings() {
        let mut types = vec!["sliding_attention"; 18];
        for i in [5, 11, 17] {
            types[i] = "full_attention";
        }
        let v4 = serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": null, "sliding_window": 512,
            "layer_types": types, "max_position_embeddings": 32768, "query_pre_attn_scalar": 256,
            "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": null, "attn_logit_softcapping": null
        });
        let c = from_hf(&v4, 262_144).unwrap();
        let w = c.sliding.unwrap();
        assert_eq!((w.pattern, c.rope_theta, w.rope_theta, &c.rope_scaling), (6, 1e6, 1e4, &RopeScaling::None));
        assert!(c.is_sliding(4) && !c.is_sliding(5));
        assert_eq!(
            (c.norm, c.activation, c.rope_layout, c.qk_norm, c.attn_scale),
            (NormPlacement::Sandwich, Activation::GeluTanh, RopeLayout::Neox, true, 0.0625)
        );
        // transformers 5: per-kind rope parameters.
        let mut v5 = v4.clone();
        let o = v5.as_object_mut().unwrap();
        o.remove("rope_theta");
        o.remove("rope_local_base_freq");
        o.insert(
            "rope_parameters".into(),
            serde_json::json!({
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 500000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0}
            }),
        );
        let c = from_hf(&v5, 262_144).unwrap();
        assert_eq!(
            (c.rope_theta, c.sliding.unwrap().rope_theta, &c.rope_scaling),
            (5e5, 2e4, &RopeScaling::Linear(8.0))
        );
        // Irregular layer kinds, an unknown activation, absurd sizes and softcapped attention are refused.
        let mut bad = v4.clone();
        bad["layer_types"][2] = "full_attention".into();
        assert!(matches!(from_hf(&bad, 8), Err(Error::InvalidModelFolder { .. })));
        let mut bad = v4.clone();
        bad["hidden_activation"] = "silu".into();
        assert!(matches!(from_hf(&bad, 8), Err(Error::InvalidModelFolder { .. })));
        let mut bad = v4.clone();
        bad["num_hidden_layers"] = 1_000_000.into();
        bad.as_object_mut().unwrap().remove("layer_types");
        assert!(matches!(from_hf(&bad, 8), Err(Error::InvalidModelFolder { .. })));
        let mut bad = v4.clone();
        bad["attn_logit_softcapping"] = 50.0.into();
        assert!(matches!(from_hf(&bad, 8), Err(Error::InvalidModelFolder { .. })));
    }

    /// A tiny seeded Gemma 3 (2 layers, hidden 32, 2 heads of 16 over 1 KV head, MLP 64,
    /// vocab 16) as f32 GGUF tensors; `edit` may change a tensor's shape (ne0 first) before its
    /// data is sized to it.
    fn tiny(edit: impl Fn(&str, &mut Vec<u64>)) -> GgufWeights {
        tiny_with(&[], edit)
    }

    /// [`tiny`] with more metadata keys.
    fn tiny_with(extra: &[(&str, MetaValue)], edit: impl Fn(&str, &mut Vec<u64>)) -> GgufWeights {
        let (d, hd, q, kv, ff, vocab) = (32u64, 16u64, 32u64, 16u64, 64u64, 16u64);
        let mut tensors: Vec<(String, Vec<u64>)> =
            vec![("token_embd.weight".into(), vec![d, vocab]), ("output_norm.weight".into(), vec![d])];
        for l in 0..2 {
            for (n, shape) in [
                ("attn_norm", vec![d]),
                ("attn_q", vec![d, q]),
                ("attn_k", vec![d, kv]),
                ("attn_v", vec![d, kv]),
                ("attn_output", vec![q, d]),
                ("attn_q_norm", vec![hd]),
                ("attn_k_norm", vec![hd]),
                ("post_attention_norm", vec![d]),
                ("ffn_norm", vec![d]),
                ("ffn_gate", vec![d, ff]),
                ("ffn_up", vec![d, ff]),
                ("ffn_down", vec![ff, d]),
                ("post_ffw_norm", vec![d]),
            ] {
                tensors.push((format!("blk.{l}.{n}.weight"), shape));
            }
        }
        let mut w = GgufWriter::new()
            .kv("general.architecture", MetaValue::String("gemma3".into()))
            .kv("gemma3.embedding_length", MetaValue::U32(d as u32))
            .kv("gemma3.block_count", MetaValue::U32(2))
            .kv("gemma3.feed_forward_length", MetaValue::U32(ff as u32))
            .kv("gemma3.attention.head_count", MetaValue::U32(2))
            .kv("gemma3.attention.head_count_kv", MetaValue::U32(1))
            .kv("gemma3.attention.key_length", MetaValue::U32(hd as u32))
            .kv("gemma3.context_length", MetaValue::U32(128));
        for (k, v) in extra {
            w = w.kv(k, v.clone());
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for (name, mut shape) in tensors {
            edit(&name, &mut shape);
            let n: u64 = shape.iter().product();
            let data: Vec<u8> = (0..n)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let v = if name.contains("norm") {
                        1.0
                    } else {
                        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                    };
                    v.to_le_bytes()
                })
                .collect();
            w = w.tensor(&name, &shape, GgmlType::F32, data);
        }
        let dir = std::env::temp_dir().join(format!("edgewise-gemma3-shapes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = dir.join(format!("{}.gguf", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::write(&p, w.to_bytes()).unwrap();
        let file = GgufFile::open(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        GgufWeights::new(Arc::new(file))
    }

    fn load(w: &GgufWeights) -> Result<Decoder> {
        let vocab = w.raw(WeightId::TokenEmbedding)?.rows;
        let cfg = from_gguf(w.file().metadata(), w, vocab)?;
        Decoder::load(cfg, w, WeightMode::QuantizedCpu, &crate::backend::cpu_device(), 1 << 30)
    }

    /// The sliding-window keys llama.cpp's gemma3 loader reads: no window key means every layer is
    /// global (its converter leaves the key out then), `rope.freq_base_swa` overrides the local
    /// base 10000, `attention.sliding_window_pattern` the period 6 (a number, 0 = all sliding, or
    /// one flag per layer; a flag array that does not repeat is refused by name).
    #[test]
    fn sliding_window_keys_as_llama_cpp_reads_them() {
        let cfg = |extra: &[(&str, MetaValue)]| {
            let w = tiny_with(extra, |_, _| {});
            let vocab = w.raw(WeightId::TokenEmbedding).unwrap().rows;
            from_gguf(w.file().metadata(), &w, vocab)
        };
        let c = cfg(&[]).unwrap();
        assert!(c.sliding.is_none() && !c.is_sliding(0), "no window key: every layer global");
        let c = cfg(&[("gemma3.attention.sliding_window", MetaValue::U32(512))]).unwrap();
        let w = c.sliding.unwrap();
        assert_eq!((w.size, w.pattern, w.rope_theta, c.rope_theta), (512, 6, 10_000.0, 1_000_000.0));
        assert!(c.is_sliding(0) && c.is_sliding(1));
        let c = cfg(&[
            ("gemma3.attention.sliding_window", MetaValue::U32(64)),
            ("gemma3.rope.freq_base_swa", MetaValue::F32(20_000.0)),
            ("gemma3.attention.sliding_window_pattern", MetaValue::U32(2)),
        ])
        .unwrap();
        assert_eq!((c.sliding.unwrap().size, c.sliding.unwrap().rope_theta), (64, 20_000.0));
        assert!(c.is_sliding(0) && !c.is_sliding(1));
        let c = cfg(&[
            ("gemma3.attention.sliding_window", MetaValue::U32(64)),
            ("gemma3.attention.sliding_window_pattern", MetaValue::U32(0)),
        ])
        .unwrap();
        assert!(c.is_sliding(0) && c.is_sliding(1), "period 0: every layer sliding");
        let flags = |f: Vec<bool>| MetaValue::Array(MetaArray::Bool(f));
        let c = cfg(&[
            ("gemma3.attention.sliding_window", MetaValue::U32(64)),
            ("gemma3.attention.sliding_window_pattern", flags(vec![true, false])),
        ])
        .unwrap();
        assert!(c.is_sliding(0) && !c.is_sliding(1));
        let bad = cfg(&[
            ("gemma3.attention.sliding_window", MetaValue::U32(64)),
            ("gemma3.attention.sliding_window_pattern", flags(vec![false, true])),
        ]);
        assert!(
            matches!(bad, Err(Error::InvalidKey { ref key, .. }) if key == "gemma3.attention.sliding_window_pattern"),
            "{bad:?}"
        );
    }

    #[test]
    fn tiny_model_loads_and_runs() {
        let m = load(&tiny(|_, _| {})).unwrap();
        let mut cache = m.new_cache(16, 16).unwrap();
        let logits = m.forward(&[1, 2, 3], &mut cache).unwrap();
        assert_eq!(logits.len(), 16);
        assert!(logits.iter().all(|v| v.is_finite()));
    }

    /// A norm of half its length (the 320 for 640) used to load and generate wrong
    /// text; now it is refused at load, by name.
    #[test]
    fn wrong_norm_length_is_refused_at_load() {
        let w = tiny(|name, shape| {
            if name == "blk.1.ffn_norm.weight" {
                shape[0] /= 2;
            }
        });
        match load(&w) {
            Err(Error::TensorShape { name, expected, found }) => {
                assert_eq!((name.as_str(), expected, found), ("blk.1.ffn_norm.weight", [1, 32], [1, 16]));
            }
            other => panic!("expected TensorShape, got {:?}", other.map(|_| ())),
        }
        let w = tiny(|name, shape| {
            if name == "blk.0.attn_k_norm.weight" {
                shape[0] = 32;
            }
        });
        assert!(matches!(load(&w), Err(Error::TensorShape { name, .. }) if name == "blk.0.attn_k_norm.weight"));
    }

    /// A projection of the wrong shape used to fail only at the first forward pass (or not at
    /// all, for a transposed square one); now at load, by name.
    #[test]
    fn wrong_projection_shape_is_refused_at_load() {
        let w = tiny(|name, shape| {
            if name == "blk.1.ffn_down.weight" {
                *shape = vec![48, 32];
            }
        });
        match load(&w) {
            Err(Error::TensorShape { name, expected, found }) => {
                assert_eq!((name.as_str(), expected, found), ("blk.1.ffn_down.weight", [32, 64], [32, 48]));
            }
            other => panic!("expected TensorShape, got {:?}", other.map(|_| ())),
        }
        let w = tiny(|name, shape| {
            if name == "token_embd.weight" {
                shape[0] = 24;
            }
        });
        assert!(matches!(load(&w), Err(Error::TensorShape { name, .. }) if name == "token_embd.weight"));
        let w = tiny(|name, shape| {
            if name == "blk.0.attn_v.weight" {
                shape.reverse();
            }
        });
        assert!(matches!(load(&w), Err(Error::TensorShape { name, .. }) if name == "blk.0.attn_v.weight"));
    }
}
