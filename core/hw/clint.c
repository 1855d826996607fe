/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CLINT as on QEMU's virt machine: msip per hart at 0x0, mtimecmp at 0x4000, mtime at
 * 0xbff8, counting at 10 MHz from the virtual clock; timer and software interrupt out. */
#include "hw-internal.h"
#include "qs/evloop.h"

enum { MSIP_BASE = 0x0, MTIMECMP_BASE = 0x4000, MTIME = 0xbff8, NS_PER_TICK = 100 };

typedef struct Hart {
    Clint *c;
    unsigned id;
    uint64_t mtimecmp;
    QsTimer *timer;
} Hart;

struct Clint {
    char *path;
    unsigned n;
    Hart *harts;
    QsIrq **msip_out;
    QsIrq **mtip_out;
    uint32_t *msip;
    int64_t tick_offset;       /* mtime = virtual_ns / 100 + tick_offset */
    QsMemoryRegion *mmio;
};

static uint64_t mtime(Clint *c)
{
    return (uint64_t)(qs_clock_get_ns(QS_CLOCK_VIRTUAL) / NS_PER_TICK + c->tick_offset);
}

/* Raise or lower MTIP and arm the timer for the moment mtime reaches mtimecmp. */
static void update_timer(Hart *h)
{
    Clint *c = h->c;
    uint64_t now = mtime(c);
    if (now >= h->mtimecmp) {
        qs_timer_del(h->timer);
        qs_irq_raise(c->mtip_out[h->id]);
        return;
    }
    qs_irq_lower(c->mtip_out[h->id]);
    uint64_t ticks = h->mtimecmp - (uint64_t)c->tick_offset;   /* in virtual-clock ticks */
    if (ticks > (uint64_t)(INT64_MAX / NS_PER_TICK)) {
        qs_timer_del(h->timer);   /* beyond the end of time */
        return;
    }
    qs_timer_mod(h->timer, (int64_t)ticks * NS_PER_TICK);
}

static void timer_cb(void *opaque)
{
    Hart *h = opaque;
    qs_bql_lock();
    update_timer(h);
    qs_bql_unlock();
}

static QsMemTxResult clint_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                                QsMemTxAttrs attrs)
{
    Clint *c = opaque;
    uint64_t v = 0, base = addr & ~7ull;
    unsigned shift = (addr & 4) * 8;
    if (addr < MSIP_BASE + 4ull * c->n) {
        v = size == 4 && !(addr & 3) ? c->msip[addr / 4] : 0;
        *val = v;
        return QS_MEMTX_OK;
    }
    if (addr >= MTIMECMP_BASE && base < MTIMECMP_BASE + 8ull * c->n) {
        v = c->harts[(base - MTIMECMP_BASE) / 8].mtimecmp;
    } else if (base == MTIME) {
        v = mtime(c);
    }
    *val = size == 8 ? v : (uint32_t)(v >> shift);
    return QS_MEMTX_OK;
}

static QsMemTxResult clint_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                                 QsMemTxAttrs attrs)
{
    Clint *c = opaque;
    uint64_t base = addr & ~7ull;
    unsigned shift = (addr & 4) * 8;
    uint64_t mask = size == 8 ? UINT64_MAX : (uint64_t)UINT32_MAX << shift;
    uint64_t v = size == 8 ? val : (val & UINT32_MAX) << shift;
    if (addr < MSIP_BASE + 4ull * c->n) {
        if (size != 4) return QS_MEMTX_OK;
        unsigned h = addr / 4;
        c->msip[h] = val & 1;
        qs_irq_set(c->msip_out[h], c->msip[h]);
    } else if (addr >= MTIMECMP_BASE && base < MTIMECMP_BASE + 8ull * c->n) {
        Hart *h = &c->harts[(base - MTIMECMP_BASE) / 8];
        h->mtimecmp = (h->mtimecmp & ~mask) | v;
        update_timer(h);
    } else if (base == MTIME) {
        uint64_t now = mtime(c);
        uint64_t want = (now & ~mask) | v;
        c->tick_offset += (int64_t)(want - now);
        for (unsigned i = 0; i < c->n; i++) update_timer(&c->harts[i]);
    }
    return QS_MEMTX_OK;
}

static const QsMemOps clint_ops = {
    .read = clint_read,
    .write = clint_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 4, .max = 8 },
    .impl = { .min = 4, .max = 8 },
};

/* mtime keeps counting across a reset, as in QEMU. */
void qs_clint_reset(Clint *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        c->msip[i] = 0;
        qs_irq_lower(c->msip_out[i]);
        c->harts[i].mtimecmp = UINT64_MAX;
        update_timer(&c->harts[i]);
    }
}

Clint *qs_clint_new(const char *path, unsigned nharts, QsMemoryRegion **mmio)
{
    Clint *c = g_new0(Clint, 1);
    c->path = g_strdup(path);
    c->n = nharts;
    c->harts = g_new0(Hart, nharts);
    c->msip_out = g_new0(QsIrq *, nharts);
    c->mtip_out = g_new0(QsIrq *, nharts);
    c->msip = g_new0(uint32_t, nharts);
    for (unsigned i = 0; i < nharts; i++) {
        c->harts[i].c = c;
        c->harts[i].id = i;
        c->harts[i].mtimecmp = UINT64_MAX;
        c->harts[i].timer = qs_timer_new(qs_loop_main(), QS_CLOCK_VIRTUAL, "clint-mtimecmp",
                                         timer_cb, &c->harts[i]);
    }
    qs_gpio_add_out(path, "msip", c->msip_out, nharts);
    qs_gpio_add_out(path, "mtip", c->mtip_out, nharts);
    c->mmio = qs_memory_region_new_io("riscv.aclint", 0x10000, &clint_ops, c);
    *mmio = c->mmio;
    return c;
}

void qs_clint_free(Clint *c)
{
    if (!c) return;
    qs_gpio_remove(c->path);
    for (unsigned i = 0; i < c->n; i++) qs_timer_free(c->harts[i].timer);
    qs_memory_region_unref(c->mmio);
    g_free(c->harts);
    g_free(c->msip_out);
    g_free(c->mtip_out);
    g_free(c->msip);
    g_free(c->path);
    g_free(c);
}
