/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PCI and edu on the virt machine: ECAM config space, write masks, BAR sizing and
 * mapping, capabilities, INTx through the PLIC, MSI, edu registers and DMA (virtual
 * time, out-of-range refusal, dma_mask, bus mastering, an IOMMU keyed on requester id). */
#include <string.h>
#include "qs/evloop.h"
#include "qs/pci.h"
#include "qs/machine.h"
#include "runtime.h"

#define ECAM 0x30000000ull
#define RAM 0x80000000ull
static QsAddressSpace *sys;
static QsMemTxAttrs none;

static uint64_t cfg_addr(int slot, unsigned reg) { return ECAM + ((uint64_t)slot << 15) + reg; }

static uint64_t rd(uint64_t addr, unsigned size)
{
    uint64_t v = 0;
    qs_address_space_load(sys, addr, size, &v, none);
    return v;
}

static void wr(uint64_t addr, unsigned size, uint64_t v)
{
    qs_address_space_store(sys, addr, size, v, none);
}

/* Program BAR0 of slot at bar and enable memory decoding and bus mastering. */
static void setup_edu(int slot, uint64_t bar)
{
    wr(cfg_addr(slot, QS_PCI_BASE_ADDRESS_0), 4, bar);
    wr(cfg_addr(slot, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY | QS_PCI_COMMAND_MASTER);
}

static int irq_level[128];
static void record_irq(void *opaque, int n, int level)
{
    if (n >= 0 && n < 128) irq_level[n] = level;
}

static void test_config_space(void)
{
    /* the host bridge at 00:00.0, edu at 00:02.0 (addr=2) */
    g_assert_cmphex(rd(cfg_addr(0, 0), 4), ==, 0x00081b36);
    g_assert_cmphex(rd(cfg_addr(2, 0), 4), ==, 0x11e81234);
    g_assert_cmphex(rd(cfg_addr(2, 0), 2), ==, 0x1234);
    g_assert_cmphex(rd(cfg_addr(2, 3), 1), ==, 0x11);
    g_assert_cmphex(rd(cfg_addr(2, QS_PCI_REVISION_ID), 4), ==, 0x00ff0010);
    g_assert_cmphex(rd(cfg_addr(2, QS_PCI_INTERRUPT_PIN), 1), ==, 1);
    /* an empty slot, another bus, an 8-byte access: all-ones or refused */
    g_assert_cmphex(rd(cfg_addr(9, 0), 4), ==, 0xffffffff);
    g_assert_cmphex(rd(ECAM + (1 << 20), 4), ==, 0xffffffff);
    /* read-only fields stay; the command register keeps only its writable bits */
    wr(cfg_addr(2, 0), 4, 0);
    g_assert_cmphex(rd(cfg_addr(2, 0), 4), ==, 0x11e81234);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, 0xffff);
    g_assert_cmphex(rd(cfg_addr(2, QS_PCI_COMMAND), 2), ==, 0x0546);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, 0);
    /* capability list: status bit, pointer, MSI with 64-bit addresses */
    g_assert_true(rd(cfg_addr(2, QS_PCI_STATUS), 2) & QS_PCI_STATUS_CAP_LIST);
    uint64_t cap = rd(cfg_addr(2, QS_PCI_CAPABILITY_LIST), 1);
    g_assert_cmphex(cap, >=, 0x40);
    g_assert_cmphex(rd(cfg_addr(2, cap), 1), ==, QS_PCI_CAP_ID_MSI);
    g_assert_cmphex(rd(cfg_addr(2, cap + 1), 1), ==, 0);   /* last */
    g_assert_true(rd(cfg_addr(2, cap + QS_PCI_MSI_FLAGS), 2) & QS_PCI_MSI_FLAGS_64BIT);
    /* interrupt line is writable, the pin is not */
    wr(cfg_addr(2, QS_PCI_INTERRUPT_LINE), 2, 0x0405);
    g_assert_cmphex(rd(cfg_addr(2, QS_PCI_INTERRUPT_LINE), 2), ==, 0x0105);
}

