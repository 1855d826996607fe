/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Regression tests for bugs qs-imggen (the structure-aware generator) found: each builds
 * the image with the public API and checks the fixed behaviour. */
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"

static char *dir;

static void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

/* A parallels image whose Format Extension cannot be loaded (bad magic) was truncated to
 * 0 bytes by a failed read-write open (`qemu-img check -r all`): close ran on the
 * half-opened image and cut the file at its data end, which was still 0. */
/* A 1 MiB parallels image of 64 KiB clusters as bytes: header and BAT in the first
 * cluster, then a second cluster filled with `fill` that ext_off names. */
static uint8_t *parallels_with_ext_cluster(const char *p, uint8_t fill)
{
    GError *err = NULL;
    g_assert_true(qs_block_create("parallels", p, 1 << 20, "cluster_size=65536", false, &err));
    g_assert_no_error(err);
    uint8_t *img = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(p, (char **)&img, &len, NULL));
    g_assert_cmpuint(len, ==, 65536);                     /* header and BAT: one cluster */
    img = g_realloc(img, 2 * 65536);
    memset(img + 65536, fill, 65536);
    put_le64(img + 56, 65536 / 512);                      /* ext_off */
    return img;
}

static void test_parallels_failed_rw_open_keeps_file(void)
{
    g_autofree char *p = g_build_filename(dir, "ext.parallels", NULL);
    GError *err = NULL;
    /* the extension's cluster with a wrong magic */
    g_autofree uint8_t *img = parallels_with_ext_cluster(p, 0xa5);
    put_le32(img + 44, 0);                                /* in_use: closed */
    g_assert_true(g_file_set_contents(p, (const char *)img, 2 * 65536, NULL));

    for (int fix = 0; fix < 2; fix++) {
        int flags = QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING | (fix ? QS_BLOCK_CHECK : 0);
        QsBlock *bs = qs_block_open(p, "parallels", flags, NULL, &err);
        g_assert_null(bs);
        g_assert_nonnull(err);
        g_assert_nonnull(strstr(err->message, "Format Extension magic"));
        g_clear_error(&err);
        g_autofree uint8_t *after = NULL;
        gsize alen;
        g_assert_true(g_file_get_contents(p, (char **)&after, &alen, NULL));
        g_assert_cmpuint(alen, ==, 2 * 65536);
        g_assert_cmpmem(after, alen, img, 2 * 65536);
    }
    g_unlink(p);
}

/* A Format Extension whose dirty bitmap feature (not marked necessary) is shorter than a
 * bitmap header: the reader drops such a feature, but removed the last entry of its list
 * of bitmaps although nothing had been added: a GLib critical on an empty list (index
 * -1), and with an earlier valid bitmap, that bitmap was dropped instead. */
static void test_parallels_short_bitmap_feature(void)
{
    g_autofree char *p = g_build_filename(dir, "short.parallels", NULL);
    GError *err = NULL;
    g_autofree uint8_t *img = parallels_with_ext_cluster(p, 0);
    uint8_t *c = img + 65536;
    put_le64(c, 0xab234cef23dcea87ull);                   /* extension magic */
    put_le64(c + 24, 0x20385fae252cb34aull);              /* dirty bitmap feature */
    put_le64(c + 32, 0);                                  /* flags: not necessary */
    put_le32(c + 40, 8);                                  /* data_size below its header */
    GChecksum *ck = g_checksum_new(G_CHECKSUM_MD5);
    g_checksum_update(ck, c + 24, 65536 - 24);
    gsize n = 16;
    g_checksum_get_digest(ck, c + 8, &n);
    g_checksum_free(ck);
    g_assert_true(g_file_set_contents(p, (const char *)img, 2 * 65536, NULL));

    QsBlock *bs = qs_block_open(p, "parallels", QS_BLOCK_NO_BACKING, NULL, &err);
    g_assert_no_error(err);
    g_assert_nonnull(bs);
    g_assert_cmpuint(bs->size, ==, 1 << 20);
    qs_block_close(bs);
    g_unlink(p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_block_init();
    dir = g_dir_make_tmp("qs-imggen-findings-XXXXXX", NULL);
    g_assert_nonnull(dir);
    g_test_add_func("/block-fuzz/imggen/parallels-failed-rw-open-keeps-file",
                    test_parallels_failed_rw_open_keeps_file);
    g_test_add_func("/block-fuzz/imggen/parallels-short-bitmap-feature",
                    test_parallels_short_bitmap_feature);
    int r = g_test_run();
    g_rmdir(dir);
    g_free(dir);
    return r;
}
