/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Machines: "virt" (QEMU's riscv virt memory map: RAM, UART, finisher, CLINT, PLIC,
 * PCIe ECAM and MMIO window) and "none" (RAM only); -kernel loading and system reset. */
#include <string.h>
#include "hw-internal.h"
#include "qs-internal.h"
#include "runtime.h"

/* QEMU's hw/riscv/virt.c memory map */
enum {
    VIRT_TEST = 0x100000, VIRT_CLINT = 0x2000000, VIRT_PLIC = 0xc000000,
    VIRT_UART0 = 0x10000000,
};
#define VIRT_PCIE_ECAM 0x30000000ull
#define VIRT_PCIE_ECAM_SIZE 0x10000000ull
#define VIRT_PCIE_MMIO 0x40000000ull
#define VIRT_PCIE_MMIO_SIZE 0x40000000ull
#define VIRT_DRAM 0x80000000ull
#define VIRT_IRQ_SOURCES 96

typedef struct Machine {
    QsMachineInfo info;
    const char *kernel;
    QsChardev *serial;
    Uart16550 *uart;
    Clint *clint;
    Plic *plic;
    QsPciBus *pci;
    QsPciDevice *host_bridge;
} Machine;

static Machine *machine;

const QsMachineInfo *qs_machine_current(void)
{
    return machine ? &machine->info : NULL;
}

static bool map(QsMemoryRegion *mr, uint64_t addr, GError **errp)
{
    bool ok = qs_memory_region_add_subregion(qs_memory_system_root(), addr, mr, 0, errp);
    qs_memory_region_unref(mr);   /* system memory holds it now */
    return ok;
}

static const QsDeviceType host_bridge_type = {
    .name = "gpex-pcihost",
    .bus = "pci",
    .desc = "PCIe host bridge",
    .instance_size = sizeof(QsPciDevice),
};

static bool virt_init(Machine *m, const QsMachineConfig *cfg, GError **errp)
{
    QsMemoryRegion *mr;
    if (!map(qs_sifive_test_new(), VIRT_TEST, errp)) return false;

    m->clint = qs_clint_new("/machine/clint", cfg->smp, &mr);
    if (!map(qs_memory_region_ref(mr), VIRT_CLINT, errp)) return false;
    m->plic = qs_plic_new("/machine/soc/plic", VIRT_IRQ_SOURCES, cfg->smp, &mr);
    if (!map(qs_memory_region_ref(mr), VIRT_PLIC, errp)) return false;

    if (cfg->serial) {
        m->serial = qs_chardev_open(cfg->serial, "serial0", errp);
        if (!m->serial) {
            g_prefix_error(errp, "-serial %s: ", cfg->serial);
            return false;
        }
    }
    m->uart = qs_uart16550_new(m->serial, qs_plic_input(m->plic, QS_VIRT_UART0_IRQ), &mr);
    if (!map(qs_memory_region_ref(mr), VIRT_UART0, errp)) return false;

    /* PCIe: bus memory is identity-mapped through the 32-bit window */
    QsMemoryRegion *pcimem = qs_memory_region_new_container("pci-memory", UINT64_MAX);
    QsIrq *intx[4];
    for (int i = 0; i < 4; i++) intx[i] = qs_plic_input(m->plic, QS_VIRT_PCIE_IRQ + i);
    m->pci = qs_pci_bus_new("pcie.0", pcimem, intx);
    qs_pci_set_root_bus(m->pci);
    if (!map(qs_memory_region_new_alias("pcie-mmio", pcimem, VIRT_PCIE_MMIO, VIRT_PCIE_MMIO_SIZE),
             VIRT_PCIE_MMIO, errp)) {
        qs_memory_region_unref(pcimem);
        return false;
    }
    qs_memory_region_unref(pcimem);
    if (!map(qs_pci_ecam_new(m->pci, VIRT_PCIE_ECAM_SIZE), VIRT_PCIE_ECAM, errp)) return false;
    QsPciDevice *hb = g_new0(QsPciDevice, 1);
    hb->qdev.type = &host_bridge_type;
    if (!qs_pci_plug_device(m->pci, hb, 0, errp)) {
        g_free(hb);
        return false;
    }
    qs_pci_config_set_ids(hb, 0x1b36, 0x0008, 0x060000, 0);
    m->host_bridge = hb;
    return true;
}

static bool check_opts(const QsMachineConfig *cfg, GError **errp)
{
    if (cfg->opts && *cfg->opts) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-machine %s,%s: machine '%s' has no options (got '%s')", cfg->name,
                    cfg->opts, cfg->name, cfg->opts);
        return false;
    }
    return true;
}

static bool load_kernel(Machine *m, GError **errp)
{
    if (!m->kernel) return true;
    uint64_t entry;
    if (!qs_load_kernel(m->kernel, qs_memory_region_get_ram_ptr(m->info.ram), m->info.ram_base,
                        m->info.ram_size, &entry, errp)) {
        return false;
    }
    m->info.entry_pc = entry;
    m->info.kernel_loaded = true;
    return true;
}

bool qs_machine_init(const QsMachineConfig *cfg, GError **errp)
{
    bool virt = !strcmp(cfg->name, "virt");
    if (!virt && strcmp(cfg->name, "none")) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-machine %s: unsupported machine type (see -machine help)", cfg->name);
        return false;
    }
    if (machine) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "a machine already exists");
        return false;
    }
    if (!check_opts(cfg, errp)) return false;
    if (cfg->smp < 1 || cfg->smp > 64) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "-smp %u: expected 1 to 64 CPUs", cfg->smp);
        return false;
    }
    Machine *m = g_new0(Machine, 1);
    m->info.name = virt ? "virt" : "none";
    m->info.as = qs_address_space_memory();
    m->info.smp = cfg->smp;
    m->info.ram_base = virt ? VIRT_DRAM : 0;
    m->info.ram_size = cfg->ram_size;
    m->info.entry_pc = m->info.ram_base;
    m->kernel = cfg->kernel;
    if (virt && cfg->ram_size > ((uint64_t)1 << 40)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-m %" G_GUINT64_FORMAT ": virt supports at most 1 TiB of RAM", cfg->ram_size);
        g_free(m);
        return false;
    }
    m->info.ram = qs_memory_region_new_ram(virt ? "riscv_virt_board.ram" : "ram", cfg->ram_size, errp);
    if (!m->info.ram) {
        g_prefix_error(errp, "-m: ");
        g_free(m);
        return false;
    }
    machine = m;   /* from here on, the parts are reachable and live with the process */
    if (!qs_memory_region_add_subregion(qs_memory_system_root(), m->info.ram_base, m->info.ram,
                                        0, errp)) {
        return false;
    }
    if (virt && !virt_init(m, cfg, errp)) return false;
    if (!load_kernel(m, errp)) return false;
    return true;
}

void qs_machine_help(GString *out)
{
    g_string_append(out, "Supported machines are:\n"
                         "none                 empty machine\n"
                         "virt                 RISC-V VirtIO board (default)\n");
}

void qs_machine_reset(void)
{
    Machine *m = machine;
    if (!m) return;
    qs_bql_lock();
    if (m->pci) qs_pci_bus_reset(m->pci);
    qs_device_reset_all();
    if (m->uart) qs_uart16550_reset(m->uart);
    if (m->clint) qs_clint_reset(m->clint);
    if (m->plic) qs_plic_reset(m->plic);
    g_autoptr(GError) err = NULL;
    if (!load_kernel(m, &err)) g_printerr("qemu-slim: reset: %s\n", err->message);
    qs_bql_unlock();
}
