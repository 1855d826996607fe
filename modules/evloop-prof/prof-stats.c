/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Statistics tables: each dispatching thread owns its slots (one per loop it runs) and
 * writes them without locks; readers take the stats lock and load with atomics. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "prof-stats.h"

#define REC_CHUNK 64
#define REC_CHUNKS 64            /* at most 4096 distinct sources per loop and thread */
#define IDC_SIZE 256             /* direct-mapped cache: source id -> record (ids are
                                  * handed out in sequence, so id % IDC_SIZE spreads them) */
#define REC_OVERFLOW (REC_CHUNK * REC_CHUNKS)   /* index of the overflow record */
#define NEST_MAX 16              /* nested dispatches tracked per loop */
#define SLOTS_MAX 16             /* loops one thread can dispatch for */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/* Single writer: a relaxed load-add-store is enough, and no locked instruction. */
#define ADD(p, v) STORE((p), LOAD(p) + (v))

/* Field order: what the dispatch path touches first, together. */
typedef struct Rec {
    uint64_t count;               /* every dispatch */
    bool always;                  /* writer-private: mean >= always_ticks, time them all */
    uint32_t idx;                 /* its index in the slot (REC_OVERFLOW: the overflow) */
    uint64_t timed, total, max;   /* the timed ones; ticks */
    uint64_t hist[PROF_HIST_BUCKETS];
    char *name;                   /* immutable once published */
    const char *kind;
} Rec;

/* The current dispatch, published in one word: its number (dseq) and its record. */
#define CUR_WORD(dseq, idx) (((dseq) << 16) | ((uint64_t)(idx) + 1))
#define CUR_DSEQ(w) ((w) >> 16)
#define CUR_IDX(w) ((uint32_t)((w) & 0xffff) - 1)

typedef struct Slot {
    /* hot, writer side */
    const void *loop;             /* atomic; NULL once the loop is removed */
    uint64_t gen;                 /* atomic; reset generation of the counters */
    uint64_t iterations, polls_timed, poll;
    uint64_t dseq;                /* dispatches begun, numbers each one; writer-private */
    int depth;                    /* writer-private */
    uint64_t poll_start;
    /* the innermost dispatch: CUR_WORD, 0 when none (release) */
    uint64_t cur;
    /* start of the last timed dispatch begun, valid while tstart_dseq is its number
     * (zeroed while it changes) */
    uint64_t tstart_dseq, tstart;
    /* a reader saw dispatch watch_seq running since watch_start: time its end */
    uint64_t watch_seq, watch_start;
    struct { Rec *rec; uint64_t start, dseq; } stack[NEST_MAX];
    struct { uint64_t id; Rec *rec; } idc[IDC_SIZE];
    /* records, published by nrec (release) */
    uint32_t nrec;
    Rec *chunks[REC_CHUNKS];
    Rec overflow;
    GHashTable *by_name;          /* Rec* keyed by (kind, name); writer-private */
    /* reader-private (under the lock) */
    uint64_t seen_dseq, seen_first;   /* an untimed dispatch seen running, since when */
} Slot;

typedef struct Thread {
    ProfStats *st;
    int tid;
    bool exited;                  /* under the lock: the thread is gone, its counts stay */
    Slot *slots[SLOTS_MAX];       /* changed by the writer under the lock */
} Thread;

typedef struct LoopInfo {
    const void *loop;
    char *name;
    bool is_main;
    int tid;
    /* reader-private (under the lock): the dispatch the core last published for the
     * loop (prof_stats_use_core), since when it was seen, whether its end is watched,
     * and the last dispatch reported stuck */
    uint64_t seen_seq, seen_id, seen_first;
    bool watched;
    uint64_t reported_start;
    const char *reported_name;
} LoopInfo;

struct ProfStats {
    GMutex lock;
    uint64_t serial;              /* tells apart instances at the same address */
    const ProfClock *clk;
    uint64_t mult;
    uint64_t sample_mask;         /* the `sample` option - 1 */
    uint64_t poll_mask;           /* time a poll when iterations & mask == 0 */
    uint64_t dispatch_mask;       /* time a dispatch when count & mask == 0 (0 when the
                                   * core samples: every dispatch we see is timed) */
    ProfCoreOps core;             /* prof_stats_use_core; all NULL otherwise */
    uint64_t always_ticks;
    ProfDescribeLoop describe;
    pthread_key_t key;
    GPtrArray *threads;           /* Thread* */
    GPtrArray *loops;             /* LoopInfo*, add order */
    uint64_t gen;                 /* atomic */
    uint64_t reset_at;            /* ticks, under lock */
};

static uint64_t next_serial = 1;
/* initial-exec: no __tls_get_addr call on the hot path of a dlopen()ed module.  One
 * block per thread: which stats instance it caches (serial), its Thread, the slot it
 * used last, and the slot whose poll is being timed. */
#define TLS __thread __attribute__((tls_model("initial-exec")))
static TLS struct {
    uint64_t serial;
    Thread *thread;
    Slot *last;
    Slot *poll;
} tls;

/* ---- histogram ---- */

