//! Session files on the real model (CPU): a conversation saved after its first turn and restored in
//! a new session continues with the same greedy tokens as the uninterrupted session, without
//! prefilling its history again; damaged, truncated, foreign and other-model files are typed
//! errors. Prints restore time against re-prefilling the same ~1,000-token conversation (the
//! figure in README.md comes from this test).

mod common_model;

use std::path::PathBuf;
use std::time::Instant;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::Error;
use sha2::{Digest, Sha256};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgewise-sessfile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Rewrites the JSON header of a session file with `edit` and fixes the checksum, so the file is
/// intact but says something else (what a file from another model or build looks like).
fn rewrite_header(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let json = std::str::from_utf8(&bytes[16..16 + hlen]).unwrap();
    let new = edit(json);
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&bytes[16 + hlen..bytes.len() - 32]);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

#[test]
fn restored_session_continues_like_the_uninterrupted_one() {
    let Some(path) = common_model::model_path() else { return };
    let engine =
        Engine::load(&path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    assert_eq!(engine.model_id().len(), 64);
    let dir = temp_dir("real");
    let file = dir.join("chat.ewsession");
    let cfg = SessionConfig {
        max_context: 2048,
        system_prompt: Some("You are a terse assistant.".into()),
        ..Default::default()
    };
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(16) };
    // A first turn of ~1,000 tokens: past the 512-token sliding window, so the window layers'
    // rings have wrapped when the session is saved.
    let first = "The lighthouse keeper wrote down the weather every hour, and the ships that passed. ".repeat(62);
    let second = "What did the keeper write down?";

    let mut a = engine.new_session(cfg.clone()).unwrap();
    let g1 = a.chat(&first, &params, &mut |_| true).unwrap();
    assert!(a.cached_tokens() > 900, "{} cached tokens", a.cached_tokens());
    let t = Instant::now();
    a.save(&file).unwrap();
    let save_ms = t.elapsed().as_secs_f64() * 1e3;
    let size = std::fs::metadata(&file).unwrap().len();
    let uninterrupted = a.chat(second, &params, &mut |_| true).unwrap();

    let t = Instant::now();
    let mut b = engine.restore_session(&file).unwrap();
    let restore_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(b.history(), &a.history()[..2], "the conversation comes back");
    assert_eq!(b.config(), &cfg);
    let resumed = b.chat(second, &params, &mut |_| true).unwrap();
    assert_eq!(resumed.token_ids, uninterrupted.token_ids, "same greedy tokens as the uninterrupted session");
    assert_eq!(resumed.text, uninterrupted.text);
    // The same computation on the same cache: the same log-probabilities, not only the same argmax
    // (a cache missing the sliding-window layers' rows still picked the same 16 tokens here).
    assert!(
        (resumed.mean_logprob - uninterrupted.mean_logprob).abs() < 1e-5,
        "{} vs {}",
        resumed.mean_logprob,
        uninterrupted.mean_logprob
    );
    // Only the new message was prefilled: the history came from the file's cache.
    assert_eq!(resumed.metrics.prefilled_tokens, uninterrupted.metrics.prefilled_tokens);
    assert!(resumed.metrics.prefilled_tokens < 40, "{:?}", resumed.metrics);
    assert!(resumed.metrics.prompt_tokens > 900, "{:?}", resumed.metrics);

    // What restoring saves: prefilling the same conversation in a fresh session.
    let ids = engine.template().encode(engine.tokenizer(), &restored_messages(&cfg, b.history()), false).unwrap();
    let mut fresh = engine.new_session(cfg.clone()).unwrap();
    let t = Instant::now();
    fresh.prefill_logits(&ids, ids.len()).unwrap();
    let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "session file: {} cached tokens ({} in the first turn), {:.1} MiB; save {save_ms:.0} ms, restore {restore_ms:.0} ms, re-prefill of {} tokens {prefill_ms:.0} ms",
        g1.metrics.prompt_tokens + g1.token_ids.len() - 1,
        g1.metrics.prompt_tokens,
        size as f64 / (1024.0 * 1024.0),
        ids.len()
    );

    // A session saved with an empty cache (fresh, or trimmed) restores its conversation, which the
    // next turn prefills.
    let mut trimmed = engine.restore_session(&file).unwrap();
    trimmed.release_cache();
    trimmed.save(dir.join("trimmed.ewsession")).unwrap();
    let mut t2 = engine.restore_session(dir.join("trimmed.ewsession")).unwrap();
    assert_eq!(t2.cached_tokens(), 0);
    let again = t2.chat(second, &params, &mut |_| true).unwrap();
    assert_eq!(again.token_ids, uninterrupted.token_ids);
    assert!(again.metrics.prefilled_tokens > 900);

    // Damage of every kind is a typed error, never a panic, and never a session.
    let bytes = std::fs::read(&file).unwrap();
    let bad = dir.join("bad.ewsession");
    let try_bytes = |b: &[u8]| {
        std::fs::write(&bad, b).unwrap();
        engine.restore_session(&bad).map(|_| ())
    };
    for cut in [0, 7, 16, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(try_bytes(&bytes[..cut]), Err(Error::SessionFile { .. })), "truncated at {cut}");
    }
    for at in [3, 20, bytes.len() / 3, bytes.len() - 40, bytes.len() - 2] {
        let mut b = bytes.clone();
        b[at] ^= 0x41;
        assert!(matches!(try_bytes(&b), Err(Error::SessionFile { .. })), "byte {at} flipped");
    }
    let mut v = bytes.clone();
    v[8] = 7;
    assert!(matches!(try_bytes(&v), Err(Error::SessionFileVersion { found: 7, supported: 1 })));
    let other_model = rewrite_header(&bytes, |j| j.replace(engine.model_id(), &"0".repeat(64)));
    match try_bytes(&other_model) {
        Err(e @ Error::SessionModelMismatch { .. }) => assert!(!e.to_string().contains("lighthouse"), "{e}"),
        other => panic!("expected SessionModelMismatch, got {:?}", other.err()),
    }
    // Intact files that lie about their contents: a cache longer than the ids, a context too small.
    let lying = rewrite_header(&bytes, |j| j.replacen("\"cached\":[", "\"cached\":[5,", 1));
    assert!(matches!(try_bytes(&lying), Err(Error::SessionFile { .. })));
    let small = rewrite_header(&bytes, |j| j.replacen("\"max_context\":2048", "\"max_context\":512", 1));
    assert!(matches!(try_bytes(&small), Err(Error::SessionFile { .. } | Error::ContextOverflow { .. })));
    let huge = rewrite_header(&bytes, |j| j.replacen("\"max_context\":2048", "\"max_context\":99999999", 1));
    assert!(matches!(try_bytes(&huge), Err(Error::SessionFile { .. })));
    assert!(matches!(engine.restore_session(dir.join("missing")), Err(Error::Io(_))));
    // A model file passed by mistake: refused after its first 8 bytes.
    let t = Instant::now();
    assert!(matches!(engine.restore_session(&path), Err(Error::SessionFile { .. })));
    eprintln!("a model file as a session file: refused in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    // Error messages carry no conversation text.
    for b in [&bytes[..100], &lying[..], &small[..]] {
        if let Err(e) = try_bytes(b) {
            assert!(!e.to_string().contains("lighthouse") && !e.to_string().contains("terse"), "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The messages a chat renders: the system prompt, then the history.
fn restored_messages(
    cfg: &SessionConfig,
    history: &[edgewise_core::tokenizer::ChatMessage],
) -> Vec<edgewise_core::tokenizer::ChatMessage> {
    let mut m = Vec::new();
    if let Some(s) = &cfg.system_prompt {
        m.push(edgewise_core::tokenizer::ChatMessage::new(edgewise_core::tokenizer::Role::System, s.clone()));
    }
    m.extend_from_slice(history);
    m
}

/// The wgpu path (`EDGEWISE_GPU_TESTS=1`, lavapipe in CI): a session saved on the GPU (f32 rows)
/// restores on the GPU with the same greedy continuation as the uninterrupted session, and the same
/// file restores on the CPU (rows rounded to f16) and continues there.
#[test]
fn gpu_session_file_round_trip_and_cross_backend() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_session_file_round_trip_and_cross_backend (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    let Some(path) = common_model::model_path() else { return };
    if let Err(e) = edgewise_core::backend::gpu() {
        eprintln!("SKIPPED: no wgpu device ({e})");
        return;
    }
    let gpu =
        Engine::load(&path, EngineConfig { backend: BackendPreference::Gpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    let cpu =
        Engine::load(&path, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap();
    assert_eq!(gpu.model_id(), cpu.model_id());
    let dir = temp_dir("gpu");
    let file = dir.join("gpu.ewsession");
    let cfg = SessionConfig { max_context: 128, prefill_chunk: 32, ..Default::default() };
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(3) };
    let mut a = gpu.new_session(cfg.clone()).unwrap();
    a.chat("Name a large river in Europe.", &params, &mut |_| true).unwrap();
    a.save(&file).unwrap();
    let saved = a.cached_tokens();
    let uninterrupted = a.chat("And in Asia?", &params, &mut |_| true).unwrap();
    let mut b = gpu.restore_session(&file).unwrap();
    assert_eq!(b.cached_tokens(), saved);
    let resumed = b.chat("And in Asia?", &params, &mut |_| true).unwrap();
    assert_eq!(resumed.token_ids, uninterrupted.token_ids);
    assert_eq!(resumed.metrics.prefilled_tokens, uninterrupted.metrics.prefilled_tokens);
    let mut c = cpu.restore_session(&file).unwrap();
    assert_eq!(c.cached_tokens(), saved);
    let on_cpu = c.chat("And in Asia?", &params, &mut |_| true).unwrap();
    assert_eq!(
        on_cpu.metrics.prefilled_tokens, uninterrupted.metrics.prefilled_tokens,
        "the GPU's cache was used on the CPU"
    );
    assert_eq!(on_cpu.token_ids.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
