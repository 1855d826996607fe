/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vhdx and parallels: hand-made hostile images (every header, table, BAT and log field,
 * with checksums recomputed so the field itself is judged), log crash/replay, the
 * parallels Format Extension and check -r; plus seeded random flips.  Runs under ASan. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *tmpdir;

#define FAIL(...) do { g_printerr(__VA_ARGS__); g_printerr("\n"); g_test_fail(); } while (0)
#define MiB (1u << 20)

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Write a whole file without g_file_set_contents' fsync (this test writes hundreds). */
static gboolean set_contents(const char *fn, const char *data, gssize len, GError **err)
{
    FILE *f = fopen(fn, "wb");
    if (!f) return FALSE;
    size_t n = len < 0 ? strlen(data) : (size_t)len;
    gboolean ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static uint64_t get_le(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* CRC-32C written independently of the driver (bitwise). */
static uint32_t crc32c(const uint8_t *p, size_t n, size_t skip)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= i >= skip && i < skip + 4 ? 0 : p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

/* The driver's CRC-32C (hardware instruction when there is one, and the table
 * version) against the bitwise one, for every length and alignment of a short buffer. */
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t vhdx_crc32c_sw(uint32_t crc, const void *buf, size_t len);

static void test_vhdx_crc32c(void)
{
    g_assert_cmphex(~vhdx_crc32c(0xffffffffu, "123456789", 9), ==, 0xe3069283u);
    uint8_t buf[200];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; n + off <= sizeof(buf); n++) {
            uint32_t want = crc32c(buf + off, n, SIZE_MAX - 4);
            g_assert_cmphex(~vhdx_crc32c(0xffffffffu, buf + off, n), ==, want);
            g_assert_cmphex(~vhdx_crc32c_sw(0xffffffffu, buf + off, n), ==, want);
        }
    }
}

static void vhdx_fix_checksums(uint8_t *img)
{
    put_le(img + 0x10000 + 4, crc32c(img + 0x10000, 4096, 4), 4);
    put_le(img + 0x20000 + 4, crc32c(img + 0x20000, 4096, 4), 4);
    put_le(img + 0x30000 + 4, crc32c(img + 0x30000, 65536, 4), 4);
    put_le(img + 0x40000 + 4, crc32c(img + 0x40000, 65536, 4), 4);
}

/* Everything a fuzzer would drive: status, reads, check, a write. */
static void exercise(const char *fn, const char *fmt)
{
    GError *err = NULL;
    for (int rw = 0; rw < 2; rw++) {
        QsBlock *bs = qs_block_open(fn, fmt, (rw ? QS_BLOCK_RDWR : 0) | QS_BLOCK_NO_BACKING |
                                    QS_BLOCK_NO_FLUSH,
                                    NULL, &err);
        if (!bs) {
            g_assert_nonnull(err);
            g_assert_cmpstr(err->message, !=, "");
            g_clear_error(&err);
            continue;
        }
        uint64_t size = bs->size;
        g_autofree uint8_t *buf = g_malloc(1 << 20);
        for (uint64_t off = 0; off < size;) {
            uint64_t n;
            int r = qs_block_status(bs, off, size - off, &n, NULL, NULL);
            if (r < 0 || n == 0) break;
            off += n;
        }
        for (uint64_t off = 0; off < MIN(size, (uint64_t)16 << 20); off += 1 << 20)
            qs_block_pread(bs, off, (size_t)MIN((uint64_t)1 << 20, size - off), buf);
        QsBlockCheckResult res;
        if (!qs_block_check(bs, &res, 0, &err)) g_clear_error(&err);
        memset(buf, 0xa5, 4096);
        if (rw && size >= 8192) qs_block_pwrite(bs, size / 2 & ~511ull, 4096, buf, 0);
        qs_block_close(bs);
    }
}

/* A 6 MiB image with data at 0 and 3 MiB. */
static void make_image(const char *fn, const char *fmt, const char *opts)
{
    GError *err = NULL;
    g_assert_true(qs_block_create(fmt, fn, 6 << 20, opts, true, &err));
    g_assert_no_error(err);
    QsBlock *bs = qs_block_open(fn, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_FLUSH, NULL, &err);
    g_assert_no_error(err);
    uint8_t d[4096];
    memset(d, 0x42, sizeof(d));
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(d), d, 0), ==, 0);
    g_assert_cmpint(qs_block_pwrite(bs, 3 << 20, sizeof(d), d, 0), ==, 0);
    qs_block_close(bs);
}

typedef struct Patch {
    uint64_t off, value;
    int width;
} Patch;

typedef struct Case {
    const char *name, *fmt, *opts;
    Patch patches[3];
    const char *expect;      /* read-only open error; NULL: opens */
    const char *expect_rw;   /* read-write open error; NULL: opens */
} Case;

#define OPEN_OK NULL

