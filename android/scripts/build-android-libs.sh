#!/usr/bin/env bash
# Cross-builds libedgewise.so for Android into android/edgewise/src/main/jniLibs/<abi>/
# (ENGINEERING.md F.4). Needs `cargo install cargo-ndk` and the Android NDK: ANDROID_NDK_HOME, or
# the version pinned in edgewise/build.gradle.kts (`ndkVersion`) under $ANDROID_HOME/ndk/.
# Gradle runs it as `:edgewise:cargoNdk`, before every build of the AAR (preBuild).
#
#   android/scripts/build-android-libs.sh            arm64-v8a, armeabi-v7a, x86, x86_64
#   ABIS="arm64-v8a" android/scripts/build-android-libs.sh
#
# The four ABIs are the ones JNA's AAR ships libjnidispatch.so for; an app that gets JNA for an
# ABI must get libedgewise.so for it too (check-packaging.sh checks the lists agree).
#
# 16 KB pages (required for Android 15+ targets on Google Play): NDK r28+ links with 16 KB
# alignment by default; for older NDKs we pass -z max-page-size=16384 explicitly, and the result is
# checked with readelf below whenever one is available.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/android/edgewise/src/main/jniLibs"
ABIS="${ABIS:-arm64-v8a armeabi-v7a x86 x86_64}"
API_LEVEL="${API_LEVEL:-24}"

command -v cargo-ndk >/dev/null || { echo "cargo-ndk missing: cargo install cargo-ndk" >&2; exit 1; }
if [[ -z "${ANDROID_NDK_HOME:-}" ]]; then
  ndk_version="${EDGEWISE_NDK_VERSION:-$(sed -n 's/^ *ndkVersion *= *"\(.*\)".*/\1/p' "$ROOT/android/edgewise/build.gradle.kts")}"
  sdk="${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}"
  if [[ -n "$sdk" && -d "$sdk/ndk/$ndk_version" ]]; then
    export ANDROID_NDK_HOME="$sdk/ndk/$ndk_version"
  else
    echo "no NDK: set ANDROID_NDK_HOME, or install NDK $ndk_version (sdkmanager \"ndk;$ndk_version\") under \$ANDROID_HOME" >&2
    exit 1
  fi
fi

declare -A TRIPLE=(
  [arm64-v8a]=aarch64-linux-android
  [armeabi-v7a]=armv7-linux-androideabi
  [x86]=i686-linux-android
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
# The `mobile` profile (workspace Cargo.toml): release + fat LTO + one codegen unit.
cargo ndk "${args[@]}" --platform "$API_LEVEL" -o "$OUT" build --profile "${CARGO_PROFILE:-mobile}" -p edgewise

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
