/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Loader tests: every rejection with its one-line message and exit status (through the
 * qemu-slim binary), and loading, dependencies and rollback in process. */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/device.h"
#include "qs/migration.h"
#include "qs/tcg.h"
#include "module-loader.h"

static const char *mod_dir;   /* built test modules */
static const char *dup_so;    /* a second file declaring "test-good" */
static const char *qemu_slim;

/* Run qemu-slim with args; expect exit 1 and exactly one stderr line containing needle. */
static void expect_cli_error(const char *const *args, const char *needle)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)qemu_slim);
    g_ptr_array_add(argv, "-M");
    g_ptr_array_add(argv, "none");
    for (; *args; args++) g_ptr_array_add(argv, (gpointer)*args);
    g_ptr_array_add(argv, NULL);
    g_auto(GStrv) env = g_get_environ();
    env = g_environ_setenv(env, "QS_MODULE_DIR", mod_dir, TRUE);
    g_autofree char *out = NULL, *err = NULL;
    int status;
    GError *e = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, env, 0, NULL, NULL, &out, &err,
                               &status, &e));
    g_assert_no_error(e);
    g_ptr_array_free(argv, TRUE);
    if (!g_spawn_check_wait_status(status, NULL) && WIFEXITED(status)) {
        g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    } else {
        g_error("expected exit status 1, got wait status %d (stderr: %s)", status, err);
    }
    g_assert_true(g_str_has_prefix(err, "qemu-slim: "));
    g_assert_true(g_str_has_suffix(err, "\n"));
    g_assert_null(strchr(err, '\n') == err + strlen(err) - 1 ? NULL : err);  /* one line */
    if (!strstr(err, needle)) g_error("stderr '%s' lacks '%s'", err, needle);
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void test_unknown(void)
{
    expect_cli_error(ARGS("-plugin", "nope"), "module 'nope' not found (available: ");
    expect_cli_error(ARGS("-plugin", "nope"), "test-good");
}

static void test_not_a_module(void)
{
    g_autofree char *dir = g_dir_make_tmp("qs-junk-XXXXXX", NULL);
    g_autofree char *junk = g_build_filename(dir, "junk.so", NULL);
    g_assert_true(g_file_set_contents(junk, "this is text\n", -1, NULL));
    expect_cli_error(ARGS("-plugin", junk), "not a loadable module");
    g_unlink(junk);
    g_rmdir(dir);
}

static void test_missing_descriptor(void)
{
    expect_cli_error(ARGS("-plugin", "test-no-desc"),
                     "not a qemu-slim module (no 'qs_module_descriptor' symbol");
}

static void test_abi_major(void)
{
    expect_cli_error(ARGS("-plugin", "test-bad-major"), "major version differs");
}

static void test_abi_minor(void)
{
    expect_cli_error(ARGS("-plugin", "test-bad-minor"), "newer than this core's");
}

static void test_duplicate(void)
{
    expect_cli_error(ARGS("-plugin", "test-good", "-plugin", dup_so),
                     "module 'test-good' from");
    expect_cli_error(ARGS("-plugin", "test-good", "-plugin", "test-good"),
                     "is already loaded from");
}

static void test_unmet_dependency(void)
{
    expect_cli_error(ARGS("-plugin", "test-unmet"),
                     "module 'test-unmet' depends on 'no-such-module', which was not found");
}

static void test_undeclared_option(void)
{
    expect_cli_error(ARGS("-plugin", "test-good,colour=red"),
                     "module 'test-good': unknown option 'colour' (known: greeting, count");
    expect_cli_error(ARGS("-plugin", "test-good,count=many"),
                     "option 'count' expects uint, got 'many'");
}

static void test_init_failure_cli(void)
{
    expect_cli_error(ARGS("-plugin", "test-init-fail"),
                     "module 'test-init-fail' failed to initialise: deliberate failure");
    expect_cli_error(ARGS("-plugin", "test-undeclared"),
                     "without declaring \"device:test-sneaky-dev\" in provides");
}

