/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The guest runtime: NS16550 output at 0x10000000, the sifive_test finisher at
 * 0x100000, a printf subset (%d %u %x %lx %ld %lu %s %c), AMO spinlocks. */
#include <stdarg.h>
#include "guest.h"

volatile int print_lock;
int fails;

void putc_(char c)
{
    volatile unsigned char *uart = (volatile unsigned char *)0x10000000ul;
    while (!(uart[5] & 0x20)) {
    }
    uart[0] = (unsigned char)c;
}

void puts_(const char *s)
{
    while (*s) putc_(*s++);
}

static void put_num(u64 v, unsigned base, int neg)
{
    char buf[24];
    int i = 0;
    if (neg) putc_('-');
    do {
        unsigned d = (unsigned)(v % base);
        buf[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (i) putc_(buf[--i]);
}

void printf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') { putc_(*fmt); continue; }
        int lng = 0;
        fmt++;
        while (*fmt == 'l') { lng = 1; fmt++; }
        switch (*fmt) {
        case 'd': {
            s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);
            put_num(v < 0 ? (u64)-v : (u64)v, 10, v < 0);
            break;
        }
        case 'u': put_num(lng ? va_arg(ap, u64) : va_arg(ap, unsigned), 10, 0); break;
        case 'x': put_num(lng ? va_arg(ap, u64) : va_arg(ap, unsigned), 16, 0); break;
        case 's': puts_(va_arg(ap, const char *)); break;
        case 'c': putc_((char)va_arg(ap, int)); break;
        default: putc_('%'); putc_(*fmt); break;
        }
    }
    va_end(ap);
}

void qs_exit(int code)
{
    volatile u32 *finisher = (volatile u32 *)0x100000ul;
    *finisher = code ? (u32)code << 16 | 0x3333 : 0x5555;
    for (;;) __asm__ volatile("wfi");
}

void lock(volatile int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        while (*l) {
        }
    }
}

void unlock(volatile int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

__attribute__((weak)) u64 handle_trap(u64 cause, u64 epc, u64 tval, u64 *regs)
{
    printf_("unexpected trap: mcause 0x%lx mepc 0x%lx mtval 0x%lx\n", cause, epc, tval);
    qs_exit(3);
}
