/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the QMP files share: the JSON message splitter, the QEMU-style serializer, the
 * command table and the monitor shutdown hook. */
#ifndef QS_QMP_INTERNAL_H
#define QS_QMP_INTERNAL_H

#include <stdint.h>
#include "qs/qmp.h"

/* ---- splitting a byte stream into JSON messages (qmp-stream.c) ---- */

#define QMP_MAX_MESSAGE (1u << 20)   /* bytes per message */
#define QMP_MAX_NESTING 1024

typedef struct JsonSplitter {
    GString *buf;
    int depth;
    bool in_string, escape;
    bool scalar;          /* inside a top-level bare token (number, keyword) */
    bool discarding;      /* an oversized message: drop until it ends */
    /* a complete message (not NUL-terminated in the stream, but buf is) */
    void (*message)(void *opaque, const char *json, size_t len);
    /* an error to report for the current message (too large, too deep) */
    void (*error)(void *opaque, const char *desc);
    void *opaque;
} JsonSplitter;

void qs_json_splitter_init(JsonSplitter *s, void (*message)(void *, const char *, size_t),
                           void (*error)(void *, const char *), void *opaque);
void qs_json_splitter_reset(JsonSplitter *s);
void qs_json_splitter_free(JsonSplitter *s);
/* Feed bytes; calls message/error for each complete message.  The callbacks must not
 * free the splitter. */
void qs_json_splitter_feed(JsonSplitter *s, const uint8_t *data, size_t len);

/* QEMU's JSON layout ("key": value, ", " between members), appended to out. */
void qs_json_append(GString *out, JsonNode *node);

/* ---- commands (qmp.c) ---- */

typedef struct QmpCommand {
    char *name;
    char **params;          /* NULL: any arguments */
    bool any_args;
    QsQmpHandler handler;
    void *opaque;
} QmpCommand;

const QmpCommand *qs_qmp_find(const char *name);
/* Names of all commands, sorted (container only). */
GPtrArray *qs_qmp_command_names(void);
/* Register the built-in commands (qmp-commands.c). */
void qs_qmp_commands_init(void);
/* Close every monitor after flushing (end of qs_main_loop_run). */
void qs_qmp_shutdown(void);

#endif
