/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The shared image harness: every per-format fuzz target hands its input to
 * bf_run_image, which drives probe, open, info, block status, reads, check and writes. */
#ifndef BF_HARNESS_H
#define BF_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* Work bounds per input, so that one execution stays in the sub-millisecond range. */
#define BF_MAX_INPUT        (8u << 20)        /* larger images are ignored (vhdx: 4 MiB
                                               * of regions, then payload blocks) */
#define BF_MAX_STATUS_CALLS 512               /* block status calls over the disk */
#define BF_READ_POINTS      16                /* evenly spread reads across the disk */
#define BF_MAX_READ         (64u << 10)       /* bytes per read */
#define BF_MAX_FILE_GROWTH  (64ull << 20)     /* RLIMIT_FSIZE: writes cannot grow past */
#define BF_PROBE_BYTES      2048              /* what qs_block_probe gives the probes */
#define BF_WRITE_EVERY      4                 /* engines: write phase on 1 input in 4 */
#define BF_FORMAT_MESSAGES  64                /* check messages formatted per input */
#define BF_INFO_SNAPSHOTS   64                /* snapshots info puts into its JSON */

/* Called once before the first input (the AFL driver calls it before the fork server
 * starts); idempotent. */
void bf_init(void);

/* Run one input as an image of format fmt (NULL: probe, as qemu-img does without -f).
 * Always returns 0; a bug aborts (sanitizer report, g_critical, or a broken invariant). */
int bf_run_image(const uint8_t *data, size_t size, const char *fmt);

/* The same for a packed input (packed.h): unpacks it, then bf_run_image. */
int bf_run_packed(const uint8_t *data, size_t size, const char *fmt);

/* Run the write phase (writes, `check -r all`, reopen) on the inputs whose hash is 0
 * modulo n: 1 runs it on every input (replay, CI), the engines default to
 * BF_WRITE_EVERY, so that the read-only phases get most of the executions.  The choice
 * depends only on the input, so a finding always reproduces. */
void bf_set_write_every(unsigned n);

#endif
