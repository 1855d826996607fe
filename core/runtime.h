/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The entry points main() drives: the event loop and its shutdown, QMP, qtest, machine
 * creation.  Each is implemented by its subsystem folder (core/loop, core/hw). */
#ifndef QS_RUNTIME_H
#define QS_RUNTIME_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/* core/loop: event loop, run state and shutdown */
void qs_evloop_init(void);
/* Run the main loop until shutdown is requested; returns the process exit status. */
int qs_main_loop_run(void);
/* Ask the main loop to stop with status (thread-safe); reason is e.g. "guest-shutdown",
 * "host-qmp-quit" (as in QEMU's SHUTDOWN event). */
void qs_request_shutdown(int status, const char *reason);
/* -S: start with the VM stopped (QMP cont resumes). */
void qs_runstate_start(bool paused);

/* core/loop: control interfaces; spec is QEMU chardev syntax ("unix:PATH[,server=on,
 * wait=off]", "tcp:HOST:PORT[,server=on,wait=off]", "stdio"). */
bool qs_qmp_start(const char *spec, GError **errp);
bool qs_qtest_start(const char *spec, GError **errp);
bool qs_qtest_enabled(void);

/* core/hw: the machine */
typedef struct QsMachineConfig {
    const char *name;        /* "virt" (default), "none" */
    const char *opts;        /* the rest of -machine's argument */
    uint64_t ram_size;       /* bytes */
    unsigned smp;
    const char *kernel;      /* -kernel, or NULL */
    const char *serial;      /* chardev spec for UART 0, or NULL for none */
    const char *cpu;         /* -cpu, or NULL */
    const char *accel;       /* -accel, or NULL */
} QsMachineConfig;

bool qs_machine_init(const QsMachineConfig *cfg, GError **errp);
void qs_machine_help(GString *out);   /* -machine help */
void qs_machine_reset(void);          /* system_reset */

#endif
