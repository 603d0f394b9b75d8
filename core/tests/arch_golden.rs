//! Every supported non-Gemma architecture against llama.cpp, on small random-weight GGUFs with
//! the real tokenizers (`tests/reference/make_arch_goldens.py synth` writes them to
//! `$EDGEWISE_HOME/reference/synth/`; its `goldens` command wrote `tests/golden/<name>/` with
//! llama-cpp-python): tokenization of the prompts, greedy continuations under the near-tie rule
//! (shared/reference/README.md: a departure is acceptable only at a token llama.cpp scored within
//! 0.25 logits of its best; the rest is then no longer comparable), and last-position logits.
//! A deliberately wrong variant of each file (another RoPE base) must fail the same check.

mod common_model;
mod near_tie;

use std::path::PathBuf;

use edgewise_core::backend::BackendPreference;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::session::{GenerationParams, SessionConfig};
use near_tie::{ids, judge_with, Verdict, NEAR_TIE};
use serde_json::Value;
use sha2::Digest;

/// Max |our logit − llama.cpp's| over the recorded last-position logits (llama.cpp's top 32 and
/// a spread of other ids): "well under 1 logit" (shared/reference/README.md). llama.cpp itself moves
/// by 0.18–0.46 on these files between an f16 and an f32 KV cache (the goldens' headers).
const LOGIT_TOLERANCE: f64 = 1.0;

/// The synthesized models with goldens (`MODELS` and `QUANTIZED` of make_arch_goldens.py).
const NAMES: &[&str] = &["llama", "llama-mha", "qwen2", "qwen3", "qwen3-q4km"];

fn model(name: &str) -> Option<PathBuf> {
    common_model::synth_model(name, "tests/reference/make_arch_goldens.py synth")
}

fn golden(name: &str) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(common_model::golden(&format!("{name}/greedy.jsonl"))).expect("golden file");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().expect("header")["header"].clone();
    (header, lines.collect())
}

