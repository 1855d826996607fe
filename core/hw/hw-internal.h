/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Constructors of the virt machine's built-in devices and the kernel loader, shared by
 * the machine code and the unit tests. */
#ifndef QS_HW_INTERNAL_H
#define QS_HW_INTERNAL_H

#include "qs/chardev.h"
#include "qs/irq.h"
#include "qs/machine.h"
#include "qs/memory.h"
#include "qs/pci.h"

/* sifive_test finisher: 0x5555 -> exit 0, 0x3333 | code << 16 -> exit code, 0x7777 ->
 * system reset; calls qs_request_shutdown / qs_machine_reset. */
QsMemoryRegion *qs_sifive_test_new(void);

/* NS16550A UART on chr (may be NULL: output dropped), irq to the interrupt controller. */
typedef struct Uart16550 Uart16550;
Uart16550 *qs_uart16550_new(QsChardev *chr, QsIrq *irq, QsMemoryRegion **mmio);
void qs_uart16550_free(Uart16550 *u);
void qs_uart16550_reset(Uart16550 *u);

/* CLINT: msip, mtimecmp, mtime (10 MHz from the virtual clock) for nharts; outputs
 * "msip"/"mtip" registered under path. */
typedef struct Clint Clint;
Clint *qs_clint_new(const char *path, unsigned nharts, QsMemoryRegion **mmio);
void qs_clint_free(Clint *c);
void qs_clint_reset(Clint *c);
#define QS_CLINT_TIMEBASE_HZ 10000000

/* SiFive PLIC with nsources sources and 2 contexts (M, S) per hart; inputs and outputs
 * registered under path. */
typedef struct Plic Plic;
Plic *qs_plic_new(const char *path, unsigned nsources, unsigned nharts,
                  QsMemoryRegion **mmio);
void qs_plic_free(Plic *p);
void qs_plic_reset(Plic *p);
QsIrq *qs_plic_input(Plic *p, unsigned source);

/* -kernel: an ELF64 RISC-V executable (every header field checked) or a raw image at
 * ram_base.  *entry gets the entry point. */
bool qs_load_kernel(const char *path, void *ram, uint64_t ram_base, uint64_t ram_size,
                    uint64_t *entry, GError **errp);

/* The edu device type (registered by the machine code). */
void qs_edu_register(void);

#endif
