/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Harts on the machine: -cpu/-accel/-d options, RAM and bus from the memory API, CLINT
 * and PLIC lines, one host thread per hart (MTTCG) or one round-robin thread, pause and
 * resume with the run state, QMP query-cpus-fast, and the built-in default payload. */
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "qs/machine.h"
#include "qs/qmp.h"
#include "qs-internal.h"
#include "runtime.h"
#include "tcg-internal.h"
#include "tcg-runtime.h"

typedef struct VcpuThread {
    QsCpu **harts;
    unsigned n;
    GThread *thread;
    bool parked;
    bool exited;
    int tid;
    QsCpu *_Atomic current;
} VcpuThread;

static TcgMachine mach;
static TcgBus bus;
static QsAddressSpace *sys_as;
static VcpuThread *threads;
static unsigned nthreads;
static GMutex hmutex;
static GCond hcond;
static bool running;          /* under hmutex */
static bool quit;             /* under hmutex */
static GThread *kicker;
static TcgOptions log_opts;   /* -d / -D, set before start */
static bool started;

/* ---- -d / -D ---- */

bool qs_tcg_set_log(const char *items, GError **errp)
{
    g_auto(GStrv) v = g_strsplit(items, ",", -1);
    for (int i = 0; v[i]; i++) {
        if (!strcmp(v[i], "op")) log_opts.log_op = true;
        else if (!strcmp(v[i], "op_opt")) log_opts.log_op_opt = true;
        else if (!strcmp(v[i], "in_asm")) log_opts.log_in_asm = true;
        else if (!strcmp(v[i], "help") || !*v[i] || !strcmp(v[i], "guest_errors") ||
                 !strcmp(v[i], "unimp") || !strcmp(v[i], "int")) {
            /* accepted: QEMU log items we have nothing more to say about */
        } else {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "-d %s: unknown log item '%s' (known: op, op_opt, in_asm)", items, v[i]);
            return false;
        }
    }
    return true;
}

bool qs_tcg_set_logfile(const char *path, GError **errp)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "-D %s: %s", path, g_strerror(errno));
        return false;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    if (log_opts.log) fclose(log_opts.log);
    log_opts.log = f;
    return true;
}

/* ---- interrupt lines and time ---- */

static void irq_handler(void *opaque, int n, int level)
{
    qs_cpu_set_irq(((QsCpu *)opaque)->mhartid, (unsigned)n, level);
}

void qs_cpu_set_irq(unsigned hart, unsigned irq, bool level)
{
    if (hart >= mach.nharts || irq >= 64) return;
    QsCpu *cpu = mach.harts[hart];
    if (level) atomic_fetch_or(&cpu->mip, 1ull << irq);
    else atomic_fetch_and(&cpu->mip, ~(1ull << irq));
    atomic_store(&cpu->exit_req, 1);
    g_mutex_lock(&hmutex);
    g_cond_broadcast(&hcond);
    g_mutex_unlock(&hmutex);
}

static uint64_t read_mtime(void *opaque)
{
    uint64_t v = 0;
    qs_address_space_load(sys_as, 0x200bff8, 8, &v, QS_MEMTXATTRS_UNSPECIFIED);
    return v;
}

static bool bus_load(void *opaque, uint64_t addr, unsigned size, uint64_t *val)
{
    return qs_address_space_load(sys_as, addr, size, val, QS_MEMTXATTRS_UNSPECIFIED) ==
           QS_MEMTX_OK;
}

static bool bus_store(void *opaque, uint64_t addr, unsigned size, uint64_t val)
{
    return qs_address_space_store(sys_as, addr, size, val, QS_MEMTXATTRS_UNSPECIFIED) ==
           QS_MEMTX_OK;
}

/* ---- threads ---- */

static bool runnable(QsCpu *cpu)
{
    if (cpu->state == HART_RUNNING) return true;
    if (cpu->state == HART_WFI && (atomic_load(&cpu->mip) & cpu->mie)) {
        cpu->state = HART_RUNNING;
        return true;
    }
    return false;
}

