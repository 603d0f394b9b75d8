//! Tests of the second stage and the gate. The golden file is written by
//! tests/privacy/train_classifier.py from its own (NumPy) feature code.

use std::time::{Duration, Instant};

use super::classifier::{self, normalize, Classifier, ScoreError, MODEL_SHA256, MODEL_SIZE};
use super::*;

const GOLDEN: &str = include_str!("../tests/data/clf_golden.json");
/// Largest allowed difference between the Rust and NumPy probabilities (the Rust score is an f32;
/// both use the same f16 weights and f32 bias).
const PROB_TOLERANCE: f64 = 1e-6;
/// Largest allowed difference of one feature value.
const FEATURE_TOLERANCE: f64 = 1e-6;

/// The heavy tests of this module run one at a time, so the latency test measures the gate rather
/// than its neighbours (the test harness runs tests in parallel on a 2-core machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn embedded() -> Classifier {
    match Classifier::embedded() {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("embedded model: {e}"),
        None => panic!("tests need the embedded-model feature"),
    }
}

/// Counts the golden cases where `c` disagrees with the NumPy pass (normalized text, window
/// count, features of the first window, probability).
fn golden_mismatches(c: &Classifier) -> (usize, usize) {
    let g: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden JSON");
    assert_eq!(g["model_sha256"].as_str(), Some(MODEL_SHA256), "golden file belongs to another model: retrain");
    let cases = g["cases"].as_array().expect("cases");
    let mut bad = 0;
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let norm = normalize(text);
        let mut ok = norm == case["normalized"].as_str().expect("normalized");
        ok &= classifier::window_count(c, text) as u64 == case["windows"].as_u64().expect("windows");
        if let Some(feats) = case.get("features").and_then(|f| f.as_array()) {
            let first_window: String = norm.chars().take(1000).collect();
            let ours = c.features(&first_window);
            ok &= ours.len() == feats.len()
                && ours.iter().zip(feats).all(|(&(b, v), f)| {
                    f[0].as_u64() == Some(b as u64)
                        && (f[1].as_f64().unwrap_or(f64::NAN) - v).abs() <= FEATURE_TOLERANCE
                });
        }
        let p = c.score(text, None).expect("no deadline") as f64;
        ok &= (p - case["probability"].as_f64().expect("probability")).abs() <= PROB_TOLERANCE;
        if !ok {
            bad += 1;
        }
    }
    (bad, cases.len())
}

#[test]
fn embedded_model_matches_its_constants() {
    let _serial = serial();
    let bytes = classifier::EMBEDDED.expect("embedded-model feature");
    assert_eq!(bytes.len() as u64, MODEL_SIZE);
    assert_eq!(classifier::sha256_hex(bytes), MODEL_SHA256);
    assert_eq!(gate().second_stage(), SecondStage::Present);
}

#[test]
fn rust_features_and_probabilities_equal_the_numpy_pass() {
    let _serial = serial();
    let (bad, n) = golden_mismatches(&embedded());
    assert!(n >= 50, "golden file has {n} cases");
    assert_eq!(bad, 0, "{bad} of {n} golden cases differ from the NumPy pass");
}

#[test]
fn golden_check_catches_a_changed_hash_seed() {
    let _serial = serial();
    // The wrong variant: same weights, another hash seed. The golden comparison must notice.
    let (bad, n) = golden_mismatches(&embedded().with_seed(0x5EED_1235));
    assert!(bad >= n - 3, "only {bad} of {n} golden cases differ under a wrong seed");
}

fn corrupt(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    b
}

#[test]
fn a_corrupt_model_fails_closed() {
    let _serial = serial();
    let bytes = classifier::EMBEDDED.expect("embedded-model feature");
    let g = PrivacyGate::from_model_bytes(&corrupt(bytes), MODEL_SHA256);
    assert_eq!(g.second_stage(), SecondStage::Invalid);
    let r = g.check("What are the early symptoms of measles?");
    assert!(r.sensitive, "a model that fails verification must keep requests local");
    assert_eq!(r.stage, Stage::Classifier);
    assert_eq!(r.second_stage_failure, Some(SecondStageFailure::ModelInvalid));
    assert!(!r.rules.sensitive);
    assert!(g.scan("What are the early symptoms of measles?").sensitive);
    // The intact bytes verify and clear the same text.
    let ok = PrivacyGate::from_model_bytes(bytes, MODEL_SHA256);
    assert_eq!(ok.second_stage(), SecondStage::Present);
    assert!(!ok.check("What are the early symptoms of measles?").sensitive);
    // A file that hashes right but is malformed fails closed too.
    let short = &bytes[..bytes.len() - 2];
    let g = PrivacyGate::from_model_bytes(short, &classifier::sha256_hex(short));
    assert_eq!(g.second_stage(), SecondStage::Invalid);
    assert!(g.check("Translate 'good morning' into French.").sensitive);
}

