/* SPDX-License-Identifier: GPL-2.0-or-later */
/* AFL++ driver: persistent mode with a deferred fork server (set up after the block layer
 * is initialised), built with afl-clang-fast; with file arguments it replays them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <glib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef __AFL_FUZZ_TESTCASE_LEN
#error "build this driver with afl-clang-fast (it provides the persistent-mode macros)"
#endif

__AFL_FUZZ_INIT();

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            gchar *data = NULL;
            gsize len = 0;
            if (!g_file_get_contents(argv[i], &data, &len, NULL)) {
                fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[i]);
                return 1;
            }
            LLVMFuzzerTestOneInput((const uint8_t *)data, len);
            g_free(data);
        }
        return 0;
    }
    /* Everything above runs once; the fork server starts here. */
    __AFL_INIT();
    unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(10000)) {
        size_t len = (size_t)__AFL_FUZZ_TESTCASE_LEN;
        /* a heap copy of exactly len bytes, so ASan sees overruns of the input */
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
    }
    return 0;
}
