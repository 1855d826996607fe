/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the TCG files share: the hart state, translation blocks and their cache, the
 * front end (RISC-V -> IR), the pipeline, the back end (IR -> threaded code) and helpers. */
#ifndef QS_TCG_INTERNAL_H
#define QS_TCG_INTERNAL_H

#include <setjmp.h>
#include <stdio.h>
#include <stdatomic.h>
#include "qs/tcg.h"

/* Limits of one block: guest instructions, and frame slots for LOCAL temps. */
#define TCG_MAX_INSNS 64
#define TCG_MAX_LOCALS 1024
#define TCG_SCRATCH 3
#define TCG_FRAME_SLOTS (QS_TCG_NB_GLOBALS + TCG_MAX_LOCALS + TCG_SCRATCH)

#define JC_BITS 12
#define JC_SIZE (1u << JC_BITS)

/* Exception causes (mcause without the interrupt bit). */
enum {
    EXC_INSN_MISALIGNED = 0, EXC_INSN_ACCESS = 1, EXC_ILLEGAL = 2, EXC_BREAKPOINT = 3,
    EXC_LOAD_MISALIGNED = 4, EXC_LOAD_ACCESS = 5, EXC_STORE_MISALIGNED = 6,
    EXC_STORE_ACCESS = 7, EXC_ECALL_M = 11,
};

typedef struct TB TB;
typedef struct QsCpu QsCpu;

/* One threaded-code instruction of the interpreter. */
typedef struct Insn {
    const void *h;              /* handler (computed-goto label) */
    uint16_t d, a, b, c;        /* frame slots, or small numbers */
    int64_t imm;
    uint64_t aux;               /* guest pc, branch target, or (GOTO_TB) the chained
                                 * block's code (atomic; NULL: not chained) */
#ifdef QS_TCG_PROFILE
    unsigned hid;               /* handler number, for the profile counters */
#endif
} Insn;

struct TB {
    uint64_t pc, pc_end;        /* guest code [pc, pc_end) */
    uint32_t ninsns;
    Insn *code;                 /* ncode instructions; code[-1] is a header whose aux is
                                 * this TB */
    uint32_t ncode;
    Insn *jmp_insn[2];          /* GOTO_TB instructions, by slot (or NULL) */
    TB *jmp_dest[2];            /* what each slot is linked to (under the TB lock) */
    GPtrArray *jmp_in;          /* (TB * | slot) jumping here (under the TB lock) */
    atomic_int valid;
    uint64_t page;              /* RAM page number of the code */
    uint64_t line_first, line_last;   /* code_map lines the code covers */
    uint64_t retire_gen;
};

/* Stores are checked against translated code at this granularity (a block is at most
 * TCG_MAX_INSNS * 4 = 256 bytes, so it covers at most two lines). */
#define CODE_SHIFT 8

/* Guest RAM as the CPU sees it: one contiguous block with a host pointer. */
typedef struct TcgRam {
    uint8_t *host;
    uint64_t base, size;
    uint8_t *code_map;          /* per 2^CODE_SHIFT bytes: translated code may live there */
} TcgRam;

/* Slow-path bus for everything that is not RAM (MMIO); returns false on a bus error. */
typedef struct TcgBus {
    bool (*load)(void *opaque, uint64_t addr, unsigned size, uint64_t *val);
    bool (*store)(void *opaque, uint64_t addr, unsigned size, uint64_t val);
    void *opaque;
} TcgBus;

enum { HART_RUNNING, HART_WFI, HART_STUCK, HART_DONE };

struct QsCpu {
    uint64_t regs[TCG_FRAME_SLOTS];   /* x0..x31, reservation, then block locals */
    uint64_t pc;
    uint64_t icount;                  /* guest instructions retired (at block exits) */
    atomic_uint exit_req;             /* non-zero: leave the execution loop */
    _Atomic uint64_t mip;
    uint64_t mstatus, mtvec, mepc, mcause, mtval, mie, mscratch, mcounteren;
    uint64_t mhartid;
    TcgRam *ram;
    const TcgBus *bus;
    struct TcgMachine *mach;
    int state;                        /* HART_* */
    jmp_buf jmp;
    TB *jc[JC_SIZE];
    uint64_t jc_gen;                  /* invalidation generation jc was filled in */
    atomic_ullong quiescent_gen;
    atomic_int online;                /* may be running translated code */
    GThread *thread;
};

/* mstatus bits we implement (M-mode only: MPP reads as M). */
#define MSTATUS_MIE  (1ull << 3)
#define MSTATUS_MPIE (1ull << 7)
#define MSTATUS_MPP  (3ull << 11)

