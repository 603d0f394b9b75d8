#!/usr/bin/env bash
# Ours vs llama.cpp embedding throughput on the same MiniLM GGUF, 2 threads, batches of 32, 16- and
# 128-token texts (the same word sequences), interleaved, twice. Run on a quiet machine.
#
#   bash tests/reference/bench_embed_gguf.sh [f32|f16|q8_0] [threads]     (default f32, 2 threads)
#
# Each JSON line also has `single_text_ms` (median of 21 one-text calls) and `single_text_cpu_ms`
# (the process's CPU time per one-text call, all threads) for the 16- and 128-token texts.
#
# Needs target/release/edgewise, /opt/refenv (llama-cpp-python 0.3.36) and the GGUF made by
# tests/reference/minilm_to_gguf.py (the .ci/run refenv phase makes all three).
set -euo pipefail
ty="${1:-f32}"
threads="${2:-2}"
home="${EDGEWISE_HOME:-$HOME/.cache/edgewise}"
g="$home/reference/minilm-gguf/minilm-$ty.gguf"
py="${EDGEWISE_REFENV:-/opt/refenv}/bin/python"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[[ -f "$g" ]] || "$py" "$root/tests/reference/minilm_to_gguf.py" "$home/models/all-minilm-l6-v2" "$g" "$ty" >/dev/null
for run in 1 2; do
  echo "run $run, $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$py" "$root/tests/reference/bench_embed_llama.py" --model "$g" --threads "$threads" --batch 32 --seconds 4
  "$root/target/release/edgewise" embed --model "$g" --bench --threads "$threads" --batch 32 --seconds 4 --json | tail -1
done
