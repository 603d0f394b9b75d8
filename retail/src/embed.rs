//! How vectors come in: the [`Embed`] trait, a deterministic hashed embedder that needs no model,
//! and a table of precomputed vectors.

use std::collections::HashMap;

/// The error an embedder returns (its message must not contain the input text).
pub type EmbedError = Box<dyn std::error::Error + Send + Sync>;

/// A text embedder: the sentence encoder of `edgewise-core` implements this for the recommender.
pub trait Embed: Send + Sync {
    /// Vector length.
    fn dim(&self) -> usize;
    /// A stable id of the model (and its pooling/normalization): stored in the index, so a change
    /// re-embeds instead of mixing vectors.
    fn model_id(&self) -> &str;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A shared embedder (one loaded model serving an index, a recommender and the app).
impl<T: Embed + ?Sized> Embed for std::sync::Arc<T> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(texts)
    }
}

/// A deterministic embedder without a model: lower-cased word unigrams and bigrams and character
/// trigrams of each word, hashed (FNV-1a) with a sign into `dim` buckets, sublinear term weights,
/// L2-normalized. A lexical baseline for tests and for apps that ship no encoder; semantic
/// similarity needs a real encoder.
#[derive(Clone, Debug)]
pub struct HashEmbed {
    dim: usize,
    id: String,
}

impl HashEmbed {
    /// `dim` buckets (at least 8).
    pub fn new(dim: usize) -> Self {
        let dim = dim.max(8);
        Self { dim, id: format!("edgewise-hash-v1-{dim}") }
    }
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// Lower-cased alphanumeric words.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

impl HashEmbed {
    fn one(&self, text: &str) -> Vec<f32> {
        let mut counts: HashMap<u64, f32> = HashMap::new();
        let ws = words(text);
        for (i, w) in ws.iter().enumerate() {
            *counts.entry(fnv1a(&["w", w])).or_default() += 1.0;
            if let Some(n) = ws.get(i + 1) {
                *counts.entry(fnv1a(&["b", w, n])).or_default() += 0.5;
            }
            let padded: Vec<char> = format!("<{w}>").chars().collect();
            for t in padded.windows(3) {
                let s: String = t.iter().collect();
                *counts.entry(fnv1a(&["c", &s])).or_default() += 0.25;
            }
        }
        let mut v = vec![0f32; self.dim];
        for (h, c) in counts {
            let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
            v[(h % self.dim as u64) as usize] += sign * (1.0 + c.ln_1p());
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        } else {
            v[0] = 1.0; // empty text: a fixed vector, never zero
        }
        v
    }
}

impl Embed for HashEmbed {
    fn dim(&self) -> usize {
        self.dim
    }
    fn model_id(&self) -> &str {
        &self.id
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.one(t)).collect())
    }
}

/// Vectors computed elsewhere (for example by `edgewise embed`), looked up by exact text.
#[derive(Clone, Debug)]
pub struct PrecomputedEmbed {
    dim: usize,
    id: String,
    table: HashMap<String, Vec<f32>>,
}

/// A text the table has no vector for.
#[derive(Debug)]
struct MissingText;
impl std::fmt::Display for MissingText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no precomputed vector for a text")
    }
}
impl std::error::Error for MissingText {}

impl PrecomputedEmbed {
    /// `pairs` of (text, vector); all vectors must have one length.
    pub fn new(model_id: &str, pairs: impl IntoIterator<Item = (String, Vec<f32>)>) -> crate::Result<Self> {
        let table: HashMap<String, Vec<f32>> = pairs.into_iter().collect();
        let dim = table.values().next().map_or(0, |v| v.len());
        if dim == 0 {
            return Err(crate::RetailError::InvalidArgument { name: "vectors", reason: "empty".into() });
        }
        if let Some(v) = table.values().find(|v| v.len() != dim) {
            return Err(crate::RetailError::DimensionMismatch { expected: dim, got: v.len() });
        }
        Ok(Self { dim, id: model_id.to_string(), table })
    }
}

impl Embed for PrecomputedEmbed {
    fn dim(&self) -> usize {
        self.dim
    }
    fn model_id(&self) -> &str {
        &self.id
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        texts.iter().map(|t| self.table.get(*t).cloned().ok_or_else(|| Box::new(MissingText) as EmbedError)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_embed_is_deterministic_and_lexical() {
        let e = HashEmbed::new(256);
        let v = e.embed(&["Waterproof hiking boot", "waterproof Hiking boots", "green tea", ""]).unwrap();
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(cos(&v[0], &v[1]) > 0.5);
        assert!(cos(&v[0], &v[2]) < 0.3);
        assert!((cos(&v[3], &v[3]) - 1.0).abs() < 1e-6);
        assert_eq!(v, e.embed(&["Waterproof hiking boot", "waterproof Hiking boots", "green tea", ""]).unwrap());
    }
}
