/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The module loader: finds module files, checks their descriptors before any module
 * code runs, loads them with G_MODULE_BIND_LOCAL, and rolls back a failed init. */
#include <string.h>
#include "module-loader.h"
#include "qs-internal.h"

typedef struct Undo {
    void (*fn)(void *data);
    void *data;
} Undo;

struct QsModule {
    const QsModuleDesc *desc;
    char *path;
    GModule *gmod;
    GArray *undo;          /* Undo, run last-first */
    GPtrArray *provided;   /* "kind:name" */
    QsOpts *opts;
    void *opaque;
};

static GPtrArray *loaded;       /* QsModule *, load order */
static QsModule *current;       /* whose init is running */
static GPtrArray *loading;      /* names being loaded, to catch dependency cycles */

const char *qs_module_name(const QsModule *mod) { return mod->desc->name; }
void qs_module_set_opaque(QsModule *mod, void *opaque) { mod->opaque = opaque; }
void *qs_module_get_opaque(const QsModule *mod) { return mod->opaque; }
QsModule *qs_module_current(void) { return current; }

bool qs_module_claim(const char *kind, const char *name, GError **errp)
{
    if (!current) return true;
    g_autofree char *item = g_strdup_printf("%s:%s", kind, name);
    const char *const *p = current->desc->provides;
    for (; p && *p; p++) {
        if (!strcmp(*p, item)) {
            g_ptr_array_add(current->provided, g_strdup(item));
            return true;
        }
    }
    g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                "module '%s' registers %s '%s' without declaring \"%s\" in provides",
                current->desc->name, kind, name, item);
    return false;
}

void qs_module_track(void (*undo)(void *data), void *data)
{
    if (!current) return;
    Undo u = { undo, data };
    g_array_append_val(current->undo, u);
}

/* ---- search path ---- */

static char *build_tree_modules(void)
{
#ifdef QS_BUILD_DIR
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    if (exe && g_str_has_prefix(exe, QS_BUILD_DIR "/")) {
        return g_build_filename(QS_BUILD_DIR, "modules", NULL);
    }
#endif
    return NULL;
}

char **qs_module_search_path(void)
{
    GPtrArray *dirs = g_ptr_array_new();
    const char *env = g_getenv("QS_MODULE_DIR");
    if (env && *env) {
        g_auto(GStrv) parts = g_strsplit(env, ":", -1);
        for (int i = 0; parts[i]; i++) {
            if (*parts[i]) g_ptr_array_add(dirs, g_strdup(parts[i]));
        }
    }
    char *bt = build_tree_modules();
    if (bt) g_ptr_array_add(dirs, bt);
    g_ptr_array_add(dirs, g_strdup(QS_MODULE_INSTALL_DIR));
    g_ptr_array_add(dirs, NULL);
    return (char **)g_ptr_array_free(dirs, FALSE);
}

/* ---- descriptor validation ---- */

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64) return false;
    for (; *s; s++) {
        if (!g_ascii_isalnum(*s) && *s != '-' && *s != '_') return false;
    }
    return true;
}

bool qs_module_desc_check(const QsModuleDesc *d, const char *path, GError **errp)
{
    /* magic and the ABI numbers sit first in every ABI's layout, so they are safe to
     * read before we know the rest of the struct matches ours. */
    if (d->magic != QS_MODULE_MAGIC) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: descriptor has bad magic 0x%08x (expected 0x%08x)", path,
                    d->magic, QS_MODULE_MAGIC);
        return false;
    }
    if (d->abi_major != QS_ABI_MAJOR) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: built for module ABI %u.%u, this core has ABI %u.%u "
                    "(major version differs; rebuild the module)", path,
                    d->abi_major, d->abi_minor, QS_ABI_MAJOR, QS_ABI_MINOR);
        return false;
    }
    if (d->abi_minor > QS_ABI_MINOR) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: built for module ABI %u.%u, newer than this core's %u.%u "
                    "(upgrade qemu-slim)", path,
                    d->abi_major, d->abi_minor, QS_ABI_MAJOR, QS_ABI_MINOR);
        return false;
    }
    if (!valid_name(d->name)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: descriptor name '%s' is not a valid module name", path,
                    d->name ? d->name : "(null)");
        return false;
    }
    const char *missing = !d->version ? "version" : !d->license ? "license"
                        : !d->description ? "description" : !d->init ? "init" : NULL;
    if (missing) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: descriptor of module '%s' has no %s", path, d->name, missing);
        return false;
    }
    return true;
}

