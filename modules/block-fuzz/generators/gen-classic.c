/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen: the qcow2, vmdk, vdi and vpc generators: valid images of random geometry made
 * by the block layer, and their header and table fields for the mutations. */
#include <string.h>
#include "qs/block.h"
#include "imggen.h"

static const Field qcow2_hdr[] = {
    { "magic", 0, 4, true }, { "version", 4, 4, true }, { "backing_file_offset", 8, 8, true },
    { "backing_file_size", 16, 4, true }, { "cluster_bits", 20, 4, true },
    { "size", 24, 8, true }, { "crypt_method", 32, 4, true }, { "l1_size", 36, 4, true },
    { "l1_table_offset", 40, 8, true }, { "refcount_table_offset", 48, 8, true },
    { "refcount_table_clusters", 56, 4, true }, { "nb_snapshots", 60, 4, true },
    { "snapshots_offset", 64, 8, true }, { "incompatible_features", 72, 8, true },
    { "compatible_features", 80, 8, true }, { "autoclear_features", 88, 8, true },
    { "refcount_order", 96, 4, true }, { "header_length", 100, 4, true },
    { "compression_type", 104, 1, true },
};
static const Field qcow2_snap[] = {
    { "sn.l1_table_offset", 0, 8, true }, { "sn.l1_size", 8, 4, true },
    { "sn.id_str_size", 12, 2, true }, { "sn.name_size", 14, 2, true },
    { "sn.vm_state_size", 32, 4, true }, { "sn.extra_data_size", 36, 4, true },
};
static const Field qcow2_ext[] = { { "ext.type", 0, 4, true }, { "ext.length", 4, 4, true } };
static const Field be64_entry[] = { { "entry", 0, 8, true } };
static const Field be16_entry[] = { { "refcount", 0, 2, true } };
static const Field vmdk_hdr[] = {
    { "magic", 0, 4, false }, { "version", 4, 4, false }, { "flags", 8, 4, false },
    { "capacity", 12, 8, false }, { "grain_size", 20, 8, false },
    { "desc_offset", 28, 8, false }, { "desc_size", 36, 8, false },
    { "num_gtes_per_gt", 44, 4, false }, { "rgd_offset", 48, 8, false },
    { "gd_offset", 56, 8, false }, { "overhead", 64, 8, false },
    { "unclean_shutdown", 72, 1, false }, { "compress_algorithm", 77, 2, false },
};
static const Field le32_entry[] = { { "entry", 0, 4, false } };
static const Field vdi_hdr[] = {
    { "signature", 0x40, 4, false }, { "version", 0x44, 4, false },
    { "header_size", 0x48, 4, false }, { "image_type", 0x4c, 4, false },
    { "offset_bmap", 0x154, 4, false }, { "offset_data", 0x158, 4, false },
    { "sector_size", 0x168, 4, false }, { "disk_size", 0x170, 8, false },
    { "block_size", 0x178, 4, false }, { "block_extra", 0x17c, 4, false },
    { "blocks_in_image", 0x180, 4, false }, { "blocks_allocated", 0x184, 4, false },
};
static const Field vpc_footer[] = {
    { "features", 8, 4, true }, { "version", 12, 4, true }, { "data_offset", 16, 8, true },
    { "orig_size", 40, 8, true }, { "current_size", 48, 8, true }, { "cyls", 56, 2, true },
    { "heads", 58, 1, true }, { "secs", 59, 1, true }, { "disk_type", 60, 4, true },
};
static const Field vpc_dyn[] = {
    { "dyn.data_offset", 8, 8, true }, { "dyn.table_offset", 16, 8, true },
    { "dyn.version", 24, 4, true }, { "dyn.max_table_entries", 28, 4, true },
    { "dyn.block_size", 32, 4, true },
};
static const Field be32_entry[] = { { "entry", 0, 4, true } };

/* ---- per-format knowledge ---- */

