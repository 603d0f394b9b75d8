//! The router over the real engine (`router::LocalEngine` on the default Gemma 3 270M GGUF):
//! prompts rendered like llama.cpp renders them (tests/golden/gemma3/chat.jsonl), streaming,
//! cache reuse across turns, cancel, the privacy split against a loopback cloud,
//! `edgewise serve`'s server checked with the official `openai` Python client, and the router
//! escalating to an independent OpenAI-compatible server (llama-cpp-python's, same GGUF).
//!
//! Needs the model (skipped loudly without it, failing under `EDGEWISE_REQUIRE_MODEL`). The
//! Python checks need /opt/refenv (or `EDGEWISE_REFENV`) with `openai` and
//! `llama-cpp-python[server]`; without them they skip loudly, and fail when
//! `EDGEWISE_REQUIRE_MODEL` or `EDGEWISE_REQUIRE_REFERENCE` is set (`.ci/run` installs them).
//! All personal data in here is synthetic.

mod common_model;
mod router_support;

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::router::audit::AuditStats;
use edgewise_core::router::cloud::CloudConfig;
use edgewise_core::router::pii::Category;
use edgewise_core::router::serve::{ServeConfig, Server};
use edgewise_core::router::{
    ChatMessage, ChatRequest, FinishReason, LocalEngine, LocalModel, Reason, RequestMeta, Role, Router, RouterConfig,
    RouterPolicy, Target,
};
use edgewise_core::session::{GenerationParams, SessionConfig, StopReason};
use router_support::*;

/// One engine per test binary (loading takes a second or two; the model is read-only).
fn engine() -> Option<Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = common_model::model_path()?;
            let cfg = EngineConfig { backend: BackendPreference::Cpu, ..EngineConfig::default() };
            Some(Engine::load(path, cfg).expect("load the default model"))
        })
        .clone()
}

fn local(max_tokens: usize) -> Option<LocalEngine> {
    let cfg = SessionConfig { max_context: 512, ..SessionConfig::default() };
    Some(LocalEngine::new(engine()?, cfg, GenerationParams::greedy(max_tokens)).expect("local engine"))
}

fn role(s: &str) -> Role {
    match s {
        "system" => Role::System,
        "user" => Role::User,
        _ => Role::Assistant,
    }
}

fn asked() -> RequestMeta {
    RequestMeta { cloud_requested: true, local_mean_logprob: None }
}

/// Prompts go through the chat template exactly as llama.cpp renders and tokenizes them: the
/// token count equals llama.cpp's, and the greedy answer equals a plain session's greedy answer
/// on llama.cpp's ids.
#[test]
fn local_engine_renders_like_llama_cpp_and_streams() {
    let Some(local) = local(8) else { return };
    let path = common_model::golden("gemma3/chat.jsonl");
    let text = std::fs::read_to_string(&path).expect("chat golden");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let Some(msgs) = v["messages"].as_array() else { continue };
        // llama.cpp's built-in gemma template trims the system prompt; the HF template keeps it.
        let messages: Vec<ChatMessage> = msgs
            .iter()
            .map(|m| {
                let r = role(m["role"].as_str().unwrap_or(""));
                let c = m["content"].as_str().unwrap_or("");
                ChatMessage::new(r, if r == Role::System { c.trim() } else { c })
            })
            .collect();
        let want_ids: Vec<u32> =
            v["ids"].as_array().expect("ids").iter().map(|x| x.as_u64().unwrap_or(0) as u32).collect();
        let request = ChatRequest { messages, ..ChatRequest::default() };
        let mut pieces = Vec::new();
        let ans = local
            .generate(&request, &mut |t| {
                pieces.push(t.to_string());
                true
            })
            .expect("generate");
        assert_eq!(ans.prompt_tokens, want_ids.len(), "prompt length vs llama.cpp");
        assert_eq!(ans.text, pieces.concat(), "the pieces concatenate to the text");
        assert!(ans.completion_tokens >= 1 && ans.completion_tokens <= 8);
        let mut session = engine()
            .expect("engine")
            .new_session(SessionConfig { max_context: 512, ..Default::default() })
            .expect("session");
        let plain = session.generate_from(want_ids, &GenerationParams::greedy(8), &mut |_| true).expect("plain");
        assert_eq!(ans.text, plain.text, "same prompt ids, same greedy answer");
        let want_finish =
            if plain.stop_reason == StopReason::MaxTokens { FinishReason::Length } else { FinishReason::Stop };
        assert_eq!(ans.finish_reason, want_finish);
        n += 1;
    }
    assert!(n >= 3, "golden conversations read: {n}");
    // Token counting for the router uses the same tokenizer.
    assert_eq!(local.count_tokens("Hello world"), 2);
    assert_eq!(local.context_limit(), 512);
    assert_eq!(local.model_id(), "gemma-3-270m-q4_k_m");
}

