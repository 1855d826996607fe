/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The packed input form (packed.h): decoded by the vhdx target, encoded by the image
 * generator and for seeds. */
#include <stdbool.h>
#include <string.h>
#include <glib.h>
#include "harness.h"
#include "packed.h"

static size_t le16(const uint8_t *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8;
}

size_t bf_unpack(const uint8_t *in, size_t len, uint8_t *img, BfSpan *spans,
                 size_t *nspans)
{
    *nspans = 0;
    if (len < 2) return 0;
    size_t size = MIN(le16(in) * BF_PACK_SIZE_UNIT, (size_t)BF_MAX_INPUT);
    for (size_t p = 2; p + 4 <= len;) {
        size_t off = le16(in + p) * BF_PACK_OFF_UNIT, n = le16(in + p + 2);
        p += 4;
        n = MIN(n, len - p);
        if (off < size && n) {
            size_t m = MIN(n, size - off);
            memcpy(img + off, in + p, m);
            spans[(*nspans)++] = (BfSpan){ off, m };
        }
        p += n;
    }
    return size;
}

static bool zero_block(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

uint8_t *bf_pack(const uint8_t *img, size_t len, size_t *out_len)
{
    if (len > BF_MAX_INPUT || len % BF_PACK_SIZE_UNIT) return NULL;
    GByteArray *out = g_byte_array_new();
    uint8_t h[4] = { (uint8_t)(len / BF_PACK_SIZE_UNIT), (uint8_t)(len / BF_PACK_SIZE_UNIT >> 8) };
    g_byte_array_append(out, h, 2);
    size_t off = 0;
    while (off < len) {
        if (zero_block(img + off, BF_PACK_OFF_UNIT)) {
            off += BF_PACK_OFF_UNIT;
            continue;
        }
        /* a run of non-zero blocks, at most one extent's worth, without its trailing
         * zero bytes */
        size_t end = off + BF_PACK_OFF_UNIT;
        while (end < len && end - off < BF_PACK_MAX_EXTENT &&
               !zero_block(img + end, BF_PACK_OFF_UNIT))
            end += BF_PACK_OFF_UNIT;
        size_t n = end - off;
        while (n && !img[off + n - 1]) n--;
        size_t unit = off / BF_PACK_OFF_UNIT;
        uint8_t e[4] = { (uint8_t)unit, (uint8_t)(unit >> 8), (uint8_t)n, (uint8_t)(n >> 8) };
        g_byte_array_append(out, e, 4);
        g_byte_array_append(out, img + off, (guint)n);
        off = end;
    }
    *out_len = out->len;
    return g_byte_array_free(out, FALSE);
}
