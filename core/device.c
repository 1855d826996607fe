/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device type registry and -device creation: typed properties, buses, ids. */
#include <string.h>
#include "qs/device.h"
#include "qs-internal.h"

static GHashTable *types;     /* name -> const QsDeviceType * */
static GHashTable *buses;     /* name -> const QsBusOps * */
static GPtrArray *devices;    /* QsDevice *, creation order */

static const QsPropDesc id_prop = { "id", QS_PROP_STRING, NULL, "device id" };

static void ensure(void)
{
    if (!types) {
        types = g_hash_table_new(g_str_hash, g_str_equal);
        buses = g_hash_table_new(g_str_hash, g_str_equal);
        devices = g_ptr_array_new();
    }
}

static void type_unregister(void *data)
{
    const QsDeviceType *t = data;
    g_hash_table_remove(types, t->name);
}

bool qs_device_type_register(const QsDeviceType *type, GError **errp)
{
    ensure();
    if (!type->name || !*type->name) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "device type without a name");
        return false;
    }
    if (type->instance_size < sizeof(QsDevice)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "device type '%s': instance_size %zu is smaller than QsDevice",
                    type->name, type->instance_size);
        return false;
    }
    if (g_hash_table_contains(types, type->name)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "device type '%s' is already registered", type->name);
        return false;
    }
    if (!qs_module_claim("device", type->name, errp)) return false;
    g_hash_table_insert(types, (gpointer)type->name, (gpointer)type);
    qs_module_track(type_unregister, (gpointer)type);
    return true;
}

const QsDeviceType *qs_device_type_find(const char *name)
{
    ensure();
    return g_hash_table_lookup(types, name);
}

static gint cmp_type(gconstpointer a, gconstpointer b)
{
    const QsDeviceType *x = *(const QsDeviceType *const *)a;
    const QsDeviceType *y = *(const QsDeviceType *const *)b;
    return strcmp(x->name, y->name);
}

GPtrArray *qs_device_type_list(void)
{
    ensure();
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, types);
    while (g_hash_table_iter_next(&it, NULL, &v)) g_ptr_array_add(out, v);
    g_ptr_array_sort(out, cmp_type);
    return out;
}

void qs_bus_register(const QsBusOps *ops)
{
    ensure();
    g_hash_table_insert(buses, (gpointer)ops->name, (gpointer)ops);
}

/* A type's properties plus the implicit "id". */
static QsPropDesc *props_with_id(const QsDeviceType *t)
{
    size_t n = 0;
    for (const QsPropDesc *p = t->props; p && p->name; p++) n++;
    QsPropDesc *all = g_new0(QsPropDesc, n + 2);
    if (n) memcpy(all, t->props, n * sizeof(*all));
    all[n] = id_prop;
    return all;
}

QsDevice *qs_device_find(const char *id)
{
    ensure();
    for (guint i = 0; i < devices->len; i++) {
        QsDevice *d = devices->pdata[i];
        if (d->id && !strcmp(d->id, id)) return d;
    }
    return NULL;
}

QsDevice *qs_device_create(const char *spec, GError **errp)
{
    ensure();
    g_autofree char *name = NULL;
    g_autofree char *rest = qs_opts_split_head(spec, &name);
    const QsDeviceType *t = g_hash_table_lookup(types, name);
    if (!t) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "'%s' is not a valid device model name (see -device help)", name);
        return NULL;
    }
    g_autofree QsPropDesc *decl = props_with_id(t);
    g_autofree char *owner = g_strdup_printf("device '%s'", t->name);
    QsOpts *opts = qs_opts_parse(rest, decl, owner, errp);
    if (!opts) return NULL;
    const char *id = qs_opts_get_str(opts, "id");
    if (id && qs_device_find(id)) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "duplicate device id '%s'", id);
        qs_opts_free(opts);
        return NULL;
    }
    QsDevice *dev = g_malloc0(t->instance_size);
    dev->type = t;
    dev->id = g_strdup(id);
    dev->props = opts;
    const QsBusOps *bus = t->bus ? g_hash_table_lookup(buses, t->bus) : NULL;
    if (t->bus && !bus) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "device '%s' needs a %s bus, which this machine does not have",
                    t->name, t->bus);
        goto fail;
    }
    bool ok = bus ? bus->plug(dev, errp) : (!t->realize || t->realize(dev, errp));
    if (!ok) goto fail;
    dev->realized = true;
    g_ptr_array_add(devices, dev);
    return dev;
fail:
    qs_opts_free(dev->props);
    g_free(dev->id);
    g_free(dev);
    return NULL;
}

void qs_device_destroy(QsDevice *dev)
{
    if (!dev) return;
    const QsBusOps *bus = dev->type->bus ? g_hash_table_lookup(buses, dev->type->bus) : NULL;
    if (dev->realized) {
        if (bus && bus->unplug) bus->unplug(dev);
        else if (dev->type->unrealize) dev->type->unrealize(dev);
    }
    g_ptr_array_remove(devices, dev);
    qs_opts_free(dev->props);
    g_free(dev->id);
    g_free(dev);
}

void qs_device_reset_all(void)
{
    ensure();
    for (guint i = 0; i < devices->len; i++) {
        QsDevice *d = devices->pdata[i];
        if (d->type->reset) d->type->reset(d);
    }
}
