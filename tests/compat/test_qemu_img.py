# SPDX-License-Identifier: GPL-2.0-or-later
# Compatibility of our qemu-img with QEMU 7.2's: images each one creates are read by the
# other with identical content; info/map/check/measure JSON agree; dd equals GNU dd.
import json
import os
import random
import shutil
import subprocess

import pytest

OURS = os.environ.get("QS_QEMU_IMG", "qemu-img-ours")
REAL = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
DD = shutil.which("dd")

pytestmark = pytest.mark.skipif(not (REAL and QEMU_IO and DD and os.path.exists(OURS)),
                                reason="needs qemu-utils (qemu-img, qemu-io) and GNU dd")


def run(*args, check=True, **kw):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def qio(img, *cmds, fmt="qcow2"):
    args = [QEMU_IO, "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    run(*args, img)


def raw_of(tool, img, out):
    run(tool, "convert", "-O", "raw", img, out)
    with open(out, "rb") as f:
        return f.read()


CREATE_MATRIX = [
    "compat=0.10", "compat=1.1", "cluster_size=512", "cluster_size=4k", "cluster_size=2M",
    "refcount_bits=1", "refcount_bits=8", "refcount_bits=64", "extended_l2=on",
    "compression_type=zstd", "lazy_refcounts=on", "preallocation=metadata",
    "cluster_size=16k,extended_l2=on,refcount_bits=2",
]

WORKLOAD = ["write -P 0x11 0 100k", "write -P 0x22 1M 64k", "write -z 2M 128k",
            "write -P 0x33 3000k 5000", "discard 1M 64k", "write -P 0x44 7M 1M"]


@pytest.mark.parametrize("opts", CREATE_MATRIX + ["cluster_size=1k", "cluster_size=8k",
                                                  "compat=0.10,cluster_size=512"])
def test_create_same_bytes(tmp_path, opts):
    """create writes the file QEMU writes (the header's feature name table only for
    version 3 with clusters over 4 KiB, as QEMU)."""
    for tool, name in ((OURS, "o.qcow2"), (REAL, "q.qcow2")):
        run(tool, "create", "-q", "-f", "qcow2", "-o", opts, tmp_path / name, "8M")
    assert (tmp_path / "o.qcow2").read_bytes() == (tmp_path / "q.qcow2").read_bytes()


@pytest.mark.parametrize("opts", CREATE_MATRIX)
def test_real_image_read_by_ours(tmp_path, opts):
    img = tmp_path / "r.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", "-o", opts, img, "8M")
    qio(img, *WORKLOAD)
    assert raw_of(OURS, img, tmp_path / "a.raw") == raw_of(REAL, img, tmp_path / "b.raw")
    assert run(OURS, "check", img, check=False).returncode == 0
    assert run(OURS, "compare", img, tmp_path / "b.raw").stdout == "Images are identical.\n"


