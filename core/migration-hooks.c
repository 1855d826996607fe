/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Registry of migration hooks and capabilities that modules provide. */
#include <string.h>
#include "qs/migration.h"
#include "qs-internal.h"

typedef struct Hook {
    const QsMigrationHook *hook;
    void *opaque;
} Hook;

typedef struct Cap {
    char *name;
    char *desc;
    bool on;
} Cap;

static GPtrArray *hooks;   /* Hook * */
static GPtrArray *caps;    /* Cap * */

static void hook_remove(void *data)
{
    g_ptr_array_remove(hooks, data);
    g_free(data);
}

bool qs_migration_hook_register(const QsMigrationHook *hook, void *opaque, GError **errp)
{
    if (!hooks) hooks = g_ptr_array_new();
    if (!hook->name || !hook->notify) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "migration hook needs a name and notify()");
        return false;
    }
    if (!qs_module_claim("migration", hook->name, errp)) return false;
    Hook *h = g_new0(Hook, 1);
    h->hook = hook;
    h->opaque = opaque;
    g_ptr_array_add(hooks, h);
    qs_module_track(hook_remove, h);
    return true;
}

static Cap *find_cap(const char *name)
{
    for (guint i = 0; caps && i < caps->len; i++) {
        Cap *c = caps->pdata[i];
        if (!strcmp(c->name, name)) return c;
    }
    return NULL;
}

static void cap_remove(void *data)
{
    Cap *c = data;
    g_ptr_array_remove(caps, c);
    g_free(c->name);
    g_free(c->desc);
    g_free(c);
}

bool qs_migration_capability_register(const char *name, const char *desc, bool def,
                                      GError **errp)
{
    if (!caps) caps = g_ptr_array_new();
    if (find_cap(name)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "migration capability '%s' is already registered", name);
        return false;
    }
    if (!qs_module_claim("migration-cap", name, errp)) return false;
    Cap *c = g_new0(Cap, 1);
    c->name = g_strdup(name);
    c->desc = g_strdup(desc);
    c->on = def;
    g_ptr_array_add(caps, c);
    qs_module_track(cap_remove, c);
    return true;
}

int qs_migration_capability_get(const char *name)
{
    Cap *c = find_cap(name);
    return c ? c->on : -1;
}

bool qs_migration_capability_set(const char *name, bool on, GError **errp)
{
    Cap *c = find_cap(name);
    if (!c) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "unknown migration capability '%s'", name);
        return false;
    }
    c->on = on;
    return true;
}

bool qs_migration_notify(QsMigrationPhase phase, GError **errp)
{
    for (guint i = 0; hooks && i < hooks->len; i++) {
        Hook *h = hooks->pdata[i];
        if (!h->hook->notify(phase, h->opaque, errp)) return false;
    }
    return true;
}
