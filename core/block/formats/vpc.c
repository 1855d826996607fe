/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vpc driver: Virtual PC / Hyper-V VHD images, fixed and dynamic (big-endian footer,
 * dynamic header and BAT), with QEMU's rules for the disk size (CHS or current_size). */
#include <time.h>
#include "formats.h"

#define VHD_FOOTER      512u
#define VHD_DYN_HEADER  1024u
#define VHD_FIXED       2u
#define VHD_DYNAMIC     3u
#define VHD_DIFFERENCING 4u
#define VHD_UNALLOCATED 0xffffffffu
#define VHD_BLOCK_SIZE  (2u << 20)
#define VHD_CHS_MAX_C   65535u
#define VHD_CHS_MAX_H   16u
#define VHD_CHS_MAX_S   255u
#define VHD_MAX_GEOMETRY ((uint64_t)VHD_CHS_MAX_C * VHD_CHS_MAX_H * VHD_CHS_MAX_S)
#define VHD_MAX_SECTORS  0xff000000ull   /* 2040 GiB */
#define VHD_TIMESTAMP_BASE 946684800ll   /* 2000-01-01 00:00:00 UTC */

enum {   /* footer fields */
    F_COOKIE = 0, F_FEATURES = 8, F_VERSION = 12, F_DATA_OFFSET = 16, F_TIMESTAMP = 24,
    F_CREATOR_APP = 28, F_CREATOR_VER = 32, F_CREATOR_OS = 36, F_ORIG_SIZE = 40,
    F_CURRENT_SIZE = 48, F_CYLS = 56, F_HEADS = 58, F_SECS = 59, F_TYPE = 60,
    F_CHECKSUM = 64, F_UUID = 68,
};
enum {   /* dynamic header fields */
    D_COOKIE = 0, D_DATA_OFFSET = 8, D_TABLE_OFFSET = 16, D_VERSION = 24,
    D_MAX_ENTRIES = 28, D_BLOCK_SIZE = 32, D_CHECKSUM = 36,
};

typedef struct Vpc {
    GMutex lock;
    bool inited;
    uint8_t footer[VHD_FOOTER];
    uint32_t type;
    uint64_t footer_off;        /* where the (trailing) footer is */
    uint64_t table_offset, doff;
    uint32_t entries, block_size, bitmap_size;
    bool by_chs;                /* the size is the CHS geometry's (not current_size) */
    uint32_t *bat;              /* host-endian sector numbers */
} Vpc;

static uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t skip)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        if (i >= skip && i < skip + 4) continue;
        sum += buf[i];
    }
    return ~sum;
}

/* The CHS geometry of the VHD specification for a sector count. */
static void vhd_geometry(uint64_t total, uint16_t *cyls, uint8_t *heads, uint8_t *secs)
{
    uint64_t cth, h, s;
    if (total > VHD_MAX_GEOMETRY) total = VHD_MAX_GEOMETRY;
    if (total >= 65535ull * 16 * 63) {
        s = 255;
        h = 16;
        cth = total / s;
    } else {
        s = 17;
        cth = total / s;
        h = (cth + 1023) / 1024;
        if (h < 4) h = 4;
        if (cth >= h * 1024 || h > 16) {
            s = 31;
            h = 16;
            cth = total / s;
        }
        if (cth >= h * 1024) {
            s = 63;
            h = 16;
            cth = total / s;
        }
    }
    *cyls = (uint16_t)MIN(cth / h, 65535u);
    *heads = (uint8_t)h;
    *secs = (uint8_t)s;
}

static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 8 && !memcmp(buf, "conectix", 8) ? 100 : 0;
}

static const QsPropDesc vpc_open_opts[] = {
    { "force_size_calc", QS_PROP_STRING, NULL,
      "Force disk size calculation to use either CHS geometry, or use the disk current_size "
      "specified in the VHD footer. {chs, current_size}" },
    { NULL },
};

