//! An OpenAI-compatible HTTP server over any [`LocalModel`] (what `edgewise serve` runs).
//!
//! Endpoints:
//! - `POST /v1/chat/completions` — `messages` (string content, or an array of `{"type":"text"}`
//!   parts), `stream`, `max_tokens` / `max_completion_tokens`, `temperature`,
//!   `stream_options.include_usage`. Without `stream` it answers one `chat.completion` object;
//!   with `stream: true` it answers `text/event-stream` chunks (`data: {chat.completion.chunk}`)
//!   ending with `data: [DONE]`.
//! - `GET /v1/models` — the one local model.
//! - `GET /health` — `{"status":"ok"}`.
//!
//! Everything stays on the machine: the server never calls the cloud. It binds where it is told
//! (default `127.0.0.1:8080`, loopback only), optionally requires a bearer key, bounds request
//! bodies, and serialises generation (one answer at a time, since one model uses all cores)
//! while still answering `/v1/models` and `/health` from its other workers. A client that
//! disconnects mid-stream stops its generation.
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
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::cloud::ApiKey;
use super::{now_ms, ChatMessage, ChatRequest, LocalModel, Role};
use crate::{Error, Result};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind, e.g. `127.0.0.1:8080` (`:0` picks a free port).
    pub addr: String,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Worker threads handling connections (generation itself runs one at a time).
    pub workers: usize,
    /// Model id to report; defaults to [`LocalModel::model_id`].
    pub model_id: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            api_key: None,
            max_body_bytes: 4 * 1024 * 1024,
            workers: 4,
            model_id: None,
        }
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Asks the server to stop; [`Server::run`] returns within about 100 ms (plus the time to
    /// finish answers in progress).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A bound server. `run` serves until [`ShutdownHandle::shutdown`].
pub struct Server {
    http: tiny_http::Server,
    addr: SocketAddr,
    config: ServeConfig,
    stop: Arc<AtomicBool>,
    created: u64,
    counter: AtomicU64,
    generation: Mutex<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("config", &self.config).finish_non_exhaustive()
    }
}

/// An HTTP error answer.
struct HttpError {
    status: u16,
    kind: &'static str,
    message: String,
}

impl HttpError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }
}

/// A parsed chat-completions request.
struct Parsed {
    request: ChatRequest,
    stream: bool,
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Value,
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
}

