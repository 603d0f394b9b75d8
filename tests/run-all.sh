#!/usr/bin/env bash
# Every test of the project. Needs the default model fetched (`edgewise models fetch`).
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEWISE_REQUIRE_MODEL="${EDGEWISE_REQUIRE_MODEL:-1}"
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "cargo fmt --check (rustfmt.toml)"
cargo fmt --all --check

step "cargo test (workspace, release)"
cargo test --release --workspace

# The aarch64 NEON kernels on real NEON instructions (qemu user mode), against the emulation the
# unit tests above already checked against the portable path.
if command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null; then
  step "NEON kernels for aarch64 under qemu"
  bash tests/neon/run.sh
elif [ "${EDGEWISE_REQUIRE_NEON:-0}" = 1 ]; then
  echo "qemu-aarch64 / aarch64-linux-gnu-gcc missing (apt: qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2
  exit 1
else
  echo "SKIPPED: NEON kernels under qemu (install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2
fi

# `edgewise serve` with response_format / tools, through the official openai client (the binary
# that `cargo test` just built; jsonschema + openai from the reference venv, see .ci/run).
step "serve: structured output and tool calls (openai client)"
"${EDGEWISE_REFENV:-/opt/refenv}/bin/python" tests/reference/serve_structured_check.py --edgewise target/release/edgewise

step "packaging consistency (Gradle wrapper, ABIs vs JNA, keep rules, iOS manifest)"
bash android/scripts/check-packaging.sh

if [ -x android/jvm-tests/run.sh ]; then
  step "Kotlin bindings: freshness check + JUnit on the JVM"
  bash android/jvm-tests/run.sh
fi

# The wgpu path on the Vulkan device (lavapipe in CI: slow, ~80 s per golden case on 2 cores, so CI
# runs the first EDGEWISE_GPU_CASES; the full suite runs when a real GPU is present).
if [ "${EDGEWISE_SKIP_GPU:-0}" != 1 ]; then
  step "wgpu golden tests (EDGEWISE_GPU_CASES=${EDGEWISE_GPU_CASES:=4})"
  # Same feature set as every other cargo step (no `-p`/`--features`: those rebuild burn and wgpu);
  # EDGEWISE_GPU_TESTS=1 turns the wgpu cases on.
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_CASES=$EDGEWISE_GPU_CASES cargo test --release --workspace --test engine_golden -- --test-threads 1 gpu_
  # A session file saved on the GPU restores there with the same tokens, and on the CPU (~110 s on lavapipe).
  EDGEWISE_GPU_TESTS=1 cargo test --release --workspace --test session_file -- gpu_
  # Constrained decoding on the GPU path (logits read back, masked on the host): the first schema
  # of the suite, both prompts, greedy and seeded, checked by Python jsonschema (~60-90 s on lavapipe).
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_STRUCTURED_CASES=${EDGEWISE_GPU_STRUCTURED_CASES:-1} cargo test --release --workspace --test structured_real -- gpu_
  step "wgpu: the llama/qwen2/qwen3 goldens (EDGEWISE_GPU_ARCH_CASES=${EDGEWISE_GPU_ARCH_CASES:=1} per file, ~45 s each on lavapipe)"
  # Gemma 3 1B's shapes on lavapipe take ~18 min a whole case on 2 busy cores: not here (README, "Gemma 3
  # 1B shapes": EDGEWISE_GPU_TESTS=1 cargo test --release --workspace --test arch_golden -- gpu_gemma3_1b_q4).
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_ARCH_CASES=$EDGEWISE_GPU_ARCH_CASES cargo test --release --workspace --test arch_golden -- --test-threads 1 gpu_ --skip gemma3_1b
  step "wgpu: Gemma 3 1B's shapes, the first prompt's logits and 4 tokens (the sharded 262144 x 1152 embedding, the 5:1 sliding/global pattern)"
  EDGEWISE_GPU_TESTS=1 cargo test --release --workspace --test arch_golden -- gpu_gemma3_1b_short
  # Case 2, where wgpu parts from llama.cpp at a gap of 0.31: its 12 steps' logits (all 262144) on
  # wgpu within 1e-3 of an exact f64 NumPy forward that picks the same token there (~2 min).
  step "wgpu: Gemma 3 1B case 2 against the exact f64 reference (tests/reference/check_gemma3_1b_f64.py)"
  "${EDGEWISE_REFENV:-/opt/refenv}/bin/python" tests/reference/check_gemma3_1b_f64.py --cases 2 --steps 12 \
    --dump target/release/examples/dump_logits --backend gpu --max-diff 1e-3
  step "wgpu: LoRA adapters (the synthesized Qwen 3's and Qwen 3.5's rank-8 goldens, EDGEWISE_GPU_LORA_CASES=${EDGEWISE_GPU_LORA_CASES:=1} case (Qwen 3.5: all 4), with their wrong variants)"
  # The adapter applied on the device vs llama.cpp's lora_path goldens; the other goldens (Gemma 3
  # rank 16 / rank 8, llama, qwen2) and the adapter-switching test run with `gpu_` (slow on lavapipe).
  # The filter `gpu_qwen3` also picks gpu_qwen35_* (adapter on the DeltaNet products too).
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_LORA_CASES=$EDGEWISE_GPU_LORA_CASES cargo test --release --workspace --test lora_golden -- --test-threads 1 gpu_qwen3
  step "wgpu: Qwen 3.5 (qwen35) goldens (EDGEWISE_GPU_QWEN35_CASES=${EDGEWISE_GPU_QWEN35_CASES:=1}: the 127- and 155-token prompts, 2 and 3 prefill chunks + 24 decode steps)"
  # The model on the 127-token prompt, then its variant without the attention output gate (must
  # depart); then the 155-token prompt through the engine and a session.
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_QWEN35_CASES=$EDGEWISE_GPU_QWEN35_CASES cargo test --release --workspace --lib -- --test-threads 1 model::qwen35::tests::gpu_
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_QWEN35_CASES=$EDGEWISE_GPU_QWEN35_CASES cargo test --release --workspace --test qwen35_golden -- gpu_
  step "wgpu: the sentence encoder (MiniLM f32/Q8_0 vs NumPy, the GGUFs vs llama.cpp, padded batches, a second BERT)"
  # EDGEWISE_GPU_EMBED_TEXTS of the 200 goldens (every k-th; unset: all 200, as on a real GPU).
  EDGEWISE_GPU_TESTS=1 EDGEWISE_GPU_EMBED_TEXTS=${EDGEWISE_GPU_EMBED_TEXTS:-40} cargo test --release --workspace --lib -- --test-threads 1 embed::tests::gpu_
fi
