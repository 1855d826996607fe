/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Registry of TCG IR passes that modules insert at named points of the pipeline. */
#include <string.h>
#include "qs/tcg.h"
#include "qs-internal.h"

typedef struct Entry {
    const QsTcgPass *pass;
    void *opaque;
} Entry;

static GPtrArray *passes;   /* Entry *, sorted by point then priority */

static const char *const points[] = {
    QS_TCG_POINT_FRONTEND, QS_TCG_POINT_OPTIMIZE, QS_TCG_POINT_BACKEND, NULL
};

static gint cmp_entry(gconstpointer a, gconstpointer b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    return x->pass->priority - y->pass->priority;
}

static void pass_unregister(void *data)
{
    g_ptr_array_remove(passes, data);
    g_free(data);
}

bool qs_tcg_pass_register(const QsTcgPass *pass, void *opaque, GError **errp)
{
    if (!passes) passes = g_ptr_array_new();
    if (!pass->name || !pass->run) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "TCG pass needs a name and run()");
        return false;
    }
    bool known = false;
    for (int i = 0; points[i]; i++) known |= pass->point && !strcmp(points[i], pass->point);
    if (!known) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "TCG pass '%s': unknown pipeline point '%s'", pass->name,
                    pass->point ? pass->point : "(null)");
        return false;
    }
    for (guint i = 0; i < passes->len; i++) {
        if (!strcmp(((Entry *)passes->pdata[i])->pass->name, pass->name)) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "TCG pass '%s' is already registered", pass->name);
            return false;
        }
    }
    if (!qs_module_claim("tcg-pass", pass->name, errp)) return false;
    Entry *e = g_new0(Entry, 1);
    e->pass = pass;
    e->opaque = opaque;
    g_ptr_array_add(passes, e);
    g_ptr_array_sort(passes, cmp_entry);
    qs_module_track(pass_unregister, e);
    return true;
}

GPtrArray *qs_tcg_pass_list(const char *point)
{
    GPtrArray *out = g_ptr_array_new();
    for (guint i = 0; passes && i < passes->len; i++) {
        Entry *e = passes->pdata[i];
        if (!strcmp(e->pass->point, point)) g_ptr_array_add(out, (gpointer)e->pass);
    }
    return out;
}

void qs_tcg_passes_run(const char *point, QsTcgBlock *tb)
{
    for (guint i = 0; passes && i < passes->len; i++) {
        Entry *e = passes->pdata[i];
        if (!strcmp(e->pass->point, point)) e->pass->run(tb, e->opaque);
    }
}
