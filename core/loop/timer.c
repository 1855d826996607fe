/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Clocks and timers: realtime (CLOCK_MONOTONIC) and virtual (follows realtime while the
 * VM runs, frozen while paused, moved only by qs_clock_step in manual/qtest mode). */
#include <time.h>
#include "loop-internal.h"

/* One GSource per (loop, clock) dispatches that loop's due timers in deadline order. */
typedef struct TimerList {
    GSource gs;
    QsLoop *loop;
    QsClockType clock;
} TimerList;

struct QsTimer {
    ObsSource os;
    TimerList *list;
    int refs;            /* under lock: the owner's, plus one while firing */
    int64_t expire;      /* -1: disarmed; under lock */
    uint64_t seq;        /* arm order, breaks deadline ties */
    QsTimerFunc cb;
    void *opaque;
};

static GMutex lock;           /* everything below and every timer's expire/seq */
static GPtrArray *timers;     /* QsTimer *, all live timers */
static uint64_t arm_seq;
static bool manual;           /* virtual clock moves only by step/set */
static bool vm_running;       /* virtual clock follows realtime */
static int64_t vclock;        /* virtual time while frozen (manual or paused) */
static int64_t voffset;       /* while following: virtual = realtime - voffset */

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t virtual_ns_locked(void)
{
    return manual || !vm_running ? vclock : realtime_ns() - voffset;
}

int64_t qs_clock_get_ns(QsClockType clock)
{
    if (clock == QS_CLOCK_REALTIME) return realtime_ns();
    g_mutex_lock(&lock);
    int64_t v = virtual_ns_locked();
    g_mutex_unlock(&lock);
    return v;
}

/* Earliest armed timer on clock (and in list, if given) with expire <= limit (limit < 0:
 * any) armed no later than max_seq, or NULL.  Called with lock held. */
static QsTimer *earliest_locked(QsClockType clock, TimerList *list, int64_t limit,
                                uint64_t max_seq)
{
    QsTimer *best = NULL;
    for (guint i = 0; timers && i < timers->len; i++) {
        QsTimer *t = timers->pdata[i];
        if (t->list->clock != clock || t->expire < 0) continue;
        if (list && t->list != list) continue;
        if (limit >= 0 && t->expire > limit) continue;
        if (t->seq > max_seq) continue;
        if (!best || t->expire < best->expire ||
            (t->expire == best->expire && t->seq < best->seq)) {
            best = t;
        }
    }
    return best;
}

/* Set a list's GLib ready time (monotonic us) from its earliest deadline; -1 when
 * nothing may fire from the loop.  Called with lock held. */
static void rearm_locked(TimerList *l)
{
    QsTimer *t = earliest_locked(l->clock, l, -1, UINT64_MAX);
    int64_t ready = -1;
    if (t && l->clock == QS_CLOCK_REALTIME) {
        ready = (t->expire + 999) / 1000;
    } else if (t && !manual && vm_running) {
        int64_t rt = t->expire > G_MAXINT64 - voffset ? G_MAXINT64 - 999 : t->expire + voffset;
        ready = rt < 0 ? 0 : (rt + 999) / 1000;
    }
    g_source_set_ready_time(&l->gs, ready);
}

static void rearm_virtual_locked(void)
{
    /* Each virtual list once is enough; re-setting the same ready time is cheap. */
    for (guint i = 0; timers && i < timers->len; i++) {
        QsTimer *t = timers->pdata[i];
        if (t->list->clock == QS_CLOCK_VIRTUAL) rearm_locked(t->list);
    }
}

void qs_clock_set_manual(bool on)
{
    g_mutex_lock(&lock);
    if (on != manual) {
        if (on) {
            vclock = virtual_ns_locked();
        } else {
            voffset = realtime_ns() - vclock;
        }
        manual = on;
        rearm_virtual_locked();
    }
    g_mutex_unlock(&lock);
}

bool qs_clock_is_manual(void)
{
    g_mutex_lock(&lock);
    bool m = manual;
    g_mutex_unlock(&lock);
    return m;
}

void qs_clock_vm_running(bool running)
{
    g_mutex_lock(&lock);
    if (running != vm_running) {
        if (!manual) {
            if (running) voffset = realtime_ns() - vclock;
            else vclock = realtime_ns() - voffset;
        }
        vm_running = running;
        rearm_virtual_locked();
    }
    g_mutex_unlock(&lock);
}

int64_t qs_clock_next_deadline(QsClockType clock)
{
    g_mutex_lock(&lock);
    QsTimer *t = earliest_locked(clock, NULL, -1, UINT64_MAX);
    int64_t d = t ? t->expire : -1;
    g_mutex_unlock(&lock);
    return d;
}

static void timer_unref_locked(QsTimer *t)
{
    if (--t->refs == 0) {
        qs_obs_source_clear(&t->os);
        g_free(t);
    }
}

/* Fire t (already disarmed) for the loop `run` whose thread calls (NULL: none), with
 * lock held on entry and exit. */
static void timer_fire_locked(QsTimer *t, QsLoop *run)
{
    t->refs++;
    g_mutex_unlock(&lock);
    uint64_t tok = obs_begin(&t->os, run);
    t->cb(t->opaque);
    obs_end(&t->os, run, tok);
    g_mutex_lock(&lock);
    timer_unref_locked(t);
}

