/* SPDX-License-Identifier: GPL-2.0-or-later */
/* QEMU's qtest text protocol: memory reads and writes, clock stepping, IRQ interception.
 * Every malformed request gets "FAIL <reason>" and the session goes on. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "qtest-internal.h"
#include "qs/evloop.h"
#include "qs/irq.h"

#define MAX_IRQ 1024

struct QsQtest {
    QsAddressSpace *as;
    QsQtestSendFn send;
    void *opaque;
    GString *inbuf;
    bool discarding;          /* skipping the rest of an over-long line */
    char *intercepted;        /* full path of the device whose lines are intercepted */
    int8_t irq_levels[MAX_IRQ];
};

static void sendf(QsQtest *q, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void sendf(QsQtest *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    q->send(q->opaque, s, strlen(s));
}

QsQtest *qs_qtest_new(QsAddressSpace *as, QsQtestSendFn send, void *opaque)
{
    QsQtest *q = g_new0(QsQtest, 1);
    q->as = as;
    q->send = send;
    q->opaque = opaque;
    q->inbuf = g_string_new(NULL);
    return q;
}

void qs_qtest_reset_connection(QsQtest *q)
{
    memset(q->irq_levels, 0, sizeof(q->irq_levels));
    g_string_truncate(q->inbuf, 0);
    q->discarding = false;
}

void qs_qtest_free(QsQtest *q)
{
    if (!q) return;
    if (q->intercepted) qs_gpio_intercept_clear();
    g_free(q->intercepted);
    g_string_free(q->inbuf, TRUE);
    g_free(q);
}

/* ---- argument parsing (strtoul with base 0, as QEMU; the whole word must parse) ---- */

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || g_ascii_isspace(*s)) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || g_ascii_isspace(*s)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static int nwords(char **w)
{
    int n = 0;
    while (w[n]) n++;
    return n;
}

/* ---- IRQ interception ---- */

static void irq_handler(void *opaque, int n, int level)
{
    QsQtest *q = opaque;
    if (n < 0 || n >= MAX_IRQ) return;
    int8_t l = level != 0;
    if (q->irq_levels[n] != l) {
        q->irq_levels[n] = l;
        sendf(q, "IRQ %s %d\n", l ? "raise" : "lower", n);
    }
}

static void cmd_intercept(QsQtest *q, char **w, bool out)
{
    const char *full = qs_gpio_resolve(w[1]);
    if (!full) {
        sendf(q, "FAIL Unknown device\n");
        return;
    }
    if (w[2] && !out) {
        sendf(q, "FAIL Interception of named in-GPIOs not yet supported\n");
        return;
    }
    if (q->intercepted) {
        sendf(q, strcmp(q->intercepted, full) ? "FAIL IRQ intercept already enabled\n" : "OK\n");
        return;
    }
    QsGpioInterceptResult r = out ? qs_gpio_intercept_out(full, w[2], irq_handler, q)
                                  : qs_gpio_intercept_in(full, irq_handler, q);
    if (r != QS_GPIO_INTERCEPT_OK) {
        sendf(q, "FAIL No intercepts installed\n");
        return;
    }
    q->intercepted = g_strdup(full);
    sendf(q, "OK\n");
}

static void cmd_set_irq_in(QsQtest *q, char **w)
{
    int64_t num, level;
    const char *full = qs_gpio_resolve(w[1]);
    if (!full) {
        sendf(q, "FAIL Unknown device\n");
        return;
    }
    if (!parse_i64(w[3], &num) || num < 0 || num > INT32_MAX) {
        sendf(q, "FAIL invalid IRQ number '%s'\n", w[3]);
        return;
    }
    if (!parse_i64(w[4], &level) || level < INT32_MIN || level > INT32_MAX) {
        sendf(q, "FAIL invalid IRQ level '%s'\n", w[4]);
        return;
    }
    const char *name = strcmp(w[2], "unnamed-gpio-in") ? w[2] : NULL;
    QsIrq *irq = qs_gpio_get_in(full, name, (int)num);
    if (!irq) {
        sendf(q, "FAIL %s has no input line %s[%" PRId64 "]\n", full, w[2], num);
        return;
    }
    qs_irq_set(irq, (int)level);
    sendf(q, "OK\n");
}

