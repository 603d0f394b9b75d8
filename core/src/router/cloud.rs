//! The cloud path: the one egress function, the transport behind it, and an OpenAI-compatible
//! chat-completions client (streaming and not) with timeouts, bounded retries and typed failures.
//!
//! # The egress invariant
//!
//! Every byte that leaves the device goes through [`prepare_request`]. It builds the JSON body,
//! **re-scans the final body** for personal data with the whole privacy gate (the rules on every
//! string and the raw bytes, then the classifier on the message texts; defense in depth: the
//! policy already checked the request, but the body is what is actually sent) and refuses with [`Error::PolicyDenied`] if
//! anything is found, and writes an `egress` entry (host, path, size, SHA-256 of the body; never
//! the body) to the audit log before returning. Its result, [`OutboundRequest`], has private
//! fields and no public constructor, so a [`Transport`] can only ever be handed bytes that
//! `prepare_request` produced and audited:
//!
//! ```compile_fail,E0451
//! use edgewise_core::router::cloud::OutboundRequest;
//! use std::time::Duration;
//! // Does not compile (E0451, private fields): outside `prepare_request` there is no way to
//! // make one, so a transport cannot be handed bytes that were not checked and audited.
//! let r = OutboundRequest {
//!     url: "https://example.com/v1/chat/completions".into(),
//!     headers: vec![],
//!     body: b"{}".to_vec(),
//!     stream: false,
//!     connect_timeout: Duration::ZERO,
//!     timeout: Duration::ZERO,
//!     body_sha256: String::new(),
//! };
//! ```
//!
//! # Failures
//!
//! [`CloudClient::complete`] retries connection errors, timeouts, 408, 429 and 5xx up to
//! [`CloudConfig::max_retries`] times with exponential backoff, but only while nothing has been
//! streamed to the sink yet. Any other failure, or any failure after text was streamed, is
//! returned as a [`CloudFailure`]; the [`super::Router`] then answers locally (see
//! [`super::AnswerSink`] for how already-streamed text is reset).
//!
//! # Bounds
//!
//! A hostile or broken cloud cannot hold a call or the memory for long:
//!
//! - **Deadlines across retries.** The whole call, all attempts and backoff included, must get a
//!   response head within [`CloudConfig::first_byte_timeout`] (default 10 s; streaming calls)
//!   and finish within [`CloudConfig::request_timeout`] (default 60 s). No attempt starts after
//!   the first-byte deadline; a hanging cloud costs one first-byte timeout, not
//!   `attempts x timeout`.
//! - **Answer budget.** The response body may hold at most [`CloudConfig::max_response_bytes`]
//!   (default 16 MiB, streaming or not), and the answer text at most
//!   `max_tokens x` [`ANSWER_BYTES_PER_TOKEN`] `+` [`ANSWER_SLACK_BYTES`] bytes when the request
//!   sets `max_tokens`. A cloud that sends more fails with [`FailureKind::TooLarge`].
//! - **No ambient proxy.** `HTTP_PROXY`, `ALL_PROXY` and the like are ignored; a proxy is used
//!   only when [`CloudConfig::proxy`] names one, and only for `https` endpoints. An API key is
//!   never sent over plain `http` except to loopback.
//!
//! # Logging
//!
//! Nothing here logs a header, a body or the key. The HTTP stack underneath (ureq) does: at
//! `trace` it dumps the request bytes, `Authorization` included. The `edgewise` CLI drops those
//! records whatever `RUST_LOG` says; a host app that installs its own logger should filter with
//! [`log_allowed`] (or cap the `ureq`, `ureq_proto` and `rustls` targets at `info`).

use std::fmt;
use std::io::{self, BufReader, Read};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::audit::{AuditEvent, AuditLog};
use super::{ChatRequest, FinishReason};
use crate::{Error, Result};

mod sse;

