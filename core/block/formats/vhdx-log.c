/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The VHDX log: CRC-32C, finding the active sequence of a dirty log (each entry's
 * checksum, GUID, descriptors and sequence numbers checked), replay, and journaled writes. */
#include <string.h>
#include "vhdx.h"

/* ---- CRC-32C (Castagnoli, reflected 0x82f63b78), slice-by-8 ---- */

static uint32_t crc_tab[8][256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t vhdx_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    static gsize once;
    if (g_once_init_enter(&once)) {
        crc_init();
        g_once_init_leave(&once, 1);
    }
    const uint8_t *p = buf;
    while (len >= 8) {
        uint32_t lo = crc ^ le32_at(p), hi = le32_at(p + 4);
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
              crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
              crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
              crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
/* SSE4.2's crc32 instruction computes exactly this CRC (same polynomial, reflected, no
 * inversions), 8 bytes per instruction: every open checksums two 64 KiB region tables. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);   /* little-endian host: the bytes in order */
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len)
{
    static int hw = -1;   /* a benign race: every thread computes the same answer */
    if (hw < 0) hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    return hw ? crc32c_sse42(crc, buf, len) : vhdx_crc32c_sw(crc, buf, len);
}
#else
uint32_t vhdx_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return vhdx_crc32c_sw(crc, buf, len);
}
#endif

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t c = vhdx_crc32c(0xffffffffu, buf, crc_off);
    c = vhdx_crc32c(c, zero, 4);
    c = vhdx_crc32c(c, buf + crc_off + 4, len - crc_off - 4);
    return ~c;
}

/* ---- reading the log ---- */

enum {   /* entry header */
    E_SIG = 0, E_CHECKSUM = 4, E_LENGTH = 8, E_TAIL = 12, E_SEQ = 16, E_DESC_COUNT = 24,
    E_GUID = 32, E_FLUSHED = 48, E_LAST = 56, E_HEADER = 64,
};
enum {   /* descriptors (32 bytes) and data sectors */
    D_SIG = 0, D_TRAILING = 4, D_ZERO_LENGTH = 8, D_LEADING = 8, D_FILE_OFFSET = 16,
    D_SEQ = 24, D_SIZE = 32,
};
#define SIG_LOGE 0x65676f6cu   /* "loge" */
#define SIG_ZERO 0x6f72657au   /* "zero" */
#define SIG_DESC 0x63736564u   /* "desc" */
#define SIG_DATA 0x61746164u   /* "data" */

typedef struct Entry {
    uint32_t pos, len, tail, ndesc, desc_sectors;
    uint64_t seq, flushed, last;
} Entry;

/* Read len bytes of the circular log at pos. */
static int log_read(QsBlock *bs, uint64_t pos, size_t len, void *buf)
{
    Vhdx *s = bs->opaque;
    uint8_t *p = buf;
    while (len) {
        pos %= s->log_length;
        size_t n = (size_t)MIN((uint64_t)len, s->log_length - pos);
        int r = qs_block_pread(bs->file, s->log_offset + pos, n, p);
        if (r < 0) return r;
        p += n;
        pos += n;
        len -= n;
    }
    return 0;
}

static uint64_t desc_sectors_for(uint64_t ndesc)
{
    return div_up(E_HEADER + ndesc * D_SIZE, VHDX_LOG_SECTOR);
}

/* Is there a valid entry at pos?  1 yes, 0 no (*why says which field), <0 errno.
 * *budget bounds the bytes checksummed over the whole search. */