static bool vpc_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Vpc *s = bs->opaque;
    const char *fn = bs->filename;
    g_mutex_init(&s->lock);
    s->inited = true;
    uint64_t fsize = bs->file->size;
    const char *force = opts ? qs_opts_get_str(opts, "force_size_calc") : NULL;
    if (force && strcmp(force, "chs") && strcmp(force, "current_size"))
        return fmt_err(errp, "Invalid force_size_calc field: %s", force);
    if (fsize < VHD_FOOTER)
        return fmt_err(errp, "vpc: '%s' is too short for a VHD footer (%" G_GUINT64_FORMAT
                       " bytes)", fn, fsize);
    uint8_t *f = s->footer;
    int r = qs_block_pread(bs->file, 0, VHD_FOOTER, f);
    if (r < 0) return fmt_errno(errp, r, "vpc: could not read the footer of '%s'", fn);
    s->footer_off = fsize - VHD_FOOTER;
    bool at_start = !memcmp(f, "conectix", 8);
    if (!at_start) {
        /* a fixed image has its footer only at the end */
        r = qs_block_pread(bs->file, s->footer_off, VHD_FOOTER, f);
        if (r < 0) return fmt_errno(errp, r, "vpc: could not read the footer of '%s'", fn);
        if (memcmp(f, "conectix", 8))
            return fmt_err(errp, "vpc: '%s' has no VHD footer (cookie \"conectix\" not found "
                           "at the start or the end)", fn);
    }
    uint32_t sum = be32_at(f + F_CHECKSUM);
    if (vhd_checksum(f, VHD_FOOTER, F_CHECKSUM) != sum)
        return fmt_err(errp, "Incorrect header checksum (footer checksum %#x, computed %#x)",
                       sum, vhd_checksum(f, VHD_FOOTER, F_CHECKSUM));
    s->type = be32_at(f + F_TYPE);
    if (s->type == VHD_DIFFERENCING)
        return fmt_err(errp, "vpc: differencing VHD images are not supported ('%s')", fn);
    if (s->type != VHD_FIXED && s->type != VHD_DYNAMIC)
        return fmt_err(errp, "vpc: unsupported disk type %u in '%s'", s->type, fn);
    /* As QEMU: where the footer is says the type.  A fixed image's data starts at byte
     * 0, so its footer is only at the end; a footer at the start is a dynamic image's
     * copy.  (QEMU opens one whose type field says "fixed" as dynamic but then reads
     * and writes it as fixed, from byte 0: its first write destroys that footer.) */
    if (at_start) s->type = VHD_DYNAMIC;
    else if (s->type != VHD_FIXED)
        return fmt_err(errp, "vpc: '%s' has its footer only at the end but is not a fixed "
                       "image (disk type %u): the footer copy at the start is missing", fn,
                       s->type);

    /* size: CHS geometry or current_size, by creator application (QEMU's rules) */
    uint64_t chs = (uint64_t)be16_at(f + F_CYLS) * f[F_HEADS] * f[F_SECS];
    uint64_t cur = be64_at(f + F_CURRENT_SIZE);
    const uint8_t *app = f + F_CREATOR_APP;
    bool use_chs = memcmp(app, "win ", 4) && memcmp(app, "qem2", 4) &&
                   memcmp(app, "d2v ", 4) && memcmp(app, "CTXS", 4) &&
                   memcmp(app, "tap", 4);
    if (force) use_chs = !strcmp(force, "chs");
    uint64_t size = chs * 512;
    s->by_chs = use_chs && chs != VHD_MAX_GEOMETRY;
    if (!s->by_chs) size = cur & ~511ull;
    if (size > (uint64_t)QS_BLOCK_MAX_SIZE)
        return fmt_err(errp, "vpc: disk size %" G_GUINT64_FORMAT " is too large", size);

    if (s->type == VHD_FIXED) {
        if (size > s->footer_off)
            return fmt_err(errp, "vpc: fixed image '%s' is truncated (disk size %"
                           G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT " bytes of data)", fn,
                           size, s->footer_off);
        bs->size = size;
        return true;
    }

    uint64_t doff = be64_at(f + F_DATA_OFFSET);
    if (doff < VHD_FOOTER || doff > fsize || fsize - doff < VHD_DYN_HEADER)
        return fmt_err(errp, "vpc: dynamic header offset %#" G_GINT64_MODIFIER "x is outside "
                       "the file (%" G_GUINT64_FORMAT " bytes)", doff, fsize);
    s->doff = doff;
    uint8_t d[VHD_DYN_HEADER];
    r = qs_block_pread(bs->file, doff, sizeof(d), d);
    if (r < 0) return fmt_errno(errp, r, "vpc: could not read the dynamic header of '%s'", fn);
    if (memcmp(d, "cxsparse", 8))
        return fmt_err(errp, "vpc: bad dynamic header cookie at %#" G_GINT64_MODIFIER "x",
                       doff);
    s->block_size = be32_at(d + D_BLOCK_SIZE);
    if (!is_pow2(s->block_size) || s->block_size < 512 || s->block_size > (256u << 20))
        return fmt_err(errp, "Invalid block size %u", s->block_size);
    s->entries = be32_at(d + D_MAX_ENTRIES);
    s->table_offset = be64_at(d + D_TABLE_OFFSET);
    if ((uint64_t)s->entries * s->block_size < size)
        return fmt_err(errp, "Page table too small (max_table_entries %u of %u bytes for a "
                       "%" G_GUINT64_FORMAT "-byte disk)", s->entries, s->block_size, size);
    uint64_t bat_bytes = (uint64_t)s->entries * 4;
    if (s->table_offset < VHD_FOOTER || s->table_offset > fsize ||
        bat_bytes > fsize - s->table_offset)
        return fmt_err(errp, "vpc: block table of %u entries at %#" G_GINT64_MODIFIER "x is "
                       "outside the file (%" G_GUINT64_FORMAT " bytes)", s->entries,
                       s->table_offset, fsize);
    if (s->table_offset < doff + VHD_DYN_HEADER && doff < s->table_offset + bat_bytes)
        return fmt_err(errp, "vpc: block table at %#" G_GINT64_MODIFIER "x overlaps the "
                       "dynamic header at %#" G_GINT64_MODIFIER "x", s->table_offset, doff);
    s->bitmap_size = (uint32_t)align_up(s->block_size / 512 / 8, 512);
    s->bat = g_try_malloc(MAX(bat_bytes, 4));
    if (!s->bat) return fmt_err(errp, "vpc: cannot allocate %u table entries", s->entries);
    if (bat_bytes) {
        r = qs_block_pread(bs->file, s->table_offset, bat_bytes, s->bat);
        if (r < 0) return fmt_errno(errp, r, "vpc: could not read the block table of '%s'", fn);
    }
    uint64_t meta_end = MAX(doff + VHD_DYN_HEADER, s->table_offset + bat_bytes);
    for (uint32_t i = 0; i < s->entries; i++) {
        uint32_t e = GUINT32_FROM_BE(s->bat[i]);
        s->bat[i] = e;
        if (e == VHD_UNALLOCATED) continue;
        uint64_t start = (uint64_t)e * 512;
        if (start < meta_end)
            return fmt_err(errp, "vpc: block table entry %u (sector %u) overlaps the image "
                           "metadata", i, e);
        if (start + s->bitmap_size + s->block_size > s->footer_off)
            return fmt_err(errp, "vpc: block table entry %u (sector %u) points beyond the end "
                           "of the file", i, e);
    }
    /* New blocks go where the trailing footer is, never over the metadata: a file
     * that ends inside its block table has no trailing footer (QEMU too allocates
     * after the table and the last block) */
    s->footer_off = MAX(s->footer_off, align_up(meta_end, 512));
    bs->size = size;
    return true;
}

