/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The parallels driver: Parallels expandable images ("WithoutFreeSpace" and
 * "WithouFreSpacExt", version 2) with a validated header and BAT, in_use, check/repair. */
#include "parallels.h"

#define PRL_DEFAULT_CLUSTER (1u << 20)
/* QEMU's limit on the cluster size in sectors, so that images stay portable. */
#define PRL_MAX_TRACKS   (INT32_MAX / 513)
#define PRL_MAX_ENTRIES  (INT32_MAX / 4)

enum {
    H_MAGIC = 0, H_VERSION = 16, H_HEADS = 20, H_CYLINDERS = 24, H_TRACKS = 28,
    H_BAT_ENTRIES = 32, H_NB_SECTORS = 36, H_INUSE = 44, H_DATA_OFF = 48, H_FLAGS = 52,
    H_EXT_OFF = 56,
};

static const char MAGIC_OLD[16] = "WithoutFreeSpace";
static const char MAGIC_EXT[16] = "WithouFreSpacExt";

static int prl_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len < PRL_HEADER_SIZE) return 0;
    if (memcmp(buf, MAGIC_OLD, 16) && memcmp(buf, MAGIC_EXT, 16)) return 0;
    return le32_at(buf + H_VERSION) == 2 ? 100 : 0;
}

bool prl_cluster_ok(const Prl *s, uint64_t off, uint64_t file_size, const char **why)
{
    if (off < s->data_off) {
        *why = "points into the header or BAT";
        return false;
    }
    if ((off - s->data_off) % s->cluster) {
        *why = "is not aligned to a cluster from data_off";
        return false;
    }
    if (off >= file_size) {
        *why = "is beyond the end of the file";
        return false;
    }
    return true;
}

/* The clusters the Format Extension owns (its own and its dirty bitmaps' data), as a
 * set of byte offsets; NULL if there is no extension. */
static GHashTable *ext_clusters(const Prl *s)
{
    if (!s->ext_off) return NULL;
    GHashTable *t = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    uint64_t off = s->ext_off;
    g_hash_table_add(t, g_memdup2(&off, sizeof(off)));
    for (guint k = 0; s->bitmaps && k < s->bitmaps->len; k++) {
        const PrlBitmap *b = s->bitmaps->pdata[k];
        for (uint32_t i = 0; i < b->l1_size; i++) {
            if (b->l1[i] <= 1) continue;
            off = b->l1[i] * 512;
            g_hash_table_add(t, g_memdup2(&off, sizeof(off)));
        }
    }
    return t;
}

/* Index of the first BAT entry naming a cluster of the extension, or -1. */
static int64_t bat_in_extension(const Prl *s, GHashTable *ext, uint32_t from)
{
    for (uint32_t i = from; ext && i < s->bat_entries; i++) {
        uint64_t off = prl_host(s, s->bat[i]);
        if (s->bat[i] && g_hash_table_contains(ext, &off)) return i;
    }
    return -1;
}

static bool write_inuse(QsBlock *bs, uint32_t v)
{
    uint8_t le[4];
    put_le32(le, v);
    if (qs_block_pwrite(bs->file, H_INUSE, 4, le, 0) < 0) return false;
    return qs_block_flush(bs->file) == 0;
}