/* ---- memory ---- */

static void cmd_write_n(QsQtest *q, char **w, unsigned size)
{
    uint64_t addr, val;
    if (!parse_u64(w[1], &addr)) { sendf(q, "FAIL invalid address '%s'\n", w[1]); return; }
    if (!parse_u64(w[2], &val)) { sendf(q, "FAIL invalid value '%s'\n", w[2]); return; }
    qs_address_space_store(q->as, addr, size, val, QS_MEMTXATTRS_UNSPECIFIED);
    sendf(q, "OK\n");
}

static void cmd_read_n(QsQtest *q, char **w, unsigned size)
{
    uint64_t addr, val = 0;
    if (!parse_u64(w[1], &addr)) { sendf(q, "FAIL invalid address '%s'\n", w[1]); return; }
    qs_address_space_load(q->as, addr, size, &val, QS_MEMTXATTRS_UNSPECIFIED);
    sendf(q, "OK 0x%016" PRIx64 "\n", val);
}

/* ADDR SIZE with SIZE bounded; zero allowed only when allow_zero. */
static bool addr_size(QsQtest *q, char **w, uint64_t *addr, uint64_t *size, uint64_t max,
                      bool allow_zero)
{
    if (!parse_u64(w[1], addr)) { sendf(q, "FAIL invalid address '%s'\n", w[1]); return false; }
    if (!parse_u64(w[2], size)) { sendf(q, "FAIL invalid size '%s'\n", w[2]); return false; }
    if (!*size && !allow_zero) { sendf(q, "FAIL size must not be zero\n"); return false; }
    if (*size > max) {
        sendf(q, "FAIL size %" PRIu64 " exceeds the limit of %" PRIu64 " bytes\n", *size, max);
        return false;
    }
    return true;
}

static void cmd_read(QsQtest *q, char **w)
{
    uint64_t addr, len;
    if (!addr_size(q, w, &addr, &len, QS_QTEST_MAX_DATA, false)) return;
    g_autofree uint8_t *data = g_malloc(len);
    qs_address_space_read(q->as, addr, QS_MEMTXATTRS_UNSPECIFIED, data, len);
    static const char hex[] = "0123456789abcdef";
    GString *s = g_string_sized_new(2 * len + 8);
    g_string_append(s, "OK 0x");
    for (uint64_t i = 0; i < len; i++) {
        g_string_append_c(s, hex[data[i] >> 4]);
        g_string_append_c(s, hex[data[i] & 15]);
    }
    g_string_append_c(s, '\n');
    q->send(q->opaque, s->str, s->len);
    g_string_free(s, TRUE);
}

static void cmd_b64read(QsQtest *q, char **w)
{
    uint64_t addr, len;
    if (!addr_size(q, w, &addr, &len, QS_QTEST_MAX_DATA, true)) return;
    g_autofree uint8_t *data = g_malloc(len ? len : 1);
    qs_address_space_read(q->as, addr, QS_MEMTXATTRS_UNSPECIFIED, data, len);
    g_autofree char *b64 = g_base64_encode(data, len);
    sendf(q, "OK %s\n", b64);
}

static int hexval(char c)
{
    return g_ascii_xdigit_value(c);
}

static void cmd_write(QsQtest *q, char **w)
{
    uint64_t addr, len;
    if (!addr_size(q, w, &addr, &len, QS_QTEST_MAX_DATA, false)) return;
    const char *d = w[3];
    size_t dlen = strlen(d);
    if (dlen < 3 || d[0] != '0' || (d[1] != 'x' && d[1] != 'X')) {
        sendf(q, "FAIL invalid argument size\n");
        return;
    }
    for (size_t i = 2; i < dlen; i++) {
        if (hexval(d[i]) < 0) {
            sendf(q, "FAIL invalid hex digit '%c' in data\n", d[i]);
            return;
        }
    }
    /* missing bytes are zero; extra data is ignored (as QEMU) */
    g_autofree uint8_t *data = g_malloc0(len);
    for (uint64_t i = 0; i < len && i * 2 + 4 <= dlen; i++) {
        data[i] = hexval(d[i * 2 + 2]) << 4 | hexval(d[i * 2 + 3]);
    }
    qs_address_space_write(q->as, addr, QS_MEMTXATTRS_UNSPECIFIED, data, len);
    sendf(q, "OK\n");
}

