# SPDX-License-Identifier: GPL-2.0-or-later
# Our qemu-img against Debian's real qemu-img 7.2 on vdi, vpc and vmdk images: each
# reads what the other wrote, info/map/check agree, convert round trips are lossless.
import json
import random

import pytest

from imgtools import OURS, QEMU_IO, REAL, ids, js, need_tools, run

# A size that is an exact VHD CHS geometry (151 x 4 x 17 sectors), so every format keeps it.
SIZE = 151 * 4 * 17 * 512

# (format, create options) for every subformat and create option we support.
CONFIGS = [
    ("vdi", ""),
    ("vdi", "static=on"),
    ("vpc", ""),
    ("vpc", "subformat=fixed"),
    ("vpc", "force_size=on"),
    ("vpc", "subformat=fixed,force_size=on"),
    ("vmdk", ""),
    ("vmdk", "subformat=monolithicFlat"),
    ("vmdk", "subformat=twoGbMaxExtentSparse"),
    ("vmdk", "subformat=twoGbMaxExtentFlat"),
    ("vmdk", "subformat=streamOptimized"),
    ("vmdk", "zeroed_grain=on"),
    ("vmdk", "adapter_type=lsilogic,hwversion=7,toolsversion=12345"),
    ("vmdk", "compat6=on,adapter_type=buslogic"),
]


@pytest.fixture
def raw(tmp_path):
    """A raw image with data, zeros and a hole, unaligned to any block size."""
    need_tools()
    rnd = random.Random(5)
    p = tmp_path / "src.raw"
    with open(p, "wb") as f:
        f.truncate(SIZE)
        for off, n in [(0, 70000), (1 << 20, 1 << 20), (3 * (1 << 20) + 777, 5000),
                       (SIZE - 4096, 4096)]:
            f.seek(off)
            f.write(bytes(rnd.getrandbits(8) for _ in range(n)))
        f.seek(2 * (1 << 20) + 65536)
        f.write(b"\0" * 65536)   # written zeros
    return p


def fmt_opts(cfg):
    fmt, opts = cfg
    return ["-O", fmt] + (["-o", opts] if opts else [])


def map_json(tool, img, fmt):
    return js(tool, "map", "--output=json", "-f", fmt, str(img))


def info_json(tool, img, fmt):
    i = js(tool, "info", "--output=json", "-f", fmt, str(img))
    i.pop("actual-size", None)
    return i


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_real_writes_ours_reads(cfg, raw, tmp_path):
    fmt = cfg[0]
    img = tmp_path / f"real.{fmt}"
    run(REAL, "convert", "-f", "raw", *fmt_opts(cfg), str(raw), str(img))
    run(OURS, "compare", "-f", "raw", "-F", fmt, str(raw), str(img))
    assert map_json(OURS, img, fmt) == map_json(REAL, img, fmt)
    assert info_json(OURS, img, fmt) == info_json(REAL, img, fmt)
    real_check = run(REAL, "check", "--output=json", "-f", fmt, str(img), ok=False)
    ours_check = run(OURS, "check", "--output=json", "-f", fmt, str(img), ok=False)
    assert ours_check.returncode == real_check.returncode, ours_check.stderr
    if real_check.returncode == 0:
        assert json.loads(ours_check.stdout) == json.loads(real_check.stdout)


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_ours_writes_real_reads(cfg, raw, tmp_path):
    fmt = cfg[0]
    img = tmp_path / f"ours.{fmt}"
    run(OURS, "convert", "-f", "raw", *fmt_opts(cfg), str(raw), str(img))
    run(REAL, "compare", "-f", "raw", "-F", fmt, str(raw), str(img))
    real_check = run(REAL, "check", "-f", fmt, str(img), ok=False)
    if "does not support checks" not in real_check.stderr:
        assert real_check.returncode == 0, real_check.stdout + real_check.stderr
    assert map_json(OURS, img, fmt) == map_json(REAL, img, fmt)
    assert info_json(OURS, img, fmt) == info_json(REAL, img, fmt)