static void test_bar_sizing_mapping(void)
{
    uint64_t bar0 = cfg_addr(2, QS_PCI_BASE_ADDRESS_0);
    wr(bar0, 4, 0xffffffff);
    g_assert_cmphex(rd(bar0, 4), ==, 0xfff00000);   /* 1 MiB, 32-bit memory */
    g_assert_cmphex(rd(cfg_addr(2, 0x14), 4), ==, 0);   /* BAR1 not implemented */
    wr(cfg_addr(2, 0x14), 4, 0xffffffff);
    g_assert_cmphex(rd(cfg_addr(2, 0x14), 4), ==, 0);
    /* decoding on while the sizing pattern is there: not mapped anywhere */
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY);
    QsMemTxResult r = qs_address_space_load(sys, 0xfff00000, 4, &(uint64_t){ 0 }, none);
    g_assert_cmpint(r, ==, QS_MEMTX_DECODE_ERROR);
    /* program it: the device answers there, low bits of the address are dropped */
    wr(bar0, 4, 0x40123456);
    g_assert_cmphex(rd(bar0, 4), ==, 0x40100000);
    g_assert_cmphex(rd(0x40100000, 4), ==, 0x010000ed);
    /* memory decoding off: gone */
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, 0);
    uint64_t v;
    g_assert_cmpint(qs_address_space_load(sys, 0x40100000, 4, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    /* moved: answers at the new place only */
    wr(bar0, 4, 0x40300000);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY);
    g_assert_cmphex(rd(0x40300000, 4), ==, 0x010000ed);
    g_assert_cmpint(qs_address_space_load(sys, 0x40100000, 4, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    /* outside the CPU's PCI window the device is on the bus but not reachable */
    wr(bar0, 4, 0x20000000);
    g_assert_cmpint(qs_address_space_load(sys, 0x20000000, 4, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    wr(bar0, 4, 0x40100000);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, 0);
}

static void test_intx(void)
{
    setup_edu(2, 0x40100000);
    /* slot 2, INTA: PLIC source 32 + (2 + 0) % 4 */
    int src = QS_VIRT_PCIE_IRQ + 2;
    g_assert_cmpint(qs_gpio_intercept_in("plic", record_irq, NULL), ==, QS_GPIO_INTERCEPT_OK);
    wr(0x40100060, 4, 0x10);
    g_assert_cmpint(irq_level[src], ==, 1);
    g_assert_true(rd(cfg_addr(2, QS_PCI_STATUS), 2) & QS_PCI_STATUS_INTERRUPT);
    g_assert_cmphex(rd(0x40100024, 4), ==, 0x10);
    /* INTx disable masks the line, enable brings it back */
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY | QS_PCI_COMMAND_INTX_DISABLE);
    g_assert_cmpint(irq_level[src], ==, 0);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY);
    g_assert_cmpint(irq_level[src], ==, 1);
    /* acknowledging part leaves it up; all of it lowers it */
    wr(0x40100060, 4, 0x1);
    wr(0x40100064, 4, 0x10);
    g_assert_cmpint(irq_level[src], ==, 1);
    wr(0x40100064, 4, 0x1);
    g_assert_cmpint(irq_level[src], ==, 0);
    g_assert_false(rd(cfg_addr(2, QS_PCI_STATUS), 2) & QS_PCI_STATUS_INTERRUPT);
    /* the PLIC claims it: priority 1, enabled for context 0, threshold 0 */
    wr(0x0c000000 + 4 * src, 4, 1);
    wr(0x0c002000 + 4 * (src / 32), 4, 1u << (src % 32));
    wr(0x40100060, 4, 0x2);
    g_assert_cmphex(rd(0x0c000000 + 0x1000 + 4 * (src / 32), 4) >> (src % 32) & 1, ==, 1);
    g_assert_cmpint(rd(0x0c200004, 4), ==, src);   /* claim */
    g_assert_cmpint(rd(0x0c200004, 4), ==, 0);     /* nothing else */
    wr(0x40100064, 4, 0x2);
    wr(0x0c200004, 4, src);                         /* complete */
    g_assert_cmpint(rd(0x0c200004, 4), ==, 0);     /* the line is low: not pending */
    qs_gpio_intercept_clear();
}

static void test_msi(void)
{
    setup_edu(2, 0x40100000);
    uint64_t cap = rd(cfg_addr(2, QS_PCI_CAPABILITY_LIST), 1);
    wr(cfg_addr(2, cap + QS_PCI_MSI_ADDRESS_LO), 4, 0x80000100);
    wr(cfg_addr(2, cap + QS_PCI_MSI_ADDRESS_HI), 4, 0);
    wr(cfg_addr(2, cap + QS_PCI_MSI_DATA_64), 2, 0x4321);
    wr(cfg_addr(2, cap + QS_PCI_MSI_FLAGS), 2, QS_PCI_MSI_FLAGS_ENABLE);
    wr(RAM + 0x100, 4, 0);
    wr(0x40100060, 4, 0x1);
    g_assert_cmphex(rd(RAM + 0x100, 4), ==, 0x4321);
    g_assert_false(rd(cfg_addr(2, QS_PCI_STATUS), 2) & QS_PCI_STATUS_INTERRUPT);
    wr(0x40100064, 4, 0x1);
    /* bus mastering off: no message */
    wr(RAM + 0x100, 4, 0);
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY);
    wr(0x40100060, 4, 0x1);
    g_assert_cmphex(rd(RAM + 0x100, 4), ==, 0);
    wr(0x40100064, 4, 0x1);
    /* a message to nowhere is reported, not fatal; the device goes on working */
    wr(cfg_addr(2, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY | QS_PCI_COMMAND_MASTER);
    wr(cfg_addr(2, cap + QS_PCI_MSI_ADDRESS_LO), 4, 0x00000ff0);
    wr(0x40100060, 4, 0x1);
    g_assert_cmphex(rd(0x40100024, 4), ==, 0x1);
    wr(0x40100064, 4, 0x1);
    wr(cfg_addr(2, cap + QS_PCI_MSI_FLAGS), 2, 0);
}

static void test_edu_registers(void)
{
    setup_edu(2, 0x40100000);
    g_assert_cmphex(rd(0x40100000, 4), ==, 0x010000ed);
    wr(0x40100004, 4, 0x12345678);
    g_assert_cmphex(rd(0x40100004, 4), ==, 0xedcba987);
    static const struct { uint32_t n, f; } facts[] = {
        { 0, 1 }, { 1, 1 }, { 5, 120 }, { 10, 3628800 }, { 12, 479001600 },
        { 13, 1932053504 /* 13! mod 2^32 */ }, { 33, 2147483648u }, { 34, 0 },
        { 0xffffffff, 0 },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(facts); i++) {
        wr(0x40100008, 4, facts[i].n);
        g_assert_cmphex(rd(0x40100020, 4) & 1, ==, 0);
        g_assert_cmphex(rd(0x40100008, 4), ==, facts[i].f);
    }
    /* factorial interrupt */
    wr(0x40100020, 4, 0x80);
    g_assert_cmphex(rd(0x40100020, 4), ==, 0x80);
    wr(0x40100008, 4, 4);
    g_assert_cmphex(rd(0x40100024, 4), ==, 0x1);
    wr(0x40100064, 4, 0x1);
    wr(0x40100020, 4, 0);
    /* accesses of the wrong size are refused by the bus */
    uint64_t v;
    g_assert_cmpint(qs_address_space_load(sys, 0x40100000, 2, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    g_assert_cmpint(qs_address_space_load(sys, 0x40100002, 4, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    /* DMA registers take 8-byte accesses */
    wr(0x40100080, 8, 0x123456789abcull);
    g_assert_cmphex(rd(0x40100080, 8), ==, 0x123456789abcull);
    /* unknown registers read as all-ones */
    g_assert_cmphex(rd(0x40100010, 4), ==, 0xffffffff);
}

static void dma(uint64_t bar, uint64_t src, uint64_t dst, uint64_t cnt, uint64_t cmd)
{
    wr(bar + 0x80, 8, src);
    wr(bar + 0x88, 8, dst);
    wr(bar + 0x90, 8, cnt);
    wr(bar + 0x98, 8, cmd);
}

static void test_edu_dma(void)
{
    /* edu at slot 3 has dma_mask wide enough for RAM at 2 GiB */
    setup_edu(3, 0x40200000);
    uint64_t bar = 0x40200000;
    int src_irq = QS_VIRT_PCIE_IRQ + 3;
    qs_gpio_intercept_in("plic", record_irq, NULL);
    uint8_t pattern[256];
    for (int i = 0; i < 256; i++) pattern[i] = i ^ 0x5a;
    qs_address_space_write(sys, RAM + 0x1000, none, pattern, 256);
    /* RAM -> buffer, after 100 ms of virtual time, not before */
    int64_t t0 = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    dma(bar, RAM + 0x1000, 0x40000, 256, 0x1);
    g_assert_cmphex(rd(bar + 0x98, 8), ==, 1);
    /* registers are frozen while it runs */
    wr(bar + 0x90, 8, 8);
    g_assert_cmphex(rd(bar + 0x90, 8), ==, 256);
    qs_clock_step(99 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8), ==, 1);
    qs_clock_step(1 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8), ==, 0);
    g_assert_cmpint(qs_clock_get_ns(QS_CLOCK_VIRTUAL) - t0, ==, 100 * 1000000);
    /* buffer -> RAM elsewhere, with the DMA interrupt */
    dma(bar, 0x40000, RAM + 0x3000, 256, 0x1 | 0x2 | 0x4);
    g_assert_cmpint(irq_level[src_irq], ==, 0);
    qs_clock_step(qs_clock_next_deadline(QS_CLOCK_VIRTUAL) - qs_clock_get_ns(QS_CLOCK_VIRTUAL));
    uint8_t back[256];
    qs_address_space_read(sys, RAM + 0x3000, none, back, 256);
    g_assert_cmpmem(back, 256, pattern, 256);
    g_assert_cmphex(rd(bar + 0x24, 4), ==, 0x100);
    g_assert_cmpint(irq_level[src_irq], ==, 1);
    wr(bar + 0x64, 4, 0x100);
    g_assert_cmpint(irq_level[src_irq], ==, 0);

    /* out of the buffer: refused, command completes, nothing moved, no interrupt */
    memset(back, 0xcc, sizeof(back));
    qs_address_space_write(sys, RAM + 0x5000, none, back, 256);
    dma(bar, 0x40000 + 4090, RAM + 0x5000, 16, 0x1 | 0x2 | 0x4);
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8) & 1, ==, 0);
    g_assert_cmphex(rd(bar + 0x24, 4), ==, 0);
    qs_address_space_read(sys, RAM + 0x5000, none, back, 16);
    g_assert_cmphex(back[0], ==, 0xcc);
    dma(bar, RAM, 0x3ffff, 2, 0x1);               /* starts below the buffer */
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8) & 1, ==, 0);
    dma(bar, RAM, UINT64_MAX - 1, 16, 0x1);       /* wraps around */
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8) & 1, ==, 0);
    /* from an unmapped address: refused (error logged), no interrupt */
    dma(bar, 0x1000, 0x40000, 16, 0x1 | 0x4);
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(bar + 0x98, 8) & 1, ==, 0);
    g_assert_cmphex(rd(bar + 0x24, 4), ==, 0);
    /* bus mastering off: refused */
    wr(cfg_addr(3, QS_PCI_COMMAND), 2, QS_PCI_COMMAND_MEMORY);
    dma(bar, 0x40000, RAM + 0x5000, 16, 0x1 | 0x2);
    qs_clock_step(100 * 1000000);
    qs_address_space_read(sys, RAM + 0x5000, none, back, 16);
    g_assert_cmphex(back[0], ==, 0xcc);

    /* edu at slot 2 has the default 28-bit mask: RAM + 0x1000 is clamped to 0x1000,
     * where nothing is mapped, so the transfer is refused */
    setup_edu(2, 0x40100000);
    dma(0x40100000, 0x40000, RAM + 0x5000, 16, 0x1 | 0x2);
    qs_clock_step(100 * 1000000);
    qs_address_space_read(sys, RAM + 0x5000, none, back, 16);
    g_assert_cmphex(back[0], ==, 0xcc);
    qs_gpio_intercept_clear();
}

