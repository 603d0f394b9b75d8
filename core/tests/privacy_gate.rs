//! The privacy gate's learned second stage as the router and the CLI use it (issue #18): a request
//! the rules clear but the classifier flags stays local at every exit (the router's decision, the
//! egress re-scan of the final body, the offline queue); one both clear can leave; the CLI reports
//! which stage decided. Synthetic texts only.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use edgewise_core::router::audit::AuditLog;
use edgewise_core::router::cloud::{prepare_request, CloudConfig};
use edgewise_core::router::policy::{DecisionInput, PolicyEngine, Reachability};
use edgewise_core::router::queue::{OfflineQueue, QueueConfig};
use edgewise_core::router::{pii, ChatRequest, Reason, RequestMeta, RouterPolicy, Target};
use serde_json::Value;

/// Personal data in prose that the rules clear and the shipped classifier blocks.
fn prose_secret() -> &'static str {
    pii::second_stage_example().expect("every candidate is now caught by the rules: add one they miss")
}

fn decide(request: &ChatRequest) -> edgewise_core::router::RouteDecision {
    let probe: Arc<dyn Reachability> = Arc::new(|_: &str| Ok(true));
    let engine = PolicyEngine::new(RouterPolicy::cloud_assist(), probe);
    let meta = RequestMeta { cloud_requested: true, local_mean_logprob: None };
    engine.decide(&DecisionInput {
        request,
        meta: &meta,
        endpoint: Some("http://127.0.0.1:9/v1"),
        prompt_tokens: 40,
        context_limit: 2048,
    })
}

#[test]
fn a_request_only_the_classifier_flags_stays_local() {
    assert!(
        !pii::detector().scan(prose_secret()).sensitive,
        "the rules must clear this text for the test to mean anything"
    );
    assert_eq!(pii::gate().second_stage(), pii::SecondStage::Present);
    let d = decide(&ChatRequest::user(prose_secret()));
    assert_eq!(d.target, Target::Local, "{d:?}");
    assert!(d.reasons.contains(&Reason::Sensitive), "{d:?}");
    assert!(d.categories.is_empty(), "the classifier names no category: {d:?}");
    // In an attachment too.
    let d = decide(&ChatRequest::user("Summarise the attached note.").with_attachment(prose_secret()));
    assert_eq!(d.target, Target::Local, "{d:?}");
    // A harmless request still leaves.
    let d = decide(&ChatRequest::user("What is the capital of France?"));
    assert_eq!(d.target, Target::Cloud, "{d:?}");
}

#[test]
fn cli_privacy_check_reports_the_deciding_stage() {
    let exe = env!("CARGO_BIN_EXE_edgewise");
    let input = format!(
        "{}\n{}\n{}\n",
        r#"{"id": "r", "text": "Call me on +44 7700 900123 after five."}"#,
        serde_json::json!({ "id": "c", "text": prose_secret() }),
        r#"{"id": "h", "text": "What is the capital of Australia?"}"#,
    );
    let mut child = Command::new(exe)
        .args(["privacy-check", "--details"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgewise");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit {:?}", out.status);
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    for word in prose_secret().split_whitespace().filter(|w| w.len() > 3) {
        assert!(!stdout.contains(word) && !String::from_utf8_lossy(&out.stderr).contains(word), "echoed input");
    }
    let v: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(v.len(), 3, "{stdout}");
    assert_eq!(
        (&v[0]["sensitive"], &v[0]["stage"], &v[0]["classifier_score"]),
        (&Value::Bool(true), &Value::from("rules"), &Value::Null)
    );
    assert_eq!(
        (&v[1]["sensitive"], &v[1]["stage"], &v[1]["categories"]),
        (&Value::Bool(true), &Value::from("classifier"), &serde_json::json!([]))
    );
    assert!(v[1]["classifier_score"].as_f64().is_some_and(|p| p > 0.5), "{}", v[1]);
    assert_eq!((&v[2]["sensitive"], &v[2]["stage"]), (&Value::Bool(false), &Value::from("classifier")));
    for l in &v {
        assert_eq!(l["second_stage"], "present");
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgewise-gate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The egress re-scan (the last check before bytes leave, whoever calls it) uses the whole gate:
/// a body only the classifier flags is refused and audited as `egress_denied`.
#[test]
fn egress_refuses_a_body_only_the_classifier_flags() {
    let d = scratch("egress");
    let audit = AuditLog::open(d.join("audit.jsonl")).expect("audit");
    let config = CloudConfig::new("http://127.0.0.1:9/v1", "m");
    for req in [
        ChatRequest::user(prose_secret()),
        ChatRequest::user("Summarise the attached note.").with_attachment(prose_secret()),
        ChatRequest::user("What is the capital of France?").with_system(prose_secret()),
    ] {
        let r = prepare_request(&config, &req, true, &audit);
        assert!(
            matches!(r, Err(edgewise_core::Error::PolicyDenied { .. })),
            "{:?}",
            r.map(|o| o.body_sha256().to_string())
        );
    }
    let ok = prepare_request(&config, &ChatRequest::user("What is the capital of France?"), true, &audit);
    assert!(ok.is_ok(), "a harmless body still leaves");
    let log = std::fs::read_to_string(d.join("audit.jsonl")).expect("log");
    assert_eq!(log.matches("egress_denied").count(), 3, "{log}");
    assert!(!log.contains(prose_secret()), "no text in the audit log");
    let _ = std::fs::remove_dir_all(&d);
}

/// The offline queue refuses to store a request only the classifier flags.
#[test]
fn the_offline_queue_refuses_a_request_only_the_classifier_flags() {
    let d = scratch("enqueue");
    let q = OfflineQueue::open(d.join("q.wal"), QueueConfig::default()).expect("queue");
    let r = q.enqueue(&ChatRequest::user(prose_secret()));
    assert!(matches!(r, Err(edgewise_core::Error::PolicyDenied { .. })), "{r:?}");
    assert!(q.is_empty());
    assert!(q.enqueue(&ChatRequest::user("What is the capital of France?")).is_ok());
    drop(q);
    let _ = std::fs::remove_dir_all(&d);
}
