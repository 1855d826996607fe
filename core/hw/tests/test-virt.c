/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The virt machine's built-in devices: CLINT (mtime at 10 MHz of virtual time, mtimecmp
 * raising MTIP, msip), UART output to a file chardev and its THR-empty interrupt, RAM
 * placement and size, and the finisher's reset value. */
#include <string.h>
#include <glib/gstdio.h>
#include "qs/evloop.h"
#include "qs/machine.h"
#include "runtime.h"

#define CLINT 0x2000000ull
#define UART 0x10000000ull
static QsAddressSpace *sys;
static QsMemTxAttrs none;
static char *uart_file;

static uint64_t rd(uint64_t addr, unsigned size)
{
    uint64_t v = 0;
    qs_address_space_load(sys, addr, size, &v, none);
    return v;
}

static void wr(uint64_t addr, unsigned size, uint64_t v)
{
    qs_address_space_store(sys, addr, size, v, none);
}

static int mtip[2], msip[2];
static void on_mtip(void *opaque, int n, int level) { mtip[n] = level; }
static void on_msip(void *opaque, int n, int level) { msip[n] = level; }

static void test_clint(void)
{
    QsIrq *t0 = qs_irq_new(on_mtip, NULL, 0), *t1 = qs_irq_new(on_mtip, NULL, 1);
    QsIrq *s1 = qs_irq_new(on_msip, NULL, 1);
    g_assert_true(qs_gpio_connect_out("/machine/clint", "mtip", 0, t0, NULL));
    g_assert_true(qs_gpio_connect_out("/machine/clint", "mtip", 1, t1, NULL));
    g_assert_true(qs_gpio_connect_out("/machine/clint", "msip", 1, s1, NULL));
    g_assert_false(qs_gpio_connect_out("/machine/clint", "mtip", 2, t1, NULL));   /* 2 harts */

    uint64_t m0 = rd(CLINT + 0xbff8, 8);
    qs_clock_step(1000);                      /* 1 us = 10 ticks */
    g_assert_cmpuint(rd(CLINT + 0xbff8, 8) - m0, ==, 10);
    g_assert_cmpuint(rd(CLINT + 0xbff8, 4), ==, (uint32_t)(m0 + 10));
    /* mtimecmp of hart 1 in two 32-bit halves: 50 ticks ahead */
    uint64_t cmp = m0 + 10 + 50;
    wr(CLINT + 0x4008 + 4, 4, cmp >> 32);
    wr(CLINT + 0x4008, 4, (uint32_t)cmp);
    g_assert_cmphex(rd(CLINT + 0x4008, 8), ==, cmp);
    g_assert_cmpint(mtip[1], ==, 0);
    qs_clock_step(4900);
    g_assert_cmpint(mtip[1], ==, 0);
    qs_clock_step(100);                       /* reaches mtimecmp exactly */
    g_assert_cmpint(mtip[1], ==, 1);
    g_assert_cmpint(mtip[0], ==, 0);
    wr(CLINT + 0x4008, 8, UINT64_MAX);        /* far future: lowered */
    g_assert_cmpint(mtip[1], ==, 0);
    /* a compare value already in the past raises at once */
    wr(CLINT + 0x4000, 8, 0);
    g_assert_cmpint(mtip[0], ==, 1);
    wr(CLINT + 0x4000, 8, UINT64_MAX);
    /* msip: bit 0 only */
    wr(CLINT + 4, 4, 0xffffffff);
    g_assert_cmphex(rd(CLINT + 4, 4), ==, 1);
    g_assert_cmpint(msip[1], ==, 1);
    wr(CLINT + 4, 4, 0);
    g_assert_cmpint(msip[1], ==, 0);
    /* writing mtime moves the counter */
    wr(CLINT + 0xbff8, 8, 1000000);
    g_assert_cmpuint(rd(CLINT + 0xbff8, 8), ==, 1000000);
    qs_clock_step(100);
    g_assert_cmpuint(rd(CLINT + 0xbff8, 8), ==, 1000001);
    /* only 4- and 8-byte accesses */
    uint64_t v;
    g_assert_cmpint(qs_address_space_load(sys, CLINT + 0xbff8, 1, &v, none), ==, QS_MEMTX_DECODE_ERROR);
    /* disconnect before freeing: the CLINT keeps driving its outputs */
    qs_gpio_connect_out("/machine/clint", "mtip", 0, NULL, NULL);
    qs_gpio_connect_out("/machine/clint", "mtip", 1, NULL, NULL);
    qs_gpio_connect_out("/machine/clint", "msip", 1, NULL, NULL);
    qs_irq_free(t0);
    qs_irq_free(t1);
    qs_irq_free(s1);
}

