/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Main loop and shutdown (first cut: replaced by the event-loop subsystem). */
#include "qs-internal.h"
#include "runtime.h"

static GMainLoop *main_loop;
static int exit_status;

void qs_evloop_init(void)
{
    if (!main_loop) main_loop = g_main_loop_new(NULL, FALSE);
}

int qs_main_loop_run(void)
{
    g_main_loop_run(main_loop);
    return exit_status;
}

void qs_request_shutdown(int status, const char *reason)
{
    (void)reason;
    exit_status = status;
    g_main_loop_quit(main_loop);
}

void qs_runstate_start(bool paused) { (void)paused; }

bool qs_qmp_start(const char *spec, GError **errp)
{
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "QMP on '%s': not built yet", spec);
    return false;
}

bool qs_qtest_start(const char *spec, GError **errp)
{
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "qtest on '%s': not built yet", spec);
    return false;
}

bool qs_qtest_enabled(void) { return false; }
