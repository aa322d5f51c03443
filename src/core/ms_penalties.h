/* Per-user penalty state (TT's TTPenalties, sparse): a sorted list of the tokens in the prompt
 * or the output, with their output counts. Cost is proportional to the history, never to the
 * vocabulary. */
#ifndef MS_PENALTIES_H
#define MS_PENALTIES_H

#include <string.h>

#include "common/ms_internal.h"

typedef struct ms__hist_entry {
    int32_t id;
    int32_t count;     /* times generated since reset_output_state */
    int32_t in_prompt; /* 1 if in the prompt */
} ms__hist_entry;

typedef struct ms__history {
    ms__hist_entry *e; /* sorted by id, unique */
    int32_t n, cap;
} ms__history;

void ms__history_free(ms__history *h);
void ms__history_clear(ms__history *h);
/* Count one generated token (inserting it if new). MS_ERR_NO_MEMORY on growth failure. */
ms_status ms__history_add_output(ms__history *h, int32_t id, int32_t times);
/* Mark id as in the prompt. */
ms_status ms__history_add_prompt(ms__history *h, int32_t id);
/* Drop prompt flags (prompt=true) or output counts (prompt=false), removing dead entries. */
void ms__history_reset(ms__history *h, bool prompt);
/* Entry of id or NULL. */
const ms__hist_entry *ms__history_find(const ms__history *h, int32_t id);
/* Entries with lo <= id < hi: first index and count. */
void ms__history_range(const ms__history *h, int32_t lo, int32_t hi, int32_t *first,
                       int32_t *count);
/* Deep copy (dst is cleared first). */
ms_status ms__history_copy(ms__history *dst, const ms__history *src);

/* a when c, else b, through the bits: the compiler keeps it free of branches (as a float
 * ternary it made a branch, and both conditions below are unpredictable per token) */
static inline float ms__select(bool c, float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    const uint32_t m = 0u - (uint32_t)c, r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* z' of a history token generated `count` times, in float arithmetic (DESIGN 2.1; the reference
 * tests rely on the exact operation order), with repetition, frequency and presence penalties
 * r, fp and pp: the parameters come loose so that a loop over tokens keeps them in registers. */
static inline float ms__penalize_count(float z, int32_t count, float r, float fp, float pp,
                                       ms_penalty_order order)
{
    const bool seen = count > 0;
    if (order == MS_PENALTY_ORDER_OPENAI) {
        z = ms__select(z > 0.0f, z / r, z * r);
        z = z - fp * (float)count;
        z = ms__select(seen, z - pp, z);
    } else {
        z = ms__select(seen, z - pp, z);
        z = z - fp * (float)count;
        z = ms__select(z > 0.0f, z / r, z * r);
    }
    return ms__select(z != z, -INFINITY, z);
}

/* The same for a history entry under a slot's parameters. */
static inline float ms__penalize(float z, const ms__hist_entry *h, const ms_slot_params *p,
                                 ms_penalty_order order)
{
    return ms__penalize_count(z, h->count, p->repetition_penalty, p->frequency_penalty,
                              p->presence_penalty, order);
}

#endif
