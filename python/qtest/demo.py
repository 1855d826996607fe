#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# `make run` demo: start qemu-slim's virt machine with every built module loaded, show the
# QMP session, enumerate PCI, find edu and run a DMA through it, printing each step.

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qtest  # noqa: E402
from qtest import edu as edu_regs  # noqa: E402

_step = 0


def step(area, text):
    global _step
    _step += 1
    lines = text.splitlines() or [""]
    print("[%2d] %-6s %s" % (_step, area, lines[0]))
    for l in lines[1:]:
        print(" " * 12 + l)
    sys.stdout.flush()


def found_modules(binary):
    """Names listed by `qemu-slim -plugin help` ("  NAME VERSION (ABI ...").  """
    r = subprocess.run([binary, "-plugin", "help"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise qtest.QtestOSError("%s -plugin help failed (status %d): %s"
                                 % (binary, r.returncode, r.stderr.strip()))
    return [m.group(1) for m in re.finditer(r"^  (\S+) \S+ \(ABI ", r.stdout, re.M)]


def hexdump(data, width=16):
    return " ".join("%02x" % b for b in data[:width]) + (" ..." if len(data) > width else "")


def run(binary, machine):
    kind = qtest.make_profile(binary, machine).kind
    modules = found_modules(binary) if kind == "qemu-slim" else []
    args = []
    for name in modules:
        args += ["-plugin", name]
    t0 = time.monotonic()
    with qtest.Machine(binary, machine=machine, devices=["edu"], args=args) as m:
        step("start", "%s (pid %d), up in %.0f ms\n%s"
             % (os.path.basename(binary), m.proc.pid, (time.monotonic() - t0) * 1e3,
                " ".join(m.cmdline)))
        step("module", "loaded %d module(s): %s" % (len(modules), ", ".join(modules) or "none built"))

        g = m.qmp.greeting["QMP"]
        v = g["version"]["qemu"]
        step("QMP", "greeting: version %d.%d.%d %s, capabilities %s; qmp_capabilities -> {}"
             % (v["major"], v["minor"], v["micro"], g["version"].get("package", ""),
                g["capabilities"]))
        ver = m.qmp.command("query-version")
        step("QMP", "query-version -> %d.%d.%d" % (ver["qemu"]["major"], ver["qemu"]["minor"],
                                                     ver["qemu"]["micro"]))
        st = m.qmp.command("query-status")
        step("QMP", "query-status -> %s" % st["status"])
        if kind == "qemu-slim":
            plugins = m.qmp.command("query-plugins")
            text = "\n".join("%s %s (%s)%s: %s" % (p.get("name"), p.get("version"),
                                                   p.get("license"),
                                                   ", loaded" if p.get("loaded") else "",
                                                   p.get("description"))
                             for p in plugins) or "(no modules found)"
            step("QMP", "query-plugins -> %d module(s)\n%s" % (len(plugins), text))
            names = sorted(p.get("name") for p in plugins if p.get("loaded"))
            if names != sorted(modules):
                raise qtest.DeviceError("query-plugins lists %s, but %s were loaded"
                                        % (names, sorted(modules)))

        devs = m.pci.devices()
        step("PCI", "%s config space; %d function(s) on bus 0:\n%s"
             % ("ECAM at %#x" % m.profile.ecam_base if m.profile.pci_access == "ecam"
                else "ports 0xcf8/0xcfc", len(devs),
                "\n".join("%s %04x:%04x class %06x" % (d, d.vendor_id, d.device_id,
                                                       d.class_code) for d in devs)))
        edu = qtest.bind(m.pci, qtest.EduDriver)
        major, minor = edu.version()
        step("edu", "bound %s at %s: BAR0 %#x (%d KiB), id v%d.%d, liveness(0x1234abcd) = %#x"
             % (type(edu).__name__, edu.dev, edu.bar.addr, edu.bar.size >> 10, major, minor,
                edu.liveness(0x1234abcd)))
        step("edu", "factorial(12) = %d" % edu.factorial(12))

        msg = b"qemu-slim demo: RAM -> edu buffer -> RAM, via PCI DMA. "
        data = (msg * 8)[:400]
        src = m.alloc.alloc(4096, align=4096)
        dst = m.alloc.alloc(4096, align=4096)
        m.memory.write(src, data)
        m.memory.fill(dst, len(data), 0)
        t = time.monotonic()
        edu.dma_to_device(src, len(data))
        step("DMA", "%d bytes RAM %#x -> edu buffer %#x: %s"
             % (len(data), src, edu_regs.BUFFER_ADDR, hexdump(data)))
        edu.dma_from_device(dst, len(data))
        got = m.memory.read(dst, len(data))
        step("DMA", "%d bytes edu buffer -> RAM %#x in %.0f ms: %s"
             % (len(got), dst, (time.monotonic() - t) * 1e3, hexdump(got)))
        if got != data:
            bad = next(i for i in range(len(data)) if got[i] != data[i])
            raise qtest.DeviceError("DMA data differs at byte %d: wrote %#04x, read %#04x"
                                    % (bad, data[bad], got[bad]))
        step("DMA", "data matches: %r" % got[:len(msg)].decode())

        m.qmp.command("quit")
        ev = m.qmp.wait_event("SHUTDOWN", timeout=10)
        code = m.wait(10)
        step("QMP", "quit -> SHUTDOWN (%s), exit status %d"
             % (ev.get("data", {}).get("reason"), code))
        if code != 0:
            raise qtest.EmulatorError("emulator exited with status %d after quit" % code)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default="build", help="meson build directory")
    ap.add_argument("--binary", help="emulator to run (default: BUILD/qemu-slim)")
    ap.add_argument("--machine", help="machine profile (default: the binary's)")
    a = ap.parse_args()
    binary = a.binary
    if not binary:
        where = [os.path.join(a.build, "qemu-slim"), os.path.join(a.build, "core", "qemu-slim")]
        binary = next((b for b in where if os.access(b, os.X_OK)), None)
        if not binary:
            print("demo: no qemu-slim in %s; build first (make)" % " or ".join(where),
                  file=sys.stderr)
            return 1
    try:
        run(binary, a.machine)
    except qtest.QtestOSError as e:
        print("demo: FAILED: %s" % e, file=sys.stderr)
        return 1
    print("demo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
