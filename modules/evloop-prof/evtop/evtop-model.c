/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Snapshot validation (every member type-checked, sizes bounded), rate computation
 * between snapshots, and the sorted/filtered source view. */
#include <stdio.h>
#include <string.h>
#include "evtop-model.h"

#define ERR(errp, ...) g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, __VA_ARGS__)

static void loop_free(gpointer p)
{
    EvLoop *l = p;
    g_free(l->name);
    g_free(l->cur_source);
    g_free(l->cur_kind);
    g_free(l);
}

static void source_free(gpointer p)
{
    EvSource *s = p;
    g_free(s->name);
    g_free(s->kind);
    g_free(s->loop);
    g_free(s);
}

void evsnap_free(EvSnap *s)
{
    if (!s) return;
    if (s->loops) g_ptr_array_free(s->loops, TRUE);
    if (s->sources) g_ptr_array_free(s->sources, TRUE);
    g_free(s);
}

/* ---- field readers: `where` names the object for messages ---- */

static bool get_member(JsonObject *o, const char *where, const char *key, JsonNode **out,
                       GError **errp)
{
    *out = json_object_get_member(o, key);
    if (!*out) {
        ERR(errp, "malformed snapshot: %s has no \"%s\"", where, key);
        return false;
    }
    return true;
}

static bool get_u64(JsonObject *o, const char *where, const char *key, uint64_t *v,
                    GError **errp)
{
    JsonNode *n;
    if (!get_member(o, where, key, &n, errp)) return false;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        g_autofree char *seen = json_to_string(n, FALSE);
        if (strlen(seen) > 40) strcpy(seen + 37, "...");
        ERR(errp, "malformed snapshot: %s.%s is %s, expected a non-negative integer",
            where, key, seen);
        return false;
    }
    *v = (uint64_t)json_node_get_int(n);
    return true;
}

static bool get_str(JsonObject *o, const char *where, const char *key, char **v,
                    GError **errp)
{
    JsonNode *n;
    if (!get_member(o, where, key, &n, errp)) return false;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        g_autofree char *seen = json_to_string(n, FALSE);
        if (strlen(seen) > 40) strcpy(seen + 37, "...");
        ERR(errp, "malformed snapshot: %s.%s is %s, expected a string", where, key, seen);
        return false;
    }
    const char *s = json_node_get_string(n);
    if (strlen(s) > 4096) {
        ERR(errp, "malformed snapshot: %s.%s is a string of %zu bytes (at most 4096)",
            where, key, strlen(s));
        return false;
    }
    *v = g_strdup(s);
    return true;
}

static bool get_bool(JsonObject *o, const char *where, const char *key, bool *v,
                     GError **errp)
{
    JsonNode *n;
    if (!get_member(o, where, key, &n, errp)) return false;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
        g_autofree char *seen = json_to_string(n, FALSE);
        if (strlen(seen) > 40) strcpy(seen + 37, "...");
        ERR(errp, "malformed snapshot: %s.%s is %s, expected true or false", where, key, seen);
        return false;
    }
    *v = json_node_get_boolean(n);
    return true;
}

static bool get_array(JsonObject *o, const char *where, const char *key, guint max,
                      JsonArray **v, GError **errp)
{
    JsonNode *n;
    if (!get_member(o, where, key, &n, errp)) return false;
    if (!JSON_NODE_HOLDS_ARRAY(n)) {
        ERR(errp, "malformed snapshot: %s.%s is not an array", where, key);
        return false;
    }
    *v = json_node_get_array(n);
    if (json_array_get_length(*v) > max) {
        ERR(errp, "malformed snapshot: %s.%s has %u entries (at most %u)", where, key,
            json_array_get_length(*v), max);
        return false;
    }
    return true;
}

static JsonObject *element_object(JsonArray *a, guint i, const char *where, GError **errp)
{
    JsonNode *n = json_array_get_element(a, i);
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        ERR(errp, "malformed snapshot: %s[%u] is not an object", where, i);
        return NULL;
    }
    return json_node_get_object(n);
}

