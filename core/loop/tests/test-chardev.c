/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Chardev unit tests over loopback: unix and tcp servers and clients, reconnection,
 * large writes to a slow reader (nothing lost), file output, iothread delivery, errors. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <glib/gstdio.h>
#include "qs/chardev.h"
#include "runtime.h"

typedef struct Peer {
    GByteArray *in;
    int opened, closed;
    QsLoop *expect_loop;
    int wrong_thread;
} Peer;

static void peer_read(void *opaque, const uint8_t *buf, size_t len)
{
    Peer *p = opaque;
    if (p->expect_loop && !qs_loop_in_thread(p->expect_loop)) p->wrong_thread++;
    g_byte_array_append(p->in, buf, len);
}

static void peer_event(void *opaque, QsChardevEvent ev)
{
    Peer *p = opaque;
    if (ev == QS_CHARDEV_OPENED) g_atomic_int_inc(&p->opened);
    else g_atomic_int_inc(&p->closed);
}

static const QsChardevHandlers peer_handlers = { .read = peer_read, .event = peer_event };

static char *tmpdir;

static void spin_until(bool (*cond)(void *), void *arg)
{
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (!cond(arg) && g_get_monotonic_time() < end) {
        qs_loop_iterate(qs_loop_main(), false);
        g_usleep(500);
    }
    g_assert_true(cond(arg));
}

typedef struct Want { Peer *p; guint len; int opened, closed; } Want;
static bool want_ok(void *a)
{
    Want *w = a;
    return w->p->in->len >= w->len && g_atomic_int_get(&w->p->opened) >= w->opened &&
           g_atomic_int_get(&w->p->closed) >= w->closed;
}

static void wait_peer(Peer *p, guint len, int opened, int closed)
{
    Want w = { p, len, opened, closed };
    spin_until(want_ok, &w);
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    return fd;
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
    return fd;
}

static void read_exact(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        g_assert_cmpint(n, >, 0);
        done += n;
    }
}

/* A server: a client connects, talks both ways, leaves; the next one is accepted. */
static void server_roundtrip(const char *spec, int (*dial)(const void *), const void *arg)
{
    GError *err = NULL;
    Peer p = { .in = g_byte_array_new() };
    QsChardev *chr = qs_chardev_open(spec, "srv", &err);
    g_assert_no_error(err);
    qs_chardev_set_handlers(chr, NULL, &peer_handlers, &p);
    g_assert_false(qs_chardev_connected(chr));
    g_assert_cmpint(qs_chardev_write(chr, "lost", 4), ==, -ENOTCONN);

    for (int round = 1; round <= 2; round++) {
        int fd = dial(arg);
        wait_peer(&p, 0, round, round - 1);
        g_assert_true(qs_chardev_connected(chr));
        g_assert_cmpint(write(fd, "ping", 4), ==, 4);
        wait_peer(&p, 4 * round, round, round - 1);
        g_assert_cmpint(memcmp(p.in->data + 4 * (round - 1), "ping", 4), ==, 0);
        g_assert_cmpint(qs_chardev_write(chr, "pong", 4), ==, 4);
        char buf[4];
        read_exact(fd, buf, 4);
        g_assert_cmpint(memcmp(buf, "pong", 4), ==, 0);
        close(fd);
        wait_peer(&p, 4 * round, round, round);
        g_assert_false(qs_chardev_connected(chr));
    }
    qs_chardev_close(chr);
    g_byte_array_unref(p.in);
}

static int dial_unix(const void *path) { return unix_connect(path); }
static int dial_tcp(const void *port) { return tcp_connect(*(const int *)port); }

