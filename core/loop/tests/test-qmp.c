/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QMP tests: the message splitter in process, then the real qemu-slim binary driven over
 * unix sockets (server and client mode): greeting, negotiation, every built-in command,
 * events, QEMU's error replies, malformed and oversized input, two monitors. */
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <glib/gstdio.h>
#include "qs/module.h"
#include "qmp-internal.h"
#include "runtime.h"
#include "qs/evloop.h"

static const char *qemu_slim;
static const char *module_dir;
static char *tmpdir;

/* ---- splitter, in process ---- */

static void split_msg(void *opaque, const char *json, size_t len)
{
    g_ptr_array_add(opaque, g_strndup(json, len));
}

static void split_err(void *opaque, const char *desc)
{
    g_ptr_array_add(opaque, g_strdup_printf("ERROR %s", desc));
}

static void test_splitter(void)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    JsonSplitter s;
    qs_json_splitter_init(&s, split_msg, split_err, out);
    const char *in = "{\"a\": \"}{\\\"\"}  [1,[2]]\n42 \"str\"}{\"b\":1}";
    /* byte by byte: boundaries must not depend on how the stream is cut */
    for (const char *p = in; *p; p++) qs_json_splitter_feed(&s, (const uint8_t *)p, 1);
    g_assert_cmpuint(out->len, ==, 6);
    g_assert_cmpstr(out->pdata[0], ==, "{\"a\": \"}{\\\"\"}");
    g_assert_cmpstr(out->pdata[1], ==, "[1,[2]]");
    g_assert_cmpstr(out->pdata[2], ==, "42");
    g_assert_cmpstr(out->pdata[3], ==, "\"str\"");
    g_assert_cmpstr(out->pdata[4], ==, "}");
    g_assert_cmpstr(out->pdata[5], ==, "{\"b\":1}");

    /* too large: one error, the rest of that message dropped, the next one parsed */
    g_ptr_array_set_size(out, 0);
    GString *big = g_string_new("{\"x\": \"");
    for (int i = 0; i < (1 << 20) + 10; i++) g_string_append_c(big, i % 2 ? '{' : '[');
    g_string_append(big, "\"}{\"ok\": 1}");
    qs_json_splitter_feed(&s, (const uint8_t *)big->str, big->len);
    g_assert_cmpuint(out->len, ==, 2);
    g_assert_true(g_str_has_prefix(out->pdata[0], "ERROR JSON message exceeds"));
    g_assert_cmpstr(out->pdata[1], ==, "{\"ok\": 1}");

    /* too deep */
    g_ptr_array_set_size(out, 0);
    g_string_truncate(big, 0);
    for (int i = 0; i < 2000; i++) g_string_append_c(big, '[');
    for (int i = 0; i < 2000; i++) g_string_append_c(big, ']');
    g_string_append(big, "{}");
    qs_json_splitter_feed(&s, (const uint8_t *)big->str, big->len);
    g_assert_cmpuint(out->len, ==, 2);
    g_assert_cmpstr(out->pdata[0], ==, "ERROR JSON nesting exceeds 1024 levels");
    g_assert_cmpstr(out->pdata[1], ==, "{}");
    g_string_free(big, TRUE);
    qs_json_splitter_free(&s);
    g_ptr_array_free(out, TRUE);
}

static void test_serializer(void)
{
    JsonParser *p = json_parser_new();
    g_assert_true(json_parser_load_from_data(
        p, "{\"b\": [1, true, null, \"q\\\"\\n\\u0001\"], \"a\": {}, \"d\": 1.5}", -1, NULL));
    GString *s = g_string_new(NULL);
    qs_json_append(s, json_parser_get_root(p));
    /* QEMU's layout, member order kept */
    g_assert_cmpstr(s->str, ==, "{\"b\": [1, true, null, \"q\\\"\\n\\u0001\"], \"a\": {}, \"d\": 1.5}");
    g_string_free(s, TRUE);
    g_object_unref(p);
}

/* ---- the binary ---- */

typedef struct Qemu {
    GPid pid;
    char *sock;
} Qemu;

typedef struct Conn {
    int fd;
    GString *buf;
} Conn;

static int unix_connect_retry(const char *path)
{
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) return fd;
        close(fd);
        g_usleep(10000);
    }
    g_error("cannot connect to %s", path);
}

