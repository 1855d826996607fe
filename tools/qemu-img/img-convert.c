/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-img convert (parallel, sparse, compressed), commit, rebase and bench: the
 * subcommands that move data between images through block status. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include "img.h"

static inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
static inline uint64_t div_up(uint64_t v, uint64_t d) { return v / d + (v % d != 0); }

static int bad(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    img_error("%s", m);
    fprintf(stderr, "Try 'qemu-img --help' for more information\n");
    return 1;
}

typedef struct Conv {
    QsBlock **src;
    int nsrc;
    uint64_t *start;        /* virtual offset where each source begins */
    uint64_t total;
    QsBlock *dst;
    bool compress, zero_init, target_backing, ordered, progress;
    uint64_t sparse;
    uint64_t chunk, nchunks;
    unsigned threads;
    GArray *work;           /* chunk indices that need copying */
    GMutex lock;
    /* a worker whose chunk is past the write window waits on slots[ticket % nslots]:
     * each written chunk wakes only the one ticket it lets in (not every waiter) */
    GCond *slots;
    unsigned nslots;
    uint64_t next_write, done;
    /* in-order writes: chunks read ahead of their turn wait here (ticket -> Pending *),
     * and whichever worker finds the next one ready writes the run of them */
    GHashTable *pending;
    bool writing;
    int write_error;
    GPtrArray *free_bufs;   /* chunk buffers for reuse: fresh ones cost page faults */
} Conv;

enum { OP_DATA, OP_ZERO, OP_SKIP };
typedef struct Op { int kind; uint64_t off, len; } Op;

static bool all_zero(const uint8_t *p, size_t n)
{
    if (!n) return true;
    if (p[0]) return false;
    return !memcmp(p, p + 1, n - 1);
}

/* Where a source's status is taken down to: with a backing file for the target (-B), only
 * the source's own top layer is copied and the rest is left to the backing file, as
 * QEMU does (-B names the source's backing or an equal one: that is the user's part). */
static QsBlock *status_base(const Conv *c, QsBlock *src)
{
    return c->target_backing ? src->backing : NULL;
}

static void add_op(GArray *ops, int kind, uint64_t off, uint64_t len)
{
    if (!len) return;
    if (ops->len) {
        Op *l = &g_array_index(ops, Op, ops->len - 1);
        if (l->kind == kind && l->off + l->len == off) { l->len += len; return; }
    }
    Op o = { kind, off, len };
    g_array_append_val(ops, o);
}

typedef struct Pending { uint64_t off, len; uint8_t *buf; GArray *ops; } Pending;

static uint8_t *buf_get(Conv *c)
{
    g_mutex_lock(&c->lock);
    uint8_t *b = c->free_bufs->len ? g_ptr_array_steal_index_fast(c->free_bufs,
                                                                  c->free_bufs->len - 1) : NULL;
    g_mutex_unlock(&c->lock);
    /* aligned: the kernel copies into and out of misaligned buffers several times
     * slower (raw->vdi: 60% of the CPU time was the page cache copy into malloc's
     * 16-byte offset buffers); on a huge page: one fault instead of 512 */
    if (b) return b;
    b = g_aligned_alloc(1, c->chunk, 2u << 20);
    madvise(b, c->chunk, MADV_HUGEPAGE);
    return b;
}

static void pending_free(gpointer p)
{
    Pending *pd = p;
    g_aligned_free(pd->buf);
    g_array_unref(pd->ops);
    g_free(pd);
}