static const Case cases[] = {
    /* parallels (1 MiB clusters): header at 0, BAT at 64, data_off 1 MiB, BAT[0]=1 BAT[3]=2 */
    { "prl-tracks-0", "parallels", "", { { 28, 0, 4 } }, "tracks (cluster size in sectors) is 0", NULL },
    { "prl-tracks-huge", "parallels", "", { { 28, 0x7fffffff, 4 } }, "tracks 2147483647", NULL },
    { "prl-version-3", "parallels", "", { { 16, 3, 4 } }, "unsupported version 3", NULL },
    { "prl-magic", "parallels", "", { { 0, 0x4141414141414141ull, 8 } }, "not a Parallels image", NULL },
    { "prl-entries-max", "parallels", "", { { 32, 0xffffffff, 4 } }, "bat_entries 4294967295", NULL },
    { "prl-entries-past-file", "parallels", "", { { 32, 0x1fffffff, 4 } }, "BAT of 536870911 entries", NULL },
    { "prl-nb-sectors-capacity", "parallels", "", { { 36, 1ull << 40, 8 } }, "exceeds the BAT's capacity", NULL },
    { "prl-inuse-bogus", "parallels", "", { { 44, 0x12345678, 4 } }, "in_use value 0x12345678", NULL },
    { "prl-inuse-set", "parallels", "", { { 44, 0x746f6e59, 4 } }, OPEN_OK, "not closed correctly" },
    { "prl-data-off-0", "parallels", "", { { 48, 0, 4 } }, "data_off 0 is invalid", NULL },
    { "prl-data-off-odd", "parallels", "", { { 48, 3, 4 } }, "data_off 3 is not aligned", NULL },
    { "prl-data-off-far", "parallels", "", { { 48, 2048 * 1000, 4 } }, "beyond the end of the file", NULL },
    { "prl-old-data-off-in-bat", "parallels", "", { { 0, 0x4674756f68746957ull, 8 }, { 8, 0x6563617053656572ull, 8 } }, "BAT entry 0 (1, offset 512) points into the header or BAT", NULL },
    { "prl-bat-beyond-eof", "parallels", "", { { 64, 0x1000, 4 } }, OPEN_OK, "BAT entry 0 (4096" },
    { "prl-bat-duplicate", "parallels", "", { { 76, 1, 4 } }, OPEN_OK, "share the cluster" },
    { "prl-ext-far", "parallels", "", { { 56, 1ull << 50, 8 } }, "ext_off", NULL },
    { "prl-ext-overflow", "parallels", "", { { 56, UINT64_MAX, 8 } }, "ext_off 18446744073709551615 is too large", NULL },
    { "prl-ext-in-header", "parallels", "", { { 56, 1, 8 } }, "points into the header", NULL },
    { "prl-ext-bad-magic", "parallels", "", { { 56, 4096, 8 } }, "Format Extension magic", NULL },
    /* vhdx (8 MiB blocks): headers 64K/128K, regions 192K/256K, log 1M, BAT 2M, metadata 3M */
    { "vhdx-signature", "vhdx", "", { { 0, 0, 8 } }, "not a VHDX image", NULL },
    { "vhdx-headers-both-bad", "vhdx", "", { { 0x10000, 0, 4 }, { 0x20000, 0, 4 } }, "no valid header", NULL },
    { "vhdx-header2-bad", "vhdx", "", { { 0x20000 + 8, 0, 8 } }, OPEN_OK, OPEN_OK },
    { "vhdx-log-version", "vhdx", "", { { 0x10000 + 64, 1, 2 }, { 0x20000 + 64, 1, 2 } }, "log version 1", NULL },
    { "vhdx-log-length-0", "vhdx", "", { { 0x10000 + 68, 0, 4 }, { 0x20000 + 68, 0, 4 } }, "log length 0", NULL },
    { "vhdx-log-offset-odd", "vhdx", "", { { 0x10000 + 72, 0x1000, 8 }, { 0x20000 + 72, 0x1000, 8 } }, "log offset 0x1000", NULL },
    { "vhdx-log-outside", "vhdx", "", { { 0x10000 + 72, 1ull << 40, 8 }, { 0x20000 + 72, 1ull << 40, 8 } }, "extends beyond the end", NULL },
    { "vhdx-region-count", "vhdx", "", { { 0x30000 + 8, 5000, 4 }, { 0x40000 + 8, 5000, 4 } }, "entry count 5000", NULL },
    { "vhdx-region-bat-in-header", "vhdx", "", { { 0x30000 + 32, 0, 8 }, { 0x40000 + 32, 0, 8 } }, "after the header section", NULL },
    { "vhdx-region-bat-far", "vhdx", "", { { 0x30000 + 32, 1ull << 40, 8 }, { 0x40000 + 32, 1ull << 40, 8 } }, "beyond the end of the file", NULL },
    { "vhdx-region-overlap", "vhdx", "", { { 0x30000 + 32, 3 * MiB, 8 }, { 0x40000 + 32, 3 * MiB, 8 } }, "overlaps region 0", NULL },
    { "vhdx-region-over-log", "vhdx", "", { { 0x30000 + 32, 1 * MiB, 8 }, { 0x40000 + 32, 1 * MiB, 8 } }, "overlaps the log", NULL },
    { "vhdx-region-unknown-required", "vhdx", "", { { 0x30000 + 48, 0x1234, 2 }, { 0x40000 + 48, 0x1234, 2 } }, "unknown required region", NULL },
    { "vhdx-region1-bad-crc", "vhdx", "", { { 0x30000 + 100, 7, 1 } }, OPEN_OK, OPEN_OK },
    { "vhdx-meta-signature", "vhdx", "", { { 3 * MiB, 0, 8 } }, "metadata table signature", NULL },
    { "vhdx-meta-count", "vhdx", "", { { 3 * MiB + 10, 3000, 2 } }, "metadata entry count 3000", NULL },
    { "vhdx-meta-item-outside", "vhdx", "", { { 3 * MiB + 48, 0xfffff0, 4 } }, "lies outside the metadata region", NULL },
    { "vhdx-meta-item-length", "vhdx", "", { { 3 * MiB + 52, 9, 4 } }, "has length 9", NULL },
    { "vhdx-meta-missing", "vhdx", "", { { 3 * MiB + 10, 4, 2 } }, "physical sector size' is missing", NULL },
    { "vhdx-block-size-0", "vhdx", "", { { 3 * MiB + 65536, 0, 4 } }, "block size 0", NULL },
    { "vhdx-block-size-3m", "vhdx", "", { { 3 * MiB + 65536, 3 * MiB, 4 } }, "block size 3145728", NULL },
    { "vhdx-block-size-1g", "vhdx", "", { { 3 * MiB + 65536, 1u << 30, 4 } }, "block size 1073741824", NULL },
    { "vhdx-logical-1000", "vhdx", "", { { 3 * MiB + 65536 + 32, 1000, 4 } }, "logical sector size 1000", NULL },
    { "vhdx-disk-size-huge", "vhdx", "", { { 3 * MiB + 65536 + 8, 1ull << 60, 8 } }, "virtual disk size 1152921504606846976", NULL },
    { "vhdx-disk-size-odd", "vhdx", "", { { 3 * MiB + 65536 + 8, 1000, 8 } }, "virtual disk size 1000", NULL },
    { "vhdx-bat-too-small", "vhdx", "", { { 3 * MiB + 65536 + 8, 60ull << 40, 8 } }, "BAT region of 1048576 bytes is too small", NULL },
    { "vhdx-has-parent-no-locator", "vhdx", "", { { 3 * MiB + 65536 + 4, 2, 4 } }, "without a parent locator", NULL },
    { "vhdx-bat-state-4", "vhdx", "", { { 2 * MiB, 4, 1 } }, "invalid state 4", NULL },
    { "vhdx-bat-partial-no-parent", "vhdx", "", { { 2 * MiB, 7, 1 } }, "invalid state 7", NULL },
    { "vhdx-bat-in-header", "vhdx", "", { { 2 * MiB, 6, 8 } }, "points into the header section", NULL },
    { "vhdx-bat-beyond-eof", "vhdx", "", { { 2 * MiB, (1ull << 40) | 6, 8 } }, "points after end of file", NULL },
    { "vhdx-bat-over-metadata", "vhdx", "", { { 2 * MiB, (3ull * MiB) | 6, 8 } }, "overlaps the metadata region", NULL },
    { "vhdx-log-guid-empty-log", "vhdx", "", { { 0x10000 + 48, 0x55, 1 }, { 0x20000 + 48, 0x55, 1 } }, OPEN_OK, OPEN_OK },
};

