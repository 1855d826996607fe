# SPDX-License-Identifier: GPL-2.0-or-later
# Machine profiles: what differs between the machines qtest-os drives (command line, RAM
# and PCI windows, config-space accessor, interrupt controller, how to park the CPU).

import os

# Exit codes of the sifive_test finisher (QEMU's hw/misc/sifive_test): write PASS to exit
# 0, FAIL | code << 16 to exit with code, RESET to reset.
FINISHER_FAIL = 0x3333
FINISHER_PASS = 0x5555
FINISHER_RESET = 0x7777

# An x86 "firmware" of one 64 KiB page whose reset vector (the last 16 bytes) is
# `cli; hlt; jmp .-3`: the CPU of a QEMU without the qtest accelerator stays halted, so
# it never touches the devices under test, while the virtual clock keeps running.
_X86_HALT_STUB = b"\xfa\xf4\xeb\xfd"

# RISC-V `wfi; j .-4` at the start of RAM, where -bios none jumps: the same for riscv.
_RISCV_WFI_LOOP = bytes.fromhex("73005010" "6ff0dfff")


class Profile:
    """A machine as qtest-os sees it.  Subclasses fill the class attributes."""

    name = None
    machine_args = []
    ram_base = 0
    ram_size = 128 << 20
    alloc_start = 0          # offset in RAM where the test allocator begins
    alloc_size = 64 << 20
    pci_access = None        # "ecam" or "cf8"
    ecam_base = None
    mmio_window = (0, 0)     # (base, size) for 32-bit memory BARs
    io_window = (0, 0)       # (base, size) for I/O BARs (port numbers or MMIO address)
    io_is_ports = False      # I/O BARs accessed with in/out (x86) or MMIO (virt)
    irq_controller = None    # QOM path whose inputs irq_intercept_in captures
    finisher = None          # sifive_test address, or None
    edu_args = "edu"

    def __init__(self, kind):
        self.kind = kind     # "qemu-slim" or "qemu"

    def args(self, workdir, qtest=True):
        """Emulator arguments for this machine (without -qtest/-qmp/-device); ``qtest``
        says whether a qtest session will drive it."""
        return list(self.machine_args) + ["-m", "%dM" % (self.ram_size >> 20)]

    def device_args(self, dev):
        """-device argument for a named test device ("edu" gets the machine's props)."""
        return self.edu_args if dev == "edu" else dev

    def prepare(self, machine):
        """Run after the sessions are up, before the test touches the machine."""

    def intx_line(self, slot, pin):
        """Interrupt controller input of INTx ``pin`` (0 = INTA) of a device in ``slot``,
        or None when the machine does not define it statically."""
        return None


class VirtProfile(Profile):
    """QEMU's riscv `virt` memory map: qemu-slim's default machine and
    qemu-system-riscv64 -M virt."""

    name = "virt"
    ram_base = 0x80000000
    ram_size = 256 << 20
    alloc_start = 1 << 20
    pci_access = "ecam"
    ecam_base = 0x30000000
    mmio_window = (0x40000000, 0x40000000)
    io_window = (0x03000000, 0x10000)
    finisher = 0x100000
    # virt's RAM is at 2 GiB: widen edu's 28-bit default DMA mask to reach it.
    edu_args = "edu,dma_mask=0xffffffffff"

    def __init__(self, kind):
        super().__init__(kind)
        # qemu-slim names its PLIC like QEMU's QOM tree would; the real QEMU's PLIC is
        # an anonymous child found by type at prepare().
        if kind == "qemu-slim":
            self.irq_controller = "/machine/soc/plic"

    def args(self, workdir, qtest=True):
        a = ["-M", "virt", "-nodefaults", "-display", "none"]
        if self.kind == "qemu-slim" and not qtest:
            # Without -qtest qemu-slim's harts would run its built-in payload (which ends
            # the process through the finisher): keep them stopped, as with QEMU below.
            a += ["-S"]
        if self.kind == "qemu":
            # No qtest accelerator in Debian's QEMU: start stopped, park the hart in a
            # wfi loop (prepare), then run so that the virtual clock moves.
            a += ["-accel", "tcg", "-bios", "none", "-S", "-qtest-log", "/dev/null"]
        return a + ["-m", "%dM" % (self.ram_size >> 20)]

    def prepare(self, machine):
        # Without qtest there is no way to place the loop: the machine stays stopped
        # (QMP status "prelaunch").
        if self.kind == "qemu" and machine.qtest is not None:
            machine.qtest.memwrite(self.ram_base, _RISCV_WFI_LOOP)
            machine.qmp.command("cont")
            self.irq_controller = self.irq_controller or _find_plic(machine)

    def intx_line(self, slot, pin):
        # QEMU's virt swizzle: PLIC inputs 32..35 for INTA..INTD, rotated by slot.
        return 32 + (slot + pin) % 4


