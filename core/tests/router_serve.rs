//! The OpenAI-compatible server (`edgewise serve`) over a fake local model, checked with raw HTTP,
//! with our own client, and with the official `openai` Python client
//! (tests/reference/openai_client_check.py, run with /opt/refenv). Also our client against an
//! independent OpenAI-compatible server (llama-cpp-python's) when that is installed.

mod router_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgewise_core::router::audit::AuditLog;
use edgewise_core::router::cloud::{ApiKey, CloudClient, CloudConfig, UreqTransport};
use edgewise_core::router::serve::{ServeConfig, Server};
use edgewise_core::router::{ChatRequest, FinishReason, LocalAnswer, LocalModel};
use router_support::*;

/// Sends a raw HTTP/1.1 request and returns (status, body).
fn raw(addr: std::net::SocketAddr, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // A server may answer (413) and close before the whole request is written: the write then
    // fails, and the answer is still there to read, as a real client would.
    let _ = s.write_all(req.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn post(addr: std::net::SocketAddr, body: &str, extra: &str) -> (u16, String) {
    raw(addr, &format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}", body.len()))
}

fn with_server(config: ServeConfig, f: impl FnOnce(std::net::SocketAddr) + Send) {
    with_model_server(&FakeLocal::new(4096), config, f)
}

fn with_model_server<M: LocalModel + Sync>(
    model: &M,
    config: ServeConfig,
    f: impl FnOnce(std::net::SocketAddr) + Send,
) {
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    std::thread::scope(|s| {
        let h = s.spawn(|| server.run(model));
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(addr)));
        stop.shutdown();
        assert!(h.join().is_ok());
        if let Err(e) = res {
            std::panic::resume_unwind(e);
        }
    });
}

fn loopback() -> ServeConfig {
    ServeConfig { addr: "127.0.0.1:0".into(), ..ServeConfig::default() }
}

#[test]
fn serves_models_completions_and_streams() {
    with_server(loopback(), |addr| {
        let (st, body) = raw(addr, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["data"][0]["id"], "fake-local");
        assert_eq!(v["object"], "list");

        // Our own client (stream and not) gets the model's answer.
        let dir = temp_dir("serve-client");
        let audit = AuditLog::open(dir.join("a.jsonl")).expect("audit");
        let req = ChatRequest::user("how do tides work").with_system("be brief");
        for stream in [false, true] {
            let client =
                CloudClient::new(CloudConfig { stream, ..CloudConfig::new(format!("http://{addr}/v1"), "fake-local") })
                    .expect("client");
            let mut pieces = Vec::new();
            let a = client
                .complete(&UreqTransport::new(), &audit, &req, &mut |t| {
                    pieces.push(t.to_string());
                    true
                })
                .expect("answer");
            assert_eq!(a.text, expected_local(&req), "stream={stream}");
            assert_eq!(a.finish_reason, FinishReason::Stop);
            if stream {
                assert_eq!(pieces.len(), expected_local(&req).split_inclusive(' ').count(), "one SSE chunk per piece");
            } else {
                assert_eq!(a.completion_tokens, Some(expected_local(&req).split_inclusive(' ').count()));
            }
        }

        // Raw SSE framing: chunked, data: lines, [DONE] last.
        let (st, body) =
            post(addr, r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"hi there"}]}"#, "");
        assert_eq!(st, 200);
        assert!(body.contains("data: {"), "{body}");
        assert!(body.contains("\"object\":\"chat.completion.chunk\""));
        assert!(body.trim_end().ends_with("0"), "chunked terminator");
        assert!(body.contains("data: [DONE]"));

        // Errors.
        assert_eq!(post(addr, "{not json", "").0, 400);
        assert_eq!(post(addr, r#"{"messages":[]}"#, "").0, 400);
        assert_eq!(raw(addr, "GET /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").0, 404);
        assert_eq!(raw(addr, "DELETE /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").0, 405);
    });
}

#[test]
fn bounds_and_api_key() {
    let cfg = ServeConfig { api_key: Some(ApiKey::new("local-secret")), max_body_bytes: 2048, ..loopback() };
    with_server(cfg, |addr| {
        let ok = r#"{"messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(post(addr, ok, "").0, 401);
        assert_eq!(post(addr, ok, "Authorization: Bearer wrong\r\n").0, 401);
        let (st, body) = post(addr, ok, "Authorization: Bearer local-secret\r\n");
        assert_eq!(st, 200, "{body}");
        let big = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "a".repeat(4096));
        assert_eq!(post(addr, &big, "Authorization: Bearer local-secret\r\n").0, 413);
    });
}

