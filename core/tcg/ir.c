/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TCG IR: creating temps, labels and ops in a block, op properties, and the text
 * dump used by -d op / -d op_opt. */
#include <inttypes.h>
#include <string.h>
#include "qs/tcg.h"

static const char *const op_names[QS_TCG_NB_OPS] = {
    [QS_TCG_NOP] = "nop", [QS_TCG_MOV] = "mov", [QS_TCG_ADD] = "add",
    [QS_TCG_SUB] = "sub", [QS_TCG_AND] = "and", [QS_TCG_OR] = "or", [QS_TCG_XOR] = "xor",
    [QS_TCG_SHL] = "shl", [QS_TCG_SHR] = "shr", [QS_TCG_SAR] = "sar",
    [QS_TCG_MUL] = "mul", [QS_TCG_MULH] = "mulh", [QS_TCG_MULHU] = "mulhu",
    [QS_TCG_MULHSU] = "mulhsu", [QS_TCG_DIV] = "div", [QS_TCG_DIVU] = "divu",
    [QS_TCG_REM] = "rem", [QS_TCG_REMU] = "remu", [QS_TCG_EXT32S] = "ext32s",
    [QS_TCG_EXT32U] = "ext32u", [QS_TCG_SETCOND] = "setcond", [QS_TCG_BRCOND] = "brcond",
    [QS_TCG_BR] = "br", [QS_TCG_LABEL] = "set_label", [QS_TCG_LD] = "qemu_ld",
    [QS_TCG_ST] = "qemu_st", [QS_TCG_AMO] = "atomic_rmw", [QS_TCG_CMPXCHG] = "cmpxchg",
    [QS_TCG_MB] = "mb", [QS_TCG_CALL] = "call", [QS_TCG_GOTO_TB] = "goto_tb",
    [QS_TCG_EXIT_INDIRECT] = "lookup_and_goto", [QS_TCG_INSN_START] = "insn_start",
};

static const char *const cond_names[] = { "eq", "ne", "lt", "ge", "ltu", "geu" };
static const char *const amo_names[] = { "swap", "add", "and", "or", "xor",
                                         "min", "max", "minu", "maxu" };

const char *qs_tcg_op_name(unsigned opc)
{
    return opc < QS_TCG_NB_OPS && op_names[opc] ? op_names[opc] : "?";
}

uint32_t qs_tcg_host_mo(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return QS_TCG_MODEL_TSO;
#else
    return QS_TCG_MODEL_RVWMO;
#endif
}

static uint32_t temp_add(QsTcgBlock *b, QsTcgTempKind kind, int64_t val)
{
    if (b->ntemps == b->temps_cap) {
        b->temps_cap = b->temps_cap ? b->temps_cap * 2 : 64;
        b->temps = g_renew(QsTcgTemp, b->temps, b->temps_cap);
    }
    b->temps[b->ntemps] = (QsTcgTemp){ .kind = kind, .val = val };
    return b->ntemps++;
}

uint32_t qs_tcg_temp_new(QsTcgBlock *b)
{
    return temp_add(b, QS_TCG_TEMP_LOCAL, 0);
}

uint32_t qs_tcg_const(QsTcgBlock *b, int64_t val)
{
    /* Reuse a recent constant with the same value: blocks are small. */
    for (uint32_t i = b->ntemps; i > QS_TCG_NB_GLOBALS && i > b->ntemps - 16; i--) {
        if (b->temps[i - 1].kind == QS_TCG_TEMP_CONST && b->temps[i - 1].val == val)
            return i - 1;
    }
    return temp_add(b, QS_TCG_TEMP_CONST, val);
}

uint32_t qs_tcg_label_new(QsTcgBlock *b)
{
    return b->nlabels++;
}

uint32_t qs_tcg_op_insert(QsTcgBlock *b, uint32_t pos, const QsTcgOp *op)
{
    if (b->nops == b->ops_cap) {
        b->ops_cap = b->ops_cap ? b->ops_cap * 2 : 128;
        b->ops = g_renew(QsTcgOp, b->ops, b->ops_cap);
    }
    if (pos > b->nops) pos = b->nops;
    memmove(&b->ops[pos + 1], &b->ops[pos], (b->nops - pos) * sizeof(QsTcgOp));
    b->ops[pos] = *op;
    b->nops++;
    return pos;
}

