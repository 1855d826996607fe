/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CPU-bound guest benchmark: FNV hash, quicksort, matrix multiply and CRC-32 on every
 * hart (NHARTS), each hart on its own data; hart 0 prints the checksums and the guest
 * instructions retired by all harts (minstret) and powers off. */
#include "guest.h"

#ifndef NHARTS
#define NHARTS 1
#endif
#define N 48
#define REPEAT 15
#define SORT_N 20000
#define BUF 16384

static unsigned char buf[NHARTS][BUF];
static u32 arr[NHARTS][SORT_N];
static u32 ma[NHARTS][N][N], mb[NHARTS][N][N], mc[NHARTS][N][N];
static volatile u64 done, insns, sums;

static u32 rng(u64 *s) { *s = *s * 6364136223846793005ul + 1442695040888963407ul; return (u32)(*s >> 33); }

static void qsort_u32(u32 *a, long lo, long hi)
{
    while (lo < hi) {
        u32 p = a[(lo + hi) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { u32 t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { qsort_u32(a, lo, j); lo = i; }
        else { qsort_u32(a, i, hi); hi = j; }
    }
}

int main(u64 hart)
{
    u64 seed = 12345 + hart, sum = 0;
    unsigned char *b = buf[hart];
    for (int i = 0; i < BUF; i++) b[i] = (unsigned char)rng(&seed);
    for (int rep = 0; rep < REPEAT; rep++) {
    for (int r = 0; r < 40; r++) {            /* FNV-1a */
        u64 h = 1469598103934665603ul;
        for (int i = 0; i < BUF; i++) h = (h ^ b[i]) * 1099511628211ul;
        sum += h;
    }
    for (int r = 0; r < 3; r++) {             /* quicksort */
        for (int i = 0; i < SORT_N; i++) arr[hart][i] = rng(&seed);
        qsort_u32(arr[hart], 0, SORT_N - 1);
        sum += arr[hart][SORT_N / 2];
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) { ma[hart][i][j] = rng(&seed); mb[hart][i][j] = rng(&seed); }
    for (int r = 0; r < 4; r++) {             /* matrix multiply */
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                u32 acc = 0;
                for (int k = 0; k < N; k++) acc += ma[hart][i][k] * mb[hart][k][j];
                mc[hart][i][j] = acc;
            }
        sum += mc[hart][r][r];
    }
    for (int r = 0; r < 6; r++) {             /* bitwise CRC-32 */
        u32 crc = 0xffffffffu;
        for (int i = 0; i < BUF; i++) {
            crc ^= b[i];
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
        }
        sum += ~crc;
    }
    }
    __atomic_fetch_add(&sums, sum, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&insns, csr_read(minstret), __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    if (hart) return 0;
    while (done < NHARTS) {
    }
    printf_("checksum %lx\ninsns %lu\n", sums, insns);
    return 0;
}
