/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-img: entry point, shared helpers (errors, sizes, QEMU-style JSON), and the
 * create, info, check, map, compare, measure, resize, snapshot and amend subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include "img.h"
#include "module-loader.h"

void img_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qemu-img: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void usage_hint(void)
{
    fprintf(stderr, "Try 'qemu-img --help' for more information\n");
}

static int bad_usage(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qemu-img: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    usage_hint();
    return 1;
}

QsBlock *img_open(const char *filename, const char *fmt, int flags, bool quiet)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(filename, fmt, flags, NULL, &err);
    if (!bs) {
        if (g_str_has_prefix(err->message, "Could not open '"))
            img_error("Could not open '%s': %s", filename, err->message);
        else
            img_error("Could not open '%s': %s", filename, err->message);
        g_error_free(err);
    }
    return bs;
}

bool img_parse_size(const char *s, uint64_t *out)
{
    if (!qs_parse_size(s, out) || *out > (uint64_t)QS_BLOCK_MAX_SIZE) return false;
    return true;
}

char *img_size_to_str(uint64_t v)
{
    static const char *const suf[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int e = 0;
    frexp((double)v / (1000.0 / 1024.0), &e);
    int i = CLAMP((e - 1) / 10, 0, 6);
    return g_strdup_printf("%0.3g %sB", (double)v / (double)(1ull << (10 * i)), suf[i]);
}

static void json_indent(FILE *out, int level)
{
    for (int i = 0; i < level; i++) fputs("    ", out);
}

static void json_print_rec(JsonNode *n, FILE *out, int level)
{
    switch (json_node_get_node_type(n)) {
    case JSON_NODE_OBJECT: {
        JsonObject *o = json_node_get_object(n);
        GList *members = json_object_get_members(o);
        if (!members) { fputs("{}", out); break; }
        fputs("{\n", out);
        for (GList *l = members; l; l = l->next) {
            json_indent(out, level + 1);
            g_autofree char *k = g_strescape(l->data, NULL);
            fprintf(out, "\"%s\": ", k);
            json_print_rec(json_object_get_member(o, l->data), out, level + 1);
            fputs(l->next ? ",\n" : "\n", out);
        }
        g_list_free(members);
        json_indent(out, level);
        fputc('}', out);
        break;
    }
    case JSON_NODE_ARRAY: {
        JsonArray *a = json_node_get_array(n);
        guint len = json_array_get_length(a);
        if (!len) { fputs("[]", out); break; }
        fputs("[\n", out);
        for (guint i = 0; i < len; i++) {
            json_indent(out, level + 1);
            json_print_rec(json_array_get_element(a, i), out, level + 1);
            fputs(i + 1 < len ? ",\n" : "\n", out);
        }
        json_indent(out, level);
        fputc(']', out);
        break;
    }
    case JSON_NODE_VALUE: {
        GType t = json_node_get_value_type(n);
        if (t == G_TYPE_STRING) {
            JsonGenerator *g = json_generator_new();
            json_generator_set_root(g, n);
            g_autofree char *s = json_generator_to_data(g, NULL);
            fputs(s, out);
            g_object_unref(g);
        } else if (t == G_TYPE_BOOLEAN) {
            fputs(json_node_get_boolean(n) ? "true" : "false", out);
        } else if (t == G_TYPE_DOUBLE) {
            fprintf(out, "%g", json_node_get_double(n));
        } else {
            fprintf(out, "%" G_GINT64_FORMAT, json_node_get_int(n));
        }
        break;
    }
    case JSON_NODE_NULL:
        fputs("null", out);
        break;
    }
}

void img_json_print(JsonNode *n, FILE *out)
{
    json_print_rec(n, out, 0);
    fputc('\n', out);
}

bool img_cache_flags(const char *mode, int *flags)
{
    *flags = 0;
    if (!strcmp(mode, "none") || !strcmp(mode, "off")) *flags = QS_BLOCK_NOCACHE;
    else if (!strcmp(mode, "directsync")) *flags = QS_BLOCK_NOCACHE;
    else if (!strcmp(mode, "unsafe")) *flags = QS_BLOCK_NO_FLUSH;
    else if (strcmp(mode, "writeback") && strcmp(mode, "writethrough")) return false;
    return true;
}

void img_progress(bool on, double pct)
{
    if (!on) return;
    printf("    (%3.2f/100%%)\r", pct);
    fflush(stdout);
}

/* ---- create ---- */

bool img_opts_help(const char *fmt, const char *opts)
{
    if (!opts || (strcmp(opts, "help") && strcmp(opts, "?") && !g_str_has_suffix(opts, ",help")))
        return false;
    const QsBlockDriver *drv = qs_block_driver_find(fmt);
    if (!drv) {
        img_error("Unknown file format '%s'", fmt);
        return true;
    }
    printf("Supported options:\n");
    for (const QsPropDesc *d = drv->create_opts; d && d->name; d++) {
        const char *ty = d->type == QS_PROP_BOOL ? "bool (on/off)" : d->type == QS_PROP_SIZE ? "size"
                         : d->type == QS_PROP_STRING ? "str" : "num";
        g_autofree char *k = g_strdup_printf("%s=<%s>", d->name, ty);
        printf("  %-22s - %s\n", k, d->help);
    }
    return true;
}

/* The "Formatting ..." line QEMU prints, with the options in its order. */
static void print_formatting(const char *fn, const char *fmt, uint64_t size, const char *opts)
{
    g_autoptr(GString) s = g_string_new(NULL);
    g_string_append_printf(s, "Formatting '%s', fmt=%s", fn, fmt);
    GHashTable *kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_auto(GStrv) parts = g_strsplit(opts ? opts : "", ",", -1);
    for (char **p = parts; *p; p++) {
        char *eq = strchr(*p, '=');
        if (eq) g_hash_table_insert(kv, g_strndup(*p, eq - *p), g_strdup(eq + 1));
    }
#define KV(k, d) (g_hash_table_lookup(kv, k) ? (const char *)g_hash_table_lookup(kv, k) : (d))
    if (!strcmp(fmt, "qcow2")) {
        uint64_t cs = 65536;
        if (g_hash_table_lookup(kv, "cluster_size")) qs_parse_size(KV("cluster_size", ""), &cs);
        g_string_append_printf(s, " cluster_size=%" G_GUINT64_FORMAT, cs);
        if (g_hash_table_lookup(kv, "compat")) g_string_append_printf(s, " compat=%s", KV("compat", ""));
        if (g_hash_table_lookup(kv, "preallocation"))
            g_string_append_printf(s, " preallocation=%s", KV("preallocation", ""));
        bool b = false;
        qs_parse_bool(KV("extended_l2", "off"), &b);
        g_string_append_printf(s, " extended_l2=%s", b ? "on" : "off");
        g_string_append_printf(s, " compression_type=%s", KV("compression_type", "zlib"));
        g_string_append_printf(s, " size=%" G_GUINT64_FORMAT, size);
        if (g_hash_table_lookup(kv, "backing_file"))
            g_string_append_printf(s, " backing_file=%s", KV("backing_file", ""));
        if (g_hash_table_lookup(kv, "backing_fmt"))
            g_string_append_printf(s, " backing_fmt=%s", KV("backing_fmt", ""));
        b = false;
        qs_parse_bool(KV("lazy_refcounts", "off"), &b);
        g_string_append_printf(s, " lazy_refcounts=%s", b ? "on" : "off");
        g_string_append_printf(s, " refcount_bits=%s", KV("refcount_bits", "16"));
    } else {
        if (g_hash_table_lookup(kv, "preallocation"))
            g_string_append_printf(s, " preallocation=%s", KV("preallocation", ""));
        g_string_append_printf(s, " size=%" G_GUINT64_FORMAT, size);
    }
#undef KV
    g_hash_table_destroy(kv);
    printf("%s\n", s->str);
}

int img_create(int argc, char **argv)
{
    const char *fmt = "raw", *base = NULL, *bfmt = NULL;
    g_autoptr(GString) opts = g_string_new(NULL);
    bool quiet = false, unsafe = false;
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "object", 1, 0, 'O' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", lo, NULL)) != -1) {
        switch (c) {
        case 'F': bfmt = optarg; break;
        case 'b': base = optarg; break;
        case 'f': fmt = optarg; break;
        case 'o':
            if (opts->len) g_string_append_c(opts, ',');
            g_string_append(opts, optarg);
            break;
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        case 'O': return bad_usage("--object is not supported");
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (img_opts_help(fmt, opts->str)) return 0;
    if (optind >= argc) return bad_usage("Expecting image file name");
    const char *fn = argv[optind++];
    uint64_t size = UINT64_MAX;
    if (optind < argc) {
        if (!img_parse_size(argv[optind], &size)) {
            img_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
            img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            return 1;
        }
        optind++;
    }
    if (optind != argc) return bad_usage("Unexpected argument: %s", argv[optind]);
    if (base) g_string_append_printf(opts, "%sbacking_file=%s", opts->len ? "," : "", base);
    if (bfmt) g_string_append_printf(opts, "%sbacking_fmt=%s", opts->len ? "," : "", bfmt);
    const QsBlockDriver *drv = qs_block_driver_find(fmt);
    if (!drv) {
        img_error("Unknown file format '%s'", fmt);
        return 1;
    }
    GError *err = NULL;
    QsOpts *o = qs_block_create_opts_parse(drv, opts->str, &err);
    if (!o) {
        img_error("%s", err->message);
        g_error_free(err);
        return 1;
    }
    if (size == UINT64_MAX && qs_opts_has(o, "size")) size = qs_opts_get_uint(o, "size");
    qs_opts_free(o);
    if (size == UINT64_MAX && !base) {
        img_error("%s: Image creation needs a size parameter", fn);
        return 1;
    }
    if (size == UINT64_MAX && base) {
        QsBlock tmp = { .filename = (char *)fn };
        g_autofree char *path = qs_block_backing_path(&tmp, base);
        QsBlock *b = qs_block_open(path, bfmt, QS_BLOCK_NO_BACKING, NULL, &err);
        if (!b) {
            img_error("%s: Could not open backing image: %s", fn, err->message);
            g_error_free(err);
            return 1;
        }
        size = b->size;
        qs_block_close(b);
    }
    if (!quiet) print_formatting(fn, fmt, size, opts->str);
    fflush(stdout);
    /* remove a size= given in -o: the positional size wins as above */
    if (!qs_block_create(fmt, fn, strstr(opts->str, "size=") && !strstr(opts->str, "_size=") ? UINT64_MAX : size,
                         opts->str, unsafe, &err)) {
        img_error("%s: %s", fn, err->message);
        g_error_free(err);
        return 1;
    }
    return 0;
}

/* ---- info ---- */

static JsonNode *snapshot_json(const QsBlockSnapshot *sn)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    if (sn->has_icount) {
        json_builder_set_member_name(b, "icount");
        json_builder_add_int_value(b, (gint64)sn->icount);
    }
    json_builder_set_member_name(b, "vm-clock-nsec");
    json_builder_add_int_value(b, (gint64)(sn->vm_clock_nsec % 1000000000ull));
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, sn->name);
    json_builder_set_member_name(b, "date-sec");
    json_builder_add_int_value(b, sn->date_sec);
    json_builder_set_member_name(b, "date-nsec");
    json_builder_add_int_value(b, sn->date_nsec);
    json_builder_set_member_name(b, "vm-clock-sec");
    json_builder_add_int_value(b, (gint64)(sn->vm_clock_nsec / 1000000000ull));
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, sn->id);
    json_builder_set_member_name(b, "vm-state-size");
    json_builder_add_int_value(b, (gint64)sn->vm_state_size);
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    g_object_unref(b);
    return n;
}

