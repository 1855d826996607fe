/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the event-loop files share: the loop structure, the observer fast path, and the
 * run-state hooks of the virtual clock.  Never included by modules. */
#ifndef QS_LOOP_INTERNAL_H
#define QS_LOOP_INTERNAL_H

#include "qs/evloop.h"

/* What a loop's thread publishes for readers in other threads (qs_loop_current), on a
 * cache line of its own: only that thread writes seq and cur, with plain stores. */
typedef struct LoopPub {
    uint64_t seq;         /* changes at every begin of an observed dispatch */
    uint64_t cur;         /* id of the source being dispatched, 0 when none */
    uint64_t watch_seq;   /* qs_loop_watch: written by readers, cleared by the loop */
    uint64_t watch_id, watch_cookie;
    int flush_req;        /* qs_loop_flush asked from another thread (atomic) */
    uint64_t flushes;     /* flushes done (release), for qs_loop_flush_wait */
} __attribute__((aligned(64))) LoopPub;

typedef struct ObsSource ObsSource;

struct QsLoop {
    LoopPub pub;
    char *name;
    GMainContext *ctx;
    GMainLoop *ml;
    GThread *thread;      /* iothreads: the thread running the loop */
    GThread *self;        /* the thread running (or iterating) the loop now */
    int tid;
    bool is_main;
    int stopping;         /* iothread: leave the loop (atomic) */
    GSource *timer_lists[2];   /* per QsClockType, created on first timer */
    ObsSource *sources;   /* its observed sources, under the source-list lock */
};

/* ---- observers and samplers: the read side, inlined into every dispatch ----
 * Readers (loop threads) call through the current immutable list inside a per-thread
 * section: the outermost enter makes the thread's seq odd, the leave makes it even
 * again, with plain stores.  Writers (add/remove, rare) publish a new list, then make
 * every thread execute a full memory barrier (membarrier(2), or a fence on the read
 * side where the kernel lacks it), then wait for each thread whose seq is odd to change
 * it: after that no thread can still use the old list or its observers.
 *
 * Samplers are not called on most dispatches: the core counts down per source and only
 * enters a section (and calls them) on sampled ones; the rest costs a few plain stores
 * to the source and to the loop's LoopPub, which only the dispatching thread writes. */

typedef struct ObsEntry {
    const void *key;                  /* obs or smp */
    const char *name;
    const QsEvloopObserver *obs;      /* one of obs and smp is set */
    const QsEvloopSampler *smp;
    void *opaque;
    uint32_t since;                   /* samplers: ObsList.members when it was added */
} ObsEntry;

typedef struct ObsList {
    guint n;
    guint nclassic;       /* entries with obs */
    guint nsampler;       /* entries with smp */
    uint32_t epoch;       /* changes when a sampler is added (never 0 nor OBS_GATE_ALL) */
    uint32_t period;      /* smallest sampler period */
    uint32_t members;     /* samplers ever added (a counter) */
    ObsEntry e[];
} ObsList;

typedef struct ObsReader {
    /* even outside a section, odd inside.  Written by its thread only, with plain
     * stores. */
    unsigned seq;
} ObsReader;

/* What every dispatch reads, on one read-mostly cache line: written only when the list
 * changes.  n is the only thing the no-observer path reads. */
typedef struct ObsGlobal {
    int n;                /* registered observers and samplers */
    /* A source whose epoch is not this takes the slow path: the list's epoch, or
     * OBS_GATE_ALL (no source has it) while observers, called on every dispatch, are
     * registered. */
    uint32_t gate;
} __attribute__((aligned(64))) ObsGlobal;

#define OBS_GATE_ALL UINT32_MAX

extern ObsGlobal qs_evloop_g;
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
    return __atomic_load_n(&qs_evloop_g.n, __ATOMIC_ACQUIRE) != 0;
}

/* An observed source: its info and its sampling state.  left/armed/epoch are written by
 * the dispatching thread only (and by flush/free under the source-list lock): relaxed. */