@pytest.mark.parametrize("opts", CREATE_MATRIX)
def test_our_image_passes_real_check(tmp_path, opts):
    img = tmp_path / "o.qcow2"
    run(OURS, "create", "-q", "-f", "qcow2", "-o", opts, img, "8M")
    src = tmp_path / "src.raw"
    with open(src, "wb") as f:
        rnd = random.Random(1)
        f.truncate(8 << 20)
        for off in (0, 65536 * 5 + 7, 3 << 20, (8 << 20) - 70000):
            f.seek(off)
            f.write(bytes(rnd.randrange(256) for _ in range(70000)))
    run(OURS, "convert", "-n", "-O", "qcow2", src, img)
    p = run(REAL, "check", img, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert run(REAL, "compare", img, src).returncode == 0


@pytest.mark.parametrize("opts,size", [
    ("cluster_size=512,refcount_bits=64", "128M"), ("cluster_size=512,refcount_bits=32", "1G"),
    ("cluster_size=512,refcount_bits=64", "1G"), ("cluster_size=4k,refcount_bits=64", "1G"),
    ("cluster_size=512,refcount_bits=16", "256M")])
def test_create_small_refblock_ranges(tmp_path, opts, size):
    # An L1 table longer than one refcount block's range: QEMU places the missing block
    # after it.  Ours failed with EIO ("Could not resize image") until the blocks went
    # to the first free cluster; the image must pass the real check and have QEMU's size.
    ours, real = tmp_path / "o.qcow2", tmp_path / "r.qcow2"
    run(OURS, "create", "-q", "-f", "qcow2", "-o", opts, ours, size)
    run(REAL, "create", "-q", "-f", "qcow2", "-o", opts, real, size)
    p = run(REAL, "check", ours, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.getsize(ours) == os.path.getsize(real)
    qio(ours, "write -P 0x5a 0 64k", "write -P 0x6b %d 4k" % (int(size[:-1]) * (1 << 20 if size[-1] == "M" else 1 << 30) - 4096))
    assert run(REAL, "check", ours, check=False).returncode == 0


def test_snapshot_refused_with_1bit_refcounts(tmp_path):
    # A second reference does not fit in a 1-bit refcount: both refuse the snapshot with
    # the same message; ours used to leave 2 OFLAG_COPIED errors and a corrupt bit.
    for tool, name in ((OURS, "o.qcow2"), (REAL, "r.qcow2")):
        img = tmp_path / name
        run(tool, "create", "-q", "-f", "qcow2", "-o", "cluster_size=16384,refcount_bits=1",
            img, "64K")
        qio(img, "write 0 4k")
        p = run(tool, "snapshot", "-c", "gen", img, check=False)
        assert p.returncode == 1
        assert "Could not create snapshot 'gen': -22 (Invalid argument)" in p.stderr
    p = run(REAL, "check", tmp_path / "o.qcow2", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "corrupt: false" in run(REAL, "info", tmp_path / "o.qcow2").stdout


def test_compressed_both_ways(tmp_path):
    src = tmp_path / "s.raw"
    with open(src, "wb") as f:
        f.write((b"compressible text " * 40000)[: 4 << 20])
        f.truncate(6 << 20)
    for tool, other in ((OURS, REAL), (REAL, OURS)):
        for ct in ("zlib", "zstd"):
            out = tmp_path / f"c-{os.path.basename(tool)}-{ct}.qcow2"
            run(tool, "convert", "-c", "-O", "qcow2", "-o", f"compression_type={ct}", src, out)
            assert run(other, "compare", out, src).returncode == 0
            assert run(other, "check", out, check=False).returncode == 0
            info = json.loads(run(other, "check", "--output=json", out).stdout)
            assert info.get("compressed-clusters", 0) > 0


def test_backing_chain_and_snapshots(tmp_path):
    base, mid, top = tmp_path / "base.qcow2", tmp_path / "mid.qcow2", tmp_path / "top.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", base, "4M")
    qio(base, "write -P 1 0 4M")
    run(REAL, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
    qio(mid, "write -P 2 64k 64k", "write -z 1M 64k")
    run(REAL, "snapshot", "-c", "s1", mid)
    qio(mid, "write -P 3 2M 10k")
    run(OURS, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top)
    run(OURS, "snapshot", "-c", "t1", top)
    run(OURS, "snapshot", "-c", "t2", top)
    run(OURS, "snapshot", "-d", "t1", top)
    assert raw_of(OURS, top, tmp_path / "a.raw") == raw_of(REAL, top, tmp_path / "b.raw")
    assert run(REAL, "check", top).returncode == 0
    # snapshot lists agree in everything but the dates
    ours = json.loads(run(OURS, "info", "--output=json", mid).stdout)["snapshots"]
    real = json.loads(run(REAL, "info", "--output=json", mid).stdout)["snapshots"]
    assert ours == real
    # apply a snapshot made by QEMU
    run(OURS, "snapshot", "-a", "s1", mid)
    assert run(REAL, "check", mid).returncode == 0
    data = raw_of(REAL, mid, tmp_path / "m.raw")
    assert data[2 << 20: (2 << 20) + 10240] == b"\1" * 10240
    # info --backing-chain
    o = json.loads(run(OURS, "info", "--backing-chain", "--output=json", top).stdout)
    r = json.loads(run(REAL, "info", "--backing-chain", "--output=json", top).stdout)
    strip = lambda l: [{k: v for k, v in d.items() if k not in ("actual-size", "snapshots")} for d in l]
    assert strip(o) == strip(r)
    # commit and rebase
    run(OURS, "commit", top)
    assert run(REAL, "check", mid).returncode == 0
    run(OURS, "rebase", "-b", "base.qcow2", "-F", "qcow2", top)
    assert raw_of(REAL, top, tmp_path / "c.raw") == raw_of(REAL, mid, tmp_path / "d.raw")
    run(OURS, "rebase", "-b", "", top)
    assert raw_of(REAL, top, tmp_path / "e.raw") == raw_of(REAL, mid, tmp_path / "f.raw")


def info_json(tool, img, *extra):
    return json.loads(run(tool, "info", "--output=json", *extra, img).stdout)


@pytest.mark.parametrize("opts", ["compat=1.1", "compat=0.10", "extended_l2=on",
                                  "compression_type=zstd,refcount_bits=8"])
def test_json_shapes_agree(tmp_path, opts):
    img = tmp_path / "j.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", "-o", opts, img, "64M")
    qio(img, "write -P 7 0 300k", "write -z 10M 1M", "write -P 8 20M 64k")
    o, r = info_json(OURS, img), info_json(REAL, img)
    # actual-size is the host's allocation: both report it, values may differ by layout
    assert o.pop("actual-size") > 0 and r.pop("actual-size") > 0
    assert o == r and list(o) == list(r)
    assert run(OURS, "map", "--output=json", img).stdout == run(REAL, "map", "--output=json", img).stdout
    assert run(OURS, "map", img).stdout == run(REAL, "map", img).stdout
    assert run(OURS, "check", "--output=json", img).stdout == run(REAL, "check", "--output=json", img).stdout
    assert run(OURS, "check", img).stdout == run(REAL, "check", img).stdout
    for args in (["-O", "qcow2", img], ["-O", "raw", img], ["--size", "1G", "-O", "qcow2"],
                 ["-O", "qcow2", "-o", "cluster_size=4k", img]):
        for out in ("json", "human"):
            a = run(OURS, "measure", f"--output={out}", *args).stdout
            b = run(REAL, "measure", f"--output={out}", *args).stdout
            assert a == b, (args, a, b)


def test_raw_info_map_and_errors(tmp_path):
    img = tmp_path / "r.raw"
    run(REAL, "create", "-q", "-f", "raw", img, "4M")
    qio(img, "write -P 5 1M 128k", fmt="raw")
    o, r = info_json(OURS, img), info_json(REAL, img)
    o.pop("actual-size"), r.pop("actual-size")
    assert o == r
    assert run(OURS, "map", "--output=json", img).stdout == run(REAL, "map", "--output=json", img).stdout
    for args in (["check", img], ["info", tmp_path / "missing"], ["create", "-f", "qcow2", img, "1Q"],
                 ["bogus"], ["create", "-f", "qcow2", "-o", "cluster_size=1000", tmp_path / "x", "1M"]):
        a, b = run(OURS, *args, check=False), run(REAL, *args, check=False)
        assert a.returncode == b.returncode, (args, a.stderr, b.stderr)


def be_at(f, off, n=8):
    """The big-endian number of n bytes at off in the open file f."""
    f.seek(off)
    return int.from_bytes(f.read(n), "big")


CONVERT_B_CASES = {
    # top image options, writes into the top over a base of 1 at 0-1M and 2 at 2-3M
    "mixed": ("", ["write -P 3 512k 64k", "write -P 2 2M 64k", "write -z 3M 64k"]),
    "zeros-over-data": ("", ["write -z 2M 64k", "write -z 2560k 128k"]),
    "small-clusters": ("cluster_size=4k", ["write -P 9 8k 4k", "write -z 100k 4k",
                                           "write -P 8 2100k 12k"]),
}


@pytest.mark.parametrize("case", list(CONVERT_B_CASES) + ["raw-source"])
def test_convert_with_target_backing(tmp_path, case):
    """convert -B: only what the source's top layer holds is copied, the rest is left to
    the target's backing file (opened: a part-written cluster is completed from it, zeros
    over its data are stored); the file equals QEMU's and reads as the source."""
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", base, "4M")
    qio(base, "write -P 1 0 1M", "write -P 2 2M 1M")
    opts, writes = CONVERT_B_CASES.get(case, CONVERT_B_CASES["mixed"])
    run(REAL, "create", "-q", "-f", "qcow2", *(["-o", opts] if opts else []), "-b", base,
        "-F", "qcow2", top)
    qio(top, *writes)
    src = top
    if case == "raw-source":                        # a source without a backing file
        src = tmp_path / "flat.raw"
        run(REAL, "convert", "-O", "raw", top, src)
    for tool, name in ((OURS, "o.qcow2"), (REAL, "q.qcow2")):
        run(tool, "convert", "-O", "qcow2", "-B", base, "-F", "qcow2", src, tmp_path / name)
    assert run(REAL, "compare", tmp_path / "o.qcow2", src).returncode == 0
    assert (tmp_path / "o.qcow2").read_bytes() == (tmp_path / "q.qcow2").read_bytes()


def test_snapshot_unknown_extra_data(tmp_path):
    """A snapshot table entry with extra data we do not know (QEMU keeps it): listed,
    kept when the table is rewritten, and its snapshot deleted, as by QEMU."""
    img = tmp_path / "x.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", img, "1M")
    run(REAL, "snapshot", "-c", "s1", img)
    unknown = bytes(range(1, 9))
    with open(img, "r+b") as f:
        table = be_at(f, 64)
        f.seek(table)
        entry = f.read(65536)
        extra = int.from_bytes(entry[36:40], "big")
        id_len, name_len = be_at(f, table + 12, 2), be_at(f, table + 14, 2)
        names = entry[40 + extra:40 + extra + id_len + name_len]
        new = (entry[:36] + (extra + 8).to_bytes(4, "big") + entry[40:40 + extra] +
               unknown + names)
        f.seek(table)
        f.write(new + bytes(-len(new) % 8))
    listing = run(REAL, "snapshot", "-l", img).stdout
    assert run(OURS, "snapshot", "-l", img).stdout == listing
    run(OURS, "snapshot", "-c", "s2", img)            # rewrites the table
    with open(img, "rb") as f:
        table = be_at(f, 64)
        f.seek(table)
        assert unknown in f.read(65536)
    assert run(REAL, "check", img).returncode == 0
    run(OURS, "snapshot", "-d", "s1", img)
    assert run(REAL, "check", img).returncode == 0
    assert "s1" not in run(REAL, "snapshot", "-l", img).stdout
    assert "s2" in run(REAL, "snapshot", "-l", img).stdout


def test_snapshot_list_long_tags_and_sizes(tmp_path):
    """`snapshot -l` and `info` columns agree with QEMU's when tags (16 characters and
    more) and VM state sizes ("0.999 KiB") overflow their columns."""
    img = tmp_path / "x.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", img, "1M")
    for n in (5, 15, 16, 17, 18, 40):
        run(REAL, "snapshot", "-c", "t" * n, img)
    sizes = [0, 1023, 1 << 20, 3 << 29, 123456789012, 1000 << 10]
    with open(img, "r+b") as f:     # each entry's VM state size, both fields of it
        table, off = be_at(f, 64), 0
        for size in sizes:
            f.seek(table + off)
            e = f.read(40)
            extra = int.from_bytes(e[36:40], "big")
            f.seek(table + off + 32)
            f.write((size & 0xffffffff).to_bytes(4, "big"))
            if extra >= 8:
                f.seek(table + off + 40)
                f.write(size.to_bytes(8, "big"))
            id_len, name_len = int.from_bytes(e[12:14], "big"), int.from_bytes(e[14:16], "big")
            off += (40 + extra + id_len + name_len + 7) // 8 * 8
    assert run(OURS, "snapshot", "-l", img).stdout == run(REAL, "snapshot", "-l", img).stdout
    assert run(OURS, "info", img).stdout == run(REAL, "info", img).stdout