static void run_case(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *fn = path(c->name);
    make_image(fn, c->fmt, c->opts);
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &img, &len, NULL));
    uint8_t *p = (uint8_t *)img;
    for (int i = 0; i < 3 && c->patches[i].width; i++) {
        g_assert_cmpuint(c->patches[i].off + c->patches[i].width, <=, len);
        put_le(p + c->patches[i].off, c->patches[i].value, c->patches[i].width);
    }
    bool keep_bad_crc = !strcmp(c->name, "vhdx-headers-both-bad") ||
                        !strcmp(c->name, "vhdx-header2-bad") ||
                        !strcmp(c->name, "vhdx-region1-bad-crc");
    if (!strcmp(c->fmt, "vhdx") && !keep_bad_crc && get_le(p, 8)) vhdx_fix_checksums(p);
    g_assert_true(set_contents(fn, img, len, NULL));
    g_free(img);
    for (int rw = 0; rw < 2; rw++) {
        const char *expect = rw ? (c->expect ? c->expect : c->expect_rw) : c->expect;
        GError *err = NULL;
        QsBlock *h = qs_block_open(fn, c->fmt, QS_BLOCK_NO_BACKING | (rw ? QS_BLOCK_RDWR : 0),
                                   NULL, &err);
        if (expect && h) {
            FAIL("%s (%s): opened although it should fail with '%s'", c->name, rw ? "rw" : "ro",
                 expect);
        } else if (expect && !strstr(err->message, expect)) {
            FAIL("%s (%s): error '%s' does not contain '%s'", c->name, rw ? "rw" : "ro",
                 err->message, expect);
        } else if (!expect && !h) {
            FAIL("%s (%s): does not open: %s", c->name, rw ? "rw" : "ro", err->message);
        }
        g_clear_error(&err);
        qs_block_close(h);
        if (!rw) {   /* the rw open may repair; judge the ro one on the untouched file */
            g_autofree char *copy = g_strconcat(fn, ".ro", NULL);
            g_unlink(copy);
        }
    }
    exercise(fn, c->fmt);
    g_unlink(fn);
}

/* ---- vhdx log: a session that dies before closing leaves a log to replay ---- */

static void write_and_die(const char *fn, uint64_t off, uint8_t byte)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        GError *err = NULL;
        /* a process crash, not a power loss: the page cache keeps what was written */
        QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR | QS_BLOCK_NO_FLUSH, NULL, &err);
        if (!bs) _exit(2);
        uint8_t d[4096];
        memset(d, byte, sizeof(d));
        /* the flush journals the new block's BAT entry; then no close */
        _exit(qs_block_pwrite(bs, off, sizeof(d), d, 0) || qs_block_flush(bs) ? 3 : 0);
    }
    int st;
    g_assert_cmpint(waitpid(pid, &st, 0), ==, pid);
    g_assert_true(WIFEXITED(st));
    g_assert_cmpint(WEXITSTATUS(st), ==, 0);
}

static int read_byte(QsBlock *bs, uint64_t off)
{
    uint8_t b;
    g_assert_cmpint(qs_block_pread(bs, off, 1, &b), ==, 0);
    return b;
}

/* Find our log entry: the first 4 KiB of the log with "loge". */
static uint64_t find_entry(const uint8_t *img, uint64_t from)
{
    for (uint64_t o = from; o < 2 * MiB; o += 4096)
        if (!memcmp(img + o, "loge", 4)) return o;
    g_assert_not_reached();
}

static void fix_entry_crc(uint8_t *img, uint64_t at)
{
    uint32_t len = (uint32_t)get_le(img + at + 8, 4);
    put_le(img + at + 4, crc32c(img + at, len, 4), 4);
}