fn sha256(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn load(path: &std::path::Path, pref: BackendPreference) -> Engine {
    Engine::load(path, EngineConfig { backend: pref, threads: Some(2), gpu_self_test: false }).expect("engine loads")
}

/// One model against its goldens: `(verdicts, worst last-position |Δlogit|)`. `limit` bounds the
/// cases (the slow GPU driver in CI).
fn run(engine: &Engine, cases: &[Value], limit: usize, margin: f64) -> (Vec<Verdict>, f64) {
    let mut verdicts = Vec::new();
    let mut worst = 0f64;
    for (ci, case) in cases.iter().enumerate().take(limit) {
        let prompt = ids(&case["prompt_token_ids"]);
        let n_gen = ids(&case["greedy_token_ids"]).len();
        let mut s = engine
            .new_session(SessionConfig {
                max_context: prompt.len() + n_gen + 8,
                prefill_chunk: 256,
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
        let params = GenerationParams { ignore_eos: true, ..GenerationParams::greedy(n_gen) };
        let got = s.generate_from(prompt, &params, &mut |_| true).unwrap().token_ids;
        let v = judge_with(&got, case, margin);
        eprintln!("  case {ci}: {v:?}, last-position max |Δlogit| {d:.3}");
        verdicts.push(v);
    }
    (verdicts, worst)
}

/// The model's tokenizer gives llama.cpp's prompt ids, and its greedy tokens and logits agree.
fn check(name: &str, pref: BackendPreference, limit: usize) {
    check_steps(name, pref, limit, usize::MAX);
}

/// [`check`] on the first `limit` cases, each cut to its first `steps` greedy tokens.
fn check_steps(name: &str, pref: BackendPreference, limit: usize, steps: usize) {
    let Some(path) = model(name) else { return };
    let (header, mut cases) = golden(name);
    for case in &mut cases {
        for key in ["greedy_token_ids", "top5"] {
            case[key].as_array_mut().unwrap().truncate(steps);
        }
    }
    assert_eq!(
        sha256(&path),
        header["model_sha256"].as_str().unwrap(),
        "{name}: the synthesized model differs from the goldens' (regenerate both)"
    );
    let e = load(&path, pref);
    assert_eq!(e.info().architecture, header["architecture"].as_str().unwrap());
    for case in &cases {
        assert_eq!(
            e.tokenizer().encode(case["prompt"].as_str().unwrap(), true).unwrap(),
            ids(&case["prompt_token_ids"]),
            "{name}: tokenization differs from llama.cpp"
        );
    }
    eprintln!("{name} on {pref:?}:");
    let (verdicts, worst) = run(&e, &cases, limit, NEAR_TIE);
    for (ci, v) in verdicts.iter().enumerate() {
        assert!(!matches!(v, Verdict::Departs { .. }), "{name} case {ci}: {v:?}");
    }
    let exact = verdicts.iter().filter(|v| matches!(v, Verdict::Exact)).count();
    eprintln!("{name}: {exact}/{} exact, worst last-position |Δlogit| {worst:.3}", verdicts.len());
    assert!(worst <= LOGIT_TOLERANCE, "{name}: a last-position logit differs from llama.cpp's by {worst:.3}");
    // As for Gemma (engine_golden): two correct engines part at near-ties on some cases; llama.cpp
    // agrees exactly with itself across KV-cache types on only 4-7 of these 8 cases (the header).
    let own = &header["llama_cpp_f32_kv_vs_f16_kv"];
    eprintln!(
        "{name}: llama.cpp against itself (f32 vs f16 KV cache): {}/{} exact, max |Δlogit| {:.3}",
        own["exact"],
        cases.len(),
        own["last_logits_max_abs_diff"].as_f64().unwrap_or(f64::NAN)
    );
    // The floor needs a few cases to mean anything: with one or two (the wgpu step runs
    // EDGEWISE_GPU_ARCH_CASES=1 per file), a single near-tie departure is within the rule above.
    if verdicts.len() >= 3 {
        assert!(exact * 3 >= verdicts.len(), "{name}: too few exact matches: {exact}/{}", verdicts.len());
    }
}

/// A copy of `path` with the f32 value of metadata key `key` multiplied by `factor`.
fn with_scaled_f32(path: &std::path::Path, key: &str, factor: f32, out: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    // A GGUF key/value: u64 length, the key, u32 type (6 = f32), the value.
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key.as_bytes());
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap_or_else(|| panic!("no key {key}")) + pat.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 6, "{key} is not an f32");
    let v = f32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) * factor;
    bytes[at + 4..at + 8].copy_from_slice(&v.to_le_bytes());
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn cpu_llama_matches_llama_cpp() {
    check("llama", BackendPreference::Cpu, usize::MAX);
}

#[test]
fn cpu_llama_mha_untied_matches_llama_cpp() {
    check("llama-mha", BackendPreference::Cpu, usize::MAX);
}

#[test]
fn cpu_qwen2_matches_llama_cpp() {
    check("qwen2", BackendPreference::Cpu, usize::MAX);
}

#[test]
fn cpu_qwen3_matches_llama_cpp() {
    check("qwen3", BackendPreference::Cpu, usize::MAX);
}

#[test]
fn cpu_qwen3_q4_k_m_matches_llama_cpp() {
    check("qwen3-q4km", BackendPreference::Cpu, usize::MAX);
}

/// Gemma 3 1B's real shapes (26 layers, hidden 1152, 4 heads of 256 over one KV head, FFN 6912,
/// a 262144 x 1152 embedding, 5 sliding-window layers of 512 to 1 global, local/global RoPE bases
/// 10^4/10^6) with random weights, Q4_K_M from llama.cpp's quantizer (`make_arch_goldens.py synth
/// --only gemma3-1b-q4km`, 769 MiB, ~3.5 min; `.ci/run` makes it, or keeps it when its sha256 is
/// the goldens'). Scaled to be a stable reference with varied continuations, judged under the
/// shared near-tie rule's 0.25 like every other file (see `synth_gemma3`: llama.cpp with an f32
/// instead of an f16 KV cache agrees with its own goldens within it). The last case crosses the
/// sliding window.
const GEMMA3_1B: &str = "gemma3-1b-q4km";

fn gemma3_1b() -> Option<PathBuf> {
    common_model::synth_model(GEMMA3_1B, "tests/reference/make_arch_goldens.py synth --only gemma3-1b-q4km")
}

#[test]
fn cpu_gemma3_1b_q4_k_m_matches_llama_cpp() {
    if gemma3_1b().is_some() {
        check(GEMMA3_1B, BackendPreference::Cpu, usize::MAX);
    }
}

/// The 1B golden is worth matching past its first steps: no continuation falls into a short cycle
/// early (the first stable rescaling's all did: 2-6 distinct tokens in 24, a 2-token cycle from
/// step 1-4 on; see `synth_gemma3`). At least 8 distinct tokens in each, the first 8 all
/// different. Needs only the golden file.
#[test]
fn gemma3_1b_golden_continuations_do_not_cycle() {
    let (_, cases) = golden(GEMMA3_1B);
    for (ci, case) in cases.iter().enumerate() {
        let got = ids(&case["greedy_token_ids"]);
        let distinct = got.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct >= 8, "{GEMMA3_1B} case {ci}: only {distinct} distinct tokens in {}: {got:?}", got.len());
        let first = got.iter().take(8).collect::<std::collections::HashSet<_>>().len();
        assert_eq!(first, 8.min(got.len()), "{GEMMA3_1B} case {ci}: a token repeats within the first 8: {got:?}");
    }
}

