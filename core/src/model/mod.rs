//! Model architectures. Every supported model is the one [`decoder::Decoder`] over the shared
//! layers; an architecture is one file that reads its hyper-parameters and choices (from GGUF
//! metadata or a Hugging Face `config.json`) into a [`decoder::DecoderConfig`] and names its
//! Hugging Face tensors, plus one line in [`REGISTRY`].

pub mod decoder;
pub mod gemma3;
pub mod gpu_fused;
pub mod layers;
pub mod llama;
pub mod qwen2;
pub mod qwen3;
pub mod qwen35;

use crate::gguf::Metadata;
use crate::kv_cache::KvCache;
use crate::weights::{WeightId, WeightSource};
use crate::{Error, Result};
use decoder::DecoderConfig;

/// What an architecture file provides.
#[derive(Debug)]
pub struct ArchDef {
    /// GGUF `general.architecture`.
    pub name: &'static str,
    /// Hugging Face `config.json` `model_type` values.
    pub hf_model_types: &'static [&'static str],
    /// The config from GGUF metadata; `vocab` is the embedding's rows. The weights are there
    /// for tensors that carry hyper-parameters (Llama 3's `rope_freqs`).
    pub from_gguf: fn(md: &Metadata, weights: &dyn WeightSource, vocab: usize) -> Result<DecoderConfig>,
    /// The config from a Hugging Face `config.json` (its text model's object).
    pub from_hf: fn(config: &serde_json::Value, vocab: usize) -> Result<DecoderConfig>,
    /// The Hugging Face tensor name of a weight (after the `model.` prefix; `lm_head` outside it).
    pub hf_tensor: fn(WeightId) -> String,
    /// What HF's norm weights lack compared with GGUF's (Gemma stores `w` for `x·(1+w)`: 1).
    pub hf_norm_offset: f32,
}

/// The supported architectures: one line each.
pub const REGISTRY: &[&ArchDef] = &[&gemma3::ARCH, &llama::ARCH, &qwen2::ARCH, &qwen3::ARCH, &qwen35::ARCH];

/// Builds an architecture's own model from a GGUF file (one whose blocks are not the shared
/// decoder's: a hybrid layer family); `gpu` asks for the GPU backend.
pub type OwnModelFn =
    fn(md: &Metadata, weights: &dyn WeightSource, vocab: usize, gpu: bool) -> Result<Box<dyn CausalLm>>;

/// The architectures of [`REGISTRY`] that are their own model rather than a
/// [`decoder::Decoder`] config: one line each.
pub const OWN_MODELS: &[(&str, OwnModelFn)] = &[("qwen35", qwen35::build)];

/// A supported architecture (an entry of [`REGISTRY`]).
#[derive(Clone, Copy)]
pub struct Architecture(&'static ArchDef);

impl std::fmt::Debug for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl PartialEq for Architecture {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Architecture {}

impl Architecture {
    /// Maps a `general.architecture` string; `UnsupportedArchitecture` naming it otherwise.
    pub fn from_gguf_name(name: &str) -> Result<Self> {
        REGISTRY
            .iter()
            .copied()
            .find(|a| a.name == name)
            .map(Self)
            .ok_or_else(|| Error::UnsupportedArchitecture { name: name.to_string() })
    }

    /// Maps a Hugging Face `model_type`.
    pub fn from_hf_model_type(model_type: &str) -> Result<Self> {
        REGISTRY
            .iter()
            .copied()
            .find(|a| a.hf_model_types.contains(&model_type))
            .map(Self)
            .ok_or_else(|| Error::UnsupportedArchitecture { name: format!("{model_type} (config.json model_type)") })
    }

    /// The GGUF name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The architecture file's definitions.
    pub fn def(self) -> &'static ArchDef {
        self.0
    }

    /// The builder of its own model, for an architecture that is not a decoder config.
    pub fn own_model(self) -> Option<OwnModelFn> {
        OWN_MODELS.iter().find(|(n, _)| *n == self.0.name).map(|(_, f)| *f)
    }
}

/// Reads an architecture's `<arch>.*` GGUF keys.
pub(crate) struct GgufKeys<'a> {
    pub md: &'a Metadata,
    pub arch: &'static str,
}

