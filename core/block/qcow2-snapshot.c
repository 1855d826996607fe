/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 internal snapshots: the snapshot table (read, validated, rewritten), create,
 * apply, delete and list, with refcount updates ordered so a crash only leaks. */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

/* A snapshot's id and name: "id\0name\0", owned by id.  The entries read at open keep
 * theirs, and their unknown extra data, in one shared allocation (s->snap_names): a
 * table may hold 65536 entries and is read at every open; a snapshot created later has
 * its own. */
static void set_names(Qcow2Snapshot *sn, const char *id, size_t id_len, const char *name,
                      size_t name_len)
{
    sn->id = g_malloc(id_len + name_len + 2);
    memcpy(sn->id, id, id_len);
    sn->id[id_len] = 0;
    sn->name = sn->id + id_len + 1;
    memcpy(sn->name, name, name_len);
    sn->name[name_len] = 0;
}

static bool in_shared(const Qcow2 *s, const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr, base = (uintptr_t)s->snap_names;
    return s->snap_names && p >= base && p < base + s->snap_names_len;
}

static void free_names(Qcow2 *s, Qcow2Snapshot *sn)
{
    if (!in_shared(s, sn->id)) g_free(sn->id);
    sn->id = sn->name = NULL;
}

void qcow2_free_snapshots(Qcow2 *s)
{
    for (uint32_t i = 0; i < s->snaps_len; i++) {
        Qcow2Snapshot *sn = &s->snaps[i];
        /* only entries made after open own theirs (and under ASan every free, of NULL
         * too, records a stack: a table may hold 65536 entries) */
        if (sn->id && !in_shared(s, sn->id)) g_free(sn->id);
        if (sn->extra_unknown && !in_shared(s, sn->extra_unknown)) g_free(sn->extra_unknown);
    }
    g_free(s->snaps);
    s->snaps = NULL;
    s->snaps_len = 0;
    s->empty_snap = (Qcow2Snapshot){ 0 };
    g_free(s->snap_names);
    s->snap_names = NULL;
    s->snap_names_len = 0;
}

/* The table is read in order through a 64 KiB window, not two preads per entry (a
 * hostile header may declare 65536 entries).  Only what the file holds of a window is
 * read into buf; a window wholly past the end of the file is zero_window (a small
 * image's table took a 64 KiB buffer, a read and a memset per open). */
#define WINDOW (64u << 10)

typedef struct TableReader {
    Qcow2 *s;
    uint64_t start, len;         /* the window's place in the file */
    const uint8_t *win;          /* its bytes */
    uint8_t *buf;                /* what the file holds of it (room bytes) */
    size_t room;
} TableReader;

static const uint8_t zero_window[WINDOW];

static void table_reader_clear(TableReader *rd)
{
    g_free(rd->buf);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TableReader, table_reader_clear)

/* The n bytes at off (n at most WINDOW), in place; NULL on a read error or where the
 * block layer cannot address a whole window (as reading one would fail). */
static const uint8_t *table_at(TableReader *rd, uint64_t off, size_t n)
{
    if (off < rd->start || off + n > rd->start + rd->len) {
        rd->len = 0;
        if (off > (uint64_t)QS_BLOCK_MAX_SIZE || WINDOW > (uint64_t)QS_BLOCK_MAX_SIZE - off)
            return NULL;
        size_t in = qcow2_in_file(rd->s, off, WINDOW), len = in ? MAX(in, n) : WINDOW;
        if (!in) {
            rd->win = zero_window;
        } else {
            if (len > rd->room) {
                rd->buf = g_realloc(rd->buf, len);
                rd->room = len;
            }
            if (qcow2_meta_read(rd->s, off, rd->buf, in) < 0) return NULL;
            memset(rd->buf + in, 0, len - in);
            rd->win = rd->buf;
        }
        rd->start = off;
        rd->len = len;
    }
    return rd->win + (off - rd->start);
}

