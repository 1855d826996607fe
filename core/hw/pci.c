/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The PCI bus and config space: slots, standard header, write masks, BAR sizing and
 * mapping, command-register decoding, capabilities, INTx and bus-master DMA. */
#include <string.h>
#include "qs/pci.h"
#include "qs-internal.h"

struct QsPciBus {
    char *name;
    QsMemoryRegion *mem;
    QsIrq *intx[4];
    int intx_count[4];
    QsPciDevice *devices[256];
    QsPciIommuFn iommu_fn;
    void *iommu_opaque;
};

static QsPciBus *root_bus;

QsPciBus *qs_pci_bus_new(const char *name, QsMemoryRegion *mem, QsIrq *intx[4])
{
    QsPciBus *bus = g_new0(QsPciBus, 1);
    bus->name = g_strdup(name);
    bus->mem = qs_memory_region_ref(mem);
    for (int i = 0; i < 4; i++) bus->intx[i] = intx ? intx[i] : NULL;
    return bus;
}

void qs_pci_bus_free(QsPciBus *bus)
{
    if (!bus) return;
    for (int i = 0; i < 256; i++) {
        if (bus->devices[i]) qs_pci_unplug_device(bus->devices[i]);
    }
    if (root_bus == bus) root_bus = NULL;
    qs_memory_region_unref(bus->mem);
    g_free(bus->name);
    g_free(bus);
}

QsPciBus *qs_pci_root_bus(void) { return root_bus; }
void qs_pci_set_root_bus(QsPciBus *bus) { root_bus = bus; }
QsMemoryRegion *qs_pci_bus_memory(QsPciBus *bus) { return bus->mem; }

void qs_pci_bus_set_iommu(QsPciBus *bus, QsPciIommuFn fn, void *opaque)
{
    bus->iommu_fn = fn;
    bus->iommu_opaque = opaque;
}

QsPciDevice *qs_pci_find_device(QsPciBus *bus, int devfn)
{
    return devfn >= 0 && devfn < 256 ? bus->devices[devfn] : NULL;
}

/* ---- config helpers ---- */

