/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The qtest protocol processor, independent of its transport: request lines in, reply
 * lines and asynchronous "IRQ raise/lower N" lines out through a send callback. */
#ifndef QS_QTEST_INTERNAL_H
#define QS_QTEST_INTERNAL_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include "qs/memory.h"

/* Largest data a read/write/b64read/b64write moves in one command, the largest memset,
 * and the longest request line (a hex write of the largest size, plus the words). */
#define QS_QTEST_MAX_DATA (16u << 20)
#define QS_QTEST_MAX_MEMSET ((uint64_t)1 << 30)
#define QS_QTEST_MAX_LINE (2 * QS_QTEST_MAX_DATA + 256)

typedef struct QsQtest QsQtest;
/* text is one or more complete lines ending in '\n'. */
typedef void (*QsQtestSendFn)(void *opaque, const char *text, size_t len);

/* as: the address space accessed (system memory for -qtest). */
QsQtest *qs_qtest_new(QsAddressSpace *as, QsQtestSendFn send, void *opaque);
void qs_qtest_free(QsQtest *q);
/* Bytes from the client: complete lines are executed in order, the rest waits. */
void qs_qtest_feed(QsQtest *q, const uint8_t *buf, size_t len);
/* Execute one request line (without its '\n'). */
void qs_qtest_command(QsQtest *q, const char *line);
/* Connection opened/closed: IRQ levels forgotten; closing also ends interceptions. */
void qs_qtest_reset_connection(QsQtest *q);

#endif
