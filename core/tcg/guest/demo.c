/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The built-in default payload: every hart checks in, they share the work of counting
 * primes through an AMO work queue, hart 0 prints who did what and powers off. */
#include "guest.h"

#define LIMIT 200000u
#define CHUNK 5000u

static volatile int checked_in, finished;
static volatile u32 next_chunk;
static volatile u64 total;
static u32 chunks_of[8];

static int is_prime(u32 n)
{
    if (n < 2) return 0;
    for (u32 d = 2; d * d <= n; d++)
        if (n % d == 0) return 0;
    return 1;
}

int main(u64 hart)
{
    __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
    if (hart == 0) {
        /* give the other harts 20 ms (of mtime at 10 MHz) to check in */
        u64 until = *CLINT_MTIME + 200000;
        while (*CLINT_MTIME < until) {
        }
        lock(&print_lock);
        printf_("qemu-slim demo: %d hart(s) running, counting primes below %u\n",
                checked_in, LIMIT);
        unlock(&print_lock);
    }
    u32 mine = 0;
    for (;;) {
        u32 c = __atomic_fetch_add(&next_chunk, 1, __ATOMIC_SEQ_CST);
        if (c * CHUNK >= LIMIT) break;
        u64 n = 0;
        for (u32 i = c * CHUNK; i < (c + 1) * CHUNK && i < LIMIT; i++) n += is_prime(i);
        __atomic_fetch_add(&total, n, __ATOMIC_SEQ_CST);
        mine++;
    }
    if (hart < 8) chunks_of[hart] = mine;
    __atomic_fetch_add(&finished, 1, __ATOMIC_SEQ_CST);
    if (hart != 0) return 0;
    while (finished < checked_in) {
    }
    for (int h = 0; h < checked_in && h < 8; h++)
        printf_("hart %d: %u chunks\n", h, chunks_of[h]);
    printf_("primes below %u: %lu (%s)\n", LIMIT, total, total == 17984 ? "correct" : "WRONG");
    return total == 17984 ? 0 : 1;
}
