//! Router end to end over real loopback sockets: happy paths against a fake OpenAI server, every
//! fault the issue lists (refused, timeout, 4xx/5xx, malformed SSE, truncated SSE, slow drip),
//! the egress invariant, the audit canary, fail-closed decisions, and the offline queue.
//! All personal data in here is synthetic.

mod common_model;
mod router_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgewise_core::router::audit::{AuditLog, AuditStats};
use edgewise_core::router::cloud::{
    prepare_request, ApiKey, CloudClient, CloudConfig, FailureKind, OutboundRequest, Transport, TransportError,
    TransportResponse, UreqTransport,
};
use edgewise_core::router::{
    ChatRequest, LocalAnswer, LocalModel, Reason, RequestMeta, Role, Router, RouterConfig, RouterPolicy, Target,
};
use router_support::*;

const KEY: &str = "sk-test-CANARYKEY-5521";

struct Setup {
    router: Router,
    dir: TempDir,
    online: Arc<AtomicBool>,
}

fn setup(name: &str, base_url: &str, policy: RouterPolicy, tweak: impl FnOnce(&mut CloudConfig)) -> Setup {
    let dir = temp_dir(name);
    let mut cloud = CloudConfig::new(base_url, "gpt-test");
    cloud.api_key = Some(ApiKey::new(KEY));
    cloud.connect_timeout = Duration::from_millis(500);
    cloud.request_timeout = Duration::from_millis(1500);
    cloud.max_retries = 2;
    cloud.backoff_base = Duration::from_millis(10);
    cloud.backoff_max = Duration::from_millis(40);
    tweak(&mut cloud);
    let config = RouterConfig { policy, cloud: Some(cloud), ..RouterConfig::local_only(dir.to_path_buf()) };
    let online = Arc::new(AtomicBool::new(true));
    let o = online.clone();
    let router =
        Router::new(config).expect("router").with_reachability(Arc::new(move |_: &str| Ok(o.load(Ordering::SeqCst))));
    Setup { router, dir, online }
}

fn asked() -> RequestMeta {
    RequestMeta { cloud_requested: true, local_mean_logprob: None }
}

fn benign() -> ChatRequest {
    ChatRequest::user("explain how rainbows form").with_system("You are a concise assistant.")
}

fn audit_of(s: &Setup) -> Vec<serde_json::Value> {
    audit_lines(&s.dir.join("audit.jsonl"))
}

// ---------------------------------------------------------------------------------------------
// Happy paths
// ---------------------------------------------------------------------------------------------

#[test]
fn happy_path_streaming() {
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: vec![
            sse_delta("Sun"),
            sse_delta("light "),
            sse_delta("refracts."),
            sse_finish(),
            "data: [DONE]\n\n".into(),
        ],
        gap: Duration::from_millis(5),
    });
    let s = setup("happy-stream", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {});
    let local = FakeLocal::new(4096);
    let mut sink = RecordingSink::default();
    let req = benign();
    let ans = s.router.answer(&local, &req, &asked(), &mut sink).expect("answer");
    assert_eq!(ans.decision.target, Target::Cloud);
    assert_eq!(ans.decision.reasons, vec![Reason::AppRequested]);
    assert_eq!(ans.served_by, Target::Cloud);
    assert_eq!(ans.text, "Sunlight refracts.");
    assert_eq!(sink.pieces, vec!["Sun", "light ", "refracts."]);
    assert_eq!(sink.resets, 0);
    assert!(ans.fallback.is_none());
    assert_eq!(local.calls.load(Ordering::SeqCst), 0);

    // What went over the wire: one POST with the key, the model and every message.
    let reqs = cloud.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line, "POST /v1/chat/completions HTTP/1.1");
    let auth = reqs[0].headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).expect("json body");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "explain how rainbows form");

    // Audit: one egress whose hash is the body's, one route served by the cloud.
    let lines = audit_of(&s);
    let eg = events(&lines, "egress");
    assert_eq!(eg.len(), 1);
    use sha2::Digest;
    assert_eq!(eg[0]["body_sha256"], hex::encode(sha2::Sha256::digest(&reqs[0].body)));
    assert_eq!(eg[0]["body_bytes"], reqs[0].body.len());
    let route = events(&lines, "route");
    assert_eq!(route.len(), 1);
    assert_eq!(route[0]["served_by"], "cloud");
    assert_eq!(route[0]["attempts"], 1);
}

#[test]
fn happy_path_non_streaming() {
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("Light bends in droplets.")));
    let s = setup("happy-json", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| c.stream = false);
    let local = FakeLocal::new(4096);
    let mut sink = RecordingSink::default();
    let ans = s.router.answer(&local, &benign(), &asked(), &mut sink).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud);
    assert_eq!(ans.text, "Light bends in droplets.");
    assert_eq!(sink.shown, "Light bends in droplets.");
    assert_eq!((ans.prompt_tokens, ans.completion_tokens), (11, 3), "usage from the server");
    let body: serde_json::Value = serde_json::from_slice(&cloud.requests()[0].body).expect("json");
    assert_eq!(body["stream"], false);
}

#[test]
fn retry_recovers_from_one_503() {
    let cloud =
        FakeCloud::start(|n| if n == 0 { Behavior::Status(503) } else { Behavior::Json(completion_json("ok")) });
    let s = setup("retry", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| c.stream = false);
    let ans =
        s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud);
    assert_eq!(ans.text, "ok");
    assert_eq!(cloud.requests().len(), 2);
    assert_eq!(events(&audit_of(&s), "route")[0]["attempts"], 2);
    // The same prepared body was sent both times.
    let r = cloud.requests();
    assert_eq!(r[0].body, r[1].body);
}

// ---------------------------------------------------------------------------------------------
// Faults: each ends with the correct local answer, a consistent audit log, nothing lost
// ---------------------------------------------------------------------------------------------

struct FaultCase {
    name: &'static str,
    behavior: Option<fn(usize) -> Behavior>,
    stream: bool,
    want_kind: FailureKind,
    want_status: Option<u16>,
    want_attempts: u32,
    want_discarded: usize,
}

fn malformed(_: usize) -> Behavior {
    Behavior::Sse { events: vec![sse_delta("Par"), "data: {not json at all\n\n".into()], gap: Duration::ZERO }
}
fn truncated(_: usize) -> Behavior {
    Behavior::Sse { events: vec![sse_delta("Par"), sse_delta("tial")], gap: Duration::ZERO }
}
fn truncated_mid_line(_: usize) -> Behavior {
    Behavior::Sse { events: vec![sse_delta("Par"), "data: {\"choices\":[{\"del".into()], gap: Duration::ZERO }
}
fn slow_drip(_: usize) -> Behavior {
    // 40 pieces 100 ms apart: 4 s, far past the 1.5 s total timeout, yet no single read waits long.
    Behavior::Sse { events: (0..40).map(|_| sse_delta("x")).collect(), gap: Duration::from_millis(100) }
}
fn server_error(_: usize) -> Behavior {
    Behavior::Status(503)
}
fn unauthorized(_: usize) -> Behavior {
    Behavior::Status(401)
}
fn hang(_: usize) -> Behavior {
    Behavior::Hang
}
fn head_then_close(_: usize) -> Behavior {
    Behavior::HeadThenClose
}
fn error_event(_: usize) -> Behavior {
    Behavior::Sse { events: vec!["data: {\"error\":{\"message\":\"overloaded\"}}\n\n".into()], gap: Duration::ZERO }
}
fn bad_json(_: usize) -> Behavior {
    Behavior::Json("{\"choices\": 3}".into())
}