static void test_vhdx_log(void)
{
    g_autofree char *fn = path("log.vhdx");
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", fn, 20 << 20, "", true, &err));
    write_and_die(fn, 9 << 20, 0x77);
    gchar *orig;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &orig, &len, NULL));

    /* read-only: refused with the way out in the message */
    QsBlock *bs = qs_block_open(fn, "vhdx", 0, NULL, &err);
    g_assert_null(bs);
    g_assert_nonnull(strstr(err->message, "opened read-only"));
    g_assert_nonnull(strstr(err->message, "qemu-img check -r all"));
    g_clear_error(&err);
    /* check -r all (read-write with CHECK) replays and counts it as fixed */
    bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR | QS_BLOCK_CHECK, NULL, &err);
    g_assert_no_error(err);
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
    g_assert_cmpint(res.corruptions_fixed, ==, 1);
    g_assert_cmpint(res.corruptions, ==, 0);
    g_assert_cmpint(read_byte(bs, 9 << 20), ==, 0x77);
    qs_block_close(bs);
    bs = qs_block_open(fn, "vhdx", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(read_byte(bs, 9 << 20), ==, 0x77);
    g_assert_cmpint(read_byte(bs, 0), ==, 0);
    qs_block_close(bs);

    /* hostile variants of the dirty log */
    uint64_t e = find_entry((uint8_t *)orig, MiB);
    struct { const char *name; uint64_t off; uint64_t v; int w; bool fix_crc; const char *expect; } v[] = {
        /* a torn entry (bad checksum) is not replayed: the image is what was flushed */
        { "bad-checksum", e + 4, 0x12345678, 4, false, NULL },
        { "bad-data-seq", e + 4096 + 4, 0x99, 4, true, NULL },
        { "bad-desc-seq", e + 64 + 24, 0x99, 8, true, NULL },
        { "bad-desc-sig", e + 64, 0x41414141, 4, true, NULL },
        { "bad-length", e + 8, 4096 * 3, 4, false, NULL },
        { "bad-count", e + 24, 0xffffffff, 4, true, NULL },
        { "tail-elsewhere", e + 12, 0x80000, 4, true, "no complete sequence" },
        { "target-header", e + 64 + 16, 0x10000, 8, true, "outside the writable file" },
        { "target-log", e + 64 + 16, MiB, 8, true, "outside the writable file" },
        { "target-far", e + 64 + 16, 1ull << 50, 8, true, "outside the writable file" },
        { "flushed-past-eof", e + 48, 1ull << 40, 8, true, "file was truncated" },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(v); i++) {
        g_autofree char *img = g_memdup2(orig, len);
        put_le((uint8_t *)img + v[i].off, v[i].v, v[i].w);
        if (v[i].name[0] == 'f' && !strcmp(v[i].name, "flushed-past-eof"))
            put_le((uint8_t *)img + e + 56, 1ull << 40, 8);    /* last >= flushed */
        if (v[i].fix_crc) fix_entry_crc((uint8_t *)img, e);
        g_assert_true(set_contents(fn, img, len, NULL));
        bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR, NULL, &err);
        if (v[i].expect) {
            if (bs || !strstr(err->message, v[i].expect))
                FAIL("log %s: expected '%s', got %s", v[i].name, v[i].expect,
                     bs ? "an open image" : err->message);
        } else if (!bs) {
            FAIL("log %s: does not open: %s", v[i].name, err->message);
        } else if (read_byte(bs, 9 << 20) != 0x77) {
            /* the data was flushed before the entry; only the BAT sector is journaled,
             * and it was written in place before the crash, so the data stays */
            FAIL("log %s: data lost", v[i].name);
        }
        g_clear_error(&err);
        qs_block_close(bs);
        exercise(fn, "vhdx");
    }
    g_free(orig);
    g_unlink(fn);
}

/* Sessions append entries; the log wraps around without losing an update. */
static void test_vhdx_log_wrap(void)
{
    g_autofree char *fn = path("wrap.vhdx");
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", fn, 600ull << 20, "block_size=1M", true, &err));
    QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR | QS_BLOCK_NO_FLUSH, NULL, &err);
    g_assert_no_error(err);
    uint8_t d[512];
    for (unsigned i = 0; i < 140; i++) {   /* 140 entries of 8 KiB: the 1 MiB log wraps */
        memset(d, (int)(i & 0xff) | 1, sizeof(d));
        g_assert_cmpint(qs_block_pwrite(bs, (uint64_t)i * 2 * MiB, sizeof(d), d, 0), ==, 0);
        g_assert_cmpint(qs_block_flush(bs), ==, 0);   /* one log entry per flush */
    }
    qs_block_close(bs);
    write_and_die(fn, 599ull << 20, 0x3c);
    bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    for (unsigned i = 0; i < 140; i++)
        g_assert_cmpint(read_byte(bs, (uint64_t)i * 2 * MiB), ==, (int)(i & 0xff) | 1);
    g_assert_cmpint(read_byte(bs, 599ull << 20), ==, 0x3c);
    qs_block_close(bs);
    g_unlink(fn);
}

/* BAT updates are journaled per flush, VHDX_BATCH (64) sectors per entry at most: a
 * session that dies with 70 new blocks in 70 BAT sectors and no flush keeps the 64 the
 * full batch journaled; the other 6 read as zeros, with nothing pointing at garbage. */