static JsonNode *image_info(QsBlock *bs)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    g_autoptr(QsBlockSnapshotList) snaps = bs->drv->snapshot_list ? bs->drv->snapshot_list(bs) : NULL;
    if (snaps && snaps->len) {
        json_builder_set_member_name(b, "snapshots");
        json_builder_begin_array(b);
        for (guint i = 0; i < snaps->len; i++) json_builder_add_value(b, snapshot_json(qs_block_snapshot_at(snaps, i)));
        json_builder_end_array(b);
    }
    if (bs->backing_file && bs->backing_fmt) {
        json_builder_set_member_name(b, "backing-filename-format");
        json_builder_add_string_value(b, bs->backing_fmt);
    }
    json_builder_set_member_name(b, "virtual-size");
    json_builder_add_int_value(b, (gint64)bs->size);
    json_builder_set_member_name(b, "filename");
    json_builder_add_string_value(b, bs->filename);
    uint32_t cs = qs_block_cluster_size(bs);
    if (cs) {
        json_builder_set_member_name(b, "cluster-size");
        json_builder_add_int_value(b, cs);
    }
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, bs->drv->name);
    int64_t as = qs_block_allocated_size(bs);
    if (as >= 0) {
        json_builder_set_member_name(b, "actual-size");
        json_builder_add_int_value(b, as);
    }
    if (bs->drv->info_specific) {
        /* built apart: a driver with nothing to say gets no format-specific member */
        JsonBuilder *db = json_builder_new();
        json_builder_begin_object(db);
        bs->drv->info_specific(bs, db);
        json_builder_end_object(db);
        JsonNode *data = json_builder_get_root(db);
        g_object_unref(db);
        if (json_object_get_size(json_node_get_object(data))) {
            json_builder_set_member_name(b, "format-specific");
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "type");
            json_builder_add_string_value(b, bs->drv->name);
            json_builder_set_member_name(b, "data");
            json_builder_add_value(b, data);
            json_builder_end_object(b);
        } else {
            json_node_unref(data);
        }
    }
    if (bs->backing_file) {
        g_autofree char *full = qs_block_backing_path(bs, bs->backing_file);
        json_builder_set_member_name(b, "full-backing-filename");
        json_builder_add_string_value(b, full);
        json_builder_set_member_name(b, "backing-filename");
        json_builder_add_string_value(b, bs->backing_file);
    }
    if (!bs->drv->no_info) {
        json_builder_set_member_name(b, "dirty-flag");
        json_builder_add_boolean_value(b, bs->drv->is_dirty ? bs->drv->is_dirty(bs) : false);
    }
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    g_object_unref(b);
    return n;
}