static void set_w(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void set_l(uint8_t *p, uint32_t v) { set_w(p, v); set_w(p + 2, v >> 16); }
static uint16_t get_w(const uint8_t *p) { return p[0] | p[1] << 8; }
static uint32_t get_l(const uint8_t *p) { return get_w(p) | (uint32_t)get_w(p + 2) << 16; }

void qs_pci_config_set_ids(QsPciDevice *pdev, uint16_t vendor, uint16_t device,
                           uint32_t class_code, uint8_t revision)
{
    set_w(pdev->config + QS_PCI_VENDOR_ID, vendor);
    set_w(pdev->config + QS_PCI_DEVICE_ID, device);
    pdev->config[QS_PCI_REVISION_ID] = revision;
    pdev->config[QS_PCI_CLASS_PROG] = class_code & 0xff;
    set_w(pdev->config + QS_PCI_CLASS_DEVICE, class_code >> 8);
    set_w(pdev->config + QS_PCI_SUBSYSTEM_VENDOR_ID, 0x1af4);   /* as QEMU: Red Hat */
    set_w(pdev->config + QS_PCI_SUBSYSTEM_ID, 0x1100);
}

/* The standard type-0 header's writable bits, before the device adds its own. */
static void config_init(QsPciDevice *pdev)
{
    memset(pdev->config, 0, sizeof(pdev->config));
    memset(pdev->wmask, 0, sizeof(pdev->wmask));
    memset(pdev->w1cmask, 0, sizeof(pdev->w1cmask));
    set_w(pdev->wmask + QS_PCI_COMMAND, QS_PCI_COMMAND_MEMORY | QS_PCI_COMMAND_MASTER |
                                         QS_PCI_COMMAND_INTX_DISABLE | 0x140 /* parity, SERR */);
    set_w(pdev->w1cmask + QS_PCI_STATUS, 0xf900);
    pdev->wmask[0x0c] = 0xff;                       /* cache line size */
    pdev->wmask[0x0d] = 0xff;                       /* latency timer */
    pdev->wmask[QS_PCI_INTERRUPT_LINE] = 0xff;
    pdev->next_cap = 0x40;
    for (int i = 0; i < QS_PCI_NUM_BARS; i++) pdev->bars[i].addr = QS_PCI_BAR_UNMAPPED;
}

bool qs_pci_register_bar(QsPciDevice *pdev, int n, uint8_t type, QsMemoryRegion *mr,
                         GError **errp)
{
    uint64_t size = qs_memory_region_size(mr);
    bool is64 = type & QS_PCI_BASE_ADDRESS_MEM_TYPE_64;
    bool upper_half = n > 0 && n < QS_PCI_NUM_BARS && pdev->bars[n - 1].mr &&
                      (pdev->bars[n - 1].type & QS_PCI_BASE_ADDRESS_MEM_TYPE_64);
    if (n < 0 || n >= QS_PCI_NUM_BARS || (is64 && n == QS_PCI_NUM_BARS - 1) ||
        pdev->bars[n].mr || upper_half || (is64 && pdev->bars[n + 1].mr)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "%s: BAR %d is invalid or in use",
                    pdev->name, n);
        return false;
    }
    if (size < 16 || (size & (size - 1)) || (!is64 && size > ((uint64_t)1 << 31))) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: BAR %d size 0x%" G_GINT64_MODIFIER "x is not a power of two from 16 "
                    "bytes (to 2 GiB for 32-bit BARs)", pdev->name, n, size);
        return false;
    }
    QsPciBar *b = &pdev->bars[n];
    b->mr = qs_memory_region_ref(mr);
    b->size = size;
    b->type = type & (QS_PCI_BASE_ADDRESS_MEM_TYPE_64 | QS_PCI_BASE_ADDRESS_MEM_PREFETCH);
    b->addr = QS_PCI_BAR_UNMAPPED;
    uint32_t reg = QS_PCI_BASE_ADDRESS_0 + 4 * n;
    uint64_t mask = ~(size - 1);
    set_l(pdev->config + reg, b->type);
    set_l(pdev->wmask + reg, (uint32_t)mask & ~0xfu);
    if (is64) set_l(pdev->wmask + reg + 4, mask >> 32);
    return true;
}

uint8_t qs_pci_add_capability(QsPciDevice *pdev, uint8_t cap_id, uint8_t size,
                              GError **errp)
{
    uint16_t off = (pdev->next_cap + 3) & ~3;
    if (size < 2 || off + size > 0x100) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: no room for capability 0x%02x of %u bytes", pdev->name, cap_id, size);
        return 0;
    }
    pdev->config[off] = cap_id;
    pdev->config[off + 1] = pdev->config[QS_PCI_CAPABILITY_LIST];
    pdev->config[QS_PCI_CAPABILITY_LIST] = off;
    pdev->config[QS_PCI_STATUS] |= QS_PCI_STATUS_CAP_LIST;
    pdev->next_cap = off + size;
    return off;
}

uint8_t qs_pci_find_capability(QsPciDevice *pdev, uint8_t cap_id)
{
    uint8_t p = pdev->config[QS_PCI_CAPABILITY_LIST];
    for (int guard = 0; p && guard < 48; guard++) {
        if (pdev->config[p] == cap_id) return p;
        p = pdev->config[p + 1];
    }
    return 0;
}

/* ---- BAR mapping ---- */

/* The bus address a BAR decodes now, or UNMAPPED (memory decoding off, address 0,
 * still holding the sizing pattern, or beyond what its width can address). */