static gpointer vcpu_thread(gpointer data)
{
    VcpuThread *t = data;
    unsigned next = 0;
    g_mutex_lock(&hmutex);
    t->tid = (int)syscall(SYS_gettid);   /* qs_tcg_start waits for it (query-cpus-fast) */
    g_cond_broadcast(&hcond);
    g_mutex_unlock(&hmutex);
    for (;;) {
        QsCpu *cpu = NULL;
        g_mutex_lock(&hmutex);
        for (;;) {
            if (quit) break;
            if (running) {
                for (unsigned k = 0; k < t->n && !cpu; k++) {
                    QsCpu *c = t->harts[(next + k) % t->n];
                    if (runnable(c)) {
                        cpu = c;
                        next = (next + k + 1) % t->n;
                    }
                }
                if (cpu) break;
            }
            t->parked = true;
            g_cond_broadcast(&hcond);
            g_cond_wait(&hcond, &hmutex);
        }
        t->parked = false;
        if (quit) {
            t->exited = true;
            g_cond_broadcast(&hcond);
            g_mutex_unlock(&hmutex);
            return NULL;
        }
        atomic_store(&cpu->exit_req, 0);
        atomic_store(&t->current, cpu);
        atomic_store(&cpu->online, 1);
        g_mutex_unlock(&hmutex);
        tcg_cpu_exec(cpu);
        atomic_store(&cpu->online, 0);
    }
}

/* Single-threaded round robin: give each hart a time slice. */
static gpointer kicker_thread(gpointer data)
{
    for (;;) {
        g_usleep(2000);
        g_mutex_lock(&hmutex);
        bool q = quit;
        g_mutex_unlock(&hmutex);
        if (q) return NULL;
        QsCpu *c = atomic_load(&threads[0].current);
        if (c) atomic_store(&c->exit_req, 1);
    }
}

static void kick_all(void)
{
    for (unsigned i = 0; i < mach.nharts; i++) atomic_store(&mach.harts[i]->exit_req, 1);
}

/* Wait (under hmutex) until no thread runs guest code. */
static void wait_parked(void)
{
    for (;;) {
        bool all = true;
        for (unsigned i = 0; i < nthreads; i++) all &= threads[i].parked || threads[i].exited;
        if (all) return;
        kick_all();
        gint64 end = g_get_monotonic_time() + 1000;
        g_cond_wait_until(&hcond, &hmutex, end);
    }
}

static void runstate_changed(bool run, void *opaque)
{
    g_mutex_lock(&hmutex);
    running = run;
    if (run) g_cond_broadcast(&hcond);
    else wait_parked();
    g_mutex_unlock(&hmutex);
}

void qs_tcg_stop(void)
{
    if (!started) return;
    g_mutex_lock(&hmutex);
    quit = true;
    g_cond_broadcast(&hcond);
    kick_all();
    g_mutex_unlock(&hmutex);
    for (unsigned i = 0; i < nthreads; i++) g_thread_join(threads[i].thread);
    if (kicker) g_thread_join(kicker);
    kicker = NULL;
    qs_runstate_notifier_remove(runstate_changed, NULL);
    qs_qmp_unregister("query-cpus-fast");
    qs_qmp_unregister("x-query-harts");
    tcg_tb_free_all();
    for (unsigned i = 0; i < mach.nharts; i++) g_free(mach.harts[i]);
    for (unsigned i = 0; i < nthreads; i++) g_free(threads[i].harts);
    g_free(mach.harts);
    g_free(threads);
    g_free(mach.ram.code_map);
    memset(&mach, 0, sizeof(mach));
    threads = NULL;
    nthreads = 0;
    started = false;
    quit = false;
}

/* ---- QMP ---- */

static JsonNode *qmp_query_cpus_fast(JsonObject *args, void *opaque, GError **errp)
{
    JsonArray *arr = json_array_new();
    for (unsigned i = 0; i < mach.nharts; i++) {
        JsonObject *o = json_object_new();
        JsonObject *props = json_object_new();
        json_object_set_int_member(props, "core-id", i);
        json_object_set_int_member(props, "socket-id", 0);
        json_object_set_int_member(props, "thread-id", 0);
        json_object_set_int_member(o, "cpu-index", i);
        json_object_set_object_member(o, "props", props);
        g_autofree char *path = g_strdup_printf("/machine/soc0/harts[%u]", i);
        json_object_set_string_member(o, "qom-path", path);
        unsigned ti = nthreads == 1 ? 0 : i;
        json_object_set_int_member(o, "thread-id", threads ? threads[ti].tid : 0);
        json_object_set_string_member(o, "target", "riscv64");
        json_array_add_object_element(arr, o);
    }
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, arr);
    return n;
}

