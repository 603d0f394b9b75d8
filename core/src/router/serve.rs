//! An OpenAI-compatible HTTP server over any [`LocalModel`] (what `edgewise serve` runs).
//!
//! Endpoints:
//! - `POST /v1/chat/completions` — `messages` (string content, or an array of `{"type":"text"}`
//!   parts), `stream`, `max_tokens` / `max_completion_tokens`, `temperature`,
//!   `stream_options.include_usage`. Without `stream` it answers one `chat.completion` object;
//!   with `stream: true` it answers `text/event-stream` chunks (`data: {chat.completion.chunk}`)
//!   ending with `data: [DONE]`.
//! - `POST /v1/embeddings` — when an embedding model is attached ([`Server::with_embedder`]):
//!   `input` (a string or an array of at most 2048 strings, each at most
//!   [`crate::MAX_INPUT_BYTES`]; texts beyond the model's token limit are truncated), `model`
//!   (reported back, not checked), `encoding_format` `float` or `base64`, `dimensions` only the model's
//!   own. Answers `{"object":"list","data":[{"object":"embedding","index","embedding"}],
//!   "model","usage":{"prompt_tokens","total_tokens"}}`; it shares the one-at-a-time model slot
//!   and the queue limit with chat.
//! - `GET /v1/models` — the one local model.
//! - `GET /health` — `{"status":"ok"}`.
//!
//! Everything stays on the machine: the server never calls the cloud, unless it was given a
//! privacy router ([`Server::with_router`], `edgewise serve --cloud`), which keeps every request
//! with sensitive data (in messages, tools, calls or tool results) on the device. It binds where it is told
//! (default `127.0.0.1:8080`, loopback only) and refuses a non-loopback address without an API
//! key unless [`ServeConfig::allow_unauthenticated_remote`] says so.
//!
//! # Hostile clients
//!
//! The HTTP/1.1 layer is our own, on `std::net` with [`httparse`] for the request head, so that
//! every limit is ours (tiny_http, used before, has no read timeouts and queued requests
//! behind its fixed workers):
//! - One thread per connection, at most [`ServeConfig::max_connections`]; the accept loop
//!   answers further connections `503` at once and closes them.
//! - The request head must arrive within [`ServeConfig::header_timeout`] and the body within
//!   [`ServeConfig::body_timeout`] (whole-request deadlines, so a byte a second does not keep a
//!   connection); late ones get `408`. Writes time out after [`ServeConfig::write_timeout`].
//! - `/health` and `/v1/models` are answered by the connection's own thread as soon as the head
//!   is read: they never wait behind generation. Generation runs one request at a time (one
//!   model uses all cores); at most [`ServeConfig::max_queued`] requests wait or run, the next
//!   get `503` with `Retry-After`.
//! - Bodies are capped at [`ServeConfig::max_body_bytes`] (`413`) and conversations at
//!   [`ServeConfig::max_messages`] (`400`). After a large request the allocator is asked to
//!   return freed memory to the system (glibc keeps it otherwise).
//! - A client that goes away stops its generation, streaming or not: the socket is checked for
//!   EOF between tokens. (A client that half-closes its side after the request counts as gone.)
//! - Client mistakes (context overflow, `max_tokens` out of range, a conversation the chat
//!   template rejects) are `400` with an OpenAI-style error body that never quotes the prompt.
//! - Every response closes its connection (`Connection: close`).
//!
//! ```no_run
//! # use edgewise_core::router::{serve::{ServeConfig, Server}, LocalModel};
//! # fn demo(model: &(dyn LocalModel + Sync)) -> edgewise_core::Result<()> {
//! let server = Server::bind(ServeConfig::default())?;
//! let stop = server.shutdown_handle(); // stop.shutdown() from another thread ends run()
//! server.run(model)?;
//! # Ok(()) }
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::cloud::ApiKey;
use super::{
    now_ms, ChatMessage, ChatRequest, LocalModel, RequestMeta, Role, Router, StructuredAnswer, StructuredRequest,
};
use crate::structured::tools::{ToolCall, ToolChoice, Tools};
use crate::structured::OutputConstraint;
use crate::{Error, Result};

/// Largest request head (request line and headers) accepted, in bytes.
const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most headers in a request head.
const MAX_HEADERS: usize = 64;
/// Longest a closing connection waits for the client to read its answer and close.
const LINGER: Duration = Duration::from_millis(500);
/// Bodies at least this large make the server hand freed memory back to the system afterwards.
const TRIM_AFTER_BYTES: usize = 256 * 1024;
/// Largest `max_tokens` accepted (the engine's own bound).
const MAX_TOKENS: u32 = 1 << 20;
/// Most texts in one `/v1/embeddings` request (OpenAI's own limit).
const MAX_EMBED_INPUTS: usize = 2048;
/// Longest single blocking read, so connections notice a shutdown.
const READ_SLICE: Duration = Duration::from_millis(250);

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind, e.g. `127.0.0.1:8080` (`:0` picks a free port).
    pub addr: String,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// Allow a non-loopback address without `api_key` (refused by default:
    /// [`Error::UnauthenticatedRemote`]).
    pub allow_unauthenticated_remote: bool,
    /// Largest request body accepted, in bytes (`413` beyond). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Most messages in one chat request (`400` beyond). Default 2048.
    pub max_messages: usize,
    /// Most connections open at once; the next are answered `503` and closed. Default 64.
    pub max_connections: usize,
    /// Most chat requests waiting for the model or generating; the next are answered `503`
    /// with `Retry-After`. Default 16.
    pub max_queued: usize,
    /// Time a client has to send the request line and headers (`408` after). Default 10 s.
    pub header_timeout: Duration,
    /// Time a client has to send the whole body once the headers are in (`408` after).
    /// Default 30 s.
    pub body_timeout: Duration,
    /// Longest one write to a client may block; a client that stops reading is then treated as
    /// gone. Default 30 s.
    pub write_timeout: Duration,
    /// Model id to report; defaults to [`LocalModel::model_id`].
    pub model_id: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            api_key: None,
            allow_unauthenticated_remote: false,
            max_body_bytes: 4 * 1024 * 1024,
            max_messages: 2048,
            max_connections: 64,
            max_queued: 16,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            model_id: None,
        }
    }
}

impl ServeConfig {
    fn validate(&self) -> Result<()> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_messages", self.max_messages),
            ("max_connections", self.max_connections),
            ("max_queued", self.max_queued),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::InvalidParameter { name, reason: "must be > 0".into() });
            }
        }
        let timeouts = [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("write_timeout", self.write_timeout),
        ];
        for (name, t) in timeouts {
            if t.is_zero() {
                return Err(Error::InvalidParameter { name, reason: "must be > 0".into() });
            }
        }
        Ok(())
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Asks the server to stop; [`Server::run`] returns within about 100 ms (plus the time to
    /// finish answers in progress). Requests still waiting for the model get `503`.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A bound server. `run` serves until [`ShutdownHandle::shutdown`].
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    config: ServeConfig,
    stop: Arc<AtomicBool>,
    created: u64,
    counter: AtomicU64,
    generation: Mutex<()>,
    /// Connections being served now.
    active: AtomicUsize,
    /// Chat requests waiting for the model or generating now.
    queued: AtomicUsize,
    /// The model behind `/v1/embeddings`, if any.
    embedder: Option<Arc<crate::embed::Embedder>>,
    /// The privacy router chat requests go through, if any ([`Server::with_router`]).
    router: Option<(Arc<Router>, RequestMeta)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("config", &self.config).finish_non_exhaustive()
    }
}