static bool parse_loop(JsonObject *o, const char *w, EvLoop *l, GError **errp)
{
    uint64_t tid;
    if (!get_str(o, w, "name", &l->name, errp) ||
        !get_bool(o, w, "main", &l->is_main, errp) ||
        !get_u64(o, w, "tid", &tid, errp) ||
        !get_u64(o, w, "iterations", &l->iterations, errp) ||
        !get_u64(o, w, "dispatches", &l->dispatches, errp) ||
        !get_u64(o, w, "poll_ns", &l->poll_ns, errp) ||
        !get_u64(o, w, "dispatch_ns", &l->dispatch_ns, errp) ||
        !get_bool(o, w, "stuck", &l->stuck, errp)) {
        return false;
    }
    l->tid = (int64_t)tid;
    JsonNode *cur;
    if (!get_member(o, w, "current", &cur, errp)) return false;
    if (JSON_NODE_HOLDS_NULL(cur)) return true;
    if (!JSON_NODE_HOLDS_OBJECT(cur)) {
        ERR(errp, "malformed snapshot: %s.current is neither null nor an object", w);
        return false;
    }
    g_autofree char *cw = g_strdup_printf("%s.current", w);
    JsonObject *co = json_node_get_object(cur);
    l->has_current = true;
    return get_str(co, cw, "source", &l->cur_source, errp) &&
           get_str(co, cw, "kind", &l->cur_kind, errp) &&
           get_u64(co, cw, "running_ns", &l->cur_running_ns, errp);
}

static bool parse_source(JsonObject *o, const char *w, EvSource *s, GError **errp)
{
    return get_str(o, w, "name", &s->name, errp) &&
           get_str(o, w, "kind", &s->kind, errp) &&
           get_str(o, w, "loop", &s->loop, errp) &&
           get_u64(o, w, "count", &s->count, errp) &&
           get_u64(o, w, "total_ns", &s->total_ns, errp) &&
           get_u64(o, w, "mean_ns", &s->mean_ns, errp) &&
           get_u64(o, w, "max_ns", &s->max_ns, errp) &&
           get_u64(o, w, "p99_ns", &s->p99_ns, errp);
}

EvSnap *evsnap_parse(JsonNode *node, GError **errp)
{
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        ERR(errp, "malformed snapshot: not a JSON object");
        return NULL;
    }
    JsonObject *o = json_node_get_object(node);
    EvSnap *s = g_new0(EvSnap, 1);
    s->loops = g_ptr_array_new_with_free_func(loop_free);
    s->sources = g_ptr_array_new_with_free_func(source_free);
    uint64_t version, pid;
    JsonArray *loops, *sources;
    if (!get_u64(o, "snapshot", "version", &version, errp)) goto fail;
    if (version != 1) {
        ERR(errp, "snapshot version %" G_GUINT64_FORMAT " is not supported (this qemu-evtop "
            "reads version 1)", version);
        goto fail;
    }
    if (!get_u64(o, "snapshot", "pid", &pid, errp) ||
        !get_u64(o, "snapshot", "since_reset_ns", &s->since_reset_ns, errp) ||
        !get_u64(o, "snapshot", "stuck_threshold_ns", &s->stuck_threshold_ns, errp) ||
        !get_array(o, "snapshot", "loops", EVTOP_MAX_LOOPS, &loops, errp) ||
        !get_array(o, "snapshot", "sources", EVTOP_MAX_SOURCES, &sources, errp)) {
        goto fail;
    }
    s->pid = (int64_t)pid;
    for (guint i = 0; i < json_array_get_length(loops); i++) {
        char w[32];
        snprintf(w, sizeof(w), "loops[%u]", i);
        JsonObject *lo = element_object(loops, i, "loops", errp);
        EvLoop *l = g_new0(EvLoop, 1);
        g_ptr_array_add(s->loops, l);
        if (!lo || !parse_loop(lo, w, l, errp)) goto fail;
    }
    for (guint i = 0; i < json_array_get_length(sources); i++) {
        char w[32];
        snprintf(w, sizeof(w), "sources[%u]", i);
        JsonObject *so = element_object(sources, i, "sources", errp);
        EvSource *src = g_new0(EvSource, 1);
        g_ptr_array_add(s->sources, src);
        if (!so || !parse_source(so, w, src, errp)) goto fail;
    }
    return s;
fail:
    evsnap_free(s);
    return NULL;
}

/* ---- rates ---- */

static char *source_key(const EvSource *s)
{
    return g_strdup_printf("%s\x1f%s\x1f%s", s->loop, s->kind, s->name);
}

static double per_s(uint64_t delta, double secs) { return secs > 0 ? delta / secs : 0; }

