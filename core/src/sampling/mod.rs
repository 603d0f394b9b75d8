//! Sampling: parameters plus presets, and the sampler chain.
//!
//! Order, as in `llama.h`'s walkthrough: repetition penalty → top-k → top-p → min-p →
//! temperature → draw. Temperature 0 is greedy (argmax of the raw logits, after penalties).
//! The same seed gives the same output.
//!
//! Candidates are ordered by logit, larger first, and equal logits (±0 alike) by token id,
//! smaller first; this order is total, so the top-k set and the draw are fully determined.
//! A model that selects the largest logits on its device hands them to
//! [`Sampler::sample_top`], which returns exactly what [`Sampler::sample`] would on all the
//! logits whenever [`Sampler::candidates_needed`] allowed it (top-k on, any penalty ≥ 1).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::TopLogits;
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
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
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

/// Environment variable that keeps sampled steps on the host: every step reads all the logits
/// back, even where the device could select the candidates (for comparisons and benchmarks).
pub const HOST_SAMPLING_ENV: &str = "EDGEWISE_HOST_SAMPLING";

#[cfg(test)]
thread_local! {
    /// Tests: [`HOST_SAMPLING_ENV`] for samplers made on this thread only.
    pub(crate) static FORCE_HOST_SAMPLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn forced_host() -> bool {
    FORCE_HOST_SAMPLING.with(|f| f.get())
}

#[cfg(not(test))]
fn forced_host() -> bool {
    false
}

/// A stateful sampler (owns the RNG).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Never ask the model for device-selected candidates ([`HOST_SAMPLING_ENV`]).
    host_only: bool,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        let host_only = std::env::var_os(HOST_SAMPLING_ENV).is_some() || forced_host();
        Ok(Self { params, rng, host_only })
    }

    /// Whether picking needs nothing but the logits' maximum: temperature 0 and no penalty. Then
    /// a model may pick on its device ([`crate::model::CausalLm::forward_greedy`]) and return the
    /// same token as [`Sampler::sample`].
    pub fn is_plain_greedy(&self) -> bool {
        self.params.temperature == 0.0 && self.params.repetition_penalty == 1.0
    }

    /// Whether every step must bring all the logits back to the host ([`HOST_SAMPLING_ENV`]).
    pub fn host_only(&self) -> bool {
        self.host_only
    }

    /// How many of the largest logits (in the sampler's order) [`Sampler::sample_top`] needs to
    /// return exactly what [`Sampler::sample`] returns on all `vocab` logits after `history`, or
    /// `None` when the step needs them all.
    ///
    /// Exact cases: temperature 0 (1 candidate) or top-k on (k); top-p, min-p and the
    /// temperature then act on those k alone. A penalty above 1 only lowers the logits of the
    /// distinct tokens in the window, so k plus their count covers the penalized top k. Not
    /// exact: top-k off (top-p and min-p normalize over the whole vocabulary) and a penalty
    /// below 1 (it raises tokens from anywhere).
    pub fn candidates_needed(&self, history: &[u32], vocab: usize) -> Option<usize> {
        let p = &self.params;
        if self.host_only || p.repetition_penalty < 1.0 || vocab == 0 {
            return None;
        }
        let k = match (p.temperature == 0.0, p.top_k) {
            (true, _) => 1,
            (false, 0) => return None,
            (false, k) => k,
        };
        Some(k.saturating_add(self.penalized(history).len()).min(vocab))
    }

    /// Picks the next token from `logits`, given the tokens so far (for the penalty).
    /// Returns the token and its log-probability under the unmodified distribution.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<(u32, f32)> {
        if logits.is_empty() {
            return Err(Error::InvalidParameter { name: "logits", reason: "empty".into() });
        }
        let scanned = scan(logits);
        if scanned.nan {
            return Err(Error::Backend { reason: "model produced NaN logits".into() });
        }
        // A copy only when the penalty rewrites logits (262144 floats a token otherwise).
        let mut l = std::borrow::Cow::Borrowed(logits);
        let seen = self.penalized(history);
        if !seen.is_empty() {
            let l = l.to_mut();
            for &t in &seen {
                if let Some(x) = l.get_mut(t as usize) {
                    *x = self.penalize(*x);
                }
            }
        }
        let logprob = |tok: usize| log_softmax_with_max(logits, tok, scanned.max);
        if self.params.temperature == 0.0 {
            let tok = if seen.is_empty() { scanned.argmax } else { argmax(&l) };
            return Ok((tok as u32, logprob(tok)));
        }
        // The top k in the sampler's order (a total order: the set and its order are unique).
        let mut idx: Vec<usize> = (0..l.len()).collect();
        let k = if self.params.top_k == 0 { l.len() } else { self.params.top_k.min(l.len()) };
        let by_rank = |&a: &usize, &b: &usize| rank((a, l[a]), (b, l[b]));
        if k < l.len() {
            idx.select_nth_unstable_by(k - 1, by_rank);
            idx.truncate(k);
        }
        idx.sort_unstable_by(by_rank);
        let cands: Vec<(usize, f32)> = idx.iter().map(|&i| (i, l[i])).collect();
        let pick = self.draw(&cands);
        Ok((pick as u32, logprob(pick)))
    }

    /// [`Sampler::sample`] from the largest logits of a step, selected by the model (on its
    /// device): `top` holds at least [`Sampler::candidates_needed`] of them, unpenalized, in
    /// the sampler's order, with the log-sum-exp of all the logits. Returns the same token as
    /// `sample` on all the logits and the same log-probability up to the rounding of the
    /// log-sum-exp.
    pub fn sample_top(&mut self, top: &TopLogits, history: &[u32]) -> Result<(u32, f32)> {
        if top.entries.is_empty() {
            return Err(Error::InvalidParameter { name: "logits", reason: "no candidates".into() });
        }
        if top.entries.iter().any(|(_, l)| !l.is_finite()) || !top.log_sum_exp.is_finite() {
            return Err(Error::Backend { reason: "model produced non-finite logits".into() });
        }
        let seen = self.penalized(history);
        let mut cands: Vec<(usize, f32)> = top
            .entries
            .iter()
            .map(|&(t, l)| (t as usize, if seen.contains(&t) { self.penalize(l) } else { l }))
            .collect();
        cands.sort_unstable_by(|&a, &b| rank(a, b));
        let raw = |tok: usize| top.entries.iter().find(|e| e.0 as usize == tok).map_or(f32::NEG_INFINITY, |e| e.1);
        let logprob = |tok: usize| (raw(tok) as f64 - top.log_sum_exp) as f32;
        if self.params.temperature == 0.0 {
            let tok = cands[0].0;
            return Ok((tok as u32, logprob(tok)));
        }
        if self.params.top_k > 0 {
            cands.truncate(self.params.top_k);
        }
        let pick = self.draw(&cands);
        Ok((pick as u32, logprob(pick)))
    }

    /// The distinct tokens of the penalty window (empty without a penalty).
    fn penalized(&self, history: &[u32]) -> std::collections::HashSet<u32> {
        let p = &self.params;
        if p.repetition_penalty == 1.0 {
            return std::collections::HashSet::new();
        }
        history[history.len().saturating_sub(p.repeat_last_n)..].iter().copied().collect()
    }

    /// llama.cpp's penalty: divide positive logits, multiply negative ones.
    fn penalize(&self, x: f32) -> f32 {
        let r = self.params.repetition_penalty;
        if x > 0.0 {
            x / r
        } else {
            x * r
        }
    }

    /// top-p → min-p → temperature → draw over `cands`: the top-k candidates `(token,
    /// penalized logit)`, in the sampler's order (at least one).
    fn draw(&mut self, cands: &[(usize, f32)]) -> usize {
        let p = &self.params;
        let probs = softmax(&cands.iter().map(|c| c.1).collect::<Vec<_>>());
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
        let kept = &cands[..keep];
        let scaled: Vec<f32> = kept.iter().map(|c| c.1 / p.temperature).collect();
        let probs = softmax(&scaled);
        let r: f32 = self.rng.random::<f32>();
        let mut acc = 0.0;
        let mut pick = kept[kept.len() - 1].0;
        for (j, pr) in probs.iter().enumerate() {
            acc += pr;
            if r < acc {
                pick = kept[j].0;
                break;
            }
        }
        pick
    }
}

