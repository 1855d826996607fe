/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Event-loop unit tests: dispatch order of bottom halves, fds and timers; realtime and
 * manually stepped virtual timers; iothreads; observers and their module rollback. */
#include <string.h>
#include <unistd.h>
#include "qs/evloop.h"
#include "loop-internal.h"
#include "module-loader.h"
#include "runtime.h"

static GString *trace;   /* what ran, in order */

static void note(const char *what)
{
    if (trace->len) g_string_append_c(trace, ' ');
    g_string_append(trace, what);
}

static void reset_trace(void) { g_string_truncate(trace, 0); }

/* Iterate the main loop without blocking until nothing is ready. */
static void drain(void)
{
    QsLoop *m = qs_loop_main();
    for (int i = 0; i < 100 && qs_loop_iterate(m, false); i++) { }
}

/* Iterate (blocking) until *flag or timeout. */
static void wait_for(int *flag, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000;
    while (!g_atomic_int_get(flag) && g_get_monotonic_time() < end) {
        qs_loop_iterate(qs_loop_main(), false);
        g_usleep(200);
    }
}

/* ---- ordering ---- */

static void bh_note(void *opaque) { note(opaque); }
static void timer_note(void *opaque) { note(opaque); }

static void fd_note(int fd, GIOCondition cond, void *opaque)
{
    char c;
    g_assert_cmpint(read(fd, &c, 1), ==, 1);
    note(opaque);
}

static void test_order(void)
{
    QsLoop *m = qs_loop_main();
    int p[2];
    g_assert_cmpint(pipe(p), ==, 0);
    QsFdHandler *fh = qs_fd_handler_new(m, "fd-a", p[0], G_IO_IN, fd_note, "fd");
    QsTimer *t1 = qs_timer_new(m, QS_CLOCK_REALTIME, "t1", timer_note, "t1");
    QsTimer *t2 = qs_timer_new(m, QS_CLOCK_REALTIME, "t2", timer_note, "t2");
    QsBH *b1 = qs_bh_new(m, "b1", bh_note, "b1");
    QsBH *b2 = qs_bh_new(m, "b2", bh_note, "b2");
    drain();
    reset_trace();

    /* Everything becomes ready before the loop looks: BHs first, then fd handlers and
     * timers; timers due together run in deadline order, not creation order. */
    int64_t now = qs_clock_get_ns(QS_CLOCK_REALTIME);
    qs_timer_mod(t2, now - 2000000);
    qs_timer_mod(t1, now - 1000000);
    g_assert_cmpint(write(p[1], "x", 1), ==, 1);
    qs_bh_schedule(b2);
    qs_bh_schedule(b1);
    qs_bh_schedule(b2);     /* scheduling twice runs once */
    g_usleep(2000);
    drain();
    g_assert_cmpstr(trace->str, ==, "b1 b2 fd t2 t1");
    g_assert_false(qs_timer_pending(t1));

    /* A cancelled BH does not run; a BH scheduled from a BH runs afterwards. */
    reset_trace();
    qs_bh_schedule(b1);
    qs_bh_cancel(b1);
    drain();
    g_assert_cmpstr(trace->str, ==, "");

    qs_fd_handler_free(fh);
    qs_timer_free(t1);
    qs_timer_free(t2);
    qs_bh_free(b1);
    qs_bh_free(b2);
    close(p[0]);
    close(p[1]);
}

/* ---- timers ---- */

typedef struct Periodic {
    QsTimer *t;
    int64_t period;
    int count, stop_at;
    int done;
} Periodic;

static void periodic_cb(void *opaque)
{
    Periodic *p = opaque;
    g_assert_false(qs_timer_pending(p->t));   /* disarmed while its callback runs */
    if (++p->count < p->stop_at) qs_timer_mod(p->t, qs_clock_get_ns(QS_CLOCK_REALTIME) + p->period);
    else g_atomic_int_set(&p->done, 1);
}

