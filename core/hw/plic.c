/* SPDX-License-Identifier: GPL-2.0-or-later */
/* SiFive PLIC as on QEMU's virt machine: source priorities, pending bits, per-context
 * enables, thresholds and claim/complete; level-triggered inputs, one output per context. */
#include <string.h>
#include "hw-internal.h"

enum {
    PRIORITY_BASE = 0x0, PENDING_BASE = 0x1000, ENABLE_BASE = 0x2000, ENABLE_STRIDE = 0x80,
    CONTEXT_BASE = 0x200000, CONTEXT_STRIDE = 0x1000, PRIORITY_MASK = 7,
    MAX_SOURCES = 1024,
};

struct Plic {
    char *path;
    unsigned nsrc, nctx;
    uint32_t *priority;        /* [nsrc] */
    uint32_t *pending;         /* bitmap, nsrc bits */
    uint32_t *claimed;         /* bitmap */
    uint32_t *level;           /* bitmap: input line levels */
    uint32_t *enable;          /* [nctx][words] */
    uint32_t *threshold;       /* [nctx] */
    unsigned words;
    QsIrq **in;
    QsIrq **out;               /* [nctx] slots */
    QsMemoryRegion *mmio;
};

static bool bit(const uint32_t *map, unsigned i) { return map[i / 32] >> (i % 32) & 1; }
static void set_bit(uint32_t *map, unsigned i, bool v)
{
    if (v) map[i / 32] |= 1u << (i % 32);
    else map[i / 32] &= ~(1u << (i % 32));
}

/* The best source context ctx may claim: highest priority above its threshold, lowest
 * number among equals; 0 if none. */
static unsigned best_source(Plic *p, unsigned ctx)
{
    unsigned best = 0, best_prio = p->threshold[ctx];
    const uint32_t *en = p->enable + ctx * p->words;
    for (unsigned s = 1; s < p->nsrc; s++) {
        if (bit(p->pending, s) && !bit(p->claimed, s) && bit(en, s) &&
            p->priority[s] > best_prio) {
            best = s;
            best_prio = p->priority[s];
        }
    }
    return best;
}

static void update(Plic *p)
{
    for (unsigned c = 0; c < p->nctx; c++) qs_irq_set(p->out[c], best_source(p, c) != 0);
}

static void plic_input(void *opaque, int n, int level)
{
    Plic *p = opaque;
    if (n <= 0 || (unsigned)n >= p->nsrc) return;
    qs_bql_lock();
    set_bit(p->level, n, level > 0);
    if (level > 0) set_bit(p->pending, n, true);
    update(p);
    qs_bql_unlock();
}

static QsMemTxResult plic_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                               QsMemTxAttrs attrs)
{
    Plic *p = opaque;
    uint32_t v = 0;
    if (addr < PENDING_BASE) {
        unsigned s = (addr - PRIORITY_BASE) / 4;
        if (s < p->nsrc) v = p->priority[s];
    } else if (addr < ENABLE_BASE) {
        unsigned w = (addr - PENDING_BASE) / 4;
        if (w < p->words) v = p->pending[w];
    } else if (addr < CONTEXT_BASE) {
        unsigned ctx = (addr - ENABLE_BASE) / ENABLE_STRIDE;
        unsigned w = ((addr - ENABLE_BASE) % ENABLE_STRIDE) / 4;
        if (ctx < p->nctx && w < p->words) v = p->enable[ctx * p->words + w];
    } else {
        unsigned ctx = (addr - CONTEXT_BASE) / CONTEXT_STRIDE;
        unsigned reg = (addr - CONTEXT_BASE) % CONTEXT_STRIDE;
        if (ctx < p->nctx && reg == 0) {
            v = p->threshold[ctx];
        } else if (ctx < p->nctx && reg == 4) {
            v = best_source(p, ctx);   /* claim */
            if (v) {
                set_bit(p->pending, v, false);
                set_bit(p->claimed, v, true);
                update(p);
            }
        }
    }
    *val = v;
    return QS_MEMTX_OK;
}

