/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The translation-block cache: lookup (per-hart jump cache, then a global table),
 * translation under one lock, chaining, invalidation by page and full flush, and safe
 * reclamation of retired blocks once every hart has left translated code. */
#include <string.h>
#include "tcg-internal.h"

static GMutex tb_lock;
static GHashTable *tb_table;        /* guest pc -> TB (valid ones) */
static GHashTable *page_tbs;        /* RAM page number -> GPtrArray of TB */
static GPtrArray *garbage;          /* retired TBs not yet freed */
static atomic_uint garbage_len;
static atomic_ullong inval_gen = 1; /* bumped after every batch of retirements */
static TcgMachine *reclaim_mach;    /* whose harts must be quiescent to free garbage */
static TcgStats stats;

static inline unsigned jc_hash(uint64_t pc) { return (unsigned)(pc >> 2) & (JC_SIZE - 1); }

static guint hash_pc(gconstpointer k) { uint64_t v = *(const uint64_t *)k; return (guint)(v ^ v >> 29); }
static gboolean eq_pc(gconstpointer a, gconstpointer b)
{
    return *(const uint64_t *)a == *(const uint64_t *)b;
}

void tcg_tb_init(void)
{
    tcg_interp_exec(NULL, NULL, NULL);   /* fills the handler table */
    g_mutex_lock(&tb_lock);
    if (!tb_table) {
        tb_table = g_hash_table_new(hash_pc, eq_pc);
        page_tbs = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                         (GDestroyNotify)g_ptr_array_unref);
        garbage = g_ptr_array_new();
    }
    g_mutex_unlock(&tb_lock);
}

void tcg_tb_set_machine(TcgMachine *m)
{
    g_mutex_lock(&tb_lock);
    reclaim_mach = m;
    g_mutex_unlock(&tb_lock);
}

void tcg_tb_lock(void) { g_mutex_lock(&tb_lock); }
void tcg_tb_unlock(void) { g_mutex_unlock(&tb_lock); }

static void tb_free(TB *tb)
{
    g_free(tb->code - 1);   /* the code has a header Insn (see tcg_backend_gen) */
    g_ptr_array_unref(tb->jmp_in);
    g_free(tb);
}

/* Under the lock: take tb out of service (others may still be running it). */
static void retire(TB *tb, bool drop_from_page)
{
    if (!atomic_load(&tb->valid)) return;
    atomic_store(&tb->valid, 0);
    if (g_hash_table_lookup(tb_table, &tb->pc) == tb) g_hash_table_remove(tb_table, &tb->pc);
    for (guint i = 0; i < tb->jmp_in->len; i++) {
        uintptr_t e = (uintptr_t)tb->jmp_in->pdata[i];
        TB *src = (TB *)(e & ~(uintptr_t)1);
        int slot = e & 1;
        __atomic_store_n((Insn **)&src->jmp_insn[slot]->aux, NULL, __ATOMIC_RELEASE);
        src->jmp_dest[slot] = NULL;
    }
    g_ptr_array_set_size(tb->jmp_in, 0);
    for (int slot = 0; slot < 2; slot++) {
        TB *d = tb->jmp_dest[slot];
        if (!d) continue;
        g_ptr_array_remove_fast(d->jmp_in, (gpointer)((uintptr_t)tb | (uintptr_t)slot));
        __atomic_store_n((Insn **)&tb->jmp_insn[slot]->aux, NULL, __ATOMIC_RELEASE);
        tb->jmp_dest[slot] = NULL;
    }
    if (drop_from_page) {
        GPtrArray *list = g_hash_table_lookup(page_tbs, GUINT_TO_POINTER(tb->page));
        if (list) g_ptr_array_remove_fast(list, tb);
    }
    tb->retire_gen = atomic_load(&inval_gen);
    g_ptr_array_add(garbage, tb);
    atomic_store(&garbage_len, garbage->len);
    stats.invalidated++;
}

static void kick_all(void)
{
    TcgMachine *m = reclaim_mach;
    for (unsigned i = 0; m && i < m->nharts; i++) atomic_store(&m->harts[i]->exit_req, 1);
}

