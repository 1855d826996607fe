/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qtest protocol tests: every command against the virt machine with edu, malformed input
 * (FAIL and the session goes on), and the finisher's exit status through the binary. */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "qtest-internal.h"
#include "qs/device.h"
#include "qs/evloop.h"
#include "qs/machine.h"
#include "runtime.h"

static QsQtest *qt;
static GString *out;

static void capture(void *opaque, const char *text, size_t len)
{
    g_string_append_len(out, text, len);
}

/* Run one request; return everything sent in reply (IRQ lines included). */
static const char *req(const char *line)
{
    g_string_truncate(out, 0);
    g_autofree char *l = g_strconcat(line, "\n", NULL);
    qs_qtest_feed(qt, (const uint8_t *)l, strlen(l));
    return out->str;
}

#define CHECK(line, reply) g_assert_cmpstr(req(line), ==, reply "\n")

static void test_memory_commands(void)
{
    CHECK("endianness", "OK little");
    CHECK("writeq 0x80000000 0x1122334455667788", "OK");
    CHECK("readb 0x80000000", "OK 0x0000000000000088");
    CHECK("readw 0x80000000", "OK 0x0000000000007788");
    CHECK("readl 0x80000004", "OK 0x0000000011223344");
    CHECK("readq 0x80000000", "OK 0x1122334455667788");
    CHECK("writeb 0x80000001 0x1ff", "OK");            /* truncated to the width */
    CHECK("readw 0x80000000", "OK 0x000000000000ff88");
    CHECK("writew 0x80000002 0xabcd", "OK");
    CHECK("writel 0x80000004 4294967295", "OK");       /* decimal */
    CHECK("read 0x80000000 8", "OK 0x88ffcdabffffffff");
    CHECK("b64read 0x80000000 3", "OK iP/N");
    CHECK("write 0x80000010 4 0xdeadbeef", "OK");
    CHECK("readl 0x80000010", "OK 0x00000000efbeadde");
    CHECK("write 0x80000010 4 0x01", "OK");            /* short data: zero-filled */
    CHECK("read 0x80000010 4", "OK 0x01000000");
    CHECK("b64write 0x80000020 3 AQID", "OK");
    CHECK("read 0x80000020 3", "OK 0x010203");
    CHECK("b64write 0x80000020 4 AQID", "OK");         /* sizes disagree: zero padded */
    CHECK("read 0x80000020 4", "OK 0x01020300");
    CHECK("memset 0x80000040 5 0xa5", "OK");
    CHECK("read 0x8000003f 7", "OK 0x00a5a5a5a5a500");
    CHECK("memset 0x80000040 0 0x11", "OK");
    CHECK("b64read 0x80000040 0", "OK ");
    /* unmapped memory reads as zero, writes vanish */
    CHECK("readl 0x5000", "OK 0x0000000000000000");
    CHECK("writel 0x5000 1", "OK");
    /* port I/O does not exist on virt */
    CHECK("outb 0x10 1", "OK");
    CHECK("inb 0x10", "OK 0x00ff");
    CHECK("inl 0x10", "OK 0xffffffff");
}

