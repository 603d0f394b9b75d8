//! The second stage of the privacy gate: a small learned classifier over hashed character and word
//! n-grams, for the requests the rules would let leave the device.
//!
//! The model is a logistic regression trained by `tests/privacy/train_classifier.py` on synthetic
//! data (Faker values in hand-written templates, `tests/privacy/make_clf_data.py`) and the tuning
//! corpora; that script's `normalize` and `features` are the specification this file implements,
//! and `pii/tests/data/clf_golden.json` (written by the script) pins the two together.
//!
//! # Model file (`models/pii-clf-v1.bin`, little endian)
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | magic `EWPC` |
//! | 4 | `u16` | format version (1) |
//! | 6 | `u16` | header length (40) |
//! | 8 | `u32` | buckets (a power of two) |
//! | 12 | `u32` | hash seed |
//! | 16 | `u8` ×4 | shortest and longest character n-gram, longest word n-gram, weight format (1 = f16) |
//! | 20 | `u32` | window, in characters |
//! | 24 | `u32` | window stride, in characters |
//! | 28 | `f32` | bias |
//! | 32 | `f32` | decision threshold (probability) |
//! | 36 | `u32` | reserved (0) |
//! | 40 | `f16` × buckets | weights |
//!
//! Privacy: nothing here logs or stores the scored text.

use std::time::Instant;

use sha2::{Digest, Sha256};

/// File name of the shipped model (also its catalog `file`).
pub const MODEL_FILE: &str = "pii-clf-v1.bin";
/// Size in bytes of the shipped model; equals its entry in `models/catalog.toml`.
pub const MODEL_SIZE: u64 = 1_048_616;
/// Lower-case hex sha256 of the shipped model; equals its entry in `models/catalog.toml`.
pub const MODEL_SHA256: &str = "863ff6f51fcb0b45620dac1770289ba1cc556baf3703cd3c0069f5d09f5ebcb3";

/// The shipped model, embedded (cargo feature `embedded-model`, on by default).
#[cfg(feature = "embedded-model")]
pub(crate) const EMBEDDED: Option<&[u8]> = Some(include_bytes!("../../models/pii-clf-v1.bin"));
#[cfg(not(feature = "embedded-model"))]
pub(crate) const EMBEDDED: Option<&[u8]> = None;

const MAGIC: &[u8; 4] = b"EWPC";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 40;
const KIND_CHAR: u32 = 1;
const KIND_WORD: u32 = 2;
const KIND_BIGRAM: u32 = 3;
const FNV_OFFSET: u32 = 0x811C_9DC5;
const FNV_PRIME: u32 = 0x0100_0193;
/// How often (in characters) a long scoring pass checks its deadline.
const DEADLINE_EVERY: usize = 256;

/// Why a model could not be used. Carries no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The bytes do not hash to the expected sha256.
    Sha256Mismatch,
    /// The file is not a version-1 classifier model (the reason is a fixed description).
    Format(&'static str),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Sha256Mismatch => f.write_str("classifier model failed sha256 verification"),
            ModelError::Format(why) => write!(f, "classifier model is malformed: {why}"),
        }
    }
}

impl std::error::Error for ModelError {}

/// Why a text could not be scored. Carries no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreError {
    /// Scoring ran past its deadline.
    Timeout,
}

impl std::fmt::Display for ScoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreError::Timeout => f.write_str("classifier ran past its time budget"),
        }
    }
}

impl std::error::Error for ScoreError {}

