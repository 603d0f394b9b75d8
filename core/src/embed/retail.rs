//! [`Embedder`] as the vector source of `edgewise-retail`'s index and recommender.
//!
//! The model id given to the index is the embedder's [`Embedder::fingerprint`] (model, weights,
//! pooling, normalization, limit and weight mode), so an index built by one model, or by the same
//! model in another weight mode, is re-embedded rather than mixed with another's vectors.

use edgewise_retail::{Embed, EmbedError};

use super::Embedder;

/// An embedding failure as the retail crate sees it: the core error's message, which names sizes,
/// limits and paths but never the text (core/src/error.rs).
#[derive(Debug)]
struct EmbedFailure(String);

impl std::fmt::Display for EmbedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmbedFailure {}

impl Embed for Embedder {
    fn dim(&self) -> usize {
        Embedder::dim(self)
    }

    fn model_id(&self) -> &str {
        self.fingerprint()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self.embed_batch(texts) {
            Ok(v) => Ok(v.into_iter().map(|e| e.vector).collect()),
            Err(e) => Err(Box::new(EmbedFailure(e.to_string()))),
        }
    }
}