static uint64_t bar_address(QsPciDevice *pdev, int n)
{
    QsPciBar *b = &pdev->bars[n];
    if (!(get_w(pdev->config + QS_PCI_COMMAND) & QS_PCI_COMMAND_MEMORY)) return QS_PCI_BAR_UNMAPPED;
    uint32_t reg = QS_PCI_BASE_ADDRESS_0 + 4 * n;
    uint64_t a = get_l(pdev->config + reg) & ~0xfu;
    if (b->type & QS_PCI_BASE_ADDRESS_MEM_TYPE_64) a |= (uint64_t)get_l(pdev->config + reg + 4) << 32;
    a &= ~(b->size - 1);
    uint64_t last = a + b->size - 1;
    if (a == 0 || last < a) return QS_PCI_BAR_UNMAPPED;
    if (!(b->type & QS_PCI_BASE_ADDRESS_MEM_TYPE_64) && last >= UINT32_MAX) return QS_PCI_BAR_UNMAPPED;
    if (last == UINT64_MAX) return QS_PCI_BAR_UNMAPPED;
    return a;
}

static void update_mappings(QsPciDevice *pdev)
{
    for (int n = 0; n < QS_PCI_NUM_BARS; n++) {
        QsPciBar *b = &pdev->bars[n];
        if (!b->mr) continue;
        uint64_t a = bar_address(pdev, n);
        if (a == b->addr) continue;
        if (b->addr != QS_PCI_BAR_UNMAPPED) {
            qs_memory_region_del_subregion(pdev->bus->mem, b->mr);
        }
        b->addr = a;
        if (a != QS_PCI_BAR_UNMAPPED) {
            /* BARs sit above anything else the bus memory holds, as in QEMU (prio 1) */
            if (!qs_memory_region_add_subregion(pdev->bus->mem, a, b->mr, 1, NULL)) {
                b->addr = QS_PCI_BAR_UNMAPPED;
            }
        }
    }
}

static void update_intx(QsPciDevice *pdev);

uint32_t qs_pci_config_read(QsPciDevice *pdev, uint32_t addr, unsigned size)
{
    if ((size != 1 && size != 2 && size != 4) || addr + size > QS_PCI_CONFIG_SIZE) {
        return UINT32_MAX;
    }
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++) v |= (uint32_t)pdev->config[addr + i] << (8 * i);
    return v;
}

void qs_pci_config_write(QsPciDevice *pdev, uint32_t addr, uint32_t val, unsigned size)
{
    if ((size != 1 && size != 2 && size != 4) || addr + size > QS_PCI_CONFIG_SIZE) return;
    uint16_t old_cmd = get_w(pdev->config + QS_PCI_COMMAND);
    for (unsigned i = 0; i < size; i++) {
        uint8_t b = val >> (8 * i);
        uint32_t a = addr + i;
        uint8_t wm = pdev->wmask[a], w1c = pdev->w1cmask[a];
        pdev->config[a] = (pdev->config[a] & ~wm) | (b & wm);
        pdev->config[a] &= ~(b & w1c);
    }
    bool bars = addr < QS_PCI_BASE_ADDRESS_0 + 24 && addr + size > QS_PCI_BASE_ADDRESS_0;
    bool cmd = addr < QS_PCI_COMMAND + 2 && addr + size > QS_PCI_COMMAND;
    if (bars || cmd) update_mappings(pdev);
    if (cmd && ((old_cmd ^ get_w(pdev->config + QS_PCI_COMMAND)) & QS_PCI_COMMAND_INTX_DISABLE)) {
        update_intx(pdev);
    }
    if (pdev->config_written) pdev->config_written(pdev, addr, val, size);
}

/* ---- INTx ---- */

static int intx_pin(QsPciDevice *pdev)
{
    int pin = pdev->config[QS_PCI_INTERRUPT_PIN];   /* 1..4 = INTA..INTD, 0 none */
    return pin >= 1 && pin <= 4 ? pin - 1 : -1;
}

/* The wired-OR of every device on a line drives the machine's irq. */
static void bus_intx_change(QsPciBus *bus, int line, int delta)
{
    bus->intx_count[line] += delta;
    qs_irq_set(bus->intx[line], bus->intx_count[line] > 0);
}