/* A failed assertion must not leave qemu-slim running (and meson waiting on its pipes). */
static void die_with_parent(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static GPid spawn(const char *const *extra)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (gpointer)qemu_slim);
    g_ptr_array_add(argv, "-M");
    g_ptr_array_add(argv, "none");
    for (; *extra; extra++) g_ptr_array_add(argv, (gpointer)*extra);
    g_ptr_array_add(argv, NULL);
    g_auto(GStrv) env = g_get_environ();
    env = g_environ_setenv(env, "QS_MODULE_DIR", module_dir, TRUE);
    GPid pid;
    GError *err = NULL;
    g_assert_true(g_spawn_async(NULL, (char **)argv->pdata, env, G_SPAWN_DO_NOT_REAP_CHILD,
                                die_with_parent, NULL, &pid, &err));
    g_assert_no_error(err);
    g_ptr_array_free(argv, TRUE);
    return pid;
}

static int wait_exit(GPid pid)
{
    int status;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            g_assert_true(WIFEXITED(status));
            return WEXITSTATUS(status);
        }
        g_usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    g_error("qemu-slim did not exit");
}

/* Start qemu-slim with n QMP servers (sock0, sock1...) and extra args. */
static Qemu *qemu_start(int n, const char *const *extra)
{
    static int seq;
    Qemu *q = g_new0(Qemu, 1);
    GPtrArray *args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *base = g_strdup_printf("%s/q%d", tmpdir, seq++);
    q->sock = g_strdup(base);
    for (int i = 0; i < n; i++) {
        g_ptr_array_add(args, g_strdup("-qmp"));
        g_ptr_array_add(args, g_strdup_printf("unix:%s-%d.sock,server=on,wait=off", base, i));
    }
    for (; extra && *extra; extra++) g_ptr_array_add(args, g_strdup(*extra));
    g_ptr_array_add(args, NULL);
    q->pid = spawn((const char *const *)args->pdata);
    g_ptr_array_free(args, TRUE);
    return q;
}

static Conn *conn_new(int fd)
{
    Conn *c = g_new0(Conn, 1);
    c->fd = fd;
    c->buf = g_string_new(NULL);
    return c;
}

static Conn *qemu_connect(Qemu *q, int i)
{
    g_autofree char *path = g_strdup_printf("%s-%d.sock", q->sock, i);
    return conn_new(unix_connect_retry(path));
}

static void conn_free(Conn *c)
{
    close(c->fd);
    g_string_free(c->buf, TRUE);
    g_free(c);
}

/* One line (without \r\n), or NULL after timeout_ms / EOF. */
static char *conn_line(Conn *c, int timeout_ms)
{
    gint64 end = g_get_monotonic_time() + timeout_ms * 1000;
    for (;;) {
        char *nl = strstr(c->buf->str, "\r\n");
        if (nl) {
            char *line = g_strndup(c->buf->str, nl - c->buf->str);
            g_string_erase(c->buf, 0, nl - c->buf->str + 2);
            return line;
        }
        int left = (int)((end - g_get_monotonic_time()) / 1000);
        if (left <= 0) return NULL;
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, left) <= 0) continue;
        char buf[65536];
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n <= 0) return NULL;
        g_string_append_len(c->buf, buf, n);
    }
}

static void conn_send(Conn *c, const char *text)
{
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(c->fd, text + done, len - done);
        g_assert_cmpint(n, >, 0);
        done += n;
    }
}

/* Send, return the next line (a reply or an event). */
static char *xchg(Conn *c, const char *text)
{
    conn_send(c, text);
    char *line = conn_line(c, 5000);
    if (!line) g_error("no reply to %s", text);
    return line;
}

static void expect(Conn *c, const char *text, const char *reply)
{
    g_autofree char *line = xchg(c, text);
    if (strcmp(line, reply)) g_error("sent %s\n got %s\nwant %s", text, line, reply);
}

static JsonObject *parse_obj(const char *line)
{
    JsonParser *p = json_parser_new();
    GError *err = NULL;
    if (!json_parser_load_from_data(p, line, -1, &err)) g_error("bad JSON '%s': %s", line, err->message);
    JsonNode *root = json_parser_get_root(p);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(root));
    JsonObject *o = json_object_ref(json_node_get_object(root));
    g_object_unref(p);
    return o;
}

