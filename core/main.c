/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qemu-slim's command line: QEMU-style options, module loading, machine start-up.
 * Every error is one line "qemu-slim: ..." and exit status 1, as in QEMU. */
#include <stdio.h>
#include <string.h>
#include "qs/device.h"
#include "module-loader.h"
#include "qs-internal.h"
#include "runtime.h"
#include "tcg/tcg-runtime.h"

typedef struct Config {
    GPtrArray *plugins;    /* -plugin specs */
    GPtrArray *devices;    /* -device specs */
    GPtrArray *qmp;        /* -qmp specs */
    const char *qtest;
    QsMachineConfig machine;
    bool nographic;
    bool serial_set;
    bool paused;
} Config;

static void usage(void)
{
    printf("usage: qemu-slim [options]\n"
           "\n"
           "  -plugin NAME[,key=value...]  load module NAME (-plugin help lists them,\n"
           "                               -plugin NAME,help lists its options)\n"
           "  -device TYPE[,prop=value...] add a device (-device help, -device TYPE,help)\n"
           "  -M, -machine NAME[,...]      machine type (default virt; -machine help)\n"
           "  -m SIZE                      RAM size (default 128M; plain numbers are MiB)\n"
           "  -smp N                       number of harts\n"
           "  -kernel FILE                 ELF or raw image loaded into RAM\n"
           "  -cpu MODEL[,...]             CPU model and options\n"
           "  -accel NAME[,...]            accelerator (tcg, qtest)\n"
           "  -serial CHARDEV              UART backend (stdio, file:PATH, unix:..., tcp:...)\n"
           "  -nographic                   no display; serial on stdio\n"
           "  -display none                no display\n"
           "  -qmp CHARDEV                 QMP monitor (unix:PATH,server=on,wait=off)\n"
           "  -qtest CHARDEV               qtest protocol on CHARDEV (no CPU runs)\n"
           "  -S                           start stopped (QMP cont resumes)\n"
           "  -version                     print version and exit\n"
           "  -h, -help                    this text\n");
}

/* Options taking an argument; everything else is a flag or invalid. */
static const char *const with_arg[] = {
    "plugin", "device", "M", "machine", "m", "smp", "kernel", "cpu", "accel", "serial",
    "display", "qmp", "qtest", "name", "d", "D", "append", "bios", NULL
};

static bool takes_arg(const char *opt)
{
    for (int i = 0; with_arg[i]; i++) {
        if (!strcmp(with_arg[i], opt)) return true;
    }
    return false;
}

static int fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qemu-slim: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static bool is_help(const char *spec, char **name)
{
    g_autofree char *head = NULL;
    g_autofree char *rest = qs_opts_split_head(spec, &head);
    if (!strcmp(head, "help") || !strcmp(head, "?")) { *name = NULL; return true; }
    if (!strcmp(rest, "help") || !strcmp(rest, "?")) { *name = g_steal_pointer(&head); return true; }
    return false;
}

static int parse_ram(const char *arg, uint64_t *out)
{
    uint64_t v;
    /* QEMU: a plain number is MiB; a suffix gives the unit. */
    if (g_ascii_isdigit(arg[strlen(arg) - 1])) {
        if (!qs_parse_uint(arg, &v) || v > (UINT64_MAX >> 20)) return -1;
        v <<= 20;
    } else if (!qs_parse_size(arg, &v)) {
        return -1;
    }
    if (v == 0) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, Config *c)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) return fail("%s: invalid option (options start with '-')", a);
        const char *opt = a + 1 + (a[1] == '-');
        const char *arg = NULL;
        if (takes_arg(opt)) {
            if (i + 1 >= argc) return fail("%s: requires an argument", a);
            arg = argv[++i];
        }
        if (!strcmp(opt, "h") || !strcmp(opt, "help")) { usage(); exit(0); }
        else if (!strcmp(opt, "version")) {
            printf("qemu-slim version %s (module ABI %d.%d)\n", QS_VERSION,
                   QS_ABI_MAJOR, QS_ABI_MINOR);
            exit(0);
        }
        else if (!strcmp(opt, "plugin")) g_ptr_array_add(c->plugins, (gpointer)arg);
        else if (!strcmp(opt, "device")) g_ptr_array_add(c->devices, (gpointer)arg);
        else if (!strcmp(opt, "qmp")) g_ptr_array_add(c->qmp, (gpointer)arg);
        else if (!strcmp(opt, "qtest")) c->qtest = arg;
        else if (!strcmp(opt, "M") || !strcmp(opt, "machine")) {
            g_autofree char *head = NULL;
            char *rest = qs_opts_split_head(arg, &head);
            c->machine.name = g_intern_string(head);
            c->machine.opts = g_intern_string(rest);   /* lives to exit, not a leak */
            g_free(rest);
        }
        else if (!strcmp(opt, "m")) {
            if (parse_ram(arg, &c->machine.ram_size) < 0)
                return fail("-m %s: invalid RAM size", arg);
        }
        else if (!strcmp(opt, "smp")) {
            uint64_t n;
            /* accept "N" and "cpus=N" */
            const char *v = g_str_has_prefix(arg, "cpus=") ? arg + 5 : arg;
            if (!qs_parse_uint(v, &n) || n < 1 || n > 64)
                return fail("-smp %s: expected a number of CPUs from 1 to 64", arg);
            c->machine.smp = n;
        }
        else if (!strcmp(opt, "kernel")) c->machine.kernel = arg;
        else if (!strcmp(opt, "cpu")) c->machine.cpu = arg;
        else if (!strcmp(opt, "accel")) c->machine.accel = arg;
        else if (!strcmp(opt, "serial")) {
            c->serial_set = true;
            c->machine.serial = strcmp(arg, "none") && strcmp(arg, "null") ? arg : NULL;
        }
        else if (!strcmp(opt, "nographic")) c->nographic = true;
        else if (!strcmp(opt, "display")) {
            if (strcmp(arg, "none")) return fail("-display %s: only 'none' is supported", arg);
        }
        else if (!strcmp(opt, "S")) c->paused = true;
        else if (!strcmp(opt, "no-reboot") || !strcmp(opt, "no-shutdown") ||
                 !strcmp(opt, "name") || !strcmp(opt, "nodefaults")) {
            /* accepted for QEMU compatibility; nothing to do */
        }
        else if (!strcmp(opt, "d") || !strcmp(opt, "D")) {
            g_autoptr(GError) err = NULL;
            if (!(opt[0] == 'd' ? qs_tcg_set_log(arg, &err) : qs_tcg_set_logfile(arg, &err)))
                return fail("%s", err->message);
        }
        else if (!strcmp(opt, "append") || !strcmp(opt, "bios")) {
            if (!strcmp(opt, "bios") && strcmp(arg, "none"))
                return fail("-bios %s: only 'none' is supported", arg);
        }
        else return fail("%s: invalid option", a);
    }
    return 0;
}

