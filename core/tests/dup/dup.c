/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module in its own file that claims the name of test-good. */
#include "qs/module.h"

static bool dup_init(QsModule *mod, const QsOpts *opts, GError **errp) { return true; }

QS_MODULE_DEFINE(.name = "test-good", .version = "9.9", .license = "GPL-2.0-or-later",
                 .description = "loader test: duplicate name", .init = dup_init);
