#!/usr/bin/env python3
"""Small random-weight GGUFs per architecture, and llama.cpp's goldens on them.

No real Llama / Qwen weights can be fetched on our build machines, so each architecture is proven
on a synthesized file: real tokenizer metadata (copied from llama.cpp's vocab-only GGUFs, which
`fetch_llama_vocab.py` puts in `$EDGEWISE_HOME/reference/llama-vocab/`), the architecture's real
tensor set and hyper-parameter keys, and seeded random weights in a mix of F32, F16, Q8_0, Q5_0
and Q4_0 (written by gguf-py), plus one Q4_K_M file made by llama.cpp's own quantizer. Weights are
scaled so the logits are well spread (the top-1/top-2 gaps are printed and recorded).

    # the models (deterministic: same bytes on every run; CI runs this before the tests)
    /opt/refenv/bin/python tests/reference/make_arch_goldens.py synth
    # the goldens (llama-cpp-python), written to tests/golden/<name>/greedy.jsonl
    /opt/refenv/bin/python tests/reference/make_arch_goldens.py goldens

The models go to `$EDGEWISE_HOME/reference/synth/<name>.gguf` (about 10-40 MB each, mostly the
real vocabulary's embedding: too large to commit, so CI regenerates them; each golden records its
model's sha256 and the Rust test refuses a model whose hash differs). Everything in the goldens is
computed by llama.cpp; the only arithmetic here is the argmax / top-k selection.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def home() -> str:
    return os.environ.get("EDGEWISE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "edgewise")


def vocab_path(name: str) -> str:
    return os.path.join(home(), "reference", "llama-vocab", f"ggml-vocab-{name}.gguf")


def synth_dir() -> str:
    return os.path.join(home(), "reference", "synth")


# name -> (general.architecture, vocab file, hyper-parameters, extras)
# Shapes are small but real-looking: K-quants need rows that are multiples of 256.
MODELS = {
    # Llama 3.2 style: GQA 4:1, Llama 3 frequency factors (rope_freqs), tied output, theta 500k.
    "llama": dict(arch="llama", vocab="llama-bpe", hidden=256, ff=512, layers=3, heads=8, kv=2, head_dim=32,
                  theta=500000.0, eps=1e-5, llama3_freqs=True, tied=True, bias=False, qk_norm=False),
    # SmolLM2 style: plain multi-head attention, no frequency table, untied output.
    "llama-mha": dict(arch="llama", vocab="llama-bpe", hidden=256, ff=512, layers=2, heads=4, kv=4, head_dim=64,
                      theta=100000.0, eps=1e-5, llama3_freqs=False, tied=False, bias=False, qk_norm=False),
    # Qwen 2.5 style: q/k/v biases, NEOX RoPE, tied.
    "qwen2": dict(arch="qwen2", vocab="qwen2", hidden=256, ff=512, layers=3, heads=4, kv=2, head_dim=64,
                  theta=1000000.0, eps=1e-6, llama3_freqs=False, tied=True, bias=True, qk_norm=False),
    # Qwen 3 style: per-head q/k RMSNorm, heads x head_dim wider than the model (8 x 64 over 256).
    "qwen3": dict(arch="qwen3", vocab="qwen2", hidden=256, ff=512, layers=3, heads=8, kv=4, head_dim=64,
                  theta=1000000.0, eps=1e-6, llama3_freqs=False, tied=True, bias=False, qk_norm=True),
}
# How the weights are scaled (a model's `scale` entry overrides these). Norm weights are ~1 and the
# projections at 1/sqrt(fan_in), as at initialisation. A logit is an embedding row against the
# final hidden state (RMS 1 after the output norm), so its spread over the vocabulary is about
# embed_std * sqrt(hidden) * output_norm. Rows of one norm would make those logits Gaussian, whose
# best few crowd together (median gap ~0.85 at a best logit of ~21); real embedding rows differ in
# norm, so each row is scaled by exp(row_norm_spread * N(0, 1)), which thins the top out the way a
# real model's is. With a tied head the current token's own row also sits
# in the residual stream, so the layers must write more than the embedding does (residual_gain)
# or every model just repeats its input. Tuned by the gap statistics `goldens` prints: a real
# model's top-1/top-2 gap is a fraction of a logit or more on most steps, neither ~0 nor tens:
# the target is the real Gemma 3 270M on its goldens (tests/golden/gemma3/greedy.jsonl: median gap
# 1.57, 10.6 % of steps below 0.25, 20 % below 0.5, best logit ~21).
SCALE = dict(embed_std=0.05, row_norm_spread=0.3, output_norm=2.5, residual_gain=2.0, bias_std=0.3)
# Files quantized from another by llama.cpp (`llama_model_quantize`): name -> (source, ftype name).
QUANTIZED = {"qwen3-q4km": ("qwen3", "LLAMA_FTYPE_MOSTLY_Q4_K_M")}
# Full-size files (`synth --only NAME` / `goldens --only NAME` only, never by default): Gemma 3 1B's
# real shapes (26 layers, hidden 1152, 4 heads of 256 over 1 KV head, FFN 6912, the 262144-token
# vocabulary: a 262144 x 1152 embedding, over the GPU's 128 MiB binding limit in any type),
# written in F16 (~2 GB, deleted afterwards) and quantized to Q4_K_M by llama.cpp's quantizer.
BIG = {
    # Scaled for Gemma's deep sandwich-normed stack so that it is a stable reference with varied
    # continuations (see synth_gemma3): with SCALE's defaults every continuation repeated one
    # token at logits ~140; with post-norm gains 16 over a small embedding llama.cpp disagreed
    # with itself (f16 vs f32 KV) on 8 of 9 prompts; with the embedding alone carrying the stable
    # part every continuation fell into a 2-token cycle. Tried on 2026-12-07 to bring llama.cpp's
    # own f16/f32-KV spread under the shared 0.25 margin (measured by patching the file's F32 norm
    # gains; on the first 3 prompts, median gap over median f16/f32-KV change of the top-1/top-2
    # gap: 15 now): q/k norm gain 1.0 -> 26, 0.5 -> 53 (8-9 distinct tokens), other post gains
    # 0.6 -> 16 (a case cycles). The output norm scales gaps and that noise alike. q/k 1.0 with
    # output norm 0.3 (full goldens): llama.cpp self 3/9 exact, 6 near-ties <= 0.125, logits within
    # 0.16; our CPU 5/9 exact, near-ties <= 0.028; wrong variants depart at only 0.26-0.43; but the
    # 592-token case ran a 2-token cycle over steps 1-7 and another repeated within its first 8.
    # Screened again later that day (screen_gemma3_1b.py: all 9 prompts, llama.cpp's f32-KV logits
    # teacher-forced along its f16-KV greedy path; "dev" is the change of the top-1 vs top-2..5
    # logit differences per step): q/k 1.4 with output norm 0.45: 6/9 exact, 2 near-ties <= 0.14,
    # a departure at 0.28 (step 0 of the Spanish prompt), dev median 0.14 / max 0.42, logits within
    # 0.46, gap median 1.76; but continuations of 4 and 2 distinct tokens (cycles). Layer 0's
    # post-FFN gain 12 -> 18 (a larger context-free part): 7/9 exact, 2 near-ties <= 0.056, no
    # departure, logits within 0.47, gap median 1.93 (8.3 % below 0.25) -- but dev median 0.19 /
    # max 0.67 (0.10 of the gap median, against 0.08 on the q/k-1.4 file that departed: the pass
    # was luck more than calm), and 3 continuations cycle (5 and 6 distinct tokens, a repeat
    # within the first 8). q/k 1.7 with output norm 0.5 came closest: 4/9 exact, near-ties <= 0.097
    # (every flip at any step <= 0.10), dev median 0.16 / max 0.47, logits within 0.31, gap median
    # 1.80 (11.6 % below 0.25, 21 % below 0.5) -- but the fibonacci case repeats a token within
    # its first 8, one case runs a 2-token cycle from step 6 and another repeats one token from
    # step 9 (8 and 10 distinct). (This file, screened the same way, reproduces its goldens header:
    # departure 0.372 at step 3 of the 592-token case, dev median 0.20 / max 0.63.) Each lever
    # that calms llama.cpp's rounding (softer attention, more context-free stream) makes the greedy
    # path a near-bigram map that cycles; no setting of the gains alone met both.
    # What did (2026-12-07 20:30-21:50 UTC; 26 screens, log in
    # $EDGEWISE_HOME/reference/synth/screen/log.jsonl): sharp attention only in the global layers
    # (every 6th: q/k gain 2.4, the sliding layers 1.4), layer 0's post-FFN gain 16, and another
    # seed of the random draws (`seed`; on the old draws the gains alone left the short English and
    # the Spanish prompts cycling; seeds 11-16 differ in which prompts cycle). Chosen on llama.cpp alone (its
    # f32-KV run against its f16-KV goldens, the cycles and the gaps), before our engine ran on it.
    # A patched file screens only approximately: the 26 layers carry the f32 rounding of the
    # patched products far enough to change some continuations, so the candidates were screened as
    # fresh synths. This file: llama.cpp against itself 5/9 exact, 4 near-ties (0.03-0.13), no
    # departure, logits within 0.36; gap median 1.55 (11.1 % of steps below 0.25; the real Gemma 3
    # 270M's 1.57 / 10.6 %); 9-24 distinct tokens per continuation, the first 8 always distinct.
    # The output norm (0.53) only scales the logits (same greedy path); it is set so the gaps
    # spread like the real model's. Judged under the shared 0.25.
    "gemma3-1b-q4km": dict(arch="gemma3", hidden=1152, ff=6912, layers=26, heads=4, kv=1, head_dim=256,
                           theta=1000000.0, eps=1e-6, window=512, ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M",
                           seed=12, scale=dict(embed_std=0.15, first_ffn_gain=16.0, post_gain=1.0, output_norm=0.53,
                                               qk_norm_gain=1.4, qk_norm_gain_global=2.4),
                           long_prompt=True),
    # Llama 3.2 1B's real shapes (16 layers, hidden 2048, 32 heads of 64 over 8 KV heads, FFN 8192,
    # llama3 frequency factors, tied 128256-token embedding), for the speed comparison only.
    "llama32-1b-q4km": dict(arch="llama", vocab="llama-bpe", hidden=2048, ff=8192, layers=16, heads=32, kv=8, head_dim=64,
                            theta=500000.0, eps=1e-5, llama3_freqs=True, tied=True, bias=False, qk_norm=False,
                            ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M"),
    # Qwen 3 0.6B's real shapes (28 layers, hidden 1024, 16 query heads of 128 over 8 KV heads,
    # FFN 3072, per-head q/k norms, tied 151936-token embedding), for the speed comparison.
    "qwen3-0.6b-q4km": dict(arch="qwen3", vocab="qwen2", hidden=1024, ff=3072, layers=28, heads=16, kv=8, head_dim=128,
                            theta=1000000.0, eps=1e-6, llama3_freqs=False, tied=True, bias=False, qk_norm=True,
                            ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M"),
}

# Per-tensor types of the synthesized files (a mix the CPU kernels and dequantizers must all get right).
TYPES = {
    "token_embd": T.Q8_0,
    "output": T.Q4_0,
    "attn_q": T.F16,
    "attn_k": T.Q8_0,
    "attn_v": T.Q5_0,
    "attn_output": T.Q4_0,
    "ffn_gate": T.Q8_0,
    "ffn_up": T.F16,
    "ffn_down": T.Q5_0,
}
# The full-size files are written in F16 and quantized by llama.cpp.
F16_TYPES = {k: T.F16 for k in TYPES}


def llama3_factors(base: float, dim: int, factor=32.0, low=1.0, high=4.0, old=8192) -> np.ndarray:
    """llama.cpp's converter (LlamaModel.generate_extra_tensors), with Llama 3.2's rope_scaling."""
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    lw, hw = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hw:
            out.append(1.0)
        elif wl > lw:
            out.append(factor)
        else:
            s = (old / wl - low) / (high - low)
            out.append(1.0 / ((1 - s) / factor + s))
    return np.array(out, dtype=np.float32)


def copy_tokenizer(w: gguf.GGUFWriter, src: str) -> int:
    """Copies every tokenizer.* key of a vocab-only GGUF; returns the vocabulary size."""
    r = gguf.GGUFReader(src)
    n_vocab = None
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            st = field.types[1]
            if st == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                val = [field.parts[i].tolist()[0] for i in field.data]
            w.add_key_value(name, val, vt, sub_type=st)
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(val)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8"), vt)
        else:
            w.add_key_value(name, field.parts[field.data[0]].tolist()[0], vt)
    if n_vocab is None:
        sys.exit(f"{src}: no tokenizer.ggml.tokens")
    return n_vocab


def add(w: gguf.GGUFWriter, name: str, x: np.ndarray, ty) -> None:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if ty == T.F32:
        w.add_tensor(name, x)
    elif ty == T.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        q = gguf.quants.quantize(x, ty)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=ty)


def synth(name: str, cfg: dict, types: dict = TYPES, suffix: str = "") -> str:
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)
    out = os.path.join(synth_dir(), f"{name}{suffix}.gguf")
    os.makedirs(synth_dir(), exist_ok=True)
    arch = cfg["arch"]
    d, ff, hd, h, kv = cfg["hidden"], cfg["ff"], cfg["head_dim"], cfg["heads"], cfg["kv"]
    w = gguf.GGUFWriter(out + ".tmp", arch)
    w.add_name(f"edgewise synthetic {name}")
    n_vocab = copy_tokenizer(w, vocab_path(cfg["vocab"]))
    w.add_context_length(4096)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_block_count(cfg["layers"])
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_file_type(1)

    sc = {**SCALE, **cfg.get("scale", {})}

    def mat(rows, cols, gain=1.0):
        # Projections at the usual 1/sqrt(fan_in) initialisation (times `gain`).
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(gain / math.sqrt(cols))

    def norm(n, spread=0.1):
        return (1.0 + spread * rng.standard_normal(n)).astype(np.float32)

    def embedding():
        rows = np.exp(sc["row_norm_spread"] * rng.standard_normal((n_vocab, 1))).astype(np.float32)
        return rng.standard_normal((n_vocab, d), dtype=np.float32) * rows * np.float32(sc["embed_std"])

    add(w, "token_embd.weight", embedding(), types["token_embd"])
    add(w, "output_norm.weight", norm(d) * np.float32(sc["output_norm"]), T.F32)
    if not cfg["tied"]:
        add(w, "output.weight", embedding(), types["output"])
    if cfg["llama3_freqs"]:
        add(w, "rope_freqs.weight", llama3_factors(cfg["theta"], hd), T.F32)
    for il in range(cfg["layers"]):
        p = f"blk.{il}."
        add(w, p + "attn_norm.weight", norm(d), T.F32)
        add(w, p + "attn_q.weight", mat(h * hd, d), types["attn_q"])
        add(w, p + "attn_k.weight", mat(kv * hd, d), types["attn_k"])
        add(w, p + "attn_v.weight", mat(kv * hd, d), types["attn_v"])
        if cfg["bias"]:
            b = sc["bias_std"]
            add(w, p + "attn_q.bias", b * rng.standard_normal(h * hd).astype(np.float32), T.F32)
            add(w, p + "attn_k.bias", b * rng.standard_normal(kv * hd).astype(np.float32), T.F32)
            add(w, p + "attn_v.bias", b * rng.standard_normal(kv * hd).astype(np.float32), T.F32)
        if cfg["qk_norm"]:
            add(w, p + "attn_q_norm.weight", norm(hd), T.F32)
            add(w, p + "attn_k_norm.weight", norm(hd), T.F32)
        add(w, p + "attn_output.weight", mat(d, h * hd, sc["residual_gain"]), types["attn_output"])
        add(w, p + "ffn_norm.weight", norm(d), T.F32)
        add(w, p + "ffn_gate.weight", mat(ff, d), types["ffn_gate"])
        add(w, p + "ffn_up.weight", mat(ff, d), types["ffn_up"])
        add(w, p + "ffn_down.weight", mat(d, ff, sc["residual_gain"]), types["ffn_down"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".tmp", out)
    return out


def gemma3_tokenizer_source() -> str:
    """The default model (Gemma 3 270M Q4_K_M): Gemma 3 1B has the same tokenizer."""
    p = os.environ.get("EDGEWISE_MODEL") or os.path.join(home(), "models", "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(p):
        sys.exit(f"{p} missing: run `edgewise models fetch` (its tokenizer is copied)")
    return p


def synth_gemma3(name: str, cfg: dict) -> str:
    """A random-weight `gemma3` GGUF in F16 (norms F32): the tensor set and keys llama.cpp's loader
    reads (sandwich norms, q/k norms, GeGLU; the 5:1 local/global pattern and the local RoPE base
    10000 are llama.cpp's for gemma3). Norm weights are stored as llama.cpp uses them (the
    converter's 1 + w), ~1 times a gain.

    Scaling (the model's `scale` entry), chosen so that the file is a *stable* reference: two
    correct engines whose rounding differs (llama.cpp with an f16 or an f32 KV cache, 8-bit or f32
    activations) must pick the same greedy tokens. Every block input is RMS-normed, so only ratios
    matter. A perturbation of relative size r in the residual stream changes each block's output
    direction by ~k*r (k ~ 1-3, larger for sharp attention), and the block adds that at its own
    size g to a stream of size |x|: over N sublayers r grows like ((a^2 + N g^2) / a^2)^(k^2/2),
    where a is the stream's part that no block wrote (the input embedding, sqrt(hidden) *
    embed_std per element). With a small embedding (a << g) that is ~N^(k^2/2), 10^3-10^6 at 52
    sublayers: the first scaling (post-norm gain 16 over an embedding of 1.7 per element) made
    llama.cpp disagree with itself across KV-cache types on 8 of 9 prompts. So here a part that
    does not depend on the context (the embedding and layer 0's FFN, a^2 + f^2 ~ 3 N g^2;
    amplification ~1.3^(k^2/2)) carries most of the stream and the other blocks write the rest:
    - embed_std: the embedding rows' scale (a = sqrt(hidden) * embed_std per element).
    - first_ffn_gain: layer 0's post-FFN norm gain (f per element), the rest of the token-local
      part of the stream. Layer 0's FFN reads only the current token, so its output carries
      one sublayer's rounding and is as stable a carrier as the embedding; the stable part is
      then a^2 + f^2 (~2/3 of the stream's energy with the numbers below).
      Why not the embedding alone (the first rescaling, embed_std 0.3): the tied head then scores
      a candidate b after token a by e_b . diag(w) e_a, a *symmetric* form, and greedy ascent on a
      symmetric score ends in a pair that are each other's best: every continuation fell into a
      2-token cycle within a few steps. f(e_a), a GeGLU of the embedding, has no part along e_a
      (mostly even in it), so with f^2 ~ 6 a^2 the next token is an asymmetric function of the
      current one and the context: 15-16 distinct tokens in 16 steps instead of 2-5.
    - post_gain: the other post-attention and post-FFN norms' gain (g per element per sublayer):
      the context-dependent part, N g^2 with N = 51 (~1/3 of the stream's energy).
    - qk_norm_gain: the q/k norms' gain (score std ~ 4 gain^2 / 4): attention picks a few
      positions, so that the context, the RoPE bases and the sliding window move the logits.
    - qk_norm_gain_global: the same for the global layers (every 6th) if given: sharp attention
      there alone keeps continuations varied while the sliding layers' softer attention carries
      less of a rounding difference forward.
    - seed (the model entry's, not the scale's): the random draws' seed; default from the name.
    - output_norm: the output norm's gain, with random signs (zero mean). A tied head would
      otherwise score the current token's own row sum(w_i e_i^2), always positive, and repeat it;
      with zero-mean weights that row is no better placed than any other. Its size sets the
      logits' spread (best logit ~26 with embed_std 0.15).
    - row_norm_spread: as in SCALE (the top of the vocabulary thinned out the way a real model's
      is): with 0.3 the top-1/top-2 gaps come out as the real Gemma 3 270M's (median ~1.6,
      ~10-15 % of steps below 0.25).
    The first rescaling was tuned on an f32 NumPy forward of this shape (8-bit activations + f16
    K/V against f32: greedy tokens equal over 12 steps, last-position logits within 0.25 at a best
    logit of ~40, where the very first scaling was 2.0-4.4 apart); this one is judged by llama.cpp's
    own f16-vs-f32 KV agreement (the goldens' header)."""
    rng = np.random.default_rng(cfg.get("seed", sum(map(ord, name)) * 7919))
    out = os.path.join(synth_dir(), f"{name}.f16.gguf")
    os.makedirs(synth_dir(), exist_ok=True)
    d, ff, hd, h, kv = cfg["hidden"], cfg["ff"], cfg["head_dim"], cfg["heads"], cfg["kv"]
    w = gguf.GGUFWriter(out + ".tmp", "gemma3")
    w.add_name(f"edgewise synthetic {name}")
    n_vocab = copy_tokenizer(w, gemma3_tokenizer_source())
    w.add_context_length(32768)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_block_count(cfg["layers"])
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(cfg["theta"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_sliding_window(cfg["window"])
    # llama.cpp's gemma3 defaults, written out so that a test can patch them in place (a wrong
    # period or local base is then a one-word change of the file).
    w.add_key_value("gemma3.attention.sliding_window_pattern", 6, gguf.GGUFValueType.UINT32)
    w.add_key_value("gemma3.rope.freq_base_swa", 10000.0, gguf.GGUFValueType.FLOAT32)
    w.add_file_type(1)
    sc = {**SCALE, **cfg.get("scale", {})}

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(1 / math.sqrt(cols))).astype(np.float16)

    def norm(n, gain=1.0):
        return ((1.0 + 0.1 * rng.standard_normal(n)) * gain).astype(np.float32)

    qk_gain, post = sc["qk_norm_gain"], sc["post_gain"]
    # Gemma scales the input embedding by sqrt(hidden); the tied head reads the rows as they are.
    rows = np.exp(sc["row_norm_spread"] * rng.standard_normal((n_vocab, 1))).astype(np.float32)
    emb = np.empty((n_vocab, d), dtype=np.float16)
    for r0 in range(0, n_vocab, 16384):
        r1 = min(n_vocab, r0 + 16384)
        emb[r0:r1] = rng.standard_normal((r1 - r0, d), dtype=np.float32) * rows[r0:r1] * np.float32(sc["embed_std"])
    w.add_tensor("token_embd.weight", emb)
    signs = np.where(rng.random(d) < 0.5, -1.0, 1.0).astype(np.float32)
    w.add_tensor("output_norm.weight", norm(d, sc["output_norm"]) * signs)
    for il in range(cfg["layers"]):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", norm(d))
        w.add_tensor(p + "attn_q.weight", mat(h * hd, d))
        w.add_tensor(p + "attn_k.weight", mat(kv * hd, d))
        w.add_tensor(p + "attn_v.weight", mat(kv * hd, d))
        # The global layers (every 6th, llama.cpp's gemma3 pattern) may attend more sharply.
        g = sc.get("qk_norm_gain_global", qk_gain) if il % 6 == 5 else qk_gain
        w.add_tensor(p + "attn_q_norm.weight", norm(hd, g))
        w.add_tensor(p + "attn_k_norm.weight", norm(hd, g))
        w.add_tensor(p + "attn_output.weight", mat(d, h * hd))
        # The sandwich norms set what each block writes into the residual stream.
        w.add_tensor(p + "post_attention_norm.weight", norm(d, post))
        w.add_tensor(p + "ffn_norm.weight", norm(d))
        w.add_tensor(p + "ffn_gate.weight", mat(ff, d))
        w.add_tensor(p + "ffn_up.weight", mat(ff, d))
        w.add_tensor(p + "ffn_down.weight", mat(d, ff))
        w.add_tensor(p + "post_ffw_norm.weight", norm(d, sc.get("first_ffn_gain", post) if il == 0 else post))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".tmp", out)
    return out


def make_big(name: str, cfg: dict) -> str:
    """Synthesizes `name` in F16, quantizes it with llama.cpp, deletes the F16 file."""
    src = synth_gemma3(name, cfg) if cfg["arch"] == "gemma3" else synth(name, cfg, F16_TYPES, ".f16")
    try:
        return quantize(name, os.path.basename(src)[: -len(".gguf")], cfg["ftype"], os.cpu_count() or 2)
    finally:
        os.remove(src)


def quantize(name: str, src_name: str, ftype: str, nthread: int = 2) -> str:
    import llama_cpp

    src = os.path.join(synth_dir(), f"{src_name}.gguf")
    out = os.path.join(synth_dir(), f"{name}.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.nthread = nthread
    # The source is already quantized (Q8_0/Q5_0/Q4_0); llama.cpp requantizes only when asked.
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(src.encode(), (out + ".tmp").encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src}) failed: {rc}")
    os.replace(out + ".tmp", out)
    return out


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def golden_sha256(name: str) -> str | None:
    """The model hash recorded in tests/golden/<name>/greedy.jsonl, if any."""
    try:
        with open(os.path.join(REPO_ROOT, "tests", "golden", name, "greedy.jsonl"), encoding="utf-8") as f:
            return json.loads(f.readline())["header"]["model_sha256"]
    except (OSError, ValueError, KeyError):
        return None


def cmd_synth(args) -> None:
    for name, cfg in MODELS.items():
        if args.only and name not in args.only:
            continue
        p = synth(name, cfg)
        print(f"{name}: {p} ({os.path.getsize(p) / 2**20:.1f} MiB) sha256 {sha256(p)}")
    for name, (src, ftype) in QUANTIZED.items():
        if args.only and name not in args.only:
            continue
        p = quantize(name, src, ftype)
        print(f"{name}: {p} ({os.path.getsize(p) / 2**20:.1f} MiB, {ftype}) sha256 {sha256(p)}")
    for name, cfg in BIG.items():
        if not (args.only and name in args.only):
            continue
        p = os.path.join(synth_dir(), f"{name}.gguf")
        if os.path.exists(p) and sha256(p) == golden_sha256(name):
            # Minutes to make: a file with the goldens' hash is the same file.
            print(f"{name}: {p} kept (its sha256 is the goldens')")
            continue
        p = make_big(name, cfg)
        print(f"{name}: {p} ({os.path.getsize(p) / 2**20:.1f} MiB, {cfg['ftype']}) sha256 {sha256(p)}")


# --------------------------------------------------------------------------------------------
# Goldens
# --------------------------------------------------------------------------------------------

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Die Hauptstadt von Deutschland ist Berlin, und",
    "北京是中国的首都，它有",
    "Q: How many legs does a spider have?\nA:",
    '{"name": "Ada", "languages": ["en", "fr"], "age":',
    "La lluvia en Sevilla es una maravilla porque",
    # A long paragraph (~200 tokens) of original prose.
    "The lighthouse on the northern headland had been automated for nearly thirty years, but the "
    "village still spoke of it as if a keeper lived there. Children were told that the light turned "
    "because someone climbed the spiral stairs every evening, and fishermen, who knew better, never "
    "corrected them. In the autumn of the year the harbour wall was rebuilt, a young engineer named "
    "Mara arrived to replace the old rotating lens with a modern array of light-emitting diodes. She "
    "carried a laptop, a box of spare fuses, and a notebook in which she recorded the exact time the "
    "beam crossed each of the three rocks that marked the channel.",
]
# Models with `long_prompt` get one more case, longer than Gemma 3's 512-token sliding window (the
# prefill itself crosses it), the case that tells the local layers from the global ones.
LONG_PROMPT = (
    PROMPTS[-1] + " On her first night she found that the old lens had been turning a fraction of a "
    "second late for as long as anyone had kept records, and that the fishermen had long ago learned "
    "to count the delay into their reckoning without ever naming it. She wrote the number down and "
    "underlined it twice. The next morning she walked along the harbour wall with the harbour master, "
    "a patient man called Tobias who kept bees behind the customs house and who had opinions about "
    "everything from tide tables to the proper way to splice a rope. He listened to her explanation "
    "of the new array, nodded at the parts he understood, and asked only one question: whether the "
    "new light would still seem to breathe. Mara did not know what he meant, and said so. Tobias "
    "pointed at the tower, which in daylight looked smaller than it did at night, and told her that "
    "the old beam swelled and faded as it swept across the water, so that from a boat it seemed to "
    "inhale at the first rock and exhale at the third. Children learned to hold their breath with it. "
    "Sailors coming home in bad weather said the rhythm was the first thing that told them they were "
    "safe, before they could even make out the shape of the headland. A light that simply switched on "
    "and off, he said, would be correct and would mean nothing. She spent the afternoon in the lamp "
    "room with her laptop open on the floor, measuring the old beam's brightness at every degree of "
    "its turn, and by evening she had a curve that rose slowly, held for a moment, and fell away more "
    "quickly than it had risen. It was not symmetrical, which surprised her. She rewrote the driver "
    "for the diodes so that they would follow the curve instead of a square pulse, tested it against "
    "a sheet of white card pinned to the gallery rail, and adjusted the timing until the card glowed "
    "and dimmed the way the old glass had. When the new array was finally switched on, a week later, "
    "half the village came down to the harbour to watch, though they pretended to be there for other "
    "reasons. Nobody said anything for a long time. Then one of the children, standing on the wall "
    "with her hands in her pockets, took a deep breath at the first rock and let it out at the third, "
    "and Tobias turned to Mara and said that it would do."
)
N_GEN = 24
# Logits recorded at the last prompt position: llama.cpp's top 32 plus every 997th id.
TOP_LOGITS = 32
STRIDE_LOGITS = 997


def topk(logits: np.ndarray, k: int) -> list[list]:
    kth = np.partition(logits, logits.size - k)[logits.size - k]
    cand = np.nonzero(logits >= kth)[0]
    idx = cand[np.lexsort((cand, -logits[cand]))][:k]
    return [[int(i), float(logits[i])] for i in idx]


def gap_stats(name: str, gaps: list[float], bests: list[float]) -> dict:
    """The top-1/top-2 gap statistics recorded in a golden header (and printed)."""
    g = np.array(gaps)
    stats = {
        "steps": int(g.size),
        "gap_median": float(np.median(g)),
        "gap_min": float(g.min()),
        "share_below_0_25": float((g < 0.25).mean()),
        "share_below_0_5": float((g < 0.5).mean()),
        "best_logit_median": float(np.median(bests)),
    }
    print(f"{name}: top-1/top-2 gap median {stats['gap_median']:.2f}, min {stats['gap_min']:.3f}, "
          f"{100 * stats['share_below_0_25']:.1f}% of {g.size} steps below 0.25, {100 * stats['share_below_0_5']:.1f}% below 0.5, "
          f"best logit median {stats['best_logit_median']:.1f}")
    return stats


def write_goldens(path: str, header: dict, cases: list[dict]) -> None:
    """A golden file: the header line, then one case a line."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")


def run_cases(ref, prompts: list[str] = PROMPTS) -> tuple[list[dict], list[float]]:
    """Greedy continuations of every prompt: the golden cases and each step's top-1/top-2 gap."""
    cases, gaps, bests = [], [], []
    for prompt in prompts:
        ids = ref.tokenize(prompt, add_bos=True, special=True)
        ref.clear()
        logits = ref.decode(ids, 0, lambda i, last=len(ids) - 1: i == last)[0]
        sel = sorted({i for i, _ in topk(logits, TOP_LOGITS)} | set(range(0, logits.size, STRIDE_LOGITS)))
        last = {"ids": sel, "values": [float(logits[i]) for i in sel]}
        out, top5, pos = [], [], len(ids)
        for step in range(N_GEN):
            tok = int(np.argmax(logits))
            t5 = topk(logits, 5)
            gaps.append(t5[0][1] - t5[1][1])
            bests.append(t5[0][1])
            out.append(tok)
            top5.append(t5)
            if step + 1 < N_GEN:
                logits = ref.decode([tok], pos, lambda i: True)[0]
                pos += 1
        cases.append({"prompt": prompt, "prompt_token_ids": ids, "greedy_token_ids": out, "top5": top5, "last_logits": last})
    return cases, (gaps, bests)


def near_tie_verdict(got: list[int], case: dict, margin: float = 0.25) -> str:
    """shared/reference/README.md's rule, as core/tests/arch_golden.rs applies it."""
    want = case["greedy_token_ids"]
    for step, (a, b) in enumerate(zip(got, want)):
        if a != b:
            cands = case["top5"][step]
            best = cands[0][1]
            mine = [best - v for i, v in cands if i == a]
            if mine and mine[0] <= margin:
                return "near-tie"
            if not mine and len(cands) == 5 and best - cands[-1][1] <= margin:
                return "near-tie"
            return "departs"
    return "exact"


def cmd_goldens(args) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llama_cpp
    from make_llama_goldens import Ref  # the same llama.cpp driver as Gemma's goldens (no sampler)

    names = list(MODELS) + list(QUANTIZED) + [n for n in BIG if args.only and n in args.only]
    for name in names:
        if args.only and name not in args.only:
            continue
        path = os.path.join(synth_dir(), f"{name}.gguf")
        prompts = PROMPTS + ([LONG_PROMPT] if BIG.get(name, {}).get("long_prompt") else [])
        ref = Ref(path, n_ctx=1024)
        cases, (gaps, bests) = run_cases(ref, prompts)
        ref.close()
        # How far llama.cpp moves from itself with an f32 instead of an f16 KV cache: the spread
        # two correct implementations show on this file, under the same near-tie rule.
        alt = Ref(path, n_ctx=1024, f32_kv=True)
        alt_cases, _ = run_cases(alt, prompts)
        alt.close()
        self_exact, self_near, self_departs, self_dlogit = 0, 0, 0, 0.0
        for c, a in zip(cases, alt_cases):
            mine = dict(zip(a["last_logits"]["ids"], a["last_logits"]["values"]))
            self_dlogit = max(self_dlogit, max(abs(v - mine[i]) for i, v in zip(c["last_logits"]["ids"], c["last_logits"]["values"]) if i in mine))
            v = near_tie_verdict(a["greedy_token_ids"], c)
            if v != "exact":
                step = next(k for k, (x, y) in enumerate(zip(a["greedy_token_ids"], c["greedy_token_ids"])) if x != y)
                print(f"  {name} case {c['prompt'][:20]!r}: {v} at step {step}: f32 KV top-2 {a['top5'][step][:2]}, f16 KV top-5 {c['top5'][step]}")
            self_exact += v == "exact"
            self_near += v == "near-tie"
            self_departs += v == "departs"
        print(f"{name}: llama.cpp with an f32 KV cache against its f16 goldens: {self_exact}/{len(cases)} exact, "
              f"{self_near} near-tie departures, {self_departs} other departures, last-position max |dlogit| {self_dlogit:.3f}")
        stats = gap_stats(name, gaps, bests)
        # A greedy continuation that falls into a short cycle proves little past its first steps.
        distinct = [len(set(c["greedy_token_ids"])) for c in cases]
        print(f"{name}: distinct tokens per {N_GEN}-token continuation: {distinct} (min {min(distinct)}, median {int(np.median(distinct))})")
        stats["distinct_tokens_per_case"] = distinct
        header = {"header": {
            "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, {ref.params['n_threads']} threads, f16 KV",
            "model": f"$EDGEWISE_HOME/reference/synth/{name}.gguf (tests/reference/make_arch_goldens.py synth)",
            "model_sha256": sha256(path),
            "architecture": (MODELS.get(name) or BIG.get(name) or MODELS[QUANTIZED[name][0]])["arch"],
            "use_extra_bufts": ref.params["use_extra_bufts"],
            "gen_tokens": N_GEN,
            "top1_top2_gaps": stats,
            "llama_cpp_f32_kv_vs_f16_kv": {"exact": self_exact, "near_tie": self_near, "departs": self_departs,
                                           "last_logits_max_abs_diff": self_dlogit},
        }}
        write_goldens(os.path.join(REPO_ROOT, "tests", "golden", name, "greedy.jsonl"), header, cases)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["synth", "goldens"])
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    {"synth": cmd_synth, "goldens": cmd_goldens}[args.command](args)


if __name__ == "__main__":
    main()
