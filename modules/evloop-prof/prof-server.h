/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The profiler thread: its own unix socket serving JSON snapshots (independent of every
 * event loop, so it answers while they are stuck) and the periodic stuck check. */
#ifndef PROF_SERVER_H
#define PROF_SERVER_H

#include <glib.h>
#include "prof-clock.h"
#include "prof-stats.h"

typedef struct ProfServer ProfServer;

/* Reply to one request line (a QMP-style {"execute": ...} object): appends one JSON
 * object (no newline) to out.  Shared by the socket and by QMP. */
void prof_handle_command(ProfStats *st, const ProfClock *clk, uint64_t stuck_ticks,
                         const char *cmd, GString *out);

/* Start the thread.  path may be NULL (no socket: only the stuck check runs).  An
 * existing socket file is replaced only if nobody answers on it. */
ProfServer *prof_server_start(const char *path, ProfStats *st, const ProfClock *clk,
                              unsigned interval_ms, uint64_t stuck_ticks, GError **errp);
/* Stop and join the thread, close every connection, remove the socket file. */
void prof_server_stop(ProfServer *srv);

#endif