/* Where an entry's strings are in the shared buffer, until it is whole. */
typedef struct NamesAt {
    uint32_t extra, id, name;
} NamesAt;

/* The table so far (*total) grows by entry i's size. */
static int add_size(uint64_t *total, uint64_t esize, uint32_t i, GError **errp)
{
    *total += esize;
    if (*total <= QCOW2_MAX_SNAPSHOTS_BYTES) return 0;
    g_set_error(errp, QS_BLOCK_ERROR, EFBIG, "Snapshot table is too big (more than %u"
                " bytes at entry %u)", QCOW2_MAX_SNAPSHOTS_BYTES, i);
    return -EFBIG;
}

/* Entry i, whose header h (at *off) is not all zero, into *sn but for its strings:
 * those go to names, at says where; advances *off and *total. */
static int read_entry(Qcow2 *s, TableReader *rd, uint32_t i, const uint8_t *h, uint64_t *off,
                      uint64_t *total, Qcow2Snapshot *sn, GByteArray *names, NamesAt *at,
                      GError **errp)
{
    *sn = s->empty_snap;
    sn->l1_offset = be64_at(h);
    sn->l1_size = be32_at(h + 8);
    uint16_t id_len = be16_at(h + 12), name_len = be16_at(h + 14);
    sn->date_sec = be32_at(h + 16);
    sn->date_nsec = be32_at(h + 20);
    sn->vm_clock_nsec = be64_at(h + 24);
    sn->vm_state_size = be32_at(h + 32);
    uint32_t extra = be32_at(h + 36);
    sn->extra_size = extra;
    if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
        g_set_error(errp, QS_BLOCK_ERROR, EFBIG, "Too much extra metadata in snapshot "
                    "table entry %u: extra_data_size=%u (at most %u)", i, extra,
                    QCOW2_MAX_SNAPSHOT_EXTRA);
        return -EFBIG;
    }
    uint64_t esize = align_up(40 + (uint64_t)extra + id_len + name_len, 8);
    int r = add_size(total, esize, i, errp);
    if (r < 0) return r;
    /* the entry's variable part: in the window unless it is larger (up to 129 KiB) */
    size_t rest_len = (size_t)extra + id_len + name_len;
    uint8_t *big = NULL;
    const uint8_t *rest;
    if (rest_len <= WINDOW) {
        rest = table_at(rd, *off + 40, rest_len);
    } else {
        big = g_malloc(rest_len);
        rest = qcow2_meta_read(s, *off + 40, big, rest_len) < 0 ? NULL : big;
    }
    if (!rest) {
        g_free(big);
        goto io;
    }
    if (extra >= 8) sn->vm_state_size = be64_at(rest);
    if (extra >= 16) sn->disk_size = be64_at(rest + 8);
    if (extra >= 24) {
        sn->icount = be64_at(rest + 16);
        sn->has_icount = sn->icount != UINT64_MAX;
    }
    at->extra = names->len;                 /* the unknown extra data, then the names */
    if (extra > 24) {
        g_byte_array_append(names, rest + 24, extra - 24);
        sn->extra_unknown_len = extra - 24;
    }
    const char *id = (char *)rest + extra, *name = id + id_len;
    size_t il = strnlen(id, id_len), nl = strnlen(name, name_len);
    at->id = names->len;
    at->name = at->id + (uint32_t)il + 1;
    guint was = names->len;
    g_byte_array_set_size(names, was + (guint)(il + nl + 2));
    memcpy(names->data + was, id, il);
    names->data[was + il] = 0;
    memcpy(names->data + at->name, name, nl);
    names->data[at->name + nl] = 0;
    g_free(big);
    if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
        (sn->l1_offset & (s->cluster_size - 1))) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "Snapshot L1 table of snapshot '%s' is "
                    "invalid: l1_table_offset=%#" G_GINT64_MODIFIER "x l1_size=%u",
                    (char *)names->data + at->name, sn->l1_offset, sn->l1_size);
        return -EINVAL;
    }
    *off += esize;
    return 0;
