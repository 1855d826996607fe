/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Multi-hart atomicity on NHARTS harts (built for 2 to 8): counters under amoadd.d/.w and
 * LR/SC loops, AMO and LR/SC spinlocks guarding a two-word update, and message passing
 * around a ring of harts through bounded queues with fences; hart 0 checks exact totals. */
#include "guest.h"

#ifndef NHARTS
#define NHARTS 4
#endif
#define ITERS (16000 / NHARTS)    /* per hart: every counter ends at about 16000 */
#define MSGS 1000                 /* messages each hart sends to the next one */
#define QCAP 64                   /* queue slots (a power of two) */

static volatile u64 c_amo, c_lrsc, arrived, done;
static volatile u32 c_amow;
static volatile int amo_lock, lrsc_lock;
static volatile u64 amo_a, amo_b, lrsc_a, lrsc_b, torn;

/* One single-producer single-consumer queue per receiving hart; head and tail only grow. */
static struct queue {
    volatile u64 head __attribute__((aligned(64)));   /* written by the receiver */
    volatile u64 tail __attribute__((aligned(64)));   /* written by the sender */
    volatile u64 slot[QCAP];
} queues[NHARTS];
static volatile u64 received[NHARTS], bad_msgs[NHARTS];

static void lrsc_inc(volatile u64 *p)
{
    u64 v, fail;
    do {
        __asm__ volatile("lr.d %0, (%2); addi %0, %0, 1; sc.d %1, %0, (%2)"
                         : "=&r"(v), "=&r"(fail) : "r"(p) : "memory");
    } while (fail);
}

/* A spinlock built from lr.w.aq / sc.w (the AMO one is lock() in lib.c). */
static void lrsc_lock_take(volatile int *l)
{
    u64 v, fail;
    for (;;) {
        __asm__ volatile("lr.w.aq %0, (%1)" : "=&r"(v) : "r"(l) : "memory");
        if (v) continue;
        __asm__ volatile("sc.w %0, %2, (%1)" : "=&r"(fail) : "r"(l), "r"(1ul) : "memory");
        if (!fail) return;
    }
}

static void lrsc_lock_give(volatile int *l)
{
    __asm__ volatile("fence rw, w; sw zero, 0(%0)" :: "r"(l) : "memory");
}

static void send(struct queue *q, u64 v)
{
    u64 t = q->tail;
    while (t - q->head >= QCAP) {
    }
    __asm__ volatile("fence r, w" ::: "memory");      /* saw the slot free, then reuse it */
    q->slot[t % QCAP] = v;
    __asm__ volatile("fence w, w" ::: "memory");      /* data before the new tail */
    q->tail = t + 1;
}

/* Take every message available; each must be the next one of the sender. */
static void drain(u64 hart, u64 *expect)
{
    struct queue *q = &queues[hart];
    u64 from = (hart + NHARTS - 1) % NHARTS;
    u64 h = q->head, t = q->tail;
    __asm__ volatile("fence r, r" ::: "memory");      /* tail before the data */
    for (; h != t; h++) {
        u64 v = q->slot[h % QCAP];
        if (v != (from << 32 | *expect)) bad_msgs[hart]++;
        ++*expect;
        received[hart]++;
    }
    __asm__ volatile("fence r, w" ::: "memory");      /* data read before freeing slots */
    q->head = h;
}

int main(u64 hart)
{
    __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
    while (arrived < NHARTS) {
    }
    for (int i = 0; i < ITERS; i++) {
        __atomic_fetch_add(&c_amo, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c_amow, 1, __ATOMIC_RELAXED);
        lrsc_inc(&c_lrsc);
        lock(&amo_lock);
        u64 a = amo_a;
        if (a != amo_b) torn++;
        amo_a = a + 1;
        amo_b = a + 1;
        unlock(&amo_lock);
        lrsc_lock_take(&lrsc_lock);
        a = lrsc_a;
        if (a != lrsc_b) torn++;
        lrsc_a = a + 1;
        lrsc_b = a + 1;
        lrsc_lock_give(&lrsc_lock);
    }
    /* message passing around the ring: send to hart+1, receive from hart-1 */
    struct queue *out = &queues[(hart + 1) % NHARTS];
    u64 sent = 0, expect = 0;
    while (sent < MSGS || expect < MSGS) {
        for (int k = 0; k < QCAP / 2 && sent < MSGS; k++) {
            if (out->tail - out->head >= QCAP) break;
            send(out, hart << 32 | sent++);
        }
        drain(hart, &expect);
    }
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    if (hart != 0) return 0;
    while (done < NHARTS) {
    }
    u64 total = (u64)NHARTS * ITERS;
    CHECK("amoadd.d total", c_amo, total);
    CHECK("amoadd.w total", c_amow, (u32)total);
    CHECK("lr/sc total", c_lrsc, total);
    CHECK("amo spinlock total", amo_a, total);
    CHECK("lr/sc spinlock total", lrsc_a, total);
    CHECK("torn updates seen in a critical section", torn, 0);
    for (int h = 0; h < NHARTS; h++) {
        CHECK("messages received", received[h], MSGS);
        CHECK("messages out of order or corrupt", bad_msgs[h], 0);
    }
    printf_("smp: %d harts x %d: amo %lu amo.w %u lrsc %lu amo-lock %lu lrsc-lock %lu, "
            "%d messages per hart: %s\n", NHARTS, ITERS, c_amo, c_amow, c_lrsc, amo_a,
            lrsc_a, MSGS, fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
