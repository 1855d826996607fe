/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The block layer: image format and protocol drivers, their registry, open/create with
 * probing and backing chains, I/O, block status, check/repair, snapshots and amend. */
#ifndef QS_BLOCK_H
#define QS_BLOCK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <json-glib/json-glib.h>
#include "qs/opts.h"

#define QS_BLOCK_SECTOR 512ull
/* Largest virtual size any driver accepts (QEMU's limit: INT64_MAX rounded to sectors). */
#define QS_BLOCK_MAX_SIZE (INT64_MAX & ~(int64_t)511)

typedef struct QsBlock QsBlock;
typedef struct QsBlockDriver QsBlockDriver;

/* Open flags. */
enum {
    QS_BLOCK_RDWR       = 1 << 0,
    QS_BLOCK_NO_BACKING = 1 << 1,   /* do not open the backing file */
    QS_BLOCK_NOCACHE    = 1 << 2,   /* O_DIRECT on the protocol layer */
    QS_BLOCK_CHECK      = 1 << 3,   /* opened by check: no automatic repair on open */
    QS_BLOCK_NO_FLUSH   = 1 << 4,   /* writes need not reach stable storage (cache=unsafe) */
};

/* Write flags. */
enum {
    QS_WRITE_MAY_UNMAP = 1 << 0,    /* write-zeroes may deallocate */
    QS_WRITE_NO_FALLBACK = 1 << 1,  /* write-zeroes must not write a buffer of zeros */
};

/* Block status bits (as QEMU's BDRV_BLOCK_*). */
enum {
    QS_BS_DATA         = 1 << 0,    /* reads come from data stored at *map */
    QS_BS_ZERO         = 1 << 1,    /* reads as zeros */
    QS_BS_OFFSET_VALID = 1 << 2,    /* *map is the host offset in *file */
    QS_BS_ALLOCATED    = 1 << 3,    /* this layer decides the content (not the backing) */
    QS_BS_COMPRESSED   = 1 << 4,
    QS_BS_EOF          = 1 << 5,
};

typedef enum QsPrealloc {
    QS_PREALLOC_OFF, QS_PREALLOC_METADATA, QS_PREALLOC_FALLOC, QS_PREALLOC_FULL,
} QsPrealloc;
/* "off", "metadata", "falloc", "full" -> mode; false if unknown. */
bool qs_prealloc_parse(const char *s, QsPrealloc *out);
const char *qs_prealloc_name(QsPrealloc p);

typedef struct QsBlockCheckResult {
    int corruptions, leaks, check_errors;
    int corruptions_fixed, leaks_fixed;
    int64_t image_end_offset;          /* 0: unknown */
    bool has_stats;                    /* the cluster counters below are set */
    uint64_t total_clusters, allocated_clusters, fragmented_clusters, compressed_clusters;
} QsBlockCheckResult;

/* check fix flags (qemu-img check -r leaks|all) */
enum { QS_CHECK_FIX_LEAKS = 1, QS_CHECK_FIX_ERRORS = 2 };

typedef struct QsBlockSnapshot {
    const char *id, *name;
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    bool has_icount;
    uint64_t icount;
} QsBlockSnapshot;

/* A copy of a driver's snapshot table: len entries, read with qs_block_snapshot_at.  The
 * first `held` are in sn[], their ids and names in text; the rest are all `empty` (no
 * name, nothing else set): a qcow2 table may declare 65536 entries, nearly all empty. */
typedef struct QsBlockSnapshotList {
    guint len, held;
    QsBlockSnapshot *sn;
    QsBlockSnapshot empty;
    char *text;
} QsBlockSnapshotList;
static inline const QsBlockSnapshot *qs_block_snapshot_at(const QsBlockSnapshotList *l, guint i)
{
    return i < l->held ? &l->sn[i] : &l->empty;
}
void qs_block_snapshot_list_free(QsBlockSnapshotList *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QsBlockSnapshotList, qs_block_snapshot_list_free)

/* Everything a driver can do.  Protocol drivers (file, filters) set .protocol; format
 * drivers set .probe and work on bs->file.  Unset operations report "not supported". */
