#!/usr/bin/env bash
# Builds the host library, generates the host-JVM Kotlin bindings and runs the JUnit suite.
# Tests need the model: EDGEWISE_MODEL, or $EDGEWISE_HOME/models/gemma-3-270m-q4_k_m.gguf
# (EDGEWISE_HOME defaults to ~/.cache/edgewise). Without it the model tests are skipped loudly,
# unless EDGEWISE_REQUIRE_MODEL is set (CI), which turns a missing model into a failure.
# Extra arguments go to Maven, e.g. ./run.sh -Dtest=EngineTest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/../scripts/generate-bindings.sh" --host "$HERE/target/generated-sources/uniffi"
cd "$HERE"
mvn -q -B test "$@"
