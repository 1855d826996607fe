/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small LRU cache of qcow2 metadata tables (L2 tables, refcount blocks), kept in
 * their on-disk byte order.  Write-through: callers write changed bytes themselves. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

#define NIL UINT32_MAX
#define FIRST_CAP 16u

static unsigned slot_hash(const Qcow2Cache *c, uint64_t off)
{
    /* tables are cluster aligned: drop the always-zero bits, then Fibonacci hashing */
    return (unsigned)(((off >> 9) * 0x9e3779b97f4a7c15ull) >> (64 - c->index_bits));
}

static uint32_t index_find(const Qcow2Cache *c, uint64_t off, unsigned *pos)
{
    unsigned mask = (1u << c->index_bits) - 1;
    for (unsigned i = slot_hash(c, off);; i = (i + 1) & mask) {
        uint32_t e = c->index[i];
        if (!e || c->offs[e - 1] == off) {
            *pos = i;
            return e ? e - 1 : NIL;
        }
    }
}

static void index_put(Qcow2Cache *c, uint32_t slot)
{
    unsigned pos;
    index_find(c, c->offs[slot], &pos);
    c->index[pos] = slot + 1;
}

/* Linear probing deletion by backward shift: later entries of the same run that may
 * live in the hole move into it, so that no lookup stops early. */
static void index_remove(Qcow2Cache *c, unsigned hole)
{
    unsigned mask = (1u << c->index_bits) - 1;
    for (unsigned j = hole;;) {
        j = (j + 1) & mask;
        uint32_t e = c->index[j];
        if (!e) break;
        unsigned home = slot_hash(c, c->offs[e - 1]);
        bool stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
        if (stays) continue;
        c->index[hole] = e;
        hole = j;
    }
    c->index[hole] = 0;
}

static void lru_unlink(Qcow2Cache *c, uint32_t i)
{
    if (c->prev[i] != NIL) c->next[c->prev[i]] = c->next[i]; else c->mru = c->next[i];
    if (c->next[i] != NIL) c->prev[c->next[i]] = c->prev[i]; else c->lru = c->prev[i];
}

static void lru_push(Qcow2Cache *c, uint32_t i)
{
    c->prev[i] = NIL;
    c->next[i] = c->mru;
    if (c->mru != NIL) c->prev[c->mru] = i; else c->lru = i;
    c->mru = i;
}

static void free_push(Qcow2Cache *c, uint32_t i)
{
    g_free(c->bufs[i]);
    c->bufs[i] = NULL;
    c->next[i] = c->free_slot;
    c->free_slot = i;
}

/* Double the slots (up to n) and rebuild the index at twice their number.  The
 * per-slot arrays and the index share one allocation (five made every open of a small
 * image cost ten allocations, a tenth of its malloc calls under ASan). */
static void grow(Qcow2Cache *c)
{
    unsigned old = c->cap, cap = old ? MIN(old * 2, c->n) : MIN(FIRST_CAP, c->n);
    unsigned bits = 1;
    while ((1u << bits) < 2 * cap) bits++;
    uint8_t *mem = g_malloc((size_t)cap * (sizeof(uint64_t) + sizeof(uint8_t *) +
                                           2 * sizeof(uint32_t)) +
                            ((size_t)4 << bits));
    uint64_t *offs = (uint64_t *)mem;
    uint8_t **bufs = (uint8_t **)(offs + cap);
    uint32_t *prev = (uint32_t *)(bufs + cap), *next = prev + cap, *index = next + cap;
    if (old) {
        memcpy(offs, c->offs, old * sizeof(*offs));
        memcpy(bufs, c->bufs, old * sizeof(*bufs));
        memcpy(prev, c->prev, old * sizeof(*prev));
        memcpy(next, c->next, old * sizeof(*next));
    }
    g_free(c->offs);   /* the start of the old allocation */
    c->offs = offs;
    c->bufs = bufs;
    c->prev = prev;
    c->next = next;
    c->index = index;
    for (unsigned i = cap; i-- > old;) {
        c->bufs[i] = NULL;
        c->next[i] = c->free_slot;
        c->free_slot = i;
    }
    c->cap = cap;
    c->index_bits = bits;
    memset(c->index, 0, (size_t)4 << bits);
    for (unsigned i = 0; i < old; i++)
        if (c->bufs[i]) index_put(c, i);
}

void qcow2_cache_init(Qcow2Cache *c, unsigned n, size_t size)
{
    memset(c, 0, sizeof(*c));
    c->n = MAX(n, 1u);
    c->size = size;
    c->mru = c->lru = c->free_slot = NIL;
}

void qcow2_cache_destroy(Qcow2Cache *c)
{
    for (unsigned i = 0; i < c->cap; i++) g_free(c->bufs[i]);
    g_free(c->offs);   /* every array (grow) */
    memset(c, 0, sizeof(*c));
}

uint8_t *qcow2_cache_get(Qcow2 *s, Qcow2Cache *c, uint64_t off, bool fresh, int *err)
{
    unsigned pos = 0;
    uint32_t i = c->cap ? index_find(c, off, &pos) : NIL;
    if (i != NIL) {
        if (c->mru != i) {
            lru_unlink(c, i);
            lru_push(c, i);
        }
        if (fresh) memset(c->bufs[i], 0, c->size);
        return c->bufs[i];
    }
    if (c->free_slot == NIL && c->cap < c->n) grow(c);
    if (c->free_slot != NIL) {
        i = c->free_slot;
        c->free_slot = c->next[i];
        c->bufs[i] = g_malloc(c->size);
    } else {
        i = c->lru;                     /* full: reuse the least recently used table */
        lru_unlink(c, i);
        index_find(c, c->offs[i], &pos);
        index_remove(c, pos);
    }
    c->offs[i] = off;
    if (fresh) {
        memset(c->bufs[i], 0, c->size);
    } else {
        int r = qcow2_meta_read(s, off, c->bufs[i], c->size);
        if (r < 0) {
            free_push(c, i);
            *err = r;
            return NULL;
        }
    }
    index_put(c, i);
    lru_push(c, i);
    return c->bufs[i];
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t off)
{
    if (!c->cap) return;
    unsigned pos;
    uint32_t i = index_find(c, off, &pos);
    if (i == NIL) return;
    index_remove(c, pos);
    lru_unlink(c, i);
    free_push(c, i);
}

void qcow2_cache_clear(Qcow2Cache *c)
{
    unsigned n = c->n;
    size_t size = c->size;
    qcow2_cache_destroy(c);
    qcow2_cache_init(c, n, size);
}
