//! The training graph against the inference engine on tiny seeded models of each block shape
//! (Gemma 3's sandwich norms, q/k norms, GeGLU, NEOX RoPE, sliding window and logit softcap;
//! Llama's pre-norm, SwiGLU, adjacent-pair RoPE, grouped-query attention and untied head; Qwen 2's
//! q/k/v biases). Each check is also run on a wrong variant, which must fail it.

use std::sync::Arc;

use super::*;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::lora::{LoraAdapter, LoraSet};
use crate::model::decoder::Decoder;
use crate::model::layers::WeightMode;
use crate::model::{Architecture, CausalLm};
use crate::weights::{GgufWeights, WeightSource};

const VOCAB: u64 = 48;

/// A tiny seeded model of `arch` in f32 GGUF tensors, with a NaN in one norm weight when `poison`.
fn tiny_with(arch: &str, poison: bool) -> GgufWeights {
    let (d, hd, heads, kv, ff) = (32u64, 8u64, 4u64, 2u64, 64u64);
    let gemma = arch == "gemma3";
    let mut tensors: Vec<(String, Vec<u64>)> =
        vec![("token_embd.weight".into(), vec![d, VOCAB]), ("output_norm.weight".into(), vec![d])];
    if arch == "llama" {
        tensors.push(("output.weight".into(), vec![d, VOCAB]));
    }
    for l in 0..2 {
        let mut t = vec![
            ("attn_norm.weight", vec![d]),
            ("attn_q.weight", vec![d, heads * hd]),
            ("attn_k.weight", vec![d, kv * hd]),
            ("attn_v.weight", vec![d, kv * hd]),
            ("attn_output.weight", vec![heads * hd, d]),
            ("ffn_norm.weight", vec![d]),
            ("ffn_gate.weight", vec![d, ff]),
            ("ffn_up.weight", vec![d, ff]),
            ("ffn_down.weight", vec![ff, d]),
        ];
        if gemma {
            t.extend([
                ("attn_q_norm.weight", vec![hd]),
                ("attn_k_norm.weight", vec![hd]),
                ("post_attention_norm.weight", vec![d]),
                ("post_ffw_norm.weight", vec![d]),
            ]);
        }
        if arch == "qwen2" {
            t.extend([
                ("attn_q.bias", vec![heads * hd]),
                ("attn_k.bias", vec![kv * hd]),
                ("attn_v.bias", vec![kv * hd]),
            ]);
        }
        tensors.extend(t.into_iter().map(|(n, s)| (format!("blk.{l}.{n}"), s)));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let mut w = GgufWriter::new()
        .kv("general.architecture", MetaValue::String(arch.into()))
        .kv(&key("embedding_length"), MetaValue::U32(d as u32))
        .kv(&key("block_count"), MetaValue::U32(2))
        .kv(&key("feed_forward_length"), MetaValue::U32(ff as u32))
        .kv(&key("attention.head_count"), MetaValue::U32(heads as u32))
        .kv(&key("attention.head_count_kv"), MetaValue::U32(kv as u32))
        .kv(&key("attention.key_length"), MetaValue::U32(hd as u32))
        .kv(&key("context_length"), MetaValue::U32(128));
    if gemma {
        // A window shorter than the test sequences, and a softcap that bites.
        w = w
            .kv(&key("attention.sliding_window"), MetaValue::U32(4))
            .kv(&key("final_logit_softcapping"), MetaValue::F32(3.0));
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ arch.len() as u64;
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product();
        let data: Vec<u8> = (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let r = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let v = if poison && name == "blk.1.ffn_norm.weight" {
                    f32::NAN
                } else if name.contains("norm") {
                    1.0 + 0.2 * r
                } else if name.contains("bias") {
                    0.2 * r
                } else {
                    r * 0.6
                };
                v.to_le_bytes()
            })
            .collect();
        w = w.tensor(&name, &shape, GgmlType::F32, data);
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let p = tmp(&format!("{arch}-model-{}.gguf", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&p, w.to_bytes()).unwrap();
    let file = GgufFile::open(&p).unwrap();
    let _ = std::fs::remove_file(&p);
    GgufWeights::new(Arc::new(file))
}

fn models(arch: &str) -> (FrozenModel, Decoder) {
    models_with(arch, false)
}

fn models_with(arch: &str, poison: bool) -> (FrozenModel, Decoder) {
    let w = tiny_with(arch, poison);
    let vocab = w.raw(WeightId::TokenEmbedding).unwrap().rows;
    let a = Architecture::from_gguf_name(arch).unwrap();
    let cfg = (a.def().from_gguf)(w.file().metadata(), &w, vocab).unwrap();
    let frozen = FrozenModel::load(cfg.clone(), &w).unwrap();
    let dec = Decoder::load(cfg, &w, WeightMode::QuantizedCpu, &crate::backend::cpu_device(), 1 << 30).unwrap();
    (frozen, dec)
}

fn cfg(rank: usize, alpha: f32) -> TrainConfig {
    TrainConfig { rank, alpha, ..TrainConfig::default() }
}

const TOKENS: [u32; 11] = [2, 17, 5, 33, 9, 41, 12, 7, 28, 3, 19];

/// The engine's logits of every position of `TOKENS` with `adapter` (scale 1) or none.
fn engine_logits(dec: &Decoder, adapter: Option<&Path>) -> Vec<f32> {
    let mut cache = dec.new_cache(32, 32).unwrap();
    if let Some(p) = adapter {
        let a = Arc::new(LoraAdapter::load(p, dec.decoder_config().unwrap()).unwrap());
        cache.set_adapters(LoraSet::new(&[(a, 1.0)]).unwrap());
    }
    dec.forward_from(&TOKENS, &mut cache, 0).unwrap().concat()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("edgewise-ft-{}-{name}", std::process::id()))
}

/// The engine's CPU path with f32 weights multiplies in f32 like the graph; they differ by
/// summation order only.
const LOGIT_TOL: f32 = 2e-3;

#[test]
fn forward_equals_the_engine_with_zero_and_random_adapters() {
    for arch in ["gemma3", "llama", "qwen2"] {
        let (frozen, dec) = models(arch);
        let n = TOKENS.len();
        let spread = {
            let e = engine_logits(&dec, None);
            e.iter().fold(0f32, |m, v| m.max(v.abs()))
        };
        // A fresh adapter (B = 0) is the base model, also through the written file.
        let st = LoraState::new(&frozen, &cfg(4, 8.0));
        let zero = tmp(&format!("{arch}-zero.gguf"));
        st.write_adapter(&zero).unwrap();
        let ours = st.logits(&frozen, &TOKENS, 0..n).unwrap();
        let d0 = max_diff(&ours, &engine_logits(&dec, None));
        let d0a = max_diff(&ours, &engine_logits(&dec, Some(&zero)));
        assert!(
            d0 < LOGIT_TOL && d0a < LOGIT_TOL,
            "{arch}: zero adapter differs by {d0} / {d0a} (logits up to {spread})"
        );

        // A random adapter on every projection, scale alpha/rank = 2.
        let mut st = LoraState::new(&frozen, &cfg(4, 8.0));
        st.randomize_b(7, 0.3);
        let rand = tmp(&format!("{arch}-rand.gguf"));
        st.write_adapter(&rand).unwrap();
        let ours = st.logits(&frozen, &TOKENS, 0..n).unwrap();
        let theirs = engine_logits(&dec, Some(&rand));
        let d = max_diff(&ours, &theirs);
        assert!(d < LOGIT_TOL, "{arch}: random adapter differs by {d}");
        // The adapter matters, and a wrong scale (alpha instead of alpha/rank) fails the check.
        let base = engine_logits(&dec, None);
        assert!(max_diff(&theirs, &base) > 50.0 * LOGIT_TOL, "{arch}: the adapter changes nothing");
        // The graph's factor set to alpha instead of alpha/rank.
        let (mut g, _) = st.graph(frozen.config().num_hidden_layers, false);
        g.scale = st.alpha;
        let w = frozen.logits(&TOKENS, 0..n, Some(&g)).unwrap().values().unwrap();
        assert!(max_diff(&w, &theirs) > 50.0 * LOGIT_TOL, "{arch}: a wrong scale passes");
        for p in [zero, rand] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// -log softmax(engine logits)[target], summed over the answer positions `first..`.
fn engine_nll(dec: &Decoder, adapter: &Path, first: usize) -> f32 {
    let vocab = VOCAB as usize;
    let l = engine_logits(dec, Some(adapter));
    (first..TOKENS.len())
        .map(|t| {
            let row = &l[(t - 1) * vocab..t * vocab];
            let m = row.iter().fold(f32::MIN, |a, &b| a.max(b));
            let lse = row.iter().map(|v| (v - m).exp()).sum::<f32>().ln() + m;
            lse - row[TOKENS[t] as usize]
        })
        .sum()
}

#[test]
fn loss_covers_the_answer_tokens_only() {
    let (frozen, dec) = models("gemma3");
    let mut st = LoraState::new(&frozen, &cfg(4, 8.0));
    st.randomize_b(3, 0.3);
    let p = tmp("nll.gguf");
    st.write_adapter(&p).unwrap();
    let first = 7;
    let ex = Example { tokens: TOKENS.to_vec(), answer_start: first };
    let ours = st.nll(&frozen, &ex).unwrap();
    let want = engine_nll(&dec, &p, first);
    assert!((ours - want).abs() < 1e-3 * want.abs().max(1.0), "nll {ours} vs engine {want}");
    // The wrong variant, loss on the prompt tokens too, is far from it.
    let all = engine_nll(&dec, &p, 1);
    assert!((all - ours).abs() > 0.5, "the prompt-token variant is indistinguishable ({all} vs {ours})");
    let _ = std::fs::remove_file(p);
}

#[test]
fn lora_gradient_matches_finite_differences() {
    let (frozen, _) = models("gemma3");
    let mut st = LoraState::new(&frozen, &cfg(2, 4.0));
    st.randomize_b(11, 0.2);
    let ex = Example { tokens: TOKENS.to_vec(), answer_start: 6 };
    let (_, grads) = st.gradient(&frozen, &ex).unwrap();
    let h = 1e-2f32;
    let mut checked = 0;
    let mut worst = 0f32;
    let mut worst_doubled = f32::MAX;
    // Some entries of A and of B in the first and last adapted projections.
    for pi in [0usize, 3, 6, st.params.len() - 1] {
        for which in 0..2 {
            let g = if which == 0 { &grads[pi].0 } else { &grads[pi].1 };
            // The entries with the largest gradient (a finite difference of a tiny one is noise).
            let mut idx: Vec<usize> = (0..g.len()).collect();
            idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            for &i in idx.iter().take(3) {
                let eval = |delta: f32| {
                    let mut s = st.clone();
                    let (at, bt) = s.param_mut(pi);
                    if which == 0 {
                        at[i] += delta;
                    } else {
                        bt[i] += delta;
                    }
                    s.nll(&frozen, &ex).unwrap() as f64
                };
                let fd = ((eval(h) - eval(-h)) / (2.0 * h as f64)) as f32;
                let rel = (fd - g[i]).abs() / fd.abs().max(1e-2);
                worst = worst.max(rel);
                worst_doubled = worst_doubled.min((fd - 2.0 * g[i]).abs() / fd.abs().max(1e-2));
                checked += 1;
            }
        }
    }
    assert!(checked >= 20);
    assert!(worst < 0.03, "autodiff vs finite differences: worst relative error {worst}");
    // A gradient off by a factor (e.g. a missing alpha/rank) fails the same check.
    assert!(worst_doubled > 0.3, "the check cannot tell a doubled gradient ({worst_doubled})");
}

/// A toy task: the answer is the prompt's first token mapped through a fixed permutation.
fn toy_examples(n: usize) -> Vec<Example> {
    let mut s = 12345u64;
    (0..n)
        .map(|_| {
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % 40) as u32 + 4
            };
            let a = next();
            let prompt = vec![1, a, next(), next(), 2];
            let mut tokens = prompt.clone();
            tokens.push((a * 7) % 40 + 4);
            tokens.push(3);
            Example { tokens, answer_start: prompt.len() }
        })
        .collect()
}

#[test]
fn a_few_steps_lower_the_loss_and_the_output_loads() {
    let (frozen, dec) = models("gemma3");
    let data = toy_examples(32);
    let cfg = TrainConfig {
        rank: 4,
        alpha: 8.0,
        epochs: 6,
        lr: 2e-2,
        batch: 4,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let out = tmp("train.gguf");
    let before = eval_loss(&frozen, &LoraState::new(&frozen, &cfg), &data).unwrap();
    let rep = train(&frozen, &data, &data, &cfg, &out, &mut |_| {}).unwrap();
    let after = *rep.eval_loss.last().unwrap();
    assert!(after < 0.5 * before, "eval loss {before} -> {after}");
    assert_eq!(rep.steps.len(), 6 * 8);
    // The written adapter loads in our loader and reproduces the trained loss.
    let a = LoraAdapter::load(&out, dec.decoder_config().unwrap()).unwrap();
    assert_eq!((a.rank(), a.weights(), a.alpha()), (4, 14, 8.0));
    assert!(!checkpoint_path(&out).exists(), "a finished run leaves no checkpoint");
    let _ = std::fs::remove_file(out);
}

#[test]
fn resuming_after_an_interruption_gives_the_same_adapter() {
    let (frozen, _) = models("llama");
    let data = toy_examples(12);
    let cfg = TrainConfig {
        rank: 2,
        alpha: 4.0,
        epochs: 2,
        lr: 1e-2,
        batch: 3,
        checkpoint_every: 1,
        ..TrainConfig::default()
    };
    let whole = tmp("whole.gguf");
    let mut lrs = Vec::new();
    train(&frozen, &data, &[], &cfg, &whole, &mut |s| lrs.push(s.lr)).unwrap();
    // The default schedule is active: warmup, then a decay (not a constant rate).
    assert_eq!(lrs.len(), 8);
    assert!(lrs[0] == 1e-2 && lrs[7] < 0.2e-2, "{lrs:?}");
    // Interrupted at step 5 (a panic stands in for the kill; the checkpoint of step 5 is written
    // after the callback, so the last one on disk is step 4's), then run again.
    let part = tmp("part.gguf");
    let mut part_lrs = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&frozen, &data, &[], &cfg, &part, &mut |s| {
            assert!(s.step < 5, "killed");
            part_lrs.push(s.lr)
        })
    }));
    assert!(r.is_err());
    assert!(checkpoint_path(&part).exists());
    part_lrs.truncate(4);
    let rep = train(&frozen, &data, &[], &cfg, &part, &mut |s| part_lrs.push(s.lr)).unwrap();
    // The resumed run continues the schedule where the checkpoint left it.
    assert_eq!(part_lrs, lrs, "the resumed run's learning rates differ");
    assert_eq!(rep.resumed_from_step, 4);
    assert_eq!(rep.steps.first().map(|s| s.step), Some(5));
    assert_eq!(std::fs::read(&whole).unwrap(), std::fs::read(&part).unwrap(), "resumed run differs");
    // A checkpoint of other settings is refused, not silently mixed in.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&frozen, &data, &[], &cfg, &part, &mut |s| assert!(s.step < 3, "killed"))
    }));
    let other = TrainConfig { lr: 2e-2, ..cfg.clone() };
    assert!(matches!(train(&frozen, &data, &[], &other, &part, &mut |_| {}), Err(Error::Training { .. })));
    let _ = std::fs::remove_file(checkpoint_path(&part));
    for p in [whole, part] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn nan_loss_stops_with_a_typed_error() {
    // A base model with a NaN weight: the first loss is NaN.
    let (frozen, _) = models_with("qwen2", true);
    let data = toy_examples(4);
    let cfg = TrainConfig {
        rank: 2,
        alpha: 4.0,
        epochs: 1,
        lr: 1e-2,
        batch: 1,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let out = tmp("nan.gguf");
    match train(&frozen, &data, &[], &cfg, &out, &mut |_| {}) {
        Err(Error::Training { reason }) => assert!(reason.contains("loss is"), "{reason}"),
        other => panic!("expected a training error, got {:?}", other.map(|r| r.steps.len())),
    }
    assert!(!out.exists());
    let _ = std::fs::remove_file(checkpoint_path(&out));
}

#[test]
fn lr_schedule_warms_up_then_decays_to_a_tenth() {
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-9 + 1e-5 * b.abs();
    // 100 planned steps, 5 of warmup, peak 1e-3.
    let c = |s| lr_at(LrSchedule::Cosine, 1e-3, s, 5, 100);
    for (step, want) in [
        (1, 2e-4),
        (3, 6e-4),
        (5, 1e-3),
        // Halfway through the decay: the floor plus half the span.
        (52, 1e-4 + 0.9e-3 * 0.5 * (1.0 + (std::f64::consts::PI * 47.0 / 95.0).cos()) as f32),
        (100, 1e-4),
        (130, 1e-4),
    ] {
        assert!(close(c(step), want), "step {step}: {} vs {want}", c(step));
    }
    // Monotone: up during the warmup, down after it.
    assert!((1..5).all(|s| c(s) < c(s + 1)) && (5..100).all(|s| c(s) > c(s + 1)));
    // Constant: the peak after its warmup (none by default).
    assert!(close(lr_at(LrSchedule::Constant, 1e-3, 2, 4, 100), 5e-4));
    assert!((1..=100).all(|s| lr_at(LrSchedule::Constant, 1e-3, s, 0, 100) == 1e-3));
    // The defaults: cosine, warmup 5 % of the planned steps rounded up (150 steps: 8).
    let d = TrainConfig { lr: 1.5e-3, ..TrainConfig::default() };
    assert_eq!((d.schedule, d.planned_steps(1200), d.warmup(150)), (LrSchedule::Cosine, 150, 8));
    assert!(
        close(d.lr_at(8, 1200), 1.5e-3) && close(d.lr_at(150, 1200), 1.5e-4) && close(d.lr_at(1, 1200), 1.5e-3 / 8.0)
    );
    let flat = TrainConfig { schedule: LrSchedule::Constant, ..d.clone() };
    assert_eq!((flat.warmup(150), flat.lr_at(150, 1200)), (0, 1.5e-3));
}

#[test]
fn clipping_scales_a_large_gradient_to_the_norm() {
    // Two projections; global norm sqrt(3² + 4² + 12² + 0 + 84²) = 85.
    let big = vec![(vec![3.0, 4.0], vec![12.0]), (vec![0.0], vec![84.0])];
    let mut g = big.clone();
    let norm = clip_grad_norm(&mut g, 1.0);
    assert!((norm - 85.0).abs() < 1e-4, "{norm}");
    let after: f32 = g.iter().flat_map(|(a, b)| a.iter().chain(b)).map(|x| x * x).sum::<f32>().sqrt();
    assert!((after - 1.0).abs() < 1e-6, "clipped norm {after}");
    // One factor for every entry of every projection (the direction is kept).
    for ((a, b), (a0, b0)) in g.iter().zip(&big) {
        for (x, x0) in a.iter().chain(b).zip(a0.iter().chain(b0)) {
            assert!((x - x0 / 85.0).abs() < 1e-7, "{x} vs {}", x0 / 85.0);
        }
    }
    // Below the norm, or with clipping off (0): untouched.
    let mut small = vec![(vec![0.3, 0.4], vec![])];
    assert!((clip_grad_norm(&mut small, 1.0) - 0.5).abs() < 1e-6);
    assert_eq!(small, vec![(vec![0.3, 0.4], vec![])]);
    let mut off = big.clone();
    clip_grad_norm(&mut off, 0.0);
    assert_eq!(off, big);
}

#[test]
fn training_clips_each_step_s_gradient() {
    // A tiny clip norm: every step's gradient is over it, and the adapter differs from an
    // unclipped run's (the clipped gradient is what AdamW sees).
    let (frozen, _) = models("qwen2");
    let data = toy_examples(8);
    let base = TrainConfig {
        rank: 2,
        alpha: 4.0,
        epochs: 1,
        lr: 1e-2,
        batch: 2,
        checkpoint_every: 0,
        clip_norm: 0.0,
        ..TrainConfig::default()
    };
    let (free, clipped) = (tmp("free.gguf"), tmp("clipped.gguf"));
    let mut norms = Vec::new();
    train(&frozen, &data, &[], &base, &free, &mut |s| norms.push(s.grad_norm)).unwrap();
    let tiny = norms.iter().copied().fold(f32::INFINITY, f32::min) * 1e-3;
    let cfg = TrainConfig { clip_norm: tiny, ..base };
    train(&frozen, &data, &[], &cfg, &clipped, &mut |s| assert!(s.grad_norm > tiny)).unwrap();
    assert!(std::fs::read(&free).unwrap() != std::fs::read(&clipped).unwrap(), "clipping changed nothing");
    for p in [free, clipped] {
        let _ = std::fs::remove_file(p);
    }
}
