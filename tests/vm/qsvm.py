# SPDX-License-Identifier: GPL-2.0-or-later
# Guest VM test harness: boots Debian's own kernel with a busybox initramfs under TCG,
# runs a guest script and brings its results back on a raw scratch disk (a tar stream).
"""Boot a real Debian Linux guest for a test and collect what it produced.

    from qsvm import Guest
    g = Guest(modules=["vsock_loopback"], binaries=["tcpdump", "ip"],
              files={"/root/x.ko": "/path/x.ko"}, script="insmod /root/x.ko; ...")
    r = g.run(timeout=60)
    r.status, r.stdout, r.files["cap.pcap"]

The kernel is the linux-image package whose version matches the installed
linux-headers-amd64 (so out-of-tree modules built against those headers load), fetched
with `apt-get download` into a cache folder and unpacked with `dpkg -x`.

Inside the guest, /init mounts the pseudo file systems, inserts the requested modules
(with their dependencies, from modules.dep), runs the script with /out as its working
directory, then writes /out as a tar stream onto the raw disk /dev/vda and powers off.
The host reads that tar: console output is only kept for diagnostics.

Every failure is a VmError with a one-line reason (timeout, kernel panic, missing host
package, no results) and the tail of the console; nothing waits without a timeout.
"""

import fcntl
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = os.path.join(HERE, "cache")
LOCK_PATH = "/tmp/qsvm-guest.lock"

# Host tools the harness itself needs, with the Debian package that ships each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "cpio": "cpio",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "xz": "xz-utils",
}
# Guest binaries a test commonly asks for, with their Debian package (for messages).
KNOWN_BINARIES = {
    "tcpdump": "tcpdump", "ip": "iproute2", "tshark": "tshark",
    "dumpcap": "wireshark-common", "ss": "iproute2",
}
# Modules the harness always loads: the virtio-blk disk that carries results back.
BASE_MODULES = ["virtio_pci", "virtio_blk"]
RESULT_DISK_MB = 256


class VmError(Exception):
    """A guest run failed; str() is a one-line reason followed by console context."""


def _need(tool):
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not path:
        raise VmError(f"host tool '{tool}' not found: install Debian package "
                      f"'{HOST_TOOLS.get(tool, tool)}' (bash scripts/deps.sh)")
    return path


def _run(argv, timeout, what, **kw):
    try:
        kw.setdefault("stdout", subprocess.PIPE)
        return subprocess.run(argv, check=True, timeout=timeout, stderr=subprocess.PIPE, **kw)
    except subprocess.TimeoutExpired:
        raise VmError(f"{what}: '{' '.join(argv)}' did not finish within {timeout} s") from None
    except subprocess.CalledProcessError as e:
        err = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise VmError(f"{what}: '{' '.join(argv)}' exited with {e.returncode}: "
                      f"{' | '.join(err)}") from None


class _Lock:
    """An flock held for the life of the object (with a bounded wait)."""

    def __init__(self, path, wait, what):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise VmError(f"{what}: lock {path} still held after {wait} s")
                time.sleep(0.2)

    def release(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def headers_kernel_version():
    """The kernel release (e.g. 6.1.0-56-amd64) and Debian version of the installed
    linux-headers-amd64, which is what out-of-tree modules are built against."""
    _need("dpkg-query")
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}", "linux-headers-amd64"],
                             capture_output=True, timeout=30, check=True).stdout.decode()
    except subprocess.CalledProcessError:
        raise VmError("Debian package 'linux-headers-amd64' is not installed "
                      "(bash scripts/deps.sh)") from None
    m = re.search(r"linux-headers-(\d[^\s,(]*-amd64)\s*\(=\s*([^)\s]+)\)", out)
    if not m:
        raise VmError(f"cannot read the kernel version from linux-headers-amd64's "
                      f"Depends field: '{out}'")
    return m.group(1), m.group(2)