static bool intx_asserted(QsPciDevice *pdev)
{
    return pdev->intx_level &&
           !(get_w(pdev->config + QS_PCI_COMMAND) & QS_PCI_COMMAND_INTX_DISABLE);
}

static int intx_line(QsPciDevice *pdev)
{
    int pin = intx_pin(pdev);
    return pin < 0 ? -1 : (QS_PCI_SLOT(pdev->devfn) + pin) % 4;
}

/* The bus sees the device's line asserted iff level && !INTX_DISABLE; intx_on_bus
 * records what the bus was told so each change moves the wired-OR count once. */
static void update_intx(QsPciDevice *pdev)
{
    int line = intx_line(pdev);
    bool want = intx_asserted(pdev);
    if (line >= 0 && want != pdev->intx_on_bus) {
        bus_intx_change(pdev->bus, line, want ? 1 : -1);
        pdev->intx_on_bus = want;
    }
}

void qs_pci_set_irq(QsPciDevice *pdev, int level)
{
    level = !!level;
    pdev->intx_level = level;
    if (level) pdev->config[QS_PCI_STATUS] |= QS_PCI_STATUS_INTERRUPT;
    else pdev->config[QS_PCI_STATUS] &= ~QS_PCI_STATUS_INTERRUPT;
    if (pdev->bus) update_intx(pdev);
}

/* ---- MSI ---- */

bool qs_pci_msi_init(QsPciDevice *pdev, unsigned nr_vectors, bool is_64bit, GError **errp)
{
    if (nr_vectors < 1 || nr_vectors > 32 || (nr_vectors & (nr_vectors - 1))) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: MSI vector count %u is not a power of two from 1 to 32", pdev->name,
                    nr_vectors);
        return false;
    }
    uint8_t off = qs_pci_add_capability(pdev, QS_PCI_CAP_ID_MSI, is_64bit ? 14 : 10, errp);
    if (!off) return false;
    unsigned mmc = 0;
    while ((1u << mmc) < nr_vectors) mmc++;
    uint16_t flags = mmc << 1;
    if (is_64bit) flags |= QS_PCI_MSI_FLAGS_64BIT;
    set_w(pdev->config + off + QS_PCI_MSI_FLAGS, flags);
    set_w(pdev->wmask + off + QS_PCI_MSI_FLAGS, QS_PCI_MSI_FLAGS_ENABLE | 0x70);
    set_l(pdev->wmask + off + QS_PCI_MSI_ADDRESS_LO, 0xfffffffc);
    if (is_64bit) {
        set_l(pdev->wmask + off + QS_PCI_MSI_ADDRESS_HI, 0xffffffff);
        set_w(pdev->wmask + off + QS_PCI_MSI_DATA_64, 0xffff);
    } else {
        set_w(pdev->wmask + off + QS_PCI_MSI_DATA_32, 0xffff);
    }
    pdev->msi_cap = off;
    return true;
}

bool qs_pci_msi_enabled(QsPciDevice *pdev)
{
    return pdev->msi_cap &&
           (get_w(pdev->config + pdev->msi_cap + QS_PCI_MSI_FLAGS) & QS_PCI_MSI_FLAGS_ENABLE);
}

