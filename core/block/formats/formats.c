/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared helpers of the foreign format drivers, and their registration: the drivers
 * register themselves as built-ins when the core is loaded (a constructor). */
#include <stdarg.h>
#include "formats.h"

bool fmt_err(GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, QS_BLOCK_ERROR, EINVAL, m);
    return false;
}

bool fmt_errno(GError **errp, int neg_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, QS_BLOCK_ERROR, -neg_errno, "%s: %s", m, g_strerror(-neg_errno));
    return false;
}

void fmt_uuid_random(uint8_t out[16])
{
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = g_random_int();
        memcpy(out + i, &r, 4);
    }
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
}

QsBlock *fmt_create_file(const char *filename, GError **errp)
{
    if (!qs_block_create("file", filename, 0, "", true, errp)) return NULL;
    return qs_block_open_file(filename, QS_BLOCK_RDWR, errp);
}

int fmt_write_zeros(QsBlock *file, uint64_t off, uint64_t len)
{
    if (!len) return 0;
    int r = qs_block_pwrite_zeroes(file, off, len, 0);
    if (r != -ENOTSUP) return r;
    size_t chunk = (size_t)MIN(len, (uint64_t)1 << 20);
    g_autofree uint8_t *z = g_malloc0(chunk);
    while (len) {
        size_t n = (size_t)MIN(len, (uint64_t)chunk);
        r = qs_block_pwrite(file, off, n, z, 0);
        if (r < 0) return r;
        off += n;
        len -= n;
    }
    return 0;
}

int fmt_file_copy(QsBlock *file, uint64_t from, uint64_t to, uint64_t len)
{
    size_t chunk = (size_t)MIN(len, (uint64_t)1 << 20), cap = 0;
    g_autofree uint8_t *buf = NULL;
    while (len) {
        /* the source's holes become zeroes at the target, neither read nor written as
         * data: a 1 MiB block a repair moves in a small sparse image is mostly hole */
        uint64_t n = 0, map;
        QsBlock *where;
        int st = qs_block_status(file, from, len, &n, &map, &where);
        if (st < 0 || n == 0 || n > len) { st = QS_BS_DATA; n = len; }
        int r = 0;
        if (!(st & QS_BS_DATA) && (st & QS_BS_ZERO)) {
            r = qs_block_pwrite_zeroes(file, to, n, 0);
        } else {
            n = MIN(n, (uint64_t)chunk);
            if (n > cap) {
                /* only as large as the data: a repair copies many mostly-hole blocks,
                 * and a 1 MiB buffer each time is an mmap (and page faults) for ASan */
                g_free(buf);
                buf = g_try_malloc((size_t)n);
                if (!buf) return -ENOMEM;
                cap = (size_t)n;
            }
            r = qs_block_pread(file, from, (size_t)n, buf);
            if (r == 0) r = qs_block_pwrite(file, to, (size_t)n, buf, 0);
        }
        if (r < 0) return r;
        from += n;
        to += n;
        len -= n;
    }
    return 0;
}

int fmt_table_pread(QsBlock *bs, uint64_t block_size, FmtBlockLookup lookup,
                    uint64_t off, size_t len, void *buf)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t in = off % block_size;
        size_t n = (size_t)MIN((uint64_t)len, block_size - in);
        uint64_t host = lookup(bs, (uint32_t)(off / block_size));
        /* blocks that follow each other in the file too are read at once */
        while (n < len) {
            uint64_t next = lookup(bs, (uint32_t)((off + n) / block_size));
            if (host == FMT_UNALLOCATED ? next != FMT_UNALLOCATED
                                        : next != host + in + n)
                break;
            n += (size_t)MIN((uint64_t)(len - n), block_size);
        }
        if (host != FMT_UNALLOCATED) {
            int r = qs_block_pread(bs->file, host + in, n, p);
            if (r < 0) return r;
        } else {
            memset(p, 0, n);
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int fmt_table_zero(QsBlock *bs, uint64_t block_size, FmtBlockLookup lookup,
                   uint64_t off, uint64_t len)
{
    while (len) {
        uint64_t in = off % block_size;
        uint64_t n = MIN(len, block_size - in);
        uint64_t host = lookup(bs, (uint32_t)(off / block_size));
        if (host != FMT_UNALLOCATED) {
            int r = fmt_write_zeros(bs->file, host + in, n);
            if (r < 0) return r;
        }
        off += n;
        len -= n;
    }
    return 0;
}

int fmt_status_in_file(QsBlock *file, uint64_t map, uint64_t *pnum, int ret)
{
    uint64_t n, m;
    QsBlock *f;
    int r = qs_block_status(file, map, *pnum, &n, &m, &f);
    if (r < 0 || r & QS_BS_EOF) return ret;
    if (n && n < *pnum) *pnum = n;
    return ret | (r & QS_BS_ZERO);
}

bool fmt_check_size(const char *fmt, uint64_t size, uint64_t max, GError **errp)
{
    if (size > max)
        return fmt_err(errp, "%s: image size %" G_GUINT64_FORMAT " is too large (at most %"
                       G_GUINT64_FORMAT ")", fmt, size, max);
    return true;
}

int fmt_check_resize(const char *fmt, uint64_t size, QsPrealloc prealloc, GError **errp)
{
    if (prealloc != QS_PREALLOC_OFF) {
        fmt_err(errp, "%s: preallocation=%s is not supported when resizing", fmt,
                qs_prealloc_name(prealloc));
        return -ENOTSUP;
    }
    if (size % 512) {
        fmt_err(errp, "%s: the new size %" G_GUINT64_FORMAT " is not a multiple of 512", fmt,
                size);
        return -EINVAL;
    }
    return 0;
}

__attribute__((constructor)) static void formats_register(void)
{
    static const QsBlockDriver *const all[] = {
        &qs_block_drv_vdi, &qs_block_drv_vpc, &qs_block_drv_vmdk, &qs_block_drv_parallels,
        &qs_block_drv_vhdx,
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(all); i++) {
        GError *err = NULL;
        if (!qs_block_driver_register(all[i], &err)) {
            g_warning("%s", err->message);
            g_error_free(err);
        }
    }
}