/* Open a file and validate its descriptor; returns the GModule or NULL. */
static GModule *open_checked(const char *path, const QsModuleDesc **out, GError **errp)
{
    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "%s: no such module file", path);
        return NULL;
    }
    GModule *gm = g_module_open(path, G_MODULE_BIND_LOCAL | G_MODULE_BIND_LAZY);
    if (!gm) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: not a loadable module (%s)", path, g_module_error());
        return NULL;
    }
    gpointer sym = NULL;
    if (!g_module_symbol(gm, QS_MODULE_DESC_SYMBOL, &sym) || !sym) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: not a qemu-slim module (no '%s' symbol; define it with "
                    "QS_MODULE_DEFINE)", path, QS_MODULE_DESC_SYMBOL);
        g_module_close(gm);
        return NULL;
    }
    if (!qs_module_desc_check(sym, path, errp)) {
        g_module_close(gm);
        return NULL;
    }
    *out = sym;
    return gm;
}

/* ---- scanning ---- */

static void scan_dir(const char *dir, int depth, GPtrArray *files)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (!d) return;
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *n;
    while ((n = g_dir_read_name(d))) g_ptr_array_add(names, g_strdup(n));
    g_dir_close(d);
    g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
    for (guint i = 0; i < names->len; i++) {
        g_autofree char *p = g_build_filename(dir, names->pdata[i], NULL);
        if (g_str_has_suffix(names->pdata[i], ".so") &&
            g_file_test(p, G_FILE_TEST_IS_REGULAR)) {
            g_ptr_array_add(files, g_steal_pointer(&p));
        } else if (depth > 0 && g_file_test(p, G_FILE_TEST_IS_DIR)) {
            scan_dir(p, depth - 1, files);
        }
    }
    g_ptr_array_free(names, TRUE);
}

void qs_module_info_free(QsModuleInfo *info)
{
    if (!info) return;
    if (info->gmod) g_module_close(info->gmod);
    g_free(info->path);
    g_free(info);
}

static gint cmp_info(gconstpointer a, gconstpointer b)
{
    const QsModuleInfo *x = *(QsModuleInfo *const *)a, *y = *(QsModuleInfo *const *)b;
    return strcmp(x->desc->name, y->desc->name);
}

GPtrArray *qs_module_scan(void)
{
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)qs_module_info_free);
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) dirs = qs_module_search_path();
    for (int i = 0; dirs[i]; i++) scan_dir(dirs[i], 1, files);
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < files->len; i++) {
        const QsModuleDesc *d;
        GModule *gm = open_checked(files->pdata[i], &d, NULL);
        if (!gm) continue;
        if (g_hash_table_contains(seen, d->name)) { g_module_close(gm); continue; }
        g_hash_table_add(seen, (gpointer)d->name);
        QsModuleInfo *info = g_new0(QsModuleInfo, 1);
        info->path = g_strdup(files->pdata[i]);
        info->desc = d;
        info->gmod = gm;
        info->loaded = qs_module_is_loaded(d->name);
        g_ptr_array_add(out, info);
    }
    g_hash_table_destroy(seen);
    g_ptr_array_free(files, TRUE);
    g_ptr_array_sort(out, cmp_info);
    return out;
}