/// The next turn of a conversation reuses the cached prefix; the sink and `cancel_running`
/// stop a generation; the request's `max_tokens` is honoured.
#[test]
fn local_engine_reuses_the_cache_and_cancels() {
    let Some(local) = local(12) else { return };
    let dir = temp_dir("engine-local-only");
    let router = Router::new(RouterConfig::local_only(dir.to_path_buf())).expect("router");
    let first = ChatRequest::user("Name one ocean.").with_system("Answer briefly.");
    let params = GenerationParams::greedy(12);
    let a1 = local.answer(&router, &first, &RequestMeta::default(), &params, &mut |_: &str| true).expect("first");
    assert_eq!(a1.answer.served_by, Target::Local);
    let m1 = a1.local_metrics.expect("local metrics");
    assert_eq!(m1.prefilled_tokens, m1.prompt_tokens, "nothing cached yet");
    let second =
        first.clone().with_message(Role::Assistant, a1.answer.text.clone()).with_message(Role::User, "And another?");
    let a2 = local.answer(&router, &second, &RequestMeta::default(), &params, &mut |_: &str| true).expect("second");
    let m2 = a2.local_metrics.expect("local metrics");
    assert!(
        m2.prefilled_tokens < m2.prompt_tokens / 2,
        "history reused: {} of {} prefilled",
        m2.prefilled_tokens,
        m2.prompt_tokens
    );

    // The sink stops it.
    let long = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(300) };
    let mut seen = 0;
    let g = local
        .generate_with(&ChatRequest::user("Tell me a long story."), &long, &mut |_| {
            seen += 1;
            seen < 3
        })
        .expect("generate");
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert!(g.metrics.generated_tokens < 20);

    // cancel_running() from another thread stops it.
    let local = Arc::new(local);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let local = local.clone();
        std::thread::spawn(move || {
            let mut first = true;
            local.generate_with(&ChatRequest::user("Tell me a long story."), &long, &mut |_| {
                if first {
                    first = false;
                    let _ = tx.send(());
                }
                true
            })
        })
    };
    rx.recv_timeout(Duration::from_secs(120)).expect("first token");
    local.cancel_running();
    let g = worker.join().expect("join").expect("generate");
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert!(g.metrics.generated_tokens < 300);

    // The request's max_tokens overrides the default.
    let short = ChatRequest { max_tokens: Some(3), ..ChatRequest::user("Count to ten.") };
    let ans = local.generate(&short, &mut |_| true).expect("generate");
    assert!(ans.completion_tokens <= 3);
}

