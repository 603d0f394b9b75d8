//! Shared helpers for the router integration tests: a fake local model, a hand-rolled loopback
//! "OpenAI" server that can misbehave on purpose, and temp dirs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgewise_core::router::{ChatRequest, FinishReason, LocalAnswer, LocalModel, Role};

/// A deterministic local model: answers `[local] ` + the last user message in upper case,
/// streamed word by word. Tokens are whitespace-separated words.
pub struct FakeLocal {
    pub context: usize,
    pub calls: AtomicUsize,
}

impl FakeLocal {
    pub fn new(context: usize) -> Self {
        Self { context, calls: AtomicUsize::new(0) }
    }
}

/// What [`FakeLocal`] answers to `req` (computed independently of the model code path).
pub fn expected_local(req: &ChatRequest) -> String {
    let last = req.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone()).unwrap_or_default();
    format!("[local] {}", last.to_uppercase())
}

impl LocalModel for FakeLocal {
    fn generate(
        &self,
        request: &ChatRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> edgewise_core::Result<LocalAnswer> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = expected_local(request);
        let mut out = String::new();
        let mut n = 0;
        for piece in text.split_inclusive(' ') {
            out.push_str(piece);
            n += 1;
            if !sink(piece) {
                return Ok(LocalAnswer {
                    text: out,
                    prompt_tokens: 0,
                    completion_tokens: n,
                    finish_reason: FinishReason::Cancelled,
                });
            }
        }
        let prompt_tokens = request.parts().map(|p| self.count_tokens(p)).sum();
        Ok(LocalAnswer { text: out, prompt_tokens, completion_tokens: n, finish_reason: FinishReason::Stop })
    }
    fn context_limit(&self) -> usize {
        self.context
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn model_id(&self) -> String {
        "fake-local".into()
    }
}

/// Records everything the router streams, including resets.
#[derive(Default)]
pub struct RecordingSink {
    pub pieces: Vec<String>,
    pub resets: usize,
    /// Text shown after the last reset.
    pub shown: String,
}

impl edgewise_core::router::AnswerSink for RecordingSink {
    fn on_text(&mut self, text: &str) -> bool {
        self.pieces.push(text.to_string());
        self.shown.push_str(text);
        true
    }
    fn on_reset(&mut self) {
        self.resets += 1;
        self.shown.clear();
    }
}

/// A temporary directory removed when dropped (kept when `EDGEWISE_KEEP_TEST_DIRS` is set).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("EDGEWISE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn temp_dir(name: &str) -> TempDir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let d = std::env::temp_dir().join(format!("edgewise-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    TempDir(d)
}

/// One SSE `data:` event carrying a content delta.
pub fn sse_delta(text: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
    )
}

pub fn sse_finish() -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
    )
}

pub fn completion_json(text: &str) -> String {
    serde_json::json!({
        "id":"c1","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}
    })
    .to_string()
}

/// How the fake cloud answers one request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 + SSE events (each written and flushed separately, `gap` apart), then close.
    Sse { events: Vec<String>, gap: Duration },
    /// 200 + a JSON body.
    Json(String),
    /// An error status with a small JSON body.
    Status(u16),
    /// Read the request, then say nothing until the client gives up (bounded to 10 s).
    Hang,
    /// Send the head and nothing else, then close.
    HeadThenClose,
    /// Read the request, then say nothing until the client hangs up (or 120 s pass).
    HangForever,
    /// 200 + SSE: `event` again and again, as fast as the socket takes it, up to `max_bytes`
    /// (far past any sane answer), then hold the connection open without a word until the client
    /// hangs up. To the client it is a stream without end.
    SseFlood { event: String, max_bytes: usize },
    /// 200 + `application/json` with no length: a completion whose `content` string never ends
    /// (up to `max_bytes`, then silence until the client hangs up).
    JsonFlood { max_bytes: usize },
}

