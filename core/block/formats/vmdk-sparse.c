/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VMDK sparse extents: hosted sparse ("KDMV", plain, zeroed-grain and compressed with
 * stream markers) and VMDK3 ("COWD"): header validation, grain tables, grain I/O. */
#include <libdeflate.h>
#include <zlib.h>
#include "vmdk.h"

#define GT_CACHE_MAX (32u << 20)
/* Writes of part of a compressed grain are merged into its content (read, inflate,
 * deflate the whole grain) up to this grain size; real writers use 64 KiB grains. */
#define VMDK_MAX_MERGED_GRAIN (2u << 20)

/* Compressed grains are (de)compressed and moved in batches of at most this many bytes
 * of grain data, and at most BATCH_GRAINS grains. */
#define BATCH_BYTES (8u << 20)
#define BATCH_GRAINS 128u

enum {   /* KDMV header fields */
    K_MAGIC = 0, K_VERSION = 4, K_FLAGS = 8, K_CAPACITY = 12, K_GRAIN = 20, K_DESC_OFF = 28,
    K_DESC_SIZE = 36, K_GTES = 44, K_RGD = 48, K_GD = 56, K_OVERHEAD = 64, K_UNCLEAN = 72,
    K_NL = 73, K_COMPRESS_ALGO = 77,
};

