/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The memory API: regions (RAM, MMIO, containers, aliases, IOMMUs), address spaces that
 * flatten them, and the accessors and DMA helpers every device and the CPU go through. */
#ifndef QS_MEMORY_H
#define QS_MEMORY_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct QsMemoryRegion QsMemoryRegion;
typedef struct QsAddressSpace QsAddressSpace;

/* Who is accessing: the CPU or a bus master.  requester_id is PCI's bus<<8 | devfn;
 * IOMMUs key their tables on it when has_requester_id is set. */
typedef struct QsMemTxAttrs {
    uint16_t requester_id;
    bool has_requester_id;
    bool secure;
} QsMemTxAttrs;

#define QS_MEMTXATTRS_UNSPECIFIED ((QsMemTxAttrs){ 0 })

/* The result of an access.  Every accessor returns one; none aborts. */
typedef enum QsMemTxResult {
    QS_MEMTX_OK = 0,
    QS_MEMTX_ERROR = 1,          /* the device reported an error */
    QS_MEMTX_DECODE_ERROR = 2,   /* nothing mapped there, or an access size/alignment
                                  * the region does not accept */
    QS_MEMTX_ACCESS_DENIED = 4,  /* an IOMMU refused (no mapping or no permission), or
                                  * a bus master is not enabled */
} QsMemTxResult;

const char *qs_memtx_result_str(QsMemTxResult r);

typedef enum QsEndian {
    QS_ENDIAN_LITTLE = 0,   /* the default; the virt machine's guest is little-endian */
    QS_ENDIAN_BIG = 1,
} QsEndian;

/* Access-size limits: min/max in bytes (powers of two up to 8; 0 means the default: 1
 * and 4 for .valid, 1 and .valid's max for .impl), and whether unaligned is allowed. */
typedef struct QsMemAccessLimits {
    unsigned min;
    unsigned max;
    bool unaligned;
} QsMemAccessLimits;

/* MMIO callbacks.  addr is the offset in the region; values are in the region's
 * endianness (the bytes of the access read as a number in that byte order).
 * .valid says what the bus accepts: other sizes or a misalignment fail with
 * QS_MEMTX_DECODE_ERROR without calling the device.  .impl says what the callbacks
 * handle: wider or narrower accesses are split or widened as QEMU does.  Callbacks run
 * with the big device lock held (qs_bql_lock), so devices need no locking of their own
 * against other MMIO callbacks or main-loop timers that also take it. */
typedef struct QsMemOps {
    QsMemTxResult (*read)(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                          QsMemTxAttrs attrs);
    QsMemTxResult (*write)(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                           QsMemTxAttrs attrs);
    QsEndian endianness;
    QsMemAccessLimits valid;
    QsMemAccessLimits impl;
} QsMemOps;

/* IOMMU permissions, also used as the access type asked for in translate. */
typedef enum QsIommuPerm {
    QS_IOMMU_NONE = 0,
    QS_IOMMU_RO = 1,
    QS_IOMMU_WO = 2,
    QS_IOMMU_RW = 3,
} QsIommuPerm;

/* One translation: input addresses iova..iova|addr_mask map to translated_addr..
 * translated_addr|addr_mask in target_as with permission perm.  addr_mask is 2^n-1
 * (n >= 12 for pages; 0 means a single byte).  perm NONE means "not mapped". */
typedef struct QsIommuTlbEntry {
    QsAddressSpace *target_as;
    uint64_t iova;
    uint64_t translated_addr;
    uint64_t addr_mask;
    QsIommuPerm perm;
} QsIommuTlbEntry;

typedef struct QsIommuOps {
    /* addr: offset in the IOMMU region; flag: the access wanted (RO for a read, WO for
     * a write); attrs: who asks (requester id).  Must fill every field of *out; is
     * called without locks held and may be called from several threads at once. */
    void (*translate)(void *opaque, uint64_t addr, QsIommuPerm flag, QsMemTxAttrs attrs,
                      QsIommuTlbEntry *out);
} QsIommuOps;

/* Invalidation notifiers: called with the unmapped (or newly mapped) range when the
 * IOMMU implementation calls qs_iommu_notify; range [start, last] filters them. */
typedef enum QsIommuNotifyFlags {
    QS_IOMMU_NOTIFY_UNMAP = 1,
    QS_IOMMU_NOTIFY_MAP = 2,
} QsIommuNotifyFlags;

typedef struct QsIommuNotifier QsIommuNotifier;
typedef void (*QsIommuNotifyFn)(void *opaque, const QsIommuTlbEntry *entry,
                                QsIommuNotifyFlags event);

/* ---- regions ---- */

/* Sizes are in bytes; UINT64_MAX stands for "the whole 64-bit space".  A new region
 * has one reference, owned by the caller; a parent holds its own reference. */
QsMemoryRegion *qs_memory_region_new_container(const char *name, uint64_t size);
/* RAM backed by a memfd (shareable with another process for migration); zeroed. */
QsMemoryRegion *qs_memory_region_new_ram(const char *name, uint64_t size, GError **errp);
QsMemoryRegion *qs_memory_region_new_io(const char *name, uint64_t size,
                                        const QsMemOps *ops, void *opaque);
