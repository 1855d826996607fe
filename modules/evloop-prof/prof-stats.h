/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Per-source and per-loop event-loop statistics: lock-free updates from the dispatching
 * threads (per-thread tables, single writer each), locked snapshots to JSON. */
#ifndef PROF_STATS_H
#define PROF_STATS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "prof-clock.h"

/* Latency histogram: bucket 0 holds [0, 2) ns, bucket i >= 1 holds [2^i, 2^(i+1)) ns,
 * the last bucket everything from 2^(PROF_HIST_BUCKETS-1) ns (~275 s) up. */
#define PROF_HIST_BUCKETS 39

static inline unsigned prof_hist_bucket(uint64_t ns)
{
    unsigned b = ns > 1 ? 63u - (unsigned)__builtin_clzll(ns) : 0u;
    return b < PROF_HIST_BUCKETS ? b : PROF_HIST_BUCKETS - 1;
}

/* Upper bound (exclusive) of a bucket in ns, UINT64_MAX for the last one. */
uint64_t prof_hist_bucket_limit(unsigned bucket);

/* The value below which `pct` percent (0..100) of the samples fall, estimated as the
 * upper bound of the bucket holding that rank (an upper estimate within a factor 2);
 * 0 for an empty histogram. */
uint64_t prof_hist_percentile(const uint64_t *hist, double pct);

typedef struct ProfStats ProfStats;

/* How the statistics learn a loop's name when a thread dispatches for a loop they have
 * not been told about (called on that slow path only, under the stats lock). */
typedef void (*ProfDescribeLoop)(const void *loop, char **name, bool *is_main, int *tid);

/*
 * Timing.  Every dispatch is counted; its duration is measured (two clock reads) for
 * the first dispatch of each source, then one in `sample` (a power of two; 1: all;
 * every dispatch the hooks see after prof_stats_use_core, while polls stay sampled) --
 * and always for a source whose timed dispatches take `always_ns` or more on average,
 * and for any dispatch a reader saw still running.  So slow sources are timed exactly and the
 * clock's cost is spread thin over cheap ones; totals are counts x mean of the timed.
 * Likewise one poll in `sample` is timed.  The clock (borrowed) gives ticks; every
 * `now` below is in ticks.
 */
ProfStats *prof_stats_new(const ProfClock *clk, unsigned sample, uint64_t always_ns,
                          ProfDescribeLoop describe);
/* No thread may be inside a hook any more. */
void prof_stats_free(ProfStats *st);

/* Loop life cycle: loops are listed in the order they were added.  tid may be 0
 * (unknown): the thread seen running the loop's poll is reported then. */
void prof_stats_loop_add(ProfStats *st, const void *loop, const char *name, bool is_main,
                         int tid);
void prof_stats_loop_remove(ProfStats *st, const void *loop);

/* The hooks, called by the thread running the loop; lock-free after the first call
 * from a thread for a loop.  name and kind are read only on a source's first dispatch
 * (kind must be a string that lives forever, e.g. "timer"). */
void prof_stats_poll_begin(ProfStats *st, const void *loop);
void prof_stats_poll_end(ProfStats *st, const void *loop);
void prof_stats_dispatch_begin(ProfStats *st, const void *loop, uint64_t id,
                               const char *name, const char *kind);
/* Returns whether the source is slow (its timed dispatches average always_ns or more:
 * every one of its dispatches should be timed). */
bool prof_stats_dispatch_end(ProfStats *st, const void *loop);

/*
 * Sampling by the core (the event loop's samplers): the core counts every dispatch and
 * calls dispatch_begin/end only on the ones it samples, so every dispatch the hooks see
 * is timed, and these report the rest:
 * - dispatch_count: n dispatches of a source the hooks did not see (counted, not timed);
 * - dispatch_long: a dispatch the hooks did not see, that a reader saw running and asked
 *   the core to watch (ops->watch with cookie = the start in ticks), has ended (the
 *   source is found by id in the calling thread's cache: every source's first
 *   dispatch is seen by the hooks; dropped if evicted).
 * What is running now then comes from the core (ops->current: the loop's published
 * dispatch sequence number and source id) when no dispatch we timed is running.  The
 * loop pointers are the ones the hooks pass.  Call before the first hook.
 */
typedef struct ProfCoreOps {
    bool (*current)(const void *loop, uint64_t *seq, uint64_t *source_id);
    void (*watch)(const void *loop, uint64_t seq, uint64_t source_id, uint64_t cookie);
    /* every loop reports its counts not reported yet, and the call returns once they
     * have or after timeout_ms (a stuck loop): prof_stats_snapshot and prof_stats_reset
     * call it first, without the lock, so a snapshot shows every dispatch that ended
     * before it, and dispatches from before a reset are not counted after it */
    void (*flush_all_wait)(int timeout_ms);
    /* after a reset: every source's next dispatch is one the hooks see (timed) */
    void (*restart)(void *opaque);
    void *opaque;
} ProfCoreOps;
void prof_stats_use_core(ProfStats *st, const ProfCoreOps *ops);
void prof_stats_dispatch_count(ProfStats *st, const void *loop, uint64_t id,
                               const char *name, const char *kind, uint64_t n);
void prof_stats_dispatch_long(ProfStats *st, const void *loop, uint64_t id, uint64_t start);

/* Zero every counter (each thread drops its counts at its next hook call; snapshots
 * show zeros for it until then). */
void prof_stats_reset(ProfStats *st, uint64_t now);

/* Append the snapshot object (format in README.md) to out.  A dispatch running for at
 * least stuck_ticks marks its loop stuck. */
void prof_stats_snapshot(ProfStats *st, uint64_t now, uint64_t stuck_ticks, GString *out);

/* Call fn for every loop whose current dispatch has run for at least stuck_ticks;
 * first is true the first time that dispatch is reported. */
typedef void (*ProfStuckFn)(const char *loop, const char *source, const char *kind,
                            uint64_t running_ns, bool first, void *opaque);
void prof_stats_stuck_foreach(ProfStats *st, uint64_t now, uint64_t stuck_ticks,
                              ProfStuckFn fn, void *opaque);

/* Append s as a JSON string (quoted, escaped, invalid UTF-8 replaced by U+FFFD). */
void prof_json_string(GString *out, const char *s);

#endif
