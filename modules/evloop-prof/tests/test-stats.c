/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of evloop-prof's statistics: histogram, per-source and per-loop counters,
 * current dispatch and stuck detection, reset, concurrency, JSON output, the clock. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "prof-clock.h"
#include "prof-stats.h"

/* Ticks are ns read from fake_now (single-threaded tests), or the real clock. */
static uint64_t fake_now;
static const ProfClock fake_clock = { .tsc = false, .mult = 1ull << 32, .fake = &fake_now };
static ProfClock real_clock;

static ProfStats *new_stats(ProfDescribeLoop describe, unsigned sample)
{
    fake_now = 0;
    return prof_stats_new(&fake_clock, sample, 1000000, describe);
}

static int L1, L2;             /* loop identities */

static void describe(const void *loop, char **name, bool *is_main, int *tid)
{
    *name = g_strdup(loop == &L1 ? "main" : loop == &L2 ? "io1" : "other");
    *is_main = loop == &L1;
    *tid = 0;
}

static JsonObject *snapshot(ProfStats *st, uint64_t now, uint64_t stuck, JsonParser **p)
{
    GString *s = g_string_new(NULL);
    prof_stats_snapshot(st, now, stuck, s);
    *p = json_parser_new();
    GError *err = NULL;
    if (!json_parser_load_from_data(*p, s->str, -1, &err)) {
        g_error("snapshot is not JSON (%s): %s", err->message, s->str);
    }
    g_string_free(s, TRUE);
    JsonNode *root = json_parser_get_root(*p);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(root));
    return json_node_get_object(root);
}

static JsonObject *find_named(JsonObject *snap, const char *array, const char *name,
                              const char *loop)
{
    JsonArray *a = json_object_get_array_member(snap, array);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *o = json_array_get_object_element(a, i);
        if (strcmp(json_object_get_string_member(o, "name"), name)) continue;
        if (loop && strcmp(json_object_get_string_member(o, "loop"), loop)) continue;
        return o;
    }
    return NULL;
}

static void test_hist(void)
{
    g_assert_cmpuint(prof_hist_bucket(0), ==, 0);
    g_assert_cmpuint(prof_hist_bucket(1), ==, 0);
    g_assert_cmpuint(prof_hist_bucket(2), ==, 1);
    g_assert_cmpuint(prof_hist_bucket(3), ==, 1);
    g_assert_cmpuint(prof_hist_bucket(1000), ==, 9);      /* 512..1023 */
    g_assert_cmpuint(prof_hist_bucket(1024), ==, 10);
    g_assert_cmpuint(prof_hist_bucket(UINT64_MAX), ==, PROF_HIST_BUCKETS - 1);
    g_assert_cmpuint(prof_hist_bucket_limit(9), ==, 1024);
    g_assert_cmpuint(prof_hist_bucket_limit(PROF_HIST_BUCKETS - 1), ==, UINT64_MAX);

    uint64_t h[PROF_HIST_BUCKETS] = { 0 };
    g_assert_cmpuint(prof_hist_percentile(h, 50), ==, 0);
    h[prof_hist_bucket(100)] = 90;      /* bucket 6: 64..127 */
    h[prof_hist_bucket(5000)] = 10;     /* bucket 12: 4096..8191 */
    g_assert_cmpuint(prof_hist_percentile(h, 50), ==, 128);
    g_assert_cmpuint(prof_hist_percentile(h, 90), ==, 128);
    g_assert_cmpuint(prof_hist_percentile(h, 91), ==, 8192);
    g_assert_cmpuint(prof_hist_percentile(h, 100), ==, 8192);
    g_assert_cmpuint(prof_hist_percentile(h, 0), ==, 128);
}

