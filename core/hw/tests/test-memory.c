/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Memory API tests: priorities and holes, aliases, MMIO access-size splitting and
 * widening, endianness, IOMMU translation/permissions/notifiers, DMA, concurrent readers. */
#include <string.h>
#include "qs/memory.h"

static QsMemTxAttrs none;

/* ---- a recording MMIO device ---- */

typedef struct Rec {
    uint8_t regs[64];
    GString *log;       /* "r4@0 w2@6 ..." */
} Rec;

static QsMemTxResult rec_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                              QsMemTxAttrs attrs)
{
    Rec *r = opaque;
    g_string_append_printf(r->log, "r%u@%u ", size, (unsigned)addr);
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) v |= (uint64_t)r->regs[addr + i] << (8 * i);
    *val = v;
    return QS_MEMTX_OK;
}

static QsMemTxResult rec_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                               QsMemTxAttrs attrs)
{
    Rec *r = opaque;
    g_string_append_printf(r->log, "w%u@%u ", size, (unsigned)addr);
    for (unsigned i = 0; i < size; i++) r->regs[addr + i] = val >> (8 * i);
    return QS_MEMTX_OK;
}

static Rec *rec_new(void)
{
    Rec *r = g_new0(Rec, 1);
    r->log = g_string_new(NULL);
    for (int i = 0; i < 64; i++) r->regs[i] = i;
    return r;
}

static void rec_free(Rec *r)
{
    g_string_free(r->log, TRUE);
    g_free(r);
}

static uint64_t ld(QsAddressSpace *as, uint64_t addr, unsigned size, QsMemTxResult *res)
{
    uint64_t v = 0;
    QsMemTxResult r = qs_address_space_load(as, addr, size, &v, none);
    if (res) *res = r;
    return v;
}

