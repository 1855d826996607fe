/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vhdx driver: Hyper-V VHDX 1.00 images, dynamic, fixed and differencing (read-write), with
 * checksummed headers, region and metadata tables, the BAT, and metadata writes journaled. */
#include <sys/stat.h>
#include <glib/gstdio.h>
#include "vhdx.h"

#define GUID_BAT        "2dc27766-f623-4200-9d64-115e9bfd4a08"
#define GUID_METADATA   "8b7ca206-4790-4b9a-b8fe-575f050f886e"
#define GUID_FILE_PARAM "caa16737-fa36-4d43-b3b6-33f0aa44e76b"
#define GUID_DISK_SIZE  "2fa54224-cd1b-4876-b211-5dbed83bf4b8"
#define GUID_PAGE83     "beca12ab-b2e6-4523-93ef-c309e000c746"
#define GUID_LOGICAL    "8141bf1d-a96f-4709-ba47-f233a8faab5f"
#define GUID_PHYSICAL   "cda348c7-445d-4471-9cc9-e9885251c556"
#define GUID_PARENT_LOC "a8d35f2d-b30b-454d-abf7-d3d84834ab0c"
#define GUID_PARENT_VHDX "b04aefb7-d19e-4a81-b789-25b8e9445913"

#define SIG_HEAD 0x64616568u   /* "head" */
#define SIG_REGI 0x69676572u   /* "regi" */

enum { H_SIG = 0, H_CHECKSUM = 4, H_SEQ = 8, H_FILE_GUID = 16, H_DATA_GUID = 32,
       H_LOG_GUID = 48, H_LOG_VERSION = 64, H_VERSION = 66, H_LOG_LENGTH = 68,
       H_LOG_OFFSET = 72 };

/* ---- GUIDs (stored as Microsoft GUIDs: the first three fields little-endian) ---- */

static void guid_str(const uint8_t *g, char out[37])
{
    g_snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32_at(g),
               le16_at(g + 4), le16_at(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
               g[15]);
}

static bool guid_is(const uint8_t *g, const char *s)
{
    char b[37];
    guid_str(g, b);
    return !g_ascii_strcasecmp(b, s);
}

static void guid_from(const char *s, uint8_t out[16])
{
    unsigned v[11];
    sscanf(s, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &v[0], &v[1], &v[2], &v[3], &v[4],
           &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]);
    put_le32(out, v[0]);
    put_le16(out + 4, (uint16_t)v[1]);
    put_le16(out + 6, (uint16_t)v[2]);
    for (int i = 0; i < 8; i++) out[8 + i] = (uint8_t)v[3 + i];
}

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 8 && !memcmp(buf, "vhdxfile", 8) ? 100 : 0;
}

/* ---- headers ---- */

int vhdx_update_headers(QsBlock *bs, const uint8_t *file_guid, const uint8_t *data_guid,
                        const uint8_t *log_guid)
{
    Vhdx *s = bs->opaque;
    for (int k = 0; k < 2; k++) {
        int other = 1 - s->cur;
        uint8_t *h = s->hdr[other];
        memcpy(h, s->hdr[s->cur], VHDX_HEADER_SIZE);
        put_le64(h + H_SEQ, s->seq + 1);
        if (file_guid) memcpy(h + H_FILE_GUID, file_guid, 16);
        if (data_guid) memcpy(h + H_DATA_GUID, data_guid, 16);
        if (log_guid) memcpy(h + H_LOG_GUID, log_guid, 16);
        put_le32(h + H_CHECKSUM, vhdx_checksum(h, VHDX_HEADER_SIZE, H_CHECKSUM));
        int r = qs_block_pwrite(bs->file, other ? VHDX_HEADER2 : VHDX_HEADER1,
                                VHDX_HEADER_SIZE, h, 0);
        if (r == 0) r = qs_block_flush(bs->file);
        if (r < 0) return r;
        s->cur = other;
        s->seq++;
    }
    return 0;
}

static bool read_headers(QsBlock *bs, GError **errp)
{
    Vhdx *s = bs->opaque;
    bool ok[2];
    char why[2][160];
    for (int i = 0; i < 2; i++) {
        uint8_t *h = s->hdr[i];
        int r = qs_block_pread(bs->file, i ? VHDX_HEADER2 : VHDX_HEADER1, VHDX_HEADER_SIZE, h);
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read header %d", i + 1);
        ok[i] = false;
        uint32_t sum = vhdx_checksum(h, VHDX_HEADER_SIZE, H_CHECKSUM);
        if (le32_at(h + H_SIG) != SIG_HEAD)
            g_snprintf(why[i], 160, "signature %#x", le32_at(h + H_SIG));
        else if (sum != le32_at(h + H_CHECKSUM))
            g_snprintf(why[i], 160, "checksum %#x, computed %#x", le32_at(h + H_CHECKSUM), sum);
        else if (le16_at(h + H_VERSION) != 1)
            g_snprintf(why[i], 160, "version %u", le16_at(h + H_VERSION));
        else
            ok[i] = true;
    }
    if (!ok[0] && !ok[1])
        return fmt_err(errp, "vhdx: '%s' has no valid header (header 1: %s; header 2: %s)",
                       bs->filename, why[0], why[1]);
    uint64_t q0 = le64_at(s->hdr[0] + H_SEQ), q1 = le64_at(s->hdr[1] + H_SEQ);
    if (ok[0] && ok[1] && q0 == q1 && memcmp(s->hdr[0], s->hdr[1], VHDX_HEADER_SIZE))
        return fmt_err(errp, "vhdx: both headers of '%s' have sequence number %"
                       G_GUINT64_FORMAT " but differ", bs->filename, q0);
    s->cur = ok[0] && ok[1] ? (q1 > q0) : ok[1];
    s->seq = s->cur ? q1 : q0;
    const uint8_t *h = s->hdr[s->cur];
    if (le16_at(h + H_LOG_VERSION) != 0)
        return fmt_err(errp, "vhdx: unsupported log version %u", le16_at(h + H_LOG_VERSION));
    s->log_length = le32_at(h + H_LOG_LENGTH);
    s->log_offset = le64_at(h + H_LOG_OFFSET);
    if (s->log_length < VHDX_MiB || s->log_length % VHDX_MiB)
        return fmt_err(errp, "vhdx: log length %u is not a nonzero multiple of 1 MiB",
                       s->log_length);
    if (s->log_offset < VHDX_HEADER_SECTION || s->log_offset % VHDX_MiB ||
        s->log_offset > (uint64_t)QS_BLOCK_MAX_SIZE - s->log_length)
        return fmt_err(errp, "vhdx: log offset %#" G_GINT64_MODIFIER "x is not a multiple of "
                       "1 MiB after the header section", s->log_offset);
    if (s->log_offset + s->log_length > bs->file->size)
        return fmt_err(errp, "vhdx: log at %#" G_GINT64_MODIFIER "x of %u bytes extends beyond "
                       "the end of the file (%" G_GUINT64_FORMAT " bytes)", s->log_offset,
                       s->log_length, bs->file->size);
    return true;
}

/* ---- region table ---- */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static bool parse_regions(QsBlock *bs, const uint8_t *t, GError **errp)
{
    Vhdx *s = bs->opaque;
    uint32_t n = le32_at(t + 8);
    if (n > VHDX_MAX_ENTRIES)
        return fmt_err(errp, "vhdx: region table entry count %u (at most %u)", n,
                       VHDX_MAX_ENTRIES);
    uint64_t offs[VHDX_MAX_ENTRIES], lens[VHDX_MAX_ENTRIES];
    s->bat_offset = s->meta_offset = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = t + 16 + (size_t)i * 32;
        char g[37];
        guid_str(e, g);
        uint64_t off = le64_at(e + 16);
        uint32_t len = le32_at(e + 24);
        bool required = le32_at(e + 28) & 1;
        if (off % VHDX_MiB || off < VHDX_HEADER_SECTION || len % VHDX_MiB || !len ||
            off > (uint64_t)QS_BLOCK_MAX_SIZE - len)
            return fmt_err(errp, "vhdx: region %s: offset %#" G_GINT64_MODIFIER "x, length %u "
                           "are not nonzero multiples of 1 MiB after the header section", g,
                           off, len);
        if (off + len > bs->file->size)
            return fmt_err(errp, "vhdx: region %s at %#" G_GINT64_MODIFIER "x of %u bytes "
                           "extends beyond the end of the file (%" G_GUINT64_FORMAT " bytes)",
                           g, off, len, bs->file->size);
        if (overlaps(off, len, s->log_offset, s->log_length))
            return fmt_err(errp, "vhdx: region %s at %#" G_GINT64_MODIFIER "x overlaps the log",
                           g, off);
        for (uint32_t j = 0; j < i; j++)
            if (overlaps(off, len, offs[j], lens[j]))
                return fmt_err(errp, "vhdx: region %s at %#" G_GINT64_MODIFIER "x overlaps "
                               "region %u", g, off, j);
        offs[i] = off;
        lens[i] = len;
        if (!strcmp(g, GUID_BAT) || !strcmp(g, GUID_METADATA)) {
            bool bat = !strcmp(g, GUID_BAT);
            if (bat ? s->bat_offset : s->meta_offset)
                return fmt_err(errp, "vhdx: region %s appears twice", g);
            if (bat) { s->bat_offset = off; s->bat_length = len; }
            else { s->meta_offset = off; s->meta_length = len; }
        } else if (required) {
            return fmt_err(errp, "vhdx: unknown required region %s", g);
        }
    }
    if (!s->bat_offset) return fmt_err(errp, "vhdx: the region table has no BAT region");
    if (!s->meta_offset) return fmt_err(errp, "vhdx: the region table has no metadata region");
    return true;
}

static bool read_regions(QsBlock *bs, GError **errp)
{
    g_autofree uint8_t *t = g_malloc(VHDX_TABLE_SIZE);
    GError *first = NULL;
    for (int i = 0; i < 2; i++) {
        int r = qs_block_pread(bs->file, i ? VHDX_REGION2 : VHDX_REGION1, VHDX_TABLE_SIZE, t);
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read region table %d", i + 1);
        GError *e = NULL;
        uint32_t sum = vhdx_checksum(t, VHDX_TABLE_SIZE, 4);
        if (le32_at(t) != SIG_REGI)
            fmt_err(&e, "vhdx: region table %d: signature %#x", i + 1, le32_at(t));
        else if (sum != le32_at(t + 4))
            fmt_err(&e, "vhdx: region table %d: checksum %#x, computed %#x", i + 1,
                    le32_at(t + 4), sum);
        else if (parse_regions(bs, t, &e)) {
            g_clear_error(&first);
            return true;
        }
        if (!first) first = e;
        else g_error_free(e);
    }
    g_propagate_error(errp, first);
    return false;
}

/* ---- metadata ---- */

static char *utf16_at(const uint8_t *p, uint32_t bytes)
{
    g_autofree gunichar2 *w = g_new0(gunichar2, bytes / 2 + 1);
    for (uint32_t i = 0; i < bytes / 2; i++) w[i] = le16_at(p + 2 * i);
    return g_utf16_to_utf8(w, bytes / 2, NULL, NULL, NULL);
}

/* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" (braces optional) into a stored GUID. */
static bool linkage_parse(const char *v, uint8_t out[16])
{
    size_t n = strlen(v);
    if (n == 38 && v[0] == '{' && v[37] == '}') { v++; n -= 2; }
    if (n != 36) return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? v[i] != '-' : !g_ascii_isxdigit(v[i])) return false;
    }
    char tmp[37];
    memcpy(tmp, v, 36);
    tmp[36] = 0;
    guid_from(tmp, out);
    return true;
}

/* The parent locator (MS-VHDX 2.6.2.6): a VHDX locator type, then key/value entries in
 * UTF-16LE.  parent_linkage (the parent's DataWriteGuid) is required; the path is taken
 * from relative_path, else a POSIX absolute_win32_path. */
static bool parse_parent_locator(QsBlock *bs, const uint8_t *d, uint32_t len, GError **errp)
{
    Vhdx *s = bs->opaque;
    if (len < 20) return fmt_err(errp, "vhdx: parent locator length %u is too short", len);
    if (!guid_is(d, GUID_PARENT_VHDX)) {
        char g[37];
        guid_str(d, g);
        return fmt_err(errp, "vhdx: parent locator type %s is not a VHDX parent", g);
    }
    if (le16_at(d + 16))
        return fmt_err(errp, "vhdx: parent locator reserved field is %u, not 0", le16_at(d + 16));
    uint16_t n = le16_at(d + 18);
    if (20 + (uint32_t)n * 12 > len)
        return fmt_err(errp, "vhdx: parent locator key_value_count %u does not fit in %u bytes",
                       n, len);
    g_autofree char *rel = NULL, *abs = NULL;
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *e = d + 20 + (size_t)i * 12;
        uint32_t ko = le32_at(e), vo = le32_at(e + 4);
        uint16_t kl = le16_at(e + 8), vl = le16_at(e + 10);
        if (!kl || !vl || kl % 2 || vl % 2 || ko > len || kl > len - ko || vo > len ||
            vl > len - vo)
            return fmt_err(errp, "vhdx: parent locator entry %u (key at %u of %u bytes, value at "
                           "%u of %u bytes) lies outside the locator (%u bytes)", i, ko, kl, vo,
                           vl, len);
        g_autofree char *k = utf16_at(d + ko, kl), *v = utf16_at(d + vo, vl);
        if (!k || !v)
            return fmt_err(errp, "vhdx: parent locator entry %u is not valid UTF-16", i);
        char **slot = !strcmp(k, "relative_path") ? &rel
                    : !strcmp(k, "absolute_win32_path") ? &abs
                    : !strcmp(k, "parent_linkage") ? &s->parent_linkage
                    : !strcmp(k, "parent_linkage2") ? &s->parent_linkage2 : NULL;
        if (!slot) continue;   /* volume_path and unknown keys: nothing to use here */
        if (*slot)
            return fmt_err(errp, "vhdx: parent locator key '%s' appears twice", k);
        if (strlen(v) > VHDX_PATH_MAX)
            return fmt_err(errp, "vhdx: parent locator value of '%s' is %zu bytes long (at "
                           "most %u)", k, strlen(v), VHDX_PATH_MAX);
        *slot = g_steal_pointer(&v);
    }
    uint8_t g[16];
    if (!s->parent_linkage)
        return fmt_err(errp, "vhdx: the parent locator of '%s' has no parent_linkage",
                       bs->filename);
    if (!linkage_parse(s->parent_linkage, g))
        return fmt_err(errp, "vhdx: parent_linkage '%s' is not a GUID", s->parent_linkage);
    if (s->parent_linkage2 && !linkage_parse(s->parent_linkage2, g))
        return fmt_err(errp, "vhdx: parent_linkage2 '%s' is not a GUID", s->parent_linkage2);
    char *path = rel && *rel ? g_steal_pointer(&rel)
               : abs && abs[0] == '/' ? g_steal_pointer(&abs) : NULL;
    if (!path)
        return fmt_err(errp, "vhdx: differencing image '%s' names no usable parent path "
                       "(relative_path or a POSIX absolute_win32_path)", bs->filename);
    for (char *c = path; *c; c++) if (*c == '\\') *c = '/';
    if (g_str_has_prefix(path, "./") && path[2]) memmove(path, path + 2, strlen(path + 2) + 1);
    bs->backing_file = path;
    bs->backing_fmt = g_strdup("vhdx");
    return true;
}

static bool read_metadata(QsBlock *bs, GError **errp)
{
    Vhdx *s = bs->opaque;
    if (s->meta_length < VHDX_TABLE_SIZE)
        return fmt_err(errp, "vhdx: metadata region of %u bytes is too small", s->meta_length);
    g_autofree uint8_t *t = g_malloc(VHDX_TABLE_SIZE);
    int r = qs_block_pread(bs->file, s->meta_offset, VHDX_TABLE_SIZE, t);
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not read the metadata table");
    if (memcmp(t, "metadata", 8))
        return fmt_err(errp, "vhdx: metadata table signature %#" G_GINT64_MODIFIER "x",
                       le64_at(t));
    uint16_t n = le16_at(t + 10);
    if (n > VHDX_MAX_ENTRIES)
        return fmt_err(errp, "vhdx: metadata entry count %u (at most %u)", n, VHDX_MAX_ENTRIES);
    unsigned seen = 0;
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *e = t + 32 + (size_t)i * 32;
        char g[37];
        guid_str(e, g);
        uint32_t off = le32_at(e + 16), len = le32_at(e + 20), flags = le32_at(e + 24);
        if (len == 0 ? off != 0 : off < VHDX_TABLE_SIZE || off > s->meta_length ||
                                  len > s->meta_length - off)
            return fmt_err(errp, "vhdx: metadata item %s at offset %u of %u bytes lies outside "
                           "the metadata region (%u bytes)", g, off, len, s->meta_length);
        for (uint16_t j = 0; j < i; j++)
            if (!memcmp(e, t + 32 + (size_t)j * 32, 16) &&
                (flags & 1) == (le32_at(t + 32 + (size_t)j * 32 + 24) & 1))
                return fmt_err(errp, "vhdx: metadata item %s appears twice", g);
        static const struct { const char *guid; uint32_t len; } known[] = {
            { GUID_FILE_PARAM, 8 }, { GUID_DISK_SIZE, 8 }, { GUID_PAGE83, 16 },
            { GUID_LOGICAL, 4 }, { GUID_PHYSICAL, 4 }, { GUID_PARENT_LOC, 0 },
        };
        int k = -1;
        for (unsigned q = 0; q < G_N_ELEMENTS(known) && !(flags & 1); q++)
            if (!strcmp(g, known[q].guid)) k = (int)q;
        if (k < 0) {
            if ((flags & 4) && !(flags & 1))
                return fmt_err(errp, "vhdx: unknown required metadata item %s", g);
            continue;
        }
        if (known[k].len && len != known[k].len)
            return fmt_err(errp, "vhdx: metadata item %s has length %u (expected %u)", g, len,
                           known[k].len);
        if (!len) continue;
        g_autofree uint8_t *d = g_try_malloc(len);
        if (!d) return fmt_err(errp, "vhdx: cannot allocate metadata item %s", g);
        r = qs_block_pread(bs->file, s->meta_offset + off, len, d);
        if (r < 0) return fmt_errno(errp, r, "vhdx: could not read metadata item %s", g);
        seen |= 1u << k;
        switch (k) {
        case 0: {
            s->block_size = le32_at(d);
            uint32_t bits = le32_at(d + 4);
            s->leave_allocated = bits & 1;
            s->has_parent = bits & 2;
            if (!is_pow2(s->block_size) || s->block_size < VHDX_BLOCK_MIN ||
                s->block_size > VHDX_BLOCK_MAX)
                return fmt_err(errp, "vhdx: block size %u is not a power of two between 1 MiB "
                               "and 256 MiB", s->block_size);
            break;
        }
        case 1: s->disk_size = le64_at(d); s->size_item = off; break;
        case 2: memcpy(s->page83, d, 16); break;
        case 3: case 4: {
            uint32_t v = le32_at(d);
            if (v != 512 && v != 4096)
                return fmt_err(errp, "vhdx: %s sector size %u is not 512 or 4096",
                               k == 3 ? "logical" : "physical", v);
            if (k == 3) s->logical_sector = v;
            else s->physical_sector = v;
            break;
        }
        case 5:
            if (!parse_parent_locator(bs, d, len, errp)) return false;
            break;
        }
    }
    static const char *const names[] = { "file parameters", "virtual disk size", "page 83 data",
                                         "logical sector size", "physical sector size" };
    for (int k = 0; k < 5; k++)
        if (!(seen & (1u << k)))
            return fmt_err(errp, "vhdx: required metadata item '%s' is missing", names[k]);
    if (s->has_parent && !(seen & (1u << 5)))
        return fmt_err(errp, "vhdx: differencing image without a parent locator");
    if (s->disk_size > VHDX_MAX_SIZE || s->disk_size % s->logical_sector)
        return fmt_err(errp, "vhdx: virtual disk size %" G_GUINT64_FORMAT " is not a multiple "
                       "of the logical sector size %u up to 64 TiB", s->disk_size,
                       s->logical_sector);
    return true;
}

/* ---- BAT ---- */

static uint64_t bat_index(const Vhdx *s, uint64_t block)
{
    return block + block / s->chunk_ratio;
}

static uint64_t bitmap_index(const Vhdx *s, uint64_t block)
{
    return (block / s->chunk_ratio) * (s->chunk_ratio + 1) + s->chunk_ratio;
}

typedef struct Span {
    uint64_t off, len, idx;
} Span;