use sse::{SseError, SseEvent, SseReader};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// An API key. `Debug` and `Display` print `ApiKey(<redacted>)`; the key is only ever written
/// into the `Authorization` header of an [`OutboundRequest`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// Reads the key from environment variable `var` (`None` when unset or empty).
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().filter(|k| !k.trim().is_empty()).map(|k| Self(k.trim().to_string()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Bytes of answer text allowed per requested token (`max_tokens`) before a cloud answer counts
/// as over budget. Tokens average about 4 bytes of English text; 16 leaves room for code,
/// whitespace runs and non-Latin scripts.
pub const ANSWER_BYTES_PER_TOKEN: usize = 16;

/// Bytes of answer text allowed on top of `max_tokens x` [`ANSWER_BYTES_PER_TOKEN`] (a few long
/// tokens under a small `max_tokens`).
pub const ANSWER_SLACK_BYTES: usize = 256;

/// The most answer text (bytes) accepted for a request asking for `max_tokens` tokens.
pub fn answer_budget(max_tokens: u32) -> usize {
    (max_tokens as usize).saturating_mul(ANSWER_BYTES_PER_TOKEN).saturating_add(ANSWER_SLACK_BYTES)
}

/// Log targets of the HTTP stack under the cloud client. At `debug`/`trace` they may print
/// request bytes, including the `Authorization` header.
pub const HTTP_LOG_TARGETS: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

/// Whether a logger may emit a record with `metadata`: `false` for `debug` and `trace` records of
/// the HTTP stack ([`HTTP_LOG_TARGETS`]), which can contain the API key (ureq dumps the request
/// bytes at `trace`). A host app that installs its own logger should call this in
/// `Log::enabled`; the `edgewise` CLI does.
pub fn log_allowed(metadata: &log::Metadata<'_>) -> bool {
    if metadata.level() <= log::Level::Info {
        return true;
    }
    let target = metadata.target();
    !HTTP_LOG_TARGETS
        .iter()
        .any(|t| target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

/// The cloud endpoint and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `https://api.openai.com/v1`;
    /// requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Model name sent in the body.
    pub model: String,
    /// Bearer token, if the endpoint needs one.
    pub api_key: Option<ApiKey>,
    /// Stream answers (SSE) rather than wait for the whole answer.
    pub stream: bool,
    /// TCP/TLS connect timeout (one connect; also bounded by the deadlines below).
    pub connect_timeout: Duration,
    /// Deadline for a streamed answer to start (the response head), counted from the start of
    /// the call across all attempts and backoff. No attempt starts after it; when it passes the
    /// call fails with [`FailureKind::Timeout`]. Clipped to `request_timeout`. Not applied to
    /// non-streaming calls, whose head only comes with the whole answer.
    pub first_byte_timeout: Duration,
    /// Deadline for the whole call, from the start to the last byte of the answer, across all
    /// attempts and backoff.
    pub request_timeout: Duration,
    /// Retries after the first attempt (so at most `1 + max_retries` attempts).
    pub max_retries: u32,
    /// First backoff; doubles on each retry.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Largest response body accepted, streaming or not, in bytes (everything the server sends
    /// after the head: events, comments, keep-alives). More is [`FailureKind::TooLarge`].
    pub max_response_bytes: usize,
    /// Allow plain `http://` to hosts other than loopback, without an API key (off: the text
    /// would travel unencrypted). A key is never sent over plain http except to loopback.
    pub allow_insecure_http: bool,
    /// Proxy for the cloud connection (`http://host:port`, `socks5://host:port`), only for
    /// `https` endpoints (the proxy then sees the host name, not the request). `None` (the
    /// default): connect directly. Proxy environment variables (`HTTP_PROXY`, `ALL_PROXY`, ...)
    /// are never used.
    pub proxy: Option<String>,
}

impl CloudConfig {
    /// A config with default timeouts (5 s connect, 10 s to the first byte and 60 s for the
    /// whole call, retries included), 2 retries, a 16 MiB response cap, no proxy, streaming on.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            stream: true,
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_retries: 2,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            max_response_bytes: 16 * 1024 * 1024,
            allow_insecure_http: false,
            proxy: None,
        }
    }

    /// Checks the URL, model and limits.
    pub fn validate(&self) -> Result<()> {
        let ep = Endpoint::parse(&self.base_url)?;
        if ep.scheme == "http" && !ep.is_loopback() {
            if self.api_key.is_some() {
                return Err(Error::InvalidParameter {
                    name: "base_url",
                    reason: "an API key is never sent over plain http except to loopback (use https)".into(),
                });
            }
            if !self.allow_insecure_http {
                return Err(Error::InvalidParameter {
                    name: "base_url",
                    reason: "plain http is only allowed to loopback (set allow_insecure_http)".into(),
                });
            }
        }
        if let Some(proxy) = &self.proxy {
            validate_proxy(proxy, &ep)?;
        }
        if self.model.trim().is_empty() {
            return Err(Error::InvalidParameter { name: "model", reason: "empty".into() });
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() || self.first_byte_timeout.is_zero() {
            return Err(Error::InvalidParameter { name: "request_timeout", reason: "timeouts must be > 0".into() });
        }
        if self.max_retries > 10 {
            return Err(Error::InvalidParameter { name: "max_retries", reason: "at most 10".into() });
        }
        if self.max_response_bytes < 1024 {
            return Err(Error::InvalidParameter { name: "max_response_bytes", reason: "at least 1024".into() });
        }
        Ok(())
    }
}

/// A proxy must parse, carry no credentials (they would show in `Debug` and logs) and only serve
/// `https` endpoints: through a proxy a plain-http request, key included, is readable by it.
fn validate_proxy(proxy: &str, ep: &Endpoint) -> Result<()> {
    let bad = |reason: &str| Error::InvalidParameter { name: "proxy", reason: reason.into() };
    if proxy.contains('@') {
        return Err(bad("credentials in the proxy URL are not supported"));
    }
    if ep.scheme != "https" {
        return Err(bad("a proxy is only used for https endpoints"));
    }
    ureq::Proxy::new(proxy)
        .map(|_| ())
        .map_err(|_| bad("not a valid proxy URL (http://, https://, socks4://, socks5://)"))
}

/// A parsed `http(s)://host[:port][/path]` URL (enough for an API base URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port (80/443 by default).
    pub port: u16,
    /// Path without a trailing `/` (may be empty).
    pub path: String,
}

impl Endpoint {
    /// Parses `url`; no query strings, fragments or user info.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidParameter { name: "base_url", reason: reason.into() };
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("scheme must be http or https")),
        };
        if rest.contains(['?', '#', '@', ' ']) {
            return Err(bad("query, fragment, user info and spaces are not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
            let (h, after) = stripped.split_once(']').ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("invalid authority")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad("invalid port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(Self { scheme, host, port, path: path.trim_end_matches('/').to_string() })
    }

    /// True for `localhost`, `127.0.0.0/8` and `::1`.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    fn url_for(&self, path: &str) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{}://{}:{}{}{}", self.scheme, host, self.port, self.path, path)
    }
}

// ---------------------------------------------------------------------------------------------
// The one egress point
// ---------------------------------------------------------------------------------------------

/// A request ready to leave the device. Only [`prepare_request`] can build one (private fields,
/// no constructor, not `Clone`), so whatever a [`Transport`] sends was produced, re-checked and
/// audited there. `Debug` hides the body and the key.
pub struct OutboundRequest {
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    stream: bool,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    timeout: Duration,
    proxy: Option<String>,
    body_sha256: String,
}

impl OutboundRequest {
    /// Full URL (`POST`).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Headers to send, including `Authorization` when a key is configured.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    /// The exact body bytes to send (JSON).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    /// True when the answer is requested as an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }
    /// Connect timeout the transport must apply.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Time allowed from the start of [`Transport::send`] until the response head (what is
    /// left of [`CloudConfig::first_byte_timeout`] for this attempt). The transport must
    /// enforce it.
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }
    /// Total time allowed for the exchange, including reading the whole response body (what is
    /// left of [`CloudConfig::request_timeout`] for this attempt). The transport must enforce it
    /// (the client also checks it between reads).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The proxy to connect through ([`CloudConfig::proxy`]); `None`: connect directly, and
    /// ignore any proxy environment variables.
    pub fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }
    /// Hex SHA-256 of [`OutboundRequest::body`], as recorded in the audit log.
    pub fn body_sha256(&self) -> &str {
        &self.body_sha256
    }
}

impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundRequest")
            .field("url", &self.url)
            .field("body", &format_args!("<{} bytes, sha256 {}>", self.body.len(), self.body_sha256))
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Builds the chat-completions request for `request`, re-checks the final body for personal data
/// and records an `egress` audit entry. **Every byte that leaves the device goes through here.**
///
/// Errors: [`Error::PolicyDenied`] when the body contains personal data (an `egress_denied`
/// entry with the categories is audited), [`Error::InvalidParameter`] for a bad config, and any
/// audit-log failure (nothing unaudited is sent).
pub fn prepare_request(
    config: &CloudConfig,
    request: &ChatRequest,
    stream: bool,
    audit: &AuditLog,
) -> Result<OutboundRequest> {
    config.validate()?;
    request.validate()?;
    let ep = Endpoint::parse(&config.base_url)?;

    let messages: Vec<Value> = request.wire_messages().iter().map(wire_message).collect();
    let mut body = json!({ "model": config.model, "messages": messages, "stream": stream });
    if let (Some(obj), Some(tools)) = (body.as_object_mut(), &request.tools) {
        obj.insert("tools".into(), wire_tools(tools));
        obj.insert("tool_choice".into(), wire_tool_choice(&tools.choice));
    }
    if let Some(obj) = body.as_object_mut() {
        if let Some(n) = request.max_tokens {
            obj.insert("max_tokens".into(), json!(n));
        }
        if let Some(t) = request.temperature {
            obj.insert("temperature".into(), json!(t));
        }
    }
    let bytes = serde_json::to_vec(&body)
        .map_err(|_| Error::InvalidParameter { name: "request", reason: "could not serialize".into() })?;

    // Defense in depth: re-scan what will actually be sent, as the server will read it (every
    // string in the parsed body, and their concatenation) and as raw bytes.
    let reparsed: Value = serde_json::from_slice(&bytes)
        .map_err(|_| Error::InvalidParameter { name: "request", reason: "body does not round-trip".into() })?;
    let mut strings = Vec::new();
    collect_strings(&reparsed, &mut strings);
    let raw = String::from_utf8_lossy(&bytes);
    let mut scan = super::policy::scan_texts(strings.iter().map(String::as_str));
    if !scan.sensitive {
        scan = super::policy::scan_texts([raw.as_ref()]);
    }
    if !scan.sensitive {
        // The whole gate (rules, then the classifier) on the message texts as sent, each and
        // together, as the router's decision checked them: the last word before bytes leave.
        // With tools: each tool's and each call's text too, read back from the body.
        let mut texts: Vec<String> = reparsed
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| ms.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).map(str::to_string).collect())
            .unwrap_or_default();
        match body_tool_texts(&reparsed) {
            Some(t) => {
                texts.extend(t);
                scan = super::policy::gate_texts(texts.iter().map(String::as_str));
            }
            // Something in the body the gate cannot read: it does not leave.
            None => scan.sensitive = true,
        }
    }
    if scan.sensitive {
        let cats: Vec<String> = scan.categories.iter().map(|c| c.as_str().to_string()).collect();
        audit.record(&AuditEvent::egress_denied(&ep, cats.clone()))?;
        log::warn!("router: refused an outbound body with personal data (categories: {})", cats.join(","));
        return Err(Error::PolicyDenied {
            reason: format!("outbound body contains personal data ({})", cats.join(", ")),
        });
    }

    let sha = hex::encode(Sha256::digest(&bytes));
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Accept".to_string(), if stream { "text/event-stream" } else { "application/json" }.to_string()),
    ];
    if let Some(key) = &config.api_key {
        headers.push(("Authorization".to_string(), format!("Bearer {}", key.expose())));
    }
    audit.record(&AuditEvent::egress(&ep, "/chat/completions", bytes.len(), &sha, stream))?;
    Ok(OutboundRequest {
        url: ep.url_for("/chat/completions"),
        headers,
        body: bytes,
        stream,
        connect_timeout: config.connect_timeout,
        first_byte_timeout: if stream { config.first_byte_timeout } else { config.request_timeout }
            .min(config.request_timeout),
        timeout: config.request_timeout,
        proxy: config.proxy.clone(),
        body_sha256: sha,
    })
}

/// One message as OpenAI's chat completions take it: an assistant's calls as `tool_calls`
/// (arguments as a JSON string), a tool result with its `tool_call_id`.
fn wire_message(m: &super::ChatMessage) -> Value {
    let mut v = json!({ "role": m.role.as_str(), "content": m.content });
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments.to_string() } }))
            .collect();
        v["tool_calls"] = Value::Array(calls);
        if m.content.is_empty() {
            v["content"] = Value::Null;
        }
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

fn wire_tools(tools: &crate::structured::tools::Tools) -> Value {
    Value::Array(
        tools
            .tools
            .iter()
            .map(|t| json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": t.parameters } }))
            .collect(),
    )
}

fn wire_tool_choice(choice: &crate::structured::tools::ToolChoice) -> Value {
    use crate::structured::tools::ToolChoice;
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Named(n) => json!({ "type": "function", "function": { "name": n } }),
    }
}

/// The text of the tools and calls in an outbound body, as [`super::ChatRequest::tool_parts`]
/// reads them from a request (call arguments parsed back from their JSON string). `None` when
/// some of it cannot be read (arguments that are not JSON, nesting too deep).
fn body_tool_texts(body: &Value) -> Option<Vec<String>> {
    let mut req = super::ChatRequest::default();
    if let Some(tools) = body.get("tools") {
        req.tools = Some(crate::structured::tools::Tools::from_json(&tools.to_string()).ok()?);
    }
    for m in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let mut msg = super::ChatMessage::new(super::Role::Assistant, "");
        for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let f = c.get("function")?;
            let args = match f.get("arguments") {
                Some(Value::String(a)) => serde_json::from_str(a).ok()?,
                Some(other) => other.clone(),
                None => Value::Null,
            };
            msg.tool_calls.push(crate::structured::tools::ToolCall {
                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                arguments: args,
            });
        }
        msg.tool_call_id = m.get("tool_call_id").and_then(Value::as_str).map(str::to_string);
        req.messages.push(msg);
    }
    req.tool_parts()
}

