#!/usr/bin/env python3
"""Generate llama.cpp golden files for Gemma 3 270M (Q4_K_M) through llama-cpp-python (the reference).

Outputs (tests/golden/gemma3/):
  greedy.jsonl          header line + one greedy case per line (raw prompts, no chat template)
  greedy_f32kv.jsonl    the same cases with an f32 KV cache (informational second reference)
  logits_<NN>.f32       full last-prompt-position logits of a few cases (float32 little-endian, n_vocab)
  perplexity.json       llama.cpp `llama-perplexity` semantics, context 512, on ppl_text.txt
                        (+ the same with flash attention / f32 KV cache, for information)
  llama_tokenize.jsonl  header line + llama.cpp tokenization (BOS added) of varied strings
  chat.jsonl            header line + chat prompts rendered by llama.cpp's template code + their ids

Run with the reference venv from the repository root:
  /opt/refenv/bin/python tests/reference/make_llama_goldens.py [--model PATH] [--only greedy,ppl,tok,chat]
      [--no-variants]
Experiments (write elsewhere with --out-dir): --flash-attn, --f32-kv, --extra-bufts, --cases 0,1

Everything is computed by llama.cpp (tokenizer, forward pass, chat template code). The only
arithmetic done here is the argmax / top-k selection and the log-softmax for perplexity, done the way
llama.cpp's tools do it. Nothing is derived from Edgewise code.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import math
import os
import platform
import sys
import time
from importlib import metadata

import numpy as np

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_c
from llama_cpp import Llama

# ggml's "extra buffer types" (weight repacking and, on CPUs that report AMX, the AMX matmul) are
# turned off: on this machine (a VM whose CPU reports AMX-INT8) the AMX kernel dies with SIGSEGV at
# its first `ldtilecfg`, and Llama() offers no switch, so llama_model_default_params is wrapped to
# set use_extra_bufts=False. Weights then stay in GGUF layout and ggml's plain CPU dot products run
# (activations quantized to 8 bits, as in every ggml quantized matmul). --extra-bufts restores the
# default where it works.
USE_EXTRA_BUFTS = False
_default_model_params = llama_cpp_c.llama_model_default_params


def _model_params():
    p = _default_model_params()
    p.use_extra_bufts = USE_EXTRA_BUFTS
    return p


llama_cpp_c.llama_model_default_params = _model_params

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(REPO_ROOT, "tests", "golden", "gemma3")
TEXTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "texts")
SHARED_REF = "/work/shared/reference/gemma-3-270m-q4_k_m.greedy.jsonl"
DEFAULT_MODEL = "/tmp/model/gemma-3-270m-q4_k_m.gguf"
EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

N_THREADS = 2
N_CTX = 1024
N_BATCH = 512
N_GREEDY = 32
N_GREEDY_LONG = 16
PPL_CTX = 512
ONLY_CASES = None
FLASH_ATTN = False  # llama-cpp-python's default; see README (CPU flash attention moves logits ~0.5)
F32_KV = False  # llama.cpp's default KV cache type is f16

# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------

# ~300 tokens of original prose (written for this repository, no third-party text).
MEDIUM_PROMPT = (
    "The lighthouse on the northern headland had been automated for nearly thirty years, but the "
    "village still spoke of it as if a keeper lived there. Children were told that the light turned "
    "because someone climbed the spiral stairs every evening, and fishermen, who knew better, never "
    "corrected them. In the autumn of the year the harbour wall was rebuilt, a young engineer named "
    "Mara arrived to replace the old rotating lens with a modern array of light-emitting diodes. She "
    "carried a laptop, a box of spare fuses, and a notebook in which she recorded the exact time the "
    "beam crossed each of the three rocks that marked the channel. The new system would save energy, "
    "the council said, and it would never need a person to visit it again. Mara was not so sure. On "
    "her first night she sat on the gallery with a flask of tea and watched the old lens make its slow "
    "circle. It threw a broad, soft beam that seemed to pause over the water before moving on. The "
    "diodes, when she tested them the next morning, gave a sharp white flash that was brighter but "
    "strangely harder to follow with the eye. She wrote in her notebook that brightness and "
    "visibility were not the same thing, underlined it twice, and then spent the rest of the week "
    "trying to explain the difference to a committee that met in a room without windows. In the end "
    "they agreed to a compromise: the new lights would be installed, but the old lens would stay in "
    "place, turning in the dark, because"
)


def read_text(name: str) -> str:
    with open(os.path.join(TEXTS_DIR, name), encoding="utf-8") as f:
        return f.read().rstrip("\n")


# The four prompts of /work/shared/reference/gemma-3-270m-q4_k_m.greedy.jsonl (cases 0-3). They are
# spelled out so that case numbering does not depend on that file being present; when it is, the
# results are compared with it.
SHARED_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The quick brown fox",
]


def own_prompts() -> list[str]:
    return [
        "Hello",
        "Water boils at a temperature of",
        "The largest planet in our solar system is",
        "1, 2, 3, 4, 5,",
        "The sum of 1234 and 5678 is",
        "3.14159265358979",
        "Q: What is 12 times 12?\nA:",
        "Ingredients for a simple pancake recipe:\n1.",
        "import numpy as np\n\ndef softmax(x):\n",
        "    for i in range(10):\n        print(",
        "SELECT name, age FROM users WHERE",
        "<html>\n<head>\n<title>",
        "La capitale de l'Italie est",
        "Der schnellste Weg von München nach Berlin ist",
        "東京は日本の",
        "Translate to Spanish: Good morning, how are you?\nSpanish:",
        "The mitochondria is the powerhouse of",
        "Dear Sir or Madam,\n\nI am writing to",
        "Photosynthesis is the process by which plants",
        "My favourite colour is ",
        "Emoji 🙂 and symbols like ± and € are",
        "In the winter of 1812, Napoleon's army",
        "A list of prime numbers: 2, 3, 5, 7, 11,",
        "The weather today is",
        MEDIUM_PROMPT,
    ]


# Cases whose full last-prompt-position logits are written as .f32 files (indices into the case list,
# resolved by prompt text below).
FULL_LOGIT_PROMPTS_KEYS = ["The capital of France is", "def fibonacci(n):", MEDIUM_PROMPT[:40], "@long"]

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def f32(x) -> float:
    """A float that json.dumps writes as the shortest string round-tripping to the same float32."""
    v = np.float32(x)
    if not np.isfinite(v):
        raise SystemExit("non-finite value")
    out = float(str(v))
    assert np.float32(out) == v
    return out


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def system_info() -> str:
    return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()


def header(model_sha: str, extra: dict | None = None) -> dict:
    h = {
        "reference": "llama.cpp via llama-cpp-python",
        "reference_version": f"llama-cpp-python {metadata.version('llama-cpp-python')}",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_system_info": system_info(),
        "python": sys.version.split()[0],
        "numpy_version": np.__version__,
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
        "generator": "tests/reference/make_llama_goldens.py",
        "model_file": "gemma-3-270m-q4_k_m.gguf",
        "model_sha256": model_sha,
    }
    if extra:
        h.update(extra)
    return h


class Ref:
    """A llama.cpp model + context driven through the low-level C API (no sampler)."""

    def __init__(self, model: str, n_ctx: int, n_batch: int = N_BATCH, flash_attn: bool | None = None,
                 f32_kv: bool | None = None):
        flash_attn = FLASH_ATTN if flash_attn is None else flash_attn
        f32_kv = F32_KV if f32_kv is None else f32_kv
        self.llm = Llama(
            model_path=model,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=N_THREADS,
            n_threads_batch=N_THREADS,
            logits_all=False,
            seed=0,
            verbose=False,
            flash_attn=flash_attn,
            # GGML_TYPE_F32 = 0; the default KV cache type is f16.
            **({"type_k": 0, "type_v": 0} if f32_kv else {}),
        )
        self.ctx = self.llm.ctx
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = n_batch
        self.n_vocab = self.llm.n_vocab()
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.params = {
            "n_ctx": n_ctx,
            "n_ctx_actual": int(self.n_ctx),
            "n_batch": n_batch,
            "n_ubatch": n_batch,
            "n_threads": N_THREADS,
            "n_threads_batch": N_THREADS,
            "flash_attn": flash_attn,
            "kv_cache_type": "f32" if f32_kv else "f16 (llama.cpp default)",
            "swa_full": bool(self.llm.context_params.swa_full),
            "offload": "CPU only (no GPU backend in this build)",
            "use_extra_bufts": USE_EXTRA_BUFTS,
        }

    def close(self) -> None:
        llama_cpp.llama_batch_free(self.batch)
        self.llm.close()

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", "replace")

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def decode(self, tokens: list[int], pos0: int, want) -> list[np.ndarray]:
        """Decode tokens at positions pos0.. in sequence 0, in batches of n_batch.
        want(i) says whether position pos0+i needs logits; returns those logits in order."""
        out: list[np.ndarray] = []
        for s in range(0, len(tokens), self.n_batch):
            chunk = tokens[s:s + self.n_batch]
            b = self.batch
            b.n_tokens = len(chunk)
            flags = []
            for k, t in enumerate(chunk):
                b.token[k] = int(t)
                b.pos[k] = pos0 + s + k
                b.n_seq_id[k] = 1
                b.seq_id[k][0] = 0
                w = bool(want(s + k))
                b.logits[k] = 1 if w else 0
                flags.append(w)
            rc = llama_cpp.llama_decode(self.ctx, b)
            if rc != 0:
                raise SystemExit(f"llama_decode failed: {rc}")
            for k, w in enumerate(flags):
                if w:
                    # llama_get_logits_ith takes the index of the token in the batch.
                    ptr = llama_cpp.llama_get_logits_ith(self.ctx, k)
                    if not ptr:
                        raise SystemExit("llama_get_logits_ith returned NULL")
                    out.append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())
        return out


def topk(logits: np.ndarray, k: int) -> list[list]:
    """k best [id, logit]: highest logit first, ties broken by the lower id (numpy argmax convention)."""
    kth = np.partition(logits, logits.size - k)[logits.size - k]
    cand = np.nonzero(logits >= kth)[0]  # every id tied with the k-th value is a candidate
    idx = cand[np.lexsort((cand, -logits[cand]))][:k]
    return [[int(i), f32(logits[i])] for i in idx]


def greedy(ref: Ref, prompt_ids: list[int], n: int):
    """Greedy decoding: argmax of the raw logits at each step; no sampler, no penalties, no EOS stop."""
    ref.clear()
    last = len(prompt_ids) - 1
    logits = ref.decode(prompt_ids, 0, lambda i: i == last)[0]
    prompt_logits = logits
    ids, top5 = [], []
    pos = len(prompt_ids)
    for step in range(n):
        tok = int(np.argmax(logits))
        ids.append(tok)
        top5.append(topk(logits, 5))
        if step + 1 < n:
            logits = ref.decode([tok], pos, lambda i: True)[0]
            pos += 1
    return ids, top5, prompt_logits


# --------------------------------------------------------------------------------------------
# Greedy goldens
# --------------------------------------------------------------------------------------------


def make_greedy(model: str, sha: str, f32_kv: bool | None = None, name: str = "greedy.jsonl",
                logit_files: bool = True) -> dict:
    ref = Ref(model, N_CTX, f32_kv=f32_kv)
    shared = []
    if os.path.exists(SHARED_REF):
        with open(SHARED_REF, encoding="utf-8") as f:
            shared = [json.loads(l) for l in f if l.strip()]
    if shared and [d["prompt"] for d in shared] != SHARED_PROMPTS:
        raise SystemExit(f"{SHARED_REF} holds other prompts than SHARED_PROMPTS")
    cases = [(p, "shared_reference", False) for p in SHARED_PROMPTS]
    cases += [(p, "own", False) for p in own_prompts()]
    cases.append((read_text("long_prompt_lincoln_second_inaugural.txt"), "own", True))

    records = []
    full_logit_idx = []
    for i, (prompt, source, long) in enumerate(cases):
        if ONLY_CASES is not None and i not in ONLY_CASES:
            continue
        ids = ref.tokenize(prompt, add_bos=True, special=True)
        assert ids == ref.tokenize(prompt, add_bos=True, special=False), "prompts must not contain control tokens"
        n_gen = N_GREEDY_LONG if long else N_GREEDY
        if long and len(ids) <= 512:
            raise SystemExit(f"long prompt has only {len(ids)} tokens")
        t0 = time.time()
        gen, top5, plogits = greedy(ref, ids, n_gen)
        dt = time.time() - t0
        gaps = [t[0][1] - t[1][1] for t in top5]
        rec = {
            "id": i,
            "prompt": prompt,
            "prompt_token_ids": ids,
            "greedy_token_ids": gen,
            "top5": top5,
            "source": source,
            "long": long,
            "n_prompt_tokens": len(ids),
            "n_generated": n_gen,
            "greedy_text": ref.detokenize(gen),
            "last_prompt_top20": topk(plogits, 20),
            "min_top1_top2_gap": f32(min(gaps)),
        }
        key = "@long" if long else prompt
        if logit_files and any(key == k or (len(k) == 40 and prompt.startswith(k)) for k in FULL_LOGIT_PROMPTS_KEYS):
            fname = f"logits_{i:02d}.f32"
            path = os.path.join(OUT_DIR, fname)
            plogits.astype("<f4").tofile(path)
            rec["last_prompt_logits_file"] = fname
            rec["last_prompt_logits_sha256"] = sha256_file(path)
            full_logit_idx.append(i)
        records.append(rec)
        print(f"[greedy {i:2d}] {len(ids):4d} prompt tok, {n_gen} gen, min gap {min(gaps):.4f}, {dt:.1f}s "
              f"{rec['greedy_text'][:50]!r}", flush=True)

    # Compare with the shared reference cases.
    comparison = []
    for d in shared:
        mine = next((r for r in records if r["prompt"] == d["prompt"]), None)
        if mine is None:
            continue
        same_prompt = mine["prompt_token_ids"] == d["prompt_token_ids"]
        g_mine, g_ref = mine["greedy_token_ids"], d["greedy_token_ids"]
        div = next((k for k in range(min(len(g_mine), len(g_ref))) if g_mine[k] != g_ref[k]), None)
        # Logit differences by token id over the steps with identical context (up to and including
        # the first divergence).
        last = len(g_ref) - 1 if div is None else div
        diffs = []
        for k in range(last + 1):
            a, b = dict((t, v) for t, v in mine["top5"][k]), dict((t, v) for t, v in d["top5"][k])
            diffs += [abs(a[t] - b[t]) for t in a if t in b]
        entry = {
            "prompt": d["prompt"],
            "prompt_ids_equal": same_prompt,
            "greedy_ids_equal": div is None,
            "first_divergence_step": div,
            "top5_logit_abs_diff_max": round(max(diffs), 4),
            "top5_logit_abs_diff_mean": round(sum(diffs) / len(diffs), 4),
        }
        if div is not None:
            ref_top = d["top5"][div]
            entry["shared_ref_gap_at_divergence"] = round(ref_top[0][1] - ref_top[1][1], 4)
            entry["our_gap_at_divergence"] = round(mine["top5"][div][0][1] - mine["top5"][div][1][1], 4)
            entry["near_tie_rule_ok"] = (g_mine[div] in [t for t, v in ref_top if ref_top[0][1] - v < 0.25])
        comparison.append(entry)
        print(f"[shared] {d['prompt']!r}: {entry}")

    hdr = header(sha, {
        "role": ("primary reference: llama.cpp's default arithmetic (f16 KV cache, no flash attention)"
                 if name == "greedy.jsonl" else
                 "secondary reference: same cases with an f32 KV cache; shows how far llama.cpp moves from "
                 "itself (see tests/reference/README.md)"),
        "context_params": ref.params,
        "method": (
            "prompt tokenized by llama.cpp with BOS added (parse_special=true; no prompt contains control "
            "tokens, so parse_special=false gives the same ids); prompt decoded in batches of n_batch with "
            "logits for the last position only; then each step takes argmax of the raw logits (ties -> "
            "lowest id) and decodes that one token. No sampler, no penalties; EOS does not stop generation. "
            "top5[k] and greedy_token_ids[k] come from the same logits. Logits are float32 in shortest "
            "round-trip form."
        ),
        "fields": {
            "header": "this line; skip it when reading cases",
            "prompt/prompt_token_ids/greedy_token_ids/top5": "as in /work/shared/reference/README.md",
            "long": "true for the >512-token prompt (sliding window 512 exercised), 16 generated tokens",
            "last_prompt_top20": "20 best [id, logit] at the last prompt position",
            "last_prompt_logits_file": "float32 LE, n_vocab values: all logits at the last prompt position",
            "min_top1_top2_gap": "smallest top1-top2 logit gap over the steps (near-tie indicator)",
            "source": "shared_reference = the 4 prompts of /work/shared/reference, regenerated here",
        },
        "n_vocab": ref.n_vocab,
        "full_logits_cases": full_logit_idx,
        "shared_reference_comparison": comparison,
        "compare_rule": (
            "ids exact; a departure at step k is acceptable only when the token chosen is one llama.cpp "
            "scored within 0.25 logits of its best at step k (it is then in top5[k]); the rest of that "
            "sequence is then not comparable. Last-position logits: same top ids, max |diff| well under 1 "
            "logit. llama.cpp's own spread across settings is in tests/reference/README.md."
        ),
    })
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"header": hdr}, ensure_ascii=False, allow_nan=False) + "\n")
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")
    print(f"wrote {path}")
    ref.close()
    return {"comparison": comparison}


# --------------------------------------------------------------------------------------------
# Perplexity
# --------------------------------------------------------------------------------------------


def log_softmax_nll(logits: np.ndarray, tok: int) -> float:
    """-log p(tok), as llama.cpp perplexity.cpp log_softmax(): float max, sum of expf in double."""
    mx = np.float32(np.max(logits))
    e = np.exp((logits - mx).astype(np.float32), dtype=np.float32)
    s = float(np.sum(e.astype(np.float64)))
    return -(float(np.float32(logits[tok]) - mx) - math.log(s))


def ppl_chunks(ref: Ref, tokens: list[int], bos: int, label: str) -> tuple[list[dict], float, int]:
    """llama.cpp perplexity() over non-overlapping PPL_CTX chunks; returns (chunks, nll_total, count)."""
    n_ctx = PPL_CTX
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll_total, count = 0.0, 0
    chunks = []
    for i in range(n_chunk):
        start = i * n_ctx
        toks = list(tokens[start:start + n_ctx])
        original_first = toks[0]
        toks[0] = bos
        ref.clear()
        t0 = time.time()
        outs = ref.decode(toks, 0, lambda p: p >= first)
        assert len(outs) == n_ctx - first
        token_nll = [log_softmax_nll(outs[j], toks[first + j + 1]) for j in range(n_ctx - 1 - first)]
        s = float(sum(token_nll))
        nll_total += s
        count += len(token_nll)
        chunks.append({
            "chunk": i,
            "start": start,
            "original_first_token": original_first,
            "token_ids": toks,
            "nll_sum": s,
            "n_scored": len(token_nll),
            "chunk_ppl": math.exp(s / len(token_nll)),
            "running_ppl": math.exp(nll_total / count),
            "token_nll": [f32(v) for v in token_nll],
        })
        print(f"[ppl{label}] chunk {i}: ppl {math.exp(s / len(token_nll)):.4f}, running "
              f"{math.exp(nll_total / count):.4f} ({time.time() - t0:.1f}s)", flush=True)
    return chunks, nll_total, count


def make_ppl(model: str, sha: str, variants: bool = True) -> dict:
    text_path = os.path.join(REPO_ROOT, "tests", "golden", "gemma3", "ppl_text.txt")
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ref = Ref(model, PPL_CTX, n_batch=PPL_CTX)
    bos = llama_cpp.llama_vocab_bos(llama_cpp.llama_model_get_vocab(ref.llm.model))
    tokens = ref.tokenize(text, add_bos=True, special=False)
    if len(tokens) < 2 * PPL_CTX:
        raise SystemExit(f"text too short: {len(tokens)} tokens")
    chunks, nll_total, count = ppl_chunks(ref, tokens, bos, "")
    params = ref.params
    ref.close()
    ppl = math.exp(nll_total / count)

    # The same measurement under other llama.cpp settings, for information only: how far llama.cpp
    # moves from itself when only its arithmetic changes (see tests/reference/README.md).
    variant_results = []
    if variants:
        for name, kw in [("flash_attn=on", {"flash_attn": True}), ("kv_cache=f32", {"f32_kv": True})]:
            if kw.get("flash_attn") == FLASH_ATTN or kw.get("f32_kv") == F32_KV:
                continue
            vref = Ref(model, PPL_CTX, n_batch=PPL_CTX, **kw)
            vch, vnll, vcount = ppl_chunks(vref, tokens, bos, f" {name}")
            vref.close()
            vppl = math.exp(vnll / vcount)
            variant_results.append({
                "settings": name + " (everything else as the main run)",
                "ppl": vppl,
                "relative_to_main": vppl / ppl - 1.0,
                "chunk_ppl": [c["chunk_ppl"] for c in vch],
            })
            print(f"[ppl] variant {name}: PPL = {vppl:.4f} ({(vppl / ppl - 1) * 100:+.2f}% vs main)")

    doc = {
        "header": header(sha, {"context_params": params}),
        "text_file": "tests/golden/gemma3/ppl_text.txt",
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "text_source": ("Public domain: Jane Austen, Pride and Prejudice (1813), chapter 1; the US Declaration "
                        "of Independence (1776); Lincoln's Gettysburg Address (1863); Charles Dickens, A Tale "
                        "of Two Cities (1859), the first two paragraphs; the US Constitution (1787), Preamble "
                        "and parts of Article I, Sections 1-4 (excerpted). Typed for this repository; small "
                        "deviations from any particular edition are possible and irrelevant."),
        "method": (
            "Replicates llama.cpp tools/perplexity (perplexity(), ppl_stride=0) with n_ctx=512: the whole text "
            "(file contents as-is) is tokenized once with BOS added (parse_special=false); n_chunk = "
            "n_tokens // 512 non-overlapping chunks (the tail that does not fill a chunk is dropped); in each "
            "chunk the first token is replaced by BOS (token_ids below already hold that substitution), the "
            "KV cache is cleared, the 512 tokens are decoded at positions 0..511, and only the second half is "
            "scored: for j in 0..254 the logits at position 256+j give nll_j = -log softmax(logits)"
            "[token_ids[257+j]] (max in float32, sum of expf in double). ppl = exp(sum of all nll / total "
            "scored) = exp(mean nll); chunk_ppl and running_ppl are per chunk and cumulative (the tool prints "
            "the running value as [i]). The tool by default puts 4 chunks in one decode (n_batch 2048, 4 "
            "sequences); here one chunk per decode (n_batch 512), which is the same maths."
        ),
        "n_ctx": PPL_CTX,
        "first_scored_position": PPL_CTX // 2,
        "n_text_tokens": len(tokens),
        "n_chunks": len(chunks),
        "n_scored": count,
        "nll_mean": nll_total / count,
        "ppl": ppl,
        "tolerance": ("Issue 3: Edgewise within 1% of ppl. Note llama_cpp_variants: llama.cpp itself moves by "
                      "about 1-2% when only its attention arithmetic changes."),
        "llama_cpp_variants": variant_results,
        "chunks": chunks,
    }
    path = os.path.join(OUT_DIR, "perplexity.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"[ppl] {len(chunks)} chunks, {count} scored tokens, PPL = {ppl:.4f}; wrote {path}")
    return {"ppl": ppl, "n_chunks": len(chunks)}


# --------------------------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------------------------

TOKENIZE_STRINGS = [
    "", " ", "  ", "\n", "\n\n", "\t", "Hello", " Hello", "Hello world", "Hello  world", "hello WORLD!",
    "The capital of France is", "It's a truth universally acknowledged.", "don't, won't, can't; I'm",
    "Mr. Bennet said \"Yes.\"", "1234567890", "3.14159", "-42 + 17 = -25", "1,000,000.00 USD",
    "2026-11-25T18:00:00Z", "user@example.com", "https://example.org/path?q=1&x=2",
    "def f(x):\n    return x * 2\n", "fn main() { println!(\"hi\"); }", "<div class=\"a\">text</div>",
    "    indented with spaces", "\ttab\tseparated\tvalues", "trailing spaces   ", "a\r\nb",
    "Ünïcödé àccents café naïve", "Straße über Öl", "Привет, как дела?", "Γειά σου κόσμε",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "你好，世界！", "東京は日本の首都です。",
    "안녕하세요 세계", "สวัสดีครับ", "emoji 🙂🚀👍🏽 and 👨‍👩‍👧", "math ∑ ∫ √ ≠ ≤ ∞ π",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>", "<eos>", "<pad>",
    "text with <start_of_turn> inside", "<end_of_turn>", "[INST] not special [/INST]",
    "A" * 40, "ab" * 25, "!!!???...---", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
    "CamelCaseIdentifierName snake_case_name kebab-case-name",
]


def make_tokenize(model: str, sha: str) -> dict:
    ref = Ref(model, 512)
    path = os.path.join(OUT_DIR, "llama_tokenize.jsonl")
    hdr = header(sha, {
        "method": ("llama_tokenize(text, add_special=true (BOS), parse_special) via llm.tokenize; "
                   "'ids' with parse_special=true (control-token text such as <start_of_turn> becomes the "
                   "control token, as HF tokenizers and llama.cpp's CLI do), 'ids_no_special' with "
                   "parse_special=false (that text is tokenized as plain text). A secondary check; the "
                   "primary tokenizer reference is tokenizer.json."),
    })
    n_diff = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"header": hdr}, ensure_ascii=False) + "\n")
        for s in TOKENIZE_STRINGS:
            ids = ref.tokenize(s, add_bos=True, special=True)
            ids_ns = ref.tokenize(s, add_bos=True, special=False)
            n_diff += ids != ids_ns
            rec = {"text": s, "ids": ids, "ids_no_special": ids_ns}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"[tok] {len(TOKENIZE_STRINGS)} strings ({n_diff} differ with parse_special); wrote {path}")
    ref.close()
    return {"n": len(TOKENIZE_STRINGS)}


# --------------------------------------------------------------------------------------------
# Chat template
# --------------------------------------------------------------------------------------------

CONVERSATIONS = [
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a joke about computers."}],
    [{"role": "system", "content": "  Answer in French.  "},
     {"role": "user", "content": "Good morning."},
     {"role": "assistant", "content": "Bonjour."},
     {"role": "user", "content": "  How are you?\n"}],
]


def gguf_chat_template(model: str) -> str | None:
    import gguf
    r = gguf.GGUFReader(model)
    f = r.fields.get("tokenizer.chat_template")
    return None if f is None else f.contents()


def apply_template(tmpl: bytes | None, conv: list[dict], add_ass: bool) -> str:
    arr = (llama_cpp.llama_chat_message * len(conv))()
    keep = []
    for i, m in enumerate(conv):
        r, c = m["role"].encode(), m["content"].encode()
        keep += [r, c]
        arr[i].role = r
        arr[i].content = c
    size = 1 << 16
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(conv), add_ass, buf, size)
    if n < 0 or n > size:
        raise SystemExit(f"llama_chat_apply_template failed: {n}")
    return buf.raw[:n].decode("utf-8")


def make_chat(model: str, sha: str) -> dict:
    ref = Ref(model, 512)
    gguf_tmpl = gguf_chat_template(model)
    records = []
    if gguf_tmpl is not None:
        import jinja2
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(Exception(msg))
        tmpl = env.from_string(gguf_tmpl)
        renderer = "jinja2 on the GGUF tokenizer.chat_template"
        render = lambda conv: tmpl.render(messages=conv, add_generation_prompt=True, bos_token="<bos>", eos_token="<eos>")
    else:
        renderer = ("the GGUF has no tokenizer.chat_template; rendered by llama.cpp's built-in 'gemma' "
                    "template (llama_chat_apply_template(tmpl=\"gemma\", add_ass=true), src/llama-chat.cpp)")
        render = lambda conv: apply_template(b"gemma", conv, True)
    for conv in CONVERSATIONS:
        text = render(conv)
        # The rendered text has no BOS; the tokenizer adds it (one BOS, never two).
        ids = ref.tokenize(text, add_bos=not text.startswith("<bos>"), special=True)
        records.append({"messages": conv, "add_generation_prompt": True, "text": text, "ids": ids})
    hdr = header(sha, {
        "gguf_has_chat_template": gguf_tmpl is not None,
        "renderer": renderer,
        "method": ("text = rendered prompt (system message merged into the first user turn followed by a "
                   "blank line, 'assistant' becomes 'model', contents trimmed, generation prompt "
                   "'<start_of_turn>model\\n' appended); ids = llama.cpp tokenization with BOS added and "
                   "parse_special=true, so the turn markers are single control tokens and there is one BOS."),
    })
    path = os.path.join(OUT_DIR, "chat.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"header": hdr}, ensure_ascii=False) + "\n")
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"[chat] template in GGUF: {gguf_tmpl is not None}; wrote {path}")
    ref.close()
    return {"gguf_template": gguf_tmpl is not None}


def main() -> None:
    global USE_EXTRA_BUFTS, OUT_DIR, ONLY_CASES, FLASH_ATTN, F32_KV
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("EDGEWISE_MODEL", DEFAULT_MODEL))
    ap.add_argument("--only", default="greedy,ppl,tok,chat")
    ap.add_argument("--out-dir", default=OUT_DIR, help="where to write (default tests/golden/gemma3)")
    ap.add_argument("--cases", default=None, help="greedy: comma-separated case indices to run (debugging)")
    ap.add_argument("--flash-attn", action="store_true", help="enable flash attention (off by default)")
    ap.add_argument("--f32-kv", action="store_true", help="f32 KV cache instead of llama.cpp's default f16")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip greedy_f32kv.jsonl and the informational perplexity runs (flash attention, "
                         "f32 KV cache)")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="keep ggml's extra buffer types (repack/AMX); off by default, see USE_EXTRA_BUFTS")
    args = ap.parse_args()
    FLASH_ATTN = bool(args.flash_attn)
    F32_KV = bool(args.f32_kv)
    USE_EXTRA_BUFTS = bool(args.extra_bufts)
    OUT_DIR = os.path.abspath(args.out_dir)
    ONLY_CASES = None if args.cases is None else {int(x) for x in args.cases.split(",")}
    default_out = os.path.join(REPO_ROOT, "tests", "golden", "gemma3")
    if (FLASH_ATTN or F32_KV or USE_EXTRA_BUFTS or ONLY_CASES is not None) and OUT_DIR == default_out:
        raise SystemExit("experiment flags must not overwrite the golden files: pass --out-dir elsewhere")
    sha = sha256_file(args.model)
    if sha != EXPECTED_SHA256:
        raise SystemExit(f"model sha256 {sha} != expected {EXPECTED_SHA256}")
    llama_cpp.llama_backend_init()
    os.makedirs(OUT_DIR, exist_ok=True)
    print("llama-cpp-python", llama_cpp.__version__, "|", system_info())
    parts = set(args.only.split(","))
    if "tok" in parts:
        make_tokenize(args.model, sha)
    if "chat" in parts:
        make_chat(args.model, sha)
    if "greedy" in parts:
        make_greedy(args.model, sha)
        if not args.no_variants and not F32_KV:
            # Same cases with an f32 KV cache: llama.cpp's other reasonable setting, closer to an f32
            # engine. Informational second reference (see README), no .f32 logit files.
            make_greedy(args.model, sha, f32_kv=True, name="greedy_f32kv.jsonl", logit_files=False)
    if "ppl" in parts:
        make_ppl(args.model, sha, variants=not args.no_variants)


if __name__ == "__main__":
    main()