/* Where the next cluster goes: after data_off, every valid cluster, the extension. */
static uint64_t used_end(const Prl *s, uint64_t fsize)
{
    uint64_t end = s->data_off;
    const char *why;
    for (uint32_t i = 0; i < s->bat_entries; i++)
        if (s->bat[i] && prl_cluster_ok(s, prl_host(s, s->bat[i]), fsize, &why))
            end = MAX(end, prl_host(s, s->bat[i]) + s->cluster);
    if (s->ext_off) {
        end = MAX(end, s->ext_off + s->cluster);
        for (guint b = 0; s->bitmaps && b < s->bitmaps->len; b++) {
            PrlBitmap *bm = s->bitmaps->pdata[b];
            for (uint32_t j = 0; j < bm->l1_size; j++)
                if (bm->l1[j] > 1) end = MAX(end, bm->l1[j] * 512 + s->cluster);
        }
    }
    return end;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool prl_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Prl *s = bs->opaque;
    const char *fn = bs->filename;
    g_mutex_init(&s->lock);
    s->inited = true;
    uint64_t fsize = bs->file->size;
    uint8_t h[PRL_HEADER_SIZE];
    if (fsize < PRL_HEADER_SIZE)
        return fmt_err(errp, "parallels: '%s' is too short for a header (%" G_GUINT64_FORMAT
                       " bytes)", fn, fsize);
    int r = qs_block_pread(bs->file, 0, sizeof(h), h);
    if (r < 0) return fmt_errno(errp, r, "parallels: could not read the header of '%s'", fn);
    if (!memcmp(h, MAGIC_EXT, 16)) {
        s->ext_magic = true;
    } else if (memcmp(h, MAGIC_OLD, 16)) {
        g_autofree char *m = g_strndup((const char *)h, 16);
        g_autofree char *e = g_strescape(m, NULL);
        return fmt_err(errp, "parallels: '%s' is not a Parallels image (magic '%s')", fn, e);
    }
    uint32_t version = le32_at(h + H_VERSION);
    if (version != 2)
        return fmt_err(errp, "parallels: unsupported version %u (only 2)", version);
    s->tracks = le32_at(h + H_TRACKS);
    if (s->tracks == 0)
        return fmt_err(errp, "parallels: invalid image: tracks (cluster size in sectors) is 0");
    if (s->tracks > PRL_MAX_TRACKS)
        return fmt_err(errp, "parallels: invalid image: tracks %u is too big a cluster (at "
                       "most %u sectors)", s->tracks, PRL_MAX_TRACKS);
    s->cluster = (uint64_t)s->tracks * 512;
    s->off_mult = s->ext_magic ? s->cluster : 512;
    s->bat_entries = le32_at(h + H_BAT_ENTRIES);
    if (s->bat_entries > PRL_MAX_ENTRIES)
        return fmt_err(errp, "parallels: catalog too large (bat_entries %u, at most %u)",
                       s->bat_entries, PRL_MAX_ENTRIES);
    uint64_t bat_end = PRL_HEADER_SIZE + (uint64_t)s->bat_entries * 4;
    if (bat_end > fsize)
        return fmt_err(errp, "parallels: BAT of %u entries extends beyond the end of the file "
                       "(%" G_GUINT64_FORMAT " bytes)", s->bat_entries, fsize);
    uint64_t nb_sectors = le64_at(h + H_NB_SECTORS);
    if (!s->ext_magic) nb_sectors &= 0xffffffffu;
    if (nb_sectors > (uint64_t)s->bat_entries * s->tracks)
        return fmt_err(errp, "parallels: nb_sectors %" G_GUINT64_FORMAT " exceeds the BAT's "
                       "capacity (%u entries of %u sectors)", nb_sectors, s->bat_entries,
                       s->tracks);
    if (nb_sectors > QS_BLOCK_MAX_SIZE / 512)
        return fmt_err(errp, "parallels: nb_sectors %" G_GUINT64_FORMAT " is too large",
                       nb_sectors);
    uint32_t inuse = le32_at(h + H_INUSE);
    if (inuse != 0 && inuse != PRL_INUSE_OPEN && inuse != PRL_INUSE_CLOSED)
        return fmt_err(errp, "parallels: invalid in_use value %#x", inuse);
    s->unclean = inuse == PRL_INUSE_OPEN;
    uint32_t data_off = le32_at(h + H_DATA_OFF);
    if (data_off == 0) {
        if (s->ext_magic)
            return fmt_err(errp, "parallels: data_off 0 is invalid in a WithouFreSpacExt image");
        s->data_off = align_up(bat_end, 512);
    } else {
        s->data_off = (uint64_t)data_off * 512;
        if (s->ext_magic && data_off % s->tracks)
            return fmt_err(errp, "parallels: data_off %u is not aligned to the cluster size "
                           "(%u sectors)", data_off, s->tracks);
    }
    if (s->data_off < bat_end)
        return fmt_err(errp, "parallels: data_off %" G_GUINT64_FORMAT " overlaps the BAT "
                       "(which ends at %" G_GUINT64_FORMAT ")", s->data_off, bat_end);
    if (s->data_off > fsize)
        return fmt_err(errp, "parallels: data_off %" G_GUINT64_FORMAT " lies beyond the end of "
                       "the file (%" G_GUINT64_FORMAT " bytes)", s->data_off, fsize);
    s->bat = g_try_malloc(MAX((size_t)s->bat_entries * 4, 4u));
    if (!s->bat) return fmt_err(errp, "parallels: cannot allocate a BAT of %u entries",
                                s->bat_entries);
    if (s->bat_entries) {
        r = qs_block_pread(bs->file, PRL_HEADER_SIZE, (size_t)s->bat_entries * 4, s->bat);
        if (r < 0) return fmt_errno(errp, r, "parallels: could not read the BAT of '%s'", fn);
    }
    bool check = bs->flags & QS_BLOCK_CHECK, rw = bs->flags & QS_BLOCK_RDWR;
    for (uint32_t i = 0; i < s->bat_entries; i++) {
        s->bat[i] = GUINT32_FROM_LE(s->bat[i]);
        if (!s->bat[i]) continue;
        uint64_t off = prl_host(s, s->bat[i]);
        const char *why;
        if (!prl_cluster_ok(s, off, fsize, &why) && !check) {
            /* beyond the end: readable (as zeros) as QEMU does, but not writable */
            if (off < fsize || rw)
                return fmt_err(errp, "parallels: BAT entry %u (%u, offset %" G_GUINT64_FORMAT
                               ") %s; run 'qemu-img check -r all'", i, s->bat[i], off, why);
        }
    }
    if (rw && !check) {   /* two entries sharing a cluster: writes would hit both */
        g_autofree uint32_t *v = g_memdup2(s->bat, MAX((size_t)s->bat_entries * 4, 4u));
        qsort(v, s->bat_entries, 4, cmp_u32);
        for (uint32_t i = 1; i < s->bat_entries; i++)
            if (v[i] && v[i] == v[i - 1])
                return fmt_err(errp, "parallels: two BAT entries share the cluster at offset %"
                               G_GUINT64_FORMAT "; run 'qemu-img check -r all'",
                               prl_host(s, v[i]));
    }
    bs->size = nb_sectors * 512;
    uint64_t ext = le64_at(h + H_EXT_OFF);
    if (ext) {
        if (ext > UINT64_MAX / 512)
            return fmt_err(errp, "parallels: ext_off %" G_GUINT64_FORMAT " is too large", ext);
        s->ext_off = ext * 512;
        const char *why;
        if (!prl_cluster_ok(s, s->ext_off, fsize, &why) || s->ext_off + s->cluster > fsize)
            return fmt_err(errp, "parallels: ext_off %" G_GUINT64_FORMAT " (offset %"
                           G_GUINT64_FORMAT ") %s", ext, s->ext_off,
                           s->ext_off + s->cluster > fsize ? "is beyond the end of the file"
                                                          : why);
        if (!prl_ext_load(bs, errp)) return false;
        /* a write through such an entry would overwrite the extension */
        g_autoptr(GHashTable) ext = rw && !check ? ext_clusters(s) : NULL;
        int64_t i = bat_in_extension(s, ext, 0);
        if (i >= 0)
            return fmt_err(errp, "parallels: BAT entry %" G_GINT64_FORMAT " (offset %"
                           G_GUINT64_FORMAT ") is a cluster of the Format Extension; run "
                           "'qemu-img check -r all'", i, prl_host(s, s->bat[i]));
    }
    s->data_end = used_end(s, fsize);
    if (rw && s->readonly_features)
        return fmt_err(errp, "parallels: '%s' has a necessary Format Extension feature this "
                       "driver does not know; it can only be opened read-only", fn);
    if (rw && s->unclean && !check)
        return fmt_err(errp, "parallels: Image was not closed correctly; cannot be opened "
                       "read/write");
    if (rw && !write_inuse(bs, PRL_INUSE_OPEN))
        return fmt_err(errp, "parallels: could not mark '%s' in use", fn);
    return true;
}

