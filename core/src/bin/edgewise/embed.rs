//! `edgewise embed`: sentence embeddings for JSON lines, and their speed.
//!
//! Each stdin line is `{"id": ..., "text": "..."}` (`id` any JSON value, echoed back; blank lines
//! skipped); each output line is `{"id": ..., "embedding": [...]}`, in order, with
//! `"truncated": true` added when the text was cut at the model's limit (256 tokens for MiniLM).
//! Lines are embedded `--batch` at a time (packed batches: the same vectors as one at a time). A
//! text over `MAX_INPUT_BYTES` (1 MiB) or a malformed line stops the command with an error naming
//! the line (never its content).
//!
//! `--bench`: texts/s for 16- and 128-token texts (batches of `--batch`, after a warm-up) and peak
//! RSS, with `--json` as one JSON line.
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use edgewise_core::embed::{EmbedOptions, Embedder, EncoderWeights, DEFAULT_EMBEDDING_MODEL};
use edgewise_core::{Error, MAX_INPUT_BYTES};

/// Weight modes of `--weights`.
#[derive(Clone, Copy, ValueEnum)]
enum Weights {
    /// f32 weights (the reference path).
    F32,
    /// Attention-output and FFN-down products and the word embeddings in Q8_0.
    Q8_0,
}

/// Arguments of `edgewise embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// A sentence-transformers folder, a GGUF file (llama.cpp's `bert` architecture) or a catalog id.
    #[arg(long, short, default_value = DEFAULT_EMBEDDING_MODEL)]
    model: String,
    /// Weight mode.
    #[arg(long, value_enum, default_value = "f32")]
    weights: Weights,
    /// Backend: `cpu` (default), `gpu` (wgpu, or an error), `auto` (a hardware GPU that passes
    /// a self-test against the CPU, else the CPU).
    #[arg(long, value_enum, default_value = "cpu")]
    backend: crate::run::BackendArg,
    /// CPU threads (default: all cores; 1..=1024).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Texts per forward pass (1..=4096).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Measure texts/s for 16- and 128-token texts and peak RSS instead of reading stdin.
    #[arg(long)]
    bench: bool,
    /// Seconds per measured length with --bench.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// With --bench: one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Deserialize)]
