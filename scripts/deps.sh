#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs every Debian package that qemu-slim's build, tests and benchmarks use.
# Idempotent: packages already present are not reinstalled, apt is not touched then.
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config clang llvm lld
  libglib2.0-dev libjson-glib-dev zlib1g-dev libzstd-dev libdeflate-dev liburing-dev libncurses-dev
  # tests
  python3 python3-pytest tmux xz-utils cpio kmod iproute2 busybox-static
  # real peers
  qemu-utils qemu-system-x86 qemu-system-misc tcpdump tshark
  # guest programs for the TCG tests (bare-metal RISC-V, -nostdlib)
  gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu
  # kernel module and wireshark plugin
  linux-headers-amd64 wireshark-dev libpcap-dev
  # fuzzing and benchmarks
  afl++ libclang-rt-14-dev hyperfine
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps: all ${#PKGS[@]} packages present"