static void mutate_qcow2(Image *im)
{
    uint64_t cb = img_get(im, 0, &qcow2_hdr[4]);
    uint64_t cs = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
    uint64_t l1 = img_get(im, 0, &qcow2_hdr[8]), l1n = img_get(im, 0, &qcow2_hdr[7]);
    uint64_t rt = img_get(im, 0, &qcow2_hdr[9]), rtc = img_get(im, 0, &qcow2_hdr[10]);
    uint64_t sn = img_get(im, 0, &qcow2_hdr[12]);
    uint64_t hl = img_get(im, 0, &qcow2_hdr[17]);
    img_note_offset(im, l1);
    img_note_offset(im, rt);
    img_note_offset(im, sn);
    uint64_t l2 = l1 + 8 <= im->len ? img_get(im, l1, &be64_entry[0]) & 0x00fffffffffffe00ull : 0;
    uint64_t rb = rt + 8 <= im->len ? img_get(im, rt, &be64_entry[0]) : 0;
    img_note_offset(im, l2);
    img_note_offset(im, rb);
    switch (g_rand_int_range(im->rng, 0, 7)) {
    case 0: case 1: img_mutate_struct(im, 0, S(qcow2_hdr)); break;
    case 2: img_mutate_table(im, l1, l1n, &be64_entry[0]); break;
    case 3: img_mutate_table(im, l2, cs / 8, &be64_entry[0]); break;
    case 4: img_mutate_table(im, rt, rtc * cs / 8, &be64_entry[0]); break;
    case 5: img_mutate_table(im, rb, cs / 2, &be16_entry[0]); break;
    default:
        if (sn && g_rand_boolean(im->rng)) img_mutate_struct(im, sn, S(qcow2_snap));
        else if (hl >= 72 && hl < im->len) img_mutate_struct(im, hl, S(qcow2_ext));
        else img_mutate_struct(im, 0, S(qcow2_hdr));
    }
}

static void mutate_vmdk(Image *im)
{
    if (im->len < 512 || memcmp(im->buf, "KDMV", 4)) return;
    uint64_t gd = img_get(im, 0, &vmdk_hdr[9]) * 512, rgd = img_get(im, 0, &vmdk_hdr[8]) * 512;
    uint64_t gtes = img_get(im, 0, &vmdk_hdr[7]);
    uint64_t desc = img_get(im, 0, &vmdk_hdr[5]) * 512, dsize = img_get(im, 0, &vmdk_hdr[6]) * 512;
    img_note_offset(im, gd / 512);
    img_note_offset(im, rgd / 512);
    uint64_t gt = gd + 4 <= im->len ? (uint64_t)img_get(im, gd, &le32_entry[0]) * 512 : 0;
    switch (g_rand_int_range(im->rng, 0, 5)) {
    case 0: case 1: img_mutate_struct(im, 0, S(vmdk_hdr)); break;
    case 2: img_mutate_table(im, g_rand_boolean(im->rng) ? gd : rgd, 64, &le32_entry[0]); break;
    case 3: img_mutate_table(im, gt, gtes ? gtes : 512, &le32_entry[0]); break;
    default:
        /* a number in the descriptor (extent sizes, CIDs, versions) becomes a limit */
        if (desc && desc < im->len && dsize) {
            uint64_t end = MIN(desc + dsize, (uint64_t)im->len);
            uint64_t p = desc + (uint64_t)g_rand_double_range(im->rng, 0, (double)(end - desc));
            while (p < end && !g_ascii_isdigit(im->buf[p])) p++;
            static const char *const lims[] = { "0", "1", "4294967295", "4294967296",
                "9223372036854775807", "18446744073709551615", "2147483648", "99999999999999999999" };
            const char *l = lims[g_rand_int_range(im->rng, 0, G_N_ELEMENTS(lims))];
            size_t q = (size_t)p, ll = strlen(l);
            while (q < end && g_ascii_isdigit(im->buf[q])) q++;
            if (p < end && q - p <= ll && p + ll <= end) {
                memcpy(im->buf + p, l, ll);
                g_string_append_printf(im->log, " descriptor@%#" G_GINT64_MODIFIER "x: %s;", p, l);
            }
        }
    }
}

