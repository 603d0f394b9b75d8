//! The privacy gate's learned second stage as the router and the CLI use it (issue #18): a request
//! the rules clear but the classifier flags stays local; one both clear can leave; the CLI reports
//! which stage decided. Synthetic texts only.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use edgewise_core::router::policy::{DecisionInput, PolicyEngine, Reachability};
use edgewise_core::router::{pii, ChatRequest, Reason, RequestMeta, RouterPolicy, Target};
use serde_json::Value;

/// Personal data in prose that the shipped classifier blocks; the tests use the first one the rules
/// (which keep improving) still clear.
const PROSE_SECRETS: &[&str] = &[
    "Our baby Leo was born at 29 weeks and is still in the NICU; write an update for the family group chat.",
    "I lost $12,400 on crypto and haven't told my wife Priya. How do I tell her?",
    "my bank just sent me the code 482913 and a man on the phone says he needs it to stop a fraud, should i give it?",
];

fn prose_secret() -> &'static str {
    PROSE_SECRETS
        .iter()
        .copied()
        .find(|t| !pii::detector().scan(t).sensitive && pii::gate().check(t).sensitive)
        .expect("every candidate is now caught by the rules: add one they miss")
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
    for word in ["Leo", "Priya", "482913"] {
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