static void check_event(const char *line, const char *name)
{
    JsonObject *o = parse_obj(line);
    if (g_strcmp0(json_object_get_string_member_with_default(o, "event", NULL), name))
        g_error("expected event %s, got %s", name, line);
    JsonObject *ts = json_object_get_object_member(o, "timestamp");
    g_assert_nonnull(ts);
    gint64 sec = json_object_get_int_member(ts, "seconds");
    gint64 usec = json_object_get_int_member(ts, "microseconds");
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    g_assert_cmpint(sec, <=, now);
    g_assert_cmpint(sec, >=, now - 60);
    g_assert_cmpint(usec, >=, 0);
    g_assert_cmpint(usec, <, 1000000);
    json_object_unref(o);
}

static void negotiate(Conn *c)
{
    g_autofree char *g = conn_line(c, 5000);
    g_assert_nonnull(g);
    g_assert_true(g_str_has_prefix(g, "{\"QMP\": "));
    expect(c, "{\"execute\": \"qmp_capabilities\"}", "{\"return\": {}}");
}

static void quit(Qemu *q, Conn *c)
{
    g_autofree char *ev = xchg(c, "{\"execute\": \"quit\", \"id\": \"bye\"}");
    check_event(ev, "SHUTDOWN");
    g_assert_nonnull(strstr(ev, "\"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}"));
    g_autofree char *ret = conn_line(c, 5000);
    g_assert_cmpstr(ret, ==, "{\"return\": {}, \"id\": \"bye\"}");
    g_assert_cmpint(wait_exit(q->pid), ==, 0);
    g_spawn_close_pid(q->pid);
    g_free(q->sock);
    g_free(q);
}

static void test_greeting_and_negotiation(void)
{
    Qemu *q = qemu_start(1, NULL);
    Conn *c = qemu_connect(q, 0);
    g_autofree char *g = conn_line(c, 5000);
    unsigned maj, min, mic;
    g_assert_cmpint(sscanf(QS_VERSION, "%u.%u.%u", &maj, &min, &mic), ==, 3);
    g_autofree char *want = g_strdup_printf(
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %u, \"minor\": %u, \"major\": %u}, "
        "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}", mic, min, maj);
    g_assert_cmpstr(g, ==, want);

    expect(c, "{\"execute\": \"query-status\"}",
           "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
           "negotiation with 'qmp_capabilities'\"}}");
    expect(c, "{\"execute\": \"query-status\", \"id\": 7}",
           "{\"id\": 7, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting "
           "capabilities negotiation with 'qmp_capabilities'\"}}");
    expect(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"nope\"]}}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'null' does not "
           "accept value 'nope'\"}}");
    expect(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}, "
              "\"id\": {\"x\": [1]}}",
           "{\"return\": {}, \"id\": {\"x\": [1]}}");
    expect(c, "{\"execute\": \"qmp_capabilities\"}",
           "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation "
           "is already complete, command ignored\"}}");

    /* a new connection starts negotiation again */
    conn_free(c);
    c = qemu_connect(q, 0);
    g_autofree char *g2 = conn_line(c, 5000);
    g_assert_cmpstr(g2, ==, want);
    expect(c, "{\"execute\": \"query-version\"}",
           "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
           "negotiation with 'qmp_capabilities'\"}}");
    expect(c, "{\"execute\": \"qmp_capabilities\"}", "{\"return\": {}}");
    quit(q, c);
    conn_free(c);
}