/// An HTTP error answer with an OpenAI-style body. `message` never holds request text.
#[derive(Debug)]
struct HttpError {
    status: u16,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
    retry_after: Option<u32>,
}

impl HttpError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), param: None, code: None, retry_after: None }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }
    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }
    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    fn busy(message: impl Into<String>) -> Self {
        Self { retry_after: Some(1), ..Self::new(503, "server_error", message) }
    }
    fn timeout(what: &str) -> Self {
        Self::new(408, "invalid_request_error", format!("the request {what} did not arrive in time"))
    }
}

/// How handling a connection ended early.
#[derive(Debug)]
enum Fail {
    /// Answer this error.
    Reply(HttpError),
    /// The client went away (or sent nothing): nothing to answer.
    Gone,
}

impl From<HttpError> for Fail {
    fn from(e: HttpError) -> Self {
        Fail::Reply(e)
    }
}

/// The HTTP status of a failed generation: client mistakes are `400` (OpenAI clients retry
/// `500`s), the rest `500`. Error displays are free of prompt text by the crate's rule.
fn generation_error(e: &Error) -> HttpError {
    match e {
        Error::ContextOverflow { max, requested } => {
            HttpError::bad(format!("the conversation needs {requested} tokens but the model's context holds {max}"))
                .param("messages")
                .code("context_length_exceeded")
        }
        Error::InvalidParameter { name, reason } => {
            HttpError::bad(format!("invalid `{name}`: {reason}")).param(*name).code("invalid_value")
        }
        Error::ChatTemplate { reason } => {
            HttpError::bad(format!("the model's chat template rejected this conversation: {reason}")).param("messages")
        }
        Error::InvalidConstraint { reason } => HttpError::bad(format!("invalid output constraint: {reason}"))
            .param("response_format")
            .code("invalid_value"),
        Error::Busy => HttpError::busy("the model is busy; retry later"),
        e => {
            log::warn!("serve: generation failed: {e}");
            HttpError::new(500, "server_error", format!("local generation failed: {e}"))
        }
    }
}

/// A parsed chat-completions request.
struct Parsed {
    request: ChatRequest,
    stream: bool,
    include_usage: bool,
    /// `response_format` and `tools` / `tool_choice`.
    output: StructuredRequest,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Value,
    /// An assistant message's calls (`[{id, type, function: {name, arguments}}]`).
    #[serde(default)]
    tool_calls: Option<Value>,
    /// A `tool` message's call id.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct WireBody {
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    stream_options: Option<Value>,
    response_format: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    /// vLLM's / llama.cpp server's extra chat-template variables; `enable_thinking` only.
    chat_template_kwargs: Option<Value>,
}

/// `chat_template_kwargs` (vLLM, llama.cpp server): `{"enable_thinking": bool}` reaches the local
/// model's chat template (Qwen 3 / 3.5: `false` answers without thinking); any other key is
/// refused, since no other variable is passed.
fn parse_template_kwargs(v: Option<&Value>) -> std::result::Result<Option<bool>, HttpError> {
    let bad = |m: String| {
        HttpError::bad(format!("`chat_template_kwargs`: {m}")).param("chat_template_kwargs").code("invalid_value")
    };
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let Some(map) = v.as_object() else { return Err(bad("must be an object".into())) };
    let mut enable = None;
    for (k, v) in map {
        match (k.as_str(), v) {
            ("enable_thinking", Value::Bool(b)) => enable = Some(*b),
            ("enable_thinking", _) => return Err(bad("`enable_thinking` must be true or false".into())),
            _ => return Err(bad("only `enable_thinking` is supported".into())),
        }
    }
    Ok(enable)
}

/// OpenAI's `response_format`: `text`, `json_object` (any JSON object) or `json_schema`
/// (`{"json_schema": {"name", "schema", "strict"}}`; the schema is always enforced, `strict` or not).
fn parse_response_format(v: Option<&Value>) -> std::result::Result<OutputConstraint, HttpError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(OutputConstraint::Text) };
    let bad =
        |m: &str| HttpError::bad(format!("`response_format`: {m}")).param("response_format").code("invalid_value");
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(OutputConstraint::Text),
        Some("json_object") => Ok(OutputConstraint::JsonSchema("{\"type\":\"object\"}".into())),
        Some("json_schema") => match v.get("json_schema").and_then(|j| j.get("schema")) {
            Some(schema @ (Value::Object(_) | Value::Bool(_))) => Ok(OutputConstraint::JsonSchema(schema.to_string())),
            _ => Err(bad("`json_schema.schema` must be a JSON Schema object")),
        },
        _ => Err(bad("`type` must be text, json_object or json_schema")),
    }
}

/// OpenAI's `tools` (`[{"type": "function", "function": {name, description, parameters}}]`)
/// and `tool_choice` (`auto`, `none`, `required` or `{"type": "function", "function": {"name"}}`).
fn parse_tools(tools: Option<&Value>, choice: Option<&Value>) -> std::result::Result<Option<Tools>, HttpError> {
    let bad_choice = || {
        HttpError::bad("`tool_choice` must be auto, none, required or a function by name")
            .param("tool_choice")
            .code("invalid_value")
    };
    let Some(list) = tools.filter(|v| !v.is_null()) else {
        return match choice.and_then(Value::as_str) {
            None | Some("none" | "auto") => Ok(None),
            Some(_) => Err(HttpError::bad("`tool_choice` needs `tools`").param("tool_choice")),
        };
    };
    let mut t = Tools::from_json(&list.to_string())
        .map_err(|e| HttpError::bad(format!("`tools`: {e}")).param("tools").code("invalid_value"))?;
    t.choice = match choice.filter(|v| !v.is_null()) {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad_choice()),
        },
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_string()),
            None => return Err(bad_choice()),
        },
    };
    t.validate()
        .map_err(|e| HttpError::bad(format!("`tool_choice`: {e}")).param("tool_choice").code("invalid_value"))?;
    Ok(Some(t))
}

/// An assistant message's `tool_calls` (`[{id, type: "function", function: {name, arguments}}]`,
/// the arguments a JSON string or object) as [`ToolCall`]s. A call without an id gets
/// `call_m<i>_<j>` (message and call index), so its result can still name it.
fn parse_wire_calls(calls: Option<&Value>, i: usize) -> std::result::Result<Vec<ToolCall>, HttpError> {
    let Some(calls) = calls.filter(|c| !c.is_null()) else { return Ok(Vec::new()) };
    let Some(calls) = calls.as_array() else {
        return Err(HttpError::bad(format!("messages[{i}]: `tool_calls` must be an array")).param("messages"));
    };
    let mut out = Vec::with_capacity(calls.len());
    for (j, c) in calls.iter().enumerate() {
        let f = &c["function"];
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            return Err(HttpError::bad(format!("messages[{i}]: a tool call without a function name")).param("messages"));
        };
        let arguments = match f.get("arguments") {
            Some(Value::String(a)) => serde_json::from_str::<Value>(a).map_err(|_| {
                HttpError::bad(format!("messages[{i}]: tool call arguments are not JSON")).param("messages")
            })?,
            Some(v @ Value::Object(_)) => v.clone(),
            _ => json!({}),
        };
        let id = c.get("id").and_then(Value::as_str).map_or_else(|| format!("call_m{i}_{j}"), str::to_string);
        out.push(ToolCall { id, name: name.to_string(), arguments });
    }
    Ok(out)
}

