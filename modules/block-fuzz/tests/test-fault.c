/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests of the block-fuzz module's "fault" filter, loaded as a module: each rule kind on
 * qcow2/vmdk/vdi/vpc error paths, and a crash-consistency sweep of torn writes. */
#include <errno.h>
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"
#include "module-loader.h"

#define CRASH_POINTS 40

static char *dir;

static char *path(const char *name)
{
    return g_build_filename(dir, name, NULL);
}

static char *fault(const char *name)
{
    g_autofree char *p = path(name);
    return g_strconcat("fault:", p, NULL);
}

/* A qcow2 image (4 KiB clusters, 1 MiB) with 'A' in its first 64 KiB. */
static void make_qcow2(const char *name)
{
    g_autofree char *p = path(name);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 1 << 20, "cluster_size=4096", false, &err));
    QsBlock *bs = qs_block_open(p, "qcow2", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    uint8_t buf[65536];
    memset(buf, 'A', sizeof(buf));
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    qs_block_close(bs);
}

/* Host offset of guest offset `off` in a qcow2 image. */
static uint64_t host_offset(const char *name, uint64_t off)
{
    g_autofree char *p = path(name);
    QsBlock *bs = qs_block_open(p, "qcow2", 0, NULL, NULL);
    g_assert_nonnull(bs);
    uint64_t n, map;
    int r = qs_block_status(bs, off, 4096, &n, &map, NULL);
    g_assert_true(r & QS_BS_OFFSET_VALID);
    qs_block_close(bs);
    return map;
}

static void test_read_error(void)
{
    make_qcow2("rderr.qcow2");
    g_autofree char *f = fault("rderr.qcow2");
    GError *err = NULL;
    QsBlock *bs = qs_block_open(f, NULL, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bs->drv->name, ==, "qcow2");   /* probed through the filter */
    uint8_t buf[4096];
    /* the rule covers the host cluster of guest offset 8192 only */
    g_assert_cmpint(qs_block_pread(bs, 8192, 4096, buf), ==, -EIO);
    g_assert_cmpint(qs_block_pread(bs, 8192, 4096, buf), ==, 0);   /* count=1 */
    g_assert_cmpint(buf[0], ==, 'A');
    g_assert_cmpint(qs_block_pread(bs, 0, 4096, buf), ==, 0);
    qs_block_close(bs);
}

static void test_errno_on_open(void)
{
    make_qcow2("enospc.qcow2");
    g_autofree char *f = fault("enospc.qcow2");
    GError *err = NULL;
    QsBlock *bs = qs_block_open(f, "qcow2", 0, NULL, &err);
    g_assert_null(bs);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, g_strerror(ENOSPC)));
    g_error_free(err);
}

/* Without a format the probe reads through the image the format driver gets, as its
 * first read request: the third is then qcow2's second header read (with a probe of
 * its own image, qcow2's L1 table read). */
static void test_probe_is_first_read(void)
{
    make_qcow2("second.qcow2");
    g_autofree char *f = fault("second.qcow2");
    GError *err = NULL;
    QsBlock *bs = qs_block_open(f, NULL, 0, NULL, &err);
    g_assert_null(bs);
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, "Could not read qcow2 header"));
    g_assert_nonnull(strstr(err->message, g_strerror(EROFS)));
    g_error_free(err);
}

static void test_short_read(void)
{
    make_qcow2("short.qcow2");
    g_autofree char *f = fault("short.qcow2");
    QsBlock *bs = qs_block_open(f, "qcow2", 0, NULL, NULL);
    g_assert_nonnull(bs);
    uint8_t buf[4096];
    /* rule: reads covering guest 12288's cluster keep 100 bytes, the rest reads zeros */
    g_assert_cmpint(qs_block_pread(bs, 12288, 4096, buf), ==, 0);
    g_assert_cmpint(buf[99], ==, 'A');
    g_assert_cmpint(buf[100], ==, 0);
    g_assert_cmpint(buf[4095], ==, 0);
    qs_block_close(bs);
}

static void test_flip_header(void)
{
    make_qcow2("flip.qcow2");
    g_autofree char *f = fault("flip.qcow2");
    GError *err = NULL;
    /* bit 0 of byte 3 of the magic: "QFI\xfb" becomes "QFI\xfa" */
    QsBlock *bs = qs_block_open(f, "qcow2", 0, NULL, &err);
    g_assert_null(bs);
    g_assert_nonnull(strstr(err->message, "qcow2"));
    g_error_free(err);
}

