/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vmdk driver: descriptor parsing and writing, disks of flat/zero/sparse extents
 * (monolithic, split in 2 GB files, stream-optimized), parent images, create and info. */
#include "vmdk.h"
#include "vmdk-sesparse.h"

#define SPLIT_SECTORS 4194304ull   /* 2 GiB per file in twoGbMaxExtent* */

static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    if (len >= 4 && (le32_at(buf) == VMDK4_MAGIC || le32_at(buf) == VMDK3_MAGIC)) return 100;
    static const char sig[] = "# Disk DescriptorFile";
    if (len >= sizeof(sig) - 1 && !memcmp(buf, sig, sizeof(sig) - 1)) return 100;
    return 0;
}

static void extent_free(gpointer p)
{
    VmdkExtent *e = p;
    if (e->kind == EXT_SPARSE || e->kind == EXT_COWD) vmdk_sparse_close(e);
    if (e->own_file && e->file) qs_block_close(e->file);
    g_free(e->type_name);
    g_free(e->filename);
    g_free(e);
}

/* Value of `key` in the descriptor ("key=value" or key = "value"), or NULL.  Scans the
 * text in place: descriptors may have thousands of lines and this runs per key. */
static char *desc_get(const char *desc, const char *key)
{
    size_t kl = strlen(key);
    for (const char *l = desc; *l; ) {
        const char *end = strchr(l, '\n');
        if (!end) end = l + strlen(l);
        const char *p = l;
        while (p < end && g_ascii_isspace(*p)) p++;
        const char *e = end;                     /* value ends before trailing space */
        while (e > p && g_ascii_isspace(e[-1])) e--;
        if ((size_t)(e - p) >= kl && !strncmp(p, key, kl)) {
            p += kl;
            while (p < e && (*p == ' ' || *p == '\t')) p++;
            if (p < e && *p == '=') {
                p++;
                while (p < e && (*p == ' ' || *p == '\t')) p++;
                size_t n = (size_t)(e - p);
                if (n >= 2 && p[0] == '"' && p[n - 1] == '"') return g_strndup(p + 1, n - 2);
                return g_strndup(p, n);
            }
        }
        l = *end ? end + 1 : end;
    }
    return NULL;
}

/* The descriptor's lines, as g_strsplit(desc, "\n", -1) gives them.  g_strsplit calls
 * strstr per line, and ASan's strstr measures the whole rest of the string each time:
 * quadratic in a long descriptor (two thirds of the vmdk fuzz target's time). */
static GStrv desc_lines(const char *desc)
{
    GPtrArray *v = g_ptr_array_new();
    if (*desc) {
        size_t left = strlen(desc);
        const char *p = desc, *nl;
        while ((nl = memchr(p, '\n', left))) {
            g_ptr_array_add(v, g_strndup(p, (gsize)(nl - p)));
            left -= (size_t)(nl + 1 - p);
            p = nl + 1;
        }
        g_ptr_array_add(v, g_strndup(p, left));
    }
    g_ptr_array_add(v, NULL);
    return (GStrv)g_ptr_array_free(v, FALSE);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s || !g_ascii_isdigit(*s)) return false;
    char *end;
    errno = 0;
    guint64 v = g_ascii_strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

/* Parse one extent line: ACCESS SECTORS TYPE "FILE" [OFFSET].  false if not one. */
static bool parse_extent_line(const char *line, char **access, uint64_t *sectors, char **type,
                              char **file, uint64_t *offset, GError **errp, bool *is_extent)
{
    *is_extent = false;
    if (strncmp(line, "RW ", 3) && strncmp(line, "RDONLY ", 7) && strncmp(line, "NOACCESS ", 9))
        return true;
    *is_extent = true;
    const char *sp = strchr(line, ' ');
    *access = g_strndup(line, sp - line);
    const char *p = sp + 1;
    while (*p == ' ') p++;
    const char *q = p;
    while (*q && *q != ' ') q++;
    g_autofree char *num = g_strndup(p, q - p);
    if (!parse_u64(num, sectors))
        return fmt_err(errp, "vmdk: invalid extent size '%s' in descriptor line '%.80s'", num,
                       line);
    p = q;
    while (*p == ' ') p++;
    q = p;
    while (*q && *q != ' ') q++;
    *type = g_strndup(p, q - p);
    p = q;
    while (*p == ' ') p++;
    *offset = 0;
    *file = NULL;
    if (!strcmp(*type, "ZERO")) return true;
    if (*p != '"')
        return fmt_err(errp, "vmdk: extent file name not quoted in descriptor line '%.80s'",
                       line);
    q = strchr(p + 1, '"');
    if (!q) return fmt_err(errp, "vmdk: unterminated extent file name in '%.80s'", line);
    *file = g_strndup(p + 1, q - p - 1);
    p = q + 1;
    while (*p == ' ') p++;
    if (*p && !parse_u64(p, offset))
        return fmt_err(errp, "vmdk: invalid extent offset '%.40s'", p);
    return true;
}

static VmdkExtent *add_extent(Vmdk *s, uint64_t *start)
{
    VmdkExtent *e = g_new0(VmdkExtent, 1);
    e->start = *start;
    g_ptr_array_add(s->extents, e);
    return e;
}