static void cmd_b64write(QsQtest *q, char **w)
{
    uint64_t addr, len;
    if (!addr_size(q, w, &addr, &len, QS_QTEST_MAX_DATA, true)) return;
    size_t dlen = strlen(w[3]);
    if (dlen < 3) {
        sendf(q, "FAIL invalid argument size\n");
        return;
    }
    for (size_t i = 0; i < dlen; i++) {
        char c = w[3][i];
        if (!g_ascii_isalnum(c) && c != '+' && c != '/' && c != '=') {
            sendf(q, "FAIL invalid base64 character '%c'\n", c);
            return;
        }
    }
    gsize out_len = 0;
    g_base64_decode_inplace(w[3], &out_len);
    /* sizes that disagree: the data is truncated, or padded with zeroes */
    g_autofree uint8_t *data = g_malloc0(len ? len : 1);
    memcpy(data, w[3], MIN((uint64_t)out_len, len));
    qs_address_space_write(q->as, addr, QS_MEMTXATTRS_UNSPECIFIED, data, len);
    sendf(q, "OK\n");
}

static void cmd_memset(QsQtest *q, char **w)
{
    uint64_t addr, len, pattern;
    if (!addr_size(q, w, &addr, &len, QS_QTEST_MAX_MEMSET, true)) return;
    if (!parse_u64(w[3], &pattern)) { sendf(q, "FAIL invalid value '%s'\n", w[3]); return; }
    uint8_t chunk[4096];
    memset(chunk, (int)(pattern & 0xff), sizeof(chunk));
    for (uint64_t done = 0; done < len;) {
        uint64_t n = MIN(len - done, (uint64_t)sizeof(chunk));
        qs_address_space_write(q->as, addr + done, QS_MEMTXATTRS_UNSPECIFIED, chunk, n);
        done += n;
    }
    sendf(q, "OK\n");
}

/* Port I/O: the virt machine has none, so writes vanish and reads float high. */
static void cmd_port(QsQtest *q, char **w, bool in, unsigned size)
{
    uint64_t addr, val;
    if (!parse_u64(w[1], &addr) || addr > 0xffff) {
        sendf(q, "FAIL invalid port '%s'\n", w[1]);
        return;
    }
    if (!in) {
        if (!parse_u64(w[2], &val)) { sendf(q, "FAIL invalid value '%s'\n", w[2]); return; }
        sendf(q, "OK\n");
        return;
    }
    sendf(q, "OK 0x%04x\n", size == 4 ? 0xffffffffu : size == 2 ? 0xffffu : 0xffu);
}

/* ---- clock ---- */

/* As QEMU 7.2 (the peer we follow): both commands always answer "OK <virtual clock>".
 * A step of 0 or less, a target in the past, or "clock_step" with no timer pending moves
 * nothing and reports the unchanged clock (QEMU >= 9.1 answers FAIL there instead).  A
 * malformed number, on which QEMU aborts, is refused with FAIL. */
static void cmd_clock_step(QsQtest *q, char **w)
{
    int64_t ns;
    if (w[1]) {
        if (!parse_i64(w[1], &ns)) { sendf(q, "FAIL invalid time '%s'\n", w[1]); return; }
    } else {
        int64_t dl = qs_clock_next_deadline(QS_CLOCK_VIRTUAL);
        int64_t old = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
        ns = dl > old ? dl - old : 0;
    }
    /* a step of 0 still runs the virtual timers already due */
    sendf(q, "OK %" PRIi64 "\n", qs_clock_step(ns > 0 ? ns : 0));
}

static void cmd_clock_set(QsQtest *q, char **w)
{
    int64_t ns;
    if (!parse_i64(w[1], &ns)) { sendf(q, "FAIL invalid time '%s'\n", w[1]); return; }
    sendf(q, "OK %" PRIi64 "\n", qs_clock_set(ns));
}

