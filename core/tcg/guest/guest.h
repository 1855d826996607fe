/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The guest programs' tiny runtime: UART output, a printf subset, the test finisher,
 * CLINT access, a spinlock, and CSR accessors.  Freestanding, no libc. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned long u64;
typedef long s64;
typedef unsigned int u32;
typedef int s32;

#define CLINT_MSIP(h)     ((volatile u32 *)(0x2000000ul + 4 * (h)))
#define CLINT_MTIMECMP(h) ((volatile u64 *)(0x2004000ul + 8 * (h)))
#define CLINT_MTIME       ((volatile u64 *)0x200bff8ul)

#define csr_read(csr) ({ u64 v_; __asm__ volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" :: "r"((u64)(v)))
#define csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" :: "r"((u64)(v)))
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" :: "r"((u64)(v)))

void putc_(char c);
void puts_(const char *s);
void printf_(const char *fmt, ...);
void qs_exit(int code) __attribute__((noreturn));
void lock(volatile int *l);
void unlock(volatile int *l);
/* Trap hook: return the new mepc.  The default one reports and exits with status 3. */
u64 handle_trap(u64 cause, u64 epc, u64 tval, u64 *regs);
int main(u64 hart);

extern volatile int print_lock;
/* Count failed checks; main returns fails ? 1 : 0. */
extern int fails;
#define CHECK(name, got, want)                                                   \
    do {                                                                         \
        u64 g_ = (u64)(got), w_ = (u64)(want);                                   \
        if (g_ != w_) {                                                          \
            printf_("FAIL %s: got 0x%lx want 0x%lx\n", name, g_, w_);           \
            fails++;                                                             \
        }                                                                        \
    } while (0)

#endif