def empty_entries_image(path, empty_in_file, empty_past_end):
    """A qcow2 image whose two snapshots' table has an empty (all-zero) entry between
    them and then empty entries: in the table's cluster, then past the end of the
    file (where reads return zeroes)."""
    run(REAL, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "1M")
    qio(path, "write -P 0x11 0 64k")
    run(REAL, "snapshot", "-c", "s1", path)
    run(REAL, "snapshot", "-c", "s2", path)
    with open(path, "r+b") as f:
        table, nb = be_at(f, 64), be_at(f, 60, 4)
        assert nb == 2 and table + 4096 >= os.path.getsize(path)   # the file's last cluster
        f.seek(table)
        raw = f.read(4096)
        entries, off = [], 0
        for _ in range(2):
            extra = int.from_bytes(raw[off + 36:off + 40], "big")
            names = int.from_bytes(raw[off + 12:off + 14], "big") + int.from_bytes(raw[off + 14:off + 16], "big")
            length = (40 + extra + names + 7) // 8 * 8
            entries.append(raw[off:off + length])
            off += length
        new = entries[0] + bytes(40) + entries[1] + bytes(40 * empty_in_file)
        assert len(new) <= 4096
        f.seek(table)
        f.write(new + bytes(4096 - len(new)))
        if empty_past_end:
            f.truncate(table + len(new))
        f.seek(60)
        f.write((3 + empty_in_file + empty_past_end).to_bytes(4, "big"))