static void test_unix_server(void)
{
    g_autofree char *path = g_build_filename(tmpdir, "srv.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    server_roundtrip(spec, dial_unix, path);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));   /* unlinked on close */
    /* legacy flags */
    g_autofree char *spec2 = g_strdup_printf("unix:%s,server,nowait", path);
    server_roundtrip(spec2, dial_unix, path);
}

static void test_tcp_server(void)
{
    GError *err = NULL;
    QsChardev *probe = qs_chardev_open("tcp:127.0.0.1:0,server=on,wait=off", NULL, &err);
    g_assert_no_error(err);
    int port = qs_chardev_port(probe);
    g_assert_cmpint(port, >, 0);
    qs_chardev_close(probe);
    g_autofree char *spec = g_strdup_printf("tcp:127.0.0.1:%d,server=on,wait=off", port);
    server_roundtrip(spec, dial_tcp, &port);
}

/* Client mode: connect to a socket the test listens on (libqtest's way). */
static void test_clients(void)
{
    GError *err = NULL;
    for (int tcp = 0; tcp <= 1; tcp++) {
        int lfd;
        g_autofree char *spec = NULL;
        g_autofree char *path = g_build_filename(tmpdir, "cli.sock", NULL);
        if (tcp) {
            lfd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sin = { .sin_family = AF_INET,
                                       .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
            g_assert_cmpint(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), ==, 0);
            socklen_t sl = sizeof(sin);
            getsockname(lfd, (struct sockaddr *)&sin, &sl);
            spec = g_strdup_printf("tcp:127.0.0.1:%d", ntohs(sin.sin_port));
        } else {
            lfd = socket(AF_UNIX, SOCK_STREAM, 0);
            struct sockaddr_un sun = { .sun_family = AF_UNIX };
            g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
            g_assert_cmpint(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
            spec = g_strdup_printf("unix:%s", path);
        }
        g_assert_cmpint(listen(lfd, 1), ==, 0);
        Peer p = { .in = g_byte_array_new() };
        QsChardev *chr = qs_chardev_open(spec, NULL, &err);
        g_assert_no_error(err);
        g_assert_true(qs_chardev_connected(chr));
        int fd = accept(lfd, NULL, NULL);
        qs_chardev_set_handlers(chr, NULL, &peer_handlers, &p);
        g_assert_cmpint(p.opened, ==, 1);          /* already connected: OPENED at once */
        g_assert_cmpint(qs_chardev_write(chr, "hello", 5), ==, 5);
        char buf[5];
        read_exact(fd, buf, 5);
        g_assert_cmpint(memcmp(buf, "hello", 5), ==, 0);
        g_assert_cmpint(write(fd, "abc", 3), ==, 3);
        wait_peer(&p, 3, 1, 0);
        close(fd);
        wait_peer(&p, 3, 1, 1);                    /* peer gone: CLOSED, no reconnect */
        g_assert_false(qs_chardev_connected(chr));
        qs_chardev_close(chr);
        close(lfd);
        g_unlink(path);
        g_byte_array_unref(p.in);
    }
}

/* 8 MiB written at once to a peer that reads slowly: queued, sent in order, complete. */
typedef struct Reader { int fd; size_t len; GByteArray *got; } Reader;
static gpointer slow_reader(gpointer data)
{
    Reader *r = data;
    uint8_t buf[65536];
    while (r->got->len < r->len) {
        ssize_t n = read(r->fd, buf, sizeof(buf));
        if (n <= 0) break;
        g_byte_array_append(r->got, buf, n);
        if (r->got->len < (1u << 20)) g_usleep(2000);   /* slow at first: fills the queue */
    }
    return NULL;
}

static bool reader_done(void *a) { Reader *r = a; return (size_t)g_atomic_int_get(&r->got->len) >= r->len; }

static void test_large_write(void)
{
    GError *err = NULL;
    g_autofree char *path = g_build_filename(tmpdir, "big.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    QsChardev *chr = qs_chardev_open(spec, "big", &err);
    g_assert_no_error(err);
    Peer p = { .in = g_byte_array_new() };
    qs_chardev_set_handlers(chr, NULL, &peer_handlers, &p);
    int fd = unix_connect(path);
    wait_peer(&p, 0, 1, 0);
    size_t len = 8u << 20;
    uint8_t *data = g_malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 2654435761u >> 13);
    Reader r = { fd, len, g_byte_array_new() };
    GThread *th = g_thread_new("reader", slow_reader, &r);
    /* two writes: the second lands behind the first's queued tail */
    g_assert_cmpint(qs_chardev_write(chr, data, len / 2), ==, (ssize_t)(len / 2));
    g_assert_cmpint(qs_chardev_write(chr, data + len / 2, len / 2), ==, (ssize_t)(len / 2));
    spin_until(reader_done, &r);
    g_thread_join(th);
    g_assert_cmpuint(r.got->len, ==, len);
    g_assert_cmpint(memcmp(r.got->data, data, len), ==, 0);
    close(fd);
    qs_chardev_close(chr);
    g_free(data);
    g_byte_array_unref(r.got);
    g_byte_array_unref(p.in);
}

/* Input is delivered in the loop passed to set_handlers. */
static void test_iothread_delivery(void)
{
    GError *err = NULL;
    QsLoop *io = qs_iothread_new("chr-io", &err);
    g_assert_no_error(err);
    g_autofree char *path = g_build_filename(tmpdir, "io.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on,wait=off", path);
    QsChardev *chr = qs_chardev_open(spec, "io", &err);
    g_assert_no_error(err);
    Peer p = { .in = g_byte_array_new(), .expect_loop = io };
    qs_chardev_set_handlers(chr, io, &peer_handlers, &p);
    int fd = unix_connect(path);
    g_assert_cmpint(write(fd, "xyz", 3), ==, 3);
    for (int i = 0; i < 5000 && (guint)g_atomic_int_get(&p.in->len) < 3u; i++) g_usleep(1000);
    g_assert_cmpuint(p.in->len, ==, 3);
    g_assert_cmpint(p.wrong_thread, ==, 0);
    g_assert_cmpint(qs_chardev_write(chr, "ok", 2), ==, 2);   /* from a foreign thread */
    char buf[2];
    read_exact(fd, buf, 2);
    close(fd);
    for (int i = 0; i < 5000 && !g_atomic_int_get(&p.closed); i++) g_usleep(1000);
    qs_iothread_free(io);    /* its loop stops: no handler runs while we close */
    qs_chardev_close(chr);
    g_byte_array_unref(p.in);
}

static void test_file(void)
{
    GError *err = NULL;
    g_autofree char *path = g_build_filename(tmpdir, "out.txt", NULL);
    g_autofree char *spec = g_strdup_printf("file:%s", path);
    QsChardev *chr = qs_chardev_open(spec, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(qs_chardev_write(chr, "line 1\n", 7), ==, 7);
    g_assert_cmpint(qs_chardev_write(chr, "line 2\n", 7), ==, 7);
    qs_chardev_close(chr);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "line 1\nline 2\n");
    g_unlink(path);
}

static void expect_open_error(const char *spec, const char *needle)
{
    GError *err = NULL;
    g_assert_null(qs_chardev_open(spec, NULL, &err));
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) g_error("'%s': message '%s' lacks '%s'", spec, err->message, needle);
    g_assert_nonnull(strstr(err->message, spec));   /* names the spec */
    g_error_free(err);
}

static void test_errors(void)
{
    g_autofree char *missing = g_build_filename(tmpdir, "nobody-listens.sock", NULL);
    g_autofree char *s1 = g_strdup_printf("unix:%s", missing);
    expect_open_error(s1, "No such file or directory");
    g_autofree char *s2 = g_strdup_printf("unix:%s,server=on,wait=off,colour=red", missing);
    expect_open_error(s2, "unknown option 'colour'");
    g_autofree char *s3 = g_strdup_printf("unix:%s,server=maybe", missing);
    expect_open_error(s3, "expects on or off, got 'maybe'");
    expect_open_error("pty", "unknown backend");
    expect_open_error("tcp:localhost", "expected tcp:HOST:PORT");
    expect_open_error("file:/nonexistent-dir/x", "No such file or directory");
    expect_open_error("unix:/nonexistent-dir/x.sock,server=on,wait=off",
                      "No such file or directory");
    g_autofree char *longp = g_strnfill(200, 'a');
    g_autofree char *s4 = g_strdup_printf("unix:/tmp/%s", longp);
    expect_open_error(s4, "unix socket path must be 1 to 107 bytes, got 205");

    /* connection refused on tcp: a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bind(fd, (struct sockaddr *)&sin, sizeof(sin));
    socklen_t sl = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    g_autofree char *s5 = g_strdup_printf("tcp:127.0.0.1:%d", ntohs(sin.sin_port));
    expect_open_error(s5, "Connection refused");
    close(fd);
}

/* wait=on: open blocks until the first client is there. */
static gpointer late_dial(gpointer path)
{
    g_usleep(100000);
    int fd = -1;
    for (int i = 0; i < 100 && fd < 0; i++) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        g_strlcpy(sun.sun_path, path, sizeof(sun.sun_path));
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun))) { close(fd); fd = -1; g_usleep(10000); }
    }
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, "early", 5), ==, 5);
    return GINT_TO_POINTER(fd);
}