/* Helpers reachable from CALL ops (imm = number).  Signature: see tcg_helper_call. */
enum {
    HELPER_CSR,          /* a = value, b = csr | op << 12 | write << 14; returns old */
    HELPER_ECALL,
    HELPER_EBREAK,
    HELPER_ILLEGAL,      /* a = instruction bits */
    HELPER_MRET,         /* returns the new pc */
    HELPER_WFI,
    HELPER_FENCE_I,
    HELPER_MISALIGNED_JUMP, /* a = target */
    HELPER_NB
};

/* ---- the translator and cache (tb.c) ---- */
typedef struct TcgOptions {
    bool ztso;
    bool log_op, log_op_opt, log_in_asm;
    FILE *log;
} TcgOptions;

typedef struct TcgMachine {
    TcgRam ram;
    const TcgBus *bus;
    TcgOptions opts;
    unsigned nharts;
    QsCpu **harts;
} TcgMachine;

typedef struct TcgStats {
    uint64_t translated, invalidated, chained, flushes, live, garbage;
} TcgStats;

void tcg_tb_init(void);
void tcg_tb_set_machine(TcgMachine *m);
void tcg_tb_lock(void);
void tcg_tb_unlock(void);
void tcg_tb_invalidate_page_locked(TcgRam *ram, uint64_t off);
TcgStats tcg_tb_stats(void);
/* Find or translate the block at pc (raises an instruction fault through cpu->jmp). */
TB *tcg_tb_lookup(QsCpu *cpu, uint64_t pc);
/* Link slot of from to to (no-op if either was invalidated). */
void tcg_tb_link(TB *from, int slot, TB *to);
/* A store to RAM offset off hit a line with translated code: retire the blocks there. */
void tcg_tb_invalidate_page(TcgRam *ram, uint64_t off);
void tcg_tb_flush(TcgRam *ram);
/* Called by a hart outside of translated code: refresh its jump cache, free garbage. */
void tcg_tb_quiescent(QsCpu *cpu);
void tcg_tb_free_all(void);

/* ---- front end (riscv-translate.c) ---- */
/* Translate guest code at pc into b (fetching through ram).  Returns false if the very
 * first instruction cannot be fetched (instruction access fault). */
bool tcg_riscv_translate(QsTcgBlock *b, const TcgRam *ram, uint64_t pc,
                         const TcgOptions *opts, unsigned max_insns);
void tcg_block_free(QsTcgBlock *b);

/* ---- built-in passes (opt.c) ---- */
void tcg_opt_fold(QsTcgBlock *b);
void tcg_opt_dce(QsTcgBlock *b);
/* The whole pipeline: module passes and the built-in ones, with -d op/op_opt dumps. */
void tcg_pipeline_run(QsTcgBlock *b, const TcgOptions *opts);

/* ---- back end (interp.c) ---- */
/* Generate threaded code for b into tb (code, ncode, jmp_insn); false if the block
 * needs more frame slots than there are. */
bool tcg_backend_gen(TB *tb, const QsTcgBlock *b);
/* Run from tb until an exit; returns the last block and sets *slot to the GOTO_TB slot
 * that exited unchained (or -1).  cpu->pc is the next guest pc. */
TB *tcg_interp_exec(QsCpu *cpu, TB *tb, int *slot);

/* ---- helpers and traps (cpu.c) ---- */
uint64_t tcg_helper_call(QsCpu *cpu, unsigned helper, uint64_t a, uint64_t b, uint64_t pc);
/* Take exception cause at pc with tval and leave translated code (longjmp). */
G_NORETURN void tcg_raise(QsCpu *cpu, unsigned cause, uint64_t tval, uint64_t pc);
/* Slow paths of memory accesses (MMIO, faults, code pages). */
uint64_t tcg_load_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t pc);
void tcg_store_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t val, uint64_t pc);
uint64_t tcg_amo_slow(QsCpu *cpu, uint64_t addr, unsigned memop, unsigned amo,
                      uint64_t val, uint64_t pc);
uint64_t tcg_cmpxchg_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t expect,
                          uint64_t val, uint64_t pc);
/* Take a pending enabled interrupt if any (outside translated code). */
bool tcg_cpu_check_irq(QsCpu *cpu);
QsCpu *tcg_cpu_new(TcgMachine *m, unsigned index);
/* Run the hart until exit_req is set; returns after any exit request. */
void tcg_cpu_exec(QsCpu *cpu);
void tcg_cpu_reset(QsCpu *cpu, uint64_t entry, uint64_t a1);

#endif