static void prl_close(QsBlock *bs)
{
    Prl *s = bs->opaque;
    if (!s->inited) return;
    /* data_end is set once open got past the extension: a failed open truncates nothing */
    if ((bs->flags & QS_BLOCK_RDWR) && s->bat && s->data_end && !s->unclean) {
        /* 0, not "closed": our writes did not update the extension's dirty bitmaps, and 0
         * tells extension-aware software exactly that. */
        write_inuse(bs, 0);
        if (s->data_end < bs->file->size)
            qs_block_truncate(bs->file, s->data_end, true, QS_PREALLOC_OFF, NULL);
    }
    g_free(s->bat);
    if (s->bitmaps) g_ptr_array_unref(s->bitmaps);
    g_mutex_clear(&s->lock);
}

/* Host offset of guest cluster idx, or FMT_UNALLOCATED. */
static uint64_t prl_lookup(QsBlock *bs, uint32_t idx)
{
    Prl *s = bs->opaque;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bat[idx];
    g_mutex_unlock(&s->lock);
    return e ? prl_host(s, e) : FMT_UNALLOCATED;
}

static int prl_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Prl *s = bs->opaque;
    return fmt_table_pread(bs, s->cluster, prl_lookup, off, len, buf);
}

static int set_bat(QsBlock *bs, uint32_t idx, uint32_t e)
{
    Prl *s = bs->opaque;
    uint8_t le[4];
    put_le32(le, e);
    int r = qs_block_pwrite(bs->file, PRL_HEADER_SIZE + (uint64_t)idx * 4, 4, le, 0);
    if (r == 0) s->bat[idx] = e;
    return r;
}

