//! Qwen 3.5 (`qwen35`, hybrid gated DeltaNet + gated attention) against llama.cpp, on the small
//! random-weight GGUF of `tests/reference/make_qwen35_goldens.py synth` (real Qwen 3.5
//! tokenizer; goldens in `tests/golden/qwen35/`): tokenization, last-position logits and greedy
//! continuations under the near-tie rule (shared/reference/README.md), through the engine and a
//! session as an app runs it; prompts up to 155 tokens, prefilled in 64-token chunks. Then the
//! sessions over a state that cannot be trimmed (turn-boundary checkpoints, session files, cancel,
//! dropped turns, how many checkpoints a session keeps), and the same goldens on the GPU
//! backend (wgpu; `EDGEWISE_GPU_TESTS=1`).
//! (The deliberately wrong variants — no q/k L2 norm, the conv state dropped — are unit tests in
//! `core/src/model/qwen35.rs`, which can reach the model's internals.)

mod common_model;
mod near_tie;

use std::path::PathBuf;

use edgewise_core::backend::{BackendKind, BackendPreference};
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use near_tie::{ids, judge};
use serde_json::Value;
use sha2::Digest;

const LOGIT_TOLERANCE: f64 = 1.0;

fn model() -> Option<PathBuf> {
    common_model::synth_model("qwen35", "tests/reference/make_qwen35_goldens.py synth")
}

fn golden() -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(common_model::golden("qwen35/greedy.jsonl")).expect("golden file");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().expect("header")["header"].clone();
    (header, lines.collect())
}

fn load(path: &std::path::Path, pref: BackendPreference) -> edgewise_core::Result<Engine> {
    Engine::load(path, EngineConfig { backend: pref, threads: Some(2), gpu_self_test: false })
}

fn greedy(n: usize) -> GenerationParams {
    GenerationParams { ignore_eos: true, ..GenerationParams::greedy(n) }
}

#[test]
fn cpu_qwen35_matches_llama_cpp() {
    check(BackendPreference::Cpu, usize::MAX);
}

/// The same on the GPU backend (wgpu: lavapipe in CI), through the engine and a session with
/// 64-token prefill chunks; `EDGEWISE_GPU_QWEN35_CASES` cases (default all 7), the long
/// prompts (127 and 155 tokens: two and three chunks, then 24 decode steps) first.
#[test]
fn gpu_qwen35_matches_llama_cpp() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_qwen35_matches_llama_cpp (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    let limit = std::env::var("EDGEWISE_GPU_QWEN35_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    check(BackendPreference::Gpu, limit);
}

/// The goldens on `pref`, at most `limit` cases (the long prompts first).
fn check(pref: BackendPreference, limit: usize) {
    let Some(path) = model() else { return };
    let (header, mut cases) = golden();
    let sha: String = sha2::Sha256::digest(std::fs::read(&path).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        sha,
        header["model_sha256"].as_str().unwrap(),
        "the synthesized model differs from the goldens' (regenerate both)"
    );
    let e = load(&path, pref).unwrap();
    assert_eq!(e.info().architecture, "qwen35");
    assert_eq!(e.info().backend, if pref == BackendPreference::Gpu { BackendKind::Gpu } else { BackendKind::Cpu });
    cases.sort_by_key(|c| std::cmp::Reverse(ids(&c["prompt_token_ids"]).len()));
    cases.truncate(limit);
    let mut verdicts = Vec::new();
    let mut worst = 0f64;
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["prompt_token_ids"]);
        assert_eq!(
            e.tokenizer().encode(case["prompt"].as_str().unwrap(), true).unwrap(),
            prompt,
            "case {ci}: tokenization differs from llama.cpp"
        );
        let n_gen = ids(&case["greedy_token_ids"]).len();
        // 64-token prefill chunks: the long prompts cross two and three chunk boundaries.
        let mut s = e
            .new_session(SessionConfig {
                max_context: prompt.len() + n_gen + 8,
                prefill_chunk: 64,
                ..Default::default()
            })
            .unwrap();
        let logits = s.prefill_logits(&prompt, prompt.len() - 1).unwrap().pop().unwrap();
        let last = &case["last_logits"];
        let d = ids(&last["ids"])
            .iter()
            .zip(last["values"].as_array().unwrap())
            .fold(0f64, |m, (&id, v)| m.max((logits[id as usize] as f64 - v.as_f64().unwrap()).abs()));
        worst = worst.max(d);
        s.reset();
        let got = s.generate_from(prompt.clone(), &greedy(n_gen), &mut |_| true).unwrap().token_ids;
        let v = judge(&got, case).label();
        eprintln!("  case {ci} ({} prompt tokens): {v}, last-position max |Δlogit| {d:.3}", prompt.len());
        verdicts.push(v);
    }
    let exact = verdicts.iter().filter(|v| **v == "exact").count();
    eprintln!("qwen35 on {pref:?}: {exact}/{} exact, worst last-position |Δlogit| {worst:.3}; llama.cpp against itself (f32 vs f16 KV): {}", verdicts.len(), header["llama_cpp_f32_kv_vs_f16_kv"]);
    assert!(!verdicts.contains(&"departs"), "{verdicts:?}");
    assert!(worst <= LOGIT_TOLERANCE, "a last-position logit differs from llama.cpp's by {worst:.3}");
    // llama.cpp agrees exactly with itself (f32 against f16 KV cache) on only some cases of this
    // crowded random model (the header): that many, up to a third, less one (at least one), must
    // be exact. Which near-ties come out exact moves with rounding: 2/7 with a token-by-token
    // prefill, 1/7 with the chunked one (equally accurate against an f64 recurrence; unit tests).
    // The floor needs a few cases to mean anything (as in arch_golden): with one or two (the
    // wgpu step in CI runs one), a near-tie departure is within the rule above.
    if verdicts.len() >= 3 {
        let floor = (header["llama_cpp_f32_kv_vs_f16_kv"]["exact"].as_u64().unwrap() as usize)
            .min(verdicts.len() / 3)
            .saturating_sub(1)
            .max(1);
        assert!(exact >= floor, "too few exact matches: {verdicts:?}");
    }
}