static void test_counts(void)
{
    ProfStats *st = new_stats(describe, 1);
    prof_stats_loop_add(st, &L1, "main", true, 42);
    uint64_t t = 1000;
    /* 10 iterations: poll 100 ns, then a timer of 50 ns and a bh of 10*i ns */
    for (int i = 1; i <= 10; i++) {
        (fake_now = (t), prof_stats_poll_begin(st, &L1));
        t += 100;
        (fake_now = (t), prof_stats_poll_end(st, &L1));
        (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 7, "tick", "timer"));
        t += 50;
        (fake_now = (t), prof_stats_dispatch_end(st, &L1));
        (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 8, "work", "bh"));
        t += 10 * i;
        (fake_now = (t), prof_stats_dispatch_end(st, &L1));
    }
    JsonParser *p;
    JsonObject *snap = snapshot(st, t, 0, &p);
    g_assert_cmpint(json_object_get_int_member(snap, "version"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(snap, "since_reset_ns"), ==, (gint64)t);
    JsonObject *loop = find_named(snap, "loops", "main", NULL);
    g_assert_nonnull(loop);
    g_assert_true(json_object_get_boolean_member(loop, "main"));
    g_assert_cmpint(json_object_get_int_member(loop, "tid"), ==, 42);
    g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(loop, "dispatches"), ==, 20);
    g_assert_cmpint(json_object_get_int_member(loop, "poll_ns"), ==, 1000);
    g_assert_cmpint(json_object_get_int_member(loop, "dispatch_ns"), ==, 500 + 550);
    g_assert_true(json_object_get_null_member(loop, "current"));
    g_assert_false(json_object_get_boolean_member(loop, "stuck"));

    JsonObject *tick = find_named(snap, "sources", "tick", "main");
    g_assert_nonnull(tick);
    g_assert_cmpstr(json_object_get_string_member(tick, "kind"), ==, "timer");
    g_assert_cmpint(json_object_get_int_member(tick, "count"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(tick, "total_ns"), ==, 500);
    g_assert_cmpint(json_object_get_int_member(tick, "mean_ns"), ==, 50);
    g_assert_cmpint(json_object_get_int_member(tick, "max_ns"), ==, 50);
    g_assert_cmpint(json_object_get_int_member(tick, "p99_ns"), ==, 64);
    JsonArray *hist = json_object_get_array_member(tick, "hist");
    g_assert_cmpuint(json_array_get_length(hist), ==, 1);
    JsonArray *b = json_array_get_array_element(hist, 0);
    g_assert_cmpint(json_array_get_int_element(b, 0), ==, 5);     /* 32..63 ns */
    g_assert_cmpint(json_array_get_int_element(b, 1), ==, 10);

    JsonObject *work = find_named(snap, "sources", "work", "main");
    g_assert_cmpint(json_object_get_int_member(work, "count"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(work, "total_ns"), ==, 550);
    g_assert_cmpint(json_object_get_int_member(work, "max_ns"), ==, 100);
    g_assert_cmpint(json_object_get_int_member(work, "mean_ns"), ==, 55);
    g_object_unref(p);
    prof_stats_free(st);
}

/* Sampling by the core (prof_stats_use_core): every dispatch the hooks see is timed,
 * the counts the core reports add up, a slow source is reported as such, a watched long
 * dispatch is timed through the id cache, and polls are still sampled (1 in 16 at most). */
static void test_core_sampling(void)
{
    ProfStats *st = new_stats(describe, 64);
    static const ProfCoreOps no_ops = { 0 };
    prof_stats_use_core(st, &no_ops);
    prof_stats_loop_add(st, &L1, "main", true, 1);
    uint64_t t = 1000;
    /* the core sampled the 1st and the 65th dispatch of a cheap bh: 64 reported with
     * the 65th, and 10 more flushed */
    for (int i = 0; i < 2; i++) {
        if (i) prof_stats_dispatch_count(st, &L1, 9, "cheap", "bh", 63);
        (fake_now = t, prof_stats_dispatch_begin(st, &L1, 9, "cheap", "bh"));
        t += 100;
        fake_now = t;
        g_assert_false(prof_stats_dispatch_end(st, &L1));
    }
    prof_stats_dispatch_count(st, &L1, 9, "cheap", "bh", 10);
    /* a slow timer (>= always_ns = 1 ms on average): reported slow at its first end */
    (fake_now = t, prof_stats_dispatch_begin(st, &L1, 10, "slow", "timer"));
    t += 3000000;
    fake_now = t;
    g_assert_true(prof_stats_dispatch_end(st, &L1));
    /* a long dispatch of "cheap" that the hooks did not see, watched from t0 */
    uint64_t t0 = t;
    t += 5000000;
    fake_now = t;
    prof_stats_dispatch_long(st, &L1, 9, t0);
    prof_stats_dispatch_long(st, &L1, 12345, t0);    /* unknown id: dropped */
    /* 32 polls of 1 us: 1 in 16 timed */
    for (int i = 0; i < 32; i++) {
        (fake_now = t, prof_stats_poll_begin(st, &L1));
        t += 1000;
        (fake_now = t, prof_stats_poll_end(st, &L1));
    }
    JsonParser *p;
    JsonObject *snap = snapshot(st, t, 0, &p);
    g_assert_cmpint(json_object_get_int_member(snap, "sample"), ==, 64);
    JsonObject *cheap = find_named(snap, "sources", "cheap", "main");
    g_assert_cmpint(json_object_get_int_member(cheap, "count"), ==, 2 + 63 + 10);
    g_assert_cmpint(json_object_get_int_member(cheap, "timed"), ==, 3);
    g_assert_cmpint(json_object_get_int_member(cheap, "max_ns"), ==, 5000000);
    JsonObject *slow = find_named(snap, "sources", "slow", "main");
    g_assert_cmpint(json_object_get_int_member(slow, "count"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(slow, "mean_ns"), ==, 3000000);
    JsonObject *loop = find_named(snap, "loops", "main", NULL);
    g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, 32);
    g_assert_cmpint(json_object_get_int_member(loop, "polls_timed"), ==, 2);
    g_assert_cmpint(json_object_get_int_member(loop, "poll_ns"), ==, 32000);
    g_object_unref(p);
    prof_stats_free(st);
}

/* Sources with the same name and kind in one loop are one row (one-shot calls create a
 * new source each time); other kinds or loops are other rows. */
static void test_grouping(void)
{
    ProfStats *st = new_stats(describe, 1);
    uint64_t t = 10;
    for (uint64_t id = 100; id < 1100; id++) {
        (fake_now = (t), prof_stats_dispatch_begin(st, &L1, id, "call", "bh"));
        (fake_now = (++t), prof_stats_dispatch_end(st, &L1));
    }
    (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 5000, "call", "timer"));
    (fake_now = (++t), prof_stats_dispatch_end(st, &L1));
    (fake_now = (t), prof_stats_dispatch_begin(st, &L2, 5001, "call", "bh"));
    (fake_now = (++t), prof_stats_dispatch_end(st, &L2));
    JsonParser *p;
    JsonObject *snap = snapshot(st, t, 0, &p);
    JsonArray *src = json_object_get_array_member(snap, "sources");
    g_assert_cmpuint(json_array_get_length(src), ==, 3);
    JsonObject *o = json_array_get_object_element(src, 0);
    g_assert_cmpint(json_object_get_int_member(o, "count"), ==, 1000);
    g_assert_cmpstr(json_object_get_string_member(o, "loop"), ==, "main");
    o = find_named(snap, "sources", "call", "io1");
    g_assert_nonnull(o);
    g_assert_cmpint(json_object_get_int_member(o, "count"), ==, 1);
    /* loops unknown until first seen are described by the callback; main first */
    JsonArray *loops = json_object_get_array_member(snap, "loops");
    g_assert_cmpuint(json_array_get_length(loops), ==, 2);
    g_assert_cmpstr(json_object_get_string_member(json_array_get_object_element(loops, 0),
                                                  "name"), ==, "main");
    g_object_unref(p);
    prof_stats_free(st);
}