static bool parse_header_keys(QsBlock *bs, Vmdk *s, GError **errp)
{
    g_autofree char *cid = desc_get(s->desc, "CID");
    g_autofree char *pcid = desc_get(s->desc, "parentCID");
    s->cid = cid ? (uint32_t)g_ascii_strtoull(cid, NULL, 16) : 0;
    s->parent_cid = pcid ? (uint32_t)g_ascii_strtoull(pcid, NULL, 16) : 0xffffffffu;
    s->create_type = desc_get(s->desc, "createType");
    if (!s->create_type) s->create_type = g_strdup("");
    char *parent = desc_get(s->desc, "parentFileNameHint");
    if (parent && *parent) {
        if (strlen(parent) > 4096) {
            g_free(parent);
            return fmt_err(errp, "vmdk: parentFileNameHint is too long");
        }
        bs->backing_file = parent;
        bs->backing_fmt = g_strdup("vmdk");
    } else {
        g_free(parent);
    }
    return true;
}

/* A disk described by a text descriptor: open every extent. */
static bool open_descriptor(QsBlock *bs, Vmdk *s, GError **errp)
{
    static const char *const types[] = {
        "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
        "streamOptimized", "vmfs", "vmfsSparse", "custom", "seSparse", NULL,
    };
    if (!parse_header_keys(bs, s, errp)) return false;
    if (!g_strv_contains(types, s->create_type))
        return fmt_err(errp, "vmdk: unsupported image type '%s'", s->create_type);
    bool rdwr = bs->flags & QS_BLOCK_RDWR;
    g_auto(GStrv) lines = desc_lines(s->desc);
    uint64_t start = 0;
    g_autofree char *dir = g_path_get_dirname(bs->filename);
    /* FLAT extents naming the same file share one open of it (hostile descriptors list
     * one file thousands of times); sparse extents allocate, so they never share */
    g_autoptr(GHashTable) flat_files = g_hash_table_new(g_str_hash, g_str_equal);
    for (char **l = lines; *l; l++) {
        char *line = g_strstrip(*l);
        g_autofree char *access = NULL, *type = NULL, *file = NULL;
        uint64_t sectors, offset;
        bool is_extent;
        if (!parse_extent_line(line, &access, &sectors, &type, &file, &offset, errp, &is_extent))
            return false;
        if (!is_extent) continue;
        if (s->extents->len >= VMDK_MAX_EXTENTS)
            return fmt_err(errp, "vmdk: more than %u extents", VMDK_MAX_EXTENTS);
        if (sectors > (uint64_t)QS_BLOCK_MAX_SIZE / 512 - start)
            return fmt_err(errp, "vmdk: extents add up to more than the largest disk (extent "
                           "of %" G_GUINT64_FORMAT " sectors)", sectors);
        if (!strcmp(access, "NOACCESS"))
            return fmt_err(errp, "vmdk: NOACCESS extents are not supported");
        VmdkExtent *e = add_extent(s, &start);
        e->type_name = g_strdup(type);
        e->sectors = sectors;
        e->read_only = !strcmp(access, "RDONLY");
        if (!strcmp(type, "ZERO")) {
            e->kind = EXT_ZERO;
            e->filename = g_strdup("");
            start += sectors;
            continue;
        }
        bool flat = !strcmp(type, "FLAT") || !strcmp(type, "VMFS");
        bool sparse = !strcmp(type, "SPARSE") || !strcmp(type, "VMFSSPARSE");
        bool sesparse = !strcmp(type, "SESPARSE");   /* read as a flat extent of its node */
        if (!flat && !sparse && !sesparse)
            return fmt_err(errp, "vmdk: unsupported extent type '%s'", type);
        if (!*file) return fmt_err(errp, "vmdk: empty extent file name");
        e->filename = g_path_is_absolute(file) ? g_strdup(file)
                                               : g_build_filename(dir, file, NULL);
        if (!strcmp(dir, ".") && !g_path_is_absolute(file)) {
            g_free(e->filename);
            e->filename = g_strdup(file);
        }
        VmdkExtent *same = flat ? g_hash_table_lookup(flat_files, e->filename) : NULL;
        if (same && same->read_only == e->read_only) {
            e->file = same->file;
            e->shared_file = true;
        } else {
            e->file = sesparse ? vmdk_sesparse_open(e->filename, bs, start, sectors,
                                                    rdwr && !e->read_only, errp)
                               : qs_block_open_file(e->filename,
                                                    rdwr && !e->read_only ? QS_BLOCK_RDWR : 0,
                                                    errp);
            if (!e->file) return false;
            e->own_file = true;
            if (flat && !same) g_hash_table_insert(flat_files, e->filename, e);
        }
        if (flat || sesparse) {
            e->kind = EXT_FLAT;
            e->sesparse = sesparse;
            if (offset > (uint64_t)QS_BLOCK_MAX_SIZE / 512)
                return fmt_err(errp, "vmdk: flat extent offset %" G_GUINT64_FORMAT " is too "
                               "large", offset);
            e->flat_offset = offset * 512;
        } else {
            if (!vmdk_sparse_open(bs, e, rdwr && !e->read_only, NULL, errp)) return false;
            if (e->sectors != sectors)
                return fmt_err(errp, "vmdk: extent '%s' has %" G_GUINT64_FORMAT " sectors, "
                               "the descriptor says %" G_GUINT64_FORMAT, e->filename,
                               e->sectors, sectors);
        }
        start += sectors;
    }
    if (!s->extents->len) return fmt_err(errp, "vmdk: the descriptor lists no extents");
    bs->size = start * 512;
    return true;
}

