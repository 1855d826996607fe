/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 guest I/O: L1/L2 mapping (standard and extended L2), reads through backing
 * and compressed clusters, allocating writes with copy-on-write, zero/discard, status. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

ClusterType qcow2_entry_type(Qcow2 *s, uint64_t e)
{
    if (e & QCOW_OFLAG_COMPRESSED) return C_COMPRESSED;
    if (!s->ext_l2 && (e & QCOW_OFLAG_ZERO))
        return (e & L2E_OFFSET_MASK) ? C_ZERO_ALLOC : C_ZERO_PLAIN;
    return (e & L2E_OFFSET_MASK) ? C_NORMAL : C_UNALLOC;
}

int qcow2_write_l1_entry(Qcow2 *s, uint64_t idx)
{
    uint64_t be = GUINT64_TO_BE(s->l1[idx]);
    return qcow2_meta_write(s, s->l1_offset + idx * 8, &be, 8);
}

/* Bad table offsets mean corruption: report and fail the request. */
static int check_table_offset(Qcow2 *s, uint64_t off, const char *what, uint64_t idx)
{
    if ((off & (s->cluster_size - 1)) || off < s->cluster_size) {
        qcow2_signal_corruption(s, "%s offset %#" G_GINT64_MODIFIER "x unaligned or in the "
                                "header (index: %#" G_GINT64_MODIFIER "x)", what, off, idx);
        return -EIO;
    }
    return 0;
}

int qcow2_get_l2(Qcow2 *s, uint64_t off, bool alloc, uint8_t **table, uint64_t *l2_off)
{
    uint64_t i = l1_index(s, off);
    int err = 0;
    *table = NULL;
    *l2_off = 0;
    if (i >= s->l1_size) {
        if (!alloc) return 0;
        int r = qcow2_grow_l1(s, i + 1);
        if (r < 0) return r;
    }
    uint64_t e = s->l1[i], l2 = e & L1E_OFFSET_MASK;
    if (l2) {
        int r = check_table_offset(s, l2, "L2 table", i);
        if (r < 0) return r;
    }
    if (l2 && (!alloc || (e & QCOW_OFLAG_COPIED))) {
        *table = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        *l2_off = l2;
        return *table ? 0 : err;
    }
    if (!alloc) return 0;
    if (l2) {
        uint64_t rc;
        int r = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (r < 0) return r;
        if (rc == 1) {            /* only the flag was missing */
            s->l1[i] = l2 | QCOW_OFLAG_COPIED;
            r = qcow2_write_l1_entry(s, i);
            if (r < 0) return r;
            *table = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
            *l2_off = l2;
            return *table ? 0 : err;
        }
    }
    /* new table: empty, or a copy of the shared one */
    int64_t n = qcow2_alloc_clusters(s, 1);
    if (n < 0) return (int)n;
    g_autofree uint8_t *copy = NULL;
    if (l2) {
        uint8_t *old = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        if (!old) return err;
        copy = g_memdup2(old, s->cluster_size);
    }
    uint8_t *t = qcow2_cache_get(s, &s->l2_cache, (uint64_t)n, true, &err);
    if (!t) return err;
    if (copy) memcpy(t, copy, s->cluster_size);
    int r = qcow2_meta_write(s, (uint64_t)n, t, s->cluster_size);
    if (r < 0) {
        qcow2_cache_drop(&s->l2_cache, (uint64_t)n);
        return r;
    }
    s->l1[i] = (uint64_t)n | QCOW_OFLAG_COPIED;
    qcow2_forget_l2(s, e);
    qcow2_note_l2(s, (uint64_t)n);
    r = qcow2_write_l1_entry(s, i);
    if (r < 0) {
        s->l1[i] = e;
        qcow2_forget_l2(s, (uint64_t)n);
        qcow2_note_l2(s, e);
        return r;
    }
    if (l2) {
        r = qcow2_update_refcount(s, l2, s->cluster_size, -1);
        if (r < 0) return r;
        t = qcow2_cache_get(s, &s->l2_cache, (uint64_t)n, false, &err);
        if (!t) return err;
    }
    *table = t;
    *l2_off = (uint64_t)n;
    return 0;
}

