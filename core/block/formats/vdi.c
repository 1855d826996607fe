/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vdi driver: VirtualBox disk images version 1.1, dynamic and static, with a
 * validated header and block map (little-endian), block allocation at the end. */
#include "formats.h"

#define VDI_SIGNATURE   0xbeda107fu
#define VDI_VERSION     0x00010001u
#define VDI_HEADER_SIZE 512u
#define VDI_TYPE_DYNAMIC 1u
#define VDI_TYPE_STATIC  2u
#define VDI_UNALLOCATED 0xffffffffu
#define VDI_DISCARDED   0xfffffffeu
#define VDI_BLOCK_SIZE  (1u << 20)
/* QEMU's limit: the block map's byte size must fit in 32 bits. */
#define VDI_BLOCKS_MAX  (UINT32_MAX / 4)

enum {
    H_SIGNATURE = 0x40, H_VERSION = 0x44, H_HEADER_SIZE = 0x48, H_TYPE = 0x4c,
    H_OFFSET_BMAP = 0x154, H_OFFSET_DATA = 0x158, H_SECTOR_SIZE = 0x168,
    H_DISK_SIZE = 0x170, H_BLOCK_SIZE = 0x178, H_BLOCKS = 0x180, H_ALLOCATED = 0x184,
    H_UUID_IMAGE = 0x188, H_UUID_SNAP = 0x198,
};

typedef struct Vdi {
    GMutex lock;
    bool inited;
    uint32_t type, block_size, blocks, allocated;
    uint32_t next_block;        /* where the next allocation goes (index in the data area) */
    uint64_t offset_bmap, offset_data, disk_size;
    uint32_t *bmap;             /* host-endian entries */
} Vdi;

static bool is_alloc(uint32_t e) { return e < VDI_DISCARDED; }

static int vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 0x48 && le32_at(buf + H_SIGNATURE) == VDI_SIGNATURE ? 100 : 0;
}

