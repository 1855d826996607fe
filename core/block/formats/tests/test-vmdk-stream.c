/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vmdk grain I/O in batches: streamOptimized (parallel compression, in-order appends,
 * batched reads) and plain sparse extents (runs of new grains stored with one write,
 * reads and writes over contiguous grains), checked byte for byte. */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"

#define MiB (1u << 20)
#define GRAIN 65536u

static char *tmpdir;

static char *path(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

static uint64_t get_le(const uint8_t *p, int width)
{
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Half-compressible pseudo-random bytes: every other 4 KiB is text, the rest noise. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    for (size_t i = 0; i < n; i++)
        p[i] = (i / 4096) % 2 ? (uint8_t)("stream grain "[i % 13]) : (uint8_t)g_rand_int(r);
    g_rand_free(r);
}

typedef struct Par { QsBlock *bs; const uint8_t *data; uint64_t base; } Par;

static int par_write(uint64_t i, void *opaque)
{
    Par *p = opaque;
    uint64_t off = p->base + i * (MiB + 4096);   /* grain-aligned and not */
    return qs_block_pwrite(p->bs, off, MiB, p->data + off, 0);
}

static int par_read(uint64_t i, void *opaque)
{
    Par *p = opaque;
    uint64_t piece = 777777, off = i * piece, n = MIN(piece, p->bs->size - off);
    g_autofree uint8_t *got = g_malloc(n);
    int r = qs_block_pread(p->bs, off, n, got);
    if (r == 0 && memcmp(got, p->data + off, n)) r = -1;
    return r;
}

/* The grain LBAs in the order the grains are stored, walking the stream's markers. */
static GArray *stored_lbas(const char *fn)
{
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(fn, (char **)&img, &len, NULL));
    GArray *a = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    uint64_t pos = get_le(img + 64, 8) * 512;   /* overhead: where the grains start */
    while (pos + 512 <= len) {
        uint64_t lba = get_le(img + pos, 8);
        uint32_t size = (uint32_t)get_le(img + pos + 8, 4);
        if (size) {
            g_array_append_val(a, lba);
            pos += (12 + size + 511) / 512 * 512;
        } else if (get_le(img + pos + 12, 4) == 0) {
            break;   /* end of stream */
        } else {
            pos += 512 + lba * 512;   /* a metadata marker and its sectors */
        }
    }
    return a;
}

static uint8_t *model, *data;

static int write_piece(QsBlock *bs, uint64_t off, uint64_t len)
{
    memcpy(model + off, data + off, len);
    return qs_block_pwrite(bs, off, len, data + off, 0);
}

static void test_stream_io(void)
{
    g_autofree char *fn = path("s.vmdk");
    GError *err = NULL;
    uint64_t size = 40 * MiB;
    g_assert_true(qs_block_create("vmdk", fn, size, "subformat=streamOptimized", true, &err));
    model = g_malloc0(size);
    data = g_malloc(size);
    fill(data, size, 7);
    QsBlock *bs = qs_block_open(fn, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    /* one sequential write of more grains than one batch, ending inside a grain */
    uint64_t seq = 17 * MiB + 1000;
    g_assert_cmpint(write_piece(bs, 0, seq), ==, 0);
    /* a write starting and ending inside grains, over the grain written partly above */
    g_assert_cmpint(write_piece(bs, seq - 5000, 3 * GRAIN), ==, 0);
    /* concurrent writers (their compression runs on the pool inside each write) */
    Par p = { bs, data, 20 * MiB };
    for (uint64_t i = 0; i < 8; i++)
        memcpy(model + p.base + i * (MiB + 4096), data + p.base + i * (MiB + 4096), MiB);
    g_assert_cmpint(qs_block_parallel_for(4, 8, par_write, &p), ==, 0);
    /* the compressed-write entry point, and rewriting a grain already stored */
    memcpy(model + 38 * MiB, data + 38 * MiB, GRAIN);
    g_assert_cmpint(qs_block_pwrite_compressed(bs, 38 * MiB, GRAIN, data + 38 * MiB), ==, 0);
    fill(data + 2 * GRAIN, GRAIN, 99);
    g_assert_cmpint(write_piece(bs, 2 * GRAIN, GRAIN), ==, 0);
    /* read back before closing (from the grain tables in memory) */
    Par rp = { bs, model, 0 };
    g_assert_cmpint(qs_block_parallel_for(4, (size + 777776) / 777777, par_read, &rp), ==, 0);
    qs_block_close(bs);

    bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    rp.bs = bs;
    g_assert_cmpint(qs_block_parallel_for(4, (size + 777776) / 777777, par_read, &rp), ==, 0);
    g_autofree uint8_t *all = g_malloc(size);
    g_assert_cmpint(qs_block_pread(bs, 0, size, all), ==, 0);
    g_assert_true(memcmp(all, model, size) == 0);
    QsBlockCheckResult res = { 0 };
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);

    /* the sequential write's grains are stored first, in ascending order, as in a stream */
    g_autoptr(GArray) lbas = stored_lbas(fn);
    uint64_t seq_grains = (seq + GRAIN - 1) / GRAIN;
    g_assert_cmpuint(lbas->len, >=, seq_grains);
    for (uint64_t i = 0; i < seq_grains; i++)
        g_assert_cmpuint(g_array_index(lbas, uint64_t, i), ==, i * (GRAIN / 512));
    g_unlink(fn);
    g_clear_pointer(&model, g_free);
    g_clear_pointer(&data, g_free);
}

