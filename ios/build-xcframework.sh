#!/usr/bin/env bash
# Builds ios/EdgewiseFFI.xcframework (ENGINEERING.md F.5). Needs macOS with Xcode.
#   device:    aarch64-apple-ios
#   simulator: aarch64-apple-ios-sim + x86_64-apple-ios, merged with lipo (one library per platform)
# then regenerates the Swift bindings and headers (scripts/generate-swift.sh) and packs
#   -library <device.a> -headers Headers  -library <sim.a> -headers Headers
# so the framework carries Headers/EdgewiseFFI/{EdgewiseFFI.h,module.modulemap}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ "$(uname -s)" == "Darwin" ]] || { echo "build-xcframework.sh needs macOS + Xcode" >&2; exit 1; }
export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-13.0}"

cd "$ROOT"
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios; do
  rustup target add "$t" >/dev/null
  cargo build --release -p edgewise --target "$t"
done

"$ROOT/ios/scripts/generate-swift.sh"

SIM="$ROOT/target/ios-sim-universal/release"
mkdir -p "$SIM"
lipo -create \
  "$ROOT/target/aarch64-apple-ios-sim/release/libedgewise.a" \
  "$ROOT/target/x86_64-apple-ios/release/libedgewise.a" \
  -output "$SIM/libedgewise.a"

rm -rf "$ROOT/ios/EdgewiseFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$ROOT/target/aarch64-apple-ios/release/libedgewise.a" -headers "$ROOT/ios/Headers" \
  -library "$SIM/libedgewise.a" -headers "$ROOT/ios/Headers" \
  -output "$ROOT/ios/EdgewiseFFI.xcframework"
echo "built ios/EdgewiseFFI.xcframework"