static bool bad_ext(GError **errp, VmdkExtent *e, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static bool bad_ext(GError **errp, VmdkExtent *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return fmt_err(errp, "vmdk: extent '%s': %s", e->filename, m);
}

static bool read_table(VmdkExtent *e, uint64_t off, uint32_t n, uint32_t **out, GError **errp,
                       const char *what)
{
    uint64_t bytes = (uint64_t)n * 4;
    if (off > e->file->size || bytes > e->file->size - off)
        return bad_ext(errp, e, "%s of %u entries at %#" G_GINT64_MODIFIER "x is beyond the "
                       "end of the file (%" G_GUINT64_FORMAT " bytes)", what, n, off,
                       e->file->size);
    uint32_t *t = g_try_malloc(MAX(bytes, 4));
    if (!t) return bad_ext(errp, e, "cannot allocate the %s (%u entries)", what, n);
    int r = bytes ? qs_block_pread(e->file, off, bytes, t) : 0;
    if (r < 0) {
        g_free(t);
        return fmt_errno(errp, r, "vmdk: could not read the %s of '%s'", what, e->filename);
    }
    for (uint32_t i = 0; i < n; i++) t[i] = GUINT32_FROM_LE(t[i]);
    *out = t;
    return true;
}

static bool check_gd(VmdkExtent *e, const uint32_t *gd, GError **errp, const char *what)
{
    uint64_t gt_bytes = (uint64_t)e->gtes * 4;
    for (uint32_t i = 0; i < e->gd_entries; i++) {
        uint64_t o = (uint64_t)gd[i] * 512;
        if (!gd[i]) continue;
        if (gd[i] < 1 || o > e->file->size || gt_bytes > e->file->size - o)
            return bad_ext(errp, e, "%s entry %u (sector %u) points outside the file", what, i,
                           gd[i]);
    }
    return true;
}

static bool open_cowd(VmdkExtent *e, const uint8_t *h, GError **errp)
{
    e->version = le32_at(h + 4);
    e->flags = le32_at(h + 8);
    uint64_t sectors = le32_at(h + 12);
    uint64_t grain = le32_at(h + 16);
    e->gd_offset = (uint64_t)le32_at(h + 20) * 512;
    uint32_t gd_size = le32_at(h + 24);
    e->gtes = 4096;
    if (!grain || !is_pow2(grain) || grain > 0x200000)
        return bad_ext(errp, e, "invalid COWD granularity %" G_GUINT64_FORMAT " sectors",
                       grain);
    e->grain = grain * 512;
    if (e->sectors && e->sectors != sectors)
        return bad_ext(errp, e, "COWD disk_sectors %" G_GUINT64_FORMAT " differs from the "
                       "descriptor's %" G_GUINT64_FORMAT, sectors, e->sectors);
    e->sectors = sectors;
    uint64_t need = div_up(sectors, (uint64_t)e->gtes * grain);
    if (gd_size < need)
        return bad_ext(errp, e, "COWD l1dir_size %u is too small for %" G_GUINT64_FORMAT
                       " sectors (needs %" G_GUINT64_FORMAT ")", gd_size, sectors, need);
    e->gd_entries = (uint32_t)need;
    e->read_only = true;   /* VMDK3 is read-only here, as in QEMU */
    return read_table(e, e->gd_offset, e->gd_entries, &e->gd, errp, "grain directory") &&
           check_gd(e, e->gd, errp, "grain directory");
}

static bool parse_kdmv(VmdkExtent *e, const uint8_t *h, bool footer, GError **errp)
{
    e->version = le32_at(h + K_VERSION);
    e->flags = le32_at(h + K_FLAGS);
    if (e->version < 1 || e->version > 3)
        return bad_ext(errp, e, "VMDK version %u is not supported", e->version);
    uint64_t cap = le64_at(h + K_CAPACITY), grain = le64_at(h + K_GRAIN);
    if (!grain || !is_pow2(grain) || grain > 0x200000)
        return bad_ext(errp, e, "invalid granularity %" G_GUINT64_FORMAT " sectors (a power "
                       "of two up to 2097152)", grain);
    if (cap > (uint64_t)QS_BLOCK_MAX_SIZE / 512)
        return bad_ext(errp, e, "capacity %" G_GUINT64_FORMAT " sectors is too large", cap);
    e->gtes = le32_at(h + K_GTES);
    if (e->gtes < 1 || e->gtes > 512)
        return bad_ext(errp, e, "numGTEsPerGT %u is invalid (1 to 512)", e->gtes);
    if (footer) return true;
    e->grain = grain * 512;
    if (e->sectors && e->sectors != cap)
        return bad_ext(errp, e, "capacity %" G_GUINT64_FORMAT " differs from the "
                       "descriptor's %" G_GUINT64_FORMAT " sectors", cap, e->sectors);
    e->sectors = cap;
    return true;
}

bool vmdk_sparse_open(QsBlock *bs, VmdkExtent *e, bool rdwr, char **desc, GError **errp)
{
    uint8_t *h = e->header;
    uint64_t fsize = e->file->size;
    if (fsize < 512) return bad_ext(errp, e, "file too short for a sparse header (%"
                                    G_GUINT64_FORMAT " bytes)", fsize);
    int r = qs_block_pread(e->file, 0, 512, h);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not read '%s'", e->filename);
    e->gt_cache = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    g_mutex_init(&e->gt_starts_lock);
    if (le32_at(h) == VMDK3_MAGIC) {
        e->kind = EXT_COWD;
        return open_cowd(e, h, errp);
    }
    if (le32_at(h) != VMDK4_MAGIC)
        return bad_ext(errp, e, "not a sparse extent (magic %#x)", le32_at(h));
    e->kind = EXT_SPARSE;
    if (!parse_kdmv(e, h, false, errp)) return false;
    uint64_t desc_off = le64_at(h + K_DESC_OFF), desc_size = le64_at(h + K_DESC_SIZE);
    if (desc && desc_off) {
        if (desc_size > VMDK_DESC_MAX / 512 || desc_off > fsize / 512 ||
            desc_size * 512 > fsize - desc_off * 512)
            return bad_ext(errp, e, "descriptor at sector %" G_GUINT64_FORMAT " of %"
                           G_GUINT64_FORMAT " sectors is invalid (at most %u, inside the "
                           "file)", desc_off, desc_size, VMDK_DESC_MAX / 512);
        char *d = g_malloc0(desc_size * 512 + 1);
        r = qs_block_pread(e->file, desc_off * 512, desc_size * 512, d);
        if (r < 0) {
            g_free(d);
            return fmt_errno(errp, r, "vmdk: could not read the descriptor of '%s'",
                             e->filename);
        }
        *desc = d;
    }
    e->compressed = !!(e->flags & VMDK_FLAG_COMPRESS);
    e->zeroed_grain = !!(e->flags & VMDK_FLAG_ZERO_GRAIN);
    if (e->compressed && le16_at(h + K_COMPRESS_ALGO) != 1)
        return bad_ext(errp, e, "unsupported compression algorithm %u",
                       le16_at(h + K_COMPRESS_ALGO));
    if (e->compressed && !(e->flags & VMDK_FLAG_MARKERS))
        return bad_ext(errp, e, "compressed grains without markers are not supported");
    uint64_t gd = le64_at(h + K_GD);
    if (gd == VMDK_GD_AT_END) {
        /* stream-optimized: footer marker, footer, end-of-stream marker at the end */
        if (!e->compressed) return bad_ext(errp, e, "grain directory at the end of an "
                                           "uncompressed extent");
        if (fsize < 2048 || fsize % 512)
            return bad_ext(errp, e, "stream-optimized file size %" G_GUINT64_FORMAT " cannot "
                           "hold a footer", fsize);
        uint8_t f[1536];
        r = qs_block_pread(e->file, fsize - 1536, sizeof(f), f);
        if (r < 0) return fmt_errno(errp, r, "vmdk: could not read the footer of '%s'",
                                    e->filename);
        if (le32_at(f + 8) != 0 || le32_at(f + 12) != MARKER_FOOTER ||
            le32_at(f + 1024 + 8) != 0 || le32_at(f + 1024 + 12) != MARKER_EOS ||
            le32_at(f + 512) != VMDK4_MAGIC)
            return bad_ext(errp, e, "stream-optimized extent without a valid footer (marker "
                           "type %u, end marker type %u)", le32_at(f + 12), le32_at(f + 1036));
        if (!parse_kdmv(e, f + 512, true, errp)) return false;
        if (le64_at(f + 512 + K_GRAIN) * 512 != e->grain || le32_at(f + 512 + K_GTES) != e->gtes)
            return bad_ext(errp, e, "footer geometry differs from the header");
        gd = le64_at(f + 512 + K_GD);
        if (gd == VMDK_GD_AT_END) return bad_ext(errp, e, "footer has no grain directory");
        e->stream = true;
        e->next_alloc = fsize - 1536;
    } else {
        e->next_alloc = align_up(fsize, 512);
    }
    if (gd > fsize / 512) return bad_ext(errp, e, "grain directory sector %" G_GUINT64_FORMAT
                                         " is beyond the end of the file", gd);
    e->gd_offset = gd * 512;
    uint64_t need = div_up(e->sectors, (uint64_t)e->gtes * (e->grain / 512));
    if (need > UINT32_MAX) return bad_ext(errp, e, "too many grain tables (%" G_GUINT64_FORMAT ")", need);
    e->gd_entries = (uint32_t)need;
    if (!read_table(e, e->gd_offset, e->gd_entries, &e->gd, errp, "grain directory") ||
        !check_gd(e, e->gd, errp, "grain directory"))
        return false;
    uint64_t rgd = le64_at(h + K_RGD);
    if ((e->flags & VMDK_FLAG_RGD) && rgd && !e->stream) {
        if (rgd > fsize / 512) return bad_ext(errp, e, "redundant grain directory sector %"
                                              G_GUINT64_FORMAT " is beyond the end of the "
                                              "file", rgd);
        e->rgd_offset = rgd * 512;
        if (!read_table(e, e->rgd_offset, e->gd_entries, &e->rgd, errp,
                        "redundant grain directory") ||
            !check_gd(e, e->rgd, errp, "redundant grain directory"))
            return false;
    }
    if (e->stream && rdwr) {
        /* appending: every grain table lives in memory until the stream is finished */
        e->stream_gts = g_new0(uint32_t *, MAX(e->gd_entries, 1u));
        for (uint32_t i = 0; i < e->gd_entries; i++) {
            if (!e->gd[i]) continue;
            if (!read_table(e, (uint64_t)e->gd[i] * 512, e->gtes, &e->stream_gts[i], errp,
                            "grain table"))
                return false;
        }
    }
    return true;
}

void vmdk_sparse_close(VmdkExtent *e)
{
    if (e->gt_cache) g_hash_table_destroy(e->gt_cache);
    for (uint32_t i = 0; e->stream_gts && i < e->gd_entries; i++) g_free(e->stream_gts[i]);
    g_free(e->stream_gts);
    g_free(e->gd);
    g_free(e->rgd);
    g_free(e->dgrain);
    if (e->gt_starts) g_array_unref(e->gt_starts);
    if (e->gt_cache) g_mutex_clear(&e->gt_starts_lock);   /* both made by vmdk_sparse_open */
}

/* The grain table gd index i (NULL and *err = 0 if there is none). */
static uint32_t *get_gt(VmdkExtent *e, uint32_t i, int *err)
{
    *err = 0;
    if (e->stream_gts) return e->stream_gts[i];
    if (!e->gd[i]) return NULL;
    uint32_t *t = g_hash_table_lookup(e->gt_cache, GUINT_TO_POINTER(i));
    if (t) return t;
    uint64_t bytes = (uint64_t)e->gtes * 4;
    if (e->gt_cache_bytes + bytes > GT_CACHE_MAX) {
        g_hash_table_remove_all(e->gt_cache);
        e->gt_cache_bytes = 0;
    }
    t = g_malloc(bytes);
    int r = qs_block_pread(e->file, (uint64_t)e->gd[i] * 512, bytes, t);
    if (r < 0) {
        g_free(t);
        *err = r;
        return NULL;
    }
    for (uint32_t k = 0; k < e->gtes; k++) t[k] = GUINT32_FROM_LE(t[k]);
    g_hash_table_insert(e->gt_cache, GUINT_TO_POINTER(i), t);
    e->gt_cache_bytes += bytes;
    return t;
}

int vmdk_sparse_lookup(VmdkExtent *e, uint64_t off, uint64_t *host)
{
    uint64_t g = off / e->grain;
    uint32_t i = (uint32_t)(g / e->gtes), k = (uint32_t)(g % e->gtes);
    *host = 0;
    if (i >= e->gd_entries) return -EIO;
    int err;
    uint32_t *t = get_gt(e, i, &err);
    if (!t) return err;
    uint32_t v = t[k];
    if (v == VMDK_GTE_ZEROED && e->zeroed_grain) {
        *host = VMDK_GTE_ZEROED;
        return 0;
    }
    if (!v) return 0;
    uint64_t o = (uint64_t)v * 512;
    if (o + (e->compressed ? 512 : e->grain) > MAX(e->file->size, e->next_alloc) || v < 1)
        return -EIO;   /* points beyond the end of the file */
    *host = o;
    return 0;
}

/* libdeflate (de)compressors, one per thread: allocating one costs more than a grain.
 * Level 6 is zlib's default level (what QEMU and VMware write), at about twice zlib's
 * speed; the output is an ordinary zlib stream. */
static void free_compressor(gpointer c) { libdeflate_free_compressor(c); }
static void free_decompressor(gpointer d) { libdeflate_free_decompressor(d); }
static GPrivate compressor_key = G_PRIVATE_INIT(free_compressor);
static GPrivate decompressor_key = G_PRIVATE_INIT(free_decompressor);

static struct libdeflate_compressor *compressor(void)
{
    struct libdeflate_compressor *c = g_private_get(&compressor_key);
    if (!c && (c = libdeflate_alloc_compressor(6))) g_private_set(&compressor_key, c);
    return c;
}

static struct libdeflate_decompressor *decompressor(void)
{
    struct libdeflate_decompressor *d = g_private_get(&decompressor_key);
    if (!d && (d = libdeflate_alloc_decompressor())) g_private_set(&decompressor_key, d);
    return d;
}

/* Largest compressed size accepted in a grain marker. */
static uint64_t max_csize(const VmdkExtent *e) { return e->grain + e->grain / 8 + 1024; }

/* Bytes of grain g inside the extent: all of it but for a last grain that the extent's
 * end cuts short.  Only those are stored in a compressed grain (as QEMU writes it) and
 * decoded: a hostile header may pair a 1 MiB disk with 512 MiB grains. */
static size_t grain_buf_size(const VmdkExtent *e)
{
    return (size_t)(e->sectors ? MIN(e->grain, e->sectors * 512) : e->grain);
}

static size_t grain_len(const VmdkExtent *e, uint64_t g)
{
    uint64_t start = g * e->grain, end = e->sectors * 512;
    return start < end ? (size_t)MIN(e->grain, end - start) : grain_buf_size(e);
}

/* Inflate size bytes of a grain (zlib stream, or raw deflate as some writers produce)
 * into out, filling it to len bytes (grain_len).  A stream longer than len is refused,
 * but for a cut-short last grain, whose bytes past len lie beyond the extent. */
static int inflate_grain(VmdkExtent *e, const uint8_t *in, uint32_t size, uint8_t *out,
                         size_t len)
{
    struct libdeflate_decompressor *d = decompressor();
    size_t n = 0;
    if (d && (libdeflate_zlib_decompress(d, in, size, out, len, &n) == LIBDEFLATE_SUCCESS ||
              libdeflate_deflate_decompress(d, in, size, out, len, &n) ==
              LIBDEFLATE_SUCCESS)) {
        if (n < len) memset(out + n, 0, len - n);
        return 0;
    }
    /* what libdeflate refuses zlib may still take (it ignores bytes after the stream,
     * and stops where out is full) */
    static const int window_bits[] = { 15, -15 };   /* zlib stream, raw deflate */
    for (unsigned i = 0; i < G_N_ELEMENTS(window_bits); i++) {
        z_stream zs = { 0 };
        if (inflateInit2(&zs, window_bits[i]) != Z_OK) return -EIO;
        zs.next_in = (Bytef *)in;
        zs.avail_in = size;
        zs.next_out = out;
        zs.avail_out = (uInt)len;
        int z = inflate(&zs, Z_FINISH);
        size_t zn = zs.total_out;
        inflateEnd(&zs);
        if (z == Z_STREAM_END || (len < e->grain && zn == len)) {
            if (zn < len) memset(out + zn, 0, len - zn);
            return 0;
        }
    }
    return -EIO;
}

/* Compressed size in the grain marker at rec (avail bytes of the file from there on),
 * or 0 if the marker is cut short or the size is out of bounds. */
static uint32_t record_csize(const VmdkExtent *e, const uint8_t *rec, uint64_t avail)
{
    if (avail < 12) return 0;
    uint32_t size = le32_at(rec + 8);
    return size > max_csize(e) || size > avail - 12 ? 0 : size;
}

/* Inflate the grain whose marker is at rec (avail bytes of the file from there on). */
static int decode_grain(VmdkExtent *e, const uint8_t *rec, uint64_t avail, uint8_t *out,
                        size_t len)
{
    uint32_t size = record_csize(e, rec, avail);
    return size ? inflate_grain(e, rec + 12, size, out, len) : -EIO;
}

/* Leading bytes of grain g that csize bytes of deflate stream can fill: deflate inflates
 * at most 1032:1.  A partial read decodes into a buffer of this size, the rest of the
 * grain reading as zeros: a hostile header pairs a record of a few bytes with 512 MiB
 * grains, and a grain-sized buffer cost ASan half a second per read to map and unmap. */
static size_t grain_held(const VmdkExtent *e, uint64_t g, uint32_t csize)
{
    return (size_t)MIN((uint64_t)grain_len(e, g), (uint64_t)csize * 1032 + 1024);
}

/* Decode grain g from the record at rec for a partial read: *out gets a new buffer of
 * its first *held bytes. */
static int decode_grain_part(VmdkExtent *e, uint64_t g, const uint8_t *rec, uint64_t avail,
                             uint8_t **out, size_t *held)
{
    uint32_t size = record_csize(e, rec, avail);
    if (!size) return -EIO;
    size_t n = grain_held(e, g, size);
    uint8_t *buf = g_try_malloc(n);
    if (!buf) return -ENOMEM;
    int r = inflate_grain(e, rec + 12, size, buf, n);
    if (r < 0) {
        g_free(buf);
        return r;
    }
    *out = buf;
    *held = n;
    return 0;
}

/* Copy [in, in + n) of a grain whose first held bytes are in buf, the rest zeros. */
static void copy_held(const uint8_t *buf, size_t held, uint64_t in, size_t n, uint8_t *p)
{
    size_t have = in < held ? (size_t)MIN((uint64_t)n, held - in) : 0;
    memcpy(p, buf + in, have);
    memset(p + have, 0, n - have);
}

/* The grain record (marker and compressed bytes) at host, read whole; *size gets its
 * compressed size.  NULL with *err set if it cannot be read or names bytes past the file. */
static uint8_t *read_record(VmdkExtent *e, uint64_t host, uint32_t *size, int *err)
{
    uint8_t m[12];
    int r = qs_block_pread(e->file, host, 12, m);
    *size = r == 0 ? le32_at(m + 8) : 0;
    if (r == 0 && (!*size || *size > max_csize(e) || host + 12 + *size > e->file->size))
        r = -EIO;
    uint8_t *rec = r == 0 ? g_malloc(12 + (size_t)*size) : NULL;
    if (rec) {
        memcpy(rec, m, 12);
        r = qs_block_pread(e->file, host + 12, *size, rec + 12);
    }
    if (r < 0) {
        g_free(rec);
        *err = r;
        return NULL;
    }
    return rec;
}

/* Read and inflate the compressed grain whose marker is at host into out (len bytes). */
static int read_compressed(VmdkExtent *e, uint64_t host, uint8_t *out, size_t len)
{
    uint32_t size;
    int r = 0;
    g_autofree uint8_t *rec = read_record(e, host, &size, &r);
    return rec ? inflate_grain(e, rec + 12, size, out, len) : r;
}

/* Read [in, in + n) of the compressed grain g whose marker is at host into p. */
static int read_compressed_part(VmdkExtent *e, uint64_t g, uint64_t host, uint64_t in,
                                size_t n, uint8_t *p)
{
    uint32_t size;
    int r = 0;
    g_autofree uint8_t *rec = read_record(e, host, &size, &r);
    if (!rec) return r;
    g_autofree uint8_t *out = NULL;
    size_t held = 0;
    r = decode_grain_part(e, g, rec, 12 + (uint64_t)size, &out, &held);
    if (r == 0) copy_held(out, held, in, n, p);
    return r;
}

int vmdk_sparse_read(VmdkExtent *e, uint64_t off, size_t len, void *buf, QsBlock *bs,
                     uint64_t disk_off)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t in = off % e->grain;
        size_t n = (size_t)MIN((uint64_t)len, e->grain - in);
        uint64_t host;
        int r = vmdk_sparse_lookup(e, off, &host);
        if (r < 0) return r;
        if (host == 0) {
            r = vmdk_read_backing(bs, disk_off, n, p);
        } else if (host == VMDK_GTE_ZEROED) {
            memset(p, 0, n);
        } else if (e->compressed) {
            r = read_compressed_part(e, off / e->grain, host, in, n, p);
        } else {
            r = qs_block_pread(e->file, host + in, n, p);
        }
        if (r < 0) return r;
        p += n;
        off += n;
        disk_off += n;
        len -= n;
    }
    return 0;
}