uint32_t qs_tcg_op_append(QsTcgBlock *b, const QsTcgOp *op)
{
    return qs_tcg_op_insert(b, b->nops, op);
}

void qs_tcg_op_remove(QsTcgBlock *b, uint32_t idx)
{
    if (idx < b->nops) {
        uint64_t pc = b->ops[idx].pc;
        b->ops[idx] = (QsTcgOp){ .opc = QS_TCG_NOP, .pc = pc };
    }
}

bool qs_tcg_op_has_def(const QsTcgOp *op)
{
    switch (op->opc) {
    case QS_TCG_MOV ... QS_TCG_SETCOND:
    case QS_TCG_LD: case QS_TCG_AMO: case QS_TCG_CMPXCHG:
        return true;
    case QS_TCG_CALL:
        return op->args[0] != QS_TCG_NO_ARG;
    default:
        return false;
    }
}

static unsigned nb_uses(const QsTcgOp *op)
{
    switch (op->opc) {
    case QS_TCG_MOV: case QS_TCG_EXT32S: case QS_TCG_EXT32U: case QS_TCG_LD:
        return 1;
    case QS_TCG_ADD ... QS_TCG_REMU: case QS_TCG_SETCOND: case QS_TCG_ST: case QS_TCG_AMO:
        return 2;
    case QS_TCG_CMPXCHG:
        return 3;
    case QS_TCG_CALL: {
        unsigned n = 0;
        while (n < 3 && op->args[1 + n] != QS_TCG_NO_ARG) n++;
        return n;
    }
    default:
        return 0;
    }
}

unsigned qs_tcg_op_uses(const QsTcgOp *op, uint32_t uses[3])
{
    if (op->opc == QS_TCG_BRCOND) {
        uses[0] = op->args[0];
        uses[1] = op->args[1];
        return 2;
    }
    if (op->opc == QS_TCG_EXIT_INDIRECT) {
        uses[0] = op->args[0];
        return 1;
    }
    unsigned n = nb_uses(op);
    for (unsigned i = 0; i < n; i++) uses[i] = op->args[1 + i];
    return n;
}

bool qs_tcg_op_has_side_effects(const QsTcgOp *op)
{
    switch (op->opc) {
    case QS_TCG_LD:
        return true;   /* may fault (and MMIO reads have effects) */
    case QS_TCG_ST: case QS_TCG_AMO: case QS_TCG_CMPXCHG: case QS_TCG_MB:
    case QS_TCG_BRCOND: case QS_TCG_BR: case QS_TCG_LABEL: case QS_TCG_GOTO_TB:
    case QS_TCG_EXIT_INDIRECT: case QS_TCG_INSN_START:
        return true;
    case QS_TCG_CALL:
        return op->memop & (QS_TCG_CALL_MAY_TRAP | QS_TCG_CALL_SIDE_EFF | QS_TCG_CALL_END_TB);
    case QS_TCG_DIV: case QS_TCG_DIVU: case QS_TCG_REM: case QS_TCG_REMU:
        return false;  /* defined for every input: no trap */
    default:
        return false;
    }
}

static void put_temp(const QsTcgBlock *b, uint32_t t, GString *out)
{
    if (t == QS_TCG_NO_ARG) { g_string_append(out, "-"); return; }
    if (t >= b->ntemps) { g_string_append_printf(out, "?%u", t); return; }
    const QsTcgTemp *tp = &b->temps[t];
    if (tp->kind == QS_TCG_TEMP_CONST) {
        g_string_append_printf(out, "$0x%" PRIx64, (uint64_t)tp->val);
    } else if (tp->kind == QS_TCG_TEMP_GLOBAL) {
        if (t == QS_TCG_G_RES_ADDR) g_string_append(out, "res_addr");
        else if (t == QS_TCG_G_RES_VAL) g_string_append(out, "res_val");
        else g_string_append_printf(out, "x%u", t);
    } else {
        g_string_append_printf(out, "tmp%u", t);
    }
}

