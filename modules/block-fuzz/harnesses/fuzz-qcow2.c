/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "qcow2": an input is opened as qcow2 (header, extensions, L1/L2 tables,
 * refcounts, snapshots, compressed clusters) and driven through read, check and repair. */
#include "harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    bf_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return bf_run_image(data, size, "qcow2");
}
