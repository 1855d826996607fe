# SPDX-License-Identifier: GPL-2.0-or-later
# vhdx differencing images made and changed by our qemu-img (create -b, rebase, commit)
# over parents made by Debian's real qemu-img 7.2; what ends up in a parent is checked
# and compared by the real qemu-img (it cannot open differencing images itself).
import pytest

from imgtools import OURS, QEMU_IO, REAL, js, need_tools, run

MiB = 1 << 20


@pytest.fixture(autouse=True)
def tools():
    need_tools()


def io(img, *cmds):
    args = []
    for c in cmds:
        args += ["-c", c]
    run(QEMU_IO, "-f", "vhdx", *args, str(img))


def parents(tmp_path):
    """base: data in blocks 0-5; base2: base with a few odd-sized changes."""
    base, base2 = tmp_path / "base.vhdx", tmp_path / "base2.vhdx"
    run(REAL, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", str(base), "8M")
    io(base, "write -P 0x11 0 6M")
    run(REAL, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", str(base2), "8M")
    io(base2, "write -P 0x11 0 6M", "write -P 0x22 5000 600", "write -P 0x33 3M 4k",
       "write -P 0x44 7M 1536", "write -z 1M 512k")
    return base, base2


def test_create_info(tmp_path):
    base, _ = parents(tmp_path)
    child = tmp_path / "child.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", "-b", "base.vhdx", "-F", "vhdx", str(child))
    info = js(OURS, "info", "--output=json", str(child))
    assert info["virtual-size"] == 8 * MiB
    assert info["backing-filename"] == "base.vhdx"
    assert info["backing-filename-format"] == "vhdx"
    run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base), str(child))
    assert run(OURS, "check", str(child)).returncode == 0
    # every byte comes from the parent
    m = js(OURS, "map", "--output=json", str(child))
    assert all(e["depth"] == 1 for e in m), m
    # the locator's keys, as the specification names them, in UTF-16LE
    raw = child.read_bytes()
    for key in ("parent_linkage", "relative_path", "absolute_win32_path"):
        assert key.encode("utf-16-le") in raw
    assert ".\\base.vhdx".encode("utf-16-le") in raw


def test_rebase_commit(tmp_path):
    base, base2 = parents(tmp_path)
    child = tmp_path / "child.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", "-b", "base.vhdx", "-F",
        "vhdx", str(child))
    # a safe rebase keeps the content: the child takes base's data where base2 differs
    run(OURS, "rebase", "-b", "base2.vhdx", "-F", "vhdx", str(child))
    assert js(OURS, "info", "--output=json", str(child))["backing-filename"] == "base2.vhdx"
    run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base), str(child))
    assert run(OURS, "check", str(child)).returncode == 0
    m = js(OURS, "map", "--output=json", str(child))
    own = sorted((e["start"], e["length"]) for e in m if e["depth"] == 0)
    assert own == [(0, 2 * MiB), (3 * MiB, MiB), (7 * MiB, MiB)], own
    # commit: base2 becomes base, checked and compared by the real qemu-img
    run(OURS, "commit", str(child))
    assert run(REAL, "check", "-f", "vhdx", str(base2)).returncode == 0
    run(REAL, "compare", "-f", "vhdx", "-F", "vhdx", str(base), str(base2))
    # the child was emptied and linked to base2's new DataWriteGuid
    run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base), str(child))
    m = js(OURS, "map", "--output=json", str(child))
    assert all(e["depth"] == 1 for e in m), m
    assert child.stat().st_size <= 5 * MiB


def test_linkage(tmp_path):
    base, base2 = parents(tmp_path)
    child = tmp_path / "child.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", "-b", "base2.vhdx", "-F", "vhdx", str(child))
    io(base2, "write -P 0x55 0 512")      # the real qemu-img changes the parent
    p = run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base2), str(child), ok=False)
    assert p.returncode != 0
    assert "expects parent_linkage" in p.stderr and "base2.vhdx" in p.stderr, p.stderr
    # an unsafe rebase relinks it (the content is then the changed parent's)
    run(OURS, "rebase", "-u", "-b", "base2.vhdx", str(child))
    run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base2), str(child))


@pytest.mark.parametrize("args,want", [
    (["-b", ""], "cannot be removed"),
    (["-b", "other.qcow2", "-F", "qcow2"], "must be a VHDX image"),
])
def test_rebase_refused(tmp_path, args, want):
    parents(tmp_path)
    run(REAL, "create", "-q", "-f", "qcow2", str(tmp_path / "other.qcow2"), "8M")
    child = tmp_path / "child.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", "-b", "base.vhdx", "-F", "vhdx", str(child))
    p = run(OURS, "rebase", *args, str(child), ok=False)
    assert p.returncode != 0 and want in p.stderr, p.stderr


@pytest.mark.parametrize("opts,want", [
    ("backing_file=other.qcow2", "is not a VHDX image"),
    ("backing_file=other.qcow2,backing_fmt=qcow2", "must be a VHDX image"),
    ("backing_file=base.vhdx,subformat=fixed", "cannot be fixed"),
    ("backing_file=missing.vhdx", "missing.vhdx"),
])
def test_create_refused(tmp_path, opts, want):
    parents(tmp_path)
    run(REAL, "create", "-q", "-f", "qcow2", str(tmp_path / "other.qcow2"), "8M")
    p = run(OURS, "create", "-q", "-f", "vhdx", "-o", opts, str(tmp_path / "c.vhdx"), "8M",
            ok=False)
    assert p.returncode != 0 and want in p.stderr, p.stderr


def test_crashed_session_replayed(tmp_path):
    """A session of ours that dies after a flush inside a partially present block: the
    log holds the sector bitmap and BAT sectors; a read-only open refuses the dirty log,
    check -r all replays it and the written sectors are there, the rest is the parent's."""
    import os
    crash = os.environ.get("QS_FMT_CRASH", "")
    if not crash or not os.path.exists(crash):
        pytest.skip("QS_FMT_CRASH (the fmt-crash helper) is not set")
    base, _ = parents(tmp_path)
    child = tmp_path / "child.vhdx"
    run(OURS, "create", "-q", "-f", "vhdx", "-o", "block_size=1M", "-b", "base.vhdx", "-F",
        "vhdx", str(child))
    run(crash, str(child), "vhdx", str(MiB + 512), "119")
    p = run(OURS, "compare", "-f", "vhdx", "-F", "vhdx", str(base), str(child), ok=False)
    assert p.returncode != 0 and "replay" in p.stderr, p.stderr
    assert run(OURS, "check", "-r", "all", str(child)).returncode == 0
    exp = tmp_path / "exp.raw"
    run(REAL, "convert", "-O", "raw", str(base), str(exp))
    with open(exp, "r+b") as f:
        f.seek(MiB + 512)
        f.write(bytes([119]) * 4096)
    run(OURS, "compare", "-f", "raw", "-F", "vhdx", str(exp), str(child))
    m = js(OURS, "map", "--output=json", str(child))
    own = [(e["start"], e["length"]) for e in m if e["depth"] == 0]
    assert own == [(MiB + 512, 4096)], own
