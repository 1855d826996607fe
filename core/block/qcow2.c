/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The qcow2 driver: header parsing with field-by-field validation, header rewriting,
 * create, resize, amend, backing changes, measure and info (spec: QEMU's qcow2.txt). */
#include <errno.h>
#include <string.h>
#include "qcow2.h"

int qcow2_meta_write(Qcow2 *s, uint64_t off, const void *buf, size_t len)
{
    unsigned m = qcow2_overlaps(s, off, len);
    if (m & (m - 1)) return qcow2_refuse_overlap(s, m);
    return qs_block_pwrite(s->bs->file, off, len, buf, 0);
}

int qcow2_meta_read(Qcow2 *s, uint64_t off, void *buf, size_t len)
{
    return qs_block_pread(s->bs->file, off, len, buf);
}

size_t qcow2_in_file(Qcow2 *s, uint64_t off, size_t len)
{
    uint64_t file_len = s->bs->file->size;
    return off >= file_len ? 0 : (size_t)MIN((uint64_t)len, file_len - off);
}

int64_t qcow2_read_zeroed(Qcow2 *s, uint64_t off, void *buf, size_t len)
{
    if (off > (uint64_t)QS_BLOCK_MAX_SIZE || len > (uint64_t)QS_BLOCK_MAX_SIZE - off)
        return -EINVAL;
    size_t n = qcow2_in_file(s, off, len);
    int r = n ? qcow2_meta_read(s, off, buf, n) : 0;
    return r < 0 ? r : (int64_t)n;
}

void qcow2_signal_corruption(Qcow2 *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (s->corrupt_reported) return;
    s->corrupt_reported = true;
    if (s->bs->flags & QS_BLOCK_RDWR) {
        qs_block_message("qcow2: Marking image as corrupt: %s; further corruption events will "
                "be suppressed\n", msg);
        s->incompat |= QCOW2_INCOMPAT_CORRUPT;
        uint8_t b[8];
        put_be64(b, s->incompat);
        /* directly: the overlap check of qcow2_meta_write may be what is reporting */
        if (s->version >= 3) qs_block_pwrite(s->bs->file, 72, 8, b, 0);
    } else {
        qs_block_message("qcow2: Image is corrupt: %s; further non-fatal corruption events "
                "will be suppressed\n", msg);
    }
}

static int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len >= 8 && be32_at(buf) == QCOW2_MAGIC && be32_at(buf + 4) >= 2) return 100;
    return 0;
}

static const char *const feature_names[][3] = {
    /* type (0 incompat, 1 compat, 2 autoclear), bit, name */
    { "0", "0", "dirty bit" }, { "0", "1", "corrupt bit" }, { "0", "2", "external data file" },
    { "0", "3", "compression type" }, { "0", "4", "extended L2 entries" },
    { "1", "0", "lazy refcounts" }, { "2", "0", "bitmaps" }, { "2", "1", "raw external data" },
};

int qcow2_update_header(Qcow2 *s)
{
    QsBlock *bs = s->bs;
    uint64_t cs = s->cluster_size;
    g_autofree uint8_t *h = g_malloc0(cs);
    put_be32(h, QCOW2_MAGIC);
    put_be32(h + 4, s->version);
    put_be32(h + 20, s->cluster_bits);
    put_be64(h + 24, bs->size);
    put_be32(h + 36, s->l1_size);
    put_be64(h + 40, s->l1_offset);
    put_be64(h + 48, s->reftable_offset);
    put_be32(h + 56, s->reftable_clusters);
    put_be32(h + 60, s->nb_snapshots);
    put_be64(h + 64, s->snapshots_offset);
    uint64_t p = QCOW2_V2_HEADER;
    if (s->version >= 3) {
        put_be64(h + 72, s->incompat);
        put_be64(h + 80, s->compat);
        put_be64(h + 88, s->autoclear);
        put_be32(h + 96, s->refcount_order);
        put_be32(h + 100, 112);
        h[104] = (uint8_t)s->compression_type;
        p = 112;
    }
#define NEED(n) do { if (p + (n) > cs) return -ENOSPC; } while (0)
    if (bs->backing_fmt && bs->backing_file) {
        size_t l = strlen(bs->backing_fmt);
        NEED(8 + align_up(l, 8));
        put_be32(h + p, QCOW2_EXT_BACKING_FMT);
        put_be32(h + p + 4, (uint32_t)l);
        memcpy(h + p + 8, bs->backing_fmt, l);
        p += 8 + align_up(l, 8);
    }
    /* the feature name table, as QEMU writes it: version 3 only, and not with clusters of
     * 4 KiB or less (with 512-byte ones it would leave no room for a backing file name) */
    if (s->version >= 3 && cs > 4096) {
        NEED(8 + G_N_ELEMENTS(feature_names) * 48);
        put_be32(h + p, QCOW2_EXT_FEATURES);
        put_be32(h + p + 4, G_N_ELEMENTS(feature_names) * 48);
        p += 8;
        for (unsigned i = 0; i < G_N_ELEMENTS(feature_names); i++, p += 48) {
            h[p] = (uint8_t)atoi(feature_names[i][0]);
            h[p + 1] = (uint8_t)atoi(feature_names[i][1]);
            memcpy(h + p + 2, feature_names[i][2], strlen(feature_names[i][2]));
        }
    }
    for (guint i = 0; s->exts && i < s->exts->len; i++) {
        Qcow2Ext *e = s->exts->pdata[i];
        NEED(8 + align_up(e->len, 8));
        put_be32(h + p, e->type);
        put_be32(h + p + 4, e->len);
        if (e->len) memcpy(h + p + 8, e->data, e->len);   /* an empty one has no data */
        p += 8 + align_up(e->len, 8);
    }
    NEED(8);
    p += 8;   /* end of extensions */
    if (bs->backing_file) {
        size_t l = strlen(bs->backing_file);
        NEED(l);
        put_be64(h + 8, p);
        put_be32(h + 16, (uint32_t)l);
        memcpy(h + p, bs->backing_file, l);
        p += l;
    }
#undef NEED
    return qcow2_meta_write(s, 0, h, align_up(p, 512));
}

