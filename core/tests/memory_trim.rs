//! `Engine::trim` on the real model (CPU): each level hands resident memory back, what it freed
//! comes back on the next use, and the answers do not change. Prints the resident set size
//! before and after each level (the figures in README.md come from this test).

mod common_model;

use std::time::Instant;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::memory::{resident_bytes, TrimLevel};
use edgewise_core::router::{ChatRequest, LocalEngine};
use edgewise_core::session::{CancelHandle, GenerationParams, SessionConfig, SharedSession};

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[test]
fn trim_levels_hand_memory_back_and_answers_do_not_change() {
    let Some(path) = common_model::model_path() else { return };
    let Some(_) = resident_bytes() else {
        eprintln!("SKIPPED: no /proc/self/status here");
        return;
    };
    let engine =
        Engine::load(path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            SharedSession::new(engine.new_session(SessionConfig { max_context: 2048, ..Default::default() }).unwrap())
        })
        .collect();
    let local = LocalEngine::new(
        engine.clone(),
        SessionConfig { max_context: 2048, ..Default::default() },
        GenerationParams::greedy(8),
    )
    .unwrap();
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(12) };
    let prompt = "The history of the lighthouse begins in antiquity. ".repeat(20);
    let run = |s: &SharedSession| {
        let c = CancelHandle::new();
        let t = Instant::now();
        let g = s.run(&c, |s| s.complete_with(&prompt, &params, &c, &mut |_| true)).unwrap().unwrap();
        (g.token_ids, t.elapsed().as_secs_f64() * 1e3)
    };
    let first: Vec<_> = sessions.iter().map(|s| run(s)).collect();
    local.generate_with(&ChatRequest::user("Name one ocean."), &GenerationParams::greedy(4), &mut |_| true).unwrap();
    let r0 = resident_bytes().unwrap();

    let bg = engine.trim(TrimLevel::Background);
    let r1 = resident_bytes().unwrap();
    assert_eq!(bg.sessions, 3, "two idle sessions and the router's pooled one: {bg:?}");
    assert!(bg.kv_cache_bytes > 0 && !bg.weights_released, "{bg:?}");
    let low = engine.trim(TrimLevel::Low);
    let r2 = resident_bytes().unwrap();
    assert_eq!(low.sessions, 0, "nothing left to release: {low:?}");
    let crit = engine.trim(TrimLevel::Critical);
    let r3 = resident_bytes().unwrap();
    assert!(crit.weights_released, "{crit:?}");

    eprintln!(
        "RSS after use {:.1} MiB; Background {:.1} MiB (-{:.1}; {} KiB of KV cache from {} sessions); Low {:.1} MiB (-{:.1}); Critical {:.1} MiB (-{:.1})",
        mib(r0),
        mib(r1),
        mib(r0.saturating_sub(r1)),
        bg.kv_cache_bytes >> 10,
        bg.sessions,
        mib(r2),
        mib(r1.saturating_sub(r2)),
        mib(r3),
        mib(r2.saturating_sub(r3)),
    );
    assert!(r1 < r0, "the KV caches were resident and are not now");
    // The weights (~240 MB of Q4_K_M/Q8_0 blocks, read in place) leave the resident set.
    assert!(r2.saturating_sub(r3) > 100 << 20, "weights released: {:.1} -> {:.1} MiB", mib(r2), mib(r3));

    // Next use: the same tokens (the caches are rebuilt by a fresh prefill, the weights read
    // again from the file).
    let again: Vec<_> = sessions.iter().map(|s| run(s)).collect();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a.0, b.0, "a trim does not change the answer");
    }
    let r4 = resident_bytes().unwrap();
    eprintln!(
        "first generation after Critical: {:.0} ms (before trim: {:.0} ms, prefill of {} tokens included); RSS back to {:.1} MiB",
        again[0].1,
        first[0].1,
        prompt.len() / 4,
        mib(r4)
    );
}