/* Type of the unit (cluster, or subcluster with extended L2) u of entry e/bm. */
static int unit_type(Qcow2 *s, uint64_t e, uint64_t bm, unsigned sc, ClusterType *ty)
{
    if (!s->ext_l2 || (e & QCOW_OFLAG_COMPRESSED)) {
        *ty = qcow2_entry_type(s, e);
        return 0;
    }
    bool a = bm & (1ull << sc), z = bm & (1ull << (32 + sc));
    bool host = (e & L2E_OFFSET_MASK) != 0;
    if (a && z) return -EIO;
    if (a) {
        if (!host) return -EIO;
        *ty = C_NORMAL;
    } else if (z) {
        *ty = host ? C_ZERO_ALLOC : C_ZERO_PLAIN;
    } else {
        *ty = C_UNALLOC;
    }
    return 0;
}

/* Map guest [off, off+len) from its start (lock held): the type, the host offset of
 * off (NORMAL/ZERO_ALLOC) or the entry (COMPRESSED), and how many bytes share them. */
static int map_range(Qcow2 *s, uint64_t off, uint64_t len, ClusterType *type,
                     uint64_t *host, uint64_t *entry, uint64_t *n)
{
    uint64_t cs = s->cluster_size;
    uint64_t l2_span = s->l2_entries << s->cluster_bits;
    uint64_t max = MIN(len, l2_span - (off & (l2_span - 1)));
    uint8_t *t;
    uint64_t l2_off;
    int r = qcow2_get_l2(s, off, false, &t, &l2_off);
    if (r < 0) return r;
    *host = 0;
    *entry = 0;
    if (!t) {
        *type = C_UNALLOC;
        *n = max;
        return 0;
    }
    uint64_t unit = s->ext_l2 ? s->subcluster_size : cs;
    uint64_t idx = l2_index(s, off);
    uint64_t e = l2_get(s, t, idx), bm = l2_get_bitmap(s, t, idx);
    unsigned sc = s->ext_l2 ? (unsigned)((off & (cs - 1)) / unit) : 0;
    ClusterType ty;
    if (unit_type(s, e, bm, sc, &ty) < 0) {
        qcow2_signal_corruption(s, "Invalid cluster entry found (L2 offset: %#"
                                G_GINT64_MODIFIER "x, L2 index: %#" G_GINT64_MODIFIER "x)",
                                l2_off, idx);
        return -EIO;
    }
    *type = ty;
    *entry = e;
    if (ty == C_COMPRESSED) {
        *n = MIN(max, cs - (off & (cs - 1)));
        return 0;
    }
    bool has_host = ty == C_NORMAL || ty == C_ZERO_ALLOC ||
                    (ty == C_UNALLOC && s->ext_l2 && (e & L2E_OFFSET_MASK));
    if (has_host) {
        uint64_t h = e & L2E_OFFSET_MASK;
        if (h & (cs - 1)) {
            qcow2_signal_corruption(s, "Cluster allocation offset %#" G_GINT64_MODIFIER "x "
                                    "unaligned (L2 offset: %#" G_GINT64_MODIFIER "x, L2 index:"
                                    " %#" G_GINT64_MODIFIER "x)", h, l2_off, idx);
            return -EIO;
        }
        *host = h + (off & (cs - 1));
    }
    /* extend over following units of the same kind (and contiguous host offsets) */
    uint64_t done = MIN(max, unit - (off & (unit - 1)));
    uint64_t want_host = *host + done;
    while (done < max) {
        uint64_t g = off + done;
        uint64_t i2 = l2_index(s, g);
        if (ty == C_UNALLOC && !has_host && !(g & (cs - 1))) {
            /* empty entries continue an unallocated run: skipped at memory speed (a
             * hostile disk is mostly tables of them) */
            uint64_t z = qs_zero_prefix(t + i2 * s->l2e_size,
                                        (s->l2_entries - i2) * s->l2e_size) / s->l2e_size;
            if (z) {
                done += MIN(max - done, z * cs);
                continue;
            }
        }
        uint64_t e2 = l2_get(s, t, i2), bm2 = l2_get_bitmap(s, t, i2);
        unsigned sc2 = s->ext_l2 ? (unsigned)((g & (cs - 1)) / unit) : 0;
        ClusterType t2;
        if (unit_type(s, e2, bm2, sc2, &t2) < 0 || t2 != ty) break;
        if (has_host) {
            uint64_t h2 = (e2 & L2E_OFFSET_MASK) + (g & (cs - 1));
            if (!(e2 & L2E_OFFSET_MASK) || h2 != want_host) break;
        } else if (ty == C_UNALLOC && (e2 & L2E_OFFSET_MASK)) {
            break;
        }
        uint64_t step = MIN(max - done, unit);
        done += step;
        want_host += step;
    }
    *n = done;
    return 0;
}

