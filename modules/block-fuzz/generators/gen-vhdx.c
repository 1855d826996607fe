/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen: the vhdx generator: valid 4 MiB images (dynamic, LeaveBlocksAllocated,
 * differencing; 1-256 MiB blocks; 512/4096-byte sectors) and their structure mutations. */
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>
#include "qs/block.h"
#include "imggen.h"
#include "../harnesses/harness.h"

/* The layout (MS-VHDX 1.00): file identifier at 0, headers at 64 and 128 KiB (4 KiB
 * checksummed), region tables at 192 and 256 KiB (64 KiB checksummed), then the log, BAT
 * and metadata regions at 1 MiB multiples.  Every integer is little-endian. */
#define MiB          (1ull << 20)
#define IMAGE_SIZE   (4 * MiB)       /* header section, log, BAT, metadata: 1 MiB each */
#define HDR1         (64u << 10)
#define HDR2         (128u << 10)
#define HDR_SIZE     4096u
#define RGN1         (192u << 10)
#define RGN2         (256u << 10)
#define TABLE_SIZE   (64u << 10)
#define BAT_ROOM     (MiB / 8)       /* entries a 1 MiB BAT region holds */
/* The packed input (harnesses/packed.h) carries an image's non-zero bytes: only the
 * first 512 BAT entries of every 8192 (4 KiB of each 64 KiB) are set, so that an input
 * stays within the 128 KiB campaigns allow (fuzz.sh) however many blocks the disk has. */
#define BAT_REPR(i)  ((i) % 8192 < 512)

static const char *const known_guids[] = {
    "2dc27766-f623-4200-9d64-115e9bfd4a08",   /* BAT region */
    "8b7ca206-4790-4b9a-b8fe-575f050f886e",   /* metadata region */
    "caa16737-fa36-4d43-b3b6-33f0aa44e76b",   /* file parameters */
    "2fa54224-cd1b-4876-b211-5dbed83bf4b8",   /* virtual disk size */
    "beca12ab-b2e6-4523-93ef-c309e000c746",   /* page 83 data */
    "8141bf1d-a96f-4709-ba47-f233a8faab5f",   /* logical sector size */
    "cda348c7-445d-4471-9cc9-e9885251c556",   /* physical sector size */
    "a8d35f2d-b30b-454d-abf7-d3d84834ab0c",   /* parent locator */
    "b04aefb7-d19e-4a81-b789-25b8e9445913",   /* VHDX parent locator type */
};
enum { G_BAT, G_META, G_FILE_PARAM, G_DISK_SIZE, G_PAGE83, G_LOGICAL, G_PHYSICAL,
       G_PARENT_LOC };

static const Field f_ident = { "ident.signature", 0, 8, false };
static const Field vhdx_hdr[] = {
    { "hdr.signature", 0, 4, false }, { "hdr.checksum", 4, 4, false },
    { "hdr.sequence", 8, 8, false }, { "hdr.file_write_guid", 16, 8, false },
    { "hdr.data_write_guid", 32, 8, false }, { "hdr.log_guid[0..8]", 48, 8, false },
    { "hdr.log_guid[8..16]", 56, 8, false }, { "hdr.log_version", 64, 2, false },
    { "hdr.version", 66, 2, false }, { "hdr.log_length", 68, 4, false },
    { "hdr.log_offset", 72, 8, false },
};
static const Field rgn_hdr[] = {
    { "rgn.signature", 0, 4, false }, { "rgn.checksum", 4, 4, false },
    { "rgn.entry_count", 8, 4, false }, { "rgn.reserved", 12, 4, false },
};
static const Field rgn_entry[] = {
    { "rgn.guid[0..8]", 0, 8, false }, { "rgn.guid[8..16]", 8, 8, false },
    { "rgn.file_offset", 16, 8, false }, { "rgn.length", 24, 4, false },
    { "rgn.required", 28, 4, false },
};
static const Field meta_hdr[] = {
    { "meta.signature", 0, 8, false }, { "meta.reserved", 8, 2, false },
    { "meta.entry_count", 10, 2, false },
};
static const Field meta_entry[] = {
    { "meta.item_id[0..8]", 0, 8, false }, { "meta.item_id[8..16]", 8, 8, false },
    { "meta.offset", 16, 4, false }, { "meta.length", 20, 4, false },
    { "meta.flags", 24, 4, false }, { "meta.reserved2", 28, 4, false },
};
static const Field item_file_param[] = {
    { "item.block_size", 0, 4, false }, { "item.file_param_flags", 4, 4, false },
};
static const Field item_disk_size[] = { { "item.virtual_disk_size", 0, 8, false } };
static const Field item_page83[] = { { "item.page83[0..8]", 0, 8, false } };
static const Field item_logical[] = { { "item.logical_sector_size", 0, 4, false } };
static const Field item_physical[] = { { "item.physical_sector_size", 0, 4, false } };
static const Field item_locator[] = {
    { "locator.type[0..8]", 0, 8, false }, { "locator.reserved", 16, 2, false },
    { "locator.key_value_count", 18, 2, false }, { "locator.key_offset[0]", 20, 4, false },
    { "locator.value_offset[0]", 24, 4, false }, { "locator.key_length[0]", 28, 2, false },
    { "locator.value_length[0]", 30, 2, false },
};
static const Field bat_entry = { "bat", 0, 8, false };
/* a log entry (MS-VHDX 2.3.1): header, descriptors of 32 bytes from offset 64, data
 * sectors after the descriptor sectors */