static int write_le32(QsBlock *f, uint64_t off, uint32_t v)
{
    uint8_t b[4];
    put_le32(b, v);
    return qs_block_pwrite(f, off, 4, b, 0);
}

/* ---- where the grain tables are: a write to a grain may not land on one ---- */

static uint64_t gt_bytes(const VmdkExtent *e)
{
    return align_up((uint64_t)e->gtes * 4, 512);
}

/* How many of the sorted table starts are below end. */
static guint gt_below(const VmdkExtent *e, uint64_t end)
{
    const uint64_t *v = (const uint64_t *)(void *)e->gt_starts->data;
    guint lo = 0, hi = e->gt_starts->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (v[mid] < end) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void gt_index_build(VmdkExtent *e)
{
    e->gt_starts = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    for (int copy = 0; copy < 2; copy++) {
        const uint32_t *dir = copy ? e->rgd : e->gd;
        for (uint32_t i = 0; dir && i < e->gd_entries; i++) {
            uint64_t at = (uint64_t)dir[i] * 512;
            if (dir[i]) g_array_append_val(e->gt_starts, at);
        }
    }
    g_array_sort(e->gt_starts, cmp_u64);
}

static void gt_index_add(VmdkExtent *e, uint64_t at)
{
    g_mutex_lock(&e->gt_starts_lock);
    if (e->gt_starts) g_array_insert_val(e->gt_starts, gt_below(e, at), at);
    g_mutex_unlock(&e->gt_starts_lock);
}

/* Does [host, end) overlap a grain table?  The table starting last below end is the
 * only candidate: tables are all the same size. */
static bool hits_grain_table(VmdkExtent *e, uint64_t host, uint64_t end)
{
    g_mutex_lock(&e->gt_starts_lock);
    if (!e->gt_starts) gt_index_build(e);
    guint k = gt_below(e, end);
    bool hit = k > 0 && g_array_index(e->gt_starts, uint64_t, k - 1) + gt_bytes(e) > host;
    g_mutex_unlock(&e->gt_starts_lock);
    return hit;
}

/* Give gd entry i a zeroed grain table (and the redundant directory one). */
static int alloc_gt(VmdkExtent *e, uint32_t i)
{
    uint64_t bytes = gt_bytes(e);
    for (int copy = 0; copy < (e->rgd ? 2 : 1); copy++) {
        uint32_t *dir = copy ? e->rgd : e->gd;
        if (dir[i]) continue;
        uint64_t at = e->next_alloc;
        if (at / 512 > UINT32_MAX) return -ENOSPC;
        int r = fmt_write_zeros(e->file, at, bytes);
        if (r == 0) r = write_le32(e->file, (copy ? e->rgd_offset : e->gd_offset) + i * 4ull,
                                   (uint32_t)(at / 512));
        if (r < 0) return r;
        dir[i] = (uint32_t)(at / 512);
        e->next_alloc += bytes;
        gt_index_add(e, at);
    }
    return 0;
}

/* Whether [off, off + len) of the file holds the hosted header, the embedded descriptor
 * or a grain directory: a corrupt directory can place a grain table over them, and an
 * entry written there would leave an image that no longer opens. */
static bool on_extent_metadata(const VmdkExtent *e, uint64_t off, uint64_t len)
{
    uint64_t d_off = le64_at(e->header + K_DESC_OFF), d_len = le64_at(e->header + K_DESC_SIZE);
    bool hosted = le32_at(e->header) == VMDK4_MAGIC;
    uint64_t dirs = (uint64_t)e->gd_entries * 4;
    const uint64_t m[][2] = {
        { 0, hosted ? 512 : 0 },
        { d_off * 512, hosted && d_off && d_off <= UINT64_MAX / 1024 && d_len <= UINT32_MAX
                       ? d_len * 512 : 0 },
        { e->gd_offset, e->gd ? dirs : 0 },
        { e->rgd_offset, e->rgd ? dirs : 0 },
    };
    for (unsigned i = 0; i < G_N_ELEMENTS(m); i++)
        if (m[i][1] && off < m[i][0] + m[i][1] && m[i][0] < off + len) return true;
    return false;
}

/* Set grain table entry for grain g to v, in memory and on disk. */
static int set_gte(VmdkExtent *e, uint64_t g, uint32_t v)
{
    uint32_t i = (uint32_t)(g / e->gtes), k = (uint32_t)(g % e->gtes);
    if (e->stream_gts) {
        if (!e->stream_gts[i]) e->stream_gts[i] = g_new0(uint32_t, e->gtes);
        e->stream_gts[i][k] = v;
        e->stream_dirty = true;
        return 0;
    }
    int r = 0;
    if (!e->gd[i] || (e->rgd && !e->rgd[i])) r = alloc_gt(e, i);
    if (r < 0) return r;
    uint64_t at = (uint64_t)e->gd[i] * 512 + k * 4ull;
    uint64_t rat = e->rgd ? (uint64_t)e->rgd[i] * 512 + k * 4ull : 0;
    if (on_extent_metadata(e, at, 4) || (e->rgd && on_extent_metadata(e, rat, 4))) {
        qs_block_message("vmdk: '%s': grain table %u lies on the image's header, descriptor "
                         "or grain directory; write refused\n", e->filename, i);
        return -EIO;
    }
    r = write_le32(e->file, at, v);
    if (r == 0 && e->rgd) r = write_le32(e->file, rat, v);
    if (r < 0) return r;
    uint32_t *t = g_hash_table_lookup(e->gt_cache, GUINT_TO_POINTER(i));
    if (t) t[k] = v;
    return 0;
}

/* Compress the grain g (grain_len bytes at data) into out as it is stored: marker (LBA,
 * size), zlib stream, zeros up to a sector; returns the stored length or a negative errno.
 * out must hold grain_record_max(grain_len) bytes. */
static size_t grain_record_max(size_t len)
{
    struct libdeflate_compressor *c = compressor();
    return align_up(12 + (c ? libdeflate_zlib_compress_bound(c, len) : 0), 512);
}

static int64_t encode_grain(VmdkExtent *e, uint64_t g, const uint8_t *data, uint8_t *out,
                            size_t out_max)
{
    struct libdeflate_compressor *c = compressor();
    if (!c) return -ENOMEM;
    size_t clen = libdeflate_zlib_compress(c, data, grain_len(e, g), out + 12, out_max - 12);
    if (!clen) return -EIO;
    put_le64(out, g * (e->grain / 512));
    put_le32(out + 8, (uint32_t)clen);
    uint64_t total = align_up(12 + clen, 512);
    memset(out + 12 + clen, 0, total - 12 - clen);
    return (int64_t)total;
}

int vmdk_sparse_alloc_run(VmdkExtent *e, uint64_t g0, unsigned k, const void *data)
{
    if (e->read_only) return -EACCES;
    uint64_t at = e->next_alloc, bytes = (uint64_t)k * e->grain;
    if ((at + bytes - e->grain) / 512 > UINT32_MAX) return -ENOSPC;
    int r = qs_block_pwrite(e->file, at, (size_t)bytes, data, 0);
    if (r < 0) return r;
    e->next_alloc += bytes;
    /* the entries, one write per grain table (and per redundant one) */
    g_autofree uint8_t *le = g_malloc((size_t)MIN((uint64_t)k, e->gtes) * 4);
    for (uint64_t g = g0; g < g0 + k;) {
        uint32_t i = (uint32_t)(g / e->gtes), k0 = (uint32_t)(g % e->gtes);
        uint32_t cnt = (uint32_t)MIN(g0 + k - g, (uint64_t)(e->gtes - k0));
        if (!e->gd[i] || (e->rgd && !e->rgd[i])) r = alloc_gt(e, i);
        if (r < 0) return r;
        uint32_t *t = g_hash_table_lookup(e->gt_cache, GUINT_TO_POINTER(i));
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t v = (uint32_t)((at + (g + j - g0) * e->grain) / 512);
            put_le32(le + j * 4, v);
            if (t) t[k0 + j] = v;
        }
        r = qs_block_pwrite(e->file, (uint64_t)e->gd[i] * 512 + k0 * 4ull, cnt * 4, le, 0);
        if (r == 0 && e->rgd)
            r = qs_block_pwrite(e->file, (uint64_t)e->rgd[i] * 512 + k0 * 4ull, cnt * 4, le, 0);
        if (r < 0) {
            if (t) g_hash_table_remove(e->gt_cache, GUINT_TO_POINTER(i));   /* reread it */
            return r;
        }
        g += cnt;
    }
    return 0;
}

