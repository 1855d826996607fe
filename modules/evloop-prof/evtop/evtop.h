/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's shared state: options, the connection, the last two snapshots, and the
 * fetch step both the batch printer and the TUI use. */
#ifndef EVTOP_H
#define EVTOP_H

#include <glib.h>
#include "evtop-conn.h"
#include "evtop-model.h"

typedef struct EvTop {
    /* options */
    char *path;
    double delay_s;
    long iterations;          /* < 0: until quit */
    bool batch, json;
    EvSortKey sort;
    bool reverse;
    char *filter;
    int timeout_ms;
    /* state */
    EvConn *conn;
    EvSnap *snap, *prev;      /* last good snapshot and the one before */
    JsonNode *snap_json;      /* the last good snapshot as received */
    gint64 snap_time;         /* monotonic us when snap arrived */
    bool ever_connected;
    bool disconnected;        /* the last fetch failed */
    char *problem;            /* why, when disconnected */
} EvTop;

/* Connect if needed and fetch a snapshot.  True: snap is fresh.  False: problem says
 * why; snap keeps the last numbers. */
bool evtop_fetch(EvTop *t);
/* Ask the server to zero its counters; false with problem set on failure. */
bool evtop_reset(EvTop *t);

int evtop_tui_run(EvTop *t);

#endif
