/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module that depends on test-good (loaded automatically when found). */
#include "qs/module.h"

static bool needs_init(QsModule *mod, const QsOpts *opts, GError **errp) { return true; }

QS_MODULE_DEFINE(.name = "test-needs-good", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "loader test: depends on test-good",
                 .depends = QS_STRV("test-good"), .init = needs_init);
