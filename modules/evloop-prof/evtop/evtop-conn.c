/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-evtop's connection: greeting detection (evloop-prof or QMP), request/reply with
 * a deadline, QMP events skipped, every malformed or oversized reply refused clearly. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "evtop-conn.h"

struct EvConn {
    char *path;
    int timeout_ms;
    int fd;
    const char *kind;
    GString *in;
};

#define ERR(errp, ...) g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, __VA_ARGS__)

EvConn *evconn_new(const char *path, int timeout_ms)
{
    EvConn *c = g_new0(EvConn, 1);
    c->path = g_strdup(path);
    c->timeout_ms = timeout_ms;
    c->fd = -1;
    c->in = g_string_new(NULL);
    return c;
}

void evconn_close(EvConn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->kind = NULL;
    g_string_truncate(c->in, 0);
}

void evconn_free(EvConn *c)
{
    if (!c) return;
    evconn_close(c);
    g_string_free(c->in, TRUE);
    g_free(c->path);
    g_free(c);
}

bool evconn_connected(const EvConn *c) { return c->fd >= 0; }
const char *evconn_kind(const EvConn *c) { return c->kind; }
const char *evconn_path(const EvConn *c) { return c->path; }

/* A short, printable excerpt of what the peer sent, for messages. */
static char *excerpt(const char *s, size_t len)
{
    GString *out = g_string_new(NULL);
    for (size_t i = 0; i < len && out->len < 60; i++) {
        unsigned char ch = s[i];
        if (ch >= 0x20 && ch < 0x7f) g_string_append_c(out, ch);
        else g_string_append_printf(out, "\\x%02x", ch);
    }
    if (len > 60) g_string_append(out, "...");
    return g_string_free(out, FALSE);
}

/* Read one line (without the newline) before the deadline. */
static char *read_line(EvConn *c, gint64 deadline, GError **errp)
{
    for (;;) {
        char *nl = memchr(c->in->str, '\n', c->in->len);
        if (nl) {
            size_t len = nl - c->in->str;
            char *line = g_strndup(c->in->str, len);
            g_string_erase(c->in, 0, len + 1);
            if (strlen(line) != len) {
                g_free(line);
                ERR(errp, "'%s' sent a line with a NUL byte in it", c->path);
                return NULL;
            }
            return line;
        }
        if (c->in->len > EVTOP_MAX_LINE) {
            ERR(errp, "reply from '%s' is longer than %u MiB; giving up on it", c->path,
                EVTOP_MAX_LINE >> 20);
            return NULL;
        }
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            ERR(errp, "no reply from '%s' within %.1f s (is the emulator stuck?)", c->path,
                c->timeout_ms / 1000.0);
            return NULL;
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            ERR(errp, "'%s': poll: %s", c->path, g_strerror(errno));
            return NULL;
        }
        if (r == 0) continue;
        char buf[65536];
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) {
            ERR(errp, "'%s': read: %s", c->path, g_strerror(errno));
            return NULL;
        }
        if (n == 0) {
            ERR(errp, "'%s' closed the connection", c->path);
            return NULL;
        }
        g_string_append_len(c->in, buf, n);
    }
}

static JsonNode *parse_object(EvConn *c, const char *line, const char *what, GError **errp)
{
    g_autoptr(GError) err = NULL;
    JsonNode *n = json_from_string(line, &err);
    if (!n || !JSON_NODE_HOLDS_OBJECT(n)) {
        g_autofree char *ex = excerpt(line, strlen(line));
        ERR(errp, "'%s' sent a malformed %s (%s): \"%s\"", c->path, what,
            n ? "not a JSON object" : err ? err->message : "empty", ex);
        if (n) json_node_unref(n);
        return NULL;
    }
    return n;
}

static bool send_all(EvConn *c, const char *s, GError **errp)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ERR(errp, "'%s': send: %s", c->path, g_strerror(errno));
            return false;
        }
        off += n;
    }
    return true;
}

/* Send a command and wait for its reply; false with the connection closed on a
 * transport or format fault, *reply NULL and *errp set on an error reply. */
