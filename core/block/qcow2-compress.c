/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Compression of qcow2 clusters: raw deflate (zlib, window 4 KiB as QEMU writes it)
 * and zstd frames (compression_type=zstd). */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include "qcow2.h"

int qcow2_compress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_max)
{
    if (s->compression_type == COMP_ZSTD) {
        size_t r = ZSTD_compress(out, out_max, in, in_len, 3);
        if (ZSTD_isError(r)) return -ENOSPC;
        return (int)r;
    }
    z_stream z = { 0 };
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_max;
    int r = deflate(&z, Z_FINISH);
    size_t n = out_max - z.avail_out;
    deflateEnd(&z);
    return r == Z_STREAM_END ? (int)n : -ENOSPC;
}

/* Fill out completely from in; trailing bytes of in (sector padding) are ignored. */
int qcow2_decompress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t out_len)
{
    if (s->compression_type == COMP_ZSTD) {
        ZSTD_DCtx *d = ZSTD_createDCtx();
        if (!d) return -ENOMEM;
        ZSTD_inBuffer ib = { in, in_len, 0 };
        ZSTD_outBuffer ob = { out, out_len, 0 };
        int ret = 0;
        while (ob.pos < out_len) {
            size_t pin = ib.pos, pout = ob.pos;
            size_t r = ZSTD_decompressStream(d, &ob, &ib);
            if (ZSTD_isError(r)) { ret = -EIO; break; }
            if (r == 0) break;                               /* frame complete */
            if (ib.pos == pin && ob.pos == pout) { ret = -EIO; break; }   /* stuck */
        }
        if (ob.pos < out_len) ret = -EIO;
        ZSTD_freeDCtx(d);
        return ret;
    }
    z_stream z = { 0 };
    if (inflateInit2(&z, -12) != Z_OK) return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    int r = inflate(&z, Z_FINISH);
    bool ok = (r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z.avail_out == 0;
    inflateEnd(&z);
    return ok ? 0 : -EIO;
}
