#!/usr/bin/env python3
"""Leave-one-author-out for a head on MiniLM sentence embeddings as the gate's second stage (issue #18).

The candidate: all-MiniLM-L6-v2 (core/src/embed, 384-d, normalized; a text is cut at 256 tokens)
and a small head -- logistic regression, or an MLP with one hidden layer -- trained exactly on the
data the hashed classifier is trained on (tests/privacy/train_classifier.py): the synthetic cases
of make_clf_data.py plus the train half of the tuning corpora, with the same weights (classes
balanced, cases the rules miss x2, tuning cases x3) and the same threshold rule (the lowest
threshold whose extra false blocks stay within --added-fb on each held-out set). For each author
X of tests/privacy/independent/tuning/: trained and thresholded without X, scored on all of X as
rules OR head >= threshold. Compare with eval_loao.py's figures for the hashed classifier.

    edgewise embed --threads 2 < texts.jsonl > emb.jsonl        # every synthetic and tuning text
    gate_check --rules-only < same texts > rules.jsonl             # eval_loao.py writes one (--work)
    python tests/privacy/eval_minilm_head.py --data DATA.jsonl --emb emb.jsonl [--emb more.jsonl] \
        --rules rules.jsonl [--head logreg|mlp] [--json out.json]

Synthetic cases without an embedding are left out (both splits; the count is printed), so a
subset of the synthetic data may be embedded to save time. NumPy only; deterministic.
"""
import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TUNING = os.path.join(HERE, "independent", "tuning")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def tuning_half(case_id):
    # The same deterministic halves as train_classifier.py.
    return "train" if int(hashlib.sha256(case_id.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def train_logreg(x, y, sw, l2=1e-4, iters=600, lr=0.05):
    w = np.zeros(x.shape[1])
    b = 0.0
    m, v, mb, vb = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, iters + 1):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * sw / sw.sum()
        gw, gb = x.T @ g + l2 * w, g.sum()
        m = 0.9 * m + 0.1 * gw
        v = 0.999 * v + 0.001 * gw * gw
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        mb = 0.9 * mb + 0.1 * gb
        vb = 0.999 * vb + 0.001 * gb * gb
        b -= lr * (mb / (1 - 0.9 ** t)) / (np.sqrt(vb / (1 - 0.999 ** t)) + 1e-8)
    return lambda z: 1 / (1 + np.exp(-(z @ w + b)))


def train_mlp(x, y, sw, hidden=64, l2=1e-4, iters=800, lr=0.01, seed=7):
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], hidden)), np.zeros(hidden),
              rng.normal(0, 1 / np.sqrt(hidden), hidden), np.zeros(1)]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    for t in range(1, iters + 1):
        w1, b1, w2, b2 = params
        h = np.maximum(x @ w1 + b1, 0)
        p = 1 / (1 + np.exp(-(h @ w2 + b2[0])))
        g = (p - y) * sw / sw.sum()
        gw2 = h.T @ g + l2 * w2
        gb2 = np.array([g.sum()])
        gh = np.outer(g, w2) * (h > 0)
        gw1 = x.T @ gh + l2 * w1
        gb1 = gh.sum(0)
        for i, gr in enumerate((gw1, gb1, gw2, gb2)):
            ms[i] = 0.9 * ms[i] + 0.1 * gr
            vs[i] = 0.999 * vs[i] + 0.001 * gr * gr
            params[i] = params[i] - lr * (ms[i] / (1 - 0.9 ** t)) / (np.sqrt(vs[i] / (1 - 0.999 ** t)) + 1e-8)
    w1, b1, w2, b2 = params
    return lambda z: 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2[0])))


