/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The "file" protocol driver: host regular files and block devices, sparse-aware
 * (SEEK_DATA/SEEK_HOLE, hole punching, fallocate) with preallocation modes. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include "block-int.h"

typedef struct FileState {
    bool is_blockdev;
    bool no_punch;          /* fallocate(PUNCH_HOLE) not supported here */
} FileState;

int qs_file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Reads past the end of the file give zeros. */
int qs_file_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) {
            memset(p, 0, len);
            return 0;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static void grow_size(QsBlock *bs, uint64_t end)
{
    uint64_t cur = __atomic_load_n(&bs->size, __ATOMIC_RELAXED);
    while (end > cur &&
           !__atomic_compare_exchange_n(&bs->size, &cur, end, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
    }
}

static bool file_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    FileState *s = bs->opaque;
    const char *name = bs->filename;
    if (g_str_has_prefix(name, "file:")) name += 5;
    int fl = (bs->flags & QS_BLOCK_RDWR) ? O_RDWR : O_RDONLY;
    if (bs->flags & QS_BLOCK_NOCACHE) fl |= O_DIRECT;
    int fd = open(name, fl | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        g_set_error(errp, QS_BLOCK_ERROR, e, "Could not open '%s': %s", name, g_strerror(e));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        g_set_error(errp, QS_BLOCK_ERROR, e, "Could not stat '%s': %s", name, g_strerror(e));
        return false;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t sz = 0;
        if (ioctl(fd, BLKGETSIZE64, &sz) < 0) {
            int e = errno;
            close(fd);
            g_set_error(errp, QS_BLOCK_ERROR, e, "Could not get the size of '%s': %s", name,
                        g_strerror(e));
            return false;
        }
        bs->size = sz;
        s->is_blockdev = true;
    } else if (S_ISREG(st.st_mode)) {
        bs->size = (uint64_t)st.st_size;
    } else {
        close(fd);
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "'%s' is not a file", name);
        return false;
    }
    bs->fd = fd;
    return true;
}

static void file_close(QsBlock *bs)
{
    if (bs->fd >= 0) close(bs->fd);
    bs->fd = -1;
}

static int file_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    return qs_file_pread_all(bs->fd, buf, len, off);
}

static int file_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    int r = qs_file_pwrite_all(bs->fd, buf, len, off);
    if (r == 0) grow_size(bs, off + len);
    return r;
}

static int file_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    FileState *s = bs->opaque;
    uint64_t end = off + len;
    if (!s->is_blockdev && off >= bs->size) {
        /* beyond the end: extending the file leaves a hole that reads as zeros */
        if (ftruncate(bs->fd, (off_t)end) < 0) return -errno;
        grow_size(bs, end);
        return 0;
    }
    if ((flags & QS_WRITE_MAY_UNMAP) && !s->no_punch) {
        if (fallocate(bs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)len) == 0) {
            if (end > bs->size && ftruncate(bs->fd, (off_t)end) == 0) grow_size(bs, end);
            return 0;
        }
        if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
        s->no_punch = true;
    }
    if (fallocate(bs->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)len) == 0) {
        grow_size(bs, end);
        return 0;
    }
    return -ENOTSUP;
}

static int file_pdiscard(QsBlock *bs, uint64_t off, uint64_t len)
{
    FileState *s = bs->opaque;
    if (s->no_punch || s->is_blockdev) return 0;
    if (fallocate(bs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS) s->no_punch = true;
        else return -errno;
    }
    return 0;
}

static int file_flush(QsBlock *bs)
{
    if (bs->flags & QS_BLOCK_NO_FLUSH) return 0;
    return fdatasync(bs->fd) < 0 ? -errno : 0;
}

