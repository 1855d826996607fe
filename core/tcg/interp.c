/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The back end: turns optimized IR into threaded code (one handler address per op, with
 * operands as frame slots) and runs it with computed-goto dispatch and chained blocks. */
#include <string.h>
#include "tcg-internal.h"
#include "tcg-ops.h"

#define BINOPS(X) X(ADD) X(SUB) X(AND) X(OR) X(XOR) X(SHL) X(SHR) X(SAR) X(MUL) \
    X(MULH) X(MULHU) X(MULHSU) X(DIV) X(DIVU) X(REM) X(REMU)
#define CONDS(X) X(EQ) X(NE) X(LT) X(GE) X(LTU) X(GEU)
/* Superinstructions for RV64's 32-bit ops: the op and the sign extension of its result
 * (addw, addiw, subw, mulw, sllw, slliw; srlw/srliw and sraw/sraiw with their operand's
 * extension too). */
#define WOPS(X) X(ADDW) X(SUBW) X(MULW) X(SHLW) X(SRLW) X(SRAW)

enum {
    H_MOVI, H_MOV, H_EXT32S, H_EXT32U, H_BR,
#define E(n) H_##n##_RR, H_##n##_RI,
    BINOPS(E)
    WOPS(E)
#undef E
#define E(n) H_SET_##n##_RR, H_SET_##n##_RI, H_BR_##n##_RR, H_BR_##n##_RI, \
             H_BRX_##n##_RR, H_BRX_##n##_RI,
    CONDS(E)
#undef E
    H_LD8U, H_LD8S, H_LD16U, H_LD16S, H_LD32U, H_LD32S, H_LD64, H_LDGEN,
    H_ST8, H_ST16, H_ST32, H_ST64, H_STGEN,
    H_AMO, H_CMPXCHG, H_MB_SC, H_MB_ACQ, H_MB_REL, H_MB_ACQREL,
    H_CALL, H_GOTO_TB, H_EXIT_INDIRECT, H_ADD2_RI,
    H_NB
};

static const void *const *handlers;

#ifdef QS_TCG_PROFILE
/* Profile build (-Dc_args=-DQS_TCG_PROFILE): counts every handler run and every pair of
 * consecutive handlers, written at exit to the file named by $QS_TCG_PROFILE.  The
 * counters are shared by all hart threads without atomics (approximate with -smp > 1). */
#include <stdlib.h>
static const char *const handler_names[H_NB] = {
    "movi", "mov", "ext32s", "ext32u", "br",
#define E(n) #n "_rr", #n "_ri",
    BINOPS(E) WOPS(E)
#undef E
#define E(n) "set_" #n "_rr", "set_" #n "_ri", "br_" #n "_rr", "br_" #n "_ri", \
             "brx_" #n "_rr", "brx_" #n "_ri",
    CONDS(E)
#undef E
    "ld8u", "ld8s", "ld16u", "ld16s", "ld32u", "ld32s", "ld64", "ldgen",
    "st8", "st16", "st32", "st64", "stgen", "amo", "cmpxchg", "mb_sc", "mb_acq", "mb_rel",
    "mb_acqrel", "call", "goto_tb", "exit_indirect", "add2_ri",
};
static uint64_t prof_count[H_NB], prof_pair[H_NB][H_NB];

static void prof_dump(void)
{
    FILE *f = fopen(getenv("QS_TCG_PROFILE"), "w");
    if (!f) return;
    for (unsigned i = 0; i < H_NB; i++)
        if (prof_count[i]) fprintf(f, "op %s %" G_GUINT64_FORMAT "\n", handler_names[i], prof_count[i]);
    for (unsigned i = 0; i < H_NB; i++)
        for (unsigned j = 0; j < H_NB; j++)
            if (prof_pair[i][j])
                fprintf(f, "pair %s %s %" G_GUINT64_FORMAT "\n", handler_names[i], handler_names[j],
                        prof_pair[i][j]);
    fclose(f);
}
#define PROF(ip) do { prof_count[(ip)->hid]++; prof_pair[prof_prev][(ip)->hid]++; \
                      prof_prev = (ip)->hid; } while (0)
#else
#define PROF(ip) do { } while (0)
#endif

#define SLOT_ZERO 0                                   /* x0: always 0 in the frame */
#define SLOT_SCRATCH (QS_TCG_NB_GLOBALS + TCG_MAX_LOCALS)

/* ---- memory access slow-ish paths (ordering, alignment, atomics) ---- */

static inline uint8_t *ram_ptr(QsCpu *cpu, uint64_t addr, unsigned size)
{
    TcgRam *r = cpu->ram;
    uint64_t off = addr - r->base;
    return off <= r->size - size ? r->host + off : NULL;
}

static uint64_t sext(uint64_t v, unsigned memop)
{
    unsigned bits = 8u << (memop & QS_TCG_MO_SIZE_MASK);
    if (bits == 64) return v;
    if (memop & QS_TCG_MO_SIGN) return (uint64_t)((int64_t)(v << (64 - bits)) >> (64 - bits));
    return v & ((1ull << bits) - 1);
}