static int read_entry(QsBlock *bs, uint32_t pos, const uint8_t *guid, Entry *e,
                      uint64_t *budget, const char **why)
{
    Vhdx *s = bs->opaque;
    uint8_t h[E_HEADER];
    int r = log_read(bs, pos, sizeof(h), h);
    if (r < 0) return r;
    *why = "signature";
    if (le32_at(h + E_SIG) != SIG_LOGE) return 0;
    *why = "log GUID";
    if (memcmp(h + E_GUID, guid, 16)) return 0;
    e->pos = pos;
    e->len = le32_at(h + E_LENGTH);
    e->tail = le32_at(h + E_TAIL);
    e->seq = le64_at(h + E_SEQ);
    e->ndesc = le32_at(h + E_DESC_COUNT);
    e->flushed = le64_at(h + E_FLUSHED);
    e->last = le64_at(h + E_LAST);
    *why = "entry length";
    if (!e->len || e->len % VHDX_LOG_SECTOR || e->len > s->log_length) return 0;
    *why = "tail";
    if (e->tail % VHDX_LOG_SECTOR || e->tail >= s->log_length) return 0;
    *why = "descriptor count";
    uint64_t ds = desc_sectors_for(e->ndesc);
    if (ds * VHDX_LOG_SECTOR > e->len) return 0;
    e->desc_sectors = (uint32_t)ds;
    *why = "sequence number";
    if (e->seq == 0) return 0;
    *why = "flushed/last file offsets";
    if (e->flushed > e->last || e->last > (uint64_t)QS_BLOCK_MAX_SIZE) return 0;
    if (e->len > *budget) return -E2BIG;
    *budget -= e->len;
    /* checksum over the whole entry, in chunks */
    size_t chunk = 1u << 20;
    g_autofree uint8_t *buf = g_malloc(MIN((size_t)e->len, chunk));
    uint32_t crc = 0xffffffffu;
    for (uint32_t done = 0; done < e->len;) {
        size_t n = MIN((size_t)(e->len - done), chunk);
        r = log_read(bs, (uint64_t)pos + done, n, buf);
        if (r < 0) return r;
        if (done == 0) memset(buf + E_CHECKSUM, 0, 4);
        crc = vhdx_crc32c(crc, buf, n);
        done += (uint32_t)n;
    }
    *why = "checksum";
    if (~crc != le32_at(h + E_CHECKSUM)) return 0;
    /* descriptors: signatures, sequence numbers, alignment; data sectors match them */
    uint64_t ndata = 0;
    uint8_t sec[VHDX_LOG_SECTOR];
    for (uint32_t k = 0; k < e->ndesc; k++) {
        uint64_t at = E_HEADER + (uint64_t)k * D_SIZE;
        uint8_t d[D_SIZE];
        r = log_read(bs, pos + at, D_SIZE, d);
        if (r < 0) return r;
        uint32_t sig = le32_at(d + D_SIG);
        *why = "descriptor signature";
        if (sig != SIG_ZERO && sig != SIG_DESC) return 0;
        *why = "descriptor sequence number";
        if (le64_at(d + D_SEQ) != e->seq) return 0;
        *why = "descriptor file offset";
        if (le64_at(d + D_FILE_OFFSET) % VHDX_LOG_SECTOR) return 0;
        if (sig == SIG_ZERO) {
            *why = "zero descriptor length";
            if (le64_at(d + D_ZERO_LENGTH) % VHDX_LOG_SECTOR) return 0;
            continue;
        }
        uint64_t spos = (uint64_t)pos + (e->desc_sectors + ndata) * VHDX_LOG_SECTOR;
        ndata++;
        *why = "number of data sectors";
        if ((e->desc_sectors + ndata) * VHDX_LOG_SECTOR > e->len) return 0;
        r = log_read(bs, spos, sizeof(sec), sec);
        if (r < 0) return r;
        *why = "data sector signature or sequence number";
        if (le32_at(sec) != SIG_DATA || le32_at(sec + 4) != (uint32_t)(e->seq >> 32) ||
            le32_at(sec + VHDX_LOG_SECTOR - 4) != (uint32_t)e->seq)
            return 0;
    }
    *why = "entry length (descriptors and data sectors)";
    if ((e->desc_sectors + ndata) * VHDX_LOG_SECTOR != e->len) return 0;
    return 1;
}

/* Is [off, off+len) a place a log entry may write? */
static bool target_ok(Vhdx *s, uint64_t off, uint64_t len, uint64_t limit)
{
    if (off > (uint64_t)QS_BLOCK_MAX_SIZE || len > (uint64_t)QS_BLOCK_MAX_SIZE - off) return false;
    if (off < VHDX_REGION1) return false;                 /* file id and headers */
    if (off < s->log_offset + s->log_length && off + len > s->log_offset) return false;
    return off + len <= limit;
}

