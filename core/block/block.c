/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The block layer core: the driver registry, probing, open/close with backing chains,
 * create, and the I/O entry points that clamp, validate and dispatch to drivers. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "qs/block.h"
#include "qs-internal.h"
#include "block-int.h"

G_DEFINE_QUARK(qs-block-error-quark, qs_block_error)

static GHashTable *drivers;   /* name -> const QsBlockDriver * */
static GMutex reg_lock;

static void ensure(void)
{
    if (!drivers) drivers = g_hash_table_new(g_str_hash, g_str_equal);
}

static void driver_unregister(void *data)
{
    const QsBlockDriver *d = data;
    g_mutex_lock(&reg_lock);
    g_hash_table_remove(drivers, d->name);
    g_mutex_unlock(&reg_lock);
}

bool qs_block_driver_register(const QsBlockDriver *drv, GError **errp)
{
    ensure();
    if (!drv->name || !*drv->name) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "block driver without a name");
        return false;
    }
    if (drv->instance_size > (1u << 20)) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "block driver '%s': instance_size %zu is absurd",
                    drv->name, drv->instance_size);
        return false;
    }
    g_mutex_lock(&reg_lock);
    bool dup = g_hash_table_contains(drivers, drv->name);
    g_mutex_unlock(&reg_lock);
    if (dup) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "block driver '%s' is already registered",
                    drv->name);
        return false;
    }
    if (!qs_module_claim("block", drv->name, errp)) return false;
    g_mutex_lock(&reg_lock);
    g_hash_table_insert(drivers, (gpointer)drv->name, (gpointer)drv);
    g_mutex_unlock(&reg_lock);
    qs_module_track(driver_unregister, (gpointer)drv);
    return true;
}

const QsBlockDriver *qs_block_driver_find(const char *name)
{
    qs_block_init();
    g_mutex_lock(&reg_lock);
    const QsBlockDriver *d = g_hash_table_lookup(drivers, name);
    g_mutex_unlock(&reg_lock);
    return d;
}

static gint cmp_drv(gconstpointer a, gconstpointer b)
{
    return strcmp((*(const QsBlockDriver *const *)a)->name,
                  (*(const QsBlockDriver *const *)b)->name);
}

GPtrArray *qs_block_driver_list(void)
{
    qs_block_init();
    GPtrArray *out = g_ptr_array_new();
    g_mutex_lock(&reg_lock);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, drivers);
    while (g_hash_table_iter_next(&it, NULL, &v)) g_ptr_array_add(out, v);
    g_mutex_unlock(&reg_lock);
    g_ptr_array_sort(out, cmp_drv);
    return out;
}

void qs_block_init(void)
{
    static gsize done;
    if (g_once_init_enter(&done)) {
        ensure();
        g_hash_table_insert(drivers, (gpointer)qs_block_drv_file.name,
                            (gpointer)&qs_block_drv_file);
        g_hash_table_insert(drivers, (gpointer)qs_block_drv_raw.name,
                            (gpointer)&qs_block_drv_raw);
        g_hash_table_insert(drivers, (gpointer)qs_block_drv_qcow2.name,
                            (gpointer)&qs_block_drv_qcow2);
        g_once_init_leave(&done, 1);
    }
}

bool qs_prealloc_parse(const char *s, QsPrealloc *out)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    for (unsigned i = 0; i < G_N_ELEMENTS(names); i++) {
        if (!strcmp(s, names[i])) { *out = (QsPrealloc)i; return true; }
    }
    return false;
}

const char *qs_prealloc_name(QsPrealloc p)
{
    static const char *const names[] = { "off", "metadata", "falloc", "full" };
    return (unsigned)p < G_N_ELEMENTS(names) ? names[p] : "?";
}

void qs_block_snapshot_list_free(QsBlockSnapshotList *l)
{
    if (!l) return;
    g_free(l->sn);
    g_free(l->text);
    g_free(l);
}

/* "proto:rest" names a registered protocol driver; anything else is a host file. */
static const QsBlockDriver *protocol_for(const char *filename)
{
    const char *colon = strchr(filename, ':');
    if (colon && colon != filename && !memchr(filename, '/', colon - filename)) {
        g_autofree char *p = g_strndup(filename, colon - filename);
        const QsBlockDriver *d = qs_block_driver_find(p);
        if (d && d->is_protocol) return d;
    }
    return &qs_block_drv_file;
}