static const Field log_hdr[] = {
    { "log.signature", 0, 4, false }, { "log.checksum", 4, 4, false },
    { "log.entry_length", 8, 4, false }, { "log.tail", 12, 4, false },
    { "log.sequence", 16, 8, false }, { "log.descriptor_count", 24, 4, false },
    { "log.guid[0..8]", 32, 8, false }, { "log.flushed_file_offset", 48, 8, false },
    { "log.last_file_offset", 56, 8, false },
};
static const Field log_desc[] = {
    { "desc.signature", 0, 4, false }, { "desc.trailing", 4, 4, false },
    { "desc.leading_or_zero_length", 8, 8, false }, { "desc.file_offset", 16, 8, false },
    { "desc.sequence", 24, 8, false },
};
static const Field log_data[] = {
    { "data.signature", 0, 4, false }, { "data.sequence_high", 4, 4, false },
    { "data.sequence_low", 4092, 4, false },
};
#define LOG_SECTOR 4096u
static const Field le32 = { "", 0, 4, false }, le64 = { "", 0, 8, false };

/* ---- CRC-32C (Castagnoli, reflected 0x82f63b78), written here from the definition so
 * that the generator does not share the driver's code ---- */

static uint32_t crc_table[256];

static uint32_t crc32c(const uint8_t *p, size_t n, size_t skip)
{
    if (!crc_table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            crc_table[i] = c;
        }
    }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = i >= skip && i < skip + 4 ? 0 : p[i];   /* the checksum field as 0 */
        c = crc_table[(c ^ b) & 0xff] ^ (c >> 8);
    }
    return ~c;
}

/* The log entry at the log's start, when it has one: its length (else 0). */
static uint32_t log_entry_len(const Image *im, uint64_t log_off)
{
    if (!log_off || log_off > im->len || im->len - log_off < 8 * LOG_SECTOR) return 0;
    if (img_get(im, log_off, &log_hdr[0]) != 0x65676f6cu) return 0;     /* "loge" */
    uint32_t len = (uint32_t)img_get(im, log_off, &log_hdr[2]);
    return len && len <= 2 * LOG_SECTOR ? len : 0;
}

/* Recompute the checksums of both headers and both region tables. */
static void fix_checksums(Image *im)
{
    static const uint32_t at[] = { HDR1, HDR2, RGN1, RGN2 };
    for (unsigned i = 0; i < 4; i++) {
        uint32_t len = i < 2 ? HDR_SIZE : TABLE_SIZE;
        if (at[i] + len > im->len) continue;
        img_set(im, at[i] + 4, &le32, crc32c(im->buf + at[i], len, 4));
    }
    /* the log entry's: over the whole entry */
    uint64_t log_off = img_get(im, HDR1, &vhdx_hdr[10]);
    uint32_t len = log_entry_len(im, log_off);
    if (len) img_set(im, log_off + 4, &le32, crc32c(im->buf + log_off, len, 4));
}