fn parse_body(bytes: &[u8], max_messages: usize) -> std::result::Result<Parsed, HttpError> {
    let body: WireBody = serde_json::from_slice(bytes)
        .map_err(|e| HttpError::bad(format!("invalid JSON body: {}", e.classify_name())))?;
    if body.messages.is_empty() {
        return Err(HttpError::bad("`messages` must not be empty").param("messages"));
    }
    if body.messages.len() > max_messages {
        return Err(HttpError::bad(format!(
            "`messages` holds {} messages; this server accepts at most {max_messages}",
            body.messages.len()
        ))
        .param("messages"));
    }
    let enable_thinking = parse_template_kwargs(body.chat_template_kwargs.as_ref())?;
    let output = StructuredRequest {
        constraint: parse_response_format(body.response_format.as_ref())?,
        tools: parse_tools(body.tools.as_ref(), body.tool_choice.as_ref())?,
    };
    if output.tools.as_ref().is_some_and(|t| t.choice != ToolChoice::None) && !output.constraint.is_text() {
        return Err(HttpError::bad("`response_format` together with `tools` is not supported; send one of them")
            .param("response_format"));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "tool" => Role::Tool,
            "assistant" => Role::Assistant,
            _ => return Err(HttpError::bad(format!("messages[{i}]: unsupported role")).param("messages")),
        };
        let content = match m.content {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Array(parts) => {
                let mut s = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => s.push_str(t),
                        _ => {
                            return Err(HttpError::bad(format!("messages[{i}]: only text content parts are supported"))
                                .param("messages"))
                        }
                    }
                }
                s
            }
            _ => return Err(HttpError::bad(format!("messages[{i}]: invalid content")).param("messages")),
        };
        let mut msg = ChatMessage::new(role, content);
        match role {
            // The calls as the router's own values: the local model's chat template (or the
            // built-in format) prints them, the privacy gate inspects them, the cloud gets them
            // back as OpenAI `tool_calls`.
            Role::Assistant => msg.tool_calls = parse_wire_calls(m.tool_calls.as_ref(), i)?,
            Role::Tool => {
                let Some(id) = m.tool_call_id else {
                    return Err(
                        HttpError::bad(format!("messages[{i}]: a tool message needs `tool_call_id`")).param("messages")
                    );
                };
                msg.tool_call_id = Some(id);
            }
            _ => {}
        }
        messages.push(msg);
    }
    if let Some(t) = body.temperature {
        if !t.is_finite() || !(0.0..=2.0).contains(&t) {
            return Err(HttpError::bad("`temperature` must be between 0 and 2").param("temperature"));
        }
    }
    let (max_tokens, name) = match (body.max_completion_tokens, body.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    if max_tokens.is_some_and(|n| n == 0 || n > MAX_TOKENS) {
        return Err(HttpError::bad(format!("`{name}` must be in 1..={MAX_TOKENS}")).param(name).code("invalid_value"));
    }
    let include_usage =
        body.stream_options.as_ref().and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    Ok(Parsed {
        // The tools are part of the request the router inspects (and sends, on the cloud path).
        request: ChatRequest {
            messages,
            max_tokens,
            temperature: body.temperature,
            tools: output.tools.clone(),
            enable_thinking,
            ..ChatRequest::default()
        },
        stream: body.stream,
        include_usage,
        output,
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// The error class only: serde's message can quote the input.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// A `/v1/embeddings` body: the texts, the `model` named (reported back as given), and whether
/// the vectors go back as base64.
#[allow(clippy::type_complexity)]
fn parse_embeddings(bytes: &[u8], dim: usize) -> std::result::Result<(Vec<String>, Option<String>, bool), HttpError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Input {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    struct Body {
        input: Value,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        encoding_format: Option<String>,
        #[serde(default)]
        dimensions: Option<u64>,
    }
    // serde's messages could quote the input: fixed wording only.
    let body: Body =
        serde_json::from_slice(bytes).map_err(|_| HttpError::bad("the body must be a JSON object with `input`"))?;
    let texts = match serde_json::from_value::<Input>(body.input) {
        Ok(Input::One(s)) => vec![s],
        Ok(Input::Many(v)) => v,
        Err(_) => {
            return Err(HttpError::bad(
                "`input` must be a string or an array of strings (token arrays are not supported)",
            )
            .param("input")
            .code("invalid_value"))
        }
    };
    if texts.is_empty() || texts.len() > MAX_EMBED_INPUTS {
        return Err(HttpError::bad(format!("`input` must hold 1..={MAX_EMBED_INPUTS} texts"))
            .param("input")
            .code("invalid_value"));
    }
    if let Some(t) = texts.iter().find(|t| t.len() > crate::MAX_INPUT_BYTES) {
        return Err(HttpError::bad(Error::InputTooLarge { max: crate::MAX_INPUT_BYTES, actual: t.len() }.to_string())
            .param("input")
            .code("invalid_value"));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(HttpError::bad("`encoding_format` must be \"float\" or \"base64\"")
                .param("encoding_format")
                .code("invalid_value"))
        }
    };
    if body.dimensions.is_some_and(|d| d != dim as u64) {
        return Err(HttpError::bad(format!("this model gives {dim} dimensions"))
            .param("dimensions")
            .code("invalid_value"));
    }
    Ok((texts, body.model, base64))
}

/// Standard base64 (with padding) of `v`'s little-endian f32 bytes: what OpenAI's
/// `encoding_format: "base64"` returns, and what its Python client asks for by default.
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() { ALPHABET[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

fn error_json(e: &HttpError) -> Value {
    json!({ "error": { "message": e.message, "type": e.kind, "param": e.param, "code": e.code } })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        501 => "Not Implemented",
        _ => "Internal Server Error",
    }
}

/// A whole `Connection: close` response.
fn response_bytes(status: u16, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn error_response(e: &HttpError) -> Vec<u8> {
    let extra = e.retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
    response_bytes(e.status, &serde_json::to_vec(&error_json(e)).unwrap_or_default(), &extra)
}

/// Compares without an early exit, so response timing does not reveal how much of a key matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Asks the allocator to hand freed memory back to the system. glibc keeps freed heap memory in
/// its per-thread arenas (and raises its mmap threshold after a large free), so without this
/// the resident size ratchets up with each large request and never comes back.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and trims glibc's own arenas; it takes their locks itself.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Waits until `listener` may have a connection to accept (or `timeout` passes).
#[cfg(unix)]
fn wait_acceptable(listener: &TcpListener, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd that outlives the call; the fd stays open (we borrow the listener).
    unsafe {
        libc::poll(&mut p, 1, ms);
    }
}

#[cfg(not(unix))]
fn wait_acceptable(_listener: &TcpListener, timeout: Duration) {
    std::thread::sleep(timeout.min(Duration::from_millis(10)));
}

/// Answers an excess connection `503` without reading its request, and closes it.
fn refuse(stream: TcpStream) {
    let e = HttpError::busy("too many connections; retry later");
    let _ = stream.set_nonblocking(true);
    // Take what has arrived, so that closing is less likely to reset before the answer is read.
    let mut scratch = [0u8; 4096];
    let _ = (&stream).read(&mut scratch);
    let _ = (&stream).write_all(&error_response(&e));
    let _ = stream.shutdown(Shutdown::Write);
}

/// Counts something while alive.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The parts of a request head we use.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    http10: bool,
    content_length: Option<usize>,
    chunked: bool,
    authorization: Option<Vec<u8>>,
    expect_continue: bool,
}

impl Head {
    fn from_request(req: &httparse::Request<'_, '_>) -> std::result::Result<Self, HttpError> {
        let method = req.method.unwrap_or_default().to_string();
        let path = req.path.unwrap_or_default().split('?').next().unwrap_or("").trim_end_matches('/').to_string();
        let mut head = Head {
            method,
            path,
            http10: req.version == Some(0),
            content_length: None,
            chunked: false,
            authorization: None,
            expect_continue: false,
        };
        for h in req.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = value.parse::<usize>().map_err(|_| HttpError::bad("invalid Content-Length"))?;
                if head.content_length.is_some_and(|m| m != n) {
                    return Err(HttpError::bad("conflicting Content-Length headers"));
                }
                head.content_length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(HttpError::new(
                        501,
                        "invalid_request_error",
                        "only chunked transfer encoding is supported",
                    ));
                }
                head.chunked = true;
            } else if h.name.eq_ignore_ascii_case("authorization") {
                head.authorization = Some(h.value.to_vec());
            } else if h.name.eq_ignore_ascii_case("expect") {
                head.expect_continue = value.eq_ignore_ascii_case("100-continue");
            }
        }
        if head.chunked && head.content_length.is_some() {
            return Err(HttpError::bad("both Content-Length and Transfer-Encoding"));
        }
        Ok(head)
    }
}

