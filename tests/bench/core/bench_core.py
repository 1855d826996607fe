#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Core benchmark: time from exec to the QMP greeting (no modules, every module) and qtest
# MMIO round-trips per second, qemu-slim against the real QEMU in the same run; writes
# the `core` section of docs/benchmarks.md.

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "python"))

import qtest  # noqa: E402
from qtest.profiles import make_profile  # noqa: E402

QEMU_RISCV = "/usr/bin/qemu-system-riscv64"
QEMU_X86 = "/usr/bin/qemu-system-x86_64"
WORKDIR = None


def find_slim(build):
    for b in (os.path.join(build, "qemu-slim"), os.path.join(build, "core", "qemu-slim")):
        if os.access(b, os.X_OK):
            return os.path.abspath(b)
    sys.exit("bench: no qemu-slim in %s (build first)" % build)


def slim_modules(binary):
    out = subprocess.run([binary, "-plugin", "help"], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"^  (\S+) \S+ \(ABI ", out, re.M)


def time_to_greeting(binary, args, timeout=30.0):
    """Seconds from exec to the first QMP line, with QMP as a client of our socket."""
    with tempfile.TemporaryDirectory(prefix="qsb-", dir="/tmp") as d:
        path = os.path.join(d, "qmp.sock")
        ls = socket.socket(socket.AF_UNIX)
        ls.bind(path)
        ls.listen(1)
        ls.settimeout(timeout)
        t0 = time.perf_counter()
        p = subprocess.Popen([binary] + args + ["-qmp", "unix:" + path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            conn, _ = ls.accept()
            conn.settimeout(timeout)
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    raise RuntimeError("%s closed QMP before its greeting: %s"
                                       % (binary, p.stderr.read().decode()[-500:]))
                buf += chunk
            t = time.perf_counter() - t0
            if not buf.startswith(b'{"QMP"'):
                raise RuntimeError("%s: first QMP line is not a greeting: %r" % (binary, buf[:200]))
            conn.close()
            return t
        finally:
            p.kill()
            p.wait()
            ls.close()


def startup_args(binary, machine):
    """The command line each peer needs to reach its QMP greeting on `machine`."""
    prof = make_profile(binary, machine)
    # Both stopped (-S), so no guest code competes with start-up; q35's halt firmware
    # goes in WORKDIR.
    args = [a for a in prof.args(WORKDIR, qtest=False) if a != "-S"]
    return args + ["-S"]


def mmio_rate(binary, machine, count, args=()):
    """qtest readl round-trips per second on edu's liveness register."""
    with qtest.Machine(binary, machine=machine, devices=["edu"], args=list(args)) as m:
        edu = qtest.bind(m.pci, qtest.EduDriver)
        off = edu.bar.addr + 4
        qt = m.qtest
        qt.writel(off, 0x12345678)
        t0 = time.perf_counter()
        for _ in range(count):
            qt.readl(off)
        return count / (time.perf_counter() - t0)


def median_of(runs, fn):
    return statistics.median(fn() for _ in range(runs))


def write_section(path, text, cmd):
    with open(path) as f:
        doc = f.read()
    begin, end = "<!-- BEGIN core -->", "<!-- END core -->"
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        sys.exit("bench: %s lacks the %s / %s markers" % (path, begin, end))
    doc = doc[:i + len(begin)] + "\n" + text.rstrip() + "\n" + doc[j:]
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description="qemu-slim core benchmark")
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=15, help="repetitions per start-up figure")
    ap.add_argument("--mmio-runs", type=int, default=5, help="repetitions of the MMIO loop")
    ap.add_argument("--count", type=int, default=5000, help="round-trips per MMIO loop")
    ap.add_argument("--write", metavar="MD", help="replace the core section of this file")
    a = ap.parse_args()
    slim = find_slim(a.build)
    mods = slim_modules(slim)
    with_mods = [x for m in mods for x in ("-plugin", m)]
    peers = [(QEMU_RISCV, "virt", "QEMU 7.2 riscv64 virt"), (QEMU_X86, "q35", "QEMU 7.2 x86_64 q35")]

    rows = []   # (label, slim value, {peer label: value}, unit)
    def say(msg):
        print(msg, flush=True)

    say("start-up, %d runs each" % a.runs)
    s0 = median_of(a.runs, lambda: time_to_greeting(slim, startup_args(slim, "virt")))
    say("  qemu-slim, no modules: %.1f ms" % (s0 * 1e3))
    s1 = median_of(a.runs, lambda: time_to_greeting(slim, startup_args(slim, "virt") + with_mods))
    say("  qemu-slim, %d modules: %.1f ms" % (len(mods), s1 * 1e3))
    peer_start = {}
    for b, mach, label in peers:
        peer_start[label] = median_of(a.runs, lambda: time_to_greeting(b, startup_args(b, mach)))
        say("  %s: %.1f ms" % (label, peer_start[label] * 1e3))

    say("qtest readl round-trips, %d x %d" % (a.mmio_runs, a.count))
    r0 = median_of(a.mmio_runs, lambda: mmio_rate(slim, "virt", a.count))
    say("  qemu-slim: %.0f/s" % r0)
    peer_rate = {}
    for b, mach, label in peers:
        peer_rate[label] = median_of(a.mmio_runs, lambda: mmio_rate(b, mach, a.count))
        say("  %s: %.0f/s" % (label, peer_rate[label]))

    ref = peers[0][2]
    cmd = "/usr/bin/python3 tests/bench/core/bench_core.py " + " ".join(sys.argv[1:])
    lines = [
        "Command: `%s`  " % cmd,
        "Host: %s, %d CPUs, Python %s; %s.  " % (platform.platform(), os.cpu_count(),
                                                platform.python_version(),
                                                time.strftime("%Y-%m-%d")),
        "Start-up is exec to the first QMP line (QMP as a client of our unix socket,"
        " median of %d); round-trips are qtest `readl` of edu's BAR0 (median of %d loops"
        " of %d). The real QEMU has no qtest accelerator in Debian, so its CPU is parked"
        " (-S for start-up; a halt loop for round-trips)." % (a.runs, a.mmio_runs, a.count),
        "",
        "| measurement | qemu-slim | %s | %s | qemu-slim vs QEMU virt (>1: qemu-slim better) |"
        % (peers[0][2], peers[1][2]),
        "|---|---:|---:|---:|---:|",
        "| exec to QMP greeting, no modules | %.1f ms | %.1f ms | %.1f ms | %.2f |"
        % (s0 * 1e3, peer_start[ref] * 1e3, peer_start[peers[1][2]] * 1e3, peer_start[ref] / s0),
        "| exec to QMP greeting, all %d modules (%s) | %.1f ms | | | %.2f |"
        % (len(mods), ", ".join(mods) or "none built", s1 * 1e3, peer_start[ref] / s1),
        "| qtest MMIO round-trips per second | %.0f | %.0f | %.0f | %.2f |"
        % (r0, peer_rate[ref], peer_rate[peers[1][2]], r0 / peer_rate[ref]),
    ]
    text = "\n".join(lines)
    print(text)
    if a.write:
        write_section(a.write, text, cmd)
        say("bench: wrote the core section of %s" % a.write)


if __name__ == "__main__":
    WORKDIR = tempfile.mkdtemp(prefix="qsb-", dir="/tmp")
    try:
        main()
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)
