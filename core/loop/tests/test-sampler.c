/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of event-loop samplers: which dispatches are sampled, exact counts (with
 * samples, flushes and freed sources), slow sources, the published current source, watched
 * dispatches, and adding/removing a sampler while dispatches run. */
#include <string.h>
#include "qs/evloop.h"
#include "loop-internal.h"
#include "runtime.h"

/* What a sampler saw, per source name: sampled begins and ends, counts reported by the
 * begins (b_count) and by dispatch_count (c_count), watched ends and their cookies. */
typedef struct Row {
    uint64_t id;
    int begins, ends, watched;
    uint64_t b_count, c_count, cookie;
    GString *sampled_at;   /* the dispatch numbers (1-based) that were sampled */
} Row;

typedef struct Rec {
    GMutex lock;
    GHashTable *rows;      /* name -> Row */
    GHashTable *slow;      /* names for which dispatch_end returns true */
    uint64_t *ran;         /* the dispatch counter of the source under test, if any */
    const char *ran_name;
} Rec;

static Row *row(Rec *r, const char *name)
{
    Row *w = g_hash_table_lookup(r->rows, name);
    if (!w) {
        w = g_new0(Row, 1);
        w->sampled_at = g_string_new(NULL);
        g_hash_table_insert(r->rows, g_strdup(name), w);
    }
    return w;
}

static void row_free(gpointer p)
{
    Row *w = p;
    g_string_free(w->sampled_at, TRUE);
    g_free(w);
}

static void rec_init(Rec *r)
{
    memset(r, 0, sizeof(*r));
    g_mutex_init(&r->lock);
    r->rows = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, row_free);
    r->slow = g_hash_table_new(g_str_hash, g_str_equal);
}

static void rec_clear(Rec *r)
{
    g_hash_table_destroy(r->rows);
    g_hash_table_destroy(r->slow);
    g_mutex_clear(&r->lock);
}

static void s_begin(const QsSourceInfo *src, uint64_t count, void *o)
{
    Rec *r = o;
    g_mutex_lock(&r->lock);
    Row *w = row(r, src->name);
    w->id = src->id;
    w->begins++;
    w->b_count += count;
    if (r->ran && r->ran_name && !strcmp(src->name, r->ran_name)) {
        /* the dispatch about to run is number *ran + 1 */
        g_string_append_printf(w->sampled_at, "%s%" G_GUINT64_FORMAT,
                               w->sampled_at->len ? " " : "", *r->ran + 1);
    }
    g_mutex_unlock(&r->lock);
}

static bool s_end(const QsSourceInfo *src, void *o)
{
    Rec *r = o;
    g_mutex_lock(&r->lock);
    row(r, src->name)->ends++;
    bool slow = g_hash_table_contains(r->slow, src->name);
    g_mutex_unlock(&r->lock);
    return slow;
}

static void s_count(const QsSourceInfo *src, uint64_t count, void *o)
{
    Rec *r = o;
    g_mutex_lock(&r->lock);
    row(r, src->name)->c_count += count;
    g_mutex_unlock(&r->lock);
}

static void s_watched(QsLoop *loop, uint64_t id, uint64_t cookie, void *o)
{
    Rec *r = o;
    g_mutex_lock(&r->lock);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, r->rows);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        Row *w = v;
        if (w->id != id) continue;
        w->watched++;
        w->cookie = cookie;
    }
    g_mutex_unlock(&r->lock);
}

static QsEvloopSampler sampler = {
    .name = "test-sampler", .period = 4,
    .dispatch_begin = s_begin, .dispatch_end = s_end, .dispatch_count = s_count,
    .dispatch_watched = s_watched,
};

static Row snapshot_row(Rec *r, const char *name)
{
    g_mutex_lock(&r->lock);
    Row w = *row(r, name);
    g_mutex_unlock(&r->lock);
    return w;
}

static uint64_t total(Rec *r, const char *name)
{
    Row w = snapshot_row(r, name);
    return w.b_count + w.c_count;
}

