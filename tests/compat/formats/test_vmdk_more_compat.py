# SPDX-License-Identifier: GPL-2.0-or-later
# vmdk against Debian's real qemu-img 7.2: a child whose parentCID no longer matches its
# parent's CID (both tools open, info, check and map it, both fail reading through the
# parent), CIDs renewed by the first write, seSparse info/map/check equal to QEMU's.
import json

import pytest

import test_formats2_compat as f2
from imgtools import OURS, QEMU_IO, REAL, js, need_tools, run

MiB = 1 << 20


@pytest.fixture(autouse=True)
def tools():
    need_tools()


def cid_of(img):
    head = img.read_bytes()[:65536].decode("latin-1")
    return head.split("\nCID=", 1)[1].split("\n", 1)[0].strip()


def chain(tmp_path):
    p, c = tmp_path / "p.vmdk", tmp_path / "c.vmdk"
    run(REAL, "create", "-q", "-f", "vmdk", str(p), "4M")
    run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0x11 0 1M", str(p))
    run(REAL, "create", "-q", "-f", "vmdk", "-b", "p.vmdk", "-F", "vmdk", str(c))
    run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0x22 2M 64k", str(c))
    return p, c


def test_parent_cid_mismatch(tmp_path):
    p, c = chain(tmp_path)
    for tool in (OURS, REAL):             # matching CIDs: both read through the parent
        run(tool, "convert", "-O", "raw", str(c), str(tmp_path / "ok.raw"))
    run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0x33 3M 64k", str(p))   # new CID in p
    for tool in (OURS, REAL):
        assert run(tool, "info", str(c)).returncode == 0
        assert run(tool, "check", str(c)).returncode == 0
    assert js(OURS, "map", "--output=json", str(c)) == js(REAL, "map", "--output=json", str(c))
    for tool in (OURS, REAL):
        r = run(tool, "convert", "-O", "raw", str(c), str(tmp_path / "o.raw"), ok=False)
        assert r.returncode == 1 and "Invalid argument" in r.stderr, (tool, r.stderr)
    # what the child holds itself still reads (the real qemu-io as the reference)
    run(QEMU_IO, "-f", "vmdk", "-c", "read -P 0x22 2M 64k", str(c))


def test_first_write_renews_cid(tmp_path):
    p, c = chain(tmp_path)
    before = cid_of(p)
    src = tmp_path / "s.raw"
    run(REAL, "create", "-q", "-f", "raw", str(src), "4M")
    run(QEMU_IO, "-f", "raw", "-c", "write -P 0x44 0 64k", str(src))
    run(OURS, "convert", "-n", "-f", "raw", "-O", "vmdk", str(src), str(p))
    assert cid_of(p) != before
    # the real qemu-img no longer reads the child through it, as after its own writes
    r = run(REAL, "convert", "-O", "raw", str(c), str(tmp_path / "o.raw"), ok=False)
    assert r.returncode == 1 and "Invalid argument" in r.stderr, r.stderr
    # our rebase -u records the parent's new CID: the real qemu-img reads it again
    run(OURS, "rebase", "-u", "-b", "p.vmdk", str(c))
    assert f"parentCID={cid_of(p)}" in c.read_bytes()[:65536].decode("latin-1")
    run(REAL, "convert", "-O", "raw", str(c), str(tmp_path / "o.raw"))


@pytest.mark.parametrize("with_parent", [False, True])
def test_sesparse_info_map(with_parent, tmp_path):
    parent, cid = None, "ffffffff"
    if with_parent:
        parent = "base.vmdk"
        run(REAL, "create", "-q", "-f", "vmdk", str(tmp_path / parent), "64M")
        run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0xee 0 32M", str(tmp_path / parent))
        cid = cid_of(tmp_path / parent)
    desc = tmp_path / "ses.vmdk"
    f2.write_sesparse(tmp_path / "ses-s001.vmdk", desc, 131072, parent, cid)
    for args in (["info", "--output=json"], ["map", "--output=json"], ["check", "--output=json"]):
        a, b = run(OURS, *args, str(desc)).stdout, run(REAL, *args, str(desc)).stdout
        assert json.loads(a) == json.loads(b), args
    for args in (["info"], ["map"]):
        assert run(OURS, *args, str(desc)).stdout == run(REAL, *args, str(desc)).stdout, args
    assert js(OURS, "info", "--output=json", str(desc))["cluster-size"] == 4096


def sparse(tmp_path, name="a.vmdk", opts=None):
    img = tmp_path / name
    run(REAL, "create", "-q", "-f", "vmdk", *(["-o", opts] if opts else []), str(img), "16M")
    run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0x11 0 256k", "-c", "write -P 0x22 8M 64k",
        str(img))
    return img


