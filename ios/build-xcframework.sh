#!/usr/bin/env bash
# Builds ios/EdgewiseFFI.xcframework (ENGINEERING.md F.5) and, for a release, its zip + checksum.
# Needs macOS with Xcode.
#   iOS device:    aarch64-apple-ios
#   iOS simulator: aarch64-apple-ios-sim + x86_64-apple-ios, merged with lipo (one library per platform)
#   macOS:         aarch64-apple-darwin + x86_64-apple-darwin, merged with lipo (so `swift test`
#                  runs the package's tests on a Mac)
# with the `mobile` profile (release + fat LTO, workspace Cargo.toml), then regenerates the Swift
# bindings and headers (scripts/generate-swift.sh) and packs
#   -library <lib.a> -headers Headers   (one per platform)
# so each slice carries Headers/EdgewiseFFI/{EdgewiseFFI.h,module.modulemap}.
#
#   ios/build-xcframework.sh                                 build ios/EdgewiseFFI.xcframework
#   ios/build-xcframework.sh --release <version> <base URL>  also zip it into
#       target/xcframework/EdgewiseFFI.xcframework.zip, write its SwiftPM checksum next to it
#       (.sha256), and rewrite releaseURL/releaseChecksum in the root Package.swift to
#       <base URL>/<version>/EdgewiseFFI.xcframework.zip and that checksum; upload the zip there.
#
# Debug symbols: these are static libraries, so there is no dSYM to ship with them (dsymutil
# works on linked images); the profile keeps line tables in the archives and the app's own
# dSYM, made when Xcode links the app, symbolicates Rust frames.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release_version=""
release_base=""
if [[ "${1:-}" == "--release" ]]; then
  release_version="${2:?usage: build-xcframework.sh --release <version> <base URL>}"
  release_base="${3:?usage: build-xcframework.sh --release <version> <base URL>}"
fi
[[ "$(uname -s)" == "Darwin" ]] || { echo "build-xcframework.sh needs macOS + Xcode" >&2; exit 1; }
export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-13.0}"
export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-12.0}"
PROFILE="${CARGO_PROFILE:-mobile}"

cd "$ROOT"
for t in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
  rustup target add "$t" >/dev/null
  cargo build --profile "$PROFILE" -p edgewise --target "$t"
done

"$ROOT/ios/scripts/generate-swift.sh"

lib() { echo "$ROOT/target/$1/$PROFILE/libedgewise.a"; }
UNI="$ROOT/target/xcframework"
mkdir -p "$UNI/ios-sim" "$UNI/macos"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$UNI/ios-sim/libedgewise.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$UNI/macos/libedgewise.a"

rm -rf "$ROOT/ios/EdgewiseFFI.xcframework"
xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" -headers "$ROOT/ios/Headers" \
  -library "$UNI/ios-sim/libedgewise.a" -headers "$ROOT/ios/Headers" \
  -library "$UNI/macos/libedgewise.a" -headers "$ROOT/ios/Headers" \
  -output "$ROOT/ios/EdgewiseFFI.xcframework"
echo "built ios/EdgewiseFFI.xcframework"
for a in "$(lib aarch64-apple-ios)" "$UNI/ios-sim/libedgewise.a" "$UNI/macos/libedgewise.a"; do
  echo "  $(du -h "$a" | cut -f1)  ${a#$ROOT/}"
done

if [[ -n "$release_version" ]]; then
  zip="$UNI/EdgewiseFFI.xcframework.zip"
  rm -f "$zip"
  # ditto keeps the framework's symlinks and permissions, as Apple recommends for XCFramework zips.
  (cd "$ROOT/ios" && ditto -c -k --sequesterRsrc --keepParent EdgewiseFFI.xcframework "$zip")
  checksum="$(swift package compute-checksum "$zip")"
  echo "$checksum" > "$zip.sha256"
  url="${release_base%/}/$release_version/EdgewiseFFI.xcframework.zip"
  sed -i '' -e "s|^let releaseURL = \".*\"|let releaseURL = \"$url\"|" \
            -e "s|^let releaseChecksum = \".*\"|let releaseChecksum = \"$checksum\"|" "$ROOT/Package.swift"
  echo "release: $zip ($(du -h "$zip" | cut -f1)), checksum $checksum"
  echo "Package.swift now points at $url: upload the zip there, commit Package.swift, tag $release_version"
fi
