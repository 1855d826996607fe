/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The meaning of the IR's pure integer ops, shared by the constant folder and the
 * interpreter so that both compute exactly the same thing. */
#ifndef QS_TCG_OPS_H
#define QS_TCG_OPS_H

#include <stdint.h>
#include "qs/tcg.h"

static inline uint64_t tcg_mulhu(uint64_t a, uint64_t b)
{
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
}

static inline uint64_t tcg_mulh(uint64_t a, uint64_t b)
{
    return (uint64_t)(((__int128)(int64_t)a * (int64_t)b) >> 64);
}

static inline uint64_t tcg_mulhsu(uint64_t a, uint64_t b)
{
    return (uint64_t)(((__int128)(int64_t)a * (__int128)(unsigned __int128)b) >> 64);
}

static inline uint64_t tcg_div(uint64_t a, uint64_t b)
{
    if (b == 0) return UINT64_MAX;
    if ((int64_t)a == INT64_MIN && (int64_t)b == -1) return a;
    return (uint64_t)((int64_t)a / (int64_t)b);
}

static inline uint64_t tcg_divu(uint64_t a, uint64_t b)
{
    return b ? a / b : UINT64_MAX;
}

static inline uint64_t tcg_rem(uint64_t a, uint64_t b)
{
    if (b == 0) return a;
    if ((int64_t)a == INT64_MIN && (int64_t)b == -1) return 0;
    return (uint64_t)((int64_t)a % (int64_t)b);
}

static inline uint64_t tcg_remu(uint64_t a, uint64_t b)
{
    return b ? a % b : a;
}

static inline bool tcg_cond(unsigned c, uint64_t a, uint64_t b)
{
    switch (c) {
    case QS_TCG_COND_EQ: return a == b;
    case QS_TCG_COND_NE: return a != b;
    case QS_TCG_COND_LT: return (int64_t)a < (int64_t)b;
    case QS_TCG_COND_GE: return (int64_t)a >= (int64_t)b;
    case QS_TCG_COND_LTU: return a < b;
    default: return a >= b;
    }
}

/* Evaluate a pure op (MOV..SETCOND); returns false for anything else. */
static inline bool tcg_eval(const QsTcgOp *op, uint64_t a, uint64_t b, uint64_t *out)
{
    uint64_t r;
    switch (op->opc) {
    case QS_TCG_MOV: r = a; break;
    case QS_TCG_ADD: r = a + b; break;
    case QS_TCG_SUB: r = a - b; break;
    case QS_TCG_AND: r = a & b; break;
    case QS_TCG_OR: r = a | b; break;
    case QS_TCG_XOR: r = a ^ b; break;
    case QS_TCG_SHL: r = a << (b & 63); break;
    case QS_TCG_SHR: r = a >> (b & 63); break;
    case QS_TCG_SAR: r = (uint64_t)((int64_t)a >> (b & 63)); break;
    case QS_TCG_MUL: r = a * b; break;
    case QS_TCG_MULH: r = tcg_mulh(a, b); break;
    case QS_TCG_MULHU: r = tcg_mulhu(a, b); break;
    case QS_TCG_MULHSU: r = tcg_mulhsu(a, b); break;
    case QS_TCG_DIV: r = tcg_div(a, b); break;
    case QS_TCG_DIVU: r = tcg_divu(a, b); break;
    case QS_TCG_REM: r = tcg_rem(a, b); break;
    case QS_TCG_REMU: r = tcg_remu(a, b); break;
    case QS_TCG_EXT32S: r = (uint64_t)(int64_t)(int32_t)a; break;
    case QS_TCG_EXT32U: r = (uint32_t)a; break;
    case QS_TCG_SETCOND: r = tcg_cond(op->cond, a, b); break;
    default: return false;
    }
    *out = r;
    return true;
}

#endif