static bool vdi_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Vdi *s = bs->opaque;
    const char *fn = bs->filename;
    g_mutex_init(&s->lock);
    s->inited = true;
    uint8_t h[VDI_HEADER_SIZE];
    if (bs->file->size < VDI_HEADER_SIZE)
        return fmt_err(errp, "vdi: '%s' is too short for a VDI header (%" G_GUINT64_FORMAT
                       " bytes)", fn, bs->file->size);
    int r = qs_block_pread(bs->file, 0, sizeof(h), h);
    if (r < 0) return fmt_errno(errp, r, "vdi: could not read the header of '%s'", fn);
    if (le32_at(h + H_SIGNATURE) != VDI_SIGNATURE)
        return fmt_err(errp, "vdi: '%s' is not a VDI image (signature %#x)", fn,
                       le32_at(h + H_SIGNATURE));
    uint32_t version = le32_at(h + H_VERSION);
    if (version != VDI_VERSION)
        return fmt_err(errp, "vdi: unsupported VDI image (version %u.%u)", version >> 16,
                       version & 0xffff);
    uint32_t hsize = le32_at(h + H_HEADER_SIZE);
    if (hsize < 0x180 || hsize > VDI_HEADER_SIZE - 0x48)
        return fmt_err(errp, "vdi: unsupported VDI image (header_size %u)", hsize);
    s->type = le32_at(h + H_TYPE);
    if (s->type != VDI_TYPE_DYNAMIC && s->type != VDI_TYPE_STATIC)
        return fmt_err(errp, "vdi: unsupported VDI image (image_type %u)", s->type);
    uint32_t ssize = le32_at(h + H_SECTOR_SIZE);
    if (ssize != 512)
        return fmt_err(errp, "vdi: unsupported VDI image (sector size %u is not 512)", ssize);
    s->block_size = le32_at(h + H_BLOCK_SIZE);
    if (!is_pow2(s->block_size) || s->block_size < 512 || s->block_size > (256u << 20))
        return fmt_err(errp, "vdi: unsupported VDI image (block_size %u is not a power of two "
                       "between 512 and 256M)", s->block_size);
    s->offset_bmap = le32_at(h + H_OFFSET_BMAP);
    s->offset_data = le32_at(h + H_OFFSET_DATA);
    if (s->offset_bmap % 512 || s->offset_bmap < VDI_HEADER_SIZE)
        return fmt_err(errp, "vdi: unsupported VDI image (offset_bmap %#" G_GINT64_MODIFIER
                       "x is not a sector past the header)", s->offset_bmap);
    if (s->offset_data % 512)
        return fmt_err(errp, "vdi: unsupported VDI image (offset_data %#" G_GINT64_MODIFIER
                       "x is not sector aligned)", s->offset_data);
    s->blocks = le32_at(h + H_BLOCKS);
    s->allocated = le32_at(h + H_ALLOCATED);
    s->disk_size = le64_at(h + H_DISK_SIZE);
    if (s->blocks > VDI_BLOCKS_MAX)
        return fmt_err(errp, "vdi: unsupported VDI image (blocks_in_image %u, at most %u)",
                       s->blocks, VDI_BLOCKS_MAX);
    if (s->disk_size > (uint64_t)s->blocks * s->block_size)
        return fmt_err(errp, "vdi: unsupported VDI image (disk size %" G_GUINT64_FORMAT
                       ", image bitmap has room for %" G_GUINT64_FORMAT ")", s->disk_size,
                       (uint64_t)s->blocks * s->block_size);
    if (s->disk_size > (uint64_t)QS_BLOCK_MAX_SIZE)
        return fmt_err(errp, "vdi: disk size %" G_GUINT64_FORMAT " is too large",
                       s->disk_size);
    bool check = bs->flags & QS_BLOCK_CHECK;   /* check repairs what is tested below */
    if (s->allocated > s->blocks && !check)
        return fmt_err(errp, "vdi: corrupt image (blocks_allocated %u > blocks_in_image %u)",
                       s->allocated, s->blocks);
    uint64_t bmap_bytes = (uint64_t)s->blocks * 4;
    if (s->offset_data < s->offset_bmap + bmap_bytes)
        return fmt_err(errp, "vdi: corrupt image (offset_data %#" G_GINT64_MODIFIER "x "
                       "overlaps the block map at %#" G_GINT64_MODIFIER "x of %"
                       G_GUINT64_FORMAT " bytes)", s->offset_data, s->offset_bmap, bmap_bytes);
    if (s->offset_bmap + bmap_bytes > bs->file->size)
        return fmt_err(errp, "vdi: corrupt image (block map of %u entries at %#"
                       G_GINT64_MODIFIER "x extends beyond the end of the file, %"
                       G_GUINT64_FORMAT " bytes)", s->blocks, s->offset_bmap, bs->file->size);
    s->bmap = g_try_malloc(MAX(bmap_bytes, 4));
    if (!s->bmap) return fmt_err(errp, "vdi: cannot allocate a block map of %u entries",
                                 s->blocks);
    if (bmap_bytes) {
        r = qs_block_pread(bs->file, s->offset_bmap, bmap_bytes, s->bmap);
        if (r < 0) return fmt_errno(errp, r, "vdi: could not read the block map of '%s'", fn);
    }
    s->next_block = s->allocated;
    for (uint32_t i = 0; i < s->blocks; i++) {
        uint32_t e = GUINT32_FROM_LE(s->bmap[i]);
        s->bmap[i] = e;
        if (!is_alloc(e)) continue;
        if (e >= s->blocks && !check)
            return fmt_err(errp, "vdi: corrupt image (block map entry %u is %u, beyond "
                           "blocks_in_image %u); run 'qemu-img check -r all'", i, e,
                           s->blocks);
        if (e >= s->next_block && e < s->blocks) s->next_block = e + 1;
    }
    bs->size = s->disk_size;
    return true;
}

