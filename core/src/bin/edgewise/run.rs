//! `edgewise run`, `chat` and `bench`.

use std::io::{BufRead, Write};

use clap::{Args, ValueEnum};
use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::sampling::SamplingParams;
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::structured::tools::{ToolChoice, ToolResult, Tools};
use edgewise_core::structured::OutputConstraint;

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Cpu,
    Gpu,
    Auto,
}

impl From<BackendArg> for BackendPreference {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Cpu => Self::Cpu,
            BackendArg::Gpu => Self::Gpu,
            BackendArg::Auto => Self::Auto,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Text,
    Json,
}

/// Largest token count a flag accepts (what `GenerationParams::max_tokens` allows; contexts are
/// further bounded by the model).
const MAX_TOKENS: usize = 1 << 20;

/// A count flag in `min..=max`: anything else (negative, too large, past `u64`) is a usage
/// error (exit 2) before any work is done, never an abort.
fn count(min: usize, max: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min as u64..=max as u64)
}

/// Model and backend options shared by run, chat and bench.
#[derive(Args)]
pub struct ModelOpts {
    /// A GGUF path or catalog id (default: the catalog's default model).
    #[arg(long)]
    model: Option<String>,
    /// Backend.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// CPU threads (default: all cores; 1..=1024).
    #[arg(long, value_parser = count(1, 1024))]
    threads: Option<usize>,
    /// Context size in tokens (16..=1048576; the model's own maximum applies too).
    #[arg(long, default_value_t = 2048, value_parser = count(16, MAX_TOKENS))]
    ctx: usize,
}

impl ModelOpts {
    /// Loads `--model`, or without it the default: for a chat (`chat = true`) the catalog's
    /// default assistant (an instruct model) when it is on disk and verified and this build runs its
    /// architecture, else the base default model, with a one-line note that it is a base model.
    pub(crate) fn load(&self, chat: bool) -> Result<Engine, Box<dyn std::error::Error>> {
        let id = match &self.model {
            Some(m) => m.clone(),
            None if chat => default_chat_model()?,
            None => crate::DEFAULT_MODEL.to_string(),
        };
        if chat {
            if let Some(note) = base_model_note(&id) {
                eprintln!("{note}");
            }
        }
        let path = crate::resolve_model(&id)?;
        let cfg = EngineConfig { backend: self.backend.into(), threads: self.threads, ..Default::default() };
        let engine = Engine::load(&path, cfg)?;
        let info = engine.info();
        if let Some(r) = &info.fallback_reason {
            eprintln!("note: running on the CPU: {r}");
        }
        log::info!("loaded {} on {} in {:.0} ms", info.architecture, info.backend, info.load_ms);
        Ok(engine)
    }

    pub(crate) fn session_config(&self) -> SessionConfig {
        SessionConfig { max_context: self.ctx, ..Default::default() }
    }
}

/// The model a chat uses without `--model`: the default assistant if it is here, verified and of an
/// architecture this build runs; else the base default model.
fn default_chat_model() -> Result<String, Box<dyn std::error::Error>> {
    let catalog = edgewise_core::catalog::Catalog::builtin()?;
    let assistant = catalog.default_assistant_model();
    let usable = edgewise_core::model::Architecture::from_gguf_name(&assistant.architecture).is_ok()
        && edgewise_core::catalog::edgewise_home()
            .is_ok_and(|home| edgewise_core::download::is_verified_cached(&assistant.artifact_in(&home)));
    Ok(if usable { assistant.id.clone() } else { crate::DEFAULT_MODEL.to_string() })
}

