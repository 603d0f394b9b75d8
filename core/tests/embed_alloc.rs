//! One embedding call's fixed costs: after a warm-up, the encoder's part of embedding a short
//! text (the call less its tokenization) allocates, all threads together, less than one layer's
//! activations: no copy of the activations into and out of a tensor per product, no fresh output
//! buffer per product, no weight conversion per call. With burn's matmul per product (before
//! `quant::cpu::dense`) every product allocated its input copy and its output, and a buffer
//! allocated per product is a page-faulting `mmap` once texts are long.
//!
//! Its own test binary: the counting allocator sees every thread of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgewise_core::embed::{EmbedOptions, Embedder, EncoderWeights};

struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size(), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size(), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        BYTES.fetch_add(new.saturating_sub(l.size()), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn a_warm_embedding_call_allocates_less_than_one_layers_activations() {
    // The synthesized BERT in the repo (hidden 64, FFN 96, 2 layers, 40 positions): always here.
    let dir = repo().join("tests/golden/bert-synth/model");
    let e = Embedder::load(
        dir.to_str().expect("utf-8 path"),
        EmbedOptions { weights: EncoderWeights::F32, ..EmbedOptions::default() },
    )
    .expect("load bert-synth");
    let text = "red shoe light water bottle with soft warm jacket for the lamp desk blue small chair wood steel";
    let tokens = e.tokenize(text).expect("tokenize").0.len();
    assert!(tokens >= 16, "{tokens} tokens");
    let want = e.embed(text).expect("warm-up");
    e.embed(text).expect("warm-up");
    let runs = 20;
    let count = |f: &dyn Fn()| {
        let (b0, c0) = (BYTES.load(Ordering::Relaxed), CALLS.load(Ordering::Relaxed));
        for _ in 0..runs {
            f();
        }
        ((BYTES.load(Ordering::Relaxed) - b0) / runs, (CALLS.load(Ordering::Relaxed) - c0) / runs)
    };
    let (tok_bytes, tok_calls) = count(&|| {
        e.tokenize(text).expect("tokenize");
    });
    let (bytes, calls) = count(&|| assert_eq!(e.embed(text).expect("embed"), want));
    // The encoder's own share: the call less its tokenization (the tokenizer crate's, fixed).
    let model = bytes.saturating_sub(tok_bytes);
    // One layer's activations: q/k/v, context, attention output, FFN up and down, f32.
    let (h, ffn) = (64, 96);
    let layer = tokens * (3 * h + h + h + ffn + h) * 4;
    eprintln!(
        "one {tokens}-token text: {bytes} bytes in {calls} allocations per call, of which tokenizing {tok_bytes} bytes in {tok_calls}; the encoder's {model} bytes (one layer's activations: {layer} bytes)"
    );
    assert!(model < layer, "{model} bytes allocated per call by the encoder, one layer's activations are {layer}");
}