static void vpc_close(QsBlock *bs)
{
    Vpc *s = bs->opaque;
    if (!s->inited) return;
    g_free(s->bat);
    g_mutex_clear(&s->lock);
}

static uint64_t data_host(Vpc *s, uint32_t e)
{
    return (uint64_t)e * 512 + s->bitmap_size;
}

/* Host offset of guest block idx of a dynamic image, or FMT_UNALLOCATED. */
static uint64_t vpc_lookup(QsBlock *bs, uint32_t idx)
{
    Vpc *s = bs->opaque;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bat[idx];
    g_mutex_unlock(&s->lock);
    return e != VHD_UNALLOCATED ? data_host(s, e) : FMT_UNALLOCATED;
}

static int vpc_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Vpc *s = bs->opaque;
    if (s->type == VHD_FIXED) return qs_block_pread(bs->file, off, len, buf);
    return fmt_table_pread(bs, s->block_size, vpc_lookup, off, len, buf);
}

/* Under the lock: a new block at the footer's place, then the footer after it. */
static int allocate(QsBlock *bs, uint32_t idx, uint64_t in, size_t n, const void *buf)
{
    Vpc *s = bs->opaque;
    uint64_t start = s->footer_off;
    if (start % 512 || start / 512 >= VHD_UNALLOCATED) return -ENOSPC;
    uint64_t data = start + s->bitmap_size;
    /* blocks under 4 KiB have no bitmap at all (QEMU's rounding, which we keep) */
    g_autofree uint8_t *bm = s->bitmap_size ? g_malloc(s->bitmap_size) : NULL;
    int r = 0;
    if (bm) {
        memset(bm, 0xff, s->bitmap_size);
        r = qs_block_pwrite(bs->file, start, s->bitmap_size, bm, 0);
    }
    if (!r && in) r = fmt_write_zeros(bs->file, data, in);
    if (!r) r = qs_block_pwrite(bs->file, data + in, n, buf, 0);
    if (!r && in + n < s->block_size)
        r = fmt_write_zeros(bs->file, data + in + n, s->block_size - in - n);
    uint64_t new_footer = data + s->block_size;
    if (!r) r = qs_block_pwrite(bs->file, new_footer, VHD_FOOTER, s->footer, 0);
    if (r < 0) return r;
    uint8_t be[4];
    put_be32(be, (uint32_t)(start / 512));
    r = qs_block_pwrite(bs->file, s->table_offset + (uint64_t)idx * 4, 4, be, 0);
    if (r < 0) return r;
    s->bat[idx] = (uint32_t)(start / 512);
    s->footer_off = new_footer;
    return 0;
}

