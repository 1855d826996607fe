/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parallel block requests on a pool of worker threads: a bounded-depth request queue
 * (QsBlockAio) and a parallel-for used by convert, commit and bench. */
#include <errno.h>
#include "block-int.h"

struct QsBlockAio {
    GThreadPool *pool;
    GMutex lock;
    GCond cond;
    unsigned depth, inflight;
    int first_error;
};

typedef enum { REQ_READ, REQ_WRITE, REQ_FLUSH } ReqKind;

typedef struct Req {
    QsBlockAio *q;
    ReqKind kind;
    QsBlock *bs;
    uint64_t off;
    size_t len;
    void *buf;
    int flags;
    QsBlockAioCb *cb;
    void *opaque;
} Req;

static void run_req(gpointer data, gpointer user)
{
    Req *r = data;
    int ret;
    switch (r->kind) {
    case REQ_READ: ret = qs_block_pread(r->bs, r->off, r->len, r->buf); break;
    case REQ_WRITE: ret = qs_block_pwrite(r->bs, r->off, r->len, r->buf, r->flags); break;
    default: ret = qs_block_flush(r->bs); break;
    }
    if (r->cb) r->cb(r->opaque, ret);
    QsBlockAio *q = r->q;
    g_mutex_lock(&q->lock);
    if (ret < 0 && !q->first_error) q->first_error = ret;
    q->inflight--;
    g_cond_broadcast(&q->cond);
    g_mutex_unlock(&q->lock);
    g_free(r);
}

QsBlockAio *qs_block_aio_new(unsigned depth)
{
    QsBlockAio *q = g_new0(QsBlockAio, 1);
    q->depth = CLAMP(depth, 1u, 1024u);
    g_mutex_init(&q->lock);
    g_cond_init(&q->cond);
    q->pool = g_thread_pool_new(run_req, q, (gint)MIN(q->depth, 64u), FALSE, NULL);
    return q;
}

static void submit(QsBlockAio *q, Req *r)
{
    r->q = q;
    g_mutex_lock(&q->lock);
    while (q->inflight >= q->depth) g_cond_wait(&q->cond, &q->lock);
    q->inflight++;
    g_mutex_unlock(&q->lock);
    g_thread_pool_push(q->pool, r, NULL);
}

void qs_block_aio_pread(QsBlockAio *q, QsBlock *bs, uint64_t off, size_t len, void *buf,
                        QsBlockAioCb *cb, void *opaque)
{
    Req *r = g_new0(Req, 1);
    *r = (Req){ .kind = REQ_READ, .bs = bs, .off = off, .len = len, .buf = buf, .cb = cb,
                .opaque = opaque };
    submit(q, r);
}

void qs_block_aio_pwrite(QsBlockAio *q, QsBlock *bs, uint64_t off, size_t len,
                         const void *buf, int flags, QsBlockAioCb *cb, void *opaque)
{
    Req *r = g_new0(Req, 1);
    *r = (Req){ .kind = REQ_WRITE, .bs = bs, .off = off, .len = len, .buf = (void *)buf,
                .flags = flags, .cb = cb, .opaque = opaque };
    submit(q, r);
}

void qs_block_aio_flush(QsBlockAio *q, QsBlock *bs, QsBlockAioCb *cb, void *opaque)
{
    Req *r = g_new0(Req, 1);
    *r = (Req){ .kind = REQ_FLUSH, .bs = bs, .cb = cb, .opaque = opaque };
    submit(q, r);
}

int qs_block_aio_drain(QsBlockAio *q)
{
    g_mutex_lock(&q->lock);
    while (q->inflight) g_cond_wait(&q->cond, &q->lock);
    int e = q->first_error;
    q->first_error = 0;
    g_mutex_unlock(&q->lock);
    return e;
}

void qs_block_aio_free(QsBlockAio *q)
{
    if (!q) return;
    qs_block_aio_drain(q);
    g_thread_pool_free(q->pool, FALSE, TRUE);
    g_mutex_clear(&q->lock);
    g_cond_clear(&q->cond);
    g_free(q);
}

/* parallel_for runs on one process-wide pool: the caller works on the items too, and a
 * helper that the pool starts only after the items ran out returns at once, so nested
 * calls (a convert worker whose write compresses grains in parallel) cannot deadlock
 * however busy the pool is, and no thread is created per call. */
typedef struct ParFor {
    gint refs;
    GMutex lock;
    GCond cond;
    unsigned active;        /* helpers inside par_worker */
    bool closed;            /* the caller is done: late helpers must not start */
    uint64_t next, n;
    int error;
    int (*fn)(uint64_t i, void *opaque);
    void *opaque;
} ParFor;

static void par_worker(ParFor *p)
{
    for (;;) {
        if (__atomic_load_n(&p->error, __ATOMIC_RELAXED)) break;
        uint64_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_SEQ_CST);
        if (i >= p->n) break;
        int r = p->fn(i, p->opaque);
        if (r) {
            int zero = 0;
            __atomic_compare_exchange_n(&p->error, &zero, r, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED);
        }
    }
}

static void par_unref(ParFor *p)
{
    if (!g_atomic_int_dec_and_test(&p->refs)) return;
    g_mutex_clear(&p->lock);
    g_cond_clear(&p->cond);
    g_free(p);
}

static void par_helper(gpointer data, gpointer user)
{
    ParFor *p = data;
    g_mutex_lock(&p->lock);
    bool run = !p->closed;
    if (run) p->active++;
    g_mutex_unlock(&p->lock);
    if (run) {
        par_worker(p);
        g_mutex_lock(&p->lock);
        p->active--;
        g_cond_signal(&p->cond);
        g_mutex_unlock(&p->lock);
    }
    par_unref(p);
}

static GThreadPool *par_pool(void)
{
    static GThreadPool *pool;
    if (g_once_init_enter(&pool)) {
        /* shared (non-exclusive) threads: they are kept for reuse and end when idle */
        GThreadPool *p = g_thread_pool_new(par_helper, NULL, 64, FALSE, NULL);
        g_once_init_leave(&pool, p);
    }
    return pool;
}

int qs_block_parallel_for(unsigned threads, uint64_t n,
                          int (*fn)(uint64_t i, void *opaque), void *opaque)
{
    threads = CLAMP(threads, 1u, 64u);
    if (threads == 1 || n <= 1) {
        ParFor p = { .n = n, .fn = fn, .opaque = opaque };
        par_worker(&p);
        return p.error;
    }
    unsigned helpers = (unsigned)MIN((uint64_t)threads - 1, n - 1);
    ParFor *p = g_new0(ParFor, 1);
    *p = (ParFor){ .refs = (gint)helpers + 1, .n = n, .fn = fn, .opaque = opaque };
    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
    GThreadPool *pool = par_pool();
    for (unsigned i = 0; i < helpers; i++) g_thread_pool_push(pool, p, NULL);
    par_worker(p);
    g_mutex_lock(&p->lock);
    p->closed = true;
    while (p->active) g_cond_wait(&p->cond, &p->lock);
    g_mutex_unlock(&p->lock);
    int err = p->error;
    par_unref(p);
    return err;
}
