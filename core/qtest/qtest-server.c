/* SPDX-License-Identifier: GPL-2.0-or-later */
/* -qtest CHARDEV: puts the virtual clock in manual mode (no CPU runs) and serves the
 * qtest protocol on the chardev, against system memory. */
#include "qtest-internal.h"
#include "qs/chardev.h"
#include "qs/evloop.h"
#include "qs-internal.h"
#include "runtime.h"

static QsChardev *chr;
static QsQtest *session;

static void send_text(void *opaque, const char *text, size_t len)
{
    qs_chardev_write(chr, text, len);
}

static void on_read(void *opaque, const uint8_t *buf, size_t len)
{
    qs_qtest_feed(session, buf, len);
}

static void on_event(void *opaque, QsChardevEvent event)
{
    qs_qtest_reset_connection(session);
}

static const QsChardevHandlers handlers = { .read = on_read, .event = on_event };

bool qs_qtest_start(const char *spec, GError **errp)
{
    if (chr) {
        g_set_error(errp, QS_ERROR, QS_ERROR_FAILED,
                    "only one qtest chardev is supported (already on '%s')", qs_chardev_spec(chr));
        return false;
    }
    chr = qs_chardev_open(spec, "qtest", errp);
    if (!chr) return false;
    qs_clock_set_manual(true);
    session = qs_qtest_new(qs_address_space_memory(), send_text, NULL);
    qs_chardev_set_handlers(chr, NULL, &handlers, NULL);
    return true;
}

bool qs_qtest_enabled(void)
{
    return chr != NULL;
}
