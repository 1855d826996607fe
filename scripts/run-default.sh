#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# `make run`: the main job on the built-in default.  Until the TCG CPU exists, the demo
# starts qemu-slim's virt machine with every built module, talks QMP to it and runs a
# DMA through the edu test device, printing each step.
set -euo pipefail
build=${1:-build}
if [ -f python/qtest/demo.py ]; then
  exec /usr/bin/python3 python/qtest/demo.py --build "$build"
fi
"$build/qemu-slim" -plugin help