static uint64_t ld_generic(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    if ((memop & QS_TCG_MO_ALIGN) && (addr & (size - 1)))
        tcg_raise(cpu, EXC_LOAD_MISALIGNED, addr, pc);
    if (memop & (QS_TCG_MO_SC | QS_TCG_MO_REL)) atomic_thread_fence(memory_order_seq_cst);
    uint64_t v = 0;
    uint8_t *p = ram_ptr(cpu, addr, size);
    if (p) {
        memcpy(&v, p, size);
        v = sext(v, memop);
    } else {
        v = tcg_load_slow(cpu, addr, memop, pc);
    }
    if (memop & (QS_TCG_MO_SC | QS_TCG_MO_ACQ)) atomic_thread_fence(memory_order_acquire);
    return v;
}

static void st_generic(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t v, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    if ((memop & QS_TCG_MO_ALIGN) && (addr & (size - 1)))
        tcg_raise(cpu, EXC_STORE_MISALIGNED, addr, pc);
    if (memop & (QS_TCG_MO_SC | QS_TCG_MO_REL)) atomic_thread_fence(memory_order_release);
    uint8_t *p = ram_ptr(cpu, addr, size);
    if (p && !cpu->ram->code_map[(p - cpu->ram->host) >> CODE_SHIFT]) memcpy(p, &v, size);
    else tcg_store_slow(cpu, addr, memop, v, pc);
    if (memop & QS_TCG_MO_SC) atomic_thread_fence(memory_order_seq_cst);
}

#define AMO_CASE(T)                                                            \
    do {                                                                       \
        T *q = (T *)p, nv = (T)val;                                            \
        switch (amo) {                                                         \
        case QS_TCG_AMO_SWAP: old = __atomic_exchange_n(q, nv, __ATOMIC_SEQ_CST); break; \
        case QS_TCG_AMO_ADD: old = __atomic_fetch_add(q, nv, __ATOMIC_SEQ_CST); break;   \
        case QS_TCG_AMO_AND: old = __atomic_fetch_and(q, nv, __ATOMIC_SEQ_CST); break;   \
        case QS_TCG_AMO_OR: old = __atomic_fetch_or(q, nv, __ATOMIC_SEQ_CST); break;     \
        case QS_TCG_AMO_XOR: old = __atomic_fetch_xor(q, nv, __ATOMIC_SEQ_CST); break;   \
        default: {                                                             \
            T cur = __atomic_load_n(q, __ATOMIC_RELAXED), want;                \
            do {                                                               \
                want = (T)tcg_amo_minmax(amo, sext(cur, memop), val);          \
            } while (!__atomic_compare_exchange_n(q, &cur, want, false,        \
                                                  __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)); \
            old = cur;                                                         \
        }                                                                      \
        }                                                                      \
    } while (0)

static uint64_t tcg_amo_minmax(unsigned amo, uint64_t a, uint64_t b)
{
    switch (amo) {
    case QS_TCG_AMO_MIN: return (int64_t)a < (int64_t)b ? a : b;
    case QS_TCG_AMO_MAX: return (int64_t)a > (int64_t)b ? a : b;
    case QS_TCG_AMO_MINU: return a < b ? a : b;
    default: return a > b ? a : b;
    }
}

static uint64_t amo_exec(QsCpu *cpu, uint64_t addr, unsigned memop, unsigned amo,
                         uint64_t val, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    if (addr & (size - 1)) tcg_raise(cpu, EXC_STORE_MISALIGNED, addr, pc);
    if (size == 4) val = sext(val, QS_TCG_MO_32 | QS_TCG_MO_SIGN);
    uint8_t *p = ram_ptr(cpu, addr, size);
    if (!p) return tcg_amo_slow(cpu, addr, memop, amo, val, pc);
    if (cpu->ram->code_map[(p - cpu->ram->host) >> CODE_SHIFT])
        tcg_tb_invalidate_page(cpu->ram, (uint64_t)(p - cpu->ram->host));
    uint64_t old;
    if (size == 4) AMO_CASE(uint32_t);
    else AMO_CASE(uint64_t);
    return sext(old, memop);
}

