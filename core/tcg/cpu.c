/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The RISC-V hart in machine mode: CSRs, traps and interrupts, the helpers translated
 * code calls, memory slow paths (MMIO, faults, code pages) and the execution loop. */
#include <string.h>
#include "tcg-internal.h"

#define MIP_MASK ((1ull << QS_CPU_IRQ_MSI) | (1ull << QS_CPU_IRQ_MTI) | (1ull << QS_CPU_IRQ_MEI))
#define MISA_RV64IMA ((2ull << 62) | (1u << 0) | (1u << 8) | (1u << 12))

static uint64_t (*time_fn)(void *opaque);
static void *time_opaque;

void qs_cpu_set_time_source(uint64_t (*read_time)(void *opaque), void *opaque)
{
    time_opaque = opaque;
    time_fn = read_time;
}

QsCpu *tcg_cpu_new(TcgMachine *m, unsigned index)
{
    QsCpu *cpu = g_new0(QsCpu, 1);
    cpu->mach = m;
    cpu->ram = &m->ram;
    cpu->bus = m->bus;
    cpu->mhartid = index;
    return cpu;
}

void tcg_cpu_reset(QsCpu *cpu, uint64_t entry, uint64_t a1)
{
    memset(cpu->regs, 0, sizeof(cpu->regs));
    cpu->regs[10] = cpu->mhartid;   /* a0: hart id, a1: device tree, as QEMU's reset stub */
    cpu->regs[11] = a1;
    cpu->regs[QS_TCG_G_RES_ADDR] = UINT64_MAX;
    cpu->pc = entry;
    cpu->mstatus = MSTATUS_MPP;
    cpu->mtvec = cpu->mepc = cpu->mcause = cpu->mtval = cpu->mie = cpu->mscratch = 0;
    atomic_store(&cpu->mip, 0);
    cpu->icount = 0;
    cpu->state = HART_RUNNING;
}

static void enter_trap(QsCpu *cpu, uint64_t cause, uint64_t tval, uint64_t epc)
{
    cpu->mepc = epc;
    cpu->mcause = cause;
    cpu->mtval = tval;
    uint64_t s = cpu->mstatus;
    s = (s & ~MSTATUS_MPIE) | ((s & MSTATUS_MIE) ? MSTATUS_MPIE : 0);
    cpu->mstatus = (s & ~MSTATUS_MIE) | MSTATUS_MPP;
    uint64_t base = cpu->mtvec & ~3ull;
    bool irq = cause >> 63;
    cpu->pc = (irq && (cpu->mtvec & 1)) ? base + 4 * (cause & 63) : base;
}

void tcg_raise(QsCpu *cpu, unsigned cause, uint64_t tval, uint64_t pc)
{
    enter_trap(cpu, cause, tval, pc);
    /* A fetch fault whose handler is where the fault was: the guest can never leave. */
    if ((cause == EXC_INSN_ACCESS || cause == EXC_INSN_MISALIGNED) &&
        (cpu->pc == pc || cpu->pc == tval)) {
        fprintf(stderr, "qemu-slim: hart %" G_GUINT64_FORMAT ": %s at 0x%" G_GINT64_MODIFIER
                "x and mtvec 0x%" G_GINT64_MODIFIER "x points there too: hart stopped\n",
                cpu->mhartid, cause == EXC_INSN_ACCESS ? "instruction access fault"
                                                       : "misaligned instruction address",
                tval, cpu->mtvec);
        cpu->state = HART_STUCK;
    }
    longjmp(cpu->jmp, 1);
}

bool tcg_cpu_check_irq(QsCpu *cpu)
{
    uint64_t pend = atomic_load(&cpu->mip) & cpu->mie;
    if (!pend || !(cpu->mstatus & MSTATUS_MIE)) return false;
    static const unsigned prio[] = { QS_CPU_IRQ_MEI, QS_CPU_IRQ_MSI, QS_CPU_IRQ_MTI };
    for (unsigned i = 0; i < 3; i++) {
        if (pend & (1ull << prio[i])) {
            enter_trap(cpu, (1ull << 63) | prio[i], 0, cpu->pc);
            return true;
        }
    }
    return false;
}

static void irq_recheck(QsCpu *cpu)
{
    if ((atomic_load(&cpu->mip) & cpu->mie) && (cpu->mstatus & MSTATUS_MIE))
        atomic_store(&cpu->exit_req, 1);
}

/* ---- CSRs ---- */

enum { CSR_OK, CSR_ILLEGAL };

/* The PMP CSRs of 16 entries, as QEMU 7.2's virt harts: pmpcfg0 and pmpcfg2 (odd pmpcfg
 * do not exist on RV64) and pmpaddr0..15. */
static bool pmp_csr(unsigned csr)
{
    return csr == 0x3a0 || csr == 0x3a2 || (csr >= 0x3b0 && csr <= 0x3bf);
}

