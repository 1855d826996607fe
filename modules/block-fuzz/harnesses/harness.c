/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The shared image harness: writes an input to a private tmpfs directory and drives it
 * through the public block API the way qemu-img info/map/check/convert/write would. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <glib/gstdio.h>
#include <sanitizer/asan_interface.h>   /* its macros do nothing without ASan */
#include "qs/block.h"
#include "harness.h"
#include "packed.h"

static char *sandbox;     /* private directory the images live in */
static char *img_path;    /* the input, read-only phases */
static char *rw_path;     /* a copy of the input for the write phase */
static bool verbose;
static unsigned write_every = BF_WRITE_EVERY;
static int img_fd = -1;   /* the input's file, kept open and rewritten in place */
static pid_t creator;     /* only the process that made the sandbox removes it (the AFL
                           * fork server's children share it) */

/* A broken invariant of the block API: report it and abort, so every engine sees a crash. */
#define BF_BUG(...) do { fprintf(stderr, "block-fuzz: BUG: " __VA_ARGS__); \
                         fputc('\n', stderr); abort(); } while (0)

/* A buffer whose data ends where its allocation ends: a read past the end hits the
 * allocation's redzone, one before the start the poisoned head (ASan's 8-byte granules:
 * from the granule before), nearly as with a fresh g_malloc(n) each time — but without
 * one: ASan's quarantine never hands freed memory straight back, so each fresh buffer
 * was new pages to fault in (a tenth of the raw target with the read buffers). */
typedef struct ExactBuf {
    uint8_t *mem;
    size_t cap;       /* a multiple of 8, so that the redzone starts right after */
} ExactBuf;

static uint8_t *exact_buf(ExactBuf *b, size_t n)
{
    if (!b->mem) b->mem = g_malloc(b->cap);
    if (n > b->cap) BF_BUG("a buffer of %zu bytes asked of one of %zu", n, b->cap);
    ASAN_UNPOISON_MEMORY_REGION(b->mem, b->cap);
    ASAN_POISON_MEMORY_REGION(b->mem, b->cap - n);
    return b->mem + (b->cap - n);
}

static void cleanup(void)
{
    if (!sandbox || getpid() != creator) return;
    g_unlink(img_path);
    g_unlink(rw_path);
    g_rmdir(sandbox);
}

/* check's findings are not written (millions of stderr writes were a third of the qcow2
 * target's time); the first BF_FORMAT_MESSAGES of an input are formatted, so that a bad
 * argument (a string without its end) still shows, the rest only counted (formatting
 * them was 8% of it). */
static unsigned messages;   /* of the current input */

static void drop_message(const char *fmt, va_list ap, void *opaque)
{
    if (!verbose && messages++ >= BF_FORMAT_MESSAGES) return;
    char text[1024];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (verbose) fputs(text, stderr);
}

void bf_init(void)
{
    if (sandbox) return;
    /* g_critical means a GLib API was misused on some input: treat it as a crash. */
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR);
    verbose = getenv("BF_VERBOSE") != NULL;
    qs_block_init();
    qs_block_set_message_handler(drop_message, NULL);
    /* BF_SANDBOX_BASE: where campaign scripts want it; else tmpfs when there is one */
    const char *base = getenv("BF_SANDBOX_BASE");
    if (!base) base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
    g_autofree char *tmpl = g_build_filename(base, "qs-block-fuzz-XXXXXX", NULL);
    sandbox = g_mkdtemp(g_steal_pointer(&tmpl));
    if (!sandbox) BF_BUG("cannot create a directory under %s: %s", base, g_strerror(errno));
    img_path = g_build_filename(sandbox, "img", NULL);
    rw_path = g_build_filename(sandbox, "rw", NULL);
    creator = getpid();
    atexit(cleanup);
    /* Writes to a hostile image may try to allocate far past its end: cap file growth
     * (the write then fails with EFBIG instead of filling the disk). */
    struct rlimit rl = { BF_MAX_FILE_GROWTH, BF_MAX_FILE_GROWTH };
    setrlimit(RLIMIT_FSIZE, &rl);
}

void bf_set_write_every(unsigned n)
{
    write_every = n ? n : 1;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zero[4096];
    return n <= sizeof(zero) && !memcmp(p, zero, n);
}

