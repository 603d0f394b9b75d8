#!/usr/bin/env python3
"""llama.cpp speed reference (via llama-cpp-python) for Gemma 3 270M Q4_K_M on the CPU.

  /opt/refenv/bin/python tests/reference/bench_llama.py --threads 2 --prompt-tokens 512 --gen-tokens 128

Prints one JSON line: load_ms, prefill_tokens_per_s, decode_tokens_per_s, ttft_ms, peak_rss_mb, and the
settings. The measurement runs in a child process so that peak RSS is the child's alone
(resource.getrusage(RUSAGE_CHILDREN).ru_maxrss in the parent; the child's own VmHWM is reported too).

Definitions (match `edgewise bench`):
  load_ms               Llama(...) construction: model mmap + weights + context creation.
  prefill_tokens_per_s  prompt_tokens / time of the prompt decode (one llama_decode per n_batch tokens,
                        logits for the last position only).
  ttft_ms               start of the prompt decode -> first generated token id known (prefill + argmax).
  decode_tokens_per_s   gen_tokens / time of gen_tokens single-token decodes (each followed by argmax),
                        the first of which decodes the first generated token.
  peak_rss_mb           max resident set of the child in MiB (includes the mmapped model pages touched).
Greedy argmax on raw logits, no sampler. One warm-up decode of 8 tokens (cache cleared afterwards)
precedes the timed run unless --no-warmup.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = "/tmp/model/gemma-3-270m-q4_k_m.gguf"


def vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def child(args) -> None:
    import numpy as np
    import llama_cpp
    import llama_cpp.llama_cpp as llama_cpp_c
    from llama_cpp import Llama

    # Same switch as make_llama_goldens.py: ggml's extra buffer types (repack / AMX) are off unless
    # --extra-bufts; the AMX kernel crashes on machines that report AMX but cannot run it.
    default_params = llama_cpp_c.llama_model_default_params

    def model_params():
        p = default_params()
        p.use_extra_bufts = bool(args.extra_bufts)
        return p

    llama_cpp_c.llama_model_default_params = model_params

    n_ctx = args.prompt_tokens + args.gen_tokens + 16
    t0 = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=n_ctx, n_batch=args.batch, n_ubatch=args.batch,
                n_threads=args.threads, n_threads_batch=args.threads, logits_all=False, seed=0, verbose=False)
    load_ms = (time.perf_counter() - t0) * 1e3
    ctx = llm.ctx
    n_vocab = llm.n_vocab()

    with open(os.path.join(REPO_ROOT, "tests", "golden", "gemma3", "ppl_text.txt"), encoding="utf-8") as f:
        text_ids = list(llm.tokenize(f.read().encode(), add_bos=False, special=False))
    bos = llama_cpp.llama_vocab_bos(llama_cpp.llama_model_get_vocab(llm.model))
    prompt = [bos]
    while len(prompt) < args.prompt_tokens:
        prompt += text_ids[: args.prompt_tokens - len(prompt)]

    batch = llama_cpp.llama_batch_init(max(args.batch, 1), 0, 1)

    def decode(tokens, pos0):
        last = None
        for s in range(0, len(tokens), args.batch):
            chunk = tokens[s:s + args.batch]
            batch.n_tokens = len(chunk)
            for k, t in enumerate(chunk):
                batch.token[k] = t
                batch.pos[k] = pos0 + s + k
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = 0
                batch.logits[k] = 1 if s + k == len(tokens) - 1 else 0
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise SystemExit("llama_decode failed")
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        return int(np.argmax(last))

    mem = llama_cpp.llama_get_memory(ctx)
    if not args.no_warmup:
        decode(prompt[:8], 0)
        llama_cpp.llama_memory_clear(mem, True)

    t_p0 = time.perf_counter()
    tok = decode(prompt, 0)
    t_p1 = time.perf_counter()
    pos = len(prompt)
    gen = [tok]
    t_d0 = time.perf_counter()
    for _ in range(args.gen_tokens):
        tok = decode([tok], pos)
        pos += 1
        gen.append(tok)
    t_d1 = time.perf_counter()
    llama_cpp.llama_batch_free(batch)

    out = {
        "reference": "llama.cpp via llama-cpp-python",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "model": os.path.basename(args.model),
        "threads": args.threads,
        "n_batch": args.batch,
        "use_extra_bufts": bool(args.extra_bufts),
        "prompt_tokens": len(prompt),
        "gen_tokens": args.gen_tokens,
        "load_ms": round(load_ms, 1),
        "prefill_tokens_per_s": round(len(prompt) / (t_p1 - t_p0), 2),
        "ttft_ms": round((t_p1 - t_p0) * 1e3, 1),
        "decode_tokens_per_s": round(args.gen_tokens / (t_d1 - t_d0), 2),
        "child_vm_hwm_mb": vm_hwm_mb(),
    }
    print(json.dumps(out), flush=True)
    llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("EDGEWISE_MODEL", DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch (llama.cpp default 512)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--extra-bufts", action="store_true", help="keep ggml's repack/AMX buffer types")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    load_before = os.getloadavg()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--model", args.model, "--threads", str(args.threads),
           "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens), "--batch", str(args.batch)]
    if args.no_warmup:
        cmd.append("--no-warmup")
    if args.extra_bufts:
        cmd.append("--extra-bufts")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child failed with {proc.returncode}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    out = json.loads(line)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out["cpu_count"] = os.cpu_count()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