static void test_vhdx_batched_bat(void)
{
    g_autofree char *fn = path("batch.vhdx");
    GError *err = NULL;
    /* 1 MiB blocks: one BAT sector (512 entries) per 512 MiB of disk */
    g_assert_true(qs_block_create("vhdx", fn, 40ull << 30, "block_size=1M", true, &err));
    g_assert_no_error(err);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR | QS_BLOCK_NO_FLUSH, NULL, &err);
        if (!bs) _exit(2);
        uint8_t d[4096];
        for (unsigned i = 0; i < 70; i++) {
            memset(d, (int)i + 1, sizeof(d));
            if (qs_block_pwrite(bs, (uint64_t)i * (512ull << 20) + 4096, sizeof(d), d, 0))
                _exit(3);
        }
        _exit(0);   /* no flush, no close */
    }
    int st;
    g_assert_cmpint(waitpid(pid, &st, 0), ==, pid);
    g_assert_true(WIFEXITED(st));
    g_assert_cmpint(WEXITSTATUS(st), ==, 0);
    QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    for (unsigned i = 0; i < 70; i++) {
        int want = i < 64 ? (int)i + 1 : 0;
        if (read_byte(bs, (uint64_t)i * (512ull << 20) + 4096) != want)
            FAIL("batched BAT: block of sector %u reads %d, expected %d", i,
                 read_byte(bs, (uint64_t)i * (512ull << 20) + 4096), want);
    }
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    /* a clean session: flush journals everything; the extension step is given back */
    uint64_t before = bs->file->size;
    uint8_t d[512];
    memset(d, 0xab, sizeof(d));
    g_assert_cmpint(qs_block_pwrite(bs, 39ull << 30, sizeof(d), d, 0), ==, 0);
    g_assert_cmpint(qs_block_flush(bs), ==, 0);
    qs_block_close(bs);
    bs = qs_block_open(fn, "vhdx", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(read_byte(bs, 39ull << 30), ==, 0xab);
    g_assert_cmpuint(bs->file->size, ==, (before + MiB - 1) / MiB * MiB + MiB);
    qs_block_close(bs);
    g_unlink(fn);
}

/* A BAT region with holes between its written sectors (as other writers leave it; our
 * create and QEMU's write it whole, so the holes are punched here): open reads only the
 * data around them, the blocks they name read back. */
static void test_vhdx_bat_holes(void)
{
    g_autofree char *fn = path("holes.vhdx");
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", fn, 40ull << 30, "block_size=1M", true, &err));
    g_assert_no_error(err);
    /* blocks 0, 5000 and 40 000: BAT sectors 0, 9 and 78 (with their bitmap entries) */
    static const uint64_t blocks[] = { 0, 5000, 40000 };
    QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    for (unsigned i = 0; i < G_N_ELEMENTS(blocks); i++) {
        uint8_t d[4096];
        memset(d, 0x31 + (int)i, sizeof(d));
        g_assert_cmpint(qs_block_pwrite(bs, blocks[i] * MiB + 8192, sizeof(d), d, 0), ==, 0);
    }
    qs_block_close(bs);
    /* the BAT is at 2 MiB in our layout: holes over its sectors 1-8 and 10-77 */
    int fd = open(fn, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MiB + 4096, 8 * 4096) ||
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MiB + 10 * 4096,
                  68 * 4096)) {
        close(fd);
        g_test_skip("the file system cannot punch holes");
        return;
    }
    close(fd);
    bs = qs_block_open(fn, "vhdx", 0, NULL, &err);
    g_assert_no_error(err);
    for (unsigned i = 0; i < G_N_ELEMENTS(blocks); i++) {
        g_assert_cmpint(read_byte(bs, blocks[i] * MiB + 8192), ==, 0x31 + (int)i);
        g_assert_cmpint(read_byte(bs, blocks[i] * MiB + 8192 + 4095), ==, 0x31 + (int)i);
        g_assert_cmpint(read_byte(bs, blocks[i] * MiB + 4096), ==, 0);
        g_assert_cmpint(read_byte(bs, (blocks[i] + 1) * MiB + 8192), ==, 0);
    }
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    g_unlink(fn);
}

/* Writers in parallel into new blocks (several into the same block): the data of a new
 * block is written outside the driver lock, commits wait for it. */
typedef struct { QsBlock *bs; unsigned id; } Writer;

static gpointer writer(gpointer opaque)
{
    Writer *w = opaque;
    uint8_t d[65536];
    for (unsigned i = 0; i < 48; i++) {
        /* 4 writers x 48 pieces of 64 KiB: pieces i of every writer share block i / 4 */
        memset(d, (int)(w->id * 48 + i) % 255 + 1, sizeof(d));
        uint64_t off = ((uint64_t)i * 4 + w->id) * 65536 * 4;
        if (qs_block_pwrite(w->bs, off, sizeof(d), d, 0)) return GINT_TO_POINTER(1);
        if (i % 16 == 15 && qs_block_flush(w->bs)) return GINT_TO_POINTER(1);
    }
    return NULL;
}

