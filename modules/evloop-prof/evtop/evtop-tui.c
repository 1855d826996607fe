/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's interactive screen (ncurses): header, loop lines (stuck ones in reverse
 * video), the sortable, filterable source table, prompts and the help page. */
#include <curses.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "evtop.h"
#include "evtop-text.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { stop_requested = 1; }

typedef struct Screen {
    EvTop *t;
    int scroll;
    char *note;          /* one-refresh message: "counters reset", errors of a key */
} Screen;

static void put_line(int row, const char *s, attr_t attr)
{
    if (row >= LINES) return;
    move(row, 0);
    clrtoeol();
    if (attr) attron(attr);
    addnstr(s, COLS);
    if (attr) {
        /* extend reverse video across the line, as top does */
        int len = (int)strlen(s);
        for (int i = len; i < COLS; i++) addch(' ');
        attroff(attr);
    }
}

static void draw(Screen *sc)
{
    EvTop *t = sc->t;
    erase();
    int row = 0;
    g_autoptr(GString) line = g_string_new(NULL);
    g_autoptr(GPtrArray) view = t->snap ? evsnap_view(t->snap, t->sort, t->reverse, t->filter)
                                        : g_ptr_array_new();
    if (t->snap) {
        evtext_summary(line, t->snap, t->path, evconn_kind(t->conn) ? evconn_kind(t->conn)
                       : "disconnected", t->sort, t->reverse, t->filter, view->len);
    } else {
        g_string_printf(line, "qemu-evtop - %s - waiting for data", t->path);
    }
    put_line(row++, line->str, 0);

    g_string_truncate(line, 0);
    if (t->disconnected) {
        g_string_printf(line, "disconnected: %s (reconnecting every %.1f s", t->problem,
                        t->delay_s);
        if (t->snap) {
            g_string_append_printf(line, "; showing data %.0f s old",
                                   (g_get_monotonic_time() - t->snap_time) / 1e6);
        }
        g_string_append(line, ")");
        put_line(row++, line->str, A_REVERSE | A_BOLD);
    } else {
        evtext_sort(line, t->sort, t->reverse);
        g_string_append_printf(line, " - refresh every %.2f s - h help, q quit%s%s",
                               t->delay_s, sc->note ? " - " : "", sc->note ? sc->note : "");
        put_line(row++, line->str, 0);
    }
    row++;
    g_string_truncate(line, 0);
    evtext_loop_header(line);
    put_line(row++, line->str, A_BOLD);
    for (guint i = 0; t->snap && i < t->snap->loops->len; i++) {
        EvLoop *l = t->snap->loops->pdata[i];
        g_string_truncate(line, 0);
        evtext_loop(line, l);
        put_line(row++, line->str, l->stuck ? A_REVERSE | A_BOLD : 0);
    }
    row++;
    g_string_truncate(line, 0);
    evtext_source_header(line);
    put_line(row++, line->str, A_REVERSE);
    int avail = LINES - row;
    if (sc->scroll > (int)view->len - 1) sc->scroll = MAX(0, (int)view->len - 1);
    for (int i = sc->scroll; i < (int)view->len && avail > 0; i++, avail--) {
        g_string_truncate(line, 0);
        evtext_source(line, view->pdata[i]);
        put_line(row++, line->str, 0);
    }
    refresh();
}

/* Read a line at the status row; NULL when cancelled with Escape. */
static char *prompt(const char *question)
{
    char buf[128];
    size_t len = 0;
    timeout(-1);
    curs_set(1);
    for (;;) {
        move(1, 0);
        clrtoeol();
        attron(A_BOLD);
        addnstr(question, COLS);
        attroff(A_BOLD);
        addnstr(buf, (int)len);
        refresh();
        int ch = getch();
        if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) break;
        if (ch == 27 || stop_requested) { curs_set(0); return NULL; }
        if ((ch == KEY_BACKSPACE || ch == 127 || ch == 8) && len) len--;
        else if (ch >= 0x20 && ch < 0x7f && len < sizeof(buf) - 1) buf[len++] = (char)ch;
    }
    curs_set(0);
    buf[len] = 0;
    return g_strdup(buf);
}