static QsBlock *block_new(const QsBlockDriver *drv, const char *filename, int flags)
{
    QsBlock *bs = g_new0(QsBlock, 1);
    bs->drv = drv;
    bs->filename = g_strdup(filename);
    bs->flags = flags;
    bs->fd = -1;
    if (drv->instance_size) bs->opaque = g_malloc0(drv->instance_size);
    return bs;
}

static void block_free(QsBlock *bs)
{
    g_free(bs->opaque);
    g_free(bs->filename);
    g_free(bs->driver_opts);
    g_free(bs->backing_file);
    g_free(bs->backing_fmt);
    g_free(bs);
}

static QsOpts *parse_open_opts(const QsBlockDriver *drv, const char *text, GError **errp)
{
    g_autofree char *owner = g_strdup_printf("block driver '%s'", drv->name);
    return qs_opts_parse(text, drv->open_opts, owner, errp);
}

QsBlock *qs_block_open_file(const char *filename, int flags, GError **errp)
{
    qs_block_init();
    const QsBlockDriver *drv = protocol_for(filename);
    QsBlock *bs = block_new(drv, filename, flags);
    if (!drv->open(bs, NULL, errp)) {
        block_free(bs);
        return NULL;
    }
    return bs;
}

size_t qs_zero_prefix(const void *p, size_t n)
{
    static const uint8_t zero[4096];
    const uint8_t *b = p;
    for (size_t z = 0; z < n; z += sizeof(zero)) {
        size_t c = MIN(n - z, sizeof(zero));
        if (memcmp(b + z, zero, c)) {
            while (!b[z]) z++;
            return z;
        }
    }
    return n;
}

/* The format of the image file is open on, by every driver's probe of its first
 * 2048 bytes (raw when none claims it). */
static const QsBlockDriver *probe_file(QsBlock *file, const char *filename, GError **errp)
{
    uint8_t buf[2048] = { 0 };
    size_t n = MIN((uint64_t)sizeof(buf), file->size);
    int ret = n ? qs_block_pread(file, 0, n, buf) : 0;
    if (ret < 0) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Could not read image for determining its "
                    "format: %s", g_strerror(-ret));
        return NULL;
    }
    g_autoptr(GPtrArray) all = qs_block_driver_list();
    const QsBlockDriver *best = NULL;
    int best_score = 0;
    for (guint i = 0; i < all->len; i++) {
        const QsBlockDriver *d = all->pdata[i];
        if (!d->probe) continue;
        int s = d->probe(buf, n, filename);
        if (s > best_score) { best_score = s; best = d; }
    }
    if (!best) best = &qs_block_drv_raw;
    return best;
}

const QsBlockDriver *qs_block_probe(const char *filename, GError **errp)
{
    QsBlock *file = qs_block_open_file(filename, 0, errp);
    if (!file) return NULL;
    const QsBlockDriver *drv = probe_file(file, filename, errp);
    qs_block_close(file);
    return drv;
}

char *qs_block_backing_path(const QsBlock *bs, const char *backing)
{
    if (!backing) return NULL;
    if (g_path_is_absolute(backing) || strchr(backing, ':') || !strchr(bs->filename, '/'))
        return g_strdup(backing);
    g_autofree char *dir = g_path_get_dirname(bs->filename);
    return g_build_filename(dir, backing, NULL);
}

