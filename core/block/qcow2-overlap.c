/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Metadata overlap checks before writes, in the spirit of QEMU's overlap-check=cached:
 * a hostile image can make an L2 entry, a refcount block or a free-looking cluster name
 * the header or a table, and a write there would destroy the image.  Such a write is
 * refused and the image marked corrupt. */
#include <errno.h>
#include "qcow2.h"

static const char *const overlap_names[] = {
    "qcow2_header", "active L1 table", "active L2 table", "refcount table",
    "refcount block", "snapshot table", "inactive L1 table", "bitmap directory",
};

static bool hits(uint64_t off, uint64_t len, uint64_t start, uint64_t size)
{
    return size && start < off + len && off < start + size;
}

static void widen(uint64_t *lo, uint64_t *hi, uint64_t off)
{
    if (!off) return;
    if (off < *lo) *lo = off;
    if (off > *hi) *hi = off;
}

void qcow2_note_l2(Qcow2 *s, uint64_t off)
{
    if (s->bounds_valid) widen(&s->l2_lo, &s->l2_hi, off & L1E_OFFSET_MASK);
}

void qcow2_note_refblock(Qcow2 *s, uint64_t off, uint64_t idx)
{
    if (!s->bounds_valid) return;
    widen(&s->rb_lo, &s->rb_hi, off & REFT_OFFSET_MASK);
    s->reftable_used = MAX(s->reftable_used, idx + 1);
}

void qcow2_tables_changed(Qcow2 *s)
{
    s->bounds_valid = false;
}

/* Computed at the first check, not at open: read-only opens never need them, and a
 * hostile image may have millions of table entries. */
static void compute_bounds(Qcow2 *s)
{
    s->l2_lo = s->rb_lo = UINT64_MAX;
    s->l2_hi = s->rb_hi = 0;
    for (uint32_t i = 0; i < s->l1_size; i++)
        widen(&s->l2_lo, &s->l2_hi, s->l1[i] & L1E_OFFSET_MASK);
    uint64_t n = s->reftable_entries;
    while (n && !s->reftable[n - 1]) n--;
    s->reftable_used = n;
    for (uint64_t i = 0; i < n; i++)
        widen(&s->rb_lo, &s->rb_hi, s->reftable[i] & REFT_OFFSET_MASK);
    s->bounds_valid = true;
}

unsigned qcow2_overlaps(Qcow2 *s, uint64_t off, uint64_t len)
{
    uint64_t cs = s->cluster_size;
    unsigned m = 0;
    if (!len) return 0;
    if (!s->bounds_valid) compute_bounds(s);
    if (off < cs) m |= QCOW2_OL_HEADER;
    if (hits(off, len, s->l1_offset, (uint64_t)s->l1_size * 8)) m |= QCOW2_OL_ACTIVE_L1;
    if (hits(off, len, s->reftable_offset, (uint64_t)s->reftable_clusters * cs))
        m |= QCOW2_OL_REFCOUNT_TABLE;
    if (hits(off, len, s->snapshots_offset, s->snapshots_size)) m |= QCOW2_OL_SNAPSHOT_TABLE;
    if (hits(off, len, s->bitmap_dir_offset, s->bitmap_dir_size)) m |= QCOW2_OL_BITMAP_DIR;
    /* whole clusters from here on: a table is never smaller than one */
    uint64_t first = off & ~(cs - 1), end = off + len;
    bool l2_near = s->l2_hi >= first && s->l2_lo < end;
    bool rb_near = s->rb_hi >= first && s->rb_lo < end;
    for (uint32_t i = 0; l2_near && i < s->l1_size && !(m & QCOW2_OL_ACTIVE_L2); i++) {
        uint64_t t = s->l1[i] & L1E_OFFSET_MASK;
        if (t && t >= first && t < end) m |= QCOW2_OL_ACTIVE_L2;
    }
    uint64_t rb_n = MIN(s->reftable_used, s->reftable_entries);
    for (uint64_t i = 0; rb_near && i < rb_n && !(m & QCOW2_OL_REFCOUNT_BLOCK); i++) {
        uint64_t b = s->reftable[i] & REFT_OFFSET_MASK;
        if (b && b >= first && b < end) m |= QCOW2_OL_REFCOUNT_BLOCK;
    }
    for (uint32_t i = 0; i < s->nb_snapshots && !(m & QCOW2_OL_INACTIVE_L1); i++)
        if (hits(off, len, s->snaps[i].l1_offset, (uint64_t)s->snaps[i].l1_size * 8))
            m |= QCOW2_OL_INACTIVE_L1;
    return m;
}

int qcow2_refuse_overlap(Qcow2 *s, unsigned mask)
{
    unsigned bit = 0;
    while (!(mask & (1u << bit))) bit++;
    qcow2_signal_corruption(s, "Preventing invalid write on metadata (overlaps with %s)",
                            overlap_names[bit]);
    return -EIO;
}

int qcow2_check_data_write(Qcow2 *s, uint64_t off, uint64_t len)
{
    unsigned m = qcow2_overlaps(s, off, len);
    return m ? qcow2_refuse_overlap(s, m) : 0;
}
