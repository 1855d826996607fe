# SPDX-License-Identifier: GPL-2.0-or-later
# End-to-end: boots Debian's kernel, captures vsock_loopback traffic through our vsockmon
# (then the distribution's), and checks every frame against what the generator did.
import json
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.environ.get("QSVM_DIR", os.path.join(HERE, "..", "..", "..", "tests", "vm")))
import qsvm  # noqa: E402
import vsockpcap  # noqa: E402

KO = os.environ.get("VSOCKMON_KO", "")
TRAFFIC = os.environ.get("VSOCK_TRAFFIC", "")
OUT = os.environ.get("VSOCKMON_CAPTURE_DIR")   # optional: keep the captures here

MAX_PKT = 64 * 1024
CID_LOCAL = 1
OP = {v: k for k, v in vsockpcap.VIRTIO_OPS.items()}
AF_OP_OF = {"REQUEST": 1, "RESPONSE": 1, "RST": 2, "SHUTDOWN": 2, "RW": 4,
            "CREDIT_UPDATE": 3, "CREDIT_REQUEST": 3}
TYPE = {"stream": 1, "seqpacket": 2}
SHUT_RCV, SHUT_SEND = 1, 2
SEQ_EOM, SEQ_EOR = 1, 2

GUEST = r"""
set -u
log() { echo "== $*"; progress "$*"; }
wait_listening() {  # tcpdump prints "listening on" once its socket is bound
  i=0; while ! grep -q "listening on" "$1" 2>/dev/null; do
    i=$((i+1)); [ $i -gt 100 ] && { echo "tcpdump did not start: $(cat $1)"; exit 3; }
    sleep 0.1; done
}
wait_flushed() {  # $1 device, $2 pcap: until tcpdump wrote every frame the device saw
  i=0; while :; do
    n=$(cat /sys/class/net/$1/statistics/rx_packets); b=$(cat /sys/class/net/$1/statistics/rx_bytes)
    [ "$(stat -c %s $2)" = $((24 + 16 * n + b)) ] && return 0
    i=$((i+1)); [ $i -gt 200 ] && { echo "$2: tcpdump did not write $n frames"; exit 3; }
    sleep 0.1; done
}
capture_run() {  # $1: tag.  Capture the scenario on vsockmon0 and vsockmon1 at once.
  ip link add vsockmon0 type vsockmon || exit 4
  ip link add vsockmon1 type vsockmon || exit 4
  ip link add vsockmon2 type vsockmon || exit 4      # stays down: must see nothing
  ip link set vsockmon0 up && ip link set vsockmon1 up || exit 4
  tcpdump -Z root -U --immediate-mode -B 32768 -i vsockmon0 -w $1-0.pcap 2> $1-0.err & T0=$!
  tcpdump -Z root -U --immediate-mode -B 32768 -i vsockmon1 -w $1-1.pcap 2> $1-1.err & T1=$!
  wait_listening $1-0.err; wait_listening $1-1.err
  vsock-traffic > $1-traffic.log || { echo "vsock-traffic failed"; exit 5; }
  wait_flushed vsockmon0 $1-0.pcap; wait_flushed vsockmon1 $1-1.pcap
  kill -INT $T0 $T1; wait $T0; wait $T1
  ip -d -j -s link show > $1-links.json
}

log ours
insmod /qsvm/ko/vsockmon.ko || exit 2
cat /sys/module/vsockmon/version > ours-version.txt
cat /sys/module/vsockmon/taint > ours-taint.txt
capture_run ours
ip link add vsockmonx address 00:11:22:33:44:55 type vsockmon 2> ours-addr.err
echo $? > ours-addr.status

log unload-while-capturing
tcpdump -Z root -U --immediate-mode -B 32768 -i vsockmon1 -w unload.pcap 2> unload.err & T=$!
wait_listening unload.err
vsock-traffic bulk 8 > bulk.log 2>&1 & B=$!
sleep 0.5
rmmod vsockmon 2> rmmod-up.err; echo $? > rmmod-up.status
log rmmod-refused
ip link del vsockmon1                      # under tcpdump and traffic
log deleted
ip link set vsockmon0 down
rmmod vsockmon 2> rmmod-down.err; echo $? > rmmod-down.status
log rmmod-done
wait $B; echo $? > bulk.status
log bulk-done
wait $T; echo $? > unload-tcpdump.status
[ -e /sys/module/vsockmon ] && echo loaded > after-rmmod.txt || echo gone > after-rmmod.txt

log distro
insmod /qsvm/distro/vsockmon.ko || exit 6
cat /sys/module/vsockmon/taint > distro-taint.txt
capture_run distro
log end
"""


