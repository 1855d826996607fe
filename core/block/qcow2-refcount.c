/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 reference counts: entries of 1..64 bits, refcount blocks created on demand,
 * refcount table growth, cluster and byte allocation, and check/repair. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

/* ---- entries ---- */

static uint64_t rb_get(Qcow2 *s, const uint8_t *b, uint64_t i)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        uint32_t bits = 1u << s->refcount_order, per = 8 / bits;
        return (b[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
    }
    case 3: return b[i];
    case 4: return be16_at(b + 2 * i);
    case 5: return be32_at(b + 4 * i);
    default: return be64_at(b + 8 * i);
    }
}

static void rb_set(Qcow2 *s, uint8_t *b, uint64_t i, uint64_t v)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        uint32_t bits = 1u << s->refcount_order, per = 8 / bits;
        uint32_t shift = (uint32_t)(i % per) * bits, mask = ((1u << bits) - 1) << shift;
        b[i / per] = (uint8_t)((b[i / per] & ~mask) | ((uint32_t)v << shift));
        break;
    }
    case 3: b[i] = (uint8_t)v; break;
    case 4: put_be16(b + 2 * i, (uint16_t)v); break;
    case 5: put_be32(b + 4 * i, (uint32_t)v); break;
    default: put_be64(b + 8 * i, v); break;
    }
}

void qcow2_rb_set(Qcow2 *s, uint8_t *b, uint64_t i, uint64_t v)
{
    rb_set(s, b, i, v);
}

/* Byte range [*lo, *hi) of the block that holds entries [first, last]. */
static void rb_bytes(Qcow2 *s, uint64_t first, uint64_t last, uint64_t *lo, uint64_t *hi)
{
    if (s->refcount_order < 3) {
        uint32_t per = 8 >> s->refcount_order;
        *lo = first / per;
        *hi = last / per + 1;
    } else {
        uint32_t w = 1u << (s->refcount_order - 3);
        *lo = first * w;
        *hi = (last + 1) * w;
    }
}

int qcow2_refcount_init(Qcow2 *s)
{
    unsigned n = (unsigned)CLAMP((4u << 20) / s->cluster_size, 8u, 1024u);
    qcow2_cache_init(&s->rb_cache, n, s->cluster_size);
    return 0;
}

/* The refcount block for table index idx, or NULL (none); negative errno if the table
 * entry is bad. */
static int load_block(Qcow2 *s, uint64_t idx, uint8_t **blk, uint64_t *blk_off)
{
    *blk = NULL;
    if (idx >= s->reftable_entries) return 0;
    uint64_t off = s->reftable[idx] & REFT_OFFSET_MASK;
    if (!off) return 0;
    if (off & (s->cluster_size - 1)) {
        qcow2_signal_corruption(s, "Refblock offset %#" G_GINT64_MODIFIER "x unaligned "
                                "(reftable index: %#" G_GINT64_MODIFIER "x)", off, idx);
        return -EIO;
    }
    int err = 0;
    *blk = qcow2_cache_get(s, &s->rb_cache, off, false, &err);
    if (blk_off) *blk_off = off;
    return *blk ? 0 : err;
}

/* Move the refcount of cluster c by diff, down or up: a 64-bit refcount can be further
 * from the right count than one int64_t addend reaches (2^63 needs two steps). */
static int adjust(Qcow2 *s, uint64_t c, uint64_t diff, bool down)
{
    while (diff) {
        uint64_t step = MIN(diff, (uint64_t)INT64_MAX);
        int r = qcow2_update_refcount(s, c << s->cluster_bits, 1,
                                      down ? -(int64_t)step : (int64_t)step);
        if (r < 0) return r;
        diff -= step;
    }
    return 0;
}

/* How many of a refcount block's entries are in use: one past the last non-zero one (or
 * a little more for sub-byte refcounts).  Word by word from the end: a memcmp per cluster
 * made the walk past the end of the file quadratic in the block's size. */
static uint64_t block_used(Qcow2 *s, const uint8_t *b)
{
    size_t n = s->cluster_size;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b + n - 8, 8);
        if (w) break;
        n -= 8;
    }
    while (n && !b[n - 1]) n--;
    return ((uint64_t)n * 8 + (1u << s->refcount_order) - 1) >> s->refcount_order;
}

int qcow2_get_refcount(Qcow2 *s, uint64_t cluster, uint64_t *rc)
{
    uint8_t *b;
    *rc = 0;
    int r = load_block(s, cluster >> s->rb_bits, &b, NULL);
    if (r < 0) return r;
    if (b) *rc = rb_get(s, b, cluster & ((1ull << s->rb_bits) - 1));
    return 0;
}

static uint64_t file_clusters(Qcow2 *s)
{
    return div_up(s->bs->file->size, s->cluster_size);
}

static int write_header_reftable(Qcow2 *s)
{
    uint8_t buf[12];
    put_be64(buf, s->reftable_offset);
    put_be32(buf + 8, s->reftable_clusters);
    return qcow2_meta_write(s, 48, buf, sizeof(buf));
}

/* The overlap index learns (or, when a growth fails, forgets) the refcount blocks of
 * indices lo..hi that the current table s->reftable has and the old one did not: only
 * those, as rebuilding the index would walk both tables on every growth. */
static void index_new_blocks(Qcow2 *s, const uint64_t *old, uint64_t old_entries,
                             uint64_t lo, uint64_t hi, bool add)
{
    for (uint64_t j = lo; j <= hi && j < s->reftable_entries; j++) {
        if ((j < old_entries && old[j]) || !s->reftable[j]) continue;
        if (add) qcow2_note_refblock(s, s->reftable[j]);
        else qcow2_forget_refblock(s, s->reftable[j]);
    }
}

