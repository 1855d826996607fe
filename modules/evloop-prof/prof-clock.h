/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The profiler's tick clock: the CPU's invariant TSC when the kernel says it is usable,
 * else CLOCK_MONOTONIC; ticks are converted to nanoseconds only off the hot path. */
#ifndef PROF_CLOCK_H
#define PROF_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

typedef struct ProfClock {
    bool tsc;            /* ticks are TSC cycles (else they are CLOCK_MONOTONIC ns) */
    uint64_t mult;       /* ns = ticks * mult >> 32 */
    const uint64_t *fake;  /* unit tests: ticks are read from here */
} ProfClock;

/* Pick and calibrate the clock.  want: "auto", "tsc" or "monotonic".  Returns false
 * (and leaves *c unchanged) if "tsc" is asked for but not usable on this host. */
bool prof_clock_init(ProfClock *c, const char *want);

static inline uint64_t prof_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t prof_ticks(const ProfClock *c)
{
    if (__builtin_expect(c->fake != NULL, 0)) return *c->fake;
#if defined(__x86_64__) || defined(__i386__)
    if (c->tsc) return __builtin_ia32_rdtsc();
#endif
    return prof_mono_ns();
}

static inline uint64_t prof_ticks_to_ns(uint64_t mult, uint64_t ticks)
{
    return (uint64_t)(((unsigned __int128)ticks * mult) >> 32);
}

#endif
