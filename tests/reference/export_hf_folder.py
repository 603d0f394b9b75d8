#!/usr/bin/env python3
"""Write a Hugging Face model folder holding exactly the weights of a Gemma 3 GGUF.

  $EDGEWISE_REFENV/bin/python tests/reference/export_hf_folder.py \
      --gguf ~/.cache/edgewise/models/gemma-3-270m-q4_k_m.gguf \
      --tokenizer ~/.cache/edgewise/reference/gemma3-tokenizer.json \
      --out ~/.cache/edgewise/reference/gemma3-270m-hf

The folder is what transformers' Gemma3ForCausalLM reads: `config.json` (transformers 4.5x
spelling), `model.safetensors` (f32, HF tensor names, HF's norm convention), `tokenizer.json`
(the reference HF tokenizer, copied), and `tokenizer_config.json` with the GGUF's chat template.
Each weight is dequantized by gguf-py (llama.cpp's own Python package), so a model loaded from the
folder must reproduce llama.cpp's outputs on the GGUF up to f32 rounding: core/tests/engine_golden.rs
(`cpu_hf_folder_matches_llama_cpp`) checks it against the llama.cpp goldens.

The inverse of llama.cpp's convert_hf_to_gguf.py for Gemma 3: GGUF names -> HF names, and the
`+1` the converter adds to every `*norm.weight` taken off again (HF's Gemma RMSNorm computes
x * (1 + w)). Writes into a temporary folder and renames it, so a half-written folder never exists.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def hf_name(name: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if not m or m.group(2) not in LAYER:
        sys.exit(f"no HF name for GGUF tensor {name}")
    return f"model.layers.{m.group(1)}.{LAYER[m.group(2)]}.{m.group(3)}"


def field(r: GGUFReader, key: str, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    return f.contents()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--tokenizer", required=True, help="the reference HF tokenizer.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    r = GGUFReader(args.gguf)
    if field(r, "general.architecture") != "gemma3":
        sys.exit("only gemma3 GGUFs are exported")
    tensors = {}
    for t in r.tensors:
        rows_cols = [int(d) for d in reversed(t.shape.tolist())]  # ne is [cols, rows]
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(rows_cols)
        if t.name.endswith("norm.weight"):
            w = w - np.float32(1.0)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    vocab = tensors["model.embed_tokens.weight"].shape[0]

    a = "gemma3."
    layers = int(field(r, a + "block_count"))
    heads = int(field(r, a + "attention.head_count"))
    head_dim = int(field(r, a + "attention.key_length", 256))
    config = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": int(field(r, a + "embedding_length")),
        "intermediate_size": int(field(r, a + "feed_forward_length")),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(field(r, a + "attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rms_norm_eps": float(field(r, a + "attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(field(r, a + "rope.freq_base", 1e6)),
        "rope_local_base_freq": 10000.0,
        "rope_scaling": None,
        "sliding_window": int(field(r, a + "attention.sliding_window", 512)),
        # llama.cpp's gemma3: every 6th layer is global.
        "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)],
        "max_position_embeddings": int(field(r, a + "context_length", 32768)),
        "vocab_size": vocab,
        "query_pre_attn_scalar": head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "torch_dtype": "float32",
    }
    tok_config = {"bos_token": "<bos>", "eos_token": "<eos>"}
    if field(r, "tokenizer.chat_template"):
        tok_config["chat_template"] = field(r, "tokenizer.chat_template")

    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=2)
    shutil.copyfile(args.tokenizer, os.path.join(tmp, "tokenizer.json"))
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    n = sum(v.size for v in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {n} parameters (f32)")


if __name__ == "__main__":
    main()
