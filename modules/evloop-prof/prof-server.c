/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The profiler thread: poll() over its own unix socket and clients, line-delimited
 * QMP-style requests, snapshot replies, and the periodic stuck-loop warning. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <json-glib/json-glib.h>
#include "prof-server.h"

#define MAX_CLIENTS 32
#define MAX_LINE 65536                  /* longest request line accepted */
#define MAX_PENDING (256u << 20)        /* unread reply bytes before a client is dropped */

typedef struct Client {
    int fd;
    GString *in;
    GString *out;
    size_t out_off;
    bool closing;                       /* close once out is flushed */
} Client;

struct ProfServer {
    char *path;
    int listen_fd;
    int stop_pipe[2];
    GThread *thread;
    ProfStats *st;
    const ProfClock *clk;
    unsigned interval_ms;
    uint64_t stuck_ticks;
    Client clients[MAX_CLIENTS];
    int nclients;
};

/* ---- commands ---- */

static void reply_error(GString *out, const char *cls, const char *desc)
{
    g_string_append_printf(out, "{\"error\": {\"class\": \"%s\", \"desc\": ", cls);
    prof_json_string(out, desc);
    g_string_append(out, "}}");
}

void prof_handle_command(ProfStats *st, const ProfClock *clk, uint64_t stuck_ticks,
                         const char *cmd, GString *out)
{
    g_autoptr(JsonParser) p = json_parser_new_immutable();
    g_autoptr(GError) err = NULL;
    if (!json_parser_load_from_data(p, cmd, -1, &err)) {
        g_autofree char *msg = g_strdup_printf("request is not JSON: %s", err->message);
        reply_error(out, "GenericError", msg);
        return;
    }
    JsonNode *root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        reply_error(out, "GenericError", "request is not a JSON object");
        return;
    }
    JsonObject *o = json_node_get_object(root);
    JsonNode *id = json_object_get_member(o, "id");
    JsonNode *ex = json_object_get_member(o, "execute");
    JsonNode *args = json_object_get_member(o, "arguments");
    g_autofree char *id_text = id ? json_to_string(id, FALSE) : NULL;
    size_t start = out->len;
    if (!ex || !JSON_NODE_HOLDS_VALUE(ex) || json_node_get_value_type(ex) != G_TYPE_STRING) {
        reply_error(out, "GenericError", "request has no \"execute\" string");
    } else if (args && !JSON_NODE_HOLDS_OBJECT(args)) {
        reply_error(out, "GenericError", "\"arguments\" is not an object");
    } else {
        const char *name = json_node_get_string(ex);
        if (!strcmp(name, "query-evloop-stats")) {
            g_string_append(out, "{\"return\": ");
            prof_stats_snapshot(st, prof_ticks(clk), stuck_ticks, out);
            g_string_append(out, "}");
        } else if (!strcmp(name, "reset-evloop-stats")) {
            prof_stats_reset(st, prof_ticks(clk));
            g_string_append(out, "{\"return\": {}}");
        } else if (!strcmp(name, "qmp_capabilities")) {
            g_string_append(out, "{\"return\": {}}");
        } else {
            g_autofree char *msg = g_strdup_printf(
                "The command %s has not been found (this socket serves "
                "query-evloop-stats and reset-evloop-stats)", name);
            g_string_truncate(out, start);
            reply_error(out, "CommandNotFound", msg);
        }
    }
    if (id_text && out->len > start && out->str[out->len - 1] == '}') {
        g_string_truncate(out, out->len - 1);
        g_string_append_printf(out, ", \"id\": %s}", id_text);
    }
}

/* ---- socket ---- */

static int listen_unix(const char *path, GError **errp)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "socket path '%s' is too long (%zu bytes, at most %zu)", path,
                    strlen(path), sizeof(sa.sun_path) - 1);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "socket path '%s' exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                        "socket path '%s' is in use by another server", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path);   /* a stale socket from an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e), "socket path '%s': %s",
                    path, g_strerror(e));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void client_close(ProfServer *srv, int i)
{
    Client *c = &srv->clients[i];
    close(c->fd);
    g_string_free(c->in, TRUE);
    g_string_free(c->out, TRUE);
    srv->clients[i] = srv->clients[--srv->nclients];
}

static void client_accept(ProfServer *srv)
{
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (srv->nclients == MAX_CLIENTS) {
        static const char busy[] = "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                                   "\"too many clients (at most 32)\"}}\n";
        ssize_t r = write(fd, busy, sizeof(busy) - 1);
        (void)r;
        close(fd);
        return;
    }
    Client *c = &srv->clients[srv->nclients++];
    *c = (Client){ .fd = fd, .in = g_string_new(NULL), .out = g_string_new(NULL) };
    g_string_append_printf(c->out, "{\"evloop-prof\": {\"version\": 1, \"pid\": %d}}\n",
                           (int)getpid());
}