/* Write one chunk's ops (or compressed clusters) to the target. */
static int write_chunk(Conv *c, uint64_t off, uint64_t len, const uint8_t *buf, GArray *ops)
{
    int r = 0;
    if (c->compress) {
        uint64_t cs = MAX(qs_block_cluster_size(c->dst), 512u);
        for (uint64_t q = off; q < off + len && r == 0; q += cs) {
            uint64_t n = MIN(cs, off + len - q);
            if (all_zero(buf + (q - off), n) && c->zero_init) continue;
            r = qs_block_pwrite_compressed(c->dst, q, n, buf + (q - off));
        }
    } else {
        for (guint k = 0; k < ops->len && r == 0; k++) {
            Op *o = &g_array_index(ops, Op, k);
            if (o->kind == OP_DATA) {
                r = qs_block_pwrite(c->dst, o->off, o->len, buf + (o->off - off), 0);
            } else if (o->kind == OP_ZERO && !c->zero_init) {
                if (c->sparse) r = qs_block_pwrite_zeroes(c->dst, o->off, o->len, QS_WRITE_MAY_UNMAP);
                else r = qs_block_pwrite(c->dst, o->off, o->len, buf + (o->off - off), 0);
            } else if (o->kind == OP_ZERO && !c->sparse) {
                r = qs_block_pwrite(c->dst, o->off, o->len, buf + (o->off - off), 0);
            }
        }
    }
    if (r < 0) img_error("error while writing at byte %" G_GUINT64_FORMAT ": %s", off, g_strerror(-r));
    return r;
}

/* Called with the lock held after a chunk was written. */
static void chunk_done(Conv *c)
{
    c->done++;
    if (c->progress) img_progress(true, c->done * 100.0 / MAX(c->work->len, 1u));
}

/* Called with the lock held: a read or write error stops every waiting worker. */
static void wake_all(Conv *c)
{
    for (unsigned i = 0; i < c->nslots; i++) g_cond_broadcast(&c->slots[i]);
}

/* In order: hand the chunk over; the worker that finds the next chunk ready (no one else
 * writing) writes every chunk ready in sequence, so no worker sleeps waiting for its
 * turn and no hand-off needs another thread woken.  Read-ahead is bounded. */
static int ordered_write(Conv *c, uint64_t ticket, uint64_t off, uint64_t len, uint8_t *buf,
                         GArray *ops)
{
    Pending *pd = g_new(Pending, 1);
    *pd = (Pending){ off, len, buf, g_array_ref(ops) };
    uint64_t window = 2;   /* so at most threads + 2 buffers exist */
    g_mutex_lock(&c->lock);
    while (ticket >= c->next_write + window && !c->write_error)
        g_cond_wait(&c->slots[ticket % c->nslots], &c->lock);
    g_hash_table_insert(c->pending, GSIZE_TO_POINTER(ticket), pd);
    int r = 0;
    if (!c->writing) {
        c->writing = true;
        Pending *next;
        while (!c->write_error &&
               (next = g_hash_table_lookup(c->pending, GSIZE_TO_POINTER(c->next_write)))) {
            g_hash_table_steal(c->pending, GSIZE_TO_POINTER(c->next_write));
            g_mutex_unlock(&c->lock);
            r = write_chunk(c, next->off, next->len, next->buf, next->ops);
            g_array_unref(next->ops);
            g_mutex_lock(&c->lock);
            g_ptr_array_add(c->free_bufs, next->buf);
            g_free(next);
            if (r < 0) c->write_error = r;
            c->next_write++;
            chunk_done(c);
            if (c->write_error) wake_all(c);
            else g_cond_broadcast(&c->slots[(c->next_write + window - 1) % c->nslots]);
        }
        c->writing = false;
    }
    r = c->write_error;
    g_mutex_unlock(&c->lock);
    return r;
}

/* Read [off, off+len) of the sources into buf through block status; ops say what to
 * write where. */
static int read_chunk(Conv *c, uint64_t off, uint64_t len, uint8_t *buf, GArray *ops)
{
    int r = 0;
    for (uint64_t p = off; p < off + len;) {
        int k = c->nsrc - 1;
        while (k > 0 && c->start[k] > p) k--;
        QsBlock *s = c->src[k];
        uint64_t local = p - c->start[k];
        uint64_t want = MIN(off + len - p, s->size - local);
        uint64_t n;
        int st = qs_block_status_above(s, status_base(c, s), local, want, &n, NULL, NULL, NULL);
        if (st < 0) {
            img_error("error while reading block status at offset %" G_GUINT64_FORMAT ": %s",
                      p, g_strerror(-st));
            return st;
        }
        /* zeros in the buffer only where they are written or looked at */
        bool fill = c->compress || !c->sparse;
        if (c->target_backing && !(st & QS_BS_ALLOCATED)) {
            add_op(ops, OP_SKIP, p, n);
            if (fill) memset(buf + (p - off), 0, n);
        } else if (st & QS_BS_ZERO) {
            add_op(ops, OP_ZERO, p, n);
            if (fill) memset(buf + (p - off), 0, n);
        } else {
            r = qs_block_pread(s, local, n, buf + (p - off));
            if (r < 0) {
                img_error("error while reading at byte %" G_GUINT64_FORMAT ": %s", p, g_strerror(-r));
                return r;
            }
            if (c->sparse && !c->compress) {
                /* zero detection in -S sized pieces, aligned in the target */
                for (uint64_t q = p; q < p + n;) {
                    uint64_t e = MIN(p + n, align_up(q + 1, c->sparse));
                    add_op(ops, all_zero(buf + (q - off), e - q) ? OP_ZERO : OP_DATA, q, e - q);
                    q = e;
                }
            } else {
                add_op(ops, OP_DATA, p, n);
            }
        }
        p += n;
    }
    return 0;
}

