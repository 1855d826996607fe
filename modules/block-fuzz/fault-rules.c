/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fault rules: parsing "OP ACTION key=value..." from options and rules files, and
 * deciding whether a request matches one. */
#include <errno.h>
#include <string.h>
#include "qs/block.h"
#include "fault-rules.h"

static const char *const op_names[] = { "read", "write", "zeroes", "discard", "flush", "any" };
static const char *const action_names[] = { "error", "short", "torn", "flip" };

static const struct { const char *name; int value; } errnos[] = {
    { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM }, { "EINVAL", EINVAL },
    { "ENOMEM", ENOMEM }, { "EROFS", EROFS }, { "EFBIG", EFBIG }, { "EACCES", EACCES },
    { "EAGAIN", EAGAIN }, { "ENOTSUP", ENOTSUP }, { "EDQUOT", EDQUOT },
};

const char *fault_op_name(FaultOp op) { return op_names[op]; }
const char *fault_action_name(FaultAction a) { return action_names[a]; }

void fault_rule_free(FaultRule *r)
{
    if (!r) return;
    g_free(r->image);
    g_free(r->text);
    g_free(r);
}

static bool bad(GError **errp, const FaultRule *r, const char *fmt, const char *word)
{
    g_autofree char *m = g_strdup_printf(fmt, word);
    g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "fault rule '%s': %s",
                r->text, m);
    return false;
}

static bool parse_errno(const char *v, int *out)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(errnos); i++) {
        if (!g_ascii_strcasecmp(v, errnos[i].name)) { *out = errnos[i].value; return true; }
    }
    uint64_t n;
    if (!qs_parse_uint(v, &n) || n == 0 || n > 4095) return false;
    *out = (int)n;
    return true;
}

static bool parse_key(FaultRule *r, const char *word, GError **errp)
{
    const char *eq = strchr(word, '=');
    if (!eq || eq == word) return bad(errp, r, "expected key=value, got '%s'", word);
    g_autofree char *key = g_strndup(word, (gsize)(eq - word));
    const char *v = eq + 1;
    uint64_t n;
    bool b;
    if (!strcmp(key, "offset")) {
        if (!qs_parse_size(v, &r->offset)) return bad(errp, r, "offset '%s' is not a size", v);
        r->has_offset = true;
    } else if (!strcmp(key, "nth")) {
        if (!qs_parse_uint(v, &r->nth) || !r->nth)
            return bad(errp, r, "nth '%s' is not a request number (1, 2, ...)", v);
    } else if (!strcmp(key, "from")) {
        if (!qs_parse_uint(v, &r->from) || !r->from)
            return bad(errp, r, "from '%s' is not a request number (1, 2, ...)", v);
    } else if (!strcmp(key, "count")) {
        if (!qs_parse_uint(v, &r->count)) return bad(errp, r, "count '%s' is not a number", v);
    } else if (!strcmp(key, "errno")) {
        if (!parse_errno(v, &r->err))
            return bad(errp, r, "errno '%s' is not EIO, ENOSPC, ... or 1..4095", v);
    } else if (!strcmp(key, "keep")) {
        if (!qs_parse_size(v, &r->keep)) return bad(errp, r, "keep '%s' is not a size", v);
        r->has_keep = true;
    } else if (!strcmp(key, "bit")) {
        if (!qs_parse_uint(v, &n) || n > 7) return bad(errp, r, "bit '%s' is not 0..7", v);
        r->bit = (unsigned)n;
    } else if (!strcmp(key, "crash")) {
        if (!qs_parse_bool(v, &b)) return bad(errp, r, "crash '%s' is not on/off", v);
        r->crash = b;
    } else if (!strcmp(key, "image")) {
        if (!*v) return bad(errp, r, "image '%s' is empty", v);
        g_free(r->image);
        r->image = g_strdup(v);
    } else {
        return bad(errp, r, "unknown key '%s' (offset, nth, from, count, errno, keep, bit, "
                   "crash, image)", key);
    }
    return true;
}