static int vpc_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    Vpc *s = bs->opaque;
    if (s->type == VHD_FIXED) return qs_block_pwrite(bs->file, off, len, buf, flags);
    const uint8_t *p = buf;
    while (len) {
        uint32_t idx = (uint32_t)(off / s->block_size);
        uint64_t in = off % s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, s->block_size - in);
        g_mutex_lock(&s->lock);
        uint32_t e = s->bat[idx];
        int r = 0;
        if (e == VHD_UNALLOCATED) r = allocate(bs, idx, in, n, p);
        g_mutex_unlock(&s->lock);
        if (e != VHD_UNALLOCATED) r = qs_block_pwrite(bs->file, data_host(s, e) + in, n, p, 0);
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vpc_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Vpc *s = bs->opaque;
    if (s->type == VHD_FIXED) return fmt_write_zeros(bs->file, off, len);
    return fmt_table_zero(bs, s->block_size, vpc_lookup, off, len);
}

static int vpc_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, QsBlock **file)
{
    Vpc *s = bs->opaque;
    if (s->type == VHD_FIXED) {
        /* data at the same offset; holes of the file also read as zeros */
        *pnum = len;
        *map = off;
        *file = bs->file;
        return fmt_status_in_file(bs->file, off, pnum,
                                  QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED);
    }
    uint32_t idx = (uint32_t)(off / s->block_size);
    uint64_t in = off % s->block_size;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bat[idx];
    uint64_t n = s->block_size - in;
    for (uint32_t i = idx + 1; n < len && i < s->entries; i++) {
        uint32_t f = s->bat[i];
        if ((e == VHD_UNALLOCATED) != (f == VHD_UNALLOCATED)) break;
        n += s->block_size;
    }
    g_mutex_unlock(&s->lock);
    if (e == VHD_UNALLOCATED) {
        *pnum = MIN(n, len);
        return QS_BS_ZERO | QS_BS_ALLOCATED;
    }
    *pnum = MIN(s->block_size - in, len);   /* blocks are not contiguous on the host */
    *map = data_host(s, e) + in;
    *file = bs->file;
    return QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
}

