/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A guest that never stops: every hart counts in a register forever (QMP stop, cont
 * and quit must still work). */
    .section .text.init
    .global _start
_start:
    li t0, 0
1:  addi t0, t0, 1
    j 1b