/// The privacy split with the real model local and a loopback cloud: the sensitive request never
/// reaches the server and is answered by the model; the benign one with the app's "use cloud"
/// reason gets the cloud's text; a refused endpoint is answered locally.
#[test]
fn router_keeps_sensitive_requests_on_the_real_model() {
    let Some(local) = local(16) else { return };
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: vec![
            sse_delta("Rainbows form when "),
            sse_delta("sunlight refracts."),
            sse_finish(),
            "data: [DONE]\n\n".into(),
        ],
        gap: Duration::from_millis(2),
    });
    let dir = temp_dir("engine-router");
    let config = RouterConfig {
        policy: RouterPolicy::cloud_assist(),
        cloud: Some(CloudConfig::new(cloud.base_url(), "gpt-test")),
        ..RouterConfig::local_only(dir.to_path_buf())
    };
    let router = Router::new(config).expect("router");

    let sensitive = ChatRequest::user(
        "Hi, I'm Jane Doe (jane.doe@fastmail.com). Draft a two-line note to my landlord about the broken heater.",
    );
    let mut sink = RecordingSink::default();
    let a = router.answer(&local, &sensitive, &asked(), &mut sink).expect("sensitive");
    assert_eq!(a.decision.target, Target::Local);
    assert_eq!(a.served_by, Target::Local);
    assert!(a.decision.reasons.contains(&Reason::Sensitive), "{:?}", a.decision.reasons);
    assert!(a.decision.categories.contains(&Category::Email), "{:?}", a.decision.categories);
    assert!(!a.text.trim().is_empty(), "the real model answered");
    assert_eq!(sink.shown, a.text);
    assert!(cloud.requests().is_empty(), "the sensitive request reached the cloud");

    let benign = ChatRequest::user("Explain how rainbows form.");
    let mut sink = RecordingSink::default();
    let a = router.answer(&local, &benign, &asked(), &mut sink).expect("benign");
    assert_eq!(a.served_by, Target::Cloud);
    assert_eq!(a.decision.reasons, vec![Reason::AppRequested]);
    assert_eq!(a.text, "Rainbows form when sunlight refracts.");
    assert_eq!(sink.shown, a.text);
    assert_eq!(cloud.requests().len(), 1);
    // Without the app's reason the benign request stays on the device.
    let a = router.answer(&local, &benign, &RequestMeta::default(), &mut |_: &str| true).expect("no reason");
    assert_eq!((a.served_by, a.decision.reasons.clone()), (Target::Local, vec![Reason::NoEscalationReason]));
    assert_eq!(cloud.requests().len(), 1);

    // Nothing listens: answered locally (the reachability probe sees it offline).
    let dir2 = temp_dir("engine-refused");
    let config = RouterConfig {
        policy: RouterPolicy::cloud_assist(),
        cloud: Some(CloudConfig::new(format!("http://127.0.0.1:{}/v1", refused_port()), "gpt-test")),
        ..RouterConfig::local_only(dir2.to_path_buf())
    };
    let router = Router::new(config).expect("router");
    let a = router.answer(&local, &benign, &asked(), &mut |_: &str| true).expect("refused");
    assert_eq!(a.served_by, Target::Local);
    assert!(a.decision.reasons.contains(&Reason::Offline), "{:?}", a.decision.reasons);
    assert!(!a.text.trim().is_empty());
}