static bool replay_entry(QsBlock *bs, const Entry *e, GError **errp)
{
    Vhdx *s = bs->opaque;
    uint64_t limit = MAX(bs->file->size, e->last);
    uint64_t ndata = 0;
    uint8_t sec[VHDX_LOG_SECTOR];
    for (uint32_t k = 0; k < e->ndesc; k++) {
        uint8_t d[D_SIZE];
        int r = log_read(bs, e->pos + E_HEADER + (uint64_t)k * D_SIZE, D_SIZE, d);
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read the log");
        uint64_t off = le64_at(d + D_FILE_OFFSET);
        if (le32_at(d + D_SIG) == SIG_ZERO) {
            uint64_t len = le64_at(d + D_ZERO_LENGTH);
            if (!target_ok(s, off, len, limit))
                return fmt_err(errp, "vhdx: log entry %" G_GUINT64_FORMAT " descriptor %u: "
                               "zero range at %#" G_GINT64_MODIFIER "x of %" G_GUINT64_FORMAT
                               " bytes is outside the writable file", e->seq, k, off, len);
            r = fmt_write_zeros(bs->file, off, len);
            if (r < 0) return fmt_errno(errp, r, "vhdx: could not replay the log");
            continue;
        }
        if (!target_ok(s, off, VHDX_LOG_SECTOR, limit))
            return fmt_err(errp, "vhdx: log entry %" G_GUINT64_FORMAT " descriptor %u: "
                           "file offset %#" G_GINT64_MODIFIER "x is outside the writable file",
                           e->seq, k, off);
        r = log_read(bs, (uint64_t)e->pos + (e->desc_sectors + ndata) * VHDX_LOG_SECTOR,
                     sizeof(sec), sec);
        ndata++;
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read the log");
        /* the sector is: leading 8 bytes (descriptor), 4084 bytes, trailing 4 bytes */
        memcpy(sec, d + D_LEADING, 8);
        memcpy(sec + VHDX_LOG_SECTOR - 4, d + D_TRAILING, 4);
        r = qs_block_pwrite(bs->file, off, sizeof(sec), sec, 0);
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not replay the log");
    }
    return true;
}

static gint by_seq_desc(gconstpointer a, gconstpointer b)
{
    const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

bool vhdx_log_open(QsBlock *bs, bool replay, uint64_t *pending, GError **errp)
{
    Vhdx *s = bs->opaque;
    *pending = 0;
    const uint8_t *h = s->hdr[s->cur];
    static const uint8_t nil[16];
    if (!memcmp(h + 48, nil, 16)) return true;    /* no log GUID: clean */
    uint8_t guid[16];
    memcpy(guid, h + 48, 16);
    uint64_t budget = (uint64_t)8 * s->log_length + (64u << 20);
    g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) at = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (uint32_t pos = 0; pos < s->log_length; pos += VHDX_LOG_SECTOR) {
        Entry e;
        const char *why;
        int r = read_entry(bs, pos, guid, &e, &budget, &why);
        if (r == -E2BIG)
            return fmt_err(errp, "vhdx: log of '%s': candidate entries overlap too much "
                           "(more than %" G_GUINT64_FORMAT " bytes checksummed)", bs->filename,
                           (uint64_t)8 * s->log_length + (64u << 20));
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read the log of '%s'",
                                    bs->filename);
        if (r == 0) continue;
        Entry *p = g_memdup2(&e, sizeof(e));
        g_ptr_array_add(all, p);
        g_hash_table_insert(at, GUINT_TO_POINTER(pos + 1), p);
    }
    /* the active sequence: the valid chain tail..head with the highest head sequence */
    const Entry *head = NULL, *tail = NULL;
    uint64_t steps = 4ull * all->len + 1024;
    GPtrArray *sorted = g_ptr_array_sized_new(all->len);
    for (guint i = 0; i < all->len; i++) g_ptr_array_add(sorted, all->pdata[i]);
    g_ptr_array_sort(sorted, by_seq_desc);
    for (guint i = 0; i < sorted->len && !head; i++) {
        const Entry *cand = sorted->pdata[i];
        const Entry *e = g_hash_table_lookup(at, GUINT_TO_POINTER(cand->tail + 1));
        const Entry *first = e;
        while (e && e != cand && steps) {
            steps--;
            const Entry *n = g_hash_table_lookup(
                at, GUINT_TO_POINTER((uint32_t)(((uint64_t)e->pos + e->len) % s->log_length) + 1));
            if (!n || n->seq != e->seq + 1) e = NULL;
            else e = n;
        }
        if (!steps) {
            g_ptr_array_unref(sorted);
            return fmt_err(errp, "vhdx: log of '%s': too many candidate sequences",
                           bs->filename);
        }
        if (e == cand) {
            head = cand;
            tail = first;
        }
    }
    g_ptr_array_unref(sorted);
    if (!head) {
        if (all->len)
            return fmt_err(errp, "vhdx: log of '%s' has %u valid entries but no complete "
                           "sequence (every head's tail points outside its sequence)",
                           bs->filename, all->len);
        return true;   /* an empty log: nothing to replay */
    }
    *pending = head->seq - tail->seq + 1;
    if (head->flushed > bs->file->size)
        return fmt_err(errp, "vhdx: log entry %" G_GUINT64_FORMAT " says %" G_GUINT64_FORMAT
                       " bytes were flushed but '%s' has %" G_GUINT64_FORMAT " bytes: the "
                       "file was truncated", head->seq, head->flushed, bs->filename,
                       bs->file->size);
    if (!replay) return true;
    for (const Entry *e = tail;;) {
        if (!replay_entry(bs, e, errp)) return false;
        if (e == head) break;
        e = g_hash_table_lookup(
            at, GUINT_TO_POINTER((uint32_t)(((uint64_t)e->pos + e->len) % s->log_length) + 1));
    }
    GError *err = NULL;
    if (head->last > bs->file->size &&
        !qs_block_truncate(bs->file, head->last, false, QS_PREALLOC_OFF, &err)) {
        g_propagate_error(errp, err);
        return false;
    }
    int r = qs_block_flush(bs->file);
    if (r == 0) r = vhdx_update_headers(bs, NULL, NULL, nil);
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not finish the log replay of '%s'",
                                bs->filename);
    s->replayed = true;
    return true;
}

