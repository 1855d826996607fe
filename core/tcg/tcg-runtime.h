/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TCG entry points main() drives: -d/-D logging, starting the harts on the machine
 * (after qs_machine_init), and stopping them before modules unload. */
#ifndef QS_TCG_RUNTIME_H
#define QS_TCG_RUNTIME_H

#include <glib.h>
#include <stdbool.h>
#include "runtime.h"

/* -d ITEMS (op, op_opt, in_asm) and -D FILE. */
bool qs_tcg_set_log(const char *items, GError **errp);
bool qs_tcg_set_logfile(const char *path, GError **errp);
/* Create the harts for cfg (-smp, -cpu rv64[,ztso=on], -accel tcg[,thread=multi|single])
 * on the current machine and start their threads; they run while the VM runs.  Without
 * a -kernel the built-in demo payload is placed at the start of RAM.  Does nothing under
 * qtest. */
bool qs_tcg_start(const QsMachineConfig *cfg, GError **errp);
/* Stop and join every hart thread, free the TB cache (after the main loop ends). */
void qs_tcg_stop(void);

#endif
