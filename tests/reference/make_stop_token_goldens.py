#!/usr/bin/env python3
"""The end-of-generation (EOG) token ids llama.cpp derives for each vocabulary, as goldens.

    /opt/refenv/bin/python tests/reference/make_stop_token_goldens.py [--model GGUF ...]

For llama.cpp's vocab-only GGUFs in `$EDGEWISE_HOME/reference/llama-vocab/` (fetched by
`fetch_llama_vocab.py`) and any `--model` files, loads the vocabulary with llama.cpp
(llama-cpp-python, `vocab_only`) and asks `llama_vocab_is_eog` for every token id, plus the
EOS/EOT/EOM ids llama.cpp settled on. Writes `tests/golden/stop_tokens.json`; the Rust test
`stop_sets_match_llama_cpp` (core/tests/tokenizer_llama_vocab.rs) must give the same stop set.
"""
import argparse
import ctypes
import hashlib
import json
import os
import sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["llama-bpe", "qwen2", "gpt-2", "starcoder", "refact", "llama-spm", "phi-3"]


def home():
    return os.environ.get("EDGEWISE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "edgewise")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def piece(vocab, tid):
    return llama_cpp.llama_vocab_get_text(vocab, tid).decode("utf-8", errors="replace")


def eog_of(path):
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        sys.exit(f"llama.cpp could not load {path}")
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        n = llama_cpp.llama_vocab_n_tokens(vocab)
        eog = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        special = {}
        for name, fn in [("eos", llama_cpp.llama_vocab_eos), ("eot", llama_cpp.llama_vocab_eot)]:
            tid = fn(vocab)
            special[name] = None if tid < 0 else tid
        return {
            "n_tokens": n,
            "eog_ids": eog,
            "eog_pieces": [piece(vocab, i) for i in eog],
            **special,
        }
    finally:
        llama_cpp.llama_model_free(model)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[], help="another GGUF (its file name is the key)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "stop_tokens.json"))
    args = ap.parse_args()
    llama_cpp.llama_backend_init()
    vocab_dir = os.path.join(home(), "reference", "llama-vocab")
    files = {f"ggml-vocab-{n}.gguf": os.path.join(vocab_dir, f"ggml-vocab-{n}.gguf") for n in NAMES}
    for m in args.model:
        files[os.path.basename(m)] = m
    out = {}
    for key, path in files.items():
        out[key] = {"sha256": sha256(path), **eog_of(path)}
        print(f"{key}: EOG {list(zip(out[key]['eog_ids'], out[key]['eog_pieces']))}")
    doc = {
        "header": {
            "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} (llama_vocab_is_eog over every id)",
            "script": "tests/reference/make_stop_token_goldens.py",
        },
        "vocabs": out,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
