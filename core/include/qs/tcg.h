/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TCG intermediate representation and its pass pipeline: what a translation block
 * looks like between the guest front end and the host back end, and how modules insert
 * IR passes at named points of the pipeline. */
#ifndef QS_TCG_H
#define QS_TCG_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * IR model.  A block (QsTcgBlock) is a list of ops over temps.  Every temp is 64 bits.
 *  - GLOBAL temps are guest state that lives across blocks: the 32 RISC-V integer
 *    registers (temp index = register number; x0 is never written, reads of x0 become
 *    constant 0) and the LR/SC reservation (QS_TCG_G_RES_ADDR, QS_TCG_G_RES_VAL).
 *  - LOCAL temps hold intermediate values.  The front end writes each LOCAL temp exactly
 *    once (SSA-like), before any use; passes that create temps must keep that rule.
 *  - CONST temps hold `val` and are never written.
 * Ops are executed in order; BR/BRCOND jump forward to a LABEL in the same block.  A
 * block ends with GOTO_TB or EXIT_INDIRECT on every path.  Ops with side effects (memory,
 * MB, CALL, exits) are never removed by the built-in passes.
 *
 * Memory ordering.  Guest loads/stores/atomics carry QS_TCG_MO_* attributes; MB ops
 * carry a QS_TCG_MB_* set.  The front end emits what the guest's memory model requires
 * (block->guest_mo says which orderings the guest model provides by itself; with RVWMO
 * none, so only the guest's own fences and aq/rl bits produce MB ops; with Ztso the
 * front end adds MB before loads and stores for TSO).  It never looks at the host.  The
 * back end executes every remaining MB with the matching C11 fence; a pass knowing
 * qs_tcg_host_mo() may remove or merge MB ops the host already guarantees.
 */

typedef enum QsTcgOpc {
    QS_TCG_NOP = 0,
    QS_TCG_MOV,        /* d = a */
    QS_TCG_ADD,        /* d = a + b (and so on for the binary ops below) */
    QS_TCG_SUB,
    QS_TCG_AND,
    QS_TCG_OR,
    QS_TCG_XOR,
    QS_TCG_SHL,        /* shifts use the low 6 bits of b */
    QS_TCG_SHR,
    QS_TCG_SAR,
    QS_TCG_MUL,
    QS_TCG_MULH,       /* high 64 bits of signed x signed */
    QS_TCG_MULHU,      /* unsigned x unsigned */
    QS_TCG_MULHSU,     /* signed a x unsigned b */
    QS_TCG_DIV,        /* RISC-V semantics: x/0 = -1, INT64_MIN/-1 = INT64_MIN */
    QS_TCG_DIVU,       /* x/0 = all ones */
    QS_TCG_REM,        /* x%0 = x, INT64_MIN%-1 = 0 */
    QS_TCG_REMU,       /* x%0 = x */
    QS_TCG_EXT32S,     /* d = (int64)(int32)a */
    QS_TCG_EXT32U,     /* d = (uint32)a */
    QS_TCG_SETCOND,    /* d = (a cond b) ? 1 : 0 */
    QS_TCG_BRCOND,     /* if (a cond b) goto label args[2] */
    QS_TCG_BR,         /* goto label args[0] */
    QS_TCG_LABEL,      /* label args[0] */
    QS_TCG_LD,         /* d = mem[a + imm], memop: size, sign, ordering */
    QS_TCG_ST,         /* mem[a + imm] = b */
    QS_TCG_AMO,        /* d = mem[a]; mem[a] = amo_op(d, b), atomically (cond = QsTcgAmoOp) */
    QS_TCG_CMPXCHG,    /* d = mem[a]; if d == b then mem[a] = c, atomically */
    QS_TCG_MB,         /* memory barrier, memop = QS_TCG_MB_* set */
    QS_TCG_CALL,       /* d = helper imm (args a, b, c); see QS_TCG_CALL_* in flags */
    QS_TCG_GOTO_TB,    /* leave the block for guest pc imm through chain slot args[0] */
    QS_TCG_EXIT_INDIRECT, /* leave the block for the guest pc in a */
    QS_TCG_INSN_START, /* start of the guest instruction at pc (no code) */
    QS_TCG_NB_OPS
} QsTcgOpc;

