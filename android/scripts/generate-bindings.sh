#!/usr/bin/env bash
# Generates the Kotlin bindings for the `edgewise` crate with the workspace's own uniffi-bindgen
# (same uniffi as the scaffolding, through one Cargo.lock: pitfall 22).
#
#   generate-bindings.sh                 regenerate the committed Android flavour in
#                                        android/edgewise/src/main/uniffi/
#   generate-bindings.sh --check         fail (exit 1) if the committed Android flavour is stale
#   generate-bindings.sh --host <dir>    host-JVM flavour (android = false) into <dir> (Maven tests)
#
# Builds the host cdylib first with the workspace's one feature set (`cargo build --release --workspace
# --all-targets`, the build CI runs: a no-op when up to date; `-p edgewise` alone would resolve other
# features and rebuild burn and wgpu for ~20 minutes), then runs the uniffi-bindgen binary it built.
# `--no-format` keeps the output independent of whether ktlint happens to be installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMMITTED="$ROOT/android/edgewise/src/main/uniffi"
ANDROID_CONFIG="$ROOT/android/scripts/android-bindings.toml"

mode="android"
out="$COMMITTED"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  --host) mode="host"; out="${2:?usage: generate-bindings.sh --host <dir>}" ;;
  *) echo "usage: $0 [--check | --host <dir>]" >&2; exit 2 ;;
esac

cd "$ROOT"
cargo build --release --workspace --all-targets
case "$(uname -s)" in
  Darwin) LIB="$ROOT/target/release/libedgewise.dylib" ;;
  *) LIB="$ROOT/target/release/libedgewise.so" ;;
esac

bindgen() { # <out dir> [extra args...]
  local dir="$1"; shift
  "$ROOT/target/release/uniffi-bindgen" \
    generate "$LIB" --language kotlin --no-format --out-dir "$dir" "$@"
}

case "$mode" in
  android)
    rm -rf "$COMMITTED/dev/edgewise"
    bindgen "$COMMITTED" --config "$ANDROID_CONFIG"
    echo "wrote $COMMITTED/dev/edgewise/edgewise.kt (android flavour)"
    ;;
  host)
    rm -rf "$out/dev/edgewise"
    bindgen "$out"
    echo "wrote $out/dev/edgewise/edgewise.kt (host JVM flavour)"
    ;;
  check)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    bindgen "$tmp" --config "$ANDROID_CONFIG"
    if ! diff -ru "$COMMITTED" "$tmp" >"$tmp.diff" 2>&1; then
      head -n 40 "$tmp.diff" >&2
      rm -f "$tmp.diff"
      echo "STALE: android/edgewise/src/main/uniffi differs from the bindings generated from uniffi/;" \
           "run android/scripts/generate-bindings.sh and commit the result." >&2
      exit 1
    fi
    rm -f "$tmp.diff"
    echo "ok: committed Kotlin bindings are current"
    ;;
esac
