/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Loops (the main loop and iothreads, each a GMainContext run by one thread), their
 * registry, the poll wrapper and the observer registry (writers and grace periods). */
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include "loop-internal.h"
#include "qs-internal.h"

static GMutex reg_lock;            /* loops */
static GPtrArray *loops;           /* QsLoop *, main first */
static QsLoop *main_loop;
static __thread QsLoop *cur_loop;  /* loop this thread is running, for the poll wrapper */

/* ---- observers: the write side (the read side is in loop-internal.h) ---- */

int qs_evloop_nobs;
ObsList *qs_evloop_obs_list;       /* NULL when empty */
bool qs_evloop_obs_fenced;
__thread ObsReader *qs_evloop_reader_p;

static GMutex obs_lock;            /* serialises writers; never taken by readers */
static GMutex readers_lock;        /* the set of reader threads */
static GPtrArray *readers;         /* ObsReader * of live threads that entered once */
static bool membarrier_checked;

static void reader_unregister(gpointer p)
{
    g_mutex_lock(&readers_lock);
    g_ptr_array_remove_fast(readers, p);
    g_mutex_unlock(&readers_lock);
    if (qs_evloop_reader_p == p) qs_evloop_reader_p = NULL;   /* runs in that thread */
    g_aligned_free(p);
}

static GPrivate reader_key = G_PRIVATE_INIT(reader_unregister);

/* First section of a thread: make it known to writers (before its seq first changes). */
unsigned qs_obs_reader_register(void)
{
    ObsReader *r = g_aligned_alloc0(1, 64, 64);    /* a cache line of its own */
    g_mutex_lock(&readers_lock);
    if (!readers) readers = g_ptr_array_new();
    g_ptr_array_add(readers, r);
    g_mutex_unlock(&readers_lock);
    g_private_set(&reader_key, r);   /* unregistered when the thread exits */
    __atomic_store_n(&r->seq, 2, __ATOMIC_RELAXED);
    qs_evloop_reader_p = r;
    return 2;
}

/* Called once, under obs_lock, before the first list is published: readers skip their
 * fence only if the kernel can make them execute one when a writer asks. */
static void membarrier_setup(void)
{
    if (membarrier_checked) return;
    membarrier_checked = true;
    long r = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
    qs_evloop_obs_fenced = r != 0;
}

/* Wait until no other thread can still be using a list published before this call. */
static void obs_synchronize(void)
{
    if (qs_evloop_obs_fenced ||
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
        /* only reached with fencing readers (registration succeeded otherwise) */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    g_mutex_lock(&readers_lock);
    for (guint i = 0; readers && i < readers->len; i++) {
        ObsReader *r = readers->pdata[i];
        if (r == qs_evloop_reader_p) continue;    /* removing from inside a callback */
        unsigned s = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
        if (!(s & 1)) continue;
        while (__atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) == s) g_usleep(20);
    }
    g_mutex_unlock(&readers_lock);
}

/* Lists replaced from inside an observer callback: the calling thread may still be
 * walking them, so they are freed by a later publish made outside any section. */
static GPtrArray *retired;

static void obs_publish(ObsList *nl)
{
    membarrier_setup();
    ObsList *old = __atomic_exchange_n(&qs_evloop_obs_list, nl, __ATOMIC_SEQ_CST);
    __atomic_store_n(&qs_evloop_nobs, nl ? (int)nl->n : 0, __ATOMIC_RELEASE);
    obs_synchronize();
    if (qs_evloop_reader_p && (qs_evloop_reader_p->seq & 1)) {    /* inside a section of this thread */
        if (!retired) retired = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(retired, old);
        return;
    }
    g_free(old);
    if (retired) g_ptr_array_set_size(retired, 0);
}

static ObsList *obs_copy(guint extra, const QsEvloopObserver *skip)
{
    ObsList *cur = qs_evloop_obs_list;
    guint n = cur ? cur->n : 0;
    ObsList *nl = g_malloc0(sizeof(ObsList) + (n + extra) * sizeof(ObsEntry));
    for (guint i = 0; i < n; i++) {
        if (cur->e[i].obs != skip) nl->e[nl->n++] = cur->e[i];
    }
    return nl;
}

static void observer_undo(void *data)
{
    qs_evloop_observer_remove(data);
}