/* Our own: the architectural state of every hart (exact while the VM is stopped). */
static JsonNode *qmp_query_harts(JsonObject *args, void *opaque, GError **errp)
{
    static const char *const states[] = { "running", "wfi", "stuck", "done" };
    JsonArray *arr = json_array_new();
    for (unsigned i = 0; i < mach.nharts; i++) {
        QsCpu *c = mach.harts[i];
        JsonObject *o = json_object_new();
        json_object_set_int_member(o, "cpu-index", i);
        json_object_set_int_member(o, "pc", (int64_t)__atomic_load_n(&c->pc, __ATOMIC_RELAXED));
        json_object_set_string_member(o, "state", states[c->state & 3]);
        json_object_set_int_member(o, "mcause", (int64_t)c->mcause);
        json_object_set_int_member(o, "mepc", (int64_t)c->mepc);
        json_object_set_int_member(o, "insns", (int64_t)c->icount);
        JsonArray *x = json_array_new();
        for (unsigned r = 0; r < 32; r++) json_array_add_int_element(x, (int64_t)c->regs[r]);
        json_object_set_array_member(o, "x", x);
        json_array_add_object_element(arr, o);
    }
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, arr);
    return n;
}

/* ---- options and start ---- */

static bool parse_cpu(const char *spec, bool *ztso, GError **errp)
{
    *ztso = false;
    if (!spec) return true;
    g_autofree char *head = NULL;
    g_autofree char *rest = qs_opts_split_head(spec, &head);
    if (strcmp(head, "rv64") && strcmp(head, "any") && strcmp(head, "max")) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-cpu %s: unknown CPU model '%s' (supported: rv64)", spec, head);
        return false;
    }
    g_auto(GStrv) kv = g_strsplit(rest, ",", -1);
    for (int i = 0; kv[i]; i++) {
        if (!*kv[i]) continue;
        if (!strcmp(kv[i], "ztso=on") || !strcmp(kv[i], "ztso=true") || !strcmp(kv[i], "ztso")) *ztso = true;
        else if (!strcmp(kv[i], "ztso=off") || !strcmp(kv[i], "ztso=false")) *ztso = false;
        else {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "-cpu %s: unknown option '%s' (supported: ztso=on|off)", spec, kv[i]);
            return false;
        }
    }
    return true;
}

/* Returns 1 for multi-threaded, 0 for single, -1 for "no CPUs" (qtest), -2 on error. */
static int parse_accel(const char *spec, unsigned smp, GError **errp)
{
    if (!spec) return smp > 1;
    g_autofree char *head = NULL;
    g_autofree char *rest = qs_opts_split_head(spec, &head);
    if (!strcmp(head, "qtest")) return -1;
    if (strcmp(head, "tcg")) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-accel %s: accelerator '%s' is not available (supported: tcg, qtest)",
                    spec, head);
        return -2;
    }
    int multi = smp > 1;
    g_auto(GStrv) kv = g_strsplit(rest, ",", -1);
    for (int i = 0; kv[i]; i++) {
        if (!*kv[i]) continue;
        if (!strcmp(kv[i], "thread=multi")) multi = 1;
        else if (!strcmp(kv[i], "thread=single")) multi = 0;
        else if (g_str_has_prefix(kv[i], "tb-size=")) continue;
        else {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "-accel %s: unknown option '%s' (supported: thread=multi|single)",
                        spec, kv[i]);
            return -2;
        }
    }
    return multi;
}

extern const uint8_t qs_tcg_payload_start[];
extern const uint8_t *const qs_tcg_payload_end_ptr;

