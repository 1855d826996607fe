/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test helper: open an image read-write, write 4 KiB of one byte value, and exit without
 * closing it, as a crashed process would (the compat tests give the result to QEMU). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qs/block.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s IMAGE FORMAT OFFSET BYTE\n", argv[0]);
        return 2;
    }
    GError *err = NULL;
    qs_block_init();
    QsBlock *bs = qs_block_open(argv[1], argv[2], QS_BLOCK_RDWR, NULL, &err);
    if (!bs) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }
    uint8_t d[4096];
    memset(d, atoi(argv[4]), sizeof(d));
    int r = qs_block_pwrite(bs, strtoull(argv[3], NULL, 0), sizeof(d), d, 0);
    if (r == 0) r = qs_block_flush(bs);
    _exit(r ? 1 : 0);   /* no close: the session stays open on disk */
}