static int cmp_span(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Check every BAT entry; with `report` print each problem (check), else fail on the first.
 * Returns the number of problems, or -1 with errp set. */
static int64_t validate_bat(QsBlock *bs, bool report, GError **errp)
{
    Vhdx *s = bs->opaque;
    uint64_t fsize = bs->file->size;
    int64_t bad = 0;
    /* the present blocks, then the three regions: grown as needed (most entries are not
     * present, and a 131 072-entry table would cost 3 MiB per open) */
    uint64_t nsp = 0, room = 64;
    g_autofree Span *sp = g_new(Span, room);
#define PROBLEM(...) do { if (!report) { fmt_err(errp, __VA_ARGS__); return -1; } \
        g_autofree char *m_ = g_strdup_printf(__VA_ARGS__); \
        qs_block_message("ERROR: %s\n", m_ + 6); bad++; } while (0)
    /* every chunk_ratio payload entries a sector bitmap entry: counted, not divided
     * (a 1 TiB disk has 131 072 entries, read at every open) */
    uint64_t in_chunk = 0;
    static const uint64_t zero_run[64];
    for (uint64_t i = 0; i < s->bat_entries; i++) {
        /* runs of zero entries (not present, valid for both kinds) skipped 64 at a time */
        if (!(i % 64) && s->bat_entries - i >= 64 &&
            !memcmp(s->bat + i, zero_run, sizeof(zero_run))) {
            i += 63;
            in_chunk = (i + 1) % (s->chunk_ratio + 1);
            continue;
        }
        uint64_t e = s->bat[i];
        bool is_bitmap = in_chunk == s->chunk_ratio;
        in_chunk = is_bitmap ? 0 : in_chunk + 1;
        unsigned st = BAT_STATE(e);
        uint64_t len = is_bitmap ? VHDX_MiB : s->block_size;
        bool present;
        if (is_bitmap) {
            if (st != SB_NOT_PRESENT && st != SB_PRESENT)
                PROBLEM("vhdx: sector bitmap BAT entry %" G_GUINT64_FORMAT " has state %u", i, st);
            present = st == SB_PRESENT;
        } else {
            if (st == 4 || st == 5 || (st == PAYLOAD_PARTIALLY_PRESENT && !s->has_parent))
                PROBLEM("vhdx: BAT entry %" G_GUINT64_FORMAT " has invalid state %u", i, st);
            present = st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT;
            if (st == PAYLOAD_PARTIALLY_PRESENT) {
                uint64_t b = i - i / (s->chunk_ratio + 1);
                uint64_t bi = bitmap_index(s, b);
                if (bi >= s->bat_entries || BAT_STATE(s->bat[bi]) != SB_PRESENT)
                    PROBLEM("vhdx: BAT entry %" G_GUINT64_FORMAT " is partially present but its "
                            "sector bitmap (entry %" G_GUINT64_FORMAT ") is not", i, bi);
            }
        }
        if (!present) continue;
        uint64_t off = BAT_OFFSET(e);
        if (off < VHDX_HEADER_SECTION)
            PROBLEM("vhdx: BAT entry %" G_GUINT64_FORMAT " offset %#" G_GINT64_MODIFIER "x "
                    "points into the header section", i, off);
        else if (off + len > fsize)
            PROBLEM("vhdx: BAT entry %" G_GUINT64_FORMAT " end offset %" G_GUINT64_FORMAT
                    " points after end of file (%" G_GUINT64_FORMAT "). Image has probably "
                    "been truncated", i, off + len, fsize);
        else {
            if (nsp + 3 >= room) sp = g_renew(Span, sp, room *= 2);
            sp[nsp++] = (Span){ off, len, i };
        }
    }
    sp[nsp++] = (Span){ s->log_offset, s->log_length, UINT64_MAX };
    sp[nsp++] = (Span){ s->bat_offset, s->bat_length, UINT64_MAX - 1 };
    sp[nsp++] = (Span){ s->meta_offset, s->meta_length, UINT64_MAX - 2 };
    qsort(sp, nsp, sizeof(*sp), cmp_span);
    for (uint64_t k = 1; k < nsp; k++) {
        if (sp[k].off >= sp[k - 1].off + sp[k - 1].len) continue;
        uint64_t a = MIN(sp[k].idx, sp[k - 1].idx), b = MAX(sp[k].idx, sp[k - 1].idx);
        if (b >= UINT64_MAX - 2 && a >= UINT64_MAX - 2) continue;   /* checked already */
        const char *what = b == UINT64_MAX ? "the log" : b == UINT64_MAX - 1 ? "the BAT region"
                         : b == UINT64_MAX - 2 ? "the metadata region" : "another block";
        PROBLEM("vhdx: BAT entry %" G_GUINT64_FORMAT " (offset %#" G_GINT64_MODIFIER "x) "
                "overlaps %s", a, BAT_OFFSET(s->bat[a]), what);
    }
#undef PROBLEM
    return bad;
}

/* Read [off, off + len) of file f into buf, which is all zeros: the file's holes are not
 * read (QEMU leaves a dynamic image's BAT region unwritten: a 1 MiB read of nothing but
 * holes at every open, most of a fuzzed open's time). */
static int read_skipping_holes(QsBlock *f, uint64_t off, uint64_t len, uint8_t *buf)
{
    uint64_t inside = off < f->size ? MIN(len, f->size - off) : 0, done = 0;
    while (done < inside) {
        uint64_t n = 0;
        int st = qs_block_status(f, off + done, inside - done, &n, NULL, NULL);
        if (st < 0 || n == 0 || n > inside - done) {
            st = QS_BS_DATA;                        /* no status: read the rest */
            n = inside - done;
        }
        if (!(st & QS_BS_ZERO)) {
            int r = qs_block_pread(f, off + done, n, buf + done);
            if (r < 0) return r;
        }
        done += n;
    }
    /* past the end of the file: as a plain read does it */
    return len > inside ? qs_block_pread(f, off + inside, len - inside, buf + inside) : 0;
}

static bool read_bat(QsBlock *bs, GError **errp)
{
    Vhdx *s = bs->opaque;
    s->chunk_ratio = VHDX_SECTORS_PER_BITMAP * s->logical_sector / s->block_size;
    s->data_blocks = div_up(s->disk_size, s->block_size);
    s->nchunks = div_up(s->data_blocks, s->chunk_ratio);
    if (s->has_parent)
        s->bat_entries = s->nchunks * (s->chunk_ratio + 1);
    else
        s->bat_entries = s->data_blocks ? s->data_blocks + (s->data_blocks - 1) / s->chunk_ratio
                                        : 0;
    uint64_t bytes = s->bat_entries * 8;
    if (bytes > s->bat_length)
        return fmt_err(errp, "vhdx: BAT region of %u bytes is too small for %" G_GUINT64_FORMAT
                       " entries (virtual size %" G_GUINT64_FORMAT ", block size %u)",
                       s->bat_length, s->bat_entries, s->disk_size, s->block_size);
    /* whole 4 KiB sectors, as they are journaled */
    uint64_t cap = align_up(bytes, VHDX_LOG_SECTOR);
    s->bat = g_try_malloc0(MAX(cap, 8));
    if (!s->bat) return fmt_err(errp, "vhdx: cannot allocate a BAT of %" G_GUINT64_FORMAT
                                " entries", s->bat_entries);
    int r = cap ? read_skipping_holes(bs->file, s->bat_offset, cap, (uint8_t *)s->bat) : 0;
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not read the BAT of '%s'", bs->filename);
#if G_BYTE_ORDER != G_LITTLE_ENDIAN
    for (uint64_t i = 0; i < cap / 8; i++) s->bat[i] = GUINT64_FROM_LE(s->bat[i]);
#endif
    return true;
}

/* The DataWriteGuid in the current header of the VHDX file at path (read from the file
 * itself: the image may be open elsewhere in this process). */
static bool read_data_guid(const char *path, uint8_t out[16], GError **errp)
{
    QsBlock *f = qs_block_open_file(path, 0, errp);
    if (!f) return false;
    Vhdx v = { 0 };
    QsBlock t = { .file = f, .opaque = &v, .filename = (char *)path };
    uint8_t sig[8];
    bool ok = false;
    int r = f->size >= VHDX_HEADER_SECTION ? qs_block_pread(f, 0, 8, sig) : -EINVAL;
    if (r < 0 || memcmp(sig, "vhdxfile", 8))
        fmt_err(errp, "vhdx: parent '%s' is not a VHDX image", path);
    else if (read_headers(&t, errp)) {
        memcpy(out, v.hdr[v.cur] + H_DATA_GUID, 16);
        ok = true;
    }
    qs_block_close(f);
    return ok;
}

/* The files of the chain being opened by this thread, to refuse loops. */
static __thread struct { dev_t dev; ino_t ino; } chain[VHDX_CHAIN_MAX];
static __thread unsigned chain_len;

/* Open the parent of a differencing image (as a VHDX image) and check that it is the
 * one the child was made from: its DataWriteGuid is the locator's parent_linkage. */
static bool open_parent(QsBlock *bs, GError **errp)
{
    Vhdx *s = bs->opaque;
    g_autofree char *path = qs_block_backing_path(bs, bs->backing_file);
    GStatBuf me, ps;
    if (g_stat(path, &ps) < 0)
        return fmt_errno(errp, -errno, "Could not open backing file: vhdx: parent '%s' of '%s'",
                         path, bs->filename);
    bool have_me = g_stat(bs->filename, &me) == 0;
    if (chain_len >= VHDX_CHAIN_MAX)
        return fmt_err(errp, "vhdx: the parent chain of '%s' is deeper than %u images",
                       bs->filename, VHDX_CHAIN_MAX);
    for (unsigned i = 0; i <= chain_len; i++) {
        dev_t d = i < chain_len ? chain[i].dev : me.st_dev;
        ino_t n = i < chain_len ? chain[i].ino : me.st_ino;
        if ((i < chain_len || have_me) && d == ps.st_dev && n == ps.st_ino)
            return fmt_err(errp, "vhdx: parent chain loop: the parent '%s' of '%s' is already "
                           "in its chain", path, bs->filename);
    }
    if (have_me) {
        chain[chain_len].dev = me.st_dev;
        chain[chain_len].ino = me.st_ino;
    } else {
        chain[chain_len].dev = 0;
        chain[chain_len].ino = 0;
    }
    chain_len++;
    GError *err = NULL;
    QsBlock *p = qs_block_open(path, "vhdx", bs->flags & ~(QS_BLOCK_RDWR | QS_BLOCK_CHECK), NULL,
                               &err);
    chain_len--;
    if (!p) {
        g_set_error(errp, QS_BLOCK_ERROR, 0, "Could not open backing file: %s", err->message);
        g_error_free(err);
        return false;
    }
    Vhdx *pv = p->opaque;
    const uint8_t *have = pv->hdr[pv->cur] + H_DATA_GUID;
    uint8_t want[16], want2[16];
    linkage_parse(s->parent_linkage, want);
    bool ok = !memcmp(have, want, 16) ||
              (s->parent_linkage2 && linkage_parse(s->parent_linkage2, want2) &&
               !memcmp(have, want2, 16));
    if (!ok) {
        char g[37];
        guid_str(have, g);
        qs_block_close(p);
        return fmt_err(errp, "vhdx: parent '%s' has DataWriteGuid {%s} but '%s' expects "
                       "parent_linkage %s: the parent was modified after the child was made",
                       path, g, bs->filename, s->parent_linkage);
    }
    bs->backing = p;
    return true;
}

static bool vhdx_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    Vhdx *s = bs->opaque;
    g_mutex_init(&s->lock);
    g_cond_init(&s->idle);
    s->inited = true;
    bool rw = bs->flags & QS_BLOCK_RDWR, check = bs->flags & QS_BLOCK_CHECK;
    uint8_t sig[8];
    if (bs->file->size < VHDX_HEADER_SECTION)
        return fmt_err(errp, "vhdx: '%s' is too short for the header section (%"
                       G_GUINT64_FORMAT " bytes)", bs->filename, bs->file->size);
    int r = qs_block_pread(bs->file, 0, 8, sig);
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not read '%s'", bs->filename);
    if (memcmp(sig, "vhdxfile", 8))
        return fmt_err(errp, "vhdx: '%s' is not a VHDX image (signature %#" G_GINT64_MODIFIER
                       "x)", bs->filename, le64_at(sig));
    if (!read_headers(bs, errp)) return false;
    uint64_t pending;
    if (!vhdx_log_open(bs, rw, &pending, errp)) return false;
    if (pending && !rw)
        return fmt_err(errp, "vhdx: image '%s' has a log with %" G_GUINT64_FORMAT " entries to "
                       "replay but was opened read-only; replay it with 'qemu-img check -r "
                       "all %s'", bs->filename, pending, bs->filename);
    if (!read_regions(bs, errp) || !read_metadata(bs, errp) || !read_bat(bs, errp))
        return false;
    if (!check && validate_bat(bs, false, errp) < 0) return false;
    if (s->has_parent && !(bs->flags & QS_BLOCK_NO_BACKING) && !open_parent(bs, errp))
        return false;
    bs->size = s->disk_size;
    s->data_end = align_up(bs->file->size, VHDX_MiB);
    s->file_end = bs->file->size;
    return true;
}