static bool vmdk_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Vmdk *s = bs->opaque;
    g_mutex_init(&s->lock);
    s->inited = true;
    s->extents = g_ptr_array_new_with_free_func(extent_free);
    uint8_t m[4] = { 0 };
    int r = qs_block_pread(bs->file, 0, MIN(bs->file->size, 4u), m);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read '%s'", bs->filename);
    if (le32_at(m) == VMDK4_MAGIC || le32_at(m) == VMDK3_MAGIC) {
        uint64_t start = 0;
        VmdkExtent *e = add_extent(s, &start);
        e->file = bs->file;
        e->filename = g_strdup(bs->filename);
        e->type_name = g_strdup("");
        if (!vmdk_sparse_open(bs, e, bs->flags & QS_BLOCK_RDWR, &s->desc, errp)) return false;
        bs->size = e->sectors * 512;
        if (s->desc) {
            if (!parse_header_keys(bs, s, errp)) return false;
            s->desc_offset = 512 * le64_at(e->header + 28);
            s->desc_size = 512 * le64_at(e->header + 36);
        } else {
            s->create_type = g_strdup(e->kind == EXT_COWD ? "" : "monolithicSparse");
            s->parent_cid = 0xffffffffu;
        }
        return true;
    }
    if (bs->file->size > VMDK_DESC_MAX)
        return fmt_err(errp, "vmdk: descriptor file '%s' is too large (%" G_GUINT64_FORMAT
                       " bytes, at most %u)", bs->filename, bs->file->size, VMDK_DESC_MAX);
    s->desc = g_malloc0(bs->file->size + 1);
    r = qs_block_pread(bs->file, 0, bs->file->size, s->desc);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read '%s'", bs->filename);
    if (!g_str_has_prefix(s->desc, "# Disk DescriptorFile"))
        return fmt_err(errp, "vmdk: '%s' is neither a sparse extent nor a descriptor file",
                       bs->filename);
    return open_descriptor(bs, s, errp);
}

static void vmdk_close(QsBlock *bs)
{
    Vmdk *s = bs->opaque;
    if (!s->inited) return;
    for (guint i = 0; s->extents && i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        if (e->stream_dirty) vmdk_stream_finish(e);
    }
    if (s->extents) g_ptr_array_free(s->extents, TRUE);
    g_free(s->desc);
    g_free(s->create_type);
    g_mutex_clear(&s->lock);
}

static VmdkExtent *find_extent(Vmdk *s, uint64_t off)
{
    uint64_t sec = off / 512;
    guint lo = 0, hi = s->extents->len;
    while (hi - lo > 1) {
        guint mid = (lo + hi) / 2;
        if (((VmdkExtent *)s->extents->pdata[mid])->start <= sec) lo = mid;
        else hi = mid;
    }
    return s->extents->pdata[lo];
}

typedef enum { IO_READ, IO_WRITE, IO_ZERO } IoKind;

static int extent_io(QsBlock *bs, VmdkExtent *e, IoKind kind, uint64_t off, size_t len,
                     uint8_t *p, uint64_t disk_off)
{
    Vmdk *s = bs->opaque;
    int r = 0;
    switch (e->kind) {
    case EXT_ZERO:
        if (kind != IO_READ) return -EACCES;
        memset(p, 0, len);
        return 0;
    case EXT_FLAT:
        if (kind != IO_READ && e->read_only) return -EACCES;
        if (kind == IO_READ) return qs_block_pread(e->file, e->flat_offset + off, len, p);
        if (kind == IO_ZERO) return fmt_write_zeros(e->file, e->flat_offset + off, len);
        return qs_block_pwrite(e->file, e->flat_offset + off, len, p, 0);
    case EXT_SPARSE:
        if (e->compressed && kind == IO_READ)
            return vmdk_compressed_read(e, &s->lock, off, len, p, bs, disk_off);
        if (e->compressed && kind == IO_WRITE)
            return vmdk_compressed_write(e, &s->lock, off, len, p, bs, disk_off);
        break;
    case EXT_COWD:
        break;
    }
    while (len) {
        uint64_t in = off % e->grain;
        size_t n = (size_t)MIN((uint64_t)len, e->grain - in);
        uint64_t host;
        g_mutex_lock(&s->lock);
        r = vmdk_sparse_lookup(e, off, &host);
        bool plain = r == 0 && host > VMDK_GTE_ZEROED && !e->compressed;
        bool nothing = r == 0 && kind == IO_ZERO &&
                       (host == VMDK_GTE_ZEROED || (host == 0 && !bs->backing));
        bool whole_new = r == 0 && kind == IO_WRITE && e->kind == EXT_SPARSE &&
                         !e->compressed && host <= VMDK_GTE_ZEROED && in == 0 &&
                         n == e->grain;
        bool to_zeroed = plain && kind == IO_ZERO && e->zeroed_grain && n == e->grain;
        if (plain && !to_zeroed) {
            /* the grains stored right after this one: one read or write for all */
            uint64_t h2;
            while (n < len && vmdk_sparse_lookup(e, off + n, &h2) == 0 && h2 == host + in + n)
                n += (size_t)MIN((uint64_t)(len - n), e->grain);
        } else if (whole_new) {
            /* whole grains not stored yet: stored together */
            unsigned k = 1;
            uint64_t h2;
            while ((uint64_t)(k + 1) * e->grain <= len && k < 1024 &&
                   vmdk_sparse_lookup(e, off + (uint64_t)k * e->grain, &h2) == 0 &&
                   h2 <= VMDK_GTE_ZEROED)
                k++;
            n = (size_t)(k * e->grain);
            r = vmdk_sparse_alloc_run(e, off / e->grain, k, p);
        } else if (nothing) {
            /* already reads as zeros */
        } else if (r == 0 && !plain) {
            if (kind == IO_READ) r = vmdk_sparse_read(e, off, n, p, bs, disk_off);
            else r = vmdk_sparse_write(e, off, n, p, bs, disk_off, kind == IO_ZERO);
        } else if (r == 0 && kind == IO_ZERO && e->zeroed_grain && n == e->grain) {
            r = vmdk_sparse_write(e, off, n, p, bs, disk_off, true);
            plain = false;
        }
        g_mutex_unlock(&s->lock);
        if (r == 0 && plain) {
            if (kind == IO_READ) r = qs_block_pread(e->file, host + in, n, p);
            else if (e->read_only) r = -EACCES;
            else r = vmdk_sparse_write_stored(e, host, in, n, p, kind == IO_ZERO);
        }
        if (r < 0) return r;
        if (kind != IO_ZERO) p += n;
        off += n;
        disk_off += n;
        len -= n;
    }
    return 0;
}

