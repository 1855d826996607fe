/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What core subsystems share with each other but never with modules: the undo log that
 * rolls back a failed module's registrations, and the "provides" check. */
#ifndef QS_INTERNAL_H
#define QS_INTERNAL_H

#include "qs/module.h"

/* Every registry calls this after adding an entry: while a module initialises, the
 * undo is recorded against it (run in reverse order if the load fails or the module is
 * unloaded); outside a module's init it does nothing (the core's own entries stay).
 * kind:name must be declared in the module's `provides`, else an error is returned and
 * the registry must not add the entry. */
bool qs_module_claim(const char *kind, const char *name, GError **errp);
void qs_module_track(void (*undo)(void *data), void *data);

/* The module whose init is running, or NULL. */
QsModule *qs_module_current(void);

#define QS_ERROR qs_error_quark()
GQuark qs_error_quark(void);
enum { QS_ERROR_FAILED = 1 };

#endif
