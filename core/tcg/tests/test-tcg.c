/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of the TCG pieces on an in-test guest RAM: IR folding and dead-code removal,
 * passes registered at pipeline points, Ztso barriers, execution, chaining, invalidation. */
#include <string.h>
#include "tcg/tcg-internal.h"

#define BASE 0x80000000ull
#define RAM_SIZE (1u << 20)

/* ---- instruction encoders ---- */
static uint32_t R(unsigned f7, unsigned rs2, unsigned rs1, unsigned f3, unsigned rd, unsigned op)
{
    return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
static uint32_t I(int imm, unsigned rs1, unsigned f3, unsigned rd, unsigned op)
{
    return (uint32_t)(imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
}
static uint32_t S(int imm, unsigned rs2, unsigned rs1, unsigned f3)
{
    return (uint32_t)(imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
           (uint32_t)(imm & 0x1f) << 7 | 0x23;
}
static uint32_t B(int off, unsigned rs2, unsigned rs1, unsigned f3)
{
    uint32_t o = (uint32_t)off;
    return (o >> 12 & 1) << 31 | (o >> 5 & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
           (o >> 1 & 0xf) << 8 | (o >> 11 & 1) << 7 | 0x63;
}
#define ADDI(rd, rs, imm) I(imm, rs, 0, rd, 0x13)
#define ADD(rd, a, b) R(0, b, a, 0, rd, 0x33)
#define MUL(rd, a, b) R(1, b, a, 0, rd, 0x33)
#define DIV(rd, a, b) R(1, b, a, 4, rd, 0x33)
#define REMU(rd, a, b) R(1, b, a, 7, rd, 0x33)
#define ADDW(rd, a, b) R(0, b, a, 0, rd, 0x3b)
#define SUBW(rd, a, b) R(0x20, b, a, 0, rd, 0x3b)
#define MULW(rd, a, b) R(1, b, a, 0, rd, 0x3b)
#define SLLW(rd, a, b) R(0, b, a, 1, rd, 0x3b)
#define SRLW(rd, a, b) R(0, b, a, 5, rd, 0x3b)
#define SRAW(rd, a, b) R(0x20, b, a, 5, rd, 0x3b)
#define ADDIW(rd, rs, imm) I(imm, rs, 0, rd, 0x1b)
#define SLLIW(rd, rs, sh) I(sh, rs, 1, rd, 0x1b)
#define SRLIW(rd, rs, sh) I(sh, rs, 5, rd, 0x1b)
#define SRAIW(rd, rs, sh) I(0x400 | (sh), rs, 5, rd, 0x1b)
#define LD(rd, rs, imm) I(imm, rs, 3, rd, 0x03)
#define LW(rd, rs, imm) I(imm, rs, 2, rd, 0x03)
#define SD(rs2, rs1, imm) S(imm, rs2, rs1, 3)
#define SW(rs2, rs1, imm) S(imm, rs2, rs1, 2)
#define BNE(a, b, off) B(off, b, a, 1)
#define LUI(rd, imm20) ((uint32_t)(imm20) << 12 | (rd) << 7 | 0x37)
#define AUIPC(rd, imm20) ((uint32_t)(imm20) << 12 | (rd) << 7 | 0x17)
#define ECALL 0x00000073u
#define WFI 0x10500073u
#define FENCE_RW_RW 0x0330000fu
#define FENCE_I 0x0000100fu

typedef struct Fixture {
    TcgMachine m;
    QsCpu *cpu;
    uint32_t *code;
} Fixture;

static void fx_init(Fixture *f, bool ztso)
{
    memset(f, 0, sizeof(*f));
    f->m.ram.host = g_malloc0(RAM_SIZE);
    f->m.ram.base = BASE;
    f->m.ram.size = RAM_SIZE;
    f->m.ram.code_map = g_malloc0(RAM_SIZE >> CODE_SHIFT);
    f->m.opts.ztso = ztso;
    f->m.nharts = 1;
    f->m.harts = g_new0(QsCpu *, 1);
    tcg_tb_init();
    f->cpu = tcg_cpu_new(&f->m, 0);
    f->m.harts[0] = f->cpu;
    tcg_tb_set_machine(&f->m);
    f->code = (uint32_t *)f->m.ram.host;
    tcg_cpu_reset(f->cpu, BASE, 0);
    /* traps go to a wfi at 0x80000ff0, which ends the run */
    f->cpu->mtvec = BASE + 0xff0;
    f->code[0xff0 / 4] = WFI;
    atomic_store(&f->cpu->online, 1);
}

static void fx_free(Fixture *f)
{
    tcg_tb_set_machine(NULL);
    tcg_tb_free_all();
    g_free(f->cpu);
    g_free(f->m.harts);
    g_free(f->m.ram.code_map);
    g_free(f->m.ram.host);
}

/* Run until the hart traps (to the wfi) or executes wfi itself. */
static void fx_run(Fixture *f)
{
    f->cpu->state = HART_RUNNING;
    atomic_store(&f->cpu->exit_req, 0);
    tcg_cpu_exec(f->cpu);
    g_assert_cmpint(f->cpu->state, ==, HART_WFI);
}

static void translate_at(Fixture *f, uint64_t pc, QsTcgBlock *b, bool optimize)
{
    g_assert_true(tcg_riscv_translate(b, &f->m.ram, pc, &f->m.opts, TCG_MAX_INSNS));
    if (optimize) {
        tcg_opt_fold(b);
        tcg_opt_dce(b);
    }
}

static unsigned count_ops(const QsTcgBlock *b, unsigned opc)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < b->nops; i++) n += b->ops[i].opc == opc;
    return n;
}

/* ---- IR and passes ---- */

static void test_fold_dce(void)
{
    Fixture f;
    fx_init(&f, false);
    /* li a0, 6; li a1, 7; mul a2, a0, a1; addi a2, a2, 0; addi t0, a2, 1 ; ecall */
    uint32_t prog[] = { ADDI(10, 0, 6), ADDI(11, 0, 7), MUL(12, 10, 11), ADDI(12, 12, 0),
                        ADDW(5, 12, 0), ECALL };
    memcpy(f.code, prog, sizeof(prog));
    QsTcgBlock b;
    translate_at(&f, BASE, &b, false);
    unsigned before = count_ops(&b, QS_TCG_MUL);
    g_assert_cmpuint(before, ==, 1);
    tcg_opt_fold(&b);
    tcg_opt_dce(&b);
    /* everything became constants: no arithmetic left, the right constants stored */
    g_assert_cmpuint(count_ops(&b, QS_TCG_MUL), ==, 0);
    g_assert_cmpuint(count_ops(&b, QS_TCG_ADD), ==, 0);
    g_assert_cmpuint(count_ops(&b, QS_TCG_EXT32S), ==, 0);
    GString *s = g_string_new(NULL);
    qs_tcg_block_dump(&b, s);
    g_assert_nonnull(strstr(s->str, "mov x12,$0x2a"));
    g_assert_nonnull(strstr(s->str, "mov x5,$0x2a"));
    /* the ecall is still there */
    g_assert_cmpuint(count_ops(&b, QS_TCG_CALL), ==, 1);
    g_string_free(s, TRUE);
    tcg_block_free(&b);
    fx_free(&f);
}

static void test_dce_keeps_side_effects(void)
{
    QsTcgBlock b = { 0 };
    for (int g = 0; g < QS_TCG_NB_GLOBALS; g++) qs_tcg_temp_new(&b);
    for (int g = 0; g < QS_TCG_NB_GLOBALS; g++) b.temps[g].kind = QS_TCG_TEMP_GLOBAL;
    uint32_t t1 = qs_tcg_temp_new(&b), t2 = qs_tcg_temp_new(&b), t3 = qs_tcg_temp_new(&b);
    QsTcgOp ops[] = {
        { .opc = QS_TCG_ADD, .args = { t1, 5, 6, QS_TCG_NO_ARG } },         /* dead */
        { .opc = QS_TCG_SHL, .args = { t2, t1, 7, QS_TCG_NO_ARG } },        /* dead */
        { .opc = QS_TCG_LD, .args = { t3, 8, QS_TCG_NO_ARG, QS_TCG_NO_ARG } }, /* may fault */
        { .opc = QS_TCG_MB, .memop = QS_TCG_MB_ALL | QS_TCG_MB_SC },
        { .opc = QS_TCG_GOTO_TB, .args = { 0 }, .imm = 0x1000 },
        { .opc = QS_TCG_ADD, .args = { 9, 5, 6, QS_TCG_NO_ARG } },          /* unreachable */
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(ops); i++) qs_tcg_op_append(&b, &ops[i]);
    tcg_opt_dce(&b);
    g_assert_cmpuint(b.nops, ==, 3);
    g_assert_cmpuint(b.ops[0].opc, ==, QS_TCG_LD);
    g_assert_cmpuint(b.ops[1].opc, ==, QS_TCG_MB);
    g_assert_cmpuint(b.ops[2].opc, ==, QS_TCG_GOTO_TB);
    tcg_block_free(&b);
}

static void test_ztso_barriers(void)
{
    uint32_t prog[] = { LD(10, 11, 0), SD(10, 11, 8), FENCE_RW_RW, ECALL };
    for (int ztso = 0; ztso < 2; ztso++) {
        Fixture f;
        fx_init(&f, ztso);
        memcpy(f.code, prog, sizeof(prog));
        QsTcgBlock b;
        translate_at(&f, BASE, &b, true);
        g_assert_cmpuint(b.guest_mo, ==, ztso ? QS_TCG_MODEL_TSO : QS_TCG_MODEL_RVWMO);
        unsigned mbs = 0, ld_ld = 0, st = 0, full = 0;
        for (uint32_t i = 0; i < b.nops; i++) {
            if (b.ops[i].opc != QS_TCG_MB) continue;
            mbs++;
            unsigned m = b.ops[i].memop;
            if (m == QS_TCG_MB_LD_LD) ld_ld++;
            if (m == (QS_TCG_MB_LD_ST | QS_TCG_MB_ST_ST)) st++;
            if (m == (QS_TCG_MB_ALL | QS_TCG_MB_SC)) full++;
        }
        /* the fence is always there; Ztso adds one before the load and one before the store */
        g_assert_cmpuint(full, ==, 1);
        g_assert_cmpuint(mbs, ==, ztso ? 3u : 1u);
        g_assert_cmpuint(ld_ld, ==, ztso ? 1u : 0u);
        g_assert_cmpuint(st, ==, ztso ? 1u : 0u);
        tcg_block_free(&b);
        fx_free(&f);
    }
}

static unsigned seen_mb;
static void drop_host_implied(QsTcgBlock *b, void *opaque)
{
    /* what a memory-ordering pass does: drop barriers the host already provides */
    for (uint32_t i = 0; i < b->nops; i++) {
        if (b->ops[i].opc != QS_TCG_MB) continue;
        seen_mb++;
        if (!(b->ops[i].memop & QS_TCG_MB_ALL & ~qs_tcg_host_mo())) qs_tcg_op_remove(b, i);
    }
    *(unsigned *)opaque += 1;
}

static void test_pass_pipeline(void)
{
    static unsigned runs;
    static const QsTcgPass pass = { .name = "test-drop-mb", .point = QS_TCG_POINT_OPTIMIZE,
                                    .run = drop_host_implied };
    g_autoptr(GError) err = NULL;
    g_assert_true(qs_tcg_pass_register(&pass, &runs, &err));
    Fixture f;
    fx_init(&f, true);
    uint32_t prog[] = { LD(10, 11, 0), SD(10, 11, 8), ECALL };
    memcpy(f.code, prog, sizeof(prog));
    QsTcgBlock b;
    g_assert_true(tcg_riscv_translate(&b, &f.m.ram, BASE, &f.m.opts, TCG_MAX_INSNS));
    tcg_pipeline_run(&b, &f.m.opts);
    g_assert_cmpuint(runs, ==, 1);
    g_assert_cmpuint(seen_mb, ==, 2);
    /* on this x86-64 host (TSO) both Ztso barriers are implied and gone */
    g_assert_cmpuint(qs_tcg_host_mo(), ==, QS_TCG_MODEL_TSO);
    g_assert_cmpuint(count_ops(&b, QS_TCG_MB), ==, 0);
    tcg_block_free(&b);
    fx_free(&f);
}

/* ---- execution ---- */

static void test_copy_propagation(void)
{
    QsTcgBlock b = { 0 };
    for (int g = 0; g < QS_TCG_NB_GLOBALS; g++) qs_tcg_temp_new(&b);
    for (int g = 0; g < QS_TCG_NB_GLOBALS; g++) b.temps[g].kind = QS_TCG_TEMP_GLOBAL;
    uint32_t t1 = qs_tcg_temp_new(&b), t2 = qs_tcg_temp_new(&b), one = qs_tcg_const(&b, 1);
    QsTcgOp ops[] = {
        { .opc = QS_TCG_MOV, .args = { t1, 5, QS_TCG_NO_ARG, QS_TCG_NO_ARG } },
        { .opc = QS_TCG_MOV, .args = { t2, 8, QS_TCG_NO_ARG, QS_TCG_NO_ARG } },
        { .opc = QS_TCG_MOV, .args = { 5, one, QS_TCG_NO_ARG, QS_TCG_NO_ARG } },  /* x5 changes */
        { .opc = QS_TCG_ADD, .args = { 6, t1, 7, QS_TCG_NO_ARG } },   /* must read old x5 */
        { .opc = QS_TCG_ADD, .args = { 9, t2, 7, QS_TCG_NO_ARG } },   /* may read x8 */
        { .opc = QS_TCG_GOTO_TB, .args = { 0 }, .imm = 0x1000 },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(ops); i++) qs_tcg_op_append(&b, &ops[i]);
    tcg_opt_fold(&b);
    tcg_opt_dce(&b);
    /* mov t1,x5; mov x5,$1; add x6,t1,x7; add x9,x8,x7; goto_tb */
    g_assert_cmpuint(b.nops, ==, 5);
    g_assert_cmpuint(b.ops[0].opc, ==, QS_TCG_MOV);
    g_assert_cmpuint(b.ops[0].args[0], ==, t1);
    g_assert_cmpuint(b.ops[2].args[1], ==, t1);
    g_assert_cmpuint(b.ops[3].opc, ==, QS_TCG_ADD);
    g_assert_cmpuint(b.ops[3].args[1], ==, 8);
    tcg_block_free(&b);
}

static uint64_t sx32(uint64_t v) { return (uint64_t)(int64_t)(int32_t)v; }

static void test_exec_w_superinsns(void)
{
    Fixture f;
    fx_init(&f, false);
    uint32_t prog[] = {
        ADDIW(10, 5, -1), SUBW(11, 0, 5), MULW(12, 5, 7), SLLW(13, 5, 6), SRLW(14, 5, 6),
        SRAW(15, 5, 6), SRLIW(16, 5, 0), SRAIW(17, 5, 4), SLLIW(18, 5, 4), SRLIW(5, 5, 4),
        ECALL,
    };
    memcpy(f.code, prog, sizeof(prog));
    QsCpu *c = f.cpu;
    uint64_t a = 0xdeadbeef87654321ull, sh = 0x123456780000003full, m = (uint64_t)-3;
    c->regs[5] = a;
    c->regs[6] = sh;      /* the W shifts use the low 5 bits: 31 */
    c->regs[7] = m;
    fx_run(&f);
    g_assert_cmpuint(c->mcause, ==, EXC_ECALL_M);
    g_assert_cmpuint(c->regs[10], ==, sx32((uint32_t)a - 1));
    g_assert_cmpuint(c->regs[11], ==, sx32(0u - (uint32_t)a));
    g_assert_cmpuint(c->regs[12], ==, sx32((uint32_t)a * (uint32_t)m));
    g_assert_cmpuint(c->regs[13], ==, sx32((uint32_t)a << 31));
    g_assert_cmpuint(c->regs[14], ==, sx32((uint32_t)a >> 31));
    g_assert_cmpuint(c->regs[15], ==, (uint64_t)((int32_t)(uint32_t)a >> 31));
    g_assert_cmpuint(c->regs[16], ==, sx32((uint32_t)a));
    g_assert_cmpuint(c->regs[17], ==, (uint64_t)((int32_t)(uint32_t)a >> 4));
    g_assert_cmpuint(c->regs[18], ==, sx32((uint32_t)a << 4));
    g_assert_cmpuint(c->regs[5], ==, sx32((uint32_t)a >> 4));
    /* each W op is one superinstruction (sllw/srlw/sraw keep their "and 31"); the ecall
     * is a helper call and a goto_tb: 16 threaded instructions instead of 29 */
    TB *tb = tcg_tb_lookup(c, BASE);
    g_assert_cmpuint(tb->ninsns, ==, G_N_ELEMENTS(prog));
    g_assert_cmpuint(tb->ncode, ==, 16);
    fx_free(&f);
}

static void test_exec_arith(void)
{
    Fixture f;
    fx_init(&f, false);
    uint32_t prog[] = {
        ADDI(5, 0, -7), ADDI(6, 0, 2), DIV(10, 5, 6), REMU(11, 5, 0), DIV(12, 5, 0),
        LUI(13, 0x80000), ADDW(14, 13, 13), AUIPC(15, 1), ECALL,
    };
    memcpy(f.code, prog, sizeof(prog));
    fx_run(&f);
    QsCpu *c = f.cpu;
    g_assert_cmpuint(c->mcause, ==, EXC_ECALL_M);
    g_assert_cmpuint(c->mepc, ==, BASE + 8 * 4);
    g_assert_cmpuint(c->regs[10], ==, (uint64_t)-3);
    g_assert_cmpuint(c->regs[11], ==, (uint64_t)-7);
    g_assert_cmpuint(c->regs[12], ==, UINT64_MAX);
    g_assert_cmpuint(c->regs[13], ==, 0xffffffff80000000ull);
    g_assert_cmpuint(c->regs[14], ==, 0);
    g_assert_cmpuint(c->regs[15], ==, BASE + 7 * 4 + 0x1000);
    g_assert_cmpuint(c->regs[0], ==, 0);
    fx_free(&f);
}

static void test_exec_add2(void)
{
    Fixture f;
    fx_init(&f, false);
    /* addi pairs become one add2: the second sees the first's result; an addi followed
     * by an addiw stays apart (the addiw is a W superinstruction) */
    uint32_t prog[] = { ADDI(10, 10, 5), ADDI(11, 10, 7), ADDI(12, 12, -1), ADDI(13, 0, 9),
                        ADDI(14, 11, 1), ADDIW(15, 14, 1), ECALL };
    memcpy(f.code, prog, sizeof(prog));
    QsCpu *c = f.cpu;
    c->regs[10] = 100;
    c->regs[12] = 0x7fffffffull;
    fx_run(&f);
    g_assert_cmpuint(c->mcause, ==, EXC_ECALL_M);
    g_assert_cmpuint(c->regs[10], ==, 105);
    g_assert_cmpuint(c->regs[11], ==, 112);
    g_assert_cmpuint(c->regs[12], ==, 0x7ffffffeull);
    g_assert_cmpuint(c->regs[13], ==, 9);
    g_assert_cmpuint(c->regs[14], ==, 113);
    g_assert_cmpuint(c->regs[15], ==, 114);
    /* add2(a0, a1), add a2, movi a3, add a4, addw a5, call, goto_tb */
    TB *tb = tcg_tb_lookup(c, BASE);
    g_assert_cmpuint(tb->ncode, ==, 7);
    fx_free(&f);
}

static void test_exec_fault(void)
{
    Fixture f;
    fx_init(&f, false);
    /* load from an unmapped address (no bus in this fixture): load access fault */
    uint32_t prog[] = { LUI(5, 0x10), LD(6, 5, 8), ECALL };
    memcpy(f.code, prog, sizeof(prog));
    fx_run(&f);
    g_assert_cmpuint(f.cpu->mcause, ==, EXC_LOAD_ACCESS);
    g_assert_cmpuint(f.cpu->mtval, ==, 0x10008);
    g_assert_cmpuint(f.cpu->mepc, ==, BASE + 4);
    /* jump outside RAM: instruction access fault with mtval = target */
    fx_free(&f);
    fx_init(&f, false);
    f.code[0] = I(0, 5, 0, 0, 0x67);   /* jr t0 */
    f.cpu->regs[5] = 0x1000;
    fx_run(&f);
    g_assert_cmpuint(f.cpu->mcause, ==, EXC_INSN_ACCESS);
    g_assert_cmpuint(f.cpu->mtval, ==, 0x1000);
    g_assert_cmpuint(f.cpu->mepc, ==, 0x1000);
    fx_free(&f);
}

static void test_chain_and_invalidate(void)
{
    Fixture f;
    fx_init(&f, false);
    /* 0: li a0, 0; li t1, 1000
     * 8: addi a0, a0, 1 (at 0x100, own block); back: addi t1, t1, -1; bnez t1, loop
     * then patch the "addi a0, a0, 1" into "addi a0, a0, 2" with a guest store, run again */
    uint32_t *c = f.code;
    c[0] = ADDI(10, 0, 0);
    c[1] = ADDI(6, 0, 1000);
    c[2] = ADDI(10, 10, 1);            /* 0x08: patched later */
    c[3] = ADDI(6, 6, -1);
    c[4] = BNE(6, 0, -8);
    c[5] = ECALL;
    fx_run(&f);
    g_assert_cmpuint(f.cpu->regs[10], ==, 1000);
    TcgStats s1 = tcg_tb_stats();
    g_assert_cmpuint(s1.chained, >=, 1);
    g_assert_cmpuint(s1.translated, <=, 6);   /* the loop body was translated once */
    /* program 2 at 0x200: store the new instruction over 0x08, then jump to 0 */
    uint32_t *p = c + 0x200 / 4;
    p[0] = LUI(7, (ADDI(10, 10, 2) + 0x800) >> 12);
    p[1] = ADDI(7, 7, (int)((ADDI(10, 10, 2) & 0xfff) << 20) >> 20);
    p[2] = AUIPC(8, 0);                /* t3 = 0x80000208 */
    p[3] = SW(7, 8, -0x200);           /* *(0x80000008) = addi a0, a0, 2 */
    p[4] = FENCE_I;
    p[5] = AUIPC(9, 0);                /* s1 = 0x80000214 */
    p[6] = I(-0x214, 9, 0, 0, 0x67);   /* jr -0x214(s1) -> 0x80000000 */
    f.cpu->pc = BASE + 0x200;
    fx_run(&f);
    g_assert_cmpuint(c[2], ==, ADDI(10, 10, 2));
    g_assert_cmpuint(f.cpu->regs[10], ==, 2000);
    TcgStats s2 = tcg_tb_stats();
    g_assert_cmpuint(s2.invalidated, >, s1.invalidated);
    g_assert_cmpuint(s2.flushes, >=, 1);
    fx_free(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tcg/ir/fold-dce", test_fold_dce);
    g_test_add_func("/tcg/ir/dce-side-effects", test_dce_keeps_side_effects);
    g_test_add_func("/tcg/frontend/ztso-barriers", test_ztso_barriers);
    g_test_add_func("/tcg/pipeline/module-pass", test_pass_pipeline);
    g_test_add_func("/tcg/opt/copy-propagation", test_copy_propagation);
    g_test_add_func("/tcg/exec/arith", test_exec_arith);
    g_test_add_func("/tcg/exec/w-superinsns", test_exec_w_superinsns);
    g_test_add_func("/tcg/exec/add2", test_exec_add2);
    g_test_add_func("/tcg/exec/faults", test_exec_fault);
    g_test_add_func("/tcg/exec/chain-invalidate", test_chain_and_invalidate);
    return g_test_run();
}
