/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The "edu" PCI test device with QEMU's register interface (docs/specs/edu.rst): id,
 * liveness, factorial, interrupts over INTx or MSI, and DMA after 100 ms of virtual time. */
#include <stdio.h>
#include <string.h>
#include "hw-internal.h"
#include "qs/evloop.h"
#include "qs-internal.h"

enum {
    STATUS_COMPUTING = 0x01, STATUS_IRQFACT = 0x80,
    FACT_IRQ = 0x001, DMA_IRQ = 0x100,
    DMA_RUN = 0x1, DMA_TO_PCI = 0x2, DMA_IRQ_EN = 0x4,
    DMA_START = 0x40000, DMA_SIZE = 4096,
    DMA_DELAY_MS = 100,
};

typedef struct Edu {
    QsPciDevice pdev;
    QsMemoryRegion *mmio;
    QsTimer *dma_timer;
    uint32_t addr4, fact, status, irq_status;
    uint64_t dma_src, dma_dst, dma_cnt, dma_cmd;
    uint64_t dma_mask;
    uint8_t dma_buf[DMA_SIZE];
} Edu;

static void edu_raise(Edu *e, uint32_t val)
{
    e->irq_status |= val;
    if (!e->irq_status) return;
    if (qs_pci_msi_enabled(&e->pdev)) qs_pci_msi_notify(&e->pdev, 0);
    else qs_pci_set_irq(&e->pdev, 1);
}

static void edu_lower(Edu *e, uint32_t val)
{
    e->irq_status &= ~val;
    if (!e->irq_status && !qs_pci_msi_enabled(&e->pdev)) qs_pci_set_irq(&e->pdev, 0);
}

/* n! mod 2^32, as the device's 32-bit loop computes it; from 34! on it is 0 (32 factors
 * of two), so the loop is bounded whatever the guest writes. */
static uint32_t factorial(uint32_t n)
{
    if (n >= 34) return 0;
    uint32_t r = 1;
    while (n > 0) r *= n--;
    return r;
}

/* The transfer's device-side range must lie in the 4 KiB buffer. */
static bool range_ok(Edu *e, uint64_t start, uint64_t cnt)
{
    uint64_t end = start + cnt;
    if (end >= start && start >= DMA_START && end <= DMA_START + DMA_SIZE) return true;
    fprintf(stderr, "qemu-slim: %s: DMA range 0x%016" G_GINT64_MODIFIER "x+0x%"
            G_GINT64_MODIFIER "x out of bounds (buffer 0x%x-0x%x): transfer refused\n",
            e->pdev.name, start, cnt, DMA_START, DMA_START + DMA_SIZE - 1);
    return false;
}

static uint64_t clamp_addr(Edu *e, uint64_t addr)
{
    uint64_t res = addr & e->dma_mask;
    if (res != addr) {
        fprintf(stderr, "qemu-slim: %s: clamping DMA 0x%016" G_GINT64_MODIFIER "x to 0x%016"
                G_GINT64_MODIFIER "x (dma_mask)\n", e->pdev.name, addr, res);
    }
    return res;
}

static void dma_timer(void *opaque)
{
    Edu *e = opaque;
    qs_bql_lock();
    if (!(e->dma_cmd & DMA_RUN)) goto out;
    bool done = false;
    if (!(e->dma_cmd & DMA_TO_PCI)) {
        if (range_ok(e, e->dma_dst, e->dma_cnt)) {
            uint64_t src = clamp_addr(e, e->dma_src);
            QsMemTxResult r = qs_pci_dma_read(&e->pdev, src, e->dma_buf + (e->dma_dst - DMA_START),
                                              e->dma_cnt);
            done = r == QS_MEMTX_OK;
            if (!done) {
                fprintf(stderr, "qemu-slim: %s: DMA read of 0x%" G_GINT64_MODIFIER "x bytes "
                        "from 0x%" G_GINT64_MODIFIER "x failed: %s\n", e->pdev.name, e->dma_cnt,
                        src, qs_memtx_result_str(r));
            }
        }
    } else if (range_ok(e, e->dma_src, e->dma_cnt)) {
        uint64_t dst = clamp_addr(e, e->dma_dst);
        QsMemTxResult r = qs_pci_dma_write(&e->pdev, dst, e->dma_buf + (e->dma_src - DMA_START),
                                           e->dma_cnt);
        done = r == QS_MEMTX_OK;
        if (!done) {
            fprintf(stderr, "qemu-slim: %s: DMA write of 0x%" G_GINT64_MODIFIER "x bytes to "
                    "0x%" G_GINT64_MODIFIER "x failed: %s\n", e->pdev.name, e->dma_cnt, dst,
                    qs_memtx_result_str(r));
        }
    }
    /* The command completes either way (a driver polling bit 0 must not hang); only a
     * transfer that happened raises the completion interrupt. */
    e->dma_cmd &= ~(uint64_t)DMA_RUN;
    if (done && (e->dma_cmd & DMA_IRQ_EN)) edu_raise(e, DMA_IRQ);
out:
    qs_bql_unlock();
}

