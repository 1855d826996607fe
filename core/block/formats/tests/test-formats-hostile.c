/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Hostile vdi/vpc/vmdk images: hand-made corruptions of every header and table field
 * (zero sizes, overflowing products, tables outside the file, absurd counts, bad
 * descriptors) must fail with an error naming the field, or be survived; plus seeded
 * random byte flips of the metadata.  Runs under ASan+UBSan in make check. */
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *tmpdir;

/* Report a failed expectation and go on with the other cases. */
#define FAIL(...) do { g_printerr(__VA_ARGS__); g_printerr("\n"); g_test_fail(); } while (0)

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[width - 1 - i] = (uint8_t)(v >> (8 * i));
}

/* Drive everything a fuzzer would: status over the disk, reads, check, a write. */
static void exercise(const char *fn, const char *fmt)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL, &err);
    if (!bs) {
        g_assert_nonnull(err);
        g_assert_cmpstr(err->message, !=, "");
        g_error_free(err);
        return;
    }
    uint64_t size = bs->size;
    g_autofree uint8_t *buf = g_malloc(1 << 20);
    for (uint64_t off = 0; off < size;) {
        uint64_t n;
        int r = qs_block_status(bs, off, size - off, &n, NULL, NULL);
        if (r < 0 || n == 0) break;
        off += n;
    }
    for (uint64_t off = 0; off < MIN(size, (uint64_t)64 << 20); off += 1 << 20)
        qs_block_pread(bs, off, (size_t)MIN((uint64_t)1 << 20, size - off), buf);
    QsBlockCheckResult res;
    if (!qs_block_check(bs, &res, 0, &err)) g_clear_error(&err);
    memset(buf, 0xa5, 4096);
    if (size >= 8192) qs_block_pwrite(bs, size / 2 & ~511ull, 4096, buf, 0);
    qs_block_close(bs);
}

typedef struct Patch {
    uint64_t off;
    uint64_t value;
    int width;          /* bytes; negative: big-endian */
} Patch;

typedef struct Case {
    const char *name;
    const char *fmt, *opts;
    Patch patches[3];
    bool vpc_fix_checksum;   /* recompute the VHD footer checksum after patching */
    const char *expect;      /* substring of the open error; NULL: must merely survive */
} Case;

static void vpc_checksum(uint8_t *f)
{
    uint32_t sum = 0;
    for (int i = 0; i < 512; i++)
        if (i < 64 || i >= 68) sum += f[i];
    put_be(f + 64, ~sum, 4);
}

static void run_case(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *fn = path(c->name);
    GError *err = NULL;
    g_assert_true(qs_block_create(c->fmt, fn, 6 << 20, c->opts, true, &err));
    g_assert_no_error(err);
    /* some data so that tables have entries */
    QsBlock *bs = qs_block_open(fn, c->fmt, QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    uint8_t d[4096];
    memset(d, 0x42, sizeof(d));
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(d), d, 0), ==, 0);
    g_assert_cmpint(qs_block_pwrite(bs, 3 << 20, sizeof(d), d, 0), ==, 0);
    qs_block_close(bs);

    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &img, &len, NULL));
    uint8_t *p = (uint8_t *)img;
    for (int i = 0; i < 3 && c->patches[i].width; i++) {
        const Patch *pt = &c->patches[i];
        uint64_t off = pt->off;
        if (off >= (1ull << 62)) off = len - (UINT64_MAX - off);   /* from the end */
        int w = pt->width < 0 ? -pt->width : pt->width;
        g_assert_cmpuint(off + w, <=, len);
        if (pt->width < 0) put_be(p + off, pt->value, w);
        else put_le(p + off, pt->value, w);
    }
    if (c->vpc_fix_checksum) {
        vpc_checksum(p);
        vpc_checksum(p + len - 512);
    }
    g_assert_true(g_file_set_contents(fn, img, len, NULL));
    g_free(img);
    QsBlock *h = qs_block_open(fn, c->fmt, QS_BLOCK_NO_BACKING, NULL, &err);
    if (c->expect) {
        if (h) {
            FAIL("%s: opened although it should fail with '%s'", c->name, c->expect);
            qs_block_close(h);
        } else if (!strstr(err->message, c->expect)) {
            FAIL("%s: error '%s' does not contain '%s'", c->name, err->message, c->expect);
        }
        g_clear_error(&err);
    } else {
        g_clear_error(&err);
        qs_block_close(h);
    }
    exercise(fn, c->fmt);
    g_unlink(fn);
}