static void drain(void)
{
    QsLoop *m = qs_loop_main();
    for (int i = 0; i < 100 && qs_loop_iterate(m, false); i++) { }
}

static void count_cb(void *opaque)
{
    (*(uint64_t *)opaque)++;
}

/* Run bh n times, one dispatch each. */
static void run_bh(QsBH *bh, int n)
{
    for (int i = 0; i < n; i++) {
        qs_bh_schedule(bh);
        drain();
    }
}

/* The first dispatch and then one in period are sampled; counts are exact through the
 * samples, a flush and the free of the source. */
static void test_sampling_counts(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsLoop *m = qs_loop_main();
    uint64_t ran = 0;
    QsBH *bh = qs_bh_new(m, "s-bh", count_cb, &ran);
    run_bh(bh, 3);                  /* before the sampler: never reported */
    r.ran = &ran;
    r.ran_name = "s-bh";
    sampler.period = 4;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    g_assert_no_error(err);
    ran = 0;
    run_bh(bh, 37);
    Row w = snapshot_row(&r, "s-bh");
    g_assert_cmpstr(w.sampled_at->str, ==, "1 5 9 13 17 21 25 29 33 37");
    g_assert_cmpint(w.begins, ==, 10);
    g_assert_cmpint(w.ends, ==, 10);
    g_assert_cmpuint(w.b_count, ==, 37);
    g_assert_cmpuint(w.c_count, ==, 0);
    /* three not sampled, then a flush from the loop's thread reports them at once */
    run_bh(bh, 3);
    g_assert_cmpuint(total(&r, "s-bh"), ==, 37);
    qs_loop_flush(m);
    g_assert_cmpuint(snapshot_row(&r, "s-bh").c_count, ==, 3);
    qs_loop_flush(m);               /* nothing new: nothing reported */
    g_assert_cmpuint(total(&r, "s-bh"), ==, 40);
    /* the sampling phase is kept across a flush: the 41st is the next sampled one */
    run_bh(bh, 2);
    w = snapshot_row(&r, "s-bh");
    g_assert_cmpstr(w.sampled_at->str, ==, "1 5 9 13 17 21 25 29 33 37 41");
    g_assert_cmpuint(w.b_count + w.c_count, ==, 41);   /* the 42nd not reported yet */
    /* freeing the source hands over what is left */
    qs_bh_free(bh);
    g_assert_cmpuint(total(&r, "s-bh"), ==, ran);
    g_assert_cmpuint(ran, ==, 42);
    qs_evloop_sampler_remove(&sampler);
    rec_clear(&r);
}

static void restart_cb(void *opaque)
{
    qs_evloop_sampler_restart(&sampler);
}

/* A restart samples every source's next dispatch and drops what was not reported. */
static void test_restart(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    uint64_t ran = 0;
    QsBH *bh = qs_bh_new(qs_loop_main(), "rs-bh", count_cb, &ran);
    r.ran = &ran;
    r.ran_name = "rs-bh";
    sampler.period = 16;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    run_bh(bh, 5);                  /* 1 sampled, 4 not reported */
    qs_evloop_sampler_restart(&sampler);
    run_bh(bh, 3);                  /* the 6th sampled with count 1 */
    Row w = snapshot_row(&r, "rs-bh");
    g_assert_cmpstr(w.sampled_at->str, ==, "1 6");
    g_assert_cmpuint(w.b_count, ==, 2);
    qs_bh_free(bh);
    g_assert_cmpuint(total(&r, "rs-bh"), ==, 4);    /* 8 ran, the 4 before the restart dropped */
    /* restarted while a sampled dispatch runs: that dispatch still gets its end */
    QsBH *mid = qs_bh_new(qs_loop_main(), "rs-mid", restart_cb, NULL);
    qs_bh_schedule(mid);
    drain();
    w = snapshot_row(&r, "rs-mid");
    g_assert_cmpint(w.begins, ==, 1);
    g_assert_cmpint(w.ends, ==, 1);
    qs_bh_free(mid);
    qs_evloop_sampler_remove(&sampler);
    qs_evloop_sampler_restart(&sampler);   /* not registered: nothing */
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    rec_clear(&r);
}

