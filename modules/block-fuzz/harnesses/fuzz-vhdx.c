/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "vhdx": an input is opened as vhdx (headers, region table, metadata, BAT,
 * log search and replay) and driven through read, check and writes. */
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
    return bf_run_image(data, size, "vhdx");
}