impl GgufKeys<'_> {
    /// The full key.
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    /// A required integer.
    pub fn usize(&self, k: &str) -> Result<usize> {
        Ok(self.md.get_u32(&self.key(k))? as usize)
    }
    /// An optional integer.
    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        Ok(self.md.opt_u32(&self.key(k))?.map(|v| v as usize))
    }
    /// An optional float.
    pub fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        self.md.opt_f32(&self.key(k))
    }
    /// An optional string.
    pub fn opt_str(&self, k: &str) -> Result<Option<&str>> {
        self.md.opt_str(&self.key(k))
    }
    /// A typed error about key `k`.
    pub fn invalid(&self, k: &str, reason: impl Into<String>) -> Error {
        Error::InvalidKey { key: self.key(k), reason: reason.into() }
    }
    /// `DecoderConfig::check`'s verdict as an error naming the GGUF key.
    pub fn checked(&self, cfg: DecoderConfig) -> Result<DecoderConfig> {
        cfg.check().map_err(|(field, reason)| {
            let key = match field {
                "hidden_size" => "embedding_length",
                "num_hidden_layers" => "block_count",
                "head_dim" => "attention.key_length",
                "intermediate_size" => "feed_forward_length",
                "sliding_window" | "sliding_window_pattern" => "attention.sliding_window",
                "num_key_value_heads" => "attention.head_count_kv",
                "rope_scaling" => "rope.scaling.type",
                other => other,
            };
            self.invalid(key, reason)
        })?;
        Ok(cfg)
    }
}

/// The Llama-family GGUF hyper-parameters (llama.cpp's `llama_model::load_hparams` keys and
/// defaults), with Llama's choices: pre-norm, SwiGLU, llama.cpp's "norm" RoPE layout, no q/k
/// norm or biases, attention scale `1/sqrt(head_dim)`. Architecture files change what differs.
pub(crate) fn llama_like_from_gguf(k: &GgufKeys<'_>, vocab: usize) -> Result<DecoderConfig> {
    let hidden = k.usize("embedding_length")?;
    let heads = k.usize("attention.head_count")?;
    let kv_heads = k.opt_usize("attention.head_count_kv")?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(k.invalid(
            "attention.head_count_kv",
            format!("{heads} query heads cannot be grouped over {kv_heads} kv heads"),
        ));
    }
    let head_dim = match k.opt_usize("attention.key_length")? {
        Some(v) => v,
        None => hidden / heads,
    };
    if let Some(v) = k.opt_usize("attention.value_length")? {
        if v != head_dim {
            return Err(k.invalid("attention.value_length", format!("{v} differs from the key length {head_dim}")));
        }
    }
    if let Some(r) = k.opt_usize("rope.dimension_count")? {
        if r != head_dim {
            return Err(
                k.invalid("rope.dimension_count", format!("partial rotary ({r} of {head_dim}) is not supported"))
            );
        }
    }
    let rope_scaling = match k.opt_str("rope.scaling.type")? {
        Some("linear") => match k.opt_f32("rope.scaling.factor")? {
            Some(f) if f != 1.0 => decoder::RopeScaling::Linear(f),
            _ => decoder::RopeScaling::None,
        },
        Some("none") | None => decoder::RopeScaling::None,
        Some(other) => return Err(k.invalid("rope.scaling.type", format!("unsupported `{other}`"))),
    };
    Ok(DecoderConfig {
        arch: k.arch,
        hidden_size: hidden,
        intermediate_size: k.usize("feed_forward_length")?,
        num_hidden_layers: k.usize("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: k.opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        norm: decoder::NormPlacement::Pre,
        activation: decoder::Activation::Silu,
        qk_norm: false,
        qkv_bias: false,
        rope_layout: decoder::RopeLayout::Norm,
        rope_theta: k.opt_f32("rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling,
        sliding: None,
        embed_scale: 1.0,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        max_position_embeddings: k.opt_usize("context_length")?.unwrap_or(4096),
        vocab_size: vocab,
        final_logit_softcapping: None,
    })
}

/// `config.json` fields of the Llama family (transformers 4.x and 5.x spellings).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct HfLlamaLike {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f32>,
    pub rope_theta: Option<f32>,
    pub rope_scaling: Option<HfRope>,
    pub rope_parameters: Option<HfRope>,
    pub max_position_embeddings: Option<usize>,
    pub hidden_act: Option<String>,
    pub attention_bias: Option<bool>,
}

/// `rope_scaling` / `rope_parameters` of a `config.json`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct HfRope {
    #[serde(alias = "type", rename = "rope_type")]
    pub kind: Option<String>,
    pub factor: Option<f32>,
    pub rope_theta: Option<f32>,
    pub low_freq_factor: Option<f32>,
    pub high_freq_factor: Option<f32>,
    pub original_max_position_embeddings: Option<f32>,
}