/// One line for a chat on a catalog base model (by id or by its path), naming an instruct model.
fn base_model_note(model: &str) -> Option<String> {
    let catalog = edgewise_core::catalog::Catalog::builtin().ok()?;
    let home = edgewise_core::catalog::edgewise_home().ok();
    let base = catalog.models().iter().find(|m| {
        !m.instruct && (m.id == model || home.as_ref().is_some_and(|h| m.path_in(h) == std::path::Path::new(model)))
    })?;
    Some(format!(
        "note: chatting with {} ({}), a base model that continues text rather than following instructions; \
         no instruct model that this build runs is on disk (`edgewise models fetch {}`, or --model FILE)",
        base.id,
        base.name,
        catalog.default_assistant_model().id
    ))
}

/// Sampling options shared by run and chat.
#[derive(Args)]
pub struct SamplingOpts {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Stop sequence (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Thinking off: the chat template's `enable_thinking=false` (Qwen 3 / 3.5 then answer
    /// without a `<think>` block); templates without thinking ignore it. Not with `--raw`.
    #[arg(long)]
    no_think: bool,
}

impl SamplingOpts {
    pub(crate) fn params(&self) -> GenerationParams {
        GenerationParams {
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repeat_penalty,
                seed: self.seed,
                ..Default::default()
            },
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            enable_thinking: self.no_think.then_some(false),
            ..Default::default()
        }
    }
}

/// Arguments of `edgewise run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    sampling: SamplingOpts,
    /// Feed the prompt as is (no chat template).
    #[arg(long, conflicts_with = "cloud")]
    raw: bool,
    #[command(flatten)]
    cloud: crate::router::CloudOpts,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    constraint: ConstraintOpts,
    #[command(flatten)]
    tools: ToolOpts,
    /// A LoRA adapter (llama.cpp's GGUF adapter format) and its scale, `FILE[:SCALE]` (scale 1
    /// by default); repeatable, the deltas add up. CPU and GPU backends (not qwen35).
    #[arg(long, value_name = "FILE[:SCALE]", conflicts_with = "cloud")]
    lora: Vec<String>,
    /// The prompt.
    prompt: String,
}

/// Tool calling options of `run` and `chat`.
#[derive(Args)]
pub struct ToolOpts {
    /// Offer the tools in FILE (a JSON array of `{name, description, parameters}` or OpenAI
    /// `{"type": "function", "function": {...}}`); answers may be tool calls.
    #[arg(long, value_name = "FILE", conflicts_with = "cloud")]
    tools: Option<std::path::PathBuf>,
    /// auto (text or calls), required (calls), none, or a tool's name (calls of that tool).
    #[arg(long, default_value = "auto", requires = "tools")]
    tool_choice: String,
}

impl ToolOpts {
    pub(crate) fn tools(&self) -> Result<Option<Tools>, Box<dyn std::error::Error>> {
        let Some(p) = &self.tools else { return Ok(None) };
        let text = std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        let mut t = Tools::from_json(&text)?;
        t.choice = match self.tool_choice.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            name => ToolChoice::Named(name.to_string()),
        };
        t.validate()?;
        Ok(Some(t))
    }
}

/// Output constraints of `edgewise run` (at most one).
#[derive(Args)]
#[group(multiple = false)]
pub struct ConstraintOpts {
    /// Output JSON valid against the JSON Schema in FILE (`--format json` adds the parsed `json`).
    #[arg(long, value_name = "FILE", conflicts_with = "cloud")]
    json_schema: Option<std::path::PathBuf>,
    /// Output text matching this regular expression in full.
    #[arg(long, value_name = "RE", conflicts_with = "cloud")]
    regex: Option<String>,
    /// Output text from the Lark grammar in FILE (its `start` rule).
    #[arg(long, value_name = "FILE", conflicts_with = "cloud")]
    grammar: Option<std::path::PathBuf>,
}

impl ConstraintOpts {
    pub(crate) fn constraint(&self) -> Result<OutputConstraint, Box<dyn std::error::Error>> {
        let read =
            |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()));
        Ok(if let Some(p) = &self.json_schema {
            OutputConstraint::JsonSchema(read(p)?)
        } else if let Some(r) = &self.regex {
            OutputConstraint::Regex(r.clone())
        } else if let Some(p) = &self.grammar {
            OutputConstraint::Grammar(read(p)?)
        } else {
            OutputConstraint::Text
        })
    }
}