/// The calls of a completion's `message.tool_calls` (or of the accumulated stream deltas).
fn parse_tool_calls(calls: &[Value]) -> std::result::Result<Vec<crate::structured::tools::ToolCall>, CloudFailure> {
    let malformed = || CloudFailure::new(FailureKind::Malformed);
    calls
        .iter()
        .map(|c| {
            let f = c.get("function").ok_or_else(malformed)?;
            let name = f.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(malformed)?;
            let arguments = match f.get("arguments") {
                Some(Value::String(a)) if a.trim().is_empty() => json!({}),
                Some(Value::String(a)) => serde_json::from_str(a).map_err(|_| malformed())?,
                Some(v @ Value::Object(_)) => v.clone(),
                _ => json!({}),
            };
            Ok(crate::structured::tools::ToolCall {
                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                name: name.to_string(),
                arguments,
            })
        })
        .collect()
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            collect_strings(x, out)
        }),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

/// The response head plus a streaming body.
pub struct TransportResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body. Read errors of kind `TimedOut`/`WouldBlock` count as timeouts, others as a
    /// truncated response.
    pub body: Box<dyn Read + Send>,
}

/// Why a transport could not deliver a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Could not connect (refused, unreachable, name not resolved, TLS failed).
    Connect(String),
    /// A timeout expired.
    Timeout,
    /// The connection failed after connecting (reset, protocol error).
    Io(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(r) => write!(f, "connect failed: {r}"),
            TransportError::Timeout => f.write_str("timed out"),
            TransportError::Io(r) => write!(f, "i/o error: {r}"),
        }
    }
}

/// Sends an [`OutboundRequest`] (an HTTP `POST`). The default is [`UreqTransport`]; host apps
/// can supply their own HTTP stack, tests a double. Implementations must apply
/// [`OutboundRequest::connect_timeout`], [`OutboundRequest::first_byte_timeout`] and
/// [`OutboundRequest::timeout`], must connect through [`OutboundRequest::proxy`] and no other
/// proxy, must not follow redirects, must not log headers, and must send exactly `url`,
/// `headers` and `body`.
pub trait Transport: Send + Sync {
    /// Sends `request` and returns the status and a body reader.
    fn send(&self, request: &OutboundRequest) -> std::result::Result<TransportResponse, TransportError>;
}

/// The default transport: ureq 3 with rustls, no redirects, timeouts and proxy from the request
/// (proxy environment variables are ignored).
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl UreqTransport {
    /// A transport with its own connection pool.
    pub fn new() -> Self {
        // `config_builder()` starts from ureq's defaults, which read HTTP_PROXY/ALL_PROXY from the
        // environment: clear that, so only a proxy the app configured is used.
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("edgewise/", env!("CARGO_PKG_VERSION")))
            .build();
        Self { agent: ureq::Agent::new_with_config(config) }
    }
}

fn map_ureq_error(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportError::Connect(e.to_string()),
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotFound
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable => TransportError::Connect(io.kind().to_string()),
            k => TransportError::Io(k.to_string()),
        },
        ureq::Error::Tls(_) => TransportError::Connect("tls".into()),
        other => TransportError::Io(other.to_string()),
    }
}

/// Maps ureq's wrapped body-read errors onto `io::ErrorKind`s the client understands.
struct UreqBody(ureq::BodyReader<'static>);

impl Read for UreqBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match ureq::Error::from(e) {
            ureq::Error::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, "timed out"),
            ureq::Error::Io(io) => io,
            other => io::Error::other(other.to_string()),
        })
    }
}

impl Transport for UreqTransport {
    fn send(&self, request: &OutboundRequest) -> std::result::Result<TransportResponse, TransportError> {
        let proxy = match request.proxy() {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|_| TransportError::Connect("invalid proxy".into()))?),
            None => None,
        };
        // Each phase up to the response head gets at most the first-byte budget (a server that
        // accepts and never answers is cut at `first_byte_timeout`); the whole exchange, body
        // included, gets `timeout`.
        let head = Some(request.first_byte_timeout());
        let mut b = self
            .agent
            .post(request.url())
            .config()
            .proxy(proxy)
            .timeout_resolve(head)
            .timeout_connect(Some(request.connect_timeout().min(request.first_byte_timeout())))
            .timeout_send_request(head)
            .timeout_send_body(head)
            .timeout_recv_response(head)
            .timeout_global(Some(request.timeout()))
            .build();
        for (k, v) in request.headers() {
            b = b.header(k.as_str(), v.as_str());
        }
        let resp = b.send(request.body()).map_err(map_ureq_error)?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().into_with_config().limit(u64::MAX).reader();
        Ok(TransportResponse { status, content_type, body: Box::new(UreqBody(body)) })
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// What went wrong on the cloud path (recorded in [`super::Fallback`] and the audit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Could not connect.
    Connect,
    /// A timeout expired (connect, first byte, or the total deadline, e.g. a slow drip).
    Timeout,
    /// The server answered with an error status.
    HttpStatus,
    /// The response was not a valid chat completion (bad JSON, bad SSE, an error event).
    Malformed,
    /// The connection closed before the answer was complete.
    Truncated,
    /// The answer was longer than the request allows (`max_tokens` x
    /// [`ANSWER_BYTES_PER_TOKEN`]) or the response body exceeded
    /// [`CloudConfig::max_response_bytes`].
    TooLarge,
    /// [`prepare_request`] refused the body (personal data found).
    PolicyDenied,
    /// Something else on our side (config, audit log).
    Internal,
    /// The answer's tool calls do not fit the request's tools: a tool that was not offered,
    /// arguments that do not validate against the tool's schema, or no call where the tool
    /// choice requires one ([`crate::structured::tools::Tools::check_call`]).
    InvalidToolCall,
}