/* Move the refcount table to the end of the image, big enough for index need. New
 * refcount blocks that the moved table and they themselves need are placed beside it
 * and describe themselves.  Order: blocks, table, header switch, free the old table. */
static int grow_reftable(Qcow2 *s, uint64_t need)
{
    uint64_t cs = s->cluster_size, E = 1ull << s->rb_bits, per_cl = cs / 8;
    uint64_t A = MAX(file_clusters(s), s->alloc_end);
    uint64_t nt = MAX((uint64_t)s->reftable_clusters * 2, div_up((need + 1) * 8, cs));
    uint64_t k = 0;
    for (int iter = 0; iter < 64; iter++) {
        uint64_t last = (A + k + nt - 1) / E;
        uint64_t nk = 0;
        for (uint64_t j = A / E; j <= last; j++) {
            if (j >= s->reftable_entries || !s->reftable[j]) nk++;
        }
        uint64_t nnt = MAX(nt, div_up((MAX(need, last) + 1), per_cl));
        if (nk == k && nnt == nt) break;
        k = nk;
        nt = nnt;
    }
    if (nt * cs > QCOW2_MAX_REFTABLE_BYTES * 8ull || (A + k + nt) * cs >> 56) return -EFBIG;
    uint64_t entries = nt * per_cl;
    uint64_t *tbl = g_new0(uint64_t, entries);
    memcpy(tbl, s->reftable, s->reftable_entries * 8);
    uint64_t end = A + k + nt;
    uint64_t pos = A;
    int r = 0;
    g_autofree uint8_t *blk = g_malloc(cs);
    g_autofree uint64_t *be = NULL;
    for (uint64_t j = A / E; j <= (end - 1) / E; j++) {
        if (j < s->reftable_entries && s->reftable[j]) continue;
        memset(blk, 0, cs);
        for (uint64_t c = MAX(A, j * E); c < MIN(end, (j + 1) * E); c++) rb_set(s, blk, c - j * E, 1);
        tbl[j] = pos * cs;
        r = qcow2_meta_write(s, pos * cs, blk, cs);
        if (r < 0) goto out;
        pos++;
    }
    g_assert(pos == A + k);
    s->alloc_end = MAX(s->alloc_end, end);
    uint64_t tbl_off = pos * cs;
    be = g_new(uint64_t, entries);
    for (uint64_t i = 0; i < entries; i++) be[i] = GUINT64_TO_BE(tbl[i]);
    r = qcow2_meta_write(s, tbl_off, be, entries * 8);
    if (r < 0) goto out;
    /* clusters of the new area whose blocks already existed */
    uint64_t *old = s->reftable;
    uint64_t old_entries = s->reftable_entries, old_off = s->reftable_offset;
    uint32_t old_clusters = s->reftable_clusters;
    s->reftable = tbl;
    s->reftable_entries = entries;
    tbl = NULL;
    index_new_blocks(s, old, old_entries, A / E, (end - 1) / E, true);
    for (uint64_t c = A; c < end; c++) {
        uint64_t j = c / E;
        if (j < old_entries && old[j]) {
            r = qcow2_update_refcount(s, c * cs, cs, 1);
            if (r < 0) break;
        }
    }
    if (r < 0) {
        index_new_blocks(s, old, old_entries, A / E, (end - 1) / E, false);
        g_free(s->reftable);
        s->reftable = old;
        s->reftable_entries = old_entries;
        goto out;
    }
    s->reftable_offset = tbl_off;
    s->reftable_clusters = (uint32_t)nt;
    r = write_header_reftable(s);
    if (r < 0) {
        index_new_blocks(s, old, old_entries, A / E, (end - 1) / E, false);
        g_free(s->reftable);
        s->reftable = old;
        s->reftable_entries = old_entries;
        s->reftable_offset = old_off;
        s->reftable_clusters = old_clusters;
        goto out;
    }
    g_free(old);
    if (s->free_cluster_index >= A) s->free_cluster_index = end;
    r = qcow2_update_refcount(s, old_off, (uint64_t)old_clusters * cs, -1);
out:
    g_free(tbl);
    return r;
}

/* The first cluster from free_cluster_index whose refcount reads 0.  The clusters
 * before it are in use, so the hint moves up to it: repairs of a corrupt image call
 * this once per cluster, and rescanning a long used range each time took seconds. */
static int first_free(Qcow2 *s, uint64_t *out)
{
    for (uint64_t c = s->free_cluster_index;; c++) {
        if ((c << s->cluster_bits) >> 56) return -EFBIG;
        uint64_t rc;
        int r = qcow2_get_refcount(s, c, &rc);
        if (r < 0) return r;
        if (!rc) {
            *out = c;
            s->free_cluster_index = c;
            return 0;
        }
    }
}

static bool has_block(Qcow2 *s, uint64_t idx)
{
    return idx < s->reftable_entries && s->reftable[idx];
}

/* Make sure refcount block idx exists.  As QEMU does, a new block goes at the first
 * free cluster: in its own range it describes itself, elsewhere the block of that
 * range counts it (counted first: a crash leaks it).  Placing every new block at the
 * first cluster of its range instead left no run of free clusters as long as a block's
 * range: an allocation of that many clusters (a 64-cluster L1 table with 64-bit
 * refcounts in 512-byte clusters) never succeeded. */
