#!/usr/bin/env python3
"""Random-weight LoRA adapters in llama.cpp's GGUF format, and llama.cpp's goldens with them.

    # the adapters (deterministic: same bytes on every run; CI runs this before the tests)
    /opt/refenv/bin/python tests/reference/make_lora_goldens.py adapters
    # the goldens (llama-cpp-python `lora_path` / `lora_scale`), written to tests/golden/lora/<name>.jsonl
    /opt/refenv/bin/python tests/reference/make_lora_goldens.py goldens

The adapters follow `convert_lora_to_gguf.py`'s layout: `general.type = adapter`,
`adapter.type = lora`, `adapter.lora.alpha` (f32), and per adapted weight `<name>.lora_a`
(ne = [in, rank], PEFT's `lora_A` `(r, in)`) and `<name>.lora_b` (ne = [rank, out], PEFT's
`lora_B` `(out, r)`). llama.cpp applies `y = W·x + s·B·(A·x)` with `s = user_scale·alpha/rank`.
B is scaled so that the adapter moves the logits visibly (greedy tokens differ from the base
model's) without flattening them. They go to `$EDGEWISE_HOME/reference/lora/<name>.gguf`
(too large to commit; each golden records its adapter's sha256).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

import gguf

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Shared with the architecture goldens (this folder is on sys.path when a script here runs).
from make_arch_goldens import home, sha256, topk, write_goldens  # noqa: E402


def base_path(base: str) -> str:
    if base == "gemma3":
        return os.path.join(home(), "models", "gemma-3-270m-q4_k_m.gguf")
    return os.path.join(home(), "reference", "synth", f"{base}.gguf")


ALL = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
# The DeltaNet layers' projections (qwen35).
QWEN35_DELTA = ["attn_qkv", "attn_gate", "ssm_beta", "ssm_alpha", "ssm_out"]

# name -> base model, rank, alpha, user scale, projections, layers (None: all), tensor type, B gain, seed
ADAPTERS = {
    # The cost case: rank 16 on every attention and MLP projection, f16 like the converter writes.
    "gemma3-r16": dict(base="gemma3", rank=16, alpha=32.0, scale=1.0, proj=ALL, layers=None, ty="f16", gain=0.07, seed=1),
    # Rank 8 on a subset, f32, alpha != rank and a user scale != 1 (a wrong scale formula shows).
    "gemma3-r8": dict(base="gemma3", rank=8, alpha=4.0, scale=1.5, proj=["attn_q", "attn_v", "ffn_down"], layers=range(0, 18, 2), ty="f32", gain=0.4, seed=2),
    # A synthesized architecture (make_arch_goldens.py synth).
    "qwen3-r8": dict(base="qwen3", rank=8, alpha=16.0, scale=1.0, proj=ALL, layers=None, ty="f16", gain=0.5, seed=3),
    # The other architectures the wgpu path runs: llama (norm RoPE layout), qwen2 (q/k/v biases
    # after the adapted products; a subset of projections, f32, a user scale != 1).
    "llama-r8": dict(base="llama", rank=8, alpha=16.0, scale=1.0, proj=ALL, layers=None, ty="f16", gain=0.5, seed=4),
    "qwen2-r4": dict(base="qwen2", rank=4, alpha=8.0, scale=0.8, proj=["attn_q", "attn_k", "attn_v", "ffn_up", "ffn_down"], layers=None, ty="f32", gain=0.5, seed=5),
    # Qwen 3.5 (make_qwen35_goldens.py synth): every weight llama.cpp's qwen35 graph runs through
    # build_lora_mm but the LM head — the gated attention layers' q (query and gate side by side),
    # k, v, output, the DeltaNet layers' fused qkv, z gate, beta, alpha and output projections, and
    # the MLP; each name only where the layer has it. Rank 8 over beta/alpha's 4 outputs (llama.cpp
    # takes any rank).
    "qwen35-r8": dict(base="qwen35", rank=8, alpha=16.0, scale=1.0, proj=ALL + QWEN35_DELTA, layers=None, ty="f16", gain=0.5, seed=6),
}
# Wrong variants for the tests (no goldens of their own): `qwen35-r8` with its DeltaNet pairs left
# out — the same bytes for every other pair — is what a model that skips the adapter on the
# DeltaNet products computes.
VARIANTS = {
    "qwen35-r8-no-delta": dict(ADAPTERS["qwen35-r8"], drop=QWEN35_DELTA),
}


def lora_dir() -> str:
    return os.path.join(home(), "reference", "lora")


def adapter_path(name: str) -> str:
    return os.path.join(lora_dir(), f"{name}.gguf")


def make(name: str, cfg: dict) -> str | None:
    base = base_path(cfg["base"])
    if not os.path.exists(base):
        print(f"{name}: no base model {base}, skipped")
        return None
    r = gguf.GGUFReader(base)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}  # ne0 first
    n_layer = 1 + max(int(n.split(".")[1]) for n in shapes if n.startswith("blk."))
    rng = np.random.default_rng(cfg["seed"])
    rank = cfg["rank"]
    os.makedirs(lora_dir(), exist_ok=True)
    out = adapter_path(name)
    w = gguf.GGUFWriter(out, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", cfg["alpha"])
    dt = np.float16 if cfg["ty"] == "f16" else np.float32
    layers = range(n_layer) if cfg["layers"] is None else cfg["layers"]
    for il in layers:
        for p in cfg["proj"]:
            t = f"blk.{il}.{p}.weight"
            if t not in shapes and cfg["base"] == "qwen35":
                continue  # a DeltaNet layer has no attn_q, an attention layer no attn_qkv
            n_in, n_out = shapes[t][0], shapes[t][1]
            a = rng.standard_normal((rank, n_in)) / np.sqrt(n_in)
            b = rng.standard_normal((n_out, rank)) * cfg["gain"] / np.sqrt(rank)
            if p in cfg.get("drop", ()):
                continue
            w.add_tensor(t + ".lora_a", a.astype(dt))
            w.add_tensor(t + ".lora_b", b.astype(dt))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{name}: {out} ({os.path.getsize(out) / 2**20:.1f} MiB, {arch}, sha256 {sha256(out)[:12]})")
    return out


PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Water boils at a temperature of",
]
N_GEN = 16
TOP_LOGITS = 32
STRIDE_LOGITS = 997


def run(base: str, lora: str | None, scale: float, f32_kv: bool = False) -> tuple[list, list, dict]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import llama_cpp
    import make_llama_goldens as mlg

    plain = llama_cpp.Llama
    if lora:
        mlg.Llama = functools.partial(plain, lora_path=lora, lora_scale=scale)
    try:
        ref = mlg.Ref(base, n_ctx=512, f32_kv=f32_kv)
    finally:
        mlg.Llama = plain
    cases, gaps = [], []
    for prompt in PROMPTS:
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
            out.append(tok)
            top5.append(t5)
            if step + 1 < N_GEN:
                logits = ref.decode([tok], pos, lambda i: True)[0]
                pos += 1
        cases.append({"prompt": prompt, "prompt_token_ids": ids, "greedy_token_ids": out, "top5": top5, "last_logits": last})
    params = dict(ref.params)
    ref.close()
    return cases, gaps, params


def cmd_adapters(args) -> None:
    for name, cfg in {**ADAPTERS, **VARIANTS}.items():
        if args.only and name not in args.only:
            continue
        make(name, cfg)


def cmd_goldens(args) -> None:
    import llama_cpp

    for name, cfg in ADAPTERS.items():
        if args.only and name not in args.only:
            continue
        path, base = adapter_path(name), base_path(cfg["base"])
        if not (os.path.exists(path) and os.path.exists(base)):
            print(f"{name}: adapter or base missing, skipped")
            continue
        cases, gaps, params = run(base, path, cfg["scale"])
        plain, _, _ = run(base, None, 1.0)
        # llama.cpp against itself: the same run with an f32 KV cache (its only change). With an
        # adapter on every projection its greedy tokens part from the f16 run's at gaps above 0.25
        # and its logits move by more than 1; the test accepts a departure llama.cpp makes itself.
        own, _, _ = run(base, path, cfg["scale"], f32_kv=True)
        for c, o in zip(cases, own):
            lo = dict(zip(o["last_logits"]["ids"], o["last_logits"]["values"]))
            c["llama_f32_kv"] = {
                "greedy_token_ids": o["greedy_token_ids"],
                "last_logits_max_abs_diff": max(abs(lo[i] - v) for i, v in zip(c["last_logits"]["ids"], c["last_logits"]["values"]) if i in lo),
            }
        changed = sum(a["greedy_token_ids"] != b["greedy_token_ids"] for a, b in zip(cases, plain))
        g = np.array(gaps)
        stats = {"steps": int(g.size), "gap_median": float(np.median(g)), "gap_min": float(g.min()),
                 "share_below_0_25": float((g < 0.25).mean())}
        print(f"{name}: {changed}/{len(cases)} greedy continuations differ from the base model's; gap median "
              f"{stats['gap_median']:.2f}, min {stats['gap_min']:.3f}, {100 * stats['share_below_0_25']:.1f}% below 0.25")
        header = {"header": {
            "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, CPU, {params['n_threads']} threads, f16 KV, lora_path + lora_scale",
            "base": cfg["base"],
            "base_sha256": sha256(base),
            "adapter": f"$EDGEWISE_HOME/reference/lora/{name}.gguf (tests/reference/make_lora_goldens.py adapters)",
            "adapter_sha256": sha256(path),
            "rank": cfg["rank"], "alpha": cfg["alpha"], "scale": cfg["scale"],
            "changed_vs_base": changed,
            "gen_tokens": N_GEN,
            "top1_top2_gaps": stats,
        }}
        write_goldens(os.path.join(REPO_ROOT, "tests", "golden", "lora", f"{name}.jsonl"), header, cases)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["adapters", "goldens"])
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    {"adapters": cmd_adapters, "goldens": cmd_goldens}[args.command](args)


if __name__ == "__main__":
    main()
