//! `edgewise privacy-check`, `serve` and `router`, and the routed paths of `run`/`chat --cloud`.
use clap::Args;

/// Arguments of `edgewise privacy-check`.
///
/// Reads JSON lines `{"id": ..., "text": "..."}` on stdin and writes one JSON line per input, in
/// order: `{"id": ..., "sensitive": bool, "categories": [...], "stage": "rules"|"classifier",
/// "second_stage": "present"|"absent"|"invalid"}` (categories come from the rules; a block by the
/// learned second stage has none; `second_stage_failure` says why it failed closed, if it did). A line that cannot be read gets
/// `{"id": ..., "line": N, "error": "..."}` and processing goes on. The text is never echoed.
#[derive(Args)]
pub struct PrivacyCheckArgs {
    /// Also output the confidence, the byte spans (`start`, `end`, `category`) of each finding and
    /// the second stage's `classifier_score` (null when it did not run).
    #[arg(long)]
    pub details: bool,
}
/// Arguments of `edgewise serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: crate::run::ModelOpts,
    /// Default sampling; a request's `temperature` and `max_tokens` override it.
    #[command(flatten)]
    pub sampling: crate::run::SamplingOpts,
    /// Address to listen on (loopback by default). A non-loopback address needs an API key
    /// (`--api-key-env`) or `--allow-unauthenticated-remote`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Environment variable holding a key that clients must send as `Authorization: Bearer`.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Serve on a non-loopback address without an API key (anyone who can reach the address can
    /// use the model; only on a trusted network).
    #[arg(long)]
    pub allow_unauthenticated_remote: bool,
    /// Most connections open at once; further ones are answered 503 (generation itself runs one
    /// request at a time).
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Model id reported by `/v1/models` (default: the model file's name without `.gguf`).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Also serve `POST /v1/embeddings` with this embedding model (a catalog id such as
    /// `all-minilm-l6-v2`, or a sentence-transformers folder).
    #[arg(long, value_name = "ID|PATH")]
    pub embedding_model: Option<String>,
    /// Route chat requests through the privacy router (`--cloud URL --cloud-model NAME`): a
    /// request with personal data anywhere (messages, tools, tool calls, tool results) is
    /// answered on the device.
    #[command(flatten)]
    pub cloud: CloudOpts,
}

/// The environment variable holding the cloud API key for `run`/`chat --cloud`.
pub const CLOUD_KEY_ENV: &str = "EDGEWISE_CLOUD_API_KEY";

/// `--cloud` options of `edgewise run` and `chat`: route through the privacy router, with the
/// real engine as the local model. The API key comes from `EDGEWISE_CLOUD_API_KEY`.
#[derive(Args)]
pub struct CloudOpts {
    /// OpenAI-compatible endpoint, e.g. https://api.openai.com/v1: requests go through the
    /// privacy router (personal data never leaves; the cloud is used only with a reason).
    /// The API key is read from the environment variable EDGEWISE_CLOUD_API_KEY.
    #[arg(long, value_name = "URL", requires = "cloud_model")]
    pub cloud: Option<String>,
    /// Model name to ask the cloud endpoint for.
    #[arg(long, value_name = "NAME", requires = "cloud")]
    pub cloud_model: Option<String>,
    /// Ask for the cloud on every request (the app-requested trigger). Without it a request goes
    /// to the cloud only when it does not fit the local context. Personal data stays local anyway.
    #[arg(long, requires = "cloud")]
    pub escalate: bool,
    /// Directory of the router's audit log (default: $EDGEWISE_HOME/router).
    #[arg(long, value_name = "DIR", requires = "cloud")]
    pub router_dir: Option<std::path::PathBuf>,
    /// Answer on the device when the cloud has not started answering within SECS (retries
    /// included); a cloud answer must also end within max(SECS, 60) s.
    #[arg(long, value_name = "SECS", requires = "cloud", default_value_t = 10.0,
          value_parser = parse_cloud_timeout)]
    pub cloud_timeout: f64,
}