static int ensure_block(Qcow2 *s, uint64_t idx)
{
    if (has_block(s, idx)) return 0;
    if (idx >= s->reftable_entries) {
        int r = grow_reftable(s, idx);
        if (r < 0) return r;
        if (has_block(s, idx)) return 0;
    }
    uint64_t cs = s->cluster_size, E = 1ull << s->rb_bits;
    uint64_t c = 0;
    int r = first_free(s, &c);
    /* the range of the free cluster needs its block first (itself self-describing) */
    for (int i = 0; r == 0 && c / E != idx && !has_block(s, c / E); i++) {
        if (i == 8) return -EIO;
        r = ensure_block(s, c / E);
        if (r == 0) r = first_free(s, &c);
    }
    if (r < 0) return r;
    bool self = c / E == idx;
    /* cluster c reads as free, but in a corrupt image it may be the header or a table */
    int err = qcow2_check_data_write(s, c * cs, cs);
    if (err < 0) return err;
    if (!self && (r = qcow2_update_refcount(s, c * cs, cs, 1)) < 0) return r;
    uint8_t *b = qcow2_cache_get(s, &s->rb_cache, c * cs, true, &err);
    if (!b) return err;
    if (self) rb_set(s, b, c - idx * E, 1);
    r = qcow2_meta_write(s, c * cs, b, cs);
    if (r < 0) {
        qcow2_cache_drop(&s->rb_cache, c * cs);
        return r;
    }
    s->reftable[idx] = c * cs;
    qcow2_note_refblock(s, c * cs);
    uint64_t be = GUINT64_TO_BE(c * cs);
    r = qcow2_meta_write(s, s->reftable_offset + idx * 8, &be, 8);
    if (r < 0) {
        s->reftable[idx] = 0;
        qcow2_forget_refblock(s, c * cs);
        return r;
    }
    if (s->free_cluster_index == c) s->free_cluster_index = c + 1;
    if (c >= s->alloc_end) s->alloc_end = c + 1;
    return 0;
}

/* Refcounts of clusters lo_c..hi_c, entries of block b (index idx), moved by addend in
 * memory; on one that would leave 0..refcount_max nothing is changed and -EIO (below
 * zero: corruption) or -ERANGE is returned. */
static int block_add(Qcow2 *s, uint8_t *b, uint64_t idx, uint64_t lo_c, uint64_t hi_c,
                     int64_t addend)
{
    uint64_t E = 1ull << s->rb_bits;
    /* |addend| as unsigned: -INT64_MIN does not fit in int64_t */
    uint64_t mag = addend < 0 ? 0 - (uint64_t)addend : (uint64_t)addend;
    for (uint64_t c = lo_c; c <= hi_c; c++) {
        uint64_t v = rb_get(s, b, c - idx * E);
        if ((addend < 0 && v < mag) || (addend > 0 && s->refcount_max - v < mag)) {
            /* undo what this block got so far, then report */
            for (uint64_t u = lo_c; u < c; u++)
                rb_set(s, b, u - idx * E, rb_get(s, b, u - idx * E) - (uint64_t)addend);
            /* below zero is corruption; above the width's maximum only a limit
             * (refcount_bits=1 cannot count a snapshot's second reference) */
            if (addend < 0)
                qcow2_signal_corruption(s, "Refcount of cluster %#" G_GINT64_MODIFIER
                                        "x would go from %" G_GUINT64_FORMAT " below 0",
                                        c << s->cluster_bits, v);
            return addend < 0 ? -EIO : -ERANGE;
        }
        uint64_t nv = v + (uint64_t)addend;
        rb_set(s, b, c - idx * E, nv);
        if (nv && c >= s->alloc_end) s->alloc_end = c + 1;
        if (nv == 0) {
            if (c < s->free_cluster_index) s->free_cluster_index = c;
            if (s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) == c)
                s->free_byte_offset = 0;
            qcow2_cache_drop(&s->l2_cache, c << s->cluster_bits);
        }
    }
    return 0;
}

/* Writes the entries of clusters lo_c..hi_c of block b (index idx, at boff). */
static int block_write(Qcow2 *s, const uint8_t *b, uint64_t idx, uint64_t boff,
                       uint64_t lo_c, uint64_t hi_c)
{
    uint64_t E = 1ull << s->rb_bits, lo, hi;
    rb_bytes(s, lo_c - idx * E, hi_c - idx * E, &lo, &hi);
    return qcow2_meta_write(s, boff + lo, b + lo, hi - lo);
}

int qcow2_update_refcount(Qcow2 *s, uint64_t off, uint64_t len, int64_t addend)
{
    if (!len || !addend) return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    uint64_t E = 1ull << s->rb_bits;
    for (uint64_t idx = first / E; idx <= last / E; idx++) {
        if (addend > 0) {
            int r = ensure_block(s, idx);
            if (r < 0) return r;
        }
        uint8_t *b;
        uint64_t boff = 0;
        int r = load_block(s, idx, &b, &boff);
        if (r < 0) return r;
        uint64_t lo_c = MAX(first, idx * E), hi_c = MIN(last, idx * E + E - 1);
        if (!b) {
            qcow2_signal_corruption(s, "Freeing cluster %#" G_GINT64_MODIFIER "x without "
                                    "a refcount block", lo_c << s->cluster_bits);
            return -EIO;
        }
        r = block_add(s, b, idx, lo_c, hi_c, addend);
        if (r == 0) r = block_write(s, b, idx, boff, lo_c, hi_c);
        if (r < 0) return r;
    }
    return 0;
}