static int print_and_exit(GString *s)
{
    fputs(s->str, stdout);
    g_string_free(s, TRUE);
    return 0;
}

int main(int argc, char **argv)
{
    Config c = { 0 };
    c.plugins = g_ptr_array_new();
    c.devices = g_ptr_array_new();
    c.qmp = g_ptr_array_new();
    c.machine.name = "virt";
    c.machine.ram_size = 128ull << 20;
    c.machine.smp = 1;
    if (parse_args(argc, argv, &c)) return 1;
    if (c.nographic && !c.serial_set) c.machine.serial = "stdio";

    g_autoptr(GError) err = NULL;
    g_autofree char *name = NULL;   /* a help request's module or device name */

    for (guint i = 0; i < c.plugins->len; i++) {
        const char *spec = c.plugins->pdata[i];
        if (is_help(spec, &name)) {
            GString *s = g_string_new(NULL);
            if (!name) { qs_module_help(s); return print_and_exit(s); }
            if (!qs_module_help_options(name, s, &err)) return fail("-plugin %s: %s", spec, err->message);
            return print_and_exit(s);
        }
    }

    qs_evloop_init();
    for (guint i = 0; i < c.plugins->len; i++) {
        const char *spec = c.plugins->pdata[i];
        if (!qs_module_load(spec, &err)) return fail("-plugin %s: %s", spec, err->message);
    }

    if (!strcmp(c.machine.name, "help") || !strcmp(c.machine.name, "?")) {
        GString *s = g_string_new(NULL);
        qs_machine_help(s);
        return print_and_exit(s);
    }
    for (guint i = 0; i < c.devices->len; i++) {
        const char *spec = c.devices->pdata[i];
        if (!is_help(spec, &name)) continue;
        GString *s = g_string_new(NULL);
        if (!name) {
            GPtrArray *types = qs_device_type_list();
            g_string_append(s, "Devices:\n");
            for (guint j = 0; j < types->len; j++) {
                const QsDeviceType *t = types->pdata[j];
                g_string_append_printf(s, "name \"%s\"%s%s%s, desc \"%s\"\n", t->name,
                                       t->bus ? ", bus " : "", t->bus ? t->bus : "", "",
                                       t->desc ? t->desc : "");
            }
            g_ptr_array_free(types, TRUE);
            return print_and_exit(s);
        }
        const QsDeviceType *t = qs_device_type_find(name);
        if (!t) return fail("-device %s: '%s' is not a valid device model name", spec, name);
        g_string_append_printf(s, "%s options:\n", t->name);
        qs_props_print_help(t->props, s);
        return print_and_exit(s);
    }

    if (c.qtest && !qs_qtest_start(c.qtest, &err)) return fail("-qtest %s: %s", c.qtest, err->message);
    if (!qs_machine_init(&c.machine, &err)) return fail("%s", err->message);
    for (guint i = 0; i < c.devices->len; i++) {
        const char *spec = c.devices->pdata[i];
        if (!qs_device_create(spec, &err)) return fail("-device %s: %s", spec, err->message);
    }
    for (guint i = 0; i < c.qmp->len; i++) {
        const char *spec = c.qmp->pdata[i];
        if (!qs_qmp_start(spec, &err)) return fail("-qmp %s: %s", spec, err->message);
    }
    if (!qs_tcg_start(&c.machine, &err)) return fail("%s", err->message);
    qs_runstate_start(c.paused);
    int status = qs_main_loop_run();
    qs_tcg_stop();
    qs_module_unload_all();
    return status;
}