uint64_t prof_hist_bucket_limit(unsigned bucket)
{
    if (bucket >= PROF_HIST_BUCKETS - 1) return UINT64_MAX;
    return 2ull << bucket;
}

uint64_t prof_hist_percentile(const uint64_t *hist, double pct)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < PROF_HIST_BUCKETS; i++) total += hist[i];
    if (!total) return 0;
    if (pct < 0) pct = 0;
    if (pct > 100) pct = 100;
    /* rank of the sample that pct percent of the samples are at or below (1-based) */
    uint64_t rank = (uint64_t)((double)total * pct / 100.0 + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PROF_HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) return prof_hist_bucket_limit(i);
    }
    return UINT64_MAX;
}

/* ---- records ---- */

static guint rec_hash(gconstpointer p)
{
    const Rec *r = p;
    return g_str_hash(r->name) ^ g_direct_hash(r->kind);
}

static gboolean rec_equal(gconstpointer a, gconstpointer b)
{
    const Rec *x = a, *y = b;
    return x->kind == y->kind && !strcmp(x->name, y->name);
}

static inline Rec *slot_rec(Slot *s, uint32_t i)
{
    return &s->chunks[i / REC_CHUNK][i % REC_CHUNK];
}

static Rec *rec_create(Slot *s, const char *name, const char *kind)
{
    Rec key = { .name = (char *)name, .kind = kind };
    Rec *r = g_hash_table_lookup(s->by_name, &key);
    if (r) return r;
    uint32_t n = s->nrec;
    if (n >= REC_CHUNK * REC_CHUNKS) return &s->overflow;
    if (!s->chunks[n / REC_CHUNK]) {
        __atomic_store_n(&s->chunks[n / REC_CHUNK], g_new0(Rec, REC_CHUNK), __ATOMIC_RELEASE);
    }
    r = slot_rec(s, n);
    r->name = g_strdup(name ? name : "(unnamed)");
    r->kind = kind ? kind : "other";
    r->idx = n;
    g_hash_table_add(s->by_name, r);
    __atomic_store_n(&s->nrec, n + 1, __ATOMIC_RELEASE);
    return r;
}

#define HOT __attribute__((always_inline)) static inline
#define COLD __attribute__((noinline, cold)) static

COLD Rec *rec_miss(Slot *s, unsigned i, uint64_t id, const char *name,
                          const char *kind)
{
    Rec *r = rec_create(s, name, kind);
    /* readers (idc_find) may look: the id goes last, after a 0 */
    STORE(&s->idc[i].id, 0);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    STORE(&s->idc[i].rec, r);
    __atomic_store_n(&s->idc[i].id, id, __ATOMIC_RELEASE);
    return r;
}

/* ids are never 0, so an empty cache entry never matches */
HOT Rec *rec_lookup(Slot *s, uint64_t id, const char *name, const char *kind)
{
    unsigned i = (unsigned)(id % IDC_SIZE);
    if (G_LIKELY(LOAD(&s->idc[i].id) == id && id)) return LOAD(&s->idc[i].rec);
    return rec_miss(s, i, id, name, kind);
}

static void rec_zero(Rec *r)
{
    STORE(&r->count, 0);
    STORE(&r->timed, 0);
    STORE(&r->total, 0);
    STORE(&r->max, 0);
    for (unsigned i = 0; i < PROF_HIST_BUCKETS; i++) STORE(&r->hist[i], 0);
}

/* ---- slots and threads ---- */

static void slot_init(Slot *s, const void *loop, uint64_t gen)
{
    memset(s, 0, sizeof(*s));
    s->overflow.name = g_strdup("(other sources)");
    s->overflow.kind = "other";
    s->overflow.idx = REC_OVERFLOW;
    s->by_name = g_hash_table_new(rec_hash, rec_equal);
    s->gen = gen;
    s->loop = loop;
}

static void slot_destroy(Slot *s)
{
    for (uint32_t i = 0; i < s->nrec; i++) g_free(slot_rec(s, i)->name);
    for (unsigned c = 0; c < REC_CHUNKS; c++) g_free(s->chunks[c]);
    g_free(s->overflow.name);
    g_hash_table_destroy(s->by_name);
}

/* Writer: drop the counters of an older reset generation. */
COLD void slot_new_gen(Slot *s, uint64_t gen)
{
    STORE(&s->iterations, 0);
    STORE(&s->polls_timed, 0);
    STORE(&s->poll, 0);
    for (uint32_t i = 0; i < s->nrec; i++) rec_zero(slot_rec(s, i));
    rec_zero(&s->overflow);
    __atomic_store_n(&s->gen, gen, __ATOMIC_RELEASE);
}

HOT void slot_sync_gen(ProfStats *st, Slot *s)
{
    uint64_t gen = __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE);
    if (G_UNLIKELY(s->gen != gen)) slot_new_gen(s, gen);
}

static LoopInfo *loop_find(ProfStats *st, const void *loop)
{
    for (guint i = 0; i < st->loops->len; i++) {
        LoopInfo *li = st->loops->pdata[i];
        if (li->loop == loop) return li;
    }
    return NULL;
}