static void test_realtime_rearm(void)
{
    Periodic p = { .period = 2000000, .stop_at = 5 };
    p.t = qs_timer_new(qs_loop_main(), QS_CLOCK_REALTIME, "periodic", periodic_cb, &p);
    int64_t start = qs_clock_get_ns(QS_CLOCK_REALTIME);
    qs_timer_mod(p.t, start + p.period);
    g_assert_true(qs_timer_pending(p.t));
    g_assert_cmpint(qs_clock_next_deadline(QS_CLOCK_REALTIME), ==, start + p.period);
    wait_for(&p.done, 5000);
    int64_t took = qs_clock_get_ns(QS_CLOCK_REALTIME) - start;
    g_assert_cmpint(p.count, ==, 5);
    g_assert_cmpint(took, >=, 5 * p.period);      /* never early */
    g_assert_false(qs_timer_pending(p.t));

    /* del disarms */
    qs_timer_mod(p.t, qs_clock_get_ns(QS_CLOCK_REALTIME) + 1000000);
    qs_timer_del(p.t);
    g_usleep(3000);
    drain();
    g_assert_cmpint(p.count, ==, 5);
    qs_timer_free(p.t);
}

/* Wake-up precision: GLib's poll timeout is in whole ms, rounded up, so a deadline of
 * N.1 ms ahead used to wake ~0.9 ms late every time.  The loop now sleeps to the ns
 * deadline: the least late of many wake-ups (host load only ever adds lateness) is well
 * under that. */
typedef struct Wake {
    int64_t fired;
} Wake;

static void wake_cb(void *opaque)
{
    ((Wake *)opaque)->fired = qs_clock_get_ns(QS_CLOCK_REALTIME);
}

static void test_realtime_precise_wakeup(void)
{
    QsLoop *m = qs_loop_main();
    Wake w;
    QsTimer *t = qs_timer_new(m, QS_CLOCK_REALTIME, "precise", wake_cb, &w);
    drain();
    int64_t least = G_MAXINT64;
    for (int i = 0; i < 30; i++) {
        w.fired = 0;
        int64_t deadline = qs_clock_get_ns(QS_CLOCK_REALTIME) + (1 + i % 3) * 1000000 + 100000;
        qs_timer_mod(t, deadline);
        while (!w.fired) qs_loop_iterate(m, true);
        g_assert_cmpint(w.fired, >=, deadline);           /* never early */
        if (w.fired - deadline < least) least = w.fired - deadline;
    }
    g_test_message("least lateness of 30 wake-ups: %" G_GINT64_FORMAT " ns", least);
    g_assert_cmpint(least, <, 500000);
    qs_timer_free(t);
}

/* A timer re-armed at or before "now" from its own callback runs again at the next
 * iteration, after a poll, not again inside the same dispatch (it would starve fds). */
typedef struct Rearm {
    QsTimer *t;
    int runs, max;
    int polls_at_run[8];
} Rearm;

static int polls_seen;
static void count_poll(QsLoop *l, int timeout, void *o) { polls_seen++; }
static const QsEvloopObserver poll_counter = { .name = "poll-counter", .poll_begin = count_poll };

static void rearm_cb(void *opaque)
{
    Rearm *r = opaque;
    if (r->runs < 8) r->polls_at_run[r->runs] = polls_seen;
    if (++r->runs < r->max) {
        qs_timer_mod(r->t, r->runs % 2 ? 0 : qs_clock_get_ns(QS_CLOCK_REALTIME));
    }
}

static void test_realtime_rearm_due_next_iteration(void)
{
    QsLoop *m = qs_loop_main();
    GError *err = NULL;
    g_assert_true(qs_evloop_observer_add(&poll_counter, NULL, &err));
    g_assert_no_error(err);
    Rearm a = { .max = 1000 }, b = { .max = 1 };
    a.t = qs_timer_new(m, QS_CLOCK_REALTIME, "rearm-a", rearm_cb, &a);
    b.t = qs_timer_new(m, QS_CLOCK_REALTIME, "rearm-b", rearm_cb, &b);
    drain();
    int64_t now = qs_clock_get_ns(QS_CLOCK_REALTIME);
    qs_timer_mod(a.t, now - 1000);
    qs_timer_mod(b.t, now);
    /* one iteration: each due timer once (a's re-arming does not run it again) */
    while (!a.runs) qs_loop_iterate(m, true);
    g_assert_cmpint(a.runs, ==, 1);
    g_assert_cmpint(b.runs, ==, 1);
    g_assert_true(qs_timer_pending(a.t));
    /* every later run comes from its own iteration: a poll between runs.  (An iteration
     * on a loaded machine may also end without running it: no exact count of
     * iterations: 5 of 5 expected runs came in 5 iterations, not at a load of 8.) */
    for (int i = 0; i < 1000 && a.runs < 6; i++) qs_loop_iterate(m, false);
    g_assert_cmpint(a.runs, ==, 6);
    for (int i = 1; i < 6; i++) g_assert_cmpint(a.polls_at_run[i], >, a.polls_at_run[i - 1]);
    qs_evloop_observer_remove(&poll_counter);
    qs_timer_free(a.t);
    qs_timer_free(b.t);
}