/// Arguments of `edgewise chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelOpts,
    #[command(flatten)]
    sampling: SamplingOpts,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    cloud: crate::router::CloudOpts,
    #[command(flatten)]
    tools: ToolOpts,
}

/// Arguments of `edgewise bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelOpts,
    /// Prompt length in tokens (1..=1048576; prompt + gen + 16 must fit the model's context).
    #[arg(long, default_value_t = 512, value_parser = count(1, MAX_TOKENS))]
    prompt_tokens: usize,
    /// Tokens to generate (1..=1048576).
    #[arg(long, default_value_t = 128, value_parser = count(1, MAX_TOKENS))]
    gen_tokens: usize,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
    /// Also time the same greedy run under the JSON Schema in FILE (constrained decoding): the
    /// per-token decode overhead, the token trie build and the first-token latency of a new schema.
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    json_schema: Option<std::path::PathBuf>,
    /// With `--json-schema`: time seeded sampling (temperature 0.8, top-k 40, seed 1) instead of
    /// greedy decoding, free and constrained alike.
    #[arg(long, requires = "json_schema")]
    sampled: bool,
    /// With `--json-schema`: free/constrained pairs to run (1..=50; the medians are reported).
    #[arg(long, default_value_t = CONSTRAINED_ROUNDS, value_parser = count(1, 50), requires = "json_schema")]
    rounds: usize,
    /// Also time decode with this LoRA adapter, `FILE[:SCALE]` (repeatable), in the same run:
    /// base and adapted sessions alternate three times and the best of each is reported.
    #[arg(long, value_name = "FILE[:SCALE]", conflicts_with = "compare")]
    lora: Vec<String>,
    /// Then run llama.cpp (llama-cpp-python, `tests/reference/bench_llama.py`) on the same file
    /// with the same threads and lengths, and print both with the ratio ours / llama.cpp.
    #[arg(long)]
    compare: bool,
    /// Python with llama-cpp-python for `--compare`.
    #[arg(long, default_value = "/opt/refenv/bin/python")]
    python: String,
    /// The reference script for `--compare` (this source tree's).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/reference/bench_llama.py"))]
    reference_script: std::path::PathBuf,
}

