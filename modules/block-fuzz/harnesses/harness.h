/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The shared image harness: every per-format fuzz target hands its input to
 * bf_run_image, which drives probe, open, info, block status, reads, check and writes. */
#ifndef BF_HARNESS_H
#define BF_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* Work bounds per input, so that one execution stays in the sub-millisecond range. */
#define BF_MAX_INPUT        (4u << 20)        /* larger inputs are ignored (vhdx needs 3 MiB) */
#define BF_MAX_STATUS_CALLS 512               /* block status calls over the disk */
#define BF_READ_POINTS      16                /* evenly spread reads across the disk */
#define BF_MAX_READ         (64u << 10)       /* bytes per read */
#define BF_MAX_FILE_GROWTH  (64ull << 20)     /* RLIMIT_FSIZE: writes cannot grow past */

/* Called once before the first input (the AFL driver calls it before the fork server
 * starts); idempotent. */
void bf_init(void);

/* Run one input as an image of format fmt (NULL: probe, as qemu-img does without -f).
 * Always returns 0; a bug aborts (sanitizer report, g_critical, or a broken invariant). */
int bf_run_image(const uint8_t *data, size_t size, const char *fmt);

#endif