int64_t qs_clock_step(int64_t ns)
{
    g_mutex_lock(&lock);
    if (!manual || ns < 0) {
        int64_t v = virtual_ns_locked();
        g_mutex_unlock(&lock);
        return v;
    }
    int64_t target = vclock > G_MAXINT64 - ns ? G_MAXINT64 : vclock + ns;
    QsLoop *run = qs_loop_running();    /* the timers run in this thread, for its loop */
    QsTimer *t;
    while ((t = earliest_locked(QS_CLOCK_VIRTUAL, NULL, target, UINT64_MAX))) {
        if (t->expire > vclock) vclock = t->expire;
        t->expire = -1;
        timer_fire_locked(t, run);
    }
    vclock = target;
    g_mutex_unlock(&lock);
    return target;
}

int64_t qs_clock_set(int64_t ns)
{
    int64_t now = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    return qs_clock_step(ns > now ? ns - now : 0);
}

/* ---- timers ---- */

/* Runs the timers that were due when the dispatch began.  A timer (re-)armed by one of
 * their callbacks, even in the past, waits for the next iteration: the loop polls in
 * between, so a timer re-arming itself as due cannot keep the loop from its fds. */
static gboolean list_dispatch(GSource *gs, GSourceFunc unused, gpointer data)
{
    TimerList *l = (TimerList *)gs;
    g_mutex_lock(&lock);
    if (l->clock == QS_CLOCK_REALTIME || (!manual && vm_running)) {
        int64_t now = l->clock == QS_CLOCK_REALTIME ? realtime_ns() : virtual_ns_locked();
        uint64_t armed_before = arm_seq;
        QsTimer *t;
        while ((t = earliest_locked(l->clock, l, now, armed_before))) {
            t->expire = -1;
            timer_fire_locked(t, l->loop);
        }
    }
    rearm_locked(l);
    g_mutex_unlock(&lock);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs list_funcs = { .dispatch = list_dispatch };

int64_t qs_timer_loop_wait_ns(QsLoop *loop, int timeout_ms)
{
    int64_t ready = -1;    /* monotonic us, as GLib keeps it */
    for (int c = 0; c < 2; c++) {
        GSource *gs = loop->timer_lists[c];
        int64_t r = gs ? g_source_get_ready_time(gs) : -1;
        if (r >= 0 && (ready < 0 || r < ready)) ready = r;
    }
    if (ready < 0) return -1;
    int64_t wait = ready > G_MAXINT64 / 1000 ? G_MAXINT64 : ready * 1000 - realtime_ns();
    if (wait < 0) wait = 0;
    if (timeout_ms >= 0 && wait >= (int64_t)timeout_ms * 1000000) return -1;
    return wait;
}

static TimerList *list_get_locked(QsLoop *loop, QsClockType clock)
{
    if (!loop->timer_lists[clock]) {
        TimerList *l = (TimerList *)g_source_new(&list_funcs, sizeof(TimerList));
        l->loop = loop;
        l->clock = clock;
        g_source_set_name(&l->gs, clock == QS_CLOCK_REALTIME ? "timers-realtime"
                                                             : "timers-virtual");
        g_source_attach(&l->gs, qs_loop_context(loop));
        loop->timer_lists[clock] = &l->gs;
    }
    return (TimerList *)loop->timer_lists[clock];
}

void qs_timer_loop_cleanup(QsLoop *loop)
{
    g_mutex_lock(&lock);
    for (int c = 0; c < 2; c++) {
        GSource *gs = loop->timer_lists[c];
        if (!gs) continue;
        for (guint i = 0; timers && i < timers->len; i++) {
            QsTimer *t = timers->pdata[i];
            if (&t->list->gs == gs) t->expire = -1;
        }
        g_source_destroy(gs);
        g_source_unref(gs);   /* timers still referencing it keep it until freed */
        loop->timer_lists[c] = NULL;
    }
    g_mutex_unlock(&lock);
}

QsTimer *qs_timer_new(QsLoop *loop, QsClockType clock, const char *name, QsTimerFunc cb,
                      void *opaque)
{
    QsTimer *t = g_new0(QsTimer, 1);
    qs_obs_source_init(&t->os, loop, name, QS_SOURCE_TIMER);
    t->refs = 1;
    t->expire = -1;
    t->cb = cb;
    t->opaque = opaque;
    g_mutex_lock(&lock);
    t->list = list_get_locked(loop, clock == QS_CLOCK_VIRTUAL ? QS_CLOCK_VIRTUAL
                                                              : QS_CLOCK_REALTIME);
    g_source_ref(&t->list->gs);
    if (!timers) timers = g_ptr_array_new();
    g_ptr_array_add(timers, t);
    g_mutex_unlock(&lock);
    return t;
}

void qs_timer_mod(QsTimer *t, int64_t expire_ns)
{
    g_mutex_lock(&lock);
    t->expire = expire_ns < 0 ? 0 : expire_ns;
    t->seq = ++arm_seq;
    rearm_locked(t->list);
    g_mutex_unlock(&lock);
}

void qs_timer_del(QsTimer *t)
{
    g_mutex_lock(&lock);
    t->expire = -1;
    rearm_locked(t->list);
    g_mutex_unlock(&lock);
}

bool qs_timer_pending(QsTimer *t)
{
    return qs_timer_expire_ns(t) >= 0;
}

int64_t qs_timer_expire_ns(QsTimer *t)
{
    g_mutex_lock(&lock);
    int64_t e = t->expire;
    g_mutex_unlock(&lock);
    return e;
}

void qs_timer_free(QsTimer *t)
{
    if (!t) return;
    g_mutex_lock(&lock);
    t->expire = -1;
    g_ptr_array_remove_fast(timers, t);
    rearm_locked(t->list);
    GSource *gs = &t->list->gs;
    timer_unref_locked(t);
    g_mutex_unlock(&lock);
    g_source_unref(gs);
}
