/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parsing of QEMU-style "k=v,k2=v2" option strings into typed, declared values. */
#include <errno.h>
#include <string.h>
#include "qs/opts.h"
#include "qs-internal.h"

struct QsOpts {
    const QsPropDesc *decl;
    GHashTable *values;   /* key -> value text, defaults included */
};

G_DEFINE_QUARK(qs-error-quark, qs_error)

const char *qs_prop_type_name(QsPropType t)
{
    switch (t) {
    case QS_PROP_STRING: return "str";
    case QS_PROP_BOOL:   return "bool";
    case QS_PROP_INT:    return "int";
    case QS_PROP_UINT:   return "uint";
    case QS_PROP_SIZE:   return "size";
    }
    return "?";
}

bool qs_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y", NULL };
    static const char *const no[] = { "off", "no", "false", "n", NULL };
    for (int i = 0; yes[i]; i++) {
        if (!strcmp(s, yes[i])) { *out = true; return true; }
        if (!strcmp(s, no[i]))  { *out = false; return true; }
    }
    return false;
}

bool qs_parse_int(const char *s, int64_t *out)
{
    char *end;
    if (!*s) return false;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool qs_parse_uint(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || g_ascii_isspace(*s)) return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* Sizes as QEMU takes them: a number (decimal, may have a fraction with a suffix) and an
 * optional suffix b/k/M/G/T/P/E, case-insensitive, binary multiples. */
bool qs_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || g_ascii_isspace(*s)) return false;
    errno = 0;
    if (g_str_has_prefix(s, "0x") || g_str_has_prefix(s, "0X")) {
        unsigned long long v = strtoull(s, &end, 16);
        if (errno || *end) return false;
        *out = v;
        return true;
    }
    unsigned long long whole = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    double frac = 0;
    if (*end == '.') {
        char *fend;
        frac = g_ascii_strtod(end, &fend);
        if (fend == end + 1) return false;
        end = fend;
    }
    int shift = 0;
    switch (g_ascii_tolower(*end)) {
    case '\0': break;
    case 'b': shift = 0; end++; break;
    case 'k': shift = 10; end++; break;
    case 'm': shift = 20; end++; break;
    case 'g': shift = 30; end++; break;
    case 't': shift = 40; end++; break;
    case 'p': shift = 50; end++; break;
    case 'e': shift = 60; end++; break;
    default: return false;
    }
    if (*end) return false;
    if (frac != 0 && shift == 0) return false;   /* "1.5" bytes is meaningless */
    if (shift && whole > (UINT64_MAX >> shift)) return false;
    uint64_t v = (uint64_t)whole << shift;
    if (frac != 0) {
        double extra = frac * (double)(1ull << shift);
        if ((double)(UINT64_MAX - v) < extra) return false;
        v += (uint64_t)extra;
    }
    *out = v;
    return true;
}

static const QsPropDesc *find_decl(const QsPropDesc *decl, const char *key)
{
    for (; decl && decl->name; decl++) {
        if (!strcmp(decl->name, key)) return decl;
    }
    return NULL;
}

static bool check_value(const QsPropDesc *d, const char *val, const char *owner,
                        GError **errp)
{
    bool b; int64_t i; uint64_t u;
    bool ok = true;
    switch (d->type) {
    case QS_PROP_STRING: break;
    case QS_PROP_BOOL: ok = qs_parse_bool(val, &b); break;
    case QS_PROP_INT: ok = qs_parse_int(val, &i); break;
    case QS_PROP_UINT: ok = qs_parse_uint(val, &u); break;
    case QS_PROP_SIZE: ok = qs_parse_size(val, &u); break;
    }
    if (!ok) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: option '%s' expects %s, got '%s'", owner, d->name,
                    d->type == QS_PROP_BOOL ? "on/off" : qs_prop_type_name(d->type), val);
    }
    return ok;
}

/* Read one element up to an unescaped comma, unescaping ",,". */
static const char *next_elem(const char *p, GString *out)
{
    g_string_truncate(out, 0);
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',') { g_string_append_c(out, ','); p += 2; continue; }
            return p + 1;
        }
        g_string_append_c(out, *p++);
    }
    return p;
}