/* Under the lock: give cluster idx a host cluster holding buf at in (zeros elsewhere, or
 * the data of `copy_from` when nonzero). */
static int allocate(QsBlock *bs, uint32_t idx, uint64_t in, size_t n, const void *buf,
                    uint64_t copy_from)
{
    Prl *s = bs->opaque;
    uint64_t host = s->data_end;
    if (host / s->off_mult > UINT32_MAX) return -ENOSPC;
    int r = 0;
    if (copy_from) {
        g_autofree uint8_t *tmp = g_try_malloc(s->cluster);
        if (!tmp) return -ENOMEM;
        r = qs_block_pread(bs->file, copy_from, s->cluster, tmp);
        if (!r) r = qs_block_pwrite(bs->file, host, s->cluster, tmp, 0);
    } else {
        if (in) r = fmt_write_zeros(bs->file, host, in);
        if (!r) r = qs_block_pwrite(bs->file, host + in, n, buf, 0);
        if (!r && in + n < s->cluster)
            r = fmt_write_zeros(bs->file, host + in + n, s->cluster - in - n);
    }
    if (r < 0) return r;
    r = set_bat(bs, idx, (uint32_t)(host / s->off_mult));
    if (r == 0) s->data_end = host + s->cluster;
    return r;
}

static int prl_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    Prl *s = bs->opaque;
    const uint8_t *p = buf;
    while (len) {
        uint32_t idx = (uint32_t)(off / s->cluster);
        uint64_t in = off % s->cluster;
        size_t n = (size_t)MIN((uint64_t)len, s->cluster - in);
        g_mutex_lock(&s->lock);
        uint32_t e = s->bat[idx];
        int r = 0;
        if (!e) r = allocate(bs, idx, in, n, p, 0);
        g_mutex_unlock(&s->lock);
        if (e) r = qs_block_pwrite(bs->file, prl_host(s, e) + in, n, p, 0);
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int prl_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Prl *s = bs->opaque;
    return fmt_table_zero(bs, s->cluster, prl_lookup, off, len);
}

static int prl_flush(QsBlock *bs)
{
    return qs_block_flush(bs->file);
}

static int prl_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, QsBlock **file)
{
    Prl *s = bs->opaque;
    uint32_t idx = (uint32_t)(off / s->cluster);
    uint64_t in = off % s->cluster;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bat[idx];
    uint64_t n = s->cluster - in;
    for (uint32_t i = idx + 1; n < len && i < s->bat_entries; i++) {
        uint32_t f = s->bat[i];
        if (e ? prl_host(s, f) != prl_host(s, e) + (uint64_t)(i - idx) * s->cluster || !f
              : f != 0)
            break;
        n += s->cluster;
    }
    g_mutex_unlock(&s->lock);
    *pnum = MIN(n, len);
    if (!e) return 0;
    *map = prl_host(s, e) + in;
    *file = bs->file;
    return QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
}