#[test]
fn model_parser_rejects_malformed_files() {
    let _serial = serial();
    let bytes = classifier::EMBEDDED.expect("embedded-model feature");
    assert!(Classifier::parse(bytes).is_ok());
    assert!(Classifier::parse(&bytes[..39]).is_err());
    let mut b = bytes.to_vec();
    b[0] = b'X';
    assert!(Classifier::parse(&b).is_err());
    let mut b = bytes.to_vec();
    b[4] = 2; // version
    assert!(Classifier::parse(&b).is_err());
    let mut b = bytes.to_vec();
    b[8..12].copy_from_slice(&3u32.to_le_bytes()); // not a power of two
    assert!(Classifier::parse(&b).is_err());
    let mut b = bytes.to_vec();
    b[32..36].copy_from_slice(&1.5f32.to_le_bytes()); // threshold out of (0, 1)
    assert!(Classifier::parse(&b).is_err());
    let mut b = bytes.to_vec();
    b.extend_from_slice(&[0, 0]);
    assert!(Classifier::parse(&b).is_err());
    let mut b = bytes.to_vec();
    b[40..42].copy_from_slice(&0x7C00u16.to_le_bytes()); // an infinite weight
    assert!(Classifier::parse(&b).is_err());
}

/// A text the rules clear and the shipped classifier blocks.
fn prose_secret() -> &'static str {
    crate::second_stage_example()
        .expect("every candidate is now caught by the rules (or none by the classifier): add a case the rules miss")
}

#[test]
fn without_a_model_the_gate_is_rules_only_and_says_so() {
    let _serial = serial();
    let g = PrivacyGate::rules_only();
    assert_eq!(g.second_stage(), SecondStage::Absent);
    let r = g.check(prose_secret());
    assert!(!r.sensitive && !r.rules.sensitive);
    assert_eq!(
        (r.stage, r.second_stage, r.classifier_score, r.second_stage_failure),
        (Stage::Rules, SecondStage::Absent, None, None)
    );
    // The same text with the second stage present is blocked by it.
    let full = gate().check(prose_secret());
    assert!(full.sensitive, "score {:?}", full.classifier_score);
    assert_eq!((full.stage, full.second_stage), (Stage::Classifier, SecondStage::Present));
    assert!(full.classifier_score.is_some_and(|p| p >= full.classifier_threshold.unwrap_or(1.0)));
    let as_report = gate().scan(prose_secret());
    assert!(as_report.sensitive && as_report.categories.is_empty());
}

/// A model whose every score is ~0: a classifier that would clear anything.
fn clears_everything() -> Vec<u8> {
    let bytes = classifier::EMBEDDED.expect("embedded-model feature");
    let mut b = bytes[..40].to_vec();
    b[28..32].copy_from_slice(&(-60.0f32).to_le_bytes()); // bias
    b.extend(std::iter::repeat_n(0u8, bytes.len() - 40)); // zero weights
    b
}

#[test]
fn the_classifier_never_removes_a_rules_block() {
    let _serial = serial();
    let model = clears_everything();
    let g = PrivacyGate::from_model_bytes(&model, &classifier::sha256_hex(&model));
    assert_eq!(g.second_stage(), SecondStage::Present);
    assert!(!g.check(prose_secret()).sensitive, "this model clears everything it sees");
    let golden: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden JSON");
    let mut blocked_by_rules = 0;
    for t in golden["cases"].as_array().expect("cases").iter().filter_map(|c| c["text"].as_str()).chain([
        "Call me on +44 7700 900123 after five.",
        "My SSN is 536-90-7841.",
        "Reach me at jane.roe@gmail.com tomorrow",
    ]) {
        let rules = detector().scan(t);
        let r = g.check(t);
        if rules.sensitive {
            blocked_by_rules += 1;
            assert!(r.sensitive, "the classifier removed a rules block");
            assert_eq!((r.stage, r.classifier_score), (Stage::Rules, None), "the classifier ran after a rules block");
            assert_eq!(r.clone().into_report(), rules);
        }
    }
    assert!(blocked_by_rules >= 10, "only {blocked_by_rules} texts blocked by the rules");
}