/* A source the sampler calls slow is sampled every time (count 1) until it is not. */
static void test_slow_source(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    uint64_t ran = 0;
    QsBH *bh = qs_bh_new(qs_loop_main(), "slow-bh", count_cb, &ran);
    r.ran = &ran;
    r.ran_name = "slow-bh";
    sampler.period = 8;
    g_hash_table_add(r.slow, "slow-bh");
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    run_bh(bh, 5);
    Row w = snapshot_row(&r, "slow-bh");
    g_assert_cmpstr(w.sampled_at->str, ==, "1 2 3 4 5");
    g_assert_cmpuint(w.b_count, ==, 5);
    g_mutex_lock(&r.lock);
    g_hash_table_remove(r.slow, "slow-bh");
    g_mutex_unlock(&r.lock);
    /* the 6th is sampled (still slow) and says "not slow": then 1 in 8 again */
    run_bh(bh, 14);
    w = snapshot_row(&r, "slow-bh");
    g_assert_cmpstr(w.sampled_at->str, ==, "1 2 3 4 5 6 14");
    g_assert_cmpuint(w.b_count, ==, 14);
    qs_bh_free(bh);
    g_assert_cmpuint(total(&r, "slow-bh"), ==, 19);
    qs_evloop_sampler_remove(&sampler);
    rec_clear(&r);
}

/* Timers (sampled in the timer list's dispatch and by qs_clock_step) and an observer
 * alongside: the observer sees every dispatch, the sampler's counts stay exact. */
static int obs_begins, obs_ends;
static void ob_begin(const QsSourceInfo *src, void *o) { obs_begins++; }
static void ob_end(const QsSourceInfo *src, void *o) { obs_ends++; }
static const QsEvloopObserver every = {
    .name = "test-every", .dispatch_begin = ob_begin, .dispatch_end = ob_end,
};

static void test_timers_and_observer(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsLoop *m = qs_loop_main();
    uint64_t ran = 0;
    sampler.period = 16;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    g_assert_true(qs_evloop_observer_add(&every, NULL, &err));
    g_assert_no_error(err);
    QsTimer *t = qs_timer_new(m, QS_CLOCK_REALTIME, "s-timer", count_cb, &ran);
    for (int i = 0; i < 20; i++) {
        qs_timer_mod(t, 0);
        while (qs_timer_pending(t)) qs_loop_iterate(m, true);
    }
    g_assert_cmpint(obs_begins, ==, 20);
    g_assert_cmpint(obs_ends, ==, 20);
    qs_evloop_observer_remove(&every);
    /* virtual timers stepped from this thread (the thread runs no loop here) */
    uint64_t vran = 0;
    QsTimer *v = qs_timer_new(m, QS_CLOCK_VIRTUAL, "s-vtimer", count_cb, &vran);
    qs_clock_set_manual(true);
    for (int i = 0; i < 10; i++) {
        qs_timer_mod(v, qs_clock_get_ns(QS_CLOCK_VIRTUAL) + 10);
        qs_clock_step(10);
    }
    qs_clock_set_manual(false);
    g_assert_cmpuint(vran, ==, 10);
    g_assert_cmpuint(snapshot_row(&r, "s-vtimer").begins, ==, 1);   /* 1 in 16 */
    qs_timer_free(v);
    g_assert_cmpuint(total(&r, "s-vtimer"), ==, 10);
    qs_loop_flush(m);
    g_assert_cmpuint(ran, ==, 20);
    g_assert_cmpuint(total(&r, "s-timer"), ==, 20);
    Row w = snapshot_row(&r, "s-timer");
    g_assert_cmpint(w.begins, ==, 2);     /* the 1st and the 17th */
    qs_timer_free(t);
    qs_evloop_sampler_remove(&sampler);
    rec_clear(&r);
}

/* ---- the published current source ---- */

typedef struct Cur {
    QsBH *inner;
    bool seen, seen_inner_first;
    uint64_t seq, id, inner_id, after_seq, after_id;
} Cur;

