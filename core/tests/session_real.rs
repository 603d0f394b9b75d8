//! Session behaviour on the real model (CPU): streaming, multi-turn cache reuse, cancel from
//! another thread, context overflow, stop sequences, seeded sampling, bad input.

mod common_model;

use std::sync::OnceLock;
use std::time::Duration;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::sampling::SamplingParams;
use edgewise_core::session::{GenerationParams, OverflowPolicy, SessionConfig, StopReason};
use edgewise_core::Error;

fn engine() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = common_model::model_path()?;
        Some(
            Engine::load(
                path,
                EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false },
            )
            .unwrap(),
        )
    })
    .as_ref()
}

#[test]
fn streamed_pieces_are_the_text_and_greedy_is_deterministic() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig::default()).unwrap();
    let mut pieces = String::new();
    let g = s
        .complete("The capital of France is", &GenerationParams::greedy(12), &mut |p| {
            pieces.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(pieces, g.text);
    assert_eq!(e.tokenizer().decode(&g.token_ids, false).unwrap(), g.text);
    assert!(g.metrics.decode_tokens_per_s > 0.0 && g.metrics.ttft_ms > 0.0);
    let mut s2 = e.new_session(SessionConfig::default()).unwrap();
    let g2 = s2.complete("The capital of France is", &GenerationParams::greedy(12), &mut |_| true).unwrap();
    assert_eq!(g.token_ids, g2.token_ids);
}

#[test]
fn same_seed_same_sample_other_seed_differs() {
    let Some(e) = engine() else { return };
    let p = |seed| GenerationParams {
        sampling: SamplingParams { temperature: 1.2, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() },
        max_tokens: 16,
        ..Default::default()
    };
    let run = |seed| {
        e.new_session(SessionConfig::default())
            .unwrap()
            .complete("Once upon a time", &p(seed), &mut |_| true)
            .unwrap()
            .token_ids
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn follow_up_turn_reuses_the_cache() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig { max_context: 1024, ..Default::default() }).unwrap();
    let g1 = s.chat("Name a colour.", &GenerationParams::greedy(8), &mut |_| true).unwrap();
    assert_eq!(g1.metrics.prefilled_tokens, g1.metrics.prompt_tokens);
    let g2 = s.chat("And another one?", &GenerationParams::greedy(8), &mut |_| true).unwrap();
    // Only the new turn (and any re-tokenized tail of the answer) is prefilled.
    assert!(g2.metrics.prefilled_tokens < g2.metrics.prompt_tokens / 2, "{:?}", g2.metrics);
    assert_eq!(s.history().len(), 4);
    s.reset();
    assert_eq!(s.cached_tokens(), 0);
    assert!(s.history().is_empty());
}

#[test]
fn cancel_from_another_thread_stops_generation() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig::default()).unwrap();
    let h = s.cancel_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        h.cancel();
    });
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(2000) };
    let g = s.complete("Write a very long story about a dragon.", &params, &mut |_| true).unwrap();
    t.join().unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert!(g.token_ids.len() < 2000);
    // The session stays usable.
    let g = s.complete("Hello", &GenerationParams::greedy(3), &mut |_| true).unwrap();
    assert_eq!(g.token_ids.len(), 3);
}

#[test]
fn sink_returning_false_cancels() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig::default()).unwrap();
    let mut n = 0;
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(50) };
    let g = s
        .complete("One, two, three,", &params, &mut |_| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert_eq!(n, 3);
}

#[test]
fn stop_sequence_is_not_emitted() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig::default()).unwrap();
    // Greedy continuation of this prompt (golden case 0) contains " France".
    let params = GenerationParams { stop: vec![" France".into()], ..GenerationParams::greedy(32) };
    let mut streamed = String::new();
    let g = s
        .complete("The capital of France is", &params, &mut |p| {
            streamed.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::StopSequence);
    assert!(!g.text.contains(" France") && !streamed.contains(" France"));
    assert_eq!(streamed, g.text);
}

#[test]
fn context_overflow_is_typed_or_drops_old_turns() {
    let Some(e) = engine() else { return };
    let mut s = e.new_session(SessionConfig { max_context: 32, ..Default::default() }).unwrap();
    let long = "word ".repeat(100);
    assert!(matches!(
        s.chat(&long, &GenerationParams::greedy(4), &mut |_| true),
        Err(Error::ContextOverflow { max: 32, .. })
    ));
    assert!(matches!(
        s.complete(&long, &GenerationParams::greedy(4), &mut |_| true),
        Err(Error::ContextOverflow { .. })
    ));
    // Generation that reaches the end of the context stops cleanly.
    let g = s
        .complete(
            "Count: one two three",
            &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(100) },
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    // With DropOldestTurns, a long conversation keeps going.
    let mut s = e
        .new_session(SessionConfig { max_context: 64, overflow: OverflowPolicy::DropOldestTurns, ..Default::default() })
        .unwrap();
    for _ in 0..4 {
        s.chat("Tell me one more fact about the sea, briefly.", &GenerationParams::greedy(10), &mut |_| true).unwrap();
    }
    assert!(s.history().len() < 8);
}

#[test]
fn absurd_parameters_and_bad_files_are_typed_errors() {
    let Some(e) = engine() else { return };
    assert!(e.new_session(SessionConfig { max_context: 0, ..Default::default() }).is_err());
    assert!(e.new_session(SessionConfig { max_context: 1 << 30, ..Default::default() }).is_err());
    let mut s = e.new_session(SessionConfig::default()).unwrap();
    let bad =
        GenerationParams { sampling: SamplingParams { temperature: -3.0, ..Default::default() }, ..Default::default() };
    assert!(matches!(s.complete("hi", &bad, &mut |_| true), Err(Error::InvalidParameter { .. })));
    assert!(matches!(
        s.generate_from(vec![999_999_999], &GenerationParams::greedy(2), &mut |_| true),
        Err(Error::InvalidParameter { .. })
    ));
    // A truncated model file.
    let dir = std::env::temp_dir().join(format!("edgewise-bad-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(common_model::model_path().unwrap()).unwrap();
    let p = dir.join("truncated.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Engine::load(&p, EngineConfig { backend: BackendPreference::Cpu, ..Default::default() }).is_err());
    std::fs::write(&p, b"not a model").unwrap();
    assert!(Engine::load(&p, EngineConfig { backend: BackendPreference::Cpu, ..Default::default() }).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auto_falls_back_or_passes_self_test_visibly() {
    let Some(path) = common_model::model_path() else { return };
    // Without a usable GPU, Auto must land on the CPU with a stated reason; with one it must pass
    // the self-test. Either way generation works.
    let e =
        Engine::load(&path, EngineConfig { backend: BackendPreference::Auto, threads: Some(2), gpu_self_test: true })
            .unwrap();
    let info = e.info();
    match info.backend {
        edgewise_core::backend::BackendKind::Cpu => {
            assert!(info.fallback_reason.is_some(), "CPU without a reason: {info:?}")
        }
        edgewise_core::backend::BackendKind::Gpu => assert!(info.fallback_reason.is_none()),
    }
    let g = e
        .new_session(SessionConfig::default())
        .unwrap()
        .complete("Hello", &GenerationParams::greedy(2), &mut |_| true)
        .unwrap();
    assert_eq!(g.token_ids.len(), 2);
}
