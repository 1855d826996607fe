/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Character devices: stdio, file, and unix/tcp stream sockets (client or server), with a
 * thread-safe write queue drained from the chardev's loop and input delivered there. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "qs/chardev.h"
#include "qs-internal.h"
#include "loop-internal.h"

#define CHR_MAX_QUEUE (64u << 20)
#define CHR_READ_SIZE 4096

typedef enum { CHR_STDIO, CHR_FILE, CHR_SOCKET } ChrType;

struct QsChardev {
    char *spec;
    char *label;
    ChrType type;
    bool is_unix;
    bool server;
    bool wait;
    char *path;                 /* unix socket path */
    char *host, *service;       /* tcp */
    int port;

    int listen_fd;
    int in_fd;                  /* -1 when none */
    int out_fd;
    bool connected;

    QsLoop *loop;
    const QsChardevHandlers *h;
    void *opaque;
    QsFdHandler *listen_watch;
    QsFdHandler *conn_watch;    /* in_fd (sockets: also output readiness) */
    QsBH *kick_bh;              /* another thread queued output */

    GMutex lock;                /* outq, connected, out_fd for writers */
    GByteArray *outq;

    int busy;                   /* inside a handler: defer close */
    bool close_pending;
};

static void chr_error(GError **errp, QsChardev *chr, const char *what, int err)
{
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "chardev '%s': %s: %s", chr->spec, what,
                g_strerror(err));
}

/* ---- parsing ---- */

static bool parse_flag(const char *v, const char *key, bool *out, QsChardev *chr,
                       GError **errp)
{
    if (!v || !strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true")) *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false")) *out = false;
    else {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "chardev '%s': option '%s' expects on or off, got '%s'", chr->spec, key, v);
        return false;
    }
    return true;
}

static bool parse_socket_opts(QsChardev *chr, const char *opts, GError **errp)
{
    chr->wait = true;
    if (!opts || !*opts) return true;
    g_auto(GStrv) items = g_strsplit(opts, ",", -1);
    for (int i = 0; items[i]; i++) {
        char *it = items[i];
        if (!*it) continue;
        char *eq = strchr(it, '=');
        const char *val = NULL;
        if (eq) { *eq = 0; val = eq + 1; }
        if (!strcmp(it, "server")) {
            if (!parse_flag(val, it, &chr->server, chr, errp)) return false;
        } else if (!strcmp(it, "wait")) {
            if (!parse_flag(val, it, &chr->wait, chr, errp)) return false;
        } else if (!strcmp(it, "nowait") && !val) {
            chr->wait = false;
        } else {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "chardev '%s': unknown option '%s' (known: server, wait, nowait)",
                        chr->spec, it);
            return false;
        }
    }
    return true;
}

static bool parse_spec(QsChardev *chr, GError **errp)
{
    const char *s = chr->spec;
    if (!strcmp(s, "stdio")) {
        chr->type = CHR_STDIO;
        return true;
    }
    if (g_str_has_prefix(s, "file:")) {
        chr->type = CHR_FILE;
        chr->path = g_strdup(s + 5);
        if (!*chr->path) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "chardev '%s': empty file name", s);
            return false;
        }
        return true;
    }
    bool is_unix = g_str_has_prefix(s, "unix:");
    if (!is_unix && !g_str_has_prefix(s, "tcp:")) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "chardev '%s': unknown backend (expected stdio, file:PATH, unix:PATH or "
                    "tcp:HOST:PORT)", s);
        return false;
    }
    chr->type = CHR_SOCKET;
    chr->is_unix = is_unix;
    const char *addr = s + (is_unix ? 5 : 4);
    const char *comma = strchr(addr, ',');
    g_autofree char *a = comma ? g_strndup(addr, comma - addr) : g_strdup(addr);
    if (!parse_socket_opts(chr, comma ? comma + 1 : NULL, errp)) return false;
    if (is_unix) {
        struct sockaddr_un sun;
        if (!*a || strlen(a) >= sizeof(sun.sun_path)) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "chardev '%s': unix socket path must be 1 to %zu bytes, got %zu", s,
                        sizeof(sun.sun_path) - 1, strlen(a));
            return false;
        }
        chr->path = g_steal_pointer(&a);
        return true;
    }
    char *colon = strrchr(a, ':');
    if (!colon || !colon[1]) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "chardev '%s': expected tcp:HOST:PORT", s);
        return false;
    }
    *colon = 0;
    char *host = a;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { host[hl - 1] = 0; host++; }
    chr->host = g_strdup(host);
    chr->service = g_strdup(colon + 1);
    return true;
}