int qcow2_grow_l1(Qcow2 *s, uint64_t min_size)
{
    uint64_t cs = s->cluster_size;
    if (min_size <= s->l1_size) return 0;
    if (min_size * 8 > QCOW2_MAX_L1_BYTES) return -EFBIG;
    uint64_t bytes = min_size * 8;
    int64_t off = qcow2_alloc_clusters(s, div_up(bytes, cs));
    if (off < 0) return (int)off;
    g_autofree uint64_t *be = g_new0(uint64_t, min_size);
    for (uint32_t i = 0; i < s->l1_size; i++) be[i] = GUINT64_TO_BE(s->l1[i]);
    int r = qcow2_meta_write(s, (uint64_t)off, be, bytes);
    if (r < 0) return r;
    uint8_t h[12];
    put_be32(h, (uint32_t)min_size);
    put_be64(h + 4, (uint64_t)off);
    r = qcow2_meta_write(s, 36, h, sizeof(h));
    if (r < 0) return r;
    uint64_t old_off = s->l1_offset, old_bytes = (uint64_t)s->l1_size * 8;
    s->l1 = g_renew(uint64_t, s->l1, min_size);
    memset(s->l1 + s->l1_size, 0, (min_size - s->l1_size) * 8);
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = (uint64_t)off;
    if (old_bytes) r = qcow2_update_refcount(s, old_off, old_bytes, -1);
    return r;
}

static bool bad(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool bad(GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, QS_BLOCK_ERROR, EINVAL, m);
    return false;
}

static void ext_free(gpointer p)
{
    Qcow2Ext *e = p;
    g_free(e->data);
    g_free(e);
}

static bool parse_extensions(Qcow2 *s, const uint8_t *h, uint64_t start, uint64_t end,
                             GError **errp)
{
    QsBlock *bs = s->bs;
    uint64_t p = start;
    while (p + 8 <= end) {
        uint32_t type = be32_at(h + p), len = be32_at(h + p + 4);
        p += 8;
        if (type == QCOW2_EXT_END) return true;
        if (len > end - p) {
            return bad(errp, "Header extension %#x: length %u exceeds the header cluster "
                       "(at offset %" G_GUINT64_FORMAT ")", type, len, p - 8);
        }
        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (len > 1023) return bad(errp, "ERROR: ext_backing_format: len=%u too large", len);
            g_free(bs->backing_fmt);
            bs->backing_fmt = g_strndup((const char *)h + p, len);
            break;
        case QCOW2_EXT_FEATURES:
            break;   /* we write our own */
        case QCOW2_EXT_BITMAPS:
            if (len != 24) return bad(errp, "bitmaps_ext: Invalid extension length %u", len);
            s->nb_bitmaps = be32_at(h + p);
            s->bitmap_dir_size = be64_at(h + p + 8);
            s->bitmap_dir_offset = be64_at(h + p + 16);
            if (s->nb_bitmaps > 65535 || s->bitmap_dir_size > (64u << 20) ||
                (s->bitmap_dir_offset & (s->cluster_size - 1))) {
                return bad(errp, "bitmaps_ext: invalid bitmap directory (nb_bitmaps=%u "
                           "size=%" G_GUINT64_FORMAT " offset=%#" G_GINT64_MODIFIER "x)",
                           s->nb_bitmaps, s->bitmap_dir_size, s->bitmap_dir_offset);
            }
            G_GNUC_FALLTHROUGH;   /* kept as is */
        default: {
            Qcow2Ext *e = g_new0(Qcow2Ext, 1);
            e->type = type;
            e->len = len;
            e->data = g_memdup2(h + p, len);
            g_ptr_array_add(s->exts, e);
            break;
        }
        case QCOW2_EXT_CRYPTO:
            return bad(errp, "Encrypted qcow2 images are not supported");
        case QCOW2_EXT_DATA_FILE:
            return bad(errp, "qcow2 images with an external data file are not supported");
        }
        p += align_up(len, 8);
    }
    return true;
}