/* Append a compressed grain holding data (grain bytes) for grain g. */
static int append_compressed(VmdkExtent *e, uint64_t g, const uint8_t *data)
{
    size_t max = grain_record_max(grain_len(e, g));
    g_autofree uint8_t *out = g_malloc(max);
    int64_t total = encode_grain(e, g, data, out, max);
    if (total < 0) return (int)total;
    uint64_t at = e->next_alloc;
    if (at / 512 > UINT32_MAX) return -ENOSPC;
    int r = qs_block_pwrite(e->file, at, (size_t)total, out, 0);
    if (r < 0) return r;
    e->next_alloc += (uint64_t)total;
    return set_gte(e, g, (uint32_t)(at / 512));
}

/* Would a write to [host, host + len) hit the header, the embedded descriptor, a grain
 * directory or a grain table?  Only a corrupt grain table names such a grain; valid
 * grains start at the header's overhead (which holds the directories and the tables
 * QEMU preallocates) and never share a table's place (tables allocated later). */
static bool hits_metadata(VmdkExtent *e, uint64_t host, uint64_t len)
{
    if (e->kind != EXT_SPARSE) return false;
    uint64_t end = host + len;
    uint64_t overhead = le64_at(e->header + K_OVERHEAD);
    if (host < MAX(MIN(overhead, UINT64_MAX / 512) * 512, 512)) return true;
    uint64_t dbytes = align_up((uint64_t)e->gd_entries * 4, 512);
    if (host < e->gd_offset + dbytes && e->gd_offset < end) return true;
    if (e->rgd_offset && host < e->rgd_offset + dbytes && e->rgd_offset < end) return true;
    return hits_grain_table(e, host, end);
}

