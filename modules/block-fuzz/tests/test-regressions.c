/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Regression tests for bugs the block-fuzz campaigns found: each builds its hostile image
 * with the public API and checks the fixed behaviour (the reproducers are in corpus/). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *dir;

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

/* qcow2 check walked every cluster the refcount table could describe (up to 2^28) instead
 * of the file's clusters: 512 refcount table entries of 1-bit refcounts in 64 KiB clusters
 * made `qemu-img check` on a 68 KiB file run for minutes. */
static void test_qcow2_check_reftable_span(void)
{
    g_autofree char *p = g_build_filename(dir, "span.qcow2", NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 1 << 20, "cluster_size=65536,refcount_bits=1",
                                  false, &err));
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, (char **)&img, &len, NULL));
    uint64_t rt = be64(img + 48);
    g_assert_cmpuint(rt + 4096, <=, len);
    uint64_t block = be64(img + rt);
    for (unsigned i = 1; i < 512; i++) put_be64(img + rt + 8 * i, block);
    g_assert_true(g_file_set_contents(p, (const char *)img, (gssize)(rt + 4096), NULL));

    QsBlock *bs = qs_block_open(p, "qcow2", QS_BLOCK_CHECK | QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    QsBlockCheckResult res;
    gint64 t0 = g_get_monotonic_time();
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    g_test_message("check took %.3f s", secs);
    /* the shared refcount block is referenced 512 times: corruptions are reported */
    g_assert_cmpint(res.corruptions + res.leaks + res.check_errors, >, 0);
    /* bounded by the file (3 clusters), not by 2^28 clusters: far below a second even
     * under ASan; the unbounded walk took minutes */
    g_assert_cmpfloat(secs, <, 5.0);
    qs_block_close(bs);
    g_unlink(p);
}

/* check -r all on a 64-bit refcount of 2^63 (and 2^63 + 1) for an unreferenced cluster:
 * the repair passed (int64_t)(0 - 2^63) to the refcount update, which negated INT64_MIN
 * (UBSan), and 2^63 + 1 became a positive addend that "repaired" it upwards (and failed).
 * Both leaks are repaired to 0 now. */
static void test_qcow2_check_refcount_2p63(void)
{
    g_autofree char *p = g_build_filename(dir, "rc64.qcow2", NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 1 << 20, "cluster_size=65536,refcount_bits=64",
                                  false, &err));
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, (char **)&img, &len, NULL));
    uint64_t rt = be64(img + 48);
    uint64_t block = be64(img + rt);
    g_assert_cmpuint(block + 65536, <=, len);
    const uint64_t cluster = 16;                       /* past the image's clusters */
    for (unsigned k = 0; k < 2; k++) {
        put_be64(img + block + cluster * 8, (1ull << 63) + k);
        g_assert_true(g_file_set_contents(p, (const char *)img, (gssize)len, NULL));
        QsBlock *bs = qs_block_open(p, "qcow2", QS_BLOCK_CHECK | QS_BLOCK_RDWR |
                                    QS_BLOCK_NO_BACKING, NULL, &err);
        g_assert_no_error(err);
        QsBlockCheckResult res;
        g_assert_true(qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
        g_assert_no_error(err);
        g_assert_cmpint(res.leaks_fixed, ==, 1);
        g_assert_cmpint(res.leaks + res.corruptions + res.check_errors, ==, 0);
        qs_block_close(bs);
        g_autofree uint8_t *after = NULL;
        gsize alen;
        g_assert_true(g_file_get_contents(p, (char **)&after, &alen, NULL));
        g_assert_cmpuint(be64(after + block + cluster * 8), ==, 0);
    }
    g_unlink(p);
}

/* qcow2 check on an image whose 64 L1 entries all name one L2 table of 8192 misaligned
 * entries: 524288 corruptions, each printed on its own line (a 22 KiB fuzzed image made
 * 3 million lines, seconds of CPU).  Counts stay exact; at most 10000 lines plus one
 * saying how many more there were. */