static void inner_cb(void *opaque)
{
    Cur *c = opaque;
    uint64_t seq;
    qs_loop_current(qs_loop_main(), &seq, &c->inner_id);
}

static void outer_cb(void *opaque)
{
    Cur *c = opaque;
    c->seen = qs_loop_current(qs_loop_main(), &c->seq, &c->id);
    /* a nested dispatch: the inner source is current, then the outer one again */
    qs_bh_schedule(c->inner);
    qs_loop_iterate(qs_loop_main(), false);
    qs_loop_current(qs_loop_main(), &c->after_seq, &c->after_id);
}

static void test_current_nested(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsLoop *m = qs_loop_main();
    Cur c = { 0 };
    QsBH *outer = qs_bh_new(m, "cur-outer", outer_cb, &c);
    c.inner = qs_bh_new(m, "cur-inner", inner_cb, &c);
    sampler.period = 1024;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    for (int round = 0; round < 2; round++) {   /* sampled (first), then not */
        memset(&c.seen, 0, sizeof(c) - G_STRUCT_OFFSET(Cur, seen));
        qs_bh_schedule(outer);
        drain();
        uint64_t outer_id = snapshot_row(&r, "cur-outer").id;
        uint64_t inner_id = snapshot_row(&r, "cur-inner").id;
        g_assert_cmpuint(outer_id, !=, 0);
        g_assert_true(c.seen);
        g_assert_cmpuint(c.id, ==, outer_id);
        g_assert_cmpuint(c.inner_id, ==, inner_id);
        g_assert_cmpuint(c.after_id, ==, outer_id);
        g_assert_cmpuint(c.after_seq, !=, c.seq);   /* the outer one under a new seq */
        uint64_t seq, id;
        g_assert_false(qs_loop_current(m, &seq, &id));
        g_assert_cmpuint(id, ==, 0);
        g_assert_cmpuint(seq, ==, c.after_seq);     /* seq changes at begins only */
    }
    g_assert_cmpint(snapshot_row(&r, "cur-outer").begins, ==, 1);
    qs_bh_free(c.inner);
    qs_bh_free(outer);
    qs_evloop_sampler_remove(&sampler);
    rec_clear(&r);
}

/* An iothread's dispatch seen from this thread, watched, and its end reported. */
typedef struct Block {
    int entered, release;
} Block;

static void block_cb(void *opaque)
{
    Block *b = opaque;
    g_atomic_int_set(&b->entered, 1);
    while (!g_atomic_int_get(&b->release)) g_usleep(500);
}

static void quick_cb(void *opaque) { }

static void test_current_other_thread(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("io-cur", &err);
    g_assert_no_error(err);
    Block b = { 0 };
    QsBH *warm = qs_bh_new(io, "io-quick", quick_cb, NULL);
    QsBH *bh = qs_bh_new(io, "io-block", block_cb, &b);
    sampler.period = 1024;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    /* first dispatch of io-block sampled, the second not: watch that one */
    for (int round = 0; round < 2; round++) {
        b.entered = b.release = 0;
        qs_bh_schedule(bh);
        while (!g_atomic_int_get(&b.entered)) g_usleep(200);
        uint64_t seq, id, seq2, id2;
        g_assert_true(qs_loop_current(io, &seq, &id));
        g_assert_cmpuint(id, ==, snapshot_row(&r, "io-block").id);
        g_usleep(2000);
        g_assert_true(qs_loop_current(io, &seq2, &id2));
        g_assert_cmpuint(seq2, ==, seq);            /* the same dispatch, still running */
        g_assert_cmpuint(id2, ==, id);
        if (round == 1) qs_loop_watch(io, seq, id, 4242);
        g_atomic_int_set(&b.release, 1);
        for (int i = 0; i < 5000 && qs_loop_current(io, &seq2, &id2); i++) g_usleep(200);
        g_assert_cmpuint(id2, ==, 0);
    }
    for (int i = 0; i < 5000 && !snapshot_row(&r, "io-block").watched; i++) g_usleep(200);
    Row w = snapshot_row(&r, "io-block");
    g_assert_cmpint(w.watched, ==, 1);
    g_assert_cmpuint(w.cookie, ==, 4242);
    g_assert_cmpint(w.begins, ==, 1);
    /* a watch on a dispatch already over fires at the loop's next chance */
    uint64_t seq, id;
    qs_loop_current(io, &seq, &id);
    qs_loop_watch(io, seq - 1, snapshot_row(&r, "io-block").id, 7);
    g_assert_true(qs_loop_flush_wait(io, 5000));
    w = snapshot_row(&r, "io-block");
    g_assert_cmpint(w.watched, ==, 2);
    g_assert_cmpuint(w.cookie, ==, 7);
    qs_bh_schedule(warm);
    /* counts from another thread: flush and wait */
    for (int i = 0; i < 3; i++) {
        b.entered = 0;
        b.release = 1;
        qs_bh_schedule(bh);
        while (!g_atomic_int_get(&b.entered)) g_usleep(200);
    }
    g_assert_true(qs_loop_flush_wait(io, 5000));
    g_assert_cmpuint(total(&r, "io-block"), ==, 5);
    g_assert_cmpint(snapshot_row(&r, "io-block").watched, ==, 2);
    qs_bh_free(bh);
    qs_bh_free(warm);
    qs_iothread_free(io);
    qs_evloop_sampler_remove(&sampler);
    rec_clear(&r);
}

