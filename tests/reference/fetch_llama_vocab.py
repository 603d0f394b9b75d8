#!/usr/bin/env python3
"""Fetch llama.cpp's vocab-only test models and their expected ids.

llama.cpp ships, for each tokenizer family, a vocab-only GGUF (`models/ggml-vocab-<name>.gguf`) plus
test inputs (`.inp`) and the ids the Hugging Face tokenizer gives for them (`.out`, written by
llama.cpp's `convert_hf_to_gguf_update.py`). They reach us inside the PyPI source distribution of
llama-cpp-python, which vendors llama.cpp. This script extracts the families our tokenizer supports
into `$EDGEWISE_HOME/reference/llama-vocab/` for `core/tests/tokenizer_llama_vocab.rs`.

    /opt/refenv/bin/python tests/reference/fetch_llama_vocab.py [--from-dir DIR]

`--from-dir` copies from an unpacked llama.cpp `models/` directory instead of downloading.
Idempotent: files already present are kept.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

VERSION = "0.3.36"  # llama-cpp-python; its vendored llama.cpp holds the files below
NAMES = ["llama-bpe", "qwen2", "qwen35", "gpt-2", "starcoder", "refact", "llama-spm", "phi-3"]
SUFFIXES = [".gguf", ".gguf.inp", ".gguf.out"]


def home():
    return os.environ.get("EDGEWISE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "edgewise")


def wanted():
    return {f"ggml-vocab-{n}{s}" for n in NAMES for s in SUFFIXES}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-dir")
    args = ap.parse_args()
    dest = os.path.join(home(), "reference", "llama-vocab")
    os.makedirs(dest, exist_ok=True)
    missing = sorted(f for f in wanted() if not os.path.isfile(os.path.join(dest, f)))
    if not missing:
        print(f"llama-vocab: all {len(wanted())} files present in {dest}")
        return
    if args.from_dir:
        for f in missing:
            shutil.copyfile(os.path.join(args.from_dir, f), os.path.join(dest, f))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.check_call([
                sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={VERSION}", "-d", tmp,
            ])
            sdists = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
            if len(sdists) != 1:
                sys.exit(f"expected one sdist, found {sdists}")
            with tarfile.open(os.path.join(tmp, sdists[0])) as tar:
                for m in tar.getmembers():
                    base = os.path.basename(m.name)
                    if base in missing and "/vendor/llama.cpp/models/" in m.name and m.isfile():
                        src = tar.extractfile(m)
                        with open(os.path.join(dest, base), "wb") as out:
                            shutil.copyfileobj(src, out)
    still = sorted(f for f in wanted() if not os.path.isfile(os.path.join(dest, f)))
    if still:
        sys.exit(f"missing after fetch: {still}")
    print(f"llama-vocab: {len(wanted())} files in {dest} (llama-cpp-python {VERSION} sdist)")


if __name__ == "__main__":
    main()
