/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's text layout, shared by batch mode and the TUI: the summary line, one
 * line per loop, the source table's column header and rows. */
#ifndef EVTOP_TEXT_H
#define EVTOP_TEXT_H

#include <glib.h>
#include "evtop-model.h"

/* "12ns", "3.4us", "5.67ms", "1.23s" (at most 7 columns). */
void evtext_duration(char *buf, size_t size, double ns);

void evtext_summary(GString *out, const EvSnap *s, const char *path, const char *kind,
                    EvSortKey key, bool reverse, const char *filter, guint shown);
/* "sort CPU%" or "sort NAME (reversed)". */
void evtext_sort(GString *out, EvSortKey key, bool reverse);
void evtext_loop_header(GString *out);
void evtext_loop(GString *out, const EvLoop *l);
void evtext_source_header(GString *out);
void evtext_source(GString *out, const EvSource *s);

/* A whole frame as plain text (batch mode), each line ending in '\n'. */
void evtext_frame(GString *out, const EvSnap *s, const char *path, const char *kind,
                  EvSortKey key, bool reverse, const char *filter, int max_rows);

#endif
