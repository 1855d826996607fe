# SPDX-License-Identifier: GPL-2.0-or-later
# Unit tests of the qtest client's parsing against a scripted peer: values, buffers,
# IRQ notifications between replies, FAIL, malformed replies, EOF and timeouts.

import base64

import pytest

from fakeserver import FakeServer
from qtest.errors import EmulatorExited, EmulatorTimeout, ProtocolError, QtestCommandError
from qtest.protocol import QtestClient


def client(handler, **kw):
    srv = FakeServer(handler)
    return srv, QtestClient(srv.channel(**kw))


def test_read_value_and_command_text():
    srv, qt = client(lambda l: ["OK 0x00000000deadbeef"])
    assert qt.readl(0x1000) == 0xdeadbeef
    assert srv.received == ["readl 0x1000"]
    srv.close()


def test_write_formats_address_and_value():
    srv, qt = client(lambda l: ["OK"])
    qt.writeq(0x40000080, 0x1122334455667788)
    qt.outw(0xcfc, 0xbeef)
    assert srv.received == ["writeq 0x40000080 0x1122334455667788", "outw 0xcfc 0xbeef"]
    srv.close()


def test_value_range_checked_before_sending():
    srv, qt = client(lambda l: ["OK"])
    with pytest.raises(ValueError):
        qt.writeb(0, 0x100)
    with pytest.raises(ValueError):
        qt.outl(0x10000, 0)
    with pytest.raises(TypeError):
        qt.writel("0x10", 1)
    assert srv.received == []
    srv.close()


def test_reply_wider_than_access_is_protocol_error():
    srv, qt = client(lambda l: ["OK 0x1ff"])
    with pytest.raises(ProtocolError, match="wider than 8 bits"):
        qt.readb(0)
    srv.close()


def test_irq_notifications_before_reply_are_recorded():
    srv, qt = client(lambda l: ["IRQ raise 33", "IRQ lower 5", "OK 0x0000000000000007"])
    assert qt.readq(8) == 7
    assert qt.irq_level == {33: True, 5: False}
    assert [(k, n) for _, k, n in qt.irq_log] == [("raise", 33), ("lower", 5)]
    srv.close()


def test_unsolicited_irq_consumed_by_wait_irq():
    srv, qt = client(lambda l: ["OK"])
    srv.server.sendall(b"IRQ raise 7\n")
    assert qt.wait_irq(7, True, timeout=2)
    srv.close()


def test_wait_irq_times_out():
    srv, qt = client(lambda l: ["OK"])
    with pytest.raises(EmulatorTimeout, match="IRQ line 9 did not go high"):
        qt.wait_irq(9, timeout=0.2)
    srv.close()


def test_malformed_irq_notification():
    srv, qt = client(lambda l: ["IRQ wiggle 3", "OK"])
    with pytest.raises(ProtocolError, match="malformed IRQ"):
        qt.writel(0, 0)
    srv.close()


def test_fail_reply_raises_with_text():
    srv, qt = client(lambda l: ["FAIL Unknown command 'clock_step'"])
    with pytest.raises(QtestCommandError) as e:
        qt.clock_step(10)
    assert e.value.reply == "Unknown command 'clock_step'"
    assert qt.clock_supported is False
    srv.close()


def test_clock_step_failure_of_known_command_keeps_clock_supported():
    srv, qt = client(lambda l: ["FAIL could not advance time"])
    assert qt.has_virtual_clock() is True
    srv.close()


def test_clock_step_returns_clock():
    srv, qt = client(lambda l: ["OK 100000000"])
    assert qt.clock_step(100000000) == 100000000
    assert qt.has_virtual_clock()
    srv.close()


def test_garbage_reply():
    srv, qt = client(lambda l: ["HELLO there"])
    with pytest.raises(ProtocolError, match="neither OK, FAIL nor IRQ"):
        qt.readl(0)
    srv.close()


def test_hex_read_and_write_chunks():
    mem = bytearray(200000)

    def handler(line):
        w = line.split()
        addr, size = int(w[1], 0), int(w[2], 0)
        if w[0] == "write":
            mem[addr:addr + size] = bytes.fromhex(w[3][2:])
            return ["OK"]
        return ["OK 0x" + mem[addr:addr + size].hex()]

    srv, qt = client(handler)
    data = bytes(i * 7 & 0xff for i in range(150000))
    qt.memwrite(1000, data)
    assert qt.memread(1000, len(data)) == data
    assert len(srv.received) == 6      # 3 chunks each way
    srv.close()


def test_b64_roundtrip_and_short_reply():
    store = {}

    def handler(line):
        w = line.split()
        if w[0] == "b64write":
            store[int(w[1], 0)] = base64.b64decode(w[3])
            return ["OK"]
        data = store.get(int(w[1], 0), b"")
        return ["OK " + base64.b64encode(data[:int(w[2], 0) - 1]).decode()]

    srv, qt = client(handler)
    qt.b64write(0x80000000, b"hello world")
    with pytest.raises(ProtocolError, match="asked 11 bytes, got 10"):
        qt.b64read(0x80000000, 11)
    srv.close()


def test_eof_is_emulator_exited_with_post_mortem():
    srv = FakeServer(lambda l: None)
    qt = QtestClient(srv.channel(post_mortem=lambda wait: (3, "boom\n")))
    with pytest.raises(EmulatorExited) as e:
        qt.readl(0)
    assert e.value.exitcode == 3 and "boom" in str(e.value)
    srv.close()


def test_silence_is_timeout():
    srv, qt = client(lambda l: [], timeout=0.2)
    with pytest.raises(EmulatorTimeout, match="no reply within 0.2 s"):
        qt.readl(0)
    srv.close()


def test_endianness():
    srv, qt = client(lambda l: ["OK big"])
    assert qt.big_endian() is True
    assert qt.big_endian() is True
    assert srv.received == ["endianness"]
    srv.close()