static void thread_free(Thread *th)
{
    for (unsigned i = 0; i < SLOTS_MAX; i++) {
        if (th->slots[i]) {
            slot_destroy(th->slots[i]);
            g_free(th->slots[i]);
        }
    }
    g_free(th);
}

static bool thread_all_dead(Thread *th)
{
    for (unsigned i = 0; i < SLOTS_MAX; i++) {
        if (th->slots[i] && LOAD(&th->slots[i]->loop)) return false;
    }
    return true;
}

/* A dispatching thread ended: its counts stay while a loop it ran lives (under lock). */
static void reap_threads(ProfStats *st)
{
    for (guint i = st->threads->len; i-- > 0;) {
        Thread *th = st->threads->pdata[i];
        if (th->exited && thread_all_dead(th)) {
            g_ptr_array_remove_index_fast(st->threads, i);
            thread_free(th);
        }
    }
}

static void thread_exit(void *p)
{
    Thread *th = p;
    ProfStats *st = th->st;
    g_mutex_lock(&st->lock);
    th->exited = true;
    reap_threads(st);
    g_mutex_unlock(&st->lock);
}

COLD Thread *thread_get_slow(ProfStats *st)
{
    Thread *th = pthread_getspecific(st->key);
    if (!th) {
        th = g_new0(Thread, 1);
        th->st = st;
        th->tid = (int)syscall(SYS_gettid);
        g_mutex_lock(&st->lock);
        g_ptr_array_add(st->threads, th);
        g_mutex_unlock(&st->lock);
        pthread_setspecific(st->key, th);
    }
    tls.serial = st->serial;
    tls.thread = th;
    tls.last = NULL;
    tls.poll = NULL;
    return th;
}

COLD Slot *slot_get_slow(ProfStats *st, Thread *th, const void *loop)
{
    for (unsigned i = 0; i < SLOTS_MAX; i++) {
        Slot *s = th->slots[i];
        if (s && LOAD(&s->loop) == loop) return tls.last = s;
    }
    g_mutex_lock(&st->lock);
    if (!loop_find(st, loop)) {
        /* describe outside our lock: it may take the core's locks, which are held
         * when the core calls us (loop_added), so the order must stay core -> ours */
        LoopInfo *li = g_new0(LoopInfo, 1);
        li->loop = loop;
        g_mutex_unlock(&st->lock);
        if (st->describe) st->describe(loop, &li->name, &li->is_main, &li->tid);
        if (!li->name) li->name = g_strdup_printf("loop@%p", loop);
        g_mutex_lock(&st->lock);
        if (loop_find(st, loop)) {
            g_free(li->name);
            g_free(li);
        } else {
            g_ptr_array_add(st->loops, li);
        }
    }
    Slot *s = NULL;
    for (unsigned i = 0; i < SLOTS_MAX && !s; i++) {
        if (!th->slots[i]) s = th->slots[i] = g_new(Slot, 1);
    }
    for (unsigned i = 0; i < SLOTS_MAX && !s; i++) {
        /* reuse the slot of a removed loop: no reader runs while we hold the lock */
        if (!LOAD(&th->slots[i]->loop)) {
            s = th->slots[i];
            slot_destroy(s);
        }
    }
    if (s) slot_init(s, loop, LOAD(&st->gen));
    g_mutex_unlock(&st->lock);
    return tls.last = s;    /* NULL: this thread runs too many loops; not counted */
}

COLD Slot *slot_miss(ProfStats *st, const void *loop)
{
    Thread *th = tls.serial == st->serial && tls.thread ? tls.thread : thread_get_slow(st);
    return slot_get_slow(st, th, loop);
}

HOT Slot *slot_get(ProfStats *st, const void *loop)
{
    Slot *s = tls.last;
    if (G_LIKELY(tls.serial == st->serial && s && LOAD(&s->loop) == loop)) return s;
    return slot_miss(st, loop);
}

/* ---- life cycle ---- */

ProfStats *prof_stats_new(const ProfClock *clk, unsigned sample, uint64_t always_ns,
                          ProfDescribeLoop describe)
{
    ProfStats *st = g_new0(ProfStats, 1);
    g_mutex_init(&st->lock);
    st->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
    st->clk = clk;
    st->mult = clk->mult;
    st->sample_mask = sample > 1 ? (uint64_t)sample - 1 : 0;
    st->dispatch_mask = st->sample_mask;
    st->poll_mask = st->sample_mask;
    st->always_ticks = (uint64_t)((((unsigned __int128)always_ns) << 32) / clk->mult);
    st->describe = describe;
    st->reset_at = prof_ticks(clk);
    st->threads = g_ptr_array_new();
    st->loops = g_ptr_array_new();
    st->gen = 1;
    if (pthread_key_create(&st->key, thread_exit) != 0) {
        g_error("evloop-prof: out of thread-specific keys");
    }
    return st;
}