static uint64_t cmpxchg_exec(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t expect,
                             uint64_t val, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    if (addr & (size - 1)) tcg_raise(cpu, EXC_STORE_MISALIGNED, addr, pc);
    uint8_t *p = ram_ptr(cpu, addr, size);
    if (!p) return tcg_cmpxchg_slow(cpu, addr, memop, expect, val, pc);
    if (cpu->ram->code_map[(p - cpu->ram->host) >> CODE_SHIFT])
        tcg_tb_invalidate_page(cpu->ram, (uint64_t)(p - cpu->ram->host));
    if (size == 4) {
        uint32_t cur = (uint32_t)expect;
        __atomic_compare_exchange_n((uint32_t *)p, &cur, (uint32_t)val, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        return sext(cur, memop);
    }
    uint64_t cur = expect;
    __atomic_compare_exchange_n((uint64_t *)p, &cur, val, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    return cur;
}

static inline unsigned jc_hash(uint64_t pc) { return (unsigned)(pc >> 2) & (JC_SIZE - 1); }

/* ---- the interpreter ---- */

TB *tcg_interp_exec(QsCpu *cpu, TB *tb, int *slot)
{
    static const void *const table[H_NB] = {
        [H_MOVI] = &&L_MOVI, [H_MOV] = &&L_MOV, [H_EXT32S] = &&L_EXT32S,
        [H_EXT32U] = &&L_EXT32U, [H_BR] = &&L_BR,
#define E(n) [H_##n##_RR] = &&L_##n##_RR, [H_##n##_RI] = &&L_##n##_RI,
        BINOPS(E)
        WOPS(E)
#undef E
#define E(n) [H_SET_##n##_RR] = &&L_SET_##n##_RR, [H_SET_##n##_RI] = &&L_SET_##n##_RI, \
             [H_BR_##n##_RR] = &&L_BR_##n##_RR, [H_BR_##n##_RI] = &&L_BR_##n##_RI,   \
             [H_BRX_##n##_RR] = &&L_BRX_##n##_RR, [H_BRX_##n##_RI] = &&L_BRX_##n##_RI,
        CONDS(E)
#undef E
        [H_LD8U] = &&L_LD8U, [H_LD8S] = &&L_LD8S, [H_LD16U] = &&L_LD16U,
        [H_LD16S] = &&L_LD16S, [H_LD32U] = &&L_LD32U, [H_LD32S] = &&L_LD32S,
        [H_LD64] = &&L_LD64, [H_LDGEN] = &&L_LDGEN,
        [H_ST8] = &&L_ST8, [H_ST16] = &&L_ST16, [H_ST32] = &&L_ST32, [H_ST64] = &&L_ST64,
        [H_STGEN] = &&L_STGEN, [H_AMO] = &&L_AMO, [H_CMPXCHG] = &&L_CMPXCHG,
        [H_MB_SC] = &&L_MB_SC, [H_MB_ACQ] = &&L_MB_ACQ, [H_MB_REL] = &&L_MB_REL,
        [H_MB_ACQREL] = &&L_MB_ACQREL, [H_CALL] = &&L_CALL, [H_GOTO_TB] = &&L_GOTO_TB,
        [H_EXIT_INDIRECT] = &&L_EXIT_INDIRECT, [H_ADD2_RI] = &&L_ADD2_RI,
    };
    if (!cpu) {
#ifdef QS_TCG_PROFILE
        if (!handlers && getenv("QS_TCG_PROFILE")) atexit(prof_dump);
#endif
        handlers = table;
        return NULL;
    }
    uint64_t *R = cpu->regs;
    uint8_t *host = cpu->ram->host;
    const uint8_t *code_map = cpu->ram->code_map;
    const uint64_t ram_base = cpu->ram->base, ram_size = cpu->ram->size;
    const Insn *ip = tb->code, *blk = ip;   /* blk: the code of the running block */
#ifdef QS_TCG_PROFILE
    unsigned prof_prev = H_GOTO_TB;
#endif

    /* Every handler ends with its own copy of the dispatch (one indirect jump per
     * handler, so the host predicts each from its own history). */
#define DISPATCH() do { PROF(ip); goto *ip->h; } while (0)
#define NEXT() do { ip++; DISPATCH(); } while (0)
    /* Leave the block through the GOTO_TB instruction g: to the chained block if there
     * is one and no exit is requested, else back to the execution loop.  A chain slot
     * holds the next block's code, whose header (code[-1]) names its TB. */
#define GOTO_TB(g)                                                             \
    do {                                                                       \
        const Insn *g_ = (g);                                                  \
        cpu->icount += g_->c;                                                  \
        const Insn *n_ = __atomic_load_n((const Insn *const *)&g_->aux, __ATOMIC_ACQUIRE); \
        if (__builtin_expect(n_ != NULL, 1) &&                                 \
            !atomic_load_explicit(&cpu->exit_req, memory_order_relaxed)) {     \
            blk = ip = n_;                                                     \
            DISPATCH();                                                        \
        }                                                                      \
        cpu->pc = (uint64_t)g_->imm;                                           \
        *slot = g_->b;                                                         \
        return (TB *)(uintptr_t)blk[-1].aux;                                   \
    } while (0)
    DISPATCH();

L_MOVI: R[ip->d] = (uint64_t)ip->imm; NEXT();
L_MOV: R[ip->d] = R[ip->a]; NEXT();
L_EXT32S: R[ip->d] = (uint64_t)(int64_t)(int32_t)R[ip->a]; NEXT();
L_EXT32U: R[ip->d] = (uint32_t)R[ip->a]; NEXT();
L_BR: ip = (const Insn *)ip->aux; DISPATCH();

#define BIN(n, expr)                                                           \
L_##n##_RR: { uint64_t a = R[ip->a], b = R[ip->b]; R[ip->d] = (expr); NEXT(); } \
L_##n##_RI: { uint64_t a = R[ip->a], b = (uint64_t)ip->imm; R[ip->d] = (expr); NEXT(); }
#define SX32(v) ((uint64_t)(int64_t)(int32_t)(v))
    BIN(ADD, a + b)
    BIN(SUB, a - b)
    BIN(AND, a & b)
    BIN(OR, a | b)
    BIN(XOR, a ^ b)
    BIN(SHL, a << (b & 63))
    BIN(SHR, a >> (b & 63))
    BIN(SAR, (uint64_t)((int64_t)a >> (b & 63)))
    BIN(MUL, a * b)
    BIN(MULH, tcg_mulh(a, b))
    BIN(MULHU, tcg_mulhu(a, b))
    BIN(MULHSU, tcg_mulhsu(a, b))
    BIN(DIV, tcg_div(a, b))
    BIN(DIVU, tcg_divu(a, b))
    BIN(REM, tcg_rem(a, b))
    BIN(REMU, tcg_remu(a, b))
    /* two adds of constants in a row (pointer and counter updates): d = a + imm, then
     * c = b + aux */
L_ADD2_RI:
    R[ip->d] = R[ip->a] + (uint64_t)ip->imm;
    R[ip->c] = R[ip->b] + ip->aux;
    NEXT();
    BIN(ADDW, SX32(a + b))
    BIN(SUBW, SX32(a - b))
    BIN(MULW, SX32(a * b))
    BIN(SHLW, SX32(a << (b & 63)))
    BIN(SRLW, SX32((uint32_t)a >> (b & 31)))
    BIN(SRAW, (uint64_t)((int64_t)(int32_t)a >> (b & 31)))

    /* BR_*: a conditional jump inside the block; BRX_*: both ways leave the block (to
     * GOTO_TB instructions: the next one, or the target) without another dispatch. */
#define CMP(n, expr)                                                           \
L_SET_##n##_RR: { uint64_t a = R[ip->a], b = R[ip->b]; R[ip->d] = (expr); NEXT(); } \
L_SET_##n##_RI: { uint64_t a = R[ip->a], b = (uint64_t)ip->imm; R[ip->d] = (expr); NEXT(); } \
L_BR_##n##_RR: { uint64_t a = R[ip->a], b = R[ip->b];                          \
    if (expr) { ip = (const Insn *)ip->aux; DISPATCH(); } NEXT(); }            \
L_BR_##n##_RI: { uint64_t a = R[ip->a], b = (uint64_t)ip->imm;                 \
    if (expr) { ip = (const Insn *)ip->aux; DISPATCH(); } NEXT(); }            \
L_BRX_##n##_RR: { uint64_t a = R[ip->a], b = R[ip->b];                         \
    GOTO_TB((expr) ? (const Insn *)ip->aux : ip + 1); }                        \
L_BRX_##n##_RI: { uint64_t a = R[ip->a], b = (uint64_t)ip->imm;                \
    GOTO_TB((expr) ? (const Insn *)ip->aux : ip + 1); }
    CMP(EQ, a == b)
    CMP(NE, a != b)
    CMP(LT, (int64_t)a < (int64_t)b)
    CMP(GE, (int64_t)a >= (int64_t)b)
    CMP(LTU, a < b)
    CMP(GEU, a >= b)

#define LD(n, T, conv, mo)                                                     \
L_##n: {                                                                       \
        uint64_t addr = R[ip->a] + (uint64_t)ip->imm, off = addr - ram_base;   \
        if (__builtin_expect(off <= ram_size - sizeof(T), 1)) {                \
            T v; memcpy(&v, host + off, sizeof(T)); R[ip->d] = conv(v);        \
        } else {                                                               \
            R[ip->d] = tcg_load_slow(cpu, addr, mo, ip->aux);                  \
        }                                                                      \
        NEXT();                                                                \
    }