/* Two ids that share an id-cache line still land on their own records. */
static void test_id_cache_collisions(void)
{
    ProfStats *st = new_stats(describe, 1);
    uint64_t t = 1;      /* 0 would read as "not timed" */
    for (int round = 0; round < 3; round++) {
        for (uint64_t id = 1; id <= 600; id++) {
            char name[32];
            snprintf(name, sizeof(name), "s%" G_GUINT64_FORMAT, id);
            (fake_now = (t), prof_stats_dispatch_begin(st, &L1, id, name, "fd"));
            t += id;
            (fake_now = (t), prof_stats_dispatch_end(st, &L1));
        }
    }
    JsonParser *p;
    JsonObject *snap = snapshot(st, t, 0, &p);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "sources")),
                     ==, 600);
    for (uint64_t id = 1; id <= 600; id += 37) {
        char name[32];
        snprintf(name, sizeof(name), "s%" G_GUINT64_FORMAT, id);
        JsonObject *o = find_named(snap, "sources", name, NULL);
        g_assert_cmpint(json_object_get_int_member(o, "count"), ==, 3);
        g_assert_cmpint(json_object_get_int_member(o, "total_ns"), ==, 3 * id);
        g_assert_cmpint(json_object_get_int_member(o, "max_ns"), ==, id);
    }
    g_object_unref(p);
    prof_stats_free(st);
}

/* More distinct sources than a table holds: the rest are counted in one row. */
static void test_overflow(void)
{
    ProfStats *st = new_stats(describe, 1);
    for (uint64_t id = 1; id <= 5000; id++) {
        char name[32];
        snprintf(name, sizeof(name), "n%" G_GUINT64_FORMAT, id);
        (fake_now = (id), prof_stats_dispatch_begin(st, &L1, id, name, "bh"));
        (fake_now = (id + 1), prof_stats_dispatch_end(st, &L1));
    }
    JsonParser *p;
    JsonObject *snap = snapshot(st, 6000, 0, &p);
    JsonArray *src = json_object_get_array_member(snap, "sources");
    g_assert_cmpuint(json_array_get_length(src), ==, 4097);
    JsonObject *o = find_named(snap, "sources", "(other sources)", NULL);
    g_assert_nonnull(o);
    g_assert_cmpint(json_object_get_int_member(o, "count"), ==, 5000 - 4096);
    JsonObject *loop = find_named(snap, "loops", "main", NULL);
    g_assert_cmpint(json_object_get_int_member(loop, "dispatches"), ==, 5000);
    g_object_unref(p);
    prof_stats_free(st);
}

