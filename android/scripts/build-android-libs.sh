#!/usr/bin/env bash
# Cross-builds libedgewise.so for Android into android/edgewise/src/main/jniLibs/<abi>/
# (ENGINEERING.md F.4). Needs the Android NDK (ANDROID_NDK_HOME) and `cargo install cargo-ndk`.
#
#   android/scripts/build-android-libs.sh            arm64-v8a, armeabi-v7a, x86_64
#   ABIS="arm64-v8a" android/scripts/build-android-libs.sh
#
# 16 KB pages (required for Android 15+ targets on Google Play): NDK r28+ links with 16 KB
# alignment by default; for older NDKs we pass -z max-page-size=16384 explicitly, and the result is
# checked with readelf below whenever one is available.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/android/edgewise/src/main/jniLibs"
ABIS="${ABIS:-arm64-v8a armeabi-v7a x86_64}"
API_LEVEL="${API_LEVEL:-24}"

command -v cargo-ndk >/dev/null || { echo "cargo-ndk missing: cargo install cargo-ndk" >&2; exit 1; }
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to an NDK (r28+ recommended)}"

declare -A TRIPLE=(
  [arm64-v8a]=aarch64-linux-android
  [armeabi-v7a]=armv7-linux-androideabi
  [x86_64]=x86_64-linux-android
)

args=()
for abi in $ABIS; do
  triple="${TRIPLE[$abi]:?unknown ABI $abi}"
  rustup target add "$triple" >/dev/null
  # Per-target flags, so host build scripts are unaffected.
  var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  export "$var"="${!var:-} -C link-arg=-Wl,-z,max-page-size=16384"
  args+=(-t "$abi")
done

cd "$ROOT"
cargo ndk "${args[@]}" --platform "$API_LEVEL" -o "$OUT" build --release -p edgewise

# Check the 16 KB alignment of every LOAD segment.
READELF="$(command -v llvm-readelf || command -v readelf || true)"
if [[ -z "$READELF" ]]; then
  READELF="$(ls "$ANDROID_NDK_HOME"/toolchains/llvm/prebuilt/*/bin/llvm-readelf 2>/dev/null | head -n1 || true)"
fi
for abi in $ABIS; do
  so="$OUT/$abi/libedgewise.so"
  [[ -f "$so" ]] || { echo "missing $so" >&2; exit 1; }
  if [[ -n "$READELF" ]]; then
    bad=0
    for align in $("$READELF" -lW "$so" | awk '$1 == "LOAD" { print $NF }'); do
      (( align >= 16384 )) || bad=1
    done
    if (( bad == 0 )); then
      echo "ok: $abi/libedgewise.so LOAD segments are 16 KB aligned"
    else
      echo "FAIL: $abi/libedgewise.so has LOAD segments aligned below 16 KB" >&2
      exit 1
    fi
  else
    echo "warning: no readelf found; 16 KB alignment of $abi not checked" >&2
  fi
done
