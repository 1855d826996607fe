/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the foreign image format drivers (vdi, vpc, vmdk, vhdx, parallels) share:
 * little-endian field helpers, error helpers and small file utilities. */
#ifndef QS_BLOCK_FORMATS_H
#define QS_BLOCK_FORMATS_H

#include <errno.h>
#include <string.h>
#include "../block-int.h"

extern const QsBlockDriver qs_block_drv_vdi;
extern const QsBlockDriver qs_block_drv_vpc;
extern const QsBlockDriver qs_block_drv_vmdk;
extern const QsBlockDriver qs_block_drv_vhdx;
extern const QsBlockDriver qs_block_drv_parallels;

static inline uint64_t le64_at(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}
static inline uint32_t le32_at(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}
static inline uint16_t le16_at(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return GUINT16_FROM_LE(v);
}
static inline void put_le64(void *p, uint64_t v) { v = GUINT64_TO_LE(v); memcpy(p, &v, 8); }
static inline void put_le32(void *p, uint32_t v) { v = GUINT32_TO_LE(v); memcpy(p, &v, 4); }
static inline void put_le16(void *p, uint16_t v) { v = GUINT16_TO_LE(v); memcpy(p, &v, 2); }

static inline bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* Set errp (domain QS_BLOCK_ERROR, code EINVAL) and return false. */
bool fmt_err(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Same with an errno: "<message>: <strerror>". */
bool fmt_errno(GError **errp, int neg_errno, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* 16 random bytes of a version-4 UUID. */
void fmt_uuid_random(uint8_t out[16]);

/* Create filename empty (via the file driver) and open it read-write. */
QsBlock *fmt_create_file(const char *filename, GError **errp);

/* Write len zero bytes at off (in 1 MiB chunks). */
int fmt_write_zeros(QsBlock *file, uint64_t off, uint64_t len);

/* Images that map fixed-size guest blocks through one table (vdi, vpc, parallels):
 * lookup gives the host offset of guest block idx's start, or FMT_UNALLOCATED; it takes
 * the driver's lock itself, so I/O is done outside it. */
#define FMT_UNALLOCATED UINT64_MAX
typedef uint64_t (*FmtBlockLookup)(QsBlock *bs, uint32_t idx);
/* Read through the table: allocated ranges from bs->file, unallocated ones as zeros. */
int fmt_table_pread(QsBlock *bs, uint64_t block_size, FmtBlockLookup lookup,
                    uint64_t off, size_t len, void *buf);
/* Zero through the table: allocated ranges are zeroed in the file; unallocated ones
 * already read as zeros. */
int fmt_table_zero(QsBlock *bs, uint64_t block_size, FmtBlockLookup lookup,
                   uint64_t off, uint64_t len);

/* Copy len bytes of file from `from` to `to` (ranges must not overlap), 1 MiB at a
 * time, the source's holes as zeroes: moving data blocks when a table grows or an image
 * is compacted. */
int fmt_file_copy(QsBlock *file, uint64_t from, uint64_t to, uint64_t len);

/* Finish a block status answer of DATA|OFFSET_VALID at host offset map in file, as
 * QEMU's block layer does: holes of the file read as zeros (ZERO is added) and the run is
 * cut where the file's status changes. */
int fmt_status_in_file(QsBlock *file, uint64_t map, uint64_t *pnum, int ret);

/* Reject create options a format does not support ("backing_file" etc.) with QEMU's
 * wording; check that the size is a multiple of 512 bytes. */
bool fmt_check_size(const char *fmt, uint64_t size, uint64_t max, GError **errp);

/* What every driver's resize refuses alike: a preallocation mode (-ENOTSUP) and a size
 * that is not a multiple of 512 bytes (-EINVAL).  0 when the request may go on. */
int fmt_check_resize(const char *fmt, uint64_t size, QsPrealloc prealloc, GError **errp);

#endif
