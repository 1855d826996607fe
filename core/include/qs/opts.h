/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Typed key=value options: what -plugin NAME,k=v and -device TYPE,k=v parse into.
 * A declaration table (QsPropDesc) says which keys exist and their types. */
#ifndef QS_OPTS_H
#define QS_OPTS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum QsPropType {
    QS_PROP_STRING,
    QS_PROP_BOOL,   /* on/off, yes/no, true/false */
    QS_PROP_INT,    /* signed 64-bit, decimal or 0x hex */
    QS_PROP_UINT,   /* unsigned 64-bit, decimal or 0x hex */
    QS_PROP_SIZE,   /* unsigned with optional k/M/G/T/P/E suffix (powers of 1024) */
} QsPropType;

/* One declared option or property; tables end with an entry whose name is NULL. */
typedef struct QsPropDesc {
    const char *name;
    QsPropType type;
    const char *def;    /* default as text, or NULL for "unset" */
    const char *help;
} QsPropDesc;

typedef struct QsOpts QsOpts;

/* Parse "k=v,k2=v2" (",," escapes a comma) against decl.  A key not in decl or a value
 * that does not fit its type is an error naming both.  owner names what the options are
 * for ("module 'x'", "device 'edu'") in messages. */
QsOpts *qs_opts_parse(const char *text, const QsPropDesc *decl, const char *owner,
                      GError **errp);
void qs_opts_free(QsOpts *opts);

/* Split "HEAD,rest" at the first unescaped comma: *head gets HEAD, return value the rest
 * (never NULL).  Both are newly allocated. */
char *qs_opts_split_head(const char *text, char **head);

bool qs_opts_has(const QsOpts *opts, const char *key);   /* set explicitly or by default */
const char *qs_opts_get_str(const QsOpts *opts, const char *key);
bool qs_opts_get_bool(const QsOpts *opts, const char *key);
int64_t qs_opts_get_int(const QsOpts *opts, const char *key);
uint64_t qs_opts_get_uint(const QsOpts *opts, const char *key);  /* UINT and SIZE */

/* Parse one value of a type; used by the parser and by anyone taking sizes. */
bool qs_parse_bool(const char *s, bool *out);
bool qs_parse_int(const char *s, int64_t *out);
bool qs_parse_uint(const char *s, uint64_t *out);
bool qs_parse_size(const char *s, uint64_t *out);

const char *qs_prop_type_name(QsPropType t);
/* Print a declaration table as help lines ("  name=<type> - help (default: x)"). */
void qs_props_print_help(const QsPropDesc *decl, GString *out);

#endif
