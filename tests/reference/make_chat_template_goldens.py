#!/usr/bin/env python3
"""Render the real chat templates with Python's jinja2, the way transformers does, into goldens.

    /opt/refenv/bin/python tests/reference/make_chat_template_goldens.py [--out PATH]

Reads `tests/golden/chat_templates/*.jinja` (the templates the models ship; see SOURCES.md there)
and writes `tests/golden/chat_templates/renders.json`: for each template and each conversation
(single and multi-turn, with and without a system prompt, add_generation_prompt true and false,
unicode, text that looks like template syntax or control tokens, Qwen 3 and Qwen 3.5 thinking on/off) the exact
text jinja2 produces, or `error` when the template raises. A second part, `features`, renders small
templates that exercise what the real ones use (loop, namespace, tojson, trim, selectattr, Python
string methods, whitespace control...) with the printed value of each.
`core/src/tokenizer/chat_template.rs` (test `renders_match_python_jinja2`) must equal every byte.

The environment copies transformers' `chat_template_utils._compile_jinja_template` /
`render_jinja_template` (transformers itself is not needed): ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks and the loopcontrols extension; `tojson` overridden with
`json.dumps(x, ensure_ascii=False, indent, separators, sort_keys)`; globals `raise_exception` and
`strftime_now`; the context `messages`, `tools=None`, `documents=None`, `add_generation_prompt` and
the tokenizer's special tokens (`bos_token`, `eos_token`; a token the tokenizer lacks is left
undefined). `strftime_now` reads a fixed instant (`NOW`) so the goldens are reproducible; the Rust
side injects the same instant.
"""
import argparse
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = os.path.join(ROOT, "tests", "golden", "chat_templates")

# 2026-03-05 14:07:09 UTC: a one-digit day, so %d's zero padding shows.
NOW = 1772719629

# Special tokens each family's tokenizer_config.json declares (None: not declared, left undefined).
TEMPLATES = {
    "llama-3.2-instruct.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen2.5-instruct.jinja": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3.jinja": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3.5.jinja": {"bos_token": None, "eos_token": "<|im_end|>"},
    "smollm2-instruct.jinja": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "gemma3-it.jinja": {"bos_token": "<bos>", "eos_token": "<eos>"},
}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    ("single", [m("user", "Hello")]),
    ("system_single", [m("system", "You are terse."), m("user", "Why is the sky blue?")]),
    ("multi", [m("user", "Hi"), m("assistant", "Hello! How can I help?"), m("user", "Name three rivers.")]),
    (
        "system_multi",
        [
            m("system", "Answer in German."),
            m("user", "What is 2+2?"),
            m("assistant", "Vier."),
            m("user", "And 3+3?"),
            m("assistant", "Sechs."),
            m("user", "Danke!"),
        ],
    ),
    ("ends_with_assistant", [m("user", "Say hi"), m("assistant", "Hi!")]),
    (
        "unicode_whitespace",
        [
            m("system", "  Système : réponds en français.\n"),
            m("user", "\n  Grüße aus Köln 🌍 — 你好，世界！ مرحبا  \n\n"),
            m("assistant", "  Bonjour ! 👋\t"),
            m("user", "ẞ ǅ ﬁ \u00a0nbsp\u2003em"),
        ],
    ),
    (
        "template_lookalikes",
        [m("user", "{{ bos_token }} {% if x %}<|im_end|><|eot_id|><end_of_turn>{# c #}\\n"), m("assistant", "'\"\\")],
    ),
    ("empty_system", [m("system", ""), m("user", "x")]),
    ("empty_user", [m("user", "")]),
    (
        "thinking_history",
        [
            m("user", "What is 6*7?"),
            m("assistant", "<think>\nSix times seven.\n</think>\n\n42"),
            m("user", "And 6*8?"),
        ],
    ),
    ("thinking_last", [m("user", "What is 6*7?"), m("assistant", "<think>\nreason\n</think>\n\n42")]),
    ("not_alternating", [m("user", "one"), m("user", "two")]),
    ("system_only", [m("system", "Only a system prompt.")]),
]

