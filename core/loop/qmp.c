/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QMP monitors: one per -qmp chardev, each with its own capabilities negotiation; the
 * command table modules register into; dispatch with QEMU's error shapes; events. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include "qs/chardev.h"
#include "qs/evloop.h"
#include "qmp-internal.h"
#include "qs-internal.h"
#include "runtime.h"

G_DEFINE_QUARK(qs-qmp-error-quark, qs_qmp_error)

typedef struct Monitor {
    QsChardev *chr;
    JsonSplitter sp;
    bool negotiated;
} Monitor;

static GHashTable *commands;   /* name -> QmpCommand * */
static bool builtin_init;      /* registering the core's own commands */
static GPtrArray *monitors;    /* Monitor * */

/* ---- command table ---- */

static void command_free(gpointer p)
{
    QmpCommand *c = p;
    g_free(c->name);
    g_strfreev(c->params);
    g_free(c);
}

static void ensure_table(void)
{
    if (!commands) {
        commands = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, command_free);
        builtin_init = true;
        qs_qmp_commands_init();
        builtin_init = false;
    }
}

static void command_undo(void *data)
{
    qs_qmp_unregister(data);
    g_free(data);
}

static bool do_register(const char *name, const char *const *params, bool any,
                        QsQmpHandler handler, void *opaque, GError **errp)
{
    ensure_table();
    if (!name || !*name || !handler) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "QMP command needs a name and a handler");
        return false;
    }
    if (g_hash_table_contains(commands, name)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "QMP command '%s' is already registered",
                    name);
        return false;
    }
    if (!builtin_init && !qs_module_claim("qmp", name, errp)) return false;
    QmpCommand *c = g_new0(QmpCommand, 1);
    c->name = g_strdup(name);
    c->params = any ? NULL : g_strdupv((char **)params);
    c->any_args = any;
    c->handler = handler;
    c->opaque = opaque;
    g_hash_table_insert(commands, c->name, c);
    if (!builtin_init && qs_module_current()) qs_module_track(command_undo, g_strdup(name));
    return true;
}

bool qs_qmp_register(const char *name, QsQmpHandler handler, void *opaque, GError **errp)
{
    return do_register(name, NULL, true, handler, opaque, errp);
}

bool qs_qmp_register_full(const char *name, const char *const *params, QsQmpHandler handler,
                          void *opaque, GError **errp)
{
    return do_register(name, params, false, handler, opaque, errp);
}

void qs_qmp_unregister(const char *name)
{
    if (commands) g_hash_table_remove(commands, name);
}

const QmpCommand *qs_qmp_find(const char *name)
{
    ensure_table();
    return g_hash_table_lookup(commands, name);
}

static gint cmp_name(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

GPtrArray *qs_qmp_command_names(void)
{
    ensure_table();
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, commands);
    while (g_hash_table_iter_next(&it, &k, NULL)) g_ptr_array_add(out, k);
    g_ptr_array_sort(out, cmp_name);
    return out;
}

bool qs_qmp_check_args(JsonObject *args, const char *const *params, GError **errp)
{
    GList *members = json_object_get_members(args);
    for (GList *m = members; m; m = m->next) {
        if (!params || !g_strv_contains(params, m->data)) {
            g_set_error(errp, QS_QMP_ERROR, QS_QMP_ERROR_GENERIC, "Parameter '%s' is unexpected",
                        (const char *)m->data);
            g_list_free(members);
            return false;
        }
    }
    g_list_free(members);
    return true;
}

/* ---- output ---- */

static void send_node(Monitor *m, JsonNode *node)
{
    GString *s = g_string_new(NULL);
    qs_json_append(s, node);
    g_string_append(s, "\r\n");
    qs_chardev_write(m->chr, s->str, s->len);
    g_string_free(s, TRUE);
}

static const char *error_class(const GError *e)
{
    if (e->domain == QS_QMP_ERROR) {
        switch (e->code) {
        case QS_QMP_ERROR_COMMAND_NOT_FOUND: return "CommandNotFound";
        case QS_QMP_ERROR_DEVICE_NOT_FOUND: return "DeviceNotFound";
        default: break;
        }
    }
    return "GenericError";
}