struct QsBlockDriver {
    const char *name;             /* format name ("qcow2") or protocol name ("file") */
    const char *desc;
    bool is_protocol;             /* opened with a filename ("file", or "NAME:rest") */
    bool is_filter;               /* a protocol layer over another image (fault injectors) */
    size_t instance_size;         /* bs->opaque is allocated zeroed with this size */
    /* 0 (not this format) .. 100 (certain), from the first bytes of the file. */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
    const QsPropDesc *create_opts;   /* QEMU's -o names, "size" included */
    bool (*create)(const char *filename, const QsOpts *opts, GError **errp);
    bool (*open)(QsBlock *bs, const QsOpts *opts, GError **errp);
    const QsPropDesc *open_opts;     /* for filters: "rule=...,..."; may be NULL */
    void (*close)(QsBlock *bs);
    /* I/O: return 0 or a negative errno.  Must be thread-safe (the pool calls them in
     * parallel).  Offsets and lengths are in bytes; the layer clamps to bs->size. */
    int (*pread)(QsBlock *bs, uint64_t off, size_t len, void *buf);
    int (*pwrite)(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags);
    int (*pwrite_compressed)(QsBlock *bs, uint64_t off, size_t len, const void *buf);
    int (*pwrite_zeroes)(QsBlock *bs, uint64_t off, uint64_t len, int flags);
    int (*pdiscard)(QsBlock *bs, uint64_t off, uint64_t len);
    int (*flush)(QsBlock *bs);
    int (*truncate)(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                    GError **errp);
    /* Status of [off, off+len): returns QS_BS_ bits and sets *pnum (>0) to the length
     * with that status; map and file are set when OFFSET_VALID.  Negative errno on failure. */
    int (*block_status)(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                        uint64_t *map, QsBlock **file);
    int64_t (*allocated_size)(QsBlock *bs);       /* bytes used on the host */
    bool (*check)(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp);
    /* Add this format's "format-specific" data members to an object being built. */
    void (*info_specific)(QsBlock *bs, JsonBuilder *b);
    uint32_t (*cluster_size)(QsBlock *bs);        /* 0: none */
    bool (*is_dirty)(QsBlock *bs);
    /* As a QEMU driver without get_info: `info` shows no dirty-flag (and cluster_size
     * must be unset, so no cluster-size either). */
    bool no_info;
    QsBlockSnapshotList *(*snapshot_list)(QsBlock *bs);
    bool (*snapshot_create)(QsBlock *bs, const char *name, GError **errp);
    bool (*snapshot_apply)(QsBlock *bs, const char *name_or_id, GError **errp);
    bool (*snapshot_delete)(QsBlock *bs, const char *name_or_id, GError **errp);
    bool (*amend)(QsBlock *bs, const QsOpts *opts, GError **errp);
    /* Rewrite the backing file name and format recorded in the image (NULL: none). */
    bool (*change_backing)(QsBlock *bs, const char *file, const char *fmt, GError **errp);
    /* Discard all of this layer's data so reads come from the backing (commit). */
    int (*make_empty)(QsBlock *bs);
    /* Sizes a new image of this format needs: required for the data of `in` (or of
     * `size` bytes of data when in is NULL) and when fully allocated. */
    bool (*measure)(const QsOpts *opts, QsBlock *in, uint64_t size, uint64_t *required,
                    uint64_t *fully_allocated, GError **errp);
};

struct QsBlock {
    const QsBlockDriver *drv;
    void *opaque;
    char *filename;
    char *driver_opts;       /* "k=v,..." the driver was opened with, or NULL */
    int flags;
    uint64_t size;           /* virtual size in bytes */
    QsBlock *file;           /* the protocol layer under a format, or NULL */
    QsBlock *backing;        /* opened backing image, or NULL */
    char *backing_file;      /* as recorded in the image, or NULL */
    char *backing_fmt;       /* as recorded, or NULL */
    int fd;                  /* for protocol drivers on a host file, else -1 */
    /* Test hook: fail the N-th and every later write at this layer (0: off). */
    int64_t fail_write_at;
    int64_t write_count;
};

/* Registry.  Modules call qs_block_driver_register from init; the registration is owned
 * by the module (declare "block:NAME" in provides) and undone when it goes. */
bool qs_block_driver_register(const QsBlockDriver *drv, GError **errp);
const QsBlockDriver *qs_block_driver_find(const char *name);
GPtrArray *qs_block_driver_list(void);   /* sorted by name; free with g_ptr_array_unref */
/* Register the built-in drivers (file, raw, qcow2); idempotent. */
void qs_block_init(void);

/* Messages of check, repair and corruption reports (qemu-img prints them on stderr, as
 * the default handler does).  fn gets the printf format and its arguments, one message
 * (with its newline, if any): it formats them (g_strdup_vprintf) or, when it only
 * counts them, need not (a fuzz target's check of a hostile image formats millions).
 * Set once at start-up: the handler is global.  fn NULL restores stderr. */