impl FailureKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::HttpStatus => "http_status",
            FailureKind::Malformed => "malformed",
            FailureKind::Truncated => "truncated",
            FailureKind::TooLarge => "too_large",
            FailureKind::PolicyDenied => "policy_denied",
            FailureKind::Internal => "internal",
            FailureKind::InvalidToolCall => "invalid_tool_call",
        }
    }
}

/// A failed cloud call. `Display` names the kind and status only, never text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudFailure {
    /// What went wrong (last attempt).
    pub kind: FailureKind,
    /// HTTP status for [`FailureKind::HttpStatus`].
    pub http_status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// Characters streamed to the sink before the failure.
    pub streamed_chars: usize,
}

impl fmt::Display for CloudFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        if let Some(s) = self.http_status {
            write!(f, " {s}")?;
        }
        write!(f, " after {} attempt(s)", self.attempts)
    }
}

impl CloudFailure {
    pub(crate) fn new(kind: FailureKind) -> Self {
        Self { kind, http_status: None, attempts: 0, streamed_chars: 0 }
    }

    /// Whether another attempt may help. Never after text reached the sink: a retry would
    /// stream the answer again, so the router falls back to the local model instead.
    fn retryable(&self) -> bool {
        if self.streamed_chars > 0 {
            return false;
        }
        match self.kind {
            // A truncated response before any text: the server closed early, worth another try.
            FailureKind::Connect | FailureKind::Timeout | FailureKind::Truncated => true,
            FailureKind::HttpStatus => matches!(self.http_status, Some(408 | 425 | 429 | 500..=599)),
            FailureKind::Malformed
            | FailureKind::TooLarge
            | FailureKind::PolicyDenied
            | FailureKind::Internal
            | FailureKind::InvalidToolCall => false,
        }
    }
}

impl From<CloudFailure> for Error {
    fn from(f: CloudFailure) -> Self {
        match f.kind {
            FailureKind::PolicyDenied => Error::PolicyDenied { reason: "outbound body contains personal data".into() },
            _ => Error::CloudUnavailable { reason: f.to_string() },
        }
    }
}

/// A completed cloud answer.
#[derive(Clone, PartialEq)]
pub struct CloudAnswer {
    /// The answer text.
    pub text: String,
    /// `usage.prompt_tokens`, when the server reported it.
    pub prompt_tokens: Option<usize>,
    /// `usage.completion_tokens`, when the server reported it.
    pub completion_tokens: Option<usize>,
    /// Why the answer ended (`Cancelled` when the sink stopped it).
    pub finish_reason: FinishReason,
    /// Attempts made.
    pub attempts: u32,
    /// The tool calls of the answer (OpenAI's `tool_calls`; arguments parsed from their JSON).
    pub tool_calls: Vec<crate::structured::tools::ToolCall>,
}

impl fmt::Debug for CloudAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudAnswer")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("finish_reason", &self.finish_reason)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// An OpenAI-compatible chat-completions client. Holds only configuration; the transport and the
/// audit log are passed per call.
#[derive(Clone, Debug)]
pub struct CloudClient {
    config: CloudConfig,
}

