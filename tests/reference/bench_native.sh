#!/usr/bin/env bash
# Edgewise vs llama.cpp built NATIVELY (llama-bench, cmake Release, GGML_NATIVE=ON, default settings:
# repacked weights on, mmap) from the sources that llama-cpp-python's sdist vendors, on the same GGUF
# and threads, interleaved in one run. Prints a table: prefill tok/s at 128 and 512 tokens, decode
# tok/s for 128 tokens after a 512-token context, peak RSS, with ratios ours / llama.cpp.
#   bash tests/reference/bench_native.sh [threads] [model.gguf ...]
# Several models run one after the other, each with its own table. `--1b` as the model list means
# the 1B-shaped random-weight Q4_K_M files (Llama 3.2 1B, Gemma 3 1B and Qwen 3 0.6B shapes), made
# first if missing by tests/reference/make_arch_goldens.py synth --only llama32-1b-q4km
# gemma3-1b-q4km qwen3-0.6b-q4km.
# Env: BENCH_ROUNDS (interleaved rounds, default 2), LLAMA_NATIVE_DIR (where the sdist is unpacked and built; default ~/.cache/edgewise/reference/
# llama-native), LLAMA_CPP_VERSION (default 0.3.36, the version of the reference venv),
# EDGEWISE_BIN (our binary; default target/release/edgewise, e.g. an older build to compare),
# LLAMA_EXTRA_CMAKE (extra cmake flags; use only to switch off what crashes on a host, e.g.
# -DGGML_AMX_INT8=OFF, and say so beside the ratios).
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${1:-2}
V=${LLAMA_CPP_VERSION:-0.3.36}
D=${LLAMA_NATIVE_DIR:-${EDGEWISE_HOME:-$HOME/.cache/edgewise}/reference/llama-native}
SRC="$D/llama_cpp_python-$V/vendor/llama.cpp"
BENCH="$SRC/build/bin/llama-bench"
if [ ! -x "$BENCH" ]; then
  mkdir -p "$D"
  [ -f "$D/llama_cpp_python-$V.tar.gz" ] || pip download "llama-cpp-python==$V" --no-deps --no-binary :all: -d "$D"
  tar xzf "$D/llama_cpp_python-$V.tar.gz" -C "$D"
  # shellcheck disable=SC2086
  cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMA_EXTRA_CMAKE:-} >/dev/null
  cmake --build "$SRC/build" -j"$(nproc)" --target llama-bench llama-embedding llama-quantize >/dev/null
fi
EW=${EDGEWISE_BIN:-./target/release/edgewise}
[ -x "$EW" ] || cargo build --release --workspace --all-targets
shift $(( $# > 0 ? 1 : 0 ))
MODELS=("$@")
if [ "${MODELS[0]:-}" = --1b ]; then
  SYN=${EDGEWISE_HOME:-$HOME/.cache/edgewise}/reference/synth
  MODELS=()
  for n in llama32-1b-q4km gemma3-1b-q4km qwen3-0.6b-q4km; do
    [ -f "$SYN/$n.gguf" ] || "${EDGEWISE_REFENV:-/opt/refenv}/bin/python" tests/reference/make_arch_goldens.py synth --only "$n" >/dev/null 2>&1
    MODELS+=("$SYN/$n.gguf")
  done
fi
[ ${#MODELS[@]} -gt 0 ] || MODELS=("${EDGEWISE_MODEL:-$($EW models path | tail -1)}")
for MODEL in "${MODELS[@]}"; do
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $MODEL ($(stat -c %s "$MODEL") bytes), threads $T, llama.cpp $V native ($(git -C "$SRC" describe --tags 2>/dev/null || echo vendored)), default settings"
tmp=$(mktemp -d)
ROUNDS=${BENCH_ROUNDS:-2}
for round in $(seq 1 "$ROUNDS"); do
  for P in 128 512; do
    $EW bench --model "$MODEL" --backend cpu --threads "$T" --prompt-tokens "$P" --gen-tokens 128 --json | tail -1 > "$tmp/ours-$P-$round.json"
  done
  # llama-bench: prefill at 128 and 512; decode of 128 tokens at depth 512 (as ours: after a 512 prompt).
  /usr/bin/time -f '%M' -o "$tmp/rss-pp-$round" "$BENCH" -m "$MODEL" -t "$T" -p 128,512 -n 0 -r 3 -o jsonl > "$tmp/ref-pp-$round.jsonl" 2>/dev/null
  /usr/bin/time -f '%M' -o "$tmp/rss-tg-$round" "$BENCH" -m "$MODEL" -t "$T" -p 0 -n 128 -d 512 -r 3 -o jsonl > "$tmp/ref-tg-$round.jsonl" 2>/dev/null
done
python3 - "$tmp" "$ROUNDS" <<'PYEOF'
import json, sys, glob
d = sys.argv[1]
print(f"{'figure':34s} {'edgewise':>10s} {'llama.cpp':>10s} {'ratio':>6s}   (round 1 / round 2)")
for r in range(1, int(sys.argv[2]) + 1):
    ours = {p: json.load(open(f"{d}/ours-{p}-{r}.json")) for p in (128, 512)}
    ref = [json.loads(l) for f in (f"{d}/ref-pp-{r}.jsonl", f"{d}/ref-tg-{r}.jsonl") for l in open(f) if l.strip()]
    pp = {x["n_prompt"]: x["avg_ts"] for x in ref if x["n_gen"] == 0}
    tg = [x["avg_ts"] for x in ref if x["n_gen"] > 0][0]
    rss = max(int(open(f"{d}/rss-{k}-{r}").read().split()[-1]) for k in ("pp", "tg")) / 1024
    rows = [("prefill tok/s, 128-token prompt", ours[128]["prefill_tokens_per_s"], pp[128], True),
            ("prefill tok/s, 512-token prompt", ours[512]["prefill_tokens_per_s"], pp[512], True),
            ("decode tok/s (128 after 512)", ours[512]["decode_tokens_per_s"], tg, True),
            ("peak RSS MiB", ours[512]["peak_rss_mb"], rss, False)]
    print(f"round {r}")
    for name, a, b, _ in rows:
        print(f"  {name:32s} {a:10.1f} {b:10.1f} {a / b:6.2f}")
PYEOF
rm -rf "$tmp"
done
