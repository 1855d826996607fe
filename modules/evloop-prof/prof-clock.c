/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Chooses the profiler's tick source and calibrates TSC cycles against CLOCK_MONOTONIC
 * (a 5 ms measurement, done once when the module loads). */
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

bool prof_clock_init(ProfClock *c, const char *want)
{
    bool tsc = false;
    if (!want || !strcmp(want, "auto")) tsc = tsc_usable();
    else if (!strcmp(want, "tsc")) {
        if (!tsc_usable()) return false;
        tsc = true;
    }
    if (!tsc) {
        c->tsc = false;
        c->mult = 1ull << 32;
        return true;
    }
    ProfClock probe = { .tsc = true };
    uint64_t n0 = prof_mono_ns(), t0 = prof_ticks(&probe), n1, t1;
    do {
        n1 = prof_mono_ns();
        t1 = prof_ticks(&probe);
    } while (n1 - n0 < 5000000);
    if (t1 <= t0) {   /* a TSC that does not move is no clock */
        c->tsc = false;
        c->mult = 1ull << 32;
        return want == NULL || strcmp(want, "tsc") != 0;
    }
    c->tsc = true;
    c->mult = (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
    return true;
}
