# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: qemu-img convert of vdi/vpc/vmdk/vhdx/parallels images to and from raw and qcow2, our
# qemu-img against Debian's real one in the same run; medians and ratios are written
# between the formats markers of docs/benchmarks.md.
#
#   /usr/bin/python3 tests/bench/formats/bench_formats.py BUILD_DIR [--runs N] [--size MiB]
import argparse
import os
import random
import resource
import statistics
import subprocess
import tempfile
import time

REAL = "/usr/bin/qemu-img"
FORMATS = [("vdi", ""), ("vpc", ""), ("vmdk", ""), ("vmdk", "subformat=streamOptimized"),
           ("vhdx", ""), ("parallels", "")]


def timed(cmd):
    """Wall time and CPU time (user + system, all threads) of one run."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def make_raw(path, mib):
    """Half data, a quarter zeros written out, a quarter hole, in 1 MiB pieces."""
    rnd = random.Random(1)
    chunk = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
    with open(path, "wb") as f:
        for i in range(mib):
            if i % 4 < 2:
                f.write(chunk[i % 7:] + chunk[:i % 7])
            elif i % 4 == 2:
                f.write(b"\0" * (1 << 20))
            else:
                f.seek(1 << 20, 1)
        f.truncate(mib << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=256, help="MiB of the source image")
    ap.add_argument("--only", action="append", default=[], metavar="FMT",
                    help="run only this format (repeatable); its rows replace the same rows "
                         "of the table already in docs/benchmarks.md, the others stay")
    args = ap.parse_args()
    ours = os.path.join(args.build, "tools", "qemu-img", "qemu-img")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qs-bench-formats-") as d:
        raw = os.path.join(d, "src.raw")
        make_raw(raw, args.size)
        qcow2 = os.path.join(d, "src.qcow2")
        subprocess.run([REAL, "convert", "-O", "qcow2", raw, qcow2], check=True)
        srcs = {"raw": raw, "qcow2": qcow2}
        for fmt, opts in FORMATS:
            if args.only and fmt not in args.only:
                continue
            label = fmt + (f" ({opts.split('=')[1]})" if opts else "")
            o = ["-o", opts] if opts else []
            img = os.path.join(d, "img." + fmt)
            subprocess.run([REAL, "convert", "-O", fmt, *o, raw, img], check=True)
            cases = []
            for sname, src in srcs.items():
                cases.append((f"{sname} → {label}", lambda tool, src=src, sname=sname:
                              [tool, "convert", "-f", sname, "-O", fmt, *o, src,
                               os.path.join(d, "out." + fmt)]))
                cases.append((f"{label} → {sname}", lambda tool, sname=sname:
                              [tool, "convert", "-f", fmt, "-O", sname, img,
                               os.path.join(d, "out." + sname)]))
            for name, cmd in cases:
                t = {"ours": [], "real": []}
                for _ in range(args.runs):
                    for who, tool in (("ours", ours), ("real", REAL)):
                        t[who].append(timed(cmd(tool)))
                mo = statistics.median(w for w, _ in t["ours"])
                mr = statistics.median(w for w, _ in t["real"])
                co = statistics.median(c for _, c in t["ours"])
                cr = statistics.median(c for _, c in t["real"])
                rows.append((name, mo, mr, co, cr))
                print(f"{name:40s} ours {mo * 1000:8.1f} ms  real {mr * 1000:8.1f} ms  "
                      f"ratio {mr / mo:5.2f}  cpu ours {co * 1000:7.1f} ms real "
                      f"{cr * 1000:7.1f} ms", flush=True)
    load = os.getloadavg()[0]
    text = [f"qemu-img convert of a {args.size} MiB image (half random data, a quarter "
            "written zeros, a quarter hole), median of "
            f"{args.runs} runs each, ours against Debian's qemu-img 7.2 in the same run "
            f"(host load average {load:.1f} on {os.cpu_count()} CPUs at the end). "
            "Ratio = real / ours wall time (above 1: ours is faster); CPU = user + system "
            "time of all threads.", "",
            "| conversion | ours (ms) | QEMU 7.2 (ms) | ratio | ours CPU (ms) | QEMU CPU (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "benchmarks.md")
    with open(doc) as f:
        s = f.read()
    a, b = "<!-- BEGIN formats -->", "<!-- END formats -->"
    i, j = s.index(a) + len(a), s.index(b)
    table = [f"| {name} | {mo * 1000:.1f} | {mr * 1000:.1f} | {mr / mo:.2f} | {co * 1000:.0f} | "
             f"{cr * 1000:.0f} |" for name, mo, mr, co, cr in rows]
    if args.only:
        # keep the other formats' rows (and their run's header), replace ours in place
        fresh = {ln.split(" | ")[0]: ln for ln in table}
        old = [ln for ln in s[i:j].strip("\n").splitlines() if not ln.startswith("Rows of ")]
        while old and not old[-1]:
            old.pop()
        head, sep = text[2], text[3]

        def upgrade(ln):
            """An older run's line in this run's columns (its CPU times unknown)."""
            if ln.startswith("| conversion"):
                return head
            if ln.startswith("| ---"):
                return sep
            if ln.startswith("| ") and ln.count("|") < head.count("|"):
                return ln + " – |" * (head.count("|") - ln.count("|"))
            return ln
        text = [fresh.pop(ln.split(" | ")[0], upgrade(ln)) for ln in old] + list(fresh.values())
        text += ["", f"Rows of {', '.join(args.only)} re-measured separately: median of "
                 f"{args.runs} runs of a {args.size} MiB image."]
    else:
        text += table
    with open(doc, "w") as f:
        f.write(s[:i] + "\n" + "\n".join(text) + "\n" + s[j:])


if __name__ == "__main__":
    main()
