/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test shared object that is not a qemu-slim module: no descriptor. */
#include <gmodule.h>

G_MODULE_EXPORT int test_no_desc_value(void);
G_MODULE_EXPORT int test_no_desc_value(void) { return 42; }
