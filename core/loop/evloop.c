/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Loops (the main loop and iothreads, each a GMainContext run by one thread), their
 * registry, the poll wrapper, the observer and sampler registry (writers and grace
 * periods) and the slow paths of observed dispatches (sampling, flush, watch). */
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

ObsGlobal qs_evloop_g;
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

static uint32_t last_epoch, last_members;

/* Publish nl (its counts and epoch filled in here), with obs_lock held.  The epoch
 * changes only when a sampler is added (or restarted): its first dispatch of every
 * source is sampled and counts from before it are not reported to it (nor, then, to the
 * samplers already there: they lose up to period - 1 counts per source).  members
 * counts the samplers ever added: a sampler added (ObsEntry.since) after a dispatch's
 * begin hooks ran gets no end hook for it. */
static void obs_publish(ObsList *nl, bool sampler_added, bool restart)
{
    membarrier_setup();
    if (nl) {
        nl->nclassic = nl->nsampler = 0;
        nl->period = 0;
        for (guint i = 0; i < nl->n; i++) {
            const QsEvloopSampler *smp = nl->e[i].smp;
            if (!smp) { nl->nclassic++; continue; }
            nl->nsampler++;
            if (!nl->period || smp->period < nl->period) nl->period = smp->period;
        }
        /* 0 marks a source never sampled, OBS_GATE_ALL is no epoch */
        if (sampler_added || restart || !last_epoch) {
            if (++last_epoch == OBS_GATE_ALL) last_epoch = 1;
        }
        if (sampler_added) last_members++;
        nl->epoch = last_epoch;
        nl->members = last_members;
    }
    ObsList *old = __atomic_exchange_n(&qs_evloop_obs_list, nl, __ATOMIC_SEQ_CST);
    uint32_t gate = !nl ? 0 : nl->nclassic ? OBS_GATE_ALL : nl->epoch;
    __atomic_store_n(&qs_evloop_g.gate, gate, __ATOMIC_RELAXED);
    __atomic_store_n(&qs_evloop_g.n, nl ? (int)nl->n : 0, __ATOMIC_RELEASE);
    obs_synchronize();
    if (qs_evloop_reader_p && (qs_evloop_reader_p->seq & 1)) {    /* inside a section of this thread */
        if (!retired) retired = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(retired, old);
        return;
    }
    g_free(old);
    if (retired) g_ptr_array_set_size(retired, 0);
}

static ObsList *obs_copy(guint extra, const void *skip)
{
    ObsList *cur = qs_evloop_obs_list;
    guint n = cur ? cur->n : 0;
    ObsList *nl = g_malloc0(sizeof(ObsList) + (n + extra) * sizeof(ObsEntry));
    for (guint i = 0; i < n; i++) {
        if (cur->e[i].key != skip) nl->e[nl->n++] = cur->e[i];
    }
    return nl;
}

static void obs_remove_key(const void *key)
{
    g_mutex_lock(&obs_lock);
    ObsList *cur = qs_evloop_obs_list;
    bool found = false;
    for (guint i = 0; cur && i < cur->n; i++) found |= cur->e[i].key == key;
    if (found) {
        ObsList *nl = obs_copy(0, key);
        if (!nl->n) g_clear_pointer(&nl, g_free);
        obs_publish(nl, false, false);
    }
    g_mutex_unlock(&obs_lock);
}

static void observer_undo(void *data)
{
    obs_remove_key(data);
}

/* Register an observer or a sampler (entry e). */
static bool obs_add(const ObsEntry *e, GError **errp)
{
    if (!e->name || !*e->name) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "event-loop %s without a name",
                    e->smp ? "sampler" : "observer");
        return false;
    }
    if (e->smp && (e->smp->period < 1 || e->smp->period > 65536)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "event-loop sampler '%s': period %u is not 1..65536", e->name,
                    e->smp->period);
        return false;
    }
    g_mutex_lock(&obs_lock);
    ObsList *cur = qs_evloop_obs_list;
    for (guint i = 0; cur && i < cur->n; i++) {
        if (!strcmp(cur->e[i].name, e->name)) {
            g_mutex_unlock(&obs_lock);
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "event-loop observer '%s' is already registered", e->name);
            return false;
        }
    }
    g_mutex_unlock(&obs_lock);
    if (!qs_module_claim("observer", e->name, errp)) return false;
    g_mutex_lock(&obs_lock);
    ObsList *nl = obs_copy(1, NULL);
    nl->e[nl->n] = *e;
    nl->e[nl->n++].since = last_members + (e->smp != NULL);   /* obs_publish counts it */
    obs_publish(nl, e->smp != NULL, false);
    g_mutex_unlock(&obs_lock);
    qs_module_track(observer_undo, (void *)e->key);
    return true;
}

