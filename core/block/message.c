/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Where the drivers' check/repair/corruption messages go: stderr, as qemu-img prints
 * them, unless the embedding program (a fuzz harness, a GUI) takes them. */
#include <stdarg.h>
#include <stdio.h>
#include "qs/block.h"

static QsBlockMessageFn handler;
static void *handler_opaque;

void qs_block_set_message_handler(QsBlockMessageFn fn, void *opaque)
{
    handler = fn;
    handler_opaque = opaque;
}

void qs_block_message(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (handler) handler(fmt, ap, handler_opaque);
    else vfprintf(stderr, fmt, ap);
    va_end(ap);
}
