/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "vhdx": a packed input (packed.h: the image's size and its non-zero
 * extents) is opened as vhdx (headers, region table, metadata, BAT, log) and driven like
 * the others. */
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
    return bf_run_packed(data, size, "vhdx");
}
