/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the block layer's own files share: the built-in drivers and small helpers for
 * big-endian fields and alignment. */
#ifndef QS_BLOCK_INT_H
#define QS_BLOCK_INT_H

#include "qs/block.h"

extern const QsBlockDriver qs_block_drv_file;
extern const QsBlockDriver qs_block_drv_raw;
extern const QsBlockDriver qs_block_drv_qcow2;
extern const QsPropDesc qs_file_create_opts[];

static inline uint64_t be64_at(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_BE(v);
}
static inline uint32_t be32_at(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_BE(v);
}
static inline uint16_t be16_at(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return GUINT16_FROM_BE(v);
}
static inline void put_be64(void *p, uint64_t v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }
static inline void put_be32(void *p, uint32_t v) { v = GUINT32_TO_BE(v); memcpy(p, &v, 4); }
static inline void put_be16(void *p, uint16_t v) { v = GUINT16_TO_BE(v); memcpy(p, &v, 2); }

/* How many of the n bytes at p are zero before the first that is not (a memcmp per
 * 4 KiB: tables of hostile images are long and nearly empty). */
size_t qs_zero_prefix(const void *p, size_t n);

static inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
static inline uint64_t align_down(uint64_t v, uint64_t a) { return v & ~(a - 1); }
static inline uint64_t div_up(uint64_t v, uint64_t d) { return v / d + (v % d != 0); }

/* file driver helpers used by create functions: write the whole buffer at off. */
int qs_file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int qs_file_pread_all(int fd, void *buf, size_t len, uint64_t off);

#endif