def test_snapshot_table_with_empty_entries(tmp_path):
    """Tables with empty entries (no names, no L1 table): those a hostile header adds
    past the end of the file are listed and checked as QEMU does, and check -r all or
    snapshots created or deleted after ones in the file give QEMU's table."""
    past = tmp_path / "past.qcow2"
    empty_entries_image(past, 0, 200)
    # (check also reports each entry without 16 bytes of extra data as incomplete)
    for cmd in (["info", "--output=json"], ["snapshot", "-l"], ["check"]):
        ours, real = run(OURS, *cmd, past, check=False), run(REAL, *cmd, past, check=False)
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (real.returncode, real.stdout, real.stderr), cmd
    img = tmp_path / "x.qcow2"
    empty_entries_image(img, 50, 0)
    strip_dates = lambda text: [l[:40] for l in text.splitlines()]
    assert strip_dates(run(OURS, "snapshot", "-l", img).stdout) == strip_dates(run(REAL, "snapshot", "-l", img).stdout)
    # check -r all rewrites the table with whole entries, as QEMU's does
    mine, theirs = tmp_path / "mine.qcow2", tmp_path / "theirs.qcow2"
    shutil.copy(img, mine)
    shutil.copy(img, theirs)
    ours = run(OURS, "check", "-r", "all", mine, check=False)
    real = run(REAL, "check", "-r", "all", theirs, check=False)
    assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr)
    assert run(REAL, "check", mine).stdout == run(REAL, "check", theirs).stdout
    assert run(REAL, "snapshot", "-l", mine).stdout == run(REAL, "snapshot", "-l", theirs).stdout
    for op in (["-c", "s3"], ["-d", "s1"], ["-d", "s2"]):
        mine, theirs = tmp_path / "mine.qcow2", tmp_path / "theirs.qcow2"
        shutil.copy(img, mine)
        shutil.copy(img, theirs)
        run(OURS, "snapshot", *op, mine)
        run(REAL, "snapshot", *op, theirs)
        assert (strip_dates(run(REAL, "snapshot", "-l", mine).stdout) ==
                strip_dates(run(REAL, "snapshot", "-l", theirs).stdout)), op
        assert run(REAL, "check", mine).stdout == run(REAL, "check", theirs).stdout, op


