/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Self-modifying code: rewrite an instruction that already ran (so it was translated),
 * fence.i, run it again; also code written to a fresh buffer and called. */
#include "guest.h"

extern u64 patch_fn(void);
__asm__(".text\n.align 2\n.globl patch_fn\npatch_fn:\n"
        ".globl patch_insn\npatch_insn: addi a0, zero, 1\n ret\n");
extern u32 patch_insn[];

static u32 code_buf[64] __attribute__((aligned(64)));

static u32 addi_a0(int imm) { return ((u32)imm << 20) | (10 << 7) | 0x13; }   /* addi a0, x0, imm */
#define RET 0x00008067u

int main(u64 hart)
{
    u64 sum = 0;
    for (int i = 0; i < 10; i++) sum += patch_fn();
    CHECK("before", sum, 10);
    for (int k = 2; k < 40; k++) {
        patch_insn[0] = addi_a0(k);
        __asm__ volatile("fence.i" ::: "memory");
        CHECK("patched", patch_fn(), (u64)k);
    }
    /* generate code into a buffer, run, regenerate in place, run again */
    u64 (*fn)(void) = (u64 (*)(void))code_buf;
    for (int k = 0; k < 20; k++) {
        code_buf[0] = addi_a0(100 + k);
        code_buf[1] = RET;
        __asm__ volatile("fence.i" ::: "memory");
        CHECK("generated", fn(), (u64)(100 + k));
    }
    printf_("smc: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
