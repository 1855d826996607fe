/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The qcow2 driver's internal state and the functions its files share (header,
 * metadata caches, refcounts, cluster mapping, snapshots). Layout: QEMU's qcow2.txt. */
#ifndef QS_QCOW2_H
#define QS_QCOW2_H

#include "block-int.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_V2_HEADER 72u
#define QCOW2_V3_HEADER 104u

#define QCOW_OFLAG_COPIED     (1ull << 63)
#define QCOW_OFLAG_COMPRESSED (1ull << 62)
#define QCOW_OFLAG_ZERO       1ull
#define L1E_OFFSET_MASK   0x00fffffffffffe00ull
#define L2E_OFFSET_MASK   0x00fffffffffffe00ull
#define REFT_OFFSET_MASK  0xfffffffffffffe00ull
#define L1E_RESERVED_MASK 0x7f000000000001ffull
#define L2E_RESERVED_MASK 0x3f000000000001feull

#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS    (1ull << 0)

#define QCOW2_EXT_END          0x00000000u
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_EXT_FEATURES     0x6803f857u
#define QCOW2_EXT_BITMAPS      0x23852875u
#define QCOW2_EXT_CRYPTO       0x0537be77u
#define QCOW2_EXT_DATA_FILE    0x44415441u

/* Limits (QEMU's) that bound what a hostile header can make us allocate. */
#define QCOW2_MAX_L1_BYTES       (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS      65536u
#define QCOW2_MAX_SNAPSHOTS_BYTES (64u << 20)
#define QCOW2_MAX_BACKING_NAME   1023u
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u

enum { COMP_ZLIB = 0, COMP_ZSTD = 1 };

/* What a guest range maps to. */
typedef enum {
    C_UNALLOC,      /* read from backing (or zeros) */
    C_ZERO_PLAIN,   /* zero flag, no host cluster */
    C_ZERO_ALLOC,   /* zero flag with a host cluster */
    C_NORMAL,       /* data at host offset */
    C_COMPRESSED,
} ClusterType;

/* Up to n tables of `size` bytes, found by offset through an open-addressing hash index
 * and evicted least recently used first.  Slot arrays grow on demand up to n, so that
 * opening an image costs nothing for tables it never touches. */
typedef struct Qcow2Cache {
    unsigned n;             /* most tables held */
    size_t size;            /* bytes per table */
    unsigned cap;           /* slots allocated (<= n) */
    uint64_t *offs;         /* per slot: offset of the table held (its allocation holds
                             * every array below too) */
    uint8_t **bufs;         /* per slot: the table, NULL when the slot is free */
    uint32_t *prev, *next;  /* per slot: LRU list of held tables, or free list (next) */
    uint32_t mru, lru, free_slot;
    uint32_t *index;        /* hash of offset -> slot + 1 (0: empty) */
    unsigned index_bits;
} Qcow2Cache;

typedef struct Qcow2Snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    bool has_icount;
    uint64_t icount;
    uint8_t *extra_unknown;     /* extra data beyond what we know, kept as is */
    uint32_t extra_unknown_len;
    uint32_t extra_size;        /* extra data bytes of its table entry (check wants 16) */
} Qcow2Snapshot;

typedef struct Qcow2Ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
} Qcow2Ext;

typedef struct InFlight {
    uint64_t start, end;   /* guest cluster indices being allocated */
} InFlight;

typedef struct Qcow2 {
    GMutex lock;
    GCond alloc_done;
    GArray *inflight;            /* of InFlight */
    QsBlock *bs;
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;            /* log2 entries per L2 table */
    uint64_t l2_entries;
    bool ext_l2;
    uint32_t l2e_size;           /* 8 or 16 bytes */
    uint64_t subcluster_size;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint64_t refcount_max;
    uint32_t rb_bits;            /* log2 refcount entries per refcount block */
    uint32_t header_length;
    uint64_t *l1;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t *reftable;
    uint64_t reftable_entries;
    /* for the overlap checks (qcow2-overlap.c): cluster offsets of the active L2 tables
     * and refcount blocks -> how many entries name them; built when first needed */
    bool meta_index;
    GHashTable *l2_set, *rb_set;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    /* The table's entries up to its last non-empty one (snaps_len of them); the rest are
     * all empty_snap (an all-zero header: no names, no L1 table), held in no memory —
     * a hostile header's 65536 entries past the end of the file read as just that.
     * qcow2_snapshot() reads any entry. */
    Qcow2Snapshot *snaps;
    uint32_t snaps_len;
    Qcow2Snapshot empty_snap;
    char *snap_names;            /* ids and names as read at open, one allocation */
    size_t snap_names_len;
    uint64_t snapshots_size;     /* bytes of the on-disk table */
    uint64_t backing_offset;
    uint32_t backing_size;
    int compression_type;
    GPtrArray *exts;             /* Qcow2Ext *: extensions we keep as they are */
    uint32_t csize_shift;
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;
    uint64_t free_cluster_index;
    uint64_t free_byte_offset;
    uint64_t alloc_end;          /* highest allocated cluster + 1 (since open) */
    Qcow2Cache l2_cache, rb_cache;
    bool corrupt_reported;
    int meta_prealloc;           /* -1 unknown, 0/1: data clusters may be host holes */
    bool dirty_set;              /* we set the dirty bit on open */
    /* bitmaps extension, read only */
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_size, bitmap_dir_offset;
} Qcow2;

