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