#define END(n) (UINT64_MAX - (n))   /* offset n bytes before the end of the file */

static const Case cases[] = {
    /* vdi: header at 0 (little-endian), block map at 0x200 */
    { "vdi-block-size-0", "vdi", "", { { 0x178, 0, 4 } }, false, "block_size 0" },
    { "vdi-block-size-3", "vdi", "", { { 0x178, 3, 4 } }, false, "block_size 3" },
    { "vdi-block-size-2g", "vdi", "", { { 0x178, 1u << 31, 4 } }, false, "block_size 2147483648" },
    { "vdi-sector-size-0", "vdi", "", { { 0x168, 0, 4 } }, false, "sector size 0" },
    { "vdi-blocks-max", "vdi", "", { { 0x180, 0xffffffff, 4 } }, false, "blocks_in_image 4294967295" },
    { "vdi-blocks-huge-map", "vdi", "", { { 0x180, 0x3fffffff, 4 } }, false, "overlaps the block map" },
    { "vdi-disk-size-overflow", "vdi", "", { { 0x170, UINT64_MAX, 8 } }, false, "disk size" },
    { "vdi-offset-bmap-far", "vdi", "", { { 0x154, 0xfffffe00, 4 } }, false, "block map" },
    { "vdi-offset-bmap-in-header", "vdi", "", { { 0x154, 0, 4 } }, false, "offset_bmap" },
    { "vdi-offset-data-overlap", "vdi", "", { { 0x158, 0x200, 4 } }, false, "offset_data" },
    { "vdi-offset-data-unaligned", "vdi", "", { { 0x158, 0x401, 4 } }, false, "offset_data" },
    { "vdi-bmap-entry-far", "vdi", "", { { 0x200, 0x7fffffff, 4 } }, false, "block map entry 0" },
    { "vdi-allocated-too-many", "vdi", "", { { 0x184, 1000, 4 } }, false, "blocks_allocated 1000" },
    { "vdi-type-7", "vdi", "", { { 0x4c, 7, 4 } }, false, "image_type 7" },
    { "vdi-version-2", "vdi", "", { { 0x44, 0x00020000, 4 } }, false, "version 2.0" },
    { "vdi-header-size-0", "vdi", "", { { 0x48, 0, 4 } }, false, "header_size 0" },
    { "vdi-duplicate-blocks", "vdi", "", { { 0x20c, 0, 4 } }, false, NULL },
    /* vpc dynamic: footer copy at 0, dynamic header at 512, BAT at 1536 (big-endian) */
    { "vpc-footer-checksum", "vpc", "", { { 64, 0x12345678, -4 } }, false, "checksum" },
    { "vpc-differencing", "vpc", "", { { 60, 4, -4 } }, true, "differencing" },
    { "vpc-type-9", "vpc", "", { { 60, 9, -4 } }, true, "disk type 9" },
    { "vpc-dyn-offset-far", "vpc", "", { { 16, 1ull << 60, -8 } }, true, "dynamic header offset" },
    { "vpc-dyn-offset-0", "vpc", "", { { 16, 0, -8 } }, true, "dynamic header offset" },
    { "vpc-dyn-cookie", "vpc", "", { { 512, 0, -8 } }, false, "cookie" },
    { "vpc-block-size-0", "vpc", "", { { 512 + 32, 0, -4 } }, false, "Invalid block size 0" },
    { "vpc-block-size-3", "vpc", "", { { 512 + 32, 3, -4 } }, false, "Invalid block size 3" },
    { "vpc-entries-0", "vpc", "", { { 512 + 28, 0, -4 } }, false, "Page table too small" },
    { "vpc-entries-max", "vpc", "", { { 512 + 28, 0xffffffff, -4 } }, false, "outside the file" },
    { "vpc-table-far", "vpc", "", { { 512 + 16, 1ull << 62, -8 } }, false, "outside the file" },
    { "vpc-table-over-dyn", "vpc", "", { { 512 + 16, 512, -8 } }, false, "overlaps the dynamic header" },
    { "vpc-bat-in-meta", "vpc", "", { { 1536, 1, -4 } }, false, "overlaps the image metadata" },
    { "vpc-bat-far", "vpc", "", { { 1536, 0x7ffffff0, -4 } }, false, "beyond the end" },
    { "vpc-size-huge-chs", "vpc", "", { { 56, 0xffff, -2 }, { 58, 0xffff, -2 }, { 28, 0x77696e20, -4 } }, true, NULL },
    { "vpc-current-size-huge", "vpc", "", { { 48, 1ull << 62, -8 }, { 28, 0x77696e20, -4 } }, true, "Page table too small" },
    { "vpc-fixed-truncated", "vpc", "subformat=fixed", { { END(512) + 48, 1ull << 40, -8 }, { END(512) + 28, 0x77696e20, -4 } }, true, "truncated" },
    /* vmdk monolithicSparse: header at 0 (little-endian) */
    { "vmdk-version-9", "vmdk", "", { { 4, 9, 4 } }, false, "version 9" },
    { "vmdk-grain-0", "vmdk", "", { { 20, 0, 8 } }, false, "granularity 0" },
    { "vmdk-grain-3", "vmdk", "", { { 20, 3, 8 } }, false, "granularity 3" },
    { "vmdk-grain-huge", "vmdk", "", { { 20, 1ull << 40, 8 } }, false, "granularity" },
    { "vmdk-gtes-0", "vmdk", "", { { 44, 0, 4 } }, false, "numGTEsPerGT 0" },
    { "vmdk-gtes-max", "vmdk", "", { { 44, 0xffffffff, 4 } }, false, "numGTEsPerGT 4294967295" },
    { "vmdk-capacity-huge", "vmdk", "", { { 12, 1ull << 62, 8 } }, false, "capacity" },
    { "vmdk-capacity-many-gts", "vmdk", "", { { 12, 1ull << 50, 8 } }, false, "too many grain tables" },
    { "vmdk-capacity-gd-outside", "vmdk", "", { { 12, 1ull << 40, 8 } }, false, "grain directory of 16777216 entries" },
    { "vmdk-gd-far", "vmdk", "", { { 56, 1ull << 50, 8 } }, false, "grain directory sector" },
    { "vmdk-rgd-far", "vmdk", "", { { 48, 1ull << 40, 8 } }, false, "redundant grain directory" },
    { "vmdk-desc-huge", "vmdk", "", { { 36, 1ull << 40, 8 } }, false, "descriptor" },
    { "vmdk-gd-entry-far", "vmdk", "", { { 26 * 512, 0xfffffff0, 4 } }, false, "grain directory entry 0" },
    { "vmdk-gt-entry-far", "vmdk", "", { { 27 * 512, 0xfffffff0, 4 } }, false, NULL },
    { "vmdk-gt-entry-header", "vmdk", "", { { 27 * 512 + 4, 0, 4 }, { 22 * 512 + 4, 0, 4 } }, false, NULL },
    { "vmdk-compress-algo", "vmdk", "subformat=streamOptimized", { { 77, 7, 2 } }, false, "compression algorithm 7" },
    { "vmdk-stream-footer", "vmdk", "subformat=streamOptimized", { { END(1536) + 12, 9, 4 } }, false, "footer" },
    { "vmdk-stream-footer-gd", "vmdk", "subformat=streamOptimized", { { END(1024) + 56, 1ull << 50, 8 } }, false, "grain directory" },
    { "vmdk-stream-footer-gtes", "vmdk", "subformat=streamOptimized", { { END(1024) + 44, 0, 4 } }, false, "numGTEsPerGT 0" },
};