QsMemTxResult qs_pci_msi_notify(QsPciDevice *pdev, unsigned vector)
{
    if (!qs_pci_msi_enabled(pdev)) return QS_MEMTX_OK;
    const uint8_t *c = pdev->config + pdev->msi_cap;
    uint16_t flags = get_w(c + QS_PCI_MSI_FLAGS);
    bool is64 = flags & QS_PCI_MSI_FLAGS_64BIT;
    uint64_t addr = get_l(c + QS_PCI_MSI_ADDRESS_LO);
    if (is64) addr |= (uint64_t)get_l(c + QS_PCI_MSI_ADDRESS_HI) << 32;
    uint32_t data = get_w(c + (is64 ? QS_PCI_MSI_DATA_64 : QS_PCI_MSI_DATA_32));
    unsigned nr = 1u << ((flags >> 4) & 7);
    if (vector >= nr) {
        g_warning("%s: MSI vector %u is beyond the %u enabled", pdev->name, vector, nr);
        return QS_MEMTX_ERROR;
    }
    data = (data & ~(nr - 1)) | vector;
    uint8_t b[4] = { data, data >> 8, data >> 16, data >> 24 };
    QsMemTxResult r = qs_pci_dma_write(pdev, addr, b, 4);
    if (r != QS_MEMTX_OK) {
        g_printerr("qemu-slim: %s: MSI write of 0x%x to 0x%" G_GINT64_MODIFIER "x failed: %s\n",
                   pdev->name, data, addr, qs_memtx_result_str(r));
    }
    return r;
}

/* ---- DMA ---- */

uint16_t qs_pci_requester_id(const QsPciDevice *pdev)
{
    return (uint16_t)(0 << 8 | pdev->devfn);   /* bus 0: the only bus */
}

static QsMemTxAttrs dma_attrs(const QsPciDevice *pdev)
{
    return (QsMemTxAttrs){ .requester_id = qs_pci_requester_id(pdev), .has_requester_id = true };
}

QsMemTxResult qs_pci_dma_read(QsPciDevice *pdev, uint64_t addr, void *buf, uint64_t len)
{
    if (!(get_w(pdev->config + QS_PCI_COMMAND) & QS_PCI_COMMAND_MASTER)) {
        memset(buf, 0xff, len);
        return QS_MEMTX_ACCESS_DENIED;
    }
    return qs_dma_read(pdev->dma_as, addr, buf, len, dma_attrs(pdev));
}

QsMemTxResult qs_pci_dma_write(QsPciDevice *pdev, uint64_t addr, const void *buf,
                               uint64_t len)
{
    if (!(get_w(pdev->config + QS_PCI_COMMAND) & QS_PCI_COMMAND_MASTER)) {
        return QS_MEMTX_ACCESS_DENIED;
    }
    return qs_dma_write(pdev->dma_as, addr, buf, len, dma_attrs(pdev));
}

/* ---- plugging ---- */

static void device_reset_config(QsPciDevice *pdev)
{
    /* what a reset clears: command, status w1c bits, BAR addresses, MSI enable */
    qs_pci_config_write(pdev, QS_PCI_COMMAND, 0, 2);
    set_w(pdev->config + QS_PCI_STATUS, get_w(pdev->config + QS_PCI_STATUS) & ~0xf900);
    for (int n = 0; n < QS_PCI_NUM_BARS; n++) {
        if (pdev->bars[n].mr) {
            set_l(pdev->config + QS_PCI_BASE_ADDRESS_0 + 4 * n, pdev->bars[n].type);
            if (pdev->bars[n].type & QS_PCI_BASE_ADDRESS_MEM_TYPE_64) {
                set_l(pdev->config + QS_PCI_BASE_ADDRESS_0 + 4 * n + 4, 0);
            }
        }
    }
    if (pdev->msi_cap) {
        uint8_t *f = pdev->config + pdev->msi_cap + QS_PCI_MSI_FLAGS;
        set_w(f, get_w(f) & ~(QS_PCI_MSI_FLAGS_ENABLE | 0x70));
    }
    pdev->config[QS_PCI_INTERRUPT_LINE] = 0;
    qs_pci_set_irq(pdev, 0);
    update_mappings(pdev);
}

void qs_pci_bus_reset(QsPciBus *bus)
{
    for (int i = 0; i < 256; i++) {
        if (bus->devices[i]) device_reset_config(bus->devices[i]);
    }
}