static void test_commands(void)
{
    Qemu *q = qemu_start(1, NULL);
    Conn *c = qemu_connect(q, 0);
    negotiate(c);
    unsigned maj, min, mic;
    sscanf(QS_VERSION, "%u.%u.%u", &maj, &min, &mic);
    g_autofree char *ver = g_strdup_printf(
        "{\"return\": {\"qemu\": {\"micro\": %u, \"minor\": %u, \"major\": %u}, \"package\": \"\"}}",
        mic, min, maj);
    expect(c, "{\"execute\": \"query-version\"}", ver);
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");

    g_autofree char *cmds = xchg(c, "{\"execute\": \"query-commands\"}");
    const char *builtin[] = { "qmp_capabilities", "query-version", "query-status",
                              "query-commands", "query-plugins", "stop", "cont", "quit",
                              "system_reset" };
    for (size_t i = 0; i < G_N_ELEMENTS(builtin); i++) {
        g_autofree char *item = g_strdup_printf("{\"name\": \"%s\"}", builtin[i]);
        if (!strstr(cmds, item)) g_error("query-commands lacks %s: %s", builtin[i], cmds);
    }

    /* stop: STOP event before the reply (QEMU's order); a second stop sends no event */
    g_autofree char *ev1 = xchg(c, "{\"execute\": \"stop\"}");
    check_event(ev1, "STOP");
    g_assert_null(strstr(ev1, "\"data\""));
    g_autofree char *r1 = conn_line(c, 5000);
    g_assert_cmpstr(r1, ==, "{\"return\": {}}");
    expect(c, "{\"execute\": \"stop\"}", "{\"return\": {}}");
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}}");
    g_autofree char *ev2 = xchg(c, "{\"execute\": \"cont\"}");
    check_event(ev2, "RESUME");
    g_autofree char *r2 = conn_line(c, 5000);
    g_assert_cmpstr(r2, ==, "{\"return\": {}}");
    expect(c, "{\"execute\": \"cont\"}", "{\"return\": {}}");
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");

    g_autofree char *ev3 = xchg(c, "{\"execute\": \"system_reset\", \"id\": 3}");
    check_event(ev3, "RESET");
    g_assert_nonnull(strstr(ev3, "\"data\": {\"guest\": false, \"reason\": \"host-qmp-system-reset\"}"));
    g_autofree char *r3 = conn_line(c, 5000);
    g_assert_cmpstr(r3, ==, "{\"return\": {}, \"id\": 3}");
    quit(q, c);
    conn_free(c);
}

static void test_query_plugins(void)
{
    /* one module loaded, the others only found on QS_MODULE_DIR */
    Qemu *q = qemu_start(1, (const char *const[]){ "-plugin", "test-observer-good", NULL });
    Conn *c = qemu_connect(q, 0);
    negotiate(c);
    g_autofree char *line = xchg(c, "{\"execute\": \"query-plugins\"}");
    JsonObject *o = parse_obj(line);
    JsonArray *a = json_object_get_array_member(o, "return");
    g_assert_nonnull(a);
    bool saw_good = false, saw_fail = false;
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *m = json_array_get_object_element(a, i);
        const char *name = json_object_get_string_member(m, "name");
        if (!strcmp(name, "test-observer-good")) {
            saw_good = true;
            g_assert_true(json_object_get_boolean_member(m, "loaded"));
            g_assert_cmpstr(json_object_get_string_member(m, "version"), ==, "1.0");
            g_assert_cmpstr(json_object_get_string_member(m, "license"), ==, "GPL-2.0-or-later");
            g_assert_cmpstr(json_object_get_string_member(m, "description"), ==,
                            "registers an observer");
            g_autofree char *abi = g_strdup_printf("%d.%d", QS_ABI_MAJOR, QS_ABI_MINOR);
            g_assert_cmpstr(json_object_get_string_member(m, "abi"), ==, abi);
            g_assert_true(g_str_has_suffix(json_object_get_string_member(m, "file"),
                                           "/test-observer-good.so"));
            JsonArray *prov = json_object_get_array_member(m, "provides");
            g_assert_cmpuint(json_array_get_length(prov), ==, 1);
            g_assert_cmpstr(json_array_get_string_element(prov, 0), ==,
                            "observer:test-good-observer");
        }
        if (!strcmp(name, "test-observer-fail")) {
            saw_fail = true;
            g_assert_false(json_object_get_boolean_member(m, "loaded"));
        }
    }
    g_assert_true(saw_good);
    g_assert_true(saw_fail);
    json_object_unref(o);
    quit(q, c);
    conn_free(c);
}

