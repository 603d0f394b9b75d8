//! # edgewise-core
//!
//! All of Edgewise's logic: model files, tokenizers, inference on burn (CPU `flex` and GPU `wgpu`),
//! chat sessions, and the offline-first privacy router. No FFI types live here; the `edgewise`
//! crate under `uniffi/` wraps this one for Kotlin and Swift.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`error`] | the one [`Error`] enum and [`Result`] |
//! | [`catalog`] | the model catalog (`models/catalog.toml`) and local model paths |
//! | [`download`] | fetching, resuming and verifying model files |
//! | [`gguf`] | the mmap'd GGUF reader, metadata façade, tensor-name tables, config synthesis |
//! | [`hf`] | Hugging Face model folders: config.json, mmap'd safetensors, tokenizer and template files |
//! | [`quant`] | GGML block types and their dequantizers |
//! | [`tokenizer`] | an exact `tokenizers::Tokenizer` from GGUF metadata; streaming detokenization; chat templates |
//! | [`backend`] | the one place that picks burn devices |
//! | [`weights`] | the weight-source abstraction between files and models |
//! | [`model`] | architectures (Gemma 3 first) over shared layers |
//! | [`kv_cache`] | per-session KV caches (ring buffers for sliding-window layers) |
//! | [`sampling`] | sampling parameters and the sampler chain |
//! | [`session`] | prompt → prefill → decode loop, streaming, cancel |
//! | [`structured`] | constrained decoding (JSON Schema, regex, Lark grammars) with llguidance |
//! | [`engine`] | a loaded model + tokenizer that creates sessions |
//! | [`router`] | sensitivity detection, routing policy, cloud client, offline queue, audit log |
#![deny(missing_docs)]

pub mod backend;
pub mod catalog;
pub mod download;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod router;
pub mod sampling;
pub mod session;
pub mod structured;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
