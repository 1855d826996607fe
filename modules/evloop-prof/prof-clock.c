/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Chooses the profiler's tick source and calibrates TSC cycles against CLOCK_MONOTONIC
 * (a 2 ms measurement, done once when the module loads). */
#include <stdio.h>
#include <string.h>
#include "prof-clock.h"

/* The TSC is usable as a clock when it runs at a constant rate in every C-state and the
 * kernel itself uses it as its clocksource (so it is synchronised across CPUs). */
static bool tsc_usable(void)
{
#if defined(__x86_64__) || defined(__i386__)
    bool flags_ok = false, source_ok = false;
    char line[8192];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "flags", 5)) {
                flags_ok = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
                break;
            }
        }
        fclose(f);
    }
    f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        source_ok = fgets(line, sizeof(line), f) && !strncmp(line, "tsc", 3);
        fclose(f);
    }
    return flags_ok && source_ok;
#else
    return false;
#endif
}

static void pair_sample(uint64_t *ns, uint64_t *ticks)
{
    ProfClock probe = { .tsc = true };
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 16; i++) {
        uint64_t a = prof_ticks(&probe);
        uint64_t n = prof_mono_ns();
        uint64_t b = prof_ticks(&probe);
        if (b - a < best) {
            best = b - a;
            *ns = n;
            *ticks = a + (b - a) / 2;
        }
    }
}

bool prof_clock_init(ProfClock *c, const char *want)
{
    bool tsc = false;
    if (!want || !strcmp(want, "auto")) tsc = tsc_usable();
    else if (!strcmp(want, "tsc")) {
        if (!tsc_usable()) return false;
        tsc = true;
    } else if (strcmp(want, "monotonic")) {
        return false;
    }
    if (!tsc) {
        c->tsc = false;
        c->mult = 1ull << 32;
        return true;
    }
    /* Pair each CLOCK_MONOTONIC reading with the TSC read closest around it (the
     * tightest of a few tries), at both ends of a 2 ms span: about 10 ppm. */
    uint64_t n0, t0, n1, t1;
    pair_sample(&n0, &t0);
    struct timespec nap = { 0, 2000000 };
    while (nanosleep(&nap, &nap) != 0) { }
    pair_sample(&n1, &t1);
    if (t1 <= t0) {   /* a TSC that does not move is no clock */
        c->tsc = false;
        c->mult = 1ull << 32;
        return want == NULL || strcmp(want, "tsc") != 0;
    }
    c->tsc = true;
    c->mult = (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
    return true;
}