/// One client connection: the socket plus bytes read but not yet used.
struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    stop: &'a AtomicBool,
    /// The request was large: free memory afterwards.
    large: bool,
}

impl Conn<'_> {
    /// Reads more bytes into `buf` before `deadline`; `Ok(0)` at EOF.
    fn fill(&mut self, deadline: Instant, what: &str) -> std::result::Result<usize, Fail> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(HttpError::busy("the server is shutting down").into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HttpError::timeout(what).into());
            }
            let slice = (deadline - now).min(READ_SLICE).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(slice)).is_err() {
                return Err(Fail::Gone);
            }
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.large |= self.buf.len() >= TRIM_AFTER_BYTES;
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(Fail::Gone),
            }
        }
    }

    /// Reads the request head. `Err(Gone)` when the client closes without sending one.
    fn read_head(&mut self, timeout: Duration) -> std::result::Result<Head, Fail> {
        let deadline = Instant::now() + timeout;
        let mut scanned: usize = 0;
        loop {
            // Parse only once the blank line that ends the head is in, so that a client sending
            // a byte at a time costs one scan, not one parse per byte.
            let from = scanned.saturating_sub(3);
            if find_head_end(&self.buf[from..]).is_some() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                return match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let head = Head::from_request(&req)?;
                        self.buf.drain(..n);
                        Ok(head)
                    }
                    Ok(httparse::Status::Partial) => Err(HttpError::bad("malformed request head").into()),
                    Err(httparse::Error::TooManyHeaders) => {
                        Err(HttpError::new(431, "invalid_request_error", "too many headers").into())
                    }
                    Err(_) => Err(HttpError::bad("malformed request head").into()),
                };
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(HttpError::new(431, "invalid_request_error", "request head too large").into());
            }
            if self.fill(deadline, "head")? == 0 {
                return Err(Fail::Gone);
            }
        }
    }

    /// Takes one line (without its line ending) of at most `max` bytes.
    fn read_line(&mut self, deadline: Instant, max: usize) -> std::result::Result<Vec<u8>, Fail> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(HttpError::bad("malformed chunked body").into());
            }
            if self.fill(deadline, "body")? == 0 {
                return Err(Fail::Gone);
            }
        }
    }

    /// Moves `n` bytes into `out`.
    fn read_exact_into(&mut self, n: usize, deadline: Instant, out: &mut Vec<u8>) -> std::result::Result<(), Fail> {
        while self.buf.len() < n {
            if self.fill(deadline, "body")? == 0 {
                return Err(Fail::Gone);
            }
        }
        if out.is_empty() {
            // The common case (one Content-Length body): hand over the buffer, do not copy it.
            let rest = self.buf.split_off(n);
            *out = std::mem::replace(&mut self.buf, rest);
        } else {
            out.extend(self.buf.drain(..n));
        }
        Ok(())
    }

    /// Reads the body (`Content-Length` or chunked), at most `max` bytes, before `timeout`.
    fn read_body(&mut self, head: &Head, max: usize, timeout: Duration) -> std::result::Result<Vec<u8>, Fail> {
        let too_large = || HttpError::new(413, "invalid_request_error", format!("body larger than {max} bytes"));
        if head.content_length.is_some_and(|n| n > max) {
            return Err(too_large().into());
        }
        if head.content_length.is_none() && !head.chunked {
            return Err(HttpError::new(411, "invalid_request_error", "a body with Content-Length is required").into());
        }
        if head.expect_continue && !head.http10 {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let deadline = Instant::now() + timeout;
        let mut body = Vec::new();
        if let Some(n) = head.content_length {
            self.read_exact_into(n, deadline, &mut body)?;
        } else {
            loop {
                let line = self.read_line(deadline, 1024)?;
                let size = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
                    .ok_or_else(|| HttpError::bad("malformed chunked body"))?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    for _ in 0..MAX_HEADERS {
                        if self.read_line(deadline, 8192)?.is_empty() {
                            return Ok(body);
                        }
                    }
                    return Err(HttpError::bad("malformed chunked body").into());
                }
                if body.len().saturating_add(size) > max {
                    return Err(too_large().into());
                }
                self.read_exact_into(size, deadline, &mut body)?;
                if !self.read_line(deadline, 2)?.is_empty() {
                    return Err(HttpError::bad("malformed chunked body").into());
                }
            }
        }
        Ok(body)
    }

    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), Fail> {
        self.stream.write_all(bytes).and_then(|()| self.stream.flush()).map_err(|_| Fail::Gone)
    }

    /// Whether the client has closed its side or reset the connection (checked without
    /// blocking; bytes it sends after its request do not count).
    fn client_gone(&self) -> bool {
        peer_closed(&self.stream)
    }

    /// Ends the connection: closes our side, then briefly drains what the client still sends
    /// so that closing does not reset the connection before the client read the answer.
    fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut scratch = [0u8; 16 * 1024];
        let mut drained = 0usize;
        while drained < (1 << 20) {
            let now = Instant::now();
            if now >= deadline || self.stream.set_read_timeout(Some(deadline - now)).is_err() {
                break;
            }
            match (&self.stream).read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Whether the peer has closed its side or reset the connection, checked without blocking
/// (bytes it sent and we did not read do not count).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let gone = match stream.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
    };
    gone | stream.set_nonblocking(false).is_err()
}

/// Where the blank line that ends a request head is, if it is in `buf`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

/// Writes one HTTP/1.1 chunk (or the bare bytes for an HTTP/1.0 client, whose response ends
/// when the connection closes).
fn write_chunk(mut w: &TcpStream, data: &[u8], chunked: bool) -> io::Result<()> {
    if chunked {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        w.write_all(&out)?;
    } else {
        w.write_all(data)?;
    }
    w.flush()
}

