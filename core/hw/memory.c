/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Memory regions and their topology: containers, RAM (memfd), MMIO, aliases, IOMMUs,
 * and the flattening of a region tree into an address space's sorted range list. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "memory-internal.h"

static GMutex topo_lock;              /* the region tree and the list of spaces */
static GPtrArray *spaces;             /* every QsAddressSpace */
static uint64_t topo_generation;
static unsigned add_seq;              /* insertion order, for equal priorities */
static GRecMutex bql;

void qs_bql_lock(void) { g_rec_mutex_lock(&bql); }
void qs_bql_unlock(void) { g_rec_mutex_unlock(&bql); }

const char *qs_memtx_result_str(QsMemTxResult r)
{
    if (r == QS_MEMTX_OK) return "ok";
    if (r & QS_MEMTX_ACCESS_DENIED) return "access denied";
    if (r & QS_MEMTX_DECODE_ERROR) return "decode error (nothing mapped or bad access size)";
    return "device error";
}

/* ---- regions ---- */

static QsMemoryRegion *mr_new(MrKind kind, const char *name, uint64_t size)
{
    QsMemoryRegion *mr = g_new0(QsMemoryRegion, 1);
    mr->ref = 1;
    mr->kind = kind;
    mr->name = g_strdup(name ? name : "(anonymous)");
    mr->size = size;
    mr->enabled = true;
    mr->fd = -1;
    return mr;
}

QsMemoryRegion *qs_memory_region_new_container(const char *name, uint64_t size)
{
    QsMemoryRegion *mr = mr_new(MR_CONTAINER, name, size);
    mr->children = g_ptr_array_new();
    return mr;
}

QsMemoryRegion *qs_memory_region_new_ram(const char *name, uint64_t size, GError **errp)
{
    if (size == 0 || size > ((uint64_t)1 << 46)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "RAM region '%s': size %" PRIu64 " is out of range (1 byte to 64 TiB)",
                    name, size);
        return NULL;
    }
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "RAM region '%s': memfd_create: %s", name, g_strerror(errno));
        return NULL;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e),
                    "RAM region '%s': cannot size memfd to %" PRIu64 " bytes: %s",
                    name, size, g_strerror(e));
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(e),
                    "RAM region '%s': cannot map %" PRIu64 " bytes: %s", name, size,
                    g_strerror(e));
        return NULL;
    }
    QsMemoryRegion *mr = mr_new(MR_RAM, name, size);
    mr->host = p;
    mr->fd = fd;
    return mr;
}

static unsigned valid_limit(unsigned v, unsigned def)
{
    return v ? v : def;
}

QsMemoryRegion *qs_memory_region_new_io(const char *name, uint64_t size,
                                        const QsMemOps *ops, void *opaque)
{
    QsMemoryRegion *mr = mr_new(MR_IO, name, size);
    mr->ops = ops;
    mr->opaque = opaque;
    mr->valid_min = valid_limit(ops->valid.min, 1);
    mr->valid_max = valid_limit(ops->valid.max, 4);
    mr->impl_min = valid_limit(ops->impl.min, 1);
    mr->impl_max = valid_limit(ops->impl.max, mr->valid_max);
    g_assert(mr->valid_min <= mr->valid_max && mr->valid_max <= 8);
    g_assert(mr->impl_min <= mr->impl_max && mr->impl_max <= 8);
    return mr;
}

QsMemoryRegion *qs_memory_region_new_alias(const char *name, QsMemoryRegion *orig,
                                           uint64_t offset, uint64_t size)
{
    QsMemoryRegion *mr = mr_new(MR_ALIAS, name, size);
    mr->orig = qs_memory_region_ref(orig);
    mr->alias_offset = offset;
    return mr;
}

QsMemoryRegion *qs_memory_region_new_iommu(const char *name, uint64_t size,
                                           const QsIommuOps *ops, void *opaque)
{
    QsMemoryRegion *mr = mr_new(MR_IOMMU, name, size);
    mr->iommu_ops = ops;
    mr->opaque = opaque;
    return mr;
}