int vmdk_sparse_write_stored(VmdkExtent *e, uint64_t host, uint64_t in, size_t n,
                             const void *buf, bool zero)
{
    if (hits_metadata(e, host, in + n)) {
        /* writing there would destroy the image */
        qs_block_message("vmdk: '%s': a grain table entry names sector %" G_GUINT64_FORMAT
                         ", the image's metadata; write refused\n", e->filename, host / 512);
        return -EIO;
    }
    return zero ? fmt_write_zeros(e->file, host + in, n)
                : qs_block_pwrite(e->file, host + in, n, buf, 0);
}

static int new_grain_in_place(VmdkExtent *e, uint64_t g, uint64_t in, size_t n, const void *p)
{
    uint64_t at = e->next_alloc;
    if (at / 512 > UINT32_MAX) return -ENOSPC;
    int r = fmt_write_zeros(e->file, at, in);
    if (r == 0 && n) r = qs_block_pwrite(e->file, at + in, n, p, 0);
    if (r == 0) r = fmt_write_zeros(e->file, at + in + n, e->grain - in - n);
    if (r < 0) return r;
    e->next_alloc += e->grain;
    return set_gte(e, g, (uint32_t)(at / 512));
}

int vmdk_sparse_write(VmdkExtent *e, uint64_t off, size_t len, const void *buf, QsBlock *bs,
                      uint64_t disk_off, bool zero)
{
    if (e->read_only) return -EACCES;
    const uint8_t *p = buf;
    g_autofree uint8_t *gbuf = NULL;
    while (len) {
        uint64_t g = off / e->grain, in = off % e->grain;
        size_t n = (size_t)MIN((uint64_t)len, e->grain - in);
        uint64_t host;
        int r = vmdk_sparse_lookup(e, off, &host);
        if (r < 0) return r;
        if (zero && e->zeroed_grain && !e->compressed && n == e->grain) {
            r = set_gte(e, g, VMDK_GTE_ZEROED);
        } else if (zero && (host == VMDK_GTE_ZEROED || (host == 0 && !bs->backing))) {
            /* the grain already reads as zeros: nothing to store (a compressed extent
             * would otherwise deflate a whole grain, up to 1 GiB, to say so) */
        } else if (host > VMDK_GTE_ZEROED && !e->compressed) {
            r = vmdk_sparse_write_stored(e, host, in, n, p, zero);
        } else if (!e->compressed && (host == VMDK_GTE_ZEROED || (host == 0 && !bs->backing))) {
            /* the grain reads as zeros: it is allocated at the end of the file with the
             * data in place and the rest zeroed by the file (a hole), so a grain of up
             * to 1 GiB needs no grain-sized buffer.  The entry comes last. */
            r = new_grain_in_place(e, g, in, n, p);
        } else {
            /* a new grain: old content (backing, zeros or the compressed grain) + data;
             * a compressed one only up to the extent's end */
            size_t used = e->compressed ? grain_len(e, g) : e->grain;
            if (e->compressed && n < used && used > VMDK_MAX_MERGED_GRAIN) {
                /* QEMU refuses every write of part of a compressed grain; we merge it
                 * into the grain's content, but not for grains of real writers' sizes
                 * many times over: each such write would inflate and deflate a whole
                 * grain (a 4 KiB write into a 512 MiB grain: seconds of CPU) */
                qs_block_message("vmdk: '%s': writing part of a compressed grain of %"
                                 G_GUINT64_FORMAT " bytes (more than %u) is not supported\n",
                                 e->filename, e->grain, VMDK_MAX_MERGED_GRAIN);
                return -EINVAL;
            }
            if (!gbuf) gbuf = g_malloc(e->compressed ? grain_buf_size(e) : e->grain);
            if (n < used) {
                if (host == 0) r = qs_block_read_backing(bs, disk_off - in, used, gbuf);
                else if (host == VMDK_GTE_ZEROED) memset(gbuf, 0, used);
                else r = read_compressed(e, host, gbuf, used);
                if (r < 0) return r;
            }
            if (zero) memset(gbuf + in, 0, n);
            else memcpy(gbuf + in, p, n);
            if (e->compressed) {
                r = append_compressed(e, g, gbuf);
            } else {
                uint64_t at = e->next_alloc;
                if (at / 512 > UINT32_MAX) return -ENOSPC;
                r = qs_block_pwrite(e->file, at, e->grain, gbuf, 0);
                if (r == 0) {
                    e->next_alloc += e->grain;
                    r = set_gte(e, g, (uint32_t)(at / 512));
                }
            }
        }
        if (r < 0) return r;
        if (!zero) p += n;
        off += n;
        disk_off += n;
        len -= n;
    }
    return 0;
}