typedef struct VTimer {
    QsTimer *t;
    const char *name;
    int64_t seen;          /* virtual time when it ran */
    int64_t rearm_delta;   /* re-arm this far ahead once */
} VTimer;

static void vtimer_cb(void *opaque)
{
    VTimer *v = opaque;
    v->seen = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    note(v->name);
    if (v->rearm_delta) {
        int64_t d = v->rearm_delta;
        v->rearm_delta = 0;
        qs_timer_mod(v->t, v->seen + d);
    }
}

static void test_virtual_manual(void)
{
    QsLoop *m = qs_loop_main();
    qs_clock_set_manual(true);
    g_assert_true(qs_clock_is_manual());
    int64_t base = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    g_usleep(2000);
    g_assert_cmpint(qs_clock_get_ns(QS_CLOCK_VIRTUAL), ==, base);   /* frozen */

    VTimer a = { .name = "a" }, b = { .name = "b" }, c = { .name = "c" };
    a.t = qs_timer_new(m, QS_CLOCK_VIRTUAL, "va", vtimer_cb, &a);
    b.t = qs_timer_new(m, QS_CLOCK_VIRTUAL, "vb", vtimer_cb, &b);
    c.t = qs_timer_new(m, QS_CLOCK_VIRTUAL, "vc", vtimer_cb, &c);
    g_assert_cmpint(qs_clock_next_deadline(QS_CLOCK_VIRTUAL), ==, -1);
    qs_timer_mod(c.t, base + 300);
    qs_timer_mod(a.t, base + 100);
    qs_timer_mod(b.t, base + 200);
    b.rearm_delta = 50;            /* b runs again at base+250, before c */
    g_assert_cmpint(qs_clock_next_deadline(QS_CLOCK_VIRTUAL), ==, base + 100);

    reset_trace();
    drain();                       /* the loop never fires virtual timers in manual mode */
    g_assert_cmpstr(trace->str, ==, "");

    g_assert_cmpint(qs_clock_step(150), ==, base + 150);
    g_assert_cmpstr(trace->str, ==, "a");
    g_assert_cmpint(a.seen, ==, base + 100);   /* callbacks see their deadline */
    g_assert_cmpint(qs_clock_next_deadline(QS_CLOCK_VIRTUAL), ==, base + 200);

    g_assert_cmpint(qs_clock_step(1000), ==, base + 1150);
    g_assert_cmpstr(trace->str, ==, "a b b c");
    g_assert_cmpint(b.seen, ==, base + 250);
    g_assert_cmpint(c.seen, ==, base + 300);
    g_assert_cmpint(qs_clock_next_deadline(QS_CLOCK_VIRTUAL), ==, -1);

    /* clock_set: to an absolute time; into the past does nothing */
    qs_timer_mod(a.t, base + 5000);
    g_assert_cmpint(qs_clock_set(base + 4999), ==, base + 4999);
    g_assert_cmpstr(trace->str, ==, "a b b c");
    g_assert_cmpint(qs_clock_set(base + 10), ==, base + 4999);
    g_assert_cmpint(qs_clock_set(base + 6000), ==, base + 6000);
    g_assert_cmpstr(trace->str, ==, "a b b c a");

    /* equal deadlines run in arm order */
    reset_trace();
    int64_t now = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    qs_timer_mod(c.t, now + 10);
    qs_timer_mod(a.t, now + 10);
    qs_clock_step(10);
    g_assert_cmpstr(trace->str, ==, "c a");

    /* an iothread's virtual timer also runs on step, in the stepping thread */
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("io-vt", &err);
    g_assert_no_error(err);
    VTimer d = { .name = "d" };
    d.t = qs_timer_new(io, QS_CLOCK_VIRTUAL, "vd", vtimer_cb, &d);
    qs_timer_mod(d.t, qs_clock_get_ns(QS_CLOCK_VIRTUAL) + 7);
    reset_trace();
    qs_clock_step(7);
    g_assert_cmpstr(trace->str, ==, "d");
    qs_timer_free(d.t);
    qs_iothread_free(io);

    qs_timer_free(a.t);
    qs_timer_free(b.t);
    qs_timer_free(c.t);
    qs_clock_set_manual(false);
}

