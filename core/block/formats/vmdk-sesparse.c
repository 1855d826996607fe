/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vmdk seSparse extents (VMware ESXi snapshots), read-only: header checks, the 64-bit
 * grain directory and tables, and reads that fall through to the parent disk. */
#include <errno.h>
#include <string.h>
#include "vmdk-sesparse.h"

/* Layout (little endian, sizes and offsets in 512-byte sectors), as QEMU reads it: a
 * 512-byte constant header, a volatile header, then regions for the journal, the grain
 * directory (GD), the grain tables (GT: 4096 entries of 8 bytes, 16 MiB of disk each) and
 * the 4 KiB grains. */
#define SES_CONST_MAGIC    UINT64_C(0x00000000cafebabe)
#define SES_VOLATILE_MAGIC UINT64_C(0x00000000cafecafe)
#define SES_VERSION        UINT64_C(0x0000000200000001)
#define SES_GRAIN_SECTORS  8u
#define SES_GT_SECTORS     64u
#define SES_GT_ENTRIES     (SES_GT_SECTORS * 512 / 8)
#define SES_GRAIN          (SES_GRAIN_SECTORS * 512u)
#define SES_GT_SPAN        ((uint64_t)SES_GT_ENTRIES * SES_GRAIN)   /* 16 MiB */

enum {   /* constant header fields (byte offsets) */
    H_MAGIC = 0, H_VERSION = 8, H_CAPACITY = 16, H_GRAIN = 24, H_GT_SIZE = 32, H_FLAGS = 40,
    H_RESERVED = 48, H_VOLATILE = 80, H_JOURNAL_HDR = 96, H_JOURNAL = 112, H_GD = 128,
    H_GT = 144, H_FREE_BITMAP = 160, H_BACKMAP = 176, H_GRAINS = 192, H_PAD = 208,
};
enum { V_MAGIC = 0, V_REPLAY = 24, V_PAD = 32 };   /* volatile header */

/* grain table entry: the top nibble is the type */
#define GTE_TYPE(e)      ((e) >> 60)
enum { GTE_UNALLOCATED = 0, GTE_UNMAPPED = 1, GTE_ZERO = 2, GTE_ALLOCATED = 3 };

typedef struct SeSparse {
    GMutex lock;
    bool inited;
    QsBlock *disk;              /* the vmdk: its backing supplies unallocated grains */
    uint64_t start;             /* byte offset of the extent in the disk */
    uint64_t gd_entries;
    uint64_t *gd;               /* host-endian */
    uint64_t gt_offset, gt_count;     /* grain tables region: bytes, tables */
    uint64_t grains_offset, grains;   /* grains region: bytes, grains that fit */
    GHashTable *gts;            /* GT index -> uint64_t[SES_GT_ENTRIES], host-endian */
} SeSparse;

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* A region (offset, size in sectors) of the header: inside the file, after the header. */
static bool region(QsBlock *bs, const uint8_t *h, unsigned at, const char *name,
                   uint64_t min_sectors, uint64_t *off, uint64_t *sectors, GError **errp)
{
    uint64_t o = le64_at(h + at), n = le64_at(h + at + 8);
    uint64_t file_sectors = bs->file->size / 512;
    if (o < 1 || o > file_sectors || n > file_sectors - o || n < min_sectors)
        return fmt_err(errp, "vmdk: seSparse extent '%s': %s region (offset %" G_GUINT64_FORMAT
                       ", %" G_GUINT64_FORMAT " sectors) is not inside the file of %"
                       G_GUINT64_FORMAT " sectors after the header", bs->filename, name, o, n,
                       file_sectors);
    *off = o * 512;
    *sectors = n;
    return true;
}