void evsnap_rates(EvSnap *cur, const EvSnap *prev)
{
    bool incremental = prev && prev->pid == cur->pid &&
                       cur->since_reset_ns > prev->since_reset_ns;
    double secs = (incremental ? cur->since_reset_ns - prev->since_reset_ns
                               : cur->since_reset_ns) / 1e9;
    cur->interval_s = secs;
    for (guint i = 0; i < cur->loops->len; i++) {
        EvLoop *l = cur->loops->pdata[i];
        const EvLoop *p = NULL;
        for (guint j = 0; incremental && j < prev->loops->len && !p; j++) {
            const EvLoop *q = prev->loops->pdata[j];
            if (!strcmp(q->name, l->name) && q->tid == l->tid) p = q;
        }
        /* counters that went backwards (a reset we did not see): use them whole */
        bool use_p = p && l->iterations >= p->iterations && l->dispatch_ns >= p->dispatch_ns &&
                     l->dispatches >= p->dispatches;
        double ls = use_p || !incremental ? secs : cur->since_reset_ns / 1e9;
        l->iter_s = per_s(l->iterations - (use_p ? p->iterations : 0), ls);
        l->disp_s = per_s(l->dispatches - (use_p ? p->dispatches : 0), ls);
        l->busy_pct = ls > 0 ? (l->dispatch_ns - (use_p ? p->dispatch_ns : 0)) / (ls * 1e7) : 0;
        if (l->busy_pct > 100) l->busy_pct = 100;
    }
    GHashTable *old = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint j = 0; incremental && j < prev->sources->len; j++) {
        EvSource *q = prev->sources->pdata[j];
        g_hash_table_insert(old, source_key(q), q);
    }
    for (guint i = 0; i < cur->sources->len; i++) {
        EvSource *s = cur->sources->pdata[i];
        g_autofree char *k = source_key(s);
        const EvSource *p = g_hash_table_lookup(old, k);
        if (p && (s->count < p->count || s->total_ns < p->total_ns)) p = NULL;
        uint64_t dc = s->count - (p ? p->count : 0), dt = s->total_ns - (p ? p->total_ns : 0);
        double ss = p || !incremental ? secs : cur->since_reset_ns / 1e9;
        s->calls_s = per_s(dc, ss);
        s->cpu_pct = ss > 0 ? dt / (ss * 1e7) : 0;
        s->interval_mean_ns = dc ? (double)dt / dc : (double)s->mean_ns;
    }
    g_hash_table_destroy(old);
}

/* ---- view ---- */

const char *evsort_name(EvSortKey key)
{
    switch (key) {
    case EV_SORT_CPU: return "CPU%";
    case EV_SORT_CALLS: return "CALLS/S";
    case EV_SORT_MAX: return "MAX";
    case EV_SORT_NAME: return "NAME";
    }
    return "?";
}

typedef struct SortCtx {
    EvSortKey key;
    bool reverse;
} SortCtx;

static int cmp_double(double a, double b) { return a < b ? -1 : a > b; }

static gint cmp_sources(gconstpointer pa, gconstpointer pb, gpointer opaque)
{
    const SortCtx *ctx = opaque;
    const EvSource *a = *(EvSource *const *)pa, *b = *(EvSource *const *)pb;
    int r;
    switch (ctx->key) {
    case EV_SORT_CALLS: r = -cmp_double(a->calls_s, b->calls_s); break;
    case EV_SORT_MAX: r = -cmp_double((double)a->max_ns, (double)b->max_ns); break;
    case EV_SORT_NAME: r = 0; break;
    default: r = -cmp_double(a->cpu_pct, b->cpu_pct); break;
    }
    if (!r) r = strcmp(a->name, b->name);
    if (!r) r = strcmp(a->loop, b->loop);
    if (!r) r = strcmp(a->kind, b->kind);
    return ctx->reverse ? -r : r;
}

GPtrArray *evsnap_view(const EvSnap *s, EvSortKey key, bool reverse, const char *filter)
{
    GPtrArray *v = g_ptr_array_new();
    g_autofree char *f = filter && *filter ? g_utf8_casefold(filter, -1) : NULL;
    for (guint i = 0; i < s->sources->len; i++) {
        EvSource *src = s->sources->pdata[i];
        if (f) {
            g_autofree char *hay = g_strdup_printf("%s %s %s", src->loop, src->kind, src->name);
            g_autofree char *fold = g_utf8_make_valid(hay, -1);
            g_autofree char *low = g_utf8_casefold(fold, -1);
            if (!strstr(low, f)) continue;
        }
        g_ptr_array_add(v, src);
    }
    SortCtx ctx = { key, reverse };
    g_ptr_array_sort_with_data(v, cmp_sources, &ctx);
    return v;
}
