/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the vhdx driver (vhdx.c) shares with its log (vhdx-log.c): the layout constants
 * of the VHDX 1.00 specification, the open image's state and CRC-32C. */
#ifndef QS_BLOCK_VHDX_H
#define QS_BLOCK_VHDX_H

#include "formats.h"

#define VHDX_MiB            ((uint64_t)1 << 20)
#define VHDX_HEADER_SECTION VHDX_MiB          /* file id, 2 headers, 2 region tables */
#define VHDX_HEADER1        (64u << 10)
#define VHDX_HEADER2        (128u << 10)
#define VHDX_HEADER_SIZE    4096u             /* the checksummed part of a header */
#define VHDX_REGION1        (192u << 10)
#define VHDX_REGION2        (256u << 10)
#define VHDX_TABLE_SIZE     (64u << 10)       /* region table, metadata table */
#define VHDX_MAX_ENTRIES    2047u
#define VHDX_MAX_SIZE       ((uint64_t)64 << 40)  /* 64 TiB */
#define VHDX_BLOCK_MIN      VHDX_MiB
#define VHDX_BLOCK_MAX      (256u << 20)
#define VHDX_SECTORS_PER_BITMAP (1ull << 23)  /* sectors one 1 MiB bitmap block covers */
#define VHDX_LOG_SECTOR     4096u
#define VHDX_BATCH          64u               /* BAT sectors per log entry */
#define VHDX_EXTEND_STEP    (64ull << 20)     /* the file grows this much at a time */
#define VHDX_PATH_MAX       4096u             /* longest parent path accepted (UTF-8 bytes) */
#define VHDX_CHAIN_MAX      32u               /* deepest chain of differencing images */
#define VHDX_SBM_CACHE      64u               /* sector bitmaps (1 MiB each) kept loaded */

/* payload block states (BAT entry bits 0-2) */
enum {
    PAYLOAD_NOT_PRESENT = 0, PAYLOAD_UNDEFINED = 1, PAYLOAD_ZERO = 2, PAYLOAD_UNMAPPED = 3,
    PAYLOAD_FULLY_PRESENT = 6, PAYLOAD_PARTIALLY_PRESENT = 7,
};
enum { SB_NOT_PRESENT = 0, SB_PRESENT = 6 };
#define BAT_STATE(e)   ((unsigned)((e) & 7))
#define BAT_OFFSET(e)  ((e) & ~(VHDX_MiB - 1))   /* FileOffsetMB << 20 */

/* The sector bitmap of one chunk of a differencing image (a bit per logical sector: set
 * = the sector is in this file, clear = in the parent), cached whole while open. */
typedef struct VhdxSbm {
    uint8_t dirty[VHDX_MiB / VHDX_LOG_SECTOR / 8];   /* 4 KiB sectors not yet journaled */
    uint8_t bits[VHDX_MiB];
} VhdxSbm;

typedef struct Vhdx {
    GMutex lock;
    bool inited;
    /* headers */
    int cur;                        /* index (0, 1) of the current header */
    uint8_t hdr[2][VHDX_HEADER_SIZE];
    uint64_t seq;
    uint64_t log_offset;
    uint32_t log_length;
    /* regions and metadata */
    uint64_t bat_offset, meta_offset;
    uint32_t bat_length, meta_length;
    uint32_t block_size, logical_sector, physical_sector;
    bool leave_allocated, has_parent;
    uint64_t disk_size;
    uint32_t size_item;             /* offset of the virtual disk size item in the region */
    uint8_t page83[16];
    uint64_t chunk_ratio, data_blocks, bat_entries;
    uint64_t *bat;                  /* host-endian */
    char *parent_linkage;           /* the locator's values, as read */
    char *parent_linkage2;
    VhdxSbm **sbm;                  /* differencing: per chunk, loaded on first use */
    uint64_t nchunks;
    unsigned sbm_loaded;            /* bitmaps in sbm (clean ones are dropped past a cap) */
    /* writing */
    bool session_started;           /* headers carry this session's GUIDs and log GUID */
    bool data_stamped;              /* ... and a new data write GUID (user data changed) */
    uint8_t log_guid[16];
    uint64_t log_seq;
    uint32_t log_pos;               /* where the next log entry goes, in the log */
    uint64_t data_end;              /* the next payload block goes here */
    uint64_t file_end;              /* the file was extended up to here (>= data_end) */
    uint8_t *bat_dirty;             /* BAT sectors changed in memory, not yet journaled */
    unsigned ndirty;                /* BAT and sector bitmap sectors not yet journaled */
    unsigned inflight;              /* new blocks whose data is being written */
    GCond idle;                     /* inflight dropped to 0 */
    bool replayed;                  /* the log was replayed when opening */
} Vhdx;

/* Running CRC-32C (no inversions: callers start at ~0 and invert the result); the
 * hardware instruction when the CPU has it, else the portable table version. */
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t vhdx_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* CRC-32C of buf with the 4 bytes at crc_off taken as zero, as stored in VHDX. */
uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t crc_off);

/* Header update per the specification: the non-current header gets seq+1 and the given
 * GUIDs (NULL: keep), then becomes current; done twice so that both are valid. */
int vhdx_update_headers(QsBlock *bs, const uint8_t *file_guid, const uint8_t *data_guid,
                        const uint8_t *log_guid);

/* Find the log's active sequence (if the current header has a log GUID) and, when
 * `replay`, write it to the file and clear the log GUID.  *pending is set to the number
 * of entries that need replaying.  Errors name the entry and field at fault. */
bool vhdx_log_open(QsBlock *bs, bool replay, uint64_t *pending, GError **errp);

/* Journal `count` 4 KiB sectors at file offsets offs[i] (aligned) with the contents
 * data + i*4096 through the log, then write them in place: log entry, flush, in-place
 * write, flush.  The session's log GUID must be in the headers. */
int vhdx_log_write(QsBlock *bs, const uint64_t *offs, const uint8_t *data, unsigned count);

#endif
