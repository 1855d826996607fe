/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Device type registry: modules and the core register types with typed properties;
 * -device TYPE,prop=val creates them, -device help and -device TYPE,help list them. */
#ifndef QS_DEVICE_H
#define QS_DEVICE_H

#include "qs/opts.h"

typedef struct QsDevice QsDevice;

typedef struct QsDeviceType {
    const char *name;
    const char *bus;           /* "pci", "sysbus", or NULL for no bus */
    const char *desc;
    const QsPropDesc *props;   /* NULL-name-terminated, or NULL */
    size_t instance_size;      /* >= sizeof(QsDevice); the QsDevice (or bus device
                                * that starts with one) comes first */
    bool (*realize)(QsDevice *dev, GError **errp);
    void (*unrealize)(QsDevice *dev);
    void (*reset)(QsDevice *dev);
} QsDeviceType;

struct QsDevice {
    const QsDeviceType *type;
    char *id;
    QsOpts *props;
    bool realized;
};

/* Register a type.  During a module's init the registration is owned by that module
 * and undone if the load fails or the module is unloaded. */
bool qs_device_type_register(const QsDeviceType *type, GError **errp);
const QsDeviceType *qs_device_type_find(const char *name);
/* All types sorted by name (container owns nothing but the array). */
GPtrArray *qs_device_type_list(void);

/* Create from "TYPE,prop=val,id=x" and plug into its bus (which realizes it). */
QsDevice *qs_device_create(const char *spec, GError **errp);
void qs_device_destroy(QsDevice *dev);
QsDevice *qs_device_find(const char *id);
void qs_device_reset_all(void);

/* Buses hook device creation: plug is called instead of type->realize and must call it.
 * Core-internal users (PCI) register a bus; modules do not. */
typedef struct QsBusOps {
    const char *name;
    bool (*plug)(QsDevice *dev, GError **errp);
    void (*unplug)(QsDevice *dev);
} QsBusOps;
void qs_bus_register(const QsBusOps *ops);

#endif
