/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qcow2 check's refcount comparison on images whose refcount blocks were edited by
 * hand: leaks in every refcount width (scattered and in runs, repaired a block at a
 * time), zero runs of sub-byte refcounts, and a refcount block that cannot be read. */
#include <string.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *dir;

static uint64_t be64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return GUINT64_FROM_BE(v); }
static void put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }

/* An image of `clusters` clusters of 4 KiB: data written at its start, the file
 * extended with zeroes to the full count. */
static char *make_image(const char *name, const char *opts, unsigned clusters, uint8_t **img,
                        gsize *len)
{
    char *fn = g_build_filename(dir, name, NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", fn, 8 << 20, opts, false, &err));
    g_assert_no_error(err);
    QsBlock *bs = qs_block_open(fn, "qcow2", QS_BLOCK_RDWR, NULL, &err);
    g_assert_nonnull(bs);
    uint8_t buf[3 * 4096];
    memset(buf, 'd', sizeof(buf));
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    qs_block_close(bs);
    g_assert_true(g_file_get_contents(fn, (char **)img, len, NULL));
    g_assert_cmpuint(*len, <=, (gsize)clusters * 4096);
    *img = g_realloc(*img, (gsize)clusters * 4096);
    memset(*img + *len, 0, clusters * 4096 - *len);
    *len = (gsize)clusters * 4096;
    return fn;
}

static QsBlockCheckResult check(const char *fn, int fix)
{
    GError *err = NULL;
    int flags = QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK | (fix ? QS_BLOCK_RDWR : 0);
    QsBlock *bs = qs_block_open(fn, "qcow2", flags, NULL, &err);
    g_assert_no_error(err);
    QsBlockCheckResult r;
    g_assert_true(qs_block_check(bs, &r, fix, &err));
    g_assert_no_error(err);
    qs_block_close(bs);
    return r;
}

/* Refcount entry i of the block at rb, `bits` wide, set to v. */
static void set_refcount(uint8_t *rb, unsigned bits, uint64_t i, uint64_t v)
{
    if (bits < 8) {
        unsigned per = 8 / bits, sh = (unsigned)(i % per) * bits;
        rb[i / per] = (uint8_t)((rb[i / per] & ~(((1u << bits) - 1) << sh)) | v << sh);
    } else {
        for (unsigned k = 0; k < bits / 8; k++)
            rb[i * (bits / 8) + k] = (uint8_t)(v >> (bits - 8 - 8 * k));
    }
}

/* In each refcount width: clusters past the image's own given refcounts they do not
 * have (scattered and in runs, refcount 1 or the width's maximum) are leaks; -r leaks
 * repairs them all, and the image then checks clean and reads its data. */
static void test_leaks(void)
{
    static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (unsigned w = 0; w < G_N_ELEMENTS(widths); w++) {
        unsigned bits = widths[w];
        g_autofree char *opts = g_strdup_printf("cluster_size=4096,refcount_bits=%u", bits);
        g_autofree uint8_t *img = NULL;
        gsize len;
        g_autofree char *fn = make_image("leaks.qcow2", opts, 200, &img, &len);
        uint8_t *rb = img + (be64(img + be64(img + 48)) & ~511ull);
        uint64_t max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1, leaks = 0;
        for (uint64_t c = 20; c < 200; c++) {
            /* runs of leaks, gaps, scattered ones */
            if ((c >= 40 && c < 90) || (c >= 120 && c % 3 == 0) || c == 100) {
                set_refcount(rb, bits, c, c % 2 ? max : 1);
                leaks++;
            }
        }
        g_assert_true(g_file_set_contents(fn, (const char *)img, (gssize)len, NULL));
        QsBlockCheckResult r = check(fn, 0);
        g_assert_cmpuint(r.leaks, ==, leaks);
        g_assert_cmpuint(r.corruptions, ==, 0);
        r = check(fn, QS_CHECK_FIX_LEAKS);
        g_assert_cmpuint(r.leaks_fixed, ==, leaks);
        r = check(fn, 0);
        g_assert_cmpuint(r.leaks + r.corruptions + r.check_errors, ==, 0);
        GError *err = NULL;
        QsBlock *bs = qs_block_open(fn, "qcow2", QS_BLOCK_NO_BACKING, NULL, &err);
        g_assert_nonnull(bs);
        uint8_t buf[3 * 4096], want[3 * 4096];
        memset(want, 'd', sizeof(want));
        g_assert_cmpint(qs_block_pread(bs, 0, sizeof(buf), buf), ==, 0);
        g_assert_cmpmem(buf, sizeof(buf), want, sizeof(want));
        qs_block_close(bs);
        g_unlink(fn);
    }
}

/* A refcount block entry that is not cluster aligned cannot be read: its clusters'
 * refcounts are not compared, but the last referenced cluster there still sets the
 * image end offset. */
static void test_unreadable_block(void)
{
    g_autofree uint8_t *img = NULL;
    gsize len;
    /* 512 refcounts of 64 bits per block: block 1 covers clusters 512..1023 */
    g_autofree char *fn = make_image("unaligned.qcow2", "cluster_size=4096,refcount_bits=64",
                                     16, &img, &len);
    g_assert_true(g_file_set_contents(fn, (const char *)img, (gssize)len, NULL));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "qcow2", QS_BLOCK_RDWR, NULL, &err);
    g_assert_nonnull(bs);
    /* 600 data clusters: the file grows past cluster 512 */
    g_autofree uint8_t *buf = g_malloc(600 * 4096);
    memset(buf, 'e', 600 * 4096);
    g_assert_cmpint(qs_block_pwrite(bs, 0, 600 * 4096, buf, 0), ==, 0);
    qs_block_close(bs);
    QsBlockCheckResult clean = check(fn, 0);
    g_assert_cmpuint(clean.leaks + clean.corruptions + clean.check_errors, ==, 0);
    g_assert_cmpint(clean.image_end_offset, >, 512 * 4096);
    g_free(img);
    g_assert_true(g_file_get_contents(fn, (char **)&img, &len, NULL));
    uint8_t *rt = img + be64(img + 48);
    g_assert_cmpuint(be64(rt + 8), !=, 0);
    put64(rt + 8, be64(rt + 8) + 512);
    g_assert_true(g_file_set_contents(fn, (const char *)img, (gssize)len, NULL));
    QsBlockCheckResult r = check(fn, 0);
    g_assert_cmpuint(r.check_errors, >, 0);
    g_assert_cmpint(r.image_end_offset, ==, clean.image_end_offset);
    g_unlink(fn);
}

