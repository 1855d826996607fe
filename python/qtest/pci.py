# SPDX-License-Identifier: GPL-2.0-or-later
# PCI from the outside: config-space accessors (ECAM MMIO, or x86 ports 0xcf8/0xcfc),
# bus enumeration, BAR sizing and mapping, command-register bits, capabilities and MSI.

from .errors import DeviceError
from .memory import GuestAllocator

# Config-space registers and bits used here (PCI Local Bus spec 3.0, chapter 6).
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION = 0x08
CLASS_PROG = 0x09
HEADER_TYPE = 0x0e
BAR0 = 0x10
CAP_PTR = 0x34
INTERRUPT_PIN = 0x3d

CMD_IO = 0x1
CMD_MEMORY = 0x2
CMD_MASTER = 0x4
CMD_INTX_DISABLE = 0x400
STATUS_CAP_LIST = 0x10
STATUS_INTERRUPT = 0x08

CAP_ID_MSI = 0x05
MSI_FLAGS_ENABLE = 0x1
MSI_FLAGS_64BIT = 0x80

BAR_IO = 0x1
BAR_MEM_TYPE_MASK = 0x6
BAR_MEM_TYPE_64 = 0x4
BAR_MEM_PREFETCH = 0x8


class ConfigAccessor:
    """Reads and writes config space of (bus, devfn) at offset, 1/2/4 bytes."""

    max_offset = 256

    def _check(self, bus, devfn, offset, size):
        if size not in (1, 2, 4):
            raise ValueError("PCI config access size must be 1, 2 or 4, got %d" % size)
        if not 0 <= bus < 256 or not 0 <= devfn < 256:
            raise ValueError("PCI address %02x:%02x out of range" % (bus, devfn))
        if offset < 0 or offset + size > self.max_offset or offset % size:
            raise ValueError("PCI config offset %#x (size %d) is out of range or unaligned "
                             "for %s" % (offset, size, type(self).__name__))

    def read(self, bus, devfn, offset, size):
        raise NotImplementedError

    def write(self, bus, devfn, offset, size, value):
        raise NotImplementedError


class EcamAccessor(ConfigAccessor):
    """PCIe ECAM: config space of bus/dev/fn at base + (bus << 20 | devfn << 12)."""

    max_offset = 4096
    _letter = {1: "b", 2: "w", 4: "l"}

    def __init__(self, qtest, base):
        self.qt = qtest
        self.base = base

    def _addr(self, bus, devfn, offset):
        return self.base + (bus << 20 | devfn << 12 | offset)

    def read(self, bus, devfn, offset, size):
        self._check(bus, devfn, offset, size)
        return self.qt.read(self._letter[size], self._addr(bus, devfn, offset))

    def write(self, bus, devfn, offset, size, value):
        self._check(bus, devfn, offset, size)
        self.qt.write(self._letter[size], self._addr(bus, devfn, offset), value)


class Cf8Accessor(ConfigAccessor):
    """x86 configuration mechanism #1: address to port 0xcf8, data at 0xcfc..0xcff."""

    _letter = {1: "b", 2: "w", 4: "l"}

    def __init__(self, qtest):
        self.qt = qtest

    def _select(self, bus, devfn, offset):
        self.qt.outl(0xcf8, 0x80000000 | bus << 16 | devfn << 8 | (offset & 0xfc))

    def read(self, bus, devfn, offset, size):
        self._check(bus, devfn, offset, size)
        self._select(bus, devfn, offset)
        return self.qt.inp(self._letter[size], 0xcfc + (offset & 3))

    def write(self, bus, devfn, offset, size, value):
        self._check(bus, devfn, offset, size)
        self._select(bus, devfn, offset)
        self.qt.outp(self._letter[size], 0xcfc + (offset & 3), value)


def make_accessor(machine):
    p = machine.profile
    if p.pci_access == "ecam":
        return EcamAccessor(machine.qtest, p.ecam_base)
    if p.pci_access == "cf8":
        return Cf8Accessor(machine.qtest)
    raise DeviceError("machine %s has no PCI config accessor" % p.name)