pub fn run(a: RunArgs) -> crate::CliResult {
    let constraint = a.constraint.constraint()?;
    let tools = a.tools.tools()?;
    if tools.is_some() && a.raw {
        return Err("--tools needs the chat template (drop --raw)".into());
    }
    if a.sampling.no_think && a.raw {
        return Err("--no-think needs the chat template (drop --raw)".into());
    }
    let engine = a.model.load(!a.raw)?;
    if a.cloud.enabled() {
        let json = a.format == Format::Json;
        return crate::router::run_routed(
            engine,
            a.model.session_config(),
            a.sampling.params(),
            &a.cloud,
            &a.prompt,
            json,
        );
    }
    let mut session = engine.new_session(a.model.session_config())?;
    session.set_tools(tools)?;
    session.set_adapters(&load_loras(&engine, &a.lora)?)?;
    let params = GenerationParams { constraint, ..a.sampling.params() };
    let stream = a.format == Format::Text;
    let mut out = std::io::stdout();
    let mut sink = |piece: &str| {
        if stream {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        true
    };
    let g = if a.raw {
        session.complete(&a.prompt, &params, &mut sink)?
    } else {
        session.chat(&a.prompt, &params, &mut sink)?
    };
    match a.format {
        Format::Text => {
            println!();
            for c in &g.tool_calls {
                eprintln!("[tool call {}: {} {}]", c.id, c.name, c.arguments);
            }
            eprintln!(
                "[{} tokens, {:?}, ttft {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s, {}]",
                g.metrics.generated_tokens,
                g.stop_reason,
                g.metrics.ttft_ms,
                g.metrics.prefill_tokens_per_s,
                g.metrics.decode_tokens_per_s,
                engine.info().backend
            );
        }
        Format::Json => {
            let mut j = serde_json::json!({
                "text": g.text,
                "token_ids": g.token_ids,
                "stop_reason": g.stop_reason,
                "mean_logprob": g.mean_logprob,
                "backend": engine.info().backend,
                "metrics": g.metrics,
            });
            // Constrained runs: whether the output is a complete match, and the parsed JSON.
            if let Some(valid) = g.valid {
                j["valid"] = valid.into();
                j["json"] = g.json.clone().unwrap_or(serde_json::Value::Null);
            }
            if session.tools().is_some() {
                j["tool_calls"] = serde_json::to_value(&g.tool_calls)?;
            }
            println!("{j}");
        }
    }
    Ok(())
}

pub fn chat(a: ChatArgs) -> crate::CliResult {
    let engine = a.model.load(true)?;
    let mut cfg = a.model.session_config();
    cfg.system_prompt = a.system.clone();
    if a.cloud.enabled() {
        return crate::router::chat_routed(engine, cfg, a.sampling.params(), &a.cloud);
    }
    let mut session = engine.new_session(cfg)?;
    session.set_tools(a.tools.tools()?)?;
    let params = a.sampling.params();
    let cancel = session.cancel_handle();
    // Ctrl-C cancels the answer being generated; it does not leave the REPL.
    ctrlc::set_handler(move || cancel.cancel())?;
    let banner = format!("edgewise chat on {} ({})", engine.info().architecture, engine.info().backend);
    repl(&banner, |turn| match turn {
        Turn::Reset => session.reset(),
        Turn::Message(msg) => {
            let mut out = std::io::stdout();
            let res = session.chat(msg, &params, &mut |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
                true
            });
            println!();
            match res {
                Ok(g) => {
                    eprintln!(
                        "[{} tokens, {:?}, {:.1} tok/s]",
                        g.metrics.generated_tokens, g.stop_reason, g.metrics.decode_tokens_per_s
                    );
                    tool_loop(&mut session, &params, g.tool_calls);
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
    })
}

/// `chat --tools`: while the answer is tool calls, asks for each call's result on stdin (one
/// line; you play the tool) and sends the results back.
fn tool_loop(
    session: &mut edgewise_core::session::Session,
    params: &GenerationParams,
    mut calls: Vec<edgewise_core::structured::tools::ToolCall>,
) {
    let stdin = std::io::stdin();
    while !calls.is_empty() {
        let mut results = Vec::new();
        for c in &calls {
            eprint!("[tool call {}: {} {}]\nresult> ", c.id, c.name, c.arguments);
            let mut line = String::new();
            if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            results.push(ToolResult { id: c.id.clone(), name: c.name.clone(), content: line.trim().to_string() });
        }
        let mut out = std::io::stdout();
        let res = session.send_tool_results(&results, params, &mut |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
            true
        });
        println!();
        match res {
            Ok(g) => calls = g.tool_calls,
            Err(e) => {
                eprintln!("error: {e}");
                return;
            }
        }
    }
}

/// What the user typed at the chat prompt.
pub(crate) enum Turn<'a> {
    /// `/reset`: forget the conversation.
    Reset,
    /// A message to answer.
    Message(&'a str),
}

/// The chat REPL's loop, shared by `chat` and `chat --cloud`: prints `banner` and the commands,
/// reads lines until `/exit`, `/quit` or end of input, and hands each turn to `turn`.
pub(crate) fn repl(banner: &str, mut turn: impl FnMut(Turn<'_>)) -> crate::CliResult {
    eprintln!("{banner}. /reset clears the conversation, /exit or Ctrl-D leaves; Ctrl-C stops an answer.");
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let line = match crate::read_line_bounded(&mut stdin.lock(), edgewise_core::MAX_INPUT_BYTES)? {
            crate::BoundedLine::Text(t) => t,
            crate::BoundedLine::Eof => break,
            crate::BoundedLine::TooLong(len) => {
                let e = edgewise_core::Error::InputTooLarge { max: edgewise_core::MAX_INPUT_BYTES, actual: len };
                eprintln!("error: {e}");
                continue;
            }
        };
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                turn(Turn::Reset);
                eprintln!("(conversation cleared)");
            }
            msg => turn(Turn::Message(msg)),
        }
    }
    Ok(())
}