/* ---- compressed extents: batched grain I/O outside the driver lock ---- */

static unsigned batch_grains(const VmdkExtent *e)
{
    return (unsigned)MAX(1u, MIN((uint64_t)BATCH_GRAINS, BATCH_BYTES / e->grain));
}

/* Copy [in, in + n) of the grain at host from the decoded-grain cache, if it holds it. */
static bool cached_copy(VmdkExtent *e, GMutex *lock, uint64_t host, uint64_t in, size_t n,
                        uint8_t *p)
{
    g_mutex_lock(lock);
    bool hit = e->dgrain && e->dgrain_host == host && e->dgrain_next_alloc == e->next_alloc;
    if (hit) copy_held(e->dgrain, e->dgrain_held, in, n, p);
    g_mutex_unlock(lock);
    return hit;
}

/* The decoded grain (its first held bytes) becomes the cache, which takes buf. */
static void keep_decoded(VmdkExtent *e, GMutex *lock, uint64_t host, uint8_t *buf,
                         size_t held)
{
    g_mutex_lock(lock);
    uint8_t *old = e->dgrain;
    e->dgrain = buf;
    e->dgrain_held = held;
    e->dgrain_host = host;
    e->dgrain_next_alloc = e->next_alloc;
    g_mutex_unlock(lock);
    g_free(old);
}

int vmdk_compressed_read(VmdkExtent *e, GMutex *lock, uint64_t off, size_t len, void *buf,
                         QsBlock *bs, uint64_t disk_off)
{
    uint8_t *p = buf;
    uint64_t hosts[BATCH_GRAINS];
    g_autofree uint8_t *rbuf = NULL;
    uint64_t rbuf_size = 0;
    int r = 0;
    while (len && r == 0) {
        /* the grains' places, looked up together; their data is read without the lock
         * (a compressed grain is never rewritten in place, only replaced elsewhere) */
        uint64_t g0 = off / e->grain;
        unsigned k = (unsigned)MIN((uint64_t)batch_grains(e), (off + len - 1) / e->grain - g0 + 1);
        g_mutex_lock(lock);
        for (unsigned i = 0; i < k && r == 0; i++)
            r = vmdk_sparse_lookup(e, (g0 + i) * e->grain, &hosts[i]);
        g_mutex_unlock(lock);
        unsigned i = 0;
        while (i < k && r == 0) {
            if (hosts[i] <= VMDK_GTE_ZEROED) {
                size_t n = (size_t)MIN((uint64_t)len, e->grain - off % e->grain);
                if (hosts[i] == VMDK_GTE_ZEROED) memset(p, 0, n);
                else r = vmdk_read_backing(bs, disk_off, n, p);
                p += n;
                off += n;
                disk_off += n;
                len -= n;
                i++;
                continue;
            }
            /* a run of grains stored one after another: one read for all of them */
            unsigned j = i + 1;
            while (j < k && hosts[j] > hosts[j - 1] &&
                   hosts[j] - hosts[j - 1] <= 12 + max_csize(e) + 511)
                j++;
            uint64_t base = hosts[i], fsize = e->file->size;
            if (base >= fsize) return -EIO;
            uint64_t span = MIN(hosts[j - 1] - base + 12 + max_csize(e), fsize - base);
            if (span > rbuf_size) {
                g_free(rbuf);
                rbuf = g_try_malloc(span);
                if (!rbuf) return -ENOMEM;
                rbuf_size = span;
            }
            r = qs_block_pread(e->file, base, span, rbuf);
            for (; i < j && r == 0; i++) {
                uint64_t in = off % e->grain, rel = hosts[i] - base;
                size_t n = (size_t)MIN((uint64_t)len, e->grain - in);
                uint64_t avail = rel < span ? span - rel : 0;
                if (in == 0 && n == e->grain) {
                    r = decode_grain(e, rbuf + rel, avail, p, n);
                } else if (cached_copy(e, lock, hosts[i], in, n, p)) {
                    /* decoded by an earlier partial read */
                } else {
                    uint8_t *gbuf = NULL;
                    size_t held = 0;
                    r = decode_grain_part(e, g0 + i, rbuf + rel, avail, &gbuf, &held);
                    if (r == 0) {
                        copy_held(gbuf, held, in, n, p);
                        keep_decoded(e, lock, hosts[i], gbuf, held);
                    }
                }
                p += n;
                off += n;
                disk_off += n;
                len -= n;
            }
        }
    }
    return r;
}

typedef struct EncodeJob {
    VmdkExtent *e;
    uint64_t g0;            /* first grain */
    const uint8_t *data;    /* grain-aligned data of all the grains */
    uint8_t *out;           /* slot i at out + i * slot */
    size_t slot;
    int64_t *len;           /* stored length of each grain */
} EncodeJob;

static int encode_one(uint64_t i, void *opaque)
{
    EncodeJob *j = opaque;
    int64_t n = encode_grain(j->e, j->g0 + i, j->data + i * j->e->grain, j->out + i * j->slot,
                             j->slot);
    j->len[i] = n;
    return n < 0 ? (int)n : 0;
}

/* Whole grains [g0, g0 + k): compressed on the block thread pool without the lock, then
 * appended in grain order with one write, then entered in the grain tables. */
static int write_grain_batch(VmdkExtent *e, GMutex *lock, uint64_t g0, unsigned k,
                             const uint8_t *data)
{
    size_t slot = grain_record_max(e->grain);
    if (slot <= 512) return -ENOMEM;
    g_autofree uint8_t *out = g_try_malloc((size_t)k * slot);
    g_autofree int64_t *lens = g_new(int64_t, k);
    if (!out) return -ENOMEM;
    EncodeJob job = { e, g0, data, out, slot, lens };
    unsigned threads = MIN(k, (unsigned)g_get_num_processors());
    int r = qs_block_parallel_for(threads, k, encode_one, &job);
    if (r < 0) return r;
    /* pack the records (each slot moves only towards the front) */
    uint64_t total = 0;
    for (unsigned i = 0; i < k; i++) {
        if (i) memmove(out + total, out + i * slot, (size_t)lens[i]);
        total += (uint64_t)lens[i];
    }
    g_mutex_lock(lock);
    uint64_t at = e->next_alloc;
    if (at / 512 + total / 512 > UINT32_MAX) r = -ENOSPC;
    else e->next_alloc += total;
    g_mutex_unlock(lock);
    if (r == 0) r = qs_block_pwrite(e->file, at, (size_t)total, out, 0);
    if (r < 0) return r;
    g_mutex_lock(lock);
    for (unsigned i = 0; i < k && r == 0; i++) {
        r = set_gte(e, g0 + i, (uint32_t)(at / 512));
        at += (uint64_t)lens[i];
    }
    g_mutex_unlock(lock);
    return r;
}