/* ---- sockets ---- */

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static struct addrinfo *resolve(QsChardev *chr, GError **errp)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = chr->server ? AI_PASSIVE : 0 };
    struct addrinfo *res = NULL;
    const char *host = *chr->host ? chr->host : (chr->server ? NULL : "localhost");
    int r = getaddrinfo(host, chr->service, &hints, &res);
    if (r) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "chardev '%s': address '%s:%s' cannot be resolved: %s", chr->spec,
                    chr->host, chr->service, gai_strerror(r));
        return NULL;
    }
    return res;
}

static int socket_connect(QsChardev *chr, GError **errp)
{
    if (chr->is_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        strcpy(sun.sun_path, chr->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { chr_error(errp, chr, "socket", errno); return -1; }
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            int e = errno;
            close(fd);
            g_autofree char *what = g_strdup_printf("Failed to connect to '%s'", chr->path);
            chr_error(errp, chr, what, e);
            return -1;
        }
        return fd;
    }
    struct addrinfo *res = resolve(chr, errp);
    if (!res) return -1;
    int e = 0, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("Failed to connect to '%s:%s'", chr->host,
                                                chr->service);
        chr_error(errp, chr, what, e);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int socket_listen(QsChardev *chr, GError **errp)
{
    if (chr->is_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        strcpy(sun.sun_path, chr->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { chr_error(errp, chr, "socket", errno); return -1; }
        struct stat st;
        if (lstat(chr->path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(chr->path);
        if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1) < 0) {
            int e = errno;
            close(fd);
            g_autofree char *what = g_strdup_printf("Failed to bind socket to %s", chr->path);
            chr_error(errp, chr, what, e);
            return -1;
        }
        return fd;
    }
    struct addrinfo *res = resolve(chr, errp);
    if (!res) return -1;
    int e = 0, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_autofree char *what = g_strdup_printf("Failed to listen on '%s:%s'", chr->host,
                                                chr->service);
        chr_error(errp, chr, what, e);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        chr->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

/* ---- connection life cycle (in the chardev's loop) ---- */

static void conn_ready(int fd, GIOCondition cond, void *opaque);
static void listen_ready(int fd, GIOCondition cond, void *opaque);
static void really_close(QsChardev *chr);

static void chr_enter(QsChardev *chr) { chr->busy++; }

/* Returns false when the chardev was closed by a handler (do not touch it). */
static bool chr_leave(QsChardev *chr)
{
    if (--chr->busy == 0 && chr->close_pending) {
        really_close(chr);
        return false;
    }
    return true;
}

static void emit_event(QsChardev *chr, QsChardevEvent ev)
{
    if (chr->h && chr->h->event) chr->h->event(chr->opaque, ev);
}

static GIOCondition conn_events(QsChardev *chr)
{
    GIOCondition ev = chr->h && chr->h->read && chr->in_fd >= 0 ? G_IO_IN : 0;
    g_mutex_lock(&chr->lock);
    if (chr->outq->len) ev |= G_IO_OUT;
    g_mutex_unlock(&chr->lock);
    return ev;
}

static void conn_watch_update(QsChardev *chr)
{
    if (chr->conn_watch) qs_fd_handler_set_events(chr->conn_watch, conn_events(chr));
}

static void conn_watch_start(QsChardev *chr)
{
    if (chr->type != CHR_SOCKET && chr->in_fd < 0) return;
    int fd = chr->type == CHR_SOCKET ? chr->out_fd : chr->in_fd;
    if (fd < 0 || chr->conn_watch) return;
    if (chr->type != CHR_SOCKET && !(chr->h && chr->h->read)) return;
    g_autofree char *name = g_strdup_printf("chardev:%s", chr->label);
    chr->conn_watch = qs_fd_handler_new(chr->loop, name, fd, conn_events(chr), conn_ready, chr);
}

static void listen_watch_start(QsChardev *chr)
{
    if (chr->listen_fd < 0 || chr->listen_watch) return;
    g_autofree char *name = g_strdup_printf("chardev-listen:%s", chr->label);
    chr->listen_watch = qs_fd_handler_new(chr->loop, name, chr->listen_fd, G_IO_IN,
                                          listen_ready, chr);
}

static void set_connected(QsChardev *chr, int fd)
{
    set_nonblock(fd);
    g_mutex_lock(&chr->lock);
    chr->in_fd = chr->out_fd = fd;
    chr->connected = true;
    g_mutex_unlock(&chr->lock);
    g_clear_pointer(&chr->listen_watch, qs_fd_handler_free);
    conn_watch_start(chr);
}

/* Drop the peer; emits CLOSED; a server listens again.  In the chardev's loop. */
static void drop_peer(QsChardev *chr)
{
    if (chr->type != CHR_SOCKET) {
        /* stdin at EOF: stop reading; output stays */
        g_clear_pointer(&chr->conn_watch, qs_fd_handler_free);
        chr->in_fd = -1;
        return;
    }
    g_mutex_lock(&chr->lock);
    bool was = chr->connected;
    int fd = chr->out_fd;
    chr->connected = false;
    chr->in_fd = chr->out_fd = -1;
    g_byte_array_set_size(chr->outq, 0);
    g_mutex_unlock(&chr->lock);
    g_clear_pointer(&chr->conn_watch, qs_fd_handler_free);
    if (fd >= 0) close(fd);
    if (chr->server) listen_watch_start(chr);
    if (was) emit_event(chr, QS_CHARDEV_CLOSED);
}

static void listen_ready(int fd, GIOCondition cond, void *opaque)
{
    QsChardev *chr = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return;   /* EAGAIN, ECONNABORTED, ...: keep listening */
    if (chr->connected) { close(c); return; }
    if (!chr->is_unix) {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    set_connected(chr, c);
    chr_enter(chr);
    emit_event(chr, QS_CHARDEV_OPENED);
    chr_leave(chr);
}

/* Send queued output; with lock held.  Returns 0 or -errno (EAGAIN is not an error). */
static int drain_locked(QsChardev *chr)
{
    while (chr->outq->len) {
        ssize_t n = send(chr->out_fd, chr->outq->data, chr->outq->len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        g_byte_array_remove_range(chr->outq, 0, n);
    }
    return 0;
}

static void conn_ready(int fd, GIOCondition cond, void *opaque)
{
    QsChardev *chr = opaque;
    if (cond & G_IO_OUT) {
        g_mutex_lock(&chr->lock);
        int r = chr->connected ? drain_locked(chr) : 0;
        g_mutex_unlock(&chr->lock);
        if (r < 0) { drop_peer(chr); return; }
        conn_watch_update(chr);
    }
    if (!(cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))) return;
    if (!(chr->h && chr->h->read)) {
        if (cond & (G_IO_HUP | G_IO_ERR)) drop_peer(chr);
        return;
    }
    uint8_t buf[CHR_READ_SIZE];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    chr_enter(chr);
    if (n > 0) chr->h->read(chr->opaque, buf, n);
    else drop_peer(chr);
    chr_leave(chr);
}

static void kick(void *opaque)
{
    conn_watch_update(opaque);
}

/* ---- public ---- */

QsChardev *qs_chardev_open(const char *spec, const char *label, GError **errp)
{
    QsChardev *chr = g_new0(QsChardev, 1);
    chr->spec = g_strdup(spec);
    chr->label = g_strdup(label ? label : spec);
    chr->listen_fd = chr->in_fd = chr->out_fd = -1;
    chr->port = -1;
    chr->loop = qs_loop_main();
    chr->outq = g_byte_array_new();
    g_mutex_init(&chr->lock);
    if (!parse_spec(chr, errp)) goto fail;

    switch (chr->type) {
    case CHR_STDIO:
        chr->in_fd = 0;
        chr->out_fd = 1;
        chr->connected = true;
        break;
    case CHR_FILE:
        chr->out_fd = open(chr->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (chr->out_fd < 0) {
            g_autofree char *what = g_strdup_printf("Could not open '%s'", chr->path);
            chr_error(errp, chr, what, errno);
            goto fail;
        }
        chr->connected = true;
        break;
    case CHR_SOCKET:
        if (!chr->server) {
            int fd = socket_connect(chr, errp);
            if (fd < 0) goto fail;
            set_connected(chr, fd);
            break;
        }
        chr->listen_fd = socket_listen(chr, errp);
        if (chr->listen_fd < 0) goto fail;
        if (chr->wait) {
            fprintf(stderr, "qemu-slim: %s: info: QEMU waiting for connection on: "
                    "disconnected:%s\n", chr->spec, chr->spec);
            int c;
            do c = accept4(chr->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            while (c < 0 && errno == EINTR);
            if (c < 0) { chr_error(errp, chr, "accept", errno); goto fail; }
            set_nonblock(chr->listen_fd);
            set_connected(chr, c);
        } else {
            set_nonblock(chr->listen_fd);
            listen_watch_start(chr);
        }
        break;
    }
    char *bhname = g_strdup_printf("chardev-kick:%s", chr->label);
    chr->kick_bh = qs_bh_new(chr->loop, bhname, kick, chr);
    g_free(bhname);
    return chr;
fail:
    really_close(chr);
    return NULL;
}

void qs_chardev_set_handlers(QsChardev *chr, QsLoop *loop, const QsChardevHandlers *h,
                             void *opaque)
{
    if (!loop) loop = qs_loop_main();
    if (loop != chr->loop) {
        chr->loop = loop;
        bool listening = chr->listen_watch != NULL;
        g_clear_pointer(&chr->listen_watch, qs_fd_handler_free);
        g_clear_pointer(&chr->conn_watch, qs_fd_handler_free);
        qs_bh_free(chr->kick_bh);
        g_autofree char *bhname = g_strdup_printf("chardev-kick:%s", chr->label);
        chr->kick_bh = qs_bh_new(loop, bhname, kick, chr);
        if (listening) listen_watch_start(chr);
    }
    chr->h = h;
    chr->opaque = opaque;
    if (chr->connected) {
        conn_watch_start(chr);
        conn_watch_update(chr);
        chr_enter(chr);
        emit_event(chr, QS_CHARDEV_OPENED);
        chr_leave(chr);
    }
}

static ssize_t write_blocking(int fd, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            poll(&pfd, 1, -1);
            continue;
        }
        if (n <= 0) return n < 0 ? -errno : -EIO;
        done += n;
    }
    return len;
}

ssize_t qs_chardev_write(QsChardev *chr, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    g_mutex_lock(&chr->lock);
    if (!chr->connected || chr->out_fd < 0) {
        g_mutex_unlock(&chr->lock);
        return -ENOTCONN;
    }
    if (chr->type != CHR_SOCKET) {
        ssize_t r = write_blocking(chr->out_fd, p, len);
        g_mutex_unlock(&chr->lock);
        return r;
    }
    size_t done = 0;
    if (!chr->outq->len) {
        while (done < len) {
            ssize_t n = send(chr->out_fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0) {
                int e = errno;
                g_mutex_unlock(&chr->lock);
                return -e;   /* the loop sees HUP/ERR and drops the peer */
            }
            done += n;
        }
    }
    bool need_kick = false;
    if (done < len) {
        if (chr->outq->len + (len - done) > CHR_MAX_QUEUE) {
            g_mutex_unlock(&chr->lock);
            return -ENOBUFS;
        }
        need_kick = chr->outq->len == 0;
        g_byte_array_append(chr->outq, p + done, len - done);
    }
    g_mutex_unlock(&chr->lock);
    if (need_kick) {
        if (qs_loop_in_thread(chr->loop)) conn_watch_update(chr);
        else qs_bh_schedule(chr->kick_bh);
    }
    return len;
}

bool qs_chardev_flush(QsChardev *chr, int timeout_ms)
{
    gint64 end = timeout_ms < 0 ? -1 : g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_mutex_lock(&chr->lock);
    bool ok = true;
    while (chr->connected && chr->outq->len) {
        if (drain_locked(chr) < 0) { ok = false; break; }
        if (!chr->outq->len) break;
        int wait = -1;
        if (end >= 0) {
            gint64 left = end - g_get_monotonic_time();
            if (left <= 0) { ok = false; break; }
            wait = (int)((left + 999) / 1000);
        }
        struct pollfd pfd = { .fd = chr->out_fd, .events = POLLOUT };
        g_mutex_unlock(&chr->lock);
        poll(&pfd, 1, wait);
        g_mutex_lock(&chr->lock);
    }
    g_mutex_unlock(&chr->lock);
    return ok;
}

bool qs_chardev_connected(QsChardev *chr)
{
    g_mutex_lock(&chr->lock);
    bool c = chr->connected;
    g_mutex_unlock(&chr->lock);
    return c;
}

void qs_chardev_disconnect(QsChardev *chr)
{
    if (chr->type == CHR_SOCKET) drop_peer(chr);
}

const char *qs_chardev_label(QsChardev *chr) { return chr->label; }
const char *qs_chardev_spec(QsChardev *chr) { return chr->spec; }
int qs_chardev_port(QsChardev *chr) { return chr->is_unix || !chr->server ? -1 : chr->port; }

static void really_close(QsChardev *chr)
{
    g_clear_pointer(&chr->listen_watch, qs_fd_handler_free);
    g_clear_pointer(&chr->conn_watch, qs_fd_handler_free);
    g_clear_pointer(&chr->kick_bh, qs_bh_free);
    if (chr->type == CHR_SOCKET) {
        if (chr->out_fd >= 0) close(chr->out_fd);
        if (chr->listen_fd >= 0) {
            close(chr->listen_fd);
            if (chr->is_unix) unlink(chr->path);
        }
    } else if (chr->type == CHR_FILE && chr->out_fd >= 0) {
        close(chr->out_fd);
    }
    g_mutex_clear(&chr->lock);
    g_byte_array_unref(chr->outq);
    g_free(chr->spec);
    g_free(chr->label);
    g_free(chr->path);
    g_free(chr->host);
    g_free(chr->service);
    g_free(chr);
}

void qs_chardev_close(QsChardev *chr)
{
    if (!chr) return;
    qs_chardev_flush(chr, 200);
    chr->h = NULL;
    if (chr->busy) {
        chr->close_pending = true;
        return;
    }
    really_close(chr);
}
