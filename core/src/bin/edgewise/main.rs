//! The `edgewise` command-line tool.

use clap::{Parser, Subcommand};

mod embed;
mod finetune;
mod inspect;
mod models;
mod retail;
mod router;
mod run;
mod tokenize;

/// Edgewise: on-device LLM inference with an offline-first privacy router.
#[derive(Parser)]
#[command(name = "edgewise", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List, fetch, verify and locate models from the catalog.
    Models(models::ModelsArgs),
    /// Show a model file's architecture, tensors and metadata.
    Inspect(inspect::InspectArgs),
    /// Tokenize JSON lines `{"text": ...}` from stdin.
    Tokenize(tokenize::TokenizeArgs),
    /// Sentence embeddings for JSON lines `{"id", "text"}` from stdin (or `--bench`).
    Embed(embed::EmbedArgs),
    /// Rank a catalog (JSON lines) for one shopper's events (JSON lines), on the device.
    Recommend(retail::RecommendArgs),
    /// Search a catalog (JSON lines) by meaning, on the device.
    Search(retail::SearchArgs),
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Interactive multi-turn chat.
    Chat(run::ChatArgs),
    /// Measure prefill/decode speed and memory.
    Bench(run::BenchArgs),
    /// Train a LoRA adapter on JSON Lines examples (burn autodiff on the CPU), or score one with --predict.
    Finetune(finetune::FinetuneArgs),
    /// Check JSON lines `{"id", "text"}` from stdin for personal data.
    PrivacyCheck(router::PrivacyCheckArgs),
    /// Serve an OpenAI-compatible API over the local engine.
    Serve(router::ServeArgs),
    /// Router utilities (audit-log statistics).
    Router(router::RouterArgs),
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// The catalog's default model id.
pub(crate) const DEFAULT_MODEL: &str = "gemma-3-270m";

/// Resolves `--model`: an existing path wins, otherwise a catalog id (fetched if missing).
pub(crate) fn resolve_model(path_or_id: &str) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    Ok(edgewise_core::catalog::resolve_model(path_or_id)?)
}

/// env_logger behind a filter that drops the HTTP stack's debug/trace records whatever
/// `RUST_LOG` says: at `trace` ureq dumps the request bytes, API key included.
struct CliLogger(env_logger::Logger);

impl log::Log for CliLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        edgewise_core::router::cloud::log_allowed(metadata) && self.0.enabled(metadata)
    }
    fn log(&self, record: &log::Record<'_>) {
        if edgewise_core::router::cloud::log_allowed(record.metadata()) {
            self.0.log(record);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

fn init_logging() {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(CliLogger(logger))).is_ok() {
        log::set_max_level(max);
    }
}

/// One line read by [`read_line_bounded`].
pub(crate) enum BoundedLine {
    /// The line, without its `\n` (or `\r\n`).
    Text(String),
    /// The line had this many bytes, more than allowed; it was read past and dropped.
    TooLong(usize),
    /// End of input.
    Eof,
}

/// Reads one line of at most `max` bytes without ever holding more than that: a longer line is
/// consumed up to its end and reported with its length, so one huge line neither fills the
/// memory nor desynchronises the lines that follow.
pub(crate) fn read_line_bounded(r: &mut impl std::io::BufRead, max: usize) -> std::io::Result<BoundedLine> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    let mut seen = false;
    let mut newline = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        seen = true;
        let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        // Room for a trailing "\r\n" beyond `max`.
        if total <= max + 2 {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            buf = Vec::new();
        }
        r.consume(take);
        if end {
            newline = true;
            break;
        }
    }
    if !seen {
        return Ok(BoundedLine::Eof);
    }
    // The line's own length, without its newline.
    let mut len = total - usize::from(newline);
    if total <= max + 2 {
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        len = buf.len();
        if len <= max {
            let text = String::from_utf8(buf)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "stdin is not valid UTF-8"))?;
            return Ok(BoundedLine::Text(text));
        }
    }
    Ok(BoundedLine::TooLong(len))
}

fn main() {
    init_logging();
    let cli = Cli::parse();
    let res: CliResult = match cli.cmd {
        Cmd::Models(a) => models::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Tokenize(a) => tokenize::run(a),
        Cmd::Embed(a) => embed::run(a),
        Cmd::Finetune(a) => finetune::run(a),
        Cmd::Recommend(a) => retail::recommend(a),
        Cmd::Search(a) => retail::search(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Chat(a) => run::chat(a),
        Cmd::Bench(a) => run::bench(a),
        Cmd::PrivacyCheck(a) => router::privacy_check(a),
        Cmd::Serve(a) => router::serve(a),
        Cmd::Router(a) => router::router(a),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