/* While a packed input runs (bf_run_packed), only its extents' bytes can be non-zero:
 * the rest is not even looked at. */
static const BfSpan *cur_spans;
static size_t cur_nspans;

static void write_range(int fd, const char *path, const uint8_t *data, size_t from, size_t to)
{
    while (from < to) {
        ssize_t n = pwrite(fd, data + from, to - from, (off_t)from);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) BF_BUG("cannot write %s: %s", path, g_strerror(errno));
        from += (size_t)n;
    }
}

/* Writes the non-zero ones of the 4 KiB blocks of data (size bytes) that [from, to)
 * touches, whole, each at most once per file (seen: a byte per block; the extents of a
 * packed input may overlap, thousands of them in one block); neighbouring ones in one
 * pwrite (a block per call was a third of the syscalls of a replay). */
static void write_blocks(int fd, const char *path, const uint8_t *data, size_t size,
                         size_t from, size_t to, uint8_t *seen)
{
    size_t run = 0, run_end = 0;   /* the pending run of blocks to write */
    for (size_t blk = from & ~(size_t)4095; blk < to; blk += 4096) {
        if (seen[blk / 4096]) continue;
        seen[blk / 4096] = 1;
        size_t end = MIN(size, blk + 4096);
        if (all_zero(data + blk, end - blk)) continue;
        if (blk != run_end) {
            write_range(fd, path, data, run, run_end);
            run = blk;
        }
        run_end = end;
    }
    write_range(fd, path, data, run, run_end);
}

/* The file becomes exactly data, written sparsely: blocks of zeroes stay holes, so that
 * a 4 MiB vhdx of a few KiB of metadata costs a few KiB of writes. */
static void write_all(int fd, const char *path, const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0)
        BF_BUG("cannot truncate %s: %s", path, g_strerror(errno));
    static uint8_t seen[BF_MAX_INPUT / 4096];
    memset(seen, 0, sizeof(seen));
    if (!cur_spans) {
        write_blocks(fd, path, data, size, 0, size, seen);
        return;
    }
    for (size_t i = 0; i < cur_nspans; i++)
        write_blocks(fd, path, data, size, cur_spans[i].off,
                     cur_spans[i].off + cur_spans[i].len, seen);
}

/* The input file stays open: no directory work per input. */
static void put_input(const uint8_t *data, size_t size)
{
    if (img_fd < 0) img_fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (img_fd < 0) BF_BUG("cannot create %s: %s", img_path, g_strerror(errno));
    write_all(img_fd, img_path, data, size);
}

static void put_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) BF_BUG("cannot create %s: %s", path, g_strerror(errno));
    write_all(fd, path, data, size);
    close(fd);
}

/* A failed operation must say why (qemu-img prints err->message). */
static void expect_error(GError *err, const char *what)
{
    if (!err || !err->message || !*err->message)
        BF_BUG("%s failed without an error message", what);
    if (verbose) fprintf(stderr, "block-fuzz: %s: %s\n", what, err->message);
    g_error_free(err);
}

/* ---- info, as qemu-img info --output=json builds it ---- */

