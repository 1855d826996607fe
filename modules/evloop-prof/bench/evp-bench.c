/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Benchmark driver: a million cheap bottom halves and a million timers dispatched by the
 * core's main loop, alternately without, with an empty observer, an empty sampler and
 * evloop-prof loaded; prints JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "qs/evloop.h"
#include "module-loader.h"
#include "runtime.h"

typedef struct Run {
    long left;
    QsBH *bh;
    QsTimer *timer;
} Run;

static void bh_cb(void *opaque)
{
    Run *r = opaque;
    if (--r->left > 0) qs_bh_schedule(r->bh);
}

static void timer_cb(void *opaque)
{
    Run *r = opaque;
    /* already due: re-armed in the past, it runs at the next iteration without sleeping */
    if (--r->left > 0) qs_timer_mod(r->timer, 1);
}

/* An observer that does nothing: what the core's hooks cost by themselves. */
static void nop_poll_begin(QsLoop *l, int t, void *o) { }
static void nop_poll_end(QsLoop *l, void *o) { }
static void nop_dispatch(const QsSourceInfo *s, void *o) { }
static const QsEvloopObserver nop_observer = {
    .name = "bench-nop", .poll_begin = nop_poll_begin, .poll_end = nop_poll_end,
    .dispatch_begin = nop_dispatch, .dispatch_end = nop_dispatch,
};

/* A sampler that does nothing, sampling 1 in 256 (evloop-prof's default): the core's
 * cost for samplers. */
static void nop_sample_begin(const QsSourceInfo *s, uint64_t n, void *o) { }
static bool nop_sample_end(const QsSourceInfo *s, void *o) { return false; }
static const QsEvloopSampler nop_sampler = {
    .name = "bench-nop-sampler", .period = 256, .poll_begin = nop_poll_begin,
    .poll_end = nop_poll_end, .dispatch_begin = nop_sample_begin,
    .dispatch_end = nop_sample_end,
};

/* CPU time of this thread: the host is shared, wall time would count other tenants */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU ns per dispatch for n dispatches of one kind on the main loop */
static double run(bool timers, long n)
{
    QsLoop *main = qs_loop_main();
    Run r = { .left = n };
    if (timers) r.timer = qs_timer_new(main, QS_CLOCK_REALTIME, "bench-timer", timer_cb, &r);
    else r.bh = qs_bh_new(main, "bench-bh", bh_cb, &r);
    int64_t t0 = cpu_ns();
    if (timers) qs_timer_mod(r.timer, 1);
    else qs_bh_schedule(r.bh);
    while (r.left > 0) qs_loop_iterate(main, true);
    int64_t t1 = cpu_ns();
    if (timers) qs_timer_free(r.timer);
    else qs_bh_free(r.bh);
    return (double)(t1 - t0) / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* QS_EVP_BENCH_ONLY=base|observer|sampler|module: only bottom halves in that setting,
 * for perf stat (instructions per dispatch do not depend on the host's load). */
static int run_only(const char *what, long n, int rounds, const char *spec)
{
    g_autoptr(GError) err = NULL;
    bool ok = true;
    if (!strcmp(what, "observer")) ok = qs_evloop_observer_add(&nop_observer, NULL, &err);
    else if (!strcmp(what, "sampler")) ok = qs_evloop_sampler_add(&nop_sampler, NULL, &err);
    else if (!strcmp(what, "module")) ok = qs_module_load(spec, &err);
    else if (strcmp(what, "base")) {
        fprintf(stderr, "evp-bench: QS_EVP_BENCH_ONLY=%s: expected base, observer, sampler "
                "or module\n", what);
        return 2;
    }
    if (!ok) {
        fprintf(stderr, "evp-bench: %s: %s\n", what, err->message);
        return 1;
    }
    double best = 0;
    for (int i = 0; i < rounds; i++) {
        double t = run(false, n);
        if (!i || t < best) best = t;
    }
    printf("{\"only\": \"%s\", \"bh_min_ns\": %.2f}\n", what, best);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    const char *spec = argc > 3 ? argv[3] : "evloop-prof";
    if (n < 1000 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "usage: evp-bench [DISPATCHES>=1000 [ROUNDS 1..99 [PLUGIN-SPEC]]]\n");
        return 2;
    }
    qs_evloop_init();
    const char *only = getenv("QS_EVP_BENCH_ONLY");
    if (only) return run_only(only, n, rounds, spec);
    double base[2][99], nop[2][99], smp[2][99], prof[2][99];
    run(false, n / 10);     /* warm up */
    run(true, n / 10);
    for (int i = 0; i < rounds; i++) {
        /* alternate, so drift in the host's load hits both sides alike */
        for (int k = 0; k < 2; k++) base[k][i] = run(k, n);
        g_autoptr(GError) err = NULL;
        if (!qs_evloop_observer_add(&nop_observer, NULL, &err)) {
            fprintf(stderr, "evp-bench: %s\n", err->message);
            return 1;
        }
        for (int k = 0; k < 2; k++) nop[k][i] = run(k, n);
        qs_evloop_observer_remove(&nop_observer);
        if (!qs_evloop_sampler_add(&nop_sampler, NULL, &err)) {
            fprintf(stderr, "evp-bench: %s\n", err->message);
            return 1;
        }
        for (int k = 0; k < 2; k++) smp[k][i] = run(k, n);
        qs_evloop_sampler_remove(&nop_sampler);
        if (!qs_module_load(spec, &err)) {
            fprintf(stderr, "evp-bench: -plugin %s: %s\n", spec, err->message);
            return 1;
        }
        for (int k = 0; k < 2; k++) prof[k][i] = run(k, n);
        qs_module_unload_all();
    }
    printf("{\"dispatches\": %ld, \"rounds\": %d, \"plugin\": \"%s\"", n, rounds, spec);
    const char *names[2] = { "bh", "timer" };
    for (int k = 0; k < 2; k++) {
        double b = median(base[k], rounds), o = median(nop[k], rounds);
        double p = median(prof[k], rounds);
        double sm = median(smp[k], rounds);
        printf(", \"%s\": {\"base_ns\": %.2f, \"nop_observer_ns\": %.2f, "
               "\"nop_sampler_ns\": %.2f, \"prof_ns\": %.2f, "
               "\"overhead_ns\": %.2f, \"ratio\": %.4f, \"module_only_ns\": %.2f, "
               "\"base_min_ns\": %.2f, \"nop_min_ns\": %.2f, \"nop_sampler_min_ns\": %.2f, "
               "\"prof_min_ns\": %.2f}",
               names[k], b, o, sm, p, p - b, p / b, p - sm, base[k][0], nop[k][0], smp[k][0],
               prof[k][0]);
    }
    printf("}\n");
    return 0;
}