static void test_pci_edu_and_irq(void)
{
    /* edu at 00:01.0: program BAR0, enable memory and bus master */
    CHECK("readl 0x30008000", "OK 0x0000000011e81234");
    CHECK("writel 0x30008010 0x40000000", "OK");
    CHECK("writew 0x30008004 0x6", "OK");
    CHECK("readl 0x40000000", "OK 0x00000000010000ed");
    CHECK("irq_intercept_in /machine/soc/plic", "OK");
    CHECK("irq_intercept_in plic", "OK");                     /* same device again */
    CHECK("irq_intercept_out /machine/clint mtip", "FAIL IRQ intercept already enabled");
    /* INTA of slot 1 is PLIC input 33; the IRQ line comes before the reply */
    g_assert_cmpstr(req("writel 0x40000060 0x4"), ==, "IRQ raise 33\nOK\n");
    CHECK("writel 0x40000060 0x8", "OK");                    /* no change, no line */
    CHECK("writel 0x40000064 0x4", "OK");
    g_assert_cmpstr(req("writel 0x40000064 0x8"), ==, "IRQ lower 33\nOK\n");
    /* set_irq_in drives the intercepted input */
    g_assert_cmpstr(req("set_irq_in plic unnamed-gpio-in 5 1"), ==, "IRQ raise 5\nOK\n");
    g_assert_cmpstr(req("set_irq_in plic unnamed-gpio-in 5 0"), ==, "IRQ lower 5\nOK\n");
    CHECK("set_irq_in plic unnamed-gpio-in 500 1", "FAIL /machine/soc/plic has no input line unnamed-gpio-in[500]");
    CHECK("set_irq_in nosuch unnamed-gpio-in 1 1", "FAIL Unknown device");
    CHECK("set_irq_in plic unnamed-gpio-in x 1", "FAIL invalid IRQ number 'x'");

    /* DMA from RAM into the buffer and back after 100 ms of virtual time, raising 0x100 */
    CHECK("writeq 0x80001000 0x0123456789abcdef", "OK");
    CHECK("writeq 0x40000080 0x80001000", "OK");
    CHECK("writeq 0x40000088 0x40000", "OK");
    CHECK("writeq 0x40000090 8", "OK");
    CHECK("writeq 0x40000098 1", "OK");
    int64_t t = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    g_autofree char *step = g_strdup_printf("OK %" G_GINT64_FORMAT "\n", t + 50000000);
    g_assert_cmpstr(req("clock_step 50000000"), ==, step);
    CHECK("readq 0x40000098", "OK 0x0000000000000001");
    /* without an argument: to the DMA timer's deadline (truncated to ms, then +100 ms) */
    int64_t dl = (t / 1000000 + 100) * 1000000;
    g_autofree char *to_dl = g_strdup_printf("OK %" G_GINT64_FORMAT "\n", dl);
    g_assert_cmpstr(req("clock_step"), ==, to_dl);
    CHECK("readq 0x40000098", "OK 0x0000000000000000");
    CHECK("writeq 0x40000080 0x40000", "OK");
    CHECK("writeq 0x40000088 0x80002000", "OK");
    CHECK("writeq 0x40000098 7", "OK");
    g_autofree char *raised = g_strdup_printf("IRQ raise 33\nOK %" G_GINT64_FORMAT "\n",
                                              dl + 100000000);
    g_assert_cmpstr(req("clock_step 100000000"), ==, raised);
    CHECK("readq 0x80002000", "OK 0x0123456789abcdef");
    g_assert_cmpstr(req("writel 0x40000064 0x100"), ==, "IRQ lower 33\nOK\n");
    /* As QEMU 7.2: clock_step and clock_set always answer OK with the virtual clock;
     * with no timer pending, a step of 0 or less, or a target in the past it stays. */
    int64_t now = qs_clock_get_ns(QS_CLOCK_VIRTUAL);
    g_autofree char *same = g_strdup_printf("OK %" G_GINT64_FORMAT "\n", now);
    g_assert_cmpstr(req("clock_step"), ==, same);
    g_assert_cmpstr(req("clock_step 0"), ==, same);
    g_assert_cmpstr(req("clock_step -5"), ==, same);
    g_autofree char *set = g_strdup_printf("clock_set %" G_GINT64_FORMAT, now + 1000);
    g_autofree char *ok = g_strdup_printf("OK %" G_GINT64_FORMAT "\n", now + 1000);
    g_assert_cmpstr(req(set), ==, ok);
    g_assert_cmpstr(req("clock_set 5"), ==, ok);
    g_assert_cmpstr(req("clock_step 0"), ==, ok);
    g_assert_cmpint(qs_clock_get_ns(QS_CLOCK_VIRTUAL), ==, now + 1000);
}

