//! The OpenAI-compatible server (`edgewise serve`) over a fake local model, checked with raw HTTP,
//! with our own client, and with the official `openai` Python client
//! (tests/reference/openai_client_check.py, run with /opt/refenv). Also our client against an
//! independent OpenAI-compatible server (llama-cpp-python's) when that is installed.

mod router_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use edgewise_core::router::audit::AuditLog;
use edgewise_core::router::cloud::{ApiKey, CloudClient, CloudConfig, UreqTransport};
use edgewise_core::router::serve::{ServeConfig, Server};
use edgewise_core::router::{ChatRequest, FinishReason};
use router_support::*;

/// Sends a raw HTTP/1.1 request and returns (status, body).
fn raw(addr: std::net::SocketAddr, req: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
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
    let model = FakeLocal::new(4096);
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    std::thread::scope(|s| {
        let h = s.spawn(|| server.run(&model));
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
