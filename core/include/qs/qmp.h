/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QMP for modules: register commands (json-glib objects in, a JsonNode out) and emit
 * asynchronous events to every monitor that finished capabilities negotiation. */
#ifndef QS_QMP_H
#define QS_QMP_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

/* Error classes a handler may report (anything else is "GenericError"). */
#define QS_QMP_ERROR qs_qmp_error_quark()
GQuark qs_qmp_error_quark(void);
typedef enum QsQmpErrorClass {
    QS_QMP_ERROR_GENERIC,            /* "GenericError" */
    QS_QMP_ERROR_COMMAND_NOT_FOUND,  /* "CommandNotFound" */
    QS_QMP_ERROR_DEVICE_NOT_FOUND,   /* "DeviceNotFound" */
} QsQmpErrorClass;

/*
 * A command handler runs in the main loop's thread.  args is the "arguments" object
 * (an empty object when absent; borrowed).  Return the value for "return" (transfer
 * full; NULL means {}), or set errp (its message becomes "desc") and return NULL.
 */
typedef JsonNode *(*QsQmpHandler)(JsonObject *args, void *opaque, GError **errp);

/* Register `name` taking any arguments: the handler validates them (qs_qmp_check_args
 * gives QEMU's messages).  During a module's init this claims "qmp:NAME" (must be in the
 * module's provides) and is undone when the module goes away. */
bool qs_qmp_register(const char *name, QsQmpHandler handler, void *opaque, GError **errp);

/* Register `name` accepting only the arguments in params (NULL-terminated, NULL for
 * none): any other argument is refused with "Parameter 'x' is unexpected" before the
 * handler runs. */
bool qs_qmp_register_full(const char *name, const char *const *params, QsQmpHandler handler,
                          void *opaque, GError **errp);
void qs_qmp_unregister(const char *name);

/* Refuse any member of args not in params (NULL-terminated), as QEMU does. */
bool qs_qmp_check_args(JsonObject *args, const char *const *params, GError **errp);

/* Emit {"timestamp": {...}, "event": name, "data": data} (data borrowed, may be NULL)
 * to every negotiated monitor.  Any thread. */
void qs_qmp_event_emit(const char *name, JsonObject *data);

#endif
