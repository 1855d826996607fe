/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Compression of qcow2 clusters: raw deflate (zlib, window 4 KiB as QEMU writes it)
 * and zstd frames (compression_type=zstd). */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include "qcow2.h"

/* Compression and decompression contexts, one per thread and reused: setting up a
 * deflate stream (memLevel 9: about 300 KiB of tables) or a zstd context costs as much
 * as compressing a small cluster.  A reset stream writes exactly what a new one would. */
typedef struct Ctx {
    z_stream def, inf;
    bool def_ok, inf_ok;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
} Ctx;

static void ctx_free(gpointer p)
{
    Ctx *c = p;
    if (c->def_ok) deflateEnd(&c->def);
    if (c->inf_ok) inflateEnd(&c->inf);
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
    g_free(c);
}

static GPrivate ctx_key = G_PRIVATE_INIT(ctx_free);

static Ctx *ctx(void)
{
    Ctx *c = g_private_get(&ctx_key);
    if (!c) {
        c = g_new0(Ctx, 1);
        g_private_set(&ctx_key, c);
    }
    return c;
}

int qcow2_compress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_max)
{
    Ctx *c = ctx();
    if (s->compression_type == COMP_ZSTD) {
        if (!c->zc && !(c->zc = ZSTD_createCCtx())) return -ENOMEM;
        size_t r = ZSTD_compressCCtx(c->zc, out, out_max, in, in_len, 3);
        if (ZSTD_isError(r)) return -ENOSPC;
        return (int)r;
    }
    /* raw deflate with a 4 KiB window, as QEMU writes (and reads) it */
    if (!c->def_ok) {
        if (deflateInit2(&c->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return -ENOMEM;
        c->def_ok = true;
    } else if (deflateReset(&c->def) != Z_OK) {
        return -ENOMEM;
    }
    z_stream *z = &c->def;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)in_len;
    z->next_out = out;
    z->avail_out = (uInt)out_max;
    int r = deflate(z, Z_FINISH);
    size_t n = out_max - z->avail_out;
    return r == Z_STREAM_END ? (int)n : -ENOSPC;
}

/* Fill out completely from in; trailing bytes of in (sector padding) are ignored. */
int qcow2_decompress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t out_len)
{
    Ctx *c = ctx();
    if (s->compression_type == COMP_ZSTD) {
        if (!c->zd && !(c->zd = ZSTD_createDCtx())) return -ENOMEM;
        ZSTD_DCtx *d = c->zd;
        ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
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
        return ret;
    }
    if (!c->inf_ok) {
        if (inflateInit2(&c->inf, -12) != Z_OK) return -ENOMEM;
        c->inf_ok = true;
    } else if (inflateReset(&c->inf) != Z_OK) {
        return -ENOMEM;
    }
    z_stream *z = &c->inf;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)in_len;
    z->next_out = out;
    z->avail_out = (uInt)out_len;
    int r = inflate(z, Z_FINISH);
    bool ok = (r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z->avail_out == 0;
    return ok ? 0 : -EIO;
}