static void test_qcow2_check_message_flood(void)
{
    g_autofree char *p = g_build_filename(dir, "flood.qcow2", NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 32ull << 30, "cluster_size=65536", false, &err));
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, (char **)&img, &len, NULL));
    uint64_t l1 = be64(img + 40);
    g_assert_cmpuint(be64(img + 36) >> 32, ==, 64);            /* l1_size */
    uint64_t l2 = (len + 65535) & ~65535ull;
    img = g_realloc(img, l2 + 65536);
    memset(img + len, 0, l2 + 65536 - len);
    for (unsigned i = 0; i < 8192; i++) put_be64(img + l2 + 8 * i, 0x200);
    for (unsigned i = 0; i < 64; i++) put_be64(img + l1 + 8 * i, l2);
    g_assert_true(g_file_set_contents(p, (const char *)img, (gssize)(l2 + 65536), NULL));

    QsBlock *bs = qs_block_open(p, "qcow2", QS_BLOCK_CHECK | QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    g_autofree char *log = g_build_filename(dir, "flood.log", NULL);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600), saved = dup(2);
    g_assert_cmpint(fd, >=, 0);
    fflush(stderr);
    dup2(fd, 2);
    QsBlockCheckResult res;
    bool ok = qs_block_check(bs, &res, 0, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    g_assert_true(ok);
    g_assert_cmpint(res.corruptions, >=, 64 * 8192);
    qs_block_close(bs);
    g_autofree char *out = NULL;
    g_assert_true(g_file_get_contents(log, &out, NULL, NULL));
    unsigned lines = 0;
    for (const char *c = out; *c; c++) lines += *c == '\n';
    g_test_message("%u lines for %d corruptions", lines, res.corruptions);
    g_assert_cmpuint(lines, <=, 10001);
    g_assert_nonnull(strstr(out, "more messages like the above were not printed"));
    g_unlink(log);
    g_unlink(p);
}

/* Writes to a corrupt qcow2 image overwrote its metadata: a missing refcount block made
 * the clusters it covers (the header among them) look free, so the allocator or the
 * new refcount block took cluster 0; an L2 entry naming a table's cluster sent guest
 * data there.  The image then no longer opened.  Such writes are now refused as QEMU's
 * overlap checks do, and the image is marked corrupt. */
static void write_over_header(const char *name, bool drop_refblock)
{
    g_autofree char *p = g_build_filename(dir, name, NULL);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 1 << 20, "cluster_size=65536", false, &err));
    uint8_t data[4096];
    memset(data, 0x5a, sizeof(data));
    QsBlock *bs = qs_block_open(p, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(data), data, 0), ==, 0);
    qs_block_close(bs);

    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, (char **)&img, &len, NULL));
    if (drop_refblock) {
        put_be64(img + be64(img + 48), 0);              /* refcount table entry 0 */
    } else {
        uint64_t l2 = be64(img + be64(img + 40)) & 0x00fffffffffffe00ull;
        /* L2 entry 0: the refcount table's cluster, COPIED (in place) */
        put_be64(img + l2, be64(img + 48) | 1ull << 63);
    }
    g_assert_true(g_file_set_contents(p, (const char *)img, (gssize)len, NULL));

    bs = qs_block_open(p, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    /* guest offset 0 (mapped onto the refcount table) or a new cluster (allocated from
     * "free" clusters that are the header and tables) */
    int r = qs_block_pwrite(bs, drop_refblock ? 512 << 10 : 0, sizeof(data), data, 0);
    g_assert_cmpint(r, ==, -EIO);
    qs_block_close(bs);

    bs = qs_block_open(p, "qcow2", QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);                             /* the header survived */
    qs_block_close(bs);
    g_autofree uint8_t *after = NULL;
    g_assert_true(g_file_get_contents(p, (char **)&after, &len, NULL));
    g_assert_cmpuint(be64(after + 72) & 2, ==, 2);      /* incompatible bit "corrupt" */
    g_unlink(p);
}

static void test_qcow2_alloc_over_header(void)
{
    write_over_header("alloc-over-header.qcow2", true);
}

static void test_qcow2_l2_entry_at_reftable(void)
{
    write_over_header("l2-at-reftable.qcow2", false);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    dir = g_dir_make_tmp("qs-block-fuzz-regress-XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_test_add_func("/block-fuzz/regress/qcow2-check-reftable-span",
                    test_qcow2_check_reftable_span);
    g_test_add_func("/block-fuzz/regress/qcow2-check-refcount-2p63",
                    test_qcow2_check_refcount_2p63);
    g_test_add_func("/block-fuzz/regress/qcow2-check-message-flood",
                    test_qcow2_check_message_flood);
    g_test_add_func("/block-fuzz/regress/qcow2-alloc-over-header", test_qcow2_alloc_over_header);
    g_test_add_func("/block-fuzz/regress/qcow2-l2-entry-at-reftable", test_qcow2_l2_entry_at_reftable);
    int r = g_test_run();
    g_rmdir(dir);
    return r;
}
