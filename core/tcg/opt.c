/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The built-in IR passes (constant folding with simple algebra, dead-code removal) and
 * the pipeline that runs them between the passes modules registered, with -d dumps. */
#include <inttypes.h>
#include <string.h>
#include "tcg-internal.h"
#include "tcg-ops.h"

static bool is_const(const QsTcgBlock *b, uint32_t t)
{
    return t != QS_TCG_NO_ARG && t < b->ntemps && b->temps[t].kind == QS_TCG_TEMP_CONST;
}

static bool is_pure(unsigned opc)
{
    return opc >= QS_TCG_MOV && opc <= QS_TCG_SETCOND;
}

/* What the folder knows about temps: a constant value, or (for a LOCAL) being a copy of
 * another temp, valid while that temp is not written again. */
typedef struct Known {
    bool *known;
    int64_t *val;
    uint32_t *copy;       /* QS_TCG_NO_ARG: not a copy */
    uint32_t *copy_ver;   /* wver of the source when the copy was made */
    uint32_t *wver;       /* bumped on every write of a temp (only globals are rewritten) */
} Known;

/* Replace a temp operand by a constant when its value is known, or by the temp it copies. */
static void subst(QsTcgBlock *b, uint32_t *arg, const Known *k)
{
    uint32_t t = *arg;
    if (t == QS_TCG_NO_ARG || t >= b->ntemps) return;
    if (k->known[t]) {
        *arg = qs_tcg_const(b, k->val[t]);
        return;
    }
    uint32_t s = k->copy[t];
    if (s != QS_TCG_NO_ARG && k->wver[s] == k->copy_ver[t]) *arg = s;
}

static void set_mov(QsTcgBlock *b, QsTcgOp *op, uint32_t src)
{
    uint32_t d = op->args[0];
    uint64_t pc = op->pc;
    *op = (QsTcgOp){ .opc = QS_TCG_MOV, .args = { d, src, QS_TCG_NO_ARG, QS_TCG_NO_ARG },
                     .pc = pc };
}

/* Algebraic identities with one constant operand; returns true if op was simplified. */
static bool simplify(QsTcgBlock *b, QsTcgOp *op)
{
    uint32_t a = op->args[1], c = op->args[2];
    bool ca = is_const(b, a), cc = is_const(b, c);
    int64_t va = ca ? b->temps[a].val : 0, vc = cc ? b->temps[c].val : 0;
    switch (op->opc) {
    case QS_TCG_ADD: case QS_TCG_OR: case QS_TCG_XOR:
        if (cc && vc == 0) { set_mov(b, op, a); return true; }
        if (ca && va == 0) { set_mov(b, op, c); return true; }
        break;
    case QS_TCG_SUB: case QS_TCG_SHL: case QS_TCG_SHR: case QS_TCG_SAR:
        if (cc && vc == 0) { set_mov(b, op, a); return true; }
        break;
    case QS_TCG_AND:
        if ((cc && vc == 0) || (ca && va == 0)) { set_mov(b, op, qs_tcg_const(b, 0)); return true; }
        if (cc && vc == -1) { set_mov(b, op, a); return true; }
        if (ca && va == -1) { set_mov(b, op, c); return true; }
        break;
    case QS_TCG_MUL:
        if ((cc && vc == 0) || (ca && va == 0)) { set_mov(b, op, qs_tcg_const(b, 0)); return true; }
        if (cc && vc == 1) { set_mov(b, op, a); return true; }
        if (ca && va == 1) { set_mov(b, op, c); return true; }
        break;
    default:
        break;
    }
    return false;
}

void tcg_opt_fold(QsTcgBlock *b)
{
    /* Each op adds at most 4 constants (3 operands, 1 result): size the maps once. */
    uint32_t n = b->ntemps + 4 * b->nops + 16;
    Known k = { .known = g_new0(bool, n), .val = g_new0(int64_t, n),
                .copy = g_new(uint32_t, n), .copy_ver = g_new0(uint32_t, n),
                .wver = g_new0(uint32_t, n) };
    memset(k.copy, 0xff, n * sizeof(uint32_t));
    for (uint32_t i = 0; i < b->nops; i++) {
        QsTcgOp *op = &b->ops[i];
        if (op->opc == QS_TCG_LABEL) {
            /* A join point: what we know about globals may differ on the other path. */
            for (uint32_t t = 0; t < QS_TCG_NB_GLOBALS; t++) k.known[t] = false;
            memset(k.copy, 0xff, n * sizeof(uint32_t));
            continue;
        }
        if (op->opc == QS_TCG_BRCOND || op->opc == QS_TCG_EXIT_INDIRECT) {
            subst(b, &op->args[0], &k);
            if (op->opc == QS_TCG_BRCOND) {
                subst(b, &op->args[1], &k);
                if (is_const(b, op->args[0]) && is_const(b, op->args[1])) {
                    bool taken = tcg_cond(op->cond, b->temps[op->args[0]].val,
                                          b->temps[op->args[1]].val);
                    uint32_t l = op->args[2];
                    uint64_t pc = op->pc;
                    *op = taken ? (QsTcgOp){ .opc = QS_TCG_BR, .args = { l }, .pc = pc }
                                : (QsTcgOp){ .opc = QS_TCG_NOP, .pc = pc };
                }
            }
            continue;
        }
        uint32_t uses[3];
        unsigned nu = qs_tcg_op_uses(op, uses);
        for (unsigned u = 0; u < nu; u++) subst(b, &op->args[1 + u], &k);
        if (!qs_tcg_op_has_def(op)) continue;
        uint32_t d = op->args[0];
        if (d >= n) continue;
        k.known[d] = false;
        k.copy[d] = QS_TCG_NO_ARG;
        k.wver[d]++;
        if (!is_pure(op->opc)) continue;
        bool ca = is_const(b, op->args[1]);
        bool cb = nu < 2 || is_const(b, op->args[2]);
        uint64_t r;
        if (ca && cb && tcg_eval(op, b->temps[op->args[1]].val,
                                 nu < 2 ? 0 : b->temps[op->args[2]].val, &r)) {
            set_mov(b, op, qs_tcg_const(b, (int64_t)r));
        } else {
            simplify(b, op);
        }
        if (op->opc != QS_TCG_MOV) continue;
        uint32_t src = op->args[1];
        if (is_const(b, src)) {
            k.known[d] = true;
            k.val[d] = b->temps[src].val;
        } else if (b->temps[d].kind == QS_TCG_TEMP_LOCAL && src < n && src != d) {
            /* d is written once (SSA): its uses can read src while src is unchanged */
            k.copy[d] = src;
            k.copy_ver[d] = k.wver[src];
        }
    }
    g_free(k.known);
    g_free(k.val);
    g_free(k.copy);
    g_free(k.copy_ver);
    g_free(k.wver);
}