QsMemoryRegion *qs_memory_region_ref(QsMemoryRegion *mr)
{
    g_atomic_int_inc(&mr->ref);
    return mr;
}

void qs_memory_region_unref(QsMemoryRegion *mr)
{
    if (!mr || !g_atomic_int_dec_and_test(&mr->ref)) return;
    g_assert(!mr->parent);
    if (mr->children) {
        for (guint i = 0; i < mr->children->len; i++) {
            QsMemoryRegion *c = mr->children->pdata[i];
            c->parent = NULL;
            qs_memory_region_unref(c);
        }
        g_ptr_array_free(mr->children, TRUE);
    }
    if (mr->host) munmap(mr->host, mr->size);
    if (mr->fd >= 0) close(mr->fd);
    if (mr->orig) qs_memory_region_unref(mr->orig);
    g_list_free_full(mr->notifiers, g_free);
    g_free(mr->name);
    g_free(mr);
}

const char *qs_memory_region_name(const QsMemoryRegion *mr) { return mr->name; }
uint64_t qs_memory_region_size(const QsMemoryRegion *mr) { return mr->size; }
void *qs_memory_region_get_ram_ptr(const QsMemoryRegion *mr) { return mr->host; }
int qs_memory_region_get_fd(const QsMemoryRegion *mr) { return mr->fd; }
bool qs_memory_region_is_mapped(const QsMemoryRegion *mr) { return mr->parent != NULL; }
uint64_t qs_memory_region_address(const QsMemoryRegion *mr) { return mr->addr; }

/* ---- flattening ---- */

/* The last byte of [start, start+size) clamped to the 64-bit space; size > 0. */
static uint64_t last_of(uint64_t start, uint64_t size)
{
    uint64_t l = start + (size - 1);
    return l < start ? UINT64_MAX : l;
}