static QsMemTxResult edu_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                              QsMemTxAttrs attrs)
{
    Edu *e = opaque;
    *val = UINT64_MAX;
    if ((addr < 0x80 && size != 4) || (addr >= 0x80 && size != 4 && size != 8)) {
        return QS_MEMTX_OK;
    }
    switch (addr) {
    case 0x00: *val = 0x010000ed; break;
    case 0x04: *val = e->addr4; break;
    case 0x08: *val = e->fact; break;
    case 0x20: *val = e->status; break;
    case 0x24: *val = e->irq_status; break;
    case 0x80: *val = e->dma_src; break;
    case 0x88: *val = e->dma_dst; break;
    case 0x90: *val = e->dma_cnt; break;
    case 0x98: *val = e->dma_cmd; break;
    }
    return QS_MEMTX_OK;
}

static void dma_reg_write(Edu *e, uint64_t *reg, uint64_t val)
{
    if (!(e->dma_cmd & DMA_RUN)) *reg = val;   /* frozen while a transfer is pending */
}

static QsMemTxResult edu_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                               QsMemTxAttrs attrs)
{
    Edu *e = opaque;
    if ((addr < 0x80 && size != 4) || (addr >= 0x80 && size != 4 && size != 8)) {
        return QS_MEMTX_OK;
    }
    switch (addr) {
    case 0x04:
        e->addr4 = ~(uint32_t)val;
        break;
    case 0x08:
        if (e->status & STATUS_COMPUTING) break;
        /* computed at once: the busy bit is never seen set, as with a fast thread */
        e->fact = factorial((uint32_t)val);
        if (e->status & STATUS_IRQFACT) edu_raise(e, FACT_IRQ);
        break;
    case 0x20:
        if (val & STATUS_IRQFACT) e->status |= STATUS_IRQFACT;
        else e->status &= ~STATUS_IRQFACT;
        break;
    case 0x60: edu_raise(e, (uint32_t)val); break;
    case 0x64: edu_lower(e, (uint32_t)val); break;
    case 0x80: dma_reg_write(e, &e->dma_src, val); break;
    case 0x88: dma_reg_write(e, &e->dma_dst, val); break;
    case 0x90: dma_reg_write(e, &e->dma_cnt, val); break;
    case 0x98:
        if (!(val & DMA_RUN) || (e->dma_cmd & DMA_RUN)) break;
        e->dma_cmd = val;
        {
            int64_t now_ms = qs_clock_get_ns(QS_CLOCK_VIRTUAL) / 1000000;
            qs_timer_mod(e->dma_timer, (now_ms + DMA_DELAY_MS) * 1000000);
        }
        break;
    }
    return QS_MEMTX_OK;
}

static const QsMemOps edu_ops = {
    .read = edu_read,
    .write = edu_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 4, .max = 8 },
    .impl = { .min = 4, .max = 8 },
};

static bool edu_realize(QsDevice *dev, GError **errp)
{
    Edu *e = (Edu *)dev;
    e->dma_mask = qs_opts_get_uint(dev->props, "dma_mask");
    qs_pci_config_set_ids(&e->pdev, 0x1234, 0x11e8, 0x00ff00 /* PCI_CLASS_OTHERS */, 0x10);
    e->pdev.config[QS_PCI_INTERRUPT_PIN] = 1;
    if (!qs_pci_msi_init(&e->pdev, 1, true, errp)) return false;
    e->mmio = qs_memory_region_new_io("edu-mmio", 1 << 20, &edu_ops, e);
    if (!qs_pci_register_bar(&e->pdev, 0, 0, e->mmio, errp)) {
        qs_memory_region_unref(e->mmio);
        return false;
    }
    e->dma_timer = qs_timer_new(qs_loop_main(), QS_CLOCK_VIRTUAL, "edu-dma", dma_timer, e);
    return true;
}

static void edu_unrealize(QsDevice *dev)
{
    Edu *e = (Edu *)dev;
    qs_timer_free(e->dma_timer);
    qs_memory_region_unref(e->mmio);
}

static void edu_reset(QsDevice *dev)
{
    Edu *e = (Edu *)dev;
    qs_bql_lock();
    qs_timer_del(e->dma_timer);
    e->addr4 = e->fact = e->status = e->irq_status = 0;
    e->dma_src = e->dma_dst = e->dma_cnt = e->dma_cmd = 0;
    qs_bql_unlock();
}

static const QsPropDesc edu_props[] = {
    QS_PCI_ADDR_PROP,
    { "dma_mask", QS_PROP_UINT, "0xfffffff", "DMA address mask (default 28 bits)" },
    { NULL },
};

static const QsDeviceType edu_type = {
    .name = "edu",
    .bus = "pci",
    .desc = "educational PCI device with DMA (QEMU's edu)",
    .props = edu_props,
    .instance_size = sizeof(Edu),
    .realize = edu_realize,
    .unrealize = edu_unrealize,
    .reset = edu_reset,
};

void qs_edu_register(void)
{
    if (!qs_device_type_find(edu_type.name)) qs_device_type_register(&edu_type, NULL);
}

/* Built into the core: listed by -device help before any machine exists. */
static void __attribute__((constructor)) edu_register_at_start(void)
{
    qs_edu_register();
}
