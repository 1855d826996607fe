/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Metadata overlap checks before writes, in the spirit of QEMU's overlap-check=cached:
 * a hostile image can make an L2 entry, a refcount block or a free-looking cluster name
 * the header or a table, and a write there would destroy the image.  Such a write is
 * refused and the image marked corrupt. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

static const char *const overlap_names[] = {
    "qcow2_header", "active L1 table", "active L2 table", "refcount table",
    "refcount block", "snapshot table", "inactive L1 table", "bitmap directory",
};

static bool hits(uint64_t off, uint64_t len, uint64_t start, uint64_t size)
{
    return size && start < off + len && off < start + size;
}

/* The active L2 tables and the refcount blocks, as cluster offsets with how many table
 * entries name each (a corrupt table may name one twice).  Built at the first check, not
 * at open (read-only opens never need it, and a hostile image may have millions of
 * entries), then kept up to date entry by entry: scanning the tables on every write
 * made repairs of such images quadratic (16 s for one 3 KiB input). */
static void set_add(GHashTable *t, uint64_t off)
{
    if (!off) return;
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(t, &off));
    g_hash_table_insert(t, g_memdup2(&off, sizeof(off)), GUINT_TO_POINTER(n + 1));
}

static void set_remove(GHashTable *t, uint64_t off)
{
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(t, &off));
    if (n > 1) g_hash_table_insert(t, g_memdup2(&off, sizeof(off)), GUINT_TO_POINTER(n - 1));
    else if (n == 1) g_hash_table_remove(t, &off);
}

/* Does the set hold a cluster in [first, end)?  Probes the range or walks the set,
 * whichever is shorter. */
static bool set_hits(GHashTable *t, uint64_t first, uint64_t end, uint64_t cs)
{
    uint64_t n = (end - first + cs - 1) / cs;
    if (n <= g_hash_table_size(t)) {
        for (uint64_t c = first; c < end; c += cs)
            if (g_hash_table_contains(t, &c)) return true;
        return false;
    }
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, t);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        uint64_t o = *(uint64_t *)k;
        if (o >= first && o < end) return true;
    }
    return false;
}

void qcow2_note_l2(Qcow2 *s, uint64_t off)
{
    if (s->meta_index) set_add(s->l2_set, off & L1E_OFFSET_MASK);
}

void qcow2_forget_l2(Qcow2 *s, uint64_t off)
{
    if (s->meta_index) set_remove(s->l2_set, off & L1E_OFFSET_MASK);
}

void qcow2_note_refblock(Qcow2 *s, uint64_t off)
{
    if (s->meta_index) set_add(s->rb_set, off & REFT_OFFSET_MASK);
}

void qcow2_forget_refblock(Qcow2 *s, uint64_t off)
{
    if (s->meta_index) set_remove(s->rb_set, off & REFT_OFFSET_MASK);
}

void qcow2_tables_changed(Qcow2 *s)
{
    s->meta_index = false;
}

void qcow2_overlap_free(Qcow2 *s)
{
    if (s->l2_set) g_hash_table_destroy(s->l2_set);
    if (s->rb_set) g_hash_table_destroy(s->rb_set);
    s->l2_set = s->rb_set = NULL;
    s->meta_index = false;
}

/* Adds every table named by t[0..n) to the set.  A hostile header's tables run to
 * millions of entries, nearly all zero: runs of them are skipped at memory speed (an
 * entry by entry walk under ASan was 8% of the raw fuzz target). */
static void add_tables(GHashTable *set, const uint64_t *t, uint64_t n, uint64_t mask)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!t[i]) i += qs_zero_prefix(t + i, (n - i) * sizeof(*t)) / sizeof(*t) - 1;
        else set_add(set, t[i] & mask);
    }
}

static void build_index(Qcow2 *s)
{
    qcow2_overlap_free(s);
    s->l2_set = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    s->rb_set = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    add_tables(s->l2_set, s->l1, s->l1_size, L1E_OFFSET_MASK);
    add_tables(s->rb_set, s->reftable, s->reftable_entries, REFT_OFFSET_MASK);
    s->meta_index = true;
}

unsigned qcow2_overlaps(Qcow2 *s, uint64_t off, uint64_t len)
{
    uint64_t cs = s->cluster_size;
    unsigned m = 0;
    if (!len) return 0;
    if (!s->meta_index) build_index(s);
    if (off < cs) m |= QCOW2_OL_HEADER;
    if (hits(off, len, s->l1_offset, (uint64_t)s->l1_size * 8)) m |= QCOW2_OL_ACTIVE_L1;
    if (hits(off, len, s->reftable_offset, (uint64_t)s->reftable_clusters * cs))
        m |= QCOW2_OL_REFCOUNT_TABLE;
    if (hits(off, len, s->snapshots_offset, s->snapshots_size)) m |= QCOW2_OL_SNAPSHOT_TABLE;
    if (hits(off, len, s->bitmap_dir_offset, s->bitmap_dir_size)) m |= QCOW2_OL_BITMAP_DIR;
    /* whole clusters from here on: a table is never smaller than one */
    uint64_t first = off & ~(cs - 1), end = off + len;
    if (set_hits(s->l2_set, first, end, cs)) m |= QCOW2_OL_ACTIVE_L2;
    if (set_hits(s->rb_set, first, end, cs)) m |= QCOW2_OL_REFCOUNT_BLOCK;
    /* (the empty entries past snaps_len have no L1 table) */
    for (uint32_t i = 0; i < s->snaps_len && !(m & QCOW2_OL_INACTIVE_L1); i++)
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