bool qs_block_open_backing(QsBlock *bs, GError **errp)
{
    if (!bs->backing_file || bs->backing) return true;
    g_autofree char *path = qs_block_backing_path(bs, bs->backing_file);
    GError *err = NULL;
    int flags = bs->flags & ~(QS_BLOCK_RDWR | QS_BLOCK_CHECK);
    bs->backing = qs_block_open(path, bs->backing_fmt, flags, NULL, &err);
    if (!bs->backing) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Could not open backing file: %s",
                    err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

QsBlock *qs_block_open(const char *filename, const char *fmt, int flags,
                       const char *driver_opts, GError **errp)
{
    qs_block_init();
    const QsBlockDriver *drv;
    QsBlock *probed = NULL;   /* the file the probe read, kept for the driver */
    if (fmt) {
        drv = qs_block_driver_find(fmt);
        if (!drv) {
            g_set_error(errp, QS_BLOCK_ERROR, 0, "Unknown driver '%s'", fmt);
            return NULL;
        }
    } else {
        const QsBlockDriver *proto = protocol_for(filename);
        if (proto != &qs_block_drv_file && !proto->is_filter) {
            drv = proto;
        } else if (flags & QS_BLOCK_NOCACHE) {
            /* (O_DIRECT reads need aligned buffers: probe through a cached open) */
            drv = qs_block_probe(filename, errp);
            if (!drv) return NULL;
        } else {
            /* a host file, or a filter over one: probe the format through the file
             * the format driver then gets (one open, as QEMU) */
            probed = qs_block_open_file(filename, flags, errp);
            if (!probed) return NULL;
            drv = probe_file(probed, filename, errp);
            if (!drv) {
                qs_block_close(probed);
                return NULL;
            }
            if (drv->is_protocol) g_clear_pointer(&probed, qs_block_close);
        }
    }
    QsOpts *opts = NULL;
    if (driver_opts && *driver_opts) {
        opts = parse_open_opts(drv, driver_opts, errp);
        if (!opts) {
            qs_block_close(probed);
            return NULL;
        }
    }
    QsBlock *bs = block_new(drv, filename, flags);
    bs->driver_opts = g_strdup(driver_opts);
    if (!drv->is_protocol) {
        bs->file = probed ? probed : qs_block_open_file(filename, flags, errp);
        if (!bs->file) goto fail;
    }
    if (!drv->open(bs, opts, errp)) {
        if (drv->close) drv->close(bs);
        if (bs->file) qs_block_close(bs->file);
        goto fail;
    }
    qs_opts_free(opts);
    if (!(flags & QS_BLOCK_NO_BACKING) && !qs_block_open_backing(bs, errp)) {
        qs_block_close(bs);
        return NULL;
    }
    return bs;
fail:
    qs_opts_free(opts);
    block_free(bs);
    return NULL;
}

void qs_block_close(QsBlock *bs)
{
    if (!bs) return;
    if (bs->drv->close) bs->drv->close(bs);
    if (bs->file) qs_block_close(bs->file);
    if (bs->backing) qs_block_close(bs->backing);
    block_free(bs);
}

QsOpts *qs_block_create_opts_parse(const QsBlockDriver *drv, const char *text,
                                   GError **errp)
{
    g_autofree char *owner = g_strdup_printf("format '%s'", drv->name);
    GError *err = NULL;
    QsOpts *o = qs_opts_parse(text, drv->create_opts, owner, &err);
    if (!o) {
        /* QEMU's wording for the common case */
        if (strstr(err->message, "unknown option")) {
            const char *q = strstr(err->message, "option '") + 8;
            g_autofree char *name = g_strndup(q, strcspn(q, "'"));
            g_set_error(errp, QS_BLOCK_ERROR, 0, "Invalid parameter '%s'", name);
            g_error_free(err);
        } else {
            g_propagate_error(errp, err);
        }
    }
    return o;
}

bool qs_block_create(const char *fmt, const char *filename, uint64_t size,
                     const char *opts, bool no_backing_check, GError **errp)
{
    qs_block_init();
    const QsBlockDriver *drv = qs_block_driver_find(fmt);
    if (!drv) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Unknown file format '%s'", fmt);
        return false;
    }
    if (!drv->create) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Format driver '%s' does not support image "
                    "creation", fmt);
        return false;
    }
    g_autoptr(GString) text = g_string_new(opts ? opts : "");
    QsOpts *o = qs_block_create_opts_parse(drv, text->str, errp);
    if (!o) return false;
    const char *backing = qs_opts_get_str(o, "backing_file");
    const char *bfmt = qs_opts_get_str(o, "backing_fmt");
    bool size_set = qs_opts_has(o, "size");
    if (size != UINT64_MAX && size_set) {
        qs_opts_free(o);
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Image size given twice ('size' option and "
                    "size argument)");
        return false;
    }
    if (size == UINT64_MAX && size_set) size = qs_opts_get_uint(o, "size");
    if (backing && (!no_backing_check || size == UINT64_MAX)) {
        /* Check that the backing file opens, and take its size if none was given. */
        QsBlock tmp = { .filename = (char *)filename };
        g_autofree char *path = qs_block_backing_path(&tmp, backing);
        GError *err = NULL;
        QsBlock *b = qs_block_open(path, bfmt, QS_BLOCK_NO_BACKING, NULL, &err);
        if (!b) {
            g_set_error(errp, QS_BLOCK_ERROR, 0, "Could not open backing image: %s",
                        err->message);
            g_error_free(err);
            qs_opts_free(o);
            return false;
        }
        if (size == UINT64_MAX) size = b->size;
        qs_block_close(b);
    }
    if (size == UINT64_MAX) {
        qs_opts_free(o);
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Image creation needs a size parameter");
        return false;
    }
    qs_opts_free(o);
    if (size > (uint64_t)QS_BLOCK_MAX_SIZE) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Image size %" G_GUINT64_FORMAT
                    " is too large (at most %" G_GINT64_FORMAT ")", size, QS_BLOCK_MAX_SIZE);
        return false;
    }
    if (!size_set || !strstr(text->str, "size=")) {
        g_string_append_printf(text, "%ssize=%" G_GUINT64_FORMAT, text->len ? "," : "", size);
    }
    o = qs_block_create_opts_parse(drv, text->str, errp);
    if (!o) return false;
    bool ok = drv->create(filename, o, errp);
    qs_opts_free(o);
    return ok;
}