typedef enum QsTcgCond {
    QS_TCG_COND_EQ, QS_TCG_COND_NE,
    QS_TCG_COND_LT, QS_TCG_COND_GE,     /* signed */
    QS_TCG_COND_LTU, QS_TCG_COND_GEU,   /* unsigned */
} QsTcgCond;

typedef enum QsTcgAmoOp {
    QS_TCG_AMO_SWAP, QS_TCG_AMO_ADD, QS_TCG_AMO_AND, QS_TCG_AMO_OR, QS_TCG_AMO_XOR,
    QS_TCG_AMO_MIN, QS_TCG_AMO_MAX, QS_TCG_AMO_MINU, QS_TCG_AMO_MAXU,
} QsTcgAmoOp;

/* memop of LD/ST/AMO/CMPXCHG */
#define QS_TCG_MO_SIZE_MASK 0x3      /* log2 of the size in bytes */
#define QS_TCG_MO_8   0
#define QS_TCG_MO_16  1
#define QS_TCG_MO_32  2
#define QS_TCG_MO_64  3
#define QS_TCG_MO_SIGN  0x04         /* sign-extend the loaded (or old) value */
#define QS_TCG_MO_ALIGN 0x08         /* misaligned address traps */
#define QS_TCG_MO_ACQ   0x10         /* acquire: later accesses stay after this one */
#define QS_TCG_MO_REL   0x20         /* release: earlier accesses stay before this one */
#define QS_TCG_MO_SC    0x40         /* sequentially consistent (aq and rl together) */

/* memop of MB: which earlier->later orderings must hold across the barrier, and its kind */
#define QS_TCG_MB_LD_LD 0x01
#define QS_TCG_MB_LD_ST 0x02
#define QS_TCG_MB_ST_LD 0x04
#define QS_TCG_MB_ST_ST 0x08
#define QS_TCG_MB_ALL   0x0f
#define QS_TCG_MB_ACQ   0x10         /* acquire barrier (after an acquiring access) */
#define QS_TCG_MB_REL   0x20         /* release barrier (before a releasing access) */
#define QS_TCG_MB_SC    0x40         /* sequentially consistent barrier */

/* Memory models, as the QS_TCG_MB_LD_LD.. orderings they provide without any barrier. */
#define QS_TCG_MODEL_RVWMO 0
#define QS_TCG_MODEL_TSO   (QS_TCG_MB_LD_LD | QS_TCG_MB_LD_ST | QS_TCG_MB_ST_ST)
#define QS_TCG_MODEL_SC    QS_TCG_MB_ALL

/* flags of CALL */
#define QS_TCG_CALL_MAY_TRAP  0x1    /* may raise a guest exception */
#define QS_TCG_CALL_SIDE_EFF  0x2    /* has side effects: never removed */
#define QS_TCG_CALL_END_TB    0x4    /* changes state the block depends on (mstatus..) */

typedef enum QsTcgTempKind {
    QS_TCG_TEMP_GLOBAL,
    QS_TCG_TEMP_LOCAL,
    QS_TCG_TEMP_CONST,
} QsTcgTempKind;

#define QS_TCG_G_RES_ADDR 32         /* LR/SC reservation address (-1: none) */
#define QS_TCG_G_RES_VAL  33         /* value loaded by LR */
#define QS_TCG_NB_GLOBALS 34

typedef struct QsTcgTemp {
    uint8_t kind;                    /* QsTcgTempKind */
    int64_t val;                     /* CONST: the value */
} QsTcgTemp;

typedef struct QsTcgOp {
    uint8_t opc;                     /* QsTcgOpc */
    uint8_t cond;                    /* QsTcgCond (SETCOND/BRCOND), QsTcgAmoOp (AMO) */
    uint16_t memop;                  /* QS_TCG_MO_* or QS_TCG_MB_*; CALL: QS_TCG_CALL_* */
    uint32_t args[4];                /* d, a, b, c (temp indexes) or label/slot numbers */
    int64_t imm;                     /* offset, exit pc, helper number */
    uint64_t pc;                     /* guest pc of the instruction the op belongs to */
} QsTcgOp;