/// A recurrent state cannot be cut back, so a follow-up turn must never reuse a prefix it cannot
/// restore. Its answer equals a fresh session's over the whole conversation, in both cases:
/// the next prompt extends everything cached (nothing to cut: only the new tokens are
/// prefilled), or it departs inside the previous answer (as a re-rendered answer does): the
/// session goes back to the turn-boundary checkpoint and prefills from there, not from 0.
#[test]
fn qwen35_follow_up_turns_equal_a_fresh_session() {
    follow_up_turns(BackendPreference::Cpu);
}

/// The sessions over a state that cannot be trimmed on the GPU backend, where the DeltaNet
/// state lives in device buffers and a checkpoint is a handle to them: follow-up turns (the
/// turn-boundary checkpoint reused), a turn cancelled mid-answer, and a session file (the
/// device state read back at save, uploaded at restore) — each as on the CPU.
#[test]
fn gpu_qwen35_sessions_reuse_checkpoints_cancel_and_save() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_qwen35_sessions_reuse_checkpoints_cancel_and_save (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    follow_up_turns(BackendPreference::Gpu);
    cancel_mid_answer(BackendPreference::Gpu);
    session_file_round_trip(BackendPreference::Gpu);
}

fn follow_up_turns(pref: BackendPreference) {
    let Some(path) = model() else { return };
    let (_, cases) = golden();
    let e = load(&path, pref).unwrap();
    let cfg = SessionConfig { max_context: 512, prefill_chunk: 64, ..Default::default() };
    let first = ids(&cases[5]["prompt_token_ids"]);
    let more = e.tokenizer().encode(" Then the tide turned, and the lamps went out one by one.", false).unwrap();
    let fresh = |prompt: &[u32]| {
        let mut s = e.new_session(cfg.clone()).unwrap();
        let g = s.generate_from(prompt.to_vec(), &greedy(12), &mut |_| true).unwrap();
        assert_eq!(g.metrics.prefilled_tokens, prompt.len());
        g.token_ids
    };

    // 1. The next prompt extends the cached tokens (the answer as generated).
    let mut s = e.new_session(cfg.clone()).unwrap();
    let answer = s.generate_from(first.clone(), &greedy(12), &mut |_| true).unwrap().token_ids;
    let second: Vec<u32> = [first.as_slice(), &answer, &more].concat();
    let g = s.generate_from(second.clone(), &greedy(12), &mut |_| true).unwrap();
    // The last generated token was never fed: it and `more` are all that is prefilled.
    assert_eq!(g.metrics.prefilled_tokens, 1 + more.len());
    assert_eq!(g.token_ids, fresh(&second), "a follow-up turn differs from a fresh session");

    // 2. The next prompt departs inside the previous answer: back to the checkpoint at the end
    // of the first prompt, not to 0 (and never a state that includes the answer).
    let mut s = e.new_session(cfg.clone()).unwrap();
    let answer = s.generate_from(first.clone(), &greedy(12), &mut |_| true).unwrap().token_ids;
    let rerendered: Vec<u32> = [first.as_slice(), &answer[..4], &more].concat();
    assert_ne!(rerendered[first.len() + 4], answer[4]);
    let g = s.generate_from(rerendered.clone(), &greedy(12), &mut |_| true).unwrap();
    assert_eq!(
        g.metrics.prefilled_tokens,
        rerendered.len() - first.len(),
        "the checkpoint at the turn boundary was not reused"
    );
    assert_eq!(g.token_ids, fresh(&rerendered), "a rewound turn differs from a fresh session");

    // 3. A prompt that departs inside the first prompt (no checkpoint at or below): from 0.
    let mut s = e.new_session(cfg.clone()).unwrap();
    s.generate_from(first.clone(), &greedy(4), &mut |_| true).unwrap();
    let edited: Vec<u32> = [&first[..first.len() / 2], more.as_slice()].concat();
    let g = s.generate_from(edited.clone(), &greedy(12), &mut |_| true).unwrap();
    assert_eq!(g.metrics.prefilled_tokens, edited.len());
    assert_eq!(g.token_ids, fresh(&edited));
}

