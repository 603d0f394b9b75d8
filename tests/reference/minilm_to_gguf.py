"""Writes all-MiniLM-L6-v2 (a sentence-transformers BERT folder) as a GGUF of llama.cpp's `bert`
architecture with gguf-py alone (convert_hf_to_gguf.py needs torch): the BertModel tensor names,
WordPiece vocabulary with the phantom-space convention of convert_hf_to_gguf.py, mean pooling.

    /opt/refenv/bin/python tests/reference/minilm_to_gguf.py FOLDER OUT.gguf [f32|f16|q8_0]

f16 and q8_0 store the 2-D matrices (word, position, q/k/v, output, FFN) in that type (Q8_0 through
gguf-py's `gguf.quants`, ggml's reference rounding); the token-type table, norms and biases stay
f32. The BertNormalizer's lowercase / strip_accents go to `tokenizer.ggml.normalizer.*`.
Deterministic: the same folder and gguf-py version give the same bytes.

Checked: llama-cpp-python 0.3.36 on it agrees with the NumPy goldens (cosine >= 0.999995) on the
187 of 191 short golden texts whose token ids agree (the 4 others type [CLS]/[SEP] as text).
"""
import json, os, sys
import numpy as np, gguf
from safetensors.numpy import load_file
d = sys.argv[1]; out = sys.argv[2]; ftype = sys.argv[3] if len(sys.argv) > 3 else "f32"
cfg = json.load(open(os.path.join(d, "config.json")))
tj = json.load(open(os.path.join(d, "tokenizer.json")))
vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
w = gguf.GGUFWriter(out, "bert")
w.add_context_length(cfg["max_position_embeddings"]); w.add_embedding_length(cfg["hidden_size"])
w.add_feed_forward_length(cfg["intermediate_size"]); w.add_block_count(cfg["num_hidden_layers"])
w.add_head_count(cfg["num_attention_heads"]); w.add_layer_norm_eps(cfg["layer_norm_eps"])
w.add_causal_attention(False); w.add_pooling_type(gguf.PoolingType.MEAN)
assert ftype in ("f32", "f16", "q8_0"), ftype
w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[ftype])
def phantom(t):
    if t.startswith("[") and t.endswith("]"): return t
    if t.startswith("##"): return t[2:]
    return "\u2581" + t
toks = [phantom(t) for t, _ in vocab]
# As convert_hf_to_gguf.py's get_vocab_base: CONTROL for tokenizer.json's special added tokens,
# USER_DEFINED for other added tokens, NORMAL for the rest ([unused0] etc. included).
added = {a["content"]: a for a in tj.get("added_tokens", [])}
types = [(gguf.TokenType.CONTROL if added[t]["special"] else gguf.TokenType.USER_DEFINED) if t in added else gguf.TokenType.NORMAL for t, _ in vocab]
w.add_tokenizer_model("bert"); w.add_token_list(toks); w.add_token_types(types); w.add_token_type_count(cfg["type_vocab_size"])
ids = dict(vocab)
w.add_bos_token_id(ids["[CLS]"]); w.add_eos_token_id(ids["[SEP]"]); w.add_sep_token_id(ids["[SEP]"]); w.add_cls_token_id(ids["[CLS]"]) if hasattr(w, "add_cls_token_id") else None
w.add_pad_token_id(ids["[PAD]"]); w.add_unk_token_id(ids["[UNK]"]); w.add_mask_token_id(ids["[MASK]"])
w.add_add_bos_token(True); w.add_add_eos_token(True)
norm = tj.get("normalizer") or {}
if norm.get("type") == "BertNormalizer":
    lower = bool(norm.get("lowercase", True))
    w.add_bool("tokenizer.ggml.normalizer.lowercase", lower)
    w.add_bool("tokenizer.ggml.normalizer.strip_accents", lower if norm.get("strip_accents") is None else bool(norm["strip_accents"]))
t = load_file(os.path.join(d, "model.safetensors"))
m = {"embeddings.word_embeddings.weight": "token_embd.weight", "embeddings.position_embeddings.weight": "position_embd.weight",
     "embeddings.token_type_embeddings.weight": "token_types.weight", "embeddings.LayerNorm.weight": "token_embd_norm.weight",
     "embeddings.LayerNorm.bias": "token_embd_norm.bias"}
sub = {"attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v", "attention.output.dense": "attn_output",
       "attention.output.LayerNorm": "attn_output_norm", "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm"}
for l in range(cfg["num_hidden_layers"]):
    for k, v in sub.items():
        for s in ("weight", "bias"):
            m[f"encoder.layer.{l}.{k}.{s}"] = f"blk.{l}.{v}.{s}"
for k, v in m.items():
    a = t[k].astype(np.float32)
    if ftype == "f16" and a.ndim == 2 and not v.startswith("token_types"): a = a.astype(np.float16)
    if ftype == "q8_0" and a.ndim == 2 and not v.startswith("token_types") and a.shape[1] % 32 == 0:
        w.add_tensor(v, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        continue
    w.add_tensor(v, a)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", out)
