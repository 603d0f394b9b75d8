//! `edgewise tokenize`: token ids for lines of text, with the model's exact tokenizer.
//!
//! `--jsonl`: each stdin line is `{"text": "..."}`; each output line is `{"ids": [...]}`, in order
//! (blank input lines are skipped). Without `--jsonl`, each stdin line is raw text and each output
//! line is the ids separated by spaces. Ids include BOS when the model adds it (`--no-bos` to
//! leave it out). Control tokens written in the text (`<start_of_turn>`) become control ids unless
//! `--user-text` is given. A text over `MAX_INPUT_BYTES` (1 MiB) stops the command with an
//! error naming the line (and its size, never its content).
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use edgewise_core::tokenizer::Tokenizer;
use edgewise_core::{Error, MAX_INPUT_BYTES};

/// Arguments of `edgewise tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// A GGUF model file, a tokenizer.json, or a catalog model id.
    #[arg(long, short)]
    model: String,
    /// Read `{"text": ...}` lines and write `{"ids": [...]}` lines.
    #[arg(long)]
    jsonl: bool,
    /// Do not add BOS even when the model adds it by default.
    #[arg(long)]
    no_bos: bool,
    /// Treat the text as typed by a user: control-token strings stay literal text.
    #[arg(long)]
    user_text: bool,
}

#[derive(serde::Deserialize)]
struct Line {
    text: String,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    ids: &'a [u32],
}

pub fn run(a: TokenizeArgs) -> crate::CliResult {
    let path = resolve(&a.model)?;
    let t0 = Instant::now();
    let tok = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
        Tokenizer::from_file(&path)?
    } else {
        Tokenizer::from_gguf_file(&path)?.0
    };
    log::info!("tokenizer ready in {:.2?} ({} tokens)", t0.elapsed(), tok.vocab_size());
    let add_bos = tok.add_bos_default() && !a.no_bos;

    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut input = stdin.lock();
    // A JSON line may spell each byte of its text as a 6-byte `\u` escape.
    let max_line = if a.jsonl { 6 * MAX_INPUT_BYTES + 1024 } else { MAX_INPUT_BYTES };
    for n in 0usize.. {
        let line = match crate::read_line_bounded(&mut input, max_line)? {
            crate::BoundedLine::Text(t) => t,
            crate::BoundedLine::Eof => break,
            crate::BoundedLine::TooLong(len) => {
                return Err(format!(
                    "stdin line {}: {}",
                    n + 1,
                    Error::InputTooLarge { max: MAX_INPUT_BYTES, actual: len }
                )
                .into())
            }
        };
        let text = if a.jsonl {
            if line.trim().is_empty() {
                continue;
            }
            // serde's message could quote the input: report the line number only.
            let parsed: Line = serde_json::from_str(&line)
                .map_err(|_| format!("stdin line {}: expected a JSON object with a string field \"text\"", n + 1))?;
            parsed.text
        } else {
            line
        };
        let ids = if a.user_text { tok.encode_user_text(&text, add_bos) } else { tok.encode(&text, add_bos) }
            .map_err(|e| format!("stdin line {}: {e}", n + 1))?;
        if a.jsonl {
            serde_json::to_writer(&mut out, &Out { ids: &ids })?;
            out.write_all(b"\n")?;
        } else {
            let s: Vec<String> = ids.iter().map(u32::to_string).collect();
            writeln!(out, "{}", s.join(" "))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A path to an existing file (GGUF or tokenizer.json), or a catalog id (fetched if missing).
fn resolve(model: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let p = Path::new(model);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    Ok(edgewise_core::catalog::resolve_model(model)?)
}