static int commit_bat(QsBlock *bs);

static void vhdx_close(QsBlock *bs)
{
    Vhdx *s = bs->opaque;
    if (!s->inited) return;
    if (s->session_started) {
        static const uint8_t nil[16];
        g_mutex_lock(&s->lock);
        commit_bat(bs);
        g_mutex_unlock(&s->lock);
        if (s->file_end > s->data_end && bs->file->size > s->data_end) {
            /* give back what the last extension step did not use */
            GError *err = NULL;
            if (!qs_block_truncate(bs->file, s->data_end, true, QS_PREALLOC_OFF, &err))
                g_error_free(err);
        }
        qs_block_flush(bs->file);
        vhdx_update_headers(bs, NULL, NULL, nil);
    }
    g_free(s->bat_dirty);
    g_free(s->bat);
    g_free(s->parent_linkage);
    g_free(s->parent_linkage2);
    for (uint64_t c = 0; s->sbm && c < s->nchunks; c++) g_free(s->sbm[c]);
    g_free(s->sbm);
    g_cond_clear(&s->idle);
    g_mutex_clear(&s->lock);
}

/* ---- I/O ---- */

/* Under the lock: the sector bitmap of chunk c, read from the file on first use (all
 * clear while the chunk has no bitmap block).  NULL with *err set on failure. */
static VhdxSbm *get_sbm(QsBlock *bs, uint64_t c, int *err)
{
    Vhdx *s = bs->opaque;
    if (!s->has_parent || c >= s->nchunks) { *err = -EIO; return NULL; }
    if (!s->sbm) s->sbm = g_new0(VhdxSbm *, s->nchunks);
    if (s->sbm[c]) return s->sbm[c];
    if (s->sbm_loaded >= VHDX_SBM_CACHE) {
        /* bounded memory: drop the bitmaps that have nothing left to journal (the file
         * has them), they are read again when needed */
        for (uint64_t k = 0; k < s->nchunks; k++) {
            VhdxSbm *o = s->sbm[k];
            bool dirty = false;
            for (size_t i = 0; o && i < sizeof(o->dirty) && !dirty; i++) dirty = o->dirty[i];
            if (o && !dirty) {
                g_clear_pointer(&s->sbm[k], g_free);
                s->sbm_loaded--;
            }
        }
    }
    VhdxSbm *m = g_try_malloc0(sizeof(*m));
    if (!m) { *err = -ENOMEM; return NULL; }
    uint64_t e = s->bat[c * (s->chunk_ratio + 1) + s->chunk_ratio];
    if (BAT_STATE(e) == SB_PRESENT) {
        int r = qs_block_pread(bs->file, BAT_OFFSET(e), VHDX_MiB, m->bits);
        if (r < 0) { g_free(m); *err = r; return NULL; }
    }
    s->sbm[c] = m;
    s->sbm_loaded++;
    return m;
}

static bool bit_at(const uint8_t *bm, uint64_t i)
{
    return bm[i / 8] >> (i % 8) & 1;
}

/* Under the lock: copy the bitmap bits of the logical sectors of [off, off+n) (all in one
 * block) into a new buffer whose bit 0 is bit (*bit0 & ~7) of the chunk's bitmap. */
static uint8_t *copy_bits(QsBlock *bs, uint64_t block, uint64_t off, uint64_t n,
                          uint64_t *bit0, int *err)
{
    Vhdx *s = bs->opaque;
    uint32_t ls = s->logical_sector;
    if (!s->has_parent) { *err = -EIO; return NULL; }   /* invalid state, seen by check */
    uint64_t sb = s->bat[bitmap_index(s, block)];
    if (BAT_STATE(sb) != SB_PRESENT) { *err = -EIO; return NULL; }
    VhdxSbm *m = get_sbm(bs, block / s->chunk_ratio, err);
    if (!m) return NULL;
    uint64_t first = off / ls, last = (off + n - 1) / ls;
    *bit0 = first % VHDX_SECTORS_PER_BITMAP;
    uint64_t nbytes = (*bit0 + (last - first)) / 8 - *bit0 / 8 + 1;
    uint8_t *bm = g_try_malloc(nbytes);
    if (!bm) { *err = -ENOMEM; return NULL; }
    memcpy(bm, m->bits + *bit0 / 8, nbytes);
    return bm;
}

/* Read [off, off+n) of payload block `block` whose BAT entry is e. */
static int read_block(QsBlock *bs, uint64_t block, uint64_t e, uint64_t off, size_t n,
                      uint8_t *p)
{
    Vhdx *s = bs->opaque;
    uint64_t in = off - block * s->block_size;
    switch (BAT_STATE(e)) {
    case PAYLOAD_FULLY_PRESENT:
        return qs_block_pread(bs->file, BAT_OFFSET(e) + in, n, p);
    case PAYLOAD_NOT_PRESENT:
        if (s->has_parent) return qs_block_read_backing(bs, off, n, p);
        /* fall through */
    case PAYLOAD_ZERO: case PAYLOAD_UNMAPPED: case PAYLOAD_UNDEFINED:
        memset(p, 0, n);
        return 0;
    case PAYLOAD_PARTIALLY_PRESENT: break;
    default:
        return -EIO;
    }
    /* per logical sector: the chunk's sector bitmap says this file or the parent */
    uint32_t ls = s->logical_sector;
    uint64_t bit0;
    int r = 0;
    g_mutex_lock(&s->lock);
    g_autofree uint8_t *bm = copy_bits(bs, block, off, n, &bit0, &r);
    g_mutex_unlock(&s->lock);
    if (!bm) return r;
    uint64_t pos = off;
    while (pos < off + n) {
        uint64_t bit = (pos / ls) % VHDX_SECTORS_PER_BITMAP - (bit0 & ~7ull);
        bool set = bit_at(bm, bit);
        uint64_t end = MIN((pos / ls + 1) * ls, off + n);
        while (end < off + n) {   /* extend the run while the bits agree */
            uint64_t b2 = (end / ls) % VHDX_SECTORS_PER_BITMAP - (bit0 & ~7ull);
            if (bit_at(bm, b2) != set) break;
            end = MIN(end + ls, off + n);
        }
        size_t len = (size_t)(end - pos);
        uint8_t *dst = p + (pos - off);
        r = set ? qs_block_pread(bs->file, BAT_OFFSET(e) + (pos - block * s->block_size), len,
                                 dst)
                : qs_block_read_backing(bs, pos, len, dst);
        if (r < 0) return r;
        pos = end;
    }
    return 0;
}