/// One captured request.
#[derive(Clone, Debug)]
pub struct Captured {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A loopback HTTP/1.1 server written with std::net, so it can misbehave exactly as asked.
pub struct FakeCloud {
    pub addr: std::net::SocketAddr,
    pub captured: Arc<Mutex<Vec<Captured>>>,
    /// Response bytes written (all connections), as far as the socket accepted them.
    pub sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeCloud {
    /// Starts a server; `behavior(n)` decides how to answer the n-th request (0-based).
    pub fn start(behavior: impl Fn(usize) -> Behavior + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let captured = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (cap, st, snt) = (captured.clone(), stop.clone(), sent.clone());
        let behavior = Arc::new(behavior);
        let handle = std::thread::spawn(move || {
            let count = AtomicUsize::new(0);
            let mut workers = Vec::new();
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (cap, st, snt, behavior) = (cap.clone(), st.clone(), snt.clone(), behavior.clone());
                workers.push(std::thread::spawn(move || serve_one(conn, behavior(n), &cap, &st, &snt)));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Self { addr, captured, sent, stop, handle: Some(handle) }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.captured.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Waits until the client hangs up, `stop` is set or `limit` passes.
fn wait_for_hangup(reader: &mut BufReader<TcpStream>, stop: &AtomicBool, limit: Duration) {
    let until = Instant::now() + limit;
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_millis(50)));
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        let mut b = [0u8; 1];
        match reader.get_mut().read(&mut b) {
            Ok(0) => return,
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return,
            _ => {}
        }
    }
}

/// Writes `chunk` again and again until `max_bytes`, a write error (the client left) or `stop`.
fn flood(w: &mut TcpStream, chunk: &[u8], max_bytes: usize, stop: &AtomicBool, sent: &AtomicUsize) -> bool {
    let _ = w.set_write_timeout(Some(Duration::from_secs(5)));
    let mut n = 0;
    while n < max_bytes {
        if stop.load(Ordering::SeqCst) || w.write_all(chunk).is_err() {
            return false;
        }
        n += chunk.len();
        sent.fetch_add(chunk.len(), Ordering::SeqCst);
    }
    true
}

fn serve_one(conn: TcpStream, behavior: Behavior, cap: &Mutex<Vec<Captured>>, stop: &AtomicBool, sent: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // the Drop wake-up connection, or a probe
    }
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if let Ok(mut c) = cap.lock() {
        c.push(Captured { request_line: request_line.trim_end().to_string(), headers, body });
    }
    let mut w = conn;
    match behavior {
        Behavior::Sse { events, gap } => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
            for e in events {
                if w.write_all(e.as_bytes()).and_then(|_| w.flush()).is_err() || stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(gap);
            }
        }
        Behavior::Json(body) => {
            let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", body.len(), body);
        }
        Behavior::Status(code) => {
            let body = r#"{"error":{"message":"nope","type":"server_error"}}"#;
            let _ = write!(w, "HTTP/1.1 {code} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", body.len(), body);
        }
        Behavior::Hang => {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                // Stop once the client hangs up.
                let _ = w.set_read_timeout(Some(Duration::from_millis(50)));
                let mut b = [0u8; 1];
                if let Ok(0) = reader.get_mut().read(&mut b) {
                    return;
                }
            }
        }
        Behavior::HeadThenClose => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
        }
        Behavior::HangForever => wait_for_hangup(&mut reader, stop, Duration::from_secs(120)),
        Behavior::SseFlood { event, max_bytes } => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
            let chunk = event.repeat((64 * 1024 / event.len().max(1)).max(1));
            if flood(&mut w, chunk.as_bytes(), max_bytes, stop, sent) {
                wait_for_hangup(&mut reader, stop, Duration::from_secs(120));
            }
        }
        Behavior::JsonFlood { max_bytes } => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
            let _ = w.write_all(br#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""#);
            if flood(&mut w, "lorem ipsum ".repeat(4096).as_bytes(), max_bytes, stop, sent) {
                wait_for_hangup(&mut reader, stop, Duration::from_secs(120));
            }
        }
    }
    let _ = w.flush();
    let _ = w.shutdown(std::net::Shutdown::Both);
}

/// A port on which nothing listens (bound, then closed).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Parses the audit log into JSON values.
pub fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

pub fn events<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["event"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// Independent clients and servers (Python reference venv)
// ---------------------------------------------------------------------------------------------

/// The reference venv's python (`$EDGEWISE_REFENV`, default /opt/refenv), if present.
pub fn refenv_python() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("EDGEWISE_REFENV").unwrap_or_else(|_| "/opt/refenv".into())).join("bin/python");
    p.exists().then_some(p)
}

/// Whether `py` can import `module`.
pub fn python_has(py: &PathBuf, module: &str) -> bool {
    std::process::Command::new(py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

/// A script under tests/reference/.
pub fn reference_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("reference").join(name)
}

/// The reference venv's python when it has llama-cpp-python's server.
pub fn llama_server_python() -> Option<PathBuf> {
    refenv_python()
        .filter(|p| python_has(p, "llama_cpp.server") && python_has(p, "uvicorn") && python_has(p, "sse_starlette"))
}

/// Why a reference server that was spawned is unusable.
#[derive(Debug)]
pub enum Unusable {
    /// It exited during startup (its exit status).
    Exited(String),
    /// It did not answer `GET /v1/models` within 120 s.
    NotReady,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(status) => write!(f, "llama_cpp.server exited at startup ({status})"),
            Self::NotReady => write!(f, "llama_cpp.server not ready after 120 s"),
        }
    }
}

/// llama-cpp-python's OpenAI-compatible server on `model`, loopback; killed when dropped.
pub struct LlamaServer {
    child: std::process::Child,
    /// Its base URL, `http://127.0.0.1:<port>/v1`.
    pub base: String,
}

impl LlamaServer {
    /// Starts tests/reference/llama_server.py (the stock server with ggml's AMX path off: the
    /// stock one crashes on its first completion on our VMs) with llama.cpp's gemma chat format
    /// (the GGUF has no template), and waits up to 120 s for `GET /v1/models`. Panics when it
    /// cannot be spawned at all.
    pub fn start(py: &PathBuf, model: &std::path::Path) -> Result<Self, Unusable> {
        let port = refused_port();
        let child = std::process::Command::new(py)
            .arg(reference_script("llama_server.py"))
            .arg("--model")
            .arg(model)
            .args(["--chat_format", "gemma", "--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "1024"])
            .args(["--verbose", "false"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn llama_cpp.server");
        let mut server = Self { child, base: format!("http://127.0.0.1:{port}/v1") };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !models_ready(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Unusable::Exited(status.to_string()));
            }
            if Instant::now() >= deadline {
                return Err(Unusable::NotReady);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(server)
    }

    /// Whether the server process has exited (crashed).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once `GET /v1/models` on `port` answers 200.
pub fn models_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}
