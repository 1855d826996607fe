/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target "parallels": an input is opened as parallels (header, BAT, format
 * extension and dirty bitmaps) and driven through read, check and writes. */
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
    return bf_run_image(data, size, "parallels");
}