def check(tool, img, *args):
    p = run(tool, "check", "--output=json", *args, str(img), ok=False)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}, p.stderr


def test_check_leak_at_end(tmp_path):
    img = sparse(tmp_path)
    ref = tmp_path / "ref.raw"
    run(REAL, "convert", "-O", "raw", str(img), str(ref))
    size = img.stat().st_size
    with open(img, "ab") as f:
        f.write(b"\x5a" * 200000)
    rc, j, err = check(OURS, img)
    assert rc == 3 and j["leaks"] == 4 and "not used by any grain" in err, (rc, j, err)
    assert check(REAL, img)[0] == 0            # QEMU does not look for leaks
    rc, j, err = check(OURS, img, "-r", "leaks")
    assert rc == 0 and j.get("leaks-fixed") == 4, (rc, j, err)
    assert img.stat().st_size == size
    assert check(REAL, img)[0] == 0
    run(REAL, "compare", "-f", "raw", "-F", "vmdk", str(ref), str(img))


def test_check_leak_inside(tmp_path):
    """A grain no table points at any more: counted as leaked, not repairable in place."""
    img = sparse(tmp_path)
    raw = bytearray(img.read_bytes())
    # the entry of grain 0 (the first one stored: others follow it in the file)
    gd = int.from_bytes(raw[56:64], "little")
    gt = int.from_bytes(raw[gd * 512:gd * 512 + 4], "little")
    at = gt * 512
    assert int.from_bytes(raw[at:at + 4], "little") != 0
    raw[at:at + 4] = bytes(4)
    rgd = int.from_bytes(raw[48:56], "little")
    rgt = int.from_bytes(raw[rgd * 512:rgd * 512 + 4], "little")
    raw[rgt * 512:rgt * 512 + 4] = bytes(4)
    img.write_bytes(bytes(raw))
    rc, j, err = check(OURS, img, "-r", "all")
    assert rc == 3 and j["leaks"] == 1 and "leaks-fixed" not in j, (rc, j, err)
    assert check(REAL, img)[0] == 0


def test_check_grain_past_eof(tmp_path):
    img = sparse(tmp_path)
    before = tmp_path / "before.raw"
    # the last grain (8M) cut short: QEMU reads the rest of it as zeros
    with open(img, "r+b") as f:
        f.truncate(img.stat().st_size - 40000)
    run(REAL, "convert", "-O", "raw", str(img), str(before))
    rc, j, err = check(OURS, img)
    assert rc == 2 and j["corruptions"] == 1 and "points after EOF" in err, (rc, j, err)
    rc, j, err = check(OURS, img, "-r", "all")
    assert rc == 0 and j.get("corruptions-fixed") == 1, (rc, j, err)
    assert check(REAL, img)[0] == 0
    run(REAL, "compare", "-f", "raw", "-F", "vmdk", str(before), str(img))


def test_check_grain_wholly_past_eof(tmp_path):
    img = sparse(tmp_path)
    with open(img, "r+b") as f:
        f.truncate(img.stat().st_size - 65536)
    # the real qemu-img finds it too (and fails the check)
    p = run(REAL, "check", str(img), ok=False)
    assert p.returncode != 0 and "points after EOF" in p.stderr, p.stderr
    assert check(OURS, img)[0] == 2
    rc, j, err = check(OURS, img, "-r", "all")
    assert rc == 0 and j.get("corruptions-fixed") == 1, (rc, j, err)
    assert check(REAL, img)[0] == 0
    exp = tmp_path / "exp.raw"
    run(REAL, "create", "-q", "-f", "raw", str(exp), "16M")
    run(QEMU_IO, "-f", "raw", "-c", "write -P 0x11 0 256k", str(exp))
    run(REAL, "compare", "-f", "raw", "-F", "vmdk", str(exp), str(img))


def test_check_twogb_extent(tmp_path):
    img = sparse(tmp_path, "t.vmdk", "subformat=twoGbMaxExtentSparse")
    ext = tmp_path / "t-s001.vmdk"
    size = ext.stat().st_size
    with open(ext, "ab") as f:
        f.write(b"\x01" * 70000)
    rc, j, err = check(OURS, img)
    assert rc == 3 and j["leaks"] == 2 and "t-s001.vmdk" in err, (rc, j, err)
    rc, j, err = check(OURS, img, "-r", "leaks")
    assert rc == 0 and ext.stat().st_size == size, (rc, j, err)
    assert check(REAL, img)[0] == 0