def fill(tag, n):
    return bytes((tag * 31 + i) % 251 for i in range(n))


class Side:
    def __init__(self, port, buf):
        self.port, self.buf, self.fwd = port, buf, 0
        self.got_full_shutdown = False


def expected_frames(log):
    """Every frame the vsock core must produce for the generator's log, in order, as
    dicts of header fields (+payload): the virtio-vsock protocol as Linux 6.1 runs it
    over vsock_loopback (a credit update after each read that drains the queue, a
    SHUTDOWN with both flags on close answered by an RST, a refused REQUEST
    answered by an RST from no socket)."""
    conns, out = {}, []

    def frame(t, src, dst, op, flags=0, payload=b"", fields=None):
        f = dict(type=t, src_port=src.port, dst_port=dst.port, op=op, flags=flags,
                 len=len(payload), buf_alloc=src.buf, fwd_cnt=src.fwd, payload=payload)
        f.update(fields or {})
        out.append(f)

    for line in log.splitlines():
        word, *kv = line.split()
        name = kv[0] if kv and "=" not in kv[0] else None
        a = dict(x.split("=", 1) for x in kv if "=" in x)
        if word == "conn":
            c = Side(int(a["cport"]), int(a["cbuf"]))
            s = Side(int(a["sport"]), int(a["sbuf"]))
            t = TYPE[a["type"]]
            conns[name] = (t, {"client": c, "server": s})
            frame(t, c, s, "REQUEST")
            frame(t, s, c, "RESPONSE")
            continue
        if word == "refused":
            t = TYPE[a["type"]]
            c = Side(int(a["cport"]), 262144)
            nobody = Side(int(a["sport"]), 0)
            frame(t, c, nobody, "REQUEST")
            frame(t, nobody, c, "RST")
            continue
        if word == "done" or name is None:
            continue
        t, sides = conns[name]
        who = a.get("from") or a.get("by")
        me = sides[who]
        peer = sides["server" if who == "client" else "client"]
        if word == "send":
            data = fill(int(a["tag"]), int(a["len"]))
            chunks = [data[i:i + MAX_PKT] for i in range(0, len(data), MAX_PKT)]
            for i, ch in enumerate(chunks):
                flags = 0
                if t == TYPE["seqpacket"] and i == len(chunks) - 1:
                    flags = SEQ_EOM | (SEQ_EOR if a["eor"] == "1" else 0)
                frame(t, me, peer, "RW", flags, ch)
        elif word == "recv":
            me.fwd += int(a["len"])
            frame(t, me, peer, "CREDIT_UPDATE")
        elif word == "shutdown":
            assert a["how"] == "wr"
            frame(t, me, peer, "SHUTDOWN", SHUT_SEND)
        elif word == "close":
            if me.got_full_shutdown:
                frame(t, me, peer, "RST")
            else:
                frame(t, me, peer, "SHUTDOWN", SHUT_RCV | SHUT_SEND)
                peer.got_full_shutdown = True
                frame(t, peer, me, "RST")
        elif word != "eof":
            raise AssertionError(f"unknown generator log line: {line}")
    return out


