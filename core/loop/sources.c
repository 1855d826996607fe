/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Observed GSources: fd handlers, bottom halves (schedulable from any thread), one-shot
 * calls and idle handlers.  Each dispatch is bracketed by obs_begin/obs_end (observers,
 * samplers and the loop's published current source). */
#include "loop-internal.h"

/* ---- fd handlers ---- */

struct QsFdHandler {
    GSource gs;
    ObsSource os;
    gpointer tag;
    int fd;
    QsFdFunc cb;
    void *opaque;
};

static gboolean fd_dispatch(GSource *gs, GSourceFunc unused, gpointer data)
{
    QsFdHandler *h = (QsFdHandler *)gs;
    GIOCondition cond = g_source_query_unix_fd(gs, h->tag);
    if (!cond) return G_SOURCE_CONTINUE;
    uint64_t tok = obs_begin_loop(&h->os, h->os.info.loop);
    h->cb(h->fd, cond, h->opaque);
    obs_end_loop(&h->os, h->os.info.loop, tok);
    return G_SOURCE_CONTINUE;
}

static void fd_finalize(GSource *gs)
{
    qs_obs_source_clear(&((QsFdHandler *)gs)->os);
}

static GSourceFuncs fd_funcs = { .dispatch = fd_dispatch, .finalize = fd_finalize };

QsFdHandler *qs_fd_handler_new(QsLoop *loop, const char *name, int fd, GIOCondition events,
                               QsFdFunc cb, void *opaque)
{
    QsFdHandler *h = (QsFdHandler *)g_source_new(&fd_funcs, sizeof(QsFdHandler));
    qs_obs_source_init(&h->os, loop, name, QS_SOURCE_FD);
    h->fd = fd;
    h->cb = cb;
    h->opaque = opaque;
    h->tag = g_source_add_unix_fd(&h->gs, fd, events | G_IO_HUP | G_IO_ERR);
    g_source_set_name(&h->gs, h->os.info.name);
    g_source_attach(&h->gs, qs_loop_context(loop));
    return h;
}

void qs_fd_handler_set_events(QsFdHandler *h, GIOCondition events)
{
    g_source_modify_unix_fd(&h->gs, h->tag, events | G_IO_HUP | G_IO_ERR);
}

void qs_fd_handler_free(QsFdHandler *h)
{
    if (!h) return;
    g_source_destroy(&h->gs);
    g_source_unref(&h->gs);
}

/* ---- bottom halves ---- */

struct QsBH {
    GSource gs;
    ObsSource os;
    int scheduled;
    bool oneshot;
    QsBHFunc cb;
    void *opaque;
};

static gboolean bh_prepare(GSource *gs, gint *timeout)
{
    *timeout = -1;
    return g_atomic_int_get(&((QsBH *)gs)->scheduled);
}

static gboolean bh_check(GSource *gs)
{
    return g_atomic_int_get(&((QsBH *)gs)->scheduled);
}

static gboolean bh_dispatch(GSource *gs, GSourceFunc unused, gpointer data)
{
    QsBH *bh = (QsBH *)gs;
    if (!g_atomic_int_compare_and_exchange(&bh->scheduled, 1, 0)) return G_SOURCE_CONTINUE;
    uint64_t tok = obs_begin_loop(&bh->os, bh->os.info.loop);
    bh->cb(bh->opaque);
    obs_end_loop(&bh->os, bh->os.info.loop, tok);
    return bh->oneshot ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void bh_finalize(GSource *gs)
{
    qs_obs_source_clear(&((QsBH *)gs)->os);
}

static GSourceFuncs bh_funcs = {
    .prepare = bh_prepare, .check = bh_check, .dispatch = bh_dispatch,
    .finalize = bh_finalize,
};

QsBH *qs_bh_new(QsLoop *loop, const char *name, QsBHFunc cb, void *opaque)
{
    QsBH *bh = (QsBH *)g_source_new(&bh_funcs, sizeof(QsBH));
    qs_obs_source_init(&bh->os, loop, name, QS_SOURCE_BH);
    bh->cb = cb;
    bh->opaque = opaque;
    g_source_set_priority(&bh->gs, G_PRIORITY_HIGH);
    g_source_set_name(&bh->gs, bh->os.info.name);
    g_source_attach(&bh->gs, qs_loop_context(loop));
    return bh;
}

void qs_bh_schedule(QsBH *bh)
{
    if (g_atomic_int_compare_and_exchange(&bh->scheduled, 0, 1)) {
        /* The loop's own thread is not polling now: prepare() sees the flag next. */
        if (!qs_loop_in_thread(bh->os.info.loop)) g_main_context_wakeup(qs_loop_context(bh->os.info.loop));
    }
}

void qs_bh_cancel(QsBH *bh)
{
    g_atomic_int_set(&bh->scheduled, 0);
}

void qs_bh_free(QsBH *bh)
{
    if (!bh) return;
    g_source_destroy(&bh->gs);
    g_source_unref(&bh->gs);
}

void qs_loop_call(QsLoop *loop, const char *name, QsBHFunc cb, void *opaque)
{
    QsBH *bh = (QsBH *)g_source_new(&bh_funcs, sizeof(QsBH));
    qs_obs_source_init(&bh->os, loop, name, QS_SOURCE_BH);
    bh->cb = cb;
    bh->opaque = opaque;
    bh->oneshot = true;
    bh->scheduled = 1;
    g_source_set_priority(&bh->gs, G_PRIORITY_HIGH);
    g_source_attach(&bh->gs, qs_loop_context(loop));   /* attach wakes the context */
    g_source_unref(&bh->gs);                             /* the context owns it now */
}

/* ---- idle ---- */

struct QsIdle {
    GSource gs;
    ObsSource os;
    bool done;
    QsIdleFunc cb;
    void *opaque;
};

static gboolean idle_prepare(GSource *gs, gint *timeout)
{
    QsIdle *i = (QsIdle *)gs;
    *timeout = i->done ? -1 : 0;
    return !i->done;
}

static gboolean idle_check(GSource *gs)
{
    return !((QsIdle *)gs)->done;
}

static gboolean idle_dispatch(GSource *gs, GSourceFunc unused, gpointer data)
{
    QsIdle *i = (QsIdle *)gs;
    uint64_t tok = obs_begin_loop(&i->os, i->os.info.loop);
    i->done = !i->cb(i->opaque);
    obs_end_loop(&i->os, i->os.info.loop, tok);
    return G_SOURCE_CONTINUE;
}

static void idle_finalize(GSource *gs)
{
    qs_obs_source_clear(&((QsIdle *)gs)->os);
}

static GSourceFuncs idle_funcs = {
    .prepare = idle_prepare, .check = idle_check, .dispatch = idle_dispatch,
    .finalize = idle_finalize,
};

QsIdle *qs_idle_new(QsLoop *loop, const char *name, QsIdleFunc cb, void *opaque)
{
    QsIdle *i = (QsIdle *)g_source_new(&idle_funcs, sizeof(QsIdle));
    qs_obs_source_init(&i->os, loop, name, QS_SOURCE_IDLE);
    i->cb = cb;
    i->opaque = opaque;
    g_source_set_priority(&i->gs, G_PRIORITY_DEFAULT_IDLE);
    g_source_set_name(&i->gs, i->os.info.name);
    g_source_attach(&i->gs, qs_loop_context(loop));
    return i;
}

void qs_idle_free(QsIdle *i)
{
    if (!i) return;
    g_source_destroy(&i->gs);
    g_source_unref(&i->gs);
}
