/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Migration hooks and capabilities that modules register: a hook sees each phase of a
 * migration; a capability is a named switch settable by migrate-set-capabilities. */
#ifndef QS_MIGRATION_H
#define QS_MIGRATION_H

#include <glib.h>
#include <stdbool.h>

typedef enum QsMigrationPhase {
    QS_MIGRATION_SETUP,
    QS_MIGRATION_ITERATE,     /* precopy round */
    QS_MIGRATION_POSTCOPY,    /* switched to postcopy */
    QS_MIGRATION_PAUSED,      /* stream failed; waiting for recovery */
    QS_MIGRATION_RECOVER,     /* stream re-established */
    QS_MIGRATION_COMPLETE,
    QS_MIGRATION_FAILED,
} QsMigrationPhase;

typedef struct QsMigrationHook {
    const char *name;
    /* Return false with errp set to fail the migration in this phase. */
    bool (*notify)(QsMigrationPhase phase, void *opaque, GError **errp);
} QsMigrationHook;

bool qs_migration_hook_register(const QsMigrationHook *hook, void *opaque, GError **errp);
bool qs_migration_capability_register(const char *name, const char *desc, bool def,
                                      GError **errp);
/* -1 if no such capability. */
int qs_migration_capability_get(const char *name);
bool qs_migration_capability_set(const char *name, bool on, GError **errp);
/* Tell every hook; stops at and returns the first failure. */
bool qs_migration_notify(QsMigrationPhase phase, GError **errp);

#endif