/* Find NAME.so or NAME/NAME.so along the search path. */
static char *find_module_file(const char *name)
{
    g_auto(GStrv) dirs = qs_module_search_path();
    g_autofree char *file = g_strdup_printf("%s.so", name);
    for (int i = 0; dirs[i]; i++) {
        char *p = g_build_filename(dirs[i], file, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) return p;
        g_free(p);
        p = g_build_filename(dirs[i], name, file, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) return p;
        g_free(p);
    }
    return NULL;
}

static char *available_names(void)
{
    GPtrArray *all = qs_module_scan();
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < all->len; i++) {
        QsModuleInfo *info = all->pdata[i];
        g_string_append_printf(s, "%s%s", s->len ? ", " : "", info->desc->name);
    }
    g_ptr_array_free(all, TRUE);
    if (!s->len) g_string_append(s, "none");
    return g_string_free(s, FALSE);
}

/* ---- loading ---- */

static QsModule *find_loaded(const char *name)
{
    for (guint i = 0; loaded && i < loaded->len; i++) {
        QsModule *m = loaded->pdata[i];
        if (!strcmp(m->desc->name, name)) return m;
    }
    return NULL;
}

bool qs_module_is_loaded(const char *name) { return find_loaded(name) != NULL; }

static void run_undo(QsModule *m)
{
    for (guint i = m->undo->len; i > 0; i--) {
        Undo *u = &g_array_index(m->undo, Undo, i - 1);
        u->fn(u->data);
    }
    g_array_set_size(m->undo, 0);
}

static void module_free(QsModule *m)
{
    g_array_free(m->undo, TRUE);
    g_ptr_array_free(m->provided, TRUE);
    qs_opts_free(m->opts);
    if (m->gmod) g_module_close(m->gmod);
    g_free(m->path);
    g_free(m);
}

static bool load_path(const char *path, const char *want_name, const char *optstr,
                      GError **errp);

static bool load_dependencies(const QsModuleDesc *d, GError **errp)
{
    for (const char *const *dep = d->depends; dep && *dep; dep++) {
        if (find_loaded(*dep)) continue;
        for (guint i = 0; i < loading->len; i++) {
            if (!strcmp(loading->pdata[i], *dep)) {
                g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                            "module '%s' depends on '%s', which depends back on it",
                            d->name, *dep);
                return false;
            }
        }
        g_autofree char *p = find_module_file(*dep);
        if (!p) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "module '%s' depends on '%s', which was not found",
                        d->name, *dep);
            return false;
        }
        GError *err = NULL;
        if (!load_path(p, *dep, "", &err)) {
            g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                        "module '%s' depends on '%s', which failed to load: %s",
                        d->name, *dep, err->message);
            g_error_free(err);
            return false;
        }
    }
    return true;
}

static bool load_path(const char *path, const char *want_name, const char *optstr,
                      GError **errp)
{
    const QsModuleDesc *d;
    GModule *gm = open_checked(path, &d, errp);
    if (!gm) return false;
    if (want_name && strcmp(d->name, want_name)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "%s: file is named for module '%s' but declares name '%s'",
                    path, want_name, d->name);
        g_module_close(gm);
        return false;
    }
    QsModule *dup = find_loaded(d->name);
    if (dup) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "module '%s' from %s is already loaded from %s",
                    d->name, path, dup->path);
        g_module_close(gm);
        return false;
    }
    g_autofree char *owner = g_strdup_printf("module '%s'", d->name);
    QsOpts *opts = qs_opts_parse(optstr, d->options, owner, errp);
    if (!opts) { g_module_close(gm); return false; }

    g_ptr_array_add(loading, (gpointer)d->name);
    bool deps_ok = load_dependencies(d, errp);
    g_ptr_array_remove_index(loading, loading->len - 1);
    if (!deps_ok) { qs_opts_free(opts); g_module_close(gm); return false; }

    QsModule *m = g_new0(QsModule, 1);
    m->desc = d;
    m->path = g_strdup(path);
    m->gmod = gm;
    m->undo = g_array_new(FALSE, FALSE, sizeof(Undo));
    m->provided = g_ptr_array_new_with_free_func(g_free);
    m->opts = opts;

    QsModule *outer = current;   /* a dependency loads inside its dependent's load */
    current = m;
    GError *err = NULL;
    bool ok = d->init(m, opts, &err);
    current = outer;
    if (!ok) {
        run_undo(m);
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "module '%s' failed to initialise: %s",
                    d->name, err ? err->message : "init returned false without a reason");
        g_clear_error(&err);
        module_free(m);
        return false;
    }
    g_ptr_array_add(loaded, m);
    return true;
}