typedef struct StuckSeen {
    int calls, first;
    char *source;
    uint64_t ns;
} StuckSeen;

static void on_stuck(const char *loop, const char *source, const char *kind,
                     uint64_t running_ns, bool first, void *opaque)
{
    StuckSeen *s = opaque;
    s->calls++;
    s->first += first;
    g_free(s->source);
    s->source = g_strdup_printf("%s/%s/%s", loop, kind, source);
    s->ns = running_ns;
}

static void test_current_and_stuck(void)
{
    ProfStats *st = new_stats(describe, 1);
    prof_stats_loop_add(st, &L1, "main", true, 0);
    prof_stats_loop_add(st, &L2, "io1", false, 0);
    (fake_now = (1000), prof_stats_dispatch_begin(st, &L2, 1, "slow\"one", "fd"));
    JsonParser *p;
    JsonObject *snap = snapshot(st, 1500, 1000, &p);
    JsonObject *loop = find_named(snap, "loops", "io1", NULL);
    JsonObject *cur = json_object_get_object_member(loop, "current");
    g_assert_nonnull(cur);
    g_assert_cmpstr(json_object_get_string_member(cur, "source"), ==, "slow\"one");
    g_assert_cmpstr(json_object_get_string_member(cur, "kind"), ==, "fd");
    g_assert_cmpint(json_object_get_int_member(cur, "running_ns"), ==, 500);
    g_assert_false(json_object_get_boolean_member(loop, "stuck"));
    g_assert_true(json_object_get_null_member(find_named(snap, "loops", "main", NULL),
                                              "current"));
    g_object_unref(p);

    StuckSeen seen = { 0 };
    prof_stats_stuck_foreach(st, 1500, 1000, on_stuck, &seen);
    g_assert_cmpint(seen.calls, ==, 0);

    snap = snapshot(st, 2000, 1000, &p);
    loop = find_named(snap, "loops", "io1", NULL);
    g_assert_true(json_object_get_boolean_member(loop, "stuck"));
    g_object_unref(p);
    prof_stats_stuck_foreach(st, 2000, 1000, on_stuck, &seen);
    prof_stats_stuck_foreach(st, 2600, 1000, on_stuck, &seen);
    g_assert_cmpint(seen.calls, ==, 2);
    g_assert_cmpint(seen.first, ==, 1);
    g_assert_cmpstr(seen.source, ==, "io1/fd/slow\"one");
    g_assert_cmpuint(seen.ns, ==, 1600);

    /* nested: the inner source is current, then the outer again, then none */
    (fake_now = (2700), prof_stats_dispatch_begin(st, &L2, 2, "inner", "bh"));
    snap = snapshot(st, 2800, 1000, &p);
    cur = json_object_get_object_member(find_named(snap, "loops", "io1", NULL), "current");
    g_assert_cmpstr(json_object_get_string_member(cur, "source"), ==, "inner");
    g_assert_cmpint(json_object_get_int_member(cur, "running_ns"), ==, 100);
    g_object_unref(p);
    (fake_now = (2900), prof_stats_dispatch_end(st, &L2));
    snap = snapshot(st, 3000, 1000, &p);
    cur = json_object_get_object_member(find_named(snap, "loops", "io1", NULL), "current");
    g_assert_cmpstr(json_object_get_string_member(cur, "source"), ==, "slow\"one");
    g_object_unref(p);
    /* still the same stuck dispatch: not "first" again */
    prof_stats_stuck_foreach(st, 3000, 1000, on_stuck, &seen);
    g_assert_cmpint(seen.calls, ==, 3);
    g_assert_cmpint(seen.first, ==, 1);
    (fake_now = (3100), prof_stats_dispatch_end(st, &L2));
    snap = snapshot(st, 3200, 1000, &p);
    loop = find_named(snap, "loops", "io1", NULL);
    g_assert_true(json_object_get_null_member(loop, "current"));
    g_assert_false(json_object_get_boolean_member(loop, "stuck"));
    /* the outer dispatch counted its whole time, the inner its own: the loop's
     * dispatch time is their sum (nested time counts in both) */
    g_assert_cmpint(json_object_get_int_member(loop, "dispatch_ns"), ==, 2300);
    g_assert_cmpint(json_object_get_int_member(loop, "dispatches"), ==, 2);
    g_assert_cmpint(json_object_get_int_member(find_named(snap, "sources", "slow\"one", NULL),
                                               "max_ns"), ==, 2100);
    g_object_unref(p);
    /* an end without a begin (observer added mid-dispatch) is ignored */
    (fake_now = (4000), prof_stats_dispatch_end(st, &L1));
    g_free(seen.source);
    prof_stats_free(st);
}