bool qs_evloop_observer_add(const QsEvloopObserver *obs, void *opaque, GError **errp)
{
    ObsEntry e = { .key = obs, .name = obs ? obs->name : NULL, .obs = obs, .opaque = opaque };
    return obs_add(&e, errp);
}

bool qs_evloop_sampler_add(const QsEvloopSampler *smp, void *opaque, GError **errp)
{
    ObsEntry e = { .key = smp, .name = smp ? smp->name : NULL, .smp = smp, .opaque = opaque };
    return obs_add(&e, errp);
}

void qs_evloop_observer_remove(const QsEvloopObserver *obs)
{
    obs_remove_key(obs);
}

void qs_evloop_sampler_remove(const QsEvloopSampler *smp)
{
    obs_remove_key(smp);
}

void qs_evloop_sampler_restart(const QsEvloopSampler *smp)
{
    g_mutex_lock(&obs_lock);
    ObsList *cur = qs_evloop_obs_list;
    bool found = false;
    for (guint i = 0; cur && i < cur->n; i++) found |= cur->e[i].key == smp;
    if (found) obs_publish(obs_copy(0, NULL), false, true);   /* same entries, new epoch */
    g_mutex_unlock(&obs_lock);
}

/* Loop life-cycle callbacks, through a read-side section (no lock held, so a callback
 * may use qs_loop_foreach). */
static void obs_loop_event(QsLoop *loop, bool added)
{
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const ObsEntry *e = &l->e[i];
        void (*fn)(QsLoop *, void *);
        if (e->obs) fn = added ? e->obs->loop_added : e->obs->loop_removed;
        else fn = added ? e->smp->loop_added : e->smp->loop_removed;
        if (fn) fn(loop, e->opaque);
    }
    obs_leave(token);
}

/* ---- observed dispatches: the slow paths (the fast ones are in loop-internal.h) ---- */

static GMutex src_lock;            /* every loop's source list, ObsSource.home */

/* Hand s's unreported dispatches to the samplers of l (inside a section). */
static void report_pending(ObsList *l, ObsSource *s)
{
    if (OBS_LOAD(&s->epoch) != l->epoch) return;     /* counted for an older list */
    uint32_t left = OBS_LOAD(&s->left), armed = OBS_LOAD(&s->armed);
    if (armed <= left) return;
    OBS_STORE(&s->armed, left);
    for (guint i = 0; i < l->n; i++) {
        const QsEvloopSampler *smp = l->e[i].smp;
        if (smp && smp->dispatch_count) smp->dispatch_count(&s->info, armed - left, l->e[i].opaque);
    }
}

/* In loop's thread: report every source's unreported dispatches. */
static void watch_check(QsLoop *loop);

static void obs_flush(QsLoop *loop)
{
    __atomic_store_n(&loop->pub.flush_req, 0, __ATOMIC_RELAXED);
    ObsList *l;
    unsigned token = obs_enter(&l);
    if (l && l->nsampler) {
        g_mutex_lock(&src_lock);
        for (ObsSource *s = loop->sources; s; s = s->next) report_pending(l, s);
        g_mutex_unlock(&src_lock);
    }
    obs_leave(token);
    if (__atomic_load_n(&loop->pub.watch_seq, __ATOMIC_RELAXED)) watch_check(loop);
    __atomic_store_n(&loop->pub.flushes, loop->pub.flushes + 1, __ATOMIC_RELEASE);
}

/* A watched dispatch (qs_loop_watch) that is no longer current has ended: tell the
 * samplers (in loop's thread, at its next poll, sampled dispatch or flush). */