def test_snapshot_errors_match(tmp_path):
    """Failed snapshot operations say what QEMU's say: a name not found, and a table
    that cannot be rewritten (it would overlap its own tail past the end of the
    file)."""
    img = tmp_path / "x.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", img, "1M")
    run(REAL, "snapshot", "-c", "s1", img)
    for op in (["-d", "nope"], ["-a", "nope"]):
        ours, real = run(OURS, "snapshot", *op, img, check=False), run(REAL, "snapshot", *op, img, check=False)
        assert (ours.returncode, ours.stderr) == (real.returncode, real.stderr), op
    past = tmp_path / "past.qcow2"
    empty_entries_image(past, 0, 200)
    for op in (["-d", "s1"], ["-c", "s3"]):
        mine, theirs = tmp_path / "mine.qcow2", tmp_path / "theirs.qcow2"
        shutil.copy(past, mine)
        shutil.copy(past, theirs)
        ours, real = run(OURS, "snapshot", *op, mine, check=False), run(REAL, "snapshot", *op, theirs, check=False)
        assert ours.returncode == real.returncode == 1, op
        assert ours.stderr.replace("mine", "theirs") == real.stderr, op


def test_check_leaks_and_repair(tmp_path):
    img = tmp_path / "l.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 1 0 1M")
    # leak a cluster: raise the refcount of the last data cluster by hand
    with open(img, "r+b") as f:
        rb = be_at(f, be_at(f, 48))   # the first refcount block
        clusters = f.seek(0, 2) // 65536
        f.truncate((clusters + 1) * 65536)
        f.seek(rb + 2 * clusters)
        f.write((1).to_bytes(2, "big"))
    for tool in (REAL, OURS):
        p = run(tool, "check", img, check=False)
        assert p.returncode == 3, p.stdout
    assert run(OURS, "check", "--output=json", img, check=False).stdout == \
        run(REAL, "check", "--output=json", img, check=False).stdout
    # the repair: QEMU's first pass names the leak, its second repairs it; output, exit
    # code and the repaired file equal QEMU's (a copy each, same name: messages have it)
    for mode in ("leaks", "all"):
        for who in ("ours", "real"):
            (tmp_path / who).mkdir(exist_ok=True)
            shutil.copy(img, tmp_path / who)
        ours = run(os.path.abspath(OURS), "check", "-r", mode, "l.qcow2", check=False,
                   cwd=tmp_path / "ours")
        theirs = run(REAL, "check", "-r", mode, "l.qcow2", check=False, cwd=tmp_path / "real")
        assert "Leaked cluster" in ours.stderr and "Repairing cluster" in ours.stderr
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr)
        assert (tmp_path / "ours/l.qcow2").read_bytes() == (tmp_path / "real/l.qcow2").read_bytes()
        assert run(REAL, "check", tmp_path / "ours/l.qcow2").returncode == 0