struct Line {
    #[serde(default)]
    id: serde_json::Value,
    text: String,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    id: &'a serde_json::Value,
    embedding: &'a [f32],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

fn load(a: &EmbedArgs) -> Result<Embedder, Box<dyn std::error::Error>> {
    if let Some(t) = a.threads {
        edgewise_core::backend::set_cpu_threads(t as usize);
    }
    let weights = match a.weights {
        Weights::F32 => EncoderWeights::F32,
        Weights::Q8_0 => EncoderWeights::Q8_0,
    };
    let t0 = Instant::now();
    let e = Embedder::load(&a.model, EmbedOptions { weights, backend: a.backend.into(), ..EmbedOptions::default() })?;
    log::info!("embedding model ready on {} in {:.2?}", e.backend(), t0.elapsed());
    Ok(e)
}

/// Runs `edgewise embed`.
pub fn run(a: EmbedArgs) -> crate::CliResult {
    let t0 = Instant::now();
    let e = load(&a)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    if a.bench {
        return bench(&a, &e, load_ms);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    // A JSON line may spell each byte of its text as a 6-byte `\u` escape.
    let max_line = 6 * MAX_INPUT_BYTES + 1024;
    let mut pending: Vec<(usize, Line)> = Vec::new();
    let flush = |pending: &mut Vec<(usize, Line)>, out: &mut BufWriter<std::io::StdoutLock<'_>>| -> crate::CliResult {
        let texts: Vec<&str> = pending.iter().map(|(_, l)| l.text.as_str()).collect();
        let embs = e.embed_batch(&texts)?;
        for ((n, l), em) in pending.iter().zip(&embs) {
            if em.truncated {
                log::warn!("stdin line {n}: text truncated to {} tokens", e.max_tokens());
            }
            serde_json::to_writer(&mut *out, &Out { id: &l.id, embedding: &em.vector, truncated: em.truncated })?;
            out.write_all(b"\n")?;
        }
        pending.clear();
        Ok(())
    };
    for n in 1usize.. {
        let line = match crate::read_line_bounded(&mut input, max_line)? {
            crate::BoundedLine::Text(t) => t,
            crate::BoundedLine::Eof => break,
            crate::BoundedLine::TooLong(len) => {
                return Err(
                    format!("stdin line {n}: {}", Error::InputTooLarge { max: MAX_INPUT_BYTES, actual: len }).into()
                )
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        // serde's message could quote the input: report the line number only.
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|_| format!("stdin line {n}: expected a JSON object with a string field \"text\""))?;
        if parsed.text.len() > MAX_INPUT_BYTES {
            return Err(format!(
                "stdin line {n}: {}",
                Error::InputTooLarge { max: MAX_INPUT_BYTES, actual: parsed.text.len() }
            )
            .into());
        }
        pending.push((n, parsed));
        if pending.len() >= a.batch as usize {
            flush(&mut pending, &mut out)?;
        }
    }
    flush(&mut pending, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Words for the synthetic bench texts (each one token in MiniLM's vocabulary).
const WORDS: &[&str] = &[
    "red", "shoe", "light", "water", "bottle", "with", "soft", "warm", "jacket", "for", "the", "and", "a", "lamp",
    "desk", "blue", "small", "chair", "wood", "steel",
];

/// A text of exactly `tokens` tokens (`[CLS]`/`[SEP]` included) where the vocabulary allows.
fn text_of(e: &Embedder, tokens: usize, seed: usize) -> Result<String, Box<dyn std::error::Error>> {
    let mut words = Vec::new();
    let mut i = seed;
    loop {
        let t = words.join(" ");
        let n = e.tokenize(&t)?.0.len();
        if n >= tokens {
            return Ok(t);
        }
        words.push(WORDS[i % WORDS.len()]);
        i = i.wrapping_mul(7).wrapping_add(3);
    }
}

/// User + system CPU time of this process so far, in ms.
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage writes the struct it is given; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// Calls timed for the one-text latency of `--bench` (the median is reported).
const SINGLE_RUNS: usize = 21;

fn bench(a: &EmbedArgs, e: &Embedder, load_ms: f64) -> crate::CliResult {
    let threads = a.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |t| t as usize);
    let mut results = Vec::new();
    for len in [16usize, 128] {
        let texts: Vec<String> = (0..a.batch as usize).map(|s| text_of(e, len, s)).collect::<Result<_, _>>()?;
        let tokens = e.tokenize(&texts[0])?.0.len();
        e.embed_batch(&texts)?; // warm-up
        let (mut done, t0) = (0usize, Instant::now());
        while t0.elapsed() < Duration::from_secs_f64(a.seconds.clamp(0.1, 600.0)) || done == 0 {
            e.embed_batch(&texts)?;
            done += texts.len();
        }
        let secs = t0.elapsed().as_secs_f64();
        // One text alone: the median of SINGLE_RUNS calls, back to back (one sample is noise).
        let mut singles = Vec::with_capacity(SINGLE_RUNS);
        let cpu0 = process_cpu_ms();
        for _ in 0..SINGLE_RUNS {
            let one = Instant::now();
            e.embed(&texts[0])?;
            singles.push(one.elapsed().as_secs_f64() * 1e3);
        }
        // CPU time of the process per single text (all threads, spinning included): less at the
        // mercy of other processes than the wall clock on a shared machine.
        let single_cpu_ms = (process_cpu_ms() - cpu0) / SINGLE_RUNS as f64;
        singles.sort_by(f64::total_cmp);
        let single_ms = singles[SINGLE_RUNS / 2];
        results.push(serde_json::json!({"tokens": tokens, "texts_per_s": done as f64 / secs, "texts": done, "seconds": secs, "single_text_ms": single_ms, "single_text_cpu_ms": single_cpu_ms}));
    }
    let peak = crate::run::peak_rss_mb();
    let weights = match a.weights {
        Weights::F32 => "f32",
        Weights::Q8_0 => "q8_0",
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"engine": "edgewise", "model": e.model_id(), "weights": weights, "backend": e.backend(), "threads": threads, "batch": a.batch, "load_ms": load_ms, "results": results, "peak_rss_mb": peak})
        );
    } else {
        println!(
            "edgewise embed bench: {} ({weights}, {}), {threads} threads, batches of {}",
            e.model_id(),
            e.backend(),
            a.batch
        );
        for r in &results {
            println!(
                "  {:>4} tokens: {:>8.1} texts/s   (one text alone: {:.2} ms)",
                r["tokens"],
                r["texts_per_s"].as_f64().unwrap_or(0.0),
                r["single_text_ms"].as_f64().unwrap_or(0.0)
            );
        }
        println!("  load {load_ms:.0} ms, peak RSS {:.1} MiB", peak.unwrap_or(f64::NAN));
    }
    Ok(())
}