int64_t qcow2_alloc_clusters(Qcow2 *s, uint64_t n)
{
    uint64_t E = 1ull << s->rb_bits;
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t c = s->free_cluster_index, start = 0, run = 0, lowest_free = UINT64_MAX;
        while (run < n) {
            uint64_t rc;
            int r = qcow2_get_refcount(s, c, &rc);
            if (r < 0) return r;
            if (rc == 0) {
                if (lowest_free == UINT64_MAX) lowest_free = c;
                if (!run) start = c;
                run++;
            } else {
                run = 0;
            }
            c++;
            if ((c << s->cluster_bits) >> 56) return -EFBIG;
        }
        /* clusters without a refcount read as free: in a corrupt image they may be
         * the header or a table */
        int r = qcow2_check_data_write(s, start << s->cluster_bits, n << s->cluster_bits);
        if (r < 0) return r;
        /* missing refcount blocks go after the run, as QEMU places them (its search
         * has moved past the run when it needs one) */
        bool made = false;
        uint64_t saved = s->free_cluster_index;
        s->free_cluster_index = start + n;
        for (uint64_t idx = start / E; r == 0 && idx <= (start + n - 1) / E; idx++) {
            if (has_block(s, idx)) continue;
            r = ensure_block(s, idx);
            made = true;
        }
        s->free_cluster_index = saved;
        if (r < 0) return r;
        if (made) continue;   /* count the run again with its blocks in place */
        r = qcow2_update_refcount(s, start << s->cluster_bits, n << s->cluster_bits, 1);
        if (r < 0) return r;
        s->free_cluster_index = lowest_free == start ? start + n : lowest_free;
        return (int64_t)(start << s->cluster_bits);
    }
    return -EIO;
}

int64_t qcow2_alloc_bytes(Qcow2 *s, uint64_t len)
{
    uint64_t cs = s->cluster_size;
    uint64_t fbo = s->free_byte_offset;
    if (fbo && (fbo & (cs - 1)) && (fbo & (cs - 1)) + len <= cs) {
        int r = qcow2_update_refcount(s, fbo, 1, 1);
        if (r < 0) return r;
        s->free_byte_offset = fbo + len;
        return (int64_t)fbo;
    }
    int64_t off = qcow2_alloc_clusters(s, div_up(len, cs));
    if (off < 0) return off;
    s->free_byte_offset = (uint64_t)off + len;
    return off;
}

void qcow2_compressed_range(Qcow2 *s, uint64_t entry, uint64_t *off, uint64_t *len)
{
    uint64_t coff = entry & s->cluster_offset_mask;
    uint64_t nb = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    *off = coff & ~511ull;
    *len = nb * 512;
}

int qcow2_free_entry(Qcow2 *s, uint64_t e)
{
    switch (qcow2_entry_type(s, e)) {
    case C_NORMAL:
    case C_ZERO_ALLOC:
        return qcow2_update_refcount(s, e & L2E_OFFSET_MASK, s->cluster_size, -1);
    case C_COMPRESSED: {
        uint64_t off, len;
        qcow2_compressed_range(s, e, &off, &len);
        return qcow2_update_refcount(s, off, len, -1);
    }
    default:
        return 0;
    }
}

uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order)
{
    uint64_t per_block = cluster_size * 8 >> refcount_order;
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t blocks = 0, table = 0, total = 0, prev;
    do {
        prev = total;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table_cluster);
        total = clusters + blocks + table;
    } while (total != prev);
    return (blocks + table) * cluster_size;
}

/* ---- check and repair ---- */

typedef struct Check {
    Qcow2 *s;
    QsBlockCheckResult *res;
    uint32_t *refs;
    uint64_t nb;            /* clusters the refs array covers */
    uint64_t next_contig;   /* for fragmentation stats */
    uint64_t messages;      /* lines check wanted to print */
    /* the L2 table check_l2 read last, kept: L1 entries often name the same table
     * (hostile ones thousands of times), and nothing is written while counting */
    uint8_t *l2;
    uint64_t l2_off;
    int64_t l2_got;         /* its bytes; -1: none kept */
} Check;

/* A hostile image can make check find millions of bad entries (an L1 table whose
 * entries all name one L2 table of bad entries): the counts stay exact, but only the
 * first CHECK_MAX_MESSAGES lines are printed, then how many were not. */
#define CHECK_MAX_MESSAGES 10000
#define CK_PRINT(ck, ...) do { \
        if ((ck)->messages++ < CHECK_MAX_MESSAGES) qs_block_message(__VA_ARGS__); \
    } while (0)

#define CHECK_MAX_CLUSTERS (1ull << 28)

static void inc_refs(Check *ck, uint64_t off, uint64_t len)
{
    Qcow2 *s = ck->s;
    if (!len) return;
    /* As QEMU: the last cluster may be partly past the end of the file, nothing more.
     * (Counting further out made a stray L2 entry cost an array and a compare walk of
     * up to 65536 clusters per check.) */
    uint64_t file_len = s->bs->file->size;
    if (len > UINT64_MAX - off || off + len >= file_len + s->cluster_size) {
        CK_PRINT(ck, "ERROR: counting reference for region exceeding the end of the "
                "file by one cluster or more: offset %#" G_GINT64_MODIFIER "x size %#"
                G_GINT64_MODIFIER "x\n", off, len);
        ck->res->corruptions++;
        return;
    }
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    if (last >= ck->nb) {   /* the partial cluster past the end */
        uint64_t nnb = last + 1;
        ck->refs = g_renew(uint32_t, ck->refs, nnb);
        memset(ck->refs + ck->nb, 0, (nnb - ck->nb) * 4);
        ck->nb = nnb;
    }
    for (uint64_t c = first; c <= last; c++) {
        if (ck->refs[c] != UINT32_MAX) ck->refs[c]++;
    }
}