static void print_snapshot_table(const QsBlockSnapshotList *snaps)
{
    printf("ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\n");
    for (guint i = 0; i < snaps->len; i++) {
        const QsBlockSnapshot *sn = qs_block_snapshot_at(snaps, i);
        time_t t = sn->date_sec;
        struct tm tm;
        localtime_r(&t, &tm);
        char date[32];
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t ms = sn->vm_clock_nsec / 1000000;
        g_autofree char *clk = g_strdup_printf("%02u:%02u:%02u.%03u", (unsigned)(ms / 3600000),
                                               (unsigned)(ms / 60000 % 60),
                                               (unsigned)(ms / 1000 % 60), (unsigned)(ms % 1000));
        g_autofree char *vs = img_size_to_str(sn->vm_state_size);
        g_autofree char *ic = sn->has_icount ? g_strdup_printf("%" G_GUINT64_FORMAT, sn->icount)
                                             : g_strdup("");
        /* QEMU 7.2's widths: a tag of 16+ characters or a size of 8+ shifts the row by
         * what overflows (measured; the header's columns are 10, 17 and 8 wide) */
        printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, vs, date, clk, ic);
    }
}

/* QEMU's human dump of format-specific data: "key: value" (dashes in keys become
 * spaces), objects and arrays on the following lines one level deeper, array elements
 * numbered "[i]:". */
static void human_value(JsonNode *v, int level);

static bool json_composite(JsonNode *v)
{
    return JSON_NODE_HOLDS_OBJECT(v) || JSON_NODE_HOLDS_ARRAY(v);
}

static void human_object(JsonObject *o, int level)
{
    GList *members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next) {
        g_autofree char *key = g_strdup(l->data);
        for (char *p = key; *p; p++) if (*p == '-') *p = ' ';
        JsonNode *v = json_object_get_member(o, l->data);
        printf("%*s%s:%c", level * 4, "", key, json_composite(v) ? '\n' : ' ');
        human_value(v, level + 1);
    }
    g_list_free(members);
}

