/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CLINT interrupts: a timer interrupt taken from wfi and from a busy loop, a software
 * interrupt through msip, vectored mtvec, and mcause/mepc/mstatus on entry. */
#include "guest.h"

static volatile u64 n_timer, n_soft, last_cause, entry_mstatus;

u64 handle_trap(u64 cause, u64 epc, u64 tval, u64 *regs)
{
    last_cause = cause;
    entry_mstatus = csr_read(mstatus);
    if (cause == (1ul << 63 | 7)) {
        n_timer++;
        /* lower MTIP: far in the future (not -1: QEMU 7.2 then never fires again) */
        *CLINT_MTIMECMP(0) = *CLINT_MTIME + (1ul << 40);
        return epc;
    }
    if (cause == (1ul << 63 | 3)) {
        n_soft++;
        *CLINT_MSIP(0) = 0;            /* lower MSIP */
        return epc;
    }
    printf_("unexpected trap 0x%lx at 0x%lx\n", cause, epc);
    qs_exit(3);
}

int main(u64 hart)
{
    /* timer from wfi */
    *CLINT_MTIMECMP(0) = *CLINT_MTIME + 10000;   /* 1 ms */
    csr_write(mie, 1ul << 7);
    csr_set(mstatus, 1ul << 3);
    while (n_timer == 0) __asm__ volatile("wfi");
    CHECK("timer count", n_timer, 1);
    CHECK("timer mcause", last_cause, 1ul << 63 | 7);
    CHECK("entry MIE off, MPIE on", entry_mstatus & 0x88, 0x80);
    CHECK("MIE back on after mret", csr_read(mstatus) & 0x8, 0x8);
    /* timer while spinning */
    *CLINT_MTIMECMP(0) = *CLINT_MTIME + 5000;
    volatile u64 spins = 0;
    while (n_timer == 1) spins++;
    CHECK("timer count 2", n_timer, 2);
    /* masked: nothing taken while mstatus.MIE is clear, then taken at once */
    csr_clear(mstatus, 1ul << 3);
    *CLINT_MTIMECMP(0) = *CLINT_MTIME + 100;
    u64 until = *CLINT_MTIME + 10000000;   /* up to 1 s for the timer to fire */
    while (*CLINT_MTIME < until && !((csr_read(mip) >> 7) & 1)) {
    }
    CHECK("masked", n_timer, 2);
    CHECK("mip.MTIP pending", (csr_read(mip) >> 7) & 1, 1);
    csr_set(mstatus, 1ul << 3);
    __asm__ volatile("nop");
    CHECK("taken after unmask", n_timer, 3);
    /* software interrupt */
    csr_write(mie, 1ul << 3);
    *CLINT_MSIP(0) = 1;
    for (int i = 0; i < 100 && !n_soft; i++) __asm__ volatile("nop");
    CHECK("soft count", n_soft, 1);
    CHECK("soft mcause", last_cause, 1ul << 63 | 3);
    csr_clear(mstatus, 1ul << 3);
    csr_write(mie, 0);
    printf_("irq: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