io:
    g_set_error(errp, QS_BLOCK_ERROR, EIO, "Could not read the snapshot table");
    return -EIO;
}

int qcow2_read_snapshots(Qcow2 *s, GError **errp)
{
    if (!s->nb_snapshots) {
        s->snapshots_size = 0;
        return 0;
    }
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        g_set_error(errp, QS_BLOCK_ERROR, EFBIG, "Too many snapshots: nb_snapshots=%u (at "
                    "most %u)", s->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
        return -EFBIG;
    }
    if (!s->snapshots_offset || (s->snapshots_offset & (s->cluster_size - 1))) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "Invalid snapshot table offset %#"
                    G_GINT64_MODIFIER "x", s->snapshots_offset);
        return -EINVAL;
    }
    uint64_t off = s->snapshots_offset, total = 0;
    s->empty_snap = (Qcow2Snapshot){ .disk_size = s->bs->size };
    /* every "id\0name\0" and unknown extra data go into one buffer, which starts with
     * the empty pair of the empty entries; the pointers are set once it is whole */
    g_autoptr(GByteArray) names = g_byte_array_new();
    g_byte_array_append(names, (const guint8 *)"\0", 2);
    const NamesAt empty_at = { 0, 0, 1 };
    g_autofree NamesAt *at = NULL;
    uint32_t room = 0;
    g_auto(TableReader) reader = { .s = s };
    TableReader *rd = &reader;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const uint8_t *h = table_at(rd, off, 40);
        if (!h) {
            g_set_error(errp, QS_BLOCK_ERROR, EIO, "Could not read the snapshot table");
            return -EIO;
        }
        int r;
        /* all-zero headers (a table past the end of the file reads as zeroes) are empty
         * entries: those in the window at once, held only if a non-empty one follows */
        uint64_t k = qs_zero_prefix(h, rd->start + rd->len - off) / 40;
        if (k) {
            k = MIN(k, s->nb_snapshots - i);
            uint64_t fit = (QCOW2_MAX_SNAPSHOTS_BYTES - total) / 40;
            if (k > fit) {           /* the table grows too big at entry i + fit */
                total += 40 * fit;
                return add_size(&total, 40, i + (uint32_t)fit, errp);
            }
            total += 40 * k;
            off += 40 * k;
            i += (uint32_t)k - 1;
            continue;
        }
        if (i >= room) {
            room = MIN(s->nb_snapshots, MAX(i + 1, room * 2));
            s->snaps = g_renew(Qcow2Snapshot, s->snaps, room);
            at = g_renew(NamesAt, at, room);
        }
        for (; s->snaps_len < i; s->snaps_len++) {
            s->snaps[s->snaps_len] = s->empty_snap;
            at[s->snaps_len] = empty_at;
        }
        r = read_entry(s, rd, i, h, &off, &total, &s->snaps[i], names, &at[i], errp);
        s->snaps_len = i + 1;      /* (freed by qcow2_free_snapshots if this failed) */
        if (r < 0) return r;
    }
    s->snapshots_size = total;
    s->snap_names_len = names->len;
    s->snap_names = (char *)g_byte_array_free(g_steal_pointer(&names), FALSE);
    s->empty_snap.id = s->snap_names;
    s->empty_snap.name = s->snap_names + 1;
    for (uint32_t i = 0; i < s->snaps_len; i++) {
        Qcow2Snapshot *sn = &s->snaps[i];
        sn->id = s->snap_names + at[i].id;
        sn->name = s->snap_names + at[i].name;
        if (sn->extra_unknown_len) sn->extra_unknown = (uint8_t *)s->snap_names + at[i].extra;
    }
    return 0;
}