struct ObsSource {
    QsSourceInfo info;
    uint32_t left;        /* dispatches until the next sampled one (<= 1: the next) */
    uint32_t armed;       /* left after the last report: armed - left not reported */
    uint32_t epoch;       /* list epoch left/armed belong to (0: none yet) */
    uint32_t sampled_members; /* ObsList.members when samplers' dispatch_begin ran last */
    QsLoop *home;         /* loop whose list it is on; NULL once detached */
    ObsSource *prev, *next;
};

#define OBS_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define OBS_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* Token of a dispatch, kept by the dispatching function between obs_begin and obs_end:
 * 0 when nothing was published (no observer at its begin), else the id of the source
 * current before it (the parent of a nested dispatch, else 0) << 3 | flags. */
#define OBS_TOK_ON 1u         /* published: restore the parent at the end */
#define OBS_TOK_HOOKS 2u      /* begin hooks ran: the slow end */
#define OBS_TOK_SAMPLED 4u    /* samplers' dispatch_begin ran */
#define OBS_TOK_SHIFT 3

/* The out-of-line parts (evloop.c): hooks of a sampled dispatch or one with observers. */
uint64_t qs_obs_begin_slow(ObsSource *s, QsLoop *run, uint64_t tok);
void qs_obs_end_slow(ObsSource *s, QsLoop *run, uint64_t tok);


/* Around every observed dispatch: tok = obs_begin(s, run); callback; obs_end(s, run,
 * tok).  run is the loop whose thread dispatches (NULL: a thread running no loop; then
 * nothing is published); the _loop variants are for a run that is never NULL.  With no
 * observer: one load and one well-predicted branch at the begin, one test of a register
 * at the end. */
__attribute__((always_inline))
static inline uint64_t obs_begin_any(ObsSource *s, QsLoop *run, bool run_set)
{
    if (G_LIKELY(!obs_active())) return 0;
    uint64_t tok = OBS_TOK_ON;
    if (run_set || run) {
        tok |= OBS_LOAD(&run->pub.cur) << OBS_TOK_SHIFT;
        OBS_STORE(&run->pub.cur, s->info.id);
        __atomic_store_n(&run->pub.seq, OBS_LOAD(&run->pub.seq) + 1, __ATOMIC_RELEASE);
    }
    uint32_t left = OBS_LOAD(&s->left);
    if (G_UNLIKELY(left <= 1 || OBS_LOAD(&s->epoch) != OBS_LOAD(&qs_evloop_g.gate))) {
        return qs_obs_begin_slow(s, run, tok);
    }
    OBS_STORE(&s->left, left - 1);
    return tok;
}

__attribute__((always_inline))
static inline void obs_end_any(ObsSource *s, QsLoop *run, uint64_t tok, bool run_set)
{
    if (G_LIKELY(!tok)) return;
    if (G_UNLIKELY(tok & OBS_TOK_HOOKS)) qs_obs_end_slow(s, run, tok);
    if (run_set || run) {
        /* the parent again, under the seq of the last begin: a pair not seen before */
        __atomic_store_n(&run->pub.cur, tok >> OBS_TOK_SHIFT, __ATOMIC_RELEASE);
    }
}

static inline uint64_t obs_begin(ObsSource *s, QsLoop *run)
{
    return obs_begin_any(s, run, false);
}

static inline void obs_end(ObsSource *s, QsLoop *run, uint64_t tok)
{
    obs_end_any(s, run, tok, false);
}

static inline uint64_t obs_begin_loop(ObsSource *s, QsLoop *run)
{
    return obs_begin_any(s, run, true);
}

static inline void obs_end_loop(ObsSource *s, QsLoop *run, uint64_t tok)
{
    obs_end_any(s, run, tok, true);
}

/* Fill a source's info (a fresh id, a copy of name, freed by qs_obs_source_clear) and put
 * it on its loop's list. */
void qs_obs_source_init(ObsSource *s, QsLoop *loop, const char *name, QsSourceKind kind);
/* Report its unreported dispatches, take it off its loop's list, free the name. */
void qs_obs_source_clear(ObsSource *s);

/* The loop this thread runs now (NULL if none): where a stepped timer is published. */
QsLoop *qs_loop_running(void);

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