/// The Llama-family config from `config.json`, with the same choices as
/// [`llama_like_from_gguf`] except the RoPE layout: HF keeps q/k unpermuted and rotates halves
/// (NEOX), where llama.cpp's converter permutes them for adjacent pairs.
pub(crate) fn llama_like_from_hf(
    v: &serde_json::Value,
    arch: &'static str,
    vocab: usize,
) -> Result<(DecoderConfig, HfLlamaLike)> {
    let c: HfLlamaLike = serde_json::from_value(v.clone()).map_err(|e| hf_invalid(format!("config.json: {e}")))?;
    if let Some(act) = c.hidden_act.as_deref() {
        if act != "silu" {
            return Err(hf_invalid(format!("config.json hidden_act `{act}` (this family uses silu)")));
        }
    }
    let heads = c.num_attention_heads;
    let head_dim = c.head_dim.unwrap_or(c.hidden_size / heads.max(1));
    let rope = c.rope_parameters.clone().or_else(|| c.rope_scaling.clone()).unwrap_or_default();
    let rope_theta = rope.rope_theta.or(c.rope_theta).unwrap_or(10_000.0);
    let cfg = DecoderConfig {
        arch,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: heads,
        num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
        head_dim,
        rms_norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
        norm: decoder::NormPlacement::Pre,
        activation: decoder::Activation::Silu,
        qk_norm: false,
        qkv_bias: false,
        rope_layout: decoder::RopeLayout::Neox,
        rope_theta,
        rope_scaling: match rope.kind.as_deref() {
            None | Some("default") => decoder::RopeScaling::None,
            Some("linear") => decoder::RopeScaling::Linear(rope.factor.unwrap_or(1.0)),
            Some("llama3") => decoder::RopeScaling::Factors(llama3_factors(&rope, rope_theta, head_dim)),
            Some(k) => return Err(hf_invalid(format!("config.json rope type `{k}` is not supported for {arch}"))),
        },
        sliding: None,
        embed_scale: 1.0,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        max_position_embeddings: c.max_position_embeddings.unwrap_or(4096),
        vocab_size: vocab,
        final_logit_softcapping: None,
    };
    Ok((cfg, c))
}

