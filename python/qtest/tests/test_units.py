# SPDX-License-Identifier: GPL-2.0-or-later
# Unit tests of the helpers that need no emulator: the guest allocator, the config-space
# accessors' address arithmetic (on a recording qtest stand-in), profiles, and launch
# failures of processes that are not emulators.

import os
import stat

import pytest

from qtest.errors import EmulatorExited, EmulatorTimeout, EmulatorError
from qtest.machine import Machine
from qtest.memory import GuestAllocator, OutOfGuestMemory
from qtest.pci import Cf8Accessor, EcamAccessor
from qtest.profiles import make_profile


class Recorder:
    """Records the qtest calls an accessor makes and returns fixed values."""

    def __init__(self):
        self.calls = []

    def read(self, w, addr):
        self.calls.append(("read", w, addr))
        return 0x1234

    def write(self, w, addr, v):
        self.calls.append(("write", w, addr, v))

    def outl(self, port, v):
        self.calls.append(("outl", port, v))

    def inp(self, w, port):
        self.calls.append(("in", w, port))
        return 0xab

    def outp(self, w, port, v):
        self.calls.append(("out", w, port, v))


def test_allocator_alignment_and_exhaustion():
    a = GuestAllocator(0x80000000, 0x3000)
    assert a.alloc(10) == 0x80000000
    assert a.alloc(0x1000, align=0x1000) == 0x80001000
    with pytest.raises(OutOfGuestMemory):
        a.alloc(0x2000)
    with pytest.raises(ValueError):
        a.alloc(8, align=3)


def test_ecam_address():
    r = Recorder()
    acc = EcamAccessor(r, 0x30000000)
    acc.read(1, 0x08, 0x10, 4)
    acc.write(0, 0x0a, 0x04, 2, 6)
    assert r.calls == [("read", "l", 0x30108010), ("write", "w", 0x3000a004, 6)]
    with pytest.raises(ValueError):
        acc.read(0, 0, 0x1000, 4)       # past 4 KiB of extended config space
    with pytest.raises(ValueError):
        acc.read(0, 0, 0x2, 4)          # unaligned


def test_cf8_sequence():
    r = Recorder()
    acc = Cf8Accessor(r)
    assert acc.read(0, 0x08, 0x0e, 1) == 0xab
    acc.write(2, 0xf8, 0x3c, 2, 0x1ff)
    assert r.calls == [("outl", 0xcf8, 0x8000080c), ("in", "b", 0xcfe),
                       ("outl", 0xcf8, 0x8002f83c), ("out", "w", 0xcfc, 0x1ff)]
    with pytest.raises(ValueError):
        acc.read(0, 0, 0x100, 4)        # CF8 reaches 256 bytes only


def test_profiles_by_binary(monkeypatch):
    monkeypatch.delenv("QTEST_MACHINE", raising=False)
    monkeypatch.delenv("QTEST_QEMU_KIND", raising=False)
    p = make_profile("/x/build/qemu-slim")
    assert (p.name, p.kind, p.pci_access) == ("virt", "qemu-slim", "ecam")
    p = make_profile("/usr/bin/qemu-system-x86_64")
    assert (p.name, p.kind, p.pci_access) == ("q35", "qemu", "cf8")
    with pytest.raises(ValueError, match="unknown"):
        make_profile("/usr/bin/qemu-system-x86_64", "pc-1.0")


def _script(tmp_path, body):
    p = tmp_path / "fake-emu"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_launch_of_process_that_exits(tmp_path):
    b = _script(tmp_path, "echo 'fake-emu: no such machine' >&2; exit 4")
    with pytest.raises(EmulatorExited) as e:
        Machine(b, machine="virt", start_timeout=5).launch()
    assert e.value.exitcode == 4
    assert "no such machine" in str(e.value)


def test_launch_of_process_that_never_connects(tmp_path):
    b = _script(tmp_path, "exec sleep 30")
    m = Machine(b, machine="virt", start_timeout=0.3)
    with pytest.raises(EmulatorTimeout, match="did not connect"):
        m.launch()
    assert m.proc.poll() is not None     # killed, not left behind
    assert m.workdir is None


def test_launch_of_missing_binary(tmp_path):
    with pytest.raises(EmulatorError, match="cannot run"):
        Machine(str(tmp_path / "nope"), machine="virt").launch()