static void info(QsBlock *bs)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    QsBlockSnapshotList *snaps = bs->drv->snapshot_list ? bs->drv->snapshot_list(bs) : NULL;
    if (snaps) {
        json_builder_set_member_name(b, "snapshots");
        json_builder_begin_array(b);
        static volatile size_t lengths;
        /* every string is read to its end (ASan checks it has one) — the empty entries
         * after the held ones are one entry; JSON for the first few only: 65536
         * entries of it tested json-glib, not the parser, and were a tenth of the raw
         * target */
        for (guint i = 0; i < MIN(snaps->len, snaps->held + 1); i++) {
            const QsBlockSnapshot *sn = qs_block_snapshot_at(snaps, i);
            lengths += strlen(sn->id) + strlen(sn->name);
            if (i >= BF_INFO_SNAPSHOTS) continue;
            json_builder_add_string_value(b, sn->id);
            json_builder_add_string_value(b, sn->name);
        }
        json_builder_end_array(b);
        qs_block_snapshot_list_free(snaps);
    }
    json_builder_set_member_name(b, "virtual-size");
    json_builder_add_int_value(b, (gint64)bs->size);
    json_builder_set_member_name(b, "cluster-size");
    json_builder_add_int_value(b, qs_block_cluster_size(bs));
    json_builder_set_member_name(b, "actual-size");
    json_builder_add_int_value(b, qs_block_allocated_size(bs));
    if (bs->backing_file) {
        g_autofree char *full = qs_block_backing_path(bs, bs->backing_file);
        json_builder_set_member_name(b, "full-backing-filename");
        json_builder_add_string_value(b, full);
    }
    if (bs->drv->is_dirty) {
        json_builder_set_member_name(b, "dirty-flag");
        json_builder_add_boolean_value(b, bs->drv->is_dirty(bs));
    }
    if (bs->drv->info_specific) {
        json_builder_set_member_name(b, "data");
        json_builder_begin_object(b);
        bs->drv->info_specific(bs, b);
        json_builder_end_object(b);
    }
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    JsonGenerator *g = json_generator_new();
    json_generator_set_root(g, root);
    g_free(json_generator_to_data(g, NULL));
    g_object_unref(g);
    json_node_unref(root);
    g_object_unref(b);
}

/* Every "filename" in the format-specific info (vmdk extents) is inside the sandbox:
 * only then may the write phase open the image read-write. */
static bool names_inside(JsonNode *n, const char *dir)
{
    if (JSON_NODE_HOLDS_ARRAY(n)) {
        JsonArray *a = json_node_get_array(n);
        for (guint i = 0; i < json_array_get_length(a); i++)
            if (!names_inside(json_array_get_element(a, i), dir)) return false;
    } else if (JSON_NODE_HOLDS_OBJECT(n)) {
        JsonObject *o = json_node_get_object(n);
        GList *members = json_object_get_members(o);
        bool ok = true;
        for (GList *l = members; l && ok; l = l->next) {
            JsonNode *v = json_object_get_member(o, l->data);
            if (!strcmp(l->data, "filename") && JSON_NODE_HOLDS_VALUE(v)) {
                const char *s = json_node_get_string(v);
                size_t dl = strlen(dir);
                ok = s && !strncmp(s, dir, dl) && s[dl] == '/' && !strchr(s + dl + 1, '/');
            } else {
                ok = names_inside(v, dir);
            }
        }
        g_list_free(members);
        return ok;
    }
    return true;
}

static bool files_inside_sandbox(QsBlock *bs)
{
    if (!bs->drv->info_specific) return true;
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    bs->drv->info_specific(bs, b);
    json_builder_end_object(b);
    JsonNode *root = json_builder_get_root(b);
    bool ok = names_inside(root, sandbox);
    json_node_unref(root);
    g_object_unref(b);
    return ok;
}

/* ---- map, reads ---- */

/* Block status over the whole disk (bounded), as qemu-img map does; returns up to
 * `max` starts of runs to read from. */
