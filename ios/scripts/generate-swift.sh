#!/usr/bin/env bash
# Generates the Swift bindings with the workspace's uniffi-bindgen-swift (same uniffi as the
# scaffolding, pitfall 22):
#   ios/Sources/Edgewise/Edgewise.swift          the Swift API (committed)
#   ios/Headers/EdgewiseFFI/EdgewiseFFI.h         the C header   (committed; goes into the XCFramework)
#   ios/Headers/EdgewiseFFI/module.modulemap      `module EdgewiseFFI` (plain form, not `framework module`)
# The headers sit in an EdgewiseFFI/ subfolder so that, inside an app, two XCFrameworks' top-level
# module.modulemap files cannot collide (pitfall 28).
#
#   generate-swift.sh            regenerate the committed files
#   generate-swift.sh --check    fail if the committed files are stale
#
# Runs anywhere the host library builds (Linux included): the bindings come from the library's
# metadata, which is the same for every target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
check=0
[[ "${1:-}" == "--check" ]] && check=1

cd "$ROOT"
# The workspace build CI runs (one feature set: `-p edgewise` alone would rebuild burn and wgpu).
cargo build --release --workspace --all-targets
case "$(uname -s)" in
  Darwin) LIB="$ROOT/target/release/libedgewise.dylib" ;;
  *) LIB="$ROOT/target/release/libedgewise.so" ;;
esac

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
swiftgen() {
  "$ROOT/target/release/uniffi-bindgen-swift" "$LIB" "$@"
}
# `link framework` lines in the module map: what the static library calls into (wgpu's Metal
# backend, objc2, CoreFoundation), so an app that imports the module links them automatically.
frameworks=()
for f in Metal QuartzCore CoreGraphics Foundation CoreFoundation; do frameworks+=(--link-frameworks "$f"); done
swiftgen "$out/Headers/EdgewiseFFI" --headers --modulemap \
  --module-name EdgewiseFFI --modulemap-filename module.modulemap "${frameworks[@]}"
swiftgen "$out/Sources/Edgewise" --swift-sources

if (( check )); then
  status=0
  diff -u "$ROOT/ios/Sources/Edgewise/Edgewise.swift" "$out/Sources/Edgewise/Edgewise.swift" >/dev/null || status=1
  diff -ru "$ROOT/ios/Headers" "$out/Headers" >/dev/null || status=1
  if (( status )); then
    echo "STALE: ios/ Swift bindings differ from uniffi/; run ios/scripts/generate-swift.sh" >&2
    exit 1
  fi
  echo "ok: committed Swift bindings are current"
else
  mkdir -p "$ROOT/ios/Sources/Edgewise"
  cp "$out/Sources/Edgewise/Edgewise.swift" "$ROOT/ios/Sources/Edgewise/Edgewise.swift"
  rm -rf "$ROOT/ios/Headers"
  cp -R "$out/Headers" "$ROOT/ios/Headers"
  echo "wrote ios/Sources/Edgewise/Edgewise.swift and ios/Headers/EdgewiseFFI/"
fi