static void vdi_close(QsBlock *bs)
{
    Vdi *s = bs->opaque;
    if (!s->inited) return;
    g_free(s->bmap);
    g_mutex_clear(&s->lock);
}

static uint64_t block_host(Vdi *s, uint32_t e)
{
    return s->offset_data + (uint64_t)e * s->block_size;
}

/* Host offset of guest block idx, or FMT_UNALLOCATED. */
static uint64_t vdi_lookup(QsBlock *bs, uint32_t idx)
{
    Vdi *s = bs->opaque;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bmap[idx];
    g_mutex_unlock(&s->lock);
    return is_alloc(e) ? block_host(s, e) : FMT_UNALLOCATED;
}

static int vdi_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Vdi *s = bs->opaque;
    return fmt_table_pread(bs, s->block_size, vdi_lookup, off, len, buf);
}

/* Under the lock: give block idx a data block holding buf at in (zeros elsewhere). */
static int allocate(QsBlock *bs, uint32_t idx, uint64_t in, size_t n, const void *buf)
{
    Vdi *s = bs->opaque;
    if (s->next_block >= s->blocks) return -ENOSPC;
    uint32_t e = s->next_block;
    uint64_t host = block_host(s, e);
    int r = 0;
    if (in) r = fmt_write_zeros(bs->file, host, in);
    if (!r) r = qs_block_pwrite(bs->file, host + in, n, buf, 0);
    if (!r && in + n < s->block_size)
        r = fmt_write_zeros(bs->file, host + in + n, s->block_size - in - n);
    if (r < 0) return r;
    uint8_t le[4];
    put_le32(le, e);
    r = qs_block_pwrite(bs->file, s->offset_bmap + (uint64_t)idx * 4, 4, le, 0);
    if (r < 0) return r;
    s->bmap[idx] = e;
    s->next_block = e + 1;
    s->allocated++;
    put_le32(le, s->allocated);
    return qs_block_pwrite(bs->file, H_ALLOCATED, 4, le, 0);
}

static int vdi_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    Vdi *s = bs->opaque;
    const uint8_t *p = buf;
    while (len) {
        uint32_t idx = (uint32_t)(off / s->block_size);
        uint64_t in = off % s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, s->block_size - in);
        g_mutex_lock(&s->lock);
        uint32_t e = s->bmap[idx];
        int r = 0;
        if (!is_alloc(e)) r = allocate(bs, idx, in, n, p);
        g_mutex_unlock(&s->lock);
        if (is_alloc(e)) r = qs_block_pwrite(bs->file, block_host(s, e) + in, n, p, 0);
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int vdi_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Vdi *s = bs->opaque;
    return fmt_table_zero(bs, s->block_size, vdi_lookup, off, len);
}

static int vdi_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                            uint64_t *map, QsBlock **file)
{
    Vdi *s = bs->opaque;
    uint32_t idx = (uint32_t)(off / s->block_size);
    uint64_t in = off % s->block_size;
    g_mutex_lock(&s->lock);
    uint32_t e = s->bmap[idx];
    uint64_t n = s->block_size - in;
    /* extend over following blocks with the same status (contiguous on the host) */
    for (uint32_t i = idx + 1; n < len && i < s->blocks; i++) {
        uint32_t f = s->bmap[i];
        if (is_alloc(e) ? f != e + (i - idx) : is_alloc(f)) break;
        n += s->block_size;
    }
    g_mutex_unlock(&s->lock);
    *pnum = MIN(n, len);
    if (!is_alloc(e)) return QS_BS_ZERO | QS_BS_ALLOCATED;
    *map = block_host(s, e) + in;
    *file = bs->file;
    int ret = QS_BS_DATA | QS_BS_OFFSET_VALID | QS_BS_ALLOCATED;
    /* as QEMU: only static images look at the file's holes */
    return s->type == VDI_TYPE_STATIC ? fmt_status_in_file(bs->file, *map, pnum, ret) : ret;
}

