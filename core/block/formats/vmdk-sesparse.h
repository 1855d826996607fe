/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VMware ESXi seSparse ("space-efficient sparse") vmdk extents, read-only: the extent
 * file is opened as a block node the vmdk driver reads like a flat extent. */
#ifndef QS_BLOCK_VMDK_SESPARSE_H
#define QS_BLOCK_VMDK_SESPARSE_H

#include "formats.h"

/* Open the seSparse extent file `filename` of `sectors` sectors (as the descriptor says)
 * placed at sector `start` of the vmdk `disk`.  The node reads the extent's data; grains
 * the extent does not hold come from disk's backing (at the same disk offset), or are
 * zeros without one.  Every header field is validated; rdwr is refused (there is no
 * write support, as in QEMU).  Close it with qs_block_close. */
QsBlock *vmdk_sesparse_open(const char *filename, QsBlock *disk, uint64_t start,
                            uint64_t sectors, bool rdwr, GError **errp);

/* Block status of extent byte off of the node, as QEMU's vmdk answers for seSparse: 0
 * for a grain not allocated (the disk's parent or zeros), ZERO for zero and unmapped
 * grains, DATA|OFFSET_VALID with *map the grain's offset in the extent file (*file). */
int vmdk_sesparse_status(QsBlock *node, uint64_t off, uint64_t len, uint64_t *pnum,
                         uint64_t *map, QsBlock **file);

#endif