int vmdk_compressed_write(VmdkExtent *e, GMutex *lock, uint64_t off, size_t len,
                          const void *buf, QsBlock *bs, uint64_t disk_off)
{
    if (e->read_only) return -EACCES;
    const uint8_t *p = buf;
    while (len) {
        uint64_t in = off % e->grain;
        int r;
        size_t n;
        if (in == 0 && len >= e->grain) {
            unsigned k = (unsigned)MIN((uint64_t)batch_grains(e), len / e->grain);
            n = (size_t)(k * e->grain);
            r = write_grain_batch(e, lock, off / e->grain, k, p);
        } else {
            /* part of a grain: merged with its old content under the lock */
            n = (size_t)MIN((uint64_t)len, e->grain - in);
            g_mutex_lock(lock);
            r = vmdk_sparse_write(e, off, n, p, bs, disk_off, false);
            g_mutex_unlock(lock);
        }
        if (r < 0) return r;
        p += n;
        off += n;
        disk_off += n;
        len -= n;
    }
    return 0;
}

static int write_marker(VmdkExtent *e, uint64_t sectors, uint32_t type)
{
    uint8_t m[512] = { 0 };
    put_le64(m, sectors);
    put_le32(m + 12, type);
    int r = qs_block_pwrite(e->file, e->next_alloc, 512, m, 0);
    if (r == 0) e->next_alloc += 512;
    return r;
}

int vmdk_stream_finish(VmdkExtent *e)
{
    if (!e->stream_gts || !e->stream_dirty) return 0;
    uint64_t gt_bytes = align_up((uint64_t)e->gtes * 4, 512);
    g_autofree uint8_t *t = g_malloc0(MAX(gt_bytes, align_up((uint64_t)e->gd_entries * 4, 512)));
    int r = 0;
    for (uint32_t i = 0; i < e->gd_entries && r == 0; i++) {
        memset(t, 0, gt_bytes);
        for (uint32_t k = 0; e->stream_gts[i] && k < e->gtes; k++)
            put_le32(t + k * 4, e->stream_gts[i][k]);
        r = write_marker(e, gt_bytes / 512, MARKER_GT);
        if (r == 0) {
            e->gd[i] = (uint32_t)(e->next_alloc / 512);
            r = qs_block_pwrite(e->file, e->next_alloc, gt_bytes, t, 0);
            e->next_alloc += gt_bytes;
        }
    }
    uint64_t gd_bytes = align_up((uint64_t)e->gd_entries * 4, 512);
    if (r == 0) r = write_marker(e, gd_bytes / 512, MARKER_GD);
    uint64_t gd_at = e->next_alloc;
    if (r == 0) {
        memset(t, 0, gd_bytes);
        for (uint32_t i = 0; i < e->gd_entries; i++) put_le32(t + i * 4, e->gd[i]);
        r = qs_block_pwrite(e->file, gd_at, gd_bytes, t, 0);
        e->next_alloc += gd_bytes;
    }
    if (r == 0) r = write_marker(e, 1, MARKER_FOOTER);
    if (r == 0) {
        uint8_t f[512];
        memcpy(f, e->header, 512);
        put_le64(f + K_GD, gd_at / 512);
        r = qs_block_pwrite(e->file, e->next_alloc, 512, f, 0);
        e->next_alloc += 512;
    }
    if (r == 0) r = write_marker(e, 0, MARKER_EOS);
    if (r == 0 && e->file->size > e->next_alloc)
        r = qs_block_truncate(e->file, e->next_alloc, true, QS_PREALLOC_OFF, NULL) ? 0 : -EIO;
    if (r == 0) {
        e->stream_dirty = false;
        e->next_alloc -= 1536;   /* further grains replace the footer */
    }
    return r;
}

int vmdk_sparse_grow(VmdkExtent *e, uint64_t sectors)
{
    uint64_t span = (uint64_t)e->gtes * (e->grain / 512);
    uint64_t need = div_up(sectors, span), old = e->gd_entries;
    uint64_t room = align_up(old * 4, 512) / 4;   /* the directories' sectors */
    if (need > room) return -EFBIG;
    for (int copy = 0; copy < (e->rgd ? 2 : 1); copy++) {
        uint32_t **dir = copy ? &e->rgd : &e->gd;
        uint32_t *d = g_try_realloc(*dir, MAX(need, 1) * 4);
        if (!d) return -ENOMEM;
        memset(d + old, 0, (need - old) * 4);
        *dir = d;
    }
    /* every table present, as QEMU (which never allocates one) needs to write there */
    e->gd_entries = (uint32_t)need;
    for (uint64_t i = old; i < need; i++) {
        int r = alloc_gt(e, (uint32_t)i);
        if (r < 0) return r;
    }
    put_le64(e->header + K_CAPACITY, sectors);
    int r = qs_block_pwrite(e->file, 0, 512, e->header, 0);
    if (r < 0) return r;
    e->sectors = sectors;
    return 0;
}

typedef struct Used {
    uint64_t off, len;
} Used;

