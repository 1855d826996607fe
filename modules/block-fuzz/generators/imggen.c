/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen: structure-aware image generator and standalone fuzzer.  Builds a valid image
 * of random geometry (gen-*.c), mutates header and table fields, writes or runs it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"
#include "../harnesses/harness.h"
#include "../harnesses/packed.h"
#include "imggen.h"

static const ImgFormat *const formats[] = {
    &imggen_qcow2, &imggen_vmdk, &imggen_vdi, &imggen_vpc, &imggen_vhdx, &imggen_parallels,
};

static const ImgFormat *find_format(const char *name)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(formats); i++)
        if (!strcmp(formats[i]->name, name)) return formats[i];
    return NULL;
}

/* The image the vhdx target builds from a packed input (as bf_run_packed does). */
static uint8_t *unpack(const uint8_t *in, size_t len, size_t *out_len)
{
    uint8_t *img = g_malloc0(BF_MAX_INPUT);
    g_autofree BfSpan *spans = g_new(BfSpan, len / 4 + 1);
    size_t n = 0;
    *out_len = bf_unpack(in, len, img, spans, &n);
    return img;
}

/* --check-valid: the image the target sees opens as `expect` (probed when fmt is NULL)
 * and check finds nothing. */
static bool check_valid(const char *path, const char *fmt, const char *expect, bool rw,
                        const char *name)
{
    const char *what = fmt ? fmt : "probed";
    GError *err = NULL;
    int flags = QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK | (rw ? QS_BLOCK_RDWR : 0);
    QsBlock *bs = qs_block_open(path, fmt, flags, NULL, &err);
    if (!bs) {
        fprintf(stderr, "qs-imggen: %s: a valid %s image does not open: %s\n", name, what,
                err->message);
        g_error_free(err);
        return false;
    }
    bool ok = true;
    if (strcmp(bs->drv->name, expect)) {
        fprintf(stderr, "qs-imggen: %s: a %s image was probed as '%s'\n", name, expect,
                bs->drv->name);
        ok = false;
    }
    QsBlockCheckResult res;
    if (!bs->drv->check) {
        /* vpc has no check (as in QEMU): opening it is the test */
    } else if (!qs_block_check(bs, &res, 0, &err)) {
        fprintf(stderr, "qs-imggen: %s: check of a valid %s image failed: %s\n", name, what,
                err->message);
        g_error_free(err);
        ok = false;
    } else if (res.corruptions || res.leaks || res.check_errors) {
        fprintf(stderr, "qs-imggen: %s: check of a valid %s image found %d corruptions, %d "
                "leaks, %d check errors\n", name, what, res.corruptions, res.leaks,
                res.check_errors);
        ok = false;
    }
    qs_block_close(bs);
    return ok;
}

typedef struct Run {
    const char *fmt_name, *out, *work, *tmp, *chk;
    uint64_t seed;
    bool raw, valid, fuzz, verbose, check;
} Run;

enum { MADE, SKIPPED, FAILED };

/* Build, finish, mutate, write and check or run image i. */
static int one_image(const Run *run, uint64_t i, Image *im)
{
    const ImgFormat *f = run->raw ? formats[g_rand_int_range(im->rng, 0, G_N_ELEMENTS(formats))]
                                  : find_format(run->fmt_name);
    g_autofree char *name = g_strdup_printf("gen-%s-%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT,
                                            run->fmt_name, run->seed, i);
    g_autofree uint8_t *input = NULL;
    size_t input_len = 0;
    GError *err = NULL;
    if (run->raw) g_string_append_printf(im->log, " format %s;", f->name);
    if (!f->make(im->rng, run->work, run->tmp, im->log, &err) ||
        !g_file_get_contents(run->tmp, (char **)&im->buf, &im->len, &err) ||
        (f->finish && !f->finish(im, &err))) {
        fprintf(stderr, "qs-imggen: %s: %s (built:%s)\n", name, err->message, im->log->str);
        g_error_free(err);
        return FAILED;
    }
    if (!run->valid) {
        unsigned rounds = (unsigned)g_rand_int_range(im->rng, 1, 4);
        for (unsigned r = 0; r < rounds; r++) f->mutate(im);
    }
    /* what the target takes: the packed form for vhdx's own target */
    bool packed = f->packed && !run->raw;
    if (packed) {
        input = bf_pack(im->buf, im->len, &input_len);
        if (!input) {
            fprintf(stderr, "qs-imggen: %s: skipped: a %zu-byte %s image has no packed "
                    "form (at most %u bytes, a whole number of %u);%s\n", name, im->len,
                    f->name, BF_MAX_INPUT, BF_PACK_SIZE_UNIT, im->log->str);
            return SKIPPED;
        }
    } else {
        input = g_memdup2(im->buf, im->len);
        input_len = im->len;
    }
    if (run->fuzz && input_len > BF_MAX_INPUT) {
        fprintf(stderr, "qs-imggen: %s: skipped: %zu bytes, more than the harness takes (%u)\n",
                name, input_len, BF_MAX_INPUT);
        return SKIPPED;
    }
    g_autofree char *path = g_build_filename(run->out, run->fuzz ? "current" : name, NULL);
    if (!g_file_set_contents(path, (const char *)input, (gssize)input_len, &err)) {
        fprintf(stderr, "qs-imggen: %s: %s\n", name, err->message);
        g_error_free(err);
        return FAILED;
    }
    if (run->verbose) printf("%s: %zu bytes;%s\n", name, input_len, im->log->str);
    if (run->check) {
        /* exactly the image the target builds from the input */
        size_t n = input_len;
        g_autofree uint8_t *img = packed ? unpack(input, input_len, &n)
                                        : g_memdup2(input, input_len);
        if (!g_file_set_contents(run->chk, (const char *)img, (gssize)n, &err)) {
            fprintf(stderr, "qs-imggen: %s: %s\n", name, err->message);
            g_error_free(err);
            return FAILED;
        }
        /* a fixed vpc image has its footer only at the end: probed as raw, as by QEMU */
        const char *expect = run->raw && !strcmp(f->name, "vpc") &&
                             (n < 8 || memcmp(img, "conectix", 8)) ? "raw" : f->name;
        if (!check_valid(run->chk, run->raw ? NULL : f->name, expect, im->replay, name)) {
            fprintf(stderr, "qs-imggen: %s: built:%s\n", name, im->log->str);
            return FAILED;
        }
    }
    if (run->fuzz) {
        if (packed) bf_run_packed(input, input_len, f->name);
        else bf_run_image(input, input_len, run->raw ? NULL : f->name);
    }
    return MADE;
}