impl Server {
    /// Binds `config.addr`. A non-loopback address without an API key is refused
    /// ([`Error::UnauthenticatedRemote`]) unless `config.allow_unauthenticated_remote`.
    pub fn bind(config: ServeConfig) -> Result<Self> {
        config.validate()?;
        let listener = TcpListener::bind(&config.addr)?;
        let addr = listener.local_addr()?;
        if !addr.ip().to_canonical().is_loopback() && config.api_key.is_none() && !config.allow_unauthenticated_remote {
            return Err(Error::UnauthenticatedRemote { addr: addr.to_string() });
        }
        if !addr.ip().to_canonical().is_loopback() && config.api_key.is_none() {
            log::warn!("serve: listening on {addr} without an API key, as allowed explicitly");
        }
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            addr,
            config,
            stop: Arc::new(AtomicBool::new(false)),
            created: now_ms() / 1000,
            counter: AtomicU64::new(0),
            generation: Mutex::new(()),
            active: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            embedder: None,
            router: None,
        })
    }

    /// Sends chat requests through `router` (with `meta` for each): a request goes to the
    /// router's cloud only when its policy allows it and nothing in it is sensitive — the
    /// messages, the tools, the calls and the tool results all count — else the local model
    /// answers. Requests with `response_format` are answered by the local model (the cloud path
    /// has no constraint). Without a router the server never calls the cloud.
    ///
    /// A streamed cloud answer that fails midway is answered again locally; the text already
    /// streamed cannot be taken back, so the client sees both (the router's reset has no wire form).
    pub fn with_router(mut self, router: Arc<Router>, meta: RequestMeta) -> Self {
        self.router = Some((router, meta));
        self
    }

    /// Answers `p`: through the router when there is one (and the request has no
    /// `response_format`), else with the local model.
    fn generate<M: LocalModel + Sync + ?Sized>(
        &self,
        model: &M,
        p: &Parsed,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> Result<StructuredAnswer> {
        match &self.router {
            Some((router, meta)) if p.output.constraint.is_text() => {
                let mut s = |t: &str| sink(t);
                let a = router.answer(&model, &p.request, meta, &mut s)?;
                log::debug!("serve: served by {:?}", a.served_by);
                Ok(StructuredAnswer {
                    answer: super::LocalAnswer {
                        text: a.text,
                        prompt_tokens: a.prompt_tokens,
                        completion_tokens: a.completion_tokens,
                        finish_reason: a.finish_reason,
                    },
                    tool_calls: a.tool_calls,
                    valid: None,
                })
            }
            _ => model.generate_structured(&p.request, &p.output, sink),
        }
    }

    /// Serves `/v1/embeddings` with `embedder` (without one that path answers `404`).
    pub fn with_embedder(mut self, embedder: Arc<crate::embed::Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone() }
    }

    /// Serves until shut down. Blocks the calling thread, which accepts connections; each
    /// connection gets its own scoped thread (at most `config.max_connections`).
    pub fn run<M: LocalModel + Sync + ?Sized>(&self, model: &M) -> Result<()> {
        let model_id = self.config.model_id.clone().unwrap_or_else(|| model.model_id());
        let model_id = model_id.as_str();
        log::info!("serve: listening on http://{}", self.addr);
        std::thread::scope(|s| {
            while !self.stop.load(Ordering::SeqCst) {
                wait_acceptable(&self.listener, Duration::from_millis(100));
                let stream = match self.listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        log::warn!("serve: accept error: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                if self.active.load(Ordering::SeqCst) >= self.config.max_connections {
                    log::debug!("serve: connection limit reached; answering 503");
                    refuse(stream);
                    continue;
                }
                self.active.fetch_add(1, Ordering::SeqCst);
                let counted = Counted(&self.active);
                let spawned = std::thread::Builder::new().name("edgewise-serve".into()).spawn_scoped(s, move || {
                    let _counted = counted;
                    self.connection(stream, model, model_id);
                });
                if let Err(e) = spawned {
                    log::warn!("serve: could not start a connection thread: {e}");
                }
            }
        });
        Ok(())
    }

    fn connection<M: LocalModel + Sync + ?Sized>(&self, stream: TcpStream, model: &M, model_id: &str) {
        // Accepted sockets inherit non-blocking mode from the listener on some systems.
        let ready =
            stream.set_nonblocking(false).and_then(|()| stream.set_write_timeout(Some(self.config.write_timeout)));
        if ready.is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut conn = Conn { stream, buf: Vec::new(), stop: &self.stop, large: false };
        if let Err(Fail::Reply(e)) = self.exchange(&mut conn, model, model_id) {
            if e.status >= 500 {
                log::debug!("serve: answering {}: {}", e.status, e.message);
            }
            let _ = conn.write(&error_response(&e));
        }
        let large = conn.large;
        conn.close();
        if large {
            release_freed_memory();
        }
    }

    /// Reads one request and answers it (errors are answered by the caller).
    fn exchange<M: LocalModel + Sync + ?Sized>(
        &self,
        conn: &mut Conn<'_>,
        model: &M,
        model_id: &str,
    ) -> std::result::Result<(), Fail> {
        let head = conn.read_head(self.config.header_timeout)?;
        log::debug!("serve: {} {}", head.method, head.path);
        if let Some(key) = &self.config.api_key {
            let expected = format!("Bearer {}", key.expose());
            if !head.authorization.as_deref().is_some_and(|a| same_secret(a, expected.as_bytes())) {
                return Err(HttpError::new(401, "authentication_error", "missing or wrong API key").into());
            }
        }
        let ok = |v: Value| response_bytes(200, &serde_json::to_vec(&v).unwrap_or_default(), "");
        match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/v1/models") => conn.write(&ok(json!({
                "object": "list",
                "data": [{ "id": model_id, "object": "model", "created": self.created, "owned_by": "edgewise" }]
            }))),
            ("GET", "/health") => conn.write(&ok(json!({ "status": "ok" }))),
            ("POST", "/v1/chat/completions") => {
                let body = conn.read_body(&head, self.config.max_body_bytes, self.config.body_timeout)?;
                let parsed = parse_body(&body, self.config.max_messages);
                drop(body);
                conn.buf = Vec::new();
                let p = parsed?;
                let _slot = self.queue_slot()?;
                if p.stream {
                    self.stream_completion(conn, model, model_id, p, !head.http10)
                } else {
                    let v = self.completion(conn, model, model_id, p)?;
                    conn.write(&ok(v))
                }
            }
            ("POST", "/v1/embeddings") => {
                let Some(embedder) = self.embedder.as_deref() else {
                    return Err(HttpError::new(
                        404,
                        "invalid_request_error",
                        "no embedding model is loaded (edgewise serve --embedding-model)",
                    )
                    .into());
                };
                let body = conn.read_body(&head, self.config.max_body_bytes, self.config.body_timeout)?;
                let parsed = parse_embeddings(&body, embedder.dim());
                drop(body);
                conn.buf = Vec::new();
                let (texts, model, base64) = parsed?;
                let _slot = self.queue_slot()?;
                let embs = {
                    let _one_at_a_time = self.take_model(conn)?;
                    embedder.embed_batch(&texts).map_err(|e| match e {
                        Error::InputTooLarge { .. } => {
                            HttpError::bad(e.to_string()).param("input").code("invalid_value")
                        }
                        other => HttpError::new(500, "server_error", other.to_string()),
                    })?
                };
                let tokens: usize = embs.iter().map(|e| e.tokens).sum();
                let data: Vec<Value> = embs
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let v = if base64 { json!(base64_f32(&e.vector)) } else { json!(e.vector) };
                        json!({ "object": "embedding", "index": i, "embedding": v })
                    })
                    .collect();
                conn.write(&ok(json!({
                    "object": "list",
                    "data": data,
                    "model": model.unwrap_or_else(|| embedder.model_id().to_owned()),
                    "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
                })))
            }
            (_, "/v1/models" | "/health" | "/v1/chat/completions" | "/v1/embeddings") => {
                Err(HttpError::new(405, "invalid_request_error", "method not allowed").into())
            }
            _ => Err(HttpError::new(404, "invalid_request_error", "unknown path").into()),
        }
    }

    /// A place among the requests waiting for the model, or `503` when they are too many.
    fn queue_slot(&self) -> std::result::Result<Counted<'_>, HttpError> {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.config.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(HttpError::busy("too many requests waiting for the model; retry later"));
        }
        Ok(Counted(&self.queued))
    }

    /// Waits for the model; `Err` when the server stops or the client left meanwhile.
    fn take_model(&self, conn: &Conn<'_>) -> std::result::Result<std::sync::MutexGuard<'_, ()>, Fail> {
        let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        if self.stop.load(Ordering::SeqCst) {
            return Err(HttpError::busy("the server is shutting down").into());
        }
        if conn.client_gone() {
            log::debug!("serve: client left while waiting for the model");
            return Err(Fail::Gone);
        }
        Ok(guard)
    }

    fn next_id(&self) -> String {
        format!("chatcmpl-edgewise-{}-{}", self.created, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn completion<M: LocalModel + Sync + ?Sized>(
        &self,
        conn: &Conn<'_>,
        model: &M,
        model_id: &str,
        p: Parsed,
    ) -> std::result::Result<Value, Fail> {
        let _one_at_a_time = self.take_model(conn)?;
        let mut gone = false;
        let res = self.generate(model, &p, &mut |_| {
            gone = conn.client_gone();
            !gone
        });
        if gone {
            log::debug!("serve: client disconnected; generation stopped");
            return Err(Fail::Gone);
        }
        let StructuredAnswer { answer: ans, tool_calls, .. } = res.map_err(|e| generation_error(&e))?;
        // A thinking model's `<think>…</think>` is `reasoning_content`, never `content`.
        let (reasoning, text) = split_reasoning(&ans.text);
        let (mut message, finish) = if tool_calls.is_empty() {
            (json!({ "role": "assistant", "content": text }), json!(ans.finish_reason.as_openai()))
        } else {
            let calls: Vec<Value> = tool_calls.iter().map(wire_call).collect();
            (json!({ "role": "assistant", "content": Value::Null, "tool_calls": calls }), json!("tool_calls"))
        };
        if let Some(r) = reasoning {
            message["reasoning_content"] = json!(r);
        }
        Ok(json!({
            "id": self.next_id(),
            "object": "chat.completion",
            "created": now_ms() / 1000,
            "model": model_id,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": ans.prompt_tokens,
                "completion_tokens": ans.completion_tokens,
                "total_tokens": ans.prompt_tokens + ans.completion_tokens,
            },
        }))
    }

    /// Streams SSE with hand-written chunked framing, flushing every event. The response head
    /// goes out with the first piece, so an error before any text (context overflow, a
    /// rejected conversation) still gets its proper status.
    fn stream_completion<M: LocalModel + Sync + ?Sized>(
        &self,
        conn: &mut Conn<'_>,
        model: &M,
        model_id: &str,
        p: Parsed,
        chunked: bool,
    ) -> std::result::Result<(), Fail> {
        let id = self.next_id();
        let created = now_ms() / 1000;
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model_id,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            })
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n{}Connection: close\r\n\r\n",
            if chunked { "Transfer-Encoding: chunked\r\n" } else { "" }
        );
        let send = |w: &TcpStream, v: &Value| write_chunk(w, format!("data: {v}\n\n").as_bytes(), chunked);
        let start = |mut w: &TcpStream| -> io::Result<()> {
            w.write_all(head.as_bytes())?;
            send(w, &chunk(json!({ "role": "assistant", "content": "" }), Value::Null))
        };
        let _one_at_a_time = self.take_model(conn)?;
        let mut started = false;
        let mut client_gone = false;
        // With tools, an answer that starts like a call (`{`, `<tool_call>`, `<|python_tag|>`) is
        // held back and sent as `tool_calls` deltas at the end (required and named choices
        // always call); the first pieces wait until the start tells.
        let calls_only =
            p.output.tools.as_ref().is_some_and(|t| matches!(t.choice, ToolChoice::Required | ToolChoice::Named(_)));
        let may_call = p.output.tools.as_ref().is_some_and(|t| t.choice != ToolChoice::None);
        let mut held: Option<String> = calls_only.then(String::new);
        let mut decided = calls_only || !may_call;
        let mut undecided = String::new();
        // A thinking model's `<think>…</think>` goes out as `reasoning_content` deltas; what
        // follows it is the answer proper, a call or text.
        let mut split = ThinkSplit::default();
        let res = {
            let stream = &conn.stream;
            self.generate(model, &p, &mut |piece| {
                let (reasoning, piece) = split.push(piece);
                if !reasoning.is_empty() {
                    let sent = !peer_closed(stream)
                        && (started || start(stream).is_ok())
                        && send(stream, &chunk(json!({ "reasoning_content": reasoning }), Value::Null)).is_ok();
                    started = true;
                    if !sent {
                        client_gone = true;
                        return false;
                    }
                }
                let piece = piece.as_str();
                if piece.is_empty() {
                    return true;
                }
                let mut text = std::borrow::Cow::Borrowed(piece);
                if !decided {
                    undecided.push_str(piece);
                    match starts_a_call(&undecided) {
                        None => {
                            client_gone = peer_closed(stream);
                            return !client_gone;
                        }
                        Some(call) => {
                            decided = true;
                            if call {
                                held = Some(String::new());
                            }
                            text = std::borrow::Cow::Owned(std::mem::take(&mut undecided));
                        }
                    }
                }
                if let Some(h) = held.as_mut() {
                    h.push_str(&text);
                    client_gone = peer_closed(stream);
                    return !client_gone;
                }
                let sent = !peer_closed(stream)
                    && (started || start(stream).is_ok())
                    && send(stream, &chunk(json!({ "content": text }), Value::Null)).is_ok();
                started = true;
                client_gone = !sent;
                sent
            })
        };
        // Still held by the splitter at the end: an unclosed thinking (a length cut) is
        // reasoning, an answer that stopped inside `<think` is text.
        let (reasoning_tail, text_tail) = split.finish();
        undecided.push_str(&text_tail);
        if !decided && !undecided.is_empty() {
            // Ended before its start told (a length cut after `<`): text.
            held = Some(undecided);
        } else if !text_tail.is_empty() {
            held.get_or_insert_with(String::new).push_str(&text_tail);
        }
        if client_gone {
            log::debug!("serve: client disconnected mid-stream; generation stopped");
            return Err(Fail::Gone);
        }
        let (ans, tool_calls) = match res {
            Ok(StructuredAnswer { answer, tool_calls, .. }) => (answer, tool_calls),
            Err(e) if !started => return Err(generation_error(&e).into()),
            Err(e) => {
                let e = generation_error(&e);
                let mut w = &conn.stream;
                let _ = send(w, &error_json(&e)).and_then(|()| write_chunk(w, b"data: [DONE]\n\n", chunked));
                if chunked {
                    let _ = w.write_all(b"0\r\n\r\n").and_then(|()| w.flush());
                }
                return Ok(());
            }
        };
        let mut w = &conn.stream;
        if !started {
            start(w).map_err(|_| Fail::Gone)?;
        }
        let mut events = Vec::new();
        if !reasoning_tail.is_empty() {
            events.push(chunk(json!({ "reasoning_content": reasoning_tail }), Value::Null));
        }
        if !tool_calls.is_empty() {
            let calls: Vec<Value> = tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut w = wire_call(c);
                    w["index"] = json!(i);
                    w
                })
                .collect();
            events.push(chunk(json!({ "tool_calls": calls }), Value::Null));
            events.push(chunk(json!({}), json!("tool_calls")));
        } else {
            if let Some(text) = held.filter(|h| !h.is_empty()) {
                // Held back as a possible call but not one (a length cut): send it as text.
                events.push(chunk(json!({ "content": text }), Value::Null));
            }
            events.push(chunk(json!({}), json!(ans.finish_reason.as_openai())));
        }
        if p.include_usage {
            events.push(json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model_id, "choices": [],
                "usage": { "prompt_tokens": ans.prompt_tokens, "completion_tokens": ans.completion_tokens,
                           "total_tokens": ans.prompt_tokens + ans.completion_tokens },
            }));
        }
        for ev in &events {
            send(w, ev).map_err(|_| Fail::Gone)?;
        }
        write_chunk(w, b"data: [DONE]\n\n", chunked).map_err(|_| Fail::Gone)?;
        if chunked {
            w.write_all(b"0\r\n\r\n").and_then(|()| w.flush()).map_err(|_| Fail::Gone)?;
        }
        Ok(())
    }
}