static void test_ram_priorities_holes(void)
{
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    QsAddressSpace *as = qs_address_space_new("t", root);
    GError *err = NULL;
    QsMemoryRegion *low = qs_memory_region_new_ram("low", 0x2000, &err);
    g_assert_no_error(err);
    QsMemoryRegion *high = qs_memory_region_new_ram("high", 0x1000, &err);
    g_assert_no_error(err);
    memset(qs_memory_region_get_ram_ptr(low), 0x11, 0x2000);
    memset(qs_memory_region_get_ram_ptr(high), 0x22, 0x1000);
    g_assert_cmpint(qs_memory_region_get_fd(low), >=, 0);

    g_assert_true(qs_memory_region_add_subregion(root, 0x10000, low, 0, &err));
    g_assert_true(qs_memory_region_add_subregion(root, 0x10800, high, 1, &err));
    /* high priority wins where they overlap; low shows around it */
    g_assert_cmphex(ld(as, 0x10000, 1, NULL), ==, 0x11);
    g_assert_cmphex(ld(as, 0x10800, 1, NULL), ==, 0x22);
    g_assert_cmphex(ld(as, 0x117ff, 1, NULL), ==, 0x22);
    g_assert_cmphex(ld(as, 0x11800, 1, NULL), ==, 0x11);
    /* an access spanning both regions */
    g_assert_cmphex(ld(as, 0x107fe, 4, NULL), ==, 0x22221111);
    /* lower the priority: low covers the overlap now */
    qs_memory_region_del_subregion(root, high);
    g_assert_true(qs_memory_region_add_subregion(root, 0x10800, high, -1, &err));
    g_assert_cmphex(ld(as, 0x10800, 1, NULL), ==, 0x11);
    qs_memory_region_set_address(high, 0x11800);            /* now it sticks out past low */
    g_assert_cmphex(ld(as, 0x11fff, 1, NULL), ==, 0x11);
    g_assert_cmphex(ld(as, 0x12000, 1, NULL), ==, 0x22);
    /* holes: decode error, reads zero, never a crash */
    QsMemTxResult r;
    g_assert_cmphex(ld(as, 0x5000, 4, &r), ==, 0);
    g_assert_cmpint(r, ==, QS_MEMTX_DECODE_ERROR);
    g_assert_cmpint(qs_address_space_store(as, UINT64_MAX - 1, 8, 1, none), ==,
                    QS_MEMTX_DECODE_ERROR);
    /* a region cannot be mapped twice, nor into a non-container */
    g_assert_false(qs_memory_region_add_subregion(root, 0, high, 0, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_false(qs_memory_region_add_subregion(low, 0, root, 0, &err));
    g_clear_error(&err);
    /* moving and disabling */
    qs_memory_region_set_address(high, 0x20000);
    g_assert_cmphex(ld(as, 0x20000, 1, NULL), ==, 0x22);
    qs_memory_region_set_enabled(high, false);
    ld(as, 0x20000, 1, &r);
    g_assert_cmpint(r, ==, QS_MEMTX_DECODE_ERROR);
    qs_memory_region_set_enabled(high, true);
    /* map_ram gives the host pointer and the contiguous length */
    uint64_t len = 0x10000;
    uint8_t *p = qs_address_space_map_ram(as, 0x20010, &len, false, none);
    g_assert_true(p == (uint8_t *)qs_memory_region_get_ram_ptr(high) + 0x10);
    g_assert_cmphex(len, ==, 0xff0);

    qs_memory_region_unref(low);
    qs_memory_region_unref(high);
    qs_address_space_free(as);
    qs_memory_region_unref(root);
}

static void test_alias(void)
{
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    QsAddressSpace *as = qs_address_space_new("t", root);
    QsMemoryRegion *ram = qs_memory_region_new_ram("ram", 0x4000, NULL);
    uint8_t *host = qs_memory_region_get_ram_ptr(ram);
    for (int i = 0; i < 0x4000; i++) host[i] = i / 0x1000 + 1;
    qs_memory_region_add_subregion(root, 0x100000, ram, 0, NULL);
    /* a window onto the third page of RAM, two pages wide (clipped to what exists) */
    QsMemoryRegion *al = qs_memory_region_new_alias("win", ram, 0x2000, 0x4000);
    qs_memory_region_add_subregion(root, 0x8000, al, 0, NULL);
    g_assert_cmphex(ld(as, 0x8000, 1, NULL), ==, 3);
    g_assert_cmphex(ld(as, 0x9fff, 1, NULL), ==, 4);
    QsMemTxResult r;
    ld(as, 0xa000, 1, &r);   /* past the end of the original */
    g_assert_cmpint(r, ==, QS_MEMTX_DECODE_ERROR);
    /* writes through the alias land in the original */
    qs_address_space_store(as, 0x8004, 4, 0xdeadbeef, none);
    g_assert_cmphex(ld(as, 0x102004, 4, NULL), ==, 0xdeadbeef);
    /* an alias of a container, inside a container */
    QsMemoryRegion *sub = qs_memory_region_new_container("sub", 0x10000);
    QsMemoryRegion *al2 = qs_memory_region_new_alias("win2", root, 0x100000, 0x1000);
    g_assert_true(qs_memory_region_add_subregion(sub, 0x100, al2, 0, NULL));
    g_assert_true(qs_memory_region_add_subregion(root, 0x200000, sub, 0, NULL));
    g_assert_cmphex(ld(as, 0x200100, 1, NULL), ==, 1);
    GString *dump = g_string_new(NULL);
    qs_address_space_dump(as, dump);
    g_assert_nonnull(strstr(dump->str, "0000000000200100-00000000002010ff (ram) ram @0000000000000000"));
    g_string_free(dump, TRUE);

    qs_memory_region_del_subregion(root, sub);
    qs_memory_region_del_subregion(sub, al2);   /* breaks the root <-> alias cycle */
    qs_memory_region_unref(al2);
    qs_memory_region_unref(sub);
    qs_memory_region_unref(al);
    qs_memory_region_unref(ram);
    qs_address_space_free(as);
    qs_memory_region_unref(root);
}

static void test_mmio_sizes(void)
{
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    QsAddressSpace *as = qs_address_space_new("t", root);
    Rec *r = rec_new();
    /* bus accepts 1..8, device implements only 2-byte accesses */
    QsMemOps ops = { .read = rec_read, .write = rec_write, .endianness = QS_ENDIAN_LITTLE,
                     .valid = { 1, 8, false }, .impl = { 2, 2, false } };
    QsMemoryRegion *mr = qs_memory_region_new_io("dev", 64, &ops, r);
    qs_memory_region_add_subregion(root, 0x1000, mr, 0, NULL);

    /* an 8-byte read is split into four 2-byte device reads, assembled little-endian */
    g_assert_cmphex(ld(as, 0x1008, 8, NULL), ==, 0x0f0e0d0c0b0a0908ull);
    g_assert_cmpstr(r->log->str, ==, "r2@8 r2@10 r2@12 r2@14 ");
    g_string_truncate(r->log, 0);
    /* a 1-byte read is widened to the aligned 2-byte unit and the byte extracted */
    g_assert_cmphex(ld(as, 0x1005, 1, NULL), ==, 5);
    g_assert_cmpstr(r->log->str, ==, "r2@4 ");
    g_string_truncate(r->log, 0);
    /* a 1-byte write is read-modify-write of the unit */
    qs_address_space_store(as, 0x1003, 1, 0xaa, none);
    g_assert_cmpstr(r->log->str, ==, "r2@2 w2@2 ");
    g_assert_cmphex(r->regs[2], ==, 2);
    g_assert_cmphex(r->regs[3], ==, 0xaa);
    g_string_truncate(r->log, 0);
    /* an unaligned 4-byte access is cut into aligned accesses the bus allows */
    g_assert_cmphex(ld(as, 0x1011, 4, NULL), ==, 0x14131211);
    g_assert_cmpstr(r->log->str, ==, "r2@16 r2@18 r2@20 ");
    qs_memory_region_del_subregion(root, mr);
    qs_memory_region_unref(mr);

    /* a device that accepts only aligned 4-byte accesses: others fail cleanly */
    QsMemOps strict = { .read = rec_read, .write = rec_write, .valid = { 4, 4, false } };
    mr = qs_memory_region_new_io("strict", 64, &strict, r);
    qs_memory_region_add_subregion(root, 0x2000, mr, 0, NULL);
    g_string_truncate(r->log, 0);
    QsMemTxResult res;
    g_assert_cmphex(ld(as, 0x2000, 2, &res), ==, 0);
    g_assert_cmpint(res, ==, QS_MEMTX_DECODE_ERROR);
    ld(as, 0x2002, 4, &res);
    g_assert_cmpint(res, ==, QS_MEMTX_DECODE_ERROR);
    g_assert_cmpstr(r->log->str, ==, "");   /* the device never saw them */
    g_assert_cmphex(ld(as, 0x2004, 4, &res), ==, 0x07060504);
    g_assert_cmpint(res, ==, QS_MEMTX_OK);
    /* an 8-byte access becomes two 4-byte ones */
    g_assert_cmphex(ld(as, 0x2008, 8, &res), ==, 0x0f0e0d0c0b0a0908ull);
    g_assert_cmpint(res, ==, QS_MEMTX_OK);
    qs_memory_region_del_subregion(root, mr);
    qs_memory_region_unref(mr);
    rec_free(r);
    qs_address_space_free(as);
    qs_memory_region_unref(root);
}

static QsMemTxResult be_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                             QsMemTxAttrs attrs)
{
    *val = size == 4 ? 0x11223344 : size == 2 ? 0x5566 : 0x77;
    return QS_MEMTX_OK;
}

static QsMemTxResult be_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                              QsMemTxAttrs attrs)
{
    *(uint64_t *)opaque = val;
    return QS_MEMTX_OK;
}

