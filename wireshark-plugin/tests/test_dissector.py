# SPDX-License-Identifier: GPL-2.0-or-later
# tshark with the vsockmon plugin from the build tree: field values on a real capture,
# agreement with the built-in vsock dissector, analysis expert infos, malformed frames.
import os
import random
import shutil
import struct
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
CAPTURE = os.path.join(DATA, "vsock-loopback.pcap")      # from kernel/vsockmon's test
PLUGIN = os.environ.get("VSOCKMON_PLUGIN", "")
TSHARK = os.environ.get("TSHARK") or shutil.which("tshark") or "tshark"
NOBODY = 65534

AF = struct.Struct("<QQIIHHH2s")
VIRTIO = struct.Struct("<QQIIIHHIII")


@pytest.fixture(scope="module")
def homes():
    """Two HOMEs: one with the plugin in its personal plugin folder, one without.
    Wireshark ignores personal plugins when run as root, so tshark runs as nobody."""
    if not (PLUGIN and os.path.exists(PLUGIN)):
        pytest.fail(f"run from meson: VSOCKMON_PLUGIN={PLUGIN!r} does not exist")
    top = tempfile.mkdtemp(prefix="vsockmon-ws-")
    os.chmod(top, 0o755)
    ours, builtin = os.path.join(top, "ours"), os.path.join(top, "builtin")
    pdir = os.path.join(ours, ".local/lib/wireshark/plugins/4.0/epan")
    os.makedirs(pdir)
    os.makedirs(builtin)
    shutil.copy(PLUGIN, os.path.join(pdir, "vsockmon.so"))
    shutil.copy(CAPTURE, os.path.join(top, "capture.pcap"))
    if os.geteuid() == 0:
        for d, _, files in os.walk(top):
            os.chown(d, NOBODY, NOBODY)
            for f in files:
                os.chown(os.path.join(d, f), NOBODY, NOBODY)
    yield {"ours": ours, "builtin": builtin, "top": top}
    shutil.rmtree(top, ignore_errors=True)


def tshark(homes, args, which="ours", check=True):
    argv = [TSHARK] + args
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + argv
    env = dict(os.environ, HOME=homes[which], LC_ALL="C")
    env.pop("WIRESHARK_PLUGIN_DIR", None)
    p = subprocess.run(argv, capture_output=True, timeout=120, env=env, cwd=homes["top"])
    if check and p.returncode != 0:
        raise AssertionError(f"tshark {' '.join(args)} exited {p.returncode}: "
                             f"{p.stderr.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")


def fields(homes, pcap, names, which="ours", extra=()):
    out = tshark(homes, ["-r", pcap, "-T", "fields", "-E", "occurrence=a",
                         "-E", "separator=|"] + list(extra) +
                 [x for n in names for x in ("-e", n)], which)
    return [dict(zip(names, line.split("|"))) for line in out.splitlines()]


def frames_of(homes, pcap, filt, extra=()):
    out = tshark(homes, ["-r", pcap, "-2", "-Y", filt, "-T", "fields", "-e", "frame.number"]
                 + list(extra))
    return [int(x) for x in out.split()]


def parse_capture(path):
    """Independent reading of the pcap: header fields per frame."""
    with open(path, "rb") as f:
        data = f.read()
    off, out = 24, []
    while off < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        raw = data[off + 16:off + 16 + incl]
        off += 16 + incl
        a = AF.unpack_from(raw)
        v = VIRTIO.unpack_from(raw, 32)
        out.append((a, v, raw[76:]))
    return out


def write_pcap(path, frames, snaplen=262144):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, snaplen, 271))
        for i, fr in enumerate(frames):
            raw, orig = fr if isinstance(fr, tuple) else (fr, len(fr))
            f.write(struct.pack("<IIII", 1000 + i, 0, len(raw), orig))
            f.write(raw)