/* In process: the failed module's device type, pass and capability are all gone. */
static void test_init_failure_rollback(void)
{
    GError *err = NULL;
    g_assert_false(qs_module_load("test-init-fail", &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_null(qs_device_type_find("test-fail-dev"));
    GPtrArray *passes = qs_tcg_pass_list(QS_TCG_POINT_BACKEND);
    g_assert_cmpuint(passes->len, ==, 0);
    g_ptr_array_free(passes, TRUE);
    g_assert_cmpint(qs_migration_capability_get("test-fail-cap"), ==, -1);
    g_assert_false(qs_module_is_loaded("test-init-fail"));
}

static void test_load_and_unload(void)
{
    GError *err = NULL;
    g_assert_true(qs_module_load("test-needs-good", &err));   /* pulls in test-good */
    g_assert_no_error(err);
    g_assert_true(qs_module_is_loaded("test-good"));
    g_assert_nonnull(qs_device_type_find("test-good-dev"));
    GPtrArray *l = qs_module_loaded_list();
    g_assert_cmpuint(l->len, ==, 2);
    const QsLoadedModule *first = l->pdata[0];
    g_assert_cmpstr(first->desc->name, ==, "test-good");
    g_assert_cmpuint(first->provided->len, ==, 2);
    g_ptr_array_free(l, TRUE);

    QsDevice *d = qs_device_create("test-good-dev,id=d0", &err);
    g_assert_no_error(err);
    g_assert_nonnull(qs_device_find("d0"));
    g_assert_null(qs_device_create("test-good-dev,id=d0", &err));
    g_assert_nonnull(strstr(err->message, "duplicate device id 'd0'"));
    g_clear_error(&err);
    g_assert_null(qs_device_create("test-good-dev,speed=3", &err));
    g_assert_nonnull(strstr(err->message, "device 'test-good-dev': unknown option 'speed'"));
    g_clear_error(&err);
    qs_device_destroy(d);

    qs_module_unload_all();
    g_assert_false(qs_module_is_loaded("test-good"));
    g_assert_null(qs_device_type_find("test-good-dev"));
}

static void test_options_reach_init(void)
{
    GError *err = NULL;
    g_assert_true(qs_module_load("test-good,greeting=hi,count=3", &err));
    g_assert_no_error(err);
    GString *help = g_string_new(NULL);
    qs_module_help(help);
    g_autofree char *line = g_strdup_printf("test-good 1.2.3 (ABI %d.%d, GPL-2.0-or-later) [loaded]",
                                            QS_ABI_MAJOR, QS_ABI_MINOR);
    g_assert_nonnull(strstr(help->str, line));
    g_assert_nonnull(strstr(help->str, "provides: device:test-good-dev tcg-pass:test-good-pass"));
    g_assert_null(strstr(help->str, "test-bad-major"));
    g_string_truncate(help, 0);
    g_assert_true(qs_module_help_options("test-good", help, &err));
    g_assert_nonnull(strstr(help->str, "count=<uint> - a number (default: 1)"));
    g_string_free(help, TRUE);
    qs_module_unload_all();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    mod_dir = g_getenv("QS_TEST_MODULE_DIR");
    dup_so = g_getenv("QS_TEST_DUP_MODULE");
    qemu_slim = g_getenv("QS_TEST_QEMU_SLIM");
    g_assert_nonnull(mod_dir);
    g_assert_nonnull(dup_so);
    g_assert_nonnull(qemu_slim);
    g_setenv("QS_MODULE_DIR", mod_dir, TRUE);

    g_test_add_func("/module/cli/unknown", test_unknown);
    g_test_add_func("/module/cli/not-a-module", test_not_a_module);
    g_test_add_func("/module/cli/missing-descriptor", test_missing_descriptor);
    g_test_add_func("/module/cli/abi-major", test_abi_major);
    g_test_add_func("/module/cli/abi-minor", test_abi_minor);
    g_test_add_func("/module/cli/duplicate", test_duplicate);
    g_test_add_func("/module/cli/unmet-dependency", test_unmet_dependency);
    g_test_add_func("/module/cli/undeclared-option", test_undeclared_option);
    g_test_add_func("/module/cli/init-failure", test_init_failure_cli);
    g_test_add_func("/module/rollback", test_init_failure_rollback);
    g_test_add_func("/module/load-unload", test_load_and_unload);
    g_test_add_func("/module/options-and-help", test_options_reach_init);
    return g_test_run();
}