static void test_endianness(void)
{
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    QsAddressSpace *as = qs_address_space_new("t", root);
    uint64_t last = 0;
    QsMemOps be = { .read = be_read, .write = be_write, .endianness = QS_ENDIAN_BIG,
                    .valid = { 1, 4, false } };
    QsMemoryRegion *mr = qs_memory_region_new_io("be", 16, &be, &last);
    qs_memory_region_add_subregion(root, 0, mr, 0, NULL);
    /* the device's 0x11223344 is the byte sequence 11 22 33 44 */
    uint8_t b[4];
    qs_address_space_read(as, 0, none, b, 4);
    g_assert_cmphex(b[0], ==, 0x11);
    g_assert_cmphex(b[3], ==, 0x44);
    g_assert_cmphex(ld(as, 0, 4, NULL), ==, 0x44332211);   /* as a little-endian guest sees it */
    qs_address_space_store(as, 0, 4, 0xaabbccdd, none);
    g_assert_cmphex(last, ==, 0xddccbbaa);
    qs_memory_region_del_subregion(root, mr);
    qs_memory_region_unref(mr);

    /* big-endian device implementing 2 bytes, accessed with 4: halves in BE order */
    Rec *r = rec_new();
    QsMemOps be2 = { .read = rec_read, .write = rec_write, .endianness = QS_ENDIAN_BIG,
                     .valid = { 1, 4, false }, .impl = { 2, 2, false } };
    mr = qs_memory_region_new_io("be2", 64, &be2, r);
    qs_memory_region_add_subregion(root, 0, mr, 0, NULL);
    qs_address_space_read(as, 0, none, b, 4);
    /* rec_read at 0 returns 0x0100 (regs LE), at 2 returns 0x0302; BE bytes: 01 00 03 02 */
    g_assert_cmphex(b[0], ==, 0x01);
    g_assert_cmphex(b[1], ==, 0x00);
    g_assert_cmphex(b[2], ==, 0x03);
    g_assert_cmphex(b[3], ==, 0x02);
    qs_memory_region_del_subregion(root, mr);
    qs_memory_region_unref(mr);
    rec_free(r);
    qs_address_space_free(as);
    qs_memory_region_unref(root);
}