/* ---- writing through the log ---- */

int vhdx_log_write(QsBlock *bs, const uint64_t *offs, const uint8_t *data, unsigned count)
{
    Vhdx *s = bs->opaque;
    uint64_t ds = desc_sectors_for(count);
    uint64_t len = (ds + count) * VHDX_LOG_SECTOR;
    if (len > s->log_length) return -ENOSPC;
    if (s->log_pos + len > s->log_length) s->log_pos = 0;
    g_autofree uint8_t *e = g_malloc0((size_t)len);
    uint64_t seq = s->log_seq++;
    put_le32(e + E_SIG, SIG_LOGE);
    put_le32(e + E_LENGTH, (uint32_t)len);
    put_le32(e + E_TAIL, s->log_pos);
    put_le64(e + E_SEQ, seq);
    put_le32(e + E_DESC_COUNT, count);
    memcpy(e + E_GUID, s->log_guid, 16);
    put_le64(e + E_FLUSHED, bs->file->size);
    put_le64(e + E_LAST, bs->file->size);
    for (unsigned k = 0; k < count; k++) {
        uint8_t *d = e + E_HEADER + (size_t)k * D_SIZE;
        const uint8_t *src = data + (size_t)k * VHDX_LOG_SECTOR;
        uint8_t *sec = e + (ds + k) * VHDX_LOG_SECTOR;
        put_le32(d + D_SIG, SIG_DESC);
        memcpy(d + D_TRAILING, src + VHDX_LOG_SECTOR - 4, 4);
        memcpy(d + D_LEADING, src, 8);
        put_le64(d + D_FILE_OFFSET, offs[k]);
        put_le64(d + D_SEQ, seq);
        put_le32(sec, SIG_DATA);
        put_le32(sec + 4, (uint32_t)(seq >> 32));
        memcpy(sec + 8, src + 8, VHDX_LOG_SECTOR - 12);
        put_le32(sec + VHDX_LOG_SECTOR - 4, (uint32_t)seq);
    }
    put_le32(e + E_CHECKSUM, vhdx_checksum(e, (size_t)len, E_CHECKSUM));
    int r = qs_block_pwrite(bs->file, s->log_offset + s->log_pos, (size_t)len, e, 0);
    if (r == 0) r = qs_block_flush(bs->file);
    for (unsigned k = 0; r == 0 && k < count; k++)
        r = qs_block_pwrite(bs->file, offs[k], VHDX_LOG_SECTOR,
                            data + (size_t)k * VHDX_LOG_SECTOR, 0);
    if (r == 0) r = qs_block_flush(bs->file);
    if (r == 0) s->log_pos += (uint32_t)len;
    return r;
}