#define U64(v) ((uint64_t)(v))
#define S64(v) ((uint64_t)(int64_t)(v))
    LD(LD8U, uint8_t, U64, QS_TCG_MO_8)
    LD(LD8S, int8_t, S64, QS_TCG_MO_8 | QS_TCG_MO_SIGN)
    LD(LD16U, uint16_t, U64, QS_TCG_MO_16)
    LD(LD16S, int16_t, S64, QS_TCG_MO_16 | QS_TCG_MO_SIGN)
    LD(LD32U, uint32_t, U64, QS_TCG_MO_32)
    LD(LD32S, int32_t, S64, QS_TCG_MO_32 | QS_TCG_MO_SIGN)
    LD(LD64, uint64_t, U64, QS_TCG_MO_64)
L_LDGEN: R[ip->d] = ld_generic(cpu, R[ip->a] + (uint64_t)ip->imm, ip->c, ip->aux); NEXT();

#define ST(n, T, mo)                                                           \
L_##n: {                                                                       \
        uint64_t addr = R[ip->a] + (uint64_t)ip->imm, off = addr - ram_base;   \
        T v = (T)R[ip->b];                                                     \
        if (__builtin_expect(off <= ram_size - sizeof(T) && !code_map[off >> CODE_SHIFT], 1)) \
            memcpy(host + off, &v, sizeof(T));                                 \
        else                                                                   \
            tcg_store_slow(cpu, addr, mo, v, ip->aux);                         \
        NEXT();                                                                \
    }
    ST(ST8, uint8_t, QS_TCG_MO_8)
    ST(ST16, uint16_t, QS_TCG_MO_16)
    ST(ST32, uint32_t, QS_TCG_MO_32)
    ST(ST64, uint64_t, QS_TCG_MO_64)
