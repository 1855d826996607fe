/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fault rules of the "fault" block filter: their text form (module options, rules
 * files), and matching a request against them. */
#ifndef BF_FAULT_RULES_H
#define BF_FAULT_RULES_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

typedef enum FaultOp {
    FOP_READ, FOP_WRITE, FOP_ZEROES, FOP_DISCARD, FOP_FLUSH, FOP__COUNT, FOP_ANY = FOP__COUNT,
} FaultOp;

typedef enum FaultAction {
    FA_ERROR,   /* fail the request with -errno, no I/O done */
    FA_SHORT,   /* reads: bytes past `keep` read as zeros; writes: only `keep` bytes land,
                 * success is reported (a device that lost the tail) */
    FA_TORN,    /* writes: only `keep` bytes land, then -errno */
    FA_FLIP,    /* flip bit `bit` of one byte of the data read or written */
} FaultAction;

typedef struct FaultRule {
    FaultOp op;
    FaultAction action;
    bool has_offset;
    uint64_t offset;    /* the request must cover this byte of the file */
    uint64_t nth;       /* 0: any request; else only the nth request of op (1-based) */
    uint64_t from;      /* 0: any request; else the from-th request of op and later ones */
    uint64_t count;     /* fire at most this many times per image; 0: no limit */
    int err;            /* positive errno */
    bool has_keep;
    uint64_t keep;      /* short/torn: bytes transferred */
    unsigned bit;       /* flip: 0..7 */
    bool crash;         /* after firing, writes/zeroes/discards/flushes fail with EIO */
    char *image;        /* only files whose name contains this, or NULL */
    char *text;         /* the rule as written, for messages */
} FaultRule;

/* Parse one rule ("write torn offset=65536 keep=512 crash=on"); the message names the
 * word at fault.  Keys: offset= (the request covers this byte), nth= (only the nth
 * request of OP), from= (the from-th request and later), count= (fire at most this
 * often; 1 with nth=), errno=, keep= (short/torn: bytes transferred), bit= (flip),
 * crash=on (later writes and flushes fail), image= (file names containing this). */
FaultRule *fault_rule_parse(const char *text, GError **errp);
void fault_rule_free(FaultRule *r);

/* Append the rules of `text` (separated by ';' or newlines, '#' starts a comment) to
 * rules; `where` names the source in messages ("rule=", "rules file 'x'"). */
bool fault_rules_parse_text(GPtrArray *rules, const char *text, const char *where,
                            GError **errp);
bool fault_rules_parse_file(GPtrArray *rules, const char *path, GError **errp);

const char *fault_op_name(FaultOp op);
const char *fault_action_name(FaultAction a);

/* Does rule r apply to a request of op covering [off, off+len) that is the seq-th
 * request of that op (seq_any-th of all) on a file named filename? */
bool fault_rule_matches(const FaultRule *r, FaultOp op, uint64_t off, uint64_t len,
                        uint64_t seq, uint64_t seq_any, const char *filename);

#endif
