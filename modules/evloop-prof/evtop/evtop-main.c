/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop: a top(1) for qemu-slim's event loops.  Command line, the fetch step,
 * batch and JSON output; the interactive screen is in evtop-tui.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "evtop.h"
#include "evtop-text.h"

static void usage(FILE *f)
{
    fputs(
"usage: qemu-evtop [options] SOCKET\n"
"\n"
"Shows what qemu-slim's event loops spend their time on, like top(1): one line per\n"
"loop (busy %, iterations/s, the source running now, STUCK when one dispatch runs\n"
"past the threshold), then every source (fd handler, timer, bottom half, idle) with\n"
"calls/s, CPU %, mean, max and 99th-percentile dispatch time.\n"
"\n"
"SOCKET is the profiler's own socket (qemu-slim -plugin evloop-prof,socket=SOCKET),\n"
"which answers even when every loop is stuck, or a QMP socket (-qmp unix:SOCKET,\n"
"server=on,wait=off), which answers only while the main loop runs.\n"
"\n"
"Options:\n"
"  -b, --batch            plain text for pipes and files, no screen handling\n"
"  -n, --iterations N     stop after N refreshes (default: until q or interrupted)\n"
"  -d, --delay SECONDS    time between refreshes, 0.05 to 3600 (default 1)\n"
"      --json             print each snapshot as one line of JSON (implies -b)\n"
"  -o, --sort KEY         cpu (default), calls, max or name\n"
"  -r, --reverse          reverse the sort order\n"
"  -f, --filter TEXT      show only sources whose \"loop kind name\" contains TEXT\n"
"  -t, --timeout SECONDS  how long to wait for a reply (default 3)\n"
"      --reset            zero the counters before the first refresh\n"
"  -h, --help             this text\n"
"  -V, --version          version\n"
"\n"
"Keys (interactive):\n"
"  q          quit                       h or ?   help\n"
"  d or s     change the delay           z        zero the counters (all clients)\n"
"  P          sort by CPU %              C        sort by calls/s\n"
"  M          sort by max time           N        sort by name\n"
"  R          reverse the order          /        filter (empty: show all)\n"
"  up/down, PgUp/PgDn   scroll the source table\n"
"\n"
"Rates and CPU % are over the last refresh interval (averages since the last reset\n"
"on the first screen).  If the emulator goes away, qemu-evtop says \"disconnected\",\n"
"keeps the last numbers on screen and reconnects by itself.  Batch mode exits 0 if\n"
"the last refresh got fresh data, 1 otherwise; every error is one line on stderr.\n",
        f);
}

static EvTop *cleanup_on_fail;   /* freed by fail(): every usage error returns through it */
static void evtop_free(EvTop *t);
static int fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qemu-evtop: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cleanup_on_fail) evtop_free(cleanup_on_fail);
    return 2;
}

static bool parse_seconds(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) return false;
    *out = v;
    return true;
}

static bool parse_sort(const char *s, EvSortKey *k)
{
    if (!strcmp(s, "cpu")) *k = EV_SORT_CPU;
    else if (!strcmp(s, "calls")) *k = EV_SORT_CALLS;
    else if (!strcmp(s, "max")) *k = EV_SORT_MAX;
    else if (!strcmp(s, "name")) *k = EV_SORT_NAME;
    else return false;
    return true;
}

/* ---- fetching ---- */

static void set_problem(EvTop *t, const char *msg)
{
    g_free(t->problem);
    t->problem = g_strdup(msg);
    t->disconnected = true;
}

bool evtop_fetch(EvTop *t)
{
    g_autoptr(GError) err = NULL;
    if (!evconn_connected(t->conn) && !evconn_connect(t->conn, &err)) {
        set_problem(t, err->message);
        return false;
    }
    t->ever_connected = true;
    JsonNode *n = evconn_execute(t->conn, "query-evloop-stats", &err);
    if (!n) {
        set_problem(t, err->message);
        return false;
    }
    EvSnap *s = evsnap_parse(n, &err);
    if (!s) {
        g_autofree char *msg = g_strdup_printf("bad reply from '%s': %s", t->path,
                                               err->message);
        set_problem(t, msg);
        json_node_unref(n);
        return false;
    }
    evsnap_rates(s, t->snap);
    evsnap_free(t->prev);
    t->prev = t->snap;
    t->snap = s;
    if (t->snap_json) json_node_unref(t->snap_json);
    t->snap_json = n;
    t->snap_time = g_get_monotonic_time();
    t->disconnected = false;
    g_clear_pointer(&t->problem, g_free);
    return true;
}

bool evtop_reset(EvTop *t)
{
    g_autoptr(GError) err = NULL;
    if (!evconn_connected(t->conn) && !evconn_connect(t->conn, &err)) {
        set_problem(t, err->message);
        return false;
    }
    JsonNode *n = evconn_execute(t->conn, "reset-evloop-stats", &err);
    if (!n) {
        set_problem(t, err->message);
        return false;
    }
    json_node_unref(n);
    /* rates restart from the reset: the old snapshot is no base any more */
    evsnap_free(t->prev);
    t->prev = NULL;
    evsnap_free(t->snap);
    t->snap = NULL;
    return true;
}