/* Returns false when the client is to be dropped. */
static bool client_read(ProfServer *srv, Client *c)
{
    char buf[4096];
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return false;
    if (n < 0) return true;
    g_string_append_len(c->in, buf, n);
    char *nl;
    while (!c->closing && (nl = memchr(c->in->str, '\n', c->in->len))) {
        size_t len = nl - c->in->str;
        g_autofree char *line = g_strndup(c->in->str, len);
        g_string_erase(c->in, 0, len + 1);
        if (strlen(line) != len) {
            reply_error(c->out, "GenericError", "request contains a NUL byte");
        } else {
            g_strstrip(line);
            if (!*line) continue;
            prof_handle_command(srv->st, srv->clk, srv->stuck_ticks, line, c->out);
        }
        g_string_append_c(c->out, '\n');
    }
    if (c->in->len > MAX_LINE) {
        reply_error(c->out, "GenericError", "request line longer than 65536 bytes");
        g_string_append_c(c->out, '\n');
        g_string_truncate(c->in, 0);
        c->closing = true;
    }
    return c->out->len - c->out_off <= MAX_PENDING;
}

static bool client_write(Client *c)
{
    while (c->out_off < c->out->len) {
        ssize_t n = send(c->fd, c->out->str + c->out_off, c->out->len - c->out_off,
                         MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EINTR;
        c->out_off += n;
    }
    g_string_truncate(c->out, 0);
    c->out_off = 0;
    return !c->closing;
}

static void on_stuck(const char *loop, const char *source, const char *kind,
                     uint64_t running_ns, bool first, void *opaque)
{
    if (!first) return;
    fprintf(stderr, "evloop-prof: loop '%s' stuck: %s '%s' has been running for %.1f s\n",
            loop, kind, source, running_ns / 1e9);
}

static gpointer server_main(gpointer opaque)
{
    ProfServer *srv = opaque;
    struct pollfd pfd[MAX_CLIENTS + 2];
    for (;;) {
        int n = 0;
        pfd[n++] = (struct pollfd){ .fd = srv->stop_pipe[0], .events = POLLIN };
        if (srv->listen_fd >= 0) pfd[n++] = (struct pollfd){ .fd = srv->listen_fd, .events = POLLIN };
        int first_client = n;
        for (int i = 0; i < srv->nclients; i++) {
            Client *c = &srv->clients[i];
            pfd[n++] = (struct pollfd){
                .fd = c->fd,
                .events = (c->closing ? 0 : POLLIN) | (c->out->len > c->out_off ? POLLOUT : 0),
            };
        }
        int r = poll(pfd, n, srv->interval_ms);
        if (r < 0 && errno != EINTR) break;
        if (pfd[0].revents) break;
        /* clients first (indices shift when one closes: walk backwards) */
        for (int i = srv->nclients - 1; i >= 0; i--) {
            short ev = pfd[first_client + i].revents;
            Client *c = &srv->clients[i];
            bool ok = true;
            if (ev & POLLIN) ok = client_read(srv, c);
            else if (ev & (POLLHUP | POLLERR)) ok = false;
            if (ok && c->out->len > c->out_off) ok = client_write(c);
            else if (ok && c->closing) ok = false;
            if (!ok) client_close(srv, i);
        }
        if (srv->listen_fd >= 0 && (pfd[1].revents & POLLIN)) client_accept(srv);
        if (srv->stuck_ticks) {
            prof_stats_stuck_foreach(srv->st, prof_ticks(srv->clk), srv->stuck_ticks,
                                     on_stuck, NULL);
        }
    }
    return NULL;
}

ProfServer *prof_server_start(const char *path, ProfStats *st, const ProfClock *clk,
                              unsigned interval_ms, uint64_t stuck_ticks, GError **errp)
{
    ProfServer *srv = g_new0(ProfServer, 1);
    srv->listen_fd = -1;
    srv->st = st;
    srv->clk = clk;
    srv->interval_ms = interval_ms;
    srv->stuck_ticks = stuck_ticks;
    if (path) {
        srv->listen_fd = listen_unix(path, errp);
        if (srv->listen_fd < 0) {
            g_free(srv);
            return NULL;
        }
        srv->path = g_strdup(path);
    }
    if (pipe2(srv->stop_pipe, O_CLOEXEC) < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "profiler thread: pipe: %s", g_strerror(errno));
        if (srv->listen_fd >= 0) close(srv->listen_fd);
        if (srv->path) unlink(srv->path);
        g_free(srv->path);
        g_free(srv);
        return NULL;
    }
    srv->thread = g_thread_new("evloop-prof", server_main, srv);
    return srv;
}

void prof_server_stop(ProfServer *srv)
{
    if (!srv) return;
    ssize_t r = write(srv->stop_pipe[1], "x", 1);
    (void)r;
    g_thread_join(srv->thread);
    while (srv->nclients) client_close(srv, srv->nclients - 1);
    close(srv->stop_pipe[0]);
    close(srv->stop_pipe[1]);
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
        unlink(srv->path);
    }
    g_free(srv->path);
    g_free(srv);
}
