//! GGUF model files: an mmap-based reader, a typed metadata façade and the tensor-name
//! table. Reading an architecture's hyper-parameters from the metadata is the architecture's own
//! business (`model/<arch>.rs`): this module knows no model's configuration type.
//!
//! ```no_run
//! use edgewise_core::gguf::GgufFile;
//! let file = GgufFile::open("model.gguf")?;
//! let arch = file.metadata().get_str("general.architecture")?;
//! let t = file.tensor("token_embd.weight")?;
//! let bytes = file.tensor_data(t)?; // the raw, still-quantized blocks
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! Every count, offset, length and shape read from the file is checked before use (overflow,
//! bounds, alignment), and no allocation is sized by an unchecked number from the file: a
//! damaged or hostile file gets a typed [`crate::Error`], never a panic.
//! Format reference: ggml-org/ggml `docs/gguf.md`.

pub mod large_pages;
mod metadata;
pub mod names;
mod reader;
pub mod writer;

pub use metadata::{MetaArray, MetaValue, Metadata, StringArray, ValueType};
pub use reader::MAX_HEADER_MEMORY;
pub use reader::{GgufFile, TensorInfo};