impl CloudClient {
    /// Validates `config`.
    pub fn new(config: CloudConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// Sends `request` (streaming per [`CloudConfig::stream`]), delivering answer text to `sink`
    /// as it arrives (non-streaming: once, at the end). `sink` returns `false` to stop; the
    /// answer then ends with [`FinishReason::Cancelled`].
    pub fn complete(
        &self,
        transport: &dyn Transport,
        audit: &AuditLog,
        request: &ChatRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<CloudAnswer, CloudFailure> {
        self.complete_with(transport, audit, request, self.config.stream, sink)
    }

    /// Like [`CloudClient::complete`] with an explicit streaming choice.
    pub fn complete_with(
        &self,
        transport: &dyn Transport,
        audit: &AuditLog,
        request: &ChatRequest,
        stream: bool,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<CloudAnswer, CloudFailure> {
        let started = Instant::now();
        let mut out = prepare_request(&self.config, request, stream, audit).map_err(|e| {
            let kind =
                if matches!(e, Error::PolicyDenied { .. }) { FailureKind::PolicyDenied } else { FailureKind::Internal };
            log::warn!("router: cloud request not prepared: {e}");
            CloudFailure::new(kind)
        })?;
        // One deadline for the first byte and one for the whole answer, across all attempts. A
        // non-streaming answer has its head only once it is complete, so only the overall
        // deadline applies to it.
        let deadline = started + self.config.request_timeout;
        let first_byte = if stream { self.config.first_byte_timeout } else { self.config.request_timeout };
        let first_byte_deadline = started + first_byte.min(self.config.request_timeout);
        let limits =
            Limits { max_body: self.config.max_response_bytes, max_text: request.max_tokens.map(answer_budget) };
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let now = Instant::now();
            let head_left = first_byte_deadline.saturating_duration_since(now);
            out.first_byte_timeout = head_left;
            out.connect_timeout = self.config.connect_timeout.min(head_left);
            out.timeout = deadline.saturating_duration_since(now);
            let mut streamed = 0usize;
            match self.attempt(transport, &out, deadline, &limits, sink, &mut streamed) {
                Ok(mut a) => {
                    a.attempts = attempts;
                    return Ok(a);
                }
                Err(mut f) => {
                    f.attempts = attempts;
                    f.streamed_chars = streamed;
                    if !f.retryable() || attempts > self.config.max_retries {
                        return Err(f);
                    }
                    let backoff = self
                        .config
                        .backoff_base
                        .saturating_mul(1u32 << (attempts - 1).min(16))
                        .min(self.config.backoff_max);
                    if Instant::now() + backoff >= first_byte_deadline {
                        log::debug!("router: cloud attempt {attempts} failed ({f}); first-byte deadline reached");
                        return Err(f);
                    }
                    log::debug!("router: cloud attempt {attempts} failed ({f}); retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                }
            }
        }
    }

    fn attempt(
        &self,
        transport: &dyn Transport,
        out: &OutboundRequest,
        deadline: Instant,
        limits: &Limits,
        sink: &mut dyn FnMut(&str) -> bool,
        streamed: &mut usize,
    ) -> std::result::Result<CloudAnswer, CloudFailure> {
        if out.first_byte_timeout.is_zero() {
            return Err(CloudFailure::new(FailureKind::Timeout));
        }
        let resp = transport.send(out).map_err(|e| {
            log::debug!("router: transport error: {e}");
            CloudFailure::new(match e {
                TransportError::Connect(_) => FailureKind::Connect,
                TransportError::Timeout => FailureKind::Timeout,
                TransportError::Io(_) => FailureKind::Truncated,
            })
        })?;
        let body = LimitedBody { inner: resp.body, deadline, remaining: limits.max_body as u64 };
        if !(200..300).contains(&resp.status) {
            // Drain a little so the connection can be reused; the text may echo the request,
            // so it is neither logged nor kept.
            let _ = io::copy(&mut body.take(64 * 1024), &mut io::sink());
            return Err(CloudFailure { http_status: Some(resp.status), ..CloudFailure::new(FailureKind::HttpStatus) });
        }
        let is_json =
            resp.content_type.as_deref().is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
        if out.is_stream() && !is_json {
            read_stream(body, limits, sink, streamed)
        } else {
            // Non-streaming (or a server that ignored `stream: true` and sent JSON).
            let mut buf = Vec::new();
            let mut body = body;
            body.read_to_end(&mut buf).map_err(io_failure)?;
            let mut a = parse_completion(&buf)?;
            if limits.max_text.is_some_and(|max| a.text.len() > max) {
                return Err(CloudFailure::new(FailureKind::TooLarge));
            }
            if !a.text.is_empty() {
                *streamed += a.text.chars().count();
                if !sink(&a.text) {
                    a.finish_reason = FinishReason::Cancelled;
                }
            }
            Ok(a)
        }
    }
}

/// What one call may receive.
struct Limits {
    /// Bytes of response body ([`CloudConfig::max_response_bytes`]); also bounds one SSE event.
    max_body: usize,
    /// Bytes of answer text ([`answer_budget`] of the request's `max_tokens`), if it set one.
    max_text: Option<usize>,
}

/// The response body, bounded in time and size: enforces the total deadline between reads (a
/// slow drip never trips a per-read timeout) and fails with [`BodyTooLarge`] once more than
/// `remaining` bytes arrive (an endless stream stops there, whatever it contains).
struct LimitedBody {
    inner: Box<dyn Read + Send>,
    deadline: Instant,
    remaining: u64,
}

/// The error a [`LimitedBody`] returns past its byte limit.
#[derive(Debug)]
struct BodyTooLarge;

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response body over the byte limit")
    }
}

impl std::error::Error for BodyTooLarge {}

impl Read for LimitedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "total deadline"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // At the limit: a clean end is fine, one more byte is not.
            let mut one = [0u8; 1];
            return match self.inner.read(&mut one)? {
                0 => Ok(0),
                _ => Err(io::Error::other(BodyTooLarge)),
            };
        }
        let n = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.remaining -= got as u64;
        Ok(got)
    }
}

fn io_failure(e: io::Error) -> CloudFailure {
    if e.get_ref().is_some_and(|inner| inner.is::<BodyTooLarge>()) {
        return CloudFailure::new(FailureKind::TooLarge);
    }
    CloudFailure::new(match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FailureKind::Timeout,
        _ => FailureKind::Truncated,
    })
}