static void watch_check(QsLoop *loop)
{
    uint64_t seq = __atomic_load_n(&loop->pub.watch_seq, __ATOMIC_ACQUIRE);
    uint64_t id = OBS_LOAD(&loop->pub.watch_id), cookie = OBS_LOAD(&loop->pub.watch_cookie);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (OBS_LOAD(&loop->pub.seq) == seq && OBS_LOAD(&loop->pub.cur) == id) return;
    /* once, and not if a new request is being written */
    if (!__atomic_compare_exchange_n(&loop->pub.watch_seq, &seq, 0, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED)) {
        return;
    }
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const QsEvloopSampler *smp = l->e[i].smp;
        if (smp && smp->dispatch_watched) smp->dispatch_watched(loop, id, cookie, l->e[i].opaque);
    }
    obs_leave(token);
}

/* The loop's slow-path chores: a flush asked from another thread, a watched end. */
static inline void flush_if_asked(QsLoop *run)
{
    if (!run) return;
    if (G_UNLIKELY(__atomic_load_n(&run->pub.flush_req, __ATOMIC_ACQUIRE))) obs_flush(run);
    if (G_UNLIKELY(__atomic_load_n(&run->pub.watch_seq, __ATOMIC_RELAXED))) watch_check(run);
}

/* A dispatch that is sampled, or runs while observers (called for every dispatch) are
 * registered, or the first of its source under the current list. */
uint64_t qs_obs_begin_slow(ObsSource *s, QsLoop *run, uint64_t tok)
{
    flush_if_asked(run);
    ObsList *l;
    unsigned token = obs_enter(&l);
    if (!l) goto out;
    if (l->nclassic) {
        tok |= OBS_TOK_HOOKS;
        for (guint i = 0; i < l->n; i++) {
            const QsEvloopObserver *o = l->e[i].obs;
            if (o && o->dispatch_begin) o->dispatch_begin(&s->info, l->e[i].opaque);
        }
    }
    if (!l->nsampler) goto out;
    if (OBS_LOAD(&s->epoch) != l->epoch) {
        /* first dispatch under this list: counts from before are not its samplers' */
        OBS_STORE(&s->epoch, l->epoch);
        OBS_STORE(&s->left, 1);
        OBS_STORE(&s->armed, 1);
    }
    uint32_t left = OBS_LOAD(&s->left);
    if (left > 1) {                   /* not sampled: only observers made us come here */
        OBS_STORE(&s->left, left - 1);
        goto out;
    }
    uint64_t count = (uint64_t)OBS_LOAD(&s->armed) - left + 1;
    OBS_STORE(&s->left, l->period);  /* a slow source is set back to 1 by its end */
    OBS_STORE(&s->armed, l->period);
    s->sampled_members = l->members;
    tok |= OBS_TOK_HOOKS | OBS_TOK_SAMPLED;
    for (guint i = 0; i < l->n; i++) {
        const QsEvloopSampler *smp = l->e[i].smp;
        if (smp && smp->dispatch_begin) smp->dispatch_begin(&s->info, count, l->e[i].opaque);
    }
out:
    obs_leave(token);
    return tok;
}

void qs_obs_end_slow(ObsSource *s, QsLoop *run, uint64_t tok)
{
    ObsList *l;
    unsigned token = obs_enter(&l);
    /* samplers only if their begin ran: registered before it */
    bool sampled = tok & OBS_TOK_SAMPLED;
    bool slow = false;
    for (guint i = 0; l && i < l->n; i++) {
        const ObsEntry *e = &l->e[i];
        if (e->obs && e->obs->dispatch_end) e->obs->dispatch_end(&s->info, e->opaque);
        if (e->smp && sampled && e->since <= s->sampled_members && e->smp->dispatch_end) {
            slow |= e->smp->dispatch_end(&s->info, e->opaque);
        }
    }
    if (slow) {
        OBS_STORE(&s->left, 1);
        OBS_STORE(&s->armed, 1);
    }
    obs_leave(token);
}

static GMutex watch_lock;          /* serialises qs_loop_watch callers */

bool qs_loop_current(QsLoop *loop, uint64_t *seq, uint64_t *source_id)
{
    uint64_t s1, c;
    for (int tries = 0;; tries++) {
        s1 = __atomic_load_n(&loop->pub.seq, __ATOMIC_ACQUIRE);
        c = OBS_LOAD(&loop->pub.cur);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        /* a loop changing faster than we read: any recent pair will do */
        if (OBS_LOAD(&loop->pub.seq) == s1 || tries == 100) break;
    }
    *seq = s1;
    *source_id = c;
    return c != 0;
}