/* Plain sparse extents: runs of new grains across a grain table boundary, over a
 * backing file, mixed with partial grains, rewrites and zeroes. */
static void test_plain_runs(gconstpointer opts)
{
    g_autofree char *base = path("base.vmdk"), *fn = path("p.vmdk");
    GError *err = NULL;
    uint64_t size = 48 * MiB;
    g_autofree uint8_t *bdata = g_malloc(size);
    fill(bdata, size, 3);
    g_assert_true(qs_block_create("vmdk", base, size, "", true, &err));
    QsBlock *b = qs_block_open(base, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pwrite(b, 0, size, bdata, 0), ==, 0);
    qs_block_close(b);
    g_autofree char *o = g_strdup_printf("%s%sbacking_file=%s,backing_fmt=vmdk", (char *)opts,
                                         *(char *)opts ? "," : "", base);
    g_assert_true(qs_block_create("vmdk", fn, size, o, true, &err));
    g_assert_no_error(err);
    model = g_memdup2(bdata, size);
    data = g_malloc(size);
    fill(data, size, 11);
    QsBlock *bs = qs_block_open(fn, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    /* 31 MiB + 100 bytes up to 33 MiB + 7 grains: crosses the table of 32 MiB */
    g_assert_cmpint(write_piece(bs, 31 * MiB + 100, 2 * MiB + 7 * GRAIN), ==, 0);
    g_assert_cmpint(write_piece(bs, 0, 5 * GRAIN + 300), ==, 0);
    fill(data + GRAIN, 3 * GRAIN, 12);   /* rewrites stored grains in place */
    g_assert_cmpint(write_piece(bs, GRAIN + 17, 3 * GRAIN - 34), ==, 0);
    g_assert_cmpint(write_piece(bs, 36 * MiB, 8 * MiB), ==, 0);
    g_assert_cmpint(qs_block_pwrite_zeroes(bs, 37 * MiB, 2 * MiB, QS_WRITE_MAY_UNMAP), ==, 0);
    memset(model + 37 * MiB, 0, 2 * MiB);
    g_assert_cmpint(qs_block_pwrite_zeroes(bs, 45 * MiB, 2 * MiB, QS_WRITE_MAY_UNMAP), ==, 0);
    memset(model + 45 * MiB, 0, 2 * MiB);
    g_assert_cmpint(write_piece(bs, 46 * MiB, GRAIN), ==, 0);   /* into the zeroes */
    Par rp = { bs, model, 0 };
    g_assert_cmpint(qs_block_parallel_for(4, (size + 777776) / 777777, par_read, &rp), ==, 0);
    qs_block_close(bs);
    bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_autofree uint8_t *all = g_malloc(size);
    g_assert_cmpint(qs_block_pread(bs, 0, size, all), ==, 0);
    g_assert_true(memcmp(all, model, size) == 0);
    QsBlockCheckResult res = { 0 };
    g_assert_true(qs_block_check(bs, &res, 0, &err));
    g_assert_cmpint(res.corruptions, ==, 0);
    qs_block_close(bs);
    g_unlink(fn);
    g_unlink(base);
    g_clear_pointer(&model, g_free);
    g_clear_pointer(&data, g_free);
}

static void put_le(uint8_t *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A hosted sparse extent of 32 MiB with no grain allocated: grain directory at sector
 * 1, and its one grain table at sector 2 (table_sector 2) or none yet (0). */
static void make_sparse_image(const char *fn, uint32_t grain, bool compressed,
                              uint32_t table_sector)
{
    uint8_t img[4096] = { 0 };
    memcpy(img, "KDMV", 4);
    put_le(img + 4, 3, 4);                              /* version */
    put_le(img + 8, 1 | (compressed ? 3u << 16 : 0), 4);   /* newline test (compressed,
                                                             * markers) */
    put_le(img + 12, 32 * MiB / 512, 8);                /* capacity */
    put_le(img + 20, grain / 512, 8);                   /* grain */
    put_le(img + 44, 512, 4);                           /* entries per grain table */
    put_le(img + 56, 1, 8);                             /* grain directory */
    put_le(img + 64, 8, 8);                             /* overhead */
    memcpy(img + 73, "\n \r\n", 4);
    put_le(img + 77, 1, 2);                             /* deflate */
    put_le(img + 512, table_sector, 4);                 /* directory entry 0 */
    g_assert_true(g_file_set_contents(fn, (char *)img, sizeof(img), NULL));
}

/* Parts of compressed grains are merged into them only up to 2 MiB grains: beyond that
 * (QEMU refuses all such writes) a part is refused, a whole grain is written. */
static void test_big_compressed_grains(void)
{
    g_autofree char *fn = path("big.vmdk");
    make_sparse_image(fn, 4 * MiB, true, 2);
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    uint32_t grain = 4 * MiB;
    g_autofree uint8_t *buf = g_malloc(grain), *back = g_malloc(grain);
    fill(buf, grain, 3);
    g_assert_cmpint(qs_block_pwrite(bs, 4096, 4096, buf, 0), ==, -EINVAL);
    g_assert_cmpint(qs_block_pwrite(bs, grain, grain, buf, 0), ==, 0);
    g_assert_cmpint(qs_block_pwrite(bs, grain + 512, 512, buf, 0), ==, -EINVAL);
    /* zeros into a grain that reads as zeros store nothing, so they need no merge */
    g_assert_cmpint(qs_block_pwrite_zeroes(bs, 2 * grain + 4096, 4096, 0), ==, 0);
    qs_block_close(bs);
    bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pread(bs, grain, grain, back), ==, 0);
    g_assert_true(memcmp(buf, back, grain) == 0);
    g_assert_cmpint(qs_block_pread(bs, 0, 4096, back), ==, 0);
    g_assert_cmpint(back[0] | back[4095], ==, 0);
    qs_block_close(bs);
    g_unlink(fn);
}

/* A grain table allocated by a write (not preallocated in the overhead), named as a
 * grain by a corrupt entry of its own: a write there is refused (it would overwrite the
 * table), the image still opens and holds its data. */
static void test_grain_on_late_grain_table(void)
{
    g_autofree char *fn = path("late.vmdk");
    make_sparse_image(fn, GRAIN, false, 0);
    GError *err = NULL;
    uint8_t buf[4096], back[4096];
    fill(buf, sizeof(buf), 5);
    QsBlock *bs = qs_block_open(fn, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pwrite(bs, 0, sizeof(buf), buf, 0), ==, 0);
    /* a grain after the table, so that one there lies inside the file */
    g_assert_cmpint(qs_block_pwrite(bs, 2 * GRAIN, sizeof(buf), buf, 0), ==, 0);
    qs_block_close(bs);
    /* grain table entry 1 := the table's own sector */
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(fn, (char **)&img, &len, NULL));
    uint32_t gt = (uint32_t)get_le(img + 512, 4);
    g_assert_cmpuint(gt, >=, 8);                        /* past the overhead */
    put_le(img + (uint64_t)gt * 512 + 4, gt, 4);
    g_assert_true(g_file_set_contents(fn, (char *)img, (gssize)len, NULL));
    bs = qs_block_open(fn, "vmdk", QS_BLOCK_RDWR, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pwrite(bs, GRAIN, sizeof(buf), buf, 0), ==, -EIO);
    qs_block_close(bs);
    bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_block_pread(bs, 0, sizeof(back), back), ==, 0);
    g_assert_true(memcmp(buf, back, sizeof(buf)) == 0);
    qs_block_close(bs);
    g_unlink(fn);
}