/// A `/proc/self/status` figure in MiB (`VmHWM` = peak resident, `VmRSS` = resident now).
fn status_mb(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
pub(crate) fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

/// `bench --json-schema`: the same prompt and sampler settings (`free`) under the schema in
/// `path`, in fresh sessions, alternating with free runs (`rounds` pairs) so that a loaded
/// machine slows both alike; `free_tps` is the first free run's rate (kept for the output).
fn bench_constrained(
    engine: &Engine,
    cfg: &SessionConfig,
    ids: &[u32],
    path: &std::path::Path,
    free: &GenerationParams,
    free_tps: f64,
    rounds: usize,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let schema = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let constraint = OutputConstraint::JsonSchema(schema);
    let params = GenerationParams { constraint: constraint.clone(), ignore_eos: false, ..free.clone() };
    // The process's first constrained request: its first token waits for the token trie.
    let cold = engine.new_session(cfg.clone())?.generate_from(ids.to_vec(), &params, &mut |_| true)?;
    let compiler = engine.constraint_compiler()?;
    let trie_ms = compiler.build_ms();
    let t1 = std::time::Instant::now();
    compiler.compile(&constraint)?;
    let first_mask_ms = t1.elapsed().as_secs_f64() * 1e3;
    let mut pairs = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let f = engine.new_session(cfg.clone())?.generate_from(ids.to_vec(), free, &mut |_| true)?;
        let g = engine.new_session(cfg.clone())?.generate_from(ids.to_vec(), &params, &mut |_| true)?;
        pairs.push((f.metrics.decode_tokens_per_s, g.metrics.decode_tokens_per_s));
        last = Some(g);
    }
    let g = last.ok_or("no constrained round ran")?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let overheads: Vec<f64> =
        pairs.iter().filter(|(f, c)| *f > 0.0 && *c > 0.0).map(|(f, c)| (f / c - 1.0) * 100.0).collect();
    let overhead = if overheads.is_empty() { f64::NAN } else { median(overheads.clone()) };
    let tps = median(pairs.iter().map(|p| p.1).collect());
    Ok(serde_json::json!({
        "gen_tokens": g.metrics.generated_tokens,
        "decode_tokens_per_s": tps,
        "free_decode_tokens_per_s_median": median(pairs.iter().map(|p| p.0).collect()),
        "free_decode_tokens_per_s_first": free_tps,
        "per_token_overhead_pct": overhead,
        "per_round_overhead_pct": overheads,
        "token_trie_ms": trie_ms,
        "schema_first_mask_ms": first_mask_ms,
        "first_request_ttft_ms": cold.metrics.ttft_ms,
        "ttft_ms": g.metrics.ttft_ms,
        "valid": g.valid,
        "stop_reason": g.stop_reason,
    }))
}

/// Free/constrained pairs `bench --json-schema` runs (the medians are reported).
const CONSTRAINED_ROUNDS: usize = 5;