static bool qcow2_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Qcow2 *s = bs->opaque;
    s->bs = bs;
    g_mutex_init(&s->lock);
    g_cond_init(&s->alloc_done);
    s->inflight = g_array_new(FALSE, FALSE, sizeof(InFlight));
    s->exts = g_ptr_array_new_with_free_func(ext_free);
    const char *fn = bs->filename;
    uint8_t h0[QCOW2_V3_HEADER] = { 0 };
    if (bs->file->size < QCOW2_V2_HEADER)
        return bad(errp, "Image is not in qcow2 format ('%s' is %" G_GUINT64_FORMAT " bytes)",
                   fn, bs->file->size);
    int r = qs_block_pread(bs->file, 0, sizeof(h0), h0);
    if (r < 0) return bad(errp, "Could not read qcow2 header: %s", g_strerror(-r));
    if (be32_at(h0) != QCOW2_MAGIC) return bad(errp, "Image is not in qcow2 format");
    s->version = be32_at(h0 + 4);
    if (s->version < 2 || s->version > 3)
        return bad(errp, "Unsupported qcow2 version %u", s->version);
    s->cluster_bits = be32_at(h0 + 20);
    if (s->cluster_bits < 9 || s->cluster_bits > 21)
        return bad(errp, "Unsupported cluster size: 2^%u", s->cluster_bits);
    s->cluster_size = 1ull << s->cluster_bits;
    uint64_t cs = s->cluster_size;
    s->backing_offset = be64_at(h0 + 8);
    s->backing_size = be32_at(h0 + 16);
    bs->size = be64_at(h0 + 24);
    uint32_t crypt = be32_at(h0 + 32);
    s->l1_size = be32_at(h0 + 36);
    s->l1_offset = be64_at(h0 + 40);
    s->reftable_offset = be64_at(h0 + 48);
    s->reftable_clusters = be32_at(h0 + 56);
    s->nb_snapshots = be32_at(h0 + 60);
    s->snapshots_offset = be64_at(h0 + 64);
    s->refcount_order = 4;
    s->header_length = QCOW2_V2_HEADER;
    if (s->version >= 3) {
        s->incompat = be64_at(h0 + 72);
        s->compat = be64_at(h0 + 80);
        s->autoclear = be64_at(h0 + 88);
        s->refcount_order = be32_at(h0 + 96);
        s->header_length = be32_at(h0 + 100);
        if (s->header_length < QCOW2_V3_HEADER)
            return bad(errp, "qcow2 header too short: header_length=%u (at least %u)",
                       s->header_length, QCOW2_V3_HEADER);
        if (s->header_length > cs)
            return bad(errp, "qcow2 header exceeds cluster size: header_length=%u, cluster "
                       "size %" G_GUINT64_FORMAT, s->header_length, cs);
    }
    g_autofree uint8_t *h = g_malloc0(cs);
    r = qs_block_pread(bs->file, 0, MIN(cs, MAX(bs->file->size, (uint64_t)QCOW2_V3_HEADER)), h);
    if (r < 0) return bad(errp, "Could not read qcow2 header: %s", g_strerror(-r));
    if (s->header_length > QCOW2_V3_HEADER) s->compression_type = h[104];
    if (crypt) return bad(errp, "Encrypted qcow2 images are not supported (crypt_method=%u)",
                          crypt);
    if (s->incompat & ~QCOW2_INCOMPAT_KNOWN)
        return bad(errp, "Unsupported qcow2 feature(s): incompatible bits %#" G_GINT64_MODIFIER
                   "x", (uint64_t)(s->incompat & ~QCOW2_INCOMPAT_KNOWN));
    if (s->incompat & QCOW2_INCOMPAT_DATA_FILE)
        return bad(errp, "qcow2 images with an external data file are not supported");
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && (bs->flags & QS_BLOCK_RDWR))
        return bad(errp, "qcow2: Image is corrupt; cannot be opened read/write");
    if (s->refcount_order > 6)
        return bad(errp, "Reference count entry width too large; may not exceed 64 bits "
                   "(refcount_order=%u)", s->refcount_order);
    if (s->compression_type > COMP_ZSTD)
        return bad(errp, "qcow2: unknown compression type: %d", s->compression_type);
    if ((s->compression_type != COMP_ZLIB) != !!(s->incompat & QCOW2_INCOMPAT_COMPRESSION))
        return bad(errp, "qcow2: compression type %d does not match the incompatible "
                   "compression type bit", s->compression_type);
    s->ext_l2 = !!(s->incompat & QCOW2_INCOMPAT_EXTL2);
    if (s->ext_l2 && s->cluster_bits < 14)
        return bad(errp, "Extended L2 entries are only supported with cluster sizes of at "
                   "least 16384 bytes (cluster_bits=%u)", s->cluster_bits);
    s->l2e_size = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->subcluster_size = s->ext_l2 ? cs / 32 : cs;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << s->refcount_order)) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ull << s->csize_shift) - 1;
    if (bs->size > (uint64_t)QS_BLOCK_MAX_SIZE)
        return bad(errp, "Image size %" G_GUINT64_FORMAT " is too large", bs->size);

    /* header extensions, then the backing file name */
    uint64_t ext_end = cs;
    if (s->backing_offset && s->backing_offset < ext_end) ext_end = s->backing_offset;
    if (!parse_extensions(s, h, s->header_length, ext_end, errp)) return false;
    if (s->backing_offset) {
        if (s->backing_size > QCOW2_MAX_BACKING_NAME)
            return bad(errp, "Backing file name too long (backing_file_size=%u, at most %u)",
                       s->backing_size, QCOW2_MAX_BACKING_NAME);
        if (s->backing_offset > cs || s->backing_size > cs - s->backing_offset)
            return bad(errp, "Invalid backing file offset %#" G_GINT64_MODIFIER "x (size %u)",
                       s->backing_offset, s->backing_size);
        bs->backing_file = g_strndup((const char *)h + s->backing_offset, s->backing_size);
        if (!*bs->backing_file) g_clear_pointer(&bs->backing_file, g_free);
    }

    /* L1 table */
    uint64_t l2_span = s->l2_entries * cs;
    uint64_t need_l1 = div_up(bs->size, l2_span);
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES)
        return bad(errp, "Active L1 table too large: l1_size=%u (at most %u entries)",
                   s->l1_size, QCOW2_MAX_L1_BYTES / 8);
    if (need_l1 > s->l1_size)
        return bad(errp, "L1 table is too small: l1_size=%u, the disk size needs %"
                   G_GUINT64_FORMAT, s->l1_size, need_l1);
    if (s->l1_size && ((s->l1_offset & (cs - 1)) || !s->l1_offset || s->l1_offset >> 56))
        return bad(errp, "Invalid L1 table offset %#" G_GINT64_MODIFIER "x", s->l1_offset);
    s->l1 = g_new0(uint64_t, MAX(s->l1_size, 1u));
    if (s->l1_size) {
        /* entries past the end of the file stay zeros, untouched (no page faults) */
        int64_t got = qcow2_read_zeroed(s, s->l1_offset, s->l1, (size_t)s->l1_size * 8);
        if (got < 0) return bad(errp, "Could not read L1 table: %s", g_strerror((int)-got));
        for (uint64_t i = 0; i < ((uint64_t)got + 7) / 8; i++) s->l1[i] = GUINT64_FROM_BE(s->l1[i]);
    }

    /* refcount table */
    if ((uint64_t)s->reftable_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
        return bad(errp, "Reference count table too large: refcount_table_clusters=%u",
                   s->reftable_clusters);
    if (!s->reftable_clusters || !s->reftable_offset || (s->reftable_offset & (cs - 1)) ||
        s->reftable_offset >> 56)
        return bad(errp, "Invalid reference count table offset %#" G_GINT64_MODIFIER "x "
                   "(clusters %u)", s->reftable_offset, s->reftable_clusters);
    s->reftable_entries = (uint64_t)s->reftable_clusters * cs / 8;
    s->reftable = g_new0(uint64_t, s->reftable_entries);
    int64_t got = qcow2_read_zeroed(s, s->reftable_offset, s->reftable, s->reftable_entries * 8);
    if (got < 0) return bad(errp, "Could not read refcount table: %s", g_strerror((int)-got));
    for (uint64_t i = 0; i < ((uint64_t)got + 7) / 8; i++)
        s->reftable[i] = GUINT64_FROM_BE(s->reftable[i]);

    if (qcow2_read_snapshots(s, errp) < 0) return false;

    unsigned n = (unsigned)CLAMP((8u << 20) / cs, 16u, 4096u);
    qcow2_cache_init(&s->l2_cache, n, cs);
    qcow2_refcount_init(s);
    s->alloc_end = div_up(bs->file->size, cs);
    s->meta_prealloc = -1;

    if (bs->flags & QS_BLOCK_RDWR) {
        if ((s->incompat & QCOW2_INCOMPAT_DIRTY) && !(bs->flags & QS_BLOCK_CHECK)) {
            QsBlockCheckResult res;
            GError *e = NULL;
            if (!qcow2_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &e)) {
                g_propagate_prefixed_error(errp, e, "Could not repair dirty image: ");
                return false;
            }
            s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
            if (qcow2_update_header(s) < 0) return bad(errp, "Could not update qcow2 header");
        }
        if (s->autoclear && s->version >= 3) {
            /* we do not maintain bitmaps: their extension becomes invalid */
            s->autoclear = 0;
            uint8_t b[8] = { 0 };
            if (qcow2_meta_write(s, 88, b, 8) < 0) return bad(errp, "Could not update qcow2 header");
        }
    }
    return true;
}