/* A log with one pending entry (the log GUID in both headers): a zero descriptor and a
 * data descriptor rewriting a sector of the metadata region with what it holds, so that
 * replaying it (read-write open) leaves the same valid image.  4 KiB of descriptors and
 * one data sector: 8 KiB. */
static void add_log(Image *im, uint64_t log_off, uint64_t meta_off)
{
    uint8_t guid[16];
    for (int i = 0; i < 16; i++) guid[i] = (uint8_t)g_rand_int(im->rng);
    uint64_t seq = 1 + img_rand_below(im->rng, UINT64_MAX - 1);
    uint8_t *e = im->buf + log_off;
    memset(e, 0, 2 * LOG_SECTOR);
    uint64_t target = meta_off + TABLE_SIZE;             /* the metadata items' sector */
    const uint8_t *src = im->buf + target;
    img_set(im, log_off, &log_hdr[0], 0x65676f6cu);       /* "loge" */
    img_set(im, log_off, &log_hdr[2], 2 * LOG_SECTOR);
    img_set(im, log_off, &log_hdr[3], 0);                 /* tail: this entry */
    img_set(im, log_off, &log_hdr[4], seq);
    img_set(im, log_off, &log_hdr[5], 2);
    memcpy(e + 32, guid, 16);
    img_set(im, log_off, &log_hdr[7], im->len);
    img_set(im, log_off, &log_hdr[8], im->len);
    /* descriptor 0: zero 4 KiB past the metadata items (zeros already) */
    uint8_t *d = e + 64;
    img_set(im, log_off + 64, &log_desc[0], 0x6f72657au); /* "zero" */
    img_set(im, log_off + 64, &log_desc[2], LOG_SECTOR);
    img_set(im, log_off + 64, &log_desc[3], target + 3 * LOG_SECTOR);
    img_set(im, log_off + 64, &log_desc[4], seq);
    /* descriptor 1: the sector at target, its first 8 and last 4 bytes in the descriptor */
    d += 32;
    img_set(im, log_off + 96, &log_desc[0], 0x63736564u); /* "desc" */
    memcpy(d + 4, src + LOG_SECTOR - 4, 4);
    memcpy(d + 8, src, 8);
    img_set(im, log_off + 96, &log_desc[3], target);
    img_set(im, log_off + 96, &log_desc[4], seq);
    uint8_t *sec = e + LOG_SECTOR;
    memcpy(sec + 8, src + 8, LOG_SECTOR - 12);
    img_set(im, log_off + LOG_SECTOR, &log_data[0], 0x61746164u);   /* "data" */
    img_set(im, log_off + LOG_SECTOR, &log_data[1], seq >> 32);
    img_set(im, log_off + LOG_SECTOR, &log_data[2], (uint32_t)seq);
    for (int h = 0; h < 2; h++) memcpy(im->buf + (h ? HDR2 : HDR1) + 48, guid, 16);
}

static void guid_put(uint8_t *out, const char *s)
{
    unsigned v[11] = { 0 };
    sscanf(s, "%8x-%4x-%4x-%2x%2x-%2x%2x%2x%2x%2x%2x", &v[0], &v[1], &v[2], &v[3], &v[4],
           &v[5], &v[6], &v[7], &v[8], &v[9], &v[10]);
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(v[0] >> 8 * i);
    out[4] = (uint8_t)v[1]; out[5] = (uint8_t)(v[1] >> 8);
    out[6] = (uint8_t)v[2]; out[7] = (uint8_t)(v[2] >> 8);
    for (int i = 0; i < 8; i++) out[8 + i] = (uint8_t)v[3 + i];
}

static bool guid_eq(const uint8_t *p, int which)
{
    uint8_t g[16];
    guid_put(g, known_guids[which]);
    return !memcmp(p, g, 16);
}

/* ---- where things are (read from the image, so that mutated images work too) ---- */

typedef struct Layout {
    uint64_t log_off, bat_off, meta_off;    /* 0: not found */
    uint32_t bat_len, meta_len;
} Layout;