static int vhdx_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Vhdx *s = bs->opaque;
    uint8_t *p = buf;
    while (len) {
        uint64_t block = off / s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, (block + 1) * s->block_size - off);
        g_mutex_lock(&s->lock);
        uint64_t e = s->bat[bat_index(s, block)];
        g_mutex_unlock(&s->lock);
        int r = read_block(bs, block, e, off, n, p);
        if (r < 0) return r;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Under the lock: the first write of this session stamps a new file write GUID and a log
 * GUID into both headers (the specification's order: before any other write); the first
 * change of user data (`data`) also a new data write GUID, which unlinks children made
 * from this image, as the specification intends. */
static int start_session(QsBlock *bs, bool data)
{
    Vhdx *s = bs->opaque;
    if (s->session_started && (s->data_stamped || !data)) return 0;
    uint8_t fg[16], dg[16];
    fmt_uuid_random(fg);
    fmt_uuid_random(dg);
    if (!s->session_started) {
        fmt_uuid_random(s->log_guid);
        s->log_seq = 1;
        s->log_pos = 0;
        uint64_t nsec = (s->bat_entries * 8 + VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
        if (!s->bat_dirty) s->bat_dirty = g_malloc0((size_t)(nsec / 8 + 1));
        s->ndirty = 0;
    }
    int r = vhdx_update_headers(bs, s->session_started ? NULL : fg, data ? dg : NULL,
                                s->log_guid);
    if (r == 0) {
        s->session_started = true;
        s->data_stamped |= data;
    }
    return r;
}

/* Under the lock: set BAT entry i to v in memory; the sector holding it is journaled by
 * the next commit_bat (flush, close, or when VHDX_BATCH sectors are pending). */
static void set_bat(Vhdx *s, uint64_t i, uint64_t v)
{
    uint64_t sec = i * 8 / VHDX_LOG_SECTOR;
    s->bat[i] = v;
    if (!(s->bat_dirty[sec / 8] & (1u << (sec % 8)))) {
        s->bat_dirty[sec / 8] |= (uint8_t)(1u << (sec % 8));
        s->ndirty++;
    }
}

/* Under the lock: mark the logical sectors of [a, b) (in one block) present in this file. */
static int set_bits(QsBlock *bs, uint64_t block, uint64_t a, uint64_t b)
{
    Vhdx *s = bs->opaque;
    int r = 0;
    VhdxSbm *m = get_sbm(bs, block / s->chunk_ratio, &r);   /* may have been dropped */
    if (!m) return r;
    uint32_t ls = s->logical_sector;
    for (uint64_t sec = a / ls; sec < b / ls; sec++) {
        uint64_t i = sec % VHDX_SECTORS_PER_BITMAP;
        m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
        uint64_t d = i / 8 / VHDX_LOG_SECTOR;
        if (!(m->dirty[d / 8] & (1u << (d % 8)))) {
            m->dirty[d / 8] |= (uint8_t)(1u << (d % 8));
            s->ndirty++;
        }
    }
    return 0;
}

/* Journal batches of 4 KiB sectors: add() queues one, a full batch goes to the log. */
typedef struct Batch {
    uint8_t *buf;
    uint64_t offs[VHDX_BATCH];
    unsigned n;
} Batch;

static int batch_add(QsBlock *bs, Batch *b, uint64_t off, const uint8_t *src)
{
    memcpy(b->buf + (size_t)b->n * VHDX_LOG_SECTOR, src, VHDX_LOG_SECTOR);
    b->offs[b->n++] = off;
    if (b->n < VHDX_BATCH) return 0;
    b->n = 0;
    return vhdx_log_write(bs, b->offs, b->buf, VHDX_BATCH);
}

/* Under the lock: make the BAT and sector bitmap updates durable, in the order the
 * specification and QEMU follow: the new blocks' data is flushed first, then the changed
 * sectors go through the log (VHDX_BATCH sectors per entry: entry, flush, write in
 * place, flush).  Bitmap sectors go first and the BAT from its end down, so that at every
 * point a partially present block's bitmap entry is durable before the block's entry.
 * On error the sectors stay pending (and are all journaled again next time). */
static int commit_bat(QsBlock *bs)
{
    Vhdx *s = bs->opaque;
    if (!s->ndirty) return 0;
    while (s->inflight) g_cond_wait(&s->idle, &s->lock);   /* new blocks' data written */
    int r = qs_block_flush(bs->file);   /* the data before the BAT points at it */
    if (r < 0) return r;
    g_autofree uint8_t *sec = g_malloc(VHDX_LOG_SECTOR);
    Batch b = { .buf = g_malloc((size_t)VHDX_BATCH * VHDX_LOG_SECTOR) };
    for (uint64_t c = 0; r == 0 && s->sbm && c < s->nchunks; c++) {
        VhdxSbm *m = s->sbm[c];
        uint64_t e = s->bat[c * (s->chunk_ratio + 1) + s->chunk_ratio];
        for (unsigned k = 0; r == 0 && m && k < VHDX_MiB / VHDX_LOG_SECTOR; k++)
            if (m->dirty[k / 8] & (1u << (k % 8)))
                r = batch_add(bs, &b, BAT_OFFSET(e) + (uint64_t)k * VHDX_LOG_SECTOR,
                              m->bits + (size_t)k * VHDX_LOG_SECTOR);
    }
    uint64_t nsec = (s->bat_entries * 8 + VHDX_LOG_SECTOR - 1) / VHDX_LOG_SECTOR;
    for (uint64_t k = nsec; r == 0 && k-- > 0;) {
        if (!(s->bat_dirty[k / 8] & (1u << (k % 8)))) continue;
        uint64_t first = k * (VHDX_LOG_SECTOR / 8);   /* s->bat holds whole sectors */
        for (unsigned i = 0; i < VHDX_LOG_SECTOR / 8; i++)
            put_le64(sec + i * 8, s->bat[first + i]);
        r = batch_add(bs, &b, s->bat_offset + k * VHDX_LOG_SECTOR, sec);
    }
    if (r == 0 && b.n) r = vhdx_log_write(bs, b.offs, b.buf, b.n);
    g_free(b.buf);
    if (r < 0) return r;
    memset(s->bat_dirty, 0, (size_t)(nsec / 8 + 1));
    for (uint64_t c = 0; s->sbm && c < s->nchunks; c++)
        if (s->sbm[c]) memset(s->sbm[c]->dirty, 0, sizeof(s->sbm[c]->dirty));
    s->ndirty = 0;
    return 0;
}

/* Under the lock: `len` bytes (a multiple of 1 MiB) at the end of the file.  The file
 * grows VHDX_EXTEND_STEP at a time (the unused rest is given back at close), so new space
 * reads as zeros. */
static int64_t grab(QsBlock *bs, uint64_t len)
{
    Vhdx *s = bs->opaque;
    uint64_t host = align_up(s->data_end, VHDX_MiB);
    if (host > (uint64_t)QS_BLOCK_MAX_SIZE - len) return -ENOSPC;
    if (host + len > s->file_end) {
        uint64_t step = MAX(len, VHDX_EXTEND_STEP);
        uint64_t end = host + len;
        if (end <= (uint64_t)QS_BLOCK_MAX_SIZE - step) end = host + step;
        GError *err = NULL;
        if (!qs_block_truncate(bs->file, end, false, QS_PREALLOC_OFF, &err)) {
            int code = err->code ? -err->code : -EIO;
            g_error_free(err);
            return code;
        }
        s->file_end = end;
    }
    s->data_end = host + len;
    return (int64_t)host;
}

/* Under the lock: give block `block` space and point its BAT entry there with `state`
 * (in memory, journaled later by commit_bat).  The caller writes the data without the
 * lock and then calls alloc_done; commit_bat waits for that. */
static int64_t allocate(QsBlock *bs, uint64_t block, unsigned state)
{
    Vhdx *s = bs->opaque;
    int64_t host = grab(bs, s->block_size);
    if (host < 0) return host;
    set_bat(s, bat_index(s, block), (uint64_t)host | state);
    s->inflight++;
    return host;
}

/* Under the lock: the data of a block allocate() placed is written (or failed). */
static int alloc_done(QsBlock *bs)
{
    Vhdx *s = bs->opaque;
    if (--s->inflight == 0) g_cond_broadcast(&s->idle);
    return s->ndirty >= VHDX_BATCH ? commit_bat(bs) : 0;
}

/* Under the lock: chunk c of a differencing image gets its sector bitmap block (zeros:
 * every sector still in the parent) and the bitmap is loaded. */
static int ensure_bitmap(QsBlock *bs, uint64_t c)
{
    Vhdx *s = bs->opaque;
    uint64_t i = c * (s->chunk_ratio + 1) + s->chunk_ratio;
    int r = 0;
    if (BAT_STATE(s->bat[i]) != SB_PRESENT) {
        int64_t host = grab(bs, VHDX_MiB);
        if (host < 0) return (int)host;
        set_bat(s, i, (uint64_t)host | SB_PRESENT);
    }
    return get_sbm(bs, c, &r) ? 0 : r;
}

/* Under the lock: write [off, off+n) of partially present block `block` at host, with
 * the head and tail logical sectors completed from where they are now (this file or the
 * parent), then mark the sectors present. */
static int write_partial_locked(QsBlock *bs, uint64_t block, int64_t host, uint64_t off,
                                size_t n, const uint8_t *p)
{
    Vhdx *s = bs->opaque;
    uint32_t ls = s->logical_sector;
    uint64_t base = block * s->block_size;
    uint64_t a = align_down(off, ls), b = align_up(off + n, ls);
    int r = 0;
    VhdxSbm *m = get_sbm(bs, block / s->chunk_ratio, &r);
    if (!m) return r;
    g_autofree uint8_t *t = g_try_malloc(b - a);
    if (!t) return -ENOMEM;
    for (uint64_t sec = a; r == 0 && sec < b; sec += ls) {
        if (sec > a && sec < b - ls) continue;   /* only the head and tail sectors */
        if (sec >= off && sec + ls <= off + n) continue;   /* wholly overwritten */
        uint64_t i = (sec / ls) % VHDX_SECTORS_PER_BITMAP;
        r = bit_at(m->bits, i) ? qs_block_pread(bs->file, (uint64_t)host + (sec - base), ls,
                                                t + (sec - a))
                               : qs_block_read_backing(bs, sec, ls, t + (sec - a));
    }
    memcpy(t + (off - a), p, n);
    if (r == 0) r = qs_block_pwrite(bs->file, (uint64_t)host + (a - base), b - a, t, 0);
    if (r == 0) r = set_bits(bs, block, a, b);
    return r;
}

/* Write [off, off+n), inside one block. */
static int write_block(QsBlock *bs, uint64_t block, uint64_t off, size_t n, const uint8_t *p)
{
    Vhdx *s = bs->opaque;
    uint64_t base = block * s->block_size, in = off - base;
    uint32_t ls = s->logical_sector;
    g_mutex_lock(&s->lock);
    uint64_t e = s->bat[bat_index(s, block)];
    unsigned st = BAT_STATE(e);
    bool whole = in == 0 && n == MIN((uint64_t)s->block_size, s->disk_size - base);
    int64_t host;
    bool fresh = false;
    int r = 0;
    if (st == PAYLOAD_FULLY_PRESENT) {
        host = (int64_t)BAT_OFFSET(e);
    } else if (st == PAYLOAD_PARTIALLY_PRESENT) {
        host = (int64_t)BAT_OFFSET(e);
        r = ensure_bitmap(bs, block / s->chunk_ratio);   /* present: just loads it */
    } else if (!s->has_parent || st != PAYLOAD_NOT_PRESENT || whole) {
        /* zeros or nothing underneath (or all of it written): the other bytes of the new
         * block are zeros already, the file was extended past it */
        host = allocate(bs, block, PAYLOAD_FULLY_PRESENT);
        st = PAYLOAD_FULLY_PRESENT;
        fresh = host >= 0;
    } else {
        r = ensure_bitmap(bs, block / s->chunk_ratio);
        host = r < 0 ? r : allocate(bs, block, PAYLOAD_PARTIALLY_PRESENT);
        st = PAYLOAD_PARTIALLY_PRESENT;
        fresh = host >= 0;
    }
    if (r < 0 || host < 0) {
        g_mutex_unlock(&s->lock);
        return r < 0 ? r : (int)host;
    }
    if (st == PAYLOAD_PARTIALLY_PRESENT && (off % ls || (off + n) % ls)) {
        /* a sector only partly written: complete it under the lock, so that two such
         * writes into one sector cannot both start from the parent's data */
        r = write_partial_locked(bs, block, host, off, n, p);
    } else {
        g_mutex_unlock(&s->lock);
        r = qs_block_pwrite(bs->file, (uint64_t)host + in, n, p, 0);
        g_mutex_lock(&s->lock);
        if (r == 0 && st == PAYLOAD_PARTIALLY_PRESENT) r = set_bits(bs, block, off, off + n);
    }
    int r2 = fresh ? alloc_done(bs) : s->ndirty >= VHDX_BATCH ? commit_bat(bs) : 0;
    g_mutex_unlock(&s->lock);
    return r < 0 ? r : r2;
}

static int vhdx_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    Vhdx *s = bs->opaque;
    const uint8_t *p = buf;
    g_mutex_lock(&s->lock);
    int r = start_session(bs, true);
    g_mutex_unlock(&s->lock);
    while (r == 0 && len) {
        uint64_t block = off / s->block_size;
        size_t n = (size_t)MIN((uint64_t)len, (block + 1) * s->block_size - off);
        r = write_block(bs, block, off, n, p);
        p += n;
        off += n;
        len -= n;
    }
    return r;
}

static int vhdx_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Vhdx *s = bs->opaque;
    g_mutex_lock(&s->lock);
    int r = start_session(bs, true);
    g_mutex_unlock(&s->lock);
    g_autofree uint8_t *z = NULL;
    while (r == 0 && len) {
        uint64_t block = off / s->block_size;
        uint64_t in = off - block * s->block_size;
        uint64_t n = MIN(len, s->block_size - in);
        g_mutex_lock(&s->lock);
        uint64_t i = bat_index(s, block), e = s->bat[i];
        unsigned st = BAT_STATE(e);
        bool whole = in == 0 && n == MIN((uint64_t)s->block_size,
                                         s->disk_size - block * s->block_size);
        if (s->has_parent && st == PAYLOAD_NOT_PRESENT && whole) {
            set_bat(s, i, PAYLOAD_ZERO);   /* no longer the parent's: zeros */
            st = PAYLOAD_ZERO;
            if (s->ndirty >= VHDX_BATCH) r = commit_bat(bs);
        }
        g_mutex_unlock(&s->lock);
        if (r < 0) break;
        if (st == PAYLOAD_FULLY_PRESENT) {
            r = fmt_write_zeros(bs->file, BAT_OFFSET(e) + in, n);
        } else if (s->has_parent && (st == PAYLOAD_NOT_PRESENT ||
                                     st == PAYLOAD_PARTIALLY_PRESENT)) {
            /* the parent's data underneath: zeros are written as data */
            if (!z) z = g_malloc0(MIN((uint64_t)s->block_size, 8 * VHDX_MiB));
            for (uint64_t k = 0; r == 0 && k < n; k += 8 * VHDX_MiB)
                r = write_block(bs, block, off + k, (size_t)MIN(n - k, 8 * VHDX_MiB), z);
        }   /* other states read as zeros already */
        off += n;
        len -= n;
    }
    return r;
}

