/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The packed input of a fuzz target whose images are large and mostly zeroes (vhdx puts
 * every structure on a 64 KiB or 1 MiB boundary: its smallest valid image is 4 MiB, and
 * the engines' work per input grows with the input's size).  An input is
 *
 *   u16 LE   image size in 64 KiB units (at most BF_MAX_INPUT)
 *   extents  u16 LE offset in 4 KiB units, u16 LE length n, then n bytes
 *
 * and the image is that many zero bytes with each extent's bytes at its offset (later
 * extents over earlier ones; a cut-short last extent gives what the input holds, bytes
 * past the image's end are dropped).  A valid 4 MiB vhdx packs into a few KiB. */
#ifndef BF_PACKED_H
#define BF_PACKED_H

#include <stddef.h>
#include <stdint.h>

#define BF_PACK_SIZE_UNIT   (64u << 10)
#define BF_PACK_OFF_UNIT    4096u
#define BF_PACK_MAX_EXTENT  (15u * BF_PACK_OFF_UNIT)   /* what pack puts in one extent */

typedef struct BfSpan {
    size_t off, len;
} BfSpan;

/* The image of input in into img (which must hold BF_MAX_INPUT bytes and be all zeroes
 * where the image gets no extent); returns its size.  spans (room for len / 4 + 1) gets
 * where each extent landed, *nspans how many: the only places that may be non-zero. */
size_t bf_unpack(const uint8_t *in, size_t len, uint8_t *img, BfSpan *spans,
                 size_t *nspans);

/* The packed input of an image (its non-zero 4 KiB blocks, trailing zeroes of each
 * extent dropped), or NULL when no input can give it: larger than BF_MAX_INPUT or not a
 * whole number of 64 KiB. */
uint8_t *bf_pack(const uint8_t *img, size_t len, size_t *out_len);

#endif