class Bar:
    """A mapped BAR: accessors take an offset inside it, checked against its size."""

    def __init__(self, dev, index, addr, size, is_io, is_64):
        self.dev = dev
        self.index = index
        self.addr = addr
        self.size = size
        self.is_io = is_io
        self.is_64 = is_64

    def __repr__(self):
        return "<BAR%d %s at %#x size %#x>" % (self.index, "io" if self.is_io else "mem",
                                               self.addr, self.size)

    def _check(self, off, width):
        if off < 0 or off + width > self.size:
            raise ValueError("offset %#x (+%d) outside BAR%d of %s (size %#x)"
                             % (off, width, self.index, self.dev, self.size))

    def read(self, width, off):
        n = {"b": 1, "w": 2, "l": 4, "q": 8}[width]
        self._check(off, n)
        qt = self.dev.bus.machine.qtest
        if self.is_io and self.dev.bus.machine.profile.io_is_ports:
            return qt.inp(width, self.addr + off)
        return qt.read(width, self.addr + off)

    def write(self, width, off, value):
        n = {"b": 1, "w": 2, "l": 4, "q": 8}[width]
        self._check(off, n)
        qt = self.dev.bus.machine.qtest
        if self.is_io and self.dev.bus.machine.profile.io_is_ports:
            qt.outp(width, self.addr + off, value)
        else:
            qt.write(width, self.addr + off, value)

    def readl(self, off): return self.read("l", off)
    def readq(self, off): return self.read("q", off)
    def writel(self, off, v): self.write("l", off, v)
    def writeq(self, off, v): self.write("q", off, v)