static int read_compressed(Qcow2 *s, uint64_t entry, uint8_t *out)
{
    uint64_t coff = entry & s->cluster_offset_mask;
    uint64_t nb = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t csize = nb * 512 - (coff & 511);
    g_autofree uint8_t *in = g_malloc(csize);
    int r = qs_block_pread(s->bs->file, coff, csize, in);
    if (r < 0) return r;
    r = qcow2_decompress(s, in, csize, out, s->cluster_size);
    if (r < 0) {
        qs_block_message("qcow2: compressed cluster at %#" G_GINT64_MODIFIER "x does not "
                "decompress\n", coff);
    }
    return r;
}

int qcow2_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Qcow2 *s = bs->opaque;
    uint8_t *p = buf;
    while (len) {
        ClusterType ty;
        uint64_t host, entry, n;
        g_mutex_lock(&s->lock);
        int r = map_range(s, off, len, &ty, &host, &entry, &n);
        g_mutex_unlock(&s->lock);
        if (r < 0) return r;
        switch (ty) {
        case C_UNALLOC:
            r = qs_block_read_backing(bs, off, n, p);
            break;
        case C_ZERO_PLAIN:
        case C_ZERO_ALLOC:
            memset(p, 0, n);
            break;
        case C_NORMAL:
            r = qs_block_pread(bs->file, host, n, p);
            break;
        case C_COMPRESSED: {
            g_autofree uint8_t *c = g_malloc(s->cluster_size);
            r = read_compressed(s, entry, c);
            if (r == 0) memcpy(p, c + (off & (s->cluster_size - 1)), n);
            break;
        }
        }
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* ---- in-flight allocations: writers of the same guest clusters wait for each other */

static void inflight_wait_add(Qcow2 *s, uint64_t c0, uint64_t c1)
{
again:
    for (guint i = 0; i < s->inflight->len; i++) {
        InFlight *f = &g_array_index(s->inflight, InFlight, i);
        if (f->start < c1 && c0 < f->end) {
            g_cond_wait(&s->alloc_done, &s->lock);
            goto again;
        }
    }
    InFlight f = { c0, c1 };
    g_array_append_val(s->inflight, f);
}

static void inflight_remove(Qcow2 *s, uint64_t c0)
{
    for (guint i = 0; i < s->inflight->len; i++) {
        if (g_array_index(s->inflight, InFlight, i).start == c0) {
            g_array_remove_index_fast(s->inflight, i);
            break;
        }
    }
    g_cond_broadcast(&s->alloc_done);
}

static bool in_place(Qcow2 *s, uint64_t e, uint64_t bm)
{
    if (qcow2_entry_type(s, e) != C_NORMAL || !(e & QCOW_OFLAG_COPIED)) return false;
    return !s->ext_l2 || bm == 0xffffffffull;
}

/* Write part of [off, off+len) inside one L2 table; returns bytes written or -errno. */
static int64_t write_slice(QsBlock *bs, uint64_t off, uint64_t len, const uint8_t *buf)
{
    Qcow2 *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t l2_span = s->l2_entries << s->cluster_bits;
    len = MIN(len, l2_span - (off & (l2_span - 1)));   /* stay inside one L2 table */
    uint64_t c0 = off >> s->cluster_bits;
    uint64_t c1 = (off + len - 1) >> s->cluster_bits;
    uint64_t max_alloc = MAX(1u, (8u << 20) >> s->cluster_bits);
    g_autofree uint64_t *old = NULL;
    g_mutex_lock(&s->lock);
    inflight_wait_add(s, c0, c1 + 1);
    uint8_t *t;
    uint64_t l2_off;
    int r = qcow2_get_l2(s, off, true, &t, &l2_off);
    if (r < 0) goto fail_locked;
    uint64_t i0 = l2_index(s, off);
    uint64_t e0 = l2_get(s, t, i0);
    if (in_place(s, e0, l2_get_bitmap(s, t, i0))) {
        uint64_t host = (e0 & L2E_OFFSET_MASK) + (off & (cs - 1));
        uint64_t k = 1;
        while (c0 + k <= c1) {
            uint64_t e = l2_get(s, t, i0 + k);
            if (!in_place(s, e, l2_get_bitmap(s, t, i0 + k)) ||
                (e & L2E_OFFSET_MASK) != (e0 & L2E_OFFSET_MASK) + k * cs) break;
            k++;
        }
        if ((e0 & L2E_OFFSET_MASK) & (cs - 1)) {
            r = -EIO;
            goto fail_locked;
        }
        uint64_t n = MIN(len, k * cs - (off & (cs - 1)));
        /* an L2 entry of a corrupt image may name the header or a table */
        r = qcow2_check_data_write(s, host, n);
        if (r < 0) goto fail_locked;
        g_mutex_unlock(&s->lock);
        r = qs_block_pwrite(bs->file, host, n, buf, 0);
        g_mutex_lock(&s->lock);
        inflight_remove(s, c0);
        g_mutex_unlock(&s->lock);
        return r < 0 ? r : (int64_t)n;
    }
    /* allocate a run of clusters that cannot be written in place */
    uint64_t k = 1;
    while (c0 + k <= c1 && k < max_alloc &&
           !in_place(s, l2_get(s, t, i0 + k), l2_get_bitmap(s, t, i0 + k)))
        k++;
    int64_t host = qcow2_alloc_clusters(s, k);
    if (host < 0) {
        r = (int)host;
        goto fail_locked;
    }
    g_mutex_unlock(&s->lock);

    uint64_t head = off & (cs - 1);
    uint64_t n = MIN(len, k * cs - head);
    uint64_t tail = k * cs - head - n;
    if (head || tail) {
        g_autofree uint8_t *w = g_malloc(k * cs);
        r = head ? qcow2_pread(bs, c0 * cs, head, w) : 0;
        if (r == 0 && tail) r = qcow2_pread(bs, off + n, tail, w + head + n);
        memcpy(w + head, buf, n);
        if (r == 0) r = qs_block_pwrite(bs->file, (uint64_t)host, k * cs, w, 0);
    } else {
        r = qs_block_pwrite(bs->file, (uint64_t)host, n, buf, 0);
    }
    g_mutex_lock(&s->lock);
    if (r < 0) goto fail_locked;
    int err = 0;
    t = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &err);
    if (!t) {
        r = err;
        goto fail_locked;
    }
    old = g_new(uint64_t, k);
    for (uint64_t j = 0; j < k; j++) {
        old[j] = l2_get(s, t, i0 + j);
        l2_set(s, t, i0 + j, ((uint64_t)host + j * cs) | QCOW_OFLAG_COPIED,
               s->ext_l2 ? 0xffffffffull : 0);
    }
    r = qcow2_meta_write(s, l2_off + i0 * s->l2e_size, t + i0 * s->l2e_size,
                         k * s->l2e_size);
    if (r < 0) {
        for (uint64_t j = 0; j < k; j++) l2_set(s, t, i0 + j, old[j], 0);
        qcow2_cache_drop(&s->l2_cache, l2_off);
        goto fail_locked;
    }
    for (uint64_t j = 0; j < k && r == 0; j++) r = qcow2_free_entry(s, old[j]);
    inflight_remove(s, c0);
    g_mutex_unlock(&s->lock);
    return r < 0 ? r : (int64_t)n;

fail_locked:
    inflight_remove(s, c0);
    g_mutex_unlock(&s->lock);
    return r;
}