/* Descriptor files: each text is written as a.vmdk next to a small flat extent. */
typedef struct DescCase {
    const char *name, *text, *expect;
} DescCase;

static const DescCase desc_cases[] = {
    { "desc-bad-size", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW abc FLAT \"f.raw\" 0\n", "invalid extent size 'abc'" },
    { "desc-negative", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW -5 FLAT \"f.raw\" 0\n", "invalid extent size '-5'" },
    { "desc-size-overflow", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 18014398509481983 FLAT \"f.raw\" 0\nRW 18014398509481983 FLAT \"f.raw\" 0\n", "add up" },
    { "desc-size-digits", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 99999999999999999999999 FLAT \"f.raw\" 0\n", "invalid extent size" },
    { "desc-unterminated", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"f.raw\n", "unterminated" },
    { "desc-unquoted", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 FLAT f.raw\n", "not quoted" },
    { "desc-bad-offset", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"f.raw\" 9999999999999999999\n", "offset" },
    { "desc-type", "# Disk DescriptorFile\ncreateType=\"bogus\"\nRW 100 FLAT \"f.raw\" 0\n", "unsupported image type 'bogus'" },
    { "desc-extent-type", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 SESPARSE2 \"f.raw\"\n", "unsupported extent type 'SESPARSE2'" },
    { "desc-no-extents", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n", "no extents" },
    { "desc-missing-file", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"nothere.raw\" 0\n", "nothere.raw" },
    { "desc-sparse-not-sparse", "# Disk DescriptorFile\ncreateType=\"twoGbMaxExtentSparse\"\nRW 100 SPARSE \"f.raw\"\n", "not a sparse extent" },
    { "desc-noaccess", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nNOACCESS 100 FLAT \"f.raw\" 0\n", "NOACCESS" },
};

static void run_desc_case(gconstpointer data)
{
    const DescCase *c = data;
    g_autofree char *flat = path("f.raw"), *fn = path("a.vmdk");
    g_assert_true(g_file_set_contents(flat, "", 0, NULL));
    g_assert_cmpint(truncate(flat, 51200), ==, 0);
    g_assert_true(g_file_set_contents(fn, c->text, -1, NULL));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    if (bs) {
        FAIL("%s: opened although it should fail with '%s'", c->name, c->expect);
        qs_block_close(bs);
        return;
    }
    if (!strstr(err->message, c->expect))
        FAIL("%s: error '%s' does not contain '%s'", c->name, err->message, c->expect);
    g_error_free(err);
}

/* Many extents, one endless line, a descriptor bigger than the limit. */
static void test_desc_limits(void)
{
    g_autofree char *flat = path("f.raw"), *fn = path("a.vmdk");
    g_assert_true(g_file_set_contents(flat, "", 0, NULL));
    g_assert_cmpint(truncate(flat, 51200), ==, 0);
    GError *err = NULL;
    GString *s = g_string_new("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n");
    for (int i = 0; i < 5000; i++) g_string_append(s, "RW 1 ZERO\n");
    g_assert_true(g_file_set_contents(fn, s->str, s->len, NULL));
    g_assert_null(qs_block_open(fn, "vmdk", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "more than 4096 extents"));
    g_clear_error(&err);

    g_string_assign(s, "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"f.raw\" 0\nddb.x = \"");
    for (int i = 0; i < 200000; i++) g_string_append_c(s, 'A');
    g_string_append(s, "\"\n");
    g_assert_true(g_file_set_contents(fn, s->str, s->len, NULL));
    QsBlock *bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bs->size, ==, 51200);
    qs_block_close(bs);

    g_string_set_size(s, 0);
    g_string_append(s, "# Disk DescriptorFile\n");
    while (s->len <= (1u << 20)) g_string_append(s, "# padding padding padding padding\n");
    g_assert_true(g_file_set_contents(fn, s->str, s->len, NULL));
    g_assert_null(qs_block_open(fn, "vmdk", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "too large"));
    g_clear_error(&err);
    g_string_free(s, TRUE);
}

/* VMDK3 (COWD) headers made by hand. */
static void test_cowd(void)
{
    g_autofree char *fn = path("c.vmdk");
    uint8_t img[8192] = { 0 };
    memcpy(img, "COWD", 4);
    put_le(img + 4, 1, 4);
    put_le(img + 12, 2048, 4);     /* sectors */
    put_le(img + 16, 16, 4);       /* granularity */
    put_le(img + 20, 4, 4);        /* l1dir_offset (sectors) */
    put_le(img + 24, 1, 4);        /* l1dir_size */
    g_assert_true(g_file_set_contents(fn, (char *)img, sizeof(img), NULL));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bs->size, ==, 2048 * 512);
    uint8_t b[512];
    g_assert_cmpint(qs_block_pread(bs, 0, sizeof(b), b), ==, 0);
    qs_block_close(bs);
    struct { uint64_t off, v; const char *expect; } bad[] = {
        { 16, 0, "granularity 0" }, { 16, 5, "granularity 5" }, { 24, 0, "l1dir_size 0" },
        { 20, 0xffffffff, "grain directory" },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        uint8_t c[8192];
        memcpy(c, img, sizeof(c));
        put_le(c + bad[i].off, bad[i].v, 4);
        g_assert_true(g_file_set_contents(fn, (char *)c, sizeof(c), NULL));
        g_assert_null(qs_block_open(fn, "vmdk", 0, NULL, &err));
        if (!strstr(err->message, bad[i].expect))
            FAIL("COWD %u: '%s' lacks '%s'", i, err->message, bad[i].expect);
        g_clear_error(&err);
    }
}