static int vmdk_io(QsBlock *bs, IoKind kind, uint64_t off, uint64_t len, uint8_t *p)
{
    Vmdk *s = bs->opaque;
    while (len) {
        VmdkExtent *e = find_extent(s, off);
        uint64_t eoff = off - e->start * 512;
        uint64_t n = MIN(len, e->sectors * 512 - eoff);
        if (!n) return -EIO;
        int r = extent_io(bs, e, kind, eoff, (size_t)n, p, off);
        if (r < 0) return r;
        if (kind != IO_ZERO) p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int vmdk_read_backing(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Vmdk *s = bs->opaque;
    if (bs->backing && !__atomic_load_n(&s->cid_checked, __ATOMIC_ACQUIRE)) {
        if (bs->backing->drv != &qs_block_drv_vmdk ||
            ((Vmdk *)bs->backing->opaque)->cid != s->parent_cid)
            return -EINVAL;
        __atomic_store_n(&s->cid_checked, true, __ATOMIC_RELEASE);
    }
    return qs_block_read_backing(bs, off, len, buf);
}

static bool write_desc(QsBlock *bs, GString *out, GError **errp);

/* As QEMU: the first write after each open gives the image a new random CID, so that
 * children made from it no longer read through it. */
static int update_cid(QsBlock *bs)
{
    Vmdk *s = bs->opaque;
    if (__atomic_load_n(&s->cid_updated, __ATOMIC_ACQUIRE) || !s->desc) return 0;
    g_mutex_lock(&s->lock);
    int r = 0;
    if (!s->cid_updated) {
        uint32_t cid = g_random_int();
        g_auto(GStrv) lines = desc_lines(s->desc);
        g_autoptr(GString) out = g_string_new("");
        for (char **l = lines; *l; l++) {
            const char *eq = strchr(*l, '=');
            g_autofree char *key = eq ? g_strstrip(g_strndup(*l, (gsize)(eq - *l))) : NULL;
            if (key && !strcmp(key, "CID")) g_string_append_printf(out, "CID=%08x", cid);
            else g_string_append(out, *l);
            if (l[1]) g_string_append_c(out, '\n');
        }
        GError *err = NULL;
        if (write_desc(bs, out, &err)) {
            g_free(s->desc);
            s->desc = g_string_free(g_steal_pointer(&out), FALSE);
            s->cid = cid;
        } else {
            r = err->code ? -err->code : -EIO;
            g_error_free(err);
        }
        __atomic_store_n(&s->cid_updated, true, __ATOMIC_RELEASE);
    }
    g_mutex_unlock(&s->lock);
    return r;
}

static int vmdk_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    return vmdk_io(bs, IO_READ, off, len, buf);
}

static int vmdk_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    int r = update_cid(bs);
    if (r < 0) return r;
    return vmdk_io(bs, IO_WRITE, off, len, (uint8_t *)buf);
}

static int vmdk_pwrite_compressed(QsBlock *bs, uint64_t off, size_t len, const void *buf)
{
    Vmdk *s = bs->opaque;
    VmdkExtent *e = find_extent(s, off);
    if (e->kind != EXT_SPARSE || !e->compressed) return -ENOTSUP;
    int r = update_cid(bs);
    if (r < 0) return r;
    return vmdk_io(bs, IO_WRITE, off, len, (uint8_t *)buf);
}