static inline uint64_t offset_to_cluster(Qcow2 *s, uint64_t off) { return off >> s->cluster_bits; }
static inline uint64_t l1_index(Qcow2 *s, uint64_t off)
{
    return off >> (s->l2_bits + s->cluster_bits);
}
static inline uint64_t l2_index(Qcow2 *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_entries - 1);
}
/* Entries of an L2 table in memory (big-endian on disk, kept so in the cache). */
static inline uint64_t l2_get(Qcow2 *s, const uint8_t *t, uint64_t i)
{
    return be64_at(t + i * s->l2e_size);
}
static inline uint64_t l2_get_bitmap(Qcow2 *s, const uint8_t *t, uint64_t i)
{
    return s->ext_l2 ? be64_at(t + i * s->l2e_size + 8) : 0;
}
static inline void l2_set(Qcow2 *s, uint8_t *t, uint64_t i, uint64_t e, uint64_t bm)
{
    put_be64(t + i * s->l2e_size, e);
    if (s->ext_l2) put_be64(t + i * s->l2e_size + 8, bm);
}
ClusterType qcow2_entry_type(Qcow2 *s, uint64_t e);

/* qcow2.c */
int qcow2_update_header(Qcow2 *s);
void qcow2_signal_corruption(Qcow2 *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* A metadata write: refused (-EIO, image marked corrupt) when it would touch more than
 * one kind of metadata structure, which only a corrupt image makes possible. */
int qcow2_meta_write(Qcow2 *s, uint64_t off, const void *buf, size_t len);

/* qcow2-overlap.c: which metadata structures [off, off+len) touches (QCOW2_OL_*) */
enum {
    QCOW2_OL_HEADER = 1 << 0, QCOW2_OL_ACTIVE_L1 = 1 << 1, QCOW2_OL_ACTIVE_L2 = 1 << 2,
    QCOW2_OL_REFCOUNT_TABLE = 1 << 3, QCOW2_OL_REFCOUNT_BLOCK = 1 << 4,
    QCOW2_OL_SNAPSHOT_TABLE = 1 << 5, QCOW2_OL_INACTIVE_L1 = 1 << 6,
    QCOW2_OL_BITMAP_DIR = 1 << 7,
};
unsigned qcow2_overlaps(Qcow2 *s, uint64_t off, uint64_t len);
/* The active L1 or the refcount table was replaced: the index is rebuilt when next
 * needed (an image opens without one).  An entry that changes instead: forget the old
 * offset, note the new. */
void qcow2_tables_changed(Qcow2 *s);
void qcow2_note_l2(Qcow2 *s, uint64_t off);
void qcow2_forget_l2(Qcow2 *s, uint64_t off);
void qcow2_note_refblock(Qcow2 *s, uint64_t off);
void qcow2_forget_refblock(Qcow2 *s, uint64_t off);
void qcow2_overlap_free(Qcow2 *s);
/* Signal corruption naming the first structure in mask; returns -EIO. */
int qcow2_refuse_overlap(Qcow2 *s, unsigned mask);
/* Guest data (or a newly allocated range) must touch no metadata: 0 or -EIO. */
int qcow2_check_data_write(Qcow2 *s, uint64_t off, uint64_t len);
int qcow2_meta_read(Qcow2 *s, uint64_t off, void *buf, size_t len);
/* The bytes of [off, off + len) the image file holds (what lies past its end reads as
 * zeros): hostile table sizes ask for megabytes past the end. */
size_t qcow2_in_file(Qcow2 *s, uint64_t off, size_t len);
/* Reads [off, off + len) into buf, which the caller zeroed, only as far as the file
 * holds it; -EINVAL for a range the block layer cannot address (as its read would).
 * Returns the bytes read, or -errno. */
int64_t qcow2_read_zeroed(Qcow2 *s, uint64_t off, void *buf, size_t len);
int qcow2_grow_l1(Qcow2 *s, uint64_t min_size);
int qcow2_write_l1_entry(Qcow2 *s, uint64_t idx);

/* qcow2-cache.c */
void qcow2_cache_init(Qcow2Cache *c, unsigned n, size_t size);
void qcow2_cache_destroy(Qcow2Cache *c);
/* Get the table at off, reading it unless fresh (then zero-filled); NULL + *err. */
uint8_t *qcow2_cache_get(Qcow2 *s, Qcow2Cache *c, uint64_t off, bool fresh, int *err);
void qcow2_cache_drop(Qcow2Cache *c, uint64_t off);
void qcow2_cache_clear(Qcow2Cache *c);

/* qcow2-refcount.c */
int qcow2_refcount_init(Qcow2 *s);
void qcow2_rb_set(Qcow2 *s, uint8_t *b, uint64_t i, uint64_t v);
int qcow2_get_refcount(Qcow2 *s, uint64_t cluster, uint64_t *rc);
/* Add addend to every cluster touching [off, off+len). */
int qcow2_update_refcount(Qcow2 *s, uint64_t off, uint64_t len, int64_t addend);
/* Allocate n contiguous clusters (refcount 1); returns host offset or negative errno. */
int64_t qcow2_alloc_clusters(Qcow2 *s, uint64_t n);
/* Allocate len bytes for compressed data (len <= cluster size). */
int64_t qcow2_alloc_bytes(Qcow2 *s, uint64_t len);
/* Drop the references of one L2 entry's host cluster(s). */
int qcow2_free_entry(Qcow2 *s, uint64_t entry);
void qcow2_compressed_range(Qcow2 *s, uint64_t entry, uint64_t *off, uint64_t *len);
bool qcow2_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp);
/* Refcount metadata size (bytes) for `clusters` clusters (QEMU's fixed point). */
uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order);

