/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qs-imggen's mutation helpers: read and write fields of an image in memory and set them
 * to type-limit values, overlapping offsets or bit flips, logging each change. */
#include "imggen.h"

uint64_t img_get(const Image *im, uint64_t at, const Field *f)
{
    uint64_t v = 0;
    if (at > im->len || f->off + f->width > im->len - at) return 0;
    const uint8_t *p = im->buf + at + f->off;
    for (unsigned i = 0; i < f->width; i++)
        v |= (uint64_t)p[f->be ? f->width - 1 - i : i] << (8 * i);
    return v;
}

void img_set(Image *im, uint64_t at, const Field *f, uint64_t v)
{
    if (at > im->len || f->off + f->width > im->len - at) return;
    uint8_t *p = im->buf + at + f->off;
    for (unsigned i = 0; i < f->width; i++)
        p[f->be ? f->width - 1 - i : i] = (uint8_t)(v >> (8 * i));
}

void img_note_offset(Image *im, uint64_t off)
{
    if (off && im->n_offsets < G_N_ELEMENTS(im->offsets)) im->offsets[im->n_offsets++] = off;
}

uint64_t img_rand_below(GRand *rng, uint64_t n)
{
    uint64_t r = (uint64_t)g_rand_int(rng) << 32 | g_rand_int(rng);
    return n ? r % n : 0;
}

uint64_t img_limit_value(Image *im, const Field *f, uint64_t cur)
{
    uint64_t max = f->width == 8 ? UINT64_MAX : (1ull << (8 * f->width)) - 1;
    switch (g_rand_int_range(im->rng, 0, 16)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return max;
    case 3: return max >> 1;                       /* INT_MAX of the width */
    case 4: return (max >> 1) + 1;                 /* INT_MIN as unsigned */
    case 5: return 1ull << g_rand_int_range(im->rng, 0, 8 * f->width);
    case 6: return (1ull << 31) + (uint64_t)g_rand_int_range(im->rng, -1, 2);
    case 7: return (1ull << 32) + (uint64_t)g_rand_int_range(im->rng, -1, 2);
    case 8: return 1ull << 63;
    case 9: return cur + 1;
    case 10: return cur - 1;
    case 11: return (uint64_t)im->len;                                 /* end of file */
    case 12: return (uint64_t)im->len + (uint64_t)g_rand_int_range(im->rng, 1, 1 << 20);
    case 13: return im->n_offsets ? im->offsets[g_rand_int_range(im->rng, 0, (gint32)im->n_offsets)]
                                  : cur;                            /* overlap a table */
    case 14: return cur ^ (1ull << g_rand_int_range(im->rng, 0, 8 * f->width));
    default: return img_rand_below(im->rng, UINT64_MAX) & max;
    }
}

void img_mutate_to(Image *im, uint64_t at, const Field *f, uint64_t v)
{
    uint64_t cur = img_get(im, at, f);
    img_set(im, at, f, v);
    g_string_append_printf(im->log, " %s@%#" G_GINT64_MODIFIER "x: %#" G_GINT64_MODIFIER
                           "x -> %#" G_GINT64_MODIFIER "x;", f->name, at + f->off, cur,
                           img_get(im, at, f));
}

void img_mutate_struct(Image *im, uint64_t at, const Field *fields, unsigned n)
{
    const Field *f = &fields[g_rand_int_range(im->rng, 0, (gint32)n)];
    img_mutate_to(im, at, f, img_limit_value(im, f, img_get(im, at, f)));
}

void img_mutate_table(Image *im, uint64_t at, uint64_t count, const Field *entry)
{
    if (!at || at >= im->len || !count) return;
    count = MIN(count, (im->len - at) / entry->width);
    if (!count) return;
    img_mutate_struct(im, at + img_rand_below(im->rng, count) * entry->width, entry, 1);
}