/// A loaded, verified classifier. `Send + Sync`; scoring takes `&self`.
pub struct Classifier {
    seed: u32,
    char_min: usize,
    char_max: usize,
    word_max: usize,
    window: usize,
    stride: usize,
    bias: f64,
    threshold: f32,
    weights: Vec<f32>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("buckets", &self.weights.len())
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Classifier {
    /// Verifies `bytes` against `sha256` (lower-case hex), then parses them.
    pub fn from_verified_bytes(bytes: &[u8], sha256: &str) -> Result<Self, ModelError> {
        if sha256_hex(bytes) != sha256 {
            return Err(ModelError::Sha256Mismatch);
        }
        Self::parse(bytes)
    }

    /// The shipped model, verified against [`MODEL_SHA256`]; `None` when the crate was built
    /// without the `embedded-model` feature.
    pub fn embedded() -> Option<Result<Self, ModelError>> {
        EMBEDDED.map(|b| Self::from_verified_bytes(b, MODEL_SHA256))
    }

    /// Parses a model without checking its hash (for tests and tools; the gate always verifies).
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let fmt = ModelError::Format;
        if bytes.len() < HEADER_LEN {
            return Err(fmt("shorter than its header"));
        }
        if &bytes[0..4] != MAGIC {
            return Err(fmt("bad magic"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        if u16_at(4) != VERSION {
            return Err(fmt("unsupported version"));
        }
        if u16_at(6) as usize != HEADER_LEN {
            return Err(fmt("unexpected header length"));
        }
        let buckets = u32_at(8) as usize;
        if buckets == 0 || !buckets.is_power_of_two() || buckets > 1 << 24 {
            return Err(fmt("bucket count is not a power of two up to 2^24"));
        }
        let (char_min, char_max, word_max, wfmt) =
            (bytes[16] as usize, bytes[17] as usize, bytes[18] as usize, bytes[19]);
        if char_min == 0 || char_min > char_max || char_max > 8 || word_max > 2 {
            return Err(fmt("bad n-gram ranges"));
        }
        if wfmt != 1 {
            return Err(fmt("unsupported weight format"));
        }
        let (window, stride) = (u32_at(20) as usize, u32_at(24) as usize);
        if window == 0 || stride == 0 || stride > window {
            return Err(fmt("bad window"));
        }
        let bias = f32::from_bits(u32_at(28));
        let threshold = f32::from_bits(u32_at(32));
        if !bias.is_finite() || threshold.is_nan() || threshold <= 0.0 || threshold >= 1.0 {
            return Err(fmt("bad bias or threshold"));
        }
        if bytes.len() != HEADER_LEN + 2 * buckets {
            return Err(fmt("size does not match the bucket count"));
        }
        let weights: Vec<f32> =
            bytes[HEADER_LEN..].chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect();
        if weights.iter().any(|w| !w.is_finite()) {
            return Err(fmt("non-finite weight"));
        }
        Ok(Classifier {
            seed: u32_at(12),
            char_min,
            char_max,
            word_max,
            window,
            stride,
            bias: bias as f64,
            threshold,
            weights,
        })
    }

    /// The probability at or above which a text is blocked.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The probability that `text` is sensitive: the highest over its windows. Checks `deadline`
    /// (if any) as it goes and gives up with [`ScoreError::Timeout`] once it has passed.
    pub fn score(&self, text: &str, deadline: Option<Instant>) -> Result<f32, ScoreError> {
        let norm = normalize(text);
        let mut best = 0.0f64;
        for (s, e) in windows(&norm, self.window, self.stride) {
            let feats = self.features_checked(&norm[s..e], deadline)?;
            let z = self.bias + feats.iter().map(|&(b, v)| self.weights[b as usize] as f64 * v).sum::<f64>();
            best = best.max(sigmoid(z));
        }
        Ok(best as f32)
    }

    /// Sparse features of one normalized window: sorted `(bucket, value)`, L2-normalized.
    pub fn features(&self, window: &str) -> Vec<(u32, f64)> {
        // Without a deadline this cannot fail.
        self.features_checked(window, None).unwrap_or_default()
    }

    fn features_checked(&self, s: &str, deadline: Option<Instant>) -> Result<Vec<(u32, f64)>, ScoreError> {
        let mask = (self.weights.len() - 1) as u32;
        let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect();
        let n = starts.len() - 1;
        let mut buckets: Vec<u32> = Vec::with_capacity(n * (self.char_max - self.char_min + 1) + n / 2);
        for i in 0..n {
            if i % DEADLINE_EVERY == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ScoreError::Timeout);
            }
            let mut h = init(self.seed, KIND_CHAR);
            for k in 1..=self.char_max {
                if i + k > n {
                    break;
                }
                h = fnv(h, &s.as_bytes()[starts[i + k - 1]..starts[i + k]]);
                if k >= self.char_min {
                    buckets.push(fmix(h) & mask);
                }
            }
        }
        if self.word_max >= 1 {
            let toks: Vec<&str> = s.split(is_word_sep).filter(|t| !t.is_empty()).collect();
            for t in &toks {
                buckets.push(fmix(fnv(init(self.seed, KIND_WORD), t.as_bytes())) & mask);
            }
            if self.word_max >= 2 {
                for p in toks.windows(2) {
                    let h = fnv(fnv(fnv(init(self.seed, KIND_BIGRAM), p[0].as_bytes()), b" "), p[1].as_bytes());
                    buckets.push(fmix(h) & mask);
                }
            }
        }
        buckets.sort_unstable();
        let mut feats: Vec<(u32, f64)> = Vec::with_capacity(buckets.len());
        let mut i = 0;
        while i < buckets.len() {
            let b = buckets[i];
            let mut j = i;
            while j < buckets.len() && buckets[j] == b {
                j += 1;
            }
            feats.push((b, 1.0 + ((j - i) as f64).ln()));
            i = j;
        }
        let norm = feats.iter().map(|&(_, v)| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            for f in &mut feats {
                f.1 /= norm;
            }
        }
        Ok(feats)
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn init(seed: u32, kind: u32) -> u32 {
    FNV_OFFSET ^ seed ^ kind.wrapping_mul(FNV_PRIME)
}

fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let mant = (h & 0x3FF) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, 0) => sign | 0x7F80_0000,
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Characters dropped by [`normalize`]: soft hyphen, BOM, zero-width and bidi controls, word
/// joiners and invisible operators, combining diacritical marks.
fn is_stripped(c: u32) -> bool {
    matches!(c, 0x00AD | 0xFEFF | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x0300..=0x036F)
}

/// Controls and spaces, all of which become one space.
fn is_space(c: u32) -> bool {
    matches!(c, 0x00..=0x20 | 0x7F..=0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000)
}

fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'А' => 'a',
        'В' => 'b',
        'е' | 'Е' => 'e',
        'К' => 'k',
        'М' => 'm',
        'Н' => 'h',
        'о' | 'О' => 'o',
        'р' | 'Р' => 'p',
        'с' | 'С' => 'c',
        'Т' => 't',
        'х' | 'Х' => 'x',
        'у' | 'У' => 'y',
        'і' | 'І' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        _ => return None,
    })
}