#[test]
fn every_fault_falls_back_to_a_correct_local_answer() {
    let cases = [
        FaultCase {
            name: "refused",
            behavior: None,
            stream: true,
            want_kind: FailureKind::Connect,
            want_status: None,
            want_attempts: 3,
            want_discarded: 0,
        },
        FaultCase {
            // One first-byte deadline for all attempts: a hanging cloud is not retried.
            name: "timeout",
            behavior: Some(hang),
            stream: true,
            want_kind: FailureKind::Timeout,
            want_status: None,
            want_attempts: 1,
            want_discarded: 0,
        },
        FaultCase {
            name: "5xx",
            behavior: Some(server_error),
            stream: true,
            want_kind: FailureKind::HttpStatus,
            want_status: Some(503),
            want_attempts: 3,
            want_discarded: 0,
        },
        FaultCase {
            name: "4xx",
            behavior: Some(unauthorized),
            stream: true,
            want_kind: FailureKind::HttpStatus,
            want_status: Some(401),
            want_attempts: 1,
            want_discarded: 0,
        },
        FaultCase {
            name: "malformed sse",
            behavior: Some(malformed),
            stream: true,
            want_kind: FailureKind::Malformed,
            want_status: None,
            want_attempts: 1,
            want_discarded: 3,
        },
        FaultCase {
            name: "sse error event",
            behavior: Some(error_event),
            stream: true,
            want_kind: FailureKind::Malformed,
            want_status: None,
            want_attempts: 1,
            want_discarded: 0,
        },
        FaultCase {
            name: "truncated sse",
            behavior: Some(truncated),
            stream: true,
            want_kind: FailureKind::Truncated,
            want_status: None,
            want_attempts: 1,
            want_discarded: 7,
        },
        FaultCase {
            name: "truncated mid-line",
            behavior: Some(truncated_mid_line),
            stream: true,
            want_kind: FailureKind::Truncated,
            want_status: None,
            want_attempts: 1,
            want_discarded: 3,
        },
        FaultCase {
            name: "closed before any event",
            behavior: Some(head_then_close),
            stream: true,
            want_kind: FailureKind::Truncated,
            want_status: None,
            want_attempts: 3,
            want_discarded: 0,
        },
        FaultCase {
            name: "slow drip",
            behavior: Some(slow_drip),
            stream: true,
            want_kind: FailureKind::Timeout,
            want_status: None,
            want_attempts: 1,
            want_discarded: 0,
        },
        FaultCase {
            name: "bad json (non-stream)",
            behavior: Some(bad_json),
            stream: false,
            want_kind: FailureKind::Malformed,
            want_status: None,
            want_attempts: 1,
            want_discarded: 0,
        },
        FaultCase {
            name: "timeout (non-stream)",
            behavior: Some(hang),
            stream: false,
            want_kind: FailureKind::Timeout,
            want_status: None,
            want_attempts: 1,
            want_discarded: 0,
        },
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = cases.iter().map(|c| scope.spawn(move || run_fault(c))).collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

fn run_fault(c: &FaultCase) {
    let server = c.behavior.map(FakeCloud::start);
    let url = match &server {
        Some(s) => s.base_url(),
        None => format!("http://127.0.0.1:{}/v1", refused_port()),
    };
    // The field-worker policy queues on connection failures: "nothing lost" for the refused case.
    let s = setup(&format!("fault-{}", c.name.replace(' ', "-")), &url, RouterPolicy::field_worker(), |cfg| {
        cfg.stream = c.stream
    });
    let local = FakeLocal::new(4096);
    let mut sink = RecordingSink::default();
    let req = benign();
    let started = std::time::Instant::now();
    let ans = s.router.answer(&local, &req, &asked(), &mut sink).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let took = started.elapsed();

    // The correct local answer, and the sink shows exactly it.
    assert_eq!(ans.decision.target, Target::Cloud, "{}", c.name);
    assert_eq!(ans.served_by, Target::Local, "{}", c.name);
    assert_eq!(ans.text, expected_local(&req), "{}", c.name);
    assert_eq!(sink.shown, expected_local(&req), "{}", c.name);
    let fb = ans.fallback.clone().unwrap_or_else(|| panic!("{}: no fallback recorded", c.name));
    assert_eq!(fb.kind, c.want_kind, "{}", c.name);
    assert_eq!(fb.http_status, c.want_status, "{}", c.name);
    assert_eq!(fb.attempts, c.want_attempts, "{}", c.name);
    if c.name == "slow drip" {
        assert!(fb.discarded_chars > 0, "slow drip streamed something first");
    } else {
        assert_eq!(fb.discarded_chars, c.want_discarded, "{}", c.name);
    }
    assert_eq!(sink.resets, usize::from(fb.discarded_chars > 0), "{}: reset iff cloud text was shown", c.name);
    assert!(took < Duration::from_secs(6), "{}: took {took:?}", c.name);
    if let Some(server) = &server {
        assert_eq!(server.requests().len() as u32, c.want_attempts, "{}: requests seen by the server", c.name);
    }

    // Audit: the body was prepared once, one route event records the fallback.
    let lines = audit_of(&s);
    assert_eq!(events(&lines, "egress").len(), 1, "{}", c.name);
    let route = events(&lines, "route");
    assert_eq!(route.len(), 1, "{}", c.name);
    assert_eq!(route[0]["served_by"], "local", "{}", c.name);
    assert_eq!(route[0]["fallback"], c.want_kind.as_str(), "{}", c.name);
    assert_eq!(route[0]["attempts"], c.want_attempts, "{}", c.name);

    // Queue: only a connection failure (the network is down) queues the request for later.
    let q = s.router.queue().expect("queue");
    if c.want_kind == FailureKind::Connect {
        assert!(ans.queued.is_some(), "{}", c.name);
        let pending = q.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].request, req);
        assert_eq!(route[0]["queued"], pending[0].id);
    } else {
        assert!(ans.queued.is_none() && q.is_empty(), "{}", c.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Offline queue end to end
// ---------------------------------------------------------------------------------------------

#[test]
fn offline_then_drain_exactly_once() {
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("cloud answer later")));
    let s = setup("drain", &cloud.base_url(), RouterPolicy::field_worker(), |_| {});
    s.online.store(false, Ordering::SeqCst);
    let local = FakeLocal::new(4096);
    let req = benign();
    let ans = s.router.answer(&local, &req, &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.decision.reasons, vec![Reason::AppRequested, Reason::Offline]);
    assert_eq!(ans.text, expected_local(&req));
    let id = ans.queued.expect("queued");
    assert!(cloud.requests().is_empty(), "nothing sent while offline");

    // Still offline: drain refuses without sending.
    assert!(s.router.drain_queue().is_err());
    assert!(cloud.requests().is_empty());

    // Back online: one send, the answer is stored under the id.
    s.online.store(true, Ordering::SeqCst);
    let rep = s.router.drain_queue().expect("drain");
    assert_eq!(rep.answered, vec![id]);
    assert_eq!(rep.remaining, 0);
    assert_eq!(cloud.requests().len(), 1);
    let answers = s.router.queue().expect("q").answers();
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].id, answers[0].text.as_str()), (id, "cloud answer later"));
    assert_eq!(answers[0].request, req);

    // Draining again sends nothing; acknowledging removes it; acknowledging twice is harmless.
    let rep = s.router.drain_queue().expect("drain");
    assert!(rep.answered.is_empty());
    assert_eq!(cloud.requests().len(), 1);
    let q = s.router.queue().expect("q");
    assert_eq!(q.ack(id).ok(), Some(true));
    assert_eq!(q.ack(id).ok(), Some(false));
    assert!(q.is_empty());

    // A queued body went through prepare_request (audited), like any other egress.
    let lines = audit_of(&s);
    assert_eq!(events(&lines, "egress").len(), 1);
    assert_eq!(
        events(&lines, "queue").iter().map(|v| v["op"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        vec!["enqueued", "answered"]
    );
}

#[test]
fn queue_not_used_without_opt_in_or_for_sensitive_requests() {
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("x")));
    // Opted out (cloud_assist): offline => local answer only.
    let s = setup("no-optin", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {});
    s.online.store(false, Ordering::SeqCst);
    let ans =
        s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut RecordingSink::default()).expect("answer");
    assert!(ans.queued.is_none());
    assert!(s.router.queue().expect("q").is_empty());
    // Opted in but sensitive: never queued (the policy keeps it local for sensitivity, not offline).
    let s = setup("sensitive-offline", &cloud.base_url(), RouterPolicy::field_worker(), |_| {});
    s.online.store(false, Ordering::SeqCst);
    let req = ChatRequest::user("Email jane.doe.1984@gmail.com my results, phone +44 7911 123456");
    let ans = s.router.answer(&FakeLocal::new(4096), &req, &asked(), &mut RecordingSink::default()).expect("answer");
    assert!(ans.decision.reasons.contains(&Reason::Sensitive));
    assert!(ans.queued.is_none());
    assert!(s.router.queue().expect("q").is_empty());
    assert!(cloud.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The egress invariant
// ---------------------------------------------------------------------------------------------

/// A transport that records what it is handed and answers like a cloud would.
struct RecordingTransport {
    bodies: Mutex<Vec<(Vec<u8>, String)>>,
}

impl Transport for RecordingTransport {
    fn send(&self, request: &OutboundRequest) -> Result<TransportResponse, TransportError> {
        if let Ok(mut b) = self.bodies.lock() {
            b.push((request.body().to_vec(), request.body_sha256().to_string()));
        }
        Ok(TransportResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: Box::new(std::io::Cursor::new(completion_json("recorded").into_bytes())),
        })
    }
}

