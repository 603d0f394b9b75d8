#!/usr/bin/env bash
# Every test of the project. Needs the default model fetched (`edgewise models fetch`).
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEWISE_REQUIRE_MODEL="${EDGEWISE_REQUIRE_MODEL:-1}"
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "cargo test (workspace, release)"
cargo test --release --workspace

if [ -x android/jvm-tests/run.sh ]; then
  step "Kotlin bindings: freshness check + JUnit on the JVM"
  bash android/jvm-tests/run.sh
fi