int qcow2_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    const uint8_t *p = buf;
    while (len) {
        int64_t n = write_slice(bs, off, len, p);
        if (n < 0) return (int)n;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* Set full clusters of [off, off+len) to `entry` (0 or the zero flag), freeing what
 * they pointed to.  keep_alloc keeps allocated clusters as zero-with-offset. */
static int set_clusters(QsBlock *bs, uint64_t off, uint64_t len, bool zero, bool keep_alloc,
                        bool skip_unalloc)
{
    Qcow2 *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    while (len) {
        uint64_t l2_span = s->l2_entries * cs;
        uint64_t n = MIN(len, l2_span - (off & (l2_span - 1)));
        uint64_t c0 = off >> s->cluster_bits, k = n >> s->cluster_bits;
        g_mutex_lock(&s->lock);
        inflight_wait_add(s, c0, c0 + k);
        uint8_t *t;
        uint64_t l2_off;
        int r = qcow2_get_l2(s, off, false, &t, &l2_off);
        if (r == 0 && !t && zero && bs->backing)
            r = qcow2_get_l2(s, off, true, &t, &l2_off);
        else if (r == 0 && t && !(s->l1[l1_index(s, off)] & QCOW_OFLAG_COPIED))
            r = qcow2_get_l2(s, off, true, &t, &l2_off);
        if (r < 0 || !t) {
            inflight_remove(s, c0);
            g_mutex_unlock(&s->lock);
            if (r < 0) return r;
            off += n;
            len -= n;
            continue;
        }
        uint64_t i0 = l2_index(s, off);
        g_autofree uint64_t *old = g_new0(uint64_t, k);
        uint64_t lo = k, hi = 0;
        for (uint64_t j = 0; j < k; j++) {
            uint64_t e = l2_get(s, t, i0 + j), bm = l2_get_bitmap(s, t, i0 + j);
            uint64_t ne, nbm = 0;
            ClusterType ty = qcow2_entry_type(s, e);
            if (skip_unalloc && ty == C_UNALLOC && !(s->ext_l2 && bm) && !bs->backing)
                continue;
            if (s->ext_l2) {
                ne = 0;
                nbm = zero ? 0xffffffff00000000ull : 0;
            } else if (zero && keep_alloc && ty == C_NORMAL && (e & QCOW_OFLAG_COPIED)) {
                ne = e | QCOW_OFLAG_ZERO;
            } else {
                ne = zero ? QCOW_OFLAG_ZERO : 0;
            }
            if (ne == e && nbm == bm) continue;
            old[j] = (ne & L2E_OFFSET_MASK) ? 0 : e;
            l2_set(s, t, i0 + j, ne, nbm);
            lo = MIN(lo, j);
            hi = MAX(hi, j + 1);
        }
        if (lo < hi) {
            r = qcow2_meta_write(s, l2_off + (i0 + lo) * s->l2e_size,
                                 t + (i0 + lo) * s->l2e_size, (hi - lo) * s->l2e_size);
            if (r < 0) qcow2_cache_drop(&s->l2_cache, l2_off);
            for (uint64_t j = lo; j < hi && r == 0; j++) r = qcow2_free_entry(s, old[j]);
        }
        inflight_remove(s, c0);
        g_mutex_unlock(&s->lock);
        if (r < 0) return r;
        off += n;
        len -= n;
    }
    return 0;
}

int qcow2_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Qcow2 *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t end = off + len;
    if (s->version < 3 && bs->backing) return -ENOTSUP;
    uint64_t a = align_up(off, cs), b = end == bs->size ? align_up(end, cs) : align_down(end, cs);
    if (a >= b) {
        /* inside at most two clusters: real zeros */
        if (flags & QS_WRITE_NO_FALLBACK) return -ENOTSUP;
        g_autofree uint8_t *z = g_malloc0(len);
        return qcow2_pwrite(bs, off, len, z, 0);
    }
    if (off < a || b < end) {
        if (flags & QS_WRITE_NO_FALLBACK) return -ENOTSUP;
        g_autofree uint8_t *z = g_malloc0(cs);
        if (off < a) {
            int r = qcow2_pwrite(bs, off, a - off, z, 0);
            if (r < 0) return r;
        }
        if (b < end) {
            int r = qcow2_pwrite(bs, b, end - b, z, 0);
            if (r < 0) return r;
        }
    }
    if (a >= b) return 0;
    return set_clusters(bs, a, b - a, s->version >= 3, !(flags & QS_WRITE_MAY_UNMAP), true);
}