fn is_word_sep(c: char) -> bool {
    c == ' '
        || c.is_ascii_punctuation()
        || matches!(
            c,
            '，' | '。'
                | '、'
                | '！'
                | '？'
                | '：'
                | '；'
                | '（'
                | '）'
                | '「'
                | '」'
                | '『'
                | '』'
                | '【'
                | '】'
                | '《'
                | '》'
                | '“'
                | '”'
                | '‘'
                | '’'
                | '…'
                | '·'
                | '—'
                | '–'
        )
}

/// The classifier's view of a text (see the module docs and `train_classifier.py`): invisible
/// characters dropped, full-width ASCII folded, spaces collapsed, every digit `0`, Cyrillic
/// look-alikes folded to Latin, lower case, one space of padding on each side.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    let mut prev_space = true;
    for mut ch in text.chars() {
        let mut cp = ch as u32;
        if is_stripped(cp) {
            continue;
        }
        if (0xFF01..=0xFF5E).contains(&cp) {
            cp -= 0xFEE0;
            ch = char::from_u32(cp).unwrap_or(ch);
        }
        if is_space(cp) {
            if !prev_space {
                out.push(' ');
            }
            prev_space = true;
            continue;
        }
        prev_space = false;
        if ch.is_ascii_digit() || (cp >= 0x80 && ch.is_numeric()) {
            out.push('0');
        } else if let Some(l) = homoglyph(ch) {
            out.push(l);
        } else {
            out.extend(ch.to_lowercase());
        }
    }
    if !out.ends_with(' ') || out.len() == 1 {
        out.push(' ');
    }
    out
}

/// Byte ranges of the scoring windows of a normalized text: the whole text when it has at most
/// `window` characters, else windows of `window` characters every `stride`, the last one ending
/// at the end.
fn windows(s: &str, window: usize, stride: usize) -> Vec<(usize, usize)> {
    let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect();
    let n = starts.len() - 1;
    if n <= window {
        return vec![(0, s.len())];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start + window < n {
        out.push((starts[start], starts[start + window]));
        start += stride;
    }
    out.push((starts[n - window], s.len()));
    out
}

/// Number of scoring windows of `text` under this model (for tests).
#[cfg(test)]
pub(crate) fn window_count(c: &Classifier, text: &str) -> usize {
    windows(&normalize(text), c.window, c.stride).len()
}

#[cfg(test)]
impl Classifier {
    /// The same model with another hash seed (a wrong variant, for tests).
    pub(crate) fn with_seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }
    /// One decoded weight.
    pub(crate) fn weight(&self, i: usize) -> f32 {
        self.weights[i]
    }
}