/* {"id": id, "error": {"class", "desc"}}, id omitted when NULL (QEMU's order). */
static void send_error(Monitor *m, JsonNode *id, const GError *e)
{
    JsonObject *err = json_object_new();
    json_object_set_string_member(err, "class", error_class(e));
    json_object_set_string_member(err, "desc", e->message);
    JsonObject *o = json_object_new();
    if (id) json_object_set_member(o, "id", json_node_copy(id));
    json_object_set_object_member(o, "error", err);
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    send_node(m, n);
    json_node_unref(n);
    json_object_unref(o);
}

static void send_error_desc(Monitor *m, JsonNode *id, int code, const char *desc)
{
    GError *e = g_error_new_literal(QS_QMP_ERROR, code, desc);
    send_error(m, id, e);
    g_error_free(e);
}

static void send_return(Monitor *m, JsonNode *id, JsonNode *ret)
{
    JsonObject *o = json_object_new();
    if (ret) json_object_set_member(o, "return", ret);
    else json_object_set_object_member(o, "return", json_object_new());
    if (id) json_object_set_member(o, "id", json_node_copy(id));
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    send_node(m, n);
    json_node_unref(n);
    json_object_unref(o);
}

static void send_greeting(Monitor *m)
{
    unsigned maj = 0, min = 0, mic = 0;
    sscanf(QS_VERSION, "%u.%u.%u", &maj, &min, &mic);
    g_autofree char *s = g_strdup_printf(
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %u, \"minor\": %u, \"major\": %u}, "
        "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n", mic, min, maj);
    qs_chardev_write(m->chr, s, strlen(s));
}

/* ---- events ---- */

static void event_send_main(void *opaque)
{
    char *text = opaque;
    size_t len = strlen(text);
    for (guint i = 0; monitors && i < monitors->len; i++) {
        Monitor *m = monitors->pdata[i];
        if (m->negotiated) qs_chardev_write(m->chr, text, len);
    }
    g_free(text);
}

void qs_qmp_event_emit(const char *name, JsonObject *data)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    JsonObject *ts = json_object_new();
    json_object_set_int_member(ts, "seconds", tv.tv_sec);
    json_object_set_int_member(ts, "microseconds", tv.tv_usec);
    JsonObject *o = json_object_new();
    json_object_set_object_member(o, "timestamp", ts);
    json_object_set_string_member(o, "event", name);
    if (data) json_object_set_object_member(o, "data", json_object_ref(data));
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    GString *s = g_string_new(NULL);
    qs_json_append(s, n);
    g_string_append(s, "\r\n");
    json_node_unref(n);
    json_object_unref(o);
    char *text = g_string_free(s, FALSE);
    if (qs_loop_in_thread(qs_loop_main())) event_send_main(text);
    else qs_loop_call(qs_loop_main(), "qmp-event", event_send_main, text);
}

/* ---- dispatch ---- */

