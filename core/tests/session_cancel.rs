//! Per-call cancellation on the real model (CPU): a cancel sent before the call starts is
//! honoured; cancelling one call never touches another (sessions and routed requests); a call
//! that finds a cancelled generation still unwinding waits for it instead of failing with
//! `Busy`, while a live generation still answers `Busy` at once.

mod common_model;

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::router::{ChatRequest, FinishReason, LocalEngine, RequestMeta, Router, RouterConfig};
use edgewise_core::session::{CancelHandle, GenerationParams, SessionConfig, SharedSession, StopReason};
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

/// Long enough that only a cancel stops it.
fn long() -> GenerationParams {
    GenerationParams { ignore_eos: true, ..GenerationParams::greedy(400) }
}

fn small_session(e: &Engine) -> edgewise_core::session::Session {
    e.new_session(SessionConfig { max_context: 512, ..Default::default() }).unwrap()
}

#[test]
fn a_cancel_before_the_call_starts_is_honoured() {
    let Some(e) = engine() else { return };
    let mut s = small_session(e);
    let cancel = CancelHandle::new();
    cancel.cancel();
    let mut pieces = 0;
    let g = s.chat_with("Tell me a long story.", &long(), &cancel, &mut |_| {
        pieces += 1;
        true
    });
    let g = g.unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert!(g.token_ids.is_empty() && pieces == 0, "nothing generated");
    assert!(s.history().is_empty(), "a call cancelled before it started leaves no turn");
    assert_eq!(s.cached_tokens(), 0, "nothing was prefilled");
    let g = s.complete_with("Once upon a time", &long(), &cancel, &mut |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    // The handle is this call's only: a new call with a new handle runs normally.
    let g = s
        .complete_with(
            "Hello",
            &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(3) },
            &CancelHandle::new(),
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
}

/// The old flag was cleared when a generation started, so this cancel (sent while the previous
/// call was finishing, before the next one began) was lost. The session-wide handle now only
/// cancels the call running at that moment, and per-call handles are never cleared.
#[test]
fn cancelling_one_session_call_does_not_touch_another() {
    let Some(e) = engine() else { return };
    let (a, b) = (SharedSession::new(small_session(e)), SharedSession::new(small_session(e)));
    let (ca, cb) = (CancelHandle::new(), CancelHandle::new());
    let (tx, rx) = mpsc::channel();
    let spawn = |s: Arc<SharedSession>, c: CancelHandle, tx: mpsc::Sender<()>| {
        std::thread::spawn(move || {
            let mut first = true;
            let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(24) };
            s.run(&c.clone(), |s| {
                s.complete_with("Once upon a time", &params, &c, &mut |_| {
                    if first {
                        first = false;
                        let _ = tx.send(());
                    }
                    true
                })
            })
        })
    };
    let ta = spawn(a.clone(), ca.clone(), tx.clone());
    let tb = spawn(b.clone(), cb.clone(), tx);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(120)).expect("both started");
    }
    ca.cancel();
    let ga = ta.join().unwrap().unwrap().unwrap();
    let gb = tb.join().unwrap().unwrap().unwrap();
    assert_eq!(ga.stop_reason, StopReason::Cancelled);
    assert_eq!(gb.stop_reason, StopReason::MaxTokens, "the other call ran to its end");
    assert_eq!(gb.token_ids.len(), 24);
    assert!(!cb.is_cancelled());
}