static unsigned map_disk(QsBlock *bs, uint64_t *starts, unsigned max)
{
    unsigned found = 0;
    uint64_t off = 0;
    for (unsigned i = 0; i < BF_MAX_STATUS_CALLS && off < bs->size; i++) {
        uint64_t n = 0, map = 0;
        QsBlock *file = NULL;
        int depth = 0;
        int r = qs_block_status_above(bs, NULL, off, bs->size - off, &n, &map, &file, &depth);
        if (r < 0) return found;
        if (n == 0 || n > bs->size - off)
            BF_BUG("block status at %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                   " answered %" G_GUINT64_FORMAT " bytes", off, bs->size, n);
        if ((r & QS_BS_OFFSET_VALID) && !file)
            BF_BUG("block status at %" G_GUINT64_FORMAT ": offset valid but no file", off);
        if ((r & QS_BS_DATA) && found < max) starts[found++] = off;
        off += n;
    }
    return found;
}

static void read_at(QsBlock *bs, uint64_t off, size_t len)
{
    if (off >= bs->size) return;
    len = (size_t)MIN((uint64_t)len, bs->size - off);
    if (!len) return;
    /* exactly len bytes, so that ASan sees any overrun */
    static ExactBuf buf = { NULL, BF_MAX_READ };
    (void)qs_block_pread(bs, off, len, exact_buf(&buf, len));
}

static void read_disk(QsBlock *bs, const uint64_t *starts, unsigned n)
{
    for (unsigned i = 0; i < BF_READ_POINTS; i++) {
        uint64_t off = bs->size / BF_READ_POINTS * i;
        read_at(bs, off & ~511ull, 4096);
    }
    read_at(bs, 1, 3);                                  /* unaligned head */
    if (bs->size > 4096) read_at(bs, bs->size - 4096 + 7, 4089);    /* unaligned tail */
    for (unsigned i = 0; i < n; i++) read_at(bs, starts[i], BF_MAX_READ);
}

/* ---- phases ---- */

/* Every probe on the input's head.  (Opening without a format, the raw target's,
 * probes the file itself: qs_block_probe.) */
static void phase_probe(const uint8_t *data, size_t size)
{
    /* exactly what qs_block_probe hands the probes (the first BF_PROBE_BYTES), on the
     * heap: probes must not read past len (they take it const: one copy serves all) */
    size_t len = MIN(size, (size_t)BF_PROBE_BYTES);
    static ExactBuf buf = { NULL, BF_PROBE_BYTES };
    uint8_t *copy = exact_buf(&buf, len);
    if (len) memcpy(copy, data, len);   /* (an empty input may come as NULL) */
    static GPtrArray *all;              /* the registry does not change while fuzzing */
    if (!all) all = qs_block_driver_list();
    for (guint i = 0; i < all->len; i++) {
        const QsBlockDriver *d = all->pdata[i];
        if (!d->probe) continue;
        int s = d->probe(copy, len, img_path);
        if (s < 0 || s > 100) BF_BUG("probe of '%s' scored %d (0..100)", d->name, s);
    }
}

/* With for_write: true if the image opened and names no file outside the sandbox, so
 * that a copy of it may be opened read-write. */
static bool phase_read(const char *fmt, bool for_write)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(img_path, fmt, QS_BLOCK_NO_BACKING, NULL, &err);
    if (!bs) {
        expect_error(err, "open");
        return false;
    }
    if (bs->size > (uint64_t)QS_BLOCK_MAX_SIZE)
        BF_BUG("'%s' opened with virtual size %" G_GUINT64_FORMAT, bs->drv->name, bs->size);
    info(bs);
    uint64_t starts[8];
    unsigned n = map_disk(bs, starts, G_N_ELEMENTS(starts));
    read_disk(bs, starts, n);
    bool writable = for_write && files_inside_sandbox(bs);
    qs_block_close(bs);
    return writable;
}

/* false: the image did not open for the check */
static bool phase_check(const char *path, const char *fmt, int fix)
{
    GError *err = NULL;
    int flags = QS_BLOCK_NO_BACKING | QS_BLOCK_CHECK | (fix ? QS_BLOCK_RDWR : 0);
    QsBlock *bs = qs_block_open(path, fmt, flags, NULL, &err);
    if (!bs) {
        expect_error(err, "open for check");
        return false;
    }
    QsBlockCheckResult res;
    if (!qs_block_check(bs, &res, fix, &err)) expect_error(err, "check");
    if (fix && (res.leaks_fixed || res.corruptions_fixed)) {
        /* qemu-img checks a repaired image again */
        if (!qs_block_check(bs, &res, 0, &err)) expect_error(err, "check after repair");
    }
    qs_block_close(bs);
    return true;
}

/* The copy must still open read-only after `what`: losing an image that opened is data
 * loss (a corrupt one may refuse read-write, never read-only). */
static void require_opens(const char *fmt, const char *what)
{
    GError *err = NULL;
    QsBlock *bs = qs_block_open(rw_path, fmt, QS_BLOCK_NO_BACKING, NULL, &err);
    if (!bs) BF_BUG("the image no longer opens after %s: %s", what, err->message);
    qs_block_close(bs);
}

/* On a copy of an image phase_read found writable: a few writes (head, middle, tail,
 * zeroes, discard), flush, then the image must still open, and `check -r all` runs on
 * it.  (The copy is the same bytes in the same directory: what the input's extents
 * name, the copy's name too.) */
