/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-img dd: GNU dd's operands and semantics (skip/count/seek, conv, status, iflag/
 * oflag, pipes) on images, reading through block status and keeping holes sparse. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "img.h"

typedef struct DdOpts {
    const char *in, *out, *fmt, *ofmt;
    uint64_t bs, count, skip, seek, osize;
    bool has_count, has_osize;
    bool notrunc, sparse, nocreat, excl;
    bool skip_bytes, count_bytes, seek_bytes, fullblock;
    int status;   /* 0 default, 1 noxfer, 2 none, 3 progress */
} DdOpts;

/* GNU's human_readable with autoscale, round-to-nearest, SI or IEC units. */
static char *human(double v, bool si)
{
    static const char *const si_u[] = { "", "k", "M", "G", "T", "P", "E" };
    static const char *const iec_u[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    double base = si ? 1000 : 1024;
    int e = 0;
    while (v >= base && e < 6) { v /= base; e++; }
    if (e == 0) return g_strdup_printf("%.0f B", v);
    double t = round(v * 10) / 10;
    if (t < 10) return g_strdup_printf("%.1f %sB", t, si ? si_u[e] : iec_u[e]);
    double r = round(v);
    if (r >= base && e < 6) return g_strdup_printf("1.0 %sB", si ? si_u[e + 1] : iec_u[e + 1]);
    return g_strdup_printf("%.0f %sB", r, si ? si_u[e] : iec_u[e]);
}

static void print_xfer(uint64_t bytes, double secs, bool progress)
{
    g_autofree char *si = human((double)bytes, true), *iec = human((double)bytes, false);
    g_autofree char *rate = secs > 0 ? human((double)bytes / secs, true) : g_strdup("Infinity B");
    g_autofree char *t = progress ? g_strdup_printf("%.0f s", secs) : g_strdup_printf("%g s", secs);
    if (bytes < 1000) {
        fprintf(stderr, "%" G_GUINT64_FORMAT " byte%s copied, %s, %s/s", bytes,
                bytes == 1 ? "" : "s", t, rate);
    } else if (bytes < 1024) {
        fprintf(stderr, "%" G_GUINT64_FORMAT " bytes (%s) copied, %s, %s/s", bytes, si, t, rate);
    } else {
        fprintf(stderr, "%" G_GUINT64_FORMAT " bytes (%s, %s) copied, %s, %s/s", bytes, si, iec,
                t, rate);
    }
}

static bool dd_number(const char *op, const char *v, uint64_t *out, bool allow_zero)
{
    if (!qs_parse_size(v, out) || (!allow_zero && !*out) || *out > (uint64_t)QS_BLOCK_MAX_SIZE) {
        img_error("invalid number: '%s'", v);
        return false;
    }
    return true;
}

static bool parse_flags(const char *op, const char *v, DdOpts *o)
{
    g_auto(GStrv) parts = g_strsplit(v, ",", -1);
    for (char **p = parts; *p; p++) {
        const char *f = *p;
        if (!strcmp(op, "conv")) {
            if (!strcmp(f, "notrunc")) o->notrunc = true;
            else if (!strcmp(f, "sparse")) o->sparse = true;
            else if (!strcmp(f, "nocreat")) o->nocreat = true;
            else if (!strcmp(f, "excl")) o->excl = true;
            else { img_error("invalid conversion: '%s'", f); return false; }
        } else if (!strcmp(op, "iflag")) {
            if (!strcmp(f, "skip_bytes")) o->skip_bytes = true;
            else if (!strcmp(f, "count_bytes")) o->count_bytes = true;
            else if (!strcmp(f, "fullblock")) o->fullblock = true;
            else { img_error("invalid input flag: '%s'", f); return false; }
        } else {
            if (!strcmp(f, "seek_bytes")) o->seek_bytes = true;
            else { img_error("invalid output flag: '%s'", f); return false; }
        }
    }
    if (o->nocreat && o->excl) {
        img_error("cannot combine excl and nocreat");
        return false;
    }
    return true;
}

static bool parse_operand(const char *arg, DdOpts *o)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        img_error("unrecognized operand %s", arg);
        return false;
    }
    g_autofree char *op = g_strndup(arg, eq - arg);
    const char *v = eq + 1;
    if (!strcmp(op, "if")) o->in = v;
    else if (!strcmp(op, "of")) o->out = v;
    else if (!strcmp(op, "bs")) return dd_number(op, v, &o->bs, false) && (o->bs <= (1u << 30) ||
                                       (img_error("invalid number: '%s'", v), false));
    else if (!strcmp(op, "count")) { o->has_count = true; return dd_number(op, v, &o->count, true); }
    else if (!strcmp(op, "skip")) return dd_number(op, v, &o->skip, true);
    else if (!strcmp(op, "seek")) return dd_number(op, v, &o->seek, true);
    else if (!strcmp(op, "osize")) { o->has_osize = true; return dd_number(op, v, &o->osize, true); }
    else if (!strcmp(op, "conv") || !strcmp(op, "iflag") || !strcmp(op, "oflag"))
        return parse_flags(op, v, o);
    else if (!strcmp(op, "status")) {
        if (!strcmp(v, "noxfer")) o->status = 1;
        else if (!strcmp(v, "none")) o->status = 2;
        else if (!strcmp(v, "progress")) o->status = 3;
        else { img_error("invalid status level: '%s'", v); return false; }
    } else {
        img_error("unrecognized operand %s", arg);
        return false;
    }
    if (!*v) {
        img_error("invalid argument for %s: ''", op);
        return false;
    }
    return true;
}