/// Whatever reaches the transport was produced by `prepare_request`: every body it receives has
/// a matching `egress` audit entry (same SHA-256, computed here independently), sensitive
/// requests never reach it even when the caller bypasses the policy, and the type itself cannot
/// be built elsewhere (see the `compile_fail` doctest on `router::cloud`).
#[test]
fn transport_only_sees_prepared_and_audited_bodies() {
    use sha2::Digest;
    let s = setup("egress", "http://127.0.0.1:9/v1", RouterPolicy::cloud_assist(), |c| c.stream = false);
    let transport = Arc::new(RecordingTransport { bodies: Mutex::new(Vec::new()) });
    let router = s.router.with_transport(transport.clone());
    let local = FakeLocal::new(4096);
    let sensitive = [
        ChatRequest::user("my card is 4539 1488 0343 6467 exp 04/27, can I pay?"),
        ChatRequest::user("summarise this")
            .with_attachment("Patient Jane Doe, DOB 14/03/1981, diagnosed with type 2 diabetes."),
        benign().with_message(Role::Assistant, "ok").with_message(Role::User, "my password is Tr0ub4dor&3xyz!"),
    ];
    for r in &sensitive {
        let a = router.answer(&local, r, &asked(), &mut RecordingSink::default()).expect("answer");
        assert_eq!(a.served_by, Target::Local);
    }
    for i in 0..3 {
        let r = ChatRequest::user(format!("give me fun fact number {i} about octopuses"));
        let a = router.answer(&local, &r, &asked(), &mut RecordingSink::default()).expect("answer");
        assert_eq!(a.served_by, Target::Cloud);
    }
    // Bypass the policy entirely: the client still refuses at prepare_request.
    let audit = AuditLog::open(s.dir.join("direct.jsonl")).expect("audit");
    let client = CloudClient::new(CloudConfig::new("http://127.0.0.1:9/v1", "m")).expect("client");
    for r in &sensitive {
        let f = client.complete(transport.as_ref(), &audit, r, &mut |_| true).expect_err("must refuse");
        assert_eq!(f.kind, FailureKind::PolicyDenied);
    }
    assert_eq!(events(&audit_lines(&s.dir.join("direct.jsonl")), "egress_denied").len(), sensitive.len());
    assert!(events(&audit_lines(&s.dir.join("direct.jsonl")), "egress").is_empty());

    let bodies = transport.bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(bodies.len(), 3, "only the benign requests reached the transport");
    let lines = audit_lines(&s.dir.join("audit.jsonl"));
    let audited: Vec<String> =
        events(&lines, "egress").iter().map(|v| v["body_sha256"].as_str().unwrap_or("").to_string()).collect();
    for (body, claimed) in &bodies {
        let sha = hex::encode(sha2::Sha256::digest(body));
        assert_eq!(&sha, claimed);
        assert!(audited.contains(&sha), "a body reached the transport without an egress audit entry");
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("4539") && !text.contains("Tr0ub4dor"), "sensitive text reached the transport");
    }
}