L_STGEN: st_generic(cpu, R[ip->a] + (uint64_t)ip->imm, ip->c, R[ip->b], ip->aux); NEXT();

L_AMO: {
        uint64_t v = amo_exec(cpu, R[ip->a], ip->c, (unsigned)ip->imm, R[ip->b], ip->aux);
        R[ip->d] = v;
        NEXT();
    }
L_CMPXCHG: {
        uint64_t v = cmpxchg_exec(cpu, R[ip->a], (unsigned)ip->imm, R[ip->b], R[ip->c],
                                  ip->aux);
        R[ip->d] = v;
        NEXT();
    }
L_MB_SC: atomic_thread_fence(memory_order_seq_cst); NEXT();
L_MB_ACQ: atomic_thread_fence(memory_order_acquire); NEXT();
L_MB_REL: atomic_thread_fence(memory_order_release); NEXT();
L_MB_ACQREL: atomic_thread_fence(memory_order_acq_rel); NEXT();
L_CALL: {
        uint64_t v = tcg_helper_call(cpu, (unsigned)ip->imm, R[ip->a], R[ip->b], ip->aux);
        R[ip->d] = v;   /* d is a scratch slot when the result is unused */
        NEXT();
    }
L_GOTO_TB: GOTO_TB(ip);
L_EXIT_INDIRECT: {
        cpu->icount += ip->c;
        uint64_t pc = R[ip->a];
        TB *n = cpu->jc[jc_hash(pc)];
        if (n && n->pc == pc && atomic_load_explicit(&n->valid, memory_order_relaxed) &&
            !atomic_load_explicit(&cpu->exit_req, memory_order_relaxed)) {
            blk = ip = n->code;
            DISPATCH();
        }
        cpu->pc = pc;
        *slot = -1;
        return (TB *)(uintptr_t)blk[-1].aux;
    }
}

/* ---- code generation ---- */

typedef struct Gen {
    const QsTcgBlock *b;
    uint16_t *slot;          /* temp -> frame slot (locals and globals) */
    GArray *code;            /* Insn */
    uint32_t *label_at;      /* label -> insn index */
    uint32_t *nuse;          /* temp -> number of ops reading it */
    uint32_t ninsns;
} Gen;

static bool cst(const Gen *g, uint32_t t, int64_t *v)
{
    if (t == QS_TCG_NO_ARG || t >= g->b->ntemps) { *v = 0; return true; }
    if (g->b->temps[t].kind != QS_TCG_TEMP_CONST) return false;
    *v = g->b->temps[t].val;
    return true;
}

static void set_handler(Insn *i, unsigned h)
{
    i->h = handlers[h];
#ifdef QS_TCG_PROFILE
    i->hid = h;
#endif
}

static Insn *put(Gen *g, unsigned h)
{
    Insn in = { 0 };
    set_handler(&in, h);
    g_array_append_val(g->code, in);
    return &g_array_index(g->code, Insn, g->code->len - 1);
}

/* The frame slot holding temp t; a constant is loaded into scratch slot k first
 * (constant 0 is x0's slot, always zero). */
static uint16_t in_slot(Gen *g, uint32_t t, unsigned k)
{
    int64_t v;
    if (cst(g, t, &v)) {
        if (v == 0) return SLOT_ZERO;
        Insn *i = put(g, H_MOVI);
        i->d = SLOT_SCRATCH + k;
        i->imm = v;
        return SLOT_SCRATCH + k;
    }
    return g->slot[t];
}

static uint16_t out_slot(Gen *g, uint32_t t)
{
    return t == QS_TCG_NO_ARG || t >= g->b->ntemps ? SLOT_SCRATCH + 2 : g->slot[t];
}

/* A binary op with handlers h (both operands in slots) and h + 1 (b a constant) into
 * slot d. */
static void emit_bin(Gen *g, unsigned h, bool commut, uint32_t a, uint32_t b, uint16_t d)
{
    int64_t va, vb;
    if (commut && cst(g, a, &va) && !cst(g, b, &vb)) { uint32_t t = a; a = b; b = t; }
    if (cst(g, b, &vb)) {
        uint16_t sa = in_slot(g, a, 0);
        Insn *i = put(g, h + 1);
        i->d = d;
        i->a = sa;
        i->imm = vb;
        return;
    }
    uint16_t sa = in_slot(g, a, 0), sb = in_slot(g, b, 1);
    Insn *i = put(g, h);
    i->d = d;
    i->a = sa;
    i->b = sb;
}

