/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The block-fuzz module: a "fault" protocol filter ("fault:FILE") that injects I/O errors,
 * short reads, torn writes and bit flips by rule into any image opened through it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "qs/block.h"
#include "qs/module.h"
#include "fault-rules.h"

/* The module's rules (from rule= and rules=), shared by every image opened through it. */
static GPtrArray *module_rules;
static bool log_faults;

typedef struct FaultState {
    GPtrArray *rules;              /* the module's (a reference) */
    uint64_t seq[FOP__COUNT];      /* requests seen per operation */
    uint64_t seq_any;
    uint64_t *fired;               /* per rule: times it fired on this image */
    bool crashed;                  /* a crash=on rule fired: the "device" is gone */
    GMutex lock;
} FaultState;

/* The decision for one request: the rule that fires (copied) or none. */
typedef struct Fault {
    bool hit;
    FaultRule rule;
} Fault;

static void log_fault(QsBlock *bs, FaultOp op, uint64_t off, uint64_t len, const FaultRule *r)
{
    if (!log_faults) return;
    fprintf(stderr, "block-fuzz: %s of %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
            " on '%s': %s (rule '%s')\n", fault_op_name(op), off, len, bs->filename,
            fault_action_name(r->action), r->text);
}

static Fault decide(QsBlock *bs, FaultOp op, uint64_t off, uint64_t len)
{
    FaultState *s = bs->opaque;
    Fault f = { 0 };
    g_mutex_lock(&s->lock);
    uint64_t seq = ++s->seq[op];
    uint64_t seq_any = ++s->seq_any;
    if (s->crashed && op != FOP_READ) {
        f.hit = true;
        f.rule = (FaultRule){ .op = op, .action = FA_ERROR, .err = EIO, .text = "crashed" };
    }
    for (guint i = 0; !f.hit && i < s->rules->len; i++) {
        const FaultRule *r = s->rules->pdata[i];
        if (r->count && s->fired[i] >= r->count) continue;
        if (!fault_rule_matches(r, op, off, len, seq, seq_any, bs->filename)) continue;
        s->fired[i]++;
        if (r->crash) s->crashed = true;
        f.hit = true;
        f.rule = *r;
    }
    g_mutex_unlock(&s->lock);
    if (f.hit) log_fault(bs, op, off, len, &f.rule);
    return f;
}

