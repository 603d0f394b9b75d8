#!/usr/bin/env bash
# Kotlin (and Swift) bindings in CI:
#   1. the committed generated bindings are current (android flavour + Swift), else fail;
#   2. build the host library, generate the host-JVM Kotlin flavour into target/generated-sources;
#   3. compile the Kotlin that ships in the AAR (android flavour of the bindings + the idiomatic
#      layer) against the Android 16 framework classes (android-flavour/pom.xml);
#   4. compile the Android library's Kotlin sources (host flavour) + the JUnit tests with Maven and
#      run them against target/release/libedgewise.so.
# Tests need the model: EDGEWISE_MODEL, or $EDGEWISE_HOME/models/gemma-3-270m-q4_k_m.gguf
# (EDGEWISE_HOME defaults to ~/.cache/edgewise). Without it the model tests are skipped loudly,
# unless EDGEWISE_REQUIRE_MODEL is set (CI), which makes a missing model a failure.
# Extra arguments go to Maven, e.g. ./run.sh -Dtest=SessionTest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

"$ROOT/android/scripts/generate-bindings.sh" --check
"$ROOT/ios/scripts/generate-swift.sh" --check
"$ROOT/android/scripts/generate-bindings.sh" --host "$HERE/target/generated-sources/uniffi"

cd "$HERE"
echo "compiling the android flavour (as shipped in the AAR) against android-all (API 36)"
mvn -q -B -f android-flavour/pom.xml compile
rm -rf target/surefire-reports
status=0
mvn -q -B test "$@" || status=$?
if compgen -G "target/surefire-reports/*.txt" >/dev/null; then
  echo "JUnit results:"
  grep -h "Tests run" target/surefire-reports/*.txt | sed 's/^/  /'
fi
exit "$status"
