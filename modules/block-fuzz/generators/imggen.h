/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen's shared pieces: the image being mutated, field tables, type-limit mutation
 * helpers, and the per-format generators (gen-*.c) that imggen.c drives. */
#ifndef QS_IMGGEN_H
#define QS_IMGGEN_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

/* One field of an on-disk structure. */
typedef struct Field {
    const char *name;
    uint32_t off;        /* in the structure */
    uint8_t width;       /* 1, 2, 4, 8 bytes */
    bool be;             /* big-endian */
} Field;

#define S(arr) arr, G_N_ELEMENTS(arr)

/* An image in memory while it is being finished and mutated. */
typedef struct Image {
    uint8_t *buf;
    gsize len;
    GRand *rng;
    GString *log;            /* what was mutated, for --verbose */
    uint64_t offsets[16];    /* interesting offsets seen (tables), for overlaps */
    unsigned n_offsets;
    bool replay;             /* valid, but only read-write opens it (a vhdx log to replay) */
} Image;

uint64_t img_get(const Image *im, uint64_t at, const Field *f);
void img_set(Image *im, uint64_t at, const Field *f, uint64_t v);
void img_note_offset(Image *im, uint64_t off);
/* A value a parser must survive for field f whose current value is cur: 0, 1, max,
 * INT_MAX/INT_MIN of the width, powers of two, 2^31±1, 2^32±1, 2^63, cur±1, the file
 * size and beyond, a noted table offset (overlap), a bit flip, random. */
uint64_t img_limit_value(Image *im, const Field *f, uint64_t cur);
/* Set one field of the n at `at` to a limit value (logged). */
void img_mutate_struct(Image *im, uint64_t at, const Field *fields, unsigned n);
/* The same for one of `count` entries of a table at `at` (entry size: its width). */
void img_mutate_table(Image *im, uint64_t at, uint64_t count, const Field *entry);
/* Set field f of the structure at `at` to v, logged as a mutation. */
void img_mutate_to(Image *im, uint64_t at, const Field *f, uint64_t v);
/* A uniformly random integer in [0, n) for any 64-bit n (n > 0). */
uint64_t img_rand_below(GRand *rng, uint64_t n);

/* A format the generator knows. */
typedef struct ImgFormat {
    const char *name;
    /* Create a valid image of random geometry at path with the block layer; helper files
     * (a differencing image's parent) may go into dir. */
    bool (*make)(GRand *rng, const char *dir, const char *path, GString *log, GError **errp);
    /* Optional: finish the loaded image in memory (structures the block layer's create
     * does not make, compaction); the result must still be a valid image. */
    bool (*finish)(Image *im, GError **errp);
    /* One mutation round (1-3 per image). */
    void (*mutate)(Image *im);
    /* The format's fuzz target takes a packed input (harnesses/packed.h). */
    bool packed;
} ImgFormat;

/* qs_block_create(fmt, path, size, opts), then a few random writes (data, zeroes,
 * compressed where the format has it) and, if `snapshot`, maybe a snapshot, through the
 * block layer; what was done is appended to log. */
bool imggen_create(const char *fmt, const char *path, uint64_t size, const char *opts,
                   bool snapshot, GRand *rng, GString *log, GError **errp);

extern const ImgFormat imggen_qcow2, imggen_vmdk, imggen_vdi, imggen_vpc;
extern const ImgFormat imggen_parallels, imggen_vhdx;

#endif