/* qcow2-cluster.c */
int qcow2_pread(QsBlock *bs, uint64_t off, size_t len, void *buf);
int qcow2_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags);
int qcow2_pwrite_compressed(QsBlock *bs, uint64_t off, size_t len, const void *buf);
int qcow2_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags);
int qcow2_pdiscard(QsBlock *bs, uint64_t off, uint64_t len);
int qcow2_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       uint64_t *map, QsBlock **file);
int qcow2_make_empty(QsBlock *bs);
/* Load the L2 table for guest offset (allocating/COWing it if alloc); *table NULL when
 * unallocated and !alloc.  Lock held. */
int qcow2_get_l2(Qcow2 *s, uint64_t off, bool alloc, uint8_t **table, uint64_t *l2_off);
/* qcow2-compress.c: compressed size, or -ENOSPC if it does not fit out_max. */
int qcow2_compress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_max);
int qcow2_decompress(Qcow2 *s, const uint8_t *in, size_t in_len, uint8_t *out,
                     size_t out_len);
/* Preallocate metadata (and data clusters) for [from, to) of the guest. */
int qcow2_preallocate(Qcow2 *s, uint64_t from, uint64_t to, QsPrealloc p);

/* qcow2-snapshot.c */
int qcow2_read_snapshots(Qcow2 *s, GError **errp);
int qcow2_write_snapshots(Qcow2 *s);
void qcow2_free_snapshots(Qcow2 *s);
static inline Qcow2Snapshot *qcow2_snapshot(Qcow2 *s, uint32_t i)
{
    return i < s->snaps_len ? &s->snaps[i] : &s->empty_snap;
}
QsBlockSnapshotList *qcow2_snapshot_list(QsBlock *bs);
bool qcow2_snapshot_create(QsBlock *bs, const char *name, GError **errp);
bool qcow2_snapshot_apply(QsBlock *bs, const char *name, GError **errp);
bool qcow2_snapshot_delete(QsBlock *bs, const char *name, GError **errp);
/* Add addend to the refcounts of an L1 tree (L2 tables and data); fix COPIED flags of
 * the active tree afterwards with qcow2_fix_copied. */
int qcow2_update_tree_refcount(Qcow2 *s, uint64_t l1_offset, uint32_t l1_size,
                               int64_t addend);
int qcow2_fix_copied(Qcow2 *s);

#endif