/* ---- IOMMU: 4 KiB pages, a table per requester ---- */

typedef struct Iommu {
    QsAddressSpace *target;
    uint16_t rid;             /* only this requester has mappings */
    uint64_t map[16];         /* iova page -> target page + 1 (0: unmapped) */
    QsIommuPerm perm[16];
    int translations;
    QsMemoryRegion *mr;
} Iommu;

static void iommu_translate(void *opaque, uint64_t addr, QsIommuPerm flag,
                            QsMemTxAttrs attrs, QsIommuTlbEntry *out)
{
    Iommu *io = opaque;
    io->translations++;
    uint64_t pg = addr >> 12;
    *out = (QsIommuTlbEntry){ .target_as = io->target, .iova = addr & ~0xfffull,
                              .addr_mask = 0xfff, .perm = QS_IOMMU_NONE };
    if (pg < 16 && io->map[pg] && attrs.has_requester_id && attrs.requester_id == io->rid) {
        out->translated_addr = (io->map[pg] - 1) << 12;
        out->perm = io->perm[pg];
    }
}

static const QsIommuOps iommu_ops = { .translate = iommu_translate };

typedef struct Seen {
    int calls;
    uint64_t iova, mask;
    QsIommuNotifyFlags event;
} Seen;

static void on_notify(void *opaque, const QsIommuTlbEntry *e, QsIommuNotifyFlags event)
{
    Seen *s = opaque;
    s->calls++;
    s->iova = e->iova;
    s->mask = e->addr_mask;
    s->event = event;
}

