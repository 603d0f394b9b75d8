"""Embedding goldens from an independent NumPy f32 forward pass of a BERT sentence-transformers folder.

Independent of Edgewise's code: the weights come from the folder's model.safetensors through the
`safetensors` package, token ids from the folder's tokenizer.json through the HF `tokenizers` package
(truncated at sentence_bert_config.json's max_seq_length, as sentence-transformers does), and the
forward pass follows transformers' modeling_bert.py in float32 NumPy: padded batches of 16 with the
additive attention mask (padding keys get finfo(float32).min before the softmax), GELU with erf
(math.erf), LayerNorm, then the folder's pooling (mean over mask, or CLS) and Normalize module.

    /opt/refenv/bin/python tests/reference/make_embed_goldens.py \
        --model ~/.cache/edgewise/models/all-minilm-l6-v2 \
        --texts tests/golden/minilm/texts.jsonl --out tests/golden/minilm/embeddings_f32.jsonl

Options for showing that the comparison catches a wrong model: --gelu tanh, --no-mask.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import safetensors
import tokenizers
from safetensors.numpy import load_file

_erf = np.frompyfunc(math.erf, 1, 1)


def load_folder(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    pooling, normalize = "mean", False
    mpath = os.path.join(d, "modules.json")
    if os.path.exists(mpath):
        for m in json.load(open(mpath)):
            kind = m["type"].rsplit(".", 1)[-1]
            if kind == "Pooling":
                pc = json.load(open(os.path.join(d, m["path"], "config.json")))
                pooling = "cls" if pc.get("pooling_mode_cls_token") else "mean"
            elif kind == "Normalize":
                normalize = True
    max_len = cfg["max_position_embeddings"]
    sp = os.path.join(d, "sentence_bert_config.json")
    if os.path.exists(sp):
        max_len = min(json.load(open(sp)).get("max_seq_length", max_len), max_len)
    raw = load_file(os.path.join(d, "model.safetensors"))
    w = {}
    for k, v in raw.items():
        k2 = k[5:] if k.startswith("bert.") else k
        w[k2] = v.astype(np.float32)
    return cfg, pooling, normalize, max_len, w


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(eps))).astype(np.float32) * g + b


def gelu(x, kind):
    if kind == "tanh":
        return (0.5 * x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x ** 3)))).astype(np.float32)
    return (0.5 * x * (1 + _erf(x.astype(np.float64) / math.sqrt(2)).astype(np.float64))).astype(np.float32)


def forward(cfg, w, ids, types, mask, gelu_kind="erf", use_mask=True):
    """ids, types, mask: [B, L] -> hidden [B, L, H] (float32)."""
    B, L = ids.shape
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = cfg.get("layer_norm_eps", 1e-12)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][np.arange(L)][None] + w["embeddings.token_type_embeddings.weight"][types]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    add_mask = np.where(mask[:, None, None, :] > 0, np.float32(0), np.finfo(np.float32).min).astype(np.float32)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        lin = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
        k = lin(x, "attention.self.key").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
        v = lin(x, "attention.self.value").reshape(B, L, nh, hd).transpose(0, 2, 1, 3)
        s = (q @ k.transpose(0, 1, 3, 2)) / np.float32(math.sqrt(hd))
        if use_mask:
            s = s + add_mask
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr = pr / pr.sum(-1, keepdims=True)
        c = (pr @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
        x = layer_norm(x + lin(c, "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        u = gelu(lin(x, "intermediate.dense"), gelu_kind)
        x = layer_norm(x + lin(u, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x.astype(np.float32)


def embed_all(model_dir, texts, gelu_kind="erf", use_mask=True, batch=16):
    cfg, pooling, normalize, max_len, w = load_folder(model_dir)
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    out = []
    for s in range(0, len(texts), batch):
        encs = tok.encode_batch(texts[s:s + batch])
        L = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), L), np.int64)
        types = np.zeros((len(encs), L), np.int64)
        mask = np.zeros((len(encs), L), np.int64)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n], types[i, :n], mask[i, :n] = e.ids, e.type_ids, 1
        hs = forward(cfg, w, ids, types, mask, gelu_kind, use_mask)
        for i, e in enumerate(encs):
            if pooling == "cls":
                v = hs[i, 0].astype(np.float64)
            else:
                m = mask[i].astype(np.float64)[:, None]
                v = (hs[i].astype(np.float64) * m).sum(0) / max(m.sum(), 1e-9)
            if normalize:
                v = v / max(np.linalg.norm(v), 1e-12)
            out.append((list(e.ids), len(e.overflowing) > 0, v.astype(np.float32)))
    return out, dict(pooling=pooling, normalize=normalize, max_seq_length=max_len)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/edgewise/models/all-minilm-l6-v2"))
    ap.add_argument("--texts", default="tests/golden/minilm/texts.jsonl")
    ap.add_argument("--out", default="tests/golden/minilm/embeddings_f32.jsonl")
    ap.add_argument("--gelu", default="erf", choices=["erf", "tanh"])
    ap.add_argument("--no-mask", action="store_true")
    a = ap.parse_args()
    cases = [json.loads(l) for l in open(a.texts, encoding="utf-8")]
    texts = [c["text"] for c in cases]
    res, info = embed_all(a.model, texts, a.gelu, not a.no_mask)
    sha = hashlib.sha256(open(os.path.join(a.model, "model.safetensors"), "rb").read()).hexdigest()
    with open(a.out, "w") as f:
        header = dict(reference="NumPy float32 BERT forward pass (tests/reference/make_embed_goldens.py), padded batches of 16 with attention mask",
                      numpy=np.__version__, tokenizers=tokenizers.__version__, safetensors=safetensors.__version__,
                      model_safetensors_sha256=sha, gelu=a.gelu, mask=not a.no_mask, **info)
        f.write(json.dumps({"header": header}) + "\n")
        for c, (ids, trunc, v) in zip(cases, res):
            f.write(json.dumps({"id": c["id"], "ids": ids, "truncated": trunc, "embedding": [float("%.8g" % x) for x in v]}) + "\n")
    print(f"wrote {len(res)} embeddings to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