static void test_malformed(void)
{
    CHECK("", "FAIL Unknown command ''");
    CHECK("frobnicate 1 2", "FAIL Unknown command 'frobnicate'");
    CHECK("READL 0", "FAIL Unknown command 'READL'");
    CHECK("readl", "FAIL 'readl' needs 1 argument");
    CHECK("writel 0x80000000", "FAIL 'writel' needs 2 arguments");
    CHECK("set_irq_in plic", "FAIL 'set_irq_in' needs 4 arguments");
    CHECK("readl 0x8000000g", "FAIL invalid address '0x8000000g'");
    CHECK("readl 99999999999999999999999", "FAIL invalid address '99999999999999999999999'");
    CHECK("writel 0x80000000 zz", "FAIL invalid value 'zz'");
    CHECK("readl  0x80000000", "FAIL invalid address ''");   /* two spaces: an empty word */
    CHECK("read 0x80000000 0", "FAIL size must not be zero");
    CHECK("read 0x80000000 0xffffffffffffffff",
          "FAIL size 18446744073709551615 exceeds the limit of 16777216 bytes");
    CHECK("b64read 0 100000000", "FAIL size 100000000 exceeds the limit of 16777216 bytes");
    CHECK("memset 0 0x100000000 0", "FAIL size 4294967296 exceeds the limit of 1073741824 bytes");
    CHECK("write 0x80000000 4 0x", "FAIL invalid argument size");
    CHECK("write 0x80000000 4 12345678", "FAIL invalid argument size");
    CHECK("write 0x80000000 4 0x12zz", "FAIL invalid hex digit 'z' in data");
    CHECK("write 0x80000000 99999999 0x00", "FAIL size 99999999 exceeds the limit of 16777216 bytes");
    CHECK("b64write 0x80000000 4 A", "FAIL invalid argument size");
    CHECK("b64write 0x80000000 4 A*B=", "FAIL invalid base64 character '*'");
    CHECK("irq_intercept_in /no/such/device", "FAIL Unknown device");
    CHECK("clock_step abc", "FAIL invalid time 'abc'");
    CHECK("clock_set", "FAIL 'clock_set' needs 1 argument");
    CHECK("inb 0x10000", "FAIL invalid port '0x10000'");
    /* still alive */
    CHECK("endianness", "OK little");

    /* a request split over several reads, and two in one read */
    g_string_truncate(out, 0);
    qs_qtest_feed(qt, (const uint8_t *)"endi", 4);
    g_assert_cmpstr(out->str, ==, "");
    qs_qtest_feed(qt, (const uint8_t *)"anness\nendianness\nread", 22);
    g_assert_cmpstr(out->str, ==, "OK little\nOK little\n");
    qs_qtest_feed(qt, (const uint8_t *)"l 0x5000\n", 9);
    g_assert_cmpstr(out->str, ==, "OK little\nOK little\nOK 0x0000000000000000\n");
    /* an over-long line is discarded (bounded buffer) and answered once */
    g_string_truncate(out, 0);
    size_t chunk = 1 << 20;
    g_autofree uint8_t *junk = g_malloc(chunk);
    memset(junk, 'a', chunk);
    for (size_t sent = 0; sent <= QS_QTEST_MAX_LINE; sent += chunk) qs_qtest_feed(qt, junk, chunk);
    g_assert_cmpstr(out->str, ==, "");
    qs_qtest_feed(qt, (const uint8_t *)"\nendianness\n", 12);
    g_assert_cmpstr(out->str, ==, "FAIL request longer than 33554688 bytes\nOK little\n");
}

/* ---- through the binary: -qtest on a socket we listen on, as libqtest does ---- */

static const char *qemu_slim;

