#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# `make run`: the main job on the built-in default.  Boots the virt machine with its
# embedded default payload (console on stdout), then runs the qtest-os demo: qemu-slim's
# virt machine with every built module, a QMP session and a DMA through the edu test
# device, each step printed.
set -euo pipefail
build=${1:-build}
bin=$build/core/qemu-slim
[ -x "$bin" ] || bin=$build/qemu-slim

echo "== qemu-slim -M virt -nographic (built-in default payload) =="
"$bin" -M virt -nographic
echo
if [ -f python/qtest/demo.py ]; then
  echo "== qtest-os demo: modules, QMP, PCI, edu DMA =="
  exec /usr/bin/python3 python/qtest/demo.py --build "$build"
fi
"$bin" -plugin help