char *qs_opts_split_head(const char *text, char **head)
{
    GString *e = g_string_new(NULL);
    const char *rest = next_elem(text ? text : "", e);
    *head = g_string_free(e, FALSE);
    return g_strdup(rest);
}

QsOpts *qs_opts_parse(const char *text, const QsPropDesc *decl, const char *owner,
                      GError **errp)
{
    QsOpts *o = g_new0(QsOpts, 1);
    o->decl = decl;
    o->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (const QsPropDesc *d = decl; d && d->name; d++) {
        if (d->def) g_hash_table_insert(o->values, g_strdup(d->name), g_strdup(d->def));
    }
    GString *e = g_string_new(NULL);
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    const char *p = text ? text : "";
    while (*p) {
        p = next_elem(p, e);
        if (e->len == 0) continue;
        char *eq = strchr(e->str, '=');
        char *key = eq ? g_strndup(e->str, eq - e->str) : g_strdup(e->str);
        const char *val = eq ? eq + 1 : NULL;
        const QsPropDesc *d = find_decl(decl, key);
        if (!d) {
            GString *known = g_string_new(NULL);
            for (const QsPropDesc *k = decl; k && k->name; k++)
                g_string_append_printf(known, "%s%s", known->len ? ", " : "", k->name);
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "%s: unknown option '%s' (%s%s)", owner, key,
                        known->len ? "known: " : "it takes no options", known->str);
            g_string_free(known, TRUE);
            g_free(key);
            goto fail;
        }
        if (!val) {
            /* A bare key means "on" for booleans, as in QEMU. */
            if (d->type != QS_PROP_BOOL) {
                g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                            "%s: option '%s' needs a value (%s=<%s>)", owner, key, key,
                            qs_prop_type_name(d->type));
                g_free(key);
                goto fail;
            }
            val = "on";
        }
        if (g_hash_table_contains(seen, d->name)) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "%s: option '%s' given twice", owner, key);
            g_free(key);
            goto fail;
        }
        g_hash_table_add(seen, (gpointer)d->name);
        if (!check_value(d, val, owner, errp)) { g_free(key); goto fail; }
        g_hash_table_insert(o->values, key, g_strdup(val));
    }
    g_string_free(e, TRUE);
    g_hash_table_destroy(seen);
    return o;
fail:
    g_string_free(e, TRUE);
    g_hash_table_destroy(seen);
    qs_opts_free(o);
    return NULL;
}

void qs_opts_free(QsOpts *opts)
{
    if (!opts) return;
    g_hash_table_destroy(opts->values);
    g_free(opts);
}

bool qs_opts_has(const QsOpts *opts, const char *key)
{
    return opts && g_hash_table_contains(opts->values, key);
}

const char *qs_opts_get_str(const QsOpts *opts, const char *key)
{
    return opts ? g_hash_table_lookup(opts->values, key) : NULL;
}

bool qs_opts_get_bool(const QsOpts *opts, const char *key)
{
    const char *s = qs_opts_get_str(opts, key);
    bool b = false;
    return s && qs_parse_bool(s, &b) && b;
}

int64_t qs_opts_get_int(const QsOpts *opts, const char *key)
{
    const char *s = qs_opts_get_str(opts, key);
    int64_t v = 0;
    return s && qs_parse_int(s, &v) ? v : 0;
}

uint64_t qs_opts_get_uint(const QsOpts *opts, const char *key)
{
    const char *s = qs_opts_get_str(opts, key);
    const QsPropDesc *d = opts ? find_decl(opts->decl, key) : NULL;
    uint64_t v = 0;
    if (!s) return 0;
    if (d && d->type == QS_PROP_SIZE) return qs_parse_size(s, &v) ? v : 0;
    return qs_parse_uint(s, &v) ? v : 0;
}

void qs_props_print_help(const QsPropDesc *decl, GString *out)
{
    if (!decl || !decl->name) {
        g_string_append(out, "  (no options)\n");
        return;
    }
    for (const QsPropDesc *d = decl; d->name; d++) {
        g_string_append_printf(out, "  %s=<%s>", d->name, qs_prop_type_name(d->type));
        if (d->help) g_string_append_printf(out, " - %s", d->help);
        if (d->def) g_string_append_printf(out, " (default: %s)", d->def);
        g_string_append_c(out, '\n');
    }
}