/* A fuzzed image (block-fuzz corpus) whose refcount block overlaps other metadata:
 * of its 20 leaks, the 11 whose entries lie clear of the overlap are repaired, the
 * others' writes refused, whether the block's repairs are written at once or not. */
static void test_leaks_beside_overlap(void)
{
    const char *corpus = g_getenv("QS_BLOCK_FUZZ_CORPUS");
    if (!corpus) {
        g_test_skip("QS_BLOCK_FUZZ_CORPUS not set");
        return;
    }
    g_autofree char *src = g_build_filename(corpus, "qcow2",
                                            "s5-bdae5975a468e685fb8f9fb8b710310e9a05d3e5.gz", NULL);
    g_autofree char *gz = NULL;
    gsize gz_len, rd = 0, len = 0;
    g_assert_true(g_file_get_contents(src, &gz, &gz_len, NULL));
    g_autofree uint8_t *data = g_malloc(65536);   /* it inflates to 4349 bytes */
    GZlibDecompressor *z = g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP);
    g_assert_cmpint(g_converter_convert(G_CONVERTER(z), gz, gz_len, data, 65536,
                                        G_CONVERTER_INPUT_AT_END, &rd, &len, NULL),
                    ==, G_CONVERTER_FINISHED);
    g_object_unref(z);
    g_autofree char *fn = g_build_filename(dir, "overlap.qcow2", NULL);
    g_assert_true(g_file_set_contents(fn, (const char *)data, (gssize)len, NULL));
    QsBlockCheckResult r = check(fn, 0);
    g_assert_cmpuint(r.leaks, ==, 20);
    r = check(fn, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS);
    g_assert_cmpuint(r.leaks_fixed, ==, 11);
    g_assert_cmpuint(r.leaks, ==, 9);
    g_unlink(fn);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    g_autofree char *tmpl = g_build_filename(g_get_tmp_dir(), "qs-qcow2-check-XXXXXX", NULL);
    dir = g_mkdtemp(tmpl);
    g_test_add_func("/qcow2/check/leaks", test_leaks);
    g_test_add_func("/qcow2/check/unreadable-block", test_unreadable_block);
    g_test_add_func("/qcow2/check/leaks-beside-overlap", test_leaks_beside_overlap);
    int r = g_test_run();
    g_rmdir(dir);
    return r;
}