static void qcow2_close(QsBlock *bs)
{
    Qcow2 *s = bs->opaque;
    if (!s->bs) return;
    if (bs->flags & QS_BLOCK_RDWR) qs_block_flush(bs->file);
    qcow2_free_snapshots(s);
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    g_free(s->l1);
    g_free(s->reftable);
    qcow2_overlap_free(s);
    if (s->exts) g_ptr_array_free(s->exts, TRUE);
    if (s->inflight) g_array_free(s->inflight, TRUE);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->alloc_done);
}

static int qcow2_flush(QsBlock *bs)
{
    return qs_block_flush(bs->file);
}

static int qcow2_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc p,
                          GError **errp)
{
    Qcow2 *s = bs->opaque;
    uint64_t old = bs->size;
    int r = 0;
    if (size < old) {
        if (!shrink) {
            bad(errp, "qcow2 doesn't support shrinking images yet");   /* as without --shrink */
            return -ENOTSUP;
        }
        if (s->nb_snapshots) {
            bad(errp, "Can't resize an image which has snapshots");
            return -ENOTSUP;
        }
        r = qcow2_pdiscard(bs, align_up(size, s->cluster_size), old - align_up(size, s->cluster_size));
        if (r < 0) goto fail;
    }
    g_mutex_lock(&s->lock);
    uint64_t need = div_up(size, s->l2_entries * s->cluster_size);
    r = qcow2_grow_l1(s, need);
    if (r == 0) {
        uint8_t b[8];
        put_be64(b, size);
        r = qcow2_meta_write(s, 24, b, 8);
    }
    g_mutex_unlock(&s->lock);
    if (r < 0) goto fail;
    bs->size = size;
    if (size > old && p != QS_PREALLOC_OFF) {
        r = qcow2_preallocate(s, old, size, p);
        if (r < 0) goto fail;
    }
    return 0;
fail:
    if (errp && !*errp) bad(errp, "Could not resize image: %s", g_strerror(-r));
    return r;
}

