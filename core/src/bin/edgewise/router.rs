//! `edgewise privacy-check`, `serve` and `router` (being written).
use clap::Args;

/// Arguments of `edgewise privacy-check`.
///
/// Reads JSON lines `{"id": ..., "text": "..."}` on stdin and writes one JSON line per input, in
/// order: `{"id": ..., "sensitive": bool, "categories": [...]}`. A line that cannot be read gets
/// `{"id": ..., "line": N, "error": "..."}` and processing goes on. The text is never echoed.
#[derive(Args)]
pub struct PrivacyCheckArgs {
    /// Also output the confidence and the byte spans (`start`, `end`, `category`) of each finding.
    #[arg(long)]
    pub details: bool,
}
/// Arguments of `edgewise serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Model id from the catalog, or a path to a GGUF file.
    #[arg(long)]
    pub model: Option<String>,
    /// Address to listen on (loopback by default; use 0.0.0.0 only on a trusted network).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Environment variable holding a key that clients must send as `Authorization: Bearer`.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Connection worker threads (generation runs one request at a time).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
}
/// Arguments of `edgewise router`.
#[derive(Args)]
pub struct RouterArgs {
    #[command(subcommand)]
    cmd: RouterCmd,
}

#[derive(clap::Subcommand)]
enum RouterCmd {
    /// Summarise the router's audit log: decisions by target and reason, sensitive categories,
    /// tokens, estimated cloud cost avoided, egress.
    Stats {
        /// Audit log to read (default: $EDGEWISE_HOME/router/audit.jsonl).
        #[arg(long)]
        log: Option<std::path::PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `edgewise privacy-check`: scans JSON lines from stdin with the on-device PII detector.
pub fn privacy_check(a: PrivacyCheckArgs) -> crate::CliResult {
    use std::io::{BufRead, Write};
    let det = edgewise_core::router::pii::detector();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let result = privacy_check_line(det, &buf, line_no, a.details);
        if let Some(v) = result {
            serde_json::to_writer(&mut out, &v)?;
            out.write_all(b"\n")?;
            // One answer per line as it is ready, so a caller can stream requests through.
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The output line for one input line (`None` for a blank line). Error values never contain the
/// input text: only the id, the line number and a fixed reason.
fn privacy_check_line(
    det: &edgewise_core::router::pii::PiiDetector,
    raw: &[u8],
    line_no: usize,
    details: bool,
) -> Option<serde_json::Value> {
    use serde_json::{json, Value};
    let error = |id: Value, reason: &str| Some(json!({ "id": id, "line": line_no, "error": reason }));
    let Ok(line) = std::str::from_utf8(raw) else {
        return error(Value::Null, "line is not valid UTF-8");
    };
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return error(Value::Null, "line is not valid JSON");
    };
    let Value::Object(obj) = v else {
        return error(Value::Null, "line is not a JSON object");
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let Some(text) = obj.get("text").and_then(Value::as_str) else {
        return error(id, "missing string field \"text\"");
    };
    let report = det.scan(text);
    let categories: Vec<&str> = report.categories.iter().map(|c| c.as_str()).collect();
    let mut o = json!({ "id": id, "sensitive": report.sensitive, "categories": categories });
    if details {
        o["confidence"] = json!(report.confidence);
        o["spans"] = json!(report
            .spans
            .iter()
            .map(|s| json!({ "start": s.start, "end": s.end, "category": s.category.as_str() }))
            .collect::<Vec<_>>());
    }
    Some(o)
}
pub fn serve(a: ServeArgs) -> crate::CliResult {
    // The HTTP server is ready (edgewise_core::router::serve); what is missing is a LocalModel
    // over the real engine. Once `Engine` implements `LocalModel`, this becomes:
    //     let engine = Engine::load(a.model...)?;  serve_with(&engine, &a)
    let what = a.model.as_deref().unwrap_or("the default model");
    Err(format!(
        "cannot serve {what}: `edgewise serve` needs the inference engine, which this build does not \
         have yet; the OpenAI-compatible server itself is ready (edgewise_core::router::serve)"
    )
    .into())
}

/// Runs the OpenAI-compatible server over `model` until interrupted (wired once the engine
/// implements `LocalModel`).
#[allow(dead_code)]
pub fn serve_with(model: &(dyn edgewise_core::router::LocalModel + Sync), a: &ServeArgs) -> crate::CliResult {
    use edgewise_core::router::cloud::ApiKey;
    use edgewise_core::router::serve::{ServeConfig, Server};
    let api_key = match &a.api_key_env {
        Some(var) => Some(ApiKey::from_env(var).ok_or_else(|| format!("environment variable {var} is not set"))?),
        None => None,
    };
    let config = ServeConfig { addr: a.addr.clone(), api_key, workers: a.workers, ..ServeConfig::default() };
    let server = Server::bind(config)?;
    let stop = server.shutdown_handle();
    // Ctrl-C finishes the answers in progress, then stops.
    if let Err(e) = ctrlc::set_handler(move || stop.shutdown()) {
        eprintln!("edgewise: no Ctrl-C handler ({e}); stop the process to quit");
    }
    eprintln!("edgewise: serving {} at http://{}/v1", model.model_id(), server.local_addr());
    server.run(model)?;
    Ok(())
}

pub fn router(a: RouterArgs) -> crate::CliResult {
    match a.cmd {
        RouterCmd::Stats { log, json } => {
            let path = match log {
                Some(p) => p,
                None => edgewise_core::router::audit::default_log_path()
                    .ok_or("cannot locate the audit log: set EDGEWISE_HOME or pass --log")?,
            };
            if !path.exists() {
                return Err(format!("no audit log at {} (nothing routed yet, or pass --log PATH)", path.display()).into());
            }
            let stats = edgewise_core::router::audit::AuditStats::from_path(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("audit log: {}", path.display());
                print!("{}", stats.render_text());
            }
            Ok(())
        }
    }
}