bool qs_evloop_observer_add(const QsEvloopObserver *obs, void *opaque, GError **errp)
{
    if (!obs || !obs->name || !*obs->name) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "event-loop observer without a name");
        return false;
    }
    g_mutex_lock(&obs_lock);
    ObsList *cur = qs_evloop_obs_list;
    for (guint i = 0; cur && i < cur->n; i++) {
        if (!strcmp(cur->e[i].obs->name, obs->name)) {
            g_mutex_unlock(&obs_lock);
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "event-loop observer '%s' is already registered", obs->name);
            return false;
        }
    }
    g_mutex_unlock(&obs_lock);
    if (!qs_module_claim("observer", obs->name, errp)) return false;
    g_mutex_lock(&obs_lock);
    ObsList *nl = obs_copy(1, NULL);
    nl->e[nl->n++] = (ObsEntry){ obs, opaque };
    obs_publish(nl);
    g_mutex_unlock(&obs_lock);
    qs_module_track(observer_undo, (void *)obs);
    return true;
}

void qs_evloop_observer_remove(const QsEvloopObserver *obs)
{
    g_mutex_lock(&obs_lock);
    ObsList *cur = qs_evloop_obs_list;
    bool found = false;
    for (guint i = 0; cur && i < cur->n; i++) found |= cur->e[i].obs == obs;
    if (found) {
        ObsList *nl = obs_copy(0, obs);
        if (!nl->n) g_clear_pointer(&nl, g_free);
        obs_publish(nl);
    }
    g_mutex_unlock(&obs_lock);
}

/* Loop life-cycle callbacks, through a read-side section (no lock held, so a callback
 * may use qs_loop_foreach). */
static void obs_loop_event(QsLoop *loop, bool added)
{
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const QsEvloopObserver *o = l->e[i].obs;
        if (added && o->loop_added) o->loop_added(loop, l->e[i].opaque);
        if (!added && o->loop_removed) o->loop_removed(loop, l->e[i].opaque);
    }
    obs_leave(token);
}

/* ---- loops ---- */

static void obs_poll(QsLoop *loop, bool begin, int timeout)
{
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const QsEvloopObserver *o = l->e[i].obs;
        if (begin && o->poll_begin) o->poll_begin(loop, timeout, l->e[i].opaque);
        if (!begin && o->poll_end) o->poll_end(loop, l->e[i].opaque);
    }
    obs_leave(token);
}

/* GLib rounds a poll timeout up to whole milliseconds, so a timer would fire up to 1 ms
 * late (a periodic 200 Hz timer re-armed from "now" loses ~10% of its rate that way):
 * when our timers are what the poll waits for, sleep until their deadline with ns
 * precision instead. */
static gint loop_poll(GPollFD *fds, guint nfds, gint timeout)
{
    QsLoop *l = cur_loop;
    int64_t wait_ns = l && timeout != 0 ? qs_timer_loop_wait_ns(l, timeout) : -1;
    if (G_UNLIKELY(obs_active()) && l) {
        obs_poll(l, true, wait_ns >= 0 ? (int)((wait_ns + 999999) / 1000000) : timeout);
    }
    gint r;
    if (wait_ns >= 0) {
        struct timespec ts = { wait_ns / 1000000000, wait_ns % 1000000000 };
        /* GPollFD has struct pollfd's layout on Unix (g_poll is poll) */
        r = ppoll((struct pollfd *)fds, nfds, &ts, NULL);
    } else {
        r = g_poll(fds, nfds, timeout);
    }
    if (G_UNLIKELY(obs_active()) && l) obs_poll(l, false, 0);
    return r;
}

static QsLoop *loop_new(const char *name, GMainContext *ctx, bool is_main)
{
    QsLoop *l = g_new0(QsLoop, 1);
    l->name = g_strdup(name);
    l->ctx = ctx;
    l->ml = g_main_loop_new(ctx, FALSE);
    l->is_main = is_main;
    g_main_context_set_poll_func(ctx, loop_poll);
    return l;
}

QsLoop *qs_loop_main(void)
{
    QsLoop *l = g_atomic_pointer_get(&main_loop);
    if (G_LIKELY(l)) return l;
    g_mutex_lock(&reg_lock);
    if (!main_loop) {
        l = loop_new("main", g_main_context_ref(g_main_context_default()), true);
        l->self = g_thread_self();
        l->tid = (int)syscall(SYS_gettid);
        if (!loops) loops = g_ptr_array_new();
        g_ptr_array_insert(loops, 0, l);
        g_atomic_pointer_set(&main_loop, l);
    }
    g_mutex_unlock(&reg_lock);
    return main_loop;
}

typedef struct IothreadStart {
    QsLoop *loop;
    GMutex lock;
    GCond cond;
    bool started;
} IothreadStart;

