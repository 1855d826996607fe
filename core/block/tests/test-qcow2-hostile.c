/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Hand-made hostile qcow2 images, one per historical QEMU bug class: each header field
 * gets a clear error naming it; bad tables give errors, never a crash (ASan+UBSan). */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *dir, *good;
static uint8_t *img;
static gsize img_len;

static uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return GUINT64_FROM_BE(v); }
static void put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { v = GUINT32_TO_BE(v); memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { v = GUINT16_TO_BE(v); memcpy(p, &v, 2); }

/* A valid image: data, a zero cluster, a compressed cluster, a snapshot, a backing name. */
static void make_good(void)
{
    good = g_build_filename(dir, "good.qcow2", NULL);
    g_autofree char *base = g_build_filename(dir, "base.raw", NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("raw", base, 4 << 20, NULL, false, &err));
    g_assert_true(qs_block_create("qcow2", good, 4 << 20, "backing_file=base.raw,backing_fmt=raw", false, &err));
    QsBlock *bs = qs_block_open(good, NULL, QS_BLOCK_RDWR, NULL, &err);
    g_assert_nonnull(bs);
    uint8_t buf[65536];
    memset(buf, 'x', sizeof(buf));
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(qs_block_pwrite_compressed(bs, 65536, 65536, buf), ==, 0);
    g_assert_cmpint(qs_block_pwrite_zeroes(bs, 131072, 65536, 0), ==, 0);
    g_assert_true(bs->drv->snapshot_create(bs, "snap", &err));
    g_assert_cmpint(qs_block_pwrite(bs, 196608, 100, buf, 0), ==, 0);
    qs_block_close(bs);
    g_assert_true(g_file_get_contents(good, (char **)&img, &img_len, NULL));
}

/* Write a mutated copy; try to open it.  If it opens, exercise every read path. */
static char *try_image(const uint8_t *data, gsize len, bool *opened)
{
    g_autofree char *fn = g_build_filename(dir, "bad.qcow2", NULL);
    g_assert_true(g_file_set_contents(fn, (const char *)data, (gssize)len, NULL));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "qcow2", QS_BLOCK_NO_BACKING, NULL, &err);
    *opened = bs != NULL;
    if (!bs) {
        g_assert_nonnull(err);
        char *m = g_strdup(err->message);
        g_error_free(err);
        return m;
    }
    g_autofree uint8_t *buf = g_malloc(1 << 20);
    for (uint64_t off = 0; off < bs->size; off += 1 << 20)
        (void)qs_block_pread(bs, off, MIN((uint64_t)1 << 20, bs->size - off), buf);
    for (uint64_t off = 0; off < bs->size;) {
        uint64_t n;
        int r = qs_block_status(bs, off, bs->size - off, &n, NULL, NULL);
        if (r < 0 || !n) break;
        off += n;
    }
    QsBlockCheckResult res;
    (void)qs_block_check(bs, &res, 0, NULL);
    if (bs->drv->snapshot_list) qs_block_snapshot_list_free(bs->drv->snapshot_list(bs));
    qs_block_close(bs);
    /* and a repair attempt on a writable copy */
    bs = qs_block_open(fn, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK, NULL, NULL);
    if (bs) {
        (void)qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, NULL);
        qs_block_close(bs);
    }
    return NULL;
}

typedef struct Field {
    const char *name;
    unsigned off, width;
    uint64_t value;
    const char *expect;   /* substring of the open error, NULL: must open or fail cleanly */
} Field;

static const Field header_fields[] = {
    { "version=1", 4, 4, 1, "Unsupported qcow2 version 1" },
    { "version=0xffffffff", 4, 4, 0xffffffff, "Unsupported qcow2 version" },
    { "backing_file_size too long", 16, 4, 0xffff, "Backing file name too long" },
    { "backing_file_offset beyond cluster", 8, 8, 0x20000, "Invalid backing file offset" },
    { "backing_file_offset huge", 8, 8, 0xfffffffffffffff0ull, "Invalid backing file offset" },
    { "cluster_bits=0", 20, 4, 0, "Unsupported cluster size: 2^0" },
    { "cluster_bits=8", 20, 4, 8, "Unsupported cluster size" },
    { "cluster_bits=22", 20, 4, 22, "Unsupported cluster size" },
    { "cluster_bits=0xffffffff", 20, 4, 0xffffffff, "Unsupported cluster size" },
    { "size huge", 24, 8, 0xffffffffffffffffull, "too large" },
    { "size beyond L1", 24, 8, 1ull << 50, "L1 table is too small" },
    { "crypt_method=1", 32, 4, 1, "crypt_method=1" },
    { "l1_size=0x7fffffff", 36, 4, 0x7fffffff, "L1 table too large" },
    { "l1_size=0", 36, 4, 0, "L1 table is too small" },
    { "l1_table_offset unaligned", 40, 8, 0x10001, "Invalid L1 table offset" },
    { "l1_table_offset=0", 40, 8, 0, "Invalid L1 table offset" },
    { "l1_table_offset huge", 40, 8, 0xffffffffffff0000ull, "Invalid L1 table offset" },
    { "l1_table_offset beyond EOF", 40, 8, 1ull << 40, NULL },
    { "refcount_table_offset=0", 48, 8, 0, "Invalid reference count table offset" },
    { "refcount_table_offset unaligned", 48, 8, 0x10200, "Invalid reference count table offset" },
    { "refcount_table_offset huge", 48, 8, 0xffffffffffff0000ull, "Invalid reference count table offset" },
    { "refcount_table_clusters=0xffffffff", 56, 4, 0xffffffff, "Reference count table too large" },
    { "refcount_table_clusters=0", 56, 4, 0, "Invalid reference count table offset" },
    { "nb_snapshots=0xffffffff", 60, 4, 0xffffffff, "Too many snapshots" },
    { "nb_snapshots=65536", 60, 4, 65536, NULL },
    { "snapshots_offset unaligned", 64, 8, 0x10008, "Invalid snapshot table offset" },
    { "snapshots_offset=0", 64, 8, 0, "Invalid snapshot table offset" },
    { "snapshots_offset beyond EOF", 64, 8, 1ull << 40, NULL },
    { "unknown incompatible bit", 72, 8, 1ull << 60, "Unsupported qcow2 feature" },
    { "external data file bit", 72, 8, 1ull << 2, "external data file" },
    { "refcount_order=7", 96, 4, 7, "refcount_order=7" },
    { "header_length=0", 100, 4, 0, "header_length=0" },
    { "header_length=103", 100, 4, 103, "header_length=103" },
    { "header_length=0xffffffff", 100, 4, 0xffffffff, "header_length=4294967295" },
    { "compression_type=9", 104, 1, 9, "compression type" },
    { "extension length huge", 116, 4, 0xffffffff, "exceeds the header cluster" },
};