static bool read_headers(QsBlock *bs, uint64_t sectors, GError **errp)
{
    SeSparse *s = bs->opaque;
    uint8_t h[512], v[512];
    if (bs->file->size < 512)
        return fmt_err(errp, "vmdk: seSparse extent '%s' is too short for its header (%"
                       G_GUINT64_FORMAT " bytes)", bs->filename, bs->file->size);
    int r = qs_block_pread(bs->file, 0, sizeof(h), h);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read seSparse extent '%s'",
                                bs->filename);
    const char *f = bs->filename;
    if (le64_at(h + H_MAGIC) != SES_CONST_MAGIC)
        return fmt_err(errp, "vmdk: seSparse extent '%s': bad constant header magic %#"
                       G_GINT64_MODIFIER "x", f, le64_at(h + H_MAGIC));
    if (le64_at(h + H_VERSION) != SES_VERSION)
        return fmt_err(errp, "vmdk: seSparse extent '%s': unsupported version %#"
                       G_GINT64_MODIFIER "x", f, le64_at(h + H_VERSION));
    if (le64_at(h + H_GRAIN) != SES_GRAIN_SECTORS)
        return fmt_err(errp, "vmdk: seSparse extent '%s': unsupported grain size %"
                       G_GUINT64_FORMAT " sectors (only %u)", f, le64_at(h + H_GRAIN),
                       SES_GRAIN_SECTORS);
    if (le64_at(h + H_GT_SIZE) != SES_GT_SECTORS)
        return fmt_err(errp, "vmdk: seSparse extent '%s': unsupported grain table size %"
                       G_GUINT64_FORMAT " sectors (only %u)", f, le64_at(h + H_GT_SIZE),
                       SES_GT_SECTORS);
    if (le64_at(h + H_FLAGS))
        return fmt_err(errp, "vmdk: seSparse extent '%s': unsupported flags %#"
                       G_GINT64_MODIFIER "x", f, le64_at(h + H_FLAGS));
    if (!all_zero(h + H_RESERVED, 32))
        return fmt_err(errp, "vmdk: seSparse extent '%s': reserved header fields are not "
                       "zero", f);
    if (!all_zero(h + H_PAD, sizeof(h) - H_PAD))
        return fmt_err(errp, "vmdk: seSparse extent '%s': header padding is not zero", f);
    uint64_t cap = le64_at(h + H_CAPACITY);
    if (cap != sectors)
        return fmt_err(errp, "vmdk: seSparse extent '%s' has a capacity of %" G_GUINT64_FORMAT
                       " sectors, the descriptor says %" G_GUINT64_FORMAT, f, cap, sectors);

    uint64_t voff, vsec, gdoff, gdsec, gtsec, goff, gsec;
    if (!region(bs, h, H_VOLATILE, "volatile header", 1, &voff, &vsec, errp) ||
        !region(bs, h, H_GD, "grain directory", 1, &gdoff, &gdsec, errp) ||
        !region(bs, h, H_GT, "grain tables", 0, &s->gt_offset, &gtsec, errp))
        return false;
    /* the grains may reach past the end of the file: each grain is checked when used */
    goff = le64_at(h + H_GRAINS);
    gsec = le64_at(h + H_GRAINS + 8);
    if (goff < 1 || goff > bs->file->size / 512)
        return fmt_err(errp, "vmdk: seSparse extent '%s': grains region offset %"
                       G_GUINT64_FORMAT " is not inside the file of %" G_GUINT64_FORMAT
                       " sectors after the header", f, goff, bs->file->size / 512);
    s->grains_offset = goff * 512;
    s->grains = MIN(gsec, (bs->file->size / 512 - goff)) / SES_GRAIN_SECTORS;
    s->gt_count = gtsec / SES_GT_SECTORS;

    r = qs_block_pread(bs->file, voff, sizeof(v), v);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read the volatile header of '%s'",
                                f);
    if (le64_at(v + V_MAGIC) != SES_VOLATILE_MAGIC)
        return fmt_err(errp, "vmdk: seSparse extent '%s': bad volatile header magic %#"
                       G_GINT64_MODIFIER "x", f, le64_at(v + V_MAGIC));
    if (le64_at(v + V_REPLAY))
        return fmt_err(errp, "vmdk: seSparse extent '%s' is dirty (replay_journal %"
                       G_GUINT64_FORMAT "): replaying its journal is not supported", f,
                       le64_at(v + V_REPLAY));
    if (!all_zero(v + V_PAD, sizeof(v) - V_PAD))
        return fmt_err(errp, "vmdk: seSparse extent '%s': volatile header padding is not "
                       "zero", f);

    /* grain directory: one entry per 16 MiB of the extent; its size is bounded by the
     * file, so is the allocation */
    uint64_t need = (cap * 512 + SES_GT_SPAN - 1) / SES_GT_SPAN;
    s->gd_entries = gdsec * 512 / 8;
    if (s->gd_entries < need)
        return fmt_err(errp, "vmdk: seSparse extent '%s': grain directory of %"
                       G_GUINT64_FORMAT " entries is too small for %" G_GUINT64_FORMAT
                       " sectors (%" G_GUINT64_FORMAT " needed)", f, s->gd_entries, cap,
                       need);
    s->gd_entries = need;
    s->gd = g_try_new(uint64_t, MAX(need, 1));
    if (!s->gd) return fmt_err(errp, "vmdk: seSparse extent '%s': cannot allocate a grain "
                               "directory of %" G_GUINT64_FORMAT " entries", f, need);
    r = need ? qs_block_pread(bs->file, gdoff, need * 8, s->gd) : 0;
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read the grain directory of '%s'",
                                f);
    for (uint64_t i = 0; i < need; i++) {
        uint64_t e = s->gd[i] = GUINT64_FROM_LE(s->gd[i]);
        if (!e) continue;
        /* allocated: 0x10000000 in the high half, the table's index in the low half */
        if ((e >> 32) != 0x10000000u || (e & 0xffffffffu) >= s->gt_count)
            return fmt_err(errp, "vmdk: seSparse extent '%s': grain directory entry %"
                           G_GUINT64_FORMAT " is invalid (%#" G_GINT64_MODIFIER "x, %"
                           G_GUINT64_FORMAT " grain tables)", f, i, e, s->gt_count);
    }
    return true;
}