/// The same on wgpu (`EDGEWISE_GPU_TESTS=1`): the embedding is far over the 128 MiB binding limit
/// and must be sharded, as the tied head's. `EDGEWISE_GPU_ARCH_CASES` cases (default 1: lavapipe).
/// Known (2026-12-07, lavapipe): with 3 cases, case 2 departs at step 8 at a gap of 0.31, over the
/// shared 0.25 (cases 0-1 exact; the CPU meets 0.25 on all 9). Not a wgpu error (2026-12-08): the
/// exact f64 forward (`tests/reference/check_gemma3_1b_f64.py`) picks the same token there (margin
/// −0.052 vs llama.cpp's +0.308, which its 8-bit activations and f16 GELU table make), and the wgpu
/// logits are within 1e-5 of it — see the README's Gemma 3 1B entry.
#[test]
fn gpu_gemma3_1b_q4_k_m_matches_llama_cpp() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_gemma3_1b_q4_k_m_matches_llama_cpp (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    let limit = std::env::var("EDGEWISE_GPU_ARCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    if gemma3_1b().is_some() {
        check(GEMMA3_1B, BackendPreference::Gpu, limit);
    }
}

/// The cheap wgpu check of the 1B that CI runs on lavapipe (`EDGEWISE_GPU_TESTS=1`; 114 s there
/// on the loaded 2-core machine, where a whole case took ~18 min): the first prompt's last-position logits and its first 4
/// greedy tokens. It covers what the 1B adds on the GPU: the 262144 x 1152 embedding and tied head
/// sharded over the 128 MiB binding limit, 26 layers in the 5:1 sliding/global pattern with their
/// two RoPE bases (which a short prompt tells apart; the window itself needs > 512 tokens).
#[test]
fn gpu_gemma3_1b_short_matches_llama_cpp() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_gemma3_1b_short_matches_llama_cpp (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    if gemma3_1b().is_some() {
        check_steps(GEMMA3_1B, BackendPreference::Gpu, 1, 4);
    }
}

/// A copy of `path` with the u32 value of metadata key `key` set to `value`.
fn with_u32(path: &std::path::Path, key: &str, value: u32, out: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key.as_bytes());
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap_or_else(|| panic!("no key {key}")) + pat.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 4, "{key} is not a u32");
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
    std::fs::write(out, bytes).unwrap();
}