#[test]
fn prepare_request_rechecks_the_final_body() {
    let dir = temp_dir("prepare");
    let audit = AuditLog::open(dir.join("a.jsonl")).expect("audit");
    let cfg = CloudConfig::new("https://api.example.com/v1", "m");
    // Personal data split across parts (a name in the system prompt, a phone in an attachment).
    let req = ChatRequest::user("what should I write back?")
        .with_system("The user is Jane Doe.")
        .with_attachment("Call me back on +44 7911 123456");
    let err = prepare_request(&cfg, &req, true, &audit).expect_err("refused");
    assert!(matches!(err, edgewise_core::Error::PolicyDenied { .. }));
    assert!(!err.to_string().contains("7911"), "error text names categories, not data");
    let ok = prepare_request(&cfg, &benign(), true, &audit).expect("benign");
    assert_eq!(ok.url(), "https://api.example.com:443/v1/chat/completions");
    assert!(ok.is_stream());
    let dbg = format!("{ok:?}");
    assert!(!dbg.contains("rainbows"), "Debug hides the body");
    let lines = audit_lines(&dir.join("a.jsonl"));
    assert_eq!(events(&lines, "egress_denied").len(), 1);
    assert_eq!(events(&lines, "egress").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Audit canary, stats, fail closed
// ---------------------------------------------------------------------------------------------

#[test]
fn audit_log_never_contains_prompt_or_answer_text() {
    const CANARY: &str = "purplezebracanary";
    let cloud = FakeCloud::start(|n| match n {
        0 => Behavior::Sse {
            events: vec![sse_delta("purplezebracanary answer"), sse_finish(), "data: [DONE]\n\n".into()],
            gap: Duration::ZERO,
        },
        _ => Behavior::Sse { events: vec![sse_delta("purplezebracanary partial")], gap: Duration::ZERO },
    });
    let s = setup("canary", &cloud.base_url(), RouterPolicy::field_worker(), |c| c.max_retries = 0);
    let local = FakeLocal::new(4096);
    let prompt = ChatRequest::user(format!("tell me about the {CANARY} project"))
        .with_system(format!("{CANARY} system"))
        .with_attachment(format!("{CANARY} doc"));
    // Cloud success, cloud fallback, local-only, sensitive, offline+queued.
    for meta in [asked(), asked(), RequestMeta::default()] {
        s.router.answer(&local, &prompt, &meta, &mut RecordingSink::default()).expect("answer");
    }
    let sens = ChatRequest::user(format!("{CANARY}: reach me at jane.doe.1984@gmail.com"));
    s.router.answer(&local, &sens, &asked(), &mut RecordingSink::default()).expect("answer");
    s.online.store(false, Ordering::SeqCst);
    let ans = s.router.answer(&local, &prompt, &asked(), &mut RecordingSink::default()).expect("answer");
    assert!(ans.queued.is_some());

    let raw = std::fs::read_to_string(s.dir.join("audit.jsonl")).expect("audit");
    assert_eq!(raw.lines().filter(|l| l.contains("\"route\"")).count(), 5);
    assert!(!raw.to_lowercase().contains(CANARY), "canary leaked into the audit log");
    assert!(!raw.contains("CANARYKEY"), "API key leaked into the audit log");
    assert!(!raw.contains("jane.doe"));

    let stats = AuditStats::from_path(s.dir.join("audit.jsonl")).expect("stats");
    assert_eq!(stats.decisions, 5);
    assert_eq!(stats.by_served_by.get("cloud"), Some(&1));
    assert_eq!(stats.by_served_by.get("local"), Some(&4));
    assert_eq!(stats.fallbacks.get("truncated"), Some(&1));
    assert_eq!(stats.by_reason.get("sensitive"), Some(&1));
    assert_eq!(stats.by_reason.get("offline"), Some(&1));
    assert_eq!(stats.by_category.get("email"), Some(&1));
    assert_eq!(stats.queued, 1);
    assert!(stats.cost_avoided_usd > 0.0);
    assert_eq!(stats.egress_requests, 2);
    assert_eq!(stats.malformed_lines, 0);
    assert!(!stats.render_text().contains(CANARY));
}

/// A local model whose token counter panics: the decision path fails, so the request stays
/// local (and is still answered).
struct PanickyCounter(FakeLocal);

impl LocalModel for PanickyCounter {
    fn generate(&self, r: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> edgewise_core::Result<LocalAnswer> {
        self.0.generate(r, sink)
    }
    fn context_limit(&self) -> usize {
        4096
    }
    fn count_tokens(&self, _: &str) -> usize {
        panic!("tokenizer exploded")
    }
}

#[test]
fn decision_errors_fail_closed() {
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("x")));
    let s = setup("failclosed", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {});
    let req = benign();
    let ans = s
        .router
        .answer(&PanickyCounter(FakeLocal::new(4096)), &req, &asked(), &mut RecordingSink::default())
        .expect("answer");
    assert_eq!(ans.decision.target, Target::Local);
    assert_eq!(ans.decision.reasons, vec![Reason::DecisionError]);
    assert_eq!(ans.text, expected_local(&req));

    // A probe that errors, and one that panics.
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let r = setup("failclosed2", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {}).router.with_reachability(
        Arc::new(move |_: &str| {
            c2.fetch_add(1, Ordering::SeqCst);
            Err(edgewise_core::Error::CloudUnavailable { reason: "probe".into() })
        }),
    );
    let d = r.decide(&FakeLocal::new(4096), &req, &asked());
    assert_eq!((d.target, d.reasons), (Target::Local, vec![Reason::DecisionError]));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let r = r.with_reachability(Arc::new(|_: &str| -> edgewise_core::Result<bool> { panic!("probe panicked") }));
    assert_eq!(r.decide(&FakeLocal::new(4096), &req, &asked()).target, Target::Local);
    // A non-finite confidence signal from the caller.
    let meta = RequestMeta { cloud_requested: false, local_mean_logprob: Some(f32::NAN) };
    assert_eq!(s.router.decide(&FakeLocal::new(4096), &req, &meta).reasons, vec![Reason::DecisionError]);
    assert!(cloud.requests().is_empty(), "nothing left the device");
}

#[test]
fn context_and_low_confidence_triggers_escalate_through_the_router() {
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("big model answer")));
    let s = setup("triggers", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| c.stream = false);
    let long = ChatRequest::user("word ".repeat(300));
    let ans = s
        .router
        .answer(&FakeLocal::new(128), &long, &RequestMeta::default(), &mut RecordingSink::default())
        .expect("answer");
    assert_eq!((ans.served_by, ans.decision.reasons.clone()), (Target::Cloud, vec![Reason::ContextExceedsLocal]));
    let meta = RequestMeta { cloud_requested: false, local_mean_logprob: Some(-3.5) };
    let ans = s.router.answer(&FakeLocal::new(4096), &benign(), &meta, &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.decision.reasons, vec![Reason::LowLocalConfidence]);
    let ans = s
        .router
        .answer(&FakeLocal::new(4096), &benign(), &RequestMeta::default(), &mut RecordingSink::default())
        .expect("answer");
    assert_eq!((ans.served_by, ans.decision.reasons), (Target::Local, vec![Reason::NoEscalationReason]));
    assert_eq!(cloud.requests().len(), 2);
}

#[test]
fn cancel_from_the_sink_stops_the_cloud_stream() {
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: (0..50).map(|i| sse_delta(&format!("w{i} "))).collect(),
        gap: Duration::from_millis(5),
    });
    let s = setup("cancel", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {});
    let mut n = 0;
    let mut sink = |_: &str| {
        n += 1;
        n < 3
    };
    let ans = s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut sink).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud);
    assert_eq!(ans.finish_reason, edgewise_core::router::FinishReason::Cancelled);
    assert_eq!(ans.text, "w0 w1 w2 ");
    assert!(ans.fallback.is_none());
}

#[test]
fn default_transport_is_ureq() {
    // Sanity: the default transport talks to a real socket (the fake cloud) on its own.
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("direct")));
    let dir = temp_dir("ureq");
    let audit = AuditLog::open(dir.join("a.jsonl")).expect("audit");
    let mut cfg = CloudConfig::new(cloud.base_url(), "m");
    cfg.stream = false;
    let client = CloudClient::new(cfg).expect("client");
    let a = client.complete(&UreqTransport::new(), &audit, &benign(), &mut |_| true).expect("answer");
    assert_eq!(a.text, "direct");
}

// ---------------------------------------------------------------------------------------------
// Hardening (issue 20): endless answers, hanging clouds, the key in logs, proxies
// ---------------------------------------------------------------------------------------------

/// Far past any limit (the client's default body cap is 16 MiB); the server then holds the
/// connection open in silence, so to the client the stream never ends.
const FLOOD_BYTES: usize = 256 * 1024 * 1024;

/// Runs `req` against a cloud that behaves as `behavior`, with a generous overall deadline (the
/// budget, not the clock, must stop an endless answer), and checks the local fallback.
fn flood_case(name: &str, behavior: Behavior, stream: bool, req: &ChatRequest, want: FailureKind) {
    let cloud = FakeCloud::start(move |_| behavior.clone());
    let s = setup(name, &cloud.base_url(), RouterPolicy::cloud_assist(), |c| {
        c.stream = stream;
        c.request_timeout = Duration::from_secs(20);
        c.first_byte_timeout = Duration::from_secs(5);
    });
    let local = FakeLocal::new(4096);
    let mut sink = RecordingSink::default();
    let started = std::time::Instant::now();
    let ans = s.router.answer(&local, req, &asked(), &mut sink).expect("answer");
    let took = started.elapsed();
    assert_eq!(ans.served_by, Target::Local, "{name}");
    assert_eq!(ans.text, expected_local(req), "{name}");
    assert_eq!(sink.shown, expected_local(req), "{name}: the sink ends with the local answer only");
    let fb = ans.fallback.clone().expect("fallback");
    assert_eq!(fb.kind, want, "{name}");
    assert_eq!(fb.attempts, 1, "{name}: an oversized answer is not retried");
    assert_eq!(sink.resets, usize::from(fb.discarded_chars > 0), "{name}");
    assert!(took < Duration::from_secs(10), "{name}: took {took:?}");
    // What the client accepted is bounded: the server could push at most the cap plus what the
    // socket buffers held before the client hung up.
    let sent = cloud.sent.load(Ordering::SeqCst);
    eprintln!("{name}: {:?} in {took:?}, server pushed {} KiB", fb.kind, sent / 1024);
    assert!(sent < 64 * 1024 * 1024, "{name}: the server pushed {sent} bytes");
    assert_eq!(events(&audit_of(&s), "route")[0]["fallback"], want.as_str(), "{name}");
    if let Some(max) = req.max_tokens {
        let budget = edgewise_core::router::cloud::answer_budget(max);
        assert!(fb.discarded_chars <= budget, "{name}: {} chars shown > budget {budget}", fb.discarded_chars);
    }
}