static void test_flip_data(void)
{
    make_qcow2("flipdata.qcow2");
    g_autofree char *f = fault("flipdata.qcow2");
    QsBlock *bs = qs_block_open(f, "qcow2", 0, NULL, NULL);
    g_assert_nonnull(bs);
    uint8_t buf[4096];
    g_assert_cmpint(qs_block_pread(bs, 16384, 4096, buf), ==, 0);
    g_assert_cmpint(buf[0], ==, 'A' ^ 0x80);     /* bit=7 of the first byte */
    g_assert_cmpint(buf[1], ==, 'A');
    qs_block_close(bs);
}

static void test_write_flush_errors(void)
{
    make_qcow2("wrerr.qcow2");
    g_autofree char *f = fault("wrerr.qcow2");
    QsBlock *bs = qs_block_open(f, "qcow2", QS_BLOCK_RDWR, NULL, NULL);
    g_assert_nonnull(bs);
    uint8_t buf[4096];
    memset(buf, 'B', sizeof(buf));
    /* rules: every write fails with EROFS, so does every flush */
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, -EROFS);
    g_assert_cmpint(qs_block_flush(bs), ==, -EIO);
    g_assert_cmpint(qs_block_pread(bs, 0, sizeof(buf), buf), ==, 0);
    g_assert_cmpint(buf[0], ==, 'A');
    qs_block_close(bs);
}

/* Torn write at the K-th write request, then the "device" is gone (crash=on): the image
 * must reopen, hold everything flushed before, check without corruptions (leaks are
 * allowed), and be clean after check -r all. */
static void crash_at(unsigned k)
{
    g_autofree char *name = g_strdup_printf("crash%u.qcow2", k);
    g_autofree char *p = path(name);
    g_autofree char *f = fault(name);
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", p, 4 << 20, "cluster_size=4096", false, &err));
    QsBlock *bs = qs_block_open(f, "qcow2", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    uint8_t a[8192], b[4096];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    bool flushed = qs_block_pwrite(bs, 0, sizeof(a), a, 0) == 0 && qs_block_flush(bs) == 0;
    /* scattered allocations: new L2 tables, refcount blocks, data clusters */
    for (unsigned i = 0; i < 8; i++)
        (void)qs_block_pwrite(bs, (uint64_t)i * 512 * 1024 + 65536, sizeof(b), b, 0);
    (void)qs_block_pwrite_zeroes(bs, 8192, 4096, 0);
    (void)qs_block_flush(bs);
    qs_block_close(bs);

    bs = qs_block_open(p, "qcow2", QS_BLOCK_CHECK, NULL, &err);
    g_assert_no_error(err);
    uint8_t back[8192];
    if (flushed) {
        g_assert_cmpint(qs_block_pread(bs, 0, sizeof(back), back), ==, 0);
        g_assert_cmpmem(back, sizeof(back), a, sizeof(a));
    }
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_no_error(err);
    if (res.corruptions)
        g_test_message("crash at write %u: %d corruptions", k, res.corruptions);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.check_errors, ==, 0);
    qs_block_close(bs);

    bs = qs_block_open(p, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_CHECK, NULL, &err);
    g_assert_no_error(err);
    g_assert_true(qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions + res.leaks + res.check_errors, ==, 0);
    qs_block_close(bs);
}

static void test_crash_sweep(void)
{
    for (unsigned k = 1; k <= CRASH_POINTS; k++) crash_at(k);
}

/* vmdk, vdi, vpc: an error on every read after the header fails reads cleanly. */
static void test_other_formats(void)
{
    static const char *const fmts[] = { "vmdk", "vdi", "vpc" };
    for (unsigned i = 0; i < G_N_ELEMENTS(fmts); i++) {
        g_autofree char *name = g_strdup_printf("late.%s", fmts[i]);
        g_autofree char *p = path(name);
        g_autofree char *f = fault(name);
        GError *err = NULL;
        g_assert_true(qs_block_create(fmts[i], p, 4 << 20, NULL, false, &err));
        QsBlock *bs = qs_block_open(p, fmts[i], QS_BLOCK_RDWR, NULL, &err);
        g_assert_no_error(err);
        uint8_t buf[4096];
        memset(buf, 'C', sizeof(buf));
        g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
        qs_block_close(bs);
        /* open: the filter's first reads pass; the rule fails reads from the 9th on */
        bs = qs_block_open(f, fmts[i], 0, NULL, &err);
        if (!bs) {
            g_assert_nonnull(err);
            g_error_free(err);
            continue;   /* opening already needed the failing reads: that is an error path */
        }
        int r = 0;
        for (unsigned j = 0; j < 16 && r == 0; j++) r = qs_block_pread(bs, 0, sizeof(buf), buf);
        g_assert_cmpint(r, ==, -EIO);
        qs_block_close(bs);
    }
}