void prof_stats_free(ProfStats *st)
{
    if (!st) return;
    pthread_key_delete(st->key);
    for (guint i = 0; i < st->threads->len; i++) thread_free(st->threads->pdata[i]);
    g_ptr_array_free(st->threads, TRUE);
    for (guint i = 0; i < st->loops->len; i++) {
        LoopInfo *li = st->loops->pdata[i];
        g_free(li->name);
        g_free(li);
    }
    g_ptr_array_free(st->loops, TRUE);
    g_mutex_clear(&st->lock);
    if (tls.serial == st->serial) memset(&tls, 0, sizeof(tls));
    g_free(st);
}

void prof_stats_loop_add(ProfStats *st, const void *loop, const char *name, bool is_main,
                         int tid)
{
    g_mutex_lock(&st->lock);
    LoopInfo *li = loop_find(st, loop);
    if (!li) {
        li = g_new0(LoopInfo, 1);
        li->loop = loop;
        g_ptr_array_add(st->loops, li);
    }
    g_free(li->name);
    li->name = g_strdup(name ? name : "(unnamed loop)");
    li->is_main = is_main;
    if (tid) li->tid = tid;
    if (is_main && st->loops->pdata[0] != li) {   /* the main loop is listed first */
        g_ptr_array_remove(st->loops, li);
        g_ptr_array_insert(st->loops, 0, li);
    }
    g_mutex_unlock(&st->lock);
}

void prof_stats_loop_remove(ProfStats *st, const void *loop)
{
    g_mutex_lock(&st->lock);
    LoopInfo *li = loop_find(st, loop);
    if (li) {
        g_ptr_array_remove(st->loops, li);
        g_free(li->name);
        g_free(li);
    }
    for (guint i = 0; i < st->threads->len; i++) {
        Thread *th = st->threads->pdata[i];
        for (unsigned j = 0; j < SLOTS_MAX; j++) {
            Slot *s = th->slots[j];
            if (s && LOAD(&s->loop) == loop) STORE(&s->loop, NULL);
        }
    }
    reap_threads(st);
    g_mutex_unlock(&st->lock);
}

/* ---- hooks ---- */

COLD void poll_begin_slow(ProfStats *st, const void *loop)
{
    Slot *s = slot_get(st, loop);
    if (G_UNLIKELY(!s)) return;
    slot_sync_gen(st, s);
    uint64_t it = s->iterations + 1;
    STORE(&s->iterations, it);
    if (G_UNLIKELY((it & st->poll_mask) == 0)) {
        s->poll_start = prof_ticks(st->clk);
        tls.poll = s;
    }
}

void prof_stats_poll_end(ProfStats *st, const void *loop)
{
    Slot *s = tls.poll;       /* set only by a timed poll_begin: no lookup otherwise */
    if (G_LIKELY(!s)) return;
    tls.poll = NULL;
    if (tls.serial != st->serial || LOAD(&s->loop) != loop) return;
    uint64_t now = prof_ticks(st->clk);
    ADD(&s->polls_timed, 1);
    if (now > s->poll_start) ADD(&s->poll, now - s->poll_start);
}

/* Publish the start of a timed dispatch for readers (stuck detection). */
static inline void publish_start(Slot *s, uint64_t dseq, uint64_t start)
{
    STORE(&s->tstart_dseq, 0);
    __atomic_thread_fence(__ATOMIC_RELEASE);     /* the 0 is seen before the new start */
    STORE(&s->tstart, start);
    __atomic_store_n(&s->tstart_dseq, dseq, __ATOMIC_RELEASE);
}

COLD uint64_t timed_start(ProfStats *st, Slot *s, uint64_t dseq)
{
    uint64_t start = prof_ticks(st->clk);
    if (G_UNLIKELY(!start)) start = 1;
    publish_start(s, dseq, start);
    return start;
}

COLD void dispatch_begin_slow(ProfStats *st, const void *loop, uint64_t id,
                              const char *name, const char *kind)
{
    Slot *s = slot_get(st, loop);
    if (G_UNLIKELY(!s)) return;
    slot_sync_gen(st, s);
    Rec *r = rec_lookup(s, id, name, kind);
    int d = s->depth++;
    if (G_UNLIKELY(d >= NEST_MAX)) return;
    uint64_t dseq = ++s->dseq;
    uint64_t start = 0;
    if (G_UNLIKELY(r->always || (r->count & st->dispatch_mask) == 0)) start = timed_start(st, s, dseq);
    s->stack[d].rec = r;
    s->stack[d].start = start;
    s->stack[d].dseq = dseq;
    __atomic_store_n(&s->cur, CUR_WORD(dseq, r->idx), __ATOMIC_RELEASE);
}

/* The end of a timed dispatch (or one a reader saw running): its time. */
/* One timed dispatch of r that started at `start` ended now. */
COLD void rec_time(ProfStats *st, Rec *r, uint64_t start)
{
    uint64_t now = prof_ticks(st->clk);
    uint64_t t = now > start ? now - start : 0;
    uint64_t timed = r->timed + 1, total = r->total + t;
    STORE(&r->timed, timed);
    STORE(&r->total, total);
    if (t > r->max) STORE(&r->max, t);
    /* slow on average (not once: a preempted cheap dispatch does not count) */
    r->always = total >= st->always_ticks * timed;
    ADD(&r->hist[prof_hist_bucket((uint64_t)(((unsigned __int128)t * st->mult) >> 32))], 1);
}