static Layout layout(const Image *im)
{
    Layout l = { 0 };
    l.log_off = img_get(im, HDR1, &vhdx_hdr[10]);
    uint32_t n = MIN((uint32_t)img_get(im, RGN1, &rgn_hdr[2]), 64u);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = RGN1 + 16 + 32ull * i;
        if (e + 32 > im->len) break;
        if (guid_eq(im->buf + e, G_BAT)) {
            l.bat_off = img_get(im, e, &rgn_entry[2]);
            l.bat_len = (uint32_t)img_get(im, e, &rgn_entry[3]);
        } else if (guid_eq(im->buf + e, G_META)) {
            l.meta_off = img_get(im, e, &rgn_entry[2]);
            l.meta_len = (uint32_t)img_get(im, e, &rgn_entry[3]);
        }
    }
    if (l.bat_off >= im->len) l.bat_off = 0;
    if (l.meta_off >= im->len || l.meta_off + TABLE_SIZE > im->len) l.meta_off = 0;
    return l;
}

/* Offset in the image of the metadata item with id `which`, or 0 (*len: its length). */
static uint64_t find_item(const Image *im, const Layout *l, int which, uint32_t *len)
{
    if (!l->meta_off) return 0;
    uint32_t n = MIN((uint32_t)img_get(im, l->meta_off, &meta_hdr[2]), 64u);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t e = l->meta_off + 32 + 32ull * i;
        if (!guid_eq(im->buf + e, which)) continue;
        uint64_t off = img_get(im, e, &meta_entry[2]);
        *len = (uint32_t)img_get(im, e, &meta_entry[3]);
        if (off >= TABLE_SIZE && l->meta_off + off + *len <= im->len) return l->meta_off + off;
    }
    return 0;
}

/* ---- valid images ---- */

static const uint64_t vhdx_sizes[] = { 0, 512, 4096, 1 << 20, 3 << 20, 64 << 20,
                                       1ull << 30, 100ull << 30, 1ull << 40, 64ull << 40 };

static bool make_vhdx(GRand *rng, const char *dir, const char *path, GString *log,
                       GError **errp)
{
    /* 1 MiB .. 256 MiB; 1 MiB more often, the size payload blocks are made for */
    uint64_t bs = g_rand_int_range(rng, 0, 3) ? MiB << g_rand_int_range(rng, 0, 9) : MiB;
    uint64_t size = vhdx_sizes[g_rand_int_range(rng, 0, G_N_ELEMENTS(vhdx_sizes))];
    if (size > 4096 && g_rand_boolean(rng)) size -= img_rand_below(rng, size / 2) & ~4095ull;
    bool diff = !g_rand_int_range(rng, 0, 4);
    /* the BAT must fit its 1 MiB region whichever logical sector size finish_vhdx picks:
     * 512-byte sectors give the most bitmap entries, 4096-byte ones round a differencing
     * image's entries up to the most (a whole chunk) */
    for (;;) {
        uint64_t blocks = (size + bs - 1) / bs, n = 0;
        for (uint64_t chunk = (1ull << 32) / bs; chunk <= (1ull << 35) / bs; chunk *= 8)
            n = MAX(n, diff ? (blocks + chunk - 1) / chunk * (chunk + 1)
                            : blocks ? blocks + (blocks - 1) / chunk : 0);
        if (n <= BAT_ROOM) break;
        size /= 2;
    }
    size &= ~4095ull;
    g_autoptr(GString) o = g_string_new("");
    g_string_append_printf(o, "block_size=%" G_GUINT64_FORMAT ",log_size=1M,"
                           "block_state_zero=off", bs);
    if (diff) {
        /* a parent beside the image (the work directory): the locator names it relatively */
        g_autofree char *parent = g_build_filename(dir, ".imggen-parent.vhdx", NULL);
        if (!g_file_test(parent, G_FILE_TEST_EXISTS) &&
            !qs_block_create("vhdx", parent, MiB, "log_size=1M", true, errp))
            return false;
        g_string_append(o, ",backing_file=.imggen-parent.vhdx,backing_fmt=vhdx");
    }
    g_string_append_printf(log, " create vhdx size=%" G_GUINT64_FORMAT " %s;", size, o->str);
    return qs_block_create("vhdx", path, size, o->str, true, errp);
}

