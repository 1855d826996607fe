# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-slim-only behaviour over QMP and qtest (what the real QEMU has no equivalent for, or
# would abort on): query-plugins with an out-of-tree module, oversized and over-nested
# QMP input, the QMP server mode, malformed qtest commands, an out-of-range edu DMA, and
# the `make run` demo.

import os
import socket
import subprocess
import sys
import time

import pytest

import qtest
from conftest import SRC
from test_slim_modules import oot_module  # noqa: F401  (fixture)


def test_query_plugins_reports_loaded_out_of_tree_module(launch, oot_module):  # noqa: F811
    m = launch("qemu-slim", args=["-plugin", oot_module + ",tag=qmp"])
    plugins = m.qmp.command("query-plugins")
    mine = [p for p in plugins if p["name"] == "oot-probe"]
    assert len(mine) == 1, plugins
    p = mine[0]
    assert p["loaded"] is True
    assert (p["version"], p["license"]) == ("2.5", "GPL-2.0-or-later")
    assert p["description"] == "functional-test module built out of tree"
    assert p["file"] == oot_module
    assert p["provides"] == ["device:oot-probe-dev"]
    assert "oot-probe init, tag=qmp" in m.stdout_text()


def test_query_plugins_lists_found_but_not_loaded(launch, oot_module):  # noqa: F811
    m = launch("qemu-slim", env={"QS_MODULE_DIR": os.path.dirname(oot_module)})
    mine = [p for p in m.qmp.command("query-plugins") if p["name"] == "oot-probe"]
    assert len(mine) == 1 and mine[0]["loaded"] is False


OVERSIZED = {
    "1MiB-string": (lambda: b'{"execute": "query-status", "arguments": {"x": "' +
                    b"a" * (1 << 20) + b'"}}', "exceeds"),
    "nesting-1100": (lambda: b"[" * 1100 + b"]" * 1100, "nesting"),
}


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_qmp_input_gets_error_and_connection_survives(launch, case):
    make, desc = OVERSIZED[case]
    raw = make()
    m = launch("qemu-slim", qtest=False)
    m.qmp.send_raw(raw + b"\n")
    reply = m.qmp.read_reply(timeout=10)
    assert reply["error"]["class"] == "GenericError", reply
    assert desc in reply["error"]["desc"], reply
    assert "status" in m.qmp.command("query-status")


def test_qmp_server_mode(slim_binary, tmp_path):
    path = str(tmp_path / "qmp.sock")
    p = subprocess.Popen([slim_binary, "-M", "virt", "-display", "none", "-S",
                          "-qmp", "unix:%s,server=on,wait=off" % path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        s = socket.socket(socket.AF_UNIX)
        while True:
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                assert p.poll() is None, p.stderr.read()
                assert time.monotonic() < deadline, "no QMP server socket at " + path
                time.sleep(0.02)
        q = qtest.QMPClient(qtest.channel.LineChannel(s, "QMP", timeout=10))
        assert "QMP" in q.handshake()
        assert q.command("query-status")["running"] is False
        q.command("quit")
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("cmd", ["readl", "readl zz", "writel 0x80000000", "writel 0x0 zz",
                                 "write 0x80000000 0x2 0xzz", "b64write 0x80000000 0x4 !!!!",
                                 "memset 0x80000000 0x10", "clock_step 12x", "clock_set zz",
                                 "irq_intercept_in /no/such/device"])
def test_malformed_qtest_command_fails_cleanly(launch, cmd):
    m = launch("qemu-slim")
    with pytest.raises(qtest.QtestCommandError):
        m.qtest.command(cmd)
    m.qtest.writel(0x80001000, 0x1234)
    assert m.qtest.readl(0x80001000) == 0x1234
    assert m.is_running()


def test_clock_step_backwards_keeps_the_clock(launch):
    # QEMU 7.2 warps the clock only forwards: a negative step answers OK <now>.
    m = launch("qemu-slim")
    now = m.qtest.clock_step(1000)
    assert [int(w, 0) for w in m.qtest.command("clock_step -5")] == [now]
    assert m.is_running()


def test_out_of_range_edu_dma_is_refused_not_fatal(launch):
    m = launch("qemu-slim", devices=["edu"])
    edu = qtest.bind(m.pci, qtest.EduDriver)
    buf = m.alloc.alloc(4096)
    m.memory.fill(buf, 4096, 0x77)
    edu.start_dma(buf, qtest.edu.BUFFER_ADDR + 4000, 200, to_ram=False)
    m.qtest.clock_step(qtest.edu.DMA_DELAY_NS * 2)
    assert m.is_running()
    assert "out of bounds" in m.stderr_tail()
    # the device still works afterwards
    m.memory.write(buf, b"after")
    edu.bar.writeq(qtest.edu.REG_DMA_CMD, 0)
    edu.dma_to_device(buf, 5)
    out = m.alloc.alloc(64)
    edu.dma_from_device(out, 5)
    assert m.memory.read(out, 5) == b"after"


def test_make_run_demo(slim_binary):
    r = subprocess.run([sys.executable, os.path.join(SRC, "python", "qtest", "demo.py"),
                        "--binary", slim_binary], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("demo: OK")
    assert "DMA    data matches" in r.stdout