/* Reads a table of len bytes (entries of `entry` bytes) at off as far as the file holds
 * it: the rest reads as zeros, empty entries, so it is neither read nor walked (a
 * hostile L1 size made check zero-fill and walk megabytes past the end of the file).
 * Returns the bytes read, whole entries, or -errno; *buf holds them. */
static int64_t read_table_in_file(Qcow2 *s, uint64_t off, size_t len, size_t entry,
                                  uint8_t **buf)
{
    size_t in = qcow2_in_file(s, off, len);
    size_t n = MIN(len, (in + entry - 1) / entry * entry);   /* a last entry cut by the end */
    *buf = g_malloc(MAX(n, 1));
    memset(*buf + in, 0, n - in);   /* its bytes past the end read as zeros */
    /* a table the block layer cannot address fails as reading all of it would */
    int64_t got = qcow2_read_zeroed(s, off, *buf, len);
    return got < 0 ? got : (int64_t)n;
}

/* How many entries from i (of n) of L2 table t are empty, at least 1 (entry i, whose
 * offset field is zero, though an extended entry's bitmap may not be). */
static uint64_t zero_entries(Qcow2 *s, const uint8_t *t, uint64_t i, uint64_t n)
{
    uint64_t z = qs_zero_prefix(t + i * s->l2e_size, (n - i) * s->l2e_size) / s->l2e_size;
    return MAX(z, 1);
}

static int check_l2(Check *ck, uint64_t l2_off, bool active)
{
    Qcow2 *s = ck->s;
    int64_t got = ck->l2_got;
    if (got < 0 || ck->l2_off != l2_off) {
        g_free(ck->l2);
        got = read_table_in_file(s, l2_off, s->cluster_size, s->l2e_size, &ck->l2);
        ck->l2_off = l2_off;
        ck->l2_got = got < 0 ? -1 : got;    /* a failed read is tried again */
    }
    const uint8_t *t = ck->l2;
    if (got < 0) {
        CK_PRINT(ck, "ERROR: I/O error in check_refcounts_l2\n");
        ck->res->check_errors++;
        return 0;
    }
    uint64_t entries = (uint64_t)got / s->l2e_size;
    for (uint64_t i = 0; i < entries; i++) {
        uint64_t e = l2_get(s, t, i);
        if (!e) {   /* unallocated: nothing to count (most of a small image) */
            i += zero_entries(s, t, i, entries) - 1;
            continue;
        }
        ClusterType ty = qcow2_entry_type(s, e);
        if (ty == C_COMPRESSED) {
            if (e & QCOW_OFLAG_COPIED) {
                CK_PRINT(ck, "ERROR: coffset=%#" G_GINT64_MODIFIER "x: Cluster cannot "
                        "be marked as copied\n", e & s->cluster_offset_mask);
                ck->res->corruptions++;
            }
            if (s->ext_l2 && l2_get_bitmap(s, t, i)) {
                CK_PRINT(ck, "ERROR compressed cluster %" G_GUINT64_FORMAT " with non-zero "
                        "subcluster allocation bitmap, entry=%#" G_GINT64_MODIFIER "x\n", i, e);
                ck->res->corruptions++;
            }
            uint64_t off, len;
            qcow2_compressed_range(s, e, &off, &len);
            inc_refs(ck, off, len);
            if (active) {
                ck->res->allocated_clusters++;
                ck->res->compressed_clusters++;
                ck->next_contig = 0;
            }
        } else if (ty == C_NORMAL || ty == C_ZERO_ALLOC) {
            uint64_t off = e & L2E_OFFSET_MASK;
            if (off & (s->cluster_size - 1)) {
                CK_PRINT(ck, "ERROR offset=%" G_GINT64_MODIFIER "x: Cluster is not properly "
                        "aligned; L2 entry corrupted.\n", off);
                ck->res->corruptions++;
                continue;
            }
            if (active) {
                ck->res->allocated_clusters++;
                if (ck->next_contig && off != ck->next_contig) ck->res->fragmented_clusters++;
                ck->next_contig = off + s->cluster_size;
            }
            inc_refs(ck, off, s->cluster_size);
        }
    }
    return 0;
}

static int check_l1(Check *ck, uint64_t l1_off, uint32_t l1_size, bool active)
{
    Qcow2 *s = ck->s;
    if (!l1_size) return 0;
    inc_refs(ck, l1_off, (uint64_t)l1_size * 8);
    g_autofree uint8_t *l1 = NULL;
    int64_t got = read_table_in_file(s, l1_off, (size_t)l1_size * 8, 8, &l1);
    if (got < 0) {
        CK_PRINT(ck, "ERROR: I/O error in check_refcounts_l1\n");
        ck->res->check_errors++;
        return 0;
    }
    for (uint32_t i = 0; i < (uint64_t)got / 8; i++) {
        uint64_t e = be64_at(l1 + 8 * i);
        uint64_t l2 = e & L1E_OFFSET_MASK;
        if (!l2) continue;
        if (l2 & (s->cluster_size - 1)) {
            CK_PRINT(ck, "ERROR l2_offset=%" G_GINT64_MODIFIER "x: Table is not cluster "
                    "aligned; L1 entry corrupted\n", l2);
            ck->res->corruptions++;
            continue;
        }
        inc_refs(ck, l2, s->cluster_size);
        check_l2(ck, l2, active);
    }
    return 0;
}

