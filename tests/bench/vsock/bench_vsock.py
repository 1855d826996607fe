#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Benchmark: vsock loopback throughput in a Debian guest (no monitor / monitor up / tcpdump)
# with our vsockmon.ko and Debian's, and tshark's dissection time, ours vs built-in.
"""Usage: tests/bench/vsock/bench_vsock.py BUILD_DIR [--mib N] [--reps N] [--no-write]

BUILD_DIR is a top-level build (with subprojects vsockmon and wireshark-plugin built).
Writes the results between <!-- BEGIN vsock --> and <!-- END vsock --> in
docs/benchmarks.md.
"""
import argparse
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import qsvm  # noqa: E402

GUEST = r"""
set -u
bulk() { vsock-traffic bulk {mib} | sed -n 's/.*MBps=\([0-9.]*\).*/\1/p'; }
wait_listening() { i=0; while ! grep -q "listening on" "$1"; do
  i=$((i+1)); [ $i -gt 100 ] && exit 3; sleep 0.1; done; }
bulk > /dev/null; bulk > /dev/null            # warm up TCG's translation cache
# Interleaved: each round measures every condition once, so drift hits all alike.
for i in $(seq {reps}); do
  progress "round $i"
  echo "none $(bulk)"
  order="ours distro"; [ $((i % 2)) = 0 ] && order="distro ours"
  for mod in $order; do
    insmod /qsvm/$mod/vsockmon.ko || exit 2
    ip link add vsockmon0 type vsockmon && ip link set vsockmon0 up || exit 4
    echo "monitor-$mod $(bulk)"
    tcpdump -Z root -U -B 32768 -i vsockmon0 -w /tmp/cap.pcap 2> /tmp/td.err & T=$!
    wait_listening /tmp/td.err
    echo "tcpdump-$mod $(bulk)"
    kill -INT $T; wait $T
    rm -f /tmp/cap.pcap
    ip link del vsockmon0
    rmmod vsockmon || exit 5
  done
done
"""


def guest_throughput(build, mib, reps):
    ko = os.path.join(build, "subprojects", "vsockmon", "vsockmon.ko")
    traffic = os.path.join(build, "subprojects", "vsockmon", "tests", "vsock-traffic")
    for p in (ko, traffic):
        if not os.path.exists(p):
            sys.exit(f"bench: {p} is missing: build {build} with -Dvsockmon=enabled first")
    kernel = qsvm.Kernel().prepare()
    distro = os.path.join(kernel.moddir, kernel.module_path("vsockmon"))
    script = GUEST.replace("{mib}", str(mib)).replace("{reps}", str(reps))
    r = qsvm.Guest(script, kernel=kernel, modules=["vsock_loopback"],
                   binaries=["ip", "tcpdump", traffic],
                   files={"/qsvm/ours/vsockmon.ko": ko, "/qsvm/distro/vsockmon.ko": distro},
                   memory=1024).run(timeout=900).check()
    res = {}
    for line in r.stdout.splitlines():
        label, _, v = line.partition(" ")
        res.setdefault(label, []).append(float(v))
    return res, kernel.release


SNAP = 128


def big_capture(src, dst, copies):
    """The real capture's frames, repeated with fresh ports so each copy is new streams."""
    with open(src, "rb") as f:
        data = f.read()
    recs, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        recs.append(bytearray(data[off + 16:off + 16 + incl]))
        off += 16 + incl
    with open(dst, "wb") as f:
        f.write(data[:16] + struct.pack("<I", SNAP) + data[20:24])
        for c in range(copies):
            for i, raw in enumerate(recs):
                fr = bytearray(raw)
                for o in (16, 20, 32 + 16, 32 + 20):         # ports in both headers
                    port = struct.unpack_from("<I", fr, o)[0]
                    struct.pack_into("<I", fr, o, port + 10000 * (c + 1))
                cut = fr[:SNAP]                      # like tcpdump -s 128
                f.write(struct.pack("<IIII", c, i, len(cut), len(fr)))
                f.write(cut)
    return len(recs) * copies


