/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TCG pass registration: modules insert IR passes at named points of the pipeline.
 * The IR itself arrives with the TCG issue; a pass sees it through QsTcgBlock. */
#ifndef QS_TCG_H
#define QS_TCG_H

#include <glib.h>
#include <stdbool.h>

typedef struct QsTcgBlock QsTcgBlock;   /* one translation block's IR */

/* Named points of the pipeline a pass can be inserted at. */
#define QS_TCG_POINT_FRONTEND "after-frontend"   /* raw IR as the guest front end wrote it */
#define QS_TCG_POINT_OPTIMIZE "after-optimize"   /* after constant folding and DCE */
#define QS_TCG_POINT_BACKEND  "before-backend"   /* last chance before code generation */

typedef struct QsTcgPass {
    const char *name;
    const char *point;   /* one of QS_TCG_POINT_* */
    int priority;        /* lower runs first among passes at the same point */
    void (*run)(QsTcgBlock *tb, void *opaque);
} QsTcgPass;

bool qs_tcg_pass_register(const QsTcgPass *pass, void *opaque, GError **errp);
/* Passes at a point in run order (array of const QsTcgPass *). */
GPtrArray *qs_tcg_pass_list(const char *point);
/* Run every pass registered at point on tb. */
void qs_tcg_passes_run(const char *point, QsTcgBlock *tb);

#endif
