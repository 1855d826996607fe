/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module that registers a device it did not declare in provides. */
#include "qs/module.h"
#include "qs/device.h"

static const QsDeviceType sneaky_dev = {
    .name = "test-sneaky-dev", .desc = "undeclared", .instance_size = sizeof(QsDevice),
};

static bool undeclared_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    return qs_device_type_register(&sneaky_dev, errp);
}

QS_MODULE_DEFINE(.name = "test-undeclared", .version = "1.0", .license = "GPL-2.0-or-later",
                 .description = "loader test: registers without declaring",
                 .init = undeclared_init);