static void human_value(JsonNode *v, int level)
{
    if (JSON_NODE_HOLDS_OBJECT(v)) {
        human_object(json_node_get_object(v), level);
    } else if (JSON_NODE_HOLDS_ARRAY(v)) {
        JsonArray *a = json_node_get_array(v);
        for (guint i = 0; i < json_array_get_length(a); i++) {
            JsonNode *e = json_array_get_element(a, i);
            printf("%*s[%u]:%c", level * 4, "", i, json_composite(e) ? '\n' : ' ');
            human_value(e, level + 1);
        }
    } else if (JSON_NODE_HOLDS_NULL(v)) {
        printf("null\n");
    } else if (json_node_get_value_type(v) == G_TYPE_BOOLEAN) {
        printf("%s\n", json_node_get_boolean(v) ? "true" : "false");
    } else if (json_node_get_value_type(v) == G_TYPE_STRING) {
        printf("%s\n", json_node_get_string(v));
    } else if (json_node_get_value_type(v) == G_TYPE_DOUBLE) {
        printf("%g\n", json_node_get_double(v));
    } else {
        printf("%" G_GINT64_FORMAT "\n", json_node_get_int(v));
    }
}

static void print_info_human(QsBlock *bs, JsonNode *n)
{
    JsonObject *o = json_node_get_object(n);
    printf("image: %s\nfile format: %s\n", bs->filename, bs->drv->name);
    g_autofree char *vs = img_size_to_str(bs->size);
    printf("virtual size: %s (%" G_GUINT64_FORMAT " bytes)\n", vs, bs->size);
    int64_t as = qs_block_allocated_size(bs);
    if (as >= 0) {
        g_autofree char *d = img_size_to_str((uint64_t)as);
        printf("disk size: %s\n", d);
    } else {
        printf("disk size: unavailable\n");
    }
    uint32_t cs = qs_block_cluster_size(bs);
    if (cs) printf("cluster_size: %u\n", cs);
    if (bs->backing_file) {
        g_autofree char *full = qs_block_backing_path(bs, bs->backing_file);
        if (strcmp(full, bs->backing_file))
            printf("backing file: %s (actual path: %s)\n", bs->backing_file, full);
        else
            printf("backing file: %s\n", bs->backing_file);
        if (bs->backing_fmt) printf("backing file format: %s\n", bs->backing_fmt);
    }
    if (bs->drv->is_dirty && bs->drv->is_dirty(bs)) printf("cleanly shut down: no\n");
    g_autoptr(QsBlockSnapshotList) snaps = bs->drv->snapshot_list ? bs->drv->snapshot_list(bs) : NULL;
    if (snaps && snaps->len) {
        printf("Snapshot list:\n");
        print_snapshot_table(snaps);
    }
    if (json_object_has_member(o, "format-specific")) {
        JsonObject *fs = json_object_get_object_member(o, "format-specific");
        printf("Format specific information:\n");
        human_object(json_object_get_object_member(fs, "data"), 1);
    }
}

static bool parse_output(const char *arg, bool *json)
{
    if (!strcmp(arg, "json")) *json = true;
    else if (!strcmp(arg, "human")) *json = false;
    else return false;
    return true;
}

int img_info(int argc, char **argv)
{
    const char *fmt = NULL;
    bool json = false, chain = false;
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "format", 1, 0, 'f' }, { "output", 1, 0, 'o' },
        { "backing-chain", 0, 0, 'c' }, { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'o':
            if (!parse_output(optarg, &json)) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 'c': chain = true; break;
        case 'U': break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad_usage("Expecting one image file name");
    QsBlock *bs = img_open(argv[optind], fmt, chain ? 0 : QS_BLOCK_NO_BACKING, false);
    if (!bs) return 1;
    JsonNode *arr = NULL;
    JsonArray *a = NULL;
    if (chain && json) {
        arr = json_node_new(JSON_NODE_ARRAY);
        a = json_array_new();
        json_node_take_array(arr, a);
    }
    for (QsBlock *b = bs; b; b = chain ? b->backing : NULL) {
        JsonNode *n = image_info(b);
        if (json) {
            if (a) json_array_add_element(a, n);
            else {
                img_json_print(n, stdout);
                json_node_unref(n);
            }
        } else {
            if (b != bs) printf("\n");
            print_info_human(b, n);
            json_node_unref(n);
        }
    }
    if (arr) {
        img_json_print(arr, stdout);
        json_node_unref(arr);
    }
    qs_block_close(bs);
    return 0;
}

/* ---- check ---- */

static void check_json(QsBlock *bs, QsBlockCheckResult *r)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
#define INT(k, v) do { json_builder_set_member_name(b, k); json_builder_add_int_value(b, (gint64)(v)); } while (0)
    if (r->image_end_offset) INT("image-end-offset", r->image_end_offset);
    if (r->has_stats && r->compressed_clusters) INT("compressed-clusters", r->compressed_clusters);
    if (r->has_stats && r->total_clusters) INT("total-clusters", r->total_clusters);
    if (r->corruptions) INT("corruptions", r->corruptions);
    if (r->corruptions_fixed) INT("corruptions-fixed", r->corruptions_fixed);
    INT("check-errors", r->check_errors);
    if (r->leaks) INT("leaks", r->leaks);
    if (r->leaks_fixed) INT("leaks-fixed", r->leaks_fixed);
    if (r->has_stats && r->allocated_clusters) INT("allocated-clusters", r->allocated_clusters);
    json_builder_set_member_name(b, "filename");
    json_builder_add_string_value(b, bs->filename);
    json_builder_set_member_name(b, "format");
    json_builder_add_string_value(b, bs->drv->name);
    if (r->has_stats && r->fragmented_clusters) INT("fragmented-clusters", r->fragmented_clusters);