def frame(src=(3, 1024), dst=(2, 5000), op=5, typ=1, flags=0, buf=65536, fwd=0,
          payload=b"", af_op=None, transport=2, hdr_len=44, vlen=None, reserved=b"\0\0",
          vsrc=None):
    if af_op is None:
        af_op = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 3, 7: 3}.get(op, 0)
    vs = vsrc or src
    a = AF.pack(src[0], dst[0], src[1], dst[1], af_op, transport, hdr_len, reserved)
    v = VIRTIO.pack(vs[0], dst[0], vs[1], dst[1], len(payload) if vlen is None else vlen,
                    typ, op, flags, buf, fwd)
    return a + v + payload


def test_plugin_loads_and_takes_over_linktype_vsock(homes):
    assert "vsockmon.so" in tshark(homes, ["-G", "plugins"])
    protos = tshark(homes, ["-G", "protocols"])
    filters = {line.split("\t")[-1] for line in protos.splitlines()}
    assert {"vsockmon", "vsock"} <= filters                          # both coexist
    out = tshark(homes, ["-r", "capture.pcap", "-T", "fields", "-e", "frame.protocols"])
    assert set(out.split()) >= {"vsockmon"} and "vsock" not in out.replace("vsockmon", "")
    # Without the plugin the built-in one decodes the same file.
    out = tshark(homes, ["-r", "capture.pcap", "-T", "fields", "-e", "frame.protocols"],
                 "builtin")
    assert "vsock" in out and "vsockmon" not in out


NAMES = ["frame.number", "vsockmon.src_cid", "vsockmon.dst_cid", "vsockmon.src_port",
         "vsockmon.dst_port", "vsockmon.op", "vsockmon.transport", "vsockmon.hdr_len",
         "vsockmon.virtio.src_cid", "vsockmon.virtio.dst_cid", "vsockmon.virtio.src_port",
         "vsockmon.virtio.dst_port", "vsockmon.virtio.len", "vsockmon.virtio.type",
         "vsockmon.virtio.op", "vsockmon.virtio.flags", "vsockmon.virtio.buf_alloc",
         "vsockmon.virtio.fwd_cnt", "vsockmon.stream", "vsockmon.payload_len"]


def test_every_header_field_on_the_real_capture(homes):
    rows = fields(homes, "capture.pcap", NAMES)
    ref = parse_capture(CAPTURE)
    assert len(rows) == len(ref) == 30
    for r, (a, v, payload) in zip(rows, ref):
        n = r["frame.number"]
        assert [int(r[k]) for k in NAMES[1:8]] == list(a[:7]), n
        assert [int(r[k]) for k in NAMES[8:15]] == list(v[:7]), n
        assert int(r["vsockmon.virtio.flags"], 16) == v[7], n
        assert (int(r["vsockmon.virtio.buf_alloc"]), int(r["vsockmon.virtio.fwd_cnt"])) == v[8:], n
        assert r["vsockmon.payload_len"] == (str(len(payload)) if payload else ""), n
    # Stream indexes: s1 (frames 1-14), q1 (15-26), two refused connections.
    streams = [int(r["vsockmon.stream"]) for r in rows]
    assert streams == [0] * 14 + [1] * 12 + [2, 2, 3, 3]


def test_value_strings_and_flags(homes):
    out = tshark(homes, ["-r", "capture.pcap", "-V", "-Y", "frame.number in {12, 20, 28}"])
    for s in ("Operation: SHUTDOWN (4)", "Shutdown RCV: True", "Shutdown SEND: True",
              "Socket type: SEQPACKET (2)", "End of message: True", "End of record: True",
              "Operation: RW (5)", "Transport: VIRTIO (2)", "Operation: DISCONNECT (2)",
              "Operation: RST (3)", "Socket type: STREAM (1)", "Operation: PAYLOAD (4)"):
        assert s in out, s
    # CREDIT_UPDATE and the names of every op are registered.
    out = tshark(homes, ["-r", "capture.pcap", "-V", "-Y", "frame.number == 4"])
    assert "Operation: CREDIT_UPDATE (6)" in out and "Operation: CONTROL (3)" in out