static void mutate_vdi(Image *im)
{
    uint64_t bmap = img_get(im, 0, &vdi_hdr[4]), blocks = img_get(im, 0, &vdi_hdr[10]);
    img_note_offset(im, bmap);
    img_note_offset(im, img_get(im, 0, &vdi_hdr[5]));
    if (g_rand_int_range(im->rng, 0, 3)) img_mutate_struct(im, 0, S(vdi_hdr));
    else img_mutate_table(im, bmap, blocks, &le32_entry[0]);
}

static uint32_t vhd_checksum(const uint8_t *b, size_t len, size_t skip)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        if (i < skip || i >= skip + 4) sum += b[i];
    return ~sum;
}

static void vhd_fix(Image *im, uint64_t at)
{
    if (at + 512 > im->len || memcmp(im->buf + at, "conectix", 8)) return;
    uint32_t s = vhd_checksum(im->buf + at, 512, 64);
    uint8_t *p = im->buf + at + 64;
    p[0] = (uint8_t)(s >> 24); p[1] = (uint8_t)(s >> 16); p[2] = (uint8_t)(s >> 8); p[3] = (uint8_t)s;
}

static void mutate_vpc(Image *im)
{
    if (im->len < 512) return;
    uint64_t foot = im->len - 512;     /* the footer; dynamic images copy it at 0 */
    uint64_t dyn = img_get(im, foot, &vpc_footer[2]);
    uint64_t bat = dyn + 1024 <= im->len ? img_get(im, dyn, &vpc_dyn[1]) : 0;
    uint64_t n = dyn + 1024 <= im->len ? img_get(im, dyn, &vpc_dyn[3]) : 0;
    img_note_offset(im, dyn);
    img_note_offset(im, bat);
    switch (g_rand_int_range(im->rng, 0, 4)) {
    case 0: case 1: {
        uint64_t at = g_rand_boolean(im->rng) || !dyn ? foot : 0;
        img_mutate_struct(im, at, S(vpc_footer));
        if (at == 0 && dyn) memcpy(im->buf + foot, im->buf, 512);   /* keep the copies equal */
        break;
    }
    case 2: if (dyn + 1024 <= im->len) img_mutate_struct(im, dyn, S(vpc_dyn)); break;
    default: img_mutate_table(im, bat, n, &be32_entry[0]);
    }
    if (g_rand_int_range(im->rng, 0, 10)) {   /* usually past the checksum check */
        vhd_fix(im, 0);
        vhd_fix(im, foot);
    }
}

/* ---- valid images of random geometry ---- */

static const uint64_t sizes[] = { 512, 4096, 65536, 1 << 20, 4 << 20, 64 << 20, 1ull << 30,
                                  1ull << 40 };

bool imggen_create(const char *fmt, const char *path, uint64_t size, const char *opts,
                   bool snapshot, GRand *rng, GString *log, GError **errp)
{
    g_string_append_printf(log, " create %s size=%" G_GUINT64_FORMAT " %s;", fmt, size, opts);
    if (!qs_block_create(fmt, path, size, opts, true, errp)) return false;
    QsBlock *bs = qs_block_open(path, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL, errp);
    if (!bs) return false;
    /* a little data: plain, zeroes, compressed (where supported), a snapshot */
    uint8_t data[4096];
    for (unsigned i = 0; i < sizeof(data); i++) data[i] = (uint8_t)g_rand_int(rng);
    unsigned writes = (unsigned)g_rand_int_range(rng, 0, 4);
    for (unsigned i = 0; i < writes && bs->size >= sizeof(data); i++) {
        uint64_t off = img_rand_below(rng, bs->size - sizeof(data) + 1) & ~(uint64_t)511;
        switch (g_rand_int_range(rng, 0, 3)) {
        case 0:
            g_string_append_printf(log, " write@%#" G_GINT64_MODIFIER "x: %d;", off,
                                   qs_block_pwrite(bs, off, sizeof(data), data, 0));
            break;
        case 1:
            g_string_append_printf(log, " zeroes@%#" G_GINT64_MODIFIER "x: %d;", off,
                                   qs_block_pwrite_zeroes(bs, off, sizeof(data), 0));
            break;
        default: {
            uint32_t cs = qs_block_cluster_size(bs);
            if (bs->drv->pwrite_compressed && cs && cs <= 65536 && bs->size >= cs) {
                g_autofree uint8_t *c = g_malloc0(cs);
                memcpy(c, data, MIN((size_t)cs, sizeof(data)));
                g_string_append_printf(log, " compressed@%#" G_GINT64_MODIFIER "x: %d;",
                                       off / cs * cs,
                                       qs_block_pwrite_compressed(bs, off / cs * cs, cs, c));
            } else {
                g_string_append_printf(log, " write@%#" G_GINT64_MODIFIER "x: %d;", off,
                                       qs_block_pwrite(bs, off, sizeof(data), data, 0));
            }
        }
        }
    }
    if (bs->drv->snapshot_create && snapshot && g_rand_boolean(rng)) {
        GError *err = NULL;
        bool ok = bs->drv->snapshot_create(bs, "gen", &err);
        g_string_append_printf(log, " snapshot: %s;", ok ? "ok" : err->message);
        g_clear_error(&err);
    }
    qs_block_close(bs);
    return true;
}

