#!/usr/bin/env python3
"""Trains the privacy gate's second-stage classifier and writes its model file (issue #18).

    python tests/privacy/make_clf_data.py --out /tmp/clf/data.jsonl
    pii-target/release/examples/gate_check --rules-only < ... > /tmp/clf/rules.jsonl   # see README
    python tests/privacy/train_classifier.py --data /tmp/clf/data.jsonl --rules /tmp/clf/rules.jsonl \
        --tuning tests/privacy/independent/tuning/author[A-N].jsonl \
        --model models/pii-clf-v1.bin --golden pii/tests/data/clf_golden.json [--oof-scores FILE]

The model is a logistic regression over hashed features of a normalized text (this file's
`normalize` and `features` are the specification that pii/src/classifier.rs implements):

* normalize: drop soft hyphens, zero-width and bidi controls and combining marks; full-width ASCII to
  ASCII; any control or space character to one space (runs collapsed); any numeric character
  (general category N*) to "0"; Cyrillic look-alikes of Latin letters to the Latin letter; lower
  case; pad with one space on each side.
* features: character n-grams, n = 1..5, and word uni- and bigrams (words split at spaces and
  punctuation); each hashed (FNV-1a 32 seeded per kind, then a murmur3 finalizer) into 2^19 buckets;
  per bucket 1 + ln(count); the vector L2-normalized.
* score: sigmoid(bias + w·x); texts longer than the window are scored per window (max).

Training (round 6, `--threshold author-cv`, the default): the synthetic training split plus every
text of the tuning authors; the threshold is chosen by cross-validation BY AUTHOR: each author's
texts are scored by the same recipe trained without that author (`out_of_author_scores`, or
`--oof-scores` from tests/privacy/loao_cv.py, which computes exactly these), and the threshold is
the lowest whose extra false blocks (harmless texts the rules pass and the classifier blocks) stay
within `--cv-budget` (CV_BUDGET) of those authors' harmless texts, pooled. So the shipped threshold
is one that held on authors it was not fitted on. `--threshold budget` is round 5's recipe (half of
each author for training, the other half and the synthetic held-out split for the threshold,
minus THRESHOLD_OFFSET).

Numbers (NumPy, SciPy's sparse products when installed; no randomness: full-batch Adam): deterministic.
Only the synthetic data and the tuning corpora (authorA-R) are read; the frozen splits (authorS-V) never.
"""

import argparse
import hashlib
import json
import math
import os
import pickle
import struct
import sys
import unicodedata

import numpy as np

# ---------------------------------------------------------------------------------------------
# Features (the specification; pii/src/classifier.rs mirrors it)
# ---------------------------------------------------------------------------------------------

MAGIC = b"EWPC"
VERSION = 1
HEADER_LEN = 40
N_BUCKETS = 1 << 19
HASH_SEED = 0x5EED1234
CHAR_MIN, CHAR_MAX, WORD_MAX = 1, 5, 2
WINDOW, STRIDE = 1000, 500
HARD_WEIGHT = 0.6
THRESHOLD_OFFSET = -0.03
L2 = 5e-7
# Round 6: the threshold's extra-false-block budget on out-of-author scores (--threshold author-cv).
# Round 7 kept it (leave-one-author-out A-R with the round-7 rules: 0.75 % leaks 17 of 2,671, 1 % 14).
CV_BUDGET = 0.01
KIND_CHAR, KIND_WORD, KIND_BIGRAM = 1, 2, 3

STRIP = {0x00AD, 0xFEFF} | set(range(0x200B, 0x2010)) | set(range(0x202A, 0x202F)) | set(range(0x2060, 0x2065)) \
    | set(range(0x0300, 0x0370))
SPACE = set(range(0x00, 0x21)) | set(range(0x7F, 0xA1)) | {0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} \
    | set(range(0x2000, 0x200B))
HOMOGLYPH = {"а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ј": "j", "ѕ": "s",
             "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t",
             "Х": "x", "У": "y", "І": "i"}
