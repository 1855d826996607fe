/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Block layer unit tests: raw and qcow2 I/O across the option matrix, snapshots, the
 * crash-consistency proof (fail the N-th write, then check) and the thread pool. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *tmpdir;

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) & 0xff);
}

static QsBlock *open_ok(const char *fn, const char *fmt, int flags)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, fmt, flags, NULL, &err);
    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

static void assert_clean(const char *fn, bool allow_leaks)
{
    QsBlock *bs = open_ok(fn, "qcow2", QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK);
    QsBlockCheckResult r;
    GError *err = NULL;
    g_assert_true(qs_block_check(bs, &r, 0, &err));
    g_assert_cmpint(r.corruptions, ==, 0);
    g_assert_cmpint(r.check_errors, ==, 0);
    if (!allow_leaks) g_assert_cmpint(r.leaks, ==, 0);
    qs_block_close(bs);
}

/* A model of the guest content, checked against the image after each workload. */
static void workload(QsBlock *bs, uint8_t *model, bool tolerate_errors)
{
    uint64_t size = bs->size;
    size_t max = 300000;
    g_autofree uint8_t *buf = g_malloc(max);
    struct { uint64_t off; size_t len; int kind; } ops[] = {
        { 0, 4096, 0 }, { 65536 * 3 + 100, 200000, 0 }, { 1000, 70000, 1 },
        { 65536 * 10, 65536 * 2, 2 }, { 65536 * 3, 65536, 1 }, { 512, 512, 0 },
        { size - 70000, 70000, 0 }, { 65536 * 20, 65536, 3 }, { 65536 * 30 + 7, 9000, 0 },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(ops); i++) {
        uint64_t off = ops[i].off;
        size_t len = ops[i].len;
        int r = 0;
        switch (ops[i].kind) {
        case 0:
            fill(buf, len, i + 1);
            r = qs_block_pwrite(bs, off, len, buf, 0);
            if (r == 0) memcpy(model + off, buf, len);
            break;
        case 1:
            r = qs_block_pwrite_zeroes(bs, off, len, QS_WRITE_MAY_UNMAP);
            if (r == 0) memset(model + off, 0, len);
            break;
        case 2:
            r = qs_block_pdiscard(bs, off, len);
            if (r == 0) memset(model + off, 0, len);
            break;
        case 3: {
            /* one whole cluster, compressed */
            size_t cs = qs_block_cluster_size(bs);
            g_autofree uint8_t *cb = g_malloc(cs);
            memset(cb, 'c', cs);
            off = MIN(off / cs * cs, size - cs);
            r = qs_block_pwrite_compressed(bs, off, cs, cb);
            if (r == 0) memcpy(model + off, cb, cs);
            break;
        }
        }
        if (!tolerate_errors) g_assert_cmpint(r, ==, 0);
        if (r < 0) return;
    }
}

static void compare_model(QsBlock *bs, const uint8_t *model)
{
    g_autofree uint8_t *got = g_malloc(bs->size);
    g_assert_cmpint(qs_block_pread(bs, 0, bs->size, got), ==, 0);
    for (uint64_t i = 0; i < bs->size; i++) {
        if (got[i] != model[i]) g_error("byte %" G_GUINT64_FORMAT " is %u, expected %u", i, got[i], model[i]);
    }
}

static void test_qcow2_matrix(void)
{
    static const char *const opts[] = {
        "", "compat=0.10", "cluster_size=512", "cluster_size=2M", "refcount_bits=1",
        "refcount_bits=2", "refcount_bits=4", "refcount_bits=8", "refcount_bits=32",
        "refcount_bits=64", "extended_l2=on", "compression_type=zstd", "lazy_refcounts=on",
        "cluster_size=4k,refcount_bits=1", "preallocation=metadata",
    };
    uint64_t size = 4 << 20;
    for (unsigned i = 0; i < G_N_ELEMENTS(opts); i++) {
        g_autofree char *fn = path("m.qcow2");
        GError *err = NULL;
        g_assert_true(qs_block_create("qcow2", fn, size, opts[i], false, &err));
        g_assert_no_error(err);
        QsBlock *bs = open_ok(fn, NULL, QS_BLOCK_RDWR);
        g_assert_cmpstr(bs->drv->name, ==, "qcow2");
        g_autofree uint8_t *model = g_malloc0(size);
        workload(bs, model, false);
        compare_model(bs, model);
        qs_block_close(bs);
        assert_clean(fn, false);
        bs = open_ok(fn, NULL, 0);
        compare_model(bs, model);
        qs_block_close(bs);
    }
}