static void ensure_state(void)
{
    if (!loaded) loaded = g_ptr_array_new();
    if (!loading) loading = g_ptr_array_new();
}

bool qs_module_load(const char *spec, GError **errp)
{
    ensure_state();
    g_autofree char *head = NULL;
    g_autofree char *rest = qs_opts_split_head(spec, &head);
    if (!*head) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "-plugin needs a module name");
        return false;
    }
    if (strchr(head, '/')) return load_path(head, NULL, rest, errp);
    if (!valid_name(head)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "'%s' is not a valid module name", head);
        return false;
    }
    g_autofree char *p = find_module_file(head);
    if (!p) {
        g_autofree char *avail = available_names();
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "module '%s' not found (available: %s; see -plugin help)", head, avail);
        return false;
    }
    return load_path(p, head, rest, errp);
}

void qs_module_unload_all(void)
{
    while (loaded && loaded->len) {
        QsModule *m = g_ptr_array_steal_index(loaded, loaded->len - 1);
        if (m->desc->exit) m->desc->exit(m);
        run_undo(m);
        module_free(m);
    }
}

GPtrArray *qs_module_loaded_list(void)
{
    ensure_state();
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < loaded->len; i++) {
        QsModule *m = loaded->pdata[i];
        QsLoadedModule *l = g_new0(QsLoadedModule, 1);
        l->desc = m->desc;
        l->path = m->path;
        l->provided = m->provided;
        g_ptr_array_add(out, l);
    }
    return out;
}

/* ---- help ---- */

static void strv_line(GString *out, const char *label, const char *const *v)
{
    if (!v || !*v) return;
    g_string_append_printf(out, "    %s:", label);
    for (; *v; v++) g_string_append_printf(out, " %s", *v);
    g_string_append_c(out, '\n');
}

void qs_module_help(GString *out)
{
    ensure_state();
    GPtrArray *all = qs_module_scan();
    g_auto(GStrv) dirs = qs_module_search_path();
    g_autofree char *path = g_strjoinv(":", dirs);
    g_string_append_printf(out, "Modules found on %s:\n", path);
    if (!all->len) g_string_append(out, "  (none)\n");
    for (guint i = 0; i < all->len; i++) {
        QsModuleInfo *info = all->pdata[i];
        const QsModuleDesc *d = info->desc;
        g_string_append_printf(out, "  %s %s (ABI %u.%u, %s)%s\n    %s\n    file: %s\n",
                               d->name, d->version, d->abi_major, d->abi_minor,
                               d->license, info->loaded ? " [loaded]" : "",
                               d->description, info->path);
        strv_line(out, "provides", d->provides);
        strv_line(out, "depends", d->depends);
    }
    g_ptr_array_free(all, TRUE);
}

bool qs_module_help_options(const char *name, GString *out, GError **errp)
{
    g_autofree char *p = strchr(name, '/') ? g_strdup(name) : find_module_file(name);
    if (!p) {
        g_autofree char *avail = available_names();
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "module '%s' not found (available: %s; see -plugin help)", name, avail);
        return false;
    }
    const QsModuleDesc *d;
    GModule *gm = open_checked(p, &d, errp);
    if (!gm) return false;
    g_string_append_printf(out, "%s options:\n", d->name);
    qs_props_print_help(d->options, out);
    g_module_close(gm);
    return true;
}