/* Payload blocks after the 4 MiB of regions, as many as fit the harness's limit (3 in 4
 * images with blocks of 1 or 2 MiB): each holds a few non-zero pieces (the packed input
 * carries only those), its BAT entry says fully present, or in a differencing image
 * partially present with the chunk's sector bitmap block after it, some bits set.
 * Returns how many were added, *partial how many of them partially present. */
static unsigned add_payload_blocks(Image *im, const Layout *l, uint64_t bs, uint32_t logical,
                                   uint64_t chunk, uint64_t blocks, bool diff,
                                   unsigned *partial_made)
{
    *partial_made = 0;
    if (bs > 2 * MiB || !blocks || !g_rand_int_range(im->rng, 0, 4)) return 0;
    unsigned want = (unsigned)g_rand_int_range(im->rng, 1, 4), made = 0;
    for (unsigned k = 0; k < want; k++) {
        uint64_t i = img_rand_below(im->rng, MIN(blocks, (uint64_t)512));
        uint64_t idx = i + i / chunk, at = l->bat_off + 8 * idx;
        bool partial = diff && g_rand_boolean(im->rng);
        uint64_t sb_idx = i / chunk * (chunk + 1) + chunk, sb_at = l->bat_off + 8 * sb_idx;
        uint64_t need = bs + (partial && !(img_get(im, sb_at, &le64) & 7) ? MiB : 0);
        if (idx >= BAT_ROOM || !BAT_REPR(idx) || (img_get(im, at, &le64) & 7) >= 6 ||
            (partial && sb_idx >= BAT_ROOM) ||          /* one entry: size no matter */
            im->len + need > BF_MAX_INPUT)
            continue;
        uint64_t off = im->len;
        im->buf = g_realloc(im->buf, im->len + need);
        memset(im->buf + off, 0, need);
        im->len += need;
        for (int p = g_rand_int_range(im->rng, 1, 4); p > 0; p--) {
            uint64_t at_data = off + (img_rand_below(im->rng, bs / 4096) * 4096);
            uint32_t n = 512u << g_rand_int_range(im->rng, 0, 4);
            for (uint32_t b = 0; b < n; b++) im->buf[at_data + b] = (uint8_t)g_rand_int(im->rng);
        }
        img_set(im, at, &le64, off / MiB << 20 | (partial ? 7 : 6));
        if (partial) {
            uint64_t sb = img_get(im, sb_at, &le64);
            if (!(sb & 7)) {                                   /* a new bitmap block */
                sb = (off + bs) / MiB << 20 | 6;
                img_set(im, sb_at, &le64, sb);
            }
            uint64_t bytes = bs / logical / 8;               /* this block's bitmap */
            uint64_t bm = (sb >> 20) * MiB + (i % chunk) * bytes;
            for (int b = g_rand_int_range(im->rng, 1, 9); b > 0; b--)
                im->buf[bm + img_rand_below(im->rng, bytes)] |=
                    (uint8_t)(1u << g_rand_int_range(im->rng, 0, 8));
        }
        made++;
        *partial_made += partial;
    }
    return made;
}

