/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Resize of vdi, vpc and parallels images and vdi check -r, against a byte model: random
 * grow/shrink/write sequences keep the content, and hostile vdi block maps (seeded
 * random entries and counts) are repaired without changing what the image reads. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "qs/block.h"

#define MiB (1u << 20)

static char *tmpdir;

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static QsBlock *open_img(const char *fn, const char *fmt, int flags)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, fmt, flags | QS_BLOCK_NO_BACKING, NULL, &err);
    if (!bs) g_error("open %s: %s", fn, err->message);
    return bs;
}

static bool is_zero(const uint8_t *p, size_t n)
{
    return !n || (!p[0] && !memcmp(p, p + 1, n - 1));
}

/* The image reads exactly model[0, size); ranges block status calls zero are checked
 * in the model only (a 300 MiB sparse image is not read through each time). */
static void assert_content(QsBlock *bs, const uint8_t *model, uint64_t size)
{
    g_assert_cmpuint(bs->size, ==, size);
    g_autofree uint8_t *buf = g_malloc(MiB);
    for (uint64_t off = 0, n; off < size; off += n) {
        n = MIN((uint64_t)MiB, size - off);
        uint64_t pnum;
        int st = qs_block_status(bs, off, n, &pnum, NULL, NULL);
        g_assert_cmpint(st, >=, 0);
        g_assert_cmpuint(pnum, >, 0);
        if (st & QS_BS_ZERO) {
            n = pnum;
            if (!is_zero(model + off, n))
                g_error("%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT " reads as zeros, the model "
                        "has data", off, n);
            continue;
        }
        g_assert_cmpint(qs_block_pread(bs, off, n, buf), ==, 0);
        if (memcmp(buf, model + off, n)) {
            for (size_t i = 0; i < n; i++)
                if (buf[i] != model[off + i])
                    g_error("byte %" G_GUINT64_FORMAT " is %#x, expected %#x", off + i,
                            buf[i], model[off + i]);
        }
    }
}

static void assert_clean(QsBlock *bs)
{
    QsBlockCheckResult res;
    GError *err = NULL;
    if (!qs_block_check(bs, &res, 0, &err)) {
        /* vpc has no check, as QEMU */
        g_assert_cmpint(err->code, ==, ENOTSUP);
        g_error_free(err);
        return;
    }
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(res.leaks, ==, 0);
}

typedef struct ResizeCase {
    const char *name, *fmt, *opts;
} ResizeCase;

static const ResizeCase resize_cases[] = {
    { "vdi", "vdi", "" },
    { "vdi-static", "vdi", "static=on" },
    { "vpc", "vpc", "" },                     /* CHS sizes: rounded up */
    { "vpc-current-size", "vpc", "force_size=on" },
    { "vpc-fixed", "vpc", "subformat=fixed" },
    { "parallels", "parallels", "" },
    { "parallels-4k", "parallels", "cluster_size=4k" },
};

/* Random writes, grows (up to 300 MiB, so tables outgrow their room) and shrinks,
 * each checked against the model, reopening the image now and then. */