/// `SessionConfig::state_checkpoints` sets how many turn-boundary checkpoints a session keeps
/// (the earliest and the newest; one: the newest). Two turns leave checkpoints at the end of
/// each prompt and each answer; a third prompt that departs inside the second answer goes back
/// to the end of the second prompt with 4 (the default), to the end of the first prompt with 2
/// (the two in between were dropped), and to the start with 1 (only the end of the second
/// answer, past the departure) or 0 (then the answer is a fresh session's). Over 64 is a
/// typed error.
#[test]
fn qwen35_state_checkpoints_are_configurable() {
    let Some(path) = model() else { return };
    let (_, cases) = golden();
    let e = load(&path, BackendPreference::Cpu).unwrap();
    let first = ids(&cases[5]["prompt_token_ids"]);
    let tok = e.tokenizer();
    let more = tok.encode(" Then the tide turned, and the lamps went out one by one.", false).unwrap();
    let edit = tok.encode(" Instead, write about a lighthouse keeper.", false).unwrap();
    let cfg =
        |n: usize| SessionConfig { max_context: 512, prefill_chunk: 64, state_checkpoints: n, ..Default::default() };
    assert_eq!(SessionConfig::default().state_checkpoints, 4);
    let err = e.new_session(cfg(65)).unwrap_err();
    assert!(matches!(&err, edgewise_core::Error::InvalidParameter { name: "state_checkpoints", .. }), "{err:?}");
    let mut fresh = e.new_session(cfg(4)).unwrap();
    for n in [4, 2, 1, 0] {
        let mut s = e.new_session(cfg(n)).unwrap();
        let a1 = s.generate_from(first.clone(), &greedy(8), &mut |_| true).unwrap().token_ids;
        let second: Vec<u32> = [first.as_slice(), &a1, &more].concat();
        let a2 = s.generate_from(second.clone(), &greedy(8), &mut |_| true).unwrap().token_ids;
        assert_eq!(s.cached_tokens(), second.len() + 7);
        let third: Vec<u32> = [second.as_slice(), &a2[..2], &edit].concat();
        let g = s.generate_from(third.clone(), &greedy(8), &mut |_| true).unwrap();
        let from = match n {
            4 => second.len(),
            2 => first.len(),
            _ => 0,
        };
        eprintln!("{n} checkpoints: {} of {} prompt tokens prefilled", g.metrics.prefilled_tokens, third.len());
        assert_eq!(g.metrics.prefilled_tokens, third.len() - from, "{n} checkpoints");
        // From the start it is a fresh session's pass exactly (the reuse of a checkpoint against
        // a fresh session: `qwen35_follow_up_turns_equal_a_fresh_session`).
        if from == 0 {
            fresh.reset();
            assert_eq!(
                g.token_ids,
                fresh.generate_from(third, &greedy(8), &mut |_| true).unwrap().token_ids,
                "{n} checkpoints"
            );
        }
    }
}