int qcow2_pdiscard(QsBlock *bs, uint64_t off, uint64_t len)
{
    Qcow2 *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t end = off + len;
    uint64_t a = align_up(off, cs);
    uint64_t b = end >= bs->size ? align_up(end, cs) : align_down(end, cs);
    if (a >= b) return 0;
    return set_clusters(bs, a, b - a, bs->backing && s->version >= 3, false, true);
}

int qcow2_make_empty(QsBlock *bs)
{
    Qcow2 *s = bs->opaque;
    return set_clusters(bs, 0, align_up(bs->size, s->cluster_size), false, false, false);
}

int qcow2_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       uint64_t *map, QsBlock **file)
{
    Qcow2 *s = bs->opaque;
    ClusterType ty;
    uint64_t host, entry, n;
    g_mutex_lock(&s->lock);
    int r = map_range(s, off, len, &ty, &host, &entry, &n);
    g_mutex_unlock(&s->lock);
    if (r < 0) return r;
    *pnum = n;
    switch (ty) {
    case C_UNALLOC:
        if (s->ext_l2 && (entry & L2E_OFFSET_MASK)) {   /* unallocated subclusters */
            *map = host;
            *file = bs->file;
            return QS_BS_OFFSET_VALID;
        }
        return 0;
    case C_ZERO_PLAIN: return QS_BS_ZERO | QS_BS_ALLOCATED;
    case C_ZERO_ALLOC:
        *map = host;
        *file = bs->file;
        return QS_BS_ZERO | QS_BS_ALLOCATED | QS_BS_OFFSET_VALID;
    case C_COMPRESSED: return QS_BS_DATA | QS_BS_ALLOCATED | QS_BS_COMPRESSED;
    case C_NORMAL: {
        *map = host;
        *file = bs->file;
        int ret = QS_BS_DATA | QS_BS_ALLOCATED | QS_BS_OFFSET_VALID;
        /* as QEMU: in a metadata-preallocated image, a host hole reads as zeros */
        uint64_t fn;
        if (s->meta_prealloc < 0) {
            g_mutex_lock(&s->lock);
            uint64_t last = div_up(bs->file->size, s->cluster_size), rc = 0;
            while (last > 0 && qcow2_get_refcount(s, last - 1, &rc) == 0 && !rc) last--;
            g_mutex_unlock(&s->lock);
            int64_t real = qs_block_allocated_size(bs->file);
            s->meta_prealloc = real >= 0 && last && (uint64_t)real / s->cluster_size < last - 1;
        }
        if (!s->meta_prealloc) {
            /* plain data */
        } else if (host < bs->file->size) {
            int fr = qs_block_status(bs->file, host, n, &fn, NULL, NULL);
            if (fr >= 0 && fn) {
                if (fr & QS_BS_ZERO) ret |= QS_BS_ZERO;
                *pnum = fn;
            }
        } else {
            ret |= QS_BS_ZERO;
        }
        return ret;
    }
    }
    return -EIO;
}

