/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Dispatch of accesses through an address space's flat view: RAM copies, MMIO split or
 * widened to the sizes a device implements, IOMMU translation page by page, DMA. */
#include <string.h>
#include "memory-internal.h"

#define MAX_IOMMU_DEPTH 8

static uint64_t size_mask(unsigned size)
{
    return size >= 8 ? UINT64_MAX : (((uint64_t)1 << (size * 8)) - 1);
}

static uint64_t bytes_to_val(const uint8_t *b, unsigned size, QsEndian e)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++) {
        unsigned sh = e == QS_ENDIAN_LITTLE ? i : size - 1 - i;
        v |= (uint64_t)b[i] << (sh * 8);
    }
    return v;
}

static void val_to_bytes(uint8_t *b, unsigned size, uint64_t v, QsEndian e)
{
    for (unsigned i = 0; i < size; i++) {
        unsigned sh = e == QS_ENDIAN_LITTLE ? i : size - 1 - i;
        b[i] = v >> (sh * 8);
    }
}

static QsMemTxResult io_read1(QsMemoryRegion *mr, uint64_t off, uint64_t *v, unsigned sz,
                              QsMemTxAttrs attrs)
{
    *v = 0;
    if (!mr->ops->read) return QS_MEMTX_OK;
    QsMemTxResult r = mr->ops->read(mr->opaque, off, v, sz, attrs);
    *v &= size_mask(sz);
    return r;
}

/* One access of a size the bus accepted, carried out in the sizes the device
 * implements.  Values are in the region's byte order. */
static QsMemTxResult io_access_sized(QsMemoryRegion *mr, uint64_t off, uint64_t *val,
                                     unsigned size, bool write, QsMemTxAttrs attrs)
{
    const QsMemOps *ops = mr->ops;
    bool le = ops->endianness == QS_ENDIAN_LITTLE;
    QsMemTxResult r = QS_MEMTX_OK;

    if (size < mr->impl_min) {
        /* widen: access the aligned implemented unit that holds the bytes */
        unsigned w = mr->impl_min;
        uint64_t base = off & ~(uint64_t)(w - 1);
        unsigned pos = off - base;
        if (pos + size > w) return QS_MEMTX_DECODE_ERROR;   /* straddles two units */
        unsigned sh = le ? pos * 8 : (w - pos - size) * 8;
        uint64_t cur;
        r |= io_read1(mr, base, &cur, w, attrs);
        if (!write) {
            *val = (cur >> sh) & size_mask(size);
            return r;
        }
        cur &= ~(size_mask(size) << sh);
        cur |= (*val & size_mask(size)) << sh;
        if (ops->write) r |= ops->write(mr->opaque, base, cur, w, attrs);
        return r;
    }
    unsigned a = MIN(size, mr->impl_max);
    if (!write) *val = 0;
    for (unsigned i = 0; i < size; i += a) {
        unsigned sh = le ? i * 8 : (size - a - i) * 8;
        if (write) {
            if (ops->write) {
                r |= ops->write(mr->opaque, off + i, (*val >> sh) & size_mask(a), a, attrs);
            }
        } else {
            uint64_t part;
            r |= io_read1(mr, off + i, &part, a, attrs);
            *val |= part << sh;
        }
    }
    return r;
}

/* A byte range inside one MMIO region: cut into the largest accesses the bus takes. */
static QsMemTxResult io_access(QsMemoryRegion *mr, uint64_t off, uint8_t *buf, uint64_t len,
                               bool write, QsMemTxAttrs attrs)
{
    QsMemTxResult res = QS_MEMTX_OK;
    while (len) {
        unsigned sz = mr->valid_max;
        while (sz > len) sz >>= 1;
        if (!mr->ops->valid.unaligned) {
            while (sz > 1 && (off & (sz - 1))) sz >>= 1;
        }
        QsMemTxResult r;
        uint64_t v = 0;
        if (sz < mr->valid_min || (!mr->ops->valid.unaligned && (off & (sz - 1)))) {
            r = QS_MEMTX_DECODE_ERROR;
            if (!write) memset(buf, 0, sz);
        } else {
            if (write) v = bytes_to_val(buf, sz, mr->ops->endianness);
            qs_bql_lock();
            r = io_access_sized(mr, off, &v, sz, write, attrs);
            qs_bql_unlock();
            if (!write) val_to_bytes(buf, sz, v, mr->ops->endianness);
        }
        res |= r;
        off += sz;
        buf += sz;
        len -= sz;
    }
    return res;
}

