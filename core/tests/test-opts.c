/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of typed option parsing: types, defaults, escapes, sizes and every error. */
#include "qs/opts.h"

static const QsPropDesc decl[] = {
    { "name", QS_PROP_STRING, "anon", "a name" },
    { "on", QS_PROP_BOOL, "off", NULL },
    { "n", QS_PROP_INT, NULL, NULL },
    { "u", QS_PROP_UINT, "7", NULL },
    { "sz", QS_PROP_SIZE, "64k", NULL },
    { NULL }
};

static void test_defaults(void)
{
    g_autoptr(GError) err = NULL;
    QsOpts *o = qs_opts_parse("", decl, "t", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(qs_opts_get_str(o, "name"), ==, "anon");
    g_assert_false(qs_opts_get_bool(o, "on"));
    g_assert_false(qs_opts_has(o, "n"));
    g_assert_cmpuint(qs_opts_get_uint(o, "u"), ==, 7);
    g_assert_cmpuint(qs_opts_get_uint(o, "sz"), ==, 65536);
    qs_opts_free(o);
}

static void test_values(void)
{
    g_autoptr(GError) err = NULL;
    QsOpts *o = qs_opts_parse("name=a,,b,on,n=-0x10,u=0x20,sz=1.5M", decl, "t", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(qs_opts_get_str(o, "name"), ==, "a,b");
    g_assert_true(qs_opts_get_bool(o, "on"));
    g_assert_cmpint(qs_opts_get_int(o, "n"), ==, -16);
    g_assert_cmpuint(qs_opts_get_uint(o, "u"), ==, 32);
    g_assert_cmpuint(qs_opts_get_uint(o, "sz"), ==, 3 << 19);
    qs_opts_free(o);
}

static void expect_error(const char *text, const char *needle)
{
    GError *err = NULL;
    QsOpts *o = qs_opts_parse(text, decl, "device 'x'", &err);
    g_assert_null(o);
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) {
        g_error("'%s': message '%s' lacks '%s'", text, err->message, needle);
    }
    g_error_free(err);
}

static void test_errors(void)
{
    expect_error("bogus=1", "unknown option 'bogus'");
    expect_error("bogus=1", "known: name, on, n, u, sz");
    expect_error("on=maybe", "option 'on' expects on/off, got 'maybe'");
    expect_error("n=12x", "option 'n' expects int, got '12x'");
    expect_error("u=-1", "option 'u' expects uint, got '-1'");
    expect_error("sz=12Q", "option 'sz' expects size, got '12Q'");
    expect_error("u", "option 'u' needs a value");
    expect_error("u=1,u=2", "option 'u' given twice");
    expect_error("n=99999999999999999999", "expects int");
    expect_error("sz=17E", "expects size");
}

static void test_sizes(void)
{
    uint64_t v;
    g_assert_true(qs_parse_size("0", &v) && v == 0);
    g_assert_true(qs_parse_size("512", &v) && v == 512);
    g_assert_true(qs_parse_size("1k", &v) && v == 1024);
    g_assert_true(qs_parse_size("1K", &v) && v == 1024);
    g_assert_true(qs_parse_size("2G", &v) && v == 2ull << 30);
    g_assert_true(qs_parse_size("1T", &v) && v == 1ull << 40);
    g_assert_true(qs_parse_size("15E", &v) && v == 15ull << 60);
    g_assert_true(qs_parse_size("0x1000", &v) && v == 4096);
    g_assert_false(qs_parse_size("", &v));
    g_assert_false(qs_parse_size("-1", &v));
    g_assert_false(qs_parse_size(" 1", &v));
    g_assert_false(qs_parse_size("1.5", &v));
    g_assert_false(qs_parse_size("k", &v));
}

static void test_split_head(void)
{
    char *head;
    char *rest = qs_opts_split_head("edu,,x,dma_mask=0xff,id=e", &head);
    g_assert_cmpstr(head, ==, "edu,x");
    g_assert_cmpstr(rest, ==, "dma_mask=0xff,id=e");
    g_free(head);
    g_free(rest);
    rest = qs_opts_split_head("plain", &head);
    g_assert_cmpstr(head, ==, "plain");
    g_assert_cmpstr(rest, ==, "");
    g_free(head);
    g_free(rest);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/opts/defaults", test_defaults);
    g_test_add_func("/opts/values", test_values);
    g_test_add_func("/opts/errors", test_errors);
    g_test_add_func("/opts/sizes", test_sizes);
    g_test_add_func("/opts/split-head", test_split_head);
    return g_test_run();
}