class Kernel:
    """Debian's kernel image and module tree, unpacked in a cache folder."""

    def __init__(self, cache=None, release=None, debver=None):
        if release is None:
            release, debver = headers_kernel_version()
        self.release = release
        self.debver = debver
        self.cache = os.path.abspath(cache or os.environ.get("QS_VM_CACHE") or DEFAULT_CACHE)
        self.root = os.path.join(self.cache, f"linux-image-{release}_{debver}")
        self.vmlinuz = os.path.join(self.root, "boot", f"vmlinuz-{release}")
        self.moddir = os.path.join(self.root, "lib", "modules", release)
        self._deps = None

    def prepare(self):
        """Fetch and unpack the image once; safe against concurrent callers."""
        stamp = os.path.join(self.root, ".qsvm-ready")
        if os.path.exists(stamp):
            return self
        os.makedirs(self.cache, exist_ok=True)
        with _Lock(os.path.join(self.cache, ".lock"), 900, "kernel cache"):
            if os.path.exists(stamp):
                return self
            for t in ("apt-get", "dpkg-deb", "depmod"):
                _need(t)
            pkg = f"linux-image-{self.release}"
            dl = tempfile.mkdtemp(dir=self.cache, prefix=".dl-")
            try:
                # apt-get download as root warns that _apt cannot write the folder: harmless.
                os.chmod(dl, 0o777)
                what = f"downloading {pkg} {self.debver} (matching linux-headers-amd64)"
                try:
                    _run(["apt-get", "download", "-q", f"{pkg}={self.debver}"], 600, what,
                         cwd=dl)
                except VmError:
                    # A fresh machine may have no (or stale) package lists: refresh once.
                    _run(["apt-get", "update", "-qq"], 600, "apt-get update")
                    _run(["apt-get", "download", "-q", f"{pkg}={self.debver}"], 600, what,
                         cwd=dl)
                debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
                if len(debs) != 1:
                    raise VmError(f"apt-get download {pkg} left {debs} in {dl}")
                shutil.rmtree(self.root, ignore_errors=True)
                _run(["dpkg-deb", "-x", os.path.join(dl, debs[0]), self.root], 600,
                     f"unpacking {debs[0]}")
            finally:
                shutil.rmtree(dl, ignore_errors=True)
            if not os.path.exists(self.vmlinuz):
                raise VmError(f"{pkg} has no {self.vmlinuz}")
            _run(["depmod", "-b", self.root, self.release], 300, "depmod on the unpacked image")
            open(stamp, "w").close()
        return self

    def _load_deps(self):
        if self._deps is None:
            deps = {}
            with open(os.path.join(self.moddir, "modules.dep")) as f:
                for line in f:
                    path, _, rest = line.partition(":")
                    deps[path] = rest.split()
            self._deps = deps
            self._byname = {}
            for path in deps:
                name = os.path.basename(path).split(".ko")[0].replace("-", "_")
                self._byname[name] = path
        return self._deps

    def module_path(self, name):
        self._load_deps()
        key = name.replace("-", "_")
        if key not in self._byname:
            raise VmError(f"kernel {self.release} has no module '{name}'")
        return self._byname[key]

    def module_closure(self, names):
        """Relative paths of the modules and all their dependencies, in load order."""
        deps = self._load_deps()
        order = []

        def visit(path, stack):
            if path in order:
                return
            if path in stack:
                raise VmError(f"module dependency loop at {path}")
            for d in reversed(deps.get(path, [])):
                visit(d, stack + [path])
            order.append(path)

        for n in names:
            visit(self.module_path(n), [])
        return order


class Result:
    def __init__(self, status, files, console, elapsed):
        self.status = status
        self.files = files
        self.console = console
        self.elapsed = elapsed
        self.stdout = files.get("qsvm/stdout", b"").decode(errors="replace")
        self.stderr = files.get("qsvm/stderr", b"").decode(errors="replace")
        self.dmesg = files.get("qsvm/dmesg", b"").decode(errors="replace")

    def check(self):
        """Raise VmError unless the guest script exited with status 0."""
        if self.status != 0:
            raise VmError(f"guest script exited with status {self.status}\n"
                          f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
                          f"\n--- dmesg (tail)\n{self.dmesg[-2000:]}")
        return self