static int vmdk_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    int r = update_cid(bs);
    if (r < 0) return r;
    return vmdk_io(bs, IO_ZERO, off, len, NULL);
}

static int vmdk_flush(QsBlock *bs)
{
    Vmdk *s = bs->opaque;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        if (!e->file || !e->own_file) continue;
        int r = qs_block_flush(e->file);
        if (r < 0) return r;
    }
    return qs_block_flush(bs->file);
}

static int vmdk_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, QsBlock **file)
{
    Vmdk *s = bs->opaque;
    VmdkExtent *e = find_extent(s, off);
    uint64_t eoff = off - e->start * 512;
    len = MIN(len, e->sectors * 512 - eoff);
    if (e->kind == EXT_ZERO) {
        *pnum = len;
        return QS_BS_ZERO | QS_BS_ALLOCATED;
    }
    if (e->sesparse) {
        int r = vmdk_sesparse_status(e->file, eoff, len, pnum, map, file);
        return r;
    }
    if (e->kind == EXT_FLAT) {
        *pnum = len;
        *map = e->flat_offset + eoff;
        *file = e->file;
        return fmt_status_in_file(e->file, *map, pnum,
                                  QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED);
    }
    uint64_t in = eoff % e->grain, host, n = 0;
    int ret = 0, r;
    g_mutex_lock(&s->lock);
    r = vmdk_sparse_lookup(e, eoff, &host);
    if (r == 0) {
        n = e->grain - in;
        if (host == 0) ret = 0;
        else if (host == VMDK_GTE_ZEROED) ret = QS_BS_ZERO | QS_BS_ALLOCATED;
        else if (e->compressed) ret = QS_BS_DATA | QS_BS_ALLOCATED;
        else ret = QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
        /* extend over grains with the same status (contiguous on the host for data) */
        while (n < len) {
            uint64_t h2;
            if (vmdk_sparse_lookup(e, eoff + n, &h2) < 0) break;
            bool same = host <= VMDK_GTE_ZEROED ? h2 == host
                        : e->compressed ? h2 > VMDK_GTE_ZEROED : h2 == host + in + n;
            if (!same) break;
            n += e->grain;
        }
    }
    g_mutex_unlock(&s->lock);
    if (r < 0) return r;
    *pnum = MIN(n, len);
    if (ret & QS_BS_OFFSET_VALID) {
        *map = host + in;
        *file = e->file;
    }
    return ret;
}

static bool vmdk_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    Vmdk *s = bs->opaque;
    g_mutex_lock(&s->lock);
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        if (e->kind == EXT_SPARSE || e->kind == EXT_COWD) vmdk_sparse_check(e, res, fix);
    }
    g_mutex_unlock(&s->lock);
    if (fix && res->corruptions_fixed + res->leaks_fixed) vmdk_flush(bs);
    return true;
}

static uint32_t vmdk_cluster_size(QsBlock *bs)
{
    Vmdk *s = bs->opaque;
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        if (e->kind == EXT_SPARSE || e->kind == EXT_COWD) return (uint32_t)e->grain;
        if (e->sesparse) return 4096;   /* its grain, as QEMU reports it */
    }
    return 0;
}

/* As QEMU: the descriptor's file and every extent file in another file. */
static int64_t vmdk_allocated_size(QsBlock *bs)
{
    Vmdk *s = bs->opaque;
    int64_t total = qs_block_allocated_size(bs->file);
    for (guint i = 0; total >= 0 && i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        if (!e->file || !(e->own_file || e->shared_file)) continue;   /* QEMU: per extent */
        int64_t n = qs_block_allocated_size(e->sesparse ? e->file->file : e->file);
        if (n < 0) return n;
        total += n;
    }
    return total;
}

