# SPDX-License-Identifier: GPL-2.0-or-later
# What both format compat suites share: where the two qemu-img binaries are, running
# them, parsing their JSON, and naming parametrised (format, options) cases.
import json
import os
import subprocess

import pytest

OURS = os.environ.get("QS_QEMU_IMG", "")
REAL = os.environ.get("QS_REAL_QEMU_IMG", "/usr/bin/qemu-img")
QEMU_IO = os.path.join(os.path.dirname(REAL), "qemu-io")


def ids(c):
    return c[0] + ("-" + c[1].replace(",", "-").replace("=", "_") if c[1] else "")


def need_tools():
    if not OURS or not os.path.exists(OURS):
        pytest.skip("QS_QEMU_IMG (our qemu-img) is not set")
    if not os.path.exists(REAL):
        pytest.skip("the real qemu-img (qemu-utils) is not installed")


def run(tool, *args, ok=True):
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    if ok and p.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def js(tool, *args):
    return json.loads(run(tool, *args).stdout)


def virtual_size(tool, img, fmt):
    """The virtual size `tool info` reports for img opened as fmt."""
    return js(tool, "info", "--output=json", "-f", fmt, str(img))["virtual-size"]


def qemu_io(img, fmt, *cmds):
    """Run the real qemu-io commands on img (write -P, write -z, discard, ...)."""
    args = []
    for c in cmds:
        args += ["-c", c]
    return run(QEMU_IO, "-f", fmt, *args, str(img))
