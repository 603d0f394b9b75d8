//! The crate's one error type.
//!
//! Privacy: no variant carries shopper content (event item ids, search queries) or item text;
//! `Display` names sizes, counts, paths and key names only. `tests::no_content_in_display`
//! builds every variant from a canary and checks that the canary never appears.

use std::path::PathBuf;

/// Errors of the vector index and the recommender.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetailError {
    // === Input ===
    /// A vector holds NaN or infinity, or is all zeros (its cosine is undefined).
    #[error("invalid vector: {reason}")]
    InvalidVector {
        /// What is wrong with it (never the values).
        reason: &'static str,
    },
    /// A vector's length differs from the index's dimension.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// An argument is out of range (`k`, a weight, an empty id).
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// An item id that is not in the catalog or index (the id itself is left out of the message).
    #[error("unknown item (id of {len} bytes)")]
    UnknownItem {
        /// Length of the id in bytes.
        len: usize,
    },
    /// A catalog or events line that does not parse.
    #[error("{what} line {line}: {reason}")]
    Parse {
        /// `catalog` or `events`.
        what: &'static str,
        /// 1-based line number.
        line: usize,
        /// The parser's complaint (serde's message names fields and positions, not values).
        reason: String,
    },

    // === Embedding ===
    /// The embedder failed or returned the wrong number of vectors.
    #[error("embedding failed: {reason}")]
    Embed {
        /// Why (from the embedder; it must not put input text in its errors).
        reason: String,
    },

    // === Storage ===
    /// The index on disk was made by another embedding model or dimension. Vectors of two models
    /// never mix: re-embed into a fresh index ([`crate::VectorIndex::recreate`]), which the
    /// [`crate::Recommender`] does by itself.
    #[error("index {path} holds vectors of model {stored_model:?} (dim {stored_dim}), not {model:?} (dim {dim})")]
    ModelMismatch {
        /// The index file.
        path: PathBuf,
        /// Model id stored in the file.
        stored_model: String,
        /// Dimension stored in the file.
        stored_dim: usize,
        /// Model id asked for.
        model: String,
        /// Dimension asked for.
        dim: usize,
    },
    /// The file is not an index, or a record in its middle fails its checksum. Rebuild it from
    /// the catalog ([`crate::VectorIndex::recreate`]); a torn last record (a crash mid-write) is
    /// not corruption and is dropped on open.
    #[error("index {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Another process (or another open handle in this one) holds the file's lock.
    #[error("{path} is in use by another process")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// A storage problem other than I/O (a symbolic link at the path, a record too large).
    #[error("storage: {reason}")]
    Storage {
        /// Why.
        reason: String,
    },
    /// An I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`RetailError`].
pub type Result<T> = std::result::Result<T, RetailError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_content_in_display() {
        let canary = "CANARY-sku-4417";
        let all = [
            RetailError::InvalidVector { reason: "NaN" },
            RetailError::DimensionMismatch { expected: 3, got: 4 },
            RetailError::InvalidArgument { name: "k", reason: "must be 1..=10000".into() },
            RetailError::UnknownItem { len: canary.len() },
            RetailError::Parse { what: "events", line: 3, reason: "missing field `kind`".into() },
            RetailError::Embed { reason: "backend".into() },
            RetailError::ModelMismatch {
                path: "/x".into(),
                stored_model: "a".into(),
                stored_dim: 3,
                model: "b".into(),
                dim: 4,
            },
            RetailError::Corrupt { path: "/x".into(), offset: 0, reason: "bad magic" },
            RetailError::Locked { path: "/x".into() },
            RetailError::Storage { reason: "symbolic link".into() },
        ];
        for e in all {
            assert!(!e.to_string().contains(canary), "{e}");
        }
    }
}