static bool vpc_geometry_for(uint64_t size, bool force, uint64_t *total_sectors,
                             uint16_t *c, uint8_t *h, uint8_t *sp, GError **errp);

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Under the lock: write BAT entries [from, to) and the dynamic header's entry count. */
static int write_bat(QsBlock *bs, uint32_t from, uint32_t to)
{
    Vpc *s = bs->opaque;
    uint32_t buf[1024];
    for (uint64_t i = from; i < to;) {
        size_t n = (size_t)MIN(to - i, (uint64_t)G_N_ELEMENTS(buf));
        for (size_t j = 0; j < n; j++) buf[j] = GUINT32_TO_BE(s->bat[i + j]);
        int r = qs_block_pwrite(bs->file, s->table_offset + i * 4, n * 4, buf, 0);
        if (r < 0) return r;
        i += n;
    }
    uint8_t d[VHD_DYN_HEADER];
    int r = qs_block_pread(bs->file, s->doff, sizeof(d), d);
    if (r < 0) return r;
    put_be32(d + D_MAX_ENTRIES, s->entries);
    put_be32(d + D_CHECKSUM, vhd_checksum(d, sizeof(d), D_CHECKSUM));
    return qs_block_pwrite(bs->file, s->doff, sizeof(d), d, 0);
}

/* Under the lock: a dynamic image gets `ne` table entries.  Growing past the table's
 * room moves the blocks in the way to the end; shrinking drops the blocks past the end
 * and moves the last kept ones into the holes, so the file ends after the last block. */
static int resize_dynamic(QsBlock *bs, uint32_t ne, uint64_t nsize)
{
    Vpc *s = bs->opaque;
    uint64_t stride = (uint64_t)s->bitmap_size + s->block_size;
    uint32_t old = s->entries;
    int r = 0;
    if (ne > old) {
        uint64_t bat_end = align_up(s->table_offset + (uint64_t)ne * 4, 512);
        if (s->doff > s->table_offset && s->doff < bat_end) return -ENOTSUP;
        for (uint32_t i = 0; i < old && r == 0; i++) {
            uint64_t start = (uint64_t)s->bat[i] * 512;
            if (s->bat[i] == VHD_UNALLOCATED || start >= bat_end) continue;
            uint64_t to = MAX(s->footer_off, bat_end);
            if (to / 512 >= VHD_UNALLOCATED) return -EFBIG;
            r = fmt_file_copy(bs->file, start, to, stride);
            s->bat[i] = (uint32_t)(to / 512);
            s->footer_off = to + stride;
        }
        s->footer_off = MAX(s->footer_off, bat_end);
        uint32_t *m = r == 0 ? g_try_renew(uint32_t, s->bat, ne) : s->bat;
        if (!m) return -ENOMEM;
        s->bat = m;
        for (uint32_t i = old; i < ne; i++) s->bat[i] = VHD_UNALLOCATED;
        s->entries = ne;
        return r ? r : write_bat(bs, 0, ne);
    }
    uint64_t meta_end = MAX(s->doff + VHD_DYN_HEADER,
                            align_up(s->table_offset + (uint64_t)old * 4, 512));
    g_autofree uint32_t *freed = g_new(uint32_t, MAX(old, 1u));
    /* kept entries as (sector << 32 | index), sorted: by host position */
    g_autofree uint64_t *kept = g_new(uint64_t, MAX(old, 1u));
    uint32_t nf = 0, nk = 0;
    for (uint32_t i = 0; i < old; i++) {
        if (s->bat[i] == VHD_UNALLOCATED) continue;
        if (i >= ne) freed[nf++] = s->bat[i];
        else kept[nk++] = (uint64_t)s->bat[i] << 32 | i;
        if (i >= ne) s->bat[i] = VHD_UNALLOCATED;
    }
    qsort(freed, nf, 4, cmp_u32);
    qsort(kept, nk, 8, cmp_u64);
    /* a hole is a block no kept entry uses, counted once (a hostile table may share) */
    uint32_t nh = 0;
    for (uint32_t f = 0, k = 0; f < nf; f++) {
        while (k < nk && kept[k] >> 32 < freed[f]) k++;
        if ((k < nk && kept[k] >> 32 == freed[f]) || (nh && freed[nh - 1] == freed[f]))
            continue;
        freed[nh++] = freed[f];
    }
    nf = nh;
    /* the last kept blocks move into the first holes */
    for (uint32_t f = 0; f < nf && nk && r == 0; f++, nk--) {
        uint32_t i = (uint32_t)kept[nk - 1];
        if (s->bat[i] < freed[f]) break;
        r = fmt_file_copy(bs->file, (uint64_t)s->bat[i] * 512, (uint64_t)freed[f] * 512,
                          stride);
        s->bat[i] = freed[f];
    }
    uint64_t end = meta_end;
    for (uint32_t i = 0; i < ne; i++)
        if (s->bat[i] != VHD_UNALLOCATED) end = MAX(end, (uint64_t)s->bat[i] * 512 + stride);
    uint64_t in = nsize % s->block_size;
    if (r == 0 && ne && in && s->bat[ne - 1] != VHD_UNALLOCATED)
        r = fmt_write_zeros(bs->file, data_host(s, s->bat[ne - 1]) + in, s->block_size - in);
    s->entries = ne;
    s->footer_off = end;
    return r ? r : write_bat(bs, 0, ne);
}