static void test_iommu(void)
{
    /* memory: RAM at 0x100000; the device's view: an IOMMU over the whole space */
    QsMemoryRegion *mroot = qs_memory_region_new_container("mem", UINT64_MAX);
    QsAddressSpace *mem = qs_address_space_new("memory", mroot);
    QsMemoryRegion *ram = qs_memory_region_new_ram("ram", 0x10000, NULL);
    qs_memory_region_add_subregion(mroot, 0x100000, ram, 0, NULL);
    uint8_t *host = qs_memory_region_get_ram_ptr(ram);

    Iommu io = { .target = mem, .rid = 0x0010 };
    io.mr = qs_memory_region_new_iommu("iommu", UINT64_MAX, &iommu_ops, &io);
    QsMemoryRegion *droot = qs_memory_region_new_container("dev-root", UINT64_MAX);
    qs_memory_region_add_subregion(droot, 0, io.mr, 0, NULL);
    QsAddressSpace *das = qs_address_space_new("dev", droot);
    QsMemTxAttrs dev = { .requester_id = 0x0010, .has_requester_id = true };
    QsMemTxAttrs other = { .requester_id = 0x0018, .has_requester_id = true };

    /* iova pages 0,1 -> RAM pages 0x103, 0x101 (not contiguous); page 2 read-only */
    io.map[0] = 0x103 + 1; io.perm[0] = QS_IOMMU_RW;
    io.map[1] = 0x101 + 1; io.perm[1] = QS_IOMMU_RW;
    io.map[2] = 0x102 + 1; io.perm[2] = QS_IOMMU_RO;

    uint8_t buf[0x2000];
    for (int i = 0; i < 0x2000; i++) buf[i] = i & 0xff;
    g_assert_cmpint(qs_dma_write(das, 0x800, buf, 0x1000, dev), ==, QS_MEMTX_OK);
    /* split at the page boundary, each half translated on its own */
    g_assert_cmpmem(host + 0x3800, 0x800, buf, 0x800);
    g_assert_cmpmem(host + 0x1000, 0x800, buf + 0x800, 0x800);
    g_assert_cmpint(io.translations, ==, 2);

    uint8_t back[0x1000];
    g_assert_cmpint(qs_dma_read(das, 0x800, back, 0x1000, dev), ==, QS_MEMTX_OK);
    g_assert_cmpmem(back, 0x1000, buf, 0x1000);

    /* read-only page: reads pass, writes are denied and change nothing */
    host[0x2000] = 0x5a;
    g_assert_cmpint(qs_dma_read(das, 0x2000, back, 1, dev), ==, QS_MEMTX_OK);
    g_assert_cmphex(back[0], ==, 0x5a);
    g_assert_cmpint(qs_dma_write(das, 0x2000, buf, 1, dev), ==, QS_MEMTX_ACCESS_DENIED);
    g_assert_cmphex(host[0x2000], ==, 0x5a);
    /* unmapped page and wrong requester: denied, reads give zeroes */
    memset(back, 0xee, 16);
    g_assert_cmpint(qs_dma_read(das, 0x5000, back, 16, dev), ==, QS_MEMTX_ACCESS_DENIED);
    g_assert_cmphex(back[0], ==, 0);
    g_assert_cmpint(qs_dma_read(das, 0x0, back, 16, other), ==, QS_MEMTX_ACCESS_DENIED);
    /* DMA stops at the first failing page: page 1 written, page 2 (read-only) not */
    memset(host, 0, 0x10000);
    g_assert_cmpint(qs_dma_write(das, 0x1ff0, buf + 1, 0x20, dev), ==, QS_MEMTX_ACCESS_DENIED);
    g_assert_cmphex(host[0x1ff0], ==, buf[1]);
    g_assert_cmphex(host[0x1fff], ==, buf[0x10]);
    g_assert_cmphex(host[0x2000], ==, 0);
    /* a translation into a hole of the target is a decode error */
    io.map[3] = 0x500 + 1; io.perm[3] = QS_IOMMU_RW;
    g_assert_cmpint(qs_dma_read(das, 0x3000, back, 4, dev), ==, QS_MEMTX_DECODE_ERROR);
    /* map_ram follows the translation */
    uint64_t len = 0x2000;
    uint8_t *p = qs_address_space_map_ram(das, 0x10, &len, true, dev);
    g_assert_true(p == host + 0x3010);
    g_assert_cmphex(len, ==, 0xff0);
    len = 16;
    g_assert_null(qs_address_space_map_ram(das, 0x2000, &len, true, dev));   /* RO page */

    /* notifiers: filtered by range and event, removable */
    Seen a = { 0 }, b = { 0 };
    QsIommuNotifier *na = qs_iommu_notifier_register(io.mr, 0, 0x1fff, QS_IOMMU_NOTIFY_UNMAP,
                                                     on_notify, &a);
    QsIommuNotifier *nb = qs_iommu_notifier_register(io.mr, 0x4000, 0x4fff,
                                                     QS_IOMMU_NOTIFY_UNMAP | QS_IOMMU_NOTIFY_MAP,
                                                     on_notify, &b);
    io.map[1] = 0;
    QsIommuTlbEntry unmap = { .target_as = mem, .iova = 0x1000, .addr_mask = 0xfff,
                              .perm = QS_IOMMU_NONE };
    qs_iommu_notify(io.mr, &unmap, QS_IOMMU_NOTIFY_UNMAP);
    g_assert_cmpint(a.calls, ==, 1);
    g_assert_cmphex(a.iova, ==, 0x1000);
    g_assert_cmphex(a.mask, ==, 0xfff);
    g_assert_cmpint(b.calls, ==, 0);
    QsIommuTlbEntry map4 = { .target_as = mem, .iova = 0x4000, .translated_addr = 0x104000,
                             .addr_mask = 0xfff, .perm = QS_IOMMU_RW };
    qs_iommu_notify(io.mr, &map4, QS_IOMMU_NOTIFY_MAP);
    g_assert_cmpint(a.calls, ==, 1);    /* a wants UNMAP only and another range */
    g_assert_cmpint(b.calls, ==, 1);
    g_assert_cmpint(b.event, ==, QS_IOMMU_NOTIFY_MAP);
    /* a large invalidation (2 MiB) covers both */
    QsIommuTlbEntry big = { .target_as = mem, .iova = 0, .addr_mask = 0x1fffff };
    qs_iommu_notify(io.mr, &big, QS_IOMMU_NOTIFY_UNMAP);
    g_assert_cmpint(a.calls, ==, 2);
    g_assert_cmpint(b.calls, ==, 2);
    qs_iommu_notifier_unregister(io.mr, na);
    qs_iommu_notify(io.mr, &big, QS_IOMMU_NOTIFY_UNMAP);
    g_assert_cmpint(a.calls, ==, 2);
    g_assert_cmpint(b.calls, ==, 3);
    qs_iommu_notifier_unregister(io.mr, nb);
    /* after the unmap, page 1 is gone */
    g_assert_cmpint(qs_dma_read(das, 0x1000, back, 4, dev), ==, QS_MEMTX_ACCESS_DENIED);

    qs_address_space_free(das);
    qs_memory_region_del_subregion(droot, io.mr);
    qs_memory_region_unref(io.mr);
    qs_memory_region_unref(droot);
    qs_memory_region_unref(ram);
    qs_address_space_free(mem);
    qs_memory_region_unref(mroot);
}