@pytest.mark.parametrize("past_end", [0, 2, 70000])
def test_check_reference_past_end_of_file(tmp_path, past_end):
    """An L2 entry naming a cluster at or past the end of the file: QEMU counts at most
    a partial last cluster and reports the rest; our output and exit code equal its."""
    img = tmp_path / "e.qcow2"
    run(REAL, "create", "-q", "-f", "qcow2", img, "1M")
    qio(img, "write -P 1 0 64k")
    with open(img, "r+b") as f:
        l2 = be_at(f, be_at(f, 40)) & 0x00fffffffffffe00   # L1 entry 0's table
        end = f.seek(0, 2)
        f.seek(l2)
        f.write(((1 << 63) | (end + past_end * 65536)).to_bytes(8, "big"))
    (tmp_path / "real").mkdir()
    shutil.copy(img, tmp_path / "real")
    for args in (["check"], ["check", "--output=json"]):   # same name: JSON has it
        ours = run(os.path.abspath(OURS), *args, "e.qcow2", check=False, cwd=tmp_path)
        theirs = run(REAL, *args, "e.qcow2", check=False, cwd=tmp_path / "real")
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr)


def test_resize_amend(tmp_path):
    img = tmp_path / "z.qcow2"
    run(OURS, "create", "-q", "-f", "qcow2", img, "1M")
    assert run(OURS, "resize", img, "+1G").stdout == "Image resized.\n"
    assert run(OURS, "resize", img, "512M", check=False).returncode == 1
    run(OURS, "resize", "--shrink", img, "512M")
    run(OURS, "amend", "-o", "compat=0.10", img)
    assert info_json(REAL, img)["format-specific"]["data"]["compat"] == "0.10"
    run(OURS, "amend", "-o", "compat=1.1,lazy_refcounts=on", img)
    assert info_json(REAL, img)["format-specific"]["data"]["lazy-refcounts"] is True
    assert run(REAL, "check", img).returncode == 0
    assert info_json(REAL, img)["virtual-size"] == 512 << 20


