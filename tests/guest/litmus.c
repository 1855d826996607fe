/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Litmus tests on 2 harts: MP, SB and LB, each without and with fences, RUNS times each
 * (the harts meet before every run); prints outcome histograms and fails if an outcome
 * the memory model forbids shows up (RVWMO; with -DTSO also what Ztso forbids). */
#include "guest.h"

#define RUNS 1000
#define NTESTS 6

/* The two outcomes of a run: r0 is what hart 0 loaded, r1 what hart 1 loaded. */
static volatile u64 xs[NTESTS][RUNS], ys[NTESTS][RUNS];
static volatile u64 r0s[NTESTS][RUNS], r1s[NTESTS][RUNS];
static volatile u32 meet[NTESTS][RUNS];
static volatile u64 finished;

enum { MP, MP_F, SB, SB_F, LB, LB_F };
static const char *const names[NTESTS] = { "MP", "MP+fences", "SB", "SB+fences", "LB",
                                           "LB+fences" };
/* The outcome of a run is (r0, r1), encoded r0 * 2 + r1; forbidden ones per test (-1:
 * none).  Hart 0 loads r0 and hart 1 loads r1, except in MP where hart 1 loads both:
 *   MP: h0: x=1; [fence w,w]; y=1       h1: r0=y; [fence r,r]; r1=x
 *       (1, 0) forbidden with fences, and under TSO without
 *   SB: h0: x=1; [fence rw,rw]; r0=y    h1: y=1; [fence rw,rw]; r1=x
 *       (0, 0) forbidden with fences only (TSO allows store buffering)
 *   LB: h0: r0=x; [fence r,w]; y=1      h1: r1=y; [fence r,w]; x=1
 *       (1, 1) forbidden with fences, and under TSO without */
static const int forbidden_rvwmo[NTESTS] = { -1, 2, -1, 0, -1, 3 };
static const int forbidden_tso[NTESTS] = { 2, 2, -1, 0, 3, 3 };

#define ONE 1ul

static void run(int test, int i, u64 hart)
{
    volatile u64 *x = &xs[test][i], *y = &ys[test][i];
    u64 a = 0, b = 0;
    /* meet: both harts start the run together */
    __atomic_fetch_add(&meet[test][i], 1, __ATOMIC_SEQ_CST);
    while (meet[test][i] < 2) {
    }
    switch (test * 2 + (int)hart) {
    case MP * 2 + 0:
        __asm__ volatile("sd %1, 0(%0); sd %1, 0(%2)" :: "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case MP * 2 + 1:
        __asm__ volatile("ld %0, 0(%2); ld %1, 0(%3)" : "=&r"(a), "=&r"(b) : "r"(y), "r"(x) : "memory");
        break;
    case MP_F * 2 + 0:
        __asm__ volatile("sd %1, 0(%0); fence w, w; sd %1, 0(%2)" :: "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case MP_F * 2 + 1:
        __asm__ volatile("ld %0, 0(%2); fence r, r; ld %1, 0(%3)" : "=&r"(a), "=&r"(b) : "r"(y), "r"(x) : "memory");
        break;
    case SB * 2 + 0:
        __asm__ volatile("sd %2, 0(%1); ld %0, 0(%3)" : "=&r"(a) : "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case SB * 2 + 1:
        __asm__ volatile("sd %2, 0(%1); ld %0, 0(%3)" : "=&r"(a) : "r"(y), "r"(ONE), "r"(x) : "memory");
        break;
    case SB_F * 2 + 0:
        __asm__ volatile("sd %2, 0(%1); fence rw, rw; ld %0, 0(%3)" : "=&r"(a) : "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case SB_F * 2 + 1:
        __asm__ volatile("sd %2, 0(%1); fence rw, rw; ld %0, 0(%3)" : "=&r"(a) : "r"(y), "r"(ONE), "r"(x) : "memory");
        break;
    case LB * 2 + 0:
        __asm__ volatile("ld %0, 0(%1); sd %2, 0(%3)" : "=&r"(a) : "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case LB * 2 + 1:
        __asm__ volatile("ld %0, 0(%1); sd %2, 0(%3)" : "=&r"(a) : "r"(y), "r"(ONE), "r"(x) : "memory");
        break;
    case LB_F * 2 + 0:
        __asm__ volatile("ld %0, 0(%1); fence r, w; sd %2, 0(%3)" : "=&r"(a) : "r"(x), "r"(ONE), "r"(y) : "memory");
        break;
    case LB_F * 2 + 1:
        __asm__ volatile("ld %0, 0(%1); fence r, w; sd %2, 0(%3)" : "=&r"(a) : "r"(y), "r"(ONE), "r"(x) : "memory");
        break;
    }
    /* MP: both values come from hart 1 (y seen, x seen); the others: one per hart */
    if (test == MP || test == MP_F) {
        if (hart) { r0s[test][i] = a; r1s[test][i] = b; }
    } else if (hart) {
        r1s[test][i] = a;
    } else {
        r0s[test][i] = a;
    }
}

int main(u64 hart)
{
    if (hart > 1) return 0;   /* spare harts idle */
    for (int t = 0; t < NTESTS; t++)
        for (int i = 0; i < RUNS; i++) run(t, i, hart);
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    if (hart) return 0;
    while (finished < 2) {
    }
#ifdef TSO
    const int *forbidden = forbidden_tso;
    const char *model = "Ztso";
#else
    const int *forbidden = forbidden_rvwmo;
    const char *model = "RVWMO";
#endif
    for (int t = 0; t < NTESTS; t++) {
        u32 hist[4] = { 0, 0, 0, 0 };
        for (int i = 0; i < RUNS; i++) {
            u64 r0 = r0s[t][i], r1 = r1s[t][i];
            if (r0 > 1 || r1 > 1) {
                printf_("FAIL %s run %d: loaded %lu, %lu (only 0 or 1 were stored)\n",
                        names[t], i, r0, r1);
                fails++;
                continue;
            }
            hist[r0 * 2 + r1]++;
        }
        /* the histogram varies from run to run: lines starting "hist " are not compared */
        printf_("hist %s: 0,0=%u 0,1=%u 1,0=%u 1,1=%u\n", names[t], hist[0], hist[1], hist[2],
                hist[3]);
        int f = forbidden[t];
        if (f < 0) {
            printf_("%s: %d runs, nothing forbidden under %s\n", names[t], RUNS, model);
        } else if (hist[f]) {
            printf_("FAIL %s: forbidden outcome %d,%d seen %u times under %s\n", names[t],
                    f >> 1, f & 1, hist[f], model);
            fails++;
        } else {
            printf_("%s: %d runs, forbidden outcome %d,%d never seen under %s\n", names[t],
                    RUNS, f >> 1, f & 1, model);
        }
    }
    return fails ? 1 : 0;
}
