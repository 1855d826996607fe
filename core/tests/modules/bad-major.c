/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module built for another ABI major version. */
#include "qs/module.h"

static bool bad_init(QsModule *mod, const QsOpts *opts, GError **errp) { return true; }

G_MODULE_EXPORT const QsModuleDesc qs_module_descriptor = {
    .magic = QS_MODULE_MAGIC, .abi_major = QS_ABI_MAJOR + 1, .abi_minor = 0,
    .name = "test-bad-major", .version = "1.0", .license = "GPL-2.0-or-later",
    .description = "loader test: ABI major mismatch", .init = bad_init,
};