static bool finish_vhdx(Image *im, GError **errp)
{
    /* create leaves room for data blocks after the metadata: only zeros there */
    if (im->len < IMAGE_SIZE) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "vhdx: created image is %zu "
                    "bytes, less than the %llu of its regions", (size_t)im->len, IMAGE_SIZE);
        return false;
    }
    for (gsize i = IMAGE_SIZE; i < im->len; i++)
        if (im->buf[i]) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "vhdx: created image has "
                        "data at %#zx, past the 4 MiB the generator keeps", (size_t)i);
            return false;
        }
    im->len = IMAGE_SIZE;
    Layout l = layout(im);
    if (l.log_off != MiB || l.bat_off != 2 * MiB || l.meta_off != 3 * MiB ||
        l.bat_len != MiB || l.meta_len != MiB) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "vhdx: unexpected layout from "
                    "create (log %#" G_GINT64_MODIFIER "x, BAT %#" G_GINT64_MODIFIER "x+%u, "
                    "metadata %#" G_GINT64_MODIFIER "x+%u)", l.log_off, l.bat_off, l.bat_len,
                    l.meta_off, l.meta_len);
        return false;
    }
    uint32_t len;
    uint64_t fp = find_item(im, &l, G_FILE_PARAM, &len);
    uint64_t ds = find_item(im, &l, G_DISK_SIZE, &len);
    uint64_t ls = find_item(im, &l, G_LOGICAL, &len);
    uint64_t ps = find_item(im, &l, G_PHYSICAL, &len);
    if (!fp || !ds || !ls || !ps) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "vhdx: created image lacks a "
                    "metadata item");
        return false;
    }
    uint64_t bs = img_get(im, fp, &le32);
    bool diff = img_get(im, fp + 4, &le32) & 2;
    /* sector sizes: 512 or 4096 each (the virtual size a multiple of the logical one) */
    uint32_t logical = g_rand_boolean(im->rng) ? 4096 : 512;
    img_set(im, ls, &le32, logical);
    uint32_t physical = g_rand_boolean(im->rng) ? 4096 : 512;
    img_set(im, ps, &le32, physical);
    uint64_t size = img_get(im, ds, &le64) & ~(uint64_t)(logical - 1);
    img_set(im, ds, &le64, size);
    bool fixed = !diff && !g_rand_int_range(im->rng, 0, 3);
    if (fixed) img_set(im, fp + 4, &le32, 1);               /* LeaveBlocksAllocated */
    /* the BAT: payload blocks not present, zero, unmapped or undefined, sector bitmaps
     * not present; then maybe a few payload blocks after the regions */
    uint64_t chunk = (1ull << 23) * logical / bs;
    uint64_t blocks = (size + bs - 1) / bs;
    uint64_t n = diff ? (blocks + chunk - 1) / chunk * (chunk + 1)
                      : blocks ? blocks + (blocks - 1) / chunk : 0;
    int pattern = g_rand_int_range(im->rng, 0, 4);
    for (uint64_t i = 0; i < n && i < BAT_ROOM; i++) {
        if (!BAT_REPR(i) || i % (chunk + 1) == chunk) continue;
        uint64_t st = pattern == 0 ? 0 : pattern == 1 ? 2
                    : (uint64_t)g_rand_int_range(im->rng, 0, 4);   /* 0..3 */
        img_set(im, l.bat_off + 8 * i, &le64, st);
    }
    unsigned npartial;
    unsigned nblocks = add_payload_blocks(im, &l, bs, logical, chunk, blocks, diff, &npartial);
    /* an unknown metadata item that is not required: readers skip it */
    uint32_t items = (uint32_t)img_get(im, l.meta_off, &meta_hdr[2]);
    if (g_rand_boolean(im->rng) && items < 64) {
        uint64_t e = l.meta_off + 32 + 32ull * items;
        for (int i = 0; i < 16; i++) im->buf[e + i] = (uint8_t)g_rand_int(im->rng);
        img_set(im, e + 16, &le32, TABLE_SIZE + 2048);
        img_set(im, e + 20, &le32, 8);
        img_set(im, e + 24, &le32, 0);
        img_set(im, l.meta_off + TABLE_SIZE + 2048, &le64, img_rand_below(im->rng, UINT64_MAX));
        img_set(im, l.meta_off, &meta_hdr[2], items + 1);
    }
    /* the regions in any order after the header section, the region entries too */
    static const uint8_t perms[6][3] = { { 1, 2, 3 }, { 1, 3, 2 }, { 2, 1, 3 }, { 2, 3, 1 },
                                         { 3, 1, 2 }, { 3, 2, 1 } };
    const uint8_t *pm = perms[g_rand_int_range(im->rng, 0, 6)];
    g_autofree uint8_t *old = g_memdup2(im->buf + MiB, 3 * MiB);
    memset(im->buf + MiB, 0, 3 * MiB);
    memcpy(im->buf + pm[1] * MiB, old + MiB, MiB);            /* BAT */
    memcpy(im->buf + pm[2] * MiB, old + 2 * MiB, MiB);        /* metadata */
    for (int h = 0; h < 2; h++) img_set(im, h ? HDR2 : HDR1, &vhdx_hdr[10], pm[0] * MiB);
    bool swap = g_rand_boolean(im->rng);
    for (int t = 0; t < 2; t++) {
        uint64_t r = t ? RGN2 : RGN1;
        for (uint32_t i = 0; i < 2; i++) {
            uint64_t e = r + 16 + 32ull * i;
            bool bat = guid_eq(im->buf + e, G_BAT);
            img_set(im, e, &rgn_entry[2], (bat ? pm[1] : pm[2]) * MiB);
        }
        if (swap) {
            uint8_t tmp[32];
            memcpy(tmp, im->buf + r + 16, 32);
            memmove(im->buf + r + 16, im->buf + r + 48, 32);
            memcpy(im->buf + r + 48, tmp, 32);
        }
    }
    /* sequence numbers: either header may be the current one, or the only valid one */
    uint64_t seq = img_rand_below(im->rng, UINT64_MAX / 2);
    int cur = g_rand_boolean(im->rng);
    img_set(im, cur ? HDR2 : HDR1, &vhdx_hdr[2], seq + 1);
    img_set(im, cur ? HDR1 : HDR2, &vhdx_hdr[2], seq);
    if (!g_rand_int_range(im->rng, 0, 4)) {
        add_log(im, pm[0] * MiB, pm[2] * MiB);
        im->replay = true;
    }
    fix_checksums(im);
    bool torn = !g_rand_int_range(im->rng, 0, 6);             /* the older one torn */
    if (torn) memset(im->buf + (cur ? HDR1 : HDR2), 0, HDR_SIZE);
    g_string_append_printf(im->log, " sectors %u/%u, %s, BAT pattern %d, %u metadata items, "
                           "%u payload blocks (%u partial), log/BAT/metadata at %u/%u/%u "
                           "MiB, header %d current%s%s;",
                           logical, physical, diff ? "differencing" : fixed
                                ? "LeaveBlocksAllocated" : "dynamic",
                           pattern, (unsigned)img_get(im, pm[2] * MiB, &meta_hdr[2]),
                           nblocks, npartial, pm[0], pm[1], pm[2], cur + 1,
                           torn ? ", other torn" : "",
                           im->replay ? ", a log entry to replay" : "");
    return true;
}