static void test_wait_on(void)
{
    GError *err = NULL;
    g_autofree char *path = g_build_filename(tmpdir, "wait.sock", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s,server=on", path);
    GThread *t = g_thread_new("dial", late_dial, path);
    gint64 t0 = g_get_monotonic_time();
    QsChardev *chr = qs_chardev_open(spec, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 90000);
    g_assert_true(qs_chardev_connected(chr));
    int fd = GPOINTER_TO_INT(g_thread_join(t));
    Peer p = { .in = g_byte_array_new() };
    qs_chardev_set_handlers(chr, NULL, &peer_handlers, &p);
    g_assert_cmpint(p.opened, ==, 1);
    wait_peer(&p, 5, 1, 0);      /* bytes sent before handlers were set are not lost */
    g_assert_cmpint(memcmp(p.in->data, "early", 5), ==, 0);
    close(fd);
    wait_peer(&p, 5, 1, 1);
    qs_chardev_close(chr);
    g_byte_array_unref(p.in);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_evloop_init();
    tmpdir = g_dir_make_tmp("qs-chr-XXXXXX", NULL);
    g_test_add_func("/chardev/unix-server", test_unix_server);
    g_test_add_func("/chardev/tcp-server", test_tcp_server);
    g_test_add_func("/chardev/clients", test_clients);
    g_test_add_func("/chardev/large-write", test_large_write);
    g_test_add_func("/chardev/iothread", test_iothread_delivery);
    g_test_add_func("/chardev/file", test_file);
    g_test_add_func("/chardev/errors", test_errors);
    g_test_add_func("/chardev/wait-on", test_wait_on);
    int r = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return r;
}