static bool commutative(unsigned opc)
{
    return opc == QS_TCG_ADD || opc == QS_TCG_AND || opc == QS_TCG_OR || opc == QS_TCG_XOR ||
           opc == QS_TCG_MUL || opc == QS_TCG_MULH || opc == QS_TCG_MULHU;
}

static void gen_binop(Gen *g, const QsTcgOp *op)
{
    static const uint8_t rr[] = {
#define E(n) [QS_TCG_##n] = H_##n##_RR,
        BINOPS(E)
#undef E
    };
    emit_bin(g, rr[op->opc], commutative(op->opc), op->args[1], op->args[2],
             out_slot(g, op->args[0]));
}

/* A LOCAL temp that exactly one op reads (so a superinstruction may skip storing it). */
static bool single_use(const Gen *g, uint32_t t)
{
    return t < g->b->ntemps && g->b->temps[t].kind == QS_TCG_TEMP_LOCAL && g->nuse[t] == 1;
}

/* Superinstructions for 32-bit ops: returns how many ops starting at k it replaced (0 if
 * none matches).
 *   add/sub/mul/shl t, a, b; ext32s d, t                  -> addw/subw/mulw/shlw d, a, b
 *   ext32u t1, a; shr t2, t1, b; ext32s d, t2             -> srlw d, a, b
 *   ext32s t1, a; sar t2, t1, b; ext32s d, t2             -> sraw d, a, b
 * and two adds of constants (possibly in two guest instructions) -> add2 */
static unsigned gen_fused(Gen *g, const QsTcgOp *ops, uint32_t k, uint32_t n)
{
    if (k + 1 >= n) return 0;
    const QsTcgOp *o0 = &ops[k], *o1 = &ops[k + 1];
    if (o1->opc == QS_TCG_EXT32S && o1->args[1] == o0->args[0] && single_use(g, o0->args[0])) {
        uint16_t d = out_slot(g, o1->args[0]);
        int64_t vb;
        switch (o0->opc) {
        case QS_TCG_ADD:
            emit_bin(g, H_ADDW_RR, true, o0->args[1], o0->args[2], d);
            return 2;
        case QS_TCG_SUB:
            if (cst(g, o0->args[2], &vb)) {
                Insn *i;
                uint16_t sa = in_slot(g, o0->args[1], 0);
                i = put(g, H_ADDW_RI);
                i->d = d;
                i->a = sa;
                i->imm = (int64_t)(0 - (uint64_t)vb);
                return 2;
            }
            emit_bin(g, H_SUBW_RR, false, o0->args[1], o0->args[2], d);
            return 2;
        case QS_TCG_MUL:
            emit_bin(g, H_MULW_RR, true, o0->args[1], o0->args[2], d);
            return 2;
        case QS_TCG_SHL:
            emit_bin(g, H_SHLW_RR, false, o0->args[1], o0->args[2], d);
            return 2;
        default:
            break;
        }
    }
    int64_t v0, v1;
    if (o0->opc == QS_TCG_ADD && cst(g, o0->args[2], &v0) && !cst(g, o0->args[1], &v1)) {
        uint32_t j = k + 1;
        while (j < n && ops[j].opc == QS_TCG_INSN_START) j++;
        const QsTcgOp *oj = &ops[j < n ? j : k];
        bool next_w = j + 1 < n && ops[j + 1].opc == QS_TCG_EXT32S;   /* addiw: fused above */
        if (j < n && oj->opc == QS_TCG_ADD && cst(g, oj->args[2], &v1) &&
            !cst(g, oj->args[1], &v0) && !next_w) {
            cst(g, o0->args[2], &v0);
            Insn *i = put(g, H_ADD2_RI);
            i->d = out_slot(g, o0->args[0]);
            i->a = g->slot[o0->args[1]];
            i->imm = v0;
            i->c = out_slot(g, oj->args[0]);
            i->b = g->slot[oj->args[1]];
            i->aux = (uint64_t)v1;
            return j - k + 1;
        }
    }
    if (k + 2 >= n) return 0;
    const QsTcgOp *o2 = &ops[k + 2];
    bool srl = o0->opc == QS_TCG_EXT32U && o1->opc == QS_TCG_SHR;
    bool sra = o0->opc == QS_TCG_EXT32S && o1->opc == QS_TCG_SAR;
    if ((srl || sra) && o1->args[1] == o0->args[0] && single_use(g, o0->args[0]) &&
        o2->opc == QS_TCG_EXT32S && o2->args[1] == o1->args[0] && single_use(g, o1->args[0])) {
        emit_bin(g, srl ? H_SRLW_RR : H_SRAW_RR, false, o0->args[1], o1->args[2],
                 out_slot(g, o2->args[0]));
        return 3;
    }
    return 0;
}

