/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Guests that never stop, one way per hart: 0 a one-instruction loop (a block chained to
 * itself), 1 wfi with every interrupt off, 2 a trap storm (mtvec points at an illegal
 * instruction), 3 rewriting its own code forever.  QMP stop, cont and quit must work. */
    .section .text.init
    .global _start
_start:
    csrr t0, mhartid
    beqz t0, self_loop
    li t1, 1
    beq t0, t1, sleep
    li t1, 2
    beq t0, t1, storm
    li t1, 3
    beq t0, t1, smc
self_loop:
    j self_loop
sleep:
    csrw mie, zero
    csrw mstatus, zero
1:  wfi
    j 1b
storm:
    la t1, bad
    csrw mtvec, t1
bad:
    .word 0xffffffff
smc:
    la t1, patch
    lw t2, 0(t1)
1:  sw t2, 0(t1)          /* same bytes: the block is invalidated, then retranslated */
    addi s0, s0, 1
patch:
    j 1b