static void check_bitmaps(Check *ck)
{
    Qcow2 *s = ck->s;
    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) || !s->nb_bitmaps) return;
    if (s->bitmap_dir_size > (64u << 20)) return;
    inc_refs(ck, s->bitmap_dir_offset, s->bitmap_dir_size);
    g_autofree uint8_t *dir = g_malloc(s->bitmap_dir_size);
    if (qcow2_meta_read(s, s->bitmap_dir_offset, dir, s->bitmap_dir_size) < 0) return;
    uint64_t p = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (p + 24 > s->bitmap_dir_size) break;
        uint64_t toff = be64_at(dir + p);
        uint32_t tsize = be32_at(dir + p + 8);
        uint16_t name = be16_at(dir + p + 18);
        uint32_t extra = be32_at(dir + p + 20);
        if (tsize <= (1u << 20) && toff && !(toff & 511)) {
            inc_refs(ck, toff, (uint64_t)tsize * 8);
            g_autofree uint8_t *tab = g_malloc((size_t)tsize * 8 + 1);
            if (qcow2_meta_read(s, toff, tab, (size_t)tsize * 8) == 0) {
                for (uint32_t j = 0; j < tsize; j++) {
                    uint64_t d = be64_at(tab + 8 * j) & L2E_OFFSET_MASK;
                    if (d) inc_refs(ck, d, s->cluster_size);
                }
            }
        }
        p = align_up(p + 24 + (uint64_t)extra + name, 8);
    }
}

static void check_copied(Check *ck, int fix)
{
    Qcow2 *s = ck->s;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = s->l1[i], l2 = e & L1E_OFFSET_MASK;
        if (!l2 || (l2 & (s->cluster_size - 1))) continue;
        uint64_t rc;
        if (qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc) < 0) continue;
        if ((rc == 1) != !!(e & QCOW_OFLAG_COPIED)) {
            CK_PRINT(ck, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%"
                    G_GINT64_MODIFIER "x refcount=%" G_GUINT64_FORMAT "\n",
                    fix & QS_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", i, e, rc);
            if (fix & QS_CHECK_FIX_ERRORS) {
                s->l1[i] = rc == 1 ? e | QCOW_OFLAG_COPIED : e & ~QCOW_OFLAG_COPIED;
                if (qcow2_write_l1_entry(s, i) == 0) ck->res->corruptions_fixed++;
                else ck->res->corruptions++;
            } else {
                ck->res->corruptions++;
            }
        }
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        if (!t) continue;
        bool l2_owned = rc == 1;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t x = l2_get(s, t, j);
            if (!x) {
                j += zero_entries(s, t, j, s->l2_entries) - 1;
                continue;
            }
            ClusterType ty = qcow2_entry_type(s, x);
            if (ty != C_NORMAL && ty != C_ZERO_ALLOC) continue;
            uint64_t d = x & L2E_OFFSET_MASK;
            if (d & (s->cluster_size - 1)) continue;
            uint64_t drc;
            if (qcow2_get_refcount(s, d >> s->cluster_bits, &drc) < 0) continue;
            if ((drc == 1) != !!(x & QCOW_OFLAG_COPIED)) {
                bool repair = (fix & QS_CHECK_FIX_ERRORS) && l2_owned;
                CK_PRINT(ck, "%s OFLAG_COPIED data cluster: l2_entry=%" G_GINT64_MODIFIER
                        "x refcount=%" G_GUINT64_FORMAT "\n", repair ? "Repairing" : "ERROR",
                        x, drc);
                if (repair) {
                    x = drc == 1 ? x | QCOW_OFLAG_COPIED : x & ~QCOW_OFLAG_COPIED;
                    l2_set(s, t, j, x, l2_get_bitmap(s, t, j));
                    if (qcow2_meta_write(s, l2 + j * s->l2e_size, t + j * s->l2e_size, 8) == 0)
                        ck->res->corruptions_fixed++;
                    else
                        ck->res->corruptions++;
                } else {
                    ck->res->corruptions++;
                }
            }
        }
    }
}

/* How many clusters from c (below end) no reference was counted for, at least 1 (c's). */
static uint64_t unreferenced(const Check *ck, uint64_t c, uint64_t end)
{
    if (c >= ck->nb) return end - c;
    uint64_t upto = MIN(end, ck->nb);
    uint64_t z = qs_zero_prefix(ck->refs + c, (upto - c) * sizeof(*ck->refs)) / sizeof(*ck->refs);
    return MAX(z, 1);
}

/* Leaks repaired in one refcount block, written at once: lowered in memory as they are
 * found (a write per leaked cluster was most of `check -r all` on an image of
 * thousands), written when the walk leaves the block or repairs something else.
 * Lowering a refcount changes no other cluster's, so the clusters after the first
 * compare as they would after each write.  Where the one write is refused (the block
 * overlaps other metadata), each entry is written alone, as before: those clear of the
 * overlap are still repaired. */
typedef struct LeakRepairs {
    uint64_t idx;                /* the block */
    GArray *clusters;            /* lowered in memory, not yet written */
} LeakRepairs;

/* Cluster c's refcount, in block b (index idx), lowered by diff in memory. */
static void lower_leak(Check *ck, LeakRepairs *lr, uint8_t *b, uint64_t idx, uint64_t c,
                       uint64_t diff)
{
    if (block_add(ck->s, b, idx, c, c, -(int64_t)diff) < 0) {
        ck->res->leaks++;
        return;
    }
    if (!lr->clusters) lr->clusters = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    lr->idx = idx;
    g_array_append_val(lr->clusters, c);
}

