/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The event loop API modules use: loops (the main loop and iothreads), fd handlers,
 * timers on the realtime and virtual clocks, bottom halves, idle handlers, observers. */
#ifndef QS_EVLOOP_H
#define QS_EVLOOP_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Model.  A QsLoop is one GMainContext run by one thread: the main loop (run by main()
 * through qs_main_loop_run) or an iothread (qs_iothread_new: its own thread, its own
 * context).  Every source created here belongs to one loop, has a name (copied) and a
 * kind, and its callback runs in that loop's thread.
 *
 * Ordering within one loop: a scheduled bottom half runs before any fd handler or timer
 * that is ready in the same iteration (bottom halves have a higher priority); ready fd
 * handlers run in the order they were created; a loop's due timers on one clock run
 * together, in deadline order (equal deadlines: in the order they were armed), at the
 * place of that loop's first timer on that clock (a timer armed by one of their
 * callbacks, even for a time already past, runs at the next iteration, after a poll);
 * idle handlers run only when nothing else is ready.  Timers wake a sleeping loop at
 * their deadline with ns precision (not rounded to GLib's milliseconds).
 *
 * Thread safety: qs_bh_schedule, qs_loop_call, qs_timer_mod/qs_timer_del and the clock
 * functions may be called from any thread.  Creating and freeing sources may be done
 * from any thread, but freeing a source while its callback runs in another thread is the
 * caller's race to avoid (free it from its own loop, e.g. from a bottom half).
 */

typedef struct QsLoop QsLoop;

typedef enum QsSourceKind {
    QS_SOURCE_FD,
    QS_SOURCE_TIMER,
    QS_SOURCE_BH,
    QS_SOURCE_IDLE,
    QS_SOURCE_OTHER,
} QsSourceKind;

/* "fd", "timer", "bh", "idle", "other". */
const char *qs_source_kind_name(QsSourceKind kind);

/* What observers see of a source.  `id` is unique for the process's lifetime and never
 * reused; `name` is valid until the source is freed (copy it to keep it longer). */
typedef struct QsSourceInfo {
    uint64_t id;
    const char *name;
    QsSourceKind kind;
    QsLoop *loop;
} QsSourceInfo;

/* ---- loops ---- */

/* The main loop (created on first use). */
QsLoop *qs_loop_main(void);
/* A new iothread named `name`, already running its loop in its own thread. */
QsLoop *qs_iothread_new(const char *name, GError **errp);
/* Stop the iothread's loop, join its thread, free it.  Its sources must be freed first
 * (or be freed by the caller afterwards: they are detached, never run again). */
void qs_iothread_free(QsLoop *loop);

const char *qs_loop_name(const QsLoop *loop);
/* The loop's GMainContext, to attach plain GSources (they are not observed). */
GMainContext *qs_loop_context(QsLoop *loop);
/* Linux thread id of the loop's thread (0 if the main loop is not running yet). */
int qs_loop_tid(const QsLoop *loop);
/* True when called from the thread running `loop`. */
bool qs_loop_in_thread(const QsLoop *loop);
/* Run one iteration of a loop that nobody else runs (tests, or main before
 * qs_main_loop_run); returns whether anything was dispatched. */
bool qs_loop_iterate(QsLoop *loop, bool may_block);

/* Loop enumeration (e.g. for a profiler): calls fn for every live loop, main loop first,
 * under the registry lock (do not create or free loops from fn). */
typedef struct QsLoopDesc {
    QsLoop *loop;
    const char *name;
    int tid;
    bool is_main;
} QsLoopDesc;
void qs_loop_foreach(void (*fn)(const QsLoopDesc *desc, void *opaque), void *opaque);

/* ---- fd handlers ---- */

typedef struct QsFdHandler QsFdHandler;
/* cond is the G_IO_* set that fired (G_IO_IN, G_IO_OUT, G_IO_HUP, G_IO_ERR). */
typedef void (*QsFdFunc)(int fd, GIOCondition cond, void *opaque);

/* Watch fd for `events` (G_IO_IN and/or G_IO_OUT; HUP and ERR are always reported).
 * The fd stays owned by the caller. */
QsFdHandler *qs_fd_handler_new(QsLoop *loop, const char *name, int fd, GIOCondition events,
                               QsFdFunc cb, void *opaque);
void qs_fd_handler_set_events(QsFdHandler *h, GIOCondition events);
void qs_fd_handler_free(QsFdHandler *h);

/* ---- clocks ---- */

typedef enum QsClockType {
    QS_CLOCK_REALTIME,   /* CLOCK_MONOTONIC in ns; always moves */
    QS_CLOCK_VIRTUAL,    /* guest time in ns from 0: follows realtime while the VM runs,
                          * stands still while it is paused; in manual mode (qtest) it
                          * moves only through qs_clock_step / qs_clock_set */
} QsClockType;

int64_t qs_clock_get_ns(QsClockType clock);

/* Manual mode for the virtual clock (qtest): the clock freezes at its current value and
 * virtual timers no longer fire from their loops; only qs_clock_step/qs_clock_set move
 * time, and they run the due timers synchronously. */
void qs_clock_set_manual(bool manual);
bool qs_clock_is_manual(void);

/* Advance the virtual clock by ns (>= 0) / to ns (ignored when in the past), running
 * every virtual timer that falls due on the way in deadline order, in the calling thread
 * (timers armed by those callbacks run too if they fall due within the step).  Returns
 * the new virtual time.  Only in manual mode; otherwise they return the time unchanged.
 * This is what qtest's clock_step/clock_set do. */
int64_t qs_clock_step(int64_t ns);
int64_t qs_clock_set(int64_t ns);

/* Earliest deadline of an armed timer on that clock, or -1 if none (qtest's
 * "clock_step" without argument steps to it). */
int64_t qs_clock_next_deadline(QsClockType clock);

/* ---- timers ---- */

typedef struct QsTimer QsTimer;
typedef void (*QsTimerFunc)(void *opaque);

/* A one-shot timer on `clock`, disarmed.  The callback runs in `loop`'s thread (virtual
 * timers in manual mode run in the thread that calls qs_clock_step). */
QsTimer *qs_timer_new(QsLoop *loop, QsClockType clock, const char *name, QsTimerFunc cb,
                      void *opaque);
/* Arm (or re-arm) to fire when the clock reaches expire_ns (absolute, on the timer's
 * clock).  May be called from the callback to make a periodic timer. */
void qs_timer_mod(QsTimer *t, int64_t expire_ns);
/* Disarm. */
void qs_timer_del(QsTimer *t);
bool qs_timer_pending(QsTimer *t);
/* Deadline of an armed timer, -1 when disarmed. */
int64_t qs_timer_expire_ns(QsTimer *t);
void qs_timer_free(QsTimer *t);

/* ---- bottom halves ---- */

typedef struct QsBH QsBH;
typedef void (*QsBHFunc)(void *opaque);

QsBH *qs_bh_new(QsLoop *loop, const char *name, QsBHFunc cb, void *opaque);
/* Run cb once, soon, in the loop's thread.  Any thread; scheduling an already scheduled
 * bottom half does nothing (it runs once). */
void qs_bh_schedule(QsBH *bh);
void qs_bh_cancel(QsBH *bh);
void qs_bh_free(QsBH *bh);

/* One-shot: run cb(opaque) once in loop's thread (any thread may call).  The source is
 * observed as a bottom half named `name`. */
void qs_loop_call(QsLoop *loop, const char *name, QsBHFunc cb, void *opaque);

/* ---- idle ---- */

typedef struct QsIdle QsIdle;
/* Return false to stop being called (the handler is then inactive until freed). */
typedef bool (*QsIdleFunc)(void *opaque);
QsIdle *qs_idle_new(QsLoop *loop, const char *name, QsIdleFunc cb, void *opaque);
void qs_idle_free(QsIdle *idle);

/* ---- observers ---- */

/*
 * An observer sees every iteration of every loop: poll_begin/poll_end around the wait
 * for events (time between them is time blocked; timeout_ms is -1 for "until an event"),
 * dispatch_begin/dispatch_end around every observed source's callback.  Callbacks run in
 * the loop's thread, concurrently from several loops: keep them short and thread-safe
 * (per-thread data or atomics).  Any callback may be NULL.
 *
 * An observer added while a dispatch is in progress may see its dispatch_end without
 * dispatch_begin.  When qs_evloop_observer_remove returns, no thread is inside any of its
 * callbacks any more (unless called from one of them, for that thread) and none will be
 * called again, so a module may unload right after.  With no observer registered, the
 * cost per dispatch is one well-predicted branch.
 *
 * Registering during a module's init claims "observer:NAME" (must be in the module's
 * provides) and is undone if the load fails or the module is unloaded.
 */
typedef struct QsEvloopObserver {
    const char *name;
    void (*poll_begin)(QsLoop *loop, int timeout_ms, void *opaque);
    void (*poll_end)(QsLoop *loop, void *opaque);
    void (*dispatch_begin)(const QsSourceInfo *src, void *opaque);
    void (*dispatch_end)(const QsSourceInfo *src, void *opaque);
    /* Loop life cycle (optional): called when an iothread is created or freed. */
    void (*loop_added)(QsLoop *loop, void *opaque);
    void (*loop_removed)(QsLoop *loop, void *opaque);
} QsEvloopObserver;

bool qs_evloop_observer_add(const QsEvloopObserver *obs, void *opaque, GError **errp);
void qs_evloop_observer_remove(const QsEvloopObserver *obs);

/*
 * A sampler (ABI 1.2) is the cheap kind of observer, for profilers: the core counts and
 * samples every dispatch itself and calls the sampler only on sampled ones.
 *
 * Per source the core keeps a countdown: the first dispatch of every source after the
 * sampler is added, and then one dispatch in `period`, are sampled: dispatch_begin and
 * dispatch_end run around them, and dispatch_begin gets `count`, the number of
 * dispatches of that source not reported yet, this one included.  A source whose
 * dispatch_end returned true ("slow") has every dispatch sampled (count 1) until a
 * dispatch_end returns false.  Unsampled dispatches cost the core a few plain stores to
 * memory its thread owns, with no call and no clock read.  Counts stay exact: dispatches
 * not reported yet are handed to dispatch_count when the source is freed (any thread)
 * and when the loop flushes them (qs_loop_flush).  Sum of the counts = dispatches.
 *
 * With several samplers, all see the same sampled dispatches and the same counts; the
 * period is the smallest of theirs, and a source is slow if any sampler's dispatch_end
 * said so.  poll_begin/poll_end, loop_added/loop_removed are called as for an observer;
 * dispatch_watched: see qs_loop_watch.  Callbacks run in the loop's thread (a virtual
 * timer stepped by qs_clock_step runs in the stepping thread; dispatch_count also in the
 * thread that frees a source), concurrently from several loops.  dispatch_end is called
 * exactly for the dispatches whose dispatch_begin was (unless the sampler was removed in
 * between).  dispatch_count runs under the core's source-list lock:
 * it must not create or free sources.  Adding a sampler restarts every source's
 * countdown (its first dispatch is then sampled, with count 1): samplers already there
 * lose the counts not reported yet, at most period - 1 per source.  Removal and module
 * rollback: as for observers ("observer:NAME" is claimed, the name is shared with
 * observers).
 */
typedef struct QsEvloopSampler {
    const char *name;
    /* sample one dispatch in `period` of each source: 1 (all) .. 65536 */
    unsigned period;
    void (*poll_begin)(QsLoop *loop, int timeout_ms, void *opaque);
    void (*poll_end)(QsLoop *loop, void *opaque);
    void (*dispatch_begin)(const QsSourceInfo *src, uint64_t count, void *opaque);
    /* return true to have every dispatch of src sampled from now on */
    bool (*dispatch_end)(const QsSourceInfo *src, void *opaque);
    /* count dispatches of src that no dispatch_begin reported (flush, source freed) */
    void (*dispatch_count)(const QsSourceInfo *src, uint64_t count, void *opaque);
    /* the dispatch of source_id that a qs_loop_watch call named has ended (it was not
     * necessarily sampled); cookie is the watcher's */
    void (*dispatch_watched)(QsLoop *loop, uint64_t source_id, uint64_t cookie, void *opaque);
    void (*loop_added)(QsLoop *loop, void *opaque);
    void (*loop_removed)(QsLoop *loop, void *opaque);
} QsEvloopSampler;

bool qs_evloop_sampler_add(const QsEvloopSampler *smp, void *opaque, GError **errp);
void qs_evloop_sampler_remove(const QsEvloopSampler *smp);
/* Restart every source's countdown as if the samplers had just been added: the next
 * dispatch of each source is sampled (count 1) and the counts not reported yet are
 * dropped (flush first to keep them).  E.g. after a profiler's reset, so that every
 * source is timed again.  Any thread (it waits for callbacks in progress like
 * qs_evloop_sampler_remove). */
void qs_evloop_sampler_restart(const QsEvloopSampler *smp);

/*
 * What a loop is dispatching now, readable from any thread while the loop lives (e.g. by
 * a profiler thread that must answer while every loop is stuck).  While an observer or a
 * sampler is registered, the loop's thread publishes the id of the source being
 * dispatched (0 when none) and a sequence number that changes at every begin of an
 * observed dispatch.  Returns false if no dispatch is running (seq is still set).  A
 * dispatch seen with the same seq and id for a time T has run for at least T (there is
 * no clock read on the dispatch path, so its start is not known: a reader dates it from
 * when it first saw it).  After a nested dispatch ends, the outer one is current again
 * under the nested one's seq: a pair not seen before.  The pair is consistent except
 * in the nanoseconds between the two stores of a begin.
 */
bool qs_loop_current(QsLoop *loop, uint64_t *seq, uint64_t *source_id);

/* Ask for dispatch_watched(loop, source_id, cookie) once the dispatch current as (seq,
 * source_id) (as returned by qs_loop_current) is no longer current: the loop notices it
 * at its next poll, sampled dispatch or flush, without any cost on the other dispatches
 * (so the end is known within that delay; a nested dispatch also ends it).  Replaces an
 * earlier request; fires at most once.  Lets a sampler time a long dispatch it did not
 * sample.  Any thread. */
void qs_loop_watch(QsLoop *loop, uint64_t seq, uint64_t source_id, uint64_t cookie);

/* Ask the loop to hand its sources' unreported counts to dispatch_count: at once if
 * called from the loop's thread, else the loop is woken and does it at its next poll or
 * next sampled dispatch (so within one of its iterations unless a dispatch is stuck).
 * Any thread. */
void qs_loop_flush(QsLoop *loop);
/* The same, and wait until the loop has done it (at most timeout_ms: false if it did
 * not, e.g. stuck in a dispatch, or an iothread being freed).  Not from a sampler's
 * callback, nor while holding a lock those callbacks take. */
bool qs_loop_flush_wait(QsLoop *loop, int timeout_ms);

#endif
