/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen: structure-aware image generator.  Builds a valid qcow2/vmdk/vdi/vpc image of
 * random geometry, then mutates header and table fields with type-limit values. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"
#include "../harnesses/harness.h"

typedef struct Field {
    const char *name;
    uint32_t off;        /* in the structure */
    uint8_t width;       /* 1, 2, 4, 8 bytes */
    bool be;             /* big-endian */
} Field;

/* A structure in the image: its fields and where it starts (found by `locate`). */
typedef struct Struct {
    const char *name;
    const Field *fields;
    unsigned n;
} Struct;

#define S(arr) arr, G_N_ELEMENTS(arr)

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

typedef struct Image {
    uint8_t *buf;
    gsize len;
    GRand *rng;
    GString *log;            /* what was mutated, for --verbose */
    uint64_t offsets[16];    /* interesting offsets seen (tables), for overlaps */
    unsigned n_offsets;
} Image;

static uint64_t get(const Image *im, uint64_t at, const Field *f)
{
    uint64_t v = 0;
    if (at + f->off + f->width > im->len) return 0;
    const uint8_t *p = im->buf + at + f->off;
    for (unsigned i = 0; i < f->width; i++)
        v |= (uint64_t)p[f->be ? f->width - 1 - i : i] << (8 * i);
    return v;
}

