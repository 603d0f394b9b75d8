"""A second BERT-family model with synthesized (seeded random) weights, and its goldens.

Different from MiniLM everywhere the encoder has a choice: hidden 64, 4 heads of 16, 2 layers,
intermediate 96, 40 positions, max_seq_length 24 (so long texts are truncated), CLS pooling, no
Normalize module, f16 safetensors with `bert.`-prefixed names plus a pooler the encoder must ignore,
and a small WordPiece vocabulary built here with the HF `tokenizers` package. The goldens come from
the same NumPy forward pass as MiniLM's (make_embed_goldens.py), run on the first 120 texts.

    /opt/refenv/bin/python tests/reference/make_bert_synth.py   # writes tests/golden/bert-synth/
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

sys.path.insert(0, os.path.dirname(__file__))
from make_embed_goldens import embed_all  # noqa: E402

OUT = "tests/golden/bert-synth"
MODEL = os.path.join(OUT, "model")
H, HEADS, LAYERS, INTER, POS, MAXLEN = 64, 4, 2, 96, 40, 24


def main():
    os.makedirs(os.path.join(MODEL, "1_Pooling"), exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ("the a an and or of to in for with is are this that red blue shoe shoes jacket lamp chair "
             "water coffee size good cheap warm soft do you have what how why where can i my it be not "
             "run running hike hiking boots light").split()
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-$%&:;()")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["##s", "##ing", "##ed", "##er"]
    cjk = list("红色跑步鞋的我你是")
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + words + chars + pieces + cjk))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.save(os.path.join(MODEL, "tokenizer.json"))
    V = len(vocab)
    cfg = dict(architectures=["BertModel"], model_type="bert", vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, intermediate_size=INTER, max_position_embeddings=POS, type_vocab_size=2,
               layer_norm_eps=1e-12, hidden_act="gelu", position_embedding_type="absolute", pad_token_id=0)
    json.dump(cfg, open(os.path.join(MODEL, "config.json"), "w"), indent=2)
    json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
              open(os.path.join(MODEL, "modules.json"), "w"), indent=2)
    json.dump({"word_embedding_dimension": H, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False},
              open(os.path.join(MODEL, "1_Pooling", "config.json"), "w"), indent=2)
    json.dump({"max_seq_length": MAXLEN, "do_lower_case": False}, open(os.path.join(MODEL, "sentence_bert_config.json"), "w"))

    rng = np.random.default_rng(1515)
    r = lambda *s, scale=0.08: (rng.standard_normal(s) * scale).astype(np.float16)
    t = {"bert.embeddings.word_embeddings.weight": r(V, H, scale=0.5),
         "bert.embeddings.position_embeddings.weight": r(POS, H, scale=0.2),
         "bert.embeddings.token_type_embeddings.weight": r(2, H, scale=0.2),
         "bert.embeddings.LayerNorm.weight": (1 + r(H, scale=0.1)).astype(np.float16),
         "bert.embeddings.LayerNorm.bias": r(H, scale=0.05)}
    for l in range(LAYERS):
        p = f"bert.encoder.layer.{l}."
        for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
            t[p + n + ".weight"], t[p + n + ".bias"] = r(H, H, scale=0.25), r(H, scale=0.05)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = r(INTER, H, scale=0.25), r(INTER, scale=0.1)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = r(H, INTER, scale=0.2), r(H, scale=0.05)
        for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
            t[p + n + ".weight"], t[p + n + ".bias"] = (1 + r(H, scale=0.1)).astype(np.float16), r(H, scale=0.05)
    t["bert.pooler.dense.weight"], t["bert.pooler.dense.bias"] = r(H, H), r(H)
    save_file(t, os.path.join(MODEL, "model.safetensors"))

    cases = [json.loads(l) for l in open("tests/golden/minilm/texts.jsonl", encoding="utf-8")][:120]
    res, info = embed_all(MODEL, [c["text"] for c in cases])
    with open(os.path.join(OUT, "embeddings_f32.jsonl"), "w") as f:
        f.write(json.dumps({"header": dict(reference="NumPy float32 BERT forward pass (tests/reference/make_embed_goldens.py) on the synthesized model of make_bert_synth.py", numpy=np.__version__, **info)}) + "\n")
        for c, (ids, trunc, v) in zip(cases, res):
            f.write(json.dumps({"id": c["id"], "ids": ids, "truncated": trunc, "embedding": [float("%.8g" % x) for x in v]}) + "\n")
    print(f"wrote {MODEL} ({V} tokens) and {len(res)} embeddings", file=sys.stderr)


if __name__ == "__main__":
    main()