static void end_batch(void)
{
    atomic_fetch_add(&inval_gen, 1);
    if (garbage->len > 256) kick_all();   /* make every hart pass a quiescent point */
}

void tcg_tb_invalidate_page_locked(TcgRam *ram, uint64_t off)
{
    uint64_t line = off >> CODE_SHIFT, page = off >> 12;
    GPtrArray *list = g_hash_table_lookup(page_tbs, GUINT_TO_POINTER(page));
    for (guint i = 0; list && i < list->len;) {
        TB *tb = list->pdata[i];
        if (tb->line_first <= line && line <= tb->line_last) {
            g_ptr_array_remove_index_fast(list, i);
            retire(tb, false);
        } else {
            i++;
        }
    }
    atomic_store((_Atomic uint8_t *)&ram->code_map[line], 0);
    end_batch();
}

void tcg_tb_invalidate_page(TcgRam *ram, uint64_t off)
{
    g_mutex_lock(&tb_lock);
    tcg_tb_invalidate_page_locked(ram, off);
    g_mutex_unlock(&tb_lock);
}

void tcg_tb_flush(TcgRam *ram)
{
    g_mutex_lock(&tb_lock);
    GHashTableIter it;
    gpointer k, v;
    GPtrArray *all = g_ptr_array_new();
    g_hash_table_iter_init(&it, tb_table);
    while (g_hash_table_iter_next(&it, &k, &v)) g_ptr_array_add(all, v);
    for (guint i = 0; i < all->len; i++) retire(all->pdata[i], false);
    g_ptr_array_free(all, TRUE);
    g_hash_table_remove_all(page_tbs);
    if (ram && ram->code_map) memset(ram->code_map, 0, ram->size >> CODE_SHIFT);
    stats.flushes++;
    end_batch();
    g_mutex_unlock(&tb_lock);
}

static void reclaim(void)
{
    uint64_t min = UINT64_MAX;
    TcgMachine *m = reclaim_mach;
    for (unsigned i = 0; m && i < m->nharts; i++) {
        QsCpu *c = m->harts[i];
        if (!c || !atomic_load(&c->online)) continue;
        uint64_t q = atomic_load(&c->quiescent_gen);
        if (q < min) min = q;
    }
    guint j = 0;
    for (guint i = 0; i < garbage->len; i++) {
        TB *tb = garbage->pdata[i];
        if (tb->retire_gen < min) tb_free(tb);
        else garbage->pdata[j++] = tb;
    }
    g_ptr_array_set_size(garbage, j);
    atomic_store(&garbage_len, j);
}

void tcg_tb_quiescent(QsCpu *cpu)
{
    uint64_t g = atomic_load(&inval_gen);
    if (g != cpu->jc_gen) {
        memset(cpu->jc, 0, sizeof(cpu->jc));
        cpu->jc_gen = g;
    }
    atomic_store(&cpu->quiescent_gen, g);
    if (atomic_load(&garbage_len) && g_mutex_trylock(&tb_lock)) {
        reclaim();
        g_mutex_unlock(&tb_lock);
    }
}

