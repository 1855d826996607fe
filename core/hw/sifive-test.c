/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The sifive_test finisher: a guest (or qtest) write ends qemu-slim with an exit status
 * (0x5555 pass, 0x3333 | code << 16 fail with code) or resets the machine (0x7777). */
#include <stdio.h>
#include "hw-internal.h"
#include "runtime.h"

enum { FINISHER_FAIL = 0x3333, FINISHER_PASS = 0x5555, FINISHER_RESET = 0x7777 };

static QsMemTxResult test_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                               QsMemTxAttrs attrs)
{
    *val = 0;
    return QS_MEMTX_OK;
}

static QsMemTxResult test_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                                QsMemTxAttrs attrs)
{
    if (addr != 0) return QS_MEMTX_OK;
    unsigned status = val & 0xffff, code = (val >> 16) & 0xffff;
    switch (status) {
    case FINISHER_FAIL:
        qs_request_shutdown((int)code, "guest-shutdown");
        break;
    case FINISHER_PASS:
        qs_request_shutdown(0, "guest-shutdown");
        break;
    case FINISHER_RESET:
        qs_machine_reset();
        break;
    default:
        fprintf(stderr, "qemu-slim: sifive_test: write of unknown value 0x%04x ignored\n",
                status);
        break;
    }
    return QS_MEMTX_OK;
}

static const QsMemOps test_ops = {
    .read = test_read,
    .write = test_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 2, .max = 4 },
    .impl = { .min = 2, .max = 4 },
};

QsMemoryRegion *qs_sifive_test_new(void)
{
    return qs_memory_region_new_io("riscv.sifive.test", 0x1000, &test_ops, NULL);
}