/* sample=4: every dispatch counted, one in four timed, totals scaled; a slow source is
 * timed always; an untimed dispatch a reader sees running twice is timed from then. */
static void test_sampling(void)
{
    fake_now = 0;
    ProfStats *st = prof_stats_new(&fake_clock, 4, 1000000, describe);
    uint64_t t = 100;
    for (int i = 0; i < 100; i++) {
        (fake_now = (t), prof_stats_poll_begin(st, &L1));
        (fake_now = (t += 20), prof_stats_poll_end(st, &L1));
        (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 1, "cheap", "bh"));
        (fake_now = (t += 10), prof_stats_dispatch_end(st, &L1));
    }
    /* slow: its first dispatch is timed, takes >= 1 ms, so all later ones are too */
    for (int i = 0; i < 10; i++) {
        (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 2, "slow", "fd"));
        (fake_now = (t += 2000000), prof_stats_dispatch_end(st, &L1));
    }
    JsonParser *p;
    JsonObject *snap = snapshot(st, t, 0, &p);
    g_assert_cmpint(json_object_get_int_member(snap, "sample"), ==, 4);
    JsonObject *c = find_named(snap, "sources", "cheap", NULL);
    g_assert_cmpint(json_object_get_int_member(c, "count"), ==, 100);
    g_assert_cmpint(json_object_get_int_member(c, "timed"), ==, 25);
    g_assert_cmpint(json_object_get_int_member(c, "mean_ns"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(c, "total_ns"), ==, 1000);
    JsonObject *sl = find_named(snap, "sources", "slow", NULL);
    g_assert_cmpint(json_object_get_int_member(sl, "timed"), ==, 10);
    g_assert_cmpint(json_object_get_int_member(sl, "total_ns"), ==, 20000000);
    JsonObject *loop = find_named(snap, "loops", "main", NULL);
    g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, 100);
    g_assert_cmpint(json_object_get_int_member(loop, "polls_timed"), ==, 25);
    g_assert_cmpint(json_object_get_int_member(loop, "poll_ns"), ==, 2000);
    g_assert_cmpint(json_object_get_int_member(loop, "dispatch_ns"), ==, 20001000);
    g_object_unref(p);

    /* the cheap source's next dispatch (count 100: timed) then an untimed one that blocks */
    (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 1, "cheap", "bh"));
    (fake_now = (t += 10), prof_stats_dispatch_end(st, &L1));
    (fake_now = (t), prof_stats_dispatch_begin(st, &L1, 1, "cheap", "bh"));
    uint64_t began = t;
    snap = snapshot(st, began + 500, 1000, &p);          /* first seen: dated from now */
    JsonObject *cur = json_object_get_object_member(find_named(snap, "loops", "main", NULL),
                                                    "current");
    g_assert_cmpint(json_object_get_int_member(cur, "running_ns"), ==, 0);
    g_object_unref(p);
    snap = snapshot(st, began + 1700, 1000, &p);         /* seen again: 1.2 us, stuck */
    loop = find_named(snap, "loops", "main", NULL);
    cur = json_object_get_object_member(loop, "current");
    g_assert_cmpint(json_object_get_int_member(cur, "running_ns"), ==, 1200);
    g_assert_true(json_object_get_boolean_member(loop, "stuck"));
    g_object_unref(p);
    (fake_now = (began + 3000), prof_stats_dispatch_end(st, &L1));
    snap = snapshot(st, began + 3000, 1000, &p);
    c = find_named(snap, "sources", "cheap", NULL);
    g_assert_cmpint(json_object_get_int_member(c, "count"), ==, 102);
    g_assert_cmpint(json_object_get_int_member(c, "timed"), ==, 27);
    g_assert_cmpint(json_object_get_int_member(c, "max_ns"), ==, 2500);  /* from first seen */
    g_object_unref(p);
    prof_stats_free(st);
}

