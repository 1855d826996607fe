/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vhdx differencing images: seeded random writes (sub-sector, whole block, zeros) against
 * a model, concurrent writers into shared sectors, block status, linkage and hostile
 * parent locators (missing keys, bad GUIDs, loops, over-long paths).  Runs under ASan. */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"

#define MiB (1u << 20)
#define DISK (8u * MiB)

static char *tmpdir;

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Write a whole file without g_file_set_contents' fsync (the tests write hundreds). */
static gboolean set_contents(const char *fn, const char *data, gsize len, GError **err)
{
    FILE *f = fopen(fn, "wb");
    if (!f) return FALSE;
    gboolean ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static uint64_t get_le(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static QsBlock *open_ok(const char *fn, int flags)
{
    GError *err = NULL;
    /* no fsync: crash safety is tested elsewhere, and the host is shared */
    QsBlock *bs = qs_block_open(fn, "vhdx", flags | QS_BLOCK_NO_FLUSH, NULL, &err);
    g_assert_no_error(err);
    return bs;
}

/* A 1 MiB-block parent with a pattern in blocks 0-5 (block 6, 7 never written). */
static uint8_t *make_parent(const char *fn)
{
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", fn, DISK, "block_size=1M", false, &err));
    uint8_t *pd = g_malloc0(DISK);
    for (size_t i = 0; i < 6 * MiB; i++) pd[i] = (uint8_t)(i * 7 / 3 + 1);
    QsBlock *bs = open_ok(fn, QS_BLOCK_RDWR);
    g_assert_cmpint(qs_block_pwrite(bs, 0, 6 * MiB, pd, 0), ==, 0);
    qs_block_close(bs);
    return pd;
}

static void make_child(const char *fn, const char *backing)
{
    GError *err = NULL;
    g_autofree char *o = g_strdup_printf("backing_file=%s,backing_fmt=vhdx,block_size=1M",
                                         backing);
    g_assert_true(qs_block_create("vhdx", fn, UINT64_MAX, o, false, &err));
    g_assert_no_error(err);
}

static void expect_content(QsBlock *bs, const uint8_t *want, const char *when)
{
    g_autofree uint8_t *got = g_malloc(DISK);
    g_assert_cmpint(qs_block_pread(bs, 0, DISK, got), ==, 0);
    for (size_t i = 0; i < DISK; i++)
        if (got[i] != want[i]) {
            g_printerr("%s: byte %zu is %#x, expected %#x\n", when, i, got[i], want[i]);
            g_test_fail();
            return;
        }
}

/* ---- writes against a model ---- */

static void test_random_writes(void)
{
    g_autofree char *parent = path("p.vhdx"), *child = path("c.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    make_child(child, "p.vhdx");
    g_autofree uint8_t *written = g_malloc0(DISK / 512);   /* sectors the child holds */
    GRand *rnd = g_rand_new_with_seed(0x5eed);
    g_autofree uint8_t *buf = g_malloc(3 * MiB);
    QsBlock *bs = open_ok(child, QS_BLOCK_RDWR);
    g_assert_nonnull(bs->backing);
    for (int op = 0; op < 60; op++) {
        uint32_t kind = g_rand_int_range(rnd, 0, 10);
        uint64_t off, len;
        if (kind == 0) {                      /* a whole block */
            off = (uint64_t)g_rand_int_range(rnd, 0, 8) * MiB;
            len = MiB;
        } else if (kind < 6) {                /* sub-sector to a few sectors */
            off = g_rand_int_range(rnd, 0, DISK - 4096);
            len = g_rand_int_range(rnd, 1, 4096);
        } else {                              /* across blocks */
            off = g_rand_int_range(rnd, 0, DISK - 3 * MiB);
            len = g_rand_int_range(rnd, 1, 3 * MiB);
        }
        if (kind == 9) {
            g_assert_cmpint(qs_block_pwrite_zeroes(bs, off, len, 0), ==, 0);
            memset(model + off, 0, len);
        } else {
            for (uint64_t i = 0; i < len; i++) buf[i] = (uint8_t)(op * 31 + i % 251 + 2);
            g_assert_cmpint(qs_block_pwrite(bs, off, len, buf, 0), ==, 0);
            memcpy(model + off, buf, len);
        }
        for (uint64_t s = off / 512; s <= (off + len - 1) / 512; s++) written[s] = 1;
        if (op % 10 == 9) {                   /* reopen: what was journaled is read back */
            qs_block_close(bs);
            bs = open_ok(child, op % 20 == 19 ? 0 : QS_BLOCK_RDWR);
            if (!(bs->flags & QS_BLOCK_RDWR)) {
                qs_block_close(bs);
                bs = open_ok(child, QS_BLOCK_RDWR);
            }
        }
        g_autofree char *when = g_strdup_printf("after op %d (%u at %" G_GUINT64_FORMAT
                                                " len %" G_GUINT64_FORMAT ")", op, kind, off,
                                                len);
        expect_content(bs, model, when);
        if (g_test_failed()) break;
    }
    /* block status: sectors never written come from the parent, written ones do not */
    for (uint64_t off = 0; off < DISK;) {
        uint64_t n;
        int st = qs_block_status(bs, off, DISK - off, &n, NULL, NULL);
        g_assert_cmpint(st, >=, 0);
        g_assert_cmpuint(n, >, 0);
        for (uint64_t s = off / 512; s < (off + n) / 512; s++)
            if (!!(st & QS_BS_ALLOCATED) != written[s]) {
                g_printerr("sector %" G_GUINT64_FORMAT ": status %#x, written %d\n", s, st,
                           written[s]);
                g_test_fail();
                break;
            }
        off += n;
    }
    QsBlockCheckResult res;
    GError *err = NULL;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    /* the parent is unchanged and still linked */
    bs = open_ok(child, 0);
    expect_content(bs, model, "read-only reopen");
    qs_block_close(bs);
    g_rand_free(rnd);
    g_unlink(child);
    g_unlink(parent);
}

/* ---- concurrent writers: each owns 128 bytes of every sector of a 256 KiB range ---- */

typedef struct Writer {
    QsBlock *bs;
    unsigned k;
} Writer;

static gpointer writer(gpointer opaque)
{
    Writer *w = opaque;
    uint8_t v[128];
    memset(v, 0xa0 + w->k, sizeof(v));
    for (uint64_t s = 0; s < 512; s++)
        if (qs_block_pwrite(w->bs, 2 * MiB + 1000 * 512 + s * 512 + w->k * 128, 128, v, 0) < 0)
            return GINT_TO_POINTER(1);
    return NULL;
}

static void test_concurrent(void)
{
    g_autofree char *parent = path("tp.vhdx"), *child = path("tc.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    make_child(child, "tp.vhdx");
    QsBlock *bs = open_ok(child, QS_BLOCK_RDWR);
    Writer w[4];
    GThread *t[4];
    for (unsigned k = 0; k < 4; k++) {
        w[k] = (Writer){ bs, k };
        t[k] = g_thread_new("vhdx-diff-writer", writer, &w[k]);
    }
    for (unsigned k = 0; k < 4; k++) g_assert_null(g_thread_join(t[k]));
    qs_block_close(bs);
    for (uint64_t s = 0; s < 512; s++)
        for (unsigned k = 0; k < 4; k++)
            memset(model + 2 * MiB + 1000 * 512 + s * 512 + k * 128, 0xa0 + k, 128);
    bs = open_ok(child, 0);
    expect_content(bs, model, "concurrent writers");
    qs_block_close(bs);
    g_unlink(child);
    g_unlink(parent);
}

/* ---- a child of 70 chunks: more sector bitmaps than the driver keeps loaded ---- */

static void test_many_chunks(void)
{
    g_autofree char *parent = path("mp.vhdx"), *child = path("mc.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    GError *err = NULL;
    const uint64_t chunk = 4ull << 30, n = 70;   /* 2^23 sectors of 512 bytes */
    g_assert_true(qs_block_create("vhdx", child, n * chunk, "backing_file=mp.vhdx,"
                                  "backing_fmt=vhdx,block_size=1M", false, &err));
    g_assert_no_error(err);
    QsBlock *bs = open_ok(child, QS_BLOCK_RDWR);
    uint8_t v[700], got[4096];
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t c = 0; c < n; c++) {
            memset(v, (int)(c + 1 + pass * 100), sizeof(v));
            g_assert_cmpint(qs_block_pwrite(bs, c * chunk + 1000 + pass * 2048, sizeof(v), v, 0),
                            ==, 0);
        }
        if (pass == 0) {   /* reopen between the passes: all journaled, read back */
            qs_block_close(bs);
            bs = open_ok(child, QS_BLOCK_RDWR);
        }
    }
    qs_block_close(bs);
    bs = open_ok(child, 0);
    for (uint64_t c = 0; c < n; c++) {
        g_assert_cmpint(qs_block_pread(bs, c * chunk, sizeof(got), got), ==, 0);
        for (unsigned i = 0; i < sizeof(got); i++) {
            int want = i >= 1000 && i < 1700 ? (int)(c + 1)
                     : i >= 3048 && i < 3748 ? (int)(c + 101)
                     : c == 0 ? model[i] : 0;
            if (got[i] != want) {
                g_printerr("chunk %" G_GUINT64_FORMAT " byte %u: %#x, expected %#x\n", c, i,
                           got[i], want);
                g_test_fail();
                break;
            }
        }
    }
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    g_unlink(child);
    g_unlink(parent);
}

/* ---- linkage and rebase ---- */

static void test_linkage(void)
{
    g_autofree char *parent = path("lp.vhdx"), *child = path("lc.vhdx");
    g_autofree char *other = path("lo.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    make_child(child, "lp.vhdx");
    /* the parent changes: the child no longer matches it */
    QsBlock *bs = open_ok(parent, QS_BLOCK_RDWR);
    g_assert_cmpint(qs_block_pwrite(bs, 0, 512, model, 0), ==, 0);
    qs_block_close(bs);
    GError *err = NULL;
    g_assert_null(qs_block_open(child, "vhdx", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "parent_linkage"));
    g_assert_nonnull(strstr(err->message, "lp.vhdx"));
    g_clear_error(&err);
    /* relinked (rebase -u) it opens again */
    bs = open_ok(child, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING);
    g_assert_true(bs->drv->change_backing(bs, "lp.vhdx", "vhdx", &err));
    g_assert_no_error(err);
    g_assert_false(bs->drv->change_backing(bs, "lp.vhdx", "qcow2", &err));
    g_assert_nonnull(strstr(err->message, "qcow2"));
    g_clear_error(&err);
    g_assert_false(bs->drv->change_backing(bs, NULL, NULL, &err));
    g_assert_nonnull(strstr(err->message, "cannot be removed"));
    g_clear_error(&err);
    qs_block_close(bs);
    bs = open_ok(child, 0);
    expect_content(bs, model, "relinked");
    g_assert_cmpstr(bs->backing_file, ==, "lp.vhdx");
    qs_block_close(bs);
    /* a parent that is not VHDX, at creation */
    g_assert_true(qs_block_create("qcow2", other, DISK, "", false, &err));
    g_autofree char *c2 = path("lc2.vhdx");
    g_assert_false(qs_block_create("vhdx", c2, DISK, "backing_file=lo.vhdx", false, &err));
    g_assert_nonnull(strstr(err->message, "not a VHDX image"));
    g_clear_error(&err);
    g_assert_false(qs_block_create("vhdx", c2, DISK, "backing_file=lp.vhdx,backing_fmt=qcow2",
                                   false, &err));
    g_clear_error(&err);
    g_assert_false(qs_block_create("vhdx", c2, DISK,
                                   "backing_file=lp.vhdx,subformat=fixed", false, &err));
    g_assert_nonnull(strstr(err->message, "fixed"));
    g_clear_error(&err);
    g_unlink(other);
    g_unlink(child);
    g_unlink(parent);
}

static void test_loops(void)
{
    g_autofree char *p = path("xp.vhdx"), *c1 = path("x1.vhdx"), *c2 = path("x2.vhdx");
    g_autofree uint8_t *model = make_parent(p);
    make_child(c1, "xp.vhdx");
    make_child(c2, "x1.vhdx");
    GError *err = NULL;
    /* x1's parent becomes x2: x2 -> x1 -> x2 */
    QsBlock *bs = open_ok(c1, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING);
    g_assert_true(bs->drv->change_backing(bs, "x2.vhdx", "vhdx", &err));
    qs_block_close(bs);
    g_assert_null(qs_block_open(c2, "vhdx", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "loop"));
    g_clear_error(&err);
    /* its own parent */
    bs = open_ok(c1, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING);
    g_assert_true(bs->drv->change_backing(bs, "x1.vhdx", "vhdx", &err));
    qs_block_close(bs);
    g_assert_null(qs_block_open(c1, "vhdx", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "loop"));
    g_clear_error(&err);
    /* a chain deeper than the limit */
    char prev[32] = "xp.vhdx";
    for (int i = 0; i < 34; i++) {
        char name[32];
        g_snprintf(name, sizeof(name), "d%02d.vhdx", i);
        g_autofree char *fn = path(name);
        make_child(fn, prev);
        memcpy(prev, name, sizeof(name));
    }
    g_autofree char *last = path(prev);
    g_assert_null(qs_block_open(last, "vhdx", 0, NULL, &err));
    g_assert_nonnull(strstr(err->message, "deeper than"));
    g_clear_error(&err);
    g_autofree char *mid = path("d20.vhdx");
    bs = open_ok(mid, 0);
    expect_content(bs, model, "21-deep chain");
    qs_block_close(bs);
    for (int i = 0; i < 34; i++) {
        char name[32];
        g_snprintf(name, sizeof(name), "d%02d.vhdx", i);
        g_autofree char *fn = path(name);
        g_unlink(fn);
    }
    g_unlink(c2);
    g_unlink(c1);
    g_unlink(p);
}

/* ---- hostile parent locators, written by hand (the driver's writer is not used) ---- */

typedef struct Kv {
    const char *k, *v;
} Kv;

static size_t utf16(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) put_le(p + 2 * i, (uint8_t)s[i], 2);
    return 2 * n;
}

/* Replace the locator of the image file (our layout: metadata table at meta, locator at
 * meta + 68 KiB, sixth table entry) by the given entries. */
static void put_locator(const char *fn, const Kv *kv, unsigned n, unsigned reserved,
                        int bad_type)
{
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &img, &len, NULL));
    uint8_t *p = (uint8_t *)img;
    /* the metadata region: found from the region table's second entry */
    uint64_t meta = get_le(p + 0x30000 + 16 + 32 + 16, 8);
    uint8_t *ent = p + meta + 32 + 5 * 32;
    uint32_t at = get_le(ent + 16, 4);
    g_assert_cmpuint(at, ==, 65536 + 4096);
    uint8_t *loc = p + meta + at;
    memset(loc, 0, 64 * 1024);
    static const uint8_t vhdx_guid[16] = { 0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
                                           0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13 };
    memcpy(loc, vhdx_guid, 16);
    if (bad_type) loc[3] ^= 1;
    put_le(loc + 16, reserved, 2);
    put_le(loc + 18, n, 2);
    size_t o = 20 + 12 * n;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *e = loc + 20 + 12 * i;
        size_t kl = utf16(loc + o, kv[i].k);
        put_le(e, o, 4);
        put_le(e + 8, kl, 2);
        o += kl;
        size_t vl = utf16(loc + o, kv[i].v);
        put_le(e + 4, o, 4);
        put_le(e + 10, vl, 2);
        o += vl;
    }
    put_le(ent + 20, o, 4);
    g_assert_true(set_contents(fn, img, len, NULL));
    g_free(img);
}

