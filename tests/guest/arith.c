/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Integer instruction semantics with their edge cases: division by zero and overflow,
 * W ops' sign extension, shift amounts, multiply-high, set-less-than, Zba. */
#include "guest.h"

#define OP2(insn, a, b) ({ u64 r_; __asm__ volatile(insn " %0, %1, %2" : "=r"(r_) : "r"((u64)(a)), "r"((u64)(b))); r_; })
#define OPI(insn, a, imm) ({ u64 r_; __asm__ volatile(insn " %0, %1, " #imm : "=r"(r_) : "r"((u64)(a))); r_; })

#define MIN64 0x8000000000000000ul
#define MIN32 0xffffffff80000000ul

int main(u64 hart)
{
    /* division by zero */
    CHECK("div/0", OP2("div", 7, 0), -1ul);
    CHECK("divu/0", OP2("divu", 7, 0), -1ul);
    CHECK("rem/0", OP2("rem", 7, 0), 7);
    CHECK("remu/0", OP2("remu", 7, 0), 7);
    CHECK("divw/0", OP2("divw", 7, 0), -1ul);
    CHECK("divuw/0", OP2("divuw", 7, 0), -1ul);
    CHECK("remw/0", OP2("remw", 0x80000007ul, 0), 0xffffffff80000007ul);
    CHECK("remuw/0", OP2("remuw", 0x80000007ul, 0), 0xffffffff80000007ul);
    /* overflow */
    CHECK("div ovf", OP2("div", MIN64, -1ul), MIN64);
    CHECK("rem ovf", OP2("rem", MIN64, -1ul), 0);
    CHECK("divw ovf", OP2("divw", 0x80000000ul, -1ul), MIN32);
    CHECK("remw ovf", OP2("remw", 0x80000000ul, -1ul), 0);
    /* signs */
    CHECK("div neg", OP2("div", -7ul, 2), -3ul);
    CHECK("rem neg", OP2("rem", -7ul, 2), -1ul);
    CHECK("divu big", OP2("divu", -1ul, 2), 0x7ffffffffffffffful);
    CHECK("divw upper ignored", OP2("divw", 0x1234567800000010ul, 0xff00000000000004ul), 4);
    CHECK("divuw", OP2("divuw", 0xfffffffful, 2), 0x7ffffffful);
    /* multiply */
    CHECK("mul", OP2("mul", 0x123456789ul, 0x987654321ul), 0x123456789ul * 0x987654321ul);
    CHECK("mulh", OP2("mulh", -1ul, -1ul), 0);
    CHECK("mulh2", OP2("mulh", MIN64, MIN64), 0x4000000000000000ul);
    CHECK("mulhu", OP2("mulhu", -1ul, -1ul), 0xfffffffffffffffeul);
    CHECK("mulhsu", OP2("mulhsu", -1ul, -1ul), -1ul);
    CHECK("mulhsu2", OP2("mulhsu", 2, -1ul), 1);
    CHECK("mulw", OP2("mulw", 0x10000ul, 0x8000ul), MIN32);
    /* W ops sign-extend bit 31 */
    CHECK("addw", OP2("addw", 0x7fffffffu, 1), MIN32);
    CHECK("subw", OP2("subw", 0, 1), -1ul);
    CHECK("addiw", OPI("addiw", 0xffffffff7ffffffful, 1), MIN32);
    CHECK("sext.w", OPI("addiw", 0x12345678fffffffful, 0), -1ul);
    /* shifts use the low 6 (5 for W) bits */
    CHECK("sll 64", OP2("sll", 1, 64), 1);
    CHECK("sll 63", OP2("sll", 1, 63), MIN64);
    CHECK("srl", OP2("srl", MIN64, 63), 1);
    CHECK("sra", OP2("sra", MIN64, 63), -1ul);
    CHECK("sra 65", OP2("sra", MIN64, 65), 0xc000000000000000ul);
    CHECK("sllw", OP2("sllw", 1, 31), MIN32);
    CHECK("sllw 32", OP2("sllw", 1, 32), 1);
    CHECK("srlw", OP2("srlw", 0xffffffff80000000ul, 31), 1);
    CHECK("srlw 0", OP2("srlw", 0x0000000080000000ul, 0), MIN32);
    CHECK("sraw", OP2("sraw", 0x80000000ul, 4), 0xfffffffff8000000ul);
    CHECK("srliw", OPI("srliw", -1ul, 4), 0x0fffffffu);
    CHECK("sraiw", OPI("sraiw", 0x80000000ul, 31), -1ul);
    CHECK("slliw", OPI("slliw", 3, 31), MIN32);
    CHECK("srai", OPI("srai", MIN64, 1), 0xc000000000000000ul);
    CHECK("slli", OPI("slli", 1, 40), 1ul << 40);
    /* compares */
    CHECK("slt", OP2("slt", -1ul, 0), 1);
    CHECK("sltu", OP2("sltu", -1ul, 0), 0);
    CHECK("slti", OPI("slti", -5ul, -4), 1);
    CHECK("sltiu -1", OPI("sltiu", 5, -1), 1);
    CHECK("sltiu 0", OPI("sltiu", 0, 1), 1);
    /* logic immediates sign-extend */
    CHECK("xori -1", OPI("xori", 0x0f, -1), ~0x0ful);
    CHECK("andi", OPI("andi", -1ul, -2048), -2048ul);
    CHECK("ori", OPI("ori", 0, 2047), 2047);
    /* lui/auipc sign extension */
    u64 v;
    __asm__ volatile("lui %0, 0x80000" : "=r"(v));
    CHECK("lui", v, MIN32);
    /* Zba */
    CHECK("sh1add", OP2("sh1add", 3, 100), 106);
    CHECK("sh2add", OP2("sh2add", 3, 100), 112);
    CHECK("sh3add", OP2("sh3add", 3, 100), 124);
    CHECK("add.uw", OP2("add.uw", -1ul, 1), 0x100000000ul);
    CHECK("sh1add.uw", OP2("sh1add.uw", 0xffffffff00000001ul, 0), 2);
    CHECK("slli.uw", OPI("slli.uw", 0xffffffff80000000ul, 1), 0x100000000ul);
    /* writes to x0 are dropped */
    __asm__ volatile("li t0, 5; add x0, t0, t0; mv %0, x0" : "=r"(v) :: "t0");
    CHECK("x0", v, 0);
    printf_("arith: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
