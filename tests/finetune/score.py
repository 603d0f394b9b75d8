#!/usr/bin/env python3
"""Accuracy of `edgewise finetune --predict` output against a data file's answers.

    score.py DATA.jsonl PREDICTIONS.jsonl [--json]

An answer counts when the prediction's first word (stripped of punctuation, lower-cased) is the
label exactly. Prints accuracy, the count, and the per-label accuracy.
"""
import json
import re
import sys
from collections import Counter


def first_word(s: str) -> str:
    m = re.findall(r"[a-z_]+", s.strip().lower())
    return m[0] if m else ""


def main():
    data = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    preds = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    if len(data) != len(preds):
        sys.exit(f"{len(data)} examples but {len(preds)} predictions")
    gold = [d.get("completion") or d.get("intent") or d["messages"][-1]["content"] for d in data]
    ok, per, tot = 0, Counter(), Counter()
    for g, p in zip(gold, preds):
        hit = first_word(p["prediction"]) == g
        ok += hit
        per[g] += hit
        tot[g] += 1
    acc = ok / len(gold)
    out = {"accuracy": round(acc, 4), "correct": ok, "n": len(gold), "per_label": {k: f"{per[k]}/{tot[k]}" for k in sorted(tot)}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