/* Differencing images: what is this file's (data or zeros) and what is the parent's;
 * other images answer as QEMU's vhdx (which has no block status): all data. */
static int vhdx_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                             uint64_t *map, QsBlock **file)
{
    Vhdx *s = bs->opaque;
    if (!s->has_parent) {
        *pnum = len;
        return QS_BS_DATA | QS_BS_ALLOCATED;
    }
    uint64_t block = off / s->block_size, in = off - block * s->block_size;
    uint64_t n = MIN(len, s->block_size - in);
    uint32_t ls = s->logical_sector;
    g_mutex_lock(&s->lock);
    uint64_t e = s->bat[bat_index(s, block)];
    int r = 0, ret = 0;
    switch (BAT_STATE(e)) {
    case PAYLOAD_FULLY_PRESENT:
        ret = QS_BS_DATA | QS_BS_ALLOCATED | QS_BS_OFFSET_VALID;
        break;
    case PAYLOAD_NOT_PRESENT:
        ret = 0;
        break;
    case PAYLOAD_PARTIALLY_PRESENT: {
        uint64_t bit0;
        g_autofree uint8_t *bm = copy_bits(bs, block, off, n, &bit0, &r);
        if (!bm) break;
        uint64_t b = (off / ls) % VHDX_SECTORS_PER_BITMAP - (bit0 & ~7ull);
        bool set = bit_at(bm, b);
        uint64_t end = MIN((off / ls + 1) * ls, off + n);
        while (end < off + n && bit_at(bm, (end / ls) % VHDX_SECTORS_PER_BITMAP - (bit0 & ~7ull))
                                == set)
            end = MIN(end + ls, off + n);
        n = end - off;
        ret = set ? QS_BS_DATA | QS_BS_ALLOCATED | QS_BS_OFFSET_VALID : 0;
        break;
    }
    default:
        ret = QS_BS_ZERO | QS_BS_ALLOCATED;
    }
    g_mutex_unlock(&s->lock);
    if (r < 0) return r;
    *pnum = n;
    if (!(ret & QS_BS_OFFSET_VALID)) return ret;
    *map = BAT_OFFSET(e) + in;
    *file = bs->file;
    return fmt_status_in_file(bs->file, *map, pnum, ret);
}

static int vhdx_flush(QsBlock *bs)
{
    Vhdx *s = bs->opaque;
    g_mutex_lock(&s->lock);
    int r = s->ndirty ? commit_bat(bs) : qs_block_flush(bs->file);
    g_mutex_unlock(&s->lock);
    return r;
}

static bool vhdx_check(QsBlock *bs, QsBlockCheckResult *res, int fix, GError **errp)
{
    Vhdx *s = bs->opaque;
    memset(res, 0, sizeof(*res));
    if (s->replayed) res->corruptions_fixed++;
    g_mutex_lock(&s->lock);
    int64_t bad = validate_bat(bs, true, errp);
    int r = 0;
    if (bad > 0 && (fix & QS_CHECK_FIX_ERRORS) && (bs->flags & QS_BLOCK_RDWR)) {
        /* blocks whose data is past the end of the file are gone: they read as zeros */
        r = start_session(bs, false);
        for (uint64_t i = 0; r == 0 && i < s->bat_entries; i++) {
            bool is_bitmap = i % (s->chunk_ratio + 1) == s->chunk_ratio;
            uint64_t e = s->bat[i];
            if (is_bitmap || BAT_STATE(e) != PAYLOAD_FULLY_PRESENT ||
                BAT_OFFSET(e) + s->block_size <= bs->file->size)
                continue;
            qs_block_message("Repairing BAT entry %" G_GUINT64_FORMAT ": the block reads as "
                    "zeros now\n", i);
            set_bat(s, i, s->has_parent ? PAYLOAD_NOT_PRESENT : PAYLOAD_ZERO);
            res->corruptions_fixed++;
        }
        if (r == 0) r = commit_bat(bs);
        bad = validate_bat(bs, false, NULL) < 0 ? 1 : 0;
    }
    g_mutex_unlock(&s->lock);
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not repair '%s'", bs->filename);
    res->corruptions = (int)bad;
    return true;
}

static uint32_t vhdx_cluster_size(QsBlock *bs)
{
    return ((Vhdx *)bs->opaque)->block_size;
}

/* ---- parent locator writing (create, rebase, commit) ---- */

/* UTF-8 s as UTF-16LE at p; returns the bytes written (p may be NULL: just count). */
static size_t put_utf16(uint8_t *p, const char *s)
{
    glong n = 0;
    g_autofree gunichar2 *w = g_utf8_to_utf16(s, -1, NULL, &n, NULL);
    for (glong i = 0; p && i < n; i++) put_le16(p + 2 * i, w[i]);
    return (size_t)n * 2;
}

/* The locator of a child at child_fn whose parent is `backing` (as given by the user:
 * relative to the child's directory, or absolute) with DataWriteGuid guid: the keys
 * parent_linkage, relative_path (Windows separators) and absolute_win32_path. */
static uint8_t *build_locator(const char *child_fn, const char *backing, const uint8_t *guid,
                              uint32_t *plen, GError **errp)
{
    QsBlock tmp = { .filename = (char *)child_fn };
    g_autofree char *path = qs_block_backing_path(&tmp, backing);
    g_autofree char *abs = g_canonicalize_filename(path, NULL);
    g_autofree char *rel = NULL;
    if (!g_path_is_absolute(backing)) {
        rel = g_strconcat(g_str_has_prefix(backing, "./") || g_str_has_prefix(backing, "../")
                          ? "" : ".\\", backing, NULL);
    } else {
        g_autofree char *cdir = g_path_get_dirname(child_fn);
        g_autofree char *cabs = g_canonicalize_filename(cdir, NULL);
        g_autofree char *pdir = g_path_get_dirname(abs), *pbase = g_path_get_basename(abs);
        if (!strcmp(cabs, pdir)) rel = g_strconcat(".\\", pbase, NULL);
    }
    for (char *c = rel; c && *c; c++) if (*c == '/') *c = '\\';
    char g[37], link[40];
    guid_str(guid, g);
    g_snprintf(link, sizeof(link), "{%s}", g);
    const char *keys[3] = { "parent_linkage", "relative_path", "absolute_win32_path" };
    const char *vals[3] = { link, rel, abs };
    unsigned n = 0;
    size_t total = 20;
    for (unsigned i = 0; i < 3; i++) {
        if (!vals[i]) continue;
        if (strlen(vals[i]) > VHDX_PATH_MAX || !g_utf8_validate(vals[i], -1, NULL))
            return fmt_err(errp, "vhdx: parent path '%s' is longer than %u bytes or not UTF-8",
                           vals[i], VHDX_PATH_MAX), NULL;
        total += 12 + put_utf16(NULL, keys[i]) + put_utf16(NULL, vals[i]);
        n++;
    }
    uint8_t *d = g_malloc0(total);
    guid_from(GUID_PARENT_VHDX, d);
    put_le16(d + 18, (uint16_t)n);
    size_t at = 20 + 12 * n;
    for (unsigned i = 0, k = 0; i < 3; i++) {
        if (!vals[i]) continue;
        uint8_t *e = d + 20 + 12 * k++;
        size_t kl = put_utf16(d + at, keys[i]);
        put_le32(e, (uint32_t)at);
        put_le16(e + 8, (uint16_t)kl);
        at += kl;
        size_t vl = put_utf16(d + at, vals[i]);
        put_le32(e + 4, (uint32_t)at);
        put_le16(e + 10, (uint16_t)vl);
        at += vl;
    }
    *plen = (uint32_t)total;
    return d;
}

/* Under the lock, session started: replace the parent locator of a differencing image
 * with loc (placed after the other metadata items), journaled: locator sectors first,
 * then the metadata table sector that points at it. */
static int write_locator(QsBlock *bs, const uint8_t *loc, uint32_t len)
{
    Vhdx *s = bs->opaque;
    g_autofree uint8_t *t = g_malloc(VHDX_TABLE_SIZE);
    int r = qs_block_pread(bs->file, s->meta_offset, VHDX_TABLE_SIZE, t);
    if (r < 0) return r;
    uint16_t n = le16_at(t + 10);
    int idx = -1;
    uint64_t end = VHDX_TABLE_SIZE;
    for (uint16_t i = 0; i < n && i < VHDX_MAX_ENTRIES; i++) {
        const uint8_t *e = t + 32 + (size_t)i * 32;
        if (!(le32_at(e + 24) & 1) && guid_is(e, GUID_PARENT_LOC)) idx = i;
        else end = MAX(end, (uint64_t)le32_at(e + 16) + le32_at(e + 20));
    }
    if (idx < 0) return -EINVAL;
    uint64_t at = align_up(end, VHDX_LOG_SECTOR), cap = align_up(len, VHDX_LOG_SECTOR);
    if (at + cap > s->meta_length) return -ENOSPC;
    g_autofree uint8_t *buf = g_malloc0((size_t)cap);
    memcpy(buf, loc, len);
    Batch b = { .buf = g_malloc((size_t)VHDX_BATCH * VHDX_LOG_SECTOR) };
    for (uint64_t k = 0; r == 0 && k < cap; k += VHDX_LOG_SECTOR)
        r = batch_add(bs, &b, s->meta_offset + at + k, buf + k);
    uint8_t *e = t + 32 + (size_t)idx * 32;
    put_le32(e + 16, (uint32_t)at);
    put_le32(e + 20, len);
    size_t tsec = (size_t)(32 + idx * 32) / VHDX_LOG_SECTOR * VHDX_LOG_SECTOR;
    if (r == 0 && b.n) r = vhdx_log_write(bs, b.offs, b.buf, b.n);   /* the locator first */
    if (r == 0) r = vhdx_log_write(bs, (uint64_t[]){ s->meta_offset + tsec }, t + tsec, 1);
    g_free(b.buf);
    return r;
}

/* Under the lock: point the image at parent `backing` (as recorded), linked to the
 * parent's current DataWriteGuid. */
static bool relink(QsBlock *bs, const char *backing, GError **errp)
{
    Vhdx *s = bs->opaque;
    QsBlock tmp = { .filename = bs->filename };
    g_autofree char *path = qs_block_backing_path(&tmp, backing);
    uint8_t guid[16];
    if (!read_data_guid(path, guid, errp)) return false;
    uint32_t len;
    g_autofree uint8_t *loc = build_locator(bs->filename, backing, guid, &len, errp);
    if (!loc) return false;
    int r = start_session(bs, false);
    if (r == 0) r = write_locator(bs, loc, len);
    if (r < 0)
        return fmt_errno(errp, r, "vhdx: could not write the parent locator of '%s'",
                         bs->filename);
    char g[37];
    guid_str(guid, g);
    g_free(s->parent_linkage);
    s->parent_linkage = g_strdup_printf("{%s}", g);
    g_clear_pointer(&s->parent_linkage2, g_free);
    g_free(bs->backing_file);
    bs->backing_file = g_strdup(backing);
    g_free(bs->backing_fmt);
    bs->backing_fmt = g_strdup("vhdx");
    return true;
}

