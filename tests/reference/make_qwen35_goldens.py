#!/usr/bin/env python3
"""A small random-weight Qwen 3.5 (`qwen35`) GGUF, and llama.cpp's goldens on it.

The same method as make_arch_goldens.py (whose helpers this imports): the real tokenizer metadata
(llama.cpp's `models/ggml-vocab-qwen35.gguf`, which `fetch_llama_vocab.py` puts in
`$EDGEWISE_HOME/reference/llama-vocab/`), the architecture's real tensor set and keys (llama.cpp
`src/models/qwen35.cpp`, `llama_model_qwen35::load_arch_tensors`), seeded random weights in a mix
of types, scaled for well-spread logits (the gap statistics are printed and recorded). Layers
follow the real model's pattern: every 4th a gated full-attention layer, the rest gated DeltaNet.
Value heads outnumber key heads (as in the 4B/9B), so the key heads' tiled repeat is exercised.

    /opt/refenv/bin/python tests/reference/make_qwen35_goldens.py synth
    /opt/refenv/bin/python tests/reference/make_qwen35_goldens.py goldens
    /opt/refenv/bin/python tests/reference/make_qwen35_goldens.py synth --only qwen35-0.8b-q4km

The last is the speed file (never made by default, not in CI: ~1.5 GB written in F16, then
quantized to Q4_K_M by llama.cpp's own quantizer and the F16 file deleted; minutes): the real
Qwen 3.5 0.8B shapes (24 layers of 1024, 18 DeltaNet with 16 key and 16 value heads of 128 and 6
gated attention layers with 8 query / 2 KV heads of 256, FFN 3584, the tied 248320-token
embedding: the 151936-token vocabulary of llama.cpp's vocab file padded with unused tokens) with
random weights, for `tests/reference/bench_native.sh`.

The prompts include two long ones (> 64 tokens: llama.cpp's prefill runs its chunked DeltaNet
path, 64 tokens a chunk, over several chunks) and every case decodes 24 tokens after the prompt.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_arch_goldens as mag  # noqa: E402
from make_arch_goldens import T, add, copy_tokenizer, sha256, synth_dir, vocab_path  # noqa: E402

import gguf  # noqa: E402

NAME = "qwen35"
CFG = dict(hidden=256, ff=512, layers=8, interval=4, heads=4, kv=2, head_dim=128, n_rot=32,
           sections=[11, 11, 10, 0], theta=10000000.0, eps=1e-6,
           conv=4, k_heads=2, v_heads=4, state=64)
# Weight scales (make_arch_goldens.SCALE's meaning) and the DeltaNet gates' ranges. Real A_log
# gives decays exp(g) of ~0.9-1 per token; dt_bias ~ N(0, 1).
SCALE = dict(mag.SCALE, residual_gain=2.0)
# Tensor types. A random DeltaNet stack amplifies the activation rounding of quantized products
# (int8 per 32 values, in llama.cpp and in our kernels alike) to ~0.5 logit by the last layer,
# which is above many of the top-1/top-2 gaps, so the projections inside the layers are F16
# (llama.cpp rounds their activations to f16, we keep f32) and the quantized kernels are
# exercised by the embedding / LM head (Q8_0) and the DeltaNet's fused qkv (Q8_0).
TYPES = dict(embd=T.Q8_0, qkv=T.Q8_0, other=T.F16)

# Full-size files (`synth --only NAME` only): written in F16, quantized by llama.cpp to `ftype`.
# Qwen 3.5 0.8B's shapes (ARCHITECTURES.md §3.1; HF config of the 0.8B: linear_num_key_heads 16,
# linear_num_value_heads 16, linear_key/value_head_dim 128, conv kernel 4, head_dim 256, 8/2
# heads, FFN 3584, rope θ 10M, partial rotary 0.25, mrope sections [11, 11, 10], tied embedding).
BIG = {
    "qwen35-0.8b-q4km": dict(hidden=1024, ff=3584, layers=24, interval=4, heads=8, kv=2, head_dim=256, n_rot=64,
                             sections=[11, 11, 10, 0], theta=10000000.0, eps=1e-6,
                             conv=4, k_heads=16, v_heads=16, state=128, vocab=248320, ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M"),
}
F16_TYPES = dict(embd=T.F16, qkv=T.F16, other=T.F16)

PROMPTS = mag.PROMPTS[:5] + [
    mag.PROMPTS[7],
    # A second long prompt (~170 tokens), original prose, crossing three 64-token chunks.
    "At the edge of the old market there was a bookbinder who repaired atlases for sailors. Each "
    "spring the ships brought him maps swollen with salt water, their coastlines blurred where a "
    "thumb had rested through a storm. He would unpick the threads, press every sheet between "
    "boards of lime wood, and sew the signatures back with linen cord waxed by hand. The sailors "
    "paid him in coins from a dozen harbours, and he kept them in a jar by the window, sorted by "
    "the colour of their tarnish. When the harbour master asked why he never spent them, he said "
    "that each coin was a promise that its ship would return for the map, and that he liked to "
    "count the promises on quiet evenings while the lamps were lit along the quay.",
]


def copy_tokenizer_padded(w: gguf.GGUFWriter, src: str, n_vocab: int) -> int:
    """`copy_tokenizer`, the vocabulary padded to `n_vocab` with unused `[PAD{i}]` tokens (as
    llama.cpp's converter pads a Qwen vocabulary to the embedding's rows): llama.cpp's
    `ggml-vocab-qwen35.gguf` holds 151936 tokens, the released 0.8B's embedding 248320 rows."""
    r = gguf.GGUFReader(src)
    tokens = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in r.fields["tokenizer.ggml.tokens"].data]
    types = [r.fields["tokenizer.ggml.token_type"].parts[i].tolist()[0] for i in r.fields["tokenizer.ggml.token_type"].data]
    if n_vocab < len(tokens):
        sys.exit(f"{src}: {len(tokens)} tokens, more than {n_vocab}")
    for name, field in r.fields.items():
        if not name.startswith("tokenizer.") or name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            st = field.types[1]
            val = [bytes(field.parts[i]).decode("utf-8") for i in field.data] if st == gguf.GGUFValueType.STRING else [field.parts[i].tolist()[0] for i in field.data]
            w.add_key_value(name, val, vt, sub_type=st)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8"), vt)
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vt)
    pad = n_vocab - len(tokens)
    w.add_token_list(tokens + [f"[PAD{i}]" for i in range(pad)])
    w.add_token_types(types + [int(gguf.TokenType.UNUSED)] * pad)
    return n_vocab


