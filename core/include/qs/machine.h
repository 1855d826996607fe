/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The machine as the CPU and tools see it: RAM, the boot entry point, the number of
 * harts, and which interrupt lines go to each hart (connected by the CPU). */
#ifndef QS_MACHINE_H
#define QS_MACHINE_H

#include "qs/irq.h"
#include "qs/memory.h"

typedef struct QsMachineInfo {
    const char *name;            /* "virt", "none" */
    QsAddressSpace *as;          /* system memory */
    QsMemoryRegion *ram;         /* main RAM (memfd-backed) */
    uint64_t ram_base;
    uint64_t ram_size;
    unsigned smp;
    uint64_t entry_pc;           /* where harts start: the -kernel ELF entry or RAM base */
    bool kernel_loaded;
} QsMachineInfo;

/* The machine qs_machine_init created, or NULL before. */
const QsMachineInfo *qs_machine_current(void);

/*
 * Interrupt outputs a CPU connects with qs_gpio_connect_out (path, name, line = hart):
 *   "/machine/clint", "msip"   machine software interrupt of hart N
 *   "/machine/clint", "mtip"   machine timer interrupt of hart N (mtime >= mtimecmp)
 *   "/machine/soc/plic", NULL  external interrupt of PLIC context N: hart N/2, M-mode for
 *                              even N, S-mode for odd N
 * Inputs of the PLIC ("unnamed-gpio-in", source numbers 0..95) are what qtest's
 * irq_intercept_in plic reports: UART0 is 10, PCIe INTA..INTD 32..35.
 */
#define QS_VIRT_UART0_IRQ 10
#define QS_VIRT_PCIE_IRQ 32

#endif