static void test_bad_rules(void)
{
    static const struct { const char *spec, *msg; } cases[] = {
        { "block-fuzz,rule=reed error", "operation 'reed'" },
        { "block-fuzz,rule=read explode", "action 'explode'" },
        { "block-fuzz,rule=read error offset=lots", "offset 'lots'" },
        { "block-fuzz,rule=read torn", "'torn' applies to write" },
        { "block-fuzz,rule=flush flip", "applies to read or write" },
        { "block-fuzz,rule=write error nth=0", "nth '0'" },
        { "block-fuzz,rule=write error errno=EWHAT", "errno 'EWHAT'" },
        { "block-fuzz,rule=read flip bit=8", "bit '8'" },
        { "block-fuzz,rule=read error colour=red", "unknown key 'colour'" },
        { "block-fuzz,rules=/nonexistent/rules", "/nonexistent/rules" },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        GError *err = NULL;
        g_assert_false(qs_module_load(cases[i].spec, &err));
        g_assert_nonnull(err);
        if (!strstr(err->message, cases[i].msg))
            g_error("'%s': message '%s' lacks '%s'", cases[i].spec, err->message, cases[i].msg);
        g_error_free(err);
    }
}

/* One module load for the whole process: every test's rule is keyed by its image name. */
static void load_module(void)
{
    g_autoptr(GString) rules = g_string_new("# test rules\n");
    uint64_t h8k = host_offset("probe.qcow2", 8192);
    uint64_t h12k = host_offset("probe.qcow2", 12288);
    uint64_t h16k = host_offset("probe.qcow2", 16384);
    g_string_append_printf(rules, "read error offset=%" G_GUINT64_FORMAT " count=1 "
                           "image=rderr\n", h8k);
    g_string_append(rules, "read error nth=1 errno=ENOSPC image=enospc\n");
    g_string_append_printf(rules, "read short offset=%" G_GUINT64_FORMAT " keep=100 "
                           "image=short\n", h12k);
    g_string_append(rules, "read flip offset=3 image=flip.qcow2\n");
    g_string_append_printf(rules, "read flip offset=%" G_GUINT64_FORMAT " bit=7 "
                           "image=flipdata\n", h16k);
    g_string_append(rules, "write error errno=EROFS image=wrerr; flush error image=wrerr\n");
    for (unsigned k = 1; k <= CRASH_POINTS; k++)
        g_string_append_printf(rules, "write torn nth=%u keep=512 crash=on image=crash%u.\n",
                               k, k);
    g_string_append(rules, "read error from=9 image=late.\n");
    g_string_append(rules, "read error nth=3 errno=EROFS image=second\n");
    g_autofree char *file = path("rules");
    g_assert_true(g_file_set_contents(file, rules->str, -1, NULL));
    g_autofree char *spec = g_strdup_printf("block-fuzz,rules=%s", file);
    GError *err = NULL;
    g_assert_true(qs_module_load(spec, &err));
    g_assert_no_error(err);
    g_assert_nonnull(qs_block_driver_find("fault"));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    dir = g_dir_make_tmp("qs-block-fuzz-test-XXXXXX", NULL);
    g_assert_nonnull(dir);
    make_qcow2("probe.qcow2");
    test_bad_rules();   /* failed loads first: the module is not loaded yet */
    load_module();
    g_test_add_func("/block-fuzz/fault/read-error", test_read_error);
    g_test_add_func("/block-fuzz/fault/errno-on-open", test_errno_on_open);
    g_test_add_func("/block-fuzz/fault/probe-is-first-read", test_probe_is_first_read);
    g_test_add_func("/block-fuzz/fault/short-read", test_short_read);
    g_test_add_func("/block-fuzz/fault/flip-header", test_flip_header);
    g_test_add_func("/block-fuzz/fault/flip-data", test_flip_data);
    g_test_add_func("/block-fuzz/fault/write-flush-errors", test_write_flush_errors);
    g_test_add_func("/block-fuzz/fault/other-formats", test_other_formats);
    g_test_add_func("/block-fuzz/fault/qcow2-crash-sweep", test_crash_sweep);
    int r = g_test_run();
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *n;
    while (d && (n = g_dir_read_name(d))) {
        g_autofree char *p = path(n);
        g_unlink(p);
    }
    g_rmdir(dir);
    return r;
}