typedef struct HostRef {
    uint64_t off;
    uint32_t idx;
} HostRef;

static int cmp_ref(const void *a, const void *b)
{
    const HostRef *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool prl_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    Prl *s = bs->opaque;
    bool fix_err = fix & QS_CHECK_FIX_ERRORS, fix_leaks = fix & QS_CHECK_FIX_LEAKS;
    const char *verb_err = fix_err ? "Repairing" : "ERROR";
    memset(res, 0, sizeof(*res));
    g_mutex_lock(&s->lock);
    uint64_t fsize = bs->file->size;
    int r = 0;
    if (s->unclean) {
        qs_block_message("%s image was not closed correctly\n", verb_err);
        res->corruptions++;
        if (fix_err) {
            res->corruptions_fixed++;
            s->unclean = false;   /* in_use is rewritten at close */
        }
    }
    /* entries pointing outside the data area */
    for (uint32_t i = 0; i < s->bat_entries && r == 0; i++) {
        if (!s->bat[i]) continue;
        const char *why;
        if (prl_cluster_ok(s, prl_host(s, s->bat[i]), fsize, &why)) continue;
        qs_block_message("%s cluster %u %s\n", verb_err, i,
                !strcmp(why, "is beyond the end of the file") ? "is outside image" : why);
        res->corruptions++;
        if (fix_err) {
            r = set_bat(bs, i, 0);
            if (r == 0) res->corruptions_fixed++;
        }
    }
    s->data_end = used_end(s, fsize);
    /* clusters shared by two entries: the later ones get a copy */
    g_autofree HostRef *refs = g_new(HostRef, MAX(s->bat_entries, 1u));
    uint32_t nref = 0;
    for (uint32_t i = 0; i < s->bat_entries; i++) {
        if (!s->bat[i]) continue;
        refs[nref].off = prl_host(s, s->bat[i]);
        refs[nref++].idx = i;
    }
    qsort(refs, nref, sizeof(*refs), cmp_ref);
    for (uint32_t k = 1; k < nref && r == 0; k++) {
        if (refs[k].off != refs[k - 1].off) continue;
        uint32_t first = refs[k - 1].idx;
        uint32_t j = k;
        while (j < nref && refs[j].off == refs[k - 1].off) {
            qs_block_message("%s cluster %u shares its host cluster (offset %" G_GUINT64_FORMAT
                    ") with cluster %u\n", verb_err, refs[j].idx, refs[j].off, first);
            res->corruptions++;
            if (fix_err) {
                if (!(bs->flags & QS_BLOCK_RDWR)) { r = -EACCES; break; }
                r = allocate(bs, refs[j].idx, 0, 0, NULL, refs[j].off);
                if (r == 0) res->corruptions_fixed++;
            }
            j++;
        }
        k = j;
    }
    /* clusters the Format Extension owns: the entry gets a copy, as a shared one does */
    g_autoptr(GHashTable) ext = ext_clusters(s);
    for (int64_t i = bat_in_extension(s, ext, 0); i >= 0 && r == 0;
         i = bat_in_extension(s, ext, (uint32_t)i + 1)) {
        uint64_t off = prl_host(s, s->bat[i]);
        qs_block_message("%s cluster %u shares its host cluster (offset %" G_GUINT64_FORMAT
                         ") with the Format Extension\n", verb_err, (uint32_t)i, off);
        res->corruptions++;
        if (fix_err) {
            if (!(bs->flags & QS_BLOCK_RDWR)) { r = -EACCES; break; }
            r = allocate(bs, (uint32_t)i, 0, 0, NULL, off);
            if (r == 0) res->corruptions_fixed++;
        }
    }
    if (r == 0 && res->corruptions_fixed) r = qs_block_flush(bs->file);
    /* statistics, the end of the used area and leaks after it */
    uint64_t high = 0, prev = 0;
    res->has_stats = true;
    res->total_clusters = s->bat_entries;
    for (uint32_t i = 0; i < s->bat_entries; i++) {
        uint64_t off = prl_host(s, s->bat[i]);
        if (!s->bat[i]) { prev = 0; continue; }
        res->allocated_clusters++;
        const char *why;
        if (prl_cluster_ok(s, off, fsize, &why)) high = MAX(high, off + s->cluster);
        if (prev && prev + s->cluster != off) res->fragmented_clusters++;
        prev = off;
    }
    uint64_t end = MAX(high, used_end(s, fsize));
    res->image_end_offset = (int64_t)end;
    if (fsize > end) {
        uint64_t count = div_up(fsize - end, s->cluster);
        qs_block_message("%s space leaked at the end of the image %" G_GUINT64_FORMAT "\n",
                fix_leaks ? "Repairing" : "ERROR", fsize - end);
        res->leaks += (int)count;
        if (fix_leaks && r == 0) {
            GError *e = NULL;
            if (qs_block_truncate(bs->file, end, true, QS_PREALLOC_OFF, &e)) {
                res->leaks_fixed += (int)count;
            } else {
                g_propagate_error(errp, e);
                g_mutex_unlock(&s->lock);
                return false;
            }
        }
    }
    s->data_end = MAX(end, s->data_off);
    g_mutex_unlock(&s->lock);
    if (r < 0) return fmt_errno(errp, r, "parallels: could not repair '%s'", bs->filename);
    return true;
}