/// `--cloud-timeout`: a finite number of seconds in (0, 3600].
fn parse_cloud_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err("expected seconds, more than 0 and at most 3600".into()),
    }
}

impl CloudOpts {
    /// True when `--cloud` was given.
    pub fn enabled(&self) -> bool {
        self.cloud.is_some()
    }

    fn router(&self) -> Result<edgewise_core::router::Router, Box<dyn std::error::Error>> {
        use edgewise_core::router::cloud::{ApiKey, CloudConfig};
        use edgewise_core::router::{Router, RouterConfig, RouterPolicy};
        let url = self.cloud.as_deref().ok_or("--cloud URL is required")?;
        let model = self.cloud_model.as_deref().ok_or("--cloud-model is required with --cloud")?;
        let dir = match &self.router_dir {
            Some(d) => d.clone(),
            None => edgewise_core::router::audit::default_log_path()
                .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
                .ok_or("cannot locate the router directory: set EDGEWISE_HOME or pass --router-dir")?,
        };
        std::fs::create_dir_all(&dir)?;
        let mut cloud = CloudConfig::new(url, model);
        cloud.api_key = ApiKey::from_env(CLOUD_KEY_ENV);
        let first_byte = std::time::Duration::from_secs_f64(self.cloud_timeout);
        cloud.first_byte_timeout = first_byte;
        cloud.request_timeout = cloud.request_timeout.max(first_byte);
        let config = RouterConfig {
            policy: RouterPolicy::cloud_assist(),
            cloud: Some(cloud),
            queue_path: None,
            ..RouterConfig::local_only(dir)
        };
        Ok(Router::new(config)?)
    }

