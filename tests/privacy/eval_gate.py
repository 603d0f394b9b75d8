#!/usr/bin/env python3
"""Rules alone vs the whole privacy gate (rules + classifier) on labelled JSON lines.

    cargo build --release --workspace --all-targets
    python tests/privacy/eval_gate.py --bin target/release/examples/gate_check \
        --synthetic /tmp/clf/data.jsonl --tuning tests/privacy/independent/tuning/authorA.jsonl tests/privacy/independent/tuning/authorB.jsonl

Runs the Rust gate (`gate_check`, which reports both the rules' and the gate's verdict) and prints
recall and false-block rate overall, per category, per language and per kind, for:
* the synthetic held-out split (make_clf_data.py, `split == "heldout"`);
* the tuning corpora, split into the half the classifier never saw ("held-out half") and the half it
  was trained on (train_classifier.py's `tuning_half`) — TUNING data either way, not a test split.
`--misses` lists the gate's misses and false blocks of the held-out tuning half.
Never give it the frozen split (authorS-V): it refuses.
"""

import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys


def tuning_half(case_id):
    return "train" if int(hashlib.sha256(case_id.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def run_gate(binary, cases):
    inp = "".join(json.dumps({"id": c["id"], "text": c["text"]}, ensure_ascii=False) + "\n" for c in cases)
    out = subprocess.run([binary], input=inp, capture_output=True, text=True, check=True).stdout
    return {r["id"]: r for r in map(json.loads, out.splitlines())}


def rate(xs):
    return (sum(xs) / len(xs), len(xs)) if xs else (float("nan"), 0)


def table(title, cases, res):
    pos = [c for c in cases if c["sensitive"]]
    neg = [c for c in cases if not c["sensitive"]]
    rr, n = rate([res[c["id"]]["rules_sensitive"] for c in pos])
    gr, _ = rate([res[c["id"]]["sensitive"] for c in pos])
    rf, m = rate([res[c["id"]]["rules_sensitive"] for c in neg])
    gf, _ = rate([res[c["id"]]["sensitive"] for c in neg])
    print(f"\n## {title}\n")
    print(f"overall: recall rules {rr:.3f} -> gate {gr:.3f} ({n} sensitive); "
          f"false blocks rules {rf:.3f} -> gate {gf:.3f} ({m} harmless)\n")
    print("| group | n sens | recall rules | recall gate | n harmless | false blocks rules | false blocks gate |")
    print("|---|---|---|---|---|---|---|")
    groups = collections.defaultdict(lambda: ([], []))
    for c in cases:
        keys = [f"lang {c.get('lang', '?')}"]
        if c["sensitive"]:
            keys += [f"category {k}" for k in c.get("categories", [])]
        kind = c.get("kind")
        if kind:
            parts = kind.split("-")
            kind = "-".join(parts[:3] if parts[0] == "hard" else parts[:1])
        kind = kind or c.get("group")
        if kind:
            keys.append(f"kind {kind}")
        for k in keys:
            groups[k][0 if c["sensitive"] else 1].append(c)
    for k in sorted(groups):
        p, q = groups[k]
        a, n = rate([res[c["id"]]["rules_sensitive"] for c in p])
        b, _ = rate([res[c["id"]]["sensitive"] for c in p])
        e, m = rate([res[c["id"]]["rules_sensitive"] for c in q])
        f, _ = rate([res[c["id"]]["sensitive"] for c in q])
        fmt = lambda x, cnt: f"{x:.2f}" if cnt else "–"  # noqa: E731
        print(f"| {k} | {n} | {fmt(a, n)} | {fmt(b, n)} | {m} | {fmt(e, m)} | {fmt(f, m)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--synthetic")
    ap.add_argument("--tuning", nargs="*", default=[])
    ap.add_argument("--misses", action="store_true")
    args = ap.parse_args()
    for p in args.tuning:
        if os.path.basename(p).startswith(("authorS", "authorT", "authorU", "authorV")):
            sys.exit("refusing to evaluate on the frozen split")
    if args.synthetic:
        syn = [c for c in map(json.loads, open(args.synthetic, encoding="utf-8")) if c["split"] == "heldout"]
        table("synthetic held-out split", syn, run_gate(args.bin, syn))
    if args.tuning:
        tun = [json.loads(l) for p in args.tuning for l in open(p, encoding="utf-8") if l.strip()]
        res = run_gate(args.bin, tun)
        held = [c for c in tun if tuning_half(c["id"]) == "heldout"]
        table("TUNING corpora (authorA+authorB), half the classifier never saw", held, res)
        table("TUNING corpora (authorA+authorB), half the classifier was trained on",
              [c for c in tun if tuning_half(c["id"]) == "train"], res)
        if args.misses:
            print("\n## gate errors on the held-out tuning half\n")
            for c in held:
                r = res[c["id"]]
                if r["sensitive"] != c["sensitive"]:
                    tag = "MISS" if c["sensitive"] else f"FALSE BLOCK ({r['stage']})"
                    print(f"- {tag} {c['id']} {c.get('kind')} score={r['classifier_score']}")


if __name__ == "__main__":
    main()
