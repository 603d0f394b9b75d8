//! The one error type that crosses the FFI, and the one place that maps core errors onto it.
//!
//! Kotlin sees it as the sealed class `EdgewiseException` (`EdgewiseException.ModelLoad`, …),
//! Swift as `enum EdgewiseError: Error`. Variants hold primitive fields only, so hosts can
//! `when`/`switch` on them without extra types. Privacy: the reasons come from core error
//! messages, which never contain prompt or generated text (core/src/error.rs).

use std::panic::{catch_unwind, AssertUnwindSafe};

use edgewise_core::Error as CoreError;

/// Everything that can go wrong in an Edgewise call.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum EdgewiseError {
    /// The model file could not be read or is damaged (bad GGUF, missing keys or tensors,
    /// tokenizer or chat-template failure).
    #[error("model load failed: {reason}")]
    ModelLoad {
        /// What was wrong.
        reason: String,
    },
    /// The file is valid but its architecture or tensor types are not supported.
    #[error("unsupported model: {reason}")]
    UnsupportedModel {
        /// What is unsupported.
        reason: String,
    },
    /// The conversation does not fit the session's context.
    #[error("context overflow: {requested} tokens requested, context holds {max}")]
    ContextOverflow {
        /// Context capacity in tokens.
        max: i32,
        /// Tokens requested.
        requested: i32,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Another generation is running on this session; wait for it or cancel it.
    #[error("a generation is already running on this session")]
    Busy,
    /// An argument is out of range or unknown (for example a model id not in the catalog).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An output constraint or tool definition is unusable: a JSON Schema that is invalid or
    /// uses unsupported keywords, a bad regex or grammar, one that accepts no output at all, a
    /// tool's parameters that are not a JSON object schema, repeated or malformed tool names, a
    /// named tool choice that is not a tool. Raised before any token is generated.
    #[error("invalid output constraint: {reason}")]
    InvalidConstraint {
        /// What is wrong (from the constraint, never prompt text).
        reason: String,
    },
    /// A tool call that did not come out of constrained decoding names a tool that was not
    /// offered or has arguments that do not validate against its schema.
    #[error("invalid tool call: {reason}")]
    InvalidToolCall {
        /// The tool, the place and the rule (never an argument value).
        reason: String,
    },
    /// A LoRA adapter file is unusable (not a GGUF adapter, another architecture or size,
    /// missing or mis-shaped tensors, non-finite values), or an adapter was loaded for another
    /// model than this session's.
    #[error("LoRA adapter unusable: {reason}")]
    Adapter {
        /// What is wrong (tensor names and sizes only).
        reason: String,
    },
    /// The GPU (or CPU backend) failed or is unavailable.
    #[error("backend error: {reason}")]
    Backend {
        /// What failed.
        reason: String,
    },
    /// The routing policy refused the request (for example: sensitive text and a cloud-only call).
    #[error("policy denied: {reason}")]
    PolicyDenied {
        /// Why.
        reason: String,
    },
    /// The cloud endpoint could not be used (offline, HTTP error, timeout).
    #[error("cloud unavailable: {reason}")]
    CloudUnavailable {
        /// Why.
        reason: String,
    },
    /// A model download failed (network, HTTP status, checksum).
    #[error("download failed: {reason}")]
    Download {
        /// What failed.
        reason: String,
    },
    /// Not enough free disk space for a download.
    #[error("not enough disk space: need {needed} bytes, {available} available")]
    DiskSpace {
        /// Bytes needed.
        needed: i64,
        /// Bytes available.
        available: i64,
    },
    /// A file-system error.
    #[error("i/o error: {reason}")]
    Io {
        /// What failed.
        reason: String,
    },
    /// The offline queue or audit log failed.
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// A session file is damaged, truncated, too large, not a session file, or of a newer format.
    #[error("session file unusable: {reason}")]
    SessionFile {
        /// What was wrong (sizes and offsets, never conversation text).
        reason: String,
    },
    /// A session file was saved with another model than the engine's.
    #[error("session file belongs to another model: {reason}")]
    SessionModelMismatch {
        /// The two model ids (short prefixes).
        reason: String,
    },
    /// An item id that is not in the catalog or index (the id is left out of the message).
    #[error("unknown item")]
    UnknownItem,
    /// The embedding model failed on a text (too large, a non-finite result).
    #[error("embedding failed: {reason}")]
    Embedding {
        /// Why (sizes and limits, never the text).
        reason: String,
    },
    /// A vector index file holds another embedding model's vectors (or another dimension):
    /// `VectorIndex.recreate` it and re-embed (a `Recommender` does this by itself).
    #[error("vector index of another model: {reason}")]
    IndexModelMismatch {
        /// The file and the two models.
        reason: String,
    },
    /// A vector index or event file is damaged: `VectorIndex.recreate` it (a `Recommender`
    /// rebuilds its index from the catalog by itself).
    #[error("vector index corrupt: {reason}")]
    IndexCorrupt {
        /// The file and the offset.
        reason: String,
    },
    /// The file is open elsewhere (another process, or another open handle in this one).
    #[error("in use: {reason}")]
    Locked {
        /// The file.
        reason: String,
    },
    /// A listener implemented by the host (Kotlin/Swift) threw an unexpected exception.
    #[error("host callback failed: {reason}")]
    Callback {
        /// The exception as the host described it.
        reason: String,
    },
    /// A bug in Edgewise (a caught panic, a broken invariant).
    #[error("internal error: {reason}")]
    Internal {
        /// What happened.
        reason: String,
    },
}