static bool transact(EvConn *c, const char *command, JsonNode **ret, GError **errp)
{
    *ret = NULL;
    g_autofree char *req = g_strdup_printf("{\"execute\": \"%s\"}\n", command);
    if (!send_all(c, req, errp)) goto fail;
    gint64 deadline = g_get_monotonic_time() + (gint64)c->timeout_ms * 1000;
    for (;;) {
        g_autofree char *line = read_line(c, deadline, errp);
        if (!line) goto fail;
        g_strstrip(line);
        if (!*line) continue;
        JsonNode *n = parse_object(c, line, "reply", errp);
        if (!n) goto fail;
        JsonObject *o = json_node_get_object(n);
        if (json_object_has_member(o, "event")) {     /* asynchronous QMP event */
            json_node_unref(n);
            continue;
        }
        JsonNode *r = json_object_get_member(o, "return");
        if (r) {
            *ret = json_node_copy(r);
            json_node_unref(n);
            return true;
        }
        JsonNode *e = json_object_get_member(o, "error");
        if (e && JSON_NODE_HOLDS_OBJECT(e)) {
            JsonObject *eo = json_node_get_object(e);
            JsonNode *d = json_object_get_member(eo, "desc");
            JsonNode *cl = json_object_get_member(eo, "class");
            const char *desc = d && JSON_NODE_HOLDS_VALUE(d) &&
                json_node_get_value_type(d) == G_TYPE_STRING ? json_node_get_string(d) : "?";
            const char *cls = cl && JSON_NODE_HOLDS_VALUE(cl) &&
                json_node_get_value_type(cl) == G_TYPE_STRING ? json_node_get_string(cl) : "";
            if (!strcmp(cls, "CommandNotFound") && strcmp(command, "qmp_capabilities")) {
                ERR(errp, "'%s' does not know %s: %s (is qemu-slim running with "
                    "-plugin evloop-prof?)", c->path, command, desc);
            } else {
                ERR(errp, "'%s': %s failed: %s", c->path, command, desc);
            }
            json_node_unref(n);
            return true;
        }
        g_autofree char *ex = excerpt(line, strlen(line));
        ERR(errp, "'%s' sent a reply with neither \"return\" nor \"error\": \"%s\"",
            c->path, ex);
        json_node_unref(n);
        goto fail;
    }
fail:
    evconn_close(c);
    return false;
}

bool evconn_connect(EvConn *c, GError **errp)
{
    evconn_close(c);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!*c->path || strlen(c->path) >= sizeof(sa.sun_path)) {
        ERR(errp, "socket path '%s' is %s (a unix socket path has 1 to %zu bytes)", c->path,
            *c->path ? "too long" : "empty", sizeof(sa.sun_path) - 1);
        return false;
    }
    strcpy(sa.sun_path, c->path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        const char *hint = e == ENOENT ? " (no such socket: is qemu-slim running with "
                                         "-plugin evloop-prof,socket=PATH?)"
                         : e == ECONNREFUSED ? " (nobody is listening there)"
                         : e == ENOTSOCK ? " (not a socket)" : "";
        ERR(errp, "cannot connect to '%s': %s%s", c->path, g_strerror(e), hint);
        evconn_close(c);
        return false;
    }
    gint64 deadline = g_get_monotonic_time() + (gint64)c->timeout_ms * 1000;
    g_autofree char *line = read_line(c, deadline, errp);
    if (!line) {
        g_prefix_error(errp, "waiting for the greeting: ");
        evconn_close(c);
        return false;
    }
    JsonNode *n = parse_object(c, line, "greeting", errp);
    if (!n) {
        evconn_close(c);
        return false;
    }
    JsonObject *o = json_node_get_object(n);
    bool qmp = json_object_has_member(o, "QMP");
    bool prof = json_object_has_member(o, "evloop-prof");
    json_node_unref(n);
    if (!qmp && !prof) {
        g_autofree char *ex = excerpt(line, strlen(line));
        ERR(errp, "'%s' is neither an evloop-prof socket nor a QMP monitor (greeting: \"%s\")",
            c->path, ex);
        evconn_close(c);
        return false;
    }
    c->kind = qmp ? "QMP" : "evloop-prof";
    if (qmp) {
        JsonNode *r = NULL;
        GError *err = NULL;
        if (!transact(c, "qmp_capabilities", &r, &err) || err) {
            g_propagate_error(errp, err);
            evconn_close(c);
            return false;
        }
        if (r) json_node_unref(r);
    }
    return true;
}

JsonNode *evconn_execute(EvConn *c, const char *command, GError **errp)
{
    if (c->fd < 0) {
        ERR(errp, "not connected to '%s'", c->path);
        return NULL;
    }
    JsonNode *r = NULL;
    GError *err = NULL;
    transact(c, command, &r, &err);
    if (err) {
        if (r) json_node_unref(r);
        g_propagate_error(errp, err);
        return NULL;
    }
    return r;
}