static bool qcow2_change_backing(QsBlock *bs, const char *file, const char *fmt, GError **errp)
{
    Qcow2 *s = bs->opaque;
    if (file && strlen(file) > QCOW2_MAX_BACKING_NAME)
        return bad(errp, "Backing file name too long (%zu bytes, at most %u)", strlen(file),
                   QCOW2_MAX_BACKING_NAME);
    char *of = bs->backing_file, *ofmt = bs->backing_fmt;
    bs->backing_file = file && *file ? g_strdup(file) : NULL;
    bs->backing_fmt = bs->backing_file && fmt ? g_strdup(fmt) : NULL;
    g_mutex_lock(&s->lock);
    int r = qcow2_update_header(s);
    g_mutex_unlock(&s->lock);
    if (r < 0) {
        g_free(bs->backing_file);
        g_free(bs->backing_fmt);
        bs->backing_file = of;
        bs->backing_fmt = ofmt;
        return bad(errp, "Could not change the backing file to '%s': %s", file ? file : "",
                   r == -ENOSPC ? "the header cluster is full" : g_strerror(-r));
    }
    g_free(of);
    g_free(ofmt);
    return true;
}

static int64_t qcow2_allocated_size(QsBlock *bs)
{
    return qs_block_allocated_size(bs->file);
}

static uint32_t qcow2_cluster_size(QsBlock *bs)
{
    return (uint32_t)((Qcow2 *)bs->opaque)->cluster_size;
}

static bool qcow2_is_dirty(QsBlock *bs)
{
    return !!(((Qcow2 *)bs->opaque)->incompat & QCOW2_INCOMPAT_DIRTY);
}

static void qcow2_info(QsBlock *bs, JsonBuilder *b)
{
    Qcow2 *s = bs->opaque;
    json_builder_set_member_name(b, "compat");
    json_builder_add_string_value(b, s->version >= 3 ? "1.1" : "0.10");
    json_builder_set_member_name(b, "compression-type");
    json_builder_add_string_value(b, s->compression_type == COMP_ZSTD ? "zstd" : "zlib");
    if (s->version >= 3) {
        json_builder_set_member_name(b, "lazy-refcounts");
        json_builder_add_boolean_value(b, !!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS));
    }
    json_builder_set_member_name(b, "refcount-bits");
    json_builder_add_int_value(b, 1 << s->refcount_order);
    if (s->version >= 3) {
        json_builder_set_member_name(b, "corrupt");
        json_builder_add_boolean_value(b, !!(s->incompat & QCOW2_INCOMPAT_CORRUPT));
        json_builder_set_member_name(b, "extended-l2");
        json_builder_add_boolean_value(b, s->ext_l2);
    }
}

