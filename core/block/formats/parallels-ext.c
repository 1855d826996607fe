/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The Parallels Format Extension cluster: magic, MD5 checksum, feature list and the
 * dirty bitmap feature (read only), each field validated against the image. */
#include "parallels.h"

#define EXT_HEAD 24u           /* magic + MD5 */
#define FEAT_HEAD 24u          /* magic, flags, data_size, unused */
#define BITMAP_HEAD 32u        /* size, id, granularity, l1_size */

void prl_bitmap_free(gpointer p)
{
    PrlBitmap *b = p;
    g_free(b->l1);
    g_free(b);
}

static uint64_t popcount_buf(const uint8_t *p, size_t n)
{
    uint64_t c = 0;
    for (size_t i = 0; i < n; i++) c += (uint64_t)__builtin_popcount(p[i]);
    return c;
}

/* Validate one dirty bitmap feature of data_size bytes at d. */
static bool load_bitmap(QsBlock *bs, const uint8_t *d, uint32_t data_size, GError **errp)
{
    Prl *s = bs->opaque;
    uint64_t fsize = bs->file->size;
    /* added first: a caller dropping a rejected feature removes the last entry */
    PrlBitmap *b = g_new0(PrlBitmap, 1);
    g_ptr_array_add(s->bitmaps, b);
    if (data_size < BITMAP_HEAD)
        return fmt_err(errp, "parallels: dirty bitmap feature data_size %u is smaller than "
                       "its header (%u)", data_size, BITMAP_HEAD);
    b->size = le64_at(d);
    memcpy(b->id, d + 8, 16);
    b->granularity = le32_at(d + 24);
    b->l1_size = le32_at(d + 28);
    uint64_t nb_sectors = bs->size / 512;
    if (b->size != nb_sectors)
        return fmt_err(errp, "parallels: dirty bitmap size %" G_GUINT64_FORMAT " differs from "
                       "the disk size (%" G_GUINT64_FORMAT " sectors)", b->size, nb_sectors);
    if (!is_pow2(b->granularity))
        return fmt_err(errp, "parallels: dirty bitmap granularity %u is not a power of two",
                       b->granularity);
    uint64_t bits = div_up(b->size, b->granularity);
    uint64_t bytes = div_up(bits, 8);
    uint64_t need = div_up(bytes, s->cluster);
    if (b->l1_size != need)
        return fmt_err(errp, "parallels: dirty bitmap l1_size %u, but %" G_GUINT64_FORMAT
                       " clusters hold its %" G_GUINT64_FORMAT " bits", b->l1_size, need, bits);
    if ((uint64_t)b->l1_size * 8 > data_size - BITMAP_HEAD)
        return fmt_err(errp, "parallels: dirty bitmap L1 table of %u entries does not fit in "
                       "its feature (data_size %u)", b->l1_size, data_size);
    b->l1 = g_new(uint64_t, MAX(b->l1_size, 1u));
    g_autofree uint8_t *cl = NULL;
    for (uint32_t i = 0; i < b->l1_size; i++) {
        uint64_t e = le64_at(d + BITMAP_HEAD + (size_t)i * 8);
        b->l1[i] = e;
        uint64_t in_this = MIN(s->cluster, bytes - (uint64_t)i * s->cluster);
        if (e == 0) continue;
        if (e == 1) {
            b->dirty += MIN(in_this * 8, bits - (uint64_t)i * s->cluster * 8);
            continue;
        }
        const char *why;
        if (e > UINT64_MAX / 512 || !prl_cluster_ok(s, e * 512, fsize, &why) ||
            e * 512 + s->cluster > fsize || e * 512 == s->ext_off)
            return fmt_err(errp, "parallels: dirty bitmap L1 entry %u (sector %" G_GUINT64_FORMAT
                           ") is not a valid cluster of the image", i, e);
        if (!cl && !(cl = g_try_malloc(s->cluster)))
            return fmt_err(errp, "parallels: cannot allocate a bitmap cluster");
        int r = qs_block_pread(bs->file, e * 512, (size_t)in_this, cl);
        if (r < 0) return fmt_errno(errp, r, "parallels: could not read a dirty bitmap cluster");
        uint64_t valid_bits = MIN(in_this * 8, bits - (uint64_t)i * s->cluster * 8);
        uint64_t full = valid_bits / 8;
        b->dirty += popcount_buf(cl, (size_t)full);
        if (valid_bits % 8)
            b->dirty += (uint64_t)__builtin_popcount(cl[full] & ((1u << (valid_bits % 8)) - 1));
    }
    return true;
}

bool prl_ext_load(QsBlock *bs, GError **errp)
{
    Prl *s = bs->opaque;
    s->bitmaps = g_ptr_array_new_with_free_func(prl_bitmap_free);
    if (s->cluster < EXT_HEAD + FEAT_HEAD)
        return fmt_err(errp, "parallels: cluster size %" G_GUINT64_FORMAT " is too small for a "
                       "Format Extension", s->cluster);
    g_autofree uint8_t *c = g_try_malloc(s->cluster);
    if (!c) return fmt_err(errp, "parallels: cannot allocate the Format Extension cluster");
    int r = qs_block_pread(bs->file, s->ext_off, s->cluster, c);
    if (r < 0) return fmt_errno(errp, r, "parallels: could not read the Format Extension");
    uint64_t magic = le64_at(c);
    if (magic != PRL_EXT_MAGIC)
        return fmt_err(errp, "parallels: Format Extension magic %#" G_GINT64_MODIFIER "x is "
                       "invalid", magic);
    uint8_t md5[16];
    gsize md5_len = sizeof(md5);
    GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
    g_checksum_update(ck, c + EXT_HEAD, s->cluster - EXT_HEAD);
    g_checksum_get_digest(ck, md5, &md5_len);
    g_checksum_free(ck);
    if (memcmp(md5, c + 8, 16))
        return fmt_err(errp, "parallels: Format Extension checksum (MD5) does not match");
    uint64_t pos = EXT_HEAD;
    for (unsigned n = 0;; n++) {
        if (pos + FEAT_HEAD > s->cluster)
            return fmt_err(errp, "parallels: Format Extension feature %u at %" G_GUINT64_FORMAT
                           " runs past the cluster (no end of features)", n, pos);
        uint64_t fmagic = le64_at(c + pos), flags = le64_at(c + pos + 8);
        uint32_t size = le32_at(c + pos + 16);
        if (fmagic == PRL_FEAT_END) {
            if (flags || size)
                return fmt_err(errp, "parallels: end-of-features record has flags %#"
                               G_GINT64_MODIFIER "x and data_size %u (must be 0)", flags, size);
            return true;
        }
        if (size > s->cluster - pos - FEAT_HEAD)
            return fmt_err(errp, "parallels: Format Extension feature %u data_size %u runs past "
                           "the cluster", n, size);
        const uint8_t *d = c + pos + FEAT_HEAD;
        if (fmagic == PRL_FEAT_BITMAP) {
            GError *e = NULL;
            if (!load_bitmap(bs, d, size, &e)) {
                if (flags & PRL_FEAT_NECESSARY) {
                    g_propagate_error(errp, e);
                    return false;
                }
                /* not necessary: the spec says to drop it */
                g_error_free(e);
                g_ptr_array_remove_index(s->bitmaps, s->bitmaps->len - 1);
            }
        } else if (flags & PRL_FEAT_NECESSARY) {
            s->readonly_features = true;
        }
        pos += FEAT_HEAD + align_up(size, 8);
    }
}