/* Every entry held in memory, as create and delete need them. */
static void hold_all(Qcow2 *s)
{
    if (s->snaps_len == s->nb_snapshots) return;
    s->snaps = g_renew(Qcow2Snapshot, s->snaps, s->nb_snapshots);
    for (; s->snaps_len < s->nb_snapshots; s->snaps_len++) s->snaps[s->snaps_len] = s->empty_snap;
}

/* Write the table to new clusters, switch the header to it, free the old one.  Every
 * entry is written with its known extra data (24 bytes) and the unknown after it. */
int qcow2_write_snapshots(Qcow2 *s)
{
    GByteArray *b = g_byte_array_new();
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const Qcow2Snapshot *sn = qcow2_snapshot(s, i);
        uint32_t extra = 24 + sn->extra_unknown_len;
        size_t idl = strlen(sn->id), nl = strlen(sn->name);
        uint8_t h[64] = { 0 };
        put_be64(h, sn->l1_offset);
        put_be32(h + 8, sn->l1_size);
        put_be16(h + 12, (uint16_t)idl);
        put_be16(h + 14, (uint16_t)nl);
        put_be32(h + 16, sn->date_sec);
        put_be32(h + 20, sn->date_nsec);
        put_be64(h + 24, sn->vm_clock_nsec);
        put_be32(h + 32, (uint32_t)MIN(sn->vm_state_size, UINT32_MAX));
        put_be32(h + 36, extra);
        put_be64(h + 40, sn->vm_state_size);
        put_be64(h + 48, sn->disk_size);
        put_be64(h + 56, sn->has_icount ? sn->icount : UINT64_MAX);
        g_byte_array_append(b, h, 64);
        if (sn->extra_unknown_len) g_byte_array_append(b, sn->extra_unknown, sn->extra_unknown_len);
        g_byte_array_append(b, (uint8_t *)sn->id, (guint)idl);
        g_byte_array_append(b, (uint8_t *)sn->name, (guint)nl);
        static const uint8_t pad[8];
        g_byte_array_append(b, pad, (guint)(align_up(b->len, 8) - b->len));
    }
    uint64_t old_off = s->snapshots_offset, old_size = s->snapshots_size;
    int64_t off = 0;
    int r = 0;
    if (b->len) {
        off = qcow2_alloc_clusters(s, div_up(b->len, s->cluster_size));
        if (off < 0) { r = (int)off; goto out; }
        r = qcow2_meta_write(s, (uint64_t)off, b->data, b->len);
        if (r < 0) goto out;
    }
    uint8_t h[12];
    put_be32(h, s->nb_snapshots);
    put_be64(h + 4, (uint64_t)off);
    r = qcow2_meta_write(s, 60, h, sizeof(h));
    if (r < 0) goto out;
    s->snapshots_offset = (uint64_t)off;
    s->snapshots_size = b->len;
    for (uint32_t i = 0; i < s->snaps_len; i++)
        s->snaps[i].extra_size = 24 + s->snaps[i].extra_unknown_len;
    s->empty_snap.extra_size = 24;
    if (old_size) r = qcow2_update_refcount(s, old_off, old_size, -1);
out:
    g_byte_array_unref(b);
    return r;
}

typedef struct Range { uint64_t off, len; } Range;

/* One refcount move, remembered in done so that it can be undone. */
static int move_refcount(Qcow2 *s, uint64_t off, uint64_t len, int64_t addend, GArray *done)
{
    int r = qcow2_update_refcount(s, off, len, addend);
    if (r == 0) g_array_append_val(done, ((Range){ off, len }));
    return r;
}

/* addend to the refcounts of the L2 tables and data clusters of an L1 table (in host
 * byte order), merging runs of contiguous data clusters. */