/// A session file carries the recurrent state and its turn-boundary checkpoints: the restored
/// session continues exactly as the saved one (same tokens, same prefill), also when the next
/// prompt departs inside the previous answer and needs the checkpoint. (Before, saving was a
/// typed error.)
#[test]
fn qwen35_session_file_round_trip_keeps_state_and_checkpoints() {
    session_file_round_trip(BackendPreference::Cpu);
}

fn session_file_round_trip(pref: BackendPreference) {
    let Some(path) = model() else { return };
    let (_, cases) = golden();
    let e = load(&path, pref).unwrap();
    let cfg = SessionConfig { max_context: 512, prefill_chunk: 64, ..Default::default() };
    let first = ids(&cases[5]["prompt_token_ids"]);
    let more = e.tokenizer().encode(" Then the tide turned, and the lamps went out one by one.", false).unwrap();
    let mut s = e.new_session(cfg.clone()).unwrap();
    let answer = s.generate_from(first.clone(), &greedy(12), &mut |_| true).unwrap().token_ids;
    let file = std::env::temp_dir().join(format!("edgewise-qwen35-session-{}-{pref:?}.ewsession", std::process::id()));
    s.save(&file).unwrap();
    let mut r = e.restore_session(&file).unwrap();
    assert_eq!(r.cached_tokens(), s.cached_tokens());
    // A damaged recurrent section (the last bytes before the digest) is a typed error (the
    // checksum covers it).
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(matches!(e.restore_session(&file), Err(edgewise_core::Error::SessionFile { .. })));
    let _ = std::fs::remove_file(&file);
    // Departs inside the answer: both go back to the checkpoint at the end of the first prompt.
    let rerendered: Vec<u32> = [first.as_slice(), &answer[..4], &more].concat();
    let a = s.generate_from(rerendered.clone(), &greedy(12), &mut |_| true).unwrap();
    let b = r.generate_from(rerendered.clone(), &greedy(12), &mut |_| true).unwrap();
    assert_eq!(b.metrics.prefilled_tokens, rerendered.len() - first.len(), "the restored checkpoint was not used");
    assert_eq!((&a.token_ids, a.metrics.prefilled_tokens), (&b.token_ids, b.metrics.prefilled_tokens));
    // And a prompt that extends the cache: only the new tokens, the same answer.
    let next: Vec<u32> = [rerendered.as_slice(), &b.token_ids, &more].concat();
    let a = s.generate_from(next.clone(), &greedy(8), &mut |_| true).unwrap();
    let b = r.generate_from(next, &greedy(8), &mut |_| true).unwrap();
    assert_eq!(b.metrics.prefilled_tokens, 1 + more.len());
    assert_eq!(a.token_ids, b.token_ids);
}

/// A turn cancelled mid-answer and then edited (the prompt departs inside the cancelled turn)
/// goes back to the last consistent state before it — the end of the previous answer — and not
/// to the end of the previous prompt (which prefilled the previous answer again); its answer
/// equals a fresh session's.
#[test]
fn qwen35_cancel_mid_answer_goes_back_to_the_end_of_the_last_answer() {
    cancel_mid_answer(BackendPreference::Cpu);
}

