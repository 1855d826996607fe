# SPDX-License-Identifier: GPL-2.0-or-later
# A scriptable stand-in for evloop-prof's socket (or a QMP monitor) used to test
# qemu-evtop's parsing and error paths: valid snapshots, garbage, oversize, hang-ups.
import json
import os
import socket
import threading
import time


def snapshot(t, pid=4242, since_ns=None, stuck=False):
    """A valid snapshot at time t (seconds): counters grow linearly with t."""
    since = int(t * 1e9) if since_ns is None else since_ns
    loops = [
        {"name": "main", "main": True, "tid": pid, "iterations": int(1000 * t),
         "dispatches": int(1100 * t), "poll_ns": int(0.8e9 * t),
         "dispatch_ns": int(0.2e9 * t), "current": None, "stuck": False},
        {"name": "io0", "main": False, "tid": pid + 1, "iterations": int(10 * t),
         "dispatches": int(10 * t), "poll_ns": 0, "dispatch_ns": int(0.5e9 * t),
         "current": ({"source": "blocker", "kind": "bh", "running_ns": 2_500_000_000}
                     if stuck else None),
         "stuck": stuck},
    ]
    sources = []
    for name, kind, loop, rate, mean, mx in [
            ("tick", "timer", "main", 1000, 100_000, 400_000),
            ("busy", "bh", "io0", 10, 50_000_000, 90_000_000),
            ("net-rx", "fd", "main", 100, 1_000_000, 3_000_000),
            ("zz-idle", "idle", "main", 1, 1_000, 2_000)]:
        count = int(rate * t)
        sources.append({"name": name, "kind": kind, "loop": loop, "count": count,
                        "total_ns": count * mean, "mean_ns": mean, "max_ns": mx,
                        "p50_ns": mean, "p99_ns": mx, "hist": [[10, count]]})
    return {"version": 1, "pid": pid, "since_reset_ns": since,
            "stuck_threshold_ns": 1_000_000_000, "loops": loops, "sources": sources}


class FakeServer:
    """Listens on a unix socket; `handler(conn_index, request_dict)` returns the bytes
    to send back (or None to hang up).  greeting: bytes sent on connect."""

    def __init__(self, path, handler=None, greeting=None, qmp=False, hangup=False):
        self.path = path
        self.hangup = hangup
        self.qmp = qmp
        self.greeting = greeting
        self.handler = handler or self.default_handler
        self.requests = []
        self.t0 = time.monotonic()
        self.resets = 0
        self.stuck = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def default_handler(self, n, req):
        cmd = req.get("execute")
        if cmd == "qmp_capabilities":
            return b'{"return": {}}\n'
        if cmd == "reset-evloop-stats":
            self.resets += 1
            self.t0 = time.monotonic()
            return b'{"return": {}}\n'
        if cmd == "query-evloop-stats":
            t = time.monotonic() - self.t0 + 1.0
            ev = b'{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n' \
                if self.qmp else b""
            return ev + json.dumps({"return": snapshot(t, stuck=self.stuck)}).encode() + b"\n"
        return json.dumps({"error": {"class": "CommandNotFound",
                                     "desc": "The command %s has not been found" % cmd}
                           }).encode() + b"\n"

    def serve(self):
        n = 0
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.client, args=(c, n), daemon=True).start()
            n += 1

    def client(self, c, n):
        try:
            if self.greeting is not None:
                c.sendall(self.greeting)
            elif self.qmp:
                c.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, '
                          b'"major": 0}, "package": ""}, "capabilities": []}}\n')
            else:
                c.sendall(b'{"evloop-prof": {"version": 1, "pid": 4242}}\n')
            if self.hangup:
                return
            f = c.makefile("rb")
            for line in f:
                try:
                    req = json.loads(line)
                except ValueError:
                    req = {"raw": line}
                self.requests.append(req)
                out = self.handler(n, req)
                if out is None:
                    break
                c.sendall(out)
        except OSError:
            pass
        finally:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if os.path.exists(self.path):
            os.unlink(self.path)