/// The measured low-confidence trigger: a short greedy draft's mean log-probability, fed to the
/// policy, escalates a benign request only when it is below the policy's threshold.
#[test]
fn draft_confidence_drives_the_low_confidence_trigger() {
    let Some(local) = local(16) else { return };
    let request = ChatRequest::user("Explain how rainbows form.");
    let lp = local.draft_confidence(&request, 8).expect("draft");
    assert!(lp.is_finite() && lp <= 0.0, "mean log-probability {lp}");
    // Greedy and from the same prompt: measuring twice gives the same value (to rounding: the
    // second draft may reuse the cached prompt).
    let again = local.draft_confidence(&request, 8).expect("draft again");
    assert!((again - lp).abs() < 0.05, "{lp} vs {again}");
    assert!(local.draft_confidence(&request, 0).is_err());

    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: vec![sse_delta("From the cloud."), sse_finish(), "data: [DONE]\n\n".into()],
        gap: Duration::from_millis(1),
    });
    for (threshold, escalate) in [(lp + 0.5, true), (lp - 0.5, false)] {
        let dir = temp_dir("engine-confidence");
        let mut policy = RouterPolicy::cloud_assist();
        policy.low_confidence_logprob = Some(threshold);
        let config = RouterConfig {
            policy,
            cloud: Some(CloudConfig::new(cloud.base_url(), "gpt-test")),
            ..RouterConfig::local_only(dir.to_path_buf())
        };
        let router = Router::new(config).expect("router");
        let meta = RequestMeta { cloud_requested: false, local_mean_logprob: Some(lp) };
        let a = router.answer(&local, &request, &meta, &mut |_: &str| true).expect("answer");
        if escalate {
            assert_eq!(a.decision.reasons, vec![Reason::LowLocalConfidence]);
            assert_eq!((a.served_by, a.text.as_str()), (Target::Cloud, "From the cloud."));
        } else {
            assert_eq!(a.decision.reasons, vec![Reason::NoEscalationReason]);
            assert_eq!(a.served_by, Target::Local);
        }
    }
    assert_eq!(cloud.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Independent clients and servers (Python reference venv)
// ---------------------------------------------------------------------------------------------

/// Skips loudly, or fails when CI requires the references.
fn skip_reference(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    for var in ["EDGEWISE_REQUIRE_MODEL", "EDGEWISE_REQUIRE_REFERENCE"] {
        assert!(std::env::var_os(var).is_none(), "{test}: {why}, and {var} is set");
    }
}

/// `edgewise serve`'s server over the real model, checked with the official `openai` client
/// (tests/reference/openai_client_check.py): models, a completion, and a stream that must equal
/// it (greedy decoding).
#[test]
fn openai_python_client_against_the_real_model() {
    // Every request prefilled from scratch: the script checks that the stream equals the
    // completion, and with the cached prefix reused the two could split at a near-tie.
    let Some(local) = local(24).map(|l| l.with_session_reuse(false)) else { return };
    let Some(py) = refenv_python().filter(|p| python_has(p, "openai")) else {
        return skip_reference("openai_python_client_against_the_real_model", "no python with `openai` in /opt/refenv");
    };
    let server = Server::bind(ServeConfig { addr: "127.0.0.1:0".into(), ..ServeConfig::default() }).expect("bind");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let script = common_model::golden("../reference/openai_client_check.py");
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| server.run(&local));
        let out = Command::new(&py)
            .arg(&script)
            .args(["--base-url", &format!("http://{addr}/v1"), "--prompt", "Name three planets."])
            .output();
        stop.shutdown();
        assert!(h.join().is_ok());
        out.expect("run python")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai client check failed:\n{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json summary");
    assert_eq!(v["ok"], true);
    assert_eq!(v["models"][0], "gemma-3-270m-q4_k_m");
    eprintln!("openai client vs the real model: {v}");
}

/// The router escalates a non-sensitive request to llama-cpp-python's OpenAI-compatible server
/// on the same GGUF and streams its answer (SSE and not); a sensitive one stays on the device and
/// never leaves (the audit log records no egress for it).
#[test]
fn router_escalates_to_llama_cpp_python_server() {
    let Some(local) = local(16) else { return };
    let test = "router_escalates_to_llama_cpp_python_server";
    let Some(py) = llama_server_python() else {
        return skip_reference(test, "needs llama-cpp-python[server] in /opt/refenv");
    };
    let model = common_model::model_path().expect("model");
    let server = match LlamaServer::start(&py, &model) {
        Ok(s) => s,
        // A server that dies at startup is an environment problem; one that never answers is not.
        Err(why @ Unusable::Exited(_)) => return skip_reference(test, &why.to_string()),
        Err(why @ Unusable::NotReady) => panic!("{why}"),
    };
    let base = server.base.clone();
    let mut texts = Vec::new();
    for stream in [false, true] {
        let dir = temp_dir("engine-llama-server");
        let cloud = CloudConfig {
            stream,
            first_byte_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(120),
            max_retries: 0,
            ..CloudConfig::new(&base, "gemma")
        };
        let config = RouterConfig {
            policy: RouterPolicy::cloud_assist(),
            cloud: Some(cloud),
            ..RouterConfig::local_only(dir.to_path_buf())
        };
        let router = Router::new(config).expect("router");
        let request = ChatRequest {
            max_tokens: Some(16),
            temperature: Some(0.0),
            ..ChatRequest::user("What is the capital of France?")
        };
        let mut sink = RecordingSink::default();
        let a = router.answer(&local, &request, &asked(), &mut sink).expect("answer");
        assert_eq!(a.served_by, Target::Cloud, "stream={stream}: {:?} {:?}", a.decision, a.fallback);
        assert!(a.fallback.is_none());
        assert!(!a.text.trim().is_empty());
        assert!(a.completion_tokens >= 1 && a.completion_tokens <= 16, "{}", a.completion_tokens);
        assert!(matches!(a.finish_reason, FinishReason::Length | FinishReason::Stop), "{:?}", a.finish_reason);
        assert_eq!(sink.shown, a.text);
        if stream {
            assert!(sink.pieces.len() > 1, "streamed in pieces");
        }
        texts.push(a.text);

        let sensitive = ChatRequest::user("My SSN is 123-45-6789 and my name is John Smith; is my tax refund late?");
        let a = router.answer(&local, &sensitive, &asked(), &mut |_: &str| true).expect("sensitive");
        assert_eq!(a.served_by, Target::Local);
        assert!(a.decision.reasons.contains(&Reason::Sensitive));
        let stats = AuditStats::from_path(dir.join("audit.jsonl")).expect("audit stats");
        assert_eq!(stats.egress_requests, 1, "only the benign request left the device");
    }
    // Not asserted equal: llama-cpp-python reuses its cached prefix on the second request, which
    // can flip a near-tie of this (base, not instruction-tuned) model.
    eprintln!("llama.cpp server answered through the router: {:?} / streamed {:?}", texts[0], texts[1]);
    drop(server);
}

/// `edgewise serve` over the real model answers client mistakes `400` with an OpenAI error body
/// that does not quote the prompt (issue #20, item 9): a conversation longer than the context,
/// one the Gemma template rejects (it must start with the user), and `max_tokens` 0.
#[test]
fn serve_answers_client_mistakes_400_on_the_real_model() {
    use std::io::{Read, Write};
    let Some(local) = local(4) else { return };
    let server = Server::bind(ServeConfig { addr: "127.0.0.1:0".into(), ..ServeConfig::default() }).expect("bind");
    let addr = server.local_addr();
    let stop = server.shutdown_handle();
    let post = |body: &serde_json::Value| -> (u16, serde_json::Value) {
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    };
    let canary = "CANARY-PROMPT-9120";
    std::thread::scope(|s| {
        let h = s.spawn(|| server.run(&local));
        let long = format!("{canary} {}", "words and more words ".repeat(400));
        let cases = [
            (serde_json::json!({"messages": [{"role": "user", "content": long}]}), Some("context_length_exceeded")),
            (
                serde_json::json!({"stream": true, "messages": [{"role": "user", "content": long}]}),
                Some("context_length_exceeded"),
            ),
            (
                serde_json::json!({"messages": [{"role": "assistant", "content": canary}, {"role": "user", "content": canary}]}),
                None,
            ),
            (
                serde_json::json!({"max_tokens": 0, "messages": [{"role": "user", "content": canary}]}),
                Some("invalid_value"),
            ),
        ];
        let results: Vec<_> = cases.iter().map(|(body, code)| (post(body), *code)).collect();
        let ok = post(&serde_json::json!({"messages": [{"role": "user", "content": "Say hi."}]}));
        stop.shutdown();
        assert!(h.join().is_ok());
        for (i, ((status, v), code)) in results.into_iter().enumerate() {
            assert_eq!(status, 400, "case {i}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "case {i}: {v}");
            assert_eq!(v["error"]["code"].as_str(), code, "case {i}: {v}");
            assert!(!v.to_string().contains(canary), "case {i} quotes the prompt: {v}");
        }
        assert_eq!(ok.0, 200, "{}", ok.1);
    });
}

/// `LocalEngine::answer` (the path of Kotlin/Swift `Router.send`) with tools: the device answers
/// with constrained calls of the offered tool, valid against its schema, with the local metrics
/// remembered; the call and its result sent back continue the conversation.
#[test]
fn local_engine_answers_routed_tool_requests_with_valid_calls() {
    use edgewise_core::structured::tools::{ToolChoice, Tools};
    let Some(local) = local(64) else { return };
    let dir = temp_dir("engine-tools");
    let router = Router::new(RouterConfig::local_only(dir.to_path_buf())).expect("router");
    let mut tools = Tools::from_json(
        r#"[{"type":"function","function":{"name":"lookup_order","description":"Looks up a shop order by its number.",
            "parameters":{"type":"object","properties":{"order":{"type":"integer","minimum":1,"maximum":99999}},"required":["order"],"additionalProperties":false}}}]"#,
    )
    .expect("tools");
    tools.choice = ToolChoice::Required;
    let mut request = ChatRequest::user("Where is my order 1042?");
    request.tools = Some(tools.clone());
    let params = GenerationParams::greedy(64);
    let a = local.answer(&router, &request, &RequestMeta::default(), &params, &mut |_: &str| true).expect("answer");
    assert_eq!(a.answer.served_by, Target::Local);
    assert!(!a.answer.tool_calls.is_empty(), "a required choice calls");
    for c in &a.answer.tool_calls {
        assert_eq!(c.name, "lookup_order");
        edgewise_core::structured::validate::check(&tools.tools[0].parameters, &c.arguments).expect("valid arguments");
    }
    assert!(a.local_metrics.is_some(), "the local metrics are remembered");
    request.messages.push(ChatMessage::tool_calls(a.answer.tool_calls.clone()));
    for c in &a.answer.tool_calls {
        request.messages.push(ChatMessage::tool_result(c.id.clone(), r#"{"status":"shipped"}"#));
    }
    if let Some(t) = request.tools.as_mut() {
        t.choice = ToolChoice::None;
    }
    let b = local
        .answer(&router, &request, &RequestMeta::default(), &GenerationParams::greedy(16), &mut |_: &str| true)
        .expect("next");
    assert!(b.answer.tool_calls.is_empty() && !b.answer.text.trim().is_empty(), "a text answer under `none`");
}