fn cancel_mid_answer(pref: BackendPreference) {
    let Some(path) = model() else { return };
    let (_, cases) = golden();
    let e = load(&path, pref).unwrap();
    let cfg = SessionConfig { max_context: 512, prefill_chunk: 64, ..Default::default() };
    let first = ids(&cases[5]["prompt_token_ids"]);
    let tok = e.tokenizer();
    let more = tok.encode(" Then the tide turned, and the lamps went out one by one.", false).unwrap();
    let edit = tok.encode(" Instead, write about a lighthouse keeper.", false).unwrap();
    assert_ne!(more[0], edit[0]);
    let mut s = e.new_session(cfg.clone()).unwrap();
    let answer = s.generate_from(first.clone(), &greedy(12), &mut |_| true).unwrap().token_ids;
    let second: Vec<u32> = [first.as_slice(), &answer, &more].concat();
    let mut pieces = 0;
    let g = s
        .generate_from(second, &greedy(12), &mut |_| {
            pieces += 1;
            pieces < 3
        })
        .unwrap();
    assert_eq!(g.stop_reason, edgewise_core::session::StopReason::Cancelled);
    assert!(!g.token_ids.is_empty());
    let edited: Vec<u32> = [first.as_slice(), &answer, &edit].concat();
    let g = s.generate_from(edited.clone(), &greedy(12), &mut |_| true).unwrap();
    // The last answer token was never fed; it and the edit are all that is prefilled.
    assert_eq!(g.metrics.prefilled_tokens, 1 + edit.len(), "not back to the end of the last answer");
    let mut fresh = e.new_session(cfg).unwrap();
    assert_eq!(g.token_ids, fresh.generate_from(edited, &greedy(12), &mut |_| true).unwrap().token_ids);
}

/// `DropOldestTurns` on a hybrid model: once the oldest turns are dropped, the prompt departs
/// right after the system prompt, whose state the session kept (a checkpoint where the messages
/// start): only the messages are prefilled again, not the system prompt, and the metrics say
/// how many messages were dropped. The answer equals a fresh session's over the same messages.
#[test]
fn qwen35_drop_oldest_turns_prefills_only_the_messages() {
    use edgewise_core::session::OverflowPolicy;
    use edgewise_core::tokenizer::{ChatMessage, Role};
    let Some(path) = model() else { return };
    let e = load(&path, BackendPreference::Cpu).unwrap();
    let system = "You are the archivist of a small harbour town. You answer questions about its ships, its                   storms and its markets in short, plain sentences, and you say when you do not know.";
    let cfg = SessionConfig {
        max_context: 200,
        prefill_chunk: 64,
        system_prompt: Some(system.into()),
        overflow: OverflowPolicy::DropOldestTurns,
        ..Default::default()
    };
    let sys_tokens = e.tokenizer().encode(system, false).unwrap().len();
    let mut s = e.new_session(cfg.clone()).unwrap();
    let questions = [
        "Which ship came in first this spring, and what did it carry?",
        "Who repaired the sails after the March storm?",
        "What did the market sell on the day of the festival?",
        "How many lamps line the quay, and who lights them?",
        "When did the old lighthouse stop working?",
        "Which families still fish from the north pier?",
    ];
    let mut dropped = None;
    // Each answer's sampled ids: the session renders past answers with them (not re-encoded).
    let mut sampled = std::collections::HashMap::new();
    for q in questions {
        let g = s.chat(q, &greedy(8), &mut |_| true).unwrap();
        sampled.insert(g.text.clone(), g.token_ids.clone());
        if g.metrics.dropped_messages > 0 {
            dropped = Some(g);
            break;
        }
        assert_eq!(g.metrics.dropped_messages, 0);
    }
    let g = dropped.expect("the conversation never overflowed 200 tokens");
    eprintln!(
        "after dropping {} messages: {} of {} prompt tokens prefilled (system prompt {sys_tokens} tokens)",
        g.metrics.dropped_messages, g.metrics.prefilled_tokens, g.metrics.prompt_tokens
    );
    assert!(
        g.metrics.prefilled_tokens + sys_tokens <= g.metrics.prompt_tokens,
        "the system prompt was prefilled again: {:?}",
        g.metrics
    );
    // The same messages in a fresh session.
    let h = s.history();
    let mut msgs = vec![ChatMessage { role: Role::System, content: system.into() }];
    msgs.extend_from_slice(&h[..h.len() - 1]);
    let known: Vec<Option<&[u32]>> = msgs
        .iter()
        .map(|m| if m.role == Role::Assistant { sampled.get(&m.content).map(Vec::as_slice) } else { None })
        .collect();
    let prompt = e.template().encode_known(e.tokenizer(), &msgs, None, true, &known).unwrap();
    assert_eq!(prompt.len(), g.metrics.prompt_tokens);
    // A fresh session brought to the same split: its state at the messages' start, then the
    // messages prefilled from there (over one pass from 0 the chunk boundaries differ, and this
    // crowded random model turns such rounding into a different greedy token).
    let start = g.metrics.prompt_tokens - g.metrics.prefilled_tokens;
    let mut fresh = e.new_session(cfg).unwrap();
    fresh.generate_from(prompt[..start].to_vec(), &greedy(1), &mut |_| true).unwrap();
    let r = fresh.generate_from(prompt, &greedy(8), &mut |_| true).unwrap();
    assert_eq!(r.metrics.prefilled_tokens, g.metrics.prefilled_tokens);
    assert_eq!(g.token_ids, r.token_ids);
}

