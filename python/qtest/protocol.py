# SPDX-License-Identifier: GPL-2.0-or-later
# qtest client: QEMU's qtest text protocol (one command per line, "OK ..." or "FAIL ..."
# replies, "IRQ raise|lower N" notifications in between), with typed, checked accessors.

import base64
import binascii
import time

from .errors import EmulatorTimeout, ProtocolError, QtestCommandError

_WIDTH = {"b": 1, "w": 2, "l": 4, "q": 8}

# Bytes per read/write/b64read/b64write command: keeps each line of bounded size.
CHUNK = 1 << 16


def _check_int(what, value, bits=64):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("%s must be an int, got %r" % (what, value))
    if value < 0 or value >> bits:
        raise ValueError("%s %#x does not fit in %d bits" % (what, value, bits))


class QtestClient:
    """One qtest session over a LineChannel."""

    def __init__(self, channel):
        self.chan = channel
        self.irq_level = {}      # line number -> True (raised) / False (lowered)
        self.irq_log = []        # (time.monotonic(), "raise"/"lower", line), in order
        self._big_endian = None
        self.clock_supported = None  # learnt on the first clock_step/clock_set

    # -- wire -------------------------------------------------------------------------
    def _note_irq(self, words, line):
        if len(words) != 3 or words[1] not in ("raise", "lower"):
            raise ProtocolError("qtest: malformed IRQ notification %r" % line)
        try:
            num = int(words[2], 0)
        except ValueError:
            raise ProtocolError("qtest: IRQ notification with a bad line number %r"
                                % line) from None
        self.irq_level[num] = words[1] == "raise"
        self.irq_log.append((time.monotonic(), words[1], num))

    def _reply(self, cmd, timeout=None):
        while True:
            raw = self.chan.readline(timeout)
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolError("qtest %s: non-ASCII reply %r" % (cmd, raw[:200])) from None
            words = line.split()
            if not words:
                raise ProtocolError("qtest %s: empty reply line" % cmd)
            if words[0] == "IRQ":
                self._note_irq(words, line)
                continue
            if words[0] == "OK":
                return words[1:]
            if words[0] in ("FAIL", "ERR"):
                raise QtestCommandError(cmd, line[len(words[0]):].strip())
            raise ProtocolError("qtest %s: reply %r is neither OK, FAIL nor IRQ"
                                % (cmd, line[:200]))

    def command(self, cmd, timeout=None):
        """Send one raw command line; returns the words after OK."""
        if "\n" in cmd:
            raise ValueError("qtest command %r contains a newline" % cmd)
        self.chan.send(cmd.encode("ascii") + b"\n")
        return self._reply(cmd.split(" ", 1)[0], timeout)

    def _value(self, cmd, words, bits):
        if len(words) != 1:
            raise ProtocolError("qtest %s: expected one value after OK, got %r" % (cmd, words))
        try:
            v = int(words[0], 16 if words[0].lower().startswith("0x") else 10)
        except ValueError:
            raise ProtocolError("qtest %s: bad value %r" % (cmd, words[0])) from None
        if v < 0 or v >> bits:
            raise ProtocolError("qtest %s: value %s wider than %d bits" % (cmd, words[0], bits))
        return v

    # -- MMIO / RAM ---------------------------------------------------------------------
    def read(self, width, addr):
        """readb/readw/readl/readq by width letter."""
        _check_int("address", addr)
        cmd = "read%s" % width
        return self._value(cmd, self.command("%s 0x%x" % (cmd, addr)), _WIDTH[width] * 8)

    def write(self, width, addr, value):
        _check_int("address", addr)
        _check_int("value", value, _WIDTH[width] * 8)
        self.command("write%s 0x%x 0x%x" % (width, addr, value))

    def readb(self, addr): return self.read("b", addr)
    def readw(self, addr): return self.read("w", addr)
    def readl(self, addr): return self.read("l", addr)
    def readq(self, addr): return self.read("q", addr)
    def writeb(self, addr, v): self.write("b", addr, v)
    def writew(self, addr, v): self.write("w", addr, v)
    def writel(self, addr, v): self.write("l", addr, v)
    def writeq(self, addr, v): self.write("q", addr, v)

    # -- port I/O (x86) -----------------------------------------------------------------
    def inp(self, width, port):
        _check_int("port", port, 16)
        cmd = "in%s" % width
        return self._value(cmd, self.command("%s 0x%x" % (cmd, port)), _WIDTH[width] * 8)

    def outp(self, width, port, value):
        _check_int("port", port, 16)
        _check_int("value", value, _WIDTH[width] * 8)
        self.command("out%s 0x%x 0x%x" % (width, port, value))

    def inb(self, port): return self.inp("b", port)
    def inw(self, port): return self.inp("w", port)
    def inl(self, port): return self.inp("l", port)
    def outb(self, port, v): self.outp("b", port, v)
    def outw(self, port, v): self.outp("w", port, v)
    def outl(self, port, v): self.outp("l", port, v)

    # -- buffers --------------------------------------------------------------------------
    def memread(self, addr, size):
        """``size`` bytes at ``addr`` with the hex "read" command."""
        _check_int("address", addr)
        out = bytearray()
        while size > len(out):
            n = min(CHUNK, size - len(out))
            words = self.command("read 0x%x 0x%x" % (addr + len(out), n))
            if len(words) != 1 or not words[0].startswith("0x"):
                raise ProtocolError("qtest read: expected 0x<hex>, got %r" % (words,))
            try:
                data = bytes.fromhex(words[0][2:])
            except ValueError:
                raise ProtocolError("qtest read: bad hex %r" % words[0][:80]) from None
            if len(data) != n:
                raise ProtocolError("qtest read: asked %d bytes, got %d" % (n, len(data)))
            out += data
        return bytes(out)

    def memwrite(self, addr, data):
        """Write ``data`` at ``addr`` with the hex "write" command."""
        _check_int("address", addr)
        for off in range(0, len(data), CHUNK):
            part = bytes(data[off:off + CHUNK])
            self.command("write 0x%x 0x%x 0x%s" % (addr + off, len(part), part.hex()))

    def b64read(self, addr, size):
        _check_int("address", addr)
        out = bytearray()
        while size > len(out):
            n = min(CHUNK, size - len(out))
            words = self.command("b64read 0x%x 0x%x" % (addr + len(out), n))
            if len(words) != 1:
                raise ProtocolError("qtest b64read: expected one base64 word, got %r" % (words,))
            try:
                data = base64.b64decode(words[0], validate=True)
            except binascii.Error:
                raise ProtocolError("qtest b64read: bad base64 %r" % words[0][:80]) from None
            if len(data) != n:
                raise ProtocolError("qtest b64read: asked %d bytes, got %d" % (n, len(data)))
            out += data
        return bytes(out)

    def b64write(self, addr, data):
        _check_int("address", addr)
        for off in range(0, len(data), CHUNK):
            part = bytes(data[off:off + CHUNK])
            self.command("b64write 0x%x 0x%x %s" % (addr + off, len(part),
                                                    base64.b64encode(part).decode()))

    def memset(self, addr, size, value):
        _check_int("address", addr)
        _check_int("size", size)
        _check_int("pattern", value, 8)
        self.command("memset 0x%x 0x%x 0x%02x" % (addr, size, value))

    # -- clock ------------------------------------------------------------------------------
    def clock_step(self, ns=None):
        """Advance the virtual clock by ``ns`` (or to the next timer deadline); returns the
        new clock value in ns.  QtestCommandError where the emulator has no qtest clock."""
        cmd = "clock_step" if ns is None else "clock_step %d" % ns
        try:
            v = self._value("clock_step", self.command(cmd), 63)
        except QtestCommandError as e:
            if "unknown command" in e.reply.lower():
                self.clock_supported = False
            else:
                self.clock_supported = True    # the command exists; this step failed
            raise
        self.clock_supported = True
        return v

    def clock_set(self, ns):
        _check_int("clock", ns, 63)
        v = self._value("clock_set", self.command("clock_set %d" % ns), 63)
        self.clock_supported = True
        return v

    def has_virtual_clock(self):
        """Whether this emulator lets qtest drive the virtual clock: probed once with a
        zero step, which moves nothing; only "Unknown command" means no."""
        if self.clock_supported is None:
            try:
                self.clock_step(0)
            except QtestCommandError:
                pass
        return self.clock_supported

    # -- interrupts -------------------------------------------------------------------------
    def irq_intercept_in(self, qom_path):
        self.command("irq_intercept_in %s" % qom_path)

    def irq_intercept_out(self, qom_path, name=None):
        self.command("irq_intercept_out %s%s" % (qom_path, " " + name if name else ""))

    def set_irq_in(self, qom_path, name, num, level):
        self.command("set_irq_in %s %s %d %d" % (qom_path, name, num, level))

    def get_irq(self, num):
        """Current level of intercepted line ``num`` (reads pending notifications)."""
        self.pump()
        return self.irq_level.get(num, False)

    def pump(self, timeout=0.0):
        """Consume IRQ notifications that arrived without a command (there is never an
        unsolicited OK: anything else is a protocol error)."""
        while self.chan.poll(timeout):
            raw = self.chan.readline()
            line = raw.decode("ascii", "replace")
            words = line.split()
            if not words or words[0] != "IRQ":
                raise ProtocolError("qtest: unsolicited reply %r" % line[:200])
            self._note_irq(words, line)
            timeout = 0.0

    def wait_irq(self, num, level=True, timeout=5.0):
        """Wait until intercepted line ``num`` has ``level``."""
        deadline = time.monotonic() + timeout
        while self.get_irq(num) != level:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmulatorTimeout("qtest: IRQ line %d did not go %s within %.1f s"
                                      % (num, "high" if level else "low", timeout))
            self.pump(min(remaining, 0.05))
        return True

    # -- target -------------------------------------------------------------------------------
    def big_endian(self):
        if self._big_endian is None:
            words = self.command("endianness")
            if words not in (["little"], ["big"]):
                raise ProtocolError("qtest endianness: expected little or big, got %r" % (words,))
            self._big_endian = words == ["big"]
        return self._big_endian

    def close(self):
        self.chan.close()