/* Under the lock: write BAT entries [from, to) (zeros past s->bat_entries). */
static int write_bat(QsBlock *bs, uint32_t from, uint32_t to)
{
    Prl *s = bs->opaque;
    uint32_t buf[1024];
    for (uint64_t i = from; i < to;) {
        size_t n = (size_t)MIN(to - i, (uint64_t)G_N_ELEMENTS(buf));
        for (size_t j = 0; j < n; j++)
            buf[j] = GUINT32_TO_LE(i + j < s->bat_entries ? s->bat[i + j] : 0);
        int r = qs_block_pwrite(bs->file, PRL_HEADER_SIZE + i * 4, n * 4, buf, 0);
        if (r < 0) return r;
        i += n;
    }
    return 0;
}

/* Under the lock: shrinking to `ne` entries drops the clusters past them and moves the
 * last kept clusters into the holes, so the file can end after the last kept one. */
static int drop_and_pack(QsBlock *bs, uint32_t ne)
{
    Prl *s = bs->opaque;
    uint32_t old = s->bat_entries;
    g_autofree uint32_t *freed = g_new(uint32_t, MAX(old, 1u));
    g_autofree HostRef *kept = g_new(HostRef, MAX(old, 1u));
    uint32_t nf = 0, nk = 0;
    for (uint32_t i = 0; i < old; i++) {
        if (!s->bat[i]) continue;
        if (i >= ne) freed[nf++] = s->bat[i];
        else kept[nk++] = (HostRef){ prl_host(s, s->bat[i]), i };
    }
    qsort(freed, nf, 4, cmp_u32);
    qsort(kept, nk, sizeof(*kept), cmp_ref);
    int r = 0;
    for (uint32_t f = 0; f < nf && nk && r == 0; f++, nk--) {
        HostRef *k = &kept[nk - 1];
        if (k->off < prl_host(s, freed[f])) break;
        r = fmt_file_copy(bs->file, k->off, prl_host(s, freed[f]), s->cluster);
        if (r == 0) r = set_bat(bs, k->idx, freed[f]);
    }
    for (uint32_t i = ne; i < old; i++) s->bat[i] = 0;
    return r;
}