static void test_reset(void)
{
    ProfStats *st = new_stats(describe, 1);
    (fake_now = (0), prof_stats_poll_begin(st, &L1));
    (fake_now = (10), prof_stats_poll_end(st, &L1));
    (fake_now = (10), prof_stats_dispatch_begin(st, &L1, 1, "a", "bh"));
    (fake_now = (1010), prof_stats_dispatch_end(st, &L1));
    prof_stats_reset(st, 2000);
    JsonParser *p;
    JsonObject *snap = snapshot(st, 2500, 0, &p);
    g_assert_cmpint(json_object_get_int_member(snap, "since_reset_ns"), ==, 500);
    JsonObject *loop = find_named(snap, "loops", "main", NULL);
    g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, 0);
    g_assert_cmpint(json_object_get_int_member(loop, "poll_ns"), ==, 0);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "sources")), ==, 0);
    g_object_unref(p);
    (fake_now = (3000), prof_stats_poll_begin(st, &L1));
    (fake_now = (3005), prof_stats_poll_end(st, &L1));
    (fake_now = (3005), prof_stats_dispatch_begin(st, &L1, 1, "a", "bh"));
    (fake_now = (3012), prof_stats_dispatch_end(st, &L1));
    snap = snapshot(st, 4000, 0, &p);
    loop = find_named(snap, "loops", "main", NULL);
    g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(loop, "poll_ns"), ==, 5);
    JsonObject *a = find_named(snap, "sources", "a", NULL);
    g_assert_cmpint(json_object_get_int_member(a, "count"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(a, "max_ns"), ==, 7);
    g_object_unref(p);
    prof_stats_free(st);
}

static void test_loop_remove(void)
{
    ProfStats *st = new_stats(describe, 1);
    prof_stats_loop_add(st, &L1, "main", true, 0);
    prof_stats_loop_add(st, &L2, "io1", false, 0);
    (fake_now = (0), prof_stats_dispatch_begin(st, &L2, 1, "x", "bh"));
    (fake_now = (5), prof_stats_dispatch_end(st, &L2));
    prof_stats_loop_remove(st, &L2);
    JsonParser *p;
    JsonObject *snap = snapshot(st, 10, 0, &p);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "loops")), ==, 1);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "sources")), ==, 0);
    g_object_unref(p);
    /* a loop with the same identity later is a new loop */
    prof_stats_loop_add(st, &L2, "io2", false, 0);
    (fake_now = (20), prof_stats_dispatch_begin(st, &L2, 2, "y", "bh"));
    (fake_now = (25), prof_stats_dispatch_end(st, &L2));
    snap = snapshot(st, 30, 0, &p);
    g_assert_null(find_named(snap, "sources", "x", NULL));
    g_assert_nonnull(find_named(snap, "sources", "y", "io2"));
    g_object_unref(p);
    prof_stats_free(st);
}

static void test_json_string(void)
{
    const char *names[] = { "plain", "q\"uote", "back\\slash", "tab\there", "nl\n",
                            "ctl\x01\x1f", "caf\xc3\xa9", "bad\xff\xfeutf8", "" };
    for (unsigned i = 0; i < G_N_ELEMENTS(names); i++) {
        GString *s = g_string_new("{\"k\": ");
        prof_json_string(s, names[i]);
        g_string_append(s, "}");
        JsonParser *p = json_parser_new();
        g_assert_true(json_parser_load_from_data(p, s->str, -1, NULL));
        const char *back = json_object_get_string_member(
            json_node_get_object(json_parser_get_root(p)), "k");
        if (g_utf8_validate(names[i], -1, NULL)) g_assert_cmpstr(back, ==, names[i]);
        else g_assert_cmpstr(back, ==, "bad\xef\xbf\xbd\xef\xbf\xbdutf8");
        g_object_unref(p);
        g_string_free(s, TRUE);
    }
}

/* The current dispatch is published in one word (and a timed one's start beside it):
 * a reader racing a writer that dispatches, nests and times sources always sees a
 * source that was really running, with its own kind, and a start not in the future. */
typedef struct Racer {
    ProfStats *st;
    int loop;
    int stop;
} Racer;

static const char *const race_names[] = { "a", "b", "c", "d" };
static const char *const race_kinds[] = { "bh", "fd", "timer", "idle" };

static gpointer racer_main(gpointer opaque)
{
    Racer *r = opaque;
    for (uint64_t i = 0; !g_atomic_int_get(&r->stop); i++) {
        unsigned k = (unsigned)(i % 4);
        prof_stats_dispatch_begin(r->st, &r->loop, 100 + k, race_names[k], race_kinds[k]);
        if (i % 5 == 0) {     /* nested: d inside */
            prof_stats_dispatch_begin(r->st, &r->loop, 103, "d", "idle");
            prof_stats_dispatch_end(r->st, &r->loop);
        }
        prof_stats_dispatch_end(r->st, &r->loop);
    }
    return NULL;
}

