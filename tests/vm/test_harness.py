# SPDX-License-Identifier: GPL-2.0-or-later
# Tests of the guest VM harness itself: results come back, and a timeout, a guest panic
# or a missing host package each end in a clear VmError instead of a hang.
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qsvm  # noqa: E402


def test_script_runs_in_debian_kernel_and_results_come_back():
    release, _ = qsvm.headers_kernel_version()
    script = """
uname -r
lsmod | cut -d' ' -f1 | sort > modules.txt
printf 'binary\\000data' > blob.bin
ip -o link show lo > lo.txt
ip -V > ip-version.txt
echo to-stderr >&2
exit 7
"""
    r = qsvm.Guest(script, modules=["vsock_loopback"], binaries=["ip"]).run(timeout=90)
    assert r.status == 7
    assert r.stdout.strip() == release
    assert r.stderr.strip() == "to-stderr"
    assert r.files["blob.bin"] == b"binary\0data"
    mods = r.files["modules.txt"].decode().split()
    # The module and its dependencies from modules.dep, plus the results disk driver.
    for m in ("vsock_loopback", "vmw_vsock_virtio_transport_common", "vsock", "virtio_blk"):
        assert m in mods
    # The host's iproute2 ran in the guest, not busybox's ip applet of the same name.
    assert "LOOPBACK" in r.files["lo.txt"].decode()
    assert "iproute2" in r.files["ip-version.txt"].decode()
    with pytest.raises(qsvm.VmError, match="exited with status 7"):
        r.check()


def test_guest_panic_is_reported():
    script = "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger; sleep 100\n"
    with pytest.raises(qsvm.VmError, match=r"guest kernel panic: Kernel panic - not syncing"):
        qsvm.Guest(script).run(timeout=90)


def test_guest_timeout_is_reported():
    with pytest.raises(qsvm.VmError, match=r"guest timed out: no power-off within 15 s"):
        qsvm.Guest("sleep 1000\n").run(timeout=15)


def test_missing_host_binary_fails_before_boot():
    with pytest.raises(qsvm.VmError, match=r"guest binary 'no-such-tool-qsvm' not found "
                                           r"on the host: install Debian package"):
        qsvm.Guest("true", binaries=["no-such-tool-qsvm"]).run(timeout=30)


def test_missing_kernel_module_fails_before_boot():
    with pytest.raises(qsvm.VmError, match=r"has no module 'no_such_module_qsvm'"):
        qsvm.Guest("true", modules=["no_such_module_qsvm"]).run(timeout=30)