def test_empty_1t_convert_is_fast(tmp_path):
    img = tmp_path / "e.qcow2"
    run(OURS, "create", "-q", "-f", "qcow2", img, "1T")
    run(OURS, "convert", "-O", "qcow2", img, tmp_path / "e2.qcow2", timeout=20)
    assert run(REAL, "compare", img, tmp_path / "e2.qcow2").returncode == 0


# ---- dd against GNU dd ----

def dd_stats(stderr):
    # the record lines and the byte counts, not the timing or the program's name
    return [l.split(" copied")[0] for l in stderr.strip().split("\n")
            if "records" in l or " copied" in l]


DD_CASES = [
    ["bs=512"], ["bs=4096", "count=3"], ["bs=1000", "skip=3"], ["bs=4k", "skip=2", "count=5"],
    ["bs=64k", "seek=2"], ["bs=1M", "count=2", "skip=1"], ["bs=3000", "count=7", "seek=5"],
    ["bs=512", "skip=5000"], ["bs=4096", "count=0"], ["bs=4096", "conv=sparse"],
    ["bs=4096", "seek=3", "conv=notrunc"], ["bs=8192", "skip=10", "count=4", "conv=notrunc,sparse"],
    ["bs=1000", "iflag=skip_bytes,count_bytes", "skip=777", "count=123457"],
    ["bs=4096", "oflag=seek_bytes", "seek=12345", "count=9"],
    ["bs=65536", "status=noxfer"], ["bs=4096", "status=none", "count=2"],
]


@pytest.mark.parametrize("case", DD_CASES, ids=lambda c: ",".join(c))
def test_dd_matches_gnu(tmp_path, case):
    src = tmp_path / "in.raw"
    rnd = random.Random(4)
    with open(src, "wb") as f:
        f.write(bytes(rnd.randrange(256) for _ in range(300000)))
        f.write(bytes(400000))
        f.write(bytes(rnd.randrange(256) for _ in range(123457)))
    outs = {}
    for tool in ("gnu", "ours"):
        out = tmp_path / f"{tool}.out"
        with open(out, "wb") as f:      # an existing output, for notrunc/seek semantics
            f.write(b"\xaa" * 150000)
        args = [DD] if tool == "gnu" else [OURS, "dd"]
        p = run(*args, f"if={src}", f"of={out}", *case)
        outs[tool] = (open(out, "rb").read(), dd_stats(p.stderr))
    assert outs["ours"][0] == outs["gnu"][0]
    assert outs["ours"][1] == outs["gnu"][1]


def test_dd_pipes_and_qcow2(tmp_path):
    src = tmp_path / "in.raw"
    with open(src, "wb") as f:
        f.write(os.urandom(200000))
        f.truncate(1 << 20)
    data = open(src, "rb").read()
    p = subprocess.run([OURS, "dd", "if=-", "of=-", "bs=4096", "skip=2", "count=10"],
                       input=data, capture_output=True)
    g = subprocess.run([DD, "bs=4096", "skip=2", "count=10"], input=data, capture_output=True)
    assert p.stdout == g.stdout
    q = tmp_path / "o.qcow2"
    run(OURS, "dd", "-O", "qcow2", f"if={src}", f"of={q}", "bs=64k", "skip=1")
    assert run(REAL, "check", q).returncode == 0
    assert raw_of(REAL, q, tmp_path / "q.raw") == data[65536:]
    # the zero tail stays unallocated
    m = json.loads(run(REAL, "map", "--output=json", q).stdout)
    assert any(not e["data"] for e in m)
    for bad in (["foo=1"], ["bs=0"], ["bs=1x"], ["conv=bogus"], ["status=loud"]):
        p = run(OURS, "dd", f"if={src}", f"of={tmp_path / 'x'}", *bad, check=False)
        assert p.returncode == 1 and p.stderr.startswith("qemu-img: "), (bad, p.stderr)
    # upstream's bug: skip= with count= copies what GNU dd copies
    run(OURS, "dd", f"if={src}", f"of={tmp_path / 'u.raw'}", "bs=512", "skip=3", "count=2")
    assert open(tmp_path / "u.raw", "rb").read() == data[1536:2560]