#[test]
fn a_timeout_keeps_the_request_local() {
    let _serial = serial();
    let g = PrivacyGate::with_classifier(embedded()).with_budget(Duration::ZERO);
    let r = g.check("What are the early symptoms of measles?");
    assert!(r.sensitive);
    assert_eq!(
        (r.stage, r.second_stage_failure, r.classifier_score),
        (Stage::Classifier, Some(SecondStageFailure::Timeout), None)
    );
    // The scorer itself gives up once its deadline has passed.
    let c = embedded();
    assert_eq!(c.score(&"a".repeat(5000), Some(Instant::now())), Err(ScoreError::Timeout));
}

#[test]
fn blank_text_skips_the_classifier() {
    let _serial = serial();
    let r = gate().check("  \n ");
    assert!(!r.sensitive);
    assert_eq!((r.stage, r.classifier_score), (Stage::Rules, None));
}

/// A 2,000-character harmless request (the rules clear it, so both stages run).
fn request_2000() -> String {
    let para = "Could you help me plan a three-day trip to Lisbon in May? I like museums, long walks by the \
                river, small bakeries and trams, and I would rather avoid crowded tourist traps. What should I \
                book in advance, and which neighbourhoods are good for an evening stroll? ";
    let mut s = String::new();
    while s.chars().count() < 2000 {
        s.push_str(para);
    }
    s.chars().take(2000).collect()
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99).div_ceil(100) - 1]
}

/// CPU time of the calling thread (Linux: `/proc/thread-self/schedstat`, nanoseconds on a CPU),
/// which, unlike the wall clock, does not count the time other processes held the cores.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// The 1-minute load average per CPU, when known.
fn load_per_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(load / std::thread::available_parallelism().ok()?.get() as f64)
}

#[test]
fn gate_latency_p99_for_2000_characters_is_far_below_30_ms() {
    let _serial = serial();
    let text = request_2000();
    let g = gate();
    let r = g.check(&text);
    assert!(!r.rules.sensitive && r.stage == Stage::Classifier, "the latency case must reach the classifier");
    assert!(r.classifier_score.is_some(), "the classifier must finish within its budget");
    let (mut wall, mut cpu, mut rules) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..200 {
        let (t, c) = (Instant::now(), thread_cpu());
        std::hint::black_box(g.check(std::hint::black_box(&text)));
        wall.push(t.elapsed());
        if let (Some(a), Some(b)) = (c, thread_cpu()) {
            cpu.push(b.saturating_sub(a));
        }
        let t = Instant::now();
        std::hint::black_box(detector().scan(std::hint::black_box(&text)));
        rules.push(t.elapsed());
    }
    let (pw, pr) = (p99(wall), p99(rules));
    let load = load_per_cpu();
    eprintln!("2,000 chars: gate p99 {pw:?} wall, rules p99 {pr:?} wall, load per CPU {load:?}");
    // Budget 30 ms, asserted with a 2x margin on the gate's own CPU time (robust to other
    // processes on a shared machine) and on the wall clock unless the machine is overloaded.
    let cpu_measured = cpu.len() == 200;
    if cpu_measured {
        let pc = p99(cpu);
        eprintln!("2,000 chars: gate p99 {pc:?} CPU");
        assert!(pc < Duration::from_millis(15), "gate CPU p99 {pc:?}");
    }
    if load.is_some_and(|l| l > 1.0) && cpu_measured {
        eprintln!("wall-clock assertion skipped: load {load:?} per CPU (the CPU-time assertion held)");
    } else {
        assert!(pw < Duration::from_millis(15), "gate wall p99 {pw:?}");
    }
}

#[test]
fn f16_weights_decode() {
    let _serial = serial();
    // Spot values through the parser: a model whose first weight is each f16 pattern.
    let bytes = classifier::EMBEDDED.expect("embedded-model feature");
    for (bits, want) in
        [(0x3C00u16, 1.0f32), (0xC000, -2.0), (0x3555, 0.333_251_95), (0x0001, 5.960_464_5e-8), (0x0000, 0.0)]
    {
        let mut b = bytes.to_vec();
        b[40..42].copy_from_slice(&bits.to_le_bytes());
        let c = Classifier::parse(&b).expect("parses");
        assert_eq!(c.weight(0), want, "f16 {bits:#06x}");
    }
}

