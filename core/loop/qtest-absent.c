/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Built only while core/qtest/ does not exist: -qtest then fails with a clear message.
 * core/qtest provides the real qs_qtest_start / qs_qtest_enabled. */
#include "qs-internal.h"
#include "runtime.h"

bool qs_qtest_start(const char *spec, GError **errp)
{
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                "qtest on '%s': this build has no qtest support (core/qtest missing)", spec);
    return false;
}

bool qs_qtest_enabled(void) { return false; }