#undef INT
    json_builder_end_object(b);
    JsonNode *n = json_builder_get_root(b);
    img_json_print(n, stdout);
    json_node_unref(n);
    g_object_unref(b);
}

static void check_human(QsBlockCheckResult *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%d errors were found on the image.\nData may be corrupted, or further "
                   "writes to the image may corrupt it.\n", r->corruptions);
        if (r->leaks)
            printf("\n%d leaked clusters were found on the image.\nThis means waste of disk "
                   "space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%d internal errors have occurred during the check.\n", r->check_errors);
    }
    if (r->has_stats && r->total_clusters && r->allocated_clusters) {
        printf("%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " = %0.2f%% allocated, %0.2f%% "
               "fragmented, %0.2f%% compressed clusters\n", r->allocated_clusters,
               r->total_clusters, r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    }
    if (r->image_end_offset > 0) printf("Image end offset: %" G_GINT64_FORMAT "\n", r->image_end_offset);
}

int img_check(int argc, char **argv)
{
    const char *fmt = NULL;
    bool json = false, quiet = false;
    int fix = 0;
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "format", 1, 0, 'f' }, { "repair", 1, 0, 'r' },
        { "output", 1, 0, 'o' }, { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'r':
            if (!strcmp(optarg, "leaks")) fix = QS_CHECK_FIX_LEAKS;
            else if (!strcmp(optarg, "all")) fix = QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS;
            else return bad_usage("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
            break;
        case 'o':
            if (!parse_output(optarg, &json)) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 'T': case 'U': break;
        case 'q': quiet = true; break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad_usage("Expecting one image file name");
    const char *fn = argv[optind];
    int flags = QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK | (fix ? QS_BLOCK_RDWR : 0);
    QsBlock *bs = img_open(fn, fmt, flags, quiet);
    if (!bs) return 1;
    QsBlockCheckResult r;
    GError *err = NULL;
    if (!qs_block_check(bs, &r, fix, &err)) {
        bool unsupported = err->code == ENOTSUP;
        img_error("%s", err->message);
        g_error_free(err);
        qs_block_close(bs);
        return unsupported ? 63 : 1;
    }
    if (fix && (r.leaks_fixed || r.corruptions_fixed)) {
        QsBlockCheckResult again;
        if (!json && !quiet) {
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %d leaked clusters\n    %d corruptions\n\n"
                   "Double checking the fixed image now...\n",
                   r.leaks_fixed, r.corruptions_fixed);
        }
        if (qs_block_check(bs, &again, 0, NULL)) {
            again.leaks_fixed = r.leaks_fixed;
            again.corruptions_fixed = r.corruptions_fixed;
            r = again;
        }
    }
    if (json) check_json(bs, &r);
    else if (!quiet) check_human(&r);
    qs_block_close(bs);
    if (r.check_errors) return 1;
    if (r.corruptions) return 2;
    if (r.leaks) return 3;
    return 0;
}

/* ---- map ---- */

typedef struct MapEntry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    const char *file;
} MapEntry;

static void map_print(MapEntry *e, bool json, bool first)
{
    if (json) {
        printf("%s{ \"start\": %" G_GUINT64_FORMAT ", \"length\": %" G_GUINT64_FORMAT ", "
               "\"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
               first ? "[" : ",\n", e->start, e->length, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset) printf(", \"offset\": %" G_GUINT64_FORMAT, e->offset);
        printf("}");
    } else if (e->data && !e->zero) {
        printf("%#-16" G_GINT64_MODIFIER "x%#-16" G_GINT64_MODIFIER "x%#-16" G_GINT64_MODIFIER
               "x%s\n", e->start, e->length, e->has_offset ? e->offset : 0, e->file);
    }
}

int img_map(int argc, char **argv)
{
    const char *fmt = NULL;
    bool json = false;
    uint64_t start = 0, maxlen = UINT64_MAX;
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "format", 1, 0, 'f' }, { "output", 1, 0, 'o' },
        { "start-offset", 1, 0, 's' }, { "max-length", 1, 0, 'l' },
        { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'o':
            if (!parse_output(optarg, &json)) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 's':
            if (!img_parse_size(optarg, &start)) { img_error("Invalid start offset specified! You may use k, M, G, T, P or E suffixes for "); return 1; }
            break;
        case 'l':
            if (!img_parse_size(optarg, &maxlen)) { img_error("Invalid length specified! You may use k, M, G, T, P or E suffixes for "); return 1; }
            break;
        case 'U': break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad_usage("Expecting one image file name");
    QsBlock *bs = img_open(argv[optind], fmt, 0, false);
    if (!bs) return 1;
    uint64_t end = maxlen == UINT64_MAX || start + maxlen > bs->size ? bs->size : start + maxlen;
    if (!json) printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    MapEntry cur = { 0 };
    bool have = false, first = true;
    int ret = 0;
    for (uint64_t off = start; off < end;) {
        uint64_t n, map = 0;
        QsBlock *file = NULL;
        int depth = 0;
        int r = qs_block_status_above(bs, NULL, off, end - off, &n, &map, &file, &depth);
        if (r < 0 || !n) {
            img_error("Could not read file metadata: %s", g_strerror(r < 0 ? -r : EIO));
            ret = 1;
            break;
        }
        MapEntry e = { .start = off, .length = n, .depth = depth,
                       .present = !!(r & QS_BS_ALLOCATED), .zero = !!(r & QS_BS_ZERO),
                       .data = !!(r & QS_BS_DATA), .has_offset = !!(r & QS_BS_OFFSET_VALID),
                       .offset = map, .file = file ? file->filename : "" };
        if (have && cur.depth == e.depth && cur.present == e.present && cur.zero == e.zero &&
            cur.data == e.data && cur.has_offset == e.has_offset &&
            (!cur.has_offset || cur.offset + cur.length == e.offset) &&
            cur.start + cur.length == e.start) {
            cur.length += e.length;
        } else {
            if (have) { map_print(&cur, json, first); first = false; }
            cur = e;
            have = true;
        }
        off += n;
    }
    if (have) { map_print(&cur, json, first); first = false; }
    if (json) printf(first ? "[]\n" : "]\n");
    qs_block_close(bs);
    return ret;
}

