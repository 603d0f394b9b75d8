#!/usr/bin/env bash
# Edgewise vs llama.cpp (llama-cpp-python) on the same GGUF, same threads, one after the other in one
# run, at prompt lengths 128 and 512. Prints every JSON line, a table of each figure with the ratio
# ours/llama.cpp (higher is better for speeds, lower for times and RSS), the memory bandwidth measured
# here with the same number of threads, and the decode bound it implies (bandwidth / model bytes:
# each decoded token reads every weight once, the tied embedding as the LM head).
#   bash tests/reference/bench_compare.sh [threads] [gen_tokens] [backend]
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-2}; G=${2:-128}; B=${3:-cpu}
PY=${PYTHON:-/opt/refenv/bin/python}
cargo build --release -q --workspace --all-targets
MODEL=${EDGEWISE_MODEL:-$(./target/release/edgewise models path | tail -1)}
out=$(mktemp)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out"
for P in 128 512; do
  ours=$(./target/release/edgewise bench --model "$MODEL" --backend "$B" --threads "$T" --prompt-tokens "$P" --gen-tokens "$G" --json | tail -1)
  ref=$(EDGEWISE_MODEL="$MODEL" "$PY" tests/reference/bench_llama.py --threads "$T" --prompt-tokens "$P" --gen-tokens "$G" 2>/dev/null | tail -1)
  echo "edgewise  p$P: $ours"
  echo "llama.cpp p$P: $ref"
  echo "$P|$ours|$ref" >> "$out"
done
"$PY" - "$out" "$T" <<'PYEOF'
import json, sys, threading, time
import numpy as np
lines = open(sys.argv[1]).read().splitlines()
threads = int(sys.argv[2])
print(lines[0])
rows = [l.split("|", 2) for l in lines[1:]]
print(f"{'figure':28s} {'edgewise':>10s} {'llama.cpp':>10s} {'ratio':>7s}")
for p, a, b in rows:
    a, b = json.loads(a), json.loads(b)
    keys = ["prefill_tokens_per_s", "ttft_ms"] + (["decode_tokens_per_s", "peak_rss_mb", "load_ms"] if p == rows[-1][0] else [])
    for k in keys:
        x, y = a.get(k), b.get(k)
        if x and y:
            print(f"{k + ' (p' + p + ')':28s} {x:10.1f} {y:10.1f} {x / y:7.2f}")
# Read bandwidth with `threads` threads (numpy sums release the GIL), best of 5.
bufs = [np.ones(64 * 1024 * 1024 // 8 * 4, dtype=np.float64) for _ in range(threads)]  # 256 MiB each
best = 0.0
for _ in range(5):
    ts = [threading.Thread(target=b.sum) for b in bufs]
    t0 = time.perf_counter()
    [t.start() for t in ts]
    [t.join() for t in ts]
    dt = time.perf_counter() - t0
    best = max(best, sum(b.nbytes for b in bufs) / dt / 1e9)
last = json.loads(rows[-1][1])
model_gb = last.get("model_bytes", 0) / 1e9
if model_gb:
    bound = best / model_gb
    ours = last["decode_tokens_per_s"]
    ref = json.loads(rows[-1][2])["decode_tokens_per_s"]
    print(f"read bandwidth {best:.1f} GB/s ({threads} threads) / {model_gb * 1e3:.0f} MB per token = decode bound {bound:.0f} tok/s;"
          f" edgewise {100 * ours / bound:.0f}%, llama.cpp {100 * ref / bound:.0f}% of it")
PYEOF
rm -f "$out"
