/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Multi-hart atomicity: NHARTS harts each add ITERS times to counters with amoadd, with
 * an LR/SC loop, and under an AMO spinlock; message passing with fences; hart 0 checks
 * the exact totals. */
#include "guest.h"

#ifndef NHARTS
#define NHARTS 4
#endif
#define ITERS 20000

static volatile u64 c_amo, c_lrsc, c_lock, arrived, done;
static volatile int the_lock;
static volatile u64 mp_data[NHARTS], mp_flag[NHARTS];

static void lrsc_inc(volatile u64 *p)
{
    u64 v, fail;
    do {
        __asm__ volatile("lr.d %0, (%2); addi %0, %0, 1; sc.d %1, %0, (%2)"
                         : "=&r"(v), "=&r"(fail) : "r"(p) : "memory");
    } while (fail);
}

int main(u64 hart)
{
    __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
    while (arrived < NHARTS) {
    }
    for (int i = 0; i < ITERS; i++) {
        __atomic_fetch_add(&c_amo, 1, __ATOMIC_RELAXED);
        lrsc_inc(&c_lrsc);
        lock(&the_lock);
        c_lock = c_lock + 1;
        unlock(&the_lock);
    }
    /* message passing: data then flag, with fences */
    mp_data[hart] = 1000 + hart;
    __asm__ volatile("fence w, w" ::: "memory");
    mp_flag[hart] = 1;
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    if (hart != 0) return 0;
    while (done < NHARTS) {
    }
    for (int h = 0; h < NHARTS; h++) {
        while (!mp_flag[h]) {
        }
        __asm__ volatile("fence r, r" ::: "memory");
        CHECK("mp data", mp_data[h], 1000 + h);
    }
    CHECK("amoadd total", c_amo, (u64)NHARTS * ITERS);
    CHECK("lr/sc total", c_lrsc, (u64)NHARTS * ITERS);
    CHECK("spinlock total", c_lock, (u64)NHARTS * ITERS);
    printf_("smp: %d harts x %d: amo %lu lrsc %lu lock %lu: %s\n", NHARTS, ITERS, c_amo,
            c_lrsc, c_lock, fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