static const QsPropDesc qcow2_create_opts[] = {
    { "backing_file", QS_PROP_STRING, NULL, "File name of a base image" },
    { "backing_fmt", QS_PROP_STRING, NULL, "Image format of the base image" },
    { "cluster_size", QS_PROP_SIZE, NULL, "qcow2 cluster size" },
    { "compat", QS_PROP_STRING, NULL, "Compatibility level (v2 [0.10] or v3 [1.1])" },
    { "compression_type", QS_PROP_STRING, NULL, "Compression method used for image cluster compression" },
    { "data_file", QS_PROP_STRING, NULL, "File name of an external data file" },
    { "data_file_raw", QS_PROP_BOOL, NULL, "The external data file must stay valid as a raw image" },
    { "encrypt.cipher-alg", QS_PROP_STRING, NULL, "Name of encryption cipher algorithm" },
    { "encrypt.cipher-mode", QS_PROP_STRING, NULL, "Name of encryption cipher mode" },
    { "encrypt.format", QS_PROP_STRING, NULL, "Encrypt the image, format choices: 'aes', 'luks'" },
    { "encrypt.hash-alg", QS_PROP_STRING, NULL, "Name of encryption hash algorithm" },
    { "encrypt.iter-time", QS_PROP_UINT, NULL, "Time to spend in PBKDF in milliseconds" },
    { "encrypt.ivgen-alg", QS_PROP_STRING, NULL, "Name of IV generator algorithm" },
    { "encrypt.ivgen-hash-alg", QS_PROP_STRING, NULL, "Name of IV generator hash algorithm" },
    { "encrypt.key-secret", QS_PROP_STRING, NULL, "ID of secret providing qcow AES key or LUKS passphrase" },
    { "encryption", QS_PROP_BOOL, NULL, "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
    { "extended_l2", QS_PROP_BOOL, NULL, "Extended L2 tables" },
    { "extent_size_hint", QS_PROP_SIZE, NULL, "Extent size hint for the image file, 0 to disable" },
    { "lazy_refcounts", QS_PROP_BOOL, NULL, "Postpone refcount updates" },
    { "nocow", QS_PROP_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)" },
    { "preallocation", QS_PROP_STRING, NULL, "Preallocation mode (allowed values: off, metadata, falloc, full)" },
    { "refcount_bits", QS_PROP_UINT, NULL, "Width of a reference count entry in bits" },
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { NULL },
};

typedef struct CreateParams {
    uint32_t version, cluster_bits, refcount_order;
    bool ext_l2, lazy;
    int comp;
    QsPrealloc prealloc;
} CreateParams;

static bool parse_params(const QsOpts *o, CreateParams *p, GError **errp)
{
    *p = (CreateParams){ .version = 3, .cluster_bits = 16, .refcount_order = 4 };
    const char *compat = qs_opts_get_str(o, "compat");
    if (compat) {
        if (!strcmp(compat, "0.10") || !strcmp(compat, "v2")) p->version = 2;
        else if (!strcmp(compat, "1.1") || !strcmp(compat, "v3")) p->version = 3;
        else return bad(errp, "Invalid compatibility level: '%s'", compat);
    }
    if (qs_opts_has(o, "cluster_size")) {
        uint64_t c = qs_opts_get_uint(o, "cluster_size");
        if (c < 512 || c > (2u << 20) || (c & (c - 1)))
            return bad(errp, "Cluster size must be a power of two between 512 and 2048k");
        p->cluster_bits = (uint32_t)g_bit_nth_lsf(c, -1);
    }
    if (qs_opts_has(o, "refcount_bits")) {
        uint64_t b = qs_opts_get_uint(o, "refcount_bits");
        if (!b || b > 64 || (b & (b - 1)))
            return bad(errp, "Refcount width must be a power of two and may not exceed 64 bits");
        p->refcount_order = (uint32_t)g_bit_nth_lsf(b, -1);
        if (p->version < 3 && b != 16)
            return bad(errp, "Different refcount widths than 16 bits require compatibility "
                       "level 1.1 or above (use compat=1.1 or greater)");
    }
    p->lazy = qs_opts_get_bool(o, "lazy_refcounts");
    if (p->lazy && p->version < 3)
        return bad(errp, "Lazy refcounts only supported with compatibility level 1.1 and "
                   "above (use compat=1.1 or greater)");
    p->ext_l2 = qs_opts_get_bool(o, "extended_l2");
    if (p->ext_l2) {
        if (p->version < 3)
            return bad(errp, "Extended L2 entries are only supported with compatibility "
                       "level 1.1 and above (use compat=1.1 or greater)");
        if (p->cluster_bits < 14)
            return bad(errp, "Extended L2 entries are only supported with cluster sizes of "
                       "at least 16384 bytes");
    }
    const char *ct = qs_opts_get_str(o, "compression_type");
    if (ct) {
        if (!strcmp(ct, "zlib")) p->comp = COMP_ZLIB;
        else if (!strcmp(ct, "zstd")) p->comp = COMP_ZSTD;
        else return bad(errp, "Invalid parameter '%s'", ct);
        if (p->comp != COMP_ZLIB && p->version < 3)
            return bad(errp, "Non-zlib compression type is only supported with compatibility "
                       "level 1.1 and above (use compat=1.1 or greater)");
    }
    const char *pa = qs_opts_get_str(o, "preallocation");
    if (pa && !qs_prealloc_parse(pa, &p->prealloc))
        return bad(errp, "Invalid parameter '%s'", pa);
    if (qs_opts_get_str(o, "data_file") || qs_opts_get_bool(o, "data_file_raw"))
        return bad(errp, "External data files are not supported by this qemu-img");
    if (qs_opts_get_str(o, "encrypt.format") || qs_opts_get_bool(o, "encryption") ||
        qs_opts_get_str(o, "encrypt.key-secret"))
        return bad(errp, "Encrypted qcow2 images are not supported by this qemu-img");
    return true;
}

static bool qcow2_create(const char *filename, const QsOpts *o, GError **errp)
{
    CreateParams p;
    if (!parse_params(o, &p, errp)) return false;
    const char *backing = qs_opts_get_str(o, "backing_file");
    const char *bfmt = qs_opts_get_str(o, "backing_fmt");
    if (bfmt && !backing) return bad(errp, "Backing format cannot be used without backing file");
    if (backing && p.prealloc != QS_PREALLOC_OFF && !p.ext_l2)
        return bad(errp, "Backing file and preallocation can only be used at the same time "
                   "if extended_l2 is on");
    uint64_t size = qs_opts_get_uint(o, "size");
    uint64_t cs = 1ull << p.cluster_bits;
    if (!qs_block_create("file", filename, 0, "", true, errp)) return false;

    /* header, refcount table, one refcount block describing these three clusters */
    QsBlock *f = qs_block_open_file(filename, QS_BLOCK_RDWR, errp);
    if (!f) return false;
    g_autofree uint8_t *buf = g_malloc0(3 * cs);
    put_be32(buf, QCOW2_MAGIC);
    put_be32(buf + 4, p.version);
    put_be32(buf + 20, p.cluster_bits);
    put_be64(buf + 48, cs);
    put_be32(buf + 56, 1);
    uint64_t hend = QCOW2_V2_HEADER;
    if (p.version >= 3) {
        uint64_t incompat = (p.ext_l2 ? QCOW2_INCOMPAT_EXTL2 : 0) |
                            (p.comp ? QCOW2_INCOMPAT_COMPRESSION : 0);
        put_be64(buf + 72, incompat);
        put_be64(buf + 80, p.lazy ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0);
        put_be32(buf + 96, p.refcount_order);
        put_be32(buf + 100, 112);
        buf[104] = (uint8_t)p.comp;
        hend = 112;
    }
    (void)hend;   /* extensions are written by the header update after open */
    put_be64(buf + cs, 2 * cs);
    Qcow2 tmp = { .refcount_order = p.refcount_order };
    for (int i = 0; i < 3; i++) qcow2_rb_set(&tmp, buf + 2 * cs, (uint64_t)i, 1);
    int r = qs_block_pwrite(f, 0, 3 * cs, buf, 0);
    qs_block_close(f);
    if (r < 0) return bad(errp, "Could not write qcow2 header: %s", g_strerror(-r));

    QsBlock *bs = qs_block_open(filename, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL,
                                errp);
    if (!bs) return false;
    Qcow2 *s = bs->opaque;
    g_mutex_lock(&s->lock);
    r = qcow2_update_header(s);   /* adds the feature table */
    g_mutex_unlock(&s->lock);
    bool ok = r == 0;
    if (!ok) bad(errp, "Could not write qcow2 header: %s", g_strerror(-r));
    if (ok && qcow2_truncate(bs, size, false, QS_PREALLOC_OFF, errp) < 0) ok = false;
    if (ok && backing && !qcow2_change_backing(bs, backing, bfmt, errp)) ok = false;
    if (ok && p.prealloc != QS_PREALLOC_OFF) {
        r = qcow2_preallocate(s, 0, size, p.prealloc);
        if (r < 0) ok = bad(errp, "Could not preallocate: %s", g_strerror(-r));
    }
    qs_block_close(bs);
    return ok;
}

/* QEMU's formula: header + L2 + L1 + refcount metadata for a fully allocated image. */
static uint64_t prealloc_size(uint64_t size, uint32_t cluster_bits, uint32_t refcount_order,
                              bool ext_l2)
{
    uint64_t cs = 1ull << cluster_bits, l2e = ext_l2 ? 16 : 8;
    uint64_t aligned = align_up(size, cs);
    uint64_t meta = cs;
    uint64_t nl2e = align_up(aligned / cs, cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = align_up(nl2e * l2e / cs, cs / 8);
    meta += nl1e * 8;
    meta += qcow2_refcount_metadata_size((meta + aligned) / cs, cs, refcount_order);
    return meta + aligned;
}

static bool qcow2_measure(const QsOpts *o, QsBlock *in, uint64_t size, uint64_t *required,
                          uint64_t *fully, GError **errp)
{
    CreateParams p;
    if (o && !parse_params(o, &p, errp)) return false;
    if (!o) p = (CreateParams){ .version = 3, .cluster_bits = 16, .refcount_order = 4 };
    uint64_t cs = 1ull << p.cluster_bits;
    uint64_t vsize = in ? in->size : size;
    uint64_t data = 0;
    if (in) {
        uint64_t last_end = 0;
        for (uint64_t off = 0; off < vsize;) {
            uint64_t n;
            int r = qs_block_status_above(in, NULL, off, vsize - off, &n, NULL, NULL, NULL);
            if (r < 0) return bad(errp, "Could not get block status of '%s': %s", in->filename,
                                  g_strerror(-r));
            if ((r & QS_BS_DATA) && !(r & QS_BS_ZERO)) {
                uint64_t a = MAX(align_down(off, cs), last_end), b = align_up(off + n, cs);
                if (b > a) data += b - a;
                last_end = b;
            }
            off += n;
        }
    }
    *fully = prealloc_size(vsize, p.cluster_bits, p.refcount_order, p.ext_l2);
    *required = *fully - align_up(vsize, cs) + (p.prealloc == QS_PREALLOC_OFF ||
                                               p.prealloc == QS_PREALLOC_METADATA
                                               ? data : align_up(vsize, cs));
    return true;
}

/* Turn zero clusters into unallocated ones (downgrade to v2 without a backing file). */
static int expand_zero_clusters(Qcow2 *s)
{
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & L1E_OFFSET_MASK;
        if (!l2) continue;
        int err = 0;
        uint8_t *t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
        if (!t) return err;
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = l2_get(s, t, j);
            ClusterType ty = qcow2_entry_type(s, e);
            if (ty != C_ZERO_PLAIN && ty != C_ZERO_ALLOC) continue;
            l2_set(s, t, j, 0, 0);
            int r = qcow2_meta_write(s, l2 + j * 8, t + j * 8, 8);
            if (r == 0) r = qcow2_free_entry(s, e);
            if (r < 0) return r;
            t = qcow2_cache_get(s, &s->l2_cache, l2, false, &err);
            if (!t) return err;
        }
    }
    return 0;
}