static void test_vhdx_parallel_writers(void)
{
    g_autofree char *fn = path("par.vhdx");
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", fn, 64ull << 20, "block_size=1M", true, &err));
    QsBlock *bs = qs_block_open(fn, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    Writer w[4];
    GThread *t[4];
    for (unsigned k = 0; k < 4; k++) {
        w[k] = (Writer){ bs, k };
        t[k] = g_thread_new("vhdx-writer", writer, &w[k]);
    }
    for (unsigned k = 0; k < 4; k++) g_assert_null(g_thread_join(t[k]));
    qs_block_close(bs);
    bs = qs_block_open(fn, "vhdx", 0, NULL, &err);
    g_assert_no_error(err);
    for (unsigned k = 0; k < 4; k++)
        for (unsigned i = 0; i < 48; i++) {
            uint64_t off = ((uint64_t)i * 4 + k) * 65536 * 4;
            g_assert_cmpint(read_byte(bs, off + 65535), ==, (int)(k * 48 + i) % 255 + 1);
            g_assert_cmpint(read_byte(bs, off + 65536), ==, 0);
        }
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    g_unlink(fn);
}

/* ---- vhdx differencing: a hand-made child of a dynamic parent ---- */

static void utf16(uint8_t *p, const char *s)
{
    for (size_t i = 0; s[i]; i++) put_le(p + 2 * i, (uint8_t)s[i], 2);
}

static void test_vhdx_differencing(void)
{
    g_autofree char *parent = path("parent.vhdx"), *child = path("child.vhdx");
    GError *err = NULL;
    g_assert_true(qs_block_create("vhdx", parent, 4 << 20, "block_size=1M", true, &err));
    QsBlock *bs = qs_block_open(parent, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    g_autofree uint8_t *pd = g_malloc(4 << 20);
    for (size_t i = 0; i < (4u << 20); i++) pd[i] = (uint8_t)(i * 7 + 1);
    g_assert_cmpint(qs_block_pwrite(bs, 0, 4 << 20, pd, 0), ==, 0);
    qs_block_close(bs);
    /* the child: a 4 MiB dynamic image made differencing by hand */
    g_assert_true(qs_block_create("vhdx", child, 4 << 20, "block_size=1M,block_state_zero=off",
                                  true, &err));
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(child, &img, &len, NULL));
    uint8_t *p = (uint8_t *)img;
    uint64_t meta = 3 * MiB, items = meta + 65536;
    put_le(p + items + 4, 2, 4);                           /* has_parent */
    put_le(p + meta + 10, 6, 2);                           /* 6 metadata entries */
    uint8_t *ent = p + meta + 32 + 5 * 32;                 /* parent locator entry */
    static const uint8_t loc_guid[16] = { 0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                          0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c };
    static const uint8_t vhdx_guid[16] = { 0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
                                           0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13 };
    memcpy(ent, loc_guid, 16);
    put_le(ent + 16, 65536 + 4096, 4);
    put_le(ent + 20, 512, 4);
    put_le(ent + 24, 4 | 2, 4);
    uint8_t *loc = p + items + 4096;
    memcpy(loc, vhdx_guid, 16);
    put_le(loc + 18, 2, 2);
    put_le(loc + 20, 100, 4);                              /* key at 100 */
    put_le(loc + 24, 200, 4);                              /* value at 200 */
    put_le(loc + 28, 26, 2);
    put_le(loc + 30, 26, 2);
    utf16(loc + 100, "relative_path");
    utf16(loc + 200, ".\\parent.vhdx");
    /* parent_linkage: the parent's DataWriteGuid, from its current header */
    gchar *pimg;
    gsize plen;
    g_assert_true(g_file_get_contents(parent, &pimg, &plen, NULL));
    const uint8_t *h = (uint8_t *)pimg + (get_le((uint8_t *)pimg + 0x20008, 8) >
                                          get_le((uint8_t *)pimg + 0x10008, 8) ? 0x20000 : 0x10000);
    g_autofree char *link = g_strdup_printf(
        "{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}", (unsigned)get_le(h + 32, 4),
        (unsigned)get_le(h + 36, 2), (unsigned)get_le(h + 38, 2), h[40], h[41], h[42], h[43],
        h[44], h[45], h[46], h[47]);
    g_free(pimg);
    put_le(loc + 32, 300, 4);
    put_le(loc + 36, 400, 4);
    put_le(loc + 40, 28, 2);
    put_le(loc + 42, 76, 2);
    utf16(loc + 300, "parent_linkage");
    utf16(loc + 400, link);
    /* 1 MiB blocks: chunk ratio 4096; BAT = 4 payload entries ... then the bitmap entry */
    uint64_t bat = 2 * MiB, data = len;                    /* two new 1 MiB areas at the end */
    put_le(p + bat + 8 * 1, (data) | 6, 8);                /* block 1 fully present */
    put_le(p + bat + 8 * 2, (data + MiB) | 7, 8);          /* block 2 partially present */
    put_le(p + bat + 8 * 4096, (data + 2 * MiB) | 6, 8);   /* the chunk's sector bitmap */
    put_le(p + bat + 8 * 3, 2, 8);                         /* block 3 zero */
    vhdx_fix_checksums(p);
    gsize nlen = len + 3 * MiB;
    g_autofree uint8_t *n = g_malloc0(nlen);
    memcpy(n, p, len);
    g_free(img);
    memset(n + data, 0xc1, MiB);
    memset(n + data + MiB, 0xc2, MiB);
    /* sector bitmap: in block 2 (sectors 4096..6143), sectors 4096..4103 and 5000 present */
    n[data + 2 * MiB + 4096 / 8] = 0xff;
    n[data + 2 * MiB + 5000 / 8] |= 1 << (5000 % 8);
    g_assert_true(set_contents(child, (char *)n, nlen, NULL));

    bs = qs_block_open(child, NULL, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bs->backing_file, ==, "parent.vhdx");
    g_autofree uint8_t *got = g_malloc(4 << 20);
    g_assert_cmpint(qs_block_pread(bs, 0, 4 << 20, got), ==, 0);
    for (size_t i = 0; i < (4u << 20); i++) {
        uint64_t sec = i / 512;
        int want = i < MiB ? pd[i] : i < 2 * MiB ? 0xc1
                 : i < 3 * MiB ? ((sec < 4104 || sec == 5000) ? 0xc2 : pd[i]) : 0;
        if (got[i] != want) {
            FAIL("differencing: byte %zu is %#x, expected %#x", i, got[i], want);
            break;
        }
    }
    qs_block_close(bs);
    /* read-write now (writes: test-vhdx-diff) */
    bs = qs_block_open(child, "vhdx", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    qs_block_close(bs);
    g_unlink(child);
    g_unlink(parent);
}

/* ---- parallels ---- */

static void md5(const uint8_t *p, size_t n, uint8_t out[16])
{
    gsize l = 16;
    GChecksum *c = g_checksum_new(G_CHECKSUM_MD5);
    g_checksum_update(c, p, n);
    g_checksum_get_digest(c, out, &l);
    g_checksum_free(c);
}

/* A 6 MiB image with 4 KiB clusters and a Format Extension with one dirty bitmap. */
static gsize make_ext_image(const char *fn, uint8_t **out, uint32_t gran, uint64_t flags)
{
    make_image(fn, "parallels", "cluster_size=4k");
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &img, &len, NULL));
    gsize nlen = len + 3 * 4096;
    uint8_t *p = g_malloc0(nlen);
    memcpy(p, img, len);
    g_free(img);
    uint64_t ext = len, bm1 = len + 4096, bm2 = len + 8192;
    put_le(p + 56, ext / 512, 8);
    uint8_t *x = p + ext;
    put_le(x, 0xab234cef23dcea87ull, 8);
    uint8_t *f = x + 24;
    put_le(f, 0x20385fae252cb34aull, 8);
    put_le(f + 8, flags, 8);
    /* 12288 sectors, 8 per bit: 1536 bits = 192 bytes: one cluster */
    put_le(f + 16, 32 + 8, 4);
    put_le(f + 24, 12288, 8);
    memset(f + 32, 0x5a, 16);
    put_le(f + 48, gran, 4);
    put_le(f + 52, 1, 4);
    put_le(f + 56, bm1 / 512, 8);
    memset(p + bm1, 0xff, 10);      /* 80 dirty bits */
    p[bm1 + 10] = 0x01;             /* one more */
    memset(p + bm2, 0x77, 4096);    /* a stray cluster: a leak */
    md5(x + 24, 4096 - 24, x + 8);
    g_assert_true(set_contents(fn, (char *)p, nlen, NULL));
    *out = p;
    return nlen;
}

