/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test-only module (never installed): known event-loop loads for evloop-prof's tests —
 * a periodic timer, a busy bottom half, an fd handler on an iothread, a 2 s blocker. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "qs/evloop.h"
#include "qs/module.h"
#include "qs/qmp.h"

static const QsPropDesc load_opts[] = {
    { "timer-hz", QS_PROP_UINT, "0", "rate of timer 'load-timer' on the main loop (0: none)" },
    { "bh-us", QS_PROP_UINT, "0", "each tick schedules bh 'load-bh', which spins this long" },
    { "fd", QS_PROP_BOOL, "off", "each tick wakes fd handler 'load-fd' on iothread 'load-io'" },
    { "block-ms", QS_PROP_UINT, "0", "bh 'load-blocker' blocks its loop this long, once" },
    { "block-delay-ms", QS_PROP_UINT, "500", "when the blocker runs, after load" },
    { "block-loop", QS_PROP_STRING, "main", "where the blocker runs: main or io" },
    { NULL }
};

typedef struct Load {
    QsLoop *io;
    QsTimer *timer;
    int64_t period_ns, next_ns;
    QsBH *bh;
    uint64_t bh_ns;
    int efd;
    QsFdHandler *fdh;
    QsTimer *block_kick;
    QsBH *blocker;
    uint64_t block_ms;
    /* ground truth for the tests (x-evp-load-stats), updated with atomics */
    uint64_t ticks, bh_runs, bh_spent_ns, fd_reads, late_max_ns;
} Load;

static void spin_ns(uint64_t ns)
{
    int64_t end = qs_clock_get_ns(QS_CLOCK_REALTIME) + (int64_t)ns;
    while (qs_clock_get_ns(QS_CLOCK_REALTIME) < end) { }
}

static void on_tick(void *opaque)
{
    Load *l = opaque;
    int64_t now = qs_clock_get_ns(QS_CLOCK_REALTIME);
    __atomic_add_fetch(&l->ticks, 1, __ATOMIC_RELAXED);
    if ((uint64_t)(now - l->next_ns) > l->late_max_ns && now > l->next_ns) {
        __atomic_store_n(&l->late_max_ns, (uint64_t)(now - l->next_ns), __ATOMIC_RELAXED);
    }
    l->next_ns += l->period_ns;
    if (l->next_ns <= now) l->next_ns = now + l->period_ns;   /* fell behind: no burst */
    qs_timer_mod(l->timer, l->next_ns);
    if (l->bh) qs_bh_schedule(l->bh);
    if (l->efd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(l->efd, &one, sizeof(one));
        (void)r;
    }
}

static void on_bh(void *opaque)
{
    Load *l = opaque;
    int64_t t0 = qs_clock_get_ns(QS_CLOCK_REALTIME);
    spin_ns(l->bh_ns);
    __atomic_add_fetch(&l->bh_runs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&l->bh_spent_ns, (uint64_t)(qs_clock_get_ns(QS_CLOCK_REALTIME) - t0),
                       __ATOMIC_RELAXED);
}

static void on_fd(int fd, GIOCondition cond, void *opaque)
{
    Load *l = opaque;
    uint64_t v;
    if (read(fd, &v, sizeof(v)) == sizeof(v)) __atomic_add_fetch(&l->fd_reads, 1, __ATOMIC_RELAXED);
}

static JsonNode *qmp_load_stats(JsonObject *args, void *opaque, GError **errp)
{
    Load *l = opaque;
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    const struct { const char *k; uint64_t *v; } f[] = {
        { "ticks", &l->ticks }, { "bh-runs", &l->bh_runs }, { "bh-ns", &l->bh_spent_ns },
        { "fd-reads", &l->fd_reads }, { "late-max-ns", &l->late_max_ns },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(f); i++) {
        json_builder_set_member_name(b, f[i].k);
        json_builder_add_int_value(b, (gint64)__atomic_load_n(f[i].v, __ATOMIC_RELAXED));
    }
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    g_object_unref(b);
    return n;
}

static void on_block_kick(void *opaque)
{
    Load *l = opaque;
    qs_bh_schedule(l->blocker);
}

static void on_blocker(void *opaque)
{
    Load *l = opaque;
    g_usleep(l->block_ms * 1000);
}

static void load_free(Load *l)
{
    if (!l) return;
    if (l->timer) qs_timer_free(l->timer);
    if (l->block_kick) qs_timer_free(l->block_kick);
    if (l->bh) qs_bh_free(l->bh);
    if (l->io) qs_iothread_free(l->io);   /* stops its thread: its sources never run again */
    if (l->fdh) qs_fd_handler_free(l->fdh);
    if (l->blocker) qs_bh_free(l->blocker);
    if (l->efd >= 0) close(l->efd);
    g_free(l);
}

static bool load_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    Load *l = g_new0(Load, 1);
    l->efd = -1;
    uint64_t hz = qs_opts_get_uint(opts, "timer-hz");
    const char *where = qs_opts_get_str(opts, "block-loop");
    if (hz > 100000 || (strcmp(where, "main") && strcmp(where, "io"))) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "timer-hz=%" G_GUINT64_FORMAT " block-loop=%s: want at most 100000 Hz "
                    "and main or io", hz, where);
        g_free(l);
        return false;
    }
    if (!qs_qmp_register_full("x-evp-load-stats", NULL, qmp_load_stats, l, errp)) {
        g_free(l);
        return false;
    }
    bool want_io = qs_opts_get_bool(opts, "fd") || !strcmp(where, "io");
    if (want_io && !(l->io = qs_iothread_new("load-io", errp))) {
        load_free(l);
        return false;
    }
    QsLoop *main = qs_loop_main();
    if (hz) {
        l->period_ns = 1000000000 / (int64_t)hz;
        l->timer = qs_timer_new(main, QS_CLOCK_REALTIME, "load-timer", on_tick, l);
        l->next_ns = qs_clock_get_ns(QS_CLOCK_REALTIME) + l->period_ns;
        qs_timer_mod(l->timer, l->next_ns);
        l->bh_ns = qs_opts_get_uint(opts, "bh-us") * 1000;
        if (l->bh_ns) l->bh = qs_bh_new(main, "load-bh", on_bh, l);
        if (qs_opts_get_bool(opts, "fd")) {
            l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (l->efd < 0) {
                g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno), "eventfd: %s",
                            g_strerror(errno));
                load_free(l);
                return false;
            }
            l->fdh = qs_fd_handler_new(l->io, "load-fd", l->efd, G_IO_IN, on_fd, l);
        }
    }
    l->block_ms = qs_opts_get_uint(opts, "block-ms");
    if (l->block_ms) {
        QsLoop *bl = strcmp(where, "io") ? main : l->io;
        l->blocker = qs_bh_new(bl, "load-blocker", on_blocker, l);
        l->block_kick = qs_timer_new(bl, QS_CLOCK_REALTIME, "load-block-kick", on_block_kick, l);
        qs_timer_mod(l->block_kick, qs_clock_get_ns(QS_CLOCK_REALTIME) +
                     (int64_t)qs_opts_get_uint(opts, "block-delay-ms") * 1000000);
    }
    qs_module_set_opaque(mod, l);
    return true;
}

static void load_exit(QsModule *mod)
{
    load_free(qs_module_get_opaque(mod));
}

QS_MODULE_DEFINE(.name = "evp-testload", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "evloop-prof tests: known event-loop loads (not installed)",
                 .options = load_opts,
                 .provides = QS_STRV("qmp:x-evp-load-stats"),
                 .init = load_init, .exit = load_exit);