static bool ends_flow(unsigned opc)
{
    return opc == QS_TCG_BR || opc == QS_TCG_GOTO_TB || opc == QS_TCG_EXIT_INDIRECT;
}

void tcg_opt_dce(QsTcgBlock *b)
{
    /* 1. unreachable code: after an unconditional exit until a label that is used */
    uint32_t *lref = g_new0(uint32_t, b->nlabels + 1);
    for (uint32_t i = 0; i < b->nops; i++) {
        const QsTcgOp *op = &b->ops[i];
        if (op->opc == QS_TCG_BR && op->args[0] < b->nlabels) lref[op->args[0]]++;
        if (op->opc == QS_TCG_BRCOND && op->args[2] < b->nlabels) lref[op->args[2]]++;
    }
    bool reach = true;
    for (uint32_t i = 0; i < b->nops; i++) {
        QsTcgOp *op = &b->ops[i];
        if (op->opc == QS_TCG_LABEL) {
            bool used = op->args[0] < b->nlabels && lref[op->args[0]];
            reach = reach || used;
            if (!used) qs_tcg_op_remove(b, i);
            continue;
        }
        if (!reach && op->opc != QS_TCG_INSN_START) {
            if (op->opc == QS_TCG_BR && op->args[0] < b->nlabels) lref[op->args[0]]--;
            if (op->opc == QS_TCG_BRCOND && op->args[2] < b->nlabels) lref[op->args[2]]--;
            qs_tcg_op_remove(b, i);
            continue;
        }
        if (ends_flow(op->opc)) reach = false;
    }
    g_free(lref);

    /* 2. locals nobody reads (backwards: removing a use may kill an earlier def) */
    uint32_t *nuse = g_new0(uint32_t, b->ntemps + 1);
    for (uint32_t i = 0; i < b->nops; i++) {
        uint32_t uses[3];
        unsigned nu = qs_tcg_op_uses(&b->ops[i], uses);
        for (unsigned k = 0; k < nu; k++) if (uses[k] < b->ntemps) nuse[uses[k]]++;
    }
    for (uint32_t i = b->nops; i-- > 0;) {
        QsTcgOp *op = &b->ops[i];
        if (!qs_tcg_op_has_def(op) || qs_tcg_op_has_side_effects(op)) continue;
        uint32_t d = op->args[0];
        bool dead = d < b->ntemps && b->temps[d].kind == QS_TCG_TEMP_LOCAL && nuse[d] == 0;
        /* mov x, x */
        dead |= op->opc == QS_TCG_MOV && op->args[1] == d;
        if (!dead) continue;
        uint32_t uses[3];
        unsigned nu = qs_tcg_op_uses(op, uses);
        for (unsigned k = 0; k < nu; k++) if (uses[k] < b->ntemps) nuse[uses[k]]--;
        qs_tcg_op_remove(b, i);
    }
    g_free(nuse);

    /* 3. compact */
    uint32_t j = 0;
    for (uint32_t i = 0; i < b->nops; i++) {
        if (b->ops[i].opc != QS_TCG_NOP) b->ops[j++] = b->ops[i];
    }
    b->nops = j;
}

static void dump(const TcgOptions *o, const char *title, const QsTcgBlock *b)
{
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "%s\n", title);
    qs_tcg_block_dump(b, s);
    g_string_append_c(s, '\n');
    fputs(s->str, o->log ? o->log : stderr);
    fflush(o->log ? o->log : stderr);
    g_string_free(s, TRUE);
}

void tcg_pipeline_run(QsTcgBlock *b, const TcgOptions *o)
{
    if (o && o->log_op) dump(o, "OP:", b);
    qs_tcg_passes_run(QS_TCG_POINT_FRONTEND, b);
    tcg_opt_fold(b);
    tcg_opt_dce(b);
    qs_tcg_passes_run(QS_TCG_POINT_OPTIMIZE, b);
    qs_tcg_passes_run(QS_TCG_POINT_BACKEND, b);
    tcg_opt_dce(b);   /* drop what the passes removed; never changes their result */
    if (o && o->log_op_opt) dump(o, "OP after optimization and liveness analysis:", b);
}