/* Under the lock: write bmap entry idx. */
static int write_entry(QsBlock *bs, uint32_t idx)
{
    Vdi *s = bs->opaque;
    uint8_t le[4];
    put_le32(le, s->bmap[idx]);
    return qs_block_pwrite(bs->file, s->offset_bmap + (uint64_t)idx * 4, 4, le, 0);
}

static int write_header(QsBlock *bs);

/* QEMU's checks (an index past blocks_in_image, a data block used twice, the header's
 * allocated count), ours (a data block past the end of the file, data blocks no entry
 * uses: leaks), and their repair: a block whose data is shared or out of range gets a
 * copy in a free data block, an entry past the end of the file (it reads as zeros)
 * becomes unallocated, the count is rewritten, and leaked blocks are filled with the
 * last blocks of the file, which is then truncated.  The image reads the same after. */
static bool vdi_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    Vdi *s = bs->opaque;
    bool fix_err = fix & QS_CHECK_FIX_ERRORS, fix_leaks = fix & QS_CHECK_FIX_LEAKS;
    const char *verb = fix_err ? "Repairing" : "ERROR:";
    memset(res, 0, sizeof(*res));
    g_mutex_lock(&s->lock);
    uint64_t fsize = bs->file->size;
    /* data blocks the file holds (a partial last one counts) */
    uint64_t fblocks = fsize > s->offset_data ? div_up(fsize - s->offset_data, s->block_size)
                                              : 0;
    uint32_t n = MAX(s->blocks, 1u);
    g_autofree uint32_t *owner = g_new(uint32_t, n);   /* data index -> first block */
    for (uint32_t i = 0; i < s->blocks; i++) owner[i] = VDI_UNALLOCATED;
    uint32_t counted = 0;
    int r = 0;
    /* first every entry that is fine, so that repairs copy into data blocks no one uses */
    g_autofree uint8_t *bad = g_malloc0(n);
    for (uint32_t i = 0; i < s->blocks; i++) {
        uint32_t e = s->bmap[i];
        if (!is_alloc(e)) continue;
        if (e < s->blocks) counted++;   /* QEMU counts shared blocks too */
        if (e >= s->blocks || owner[e] != VDI_UNALLOCATED || block_host(s, e) >= fsize)
            bad[i] = 1;
        else
            owner[e] = i;
    }
    uint32_t free_idx = 0;
    for (uint32_t i = 0; i < s->blocks && r == 0; i++) {
        if (!bad[i]) continue;
        uint32_t e = s->bmap[i];
        bool in_file = block_host(s, e) < fsize;
        if (e >= s->blocks)
            qs_block_message("%s block index %u too large, is %u\n", verb, i, e);
        else if (!in_file)
            qs_block_message("%s block index %u points beyond the end of the file (data "
                    "block %u at offset %" G_GUINT64_FORMAT ", file size %" G_GUINT64_FORMAT
                    ")\n", verb, i, e, block_host(s, e), fsize);
        else
            qs_block_message("%s block index %u also used by %u\n", verb, e, e);
        res->corruptions++;
        if (!fix_err) continue;
        if (!in_file) {
            /* it reads as zeros, and stays so */
            s->bmap[i] = VDI_UNALLOCATED;
        } else {
            while (free_idx < s->blocks && owner[free_idx] != VDI_UNALLOCATED) free_idx++;
            if (free_idx == s->blocks) { r = -ENOSPC; break; }
            r = fmt_file_copy(bs->file, block_host(s, e), block_host(s, free_idx),
                              s->block_size);
            owner[free_idx] = i;
            s->bmap[i] = free_idx;
        }
        if (r == 0) r = write_entry(bs, i);
        if (r == 0) res->corruptions_fixed++;
    }
    uint32_t now = counted;   /* after the repairs above */
    if (fix_err && r == 0) {
        now = 0;
        for (uint32_t i = 0; i < s->blocks; i++) now += is_alloc(s->bmap[i]);
    }
    if (r == 0 && counted != s->allocated) {
        qs_block_message("%s allocated blocks mismatch, is %u, should be %u\n",
                fix_err ? "Repairing" : "ERROR:", counted, s->allocated);
        res->corruptions++;
        if (fix_err) res->corruptions_fixed++;
    }
    if (r == 0 && fix_err && now != s->allocated) {
        /* the count after the repairs above (an entry past the file is gone) */
        s->allocated = now;
        r = write_header(bs);
    }
    /* leaks: data blocks in the file no entry uses */
    uint32_t used = 0, last = 0;
    for (uint32_t k = 0; k < s->blocks; k++)
        if (owner[k] != VDI_UNALLOCATED) { used++; last = k + 1; }
    uint64_t leaked = fblocks > used ? fblocks - used : 0;
    /* leaks are repaired only in an image without corruptions left */
    bool repair_leaks = fix_leaks && (fix_err || !res->corruptions);
    for (uint64_t k = 0; k < fblocks && k < s->blocks && leaked; k++)
        if (owner[k] == VDI_UNALLOCATED)
            qs_block_message("%s data block %" G_GUINT64_FORMAT " at offset %" G_GUINT64_FORMAT
                    ": no block uses it\n", repair_leaks ? "Repairing leaked" : "Leaked",
                    k, block_host(s, k));
    if (fblocks > s->blocks)
        qs_block_message("%s %" G_GUINT64_FORMAT " data blocks past blocks_in_image at the "
                "end of the file\n", repair_leaks ? "Repairing leaked" : "Leaked",
                fblocks - s->blocks);
    res->leaks = (int)MIN(leaked, (uint64_t)INT_MAX);
    if (repair_leaks && leaked && r == 0) {
        /* pack: the last blocks move into the holes, the file ends after them */
        {
            uint32_t hole = 0;
            for (uint32_t k = last; k-- > used && r == 0;) {
                if (owner[k] == VDI_UNALLOCATED) continue;
                while (owner[hole] != VDI_UNALLOCATED) hole++;
                if (hole >= k) break;
                r = fmt_file_copy(bs->file, block_host(s, k), block_host(s, hole),
                                  s->block_size);
                s->bmap[owner[k]] = hole;
                if (r == 0) r = write_entry(bs, owner[k]);
                owner[hole] = owner[k];
                owner[k] = VDI_UNALLOCATED;
            }
            GError *e = NULL;
            if (r == 0 && !qs_block_truncate(bs->file, block_host(s, used), true,
                                             QS_PREALLOC_OFF, &e)) {
                g_propagate_error(errp, e);
                g_mutex_unlock(&s->lock);
                return false;
            }
            if (r == 0) res->leaks_fixed = res->leaks;
        }
    }
    s->next_block = MAX(used, s->allocated);
    for (uint32_t i = 0; i < s->blocks; i++)
        if (is_alloc(s->bmap[i]) && s->bmap[i] < s->blocks && s->bmap[i] >= s->next_block)
            s->next_block = s->bmap[i] + 1;
    if (r == 0 && (res->corruptions_fixed || res->leaks_fixed)) r = qs_block_flush(bs->file);
    g_mutex_unlock(&s->lock);
    if (r < 0) return fmt_errno(errp, r, "vdi: could not repair '%s'", bs->filename);
    return true;
}

