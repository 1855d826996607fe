/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the memory API's files share: the region and address-space structures and the
 * flat views that dispatch reads (a snapshot, refcounted, swapped on topology change). */
#ifndef QS_MEMORY_INTERNAL_H
#define QS_MEMORY_INTERNAL_H

#include <inttypes.h>
#include <gio/gio.h>
#include "qs/memory.h"

typedef enum MrKind { MR_CONTAINER, MR_RAM, MR_IO, MR_ALIAS, MR_IOMMU } MrKind;

struct QsMemoryRegion {
    gint ref;
    MrKind kind;
    char *name;
    uint64_t size;
    /* where it is mapped (under the topology lock) */
    QsMemoryRegion *parent;
    uint64_t addr;
    int priority;
    unsigned seq;
    bool enabled;
    GPtrArray *children;          /* container: sorted by priority, newest first */
    /* RAM */
    void *host;
    int fd;
    /* MMIO (opaque is also the IOMMU's) */
    const QsMemOps *ops;
    void *opaque;
    unsigned valid_min, valid_max, impl_min, impl_max;
    /* alias */
    QsMemoryRegion *orig;
    uint64_t alias_offset;
    /* IOMMU */
    const QsIommuOps *iommu_ops;
    GList *notifiers;             /* QsIommuNotifier *, under the notifier lock */
};

typedef struct FlatRange {
    uint64_t start, last;         /* inclusive */
    QsMemoryRegion *mr;
    uint64_t offset;              /* offset in mr of start */
} FlatRange;

typedef struct FlatView {
    gint ref;
    guint n;
    FlatRange *r;                 /* sorted, non-overlapping */
} FlatView;

struct QsAddressSpace {
    char *name;
    QsMemoryRegion *root;
    GRWLock lock;                 /* guards the fv pointer only */
    FlatView *fv;
};

FlatView *flatview_get(QsAddressSpace *as);
void flatview_unref(FlatView *fv);
/* The range holding addr, or NULL with *next = the start of the next range (0: none). */
const FlatRange *flatview_lookup(const FlatView *fv, uint64_t addr, uint64_t *next);

#endif