/* Lock held.  The grain table of directory entry i (NULL with *r = 0: none). */
static const uint64_t *grain_table(QsBlock *bs, uint64_t i, int *r)
{
    SeSparse *s = bs->opaque;
    *r = 0;
    if (!s->gd[i]) return NULL;
    uint32_t idx = (uint32_t)(s->gd[i] & 0xffffffffu);
    uint64_t *t = g_hash_table_lookup(s->gts, GUINT_TO_POINTER(idx + 1));
    if (t) return t;
    t = g_new(uint64_t, SES_GT_ENTRIES);
    *r = qs_block_pread(bs->file, s->gt_offset + (uint64_t)idx * SES_GT_SECTORS * 512,
                        SES_GT_ENTRIES * 8, t);
    if (*r < 0) {
        g_free(t);
        return NULL;
    }
    for (unsigned k = 0; k < SES_GT_ENTRIES; k++) t[k] = GUINT64_FROM_LE(t[k]);
    g_hash_table_insert(s->gts, GUINT_TO_POINTER(idx + 1), t);
    return t;
}

/* Lock held.  The grain holding extent byte off: its type and, when allocated, its byte
 * offset in the file; -EIO for an entry that is invalid or points outside the grains. */
static int lookup(QsBlock *bs, uint64_t off, uint64_t *host)
{
    SeSparse *s = bs->opaque;
    int r;
    const uint64_t *t = grain_table(bs, off / SES_GT_SPAN, &r);
    if (r < 0) return r;
    if (!t) return GTE_UNALLOCATED;
    uint64_t e = t[off % SES_GT_SPAN / SES_GRAIN];
    switch (GTE_TYPE(e)) {
    case GTE_UNALLOCATED:
        return e ? -EIO : GTE_UNALLOCATED;
    case GTE_UNMAPPED: case GTE_ZERO:
        return GTE_ZERO;
    case GTE_ALLOCATED: {
        /* the grain index is stored as bits 48-59 (low 12 bits), 0-47 (the rest) */
        uint64_t g = ((e >> 48) & 0xfff) | ((e & 0xffffffffffffull) << 12);
        if (g >= s->grains) return -EIO;
        *host = s->grains_offset + g * SES_GRAIN;
        return GTE_ALLOCATED;
    }
    default:
        return -EIO;
    }
}

