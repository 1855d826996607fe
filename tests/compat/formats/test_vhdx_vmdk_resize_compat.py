# SPDX-License-Identifier: GPL-2.0-or-later
# qemu-img resize of vhdx and vmdk (Debian's qemu-img 7.2 refuses both): images made and
# written by the real qemu-img, resized by ours, must pass the real `qemu-img check`,
# compare equal with a raw image resized alike, and take further writes by the real qemu-io.
import pytest

from imgtools import OURS, QEMU_IO, REAL, ids, need_tools, run

MiB = 1 << 20


@pytest.fixture(autouse=True)
def tools():
    need_tools()


def io(fmt, img, *cmds):
    args = []
    for c in cmds:
        args += ["-c", c]
    run(QEMU_IO, "-f", fmt, *args, str(img))


def pair(tmp_path, fmt, opts, size):
    img, ref = tmp_path / f"x.{fmt}", tmp_path / "ref.raw"
    run(REAL, "create", "-q", "-f", fmt, *(["-o", opts] if opts else []), str(img), size)
    run(REAL, "create", "-q", "-f", "raw", str(ref), size)
    for f, i in ((fmt, img), ("raw", ref)):
        io(f, i, f"write -P 0x11 0 {size}")
    return img, ref


def same(fmt, img, ref):
    assert run(REAL, "check", "-f", fmt, str(img), ok=False).returncode == 0
    run(REAL, "compare", "-f", "raw", "-F", fmt, str(ref), str(img))
    run(OURS, "compare", "-f", "raw", "-F", fmt, str(ref), str(img))


def resize(fmt, img, ref, size, *flags):
    run(OURS, "resize", *flags, "-f", fmt, str(img), size)
    run(REAL, "resize", *flags, "-f", "raw", str(ref), size)


CASES = [("vhdx", ""), ("vhdx", "subformat=fixed"), ("vhdx", "block_size=1M"),
         ("vhdx", "block_state_zero=off,log_size=2M"), ("vmdk", ""), ("vmdk", "zeroed_grain=on"),
         ("vmdk", "adapter_type=lsilogic")]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_grow(case, tmp_path):
    fmt, opts = case
    assert run(REAL, "resize", "-f", fmt, str(pair(tmp_path, fmt, opts, "9000k")[0]), "20M",
               ok=False).returncode != 0          # what QEMU 7.2 does
    img, ref = pair(tmp_path, fmt, opts, "9000k")
    resize(fmt, img, ref, "100M")
    same(fmt, img, ref)
    for f, i in ((fmt, img), ("raw", ref)):       # the real qemu-io writes in the new space
        io(f, i, "write -P 0x22 50M 3M", "write -P 0x33 99M 1M")
    same(fmt, img, ref)


@pytest.mark.parametrize("opts", ["", "block_size=1M", "subformat=fixed"])
def test_vhdx_shrink_grow(opts, tmp_path):
    img, ref = pair(tmp_path, "vhdx", opts, "40M")
    for f, i in (("vhdx", img), ("raw", ref)):
        io(f, i, "write -P 0x44 20M 3M")
    resize("vhdx", img, ref, "21M", "--shrink")
    same("vhdx", img, ref)
    resize("vhdx", img, ref, "50M")
    same("vhdx", img, ref)


def test_vhdx_bat_moved(tmp_path):
    """Past what its BAT region holds (1 MiB: 131072 entries) the BAT moves to a new region
    at the end of the file; the real qemu-img checks it and reads and writes through it."""
    img = tmp_path / "x.vhdx"
    run(REAL, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", str(img), "9M")
    io("vhdx", img, "write -P 0x11 0 9M")
    run(OURS, "resize", str(img), "200G")
    assert run(REAL, "check", str(img), ok=False).returncode == 0
    io("vhdx", img, "read -P 0x11 0 9M", "read -P 0 9M 1M", "read -P 0 150G 1M",
       "write -P 0x22 150G 1M", "read -P 0x22 150G 1M", "read -P 0 199G 1M")
    assert run(OURS, "check", str(img)).returncode == 0
    # and ours reads what the real qemu-io wrote there
    out = tmp_path / "o.raw"
    run(OURS, "dd", "-f", "vhdx", "-O", "raw", "bs=1M", "skip=153600", "count=1",
        f"if={img}", f"of={out}")
    assert out.read_bytes() == b"\x22" * MiB


def test_vhdx_differencing(tmp_path):
    """A child grown past a shorter size reads zeros there, not its parent's data."""
    p, c, ref = tmp_path / "p.vhdx", tmp_path / "c.vhdx", tmp_path / "ref.raw"
    run(REAL, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", str(p), "16M")
    io("vhdx", p, "write -P 0x11 0 16M")
    run(OURS, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", "-b", "p.vhdx", "-F", "vhdx",
        str(c))
    run(OURS, "resize", "--shrink", str(c), "5000k")
    run(OURS, "resize", str(c), "24M")
    run(REAL, "create", "-q", "-f", "raw", str(ref), "24M")
    io("raw", ref, "write -P 0x11 0 5000k")
    run(OURS, "compare", "-f", "raw", "-F", "vhdx", str(ref), str(c))
    assert run(OURS, "check", str(c)).returncode == 0


def test_vmdk_refused(tmp_path):
    img = tmp_path / "f.vmdk"
    run(REAL, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(img), "1M")
    p = run(OURS, "resize", str(img), "2M", ok=False)
    assert p.returncode == 1 and "monolithicSparse" in p.stderr, p.stderr
    img = tmp_path / "s.vmdk"
    run(REAL, "create", "-q", "-f", "vmdk", str(img), "1M")
    p = run(OURS, "resize", "--shrink", str(img), "512k", ok=False)
    assert p.returncode == 1 and "shrinking" in p.stderr, p.stderr
    # a directory of one sector holds 128 tables of 32 MiB: 4 GiB
    p = run(OURS, "resize", str(img), "5G", ok=False)
    assert p.returncode == 1 and "grain directory" in p.stderr, p.stderr


def test_vmdk_over_parent(tmp_path):
    p, c, ref = tmp_path / "p.vmdk", tmp_path / "c.vmdk", tmp_path / "ref.raw"
    run(REAL, "create", "-q", "-f", "vmdk", str(p), "16M")
    io("vmdk", p, "write -P 0x11 0 16M")
    run(REAL, "create", "-q", "-f", "vmdk", "-b", "p.vmdk", "-F", "vmdk", str(c), "8M")
    run(OURS, "resize", str(c), "16M")
    run(REAL, "create", "-q", "-f", "raw", str(ref), "16M")
    io("raw", ref, "write -P 0x11 0 8M")
    assert run(REAL, "check", str(c), ok=False).returncode == 0
    run(REAL, "compare", "-f", "raw", "-F", "vmdk", str(ref), str(c))
