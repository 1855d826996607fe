# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-slim's harts seen from outside: QMP query-cpus-fast, stop/cont/quit with guests
# that never stop, a guest stuck on an unfetchable trap vector, -d op/op_opt dumps,
# round-robin and Ztso runs, and one-line errors for bad -cpu/-accel options.
import json
import os
import socket
import subprocess
import tempfile
import time

import pytest

SLIM = os.environ["QS_TCG_SLIM"]
GUEST = os.environ["QS_TCG_GUEST_DIR"]


class Qmp:
    def __init__(self, path):
        for _ in range(200):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                time.sleep(0.02)
        else:
            raise AssertionError("QMP socket never appeared")
        self.f = self.s.makefile("rw")
        assert "QMP" in json.loads(self.f.readline())
        assert "return" in self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" not in r:
                return r


_spawned = []


@pytest.fixture(autouse=True)
def _kill_leftovers():
    """A failed assertion must not leave a qemu-slim with spinning harts behind."""
    yield
    while _spawned:
        p = _spawned.pop()
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def start(tmp, *args):
    sock = os.path.join(tmp, "qmp.sock")
    p = subprocess.Popen([SLIM, "-M", "virt", "-display", "none", "-serial", "none",
                          "-qmp", f"unix:{sock},server=on,wait=off", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _spawned.append(p)
    return p, Qmp(sock)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in %.0f s" % timeout
        time.sleep(0.02)


def test_spinning_harts_stop_cont_quit():
    with tempfile.TemporaryDirectory() as tmp:
        p, q = start(tmp, "-smp", "3", "-kernel", os.path.join(GUEST, "spin.elf"))
        cpus = q.cmd("query-cpus-fast")["return"]
        assert [c["cpu-index"] for c in cpus] == [0, 1, 2]
        tids = {c["thread-id"] for c in cpus}
        assert len(tids) == 3 and 0 not in tids          # one host thread per hart
        assert all(c["target"] == "riscv64" for c in cpus)
        # every hart counts (polled: the host may be busy and schedule a hart late)
        wait_for(lambda: all(h["x"][5] > 0 for h in q.cmd("x-query-harts")["return"]))
        assert q.cmd("stop") == {"return": {}}
        assert q.cmd("query-status")["return"]["status"] == "paused"
        a = q.cmd("x-query-harts")["return"]
        time.sleep(0.1)
        b = q.cmd("x-query-harts")["return"]
        assert a == b                                      # nothing moves while stopped
        assert q.cmd("cont") == {"return": {}}
        wait_for(lambda: all(c["x"][5] != a[i]["x"][5]
                             for i, c in enumerate(q.cmd("x-query-harts")["return"])))
        q.cmd("quit")
        assert p.wait(timeout=10) == 0


def test_single_threaded_round_robin():
    with tempfile.TemporaryDirectory() as tmp:
        p, q = start(tmp, "-smp", "2", "-accel", "tcg,thread=single",
                     "-kernel", os.path.join(GUEST, "spin.elf"))
        cpus = q.cmd("query-cpus-fast")["return"]
        assert cpus[0]["thread-id"] == cpus[1]["thread-id"]
        # both harts get time
        wait_for(lambda: all(h["x"][5] > 0 for h in q.cmd("x-query-harts")["return"]))
        q.cmd("stop")
        q.cmd("quit")
        assert p.wait(timeout=10) == 0


def test_stuck_guest_reports_and_quits():
    with tempfile.TemporaryDirectory() as tmp:
        p, q = start(tmp, "-kernel", os.path.join(GUEST, "stuck.elf"))
        wait_for(lambda: q.cmd("x-query-harts")["return"][0]["state"] == "stuck")
        h = q.cmd("x-query-harts")["return"][0]
        assert h["mcause"] == 1                            # instruction access fault
        q.cmd("quit")
        assert p.wait(timeout=10) == 0
        err = p.stderr.read()
        assert "instruction access fault at 0x1000" in err and "mtvec 0x1000" in err


def run(*args, timeout=60):
    return subprocess.run([SLIM, "-M", "virt", "-nographic", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_op_dumps():
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "ops.log")
        r = run("-kernel", os.path.join(GUEST, "mem.elf"), "-d", "op,op_opt", "-D", log)
        assert r.returncode == 0, r.stdout + r.stderr
        text = open(log).read()
        assert "OP:\n" in text and "OP after optimization and liveness analysis:" in text
        assert "qemu_ld" in text and "atomic_rmw" in text and "cmpxchg" in text
        assert " ---- 0000000080000000" in text


def test_ztso_and_default_payload():
    r = run("-smp", "4", "-cpu", "rv64,ztso=on", "-kernel", os.path.join(GUEST, "smp-4.elf"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "smp: 4 harts" in r.stdout and ": ok" in r.stdout
    r = run("-smp", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "qemu-slim demo:" in r.stdout and "(correct)" in r.stdout


def test_bad_options():
    for args, want in [(["-cpu", "cortex-a53"], "-cpu cortex-a53: unknown CPU model"),
                       (["-cpu", "rv64,ztso=maybe"], "unknown option 'ztso=maybe'"),
                       (["-accel", "tcg,thread=many"], "unknown option 'thread=many'"),
                       (["-accel", "kvm"], "accelerator 'kvm' is not available"),
                       (["-d", "bogus"], "unknown log item 'bogus'")]:
        r = run(*args, timeout=10)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qemu-slim: ") and want in lines[0], r.stderr


def hang_states(q):
    return {h["cpu-index"]: h for h in q.cmd("x-query-harts")["return"]}


def check_hang(accel):
    """Four harts that never stop, each its own way: stop/cont/quit still work."""
    with tempfile.TemporaryDirectory() as tmp:
        p, q = start(tmp, "-smp", "4", "-accel", accel,
                     "-kernel", os.path.join(GUEST, "hang.elf"))
        assert len(q.cmd("query-cpus-fast")["return"]) == 4
        wait_for(lambda: (lambda h: h[1]["state"] == "wfi" and h[2]["mcause"] == 2 and
                                    h[3]["x"][8] > 0)(hang_states(q)))
        h = hang_states(q)
        assert h[1]["state"] == "wfi", h[1]             # asleep with interrupts off
        assert h[2]["mcause"] == 2 and h[2]["pc"] == h[2]["mepc"], h[2]   # trap storm
        assert q.cmd("stop") == {"return": {}}
        a = hang_states(q)
        time.sleep(0.05)
        assert hang_states(q) == a                      # nothing moves while stopped
        assert q.cmd("cont") == {"return": {}}
        # the self-modifying loop goes on
        wait_for(lambda: hang_states(q)[3]["x"][8] > a[3]["x"][8])
        b = hang_states(q)
        assert b[0]["state"] == "running" and b[0]["pc"] == a[0]["pc"]
        assert q.cmd("query-status")["return"]["status"] == "running"
        q.cmd("quit")
        assert p.wait(timeout=10) == 0
        assert p.stderr.read() == ""


def test_hanging_guests_multi_thread():
    check_hang("tcg,thread=multi")


def test_hanging_guests_round_robin():
    check_hang("tcg,thread=single")
