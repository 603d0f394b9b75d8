//! Model architectures. One [`Architecture`] arm per `general.architecture` value; each
//! architecture is one file over the shared layers.

pub mod gemma3;
pub mod gpu_fused;
pub mod layers;

use crate::kv_cache::KvCache;
use crate::{Error, Result};

/// Supported architectures, named after GGUF's `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Google Gemma 3 (`gemma3`).
    Gemma3,
}

impl Architecture {
    /// Maps a `general.architecture` string.
    pub fn from_gguf_name(name: &str) -> Result<Self> {
        match name {
            "gemma3" => Ok(Self::Gemma3),
            other => Err(Error::UnsupportedArchitecture { name: other.to_string() }),
        }
    }

    /// The GGUF name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gemma3 => "gemma3",
        }
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