/* ---- batch ---- */

static int run_batch(EvTop *t)
{
    bool fresh = false, said_disconnected = false;
    for (long i = 0; t->iterations < 0 || i < t->iterations; i++) {
        if (i) g_usleep((gulong)(t->delay_s * 1e6));
        fresh = evtop_fetch(t);
        if (!fresh && !t->ever_connected) {
            fprintf(stderr, "qemu-evtop: %s\n", t->problem);
            return 1;
        }
        if (!fresh) {
            if (!said_disconnected) {
                fprintf(stderr, "qemu-evtop: disconnected: %s (reconnecting)\n", t->problem);
                said_disconnected = true;
            }
            if (!t->json && t->snap) {
                printf("disconnected: %s; last data %.1f s old\n", t->problem,
                       (g_get_monotonic_time() - t->snap_time) / 1e6);
            }
        } else {
            if (said_disconnected) fprintf(stderr, "qemu-evtop: reconnected to '%s'\n", t->path);
            said_disconnected = false;
            if (t->json) {
                g_autofree char *s = json_to_string(t->snap_json, FALSE);
                puts(s);
            } else {
                g_autoptr(GString) out = g_string_new(NULL);
                evtext_frame(out, t->snap, t->path, evconn_kind(t->conn), t->sort,
                             t->reverse, t->filter, -1);
                fputs(out->str, stdout);
                fputc('\n', stdout);
            }
        }
        fflush(stdout);
    }
    return fresh ? 0 : 1;
}

int main(int argc, char **argv)
{
    EvTop t = { .delay_s = 1.0, .iterations = -1, .sort = EV_SORT_CPU, .timeout_ms = 3000 };
    cleanup_on_fail = &t;
    bool reset = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDS_ARG() do { if (!v) return fail("%s: requires an argument (see --help)", a); i++; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            puts("qemu-evtop 1.0 (evloop-prof snapshot version 1)");
            return 0;
        }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) t.batch = true;
        else if (!strcmp(a, "--json")) t.json = t.batch = true;
        else if (!strcmp(a, "-r") || !strcmp(a, "--reverse")) t.reverse = true;
        else if (!strcmp(a, "--reset")) reset = true;
        else if (!strcmp(a, "-n") || !strcmp(a, "--iterations")) {
            NEEDS_ARG();
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < 1) {
                return fail("-n %s: expected a number of iterations of at least 1", v);
            }
            t.iterations = n;
        }
        else if (!strcmp(a, "-d") || !strcmp(a, "--delay")) {
            NEEDS_ARG();
            if (!parse_seconds(v, 0.05, 3600, &t.delay_s)) {
                return fail("-d %s: expected seconds from 0.05 to 3600", v);
            }
        }
        else if (!strcmp(a, "-t") || !strcmp(a, "--timeout")) {
            double s;
            NEEDS_ARG();
            if (!parse_seconds(v, 0.1, 600, &s)) {
                return fail("-t %s: expected seconds from 0.1 to 600", v);
            }
            t.timeout_ms = (int)(s * 1000);
        }
        else if (!strcmp(a, "-o") || !strcmp(a, "--sort")) {
            NEEDS_ARG();
            if (!parse_sort(v, &t.sort)) return fail("-o %s: expected cpu, calls, max or name", v);
        }
        else if (!strcmp(a, "-f") || !strcmp(a, "--filter")) {
            NEEDS_ARG();
            g_free(t.filter);
            t.filter = g_strdup(v);
        }
        else if (a[0] == '-' && a[1]) return fail("%s: unknown option (see --help)", a);
        else if (t.path) return fail("%s: only one socket may be given (already '%s')", a, t.path);
        else t.path = g_strdup(a);
#undef NEEDS_ARG
    }
    if (!t.path) return fail("no socket given (usage: qemu-evtop [options] SOCKET; see --help)");
    t.conn = evconn_new(t.path, t.timeout_ms);
    cleanup_on_fail = NULL;
    if (reset && !evtop_reset(&t)) {
        fprintf(stderr, "qemu-evtop: %s\n", t.problem);
        evtop_free(&t);
        return 1;
    }
    int rc;
    if (t.batch) {
        rc = run_batch(&t);
    } else if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "qemu-evtop: the interactive screen needs a terminal on stdin and "
                "stdout; use -b (or --json) for output to pipes and files\n");
        rc = 2;
    } else {
        /* fail plainly, before taking over the screen, if the socket is wrong */
        if (!evtop_fetch(&t)) {
            fprintf(stderr, "qemu-evtop: %s\n", t.problem);
            rc = 1;
        } else {
            rc = evtop_tui_run(&t);
        }
    }
    evtop_free(&t);
    return rc;
}

static void evtop_free(EvTop *t)
{
    evconn_free(t->conn);
    evsnap_free(t->snap);
    evsnap_free(t->prev);
    if (t->snap_json) json_node_unref(t->snap_json);
    g_free(t->problem);
    g_free(t->filter);
    g_free(t->path);
    memset(t, 0, sizeof(*t));
}
