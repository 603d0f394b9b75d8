#!/usr/bin/env bash
# Compiles the NEON kernels for aarch64 and runs them (baseline and `sdot`, on qemu's `max` CPU)
# under qemu against their scalar emulation (see main.rs). Needs Debian's cross linker and qemu
# (`apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user`); fetches Debian's rustc 1.63
# and its aarch64 standard library into $EDGEWISE_HOME/neon-toolchain (the project's own toolchain has no
# aarch64 target offline). Exit status: the harness's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${EDGEWISE_HOME:-$HOME/.cache/edgewise}/neon-toolchain"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debs=(
  "r/rustc/rustc_1.63.0+dfsg1-2_amd64.deb"
  "r/rustc/libstd-rust-1.63_1.63.0+dfsg1-2_amd64.deb"
  "r/rustc/libstd-rust-dev_1.63.0+dfsg1-2_arm64.deb"
  "l/llvm-toolchain-14/libllvm14_14.0.6-12_amd64.deb"
)
if [ ! -x "$home/root/usr/bin/rustc" ]; then
  rm -rf "$home/root" "$home/root.partial"
  mkdir -p "$home/debs"
  for d in "${debs[@]}"; do
    f="$home/debs/$(basename "$d")"
    [ -s "$f" ] || curl -fsSL --retry 3 -o "$f" "$mirror/pool/main/$d"
    dpkg -x "$f" "$home/root.partial"
  done
  mv "$home/root.partial" "$home/root"
fi
export LD_LIBRARY_PATH="$home/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$home/root/usr/bin/rustc" --edition 2021 --sysroot "$home/root/usr" --target aarch64-unknown-linux-gnu \
  -C linker=aarch64-linux-gnu-gcc -C opt-level=2 "$here/main.rs" -o "$out/neon"
qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu "$out/neon"