static void test_errors(void)
{
    Qemu *q = qemu_start(1, NULL);
    Conn *c = qemu_connect(q, 0);
    negotiate(c);
    expect(c, "{\"execute\": \"no-such\", \"id\": 5}",
           "{\"id\": 5, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
           "no-such has not been found\"}}");
    expect(c, "{\"execute\": \"query-status\", \"arguments\": {\"verbose\": true}}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'verbose' is "
           "unexpected\"}}");
    expect(c, "{\"exec\": \"query-status\"}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec' is "
           "unexpected\"}}");
    expect(c, "{\"id\": 1}",
           "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks "
           "member 'execute'\"}}");
    expect(c, "[1, 2]",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON "
           "object\"}}");
    expect(c, "42 ",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON "
           "object\"}}");
    expect(c, "{\"execute\": 5}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' "
           "must be a string\"}}");
    expect(c, "{\"execute\": \"query-status\", \"arguments\": []}",
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
           "'arguments' must be an object\"}}");
    g_autofree char *bad = xchg(c, "{\"execute\": \"query-status\", bad}");
    g_assert_true(g_str_has_prefix(bad, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                                        "\"JSON parse error, "));
    g_autofree char *stray = xchg(c, "}");
    g_assert_true(g_str_has_prefix(stray, "{\"error\": {\"class\": \"GenericError\", "
                                          "\"desc\": \"JSON parse error, "));

    /* oversized: one error, then the connection still works */
    GString *big = g_string_new("{\"execute\": \"query-status\", \"arguments\": {\"x\": \"");
    for (int i = 0; i < (2 << 20); i++) g_string_append_c(big, 'a' + i % 26);
    g_string_append(big, "\"}}");
    expect(c, big->str,
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, JSON "
           "message exceeds 1048576 bytes\"}}");
    g_string_free(big, TRUE);
    expect(c, "{\"execute\": \"query-status\", \"id\": \"after\"}",
           "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, "
           "\"id\": \"after\"}");

    /* over-nested */
    GString *deep = g_string_new(NULL);
    for (int i = 0; i < 5000; i++) g_string_append_c(deep, '[');
    for (int i = 0; i < 5000; i++) g_string_append_c(deep, ']');
    expect(c, deep->str,
           "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, JSON "
           "nesting exceeds 1024 levels\"}}");
    g_string_free(deep, TRUE);

    /* a command split over many writes, and two in one write */
    conn_send(c, "{\"exec");
    g_usleep(20000);
    conn_send(c, "ute\": \"query-");
    g_usleep(20000);
    g_autofree char *split = xchg(c, "status\"}{\"execute\": \"query-status\", \"id\": 2}");
    g_assert_cmpstr(split, ==, "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                               "\"running\": true}}");
    g_autofree char *second = conn_line(c, 5000);
    g_assert_cmpstr(second, ==, "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                                "\"running\": true}, \"id\": 2}");

    /* binary garbage */
    g_autofree char *garbage = xchg(c, "\x01\xff\xfe garbage\n");
    g_assert_true(g_str_has_prefix(garbage, "{\"error\": {\"class\": \"GenericError\""));
    g_autofree char *rest = conn_line(c, 300);   /* possibly a second error for "garbage" */
    if (rest) g_assert_true(g_str_has_prefix(rest, "{\"error\": "));
    g_autofree char *after = xchg(c, "{\"execute\": \"query-status\", \"id\": 9}");
    g_assert_cmpstr(after, ==, "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
                               "\"running\": true}, \"id\": 9}");
    quit(q, c);
    conn_free(c);
}

static void test_two_monitors(void)
{
    Qemu *q = qemu_start(2, NULL);
    Conn *a = qemu_connect(q, 0);
    Conn *b = qemu_connect(q, 1);
    negotiate(a);
    g_autofree char *gb = conn_line(b, 5000);
    g_assert_true(g_str_has_prefix(gb, "{\"QMP\": "));
    /* b still negotiating: gets no events, its commands are refused */
    g_autofree char *ev = xchg(a, "{\"execute\": \"stop\"}");
    check_event(ev, "STOP");
    g_autofree char *r = conn_line(a, 5000);
    g_assert_cmpstr(r, ==, "{\"return\": {}}");
    expect(b, "{\"execute\": \"cont\"}",
           "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
           "negotiation with 'qmp_capabilities'\"}}");
    expect(b, "{\"execute\": \"qmp_capabilities\"}", "{\"return\": {}}");
    /* both negotiated: cont on b, RESUME reaches both */
    g_autofree char *evb = xchg(b, "{\"execute\": \"cont\"}");
    check_event(evb, "RESUME");
    g_autofree char *rb = conn_line(b, 5000);
    g_assert_cmpstr(rb, ==, "{\"return\": {}}");
    g_autofree char *eva = conn_line(a, 5000);
    check_event(eva, "RESUME");
    /* quit on a: SHUTDOWN on b too */
    conn_send(a, "{\"execute\": \"quit\"}");
    g_autofree char *sb = conn_line(b, 5000);
    check_event(sb, "SHUTDOWN");
    g_assert_cmpint(wait_exit(q->pid), ==, 0);
    g_spawn_close_pid(q->pid);
    conn_free(a);
    conn_free(b);
    g_free(q->sock);
    g_free(q);
}