FaultRule *fault_rule_parse(const char *text, GError **errp)
{
    FaultRule *r = g_new0(FaultRule, 1);
    r->text = g_strstrip(g_strdup(text));
    r->err = EIO;
    g_auto(GStrv) words = g_strsplit_set(r->text, " \t", -1);
    unsigned pos = 0;
    bool ok = true;
    for (char **w = words; *w && ok; w++) {
        if (!**w) continue;
        if (pos == 0) {
            unsigned i;
            for (i = 0; i < G_N_ELEMENTS(op_names) && strcmp(*w, op_names[i]); i++) {}
            if (i == G_N_ELEMENTS(op_names))
                ok = bad(errp, r, "operation '%s' is not read, write, zeroes, discard, "
                         "flush or any", *w);
            r->op = (FaultOp)i;
        } else if (pos == 1) {
            unsigned i;
            for (i = 0; i < G_N_ELEMENTS(action_names) && strcmp(*w, action_names[i]); i++) {}
            if (i == G_N_ELEMENTS(action_names))
                ok = bad(errp, r, "action '%s' is not error, short, torn or flip", *w);
            r->action = (FaultAction)i;
        } else {
            ok = parse_key(r, *w, errp);
        }
        pos++;
    }
    if (ok && pos < 2) ok = bad(errp, r, "%s", "expected 'OP ACTION [key=value ...]'");
    if (ok && r->action == FA_TORN && r->op != FOP_WRITE)
        ok = bad(errp, r, "action 'torn' applies to write, not '%s'", op_names[r->op]);
    if (ok && (r->action == FA_SHORT || r->action == FA_FLIP) &&
        r->op != FOP_READ && r->op != FOP_WRITE)
        ok = bad(errp, r, "this action applies to read or write, not '%s'", op_names[r->op]);
    if (ok && r->nth && !r->count) r->count = 1;
    if (!ok) {
        fault_rule_free(r);
        return NULL;
    }
    return r;
}

bool fault_rules_parse_text(GPtrArray *rules, const char *text, const char *where,
                            GError **errp)
{
    g_auto(GStrv) lines = g_strsplit_set(text, ";\n", -1);
    for (char **l = lines; *l; l++) {
        char *hash = strchr(*l, '#');
        if (hash) *hash = 0;
        g_strstrip(*l);
        if (!**l) continue;
        GError *err = NULL;
        FaultRule *r = fault_rule_parse(*l, &err);
        if (!r) {
            g_propagate_prefixed_error(errp, err, "%s: ", where);
            return false;
        }
        g_ptr_array_add(rules, r);
    }
    return true;
}

bool fault_rules_parse_file(GPtrArray *rules, const char *path, GError **errp)
{
    g_autofree char *text = NULL;
    gsize len;
    GError *err = NULL;
    if (!g_file_get_contents(path, &text, &len, &err)) {
        g_propagate_prefixed_error(errp, err, "fault rules file: ");
        return false;
    }
    if (strlen(text) != len) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL,
                    "fault rules file '%s': contains a NUL byte", path);
        return false;
    }
    g_autofree char *where = g_strdup_printf("rules file '%s'", path);
    return fault_rules_parse_text(rules, text, where, errp);
}

bool fault_rule_matches(const FaultRule *r, FaultOp op, uint64_t off, uint64_t len,
                        uint64_t seq, uint64_t seq_any, const char *filename)
{
    if (r->op != FOP_ANY && r->op != op) return false;
    uint64_t n = r->op == FOP_ANY ? seq_any : seq;
    if (r->nth && r->nth != n) return false;
    if (r->from && n < r->from) return false;
    if (r->has_offset) {
        if (op == FOP_FLUSH) return false;
        if (r->offset < off || r->offset - off >= len) return false;
    }
    if (r->image && !strstr(filename, r->image)) return false;
    return true;
}