class PciDevice:
    def __init__(self, bus, busno, devfn):
        self.bus = bus
        self.busno = busno
        self.devfn = devfn
        self.vendor_id = self.config_read(VENDOR_ID, 2)
        self.device_id = self.config_read(DEVICE_ID, 2)
        self.bars = {}

    @property
    def slot(self):
        return self.devfn >> 3

    @property
    def function(self):
        return self.devfn & 7

    def __str__(self):
        return "%02x:%02x.%d" % (self.busno, self.slot, self.function)

    def __repr__(self):
        return "<PciDevice %s %04x:%04x>" % (self, self.vendor_id, self.device_id)

    # -- config space -------------------------------------------------------------------
    def config_read(self, offset, size=4):
        return self.bus.acc.read(self.busno, self.devfn, offset, size)

    def config_write(self, offset, size, value):
        self.bus.acc.write(self.busno, self.devfn, offset, size, value)

    @property
    def class_code(self):
        """(class, subclass, prog-if) as one 24-bit number."""
        return self.config_read(REVISION, 4) >> 8

    @property
    def header_type(self):
        return self.config_read(HEADER_TYPE, 1) & 0x7f

    def enable(self, memory=True, io=False, bus_master=True):
        """Set the command register's decode and bus-master bits."""
        cmd = self.config_read(COMMAND, 2)
        cmd |= (CMD_MEMORY if memory else 0) | (CMD_IO if io else 0) | \
            (CMD_MASTER if bus_master else 0)
        self.config_write(COMMAND, 2, cmd)
        got = self.config_read(COMMAND, 2)
        if got & cmd != cmd:
            raise DeviceError("%s: command register kept %#06x after writing %#06x"
                              % (self, got, cmd))

    # -- BARs -----------------------------------------------------------------------------
    def bar_size(self, index):
        """(size, is_io, is_64) of BAR ``index`` by the all-ones probe; size 0 if the BAR
        is not implemented.  The BAR's previous value is restored."""
        if self.header_type != 0 or not 0 <= index < 6:
            raise ValueError("%s: BAR%d does not exist (header type %d)"
                             % (self, index, self.header_type))
        off = BAR0 + 4 * index
        orig = self.config_read(off)
        self.config_write(off, 4, 0xffffffff)
        probe = self.config_read(off)
        self.config_write(off, 4, orig)
        if probe == 0:
            return 0, False, False
        if orig & BAR_IO:
            mask = probe & 0xfffffffc & 0xffff
            return (~mask & 0xffff) + 1 if mask else 0, True, False
        is_64 = orig & BAR_MEM_TYPE_MASK == BAR_MEM_TYPE_64
        mask = probe & 0xfffffff0
        if is_64:
            if index == 5:
                raise DeviceError("%s: BAR5 claims to be 64-bit" % self)
            orig_hi = self.config_read(off + 4)
            self.config_write(off + 4, 4, 0xffffffff)
            mask |= self.config_read(off + 4) << 32
            self.config_write(off + 4, 4, orig_hi)
            return ((~mask) & 0xffffffffffffffff) + 1, False, True
        return ((~mask) & 0xffffffff) + 1, False, False

    def map_bar(self, index):
        """Size BAR ``index``, place it in the machine's window, return a Bar."""
        if index in self.bars:
            return self.bars[index]
        size, is_io, is_64 = self.bar_size(index)
        if size == 0:
            raise DeviceError("%s: BAR%d is not implemented" % (self, index))
        addr = (self.bus.io_alloc if is_io else self.bus.mmio_alloc).alloc(size, align=size)
        off = BAR0 + 4 * index
        self.config_write(off, 4, addr & 0xffffffff)
        if is_64:
            self.config_write(off + 4, 4, addr >> 32)
        got = self.config_read(off) & (0xfffffffc if is_io else 0xfffffff0)
        if got != addr & 0xffffffff:
            raise DeviceError("%s: BAR%d reads %#x after programming %#x" % (self, index, got, addr))
        bar = Bar(self, index, addr, size, is_io, is_64)
        self.bars[index] = bar
        return bar

    # -- capabilities -------------------------------------------------------------------
    def capabilities(self):
        """[(id, offset)] following the capability list (loops and bad pointers raise)."""
        if not self.config_read(STATUS, 2) & STATUS_CAP_LIST:
            return []
        out, seen = [], set()
        ptr = self.config_read(CAP_PTR, 1) & 0xfc
        while ptr:
            if ptr < 0x40 or ptr in seen or len(out) > 48:
                raise DeviceError("%s: bad capability pointer %#x" % (self, ptr))
            seen.add(ptr)
            out.append((self.config_read(ptr, 1), ptr))
            ptr = self.config_read(ptr + 1, 1) & 0xfc
        return out

    def find_capability(self, cap_id):
        for cid, off in self.capabilities():
            if cid == cap_id:
                return off
        return None

    def enable_msi(self, address, data):
        """Program the MSI capability to write ``data`` at ``address`` and enable it."""
        off = self.find_capability(CAP_ID_MSI)
        if off is None:
            raise DeviceError("%s: no MSI capability" % self)
        flags = self.config_read(off + 2, 2)
        is_64 = bool(flags & MSI_FLAGS_64BIT)
        if address >> 32 and not is_64:
            raise DeviceError("%s: 32-bit MSI cannot target %#x" % (self, address))
        self.config_write(off + 4, 4, address & 0xffffffff)
        if is_64:
            self.config_write(off + 8, 4, address >> 32)
            self.config_write(off + 12, 2, data)
        else:
            self.config_write(off + 8, 2, data)
        self.config_write(off + 2, 2, flags | MSI_FLAGS_ENABLE)
        cmd = self.config_read(COMMAND, 2)
        self.config_write(COMMAND, 2, cmd | CMD_INTX_DISABLE)

    def interrupt_pin(self):
        """0 for none, 1..4 for INTA..INTD."""
        return self.config_read(INTERRUPT_PIN, 1)


class PciBus:
    """PCI as seen through a machine profile: enumeration and BAR windows."""

    def __init__(self, machine):
        self.machine = machine
        self.acc = make_accessor(machine)
        p = machine.profile
        self.mmio_alloc = GuestAllocator(*p.mmio_window)
        self.io_alloc = GuestAllocator(*p.io_window)
        self._devices = None

    def _present(self, busno, devfn):
        v = self.acc.read(busno, devfn, VENDOR_ID, 2)
        return v not in (0xffff, 0x0000)

    def devices(self, busno=0):
        """Every function present on bus ``busno`` (bus 0 by default), cached."""
        if self._devices is None:
            found = []
            for slot in range(32):
                if not self._present(busno, slot << 3):
                    continue
                found.append(PciDevice(self, busno, slot << 3))
                if self.acc.read(busno, slot << 3, HEADER_TYPE, 1) & 0x80:
                    for fn in range(1, 8):
                        if self._present(busno, slot << 3 | fn):
                            found.append(PciDevice(self, busno, slot << 3 | fn))
            self._devices = found
        return self._devices

    def find(self, vendor_id, device_id):
        return [d for d in self.devices() if (d.vendor_id, d.device_id) == (vendor_id, device_id)]
