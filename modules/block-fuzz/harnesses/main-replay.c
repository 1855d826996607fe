/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Replay driver: runs a fuzz target on every file given (directories are walked, sorted),
 * without a fuzzing engine; CI runs the regression corpus through it under ASan+UBSan. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>
#include "harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned repeat = 1;   /* BF_REPEAT=N: run each input N times (timing) */
static double busy;           /* seconds spent in the target */

/* Seeds of formats whose images cannot be small (vhdx aligns its regions to 1 MiB) are
 * stored gzip-compressed as NAME.gz: inflate them. */
static bool gunzip(gchar **data, gsize *len, GError **errp)
{
    GZlibDecompressor *z = g_zlib_decompressor_new(G_ZLIB_COMPRESSOR_FORMAT_GZIP);
    GByteArray *out = g_byte_array_new();
    const guint8 *in = (const guint8 *)*data;
    gsize left = *len;
    guint8 chunk[65536];
    GConverterResult r;
    do {
        gsize rd = 0, wr = 0;
        r = g_converter_convert(G_CONVERTER(z), in, left, chunk, sizeof(chunk),
                                G_CONVERTER_INPUT_AT_END, &rd, &wr, errp);
        if (r == G_CONVERTER_ERROR) break;
        in += rd;
        left -= rd;
        g_byte_array_append(out, chunk, (guint)wr);
    } while (r != G_CONVERTER_FINISHED && out->len <= (64u << 20));
    g_object_unref(z);
    if (r != G_CONVERTER_FINISHED) {
        g_byte_array_unref(out);
        if (errp && !*errp) g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "inflates to more than 64 MiB");
        return false;
    }
    g_free(*data);
    *len = out->len;
    *data = (gchar *)g_byte_array_free(out, FALSE);
    return true;
}

static int run_file(const char *path)
{
    gchar *data = NULL;
    gsize len = 0;
    GError *err = NULL;
    if (!g_file_get_contents(path, &data, &len, &err) ||
        (g_str_has_suffix(path, ".gz") && !gunzip(&data, &len, &err))) {
        fprintf(stderr, "replay: %s: %s\n", path, err->message);
        g_error_free(err);
        g_free(data);
        return 1;
    }
    /* a heap copy of exactly len bytes, as the engines pass it */
    uint8_t *copy = g_memdup2(data, len);
    g_free(data);
    gint64 t0 = g_get_monotonic_time();
    for (unsigned i = 0; i < repeat; i++) LLVMFuzzerTestOneInput(copy, len);
    double dt = (double)(g_get_monotonic_time() - t0) / 1e6;
    busy += dt;
    if (getenv("BF_TIMES"))
        fprintf(stderr, "replay: %s: %.1f us/exec\n", path, dt * 1e6 / repeat);
    g_free(copy);
    return 0;
}

static gint cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path, unsigned *count)
{
    if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
        (*count)++;
        return run_file(path);
    }
    GError *err = NULL;
    GDir *d = g_dir_open(path, 0, &err);
    if (!d) {
        fprintf(stderr, "replay: %s\n", err->message);
        g_error_free(err);
        return 1;
    }
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *n;
    while ((n = g_dir_read_name(d))) {
        if (n[0] != '.' && strcmp(n, "README.md"))
            g_ptr_array_add(names, g_build_filename(path, n, NULL));
    }
    g_dir_close(d);
    g_ptr_array_sort(names, cmp_str);
    int ret = 0;
    for (guint i = 0; i < names->len; i++) ret |= run_path(names->pdata[i], count);
    g_ptr_array_unref(names);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    const char *rep = getenv("BF_REPEAT");
    if (rep && atoi(rep) > 0) repeat = (unsigned)atoi(rep);
    LLVMFuzzerInitialize(&argc, &argv);
    /* a replay covers every phase of every input; BF_WRITE_EVERY=N measures as the
     * engines run */
    const char *we = getenv("BF_WRITE_EVERY");
    bf_set_write_every(we && atoi(we) > 0 ? (unsigned)atoi(we) : 1);
    unsigned count = 0;
    int ret = 0;
    for (int i = 1; i < argc; i++) ret |= run_path(argv[i], &count);
    printf("replayed %u inputs%s", count, ret ? " (some could not be read)" : "");
    if (busy > 0) printf(", %.0f execs/s", count * repeat / busy);
    printf("\n");
    return ret;
}
