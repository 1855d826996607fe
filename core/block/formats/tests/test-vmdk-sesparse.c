/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vmdk seSparse extents: a hand-built image (every grain entry kind, a grain index past
 * 4095, a parent), and hostile variants of every header, directory and table field, plus
 * seeded random flips.  Runs under ASan+UBSan. */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *tmpdir;

#define FAIL(...) do { g_printerr(__VA_ARGS__); g_printerr("\n"); g_test_fail(); } while (0)
#define MiB (1u << 20)
#define CAP 131072u                    /* sectors: 64 MiB, 4 grain directory entries */
#define GD_OFF 4u                      /* sectors */
#define GT_OFF 5u
#define N_GT 2u
#define GRAINS_OFF (GT_OFF + N_GT * 64u)
#define N_GRAINS 4100u
#define IMG_LEN ((size_t)512 * (GRAINS_OFF + N_GRAINS * 8u))

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t alloc_entry(uint64_t g)
{
    return (3ull << 60) | ((g & 0xfff) << 48) | (g >> 12);
}

static void gte(uint8_t *img, unsigned table, unsigned k, uint64_t v)
{
    put_le(img + ((size_t)(GT_OFF + table * 64) * 512 + k * 8), v, 8);
}

static uint8_t grain_byte(unsigned g)
{
    return (uint8_t)(g % 250 + 1);
}

/* The extent: constant header, volatile header, journal header and journal (1 sector
 * each), a one-sector directory, two grain tables and 4100 grains.  Directory entries
 * 0 and 2 have tables; grains: 0 data(0), 1 zero, 2 unmapped, 3 data(4097), 4 data(1),
 * 5 data(2); table 1 entry 10 data(3). */
static uint8_t *build(void)
{
    uint8_t *img = g_malloc0(IMG_LEN);
    static const uint64_t h[] = {
        0xcafebabe, 0x200000001, CAP, 8, 64, 0, 0, 0, 0, 0,
        1, 1, 2, 1, 3, 1, GD_OFF, 1, GT_OFF, N_GT * 64, 0, 0, 0, 0, GRAINS_OFF, N_GRAINS * 8,
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(h); i++) put_le(img + i * 8, h[i], 8);
    put_le(img + 512, 0xcafecafe, 8);
    put_le(img + GD_OFF * 512, 0x1000000000000000ull, 8);
    put_le(img + GD_OFF * 512 + 16, 0x1000000000000001ull, 8);
    gte(img, 0, 0, alloc_entry(0));
    gte(img, 0, 1, 2ull << 60);
    gte(img, 0, 2, 1ull << 60);
    gte(img, 0, 3, alloc_entry(4097));
    gte(img, 0, 4, alloc_entry(1));
    gte(img, 0, 5, alloc_entry(2));
    gte(img, 1, 10, alloc_entry(3));
    static const unsigned used[] = { 0, 1, 2, 3, 4097 };
    for (unsigned i = 0; i < G_N_ELEMENTS(used); i++)
        memset(img + (size_t)(GRAINS_OFF + used[i] * 8) * 512, grain_byte(used[i]), 4096);
    return img;
}

static void write_file(const char *fn, const void *data, size_t len)
{
    FILE *f = fopen(fn, "wb");
    g_assert_nonnull(f);
    g_assert_cmpuint(fwrite(data, 1, len, f), ==, len);
    g_assert_cmpint(fclose(f), ==, 0);
}

/* The descriptor naming the extent "ses-s001.vmdk" (capacity `cap`), optionally a parent. */
static char *write_desc(uint64_t cap, const char *parent)
{
    g_autofree char *p = parent ? g_strdup_printf("parentFileNameHint=\"%s\"\n", parent)
                                : g_strdup("");
    g_autofree char *d = g_strdup_printf(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        "createType=\"seSparse\"\n%s\n# Extent description\nRW %" G_GUINT64_FORMAT
        " SESPARSE \"ses-s001.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n"
        "ddb.virtualHWVersion = \"4\"\n", p, cap);
    char *fn = path("ses.vmdk");
    write_file(fn, d, strlen(d));
    return fn;
}

static int byte_at(QsBlock *bs, uint64_t off, int *r)
{
    uint8_t b = 0xcc;
    *r = qs_block_pread(bs, off, 1, &b);
    return b;
}

/* offset -> expected byte (-1: from the parent) */
static const struct { uint64_t off; int want; } expect[] = {
    { 0, 1 }, { 4095, 1 }, { 4096, 0 }, { 8192, 0 }, { 12288, 98 }, { 16384, 2 },
    { 20480, 3 }, { 24576, -1 }, { 16 * MiB, -1 }, { 32 * MiB + 10 * 4096, 4 },
    { 32 * MiB + 11 * 4096, -1 }, { 64 * MiB - 1, -1 },
};