typedef struct RaceSeen {
    int calls, bad;
    uint64_t max_ns;
} RaceSeen;

static void on_race(const char *loop, const char *source, const char *kind,
                    uint64_t running_ns, bool first, void *opaque)
{
    RaceSeen *seen = opaque;
    seen->calls++;
    bool ok = false;
    for (int k = 0; k < 4; k++) ok |= !strcmp(source, race_names[k]) && !strcmp(kind, race_kinds[k]);
    if (!ok) seen->bad++;
    if (running_ns > seen->max_ns) seen->max_ns = running_ns;
}

static void test_current_race(void)
{
    ProfStats *st = prof_stats_new(&real_clock, 2, 1000000, NULL);
    Racer r = { .st = st };
    prof_stats_loop_add(st, &r.loop, "racer", false, 0);
    GThread *th = g_thread_new("racer", racer_main, &r);
    RaceSeen seen = { 0 };
    gint64 end = g_get_monotonic_time() + 300000;
    while (g_get_monotonic_time() < end || seen.calls < 100) {
        prof_stats_stuck_foreach(st, prof_ticks(&real_clock), 0, on_race, &seen);
    }
    g_atomic_int_set(&r.stop, 1);
    g_thread_join(th);
    g_assert_cmpint(seen.bad, ==, 0);
    g_assert_cmpint(seen.calls, >=, 100);
    g_assert_cmpuint(seen.max_ns, <, 10 * G_TIME_SPAN_SECOND * 1000ull);
    prof_stats_free(st);
}

/* Writers on four threads (each its own loop) while a reader snapshots: counts only
 * grow, every snapshot is valid JSON, and the final counts are exact. */
#define WRITERS 4
#define PER_WRITER 200000

typedef struct Writer {
    ProfStats *st;
    int loop;
} Writer;

static gpointer writer_main(gpointer opaque)
{
    Writer *w = opaque;
    const void *loop = &w->loop;
    for (int i = 0; i < PER_WRITER; i++) {
        prof_stats_poll_begin(w->st, loop);
        prof_stats_poll_end(w->st, loop);
        prof_stats_dispatch_begin(w->st, loop, (uint64_t)(i % 3), i % 3 ? "b" : "a", "bh");
        prof_stats_dispatch_end(w->st, loop);
    }
    return NULL;
}

static void test_threads(void)
{
    ProfStats *st = prof_stats_new(&real_clock, 1, 1000000, NULL);
    Writer w[WRITERS];
    GThread *th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].st = st;
        char name[16];
        snprintf(name, sizeof(name), "loop%d", i);
        prof_stats_loop_add(st, &w[i].loop, name, i == 0, 0);
        th[i] = g_thread_new(name, writer_main, &w[i]);
    }
    int64_t last[WRITERS] = { 0 };
    for (int round = 0; round < 50; round++) {
        JsonParser *p;
        JsonObject *snap = snapshot(st, 0, 0, &p);
        for (int i = 0; i < WRITERS; i++) {
            char name[16];
            snprintf(name, sizeof(name), "loop%d", i);
            JsonObject *loop = find_named(snap, "loops", name, NULL);
            g_assert_nonnull(loop);
            int64_t n = json_object_get_int_member(loop, "dispatches");
            g_assert_cmpint(n, >=, last[i]);
            g_assert_cmpint(n, <=, PER_WRITER);
            last[i] = n;
        }
        g_object_unref(p);
        g_usleep(500);
    }
    for (int i = 0; i < WRITERS; i++) g_thread_join(th[i]);
    /* the writer threads ended: their counts stay while their loops live */
    JsonParser *p;
    JsonObject *snap = snapshot(st, 0, 0, &p);
    for (int i = 0; i < WRITERS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "loop%d", i);
        JsonObject *a = find_named(snap, "sources", "a", name);
        JsonObject *b = find_named(snap, "sources", "b", name);
        g_assert_cmpint(json_object_get_int_member(a, "count"), ==, (PER_WRITER + 2) / 3);
        g_assert_cmpint(json_object_get_int_member(b, "count"), ==, PER_WRITER - (PER_WRITER + 2) / 3);
        g_assert_cmpint(json_object_get_int_member(a, "timed"), ==, (PER_WRITER + 2) / 3);
        JsonObject *loop = find_named(snap, "loops", name, NULL);
        g_assert_cmpint(json_object_get_int_member(loop, "iterations"), ==, PER_WRITER);
        g_assert_cmpint(json_object_get_int_member(loop, "polls_timed"), ==, PER_WRITER);
        g_assert_cmpint(json_object_get_int_member(loop, "dispatches"), ==, PER_WRITER);
        g_assert_cmpint(json_object_get_int_member(loop, "dispatch_ns"), >, 0);
    }
    g_object_unref(p);
    for (int i = 0; i < WRITERS; i++) prof_stats_loop_remove(st, &w[i].loop);
    snap = snapshot(st, 0, 0, &p);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "sources")), ==, 0);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(snap, "loops")), ==, 0);
    g_object_unref(p);
    prof_stats_free(st);
}