COLD void timed_end(ProfStats *st, Slot *s, int d, uint64_t start)
{
    rec_time(st, s->stack[d].rec, start);
}

/* Nested: the parent dispatch is current again. */
COLD uint64_t parent_word(Slot *s, int d)
{
    /* our start replaced the parent's: give it back */
    if (s->stack[d].start && s->stack[d - 1].start) {
        publish_start(s, s->stack[d - 1].dseq, s->stack[d - 1].start);
    }
    return CUR_WORD(s->stack[d - 1].dseq, s->stack[d - 1].rec->idx);
}

COLD bool dispatch_end_slow(ProfStats *st, const void *loop)
{
    Slot *s = slot_get(st, loop);
    if (G_UNLIKELY(!s || s->depth == 0)) return false;   /* observer added mid-dispatch */
    int d = --s->depth;
    if (G_UNLIKELY(d >= NEST_MAX)) return false;
    uint64_t start = s->stack[d].start;
    if (!start && G_UNLIKELY(__atomic_load_n(&s->watch_seq, __ATOMIC_ACQUIRE) ==
                             s->stack[d].dseq)) {
        start = LOAD(&s->watch_start);           /* long: a reader saw it running */
    }
    if (G_UNLIKELY(start)) timed_end(st, s, d, start);
    __atomic_store_n(&s->cur, G_UNLIKELY(d > 0) ? parent_word(s, d) : 0, __ATOMIC_RELEASE);
    ADD(&s->stack[d].rec->count, 1);
    return s->stack[d].rec->always;
}

/* The fast paths: the thread's last slot, a cached row, nothing to time, not nested.
 * Anything else goes (as a tail call, so the fast path saves no registers) to the
 * general versions above, which start over. */

/* The slot cached for this thread, if it is loop's and up to date. */
HOT Slot *slot_cached(ProfStats *st, const void *loop)
{
    Slot *s = tls.last;
    if (G_LIKELY(tls.serial == st->serial && s && LOAD(&s->loop) == loop &&
                 s->gen == __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE))) {
        return s;
    }
    return NULL;
}

void prof_stats_poll_begin(ProfStats *st, const void *loop)
{
    Slot *s = slot_cached(st, loop);
    if (G_UNLIKELY(!s)) return poll_begin_slow(st, loop);
    uint64_t it = s->iterations + 1;
    if (G_UNLIKELY((it & st->poll_mask) == 0)) return poll_begin_slow(st, loop);
    STORE(&s->iterations, it);
}

void prof_stats_dispatch_begin(ProfStats *st, const void *loop, uint64_t id,
                               const char *name, const char *kind)
{
    Slot *s = slot_cached(st, loop);
    if (G_UNLIKELY(!s)) return dispatch_begin_slow(st, loop, id, name, kind);
    unsigned i = (unsigned)(id % IDC_SIZE);
    Rec *r = LOAD(&s->idc[i].rec);
    int d = s->depth;
    if (G_UNLIKELY(LOAD(&s->idc[i].id) != id || !id || d >= NEST_MAX || r->always ||
                   (r->count & st->dispatch_mask) == 0)) {
        return dispatch_begin_slow(st, loop, id, name, kind);
    }
    uint64_t dseq = s->dseq + 1;
    s->dseq = dseq;
    s->depth = d + 1;
    s->stack[d].rec = r;
    s->stack[d].start = 0;
    s->stack[d].dseq = dseq;
    __atomic_store_n(&s->cur, CUR_WORD(dseq, r->idx), __ATOMIC_RELEASE);
}

bool prof_stats_dispatch_end(ProfStats *st, const void *loop)
{
    Slot *s = tls.last;
    if (G_UNLIKELY(tls.serial != st->serial || !s || LOAD(&s->loop) != loop)) {
        return dispatch_end_slow(st, loop);
    }
    int d = s->depth - 1;
    if (G_UNLIKELY(d != 0 || s->stack[0].start ||
                   __atomic_load_n(&s->watch_seq, __ATOMIC_ACQUIRE) == s->stack[0].dseq)) {
        return dispatch_end_slow(st, loop);
    }
    s->depth = 0;
    __atomic_store_n(&s->cur, 0, __ATOMIC_RELEASE);
    Rec *r = s->stack[0].rec;
    ADD(&r->count, 1);
    return r->always;
}

void prof_stats_dispatch_count(ProfStats *st, const void *loop, uint64_t id,
                               const char *name, const char *kind, uint64_t n)
{
    Slot *s = slot_get(st, loop);
    if (G_UNLIKELY(!s)) return;
    slot_sync_gen(st, s);
    ADD(&rec_lookup(s, id, name, kind)->count, n);
}