def check_frame(i, f, exp):
    where = f"frame {i + 1} ({f.op} {f.src_port}->{f.dst_port})"
    # af_vsockmon_hdr
    assert (f.src_cid, f.dst_cid) == (CID_LOCAL, CID_LOCAL), where
    assert (f.src_port, f.dst_port) == (exp["src_port"], exp["dst_port"]), where
    assert f.af_op == AF_OP_OF[exp["op"]], where
    assert f.transport == 2 and f.hdr_len == 44, where
    assert f.reserved == b"\0\0", where
    # virtio_vsock_hdr
    v = f.v
    assert (v["src_cid"], v["dst_cid"]) == (CID_LOCAL, CID_LOCAL), where
    assert (v["src_port"], v["dst_port"]) == (f.src_port, f.dst_port), where
    assert v["op"] == OP[exp["op"]], f"{where}: op {f.op}, expected {exp['op']}"
    assert v["type"] == exp["type"], where
    assert v["flags"] == exp["flags"], where
    assert v["len"] == exp["len"] == len(f.payload), where
    assert v["buf_alloc"] == exp["buf_alloc"], where
    assert v["fwd_cnt"] == exp["fwd_cnt"], where
    assert f.payload == exp["payload"], f"{where}: payload differs"


_guest_failure = []


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """One boot for every test here; a failed boot is reported once, not re-run."""
    if _guest_failure:
        pytest.fail(f"the guest run failed (see the first error): {_guest_failure[0]}")
    try:
        return _run_guest(tmp_path_factory)
    except Exception as e:
        _guest_failure.append(str(e).splitlines()[0])
        raise


def _run_guest(tmp_path_factory):
    if not (KO and os.path.exists(KO) and TRAFFIC and os.path.exists(TRAFFIC)):
        pytest.fail(f"run from meson: VSOCKMON_KO={KO!r} VSOCK_TRAFFIC={TRAFFIC!r} missing")
    kernel = qsvm.Kernel()
    rel = os.environ.get("KERNEL_RELEASE")
    assert rel == kernel.release, \
        f"module built for {rel}, harness boots {kernel.release}: rebuild with matching headers"
    kernel.prepare()
    distro = os.path.join(kernel.moddir, kernel.module_path("vsockmon"))
    g = qsvm.Guest(GUEST, kernel=kernel, modules=["vsock_loopback"],
                   binaries=["ip", "tcpdump", TRAFFIC],
                   files={"/qsvm/ko/vsockmon.ko": KO, "/qsvm/distro/vsockmon.ko": distro})
    r = g.run(timeout=180).check()
    if OUT:
        os.makedirs(OUT, exist_ok=True)
        for n in ("ours-0.pcap", "distro-0.pcap", "ours-traffic.log"):
            with open(os.path.join(OUT, n), "wb") as f:
                f.write(r.files[n])
    d = tmp_path_factory.mktemp("vsockmon")
    for name, data in r.files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return r, d


def text(r, name):
    return r.files[name].decode(errors="replace").strip()


def test_our_module_was_loaded(guest):
    r, _ = guest
    assert text(r, "ours-version.txt") == "1.0.0-qs"
    assert "O" in text(r, "ours-taint.txt")           # out of tree: ours
    assert "O" not in text(r, "distro-taint.txt")     # in tree: Debian's


def test_every_frame_matches_the_generator(guest):
    r, d = guest
    frames = vsockpcap.read(str(d / "ours-0.pcap"))
    exp = expected_frames(text(r, "ours-traffic.log"))
    ops = [f.op for f in frames]
    assert len(frames) == len(exp), f"captured {ops}, expected {[e['op'] for e in exp]}"
    for i, (f, e) in enumerate(zip(frames, exp)):
        check_frame(i, f, e)
    # The scenario covers what the issue asks for.
    kinds = {(f.op, f.v["type"]) for f in frames}
    for k in [("REQUEST", 1), ("RESPONSE", 2), ("RW", 1), ("RW", 2), ("CREDIT_UPDATE", 1),
              ("SHUTDOWN", 1), ("RST", 1), ("RST", 2)]:
        assert k in kinds, k
    assert any(f.op == "RST" and f.v["buf_alloc"] == 0 for f in frames)   # refused