static int vfollow_fired;
static void vfollow_cb(void *opaque) { g_atomic_int_set(&vfollow_fired, 1); }

static void test_virtual_follows_runstate(void)
{
    /* Not manual: virtual time moves only while running, and timers fire from the loop. */
    qs_vm_stop();
    int64_t v0 = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    g_usleep(3000);
    g_assert_cmpint(qs_clock_get_ns(QS_CLOCK_VIRTUAL), ==, v0);
    QsTimer *t = qs_timer_new(qs_loop_main(), QS_CLOCK_VIRTUAL, "vfollow", vfollow_cb, NULL);
    qs_timer_mod(t, v0 + 2000000);
    g_usleep(5000);
    drain();
    g_assert_false(g_atomic_int_get(&vfollow_fired));   /* paused: no virtual time passed */
    qs_vm_start();
    g_assert_true(qs_runstate_is_running());
    wait_for(&vfollow_fired, 5000);
    g_assert_true(vfollow_fired);
    g_assert_cmpint(qs_clock_get_ns(QS_CLOCK_VIRTUAL), >=, v0 + 2000000);
    qs_timer_free(t);
}

/* ---- iothreads ---- */

typedef struct IoCtx {
    QsLoop *loop;
    int ran_in_thread;
    int done;
} IoCtx;

static void io_bh(void *opaque)
{
    IoCtx *c = opaque;
    c->ran_in_thread = qs_loop_in_thread(c->loop) && !qs_loop_in_thread(qs_loop_main());
    g_atomic_int_set(&c->done, 1);
}

static void io_timer(void *opaque) { io_bh(opaque); }