bool qs_pci_plug_device(QsPciBus *bus, QsPciDevice *pdev, int devfn, GError **errp)
{
    const char *tname = pdev->qdev.type ? pdev->qdev.type->name : "pci-device";
    if (devfn < 0) {
        for (int slot = 0; slot < 32 && devfn < 0; slot++) {
            if (!bus->devices[QS_PCI_DEVFN(slot, 0)]) devfn = QS_PCI_DEVFN(slot, 0);
        }
        if (devfn < 0) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "PCI bus '%s' has no free slot for '%s'", bus->name, tname);
            return false;
        }
    } else if (devfn > 255 || bus->devices[devfn]) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "PCI: slot %d function %d not available for %s, in use by %s",
                    QS_PCI_SLOT(devfn), QS_PCI_FUNC(devfn), tname,
                    devfn <= 255 ? bus->devices[devfn]->qdev.type->name : "?");
        return false;
    }
    pdev->bus = bus;
    pdev->devfn = devfn;
    g_snprintf(pdev->name, sizeof(pdev->name), "%s 00:%02x.%x", tname, QS_PCI_SLOT(devfn),
               QS_PCI_FUNC(devfn));
    config_init(pdev);
    pdev->dma_as = bus->iommu_fn ? bus->iommu_fn(bus->iommu_opaque, bus, devfn) : NULL;
    if (!pdev->dma_as) pdev->dma_as = qs_address_space_memory();
    bus->devices[devfn] = pdev;
    return true;
}

void qs_pci_unplug_device(QsPciDevice *pdev)
{
    QsPciBus *bus = pdev->bus;
    if (!bus) return;
    qs_pci_set_irq(pdev, 0);
    for (int n = 0; n < QS_PCI_NUM_BARS; n++) {
        QsPciBar *b = &pdev->bars[n];
        if (!b->mr) continue;
        if (b->addr != QS_PCI_BAR_UNMAPPED) qs_memory_region_del_subregion(bus->mem, b->mr);
        qs_memory_region_unref(b->mr);
        b->mr = NULL;
        b->addr = QS_PCI_BAR_UNMAPPED;
    }
    bus->devices[pdev->devfn] = NULL;
    pdev->bus = NULL;
}

/* "SLOT[.FN]" in hex, as QEMU's addr= property. */
static int parse_addr(const char *s, GError **errp)
{
    char *end;
    unsigned long slot = strtoul(s, &end, 16), fn = 0;
    if (end == s) goto bad;
    if (*end == '.') {
        const char *f = end + 1;
        fn = strtoul(f, &end, 16);
        if (end == f) goto bad;
    }
    if (*end || slot > 31 || fn > 7) goto bad;
    return QS_PCI_DEVFN(slot, fn);
bad:
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                "Property 'addr' value '%s': expected SLOT[.FUNCTION] in hex, slot 0-1f, "
                "function 0-7", s);
    return -1;
}

static bool bus_plug(QsDevice *dev, GError **errp)
{
    QsPciDevice *pdev = (QsPciDevice *)dev;
    if (!root_bus) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "device '%s' needs a PCI bus, which this machine does not have",
                    dev->type->name);
        return false;
    }
    int devfn = -1;
    const char *addr = qs_opts_has(dev->props, "addr") ? qs_opts_get_str(dev->props, "addr") : NULL;
    if (addr && (devfn = parse_addr(addr, errp)) < 0) return false;
    if (!qs_pci_plug_device(root_bus, pdev, devfn, errp)) return false;
    if (dev->type->realize && !dev->type->realize(dev, errp)) {
        qs_pci_unplug_device(pdev);
        return false;
    }
    return true;
}

static void bus_unplug(QsDevice *dev)
{
    QsPciDevice *pdev = (QsPciDevice *)dev;
    if (dev->type->unrealize) dev->type->unrealize(dev);
    qs_pci_unplug_device(pdev);
}

static const QsBusOps pci_bus_ops = { .name = "pci", .plug = bus_plug, .unplug = bus_unplug };

void qs_pci_register_bus_type(void)
{
    qs_bus_register(&pci_bus_ops);
}

static void __attribute__((constructor)) pci_register_at_start(void)
{
    qs_pci_register_bus_type();
}