static bool qcow2_amend(QsBlock *bs, const QsOpts *o, GError **errp)
{
    Qcow2 *s = bs->opaque;
    CreateParams p;
    if (!parse_params(o, &p, errp)) return false;
    if (qs_opts_has(o, "cluster_size") && p.cluster_bits != s->cluster_bits)
        return bad(errp, "Changing the cluster size is not supported");
    if (qs_opts_has(o, "extended_l2") && p.ext_l2 != s->ext_l2)
        return bad(errp, "Toggling extended L2 entries is not supported");
    if (qs_opts_has(o, "compression_type") && p.comp != s->compression_type)
        return bad(errp, "Changing the compression type is not supported");
    if (qs_opts_has(o, "preallocation"))
        return bad(errp, "Cannot change preallocation mode");
    if (qs_opts_has(o, "refcount_bits") && p.refcount_order != s->refcount_order)
        return bad(errp, "Changing refcount_bits is not supported by this qemu-img");
    int r = 0;
    bool want_lazy = qs_opts_has(o, "lazy_refcounts") ? p.lazy
                     : !!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
    uint32_t want_version = qs_opts_has(o, "compat") ? p.version : s->version;
    if (want_version < 3 && want_lazy)
        return bad(errp, "Lazy refcounts only supported with compatibility level 1.1 and above "
                   "(use compat=1.1 or greater)");
    g_mutex_lock(&s->lock);
    if (want_version < s->version) {
        if (s->ext_l2 || s->refcount_order != 4 || s->compression_type != COMP_ZLIB) {
            g_mutex_unlock(&s->lock);
            return bad(errp, "Cannot downgrade an image with extended L2 entries, a refcount "
                       "width other than 16 bits or zstd compression");
        }
        if (bs->backing_file || s->nb_snapshots) {
            /* zero clusters would read from the backing file (or snapshots share them) */
            bool has_zero = false;
            for (uint32_t i = 0; i < s->l1_size && !has_zero; i++) {
                uint64_t l2 = s->l1[i] & L1E_OFFSET_MASK;
                int err = 0;
                uint8_t *t = l2 ? qcow2_cache_get(s, &s->l2_cache, l2, false, &err) : NULL;
                for (uint64_t j = 0; t && j < s->l2_entries; j++) {
                    ClusterType ty = qcow2_entry_type(s, l2_get(s, t, j));
                    if (ty == C_ZERO_PLAIN || ty == C_ZERO_ALLOC) { has_zero = true; break; }
                }
            }
            if (has_zero) {
                g_mutex_unlock(&s->lock);
                return bad(errp, "Cannot downgrade an image with zero clusters and a backing "
                           "file or snapshots");
            }
        } else {
            r = expand_zero_clusters(s);
        }
        if (r == 0) {
            s->version = want_version;
            s->incompat = s->compat = s->autoclear = 0;
            r = qcow2_update_header(s);
        }
    } else if (want_version > s->version || want_lazy != !!(s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS)) {
        s->version = want_version;
        s->compat = want_lazy ? s->compat | QCOW2_COMPAT_LAZY_REFCOUNTS
                              : s->compat & ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        r = qcow2_update_header(s);
    }
    g_mutex_unlock(&s->lock);
    if (r < 0) return bad(errp, "Could not amend '%s': %s", bs->filename, g_strerror(-r));
    if (qs_opts_has(o, "backing_file") || qs_opts_has(o, "backing_fmt")) {
        const char *bf = qs_opts_has(o, "backing_file") ? qs_opts_get_str(o, "backing_file")
                                                        : bs->backing_file;
        const char *bfmt = qs_opts_has(o, "backing_fmt") ? qs_opts_get_str(o, "backing_fmt")
                                                         : bs->backing_fmt;
        g_autofree char *bfc = g_strdup(bf), *bfmtc = g_strdup(bfmt);
        if (!qcow2_change_backing(bs, bfc, bfmtc, errp)) return false;
    }
    if (qs_opts_has(o, "size")) {
        uint64_t size = qs_opts_get_uint(o, "size");
        if (size != bs->size && qcow2_truncate(bs, size, true, QS_PREALLOC_OFF, errp) < 0)
            return false;
    }
    return true;
}

const QsBlockDriver qs_block_drv_qcow2 = {
    .name = "qcow2",
    .desc = "QEMU copy-on-write image, versions 2 and 3",
    .instance_size = sizeof(Qcow2),
    .probe = qcow2_probe,
    .create_opts = qcow2_create_opts,
    .create = qcow2_create,
    .open = qcow2_open,
    .close = qcow2_close,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .pwrite_compressed = qcow2_pwrite_compressed,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .pdiscard = qcow2_pdiscard,
    .flush = qcow2_flush,
    .truncate = qcow2_truncate,
    .block_status = qcow2_block_status,
    .allocated_size = qcow2_allocated_size,
    .check = qcow2_check,
    .info_specific = qcow2_info,
    .cluster_size = qcow2_cluster_size,
    .is_dirty = qcow2_is_dirty,
    .snapshot_list = qcow2_snapshot_list,
    .snapshot_create = qcow2_snapshot_create,
    .snapshot_apply = qcow2_snapshot_apply,
    .snapshot_delete = qcow2_snapshot_delete,
    .amend = qcow2_amend,
    .change_backing = qcow2_change_backing,
    .make_empty = qcow2_make_empty,
    .measure = qcow2_measure,
};
