#!/usr/bin/env python3
"""Leave-one-author-out with the threshold chosen by cross-validation by author (issue #18, round 6).

    CARGO_TARGET_DIR=/tmp/pii-target cargo build --release -p edgewise-pii --example gate_check
    python tests/privacy/make_clf_data.py --out /tmp/loao/data.jsonl
    python tests/privacy/loao_cv.py --bin /tmp/pii-target/release/examples/gate_check \
        --data /tmp/loao/data.jsonl --work /tmp/loao [--recipe cv|round5] [--json out.json]

The question it answers: how does the gate do on an author nobody tuned the classifier on, when its
threshold too was chosen without that author? For each author X of tuning/author*.jsonl:

1. `recipe cv` (round 6, what train_classifier.py ships): the classifier is trained on the synthetic
   training split plus every text of the other authors (train_classifier.fit, same weights and
   optimiser). Its threshold is chosen from out-of-author scores of the other authors: author Y's
   texts scored by the model trained without Y (the leave-one-author-out models themselves; that
   model saw X's texts, a mild leak into X's threshold that full nesting, 91 leave-two-out
   trainings, would remove; not done), as the lowest threshold whose extra false blocks (harmless texts the rules pass and the
   classifier blocks) stay within --budget of the harmless texts pooled over those authors.
2. `recipe round5`: round 5's recipe (train on half of each author, threshold from the budget rule
   on the other half and the synthetic held-out split, minus THRESHOLD_OFFSET), for the "before" row.

Scoring is train_classifier.score (f16 weights, windows, maximum), which the Rust classifier matches
to 1e-6 (pii/tests/data/clf_golden.json), so the gate's verdict is rules OR score >= threshold.
`--scores-out` saves the out-of-author scores; `--scores-in` re-scores them under other rules
(`--bin` or `--rules-file`) or budgets without training.

Prints per held-out author: rules alone, the gate, and what a budget sweep would give; `--evidence`
also scores the variant where the classifier acts only on texts with some partial evidence (see
`EVIDENCE`). NumPy + SciPy (requirements-clf.txt). Refuses the frozen split (authorS-V).
"""
import argparse
import collections
import glob
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_classifier as tc  # noqa: E402

TUNING = os.path.join(HERE, "independent", "tuning")
FROZEN = ("authorS", "authorT", "authorU", "authorV")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def run_rules(binary, cases):
    payload = "".join(json.dumps({"id": c["id"], "text": c["text"]}, ensure_ascii=False) + "\n" for c in cases)
    r = subprocess.run([binary, "--rules-only", "--details"], input=payload.encode(), stdout=subprocess.PIPE,
                       check=True)
    out = {}
    for line in r.stdout.decode().splitlines():
        v = json.loads(line)
        if "error" in v:
            sys.exit(f"gate_check error on {v.get('id')}: {v['error']}")
        out[v["id"]] = v
    return out


