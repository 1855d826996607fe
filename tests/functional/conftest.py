# SPDX-License-Identifier: GPL-2.0-or-later
# pytest fixtures for the functional tests: where the binaries are (from meson's
# environment), machines that are always shut down, and skip-or-fail for missing tools.

import os
import sys

import pytest

SRC = os.environ.get("QS_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "python"))

import qtest  # noqa: E402


def require(path, what):
    """The executable at ``path``, or skip (by hand) / fail (QS_REQUIRE_ALL=1)."""
    if path and os.access(path, os.X_OK):
        return path
    msg = "%s not available (%s)" % (what, path or "path not set")
    if os.environ.get("QS_REQUIRE_ALL") == "1":
        pytest.fail(msg + " while QS_REQUIRE_ALL=1")
    pytest.skip(msg)


# Emulator targets the library tests run on: name -> (env var, default path, machine).
TARGETS = {
    "qemu-slim": ("QS_QEMU_SLIM", None, "virt"),
    "qemu-x86_64-q35": ("QS_REAL_QEMU_X86", "/usr/bin/qemu-system-x86_64", "q35"),
    "qemu-riscv64-virt": ("QS_REAL_QEMU_RISCV", "/usr/bin/qemu-system-riscv64", "virt"),
}


# qemu-slim features these tests rely on that have landed in the tree; a test that needs
# one runs on qemu-slim as well as on the real QEMU once it is listed here.
SLIM_FEATURES = {"qmp", "qtest", "pci", "edu", "intx", "msi", "finisher"}

REAL_TARGETS = ["qemu-riscv64-virt", "qemu-x86_64-q35"]


def targets(*features, real=REAL_TARGETS):
    """Targets for a test needing ``features`` of qemu-slim: the real QEMU ones, plus
    qemu-slim when every feature has landed."""
    slim = ["qemu-slim"] if set(features) <= SLIM_FEATURES else []
    return slim + list(real)


def target_binary(name):
    env, default, _ = TARGETS[name]
    return require(os.environ.get(env, default), name)


@pytest.fixture
def slim_binary():
    return target_binary("qemu-slim")


@pytest.fixture
def launch():
    """launch(target, **Machine kwargs) -> a started Machine, shut down after the test."""
    started = []

    def _launch(target, **kw):
        kw.setdefault("machine", TARGETS[target][2])
        m = qtest.Machine(target_binary(target), **kw)
        started.append(m)
        return m.launch()

    yield _launch
    for m in started:
        m.shutdown()
        m.remove_workdir()
