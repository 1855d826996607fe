# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-evtop against a scripted server: batch text, JSON, QMP negotiation, sorting and
# filtering, bad paths, garbage, oversized and malformed replies, hang-ups, the TUI.
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeprof import FakeServer, snapshot  # noqa: E402

EVTOP = os.environ.get("QS_EVTOP")


def require(path, what):
    if path and os.access(path, os.X_OK):
        return path
    msg = "%s not available (%s)" % (what, path or "path not set")
    if os.environ.get("QS_REQUIRE_ALL") == "1":
        pytest.fail(msg + " while QS_REQUIRE_ALL=1")
    pytest.skip(msg)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="evtop-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def evtop(*args, timeout=30):
    require(EVTOP, "qemu-evtop")
    return subprocess.run([EVTOP] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout)


def frames(out):
    return [f for f in out.split("qemu-evtop - ") if f.strip()]


def source_rows(frame):
    lines = frame.splitlines()
    i = next(i for i, l in enumerate(lines) if l.lstrip().startswith("CALLS/S"))
    rows = []
    for l in lines[i + 1:]:
        if not l.strip():
            break
        f = l.split()
        rows.append({"calls": float(f[0]), "cpu": float(f[1]), "kind": f[5], "loop": f[6],
                     "name": f[7]})
    return rows


def test_batch_text(tmp):
    srv = FakeServer(os.path.join(tmp, "p.sock"))
    srv.stuck = True
    try:
        r = evtop("-b", "-n", 3, "-d", 0.3, srv.path)
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    fs = frames(r.stdout)
    assert len(fs) == 3
    last = fs[-1]
    assert "(evloop-prof) - pid 4242 - 2 loops, 4 sources" in last
    assert re.search(r"^main\s+4242\s+20\.0\s+", last, re.M)
    assert re.search(r"^io0\s+4243\s+50\.0 .*STUCK in bh 'blocker' for 2\.50s", last, re.M)
    rows = source_rows(last)
    names = [x["name"] for x in rows]
    assert names[0] == "busy" and names[-1] == "zz-idle" and len(names) == 4
    tick = next(x for x in rows if x["name"] == "tick")
    # counters grow at 1000/s in the fake: the rate over the last interval says so
    assert 900 < tick["calls"] < 1100
    assert 9.0 < tick["cpu"] < 11.0
    assert tick["kind"] == "timer" and tick["loop"] == "main"
    assert srv.requests.count({"execute": "query-evloop-stats"}) == 3


def test_sort_filter_reverse(tmp):
    srv = FakeServer(os.path.join(tmp, "p.sock"))
    try:
        names = lambda *a: [x["name"] for x in source_rows(evtop("-b", "-n", 1, *a,
                                                                 srv.path).stdout)]
        assert names("-o", "name") == ["busy", "net-rx", "tick", "zz-idle"]
        assert names("-o", "name", "-r") == ["zz-idle", "tick", "net-rx", "busy"]
        assert names("-o", "calls") == ["tick", "net-rx", "busy", "zz-idle"]
        assert names("-o", "max") == ["busy", "net-rx", "tick", "zz-idle"]
        assert names("-f", "TIMER") == ["tick"]
        assert names("-f", "io0") == ["busy"]
        r = evtop("-b", "-n", 1, "-f", "nothing-matches", srv.path)
        assert "(0 shown, filter 'nothing-matches')" in r.stdout
    finally:
        srv.close()


def test_json_mode(tmp):
    srv = FakeServer(os.path.join(tmp, "p.sock"))
    try:
        r = evtop("--json", "-n", 2, "-d", 0.1, srv.path)
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    for l in lines:
        s = json.loads(l)
        assert s["version"] == 1 and len(s["loops"]) == 2 and len(s["sources"]) == 4


def test_qmp_monitor(tmp):
    srv = FakeServer(os.path.join(tmp, "q.sock"), qmp=True)
    try:
        r = evtop("-b", "-n", 2, "-d", 0.1, "--reset", srv.path)
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    assert "(QMP)" in r.stdout
    # capabilities are negotiated first, on every connection; events are skipped
    assert srv.requests[0] == {"execute": "qmp_capabilities"}
    assert {"execute": "reset-evloop-stats"} in srv.requests
    assert srv.resets == 1