static TB *translate_locked(QsCpu *cpu, uint64_t pc, bool *fault)
{
    TcgRam *ram = cpu->ram;
    const TcgOptions *o = &cpu->mach->opts;
    *fault = false;
    if (pc < ram->base || pc - ram->base > ram->size - 4) { *fault = true; return NULL; }
    uint64_t off = pc - ram->base, page = off >> 12;
    /* Mark every line the block may cover before reading it, so that a store from now
     * on invalidates. */
    uint64_t last = MIN(off + 4ull * TCG_MAX_INSNS, (page + 1) << 12) - 1;
    for (uint64_t l = off >> CODE_SHIFT; l <= last >> CODE_SHIFT; l++)
        atomic_store((_Atomic uint8_t *)&ram->code_map[l], 1);
    TB *tb = g_new0(TB, 1);
    for (unsigned max = TCG_MAX_INSNS;; max = 1) {
        QsTcgBlock b;
        if (!tcg_riscv_translate(&b, ram, pc, o, max)) {
            tcg_block_free(&b);
            g_free(tb);
            *fault = true;
            return NULL;
        }
        if (o->log_in_asm) {
            fprintf(o->log ? o->log : stderr, "IN: pc=0x%016" G_GINT64_MODIFIER "x, %u insns\n\n",
                    pc, b.ninsns);
        }
        tcg_pipeline_run(&b, o);
        tb->pc = pc;
        tb->pc_end = pc + 4ull * b.ninsns;
        tb->ninsns = b.ninsns;
        bool ok = tcg_backend_gen(tb, &b);
        tcg_block_free(&b);
        if (ok) break;
        if (max == 1) {   /* passes made even a one-instruction block too big */
            g_free(tb);
            *fault = true;
            return NULL;
        }
    }
    tb->page = page;
    tb->line_first = off >> CODE_SHIFT;
    tb->line_last = (tb->pc_end - 1 - ram->base) >> CODE_SHIFT;
    tb->jmp_in = g_ptr_array_new();
    atomic_store(&tb->valid, 1);
    TB *old = g_hash_table_lookup(tb_table, &tb->pc);
    if (old) retire(old, true);
    g_hash_table_insert(tb_table, &tb->pc, tb);
    GPtrArray *list = g_hash_table_lookup(page_tbs, GUINT_TO_POINTER(page));
    if (!list) {
        list = g_ptr_array_new();
        g_hash_table_insert(page_tbs, GUINT_TO_POINTER(page), list);
    }
    g_ptr_array_add(list, tb);
    stats.translated++;
    return tb;
}

TB *tcg_tb_lookup(QsCpu *cpu, uint64_t pc)
{
    TB *tb = cpu->jc[jc_hash(pc)];
    if (tb && tb->pc == pc && atomic_load_explicit(&tb->valid, memory_order_acquire))
        return tb;
    g_mutex_lock(&tb_lock);
    tb = g_hash_table_lookup(tb_table, &pc);
    bool fault = false;
    if (!tb) tb = translate_locked(cpu, pc, &fault);
    g_mutex_unlock(&tb_lock);
    if (fault) tcg_raise(cpu, EXC_INSN_ACCESS, pc, pc);
    cpu->jc[jc_hash(pc)] = tb;
    return tb;
}

void tcg_tb_link(TB *from, int slot, TB *to)
{
    g_mutex_lock(&tb_lock);
    Insn *j = from->jmp_insn[slot];
    if (atomic_load(&from->valid) && atomic_load(&to->valid) && j &&
        (uint64_t)j->imm == to->pc && !from->jmp_dest[slot]) {
        from->jmp_dest[slot] = to;
        g_ptr_array_add(to->jmp_in, (gpointer)((uintptr_t)from | (uintptr_t)slot));
        __atomic_store_n((Insn **)&j->aux, to->code, __ATOMIC_RELEASE);
        stats.chained++;
    }
    g_mutex_unlock(&tb_lock);
}

TcgStats tcg_tb_stats(void)
{
    g_mutex_lock(&tb_lock);
    TcgStats s = stats;
    s.live = tb_table ? g_hash_table_size(tb_table) : 0;
    s.garbage = garbage ? garbage->len : 0;
    g_mutex_unlock(&tb_lock);
    return s;
}

/* Every hart has stopped: free everything. */
void tcg_tb_free_all(void)
{
    g_mutex_lock(&tb_lock);
    if (tb_table) {
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, tb_table);
        while (g_hash_table_iter_next(&it, &k, &v)) g_ptr_array_add(garbage, v);
        g_hash_table_remove_all(tb_table);
        g_hash_table_remove_all(page_tbs);
        for (guint i = 0; i < garbage->len; i++) tb_free(garbage->pdata[i]);
        g_ptr_array_set_size(garbage, 0);
        atomic_store(&garbage_len, 0);
    }
    atomic_fetch_add(&inval_gen, 1);
    memset(&stats, 0, sizeof(stats));
    g_mutex_unlock(&tb_lock);
}