/// The 1B check has teeth where it matters, each wrong variant a one-word patch of the file's
/// metadata (the synthesized file spells out llama.cpp's gemma3 defaults, period 6 and local base
/// 10^4, so that they can be patched): the global layers' RoPE base set to the local one (10^4),
/// no local RoPE base (the sliding layers at the global 10^6), the sliding-window pattern off by
/// one layer (period 5: the first global layer is layer 4, not 5) — each departs on the short
/// cases — and no sliding window (512 -> 4096), which departs on the case that crosses it (the
/// shorter cases cannot see the window).
#[test]
fn cpu_gemma3_1b_wrong_variants_fail_the_check() {
    let Some(path) = gemma3_1b() else { return };
    let (_, cases) = golden(GEMMA3_1B);
    let long: Vec<Value> = cases.iter().filter(|c| ids(&c["prompt_token_ids"]).len() > 512).cloned().collect();
    assert!(!long.is_empty(), "no golden case crosses the 512-token sliding window");
    let bad = std::env::temp_dir().join(format!("edgewise-wrong-{GEMMA3_1B}-{}.gguf", std::process::id()));
    type Patch = dyn Fn(&std::path::Path, &std::path::Path);
    let variants: [(&str, &[Value], &Patch); 4] = [
        ("global RoPE base = local (10^4)", &cases[..3], &|p, out| {
            with_scaled_f32(p, "gemma3.rope.freq_base", 0.01, out)
        }),
        ("no local RoPE base (10^6)", &cases[..3], &|p, out| {
            with_scaled_f32(p, "gemma3.rope.freq_base_swa", 100.0, out)
        }),
        ("sliding-window pattern off by one layer (period 5)", &cases[..3], &|p, out| {
            with_u32(p, "gemma3.attention.sliding_window_pattern", 5, out)
        }),
        ("no sliding window", &long[..], &|p, out| with_u32(p, "gemma3.attention.sliding_window", 4096, out)),
    ];
    for (what, cases, patch) in variants {
        patch(&path, &bad);
        let e = load(&bad, BackendPreference::Cpu);
        eprintln!("{GEMMA3_1B} with {what}:");
        let (verdicts, worst) = run(&e, cases, usize::MAX, NEAR_TIE);
        drop(e);
        let _ = std::fs::remove_file(&bad);
        let departs = verdicts.iter().filter(|v| matches!(v, Verdict::Departs { .. })).count();
        assert!(
            departs >= 1 || worst > LOGIT_TOLERANCE,
            "{GEMMA3_1B} with {what} still passes: {verdicts:?}, worst |Δlogit| {worst:.3}"
        );
    }
}

/// The check has teeth: with the RoPE base scaled (a plausible-looking but wrong model), each
/// architecture departs from llama.cpp outside the near-tie margin.
#[test]
fn cpu_wrong_rope_base_fails_the_check() {
    for name in ["llama", "qwen2", "qwen3"] {
        let Some(path) = model(name) else { return };
        let (header, cases) = golden(name);
        let arch = header["architecture"].as_str().unwrap();
        let bad = std::env::temp_dir().join(format!("edgewise-wrong-rope-{name}-{}.gguf", std::process::id()));
        with_scaled_f32(&path, &format!("{arch}.rope.freq_base"), 0.1, &bad);
        let e = load(&bad, BackendPreference::Cpu);
        eprintln!("{name} with a wrong RoPE base:");
        let (verdicts, _) = run(&e, &cases, usize::MAX, NEAR_TIE);
        let _ = std::fs::remove_file(&bad);
        let departs = verdicts.iter().filter(|v| matches!(v, Verdict::Departs { .. })).count();
        assert!(departs >= 1, "{name}: a wrong RoPE base still passes: {verdicts:?}");
    }
}

#[test]
fn unknown_architecture_is_a_typed_error() {
    let Some(path) = model("qwen2") else { return };
    let bad = std::env::temp_dir().join(format!("edgewise-unknown-arch-{}.gguf", std::process::id()));
    let mut bytes = std::fs::read(&path).unwrap();
    // `general.architecture` = "qwen2" -> "qwenX" (same length; the keys keep their prefix):
    // u64 key length, key, u32 type 8 (string), u64 value length, value.
    let mut pat = 20u64.to_le_bytes().to_vec();
    pat.extend_from_slice(b"general.architecture");
    pat.extend_from_slice(&8u32.to_le_bytes());
    pat.extend_from_slice(&5u64.to_le_bytes());
    pat.extend_from_slice(b"qwen2");
    let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap();
    bytes[at + pat.len() - 1] = b'X';
    std::fs::write(&bad, bytes).unwrap();
    let err =
        Engine::load(&bad, EngineConfig { backend: BackendPreference::Cpu, threads: Some(2), gpu_self_test: false })
            .unwrap_err();
    let _ = std::fs::remove_file(&bad);
    assert!(matches!(&err, edgewise_core::Error::UnsupportedArchitecture { name } if name == "qwenX"), "{err:?}");
}