static void test_iothread(void)
{
    GError *err = NULL;
    IoCtx c = { 0 };
    c.loop = qs_iothread_new("io-test", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(qs_loop_name(c.loop), ==, "io-test");
    g_assert_cmpint(qs_loop_tid(c.loop), >, 0);
    g_assert_cmpint(qs_loop_tid(c.loop), !=, qs_loop_tid(qs_loop_main()));

    QsBH *bh = qs_bh_new(c.loop, "io-bh", io_bh, &c);
    qs_bh_schedule(bh);                      /* from another thread: wakes its poll */
    for (int i = 0; i < 5000 && !g_atomic_int_get(&c.done); i++) g_usleep(1000);
    g_assert_true(c.done);
    g_assert_true(c.ran_in_thread);

    c.done = c.ran_in_thread = 0;
    QsTimer *t = qs_timer_new(c.loop, QS_CLOCK_REALTIME, "io-timer", io_timer, &c);
    qs_timer_mod(t, qs_clock_get_ns(QS_CLOCK_REALTIME) + 1000000);
    for (int i = 0; i < 5000 && !g_atomic_int_get(&c.done); i++) g_usleep(1000);
    g_assert_true(c.done);
    g_assert_true(c.ran_in_thread);

    c.done = 0;
    qs_loop_call(c.loop, "io-call", io_bh, &c);
    for (int i = 0; i < 5000 && !g_atomic_int_get(&c.done); i++) g_usleep(1000);
    g_assert_true(c.done);

    qs_timer_free(t);
    qs_bh_free(bh);
    qs_iothread_free(c.loop);

    g_assert_null(qs_iothread_new("", &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "iothread without a name"));
    g_clear_error(&err);
}

/* ---- observers ---- */

typedef struct Seen {
    GMutex lock;
    GPtrArray *events;   /* "begin:NAME:KIND:LOOP" / "end:..." */
    int polls_begin, polls_end;
    int loops_added, loops_removed;
} Seen;

static void seen_add(Seen *s, const char *what, const QsSourceInfo *src)
{
    g_mutex_lock(&s->lock);
    g_ptr_array_add(s->events, g_strdup_printf("%s:%s:%s:%s", what, src->name,
                                               qs_source_kind_name(src->kind),
                                               qs_loop_name(src->loop)));
    g_mutex_unlock(&s->lock);
}

static void ob_begin(const QsSourceInfo *src, void *o) { seen_add(o, "begin", src); }
static void ob_end(const QsSourceInfo *src, void *o) { seen_add(o, "end", src); }
static void ob_poll_begin(QsLoop *l, int timeout, void *o) { g_atomic_int_inc(&((Seen *)o)->polls_begin); }
static void ob_poll_end(QsLoop *l, void *o) { g_atomic_int_inc(&((Seen *)o)->polls_end); }
static void count_loop(const QsLoopDesc *d, void *opaque);
static void ob_added(QsLoop *l, void *o)
{
    /* callbacks may enumerate loops (no registry lock is held while they run) */
    GString *s = g_string_new(NULL);
    qs_loop_foreach(count_loop, s);
    g_assert_nonnull(strstr(s->str, qs_loop_name(l)));
    g_string_free(s, TRUE);
    ((Seen *)o)->loops_added++;
}
static void ob_removed(QsLoop *l, void *o) { ((Seen *)o)->loops_removed++; }

static const QsEvloopObserver test_observer = {
    .name = "test-observer",
    .dispatch_begin = ob_begin, .dispatch_end = ob_end,
    .poll_begin = ob_poll_begin, .poll_end = ob_poll_end,
    .loop_added = ob_added, .loop_removed = ob_removed,
};

static bool seen_has(Seen *s, const char *ev)
{
    g_mutex_lock(&s->lock);
    bool r = false;
    for (guint i = 0; i < s->events->len && !r; i++) r = !strcmp(s->events->pdata[i], ev);
    g_mutex_unlock(&s->lock);
    return r;
}

static bool idle_once(void *opaque) { note("idle"); return false; }

static void count_loop(const QsLoopDesc *d, void *opaque)
{
    GString *s = opaque;
    g_string_append_printf(s, "%s%s:%d:%s", s->len ? " " : "", d->name, d->tid > 0,
                           d->is_main ? "main" : "io");
}

static void test_observers(void)
{
    Seen s = { .events = g_ptr_array_new_with_free_func(g_free) };
    g_mutex_init(&s.lock);
    GError *err = NULL;
    QsLoop *m = qs_loop_main();
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    g_assert_true(qs_evloop_observer_add(&test_observer, &s, &err));
    g_assert_no_error(err);
    g_assert_cmpint(qs_evloop_g.n, ==, 1);
    /* a second registration under the same name is refused */
    g_assert_false(qs_evloop_observer_add(&test_observer, &s, &err));
    g_assert_nonnull(strstr(err->message, "'test-observer' is already registered"));
    g_clear_error(&err);

    QsBH *bh = qs_bh_new(m, "obs-bh", bh_note, "obs-bh");
    QsTimer *t = qs_timer_new(m, QS_CLOCK_REALTIME, "obs-timer", timer_note, "obs-timer");
    QsIdle *idle = qs_idle_new(m, "obs-idle", idle_once, NULL);
    int p[2];
    g_assert_cmpint(pipe(p), ==, 0);
    QsFdHandler *fh = qs_fd_handler_new(m, "obs-fd", p[0], G_IO_IN, fd_note, "obs-fd");
    qs_bh_schedule(bh);
    qs_timer_mod(t, 0);
    g_assert_cmpint(write(p[1], "x", 1), ==, 1);
    drain();
    g_assert_true(seen_has(&s, "begin:obs-bh:bh:main"));
    g_assert_true(seen_has(&s, "end:obs-bh:bh:main"));
    g_assert_true(seen_has(&s, "begin:obs-timer:timer:main"));
    g_assert_true(seen_has(&s, "end:obs-timer:timer:main"));
    g_assert_true(seen_has(&s, "begin:obs-fd:fd:main"));
    g_assert_true(seen_has(&s, "begin:obs-idle:idle:main"));
    g_assert_cmpint(s.polls_begin, >, 0);
    g_assert_cmpint(s.polls_begin, ==, s.polls_end);
    /* begin/end pairs bracket each dispatch: begin immediately followed by its end */
    for (guint i = 0; i + 1 < s.events->len; i += 2) {
        const char *b = s.events->pdata[i], *e = s.events->pdata[i + 1];
        g_assert_true(g_str_has_prefix(b, "begin:"));
        g_assert_cmpstr(b + 6, ==, e + 4);
    }

    /* iothreads: life-cycle callbacks, their dispatches carry their loop */
    QsLoop *io = qs_iothread_new("io-obs", &err);
    g_assert_no_error(err);
    g_assert_cmpint(s.loops_added, ==, 1);
    GString *ls = g_string_new(NULL);
    qs_loop_foreach(count_loop, ls);
    g_assert_cmpstr(ls->str, ==, "main:1:main io-obs:1:io");
    g_string_free(ls, TRUE);
    IoCtx c = { .loop = io };
    qs_loop_call(io, "io-obs-call", io_bh, &c);
    for (int i = 0; i < 5000 && !g_atomic_int_get(&c.done); i++) g_usleep(1000);
    for (int i = 0; i < 5000 && !seen_has(&s, "end:io-obs-call:bh:io-obs"); i++) g_usleep(1000);
    g_assert_true(seen_has(&s, "begin:io-obs-call:bh:io-obs"));
    qs_iothread_free(io);
    g_assert_cmpint(s.loops_removed, ==, 1);

    /* after removal nothing more arrives */
    qs_evloop_observer_remove(&test_observer);
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    guint n = s.events->len;
    int polls = s.polls_begin;
    qs_bh_schedule(bh);
    drain();
    g_assert_cmpint(s.events->len, ==, n);
    g_assert_cmpint(s.polls_begin, ==, polls);

    qs_fd_handler_free(fh);
    qs_idle_free(idle);
    qs_timer_free(t);
    qs_bh_free(bh);
    close(p[0]);
    close(p[1]);
    g_ptr_array_free(s.events, TRUE);
    g_mutex_clear(&s.lock);
}

/* Removal waits for a callback running in another thread to finish. */
static int slow_in, slow_out;
static void slow_begin(const QsSourceInfo *src, void *o)
{
    if (strcmp(src->name, "slow-bh")) return;
    g_atomic_int_set(&slow_in, 1);
    g_usleep(100000);
    g_atomic_int_set(&slow_out, 1);
}
static const QsEvloopObserver slow_observer = { .name = "slow", .dispatch_begin = slow_begin };

static void nop(void *opaque) { }

static void test_observer_remove_waits(void)
{
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("io-slow", &err);
    g_assert_no_error(err);
    g_assert_true(qs_evloop_observer_add(&slow_observer, NULL, &err));
    qs_loop_call(io, "slow-bh", nop, NULL);
    while (!g_atomic_int_get(&slow_in)) g_usleep(1000);
    qs_evloop_observer_remove(&slow_observer);
    g_assert_true(g_atomic_int_get(&slow_out));
    qs_iothread_free(io);
}

/* Removal under load: an iothread dispatches bottom halves non-stop while the main thread
 * adds and removes an observer whose state is freed (and poisoned) right after removal.
 * A callback running after qs_evloop_observer_remove returned is counted (and ASan sees
 * the use after free). */
typedef struct Stress {
    int magic;          /* 0x5eed while live */
    int calls;
} Stress;

static int stress_late, stress_inside;

static void stress_cb(const QsSourceInfo *src, void *o)
{
    Stress *st = o;
    g_atomic_int_inc(&stress_inside);
    if (g_atomic_int_get(&st->magic) != 0x5eed) g_atomic_int_inc(&stress_late);
    g_atomic_int_inc(&st->calls);
    if ((st->calls & 63) == 0) g_usleep(50);   /* sometimes be caught inside */
    if (g_atomic_int_get(&st->magic) != 0x5eed) g_atomic_int_inc(&stress_late);
    g_atomic_int_add(&stress_inside, -1);
}

static void stress_poll(QsLoop *l, int timeout, void *o) { stress_cb(NULL, o); }
static void stress_poll_end(QsLoop *l, void *o) { stress_cb(NULL, o); }

static const QsEvloopObserver stress_observer = {
    .name = "stress", .dispatch_begin = stress_cb, .dispatch_end = stress_cb,
    .poll_begin = stress_poll, .poll_end = stress_poll_end,
};

typedef struct Spinner {
    QsBH *bh;
    int stop;
} Spinner;

static void spin_bh(void *opaque)
{
    Spinner *sp = opaque;
    if (!g_atomic_int_get(&sp->stop)) qs_bh_schedule(sp->bh);
}

static void stress_remove(void)
{
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("io-stress", &err);
    g_assert_no_error(err);
    Spinner sp = { 0 };
    sp.bh = qs_bh_new(io, "spin", spin_bh, &sp);
    qs_bh_schedule(sp.bh);
    stress_late = 0;
    int total = 0;
    for (int i = 0; i < 300; i++) {
        Stress *st = g_new0(Stress, 1);
        st->magic = 0x5eed;
        g_assert_true(qs_evloop_observer_add(&stress_observer, st, &err));
        g_assert_no_error(err);
        for (int w = 0; w < 2000 && g_atomic_int_get(&st->calls) < 4; w++) g_usleep(10);
        qs_evloop_observer_remove(&stress_observer);
        g_assert_cmpint(g_atomic_int_get(&stress_inside), ==, 0);
        g_atomic_int_set(&st->magic, 0);
        total += g_atomic_int_get(&st->calls);
        memset(st, 0xa5, sizeof(*st));
        g_free(st);
    }
    g_assert_cmpint(g_atomic_int_get(&stress_late), ==, 0);
    g_assert_cmpint(total, >=, 300 * 4 / 2);   /* the observer did run */
    g_atomic_int_set(&sp.stop, 1);
    qs_loop_call(io, "wake", nop, NULL);
    qs_iothread_free(io);
    qs_bh_free(sp.bh);
}

static void test_observer_remove_stress(void)
{
    stress_remove();
}

/* The same without membarrier(2): readers fence their own entry. */
static void test_observer_remove_stress_fenced(void)
{
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    bool saved = qs_evloop_obs_fenced;
    qs_evloop_obs_fenced = true;
    stress_remove();
    qs_evloop_obs_fenced = saved;
}

/* A module that registers an observer and then fails init leaves none behind; one that
 * registers without declaring it is refused. */
static void test_observer_module_rollback(void)
{
    const char *dir = g_getenv("QS_TEST_LOOP_MODULE_DIR");
    g_assert_nonnull(dir);
    g_autofree char *fail = g_build_filename(dir, "test-observer-fail.so", NULL);
    g_autofree char *undecl = g_build_filename(dir, "test-observer-undeclared.so", NULL);
    g_autofree char *good = g_build_filename(dir, "test-observer-good.so", NULL);
    GError *err = NULL;

    g_assert_false(qs_module_load(fail, &err));
    g_assert_nonnull(strstr(err->message, "observer test: init fails on purpose"));
    g_clear_error(&err);
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    drain();   /* would call into the unloaded module if the observer were left */

    g_assert_false(qs_module_load(undecl, &err));
    g_assert_nonnull(strstr(err->message, "without declaring \"observer:test-undeclared\""));
    g_clear_error(&err);
    g_assert_cmpint(qs_evloop_g.n, ==, 0);

    g_assert_true(qs_module_load(good, &err));
    g_assert_no_error(err);
    g_assert_cmpint(qs_evloop_g.n, ==, 1);
    qs_loop_call(qs_loop_main(), "after-good", nop, NULL);
    drain();
    qs_module_unload_all();
    g_assert_cmpint(qs_evloop_g.n, ==, 0);
    drain();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    trace = g_string_new(NULL);
    qs_evloop_init();
    qs_runstate_start(false);
    g_test_add_func("/evloop/order", test_order);
    g_test_add_func("/evloop/timer/realtime-rearm", test_realtime_rearm);
    g_test_add_func("/evloop/timer/precise-wakeup", test_realtime_precise_wakeup);
    g_test_add_func("/evloop/timer/rearm-due-next-iteration", test_realtime_rearm_due_next_iteration);
    g_test_add_func("/evloop/timer/virtual-manual", test_virtual_manual);
    g_test_add_func("/evloop/timer/virtual-runstate", test_virtual_follows_runstate);
    g_test_add_func("/evloop/iothread", test_iothread);
    g_test_add_func("/evloop/observer/hooks", test_observers);
    g_test_add_func("/evloop/observer/remove-waits", test_observer_remove_waits);
    g_test_add_func("/evloop/observer/remove-stress", test_observer_remove_stress);
    g_test_add_func("/evloop/observer/remove-stress-fenced", test_observer_remove_stress_fenced);
    g_test_add_func("/evloop/observer/module-rollback", test_observer_module_rollback);
    return g_test_run();
}
