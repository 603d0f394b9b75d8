//! Sampling: parameters plus presets, and the sampler chain.
//!
//! Order, as in `llama.h`'s walkthrough: repetition penalty → top-k → top-p → min-p →
//! temperature → draw. Temperature 0 is greedy (argmax of the raw logits, after penalties).
//! The same seed gives the same output.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sampling parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens below `min_p ×` the top probability (0 = off).
    pub min_p: f32,
    /// Penalty for tokens seen in the last `repeat_last_n` tokens (1.0 = off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repetition_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplingParams {
    /// Argmax decoding, no penalties: reproduces a reference engine's greedy tokens.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, ..Self::default() }
    }

    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| Err(Error::InvalidParameter { name, reason: reason.into() });
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 100.0 {
            return bad("temperature", "must be in 0..=100");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 || self.repetition_penalty > 10.0 {
            return bad("repetition_penalty", "must be in (0, 10]");
        }
        Ok(())
    }
}

/// A stateful sampler (owns the RNG).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    /// Whether picking needs nothing but the logits' maximum: temperature 0 and no penalty. Then
    /// a model may pick on its device ([`crate::model::CausalLm::forward_greedy`]) and return the
    /// same token as [`Sampler::sample`].
    pub fn is_plain_greedy(&self) -> bool {
        self.params.temperature == 0.0 && self.params.repetition_penalty == 1.0
    }

    /// Picks the next token from `logits`, given the tokens so far (for the penalty).
    /// Returns the token and its log-probability under the unmodified distribution.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<(u32, f32)> {
        if logits.is_empty() {
            return Err(Error::InvalidParameter { name: "logits", reason: "empty".into() });
        }
        if logits.iter().any(|l| l.is_nan()) {
            return Err(Error::Backend { reason: "model produced NaN logits".into() });
        }
        let p = &self.params;
        // A copy only when the penalty rewrites logits (262144 floats a token otherwise).
        let mut l = std::borrow::Cow::Borrowed(logits);
        if p.repetition_penalty != 1.0 {
            let l = l.to_mut();
            let from = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[from..] {
                if seen.insert(t) {
                    if let Some(x) = l.get_mut(t as usize) {
                        // llama.cpp: divide positive logits, multiply negative ones.
                        *x = if *x > 0.0 { *x / p.repetition_penalty } else { *x * p.repetition_penalty };
                    }
                }
            }
        }
        let logprob = |tok: usize| log_softmax_at(logits, tok);
        if p.temperature == 0.0 {
            let tok = argmax(&l);
            return Ok((tok as u32, logprob(tok)));
        }
        // Candidates sorted by logit, descending.
        let mut idx: Vec<usize> = (0..l.len()).collect();
        let k = if p.top_k == 0 { l.len() } else { p.top_k.min(l.len()) };
        if k < l.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| l[b].total_cmp(&l[a]));
            idx.truncate(k);
        }
        idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        let probs = softmax(&idx.iter().map(|&i| l[i]).collect::<Vec<_>>());
        // top-p: smallest prefix reaching p (at least one).
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (j, pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= p.top_p {
                    keep = j + 1;
                    break;
                }
            }
        }
        // min-p relative to the best.
        if p.min_p > 0.0 {
            let thr = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&x| x >= thr).count().max(1));
        }
        idx.truncate(keep);
        let scaled: Vec<f32> = idx.iter().map(|&i| l[i] / p.temperature).collect();
        let probs = softmax(&scaled);
        let r: f32 = self.rng.random::<f32>();
        let mut acc = 0.0;
        let mut pick = idx[idx.len() - 1];
        for (j, pr) in probs.iter().enumerate() {
            acc += pr;
            if r < acc {
                pick = idx[j];
                break;
            }
        }
        Ok((pick as u32, logprob(pick)))
    }
}

/// Index of the largest value (first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// `log_softmax(v)[i]`, computed stably in f64. The exponentials (one per vocabulary entry, every
/// token) run in fixed chunks on the CPU pool and are summed in chunk order, so the result does
/// not depend on the thread count.
pub fn log_softmax_at(v: &[f32], i: usize) -> f32 {
    const CHUNK: usize = 16_384;
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let chunks: Vec<&[f32]> = v.chunks(CHUNK).collect();
    let sums: Vec<std::sync::atomic::AtomicU64> = chunks.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
    crate::quant::cpu::pool::for_each(chunks.len(), &|c| {
        let s: f64 = chunks[c].iter().map(|&x| (x as f64 - m).exp()).sum();
        sums[c].store(s.to_bits(), std::sync::atomic::Ordering::Relaxed);
    });
    let s: f64 = sums.iter().map(|a| f64::from_bits(a.load(std::sync::atomic::Ordering::Relaxed))).sum();
    (v.get(i).copied().unwrap_or(f32::NEG_INFINITY) as f64 - m - s.ln()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: [f32; 4] = [1.0, 3.0, 2.0, 0.5];

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&L, &[]).unwrap().0, 1);
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let p = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        let mut s = Sampler::new(p).unwrap();
        // 3.0/2 = 1.5 < 2.0: token 2 wins once token 1 was seen.
        assert_eq!(s.sample(&L, &[1]).unwrap().0, 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_restricts() {
        let p = SamplingParams { temperature: 1.0, top_k: 1, top_p: 1.0, min_p: 0.0, ..Default::default() };
        let mut s = Sampler::new(p).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&L, &[]).unwrap().0, 1);
        }
        // softmax(L) ≈ [0.086, 0.636, 0.234, 0.043]: top_p 0.6 keeps only token 1.
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.6, min_p: 0.0, ..Default::default() };
        let mut s = Sampler::new(p).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&L, &[]).unwrap().0, 1);
        }
        // min_p 0.3: keeps tokens with p >= 0.19: 1 and 2.
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.3, seed: 3, ..Default::default() };
        let mut s = Sampler::new(p).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(s.sample(&L, &[]).unwrap().0);
        }
        assert_eq!(seen, [1u32, 2].into_iter().collect());
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 42, ..Default::default() };
        let draw = || {
            let mut s = Sampler::new(p.clone()).unwrap();
            (0..50).map(|_| s.sample(&L, &[]).unwrap().0).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
        let mut other = Sampler::new(SamplingParams { seed: 43, ..p.clone() }).unwrap();
        let o: Vec<u32> = (0..50).map(|_| other.sample(&L, &[]).unwrap().0).collect();
        assert_ne!(draw(), o);
    }

    #[test]
    fn absurd_parameters_are_rejected() {
        for p in [
            SamplingParams { temperature: -1.0, ..Default::default() },
            SamplingParams { temperature: f32::NAN, ..Default::default() },
            SamplingParams { top_p: 0.0, ..Default::default() },
            SamplingParams { min_p: 2.0, ..Default::default() },
            SamplingParams { repetition_penalty: 0.0, ..Default::default() },
        ] {
            assert!(Sampler::new(p).is_err());
        }
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert!(s.sample(&[], &[]).is_err());
        assert!(s.sample(&[f32::NAN, 1.0], &[]).is_err());
    }
}
