#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Converts between a vhdx image and the strided input of the vhdx fuzz target
# (harness.h: input chunk k of 8 KiB is image bytes [k * 64 KiB, + 8 KiB), rest zero).
#
#   stride.py pack IMAGE OUT      image -> strided input (fails if a dropped byte is not 0)
#   stride.py unpack INPUT OUT    strided input -> image, as the target builds it
import sys

CHUNK, STEP = 8 << 10, 64 << 10


def pack(img):
    out = bytearray()
    for k in range(0, len(img), STEP):
        page = img[k:k + STEP]
        if page[CHUNK:].strip(b"\0"):
            sys.exit("stride.py: image bytes at %#x..%#x are not zero: they cannot be "
                     "represented" % (k + CHUNK, k + len(page)))
        last = k + STEP >= len(img)
        out += page[:CHUNK] if last else page[:CHUNK].ljust(CHUNK, b"\0")
    return bytes(out)


def unpack(data):
    out = bytearray()
    for k in range(0, len(data), CHUNK):
        out += data[k:k + CHUNK].ljust(STEP, b"\0")
    return bytes(out)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit("usage: stride.py pack|unpack IN OUT")
    data = open(sys.argv[2], "rb").read()
    res = pack(data) if sys.argv[1] == "pack" else unpack(data)
    open(sys.argv[3], "wb").write(res)


if __name__ == "__main__":
    main()