class Counts:
    def __init__(self):
        self.pos = self.miss = self.neg = self.fb = 0

    def add(self, sensitive_label, blocked):
        if sensitive_label:
            self.pos += 1
            self.miss += not blocked
        else:
            self.neg += 1
            self.fb += bool(blocked)

    def s(self):
        return (f"{100 * self.miss / max(self.pos, 1):4.1f} % / {100 * self.fb / max(self.neg, 1):4.1f} %"
                f" ({self.miss:2}/{self.fb:2})")

    def d(self):
        return {"pos": self.pos, "leaks": self.miss, "neg": self.neg, "false_blocks": self.fb}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="gate_check example binary (its rules are scored)")
    ap.add_argument("--data", required=True, help="make_clf_data.py output (synthetic)")
    ap.add_argument("--work", required=True, help="scratch directory (feature cache, scores)")
    ap.add_argument("--recipe", default="cv", choices=["cv", "round5"])
    ap.add_argument("--budget", type=float, default=tc.CV_BUDGET, help="cv recipe: extra false blocks allowed")
    ap.add_argument("--sweep", default="0.005,0.01,0.015,0.02,0.025,0.03,0.04", help="budgets to report too")
    ap.add_argument("--rules-file", help="verdicts of `gate_check --rules-only --details` saved earlier (other rules)")
    ap.add_argument("--l2", type=float, default=tc.L2)
    ap.add_argument("--evidence", action="store_true", help="also score the evidence-gated variant")
    ap.add_argument("--json", help="write the per-author table here")
    ap.add_argument("--scores-out", help="write every author's out-of-author scores (JSON) here")
    ap.add_argument("--scores-in", help="reuse scores written by --scores-out (no training)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    files = sorted(glob.glob(os.path.join(TUNING, "author*.jsonl")))
    if any(os.path.basename(f).startswith(FROZEN) for f in files):
        sys.exit("refusing to read the frozen split")
    authors = {os.path.basename(f).split(".")[0]: load(f) for f in files}
    synth = load(args.data)
    allc = synth + [c for a in authors for c in authors[a]]
    if args.rules_file:
        with open(args.rules_file, encoding="utf-8") as fh:
            rules = {v["id"]: v for v in map(json.loads, fh)}
    else:
        rules = run_rules(args.bin, allc)
    rs = {i: bool(v["rules_sensitive"]) for i, v in rules.items()}
    conf = {i: float(v.get("confidence", 0.95)) for i, v in rules.items()}

    cache = os.path.join(args.work, "features.pkl")
    if os.path.exists(cache):
        with open(cache, "rb") as fh:
            tc.FEATURES.update(pickle.load(fh))
    known = len(tc.FEATURES)

    if args.scores_in:
        with open(args.scores_in, encoding="utf-8") as fh:
            saved = json.load(fh)
        oof, thr5 = saved["oof"], saved.get("thr5", {})
    else:
        oof, thr5 = {}, {}
        for held in authors:
            others = {a: authors[a] for a in authors if a != held}
            print(f"training without {held} ...", file=sys.stderr)
            if args.recipe == "cv":
                w, b = tc.fit(synth, others, rs, l2=args.l2, tuning_part="all")
                thr5[held] = None
            else:
                w, b = tc.fit(synth, others, rs, l2=args.l2, tuning_part="train")
                thr5[held] = tc.budget_threshold(w, b, synth, others, rs)
            oof[held] = {c["id"]: tc.score_q(c["text"], w, b) for c in authors[held]}
            if len(tc.FEATURES) > known:
                with open(cache + ".tmp", "wb") as fh:
                    pickle.dump(tc.FEATURES, fh, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(cache + ".tmp", cache)
                known = len(tc.FEATURES)
        if args.scores_out:
            with open(args.scores_out, "w", encoding="utf-8") as fh:
                json.dump({"recipe": args.recipe, "oof": oof, "thr5": thr5}, fh)

    def threshold_for(held, budget):
        if args.recipe == "round5" and thr5.get(held) is not None:
            return thr5[held]
        pool = [(oof[a][c["id"]], rs[c["id"]], c["sensitive"]) for a in authors if a != held for c in authors[a]]
        return tc.pick_threshold(pool, budget)

    def evaluate(budget, gate_fn=None):
        per, tot = {}, {"rules": Counts(), "gate": Counts()}
        kinds = collections.defaultdict(Counts)
        langs = collections.defaultdict(Counts)
        for held in authors:
            t = threshold_for(held, budget)
            c_r, c_g = Counts(), Counts()
            for c in authors[held]:
                s = oof[held][c["id"]]
                act = gate_fn(c) if gate_fn else True
                blocked = rs[c["id"]] or (act and s >= t)
                c_r.add(c["sensitive"], rs[c["id"]])
                c_g.add(c["sensitive"], blocked)
                tot["rules"].add(c["sensitive"], rs[c["id"]])
                tot["gate"].add(c["sensitive"], blocked)
                langs[c.get("lang", "?")].add(c["sensitive"], blocked)
                if (c["sensitive"] and not blocked) or (not c["sensitive"] and blocked):
                    kinds[c.get("kind", "?")].add(c["sensitive"], blocked)
            per[held] = (c_r, c_g, t)
        evaluate.langs = langs
        return per, tot, kinds

    budgets = [float(x) for x in args.sweep.split(",") if x]
    per, tot, kinds = evaluate(args.budget)
    print(f"Leave-one-author-out, recipe {args.recipe}" + (f", budget {args.budget}" if args.recipe == "cv" else ""))
    print(f"{'held out':9} {'n':>4} {'rules leak / fb':>24} {'gate leak / fb':>24}  thr")
    for held, (c_r, c_g, t) in per.items():
        print(f"{held:9} {len(authors[held]):4} {c_r.s():>24} {c_g.s():>24}  {t:.3f}")
    print(f"{'pooled':9} {sum(len(v) for v in authors.values()):4} {tot['rules'].s():>24} {tot['gate'].s():>24}")
    fbs = [100 * c_g.fb / max(c_g.neg, 1) for _, c_g, _ in per.values()]
    lks = [100 * c_g.miss / max(c_g.pos, 1) for _, c_g, _ in per.values()]
    print(f"per-author spread: leak median {np.median(lks):.1f} max {max(lks):.1f}; "
          f"false blocks median {np.median(fbs):.1f} max {max(fbs):.1f}")
    print("per language (gate): " + "; ".join(f"{k} {v.s()}" for k, v in sorted(evaluate.langs.items())))
    print("leaks / false blocks by kind (gate):")
    for k, v in sorted(kinds.items(), key=lambda kv: -(kv[1].miss + kv[1].fb)):
        print(f"  {k:40} leaks {v.miss} fb {v.fb}")
    if args.recipe == "cv":
        print("budget sweep (pooled gate leak / false blocks; worst author's false blocks):")
        for bud in budgets:
            p, t, _ = evaluate(bud)
            worst = max(100 * g.fb / max(g.neg, 1) for _, g, _ in p.values())
            print(f"  budget {bud:.3f}: {t['gate'].s()}  worst-author fb {worst:.1f} %")
            if args.evidence:
                for name, fn in EVIDENCE.items():
                    p, t, _ = evaluate(bud, lambda c: fn(c, conf))
                    worst = max(100 * g.fb / max(g.neg, 1) for _, g, _ in p.values())
                    print(f"     classifier only where {name}: {t['gate'].s()}  worst-author fb {worst:.1f} %")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"recipe": args.recipe, "budget": args.budget,
                       "authors": {h: {"rules": r.d(), "gate": g.d(), "threshold": t} for h, (r, g, t) in per.items()},
                       "pooled": {k: v.d() for k, v in tot.items()}}, f, indent=1)


DIGITS = re.compile(r"\d[\d\s.\-/]*\d")
# Partial evidence (experiment, --evidence): the classifier acts only on texts that have some.
EVIDENCE = {
    # The rules suppressed a look-alike (their not-sensitive confidence is below the clean 0.95).
    "rules residual": lambda c, conf: conf[c["id"]] < 0.949,
    # ... or any run of two or more digits.
    "residual or digits": lambda c, conf: conf[c["id"]] < 0.949 or bool(DIGITS.search(c["text"])),
}


if __name__ == "__main__":
    main()