static int csr_read(QsCpu *cpu, unsigned csr, uint64_t *v)
{
    switch (csr) {
    case 0x300: *v = cpu->mstatus; return CSR_OK;
    case 0x301: *v = MISA_RV64IMA; return CSR_OK;
    case 0x302: case 0x303: *v = 0; return CSR_OK;   /* medeleg/mideleg: no S-mode */
    case 0x304: *v = cpu->mie; return CSR_OK;
    case 0x305: *v = cpu->mtvec; return CSR_OK;
    case 0x306: *v = cpu->mcounteren; return CSR_OK;
    case 0x340: *v = cpu->mscratch; return CSR_OK;
    case 0x341: *v = cpu->mepc; return CSR_OK;
    case 0x342: *v = cpu->mcause; return CSR_OK;
    case 0x343: *v = cpu->mtval; return CSR_OK;
    case 0x344: *v = atomic_load(&cpu->mip); return CSR_OK;
    case 0xf11: case 0xf12: case 0xf13: case 0xf15: *v = 0; return CSR_OK;
    case 0xf14: *v = cpu->mhartid; return CSR_OK;
    case 0xb00: case 0xb02: case 0xc00: case 0xc02: *v = cpu->icount; return CSR_OK;
    case 0xc01:
        if (!time_fn) return CSR_ILLEGAL;
        *v = time_fn(time_opaque);
        return CSR_OK;
    }
    if (pmp_csr(csr)) {
        *v = 0;   /* PMP: no entries implemented (WARL zero) */
        return CSR_OK;
    }
    return CSR_ILLEGAL;
}

static int csr_write(QsCpu *cpu, unsigned csr, uint64_t v)
{
    if ((csr >> 10) == 3) return CSR_ILLEGAL;   /* read-only CSR */
    switch (csr) {
    case 0x300:
        cpu->mstatus = (v & (MSTATUS_MIE | MSTATUS_MPIE)) | MSTATUS_MPP;
        irq_recheck(cpu);
        return CSR_OK;
    case 0x304:
        cpu->mie = v & MIP_MASK;
        irq_recheck(cpu);
        return CSR_OK;
    case 0x305:
        if ((v & 3) < 2) cpu->mtvec = v;   /* reserved modes: write ignored */
        return CSR_OK;
    case 0x306: cpu->mcounteren = v & 0xffffffff; return CSR_OK;
    case 0x340: cpu->mscratch = v; return CSR_OK;
    case 0x341: cpu->mepc = v & ~3ull; return CSR_OK;
    case 0x342: cpu->mcause = v; return CSR_OK;
    case 0x343: cpu->mtval = v; return CSR_OK;
    case 0x301: case 0x302: case 0x303: case 0x344: return CSR_OK;   /* WARL, read-only bits */
    case 0xb00: case 0xb02: return CSR_OK;   /* counters: writes ignored */
    }
    if (pmp_csr(csr)) return CSR_OK;
    return CSR_ILLEGAL;
}

static uint64_t do_csr(QsCpu *cpu, uint64_t src, uint64_t desc, uint64_t pc)
{
    unsigned csr = desc & 0xfff, op = desc >> 12 & 3;
    bool write = desc >> 14 & 1;
    uint32_t insn = (uint32_t)(desc >> 32);
    uint64_t old;
    if (csr_read(cpu, csr, &old) != CSR_OK) tcg_raise(cpu, EXC_ILLEGAL, insn, pc);
    if (write) {
        uint64_t nv = op == 1 ? src : op == 2 ? (old | src) : (old & ~src);
        if (csr_write(cpu, csr, nv) != CSR_OK) tcg_raise(cpu, EXC_ILLEGAL, insn, pc);
    }
    return old;
}

uint64_t tcg_helper_call(QsCpu *cpu, unsigned helper, uint64_t a, uint64_t b, uint64_t pc)
{
    switch (helper) {
    case HELPER_CSR:
        return do_csr(cpu, a, b, pc);
    case HELPER_ECALL:
        tcg_raise(cpu, EXC_ECALL_M, 0, pc);
    case HELPER_EBREAK:
        tcg_raise(cpu, EXC_BREAKPOINT, 0, pc);   /* mtval 0, as QEMU 7.2 */
    case HELPER_ILLEGAL:
        tcg_raise(cpu, EXC_ILLEGAL, a, pc);
    case HELPER_MISALIGNED_JUMP:
        tcg_raise(cpu, EXC_INSN_MISALIGNED, a, pc);
    case HELPER_MRET: {
        uint64_t s = cpu->mstatus;
        s = (s & ~MSTATUS_MIE) | ((s & MSTATUS_MPIE) ? MSTATUS_MIE : 0);
        cpu->mstatus = s | MSTATUS_MPIE | MSTATUS_MPP;
        irq_recheck(cpu);
        return cpu->mepc;
    }
    case HELPER_WFI:
        if (atomic_load(&cpu->mip) & cpu->mie) return 0;   /* an interrupt is pending */
        cpu->pc = pc + 4;
        cpu->state = HART_WFI;
        longjmp(cpu->jmp, 1);
    case HELPER_FENCE_I:
        tcg_tb_flush(cpu->ram);
        return 0;
    }
    tcg_raise(cpu, EXC_ILLEGAL, 0, pc);
}