/// Item 2: a cloud that streams valid SSE without end is cut at the request's `max_tokens`
/// budget (or the body cap when there is none) within a second or so, and the device answers.
#[test]
fn endless_cloud_answers_are_cut_by_the_answer_budget() {
    let bounded = ChatRequest { max_tokens: Some(64), ..benign() };
    let cases = [
        // Valid content deltas without end, max_tokens 64: cut after ~1.3 KB of text.
        (
            "flood-max-tokens",
            Behavior::SseFlood { event: sse_delta("all work and no play "), max_bytes: FLOOD_BYTES },
            true,
            bounded.clone(),
        ),
        // No max_tokens: the 16 MiB body cap stops it.
        (
            "flood-no-max-tokens",
            Behavior::SseFlood { event: sse_delta("all work and no play "), max_bytes: FLOOD_BYTES },
            true,
            benign(),
        ),
        // No text at all, just keep-alive comments and role-only deltas without end.
        (
            "flood-keepalive",
            Behavior::SseFlood {
                event: ": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n".into(),
                max_bytes: FLOOD_BYTES,
            },
            true,
            bounded.clone(),
        ),
        // A non-streaming completion whose content never ends.
        ("flood-json", Behavior::JsonFlood { max_bytes: FLOOD_BYTES }, false, benign()),
        // A complete, valid answer that is simply far longer than max_tokens allows.
        ("long-json", Behavior::Json(completion_json(&"word ".repeat(2000))), false, bounded.clone()),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(name, b, stream, req)| {
                scope.spawn(move || flood_case(name, b.clone(), *stream, req, FailureKind::TooLarge))
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let peak = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
        eprintln!("endless clouds: peak RSS of the test process {}", peak.trim_start_matches("VmHWM:").trim());
    }
    // Within budget the same stream shape is served by the cloud.
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: vec![sse_delta(&"x".repeat(64 * 16)), sse_finish(), "data: [DONE]\n\n".into()],
        gap: Duration::ZERO,
    });
    let s = setup("flood-within", &cloud.base_url(), RouterPolicy::cloud_assist(), |_| {});
    let ans =
        s.router.answer(&FakeLocal::new(4096), &bounded, &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud);
}

/// Item 6: a cloud that accepts and never answers costs one first-byte deadline in all (not
/// `attempts x timeout`), with the default retries and overall deadline left as they are.
#[test]
fn hanging_cloud_costs_one_first_byte_deadline() {
    let cloud = FakeCloud::start(|_| Behavior::HangForever);
    let dir = temp_dir("hang-deadline");
    let mut cfg = CloudConfig::new(cloud.base_url(), "gpt-test");
    cfg.api_key = Some(ApiKey::new(KEY));
    cfg.first_byte_timeout = Duration::from_secs(2);
    assert_eq!((cfg.max_retries, cfg.request_timeout), (2, Duration::from_secs(60)), "defaults left as they are");
    let config = RouterConfig {
        policy: RouterPolicy::cloud_assist(),
        cloud: Some(cfg),
        ..RouterConfig::local_only(dir.to_path_buf())
    };
    let router = Router::new(config).expect("router").with_reachability(Arc::new(|_: &str| Ok(true)));
    let req = benign();
    let started = std::time::Instant::now();
    let ans = router.answer(&FakeLocal::new(4096), &req, &asked(), &mut RecordingSink::default()).expect("answer");
    let took = started.elapsed();
    assert_eq!((ans.served_by, ans.text.as_str()), (Target::Local, expected_local(&req).as_str()));
    let fb = ans.fallback.expect("fallback");
    assert_eq!((fb.kind, fb.attempts), (FailureKind::Timeout, 1));
    assert!(took >= Duration::from_millis(1900), "gave up early: {took:?}");
    assert!(took < Duration::from_millis(3500), "deadline 2 s + slack, took {took:?}");
    assert_eq!(cloud.requests().len(), 1);

    // The defaults: 10 s to the first byte, 60 s overall.
    let d = CloudConfig::new("https://api.example.com/v1", "m");
    assert_eq!((d.first_byte_timeout, d.request_timeout), (Duration::from_secs(10), Duration::from_secs(60)));
}

/// The first-byte deadline bounds the wait for the answer to start, not a slow answer that is
/// streaming: 12 pieces 250 ms apart (3 s) pass a 1 s first-byte deadline.
#[test]
fn first_byte_deadline_does_not_cut_a_streaming_answer() {
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: (0..12)
            .map(|i| sse_delta(&format!("w{i} ")))
            .chain([sse_finish(), "data: [DONE]\n\n".into()])
            .collect(),
        gap: Duration::from_millis(250),
    });
    let s = setup("slow-but-alive", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| {
        c.first_byte_timeout = Duration::from_secs(1);
        c.request_timeout = Duration::from_secs(10);
    });
    let ans =
        s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud);
    assert!(ans.text.starts_with("w0 w1 ") && ans.text.ends_with("w11 "));
}

/// Retries stop at the first-byte deadline too: a cloud that answers 503 after 400 ms each time
/// gets the attempts that fit in 1 s, not `1 + max_retries` of them.
#[test]
fn retries_stop_at_the_first_byte_deadline() {
    let slow_503 = FakeCloud::start(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Behavior::Status(503)
    });
    let s = setup("retry-deadline", &slow_503.base_url(), RouterPolicy::cloud_assist(), |c| {
        c.first_byte_timeout = Duration::from_secs(1);
        c.request_timeout = Duration::from_secs(10);
        c.max_retries = 10;
    });
    let started = std::time::Instant::now();
    let ans =
        s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut RecordingSink::default()).expect("answer");
    let took = started.elapsed();
    let fb = ans.fallback.expect("fallback");
    // The last attempt may be the one the deadline cut.
    assert!(matches!(fb.kind, FailureKind::HttpStatus | FailureKind::Timeout), "{:?}", fb.kind);
    assert!((2..=3).contains(&fb.attempts), "attempts {}", fb.attempts);
    assert!(took < Duration::from_millis(2000), "took {took:?}");
}

/// Item 12: with `RUST_LOG=trace` (or the HTTP stack's own targets at trace) the CLI never prints
/// the API key, although the request carrying it did go out. Needs the model (`run` loads it
/// before routing).
#[test]
fn cli_trace_logs_never_print_the_api_key() {
    let Some(model) = common_model::model_path() else { return };
    let cloud = FakeCloud::start(|_| Behavior::Sse {
        events: vec![sse_delta("Rain"), sse_delta("bows."), sse_finish(), "data: [DONE]\n\n".into()],
        gap: Duration::ZERO,
    });
    // ureq dumps the wire in 16-byte rows (hex, then ASCII), so a leak shows as pieces of the
    // key: look for any 8 consecutive characters of a long random key.
    const CLI_KEY: &str = "sk-cli-Zq7vW3xR9tL2mN8pK4hJ6gF1dS5aY0";
    let pieces: Vec<&str> = (0..=CLI_KEY.len() - 8).map(|i| &CLI_KEY[i..i + 8]).collect();
    let dir = temp_dir("cli-trace");
    for filter in ["trace", "ureq=trace,ureq_proto=trace,edgewise=info", "ureq_proto::util=trace,edgewise=info"] {
        let before = cloud.requests().len();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewise"))
            .args(["run", "--backend", "cpu", "--max-tokens", "4", "--escalate", "--cloud-model", "gpt-test"])
            .arg("--model")
            .arg(&model)
            .arg("--cloud")
            .arg(cloud.base_url())
            .arg("--router-dir")
            .arg(dir.as_os_str())
            .arg("explain how rainbows form")
            .env("RUST_LOG", filter)
            .env("EDGEWISE_CLOUD_API_KEY", CLI_KEY)
            .env_remove("HTTP_PROXY")
            .env_remove("ALL_PROXY")
            .output()
            .expect("run the edgewise binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "RUST_LOG={filter}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Rainbows.", "RUST_LOG={filter}: served by the cloud");
        // The key did go out, in the Authorization header...
        let reqs = cloud.requests();
        assert_eq!(reqs.len(), before + 1);
        let auth =
            reqs[before].headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.clone());
        assert_eq!(auth, Some(format!("Bearer {CLI_KEY}")));
        // ...logging was on...
        assert!(stderr.contains("loaded "), "RUST_LOG={filter}: nothing logged?\n{stderr}");
        // ...and no log line carries any piece of it.
        let leaked: Vec<&&str> = pieces.iter().filter(|p| stderr.contains(**p)).collect();
        assert!(leaked.is_empty(), "RUST_LOG={filter}: pieces of the API key in stderr: {leaked:?}");
    }
}

