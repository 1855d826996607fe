# SPDX-License-Identifier: GPL-2.0-or-later
# The qtest text protocol through qtest-os, checked on qemu-slim and the real QEMU with
# the same tests: every access width, hex and base64 buffers, memset, byte order,
# unknown commands, and (where the qtest accelerator exists) the virtual clock.

import base64

import pytest

import qtest
from conftest import targets

TARGETS = targets("qmp", "qtest")


@pytest.fixture(params=TARGETS)
def m(request, launch):
    return launch(request.param)


def ram(m, off):
    return m.profile.ram_base + m.profile.alloc_start + off


def test_widths_and_little_endian_layout(m):
    qt = m.qtest
    assert qt.big_endian() is False
    a = ram(m, 0x1000)
    qt.writeq(a, 0x0102030405060708)
    assert qt.readq(a) == 0x0102030405060708
    assert qt.readl(a) == 0x05060708 and qt.readl(a + 4) == 0x01020304
    assert qt.readw(a + 2) == 0x0506
    assert qt.readb(a) == 0x08 and qt.readb(a + 7) == 0x01
    qt.writeb(a + 1, 0xff)
    qt.writew(a + 2, 0xbeef)
    qt.writel(a + 4, 0xcafef00d)
    assert qt.memread(a, 8) == bytes.fromhex("08ffefbe0df0feca")


def test_hex_and_base64_buffers_agree(m):
    qt = m.qtest
    a = ram(m, 0x2000)
    data = bytes((i * 131 + 7) & 0xff for i in range(3000))
    qt.memwrite(a, data)
    assert qt.b64read(a, len(data)) == data
    qt.b64write(a + 5000, data[::-1])
    assert qt.memread(a + 5000, len(data)) == data[::-1]
    # the raw replies follow the protocol's formats
    assert qt.command("read 0x%x 0x3" % a) == ["0x" + data[:3].hex()]
    assert qt.command("b64read 0x%x 0x3" % a) == [base64.b64encode(data[:3]).decode()]


def test_memset(m):
    qt = m.qtest
    a = ram(m, 0x4000)
    qt.memwrite(a, b"\x11" * 32)
    qt.memset(a + 4, 20, 0xab)
    assert qt.memread(a, 32) == b"\x11" * 4 + b"\xab" * 20 + b"\x11" * 8


def test_unknown_command_fails_and_session_continues(m):
    qt = m.qtest
    with pytest.raises(qtest.QtestCommandError) as e:
        qt.command("frobnicate 1 2")
    assert "frobnicate" in e.value.reply
    a = ram(m, 0x6000)
    qt.writel(a, 7)
    assert qt.readl(a) == 7


def test_virtual_clock_if_accelerated(m):
    qt = m.qtest
    if m.kind == "qemu":
        # Debian's QEMU 7.2 lacks the qtest accelerator: clock_step is refused and
        # the library falls back to real time.
        assert qt.has_virtual_clock() is False
        return
    t0 = qt.clock_step(1000)
    assert qt.clock_step(1000) == t0 + 1000
    assert qt.clock_set(t0 + 5000000) == t0 + 5000000
    assert qt.clock_step(10) == t0 + 5000010
