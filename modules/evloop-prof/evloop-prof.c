/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The evloop-prof module: an event-loop sampler feeding the statistics, the profiler
 * thread with its own socket, and the QMP commands.  Public core API only. */
#include <stdio.h>
#include "qs/evloop.h"
#include "qs/module.h"
#include "qs/qmp.h"
#include "prof-clock.h"
#include "prof-server.h"
#include "prof-stats.h"

static const QsPropDesc prof_opts[] = {
    { "socket", QS_PROP_STRING, NULL, "unix socket of the profiler thread (JSON snapshots)" },
    { "interval", QS_PROP_UINT, "100", "stuck-check period in ms (10..60000)" },
    { "stuck", QS_PROP_UINT, "1000", "a dispatch running this many ms marks its loop stuck (0: never)" },
    { "clock", QS_PROP_STRING, "auto", "tick source: auto, tsc or monotonic" },
    { "sample", QS_PROP_UINT, "256", "time 1 in N dispatches of a cheap source, and 1 in N "
                                    "polls (power of 2, 1..1024; 1: all; sources >= 10 us "
                                    "are always timed; every dispatch is counted)" },
    { NULL }
};

typedef struct Prof {
    ProfClock clk;
    const char *kinds[QS_SOURCE_OTHER + 1];   /* qs_source_kind_name, looked up once */
    ProfStats *st;
    ProfServer *srv;
    uint64_t stuck_ticks;
    QsEvloopSampler sampler;      /* period from the options */
    bool observing;
} Prof;


/* ---- observer: the hot path ---- */

static void on_poll_begin(QsLoop *loop, int timeout_ms, void *opaque)
{
    Prof *p = opaque;
    prof_stats_poll_begin(p->st, loop);
}

static void on_poll_end(QsLoop *loop, void *opaque)
{
    Prof *p = opaque;
    prof_stats_poll_end(p->st, loop);
}

static inline const char *kind_of(Prof *p, const QsSourceInfo *src)
{
    unsigned k = (unsigned)src->kind <= QS_SOURCE_OTHER ? (unsigned)src->kind : QS_SOURCE_OTHER;
    return p->kinds[k];
}

/* A sampled dispatch: the core counted `count` - 1 others since the last report. */
static void on_dispatch_begin(const QsSourceInfo *src, uint64_t count, void *opaque)
{
    Prof *p = opaque;
    if (count > 1) {
        prof_stats_dispatch_count(p->st, src->loop, src->id, src->name, kind_of(p, src),
                                  count - 1);
    }
    prof_stats_dispatch_begin(p->st, src->loop, src->id, src->name, kind_of(p, src));
}

/* true: a slow source, have the core sample all its dispatches */
static bool on_dispatch_end(const QsSourceInfo *src, void *opaque)
{
    Prof *p = opaque;
    return prof_stats_dispatch_end(p->st, src->loop);
}

static void on_dispatch_count(const QsSourceInfo *src, uint64_t count, void *opaque)
{
    Prof *p = opaque;
    prof_stats_dispatch_count(p->st, src->loop, src->id, src->name, kind_of(p, src), count);
}

/* A long dispatch the profiler thread watched (cookie: when it first saw it, in ticks). */
static void on_dispatch_watched(QsLoop *loop, uint64_t id, uint64_t cookie, void *opaque)
{
    Prof *p = opaque;
    prof_stats_dispatch_long(p->st, loop, id, cookie);
}

static void on_loop_added(QsLoop *loop, void *opaque)
{
    Prof *p = opaque;
    /* only iothreads are announced, under the core's loop lock: no qs_loop_main() */
    prof_stats_loop_add(p->st, loop, qs_loop_name(loop), false, qs_loop_tid(loop));
}

static void on_loop_removed(QsLoop *loop, void *opaque)
{
    Prof *p = opaque;
    prof_stats_loop_remove(p->st, loop);
}

static const QsEvloopSampler sampler_template = {
    .name = "evloop-prof",
    .poll_begin = on_poll_begin,
    .poll_end = on_poll_end,
    .dispatch_begin = on_dispatch_begin,
    .dispatch_end = on_dispatch_end,
    .dispatch_count = on_dispatch_count,
    .dispatch_watched = on_dispatch_watched,
    .loop_added = on_loop_added,
    .loop_removed = on_loop_removed,
};

/* What the statistics read from the core (any thread; loops are live while listed). */
static bool core_current(const void *loop, uint64_t *seq, uint64_t *id)
{
    return qs_loop_current((QsLoop *)loop, seq, id);
}

static void core_watch(const void *loop, uint64_t seq, uint64_t id, uint64_t cookie)
{
    qs_loop_watch((QsLoop *)loop, seq, id, cookie);
}

/* Ask every loop, then wait for each within one deadline (a stuck loop uses it up, the
 * loops after it are only asked).  Under the core's loop lock, so no loop is freed
 * meanwhile; the loop this thread runs (QMP: the main loop) flushes at once. */
static void flush_ask_one(const QsLoopDesc *d, void *opaque)
{
    if (!qs_loop_in_thread(d->loop)) qs_loop_flush(d->loop);
}

