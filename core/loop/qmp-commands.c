/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The built-in QMP commands: qmp_capabilities, query-version, query-status,
 * query-commands, query-plugins, stop, cont, quit, system_reset. */
#include <stdio.h>
#include <string.h>
#include "qmp-internal.h"
#include "module-loader.h"
#include "runtime.h"

static JsonNode *obj_node(JsonObject *o)
{
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}

static JsonNode *cmd_capabilities(JsonObject *args, void *opaque, GError **errp)
{
    JsonNode *en = json_object_get_member(args, "enable");
    if (!en) return NULL;
    if (!JSON_NODE_HOLDS_ARRAY(en)) {
        g_set_error(errp, QS_QMP_ERROR, QS_QMP_ERROR_GENERIC,
                    "Invalid parameter type for 'enable', expected: array");
        return NULL;
    }
    JsonArray *a = json_node_get_array(en);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        const char *v = JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING
                        ? json_node_get_string(e) : NULL;
        if (!v) {
            g_set_error(errp, QS_QMP_ERROR, QS_QMP_ERROR_GENERIC,
                        "Invalid parameter type for 'enable[%u]', expected: string", i);
            return NULL;
        }
        if (strcmp(v, "oob")) {
            /* QEMU 7.2's wording, including its 'null' */
            g_set_error(errp, QS_QMP_ERROR, QS_QMP_ERROR_GENERIC,
                        "Parameter 'null' does not accept value '%s'", v);
            return NULL;
        }
    }
    return NULL;
}

static JsonObject *version_object(void)
{
    unsigned maj = 0, min = 0, mic = 0;
    sscanf(QS_VERSION, "%u.%u.%u", &maj, &min, &mic);
    JsonObject *q = json_object_new();
    json_object_set_int_member(q, "micro", mic);
    json_object_set_int_member(q, "minor", min);
    json_object_set_int_member(q, "major", maj);
    JsonObject *o = json_object_new();
    json_object_set_object_member(o, "qemu", q);
    json_object_set_string_member(o, "package", "");
    return o;
}

static JsonNode *cmd_query_version(JsonObject *args, void *opaque, GError **errp)
{
    return obj_node(version_object());
}

static JsonNode *cmd_query_status(JsonObject *args, void *opaque, GError **errp)
{
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "status", qs_runstate_name());
    json_object_set_boolean_member(o, "singlestep", false);
    json_object_set_boolean_member(o, "running", qs_runstate_is_running());
    return obj_node(o);
}

static JsonNode *cmd_query_commands(JsonObject *args, void *opaque, GError **errp)
{
    GPtrArray *names = qs_qmp_command_names();
    JsonArray *a = json_array_new();
    for (guint i = 0; i < names->len; i++) {
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "name", names->pdata[i]);
        json_array_add_object_element(a, o);
    }
    g_ptr_array_free(names, TRUE);
    return json_node_init_array(json_node_alloc(), a);
}

static JsonArray *strv_array(const char *const *v)
{
    JsonArray *a = json_array_new();
    for (; v && *v; v++) json_array_add_string_element(a, *v);
    return a;
}

static JsonObject *plugin_object(const QsModuleDesc *d, const char *path, bool loaded)
{
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "name", d->name);
    json_object_set_string_member(o, "version", d->version ? d->version : "");
    g_autofree char *abi = g_strdup_printf("%u.%u", d->abi_major, d->abi_minor);
    json_object_set_string_member(o, "abi", abi);
    json_object_set_string_member(o, "license", d->license ? d->license : "");
    json_object_set_string_member(o, "description", d->description ? d->description : "");
    json_object_set_string_member(o, "file", path ? path : "");
    json_object_set_array_member(o, "provides", strv_array(d->provides));
    json_object_set_array_member(o, "depends", strv_array(d->depends));
    json_object_set_boolean_member(o, "loaded", loaded);
    return o;
}

/* Every module found on the search path, plus loaded ones found elsewhere (by path). */
static JsonNode *cmd_query_plugins(JsonObject *args, void *opaque, GError **errp)
{
    JsonArray *a = json_array_new();
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    GPtrArray *found = qs_module_scan();
    GPtrArray *loaded = qs_module_loaded_list();
    for (guint i = 0; i < loaded->len; i++) {
        QsLoadedModule *l = loaded->pdata[i];
        g_hash_table_add(seen, (gpointer)l->desc->name);
        json_array_add_object_element(a, plugin_object(l->desc, l->path, true));
    }
    for (guint i = 0; i < found->len; i++) {
        QsModuleInfo *info = found->pdata[i];
        if (g_hash_table_contains(seen, info->desc->name)) continue;
        json_array_add_object_element(a, plugin_object(info->desc, info->path, false));
    }
    g_hash_table_destroy(seen);
    g_ptr_array_free(loaded, TRUE);
    g_ptr_array_free(found, TRUE);
    return json_node_init_array(json_node_alloc(), a);
}

static JsonNode *cmd_stop(JsonObject *args, void *opaque, GError **errp)
{
    qs_vm_stop();
    return NULL;
}

static JsonNode *cmd_cont(JsonObject *args, void *opaque, GError **errp)
{
    qs_vm_start();
    return NULL;
}

static JsonNode *cmd_quit(JsonObject *args, void *opaque, GError **errp)
{
    qs_request_shutdown(0, "host-qmp-quit");
    return NULL;
}

static JsonNode *cmd_system_reset(JsonObject *args, void *opaque, GError **errp)
{
    qs_machine_reset();
    JsonObject *d = json_object_new();
    json_object_set_boolean_member(d, "guest", false);
    json_object_set_string_member(d, "reason", "host-qmp-system-reset");
    qs_qmp_event_emit("RESET", d);
    json_object_unref(d);
    return NULL;
}

void qs_qmp_commands_init(void)
{
    const struct {
        const char *name;
        const char *const *params;
        QsQmpHandler fn;
    } builtin[] = {
        { "qmp_capabilities", QS_STRV("enable"), cmd_capabilities },
        { "query-version", NULL, cmd_query_version },
        { "query-status", NULL, cmd_query_status },
        { "query-commands", NULL, cmd_query_commands },
        { "query-plugins", NULL, cmd_query_plugins },
        { "stop", NULL, cmd_stop },
        { "cont", NULL, cmd_cont },
        { "quit", NULL, cmd_quit },
        { "system_reset", NULL, cmd_system_reset },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(builtin); i++) {
        qs_qmp_register_full(builtin[i].name, builtin[i].params, builtin[i].fn, NULL, NULL);
    }
}