/* Under the lock: write bmap entries [from, to) (host-endian in s->bmap, or unallocated
 * past s->blocks) and pad the map's last sector with zeros as vdi_create does. */
static int write_bmap(QsBlock *bs, uint32_t from, uint32_t to)
{
    Vdi *s = bs->opaque;
    uint64_t end = MIN(align_up((uint64_t)to * 4, 512) / 4, (s->offset_data - s->offset_bmap) / 4);
    uint32_t buf[1024];
    for (uint64_t i = from; i < end;) {
        size_t n = (size_t)MIN(end - i, (uint64_t)G_N_ELEMENTS(buf));
        for (size_t j = 0; j < n; j++)
            buf[j] = GUINT32_TO_LE(i + j < s->blocks ? s->bmap[i + j] : 0);
        int r = qs_block_pwrite(bs->file, s->offset_bmap + i * 4, n * 4, buf, 0);
        if (r < 0) return r;
        i += n;
    }
    return 0;
}

/* Under the lock: the header fields a resize or a repair changes. */
static int write_header(QsBlock *bs)
{
    Vdi *s = bs->opaque;
    uint8_t h[H_ALLOCATED + 4 - H_OFFSET_DATA];
    int r = qs_block_pread(bs->file, H_OFFSET_DATA, sizeof(h), h);
    if (r < 0) return r;
    put_le32(h + (H_OFFSET_DATA - H_OFFSET_DATA), (uint32_t)s->offset_data);
    put_le64(h + (H_DISK_SIZE - H_OFFSET_DATA), s->disk_size);
    put_le32(h + (H_BLOCKS - H_OFFSET_DATA), s->blocks);
    put_le32(h + (H_ALLOCATED - H_OFFSET_DATA), s->allocated);
    return qs_block_pwrite(bs->file, H_OFFSET_DATA, sizeof(h), h, 0);
}