int qcow2_pwrite_compressed(QsBlock *bs, uint64_t off, size_t len, const void *buf)
{
    Qcow2 *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    if ((off & (cs - 1)) || len > cs || (len < cs && off + len != bs->size)) return -EINVAL;
    if (s->ext_l2) return qcow2_pwrite(bs, off, len, buf, 0);
    g_autofree uint8_t *in = g_malloc0(cs);
    memcpy(in, buf, len);
    g_autofree uint8_t *out = g_malloc(cs);
    int clen = qcow2_compress(s, in, cs, out, cs - 1);
    if (clen < 0) return qcow2_pwrite(bs, off, len, buf, 0);   /* does not shrink */
    uint64_t c0 = off >> s->cluster_bits;
    g_mutex_lock(&s->lock);
    inflight_wait_add(s, c0, c0 + 1);
    uint8_t *t;
    uint64_t l2_off;
    int r = qcow2_get_l2(s, off, true, &t, &l2_off);
    int64_t coff = r < 0 ? r : qcow2_alloc_bytes(s, (uint64_t)clen);
    if (coff < 0) {
        inflight_remove(s, c0);
        g_mutex_unlock(&s->lock);
        return (int)coff;
    }
    g_mutex_unlock(&s->lock);
    r = qs_block_pwrite(bs->file, (uint64_t)coff, (size_t)clen, out, 0);
    g_mutex_lock(&s->lock);
    int err = 0;
    if (r == 0) {
        t = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &err);
        if (!t) r = err;
    }
    if (r == 0) {
        uint64_t i = l2_index(s, off);
        uint64_t old = l2_get(s, t, i);
        uint64_t nb = (((uint64_t)coff + (uint64_t)clen - 1) >> 9) - ((uint64_t)coff >> 9);
        uint64_t e = (uint64_t)coff | QCOW_OFLAG_COMPRESSED | (nb << s->csize_shift);
        l2_set(s, t, i, e, 0);
        r = qcow2_meta_write(s, l2_off + i * s->l2e_size, t + i * s->l2e_size, s->l2e_size);
        if (r < 0) {
            l2_set(s, t, i, old, 0);
            qcow2_cache_drop(&s->l2_cache, l2_off);
        } else {
            r = qcow2_free_entry(s, old);
        }
    }
    inflight_remove(s, c0);
    g_mutex_unlock(&s->lock);
    return r;
}