static void test_hostile_locators(void)
{
    g_autofree char *parent = path("hp.vhdx"), *child = path("hc.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    make_child(child, "hp.vhdx");
    QsBlock *bs;
    /* the parent's linkage as our create wrote it: read back the child's locator */
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(child, &img, &len, NULL));
    uint64_t meta = get_le((uint8_t *)img + 0x30000 + 16 + 32 + 16, 8);
    const uint8_t *loc = (uint8_t *)img + meta + 65536 + 4096;
    uint32_t vo = get_le(loc + 20 + 4, 4), vl = get_le(loc + 20 + 10, 2);
    char good[39] = { 0 };
    g_assert_cmpuint(vl, ==, 76);
    for (unsigned i = 0; i < 38; i++) good[i] = (char)loc[vo + 2 * i];
    g_free(img);
    g_assert_cmpint(good[0], ==, '{');
    char bad[39];
    memcpy(bad, good, sizeof(bad));
    bad[1] = bad[1] == '0' ? '1' : '0';
    g_autofree char *longp = g_strnfill(5000, 'a');
    static char self[] = "hc.vhdx";
    const struct {
        const char *name;
        Kv kv[4];
        unsigned n, reserved;
        int bad_type;
        const char *want;
    } cases[] = {
        { "good", { { "parent_linkage", good }, { "relative_path", ".\\hp.vhdx" } }, 2, 0, 0,
          NULL },
        { "good-abs-only", { { "parent_linkage", good }, { "absolute_win32_path", parent } }, 2,
          0, 0, NULL },
        { "no-linkage", { { "relative_path", ".\\hp.vhdx" } }, 1, 0, 0, "no parent_linkage" },
        { "linkage-not-guid", { { "parent_linkage", "{hello}" }, { "relative_path", "hp.vhdx" } },
          2, 0, 0, "is not a GUID" },
        { "linkage2-not-guid", { { "parent_linkage", good }, { "parent_linkage2", "x" },
          { "relative_path", "hp.vhdx" } }, 3, 0, 0, "parent_linkage2 'x' is not a GUID" },
        { "wrong-linkage", { { "parent_linkage", bad }, { "relative_path", "hp.vhdx" } }, 2, 0, 0,
          "expects parent_linkage" },
        { "no-path", { { "parent_linkage", good } }, 1, 0, 0, "no usable parent path" },
        { "windows-abs-only", { { "parent_linkage", good },
          { "absolute_win32_path", "C:\\vm\\hp.vhdx" } }, 2, 0, 0, "no usable parent path" },
        { "dup-key", { { "parent_linkage", good }, { "relative_path", "hp.vhdx" },
          { "relative_path", "hp.vhdx" } }, 3, 0, 0, "appears twice" },
        { "long-path", { { "parent_linkage", good }, { "relative_path", longp } }, 2, 0, 0,
          "bytes long" },
        { "missing-parent", { { "parent_linkage", good }, { "relative_path", "nothere.vhdx" } },
          2, 0, 0, "nothere.vhdx" },
        { "self", { { "parent_linkage", good }, { "relative_path", self } }, 2, 0, 0, "loop" },
        { "reserved", { { "parent_linkage", good }, { "relative_path", "hp.vhdx" } }, 2, 7, 0,
          "reserved field is 7" },
        { "type", { { "parent_linkage", good }, { "relative_path", "hp.vhdx" } }, 2, 0, 1,
          "is not a VHDX parent" },
    };
    gchar *orig;
    g_assert_true(g_file_get_contents(child, &orig, &len, NULL));
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_assert_true(set_contents(child, orig, len, NULL));
        put_locator(child, cases[i].kv, cases[i].n, cases[i].reserved, cases[i].bad_type);
        GError *err = NULL;
        bs = qs_block_open(child, "vhdx", 0, NULL, &err);
        if (!cases[i].want) {
            if (!bs) {
                g_printerr("%s: %s\n", cases[i].name, err->message);
                g_test_fail();
                g_clear_error(&err);
                continue;
            }
            expect_content(bs, model, cases[i].name);
            qs_block_close(bs);
        } else if (bs || !strstr(err->message, cases[i].want)) {
            g_printerr("%s: expected an error with '%s', got %s\n", cases[i].name,
                       cases[i].want, bs ? "success" : err->message);
            g_test_fail();
            qs_block_close(bs);
        }
        g_clear_error(&err);
    }
    g_free(orig);
    g_unlink(child);
    g_unlink(parent);
}

