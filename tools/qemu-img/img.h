/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the qemu-img subcommand files share: error reporting, image opening, QEMU-style
 * JSON and size printing, and the subcommand entry points. */
#ifndef QS_IMG_H
#define QS_IMG_H

#include <getopt.h>
#include <stdio.h>
#include "qs/block.h"

/* "qemu-img: msg" on stderr. */
void img_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Open an image; prints "Could not open 'x': ..." and returns NULL on failure. */
QsBlock *img_open(const char *filename, const char *fmt, int flags, bool quiet);
/* Parse a size with QEMU's suffixes; false with a message naming the value. */
bool img_parse_size(const char *s, uint64_t *out);
/* "1 GiB", "388 KiB" as QEMU prints sizes. */
char *img_size_to_str(uint64_t v);
/* Print a JSON node as QEMU's pretty printer does (4-space indent, "k": v). */
void img_json_print(JsonNode *n, FILE *out);
/* Cache mode names: "none", "writeback", "unsafe", "directsync", "writethrough". */
bool img_cache_flags(const char *mode, int *flags);
void img_progress(bool on, double pct);

int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_check(int argc, char **argv);
int img_map(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_dd(int argc, char **argv);
int img_measure(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_rebase(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_amend(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_bench(int argc, char **argv);

/* "-o help" for a format: prints the options and returns true if opts asks for help. */
bool img_opts_help(const char *fmt, const char *opts);

#endif
