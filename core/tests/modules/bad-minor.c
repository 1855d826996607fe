/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module built against a newer minor ABI than this core's. */
#include "qs/module.h"

static bool bad_init(QsModule *mod, const QsOpts *opts, GError **errp) { return true; }

G_MODULE_EXPORT const QsModuleDesc qs_module_descriptor = {
    .magic = QS_MODULE_MAGIC, .abi_major = QS_ABI_MAJOR, .abi_minor = QS_ABI_MINOR + 1,
    .name = "test-bad-minor", .version = "1.0", .license = "GPL-2.0-or-later",
    .description = "loader test: ABI minor too new", .init = bad_init,
};