static void test_prelaunch(void)
{
    Qemu *q = qemu_start(1, (const char *const[]){ "-S", NULL });
    Conn *c = qemu_connect(q, 0);
    negotiate(c);
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}");
    g_autofree char *ev = xchg(c, "{\"execute\": \"cont\"}");
    check_event(ev, "RESUME");
    g_autofree char *r = conn_line(c, 5000);
    g_assert_cmpstr(r, ==, "{\"return\": {}}");
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");
    quit(q, c);
    conn_free(c);
}

/* -qmp unix:PATH: qemu-slim connects to a socket the test listens on (libqtest). */
static void test_client_mode(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "listen.sock", NULL);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    g_assert_cmpint(listen(lfd, 1), ==, 0);
    g_autofree char *spec = g_strdup_printf("unix:%s", path);
    Qemu *q = g_new0(Qemu, 1);
    q->pid = spawn((const char *const[]){ "-qmp", spec, NULL });
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    g_assert_cmpint(poll(&p, 1, 10000), ==, 1);
    Conn *c = conn_new(accept(lfd, NULL, NULL));
    negotiate(c);
    expect(c, "{\"execute\": \"query-status\"}",
           "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");
    quit(q, c);
    conn_free(c);
    close(lfd);
    g_unlink(path);

    /* nobody listening: one line naming the spec and the errno text, status 1 */
    g_autofree char *out = NULL, *err = NULL;
    int status;
    const char *argv[] = { qemu_slim, "-M", "none", "-qmp", spec, NULL };
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_true(g_str_has_prefix(err, "qemu-slim: -qmp "));
    g_assert_nonnull(strstr(err, spec));
    g_assert_nonnull(strstr(err, "No such file or directory"));
}

/* ---- the public API in process: module-style commands, events from another thread ---- */

static JsonNode *cmd_echo(JsonObject *args, void *opaque, GError **errp)
{
    if (!json_object_has_member(args, "text")) {
        g_set_error(errp, QS_QMP_ERROR, QS_QMP_ERROR_DEVICE_NOT_FOUND, "Device '%s' not found",
                    (const char *)opaque);
        return NULL;
    }
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "echo", json_object_get_string_member(args, "text"));
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}

static JsonNode *cmd_any(JsonObject *args, void *opaque, GError **errp)
{
    if (!qs_qmp_check_args(args, QS_STRV("a", "b"), errp)) return NULL;
    return json_node_init_int(json_node_alloc(), json_object_get_size(args));
}

static gpointer emit_thread(gpointer data)
{
    JsonObject *d = json_object_new();
    json_object_set_int_member(d, "n", 42);
    qs_qmp_event_emit("TEST_EVENT", d);
    json_object_unref(d);
    return NULL;
}


/* Read a line while iterating the in-process main loop. */
static char *inproc_line(Conn *c)
{
    for (int i = 0; i < 5000; i++) {
        qs_loop_iterate(qs_loop_main(), false);
        char *line = conn_line(c, 1);
        if (line) return line;
    }
    g_error("no line from the in-process monitor");
}

static char *inproc_xchg(Conn *c, const char *text)
{
    conn_send(c, text);
    return inproc_line(c);
}