def test_bad_paths(tmp):
    r = evtop("-b", "-n", 1, os.path.join(tmp, "absent.sock"))
    assert r.returncode == 1
    assert "cannot connect to '%s': No such file or directory" % os.path.join(
        tmp, "absent.sock") in r.stderr
    assert "-plugin evloop-prof,socket=PATH" in r.stderr
    long = os.path.join(tmp, "x" * 200)
    r = evtop("-b", long)
    assert r.returncode == 1 and "is too long (a unix socket path has 1 to 107 bytes)" in r.stderr
    plain = os.path.join(tmp, "file")
    open(plain, "w").close()
    r = evtop("-b", plain)
    assert r.returncode == 1 and "cannot connect to '%s'" % plain in r.stderr
    # a socket file nobody listens on any more
    dead = os.path.join(tmp, "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    s.close()
    r = evtop("-b", dead)
    assert r.returncode == 1 and "Connection refused (nobody is listening there)" in r.stderr
    # the screen needs a terminal: without one, a pointer to -b
    r = evtop(os.path.join(tmp, "absent.sock"))
    assert r.returncode == 2 and "use -b (or --json)" in r.stderr


def test_tui_bad_path(tmp):
    # on a terminal, a bad socket is refused plainly before the screen is taken
    err = os.path.join(tmp, "err")
    t = Tmux(tmp, "%s %s 2>%s" % (require(EVTOP, "qemu-evtop"),
                                  os.path.join(tmp, "absent.sock"), err))
    try:
        assert t.exit_status() == 1
        with open(err) as f:
            assert "cannot connect to '%s'" % os.path.join(tmp, "absent.sock") in f.read()
    finally:
        t.kill()


@pytest.mark.parametrize("greeting,expect", [
    (b"\x00\xff\xfegarbage\n", "sent a line with a NUL byte"),
    (b"\xff\xfegarbage\n", "sent a malformed greeting"),
    (b"[1, 2, 3]\n", "sent a malformed greeting (not a JSON object)"),
    (b'{"hello": 1}\n', "is neither an evloop-prof socket nor a QMP monitor"),
    (b"no newline and then gone", "closed the connection"),
])
def test_garbage_greeting(tmp, greeting, expect):
    srv = FakeServer(os.path.join(tmp, "g.sock"), greeting=greeting, hangup=True)
    try:
        r = evtop("-b", "-n", 1, "-t", 1, srv.path)
    finally:
        srv.close()
    assert r.returncode == 1
    assert expect in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1     # one line, no crash report


def bad_snapshot(mutate):
    s = snapshot(2.0)
    mutate(s)
    return (json.dumps({"return": s}) + "\n").encode()


@pytest.mark.parametrize("reply,expect", [
    (b"this is not json\n", "sent a malformed reply"),
    (b'{"neither": 1}\n', "sent a reply with neither \"return\" nor \"error\""),
    (b'{"return": 5}\n', "malformed snapshot: not a JSON object"),
    (bad_snapshot(lambda s: s["sources"][0].update(count=-5)),
     "malformed snapshot: sources[0].count is -5, expected a non-negative integer"),
    (bad_snapshot(lambda s: s["loops"][1].update(name=7)),
     "malformed snapshot: loops[1].name is 7, expected a string"),
    (bad_snapshot(lambda s: s["loops"][0].pop("poll_ns")),
     "malformed snapshot: loops[0] has no \"poll_ns\""),
    (bad_snapshot(lambda s: s["loops"][0].update(current=[1])),
     "malformed snapshot: loops[0].current is neither null nor an object"),
    (bad_snapshot(lambda s: s.update(version=2)), "snapshot version 2 is not supported"),
    (bad_snapshot(lambda s: s.update(loops=[{}] * 2000)),
     "malformed snapshot: snapshot.loops has 2000 entries (at most 1024)"),
    (bad_snapshot(lambda s: s["sources"][1].update(name="x" * 5000)),
     "sources[1].name is a string of 5000 bytes (at most 4096)"),
    (bad_snapshot(lambda s: s["sources"][2].update(max_ns=1.5)),
     "sources[2].max_ns is 1.5, expected a non-negative integer"),
    (b'{"error": {"class": "CommandNotFound", "desc": "The command query-evloop-stats '
     b'has not been found"}}\n', "is qemu-slim running with -plugin evloop-prof?"),
])
def test_bad_replies(tmp, reply, expect):
    srv = FakeServer(os.path.join(tmp, "b.sock"), handler=lambda n, req: reply)
    try:
        r = evtop("-b", "-n", 1, srv.path)
    finally:
        srv.close()
    assert r.returncode == 1
    assert expect in r.stderr, r.stderr


def test_oversized_reply(tmp):
    big = b'{"return": "' + b"x" * (33 << 20)
    srv = FakeServer(os.path.join(tmp, "o.sock"), handler=lambda n, req: big)
    try:
        r = evtop("-b", "-n", 1, "-t", 20, srv.path)
    finally:
        srv.close()
    assert r.returncode == 1
    assert "is longer than 32 MiB; giving up on it" in r.stderr


def test_no_reply(tmp):
    srv = FakeServer(os.path.join(tmp, "n.sock"), handler=lambda n, req: b"")
    try:
        t0 = time.monotonic()
        r = evtop("-b", "-n", 1, "-t", 0.5, srv.path)
        assert time.monotonic() - t0 < 5
    finally:
        srv.close()
    assert r.returncode == 1
    assert "no reply from '%s' within 0.5 s (is the emulator stuck?)" % srv.path in r.stderr


def test_server_disappears_and_returns(tmp):
    path = os.path.join(tmp, "d.sock")
    srv = FakeServer(path)
    p = subprocess.Popen([require(EVTOP, "qemu-evtop"), "-b", "-n", "12", "-d", "0.25", path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    srv.close()                     # the emulator goes away
    time.sleep(1.0)
    srv = FakeServer(path)          # and comes back
    try:
        out, err = p.communicate(timeout=30)
    finally:
        srv.close()
    assert "qemu-evtop: disconnected: " in err
    assert "reconnected to '%s'" % path in err
    assert re.search(r"^disconnected: .*; last data \d+\.\d s old$", out, re.M)
    assert p.returncode == 0          # the last refresh had fresh data


def test_usage():
    r = evtop("--help")
    assert r.returncode == 0 and "usage: qemu-evtop" in r.stdout and "Keys" in r.stdout
    for args, msg in [((), "no socket given"),
                      (("-d", "0", "s"), "-d 0: expected seconds from 0.05 to 3600"),
                      (("-n", "x", "s"), "-n x: expected a number of iterations"),
                      (("-o", "size", "s"), "-o size: expected cpu, calls, max or name"),
                      (("--bogus", "s"), "--bogus: unknown option"),
                      (("a", "b"), "b: only one socket may be given")]:
        r = evtop(*args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


# ---- the TUI, driven in tmux ----

class Tmux:
    def __init__(self, tmp, cmd):
        self.tmux = require(shutil.which("tmux"), "tmux")
        self.sock = os.path.join(tmp, "tmux.sock")
        self.status = os.path.join(tmp, "status")
        shell = "%s; echo $? > %s" % (cmd, self.status)
        subprocess.run([self.tmux, "-S", self.sock, "new-session", "-d", "-x", "130",
                        "-y", "40", "sh", "-c", shell], check=True,
                       env=dict(os.environ, TERM="xterm"))

    def screen(self):
        return subprocess.run([self.tmux, "-S", self.sock, "capture-pane", "-p"],
                              capture_output=True, text=True).stdout

    def keys(self, *keys):
        subprocess.run([self.tmux, "-S", self.sock, "send-keys"] + list(keys), check=True)

    def wait(self, pred, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError("screen never matched:\n" + self.screen())

    def exit_status(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if os.path.exists(self.status):
                with open(self.status) as f:
                    txt = f.read().strip()
                if txt:
                    return int(txt)
            time.sleep(0.1)
        raise AssertionError("qemu-evtop did not exit:\n" + self.screen())

    def kill(self):
        subprocess.run([self.tmux, "-S", self.sock, "kill-server"], capture_output=True)


def table_names(screen):
    lines = screen.splitlines()
    i = next(i for i, l in enumerate(lines) if l.lstrip().startswith("CALLS/S"))
    return [l.split()[7] for l in lines[i + 1:] if l.strip()]


def test_tui(tmp):
    path = os.path.join(tmp, "t.sock")
    srv = FakeServer(path)
    srv.stuck = True
    t = Tmux(tmp, "%s -d 0.3 %s" % (require(EVTOP, "qemu-evtop"), path))
    try:
        s = t.wait(lambda s: "CALLS/S" in s and "io0" in s)
        assert s.startswith("qemu-evtop - %s (evloop-prof) - pid 4242" % path)
        assert "STUCK in bh 'blocker'" in s
        t.wait(lambda s: table_names(s)[0] == "busy")          # default: CPU%
        t.keys("N")
        t.wait(lambda s: table_names(s) == ["busy", "net-rx", "tick", "zz-idle"]
               and "sort NAME" in s)
        t.keys("R")
        t.wait(lambda s: table_names(s) == ["zz-idle", "tick", "net-rx", "busy"])
        t.keys("R", "C")
        t.wait(lambda s: table_names(s)[0] == "tick" and "sort CALLS/S" in s)
        t.keys("M")
        t.wait(lambda s: table_names(s)[0] == "busy" and "sort MAX" in s)
        t.keys("P")
        t.wait(lambda s: "sort CPU%" in s)
        t.keys("/")
        t.wait(lambda s: "Filter (empty shows all):" in s)
        t.keys("tick", "Enter")
        t.wait(lambda s: table_names(s) == ["tick"] and "filter 'tick'" in s)
        t.keys("/", "Enter")
        t.wait(lambda s: len(table_names(s)) == 4)
        t.keys("d")
        t.wait(lambda s: "Delay in seconds (now 0.30):" in s)
        t.keys("0.2", "Enter")
        t.wait(lambda s: "refresh every 0.20 s" in s)
        t.keys("z")
        t.wait(lambda s: srv.resets == 1)
        t.keys("h")
        t.wait(lambda s: "qemu-evtop - keys" in s)
        t.keys("x")
        t.wait(lambda s: "CALLS/S" in s)
        # the emulator goes away: "disconnected", last numbers kept; then it returns
        srv.close()
        s = t.wait(lambda s: "disconnected: " in s)
        assert "tick" in s and "main" in s
        srv = FakeServer(path)
        t.wait(lambda s: "disconnected" not in s and "CALLS/S" in s)
        t.keys("q")
        assert t.exit_status() == 0
    finally:
        t.kill()
        srv.close()