static void vmdk_info(QsBlock *bs, JsonBuilder *b)
{
    Vmdk *s = bs->opaque;
    json_builder_set_member_name(b, "cid");
    json_builder_add_int_value(b, s->cid);
    json_builder_set_member_name(b, "parent-cid");
    json_builder_add_int_value(b, s->parent_cid);
    json_builder_set_member_name(b, "create-type");
    json_builder_add_string_value(b, s->create_type);
    json_builder_set_member_name(b, "extents");
    json_builder_begin_array(b);
    for (guint i = 0; i < s->extents->len; i++) {
        VmdkExtent *e = s->extents->pdata[i];
        json_builder_begin_object(b);
        if (e->compressed) {
            json_builder_set_member_name(b, "compressed");
            json_builder_add_boolean_value(b, true);
        }
        json_builder_set_member_name(b, "virtual-size");
        json_builder_add_int_value(b, (gint64)(e->sectors * 512));
        if (e->file) {
            json_builder_set_member_name(b, "filename");
            json_builder_add_string_value(b, e->filename);
        }
        if (e->kind == EXT_SPARSE || e->kind == EXT_COWD || e->sesparse) {
            json_builder_set_member_name(b, "cluster-size");
            json_builder_add_int_value(b, e->sesparse ? 4096 : (gint64)e->grain);
        }
        json_builder_set_member_name(b, "format");
        json_builder_add_string_value(b, e->type_name);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

/* ---- create ---- */

static const QsPropDesc vmdk_create_opts[] = {
    { "adapter_type", QS_PROP_STRING, NULL, "Virtual adapter type, can be one of ide (default), "
      "lsilogic, buslogic or legacyESX" },
    { "backing_file", QS_PROP_STRING, NULL, "File name of a base image" },
    { "backing_fmt", QS_PROP_STRING, NULL, "Must be 'vmdk' if present" },
    { "compat6", QS_PROP_BOOL, NULL, "VMDK version 6 image" },
    { "hwversion", QS_PROP_STRING, NULL, "VMDK hardware version" },
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { "subformat", QS_PROP_STRING, NULL, "VMDK flat extent format, can be one of "
      "{monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | "
      "twoGbMaxExtentFlat | streamOptimized} " },
    { "toolsversion", QS_PROP_STRING, NULL, "VMware guest tools version" },
    { "zeroed_grain", QS_PROP_BOOL, NULL, "Enable efficient zero writes using the "
      "zeroed-grain GTE feature" },
    { NULL },
};

static bool vmdk_create(const char *filename, const QsOpts *o, GError **errp)
{
    uint64_t size = qs_opts_get_uint(o, "size");
    const char *adapter = qs_opts_get_str(o, "adapter_type");
    const char *sub = qs_opts_get_str(o, "subformat");
    const char *hw = qs_opts_get_str(o, "hwversion");
    const char *tools = qs_opts_get_str(o, "toolsversion");
    const char *backing = qs_opts_get_str(o, "backing_file");
    const char *bfmt = qs_opts_get_str(o, "backing_fmt");
    bool compat6 = qs_opts_get_bool(o, "compat6");
    bool zeroed = qs_opts_get_bool(o, "zeroed_grain");
    if (!adapter) adapter = "ide";
    if (strcmp(adapter, "ide") && strcmp(adapter, "lsilogic") && strcmp(adapter, "buslogic") &&
        strcmp(adapter, "legacyESX"))
        return fmt_err(errp, "Unknown adapter type: '%s'", adapter);
    if (!sub) sub = "monolithicSparse";
    bool flat = false, split = false, stream = false;
    if (!strcmp(sub, "monolithicFlat")) flat = true;
    else if (!strcmp(sub, "twoGbMaxExtentSparse")) split = true;
    else if (!strcmp(sub, "twoGbMaxExtentFlat")) flat = split = true;
    else if (!strcmp(sub, "streamOptimized")) stream = true;
    else if (strcmp(sub, "monolithicSparse")) return fmt_err(errp, "Unknown subformat: %s", sub);
    if (compat6 && hw) return fmt_err(errp, "compat6 cannot be enabled with hwversion set");
    if (!hw) hw = compat6 ? "6" : "4";
    if (!tools) tools = "2147483647";
    if (strlen(hw) > 64 || strlen(tools) > 64 || strchr(hw, '"') || strchr(tools, '"') ||
        strchr(hw, '\n') || strchr(tools, '\n'))
        return fmt_err(errp, "vmdk: invalid hwversion or toolsversion");
    if (bfmt && strcmp(bfmt, "vmdk"))
        return fmt_err(errp, "Invalid backing file format: %s. Only vmdk is supported.", bfmt);
    if (size % 512) size = align_up(size, 512);
    uint64_t sectors = size / 512;
    uint32_t parent_cid = 0xffffffffu;
    if (backing) {
        QsBlock tmp = { .filename = (char *)filename };
        g_autofree char *path = qs_block_backing_path(&tmp, backing);
        QsBlock *b = qs_block_open(path, NULL, QS_BLOCK_NO_BACKING, NULL, errp);
        if (!b) return false;
        bool is_vmdk = b->drv == &qs_block_drv_vmdk;
        if (is_vmdk) parent_cid = ((Vmdk *)b->opaque)->cid;
        g_autofree char *dn = g_strdup(b->drv->name);
        qs_block_close(b);
        if (!is_vmdk)
            return fmt_err(errp, "Invalid backing file format: %s. Only vmdk is supported.", dn);
        if (strchr(backing, '"') || strchr(backing, '\n') || strlen(backing) > 4096)
            return fmt_err(errp, "vmdk: backing file name '%.80s' cannot be stored", backing);
    }
    /* extent files and lines */
    g_autofree char *base = g_path_get_basename(filename);
    g_autofree char *dir = g_path_get_dirname(filename);
    char *dot = strrchr(base, '.');
    g_autofree char *stem = dot ? g_strndup(base, dot - base) : g_strdup(base);
    const char *ext = dot ? dot : "";
    g_autoptr(GString) lines = g_string_new("");
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GArray) sizes = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    if (!flat && !split) {
        g_string_append_printf(lines, "RW %" G_GUINT64_FORMAT " SPARSE \"%s\"\n", sectors, base);
    } else {
        uint64_t left = sectors;
        int idx = 1;
        do {
            uint64_t n = split ? MIN(left, SPLIT_SECTORS) : left;
            char *name = split ? g_strdup_printf("%s-%c%03d%s", stem, flat ? 'f' : 's', idx, ext)
                               : g_strdup_printf("%s-flat%s", stem, ext);
            if (flat)
                g_string_append_printf(lines, "RW %" G_GUINT64_FORMAT " FLAT \"%s\" 0\n", n, name);
            else
                g_string_append_printf(lines, "RW %" G_GUINT64_FORMAT " SPARSE \"%s\"\n", n, name);
            g_ptr_array_add(files, name);
            g_array_append_val(sizes, n);
            left -= n;
            idx++;
        } while (left);
    }
    uint32_t heads = strcmp(adapter, "ide") ? 255 : 16;
    g_autofree char *parent_line = backing ? g_strdup_printf("parentFileNameHint=\"%s\"", backing)
                                           : g_strdup("");
    g_autofree char *desc = g_strdup_printf(
        "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=%08x\ncreateType=\"%s\"\n%s\n\n"
        "# Extent description\n%s\n# The Disk Data Base\n#DDB\n\n"
        "ddb.virtualHWVersion = \"%s\"\nddb.geometry.cylinders = \"%" G_GUINT64_FORMAT "\"\n"
        "ddb.geometry.heads = \"%u\"\nddb.geometry.sectors = \"63\"\n"
        "ddb.adapterType = \"%s\"\nddb.toolsVersion = \"%s\"\n",
        g_random_int(), parent_cid, sub, parent_line, lines->str, hw,
        sectors / (heads * 63), heads, adapter, tools);
    if (!flat && !split) return vmdk_sparse_create(filename, sectors, stream, zeroed, desc, errp);
    for (guint i = 0; i < files->len; i++) {
        g_autofree char *path = g_build_filename(dir, files->pdata[i], NULL);
        uint64_t n = g_array_index(sizes, uint64_t, i);
        if (flat) {
            if (!qs_block_create("file", path, n * 512, "", true, errp)) return false;
        } else if (!vmdk_sparse_create(path, n, false, zeroed, NULL, errp)) {
            return false;
        }
    }
    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    int r = qs_block_pwrite(f, 0, strlen(desc), desc, 0);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not write '%s'", filename);
    return true;
}

/* Write descriptor text `out` in place of the image's descriptor (embedded: it must fit
 * in its space; a descriptor file is rewritten whole). */
static bool write_desc(QsBlock *bs, GString *out, GError **errp)
{
    Vmdk *s = bs->opaque;
    if (s->desc_offset && out->len > s->desc_size)
        return fmt_err(errp, "vmdk: the new descriptor does not fit in %" G_GUINT64_FORMAT
                       " bytes", s->desc_size);
    int r;
    if (s->desc_offset) {
        g_autofree char *buf = g_malloc0(s->desc_size);
        if (out->len) memcpy(buf, out->str, out->len);   /* buf: NULL when desc_size is 0 */
        r = qs_block_pwrite(bs->file, s->desc_offset, s->desc_size, buf, 0);
    } else {
        r = qs_block_pwrite(bs->file, 0, out->len, out->str, 0);
        if (r == 0 && bs->file->size > out->len &&
            !qs_block_truncate(bs->file, out->len, true, QS_PREALLOC_OFF, NULL))
            r = -EIO;
    }
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not rewrite the descriptor of '%s'",
                                bs->filename);
    return true;
}

