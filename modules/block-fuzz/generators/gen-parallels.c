/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen: the parallels generator: valid images of random geometry (old or extended
 * magic, in_use, a Format Extension with dirty bitmaps), header/BAT/extension mutations. */
#include <string.h>
#include "imggen.h"

/* The header (docs/interop/parallels.txt of QEMU, core/block/formats/parallels.c):
 * all fields little-endian. */
enum { P_MAGIC = 0, P_VERSION = 16, P_TRACKS = 28, P_BAT_ENTRIES = 32, P_NB_SECTORS = 36,
       P_INUSE = 44, P_DATA_OFF = 48, P_EXT_OFF = 56, P_HEADER = 64 };
#define INUSE_CLOSED 0x312e3276u            /* "v2.1" */
#define EXT_MAGIC    0xab234cef23dcea87ull
#define FEAT_BITMAP  0x20385fae252cb34aull
#define FEAT_NECESSARY 1u

static const Field prl_hdr[] = {
    { "magic[0..8]", 0, 8, false }, { "magic[8..16]", 8, 8, false },
    { "version", 16, 4, false }, { "heads", 20, 4, false }, { "cylinders", 24, 4, false },
    { "tracks", 28, 4, false }, { "bat_entries", 32, 4, false },
    { "nb_sectors", 36, 8, false }, { "nb_sectors.lo", 36, 4, false },
    { "inuse", 44, 4, false }, { "data_off", 48, 4, false }, { "flags", 52, 4, false },
    { "ext_off", 56, 8, false },
};
static const Field prl_bat[] = { { "bat", 0, 4, false } };
/* The Format Extension cluster: magic, MD5 of the rest of the cluster, then features
 * (magic, flags, data_size, reserved, data); the dirty bitmap's data is size, id,
 * granularity, l1_size and the L1 entries. */
static const Field prl_ext[] = { { "ext.magic", 0, 8, false }, { "ext.md5", 8, 8, false } };
static const Field prl_feat[] = {
    { "feat.magic", 0, 8, false }, { "feat.flags", 8, 8, false },
    { "feat.data_size", 16, 4, false }, { "feat.reserved", 20, 4, false },
};
static const Field prl_bitmap[] = {
    { "bitmap.size", 24, 8, false }, { "bitmap.id", 32, 8, false },
    { "bitmap.granularity", 48, 4, false }, { "bitmap.l1_size", 52, 4, false },
    { "bitmap.l1[0]", 56, 8, false }, { "bitmap.l1[1]", 64, 8, false },
};
static const Field le32 = { "", 0, 4, false };

static const uint32_t tracks_choice[] = { 1, 2, 8, 63, 64, 128, 255, 256, 512 };

static bool make_parallels(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    uint32_t tracks = tracks_choice[g_rand_int_range(rng, 0, G_N_ELEMENTS(tracks_choice))];
    uint64_t cluster = (uint64_t)tracks * 512;
    /* up to 2^16 BAT entries (256 KiB of BAT), a size that is not always whole clusters */
    uint64_t entries = 1ull << g_rand_int_range(rng, 0, 17);
    uint64_t size = entries * cluster - (g_rand_boolean(rng) ? 0 : img_rand_below(rng, cluster) & ~511ull);
    g_autofree char *o = g_strdup_printf("cluster_size=%" G_GUINT64_FORMAT, cluster);
    return imggen_create("parallels", path, MAX(size, 512), o, false, rng, log, errp);
}

static void ext_md5(Image *im, uint64_t at, uint64_t cluster)
{
    if (at + cluster > im->len || cluster < 24) return;
    gsize n = 16;
    GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
    g_checksum_update(ck, im->buf + at + 24, cluster - 24);
    g_checksum_get_digest(ck, im->buf + at + 8, &n);
    g_checksum_free(ck);
}

static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }

/* The offset of the first feature record of the extension at ext with magic `magic`
 * (any feature when magic is 0), or 0. */