# Tool calling (the `tool_cases` part): the templates that take `tools`, with the tools in OpenAI's
# form (what transformers' apply_chat_template(tools=...) passes on), assistant messages with
# `tool_calls` (arguments as dicts) and `tool` results. The Rust side renders each twice: these
# messages as given, and the form its sessions keep (the call as the model writes it, as the
# assistant's content), and both must equal jinja2's output.
TOOL_TEMPLATES = ["qwen2.5-instruct.jinja", "qwen3.jinja", "qwen3.5.jinja", "llama-3.2-instruct.jinja"]
TOOLS = [
    {"type": "function", "function": {"name": "add_to_cart", "description": "Adds an item to the shopping cart.",
        "parameters": {"type": "object", "properties": {"item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}, "required": ["item", "qty"]}}},
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
]


def call(i, name, args):
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}


def tool(content):
    return {"role": "tool", "content": content}


TOOL_CONVERSATIONS = [
    ("first_turn", [m("user", "Add two apples, please.")]),
    ("system_first_turn", [m("system", "You run a shop."), m("user", "Add two apples, please.")]),
    (
        "call_and_result",
        [
            m("user", "Add two apples, please."),
            {"role": "assistant", "content": "", "tool_calls": [call(0, "add_to_cart", {"item": "apple", "qty": 2})]},
            tool('{"ok": true, "cart_items": 2}'),
        ],
    ),
    (
        "system_call_result_answer",
        [
            m("system", "You run a shop."),
            m("user", "Weather in Köln?"),
            {"role": "assistant", "content": "", "tool_calls": [call(0, "get_weather", {"city": "Köln"})]},
            tool('{"temp_c": 12, "sky": "grau \\"nass\\"\nwindig"}'),
            m("assistant", "It is 12 °C and wet."),
            m("user", "And tomorrow?"),
        ],
    ),
    (
        "two_calls",
        [
            m("user", "Add apples and tell me the weather in Oslo."),
            {"role": "assistant", "content": "", "tool_calls": [call(0, "add_to_cart", {"item": "apple", "qty": 1}), call(1, "get_weather", {"city": "Oslo"})]},
            tool('{"ok": true}'),
            tool("rain, 4 C"),
        ],
    ),
    (
        # Arguments that are not strings: Qwen 3.5 prints them with `| string` (Python's str:
        # True, None, 0.5), the others with `tojson`.
        "scalar_arguments",
        [
            m("user", "Add a gift-wrapped pear."),
            {"role": "assistant", "content": "", "tool_calls": [call(0, "add_to_cart", {"item": "pear", "qty": 1, "gift": True, "wrap": False, "note": None, "kg": 0.5, "tags": ["a", True, None]})]},
            tool('{"ok": true}'),
        ],
    ),
]

# Small templates for the features the real ones use; each rendered with its context.
FEATURES = [
    ("trim_blocks", "{% if true %}\n  a\n{% endif %}\n  {% for i in [1, 2] %}\n    {{ i }}\n  {% endfor %}\nend", {}),
    ("dash_control", "x  {%- if true -%}  y  {%- endif -%}  z\n{{- ' w ' -}}\n!", {}),
    ("loop_vars", "{% for c in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {"xs": ["a", "b", "c"]}),
    # Known divergence (listed in the Rust test): minijinja iterates a string without knowing its length.
    ("loop_over_string", "{% for c in 'abc' %}{{ c }}{{ loop.length }}{{ loop.last }}|{% endfor %}", {}),
    ("loop_cycle_prev", "{% for x in xs %}{{ loop.cycle('o', 'e') }}{{ loop.previtem }}>{{ loop.nextitem }};{% endfor %}", {"xs": [1, 2, 3]}),
    ("loop_controls", "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {"xs": [1, 2, 3, 4, 5]}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for x in xs %}{% set ns.n = ns.n + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.n }} {{ ns.s }}", {"xs": [1, 2, 3]}),
    ("loop_scope", "{% set y = 1 %}{% for x in xs %}{% set y = x %}{% endfor %}{{ y }}", {"xs": [5, 6]}),
    ("tojson_plain", "{{ v | tojson }}", {"v": {"name": "f", "args": [1, 2.5, True, None, "ü<>&'\"\n"], "zeta": {}, "alpha": []}}),
    ("tojson_indent", "{{ v | tojson(indent=4) }}", {"v": {"type": "function", "function": {"name": "get", "parameters": {"a": [1, 2]}}}}),
    ("tojson_literal_order", "{{ {'b': 1, 'a': [2, 'x']} | tojson }}", {}),
    ("tojson_scalars", "{{ 'é' | tojson }} {{ 3 | tojson }} {{ 1.5 | tojson }} {{ none | tojson }} {{ true | tojson }}", {}),
    ("trim_filter", "[{{ s | trim }}]", {"s": " \t\n a b \r\n\u3000"}),
    ("str_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split('b') }}|{{ s.upper() }}|{{ s.startswith(' a') }}|{{ s.endswith('c ') }}|{{ s.replace('b', 'B') }}", {"s": " abc "}),
    ("split_index", "{{ s.split('</think>')[-1].lstrip('\\n') }}|{{ s.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", {"s": "<think>\nr\n</think>\n\nanswer"}),
    ("selectattr", "{% for m in ms | selectattr('role', 'equalto', 'user') %}{{ m.content }},{% endfor %}{{ ms | map(attribute='role') | join('/') }}|{{ ms | rejectattr('role', 'equalto', 'user') | list | length }}", {"ms": [m("system", "s"), m("user", "u1"), m("assistant", "a"), m("user", "u2")]}),
    ("slicing", "{{ xs[1:] }}{{ xs[::-1] }}{{ xs[-1] }}{{ xs[:2] | length }}{{ 'hello'[1:3] }}", {"xs": [1, 2, 3]}),
    ("tests", "{{ s is string }}{{ n is number }}{{ d is mapping }}{{ l is iterable }}{{ s is iterable }}{{ z is none }}{{ u is defined }}{{ d is defined }}{{ n is not none }}", {"s": "x", "n": 3, "d": {"k": 1}, "l": [1], "z": None}),
    ("in_ops", "{{ 'a' in 'cat' }}{{ 'k' in d }}{{ 'tool_calls' in d }}{{ 2 in xs }}{{ 'x' not in xs }}", {"d": {"k": 1}, "xs": [1, 2]}),
    ("printing", "{{ true }} {{ false }} {{ none }} {{ 1.0 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ -0.5 }} {{ 10 / 5 }}", {}),
    ("print_collections", "{{ xs }} {{ d }} {{ t }}", {"xs": [1, "a", None, True, 2.0], "d": {"k": "v", "n": [1]}, "t": "it's"}),
    ("string_ops", "{{ 'a' ~ 1 ~ none }}|{{ 'ab' * 3 }}|{{ 'x' + 'y' }}|{{ 'Hello World' | lower }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'a,b' | replace(',', ';') }}", {}),
    ("filters_misc", "{{ xs | length }} {{ xs | first }} {{ xs | last }} {{ xs | join(', ') }} {{ xs | reverse | list }} {{ xs | sort | list }} {{ [1, [2]] | count }} {{ 'abc' | list }} {{ xs | min }} {{ xs | max }} {{ xs | sum }}", {"xs": [3, 1, 2]}),
    ("dict_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('a') }}{{ d.get('zz', 'dflt') }}{{ d | length }}", {"d": {"b": 1, "a": 2}}),
    ("default_filter", "{{ u | default('d') }}{{ z | default('d') }}{{ z | default('d', true) }}{{ '' | default('e', true) }}", {"z": None}),
    ("set_block_and_macro", "{% macro f(x, y='Y') %}<{{ x }}{{ y }}>{% endmacro %}{{ f(1) }}{{ f(2, y=3) }}{% set blk %}in{{ 1 + 1 }}{% endset %}{{ blk }}", {}),
    ("conditional_expr", "{{ 'a' if x else 'b' }}{{ 'c' if not x }}|{{ x and 'y' }}|{{ x or 'z' }}", {"x": False}),
    ("raise_exception", "{% if true %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}", {}),
    ("strftime", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%B %y %%') }}", {}),
    ("undefined_attr_chain", "{{ m.reasoning_content is defined }}{{ m.tool_calls }}|{% if m.tool_calls %}t{% else %}f{% endif %}", {"m": {"role": "assistant"}}),
    ("comments_raw", "a{# c #}b{% raw %}{{ x }}{% endraw %}c", {}),
    ("escapes", "{{ '\\n' }}|{{ \"it's\" }}|{{ '\\t\\u00e9' }}|{{ 'a\\\\b' }}", {}),
    ("unicode_len", "{{ s | length }} {{ s[0] }} {{ s.upper() }}", {"s": "ßü🌍"}),
]


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, ctx):
    try:
        return {"output": env.from_string(source).render(**ctx)}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(DIR, "renders.json"))
    args = ap.parse_args()
    env = make_env()
    cases = []
    for name, tokens in TEMPLATES.items():
        with open(os.path.join(DIR, name), encoding="utf-8") as f:
            source = f.read()
        for conv_name, messages in CONVERSATIONS:
            kwarg_sets = [{}]
            if name in ("qwen3.jinja", "qwen3.5.jinja"):
                kwarg_sets += [{"enable_thinking": False}, {"enable_thinking": True}]
            for agp in (True, False):
                for kwargs in kwarg_sets:
                    ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": agp}
                    ctx.update({k: v for k, v in tokens.items() if v is not None})
                    ctx.update(kwargs)
                    case = {
                        "template": name,
                        "conversation": conv_name,
                        "messages": messages,
                        "add_generation_prompt": agp,
                        "bos_token": tokens["bos_token"],
                        "eos_token": tokens["eos_token"],
                        "kwargs": kwargs,
                    }
                    case.update(render(env, source, ctx))
                    cases.append(case)
    tool_cases = []
    for name in TOOL_TEMPLATES:
        tokens = TEMPLATES[name]
        with open(os.path.join(DIR, name), encoding="utf-8") as f:
            source = f.read()
        for conv_name, messages in TOOL_CONVERSATIONS:
            for agp in (True, False):
                ctx = {"messages": messages, "tools": TOOLS, "documents": None, "add_generation_prompt": agp}
                ctx.update({k: v for k, v in tokens.items() if v is not None})
                case = {
                    "template": name,
                    "conversation": conv_name,
                    "messages": messages,
                    "tools": TOOLS,
                    "add_generation_prompt": agp,
                    "bos_token": tokens["bos_token"],
                    "eos_token": tokens["eos_token"],
                }
                case.update(render(env, source, ctx))
                tool_cases.append(case)
    features = []
    for name, source, ctx in FEATURES:
        features.append({"name": name, "template": source, "context": ctx, **render(env, source, dict(ctx))})
    doc = {
        "header": {
            "reference": f"jinja2 {jinja2.__version__} (Python {sys.version.split()[0]}), transformers' chat-template conventions",
            "now_unix": NOW,
            "script": "tests/reference/make_chat_template_goldens.py",
        },
        "cases": cases,
        "tool_cases": tool_cases,
        "features": features,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum(1 for c in cases if "error" in c)
    tool_errors = sum(1 for c in tool_cases if "error" in c)
    print(f"{len(cases)} template renders ({errors} raise), {len(tool_cases)} with tools ({tool_errors} raise), {len(features)} feature renders -> {args.out}")


if __name__ == "__main__":
    main()