static gint cmp_range(gconstpointer a, gconstpointer b)
{
    const FlatRange *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Add [s, l] -> mr at offset off, only where nothing is mapped yet (higher priority
 * regions were rendered first).  out stays sorted. */
static void insert_range(GArray *out, uint64_t s, uint64_t l, QsMemoryRegion *mr,
                         uint64_t off)
{
    GArray *pieces = g_array_new(FALSE, FALSE, sizeof(FlatRange));
    uint64_t cur = s;
    bool done = false;
    for (guint i = 0; i < out->len && !done; i++) {
        FlatRange *r = &g_array_index(out, FlatRange, i);
        if (r->last < cur) continue;
        if (r->start > l) break;
        if (r->start > cur) {
            FlatRange p = { cur, r->start - 1, mr, off + (cur - s) };
            g_array_append_val(pieces, p);
        }
        if (r->last >= l) done = true;
        else cur = r->last + 1;
    }
    if (!done) {
        FlatRange p = { cur, l, mr, off + (cur - s) };
        g_array_append_val(pieces, p);
    }
    g_array_append_vals(out, pieces->data, pieces->len);
    g_array_free(pieces, TRUE);
    g_array_sort(out, cmp_range);
}

/* Render the local window [ls, ll] of mr, which appears at address a. */
static void render(GArray *out, QsMemoryRegion *mr, uint64_t ls, uint64_t ll, uint64_t a,
                   int depth)
{
    if (!mr->enabled || mr->size == 0 || depth > 32) return;
    uint64_t mlast = mr->size - 1;
    if (ls > mlast) return;
    if (ll > mlast) ll = mlast;
    switch (mr->kind) {
    case MR_RAM:
    case MR_IO:
    case MR_IOMMU:
        insert_range(out, a, a + (ll - ls), mr, ls);
        return;
    case MR_ALIAS: {
        uint64_t os = ls + mr->alias_offset;
        if (os < ls) return;                        /* offset wraps: nothing there */
        uint64_t ol = ll + mr->alias_offset;
        if (ol < ll) ol = UINT64_MAX;
        render(out, mr->orig, os, ol, a, depth + 1);
        return;
    }
    case MR_CONTAINER:
        /* children are kept sorted: highest priority (then newest) first */
        for (guint i = 0; i < mr->children->len; i++) {
            QsMemoryRegion *c = mr->children->pdata[i];
            if (!c->enabled || c->size == 0) continue;
            uint64_t cs = c->addr, cl = last_of(c->addr, c->size);
            uint64_t is = MAX(cs, ls), il = MIN(cl, ll);
            if (is > il) continue;
            render(out, c, is - cs, il - cs, a + (is - ls), depth + 1);
        }
        return;
    }
}

static FlatView *flatview_build(QsMemoryRegion *root)
{
    GArray *ranges = g_array_new(FALSE, FALSE, sizeof(FlatRange));
    if (root) render(ranges, root, 0, UINT64_MAX, 0, 0);
    FlatView *fv = g_new0(FlatView, 1);
    fv->ref = 1;
    fv->n = ranges->len;
    fv->r = (FlatRange *)g_array_free(ranges, FALSE);
    for (guint i = 0; i < fv->n; i++) qs_memory_region_ref(fv->r[i].mr);
    return fv;
}

void flatview_unref(FlatView *fv)
{
    if (!fv || !g_atomic_int_dec_and_test(&fv->ref)) return;
    for (guint i = 0; i < fv->n; i++) qs_memory_region_unref(fv->r[i].mr);
    g_free(fv->r);
    g_free(fv);
}

FlatView *flatview_get(QsAddressSpace *as)
{
    g_rw_lock_reader_lock(&as->lock);
    FlatView *fv = as->fv;
    g_atomic_int_inc(&fv->ref);
    g_rw_lock_reader_unlock(&as->lock);
    return fv;
}

const FlatRange *flatview_lookup(const FlatView *fv, uint64_t addr, uint64_t *next)
{
    guint lo = 0, hi = fv->n;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (fv->r[mid].last < addr) lo = mid + 1;
        else hi = mid;
    }
    if (lo < fv->n && fv->r[lo].start <= addr) return &fv->r[lo];
    *next = lo < fv->n ? fv->r[lo].start : 0;   /* 0: nothing above */
    return NULL;
}

/* Rebuild every address space's view; called with topo_lock held. */
static void topology_changed(void)
{
    g_atomic_pointer_add(&topo_generation, 1);
    for (guint i = 0; spaces && i < spaces->len; i++) {
        QsAddressSpace *as = spaces->pdata[i];
        FlatView *fv = flatview_build(as->root);
        g_rw_lock_writer_lock(&as->lock);
        FlatView *old = as->fv;
        as->fv = fv;
        g_rw_lock_writer_unlock(&as->lock);
        flatview_unref(old);
    }
}

uint64_t qs_memory_topology_generation(void)
{
    return (uint64_t)g_atomic_pointer_get(&topo_generation);
}

static gint cmp_child(gconstpointer a, gconstpointer b)
{
    const QsMemoryRegion *x = *(QsMemoryRegion *const *)a, *y = *(QsMemoryRegion *const *)b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return x->seq > y->seq ? -1 : x->seq < y->seq;
}

bool qs_memory_region_add_subregion(QsMemoryRegion *parent, uint64_t offset,
                                    QsMemoryRegion *child, int priority, GError **errp)
{
    if (parent->kind != MR_CONTAINER) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "memory region '%s' is not a container (adding '%s')", parent->name,
                    child->name);
        return false;
    }
    g_mutex_lock(&topo_lock);
    if (child->parent) {
        g_mutex_unlock(&topo_lock);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "memory region '%s' is already mapped in '%s'", child->name,
                    child->parent->name);
        return false;
    }
    for (QsMemoryRegion *p = parent; p; p = p->parent) {
        if (p == child) {
            g_mutex_unlock(&topo_lock);
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "memory region '%s' cannot contain itself", child->name);
            return false;
        }
    }
    child->parent = parent;
    child->addr = offset;
    child->priority = priority;
    child->seq = ++add_seq;
    g_ptr_array_add(parent->children, qs_memory_region_ref(child));
    g_ptr_array_sort(parent->children, cmp_child);
    topology_changed();
    g_mutex_unlock(&topo_lock);
    return true;
}