def test_agrees_with_the_builtin_dissector(homes):
    pairs = [("src_cid", "vsock.src_cid"), ("dst_cid", "vsock.dst_cid"),
             ("src_port", "vsock.src_port"), ("dst_port", "vsock.dst_port"),
             ("op", "vsock.op"), ("transport", "vsock.trans"), ("hdr_len", "vsock.trans_len"),
             ("virtio.src_cid", "vsock.virtio.src_cid"),
             ("virtio.dst_cid", "vsock.virtio.dst_cid"),
             ("virtio.src_port", "vsock.virtio.src_prot"),
             ("virtio.dst_port", "vsock.virtio.dst_prot"), ("virtio.len", "vsock.virtio.len"),
             ("virtio.type", "vsock.virtio.type"), ("virtio.op", "vsock.virtio.op"),
             ("virtio.flags", "vsock.virtio.flags"),
             ("virtio.buf_alloc", "vsock.virtio.buf_alloc"),
             ("virtio.fwd_cnt", "vsock.virtio.fwd_cnt")]
    ours = fields(homes, "capture.pcap", ["vsockmon." + p for p, _ in pairs])
    theirs = fields(homes, "capture.pcap", [b for _, b in pairs], "builtin")
    assert len(ours) == len(theirs) == 30
    for i, (o, t) in enumerate(zip(ours, theirs)):
        for p, b in pairs:
            assert int(o["vsockmon." + p], 0) == int(t[b], 0), (i + 1, p, o, t)


def test_analysis_expert_infos(homes):
    assert frames_of(homes, "capture.pcap", "vsockmon.window_full") == [7]
    assert frames_of(homes, "capture.pcap", "vsockmon.refused") == [28, 30]
    assert frames_of(homes, "capture.pcap", "vsockmon.reset") == [13, 14, 25, 26]
    assert frames_of(homes, "capture.pcap", "vsockmon.shutdown") == [11, 12, 24]
    assert frames_of(homes, "capture.pcap", "vsockmon.closed") == [12]
    assert frames_of(homes, "capture.pcap", "vsockmon.credit_exhausted") == []
    assert frames_of(homes, "capture.pcap", "_ws.malformed || _ws.expert.severity >= 8388608"
                     " && !vsockmon.refused && !vsockmon.window_full") == []
    rows = fields(homes, "capture.pcap", ["frame.number", "vsockmon.analysis.in_flight",
                                          "vsockmon.analysis.credit"], extra=["-Y", "frame.number == 7"])
    assert rows[0]["vsockmon.analysis.in_flight"] == "32768"
    assert rows[0]["vsockmon.analysis.credit"] == "0"


def test_seqpacket_reassembly(homes):
    rows = fields(homes, "capture.pcap", ["frame.number", "vsockmon.msg_len",
                                          "vsockmon.reassembled.in", "vsockmon.fragment"],
                  extra=["-2", "-Y", "frame.number >= 17 && frame.number <= 22 && vsockmon.virtio.op == 5"])
    by = {int(r["frame.number"]): r for r in rows}
    assert by[17]["vsockmon.msg_len"] == "100"
    assert by[19]["vsockmon.reassembled.in"] == "20"
    assert by[20]["vsockmon.msg_len"] == "70000"
    assert by[20]["vsockmon.fragment"] == "19,20"
    assert by[22]["vsockmon.msg_len"] == "10"


def test_decode_as_hands_payload_to_another_dissector(homes):
    out = tshark(homes, ["-r", "capture.pcap", "-d", "vsockmon.port==5000,data-text-lines",
                         "-Y", "frame.number == 3", "-T", "fields", "-e", "frame.protocols"])
    assert out.strip().endswith("vsockmon:data-text-lines")
    out = tshark(homes, ["-r", "capture.pcap", "-Y", "frame.number == 3", "-T", "fields",
                         "-e", "frame.protocols"])
    assert out.strip().endswith("vsockmon:data")