static void test_read(void)
{
    g_autofree uint8_t *img = build();
    g_autofree char *ext = path("ses-s001.vmdk");
    write_file(ext, img, IMG_LEN);
    GError *err = NULL;
    for (int with_parent = 0; with_parent < 2; with_parent++) {
        g_autofree char *parent = path("parent.vmdk");
        if (with_parent) {
            g_assert_true(qs_block_create("vmdk", parent, 64 * MiB, "", true, &err));
            QsBlock *pb = qs_block_open(parent, "vmdk", QS_BLOCK_RDWR, NULL, &err);
            g_assert_no_error(err);
            g_autofree uint8_t *fill = g_malloc(64 * MiB);
            memset(fill, 0xee, 64 * MiB);
            g_assert_cmpint(qs_block_pwrite(pb, 0, 64 * MiB, fill, 0), ==, 0);
            qs_block_close(pb);
        }
        g_autofree char *desc = write_desc(CAP, with_parent ? "parent.vmdk" : NULL);
        QsBlock *bs = qs_block_open(desc, "vmdk", 0, NULL, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(bs->size, ==, 64 * MiB);
        for (unsigned i = 0; i < G_N_ELEMENTS(expect); i++) {
            int r, want = expect[i].want < 0 ? (with_parent ? 0xee : 0) : expect[i].want;
            int got = byte_at(bs, expect[i].off, &r);
            if (r || got != want)
                FAIL("seSparse read at %" G_GUINT64_FORMAT " (parent %d): %d, r %d, expected %d",
                     expect[i].off, with_parent, got, r, want);
        }
        /* one read across every kind of grain and both tables */
        g_autofree uint8_t *all = g_malloc(34 * MiB);
        g_assert_cmpint(qs_block_pread(bs, 0, 34 * MiB, all), ==, 0);
        g_assert_cmpint(all[12288 + 4095], ==, 98);
        g_assert_cmpint(all[32 * MiB + 10 * 4096 + 17], ==, 4);
        g_assert_cmpint(all[30 * MiB], ==, with_parent ? 0xee : 0);
        /* block status: data, zero, unallocated */
        uint64_t pnum, map;
        QsBlock *file;
        int st = qs_block_status(bs, 4096, 8192, &pnum, &map, &file);
        g_assert_cmpint(st & QS_BS_ZERO, ==, QS_BS_ZERO);
        /* a grain of the parent is not zeros (the layer would not read it then); with
         * no parent it is */
        st = qs_block_status(bs, 24576, 4096, &pnum, &map, &file);
        g_assert_cmpint(st, >=, 0);
        g_assert_cmpint(st & QS_BS_ZERO, ==, with_parent ? 0 : QS_BS_ZERO);
        qs_block_close(bs);
        /* no write support */
        bs = qs_block_open(desc, "vmdk", QS_BLOCK_RDWR, NULL, &err);
        g_assert_null(bs);
        g_assert_nonnull(strstr(err->message, "read-only"));
        g_clear_error(&err);
        g_unlink(desc);
        if (with_parent) g_unlink(parent);
    }
    g_unlink(ext);
}

typedef struct {
    const char *name;
    size_t off;
    uint64_t v;
    const char *open_error;   /* NULL: opens, and reading offset `read_at` fails */
    uint64_t read_at;
} Hostile;

static const Hostile hostile[] = {
    { "magic", 0, 0xcafebabf, "constant header magic" },
    { "version", 8, 0x100000001, "unsupported version" },
    { "capacity", 16, 1ull << 62, "capacity of" },
    { "grain-0", 24, 0, "grain size 0" },
    { "grain-16", 24, 16, "grain size 16" },
    { "gt-size-0", 32, 0, "grain table size 0" },
    { "gt-size-huge", 32, 1ull << 40, "grain table size" },
    { "flags", 40, 1, "flags" },
    { "reserved", 64, 1, "reserved" },
    { "padding", 400, 1, "header padding" },
    { "volatile-at-header", 80, 0, "volatile header region" },
    { "volatile-past-end", 80, 1ull << 50, "volatile header region" },
    { "volatile-size-wraps", 88, UINT64_MAX, "volatile header region" },
    { "gd-past-end", 128, 1ull << 40, "grain directory region" },
    { "gd-size-wraps", 136, UINT64_MAX - 2, "grain directory region" },
    { "gd-size-0", 136, 0, "grain directory region" },
    { "gt-region-wraps", 152, UINT64_MAX, "grain tables region" },
    { "grains-at-header", 192, 0, "grains region" },
    { "grains-past-end", 192, 1ull << 60, "grains region" },
    { "volatile-magic", 512, 0xcafebabe, "volatile header magic" },
    { "dirty-journal", 512 + 24, 1, "dirty" },
    { "volatile-padding", 512 + 200, 7, "volatile header padding" },
    { "gd-entry-type", GD_OFF * 512, 0x2000000000000000ull, "grain directory entry 0" },
    { "gd-entry-index", GD_OFF * 512 + 8, 0x1000000000000002ull, "grain directory entry 1" },
    { "gd-entry-low-bits", GD_OFF * 512, 0x1000000100000000ull, "grain directory entry 0" },
    /* grain table entries are judged when used */
    { "gte-type-4", GT_OFF * 512, 4ull << 60, NULL, 0 },
    { "gte-type-15", GT_OFF * 512 + 8, 15ull << 60, NULL, 4096 },
    { "gte-unallocated-bits", GT_OFF * 512, 5, NULL, 0 },
    { "gte-grain-past-region", GT_OFF * 512, 0x3000000000001000ull, NULL, 0 },
    { "gte-grain-index-huge", GT_OFF * 512 + 24, 0x3fffffffffffffffull, NULL, 12288 },
};

static void test_hostile(void)
{
    g_autofree uint8_t *orig = build();
    g_autofree char *ext = path("ses-s001.vmdk");
    g_autofree char *desc = write_desc(CAP, NULL);
    GError *err = NULL;
    for (unsigned i = 0; i < G_N_ELEMENTS(hostile); i++) {
        const Hostile *h = &hostile[i];
        g_autofree uint8_t *img = g_memdup2(orig, IMG_LEN);
        put_le(img + h->off, h->v, 8);
        write_file(ext, img, IMG_LEN);
        QsBlock *bs = qs_block_open(desc, "vmdk", 0, NULL, &err);
        if (h->open_error) {
            if (bs || !strstr(err->message, h->open_error))
                FAIL("seSparse %s: expected '%s', got %s", h->name, h->open_error,
                     bs ? "an open image" : err->message);
            g_clear_error(&err);
            qs_block_close(bs);
            continue;
        }
        if (!bs) {
            FAIL("seSparse %s: does not open: %s", h->name, err->message);
            g_clear_error(&err);
            continue;
        }
        uint8_t b;
        int r = qs_block_pread(bs, h->read_at, 1, &b);
        if (r != -EIO) FAIL("seSparse %s: read at %" G_GUINT64_FORMAT " gave %d, not -EIO",
                            h->name, h->read_at, r);
        /* the other grains still read */
        if (qs_block_pread(bs, 32 * MiB + 10 * 4096, 1, &b) || b != 4)
            FAIL("seSparse %s: an intact grain does not read", h->name);
        qs_block_close(bs);
    }
    /* a directory too small for the capacity (descriptor and header agree) */
    {
        g_autofree uint8_t *img = g_memdup2(orig, IMG_LEN);
        put_le(img + 16, 1ull << 30, 8);
        write_file(ext, img, IMG_LEN);
        g_autofree char *d2 = write_desc(1ull << 30, NULL);
        QsBlock *bs = qs_block_open(d2, "vmdk", 0, NULL, &err);
        g_assert_null(bs);
        g_assert_nonnull(strstr(err->message, "too small"));
        g_clear_error(&err);
    }
    /* a file shorter than the header */
    write_file(ext, orig, 100);
    QsBlock *bs = qs_block_open(desc, "vmdk", 0, NULL, &err);
    g_assert_null(bs);
    g_assert_nonnull(strstr(err->message, "too short"));
    g_clear_error(&err);
    g_unlink(ext);
    g_unlink(desc);
}

/* Seeded random flips in the headers, directory and tables: errors, never a crash. */
static void test_random_flips(void)
{
    g_autofree uint8_t *orig = build();
    g_autofree char *ext = path("ses-s001.vmdk");
    g_autofree char *desc = write_desc(CAP, NULL);
    g_autofree uint8_t *buf = g_malloc(4 * MiB);
    GRand *rnd = g_rand_new_with_seed(5);
    for (unsigned round = 0; round < 150; round++) {
        g_autofree uint8_t *img = g_memdup2(orig, IMG_LEN);
        for (unsigned k = 0; k < 4; k++) {
            size_t at = g_rand_int_range(rnd, 0, (GT_OFF + 2) * 512);
            if (at >= 1024 && at < GD_OFF * 512) at = GT_OFF * 512 + at % 512;
            img[at] ^= (uint8_t)(1u << g_rand_int_range(rnd, 0, 8));
        }
        write_file(ext, img, IMG_LEN);
        GError *err = NULL;
        QsBlock *bs = qs_block_open(desc, "vmdk", 0, NULL, &err);
        if (!bs) {
            g_clear_error(&err);
            continue;
        }
        for (uint64_t off = 0; off < bs->size; off += 16 * MiB)
            (void)qs_block_pread(bs, off, MIN(4 * MiB, bs->size - off), buf);
        qs_block_close(bs);
    }
    g_rand_free(rnd);
    g_unlink(ext);
    g_unlink(desc);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    tmpdir = g_dir_make_tmp("qs-sesparse-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/formats/vmdk-sesparse/read", test_read);
    g_test_add_func("/formats/vmdk-sesparse/hostile", test_hostile);
    g_test_add_func("/formats/hostile/vmdk-sesparse-random-flips", test_random_flips);
    int r = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return r;
}
