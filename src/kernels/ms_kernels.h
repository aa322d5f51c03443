/* Per-device stage (DESIGN 3): one pass over a user's shard row that selects the local top-K
 * candidates on the penalised logits z' and, when asked, the log-sum-exp statistics, without
 * touching the caller's buffer. Penalised tokens are excluded from the vector scan and handled
 * one by one, so penalties cost O(history), not O(vocabulary). */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include "common/ms_internal.h"
#include "core/ms_penalties.h"

/* Terms a float lane of the exp sum adds before they go into a double. */
#define MS_BLOCK 2048
/* Sub-block length of the max pass: each sub-block's maximum is one real element, so the K-th
 * largest sub-block maximum is a lower bound on the K-th largest value of the row. */
#define MS_SUB 256

typedef struct ms__cand {
    float v;   /* penalised logit z' */
    float raw; /* logit z as given (NaN read as -inf) */
    int32_t id;
} ms__cand;

/* Log-sum-exp accumulator: sums are relative to max; +inf values are only counted. */
typedef struct ms__lse {
    float max;
    double sum;   /* sum exp(x - max) */
    double sum_t; /* sum exp((x - max) * inv_t) */
    int64_t ninf;
} ms__lse;

static inline ms__lse ms__lse_empty(void)
{
    ms__lse l = {-INFINITY, 0.0, 0.0, 0};
    return l;
}
/* Merge b into a. */
void ms__lse_merge(ms__lse *a, const ms__lse *b, double inv_t);
/* log of sum exp(x) (scale 1); +inf when any value is +inf; -inf when empty. */
double ms__lse_value(const ms__lse *l);

typedef struct ms__scan_job {
    const void *row;
    ms_dtype dtype;
    int32_t width;   /* columns of this shard that are real tokens */
    int32_t id_base; /* global id of column 0 */
    int32_t K;       /* candidates wanted, >= 1 */
    const ms__hist_entry *hist; /* this shard's history entries when penalties apply, else NULL */
    int32_t n_hist;
    const ms_slot_params *sp;
    ms_penalty_order order;
    bool want_sum;   /* statistics at scale 1 */
    bool want_sum_t; /* statistics at scale inv_t as well */
    double inv_t;
    int32_t n_raw; /* > 0: also the top n_raw by raw logit, and raw statistics */
} ms__scan_job;

typedef struct ms__scan_result {
    ms__cand *cand; /* capacity K; sorted (v desc, id asc) on return */
    int32_t n_cand;
    bool truncated; /* the shard may hold real tokens that were not returned */
    ms__cand *raw;  /* capacity n_raw; sorted (raw desc, id asc) */
    int32_t n_rawc;
    ms__lse pen; /* statistics of z' (valid when want_sum) */
    ms__lse raw_lse;
} ms__scan_result;

/* Bytes of per-thread scratch ms__scan_row needs for these sizes. */
size_t ms__scan_scratch_bytes(int32_t K, int32_t n_hist, int32_t width);
void ms__scan_row(const ms__scan_job *job, ms__scan_result *res, void *scratch);

/* Block primitives, picked once for the CPU (AVX-512 when present). */
typedef struct ms__block_ops {
    const char *name;
    /* sum exp((x - m) * scale) over non-NaN x outside skip[0..n_skip) (sorted, in [0, n)),
     * with x <= m for all x */
    double (*sumexp)(const float *x, int32_t n, float m, float scale, const int32_t *skip,
                     int32_t n_skip);
    /* Passes A and C over x[0..n): bm[j] = max of x[j*MS_SUB .. (j+1)*MS_SUB) (the last one
     * shorter) leaving out the positions skip[0..n_skip) (sorted, in [0, n)), NaN ignored,
     * -inf when none; returns the max of all of them. When st is not NULL, also the exp sums
     * of the same values added to *st against its running maximum, which rises (rescaling what
     * was summed) as larger sub-blocks come: sum at scale 1, and sum_t at scale inv_t when
     * inv_t != 1. A +inf maximum sets st->max to +inf and stops the sums (never read then). */
    float (*max_sum)(const float *x, int32_t n, const int32_t *skip, int32_t n_skip, float *bm,
                     ms__lse *st, double inv_t);
    /* the (k+1)-th largest of a[0..n) (no NaN; k < n); may overwrite a */
    float (*kth)(float *a, int32_t n, int32_t k);
    /* base + i for all x[i] > t, ascending, into idx (room for n + 1: it may store one past
     * the last); returns how many */
    int32_t (*above)(const float *x, int32_t n, float t, int32_t base, int32_t *idx);
    /* pos[i] = the place of key[i] in ascending order, equal keys in index order (n <= 64) */
    void (*ranks)(const uint64_t *key, int32_t n, int32_t *pos);
    /* n bf16 or f16 values to float, exactly */
    void (*convert)(const void *src, ms_dtype t, int32_t n, float *dst);
    /* y[i] = exp(x[i]) for x <= 0, relative error ~1e-7 */
    void (*expv)(const float *x, int32_t n, float *y);
    /* u[i] = ms__uniform(seed, ctr, ids[i]) for i < n, bit for bit */
    void (*uniforms)(uint64_t seed, uint64_t ctr, const int32_t *ids, int32_t n, double *u);
} ms__block_ops;

const ms__block_ops *ms__block_ops_get(void);
const ms__block_ops *ms__block_ops_avx512(void); /* NULL if the CPU lacks it */
const ms__block_ops *ms__block_ops_portable(void); /* the reference the wide ones are tested on */

/* Rank order: a before b when a.v > b.v, or equal values and a.id < b.id. */
static inline bool ms__cand_before(const ms__cand *a, const ms__cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

/* Order of the raw top lists: a before b when a.raw > b.raw, or equal and a.id < b.id. */
static inline bool ms__cand_raw_before(const ms__cand *a, const ms__cand *b)
{
    return a->raw > b->raw || (a->raw == b->raw && a->id < b->id);
}
/* Sort by rank order (v desc, id asc) or by (raw desc, id asc), comparator inlined. */
void ms__cand_sort_rank(ms__cand *a, size_t n);
/* src[0..n) in rank order into dst (no overlap): a list just built need not be copied first. */
void ms__cand_sort_rank_to(ms__cand *restrict dst, const ms__cand *restrict src, size_t n);
void ms__cand_sort_raw(ms__cand *a, size_t n);

#endif
