#!/usr/bin/env python3
"""Checks an OpenAI-compatible server (`edgewise serve`) with the official `openai` Python client.

Run with the reference venv:
    /opt/refenv/bin/pip install openai
    /opt/refenv/bin/python tests/reference/openai_client_check.py \
        --base-url http://127.0.0.1:8080/v1 --prompt "hi" [--expect "exact answer"] [--api-key KEY]

It lists models, asks for a non-streaming and a streaming chat completion (with
`stream_options.include_usage`), and checks that both parse with the client's own pydantic models,
that both answers are identical (and equal `--expect` when given), that the stream arrived in
several chunks and ended with a finish reason, and that usage is reported. Prints one JSON summary
line; exits non-zero on any failure. core/tests/router_serve.rs runs it against a fake model.
"""
import argparse
import json
import sys

import openai
from openai import OpenAI


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--expect", default=None)
    a = ap.parse_args()

    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=60)
    ids = [m.id for m in client.models.list().data]
    assert ids, "no models listed"
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": a.prompt},
    ]

    full = client.chat.completions.create(model=ids[0], messages=messages)
    text = full.choices[0].message.content
    assert full.object == "chat.completion", full.object
    assert full.choices[0].message.role == "assistant"
    assert full.choices[0].finish_reason in ("stop", "length"), full.choices[0].finish_reason
    assert full.usage is not None and full.usage.completion_tokens > 0

    pieces, finish, usage = [], None, None
    stream = client.chat.completions.create(
        model=ids[0], messages=messages, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk.object
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(pieces)

    assert streamed == text, f"stream and non-stream differ: {streamed!r} vs {text!r}"
    if a.expect is not None:
        assert text == a.expect, f"unexpected answer: {text!r} != {a.expect!r}"
    assert len(pieces) > 1, "stream arrived in one piece"
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens

    print(json.dumps({
        "ok": True,
        "openai_version": openai.__version__,
        "models": ids,
        "stream_pieces": len(pieces),
        "completion_tokens": full.usage.completion_tokens,
    }))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
