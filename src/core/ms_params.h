/* Parameter formatting and validation (TT's format_sampling_params and friends). */
#ifndef MS_PARAMS_H
#define MS_PARAMS_H

#include "common/ms_internal.h"

/* Defaults TT pads lists with. */
ms_slot_params ms__slot_params_default(void);

/* ms_params_format whose messages name slots[i] instead of user i (slots may be NULL). */
ms_status ms__params_format_slots(const ms_sampling_params *in, int32_t n, int32_t max_top_k,
                                  const int32_t *slots, ms_slot_params *out, ms_errbuf *err);

/* Check one formatted user's values (what set_params accepts); message names field and slot. */
ms_status ms__slot_params_check(const ms_slot_params *p, int32_t slot, int32_t max_top_k,
                                int32_t max_logprobs, char *msg, size_t cap);

/* True when any penalty is not its default (TT's is_default_value). */
static inline bool ms__penalties_on(const ms_slot_params *p)
{
    return p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f ||
           p->repetition_penalty != 1.0f;
}

/* Greedy: argmax of the penalised logits (k == 1 or p == 0 after formatting). */
static inline bool ms__is_greedy(const ms_slot_params *p)
{
    return p->top_k == 1 || p->top_p <= 0.0f;
}

#endif