#[test]
fn the_next_call_waits_for_a_cancelled_generation_instead_of_busy() {
    let Some(e) = engine() else { return };
    let shared = SharedSession::new(small_session(e));
    let first_call = CancelHandle::new();
    let (tx, rx) = mpsc::channel();
    let worker = {
        let (shared, c) = (shared.clone(), first_call.clone());
        std::thread::spawn(move || {
            let mut first = true;
            shared.run(&c.clone(), |s| {
                s.complete_with("Once upon a time", &long(), &c, &mut |_| {
                    if first {
                        first = false;
                        let _ = tx.send(());
                        // A slow sink: the cancelled generation is still unwinding when the
                        // next call arrives (on a phone: a slow GPU step, a busy UI thread).
                        std::thread::sleep(Duration::from_millis(400));
                    }
                    true
                })
            })
        })
    };
    rx.recv_timeout(Duration::from_secs(120)).expect("first token");
    // A live generation: a second call is refused at once.
    let t = Instant::now();
    assert!(matches!(shared.run(&CancelHandle::new(), |s| s.cached_tokens()), Err(Error::Busy)));
    assert!(t.elapsed() < Duration::from_millis(300), "Busy without waiting");
    // Cancelled but still unwinding: the next call waits for it and then runs.
    first_call.cancel();
    let next = CancelHandle::new();
    let g = shared
        .run(&next, |s| {
            s.complete_with(
                "Hello",
                &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(3) },
                &next,
                &mut |_| true,
            )
        })
        .expect("not Busy")
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    let first = worker.join().unwrap().unwrap().unwrap();
    assert_eq!(first.stop_reason, StopReason::Cancelled);
    assert!(first.token_ids.len() < 400);
    // cancel_running() reaches the call holding the session, not a later one.
    shared.cancel_running();
    let later = CancelHandle::new();
    let g = shared.run(&later, |s| {
        s.complete_with(
            "Hi",
            &GenerationParams { ignore_eos: true, ..GenerationParams::greedy(2) },
            &later,
            &mut |_| true,
        )
    });
    assert_eq!(g.unwrap().unwrap().stop_reason, StopReason::MaxTokens);
}

#[test]
fn the_wait_for_an_unwinding_generation_is_bounded() {
    let Some(e) = engine() else { return };
    let shared = SharedSession::with_unwind_wait(small_session(e), Duration::from_millis(200));
    let stuck = CancelHandle::new();
    let (tx, rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let worker = {
        let (shared, c) = (shared.clone(), stuck.clone());
        // Holds the session, cancelled, until released (a sink that never returns).
        std::thread::spawn(move || {
            shared.run(&c, |_| {
                let _ = tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
            })
        })
    };
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    stuck.cancel();
    let t = Instant::now();
    assert!(matches!(shared.run(&CancelHandle::new(), |_| ()), Err(Error::Busy)));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(5), "waited {waited:?}");
    // A waiting call whose own handle fires stops waiting.
    let mine = CancelHandle::new();
    let canceller = {
        let mine = mine.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            mine.cancel();
        })
    };
    assert!(matches!(shared.run(&mine, |_| ()), Err(Error::Cancelled)));
    canceller.join().unwrap();
    release_tx.send(()).unwrap();
    worker.join().unwrap().unwrap();
}

fn local(max_tokens: usize) -> Option<LocalEngine> {
    let e = engine()?.clone();
    LocalEngine::new(e, SessionConfig { max_context: 512, ..Default::default() }, GenerationParams::greedy(max_tokens))
        .ok()
}

#[test]
fn two_concurrent_router_requests_one_cancelled() {
    let Some(local) = local(24) else { return };
    let dir = std::env::temp_dir().join(format!("edgewise-cancel-{}", std::process::id()));
    let router = Arc::new(Router::new(RouterConfig::local_only(&dir)).unwrap());
    let local = Arc::new(local);
    let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(24) };
    let (tx, rx) = mpsc::channel();
    let spawn = |cancel: CancelHandle, tx: mpsc::Sender<()>| {
        let (router, local, params) = (router.clone(), local.clone(), params.clone());
        std::thread::spawn(move || {
            let mut first = true;
            let mut sink = |_: &str| {
                if first {
                    first = false;
                    let _ = tx.send(());
                }
                true
            };
            local.answer_cancellable(
                &router,
                &ChatRequest::user("Tell me a story."),
                &RequestMeta::default(),
                &params,
                &cancel,
                &mut sink,
            )
        })
    };
    let (ca, cb) = (CancelHandle::new(), CancelHandle::new());
    let ta = spawn(ca.clone(), tx.clone());
    let tb = spawn(cb.clone(), tx);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(120)).expect("both started");
    }
    ca.cancel();
    let a = ta.join().unwrap().unwrap();
    let b = tb.join().unwrap().unwrap();
    assert_eq!(a.answer.finish_reason, FinishReason::Cancelled);
    assert_eq!(b.answer.finish_reason, FinishReason::Length, "the other request ran to its end");
    assert_eq!(b.answer.completion_tokens, 24);

    // A request cancelled before it starts is refused before anything is decided or sent.
    let pre = CancelHandle::new();
    pre.cancel();
    let r = local.answer_cancellable(
        &router,
        &ChatRequest::user("Hi"),
        &RequestMeta::default(),
        &params,
        &pre,
        &mut |_: &str| true,
    );
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