static void test_parallels_ext(void)
{
    g_autofree char *fn = path("ext.prl");
    uint8_t *p;
    gsize len = make_ext_image(fn, &p, 8, 1);
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "parallels", 0, NULL, &err);
    g_assert_no_error(err);
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    bs->drv->info_specific(bs, b);
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    g_autofree char *js = json_to_string(root, FALSE);
    json_node_unref(root);
    g_object_unref(b);
    g_assert_cmpstr(js, ==, "{\"bitmaps\":[{\"name\":\"5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a\","
                    "\"granularity\":4096,\"dirty-bytes\":331776}]}");
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.leaks, ==, 1);        /* the stray cluster after the bitmap */
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    /* writing keeps the extension and its clusters (no truncation over them) */
    bs = qs_block_open(fn, "parallels", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    uint8_t d[4096];
    memset(d, 0x11, sizeof(d));
    g_assert_cmpint(qs_block_pwrite(bs, 5 << 20, sizeof(d), d, 0), ==, 0);
    qs_block_close(bs);
    bs = qs_block_open(fn, "parallels", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(read_byte(bs, 5 << 20), ==, 0x11);
    qs_block_close(bs);

    struct { const char *name; uint64_t off, v; int w; bool remd5; const char *expect; } bad[] = {
        { "md5", 0, 0, 0, false, "checksum (MD5)" },
        { "granularity", 24 + 24 + 24, 3, 4, true, "granularity 3" },
        { "l1-size", 24 + 24 + 28, 9, 4, true, "l1_size 9" },
        { "size", 24 + 24, 99, 8, true, "dirty bitmap size 99" },
        { "l1-far", 24 + 24 + 32, 1ull << 40, 8, true, "L1 entry 0" },
        { "l1-on-ext", 24 + 24 + 32, 0, 8, true, "L1 entry 0" },
        { "data-size", 24 + 16, 0xffffff, 4, true, "runs past the cluster" },
        { "end-flags", 24 + 24 + 40 + 8, 1, 8, true, "end-of-features record has flags" },
        { "unknown-necessary", 24, 0x1234, 8, true, NULL },
    };
    uint64_t ext = len - 3 * 4096;
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree uint8_t *c = g_memdup2(p, len);
        uint8_t *x = c + ext;
        if (!bad[i].w) x[100] ^= 1;
        else if (!strcmp(bad[i].name, "l1-on-ext")) put_le(x + bad[i].off, ext / 512, 8);
        else put_le(x + bad[i].off, bad[i].v, bad[i].w);
        if (bad[i].remd5) md5(x + 24, 4096 - 24, x + 8);
        g_assert_true(set_contents(fn, (char *)c, len, NULL));
        bs = qs_block_open(fn, "parallels", 0, NULL, &err);
        if (bad[i].expect) {
            if (bs || !strstr(err->message, bad[i].expect))
                FAIL("ext %s: expected '%s', got %s", bad[i].name, bad[i].expect,
                     bs ? "an open image" : err->message);
        } else {   /* an unknown necessary feature: readable, never written */
            g_assert_no_error(err);
            qs_block_close(bs);
            bs = qs_block_open(fn, "parallels", QS_BLOCK_RDWR, NULL, &err);
            g_assert_null(bs);
            g_assert_nonnull(strstr(err->message, "necessary"));
        }
        g_clear_error(&err);
        qs_block_close(bs);
        exercise(fn, "parallels");
    }
    /* a broken bitmap that is not NECESSARY is dropped, as the spec says */
    g_free(p);
    len = make_ext_image(fn, &p, 3, 0);
    bs = qs_block_open(fn, "parallels", 0, NULL, &err);
    g_assert_no_error(err);
    qs_block_close(bs);
    g_free(p);
    g_unlink(fn);
}