/* ---- seeded random corruption of a written child: opened read-write when it still
 * opens, written and read at the places that use the bitmaps, checked; no crash, hang or
 * sanitizer report ---- */

static void test_random_flips(void)
{
    g_autofree char *parent = path("fp.vhdx"), *child = path("fc.vhdx");
    g_autofree uint8_t *model = make_parent(parent);
    make_child(child, "fp.vhdx");
    QsBlock *bs = open_ok(child, QS_BLOCK_RDWR);
    uint8_t v[5000];
    memset(v, 0x5a, sizeof(v));
    for (int k = 0; k < 8; k++)
        g_assert_cmpint(qs_block_pwrite(bs, (uint64_t)k * MiB + 700 * k, 3000, v, 0), ==, 0);
    qs_block_close(bs);
    gchar *orig;
    gsize len;
    g_assert_true(g_file_get_contents(child, &orig, &len, NULL));
    uint64_t meta = get_le((uint8_t *)orig + 0x30000 + 16 + 32 + 16, 8);
    uint64_t bat = get_le((uint8_t *)orig + 0x30000 + 16 + 16, 8);
    GRand *rnd = g_rand_new_with_seed(0xf11e5);
    g_autofree uint8_t *buf = g_malloc(2 * MiB);
    unsigned opened = 0;
    for (int it = 0; it < 150; it++) {
        gchar *img = g_memdup2(orig, len);
        for (int f = 0; f < 4; f++) {
            /* the BAT, the metadata table and items, the locator, the data and bitmaps */
            uint64_t area = g_rand_int_range(rnd, 0, 4), at;
            if (area == 0) at = bat + g_rand_int_range(rnd, 0, 8 * 4104);
            else if (area == 1) at = meta + g_rand_int_range(rnd, 0, 256);
            else if (area == 2) at = meta + 65536 + g_rand_int_range(rnd, 0, 4096 + 300);
            else at = g_rand_int_range(rnd, (gint32)(meta + MiB), (gint32)len);
            img[at] ^= (char)(1u << g_rand_int_range(rnd, 0, 8));
        }
        g_assert_true(set_contents(child, img, len, NULL));
        g_free(img);
        GError *err = NULL;
        bs = qs_block_open(child, "vhdx", QS_BLOCK_RDWR | QS_BLOCK_NO_FLUSH, NULL, &err);
        if (!bs) {
            g_assert_nonnull(err);
            g_assert_cmpuint(strlen(err->message), >, 0);
            g_clear_error(&err);
            continue;
        }
        opened++;
        uint64_t off = (uint64_t)g_rand_int_range(rnd, 0, DISK - 2 * MiB);
        (void)qs_block_pread(bs, off, 2 * MiB, buf);
        (void)qs_block_pwrite(bs, off + 333, sizeof(v), v, 0);
        (void)qs_block_pwrite_zeroes(bs, off + 9000, 3 * 512 + 7, 0);
        (void)qs_block_pread(bs, 0, 2 * MiB, buf);
        for (uint64_t o = 0, n; o < bs->size; o += n) {   /* the size may be damaged */
            int st = qs_block_status(bs, o, bs->size - o, &n, NULL, NULL);
            if (st < 0 || !n) break;
        }
        QsBlockCheckResult res;
        if (!qs_block_check(bs, &res, 0, &err)) g_clear_error(&err);
        qs_block_close(bs);
    }
    g_assert_cmpuint(opened, >, 10);   /* the write paths were reached */
    g_rand_free(rnd);
    g_free(orig);
    g_unlink(child);
    g_unlink(parent);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("qs-vhdx-diff-XXXXXX", NULL);
    g_test_add_func("/formats/vhdx-diff/random-writes", test_random_writes);
    g_test_add_func("/formats/vhdx-diff/concurrent", test_concurrent);
    g_test_add_func("/formats/vhdx-diff/many-chunks", test_many_chunks);
    g_test_add_func("/formats/vhdx-diff/linkage", test_linkage);
    g_test_add_func("/formats/vhdx-diff/loops", test_loops);
    g_test_add_func("/formats/vhdx-diff/hostile-locators", test_hostile_locators);
    g_test_add_func("/formats/vhdx-diff/random-flips", test_random_flips);
    int r = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return r;
}