static gpointer iothread_fn(gpointer data)
{
    IothreadStart *st = data;
    QsLoop *l = st->loop;
    g_main_context_push_thread_default(l->ctx);
    cur_loop = l;
    g_mutex_lock(&st->lock);
    l->self = g_thread_self();
    l->tid = (int)syscall(SYS_gettid);
    st->started = true;
    g_cond_signal(&st->cond);
    g_mutex_unlock(&st->lock);
    /* not g_main_loop_run: a quit before it started would be lost */
    while (!g_atomic_int_get(&l->stopping)) g_main_context_iteration(l->ctx, TRUE);
    cur_loop = NULL;
    g_main_context_pop_thread_default(l->ctx);
    return NULL;
}

QsLoop *qs_iothread_new(const char *name, GError **errp)
{
    if (!name || !*name) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "iothread without a name");
        return NULL;
    }
    qs_loop_main();
    QsLoop *l = loop_new(name, g_main_context_new(), false);
    IothreadStart st = { .loop = l };
    g_mutex_init(&st.lock);
    g_cond_init(&st.cond);
    g_autofree char *tname = g_strndup(name, 15);
    l->thread = g_thread_try_new(tname, iothread_fn, &st, errp);
    if (l->thread) {
        g_mutex_lock(&st.lock);
        while (!st.started) g_cond_wait(&st.cond, &st.lock);
        g_mutex_unlock(&st.lock);
    }
    g_mutex_clear(&st.lock);
    g_cond_clear(&st.cond);
    if (!l->thread) {
        g_prefix_error(errp, "iothread '%s': ", name);
        g_main_loop_unref(l->ml);
        g_main_context_unref(l->ctx);
        g_free(l->name);
        g_free(l);
        return NULL;
    }
    g_mutex_lock(&reg_lock);
    g_ptr_array_add(loops, l);
    g_mutex_unlock(&reg_lock);
    obs_loop_event(l, true);
    return l;
}

void qs_iothread_free(QsLoop *l)
{
    if (!l || l->is_main) return;
    g_atomic_int_set(&l->stopping, 1);
    g_main_context_wakeup(l->ctx);
    g_thread_join(l->thread);
    qs_timer_loop_cleanup(l);
    obs_loop_event(l, false);
    g_mutex_lock(&reg_lock);
    g_ptr_array_remove(loops, l);
    g_mutex_unlock(&reg_lock);
    g_main_loop_unref(l->ml);
    g_main_context_unref(l->ctx);
    g_free(l->name);
    g_free(l);
}

const char *qs_loop_name(const QsLoop *l) { return l->name; }
GMainContext *qs_loop_context(QsLoop *l) { return l->ctx; }
int qs_loop_tid(const QsLoop *l) { return l->tid; }
bool qs_loop_in_thread(const QsLoop *l) { return l->self == g_thread_self(); }

GMainLoop *qs_loop_gmainloop(QsLoop *l) { return l->ml; }

bool qs_loop_iterate(QsLoop *l, bool may_block)
{
    QsLoop *saved = cur_loop;
    GThread *saved_self = l->self;
    cur_loop = l;
    l->self = g_thread_self();
    bool r = g_main_context_iteration(l->ctx, may_block);
    l->self = saved_self;
    cur_loop = saved;
    return r;
}

void qs_loop_run_main(void)
{
    QsLoop *l = qs_loop_main();
    QsLoop *saved = cur_loop;
    cur_loop = l;
    l->self = g_thread_self();
    l->tid = (int)syscall(SYS_gettid);
    g_main_loop_run(l->ml);
    cur_loop = saved;
}

void qs_loop_foreach(void (*fn)(const QsLoopDesc *desc, void *opaque), void *opaque)
{
    qs_loop_main();
    g_mutex_lock(&reg_lock);
    for (guint i = 0; i < loops->len; i++) {
        QsLoop *l = loops->pdata[i];
        QsLoopDesc d = { l, l->name, l->tid, l->is_main };
        fn(&d, opaque);
    }
    g_mutex_unlock(&reg_lock);
}

/* ---- source info ---- */

static guint64 next_source_id;

void qs_source_info_init(QsSourceInfo *info, QsLoop *loop, const char *name,
                         QsSourceKind kind)
{
    info->id = __atomic_add_fetch(&next_source_id, 1, __ATOMIC_RELAXED);
    info->name = g_strdup(name && *name ? name : "(unnamed)");
    info->kind = kind;
    info->loop = loop;
}

void qs_source_info_clear(QsSourceInfo *info)
{
    g_free((char *)info->name);
    info->name = NULL;
}

const char *qs_source_kind_name(QsSourceKind kind)
{
    switch (kind) {
    case QS_SOURCE_FD: return "fd";
    case QS_SOURCE_TIMER: return "timer";
    case QS_SOURCE_BH: return "bh";
    case QS_SOURCE_IDLE: return "idle";
    default: return "other";
    }
}