static void help_page(void)
{
    static const char *const lines[] = {
        "qemu-evtop - keys",
        "",
        "  q          quit",
        "  d or s     change the delay between refreshes",
        "  P          sort by CPU %            C   sort by calls per second",
        "  M          sort by max time         N   sort by name",
        "  R          reverse the sort order",
        "  /          filter sources by text (matches \"loop kind name\"; empty: all)",
        "  z          zero the counters in the emulator (affects every client)",
        "  up/down, PgUp/PgDn   scroll the source table",
        "  h or ?     this page",
        "",
        "BUSY% is the share of wall time a loop spent dispatching; a loop is STUCK when",
        "one dispatch has run longer than the profiler's threshold (stuck=MS).",
        "",
        "Press any key to return.",
    };
    erase();
    for (unsigned i = 0; i < G_N_ELEMENTS(lines); i++) put_line((int)i, lines[i], i ? 0 : A_BOLD);
    refresh();
    timeout(-1);
    getch();
}

static void set_note(Screen *sc, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void set_note(Screen *sc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(sc->note);
    sc->note = g_strdup_vprintf(fmt, ap);
    va_end(ap);
}

/* Returns false to quit. */
static bool handle_key(Screen *sc, int ch, gint64 *next)
{
    EvTop *t = sc->t;
    switch (ch) {
    case 'q': case 'Q': case 3:
        return false;
    case 'P': t->sort = EV_SORT_CPU; set_note(sc, "sort by CPU%%"); break;
    case 'C': t->sort = EV_SORT_CALLS; set_note(sc, "sort by calls/s"); break;
    case 'M': t->sort = EV_SORT_MAX; set_note(sc, "sort by max time"); break;
    case 'N': t->sort = EV_SORT_NAME; set_note(sc, "sort by name"); break;
    case 'R': t->reverse = !t->reverse; set_note(sc, "order %s", t->reverse ? "reversed" : "normal"); break;
    case 'd': case 's': {
        g_autofree char *q = g_strdup_printf("Delay in seconds (now %.2f): ", t->delay_s);
        g_autofree char *a = prompt(q);
        if (!a || !*a) break;
        char *end;
        double v = strtod(a, &end);
        if (end == a || *end || !(v >= 0.05 && v <= 3600)) {
            set_note(sc, "delay '%s' refused: give seconds from 0.05 to 3600", a);
        } else {
            t->delay_s = v;
            *next = g_get_monotonic_time() + (gint64)(v * 1e6);
            set_note(sc, "delay %.2f s", v);
        }
        break;
    }
    case '/': {
        g_autofree char *a = prompt("Filter (empty shows all): ");
        if (!a) break;
        g_free(t->filter);
        t->filter = *a ? g_strdup(a) : NULL;
        sc->scroll = 0;
        if (t->filter) set_note(sc, "filter '%s'", t->filter);
        else set_note(sc, "filter off");
        break;
    }
    case 'z': case 'Z':
        if (evtop_reset(t)) {
            evtop_fetch(t);
            set_note(sc, "counters reset");
        }
        break;
    case 'h': case 'H': case '?':
        help_page();
        break;
    case KEY_DOWN: sc->scroll++; break;
    case KEY_UP: if (sc->scroll) sc->scroll--; break;
    case KEY_NPAGE: sc->scroll += MAX(1, LINES / 2); break;
    case KEY_PPAGE: sc->scroll = MAX(0, sc->scroll - MAX(1, LINES / 2)); break;
    case KEY_HOME: sc->scroll = 0; break;
    default: break;
    }
    return true;
}

int evtop_tui_run(EvTop *t)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (!initscr()) return 1;
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    Screen sc = { .t = t };
    long done = 1;   /* main() fetched the first snapshot */
    gint64 next = g_get_monotonic_time() + (gint64)(t->delay_s * 1e6);
    draw(&sc);
    while (!stop_requested) {
        if (t->iterations > 0 && done >= t->iterations) break;
        gint64 left = (next - g_get_monotonic_time()) / 1000;
        timeout(left > 0 ? (int)MIN(left, 1000) : 0);
        int ch = getch();
        if (ch == ERR) {
            if (g_get_monotonic_time() < next) continue;
            evtop_fetch(t);
            done++;
            next = g_get_monotonic_time() + (gint64)(t->delay_s * 1e6);
            g_clear_pointer(&sc.note, g_free);
        } else if (ch != KEY_RESIZE && !handle_key(&sc, ch, &next)) {
            break;
        }
        draw(&sc);
    }
    endwin();
    g_free(sc.note);
    return 0;
}
