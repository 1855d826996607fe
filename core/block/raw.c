/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The "raw" format: the image is the file's bytes, passed through to the protocol
 * layer, with its holes reported as zeros. */
#include <errno.h>
#include <string.h>
#include "block-int.h"

static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return 1;   /* anything can be raw; every real format scores higher */
}

static bool raw_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    bs->size = bs->file->size;
    return true;
}

static int raw_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    return qs_block_pread(bs->file, off, len, buf);
}

static int raw_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    return qs_block_pwrite(bs->file, off, len, buf, flags);
}

static int raw_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    return qs_block_pwrite_zeroes(bs->file, off, len, flags);
}

static int raw_pdiscard(QsBlock *bs, uint64_t off, uint64_t len)
{
    return qs_block_pdiscard(bs->file, off, len);
}

static int raw_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc p,
                        GError **errp)
{
    if (p == QS_PREALLOC_METADATA) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "Unsupported preallocation mode 'metadata'");
        return -EINVAL;
    }
    if (!qs_block_truncate(bs->file, size, shrink, p, errp)) return -EIO;
    bs->size = size;
    return 0;
}

static int raw_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, QsBlock **file)
{
    int r = qs_block_status(bs->file, off, len, pnum, map, file);
    if (r < 0) return r;
    return (r & (QS_BS_DATA | QS_BS_ZERO | QS_BS_OFFSET_VALID)) | QS_BS_ALLOCATED;
}

static bool raw_create(const char *filename, const QsOpts *opts, GError **errp)
{
    return qs_block_drv_file.create(filename, opts, errp);
}

static bool raw_measure(const QsOpts *opts, QsBlock *in, uint64_t size, uint64_t *required,
                        uint64_t *fully, GError **errp)
{
    uint64_t sz = in ? in->size : size;
    *required = *fully = align_up(sz, QS_BLOCK_SECTOR);
    return true;
}

const QsBlockDriver qs_block_drv_raw = {
    .name = "raw",
    .desc = "raw disk image",
    .probe = raw_probe,
    .create_opts = qs_file_create_opts,
    .create = raw_create,
    .open = raw_open,
    .pread = raw_pread,
    .pwrite = raw_pwrite,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .truncate = raw_truncate,
    .block_status = raw_block_status,
    .measure = raw_measure,
};