static void test_parallels_repair(void)
{
    g_autofree char *fn = path("rep.prl");
    make_image(fn, "parallels", "");
    gchar *img;
    gsize len;
    g_assert_true(g_file_get_contents(fn, &img, &len, NULL));
    uint8_t *p = (uint8_t *)img;
    put_le(p + 44, 0x746f6e59, 4);          /* in use */
    put_le(p + 64 + 4, 1, 4);               /* cluster 1 shares cluster 0's data */
    put_le(p + 64 + 8, 0x10000, 4);         /* cluster 2 far beyond the end */
    gsize nlen = len + 3 * MiB + 100;       /* a leak */
    uint8_t *n = g_malloc0(nlen);
    memcpy(n, p, len);
    g_free(img);
    g_assert_true(set_contents(fn, (char *)n, nlen, NULL));
    g_free(n);
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "parallels", QS_BLOCK_RDWR | QS_BLOCK_CHECK, NULL, &err);
    g_assert_no_error(err);
    QsBlockCheckResult res;
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 3);
    g_assert_cmpint(res.leaks, ==, 4);
    g_assert_true(qs_block_check(bs, &res, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS, &err));
    g_assert_cmpint(res.corruptions_fixed, ==, 3);
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions + res.leaks, ==, 0);
    /* the copy is independent now */
    uint8_t d[512];
    memset(d, 0x99, sizeof(d));
    g_assert_cmpint(qs_block_pwrite(bs, MiB, sizeof(d), d, 0), ==, 0);
    g_assert_cmpint(read_byte(bs, 0), ==, 0x42);
    g_assert_cmpint(read_byte(bs, MiB), ==, 0x99);
    g_assert_cmpint(read_byte(bs, 2 * MiB), ==, 0);
    qs_block_close(bs);
    bs = qs_block_open(fn, "parallels", QS_BLOCK_RDWR, NULL, &err);   /* clean now */
    g_assert_no_error(err);
    qs_block_close(bs);
    g_unlink(fn);
}

/* "WithoutFreeSpace": BAT in sectors, data_off computed from the BAT, 32-bit size. */
static void test_parallels_old(void)
{
    g_autofree char *fn = path("old.prl");
    uint8_t img[64 + 16 + 432 + 4 * 63 * 512] = { 0 };
    memcpy(img, "WithoutFreeSpace", 16);
    put_le(img + 16, 2, 4);
    put_le(img + 28, 63, 4);                 /* 63-sector clusters */
    put_le(img + 32, 4, 4);
    put_le(img + 36, 0xffffffff00000000ull | 250, 8);   /* high bits ignored */
    put_le(img + 64 + 4, 1, 4);              /* cluster 1 at sector 1 (data_off) */
    memset(img + 512, 0xee, 63 * 512);
    g_assert_true(set_contents(fn, (char *)img, 512 + 63 * 512, NULL));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, NULL, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bs->drv->name, ==, "parallels");
    g_assert_cmpuint(bs->size, ==, 250 * 512);
    g_assert_cmpint(read_byte(bs, 0), ==, 0);
    g_assert_cmpint(read_byte(bs, 63 * 512), ==, 0xee);
    g_assert_cmpint(read_byte(bs, 2 * 63 * 512), ==, 0);
    qs_block_close(bs);
    g_unlink(fn);
}

static void test_random_flips(void)
{
    static const char *const cfg[][2] = {
        { "vhdx", "block_size=1M" }, { "vhdx", "subformat=fixed,block_size=1M" },
        { "parallels", "" }, { "parallels", "cluster_size=4k" },
    };
    GRand *rnd = g_rand_new_with_seed(20240601);
    for (unsigned k = 0; k < G_N_ELEMENTS(cfg); k++) {
        g_autofree char *fn = path("flip.img"), *orig = NULL;
        gsize len;
        make_image(fn, cfg[k][0], cfg[k][1]);
        g_assert_true(g_file_get_contents(fn, &orig, &len, NULL));
        /* the metadata: vhdx headers/regions/BAT/metadata tables; parallels header+BAT */
        static const uint64_t vhdx_areas[][2] = { { 0x10000, 80 }, { 0x30000, 80 },
                                                  { 2 * MiB, 64 }, { 3 * MiB, 200 },
                                                  { 3 * MiB + 65536, 40 } };
        for (int it = 0; it < 50; it++) {
            g_autofree char *img = g_memdup2(orig, len);
            int flips = g_rand_int_range(rnd, 1, 6);
            for (int f = 0; f < flips; f++) {
                uint64_t at;
                if (!strcmp(cfg[k][0], "vhdx")) {
                    const uint64_t *a = vhdx_areas[g_rand_int_range(rnd, 0, 5)];
                    at = a[0] + (uint64_t)g_rand_int_range(rnd, 0, (gint32)a[1]);
                } else {
                    at = (uint64_t)g_rand_int_range(rnd, 0, 4096);
                }
                img[at] = (char)g_rand_int_range(rnd, 0, 256);
            }
            if (!strcmp(cfg[k][0], "vhdx") && g_rand_boolean(rnd))
                vhdx_fix_checksums((uint8_t *)img);
            g_assert_true(set_contents(fn, img, len, NULL));
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
    /* tmpfs when there is one: hundreds of 8 MiB images are rewritten */
    if (g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) && access("/dev/shm", W_OK) == 0)
        tmpdir = g_mkdtemp(g_strdup("/dev/shm/qs-vhdx-prl-XXXXXX"));
    if (!tmpdir) tmpdir = g_dir_make_tmp("qs-vhdx-prl-XXXXXX", NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf("/formats/hostile/%s", cases[i].name);
        g_test_add_data_func(name, &cases[i], run_case);
    }
    g_test_add_func("/formats/vhdx/crc32c", test_vhdx_crc32c);
    g_test_add_func("/formats/vhdx/log", test_vhdx_log);
    g_test_add_func("/formats/vhdx/log-wrap", test_vhdx_log_wrap);
    g_test_add_func("/formats/vhdx/batched-bat", test_vhdx_batched_bat);
    g_test_add_func("/formats/vhdx/bat-holes", test_vhdx_bat_holes);
    g_test_add_func("/formats/vhdx/parallel-writers", test_vhdx_parallel_writers);
    g_test_add_func("/formats/vhdx/differencing", test_vhdx_differencing);
    g_test_add_func("/formats/parallels/extension", test_parallels_ext);
    g_test_add_func("/formats/parallels/repair", test_parallels_repair);
    g_test_add_func("/formats/parallels/old-magic", test_parallels_old);
    g_test_add_func("/formats/hostile/vhdx-parallels-random-flips", test_random_flips);
    int r = g_test_run();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) r = r ? r : 1;
    return r;
}