static int vpc_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                        GError **errp)
{
    Vpc *s = bs->opaque;
    int rc = fmt_check_resize("vpc", size, prealloc, errp);
    if (rc) return rc;
    uint8_t *f = s->footer;
    uint64_t total;
    uint16_t c;
    uint8_t h, sp;
    if (s->by_chs) {
        /* as qemu-img create: the smallest geometry that holds the size */
        if (!vpc_geometry_for(size, false, &total, &c, &h, &sp, errp)) return -EFBIG;
    } else {
        total = size / 512;
        if (total > VHD_MAX_SECTORS) {
            fmt_err(errp, "Disk size is too large, max size is 2040 GiB");
            return -EFBIG;
        }
        if ((uint64_t)be16_at(f + F_CYLS) * f[F_HEADS] * f[F_SECS] == VHD_MAX_GEOMETRY) {
            c = VHD_CHS_MAX_C; h = VHD_CHS_MAX_H; sp = VHD_CHS_MAX_S;
        } else {
            vhd_geometry(total, &c, &h, &sp);
        }
    }
    uint64_t nsize = total * 512;
    int r = 0;
    g_mutex_lock(&s->lock);
    uint64_t old_footer = s->footer_off;
    if (s->type == VHD_FIXED) {
        /* the data ends where the footer begins */
        if (nsize > old_footer) r = fmt_write_zeros(bs->file, old_footer, nsize - old_footer);
        s->footer_off = nsize;
    } else {
        uint64_t ne = div_up(nsize, s->block_size);
        if (ne >= VHD_UNALLOCATED) r = -EFBIG;
        else r = resize_dynamic(bs, (uint32_t)ne, nsize);
    }
    if (r == 0) {
        put_be64(f + F_CURRENT_SIZE, nsize);
        put_be16(f + F_CYLS, c);
        f[F_HEADS] = h;
        f[F_SECS] = sp;
        put_be32(f + F_CHECKSUM, vhd_checksum(f, VHD_FOOTER, F_CHECKSUM));
        if (s->type == VHD_DYNAMIC) r = qs_block_pwrite(bs->file, 0, VHD_FOOTER, f, 0);
        if (r == 0) r = qs_block_pwrite(bs->file, s->footer_off, VHD_FOOTER, f, 0);
    }
    if (r == 0 && bs->file->size > s->footer_off + VHD_FOOTER) {
        GError *e = NULL;
        if (!qs_block_truncate(bs->file, s->footer_off + VHD_FOOTER, true, QS_PREALLOC_OFF,
                               &e)) {
            g_mutex_unlock(&s->lock);
            g_propagate_error(errp, e);
            return -EIO;
        }
    }
    if (r == 0) r = qs_block_flush(bs->file);
    if (r == 0) bs->size = nsize;
    g_mutex_unlock(&s->lock);
    if (r == -ENOTSUP)
        fmt_err(errp, "vpc: cannot grow '%s': its dynamic header (at %#" G_GINT64_MODIFIER
                "x) lies where the block table would grow", bs->filename, s->doff);
    else if (r < 0)
        fmt_errno(errp, r, "vpc: could not resize '%s'", bs->filename);
    return r;
}