typedef void (*QsBlockMessageFn)(const char *fmt, va_list ap, void *opaque);
void qs_block_set_message_handler(QsBlockMessageFn fn, void *opaque);
/* For drivers: report one message through the handler. */
void qs_block_message(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Guess the format of filename (highest probe score), as qemu-img does. */
const QsBlockDriver *qs_block_probe(const char *filename, GError **errp);

/* Open "filename" or "proto:rest" with format fmt (NULL: probe).  driver_opts are the
 * format's open options ("k=v,..."), or NULL.  Opens the backing chain unless
 * QS_BLOCK_NO_BACKING; backing_override replaces the recorded backing file (NULL: keep). */
QsBlock *qs_block_open(const char *filename, const char *fmt, int flags,
                       const char *driver_opts, GError **errp);
/* Open the protocol layer alone (a format driver opens its file with this). */
QsBlock *qs_block_open_file(const char *filename, int flags, GError **errp);
void qs_block_close(QsBlock *bs);
/* Open bs's backing image now (a driver's open sets backing_file/backing_fmt). */
bool qs_block_open_backing(QsBlock *bs, GError **errp);
/* The backing file name resolved against the image's directory (g_free it). */
char *qs_block_backing_path(const QsBlock *bs, const char *backing);

/* Create an image: opts are "k=v,..." of the format's create_opts; size==UINT64_MAX
 * means "take it from the backing file".  Prints nothing. */
bool qs_block_create(const char *fmt, const char *filename, uint64_t size,
                     const char *opts, bool no_backing_check, GError **errp);
/* Parse create options for a format (adds size=; used by create, amend, measure). */
QsOpts *qs_block_create_opts_parse(const QsBlockDriver *drv, const char *text,
                                   GError **errp);

/* I/O.  pread/pwrite accept any offset and length inside the image; negative errno. */
int qs_block_pread(QsBlock *bs, uint64_t off, size_t len, void *buf);
int qs_block_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags);
int qs_block_pwrite_compressed(QsBlock *bs, uint64_t off, size_t len, const void *buf);
int qs_block_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags);
int qs_block_pdiscard(QsBlock *bs, uint64_t off, uint64_t len);
int qs_block_flush(QsBlock *bs);
bool qs_block_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                       GError **errp);
/* Status in this layer only.  Unallocated ranges of an image without backing read as
 * zeros and report QS_BS_ZERO. */
int qs_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                    uint64_t *map, QsBlock **file);
/* Status through the backing chain down to (excluding) base; *depth is the layer. */
int qs_block_status_above(QsBlock *bs, QsBlock *base, uint64_t off, uint64_t len,
                          uint64_t *pnum, uint64_t *map, QsBlock **file, int *depth);
/* Read from bs's backing (zeros where there is none or beyond its end). */
int qs_block_read_backing(QsBlock *bs, uint64_t off, size_t len, void *buf);
int64_t qs_block_allocated_size(QsBlock *bs);
uint32_t qs_block_cluster_size(QsBlock *bs);
bool qs_block_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp);

/* Parallel requests: a shared pool of worker threads running block requests. */
typedef struct QsBlockAio QsBlockAio;
typedef void QsBlockAioCb(void *opaque, int ret);
/* A queue with at most `depth` requests in flight; callbacks run in worker threads. */
QsBlockAio *qs_block_aio_new(unsigned depth);
/* Submit; blocks while `depth` requests are in flight. */
void qs_block_aio_pread(QsBlockAio *q, QsBlock *bs, uint64_t off, size_t len, void *buf,
                        QsBlockAioCb *cb, void *opaque);
void qs_block_aio_pwrite(QsBlockAio *q, QsBlock *bs, uint64_t off, size_t len,
                         const void *buf, int flags, QsBlockAioCb *cb, void *opaque);
void qs_block_aio_flush(QsBlockAio *q, QsBlock *bs, QsBlockAioCb *cb, void *opaque);
/* Wait for everything submitted; returns the first error seen (or 0). */
int qs_block_aio_drain(QsBlockAio *q);
void qs_block_aio_free(QsBlockAio *q);   /* drains first */

/* Run fn(i, opaque) for i in [0, n) on up to `threads` threads; returns the first
 * nonzero result (others stop picking new items). */
int qs_block_parallel_for(unsigned threads, uint64_t n,
                          int (*fn)(uint64_t i, void *opaque), void *opaque);

/* Error domain of the block layer: messages name the image and the field. */
#define QS_BLOCK_ERROR qs_block_error_quark()
GQuark qs_block_error_quark(void);

#endif
