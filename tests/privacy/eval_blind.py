#!/usr/bin/env python3
"""Scores the privacy check on labelled JSON-lines corpora.

    tests/privacy/eval_blind.py tests/privacy/independent/tuning/authorA.jsonl tests/privacy/independent/tuning/authorB.jsonl
    tests/privacy/eval_blind.py tests/privacy/corpus.jsonl --split dev

Each input line: {"id", "text", "sensitive", "categories": [...], "lang", "kind"} (the old corpus
has "group" instead of "kind" and a "split"). The texts are piped through a checker that reads
{"id","text"} JSON lines on stdin and writes {"id","sensitive","categories"} JSON lines:

  * default: the pii crate's example binary (built on demand with cargo into
    $CARGO_TARGET_DIR or ./target):  cargo build --release -p edgewise-pii --example privacy_check
  * --bin PATH: that binary (e.g. target/release/examples/privacy_check)
  * --cli PATH: `PATH privacy-check` (the edgewise CLI)
  * --cmd "...": any shell command speaking the same protocol (e.g. rules + a second stage)

Prints recall (= 1 - leak rate) and the false-block rate overall, per category (a sensitive case
counts as caught when it is flagged at all; "cat" is the share whose report names that category),
per language and per kind, then lists every miss and false block (id, kind, labels, what the
checker said; --text adds the first 160 characters of the text). --json FILE writes the numbers.
Standard library only.
"""
import argparse
import collections
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load(paths, split):
    cases = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    c = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not JSON ({e})")
                if split and c.get("split") not in split:
                    continue
                c["kind"] = c.get("kind") or c.get("group") or "?"
                c["lang"] = c.get("lang") or "?"
                c["_key"] = f"{os.path.basename(path)}:{c.get('id', n)}"
                cases.append(c)
    return cases


def checker_command(args):
    if args.cmd:
        return shlex.split(args.cmd) if not any(ch in args.cmd for ch in "|;&") else ["sh", "-c", args.cmd]
    if args.cli:
        return [args.cli, "privacy-check"]
    if args.bin:
        return [args.bin]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "release", "examples", "privacy_check")
    if not args.no_build:
        r = subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "edgewise-pii", "--example", "privacy_check"], cwd=ROOT
        )
        if r.returncode != 0:
            sys.exit("cargo build of the privacy_check example failed")
    if not os.path.exists(exe):
        sys.exit(f"{exe} does not exist (build it, or set CARGO_TARGET_DIR, or pass --bin)")
    return [exe]


def run_checker(cmd, cases):
    payload = "".join(json.dumps({"id": i, "text": c["text"]}, ensure_ascii=False) + "\n" for i, c in enumerate(cases))
    r = subprocess.run(cmd, input=payload.encode("utf-8"), stdout=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"checker exited with {r.returncode}")
    answers = {}
    for line in r.stdout.decode("utf-8").splitlines():
        if line.strip():
            v = json.loads(line)
            answers[v.get("id")] = v
    missing = [i for i in range(len(cases)) if i not in answers or "error" in answers[i]]
    if missing:
        sys.exit(f"checker gave no answer for {len(missing)} cases (first: {cases[missing[0]]['_key']})")
    return [answers[i] for i in range(len(cases))]


class Tally:
    def __init__(self):
        self.pos = self.tp = self.neg = self.fp = 0

    def add(self, case, ans):
        if case["sensitive"]:
            self.pos += 1
            self.tp += bool(ans["sensitive"])
        else:
            self.neg += 1
            self.fp += bool(ans["sensitive"])

    def row(self, name, width=28):
        rec = f"{self.tp / self.pos:.3f} ({self.tp}/{self.pos})" if self.pos else "-"
        fb = f"{self.fp / self.neg:.3f} ({self.fp}/{self.neg})" if self.neg else "-"
        return f"  {name:{width}} recall {rec:18} false-block {fb}"

    def numbers(self):
        return {
            "pos": self.pos,
            "caught": self.tp,
            "recall": self.tp / self.pos if self.pos else None,
            "neg": self.neg,
            "false_blocks": self.fp,
            "false_block_rate": self.fp / self.neg if self.neg else None,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--split", action="append", help="only cases of this split (repeatable; old corpus)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--bin")
    g.add_argument("--cli")
    g.add_argument("--cmd")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build first")
    ap.add_argument("--text", action="store_true", help="show the start of each missed/false-blocked text")
    ap.add_argument("--all-kinds", action="store_true", help="list every kind, not only those with errors")
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()

    cases = load(args.files, args.split)
    if not cases:
        sys.exit("no cases")
    answers = run_checker(checker_command(args), cases)

    total = Tally()
    by_lang = collections.defaultdict(Tally)
    by_kind = collections.defaultdict(Tally)
    by_cat = collections.defaultdict(lambda: [0, 0, 0])  # cases, flagged, category named
    misses, false_blocks = [], []
    for c, a in zip(cases, answers):
        total.add(c, a)
        by_lang[c["lang"]].add(c, a)
        by_kind[c["kind"]].add(c, a)
        if c["sensitive"]:
            for cat in c.get("categories") or ["(none)"]:
                t = by_cat[cat]
                t[0] += 1
                t[1] += bool(a["sensitive"])
                t[2] += cat in a.get("categories", [])
            if not a["sensitive"]:
                misses.append((c, a))
        elif a["sensitive"]:
            false_blocks.append((c, a))

    print(f"{len(cases)} cases from {', '.join(os.path.basename(p) for p in args.files)}"
          + (f" (split {','.join(args.split)})" if args.split else ""))
    print(total.row("ALL"))
    print(f"  leak rate {1 - total.tp / max(total.pos, 1):.3f}")
    print("per category (sensitive cases carrying the label):")
    for cat in sorted(by_cat):
        n, hit, named = by_cat[cat]
        print(f"  {cat:28} recall {hit / n:.3f} ({hit}/{n})   cat {named / n:.3f}")
    print("per language:")
    for lang in sorted(by_lang):
        print(by_lang[lang].row(lang))
    print("per kind" + ("" if args.all_kinds else " (only kinds with a miss or a false block)") + ":")
    for kind in sorted(by_kind):
        t = by_kind[kind]
        if args.all_kinds or t.tp < t.pos or t.fp:
            print(t.row(kind, 40))

    def show(c, a):
        line = f"    {c['_key']} [{c['lang']}/{c['kind']}] want {c.get('categories')} got {a.get('categories')}"
        if args.text:
            line += "\n        " + repr(c["text"][:160])
        print(line)

    print(f"misses (sensitive, not flagged): {len(misses)}")
    for c, a in misses:
        show(c, a)
    print(f"false blocks (not sensitive, flagged): {len(false_blocks)}")
    for c, a in false_blocks:
        show(c, a)

    if args.json:
        out = {
            "files": args.files,
            "split": args.split,
            "all": total.numbers(),
            "lang": {k: v.numbers() for k, v in sorted(by_lang.items())},
            "kind": {k: v.numbers() for k, v in sorted(by_kind.items())},
            "category": {k: {"cases": v[0], "caught": v[1], "named": v[2]} for k, v in sorted(by_cat.items())},
            "misses": [c["_key"] for c, _ in misses],
            "false_blocks": [c["_key"] for c, _ in false_blocks],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