/// With the real Qwen 3.5 template a past answer is rendered without the thinking block its
/// prompt opened (`<think>\n`), so each next turn departs right after the previous turn's
/// `<|im_start|>assistant\n`, before the end of that prompt (where the turn-boundary
/// checkpoint used to be: every turn prefilled the whole conversation again). The session keeps
/// the state where the next turn will depart: a follow-up prefills only the previous answer as
/// re-rendered and the new message; its answer equals a fresh session's.
#[test]
fn qwen35_chat_with_the_thinking_template_reuses_the_conversation() {
    let Some(path) = model() else { return };
    let copy = common_model::with_chat_template(&path, "chat_templates/qwen3.5.jinja", "qwen35-thinking-template");
    let e = load(&copy, BackendPreference::Cpu).unwrap();
    let _ = std::fs::remove_file(&copy);
    let cfg = SessionConfig { max_context: 1024, prefill_chunk: 64, ..Default::default() };
    let mut s = e.new_session(cfg.clone()).unwrap();
    let mut prev_prompt = 0;
    for (i, q) in [
        "Tell me about the bookbinder by the old market and the atlases he mended for sailors.",
        "What did he keep in the jar by the window?",
        "Why did he never spend them?",
    ]
    .iter()
    .enumerate()
    {
        let g = s.chat(q, &greedy(12), &mut |_| true).unwrap();
        eprintln!("turn {i}: {} of {} prompt tokens prefilled", g.metrics.prefilled_tokens, g.metrics.prompt_tokens);
        if i > 0 {
            // All of the previous prompt but its `<think>\n` (and what follows the departure) is reused.
            assert!(
                g.metrics.prompt_tokens - g.metrics.prefilled_tokens + 4 >= prev_prompt,
                "turn {i} prefilled again: {:?} (previous prompt {prev_prompt})",
                g.metrics
            );
            let h = s.history();
            let prompt = e.template().encode(e.tokenizer(), &h[..h.len() - 1], true).unwrap();
            assert_eq!(prompt.len(), g.metrics.prompt_tokens);
            let mut fresh = e.new_session(cfg.clone()).unwrap();
            let want = fresh.generate_from(prompt.clone(), &greedy(12), &mut |_| true).unwrap().token_ids;
            // Equal, or departing only at a near-tie of the fresh session's logits (the two
            // prefill the conversation in different pieces; int8 activation rounding follows).
            if let Some(j) = g.token_ids.iter().zip(&want).position(|(a, b)| a != b) {
                let mut f = e.new_session(cfg.clone()).unwrap();
                let ctx: Vec<u32> = [prompt.as_slice(), &want[..j]].concat();
                let l = f.prefill_logits(&ctx, ctx.len() - 1).unwrap().pop().unwrap();
                let gap = l[want[j] as usize] - l[g.token_ids[j] as usize];
                eprintln!("turn {i}: departs from a fresh session at token {j}, logit gap {gap:.3}");
                assert!(gap < 0.25, "turn {i} differs from a fresh session at token {j} (gap {gap})");
            }
        }
        prev_prompt = g.metrics.prompt_tokens;
    }
}