/* ---- I/O entry points ---- */

static bool write_allowed(QsBlock *bs, int *ret)
{
    if (!(bs->flags & QS_BLOCK_RDWR)) { *ret = -EACCES; return false; }
    if (bs->fail_write_at > 0) {
        int64_t n = __atomic_add_fetch(&bs->write_count, 1, __ATOMIC_SEQ_CST);
        if (n >= bs->fail_write_at) { *ret = -EIO; return false; }
    }
    return true;
}

/* Formats stay inside their virtual size; protocol layers may grow (a format appends
 * clusters) and read zeros past their end. */
static int check_range(QsBlock *bs, uint64_t off, uint64_t len)
{
    if (bs->drv->is_protocol) {
        return off > (uint64_t)QS_BLOCK_MAX_SIZE || len > (uint64_t)QS_BLOCK_MAX_SIZE - off
               ? -EINVAL : 0;
    }
    if (off > bs->size || len > bs->size - off) return -EINVAL;
    return 0;
}

int qs_block_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    int r = check_range(bs, off, len);
    if (r < 0) return r;
    if (!len) return 0;
    return bs->drv->pread(bs, off, len, buf);
}

int qs_block_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    int r = check_range(bs, off, len);
    if (r < 0) return r;
    if (!write_allowed(bs, &r)) return r;
    if (!len) return 0;
    if (!bs->drv->pwrite) return -ENOTSUP;
    return bs->drv->pwrite(bs, off, len, buf, flags);
}

int qs_block_pwrite_compressed(QsBlock *bs, uint64_t off, size_t len, const void *buf)
{
    int r = check_range(bs, off, len);
    if (r < 0) return r;
    if (!bs->drv->pwrite_compressed) return -ENOTSUP;
    if (!write_allowed(bs, &r)) return r;
    return bs->drv->pwrite_compressed(bs, off, len, buf);
}

int qs_block_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    int r = check_range(bs, off, len);
    if (r < 0) return r;
    if (!write_allowed(bs, &r)) return r;
    if (!len) return 0;
    if (bs->drv->pwrite_zeroes) {
        r = bs->drv->pwrite_zeroes(bs, off, len, flags);
        if (r != -ENOTSUP || (flags & QS_WRITE_NO_FALLBACK)) return r;
    }
    if (flags & QS_WRITE_NO_FALLBACK) return -ENOTSUP;
    /* fall back to writing zeros */
    size_t chunk = MIN(len, (uint64_t)1 << 20);
    g_autofree void *z = g_malloc0(chunk);
    while (len) {
        size_t n = MIN(len, chunk);
        r = bs->drv->pwrite(bs, off, n, z, 0);
        if (r < 0) return r;
        off += n;
        len -= n;
    }
    return 0;
}