bool qs_tcg_start(const QsMachineConfig *cfg, GError **errp)
{
    bool ztso;
    if (!parse_cpu(cfg->cpu, &ztso, errp)) return false;
    int multi = parse_accel(cfg->accel, cfg->smp, errp);
    if (multi == -2) return false;
    if (multi == -1 || qs_qtest_enabled()) return true;   /* qtest drives the machine */
    const QsMachineInfo *info = qs_machine_current();
    if (!info || !info->ram) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "tcg: no machine with RAM to run on");
        return false;
    }
    if (started) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "tcg: harts already started");
        return false;
    }
    sys_as = info->as;
    mach.ram.host = qs_memory_region_get_ram_ptr(info->ram);
    mach.ram.base = info->ram_base;
    mach.ram.size = info->ram_size;
    if (!mach.ram.host || mach.ram.size < 4096 || (mach.ram.size & 4095)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "tcg: RAM of %" G_GUINT64_FORMAT " bytes: need a multiple of 4 KiB",
                    mach.ram.size);
        return false;
    }
    mach.ram.code_map = g_malloc0(mach.ram.size >> CODE_SHIFT);
    bus = (TcgBus){ .load = bus_load, .store = bus_store };
    mach.bus = &bus;
    mach.opts = log_opts;
    mach.opts.ztso = ztso;

    uint64_t entry = info->entry_pc;
    if (!info->kernel_loaded) {
        size_t len = (size_t)(qs_tcg_payload_end_ptr - qs_tcg_payload_start);
        if (len > mach.ram.size) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "tcg: default payload (%zu bytes) does not fit in RAM", len);
            return false;
        }
        memcpy(mach.ram.host, qs_tcg_payload_start, len);
        entry = mach.ram.base;
    }

    tcg_tb_init();
    mach.nharts = cfg->smp;
    mach.harts = g_new0(QsCpu *, mach.nharts);
    for (unsigned i = 0; i < mach.nharts; i++) {
        QsCpu *cpu = tcg_cpu_new(&mach, i);
        tcg_cpu_reset(cpu, entry, 0);
        mach.harts[i] = cpu;
        if (!strcmp(info->name, "virt")) {
            /* connection failures mean the line does not exist on this machine */
            qs_gpio_connect_out("/machine/clint", "msip", i,
                                qs_irq_new(irq_handler, cpu, QS_CPU_IRQ_MSI), NULL);
            qs_gpio_connect_out("/machine/clint", "mtip", i,
                                qs_irq_new(irq_handler, cpu, QS_CPU_IRQ_MTI), NULL);
            qs_gpio_connect_out("/machine/soc/plic", NULL, 2 * i,
                                qs_irq_new(irq_handler, cpu, QS_CPU_IRQ_MEI), NULL);
        }
    }
    if (!strcmp(info->name, "virt")) qs_cpu_set_time_source(read_mtime, NULL);
    tcg_tb_set_machine(&mach);

    nthreads = multi ? mach.nharts : 1;
    threads = g_new0(VcpuThread, nthreads);
    for (unsigned t = 0; t < nthreads; t++) {
        threads[t].n = multi ? 1 : mach.nharts;
        threads[t].harts = g_new0(QsCpu *, threads[t].n);
        for (unsigned k = 0; k < threads[t].n; k++)
            threads[t].harts[k] = mach.harts[multi ? t : k];
    }
    GError *err = NULL;
    qs_qmp_register("query-cpus-fast", qmp_query_cpus_fast, NULL, &err);
    g_clear_error(&err);
    qs_qmp_register("x-query-harts", qmp_query_harts, NULL, &err);
    g_clear_error(&err);
    running = qs_runstate_is_running();
    qs_runstate_notifier_add(runstate_changed, NULL);
    started = true;
    for (unsigned t = 0; t < nthreads; t++) {
        g_autofree char *name = g_strdup_printf("CPU %u/TCG", t);
        threads[t].thread = g_thread_new(name, vcpu_thread, &threads[t]);
    }
    if (!multi && mach.nharts > 1) kicker = g_thread_new("tcg-rr-kick", kicker_thread, NULL);
    g_mutex_lock(&hmutex);
    for (unsigned t = 0; t < nthreads; t++) {
        while (!threads[t].tid) g_cond_wait(&hcond, &hmutex);
    }
    g_mutex_unlock(&hmutex);
    return true;
}