/* Under the lock: move every allocated block to the lowest free data indices, so that
 * indices run 0..allocated-1 with no gap (blocks at or past `keep` are dropped first). */
static int compact(QsBlock *bs, uint32_t keep)
{
    Vdi *s = bs->opaque;
    g_autofree uint8_t *used = g_malloc0(MAX(s->next_block, 1u));
    uint32_t n = 0;
    for (uint32_t i = 0; i < keep; i++)
        if (is_alloc(s->bmap[i]) && s->bmap[i] < s->next_block) { used[s->bmap[i]] = 1; n++; }
    uint32_t hole = 0;
    for (uint32_t i = 0; i < keep; i++) {
        uint32_t e = s->bmap[i];
        if (!is_alloc(e) || e < n) continue;
        while (used[hole]) hole++;
        int r = fmt_file_copy(bs->file, block_host(s, e), block_host(s, hole), s->block_size);
        if (r < 0) return r;
        used[hole] = 1;
        s->bmap[i] = hole;
    }
    s->allocated = n;
    s->next_block = n;
    return 0;
}

static int vdi_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                        GError **errp)
{
    Vdi *s = bs->opaque;
    int rc = fmt_check_resize("vdi", size, prealloc, errp);
    if (rc) return rc;
    uint64_t nb64 = div_up(size, s->block_size);
    if (nb64 > VDI_BLOCKS_MAX) {
        fmt_err(errp, "vdi: the new size %" G_GUINT64_FORMAT " needs %" G_GUINT64_FORMAT
                " blocks, at most %u", size, nb64, VDI_BLOCKS_MAX);
        return -EFBIG;
    }
    uint32_t nb = (uint32_t)nb64;
    int r = 0;
    g_mutex_lock(&s->lock);
    uint32_t old = s->blocks;
    if (size < s->disk_size) {
        /* blocks past the end go; what is kept is packed so indices stay below blocks */
        r = compact(bs, nb);
        uint64_t in = size % s->block_size;
        if (r == 0 && in && is_alloc(s->bmap[nb - 1]))
            r = fmt_write_zeros(bs->file, block_host(s, s->bmap[nb - 1]) + in,
                                s->block_size - in);
        s->blocks = nb;
    } else if (nb > old) {
        uint64_t need = s->offset_bmap + align_up((uint64_t)nb * 4, 512);
        if (need > s->offset_data) {
            /* the map grows into the data area: its first k blocks move to the end */
            uint32_t k = (uint32_t)div_up(need - s->offset_data, s->block_size);
            uint64_t od = s->offset_data + (uint64_t)k * s->block_size;
            if (od > UINT32_MAX) {
                g_mutex_unlock(&s->lock);
                fmt_err(errp, "vdi: growing to %" G_GUINT64_FORMAT " bytes needs the data "
                        "area at %" G_GUINT64_FORMAT ", past the header's 32-bit offset_data",
                        size, od);
                return -EFBIG;
            }
            uint32_t at = MAX(s->next_block, k);
            for (uint32_t i = 0; i < old && r == 0; i++) {
                uint32_t e = s->bmap[i];
                if (!is_alloc(e) || e >= k) continue;
                r = fmt_file_copy(bs->file, block_host(s, e), block_host(s, at),
                                  s->block_size);
                s->bmap[i] = at++;
            }
            if (r == 0) r = qs_block_flush(bs->file);
            if (r == 0) {
                for (uint32_t i = 0; i < old; i++)
                    if (is_alloc(s->bmap[i])) s->bmap[i] -= k;
                s->next_block = at - k;
                s->offset_data = od;
            }
        }
        uint32_t *m = r == 0 ? g_try_renew(uint32_t, s->bmap, nb) : s->bmap;
        if (!m) r = -ENOMEM;
        else s->bmap = m;
        for (uint32_t i = old; r == 0 && i < nb; i++) {
            if (s->type == VDI_TYPE_STATIC) {
                s->bmap[i] = s->next_block++;
                s->allocated++;
            } else {
                s->bmap[i] = VDI_UNALLOCATED;
            }
        }
        if (r == 0) s->blocks = nb;
    }
    if (r == 0) r = write_bmap(bs, 0, s->blocks);
    if (r == 0) {
        s->disk_size = size;
        r = write_header(bs);
    }
    uint64_t end = block_host(s, s->next_block);
    if (r == 0 && (s->type == VDI_TYPE_STATIC || end < bs->file->size)) {
        /* static images own all their blocks; a shrunk image gives back what it freed */
        GError *e = NULL;
        if (!qs_block_truncate(bs->file, end, true, QS_PREALLOC_OFF, &e)) {
            r = -EIO;
            g_propagate_error(errp, e);
        }
    }
    if (r == 0) r = qs_block_flush(bs->file);
    if (r == 0) bs->size = size;
    g_mutex_unlock(&s->lock);
    if (r < 0 && errp && !*errp)
        fmt_errno(errp, r, "vdi: could not resize '%s'", bs->filename);
    return r;
}