static ssize_t stream_read(int fd, uint8_t *buf, size_t n, bool full)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) break;
        got += (size_t)r;
        if (!full) break;
    }
    return (ssize_t)got;
}

static int stream_write(int fd, const uint8_t *buf, size_t n)
{
    while (n) {
        ssize_t r = write(fd, buf, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

int img_dd(int argc, char **argv)
{
    DdOpts o = { .bs = 512, .ofmt = "raw" };
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "image-opts", 0, 0, 'I' },
                                        { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:U", lo, NULL)) != -1) {
        switch (c) {
        case 'f': o.fmt = optarg; break;
        case 'O': o.ofmt = optarg; break;
        case 'U': break;
        case 'I': img_error("--image-opts is not supported"); return 1;
        case ':': img_error("option '%s' requires an argument", argv[optind - 1]); return 1;
        default: img_error("unrecognized option '%s'", argv[optind - 1]); return 1;
        }
    }
    for (int i = optind; i < argc; i++)
        if (!parse_operand(argv[i], &o)) return 1;
    if (!o.in) { img_error("Must specify input file"); return 1; }
    if (!o.out) { img_error("Must specify output file"); return 1; }

    uint64_t skip_b = o.skip_bytes ? o.skip : o.skip * o.bs;
    uint64_t seek_b = o.seek_bytes ? o.seek : o.seek * o.bs;
    uint64_t limit = !o.has_count ? UINT64_MAX : o.count_bytes ? o.count : o.count * o.bs;
    if (o.has_count && !o.count_bytes && o.count && limit / o.count != o.bs) {
        img_error("invalid number: count=%" G_GUINT64_FORMAT, o.count);
        return 1;
    }
    bool in_stream = !strcmp(o.in, "-"), out_stream = !strcmp(o.out, "-");
    QsBlock *in = NULL, *out = NULL;
    int ret = 1;
    g_autofree uint8_t *buf = g_malloc(o.bs);
    uint64_t full_in = 0, part_in = 0, full_out = 0, part_out = 0, bytes = 0;
    gint64 t0 = g_get_monotonic_time(), last_prog = t0;
    bool raw_out = !strcmp(o.ofmt, "raw");

    if (!in_stream && !(in = img_open(o.in, o.fmt, 0, false))) return 1;
    /* how much will be copied, when known (sizes a new non-raw output) */
    uint64_t avail = in ? (skip_b < in->size ? in->size - skip_b : 0) : UINT64_MAX;
    uint64_t to_copy = MIN(avail, limit);
    if (in && skip_b > in->size)
        img_error("'%s': cannot skip to specified offset", o.in);

    uint64_t fresh_from = UINT64_MAX;   /* output bytes from here on read as zeros */
    if (!out_stream) {
        struct stat st;
        bool exists = stat(o.out, &st) == 0;
        if (o.excl && exists) { img_error("failed to open '%s': File exists", o.out); goto done; }
        if (o.nocreat && !exists) {
            img_error("failed to open '%s': No such file or directory", o.out);
            goto done;
        }
        GError *err = NULL;
        if (raw_out) {
            if (!exists && !qs_block_create("raw", o.out, 0, "", true, &err)) {
                img_error("failed to open '%s': %s", o.out, err->message);
                g_error_free(err);
                goto done;
            }
            out = qs_block_open_file(o.out, QS_BLOCK_RDWR, &err);
            if (!out) {
                img_error("failed to open '%s': %s", o.out, err->message);
                g_error_free(err);
                goto done;
            }
            if (!o.notrunc && S_ISREG(st.st_mode | (exists ? 0 : S_IFREG))) {
                if (out->size > seek_b && !qs_block_truncate(out, seek_b, true, QS_PREALLOC_OFF, &err)) {
                    img_error("failed to truncate to %" G_GUINT64_FORMAT " bytes in output file "
                              "'%s': %s", seek_b, o.out, err->message);
                    g_error_free(err);
                    goto done;
                }
                fresh_from = seek_b;
            } else {
                fresh_from = out->size;
            }
        } else if (exists && o.notrunc) {
            out = img_open(o.out, o.ofmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, false);
            if (!out) goto done;
            uint64_t need = o.has_osize ? o.osize : (to_copy == UINT64_MAX ? 0 : seek_b + to_copy);
            if (need > out->size && !qs_block_truncate(out, need, false, QS_PREALLOC_OFF, &err)) {
                img_error("%s", err->message);
                g_error_free(err);
                goto done;
            }
        } else {
            if (!o.has_osize && to_copy == UINT64_MAX) {
                img_error("osize= is needed to write a stream into a '%s' image", o.ofmt);
                goto done;
            }
            uint64_t size = o.has_osize ? o.osize : seek_b + to_copy;
            if (!qs_block_create(o.ofmt, o.out, size, "", true, &err)) {
                img_error("%s: %s", o.out, err->message);
                g_error_free(err);
                goto done;
            }
            out = img_open(o.out, o.ofmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, false);
            if (!out) goto done;
            fresh_from = 0;
        }
    }

    /* skip on the input */
    uint64_t in_off = skip_b;
    if (in_stream) {
        for (uint64_t left = skip_b; left;) {
            ssize_t r = stream_read(0, buf, MIN(left, o.bs), true);
            if (r < 0) { img_error("error reading '-': %s", g_strerror((int)-r)); goto done; }
            if (r == 0) { img_error("'-': cannot skip to specified offset"); break; }
            left -= (uint64_t)r;
        }
    }
    uint64_t out_off = seek_b;
    if (out_stream && seek_b) {
        /* a pipe cannot seek: GNU dd writes zeros for the skipped output blocks */
        memset(buf, 0, o.bs);
        for (uint64_t left = seek_b; left;) {
            size_t n = MIN(left, o.bs);
            if (stream_write(1, buf, n) < 0) goto werr;
            left -= n;
        }
    }
    uint64_t left = limit;
    while (left) {
        size_t want = MIN(left, o.bs);
        size_t n;
        bool zero = false;
        if (in_stream) {
            ssize_t r = stream_read(0, buf, want, o.fullblock);
            if (r < 0) { img_error("error reading '-': %s", g_strerror((int)-r)); goto done; }
            n = (size_t)r;
        } else {
            if (in_off >= in->size) break;
            n = MIN((uint64_t)want, in->size - in_off);
            uint64_t pn;
            int st = qs_block_status_above(in, NULL, in_off, n, &pn, NULL, NULL, NULL);
            if (st >= 0 && (st & QS_BS_ZERO) && pn >= n) {
                zero = true;
                memset(buf, 0, n);
            } else {
                int r = qs_block_pread(in, in_off, n, buf);
                if (r < 0) {
                    img_error("error while reading from input image file: %s", g_strerror(-r));
                    goto done;
                }
            }
        }
        if (!n) break;
        if (n == o.bs) full_in++; else part_in++;
        if (!zero && (o.sparse || out_off >= fresh_from) && !out_stream) {
            zero = buf[0] == 0 && !memcmp(buf, buf + 1, n - 1);
        }
        int r = 0;
        if (out_stream) {
            r = stream_write(1, buf, n);
        } else if (zero && (o.sparse || out_off >= fresh_from)) {
            r = 0;   /* leave the hole */
        } else if (zero) {
            r = qs_block_pwrite_zeroes(out, out_off, n, QS_WRITE_MAY_UNMAP);
        } else {
            r = qs_block_pwrite(out, out_off, n, buf, 0);
        }
        if (r < 0) goto werr;
        if (n == o.bs) full_out++; else part_out++;
        bytes += n;
        in_off += n;
        out_off += n;
        left -= n;
        if (o.status == 3) {
            gint64 now = g_get_monotonic_time();
            if (now - last_prog >= G_USEC_PER_SEC) {
                last_prog = now;
                fputc('\r', stderr);
                print_xfer(bytes, (double)(now - t0) / 1e6, true);
            }
        }
        if (!in_stream && n < want) break;
    }
    if (out && raw_out) {
        /* holes left at the end still make the file as long as dd's */
        uint64_t end = o.has_osize ? o.osize : out_off;
        if ((end > out->size || (o.has_osize && end != out->size))) {
            GError *err = NULL;
            if (!qs_block_truncate(out, end, true, QS_PREALLOC_OFF, &err)) {
                img_error("%s", err->message);
                g_error_free(err);
                goto done;
            }
        }
    }
    ret = 0;
    goto done;
werr:
    img_error("error while writing to output image file: %s", g_strerror(errno ? errno : EIO));
done:
    if (o.status != 2 && (ret == 0 || bytes)) {
        if (o.status == 3 && last_prog != t0) fputc('\n', stderr);
        fprintf(stderr, "%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT " records in\n%" G_GUINT64_FORMAT
                "+%" G_GUINT64_FORMAT " records out\n", full_in, part_in, full_out, part_out);
        if (o.status != 1) {
            print_xfer(bytes, (double)(g_get_monotonic_time() - t0) / 1e6, false);
            fputc('\n', stderr);
        }
    }
    if (out) {
        if (qs_block_flush(out) < 0 && ret == 0) ret = 1;
        qs_block_close(out);
    }
    qs_block_close(in);
    return ret;
}