static void write_leak_repairs(Check *ck, LeakRepairs *lr)
{
    Qcow2 *s = ck->s;
    if (!lr->clusters || !lr->clusters->len) return;
    const uint64_t *c = (const uint64_t *)(void *)lr->clusters->data;
    guint n = lr->clusters->len;
    uint8_t *b;
    uint64_t boff = 0;
    /* held by the cache since lowered */
    bool held = load_block(s, lr->idx, &b, &boff) == 0 && b;
    if (held && block_write(s, b, lr->idx, boff, c[0], c[n - 1]) == 0) {
        ck->res->leaks_fixed += n;
    } else {
        for (guint i = 0; i < n; i++) {
            if (held && block_write(s, b, lr->idx, boff, c[i], c[i]) == 0)
                ck->res->leaks_fixed++;
            else
                ck->res->leaks++;
        }
    }
    g_array_set_size(lr->clusters, 0);
}

/* Compares the refcounts stored with the references counted (ck->refs), reports each
 * difference and, as fix allows, repairs it; returns the end of the highest cluster in
 * use or referenced, in clusters. */
static uint64_t compare_refcounts(Check *ck, int fix)
{
    Qcow2 *s = ck->s;
    uint64_t E = 1ull << s->rb_bits, bits = 1u << s->refcount_order;
    uint64_t limit = ck->nb;
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        if ((s->reftable[i] & REFT_OFFSET_MASK) && !(s->reftable[i] & 511))
            limit = MAX(limit, (i + 1) * E);
    }
    /* Refcounts past the end of the file: only a bounded tail, as inc_refs counts (a few
     * refcount table entries could otherwise make this walk 2^28 clusters). */
    limit = MIN(limit, MIN(CHECK_MAX_CLUSTERS, MAX(ck->nb, file_clusters(s)) + (1u << 16)));
    uint64_t highest = 0;
    /* the refcount block of cluster c is looked up once per block, not per cluster;
     * a repair may move or evict it, so it is looked up again after one */
    uint64_t blk_idx = UINT64_MAX, blk_used = UINT64_MAX;   /* UINT64_MAX: not yet known */
    uint8_t *blk = NULL;
    int blk_err = 0;
    /* refcounts in blk, and references, known to be zero from the cluster at hand up
     * to these */
    uint64_t blk_zero_end = 0, refs_zero_end = 0;
    LeakRepairs leaks = { 0, NULL };
    for (uint64_t c = 0; c < limit; c++) {
        uint64_t ref = c < ck->nb ? ck->refs[c] : 0;
        if (ref) highest = c + 1;
        uint64_t idx = c >> s->rb_bits, blk_end = MIN(limit, (idx + 1) * E);
        if (ref == 0 && (idx >= s->reftable_entries || !(s->reftable[idx] & REFT_OFFSET_MASK))) {
            /* nothing in this block: skip it, or up to the next reference in it */
            c = c >= ck->nb ? blk_end - 1 : c + unreferenced(ck, c, blk_end) - 1;
            continue;
        }
        if (idx != blk_idx) {
            if (idx != leaks.idx) write_leak_repairs(ck, &leaks);
            blk_err = load_block(s, idx, &blk, NULL);
            if (blk_err < 0) {
                CK_PRINT(ck, "Can't get refcount for cluster %" G_GUINT64_FORMAT ": %s\n", c,
                        g_strerror(EIO));
                ck->res->check_errors++;
            }
            blk_idx = idx;
            blk_used = UINT64_MAX;
            blk_zero_end = 0;
        }
        if (blk_err < 0) {
            /* no refcounts to compare in this block (reported once): to its end, its
             * last reference still counts for the highest cluster in use */
            for (uint64_t k = MIN(blk_end, ck->nb); k > c; k--) {
                if (ck->refs[k - 1]) {
                    highest = k;
                    break;
                }
            }
            c = blk_end - 1;
            continue;
        }
        if (c >= ck->nb && blk && blk_used == UINT64_MAX) blk_used = block_used(s, blk);
        if (c >= ck->nb && (!blk || (c & (E - 1)) >= blk_used)) {
            c = blk_end - 1;                        /* unreferenced, and no refcount left */
            continue;
        }
        uint64_t j = c & (E - 1);
        if (ref == 0 && blk && j * bits % 8 == 0) {
            /* unreferenced and refcount 0 (a sparse image's usual run): to the end of
             * the run of both, at memory speed (refcounts narrower than a byte: from
             * a byte's first one, whole zero bytes).  Each run's end is found once:
             * scanning both from every cluster was quadratic where one run is long and
             * the other broken often. */
            if (blk_zero_end <= c)
                blk_zero_end = c + qs_zero_prefix(blk + j * bits / 8, (E - j) * bits / 8) * 8 / bits;
            if (blk_zero_end > c) {
                if (refs_zero_end <= c) refs_zero_end = c + unreferenced(ck, c, blk_end);
                c = MIN(MIN(blk_zero_end, refs_zero_end), blk_end) - 1;
                continue;
            }
        }
        uint64_t rc = blk ? rb_get(s, blk, j) : 0;
        if (rc) highest = MAX(highest, c + 1);
        if (rc == ref) continue;
        bool leak = rc > ref;
        bool repair = fix & (leak ? QS_CHECK_FIX_LEAKS : QS_CHECK_FIX_ERRORS);
        CK_PRINT(ck, "%s cluster %" G_GUINT64_FORMAT " refcount=%" G_GUINT64_FORMAT
                " reference=%" G_GUINT64_FORMAT "\n",
                repair ? "Repairing" : leak ? "Leaked" : "ERROR", c, rc, ref);
        if (repair && leak && rc - ref <= INT64_MAX) {
            lower_leak(ck, &leaks, blk, idx, c, rc - ref);
            continue;
        }
        if (repair) {
            write_leak_repairs(ck, &leaks);
            blk_idx = UINT64_MAX;
        }
        if (repair && ref <= s->refcount_max && adjust(s, c, leak ? rc - ref : ref - rc, leak) == 0) {
            if (leak) ck->res->leaks_fixed++;
            else ck->res->corruptions_fixed++;
        } else if (leak) {
            ck->res->leaks++;
        } else {
            ck->res->corruptions++;
        }
    }
    write_leak_repairs(ck, &leaks);
    if (leaks.clusters) g_array_free(leaks.clusters, TRUE);
    return highest;
}

