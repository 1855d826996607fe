/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The main loop's life: init, run until a shutdown request, run state (prelaunch,
 * running, paused) with notifiers and the QMP STOP/RESUME/SHUTDOWN events. */
#include <signal.h>
#include <glib-unix.h>
#include "loop-internal.h"
#include "qmp-internal.h"
#include "runtime.h"

typedef enum { RS_PRELAUNCH, RS_RUNNING, RS_PAUSED, RS_SHUTDOWN } RunState;

typedef struct Notifier {
    QsRunstateNotify fn;
    void *opaque;
} Notifier;

static RunState state = RS_PRELAUNCH;
static GArray *notifiers;          /* Notifier */
static int shutdown_pending;       /* atomic */
static int exit_status;
static const char *shutdown_reason;

static gboolean on_signal(gpointer data)
{
    qs_request_shutdown(0, "host-signal");
    return G_SOURCE_CONTINUE;
}

void qs_evloop_init(void)
{
    static bool done;
    if (done) return;
    done = true;
    signal(SIGPIPE, SIG_IGN);
    qs_loop_main();
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);
}

static void notify(bool running)
{
    for (guint i = 0; notifiers && i < notifiers->len; i++) {
        Notifier *n = &g_array_index(notifiers, Notifier, i);
        n->fn(running, n->opaque);
    }
}

void qs_runstate_notifier_add(QsRunstateNotify fn, void *opaque)
{
    if (!notifiers) notifiers = g_array_new(FALSE, FALSE, sizeof(Notifier));
    Notifier n = { fn, opaque };
    g_array_append_val(notifiers, n);
}

void qs_runstate_notifier_remove(QsRunstateNotify fn, void *opaque)
{
    for (guint i = 0; notifiers && i < notifiers->len; i++) {
        Notifier *n = &g_array_index(notifiers, Notifier, i);
        if (n->fn == fn && n->opaque == opaque) {
            g_array_remove_index(notifiers, i);
            return;
        }
    }
}

const char *qs_runstate_name(void)
{
    switch (state) {
    case RS_PRELAUNCH: return "prelaunch";
    case RS_RUNNING: return "running";
    case RS_PAUSED: return "paused";
    default: return "shutdown";
    }
}

bool qs_runstate_is_running(void) { return state == RS_RUNNING; }

void qs_vm_stop(void)
{
    if (state != RS_RUNNING) return;
    state = RS_PAUSED;
    qs_clock_vm_running(false);
    notify(false);
    qs_qmp_event_emit("STOP", NULL);
}

void qs_vm_start(void)
{
    if (state == RS_RUNNING || state == RS_SHUTDOWN) return;
    state = RS_RUNNING;
    qs_clock_vm_running(true);
    notify(true);
    qs_qmp_event_emit("RESUME", NULL);
}

void qs_runstate_start(bool paused)
{
    if (paused || state != RS_PRELAUNCH) return;
    /* Starting is not a resume: QEMU sends no RESUME for a VM that was never paused. */
    state = RS_RUNNING;
    qs_clock_vm_running(true);
    notify(true);
}

static void emit_shutdown(void)
{
    JsonObject *data = json_object_new();
    json_object_set_boolean_member(data, "guest", g_str_has_prefix(shutdown_reason, "guest"));
    json_object_set_string_member(data, "reason", shutdown_reason);
    qs_qmp_event_emit("SHUTDOWN", data);
    json_object_unref(data);
}

static void do_shutdown(void *opaque)
{
    if (opaque) emit_shutdown();
    g_main_loop_quit(qs_loop_gmainloop(qs_loop_main()));
}

void qs_request_shutdown(int status, const char *reason)
{
    if (!g_atomic_int_compare_and_exchange(&shutdown_pending, 0, 1)) return;
    exit_status = status;
    shutdown_reason = g_intern_string(reason ? reason : "host-error");
    /* From the main loop (QMP quit) the event goes out at once, before the command's
     * reply, as in QEMU; from other threads the main loop sends it. */
    bool here = qs_loop_in_thread(qs_loop_main());
    if (here) emit_shutdown();
    qs_loop_call(qs_loop_main(), "shutdown", do_shutdown, here ? NULL : (void *)1);
}

bool qs_shutdown_requested(void)
{
    return g_atomic_int_get(&shutdown_pending);
}

int qs_main_loop_run(void)
{
    qs_evloop_init();
    qs_loop_run_main();
    bool was_running = state == RS_RUNNING;
    state = RS_SHUTDOWN;
    if (was_running) {
        qs_clock_vm_running(false);
        notify(false);
    }
    qs_qmp_shutdown();
    return exit_status;
}