def fresh_map(tool, img, fmt):
    """The map of an image without data: which ranges are present and read as zeros.
    (QEMU's file driver writes the first 4 KiB of new files to probe alignment, so data
    and offsets of flat/fixed images differ in a way that does not change the disk.)"""
    out = []
    for m in map_json(tool, img, fmt):
        key = (m["present"], m["depth"])
        if out and out[-1][0] == key:
            out[-1][2] += m["length"]
        else:
            out.append([key, m["start"], m["length"]])
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_create_matches(cfg, tmp_path):
    """Fresh images (no data) of several sizes: same virtual size, map and info."""
    need_tools()
    fmt, opts = cfg
    for size in ["1M", "5000000", "33M"]:
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        extra = ["-o", opts] if opts else []
        run(OURS, "create", "-q", "-f", fmt, *extra, str(a), size)
        run(REAL, "create", "-q", "-f", fmt, *extra, str(b), size)
        ia, ib = info_json(REAL, a, fmt), info_json(REAL, b, fmt)
        for i in (ia, ib):
            i.pop("filename")
            spec = i.get("format-specific", {}).get("data", {})
            spec.pop("cid", None)
            for e in spec.get("extents", []):
                e.pop("filename", None)
        assert ia == ib, size
        assert fresh_map(REAL, a, fmt) == fresh_map(REAL, b, fmt), size
        for p in tmp_path.glob("[ab]*"):
            p.unlink()


def test_vmdk_backing_chain(raw, tmp_path):
    """A vmdk child of a vmdk parent (parentFileNameHint): both tools see the same disk."""
    base = tmp_path / "base.vmdk"
    run(REAL, "convert", "-O", "vmdk", str(raw), str(base))
    child = tmp_path / "child.vmdk"
    run(OURS, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", str(child))
    ri, oi = info_json(REAL, child, "vmdk"), info_json(OURS, child, "vmdk")
    assert oi["backing-filename"] == ri["backing-filename"] == "base.vmdk"
    assert oi["format-specific"]["data"]["parent-cid"] == \
        info_json(REAL, base, "vmdk")["format-specific"]["data"]["cid"]
    run(OURS, "compare", str(child), str(base))
    # partial grains written by the real tool over the parent; ours reads the result
    run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0x5a 100000 3000", str(child))
    flat = tmp_path / "flat.raw"
    run(OURS, "convert", "-O", "raw", str(child), str(flat))
    run(REAL, "compare", "-F", "vmdk", str(flat), str(child))
    assert run(OURS, "compare", str(child), str(base), ok=False).returncode == 1
    # ours rebases onto nothing (-u): the child alone now
    run(OURS, "rebase", "-u", "-b", "", str(child))
    assert "backing-filename" not in info_json(REAL, child, "vmdk")


# Round trips through convert between every pair of formats.
PAIR_FORMATS = ["raw", "qcow2", "vdi", "vpc", "vmdk"]


@pytest.mark.parametrize("a", PAIR_FORMATS)
def test_convert_round_trip(a, raw, tmp_path):
    for b in PAIR_FORMATS:
        x, y, z = tmp_path / f"x.{a}", tmp_path / f"y.{b}", tmp_path / f"z.{a}"
        run(OURS, "convert", "-f", "raw", "-O", a, str(raw), str(x))
        run(OURS, "convert", "-f", a, "-O", b, str(x), str(y))
        run(OURS, "convert", "-f", b, "-O", a, str(y), str(z))
        run(REAL, "compare", "-f", "raw", "-F", a, str(raw), str(z))
        run(REAL, "compare", "-f", "raw", "-F", b, str(raw), str(y))
        for p in (x, y, z):
            p.unlink()


@pytest.mark.parametrize("fmt", ["vhdx", "vmdk", "parallels"])
def test_measure_refused_like_qemu(fmt):
    """Formats without size measurement fail as QEMU's do: same exit code and message."""
    need_tools()
    ours = run(OURS, "measure", "-O", fmt, "--size", "1G", ok=False)
    real = run(REAL, "measure", "-O", fmt, "--size", "1G", ok=False)
    assert ours.returncode == real.returncode == 1
    assert ours.stderr == real.stderr, (ours.stderr, real.stderr)