int qcow2_preallocate(Qcow2 *s, uint64_t from, uint64_t to, QsPrealloc p)
{
    QsBlock *bs = s->bs;
    uint64_t cs = s->cluster_size;
    uint64_t off = align_down(from, cs);
    uint64_t host_end = 0;
    int r = 0;
    g_mutex_lock(&s->lock);
    while (off < to) {
        uint64_t l2_span = s->l2_entries * cs;
        uint64_t n = MIN(align_up(to, cs) - off, l2_span - (off & (l2_span - 1)));
        uint8_t *t;
        uint64_t l2_off;
        r = qcow2_get_l2(s, off, true, &t, &l2_off);
        if (r < 0) break;
        uint64_t i0 = l2_index(s, off), k = n / cs;
        uint64_t need = 0;
        for (uint64_t j = 0; j < k; j++)
            if (qcow2_entry_type(s, l2_get(s, t, i0 + j)) == C_UNALLOC) need++;
        if (need) {
            int64_t h = qcow2_alloc_clusters(s, need);
            if (h < 0) { r = (int)h; break; }
            int err = 0;
            t = qcow2_cache_get(s, &s->l2_cache, l2_off, false, &err);
            if (!t) { r = err; break; }
            uint64_t used = 0;
            for (uint64_t j = 0; j < k; j++) {
                if (qcow2_entry_type(s, l2_get(s, t, i0 + j)) != C_UNALLOC) continue;
                l2_set(s, t, i0 + j, ((uint64_t)h + used * cs) | QCOW_OFLAG_COPIED,
                       s->ext_l2 ? 0xffffffffull : 0);
                used++;
            }
            if (p == QS_PREALLOC_FALLOC || p == QS_PREALLOC_FULL) {
                int wf = p == QS_PREALLOC_FULL ? 0 : QS_WRITE_NO_FALLBACK;
                r = qs_block_pwrite_zeroes(bs->file, (uint64_t)h, need * cs, wf);
                if (r == -ENOTSUP) r = qs_block_pwrite_zeroes(bs->file, (uint64_t)h, need * cs, 0);
                if (r < 0) break;
            }
            host_end = MAX(host_end, (uint64_t)h + need * cs);
            r = qcow2_meta_write(s, l2_off + i0 * s->l2e_size, t + i0 * s->l2e_size,
                                 k * s->l2e_size);
            if (r < 0) break;
        }
        off += n;
    }
    g_mutex_unlock(&s->lock);
    if (r == 0 && host_end > bs->file->size) {
        GError *err = NULL;
        if (!qs_block_truncate(bs->file, host_end, false, QS_PREALLOC_OFF, &err)) {
            g_error_free(err);
            r = -EIO;
        }
    }
    return r;
}