/* An IOMMU that gives the device at devfn 0x20 (slot 4) one page: iova 0 -> RAM. */
typedef struct Iommu {
    QsMemoryRegion *mr;
    QsAddressSpace *as;
    uint16_t last_rid;
} Iommu;

static void iommu_translate(void *opaque, uint64_t addr, QsIommuPerm flag, QsMemTxAttrs attrs,
                            QsIommuTlbEntry *out)
{
    Iommu *io = opaque;
    io->last_rid = attrs.requester_id;
    *out = (QsIommuTlbEntry){ .target_as = qs_address_space_memory(), .iova = addr & ~0xfffull,
                              .addr_mask = 0xfff };
    if (attrs.has_requester_id && attrs.requester_id == 0x20 && addr < 0x1000) {
        out->translated_addr = RAM + 0x7000;
        out->perm = QS_IOMMU_RW;
    }
}

static const QsIommuOps iommu_ops = { .translate = iommu_translate };

static QsAddressSpace *iommu_for(void *opaque, QsPciBus *bus, int devfn)
{
    return ((Iommu *)opaque)->as;
}

static void test_edu_iommu(void)
{
    Iommu io = { 0 };
    io.mr = qs_memory_region_new_iommu("test-iommu", UINT64_MAX, &iommu_ops, &io);
    QsMemoryRegion *root = qs_memory_region_new_container("iommu-root", UINT64_MAX);
    qs_memory_region_add_subregion(root, 0, io.mr, 0, NULL);
    io.as = qs_address_space_new("edu-dma", root);
    qs_pci_bus_set_iommu(qs_pci_root_bus(), iommu_for, &io);
    GError *err = NULL;
    QsDevice *d = qs_device_create("edu,addr=4,dma_mask=0xffffffffffffffff,id=iommu-edu", &err);
    g_assert_no_error(err);
    qs_pci_bus_set_iommu(qs_pci_root_bus(), NULL, NULL);
    setup_edu(4, 0x40400000);
    uint64_t bar = 0x40400000;
    wr(RAM + 0x7010, 8, 0x1122334455667788ull);
    dma(bar, 0x10, 0x40000, 8, 0x1);
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(io.last_rid, ==, 0x20);   /* bus 0, slot 4, function 0 */
    dma(bar, 0x40000, 0x20, 8, 0x1 | 0x2);
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(RAM + 0x7020, 8), ==, 0x1122334455667788ull);
    /* outside the mapped page: denied by the IOMMU, RAM untouched */
    wr(RAM + 0x8000, 8, 0);
    dma(bar, 0x40000, 0x1000, 8, 0x1 | 0x2);
    qs_clock_step(100 * 1000000);
    g_assert_cmphex(rd(RAM + 0x8000, 8), ==, 0);
    qs_device_destroy(d);
    g_assert_cmphex(rd(cfg_addr(4, 0), 4), ==, 0xffffffff);   /* unplugged */
    qs_address_space_free(io.as);
    qs_memory_region_del_subregion(root, io.mr);
    qs_memory_region_unref(io.mr);
    qs_memory_region_unref(root);
}