/* The CID of the VMDK image at path, read from its descriptor. */
static bool parent_cid_of(QsBlock *bs, const char *file, uint32_t *cid, GError **errp)
{
    g_autofree char *path = qs_block_backing_path(bs, file);
    QsBlock *p = qs_block_open(path, "vmdk", QS_BLOCK_NO_BACKING, NULL, errp);
    if (!p) return false;
    *cid = ((Vmdk *)p->opaque)->cid;
    qs_block_close(p);
    return true;
}

#define VMDK_RESIZE_CHUNK ((uint64_t)1 << 20)

/* Grow a monolithicSparse image (QEMU 7.2 cannot resize vmdk): header capacity, the
 * descriptor's extent line and geometry; the new space reads as zeros (written as zeros
 * over a parent). */
static int vmdk_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                         GError **errp)
{
    Vmdk *s = bs->opaque;
    VmdkExtent *e = s->extents->len == 1 ? s->extents->pdata[0] : NULL;
    if (!e || e->kind != EXT_SPARSE || e->compressed || e->stream || !s->desc_offset) {
        fmt_err(errp, "vmdk: resizing is supported for monolithicSparse images only ('%s' "
                "is %s)", bs->filename, s->create_type);
        return -ENOTSUP;
    }
    int rc = fmt_check_resize("vmdk", size, prealloc, errp);
    if (rc) return rc;
    if (size < bs->size) {
        fmt_err(errp, "vmdk: shrinking '%s' is not supported", bs->filename);
        return -ENOTSUP;
    }
    int r = update_cid(bs);
    if (r < 0) return r;
    uint64_t old = bs->size, sectors = size / 512;
    g_mutex_lock(&s->lock);
    r = vmdk_sparse_grow(e, sectors);
    g_autoptr(GString) out = g_string_new("");
    g_auto(GStrv) lines = desc_lines(s->desc);
    for (char **l = lines; r == 0 && *l; l++) {
        char *end;
        const char *sp = strchr(*l, ' ');
        if ((g_str_has_prefix(*l, "RW ") || g_str_has_prefix(*l, "RDONLY ")) && sp &&
            g_ascii_strtoull(sp + 1, &end, 10) && end > sp + 1) {
            g_string_append_printf(out, "%.*s %" G_GUINT64_FORMAT "%s", (int)(sp - *l), *l,
                                   sectors, end);
        } else if (g_str_has_prefix(*l, "ddb.geometry.cylinders")) {
            g_autofree char *heads = desc_get(s->desc, "ddb.geometry.heads");
            uint64_t h = heads ? g_ascii_strtoull(heads, NULL, 10) : 16;
            g_string_append_printf(out, "ddb.geometry.cylinders = \"%" G_GUINT64_FORMAT "\"",
                                   sectors / (MAX(h, 1) * 63));
        } else {
            g_string_append(out, *l);
        }
        if (l[1]) g_string_append_c(out, '\n');
    }
    GError *err = NULL;
    if (r == 0 && !write_desc(bs, out, &err)) {
        g_propagate_error(errp, err);
        r = -EIO;
    }
    if (r == 0) {
        g_free(s->desc);
        s->desc = g_string_free(g_steal_pointer(&out), FALSE);
        bs->size = size;
    }
    g_mutex_unlock(&s->lock);
    if (r == 0) {
        /* the rest of the old last grain; all of the new space over a parent */
        if (!bs->backing_file) {
            uint64_t end = MIN(size, align_up(old, e->grain));
            if (end > old) r = vmdk_io(bs, IO_ZERO, old, end - old, NULL);
        } else {
            /* the parent may be longer (and need not be open): zeros as data */
            g_autofree uint8_t *z = g_malloc0(VMDK_RESIZE_CHUNK);
            for (uint64_t o = old; r == 0 && o < size; o += VMDK_RESIZE_CHUNK)
                r = vmdk_io(bs, IO_WRITE, o, (size_t)MIN(size - o, VMDK_RESIZE_CHUNK), z);
        }
    }
    if (r == 0) r = vmdk_flush(bs);
    if (r < 0 && errp && !*errp)
        fmt_errno(errp, r, r == -EFBIG ? "vmdk: the grain directory of '%s' has no room for "
                  "the new size" : "vmdk: could not resize '%s'", bs->filename);
    return r;
}

