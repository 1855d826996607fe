# SPDX-License-Identifier: GPL-2.0-or-later
# Our qemu-img against Debian's real qemu-img 7.2 on vhdx and parallels images: each reads
# what the other wrote, info/map/check agree, convert round trips with every other format,
# a dirty VHDX log written here (independent CRC-32C) is replayed the same by both.
import json
import os
import random
import struct
import uuid

import pytest

from imgtools import OURS, QEMU_IO, REAL, ids, js, need_tools, run

MiB = 1 << 20
SIZE = 20 * MiB + 4096 * 3

CONFIGS = [
    ("vhdx", ""),
    ("vhdx", "subformat=fixed"),
    ("vhdx", "block_state_zero=off"),
    ("vhdx", "block_size=1M,log_size=2M"),
    ("vhdx", "subformat=fixed,block_size=2M"),
    ("parallels", ""),
    ("parallels", "cluster_size=64k"),
]


@pytest.fixture
def raw(tmp_path):
    need_tools()
    rnd = random.Random(7)
    p = tmp_path / "src.raw"
    with open(p, "wb") as f:
        f.truncate(SIZE)
        for off, n in [(0, 70000), (9 * MiB, MiB), (17 * MiB + 777, 5000), (SIZE - 4096, 4096)]:
            f.seek(off)
            f.write(bytes(rnd.getrandbits(8) for _ in range(n)))
    return p


def fmt_opts(cfg):
    return ["-O", cfg[0]] + (["-o", cfg[1]] if cfg[1] else [])


def info(tool, img, fmt):
    i = js(tool, "info", "--output=json", "-f", fmt, str(img))
    i.pop("actual-size", None)
    if fmt == "parallels":
        # QEMU 7.2's parallels has no get_info: no dirty-flag, no cluster-size, and no
        # format-specific data (ours has some only when the image has dirty bitmaps)
        assert set(i) == {"virtual-size", "filename", "format"}, (tool, i)
    return i


def human_info(tool, img, fmt):
    """`info` human output without the host-dependent "disk size" line."""
    out = run(tool, "info", "-f", fmt, str(img)).stdout
    return [ln for ln in out.splitlines() if not ln.startswith("disk size:")]


@pytest.mark.parametrize("fmt,opts", [
    ("parallels", ""),
    ("vhdx", ""),
    ("vmdk", ""),
    ("vmdk", "subformat=twoGbMaxExtentSparse"),
    ("vmdk", "subformat=monolithicFlat"),
    ("vmdk", "subformat=streamOptimized"),
])
def test_info_human_matches(fmt, opts, tmp_path):
    need_tools()
    img = tmp_path / f"h.{fmt}"
    extra = ["-o", opts] if opts else []
    run(REAL, "create", "-q", "-f", fmt, *extra, str(img), "3G")
    ours, real = human_info(OURS, img, fmt), human_info(REAL, img, fmt)
    assert ours == real
    if fmt == "vmdk":
        # the extents array is printed as QEMU's numbered, indented list
        assert "    extents:" in real and "        [0]:" in real
        if opts == "subformat=twoGbMaxExtentSparse":
            assert "        [1]:" in real


def mapj(tool, img, fmt):
    return js(tool, "map", "--output=json", "-f", fmt, str(img))