def rate(n, d):
    return f"{100 * n / max(d, 1):5.1f}% ({n:3}/{d})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="make_clf_data.py output")
    ap.add_argument("--emb", required=True, action="append", help="edgewise embed output (repeatable)")
    ap.add_argument("--rules", required=True, help="gate_check --rules-only output over the data and the authors")
    ap.add_argument("--head", default="logreg", choices=["logreg", "mlp"])
    ap.add_argument("--added-fb", type=float, default=0.025)
    ap.add_argument("--json")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(TUNING, "author*.jsonl")))
    if any(os.path.basename(f).startswith(("authorS", "authorT", "authorU", "authorV")) for f in files):
        sys.exit("refusing to read the frozen split")
    emb = {}
    for p in args.emb:
        for r in load(p):
            emb[r["id"]] = np.asarray(r["embedding"], dtype=np.float64)
    rules = {r["id"]: bool(r["rules_sensitive"]) for r in load(args.rules)}
    synth = [c for c in load(args.data) if c["id"] in emb]
    print(f"synthetic cases with an embedding: {len(synth)} "
          f"(train {sum(c['split'] == 'train' for c in synth)}, heldout {sum(c['split'] == 'heldout' for c in synth)})",
          file=sys.stderr)
    authors = {os.path.basename(f).split(".")[0]: load(f) for f in files}
    for cs in authors.values():
        for c in cs:
            c["src"] = "tuning"
            c["split"] = tuning_half(c["id"])
            if c["id"] not in emb:
                sys.exit(f"no embedding for {c['id']}")

    train_fn = train_logreg if args.head == "logreg" else train_mlp
    result, tot = {}, {"rules": [0, 0, 0, 0], "gate": [0, 0, 0, 0]}
    for held in authors:
        data = synth + [c for a, cs in authors.items() if a != held for c in cs]
        tr = [c for c in data if c["split"] == "train"]
        ho = [c for c in data if c["split"] == "heldout"]
        x = np.stack([emb[c["id"]] for c in tr])
        y = np.array([1.0 if c["sensitive"] else 0.0 for c in tr])
        sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        sw *= np.array([2.0 if not rules[c["id"]] else 1.0 for c in tr])
        sw *= np.array([3.0 if c.get("src") == "tuning" else 1.0 for c in tr])
        model = train_fn(x, y, sw)
        sc = dict(zip([c["id"] for c in ho], model(np.stack([emb[c["id"]] for c in ho]))))
        harmless = [c for c in ho if not c["sensitive"]]
        sets = [[c for c in harmless if c.get("src") != "tuning"], [c for c in harmless if c.get("src") == "tuning"]]
        sets = [s for s in sets if s]
        chosen = 0.99
        for t in sorted({round(float(v), 4) for v in np.linspace(0.05, 0.99, 189)}):
            if all(sum(1 for c in s if not rules[c["id"]] and sc[c["id"]] >= t) / len(s) <= args.added_fb for s in sets):
                chosen = t
                break
        cs = authors[held]
        hs = model(np.stack([emb[c["id"]] for c in cs]))
        r = {"rules": [0, 0, 0, 0], "gate": [0, 0, 0, 0]}  # pos, leaks, neg, false blocks
        for c, h in zip(cs, hs):
            for k, flag in (("rules", rules[c["id"]]), ("gate", rules[c["id"]] or h >= chosen)):
                if c["sensitive"]:
                    r[k][0] += 1
                    r[k][1] += not flag
                else:
                    r[k][2] += 1
                    r[k][3] += bool(flag)
        for k in r:
            tot[k] = [a + b for a, b in zip(tot[k], r[k])]
        result[held] = r | {"threshold": chosen}
        print(f"{held:8} thr {chosen:.3f}  leak rules {rate(r['rules'][1], r['rules'][0])} -> gate "
              f"{rate(r['gate'][1], r['gate'][0])}   fb rules {rate(r['rules'][3], r['rules'][2])} -> gate "
              f"{rate(r['gate'][3], r['gate'][2])}")
    print(f"{'pooled':8}            leak rules {rate(tot['rules'][1], tot['rules'][0])} -> gate "
          f"{rate(tot['gate'][1], tot['gate'][0])}   fb rules {rate(tot['rules'][3], tot['rules'][2])} -> gate "
          f"{rate(tot['gate'][3], tot['gate'][2])}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"head": args.head, "authors": result, "pooled": tot}, f, indent=1)


if __name__ == "__main__":
    main()