static uint32_t vdi_cluster_size(QsBlock *bs)
{
    return ((Vdi *)bs->opaque)->block_size;
}

static const QsPropDesc vdi_create_opts[] = {
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size" },
    { "static", QS_PROP_BOOL, NULL, "VDI static (pre-allocated) image" },
    { NULL },
};

static bool vdi_create(const char *filename, const QsOpts *o, GError **errp)
{
    uint64_t size = qs_opts_get_uint(o, "size");
    bool is_static = qs_opts_get_bool(o, "static");
    uint64_t bsz = VDI_BLOCK_SIZE;
    if (size > (uint64_t)VDI_BLOCKS_MAX * bsz)
        return fmt_err(errp, "Unsupported VDI image size (size is %#" G_GINT64_MODIFIER
                       "x, max supported is %#" G_GINT64_MODIFIER "x)", size,
                       (uint64_t)VDI_BLOCKS_MAX * bsz);
    uint32_t blocks = (uint32_t)div_up(size, bsz);
    uint64_t bmap_bytes = align_up((uint64_t)blocks * 4, 512);
    uint64_t offset_data = VDI_HEADER_SIZE + bmap_bytes;
    if (offset_data > UINT32_MAX)
        return fmt_err(errp, "Unsupported VDI image size %" G_GUINT64_FORMAT, size);
    uint8_t h[VDI_HEADER_SIZE] = { 0 };
    static const char text[] = "<<< QEMU VM Virtual Disk Image >>>\n";
    memcpy(h, text, sizeof(text) - 1);
    put_le32(h + H_SIGNATURE, VDI_SIGNATURE);
    put_le32(h + H_VERSION, VDI_VERSION);
    put_le32(h + H_HEADER_SIZE, 0x180);
    put_le32(h + H_TYPE, is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC);
    put_le32(h + H_OFFSET_BMAP, VDI_HEADER_SIZE);
    put_le32(h + H_OFFSET_DATA, (uint32_t)offset_data);
    put_le32(h + H_SECTOR_SIZE, 512);
    put_le64(h + H_DISK_SIZE, size);
    put_le32(h + H_BLOCK_SIZE, (uint32_t)bsz);
    put_le32(h + H_BLOCKS, blocks);
    put_le32(h + H_ALLOCATED, is_static ? blocks : 0);
    fmt_uuid_random(h + H_UUID_IMAGE);
    fmt_uuid_random(h + H_UUID_SNAP);
    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    int r = qs_block_pwrite(f, 0, sizeof(h), h, 0);
    /* the block map, written in chunks so that huge images need little memory */
    size_t chunk_entries = 1u << 16;
    g_autofree uint32_t *chunk = g_new(uint32_t, chunk_entries);
    for (uint64_t i = 0; r == 0 && i < bmap_bytes / 4; i += chunk_entries) {
        size_t n = (size_t)MIN((uint64_t)chunk_entries, bmap_bytes / 4 - i);
        for (size_t j = 0; j < n; j++) {
            uint64_t k = i + j;
            uint32_t e = k >= blocks ? 0 : is_static ? (uint32_t)k : VDI_UNALLOCATED;
            chunk[j] = GUINT32_TO_LE(e);
        }
        r = qs_block_pwrite(f, VDI_HEADER_SIZE + i * 4, n * 4, chunk, 0);
    }
    if (r == 0 && is_static) r = fmt_write_zeros(f, offset_data, (uint64_t)blocks * bsz);
    if (r == 0) r = qs_block_flush(f);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "vdi: could not write '%s'", filename);
    return true;
}