/* Seeded random corruption of the first 64 KiB: never a crash, hang or leak. */
static void test_random_flips(void)
{
    static const char *const cfg[][2] = {
        { "vdi", "" }, { "vdi", "static=on" }, { "vpc", "" }, { "vmdk", "" },
        { "vmdk", "subformat=streamOptimized" }, { "vmdk", "zeroed_grain=on" },
    };
    GRand *rnd = g_rand_new_with_seed(20240501);
    for (unsigned k = 0; k < G_N_ELEMENTS(cfg); k++) {
        g_autofree char *fn = path("flip.img"), *orig = NULL;
        gsize len;
        GError *err = NULL;
        g_assert_true(qs_block_create(cfg[k][0], fn, 3 << 20, cfg[k][1], true, &err));
        QsBlock *bs = qs_block_open(fn, cfg[k][0], QS_BLOCK_RDWR, NULL, &err);
        g_assert_no_error(err);
        uint8_t d[70000];
        memset(d, 0x17, sizeof(d));
        g_assert_cmpint(qs_block_pwrite(bs, 100000, sizeof(d), d, 0), ==, 0);
        qs_block_close(bs);
        g_assert_true(g_file_get_contents(fn, &orig, &len, NULL));
        for (int it = 0; it < 60; it++) {
            g_autofree char *img = g_memdup2(orig, len);
            int flips = g_rand_int_range(rnd, 1, 8);
            for (int f = 0; f < flips; f++) {
                gsize at = (gsize)g_rand_int_range(rnd, 0, (gint32)MIN(len, (gsize)65536));
                img[at] = (char)g_rand_int_range(rnd, 0, 256);
            }
            g_assert_true(g_file_set_contents(fn, img, len, NULL));
            exercise(fn, cfg[k][0]);
        }
        g_unlink(fn);
    }
    g_rand_free(rnd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    tmpdir = g_dir_make_tmp("qs-formats-hostile-XXXXXX", NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf("/formats/hostile/%s", cases[i].name);
        g_test_add_data_func(name, &cases[i], run_case);
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(desc_cases); i++) {
        g_autofree char *name = g_strdup_printf("/formats/hostile/%s", desc_cases[i].name);
        g_test_add_data_func(name, &desc_cases[i], run_desc_case);
    }
    g_test_add_func("/formats/hostile/desc-limits", test_desc_limits);
    g_test_add_func("/formats/hostile/cowd", test_cowd);
    g_test_add_func("/formats/hostile/random-flips", test_random_flips);
    int r = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) r = r ? r : 1;
    return r;
}