fn parse_body(bytes: &[u8]) -> std::result::Result<Parsed, HttpError> {
    let body: WireBody = serde_json::from_slice(bytes)
        .map_err(|e| HttpError::bad(format!("invalid JSON body: {}", e.classify_name())))?;
    if body.messages.is_empty() {
        return Err(HttpError::bad("`messages` must not be empty"));
    }
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return Err(HttpError::bad(format!("messages[{i}]: unsupported role"))),
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
                            return Err(HttpError::bad(format!("messages[{i}]: only text content parts are supported")))
                        }
                    }
                }
                s
            }
            _ => return Err(HttpError::bad(format!("messages[{i}]: invalid content"))),
        };
        messages.push(ChatMessage { role, content });
    }
    if let Some(t) = body.temperature {
        if !t.is_finite() || !(0.0..=2.0).contains(&t) {
            return Err(HttpError::bad("`temperature` must be between 0 and 2"));
        }
    }
    let include_usage =
        body.stream_options.as_ref().and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    Ok(Parsed {
        request: ChatRequest {
            messages,
            attachments: Vec::new(),
            max_tokens: body.max_completion_tokens.or(body.max_tokens),
            temperature: body.temperature,
        },
        stream: body.stream,
        include_usage,
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

fn header(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn json_response(status: u16, v: &Value) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_data(serde_json::to_vec(v).unwrap_or_default()).with_status_code(status);
    if let Some(h) = header("Content-Type", "application/json") {
        r = r.with_header(h);
    }
    r
}

fn error_json(e: &HttpError) -> Value {
    json!({ "error": { "message": e.message, "type": e.kind, "param": null, "code": null } })
}

/// Writes one HTTP/1.1 chunk.
fn write_chunk(w: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    write!(w, "{:x}\r\n", data.len())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

impl Server {
    /// Binds `config.addr`.
    pub fn bind(config: ServeConfig) -> Result<Self> {
        if config.workers == 0 {
            return Err(Error::InvalidParameter { name: "workers", reason: "must be > 0".into() });
        }
        let listener = TcpListener::bind(&config.addr)?;
        let addr = listener.local_addr()?;
        let http =
            tiny_http::Server::from_listener(listener, None).map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
        Ok(Self {
            http,
            addr,
            config,
            stop: Arc::new(AtomicBool::new(false)),
            created: now_ms() / 1000,
            counter: AtomicU64::new(0),
            generation: Mutex::new(()),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone() }
    }

    /// Serves until shut down. Blocks the calling thread; connections are handled by
    /// `config.workers` scoped threads.
    pub fn run<M: LocalModel + Sync + ?Sized>(&self, model: &M) -> Result<()> {
        let model_id = self.config.model_id.clone().unwrap_or_else(|| model.model_id());
        log::info!("serve: listening on http://{}", self.addr);
        std::thread::scope(|s| {
            for _ in 0..self.config.workers {
                s.spawn(|| {
                    while !self.stop.load(Ordering::SeqCst) {
                        match self.http.recv_timeout(Duration::from_millis(100)) {
                            Ok(Some(req)) => self.handle(req, model, &model_id),
                            Ok(None) => {}
                            Err(e) => log::warn!("serve: accept error: {e}"),
                        }
                    }
                });
            }
        });
        Ok(())
    }

    fn handle<M: LocalModel + Sync + ?Sized>(&self, mut req: tiny_http::Request, model: &M, model_id: &str) {
        let path = req.url().split('?').next().unwrap_or("").trim_end_matches('/').to_string();
        let method = req.method().clone();
        log::debug!("serve: {method} {path}");
        if let Some(key) = &self.config.api_key {
            let ok = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .is_some_and(|h| h.value.as_str() == format!("Bearer {}", key.expose()));
            if !ok {
                let e = HttpError::new(401, "authentication_error", "missing or wrong API key");
                let _ = req.respond(json_response(401, &error_json(&e)));
                return;
            }
        }
        use tiny_http::Method::{Get, Post};
        let result = match (&method, path.as_str()) {
            (Get, "/v1/models") => Ok(json!({
                "object": "list",
                "data": [{ "id": model_id, "object": "model", "created": self.created, "owned_by": "edgewise" }]
            })),
            (Get, "/health") => Ok(json!({ "status": "ok" })),
            (Post, "/v1/chat/completions") => match self.read_body(&mut req).and_then(|b| parse_body(&b)) {
                Ok(p) if p.stream => {
                    self.stream_completion(req, model, model_id, p);
                    return;
                }
                Ok(p) => self.completion(model, model_id, p),
                Err(e) => Err(e),
            },
            (_, "/v1/models" | "/health" | "/v1/chat/completions") => {
                Err(HttpError::new(405, "invalid_request_error", "method not allowed"))
            }
            _ => Err(HttpError::new(404, "invalid_request_error", "unknown path")),
        };
        let resp = match result {
            Ok(v) => json_response(200, &v),
            Err(e) => json_response(e.status, &error_json(&e)),
        };
        if let Err(e) = req.respond(resp) {
            log::debug!("serve: client went away: {e}");
        }
    }

    fn read_body(&self, req: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, HttpError> {
        let max = self.config.max_body_bytes;
        if req.body_length().is_some_and(|n| n > max) {
            return Err(HttpError::new(413, "invalid_request_error", format!("body larger than {max} bytes")));
        }
        let mut buf = Vec::new();
        req.as_reader()
            .take(max as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|_| HttpError::bad("could not read body"))?;
        if buf.len() > max {
            return Err(HttpError::new(413, "invalid_request_error", format!("body larger than {max} bytes")));
        }
        Ok(buf)
    }

    fn next_id(&self) -> String {
        format!("chatcmpl-edgewise-{}-{}", self.created, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn completion<M: LocalModel + Sync + ?Sized>(
        &self,
        model: &M,
        model_id: &str,
        p: Parsed,
    ) -> std::result::Result<Value, HttpError> {
        let _one_at_a_time = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let ans = model.generate(&p.request, &mut |_| true).map_err(|e| {
            log::warn!("serve: generation failed: {e}");
            HttpError::new(500, "server_error", format!("local generation failed: {e}"))
        })?;
        Ok(json!({
            "id": self.next_id(),
            "object": "chat.completion",
            "created": now_ms() / 1000,
            "model": model_id,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": ans.text },
                "finish_reason": ans.finish_reason.as_openai(),
            }],
            "usage": {
                "prompt_tokens": ans.prompt_tokens,
                "completion_tokens": ans.completion_tokens,
                "total_tokens": ans.prompt_tokens + ans.completion_tokens,
            },
        }))
    }

    /// Streams SSE over the raw connection with hand-written chunked framing, flushing every
    /// event (tiny_http's own chunked encoder buffers, which would delay tokens).
    fn stream_completion<M: LocalModel + Sync + ?Sized>(
        &self,
        req: tiny_http::Request,
        model: &M,
        model_id: &str,
        p: Parsed,
    ) {
        let id = self.next_id();
        let created = now_ms() / 1000;
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model_id,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            })
        };
        let mut w = req.into_writer();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let send =
            |w: &mut Box<dyn Write + Send>, v: &Value| write_chunk(w.as_mut(), format!("data: {v}\n\n").as_bytes());
        if w.write_all(head.as_bytes()).is_err()
            || send(&mut w, &chunk(json!({ "role": "assistant", "content": "" }), Value::Null)).is_err()
        {
            return;
        }
        let _one_at_a_time = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let mut client_gone = false;
        let res = model.generate(&p.request, &mut |piece| {
            if piece.is_empty() {
                return true;
            }
            if send(&mut w, &chunk(json!({ "content": piece }), Value::Null)).is_err() {
                client_gone = true;
                return false;
            }
            true
        });
        if client_gone {
            log::debug!("serve: client disconnected mid-stream; generation stopped");
            return;
        }
        let tail = match res {
            Ok(ans) => {
                let mut events = vec![chunk(json!({}), json!(ans.finish_reason.as_openai()))];
                if p.include_usage {
                    events.push(json!({
                        "id": id, "object": "chat.completion.chunk", "created": created, "model": model_id, "choices": [],
                        "usage": { "prompt_tokens": ans.prompt_tokens, "completion_tokens": ans.completion_tokens,
                                   "total_tokens": ans.prompt_tokens + ans.completion_tokens },
                    }));
                }
                events
            }
            Err(e) => {
                log::warn!("serve: generation failed mid-stream: {e}");
                vec![error_json(&HttpError::new(500, "server_error", format!("local generation failed: {e}")))]
            }
        };
        for ev in tail {
            if send(&mut w, &ev).is_err() {
                return;
            }
        }
        let _ = write_chunk(w.as_mut(), b"data: [DONE]\n\n");
        let _ = w.write_all(b"0\r\n\r\n");
        let _ = w.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_bodies() {
        let b = br#"{"model":"x","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},{"role":"assistant","content":null}],"stream":true,"max_completion_tokens":7,"stream_options":{"include_usage":true}}"#;
        let p = parse_body(b).ok().unwrap_or_else(|| panic!("parse"));
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
            assert_eq!(parse_body(bad).err().map(|e| e.status), Some(400));
        }
    }

    #[test]
    fn json_errors_do_not_echo_input() {
        let e = parse_body(br#"{"messages": CANARY-SECRET}"#).err().map(|e| e.message).unwrap_or_default();
        assert!(!e.contains("CANARY"), "{e}");
    }
}