/// Runs the llama.cpp reference with our settings; returns its JSON line.
fn bench_llama_cpp(a: &BenchArgs, model: &std::path::Path) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let threads = a.model.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let out = std::process::Command::new(&a.python)
        .arg(&a.reference_script)
        .args(["--threads", &threads.to_string()])
        .args(["--prompt-tokens", &a.prompt_tokens.to_string()])
        .args(["--gen-tokens", &a.gen_tokens.to_string()])
        .env("EDGEWISE_MODEL", model)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {} {}: {e}", a.python, a.reference_script.display()))?;
    if !out.status.success() {
        return Err(format!("the llama.cpp reference failed ({})", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).ok_or("the llama.cpp reference printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

/// The adapters of `--lora FILE[:SCALE]` flags, loaded for `engine`.
fn load_loras(
    engine: &edgewise_core::engine::Engine,
    specs: &[String],
) -> Result<Vec<(std::sync::Arc<edgewise_core::lora::LoraAdapter>, f32)>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for spec in specs {
        let (path, scale) = match spec.rsplit_once(':') {
            Some((p, s)) if !p.is_empty() => match s.parse::<f32>() {
                Ok(v) if v.is_finite() => (p, v),
                _ => return Err(format!("--lora {spec}: the scale after ':' is not a number").into()),
            },
            _ => (spec.as_str(), 1.0),
        };
        let adapter = engine.load_adapter(path)?;
        log::info!(
            "lora: {} weights, rank {}, alpha {}, {:.1} MiB, scale {scale}",
            adapter.weights(),
            adapter.rank(),
            adapter.alpha(),
            adapter.size_bytes() as f64 / 1048576.0
        );
        out.push((adapter, scale));
    }
    Ok(out)
}

pub fn bench(a: BenchArgs) -> crate::CliResult {
    if a.compare && a.model.threads.is_none() {
        eprintln!("note: --compare without --threads uses all cores for both engines");
    }
    let engine = a.model.load(false)?;
    let rss_after_load = status_mb("VmRSS:");
    let tok = engine.tokenizer();
    // Sized like the llama.cpp reference (tests/reference/bench_llama.py): prompt + gen + 16,
    // checked against the model before the prompt is built (the flags' ranges bound the sum).
    // The prefill chunk is the sessions' default (what an app gets), as llama.cpp runs its own
    // default micro-batch; `EDGEWISE_BENCH_PREFILL_CHUNK` overrides it for experiments.
    let ctx = a.prompt_tokens + a.gen_tokens + 16;
    let chunk = std::env::var("EDGEWISE_BENCH_PREFILL_CHUNK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(SessionConfig::default().prefill_chunk);
    let cfg =
        SessionConfig { max_context: ctx, prefill_chunk: chunk.clamp(1, a.prompt_tokens.max(1)), ..Default::default() };
    cfg.validate(engine.info().context_length)?;
    // A prompt of exactly `prompt_tokens` tokens from ordinary prose.
    let text = "The quick brown fox jumps over the lazy dog while the farmer counts sheep in the valley. "
        .repeat(a.prompt_tokens / 8 + 8);
    let mut ids = tok.encode(&text, tok.add_bos_default())?;
    ids.truncate(a.prompt_tokens.max(1));
    // Warm-up in a throwaway session: the same prompt and two tokens, so the timed run measures
    // the steady state (on a GPU the first pass compiles shaders and autotunes matmuls; its cost
    // is reported as `warmup_ms`). llama.cpp's reference runs a warm-up decode as well.
    let t0 = std::time::Instant::now();
    engine.new_session(cfg.clone())?.generate_from(
        ids.clone(),
        &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(2) },
        &mut |_| true,
    )?;
    let warmup_ms = t0.elapsed().as_secs_f64() * 1e3;
    let loras = load_loras(&engine, &a.lora)?;
    let mut session = engine.new_session(cfg.clone())?;
    let params =
        GenerationParams { max_tokens: a.gen_tokens, ignore_eos: true, ..GenerationParams::greedy(a.gen_tokens) };
    let mut g = session.generate_from(ids.clone(), &params, &mut |_| true)?;
    let mut adapted: Option<edgewise_core::session::Generation> = None;
    if !loras.is_empty() {
        // Same run, alternating base and adapted sessions three times; the best decode of each
        // (the machine's other load only ever slows a run down).
        for round in 0..3 {
            if round > 0 {
                let b = engine.new_session(cfg.clone())?.generate_from(ids.clone(), &params, &mut |_| true)?;
                if b.metrics.decode_tokens_per_s > g.metrics.decode_tokens_per_s {
                    g = b;
                }
            }
            let mut s = engine.new_session(cfg.clone())?;
            s.set_adapters(&loras)?;
            let l = s.generate_from(ids.clone(), &params, &mut |_| true)?;
            if adapted.as_ref().is_none_or(|x| l.metrics.decode_tokens_per_s > x.metrics.decode_tokens_per_s) {
                adapted = Some(l);
            }
        }
    }
    // The overhead per decode step, interleaved: a base and an adapted session, both prefilled
    // with the prompt, then fed the same tokens one at a time, alternately (which goes first
    // alternates too), each step timed; the ratio of the median steps. The machine's other load
    // then hits both sides alike.
    let interleaved = if loras.is_empty() {
        None
    } else {
        let mut base = engine.new_session(cfg.clone())?;
        let mut adapted_s = engine.new_session(cfg.clone())?;
        adapted_s.set_adapters(&loras)?;
        let last = ids.len().saturating_sub(1);
        base.prefill_logits(&ids, last)?;
        adapted_s.prefill_logits(&ids, last)?;
        let (mut tb, mut tl) = (Vec::new(), Vec::new());
        for (i, &t) in g.token_ids.iter().enumerate() {
            for k in 0..2 {
                let lora_turn = (i + k) % 2 == 1;
                let s = if lora_turn { &mut adapted_s } else { &mut base };
                let t0 = std::time::Instant::now();
                s.prefill_logits(&[t], 0)?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                if lora_turn {
                    tl.push(ms)
                } else {
                    tb.push(ms)
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let (mb, ml) = (median(&mut tb), median(&mut tl));
        Some((tb.len(), mb, ml, 100.0 * (ml / mb.max(1e-9) - 1.0)))
    };
    let constrained = match &a.json_schema {
        Some(path) => {
            let (free, free_tps) = if a.sampled {
                let sampled = SamplingParams {
                    temperature: 0.8,
                    top_k: 40,
                    top_p: 1.0,
                    min_p: 0.0,
                    seed: 1,
                    ..Default::default()
                };
                (GenerationParams { sampling: sampled, ..params.clone() }, f64::NAN)
            } else {
                (params.clone(), g.metrics.decode_tokens_per_s)
            };
            let mut c = bench_constrained(&engine, &cfg, &ids, path, &free, free_tps, a.rounds)?;
            c["sampling"] = serde_json::json!(if a.sampled { "temperature 0.8, top-k 40, seed 1" } else { "greedy" });
            c["host_sampling"] =
                serde_json::json!(std::env::var_os(edgewise_core::sampling::HOST_SAMPLING_ENV).is_some());
            Some(c)
        }
        None => None,
    };
    let mut j = serde_json::json!({
        "backend": engine.info().backend,
        "threads": a.model.threads,
        "prompt_tokens": g.metrics.prompt_tokens,
        "gen_tokens": g.metrics.generated_tokens,
        "prefill_tokens_per_s": g.metrics.prefill_tokens_per_s,
        "decode_tokens_per_s": g.metrics.decode_tokens_per_s,
        "ttft_ms": g.metrics.ttft_ms,
        "load_ms": engine.info().load_ms,
        "warmup_ms": warmup_ms,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_load_mb": rss_after_load,
        "context": ctx,
        "prefill_chunk": cfg.prefill_chunk,
        "model_bytes": engine.info().file_size,
    });
    if let Some(c) = constrained {
        if !a.json {
            eprintln!(
                "json schema ({}): decode {:.1} tok/s over {} tokens ({:+.1}% per token, median of {} free/constrained pairs), token trie {:.0} ms (once per model; the first constrained request's ttft {:.0} ms, later {:.0} ms), new schema compile + first mask {:.1} ms",
                c["sampling"].as_str().unwrap_or_default(),
                c["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                c["gen_tokens"],
                a.rounds,
                c["per_token_overhead_pct"].as_f64().unwrap_or(0.0),
                c["token_trie_ms"].as_f64().unwrap_or(0.0),
                c["first_request_ttft_ms"].as_f64().unwrap_or(0.0),
                c["ttft_ms"].as_f64().unwrap_or(0.0),
                c["schema_first_mask_ms"].as_f64().unwrap_or(0.0),
            );
        }
        j["json_schema"] = c;
    }
    if let Some(l) = &adapted {
        let bytes: usize = loras.iter().map(|(x, _)| x.size_bytes()).sum();
        let overhead = 100.0 * (g.metrics.decode_tokens_per_s / l.metrics.decode_tokens_per_s.max(1e-9) - 1.0);
        j["lora"] = serde_json::json!({
            "adapters": loras.len(),
            "rank": loras.iter().map(|(x, _)| x.rank()).max(),
            "weights": loras.iter().map(|(x, _)| x.weights()).sum::<usize>(),
            "adapter_bytes": bytes,
            "prefill_tokens_per_s": l.metrics.prefill_tokens_per_s,
            "decode_tokens_per_s": l.metrics.decode_tokens_per_s,
            "decode_overhead_percent": overhead,
        });
        if let Some((steps, mb, ml, pct)) = interleaved {
            j["lora"]["interleaved"] = serde_json::json!({
                "steps": steps,
                "median_step_ms_without": mb,
                "median_step_ms_with": ml,
                "decode_overhead_percent": pct,
            });
            if !a.json {
                eprintln!("with lora, interleaved step by step: median step {ml:.2} ms vs {mb:.2} ms without ({pct:+.1}%, {steps} steps each)");
            }
        }
        if !a.json {
            eprintln!(
                "with lora ({} weights, {:.1} MiB): prefill {:.1} tok/s, decode {:.1} tok/s ({overhead:+.1}% time per token vs {:.1} without)",
                loras.iter().map(|(x, _)| x.weights()).sum::<usize>(),
                bytes as f64 / 1048576.0,
                l.metrics.prefill_tokens_per_s,
                l.metrics.decode_tokens_per_s,
                g.metrics.decode_tokens_per_s
            );
        }
    }
    if !a.json {
        eprintln!(
            "prefill {:.1} tok/s, decode {:.1} tok/s, ttft {:.0} ms, load {:.0} ms, peak rss {:.0} MiB",
            g.metrics.prefill_tokens_per_s,
            g.metrics.decode_tokens_per_s,
            g.metrics.ttft_ms,
            engine.info().load_ms,
            peak_rss_mb().unwrap_or(0.0)
        );
    }
    if a.compare {
        // Our figures are final: free the model before llama.cpp runs (it is a child process,
        // measured on its own, but the machine's memory is shared).
        let path = engine.info().path.clone();
        drop(session);
        drop(engine);
        let reference = bench_llama_cpp(&a, &path)?;
        if !a.json {
            eprintln!("{:<24} {:>10} {:>10} {:>7}", "figure", "edgewise", "llama.cpp", "ratio");
            for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "peak_rss_mb", "load_ms"] {
                if let (Some(x), Some(y)) = (j[key].as_f64(), reference[key].as_f64()) {
                    let ratio = if y > 0.0 { x / y } else { f64::NAN };
                    eprintln!("{key:<24} {x:>10.1} {y:>10.1} {ratio:>7.2}");
                }
            }
            eprintln!("(ratio = edgewise / llama.cpp: higher is better for tok/s, lower for ms and MiB)");
        }
        j["llama_cpp"] = reference;
    }
    println!("{j}");
    Ok(())
}