def tshark_times(build, reps, copies):
    plugin = os.path.join(build, "subprojects", "wireshark-plugin", "vsockmon.so")
    if not os.path.exists(plugin):
        sys.exit(f"bench: {plugin} is missing: build with -Dwireshark-plugin=enabled first")
    top = tempfile.mkdtemp(prefix="vsock-bench-")
    try:
        os.chmod(top, 0o755)
        pdir = os.path.join(top, "ours", ".local/lib/wireshark/plugins/4.0/epan")
        os.makedirs(pdir)
        os.makedirs(os.path.join(top, "builtin"))
        shutil.copy(plugin, pdir)
        pcap = os.path.join(top, "big.pcap")
        n = big_capture(os.path.join(ROOT, "wireshark-plugin", "tests", "data",
                                     "vsock-loopback.pcap"), pcap, copies)
        for d, _, files in os.walk(top):
            os.chown(d, 65534, 65534)
            for f in files:
                os.chown(os.path.join(d, f), 65534, 65534)
        one = os.path.join(top, "one.pcap")
        big_capture(os.path.join(ROOT, "wireshark-plugin", "tests", "data",
                                 "vsock-loopback.pcap"), one, 1)
        times = {"ours": [], "builtin": [], "ours-start": [], "builtin-start": []}
        for _ in range(reps):
            for which, f in (("ours", pcap), ("builtin", pcap), ("ours-start", one),
                             ("builtin-start", one)):
                argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "tshark", "-r", f, "-T", "fields", "-e", "frame.protocols"]
                env = dict(os.environ, HOME=os.path.join(top, which.split("-")[0]))
                t0 = time.monotonic()
                p = subprocess.run(argv, env=env, capture_output=True, timeout=600)
                dt = time.monotonic() - t0
                if p.returncode != 0:
                    sys.exit(f"bench: tshark ({which}) failed: {p.stderr.decode()[-500:]}")
                proto = "vsockmon" if which.startswith("ours") else "vsock"
                if p.stdout.decode().split("\n", 1)[0].strip() != proto:
                    sys.exit(f"bench: tshark ({which}) did not use the {proto} dissector")
                times[which].append(dt)
        return times, n, os.path.getsize(pcap)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def write_section(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        doc = f.read()
    new, n = re.subn(r"(<!-- BEGIN vsock -->\n).*?(<!-- END vsock -->)",
                     lambda m: m.group(1) + text + m.group(2), doc, flags=re.S)
    if n != 1:
        sys.exit(f"bench: no vsock markers in {path}")
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--copies", type=int, default=2000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)

    tp, release = guest_throughput(build, a.mib, a.reps)
    tt, nframes, size = tshark_times(build, a.reps, a.copies)
    med = {k: statistics.median(v) for k, v in tp.items()}
    lines = [
        f"Command: `tests/bench/vsock/bench_vsock.py BUILD --mib {a.mib} --reps {a.reps} "
        f"--copies {a.copies}` ({time.strftime('%Y-%m-%d')}, Debian kernel {release} "
        "under TCG, 1 vCPU, on the 2-core CI machine; medians).",
        "",
        f"Stream throughput over vsock_loopback ({a.mib} MiB per run, {a.reps} runs; "
        "MB/s, ratio to no monitor):",
        "",
        "| condition | our vsockmon.ko | Debian's vsockmon.ko | ours / Debian's |",
        "| --- | --- | --- | --- |",
        f"| no monitor device | {med['none']:.1f} (1.00) | same run | |",
    ]
    base = med["none"]
    for cond, label in (("monitor", "vsockmon0 up, no reader"),
                        ("tcpdump", "tcpdump capturing on vsockmon0")):
        o, d = med[f"{cond}-ours"], med[f"{cond}-distro"]
        lines.append(f"| {label} | {o:.1f} ({o / base:.2f}) | {d:.1f} ({d / base:.2f}) "
                     f"| {o / d:.2f} |")
    m = {k: statistics.median(v) for k, v in tt.items()}
    no, nb = m["ours"] - m["ours-start"], m["builtin"] - m["builtin-start"]
    lines += [
        "",
        f"tshark dissecting {nframes} frames ({size / 1e6:.1f} MB: the real capture "
        f"repeated as {a.copies} sets of connections, cut at {SNAP} bytes like "
        f"`tcpdump -s {SNAP}`), `-T fields -e frame.protocols`, {a.reps} runs; "
        "net = minus tshark's start-up on a 30-frame file:",
        "",
        "| dissector | median s | net s | frames/s (net) |",
        "| --- | --- | --- | --- |",
        f"| ours (vsockmon plugin, with analysis) | {m['ours']:.2f} | {no:.2f} | {nframes / no:.0f} |",
        f"| built-in vsock | {m['builtin']:.2f} | {nb:.2f} | {nframes / nb:.0f} |",
        f"| ratio ours / built-in | {m['ours'] / m['builtin']:.2f} | {no / nb:.2f} | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