/* ---- dispatch ---- */

typedef struct Cmd {
    const char *name;
    int args;   /* words required after the name */
} Cmd;

static const Cmd cmds[] = {
    { "irq_intercept_in", 1 }, { "irq_intercept_out", 1 }, { "set_irq_in", 4 },
    { "outb", 2 }, { "outw", 2 }, { "outl", 2 }, { "inb", 1 }, { "inw", 1 }, { "inl", 1 },
    { "writeb", 2 }, { "writew", 2 }, { "writel", 2 }, { "writeq", 2 },
    { "readb", 1 }, { "readw", 1 }, { "readl", 1 }, { "readq", 1 },
    { "read", 2 }, { "b64read", 2 }, { "write", 3 }, { "b64write", 3 }, { "memset", 3 },
    { "endianness", 0 }, { "clock_step", 0 }, { "clock_set", 1 },
    { NULL, 0 },
};

static unsigned size_suffix(char c)
{
    return c == 'b' ? 1 : c == 'w' ? 2 : c == 'l' ? 4 : 8;
}

void qs_qtest_command(QsQtest *q, const char *line)
{
    g_auto(GStrv) w = g_strsplit(line, " ", 0);
    const char *c = w[0] ? w[0] : "";
    const Cmd *cmd = NULL;
    for (const Cmd *k = cmds; k->name; k++) {
        if (!strcmp(k->name, c)) cmd = k;
    }
    if (!cmd) {
        sendf(q, "FAIL Unknown command '%s'\n", c);
        return;
    }
    if (nwords(w) - 1 < cmd->args) {
        sendf(q, "FAIL '%s' needs %d argument%s\n", c, cmd->args, cmd->args == 1 ? "" : "s");
        return;
    }
    if (g_str_has_prefix(c, "irq_intercept_")) cmd_intercept(q, w, c[14] == 'o');
    else if (!strcmp(c, "set_irq_in")) cmd_set_irq_in(q, w);
    else if (g_str_has_prefix(c, "out")) cmd_port(q, w, false, size_suffix(c[3]));
    else if (g_str_has_prefix(c, "in")) cmd_port(q, w, true, size_suffix(c[2]));
    else if (g_str_has_prefix(c, "write") && c[5]) cmd_write_n(q, w, size_suffix(c[5]));
    else if (g_str_has_prefix(c, "read") && c[4]) cmd_read_n(q, w, size_suffix(c[4]));
    else if (!strcmp(c, "read")) cmd_read(q, w);
    else if (!strcmp(c, "write")) cmd_write(q, w);
    else if (!strcmp(c, "b64read")) cmd_b64read(q, w);
    else if (!strcmp(c, "b64write")) cmd_b64write(q, w);
    else if (!strcmp(c, "memset")) cmd_memset(q, w);
    else if (!strcmp(c, "endianness")) sendf(q, "OK little\n");
    else if (!strcmp(c, "clock_step")) cmd_clock_step(q, w);
    else if (!strcmp(c, "clock_set")) cmd_clock_set(q, w);
}

void qs_qtest_feed(QsQtest *q, const uint8_t *buf, size_t len)
{
    while (len) {
        const uint8_t *nl = memchr(buf, '\n', len);
        size_t take = nl ? (size_t)(nl - buf) : len;
        if (!q->discarding) {
            if (q->inbuf->len + take > QS_QTEST_MAX_LINE) {
                q->discarding = true;
                g_string_truncate(q->inbuf, 0);
            } else {
                g_string_append_len(q->inbuf, (const char *)buf, take);
            }
        }
        if (!nl) return;
        if (q->discarding) {
            q->discarding = false;
            sendf(q, "FAIL request longer than %u bytes\n", QS_QTEST_MAX_LINE);
        } else {
            g_autofree char *line = g_strndup(q->inbuf->str, q->inbuf->len);
            g_string_truncate(q->inbuf, 0);
            qs_qtest_command(q, line);
        }
        buf = nl + 1;
        len -= take + 1;
    }
}