static int prl_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                        GError **errp)
{
    Prl *s = bs->opaque;
    int rc = fmt_check_resize("parallels", size, prealloc, errp);
    if (rc) return rc;
    uint64_t ne = div_up(size, s->cluster);
    if (ne > PRL_MAX_ENTRIES || (!s->ext_magic && size / 512 > UINT32_MAX)) {
        fmt_err(errp, "parallels: the new size %" G_GUINT64_FORMAT " is too large for a "
                "cluster size of %" G_GUINT64_FORMAT, size, s->cluster);
        return -EFBIG;
    }
    /* a BAT that outgrows data_off: the first clusters move to the end of the file
     * (data_off moves by whole clusters, so the others stay aligned to it) */
    uint64_t nd = s->data_off;
    if (PRL_HEADER_SIZE + ne * 4 > nd)
        nd += align_up(PRL_HEADER_SIZE + ne * 4 - nd, s->cluster);
    bool ext_in_way = s->ext_off && s->ext_off < nd;
    for (guint b = 0; s->bitmaps && b < s->bitmaps->len; b++) {
        PrlBitmap *bm = s->bitmaps->pdata[b];
        for (uint32_t j = 0; j < bm->l1_size; j++)
            if (bm->l1[j] > 1 && bm->l1[j] * 512 < nd) ext_in_way = true;
    }
    if (nd / 512 > UINT32_MAX || ext_in_way) {
        fmt_err(errp, "parallels: growing '%s' to %" G_GUINT64_FORMAT " bytes needs a BAT of "
                "%" G_GUINT64_FORMAT " entries, more than the %" G_GUINT64_FORMAT " that fit "
                "before data_off, and %s", bs->filename, size, ne,
                (s->data_off - PRL_HEADER_SIZE) / 4,
                ext_in_way ? "the Format Extension's clusters are in the way (not moved)"
                           : "data_off cannot move that far");
        return -ENOTSUP;
    }
    int r = 0;
    g_mutex_lock(&s->lock);
    uint32_t old = s->bat_entries;
    for (uint32_t i = 0; i < old && nd > s->data_off && r == 0; i++) {
        uint64_t host = prl_host(s, s->bat[i]);
        if (!s->bat[i] || host >= nd) continue;
        uint64_t to = MAX(s->data_end, nd);
        if (to / s->off_mult > UINT32_MAX) { r = -EFBIG; break; }
        r = fmt_file_copy(bs->file, host, to, s->cluster);
        s->bat[i] = (uint32_t)(to / s->off_mult);
        s->data_end = to + s->cluster;
    }
    if (r == 0 && nd > s->data_off) {
        r = qs_block_flush(bs->file);
        GError *e = NULL;
        if (r == 0 && bs->file->size < nd &&
            !qs_block_truncate(bs->file, nd, false, QS_PREALLOC_OFF, &e)) {
            g_error_free(e);
            r = -EIO;
        }
        if (r == 0) s->data_off = nd;
    }
    if (r == 0 && ne < old) {
        r = drop_and_pack(bs, (uint32_t)ne);
    } else if (r == 0 && ne > old) {
        uint32_t *m = g_try_renew(uint32_t, s->bat, ne);
        if (!m) r = -ENOMEM;
        else s->bat = m;
        for (uint32_t i = old; r == 0 && i < ne; i++) s->bat[i] = 0;
    }
    uint64_t in = size % s->cluster;
    if (r == 0 && size < bs->size && in && s->bat[ne - 1])
        r = fmt_write_zeros(bs->file, prl_host(s, s->bat[ne - 1]) + in, s->cluster - in);
    if (r == 0) {
        s->bat_entries = (uint32_t)ne;
        r = write_bat(bs, 0, MAX(old, (uint32_t)ne));
    }
    if (r == 0) {
        uint8_t h[PRL_HEADER_SIZE];
        r = qs_block_pread(bs->file, 0, sizeof(h), h);
        put_le32(h + H_CYLINDERS, (uint32_t)(size / 512 / 16 / 32));
        put_le32(h + H_BAT_ENTRIES, (uint32_t)ne);
        put_le32(h + H_DATA_OFF, (uint32_t)(s->data_off / 512));
        if (s->ext_magic) put_le64(h + H_NB_SECTORS, size / 512);
        else put_le32(h + H_NB_SECTORS, (uint32_t)(size / 512));
        if (r == 0) r = qs_block_pwrite(bs->file, 0, sizeof(h), h, 0);
    }
    /* the file ends after the last cluster in use */
    s->data_end = used_end(s, bs->file->size);
    GError *e = NULL;
    if (r == 0 && s->data_end < bs->file->size &&
        !qs_block_truncate(bs->file, s->data_end, true, QS_PREALLOC_OFF, &e)) {
        g_error_free(e);
        r = -EIO;
    }
    if (r == 0) r = qs_block_flush(bs->file);
    if (r == 0) bs->size = size;
    g_mutex_unlock(&s->lock);
    if (r < 0) fmt_errno(errp, r, "parallels: could not resize '%s'", bs->filename);
    return r;
}