static void flush_wait_one(const QsLoopDesc *d, void *opaque)
{
    gint64 left = *(gint64 *)opaque - g_get_monotonic_time();
    qs_loop_flush_wait(d->loop, left > 0 ? (int)((left + 999) / 1000) : 0);
}

static void core_flush_all_wait(int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    qs_loop_foreach(flush_ask_one, NULL);
    qs_loop_foreach(flush_wait_one, &deadline);
}

static void core_restart(void *opaque)
{
    Prof *p = opaque;
    qs_evloop_sampler_restart(&p->sampler);
}

static void describe_loop(const void *loop, char **name, bool *is_main, int *tid)
{
    QsLoop *l = (QsLoop *)loop;
    *name = g_strdup(qs_loop_name(l));
    *is_main = l == qs_loop_main();
    *tid = qs_loop_tid(l);
}

static void add_existing(const QsLoopDesc *d, void *opaque)
{
    Prof *p = opaque;
    prof_stats_loop_add(p->st, d->loop, d->name, d->is_main, d->tid);
}

/* ---- QMP (runs in the main loop's thread) ---- */

static JsonNode *qmp_query(JsonObject *args, void *opaque, GError **errp)
{
    Prof *p = opaque;
    g_autoptr(GString) s = g_string_new(NULL);
    prof_stats_snapshot(p->st, prof_ticks(&p->clk), p->stuck_ticks, s);
    return json_from_string(s->str, errp);
}

static JsonNode *qmp_reset(JsonObject *args, void *opaque, GError **errp)
{
    Prof *p = opaque;
    prof_stats_reset(p->st, prof_ticks(&p->clk));
    return NULL;
}

/* ---- module ---- */

static void prof_free(Prof *p)
{
    if (!p) return;
    prof_server_stop(p->srv);
    if (p->observing) qs_evloop_sampler_remove(&p->sampler);
    prof_stats_free(p->st);
    g_free(p);
}

static bool prof_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    uint64_t interval = qs_opts_get_uint(opts, "interval");
    uint64_t stuck_ms = qs_opts_get_uint(opts, "stuck");
    const char *clock = qs_opts_get_str(opts, "clock");
    uint64_t sample = qs_opts_get_uint(opts, "sample");
    const char *socket = qs_opts_has(opts, "socket") ? qs_opts_get_str(opts, "socket") : NULL;
    if (interval < 10 || interval > 60000) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "interval=%" G_GUINT64_FORMAT ": must be 10 to 60000 ms", interval);
        return false;
    }
    if (stuck_ms > 3600000) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "stuck=%" G_GUINT64_FORMAT ": at most 3600000 ms", stuck_ms);
        return false;
    }
    if (sample < 1 || sample > 1024 || (sample & (sample - 1))) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "sample=%" G_GUINT64_FORMAT ": must be a power of 2 from 1 to 1024", sample);
        return false;
    }
    if (socket && !*socket) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "socket=: empty path");
        return false;
    }
    Prof *p = g_new0(Prof, 1);
    for (unsigned k = 0; k <= QS_SOURCE_OTHER; k++) p->kinds[k] = qs_source_kind_name(k);
    if (!prof_clock_init(&p->clk, clock)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "clock=%s: expected auto, tsc or monotonic (tsc only where the "
                    "kernel uses an invariant TSC as its clocksource)", clock);
        g_free(p);
        return false;
    }
    /* ticks per ms, from ns = ticks * mult >> 32 */
    p->stuck_ticks = (uint64_t)((((unsigned __int128)stuck_ms * 1000000u << 32) +
                                 p->clk.mult - 1) / p->clk.mult);
    p->st = prof_stats_new(&p->clk, (unsigned)sample, 10000, describe_loop);
    ProfCoreOps ops = {
        .current = core_current, .watch = core_watch, .flush_all_wait = core_flush_all_wait,
        .restart = core_restart, .opaque = p,
    };
    prof_stats_use_core(p->st, &ops);
    p->sampler = sampler_template;
    p->sampler.period = (unsigned)sample;
    if (!qs_evloop_sampler_add(&p->sampler, p, errp)) {
        prof_free(p);
        return false;
    }
    p->observing = true;
    qs_loop_foreach(add_existing, p);
    if (!qs_qmp_register_full("query-evloop-stats", NULL, qmp_query, p, errp) ||
        !qs_qmp_register_full("reset-evloop-stats", NULL, qmp_reset, p, errp)) {
        prof_free(p);
        return false;
    }
    p->srv = prof_server_start(socket, p->st, &p->clk, (unsigned)interval, p->stuck_ticks,
                               errp);
    if (!p->srv) {
        g_prefix_error(errp, "socket=%s: ", socket);
        prof_free(p);
        return false;
    }
    qs_module_set_opaque(mod, p);
    return true;
}

static void prof_exit(QsModule *mod)
{
    prof_free(qs_module_get_opaque(mod));
}

QS_MODULE_DEFINE(.name = "evloop-prof", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "event-loop profiler: per-source and per-loop statistics, "
                                "stuck detection, JSON snapshots for qemu-evtop",
                 .options = prof_opts,
                 .provides = QS_STRV("observer:evloop-prof", "qmp:query-evloop-stats",
                                     "qmp:reset-evloop-stats"),
                 .init = prof_init, .exit = prof_exit);