static void phase_write(const uint8_t *data, size_t size, const char *fmt)
{
    put_file(rw_path, data, size);
    GError *err = NULL;
    QsBlock *bs = qs_block_open(rw_path, fmt, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING |
                                QS_BLOCK_NO_FLUSH, NULL, &err);
    if (!bs) {
        expect_error(err, "open read-write");
        require_opens(fmt, "a refused read-write open");
        return;
    }
    uint8_t pattern[4096];
    memset(pattern, 0xa5, sizeof(pattern));
    uint64_t sz = bs->size;
    if (sz) {
        (void)qs_block_pwrite(bs, 0, MIN(sz, (uint64_t)sizeof(pattern)), pattern, 0);
        uint64_t mid = sz / 2 & ~511ull;
        (void)qs_block_pwrite(bs, mid, (size_t)MIN(sz - mid, (uint64_t)1536), pattern, 0);
        if (sz >= 1024) (void)qs_block_pwrite(bs, sz - 1000, 1000, pattern, 0);
        uint64_t q = sz / 4 & ~511ull;
        (void)qs_block_pwrite_zeroes(bs, q, MIN(sz - q, (uint64_t)65536), QS_WRITE_MAY_UNMAP);
        (void)qs_block_pdiscard(bs, 0, MIN(sz, (uint64_t)65536));
        uint8_t back[4096];
        (void)qs_block_pread(bs, mid, (size_t)MIN(sz - mid, (uint64_t)sizeof(back)), back);
    }
    (void)qs_block_flush(bs);
    qs_block_close(bs);
    /* writes, failed ones included: the read-write open for the repair shows the image
     * still opens; only when it is refused is a read-only open needed */
    if (!phase_check(rw_path, fmt, QS_CHECK_FIX_LEAKS | QS_CHECK_FIX_ERRORS))
        require_opens(fmt, "writes");
    bs = qs_block_open(rw_path, fmt, QS_BLOCK_NO_BACKING, NULL, &err);
    if (!bs) BF_BUG("the image no longer opens after check -r all: %s", err->message);
    uint64_t starts[4];
    unsigned n = map_disk(bs, starts, G_N_ELEMENTS(starts));
    read_disk(bs, starts, n);
    qs_block_close(bs);
}

/* FNV-1a over the size and the first 4 KiB (the headers): picks the inputs that get
 * the write phase. */
static uint32_t input_hash(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u ^ (uint32_t)size;
    for (size_t i = 0; i < MIN(size, (size_t)4096); i++) h = (h ^ data[i]) * 16777619u;
    return h;
}

int bf_run_image(const uint8_t *data, size_t size, const char *fmt)
{
    bf_init();
    static bool xfsz_ignored;
    if (!xfsz_ignored) {
        /* here, not in bf_init: libFuzzer installs its own handler after initialising */
        signal(SIGXFSZ, SIG_IGN);
        xfsz_ignored = true;
    }
    if (size > BF_MAX_INPUT) return 0;
    messages = 0;
    put_input(data, size);
    phase_probe(data, size);
    bool write = write_every == 1 || input_hash(data, size) % write_every == 0;
    write = phase_read(fmt, write);
    phase_check(img_path, fmt, 0);
    if (write) phase_write(data, size, fmt);
    return 0;
}

int bf_run_packed(const uint8_t *data, size_t size, const char *fmt)
{
    /* one image buffer for every input, cleared where the last one put its extents: a
     * fresh 4 MiB allocation costs more in page faults than the whole run */
    static uint8_t *img;
    static BfSpan *spans;
    static size_t spans_room;
    if (!img) img = g_malloc0(BF_MAX_INPUT);
    if (size / 4 + 1 > spans_room) {
        spans_room = size / 4 + 1;
        spans = g_renew(BfSpan, spans, spans_room);
    }
    size_t n = 0, len = bf_unpack(data, size, img, spans, &n);
    cur_spans = spans;
    cur_nspans = n;
    int r = bf_run_image(img, len, fmt);
    cur_spans = NULL;
    for (size_t i = 0; i < n; i++) memset(img + spans[i].off, 0, spans[i].len);
    return r;
}
