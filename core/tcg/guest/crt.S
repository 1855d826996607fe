/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Start-up for the guest programs: a 16 KiB stack per hart, a trap entry that saves
 * every register and calls handle_trap(), then main(hartid); hart 0 exits with main's
 * result through the test finisher, the others return to a wfi loop. */
    .section .text.init
    .global _start
_start:
    csrr s0, mhartid
    la sp, _stack_top
    slli t1, s0, 14
    sub sp, sp, t1
    la t2, trap_entry
    csrw mtvec, t2
    mv a0, s0
    call main
    bnez s0, 1f
    call qs_exit
1:  wfi
    j 1b

    .align 4
    .global trap_entry
trap_entry:
    addi sp, sp, -256
    .irp r,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd x\r, (\r*8)(sp)
    .endr
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    mv a3, sp
    call handle_trap
    csrw mepc, a0
    .irp r,1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld x\r, (\r*8)(sp)
    .endr
    addi sp, sp, 256
    mret