/* rebase: a differencing image gets another VHDX parent (its parent cannot be removed:
 * the BAT of a differencing image has another layout). */
static bool vhdx_change_backing(QsBlock *bs, const char *file, const char *fmt,
                                GError **errp)
{
    Vhdx *s = bs->opaque;
    if (!s->has_parent)
        return fmt_err(errp, "vhdx: '%s' is not a differencing image; a parent can only be "
                       "given when the image is created", bs->filename);
    if (!file)
        return fmt_err(errp, "vhdx: the parent of differencing image '%s' cannot be removed; "
                       "use 'convert' to make a standalone image", bs->filename);
    if (fmt && strcmp(fmt, "vhdx"))
        return fmt_err(errp, "vhdx: the parent of a differencing image must be a VHDX image, "
                       "not '%s'", fmt);
    g_mutex_lock(&s->lock);
    bool ok = relink(bs, file, errp);
    g_mutex_unlock(&s->lock);
    return ok;
}

/* commit: every block goes back to the parent; the child is linked to the parent's new
 * DataWriteGuid (the commit changed the parent), and the space is given back at close. */
static int vhdx_make_empty(QsBlock *bs)
{
    Vhdx *s = bs->opaque;
    if (!s->has_parent) return -ENOTSUP;
    g_mutex_lock(&s->lock);
    int r = start_session(bs, true);
    for (uint64_t i = 0; r == 0 && i < s->bat_entries; i++)
        if (s->bat[i]) set_bat(s, i, 0);   /* PAYLOAD_NOT_PRESENT, SB_NOT_PRESENT */
    for (uint64_t c = 0; r == 0 && s->sbm && c < s->nchunks; c++) {
        VhdxSbm *m = s->sbm[c];
        if (!m) continue;
        for (size_t k = 0; k < sizeof(m->dirty); k++) s->ndirty -= __builtin_popcount(m->dirty[k]);
        g_clear_pointer(&s->sbm[c], g_free);
        s->sbm_loaded--;
    }
    if (r == 0) r = commit_bat(bs);
    if (r == 0) {
        GError *err = NULL;
        g_autofree char *backing = g_strdup(bs->backing_file);
        if (!relink(bs, backing, &err)) {
            qs_block_message("%s\n", err->message);
            g_error_free(err);
            r = -EIO;
        }
    }
    if (r == 0) {
        uint64_t end = MAX(MAX(s->log_offset + s->log_length, s->bat_offset + s->bat_length),
                           s->meta_offset + s->meta_length);
        s->file_end = MAX(s->file_end, bs->file->size);
        s->data_end = MAX(align_up(end, VHDX_MiB), VHDX_HEADER_SECTION);
    }
    g_mutex_unlock(&s->lock);
    return r;
}

/* ---- resize (QEMU 7.2 has none for vhdx) ---- */

/* Under the lock: the BAT in memory grows to `entries` (new entries 0, journaled). */
static int grow_bat(QsBlock *bs, uint64_t entries)
{
    Vhdx *s = bs->opaque;
    uint64_t oldcap = align_up(s->bat_entries * 8, VHDX_LOG_SECTOR);
    uint64_t cap = align_up(entries * 8, VHDX_LOG_SECTOR);
    uint64_t oldsec = oldcap / VHDX_LOG_SECTOR, nsec = cap / VHDX_LOG_SECTOR;
    if (cap > oldcap) {
        uint64_t *b = g_try_realloc(s->bat, cap);
        uint8_t *d = g_try_realloc(s->bat_dirty, (size_t)(nsec / 8 + 1));
        if (b) s->bat = b;
        if (d) s->bat_dirty = d;
        if (!b || !d) return -ENOMEM;
        memset((uint8_t *)s->bat + oldcap, 0, (size_t)(cap - oldcap));
        memset(s->bat_dirty + oldsec / 8 + 1, 0, (size_t)(nsec / 8 - oldsec / 8));
        for (uint64_t k = oldsec; k < nsec; k++)   /* bits of the old last byte too */
            s->bat_dirty[k / 8] &= (uint8_t)~(1u << (k % 8));
    }
    uint64_t old = s->bat_entries;
    s->bat_entries = entries;
    for (uint64_t i = old; i < entries; i++) set_bat(s, i, 0);
    return 0;
}

/* Under the lock: the BAT moves to a new region at the end of the file, big enough for
 * `entries`.  The pending sectors are committed first; the BAT is written there and
 * flushed, then both region tables point at it, each written and flushed in turn (a crash
 * between them leaves both tables valid, and the first, already new, is the one used). */
static int move_bat(QsBlock *bs, uint64_t entries)
{
    Vhdx *s = bs->opaque;
    uint64_t len = align_up(entries * 8, VHDX_MiB);
    if (len > UINT32_MAX - VHDX_MiB + 1) return -EFBIG;
    int r = commit_bat(bs);
    if (r < 0) return r;
    g_autofree uint8_t *t = g_malloc(VHDX_TABLE_SIZE);
    int which = -1;
    for (int i = 0; i < 2 && which < 0; i++) {
        r = qs_block_pread(bs->file, i ? VHDX_REGION2 : VHDX_REGION1, VHDX_TABLE_SIZE, t);
        if (r < 0) return r;
        if (le32_at(t) == SIG_REGI && le32_at(t + 4) == vhdx_checksum(t, VHDX_TABLE_SIZE, 4))
            which = i;
    }
    uint8_t *ent = NULL;
    for (uint32_t i = 0; which >= 0 && i < le32_at(t + 8) && i < VHDX_MAX_ENTRIES; i++)
        if (guid_is(t + 16 + (size_t)i * 32, GUID_BAT)) ent = t + 16 + (size_t)i * 32;
    if (!ent) return -EIO;
    int64_t at = grab(bs, len);
    if (at < 0) return (int)at;
    uint64_t cap = align_up(s->bat_entries * 8, VHDX_LOG_SECTOR);
    g_autofree uint64_t *le = g_try_malloc(MAX(cap, 8));
    if (!le) return -ENOMEM;
    for (uint64_t i = 0; i < cap / 8; i++) le[i] = GUINT64_TO_LE(s->bat[i]);
    r = cap ? qs_block_pwrite(bs->file, (uint64_t)at, cap, le, 0) : 0;
    if (r == 0) r = qs_block_flush(bs->file);
    put_le64(ent + 16, (uint64_t)at);
    put_le32(ent + 24, (uint32_t)len);
    put_le32(t + 4, vhdx_checksum(t, VHDX_TABLE_SIZE, 4));
    for (int i = 0; r == 0 && i < 2; i++) {
        r = qs_block_pwrite(bs->file, i ? VHDX_REGION2 : VHDX_REGION1, VHDX_TABLE_SIZE, t, 0);
        if (r == 0) r = qs_block_flush(bs->file);
    }
    if (r == 0) {
        s->bat_offset = (uint64_t)at;
        s->bat_length = (uint32_t)len;
    }
    return r;
}

/* Under the lock: write the virtual disk size metadata item through the log. */
static int write_disk_size(QsBlock *bs, uint64_t size)
{
    Vhdx *s = bs->opaque;
    uint64_t at = s->meta_offset + s->size_item, base = align_down(at, VHDX_LOG_SECTOR);
    unsigned n = at + 8 > base + VHDX_LOG_SECTOR ? 2 : 1;
    g_autofree uint8_t *sec = g_malloc((size_t)n * VHDX_LOG_SECTOR);
    int r = qs_block_pread(bs->file, base, (size_t)n * VHDX_LOG_SECTOR, sec);
    if (r < 0) return r;
    put_le64(sec + (at - base), size);
    uint64_t offs[2] = { base, base + VHDX_LOG_SECTOR };
    return vhdx_log_write(bs, offs, sec, n);
}

/* Grow or shrink the virtual disk.  Growing past what the BAT region holds moves the BAT
 * to a larger region at the end of the file; new space reads as zeros (in a differencing
 * image too, whatever the parent holds there); fixed images get their new blocks
 * allocated.  Shrinking drops the blocks past the new end (their space stays in the file). */
static int vhdx_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                         GError **errp)
{
    Vhdx *s = bs->opaque;
    int rc = fmt_check_resize("vhdx", size, prealloc, errp);
    if (rc) return rc;
    if (size % s->logical_sector || size > VHDX_MAX_SIZE) {
        fmt_err(errp, "vhdx: the new size %" G_GUINT64_FORMAT " is not a multiple of the "
                "logical sector size %u up to 64 TiB", size, s->logical_sector);
        return -EINVAL;
    }
    uint64_t old = s->disk_size, cr = s->chunk_ratio;
    if (size == old) return 0;
    uint64_t blocks = div_up(size, s->block_size), nchunks = div_up(blocks, cr);
    uint64_t entries = s->has_parent ? nchunks * (cr + 1)
                     : blocks ? blocks + (blocks - 1) / cr : 0;
    g_mutex_lock(&s->lock);
    int r = start_session(bs, true);
    if (r == 0 && size < old) {
        for (uint64_t b = blocks; b < s->data_blocks; b++) set_bat(s, bat_index(s, b), 0);
        for (uint64_t c = nchunks; s->has_parent && c < s->nchunks; c++) {
            set_bat(s, c * (cr + 1) + cr, 0);
            if (s->sbm && s->sbm[c]) {
                for (size_t k = 0; k < sizeof(s->sbm[c]->dirty); k++)
                    s->ndirty -= __builtin_popcount(s->sbm[c]->dirty[k]);
                g_clear_pointer(&s->sbm[c], g_free);
                s->sbm_loaded--;
            }
        }
        r = commit_bat(bs);   /* while the dropped entries still count */
        if (r == 0) {
            s->bat_entries = entries;
            s->data_blocks = blocks;
        }
    } else if (r == 0) {
        if (entries * 8 > s->bat_length) r = move_bat(bs, entries);
        if (r == 0) r = grow_bat(bs, entries);
        for (uint64_t b = s->data_blocks; r == 0 && s->leave_allocated && b < blocks; b++) {
            int64_t host = grab(bs, s->block_size);   /* fixed: every block present */
            if (host < 0) r = (int)host;
            else set_bat(s, bat_index(s, b), (uint64_t)host | PAYLOAD_FULLY_PRESENT);
        }
        if (r == 0 && s->has_parent && nchunks > s->nchunks && s->sbm) {
            VhdxSbm **m = g_try_realloc(s->sbm, nchunks * sizeof(*m));
            if (!m) r = -ENOMEM;
            else {
                memset(m + s->nchunks, 0, (nchunks - s->nchunks) * sizeof(*m));
                s->sbm = m;
            }
        }
        if (r == 0) {
            s->data_blocks = blocks;
            s->nchunks = MAX(s->nchunks, nchunks);
            r = commit_bat(bs);
        }
    }
    if (r == 0) r = write_disk_size(bs, size);
    if (r == 0) {
        s->disk_size = size;
        bs->size = size;
    }
    g_mutex_unlock(&s->lock);
    if (r == 0 && size > old) r = vhdx_pwrite_zeroes(bs, old, size - old, 0);
    if (r == 0) r = vhdx_flush(bs);
    if (r < 0 && errp && !*errp) fmt_errno(errp, r, "vhdx: could not resize '%s'", bs->filename);
    return r;
}