static int tree_refcount_undoable(Qcow2 *s, const uint64_t *l1, uint32_t l1_size,
                                  int64_t addend, GArray *done)
{
    uint64_t cs = s->cluster_size;
    g_autofree uint8_t *t = g_malloc(cs);
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t l2 = l1[i] & L1E_OFFSET_MASK;
        if (!l2) continue;
        if (l2 & (cs - 1)) return -EIO;
        int r = qcow2_meta_read(s, l2, t, cs);
        if (r < 0) return r;
        uint64_t run_start = 0, run_len = 0;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = l2_get(s, t, j);
            ClusterType ty = qcow2_entry_type(s, e);
            if (ty == C_NORMAL || ty == C_ZERO_ALLOC) {
                uint64_t h = e & L2E_OFFSET_MASK;
                if (run_len && h == run_start + run_len) {
                    run_len += cs;
                    continue;
                }
                if (run_len && (r = move_refcount(s, run_start, run_len, addend, done)) < 0)
                    return r;
                run_start = h;
                run_len = cs;
            } else if (ty == C_COMPRESSED) {
                uint64_t o, n;
                qcow2_compressed_range(s, e, &o, &n);
                r = move_refcount(s, o, n, addend, done);
                if (r < 0) return r;
            }
        }
        if (run_len && (r = move_refcount(s, run_start, run_len, addend, done)) < 0) return r;
        r = move_refcount(s, l2, cs, addend, done);
        if (r < 0) return r;
    }
    return 0;
}

/* Every cluster the tree under l1 references moves by addend; on failure the moves
 * already made are undone, so a refused snapshot leaves the refcounts as they were. */
static int tree_refcount(Qcow2 *s, const uint64_t *l1, uint32_t l1_size, int64_t addend)
{
    g_autoptr(GArray) done = g_array_new(FALSE, FALSE, sizeof(Range));
    int r = tree_refcount_undoable(s, l1, l1_size, addend, done);
    if (r < 0) {
        for (guint i = done->len; i-- > 0;) {
            Range *d = &g_array_index(done, Range, i);
            (void)qcow2_update_refcount(s, d->off, d->len, -addend);
        }
    }
    return r;
}

static uint64_t *read_l1(Qcow2 *s, uint64_t off, uint32_t size, int *err)
{
    uint64_t *l1 = g_new0(uint64_t, MAX(size, 1u));
    *err = size ? qcow2_meta_read(s, off, l1, (size_t)size * 8) : 0;
    if (*err < 0) {
        g_free(l1);
        return NULL;
    }
    for (uint32_t i = 0; i < size; i++) l1[i] = GUINT64_FROM_BE(l1[i]);
    return l1;
}

int qcow2_update_tree_refcount(Qcow2 *s, uint64_t l1_offset, uint32_t l1_size, int64_t addend)
{
    int err;
    g_autofree uint64_t *l1 = read_l1(s, l1_offset, l1_size, &err);
    if (!l1) return err;
    return tree_refcount(s, l1, l1_size, addend);
}

int qcow2_fix_copied(Qcow2 *s)
{
    uint64_t cs = s->cluster_size;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2) continue;
        uint64_t rc;
        int r = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (r < 0) return r;
        uint64_t want = rc == 1 ? l2 | QCOW_OFLAG_COPIED : l2;
        if (want != s->l1[i]) {
            s->l1[i] = want;
            r = qcow2_write_l1_entry(s, i);
            if (r < 0) return r;
        }
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        if (!t) return err;
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = l2_get(s, t, j);
            ClusterType ty = qcow2_entry_type(s, e);
            if (ty != C_NORMAL && ty != C_ZERO_ALLOC) continue;
            uint64_t drc;
            r = qcow2_get_refcount(s, (e & L2E_OFFSET_MASK) >> s->cluster_bits, &drc);
            if (r < 0) return r;
            t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
            if (!t) return err;
            uint64_t ne = drc == 1 ? e | QCOW_OFLAG_COPIED : e & ~QCOW_OFLAG_COPIED;
            if (ne != e) {
                l2_set(s, t, j, ne, l2_get_bitmap(s, t, j));
                changed = true;
            }
        }
        if (changed && (r = qcow2_meta_write(s, l2, t, cs)) < 0) return r;
    }
    return 0;
}

