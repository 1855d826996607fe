# SPDX-License-Identifier: GPL-2.0-or-later
# Reads pcap files of LINKTYPE_VSOCK (271) frames into af_vsockmon_hdr + virtio_vsock_hdr
# records, validating each field's bounds; shared by the capture tests and benchmarks.
import struct
from dataclasses import dataclass

LINKTYPE_VSOCK = 271
AF_OPS = {0: "UNKNOWN", 1: "CONNECT", 2: "DISCONNECT", 3: "CONTROL", 4: "PAYLOAD"}
VIRTIO_OPS = {0: "INVALID", 1: "REQUEST", 2: "RESPONSE", 3: "RST", 4: "SHUTDOWN",
              5: "RW", 6: "CREDIT_UPDATE", 7: "CREDIT_REQUEST"}
AF_HDR = struct.Struct("<QQIIHHH2s")          # 32 bytes
VIRTIO_HDR = struct.Struct("<QQIIIHHIII")      # 44 bytes


@dataclass
class Frame:
    ts: float
    raw: bytes
    src_cid: int
    dst_cid: int
    src_port: int
    dst_port: int
    af_op: int
    transport: int
    hdr_len: int
    reserved: bytes
    v: dict
    payload: bytes

    @property
    def op(self):
        return VIRTIO_OPS.get(self.v.get("op"), "?")


class PcapError(Exception):
    pass


def read_records(path):
    """(timestamp, bytes) for each record of a classic pcap file of LINKTYPE_VSOCK."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise PcapError(f"{path}: {len(data)} bytes, too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise PcapError(f"{path}: bad pcap magic {magic.hex()}")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    _, _, _, _, snap, linktype = struct.unpack(e + "HHiIII", data[4:24])
    if linktype != LINKTYPE_VSOCK:
        raise PcapError(f"{path}: link type {linktype}, expected {LINKTYPE_VSOCK}")
    off, out = 24, []
    while off < len(data):
        if off + 16 > len(data):
            raise PcapError(f"{path}: truncated record header at offset {off}")
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        if incl > snap or off + incl > len(data):
            raise PcapError(f"{path}: record at {off - 16} claims {incl} bytes")
        out.append((sec + frac / (1e9 if nano else 1e6), data[off:off + incl]))
        off += incl
    return out


def parse(raw, ts=0.0):
    if len(raw) < AF_HDR.size:
        raise PcapError(f"frame of {len(raw)} bytes is shorter than af_vsockmon_hdr")
    sc, dc, sp, dp, op, tr, hl, rsv = AF_HDR.unpack_from(raw)
    v = {}
    if AF_HDR.size + hl > len(raw):
        raise PcapError(f"transport header length {hl} exceeds frame of {len(raw)} bytes")
    if tr == 2:
        if hl != VIRTIO_HDR.size:
            raise PcapError(f"virtio transport header length {hl}, expected 44")
        names = ("src_cid", "dst_cid", "src_port", "dst_port", "len", "type", "op",
                 "flags", "buf_alloc", "fwd_cnt")
        v = dict(zip(names, VIRTIO_HDR.unpack_from(raw, AF_HDR.size)))
    return Frame(ts, raw, sc, dc, sp, dp, op, tr, hl, rsv, v, raw[AF_HDR.size + hl:])


def read(path):
    return [parse(raw, ts) for ts, raw in read_records(path)]