/* Counts survive while the writers live; checked with writers that wait. */
typedef struct Parked {
    ProfStats *st;
    int loop;
    GMutex m;
    GCond c;
    bool go;
} Parked;

static gpointer parked_main(gpointer opaque)
{
    Parked *w = opaque;
    for (int i = 0; i < 1000; i++) {
        prof_stats_dispatch_begin(w->st, &w->loop, 9, "p", "timer");
        prof_stats_dispatch_end(w->st, &w->loop);
    }
    g_mutex_lock(&w->m);
    while (!w->go) g_cond_wait(&w->c, &w->m);
    g_mutex_unlock(&w->m);
    return NULL;
}

static void test_thread_tables(void)
{
    ProfStats *st = prof_stats_new(&real_clock, 1, 1000000, NULL);
    Parked w = { .st = st };
    g_mutex_init(&w.m);
    g_cond_init(&w.c);
    prof_stats_loop_add(st, &w.loop, "io", false, 0);
    GThread *th = g_thread_new("parked", parked_main, &w);
    JsonObject *src = NULL;
    JsonParser *p = NULL;
    for (int tries = 0; tries < 2000 && !src; tries++) {
        if (p) g_object_unref(p);
        JsonObject *snap = snapshot(st, 0, 0, &p);
        src = find_named(snap, "sources", "p", "io");
        if (src && json_object_get_int_member(src, "count") < 1000) src = NULL;
        if (!src) g_usleep(1000);
    }
    g_assert_nonnull(src);
    g_assert_cmpint(json_object_get_int_member(src, "timed"), ==, 1000);
    g_object_unref(p);
    g_mutex_lock(&w.m);
    w.go = true;
    g_cond_signal(&w.c);
    g_mutex_unlock(&w.m);
    g_thread_join(th);
    g_mutex_clear(&w.m);
    g_cond_clear(&w.c);
    prof_stats_free(st);
}

static void test_clock(void)
{
    ProfClock c;
    g_assert_true(prof_clock_init(&c, "monotonic"));
    g_assert_false(c.tsc);
    g_assert_true(prof_clock_init(&c, "auto"));
    uint64_t n0 = prof_mono_ns(), t0 = prof_ticks(&c);
    g_usleep(30000);
    uint64_t n1 = prof_mono_ns(), t1 = prof_ticks(&c);
    double ratio = (double)prof_ticks_to_ns(c.mult, t1 - t0) / (double)(n1 - n0);
    g_assert_cmpfloat(ratio, >, 0.99);
    g_assert_cmpfloat(ratio, <, 1.01);
    if (g_test_verbose()) g_test_message("clock: %s, mult %" G_GUINT64_FORMAT,
                                         c.tsc ? "tsc" : "monotonic", c.mult);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_true(prof_clock_init(&real_clock, "auto"));
    g_test_add_func("/evloop-prof/stats/hist", test_hist);
    g_test_add_func("/evloop-prof/stats/counts", test_counts);
    g_test_add_func("/evloop-prof/stats/core-sampling", test_core_sampling);
    g_test_add_func("/evloop-prof/stats/grouping", test_grouping);
    g_test_add_func("/evloop-prof/stats/id-cache", test_id_cache_collisions);
    g_test_add_func("/evloop-prof/stats/overflow", test_overflow);
    g_test_add_func("/evloop-prof/stats/current-stuck", test_current_and_stuck);
    g_test_add_func("/evloop-prof/stats/current-race", test_current_race);
    g_test_add_func("/evloop-prof/stats/sampling", test_sampling);
    g_test_add_func("/evloop-prof/stats/reset", test_reset);
    g_test_add_func("/evloop-prof/stats/loop-remove", test_loop_remove);
    g_test_add_func("/evloop-prof/stats/json-string", test_json_string);
    g_test_add_func("/evloop-prof/stats/threads", test_threads);
    g_test_add_func("/evloop-prof/stats/thread-tables", test_thread_tables);
    g_test_add_func("/evloop-prof/stats/clock", test_clock);
    return g_test_run();
}
