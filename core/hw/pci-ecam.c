/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The PCIe ECAM window: bus << 20 | devfn << 12 | register, 4 KiB of config space per
 * function; absent functions and other buses read as all-ones and ignore writes. */
#include "qs/pci.h"

static QsPciDevice *ecam_dev(QsPciBus *bus, uint64_t addr)
{
    if (addr >> 20) return NULL;   /* bus 0 only */
    return qs_pci_find_device(bus, (addr >> 12) & 0xff);
}

static QsMemTxResult ecam_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                               QsMemTxAttrs attrs)
{
    QsPciDevice *d = ecam_dev(opaque, addr);
    *val = d ? qs_pci_config_read(d, addr & 0xfff, size) : UINT32_MAX;
    return QS_MEMTX_OK;
}

static QsMemTxResult ecam_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                                QsMemTxAttrs attrs)
{
    QsPciDevice *d = ecam_dev(opaque, addr);
    if (d) qs_pci_config_write(d, addr & 0xfff, (uint32_t)val, size);
    return QS_MEMTX_OK;
}

static const QsMemOps ecam_ops = {
    .read = ecam_read,
    .write = ecam_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 1, .max = 4 },
    .impl = { .min = 1, .max = 4 },
};

QsMemoryRegion *qs_pci_ecam_new(QsPciBus *bus, uint64_t size)
{
    return qs_memory_region_new_io("pcie-ecam", size, &ecam_ops, bus);
}
