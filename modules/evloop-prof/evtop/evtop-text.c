/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fixed-width text for qemu-evtop: numbers in human units, names made printable and
 * cut to their columns, so no reply can garble the terminal. */
#include <stdio.h>
#include <string.h>
#include "evtop-text.h"

void evtext_duration(char *buf, size_t size, double ns)
{
    if (ns < 1000) snprintf(buf, size, "%.0fns", ns);
    else if (ns < 1e6) snprintf(buf, size, "%.1fus", ns / 1e3);
    else if (ns < 1e9) snprintf(buf, size, "%.2fms", ns / 1e6);
    else if (ns < 1e12) snprintf(buf, size, "%.2fs", ns / 1e9);
    else snprintf(buf, size, "%.0fs", ns / 1e9);
}

/* Append s with control characters and non-ASCII shown as '?', cut (with '+') or
 * padded to width; width 0: as is, no padding. */
static void cell(GString *out, const char *s, int width)
{
    int n = 0;
    for (const char *p = s; *p && (!width || n < width); p++, n++) {
        unsigned char c = *p;
        if (width && n == width - 1 && p[1]) {
            g_string_append_c(out, '+');
            n++;
            break;
        }
        g_string_append_c(out, c >= 0x20 && c < 0x7f ? c : '?');
    }
    for (; n < width; n++) g_string_append_c(out, ' ');
}

void evtext_summary(GString *out, const EvSnap *s, const char *path, const char *kind,
                    EvSortKey key, bool reverse, const char *filter, guint shown)
{
    char since[16];
    evtext_duration(since, sizeof(since), (double)s->since_reset_ns);
    g_string_append(out, "qemu-evtop - ");
    cell(out, path, 0);
    g_string_append_printf(out, " (%s) - pid %" G_GINT64_FORMAT " - %u loops, %u sources",
                           kind, s->pid, s->loops->len, s->sources->len);
    if (filter && *filter) {
        g_string_append_printf(out, " (%u shown, filter '", shown);
        cell(out, filter, 0);
        g_string_append(out, "')");
    }
    g_string_append_printf(out, " - %s since reset", since);
}

void evtext_sort(GString *out, EvSortKey key, bool reverse)
{
    g_string_append_printf(out, "sort %s%s", evsort_name(key), reverse ? " (reversed)" : "");
}

void evtext_loop_header(GString *out)
{
    g_string_append(out, "LOOP                 TID   BUSY%    ITER/S    DISP/S  STATE");
}

void evtext_loop(GString *out, const EvLoop *l)
{
    cell(out, l->name, 16);
    g_string_append_printf(out, " %7" G_GINT64_FORMAT " %6.1f %9.1f %9.1f  ", l->tid,
                           l->busy_pct, l->iter_s, l->disp_s);
    if (l->has_current) {
        char run[16];
        evtext_duration(run, sizeof(run), (double)l->cur_running_ns);
        g_string_append(out, l->stuck ? "STUCK in " : "in ");
        cell(out, l->cur_kind, 0);
        g_string_append(out, " '");
        cell(out, l->cur_source, 40);
        while (out->len && out->str[out->len - 1] == ' ') g_string_truncate(out, out->len - 1);
        g_string_append_printf(out, "' for %s", run);
    } else {
        g_string_append(out, "idle");
    }
}

void evtext_source_header(GString *out)
{
    g_string_append(out, "   CALLS/S   CPU%     MEAN      MAX      P99  KIND  LOOP         SOURCE");
}

void evtext_source(GString *out, const EvSource *s)
{
    char mean[16], max[16], p99[16];
    evtext_duration(mean, sizeof(mean), s->interval_mean_ns);
    evtext_duration(max, sizeof(max), (double)s->max_ns);
    evtext_duration(p99, sizeof(p99), (double)s->p99_ns);
    g_string_append_printf(out, "%10.1f %6.2f %8s %8s %8s  ", s->calls_s, s->cpu_pct, mean,
                           max, p99);
    cell(out, s->kind, 5);
    g_string_append_c(out, ' ');
    cell(out, s->loop, 12);
    g_string_append_c(out, ' ');
    cell(out, s->name, 48);
    while (out->len && out->str[out->len - 1] == ' ') g_string_truncate(out, out->len - 1);
}

void evtext_frame(GString *out, const EvSnap *s, const char *path, const char *kind,
                  EvSortKey key, bool reverse, const char *filter, int max_rows)
{
    g_autoptr(GPtrArray) view = evsnap_view(s, key, reverse, filter);
    evtext_summary(out, s, path, kind, key, reverse, filter, view->len);
    g_string_append_c(out, '\n');
    evtext_sort(out, key, reverse);
    g_string_append(out, "\n\n");
    evtext_loop_header(out);
    g_string_append_c(out, '\n');
    for (guint i = 0; i < s->loops->len; i++) {
        evtext_loop(out, s->loops->pdata[i]);
        g_string_append_c(out, '\n');
    }
    g_string_append_c(out, '\n');
    evtext_source_header(out);
    g_string_append_c(out, '\n');
    for (guint i = 0; i < view->len && (max_rows < 0 || (int)i < max_rows); i++) {
        evtext_source(out, view->pdata[i]);
        g_string_append_c(out, '\n');
    }
}