/// Result alias for exported functions.
pub type EdgewiseResult<T> = Result<T, EdgewiseError>;

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<CoreError> for EdgewiseError {
    fn from(e: CoreError) -> Self {
        // The single mapping point; core messages are free of user text, so logging them is fine.
        log::debug!("edgewise error crossing the FFI: {e}");
        let reason = e.to_string();
        match e {
            CoreError::Io(_) => Self::Io { reason },
            CoreError::InvalidGguf { .. }
            | CoreError::MissingKey { .. }
            | CoreError::InvalidKey { .. }
            | CoreError::Tensor { .. }
            | CoreError::MetadataTooLarge { .. }
            | CoreError::TensorShape { .. }
            | CoreError::Tokenizer { .. }
            | CoreError::ChatTemplate { .. } => Self::ModelLoad { reason },
            CoreError::Adapter { .. } => Self::Adapter { reason },
            CoreError::UnsupportedType { .. } | CoreError::UnsupportedArchitecture { .. } => {
                Self::UnsupportedModel { reason }
            }
            CoreError::UnknownModel { .. } => Self::InvalidParameter { name: "model_id".into(), reason },
            CoreError::Catalog { .. } => Self::Internal { reason },
            CoreError::Checksum { .. } | CoreError::Download { .. } => Self::Download { reason },
            CoreError::DiskSpace { needed, available } => {
                Self::DiskSpace { needed: saturating_i64(needed), available: saturating_i64(available) }
            }
            CoreError::Backend { .. } => Self::Backend { reason },
            CoreError::ContextOverflow { max, requested } => {
                Self::ContextOverflow { max: saturating_i32(max), requested: saturating_i32(requested) }
            }
            CoreError::InvalidParameter { name, reason } => Self::InvalidParameter { name: name.into(), reason },
            CoreError::InvalidConstraint { .. } => Self::InvalidConstraint { reason },
            CoreError::InvalidToolCall { .. } => Self::InvalidToolCall { reason },
            // Sizes only: the input itself is never part of the message.
            CoreError::InputTooLarge { .. } => Self::InvalidParameter { name: "input".into(), reason },
            CoreError::DimensionMismatch { .. } => Self::InvalidParameter { name: "vector".into(), reason },
            CoreError::Cancelled => Self::Cancelled,
            CoreError::Busy => Self::Busy,
            CoreError::PolicyDenied { .. } => Self::PolicyDenied { reason },
            CoreError::CloudUnavailable { .. } => Self::CloudUnavailable { reason },
            CoreError::Storage { .. } => Self::Storage { reason },
            CoreError::Training { .. } => Self::InvalidParameter { name: "training".into(), reason },
            CoreError::SessionFile { .. } | CoreError::SessionFileVersion { .. } => Self::SessionFile { reason },
            CoreError::SessionModelMismatch { .. } => Self::SessionModelMismatch { reason },
            // `Error` is #[non_exhaustive]: new core variants surface as Internal until mapped here.
            _ => Self::Internal { reason },
        }
    }
}

