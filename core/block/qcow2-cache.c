/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A small LRU cache of qcow2 metadata tables (L2 tables, refcount blocks), kept in
 * their on-disk byte order.  Write-through: callers write changed bytes themselves. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

void qcow2_cache_init(Qcow2Cache *c, unsigned n, size_t size)
{
    c->n = n;
    c->size = size;
    c->offs = g_new0(uint64_t, n);
    c->bufs = g_new0(uint8_t *, n);
    c->used = g_new0(uint64_t, n);
    c->tick = 0;
}

void qcow2_cache_destroy(Qcow2Cache *c)
{
    for (unsigned i = 0; i < c->n; i++) g_free(c->bufs[i]);
    g_free(c->offs);
    g_free(c->bufs);
    g_free(c->used);
    memset(c, 0, sizeof(*c));
}

uint8_t *qcow2_cache_get(Qcow2 *s, Qcow2Cache *c, uint64_t off, bool fresh, int *err)
{
    int empty = -1;
    unsigned lru = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->bufs[i] && c->offs[i] == off) {
            c->used[i] = ++c->tick;
            if (fresh) memset(c->bufs[i], 0, c->size);
            return c->bufs[i];
        }
        if (!c->bufs[i]) {
            if (empty < 0) empty = (int)i;
        } else if (!c->bufs[lru] || c->used[i] < c->used[lru]) {
            lru = i;
        }
    }
    unsigned victim = empty >= 0 ? (unsigned)empty : lru;
    if (!c->bufs[victim]) c->bufs[victim] = g_malloc(c->size);
    c->offs[victim] = off;
    if (fresh) {
        memset(c->bufs[victim], 0, c->size);
    } else {
        int r = qcow2_meta_read(s, off, c->bufs[victim], c->size);
        if (r < 0) {
            g_free(c->bufs[victim]);
            c->bufs[victim] = NULL;
            *err = r;
            return NULL;
        }
    }
    c->used[victim] = ++c->tick;
    return c->bufs[victim];
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t off)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->bufs[i] && c->offs[i] == off) {
            g_free(c->bufs[i]);
            c->bufs[i] = NULL;
        }
    }
}

void qcow2_cache_clear(Qcow2Cache *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        g_free(c->bufs[i]);
        c->bufs[i] = NULL;
    }
}