/// The router's `LocalEngine` over the real Qwen 3.5 template checkpoints the state where the
/// conversation's next request departs (a past answer is rendered without its thinking block,
/// so the next prompt departs right after that turn's `<|im_start|>assistant\n`), as a
/// session's chat turn does: a follow-up request prefills only from there. Before, it kept only
/// the ends of the prompt and the answer, both past that point, and every follow-up prefilled
/// the whole conversation again. Its first answer is also a `Session`'s chat answer exactly:
/// both split the prefill at the same points.
#[test]
fn qwen35_local_engine_follow_up_prefills_from_the_departure() {
    use edgewise_core::router::{ChatRequest, LocalEngine, Role};
    let Some(path) = model() else { return };
    let copy = common_model::with_chat_template(&path, "chat_templates/qwen3.5.jinja", "qwen35-local-departure");
    let e = load(&copy, BackendPreference::Cpu).unwrap();
    let _ = std::fs::remove_file(&copy);
    let cfg = SessionConfig { max_context: 1024, prefill_chunk: 64, ..Default::default() };
    let params = GenerationParams { enable_thinking: Some(false), ..greedy(12) };
    let local = LocalEngine::new(e.clone(), cfg.clone(), params.clone()).unwrap();
    let q = "Tell me about the bookbinder by the old market and the atlases he mended for sailors.";
    let g1 = local.generate_with(&ChatRequest::user(q), &params, &mut |_| true).unwrap();
    let mut s = e.new_session(cfg).unwrap();
    let want = s.chat(q, &params, &mut |_| true).unwrap();
    assert_eq!(g1.token_ids, want.token_ids, "the LocalEngine's answer differs from a session's chat turn");
    let req = ChatRequest::user(q)
        .with_message(Role::Assistant, g1.text.clone())
        .with_message(Role::User, "What did he keep in the jar by the window?");
    let g2 = local.generate_with(&req, &params, &mut |_| true).unwrap();
    eprintln!(
        "follow-up: {} of {} prompt tokens prefilled (first prompt {})",
        g2.metrics.prefilled_tokens, g2.metrics.prompt_tokens, g1.metrics.prompt_tokens
    );
    // All of the first prompt up to its generation prompt's `<think>` block is reused.
    assert!(
        g2.metrics.prompt_tokens - g2.metrics.prefilled_tokens + 8 >= g1.metrics.prompt_tokens,
        "the follow-up prefilled the conversation again: {:?}",
        g2.metrics
    );
}

/// The model id that session files record covers the DeltaNet layers: two files that differ
/// only in one DeltaNet weight have different ids, so a session saved with one is refused by the
/// other (before, the id read only the embedding and norms of a `qwen35` file: its layer 0 has
/// no `attn_q`, where the id's layer walk stopped).
#[test]
fn qwen35_model_id_covers_the_deltanet_layers() {
    use edgewise_core::gguf::{writer::GgufWriter, GgufFile};
    let Some(path) = model() else { return };
    let f = GgufFile::open(&path).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        w = w.kv(k, v.clone());
    }
    for t in f.tensors() {
        let mut bytes = f.tensor_data(t).unwrap().to_vec();
        if t.name == "blk.0.attn_qkv.weight" {
            // The first block's first quant (Q8_0: f16 scale, then 32 int8): one value changed.
            bytes[2] ^= 1;
        }
        w = w.tensor(&t.name, &t.shape, t.ty, bytes);
    }
    let other = std::env::temp_dir().join(format!("edgewise-qwen35-other-{}.gguf", std::process::id()));
    std::fs::write(&other, w.to_bytes()).unwrap();
    let a = load(&path, BackendPreference::Cpu).unwrap();
    let b = load(&other, BackendPreference::Cpu).unwrap();
    let _ = std::fs::remove_file(&other);
    assert_ne!(a.model_id(), b.model_id());
    let mut s = a.new_session(SessionConfig { max_context: 64, ..Default::default() }).unwrap();
    s.generate_from(vec![1, 2, 3], &greedy(2), &mut |_| true).unwrap();
    let file = std::env::temp_dir().join(format!("edgewise-qwen35-id-{}.ewsession", std::process::id()));
    s.save(&file).unwrap();
    let err = b.restore_session(&file).unwrap_err();
    let _ = std::fs::remove_file(&file);
    assert!(matches!(err, edgewise_core::Error::SessionModelMismatch { .. }), "{err:?}");
}