static void test_resize(gconstpointer data)
{
    const ResizeCase *c = data;
    g_autofree char *fn = path(c->name);
    GError *err = NULL;
    g_assert_true(qs_block_create(c->fmt, fn, 3 * MiB, c->opts, true, &err));
    uint64_t cap = 300ull * MiB;
    g_autofree uint8_t *model = g_malloc0(cap);
    GRand *rnd = g_rand_new_with_seed(42);
    QsBlock *bs = open_img(fn, c->fmt, QS_BLOCK_RDWR);
    uint64_t size = bs->size;
    g_autofree uint8_t *buf = g_malloc(2 * MiB);
    for (int step = 0; step < 16; step++) {
        int what = g_rand_int_range(rnd, 0, 4);
        if (what < 2 && size) {
            uint64_t len = MIN(size, (uint64_t)g_rand_int_range(rnd, 1, 2 * MiB / 512) * 512);
            uint64_t off = (uint64_t)g_rand_int_range(rnd, 0, (gint32)((size - len) / 512 + 1))
                           * 512;
            memset(buf, g_rand_int_range(rnd, 1, 256), len);
            g_assert_cmpint(qs_block_pwrite(bs, off, len, buf, 0), ==, 0);
            memcpy(model + off, buf, len);
        } else {
            uint64_t ns = (uint64_t)g_rand_int_range(rnd, 1, (gint32)(cap / 512)) * 512;
            if (step == 3) ns = cap - 2 * MiB;   /* once nearly all the way */
            g_assert_true(qs_block_truncate(bs, ns, true, QS_PREALLOC_OFF, &err));
            ns = bs->size;                      /* vpc CHS sizes round up */
            g_assert_cmpuint(ns, <, cap);
            if (ns < size) memset(model + ns, 0, size - ns);   /* cut data reads as zeros */
            size = ns;
        }
        assert_content(bs, model, size);
        if (step % 5 == 4) {
            assert_clean(bs);
            qs_block_close(bs);
            bs = open_img(fn, c->fmt, QS_BLOCK_RDWR);
            assert_content(bs, model, size);
        }
    }
    assert_clean(bs);
    qs_block_close(bs);
    g_rand_free(rnd);
    g_unlink(fn);
}

/* ---- vdi check -r on hostile block maps ---- */

enum { VDI_BMAP = 512, VDI_ALLOCATED = 0x184 };

static void patch_le32(const char *fn, uint64_t off, uint32_t v)
{
    int fd = g_open(fn, O_RDWR, 0);
    g_assert_cmpint(fd, >=, 0);
    uint32_t le = GUINT32_TO_LE(v);
    g_assert_cmpint(pwrite(fd, &le, 4, (off_t)off), ==, 4);
    close(fd);
}

/* Seeded random block maps (entries in and out of range, past the file, shared,
 * unallocated, discarded) and counts: check -r all repairs everything, a second check
 * is clean, the image reads what it read before, and -r leaks alone never touches an
 * image with corruptions. */
