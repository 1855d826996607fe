/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Character devices: byte streams opened from QEMU chardev syntax (stdio, file, unix and
 * tcp sockets as client or server), delivering input on a chosen event loop. */
#ifndef QS_CHARDEV_H
#define QS_CHARDEV_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "qs/evloop.h"

/*
 * Specs (QEMU's -chardev/-serial/-qmp/-qtest syntax):
 *   stdio                               read stdin, write stdout
 *   file:PATH                           write-only; PATH created/truncated
 *   unix:PATH                           connect to a listening socket (libqtest style)
 *   unix:PATH,server=on,wait=off        listen on PATH (replacing a stale socket file),
 *                                       accept one client at a time; when it goes away,
 *                                       accept the next
 *   tcp:HOST:PORT[,server=on,wait=off]  the same over TCP; empty HOST means localhost
 *                                       for a client and every address for a server;
 *                                       PORT 0 for a server picks a free port
 *                                       (qs_chardev_port tells which)
 * Flags: server / server=on|off, wait=on|off / nowait.  A server defaults to wait=on, as
 * in QEMU: qs_chardev_open then blocks until the first client connects (printing
 * "QEMU waiting for connection on: ..." to stderr).  Anything else is an error that names
 * the spec; system errors add strerror(errno).
 *
 * Use:
 *   QsChardev *chr = qs_chardev_open("unix:/tmp/s,server=on,wait=off", "qmp0", &err);
 *   qs_chardev_set_handlers(chr, qs_loop_main(), &my_handlers, me);
 *   ... read() delivers input in that loop's thread; event() says OPENED when a peer is
 *   there (also right after set_handlers if one already is) and CLOSED when it left ...
 *   qs_chardev_write(chr, buf, len);   any thread
 *   qs_chardev_close(chr);
 */

typedef struct QsChardev QsChardev;

typedef enum QsChardevEvent {
    QS_CHARDEV_OPENED,   /* a peer is connected (always for stdio/file) */
    QS_CHARDEV_CLOSED,   /* the peer went away (a server then waits for the next one) */
} QsChardevEvent;

typedef struct QsChardevHandlers {
    /* Input bytes, len >= 1.  May call write/disconnect, and close(chr) as last act. */
    void (*read)(void *opaque, const uint8_t *buf, size_t len);
    void (*event)(void *opaque, QsChardevEvent event);
} QsChardevHandlers;

/* Open from spec.  label names the chardev in messages and event-loop sources (e.g.
 * "qmp0", "serial0"); NULL uses the spec. */
QsChardev *qs_chardev_open(const char *spec, const char *label, GError **errp);

/* Deliver input and events on `loop` (NULL: the main loop).  Until called, input waits in
 * the kernel.  Handlers may be replaced; h == NULL stops reading. */
void qs_chardev_set_handlers(QsChardev *chr, QsLoop *loop, const QsChardevHandlers *h,
                             void *opaque);

/*
 * Write all of buf, from any thread.  What the peer cannot take now is queued and sent
 * from the chardev's loop in order; nothing is lost or reordered.  Returns len, or
 *   -ENOTCONN  no peer connected (the bytes are dropped, as QEMU does)
 *   -ENOBUFS   more than 64 MiB already queued for a peer that does not read
 *   -EIO etc.  the peer failed (the chardev disconnects)
 */
ssize_t qs_chardev_write(QsChardev *chr, const void *buf, size_t len);
/* Block (up to timeout_ms, -1 forever) until the queue is sent; false on timeout/error. */
bool qs_chardev_flush(QsChardev *chr, int timeout_ms);

bool qs_chardev_connected(QsChardev *chr);
/* Drop the current peer (a server then accepts the next one). */
void qs_chardev_disconnect(QsChardev *chr);
/* The label, and the spec as given. */
const char *qs_chardev_label(QsChardev *chr);
const char *qs_chardev_spec(QsChardev *chr);
/* Local TCP port of a tcp server (useful with port 0), else -1. */
int qs_chardev_port(QsChardev *chr);

/* Flush what is queued (briefly), close the peer and listener, unlink a unix server's
 * socket file, free.  Must not be called while a handler of chr runs in another thread. */
void qs_chardev_close(QsChardev *chr);

#endif