static int run_with_qtest(const char *const *extra, const char *request, char **err_out)
{
    g_autofree char *dir = g_dir_make_tmp("qs-qtest-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "q.sock", NULL);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(ls, 1), ==, 0);
    g_autofree char *spec = g_strconcat("unix:", sock, NULL);
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)qemu_slim);
    for (; *extra; extra++) g_ptr_array_add(argv, (char *)*extra);
    g_ptr_array_add(argv, "-qtest");
    g_ptr_array_add(argv, spec);
    g_ptr_array_add(argv, NULL);
    GPid pid;
    int err_fd;
    GError *e = NULL;
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL,
                                           NULL, &err_fd, &e));
    g_assert_no_error(e);
    g_ptr_array_free(argv, TRUE);
    int c = accept(ls, NULL, NULL);
    g_assert_cmpint(c, >=, 0);
    g_assert_cmpint(write(c, request, strlen(request)), ==, (ssize_t)strlen(request));
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    GString *err = g_string_new(NULL);
    char buf[512];
    ssize_t n;
    while ((n = read(err_fd, buf, sizeof(buf))) > 0) g_string_append_len(err, buf, n);
    close(err_fd);
    close(c);
    close(ls);
    g_unlink(sock);
    g_rmdir(dir);
    if (err_out) *err_out = g_string_free(err, FALSE);
    else g_string_free(err, TRUE);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_finisher_exit_status(void)
{
    const char *virt[] = { "-M", "virt", "-display", "none", NULL };
    g_assert_cmpint(run_with_qtest(virt, "writel 0x100000 0x5555\n", NULL), ==, 0);
    g_assert_cmpint(run_with_qtest(virt, "writel 0x100000 0x13333\n", NULL), ==, 1);
    g_assert_cmpint(run_with_qtest(virt, "readl 0x100000\nwritel 0x100000 0x2a3333\n", NULL), ==, 42);
}

static void test_kernel_error_cli(void)
{
    g_autofree char *dir = g_dir_make_tmp("qs-kernel-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "x86.elf", NULL);
    uint8_t eh[64] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };
    eh[16] = 2; eh[18] = 62;   /* EM_X86_64 */
    g_assert_true(g_file_set_contents(path, (char *)eh, sizeof(eh), NULL));
    const char *argv[] = { qemu_slim, "-M", "virt", "-kernel", path, NULL };
    g_autofree char *err = NULL;
    int status;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, 0, NULL, NULL, NULL, &err, &status, NULL));
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    g_assert_true(g_str_has_prefix(err, "qemu-slim: -kernel "));
    g_assert_nonnull(strstr(err, path));
    g_assert_nonnull(strstr(err, "e_machine is 62, expected 243 (EM_RISCV)"));
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_slim = g_getenv("QS_TEST_QEMU_SLIM");
    if (!qemu_slim) g_error("QS_TEST_QEMU_SLIM must name the qemu-slim binary");
    qs_evloop_init();
    qs_clock_set_manual(true);
    QsMachineConfig cfg = { .name = "virt", .opts = "", .ram_size = 16 << 20, .smp = 1 };
    GError *err = NULL;
    if (!qs_machine_init(&cfg, &err)) g_error("machine: %s", err->message);
    if (!qs_device_create("edu,dma_mask=0xffffffffff", &err)) g_error("edu: %s", err->message);
    out = g_string_new(NULL);
    qt = qs_qtest_new(qs_address_space_memory(), capture, NULL);
    g_test_add_func("/qtest/memory-commands", test_memory_commands);
    g_test_add_func("/qtest/pci-edu-irq", test_pci_edu_and_irq);
    g_test_add_func("/qtest/malformed", test_malformed);
    g_test_add_func("/qtest/finisher-exit-status", test_finisher_exit_status);
    g_test_add_func("/qtest/kernel-error-cli", test_kernel_error_cli);
    int r = g_test_run();
    qs_qtest_free(qt);
    g_string_free(out, TRUE);
    return r;
}