/// The wgpu path, on when `EDGEWISE_GPU_TESTS=1` (as in engine_golden; `tests/run-all.sh` sets it).
#[test]
fn gpu_architectures_match_llama_cpp() {
    if std::env::var("EDGEWISE_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: gpu_architectures_match_llama_cpp (set EDGEWISE_GPU_TESTS=1)");
        return;
    }
    // lavapipe in CI is slow (~45 s a case with the load): EDGEWISE_GPU_ARCH_CASES per file.
    let limit = std::env::var("EDGEWISE_GPU_ARCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    for name in NAMES {
        check(name, BackendPreference::Gpu, limit);
    }
}

/// transformers' tensor names of a Qwen 3 / Llama checkpoint (written out here, not taken from
/// the loader's own table, so a wrong table fails the test).
fn transformers_name(id: edgewise_core::weights::WeightId) -> String {
    use edgewise_core::weights::WeightId::*;
    match id {
        TokenEmbedding => "embed_tokens.weight".into(),
        OutputNorm => "norm.weight".into(),
        AttnNorm { layer } => format!("layers.{layer}.input_layernorm.weight"),
        AttnQ { layer } => format!("layers.{layer}.self_attn.q_proj.weight"),
        AttnK { layer } => format!("layers.{layer}.self_attn.k_proj.weight"),
        AttnV { layer } => format!("layers.{layer}.self_attn.v_proj.weight"),
        AttnOutput { layer } => format!("layers.{layer}.self_attn.o_proj.weight"),
        AttnQNorm { layer } => format!("layers.{layer}.self_attn.q_norm.weight"),
        AttnKNorm { layer } => format!("layers.{layer}.self_attn.k_norm.weight"),
        AttnQBias { layer } => format!("layers.{layer}.self_attn.q_proj.bias"),
        AttnKBias { layer } => format!("layers.{layer}.self_attn.k_proj.bias"),
        AttnVBias { layer } => format!("layers.{layer}.self_attn.v_proj.bias"),
        // HF Llama/Qwen: the norm after attention's residual add is the FFN's pre-norm.
        FfnNorm { layer } => format!("layers.{layer}.post_attention_layernorm.weight"),
        FfnGate { layer } => format!("layers.{layer}.mlp.gate_proj.weight"),
        FfnUp { layer } => format!("layers.{layer}.mlp.up_proj.weight"),
        FfnDown { layer } => format!("layers.{layer}.mlp.down_proj.weight"),
        other => panic!("{other:?} is not in a Llama / Qwen checkpoint"),
    }
}

