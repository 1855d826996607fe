#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Converts between an image and the packed input of the vhdx fuzz target (harnesses/
# packed.h: u16 image size in 64 KiB units, then extents of u16 offset in 4 KiB units,
# u16 length, bytes; the rest of the image is zero).
#
#   packed.py pack IMAGE OUT      image -> packed input (fails if no input can give it)
#   packed.py unpack INPUT OUT    packed input -> image, as the target builds it
import sys

SIZE_UNIT, OFF_UNIT, MAX_INPUT = 64 << 10, 4096, 8 << 20   # harness.h BF_MAX_INPUT
MAX_EXTENT = 15 * OFF_UNIT


def pack(img):
    if len(img) > MAX_INPUT or len(img) % SIZE_UNIT:
        sys.exit("packed.py: a %d-byte image cannot be packed: at most %d bytes, a whole "
                 "number of %d" % (len(img), MAX_INPUT, SIZE_UNIT))
    out = bytearray((len(img) // SIZE_UNIT).to_bytes(2, "little"))
    zero = bytes(OFF_UNIT)
    off = 0
    while off < len(img):
        if img[off:off + OFF_UNIT] == zero:
            off += OFF_UNIT
            continue
        end = off + OFF_UNIT
        while end < len(img) and end - off < MAX_EXTENT and img[end:end + OFF_UNIT] != zero:
            end += OFF_UNIT
        data = img[off:end].rstrip(b"\0")
        out += (off // OFF_UNIT).to_bytes(2, "little") + len(data).to_bytes(2, "little")
        out += data
        off = end
    return bytes(out)


def unpack(data):
    if len(data) < 2:
        return b""
    size = min(int.from_bytes(data[:2], "little") * SIZE_UNIT, MAX_INPUT)
    img = bytearray(size)
    p = 2
    while p + 4 <= len(data):
        off = int.from_bytes(data[p:p + 2], "little") * OFF_UNIT
        n = min(int.from_bytes(data[p + 2:p + 4], "little"), len(data) - p - 4)
        p += 4
        if off < size:
            m = min(n, size - off)
            img[off:off + m] = data[p:p + m]
        p += n
    return bytes(img)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit("usage: packed.py pack|unpack IN OUT")
    data = open(sys.argv[2], "rb").read()
    res = pack(data) if sys.argv[1] == "pack" else unpack(data)
    open(sys.argv[3], "wb").write(res)


if __name__ == "__main__":
    main()
