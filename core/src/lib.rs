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
//! | [`memory`] | memory pressure: trim levels and what each frees |
//! | [`sampling`] | sampling parameters and the sampler chain |
//! | [`session`] | prompt → prefill → decode loop, streaming, cancel |
//! | [`structured`] | constrained decoding (JSON Schema, regex, Lark grammars) with llguidance |
//! | [`session_file`] | saving a session (conversation + KV cache) to a checked, versioned file and restoring it |
//! | [`embed`] | sentence embeddings: a BERT-family encoder from a sentence-transformers folder |
//! | [`retail`] | re-export of `edgewise-retail` (vector index, recommender); `Embedder` implements its `Embed` |
//! | [`engine`] | a loaded model + tokenizer that creates sessions |
//! | [`router`] | sensitivity detection, routing policy, cloud client, offline queue, audit log |
#![deny(missing_docs)]

pub mod backend;
pub mod catalog;
pub mod download;
pub mod embed;
pub mod engine;
pub mod error;
pub mod finetune;
pub mod gguf;
pub mod hf;
pub mod kv_cache;
pub mod lora;
pub mod memory;
pub mod model;
pub mod quant;
pub mod router;
pub mod sampling;
pub mod session;
pub mod session_file;
pub mod structured;
pub mod tokenizer;
pub mod weights;

/// The vector index and recommender (crate `edgewise-retail`); [`embed::Embedder`] implements its
/// [`retail::Embed`] trait.
pub use edgewise_retail as retail;
pub use error::{Error, Result};

/// Most bytes of text one call takes in: a prompt ([`session::Session::complete`]), a chat message
/// ([`session::Session::chat`], and a session's system prompt), a whole router request (every
/// message and attachment of a [`router::ChatRequest`]), or a text to tokenize
/// ([`tokenizer::Tokenizer::encode`]). Beyond it a call fails with [`Error::InputTooLarge`]
/// before any work is done. 1 MiB is about 250k tokens of English, 8× the largest context a
/// supported model has; a 50 MB line used to take the tokenizer past the memory of a phone.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// [`Error::InputTooLarge`] when `bytes` is over [`MAX_INPUT_BYTES`].
pub(crate) fn check_input_len(bytes: usize) -> Result<()> {
    if bytes > MAX_INPUT_BYTES {
        return Err(Error::InputTooLarge { max: MAX_INPUT_BYTES, actual: bytes });
    }
    Ok(())
}

/// Unit tests' allocator: counts each thread's heap bytes, so a test can state how much memory
/// a call took (`test_alloc::peak_during`) — the bound on what a hostile file may cost.
#[cfg(test)]
pub(crate) mod test_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static CURRENT: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(delta: isize) {
        let _ = CURRENT.try_with(|c| {
            let now = c.get() + delta;
            c.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }

    /// Forwards to the system allocator and counts.
    pub struct Counting;

    // SAFETY: every call forwards to `System` with the caller's arguments unchanged; the counting
    // touches only const-initialized thread-locals (no allocation, no destructor).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                add(l.size() as isize);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(l) };
            if !p.is_null() {
                add(l.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            unsafe { System.dealloc(p, l) };
            add(-(l.size() as isize));
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            let q = unsafe { System.realloc(p, l, new_size) };
            if !q.is_null() {
                add(new_size as isize - l.size() as isize);
            }
            q
        }
    }

    /// Runs `f` and returns its result with the most heap bytes this thread held during it,
    /// above what it held at the start.
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = CURRENT.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let r = f();
        let peak = PEAK.with(Cell::get);
        (r, (peak - base).max(0) as usize)
    }
}

#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