/* Translate through an IOMMU region.  Returns the bytes (<= len) covered by the
 * translation, and the target address space and address, or 0 on a fault. */
static uint64_t iommu_translate(QsMemoryRegion *mr, uint64_t off, uint64_t len, bool write,
                                QsMemTxAttrs attrs, QsAddressSpace **tas, uint64_t *taddr,
                                QsMemTxResult *res)
{
    QsIommuTlbEntry e = { 0 };
    QsIommuPerm want = write ? QS_IOMMU_WO : QS_IOMMU_RO;
    mr->iommu_ops->translate(mr->opaque, off, want, attrs, &e);
    uint64_t in_page = off & e.addr_mask;
    uint64_t rem = e.addr_mask - in_page + 1;   /* 0 when the mask is the whole space */
    uint64_t l = (rem == 0 || rem > len) ? len : rem;
    if (!(e.perm & want) || !e.target_as) {
        *res = QS_MEMTX_ACCESS_DENIED;
        *tas = NULL;
        return l;
    }
    *res = QS_MEMTX_OK;
    *tas = e.target_as;
    *taddr = (e.translated_addr & ~e.addr_mask) | in_page;
    return l;
}

static QsMemTxResult as_rw(QsAddressSpace *as, uint64_t addr, QsMemTxAttrs attrs,
                           uint8_t *buf, uint64_t len, bool write, bool stop_on_error,
                           int depth)
{
    QsMemTxResult res = QS_MEMTX_OK;
    if (depth > MAX_IOMMU_DEPTH) {
        if (!write) memset(buf, 0, len);
        return QS_MEMTX_DECODE_ERROR;
    }
    while (len) {
        FlatView *fv = flatview_get(as);
        uint64_t next = 0, l;
        QsMemTxResult r = QS_MEMTX_OK;
        const FlatRange *fr = flatview_lookup(fv, addr, &next);
        if (!fr) {
            l = (next > addr && next - addr < len) ? next - addr : len;
            if (!write) memset(buf, 0, l);
            r = QS_MEMTX_DECODE_ERROR;
        } else {
            uint64_t span = fr->last - addr;   /* bytes after addr in this range */
            l = span < len - 1 ? span + 1 : len;
            uint64_t off = fr->offset + (addr - fr->start);
            QsMemoryRegion *mr = fr->mr;
            switch (mr->kind) {
            case MR_RAM:
                if (write) memcpy((uint8_t *)mr->host + off, buf, l);
                else memcpy(buf, (uint8_t *)mr->host + off, l);
                break;
            case MR_IO:
                r = io_access(mr, off, buf, l, write, attrs);
                break;
            case MR_IOMMU: {
                QsAddressSpace *tas;
                uint64_t taddr = 0;
                l = iommu_translate(mr, off, l, write, attrs, &tas, &taddr, &r);
                if (tas) {
                    r = as_rw(tas, taddr, attrs, buf, l, write, stop_on_error, depth + 1);
                } else if (!write) {
                    memset(buf, 0, l);
                }
                break;
            }
            default:
                g_assert_not_reached();
            }
        }
        flatview_unref(fv);
        res |= r;
        if (r && stop_on_error) return res;
        addr += l;
        buf += l;
        len -= l;
    }
    return res;
}

QsMemTxResult qs_address_space_read(QsAddressSpace *as, uint64_t addr, QsMemTxAttrs attrs,
                                    void *buf, uint64_t len)
{
    return as_rw(as, addr, attrs, buf, len, false, false, 0);
}

QsMemTxResult qs_address_space_write(QsAddressSpace *as, uint64_t addr, QsMemTxAttrs attrs,
                                     const void *buf, uint64_t len)
{
    return as_rw(as, addr, attrs, (uint8_t *)buf, len, true, false, 0);
}

QsMemTxResult qs_dma_read(QsAddressSpace *as, uint64_t addr, void *buf, uint64_t len,
                          QsMemTxAttrs attrs)
{
    return as_rw(as, addr, attrs, buf, len, false, true, 0);
}

QsMemTxResult qs_dma_write(QsAddressSpace *as, uint64_t addr, const void *buf, uint64_t len,
                           QsMemTxAttrs attrs)
{
    return as_rw(as, addr, attrs, (uint8_t *)buf, len, true, true, 0);
}

