#!/usr/bin/env python3
"""Compare two greedy JSONL files case by case (same format as tests/golden/gemma3/greedy.jsonl; a
leading {"header": ...} line is skipped). REF is the reference, GOT the candidate.

  /opt/refenv/bin/python tests/reference/compare_greedy.py REF.jsonl GOT.jsonl

Per case: the first step where the greedy ids part, whether that departure obeys the near-tie rule
(GOT's token is one REF scored within 0.25 logits of REF's best at that step), and logit differences
by token id over the steps whose context is still identical (up to and including the departure),
plus the last-prompt-position top-20 when both files have it. Exit status 1 if any departure breaks
the rule. Used to measure how far llama.cpp moves from itself under other settings (README).
"""
from __future__ import annotations

import json
import sys

NEAR_TIE = 0.25


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return [r for r in rows if "prompt" in r]


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    ref, got = load(sys.argv[1]), load(sys.argv[2])
    by_prompt = {r["prompt"]: r for r in got}
    bad = 0
    all_max, all_diffs, last_max, n_same, n_cmp = 0.0, [], None, 0, 0
    for r in ref:
        g = by_prompt.get(r["prompt"])
        if g is None:
            continue
        n_cmp += 1
        if r["prompt_token_ids"] != g["prompt_token_ids"]:
            print(f"PROMPT IDS DIFFER: {r['prompt'][:40]!r}")
            bad += 1
            continue
        a, b = r["greedy_token_ids"], g["greedy_token_ids"]
        n = min(len(a), len(b))
        div = next((k for k in range(n) if a[k] != b[k]), None)
        last = n - 1 if div is None else div
        diffs = []
        for k in range(last + 1):
            x, y = dict(map(tuple, r["top5"][k])), dict(map(tuple, g["top5"][k]))
            diffs += [abs(x[t] - y[t]) for t in x if t in y]
        lp = ""
        if "last_prompt_top20" in r and "last_prompt_top20" in g:
            x, y = dict(map(tuple, r["last_prompt_top20"])), dict(map(tuple, g["last_prompt_top20"]))
            common = [abs(x[t] - y[t]) for t in x if t in y]
            lp_max = max(common)
            last_max = lp_max if last_max is None else max(last_max, lp_max)
            top_same = r["last_prompt_top20"][0][0] == g["last_prompt_top20"][0][0]
            lp = f" last-pos top20 max|d| {lp_max:.3f} top1 {'same' if top_same else 'DIFF'}"
        all_max = max(all_max, max(diffs))
        all_diffs += diffs
        verdict = "same ids"
        if div is None:
            n_same += 1
        else:
            top = r["top5"][div]
            ok = b[div] in [t for t, v in top if top[0][1] - v <= NEAR_TIE]
            bad += not ok
            verdict = (f"part at step {div} (ref gap {top[0][1] - top[1][1]:.3f}) "
                       f"{'near-tie ok' if ok else 'RULE BROKEN'}")
        print(f"{r.get('id', '?')!s:>3} {r['prompt'][:32]!r:36s} {verdict:40s} top5 max|d| {max(diffs):.3f} "
              f"mean {sum(diffs) / len(diffs):.3f}{lp}")
    print(f"summary: {n_same}/{n_cmp} identical sequences; rule broken {bad}; top5 logit |d| max {all_max:.3f} "
          f"mean {sum(all_diffs) / max(1, len(all_diffs)):.3f}; last-prompt top20 |d| max "
          f"{'n/a' if last_max is None else format(last_max, '.3f')}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