WORD_SEP = set(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") | set("，。、！？：；（）「」『』【】《》“”‘’…·—–")


def normalize(text):
    out = []
    prev_space = True  # drops leading spaces
    for ch in text:
        cp = ord(ch)
        if cp in STRIP:
            continue
        if 0xFF01 <= cp <= 0xFF5E:
            ch = chr(cp - 0xFEE0)
            cp = ord(ch)
        if cp in SPACE:
            if not prev_space:
                out.append(" ")
            prev_space = True
            continue
        prev_space = False
        if "0" <= ch <= "9" or (cp >= 0x80 and unicodedata.category(ch)[0] == "N"):
            out.append("0")
        elif ch in HOMOGLYPH:
            out.append(HOMOGLYPH[ch])
        else:
            out.append(ch.lower())
    s = "".join(out).rstrip(" ")
    return " " + s + " "


def _fmix(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


_CACHE = {}


def bucket(kind, s, seed=HASH_SEED, n_buckets=N_BUCKETS):
    key = (kind, s, seed, n_buckets)
    b = _CACHE.get(key)
    if b is None:
        h = (0x811C9DC5 ^ seed ^ (kind * 0x01000193)) & 0xFFFFFFFF
        for byte in s.encode("utf-8"):
            h ^= byte
            h = (h * 0x01000193) & 0xFFFFFFFF
        b = _fmix(h) & (n_buckets - 1)
        if len(_CACHE) < 4_000_000:
            _CACHE[key] = b
    return b


def words(s):
    toks, cur = [], []
    for ch in s:
        if ch in WORD_SEP:
            if cur:
                toks.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        toks.append("".join(cur))
    return toks


def windows(s):
    """Character windows of a normalized text: the whole text, or overlapping windows."""
    n = len(s)
    if n <= WINDOW:
        return [s]
    out, start = [], 0
    while start + WINDOW < n:
        out.append(s[start:start + WINDOW])
        start += STRIDE
    out.append(s[n - WINDOW:])
    return out


def features(s, seed=HASH_SEED, n_buckets=N_BUCKETS):
    """Sparse features of one normalized window: (sorted bucket indices, float64 values)."""
    counts = {}
    n = len(s)
    for i in range(n):
        for k in range(CHAR_MIN, CHAR_MAX + 1):
            if i + k > n:
                break
            b = bucket(KIND_CHAR, s[i:i + k], seed, n_buckets)
            counts[b] = counts.get(b, 0) + 1
    toks = words(s)
    for t in toks:
        b = bucket(KIND_WORD, t, seed, n_buckets)
        counts[b] = counts.get(b, 0) + 1
    if WORD_MAX >= 2:
        for a, c in zip(toks, toks[1:]):
            b = bucket(KIND_BIGRAM, a + " " + c, seed, n_buckets)
            counts[b] = counts.get(b, 0) + 1
    idx = np.array(sorted(counts), dtype=np.int64)
    val = np.array([1.0 + math.log(counts[b]) for b in idx], dtype=np.float64)
    norm = math.sqrt(float((val * val).sum()))
    if norm > 0:
        val /= norm
    return idx, val


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


# Features per text (sha1 of the text -> [(idx, val) per window]), shared by matrix() and score()
# and kept on disk by --cache, so that eval_loao.py's ten trainings compute them once.
FEATURES = {}


def text_features(text):
    key = hashlib.sha1(text.encode("utf-8")).hexdigest()
    f = FEATURES.get(key)
    if f is None:
        f = [features(win) for win in windows(normalize(text))]
        FEATURES[key] = f
    return f


def score(text, w, bias, seed=HASH_SEED):
    best = 0.0
    wins = text_features(text) if seed == HASH_SEED and len(w) == N_BUCKETS else \
        [features(win, seed, len(w)) for win in windows(normalize(text))]
    for idx, val in wins:
        best = max(best, sigmoid(bias + float((w[idx].astype(np.float64) * val).sum())))
    return best


# ---------------------------------------------------------------------------------------------
# Model file
# ---------------------------------------------------------------------------------------------

def write_model(path, w16, bias, threshold):
    header = MAGIC + struct.pack("<HHIIBBBBIIffI", VERSION, HEADER_LEN, len(w16), HASH_SEED, CHAR_MIN, CHAR_MAX,
                                 WORD_MAX, 1, WINDOW, STRIDE, bias, threshold, 0)
    assert len(header) == HEADER_LEN
    blob = header + w16.astype("<f2").tobytes()
    with open(path, "wb") as fh:
        fh.write(blob)
    return hashlib.sha256(blob).hexdigest(), len(blob)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def load_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(l) for l in fh if l.strip()]


def tuning_half(case_id):
    """Deterministic half of the tuning corpora used for training ("train") or threshold ("heldout")."""
    return "train" if int(hashlib.sha256(case_id.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def matrix(texts):
    rows, idxs, vals = [], [], []
    for r, t in enumerate(texts):
        # The first window (windows() starts with s[:WINDOW] for a long text).
        idx, val = text_features(t)[0]
        rows.append(np.full(len(idx), r, dtype=np.int64))
        idxs.append(idx)
        vals.append(val)
    return np.concatenate(rows), np.concatenate(idxs), np.concatenate(vals)


def train(rows, idx, val, y, sw, l2, iters, lr):
    """Full-batch Adam on the weighted logistic loss (SciPy's sparse products when present: the
    same arithmetic, ~10x faster than NumPy's bincount)."""
    n = len(y)
    try:
        import scipy.sparse as sp
    except ImportError:
        sp = None
    if sp is not None:
        x = sp.csr_matrix((val, (rows, idx)), shape=(n, N_BUCKETS))
        xt = x.T.tocsr()
        return adam(lambda w: x @ w, lambda g: xt @ g, y, sw, l2, iters, lr, log_every=100)
    return adam(
        lambda w: np.bincount(rows, weights=w[idx] * val, minlength=n),
        lambda g: np.bincount(idx, weights=g[rows] * val, minlength=N_BUCKETS),
        y, sw, l2, iters, lr, log_every=50,
    )


def adam(xw, xtg, y, sw, l2, iters, lr, log_every):
    """The Adam loop of [`train`] over the products `xw(w)` = X·w and `xtg(g)` = Xᵀ·g."""
    w = np.zeros(N_BUCKETS, dtype=np.float64)
    b = 0.0
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    mb = vb = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    swsum = sw.sum()
    for t in range(1, iters + 1):
        z = xw(w) + b
        p = 1.0 / (1.0 + np.exp(-z))
        g = (p - y) * sw
        gw = xtg(g) / swsum + l2 * w
        gb = g.sum() / swsum
        m = b1 * m + (1 - b1) * gw
        v = b2 * v + (1 - b2) * gw * gw
        w -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        b -= lr * (mb / (1 - b1 ** t)) / (math.sqrt(vb / (1 - b2 ** t)) + eps)
        if t % log_every == 0 or t == iters:
            loss = -np.sum(sw * (y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))) / swsum
            print(f"  iter {t}: loss {loss:.4f}", file=sys.stderr)
    return w, b


def weights(cases, rules):
    """Sample weights: classes balanced; the rules' misses and the rules-passed harmless texts (the
    cases the classifier actually decides) weigh more, tuning cases most (the most realistic); the
    hard negatives and their twins (hard_negatives.py, round 5) are many and alike: they weigh less."""
    y = np.array([1.0 if c["sensitive"] else 0.0 for c in cases])
    sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    sw *= np.array([2.0 if not rules[c["id"]] else 1.0 for c in cases])
    sw *= np.array([3.0 if c.get("src") == "tuning" else 1.0 for c in cases])
    sw *= np.array([HARD_WEIGHT if c.get("src") == "hard" else 1.0 for c in cases])
    return y, sw


def fit(synth, authors, rules, l2=None, tuning_part="all", iters=300, lr=0.02):
    """Trains on the synthetic training split plus the given authors' texts (`tuning_part` "all",
    or "train" for round 5's half); returns (f16-rounded weights as float64, float32 bias)."""
    l2 = L2 if l2 is None else l2
    tr = [c for c in synth if c["split"] == "train"]
    for cases in authors.values():
        for c in cases:
            if tuning_part == "all" or tuning_half(c["id"]) == tuning_part:
                tr.append(dict(c, src="tuning"))
    rows, idx, val = matrix([c["text"] for c in tr])
    y, sw = weights(tr, rules)
    w, b = train(rows, idx, val, y, sw, l2, iters, lr)
    return w.astype(np.float16).astype(np.float64), float(np.float32(b))


def score_q(text, wq, b32):
    """The Rust classifier's probability for `text` (f16 weights, windows, maximum)."""
    return score(text, wq, b32)


def budget_threshold(wq, b32, synth, authors, rules, added_fb=0.025, offset=THRESHOLD_OFFSET):
    """Round 5's threshold: the budget rule on the synthetic held-out split and the authors' held-out
    halves, minus THRESHOLD_OFFSET (for eval comparisons)."""
    ho = [c for c in synth if c["split"] == "heldout"]
    ho += [dict(c, src="tuning") for cases in authors.values() for c in cases if tuning_half(c["id"]) == "heldout"]
    harmless = [c for c in ho if not c["sensitive"]]
    sc = {c["id"]: score(c["text"], wq, b32) for c in harmless}
    sets = [[c for c in harmless if c["src"] != "tuning"], [c for c in harmless if c["src"] == "tuning"]]
    sets = [s for s in sets if s]
    chosen = 0.99
    for t in sorted({round(float(x), 4) for x in np.linspace(0.05, 0.99, 189)}):
        if all(sum(1 for c in s if not rules[c["id"]] and sc[c["id"]] >= t) / len(s) <= added_fb for s in sets):
            chosen = t
            break
    return round(max(0.05, chosen + offset), 4)


GOLDEN_EXTRA = [
    "Call me on +44 7700 900123 after five.",
    "my email is jоhn.dое@gmаil.com (Cyrillic о, е, а)",
    "ｍｙ　ｐｈｏｎｅ　ｉｓ　０７７００　９００１２３",
    "mein handy: 𝟎𝟏𝟕𝟔 𝟏𝟐𝟑𝟒 𝟓𝟔𝟕𝟖",
    "d\u200ba\u200bn\u00adi\u202eel at gmail dot com",
    "tabs\t0161\t496\t2273\x00nul and\r\nnewlines",
    "मेरा नंबर ९८७६५४३२१० है",
    "我的身份证号是１１０１０５１９４９１２３１００２Ｘ，帮我填表。",
    "Cafe\u0301 ÉCOLE İstanbul ΣΟΦΟΣ straße",
    "",
    "   ",
    "What are the early symptoms of measles?",
    ("Quarterly report notes. " * 60) + "My wifi password is Tortilla_2024! and my pin is 4482. " + ("More notes here. " * 40),
]


def write_constants(size, sha):
    import re
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rs = os.path.join(root, "pii", "src", "classifier.rs")
    src = open(rs, encoding="utf-8").read()
    src = re.sub(r'pub const MODEL_SIZE: u64 = [0-9_]+;', f"pub const MODEL_SIZE: u64 = {size:_};", src)
    src = re.sub(r'pub const MODEL_SHA256: &str = "[0-9a-f]{64}";', f'pub const MODEL_SHA256: &str = "{sha}";', src)
    open(rs, "w", encoding="utf-8").write(src)
    cat = os.path.join(root, "models", "catalog.toml")
    text = open(cat, encoding="utf-8").read()
    head, sep, entry = text.partition('[[classifier]]\nid = "pii-clf-v1"')
    if not sep:
        sys.exit("catalog.toml has no pii-clf-v1 entry")
    entry = re.sub(r"\nsize = [0-9]+", f"\nsize = {size}", entry, count=1)
    entry = re.sub(r'\nsha256 = "[0-9a-f]{64}"', f'\nsha256 = "{sha}"', entry, count=1)
    open(cat, "w", encoding="utf-8").write(head + sep + entry)


def pick_threshold(scored, budget):
    """Lowest threshold whose extra false blocks on `scored` (tuples (score, rules_sensitive,
    label)) stay within `budget` of its harmless texts (pooled), clamped to 0.05..0.99."""
    neg = [s for s, r, y in scored if not y]
    if not neg:
        return 0.99
    extra = sorted((s for s, r, y in scored if not y and not r), reverse=True)
    allowed = int(math.floor(budget * len(neg) + 1e-9))
    if len(extra) <= allowed:
        return 0.05
    return float(min(0.99, max(0.05, float(extra[allowed]) + 1e-6)))


def out_of_author_scores(synth, authors, rules, l2=None, reuse=None):
    """Each author's texts scored by a model trained without that author (train_classifier's recipe
    on the synthetic data and the other authors' texts). `reuse`: a loao_cv.py --scores-out file made
    with the same data, rules and recipe (its scores are these)."""
    if reuse:
        with open(reuse, encoding="utf-8") as fh:
            saved = json.load(fh)
        if saved.get("recipe") != "cv" or set(saved["oof"]) != set(authors):
            sys.exit(f"{reuse}: not cv-recipe scores of these authors")
        return saved["oof"]
    oof = {}
    for held in authors:
        print(f"out-of-author scores: training without {held}", file=sys.stderr)
        w, b = fit(synth, {a: v for a, v in authors.items() if a != held}, rules, l2=l2)
        oof[held] = {c["id"]: score(c["text"], w, b) for c in authors[held]}
    return oof


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="make_clf_data.py output")
    ap.add_argument("--rules", required=True, help="gate_check --rules-only output over --data and --tuning")
    ap.add_argument("--tuning", nargs="*", default=[], help="authorA-R JSONL (tuning split only)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--scores", help="write held-out scores here (JSONL)")
    ap.add_argument("--write-constants", action="store_true",
                    help="also write the model's size and sha256 into pii/src/classifier.rs and models/catalog.toml")
    ap.add_argument("--l2", type=float, default=L2)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--threshold", choices=["author-cv", "budget"], default="author-cv",
                    help="author-cv (round 6): from out-of-author scores of the tuning authors; "
                         "budget (round 5): held-out halves, minus --offset")
    ap.add_argument("--cv-budget", type=float, default=CV_BUDGET,
                    help="author-cv: most extra false blocks on the out-of-author harmless texts (pooled)")
    ap.add_argument("--oof-scores", help="author-cv: reuse loao_cv.py --scores-out (same data, rules, recipe)")
    ap.add_argument("--offset", type=float, default=THRESHOLD_OFFSET,
                    help="budget: added to the budget's threshold (round 5: -0.03, see THRESHOLD_OFFSET)")
    ap.add_argument("--cache", help="feature cache file (pickle; read if present, written back): same model, less time")
    ap.add_argument("--added-fb", type=float, default=0.025,
                    help="budget: most extra false blocks the classifier may add on held-out harmless text")
    args = ap.parse_args()
    for p in args.tuning:
        if os.path.basename(p).startswith(("authorS", "authorT", "authorU", "authorV")):
            sys.exit("refusing to read the frozen split")

    if args.cache and os.path.exists(args.cache):
        with open(args.cache, "rb") as fh:
            FEATURES.update(pickle.load(fh))
    known = len(FEATURES)
    synth = load_jsonl(args.data)
    authors = {os.path.basename(p).split(".")[0]: load_jsonl(p) for p in args.tuning}
    rules = {}
    for r in load_jsonl(args.rules):
        rules[r["id"]] = bool(r["rules_sensitive"])
    missing = [c["id"] for c in synth + [c for v in authors.values() for c in v] if c["id"] not in rules]
    if missing:
        sys.exit(f"{len(missing)} cases have no rules verdict (first: {missing[0]})")

    ho = [c for c in synth if c["split"] == "heldout"]
    if args.threshold == "author-cv":
        # Round 6: train on every text of every tuning author; the threshold comes from how the
        # recipe scores authors it was not trained on (cross-validation by author), so the shipped
        # threshold is one that held on unseen authors, not on halves of seen ones.
        print(f"train: synthetic {sum(c['split'] == 'train' for c in synth)}, tuning "
              f"{sum(len(v) for v in authors.values())} (all)", file=sys.stderr)
        oof = out_of_author_scores(synth, authors, rules, l2=args.l2, reuse=args.oof_scores)
        wq, b32 = fit(synth, authors, rules, l2=args.l2, tuning_part="all", iters=args.iters, lr=args.lr)
        pool = [(oof[a][c["id"]], rules[c["id"]], c["sensitive"]) for a in authors for c in authors[a]]
        chosen = pick_threshold(pool, args.cv_budget)
        oof_eval = [dict(c, src="tuning") for a in authors for c in authors[a]]
        sc = {c["id"]: oof[a][c["id"]] for a in authors for c in authors[a]}
    else:
        wq, b32 = fit(synth, authors, rules, l2=args.l2, tuning_part="train", iters=args.iters, lr=args.lr)
        chosen = budget_threshold(wq, b32, synth, authors, rules, args.added_fb, args.offset)
        oof_eval = [dict(c, src="tuning") for v in authors.values() for c in v if tuning_half(c["id"]) == "heldout"]
        sc = {c["id"]: score(c["text"], wq, b32) for c in oof_eval}
    w16 = wq.astype(np.float16)
    b = b32
    sc.update({c["id"]: score(c["text"], wq, b32) for c in ho})
    chosen = round(chosen, 4)
    print(f"threshold {chosen}", file=sys.stderr)
    for name, sub in (("synthetic held-out", ho),
                      ("tuning, out-of-author" if args.threshold == "author-cv" else "tuning held-out half", oof_eval)):
        pos = [c for c in sub if c["sensitive"]]
        neg = [c for c in sub if not c["sensitive"]]
        if not pos or not neg:
            continue
        r_rec = sum(rules[c["id"]] for c in pos) / len(pos)
        g_rec = sum(rules[c["id"]] or sc[c["id"]] >= chosen for c in pos) / len(pos)
        r_fb = sum(rules[c["id"]] for c in neg) / len(neg)
        g_fb = sum(rules[c["id"]] or sc[c["id"]] >= chosen for c in neg) / len(neg)
        print(f"{name}: recall rules {r_rec:.3f} -> gate {g_rec:.3f}; false blocks rules {r_fb:.3f} -> gate {g_fb:.3f}"
              f" ({len(pos)} sensitive, {len(neg)} harmless)", file=sys.stderr)
    if args.scores:
        with open(args.scores, "w", encoding="utf-8") as fh:
            for c in ho + oof_eval:
                fh.write(json.dumps({"id": c["id"], "score": sc[c["id"]]}) + "\n")

    if args.cache and len(FEATURES) > known:
        with open(args.cache + ".tmp", "wb") as fh:
            pickle.dump(FEATURES, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(args.cache + ".tmp", args.cache)

    sha, size = write_model(args.model, w16, b32, float(np.float32(chosen)))
    print(f"model {args.model}: {size} bytes, sha256 {sha}", file=sys.stderr)
    if args.write_constants:
        write_constants(size, sha)

    # Golden file: an independent NumPy pass over held-out synthetic texts plus hand-made hard ones.
    syn_ho = [c["text"] for c in ho if c["src"] != "tuning"]
    texts = syn_ho[:37] + GOLDEN_EXTRA
    bias32 = float(np.float32(b))
    cases = []
    for i, t in enumerate(texts):
        s = normalize(t)
        wins = windows(s)
        entry = {"text": t, "normalized": s, "windows": len(wins), "probability": score(t, wq, bias32)}
        if i % 3 == 0:
            fi, fv = features(wins[0])
            entry["features"] = [[int(a), round(float(v), 7)] for a, v in zip(fi, fv)]
        cases.append(entry)
    os.makedirs(os.path.dirname(args.golden), exist_ok=True)
    with open(args.golden, "w", encoding="utf-8") as fh:
        json.dump({"model_sha256": sha, "tolerance": 1e-6, "cases": cases}, fh, ensure_ascii=False, indent=0)
    print(f"golden {args.golden}: {len(cases)} texts", file=sys.stderr)


if __name__ == "__main__":
    main()