/* ---- compare ---- */

static int64_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i += 512) {
        size_t l = MIN((size_t)512, n - i);
        if (memcmp(a + i, b + i, l)) return (int64_t)i;
    }
    return -1;
}

static int64_t first_nonzero(const uint8_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i]) return (int64_t)(i & ~(size_t)511);
    return -1;
}

int img_compare(int argc, char **argv)
{
    const char *fmt1 = NULL, *fmt2 = NULL;
    bool strict = false, quiet = false, progress = false;
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt1 = optarg; break;
        case 'F': fmt2 = optarg; break;
        case 's': strict = true; break;
        case 'q': quiet = true; break;
        case 'p': progress = true; break;
        case 'T': case 'U': break;
        case ':': bad_usage("option '%s' requires an argument", argv[optind - 1]); return 2;
        default: bad_usage("unrecognized option '%s'", argv[optind - 1]); return 2;
        }
    }
    if (optind != argc - 2) { bad_usage("Expecting two image file names"); return 2; }
    const char *f1 = argv[optind], *f2 = argv[optind + 1];
    QsBlock *a = img_open(f1, fmt1, 0, quiet);
    if (!a) return 2;
    QsBlock *b = img_open(f2, fmt2, 0, quiet);
    if (!b) { qs_block_close(a); return 2; }
    int ret = 0;
    uint64_t common = MIN(a->size, b->size);
    size_t chunk = 1 << 20;
    g_autofree uint8_t *ba = g_malloc(chunk), *bb = g_malloc(chunk);
    if (strict && a->size != b->size) {
        if (!quiet) printf("Strict mode: Image size mismatch!\n");
        ret = 1;
        goto out;
    }
    for (uint64_t off = 0; off < common;) {
        uint64_t na, nb;
        int ra = qs_block_status_above(a, NULL, off, MIN(common - off, (uint64_t)chunk), &na, NULL, NULL, NULL);
        int rb = qs_block_status_above(b, NULL, off, MIN(common - off, (uint64_t)chunk), &nb, NULL, NULL, NULL);
        if (ra < 0 || rb < 0) {
            img_error("error while reading block status at offset %" G_GUINT64_FORMAT ": %s",
                      off, g_strerror(-(ra < 0 ? ra : rb)));
            ret = 4;
            goto out;
        }
        uint64_t n = MIN(na, nb);
        if (strict && ((ra & QS_BS_ALLOCATED) != (rb & QS_BS_ALLOCATED))) {
            if (!quiet) printf("Strict mode: Offset %" G_GUINT64_FORMAT " block status mismatch!\n", off);
            ret = 1;
            goto out;
        }
        if (!((ra & QS_BS_ZERO) && (rb & QS_BS_ZERO))) {
            int r1 = qs_block_pread(a, off, n, ba), r2 = qs_block_pread(b, off, n, bb);
            if (r1 < 0 || r2 < 0) {
                img_error("error while reading offset %" G_GUINT64_FORMAT ": %s", off,
                          g_strerror(-(r1 < 0 ? r1 : r2)));
                ret = 4;
                goto out;
            }
            int64_t d = first_diff(ba, bb, n);
            if (d >= 0) {
                if (!quiet) printf("Content mismatch at offset %" G_GUINT64_FORMAT "!\n", off + (uint64_t)d);
                ret = 1;
                goto out;
            }
        }
        off += n;
        img_progress(progress && !quiet, off * 100.0 / MAX(common, 1));
    }
    if (a->size != b->size) {
        QsBlock *big = a->size > b->size ? a : b;
        if (!quiet) printf("Warning: Image size mismatch!\n");
        for (uint64_t off = common; off < big->size;) {
            uint64_t n;
            int r = qs_block_status_above(big, NULL, off, MIN(big->size - off, (uint64_t)chunk), &n, NULL, NULL, NULL);
            if (r < 0) { ret = 4; goto out; }
            if (!(r & QS_BS_ZERO)) {
                if (qs_block_pread(big, off, n, ba) < 0) { ret = 4; goto out; }
                int64_t d = first_nonzero(ba, n);
                if (d >= 0) {
                    if (!quiet) printf("Content mismatch at offset %" G_GUINT64_FORMAT "!\n", off + (uint64_t)d);
                    ret = 1;
                    goto out;
                }
            }
            off += n;
        }
    }
    if (!quiet) printf("Images are identical.\n");
out:
    qs_block_close(a);
    qs_block_close(b);
    return ret;
}

/* ---- measure ---- */

