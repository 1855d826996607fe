/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The module loader as main(), QMP and tests see it: find modules on the search path,
 * validate their descriptors, load them with options, list them. */
#ifndef QS_MODULE_LOADER_H
#define QS_MODULE_LOADER_H

#include "qs/module.h"

/* What is known about one module file without running any of its code. */
typedef struct QsModuleInfo {
    char *path;
    const QsModuleDesc *desc;   /* valid while the info lives */
    bool loaded;
    GModule *gmod;
} QsModuleInfo;

/* Directories searched, in order: $QS_MODULE_DIR (colon-separated), the build tree's
 * modules/ (only when this binary runs from the build tree), the installed module dir. */
char **qs_module_search_path(void);

/* Every valid module found, first occurrence of each name wins; sorted by name.
 * Files that fail validation are skipped here (loading them by path names the fault). */
GPtrArray *qs_module_scan(void);
void qs_module_info_free(QsModuleInfo *info);

/* Load "NAME[,k=v...]" or "PATH.so[,k=v...]": validate, load dependencies found on the
 * search path, parse options against the descriptor, run init; on failure every
 * registration it made is undone and the module is closed. */
bool qs_module_load(const char *spec, GError **errp);
bool qs_module_is_loaded(const char *name);
/* Unload every module in reverse load order, running exit and undoing registrations. */
void qs_module_unload_all(void);

/* Text for -plugin help and -plugin NAME,help. */
void qs_module_help(GString *out);
bool qs_module_help_options(const char *name, GString *out, GError **errp);

/* Loaded modules, in load order (array of const QsModuleDesc *, with paths). */
typedef struct QsLoadedModule {
    const QsModuleDesc *desc;
    const char *path;
    GPtrArray *provided;   /* "kind:name" strings actually registered */
} QsLoadedModule;
GPtrArray *qs_module_loaded_list(void);

/* Validate a descriptor fetched from a file; message names the path and the field. */
bool qs_module_desc_check(const QsModuleDesc *d, const char *path, GError **errp);

#endif