static int conv_chunk(uint64_t ticket, void *opaque)
{
    Conv *c = opaque;
    uint64_t i = g_array_index(c->work, uint64_t, ticket);
    uint64_t off = i * c->chunk, len = MIN(c->chunk, c->total - off);
    uint8_t *buf = buf_get(c);
    g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(Op));
    int r = read_chunk(c, off, len, buf, ops);
    if (r < 0) {
        /* this chunk never comes: wake whoever waits for the write window */
        g_mutex_lock(&c->lock);
        if (!c->write_error) c->write_error = r;
        wake_all(c);
        g_ptr_array_add(c->free_bufs, buf);
        g_mutex_unlock(&c->lock);
        return r;
    }
    if (c->ordered) return ordered_write(c, ticket, off, len, buf, ops);
    r = write_chunk(c, off, len, buf, ops);
    g_mutex_lock(&c->lock);
    g_ptr_array_add(c->free_bufs, buf);
    chunk_done(c);
    g_mutex_unlock(&c->lock);
    return r;
}

int img_convert(int argc, char **argv)
{
    const char *fmt = NULL, *ofmt = "raw", *base = NULL, *bfmt = NULL, *cache = "unsafe";
    bool compress = false, progress = false, quiet = false, skip_create = false;
    bool wr_ooo = false, target_zero = false;
    uint64_t sparse = 4096, m = 8;
    g_autoptr(GString) opts = g_string_new(NULL);
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "target-is-zero", 0, 0, 'Z' }, { "force-share", 0, 0, 'U' },
        { "salvage", 0, 0, 'V' }, { "bitmaps", 0, 0, 'M' }, { "skip-broken-bitmaps", 0, 0, 'K' },
        { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:O:B:Cco:l:S:pt:T:qnm:WUr:F:", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'O': ofmt = optarg; break;
        case 'B': base = optarg; break;
        case 'F': bfmt = optarg; break;
        case 'c': compress = true; break;
        case 'o':
            if (opts->len) g_string_append_c(opts, ',');
            g_string_append(opts, optarg);
            break;
        case 'S':
            if (!qs_parse_size(optarg, &sparse) || (sparse && sparse % 512) || sparse > (1u << 30)) {
                img_error("Invalid buffer size for sparse output specified. Valid sizes are "
                          "multiples of 512 up to 1G");
                return 1;
            }
            break;
        case 'p': progress = true; break;
        case 't': cache = optarg; break;
        case 'q': quiet = true; break;
        case 'n': skip_create = true; break;
        case 'm':
            if (!qs_parse_uint(optarg, &m) || m < 1 || m > 16) {
                img_error("Invalid number of coroutines. Allowed number of coroutines is "
                          "between 1 and 16");
                return 1;
            }
            break;
        case 'W': wr_ooo = true; break;
        case 'Z': target_zero = true; break;
        case 'T': case 'U': case 'C': case 'V': case 'M': case 'K': case 'r': break;
        case 'l': img_error("-l (snapshot) is not supported"); return 1;
        case ':': return bad("option '%s' requires an argument", argv[optind - 1]);
        default: return bad("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (img_opts_help(ofmt, opts->str)) return 0;
    if (argc - optind < 2) return bad("Expecting image file name");
    if (target_zero && !skip_create) {
        img_error("--target-is-zero requires use of -n flag");
        return 1;
    }
    if (base && skip_create) {
        img_error("Use of -B and -n are mutually exclusive");
        return 1;
    }
    int cflags;
    if (!img_cache_flags(cache, &cflags)) { img_error("Invalid cache option: %s", cache); return 1; }
    int nsrc = argc - optind - 1;
    const char *out = argv[argc - 1];
    Conv cv = { .nsrc = nsrc };
    cv.src = g_new0(QsBlock *, nsrc);
    cv.start = g_new0(uint64_t, nsrc);
    int ret = 1;
    for (int i = 0; i < nsrc; i++) {
        cv.src[i] = img_open(argv[optind + i], fmt, 0, quiet);
        if (!cv.src[i]) goto out;
        cv.start[i] = cv.total;
        cv.total += cv.src[i]->size;
    }
    GError *err = NULL;
    if (!skip_create) {
        g_autoptr(GString) o = g_string_new(opts->str);
        if (base) g_string_append_printf(o, "%sbacking_file=%s", o->len ? "," : "", base);
        if (base && bfmt) g_string_append_printf(o, ",backing_fmt=%s", bfmt);
        if (!qs_block_create(ofmt, out, cv.total, o->str, true, &err)) {
            img_error("%s: %s", out, err->message);
            g_error_free(err);
            goto out;
        }
    }
    /* with -B the target's backing file is opened, as QEMU does: a partly written
     * cluster is completed from it, and zeros over it must be stored, not dropped */
    cv.dst = img_open(out, skip_create ? NULL : ofmt,
                      QS_BLOCK_RDWR | (base ? 0 : QS_BLOCK_NO_BACKING) | cflags, quiet);
    if (!cv.dst) goto out;
    if (skip_create && cv.dst->size < cv.total) {
        img_error("Error: Cannot convert to a target smaller than the source (%" G_GUINT64_FORMAT
                  " < %" G_GUINT64_FORMAT ")", cv.dst->size, cv.total);
        goto out;
    }
    if (compress && !cv.dst->drv->pwrite_compressed) {
        img_error("Compression not supported for this file format");
        goto out;
    }
    cv.compress = compress;
    cv.sparse = sparse;
    cv.target_backing = base != NULL;
    cv.zero_init = (!skip_create && !base) || target_zero;
    uint32_t cs = qs_block_cluster_size(cv.dst);
    /* 2 MiB chunks: bigger ones (a chunk per 8 MiB vhdx block) only cost page faults
     * and cache misses; compression works on whole clusters */
    cv.chunk = 2u << 20;
    if (compress) cv.chunk = align_up(MAX(cv.chunk, (uint64_t)cs), MAX(cs, 1u));
    cv.nchunks = div_up(cv.total, cv.chunk);
    cv.ordered = !wr_ooo && !compress;   /* in-order writes are also faster on files */
    cv.progress = progress && !quiet;
    g_mutex_init(&cv.lock);
    cv.nslots = (unsigned)m + 3;   /* more than the tickets that can wait at once */
    cv.slots = g_new(GCond, cv.nslots);
    for (unsigned i = 0; i < cv.nslots; i++) g_cond_init(&cv.slots[i]);
    cv.threads = (unsigned)m;
    cv.pending = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, pending_free);
    cv.free_bufs = g_ptr_array_new_with_free_func(g_aligned_free);
    img_progress(cv.progress, 0);
    /* plan: whole chunks that read as zeros need nothing in a zero-initialised target */
    cv.work = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    int r = 0;
    for (uint64_t p = 0, last = UINT64_MAX; p < cv.total && r == 0;) {
        int k = nsrc - 1;
        while (k > 0 && cv.start[k] > p) k--;
        uint64_t local = p - cv.start[k], n;
        int st = qs_block_status_above(cv.src[k], status_base(&cv, cv.src[k]), local,
                                       cv.src[k]->size - local, &n, NULL, NULL, NULL);
        if (st < 0) {
            img_error("error while reading block status at offset %" G_GUINT64_FORMAT ": %s",
                      p, g_strerror(-st));
            r = st;
            break;
        }
        bool skip = (st & QS_BS_ZERO) && cv.zero_init && cv.sparse;
        if (cv.target_backing && !(st & QS_BS_ALLOCATED)) skip = true;
        if (!skip) {
            for (uint64_t ch = p / cv.chunk; ch <= (p + n - 1) / cv.chunk; ch++) {
                if (ch != last) g_array_append_val(cv.work, ch);
                last = ch;
            }
        }
        p += n;
    }
    if (r == 0) r = qs_block_parallel_for((unsigned)m, cv.work->len, conv_chunk, &cv);
    g_array_free(cv.work, TRUE);
    if (r == 0 && !(cflags & QS_BLOCK_NO_FLUSH)) r = qs_block_flush(cv.dst);
    img_progress(cv.progress, 100);
    if (cv.progress) printf("\n");
    g_hash_table_destroy(cv.pending);   /* chunks read past a write error */
    g_ptr_array_free(cv.free_bufs, TRUE);
    g_mutex_clear(&cv.lock);
    for (unsigned i = 0; i < cv.nslots; i++) g_cond_clear(&cv.slots[i]);
    g_free(cv.slots);
    ret = r < 0 ? 1 : 0;
out:
    if (cv.dst) qs_block_close(cv.dst);
    for (int i = 0; i < nsrc; i++) qs_block_close(cv.src[i]);
    g_free(cv.src);
    g_free(cv.start);
    return ret;
}