void prof_stats_dispatch_long(ProfStats *st, const void *loop, uint64_t id, uint64_t start)
{
    Slot *s = slot_get(st, loop);
    if (G_UNLIKELY(!s)) return;
    slot_sync_gen(st, s);
    unsigned i = (unsigned)(id % IDC_SIZE);
    if (id && s->idc[i].id == id) rec_time(st, s->idc[i].rec, start);
}

void prof_stats_use_core(ProfStats *st, const ProfCoreOps *ops)
{
    g_mutex_lock(&st->lock);
    st->core = *ops;
    st->dispatch_mask = 0;
    /* a poll is a system call: timing 1 in 16 costs little, and the poll share stays
     * well estimated at a low iteration rate */
    st->poll_mask = st->sample_mask < 15 ? st->sample_mask : 15;
    g_mutex_unlock(&st->lock);
}


void prof_stats_reset(ProfStats *st, uint64_t now)
{
    if (st->core.flush_all_wait) st->core.flush_all_wait(100);
    g_mutex_lock(&st->lock);
    __atomic_fetch_add(&st->gen, 1, __ATOMIC_RELEASE);
    st->reset_at = now;
    g_mutex_unlock(&st->lock);
    /* after the new generation: the first dispatch of each source after the reset is
     * timed (and counted in it) */
    if (st->core.restart) st->core.restart(st->core.opaque);
}

/* ---- readers (all under the lock) ---- */

static inline uint64_t to_ns(const ProfStats *st, uint64_t ticks)
{
    return (uint64_t)(((unsigned __int128)ticks * st->mult) >> 32);
}

static inline Rec *rec_at(Slot *s, uint32_t idx)
{
    return idx == REC_OVERFLOW ? &s->overflow : slot_rec(s, idx);
}

/* The slot's current dispatch and since when: false if none.  A timed dispatch carries
 * its start; an untimed one is dated from when a reader first saw it, and seen a second
 * time it is long, and the writer is asked to time its end from then. */
static bool read_current(Slot *s, uint64_t now, Rec **rec, uint64_t *start)
{
    uint64_t w = __atomic_load_n(&s->cur, __ATOMIC_ACQUIRE);
    if (!w) return false;
    uint64_t dseq = CUR_DSEQ(w);
    uint64_t t = 0;
    if (__atomic_load_n(&s->tstart_dseq, __ATOMIC_ACQUIRE) == dseq) {
        t = LOAD(&s->tstart);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD(&s->tstart_dseq) != dseq) t = 0;
    }
    if (!t) {
        if (s->seen_dseq != dseq) {
            s->seen_dseq = dseq;
            s->seen_first = now;
        } else if (LOAD(&s->watch_seq) != dseq) {
            STORE(&s->watch_start, s->seen_first);
            __atomic_store_n(&s->watch_seq, dseq, __ATOMIC_RELEASE);
        }
        t = s->seen_first;
    }
    *rec = rec_at(s, CUR_IDX(w));
    *start = t;
    return true;
}

/* The row a slot's id cache holds for source id, or NULL (the writer publishes an entry
 * id last, after a 0). */
static Rec *idc_find(Slot *s, uint64_t id)
{
    unsigned i = (unsigned)(id % IDC_SIZE);
    uint64_t a = __atomic_load_n(&s->idc[i].id, __ATOMIC_ACQUIRE);
    Rec *r = LOAD(&s->idc[i].rec);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return a == id && LOAD(&s->idc[i].id) == id ? r : NULL;
}

/* A loop's current dispatch: its name, kind and start; false if none.  A dispatch we
 * timed (its hooks ran) carries its start.  Otherwise, with prof_stats_use_core, the
 * core's published (seq, source id) is dated from when we first saw it (so up to one
 * check interval late); seen again, its end is watched so that its time is recorded.
 * Its name is found in the id caches of the loop's slots (a source's first dispatch is
 * always one we see), else it is reported as "(unknown source)". */
static bool loop_current(ProfStats *st, LoopInfo *li, uint64_t now, const char **name,
                         const char **kind, uint64_t *start)
{
    Rec *cur = NULL;
    uint64_t cur_start = 0;
    for (guint j = 0; j < st->threads->len; j++) {
        Thread *th = st->threads->pdata[j];
        for (unsigned k = 0; k < SLOTS_MAX; k++) {
            Slot *s = th->slots[k];
            Rec *r;
            uint64_t t;
            if (!s || LOAD(&s->loop) != li->loop || !read_current(s, now, &r, &t)) continue;
            if (!cur || t < cur_start) {
                cur = r;
                cur_start = t;
            }
        }
    }
    if (cur) {
        *name = cur->name;
        *kind = cur->kind;
        *start = cur_start;
        return true;
    }
    uint64_t seq, id;
    if (!st->core.current || !st->core.current(li->loop, &seq, &id)) return false;
    if (li->seen_seq != seq || li->seen_id != id) {
        li->seen_seq = seq;
        li->seen_id = id;
        li->seen_first = now;
        li->watched = false;
    } else if (!li->watched && st->core.watch) {
        st->core.watch(li->loop, seq, id, li->seen_first);
        li->watched = true;
    }
    *name = "(unknown source)";
    *kind = "other";
    for (guint j = 0; j < st->threads->len; j++) {
        Thread *th = st->threads->pdata[j];
        for (unsigned k = 0; k < SLOTS_MAX; k++) {
            Slot *s = th->slots[k];
            Rec *r = s && LOAD(&s->loop) == li->loop ? idc_find(s, id) : NULL;
            if (r) {
                *name = r->name;
                *kind = r->kind;
                j = st->threads->len - 1;
                break;
            }
        }
    }
    *start = li->seen_first;
    return true;
}