/// Llama 3's per-frequency RoPE divisors from its `rope_scaling` (what llama.cpp's converter
/// writes as `rope_freqs.weight`, `LlamaModel.generate_extra_tensors`).
pub(crate) fn llama3_factors(r: &HfRope, base: f32, head_dim: usize) -> Vec<f32> {
    let factor = r.factor.unwrap_or(8.0) as f64;
    let low = r.low_freq_factor.unwrap_or(1.0) as f64;
    let high = r.high_freq_factor.unwrap_or(4.0) as f64;
    let old = r.original_max_position_embeddings.unwrap_or(8192.0) as f64;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    (0..head_dim / 2)
        .map(|i| {
            // torch computes the frequencies in f32.
            let freq = 1.0 / base.powf((2 * i) as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// `DecoderConfig::check`'s verdict as a folder error.
pub(crate) fn hf_checked(cfg: DecoderConfig) -> Result<DecoderConfig> {
    cfg.check().map_err(|(field, why)| hf_invalid(format!("config.json {field}: {why}")))?;
    Ok(cfg)
}

/// A Hugging Face config error.
pub(crate) fn hf_invalid(reason: impl Into<String>) -> Error {
    Error::InvalidModelFolder { reason: reason.into() }
}

/// The Llama-family Hugging Face tensor names (Llama, Qwen 2/3, Gemma 3 but for its sandwich
/// norms): `post_attention_layernorm` is Llama's pre-FFN norm.
pub(crate) fn hf_llama_tensor(id: WeightId) -> String {
    use WeightId::*;
    match id {
        TokenEmbedding => "embed_tokens.weight".into(),
        OutputNorm => "norm.weight".into(),
        Output => "lm_head.weight".into(),
        RopeFreqs => "rope_freqs.weight".into(),
        AttnNorm { layer } => format!("layers.{layer}.input_layernorm.weight"),
        AttnQ { layer } => format!("layers.{layer}.self_attn.q_proj.weight"),
        AttnK { layer } => format!("layers.{layer}.self_attn.k_proj.weight"),
        AttnV { layer } => format!("layers.{layer}.self_attn.v_proj.weight"),
        AttnOutput { layer } => format!("layers.{layer}.self_attn.o_proj.weight"),
        AttnQNorm { layer } => format!("layers.{layer}.self_attn.q_norm.weight"),
        AttnKNorm { layer } => format!("layers.{layer}.self_attn.k_norm.weight"),
        AttnQBias { layer } => format!("layers.{layer}.self_attn.q_proj.bias"),
        AttnKBias { layer } => format!("layers.{layer}.self_attn.k_proj.bias"),
        AttnVBias { layer } => format!("layers.{layer}.self_attn.v_proj.bias"),
        FfnNorm { layer } => format!("layers.{layer}.post_attention_layernorm.weight"),
        PostAttnNorm { layer } => format!("layers.{layer}.post_attention_norm.weight"),
        FfnGate { layer } => format!("layers.{layer}.mlp.gate_proj.weight"),
        FfnUp { layer } => format!("layers.{layer}.mlp.up_proj.weight"),
        FfnDown { layer } => format!("layers.{layer}.mlp.down_proj.weight"),
        PostFfnNorm { layer } => format!("layers.{layer}.post_feedforward_layernorm.weight"),
        Block { layer, name } => format!("layers.{layer}.{name}"),
    }
}

/// A decoder-only language model on one device. The session owns the cache and drives the passes.
pub trait CausalLm: Send + Sync {
    /// Runs `tokens` (positions `cache.len()..`) through the model, appending them to `cache`, and
    /// returns the logits of tokens `first..` of this pass. On error the cache is left as it was.
    fn forward_from(&self, tokens: &[u32], cache: &mut KvCache, first: usize) -> Result<Vec<Vec<f32>>>;
    /// [`CausalLm::forward_from`] for the last token only.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let first = tokens.len().saturating_sub(1);
        self.forward_from(tokens, cache, first)?
            .pop()
            .ok_or_else(|| Error::InvalidParameter { name: "tokens", reason: "empty pass".into() })
    }
    /// [`CausalLm::forward`] reduced to the greedy pick: the first index of the largest logit and
    /// its log-probability (what [`crate::sampling::Sampler`] returns at temperature 0 without a
    /// penalty). A model on a GPU overrides it to pick on the device, so that two numbers instead
    /// of the vocabulary's logits cross back to the host each token.
    fn forward_greedy(&self, tokens: &[u32], cache: &mut KvCache) -> Result<(u32, f32)> {
        greedy_of(&self.forward(tokens, cache)?)
    }
    /// [`CausalLm::forward_greedy`] under a constraint's token mask: `words` is called once the
    /// pass is queued (the mask may still be being computed meanwhile) and gives the allowed
    /// tokens (bit `i % 32` of word `i / 32`, LSB first), or `None` when none is allowed. A model
    /// on a GPU overrides it to pick the first maximum among the allowed logits on the device
    /// (the mask goes up, two numbers come back); elsewhere, and when it cannot pick, all the
    /// logits come back for the host to mask ([`MaskedPick::All`], `words` maybe not called).
    fn forward_greedy_masked(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        words: &mut dyn FnMut() -> Result<Option<Vec<u32>>>,
    ) -> Result<MaskedPick> {
        let _ = words;
        Ok(MaskedPick::All(self.forward(tokens, cache)?))
    }
    /// [`CausalLm::forward`] with only the `k` largest logits of the last token brought back,
    /// where the model selects them on its device (a sampled step with top-k: `k` pairs cross
    /// back instead of the vocabulary); elsewhere all the logits, as `forward` returns them.
    fn forward_top_k(&self, tokens: &[u32], cache: &mut KvCache, k: usize) -> Result<StepLogits> {
        let _ = k;
        Ok(StepLogits::All(self.forward(tokens, cache)?))
    }
    /// A cache for `max_context` tokens, accepting passes of up to `max_chunk` tokens.
    fn new_cache(&self, max_context: usize, max_chunk: usize) -> Result<KvCache>;
    /// Vocabulary size (logits per token).
    fn vocab_size(&self) -> usize;
    /// The context the model was trained for.
    fn max_context(&self) -> usize;
    /// The decoder's configuration (what LoRA adapters are checked against).
    fn decoder_config(&self) -> Option<&DecoderConfig> {
        None
    }
    /// The weights an adapter may name, `[rows, row length]` each (what
    /// [`crate::lora::LoraAdapter::load_for`] checks against): the shared decoder's by default.
    fn adapter_shapes(&self) -> Option<Vec<(crate::weights::WeightId, [usize; 2])>> {
        self.decoder_config().map(|c| c.weight_shapes(true))
    }
}

/// The `k` largest logits of one step and the log-sum-exp of them all, for
/// [`crate::sampling::Sampler::sample_top`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogits {
    /// `(token, logit)`: the larger logit first, equal logits by token id (the sampler's order).
    pub entries: Vec<(u32, f32)>,
    /// `ln Σ exp(logit)` over the whole vocabulary.
    pub log_sum_exp: f64,
}

/// What [`CausalLm::forward_greedy_masked`] brings back.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskedPick {
    /// The first allowed token with the largest logit and its log-probability among the allowed
    /// tokens, picked on the device.
    Picked(u32, f32),
    /// All the logits of the last token (the host masks them).
    All(Vec<f32>),
}

/// What [`CausalLm::forward_top_k`] brings back.
#[derive(Debug, Clone, PartialEq)]
pub enum StepLogits {
    /// All the logits of the last token.
    All(Vec<f32>),
    /// Only the largest, selected on the device.
    Top(TopLogits),
}

/// The greedy pick of host logits: the first index of the maximum and its log-probability —
/// the sampler's own temperature-0 result (NaN or empty logits are its errors).
pub fn greedy_of(logits: &[f32]) -> Result<(u32, f32)> {
    crate::sampling::Sampler::new(crate::sampling::SamplingParams::greedy())?.sample(logits, &[])
}