impl From<edgewise_core::retail::RetailError> for EdgewiseError {
    fn from(e: edgewise_core::retail::RetailError) -> Self {
        use edgewise_core::retail::RetailError as R;
        // The retail crate's messages hold no shopper content (events, queries, item text).
        log::debug!("retail error crossing the FFI: {e}");
        let reason = e.to_string();
        match e {
            R::InvalidVector { .. } | R::DimensionMismatch { .. } => {
                Self::InvalidParameter { name: "vector".into(), reason }
            }
            R::InvalidArgument { name, .. } => Self::InvalidParameter { name: name.into(), reason },
            R::Parse { what, .. } => Self::InvalidParameter { name: what.into(), reason },
            R::UnknownItem { .. } => Self::UnknownItem,
            R::Embed { .. } => Self::Embedding { reason },
            R::ModelMismatch { .. } => Self::IndexModelMismatch { reason },
            R::Corrupt { .. } => Self::IndexCorrupt { reason },
            R::Locked { .. } => Self::Locked { reason },
            R::Storage { .. } => Self::Storage { reason },
            R::Io(_) => Self::Io { reason },
            // `RetailError` is #[non_exhaustive].
            _ => Self::Internal { reason },
        }
    }
}

impl From<std::io::Error> for EdgewiseError {
    fn from(e: std::io::Error) -> Self {
        Self::Io { reason: e.to_string() }
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for EdgewiseError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Callback { reason: e.reason }
    }
}

/// Runs `f`, turning a panic (burn internals can panic on device errors) into
/// [`EdgewiseError::Internal`], so no panic reaches Kotlin or Swift even where uniffi's own guard
/// would turn it into an untyped exception (or a crash, in a non-throwing Swift function).
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> EdgewiseResult<T>) -> EdgewiseResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        log::error!("panic in {what}: {detail}");
        Err(EdgewiseError::Internal { reason: format!("{what} panicked: {detail}") })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_typed_variants() {
        let cases = [
            (CoreError::InvalidGguf { reason: "bad magic".into() }, "ModelLoad"),
            (CoreError::UnsupportedArchitecture { name: "mamba".into() }, "UnsupportedModel"),
            (CoreError::Busy, "Busy"),
            (CoreError::Cancelled, "Cancelled"),
            (CoreError::DiskSpace { needed: 10, available: 1 }, "DiskSpace"),
            (CoreError::MetadataTooLarge { key: "tokenizer.ggml.tokens".into(), limit: 1 << 26 }, "ModelLoad"),
            (
                CoreError::TensorShape { name: "output_norm.weight".into(), expected: [1, 640], found: [1, 320] },
                "ModelLoad",
            ),
            (CoreError::InputTooLarge { max: 1 << 20, actual: 50 << 20 }, "InvalidParameter"),
            (CoreError::SessionFile { reason: "checksum mismatch".into() }, "SessionFile"),
            (CoreError::InvalidConstraint { reason: "unknown keyword".into() }, "InvalidConstraint"),
            (CoreError::InvalidToolCall { reason: "unknown tool".into() }, "InvalidToolCall"),
            (CoreError::Adapter { reason: "missing lora_b".into() }, "Adapter"),
            (CoreError::SessionFileVersion { found: 2, supported: 1 }, "SessionFile"),
            (CoreError::SessionModelMismatch { file: "ab".into(), engine: "cd".into() }, "SessionModelMismatch"),
        ];
        for (core, want) in cases {
            let got = format!("{:?}", EdgewiseError::from(core));
            assert!(got.starts_with(want), "{got} should be {want}");
        }
        let e = EdgewiseError::from(CoreError::ContextOverflow { max: 512, requested: usize::MAX });
        assert_eq!(e, EdgewiseError::ContextOverflow { max: 512, requested: i32::MAX });
    }

    #[test]
    fn retail_errors_map_to_typed_variants() {
        use edgewise_core::retail::RetailError as R;
        let cases = [
            (R::UnknownItem { len: 7 }, "UnknownItem"),
            (R::DimensionMismatch { expected: 384, got: 3 }, "InvalidParameter"),
            (R::InvalidVector { reason: "NaN" }, "InvalidParameter"),
            (R::Embed { reason: "input too large".into() }, "Embedding"),
            (
                R::ModelMismatch {
                    path: "/x".into(),
                    stored_model: "a".into(),
                    stored_dim: 3,
                    model: "b".into(),
                    dim: 3,
                },
                "IndexModelMismatch",
            ),
            (R::Corrupt { path: "/x".into(), offset: 8, reason: "bad magic" }, "IndexCorrupt"),
            (R::Locked { path: "/x".into() }, "Locked"),
        ];
        for (retail, want) in cases {
            let got = format!("{:?}", EdgewiseError::from(retail));
            assert!(got.starts_with(want), "{got} should be {want}");
        }
    }

    #[test]
    fn guard_turns_panics_into_internal() {
        let r: EdgewiseResult<()> = guard("test", || panic!("boom"));
        assert!(matches!(r, Err(EdgewiseError::Internal { reason }) if reason.contains("boom")));
        assert_eq!(guard("test", || Ok(3)), Ok(3));
    }
}
