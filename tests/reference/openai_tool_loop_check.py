#!/usr/bin/env python3
"""A two-step tool loop against an OpenAI-compatible server, with the official `openai` client.

    /opt/refenv/bin/python tests/reference/openai_tool_loop_check.py \
        --base-url http://127.0.0.1:8080/v1 --api-key KEY --result '{"status": "shipped"}'

For each of non-streaming and streaming: ask with `tools` (auto), expect `finish_reason:
tool_calls` with at least one call of a known tool whose arguments are a JSON object; send the
assistant message with its `tool_calls` back, then one `tool` message per call (`tool_call_id`,
content = --result); expect a text answer (`finish_reason: stop`, no calls). Prints one JSON line
`{"ok": true, "calls": [...], "answers": [...]}`; exits 1 on a failed check.

Used by core/tests/router_serve.rs (which also checks what the server's model or cloud received).
"""
import argparse
import json
import sys

from openai import OpenAI

from serve_structured_check import stream_collect  # the same chunk merging, one copy

TOOLS = [
    {"type": "function", "function": {
        "name": "lookup_order", "description": "Looks up a shop order by its number.",
        "parameters": {"type": "object", "properties": {"order": {"type": "integer"}},
                       "required": ["order"], "additionalProperties": False}}},
]


def collect(stream):
    """Content, calls (merged by index) and the finish reason of a streamed answer."""
    return stream_collect(stream)[:3]


def ask(client, model, messages, stream):
    """(content, [{id, name, arguments}], finish_reason) of one request."""
    kw = dict(model=model, messages=messages, tools=TOOLS, tool_choice="auto", max_tokens=64)
    if stream:
        return collect(client.chat.completions.create(stream=True, **kw))
    r = client.chat.completions.create(**kw)
    m = r.choices[0].message
    calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in m.tool_calls or []]
    return m.content or "", calls, r.choices[0].finish_reason


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("--result", required=True, help="the fake tool's result, sent back for each call")
    a = ap.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    out = {"ok": False, "calls": [], "answers": []}
    for stream in (False, True):
        convo = [{"role": "user", "content": "Where is my order 1042?"}]
        text, calls, finish = ask(client, model, convo, stream)
        assert finish == "tool_calls" and calls, f"stream={stream}: expected calls, got {finish!r}"
        for c in calls:
            assert c["id"] and c["name"] == "lookup_order", c
            assert isinstance(json.loads(c["arguments"]), dict), c
        convo.append({"role": "assistant", "content": text or None, "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]})
        for c in calls:
            convo.append({"role": "tool", "tool_call_id": c["id"], "content": a.result})
        text, calls2, finish = ask(client, model, convo, stream)
        assert finish == "stop" and not calls2 and text, f"stream={stream}: expected a text answer, got {finish!r} {calls2}"
        out["calls"].append(calls)
        out["answers"].append(text)
    out["ok"] = True
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