def _find_plic(machine):
    """QOM path of the riscv virt PLIC in the real QEMU (its name is not stable)."""
    for parent in ("/machine/soc", "/machine/unattached", "/machine"):
        try:
            props = machine.qmp.command("qom-list", path=parent)
        except Exception:
            continue
        for p in props:
            if p.get("type") == "child<riscv.sifive.plic>":
                return parent + "/" + p["name"]
    return None


class Q35Profile(Profile):
    """qemu-system-x86_64 -M q35: PCI config through ports 0xcf8/0xcfc (the MMCONFIG
    window is only enabled by firmware), BARs placed in the 32-bit PCI hole."""

    name = "q35"
    ram_base = 0
    ram_size = 128 << 20
    alloc_start = 1 << 20
    pci_access = "cf8"
    mmio_window = (0xe0000000, 0x10000000)
    io_window = (0xc000, 0x4000)
    io_is_ports = True
    irq_controller = "ioapic"

    def args(self, workdir, qtest=True):
        stub = os.path.join(workdir, "halt-bios.bin")
        with open(stub, "wb") as f:
            f.write(bytes(0x10000 - 16) + _X86_HALT_STUB + bytes(12))
        a = ["-M", "q35", "-nodefaults", "-display", "none", "-accel", "tcg",
             "-bios", stub]
        if self.kind == "qemu":
            a += ["-qtest-log", "/dev/null"]
        return a + ["-m", "%dM" % (self.ram_size >> 20)]

    def intx_line(self, slot, pin):
        # ICH9's reset routing for slots without a fixed entry: PIRQE..H rotated by slot,
        # and q35 wires PIRQA..H to I/O APIC inputs 16..23.
        return 16 + 4 + (slot + pin) % 4


PROFILES = {"virt": VirtProfile, "q35": Q35Profile}


def emulator_kind(binary):
    """"qemu-slim" for our binary, "qemu" for QEMU (overridable: QTEST_QEMU_KIND)."""
    kind = os.environ.get("QTEST_QEMU_KIND")
    if kind:
        if kind not in ("qemu-slim", "qemu"):
            raise ValueError("QTEST_QEMU_KIND=%s: expected qemu-slim or qemu" % kind)
        return kind
    return "qemu-slim" if "qemu-slim" in os.path.basename(binary) else "qemu"


def default_machine(binary):
    base = os.path.basename(binary)
    if "x86_64" in base or "i386" in base:
        return "q35"
    return "virt"


def make_profile(binary, machine=None):
    """The profile for ``binary``: ``machine`` or $QTEST_MACHINE or the binary's default."""
    name = machine or os.environ.get("QTEST_MACHINE") or default_machine(binary)
    if name not in PROFILES:
        raise ValueError("machine profile '%s' is unknown (known: %s)"
                         % (name, ", ".join(sorted(PROFILES))))
    return PROFILES[name](emulator_kind(binary))