#[test]
fn client_disconnect_mid_stream_does_not_wedge_the_server() {
    with_server(loopback(), |addr| {
        let body = r#"{"stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}"#;
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        drop(s);
        // The server keeps serving.
        let (st, _) = post(addr, r#"{"messages":[{"role":"user","content":"still there?"}]}"#, "");
        assert_eq!(st, 200);
    });
}

/// The official `openai` Python client against our server.
#[test]
fn official_openai_python_client_accepts_our_server() {
    let Some(py) = refenv_python().filter(|p| python_has(p, "openai")) else {
        eprintln!("SKIPPED official_openai_python_client_accepts_our_server: /opt/refenv python with `openai` not found (pip install openai into /opt/refenv)");
        assert!(std::env::var_os("EDGEWISE_REQUIRE_REFERENCE").is_none(), "reference client required");
        return;
    };
    let cfg = ServeConfig { api_key: Some(ApiKey::new("py-key")), ..loopback() };
    with_server(cfg, |addr| {
        let prompt = "name three planets please";
        let expect = expected_local(&ChatRequest::user(prompt));
        let out = Command::new(&py)
            .arg(reference_script("openai_client_check.py"))
            .args([
                "--base-url",
                &format!("http://{addr}/v1"),
                "--api-key",
                "py-key",
                "--prompt",
                prompt,
                "--expect",
                &expect,
            ])
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openai client check failed:\n{stdout}\n{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json summary");
        assert_eq!(v["ok"], true);
        assert_eq!(v["models"][0], "fake-local");
        eprintln!("openai client check: {v}");
    });
}

/// Our client against an independent OpenAI-compatible server: llama-cpp-python's, on the
/// default GGUF. Greedy decoding, so the streamed and non-streamed answers must be identical.
#[test]
fn our_client_against_llama_cpp_python_server() {
    let home = std::env::var_os("EDGEWISE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgewise")));
    let model = [
        home.map(|h| h.join("models/gemma-3-270m-q4_k_m.gguf")),
        Some(PathBuf::from("/tmp/model/gemma-3-270m-q4_k_m.gguf")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists());
    let (Some(py), Some(model)) = (llama_server_python(), model) else {
        eprintln!("SKIPPED our_client_against_llama_cpp_python_server: needs llama-cpp-python[server] in /opt/refenv and the default GGUF");
        assert!(std::env::var_os("EDGEWISE_REQUIRE_REFERENCE").is_none(), "reference server required");
        return;
    };
    let skip = |why: String| {
        eprintln!("SKIPPED our_client_against_llama_cpp_python_server: the reference server is unusable here: {why}");
        assert!(std::env::var_os("EDGEWISE_REQUIRE_REFERENCE").is_none(), "reference server required");
    };
    let mut server = match LlamaServer::start(&py, &model) {
        Ok(s) => s,
        Err(why) => return skip(why.to_string()),
    };
    let base = server.base.clone();
    let res = std::panic::catch_unwind(|| {
        let dir = temp_dir("llama-server");
        let audit = AuditLog::open(dir.join("a.jsonl")).expect("audit");
        let req = ChatRequest {
            max_tokens: Some(24),
            temperature: Some(0.0),
            ..ChatRequest::user("What is the capital of France?")
        };
        let mut texts = Vec::new();
        for stream in [false, true] {
            let cfg = CloudConfig {
                stream,
                first_byte_timeout: Duration::from_secs(120),
                request_timeout: Duration::from_secs(120),
                max_retries: 0,
                ..CloudConfig::new(&base, "gemma")
            };
            let client = CloudClient::new(cfg).expect("client");
            let mut streamed = String::new();
            let a = client.complete(&UreqTransport::new(), &audit, &req, &mut |t| {
                streamed.push_str(t);
                true
            });
            let a = match a {
                Ok(a) => a,
                Err(f) => return Err(f),
            };
            assert!(!a.text.trim().is_empty());
            assert_eq!(streamed, a.text);
            texts.push(a.text);
        }
        assert_eq!(texts[0], texts[1], "greedy answers differ between stream and non-stream");
        Ok(())
    });
    // A crashed server may take a moment to be reaped.
    let mut crashed = false;
    for _ in 0..40 {
        crashed = server.exited();
        if crashed || matches!(res, Ok(Ok(()))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    match res {
        Ok(Ok(())) => {}
        Ok(Err(f)) if crashed => skip(format!("it crashed while answering (our client saw: {f})")),
        Ok(Err(f)) => panic!("our client failed against a live llama.cpp server: {f}"),
        Err(e) => std::panic::resume_unwind(e),
    }
}

// === Hostile clients (issue #20, items 7–11) ===

/// A local model that writes `max_tokens` (default 600) words, `delay` apart, and counts them.
struct SlowLocal {
    delay: Duration,
    produced: AtomicUsize,
}

impl SlowLocal {
    fn new(delay: Duration) -> Self {
        Self { delay, produced: AtomicUsize::new(0) }
    }
}

impl LocalModel for SlowLocal {
    fn generate(
        &self,
        request: &ChatRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> edgewise_core::Result<LocalAnswer> {
        let n = request.max_tokens.unwrap_or(600) as usize;
        let mut text = String::new();
        for i in 0..n {
            std::thread::sleep(self.delay);
            self.produced.fetch_add(1, Ordering::SeqCst);
            text.push_str("w ");
            if !sink("w ") {
                return Ok(LocalAnswer {
                    text,
                    prompt_tokens: 1,
                    completion_tokens: i + 1,
                    finish_reason: FinishReason::Cancelled,
                });
            }
        }
        Ok(LocalAnswer { text, prompt_tokens: 1, completion_tokens: n, finish_reason: FinishReason::Length })
    }
    fn context_limit(&self) -> usize {
        4096
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

/// A local model that fails the way the real engine does on client mistakes, chosen by a word
/// in the last message.
struct FailingLocal;

impl LocalModel for FailingLocal {
    fn generate(&self, request: &ChatRequest, _: &mut dyn FnMut(&str) -> bool) -> edgewise_core::Result<LocalAnswer> {
        use edgewise_core::Error;
        let last = request.messages.last().map(|m| m.content.as_str()).unwrap_or("");
        Err(if last.contains("OVERFLOW") {
            Error::ContextOverflow { max: 2048, requested: 90_000 }
        } else if last.contains("TEMPLATE") {
            Error::ChatTemplate { reason: "render failed (InvalidOperation at line 1): roles must alternate".into() }
        } else if last.contains("PARAM") {
            Error::InvalidParameter { name: "max_tokens", reason: "must be in 1..=1048576".into() }
        } else {
            Error::Backend { reason: "device lost".into() }
        })
    }
    fn context_limit(&self) -> usize {
        2048
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

/// Like [`raw`], but a connection the server resets or closes early is status 0, and the time
/// the answer took is returned too.
fn timed(addr: std::net::SocketAddr, req: &str, read_timeout: Duration) -> (u16, String, Duration) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr) else { return (0, String::new(), t.elapsed()) };
    let _ = s.set_read_timeout(Some(read_timeout));
    let _ = s.write_all(req.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body, t.elapsed())
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const MODELS: &str = "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn chat_request(body: &str) -> String {
    format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// Item 7: clients that declare a 100 KB body and send a byte at a time used to hold every
/// worker (`/health` took 28 s). Default settings.
#[test]
fn health_answers_while_slow_clients_dribble_bodies() {
    with_server(loopback(), |addr| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let Ok(mut c) = TcpStream::connect(addr) else { return };
                    let _ =
                        write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{{");
                    let t = Instant::now();
                    while !stop.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(8) {
                        if c.write_all(b" ").is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(500));
            let (st, _, took) = timed(addr, HEALTH, Duration::from_secs(5));
            let (st2, _, took2) = timed(addr, MODELS, Duration::from_secs(5));
            stop.store(true, Ordering::SeqCst);
            assert_eq!((st, st2), (200, 200), "health/models answered behind slow bodies ({took:?}, {took2:?})");
            assert!(took < Duration::from_secs(1) && took2 < Duration::from_secs(1), "{took:?} {took2:?}");
        });
    });
}

/// Item 7: a head or body sent a byte at a time is cut off at its deadline (`408`), however
/// steadily the bytes come.
#[test]
fn slow_heads_and_bodies_time_out() {
    let cfg =
        ServeConfig { header_timeout: Duration::from_secs(1), body_timeout: Duration::from_secs(1), ..loopback() };
    with_server(cfg, |addr| {
        for (start, drip) in [
            ("GET /health HTTP/1.1\r\n", &b"X-Slow: a\r\n"[..]),
            ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{", &b" "[..]),
        ] {
            let t = Instant::now();
            let mut c = TcpStream::connect(addr).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(6))).expect("timeout");
            c.write_all(start.as_bytes()).expect("write");
            let mut w = c.try_clone().expect("clone");
            let drip = drip.to_vec();
            let writer = std::thread::spawn(move || {
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(5) && w.write_all(&drip).is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            let took = t.elapsed();
            let _ = c.shutdown(std::net::Shutdown::Both);
            let _ = writer.join();
            let out = String::from_utf8_lossy(&out);
            assert!(out.starts_with("HTTP/1.1 408"), "{start:?}: {out}");
            assert!(took < Duration::from_secs(3), "{start:?}: cut off after {took:?}");
        }
        assert_eq!(timed(addr, HEALTH, Duration::from_secs(5)).0, 200);
    });
}

/// Item 7: connections beyond the limit are answered `503` at once, and the server serves
/// again once they close.
#[test]
fn connections_beyond_the_limit_get_503_quickly() {
    let cfg = ServeConfig { max_connections: 4, ..loopback() };
    with_server(cfg, |addr| {
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("Retry-After: 1"), "{out}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        drop(idle);
        let t = Instant::now();
        loop {
            let (st, _, _) = timed(addr, HEALTH, Duration::from_secs(5));
            if st == 200 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(3), "no answer after the idle connections closed: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Item 7: `/health` and `/v1/models` used to wait behind streams being generated (6.5 s
/// behind 16). Default settings.
#[test]
fn health_and_models_do_not_wait_behind_generation() {
    let model = SlowLocal::new(Duration::from_millis(20));
    with_model_server(&model, loopback(), |addr| {
        std::thread::scope(|s| {
            let streams: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        let body = r#"{"stream":true,"max_tokens":15,"messages":[{"role":"user","content":"go"}]}"#;
                        timed(addr, &chat_request(body), Duration::from_secs(30)).0
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let (st, _, took) = timed(addr, HEALTH, Duration::from_secs(10));
            let (st2, body, took2) = timed(addr, MODELS, Duration::from_secs(10));
            assert_eq!((st, st2), (200, 200), "{body}");
            assert!(took < Duration::from_millis(500) && took2 < Duration::from_millis(500), "{took:?} {took2:?}");
            for h in streams {
                assert_eq!(h.join().ok(), Some(200));
            }
        });
    });
}

/// Item 8: a non-streaming request whose client has gone is no longer generated to the end
/// (4 × 600 tokens kept the server busy 66 s); streaming disconnects stop too.
#[test]
fn disconnected_clients_stop_their_generation() {
    let model = SlowLocal::new(Duration::from_millis(10));
    with_model_server(&model, loopback(), |addr| {
        for stream in [false, false, false, false, true] {
            let body =
                format!(r#"{{"stream":{stream},"max_tokens":600,"messages":[{{"role":"user","content":"long"}}]}}"#);
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(chat_request(&body).as_bytes()).expect("write");
            std::thread::sleep(Duration::from_millis(100));
            drop(c);
        }
        // 5 × 600 tokens at 10 ms would take 30 s; the abandoned ones stop within a token.
        let t = Instant::now();
        let body = r#"{"max_tokens":3,"messages":[{"role":"user","content":"short"}]}"#;
        let (st, out, _) = timed(addr, &chat_request(body), Duration::from_secs(10));
        assert_eq!(st, 200, "{out}");
        assert!(t.elapsed() < Duration::from_secs(2), "waited {:?} behind abandoned requests", t.elapsed());
        let produced = model.produced.load(Ordering::SeqCst);
        assert!(produced < 200, "{produced} tokens generated for clients that had gone");
    });
}

/// Item 9: client mistakes are `400` with an OpenAI-style error body that does not quote the
/// prompt (OpenAI clients retry `500`s); a real failure stays `500`.
#[test]
fn client_mistakes_are_400_with_openai_error_bodies() {
    with_model_server(&FailingLocal, loopback(), |addr| {
        let canary = "CANARY-PROMPT-4471";
        let cases = [
            ("OVERFLOW", false, "", 400, Some("messages"), Some("context_length_exceeded")),
            ("OVERFLOW", true, "", 400, Some("messages"), Some("context_length_exceeded")),
            ("TEMPLATE", false, "", 400, Some("messages"), None),
            ("PARAM", false, "", 400, Some("max_tokens"), Some("invalid_value")),
            ("ok", false, r#","max_tokens":0"#, 400, Some("max_tokens"), Some("invalid_value")),
            (
                "ok",
                false,
                r#","max_completion_tokens":2000000"#,
                400,
                Some("max_completion_tokens"),
                Some("invalid_value"),
            ),
            ("BACKEND", false, "", 500, None, None),
        ];
        for (word, stream, extra, status, param, code) in cases {
            let body =
                format!(r#"{{"stream":{stream}{extra},"messages":[{{"role":"user","content":"{canary} {word}"}}]}}"#);
            let (st, out) = post(addr, &body, "");
            assert_eq!(st, status, "{word} stream={stream} {extra}: {out}");
            assert!(!out.contains(canary), "the error quotes the prompt: {out}");
            let v: serde_json::Value = serde_json::from_str(&out).expect("json error body");
            let e = &v["error"];
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{out}");
            let kind = if status == 400 { "invalid_request_error" } else { "server_error" };
            assert_eq!(e["type"], kind, "{out}");
            assert_eq!(e["param"].as_str(), param, "{out}");
            assert_eq!(e["code"].as_str(), code, "{out}");
        }
    });
}

/// Item 10: a request may hold at most `max_messages` messages and `max_body_bytes` bytes.
#[test]
fn message_count_and_body_size_are_capped() {
    with_server(loopback(), |addr| {
        let many = format!(r#"{{"messages":[{}]}}"#, vec![r#"{"role":"user","content":"x"}"#; 60_000].join(","));
        let (st, out) = post(addr, &many, "");
        assert_eq!(st, 400, "{}", &out[..out.len().min(300)]);
        assert!(out.contains("at most 2048"), "{out}");
        let big = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "a".repeat(5 << 20));
        assert_eq!(post(addr, &big, "").0, 413);
        // Chunked bodies are capped the same way.
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("write");
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..5 {
            if c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| c.write_all(&chunk))
                .and_then(|()| c.write_all(b"\r\n"))
                .is_err()
            {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 413"));
        // A small chunked body is read.
        let body = r#"{"messages":[{"role":"user","content":"chunked hello"}]}"#;
        let (a, b) = body.split_at(10);
        let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
        let (st, out) = raw(addr, &req);
        assert_eq!(st, 200, "{out}");
        assert!(out.contains("CHUNKED HELLO"), "{out}");
    });
}

/// Item 11: a non-loopback address without an API key is refused unless allowed explicitly.
#[test]
fn non_loopback_without_a_key_is_refused() {
    let open = ServeConfig { addr: "0.0.0.0:0".into(), ..ServeConfig::default() };
    match Server::bind(open.clone()) {
        Err(edgewise_core::Error::UnauthenticatedRemote { addr }) => assert!(addr.starts_with("0.0.0.0:"), "{addr}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(Server::bind(ServeConfig { api_key: Some(ApiKey::new("k")), ..open.clone() }).is_ok());
    assert!(Server::bind(ServeConfig { allow_unauthenticated_remote: true, ..open }).is_ok());
    assert!(Server::bind(ServeConfig { addr: "[::1]:0".into(), ..ServeConfig::default() })
        .map_or(true, |s| s.local_addr().ip().is_loopback()));

    // The CLI says so before loading any model.
    let out = Command::new(env!("CARGO_BIN_EXE_edgewise"))
        .args(["serve", "--addr", "0.0.0.0:0", "--model", "/nonexistent/model.gguf"])
        .output()
        .expect("run edgewise");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--allow-unauthenticated-remote") && err.contains("--api-key-env"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Tool loops through the server
// ---------------------------------------------------------------------------------------------

use edgewise_core::router::{Role, StructuredAnswer, StructuredRequest};
use edgewise_core::structured::tools::ToolCall;

/// A local model with tools that records every request: after a `tool` message it answers
/// text (word by word), otherwise one `lookup_order` call (streamed as one piece, the built-in
/// format's text).
struct ToolLoopLocal {
    seen: std::sync::Mutex<Vec<ChatRequest>>,
}

impl ToolLoopLocal {
    fn new() -> Self {
        Self { seen: std::sync::Mutex::new(Vec::new()) }
    }
    fn seen(&self) -> Vec<ChatRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn lookup_call() -> ToolCall {
    ToolCall { id: "call_9_0".into(), name: "lookup_order".into(), arguments: serde_json::json!({"order": 1042}) }
}

impl LocalModel for ToolLoopLocal {
    fn generate(&self, r: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> edgewise_core::Result<LocalAnswer> {
        FakeLocal::new(4096).generate(r, sink)
    }
    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &StructuredRequest,
        sink: &mut dyn FnMut(&str) -> bool,
    ) -> edgewise_core::Result<StructuredAnswer> {
        assert!(output.tools.is_some(), "the tools reach the local model");
        self.seen.lock().expect("lock").push(request.clone());
        let after_result = request.messages.last().is_some_and(|m| m.role == Role::Tool);
        let (text, calls) = if after_result {
            ("[local] your order has shipped".to_string(), Vec::new())
        } else {
            (r#"{"tool_calls":[{"name":"lookup_order","arguments":{"order":1042}}]}"#.to_string(), vec![lookup_call()])
        };
        let pieces: Vec<&str> =
            if calls.is_empty() { text.split_inclusive(' ').collect() } else { vec![text.as_str()] };
        for p in &pieces {
            if !sink(p) {
                break;
            }
        }
        Ok(StructuredAnswer {
            answer: LocalAnswer {
                completion_tokens: pieces.len(),
                prompt_tokens: 10,
                finish_reason: FinishReason::Stop,
                text,
            },
            tool_calls: calls,
            valid: Some(true),
        })
    }
    fn context_limit(&self) -> usize {
        4096
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn model_id(&self) -> String {
        "fake-tools".into()
    }
}

/// Runs tests/reference/openai_tool_loop_check.py against `addr` with `result` as the tool's
/// answer; returns its summary, or `None` when the reference python is missing.
fn python_tool_loop(addr: std::net::SocketAddr, result: &str) -> Option<serde_json::Value> {
    let Some(py) = refenv_python().filter(|p| python_has(p, "openai")) else {
        eprintln!("SKIPPED: /opt/refenv python with `openai` not found");
        assert!(std::env::var_os("EDGEWISE_REQUIRE_REFERENCE").is_none(), "reference client required");
        return None;
    };
    let out = Command::new(&py)
        .arg(reference_script("openai_tool_loop_check.py"))
        .args(["--base-url", &format!("http://{addr}/v1"), "--result", result])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai tool loop failed:\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json summary");
    assert_eq!(v["ok"], true);
    Some(v)
}

/// The second request of a loop as the model (or the cloud) must see it: the user's question,
/// the assistant's call as a call (not text), and the result as a `tool` message naming the call.
fn assert_real_tool_messages(r: &ChatRequest, result: &str) {
    let m = &r.messages;
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!((m[0].role, m[0].tool_calls.is_empty()), (Role::User, true));
    assert_eq!(m[1].role, Role::Assistant);
    assert_eq!(m[1].tool_calls, vec![lookup_call()], "the client's call arrives as a call, not rewritten into text");
    assert_eq!(m[1].content, "");
    assert_eq!(
        (m[2].role, m[2].tool_call_id.as_deref(), m[2].content.as_str()),
        (Role::Tool, Some("call_9_0"), result),
        "the tool result arrives as a `tool` message"
    );
    assert!(r.tools.as_ref().is_some_and(|t| t.tools[0].name == "lookup_order"), "the tools are part of the request");
}

/// The official `openai` client runs a two-step tool loop (not streamed, then streamed): its
/// assistant `tool_calls` and `tool` messages reach the model as the router's own call and result
/// messages (so a Qwen or Llama chat template renders them), not as the built-in text format.
#[test]
fn openai_client_tool_loop_reaches_the_model_as_calls_and_results() {
    let model = ToolLoopLocal::new();
    let result = r#"{"status": "shipped", "eta_days": 2}"#;
    with_model_server(&model, loopback(), |addr| {
        let Some(v) = python_tool_loop(addr, result) else { return };
        assert_eq!(v["answers"][0], "[local] your order has shipped");
        assert_eq!(v["answers"][1], "[local] your order has shipped");
        assert_eq!(v["calls"][1][0]["id"], "call_9_0");
    });
    let seen = model.seen();
    if seen.is_empty() {
        return; // skipped
    }
    assert_eq!(seen.len(), 4, "two steps, twice");
    for step in [1, 3] {
        assert_real_tool_messages(&seen[step], result);
    }
}

/// A client's tool loop through a server with the privacy router (`edgewise serve --cloud`): a
/// clean loop goes to the cloud with OpenAI `tool_calls` / `tool` messages; a tool result that
/// holds personal data keeps that turn on the device (the cloud never sees it) and the local
/// model answers it.
#[test]
fn serve_with_router_keeps_a_sensitive_tool_result_on_the_device() {
    use edgewise_core::router::{RequestMeta, Router, RouterConfig, RouterPolicy};
    let call = serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_9_0", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order\": 1042}"}}]},
            "finish_reason": "tool_calls"}]
    })
    .to_string();
    let serve_routed = |name: &str, cloud: &FakeCloud, model: &ToolLoopLocal, result: &str| -> bool {
        let dir = temp_dir(name);
        let mut cc = CloudConfig::new(cloud.base_url(), "gpt-test");
        cc.stream = false;
        let config = RouterConfig {
            policy: RouterPolicy::cloud_assist(),
            cloud: Some(cc),
            ..RouterConfig::local_only(dir.to_path_buf())
        };
        let router = Router::new(config).expect("router").with_reachability(std::sync::Arc::new(|_: &str| Ok(true)));
        let server = Server::bind(loopback())
            .expect("bind")
            .with_router(std::sync::Arc::new(router), RequestMeta { cloud_requested: true, local_mean_logprob: None });
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let mut ran = false;
        std::thread::scope(|s| {
            let h = s.spawn(|| server.run(model));
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| python_tool_loop(addr, result)));
            stop.shutdown();
            assert!(h.join().is_ok());
            match res {
                Ok(v) => ran = v.is_some(),
                Err(e) => std::panic::resume_unwind(e),
            }
        });
        ran
    };

    // Clean: both steps of both loops go to the cloud, with real tool messages.
    let c = call.clone();
    let cloud = FakeCloud::start(move |n| {
        if n % 2 == 0 {
            Behavior::Json(c.clone())
        } else {
            Behavior::Json(completion_json("cloud: shipped"))
        }
    });
    let model = ToolLoopLocal::new();
    let clean = r#"{"status": "shipped", "eta_days": 2}"#;
    if !serve_routed("serve-router-clean", &cloud, &model, clean) {
        return;
    }
    assert!(model.seen().is_empty(), "a clean loop is answered by the cloud");
    let reqs = cloud.requests();
    assert_eq!(reqs.len(), 4);
    for step in [1, 3] {
        let body: serde_json::Value = serde_json::from_slice(&reqs[step].body).expect("json");
        let msgs = body["messages"].as_array().expect("messages");
        assert_eq!(msgs[1]["tool_calls"][0]["id"], "call_9_0", "{body}");
        assert_eq!(
            (msgs[2]["role"].as_str(), msgs[2]["tool_call_id"].as_str()),
            (Some("tool"), Some("call_9_0")),
            "{body}"
        );
        assert_eq!(msgs[2]["content"], clean);
        assert_eq!(body["tools"][0]["function"]["name"], "lookup_order");
    }

    // Sensitive data in the tool result: the first step still goes out, the second stays here.
    let cloud = FakeCloud::start(move |_| Behavior::Json(call.clone()));
    let model = ToolLoopLocal::new();
    let secret = r#"{"customer": "Jane Doe", "card": "4539 1488 0343 6467", "exp": "04/27"}"#;
    assert!(serve_routed("serve-router-secret", &cloud, &model, secret));
    let reqs = cloud.requests();
    assert_eq!(reqs.len(), 2, "only the two first steps reached the cloud");
    for r in &reqs {
        assert!(!String::from_utf8_lossy(&r.body).contains("4539"), "the card number left the device");
    }
    let seen = model.seen();
    assert_eq!(seen.len(), 2, "the local model answered both second steps");
    for r in &seen {
        assert_real_tool_messages(r, secret);
    }
}