static uint32_t vpc_cluster_size(QsBlock *bs)
{
    Vpc *s = bs->opaque;
    return s->type == VHD_DYNAMIC ? s->block_size : 0;
}

static const QsPropDesc vpc_create_opts[] = {
    { "force_size", QS_PROP_BOOL, NULL, "Force disk size calculation to use the actual size "
      "specified, rather than using the nearest CHS-based calculation" },
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { "subformat", QS_PROP_STRING, NULL, "Type of virtual hard disk format. Supported "
      "formats are {dynamic (default) | fixed} " },
    { NULL },
};

/* The virtual size a VHD of `size` requested bytes gets, and its geometry. */
static bool vpc_geometry_for(uint64_t size, bool force, uint64_t *total_sectors,
                             uint16_t *c, uint8_t *h, uint8_t *sp, GError **errp)
{
    uint64_t total = size / 512;
    if (force) {
        *c = VHD_CHS_MAX_C;
        *h = VHD_CHS_MAX_H;
        *sp = VHD_CHS_MAX_S;
    } else {
        /* round up: the smallest geometry that holds the requested size */
        total = MIN(VHD_MAX_GEOMETRY, total);
        *c = 0; *h = 0; *sp = 0;
        for (uint64_t i = 0; total > (uint64_t)*c * *h * *sp; i++)
            vhd_geometry(total + i, c, h, sp);
    }
    if ((uint64_t)*c * *h * *sp == VHD_MAX_GEOMETRY) {
        total = size / 512;
        if (total > VHD_MAX_SECTORS)
            return fmt_err(errp, "Disk size is too large, max size is 2040 GiB");
    } else {
        total = (uint64_t)*c * *h * *sp;
    }
    *total_sectors = total;
    return true;
}

static void make_footer(uint8_t *f, uint64_t total, uint16_t c, uint8_t h, uint8_t sp,
                        bool fixed, bool force)
{
    memset(f, 0, VHD_FOOTER);
    memcpy(f + F_COOKIE, "conectix", 8);
    put_be32(f + F_FEATURES, 2);
    put_be32(f + F_VERSION, 0x00010000);
    put_be64(f + F_DATA_OFFSET, fixed ? UINT64_MAX : VHD_FOOTER);
    put_be32(f + F_TIMESTAMP, (uint32_t)(time(NULL) - VHD_TIMESTAMP_BASE));
    memcpy(f + F_CREATOR_APP, force ? "qem2" : "qemu", 4);
    put_be32(f + F_CREATOR_VER, 0x00050003);
    memcpy(f + F_CREATOR_OS, "Wi2k", 4);
    put_be64(f + F_ORIG_SIZE, total * 512);
    put_be64(f + F_CURRENT_SIZE, total * 512);
    put_be16(f + F_CYLS, c);
    f[F_HEADS] = h;
    f[F_SECS] = sp;
    put_be32(f + F_TYPE, fixed ? VHD_FIXED : VHD_DYNAMIC);
    fmt_uuid_random(f + F_UUID);
    put_be32(f + F_CHECKSUM, vhd_checksum(f, VHD_FOOTER, F_CHECKSUM));
}