def check(tool, img, fmt, *extra):
    p = run(tool, "check", "--output=json", *extra, "-f", fmt, str(img), ok=False)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_real_writes_ours_reads(cfg, raw, tmp_path):
    fmt = cfg[0]
    img = tmp_path / f"real.{fmt}"
    run(REAL, "convert", "-f", "raw", *fmt_opts(cfg), str(raw), str(img))
    run(OURS, "compare", "-f", "raw", "-F", fmt, str(raw), str(img))
    assert mapj(OURS, img, fmt) == mapj(REAL, img, fmt)
    assert info(OURS, img, fmt) == info(REAL, img, fmt)
    assert check(OURS, img, fmt)[:2] == check(REAL, img, fmt)[:2]
    # a partial write by the real tool into an image ours wrote to, and back
    run(OURS, "convert", "-f", "raw", "-O", "raw", str(img), str(tmp_path / "flat.raw"))
    run(QEMU_IO, "-f", fmt, "-c", "write -P 0x5a 3000000 70000", str(img))
    run(REAL, "compare", "-f", fmt, "-F", fmt, str(img), str(img))
    run(OURS, "compare", "-f", fmt, "-F", fmt, str(img), str(img))
    assert run(OURS, "compare", "-f", "raw", "-F", fmt, str(raw), str(img), ok=False).returncode == 1


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_ours_writes_real_reads(cfg, raw, tmp_path):
    fmt = cfg[0]
    img = tmp_path / f"ours.{fmt}"
    run(OURS, "convert", "-f", "raw", *fmt_opts(cfg), str(raw), str(img))
    run(REAL, "compare", "-f", "raw", "-F", fmt, str(raw), str(img))
    rc, rj, err = check(REAL, img, fmt)
    assert rc == 0, err
    assert (rc, rj) == check(OURS, img, fmt)[:2]
    assert mapj(OURS, img, fmt) == mapj(REAL, img, fmt)
    assert info(OURS, img, fmt) == info(REAL, img, fmt)
    # the real tool writes into our image, ours reads its writes
    run(QEMU_IO, "-f", fmt, "-c", "write -P 0x66 5000000 9000", "-c", "write -P 0x67 0 512",
        str(img))
    out = tmp_path / "back.raw"
    run(OURS, "convert", "-f", fmt, "-O", "raw", str(img), str(out))
    run(REAL, "compare", "-f", "raw", "-F", fmt, str(out), str(img))


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_create_matches(cfg, tmp_path):
    need_tools()
    fmt, opts = cfg
    for size in ["1M", "5000000", "33M"]:
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        extra = ["-o", opts] if opts else []
        run(OURS, "create", "-q", "-f", fmt, *extra, str(a), size)
        run(REAL, "create", "-q", "-f", fmt, *extra, str(b), size)
        ia, ib = info(REAL, a, fmt), info(REAL, b, fmt)
        ia.pop("filename")
        ib.pop("filename")
        assert ia == ib, size
        assert mapj(REAL, a, fmt) == mapj(REAL, b, fmt), size
        assert check(REAL, a, fmt)[:2][0] == 0
        a.unlink()
        b.unlink()


@pytest.mark.parametrize("fmt,opts,msg", [
    ("vhdx", "block_size=3M", "Block size must be a power of two"),
    ("vhdx", "log_size=0", "Log size must be a multiple of 1 MB"),
    ("vhdx", "subformat=foo", "Parameter 'subformat' does not accept value 'foo'"),
    ("parallels", "cluster_size=0", "Image size is too large for this cluster size"),
])
def test_create_errors(fmt, opts, msg, tmp_path):
    need_tools()
    for tool in (OURS, REAL):
        p = run(tool, "create", "-q", "-f", fmt, "-o", opts, str(tmp_path / "x"), "10M", ok=False)
        assert p.returncode == 1 and msg in p.stderr, (tool, p.stderr)


PAIR_FORMATS = ["raw", "qcow2", "vdi", "vpc", "vmdk", "vhdx", "parallels"]


@pytest.mark.parametrize("a", ["vhdx", "parallels"])
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


def test_parallels_in_use(raw, tmp_path):
    """An image left in use: both refuse read-write, both repair it with check -r all."""
    for fixer in (OURS, REAL):
        img = tmp_path / "u.prl"
        run(OURS, "convert", "-f", "raw", "-O", "parallels", str(raw), str(img))
        with open(img, "r+b") as f:
            f.seek(44)
            f.write(struct.pack("<I", 0x746F6E59))
        for tool in (OURS, REAL):
            rc, j, _ = check(tool, img, "parallels")
            assert rc == 2 and j["corruptions"] == 1
        p = run(QEMU_IO, "-f", "parallels", "-c", "write 0 512", str(img), ok=False)
        assert "not closed correctly" in p.stderr
        run(fixer, "check", "-q", "-r", "all", "-f", "parallels", str(img))
        for tool in (OURS, REAL):
            assert check(tool, img, "parallels")[0] == 0
        run(REAL, "compare", "-f", "raw", "-F", "parallels", str(raw), str(img))


def vhd_footer_with(footer, type_):
    """The 512-byte VHD footer with another disk type and its checksum redone."""
    f = bytearray(footer)
    f[60:64] = struct.pack(">I", type_)
    f[64:68] = bytes(4)
    f[64:68] = struct.pack(">I", ~sum(f) & 0xFFFFFFFF)
    return bytes(f)