/* Counters are current only if the writer has caught up with the last reset. */
static bool slot_fresh(ProfStats *st, Slot *s)
{
    return __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE) == LOAD(&st->gen);
}

typedef struct Agg {
    LoopInfo *li;
    const char *name;
    const char *kind;
    uint64_t count, timed, total, max;
    uint64_t hist[PROF_HIST_BUCKETS];
} Agg;

/* count x mean of the timed dispatches (exact when all were timed) */
static uint64_t scale(uint64_t part, uint64_t n, uint64_t of)
{
    if (!of) return 0;
    if (n == of) return part;
    return (uint64_t)(((unsigned __int128)part * n) / of);
}

static uint64_t agg_total(const Agg *a) { return scale(a->total, a->count, a->timed); }

static guint agg_hash(gconstpointer p)
{
    const Agg *a = p;
    return g_str_hash(a->name) ^ g_direct_hash(a->kind) ^ g_direct_hash(a->li);
}

static gboolean agg_equal(gconstpointer p, gconstpointer q)
{
    const Agg *a = p, *b = q;
    return a->li == b->li && a->kind == b->kind && !strcmp(a->name, b->name);
}

static void agg_add(GHashTable *t, GPtrArray *order, LoopInfo *li, Rec *r)
{
    uint64_t count = LOAD(&r->count);
    if (!count) return;
    Agg key = { .li = li, .name = r->name, .kind = r->kind };
    Agg *a = g_hash_table_lookup(t, &key);
    if (!a) {
        a = g_new0(Agg, 1);
        *a = key;
        g_hash_table_add(t, a);
        g_ptr_array_add(order, a);
    }
    a->count += count;
    a->timed += LOAD(&r->timed);
    a->total += LOAD(&r->total);
    uint64_t m = LOAD(&r->max);
    if (m > a->max) a->max = m;
    for (unsigned i = 0; i < PROF_HIST_BUCKETS; i++) a->hist[i] += LOAD(&r->hist[i]);
}

static void json_u64(GString *out, const char *key, uint64_t v, bool comma)
{
    g_string_append_printf(out, "\"%s\": %" G_GUINT64_FORMAT "%s", key, v, comma ? ", " : "");
}

