/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's connection: a unix socket to evloop-prof's profiler thread or to a QMP
 * monitor, line-delimited JSON with bounded lines and reply timeouts. */
#ifndef EVTOP_CONN_H
#define EVTOP_CONN_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

#define EVTOP_MAX_LINE (32u << 20)   /* longest reply accepted */

typedef struct EvConn EvConn;

EvConn *evconn_new(const char *path, int timeout_ms);
void evconn_free(EvConn *c);

/* Connect and read the greeting (and negotiate capabilities on QMP). */
bool evconn_connect(EvConn *c, GError **errp);
bool evconn_connected(const EvConn *c);
void evconn_close(EvConn *c);
/* "evloop-prof" or "QMP" once connected. */
const char *evconn_kind(const EvConn *c);
const char *evconn_path(const EvConn *c);

/* Run `command` (no arguments) and return its "return" value (transfer full).  On an
 * error reply the connection stays up; on anything else (timeout, EOF, garbage, an
 * oversized line) it is closed. */
JsonNode *evconn_execute(EvConn *c, const char *command, GError **errp);

#endif