/* ---- commit ---- */

int img_commit(int argc, char **argv)
{
    const char *fmt = NULL, *basename = NULL;
    bool quiet = false, drop = false, progress = false;
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'b': basename = optarg; drop = true; break;
        case 'd': drop = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 't': case 'r': break;
        case ':': return bad("option '%s' requires an argument", argv[optind - 1]);
        default: return bad("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad("Expecting one image file name");
    QsBlock *top = img_open(argv[optind], fmt, QS_BLOCK_RDWR, quiet);
    if (!top) return 1;
    int ret = 1;
    QsBlock *base = top->backing, *wb = NULL;
    size_t chunk = 2 << 20;
    g_autofree uint8_t *buf = NULL;
    if (!base) {
        img_error("Image does not have a backing file");
        goto out;
    }
    if (basename) {
        for (QsBlock *b = top->backing; b; b = b->backing) {
            if (!strcmp(b->filename, basename)) { base = b; break; }
            if (!b->backing) { img_error("'%s' is not in the backing chain of '%s'", basename, top->filename); goto out; }
        }
    }
    wb = img_open(base->filename, base->drv->name, QS_BLOCK_RDWR | QS_BLOCK_NO_BACKING, quiet);
    if (!wb) goto out;
    if (wb->size < top->size) {
        GError *err = NULL;
        if (!qs_block_truncate(wb, top->size, false, QS_PREALLOC_OFF, &err)) {
            img_error("%s", err->message);
            g_error_free(err);
            goto out;
        }
    }
    buf = g_malloc(chunk);
    for (uint64_t off = 0; off < top->size;) {
        uint64_t n;
        int st = qs_block_status_above(top, base, off, MIN(top->size - off, (uint64_t)chunk), &n,
                                       NULL, NULL, NULL);
        if (st < 0) goto io;
        if (st & QS_BS_ALLOCATED) {
            int r = (st & QS_BS_ZERO) ? qs_block_pwrite_zeroes(wb, off, n, QS_WRITE_MAY_UNMAP)
                                      : qs_block_pread(top, off, n, buf);
            if (r == 0 && !(st & QS_BS_ZERO)) r = qs_block_pwrite(wb, off, n, buf, 0);
            if (r < 0) goto io;
        }
        off += n;
        img_progress(progress && !quiet, off * 100.0 / top->size);
    }
    if (qs_block_flush(wb) < 0) goto io;
    if (base != top->backing && top->drv->change_backing) {
        GError *err = NULL;
        if (!top->drv->change_backing(top, base->filename, base->drv->name, &err)) {
            img_error("%s", err->message);
            g_error_free(err);
            goto out;
        }
    }
    if (!drop && top->drv->make_empty && top->drv->make_empty(top) < 0) goto io;
    if (!quiet) printf("Image committed.\n");
    ret = 0;
    goto out;
io:
    img_error("Block job failed: Input/output error");
out:
    if (wb) qs_block_close(wb);
    qs_block_close(top);
    return ret;
}

/* ---- rebase ---- */

int img_rebase(int argc, char **argv)
{
    const char *fmt = NULL, *nb = NULL, *nbfmt = NULL;
    bool unsafe = false, quiet = false, progress = false;
    static const struct option lo[] = { { "help", 0, 0, 'h' }, { "force-share", 0, 0, 'U' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", lo, NULL)) != -1) {
        switch (c) {
        case 'f': fmt = optarg; break;
        case 'F': nbfmt = optarg; break;
        case 'b': nb = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 't': case 'T': case 'U': break;
        case ':': return bad("option '%s' requires an argument", argv[optind - 1]);
        default: return bad("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad("Expecting one image file name");
    if (!nb) return bad("Must specify backing file (-b) or use '-b \"\"' to remove it");
    QsBlock *bs = img_open(argv[optind], fmt, QS_BLOCK_RDWR | (unsafe ? QS_BLOCK_NO_BACKING : 0), quiet);
    if (!bs) return 1;
    int ret = 1;
    QsBlock *newb = NULL;
    g_autofree char *probed = NULL;
    if (!bs->drv->change_backing) {
        img_error("Format driver '%s' does not support backing files", bs->drv->name);
        goto out;
    }
    if (*nb) {
        g_autofree char *path = qs_block_backing_path(bs, nb);
        GError *err = NULL;
        newb = qs_block_open(path, nbfmt, 0, NULL, &err);
        if (!newb) {
            if (!unsafe) {
                img_error("Could not open new backing file '%s': %s", path, err->message);
                g_error_free(err);
                goto out;
            }
            g_error_free(err);
        } else if (!nbfmt) {
            probed = g_strdup(newb->drv->name);
        }
    }
    if (!unsafe) {
        uint64_t cs = MAX(qs_block_cluster_size(bs), 65536u);
        g_autofree uint8_t *a = g_malloc(cs), *b = g_malloc(cs);
        for (uint64_t off = 0; off < bs->size;) {
            uint64_t n;
            int st = qs_block_status(bs, off, MIN(cs - off % cs, bs->size - off), &n, NULL, NULL);
            if (st < 0) goto io;
            if (!(st & QS_BS_ALLOCATED)) {
                int r = qs_block_pread(bs, off, n, a);   /* the old backing's data */
                if (r == 0) {
                    if (newb && off < newb->size) {
                        uint64_t k = MIN(n, newb->size - off);
                        r = qs_block_pread(newb, off, k, b);
                        if (k < n) memset(b + k, 0, n - k);
                    } else {
                        memset(b, 0, n);
                    }
                }
                if (r < 0) goto io;
                if (memcmp(a, b, n) && qs_block_pwrite(bs, off, n, a, 0) < 0) goto io;
            }
            off += n;
            img_progress(progress && !quiet, off * 100.0 / bs->size);
        }
    }
    GError *err = NULL;
    if (!bs->drv->change_backing(bs, *nb ? nb : NULL, nbfmt ? nbfmt : probed, &err)) {
        img_error("Could not change the backing file to '%s': %s", nb, err->message);
        g_error_free(err);
        goto out;
    }
    ret = 0;
    goto out;
io:
    img_error("Error while rebasing: Input/output error");
out:
    qs_block_close(newb);
    qs_block_close(bs);
    return ret;
}

/* ---- bench ---- */

typedef struct Bench {
    QsBlock *bs;
    bool write;
    uint64_t start, step, size, span;
    uint64_t flush_interval;
    int pattern;
    bool random;
} Bench;

static int bench_one(uint64_t i, void *opaque)
{
    Bench *b = opaque;
    static __thread uint8_t *buf;
    static __thread uint64_t bufsize;
    if (bufsize < b->size) {
        g_free(buf);
        buf = g_malloc(b->size);
        bufsize = b->size;
        memset(buf, b->pattern, b->size);
    }
    uint64_t slots = MAX(b->span / b->step, 1u);
    uint64_t k = b->random ? (i * 0x9E3779B97F4A7C15ull >> 11) % slots : i % slots;
    uint64_t off = b->start + k * b->step;
    int r = b->write ? qs_block_pwrite(b->bs, off, b->size, buf, 0)
                     : qs_block_pread(b->bs, off, b->size, buf);
    if (r == 0 && b->write && b->flush_interval && (i + 1) % b->flush_interval == 0)
        r = qs_block_flush(b->bs);
    return r;
}

int img_bench(int argc, char **argv)
{
    const char *fmt = NULL, *cache = "writeback";
    uint64_t count = 75000, depth = 64, offset = 0, size = 4096, step = 0, fi = 0, pattern = 0;
    bool write = false, quiet = false, random = false;
    static const struct option lo[] = {
        { "help", 0, 0, 'h' }, { "flush-interval", 1, 0, 'I' }, { "pattern", 1, 0, 'P' },
        { "no-drain", 0, 0, 'D' }, { "force-share", 0, 0, 'U' }, { "random", 0, 0, 'R' }, { 0 } };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", lo, NULL)) != -1) {
        switch (c) {
        case 'c': if (!qs_parse_uint(optarg, &count) || !count) { img_error("Invalid request count specified"); return 1; } break;
        case 'd': if (!qs_parse_uint(optarg, &depth) || !depth || depth > 1024) { img_error("Invalid queue depth specified"); return 1; } break;
        case 'f': fmt = optarg; break;
        case 'n': cache = "none"; break;
        case 'o': if (!qs_parse_size(optarg, &offset)) { img_error("Invalid offset specified"); return 1; } break;
        case 's': if (!qs_parse_size(optarg, &size) || !size || size > (64u << 20)) { img_error("Invalid buffer size specified"); return 1; } break;
        case 'S': if (!qs_parse_size(optarg, &step)) { img_error("Invalid step size specified"); return 1; } break;
        case 't': cache = optarg; break;
        case 'w': write = true; break;
        case 'q': quiet = true; break;
        case 'I': if (!qs_parse_uint(optarg, &fi)) { img_error("Invalid flush interval specified"); return 1; } break;
        case 'P': if (!qs_parse_uint(optarg, &pattern) || pattern > 255) { img_error("Invalid pattern byte specified"); return 1; } break;
        case 'R': random = true; break;
        case 'i': case 'D': case 'U': break;
        case ':': return bad("option '%s' requires an argument", argv[optind - 1]);
        default: return bad("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return bad("Expecting one image file name");
    if (fi && !write) { img_error("--flush-interval is only available in write tests"); return 1; }
    int cflags;
    if (!img_cache_flags(cache, &cflags)) { img_error("Invalid cache mode"); return 1; }
    QsBlock *bs = img_open(argv[optind], fmt, (write ? QS_BLOCK_RDWR : 0) | cflags, quiet);
    if (!bs) return 1;
    if (!step) step = size;
    if (offset + size > bs->size) {
        img_error("Offset %" G_GUINT64_FORMAT " and size %" G_GUINT64_FORMAT " exceed the image size",
                  offset, size);
        qs_block_close(bs);
        return 1;
    }
    if (!quiet)
        printf("Sending %" G_GUINT64_FORMAT " %s requests, %" G_GUINT64_FORMAT " bytes each, %"
               G_GUINT64_FORMAT " in parallel (starting at offset %" G_GUINT64_FORMAT ", step size %"
               G_GUINT64_FORMAT ")\n", count, write ? "write" : "read", size, depth, offset, step);
    Bench b = { .bs = bs, .write = write, .start = offset, .step = step, .size = size,
                .span = bs->size - offset - size + step, .flush_interval = fi,
                .pattern = (int)pattern, .random = random };
    gint64 t0 = g_get_monotonic_time();
    int r = qs_block_parallel_for((unsigned)MIN(depth, 64u), count, bench_one, &b);
    if (r == 0 && write && fi) r = qs_block_flush(bs);
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    if (r < 0) img_error("Failed request: %s", g_strerror(-r));
    else if (!quiet) printf("Run completed in %3.3f seconds.\n", secs);
    qs_block_close(bs);
    return r < 0 ? 1 : 0;
}