#define QS_TCG_NO_ARG UINT32_MAX

/* One translation block's IR.  Passes may read every field and edit ops in place;
 * use the functions below to add temps and ops. */
struct QsTcgBlock {
    uint64_t pc;                     /* guest pc of the first instruction */
    uint32_t ninsns;                 /* guest instructions in the block */
    uint32_t guest_mo;               /* QS_TCG_MODEL_* of the guest */
    QsTcgOp *ops;
    uint32_t nops, ops_cap;
    QsTcgTemp *temps;
    uint32_t ntemps, temps_cap;
    uint32_t nlabels;
};
typedef struct QsTcgBlock QsTcgBlock;

/* Orderings the host (this back end) provides without fences, as QS_TCG_MODEL_*. */
uint32_t qs_tcg_host_mo(void);

/* Building and editing IR (also for passes). */
uint32_t qs_tcg_temp_new(QsTcgBlock *b);                 /* a LOCAL temp */
uint32_t qs_tcg_const(QsTcgBlock *b, int64_t val);       /* a CONST temp */
uint32_t qs_tcg_label_new(QsTcgBlock *b);
/* Append / insert an op (before index pos); returns its index. */
uint32_t qs_tcg_op_append(QsTcgBlock *b, const QsTcgOp *op);
uint32_t qs_tcg_op_insert(QsTcgBlock *b, uint32_t pos, const QsTcgOp *op);
/* Turn an op into a NOP (removed for good by the dead-code pass). */
void qs_tcg_op_remove(QsTcgBlock *b, uint32_t idx);
/* Whether an op writes a temp (always args[0]); the temps it reads, stored in uses[]
 * (at most 3), and their number.  Most ops read args[1..n]; BRCOND reads args[0..1]
 * and EXIT_INDIRECT args[0]. */
bool qs_tcg_op_has_def(const QsTcgOp *op);
unsigned qs_tcg_op_uses(const QsTcgOp *op, uint32_t uses[3]);
bool qs_tcg_op_has_side_effects(const QsTcgOp *op);
const char *qs_tcg_op_name(unsigned opc);
/* Text dump, one op per line (the format of -d op). */
void qs_tcg_block_dump(const QsTcgBlock *b, GString *out);

/* ---- the pass pipeline ---- */

/* Named points of the pipeline a pass can be inserted at. */
#define QS_TCG_POINT_FRONTEND "after-frontend"   /* raw IR as the guest front end wrote it */
#define QS_TCG_POINT_OPTIMIZE "after-optimize"   /* after constant folding and DCE */
#define QS_TCG_POINT_BACKEND  "before-backend"   /* last chance before code generation */

typedef struct QsTcgPass {
    const char *name;
    const char *point;   /* one of QS_TCG_POINT_* */
    int priority;        /* lower runs first among passes at the same point */
    void (*run)(QsTcgBlock *tb, void *opaque);
} QsTcgPass;

/* Passes run while translating, possibly from several hart threads one at a time (the
 * translator holds a lock); they must not keep pointers into the block. */
bool qs_tcg_pass_register(const QsTcgPass *pass, void *opaque, GError **errp);
/* Passes at a point in run order (array of const QsTcgPass *). */
GPtrArray *qs_tcg_pass_list(const char *point);
/* Run every pass registered at point on tb. */
void qs_tcg_passes_run(const char *point, QsTcgBlock *tb);

/* ---- the CPU seen by devices (interrupt lines, time) ---- */

/* Machine-mode interrupt numbers (bits of mip). */
#define QS_CPU_IRQ_MSI 3
#define QS_CPU_IRQ_MTI 7
#define QS_CPU_IRQ_MEI 11

/* Raise or lower an interrupt line of a hart (any thread); wakes it from wfi. */
void qs_cpu_set_irq(unsigned hart, unsigned irq, bool level);
/* The source of the `time` CSR (the CLINT's mtime); without one, reading time traps. */
void qs_cpu_set_time_source(uint64_t (*read_time)(void *opaque), void *opaque);

#endif
