/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Loads and stores (sizes, sign/zero extension, misaligned), LR/SC and every AMO on one
 * hart, with their 32-bit sign extension. */
#include "guest.h"

static volatile u64 buf[4];
static volatile u64 word;

#define LOAD(insn, addr) ({ u64 r_; __asm__ volatile(insn " %0, 0(%1)" : "=r"(r_) : "r"(addr) : "memory"); r_; })
#define AMO(insn, addr, v) ({ u64 r_; __asm__ volatile(insn " %0, %2, (%1)" : "=r"(r_) : "r"(addr), "r"((u64)(v)) : "memory"); r_; })

int main(u64 hart)
{
    volatile unsigned char *b = (volatile unsigned char *)buf;
    buf[0] = 0x8081828384858687ul;
    buf[1] = 0x0102030405060708ul;
    CHECK("lb", LOAD("lb", b), 0xffffffffffffff87ul);
    CHECK("lbu", LOAD("lbu", b), 0x87);
    CHECK("lh", LOAD("lh", b), 0xffffffffffff8687ul);
    CHECK("lhu", LOAD("lhu", b), 0x8687);
    CHECK("lw", LOAD("lw", b), 0xffffffff84858687ul);
    CHECK("lwu", LOAD("lwu", b), 0x84858687ul);
    CHECK("ld", LOAD("ld", b), 0x8081828384858687ul);
    /* misaligned (allowed for plain loads and stores on the virt machine) */
    CHECK("ld misaligned", LOAD("ld", b + 4), 0x0506070880818283ul);
    CHECK("lw misaligned", LOAD("lw", b + 3), 0xffffffff81828384ul);
    __asm__ volatile("sw %0, 0(%1)" :: "r"(0xaabbccddul), "r"(b + 6) : "memory");
    CHECK("sw misaligned", buf[0], 0xccdd828384858687ul);
    CHECK("sw misaligned hi", buf[1] & 0xffff, 0xaabb);
    __asm__ volatile("sb %0, 0(%1)" :: "r"(0x1ff), "r"(b + 16) : "memory");
    CHECK("sb", buf[2] & 0xff, 0xff);
    __asm__ volatile("sh %0, 0(%1)" :: "r"(0x12345), "r"(b + 24) : "memory");
    CHECK("sh", buf[3], 0x2345);

    /* AMOs: old value back, memory updated; W forms sign-extend */
    word = 5;
    CHECK("amoadd.d", AMO("amoadd.d", &word, 3), 5);
    CHECK("amoadd.d mem", word, 8);
    CHECK("amoswap.d", AMO("amoswap.d", &word, -1ul), 8);
    CHECK("amoand.d", AMO("amoand.d", &word, 0xf0), -1ul);
    CHECK("amoor.d", AMO("amoor.d", &word, 0x0f), 0xf0);
    CHECK("amoxor.d", AMO("amoxor.d", &word, 0xff), 0xff);
    CHECK("amoxor.d mem", word, 0);
    word = -5ul;
    CHECK("amomin.d", AMO("amomin.d", &word, 3), -5ul);
    CHECK("amomin.d mem", word, -5ul);
    CHECK("amominu.d", AMO("amominu.d", &word, 3), -5ul);
    CHECK("amominu.d mem", word, 3);
    CHECK("amomax.d", AMO("amomax.d", &word, -9ul), 3);
    CHECK("amomax.d mem", word, 3);
    CHECK("amomaxu.d", AMO("amomaxu.d", &word, -9ul), 3);
    CHECK("amomaxu.d mem", word, -9ul);
    word = 0x123456780000fffful;
    CHECK("amoadd.w", AMO("amoadd.w", &word, 0x7fff0001ul), 0xfffful);
    CHECK("amoadd.w mem", word, 0x1234567880000000ul);
    CHECK("amoswap.w sext", AMO("amoswap.w", &word, 1), 0xffffffff80000000ul);
    CHECK("amoswap.w mem", word, 0x1234567800000001ul);
    word = 0x80000000ul;
    CHECK("amomin.w", AMO("amomin.w", &word, 1), 0xffffffff80000000ul);
    CHECK("amomin.w mem", word, 0x80000000ul);
    CHECK("amomaxu.w", AMO("amomaxu.w", &word, 1), 0xffffffff80000000ul);
    CHECK("amomaxu.w mem", word, 0x80000000ul);
    CHECK("amomax.w", AMO("amomax.w", &word, 1), 0xffffffff80000000ul);
    CHECK("amomax.w mem", word, 1);

    /* LR/SC: success writes and returns 0; a second SC without LR fails (1) */
    u64 r, v;
    word = 41;
    __asm__ volatile("lr.d %0, (%2); addi %0, %0, 1; sc.d %1, %0, (%2)"
                     : "=&r"(v), "=&r"(r) : "r"(&word) : "memory");
    CHECK("sc.d ok", r, 0);
    CHECK("sc.d mem", word, 42);
    __asm__ volatile("sc.d %0, %1, (%2)" : "=&r"(r) : "r"(7ul), "r"(&word) : "memory");
    CHECK("sc.d no reservation", r, 1);
    CHECK("sc.d mem kept", word, 42);
    word = 0xffffffff;
    __asm__ volatile("lr.w %0, (%1)" : "=&r"(v) : "r"(&word) : "memory");
    CHECK("lr.w sext", v, -1ul);
    __asm__ volatile("lr.w %0, (%2); sc.w %1, %3, (%2)"
                     : "=&r"(v), "=&r"(r) : "r"(&word), "r"(5ul) : "memory");
    CHECK("sc.w ok", r, 0);
    CHECK("sc.w mem", word, 5);
    /* an SC to another address than the reservation fails */
    __asm__ volatile("lr.d %0, (%2); sc.d %1, %3, (%4)"
                     : "=&r"(v), "=&r"(r) : "r"(&word), "r"(9ul), "r"(&buf[3]) : "memory");
    CHECK("sc.d other addr", r, 1);
    CHECK("sc.d other addr mem", buf[3], 0x2345);
    printf_("mem: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