INIT = r"""#!/bin/busybox sh
# qsvm /init: mount, load modules, run the test script, ship /out to /dev/vda, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /out/qsvm /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo 1 > /proc/sys/kernel/printk_ratelimit 2>/dev/null
ip link set lo up 2>/dev/null || /bin/busybox ip link set lo up
echo "qsvm: init running"
for m in $(cat /qsvm/modules); do
  if ! insmod "/qsvm/mod/$m" 2>>/out/qsvm/insmod.err; then
    echo "qsvm: insmod $m failed: $(cat /out/qsvm/insmod.err)"
    echo "insmod $m failed" >> /out/qsvm/stderr
    echo 125 > /out/qsvm/status
    break
  fi
done
if [ ! -e /out/qsvm/status ]; then
  cd /out
  sh /qsvm/script > /out/qsvm/stdout 2> /out/qsvm/stderr < /dev/null
  echo $? > /out/qsvm/status
  cd /
fi
dmesg > /out/qsvm/dmesg
if tar -c -f /dev/vda -C /out . ; then echo "qsvm: results written"; else echo "qsvm: writing results to /dev/vda failed"; fi
sync
echo "qsvm: powering off"
poweroff -f
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _binary_path(name):
    if os.path.isabs(name):
        if not os.path.exists(name):
            raise VmError(f"guest binary {name} does not exist on the host")
        return name
    p = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not p:
        pkg = KNOWN_BINARIES.get(name, "the package that provides it")
        raise VmError(f"guest binary '{name}' not found on the host: install Debian "
                      f"package '{pkg}' (bash scripts/deps.sh)")
    return p


def _guest_binary_path(path):
    if path.startswith(("/usr/", "/bin/", "/sbin/")):
        return path
    return "/usr/local/bin/" + os.path.basename(path)


def _shared_libs(path):
    """Absolute paths of the shared libraries `ldd` lists for path (none if static)."""
    out = subprocess.run(["ldd", path], capture_output=True, timeout=30)
    libs = []
    for line in out.stdout.decode(errors="replace").splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


class Guest:
    """One guest boot: the initramfs contents and the script to run."""

    def __init__(self, script, modules=(), binaries=(), files=None, ko=(),
                 kernel=None, memory=512, append="", accel=None, smp=1):
        self.script = script
        self.modules = list(modules)
        self.binaries = list(binaries)
        self.files = dict(files or {})
        self.ko = list(ko)  # out-of-tree .ko files copied to /qsvm/ko (not loaded)
        self.kernel = kernel
        self.memory = memory
        self.append = append
        self.accel = accel or os.environ.get("QS_VM_ACCEL", "tcg")
        self.smp = smp

    def _stage(self, root, kernel):
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "qsvm/mod",
                  "qsvm/ko", "lib64", "var/run"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        busybox = _need("busybox")
        if _shared_libs(busybox):
            raise VmError(f"{busybox} is dynamically linked: install busybox-static")
        shutil.copy2(busybox, os.path.join(root, "bin/busybox"))
        with open(os.path.join(root, "init"), "w") as f:
            f.write(INIT)
        os.chmod(os.path.join(root, "init"), 0o755)
        # busybox sh runs its own applets before PATH: aliases make the host binaries
        # (ip, tcpdump, ...) win over the applets of the same name; `cmd &` still execs
        # the binary itself, so $! is its pid.
        pre = ['progress() { echo "qsvm-progress: $*" > /dev/console; }\n']
        for b in self.binaries:
            name = os.path.basename(b)
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                pre.append(f"alias {name}={_guest_binary_path(_binary_path(b))}\n")
        with open(os.path.join(root, "qsvm/script"), "w") as f:
            f.write("".join(pre) + self.script)
        with open(os.path.join(root, "etc/passwd"), "w") as f:
            f.write(PASSWD)
        with open(os.path.join(root, "etc/group"), "w") as f:
            f.write(GROUP)
        # Modules, decompressed on the host (busybox insmod reads plain ELF only).
        order = kernel.module_closure(BASE_MODULES + self.modules)
        names = []
        for rel in order:
            src = os.path.join(kernel.moddir, rel)
            base = os.path.basename(rel)
            if base.endswith(".xz"):
                base = base[:-3]
                with open(os.path.join(root, "qsvm/mod", base), "wb") as out:
                    _run(["xz", "-dc", src], 120, f"decompressing {rel}", stdout=out)
            else:
                shutil.copy2(src, os.path.join(root, "qsvm/mod", base))
            names.append(base)
        with open(os.path.join(root, "qsvm/modules"), "w") as f:
            f.write("\n".join(names) + "\n")
        for k in self.ko:
            shutil.copy2(k, os.path.join(root, "qsvm/ko", os.path.basename(k)))
        # Host binaries with their libraries at the same paths (binaries from a build
        # tree go to /usr/local/bin: /tmp is a fresh tmpfs in the guest).
        copied = set()
        for b in self.binaries:
            path = _binary_path(b)
            gpath = _guest_binary_path(path)
            for src, dstp in [(path, gpath)] + [(lib, lib) for lib in _shared_libs(path)]:
                if dstp in copied:
                    continue
                copied.add(dstp)
                dst = os.path.join(root, dstp.lstrip("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(os.path.realpath(src), dst)
            base = os.path.basename(gpath)
            if not os.path.lexists(os.path.join(root, "usr/bin", base)):
                os.symlink(gpath, os.path.join(root, "usr/bin", base))
        for gpath, src in self.files.items():
            dst = os.path.join(root, gpath.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.lexists(dst):
                os.unlink(dst)
            if isinstance(src, bytes):
                with open(dst, "wb") as f:
                    f.write(src)
            else:
                shutil.copy2(src, dst)

    def run(self, timeout=60, workdir=None, keep=False):
        """Boot, run the script, return a Result. Raises VmError on any failure of the
        machinery (not for a non-zero script status: see Result.check())."""
        _need("qemu-system-x86_64")
        _need("cpio")
        kernel = (self.kernel or Kernel()).prepare()
        work = workdir or tempfile.mkdtemp(prefix="qsvm-")
        os.makedirs(work, exist_ok=True)
        try:
            root = os.path.join(work, "root")
            shutil.rmtree(root, ignore_errors=True)
            self._stage(root, kernel)
            initrd = os.path.join(work, "initrd.cpio")
            names = subprocess.run(["find", "."], cwd=root, capture_output=True,
                                   timeout=60, check=True).stdout
            with open(initrd, "wb") as out:
                _run(["cpio", "-o", "-H", "newc", "--quiet"], 120, "building the initramfs",
                     cwd=root, input=names, stdout=out)
            disk = os.path.join(work, "results.img")
            with open(disk, "wb") as f:
                f.truncate(RESULT_DISK_MB << 20)
            console = os.path.join(work, "console.log")
            append = ("console=ttyS0 panic=-1 oops=panic panic_on_warn=1 loglevel=4 "
                      "rdinit=/init " + self.append)
            argv = ["qemu-system-x86_64", "-accel", self.accel, "-m", str(self.memory),
                    "-smp", str(self.smp), "-nodefaults", "-no-user-config",
                    "-display", "none", "-no-reboot", "-serial", f"file:{console}",
                    "-kernel", kernel.vmlinuz, "-initrd", initrd, "-append", append,
                    "-drive", f"file={disk},format=raw,if=none,id=results",
                    "-device", "virtio-blk-pci,drive=results"]
            with _Lock(LOCK_PATH, 900, "waiting for the other guest (one at a time)"):
                t0 = time.monotonic()
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                try:
                    qout, _ = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    raise VmError(f"guest timed out: no power-off within {timeout} s "
                                  f"(kernel {kernel.release}, accel {self.accel})\n"
                                  + _tail(console)) from None
                elapsed = time.monotonic() - t0
            text = _read(console)
            if proc.returncode != 0:
                raise VmError(f"qemu-system-x86_64 exited with {proc.returncode}: "
                              f"{qout.decode(errors='replace').strip()}\n" + _tail(console))
            panic = re.search(r"Kernel panic - not syncing:.*", text)
            if panic:
                raise VmError(f"guest kernel panic: {panic.group(0).strip()}\n"
                              + _tail(console, 40))
            files = _read_results(disk)
            if "qsvm/status" not in files:
                raise VmError("guest powered off without results on the scratch disk "
                              "(did /init run?)\n" + _tail(console))
            status = int(files["qsvm/status"].decode().strip() or "-1")
            return Result(status, files, text, elapsed)
        finally:
            if not keep and workdir is None:
                shutil.rmtree(work, ignore_errors=True)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(console, n=15):
    lines = _read(console).splitlines()
    return "--- console (last %d lines)\n" % min(n, len(lines)) + "\n".join(lines[-n:])


def _read_results(disk):
    files = {}
    with open(disk, "rb") as f:
        head = f.read(512)
        if head.strip(b"\0") == b"":
            return files
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for m in tar:
                    if m.isfile():
                        name = os.path.normpath(m.name)
                        files[name] = tar.extractfile(m).read()
        except tarfile.TarError as e:
            raise VmError(f"results disk {disk} holds no valid tar stream: {e}") from None
    return files


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Boot Debian's kernel and run a guest script.")
    ap.add_argument("script", help="shell script to run in the guest (cwd /out)")
    ap.add_argument("-m", "--module", action="append", default=[], help="kernel module")
    ap.add_argument("-b", "--binary", action="append", default=[], help="host binary")
    ap.add_argument("-f", "--file", action="append", default=[],
                    help="GUEST_PATH=HOST_PATH to copy into the initramfs")
    ap.add_argument("-o", "--out", help="folder to write the guest's /out into")
    ap.add_argument("-t", "--timeout", type=int, default=60)
    a = ap.parse_args(argv)
    files = dict(x.split("=", 1) for x in a.file)
    with open(a.script) as f:
        script = f.read()
    try:
        r = Guest(script, modules=a.module, binaries=a.binary, files=files).run(a.timeout)
    except VmError as e:
        print(f"qsvm: {e}")
        return 2
    if a.out:
        for name, data in r.files.items():
            p = os.path.join(a.out, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
    print(r.stdout, end="")
    print(r.stderr, end="", file=__import__("sys").stderr)
    print(f"qsvm: guest script exited with {r.status} after {r.elapsed:.1f} s")
    return r.status


if __name__ == "__main__":
    raise SystemExit(main())