def test_vpc_footer_places(raw, tmp_path):
    """As QEMU, where the footer is gives the type: one only at the end must be a fixed
    image's, one at the start is a dynamic image's copy (so a fixed image with a copy at
    its start is refused by both).  A dynamic image whose start copy says "fixed" is
    read as the dynamic image it is (QEMU opens it as dynamic but reads it as fixed)."""
    img = tmp_path / "d.vhd"
    run(REAL, "convert", "-f", "raw", "-O", "vpc", str(raw), str(img))
    data = img.read_bytes()
    fixed = tmp_path / "f.vhd"
    run(REAL, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", str(raw), str(fixed))
    fdata = fixed.read_bytes()
    cases = {"end-only": bytes(512) + data[512:], "fixed-with-copy": fdata[-512:] + fdata[512:]}
    for name, content in cases.items():
        bad = tmp_path / f"{name}.vhd"
        bad.write_bytes(content)
        for tool in (OURS, REAL):
            p = run(tool, "info", "-f", "vpc", str(bad), ok=False)
            assert p.returncode == 1 and p.stderr, (name, tool)
    says_fixed = tmp_path / "s.vhd"
    says_fixed.write_bytes(vhd_footer_with(data[:512], 2) + data[512:])
    run(REAL, "info", "-f", "vpc", str(says_fixed))
    run(OURS, "compare", "-f", "raw", "-F", "vpc", str(raw), str(says_fixed))


# ---- a dirty VHDX log made here, with its own CRC-32C ----

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def with_crc(buf, at):
    buf[at:at + 4] = b"\0\0\0\0"
    buf[at:at + 4] = struct.pack("<I", crc32c(bytes(buf)))
    return buf


def add_dirty_log(img, block_offset_mb):
    """Journal (without applying) a BAT update making block 1 fully present at the given
    MiB offset, whose data is already there, as a crash between log and BAT write leaves."""
    with open(img, "r+b") as f:
        data = bytearray(f.read())
        cur = max((0x10000, 0x20000), key=lambda h: struct.unpack_from("<Q", data, h + 8)[0])
        log_off = struct.unpack_from("<Q", data, cur + 72)[0]
        bat_off = struct.unpack_from("<Q", data, 0x30000 + 16 + 16)[0]
        guid = uuid.uuid4().bytes
        seq = 0x1234567800000001
        sector = bytearray(data[bat_off:bat_off + 4096])
        struct.pack_into("<Q", sector, 8, (block_offset_mb << 20) | 6)
        entry = bytearray(8192)
        struct.pack_into("<4sIIIQII16sQQ", entry, 0, b"loge", 0, 8192, 0, seq, 1, 0, guid,
                         len(data), len(data))
        struct.pack_into("<4s4s8sQQ", entry, 64, b"desc", bytes(sector[4092:]),
                         bytes(sector[:8]), bat_off, seq)
        struct.pack_into("<4sI", entry, 4096, b"data", seq >> 32)
        entry[4096 + 8:8192 - 4] = sector[8:4092]
        struct.pack_into("<I", entry, 8192 - 4, seq & 0xFFFFFFFF)
        with_crc(entry, 4)
        data[log_off:log_off + 8192] = entry
        for h in (0x10000, 0x20000):
            hdr = bytearray(data[h:h + 4096])
            hdr[48:64] = guid
            data[h:h + 4096] = with_crc(hdr, 4)
        f.seek(0)
        f.write(data)


@pytest.mark.parametrize("replayer", ["ours", "real"])
def test_vhdx_dirty_log(replayer, tmp_path):
    need_tools()
    img = tmp_path / "d.vhdx"
    run(REAL, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", str(img), "8M")
    size = os.path.getsize(img)
    with open(img, "r+b") as f:        # block 1's data, not yet in the BAT
        f.seek(size)
        f.write(b"\x3c" * MiB)
    add_dirty_log(img, size >> 20)
    for tool in (OURS, REAL):          # read-only: both refuse, naming the repair
        p = run(tool, "info", str(img), ok=False)
        assert p.returncode == 1 and "check -r all" in p.stderr, (tool, p.stderr)
    tool = OURS if replayer == "ours" else REAL
    rc, j, err = check(tool, img, "vhdx", "-r", "all")
    assert rc == 0 and j["corruptions-fixed"] == 1, err
    expect = tmp_path / "e.raw"
    with open(expect, "wb") as f:
        f.truncate(8 * MiB)
        f.seek(MiB)
        f.write(b"\x3c" * MiB)
    for t in (OURS, REAL):
        run(t, "compare", "-f", "raw", "-F", "vhdx", str(expect), str(img))
        assert check(t, img, "vhdx")[0] == 0


CRASH = os.environ.get("QS_FMT_CRASH", "")


def test_vhdx_our_crash_replayed_by_real(tmp_path):
    """A session of ours that dies after a block allocation: the real qemu-img sees the
    dirty log, replays it, and the data is there."""
    need_tools()
    if not CRASH or not os.path.exists(CRASH):
        pytest.skip("QS_FMT_CRASH (the crash helper) is not set")
    img = tmp_path / "c.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", str(img), "20M")
    run(CRASH, str(img), "vhdx", str(9 * MiB), "119")
    p = run(REAL, "info", str(img), ok=False)
    assert p.returncode == 1 and "log" in p.stderr.lower(), p.stderr
    run(REAL, "check", "-q", "-r", "all", str(img))
    run(QEMU_IO, "-f", "vhdx", "-c", f"read -P 119 {9 * MiB} 4096", str(img))
    run(OURS, "check", str(img))


def write_sesparse(ext, desc, cap, parent=None, parent_cid="ffffffff"):
    """A seSparse extent built here from the layout QEMU reads (constant and volatile
    headers, a grain directory, two grain tables, grains) and its descriptor."""
    def alloc(g):
        return (3 << 60) | ((g & 0xfff) << 48) | (g >> 12)
    gd_off, gt_off, n_gt, n_grains = 4, 5, 2, 4100
    grains_off = gt_off + n_gt * 64
    img = bytearray(512 * (grains_off + n_grains * 8))
    struct.pack_into("<26Q", img, 0, 0xcafebabe, 0x200000001, cap, 8, 64, 0, 0, 0, 0, 0,
                     1, 1, 2, 1, 3, 1, gd_off, 1, gt_off, n_gt * 64, 0, 0, 0, 0, grains_off,
                     n_grains * 8)
    struct.pack_into("<Q", img, 512, 0xcafecafe)
    struct.pack_into("<QQQ", img, gd_off * 512, 1 << 60, 0, (1 << 60) | 1)
    entries = {(0, 0): alloc(0), (0, 1): 2 << 60, (0, 2): 1 << 60, (0, 3): alloc(4097),
               (0, 4): alloc(1), (0, 5): alloc(2), (1, 10): alloc(3), (1, 11): 2 << 60}
    for (t, k), v in entries.items():
        struct.pack_into("<Q", img, (gt_off + t * 64) * 512 + k * 8, v)
    for g in (0, 1, 2, 3, 4097):
        o = (grains_off + g * 8) * 512
        img[o:o + 4096] = bytes([g % 250 + 1]) * 4096
    ext.write_bytes(bytes(img))
    hint = f'parentFileNameHint="{parent}"\n' if parent else ""
    desc.write_text(f"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID={parent_cid}\n"
                    f'createType="seSparse"\n{hint}\n# Extent description\n'
                    f'RW {cap} SESPARSE "{ext.name}"\n\n# The Disk Data Base\n#DDB\n\n'
                    'ddb.virtualHWVersion = "4"\n')


@pytest.mark.parametrize("with_parent", [False, True])
def test_vmdk_sesparse_read(with_parent, tmp_path):
    """QEMU 7.2 reads seSparse: both tools read the same bytes, alone or over a parent
    written by the real qemu-io; ours refuses read-write as QEMU has no write support."""
    need_tools()
    parent, cid = None, "ffffffff"
    if with_parent:
        parent = "base.vmdk"
        run(REAL, "create", "-q", "-f", "vmdk", str(tmp_path / parent), "64M")
        run(QEMU_IO, "-f", "vmdk", "-c", "write -P 0xee 0 64M", str(tmp_path / parent))
        # QEMU checks the child's parentCID against the parent's CID
        head = (tmp_path / parent).read_bytes()[:65536].decode("latin-1")
        cid = head.split("\nCID=", 1)[1].split("\n", 1)[0].strip()
    desc = tmp_path / "ses.vmdk"
    write_sesparse(tmp_path / "ses-s001.vmdk", desc, 131072, parent, cid)
    a, b = tmp_path / "ours.raw", tmp_path / "real.raw"
    run(OURS, "convert", "-f", "vmdk", "-O", "raw", str(desc), str(a))
    run(REAL, "convert", "-f", "vmdk", "-O", "raw", str(desc), str(b))
    assert a.read_bytes() == b.read_bytes()
    data = a.read_bytes()
    assert data[12288] == 4097 % 250 + 1 and data[4096] == 0
    assert data[24576] == (0xee if with_parent else 0)
    run(REAL, "compare", "-f", "vmdk", "-F", "raw", str(desc), str(a))
    p = run(OURS, "rebase", "-u", "-b", "", "-f", "vmdk", str(desc), ok=False)
    assert p.returncode == 1 and "read-only" in p.stderr, p.stderr