static void dispatch(Monitor *m, JsonObject *req, JsonNode *id)
{
    GList *members = json_object_get_members(req);
    const char *bad = NULL;
    for (GList *it = members; it && !bad; it = it->next) {
        const char *k = it->data;
        if (strcmp(k, "execute") && strcmp(k, "arguments") && strcmp(k, "id")) bad = k;
    }
    g_autofree char *bad_copy = g_strdup(bad);
    g_list_free(members);

    JsonNode *exec = json_object_get_member(req, "execute");
    JsonNode *argn = json_object_get_member(req, "arguments");
    if (exec && (!JSON_NODE_HOLDS_VALUE(exec) || json_node_get_value_type(exec) != G_TYPE_STRING)) {
        send_error_desc(m, id, QS_QMP_ERROR_GENERIC, "QMP input member 'execute' must be a string");
        return;
    }
    if (argn && !JSON_NODE_HOLDS_OBJECT(argn)) {
        send_error_desc(m, id, QS_QMP_ERROR_GENERIC, "QMP input member 'arguments' must be an object");
        return;
    }
    if (bad_copy) {
        g_autofree char *d = g_strdup_printf("QMP input member '%s' is unexpected", bad_copy);
        send_error_desc(m, id, QS_QMP_ERROR_GENERIC, d);
        return;
    }
    if (!exec) {
        send_error_desc(m, id, QS_QMP_ERROR_GENERIC, "QMP input lacks member 'execute'");
        return;
    }
    const char *name = json_node_get_string(exec);
    bool is_caps = !strcmp(name, "qmp_capabilities");
    if (!m->negotiated && !is_caps) {
        send_error_desc(m, id, QS_QMP_ERROR_COMMAND_NOT_FOUND,
                        "Expecting capabilities negotiation with 'qmp_capabilities'");
        return;
    }
    if (m->negotiated && is_caps) {
        send_error_desc(m, id, QS_QMP_ERROR_COMMAND_NOT_FOUND,
                        "Capabilities negotiation is already complete, command ignored");
        return;
    }
    const QmpCommand *c = qs_qmp_find(name);
    if (!c) {
        g_autofree char *d = g_strdup_printf("The command %s has not been found", name);
        send_error_desc(m, id, QS_QMP_ERROR_COMMAND_NOT_FOUND, d);
        return;
    }
    JsonObject *args = argn ? json_object_ref(json_node_get_object(argn)) : json_object_new();
    GError *err = NULL;
    JsonNode *ret = NULL;
    if (c->any_args || qs_qmp_check_args(args, (const char *const *)c->params, &err)) {
        ret = c->handler(args, c->opaque, &err);
    }
    json_object_unref(args);
    if (err) {
        if (ret) json_node_unref(ret);
        send_error(m, id, err);
        g_error_free(err);
        return;
    }
    if (is_caps) m->negotiated = true;
    send_return(m, id, ret);
}

static void on_message(void *opaque, const char *json, size_t len)
{
    Monitor *m = opaque;
    JsonParser *p = json_parser_new_immutable();
    GError *err = NULL;
    if (!json_parser_load_from_data(p, json, len, &err)) {
        g_autofree char *d = g_strdup_printf("JSON parse error, %s", err->message);
        send_error_desc(m, NULL, QS_QMP_ERROR_GENERIC, d);
        g_error_free(err);
        g_object_unref(p);
        return;
    }
    JsonNode *root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        send_error_desc(m, NULL, QS_QMP_ERROR_GENERIC, "QMP input must be a JSON object");
    } else {
        JsonObject *req = json_node_get_object(root);
        dispatch(m, req, json_object_get_member(req, "id"));
    }
    g_object_unref(p);
}

static void on_split_error(void *opaque, const char *desc)
{
    g_autofree char *d = g_strdup_printf("JSON parse error, %s", desc);
    send_error_desc(opaque, NULL, QS_QMP_ERROR_GENERIC, d);
}

static void on_read(void *opaque, const uint8_t *buf, size_t len)
{
    Monitor *m = opaque;
    qs_json_splitter_feed(&m->sp, buf, len);
}

static void on_event(void *opaque, QsChardevEvent ev)
{
    Monitor *m = opaque;
    /* Every connection starts in capabilities-negotiation mode, as in QEMU. */
    m->negotiated = false;
    qs_json_splitter_reset(&m->sp);
    if (ev == QS_CHARDEV_OPENED) send_greeting(m);
}

static const QsChardevHandlers monitor_handlers = { .read = on_read, .event = on_event };

bool qs_qmp_start(const char *spec, GError **errp)
{
    qs_evloop_init();
    ensure_table();
    if (!monitors) monitors = g_ptr_array_new();
    g_autofree char *label = g_strdup_printf("qmp%u", monitors->len);
    QsChardev *chr = qs_chardev_open(spec, label, errp);
    if (!chr) return false;
    Monitor *m = g_new0(Monitor, 1);
    m->chr = chr;
    qs_json_splitter_init(&m->sp, on_message, on_split_error, m);
    g_ptr_array_add(monitors, m);
    qs_chardev_set_handlers(chr, qs_loop_main(), &monitor_handlers, m);
    return true;
}

void qs_qmp_shutdown(void)
{
    for (guint i = 0; monitors && i < monitors->len; i++) {
        Monitor *m = monitors->pdata[i];
        qs_chardev_close(m->chr);
        qs_json_splitter_free(&m->sp);
        g_free(m);
    }
    g_clear_pointer(&monitors, g_ptr_array_unref);
}