static void test_inprocess_api(void)
{
    GError *err = NULL;
    g_assert_true(qs_qmp_register_full("x-echo", QS_STRV("text"), cmd_echo, "dev0", &err));
    g_assert_no_error(err);
    g_assert_true(qs_qmp_register("x-any", cmd_any, NULL, &err));
    g_assert_false(qs_qmp_register("x-echo", cmd_any, NULL, &err));
    g_assert_nonnull(strstr(err->message, "'x-echo' is already registered"));
    g_clear_error(&err);

    g_autofree char *path = g_build_filename(tmpdir, "inproc.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    g_assert_true(qs_qmp_start(spec, &err));
    g_assert_no_error(err);
    g_assert_false(qs_qmp_start("unix:/nonexistent-dir/x.sock,server=on,wait=off", &err));
    g_assert_nonnull(strstr(err->message, "/nonexistent-dir/x.sock"));
    g_clear_error(&err);

    Conn *c = conn_new(unix_connect_retry(path));
    g_autofree char *greet = inproc_line(c);
    g_assert_true(g_str_has_prefix(greet, "{\"QMP\": "));
    g_autofree char *r0 = inproc_xchg(c, "{\"execute\": \"qmp_capabilities\"}");
    g_assert_cmpstr(r0, ==, "{\"return\": {}}");
    g_autofree char *r1 = inproc_xchg(c, "{\"execute\": \"x-echo\", \"arguments\": {\"text\": \"hi\"}}");
    g_assert_cmpstr(r1, ==, "{\"return\": {\"echo\": \"hi\"}}");
    g_autofree char *r2 = inproc_xchg(c, "{\"execute\": \"x-echo\", \"arguments\": {\"txt\": 1}}");
    g_assert_cmpstr(r2, ==, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                            "\"Parameter 'txt' is unexpected\"}}");
    g_autofree char *r3 = inproc_xchg(c, "{\"execute\": \"x-echo\", \"id\": 1}");
    g_assert_cmpstr(r3, ==, "{\"id\": 1, \"error\": {\"class\": \"DeviceNotFound\", "
                            "\"desc\": \"Device 'dev0' not found\"}}");
    g_autofree char *r4 = inproc_xchg(c, "{\"execute\": \"x-any\", \"arguments\": {\"a\": 1, \"b\": 2}}");
    g_assert_cmpstr(r4, ==, "{\"return\": 2}");
    g_autofree char *r5 = inproc_xchg(c, "{\"execute\": \"x-any\", \"arguments\": {\"c\": 1}}");
    g_assert_cmpstr(r5, ==, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                            "\"Parameter 'c' is unexpected\"}}");

    /* an event emitted from another thread reaches the monitor through the main loop */
    GThread *t = g_thread_new("emit", emit_thread, NULL);
    g_thread_join(t);
    g_autofree char *ev = inproc_line(c);
    check_event(ev, "TEST_EVENT");
    g_assert_nonnull(strstr(ev, "\"data\": {\"n\": 42}"));

    qs_qmp_unregister("x-echo");
    g_autofree char *r6 = inproc_xchg(c, "{\"execute\": \"x-echo\"}");
    g_assert_cmpstr(r6, ==, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                            "\"The command x-echo has not been found\"}}");
    qs_qmp_unregister("x-any");
    conn_free(c);
    qs_qmp_shutdown();
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_evloop_init();
    qemu_slim = g_getenv("QS_TEST_QEMU_SLIM");
    module_dir = g_getenv("QS_TEST_LOOP_MODULE_DIR");
    g_assert_nonnull(qemu_slim);
    g_assert_nonnull(module_dir);
    tmpdir = g_dir_make_tmp("qs-qmp-XXXXXX", NULL);
    g_test_add_func("/qmp/splitter", test_splitter);
    g_test_add_func("/qmp/serializer", test_serializer);
    g_test_add_func("/qmp/greeting-negotiation", test_greeting_and_negotiation);
    g_test_add_func("/qmp/commands-events", test_commands);
    g_test_add_func("/qmp/query-plugins", test_query_plugins);
    g_test_add_func("/qmp/errors", test_errors);
    g_test_add_func("/qmp/two-monitors", test_two_monitors);
    g_test_add_func("/qmp/prelaunch", test_prelaunch);
    g_test_add_func("/qmp/client-mode", test_client_mode);
    g_test_add_func("/qmp/in-process-api", test_inprocess_api);
    int r = g_test_run();
    /* leftover sockets of servers that exited */
    GDir *d = g_dir_open(tmpdir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(tmpdir, name, NULL);
        g_unlink(p);
    }
    if (d) g_dir_close(d);
    g_rmdir(tmpdir);
    return r;
}