/* ---- memory slow paths ---- */

static bool in_ram(const TcgRam *r, uint64_t addr, unsigned size)
{
    return addr - r->base <= r->size - size;
}

uint64_t tcg_load_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    uint64_t v = 0;
    if (in_ram(cpu->ram, addr, size)) {
        memcpy(&v, cpu->ram->host + (addr - cpu->ram->base), size);
    } else if (!cpu->bus || !cpu->bus->load(cpu->bus->opaque, addr, size, &v)) {
        tcg_raise(cpu, EXC_LOAD_ACCESS, addr, pc);
    }
    if (size < 8) {
        unsigned sh = 64 - 8 * size;
        v = memop & QS_TCG_MO_SIGN ? (uint64_t)((int64_t)(v << sh) >> sh) : v << sh >> sh;
    }
    return v;
}

/* A store to RAM that may hit translated code: invalidate and store under the TB lock,
 * so no translation can read the old bytes in between. */
static void store_code(QsCpu *cpu, uint64_t off, unsigned size, uint64_t v)
{
    TcgRam *r = cpu->ram;
    tcg_tb_lock();
    if (r->code_map[off >> CODE_SHIFT]) tcg_tb_invalidate_page_locked(r, off);
    if (r->code_map[(off + size - 1) >> CODE_SHIFT]) tcg_tb_invalidate_page_locked(r, off + size - 1);
    memcpy(r->host + off, &v, size);
    tcg_tb_unlock();
}

void tcg_store_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t val, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    if (in_ram(cpu->ram, addr, size)) {
        store_code(cpu, addr - cpu->ram->base, size, val);
    } else if (!cpu->bus || !cpu->bus->store(cpu->bus->opaque, addr, size, val)) {
        tcg_raise(cpu, EXC_STORE_ACCESS, addr, pc);
    }
}

/* AMOs and compare-and-swap on MMIO: read and write through the bus (not atomic with
 * respect to devices, which serialize on the device lock anyway). */
uint64_t tcg_amo_slow(QsCpu *cpu, uint64_t addr, unsigned memop, unsigned amo,
                      uint64_t val, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    uint64_t old;
    if (!cpu->bus || !cpu->bus->load(cpu->bus->opaque, addr, size, &old))
        tcg_raise(cpu, EXC_STORE_ACCESS, addr, pc);
    if (size == 4) old = (uint64_t)(int64_t)(int32_t)old;
    uint64_t nv;
    switch (amo) {
    case QS_TCG_AMO_SWAP: nv = val; break;
    case QS_TCG_AMO_ADD: nv = old + val; break;
    case QS_TCG_AMO_AND: nv = old & val; break;
    case QS_TCG_AMO_OR: nv = old | val; break;
    case QS_TCG_AMO_XOR: nv = old ^ val; break;
    case QS_TCG_AMO_MIN: nv = (int64_t)old < (int64_t)val ? old : val; break;
    case QS_TCG_AMO_MAX: nv = (int64_t)old > (int64_t)val ? old : val; break;
    case QS_TCG_AMO_MINU: nv = old < val ? old : val; break;
    default: nv = old > val ? old : val; break;
    }
    if (!cpu->bus->store(cpu->bus->opaque, addr, size, nv))
        tcg_raise(cpu, EXC_STORE_ACCESS, addr, pc);
    return old;
}

uint64_t tcg_cmpxchg_slow(QsCpu *cpu, uint64_t addr, unsigned memop, uint64_t expect,
                          uint64_t val, uint64_t pc)
{
    unsigned size = 1u << (memop & QS_TCG_MO_SIZE_MASK);
    uint64_t old;
    if (!cpu->bus || !cpu->bus->load(cpu->bus->opaque, addr, size, &old))
        tcg_raise(cpu, EXC_STORE_ACCESS, addr, pc);
    if (size == 4) old = (uint64_t)(int64_t)(int32_t)old;
    uint64_t mask = size == 4 ? 0xffffffffull : UINT64_MAX;
    if ((old & mask) == (expect & mask) && !cpu->bus->store(cpu->bus->opaque, addr, size, val))
        tcg_raise(cpu, EXC_STORE_ACCESS, addr, pc);
    return old;
}

/* ---- the execution loop ---- */

void tcg_cpu_exec(QsCpu *cpu)
{
    setjmp(cpu->jmp);   /* traps and wfi come back here, with cpu->pc updated */
    while (!atomic_load_explicit(&cpu->exit_req, memory_order_relaxed)) {
        tcg_tb_quiescent(cpu);
        if (cpu->state != HART_RUNNING) return;
        if (tcg_cpu_check_irq(cpu)) continue;
        TB *tb = tcg_tb_lookup(cpu, cpu->pc);
        int slot = -1;
        TB *last = tcg_interp_exec(cpu, tb, &slot);
        if (slot >= 0 && !atomic_load_explicit(&cpu->exit_req, memory_order_relaxed)) {
            TB *next = tcg_tb_lookup(cpu, cpu->pc);
            tcg_tb_link(last, slot, next);
        }
    }
}
