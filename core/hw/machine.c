/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Machine creation (first cut: replaced by the hardware subsystem). */
#include <string.h>
#include "qs-internal.h"
#include "runtime.h"

bool qs_machine_init(const QsMachineConfig *cfg, GError **errp)
{
    if (strcmp(cfg->name, "virt") && strcmp(cfg->name, "none")) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "-machine %s: unsupported machine type (see -machine help)", cfg->name);
        return false;
    }
    return true;
}

void qs_machine_help(GString *out)
{
    g_string_append(out, "Supported machines are:\n"
                         "none                 empty machine\n"
                         "virt                 RISC-V VirtIO board (default)\n");
}

void qs_machine_reset(void) { }