def synth(name: str = NAME, cfg: dict = CFG, types: dict = TYPES) -> str:
    TYPES = types  # noqa: N806 (the per-file tensor types)
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)
    out = os.path.join(synth_dir(), f"{name}.gguf")
    os.makedirs(synth_dir(), exist_ok=True)
    d, ff, hd, h, kv = cfg["hidden"], cfg["ff"], cfg["head_dim"], cfg["heads"], cfg["kv"]
    hk, hv, s = cfg["k_heads"], cfg["v_heads"], cfg["state"]
    ch = 2 * hk * s + hv * s
    w = gguf.GGUFWriter(out + ".tmp", NAME)
    w.add_name(f"edgewise synthetic {name}")
    n_vocab = copy_tokenizer(w, vocab_path("qwen35")) if "vocab" not in cfg else copy_tokenizer_padded(w, vocab_path("qwen35"), cfg["vocab"])
    w.add_context_length(4096)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_block_count(cfg["layers"])
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(cfg["n_rot"])
    w.add_rope_dimension_sections(cfg["sections"])
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_uint32(f"{NAME}.full_attention_interval", cfg["interval"])
    w.add_ssm_conv_kernel(cfg["conv"])
    w.add_ssm_inner_size(hv * s)
    w.add_ssm_state_size(s)
    w.add_ssm_time_step_rank(hv)
    w.add_ssm_group_count(hk)
    w.add_file_type(1)

    sc = SCALE

    def mat(rows, cols, gain=1.0):
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(gain / math.sqrt(cols))

    def norm(n, spread=0.1):
        return (1.0 + spread * rng.standard_normal(n)).astype(np.float32)

    rows = np.exp(sc["row_norm_spread"] * rng.standard_normal((n_vocab, 1))).astype(np.float32)
    emb = rng.standard_normal((n_vocab, d), dtype=np.float32) * rows * np.float32(sc["embed_std"])
    add(w, "token_embd.weight", emb, TYPES["embd"])
    del emb
    add(w, "output_norm.weight", norm(d) * np.float32(sc["output_norm"]), T.F32)
    for il in range(cfg["layers"]):
        p = f"blk.{il}."
        add(w, p + "attn_norm.weight", norm(d), T.F32)
        if (il + 1) % cfg["interval"] != 0:
            # Gated DeltaNet.
            add(w, p + "attn_qkv.weight", mat(ch, d), TYPES["qkv"])
            add(w, p + "attn_gate.weight", mat(hv * s, d), TYPES["other"])
            # Depthwise conv taps ~ N(0, 1/sqrt(kernel)) (torch's default init scale), the newest tap
            # a little stronger so the current token dominates as in trained models.
            conv = rng.standard_normal((ch, cfg["conv"])).astype(np.float32) / np.float32(math.sqrt(cfg["conv"]))
            conv[:, -1] += 0.5
            add(w, p + "ssm_conv1d.weight", conv, T.F32)
            add(w, p + "ssm_dt.bias", rng.standard_normal(hv).astype(np.float32), T.F32)
            # ssm_a = -exp(A_log), A_log ~ log U(1, 16) as in the HF initialisation.
            add(w, p + "ssm_a", -np.exp(np.log(rng.uniform(1, 16, hv))).astype(np.float32) * np.float32(0.05), T.F32)
            add(w, p + "ssm_beta.weight", mat(hv, d), TYPES["other"])
            add(w, p + "ssm_alpha.weight", mat(hv, d), TYPES["other"])
            add(w, p + "ssm_norm.weight", norm(s), T.F32)
            add(w, p + "ssm_out.weight", mat(d, hv * s, sc["residual_gain"]), TYPES["other"])
        else:
            # Gated attention: per head the query then the output gate.
            add(w, p + "attn_q.weight", mat(2 * h * hd, d), TYPES["other"])
            add(w, p + "attn_k.weight", mat(kv * hd, d), TYPES["other"])
            add(w, p + "attn_v.weight", mat(kv * hd, d), TYPES["other"])
            add(w, p + "attn_q_norm.weight", norm(hd), T.F32)
            add(w, p + "attn_k_norm.weight", norm(hd), T.F32)
            add(w, p + "attn_output.weight", mat(d, h * hd, sc["residual_gain"]), TYPES["other"])
        add(w, p + "post_attention_norm.weight", norm(d), T.F32)
        add(w, p + "ffn_gate.weight", mat(ff, d), TYPES["other"])
        add(w, p + "ffn_up.weight", mat(ff, d), TYPES["other"])
        add(w, p + "ffn_down.weight", mat(d, ff, sc["residual_gain"]), TYPES["other"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".tmp", out)
    return out


def cmd_synth(args) -> None:
    if not args.only or NAME in args.only:
        p = synth()
        print(f"{NAME}: {p} ({os.path.getsize(p) / 2**20:.1f} MiB) sha256 {sha256(p)}")
    for name, cfg in BIG.items():
        if not (args.only and name in args.only):
            continue
        src = synth(name + ".f16", cfg, F16_TYPES)
        try:
            p = mag.quantize(name, name + ".f16", cfg["ftype"], os.cpu_count() or 2)
        finally:
            os.remove(src)
        print(f"{name}: {p} ({os.path.getsize(p) / 2**20:.1f} MiB, {cfg['ftype']}) sha256 {sha256(p)}")


def cmd_goldens(_args) -> None:
    import llama_cpp
    from make_llama_goldens import Ref

    mag.PROMPTS = PROMPTS
    path = os.path.join(synth_dir(), f"{NAME}.gguf")
    ref = Ref(path, n_ctx=1024)
    cases, (gaps, bests) = mag.run_cases(ref)
    n_batch = ref.params["n_batch"]
    for c in cases:
        print(f"  prompt of {len(c['prompt_token_ids'])} tokens")
    ref.close()
    alt = Ref(path, n_ctx=1024, f32_kv=True)
    alt_cases, _ = mag.run_cases(alt)
    alt.close()
    verdicts = [mag.near_tie_verdict(a["greedy_token_ids"], c) for c, a in zip(cases, alt_cases)]
    self_dlogit = 0.0
    for c, a in zip(cases, alt_cases):
        mine = dict(zip(a["last_logits"]["ids"], a["last_logits"]["values"]))
        self_dlogit = max(self_dlogit, max(abs(v - mine[i]) for i, v in zip(c["last_logits"]["ids"], c["last_logits"]["values"]) if i in mine))
    print(f"{NAME}: llama.cpp with an f32 KV cache against its f16 goldens: {verdicts.count('exact')}/{len(cases)} exact, "
          f"{verdicts.count('near-tie')} near-tie, {verdicts.count('departs')} departures, last-position max |dlogit| {self_dlogit:.3f}")
    stats = mag.gap_stats(NAME, gaps, bests)
    distinct = [len(set(c["greedy_token_ids"])) for c in cases]
    print(f"{NAME}: distinct tokens per 24-token continuation: {distinct}")
    header = {"header": {
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, f16 KV, n_batch {n_batch} (prompts in one batch: chunked DeltaNet prefill)",
        "model": f"$EDGEWISE_HOME/reference/synth/{NAME}.gguf (tests/reference/make_qwen35_goldens.py synth)",
        "model_sha256": sha256(path),
        "architecture": NAME,
        "gen_tokens": mag.N_GEN,
        "top1_top2_gaps": stats,
        "llama_cpp_f32_kv_vs_f16_kv": {"exact": verdicts.count("exact"), "near_tie": verdicts.count("near-tie"),
                                       "departs": verdicts.count("departs"), "last_logits_max_abs_diff": self_dlogit},
    }}
    mag.write_goldens(os.path.join(mag.REPO_ROOT, "tests", "golden", NAME, "greedy.jsonl"), header, cases)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["synth", "goldens"])
    ap.add_argument("--only", nargs="*", help=f"synth: these files only ({NAME}, {', '.join(BIG)})")
    args = ap.parse_args()
    {"synth": cmd_synth, "goldens": cmd_goldens}[args.command](args)


if __name__ == "__main__":
    main()