/* ---- create ---- */

static const QsPropDesc vhdx_create_opts[] = {
    { "backing_file", QS_PROP_STRING, NULL, "File name of the parent VHDX image (makes a "
      "differencing image)" },
    { "backing_fmt", QS_PROP_STRING, NULL, "Image format of the parent: vhdx" },
    { "block_size", QS_PROP_SIZE, "0", "Block Size; min 1MB, max 256MB. 0 means "
      "auto-calculate based on image size." },
    { "block_state_zero", QS_PROP_BOOL, "on", "Force use of payload blocks of type 'ZERO'." },
    { "log_size", QS_PROP_SIZE, "1M", "Log size; min 1MB." },
    { "size", QS_PROP_SIZE, NULL, "Virtual disk size; max of 64TB." },
    { "subformat", QS_PROP_STRING, NULL, "VHDX format type, can be either 'dynamic' or "
      "'fixed'. Default is 'dynamic'." },
    { NULL },
};

static void put_meta_entry(uint8_t *e, const char *guid, uint32_t off, uint32_t len,
                           uint32_t flags)
{
    guid_from(guid, e);
    put_le32(e + 16, off);
    put_le32(e + 20, len);
    put_le32(e + 24, flags);
}

static bool vhdx_create(const char *filename, const QsOpts *o, GError **errp)
{
    uint64_t size = align_up(qs_opts_get_uint(o, "size"), 512);
    uint64_t log_size = align_up(qs_opts_get_uint(o, "log_size"), VHDX_MiB);
    uint64_t bsz = qs_opts_get_uint(o, "block_size");
    bool zero = qs_opts_get_bool(o, "block_state_zero");
    const char *sub = qs_opts_get_str(o, "subformat");
    bool fixed = false;
    if (sub && !strcmp(sub, "fixed")) fixed = true;
    else if (sub && strcmp(sub, "dynamic"))
        return fmt_err(errp, "Parameter 'subformat' does not accept value '%s'", sub);
    if (size > VHDX_MAX_SIZE) return fmt_err(errp, "Image size too large; max of 64TB");
    const char *backing = qs_opts_get_str(o, "backing_file");
    const char *bfmt = qs_opts_get_str(o, "backing_fmt");
    g_autofree uint8_t *loc = NULL;
    uint32_t loc_len = 0;
    if (backing) {
        if (bfmt && strcmp(bfmt, "vhdx"))
            return fmt_err(errp, "vhdx: the parent of a differencing image must be a VHDX "
                           "image, not '%s'", bfmt);
        if (fixed) return fmt_err(errp, "vhdx: a differencing image cannot be fixed");
        QsBlock tmp = { .filename = (char *)filename };
        g_autofree char *path = qs_block_backing_path(&tmp, backing);
        uint8_t guid[16];
        if (!read_data_guid(path, guid, errp)) return false;
        loc = build_locator(filename, backing, guid, &loc_len, errp);
        if (!loc) return false;
        zero = false;   /* blocks not present read from the parent */
    }
    if (log_size < VHDX_MiB || log_size > UINT32_MAX - VHDX_MiB + 1)
        return fmt_err(errp, "Log size must be a multiple of 1 MB");
    if (bsz == 0) {
        bsz = size > (32ull << 40) ? 64 * VHDX_MiB : size > (100ull << 30) ? 32 * VHDX_MiB
            : size > (1ull << 30) ? 16 * VHDX_MiB : 8 * VHDX_MiB;
    }
    bsz = MIN(align_up(bsz, VHDX_MiB), (uint64_t)VHDX_BLOCK_MAX);
    if (!is_pow2(bsz)) return fmt_err(errp, "Block size must be a power of two");
    uint64_t chunk = VHDX_SECTORS_PER_BITMAP * 512 / bsz;
    uint64_t blocks = div_up(size, bsz);
    uint64_t entries = backing ? div_up(blocks, chunk) * (chunk + 1)
                     : blocks ? blocks + (blocks - 1) / chunk : 0;
    uint64_t bat_off = align_up(VHDX_HEADER_SECTION + log_size, VHDX_MiB);
    uint64_t bat_len = MAX(align_up(entries * 8, VHDX_MiB), VHDX_MiB);
    uint64_t meta_off = bat_off + bat_len;
    uint64_t data_off = bat_off + bat_len + 5 * VHDX_MiB;   /* as QEMU: room to grow */
    if (bat_len > UINT32_MAX) return fmt_err(errp, "vhdx: the BAT would be too large");

    QsBlock *f = fmt_create_file(filename, errp);
    if (!f) return false;
    g_autofree uint8_t *buf = g_malloc0(VHDX_TABLE_SIZE);
    int r;
    /* file identifier */
    memcpy(buf, "vhdxfile", 8);
    static const char creator[] = "qemu-slim";
    for (unsigned i = 0; i < sizeof(creator) - 1; i++) put_le16(buf + 8 + 2 * i, creator[i]);
    r = qs_block_pwrite(f, 0, VHDX_TABLE_SIZE, buf, 0);
    /* headers */
    memset(buf, 0, VHDX_TABLE_SIZE);
    put_le32(buf + H_SIG, SIG_HEAD);
    put_le64(buf + H_SEQ, g_random_int());
    fmt_uuid_random(buf + H_FILE_GUID);
    fmt_uuid_random(buf + H_DATA_GUID);
    put_le16(buf + H_VERSION, 1);
    put_le32(buf + H_LOG_LENGTH, (uint32_t)log_size);
    put_le64(buf + H_LOG_OFFSET, VHDX_HEADER_SECTION);
    for (int i = 0; i < 2 && r == 0; i++) {
        if (i) put_le64(buf + H_SEQ, le64_at(buf + H_SEQ) + 1);
        put_le32(buf + H_CHECKSUM, vhdx_checksum(buf, VHDX_HEADER_SIZE, H_CHECKSUM));
        r = qs_block_pwrite(f, i ? VHDX_HEADER2 : VHDX_HEADER1, VHDX_TABLE_SIZE, buf, 0);
    }
    /* region tables */
    memset(buf, 0, VHDX_TABLE_SIZE);
    put_le32(buf, SIG_REGI);
    put_le32(buf + 8, 2);
    guid_from(GUID_BAT, buf + 16);
    put_le64(buf + 32, bat_off);
    put_le32(buf + 40, (uint32_t)bat_len);
    put_le32(buf + 44, 1);
    guid_from(GUID_METADATA, buf + 48);
    put_le64(buf + 64, meta_off);
    put_le32(buf + 72, VHDX_MiB);
    put_le32(buf + 76, 1);
    put_le32(buf + 4, vhdx_checksum(buf, VHDX_TABLE_SIZE, 4));
    if (r == 0) r = qs_block_pwrite(f, VHDX_REGION1, VHDX_TABLE_SIZE, buf, 0);
    if (r == 0) r = qs_block_pwrite(f, VHDX_REGION2, VHDX_TABLE_SIZE, buf, 0);
    /* metadata table and items */
    memset(buf, 0, VHDX_TABLE_SIZE);
    memcpy(buf, "metadata", 8);
    put_le16(buf + 10, backing ? 6 : 5);
    uint32_t t = VHDX_TABLE_SIZE;
    if (backing) put_meta_entry(buf + 192, GUID_PARENT_LOC, t + 4096, loc_len, 4);
    put_meta_entry(buf + 32, GUID_FILE_PARAM, t, 8, 4);
    put_meta_entry(buf + 64, GUID_DISK_SIZE, t + 8, 8, 6);
    put_meta_entry(buf + 96, GUID_PAGE83, t + 16, 16, 6);
    put_meta_entry(buf + 128, GUID_LOGICAL, t + 32, 4, 6);
    put_meta_entry(buf + 160, GUID_PHYSICAL, t + 36, 4, 6);
    if (r == 0) r = qs_block_pwrite(f, meta_off, VHDX_TABLE_SIZE, buf, 0);
    uint8_t items[40] = { 0 };
    put_le32(items, (uint32_t)bsz);
    put_le32(items + 4, fixed ? 1 : backing ? 2 : 0);   /* LeaveBlocksAllocated, HasParent */
    put_le64(items + 8, size);
    fmt_uuid_random(items + 16);
    put_le32(items + 32, 512);
    put_le32(items + 36, 512);
    if (r == 0) r = qs_block_pwrite(f, meta_off + VHDX_TABLE_SIZE, sizeof(items), items, 0);
    if (r == 0 && loc) r = qs_block_pwrite(f, meta_off + VHDX_TABLE_SIZE + 4096, loc_len, loc, 0);
    /* BAT: fixed images have every block present and preallocated (zeros) */
    uint64_t end = data_off + (fixed ? blocks * bsz : 0);
    GError *err = NULL;
    if (r == 0 && !qs_block_truncate(f, end, false, QS_PREALLOC_OFF, &err)) {
        qs_block_close(f);
        g_propagate_error(errp, err);
        return false;
    }
    if (fixed || zero) {
        size_t chunk_entries = 1u << 16;
        g_autofree uint64_t *c = g_new(uint64_t, chunk_entries);
        for (uint64_t i = 0; r == 0 && i < entries; i += chunk_entries) {
            size_t n = (size_t)MIN((uint64_t)chunk_entries, entries - i);
            for (size_t j = 0; j < n; j++) {
                uint64_t k = i + j, v = 0;
                if (k % (chunk + 1) != chunk) {
                    uint64_t b = k - k / (chunk + 1);
                    v = fixed ? (data_off + b * bsz) | PAYLOAD_FULLY_PRESENT : PAYLOAD_ZERO;
                }
                c[j] = GUINT64_TO_LE(v);
            }
            r = qs_block_pwrite(f, bat_off + i * 8, n * 8, c, 0);
        }
    }
    if (r == 0) r = qs_block_flush(f);
    qs_block_close(f);
    if (r < 0) return fmt_errno(errp, r, "vhdx: could not write '%s'", filename);
    return true;
}

const QsBlockDriver qs_block_drv_vhdx = {
    .name = "vhdx",
    .desc = "Hyper-V VHDX 1.00 (dynamic, fixed, differencing)",
    .instance_size = sizeof(Vhdx),
    .probe = vhdx_probe,
    .create_opts = vhdx_create_opts,
    .create = vhdx_create,
    .open = vhdx_open,
    .close = vhdx_close,
    .pread = vhdx_pread,
    .pwrite = vhdx_pwrite,
    .pwrite_zeroes = vhdx_pwrite_zeroes,
    .flush = vhdx_flush,
    .block_status = vhdx_block_status,
    .truncate = vhdx_truncate,
    .change_backing = vhdx_change_backing,
    .make_empty = vhdx_make_empty,
    .check = vhdx_check,
    .cluster_size = vhdx_cluster_size,
};