/// The sampler's candidate order over `(token, logit)`: the larger logit first, equal logits
/// (+0 and −0 included, as `>` sees them) by token id, smaller first. Callers reject NaN.
pub fn rank(a: (usize, f32), b: (usize, f32)) -> std::cmp::Ordering {
    b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0))
}

/// Index of the largest value (first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(v: &[f32]) -> usize {
    scan(v).argmax
}

/// What one pass over a step's logits finds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scan {
    /// The largest value (`-∞` for no values or only `-∞`; NaNs are skipped).
    pub max: f32,
    /// The first index holding it (0 when none is larger than the first value).
    pub argmax: usize,
    /// Whether any value is NaN.
    pub nan: bool,
}

/// Logits per task of [`scan`] and [`log_softmax_with_max`].
const CHUNK: usize = 16_384;

/// The maximum, its first index and whether a NaN is present, in one pass over `v` on the CPU
/// pool (fixed chunks, each reduced in 8 lanes so the compiler vectorizes it; 262144 logits a
/// token took ~0.3 ms as a scalar loop).
pub(crate) fn scan(v: &[f32]) -> Scan {
    let chunks: Vec<&[f32]> = v.chunks(CHUNK).collect();
    let parts: Vec<std::sync::Mutex<Scan>> =
        chunks.iter().map(|_| std::sync::Mutex::new(Scan { max: f32::NEG_INFINITY, argmax: 0, nan: false })).collect();
    crate::quant::cpu::pool::for_each(chunks.len(), &|c| {
        let part = scan_chunk(chunks[c]);
        if let Ok(mut p) = parts[c].lock() {
            *p = Scan { argmax: part.argmax + c * CHUNK, ..part };
        }
    });
    let parts: Vec<Scan> = parts.into_iter().filter_map(|p| p.into_inner().ok()).collect();
    let nan = parts.iter().any(|p| p.nan);
    // The earliest chunk holding the largest value (strictly larger wins, as one scan would).
    let mut best =
        Scan { max: v.first().copied().filter(|x| !x.is_nan()).unwrap_or(f32::NEG_INFINITY), argmax: 0, nan };
    for p in &parts {
        if p.max > best.max {
            best = Scan { max: p.max, argmax: p.argmax, nan };
        }
    }
    best
}