static bool make_qcow2(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    g_autoptr(GString) o = g_string_new("");
    uint64_t size = sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
    unsigned cb = (unsigned)g_rand_int_range(rng, 9, 17);
    unsigned rb = 1u << g_rand_int_range(rng, 0, 7);
    /* an L1 table of at most 64 KiB: the image stays small enough for the harness */
    size = MIN(size, (uint64_t)1024 << (2 * cb));
    g_string_append_printf(o, "cluster_size=%u,refcount_bits=%u", 1u << cb, rb);
    if (rb == 16 && g_rand_boolean(rng)) g_string_append(o, ",compat=0.10");   /* v2 */
    else if (g_rand_boolean(rng)) g_string_append(o, ",lazy_refcounts=on");
    else if (g_rand_boolean(rng)) g_string_append(o, ",compression_type=zstd");
    /* a backing name does not fit in a 512-byte header cluster with the extensions */
    if (cb > 9 && !g_rand_int_range(rng, 0, 4))
        g_string_append(o, ",backing_file=img,backing_fmt=raw");
    /* a snapshot with 1-bit refcounts is refused (ERANGE) and must leave a clean image */
    return imggen_create("qcow2", path, size, o->str, true, rng, log, errp);
}

static bool make_vmdk(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    g_autoptr(GString) o = g_string_new("");
    uint64_t size = sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
    bool stream = g_rand_boolean(rng);
    g_string_append(o, stream ? "subformat=streamOptimized" : "subformat=monolithicSparse");
    /* grain tables take 2 KiB per 32 MiB (monolithicSparse: twice, streamOptimized: in its
     * footer): at most 16 GiB keeps them below the harness's input limit */
    size = MIN(size, (uint64_t)16 << 30);
    if (!g_rand_int_range(rng, 0, 3)) g_string_append(o, ",zeroed_grain=on");
    return imggen_create("vmdk", path, size, o->str, false, rng, log, errp);
}

static bool make_vdi(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    uint64_t size = sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
    return imggen_create("vdi", path, MIN(size, (uint64_t)64 << 20), "", false, rng, log, errp);
}

static bool make_vpc(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    g_autoptr(GString) o = g_string_new("");
    uint64_t size = sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
    bool fixed = !g_rand_int_range(rng, 0, 3);
    g_string_append(o, fixed ? "subformat=fixed" : "subformat=dynamic");
    size = fixed ? MIN(size, (uint64_t)65536) : MIN(size, (uint64_t)1 << 30);
    if (g_rand_boolean(rng)) g_string_append(o, ",force_size=on");
    return imggen_create("vpc", path, size, o->str, false, rng, log, errp);
}

const ImgFormat imggen_qcow2 = { "qcow2", make_qcow2, NULL, mutate_qcow2, false };
const ImgFormat imggen_vmdk = { "vmdk", make_vmdk, NULL, mutate_vmdk, false };
const ImgFormat imggen_vdi = { "vdi", make_vdi, NULL, mutate_vdi, false };
const ImgFormat imggen_vpc = { "vpc", make_vpc, NULL, mutate_vpc, false };