QsMemTxResult qs_address_space_load(QsAddressSpace *as, uint64_t addr, unsigned size,
                                    uint64_t *val, QsMemTxAttrs attrs)
{
    uint8_t b[8];
    g_assert(size == 1 || size == 2 || size == 4 || size == 8);
    QsMemTxResult r = qs_address_space_read(as, addr, attrs, b, size);
    *val = bytes_to_val(b, size, QS_ENDIAN_LITTLE);
    return r;
}

QsMemTxResult qs_address_space_store(QsAddressSpace *as, uint64_t addr, unsigned size,
                                     uint64_t val, QsMemTxAttrs attrs)
{
    uint8_t b[8];
    g_assert(size == 1 || size == 2 || size == 4 || size == 8);
    val_to_bytes(b, size, val, QS_ENDIAN_LITTLE);
    return qs_address_space_write(as, addr, attrs, b, size);
}

void *qs_address_space_map_ram(QsAddressSpace *as, uint64_t addr, uint64_t *len,
                               bool is_write, QsMemTxAttrs attrs)
{
    for (int depth = 0; depth <= MAX_IOMMU_DEPTH && *len; depth++) {
        FlatView *fv = flatview_get(as);
        uint64_t next;
        const FlatRange *fr = flatview_lookup(fv, addr, &next);
        void *p = NULL;
        bool again = false;
        if (fr) {
            uint64_t span = fr->last - addr;
            uint64_t l = span < *len - 1 ? span + 1 : *len;
            uint64_t off = fr->offset + (addr - fr->start);
            if (fr->mr->kind == MR_RAM) {
                p = (uint8_t *)fr->mr->host + off;
                *len = l;
            } else if (fr->mr->kind == MR_IOMMU) {
                QsAddressSpace *tas;
                QsMemTxResult r;
                uint64_t taddr = 0;
                l = iommu_translate(fr->mr, off, l, is_write, attrs, &tas, &taddr, &r);
                if (tas) {
                    as = tas;
                    addr = taddr;
                    *len = l;
                    again = true;
                }
            }
        }
        flatview_unref(fv);
        if (!again) return p;
    }
    return NULL;
}

/* ---- IOMMU notifiers ---- */

struct QsIommuNotifier {
    uint64_t start, last;
    QsIommuNotifyFlags flags;
    QsIommuNotifyFn fn;
    void *opaque;
};

static GMutex notifier_lock;

QsIommuNotifier *qs_iommu_notifier_register(QsMemoryRegion *iommu, uint64_t start,
                                            uint64_t last, QsIommuNotifyFlags flags,
                                            QsIommuNotifyFn fn, void *opaque)
{
    g_assert(iommu->kind == MR_IOMMU && start <= last && fn);
    QsIommuNotifier *n = g_new0(QsIommuNotifier, 1);
    *n = (QsIommuNotifier){ start, last, flags, fn, opaque };
    g_mutex_lock(&notifier_lock);
    iommu->notifiers = g_list_append(iommu->notifiers, n);
    g_mutex_unlock(&notifier_lock);
    return n;
}

void qs_iommu_notifier_unregister(QsMemoryRegion *iommu, QsIommuNotifier *n)
{
    g_mutex_lock(&notifier_lock);
    GList *l = g_list_find(iommu->notifiers, n);
    if (l) iommu->notifiers = g_list_delete_link(iommu->notifiers, l);
    g_mutex_unlock(&notifier_lock);
    if (l) g_free(n);
}

void qs_iommu_notify(QsMemoryRegion *iommu, const QsIommuTlbEntry *entry,
                     QsIommuNotifyFlags event)
{
    uint64_t s = entry->iova & ~entry->addr_mask;
    uint64_t l = s | entry->addr_mask;
    /* Copy the matching notifiers so callbacks may (un)register others. */
    GPtrArray *hit = g_ptr_array_new_with_free_func(g_free);
    g_mutex_lock(&notifier_lock);
    for (GList *it = iommu->notifiers; it; it = it->next) {
        QsIommuNotifier *n = it->data;
        if ((n->flags & event) && n->start <= l && s <= n->last) {
            g_ptr_array_add(hit, g_memdup2(n, sizeof(*n)));
        }
    }
    g_mutex_unlock(&notifier_lock);
    for (guint i = 0; i < hit->len; i++) {
        QsIommuNotifier *n = hit->pdata[i];
        n->fn(n->opaque, entry, event);
    }
    g_ptr_array_free(hit, TRUE);
}