void qs_loop_watch(QsLoop *loop, uint64_t seq, uint64_t source_id, uint64_t cookie)
{
    if (!seq || !source_id) return;
    g_mutex_lock(&watch_lock);
    /* 0 first, so the loop never pairs the new cookie with the old seq */
    __atomic_store_n(&loop->pub.watch_seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    OBS_STORE(&loop->pub.watch_id, source_id);
    OBS_STORE(&loop->pub.watch_cookie, cookie);
    __atomic_store_n(&loop->pub.watch_seq, seq, __ATOMIC_RELEASE);
    g_mutex_unlock(&watch_lock);
}

void qs_loop_flush(QsLoop *loop)
{
    if (qs_loop_in_thread(loop)) {
        obs_flush(loop);
    } else if (!__atomic_exchange_n(&loop->pub.flush_req, 1, __ATOMIC_ACQ_REL)) {
        g_main_context_wakeup(loop->ctx);
    }
}

bool qs_loop_flush_wait(QsLoop *loop, int timeout_ms)
{
    if (qs_loop_in_thread(loop)) {
        obs_flush(loop);
        return true;
    }
    uint64_t done = __atomic_load_n(&loop->pub.flushes, __ATOMIC_ACQUIRE);
    /* a request already pending may have been taken before our load: ask again after */
    __atomic_store_n(&loop->pub.flush_req, 1, __ATOMIC_RELEASE);
    g_main_context_wakeup(loop->ctx);
    gint64 end = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (__atomic_load_n(&loop->pub.flushes, __ATOMIC_ACQUIRE) == done) {
        if (g_get_monotonic_time() >= end) return false;
        g_usleep(50);
    }
    return true;
}

QsLoop *qs_loop_running(void)
{
    return cur_loop;
}

/* ---- loops ---- */

static void obs_poll(QsLoop *loop, bool begin, int timeout)
{
    flush_if_asked(loop);
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const ObsEntry *e = &l->e[i];
        void (*pb)(QsLoop *, int, void *) = e->obs ? e->obs->poll_begin : e->smp->poll_begin;
        void (*pe)(QsLoop *, void *) = e->obs ? e->obs->poll_end : e->smp->poll_end;
        if (begin && pb) pb(loop, timeout, e->opaque);
        if (!begin && pe) pe(loop, e->opaque);
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
    /* aligned: its LoopPub is on a cache line of its own */
    QsLoop *l = g_aligned_alloc0(1, sizeof(QsLoop), _Alignof(QsLoop));
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
        g_aligned_free(l);
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
    /* sources freed later must not report to observers for a loop that is gone */
    g_mutex_lock(&src_lock);
    for (ObsSource *s = l->sources; s; s = s->next) s->home = NULL;
    l->sources = NULL;
    g_mutex_unlock(&src_lock);
    obs_loop_event(l, false);
    g_mutex_lock(&reg_lock);
    g_ptr_array_remove(loops, l);
    g_mutex_unlock(&reg_lock);
    g_main_loop_unref(l->ml);
    g_main_context_unref(l->ctx);
    g_free(l->name);
    g_aligned_free(l);
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

void qs_obs_source_init(ObsSource *s, QsLoop *loop, const char *name, QsSourceKind kind)
{
    QsSourceInfo *info = &s->info;
    info->id = __atomic_add_fetch(&next_source_id, 1, __ATOMIC_RELAXED);
    info->name = g_strdup(name && *name ? name : "(unnamed)");
    info->kind = kind;
    info->loop = loop;
    s->left = s->armed = s->epoch = s->sampled_members = 0;
    g_mutex_lock(&src_lock);
    s->home = loop;
    s->prev = NULL;
    s->next = loop->sources;
    if (s->next) s->next->prev = s;
    loop->sources = s;
    g_mutex_unlock(&src_lock);
}

void qs_obs_source_clear(ObsSource *s)
{
    g_mutex_lock(&src_lock);
    if (s->home) {
        if (obs_active()) {
            ObsList *l;
            unsigned token = obs_enter(&l);
            if (l && l->nsampler) report_pending(l, s);
            obs_leave(token);
        }
        if (s->prev) s->prev->next = s->next;
        else s->home->sources = s->next;
        if (s->next) s->next->prev = s->prev;
        s->home = NULL;
    }
    g_mutex_unlock(&src_lock);
    g_free((char *)s->info.name);
    s->info.name = NULL;
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
