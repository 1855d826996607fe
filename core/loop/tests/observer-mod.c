/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test modules registering an event-loop observer: built three times, as a module that
 * loads (good), one whose init then fails (fail), and one not declaring it (undeclared). */
#include "qs/module.h"
#include "qs/evloop.h"

static int dispatches;

static void count(const QsSourceInfo *src, void *opaque) { dispatches++; }

#if defined(OBS_GOOD)
#define OBS_NAME "test-good-observer"
#elif defined(OBS_FAIL)
#define OBS_NAME "test-fail-observer"
#else
#define OBS_NAME "test-undeclared"
#endif

static const QsEvloopObserver obs = { .name = OBS_NAME, .dispatch_begin = count };

static bool obs_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    if (!qs_evloop_observer_add(&obs, NULL, errp)) return false;
#ifdef OBS_FAIL
    g_set_error(errp, g_quark_from_static_string("test"), 1,
                "observer test: init fails on purpose");
    return false;
#endif
    return true;
}

#if defined(OBS_GOOD)
QS_MODULE_DEFINE(.name = "test-observer-good", .version = "1.0",
                 .license = "GPL-2.0-or-later", .description = "registers an observer",
                 .provides = QS_STRV("observer:" OBS_NAME), .init = obs_init);
#elif defined(OBS_FAIL)
QS_MODULE_DEFINE(.name = "test-observer-fail", .version = "1.0",
                 .license = "GPL-2.0-or-later",
                 .description = "registers an observer, then fails init",
                 .provides = QS_STRV("observer:" OBS_NAME), .init = obs_init);
#else
QS_MODULE_DEFINE(.name = "test-observer-undeclared", .version = "1.0",
                 .license = "GPL-2.0-or-later",
                 .description = "registers an observer it does not declare",
                 .provides = QS_STRV("observer:something-else"), .init = obs_init);
#endif