static void test_plug_errors(void)
{
    GError *err = NULL;
    g_assert_null(qs_device_create("edu,addr=2", &err));
    g_assert_nonnull(strstr(err->message, "slot 2 function 0 not available"));
    g_clear_error(&err);
    g_assert_null(qs_device_create("edu,addr=zz", &err));
    g_assert_nonnull(strstr(err->message, "'zz'"));
    g_clear_error(&err);
    g_assert_null(qs_device_create("edu,addr=20", &err));   /* slot 0x20 > 0x1f */
    g_clear_error(&err);
    g_assert_null(qs_device_create("edu,dma_mask=lots", &err));
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_evloop_init();
    qs_clock_set_manual(true);
    QsMachineConfig cfg = { .name = "virt", .opts = "", .ram_size = 64 << 20, .smp = 1 };
    GError *err = NULL;
    if (!qs_machine_init(&cfg, &err)) g_error("machine: %s", err->message);
    sys = qs_address_space_memory();
    if (!qs_device_create("edu,addr=2", &err)) g_error("edu: %s", err->message);
    if (!qs_device_create("edu,addr=3,dma_mask=0xffffffffff", &err)) g_error("edu: %s", err->message);
    g_test_add_func("/pci/config-space", test_config_space);
    g_test_add_func("/pci/bar-sizing-mapping", test_bar_sizing_mapping);
    g_test_add_func("/pci/intx", test_intx);
    g_test_add_func("/pci/msi", test_msi);
    g_test_add_func("/pci/edu-registers", test_edu_registers);
    g_test_add_func("/pci/edu-dma", test_edu_dma);
    g_test_add_func("/pci/edu-iommu", test_edu_iommu);
    g_test_add_func("/pci/plug-errors", test_plug_errors);
    return g_test_run();
}