/// Item 6 in the CLI: `--cloud-timeout SECS` bounds a cloud that accepts and never answers. The
/// same run against a refused port (an instant local answer) is the baseline, so model loading
/// and generation time cancel out.
#[test]
fn cli_cloud_timeout_bounds_a_hanging_cloud() {
    let Some(model) = common_model::model_path() else { return };
    let hang = FakeCloud::start(|_| Behavior::HangForever);
    let dir = temp_dir("cli-timeout");
    let run = |url: &str| {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewise"))
            .args(["run", "--backend", "cpu", "--max-tokens", "4", "--escalate", "--cloud-model", "gpt-test"])
            .args(["--format", "json", "--cloud-timeout", "1.5"])
            .arg("--model")
            .arg(&model)
            .arg("--cloud")
            .arg(url)
            .arg("--router-dir")
            .arg(dir.as_os_str())
            .arg("explain how rainbows form")
            .env_remove("RUST_LOG")
            .output()
            .expect("run the edgewise binary");
        let took = started.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        (took, j)
    };
    // Refused: the reachability probe fails, so the answer is local at once (no cloud call).
    let (baseline, j) = run(&format!("http://127.0.0.1:{}/v1", refused_port()));
    assert_eq!(j["served_by"], "local");
    let (took, j) = run(&hang.base_url());
    assert_eq!((j["served_by"].as_str(), j["fallback"]["kind"].as_str()), (Some("local"), Some("timeout")), "{j}");
    assert_eq!(j["fallback"]["attempts"], 1);
    let extra = took.saturating_sub(baseline);
    assert!(extra < Duration::from_secs(5), "--cloud-timeout 1.5 cost {extra:?} over the baseline ({baseline:?})");
    assert!(took > Duration::from_millis(1400), "{took:?}");
    // Out-of-range values are refused by the parser.
    for bad in ["0", "-1", "nan", "inf", "4000"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgewise"))
            .args(["run", "--cloud", "http://127.0.0.1:9/v1", "--cloud-model", "m", "--cloud-timeout", bad, "hi"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "--cloud-timeout {bad} accepted");
    }
}

/// Item 13: a plain-http endpoint with an API key anywhere but loopback is a configuration error
/// before anything connects, even with `allow_insecure_http`.
#[test]
fn key_over_plain_http_to_non_loopback_is_refused_up_front() {
    let dir = temp_dir("insecure-key");
    let mut cfg = CloudConfig::new("http://10.11.12.13:8080/v1", "gpt-test");
    cfg.api_key = Some(ApiKey::new(KEY));
    cfg.allow_insecure_http = true;
    let err = Router::new(RouterConfig { cloud: Some(cfg.clone()), ..RouterConfig::local_only(dir.to_path_buf()) })
        .err()
        .expect("refused");
    assert!(matches!(err, edgewise_core::Error::InvalidParameter { name: "base_url", .. }), "{err:?}");
    assert!(!err.to_string().contains("CANARYKEY"));
    assert!(CloudClient::new(cfg.clone()).is_err());
    // prepare_request, the one egress point, refuses too: nothing is audited as sent, and a
    // transport is never handed the request.
    let audit = AuditLog::open(dir.join("a.jsonl")).expect("audit");
    assert!(prepare_request(&cfg, &benign(), true, &audit).is_err());
    assert!(events(&audit_lines(&dir.join("a.jsonl")), "egress").is_empty());
    // Loopback keeps working with a key; a non-loopback host works over plain http without one.
    let ok = CloudConfig { base_url: "http://127.0.0.1:8080/v1".into(), ..cfg.clone() };
    assert!(ok.validate().is_ok());
    let keyless = CloudConfig { api_key: None, ..cfg };
    assert!(keyless.validate().is_ok());
}

/// A loopback "proxy" that records the first line of every connection and closes it.
struct FakeProxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeProxy {
    fn start() -> Self {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                let _ = std::io::BufReader::new(&conn).read_line(&mut line);
                if let Ok(mut v) = s2.lock() {
                    v.push(line.trim_end().to_string());
                }
                let _ =
                    (&conn).write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Self { addr, seen }
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

use std::io::Write as _;

const PROXY_CHILD_ENV: &str = "EDGEWISE_TEST_PROXY_CHILD";

/// Item 13: proxy environment variables are ignored. Runs itself again as a child process with
/// `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` pointing at a loopback "proxy" (setting them in this
/// process would leak into the tests running beside it): the cloud is reached directly and the
/// proxy sees nothing, neither the key nor the prompt.
#[test]
fn proxy_environment_variables_are_ignored() {
    if let Ok(proxy_url) = std::env::var(PROXY_CHILD_ENV) {
        let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("direct answer")));
        let s = setup("proxy-env", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| c.stream = false);
        let ans =
            s.router.answer(&FakeLocal::new(4096), &benign(), &asked(), &mut RecordingSink::default()).expect("answer");
        assert_eq!(ans.served_by, Target::Cloud, "fallback: {:?}", ans.fallback);
        assert_eq!(cloud.requests().len(), 1);
        // The queue path and a bare client with the default transport, too.
        let audit = AuditLog::open(s.dir.join("direct.jsonl")).expect("audit");
        let mut cfg = CloudConfig::new(cloud.base_url(), "m");
        cfg.stream = false;
        cfg.api_key = Some(ApiKey::new(KEY));
        let a =
            CloudClient::new(cfg).expect("client").complete(&UreqTransport::new(), &audit, &benign(), &mut |_| true);
        assert_eq!(a.map(|a| a.text).ok().as_deref(), Some("direct answer"));
        println!("proxy child ok (HTTP_PROXY={proxy_url})");
        return;
    }
    let proxy = FakeProxy::start();
    let proxy_url = format!("http://{}", proxy.addr);
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["proxy_environment_variables_are_ignored", "--exact", "--nocapture", "--test-threads", "1"])
        .env(PROXY_CHILD_ENV, &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env(var, &proxy_url);
    }
    let out = cmd.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(proxy.seen().is_empty(), "the proxy was used: {:?}", proxy.seen());
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("proxy child ok"), "the child test did not run:\n{stdout}");
}