static uint64_t find_feature(const Image *im, uint64_t ext, uint64_t cluster, uint64_t magic)
{
    static const Field m = { "", 0, 8, false }, sz = { "", 16, 4, false };
    for (uint64_t pos = 24; pos + 24 <= cluster;) {
        uint64_t fm = img_get(im, ext + pos, &m);
        if (!fm) return 0;
        if (!magic || fm == magic) return ext + pos;
        pos += 24 + ((img_get(im, ext + pos, &sz) + 7) & ~7ull);
    }
    return 0;
}

/* Append a Format Extension cluster (and the clusters of its dirty bitmap) at the end. */
static void add_extension(Image *im, uint64_t cluster, uint64_t nb_sectors)
{
    /* a granularity that keeps the L1 table in the cluster with room for the records */
    uint64_t gran = 1ull << g_rand_int_range(im->rng, 0, 8), bits, bytes, l1;
    for (;;) {
        bits = (nb_sectors + gran - 1) / gran;
        bytes = (bits + 7) / 8;
        l1 = (bytes + cluster - 1) / cluster;
        if (l1 <= 4 && 24 + 24 + 32 + l1 * 8 + 24 + 32 <= cluster) break;
        if (gran >= (1ull << 31)) return;
        gran <<= 1;
    }
    uint64_t at = im->len;
    uint64_t n_bitmap_clusters = 0;
    im->buf = g_realloc(im->buf, im->len + cluster * (1 + l1));
    memset(im->buf + at, 0, cluster * (1 + l1));
    uint8_t *c = im->buf + at;
    put64(c, EXT_MAGIC);
    uint64_t pos = 24;
    if (!g_rand_int_range(im->rng, 0, 3)) {   /* an unknown feature a reader must skip */
        put64(c + pos, img_rand_below(im->rng, UINT64_MAX) | 2);
        put32(c + pos + 16, 8);
        put64(c + pos + 24, img_rand_below(im->rng, UINT64_MAX));
        pos += 32;
    }
    put64(c + pos, FEAT_BITMAP);
    put64(c + pos + 8, g_rand_boolean(im->rng) ? FEAT_NECESSARY : 0);
    put32(c + pos + 16, (uint32_t)(32 + l1 * 8));
    uint8_t *d = c + pos + 24;
    put64(d, nb_sectors);
    for (int i = 0; i < 16; i++) d[8 + i] = (uint8_t)g_rand_int(im->rng);
    put32(d + 24, (uint32_t)gran);
    put32(d + 28, (uint32_t)l1);
    for (uint64_t i = 0; i < l1; i++) {
        uint64_t e = (uint64_t)g_rand_int_range(im->rng, 0, 3);   /* 0, 1, or a cluster */
        if (e == 2) {
            uint64_t bc = at + cluster * ++n_bitmap_clusters;
            for (uint64_t b = 0; b < cluster; b++) im->buf[bc + b] = (uint8_t)g_rand_int(im->rng);
            e = bc / 512;
        }
        put64(d + 32 + i * 8, e);
    }
    /* the end-of-features record follows (zeros) */
    im->len += cluster * (1 + n_bitmap_clusters);
    put64(im->buf + P_EXT_OFF, at / 512);
    ext_md5(im, at, cluster);
}

