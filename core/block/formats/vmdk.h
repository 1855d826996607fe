/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vmdk driver's shared state: the disk made of extents (flat, zero, hosted sparse
 * "KDMV", stream-optimized, VMDK3 "COWD") and the sparse extent operations. */
#ifndef QS_BLOCK_VMDK_H
#define QS_BLOCK_VMDK_H

#include "formats.h"

#define VMDK4_MAGIC 0x564d444bu   /* "KDMV" */
#define VMDK3_MAGIC 0x44574f43u   /* "COWD" */
#define VMDK_GD_AT_END UINT64_MAX
#define VMDK_DESC_MAX (1u << 20)  /* descriptor size limit (bytes) */
#define VMDK_MAX_EXTENTS 4096u
#define VMDK_GTE_ZEROED 1u

enum {   /* hosted sparse header flags */
    VMDK_FLAG_NL_DETECT = 1u << 0,
    VMDK_FLAG_RGD = 1u << 1,
    VMDK_FLAG_ZERO_GRAIN = 1u << 2,
    VMDK_FLAG_COMPRESS = 1u << 16,
    VMDK_FLAG_MARKERS = 1u << 17,
};

enum { MARKER_EOS = 0, MARKER_GT = 1, MARKER_GD = 2, MARKER_FOOTER = 3 };

typedef enum { EXT_FLAT, EXT_ZERO, EXT_SPARSE, EXT_COWD } ExtentKind;

typedef struct VmdkExtent {
    ExtentKind kind;
    char *type_name;           /* as in the descriptor ("SPARSE", "FLAT", ...), "" if none */
    char *filename;            /* as opened */
    QsBlock *file;             /* NULL for ZERO */
    bool own_file;             /* opened by us (not bs->file) */
    bool shared_file;          /* FLAT: the file an earlier FLAT extent opened */
    bool read_only;
    uint64_t start, sectors;   /* place in the virtual disk, in sectors */
    uint64_t flat_offset;      /* FLAT: byte offset in the file */
    /* sparse */
    uint32_t version, flags;
    uint64_t grain;            /* bytes */
    uint32_t gtes;             /* entries per grain table */
    uint64_t gd_offset, rgd_offset;   /* bytes; rgd 0 if none */
    uint32_t gd_entries;
    uint32_t *gd, *rgd;        /* host-endian sector numbers */
    bool compressed, stream, zeroed_grain;
    bool sesparse;             /* FLAT over a seSparse node (vmdk-sesparse.c) */
    uint64_t next_alloc;       /* bytes: where the next grain goes */
    uint8_t header[512];       /* the hosted sparse header (for the stream footer) */
    GHashTable *gt_cache;      /* gd index -> uint32_t table (host-endian) */
    GArray *gt_starts;         /* sorted byte offsets of every grain table (both
                                * directories), built at the first write into a grain */
    GMutex gt_starts_lock;     /* writes to stored grains run outside the driver lock */
    uint64_t gt_cache_bytes;
    bool stream_dirty;         /* stream: tables must be written at close */
    uint32_t **stream_gts;     /* stream writing: every grain table in memory */
    /* the last compressed grain decoded for a partial read (under the driver lock): a
     * grain may be up to 1 GiB, and small reads within one decoded it again each time.
     * Valid while next_alloc is what it was: grains are only ever appended. */
    uint8_t *dgrain;           /* its first dgrain_held bytes; the rest are zeros */
    size_t dgrain_held;
    uint64_t dgrain_host, dgrain_next_alloc;
} VmdkExtent;

typedef struct Vmdk {
    GMutex lock;
    bool inited;
    uint32_t cid, parent_cid;
    bool cid_checked;          /* the parent's CID was found to be parentCID (as QEMU) */
    bool cid_updated;          /* this open's first write gave the image a new CID */
    char *create_type;
    char *desc;                /* descriptor text */
    uint64_t desc_offset, desc_size;   /* embedded descriptor (bytes), 0 if separate */
    GPtrArray *extents;        /* of VmdkExtent * */
} Vmdk;

/* Read from the parent as QEMU 7.2 does: the first read that needs the parent fails with
 * -EINVAL unless the parent's CID is this image's parentCID. */
int vmdk_read_backing(QsBlock *bs, uint64_t off, size_t len, void *buf);

/* Open the sparse extent e in e->file (header at offset 0; COWD or KDMV).  Validates
 * every field; for KDMV with an embedded descriptor, *desc receives it. */
bool vmdk_sparse_open(QsBlock *bs, VmdkExtent *e, bool rdwr, char **desc, GError **errp);
void vmdk_sparse_close(VmdkExtent *e);
/* Look up the grain holding byte off of the extent: 0 with *host = 0 (unallocated),
 * VMDK_GTE_ZEROED, or the grain's byte offset.  Called with the lock held. */
int vmdk_sparse_lookup(VmdkExtent *e, uint64_t off, uint64_t *host);
int vmdk_sparse_read(VmdkExtent *e, uint64_t off, size_t len, void *buf, QsBlock *bs,
                     uint64_t disk_off);
/* Write n bytes (zeros if zero) at in of stored grains starting at host.  Refused with
 * -EIO when they would hit the extent's header, descriptor or grain directories (only a
 * corrupt grain table names such a grain). */
int vmdk_sparse_write_stored(VmdkExtent *e, uint64_t host, uint64_t in, size_t n,
                             const void *buf, bool zero);
/* Write within one grain (lock held); backing data fills the rest of a new grain. */
int vmdk_sparse_write(VmdkExtent *e, uint64_t off, size_t len, const void *buf, QsBlock *bs,
                      uint64_t disk_off, bool zero);
/* Whole unallocated grains [g0, g0 + k) of a plain sparse extent (lock held): stored one
 * after another at the end with one write, then their entries with one write per grain
 * table. */
int vmdk_sparse_alloc_run(VmdkExtent *e, uint64_t g0, unsigned k, const void *data);
/* Compressed extents, called without the driver lock (they take it to look up and
 * update the grain tables): reads inflate the grains outside it, reading runs of grains
 * stored one after another at once; whole grains written are compressed in parallel on
 * the block thread pool and appended in order with one write per batch. */
int vmdk_compressed_read(VmdkExtent *e, GMutex *lock, uint64_t off, size_t len, void *buf,
                         QsBlock *bs, uint64_t disk_off);
int vmdk_compressed_write(VmdkExtent *e, GMutex *lock, uint64_t off, size_t len,
                          const void *buf, QsBlock *bs, uint64_t disk_off);
/* Stream-optimized: write grain tables, directory, footer and end marker. */
int vmdk_stream_finish(VmdkExtent *e);
/* Create a hosted sparse extent file (desc: embedded descriptor text or NULL). */
bool vmdk_sparse_create(const char *filename, uint64_t sectors, bool stream, bool zeroed,
                        const char *desc, GError **errp);
/* Grow a plain hosted sparse extent to `sectors` (header capacity; the directories must
 * have room in their sectors for the new entries, else -EFBIG). */
int vmdk_sparse_grow(VmdkExtent *e, uint64_t sectors);
bool vmdk_sparse_check(VmdkExtent *e, QsBlockCheckResult *res, int fix);

#endif
