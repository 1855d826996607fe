/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module that registers things, then fails: the loader must undo them all. */
#include "qs/module.h"
#include "qs/device.h"
#include "qs/migration.h"
#include "qs/tcg.h"

static const QsDeviceType fail_dev = {
    .name = "test-fail-dev", .desc = "must vanish", .instance_size = sizeof(QsDevice),
};

static void nop_pass(QsTcgBlock *tb, void *opaque) { }
static const QsTcgPass fail_pass = {
    .name = "test-fail-pass", .point = QS_TCG_POINT_BACKEND, .run = nop_pass,
};

static bool fail_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    if (!qs_device_type_register(&fail_dev, errp) ||
        !qs_tcg_pass_register(&fail_pass, NULL, errp) ||
        !qs_migration_capability_register("test-fail-cap", "must vanish", false, errp)) {
        return false;
    }
    g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "deliberate failure after registering");
    return false;
}

QS_MODULE_DEFINE(.name = "test-init-fail", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "loader test: init fails after registering",
                 .provides = QS_STRV("device:test-fail-dev", "tcg-pass:test-fail-pass",
                                     "migration-cap:test-fail-cap"),
                 .init = fail_init);
