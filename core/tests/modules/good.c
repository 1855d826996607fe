/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test module that loads cleanly: options of each type, a device type and a TCG pass. */
#include "qs/module.h"
#include "qs/device.h"
#include "qs/tcg.h"

static const QsPropDesc good_opts[] = {
    { "greeting", QS_PROP_STRING, "hello", "text to keep" },
    { "count", QS_PROP_UINT, "1", "a number" },
    { "verbose", QS_PROP_BOOL, "off", "a switch" },
    { "limit", QS_PROP_SIZE, "1M", "a size" },
    { NULL }
};

static const QsDeviceType good_dev = {
    .name = "test-good-dev",
    .desc = "device from the test-good module",
    .instance_size = sizeof(QsDevice),
};

static void nop_pass(QsTcgBlock *tb, void *opaque) { }

static const QsTcgPass good_pass = {
    .name = "test-good-pass", .point = QS_TCG_POINT_OPTIMIZE, .run = nop_pass,
};

static bool good_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    qs_module_set_opaque(mod, g_strdup_printf("%s x%" G_GUINT64_FORMAT,
                                              qs_opts_get_str(opts, "greeting"),
                                              qs_opts_get_uint(opts, "count")));
    return qs_device_type_register(&good_dev, errp) &&
           qs_tcg_pass_register(&good_pass, NULL, errp);
}

static void good_exit(QsModule *mod)
{
    g_free(qs_module_get_opaque(mod));
}

QS_MODULE_DEFINE(.name = "test-good", .version = "1.2.3", .license = "GPL-2.0-or-later",
                 .description = "loader test: a module that loads",
                 .options = good_opts,
                 .provides = QS_STRV("device:test-good-dev", "tcg-pass:test-good-pass"),
                 .init = good_init, .exit = good_exit);