static void gen_cmp(Gen *g, const QsTcgOp *op, bool branch)
{
    uint32_t a = branch ? op->args[0] : op->args[1], b = branch ? op->args[1] : op->args[2];
    unsigned base = H_SET_EQ_RR + 6 * op->cond + (branch ? 2 : 0);
    int64_t vb;
    Insn *i;
    uint16_t sa = in_slot(g, a, 0);
    if (cst(g, b, &vb)) {
        i = put(g, base + 1);
        i->imm = vb;
    } else {
        uint16_t sb = in_slot(g, b, 1);
        i = put(g, base);
        i->b = sb;
    }
    i->a = sa;
    if (branch) i->aux = op->args[2];   /* label, resolved later */
    else i->d = out_slot(g, op->args[0]);
}

/* Split a constant address into x0 + offset. */
static uint16_t addr_slot(Gen *g, uint32_t t, int64_t *off)
{
    int64_t v;
    if (cst(g, t, &v)) { *off += v; return SLOT_ZERO; }
    return g->slot[t];
}

static void gen_op(Gen *g, const QsTcgOp *op)
{
    Insn *i;
    int64_t v;
    switch (op->opc) {
    case QS_TCG_NOP: case QS_TCG_INSN_START:
        return;
    case QS_TCG_MOV:
        if (cst(g, op->args[1], &v)) {
            i = put(g, H_MOVI);
            i->imm = v;
        } else {
            i = put(g, H_MOV);
            i->a = g->slot[op->args[1]];
        }
        i->d = out_slot(g, op->args[0]);
        return;
    case QS_TCG_ADD ... QS_TCG_REMU:
        gen_binop(g, op);
        return;
    case QS_TCG_EXT32S: case QS_TCG_EXT32U: {
        uint16_t sa = in_slot(g, op->args[1], 0);
        i = put(g, op->opc == QS_TCG_EXT32S ? H_EXT32S : H_EXT32U);
        i->a = sa;
        i->d = out_slot(g, op->args[0]);
        return;
    }
    case QS_TCG_SETCOND:
        gen_cmp(g, op, false);
        return;
    case QS_TCG_BRCOND:
        gen_cmp(g, op, true);
        return;
    case QS_TCG_BR:
        i = put(g, H_BR);
        i->aux = op->args[0];
        return;
    case QS_TCG_LABEL:
        g->label_at[op->args[0]] = g->code->len;
        return;
    case QS_TCG_LD: {
        static const uint8_t h[8] = { H_LD8U, H_LD16U, H_LD32U, H_LD64,
                                      H_LD8S, H_LD16S, H_LD32S, H_LD64 };
        int64_t off = op->imm;
        uint16_t sa = addr_slot(g, op->args[1], &off);
        bool plain = !(op->memop & ~(QS_TCG_MO_SIZE_MASK | QS_TCG_MO_SIGN));
        i = put(g, plain ? h[op->memop & 7] : H_LDGEN);
        i->d = out_slot(g, op->args[0]);
        i->a = sa;
        i->imm = off;
        i->c = op->memop;
        i->aux = op->pc;
        return;
    }
    case QS_TCG_ST: {
        static const uint8_t h[4] = { H_ST8, H_ST16, H_ST32, H_ST64 };
        int64_t off = op->imm;
        uint16_t sb = in_slot(g, op->args[2], 1);
        uint16_t sa = addr_slot(g, op->args[1], &off);
        bool plain = !(op->memop & ~QS_TCG_MO_SIZE_MASK);
        i = put(g, plain ? h[op->memop & 3] : H_STGEN);
        i->a = sa;
        i->b = sb;
        i->imm = off;
        i->c = op->memop;
        i->aux = op->pc;
        return;
    }
    case QS_TCG_AMO: {
        uint16_t sa = in_slot(g, op->args[1], 0), sb = in_slot(g, op->args[2], 1);
        i = put(g, H_AMO);
        i->d = out_slot(g, op->args[0]);
        i->a = sa;
        i->b = sb;
        i->c = op->memop;
        i->imm = op->cond;
        i->aux = op->pc;
        return;
    }
    case QS_TCG_CMPXCHG: {
        uint16_t sa = in_slot(g, op->args[1], 0), sb = in_slot(g, op->args[2], 1);
        uint16_t sc = in_slot(g, op->args[3], 2);
        i = put(g, H_CMPXCHG);
        i->d = out_slot(g, op->args[0]);
        i->a = sa;
        i->b = sb;
        i->c = sc;
        i->imm = op->memop;
        i->aux = op->pc;
        return;
    }
    case QS_TCG_MB: {
        unsigned mb = op->memop, h;
        if (!(mb & (QS_TCG_MB_ALL | QS_TCG_MB_SC | QS_TCG_MB_ACQ | QS_TCG_MB_REL))) return;
        if (mb & (QS_TCG_MB_ST_LD | QS_TCG_MB_SC)) h = H_MB_SC;
        else if ((mb & QS_TCG_MB_ACQ) && !(mb & QS_TCG_MB_REL)) h = H_MB_ACQ;
        else if ((mb & QS_TCG_MB_REL) && !(mb & QS_TCG_MB_ACQ)) h = H_MB_REL;
        else h = H_MB_ACQREL;
        put(g, h);
        return;
    }
    case QS_TCG_CALL: {
        uint16_t sa = in_slot(g, op->args[1], 0), sb = in_slot(g, op->args[2], 1);
        i = put(g, H_CALL);
        i->d = out_slot(g, op->args[0]);
        i->a = sa;
        i->b = sb;
        i->imm = op->imm;
        i->aux = op->pc;
        return;
    }
    case QS_TCG_GOTO_TB:
        i = put(g, H_GOTO_TB);
        i->b = op->args[0] & 1;
        i->c = g->ninsns;
        i->imm = op->imm;
        i->aux = 0;
        return;
    case QS_TCG_EXIT_INDIRECT: {
        uint16_t sa = in_slot(g, op->args[0], 0);
        i = put(g, H_EXIT_INDIRECT);
        i->a = sa;
        i->c = g->ninsns;
        return;
    }
    }
}