/// Logits per word of a token mask (bit `i` of word `w`, LSB first, is token `32·w + i`).
const CHUNK_WORDS: usize = CHUNK / 32;

/// `logits[i] = -∞` wherever bit `i` of `words` (LSB first) is clear, and past its end.
pub(crate) fn apply_mask(words: &[u32], logits: &mut [f32]) {
    for (&w, chunk) in words.iter().zip(logits.chunks_mut(32)) {
        match w {
            u32::MAX => {}
            0 => chunk.fill(f32::NEG_INFINITY),
            w => {
                for (b, x) in chunk.iter_mut().enumerate() {
                    if (w >> b) & 1 == 0 {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
    let covered = words.len() * 32;
    if logits.len() > covered {
        logits[covered..].fill(f32::NEG_INFINITY);
    }
}

/// [`Sampler::sample`] at temperature 0 without a penalty under a token mask (`words`, as in
/// [`apply_mask`]): bit for bit the token and log-probability that masking every forbidden
/// logit to `-∞` and sampling gives, without reading the chunks of [`CHUNK`] logits that hold
/// no allowed token (a JSON step allows a few hundred of 262144 tokens). Only the chunks read
/// are masked in `logits`. `None` when no allowed token has a finite logit (the caller masks
/// everything and takes the general path).
///
/// Why it is exact: a skipped chunk's scan finds `-∞`, which never wins; its `sum_exp` is at
/// most 16384 · e^-87 ≈ 3e-34 (`exp_approx` clamps at -87 instead of reaching 0), and the sum
/// it joins ends ≥ 1 (the maximum's own term), so in f64 it vanishes from that sum exactly
/// (below half an ulp of 1), whatever order the partial sums are added in.
pub(crate) fn greedy_masked(logits: &mut [f32], words: &[u32]) -> Result<Option<(u32, f32)>> {
    if logits.is_empty() {
        return Err(Error::InvalidParameter { name: "logits", reason: "empty".into() });
    }
    let mut live: Vec<(usize, &mut [f32])> = Vec::new();
    for (c, chunk) in logits.chunks_mut(CHUNK).enumerate() {
        let w = words.get(c * CHUNK_WORDS..).map_or(&[][..], |w| &w[..w.len().min(CHUNK_WORDS)]);
        if w.iter().any(|&x| x != 0) {
            apply_mask(w, chunk);
            live.push((c, chunk));
        }
    }
    let live: Vec<(usize, &[f32])> = live.into_iter().map(|(c, v)| (c, &*v)).collect();
    let Some(&(first_chunk, first)) = live.first() else { return Ok(None) };
    let parts: Vec<std::sync::Mutex<Scan>> =
        live.iter().map(|_| std::sync::Mutex::new(Scan { max: f32::NEG_INFINITY, argmax: 0, nan: false })).collect();
    crate::quant::cpu::pool::for_each(live.len(), &|i| {
        let (c, v) = live[i];
        let part = scan_chunk(v);
        if let Ok(mut p) = parts[i].lock() {
            *p = Scan { argmax: part.argmax + c * CHUNK, ..part };
        }
    });
    let parts: Vec<Scan> = parts.into_iter().filter_map(|p| p.into_inner().ok()).collect();
    if parts.iter().any(|p| p.nan) {
        return Err(Error::Backend { reason: "model produced NaN logits".into() });
    }
    // As `scan`: the first logit (masked), then the earliest chunk with a strictly larger one.
    let v0 = if first_chunk == 0 { first[0] } else { f32::NEG_INFINITY };
    let mut best = Scan { max: if v0.is_nan() { f32::NEG_INFINITY } else { v0 }, argmax: 0, nan: false };
    for p in &parts {
        if p.max > best.max {
            best = *p;
        }
    }
    if best.max == f32::NEG_INFINITY {
        return Ok(None);
    }
    let m = best.max;
    let sums: Vec<std::sync::atomic::AtomicU64> = live.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
    crate::quant::cpu::pool::for_each(live.len(), &|i| {
        let s = crate::quant::cpu::sum_exp(live[i].1, m);
        sums[i].store(s.to_bits(), std::sync::atomic::Ordering::Relaxed);
    });
    let s: f64 = sums.iter().map(|a| f64::from_bits(a.load(std::sync::atomic::Ordering::Relaxed))).sum();
    let tok = best.argmax;
    let l = live.iter().find(|(c, _)| *c == tok / CHUNK).map_or(f32::NEG_INFINITY, |(_, v)| v[tok % CHUNK]);
    Ok(Some((tok as u32, (l as f64 - m as f64 - s.ln()) as f32)))
}

fn scan_chunk(v: &[f32]) -> Scan {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut nans = [false; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            nans[k] |= c[k].is_nan();
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    let mut nan = nans.iter().any(|&n| n);
    for &x in it.remainder() {
        nan |= x.is_nan();
        if x > max {
            max = x;
        }
    }
    let argmax = v.iter().position(|&x| x == max).unwrap_or(0);
    Scan { max, argmax, nan }
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// `log_softmax(v)[i]`, computed stably (max subtracted; the normalizer summed in f64). The
/// exponentials (one per vocabulary entry, every token) are the vectorized `exp_approx` (~1 ulp
/// of f32), in fixed chunks on the CPU pool summed in chunk order, so the result does not depend
/// on the thread count.
pub fn log_softmax_at(v: &[f32], i: usize) -> f32 {
    log_softmax_with_max(v, i, scan(v).max)
}

/// [`log_softmax_at`] with the maximum `m` of `v` already known.
pub(crate) fn log_softmax_with_max(v: &[f32], i: usize, m: f32) -> f32 {
    let chunks: Vec<&[f32]> = v.chunks(CHUNK).collect();
    let sums: Vec<std::sync::atomic::AtomicU64> = chunks.iter().map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
    crate::quant::cpu::pool::for_each(chunks.len(), &|c| {
        let s = crate::quant::cpu::sum_exp(chunks[c], m);
        sums[c].store(s.to_bits(), std::sync::atomic::Ordering::Relaxed);
    });
    let s: f64 = sums.iter().map(|a| f64::from_bits(a.load(std::sync::atomic::Ordering::Relaxed))).sum();
    (v.get(i).copied().unwrap_or(f32::NEG_INFINITY) as f64 - m as f64 - s.ln()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: [f32; 4] = [1.0, 3.0, 2.0, 0.5];

    /// The pooled, lane-wise scan against the plain definition (first index of the largest
    /// value, NaN anywhere), across chunk boundaries, ties inside and across chunks, `-∞`.
    #[test]
    fn scan_matches_the_scalar_definition() {
        let plain = |v: &[f32]| {
            let mut best = 0;
            for (i, &x) in v.iter().enumerate() {
                if x > v[best] {
                    best = i;
                }
            }
            best
        };
        let n = 3 * CHUNK + 123;
        let base: Vec<f32> = (0..n).map(|i| ((i * 7919) % 10007) as f32 * 1e-3 - 5.0).collect();
        for (at, tie) in [
            (0, None),
            (5, None),
            (CHUNK - 1, None),
            (CHUNK, Some(2 * CHUNK + 7)),
            (n - 1, None),
            (2 * CHUNK + 3, Some(2 * CHUNK + 4)),
            (40, Some(CHUNK + 40)),
        ] {
            let mut v = base.clone();
            v[at] = 100.0;
            if let Some(t) = tie {
                v[t] = 100.0;
            }
            let s = scan(&v);
            assert_eq!((s.argmax, s.max, s.nan), (plain(&v), 100.0, false), "max at {at}, tie {tie:?}");
            assert_eq!(argmax(&v), plain(&v));
            v[n / 2] = f32::NAN;
            assert!(scan(&v).nan);
        }
        let s = scan(&[f32::NEG_INFINITY; 40]);
        assert_eq!((s.argmax, s.max), (0, f32::NEG_INFINITY));
        assert_eq!(scan(&[]).argmax, 0);
        // The log-probability with the scanned maximum is the plain one.
        let want = {
            let m = base.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            base[77] as f64 - m - base.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
        };
        assert!((log_softmax_at(&base, 77) as f64 - want).abs() < 1e-5, "{} vs {want}", log_softmax_at(&base, 77));
    }

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

    /// The first `k` logits in the sampler's order, by a stable sort (ties keep ascending ids),
    /// with the log-sum-exp: what a device selection hands [`Sampler::sample_top`].
    fn top_of(l: &[f32], k: usize) -> TopLogits {
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap());
        let m = l[order[0]] as f64;
        let lse = m + l.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        TopLogits { entries: order.iter().take(k).map(|&i| (i as u32, l[i])).collect(), log_sum_exp: lse }
    }

    #[test]
    fn sampling_from_the_top_candidates_matches_all_logits() {
        // 500 logits on a coarse grid: many ties, across the top-k boundary too, and ±0.
        let mut l: Vec<f32> =
            (0..500u32).map(|i| ((i.wrapping_mul(2_654_435_761) >> 20) % 40) as f32 * 0.25 - 5.0).collect();
        (l[3], l[400]) = (-0.0, 0.0);
        for p in [
            SamplingParams { temperature: 0.9, top_k: 40, seed: 5, ..Default::default() },
            SamplingParams { temperature: 2.0, top_k: 7, top_p: 1.0, min_p: 0.0, seed: 6, ..Default::default() },
            SamplingParams {
                temperature: 1.2,
                top_k: 30,
                top_p: 0.8,
                min_p: 0.1,
                repetition_penalty: 1.4,
                repeat_last_n: 8,
                seed: 7,
            },
            SamplingParams { repetition_penalty: 3.0, ..SamplingParams::greedy() },
            SamplingParams { temperature: 1.0, top_k: 600, top_p: 1.0, min_p: 0.0, seed: 8, ..Default::default() },
        ] {
            let (mut all, mut top) = (Sampler::new(p.clone()).unwrap(), Sampler::new(p).unwrap());
            let mut history: Vec<u32> = vec![0, 3, 400, 17];
            for _ in 0..60 {
                let k = top.candidates_needed(&history, l.len()).expect("an exact case");
                let want = all.sample(&l, &history).unwrap();
                let got = top.sample_top(&top_of(&l, k), &history).unwrap();
                assert_eq!(got.0, want.0);
                assert!((got.1 - want.1).abs() < 1e-5, "{} vs {}", got.1, want.1);
                history.push(got.0);
            }
        }
    }

    #[test]
    fn settings_that_need_every_logit_ask_for_them() {
        let need = |p: SamplingParams| Sampler::new(p).unwrap().candidates_needed(&[1, 2, 2, 3], 1000);
        let base = SamplingParams { temperature: 0.8, top_k: 40, ..Default::default() };
        assert_eq!(need(base.clone()), Some(40));
        assert_eq!(need(SamplingParams { repetition_penalty: 1.1, ..base.clone() }), Some(43));
        assert_eq!(need(SamplingParams { repetition_penalty: 1.1, repeat_last_n: 1, ..base.clone() }), Some(41));
        assert_eq!(need(SamplingParams { repetition_penalty: 1.1, ..SamplingParams::greedy() }), Some(4));
        assert_eq!(need(SamplingParams { top_k: 5000, ..base.clone() }), Some(1000));
        // top-k off: top-p / min-p normalize over the whole vocabulary.
        assert_eq!(need(SamplingParams { top_k: 0, ..base.clone() }), None);
        // A penalty below 1 raises tokens from anywhere.
        assert_eq!(need(SamplingParams { repetition_penalty: 0.9, ..base.clone() }), None);
        FORCE_HOST_SAMPLING.with(|f| f.set(true));
        assert_eq!(need(base), None);
        FORCE_HOST_SAMPLING.with(|f| f.set(false));
        let mut s = Sampler::new(SamplingParams::default()).unwrap();
        assert!(s.sample_top(&TopLogits { entries: vec![], log_sum_exp: 0.0 }, &[]).is_err());
        assert!(s.sample_top(&TopLogits { entries: vec![(0, f32::NAN)], log_sum_exp: 0.0 }, &[]).is_err());
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

    /// The masked greedy pick reads only chunks with an allowed token, yet gives bit for bit the
    /// token and log-probability of masking everything and sampling: sparse and dense masks,
    /// the maximum in a later chunk, ties across chunks (the first wins), token 0 allowed or
    /// not, a mask shorter than the vocabulary, a NaN in a skipped chunk (masked away, as
    /// before) and in a read one (an error, as before).
    #[test]
    fn masked_greedy_is_masking_then_sampling() {
        let n = 4 * CHUNK + 1000;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let logits: Vec<f32> = (0..n).map(|_| rng.random_range(-20.0f32..20.0)).collect();
        let words_of = |ids: &[usize], len: usize| {
            let mut w = vec![0u32; len];
            for &i in ids {
                w[i / 32] |= 1 << (i % 32);
            }
            w
        };
        let full = n.div_ceil(32);
        let mut cases: Vec<(Vec<f32>, Vec<u32>)> = vec![
            (logits.clone(), words_of(&[3 * CHUNK + 17, 3 * CHUNK + 900, 5], full)),
            (logits.clone(), words_of(&[0, 1, 2 * CHUNK + 3], full)),
            (logits.clone(), words_of(&(0..n).step_by(3).collect::<Vec<_>>(), full)),
            (logits.clone(), words_of(&[CHUNK + 1, CHUNK + 2], CHUNK / 32 + 1)),
        ];
        let mut ties = logits.clone();
        ties[CHUNK + 7] = 50.0;
        ties[3 * CHUNK + 9] = 50.0;
        cases.push((ties.clone(), words_of(&[CHUNK + 7, 3 * CHUNK + 9, 2], full)));
        cases.push((ties, words_of(&[3 * CHUNK + 9, 2], full)));
        let mut nan_skipped = logits.clone();
        nan_skipped[2 * CHUNK + 5] = f32::NAN;
        cases.push((nan_skipped, words_of(&[7, 3 * CHUNK], full)));
        for (i, (l, w)) in cases.into_iter().enumerate() {
            let mut masked = l.clone();
            apply_mask(&w, &mut masked);
            let want = Sampler::new(SamplingParams::greedy()).unwrap().sample(&masked, &[]).unwrap();
            let mut got_logits = l.clone();
            let got = greedy_masked(&mut got_logits, &w).unwrap().unwrap();
            assert_eq!((got.0, got.1.to_bits()), (want.0, want.1.to_bits()), "case {i}: {got:?} vs {want:?}");
        }
        let mut nan_read = logits.clone();
        nan_read[CHUNK + 4] = f32::NAN;
        assert!(greedy_masked(&mut nan_read, &words_of(&[CHUNK + 4, CHUNK + 5], full)).is_err());
        assert_eq!(greedy_masked(&mut logits.clone(), &vec![0; full]).unwrap(), None, "nothing allowed");
    }
}