/* Clear COPIED in the active L2 tables and L1 table (before they become shared). */
static int clear_copied(Qcow2 *s)
{
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2) continue;
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        if (!t) return err;
        bool changed = false;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = l2_get(s, t, j);
            if (e & QCOW_OFLAG_COPIED) {
                l2_set(s, t, j, e & ~QCOW_OFLAG_COPIED, l2_get_bitmap(s, t, j));
                changed = true;
            }
        }
        int r = changed ? qcow2_meta_write(s, l2, t, s->cluster_size) : 0;
        if (r < 0) return r;
        if (s->l1[i] & QCOW_OFLAG_COPIED) {
            s->l1[i] &= ~QCOW_OFLAG_COPIED;
            r = qcow2_write_l1_entry(s, i);
            if (r < 0) return r;
        }
    }
    return 0;
}

static int find_snapshot(Qcow2 *s, const char *key)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(qcow2_snapshot(s, i)->id, key)) return (int)i;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(qcow2_snapshot(s, i)->name, key)) return (int)i;
    return -1;
}

/* The names read at open are copied in one piece; those of snapshots made since are
 * appended. */
QsBlockSnapshotList *qcow2_snapshot_list(QsBlock *bs)
{
    Qcow2 *s = bs->opaque;
    size_t len = s->snap_names_len;
    for (uint32_t i = 0; i < s->snaps_len; i++) {
        const Qcow2Snapshot *sn = &s->snaps[i];
        if (!in_shared(s, sn->id)) len += strlen(sn->id) + strlen(sn->name) + 2;
    }
    QsBlockSnapshotList *l = g_new0(QsBlockSnapshotList, 1);
    l->len = s->nb_snapshots;
    l->held = s->snaps_len;      /* the empty entries after them stay l->empty */
    l->empty.id = l->empty.name = "";
    l->sn = g_new0(QsBlockSnapshot, MAX(l->held, 1u));
    l->text = g_malloc(MAX(len, 1u));
    if (s->snap_names_len) memcpy(l->text, s->snap_names, s->snap_names_len);
    size_t end = s->snap_names_len;
    for (uint32_t i = 0; i < s->snaps_len; i++) {
        const Qcow2Snapshot *sn = &s->snaps[i];
        QsBlockSnapshot *o = &l->sn[i];
        if (in_shared(s, sn->id)) {
            o->id = l->text + (sn->id - s->snap_names);
            o->name = l->text + (sn->name - s->snap_names);
        } else {
            size_t il = strlen(sn->id) + 1, nl = strlen(sn->name) + 1;
            o->id = memcpy(l->text + end, sn->id, il);
            o->name = memcpy(l->text + end + il, sn->name, nl);
            end += il + nl;
        }
        o->vm_state_size = sn->vm_state_size;
        o->date_sec = sn->date_sec;
        o->date_nsec = sn->date_nsec;
        o->vm_clock_nsec = sn->vm_clock_nsec;
        o->has_icount = sn->has_icount;
        o->icount = sn->icount;
    }
    return l;
}

static bool fail(GError **errp, int r, const char *what, const char *name)
{
    g_set_error(errp, QS_BLOCK_ERROR, -r, "Could not %s snapshot '%s': %d (%s)", what, name,
                r, g_strerror(-r));
    return false;
}

/* The messages of a failed apply or delete, as qemu-img prints them: which step
 * failed, then why. */
static bool fail_step(GError **errp, int r, const char *what, const char *name,
                      const char *step)
{
    if (!step) {
        g_set_error(errp, QS_BLOCK_ERROR, -r, "Could not %s snapshot '%s': snapshot not "
                    "found", what, name);
    } else {
        g_set_error(errp, QS_BLOCK_ERROR, -r, "Could not %s snapshot '%s': %s: %s", what,
                    name, step, g_strerror(-r));
    }
    return false;
}