/// A proxy the app configures is used (for https only): the loopback "proxy" gets a `CONNECT` to
/// the endpoint's host, and the request itself (key, prompt) would travel inside TLS.
#[test]
fn a_configured_proxy_is_used_for_https() {
    let proxy = FakeProxy::start();
    let proxy_url = format!("http://{}", proxy.addr);
    let s = setup("proxy-configured", "https://api.example.invalid/v1", RouterPolicy::cloud_assist(), |c| {
        c.proxy = Some(proxy_url.clone());
        c.max_retries = 0;
    });
    let req = benign();
    let ans = s.router.answer(&FakeLocal::new(4096), &req, &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.served_by, Target::Local);
    let seen = proxy.seen();
    assert_eq!(seen, vec!["CONNECT api.example.invalid:443 HTTP/1.1".to_string()]);
    // Not for plain http, where the proxy would read the request.
    let dir = temp_dir("proxy-http");
    let mut cfg = CloudConfig::new("http://127.0.0.1:8080/v1", "m");
    cfg.proxy = Some(proxy_url);
    let err = Router::new(RouterConfig { cloud: Some(cfg), ..RouterConfig::local_only(dir.to_path_buf()) }).err();
    assert!(matches!(err, Some(edgewise_core::Error::InvalidParameter { name: "proxy", .. })), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Tools through the router
// ---------------------------------------------------------------------------------------------

/// A local model with tools: always one `lookup_order` call (the default [`LocalModel`] has no
/// constrained decoding).
struct FakeToolLocal(FakeLocal);

impl LocalModel for FakeToolLocal {
    fn generate(&self, r: &ChatRequest, sink: &mut dyn FnMut(&str) -> bool) -> edgewise_core::Result<LocalAnswer> {
        self.0.generate(r, sink)
    }
    fn generate_structured(
        &self,
        request: &ChatRequest,
        output: &edgewise_core::router::StructuredRequest,
        _sink: &mut dyn FnMut(&str) -> bool,
    ) -> edgewise_core::Result<edgewise_core::router::StructuredAnswer> {
        assert!(output.tools.is_some(), "the router hands the tools to the local model");
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let call =
            ToolCall { id: "call_0_0".into(), name: "lookup_order".into(), arguments: serde_json::json!({"order": 1}) };
        let text = r#"{"tool_calls":[{"name":"lookup_order","arguments":{"order":1}}]}"#.to_string();
        let prompt_tokens = request.parts().map(|p| self.0.count_tokens(p)).sum();
        Ok(edgewise_core::router::StructuredAnswer {
            answer: LocalAnswer {
                text,
                prompt_tokens,
                completion_tokens: 9,
                finish_reason: edgewise_core::router::FinishReason::Stop,
            },
            tool_calls: vec![call],
            valid: Some(true),
        })
    }
    fn context_limit(&self) -> usize {
        self.0.context_limit()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

use edgewise_core::router::ChatMessage;
use edgewise_core::structured::tools::{ToolCall, Tools};

/// A tool conversation: the tools (with `description`), the user's question, the model's call
/// (`args`) and the tool's result.
fn tool_request(description: &str, args: serde_json::Value, result: &str) -> ChatRequest {
    let tools = Tools::from_json(
        &serde_json::json!([{"type": "function", "function": {"name": "lookup_order", "description": description,
            "parameters": {"type": "object", "properties": {"order": {"type": "integer"}, "note": {"type": "string", "description": "free text"}}}}}])
        .to_string(),
    )
    .expect("tools");
    let mut r = ChatRequest::user("where is my order of garden chairs?");
    r.messages.push(ChatMessage::tool_calls(vec![ToolCall {
        id: "call_7".into(),
        name: "lookup_order".into(),
        arguments: args,
    }]));
    r.messages.push(ChatMessage::tool_result("call_7", result));
    r.tools = Some(tools);
    r
}

fn clean_tool_request() -> ChatRequest {
    tool_request(
        "Looks up a shop order by its number.",
        serde_json::json!({"order": 1042}),
        r#"{"status": "shipped", "eta_days": 2}"#,
    )
}

/// A clean request with tools may go to the cloud: the body carries OpenAI's `tools`,
/// `tool_choice`, the assistant's `tool_calls` (arguments as a JSON string) and the `tool`
/// message; the cloud's calls come back parsed, streamed or not.
#[test]
fn a_clean_tool_request_leaves_with_its_tools() {
    let call_json = serde_json::json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order\": 1043}"}}]},
            "finish_reason": "tool_calls"}]
    })
    .to_string();
    let delta = |d: serde_json::Value| {
        format!("data: {}\n\n", serde_json::json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]}))
    };
    let events = vec![
        delta(
            serde_json::json!({"tool_calls": [{"index": 0, "id": "call_y", "type": "function", "function": {"name": "lookup_order", "arguments": ""}}]}),
        ),
        delta(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"order\""}}]})),
        delta(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": ": 1044}"}}]})),
        sse_finish(),
        "data: [DONE]\n\n".to_string(),
    ];
    let cloud = FakeCloud::start(move |n| match n {
        0 => Behavior::Json(call_json.clone()),
        _ => Behavior::Sse { events: events.clone(), gap: Duration::ZERO },
    });
    for (stream, order) in [(false, 1043), (true, 1044)] {
        let s = setup(&format!("tools-clean-{stream}"), &cloud.base_url(), RouterPolicy::cloud_assist(), |c| {
            c.stream = stream
        });
        let local = FakeToolLocal(FakeLocal::new(4096));
        let ans =
            s.router.answer(&local, &clean_tool_request(), &asked(), &mut RecordingSink::default()).expect("answer");
        assert_eq!(ans.served_by, Target::Cloud, "{:?}", ans.decision);
        assert_eq!(ans.tool_calls.len(), 1);
        assert_eq!(ans.tool_calls[0].name, "lookup_order");
        assert_eq!(ans.tool_calls[0].arguments, serde_json::json!({"order": order}));
        assert_eq!(local.0.calls.load(Ordering::SeqCst), 0);
    }
    let reqs = cloud.requests();
    assert_eq!(reqs.len(), 2);
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).expect("json");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "lookup_order");
    assert_eq!(body["tools"][0]["function"]["parameters"]["properties"]["order"]["type"], "integer");
    assert_eq!(body["tool_choice"], "auto");
    let msgs = body["messages"].as_array().expect("messages");
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], serde_json::Value::Null);
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "call_7");
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["arguments"], "{\"order\":1042}");
    assert_eq!((msgs[2]["role"].as_str(), msgs[2]["tool_call_id"].as_str()), (Some("tool"), Some("call_7")));
    assert_eq!(msgs[2]["content"], r#"{"status": "shipped", "eta_days": 2}"#);
}