static void test_header_fields(void)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(header_fields); i++) {
        const Field *f = &header_fields[i];
        g_autofree uint8_t *m = g_memdup2(img, img_len);
        if (f->width == 8) put64(m + f->off, f->value);
        else if (f->width == 4) put32(m + f->off, (uint32_t)f->value);
        else m[f->off] = (uint8_t)f->value;
        bool opened;
        g_autofree char *msg = try_image(m, img_len, &opened);
        g_test_message("%s: %s", f->name, opened ? "opened" : msg);
        if (f->expect) {
            if (opened) g_error("%s: opened, expected '%s'", f->name, f->expect);
            if (!strstr(msg, f->expect)) g_error("%s: error '%s' lacks '%s'", f->name, msg, f->expect);
        }
    }
}

/* Locate the tables of the good image from its own header. */
static uint64_t l1_off(void) { return be64(img + 40); }
static uint64_t l2_off(void) { return be64(img + l1_off()) & 0x00fffffffffffe00ull; }
static uint64_t rt_off(void) { return be64(img + 48); }
static uint64_t sn_off(void) { return be64(img + 64); }

typedef struct Poke { const char *name; uint64_t (*base)(void); unsigned off, width; uint64_t value; } Poke;

static const Poke table_pokes[] = {
    { "L1 entry unaligned", l1_off, 0, 8, 0x8000000000010200ull },
    { "L1 entry beyond EOF", l1_off, 0, 8, 0x8000fffffff00000ull },
    { "L1 entry into the header", l1_off, 0, 8, 0x8000000000000000ull | 0 },
    { "L2 entry unaligned", l2_off, 0, 8, 0x8000000000050100ull },
    { "L2 entry beyond EOF", l2_off, 0, 8, 0x80fffffffff00000ull },
    { "compressed offset beyond EOF", l2_off, 8, 8, 0x40fffffffffff000ull | (0xffull << 54) },
    { "compressed sectors garbage", l2_off, 8, 8, 0x7fffffffffffffffull },
    { "L2 entry on the L1 table", l2_off, 0, 8, 0x8000000000030000ull },
    { "refcount table entry unaligned", rt_off, 0, 8, 0x20100 },
    { "refcount table entry beyond EOF", rt_off, 0, 8, 0xfffffff0000ull },
    { "refcount block dropped", rt_off, 0, 8, 0 },
    { "snapshot l1_size huge", sn_off, 8, 4, 0xffffffff },
    { "snapshot l1 offset unaligned", sn_off, 0, 8, 0x12345 },
    { "snapshot id_str_size huge", sn_off, 12, 2, 0xffff },
    { "snapshot name_size huge", sn_off, 14, 2, 0xffff },
    { "snapshot extra_data_size huge", sn_off, 36, 4, 0xffffffff },
};

static void test_tables(void)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(table_pokes); i++) {
        const Poke *p = &table_pokes[i];
        uint64_t at = p->base() + p->off;
        g_assert_cmpuint(at + p->width, <=, img_len);
        g_autofree uint8_t *m = g_memdup2(img, img_len);
        if (p->width == 8) put64(m + at, p->value);
        else if (p->width == 4) put32(m + at, (uint32_t)p->value);
        else put16(m + at, (uint16_t)p->value);
        bool opened;
        g_autofree char *msg = try_image(m, img_len, &opened);
        g_test_message("%s: %s", p->name, opened ? "opened" : msg);
    }
}

static void test_truncated(void)
{
    /* every prefix length that cuts a structure in two */
    static const gsize cuts[] = { 0, 4, 71, 72, 103, 104, 200, 4096, 65536, 65537, 131072, 200000 };
    for (unsigned i = 0; i < G_N_ELEMENTS(cuts); i++) {
        bool opened;
        g_autofree char *msg = try_image(img, MIN(cuts[i], img_len), &opened);
        g_test_message("cut at %zu: %s", cuts[i], opened ? "opened" : msg);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    dir = g_dir_make_tmp("qs-hostile-XXXXXX", NULL);
    make_good();
    g_test_add_func("/qcow2/hostile/header-fields", test_header_fields);
    g_test_add_func("/qcow2/hostile/tables", test_tables);
    g_test_add_func("/qcow2/hostile/truncated", test_truncated);
    int r = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    g_free(img);
    return r;
}
