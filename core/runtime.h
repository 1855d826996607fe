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

/* Run state, as QEMU's: "prelaunch" (before start, or -S until the first cont),
 * "running", "paused" (after stop), "shutdown".  The virtual clock runs only while
 * "running".  Call these from the main loop's thread. */
const char *qs_runstate_name(void);
bool qs_runstate_is_running(void);
/* stop: if running, pause (notifiers see false) and emit the QMP STOP event.
 * cont: if not running, run (notifiers see true) and emit RESUME. */
void qs_vm_stop(void);
void qs_vm_start(void);
/* Notifiers run on every running <-> stopped change (e.g. vCPUs pause/resume). */
typedef void (*QsRunstateNotify)(bool running, void *opaque);
void qs_runstate_notifier_add(QsRunstateNotify fn, void *opaque);
void qs_runstate_notifier_remove(QsRunstateNotify fn, void *opaque);
/* True once a shutdown was requested (e.g. vCPU threads stop). */
bool qs_shutdown_requested(void);

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