static void prl_info(QsBlock *bs, JsonBuilder *b)
{
    Prl *s = bs->opaque;
    char uuid[37];
    if (!s->bitmaps || !s->bitmaps->len) return;   /* QEMU 7.2 shows nothing here */
    json_builder_set_member_name(b, "bitmaps");
    json_builder_begin_array(b);
    for (guint i = 0; s->bitmaps && i < s->bitmaps->len; i++) {
        PrlBitmap *bm = s->bitmaps->pdata[i];
        const uint8_t *u = bm->id;
        g_snprintf(uuid, sizeof(uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                   "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5], u[6],
                   u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, uuid);
        json_builder_set_member_name(b, "granularity");
        json_builder_add_int_value(b, (gint64)bm->granularity * 512);
        json_builder_set_member_name(b, "dirty-bytes");
        json_builder_add_int_value(b, (gint64)MIN(bm->dirty * bm->granularity * 512, bs->size));
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static const QsPropDesc prl_create_opts[] = {
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { "cluster_size", QS_PROP_SIZE, "1M", "Parallels image cluster size" },
    { NULL },
};

static bool prl_create(const char *filename, const QsOpts *o, GError **errp)
{
    uint64_t size = align_up(qs_opts_get_uint(o, "size"), 512);
    uint64_t cl = align_up(qs_opts_get_uint(o, "cluster_size"), 512);
    if (cl == 0 || size / cl >= (1ull << 32))
        return fmt_err(errp, "Image size is too large for this cluster size");
    if (cl / 512 > PRL_MAX_TRACKS)
        return fmt_err(errp, "parallels: cluster_size %" G_GUINT64_FORMAT " is too large (at "
                       "most %" G_GUINT64_FORMAT ")", cl, (uint64_t)PRL_MAX_TRACKS * 512);
    uint64_t entries = div_up(size, cl);
    if (entries > PRL_MAX_ENTRIES)
        return fmt_err(errp, "Image size is too large for this cluster size");
    uint64_t data_off = div_up(PRL_HEADER_SIZE + entries * 4, cl) * cl;
    uint8_t h[PRL_HEADER_SIZE] = { 0 };
    memcpy(h, MAGIC_EXT, 16);
    put_le32(h + H_VERSION, 2);
    put_le32(h + H_HEADS, 16);
    put_le32(h + H_CYLINDERS, (uint32_t)(size / 512 / 16 / 32));
    put_le32(h + H_TRACKS, (uint32_t)(cl / 512));
    put_le32(h + H_BAT_ENTRIES, (uint32_t)entries);
    put_le64(h + H_NB_SECTORS, size / 512);
    put_le32(h + H_DATA_OFF, (uint32_t)(data_off / 512));
    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    int r = qs_block_pwrite(f, 0, sizeof(h), h, 0);
    GError *e = NULL;
    if (r == 0 && !qs_block_truncate(f, data_off, false, QS_PREALLOC_OFF, &e)) {
        qs_block_close(f);
        g_propagate_error(errp, e);
        return false;
    }
    if (r == 0) r = qs_block_flush(f);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "parallels: could not write '%s'", filename);
    return true;
}

const QsBlockDriver qs_block_drv_parallels = {
    .name = "parallels",
    .desc = "Parallels expandable image (version 2)",
    .instance_size = sizeof(Prl),
    .probe = prl_probe,
    .create_opts = prl_create_opts,
    .create = prl_create,
    .open = prl_open,
    .close = prl_close,
    .pread = prl_pread,
    .pwrite = prl_pwrite,
    .pwrite_zeroes = prl_pwrite_zeroes,
    .flush = prl_flush,
    .truncate = prl_truncate,
    .block_status = prl_block_status,
    .check = prl_check,
    .info_specific = prl_info,
    .no_info = true,
};