static int usage(void)
{
    fprintf(stderr,
        "usage: qs-imggen FORMAT [--seed N] [--count N] [--out DIR] [--valid] [--check-valid]\n"
        "                 [--fuzz] [--verbose]\n"
        "FORMAT: qcow2, vmdk, vdi, vpc, vhdx, parallels, or raw (each image one of the others,\n"
        "for the probing target).  Writes COUNT images gen-FORMAT-SEED-I to DIR (vhdx in the\n"
        "packed form of its fuzz target); --valid skips the mutations; --check-valid also\n"
        "opens and checks each valid image and fails on any finding; --fuzz runs each image\n"
        "through the fuzz harness in this process instead (a standalone fuzzer; the input\n"
        "being run is kept in DIR/current until it passes).\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *fmt_name = argv[1], *out = ".";
    uint64_t seed = 1, count = 1;
    bool valid = false, fuzz = false, verbose = false, check = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = g_ascii_strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = g_ascii_strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--valid")) valid = true;
        else if (!strcmp(argv[i], "--check-valid")) valid = check = true;
        else if (!strcmp(argv[i], "--fuzz")) fuzz = true;
        else if (!strcmp(argv[i], "--verbose")) verbose = true;
        else return usage();
    }
    bool raw = !strcmp(fmt_name, "raw");
    if (!raw && !find_format(fmt_name)) {
        fprintf(stderr, "qs-imggen: unknown format '%s' (qcow2, vmdk, vdi, vpc, vhdx, "
                "parallels, raw)\n", fmt_name);
        return 2;
    }
    qs_block_init();
    if (g_mkdir_with_parents(out, 0755) < 0) {
        fprintf(stderr, "qs-imggen: cannot create '%s': %s\n", out, g_strerror(errno));
        return 1;
    }
    /* the images are built in a private directory on tmpfs when there is one: the block
     * layer flushes while creating, and fsync on a disk would be most of the run */
    const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : out;
    g_autofree char *tmpl = g_build_filename(base, "qs-imggen-XXXXXX", NULL);
    g_autofree char *work = g_mkdtemp(g_strdup(tmpl));
    if (!work) {
        fprintf(stderr, "qs-imggen: cannot create a directory '%s': %s\n", tmpl,
                g_strerror(errno));
        return 1;
    }
    g_autofree char *tmp = g_build_filename(work, "valid", NULL);
    g_autofree char *chk = g_build_filename(work, "check", NULL);
    Run run = { fmt_name, out, work, tmp, chk, seed, raw, valid, fuzz, verbose, check };
    unsigned made = 0, skipped = 0, failed = 0;
    for (uint64_t i = 0; i < count; i++) {
        Image im = { .rng = g_rand_new_with_seed((guint32)(seed * 1000003u + i)),
                     .log = g_string_new("") };
        int r = one_image(&run, i, &im);
        made += r == MADE;
        skipped += r == SKIPPED;
        failed += r == FAILED;
        g_free(im.buf);
        g_rand_free(im.rng);
        g_string_free(im.log, TRUE);
    }
    g_unlink(tmp);
    g_unlink(chk);
    g_autofree char *parent = g_build_filename(work, ".imggen-parent.vhdx", NULL);
    g_unlink(parent);
    if (g_rmdir(work) < 0)
        fprintf(stderr, "qs-imggen: cannot remove '%s': %s\n", work, g_strerror(errno));
    if (fuzz) {
        g_autofree char *cur = g_build_filename(out, "current", NULL);
        g_unlink(cur);
    }
    printf("qs-imggen: %u %s images %s, %u skipped, %u failed\n", made, fmt_name,
           fuzz ? "run through the harness" : check ? "written and checked" : "written",
           skipped, failed);
    return failed || (count && !made) ? 1 : 0;
}
