/* SPDX-License-Identifier: GPL-2.0-or-later */
/* NS16550A UART (registers one byte apart, as on the virt machine): transmit goes to
 * the chardev at once, received bytes wait in a FIFO; RX-data and THR-empty interrupts. */
#include <string.h>
#include "hw-internal.h"

enum {
    RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7,
    IER_RDI = 0x01, IER_THRI = 0x02,
    IIR_NO_INT = 0x01, IIR_THRI = 0x02, IIR_RDI = 0x04, IIR_FIFO = 0xc0,
    LCR_DLAB = 0x80,
    LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40,
    FCR_ENABLE = 0x01, FCR_CLEAR_RX = 0x02,
    RX_FIFO = 4096,   /* what the host may send ahead of the guest */
};

struct Uart16550 {
    QsChardev *chr;
    QsIrq *irq;
    QsMemoryRegion *mmio;
    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;
    uint16_t divider;
    bool thr_ipending;
    uint8_t rx[RX_FIFO];
    unsigned rx_head, rx_count;
};

static void update_irq(Uart16550 *u)
{
    bool rdi = (u->ier & IER_RDI) && u->rx_count;
    bool thri = (u->ier & IER_THRI) && u->thr_ipending;
    qs_irq_set(u->irq, rdi || thri);
}

static uint8_t iir(Uart16550 *u)
{
    uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
    if ((u->ier & IER_RDI) && u->rx_count) return IIR_RDI | fifo;
    if ((u->ier & IER_THRI) && u->thr_ipending) return IIR_THRI | fifo;
    return IIR_NO_INT | fifo;
}

static QsMemTxResult uart_read(void *opaque, uint64_t addr, uint64_t *val, unsigned size,
                               QsMemTxAttrs attrs)
{
    Uart16550 *u = opaque;
    uint8_t v = 0;
    switch (addr & 7) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) { v = u->divider & 0xff; break; }
        if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % RX_FIFO;
            u->rx_count--;
        }
        u->lsr &= ~LSR_OE;
        break;
    case IER:
        v = (u->lcr & LCR_DLAB) ? u->divider >> 8 : u->ier;
        break;
    case IIR_FCR:
        v = iir(u);
        if ((v & 0x0f) == IIR_THRI) u->thr_ipending = false;   /* reading clears it */
        break;
    case LCR: v = u->lcr; break;
    case MCR: v = u->mcr; break;
    case LSR:
        v = u->lsr | LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
        u->lsr &= ~LSR_OE;
        break;
    case MSR: v = u->msr; break;
    case SCR: v = u->scr; break;
    }
    update_irq(u);
    *val = v;
    return QS_MEMTX_OK;
}

static QsMemTxResult uart_write(void *opaque, uint64_t addr, uint64_t val, unsigned size,
                                QsMemTxAttrs attrs)
{
    Uart16550 *u = opaque;
    uint8_t v = val;
    switch (addr & 7) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) { u->divider = (u->divider & 0xff00) | v; break; }
        if (u->chr) qs_chardev_write(u->chr, &v, 1);
        u->thr_ipending = true;   /* sent at once: THR is empty again */
        break;
    case IER:
        if (u->lcr & LCR_DLAB) { u->divider = (u->divider & 0xff) | v << 8; break; }
        if (!(u->ier & IER_THRI) && (v & IER_THRI)) u->thr_ipending = true;
        u->ier = v & 0x0f;
        break;
    case IIR_FCR:
        if (v & FCR_CLEAR_RX) u->rx_count = u->rx_head = 0;
        u->fcr = v & 0xc9;
        break;
    case LCR: u->lcr = v; break;
    case MCR: u->mcr = v & 0x1f; break;
    case SCR: u->scr = v; break;
    default: break;   /* LSR, MSR: read-only */
    }
    update_irq(u);
    return QS_MEMTX_OK;
}

static const QsMemOps uart_ops = {
    .read = uart_read,
    .write = uart_write,
    .endianness = QS_ENDIAN_LITTLE,
    .valid = { .min = 1, .max = 8 },
    .impl = { .min = 1, .max = 1 },
};

static void uart_receive(void *opaque, const uint8_t *buf, size_t len)
{
    Uart16550 *u = opaque;
    qs_bql_lock();
    for (size_t i = 0; i < len; i++) {
        if (u->rx_count == RX_FIFO) {
            u->lsr |= LSR_OE;   /* overrun: the byte is lost */
            continue;
        }
        u->rx[(u->rx_head + u->rx_count) % RX_FIFO] = buf[i];
        u->rx_count++;
    }
    update_irq(u);
    qs_bql_unlock();
}

static const QsChardevHandlers uart_handlers = { .read = uart_receive };

void qs_uart16550_reset(Uart16550 *u)
{
    u->ier = u->lcr = u->mcr = u->scr = u->fcr = 0;
    u->lsr = LSR_THRE | LSR_TEMT;
    u->msr = 0xb0;   /* DCD, DSR, CTS */
    u->divider = 12;
    u->thr_ipending = false;
    u->rx_count = u->rx_head = 0;
    update_irq(u);
}

Uart16550 *qs_uart16550_new(QsChardev *chr, QsIrq *irq, QsMemoryRegion **mmio)
{
    Uart16550 *u = g_new0(Uart16550, 1);
    u->chr = chr;
    u->irq = irq;
    qs_uart16550_reset(u);
    u->mmio = qs_memory_region_new_io("serial", 0x100, &uart_ops, u);
    if (chr) qs_chardev_set_handlers(chr, NULL, &uart_handlers, u);
    *mmio = u->mmio;
    return u;
}

void qs_uart16550_free(Uart16550 *u)
{
    if (!u) return;
    if (u->chr) qs_chardev_set_handlers(u->chr, NULL, NULL, NULL);
    qs_memory_region_unref(u->mmio);
    g_free(u);
}