    fn meta(&self) -> edgewise_core::router::RequestMeta {
        edgewise_core::router::RequestMeta { cloud_requested: self.escalate, local_mean_logprob: None }
    }
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

/// `edgewise privacy-check`: scans JSON lines from stdin with the on-device privacy gate (the
/// rules, then the learned second stage on what they clear).
pub fn privacy_check(a: PrivacyCheckArgs) -> crate::CliResult {
    use std::io::{BufRead, Write};
    let det = edgewise_core::router::pii::gate();
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
    det: &edgewise_core::router::pii::PrivacyGate,
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
    let gate = det.check(text);
    let (stage, second_stage, failure, score) =
        (gate.stage.as_str(), gate.second_stage.as_str(), gate.second_stage_failure, gate.classifier_score);
    let report = gate.into_report();
    let categories: Vec<&str> = report.categories.iter().map(|c| c.as_str()).collect();
    let mut o = json!({ "id": id, "sensitive": report.sensitive, "categories": categories });
    if let Some(reason) = report.fail_closed {
        // Not examined (e.g. longer than the scan limit) and therefore treated as sensitive.
        o["fail_closed"] = json!(reason.as_str());
    }
    if details {
        o["confidence"] = json!(report.confidence);
        o["spans"] = json!(report
            .spans
            .iter()
            .map(|s| json!({ "start": s.start, "end": s.end, "category": s.category.as_str() }))
            .collect::<Vec<_>>());
    }
    // The privacy gate: which stage decided, whether the learned second stage is there, and why it
    // failed closed if it did (fixed words, never text).
    o["stage"] = json!(stage);
    o["second_stage"] = json!(second_stage);
    if let Some(f) = failure {
        o["second_stage_failure"] = json!(f.as_str());
    }
    if details {
        o["classifier_score"] = json!(score);
    }
    Some(o)
}
pub fn serve(a: ServeArgs) -> crate::CliResult {
    // Bind first: a refused address fails before the model loads.
    let mut server = bind_server(&a)?;
    if let Some(m) = &a.embedding_model {
        let e = edgewise_core::embed::Embedder::load(m, edgewise_core::embed::EmbedOptions::default())?;
        eprintln!("edgewise: /v1/embeddings with {} ({} dimensions)", e.model_id(), e.dim());
        server = server.with_embedder(std::sync::Arc::new(e));
    }
    let engine = a.model.load(true)?;
    let local = edgewise_core::router::LocalEngine::new(engine, a.model.session_config(), a.sampling.params())?;
    if a.cloud.enabled() {
        server = server.with_router(std::sync::Arc::new(a.cloud.router()?), a.cloud.meta());
    }
    serve_with(&local, server)
}

/// Binds the server `a` asks for, with a CLI-worded message when the address is refused.
fn bind_server(a: &ServeArgs) -> Result<edgewise_core::router::serve::Server, Box<dyn std::error::Error>> {
    use edgewise_core::router::cloud::ApiKey;
    use edgewise_core::router::serve::{ServeConfig, Server};
    let api_key = match &a.api_key_env {
        Some(var) => Some(ApiKey::from_env(var).ok_or_else(|| format!("environment variable {var} is not set"))?),
        None => None,
    };
    let config = ServeConfig {
        addr: a.addr.clone(),
        api_key,
        allow_unauthenticated_remote: a.allow_unauthenticated_remote,
        max_connections: a.max_connections,
        model_id: a.model_id.clone(),
        ..ServeConfig::default()
    };
    match Server::bind(config) {
        Ok(s) => Ok(s),
        Err(edgewise_core::Error::UnauthenticatedRemote { addr }) => Err(format!(
            "refusing to listen on {addr} without an API key: anyone who can reach it could use the model. \
             Set a key with --api-key-env VAR (clients send `Authorization: Bearer <key>`), listen on \
             127.0.0.1, or pass --allow-unauthenticated-remote on a trusted network"
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Runs the OpenAI-compatible server over `model` until interrupted.
pub fn serve_with(
    model: &(dyn edgewise_core::router::LocalModel + Sync),
    server: edgewise_core::router::serve::Server,
) -> crate::CliResult {
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
                return Err(
                    format!("no audit log at {} (nothing routed yet, or pass --log PATH)", path.display()).into()
                );
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

/// One line describing a routing outcome, for stderr: `[cloud: app_requested]`,
/// `[local: sensitive (email, person_name)]`, `[local after cloud failure: connect]`.
fn route_badge(a: &edgewise_core::router::RoutedAnswer) -> String {
    use edgewise_core::router::Target;
    let reasons: Vec<&str> = a.decision.reasons.iter().map(|r| r.as_str()).collect();
    let mut s = format!("{}: {}", a.decision.target.as_str(), reasons.join(", "));
    if !a.decision.categories.is_empty() {
        let cats: Vec<&str> = a.decision.categories.iter().map(|c| c.as_str()).collect();
        s.push_str(&format!(" ({})", cats.join(", ")));
    }
    if let Some(f) = &a.fallback {
        s.push_str(&format!("; cloud failed ({}), answered locally", f.kind.as_str()));
    }
    if a.served_by == Target::Local && a.decision.target == Target::Cloud && a.fallback.is_none() {
        s.push_str("; answered locally");
    }
    format!("[{s}]")
}

/// Streams an answer to stdout; a cloud failure mid-stream restarts the answer locally.
struct StdoutSink<'a> {
    cancelled: &'a std::sync::atomic::AtomicBool,
    stream: bool,
}

impl edgewise_core::router::AnswerSink for StdoutSink<'_> {
    fn on_text(&mut self, text: &str) -> bool {
        use std::io::Write;
        if self.stream {
            let mut out = std::io::stdout();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        !self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn on_reset(&mut self) {
        if self.stream {
            println!();
            eprintln!("[the cloud failed mid-answer; answering on the device instead]");
        }
    }
}

/// `edgewise run --cloud`: one prompt through the privacy router.
pub fn run_routed(
    engine: edgewise_core::engine::Engine,
    session: edgewise_core::session::SessionConfig,
    params: edgewise_core::session::GenerationParams,
    cloud: &CloudOpts,
    prompt: &str,
    json: bool,
) -> crate::CliResult {
    use edgewise_core::router::{ChatRequest, LocalEngine};
    let router = cloud.router()?;
    let backend = engine.info().backend;
    let local = LocalEngine::new(engine, session, params.clone())?;
    let request = ChatRequest { max_tokens: u32::try_from(params.max_tokens).ok(), ..ChatRequest::user(prompt) };
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let mut sink = StdoutSink { cancelled: &cancelled, stream: !json };
    let out = local.answer(&router, &request, &cloud.meta(), &params, &mut sink)?;
    let a = &out.answer;
    if json {
        let j = serde_json::json!({
            "text": a.text,
            "route": {
                "target": a.decision.target,
                "reasons": a.decision.reasons,
                "categories": a.decision.categories,
            },
            "served_by": a.served_by,
            "fallback": a.fallback,
            "finish_reason": a.finish_reason,
            "prompt_tokens": a.prompt_tokens,
            "completion_tokens": a.completion_tokens,
            "stop_reason": out.local_stop_reason,
            "backend": backend,
            "metrics": out.local_metrics,
        });
        println!("{j}");
    } else {
        println!();
        eprintln!("{} [{} tokens, {:?}]", route_badge(a), a.completion_tokens, a.finish_reason);
    }
    Ok(())
}

/// `edgewise chat --cloud`: the REPL, each turn routed (the whole conversation is scanned).
pub fn chat_routed(
    engine: edgewise_core::engine::Engine,
    mut session: edgewise_core::session::SessionConfig,
    params: edgewise_core::session::GenerationParams,
    cloud: &CloudOpts,
) -> crate::CliResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use edgewise_core::router::{ChatMessage, ChatRequest, LocalEngine, Role};
    let router = cloud.router()?;
    let (arch, backend) = (engine.info().architecture.clone(), engine.info().backend);
    // The system prompt travels in each request (so the router scans it), not in the session.
    let system = session.system_prompt.take();
    let local = Arc::new(LocalEngine::new(engine, session, params.clone())?);
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let (local, cancelled) = (local.clone(), cancelled.clone());
        // Ctrl-C stops the answer being generated (local or cloud); it does not leave the REPL.
        ctrlc::set_handler(move || {
            cancelled.store(true, Ordering::SeqCst);
            local.cancel_running();
        })?;
    }
    let banner =
        format!("edgewise chat on {arch} ({backend}), routed via {}", cloud.cloud.as_deref().unwrap_or_default());
    let mut history: Vec<ChatMessage> = Vec::new();
    crate::run::repl(&banner, |turn| {
        let msg = match turn {
            crate::run::Turn::Reset => return history.clear(),
            crate::run::Turn::Message(msg) => msg,
        };
        let mut messages = Vec::with_capacity(history.len() + 2);
        messages.extend(system.iter().map(|s| ChatMessage::new(Role::System, s.clone())));
        messages.extend(history.iter().cloned());
        messages.push(ChatMessage::new(Role::User, msg));
        let request =
            ChatRequest { messages, max_tokens: u32::try_from(params.max_tokens).ok(), ..ChatRequest::default() };
        cancelled.store(false, Ordering::SeqCst);
        let mut sink = StdoutSink { cancelled: &cancelled, stream: true };
        let res = local.answer(&router, &request, &cloud.meta(), &params, &mut sink);
        println!();
        match res {
            Ok(out) => {
                eprintln!(
                    "{} [{} tokens, {:?}]",
                    route_badge(&out.answer),
                    out.answer.completion_tokens,
                    out.answer.finish_reason
                );
                history.push(ChatMessage::new(Role::User, msg));
                history.push(ChatMessage::new(Role::Assistant, out.answer.text));
            }
            Err(e) => eprintln!("error: {e}"),
        }
    })
}