static int cmp_used(const void *a, const void *b)
{
    const Used *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Leaked space of a plain hosted sparse extent: parts of the file after the header's
 * overhead that no grain, grain table or directory uses.  Each gap is reported and
 * counted in grains; with fix, a gap that ends the file is cut off (one inside the file
 * cannot be given back: it stays counted). */
static void check_leaks(VmdkExtent *e, GArray *used, QsBlockCheckResult *res, int fix)
{
    uint64_t fsize = e->file->size;
    uint64_t tbytes = align_up((uint64_t)e->gtes * 4, 512);
    uint64_t dbytes = align_up((uint64_t)e->gd_entries * 4, 512);
    for (uint32_t i = 0; i < e->gd_entries; i++) {
        if (e->gd[i]) g_array_append_val(used, ((Used){ (uint64_t)e->gd[i] * 512, tbytes }));
        if (e->rgd && e->rgd[i])
            g_array_append_val(used, ((Used){ (uint64_t)e->rgd[i] * 512, tbytes }));
    }
    g_array_append_val(used, ((Used){ e->gd_offset, dbytes }));
    if (e->rgd) g_array_append_val(used, ((Used){ e->rgd_offset, dbytes }));
    /* the header sector and the embedded descriptor, whatever a corrupt overhead says:
     * a repair that cut the file before them would destroy the image */
    uint64_t overhead = le64_at(e->header + K_OVERHEAD);
    uint64_t desc_off = le64_at(e->header + K_DESC_OFF), desc_size = le64_at(e->header + K_DESC_SIZE);
    g_array_append_val(used, ((Used){ 0, overhead <= fsize / 512 ? MAX(overhead * 512, 512) : fsize }));
    if (desc_off && desc_size && desc_off <= fsize / 512 && desc_size <= fsize / 512)
        g_array_append_val(used, ((Used){ desc_off * 512, desc_size * 512 }));
    g_array_sort(used, cmp_used);
    uint64_t at = 0;
    for (guint k = 0; k <= used->len; k++) {
        uint64_t next = k < used->len ? g_array_index(used, Used, k).off : fsize;
        if (next > fsize) next = fsize;
        /* space before the next grain boundary is padding: QEMU places grains there */
        uint64_t from = align_up(at, e->grain);
        if (next > from) {
            uint64_t n = div_up(next - from, e->grain);
            bool tail = k == used->len;
            qs_block_message("%s: %" G_GUINT64_FORMAT " bytes at offset %#" G_GINT64_MODIFIER
                    "x of '%s' are not used by any grain or grain table\n",
                    tail && (fix & QS_CHECK_FIX_LEAKS) ? "Repairing" : "Leaked",
                    next - at, at, e->filename);
            GError *err = NULL;
            if (tail && (fix & QS_CHECK_FIX_LEAKS) &&
                qs_block_truncate(e->file, at, true, QS_PREALLOC_OFF, &err)) {
                res->leaks_fixed += (int)n;
                e->next_alloc = at;
            } else {
                res->leaks += (int)n;
                g_clear_error(&err);
            }
        }
        if (k < used->len) at = MAX(at, next + g_array_index(used, Used, k).len);
    }
}

/* As QEMU's check: grain table entries that point past the end of the file are
 * corruptions (with fix: set to 0, the grain reads from the parent or as zeros), a grain
 * used twice is one too; beyond QEMU, leaked space of plain sparse extents. */
bool vmdk_sparse_check(VmdkExtent *e, QsBlockCheckResult *res, int fix)
{
    uint64_t fsize = e->file->size;
    g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_autoptr(GArray) used = g_array_new(FALSE, FALSE, sizeof(Used));
    uint64_t grains = div_up(e->sectors, e->grain / 512);
    bool plain = e->kind == EXT_SPARSE && !e->compressed && !e->stream;
    bool repair = (fix & QS_CHECK_FIX_ERRORS) && plain && !e->read_only;
    for (uint64_t g = 0; g < grains; g++) {
        uint64_t host;
        int r = vmdk_sparse_lookup(e, g * e->grain, &host);
        bool past = r == -EIO || (r == 0 && host > VMDK_GTE_ZEROED && !e->compressed &&
                                  host + e->grain > fsize);
        if (past && repair) {
            /* a grain cut by the end of the file keeps what is left (the rest reads as
             * zeros, as QEMU reads it); one wholly past the end is dropped */
            int err;
            uint32_t *t = get_gt(e, (uint32_t)(g / e->gtes), &err);
            uint64_t o = t ? (uint64_t)t[g % e->gtes] * 512 : 0;
            GError *gerr = NULL;
            bool kept = o && o < e->file->size &&
                        qs_block_truncate(e->file, o + e->grain, false, QS_PREALLOC_OFF, &gerr);
            g_clear_error(&gerr);
            if (kept || set_gte(e, g, 0) == 0) {
                qs_block_message("Repairing cluster offset for sector %" G_GUINT64_FORMAT " of "
                        "'%s': it pointed after EOF, %s\n", g * (e->grain / 512), e->filename,
                        kept ? "the file is extended to hold the grain"
                             : "the grain is unallocated now");
                res->corruptions_fixed++;
                if (kept) {
                    fsize = e->file->size;
                    e->next_alloc = MAX(e->next_alloc, fsize);
                    res->allocated_clusters++;
                    g_hash_table_add(seen, GSIZE_TO_POINTER(o));
                    g_array_append_val(used, ((Used){ o, e->grain }));
                }
                continue;
            }
        }
        if (past) {
            qs_block_message("ERROR: cluster offset for sector %" G_GUINT64_FORMAT " of '%s' "
                    "points after EOF\n", g * (e->grain / 512), e->filename);
            res->corruptions++;
            continue;
        }
        if (r < 0) {
            res->check_errors++;
            continue;
        }
        if (host <= VMDK_GTE_ZEROED) continue;
        res->allocated_clusters++;
        if (g_hash_table_contains(seen, GSIZE_TO_POINTER(host))) {
            qs_block_message("ERROR: grain at offset %#" G_GINT64_MODIFIER "x of '%s' is used "
                    "twice (sector %" G_GUINT64_FORMAT ")\n", host, e->filename,
                    g * (e->grain / 512));
            res->corruptions++;
        } else {
            g_hash_table_add(seen, GSIZE_TO_POINTER(host));
            g_array_append_val(used, ((Used){ host, e->grain }));
        }
    }
    res->total_clusters += grains;
    if (plain && !res->check_errors)
        check_leaks(e, used, res, e->read_only ? 0 : fix);
    return true;
}

bool vmdk_sparse_create(const char *filename, uint64_t sectors, bool stream, bool zeroed,
                        const char *desc, GError **errp)
{
    const uint64_t grain = 128, gtes = 512, desc_sectors = 20;
    uint64_t gt_count = div_up(sectors, gtes * grain);
    uint64_t gt_sectors = gtes * 4 / 512, gd_sectors = div_up(gt_count * 4, 512);
    uint8_t h[512] = { 0 };
    put_le32(h + K_MAGIC, VMDK4_MAGIC);
    put_le32(h + K_VERSION, stream ? 3 : zeroed ? 2 : 1);
    put_le32(h + K_FLAGS, VMDK_FLAG_NL_DETECT | (stream ? VMDK_FLAG_COMPRESS | VMDK_FLAG_MARKERS
                                                 : VMDK_FLAG_RGD) |
                          (zeroed && !stream ? VMDK_FLAG_ZERO_GRAIN : 0));
    put_le64(h + K_CAPACITY, sectors);
    put_le64(h + K_GRAIN, grain);
    put_le64(h + K_DESC_OFF, desc ? 1 : 0);
    put_le64(h + K_DESC_SIZE, desc ? desc_sectors : 0);
    put_le32(h + K_GTES, (uint32_t)gtes);
    uint64_t rgd = 1 + (desc ? desc_sectors : 0);
    uint64_t rgt = rgd + gd_sectors, gd = rgt + gt_count * gt_sectors;
    uint64_t gt = gd + gd_sectors, end = gt + gt_count * gt_sectors;
    uint64_t overhead = stream ? align_up(rgd, grain) : align_up(end, grain);
    put_le64(h + K_RGD, stream ? 0 : rgd);
    put_le64(h + K_GD, stream ? VMDK_GD_AT_END : gd);
    put_le64(h + K_OVERHEAD, overhead);
    h[K_NL] = '\n';
    h[K_NL + 1] = ' ';
    h[K_NL + 2] = '\r';
    h[K_NL + 3] = '\n';
    if (stream) put_le16(h + K_COMPRESS_ALGO, 1);
    if (desc && strlen(desc) > desc_sectors * 512)
        return fmt_err(errp, "vmdk: descriptor of %zu bytes does not fit", strlen(desc));
    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    int r = qs_block_pwrite(f, 0, 512, h, 0);
    if (r == 0 && desc) r = qs_block_pwrite(f, 512, strlen(desc), desc, 0);
    /* both directories point at their preallocated, zeroed grain tables */
    for (int copy = 0; copy < 2 && r == 0 && !stream; copy++) {
        uint64_t dir = copy ? gd : rgd, tabs = copy ? gt : rgt;
        uint64_t bytes = gd_sectors * 512;
        g_autofree uint8_t *t = g_malloc0(bytes);
        for (uint64_t i = 0; i < gt_count; i++) put_le32(t + i * 4, (uint32_t)(tabs + i * gt_sectors));
        r = qs_block_pwrite(f, dir * 512, bytes, t, 0);
    }
    if (r == 0) r = fmt_write_zeros(f, MAX(f->size, 512u), overhead * 512 - MAX(f->size, 512u));
    if (r == 0 && stream) {
        /* an empty stream: tables, directory, footer and end-of-stream marker */
        VmdkExtent e = { .file = f, .filename = (char *)filename, .grain = grain * 512,
                         .gtes = (uint32_t)gtes, .gd_entries = (uint32_t)gt_count,
                         .next_alloc = overhead * 512, .stream_dirty = true };
        memcpy(e.header, h, 512);
        e.gd = g_new0(uint32_t, MAX(gt_count, 1u));
        e.stream_gts = g_new0(uint32_t *, MAX(gt_count, 1u));
        r = vmdk_stream_finish(&e);
        g_free(e.gd);
        g_free(e.stream_gts);
    }
    if (r == 0) r = qs_block_flush(f);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "vmdk: could not write '%s'", filename);
    return true;
}
