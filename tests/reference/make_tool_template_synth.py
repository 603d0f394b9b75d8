#!/usr/bin/env python3
"""Copies of the synthesized llama / qwen2 / qwen3 GGUFs with their family's real chat template.

    /opt/refenv/bin/python tests/reference/make_tool_template_synth.py

The synthesized models (`make_arch_goldens.py synth`) carry no chat template (llama) or a plain
ChatML one without tools (qwen2, qwen3). For the tool-calling tests (core/tests/tool_families.rs)
this writes `$EDGEWISE_HOME/reference/synth/{llama32,qwen25,qwen3}-tools.gguf`: the same tensors and
tokenizer, with `tokenizer.chat_template` set to `tests/golden/chat_templates/` Llama 3.2 Instruct,
Qwen 2.5 Instruct and Qwen 3 templates (sources in SOURCES.md there), using gguf-py's own
`gguf_new_metadata.py` (the gguf package in the reference venv). Deterministic: same inputs, same bytes.
"""
import os
import subprocess
import sys

import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "tests", "golden", "chat_templates")
HOME = os.environ.get("EDGEWISE_HOME", os.path.expanduser("~/.cache/edgewise"))
SYNTH = os.path.join(HOME, "reference", "synth")

COPIES = [
    ("llama.gguf", "llama-3.2-instruct.jinja", "llama32-tools.gguf"),
    ("qwen2.gguf", "qwen2.5-instruct.jinja", "qwen25-tools.gguf"),
    ("qwen3.gguf", "qwen3.jinja", "qwen3-tools.gguf"),
]


def main():
    script = os.path.join(os.path.dirname(gguf.__file__), "scripts", "gguf_new_metadata.py")
    for src, template, out in COPIES:
        src_path = os.path.join(SYNTH, src)
        if not os.path.exists(src_path):
            sys.exit(f"{src_path} is missing: run tests/reference/make_arch_goldens.py synth first")
        out_path = os.path.join(SYNTH, out)
        subprocess.run(
            [sys.executable, script, "--force", "--chat-template-file", os.path.join(TEMPLATES, template), src_path, out_path + ".tmp"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.replace(out_path + ".tmp", out_path)
        print(f"{out} <- {src} + {template}")


if __name__ == "__main__":
    main()
