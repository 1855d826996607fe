/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "vhdx": a strided input (harness.h: 8 KiB of every 64 KiB of the image) is
 * opened as vhdx (headers, region table, metadata, BAT, log) and driven like the others. */
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
    return bf_run_strided(data, size, "vhdx");
}
