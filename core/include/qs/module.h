/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The module interface: each module exports one descriptor made by QS_MODULE_DEFINE.
 * The core checks it before running any of the module's code. */
#ifndef QS_MODULE_H
#define QS_MODULE_H

#include <gmodule.h>
#include "qs/opts.h"

/*
 * ABI version of everything in core/include/qs/.  Bump QS_ABI_MINOR when something is
 * added compatibly (a new registry, a new function); bump QS_ABI_MAJOR (and reset minor)
 * when anything a built module relies on changes: a struct layout, a signature, a
 * registry's semantics.  A module built for a newer minor or another major is refused.
 * History: 1.0 loader, options, device/TCG-pass/migration registries; 1.1 adds the
 * event loop, chardev, QMP, memory, IRQ, PCI, machine, block and TCG IR headers.
 * 1.2 adds event-loop samplers, qs_loop_current, qs_loop_watch and qs_loop_flush(_wait).
 *
 * The descriptor is read before any function of the module is called; a module must
 * not use ELF constructors, which the dynamic linker would run before that check.
 */
#define QS_ABI_MAJOR 1
#define QS_ABI_MINOR 2

#define QS_MODULE_MAGIC 0x51534d44u /* "QSMD" */
#define QS_MODULE_DESC_SYMBOL "qs_module_descriptor"

typedef struct QsModule QsModule;

typedef struct QsModuleDesc {
    uint32_t magic;
    uint16_t abi_major;
    uint16_t abi_minor;
    const char *name;
    const char *version;
    const char *license;
    const char *description;
    const char *const *depends;   /* NULL-terminated module names, or NULL */
    const QsPropDesc *options;    /* NULL-name-terminated, or NULL: no options */
    /* What the module registers, "kind:name" (device:edu, qmp:query-x, observer:x,
     * tcg-pass:x, migration:x, block:x); NULL-terminated.  Registering anything not
     * listed makes the load fail, so `-plugin help` never lies. */
    const char *const *provides;
    bool (*init)(QsModule *mod, const QsOpts *opts, GError **errp);
    void (*exit)(QsModule *mod);
} QsModuleDesc;

/* Define the module's descriptor.  Example:
 *   QS_MODULE_DEFINE(.name = "hello", .version = "1.0", .license = "GPL-2.0-or-later",
 *                    .description = "says hello", .init = hello_init);
 */
#define QS_MODULE_DEFINE(...)                                              \
    G_MODULE_EXPORT const QsModuleDesc qs_module_descriptor = {            \
        .magic = QS_MODULE_MAGIC,                                          \
        .abi_major = QS_ABI_MAJOR,                                         \
        .abi_minor = QS_ABI_MINOR,                                         \
        __VA_ARGS__                                                        \
    }

#define QS_STRV(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* The module's own name, and per-module data a module may keep. */
const char *qs_module_name(const QsModule *mod);
void qs_module_set_opaque(QsModule *mod, void *opaque);
void *qs_module_get_opaque(const QsModule *mod);

#endif