int img_measure(int argc, char **argv)
{
    const char *fmt = NULL, *ofmt = "raw";
    bool json = false, has_size = false;
    uint64_t size = 0;
    g_autoptr(GString) opts = g_string_new(NULL);
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "output", 1, 0, 'x' }, { "size", 1, 0, 's' },
        { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': ofmt = optarg; break;
        case 'o':
            if (opts->len) g_string_append_c(opts, ',');
            g_string_append(opts, optarg);
            break;
        case 'x':
            if (!parse_output(optarg, &json)) {
                img_error("--output must be used with human or json as argument.");
                return 1;
            }
            break;
        case 's':
            if (!img_parse_size(optarg, &size)) {
                img_error("Invalid size specified. You may use k, M, G, T, P or E suffixes for");
                img_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
                return 1;
            }
            has_size = true;
            break;
        case 'l': img_error("-l is not supported"); return 1;
        case 'U': break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (img_opts_help(ofmt, opts->str)) return 0;
    const char *fn = optind < argc ? argv[optind] : NULL;
    if (fn && has_size) { img_error("--size N cannot be used together with a filename."); return 1; }
    if (!fn && !has_size) { img_error("Either --size N or one filename must be specified."); return 1; }
    if (optind + (fn ? 1 : 0) != argc) return bad_usage("Expecting one image file name");
    const QsBlockDriver *drv = qs_block_driver_find(ofmt);
    if (!drv) { img_error("Unknown file format '%s'", ofmt); return 1; }
    if (!drv->measure) { img_error("Block driver '%s' does not support size measurement", ofmt); return 1; }
    QsBlock *in = NULL;
    if (fn && !(in = img_open(fn, fmt, 0, false))) return 1;
    GError *err = NULL;
    QsOpts *o = qs_block_create_opts_parse(drv, opts->str, &err);
    uint64_t req = 0, full = 0;
    bool ok = o && drv->measure(o, in, size, &req, &full, &err);
    qs_opts_free(o);
    if (!ok) {
        img_error("%s", err->message);
        g_error_free(err);
        qs_block_close(in);
        return 1;
    }
    /* QEMU reports bitmaps when both sides can carry them: a v3 qcow2 into qcow2 */
    bool bitmaps = false;
    if (in && !strcmp(ofmt, "qcow2") && !strcmp(in->drv->name, "qcow2")) {
        JsonNode *n = image_info(in);
        JsonObject *fs = json_object_get_object_member(json_node_get_object(n), "format-specific");
        const char *compat = json_object_get_string_member(json_object_get_object_member(fs, "data"), "compat");
        bitmaps = compat && !strcmp(compat, "1.1");
        json_node_unref(n);
    }
    if (json) {
        printf("{\n");
        if (bitmaps) printf("    \"bitmaps\": 0,\n");
        printf("    \"required\": %" G_GUINT64_FORMAT ",\n    \"fully-allocated\": %"
               G_GUINT64_FORMAT "\n}\n", req, full);
    } else {
        printf("required size: %" G_GUINT64_FORMAT "\nfully allocated size: %" G_GUINT64_FORMAT "\n",
               req, full);
        if (bitmaps) printf("bitmaps size: 0\n");
    }
    qs_block_close(in);
    return 0;
}

/* ---- resize ---- */

int img_resize(int argc, char **argv)
{
    const char *fmt = NULL;
    bool quiet = false, shrink = false;
    QsPrealloc pre = QS_PREALLOC_OFF;
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "preallocation", 1, 0, 'P' }, { "shrink", 0, 0, 'S' }, { 0 } };
    /* a negative size ("-1G") must not be taken for an option */
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && g_ascii_isdigit(argv[i][1]) && i == argc - 1) {
            argv[i][0] = '~';
        }
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:hq", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'S': shrink = true; break;
        case 'P':
            if (!qs_prealloc_parse(optarg, &pre)) { img_error("Invalid preallocation mode '%s'", optarg); return 1; }
            break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 2) return bad_usage("Expecting image file name and size");
    const char *fn = argv[optind], *sz = argv[optind + 1];
    int rel = 0;
    if (*sz == '+') { rel = 1; sz++; }
    else if (*sz == '~') { rel = -1; sz++; }
    uint64_t v;
    if (!img_parse_size(sz, &v)) { img_error("Invalid image size specified!"); return 1; }
    QsBlock *bs = img_open(fn, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, quiet);
    if (!bs) return 1;
    uint64_t ns = rel > 0 ? bs->size + v : rel < 0 ? (v > bs->size ? 0 : bs->size - v) : v;
    if (rel < 0 && v > bs->size) {
        img_error("New image size must be positive");
        qs_block_close(bs);
        return 1;
    }
    if (ns < bs->size && !shrink) {
        img_error("Use the --shrink option to perform a shrink operation.");
        qs_block_close(bs);
        return 1;
    }
    if (ns < bs->size && pre != QS_PREALLOC_OFF) {
        img_error("Preallocation can only be used for growing images");
        qs_block_close(bs);
        return 1;
    }
    GError *err = NULL;
    bool ok = qs_block_truncate(bs, ns, shrink, pre, &err);
    if (!ok) {
        img_error("%s", err->message);
        g_error_free(err);
    } else if (!quiet) {
        printf("Image resized.\n");
    }
    qs_block_close(bs);
    return ok ? 0 : 1;
}

/* ---- snapshot ---- */