static void test_raw_sparse(void)
{
    g_autofree char *fn = path("r.raw");
    GError *err = NULL;
    g_assert_true(qs_block_create("raw", fn, 8 << 20, NULL, false, &err));
    QsBlock *bs = open_ok(fn, NULL, QS_BLOCK_RDWR);
    g_assert_cmpstr(bs->drv->name, ==, "raw");
    uint8_t buf[65536];
    fill(buf, sizeof(buf), 3);
    g_assert_cmpint(qs_block_pwrite(bs, 1 << 20, sizeof(buf), buf, 0), ==, 0);
    uint64_t n, map;
    int st = qs_block_status(bs, 0, bs->size, &n, &map, NULL);
    g_assert_true(st & QS_BS_ZERO);
    g_assert_cmpuint(n, ==, 1 << 20);
    st = qs_block_status(bs, 1 << 20, bs->size, &n, &map, NULL);
    g_assert_true(st & QS_BS_DATA);
    g_assert_cmpuint(n, ==, sizeof(buf));
    g_assert_cmpint(qs_block_pwrite_zeroes(bs, 1 << 20, sizeof(buf), QS_WRITE_MAY_UNMAP), ==, 0);
    st = qs_block_status(bs, 0, bs->size, &n, &map, NULL);
    g_assert_true(st & QS_BS_ZERO);
    g_assert_cmpuint(n, ==, bs->size);
    g_assert_true(qs_block_truncate(bs, 16 << 20, false, QS_PREALLOC_FALLOC, &err));
    g_assert_cmpint(qs_block_allocated_size(bs), >=, 8 << 20);
    qs_block_close(bs);
    /* preallocation=full writes the zeros */
    g_assert_true(qs_block_create("raw", fn, 1 << 20, "preallocation=full", false, &err));
    bs = open_ok(fn, "raw", 0);
    g_assert_cmpint(qs_block_allocated_size(bs), >=, 1 << 20);
    qs_block_close(bs);
    g_assert_false(qs_block_create("raw", fn, 1 << 20, "preallocation=bogus", false, &err));
    g_assert_nonnull(strstr(err->message, "bogus"));
    g_clear_error(&err);
}

static void test_backing_and_snapshots(void)
{
    g_autofree char *base = path("base.qcow2"), *top = path("top.qcow2");
    GError *err = NULL;
    uint64_t size = 2 << 20;
    g_assert_true(qs_block_create("qcow2", base, size, NULL, false, &err));
    QsBlock *b = open_ok(base, NULL, QS_BLOCK_RDWR);
    g_autofree uint8_t *model = g_malloc0(size), *buf = g_malloc(size);
    fill(model, size, 9);
    g_assert_cmpint(qs_block_pwrite(b, 0, size, model, 0), ==, 0);
    qs_block_close(b);
    g_assert_true(qs_block_create("qcow2", top, UINT64_MAX, "backing_file=base.qcow2,backing_fmt=qcow2", false, &err));
    g_assert_no_error(err);
    QsBlock *t = open_ok(top, NULL, QS_BLOCK_RDWR);
    g_assert_nonnull(t->backing);
    g_assert_cmpuint(t->size, ==, size);
    compare_model(t, model);
    /* a partial write copies the rest of the cluster from the backing file */
    memset(buf, 0xee, 100);
    g_assert_cmpint(qs_block_pwrite(t, 70000, 100, buf, 0), ==, 0);
    memset(model + 70000, 0xee, 100);
    g_assert_cmpint(qs_block_pwrite_zeroes(t, 65536 * 4, 65536, 0), ==, 0);
    memset(model + 65536 * 4, 0, 65536);
    compare_model(t, model);
    /* snapshots: create, change, apply, delete */
    g_assert_true(t->drv->snapshot_create(t, "s1", &err));
    g_autofree uint8_t *snap_model = g_memdup2(model, size);
    memset(buf, 0x11, 8192);
    g_assert_cmpint(qs_block_pwrite(t, 70000, 8192, buf, 0), ==, 0);
    memcpy(model + 70000, buf, 8192);
    g_assert_false(t->drv->snapshot_create(t, "s1", &err));
    g_clear_error(&err);
    g_assert_true(t->drv->snapshot_create(t, "s2", &err));
    compare_model(t, model);
    qs_block_close(t);
    assert_clean(top, false);
    t = open_ok(top, NULL, QS_BLOCK_RDWR);
    g_autoptr(QsBlockSnapshotList) l = t->drv->snapshot_list(t);
    g_assert_cmpuint(l->len, ==, 2);
    g_assert_true(t->drv->snapshot_apply(t, "s1", &err));
    compare_model(t, snap_model);
    g_assert_true(t->drv->snapshot_delete(t, "1", &err));
    g_assert_false(t->drv->snapshot_delete(t, "nope", &err));
    g_clear_error(&err);
    g_assert_true(t->drv->snapshot_apply(t, "s2", &err));
    compare_model(t, model);
    g_assert_true(t->drv->snapshot_delete(t, "s2", &err));
    qs_block_close(t);
    assert_clean(top, false);
}