/// Sensitive data anywhere in the tools keeps the request on the device: in a tool result, in a
/// call's arguments (as a string or as a bare number), in a tool's description or parameter
/// schema, in a call id; so does a schema too deep to inspect. The decision itself keeps them
/// local (no egress refused at the door, nothing reaches the cloud), the local model answers
/// with its call, and the audit log holds no text of any of it.
#[test]
fn a_secret_anywhere_in_the_tools_keeps_the_request_local() {
    const CANARY: &str = "tealotterparcel";
    let cloud = FakeCloud::start(|_| Behavior::Json(completion_json("cloud answer")));
    let s = setup("tools-secret", &cloud.base_url(), RouterPolicy::cloud_assist(), |c| c.stream = false);
    let local = FakeToolLocal(FakeLocal::new(4096));
    let card = "4539 1488 0343 6467";
    let desc = "Looks up a shop order by its number.";
    let clean_args = serde_json::json!({"order": 1042});
    let clean_result = r#"{"status": "shipped"}"#;
    let mut deep = serde_json::json!({"type": "string"});
    for _ in 0..40 {
        deep = serde_json::json!({"type": "object", "properties": {"x": deep}});
    }
    let mut cases: Vec<(&str, ChatRequest)> = vec![
        (
            "result",
            tool_request(
                desc,
                clean_args.clone(),
                &format!(r#"{{"{CANARY}": "Customer Jane Doe, card {card}, exp 04/27"}}"#),
            ),
        ),
        (
            "result_password",
            tool_request(desc, clean_args.clone(), &format!("{CANARY} login ok, password is Tr0ub4dor&3xyz!")),
        ),
        (
            "argument",
            tool_request(
                desc,
                serde_json::json!({"order": 1042, "note": format!("{CANARY} pay with card {card}")}),
                clean_result,
            ),
        ),
        ("argument_number", tool_request(desc, serde_json::json!({"card_number": 4539148803436467u64}), clean_result)),
        (
            "description",
            tool_request(&format!("{CANARY}: charges card {card} by default."), clean_args.clone(), clean_result),
        ),
    ];
    let mut schema = clean_tool_request();
    if let Some(t) = schema.tools.as_mut() {
        t.tools[0].parameters["properties"]["note"]["description"] =
            serde_json::json!(format!("{CANARY} e.g. jane.doe.1984@gmail.com"));
    }
    cases.push(("schema", schema));
    let mut id = clean_tool_request();
    id.messages[1].tool_calls[0].id = "jane.doe.1984@gmail.com".into();
    id.messages[2].tool_call_id = Some("jane.doe.1984@gmail.com".into());
    cases.push(("call_id", id));
    let mut too_deep = clean_tool_request();
    if let Some(t) = too_deep.tools.as_mut() {
        t.tools[0].parameters["properties"]["note"] = deep;
    }
    cases.push(("too_deep", too_deep));
    for (name, r) in &cases {
        let ans = s.router.answer(&local, r, &asked(), &mut RecordingSink::default()).expect("answer");
        assert_eq!(ans.decision.target, Target::Local, "{name}: {:?}", ans.decision);
        assert!(
            ans.decision.reasons.contains(&Reason::Sensitive) || ans.decision.reasons.contains(&Reason::DecisionError),
            "{name}: {:?}",
            ans.decision
        );
        assert_eq!((ans.served_by, ans.fallback.is_none()), (Target::Local, true), "{name}");
        assert_eq!(ans.tool_calls.len(), 1, "{name}: the local model's call");
    }
    assert!(cloud.requests().is_empty(), "a request with a secret in its tools reached the cloud");
    // The same clean request does leave (the cases differ from it only by the secret).
    let ans = s.router.answer(&local, &clean_tool_request(), &asked(), &mut RecordingSink::default()).expect("answer");
    assert_eq!(ans.served_by, Target::Cloud, "{:?}", ans.decision);
    let raw = std::fs::read_to_string(s.dir.join("audit.jsonl")).expect("audit");
    assert!(
        events(&audit_lines(&s.dir.join("audit.jsonl")), "egress_denied").is_empty(),
        "the decision, not the door, kept them local"
    );
    for needle in
        [CANARY, "4539", "Jane", "jane.doe", "Tr0ub4dor", "lookup_order", "garden", "shipped", "call_7", "order"]
    {
        assert!(!raw.contains(needle), "the audit log holds `{needle}`");
    }
    // Past the policy, the door refuses a body with a secret in a call's arguments too.
    let audit = AuditLog::open(s.dir.join("direct.jsonl")).expect("audit");
    let cfg = CloudConfig::new("http://127.0.0.1:9/v1", "m");
    for (name, r) in &cases[..5] {
        assert!(
            matches!(prepare_request(&cfg, r, false, &audit), Err(edgewise_core::Error::PolicyDenied { .. })),
            "{name}"
        );
    }
    assert!(prepare_request(&cfg, &clean_tool_request(), false, &audit).is_ok());
}

/// The cloud's tool calls are checked against the request's tools like nothing else it says can
/// be: a call of a tool that was not offered, arguments that do not validate against the tool's
/// schema, or text where the choice requires a call, is a failed cloud answer (`invalid_tool_call`)
/// and the device answers instead (its calls are constrained); a valid call passes. Streamed and
/// not.
#[test]
fn invalid_cloud_tool_calls_are_never_passed_on_as_valid() {
    use edgewise_core::structured::tools::ToolChoice;
    let call = |name: &str, args: &str| {
        serde_json::json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_x", "type": "function", "function": {"name": name, "arguments": args}}]},
                "finish_reason": "tool_calls"}]
        })
        .to_string()
    };
    let delta = |d: serde_json::Value| {
        format!("data: {}\n\n", serde_json::json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]}))
    };
    let sse_call = |name: &str, args: &str| Behavior::Sse {
        events: vec![
            delta(
                serde_json::json!({"tool_calls": [{"index": 0, "id": "call_y", "type": "function", "function": {"name": name, "arguments": args}}]}),
            ),
            sse_finish(),
            "data: [DONE]\n\n".to_string(),
        ],
        gap: Duration::ZERO,
    };
    // (case, choice, the cloud's answer not streamed, streamed, valid?)
    let cases: Vec<(&str, ToolChoice, Behavior, Behavior, bool)> = vec![
        (
            "unknown tool",
            ToolChoice::Auto,
            Behavior::Json(call("delete_account", "{}")),
            sse_call("delete_account", "{}"),
            false,
        ),
        (
            "wrong type",
            ToolChoice::Auto,
            Behavior::Json(call("lookup_order", r#"{"order": "soon"}"#)),
            sse_call("lookup_order", r#"{"order": "soon"}"#),
            false,
        ),
        (
            "not offered under none",
            ToolChoice::None,
            Behavior::Json(call("lookup_order", r#"{"order": 5}"#)),
            sse_call("lookup_order", r#"{"order": 5}"#),
            false,
        ),
        (
            "text where a call is required",
            ToolChoice::Required,
            Behavior::Json(completion_json("I looked it up.")),
            Behavior::Sse {
                events: vec![sse_delta("I looked it up."), sse_finish(), "data: [DONE]\n\n".into()],
                gap: Duration::ZERO,
            },
            false,
        ),
        (
            "valid",
            ToolChoice::Auto,
            Behavior::Json(call("lookup_order", r#"{"order": 5}"#)),
            sse_call("lookup_order", r#"{"order": 5}"#),
            true,
        ),
    ];
    for (name, choice, json, sse, valid) in cases {
        for stream in [false, true] {
            let answer = if stream { sse.clone() } else { json.clone() };
            let cloud = FakeCloud::start(move |_| answer.clone());
            let s = setup(&format!("tools-check-{stream}"), &cloud.base_url(), RouterPolicy::cloud_assist(), |c| {
                c.stream = stream;
                c.max_retries = 0;
            });
            let local = FakeToolLocal(FakeLocal::new(4096));
            let mut r = clean_tool_request();
            if let Some(t) = r.tools.as_mut() {
                t.choice = choice.clone();
            }
            let ans = s.router.answer(&local, &r, &asked(), &mut RecordingSink::default()).expect("answer");
            assert_eq!(cloud.requests().len(), 1, "{name}: asked the cloud once");
            if valid {
                assert_eq!((ans.served_by, ans.fallback.is_none()), (Target::Cloud, true), "{name} stream={stream}");
                assert_eq!(ans.tool_calls.len(), 1);
                assert_eq!(ans.tool_calls[0].arguments, serde_json::json!({"order": 5}));
            } else {
                assert_eq!(
                    ans.served_by,
                    Target::Local,
                    "{name} stream={stream}: the invalid cloud answer was passed on"
                );
                assert_eq!(
                    ans.fallback.as_ref().map(|f| f.kind),
                    Some(FailureKind::InvalidToolCall),
                    "{name} stream={stream}"
                );
                assert_eq!(local.0.calls.load(Ordering::SeqCst), 1, "{name}: the device answered");
                assert!(
                    ans.tool_calls
                        .iter()
                        .all(|c| c.name == "lookup_order" && c.arguments == serde_json::json!({"order": 1})),
                    "{name}: only the device's calls"
                );
                let raw = std::fs::read_to_string(s.dir.join("audit.jsonl")).expect("audit");
                assert!(raw.contains("invalid_tool_call"), "{name}: the audit says why");
                assert!(!raw.contains("soon") && !raw.contains("delete_account"), "{name}: no call text in the audit");
            }
        }
    }
}
