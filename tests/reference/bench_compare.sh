#!/usr/bin/env bash
# Edgewise vs llama.cpp (llama-cpp-python) on the same GGUF, same threads, one after the other in one
# run. Prints both JSON lines and the ratios ours/llama.cpp (higher is better for speeds, lower for
# RSS and load time).
#   bash tests/reference/bench_compare.sh [threads] [prompt_tokens] [gen_tokens]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-2}; P=${2:-512}; G=${3:-128}
PY=${PYTHON:-/opt/refenv/bin/python}
MODEL=${EDGEWISE_MODEL:-$(cargo run --release -q -p edgewise-core --bin edgewise -- models path | tail -1)}
cargo build --release -q -p edgewise-core --bin edgewise
ours=$(./target/release/edgewise bench --model "$MODEL" --backend cpu --threads "$T" --prompt-tokens "$P" --gen-tokens "$G" --json | tail -1)
ref=$(EDGEWISE_MODEL="$MODEL" "$PY" tests/reference/bench_llama.py --threads "$T" --prompt-tokens "$P" --gen-tokens "$G" | tail -1)
echo "edgewise:  $ours"
echo "llama.cpp: $ref"
"$PY" - "$ours" "$ref" <<'PYEOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ["prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "peak_rss_mb", "load_ms"]:
    x, y = a.get(k), b.get(k)
    if x and y:
        print(f"{k:22s} edgewise {x:10.1f}   llama.cpp {y:10.1f}   ratio {x / y:6.2f}")
PYEOF