static int ses_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    SeSparse *s = bs->opaque;
    uint8_t *p = buf;
    while (len) {
        uint64_t in = off % SES_GRAIN, host = 0, h2 = 0;
        size_t n = (size_t)MIN((uint64_t)len, SES_GRAIN - in);
        g_mutex_lock(&s->lock);
        int type = lookup(bs, off, &host);
        /* extend over following grains of the same kind (contiguous ones for data) */
        while (type >= 0 && n < len) {
            int t2 = lookup(bs, off + n, &h2);
            if (t2 != type || (type == GTE_ALLOCATED && h2 != host + in + n)) break;
            n = (size_t)MIN((uint64_t)len, n + SES_GRAIN);
        }
        g_mutex_unlock(&s->lock);
        int r;
        if (type < 0) r = type;
        else if (type == GTE_ALLOCATED) r = qs_block_pread(bs->file, host + in, n, p);
        else if (type == GTE_ZERO) r = (memset(p, 0, n), 0);
        else r = qs_block_read_backing(s->disk, s->start + off, n, p);
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Block status of one grain; `unallocated` is the answer for a grain this file does not
 * hold (it differs between the node's own status and a vmdk extent's). */
static int grain_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                        uint64_t *map, QsBlock **file, int unallocated)
{
    SeSparse *s = bs->opaque;
    uint64_t host = 0;
    g_mutex_lock(&s->lock);
    int type = lookup(bs, off, &host);
    g_mutex_unlock(&s->lock);
    if (type < 0) return type;
    *pnum = MIN(len, SES_GRAIN - off % SES_GRAIN);
    if (type == GTE_ZERO) return QS_BS_ZERO | QS_BS_ALLOCATED;
    if (type == GTE_UNALLOCATED) return unallocated;
    *map = host + off % SES_GRAIN;
    *file = bs->file;
    return QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
}

static int ses_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, QsBlock **file)
{
    SeSparse *s = bs->opaque;
    /* from the parent: data as far as this node can say (its reads fetch it; "not
     * allocated" here would make the layer above take it for zeros); zeros without one */
    return grain_status(bs, off, len, pnum, map, file,
                        s->disk->backing ? QS_BS_DATA | QS_BS_ALLOCATED : 0);
}

int vmdk_sesparse_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                         uint64_t *map, QsBlock **file)
{
    return grain_status(bs, off, len, pnum, map, file, 0);
}

static void ses_close(QsBlock *bs)
{
    SeSparse *s = bs->opaque;
    if (!s->inited) return;
    g_free(s->gd);
    g_hash_table_destroy(s->gts);
    g_mutex_clear(&s->lock);
}

/* Internal: never registered, only reached through a vmdk descriptor's SESPARSE line. */
static const QsBlockDriver ses_driver = {
    .name = "vmdk-sesparse",
    .desc = "VMware seSparse extent (read-only)",
    .instance_size = sizeof(SeSparse),
    .close = ses_close,
    .pread = ses_pread,
    .block_status = ses_block_status,
};

QsBlock *vmdk_sesparse_open(const char *filename, QsBlock *disk, uint64_t start,
                            uint64_t sectors, bool rdwr, GError **errp)
{
    if (rdwr) {
        fmt_err(errp, "vmdk: seSparse extent '%s' is read-only (no write support); open "
                "the image read-only", filename);
        return NULL;
    }
    if (sectors > (uint64_t)QS_BLOCK_MAX_SIZE / 512 || start > (uint64_t)QS_BLOCK_MAX_SIZE / 512) {
        fmt_err(errp, "vmdk: seSparse extent '%s' of %" G_GUINT64_FORMAT " sectors is too "
                "large", filename, sectors);
        return NULL;
    }
    QsBlock *file = qs_block_open_file(filename, 0, errp);
    if (!file) return NULL;
    QsBlock *bs = g_new0(QsBlock, 1);
    bs->drv = &ses_driver;
    bs->filename = g_strdup(filename);
    bs->fd = -1;
    bs->file = file;
    bs->size = sectors * 512;
    SeSparse *s = bs->opaque = g_malloc0(sizeof(SeSparse));
    g_mutex_init(&s->lock);
    s->inited = true;
    s->gts = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    s->disk = disk;
    s->start = start * 512;
    if (!read_headers(bs, sectors, errp)) {
        qs_block_close(bs);
        return NULL;
    }
    return bs;
}