/* ---- mutations ---- */

/* Replace a 16-byte GUID with a known one (a duplicate, a required unknown), zeros or
 * random bytes. */
static void mutate_guid(Image *im, uint64_t at, const char *what)
{
    if (at + 16 > im->len) return;
    int k = g_rand_int_range(im->rng, 0, (gint32)G_N_ELEMENTS(known_guids) + 2);
    if (k < (int)G_N_ELEMENTS(known_guids)) guid_put(im->buf + at, known_guids[k]);
    else if (k == (int)G_N_ELEMENTS(known_guids)) memset(im->buf + at, 0, 16);
    else for (int i = 0; i < 16; i++) im->buf[at + i] = (uint8_t)g_rand_int(im->rng);
    g_string_append_printf(im->log, " %s@%#" G_GINT64_MODIFIER "x: guid %d;", what, at, k);
}

static void mutate_bat(Image *im, const Layout *l)
{
    if (!l->bat_off) return;
    /* mostly the entries in use; any representable one within the region */
    uint64_t lim = g_rand_int_range(im->rng, 0, 4) ? 64 : MIN(l->bat_len / 8, (uint32_t)BAT_ROOM);
    uint64_t i = img_rand_below(im->rng, MAX(lim, 1));
    if (!BAT_REPR(i)) i %= 512;
    uint64_t at = l->bat_off + 8 * i;
    uint64_t e = img_get(im, at, &bat_entry);
    switch (g_rand_int_range(im->rng, 0, 4)) {
    case 0:                                    /* a state, the offset kept */
        img_mutate_to(im, at, &bat_entry, (e & ~7ull) | (uint64_t)g_rand_int_range(im->rng, 0, 8));
        break;
    case 1: case 2: {                          /* a present block at a chosen place */
        static const uint64_t mb[] = { 0, 1, 2, 3, 4, 5, 64, 4095, 1ull << 32, (1ull << 44) - 1 };
        uint64_t off = g_rand_boolean(im->rng) ? mb[g_rand_int_range(im->rng, 0, G_N_ELEMENTS(mb))]
                                               : img_rand_below(im->rng, 1ull << 44);
        uint64_t st = g_rand_int_range(im->rng, 0, 4) ? 6 : (uint64_t)g_rand_int_range(im->rng, 0, 8);
        img_mutate_to(im, at, &bat_entry, off << 20 | st);
        break;
    }
    default:
        img_mutate_struct(im, at, &bat_entry, 1);
    }
}