static bool vdi_measure(const QsOpts *o, QsBlock *in, uint64_t size, uint64_t *required,
                        uint64_t *fully, GError **errp)
{
    uint64_t vsize = in ? in->size : size;
    uint64_t bsz = VDI_BLOCK_SIZE, blocks = div_up(vsize, bsz);
    uint64_t meta = VDI_HEADER_SIZE + align_up(blocks * 4, 512);
    uint64_t used = 0;
    for (uint64_t b = 0; in && b < blocks; b++) {
        for (uint64_t off = b * bsz; off < MIN((b + 1) * bsz, vsize);) {
            uint64_t n;
            int r = qs_block_status_above(in, NULL, off, MIN((b + 1) * bsz, vsize) - off, &n,
                                          NULL, NULL, NULL);
            if (r < 0) return fmt_errno(errp, r, "Could not get block status of '%s'",
                                        in->filename);
            if ((r & QS_BS_DATA) && !(r & QS_BS_ZERO)) { used++; break; }
            off += n;
        }
    }
    *fully = meta + blocks * bsz;
    bool is_static = o && qs_opts_get_bool(o, "static");
    *required = is_static || !in ? (is_static ? *fully : meta) : meta + used * bsz;
    return true;
}

const QsBlockDriver qs_block_drv_vdi = {
    .name = "vdi",
    .desc = "VirtualBox disk image (VDI 1.1), dynamic or static",
    .instance_size = sizeof(Vdi),
    .probe = vdi_probe,
    .create_opts = vdi_create_opts,
    .create = vdi_create,
    .open = vdi_open,
    .close = vdi_close,
    .pread = vdi_pread,
    .pwrite = vdi_pwrite,
    .pwrite_zeroes = vdi_pwrite_zeroes,
    .block_status = vdi_block_status,
    .check = vdi_check,
    .truncate = vdi_truncate,
    .cluster_size = vdi_cluster_size,
    .measure = vdi_measure,
};
