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

/* Number of registered observers; read once per dispatch. */
extern int qs_evloop_nobs;

void qs_obs_dispatch_begin(const QsSourceInfo *src);
void qs_obs_dispatch_end(const QsSourceInfo *src);

static inline void obs_begin(const QsSourceInfo *src)
{
    if (G_UNLIKELY(g_atomic_int_get(&qs_evloop_nobs))) qs_obs_dispatch_begin(src);
}

static inline void obs_end(const QsSourceInfo *src)
{
    if (G_UNLIKELY(g_atomic_int_get(&qs_evloop_nobs))) qs_obs_dispatch_end(src);
}

/* Fill a source's info: a fresh id, a copy of name (freed by info_clear). */
void qs_source_info_init(QsSourceInfo *info, QsLoop *loop, const char *name,
                         QsSourceKind kind);
void qs_source_info_clear(QsSourceInfo *info);

/* The main loop's GMainLoop and running it in this thread (qs_main_loop_run). */
GMainLoop *qs_loop_gmainloop(QsLoop *loop);
void qs_loop_run_main(void);

/* Destroy a loop's timer lists (iothread teardown). */
void qs_timer_loop_cleanup(QsLoop *loop);

/* Virtual clock follows the VM's run state (frozen while paused). */
void qs_clock_vm_running(bool running);

#endif
