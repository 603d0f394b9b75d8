//! The one error type of `edgewise-core`.
//!
//! Privacy rule: no variant's `Display` may contain prompt text, generated text or token ids derived
//! from user input. Sizes, key names, tensor names, paths and HTTP statuses are fine.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `edgewise-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === I/O ===
    /// An operating-system I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    // === GGUF ===
    /// The file is not a GGUF file or its header is damaged.
    #[error("not a valid GGUF file: {reason}")]
    InvalidGguf {
        /// What was wrong.
        reason: String,
    },
    /// A metadata key is missing.
    #[error("GGUF metadata key `{key}` is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key has an unexpected type or value.
    #[error("GGUF metadata key `{key}` is invalid: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A tensor is missing, malformed or of an unsupported type.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The file's header (metadata and tensor table) would take more memory than
    /// [`crate::gguf::MAX_HEADER_MEMORY`] once parsed.
    #[error("GGUF metadata too large: `{key}` takes the header past its {limit}-byte memory limit")]
    MetadataTooLarge {
        /// The key (or `tensor table`) being read when the limit was reached.
        key: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A tensor's shape does not match what the model's configuration needs.
    #[error("tensor `{name}` has shape {}x{}, the config needs {}x{} (rows x row length)", found[0], found[1], expected[0], expected[1])]
    TensorShape {
        /// The tensor's name in its file.
        name: String,
        /// `[rows, row length]` the config needs (a vector is one row).
        expected: [usize; 2],
        /// `[rows, row length]` the file holds.
        found: [usize; 2],
    },
    /// The GGML type id is unknown or not supported for this operation.
    #[error("unsupported tensor type {ty}")]
    UnsupportedType {
        /// Type name or id.
        ty: String,
    },

    // === Models and catalog ===
    /// A Hugging Face model folder is incomplete or inconsistent (config.json, safetensors, tokenizer).
    #[error("not a usable Hugging Face model folder: {reason}")]
    InvalidModelFolder {
        /// What was wrong (file and field names, never model text).
        reason: String,
    },
    /// The architecture in the file is not supported.
    #[error("unsupported architecture `{name}`")]
    UnsupportedArchitecture {
        /// `general.architecture` value.
        name: String,
    },
    /// A model id is not in the catalog.
    #[error("unknown model id `{id}`")]
    UnknownModel {
        /// The id asked for.
        id: String,
    },
    /// The catalog file is malformed.
    #[error("model catalog is invalid: {reason}")]
    Catalog {
        /// What was wrong.
        reason: String,
    },
    /// A downloaded or local file does not have the expected checksum or size.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}")]
    Checksum {
        /// File checked.
        path: PathBuf,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// A download failed.
    #[error("download failed: {reason}")]
    Download {
        /// What failed (URL host and status, never user text).
        reason: String,
    },
    /// Not enough free disk space for a download.
    #[error("not enough disk space: need {needed} bytes, {available} available")]
    DiskSpace {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },

    // === Tokenizer ===
    /// The tokenizer could not be built or failed.
    #[error("tokenizer error: {reason}")]
    Tokenizer {
        /// What failed (no user text).
        reason: String,
    },
    /// A chat template failed to render.
    #[error("chat template error: {reason}")]
    ChatTemplate {
        /// What failed (no user text).
        reason: String,
    },

    // === Inference ===
    /// The backend (device) failed or is unavailable.
    #[error("backend error: {reason}")]
    Backend {
        /// What failed.
        reason: String,
    },
    /// A prompt plus generation would exceed the session's context.
    #[error("context overflow: {requested} tokens requested, context holds {max}")]
    ContextOverflow {
        /// Context capacity.
        max: usize,
        /// Tokens requested.
        requested: usize,
    },
    /// The text of one call (prompt, or all messages of a request) is larger than the limit.
    #[error("input of {actual} bytes is over the {max}-byte limit per call")]
    InputTooLarge {
        /// The limit in bytes ([`crate::MAX_INPUT_BYTES`]).
        max: usize,
        /// The input's size in bytes.
        actual: usize,
    },
    /// A parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// An output constraint (JSON Schema, regex, grammar) or tool definition is invalid, uses an
    /// unsupported feature, or accepts no output. Raised before any token is generated.
    #[error("invalid output constraint: {reason}")]
    InvalidConstraint {
        /// What is wrong with the constraint (from the constraint, never prompt text).
        reason: String,
    },
    /// A tool call that did not come out of constrained decoding (a cloud model's) names a
    /// tool that was not offered or has arguments that do not validate against its schema.
    #[error("invalid tool call: {reason}")]
    InvalidToolCall {
        /// The tool's name, and the place and rule that failed (never an argument value).
        reason: String,
    },
    /// The generation was cancelled.
    #[error("generation cancelled")]
    Cancelled,
    /// Another generation is already running on this session.
    #[error("a generation is already running on this session")]
    Busy,

    // === Session files ===
    /// A session file is damaged, truncated, too large, or not a session file.
    #[error("session file unusable: {reason}")]
    SessionFile {
        /// What was wrong (offsets and sizes, never conversation text).
        reason: String,
    },
    /// A session file was written by a format version this build does not read.
    #[error("session file format version {found} is not supported (this build reads version {supported})")]
    SessionFileVersion {
        /// The file's version.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A session file was saved with another model than the engine's.
    #[error("session file belongs to another model (file: {file}, engine: {engine})")]
    SessionModelMismatch {
        /// The model id recorded in the file (a short hex prefix).
        file: String,
        /// The engine's model id (a short hex prefix).
        engine: String,
    },

    // === Embeddings ===
    /// A vector of the wrong length (an embedding from another model, a query against an index).
    #[error("dimension mismatch: expected {expected}, found {found}")]
    DimensionMismatch {
        /// The length that was needed.
        expected: usize,
        /// The length that was given.
        found: usize,
    },
    /// A NaN or infinity where a finite value is required (an embedding, a stored vector).
    #[error("non-finite values in {what}")]
    NonFinite {
        /// What held them (`embedding`, `vector`).
        what: &'static str,
    },

    // === Router ===
    /// The routing policy denied the request.
    #[error("policy denied: {reason}")]
    PolicyDenied {
        /// Why.
        reason: String,
    },
    /// The cloud endpoint could not be used.
    #[error("cloud unavailable: {reason}")]
    CloudUnavailable {
        /// Why (status, timeout; no request text).
        reason: String,
    },
    /// `edgewise serve` was asked to listen on a non-loopback address without an API key.
    #[error(
        "refusing to serve on {addr} without an API key: it is reachable beyond this machine; require a key, or allow unauthenticated remote access explicitly"
    )]
    UnauthenticatedRemote {
        /// The bound address.
        addr: String,
    },
    /// A LoRA adapter file that cannot be applied to this model (another architecture or shape,
    /// a missing half of a pair, an absurd rank, a wrong `general.type`).
    #[error("LoRA adapter: {reason}")]
    Adapter {
        /// What is wrong (tensor names and sizes only).
        reason: String,
    },
    /// `edgewise finetune` cannot go on: a malformed training line (its number, never its text),
    /// a non-finite loss, a checkpoint of another run.
    #[error("training: {reason}")]
    Training {
        /// What is wrong (line numbers, sizes and steps only).
        reason: String,
    },
    /// The offline queue or audit log failed.
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No variant may echo user text; the ones with free-form fields are built by our code from
    /// sizes, keys and statuses. This checks the formatting of each variant does not invent text.
    #[test]
    fn display_is_free_of_a_canary_prompt() {
        let canary = "CANARY-PROMPT-7731";
        let all = vec![
            Error::ContextOverflow { max: 512, requested: 900 },
            Error::Cancelled,
            Error::Busy,
            Error::MissingKey { key: "general.architecture".into() },
            Error::MetadataTooLarge { key: "tokenizer.ggml.tokens".into(), limit: 1 << 26 },
            Error::TensorShape { name: "blk.0.attn_norm.weight".into(), expected: [1, 640], found: [1, 320] },
            Error::InputTooLarge { max: 1 << 20, actual: 50 << 20 },
            Error::SessionFile { reason: "checksum mismatch".into() },
            Error::SessionFileVersion { found: 9, supported: 1 },
            Error::SessionModelMismatch { file: "0123abcd".into(), engine: "fedc9876".into() },
            Error::DimensionMismatch { expected: 384, found: 768 },
            Error::NonFinite { what: "embedding" },
        ];
        for e in all {
            assert!(!e.to_string().contains(canary));
        }
    }
}
