/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the parallels driver (parallels.c) shares with its Format Extension reader
 * (parallels-ext.c): the open image's state and the extension's dirty bitmaps. */
#ifndef QS_BLOCK_PARALLELS_H
#define QS_BLOCK_PARALLELS_H

#include "formats.h"

#define PRL_HEADER_SIZE   64u
#define PRL_INUSE_OPEN    0x746f6e59u   /* "Ynot": opened read-write */
#define PRL_INUSE_CLOSED  0x312e3276u   /* "v2.1": closed by software that knows extensions */
#define PRL_EXT_MAGIC     0xab234cef23dcea87ull
#define PRL_FEAT_END      0ull
#define PRL_FEAT_BITMAP   0x20385fae252cb34aull
#define PRL_FEAT_NECESSARY 1ull
#define PRL_FEAT_TRANSIT   2ull

/* One dirty bitmap of the Format Extension (read only). */
typedef struct PrlBitmap {
    uint8_t id[16];
    uint64_t size;            /* sectors covered */
    uint32_t granularity;     /* sectors per bit */
    uint32_t l1_size;
    uint64_t *l1;             /* 0: all clear, 1: all set, else sector offset of a cluster */
    uint64_t dirty;           /* bits set */
} PrlBitmap;

typedef struct Prl {
    GMutex lock;
    bool inited;
    bool ext_magic;           /* "WithouFreSpacExt": BAT entries count clusters */
    bool unclean;             /* in_use said "opened" when we opened it */
    bool readonly_features;   /* an unknown NECESSARY feature: never write */
    uint32_t tracks;          /* cluster size in sectors */
    uint32_t bat_entries;
    uint32_t *bat;            /* host-endian */
    uint64_t cluster;         /* bytes */
    uint64_t off_mult;        /* bytes per BAT unit */
    uint64_t data_off;        /* bytes */
    uint64_t data_end;        /* bytes: the next cluster is allocated here */
    uint64_t ext_off;         /* bytes; 0: no Format Extension */
    GPtrArray *bitmaps;       /* of PrlBitmap * */
} Prl;

/* Host offset in bytes of BAT entry value e (0: unallocated). */
static inline uint64_t prl_host(const Prl *s, uint32_t e)
{
    return (uint64_t)e * s->off_mult;
}

/* Is host offset off a valid cluster start: at or after data_off, aligned to a cluster
 * from data_off, the whole cluster below file_size?  On failure *why names the rule. */
bool prl_cluster_ok(const Prl *s, uint64_t off, uint64_t file_size, const char **why);

/* Read and validate the Format Extension cluster at s->ext_off (bytes) and load its
 * dirty bitmaps into s->bitmaps. */
bool prl_ext_load(QsBlock *bs, GError **errp);
void prl_bitmap_free(gpointer p);

#endif