/// An answer's thinking and the rest: a text that opens with `<think>` thinks up to the first
/// `</think>` (all of it when cut before one); the rest starts after the whitespace that follows.
/// `(None, text)` for an answer that does not think.
fn split_reasoning(text: &str) -> (Option<&str>, &str) {
    match text.strip_prefix(THINK_OPEN) {
        None => (None, text),
        Some(inner) => match inner.split_once(THINK_CLOSE) {
            Some((thinking, rest)) => (Some(thinking), rest.trim_start()),
            None => (Some(inner), ""),
        },
    }
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// [`split_reasoning`] over a stream of pieces: [`ThinkSplit::push`] returns the thinking and
/// the answer text that can be sent now (holding back what may be the start of `<think>` or
/// `</think>`), [`ThinkSplit::finish`] what is left at the end.
#[derive(Default)]
struct ThinkSplit {
    state: ThinkPhase,
    buf: String,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ThinkPhase {
    /// Not yet known whether the answer opens with `<think>`.
    #[default]
    Start,
    /// Inside the thinking.
    Thinking,
    /// After `</think>`, skipping whitespace.
    Gap,
    /// The answer proper (or an answer that does not think).
    After,
}

impl ThinkSplit {
    fn push(&mut self, piece: &str) -> (String, String) {
        let (mut reasoning, mut text) = (String::new(), String::new());
        self.buf.push_str(piece);
        loop {
            match self.state {
                ThinkPhase::Start => {
                    if let Some(rest) = self.buf.strip_prefix(THINK_OPEN) {
                        self.buf = rest.to_string();
                        self.state = ThinkPhase::Thinking;
                    } else if THINK_OPEN.starts_with(self.buf.as_str()) {
                        break;
                    } else {
                        self.state = ThinkPhase::After;
                    }
                }
                ThinkPhase::Thinking => {
                    if let Some(at) = self.buf.find(THINK_CLOSE) {
                        reasoning.push_str(&self.buf[..at]);
                        self.buf = self.buf[at + THINK_CLOSE.len()..].to_string();
                        self.state = ThinkPhase::Gap;
                    } else {
                        // Keep a tail that may be the start of `</think>` (ASCII: a char boundary).
                        let keep =
                            (1..THINK_CLOSE.len()).rev().find(|&k| self.buf.ends_with(&THINK_CLOSE[..k])).unwrap_or(0);
                        let cut = self.buf.len() - keep;
                        reasoning.push_str(&self.buf[..cut]);
                        self.buf.drain(..cut);
                        break;
                    }
                }
                ThinkPhase::Gap => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        self.buf.clear();
                        break;
                    }
                    self.buf = t.to_string();
                    self.state = ThinkPhase::After;
                }
                ThinkPhase::After => {
                    text.push_str(&self.buf);
                    self.buf.clear();
                    break;
                }
            }
        }
        (reasoning, text)
    }

    fn finish(&mut self) -> (String, String) {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            ThinkPhase::Thinking => (rest, String::new()),
            _ => (String::new(), rest),
        }
    }
}

