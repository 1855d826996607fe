/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PCI (Express) devices and the bus: 4 KiB config space with a capability list, BARs
 * mapped into the bus's memory window, INTx, MSI, bus-master DMA with a requester id. */
#ifndef QS_PCI_H
#define QS_PCI_H

#include "qs/device.h"
#include "qs/irq.h"
#include "qs/memory.h"

#define QS_PCI_CONFIG_SIZE 4096
#define QS_PCI_NUM_BARS 6

/* Standard header offsets and bits */
#define QS_PCI_VENDOR_ID 0x00
#define QS_PCI_DEVICE_ID 0x02
#define QS_PCI_COMMAND 0x04
#define   QS_PCI_COMMAND_IO 0x1
#define   QS_PCI_COMMAND_MEMORY 0x2
#define   QS_PCI_COMMAND_MASTER 0x4
#define   QS_PCI_COMMAND_INTX_DISABLE 0x400
#define QS_PCI_STATUS 0x06
#define   QS_PCI_STATUS_INTERRUPT 0x08
#define   QS_PCI_STATUS_CAP_LIST 0x10
#define QS_PCI_REVISION_ID 0x08
#define QS_PCI_CLASS_PROG 0x09
#define QS_PCI_CLASS_DEVICE 0x0a
#define QS_PCI_HEADER_TYPE 0x0e
#define QS_PCI_BASE_ADDRESS_0 0x10
#define   QS_PCI_BASE_ADDRESS_MEM_TYPE_64 0x04
#define   QS_PCI_BASE_ADDRESS_MEM_PREFETCH 0x08
#define QS_PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define QS_PCI_SUBSYSTEM_ID 0x2e
#define QS_PCI_CAPABILITY_LIST 0x34
#define QS_PCI_INTERRUPT_LINE 0x3c
#define QS_PCI_INTERRUPT_PIN 0x3d

#define QS_PCI_CAP_ID_MSI 0x05
#define QS_PCI_CAP_ID_MSIX 0x11
#define QS_PCI_MSI_FLAGS 2           /* offsets inside the MSI capability */
#define   QS_PCI_MSI_FLAGS_ENABLE 0x1
#define   QS_PCI_MSI_FLAGS_64BIT 0x80
#define QS_PCI_MSI_ADDRESS_LO 4
#define QS_PCI_MSI_ADDRESS_HI 8
#define QS_PCI_MSI_DATA_32 8
#define QS_PCI_MSI_DATA_64 12

#define QS_PCI_DEVFN(slot, fn) ((((slot) & 0x1f) << 3) | ((fn) & 7))
#define QS_PCI_SLOT(devfn) (((devfn) >> 3) & 0x1f)
#define QS_PCI_FUNC(devfn) ((devfn) & 7)

typedef struct QsPciBus QsPciBus;

typedef struct QsPciBar {
    QsMemoryRegion *mr;     /* NULL: BAR not implemented */
    uint64_t size;
    uint8_t type;           /* low BAR bits: MEM_TYPE_64, MEM_PREFETCH */
    uint64_t addr;          /* mapped bus address, or QS_PCI_BAR_UNMAPPED */
} QsPciBar;
#define QS_PCI_BAR_UNMAPPED UINT64_MAX

/* Every PCI device's instance struct starts with this (which starts with QsDevice).
 * Its QsDeviceType has bus "pci" and includes QS_PCI_ADDR_PROP in its props. */
typedef struct QsPciDevice {
    QsDevice qdev;
    QsPciBus *bus;
    int devfn;
    char name[32];          /* "TYPE 00:02.0", for messages */
    uint8_t config[QS_PCI_CONFIG_SIZE];
    uint8_t wmask[QS_PCI_CONFIG_SIZE];    /* writable bits */
    uint8_t w1cmask[QS_PCI_CONFIG_SIZE];  /* write-1-to-clear bits */
    uint16_t next_cap;                    /* capability allocator */
    QsPciBar bars[QS_PCI_NUM_BARS];
    QsAddressSpace *dma_as;               /* where its DMA goes (IOMMU or memory) */
    int intx_level;
    bool intx_on_bus;                     /* counted in the bus's wired-OR */
    uint8_t msi_cap;                      /* 0: no MSI */
    uint8_t msix_cap;                     /* 0: no MSI-X */
    /* config write hook: runs after the standard handling */
    void (*config_written)(struct QsPciDevice *pdev, uint32_t addr, uint32_t val,
                           unsigned size);
} QsPciDevice;

