/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Bad guest code, each a clear trap the guest recovers from: illegal encodings of every
 * major opcode (also with rd = x0), CSRs that do not exist, jumps to unmapped addresses,
 * and code running off the end of RAM. */
#include "guest.h"

#define RAM_END 0x88000000ul   /* 128 MiB at 0x80000000: both emulators' default */

static volatile u64 t_cause, t_epc, t_tval, t_count, resume_at;

u64 handle_trap(u64 cause, u64 epc, u64 tval, u64 *regs)
{
    t_cause = cause;
    t_epc = epc;
    t_tval = tval;
    t_count++;
    u64 r = resume_at;
    resume_at = 0;
    return r ? r : epc + 4;
}

static u32 code[2] __attribute__((aligned(8)));

/* Encodings that are illegal on an RV64IMA + Zicsr + Zifencei + Zba machine-mode hart (and
 * on QEMU's rv64, whose F/D are off while mstatus.FS is 0). */
static const struct { u32 insn; const char *what; } illegal[] = {
    { 0x00000000, "all zeros" },
    { 0xffffffff, "all ones" },
    { 0x0000000b, "custom-0 opcode" },
    { 0x0000001f, "48-bit encoding prefix" },
    { 0x0000003f, "64-bit encoding prefix" },
    { 0x0000507f, ">= 80-bit encoding prefix" },
    { 0x00007003, "load funct3 7" },
    { 0x00004023, "store funct3 4" },
    { 0x04001013, "slli with shamt[11:6] 1" },
    { 0x0000701b, "OP-IMM-32 funct3 7" },
    { 0x04000033, "OP funct7 2" },
    { 0xfe000033, "OP funct7 0x7f" },
    { 0x0200103b, "OP-32 funct7 1 funct3 1, rd x0" },
    { 0x0200153b, "OP-32 funct7 1 funct3 1, rd a0" },
    { 0x0000707b, "OP-64 opcode" },
    { 0x00001067, "jalr funct3 1" },
    { 0x00002063, "branch funct3 2" },
    { 0x0000300f, "MISC-MEM funct3 3" },
    { 0x0000002f, "AMO funct3 0" },
    { 0x2800202f, "AMO funct5 5" },
    { 0x1010202f, "lr.w with rs2 x1" },
    { 0x00004073, "SYSTEM funct3 4" },
    { 0x302000f3, "mret with rd x1" },
    { 0x00008073, "ecall with rs1 x1" },
    { 0x10508073, "wfi with rs1 x1" },
    { 0x00000053, "fadd.s (no F)" },
    { 0x00002007, "flw (no F)" },
    { 0x7ff02573, "csrr of CSR 0x7ff" },
    { 0x3a102573, "csrr pmpcfg1 (odd: none on RV64)" },
    { 0x3c002573, "csrr pmpaddr16 (16 PMP entries)" },
    { 0xf1101073, "csrw mvendorid (read-only)" },
};

/* Addresses with nothing behind them: fetching there is an instruction access fault. */
static const u64 unmapped[] = { 0x0, 0x1000000, RAM_END, 0x100000000ul, 0x4000000000ul,
                                0xfffffffffffffffcul };

int main(u64 hart)
{
    void (*fn)(void) = (void (*)(void))code;
    for (unsigned i = 0; i < sizeof(illegal) / sizeof(illegal[0]); i++) {
        code[0] = illegal[i].insn;
        code[1] = 0x00008067;   /* ret */
        __asm__ volatile("fence.i" ::: "memory");
        t_count = t_cause = t_tval = t_epc = 0;
        fn();
        if (t_count != 1 || t_cause != 2 || t_epc != (u64)code || t_tval != illegal[i].insn) {
            printf_("FAIL illegal %x (%s): %lu traps, mcause %lu mepc %lx mtval %lx\n",
                    illegal[i].insn, illegal[i].what, t_count, t_cause, t_epc, t_tval);
            fails++;
        }
    }
    printf_("illegal encodings: %d tried\n", (int)(sizeof(illegal) / sizeof(illegal[0])));

    for (unsigned i = 0; i < sizeof(unmapped) / sizeof(unmapped[0]); i++) {
        u64 to = unmapped[i];
        t_count = t_cause = t_tval = t_epc = 0;
        __asm__ volatile("la t0, 1f; sd t0, 0(%1); jr %0; 1:"
                         :: "r"(to), "r"(&resume_at) : "t0", "memory");
        if (t_count != 1 || t_cause != 1 || t_epc != to || t_tval != to) {
            printf_("FAIL jump to %lx: %lu traps, mcause %lu mepc %lx mtval %lx\n", to,
                    t_count, t_cause, t_epc, t_tval);
            fails++;
        }
    }
    printf_("jumps to unmapped addresses: %d tried\n",
            (int)(sizeof(unmapped) / sizeof(unmapped[0])));

    /* the last word of RAM runs (addi a0, zero, 42), then the next fetch faults */
    volatile u32 *last = (volatile u32 *)(RAM_END - 4);
    *last = (42u << 20) | (10 << 7) | 0x13;
    __asm__ volatile("fence.i" ::: "memory");
    u64 a0v;
    t_count = 0;
    __asm__ volatile("la t0, 1f; sd t0, 0(%2); li a0, 0; jr %1; 1: mv %0, a0"
                     : "=r"(a0v) : "r"(last), "r"(&resume_at) : "t0", "a0", "memory");
    CHECK("last word of RAM ran", a0v, 42);
    CHECK("off the end: traps", t_count, 1);
    CHECK("off the end: mcause", t_cause, 1);
    CHECK("off the end: mepc", t_epc, RAM_END);
    CHECK("off the end: mtval", t_tval, RAM_END);
    printf_("bad: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
