/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "raw": an input is opened without -f, so every driver's probe runs and
 * the probe's winner (raw for anything unrecognised) is driven like qemu-img would. */
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
    return bf_run_image(data, size, NULL);
}