bool qcow2_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    Qcow2 *s = bs->opaque;
    if (fix && !(bs->flags & QS_BLOCK_RDWR)) fix = 0;
    g_mutex_lock(&s->lock);
    Check ck = { .s = s, .res = res, .l2_got = -1 };
    ck.nb = file_clusters(s);
    if (ck.nb > CHECK_MAX_CLUSTERS) {
        g_mutex_unlock(&s->lock);
        g_set_error(errp, QS_BLOCK_ERROR, EFBIG, "Image file '%s' has %" G_GUINT64_FORMAT
                    " clusters, more than check handles", bs->filename, ck.nb);
        return false;
    }
    ck.refs = g_new0(uint32_t, MAX(ck.nb, 1));
    res->has_stats = true;
    res->total_clusters = div_up(bs->size, s->cluster_size);

    /* As QEMU, first: a version 3 table entry needs 16 bytes of extra data (VM state
     * size, disk size); -r all rewrites the table, whose entries then have 24. */
    uint64_t incomplete = 0;
    for (uint32_t i = 0; s->version >= 3 && i < s->nb_snapshots; i++) {
        if (qcow2_snapshot(s, i)->extra_size >= 16) continue;
        CK_PRINT(&ck, "%s snapshot table entry %u is incomplete\n",
                 fix & QS_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", i);
        incomplete++;
    }

    inc_refs(&ck, 0, s->cluster_size);
    check_l1(&ck, s->l1_offset, s->l1_size, true);
    /* (the empty entries past snaps_len have no L1 table to check) */
    for (uint32_t i = 0; i < s->snaps_len; i++) {
        Qcow2Snapshot *sn = &s->snaps[i];
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES || (sn->l1_offset & (s->cluster_size - 1))) {
            CK_PRINT(&ck, "ERROR snapshot %s (%s) l1_offset=%#" G_GINT64_MODIFIER "x "
                    "l1_size=%u: invalid L1 table\n", sn->id, sn->name, sn->l1_offset,
                    sn->l1_size);
            res->corruptions++;
            continue;
        }
        check_l1(&ck, sn->l1_offset, sn->l1_size, false);
    }
    inc_refs(&ck, s->snapshots_offset, s->snapshots_size);
    inc_refs(&ck, s->reftable_offset, (uint64_t)s->reftable_clusters * s->cluster_size);
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t off = s->reftable[i] & REFT_OFFSET_MASK;
        if (!off) continue;
        if (off & (s->cluster_size - 1)) {
            CK_PRINT(&ck, "ERROR refcount block %" G_GUINT64_FORMAT " is not cluster aligned;"
                    " refcount table entry corrupted\n", i);
            res->corruptions++;
            continue;
        }
        if ((off >> s->cluster_bits) >= file_clusters(s)) {
            CK_PRINT(&ck, "ERROR refcount block %" G_GUINT64_FORMAT " is outside image\n", i);
            res->corruptions++;
            continue;
        }
        inc_refs(&ck, off, s->cluster_size);
    }
    check_bitmaps(&ck);

    /* As QEMU: with a repair asked for, a first pass reports what is wrong ("Leaked
     * cluster", "ERROR cluster"), then, if anything is, a second repairs it from the
     * counts before the first ("Repairing cluster"). */
    QsBlockCheckResult before = *res;
    uint64_t highest = compare_refcounts(&ck, 0);
    if (fix && (res->leaks || res->corruptions)) {
        *res = before;
        highest = compare_refcounts(&ck, fix);
    }
    check_copied(&ck, fix);
    if (incomplete && (fix & QS_CHECK_FIX_ERRORS)) {
        int r = qcow2_write_snapshots(s);
        if (r < 0) {
            CK_PRINT(&ck, "ERROR failed to update snapshot table: %s\n", g_strerror(-r));
            res->check_errors++;
            res->corruptions += incomplete;
        } else {
            res->corruptions_fixed += incomplete;
        }
    } else {
        res->corruptions += incomplete;
    }
    if (ck.messages > CHECK_MAX_MESSAGES)
        qs_block_message("%" G_GUINT64_FORMAT " more messages like the above were not printed\n",
                ck.messages - CHECK_MAX_MESSAGES);
    res->image_end_offset = (int64_t)(highest << s->cluster_bits);
    g_free(ck.refs);
    g_free(ck.l2);
    if (fix && (s->incompat & QCOW2_INCOMPAT_DIRTY) && !res->corruptions && !res->leaks &&
        !s->dirty_set) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
        qcow2_update_header(s);
    }
    g_mutex_unlock(&s->lock);
    return true;
}