static void track_size(QsBlock *bs)
{
    uint64_t want = __atomic_load_n(&bs->file->size, __ATOMIC_SEQ_CST);
    uint64_t cur = __atomic_load_n(&bs->size, __ATOMIC_SEQ_CST);
    while (want > cur && !__atomic_compare_exchange_n(&bs->size, &cur, want, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

/* Bytes a short read/write or torn write transfers: `keep`, else half the request on a
 * 512-byte boundary; never more than the request. */
static size_t kept(const FaultRule *r, size_t len)
{
    uint64_t k = r->has_keep ? r->keep : (len / 2) & ~(size_t)511;
    return (size_t)MIN(k, (uint64_t)len);
}

/* The byte to flip: the rule's offset when it names one inside the request, else the
 * first byte of the request. */
static size_t flip_index(const FaultRule *r, uint64_t off, size_t len)
{
    if (r->has_offset && r->offset >= off && r->offset - off < len)
        return (size_t)(r->offset - off);
    return 0;
}

static int fault_pread(QsBlock *bs, uint64_t off, size_t len, void *buf)
{
    Fault f = decide(bs, FOP_READ, off, len);
    if (f.hit && f.rule.action == FA_ERROR) return -f.rule.err;
    int r = qs_block_pread(bs->file, off, len, buf);
    if (r < 0 || !f.hit) return r;
    if (f.rule.action == FA_SHORT) {
        size_t k = kept(&f.rule, len);
        memset((uint8_t *)buf + k, 0, len - k);
    } else if (f.rule.action == FA_FLIP) {
        ((uint8_t *)buf)[flip_index(&f.rule, off, len)] ^= (uint8_t)(1u << f.rule.bit);
    }
    return 0;
}

static int fault_pwrite(QsBlock *bs, uint64_t off, size_t len, const void *buf, int flags)
{
    Fault f = decide(bs, FOP_WRITE, off, len);
    int r;
    if (!f.hit) {
        r = qs_block_pwrite(bs->file, off, len, buf, flags);
    } else if (f.rule.action == FA_ERROR) {
        return -f.rule.err;
    } else if (f.rule.action == FA_FLIP) {
        uint8_t *copy = g_memdup2(buf, len);
        copy[flip_index(&f.rule, off, len)] ^= (uint8_t)(1u << f.rule.bit);
        r = qs_block_pwrite(bs->file, off, len, copy, flags);
        g_free(copy);
    } else {
        size_t k = kept(&f.rule, len);
        r = k ? qs_block_pwrite(bs->file, off, k, buf, flags) : 0;
        if (r == 0 && f.rule.action == FA_TORN) r = -f.rule.err;
    }
    track_size(bs);
    return r;
}

static int fault_pwrite_zeroes(QsBlock *bs, uint64_t off, uint64_t len, int flags)
{
    Fault f = decide(bs, FOP_ZEROES, off, len);
    if (f.hit) return -f.rule.err;
    int r = qs_block_pwrite_zeroes(bs->file, off, len, flags);
    track_size(bs);
    return r;
}

static int fault_pdiscard(QsBlock *bs, uint64_t off, uint64_t len)
{
    Fault f = decide(bs, FOP_DISCARD, off, len);
    if (f.hit) return -f.rule.err;
    return qs_block_pdiscard(bs->file, off, len);
}

static int fault_flush(QsBlock *bs)
{
    Fault f = decide(bs, FOP_FLUSH, 0, 0);
    if (f.hit) return -f.rule.err;
    return qs_block_flush(bs->file);
}

static int fault_truncate(QsBlock *bs, uint64_t size, bool shrink, QsPrealloc prealloc,
                          GError **errp)
{
    if (!qs_block_truncate(bs->file, size, shrink, prealloc, errp)) return -EIO;
    __atomic_store_n(&bs->size, bs->file->size, __ATOMIC_SEQ_CST);
    return 0;
}

static int fault_block_status(QsBlock *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                              uint64_t *map, QsBlock **file)
{
    if (off >= bs->file->size) {   /* a format appended past the child's end: zeros */
        *pnum = len;
        return QS_BS_ZERO | QS_BS_ALLOCATED;
    }
    int r = qs_block_status(bs->file, off, len, pnum, map, file);
    return r < 0 ? r : r | QS_BS_ALLOCATED;
}

static int64_t fault_allocated_size(QsBlock *bs)
{
    return qs_block_allocated_size(bs->file);
}

static bool fault_open(QsBlock *bs, const QsOpts *opts, GError **errp)
{
    FaultState *s = bs->opaque;
    const char *child = bs->filename;
    if (!g_str_has_prefix(child, "fault:") || !child[6]) {
        g_set_error(errp, QS_BLOCK_ERROR, EINVAL, "fault filter: '%s' is not fault:FILENAME",
                    bs->filename);
        return false;
    }
    child += 6;
    s->rules = g_ptr_array_ref(module_rules);
    bs->file = qs_block_open_file(child, bs->flags, errp);
    if (!bs->file) {
        g_ptr_array_unref(s->rules);
        s->rules = NULL;
        return false;
    }
    s->fired = g_new0(uint64_t, s->rules->len ? s->rules->len : 1);
    g_mutex_init(&s->lock);
    bs->size = bs->file->size;
    return true;
}

static void fault_close(QsBlock *bs)
{
    FaultState *s = bs->opaque;
    if (!s->rules) return;   /* open failed before anything was set up */
    g_ptr_array_unref(s->rules);
    g_free(s->fired);
    g_mutex_clear(&s->lock);
    /* the block layer closes bs->file */
}

static const QsBlockDriver fault_driver = {
    .name = "fault",
    .desc = "fault-injecting filter (block-fuzz): fault:FILENAME",
    .is_protocol = true,
    .is_filter = true,
    .instance_size = sizeof(FaultState),
    .open = fault_open,
    .close = fault_close,
    .pread = fault_pread,
    .pwrite = fault_pwrite,
    .pwrite_zeroes = fault_pwrite_zeroes,
    .pdiscard = fault_pdiscard,
    .flush = fault_flush,
    .truncate = fault_truncate,
    .block_status = fault_block_status,
    .allocated_size = fault_allocated_size,
};

static const QsPropDesc module_opts[] = {
    { "rule", QS_PROP_STRING, NULL,
      "fault rules, separated by ';': OP ACTION [key=value ...] with OP read|write|zeroes|"
      "discard|flush|any, ACTION error|short|torn|flip, keys offset nth from count errno keep "
      "bit crash image" },
    { "rules", QS_PROP_STRING, NULL, "a file with one rule per line ('#' comments)" },
    { "log", QS_PROP_BOOL, "off", "print each injected fault on stderr" },
    { NULL },
};

static bool block_fuzz_init(QsModule *mod, const QsOpts *opts, GError **errp)
{
    GPtrArray *rules = g_ptr_array_new_with_free_func((GDestroyNotify)fault_rule_free);
    const char *rule = qs_opts_get_str(opts, "rule");
    const char *file = qs_opts_get_str(opts, "rules");
    if ((rule && !fault_rules_parse_text(rules, rule, "rule=", errp)) ||
        (file && !fault_rules_parse_file(rules, file, errp))) {
        g_ptr_array_unref(rules);
        return false;
    }
    if (!qs_block_driver_register(&fault_driver, errp)) {
        g_ptr_array_unref(rules);
        return false;
    }
    module_rules = rules;
    log_faults = qs_opts_get_bool(opts, "log");
    return true;
}

static void block_fuzz_exit(QsModule *mod)
{
    /* images still open keep their reference */
    g_clear_pointer(&module_rules, g_ptr_array_unref);
}

QS_MODULE_DEFINE(
    .name = "block-fuzz",
    .version = "1.0",
    .license = "GPL-2.0-or-later",
    .description = "fault-injecting block filter 'fault:FILE' (I/O errors, short reads, "
                   "torn writes, bit flips by rule)",
    .options = module_opts,
    .provides = QS_STRV("block:fault"),
    .init = block_fuzz_init,
    .exit = block_fuzz_exit,
);