void prof_stats_snapshot(ProfStats *st, uint64_t now, uint64_t stuck_ticks, GString *out)
{
    /* a short wait: the profiler socket must answer promptly when loops are stuck */
    if (st->core.flush_all_wait) st->core.flush_all_wait(20);
    g_mutex_lock(&st->lock);
    /* sources first: the loops' dispatch time is the sum of theirs */
    GHashTable *agg = g_hash_table_new(agg_hash, agg_equal);
    GPtrArray *order = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < st->loops->len; i++) {
        LoopInfo *li = st->loops->pdata[i];
        for (guint j = 0; j < st->threads->len; j++) {
            Thread *th = st->threads->pdata[j];
            for (unsigned k = 0; k < SLOTS_MAX; k++) {
                Slot *s = th->slots[k];
                if (!s || LOAD(&s->loop) != li->loop || !slot_fresh(st, s)) continue;
                uint32_t n = __atomic_load_n(&s->nrec, __ATOMIC_ACQUIRE);
                for (uint32_t r = 0; r < n; r++) agg_add(agg, order, li, slot_rec(s, r));
                agg_add(agg, order, li, &s->overflow);
            }
        }
    }

    uint64_t since = now > st->reset_at ? now - st->reset_at : 0;
    g_string_append(out, "{");
    json_u64(out, "version", 1, true);
    json_u64(out, "pid", (uint64_t)getpid(), true);
    json_u64(out, "since_reset_ns", to_ns(st, since), true);
    json_u64(out, "stuck_threshold_ns", to_ns(st, stuck_ticks), true);
    json_u64(out, "sample", st->sample_mask + 1, true);
    g_string_append(out, "\"loops\": [");
    for (guint i = 0; i < st->loops->len; i++) {
        LoopInfo *li = st->loops->pdata[i];
        uint64_t it = 0, poll = 0, polls = 0, disp = 0, n = 0;
        int tid = li->tid;
        const char *cur_name, *cur_kind;
        uint64_t cur_start = 0;
        bool cur = loop_current(st, li, now, &cur_name, &cur_kind, &cur_start);
        for (guint j = 0; j < st->threads->len; j++) {
            Thread *th = st->threads->pdata[j];
            for (unsigned k = 0; k < SLOTS_MAX; k++) {
                Slot *s = th->slots[k];
                if (!s || LOAD(&s->loop) != li->loop) continue;
                if (!slot_fresh(st, s)) continue;
                uint64_t sit = LOAD(&s->iterations);
                if (!tid && sit) tid = th->tid;
                /* scale each thread's timed polls to its own iterations */
                poll += scale(LOAD(&s->poll), sit, LOAD(&s->polls_timed));
                polls += LOAD(&s->polls_timed);
                it += sit;
                uint32_t nr = __atomic_load_n(&s->nrec, __ATOMIC_ACQUIRE);
                for (uint32_t r = 0; r < nr; r++) n += LOAD(&slot_rec(s, r)->count);
                n += LOAD(&s->overflow.count);
            }
        }
        for (guint j = 0; j < order->len; j++) {
            Agg *a = order->pdata[j];
            if (a->li == li) disp += agg_total(a);
        }
        g_string_append(out, i ? ", {\"name\": " : "{\"name\": ");
        prof_json_string(out, li->name);
        g_string_append_printf(out, ", \"main\": %s, ", li->is_main ? "true" : "false");
        json_u64(out, "tid", (uint64_t)(tid > 0 ? tid : 0), true);
        json_u64(out, "iterations", it, true);
        json_u64(out, "polls_timed", polls, true);
        json_u64(out, "dispatches", n, true);
        json_u64(out, "poll_ns", to_ns(st, poll), true);
        json_u64(out, "dispatch_ns", to_ns(st, disp), true);
        g_string_append(out, "\"current\": ");
        bool stuck = false;
        if (cur) {
            uint64_t running = now > cur_start ? now - cur_start : 0;
            stuck = stuck_ticks && running >= stuck_ticks;
            g_string_append(out, "{\"source\": ");
            prof_json_string(out, cur_name);
            g_string_append(out, ", \"kind\": ");
            prof_json_string(out, cur_kind);
            g_string_append(out, ", ");
            json_u64(out, "running_ns", to_ns(st, running), false);
            g_string_append(out, "}");
        } else {
            g_string_append(out, "null");
        }
        g_string_append_printf(out, ", \"stuck\": %s}", stuck ? "true" : "false");
    }
    g_string_append(out, "], \"sources\": [");
    for (guint i = 0; i < order->len; i++) {
        Agg *a = order->pdata[i];
        g_string_append(out, i ? ", {\"name\": " : "{\"name\": ");
        prof_json_string(out, a->name);
        g_string_append(out, ", \"kind\": ");
        prof_json_string(out, a->kind);
        g_string_append(out, ", \"loop\": ");
        prof_json_string(out, a->li->name);
        g_string_append(out, ", ");
        json_u64(out, "count", a->count, true);
        json_u64(out, "timed", a->timed, true);
        json_u64(out, "total_ns", to_ns(st, agg_total(a)), true);
        json_u64(out, "mean_ns", a->timed ? to_ns(st, a->total / a->timed) : 0, true);
        json_u64(out, "max_ns", to_ns(st, a->max), true);
        json_u64(out, "p50_ns", prof_hist_percentile(a->hist, 50), true);
        json_u64(out, "p99_ns", prof_hist_percentile(a->hist, 99), true);
        g_string_append(out, "\"hist\": [");
        bool first = true;
        for (unsigned b = 0; b < PROF_HIST_BUCKETS; b++) {
            if (!a->hist[b]) continue;
            g_string_append_printf(out, "%s[%u, %" G_GUINT64_FORMAT "]", first ? "" : ", ",
                                   b, a->hist[b]);
            first = false;
        }
        g_string_append(out, "]}");
    }
    g_hash_table_destroy(agg);
    g_ptr_array_free(order, TRUE);
    g_string_append(out, "]}");
    g_mutex_unlock(&st->lock);
}

void prof_stats_stuck_foreach(ProfStats *st, uint64_t now, uint64_t stuck_ticks,
                              ProfStuckFn fn, void *opaque)
{
    g_mutex_lock(&st->lock);
    for (guint i = 0; i < st->loops->len; i++) {
        LoopInfo *li = st->loops->pdata[i];
        const char *name, *kind;
        uint64_t t;
        if (!loop_current(st, li, now, &name, &kind, &t)) continue;
        if (now < t || now - t < stuck_ticks) continue;
        bool first = li->reported_start != t || li->reported_name != name;
        li->reported_start = t;
        li->reported_name = name;
        fn(li->name, name, kind, to_ns(st, now - t), first, opaque);
    }
    g_mutex_unlock(&st->lock);
}

/* ---- JSON ---- */

void prof_json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    const char *p = s, *end = s + strlen(s);
    while (p < end) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append(out, "\\ufffd");
            p++;
            continue;
        }
        const char *next = g_utf8_next_char(p);
        if (c == '"') g_string_append(out, "\\\"");
        else if (c == '\\') g_string_append(out, "\\\\");
        else if (c == '\n') g_string_append(out, "\\n");
        else if (c == '\t') g_string_append(out, "\\t");
        else if (c < 0x20 || c == 0x7f) g_string_append_printf(out, "\\u%04x", c);
        else g_string_append_len(out, p, next - p);
        p = next;
    }
    g_string_append_c(out, '"');
}
