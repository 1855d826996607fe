#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-img benchmark: ours against QEMU 7.2's qemu-img (and GNU dd) in the same run, five
# runs each, medians and ratios, written into docs/benchmarks.md's qemu-img section.
# Usage: tests/bench/qemu-img/bench.py [BUILD_DIR] [--runs N] [--size-gib N] [--no-write]
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def sh(*args, **kw):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, **kw)


def timed(args, before=None):
    """Wall time and CPU time (user + system, all threads) of one run."""
    if before:
        before()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    sh(*args)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def make_mixed_raw(path, size):
    """Data and holes: 1 MiB of random data every 4 MiB, a compressible MiB every 8 MiB."""
    with open(path, "wb") as f:
        f.truncate(size)
        rnd = os.urandom(1 << 20)
        text = (b"qemu-slim benchmark text block " * 40000)[: 1 << 20]
        for off in range(0, size, 4 << 20):
            f.seek(off)
            f.write(rnd if (off // (4 << 20)) % 2 == 0 else text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    ours = os.path.join(a.build, "tools", "qemu-img", "qemu-img")
    real, dd = shutil.which("qemu-img"), shutil.which("dd")
    if not (os.path.exists(ours) and real and dd):
        sys.exit("bench: needs a built qemu-img in BUILD/tools/qemu-img, /usr/bin/qemu-img and dd")
    tmp = tempfile.mkdtemp(prefix="qs-bench-", dir="/var/tmp")
    size = int(a.size_gib * (1 << 30))
    src = os.path.join(tmp, "src.raw")
    make_mixed_raw(src, size)
    q = os.path.join(tmp, "src.qcow2")
    sh(real, "convert", "-O", "qcow2", src, q)
    empty = os.path.join(tmp, "empty.qcow2")
    sh(real, "create", "-f", "qcow2", empty, "1T")
    benchq = os.path.join(tmp, "bench.qcow2")
    out = os.path.join(tmp, "out")

    def rm_out():
        if os.path.exists(out):
            os.unlink(out)

    def fresh_bench():
        sh(real, "create", "-f", "qcow2", benchq, "1G")

    def prealloc_bench():
        sh(real, "create", "-f", "qcow2", "-o", "preallocation=metadata", benchq, "1G")

    gib = f"{a.size_gib:g} GiB"
    rows = [
        (f"convert qcow2→raw ({gib}, data and holes)", lambda t: [t, "convert", "-O", "raw", q, out], rm_out, real),
        (f"convert raw→qcow2 ({gib})", lambda t: [t, "convert", "-O", "qcow2", src, out], rm_out, real),
        (f"convert -c raw→qcow2 ({gib})", lambda t: [t, "convert", "-c", "-O", "qcow2", src, out], rm_out, real),
        ("convert empty 1 TiB qcow2→qcow2", lambda t: [t, "convert", "-O", "qcow2", empty, out], rm_out, real),
        (f"dd bs=1M raw→raw ({gib}) vs GNU dd", lambda t: ([t, "dd"] if t == ours else [t]) +
         [f"if={src}", f"of={out}", "bs=1M"], rm_out, dd),
        ("bench 4 KiB reads, qcow2 (-c 200000 -d 64)", lambda t: [t, "bench", "-c", "200000", "-d", "64", "-f", "qcow2", q], None, real),
        ("bench 4 KiB writes, new qcow2 (-c 100000 -w)", lambda t: [t, "bench", "-w", "-c", "100000", "-d", "64", "-f", "qcow2", benchq], fresh_bench, real),
        ("bench 4 KiB writes, preallocated qcow2 (-S 64k -w)", lambda t: [t, "bench", "-w", "-c", "16384", "-S", "65536", "-d", "64", "-f", "qcow2", benchq], prealloc_bench, real),
    ]
    results = []
    for name, cmd, before, peer in rows:
        ts_o, ts_p = [], []
        for _ in range(a.runs):
            ts_p.append(timed(cmd(peer), before))
            ts_o.append(timed(cmd(ours), before))
        mo, mp = statistics.median(w for w, _ in ts_o), statistics.median(w for w, _ in ts_p)
        co, cp = statistics.median(c for _, c in ts_o), statistics.median(c for _, c in ts_p)
        results.append((name, mo, mp, co, cp))
        print(f"{name}: ours {mo:.3f} s, theirs {mp:.3f} s, ratio {mo / mp:.2f}; CPU ours "
              f"{co:.3f} s, theirs {cp:.3f} s", flush=True)
    shutil.rmtree(tmp)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    lines = [f"Produced by `tests/bench/qemu-img/bench.py` ({a.runs} runs each, medians; ratio = "
             f"ours/theirs wall time, below 1 is faster; CPU = user + system time of all "
             f"threads; {os.cpu_count()} CPUs, {cpu}, host load average {load:.1f} at the "
             "end). Peers: QEMU 7.2's qemu-img from Debian's qemu-utils, GNU dd for the dd "
             "row. Rows above 1.00 are discussed in docs/qemu-img.md (Performance).", "",
             "| operation | ours (s) | theirs (s) | ratio | ours CPU (s) | theirs CPU (s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, mo, mp, co, cp in results:
        lines.append(f"| {name} | {mo:.3f} | {mp:.3f} | {mo / mp:.2f} | {co:.3f} | {cp:.3f} |")
    text = "\n".join(lines)
    if not a.no_write:
        doc = os.path.join(ROOT, "docs", "benchmarks.md")
        s = open(doc).read()
        b, e = "<!-- BEGIN qemu-img -->", "<!-- END qemu-img -->"
        i, j = s.index(b) + len(b), s.index(e)
        open(doc, "w").write(s[:i] + "\n" + text + "\n" + s[j:])
    print(text)


if __name__ == "__main__":
    main()
