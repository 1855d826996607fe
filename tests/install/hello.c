/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A module built out of tree against an installed qemu-slim: registers a device type and
 * says hello from init, so a test can see that it loaded and ran. */
#include <stdio.h>
#include <qs/module.h>
#include <qs/device.h>

static const QsPropDesc hello_opts[] = {
    { "who", QS_PROP_STRING, "world", "whom to greet" },
    { NULL }
};

static const QsDeviceType hello_dev = {
    .name = "hello-dev", .desc = "device from an out-of-tree module",
    .instance_size = sizeof(QsDevice),
};

static bool hello_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    printf("hello, %s, from module %s\n", qs_opts_get_str(opts, "who"), qs_module_name(mod));
    fflush(stdout);
    return qs_device_type_register(&hello_dev, errp);
}

QS_MODULE_DEFINE(.name = "hello", .version = "0.1", .license = "GPL-2.0-or-later",
                 .description = "out-of-tree test module", .options = hello_opts,
                 .provides = QS_STRV("device:hello-dev"), .init = hello_init);