bool qcow2_snapshot_create(QsBlock *bs, const char *name, GError **errp)
{
    Qcow2 *s = bs->opaque;
    if (strlen(name) > 0xffff) return fail(errp, -EINVAL, "create", name);
    g_mutex_lock(&s->lock);
    int r = -EEXIST;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(qcow2_snapshot(s, i)->name, name)) goto out;
    r = -EFBIG;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) goto out;
    uint64_t max_id = 0;
    for (uint32_t i = 0; i < s->snaps_len; i++) {      /* (empty ids count as 0) */
        uint64_t v = g_ascii_strtoull(s->snaps[i].id, NULL, 10);
        max_id = MAX(max_id, v);
    }
    /* 1. a copy of the active L1 table */
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    int64_t l1_off = 0;
    if (l1_bytes) {
        l1_off = qcow2_alloc_clusters(s, div_up(l1_bytes, s->cluster_size));
        if (l1_off < 0) { r = (int)l1_off; goto out; }
        g_autofree uint64_t *be = g_new(uint64_t, s->l1_size);
        for (uint32_t i = 0; i < s->l1_size; i++)
            be[i] = GUINT64_TO_BE(s->l1[i] & ~QCOW_OFLAG_COPIED);
        r = qcow2_meta_write(s, (uint64_t)l1_off, be, l1_bytes);
        if (r < 0) goto out;
    }
    /* 2. drop the COPIED flags first (a crash then only costs extra copies), then the
     * tree is referenced once more */
    r = clear_copied(s);
    if (r == 0) r = tree_refcount(s, s->l1, s->l1_size, 1);
    if (r < 0) {
        /* refused (refcount_bits=1 cannot count two references): the flags come back
         * and the copy of the L1 table goes, leaving the image as it was */
        if (r == -ERANGE) r = -EINVAL;   /* qemu-img reports it so */
        (void)qcow2_fix_copied(s);
        if (l1_off > 0) (void)qcow2_update_refcount(s, (uint64_t)l1_off,
                                                    div_up(l1_bytes, s->cluster_size) *
                                                    s->cluster_size, -1);
        goto out;
    }
    /* 4. the table entry, after all the others */
    hold_all(s);
    s->snaps = g_renew(Qcow2Snapshot, s->snaps, s->nb_snapshots + 1);
    Qcow2Snapshot *sn = &s->snaps[s->nb_snapshots];
    memset(sn, 0, sizeof(*sn));
    gint64 now = g_get_real_time();
    sn->l1_offset = (uint64_t)l1_off;
    sn->l1_size = s->l1_size;
    char *id = g_strdup_printf("%" G_GUINT64_FORMAT, max_id + 1);
    set_names(sn, id, strlen(id), name, strlen(name));
    g_free(id);
    sn->date_sec = (uint32_t)(now / G_USEC_PER_SEC);
    sn->date_nsec = (uint32_t)(now % G_USEC_PER_SEC) * 1000;
    sn->disk_size = bs->size;
    sn->has_icount = false;
    sn->extra_size = 24;
    s->nb_snapshots++;
    s->snaps_len++;
    r = qcow2_write_snapshots(s);
    if (r < 0) {
        s->nb_snapshots--;
        s->snaps_len--;
        free_names(s, sn);
    }
out:
    g_mutex_unlock(&s->lock);
    return r < 0 ? fail(errp, r, "create", name) : true;
}

