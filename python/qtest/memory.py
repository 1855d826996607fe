# SPDX-License-Identifier: GPL-2.0-or-later
# Guest memory helpers: a bump allocator over a RAM range (so tests never overlap each
# other's buffers) and typed little/big-endian accessors on top of the qtest client.

import struct

from .errors import QtestOSError


class OutOfGuestMemory(QtestOSError):
    pass


class GuestAllocator:
    """Hands out aligned, never-reused ranges of [base, base + size)."""

    def __init__(self, base, size):
        self.base = base
        self.end = base + size
        self.next = base

    def alloc(self, size, align=64):
        if size <= 0:
            raise ValueError("allocation size must be positive, got %d" % size)
        if align <= 0 or align & (align - 1):
            raise ValueError("alignment must be a power of two, got %d" % align)
        addr = (self.next + align - 1) & ~(align - 1)
        if addr + size > self.end:
            raise OutOfGuestMemory("cannot allocate %d bytes: %#x..%#x has %d left"
                                   % (size, self.base, self.end, self.end - addr))
        self.next = addr + size
        return addr


class Memory:
    """Typed guest-memory access through qtest, in the target's byte order."""

    def __init__(self, qtest):
        self.qt = qtest

    def _fmt(self, code):
        return (">" if self.qt.big_endian() else "<") + code

    def read(self, addr, size):
        return self.qt.b64read(addr, size)

    def write(self, addr, data):
        self.qt.b64write(addr, data)

    def fill(self, addr, size, value):
        self.qt.memset(addr, size, value)

    def read_u32(self, addr):
        return struct.unpack(self._fmt("I"), self.read(addr, 4))[0]

    def write_u32(self, addr, v):
        self.write(addr, struct.pack(self._fmt("I"), v))

    def read_u64(self, addr):
        return struct.unpack(self._fmt("Q"), self.read(addr, 8))[0]

    def write_u64(self, addr, v):
        self.write(addr, struct.pack(self._fmt("Q"), v))