fn finish_from(s: Option<&str>) -> FinishReason {
    match s {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

fn usage(v: &Value, key: &str) -> Option<usize> {
    v.get("usage")?.get(key)?.as_u64().map(|n| n as usize)
}

/// Parses a non-streaming chat completion.
fn parse_completion(bytes: &[u8]) -> std::result::Result<CloudAnswer, CloudFailure> {
    let malformed = || CloudFailure::new(FailureKind::Malformed);
    let v: Value = serde_json::from_slice(bytes).map_err(|_| malformed())?;
    if v.get("error").is_some() {
        return Err(malformed());
    }
    let choice = v.get("choices").and_then(|c| c.get(0)).ok_or_else(malformed)?;
    let message = choice.get("message").ok_or_else(malformed)?;
    let tool_calls = match message.get("tool_calls") {
        Some(Value::Array(calls)) => parse_tool_calls(calls)?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(malformed()),
    };
    let text = match message.get("content") {
        Some(Value::String(t)) => t.as_str(),
        // A tool-call answer may have no content.
        None | Some(Value::Null) if !tool_calls.is_empty() => "",
        _ => return Err(malformed()),
    };
    Ok(CloudAnswer {
        text: text.to_string(),
        prompt_tokens: usage(&v, "prompt_tokens"),
        completion_tokens: usage(&v, "completion_tokens"),
        finish_reason: finish_from(choice.get("finish_reason").and_then(Value::as_str)),
        attempts: 0,
        tool_calls,
    })
}

/// Reads an SSE chat-completion stream, forwarding `choices[0].delta.content` to `sink`.
/// Complete when `[DONE]` arrives, or at EOF after a `finish_reason`; EOF before either is
/// [`FailureKind::Truncated`]; text past `limits.max_text` (checked before it reaches the sink)
/// or a body past `limits.max_body` is [`FailureKind::TooLarge`].
fn read_stream(
    body: LimitedBody,
    limits: &Limits,
    sink: &mut dyn FnMut(&str) -> bool,
    streamed: &mut usize,
) -> std::result::Result<CloudAnswer, CloudFailure> {
    let mut reader = SseReader::new(BufReader::new(body), limits.max_body);
    let mut text = String::new();
    let mut finish: Option<FinishReason> = None;
    let (mut prompt_tokens, mut completion_tokens) = (None, None);
    // Tool-call deltas, by index: id, name and the argument text so far.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let malformed = || CloudFailure::new(FailureKind::Malformed);
    loop {
        let ev = match reader.next_event() {
            Ok(ev) => ev,
            Err(SseError::Io(e)) => return Err(io_failure(e)),
            Err(SseError::TruncatedEvent) => return Err(CloudFailure::new(FailureKind::Truncated)),
            Err(SseError::Malformed(why)) => {
                log::debug!("router: malformed SSE stream: {why}");
                return Err(malformed());
            }
        };
        match ev {
            None if finish.is_some() => break,
            None => return Err(CloudFailure::new(FailureKind::Truncated)),
            Some(SseEvent::Done) => break,
            Some(SseEvent::Data(d)) => {
                let v: Value = serde_json::from_str(&d).map_err(|_| malformed())?;
                if !v.is_object() || v.get("error").is_some() {
                    return Err(malformed());
                }
                prompt_tokens = usage(&v, "prompt_tokens").or(prompt_tokens);
                completion_tokens = usage(&v, "completion_tokens").or(completion_tokens);
                let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else { continue };
                match choice.get("delta").and_then(|d| d.get("content")) {
                    Some(Value::String(piece)) if !piece.is_empty() => {
                        if limits.max_text.is_some_and(|max| text.len() + piece.len() > max) {
                            log::debug!(
                                "router: cloud answer over the max_tokens budget ({} bytes so far)",
                                text.len()
                            );
                            return Err(CloudFailure::new(FailureKind::TooLarge));
                        }
                        text.push_str(piece);
                        *streamed += piece.chars().count();
                        if !sink(piece) {
                            return Ok(CloudAnswer {
                                text,
                                prompt_tokens,
                                completion_tokens,
                                finish_reason: FinishReason::Cancelled,
                                attempts: 0,
                                tool_calls: Vec::new(),
                            });
                        }
                    }
                    Some(Value::String(_)) | Some(Value::Null) | None => {}
                    Some(_) => return Err(malformed()),
                }
                for d in choice
                    .get("delta")
                    .and_then(|d| d.get("tool_calls"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let i = d.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if i >= crate::structured::tools::MAX_CALLS_PER_TURN.max(16) {
                        return Err(malformed());
                    }
                    if calls.len() <= i {
                        calls.resize(i + 1, Default::default());
                    }
                    if let Some(id) = d.get("id").and_then(Value::as_str) {
                        calls[i].0 = id.to_string();
                    }
                    let f = d.get("function");
                    if let Some(n) = f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                        calls[i].1.push_str(n);
                    }
                    if let Some(a) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                        let so_far: usize = calls.iter().map(|c| c.2.len()).sum::<usize>() + text.len();
                        if limits.max_text.is_some_and(|max| so_far + a.len() > max) {
                            return Err(CloudFailure::new(FailureKind::TooLarge));
                        }
                        calls[i].2.push_str(a);
                    }
                }
                if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                    finish = Some(finish_from(Some(f)));
                }
            }
        }
    }
    let calls: Vec<Value> = calls
        .into_iter()
        .map(|(id, name, args)| json!({ "id": id, "function": { "name": name, "arguments": args } }))
        .collect();
    Ok(CloudAnswer {
        text,
        prompt_tokens,
        completion_tokens,
        finish_reason: finish.unwrap_or(FinishReason::Stop),
        attempts: 0,
        tool_calls: parse_tool_calls(&calls)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("https://api.example.com/v1/").ok();
        assert_eq!(
            e,
            Some(Endpoint { scheme: "https".into(), host: "api.example.com".into(), port: 443, path: "/v1".into() })
        );
        let e = Endpoint::parse("http://[::1]:8080").ok();
        assert_eq!(e.as_ref().map(|e| (e.host.as_str(), e.port, e.is_loopback())), Some(("::1", 8080, true)));
        assert_eq!(e.map(|e| e.url_for("/x")), Some("http://[::1]:8080/x".to_string()));
        for bad in ["ftp://x", "https://", "example.com", "https://u:p@h/", "https://h:99999/", "https://h/?q=1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn insecure_http_only_to_loopback() {
        assert!(CloudConfig::new("http://127.0.0.1:8080/v1", "m").validate().is_ok());
        assert!(CloudConfig::new("http://localhost/v1", "m").validate().is_ok());
        assert!(CloudConfig::new("http://api.example.com/v1", "m").validate().is_err());
        let c = CloudConfig { allow_insecure_http: true, ..CloudConfig::new("http://api.example.com/v1", "m") };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn api_key_is_redacted() {
        let mut c = CloudConfig::new("https://a.example/v1", "m");
        c.api_key = Some(ApiKey::new("sk-CANARY-123"));
        let d = format!("{c:?} {}", ApiKey::new("sk-CANARY-123"));
        assert!(!d.contains("CANARY"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn parses_non_stream_completion() {
        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;
        let a = parse_completion(body).ok();
        assert_eq!(a.as_ref().map(|a| a.text.as_str()), Some("Paris."));
        assert_eq!(
            a.as_ref().map(|a| (a.prompt_tokens, a.completion_tokens, a.finish_reason)),
            Some((Some(9), Some(2), FinishReason::Length))
        );
        for bad in
            [&b"{}"[..], b"not json", br#"{"error":{"message":"x"}}"#, br#"{"choices":[{"message":{"content":null}}]}"#]
        {
            assert_eq!(parse_completion(bad).err().map(|f| f.kind), Some(FailureKind::Malformed));
        }
    }

    fn stream(s: &str) -> (std::result::Result<CloudAnswer, CloudFailure>, String) {
        stream_limited(s, 4096, None)
    }

    fn stream_limited(
        s: &str,
        max_body: usize,
        max_text: Option<usize>,
    ) -> (std::result::Result<CloudAnswer, CloudFailure>, String) {
        let body = LimitedBody {
            inner: Box::new(io::Cursor::new(s.as_bytes().to_vec())),
            deadline: Instant::now() + Duration::from_secs(5),
            remaining: max_body as u64,
        };
        let mut got = String::new();
        let mut n = 0;
        let r = read_stream(
            body,
            &Limits { max_body, max_text },
            &mut |t| {
                got.push_str(t);
                true
            },
            &mut n,
        );
        (r, got)
    }

    #[test]
    fn parses_stream() {
        let s = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            ": comment\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        let (r, got) = stream(s);
        let a = r.ok();
        assert_eq!(got, "Hello");
        assert_eq!(
            a.map(|a| (a.text, a.prompt_tokens, a.finish_reason)),
            Some(("Hello".into(), Some(3), FinishReason::Stop))
        );
        // EOF after finish_reason without [DONE] is complete.
        let (r, _) = stream("data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n");
        assert!(r.is_ok());
    }

    #[test]
    fn stream_faults() {
        let one = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        assert_eq!(stream(one).0.err().map(|f| f.kind), Some(FailureKind::Truncated));
        assert_eq!(stream(&format!("{one}data: {{\"choi")).0.err().map(|f| f.kind), Some(FailureKind::Truncated));
        assert_eq!(stream(&format!("{one}data: {{nope}}\n\n")).0.err().map(|f| f.kind), Some(FailureKind::Malformed));
        assert_eq!(
            stream("data: {\"error\":{\"message\":\"boom\"}}\n\n").0.err().map(|f| f.kind),
            Some(FailureKind::Malformed)
        );
        assert_eq!(stream("data: [1,2]\n\n").0.err().map(|f| f.kind), Some(FailureKind::Malformed));
    }

    #[test]
    fn stream_budgets() {
        let piece = "data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\n";
        let done = "data: [DONE]\n\n";
        let three = format!("{piece}{piece}{piece}{done}");
        // Exactly at the text budget is fine; one byte less is not, and the piece that would
        // cross it never reaches the sink.
        assert!(stream_limited(&three, 4096, Some(12)).0.is_ok());
        let (r, got) = stream_limited(&three, 4096, Some(11));
        assert_eq!(r.err().map(|f| f.kind), Some(FailureKind::TooLarge));
        assert_eq!(got, "abcdabcd");
        // The body limit counts every byte (keep-alive comments included), not just the text.
        assert!(stream_limited(&three, three.len(), None).0.is_ok());
        assert_eq!(stream_limited(&three, three.len() - 1, None).0.err().map(|f| f.kind), Some(FailureKind::TooLarge));
        let chatter = ": keep-alive\n\n".repeat(1000);
        assert_eq!(stream_limited(&chatter, 4096, None).0.err().map(|f| f.kind), Some(FailureKind::TooLarge));
        assert!(!CloudFailure::new(FailureKind::TooLarge).retryable());
        assert_eq!(answer_budget(100), 100 * ANSWER_BYTES_PER_TOKEN + ANSWER_SLACK_BYTES);
    }

    #[test]
    fn proxy_and_key_rules() {
        let with_key = |url: &str| CloudConfig {
            api_key: Some(ApiKey::new("sk-x")),
            allow_insecure_http: true,
            ..CloudConfig::new(url, "m")
        };
        // A key over plain http only to loopback, even with allow_insecure_http.
        assert!(with_key("http://127.0.0.1:8080/v1").validate().is_ok());
        let e = with_key("http://api.example.com/v1").validate().err();
        assert!(matches!(e, Some(Error::InvalidParameter { name: "base_url", .. })), "{e:?}");
        assert!(with_key("https://api.example.com/v1").validate().is_ok());
        // A proxy only when configured, only for https, without credentials.
        let proxied = |url: &str, proxy: &str| CloudConfig { proxy: Some(proxy.into()), ..CloudConfig::new(url, "m") };
        assert!(proxied("https://api.example.com/v1", "http://10.0.0.1:3128").validate().is_ok());
        assert!(proxied("https://api.example.com/v1", "socks5://10.0.0.1:1080").validate().is_ok());
        for (url, proxy) in [
            ("http://127.0.0.1:8080/v1", "http://10.0.0.1:3128"),
            ("https://api.example.com/v1", "http://user:pw@10.0.0.1:3128"),
            ("https://api.example.com/v1", "ftp://10.0.0.1"),
        ] {
            let e = proxied(url, proxy).validate().err();
            assert!(matches!(e, Some(Error::InvalidParameter { name: "proxy", .. })), "{url} {proxy}: {e:?}");
        }
        assert_eq!(CloudConfig::new("https://a.example/v1", "m").proxy, None);
    }

    #[test]
    fn http_stack_debug_logs_are_dropped() {
        fn meta(target: &str, level: log::Level) -> log::Metadata<'_> {
            log::Metadata::builder().target(target).level(level).build()
        }
        for t in ["ureq", "ureq::unversioned::transport", "ureq_proto::util", "rustls::client"] {
            assert!(!log_allowed(&meta(t, log::Level::Trace)), "{t}");
            assert!(!log_allowed(&meta(t, log::Level::Debug)), "{t}");
            assert!(log_allowed(&meta(t, log::Level::Info)), "{t}");
            assert!(log_allowed(&meta(t, log::Level::Warn)), "{t}");
        }
        assert!(log_allowed(&meta("edgewise_core::router", log::Level::Trace)));
        assert!(log_allowed(&meta("ureqx", log::Level::Trace)));
    }

    #[test]
    fn retry_classification() {
        let f = |kind, status: Option<u16>, streamed| CloudFailure {
            kind,
            http_status: status,
            attempts: 1,
            streamed_chars: streamed,
        };
        assert!(f(FailureKind::Connect, None, 0).retryable());
        assert!(f(FailureKind::HttpStatus, Some(503), 0).retryable());
        assert!(f(FailureKind::HttpStatus, Some(429), 0).retryable());
        assert!(!f(FailureKind::HttpStatus, Some(401), 0).retryable());
        assert!(!f(FailureKind::Malformed, None, 0).retryable());
        assert!(f(FailureKind::Truncated, None, 0).retryable());
        assert!(!f(FailureKind::Truncated, None, 5).retryable());
    }
}
