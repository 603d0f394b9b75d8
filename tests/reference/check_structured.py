#!/usr/bin/env python3
"""Independent check of constrained outputs (core/tests/structured_real.rs writes the input).

Input: a JSON file {"json": [{"name", "schema", "text"}], "regex": [{"pattern", "text"}],
"lark": [{"grammar", "text"}]}. Each JSON text must parse and validate against its schema with
Python `jsonschema` (Draft 2020-12, formats checked); each regex text must `re.fullmatch` its
pattern; each grammar text must parse with `lark` (Earley). Prints one line per failure and a
summary; exits 1 on any failure.

Needs: pip install jsonschema rfc3339-validator lark
"""
import json
import re
import sys

import jsonschema
import lark


def main() -> int:
    data = json.load(open(sys.argv[1], encoding="utf-8"))
    failures = []
    checker = jsonschema.FormatChecker()
    for case in data.get("json", []):
        try:
            value = json.loads(case["text"])
        except json.JSONDecodeError as e:
            failures.append(f"json {case['name']}: does not parse ({e}): {case['text']!r}")
            continue
        validator = jsonschema.Draft202012Validator(case["schema"], format_checker=checker)
        errors = list(validator.iter_errors(value))
        if errors:
            failures.append(f"json {case['name']}: invalid ({errors[0].message}): {case['text']!r}")
    for case in data.get("regex", []):
        if re.fullmatch(case["pattern"], case["text"]) is None:
            failures.append(f"regex {case['pattern']!r}: no full match: {case['text']!r}")
    for case in data.get("lark", []):
        try:
            lark.Lark(case["grammar"], start="start").parse(case["text"])
        except lark.exceptions.LarkError as e:
            failures.append(f"lark: does not parse ({type(e).__name__}): {case['text']!r}")
    for f in failures:
        print(f)
    n = sum(len(data.get(k, [])) for k in ("json", "regex", "lark"))
    print(f"checked {n} outputs ({len(data.get('json', []))} json, {len(data.get('regex', []))} regex, "
          f"{len(data.get('lark', []))} lark): {n - len(failures)} ok, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