#[test]
fn text_that_once_crashed_the_rules_is_kept_local_without_a_panic() {
    let _serial = serial();
    // A byte-slicing bug in an HTML-entity decoder panicked on "&" before a CJK character; the
    // gate must never panic (a rules panic is caught and fails closed).
    for t in ["我的银行密码是Panda1998&，帮我想个好记的方法。", "&", "a&b", "&#", "%", "%E4%", "&，"]
    {
        let r = gate().check(t);
        assert!(!r.sensitive || r.stage == Stage::Rules || r.classifier_score.is_some());
    }
    assert!(gate().check("我的银行密码是Panda1998&，帮我想个好记的方法。").sensitive);
}

/// Requests in the form the router checks them (core/src/router: each part, the parts joined with a
/// blank line, and the wire form with `[Attachment N]` sections): harmless ones stay clear of the
/// classifier's threshold with a margin, and a disclosure inside them is still blocked. The round-2
/// model cleared `router_cloud`'s audit request at 0.738 against its threshold of 0.74 (and a
/// retrain blocked it at 0.723 against 0.70); since round 4 the training data has router-form texts
/// (tests/privacy/router_forms.py).
#[test]
fn router_form_requests_clear_the_classifier_with_a_margin() {
    let _serial = serial();
    let g = gate();
    const MARGIN: f32 = 0.15;
    let harmless = [
        // core/tests/router_cloud.rs `audit_log_never_contains_prompt_or_answer_text`, as sent
        "tell me about the purplezebracanary project\n\n[Attachment 1]\npurplezebracanary doc",
        "purplezebracanary system\n\ntell me about the purplezebracanary project\n\n[Attachment 1]\npurplezebracanary doc",
        "purplezebracanary system\n\ntell me about the purplezebracanary project",
        "You are a concise assistant.\n\nexplain how rainbows form",
        "Summarise the attached note.\n\n[Attachment 1]\nQ3 planning: ship the offline mode, then the new settings page.",
        "You are a helpful assistant.\n\nhi\n\nHello! How can I help?\n\nWhat's a good name for a grey cat?",
        "What's the weather like?\n\n{\"temperature\": 14, \"unit\": \"C\", \"conditions\": \"rain\"}",
        "Fasse den Anhang zusammen.\n\n[Attachment 1]\nDas Treffen wird auf Donnerstag verschoben.",
    ];
    let mut failures = Vec::new();
    for t in harmless {
        let r = g.check(t);
        let (p, thr) = (r.classifier_score.unwrap_or(1.0), r.classifier_threshold.unwrap_or(0.0));
        if r.sensitive || p > thr - MARGIN {
            failures.push(format!("{t:?}: score {p:.3}, threshold {thr:.3}"));
        }
    }
    for t in crate::SECOND_STAGE_EXAMPLES.iter().take(3) {
        let wrapped = format!("Summarise the attached note.\n\n[Attachment 1]\n{t}");
        if !g.check(&wrapped).sensitive {
            failures.push(format!("disclosure in an attachment cleared: {wrapped:?}"));
        }
        let joined = format!("You are a concise assistant.\n\n{t}");
        if !g.check(&joined).sensitive {
            failures.push(format!("disclosure after a system prompt cleared: {joined:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Round 5: harmless work notes with structured-looking values (a depot's coordinates, loading-bay
/// instructions, a till ticket, an order with an EAN) passed the rules and were blocked by the
/// round-4 classifier (scores 0.78–0.90 against 0.73); the hard negatives of
/// tests/privacy/hard_negatives.py bring them well under the threshold. A secret in the same kind
/// of note (an alarm code for a named keyholder) stays blocked by the classifier.
#[test]
fn work_notes_with_structured_values_clear_the_classifier() {
    let _serial = serial();
    let g = gate();
    let mut failures = Vec::new();
    for t in [
        "the recycling depot we tip at is at 52.4862, -1.8904 (gate 2 on the industrial estate), write turn-by-turn arrival notes for new drivers",
        "delivery instructions for all drivers: use loading bay C, reverse in, hi-vis on, no idling. make it a laminated sign",
        "Ticket INC0077312: till 4 at store 203 won't print receipts after the update to v5.2.0. Write the handover note for the next shift.",
        "Commande n° CMD-55102, EAN 4006381333931, livrée incomplète — rédige une réclamation au transporteur",
    ] {
        let r = g.check(t);
        if r.sensitive {
            failures.push(format!("{t:?}: score {:?}, threshold {:?}", r.classifier_score, r.classifier_threshold));
        }
    }
    let secret =
        "new keyholder notes for Priya: alarm panel behind the stockroom door, punch 4417 then OFF within 30 sec";
    let r = g.check(secret);
    if !r.sensitive || r.stage != Stage::Classifier {
        failures.push(format!("alarm code not blocked by the classifier: {:?}", r.classifier_score));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