int img_snapshot(int argc, char **argv)
{
    const char *fmt = NULL, *name = NULL;
    char action = 0;
    bool quiet = false;
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":la:c:d:f:hqU", lo, NULL)) != -1) {
        switch (c) {
        case 'l': case 'a': case 'c': case 'd':
            if (action) return bad_usage("Cannot mix '-l', '-a', '-c', '-d'");
            action = (char)c;
            name = optarg;
            break;
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'U': break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad_usage("Expecting one image file name");
    if (!action) action = 'l';
    QsBlock *bs = img_open(argv[optind], fmt, (action == 'l' ? 0 : QS_BLOCK_RDWR) | QS_BLOCK_NO_BACKING, quiet);
    if (!bs) return 1;
    GError *err = NULL;
    bool ok = true;
    if (!bs->drv->snapshot_list) {
        img_error("Could not %s snapshot '%s': Operation not supported", action == 'l' ? "list" : "apply", name ? name : "");
        qs_block_close(bs);
        return 1;
    }
    switch (action) {
    case 'l': {
        g_autoptr(QsBlockSnapshotList) snaps = bs->drv->snapshot_list(bs);
        if (snaps->len) {
            printf("Snapshot list:\n");
            print_snapshot_table(snaps);
        }
        break;
    }
    case 'c': ok = bs->drv->snapshot_create(bs, name, &err); break;
    case 'a': ok = bs->drv->snapshot_apply(bs, name, &err); break;
    case 'd': ok = bs->drv->snapshot_delete(bs, name, &err); break;
    }
    if (!ok) {
        img_error("%s", err->message);
        g_error_free(err);
    }
    qs_block_close(bs);
    return ok ? 0 : 1;
}

/* ---- amend ---- */

int img_amend(int argc, char **argv)
{
    const char *fmt = NULL;
    bool quiet = false;
    g_autoptr(GString) opts = g_string_new(NULL);
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "force", 0, 0, 'F' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", lo, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (opts->len) g_string_append_c(opts, ',');
            g_string_append(opts, optarg);
            break;
        case 'f': fmt = optarg; break;
        case 'q': quiet = true; break;
        case 't': case 'p': case 'F': break;
        case ':': return bad_usage("option '%s' requires an argument", argv[optind - 1]);
        default: return bad_usage("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (!opts->len) return bad_usage("Must specify options (-o)");
    if (img_opts_help(fmt ? fmt : "qcow2", opts->str)) return 0;
    if (optind != argc - 1) return bad_usage("Expecting one image file name");
    QsBlock *bs = img_open(argv[optind], fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, quiet);
    if (!bs) return 1;
    int ret = 0;
    GError *err = NULL;
    if (!bs->drv->amend) {
        img_error("Format driver '%s' does not support option amendment", bs->drv->name);
        ret = 1;
    } else {
        QsOpts *o = qs_block_create_opts_parse(bs->drv, opts->str, &err);
        if (!o || !bs->drv->amend(bs, o, &err)) {
            img_error("%s", err->message);
            g_error_free(err);
            ret = 1;
        }
        qs_opts_free(o);
    }
    qs_block_close(bs);
    return ret;
}

/* ---- main ---- */

static const struct {
    const char *name;
    int (*fn)(int, char **);
} cmds[] = {
    { "amend", img_amend }, { "bench", img_bench }, { "check", img_check },
    { "commit", img_commit }, { "compare", img_compare }, { "convert", img_convert },
    { "create", img_create }, { "dd", img_dd }, { "info", img_info }, { "map", img_map },
    { "measure", img_measure }, { "rebase", img_rebase }, { "resize", img_resize },
    { "snapshot", img_snapshot },
};

static void help(void)
{
    printf("qemu-img version %s (qemu-slim), compatible with QEMU 7.2's qemu-img\n"
           "usage: qemu-img [standard options] command [command options]\n"
           "QEMU disk image utility\n\n"
           "    '-h', '--help'       display this help and exit\n"
           "    '-V', '--version'    output version information and exit\n"
           "    '--plugin NAME[,k=v]' load a qemu-slim block module (e.g. a filter driver)\n\n"
           "Command syntax:\n", QS_VERSION);
    for (unsigned i = 0; i < G_N_ELEMENTS(cmds); i++) printf("  %s\n", cmds[i].name);
    printf("\nSupported formats:");
    g_autoptr(GPtrArray) d = qs_block_driver_list();
    for (guint i = 0; i < d->len; i++) printf(" %s", ((const QsBlockDriver *)d->pdata[i])->name);
    printf("\n\nSee docs/qemu-img.md for every command and option.\n");
}

int main(int argc, char **argv)
{
    qs_block_init();
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(); return 0; }
        if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("qemu-img version %s (qemu-slim)\n", QS_VERSION);
            return 0;
        }
        if (!strcmp(a, "--plugin") || g_str_has_prefix(a, "--plugin=")) {
            const char *spec = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!spec) return bad_usage("option '--plugin' requires an argument");
            GError *err = NULL;
            if (!qs_module_load(spec, &err)) {
                img_error("%s", err->message);
                g_error_free(err);
                return 1;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "-T") || !strcmp(a, "--trace")) { i += 2; continue; }
        return bad_usage("unrecognized option '%s'", a);
    }
    if (i >= argc) return bad_usage("Not enough arguments");
    for (unsigned k = 0; k < G_N_ELEMENTS(cmds); k++) {
        if (!strcmp(argv[i], cmds[k].name)) {
            int r = cmds[k].fn(argc - i, argv + i);
            fflush(stdout);
            return r;
        }
    }
    return bad_usage("Command not found: %s", argv[i]);
}
