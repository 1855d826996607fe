/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's data: a validated snapshot (loops, sources), rates between two
 * snapshots, sorting and filtering of the source table. */
#ifndef EVTOP_MODEL_H
#define EVTOP_MODEL_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

#define EVTOP_MAX_LOOPS 1024
#define EVTOP_MAX_SOURCES 200000

typedef struct EvLoop {
    char *name;
    bool is_main;
    int64_t tid;
    uint64_t iterations, dispatches, poll_ns, dispatch_ns;
    bool has_current;
    char *cur_source, *cur_kind;
    uint64_t cur_running_ns;
    bool stuck;
    /* derived */
    double busy_pct, iter_s, disp_s;
} EvLoop;

typedef struct EvSource {
    char *name, *kind, *loop;
    uint64_t count, total_ns, mean_ns, max_ns, p99_ns;
    /* derived */
    double calls_s, cpu_pct, interval_mean_ns;
} EvSource;

typedef struct EvSnap {
    int64_t pid;
    uint64_t since_reset_ns;
    uint64_t stuck_threshold_ns;
    GPtrArray *loops;     /* EvLoop* */
    GPtrArray *sources;   /* EvSource* */
    double interval_s;    /* what the rates were computed over */
} EvSnap;

/* Validate field by field; an error names the field and the value seen. */
EvSnap *evsnap_parse(JsonNode *node, GError **errp);
void evsnap_free(EvSnap *s);

/* Fill the derived fields: rates over the time since prev when prev is an earlier
 * snapshot of the same counters, else averages since the last reset. */
void evsnap_rates(EvSnap *cur, const EvSnap *prev);

typedef enum EvSortKey { EV_SORT_CPU, EV_SORT_CALLS, EV_SORT_MAX, EV_SORT_NAME } EvSortKey;

/* The sources to show: those matching filter (case-insensitive substring of
 * "loop kind name"; NULL or "" shows all), sorted.  Borrowed pointers. */
GPtrArray *evsnap_view(const EvSnap *s, EvSortKey key, bool reverse, const char *filter);

const char *evsort_name(EvSortKey key);

#endif