/* ---- adding and removing while dispatching ---- */

typedef struct Mid {
    Rec *r;
    bool remove, add;
    uint64_t seq_after;
} Mid;

static void mid_cb(void *opaque)
{
    Mid *x = opaque;
    if (x->remove) qs_evloop_sampler_remove(&sampler);
    GError *err = NULL;
    if (x->add) g_assert_true(qs_evloop_sampler_add(&sampler, x->r, &err));
}

static void test_add_remove_mid_dispatch(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsLoop *m = qs_loop_main();
    Mid x = { .r = &r };
    QsBH *bh = qs_bh_new(m, "mid-bh", mid_cb, &x);
    sampler.period = 1;
    /* removed inside its own sampled dispatch: no end, nothing after, and the loop's
     * published state is restored all the same */
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    x.remove = true;
    qs_bh_schedule(bh);
    drain();
    Row w = snapshot_row(&r, "mid-bh");
    g_assert_cmpint(w.begins, ==, 1);
    g_assert_cmpint(w.ends, ==, 0);
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    uint64_t seq, id;
    g_assert_false(qs_loop_current(m, &seq, &id));
    x.remove = false;
    run_bh(bh, 3);
    g_assert_cmpint(snapshot_row(&r, "mid-bh").begins, ==, 1);
    /* added inside a dispatch: no end for a begin it never saw; the next dispatch is its
     * first (sampled, count 1: nothing from before counts) */
    x.add = true;
    qs_bh_schedule(bh);
    drain();
    x.add = false;
    w = snapshot_row(&r, "mid-bh");
    g_assert_cmpint(w.begins, ==, 1);
    g_assert_cmpint(w.ends, ==, 0);
    g_assert_false(qs_loop_current(m, &seq, &id));
    run_bh(bh, 2);
    w = snapshot_row(&r, "mid-bh");
    g_assert_cmpint(w.begins, ==, 3);
    g_assert_cmpint(w.ends, ==, 2);
    g_assert_cmpuint(w.b_count, ==, 3);
    qs_evloop_sampler_remove(&sampler);
    qs_bh_free(bh);
    g_assert_cmpuint(total(&r, "mid-bh"), ==, 3);   /* removed: the free reports nothing */
    rec_clear(&r);
}

/* Another sampler added while one's sampled dispatch runs: the first still gets its
 * end, the new one gets none (it saw no begin). */
static int other_begins, other_ends;
static void other_begin(const QsSourceInfo *src, uint64_t n, void *o) { other_begins++; }
static bool other_end(const QsSourceInfo *src, void *o) { other_ends++; return false; }
static const QsEvloopSampler other = {
    .name = "other-sampler", .period = 1, .dispatch_begin = other_begin,
    .dispatch_end = other_end,
};