static QsMemTxResult plic_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                                QsMemTxAttrs attrs)
{
    Plic *p = opaque;
    uint32_t v = val;
    if (addr < PENDING_BASE) {
        unsigned s = (addr - PRIORITY_BASE) / 4;
        if (s > 0 && s < p->nsrc) p->priority[s] = v & PRIORITY_MASK;
    } else if (addr < ENABLE_BASE) {
        /* pending bits are read-only */
    } else if (addr < CONTEXT_BASE) {
        unsigned ctx = (addr - ENABLE_BASE) / ENABLE_STRIDE;
        unsigned w = ((addr - ENABLE_BASE) % ENABLE_STRIDE) / 4;
        if (ctx < p->nctx && w < p->words) {
            if (w == 0) v &= ~1u;   /* source 0 does not exist */
            p->enable[ctx * p->words + w] = v;
        }
    } else {
        unsigned ctx = (addr - CONTEXT_BASE) / CONTEXT_STRIDE;
        unsigned reg = (addr - CONTEXT_BASE) % CONTEXT_STRIDE;
        if (ctx < p->nctx && reg == 0) {
            p->threshold[ctx] = v & PRIORITY_MASK;
        } else if (ctx < p->nctx && reg == 4 && v > 0 && v < p->nsrc &&
                   bit(p->enable + ctx * p->words, v) && bit(p->claimed, v)) {
            set_bit(p->claimed, v, false);        /* complete */
            if (bit(p->level, v)) set_bit(p->pending, v, true);   /* still asserted */
        }
    }
    update(p);
    return QS_MEMTX_OK;
}

static const QsMemOps plic_ops = {
    .read = plic_read,
    .write = plic_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 4, .max = 4 },
};

void qs_plic_reset(Plic *p)
{
    memset(p->priority, 0, p->nsrc * sizeof(uint32_t));
    memset(p->pending, 0, p->words * sizeof(uint32_t));
    memset(p->claimed, 0, p->words * sizeof(uint32_t));
    memset(p->enable, 0, p->nctx * p->words * sizeof(uint32_t));
    memset(p->threshold, 0, p->nctx * sizeof(uint32_t));
    for (unsigned s = 1; s < p->nsrc; s++) {
        if (bit(p->level, s)) set_bit(p->pending, s, true);
    }
    update(p);
}

Plic *qs_plic_new(const char *path, unsigned nsources, unsigned nharts,
                  QsMemoryRegion **mmio)
{
    g_assert(nsources > 1 && nsources <= MAX_SOURCES);
    Plic *p = g_new0(Plic, 1);
    p->path = g_strdup(path);
    p->nsrc = nsources;
    p->nctx = 2 * nharts;
    p->words = (nsources + 31) / 32;
    p->priority = g_new0(uint32_t, nsources);
    p->pending = g_new0(uint32_t, p->words);
    p->claimed = g_new0(uint32_t, p->words);
    p->level = g_new0(uint32_t, p->words);
    p->enable = g_new0(uint32_t, p->nctx * p->words);
    p->threshold = g_new0(uint32_t, p->nctx);
    p->in = g_new0(QsIrq *, nsources);
    for (unsigned s = 0; s < nsources; s++) p->in[s] = qs_irq_new(plic_input, p, s);
    p->out = g_new0(QsIrq *, p->nctx);
    qs_gpio_add_in(path, NULL, p->in, nsources);
    qs_gpio_add_out(path, NULL, p->out, p->nctx);
    p->mmio = qs_memory_region_new_io("riscv.sifive.plic", 0x600000, &plic_ops, p);
    *mmio = p->mmio;
    return p;
}

QsIrq *qs_plic_input(Plic *p, unsigned source)
{
    return source < p->nsrc ? p->in[source] : NULL;
}

void qs_plic_free(Plic *p)
{
    if (!p) return;
    qs_gpio_remove(p->path);
    for (unsigned s = 0; s < p->nsrc; s++) qs_irq_free(p->in[s]);
    qs_memory_region_unref(p->mmio);
    g_free(p->in);
    g_free(p->out);
    g_free(p->priority);
    g_free(p->pending);
    g_free(p->claimed);
    g_free(p->level);
    g_free(p->enable);
    g_free(p->threshold);
    g_free(p->path);
    g_free(p);
}