int qs_block_pdiscard(QsBlock *bs, uint64_t off, uint64_t len)
{
    int r = check_range(bs, off, len);
    if (r < 0) return r;
    if (!write_allowed(bs, &r)) return r;
    if (!len || !bs->drv->pdiscard) return 0;
    return bs->drv->pdiscard(bs, off, len);
}

int qs_block_flush(QsBlock *bs)
{
    if (!(bs->flags & QS_BLOCK_RDWR)) return 0;
    if (bs->drv->flush) return bs->drv->flush(bs);
    return bs->file ? qs_block_flush(bs->file) : 0;
}

bool qs_block_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                       GError **errp)
{
    int r;
    if (!bs->drv->truncate) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Image format '%s' does not support resizing",
                    bs->drv->name);
        return false;
    }
    if (size > (uint64_t)QS_BLOCK_MAX_SIZE) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Image size %" G_GUINT64_FORMAT " is too large",
                    size);
        return false;
    }
    if (!write_allowed(bs, &r)) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Could not resize '%s': %s", bs->filename,
                    g_strerror(-r));
        return false;
    }
    return bs->drv->truncate(bs, size, shrink, prealloc, errp) == 0;
}

int qs_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                    uint64_t *map, QsBlock **file)
{
    *pnum = 0;
    if (map) *map = 0;
    if (file) *file = NULL;
    if (off >= bs->size) return QS_BS_EOF;
    len = MIN(len, bs->size - off);
    uint64_t m = 0;
    QsBlock *f = NULL;
    int r;
    if (!bs->drv->block_status) {
        *pnum = len;
        r = QS_BS_DATA | QS_BS_ALLOCATED;
    } else {
        r = bs->drv->block_status(bs, off, len, pnum, &m, &f);
        if (r < 0) return r;
        if (*pnum == 0 || *pnum > len) return -EIO;
    }
    if (!(r & QS_BS_ALLOCATED) && !bs->backing) r |= QS_BS_ZERO;
    if (map) *map = m;
    if (file) *file = f;
    return r;
}

int qs_block_status_above(QsBlock *bs, QsBlock *base, uint64_t off, uint64_t len,
                          uint64_t *pnum, uint64_t *map, QsBlock **file, int *depth)
{
    int d = 0;
    uint64_t n = len;
    for (QsBlock *b = bs; b && b != base; b = b->backing, d++) {
        if (off >= b->size) {
            /* beyond a shorter backing file: zeros */
            *pnum = n;
            if (depth) *depth = d;
            if (map) *map = 0;
            if (file) *file = NULL;
            return QS_BS_ZERO;
        }
        uint64_t p;
        int r = qs_block_status(b, off, n, &p, map, file);
        if (r < 0) return r;
        if ((r & QS_BS_ALLOCATED) || !b->backing || b->backing == base) {
            *pnum = p;
            if (depth) *depth = d;
            return r;
        }
        n = p;   /* the unallocated run: look below only that far */
    }
    *pnum = n;
    if (depth) *depth = d;
    return 0;
}

int qs_block_read_backing(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    QsBlock *b = bs->backing;
    if (!b || off >= b->size) {
        memset(buf, 0, len);
        return 0;
    }
    size_t n = MIN((uint64_t)len, b->size - off);
    if (n < len) memset((uint8_t *)buf + n, 0, len - n);
    return qs_block_pread(b, off, n, buf);
}

int64_t qs_block_allocated_size(QsBlock *bs)
{
    if (bs->drv->allocated_size) return bs->drv->allocated_size(bs);
    return bs->file ? qs_block_allocated_size(bs->file) : -ENOTSUP;
}

uint32_t qs_block_cluster_size(QsBlock *bs)
{
    return bs->drv->cluster_size ? bs->drv->cluster_size(bs) : 0;
}

bool qs_block_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    memset(res, 0, sizeof(*res));
    if (!bs->drv->check) {
        g_set_error(errp, QS_BLOCK_ERROR, ENOTSUP,
                    "This image format does not support checks");
        return false;
    }
    return bs->drv->check(bs, res, fix, errp);
}