static void mutate_vhdx(Image *im)
{
    if (im->len < IMAGE_SIZE) return;
    Layout l = layout(im);
    img_note_offset(im, l.log_off);
    img_note_offset(im, l.bat_off);
    img_note_offset(im, l.meta_off);
    uint32_t len = 0;
    switch (g_rand_int_range(im->rng, 0, 11)) {
    case 0:
        img_mutate_struct(im, 0, &f_ident, 1);
        break;
    case 1: case 2: {
        uint64_t h = g_rand_boolean(im->rng) ? HDR1 : HDR2;
        img_mutate_struct(im, h, S(vhdx_hdr));
        break;
    }
    case 3: case 4: {
        uint64_t r = g_rand_boolean(im->rng) ? RGN1 : RGN2;
        uint32_t n = MIN((uint32_t)img_get(im, r, &rgn_hdr[2]), 255u);
        uint64_t e = r + 16 + 32ull * img_rand_below(im->rng, n + 1);
        int k = g_rand_int_range(im->rng, 0, 4);
        if (k == 0) img_mutate_struct(im, r, S(rgn_hdr));
        else if (k == 1) mutate_guid(im, e, "rgn.guid");
        else img_mutate_struct(im, e, S(rgn_entry));
        break;
    }
    case 5: {
        if (!l.meta_off) break;
        uint32_t n = MIN((uint32_t)img_get(im, l.meta_off, &meta_hdr[2]), 255u);
        uint64_t e = l.meta_off + 32 + 32ull * img_rand_below(im->rng, n + 1);
        int k = g_rand_int_range(im->rng, 0, 4);
        if (k == 0) img_mutate_struct(im, l.meta_off, S(meta_hdr));
        else if (k == 1) mutate_guid(im, e, "meta.item_id");
        else img_mutate_struct(im, e, S(meta_entry));
        break;
    }
    case 6: {
        static const struct { int guid; const Field *f; unsigned n; } items[] = {
            { G_FILE_PARAM, S(item_file_param) }, { G_DISK_SIZE, S(item_disk_size) },
            { G_PAGE83, S(item_page83) }, { G_LOGICAL, S(item_logical) },
            { G_PHYSICAL, S(item_physical) }, { G_PARENT_LOC, S(item_locator) },
        };
        unsigned k = (unsigned)g_rand_int_range(im->rng, 0, G_N_ELEMENTS(items));
        uint64_t at = find_item(im, &l, items[k].guid, &len);
        if (!at) at = find_item(im, &l, G_FILE_PARAM, &len), k = 0;
        if (at && items[k].guid == G_PARENT_LOC && g_rand_boolean(im->rng)) {
            /* a key/value entry of the locator */
            uint32_t n = (uint32_t)img_get(im, at, &item_locator[2]);
            uint64_t e = at + 12ull * img_rand_below(im->rng, MIN(n, 16u) + 1);
            img_mutate_struct(im, e, &item_locator[3], 4);
        } else if (at) {
            img_mutate_struct(im, at, items[k].f, items[k].n);
        }
        break;
    }
    case 7: {
        /* the log entry: header, a descriptor, the data sector */
        uint32_t n = log_entry_len(im, l.log_off);
        if (!n) {
            mutate_bat(im, &l);
            break;
        }
        int k = g_rand_int_range(im->rng, 0, 4);
        if (k < 2) img_mutate_struct(im, l.log_off, S(log_hdr));
        else if (k == 2) img_mutate_struct(im, l.log_off + 64 + 32 * g_rand_int_range(im->rng, 0, 2),
                                           S(log_desc));
        else img_mutate_struct(im, l.log_off + LOG_SECTOR, S(log_data));
        break;
    }
    default:
        mutate_bat(im, &l);
    }
    if (g_rand_int_range(im->rng, 0, 10)) fix_checksums(im);   /* usually past the checks */
}

const ImgFormat imggen_vhdx = { "vhdx", make_vhdx, finish_vhdx, mutate_vhdx, true };