static void add_other_cb(void *opaque)
{
    GError *err = NULL;
    g_assert_true(qs_evloop_sampler_add(&other, NULL, &err));
}

static void test_add_other_mid_dispatch(void)
{
    Rec r;
    rec_init(&r);
    GError *err = NULL;
    QsBH *bh = qs_bh_new(qs_loop_main(), "other-bh", add_other_cb, NULL);
    sampler.period = 1;
    g_assert_true(qs_evloop_sampler_add(&sampler, &r, &err));
    qs_bh_schedule(bh);
    drain();
    Row w = snapshot_row(&r, "other-bh");
    g_assert_cmpint(w.begins, ==, 1);
    g_assert_cmpint(w.ends, ==, 1);
    g_assert_cmpint(other_begins, ==, 0);
    g_assert_cmpint(other_ends, ==, 0);
    qs_evloop_sampler_remove(&other);
    qs_evloop_sampler_remove(&sampler);
    qs_bh_free(bh);
    rec_clear(&r);
}

/* Removal from another thread waits for a sampler callback in progress. */
static int slow_in, slow_out;
static void slowcb_begin(const QsSourceInfo *src, uint64_t n, void *o)
{
    g_atomic_int_set(&slow_in, 1);
    g_usleep(100000);
    g_atomic_int_set(&slow_out, 1);
}
static const QsEvloopSampler slow_sampler = {
    .name = "slow-sampler", .period = 1, .dispatch_begin = slowcb_begin,
};

static void test_remove_waits(void)
{
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("io-slow-smp", &err);
    g_assert_no_error(err);
    g_assert_true(qs_evloop_sampler_add(&slow_sampler, NULL, &err));
    qs_loop_call(io, "slow-call", quick_cb, NULL);
    while (!g_atomic_int_get(&slow_in)) g_usleep(1000);
    qs_evloop_sampler_remove(&slow_sampler);
    g_assert_true(g_atomic_int_get(&slow_out));
    qs_iothread_free(io);
}

static void test_bad_registrations(void)
{
    GError *err = NULL;
    QsEvloopSampler zero = { .name = "zero", .period = 0 };
    g_assert_false(qs_evloop_sampler_add(&zero, NULL, &err));
    g_assert_nonnull(strstr(err->message, "'zero': period 0 is not 1..65536"));
    g_clear_error(&err);
    QsEvloopSampler unnamed = { .period = 4 };
    g_assert_false(qs_evloop_sampler_add(&unnamed, NULL, &err));
    g_assert_nonnull(strstr(err->message, "sampler without a name"));
    g_clear_error(&err);
    /* observers and samplers share their names */
    QsEvloopObserver same = { .name = "test-sampler" };
    sampler.period = 4;
    g_assert_true(qs_evloop_sampler_add(&sampler, NULL, &err));
    g_assert_false(qs_evloop_observer_add(&same, NULL, &err));
    g_assert_nonnull(strstr(err->message, "'test-sampler' is already registered"));
    g_clear_error(&err);
    qs_evloop_sampler_remove(&sampler);
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_evloop_init();
    qs_runstate_start(false);
    g_test_add_func("/evloop/sampler/sampling-counts", test_sampling_counts);
    g_test_add_func("/evloop/sampler/slow-source", test_slow_source);
    g_test_add_func("/evloop/sampler/restart", test_restart);
    g_test_add_func("/evloop/sampler/timers-and-observer", test_timers_and_observer);
    g_test_add_func("/evloop/sampler/current-nested", test_current_nested);
    g_test_add_func("/evloop/sampler/current-other-thread", test_current_other_thread);
    g_test_add_func("/evloop/sampler/add-remove-mid-dispatch", test_add_remove_mid_dispatch);
    g_test_add_func("/evloop/sampler/add-other-mid-dispatch", test_add_other_mid_dispatch);
    g_test_add_func("/evloop/sampler/remove-waits", test_remove_waits);
    g_test_add_func("/evloop/sampler/bad-registrations", test_bad_registrations);
    return g_test_run();
}
