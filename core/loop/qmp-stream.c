/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Splits a QMP byte stream into JSON messages the way QEMU's streamer does (balanced
 * braces/brackets outside strings, or one bare token), with size and nesting limits, and
 * writes JSON in QEMU's layout. */
#include <string.h>
#include "qmp-internal.h"

void qs_json_splitter_init(JsonSplitter *s, void (*message)(void *, const char *, size_t),
                           void (*error)(void *, const char *), void *opaque)
{
    memset(s, 0, sizeof(*s));
    s->buf = g_string_new(NULL);
    s->message = message;
    s->error = error;
    s->opaque = opaque;
}

void qs_json_splitter_reset(JsonSplitter *s)
{
    g_string_truncate(s->buf, 0);
    s->depth = 0;
    s->in_string = s->escape = s->scalar = s->discarding = false;
}

void qs_json_splitter_free(JsonSplitter *s)
{
    if (s->buf) g_string_free(s->buf, TRUE);
    s->buf = NULL;
}

static void emit(JsonSplitter *s)
{
    bool discarded = s->discarding;
    GString *b = s->buf;
    s->buf = g_string_new(NULL);
    qs_json_splitter_reset(s);
    if (!discarded && b->len) s->message(s->opaque, b->str, b->len);
    g_string_free(b, TRUE);
}

static void fail(JsonSplitter *s, const char *desc)
{
    /* Report once, then drop the rest of this message. */
    if (!s->discarding) s->error(s->opaque, desc);
    s->discarding = true;
    g_string_truncate(s->buf, 0);
}

static bool is_delim(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '{' || c == '}' ||
           c == '[' || c == ']' || c == ',' || c == ':' || c == '"';
}

void qs_json_splitter_feed(JsonSplitter *s, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (s->scalar) {
            if (is_delim(c)) {
                emit(s);          /* the token ended; c starts something new */
            } else {
                if (!s->discarding) g_string_append_c(s->buf, c);
                if (s->buf->len > QMP_MAX_MESSAGE) fail(s, "JSON token exceeds 1048576 bytes");
                continue;
            }
        }
        if (s->in_string) {
            if (!s->discarding) g_string_append_c(s->buf, c);
            if (s->escape) s->escape = false;
            else if (c == '\\') s->escape = true;
            else if (c == '"') {
                s->in_string = false;
                if (s->depth == 0) { emit(s); continue; }
            }
        } else if (s->depth == 0 && !s->buf->len && !s->discarding) {
            /* between messages */
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
            g_string_append_c(s->buf, c);
            if (c == '{' || c == '[') s->depth = 1;
            else if (c == '"') s->in_string = true;
            else if (c == '}' || c == ']') emit(s);   /* stray closer: a parse error */
            else s->scalar = true;
            continue;
        } else {
            if (!s->discarding) g_string_append_c(s->buf, c);
            if (c == '"') s->in_string = true;
            else if (c == '{' || c == '[') {
                if (++s->depth > QMP_MAX_NESTING) fail(s, "JSON nesting exceeds 1024 levels");
            } else if (c == '}' || c == ']') {
                if (--s->depth <= 0) { emit(s); continue; }
            }
        }
        if (s->buf->len > QMP_MAX_MESSAGE) fail(s, "JSON message exceeds 1048576 bytes");
    }
}

/* ---- output in QEMU's layout ---- */

static void append_string(GString *out, const char *str)
{
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        switch (*p) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        default:
            if (*p < 0x20) g_string_append_printf(out, "\\u%04x", *p);
            else g_string_append_c(out, *p);
        }
    }
    g_string_append_c(out, '"');
}

void qs_json_append(GString *out, JsonNode *node)
{
    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        g_string_append(out, "null");
        return;
    }
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *o = json_node_get_object(node);
        g_string_append_c(out, '{');
        GList *members = json_object_get_members(o);   /* insertion order */
        for (GList *m = members; m; m = m->next) {
            if (m != members) g_string_append(out, ", ");
            append_string(out, m->data);
            g_string_append(out, ": ");
            qs_json_append(out, json_object_get_member(o, m->data));
        }
        g_list_free(members);
        g_string_append_c(out, '}');
        return;
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *a = json_node_get_array(node);
        g_string_append_c(out, '[');
        for (guint i = 0; i < json_array_get_length(a); i++) {
            if (i) g_string_append(out, ", ");
            qs_json_append(out, json_array_get_element(a, i));
        }
        g_string_append_c(out, ']');
        return;
    }
    GType t = json_node_get_value_type(node);
    if (t == G_TYPE_STRING) append_string(out, json_node_get_string(node));
    else if (t == G_TYPE_BOOLEAN) g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
    else if (t == G_TYPE_DOUBLE) {
        char b[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append(out, g_ascii_dtostr(b, sizeof(b), json_node_get_double(node)));
    } else {
        g_string_append_printf(out, "%" G_GINT64_FORMAT, json_node_get_int(node));
    }
}