void qs_memory_region_del_subregion(QsMemoryRegion *parent, QsMemoryRegion *child)
{
    g_mutex_lock(&topo_lock);
    if (child->parent != parent) {
        g_mutex_unlock(&topo_lock);
        return;
    }
    g_ptr_array_remove(parent->children, child);
    child->parent = NULL;
    topology_changed();
    g_mutex_unlock(&topo_lock);
    qs_memory_region_unref(child);
}

void qs_memory_region_set_address(QsMemoryRegion *mr, uint64_t offset)
{
    g_mutex_lock(&topo_lock);
    if (mr->addr != offset) {
        mr->addr = offset;
        if (mr->parent) topology_changed();
    }
    g_mutex_unlock(&topo_lock);
}

void qs_memory_region_set_enabled(QsMemoryRegion *mr, bool enabled)
{
    g_mutex_lock(&topo_lock);
    if (mr->enabled != enabled) {
        mr->enabled = enabled;
        topology_changed();
    }
    g_mutex_unlock(&topo_lock);
}

/* ---- address spaces ---- */

QsAddressSpace *qs_address_space_new(const char *name, QsMemoryRegion *root)
{
    QsAddressSpace *as = g_new0(QsAddressSpace, 1);
    as->name = g_strdup(name);
    as->root = qs_memory_region_ref(root);
    g_rw_lock_init(&as->lock);
    g_mutex_lock(&topo_lock);
    if (!spaces) spaces = g_ptr_array_new();
    g_ptr_array_add(spaces, as);
    as->fv = flatview_build(root);
    g_mutex_unlock(&topo_lock);
    return as;
}

void qs_address_space_free(QsAddressSpace *as)
{
    if (!as) return;
    g_mutex_lock(&topo_lock);
    g_ptr_array_remove(spaces, as);
    g_mutex_unlock(&topo_lock);
    flatview_unref(as->fv);
    qs_memory_region_unref(as->root);
    g_rw_lock_clear(&as->lock);
    g_free(as->name);
    g_free(as);
}

const char *qs_address_space_name(const QsAddressSpace *as) { return as->name; }
QsMemoryRegion *qs_address_space_root(const QsAddressSpace *as) { return as->root; }

static QsAddressSpace *system_as;
static QsMemoryRegion *system_root;

QsAddressSpace *qs_address_space_memory(void)
{
    static gsize once;
    if (g_once_init_enter(&once)) {
        system_root = qs_memory_region_new_container("system", UINT64_MAX);
        system_as = qs_address_space_new("memory", system_root);
        g_once_init_leave(&once, 1);
    }
    return system_as;
}

QsMemoryRegion *qs_memory_system_root(void)
{
    qs_address_space_memory();
    return system_root;
}

static const char *kind_name(MrKind k)
{
    static const char *const names[] = { "container", "ram", "i/o", "alias", "iommu" };
    return names[k];
}

void qs_address_space_dump(QsAddressSpace *as, GString *out)
{
    FlatView *fv = flatview_get(as);
    g_string_append_printf(out, "FlatView for address space '%s':\n", as->name);
    for (guint i = 0; i < fv->n; i++) {
        const FlatRange *r = &fv->r[i];
        g_string_append_printf(out, "  %016" PRIx64 "-%016" PRIx64 " (%s) %s @%016" PRIx64 "\n",
                               r->start, r->last, kind_name(r->mr->kind), r->mr->name,
                               r->offset);
    }
    flatview_unref(fv);
}