/* A compressed grain whose zlib stream (one stored block) holds only its first n bytes:
 * the rest of the grain reads as zeros.  Such a record inflates to at most 1032 times its
 * size, so partial reads decode it into a buffer that small, not grain-sized. */
static void put_short_grain(const char *fn, uint32_t sector, const uint8_t *d, uint16_t n)
{
    uint32_t a = 1, b = 0;                              /* Adler-32 of the data */
    for (unsigned i = 0; i < n; i++) {
        a = (a + d[i]) % 65521;
        b = (b + a) % 65521;
    }
    uint8_t rec[12 + 2 + 5 + 65535 + 4] = { 0 };
    uint32_t size = 2 + 5 + n + 4;
    put_le(rec + 8, size, 4);
    rec[12] = 0x78, rec[13] = 0x01;                     /* zlib header */
    rec[14] = 0x01;                                     /* final stored block */
    put_le(rec + 15, n, 2);
    put_le(rec + 17, (uint16_t)~n, 2);
    memcpy(rec + 19, d, n);
    uint32_t adler = b << 16 | a;
    for (int i = 0; i < 4; i++) rec[19 + n + i] = (uint8_t)(adler >> (24 - 8 * i));
    g_autofree uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(fn, (char **)&img, &len, NULL));
    gsize need = (gsize)sector * 512 + 12 + size;
    img = g_realloc(img, MAX(len, need));
    if (need > len) memset(img + len, 0, need - len);
    put_le(img + 2 * 512, sector, 4);                   /* grain table 0, entry 0 */
    memcpy(img + (gsize)sector * 512, rec, 12 + size);
    g_assert_true(g_file_set_contents(fn, (char *)img, (gssize)MAX(len, need), NULL));
}

