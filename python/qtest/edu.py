# SPDX-License-Identifier: GPL-2.0-or-later
# Driver for QEMU's `edu` educational PCI device (1234:11e8), which qemu-slim implements
# with the same register interface: id, liveness, factorial, interrupts and DMA.

from .driver import PciDriver, register
from .errors import DeviceError

# BAR0 registers (QEMU docs/specs/edu.rst).
REG_ID = 0x00
REG_LIVENESS = 0x04
REG_FACTORIAL = 0x08
REG_STATUS = 0x20
REG_IRQ_STATUS = 0x24
REG_IRQ_RAISE = 0x60
REG_IRQ_ACK = 0x64
REG_DMA_SRC = 0x80
REG_DMA_DST = 0x88
REG_DMA_COUNT = 0x90
REG_DMA_CMD = 0x98

STATUS_COMPUTING = 0x01
STATUS_IRQ_FACT = 0x80
DMA_START = 0x1
DMA_TO_RAM = 0x2      # direction: 0 = RAM to device buffer, 1 = device buffer to RAM
DMA_IRQ = 0x4

IRQ_FACTORIAL = 0x00000001
IRQ_DMA = 0x00000100

# The device's DMA buffer, as addressed by the DMA registers.
BUFFER_ADDR = 0x40000
BUFFER_SIZE = 4096
BAR_SIZE = 1 << 20
DMA_DELAY_NS = 100 * 1000 * 1000   # the device completes a DMA after 100 ms


@register
class EduDriver(PciDriver):
    ids = [(0x1234, 0x11e8)]
    name = "edu"

    def probe(self):
        self.bar = self.dev.map_bar(0)
        if self.bar.size != BAR_SIZE:
            raise DeviceError("%s: edu BAR0 is %#x bytes, expected %#x"
                              % (self.dev, self.bar.size, BAR_SIZE))
        self.dev.enable(memory=True, bus_master=True)
        ident = self.bar.readl(REG_ID)
        if ident & 0xffff != 0x00ed:
            raise DeviceError("%s: edu id register reads %#010x, expected 0xRRrr00ed"
                              % (self.dev, ident))

    # -- identity and liveness -------------------------------------------------------------
    def version(self):
        """(major, minor) from the id register 0xRRrr00ed."""
        ident = self.bar.readl(REG_ID)
        return ident >> 24, (ident >> 16) & 0xff

    def liveness(self, value):
        """Write ``value`` to the liveness register; the device returns its inverse."""
        self.bar.writel(REG_LIVENESS, value)
        return self.bar.readl(REG_LIVENESS)

    # -- factorial ---------------------------------------------------------------------------
    def status(self):
        return self.bar.readl(REG_STATUS)

    def factorial(self, n, irq=False, timeout=10.0):
        """n! modulo 2**32, computed by the device."""
        self.bar.writel(REG_STATUS, STATUS_IRQ_FACT if irq else 0)
        self.bar.writel(REG_FACTORIAL, n)
        self.machine.wait_until(lambda: not self.status() & STATUS_COMPUTING,
                                "edu factorial of %d" % n, timeout)
        return self.bar.readl(REG_FACTORIAL)

    # -- interrupts ----------------------------------------------------------------------------
    def irq_status(self):
        return self.bar.readl(REG_IRQ_STATUS)

    def raise_irq(self, bits):
        self.bar.writel(REG_IRQ_RAISE, bits)

    def ack_irq(self, bits):
        self.bar.writel(REG_IRQ_ACK, bits)

    # -- DMA -------------------------------------------------------------------------------------
    def _check_buffer(self, off, count):
        if count <= 0 or off < 0 or off + count > BUFFER_SIZE:
            raise ValueError("edu DMA of %d bytes at buffer offset %#x does not fit its "
                             "%d-byte buffer" % (count, off, BUFFER_SIZE))

    def dma_busy(self):
        return bool(self.bar.readq(REG_DMA_CMD) & DMA_START)

    def start_dma(self, src, dst, count, to_ram, irq=False):
        self.bar.writeq(REG_DMA_SRC, src)
        self.bar.writeq(REG_DMA_DST, dst)
        self.bar.writeq(REG_DMA_COUNT, count)
        self.bar.writeq(REG_DMA_CMD, DMA_START | (DMA_TO_RAM if to_ram else 0) |
                        (DMA_IRQ if irq else 0))

    def wait_dma(self, timeout=10.0):
        self.machine.wait_until(lambda: not self.dma_busy(), "edu DMA", timeout,
                                step_ns=DMA_DELAY_NS // 4)

    def dma_to_device(self, ram_addr, count, buf_off=0, irq=False, timeout=10.0):
        """Copy ``count`` bytes from guest RAM to the device buffer and wait."""
        self._check_buffer(buf_off, count)
        self.start_dma(ram_addr, BUFFER_ADDR + buf_off, count, to_ram=False, irq=irq)
        self.wait_dma(timeout)

    def dma_from_device(self, ram_addr, count, buf_off=0, irq=False, timeout=10.0):
        """Copy ``count`` bytes from the device buffer to guest RAM and wait."""
        self._check_buffer(buf_off, count)
        self.start_dma(BUFFER_ADDR + buf_off, ram_addr, count, to_ram=True, irq=irq)
        self.wait_dma(timeout)
