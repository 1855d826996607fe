/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the event-loop files share: the loop structure, the observer fast path, and the
 * run-state hooks of the virtual clock.  Never included by modules. */
#ifndef QS_LOOP_INTERNAL_H
#define QS_LOOP_INTERNAL_H

#include "qs/evloop.h"

struct QsLoop {
    char *name;
    GMainContext *ctx;
    GMainLoop *ml;
    GThread *thread;      /* iothreads: the thread running the loop */
    GThread *self;        /* the thread running (or iterating) the loop now */
    int tid;
    bool is_main;
    int stopping;         /* iothread: leave the loop (atomic) */
    GSource *timer_lists[2];   /* per QsClockType, created on first timer */
};

/* ---- observers: the read side, inlined into every dispatch ----
 * Readers (loop threads) call through the current immutable list inside a per-thread
 * section: the outermost enter makes the thread's seq odd, the leave makes it even
 * again, with plain stores.  Writers (add/remove, rare) publish a new list, then make
 * every thread execute a full memory barrier (membarrier(2), or a fence on the read
 * side where the kernel lacks it), then wait for each thread whose seq is odd to change
 * it: after that no thread can still use the old list or its observers. */

typedef struct ObsEntry {
    const QsEvloopObserver *obs;
    void *opaque;
} ObsEntry;

typedef struct ObsList {
    guint n;
    ObsEntry e[];
} ObsList;

typedef struct ObsReader {
    /* even outside a section, odd inside.  Written by its thread only, with plain
     * stores. */
    unsigned seq;
} ObsReader;

/* Number of registered observers: the only thing the no-observer path reads. */
extern int qs_evloop_nobs;
extern ObsList *qs_evloop_obs_list;
extern bool qs_evloop_obs_fenced;    /* no membarrier(2): readers fence themselves */
/* The thread's reader, on a cache line of its own (NULL until its first section).  Not in
 * the thread-local block itself: next to the thread control block, where the C library
 * and the kernel (rseq) write, its stores cost ~5 ns more each here. */
extern __thread ObsReader *qs_evloop_reader_p;

/* Make this thread known to writers (sets qs_evloop_reader_p); returns its seq. */
unsigned qs_obs_reader_register(void);

/* Enter a section (nested ones are free): returns the token for obs_leave. */
static inline unsigned obs_enter(ObsList **list)
{
    ObsReader *r = qs_evloop_reader_p;
    if (G_UNLIKELY(!r)) { qs_obs_reader_register(); r = qs_evloop_reader_p; }
    unsigned s = r->seq;
    if (G_LIKELY(!(s & 1))) {
        __atomic_store_n(&r->seq, s + 1, __ATOMIC_RELAXED);
        /* seq must be visible before the list is read: the writer's membarrier gives
         * this order; without it, a full fence here */
        if (G_UNLIKELY(qs_evloop_obs_fenced)) __atomic_thread_fence(__ATOMIC_SEQ_CST);
        else __atomic_signal_fence(__ATOMIC_SEQ_CST);
    }
    *list = __atomic_load_n(&qs_evloop_obs_list, __ATOMIC_ACQUIRE);
    return s;
}

static inline void obs_leave(unsigned token)
{
    /* release: everything done with the list (and in its callbacks) comes before */
    if (G_LIKELY(!(token & 1))) __atomic_store_n(&qs_evloop_reader_p->seq, token + 2, __ATOMIC_RELEASE);
}

static inline bool obs_active(void)
{
    return __atomic_load_n(&qs_evloop_nobs, __ATOMIC_ACQUIRE) != 0;
}

static inline void obs_dispatch_hook(const QsSourceInfo *src, bool end)
{
    ObsList *l;
    unsigned token = obs_enter(&l);
    for (guint i = 0; l && i < l->n; i++) {
        const QsEvloopObserver *o = l->e[i].obs;
        void (*fn)(const QsSourceInfo *, void *) = end ? o->dispatch_end : o->dispatch_begin;
        if (fn) fn(src, l->e[i].opaque);
    }
    obs_leave(token);
}

/* With no observer: one load and one well-predicted branch per dispatch. */
static inline void obs_begin(const QsSourceInfo *src)
{
    if (G_UNLIKELY(obs_active())) obs_dispatch_hook(src, false);
}

static inline void obs_end(const QsSourceInfo *src)
{
    if (G_UNLIKELY(obs_active())) obs_dispatch_hook(src, true);
}

/* Fill a source's info: a fresh id, a copy of name (freed by info_clear). */
void qs_source_info_init(QsSourceInfo *info, QsLoop *loop, const char *name,
                         QsSourceKind kind);
void qs_source_info_clear(QsSourceInfo *info);

/* The main loop's GMainLoop and running it in this thread (qs_main_loop_run). */
GMainLoop *qs_loop_gmainloop(QsLoop *loop);
void qs_loop_run_main(void);

/* How long a poll of `loop` may sleep, in ns, if its timers need less than GLib's
 * timeout_ms (-1: forever) -- which is rounded up to whole milliseconds -- else -1.
 * Waking at that time makes GLib see the timer list ready (its ready time is in us). */
int64_t qs_timer_loop_wait_ns(QsLoop *loop, int timeout_ms);

/* Destroy a loop's timer lists (iothread teardown). */
void qs_timer_loop_cleanup(QsLoop *loop);

/* Virtual clock follows the VM's run state (frozen while paused). */
void qs_clock_vm_running(bool running);

#endif