/* A window of size bytes onto orig starting at orig's offset. */
QsMemoryRegion *qs_memory_region_new_alias(const char *name, QsMemoryRegion *orig,
                                           uint64_t offset, uint64_t size);
QsMemoryRegion *qs_memory_region_new_iommu(const char *name, uint64_t size,
                                           const QsIommuOps *ops, void *opaque);
QsMemoryRegion *qs_memory_region_ref(QsMemoryRegion *mr);
void qs_memory_region_unref(QsMemoryRegion *mr);

/* Map child into parent (a container) at offset.  Higher priority wins where siblings
 * overlap; at equal priority the later-added one wins.  A region has one parent. */
bool qs_memory_region_add_subregion(QsMemoryRegion *parent, uint64_t offset,
                                    QsMemoryRegion *child, int priority, GError **errp);
void qs_memory_region_del_subregion(QsMemoryRegion *parent, QsMemoryRegion *child);
/* Move a mapped region (a PCI BAR being reprogrammed) and enable/disable it. */
void qs_memory_region_set_address(QsMemoryRegion *mr, uint64_t offset);
void qs_memory_region_set_enabled(QsMemoryRegion *mr, bool enabled);
bool qs_memory_region_is_mapped(const QsMemoryRegion *mr);
uint64_t qs_memory_region_address(const QsMemoryRegion *mr);  /* offset in its parent */

const char *qs_memory_region_name(const QsMemoryRegion *mr);
uint64_t qs_memory_region_size(const QsMemoryRegion *mr);
/* RAM only: host pointer to the first byte, and the memfd (owned by the region). */
void *qs_memory_region_get_ram_ptr(const QsMemoryRegion *mr);
int qs_memory_region_get_fd(const QsMemoryRegion *mr);

/* IOMMU only: notifiers and the call an IOMMU implementation makes on (un)mapping. */
QsIommuNotifier *qs_iommu_notifier_register(QsMemoryRegion *iommu, uint64_t start,
                                            uint64_t last, QsIommuNotifyFlags flags,
                                            QsIommuNotifyFn fn, void *opaque);
void qs_iommu_notifier_unregister(QsMemoryRegion *iommu, QsIommuNotifier *n);
void qs_iommu_notify(QsMemoryRegion *iommu, const QsIommuTlbEntry *entry,
                     QsIommuNotifyFlags event);

/* ---- address spaces ---- */

QsAddressSpace *qs_address_space_new(const char *name, QsMemoryRegion *root);
void qs_address_space_free(QsAddressSpace *as);
const char *qs_address_space_name(const QsAddressSpace *as);
QsMemoryRegion *qs_address_space_root(const QsAddressSpace *as);

/* "system memory": what the CPU and qtest see; created on first use. */
QsAddressSpace *qs_address_space_memory(void);
QsMemoryRegion *qs_memory_system_root(void);

/* Byte-oriented access.  On error the whole access is still attempted piecewise (what
 * is mapped is done, unmapped reads give zeroes) and the worst result is returned. */
QsMemTxResult qs_address_space_read(QsAddressSpace *as, uint64_t addr, QsMemTxAttrs attrs,
                                    void *buf, uint64_t len);
QsMemTxResult qs_address_space_write(QsAddressSpace *as, uint64_t addr, QsMemTxAttrs attrs,
                                     const void *buf, uint64_t len);
/* One access of size 1, 2, 4 or 8 bytes, value little-endian (the guest's order). */
QsMemTxResult qs_address_space_load(QsAddressSpace *as, uint64_t addr, unsigned size,
                                    uint64_t *val, QsMemTxAttrs attrs);
QsMemTxResult qs_address_space_store(QsAddressSpace *as, uint64_t addr, unsigned size,
                                     uint64_t val, QsMemTxAttrs attrs);

/* If [addr, addr+*len) starts in RAM (after IOMMU translation, with permission for the
 * access), return the host pointer and shorten *len to what is contiguous; else NULL.
 * Valid until the topology changes (see qs_memory_topology_generation). */
void *qs_address_space_map_ram(QsAddressSpace *as, uint64_t addr, uint64_t *len,
                               bool is_write, QsMemTxAttrs attrs);
/* Bumped on every topology change: a cache of map_ram results is stale when it moves. */
uint64_t qs_memory_topology_generation(void);

/* DMA: as qs_address_space_read/write for bus masters: translation goes page by page
 * through any IOMMU on the way, and the transfer stops at the first page that is
 * unmapped or denied (pages before it are done) and returns that error. */
QsMemTxResult qs_dma_read(QsAddressSpace *as, uint64_t addr, void *buf, uint64_t len,
                          QsMemTxAttrs attrs);
QsMemTxResult qs_dma_write(QsAddressSpace *as, uint64_t addr, const void *buf,
                           uint64_t len, QsMemTxAttrs attrs);

/* The big device lock (recursive): MMIO callbacks run under it; timers and other
 * threads touching device state take it too. */
void qs_bql_lock(void);
void qs_bql_unlock(void);

/* Human-readable dump of an address space's flat map ("info mtree -f" style). */
void qs_address_space_dump(QsAddressSpace *as, GString *out);

#endif