/* Grow fd from `from` to `to` with the given preallocation. */
static int prealloc_range(int fd, uint64_t from, uint64_t to, QsPrealloc p)
{
    if (to <= from) return 0;
    switch (p) {
    case QS_PREALLOC_OFF:
    case QS_PREALLOC_METADATA:
        return ftruncate(fd, (off_t)to) < 0 ? -errno : 0;
    case QS_PREALLOC_FALLOC: {
        int r = posix_fallocate(fd, (off_t)from, (off_t)(to - from));
        return r ? -r : 0;
    }
    case QS_PREALLOC_FULL: {
        if (ftruncate(fd, (off_t)to) < 0) return -errno;
        size_t chunk = 1 << 20;
        g_autofree void *z = g_malloc0(chunk);
        for (uint64_t o = from; o < to; o += chunk) {
            int r = qs_file_pwrite_all(fd, z, MIN((uint64_t)chunk, to - o), o);
            if (r < 0) return r;
        }
        return 0;
    }
    }
    return -EINVAL;
}

static int file_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                         GError **errp)
{
    FileState *s = bs->opaque;
    int r = 0;
    if (s->is_blockdev) {
        if (size > bs->size) {
            g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "Cannot grow device files");
            return -EINVAL;
        }
        return 0;
    }
    if (size < bs->size) {
        if (ftruncate(bs->fd, (off_t)size) < 0) r = -errno;
    } else {
        r = prealloc_range(bs->fd, bs->size, size, prealloc);
    }
    if (r < 0) {
        g_set_error(errp, QS_BLOCK_ERROR, -r, "Could not resize file '%s': %s", bs->filename,
                    g_strerror(-r));
        return r;
    }
    __atomic_store_n(&bs->size, size, __ATOMIC_SEQ_CST);
    return 0;
}

static int file_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, QsBlock **file)
{
    *map = off;
    *file = bs;
    off_t data = lseek(bs->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {           /* a hole up to the end of the file */
            *pnum = len;
            return QS_BS_ZERO | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
        }
        *pnum = len;                    /* no SEEK_DATA: all data */
        return QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
    }
    if ((uint64_t)data > off) {
        *pnum = MIN(len, (uint64_t)data - off);
        return QS_BS_ZERO | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
    }
    off_t hole = lseek(bs->fd, (off_t)off, SEEK_HOLE);
    if (hole < 0 || (uint64_t)hole <= off) hole = (off_t)(off + len);
    *pnum = MIN(len, (uint64_t)hole - off);
    return QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
}

static int64_t file_allocated_size(QsBlock *bs)
{
    struct stat st;
    if (fstat(bs->fd, &st) < 0) return -errno;
    return (int64_t)st.st_blocks * 512;
}

const QsPropDesc qs_file_create_opts[] = {
    { "extent_size_hint", QS_PROP_SIZE, NULL, "Extent size hint for the image file, 0 to disable" },
    { "nocow", QS_PROP_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)" },
    { "preallocation", QS_PROP_STRING, NULL, "Preallocation mode (allowed values: off, falloc, full)" },
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { NULL },
};

static bool file_create(const char *filename, const QsOpts *opts, GError **errp)
{
    QsPrealloc p = QS_PREALLOC_OFF;
    const char *ps = qs_opts_get_str(opts, "preallocation");
    if (ps && (!qs_prealloc_parse(ps, &p) || p == QS_PREALLOC_METADATA)) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "Invalid parameter '%s'", ps);
        return false;
    }
    uint64_t size = qs_opts_get_uint(opts, "size");
    if (g_str_has_prefix(filename, "file:")) filename += 5;
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        g_set_error(errp, QS_BLOCK_ERROR, e, "Could not create '%s': %s", filename,
                    g_strerror(e));
        return false;
    }
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (ftruncate(fd, 0) < 0) r = -errno;
        if (!r) r = prealloc_range(fd, 0, size, p);
    }
    close(fd);
    if (r < 0) {
        g_set_error(errp, QS_BLOCK_ERROR, -r, "Could not resize file '%s': %s", filename,
                    g_strerror(-r));
        return false;
    }
    return true;
}

const QsBlockDriver qs_block_drv_file = {
    .name = "file",
    .desc = "host files and block devices",
    .is_protocol = true,
    .instance_size = sizeof(FileState),
    .create_opts = qs_file_create_opts,
    .create = file_create,
    .open = file_open,
    .close = file_close,
    .pread = file_pread,
    .pwrite = file_pwrite,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .truncate = file_truncate,
    .block_status = file_block_status,
    .allocated_size = file_allocated_size,
};