def test_two_monitors_see_the_same_frames(guest):
    _, d = guest
    a = [raw for _, raw in vsockpcap.read_records(str(d / "ours-0.pcap"))]
    b = [raw for _, raw in vsockpcap.read_records(str(d / "ours-1.pcap"))]
    assert a == b and a


def test_statistics_in_ip_link(guest):
    r, d = guest
    frames = vsockpcap.read_records(str(d / "ours-0.pcap"))
    links = {l["ifname"]: l for l in json.loads(r.files["ours-links.json"])}
    for dev in ("vsockmon0", "vsockmon1"):
        st = links[dev]["stats64"]["rx"]
        assert st["packets"] == len(frames), dev
        assert st["bytes"] == sum(len(raw) for _, raw in frames), dev
        assert st["dropped"] == 0, dev
        assert links[dev]["link_type"] == "[826]"            # ARPHRD_VSOCKMON
        assert links[dev]["linkinfo"]["info_kind"] == "vsockmon"
    down = links["vsockmon2"]["stats64"]["rx"]
    assert down["packets"] == 0 and down["bytes"] == 0


def test_address_is_refused(guest):
    r, _ = guest
    assert text(r, "ours-addr.status") != "0"
    assert "no link-layer address" in text(r, "ours-addr.err")


def test_unload_while_capturing_is_safe(guest):
    r, d = guest
    # Up devices pin the module (vsock_add_tap takes a reference): rmmod is refused.
    assert text(r, "rmmod-up.status") != "0", text(r, "rmmod-up.err")
    # With the devices down or deleted under tcpdump and traffic, it unloads.
    assert text(r, "rmmod-down.status") == "0", text(r, "rmmod-down.err")
    assert text(r, "after-rmmod.txt") == "gone"
    assert text(r, "bulk.status") == "0", text(r, "bulk.log")
    assert "bulk bytes=8388608" in text(r, "bulk.log")
    # tcpdump saw frames, then its device vanished (it reports that and stops).
    assert len(vsockpcap.read_records(str(d / "unload.pcap"))) > 0
    # No warning, oops or BUG (panic_on_warn and oops=panic would have ended the run).
    for bad in ("WARNING:", "BUG:", "Oops", "general protection"):
        assert bad not in r.dmesg


def test_same_capture_as_the_distribution_module(guest):
    _, d = guest
    ours = vsockpcap.read_records(str(d / "ours-0.pcap"))
    distro = vsockpcap.read_records(str(d / "distro-0.pcap"))
    assert len(ours) == len(distro) > 0
    for i, ((_, a), (_, b)) in enumerate(zip(ours, distro)):
        assert a == b, f"frame {i + 1} differs between our vsockmon and Debian's"
    # Same pcap file header (link type, snap length) too.
    with open(d / "ours-0.pcap", "rb") as fa, open(d / "distro-0.pcap", "rb") as fb:
        assert fa.read(24) == fb.read(24)


def test_model_rejects_a_wrong_field():
    """The checker is not vacuous: a frame with one changed field fails it."""
    log = "conn s1 type=stream cport=6000 sport=5000 cbuf=262144 sbuf=32768\n"
    exp = expected_frames(log)
    import struct
    raw = bytearray(struct.pack("<QQIIHHH2s", 1, 1, 6000, 5000, 1, 2, 44, b"\0\0") +
                    struct.pack("<QQIIIHHIII", 1, 1, 6000, 5000, 0, 1, 1, 0, 262144, 0))
    check_frame(0, vsockpcap.parse(bytes(raw)), exp[0])
    raw[32 + 36:32 + 40] = struct.pack("<I", 4096)   # buf_alloc
    with pytest.raises(AssertionError):
        check_frame(0, vsockpcap.parse(bytes(raw)), exp[0])