static void set(Image *im, uint64_t at, const Field *f, uint64_t v)
{
    if (at + f->off + f->width > im->len) return;
    uint8_t *p = im->buf + at + f->off;
    for (unsigned i = 0; i < f->width; i++)
        p[f->be ? f->width - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

static void note_offset(Image *im, uint64_t off)
{
    if (off && im->n_offsets < G_N_ELEMENTS(im->offsets)) im->offsets[im->n_offsets++] = off;
}

/* A value a parser must survive for a field of this width. */
static uint64_t limit_value(Image *im, const Field *f, uint64_t cur)
{
    uint64_t max = f->width == 8 ? UINT64_MAX : (1ull << (8 * f->width)) - 1;
    switch (g_rand_int_range(im->rng, 0, 16)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return max;
    case 3: return max >> 1;                       /* INT_MAX of the width */
    case 4: return (max >> 1) + 1;                 /* INT_MIN as unsigned */
    case 5: return 1ull << g_rand_int_range(im->rng, 0, 8 * f->width);
    case 6: return (1ull << 31) + (uint64_t)g_rand_int_range(im->rng, -1, 2);
    case 7: return (1ull << 32) + (uint64_t)g_rand_int_range(im->rng, -1, 2);
    case 8: return 1ull << 63;
    case 9: return cur + 1;
    case 10: return cur - 1;
    case 11: return (uint64_t)im->len;                                 /* end of file */
    case 12: return (uint64_t)im->len + (uint64_t)g_rand_int_range(im->rng, 1, 1 << 20);
    case 13: return im->n_offsets ? im->offsets[g_rand_int_range(im->rng, 0, (gint32)im->n_offsets)]
                                  : cur;                            /* overlap a table */
    case 14: return cur ^ (1ull << g_rand_int_range(im->rng, 0, 8 * f->width));
    default: return ((uint64_t)g_rand_int(im->rng) << 32 | g_rand_int(im->rng)) & max;
    }
}

static void mutate_struct(Image *im, uint64_t at, const Field *fields, unsigned n)
{
    const Field *f = &fields[g_rand_int_range(im->rng, 0, (gint32)n)];
    uint64_t cur = get(im, at, f);
    uint64_t v = limit_value(im, f, cur);
    set(im, at, f, v);
    g_string_append_printf(im->log, " %s@%#" G_GINT64_MODIFIER "x: %#" G_GINT64_MODIFIER
                           "x -> %#" G_GINT64_MODIFIER "x;", f->name, at + f->off, cur, get(im, at, f));
}

/* Mutate one of `count` entries of a table at `at` (entry size from the field). */
static void mutate_table(Image *im, uint64_t at, uint64_t count, const Field *entry)
{
    if (!at || at >= im->len || !count) return;
    count = MIN(count, (im->len - at) / entry->width);
    if (!count) return;
    uint64_t i = (uint64_t)g_rand_double_range(im->rng, 0, (double)count);
    mutate_struct(im, at + i * entry->width, entry, 1);
}

/* ---- per-format knowledge ---- */

static void mutate_qcow2(Image *im)
{
    uint64_t cb = get(im, 0, &qcow2_hdr[4]);
    uint64_t cs = cb >= 9 && cb <= 21 ? 1ull << cb : 65536;
    uint64_t l1 = get(im, 0, &qcow2_hdr[8]), l1n = get(im, 0, &qcow2_hdr[7]);
    uint64_t rt = get(im, 0, &qcow2_hdr[9]), rtc = get(im, 0, &qcow2_hdr[10]);
    uint64_t sn = get(im, 0, &qcow2_hdr[12]);
    uint64_t hl = get(im, 0, &qcow2_hdr[17]);
    note_offset(im, l1);
    note_offset(im, rt);
    note_offset(im, sn);
    uint64_t l2 = l1 + 8 <= im->len ? get(im, l1, &be64_entry[0]) & 0x00fffffffffffe00ull : 0;
    uint64_t rb = rt + 8 <= im->len ? get(im, rt, &be64_entry[0]) : 0;
    note_offset(im, l2);
    note_offset(im, rb);
    switch (g_rand_int_range(im->rng, 0, 7)) {
    case 0: case 1: mutate_struct(im, 0, S(qcow2_hdr)); break;
    case 2: mutate_table(im, l1, l1n, &be64_entry[0]); break;
    case 3: mutate_table(im, l2, cs / 8, &be64_entry[0]); break;
    case 4: mutate_table(im, rt, rtc * cs / 8, &be64_entry[0]); break;
    case 5: mutate_table(im, rb, cs / 2, &be16_entry[0]); break;
    default:
        if (sn && g_rand_boolean(im->rng)) mutate_struct(im, sn, S(qcow2_snap));
        else if (hl >= 72 && hl < im->len) mutate_struct(im, hl, S(qcow2_ext));
        else mutate_struct(im, 0, S(qcow2_hdr));
    }
}

static void mutate_vmdk(Image *im)
{
    if (im->len < 512 || memcmp(im->buf, "KDMV", 4)) return;
    uint64_t gd = get(im, 0, &vmdk_hdr[9]) * 512, rgd = get(im, 0, &vmdk_hdr[8]) * 512;
    uint64_t gtes = get(im, 0, &vmdk_hdr[7]);
    uint64_t desc = get(im, 0, &vmdk_hdr[5]) * 512, dsize = get(im, 0, &vmdk_hdr[6]) * 512;
    note_offset(im, gd / 512);
    note_offset(im, rgd / 512);
    uint64_t gt = gd + 4 <= im->len ? (uint64_t)get(im, gd, &le32_entry[0]) * 512 : 0;
    switch (g_rand_int_range(im->rng, 0, 5)) {
    case 0: case 1: mutate_struct(im, 0, S(vmdk_hdr)); break;
    case 2: mutate_table(im, g_rand_boolean(im->rng) ? gd : rgd, 64, &le32_entry[0]); break;
    case 3: mutate_table(im, gt, gtes ? gtes : 512, &le32_entry[0]); break;
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
    uint64_t bmap = get(im, 0, &vdi_hdr[4]), blocks = get(im, 0, &vdi_hdr[10]);
    note_offset(im, bmap);
    note_offset(im, get(im, 0, &vdi_hdr[5]));
    if (g_rand_int_range(im->rng, 0, 3)) mutate_struct(im, 0, S(vdi_hdr));
    else mutate_table(im, bmap, blocks, &le32_entry[0]);
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
    uint64_t dyn = get(im, foot, &vpc_footer[2]);
    uint64_t bat = dyn + 1024 <= im->len ? get(im, dyn, &vpc_dyn[1]) : 0;
    uint64_t n = dyn + 1024 <= im->len ? get(im, dyn, &vpc_dyn[3]) : 0;
    note_offset(im, dyn);
    note_offset(im, bat);
    switch (g_rand_int_range(im->rng, 0, 4)) {
    case 0: case 1: {
        uint64_t at = g_rand_boolean(im->rng) || !dyn ? foot : 0;
        mutate_struct(im, at, S(vpc_footer));
        if (at == 0 && dyn) memcpy(im->buf + foot, im->buf, 512);   /* keep the copies equal */
        break;
    }
    case 2: if (dyn + 1024 <= im->len) mutate_struct(im, dyn, S(vpc_dyn)); break;
    default: mutate_table(im, bat, n, &be32_entry[0]);
    }
    if (g_rand_int_range(im->rng, 0, 10)) {   /* usually past the checksum check */
        vhd_fix(im, 0);
        vhd_fix(im, foot);
    }
}

/* ---- valid images of random geometry ---- */

static const uint64_t sizes[] = { 512, 4096, 65536, 1 << 20, 4 << 20, 64 << 20, 1ull << 30,
                                  1ull << 40 };

static bool make_valid(const char *fmt, GRand *rng, const char *path, GError **errp)
{
    g_autoptr(GString) o = g_string_new("");
    uint64_t size = sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(sizes))];
    if (!strcmp(fmt, "qcow2")) {
        unsigned cb = (unsigned)g_rand_int_range(rng, 9, 17);
        unsigned rb = 1u << g_rand_int_range(rng, 0, 7);
        g_string_append_printf(o, "cluster_size=%u,refcount_bits=%u", 1u << cb, rb);
        if (g_rand_boolean(rng)) g_string_append(o, ",compat=0.10");
        else if (g_rand_boolean(rng)) g_string_append(o, ",lazy_refcounts=on");
        else if (g_rand_boolean(rng)) g_string_append(o, ",compression_type=zstd");
        if (!g_rand_int_range(rng, 0, 4)) g_string_append(o, ",backing_file=img,backing_fmt=raw");
    } else if (!strcmp(fmt, "vmdk")) {
        g_string_append(o, g_rand_boolean(rng) ? "subformat=monolithicSparse"
                                               : "subformat=streamOptimized");
        if (!g_rand_int_range(rng, 0, 3)) g_string_append(o, ",zeroed_grain=on");
    } else if (!strcmp(fmt, "vdi")) {
        size = MIN(size, (uint64_t)64 << 20);
    } else if (!strcmp(fmt, "vpc")) {
        bool fixed = !g_rand_int_range(rng, 0, 3);
        g_string_append(o, fixed ? "subformat=fixed" : "subformat=dynamic");
        size = fixed ? MIN(size, (uint64_t)65536) : MIN(size, (uint64_t)1 << 30);
        if (g_rand_boolean(rng)) g_string_append(o, ",force_size=on");
    }
    if (!qs_block_create(fmt, path, size, o->str, true, errp)) return false;
    QsBlock *bs = qs_block_open(path, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL, errp);
    if (!bs) return false;
    /* a little data: plain, zeroes, compressed (where supported), a snapshot */
    uint8_t data[4096];
    for (unsigned i = 0; i < sizeof(data); i++) data[i] = (uint8_t)g_rand_int(rng);
    unsigned writes = (unsigned)g_rand_int_range(rng, 0, 4);
    for (unsigned i = 0; i < writes && bs->size >= sizeof(data); i++) {
        uint64_t off = (uint64_t)g_rand_double_range(rng, 0, (double)(bs->size - sizeof(data)));
        off &= ~(uint64_t)511;
        switch (g_rand_int_range(rng, 0, 3)) {
        case 0: (void)qs_block_pwrite(bs, off, sizeof(data), data, 0); break;
        case 1: (void)qs_block_pwrite_zeroes(bs, off, sizeof(data), 0); break;
        default: {
            uint32_t cs = qs_block_cluster_size(bs);
            if (cs && cs <= 65536 && bs->size >= cs) {
                g_autofree uint8_t *c = g_malloc0(cs);
                memcpy(c, data, MIN((size_t)cs, sizeof(data)));
                (void)qs_block_pwrite_compressed(bs, off / cs * cs, cs, c);
            }
        }
        }
    }
    if (bs->drv->snapshot_create && g_rand_boolean(rng)) {
        GError *err = NULL;
        if (!bs->drv->snapshot_create(bs, "gen", &err)) g_clear_error(&err);
    }
    qs_block_close(bs);
    return true;
}

static void mutate(const char *fmt, Image *im, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        if (!strcmp(fmt, "qcow2")) mutate_qcow2(im);
        else if (!strcmp(fmt, "vmdk")) mutate_vmdk(im);
        else if (!strcmp(fmt, "vdi")) mutate_vdi(im);
        else if (!strcmp(fmt, "vpc")) mutate_vpc(im);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: qs-imggen FORMAT [--seed N] [--count N] [--out DIR] [--valid]\n"
                    "                 [--fuzz] [--verbose]\n"
                    "FORMAT: qcow2, vmdk, vdi or vpc.  Writes COUNT images gen-FORMAT-SEED-I to\n"
                    "DIR; --valid skips the mutations; --fuzz runs each image through the fuzz\n"
                    "harness in this process instead (a standalone fuzzer; the image being\n"
                    "run is kept in DIR/current until it passes).\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *fmt = argv[1], *out = ".";
    uint64_t seed = 1, count = 1;
    bool valid = false, fuzz = false, verbose = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = g_ascii_strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = g_ascii_strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--valid")) valid = true;
        else if (!strcmp(argv[i], "--fuzz")) fuzz = true;
        else if (!strcmp(argv[i], "--verbose")) verbose = true;
        else return usage();
    }
    if (strcmp(fmt, "qcow2") && strcmp(fmt, "vmdk") && strcmp(fmt, "vdi") && strcmp(fmt, "vpc")) {
        fprintf(stderr, "qs-imggen: unknown format '%s' (qcow2, vmdk, vdi, vpc)\n", fmt);
        return 2;
    }
    qs_block_init();
    if (g_mkdir_with_parents(out, 0755) < 0) {
        fprintf(stderr, "qs-imggen: cannot create '%s': %s\n", out, g_strerror(errno));
        return 1;
    }
    g_autofree char *tmp = g_build_filename(out, ".imggen-valid", NULL);
    unsigned made = 0;
    for (uint64_t i = 0; i < count; i++) {
        Image im = { .rng = g_rand_new_with_seed((guint32)(seed * 1000003u + i)),
                     .log = g_string_new("") };
        GError *err = NULL;
        if (!make_valid(fmt, im.rng, tmp, &err)) {
            fprintf(stderr, "qs-imggen: %s\n", err->message);
            g_error_free(err);
            g_rand_free(im.rng);
            g_string_free(im.log, TRUE);
            continue;
        }
        g_file_get_contents(tmp, (char **)&im.buf, &im.len, NULL);
        if (!valid) mutate(fmt, &im, (unsigned)g_rand_int_range(im.rng, 1, 4));
        g_autofree char *name = g_strdup_printf("gen-%s-%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT,
                                                fmt, seed, i);
        g_autofree char *path = g_build_filename(out, fuzz ? "current" : name, NULL);
        if (!g_file_set_contents(path, (const char *)im.buf, (gssize)im.len, &err)) {
            fprintf(stderr, "qs-imggen: %s\n", err->message);
            return 1;
        }
        if (verbose) printf("%s: %zu bytes;%s\n", name, (size_t)im.len, im.log->str);
        if (fuzz) bf_run_image(im.buf, im.len, fmt);
        made++;
        g_free(im.buf);
        g_rand_free(im.rng);
        g_string_free(im.log, TRUE);
    }
    g_unlink(tmp);
    if (fuzz) {
        g_autofree char *cur = g_build_filename(out, "current", NULL);
        g_unlink(cur);
    }
    printf("qs-imggen: %u %s images %s\n", made, fmt, fuzz ? "run through the harness" : "written");
    return 0;
}
