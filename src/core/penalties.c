#include <stdlib.h>

#include "core/ms_penalties.h"

void ms__history_free(ms__history *h)
{
    free(h->e);
    h->e = NULL;
    h->n = h->cap = 0;
}

void ms__history_clear(ms__history *h)
{
    h->n = 0;
}

/* Index of the first entry with id >= key. */
static int32_t lower_bound(const ms__history *h, int32_t key)
{
    int32_t lo = 0, hi = h->n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (h->e[mid].id < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static ms_status reserve(ms__history *h, int32_t need)
{
    if (need <= h->cap) return MS_OK;
    int32_t cap = h->cap ? h->cap : 16;
    while (cap < need) cap *= 2;
    ms__hist_entry *e = realloc(h->e, (size_t)cap * sizeof *e);
    if (!e) return MS_ERR_NO_MEMORY;
    h->e = e;
    h->cap = cap;
    return MS_OK;
}

static ms__hist_entry *insert(ms__history *h, int32_t id, ms_status *st)
{
    int32_t i = lower_bound(h, id);
    if (i < h->n && h->e[i].id == id) return &h->e[i];
    *st = reserve(h, h->n + 1);
    if (*st != MS_OK) return NULL;
    memmove(&h->e[i + 1], &h->e[i], (size_t)(h->n - i) * sizeof *h->e);
    h->n++;
    h->e[i] = (ms__hist_entry){.id = id, .count = 0, .in_prompt = 0};
    return &h->e[i];
}

ms_status ms__history_add_output(ms__history *h, int32_t id, int32_t times)
{
    ms_status st = MS_OK;
    ms__hist_entry *e = insert(h, id, &st);
    if (!e) return st;
    e->count += times;
    return MS_OK;
}

ms_status ms__history_add_prompt(ms__history *h, int32_t id)
{
    ms_status st = MS_OK;
    ms__hist_entry *e = insert(h, id, &st);
    if (!e) return st;
    e->in_prompt = 1;
    return MS_OK;
}

void ms__history_reset(ms__history *h, bool prompt)
{
    int32_t w = 0;
    for (int32_t r = 0; r < h->n; r++) {
        ms__hist_entry e = h->e[r];
        if (prompt) e.in_prompt = 0;
        else e.count = 0;
        if (e.in_prompt || e.count) h->e[w++] = e;
    }
    h->n = w;
}

const ms__hist_entry *ms__history_find(const ms__history *h, int32_t id)
{
    int32_t i = lower_bound(h, id);
    return (i < h->n && h->e[i].id == id) ? &h->e[i] : NULL;
}

void ms__history_range(const ms__history *h, int32_t lo, int32_t hi, int32_t *first,
                       int32_t *count)
{
    int32_t a = lower_bound(h, lo);
    int32_t b = lower_bound(h, hi);
    *first = a;
    *count = b - a;
}

ms_status ms__history_copy(ms__history *dst, const ms__history *src)
{
    dst->n = 0;
    MS_FORWARD_IF_ERROR(reserve(dst, src->n));
    if (src->n) memcpy(dst->e, src->e, (size_t)src->n * sizeof *src->e);
    dst->n = src->n;
    return MS_OK;
}
