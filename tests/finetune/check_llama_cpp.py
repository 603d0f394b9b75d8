#!/usr/bin/env python3
"""Does llama.cpp apply an `edgewise finetune` adapter as we do? Greedy answers of llama.cpp
(llama-cpp-python, `lora_path`) against ours (`edgewise finetune --predict --lora`).

    check_llama_cpp.py MODEL.gguf ADAPTER.gguf DATA.jsonl OURS.jsonl [N]

For the first N (default 40) examples, the prompt is rendered with Gemma 3's chat template
(what our engine renders from the GGUF's template), decoded greedily by llama.cpp up to the
length of our answer or its end-of-turn, and the token ids are compared with ours. Exit status 1
when any differ; also run without the adapter to show the check is not vacuous.
"""
import functools
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))

EOG = {1, 106, 212}


def main():
    model, adapter, data, ours = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 40
    import llama_cpp
    import make_llama_goldens as mlg

    plain = llama_cpp.Llama
    if adapter != "none":
        mlg.Llama = functools.partial(plain, lora_path=adapter, lora_scale=1.0)
    try:
        ref = mlg.Ref(model, n_ctx=1024)
    finally:
        mlg.Llama = plain
    rows = [json.loads(l) for l in open(data) if l.strip()][:n]
    preds = [json.loads(l) for l in open(ours) if l.strip()][:n]
    same = 0
    for i, (r, p) in enumerate(zip(rows, preds)):
        prompt = "<bos><start_of_turn>user\n" + r["prompt"].strip() + "<end_of_turn>\n<start_of_turn>model\n"
        ids = ref.tokenize(prompt, add_bos=False, special=True)
        want = [t for t in p["tokens"] if t not in EOG]
        got, _, _ = mlg.greedy(ref, ids, len(want) + 1)
        cut = []
        for t in got:
            if t in EOG:
                break
            cut.append(t)
        # Ours stopped at end-of-turn (fewer than --max-tokens 8) or ran out of tokens.
        ended = any(t in EOG for t in p["tokens"]) or len(p["tokens"]) < 8
        if not ended:
            cut = cut[:len(want)]
        if cut == want:
            same += 1
        else:
            print(f"example {i + 1}: llama.cpp {cut} ours {want}")
    print(json.dumps({"adapter": adapter, "examples": len(rows), "same_greedy_tokens": same}))
    sys.exit(0 if same == len(rows) else 1)


if __name__ == "__main__":
    main()