bool qcow2_snapshot_apply(QsBlock *bs, const char *key, GError **errp)
{
    Qcow2 *s = bs->opaque;
    g_autofree uint64_t *snl1 = NULL, *old = NULL, *be = NULL;
    g_mutex_lock(&s->lock);
    int idx = find_snapshot(s, key);
    int r = -ENOENT;
    if (idx < 0) goto out;
    const Qcow2Snapshot *sn = qcow2_snapshot(s, (uint32_t)idx);
    if (sn->l1_size > s->l1_size) {
        r = qcow2_grow_l1(s, sn->l1_size);
        if (r < 0) goto out;
    }
    int err;
    snl1 = read_l1(s, sn->l1_offset, sn->l1_size, &err);
    if (!snl1) { r = err; goto out; }
    for (uint32_t i = 0; i < sn->l1_size; i++) {
        if (snl1[i] & L1E_RESERVED_MASK & ~QCOW_OFLAG_COPIED) {
            r = -EIO;
            goto out;
        }
    }
    /* 1. the snapshot's tree gains the active reference */
    r = tree_refcount(s, snl1, sn->l1_size, 1);
    if (r < 0) goto out;
    /* 2. switch the active table */
    old = g_memdup2(s->l1, (gsize)s->l1_size * 8);
    for (uint32_t i = 0; i < s->l1_size; i++) s->l1[i] = i < sn->l1_size ? snl1[i] : 0;
    qcow2_tables_changed(s);
    be = g_new(uint64_t, s->l1_size);
    for (uint32_t i = 0; i < s->l1_size; i++) be[i] = GUINT64_TO_BE(s->l1[i]);
    r = qcow2_meta_write(s, s->l1_offset, be, (uint64_t)s->l1_size * 8);
    if (r < 0) {
        if (s->l1_size) memcpy(s->l1, old, (gsize)s->l1_size * 8);   /* old: NULL if empty */
        qcow2_tables_changed(s);
        goto out;
    }
    qcow2_cache_clear(&s->l2_cache);
    /* 3. the old tree loses it */
    r = tree_refcount(s, old, s->l1_size, -1);
    if (r < 0) goto out;
    r = qcow2_fix_copied(s);
    if (r == 0 && sn->disk_size != bs->size) {
        bs->size = sn->disk_size;
        r = qcow2_update_header(s);
    }
out:
    g_mutex_unlock(&s->lock);
    return r < 0 ? fail_step(errp, r, "apply", key, "Failed to load snapshot") : true;
}

bool qcow2_snapshot_delete(QsBlock *bs, const char *key, GError **errp)
{
    Qcow2 *s = bs->opaque;
    g_mutex_lock(&s->lock);
    int idx = find_snapshot(s, key);
    int r = -ENOENT;
    const char *step = NULL;      /* NULL: not found */
    if (idx < 0) goto out;
    hold_all(s);
    Qcow2Snapshot sn = s->snaps[idx];
    /* 1. drop the entry from the table */
    memmove(&s->snaps[idx], &s->snaps[idx + 1],
            (s->nb_snapshots - (uint32_t)idx - 1) * sizeof(Qcow2Snapshot));
    s->nb_snapshots--;
    s->snaps_len--;
    step = "Failed to remove snapshot from snapshot list";
    r = qcow2_write_snapshots(s);
    if (r < 0) {
        memmove(&s->snaps[idx + 1], &s->snaps[idx],
                (s->nb_snapshots - (uint32_t)idx) * sizeof(Qcow2Snapshot));
        s->snaps[idx] = sn;
        s->nb_snapshots++;
        s->snaps_len++;
        goto out;
    }
    /* 2. release its tree and L1 table; 3. active flags follow */
    step = "Failed to free the cluster and L1 table";
    r = qcow2_update_tree_refcount(s, sn.l1_offset, sn.l1_size, -1);
    if (r == 0 && sn.l1_size)
        r = qcow2_update_refcount(s, sn.l1_offset, (uint64_t)sn.l1_size * 8, -1);
    if (r == 0) {
        step = "Failed to update snapshot status in disk";
        r = qcow2_fix_copied(s);
    }
    free_names(s, &sn);
    if (!in_shared(s, sn.extra_unknown)) g_free(sn.extra_unknown);
out:
    g_mutex_unlock(&s->lock);
    return r < 0 ? fail_step(errp, r, "delete", key, step) : true;
}
