/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A module the functional tests compile out of tree with cc: one option, one device type,
 * and an init that reports its option on stdout (or fails when asked to). */
#include <stdio.h>
#include <qs/module.h>
#include <qs/device.h>

static const QsPropDesc probe_opts[] = {
    { "tag", QS_PROP_STRING, "none", "text printed by init" },
    { "fail", QS_PROP_BOOL, "off", "make init fail" },
    { NULL }
};

static const QsDeviceType probe_dev = {
    .name = "oot-probe-dev", .desc = "device from the out-of-tree probe module",
    .instance_size = sizeof(QsDevice),
};

static bool probe_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    if (!qs_device_type_register(&probe_dev, errp)) return false;
    if (qs_opts_get_bool(opts, "fail")) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "oot-probe: failing on request (fail=on)");
        return false;
    }
    printf("oot-probe init, tag=%s\n", qs_opts_get_str(opts, "tag"));
    fflush(stdout);
    return true;
}

QS_MODULE_DEFINE(.name = "oot-probe", .version = "2.5", .license = "GPL-2.0-or-later",
                 .description = "functional-test module built out of tree",
                 .options = probe_opts, .provides = QS_STRV("device:oot-probe-dev"),
                 .init = probe_init);
