/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Interrupt lines: a QsIrq calls its handler with a level; devices export named lists of
 * input and output lines ("GPIOs") under a path so qtest can drive and watch them. */
#ifndef QS_IRQ_H
#define QS_IRQ_H

#include <glib.h>
#include <stdbool.h>

typedef struct QsIrq QsIrq;
typedef void (*QsIrqHandler)(void *opaque, int n, int level);

QsIrq *qs_irq_new(QsIrqHandler handler, void *opaque, int n);
void qs_irq_free(QsIrq *irq);
/* Set the level (NULL irq: nothing happens, as for an unconnected output). */
void qs_irq_set(QsIrq *irq, int level);
static inline void qs_irq_raise(QsIrq *irq) { qs_irq_set(irq, 1); }
static inline void qs_irq_lower(QsIrq *irq) { qs_irq_set(irq, 0); }

/* Device lines.  path is the device's QOM-like path ("/machine/plic",
 * "/machine/peripheral/ID"); name NULL is the unnamed list ("unnamed-gpio-in").
 * Inputs: the device's QsIrq objects.  Outputs: the device's slots (QsIrq * it calls
 * qs_irq_set on), which qs_gpio_connect fills and interception wraps. */
void qs_gpio_add_in(const char *path, const char *name, QsIrq **in, int n);
void qs_gpio_add_out(const char *path, const char *name, QsIrq **out_slots, int n);
/* Forget everything registered under path (device removed). */
void qs_gpio_remove(const char *path);
QsIrq *qs_gpio_get_in(const char *path, const char *name, int n);
bool qs_gpio_connect_out(const char *path, const char *name, int n, QsIrq *target,
                         GError **errp);

/* Resolve a path as QEMU does: the full path, or a partial path that names the end of
 * exactly one registered path ("plic", "peripheral/e1").  Returns the full path. */
const char *qs_gpio_resolve(const char *path);

/* qtest interception: handler(opaque, n, level) sees every level set on the device's
 * inputs (all lists, numbered in registration order) or on its named output list, and
 * the line keeps working (the original target still gets the level). */
typedef enum { QS_GPIO_INTERCEPT_OK, QS_GPIO_UNKNOWN_DEVICE, QS_GPIO_NONE } QsGpioInterceptResult;
QsGpioInterceptResult qs_gpio_intercept_in(const char *path, QsIrqHandler handler,
                                           void *opaque);
QsGpioInterceptResult qs_gpio_intercept_out(const char *path, const char *name,
                                            QsIrqHandler handler, void *opaque);
/* Undo every interception (qtest connection closed). */
void qs_gpio_intercept_clear(void);

#endif