MALFORMED = [
    ("short", frame()[:10], "vsockmon.truncated"),
    ("no transport header", frame()[:32], "vsockmon.bad_hdr_len"),
    ("hdr_len too big", frame(hdr_len=500), "vsockmon.bad_hdr_len"),
    ("virtio hdr_len 20", frame(hdr_len=20)[:52], "vsockmon.bad_hdr_len"),
    ("len says 100", frame(payload=b"abcde", vlen=100), "vsockmon.bad_len"),
    ("len says 0 with payload", frame(payload=b"abcde", vlen=0), "vsockmon.bad_len"),
    ("unknown op", frame(op=9), "vsockmon.unknown_value"),
    ("unknown type", frame(typ=7), "vsockmon.unknown_value"),
    ("unknown transport", frame(transport=9, hdr_len=0)[:32] + b"xyz", "vsockmon.unknown_value"),
    ("addresses differ", frame(vsrc=(9, 9)), "vsockmon.hdr_mismatch"),
    ("reserved", frame(reserved=b"\1\0"), "vsockmon.reserved_nonzero"),
    ("credit request", frame(op=7), "vsockmon.credit_request"),
]


def test_malformed_frames_get_expert_errors_not_crashes(homes):
    path = os.path.join(homes["top"], "malformed.pcap")
    write_pcap(path, [f for _, f, _ in MALFORMED])
    os.chmod(path, 0o644)
    for i, (what, _, field) in enumerate(MALFORMED, 1):
        got = frames_of(homes, path, field)
        assert i in got, f"frame {i} ({what}) has no {field}: {got}"
    # Every frame is listed (nothing aborted the file).
    assert len(tshark(homes, ["-r", path]).splitlines()) == len(MALFORMED)


def test_credit_exhaustion_and_snaplen_truncation(homes):
    c, s = (3, 1024), (2, 5000)
    seq = [frame(c, s, op=1, buf=4096), frame(s, c, op=2, buf=100),
           frame(c, s, op=5, payload=b"x" * 60, buf=4096),
           frame(c, s, op=5, payload=b"y" * 40, buf=4096),              # window full
           frame(s, c, op=6, buf=100, fwd=100),                          # credit back
           frame(c, s, op=5, payload=b"z" * 150, buf=4096),             # 150 > 100
           frame(s, c, op=6, buf=100, fwd=900),                          # fwd_cnt ahead
           (frame(c, s, op=5, payload=b"w" * 50, buf=4096)[:80], 126)]  # snaplen cut
    path = os.path.join(homes["top"], "credit.pcap")
    write_pcap(path, seq, snaplen=80)
    os.chmod(path, 0o644)
    assert frames_of(homes, path, "vsockmon.window_full") == [4]
    assert frames_of(homes, path, "vsockmon.credit_exhausted") == [6]
    assert frames_of(homes, path, "vsockmon.fwd_cnt_ahead") == [7]
    assert frames_of(homes, path, "vsockmon.bad_len") == []     # cut by snaplen only
    assert len(tshark(homes, ["-r", path]).splitlines()) == len(seq)


def test_random_frames_never_crash_tshark(homes):
    rnd = random.Random(4)
    frames = []
    for _ in range(400):
        base = bytearray(frame(op=rnd.randrange(9), typ=rnd.randrange(4),
                               flags=rnd.randrange(8), payload=bytes(rnd.randrange(40))))
        for _ in range(rnd.randrange(4)):
            base[rnd.randrange(len(base))] = rnd.randrange(256)
        frames.append(bytes(base[:rnd.randrange(len(base) + 1)]))
    path = os.path.join(homes["top"], "random.pcap")
    write_pcap(path, frames)
    os.chmod(path, 0o644)
    out = tshark(homes, ["-r", path, "-2", "-V"])
    assert out.count("Linux AF_VSOCK monitor (qemu-slim)") == len(frames)