static void put_memop(unsigned mo, GString *out)
{
    static const char *const sz[] = { "8", "16", "32", "64" };
    g_string_append_printf(out, ",%s%s", mo & QS_TCG_MO_SIGN ? "s" : "u",
                           sz[mo & QS_TCG_MO_SIZE_MASK]);
    if (mo & QS_TCG_MO_ALIGN) g_string_append(out, "+al");
    if (mo & QS_TCG_MO_SC) g_string_append(out, "+sc");
    else {
        if (mo & QS_TCG_MO_ACQ) g_string_append(out, "+acq");
        if (mo & QS_TCG_MO_REL) g_string_append(out, "+rel");
    }
}

static void put_mb(unsigned mb, GString *out)
{
    static const char *const names[] = { "ld_ld", "ld_st", "st_ld", "st_st",
                                         "acq", "rel", "sc" };
    bool first = true;
    for (int i = 0; i < 7; i++) {
        if (!(mb & (1u << i))) continue;
        g_string_append_printf(out, "%s%s", first ? "" : "|", names[i]);
        first = false;
    }
    if (first) g_string_append(out, "none");
}

void qs_tcg_block_dump(const QsTcgBlock *b, GString *out)
{
    for (uint32_t i = 0; i < b->nops; i++) {
        const QsTcgOp *op = &b->ops[i];
        switch (op->opc) {
        case QS_TCG_NOP:
            continue;
        case QS_TCG_INSN_START:
            g_string_append_printf(out, " ---- %016" PRIx64 "\n", op->pc);
            continue;
        case QS_TCG_LABEL:
            g_string_append_printf(out, " set_label $L%u\n", op->args[0]);
            continue;
        case QS_TCG_BR:
            g_string_append_printf(out, " br $L%u\n", op->args[0]);
            continue;
        case QS_TCG_GOTO_TB:
            g_string_append_printf(out, " goto_tb $%u,$0x%" PRIx64 "\n", op->args[0],
                                   (uint64_t)op->imm);
            continue;
        case QS_TCG_EXIT_INDIRECT:
            g_string_append(out, " lookup_and_goto ");
            put_temp(b, op->args[0], out);
            g_string_append_c(out, '\n');
            continue;
        case QS_TCG_MB:
            g_string_append(out, " mb ");
            put_mb(op->memop, out);
            g_string_append_c(out, '\n');
            continue;
        case QS_TCG_BRCOND:
            g_string_append(out, " brcond ");
            put_temp(b, op->args[0], out);
            g_string_append_c(out, ',');
            put_temp(b, op->args[1], out);
            g_string_append_printf(out, ",%s,$L%u\n", cond_names[op->cond % 6], op->args[2]);
            continue;
        default:
            break;
        }
        g_string_append_printf(out, " %s ", qs_tcg_op_name(op->opc));
        bool def = qs_tcg_op_has_def(op);
        unsigned n = nb_uses(op);
        if (op->opc == QS_TCG_CALL) {
            g_string_append_printf(out, "helper%" PRId64 ",$0x%x,", op->imm, op->memop);
        }
        if (def || op->opc == QS_TCG_CALL) {
            put_temp(b, op->args[0], out);
            if (n) g_string_append_c(out, ',');
        }
        for (unsigned k = 1; k <= n; k++) {
            put_temp(b, op->args[k], out);
            if (k < n) g_string_append_c(out, ',');
        }
        switch (op->opc) {
        case QS_TCG_SETCOND:
            g_string_append_printf(out, ",%s", cond_names[op->cond % 6]);
            break;
        case QS_TCG_LD: case QS_TCG_ST:
            if (op->imm) g_string_append_printf(out, ",$%" PRId64, op->imm);
            put_memop(op->memop, out);
            break;
        case QS_TCG_AMO:
            g_string_append_printf(out, ",%s", amo_names[op->cond % 9]);
            put_memop(op->memop, out);
            break;
        case QS_TCG_CMPXCHG:
            put_memop(op->memop, out);
            break;
        default:
            break;
        }
        g_string_append_c(out, '\n');
    }
}
