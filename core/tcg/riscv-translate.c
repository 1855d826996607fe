/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The RISC-V front end: decodes RV64IMA + Zicsr + Zifencei + Zba machine-mode code into
 * IR blocks, with memory ordering (RVWMO or Ztso) made explicit as the guest demands. */
#include <string.h>
#include "tcg-internal.h"

typedef struct Ctx {
    QsTcgBlock *b;
    const TcgOptions *opts;
    uint64_t pc;            /* current instruction */
    uint32_t insn;
    bool end;               /* block ended by this instruction */
} Ctx;

#define X0 0

static uint32_t cst(Ctx *s, int64_t v) { return qs_tcg_const(s->b, v); }
static uint32_t tmp(Ctx *s) { return qs_tcg_temp_new(s->b); }

/* A guest register as a source: x0 reads as constant 0. */
static uint32_t reg(Ctx *s, unsigned r) { return r ? r : cst(s, 0); }

static void emit(Ctx *s, QsTcgOpc opc, uint32_t d, uint32_t a, uint32_t b, uint32_t c)
{
    QsTcgOp op = { .opc = opc, .args = { d, a, b, c }, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void emit2(Ctx *s, QsTcgOpc opc, uint32_t d, uint32_t a, uint32_t b)
{
    emit(s, opc, d, a, b, QS_TCG_NO_ARG);
}

static void emit_cond(Ctx *s, QsTcgOpc opc, QsTcgCond c, uint32_t a0, uint32_t a1,
                      uint32_t a2)
{
    QsTcgOp op = { .opc = opc, .cond = c, .args = { a0, a1, a2, QS_TCG_NO_ARG }, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void emit_mb(Ctx *s, unsigned mb)
{
    QsTcgOp op = { .opc = QS_TCG_MB, .memop = mb, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void emit_mem(Ctx *s, QsTcgOpc opc, uint32_t d, uint32_t a, uint32_t v, uint32_t c,
                     int64_t off, unsigned memop, unsigned amo)
{
    QsTcgOp op = { .opc = opc, .cond = amo, .memop = memop, .args = { d, a, v, c },
                   .imm = off, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void emit_call(Ctx *s, unsigned helper, unsigned flags, uint32_t d, uint32_t a,
                      uint32_t b)
{
    QsTcgOp op = { .opc = QS_TCG_CALL, .memop = flags, .imm = helper,
                   .args = { d, a, b, QS_TCG_NO_ARG }, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void goto_tb(Ctx *s, unsigned slot, uint64_t target)
{
    QsTcgOp op = { .opc = QS_TCG_GOTO_TB, .args = { slot }, .imm = (int64_t)target,
                   .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

static void label(Ctx *s, uint32_t l)
{
    QsTcgOp op = { .opc = QS_TCG_LABEL, .args = { l }, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
}

/* Destination for rd: the register, or a throw-away temp for x0. */
static uint32_t dst(Ctx *s, unsigned rd) { return rd ? rd : tmp(s); }

/* Raise a trap through a helper: the block ends here. */
static void trap(Ctx *s, unsigned helper, uint32_t arg)
{
    emit_call(s, helper, QS_TCG_CALL_MAY_TRAP | QS_TCG_CALL_SIDE_EFF, QS_TCG_NO_ARG, arg,
              QS_TCG_NO_ARG);
    goto_tb(s, 0, s->pc + 4);   /* not reached: keeps "every path exits" */
    s->end = true;
}

static void illegal(Ctx *s) { trap(s, HELPER_ILLEGAL, cst(s, s->insn)); }

/* Immediates, sign-extended from their top bit (bit 31 of the instruction). */
static int64_t sx(uint64_t v, unsigned bits) { return (int64_t)(v << (64 - bits)) >> (64 - bits); }
static int64_t imm_i(uint32_t i) { return sx(i >> 20, 12); }
static int64_t imm_s(uint32_t i) { return sx((i >> 25) << 5 | (i >> 7 & 0x1f), 12); }
static int64_t imm_b(uint32_t i)
{
    return sx((uint64_t)(i >> 31) << 12 | (i >> 7 & 1) << 11 | (i >> 25 & 0x3f) << 5 |
              (i >> 8 & 0xf) << 1, 13);
}
static int64_t imm_j(uint32_t i)
{
    return sx((uint64_t)(i >> 31) << 20 | (i & 0xff000) | (i >> 20 & 1) << 11 |
              (i >> 21 & 0x3ff) << 1, 21);
}

/* Binary op on registers or a register and an immediate, optional 32-bit sign extension
 * of the result (W ops). */
static void arith(Ctx *s, QsTcgOpc opc, unsigned rd, uint32_t a, uint32_t b, bool w)
{
    if (!rd) return;   /* no side effects: writing x0 is a no-op */
    if (w) {
        uint32_t t = tmp(s);
        emit2(s, opc, t, a, b);
        emit2(s, QS_TCG_EXT32S, rd, t, QS_TCG_NO_ARG);
    } else {
        emit2(s, opc, rd, a, b);
    }
}

static uint32_t ext32(Ctx *s, uint32_t a, bool sign)
{
    uint32_t t = tmp(s);
    emit2(s, sign ? QS_TCG_EXT32S : QS_TCG_EXT32U, t, a, QS_TCG_NO_ARG);
    return t;
}

/* Memory-model barriers the guest requires around plain accesses (Ztso only). */
static void before_load(Ctx *s)
{
    if (s->opts && s->opts->ztso) emit_mb(s, QS_TCG_MB_LD_LD);
}

static void before_store(Ctx *s)
{
    if (s->opts && s->opts->ztso) emit_mb(s, QS_TCG_MB_LD_ST | QS_TCG_MB_ST_ST);
}

static void do_branch(Ctx *s, QsTcgCond c, unsigned rs1, unsigned rs2, int64_t off)
{
    uint64_t target = s->pc + off;
    uint32_t taken = qs_tcg_label_new(s->b);
    emit_cond(s, QS_TCG_BRCOND, c, reg(s, rs1), reg(s, rs2), taken);
    goto_tb(s, 0, s->pc + 4);
    label(s, taken);
    if (target & 3) {
        trap(s, HELPER_MISALIGNED_JUMP, cst(s, (int64_t)target));
    } else {
        goto_tb(s, 1, target);
    }
    s->end = true;
}

static void do_jalr(Ctx *s, unsigned rd, unsigned rs1, int64_t off)
{
    uint32_t t = tmp(s), t2 = tmp(s), m = tmp(s);
    emit2(s, QS_TCG_ADD, t, reg(s, rs1), cst(s, off));
    emit2(s, QS_TCG_AND, t2, t, cst(s, -2));
    emit2(s, QS_TCG_AND, m, t2, cst(s, 2));
    uint32_t ok = qs_tcg_label_new(s->b);
    emit_cond(s, QS_TCG_BRCOND, QS_TCG_COND_EQ, m, cst(s, 0), ok);
    emit_call(s, HELPER_MISALIGNED_JUMP, QS_TCG_CALL_MAY_TRAP | QS_TCG_CALL_SIDE_EFF,
              QS_TCG_NO_ARG, t2, QS_TCG_NO_ARG);
    label(s, ok);
    if (rd) emit2(s, QS_TCG_MOV, rd, cst(s, (int64_t)(s->pc + 4)), QS_TCG_NO_ARG);
    QsTcgOp op = { .opc = QS_TCG_EXIT_INDIRECT, .args = { t2 }, .pc = s->pc };
    qs_tcg_op_append(s->b, &op);
    s->end = true;
}

static unsigned amo_order(uint32_t insn)
{
    bool aq = insn >> 26 & 1, rl = insn >> 25 & 1;
    return aq && rl ? QS_TCG_MO_SC : (aq ? QS_TCG_MO_ACQ : 0) | (rl ? QS_TCG_MO_REL : 0);
}

static void do_amo(Ctx *s, unsigned rd, unsigned rs1, unsigned rs2, unsigned f3)
{
    unsigned f5 = s->insn >> 27;
    if (f3 != 2 && f3 != 3) { illegal(s); return; }
    unsigned memop = (f3 == 2 ? QS_TCG_MO_32 | QS_TCG_MO_SIGN : QS_TCG_MO_64) |
                     QS_TCG_MO_ALIGN | amo_order(s->insn);
    uint32_t addr = reg(s, rs1);
    if (f5 == 0x02) {                     /* LR */
        if (rs2) { illegal(s); return; }
        uint32_t v = tmp(s);
        emit_mem(s, QS_TCG_LD, v, addr, QS_TCG_NO_ARG, QS_TCG_NO_ARG, 0, memop, 0);
        emit2(s, QS_TCG_MOV, QS_TCG_G_RES_ADDR, addr, QS_TCG_NO_ARG);
        emit2(s, QS_TCG_MOV, QS_TCG_G_RES_VAL, v, QS_TCG_NO_ARG);
        if (rd) emit2(s, QS_TCG_MOV, rd, v, QS_TCG_NO_ARG);
        return;
    }
    if (f5 == 0x03) {                     /* SC: compare-and-swap on the reserved value */
        uint32_t fail = qs_tcg_label_new(s->b), done = qs_tcg_label_new(s->b);
        uint32_t old = tmp(s);
        emit_cond(s, QS_TCG_BRCOND, QS_TCG_COND_NE, addr, QS_TCG_G_RES_ADDR, fail);
        emit_mem(s, QS_TCG_CMPXCHG, old, addr, QS_TCG_G_RES_VAL, reg(s, rs2), 0, memop, 0);
        if (rd) emit_cond(s, QS_TCG_SETCOND, QS_TCG_COND_NE, rd, old, QS_TCG_G_RES_VAL);
        emit(s, QS_TCG_BR, done, QS_TCG_NO_ARG, QS_TCG_NO_ARG, QS_TCG_NO_ARG);
        label(s, fail);
        if (rd) emit2(s, QS_TCG_MOV, rd, cst(s, 1), QS_TCG_NO_ARG);
        label(s, done);
        emit2(s, QS_TCG_MOV, QS_TCG_G_RES_ADDR, cst(s, -1), QS_TCG_NO_ARG);
        return;
    }
    int amo;
    switch (f5) {
    case 0x00: amo = QS_TCG_AMO_ADD; break;
    case 0x01: amo = QS_TCG_AMO_SWAP; break;
    case 0x04: amo = QS_TCG_AMO_XOR; break;
    case 0x08: amo = QS_TCG_AMO_OR; break;
    case 0x0c: amo = QS_TCG_AMO_AND; break;
    case 0x10: amo = QS_TCG_AMO_MIN; break;
    case 0x14: amo = QS_TCG_AMO_MAX; break;
    case 0x18: amo = QS_TCG_AMO_MINU; break;
    case 0x1c: amo = QS_TCG_AMO_MAXU; break;
    default: illegal(s); return;
    }
    emit_mem(s, QS_TCG_AMO, dst(s, rd), addr, reg(s, rs2), QS_TCG_NO_ARG, 0, memop, amo);
}

static void do_fence(Ctx *s)
{
    unsigned pred = s->insn >> 24 & 0xf, succ = s->insn >> 20 & 0xf, fm = s->insn >> 28;
    bool pr = pred & 0xa, pw = pred & 0x5, sr = succ & 0xa, sw = succ & 0x5; /* I/R, O/W */
    unsigned mb = 0;
    if (pr && sr) mb |= QS_TCG_MB_LD_LD;
    if (pr && sw) mb |= QS_TCG_MB_LD_ST;
    if (pw && sr) mb |= QS_TCG_MB_ST_LD;
    if (pw && sw) mb |= QS_TCG_MB_ST_ST;
    if (fm == 8 && mb == QS_TCG_MB_ALL) mb &= ~QS_TCG_MB_ST_LD;   /* fence.tso */
    if (!mb) return;
    if (mb == QS_TCG_MB_ALL) mb |= QS_TCG_MB_SC;
    else if (!(mb & ~(QS_TCG_MB_LD_LD | QS_TCG_MB_LD_ST))) mb |= QS_TCG_MB_ACQ;
    else if (!(mb & ~(QS_TCG_MB_LD_ST | QS_TCG_MB_ST_ST))) mb |= QS_TCG_MB_REL;
    emit_mb(s, mb);
}

static void do_system(Ctx *s, unsigned rd, unsigned rs1, unsigned f3)
{
    uint32_t insn = s->insn;
    if (f3 == 0) {
        if (rd || rs1) { illegal(s); return; }
        switch (insn >> 20) {
        case 0x000: trap(s, HELPER_ECALL, QS_TCG_NO_ARG); return;
        case 0x001: trap(s, HELPER_EBREAK, QS_TCG_NO_ARG); return;
        case 0x302: {
            uint32_t t = tmp(s);
            emit_call(s, HELPER_MRET, QS_TCG_CALL_SIDE_EFF | QS_TCG_CALL_END_TB, t,
                      QS_TCG_NO_ARG, QS_TCG_NO_ARG);
            QsTcgOp op = { .opc = QS_TCG_EXIT_INDIRECT, .args = { t }, .pc = s->pc };
            qs_tcg_op_append(s->b, &op);
            s->end = true;
            return;
        }
        case 0x105:
            emit_call(s, HELPER_WFI, QS_TCG_CALL_SIDE_EFF | QS_TCG_CALL_END_TB,
                      QS_TCG_NO_ARG, QS_TCG_NO_ARG, QS_TCG_NO_ARG);
            goto_tb(s, 0, s->pc + 4);
            s->end = true;
            return;
        default:
            illegal(s);
            return;
        }
    }
    if (f3 == 4) { illegal(s); return; }
    unsigned op = f3 & 3;                 /* 1 rw, 2 rs, 3 rc */
    uint32_t src = f3 & 4 ? cst(s, rs1) : reg(s, rs1);
    bool write = op == 1 || rs1 != 0;     /* csrrs/csrrc with x0 / uimm 0 do not write */
    uint32_t t = tmp(s);
    emit_call(s, HELPER_CSR, QS_TCG_CALL_MAY_TRAP | QS_TCG_CALL_SIDE_EFF |
              QS_TCG_CALL_END_TB, t, src,
              cst(s, (int64_t)((uint64_t)insn << 32 | (insn >> 20) | op << 12 |
                       (unsigned)write << 14)));
    if (rd) emit2(s, QS_TCG_MOV, rd, t, QS_TCG_NO_ARG);
    /* CSR writes may enable interrupts or change state: end the block. */
    goto_tb(s, 0, s->pc + 4);
    s->end = true;
}

static void translate_insn(Ctx *s)
{
    uint32_t i = s->insn;
    unsigned rd = i >> 7 & 31, rs1 = i >> 15 & 31, rs2 = i >> 20 & 31;
    unsigned f3 = i >> 12 & 7, f7 = i >> 25;
    int64_t imm = imm_i(i);

    switch (i & 0x7f) {
    case 0x37:   /* LUI */
        if (rd) emit2(s, QS_TCG_MOV, rd, cst(s, (int64_t)(int32_t)(i & 0xfffff000)),
                      QS_TCG_NO_ARG);
        return;
    case 0x17:   /* AUIPC */
        if (rd) emit2(s, QS_TCG_MOV, rd,
                      cst(s, (int64_t)(s->pc + (int64_t)(int32_t)(i & 0xfffff000))),
                      QS_TCG_NO_ARG);
        return;
    case 0x6f: { /* JAL */
        uint64_t target = s->pc + imm_j(i);
        if (target & 3) { trap(s, HELPER_MISALIGNED_JUMP, cst(s, (int64_t)target)); return; }
        if (rd) emit2(s, QS_TCG_MOV, rd, cst(s, (int64_t)(s->pc + 4)), QS_TCG_NO_ARG);
        goto_tb(s, 0, target);
        s->end = true;
        return;
    }
    case 0x67:   /* JALR */
        if (f3) break;
        do_jalr(s, rd, rs1, imm);
        return;
    case 0x63: { /* branches */
        static const int8_t conds[8] = { QS_TCG_COND_EQ, QS_TCG_COND_NE, -1, -1,
                                         QS_TCG_COND_LT, QS_TCG_COND_GE,
                                         QS_TCG_COND_LTU, QS_TCG_COND_GEU };
        if (conds[f3] < 0) break;
        do_branch(s, conds[f3], rs1, rs2, imm_b(i));
        return;
    }
    case 0x03: { /* loads */
        static const int8_t mo[8] = { QS_TCG_MO_8 | QS_TCG_MO_SIGN, QS_TCG_MO_16 | QS_TCG_MO_SIGN,
                                      QS_TCG_MO_32 | QS_TCG_MO_SIGN, QS_TCG_MO_64,
                                      QS_TCG_MO_8, QS_TCG_MO_16, QS_TCG_MO_32, -1 };
        if (mo[f3] < 0) break;
        before_load(s);
        emit_mem(s, QS_TCG_LD, dst(s, rd), reg(s, rs1), QS_TCG_NO_ARG, QS_TCG_NO_ARG, imm,
                 mo[f3], 0);
        return;
    }
    case 0x23:   /* stores */
        if (f3 > 3) break;
        before_store(s);
        emit_mem(s, QS_TCG_ST, QS_TCG_NO_ARG, reg(s, rs1), reg(s, rs2), QS_TCG_NO_ARG,
                 imm_s(i), f3, 0);
        return;
    case 0x13: { /* OP-IMM */
        unsigned sh = i >> 20 & 63, f6 = i >> 26;
        switch (f3) {
        case 0: arith(s, QS_TCG_ADD, rd, reg(s, rs1), cst(s, imm), false); return;
        case 2: if (rd) emit_cond(s, QS_TCG_SETCOND, QS_TCG_COND_LT, rd, reg(s, rs1), cst(s, imm)); return;
        case 3: if (rd) emit_cond(s, QS_TCG_SETCOND, QS_TCG_COND_LTU, rd, reg(s, rs1), cst(s, imm)); return;
        case 4: arith(s, QS_TCG_XOR, rd, reg(s, rs1), cst(s, imm), false); return;
        case 6: arith(s, QS_TCG_OR, rd, reg(s, rs1), cst(s, imm), false); return;
        case 7: arith(s, QS_TCG_AND, rd, reg(s, rs1), cst(s, imm), false); return;
        case 1:
            if (f6 != 0) break;
            arith(s, QS_TCG_SHL, rd, reg(s, rs1), cst(s, sh), false);
            return;
        case 5:
            if (f6 == 0) { arith(s, QS_TCG_SHR, rd, reg(s, rs1), cst(s, sh), false); return; }
            if (f6 == 0x10) { arith(s, QS_TCG_SAR, rd, reg(s, rs1), cst(s, sh), false); return; }
            break;
        }
        break;
    }
    case 0x1b: { /* OP-IMM-32 */
        unsigned sh = i >> 20 & 31;
        if (f3 == 0) { arith(s, QS_TCG_ADD, rd, reg(s, rs1), cst(s, imm), true); return; }
        if (f3 == 1 && f7 == 0) { arith(s, QS_TCG_SHL, rd, reg(s, rs1), cst(s, sh), true); return; }
        if (f3 == 1 && (i >> 26) == 0x02) {   /* Zba slli.uw */
            if (rd) emit2(s, QS_TCG_SHL, rd, ext32(s, reg(s, rs1), false), cst(s, i >> 20 & 63));
            return;
        }
        if (f3 == 5 && f7 == 0) {
            if (rd) arith(s, QS_TCG_SHR, rd, ext32(s, reg(s, rs1), false), cst(s, sh), true);
            return;
        }
        if (f3 == 5 && f7 == 0x20) {
            if (rd) arith(s, QS_TCG_SAR, rd, ext32(s, reg(s, rs1), true), cst(s, sh), true);
            return;
        }
        break;
    }
    case 0x33: { /* OP */
        uint32_t a = reg(s, rs1), b = reg(s, rs2);
        if (f7 == 0) {
            static const QsTcgOpc ops[8] = { QS_TCG_ADD, QS_TCG_SHL, 0, 0, QS_TCG_XOR,
                                             QS_TCG_SHR, QS_TCG_OR, QS_TCG_AND };
            if (f3 == 2 || f3 == 3) {
                if (rd) emit_cond(s, QS_TCG_SETCOND, f3 == 2 ? QS_TCG_COND_LT : QS_TCG_COND_LTU,
                                  rd, a, b);
                return;
            }
            arith(s, ops[f3], rd, a, b, false);
            return;
        }
        if (f7 == 0x20 && f3 == 0) { arith(s, QS_TCG_SUB, rd, a, b, false); return; }
        if (f7 == 0x20 && f3 == 5) { arith(s, QS_TCG_SAR, rd, a, b, false); return; }
        if (f7 == 1) {
            static const QsTcgOpc ops[8] = { QS_TCG_MUL, QS_TCG_MULH, QS_TCG_MULHSU,
                                             QS_TCG_MULHU, QS_TCG_DIV, QS_TCG_DIVU,
                                             QS_TCG_REM, QS_TCG_REMU };
            arith(s, ops[f3], rd, a, b, false);
            return;
        }
        if (f7 == 0x10 && (f3 == 2 || f3 == 4 || f3 == 6)) {   /* Zba shNadd */
            if (!rd) return;
            uint32_t t = tmp(s);
            emit2(s, QS_TCG_SHL, t, a, cst(s, f3 >> 1));
            emit2(s, QS_TCG_ADD, rd, t, b);
            return;
        }
        break;
    }
    case 0x3b: { /* OP-32 */
        uint32_t a = reg(s, rs1), b = reg(s, rs2);
        if (f7 == 0 && f3 == 0) { arith(s, QS_TCG_ADD, rd, a, b, true); return; }
        if (f7 == 0x20 && f3 == 0) { arith(s, QS_TCG_SUB, rd, a, b, true); return; }
        bool valid = (f7 == 0 && (f3 == 1 || f3 == 5)) || (f7 == 0x20 && f3 == 5) ||
                     (f7 == 1 && (f3 == 0 || f3 >= 4)) || (f7 == 4 && f3 == 0) ||
                     (f7 == 0x10 && (f3 == 2 || f3 == 4 || f3 == 6));
        if (!valid) break;      /* an illegal encoding, even when rd is x0 */
        if (!rd) return;        /* no side effects: writing x0 is a no-op */
        if (f7 == 0 && f3 == 1) {
            uint32_t sh = tmp(s);
            emit2(s, QS_TCG_AND, sh, b, cst(s, 31));
            arith(s, QS_TCG_SHL, rd, a, sh, true);
            return;
        }
        if (f7 == 0 && f3 == 5) {
            uint32_t sh = tmp(s);
            emit2(s, QS_TCG_AND, sh, b, cst(s, 31));
            arith(s, QS_TCG_SHR, rd, ext32(s, a, false), sh, true);
            return;
        }
        if (f7 == 0x20 && f3 == 5) {
            uint32_t sh = tmp(s);
            emit2(s, QS_TCG_AND, sh, b, cst(s, 31));
            arith(s, QS_TCG_SAR, rd, ext32(s, a, true), sh, true);
            return;
        }
        if (f7 == 1) {
            switch (f3) {
            case 0: arith(s, QS_TCG_MUL, rd, a, b, true); return;
            case 4: arith(s, QS_TCG_DIV, rd, ext32(s, a, true), ext32(s, b, true), true); return;
            case 5: arith(s, QS_TCG_DIVU, rd, ext32(s, a, false), ext32(s, b, false), true); return;
            case 6: arith(s, QS_TCG_REM, rd, ext32(s, a, true), ext32(s, b, true), true); return;
            case 7: arith(s, QS_TCG_REMU, rd, ext32(s, a, false), ext32(s, b, false), true); return;
            }
            break;
        }
        if (f7 == 4 && f3 == 0) { emit2(s, QS_TCG_ADD, rd, ext32(s, a, false), b); return; }
        if (f7 == 0x10 && (f3 == 2 || f3 == 4 || f3 == 6)) {   /* Zba shNadd.uw */
            uint32_t t = tmp(s);
            emit2(s, QS_TCG_SHL, t, ext32(s, a, false), cst(s, f3 >> 1));
            emit2(s, QS_TCG_ADD, rd, t, b);
            return;
        }
        break;
    }
    case 0x0f:   /* MISC-MEM */
        if (f3 == 0) { do_fence(s); return; }
        if (f3 == 1) {
            emit_call(s, HELPER_FENCE_I, QS_TCG_CALL_SIDE_EFF | QS_TCG_CALL_END_TB,
                      QS_TCG_NO_ARG, QS_TCG_NO_ARG, QS_TCG_NO_ARG);
            goto_tb(s, 0, s->pc + 4);
            s->end = true;
            return;
        }
        break;
    case 0x73:
        do_system(s, rd, rs1, f3);
        return;
    case 0x2f:
        do_amo(s, rd, rs1, rs2, f3);
        return;
    }
    illegal(s);
}

bool tcg_riscv_translate(QsTcgBlock *b, const TcgRam *ram, uint64_t pc,
                         const TcgOptions *opts, unsigned max_insns)
{
    memset(b, 0, sizeof(*b));
    b->pc = pc;
    b->guest_mo = opts && opts->ztso ? QS_TCG_MODEL_TSO : QS_TCG_MODEL_RVWMO;
    for (unsigned g = 0; g < QS_TCG_NB_GLOBALS; g++) {
        uint32_t t = qs_tcg_temp_new(b);
        b->temps[t].kind = QS_TCG_TEMP_GLOBAL;
    }
    Ctx s = { .b = b, .opts = opts, .pc = pc };
    while (1) {
        uint64_t off = s.pc - ram->base;
        if (s.pc < ram->base || off > ram->size - 4) {
            if (b->ninsns == 0) return false;
            goto_tb(&s, 0, s.pc);
            break;
        }
        memcpy(&s.insn, ram->host + off, 4);
        QsTcgOp start = { .opc = QS_TCG_INSN_START, .pc = s.pc, .imm = s.insn };
        qs_tcg_op_append(b, &start);
        translate_insn(&s);
        b->ninsns++;
        if (s.end) break;
        s.pc += 4;
        if ((s.pc & 0xfff) == 0 || b->ninsns >= max_insns ||
            b->ntemps > TCG_MAX_LOCALS - 64) {
            goto_tb(&s, 0, s.pc);
            break;
        }
    }
    return true;
}

void tcg_block_free(QsTcgBlock *b)
{
    g_free(b->ops);
    g_free(b->temps);
    memset(b, 0, sizeof(*b));
}