static void test_short_compressed_grain(void)
{
    g_autofree char *fn = path("short.vmdk");
    uint32_t grain = 4 * MiB;
    make_sparse_image(fn, grain, true, 2);
    uint8_t d[256];
    fill(d, sizeof(d), 9);
    put_short_grain(fn, 8, d, sizeof(d));
    GError *err = NULL;
    QsBlock *bs = qs_block_open(fn, "vmdk", 0, NULL, &err);
    g_assert_no_error(err);
    g_autofree uint8_t *back = g_malloc(grain), *want = g_malloc0(grain);
    memcpy(want, d, sizeof(d));
    /* partial reads: from the start, again from the cache, far past the stream's end,
     * across 276 KiB (about where the decode buffer ends), and the grain's last bytes */
    static const uint64_t at[][2] = {
        { 0, 4096 }, { 100, 4096 }, { MiB, 8192 }, { 270 * 1024, 16384 }, { 4 * MiB - 512, 512 },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(at); i++) {
        memset(back, 0xaa, at[i][1]);
        g_assert_cmpint(qs_block_pread(bs, at[i][0], at[i][1], back), ==, 0);
        g_assert_true(memcmp(back, want + at[i][0], at[i][1]) == 0);
    }
    memset(back, 0xaa, grain);
    g_assert_cmpint(qs_block_pread(bs, 0, grain, back), ==, 0);     /* the whole grain */
    g_assert_true(memcmp(back, want, grain) == 0);
    qs_block_close(bs);
    g_unlink(fn);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    tmpdir = g_dir_make_tmp("qs-vmdk-stream-XXXXXX", NULL);
    g_test_add_func("/formats/vmdk/stream-io", test_stream_io);
    g_test_add_data_func("/formats/vmdk/plain-runs", "", test_plain_runs);
    g_test_add_data_func("/formats/vmdk/plain-runs-zeroed", "zeroed_grain=on", test_plain_runs);
    g_test_add_func("/formats/vmdk/big-compressed-grains", test_big_compressed_grains);
    g_test_add_func("/formats/vmdk/grain-on-late-grain-table", test_grain_on_late_grain_table);
    g_test_add_func("/formats/vmdk/short-compressed-grain", test_short_compressed_grain);
    int r = g_test_run();
    g_rmdir(tmpdir);
    return r;
}