static bool vpc_create(const char *filename, const QsOpts *o, GError **errp)
{
    uint64_t size = align_up(qs_opts_get_uint(o, "size"), 512);
    bool force = qs_opts_get_bool(o, "force_size");
    const char *sub = qs_opts_get_str(o, "subformat");
    bool fixed = false;
    if (sub && !strcmp(sub, "fixed")) fixed = true;
    else if (sub && strcmp(sub, "dynamic"))
        return fmt_err(errp, "Invalid subformat '%s'", sub);
    uint64_t total;
    uint16_t c;
    uint8_t h, sp;
    if (!vpc_geometry_for(size, force, &total, &c, &h, &sp, errp)) return false;
    uint8_t footer[VHD_FOOTER];
    make_footer(footer, total, c, h, sp, fixed, force);
    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    int r;
    if (fixed) {
        r = fmt_write_zeros(f, 0, total * 512);
        if (!r) r = qs_block_pwrite(f, total * 512, VHD_FOOTER, footer, 0);
    } else {
        uint32_t entries = (uint32_t)div_up(total * 512, VHD_BLOCK_SIZE);
        uint64_t bat_bytes = align_up((uint64_t)entries * 4, 512);
        uint8_t d[VHD_DYN_HEADER] = { 0 };
        memcpy(d + D_COOKIE, "cxsparse", 8);
        put_be64(d + D_DATA_OFFSET, UINT64_MAX);
        put_be64(d + D_TABLE_OFFSET, VHD_FOOTER + VHD_DYN_HEADER);
        put_be32(d + D_VERSION, 0x00010000);
        put_be32(d + D_MAX_ENTRIES, entries);
        put_be32(d + D_BLOCK_SIZE, VHD_BLOCK_SIZE);
        put_be32(d + D_CHECKSUM, vhd_checksum(d, sizeof(d), D_CHECKSUM));
        r = qs_block_pwrite(f, 0, VHD_FOOTER, footer, 0);
        if (!r) r = qs_block_pwrite(f, VHD_FOOTER, sizeof(d), d, 0);
        g_autofree uint8_t *bat = g_malloc(MIN(bat_bytes, (uint64_t)1 << 20));
        memset(bat, 0xff, MIN(bat_bytes, (uint64_t)1 << 20));
        for (uint64_t o2 = 0; !r && o2 < bat_bytes; o2 += 1 << 20)
            r = qs_block_pwrite(f, VHD_FOOTER + VHD_DYN_HEADER + o2,
                                MIN(bat_bytes - o2, (uint64_t)1 << 20), bat, 0);
        if (!r) r = qs_block_pwrite(f, VHD_FOOTER + VHD_DYN_HEADER + bat_bytes, VHD_FOOTER,
                                    footer, 0);
    }
    if (!r) r = qs_block_flush(f);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "vpc: could not write '%s'", filename);
    return true;
}

static bool vpc_measure(const QsOpts *o, QsBlock *in, uint64_t size, uint64_t *required,
                        uint64_t *fully, GError **errp)
{
    uint64_t total;
    uint16_t c;
    uint8_t h, sp;
    bool force = o && qs_opts_get_bool(o, "force_size");
    const char *sub = o ? qs_opts_get_str(o, "subformat") : NULL;
    if (!vpc_geometry_for(align_up(in ? in->size : size, 512), force, &total, &c, &h, &sp, errp))
        return false;
    uint64_t vsize = total * 512;
    if (sub && !strcmp(sub, "fixed")) {
        *required = *fully = vsize + VHD_FOOTER;
        return true;
    }
    uint64_t bsz = VHD_BLOCK_SIZE, blocks = div_up(vsize, bsz), used = 0;
    uint64_t meta = 2 * VHD_FOOTER + VHD_DYN_HEADER + align_up(blocks * 4, 512);
    uint64_t isize = in ? in->size : 0;
    for (uint64_t b = 0; in && b < blocks && b * bsz < isize; b++) {
        uint64_t end = MIN((b + 1) * bsz, isize);
        for (uint64_t off = b * bsz; off < end;) {
            uint64_t n;
            int r = qs_block_status_above(in, NULL, off, end - off, &n, NULL, NULL, NULL);
            if (r < 0) return fmt_errno(errp, r, "Could not get block status of '%s'",
                                        in->filename);
            if ((r & QS_BS_DATA) && !(r & QS_BS_ZERO)) { used++; break; }
            off += n;
        }
    }
    *fully = meta + blocks * (bsz + 512);
    *required = meta + used * (bsz + 512);
    return true;
}

const QsBlockDriver qs_block_drv_vpc = {
    .name = "vpc",
    .desc = "Virtual PC / Hyper-V VHD image, fixed or dynamic",
    .instance_size = sizeof(Vpc),
    .probe = vpc_probe,
    .create_opts = vpc_create_opts,
    .create = vpc_create,
    .open_opts = vpc_open_opts,
    .open = vpc_open,
    .close = vpc_close,
    .pread = vpc_pread,
    .pwrite = vpc_pwrite,
    .pwrite_zeroes = vpc_pwrite_zeroes,
    .block_status = vpc_block_status,
    .truncate = vpc_truncate,
    .cluster_size = vpc_cluster_size,
    .measure = vpc_measure,
};