/* Rewrite the descriptor with another parent (rebase, commit's change of backing): its
 * parentCID becomes the new parent's CID (none: ffffffff; a parent that cannot be opened,
 * with rebase -u: kept). */
static bool vmdk_change_backing(QsBlock *bs, const char *file, const char *fmt, GError **errp)
{
    Vmdk *s = bs->opaque;
    uint32_t pcid = file && *file ? s->parent_cid : 0xffffffffu;
    GError *perr = NULL;
    if (file && *file && !parent_cid_of(bs, file, &pcid, &perr)) g_error_free(perr);
    if (fmt && strcmp(fmt, "vmdk"))
        return fmt_err(errp, "Invalid backing file format: %s. Only vmdk is supported.", fmt);
    if (!s->desc) return fmt_err(errp, "vmdk: '%s' has no descriptor", bs->filename);
    if (file && (strchr(file, '"') || strchr(file, '\n') || strlen(file) > 4096))
        return fmt_err(errp, "vmdk: backing file name '%.80s' cannot be stored", file);
    g_auto(GStrv) lines = desc_lines(s->desc);
    g_autoptr(GString) out = g_string_new("");
    for (char **l = lines; *l; l++) {
        if (g_str_has_prefix(*l, "parentFileNameHint")) continue;
        if (g_str_has_prefix(*l, "parentCID")) {
            g_string_append_printf(out, "parentCID=%08x\n", pcid);
            if (file && *file) g_string_append_printf(out, "parentFileNameHint=\"%s\"\n", file);
            continue;
        }
        g_string_append(out, *l);
        if (l[1]) g_string_append_c(out, '\n');
    }
    if (!write_desc(bs, out, errp)) return false;
    s->parent_cid = pcid;
    g_free(s->desc);
    s->desc = g_string_free(g_steal_pointer(&out), FALSE);
    g_free(bs->backing_file);
    g_free(bs->backing_fmt);
    bs->backing_file = file && *file ? g_strdup(file) : NULL;
    bs->backing_fmt = bs->backing_file ? g_strdup("vmdk") : NULL;
    return true;
}

const QsBlockDriver qs_block_drv_vmdk = {
    .name = "vmdk",
    .desc = "VMware disk: monolithic/split sparse and flat, stream-optimized, VMDK3",
    .instance_size = sizeof(Vmdk),
    .probe = vmdk_probe,
    .create_opts = vmdk_create_opts,
    .create = vmdk_create,
    .open = vmdk_open,
    .close = vmdk_close,
    .pread = vmdk_pread,
    .pwrite = vmdk_pwrite,
    .pwrite_compressed = vmdk_pwrite_compressed,
    .pwrite_zeroes = vmdk_pwrite_zeroes,
    .flush = vmdk_flush,
    .block_status = vmdk_block_status,
    .check = vmdk_check,
    .info_specific = vmdk_info,
    .cluster_size = vmdk_cluster_size,
    .allocated_size = vmdk_allocated_size,
    .truncate = vmdk_truncate,
    .change_backing = vmdk_change_backing,
};
