/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Interrupt lines and the per-device registry of named input/output lines, with the
 * interception qtest uses to watch them (irq_intercept_in/out). */
#include <string.h>
#include "qs/irq.h"
#include "qs-internal.h"

struct QsIrq {
    QsIrqHandler handler;
    void *opaque;
    int n;
    /* interception (inputs): seen first, then the handler runs as usual */
    QsIrqHandler icpt;
    void *icpt_opaque;
    int icpt_n;
    /* interceptor of an output: forwards to the original target */
    QsIrq *forward;
    QsIrq **slot;
};

typedef struct GpioList {
    char *name;
    bool out;
    QsIrq **lines;     /* inputs: the device's irqs; outputs: the device's slots */
    int n;
} GpioList;

typedef struct GpioDev {
    char *path;
    GPtrArray *lists;  /* GpioList * */
} GpioDev;

static GHashTable *devs;        /* path -> GpioDev */
static GPtrArray *intercepted;  /* QsIrq * inputs with icpt set, and output interceptors */

QsIrq *qs_irq_new(QsIrqHandler handler, void *opaque, int n)
{
    QsIrq *irq = g_new0(QsIrq, 1);
    irq->handler = handler;
    irq->opaque = opaque;
    irq->n = n;
    return irq;
}

void qs_irq_free(QsIrq *irq)
{
    if (irq && intercepted) g_ptr_array_remove(intercepted, irq);
    g_free(irq);
}

void qs_irq_set(QsIrq *irq, int level)
{
    if (!irq) return;
    if (irq->icpt) irq->icpt(irq->icpt_opaque, irq->icpt_n, level);
    if (irq->handler) irq->handler(irq->opaque, irq->n, level);
}

static void list_free(gpointer p)
{
    GpioList *l = p;
    g_free(l->name);
    g_free(l);
}

static void dev_free(gpointer p)
{
    GpioDev *d = p;
    g_ptr_array_free(d->lists, TRUE);
    g_free(d->path);
    g_free(d);
}

static GpioDev *dev_get(const char *path, bool create)
{
    if (!devs) devs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, dev_free);
    GpioDev *d = g_hash_table_lookup(devs, path);
    if (!d && create) {
        d = g_new0(GpioDev, 1);
        d->path = g_strdup(path);
        d->lists = g_ptr_array_new_with_free_func(list_free);
        g_hash_table_insert(devs, d->path, d);
    }
    return d;
}

static void add_list(const char *path, const char *name, QsIrq **lines, int n, bool out)
{
    GpioDev *d = dev_get(path, true);
    GpioList *l = g_new0(GpioList, 1);
    l->name = g_strdup(name);
    l->out = out;
    l->lines = lines;
    l->n = n;
    g_ptr_array_add(d->lists, l);
}

void qs_gpio_add_in(const char *path, const char *name, QsIrq **in, int n)
{
    add_list(path, name, in, n, false);
}

void qs_gpio_add_out(const char *path, const char *name, QsIrq **out_slots, int n)
{
    add_list(path, name, out_slots, n, true);
}

void qs_gpio_remove(const char *path)
{
    if (devs) g_hash_table_remove(devs, path);
}

static GpioList *find_list(GpioDev *d, const char *name, bool out)
{
    for (guint i = 0; d && i < d->lists->len; i++) {
        GpioList *l = d->lists->pdata[i];
        if (l->out == out && !g_strcmp0(l->name, name)) return l;
    }
    return NULL;
}

QsIrq *qs_gpio_get_in(const char *path, const char *name, int n)
{
    const char *full = qs_gpio_resolve(path);
    GpioList *l = full ? find_list(dev_get(full, false), name, false) : NULL;
    return l && n >= 0 && n < l->n ? l->lines[n] : NULL;
}

bool qs_gpio_connect_out(const char *path, const char *name, int n, QsIrq *target,
                         GError **errp)
{
    GpioList *l = find_list(dev_get(path, false), name, true);
    if (!l || n < 0 || n >= l->n) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED, "%s: no output line %s[%d]", path,
                    name ? name : "unnamed-gpio-out", n);
        return false;
    }
    l->lines[n] = target;
    return true;
}

/* A path names a device if it equals it, or is a suffix starting at a '/' boundary. */
static bool path_matches(const char *full, const char *p)
{
    size_t fl = strlen(full), pl = strlen(p);
    if (!pl || pl > fl) return false;
    if (strcmp(full + fl - pl, p)) return false;
    return pl == fl || p[0] == '/' || full[fl - pl - 1] == '/';
}

const char *qs_gpio_resolve(const char *path)
{
    if (!devs || !path) return NULL;
    GpioDev *d = g_hash_table_lookup(devs, path);
    if (d) return d->path;
    const char *found = NULL;
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, devs);
    while (g_hash_table_iter_next(&it, &k, NULL)) {
        if (path_matches(k, path)) {
            if (found) return NULL;   /* ambiguous, as QEMU's partial paths */
            found = k;
        }
    }
    return found;
}

QsGpioInterceptResult qs_gpio_intercept_in(const char *path, QsIrqHandler handler,
                                           void *opaque)
{
    const char *full = qs_gpio_resolve(path);
    if (!full) return QS_GPIO_UNKNOWN_DEVICE;
    GpioDev *d = dev_get(full, false);
    bool any = false;
    if (!intercepted) intercepted = g_ptr_array_new();
    for (guint i = 0; i < d->lists->len; i++) {
        GpioList *l = d->lists->pdata[i];
        if (l->out) continue;
        for (int j = 0; j < l->n; j++) {
            if (!l->lines[j]) continue;
            l->lines[j]->icpt = handler;
            l->lines[j]->icpt_opaque = opaque;
            l->lines[j]->icpt_n = j;
            g_ptr_array_add(intercepted, l->lines[j]);
        }
        any = true;
    }
    return any ? QS_GPIO_INTERCEPT_OK : QS_GPIO_NONE;
}

static void forward_out(void *opaque, int n, int level)
{
    QsIrq *self = opaque;
    qs_irq_set(self->forward, level);
}

QsGpioInterceptResult qs_gpio_intercept_out(const char *path, const char *name,
                                            QsIrqHandler handler, void *opaque)
{
    const char *full = qs_gpio_resolve(path);
    if (!full) return QS_GPIO_UNKNOWN_DEVICE;
    GpioList *l = find_list(dev_get(full, false), name, true);
    if (!l) return QS_GPIO_NONE;
    if (!intercepted) intercepted = g_ptr_array_new();
    for (int j = 0; j < l->n; j++) {
        QsIrq *ic = qs_irq_new(NULL, NULL, j);
        ic->handler = forward_out;
        ic->opaque = ic;
        ic->icpt = handler;
        ic->icpt_opaque = opaque;
        ic->icpt_n = j;
        ic->forward = l->lines[j];
        ic->slot = &l->lines[j];
        l->lines[j] = ic;
        g_ptr_array_add(intercepted, ic);
    }
    return QS_GPIO_INTERCEPT_OK;
}

void qs_gpio_intercept_clear(void)
{
    if (!intercepted) return;
    /* newest first, so stacked output interceptors unwind in order */
    for (guint i = intercepted->len; i-- > 0;) {
        QsIrq *irq = intercepted->pdata[i];
        if (irq->slot) {
            *irq->slot = irq->forward;
            g_free(irq);
        } else {
            irq->icpt = NULL;
            irq->icpt_opaque = NULL;
        }
    }
    g_ptr_array_set_size(intercepted, 0);
}