static bool is_branch_handler(const void *h)
{
    if (h == handlers[H_BR]) return true;
    for (unsigned c = 0; c < 6; c++) {
        if (h == handlers[H_BR_EQ_RR + 6 * c] || h == handlers[H_BR_EQ_RI + 6 * c])
            return true;
    }
    return false;
}

bool tcg_backend_gen(TB *tb, const QsTcgBlock *b)
{
    Gen g = { .b = b, .ninsns = b->ninsns };
    g.slot = g_new0(uint16_t, b->ntemps + 1);
    uint32_t next = QS_TCG_NB_GLOBALS;
    for (uint32_t t = 0; t < b->ntemps; t++) {
        if (b->temps[t].kind == QS_TCG_TEMP_GLOBAL) g.slot[t] = t < QS_TCG_NB_GLOBALS ? t : 0;
        else if (b->temps[t].kind == QS_TCG_TEMP_LOCAL) {
            if (next >= QS_TCG_NB_GLOBALS + TCG_MAX_LOCALS) { g_free(g.slot); return false; }
            g.slot[t] = next++;
        }
    }
    g.nuse = g_new0(uint32_t, b->ntemps + 1);
    for (uint32_t k = 0; k < b->nops; k++) {
        uint32_t uses[3];
        unsigned nu = qs_tcg_op_uses(&b->ops[k], uses);
        for (unsigned u = 0; u < nu; u++) if (uses[u] < b->ntemps) g.nuse[uses[u]]++;
    }
    g.code = g_array_sized_new(FALSE, FALSE, sizeof(Insn), b->nops + 8);
    g.label_at = g_new0(uint32_t, b->nlabels + 1);
    put(&g, H_GOTO_TB)->h = NULL;    /* the header: never run, its aux names the TB */
    for (uint32_t k = 0; k < b->nops;) {
        unsigned used = gen_fused(&g, b->ops, k, b->nops);
        if (!used) {
            gen_op(&g, &b->ops[k]);
            used = 1;
        }
        k += used;
    }
    tb->ncode = g.code->len - 1;
    Insn *all = (Insn *)g_array_free(g.code, FALSE);
    all[0].aux = (uint64_t)(uintptr_t)tb;
    tb->code = all + 1;
    tb->jmp_insn[0] = tb->jmp_insn[1] = NULL;
    for (uint32_t k = 0; k < tb->ncode; k++) {
        Insn *in = &tb->code[k];
        if (is_branch_handler(in->h)) {
            uint32_t l = (uint32_t)in->aux;
            in->aux = (uint64_t)(uintptr_t)&all[l < b->nlabels ? g.label_at[l] : 1];
        }
        if (in->h == handlers[H_GOTO_TB] && !tb->jmp_insn[in->b]) tb->jmp_insn[in->b] = in;
    }
    /* A conditional branch whose two ways are block exits leaves the block itself. */
    for (uint32_t k = 0; k + 1 < tb->ncode; k++) {
        Insn *in = &tb->code[k];
        const Insn *to = (const Insn *)(uintptr_t)in->aux;
        if (in->h == handlers[H_BR] || !is_branch_handler(in->h) ||
            in[1].h != handlers[H_GOTO_TB] || to->h != handlers[H_GOTO_TB])
            continue;
        for (unsigned c = 0; c < 6; c++) {
            if (in->h == handlers[H_BR_EQ_RR + 6 * c]) set_handler(in, H_BRX_EQ_RR + 6 * c);
            else if (in->h == handlers[H_BR_EQ_RI + 6 * c]) set_handler(in, H_BRX_EQ_RI + 6 * c);
        }
    }
    g_free(g.label_at);
    g_free(g.nuse);
    g_free(g.slot);
    return true;
}