/* Every write of the workload fails in turn (and all after it, as in a crash): the
 * image must then check with at worst leaked clusters.  Snapshot operations crash in
 * turn too: there the only inconsistency allowed is a missing COPIED flag (harmless,
 * QEMU's check calls it an error and -r all repairs it); no data may be lost. */
static void test_crash_consistency(void)
{
    g_autofree char *fn = path("crash.qcow2");
    static const char *const variants[] = { "", "cluster_size=4k,refcount_bits=64", "compat=0.10" };
    for (unsigned v = 0; v < G_N_ELEMENTS(variants); v++) {
        int total = 0;
        for (int n = 1;; n++) {
            GError *err = NULL;
            g_assert_true(qs_block_create("qcow2", fn, 4 << 20, variants[v], false, &err));
            QsBlock *bs = open_ok(fn, "qcow2", QS_BLOCK_RDWR);
            g_autofree uint8_t *model = g_malloc0(bs->size);
            bs->file->fail_write_at = n;
            workload(bs, model, true);
            int64_t writes = bs->file->write_count;
            qs_block_close(bs);
            assert_clean(fn, true);
            if (writes < n) { total = n; break; }
            g_assert_cmpint(n, <, 5000);
        }
        g_test_message("variant '%s': %d write points tested", variants[v], total);
        g_assert_cmpint(total, >, 20);
        for (int n = 1;; n++) {
            GError *err = NULL;
            g_assert_true(qs_block_create("qcow2", fn, 4 << 20, variants[v], false, &err));
            QsBlock *bs = open_ok(fn, "qcow2", QS_BLOCK_RDWR);
            g_autofree uint8_t *model = g_malloc0(bs->size);
            workload(bs, model, false);
            bs->file->fail_write_at = bs->file->write_count + n;
            bool ok = bs->drv->snapshot_create(bs, "a", &err);
            g_clear_error(&err);
            ok = ok && bs->drv->snapshot_create(bs, "b", &err);
            g_clear_error(&err);
            ok = ok && bs->drv->snapshot_delete(bs, "a", &err);
            g_clear_error(&err);
            qs_block_close(bs);
            bs = open_ok(fn, "qcow2", QS_BLOCK_RDWR | QS_BLOCK_CHECK);
            QsBlockCheckResult r;
            g_assert_true(qs_block_check(bs, &r, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
            g_assert_true(qs_block_check(bs, &r, 0, &err));
            g_assert_cmpint(r.corruptions + r.leaks + r.check_errors, ==, 0);
            compare_model(bs, model);
            qs_block_close(bs);
            if (ok) break;
            g_assert_cmpint(n, <, 5000);
        }
    }
}

static int count_fn(uint64_t i, void *opaque)
{
    __atomic_add_fetch((uint64_t *)opaque, i + 1, __ATOMIC_SEQ_CST);
    return 0;
}

typedef struct Nested { uint64_t sum; GMutex lock; GHashTable *threads; } Nested;

static int inner_fn(uint64_t i, void *opaque)
{
    Nested *n = opaque;
    g_mutex_lock(&n->lock);
    g_hash_table_add(n->threads, g_thread_self());
    g_mutex_unlock(&n->lock);
    g_usleep(200);   /* long enough that the helpers get items too */
    __atomic_add_fetch(&n->sum, i + 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int outer_fn(uint64_t i, void *opaque)
{
    /* every outer item runs a whole parallel loop of its own on the same pool */
    return qs_block_parallel_for(4, 50, inner_fn, opaque);
}

static int fail_at_fn(uint64_t i, void *opaque)
{
    __atomic_add_fetch((uint64_t *)opaque, 1, __ATOMIC_SEQ_CST);
    return i == 10 ? -EIO : 0;
}

/* The pool-backed parallel-for: sums are exact, nested loops (more than the pool's
 * threads in all) finish, work spreads over several threads, the first error stops it. */
static void test_parallel_for(void)
{
    for (unsigned t = 1; t <= 64; t *= 4) {
        uint64_t sum = 0;
        g_assert_cmpint(qs_block_parallel_for(t, 1000, count_fn, &sum), ==, 0);
        g_assert_cmpuint(sum, ==, 500500);
    }
    uint64_t none = 0;
    g_assert_cmpint(qs_block_parallel_for(8, 0, count_fn, &none), ==, 0);
    g_assert_cmpuint(none, ==, 0);
    Nested n = { 0 };
    g_mutex_init(&n.lock);
    n.threads = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_assert_cmpint(qs_block_parallel_for(64, 100, outer_fn, &n), ==, 0);
    g_assert_cmpuint(n.sum, ==, 100 * (50 * 51 / 2));
    g_assert_cmpuint(g_hash_table_size(n.threads), >, 1);
    g_hash_table_destroy(n.threads);
    g_mutex_clear(&n.lock);
    uint64_t ran = 0;
    g_assert_cmpint(qs_block_parallel_for(4, 100000, fail_at_fn, &ran), ==, -EIO);
    g_assert_cmpuint(ran, <, 100000);
    g_assert_cmpuint(ran, >=, 11);
}

static void test_parallel_writes(void)
{
    uint64_t sum = 0;
    g_assert_cmpint(qs_block_parallel_for(4, 1000, count_fn, &sum), ==, 0);
    g_assert_cmpuint(sum, ==, 500500);
    /* many threads allocating clusters of one qcow2 image at once */
    g_autofree char *fn = path("par.qcow2");
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", fn, 64 << 20, "cluster_size=4k", false, &err));
    QsBlock *bs = open_ok(fn, NULL, QS_BLOCK_RDWR);
    QsBlockAio *q = qs_block_aio_new(16);
    uint64_t n = 512, chunk = 6000;
    g_autofree uint8_t *data = g_malloc(n * chunk);
    fill(data, n * chunk, 77);
    for (uint64_t i = 0; i < n; i++)
        qs_block_aio_pwrite(q, bs, ((i * 37) % n) * chunk, chunk, data + ((i * 37) % n) * chunk, 0, NULL, NULL);
    g_assert_cmpint(qs_block_aio_drain(q), ==, 0);
    g_autofree uint8_t *got = g_malloc(n * chunk);
    for (uint64_t i = 0; i < n; i++) qs_block_aio_pread(q, bs, i * chunk, chunk, got + i * chunk, NULL, NULL);
    g_assert_cmpint(qs_block_aio_drain(q), ==, 0);
    g_assert_true(memcmp(got, data, n * chunk) == 0);
    qs_block_aio_free(q);
    qs_block_close(bs);
    assert_clean(fn, false);
}

static void test_resize_and_amend(void)
{
    g_autofree char *fn = path("rs.qcow2");
    GError *err = NULL;
    g_assert_true(qs_block_create("qcow2", fn, 1 << 20, "cluster_size=512", false, &err));
    QsBlock *bs = open_ok(fn, NULL, QS_BLOCK_RDWR);
    /* growing far past the first refcount table forces it to move */
    g_assert_true(qs_block_truncate(bs, 256 << 20, false, QS_PREALLOC_OFF, &err));
    uint8_t buf[4096];
    fill(buf, sizeof(buf), 5);
    for (uint64_t off = 0; off < (256u << 20); off += 1 << 20)
        g_assert_cmpint(qs_block_pwrite(bs, off, sizeof(buf), buf, 0), ==, 0);
    qs_block_close(bs);
    assert_clean(fn, false);
    bs = open_ok(fn, NULL, QS_BLOCK_RDWR);
    uint8_t got[4096];
    g_assert_cmpint(qs_block_pread(bs, 255 << 20, sizeof(got), got), ==, 0);
    g_assert_true(memcmp(got, buf, sizeof(buf)) == 0);
    QsOpts *o = qs_block_create_opts_parse(bs->drv, "compat=0.10", &err);
    g_assert_true(bs->drv->amend(bs, o, &err));
    qs_opts_free(o);
    g_assert_true(qs_block_truncate(bs, 128 << 20, true, QS_PREALLOC_OFF, &err));
    qs_block_close(bs);
    assert_clean(fn, false);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    tmpdir = g_dir_make_tmp("qs-block-XXXXXX", NULL);
    g_test_add_func("/block/raw/sparse", test_raw_sparse);
    g_test_add_func("/block/qcow2/matrix", test_qcow2_matrix);
    g_test_add_func("/block/qcow2/backing-snapshots", test_backing_and_snapshots);
    g_test_add_func("/block/qcow2/crash-consistency", test_crash_consistency);
    g_test_add_func("/block/parallel-for", test_parallel_for);
    g_test_add_func("/block/qcow2/parallel", test_parallel_writes);
    g_test_add_func("/block/qcow2/resize-amend", test_resize_and_amend);
    int r = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) r = r ? r : 0;
    return r;
}