/// llama.cpp's converter permutes Llama's q/k rows for its "norm" RoPE (`LlamaModel.permute`):
/// per head, HF row `j·hd/2 + i` becomes GGUF row `2·i + j`. This undoes it, as a checkpoint has them.
fn unpermute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let (src, dst) = (h * hd + 2 * i + j, h * hd + j * hd / 2 + i);
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// A Hugging Face folder of a non-Gemma architecture loads with HF's conventions and gives
/// llama.cpp's answers: the synthesized file written out as `config.json` + f32
/// `model.safetensors` (the GGUF's tensors dequantized, under transformers' names:
/// `post_attention_layernorm` is the pre-FFN norm, `q_norm`/`k_norm` (Qwen 3), q/k/v biases (Qwen
/// 2), Llama's q/k rows unpermuted and its frequency table as `rope_scaling` llama3, no `lm_head`
/// since the output is tied) + the tokenizer as `tokenizer.json`, checked against the same goldens
/// as the GGUF.
/// `wrong`: Llama's q/k rows left as the GGUF permuted them, which must fail the check.
fn hf_folder_check(name: &str, wrong: bool) {
    use edgewise_core::weights::{WeightId, WeightSource};
    let Some(path) = model(name) else { return };
    let (_, cases) = golden(name);
    let gguf = load(&path, BackendPreference::Cpu);
    let file = std::sync::Arc::new(edgewise_core::gguf::GgufFile::open(&path).unwrap());
    let w = edgewise_core::weights::GgufWeights::new(file.clone());
    let arch = edgewise_core::model::Architecture::from_gguf_name(name).unwrap();
    let vocab = w.raw(WeightId::TokenEmbedding).unwrap().rows;
    let cfg = (arch.def().from_gguf)(file.metadata(), &w, vocab).unwrap();
    let dir = std::env::temp_dir().join(format!("edgewise-hf-{name}-{wrong}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let llama = name == "llama";
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = cfg
        .weight_shapes(false)
        .into_iter()
        .filter(|(id, _)| *id != WeightId::RopeFreqs)
        .map(|(id, [rows, cols])| {
            let raw = w.raw(id).unwrap();
            let mut vals = raw.to_f32().unwrap();
            match id {
                WeightId::AttnQ { .. } if llama && !wrong => {
                    vals = unpermute(&vals, rows, cols, cfg.num_attention_heads)
                }
                WeightId::AttnK { .. } if llama && !wrong => {
                    vals = unpermute(&vals, rows, cols, cfg.num_key_value_heads)
                }
                _ => {}
            }
            let bytes = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
            let shape = if rows == 1 { vec![cols] } else { vec![rows, cols] };
            (format!("model.{}", transformers_name(id)), shape, bytes)
        })
        .collect();
    assert!(tensors.iter().any(|(n, _, _)| n == "model.layers.0.post_attention_layernorm.weight"));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    drop(tensors);
    let (class, bias) = match name {
        "qwen3" => ("Qwen3ForCausalLM", false),
        "qwen2" => ("Qwen2ForCausalLM", true),
        _ => ("LlamaForCausalLM", false),
    };
    let mut config = serde_json::json!({
        "architectures": [class], "model_type": name, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim, "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings, "hidden_act": "silu", "attention_bias": bias,
        "tie_word_embeddings": true, "vocab_size": vocab, "torch_dtype": "float32"
    });
    if llama {
        // What make_arch_goldens.py's `llama3_factors` (llama.cpp's converter) turned into rope_freqs.
        config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), gguf.tokenizer().hf().to_string(false).unwrap()).unwrap();
    let folder = load(&dir, BackendPreference::Cpu);
    assert_eq!(folder.info().architecture, name);
    eprintln!("{name} as a Hugging Face folder:");
    let (verdicts, worst) = run(&folder, &cases, usize::MAX, NEAR_TIE);
    let _ = std::fs::remove_dir_all(&dir);
    if wrong {
        let departs = verdicts.iter().filter(|v| matches!(v, Verdict::Departs { .. })).count();
        assert!(departs >= 1, "{name} folder with permuted q/k still passes: {verdicts:?}");
        return;
    }
    for (ci, v) in verdicts.iter().enumerate() {
        assert!(!matches!(v, Verdict::Departs { .. }), "{name} folder case {ci}: {v:?}");
    }
    let exact = verdicts.iter().filter(|v| matches!(v, Verdict::Exact)).count();
    eprintln!("{name} folder: {exact}/{} exact, worst last-position |Δlogit| {worst:.3}", verdicts.len());
    assert!(worst <= LOGIT_TOLERANCE, "{name} folder: a last-position logit differs from llama.cpp's by {worst:.3}");
    assert!(exact * 3 >= verdicts.len(), "{name} folder: too few exact matches: {exact}/{}", verdicts.len());
}

#[test]
fn cpu_qwen3_hf_folder_matches_llama_cpp() {
    hf_folder_check("qwen3", false);
}

#[test]
fn cpu_qwen2_hf_folder_matches_llama_cpp() {
    hf_folder_check("qwen2", false);
}

#[test]
fn cpu_llama_hf_folder_matches_llama_cpp() {
    hf_folder_check("llama", false);
    hf_folder_check("llama", true);
}