static void test_vdi_repair(void)
{
    g_autofree char *fn = path("hostile.vdi");
    g_autofree char *copy = path("hostile-leaks.vdi");
    const uint32_t blocks = 24;
    g_autofree uint8_t *before = g_malloc((size_t)blocks * MiB);
    g_autofree uint8_t *buf = g_malloc(MiB);
    for (unsigned seed = 1; seed <= 25; seed++) {
        GError *err = NULL;
        GRand *rnd = g_rand_new_with_seed(seed);
        g_assert_true(qs_block_create("vdi", fn, (uint64_t)blocks * MiB, "", true, &err));
        QsBlock *bs = open_img(fn, "vdi", QS_BLOCK_RDWR);
        uint32_t nwritten = (uint32_t)g_rand_int_range(rnd, 1, 12);
        for (uint32_t k = 0; k < nwritten; k++) {
            memset(buf, (int)(k + 1), MiB);
            uint32_t b = (uint32_t)g_rand_int_range(rnd, 0, blocks);
            g_assert_cmpint(qs_block_pwrite(bs, (uint64_t)b * MiB, MiB, buf, 0), ==, 0);
        }
        qs_block_close(bs);
        int edits = g_rand_int_range(rnd, 1, 6);
        for (int k = 0; k < edits; k++) {
            uint32_t v;
            switch (g_rand_int_range(rnd, 0, 6)) {
            case 0: v = 0xffffffffu; break;                            /* unallocated */
            case 1: v = 0xfffffffeu; break;                            /* discarded */
            case 2: v = (uint32_t)g_rand_int_range(rnd, 0, 4); break;  /* likely shared */
            case 3: v = blocks + (uint32_t)g_rand_int_range(rnd, 0, 1000); break;
            case 4: v = g_rand_int(rnd); break;
            default: v = (uint32_t)g_rand_int_range(rnd, 12, blocks); break; /* past file */
            }
            patch_le32(fn, VDI_BMAP + 4 * (uint64_t)g_rand_int_range(rnd, 0, blocks), v);
        }
        if (g_rand_boolean(rnd))
            patch_le32(fn, VDI_ALLOCATED, (uint32_t)g_rand_int_range(rnd, 0, blocks + 1));
        /* what it reads now (a check open accepts any entry) */
        bs = open_img(fn, "vdi", QS_BLOCK_CHECK);
        for (uint32_t b = 0; b < blocks; b++)
            g_assert_cmpint(qs_block_pread(bs, (uint64_t)b * MiB, MiB, before + (uint64_t)b * MiB),
                            ==, 0);
        QsBlockCheckResult res;
        g_assert_true(qs_block_check(bs, &res, 0, &err));
        qs_block_close(bs);
        bool corrupt = res.corruptions > 0;
        int leaks = res.leaks;
        /* -r leaks: leaks go (when nothing is corrupt), corruptions stay */
        {
            g_autofree gchar *bytes = NULL;
            gsize len;
            g_assert_true(g_file_get_contents(fn, &bytes, &len, NULL));
            g_assert_true(g_file_set_contents(copy, bytes, (gssize)len, NULL));
        }
        bs = open_img(copy, "vdi", QS_BLOCK_RDWR | QS_BLOCK_CHECK);
        QsBlockCheckResult lr;
        g_assert_true(qs_block_check(bs, &lr, QS_CHECK_FIX_LEAKS, &err));
        g_assert_cmpint(lr.corruptions_fixed, ==, 0);
        g_assert_cmpint(lr.leaks_fixed, ==, corrupt ? 0 : leaks);
        g_assert_true(qs_block_check(bs, &lr, 0, &err));
        g_assert_cmpint(lr.leaks, ==, corrupt ? leaks : 0);
        g_assert_cmpint(lr.corruptions > 0, ==, corrupt);
        qs_block_close(bs);
        /* -r all */
        bs = open_img(fn, "vdi", QS_BLOCK_RDWR | QS_BLOCK_CHECK);
        g_assert_true(qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
        g_assert_cmpint(res.corruptions_fixed, ==, res.corruptions);
        g_assert_true(qs_block_check(bs, &res, 0, &err));
        g_assert_cmpint(res.corruptions, ==, 0);
        g_assert_cmpint(res.leaks, ==, 0);
        qs_block_close(bs);
        /* an ordinary open takes it now, reads the same, and can write and grow */
        bs = open_img(fn, "vdi", QS_BLOCK_RDWR);
        assert_content(bs, before, (uint64_t)blocks * MiB);
        memset(buf, 0x5a, MiB);
        g_assert_cmpint(qs_block_pwrite(bs, 5 * MiB, MiB, buf, 0), ==, 0);
        memcpy(before + 5 * MiB, buf, MiB);
        g_assert_true(qs_block_truncate(bs, 40ull * MiB, false, QS_PREALLOC_OFF, &err));
        qs_block_close(bs);
        bs = open_img(fn, "vdi", 0);
        g_autofree uint8_t *grown = g_malloc0(40ull * MiB);
        memcpy(grown, before, (size_t)blocks * MiB);
        assert_content(bs, grown, 40ull * MiB);
        assert_clean(bs);
        qs_block_close(bs);
        g_rand_free(rnd);
    }
    g_unlink(fn);
    g_unlink(copy);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    tmpdir = g_dir_make_tmp("qs-formats-resize-XXXXXX", NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(resize_cases); i++) {
        g_autofree char *name = g_strdup_printf("/formats/resize/%s", resize_cases[i].name);
        g_test_add_data_func(name, &resize_cases[i], test_resize);
    }
    g_test_add_func("/formats/vdi/check-repair", test_vdi_repair);
    int r = g_test_run();
    g_rmdir(tmpdir);
    return r;
}