static int uart_irq;
static void on_plic(void *opaque, int n, int level) { if (n == QS_VIRT_UART0_IRQ) uart_irq = level; }

static void test_uart(void)
{
    const char *msg = "hello, virt\n";
    for (const char *p = msg; *p; p++) wr(UART, 1, (uint8_t)*p);
    g_assert_cmphex(rd(UART + 5, 1) & 0x60, ==, 0x60);   /* THR empty, transmitter empty */
    /* THR-empty interrupt when enabled; reading IIR clears it */
    g_assert_cmpint(qs_gpio_intercept_in("plic", on_plic, NULL), ==, QS_GPIO_INTERCEPT_OK);
    wr(UART + 1, 1, 0x02);
    g_assert_cmpint(uart_irq, ==, 1);
    g_assert_cmphex(rd(UART + 2, 1) & 0x0f, ==, 0x02);
    g_assert_cmpint(uart_irq, ==, 0);
    wr(UART + 1, 1, 0);
    qs_gpio_intercept_clear();
    /* divisor latch */
    wr(UART + 3, 1, 0x80);
    wr(UART, 1, 0x34);
    wr(UART + 1, 1, 0x12);
    g_assert_cmphex(rd(UART, 1), ==, 0x34);
    g_assert_cmphex(rd(UART + 1, 1), ==, 0x12);
    wr(UART + 3, 1, 0x03);
    g_autofree char *got = NULL;
    gsize len = 0;
    /* the file chardev writes at once or from the main loop: let it run a little */
    for (int i = 0; i < 100; i++) {
        g_free(got);
        g_assert_true(g_file_get_contents(uart_file, &got, &len, NULL));
        if (len >= strlen(msg)) break;
        qs_loop_iterate(qs_loop_main(), false);
        g_usleep(1000);
    }
    g_assert_cmpstr(got, ==, msg);
}

static void test_ram_and_reset(void)
{
    const QsMachineInfo *mi = qs_machine_current();
    g_assert_nonnull(mi);
    g_assert_cmpstr(mi->name, ==, "virt");
    g_assert_cmphex(mi->ram_base, ==, 0x80000000);
    g_assert_cmphex(mi->ram_size, ==, 32 << 20);
    g_assert_cmpint(mi->smp, ==, 2);
    wr(0x80000000 + (32 << 20) - 8, 8, 0x55);
    g_assert_cmphex(rd(0x80000000 + (32 << 20) - 8, 8), ==, 0x55);
    uint64_t v;
    g_assert_cmpint(qs_address_space_load(sys, 0x80000000 + (32 << 20), 8, &v, none), ==,
                    QS_MEMTX_DECODE_ERROR);
    /* the finisher's reset value resets devices: msip and PCI command cleared */
    wr(CLINT, 4, 1);
    wr(0x30000000 + 4, 2, 0x6);   /* host bridge command */
    wr(0x100000, 4, 0x7777);
    g_assert_cmphex(rd(CLINT, 4), ==, 0);
    g_assert_cmphex(rd(0x30000000 + 4, 2), ==, 0);
    g_assert_cmphex(rd(0x80000000 + (32 << 20) - 8, 8), ==, 0x55);   /* RAM survives */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qs_evloop_init();
    qs_clock_set_manual(true);
    g_autofree char *dir = g_dir_make_tmp("qs-virt-XXXXXX", NULL);
    uart_file = g_build_filename(dir, "uart.txt", NULL);
    g_autofree char *serial = g_strconcat("file:", uart_file, NULL);
    QsMachineConfig cfg = { .name = "virt", .opts = "", .ram_size = 32 << 20, .smp = 2,
                            .serial = serial };
    GError *err = NULL;
    if (!qs_machine_init(&cfg, &err)) g_error("machine: %s", err->message);
    sys = qs_address_space_memory();
    g_test_add_func("/virt/clint", test_clint);
    g_test_add_func("/virt/uart", test_uart);
    g_test_add_func("/virt/ram-and-reset", test_ram_and_reset);
    int r = g_test_run();
    g_unlink(uart_file);
    g_rmdir(dir);
    g_free(uart_file);
    return r;
}
