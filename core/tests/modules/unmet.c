/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module whose dependency does not exist anywhere. */
#include "qs/module.h"

static bool unmet_init(QsModule *mod, const QsOpts *opts, GError **errp) { return true; }

QS_MODULE_DEFINE(.name = "test-unmet", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "loader test: unmet dependency",
                 .depends = QS_STRV("no-such-module"), .init = unmet_init);