static bool finish_parallels(Image *im, GError **errp)
{
    if (im->len < P_HEADER) return true;
    uint32_t tracks = (uint32_t)img_get(im, 0, &prl_hdr[5]);
    uint64_t cluster = (uint64_t)tracks * 512;
    uint64_t nb = img_get(im, 0, &prl_hdr[7]);
    uint32_t n = (uint32_t)img_get(im, 0, &prl_hdr[6]);
    uint64_t data_off = img_get(im, 0, &prl_hdr[10]) * 512;
    /* in_use: 0 (closed by QEMU) or "v2.1" (closed by extension-aware software) */
    if (g_rand_boolean(im->rng)) put32(im->buf + P_INUSE, INUSE_CLOSED);
    switch (g_rand_int_range(im->rng, 0, 3)) {
    case 0: {
        /* the old magic: BAT entries count sectors, nb_sectors is 32 bits */
        uint64_t max = 0;
        for (uint32_t i = 0; i < n && P_HEADER + 4ull * i + 4 <= im->len; i++)
            max = MAX(max, img_get(im, P_HEADER + 4ull * i, &le32) * tracks);
        if (max > UINT32_MAX || nb > UINT32_MAX || data_off % cluster) break;
        memcpy(im->buf, "WithoutFreeSpace", 16);
        for (uint32_t i = 0; i < n && P_HEADER + 4ull * i + 4 <= im->len; i++)
            img_set(im, P_HEADER + 4ull * i, &le32, img_get(im, P_HEADER + 4ull * i, &le32) * tracks);
        put32(im->buf + P_NB_SECTORS + 4, 0);
        break;
    }
    case 1:
        if (im->len % 512 == 0 && (im->len - data_off) % cluster == 0 && cluster >= 512)
            add_extension(im, cluster, nb);
        break;
    default:
        break;
    }
    return true;
}

static void mutate_parallels(Image *im)
{
    if (im->len < P_HEADER) return;
    uint32_t n = (uint32_t)img_get(im, 0, &prl_hdr[6]);
    uint64_t cluster = img_get(im, 0, &prl_hdr[5]) * 512;
    uint64_t ext = img_get(im, 0, &prl_hdr[12]) * 512;
    img_note_offset(im, img_get(im, 0, &prl_hdr[10]));
    img_note_offset(im, ext / 512);
    bool has_ext = ext && cluster && ext < im->len && cluster <= im->len - ext;
    switch (g_rand_int_range(im->rng, 0, has_ext ? 6 : 4)) {
    case 0: case 1:
        if (!g_rand_int_range(im->rng, 0, 8)) {   /* the other magic */
            bool old = !memcmp(im->buf, "WithoutFreeSpace", 16);
            memcpy(im->buf, old ? "WithouFreSpacExt" : "WithoutFreeSpace", 16);
            g_string_append_printf(im->log, " magic -> %s;", old ? "ext" : "old");
        } else {
            img_mutate_struct(im, 0, S(prl_hdr));
        }
        break;
    case 2: case 3: {
        /* a BAT entry: a limit value, another entry's value (shared cluster), data_off */
        if (!n || P_HEADER + 4 > im->len) break;
        uint64_t cnt = MIN((uint64_t)n, (im->len - P_HEADER) / 4);
        if (!cnt) break;
        uint64_t at = P_HEADER + 4 * img_rand_below(im->rng, cnt);
        static const Field e = { "bat", 0, 4, false };
        if (g_rand_boolean(im->rng))
            img_mutate_to(im, at, &e, img_get(im, P_HEADER + 4 * img_rand_below(im->rng, cnt), &le32));
        else
            img_mutate_table(im, P_HEADER, cnt, &prl_bat[0]);
        break;
    }
    default: {
        /* the extension: its header, the first feature, the dirty bitmap */
        uint64_t bm = find_feature(im, ext, cluster, FEAT_BITMAP);
        uint64_t any = find_feature(im, ext, cluster, 0);
        int which = g_rand_int_range(im->rng, 0, 4);
        if (which == 0 || !any) img_mutate_struct(im, ext, S(prl_ext));
        else if (which == 1 || !bm) img_mutate_struct(im, g_rand_boolean(im->rng) && bm ? bm : any,
                                                      S(prl_feat));
        else img_mutate_struct(im, bm, S(prl_bitmap));
        if (g_rand_int_range(im->rng, 0, 10)) ext_md5(im, ext, cluster);   /* usually valid */
        break;
    }
    }
}

const ImgFormat imggen_parallels = { "parallels", make_parallels, finish_parallels,
                                     mutate_parallels, false };
