#!/usr/bin/env python3
"""llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), the independent
server our cloud client and router are checked against (core/tests/router_engine.rs).

Same arguments as `python -m llama_cpp.server`, e.g.
    /opt/refenv/bin/python tests/reference/llama_server.py --model gemma-3-270m-q4_k_m.gguf \
        --host 127.0.0.1 --port 8090 --n_ctx 1024

One change from the stock server, as in make_llama_goldens.py: ggml's "extra buffer types" (weight
repacking and, on CPUs that report AMX, the AMX matmul) are turned off, because on our VMs (which
report AMX-INT8) the AMX kernel dies with SIGSEGV at its first `ldtilecfg` and the stock server
crashes on its first completion. `Llama()` has no switch for it, so `llama_model_default_params` is
wrapped. Set EDGEWISE_LLAMA_EXTRA_BUFTS=1 to keep ggml's default where AMX works.
"""
import os
import sys

import llama_cpp.llama_cpp as llama_cpp_c

_default_model_params = llama_cpp_c.llama_model_default_params


def _model_params():
    p = _default_model_params()
    p.use_extra_bufts = os.environ.get("EDGEWISE_LLAMA_EXTRA_BUFTS") == "1"
    return p


llama_cpp_c.llama_model_default_params = _model_params

from llama_cpp.server.__main__ import main  # noqa: E402  (after the patch, on purpose)

if __name__ == "__main__":
    sys.exit(main())