/// Whether an answer that starts with `text` is a tool call in one of the formats (the built-in
/// `{`, Qwen's `<tool_call>`, Llama's `<|python_tag|>`); `None` while the start cannot tell yet.
fn starts_a_call(text: &str) -> Option<bool> {
    const TAGS: [&str; 2] = ["<tool_call>", "<|python_tag|>"];
    let t = text.trim_start();
    if t.is_empty() {
        return None;
    }
    if t.starts_with('{') || TAGS.iter().any(|tag| t.starts_with(tag)) {
        return Some(true);
    }
    if TAGS.iter().any(|tag| tag.starts_with(t)) {
        return None;
    }
    Some(false)
}

/// A call as OpenAI sends it: `{id, type: "function", function: {name, arguments}}`, the
/// arguments as a JSON string.
fn wire_call(c: &crate::structured::tools::ToolCall) -> Value {
    json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments.to_string() } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_bodies() {
        let b = br#"{"model":"x","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},{"role":"assistant","content":null}],"stream":true,"max_completion_tokens":7,"stream_options":{"include_usage":true}}"#;
        let p = parse_body(b, 64).ok().unwrap_or_else(|| panic!("parse"));
        assert!(p.stream && p.include_usage);
        assert_eq!(p.request.max_tokens, Some(7));
        assert_eq!(p.request.messages[0].role, Role::System);
        assert_eq!(p.request.messages[1].content, "hi there");
        assert_eq!(p.request.messages[2].content, "");
        for bad in [
            &br#"{"messages":[]}"#[..],
            br#"{"messages":[{"role":"tool","content":"x"}]}"#,
            b"{",
            br#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
            br#"{"messages":[{"role":"user","content":"x"}],"temperature":9}"#,
        ] {
            assert_eq!(parse_body(bad, 64).err().map(|e| e.status), Some(400));
        }
    }

    #[test]
    fn parses_response_format_tools_and_tool_messages() {
        let b = br#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object"}}}}"#;
        let p = parse_body(b, 64).ok().unwrap_or_else(|| panic!("parse"));
        assert_eq!(p.output.constraint, OutputConstraint::JsonSchema("{\"type\":\"object\"}".into()));
        let b = br#"{"messages":[{"role":"user","content":"add apples"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_0_0","type":"function","function":{"name":"add","arguments":"{\"n\":2}"}}]},{"role":"tool","tool_call_id":"call_0_0","content":"ok"}],"tools":[{"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"n":{"type":"integer"}}}}}],"tool_choice":{"type":"function","function":{"name":"add"}}}"#;
        let p = parse_body(b, 64).ok().unwrap_or_else(|| panic!("parse"));
        assert_eq!(p.output.tools.as_ref().map(|t| &t.choice), Some(&ToolChoice::Named("add".into())));
        // The client's calls and results stay calls and results (not text in the built-in format):
        // the model's template renders them and the privacy gate inspects them.
        let m = &p.request.messages;
        assert_eq!((m[1].role, m[1].content.as_str()), (Role::Assistant, ""));
        assert_eq!(
            m[1].tool_calls,
            vec![ToolCall { id: "call_0_0".into(), name: "add".into(), arguments: json!({"n": 2}) }]
        );
        assert_eq!(
            (m[2].role, m[2].content.as_str(), m[2].tool_call_id.as_deref()),
            (Role::Tool, "ok", Some("call_0_0"))
        );
        assert_eq!(p.request.tools, p.output.tools);
        let tools = r#""tools":[{"type":"function","function":{"name":"add"}}]"#;
        for bad in [
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#.to_string(),
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}"#.into(),
            r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#.into(),
            format!(r#"{{"messages":[{{"role":"user","content":"x"}}],{tools},"tool_choice":{{"type":"function","function":{{"name":"nope"}}}}}}"#),
            format!(r#"{{"messages":[{{"role":"user","content":"x"}}],{tools},"response_format":{{"type":"json_object"}}}}"#),
            r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a b"}}]}"#.into(),
        ] {
            assert_eq!(parse_body(bad.as_bytes(), 64).err().map(|e| e.status), Some(400), "{bad}");
        }
    }

    /// A thinking model's `<think>…</think>` is reasoning, in one piece or streamed in pieces of
    /// any size (a `<` or a partial `</think` inside it included); the answer proper starts after
    /// the whitespace that follows. Before, the thinking went out as `content`.
    #[test]
    fn thinking_is_reasoning_not_content() {
        let cases: [(&str, Option<&str>, &str); 5] = [
            ("<think>\na < b </thi x <think>\n</think>\n\nHello <b>", Some("\na < b </thi x <think>\n"), "Hello <b>"),
            ("<think>\nhm\n</think>\n\n<tool_call>\n{}\n</tool_call>", Some("\nhm\n"), "<tool_call>\n{}\n</tool_call>"),
            ("<think>\ncut by the length", Some("\ncut by the length"), ""),
            ("Plain <think> text", None, "Plain <think> text"),
            ("<th", None, "<th"),
        ];
        for (text, reasoning, rest) in cases {
            assert_eq!(split_reasoning(text), (reasoning, rest), "{text:?}");
            let chars: Vec<char> = text.chars().collect();
            for size in 1..=chars.len() {
                let mut split = ThinkSplit::default();
                let (mut r, mut t) = (String::new(), String::new());
                for piece in chars.chunks(size) {
                    let (a, b) = split.push(&piece.iter().collect::<String>());
                    r.push_str(&a);
                    t.push_str(&b);
                }
                let (a, b) = split.finish();
                r.push_str(&a);
                t.push_str(&b);
                assert_eq!((r.as_str(), t.as_str()), (reasoning.unwrap_or(""), rest), "{text:?} in pieces of {size}");
            }
        }
    }

    /// vLLM's / llama.cpp server's `chat_template_kwargs: {"enable_thinking": false}` reaches the
    /// request; anything else in it is a 400, not silently dropped.
    #[test]
    fn chat_template_kwargs_carry_enable_thinking() {
        let body = |kw: &str| format!(r#"{{"messages":[{{"role":"user","content":"x"}}]{kw}}}"#);
        for (kw, want) in [
            ("", None),
            (r#","chat_template_kwargs":{"enable_thinking":false}"#, Some(false)),
            (r#","chat_template_kwargs":{"enable_thinking":true}"#, Some(true)),
            (r#","chat_template_kwargs":null"#, None),
            (r#","chat_template_kwargs":{}"#, None),
        ] {
            let p = parse_body(body(kw).as_bytes(), 64).ok().unwrap_or_else(|| panic!("{kw}"));
            assert_eq!(p.request.enable_thinking, want, "{kw}");
        }
        for bad in [
            r#","chat_template_kwargs":{"enable_thinking":"no"}"#,
            r#","chat_template_kwargs":{"foo":1}"#,
            r#","chat_template_kwargs":[1]"#,
        ] {
            let e = parse_body(body(bad).as_bytes(), 64).err();
            assert_eq!(e.as_ref().map(|e| (e.status, e.param)), Some((400, Some("chat_template_kwargs"))), "{bad}");
        }
    }

    #[test]
    fn parses_embedding_bodies() {
        let (t, m, b64) = parse_embeddings(br#"{"input":"hi","model":"m"}"#, 4).ok().unwrap_or_default();
        assert_eq!((t, m.as_deref(), b64), (vec!["hi".to_owned()], Some("m"), false));
        let (t, _, b64) = parse_embeddings(br#"{"input":["a",""],"encoding_format":"base64","dimensions":4}"#, 4)
            .ok()
            .unwrap_or_default();
        assert_eq!((t, b64), (vec!["a".to_owned(), String::new()], true));
        // Python: base64.b64encode(struct.pack("<2f", 1.0, -2.5)) == b"AACAPwAAIMA="
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[]), "");
        let many = format!(r#"{{"input":[{}]}}"#, vec!["\"x\""; MAX_EMBED_INPUTS + 1].join(","));
        let huge = format!(r#"{{"input":"{}"}}"#, "a".repeat(crate::MAX_INPUT_BYTES + 1));
        for bad in [
            &br#"{"input":[]}"#[..],
            br#"{"input":[1,2]}"#,
            br#"{"input":"a","encoding_format":"hex"}"#,
            br#"{"input":"a","dimensions":3}"#,
            b"{",
            many.as_bytes(),
            huge.as_bytes(),
        ] {
            assert_eq!(parse_embeddings(bad, 4).err().map(|e| e.status), Some(400));
        }
        let e = parse_embeddings(br#"{"input": CANARY-SECRET}"#, 4).err().map(|e| e.message).unwrap_or_default();
        assert!(!e.contains("CANARY"), "{e}");
    }

    #[test]
    fn serves_embeddings_over_http() {
        struct NoChat;
        impl LocalModel for NoChat {
            fn generate(&self, _: &ChatRequest, _: &mut dyn FnMut(&str) -> bool) -> Result<super::super::LocalAnswer> {
                Err(Error::Busy)
            }
            fn context_limit(&self) -> usize {
                16
            }
            fn count_tokens(&self, t: &str) -> usize {
                t.len()
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/bert-synth/model");
        let e =
            Arc::new(crate::embed::Embedder::from_folder(&dir, crate::embed::EmbedOptions::default()).expect("load"));
        let server = Server::bind(ServeConfig { addr: "127.0.0.1:0".into(), ..ServeConfig::default() })
            .expect("bind")
            .with_embedder(e.clone());
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let post = |body: &str| -> (u16, Value) {
            let mut s = TcpStream::connect(addr).expect("connect");
            write!(s, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("write");
            let mut r = String::new();
            s.read_to_string(&mut r).expect("read");
            let status = r[9..12].parse().unwrap_or(0);
            let json = r.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
            (status, json)
        };
        std::thread::scope(|s| {
            s.spawn(|| server.run(&NoChat));
            let (status, v) = post(r#"{"input":["red shoe","warm jacket",""],"model":"synth"}"#);
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["model"], "synth");
            assert_eq!(v["data"].as_array().map(Vec::len), Some(3));
            let got: Vec<f32> = v["data"][1]["embedding"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect();
            let want = e.embed("warm jacket").expect("embed");
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "same vector as the library");
            let tokens: usize =
                ["red shoe", "warm jacket", ""].iter().map(|t| e.tokenize(t).map(|x| x.0.len()).unwrap_or(0)).sum();
            assert_eq!(v["usage"]["prompt_tokens"], tokens);
            let (status, v) = post(r#"{"input":"x","dimensions":7}"#);
            assert_eq!((status, v["error"]["param"].as_str()), (400, Some("dimensions")));
            stop.shutdown();
        });
    }

    #[test]
    fn json_errors_do_not_echo_input() {
        let e = parse_body(br#"{"messages": CANARY-SECRET}"#, 64).err().map(|e| e.message).unwrap_or_default();
        assert!(!e.contains("CANARY"), "{e}");
    }
}