/* An IOMMU that maps onto its own address space loops; the depth limit ends it. */
static void loop_translate(void *opaque, uint64_t addr, QsIommuPerm flag, QsMemTxAttrs attrs,
                           QsIommuTlbEntry *out)
{
    *out = (QsIommuTlbEntry){ .target_as = *(QsAddressSpace **)opaque, .iova = addr,
                              .translated_addr = addr, .addr_mask = 0xfff, .perm = QS_IOMMU_RW };
}

static void test_iommu_loop(void)
{
    static const QsIommuOps ops = { .translate = loop_translate };
    QsAddressSpace *self = NULL;
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    QsMemoryRegion *mr = qs_memory_region_new_iommu("loop", UINT64_MAX, &ops, &self);
    qs_memory_region_add_subregion(root, 0, mr, 0, NULL);
    self = qs_address_space_new("loop", root);
    uint8_t b[8];
    g_assert_cmpint(qs_dma_read(self, 0x1000, b, 8, none), ==, QS_MEMTX_DECODE_ERROR);
    qs_address_space_free(self);
    qs_memory_region_del_subregion(root, mr);
    qs_memory_region_unref(mr);
    qs_memory_region_unref(root);
}

/* Readers on several threads while the map changes under them: every read sees either
 * the RAM or nothing, never freed memory (ASan checks the latter). */
typedef struct Race {
    QsAddressSpace *as;
    gint stop;
    gint reads;
} Race;

static gpointer reader(gpointer data)
{
    Race *r = data;
    while (!g_atomic_int_get(&r->stop)) {
        uint64_t v = 0;
        QsMemTxResult res = qs_address_space_load(r->as, 0x1000, 4, &v, none);
        g_assert_true((res == QS_MEMTX_OK && v == 0x01010101) ||
                      (res == QS_MEMTX_DECODE_ERROR && v == 0));
        g_atomic_int_inc(&r->reads);
    }
    return NULL;
}

static void test_concurrent_readers(void)
{
    QsMemoryRegion *root = qs_memory_region_new_container("root", UINT64_MAX);
    Race r = { .as = qs_address_space_new("race", root) };
    QsMemoryRegion *ram = qs_memory_region_new_ram("ram", 0x2000, NULL);
    memset(qs_memory_region_get_ram_ptr(ram), 1, 0x2000);
    GThread *t[3];
    for (int i = 0; i < 3; i++) t[i] = g_thread_new("reader", reader, &r);
    uint64_t gen = qs_memory_topology_generation();
    for (int i = 0; i < 2000; i++) {
        qs_memory_region_add_subregion(root, 0, ram, 0, NULL);
        qs_memory_region_del_subregion(root, ram);
    }
    g_assert_cmpuint(qs_memory_topology_generation(), >=, gen + 4000);
    while (g_atomic_int_get(&r.reads) < 1000) g_usleep(1000);
    g_atomic_int_set(&r.stop, 1);
    for (int i = 0; i < 3; i++) g_thread_join(t[i]);
    qs_memory_region_unref(ram);
    qs_address_space_free(r.as);
    qs_memory_region_unref(root);
}

static void test_ram_errors(void)
{
    GError *err = NULL;
    g_assert_null(qs_memory_region_new_ram("zero", 0, &err));
    g_assert_nonnull(strstr(err->message, "'zero'"));
    g_clear_error(&err);
    g_assert_null(qs_memory_region_new_ram("huge", UINT64_MAX, &err));
    g_assert_nonnull(strstr(err->message, "out of range"));
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/memory/ram-priorities-holes", test_ram_priorities_holes);
    g_test_add_func("/memory/alias", test_alias);
    g_test_add_func("/memory/mmio-sizes", test_mmio_sizes);
    g_test_add_func("/memory/endianness", test_endianness);
    g_test_add_func("/memory/iommu", test_iommu);
    g_test_add_func("/memory/iommu-loop", test_iommu_loop);
    g_test_add_func("/memory/concurrent-readers", test_concurrent_readers);
    g_test_add_func("/memory/ram-errors", test_ram_errors);
    return g_test_run();
}