/* The "addr" property a PCI device type declares: "SLOT[.FN]" in hex as QEMU. */
#define QS_PCI_ADDR_PROP { "addr", QS_PROP_STRING, NULL, "slot[.function] on the PCI bus (hex)" }

/* ---- the bus (created by the machine) ---- */

/* mem: the container BARs are mapped into (bus addresses).  intx: the 4 machine lines
 * INTA..INTD of slot 0 (swizzled per slot as the PCIe host bridge does), may be NULL. */
QsPciBus *qs_pci_bus_new(const char *name, QsMemoryRegion *mem, QsIrq *intx[4]);
void qs_pci_bus_free(QsPciBus *bus);
QsPciBus *qs_pci_root_bus(void);   /* the machine's bus (the "pci" plug target) */
void qs_pci_set_root_bus(QsPciBus *bus);
QsMemoryRegion *qs_pci_bus_memory(QsPciBus *bus);
/* Give each device a DMA address space (an IOMMU's per-device space).  Devices plugged
 * later use it; without one, DMA goes to system memory. */
typedef QsAddressSpace *(*QsPciIommuFn)(void *opaque, QsPciBus *bus, int devfn);
void qs_pci_bus_set_iommu(QsPciBus *bus, QsPciIommuFn fn, void *opaque);
QsPciDevice *qs_pci_find_device(QsPciBus *bus, int devfn);
void qs_pci_bus_reset(QsPciBus *bus);
/* Plug a device created outside -device (e.g. the host bridge); devfn -1: next free. */
bool qs_pci_plug_device(QsPciBus *bus, QsPciDevice *pdev, int devfn, GError **errp);
void qs_pci_unplug_device(QsPciDevice *pdev);
/* Register the "pci" bus type with the device registry (done by the machine). */
void qs_pci_register_bus_type(void);

/* ---- config space (device side) ---- */

void qs_pci_config_set_ids(QsPciDevice *pdev, uint16_t vendor, uint16_t device,
                           uint32_t class_code, uint8_t revision);
/* Register BAR n (0..5; a 64-bit BAR uses n and n+1).  size: a power of two >= 16. */
bool qs_pci_register_bar(QsPciDevice *pdev, int n, uint8_t type, QsMemoryRegion *mr,
                         GError **errp);
/* Append a capability of size bytes; returns its offset or 0 with errp set. */
uint8_t qs_pci_add_capability(QsPciDevice *pdev, uint8_t cap_id, uint8_t size,
                              GError **errp);
uint8_t qs_pci_find_capability(QsPciDevice *pdev, uint8_t cap_id);

/* Accesses as the host bridge makes them (size 1, 2 or 4, little-endian). */
uint32_t qs_pci_config_read(QsPciDevice *pdev, uint32_t addr, unsigned size);
void qs_pci_config_write(QsPciDevice *pdev, uint32_t addr, uint32_t val, unsigned size);

/* ---- interrupts ---- */

void qs_pci_set_irq(QsPciDevice *pdev, int level);          /* INTx, pin from config */
bool qs_pci_msi_init(QsPciDevice *pdev, unsigned nr_vectors, bool is_64bit, GError **errp);
bool qs_pci_msi_enabled(QsPciDevice *pdev);
/* Send vector: a 32-bit write of the message data to the message address through the
 * device's DMA space.  A failed write is logged and returned, never fatal. */
QsMemTxResult qs_pci_msi_notify(QsPciDevice *pdev, unsigned vector);

/* ---- DMA ---- */

uint16_t qs_pci_requester_id(const QsPciDevice *pdev);
/* Through dma_as with the requester id; QS_MEMTX_ACCESS_DENIED if bus mastering is
 * disabled in the command register. */
QsMemTxResult qs_pci_dma_read(QsPciDevice *pdev, uint64_t addr, void *buf, uint64_t len);
QsMemTxResult qs_pci_dma_write(QsPciDevice *pdev, uint64_t addr, const void *buf,
                               uint64_t len);

/* ---- the PCIe ECAM host bridge ---- */

/* An MMIO region decoding ECAM (bus << 20 | devfn << 12 | reg) onto bus (bus 0 only;
 * other buses read as all-ones). */
QsMemoryRegion *qs_pci_ecam_new(QsPciBus *bus, uint64_t size);

#endif
