/* An exact float64 model of DESIGN.md section 2 for one user row over a small vocabulary.
 *
 * Independent of the library's code: it shares only the definition of the noise
 * (ms__gumbel, src/common/ms_rng.h), so the library's token and the model's token must agree
 * exactly, draw for draw, not only in distribution. Clarity over speed: every stage is the
 * literal definition (sorts, full softmax, one Gumbel per surviving token). */
#ifndef MS_REF_MODEL_H
#define MS_REF_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "meshsample.h"

/* Formatted parameters of one user (what ms_params_format should produce). */
typedef struct ref_params {
    float temperature; /* T > 0 (T == 0 formats to T 1, k 1, p 0) */
    int32_t top_k;     /* 0 = unlimited */
    float top_p;       /* [0, 1] */
    float min_p;       /* [0, 1] */
    float presence, frequency, repetition;
} ref_params;

/* TT's format_sampling_params as the header states it: T == 0 -> greedy (T 1, k 1, p 0);
 * top_p and min_p clamped to [0, 1]; k < 1 -> max_top_k (0 = unlimited in exact mode);
 * k > max_top_k > 0 -> max_top_k; repetition 0 -> 1. Inputs are assumed valid. */
ref_params ref_format(float temperature, int64_t top_k, float top_p, float min_p, float presence,
                      float frequency, float repetition, int32_t max_top_k);

/* One user's inputs. z holds the float32 logits of the valid vocabulary [0, vocab) exactly as
 * the library reads them (padding is simply not passed). in_prompt and counts may be NULL. */
typedef struct ref_input {
    const float *z;
    int32_t vocab;
    ref_params params;
    ms_penalty_order order;
    const uint8_t *in_prompt; /* [vocab] 0/1 */
    const int32_t *counts;    /* [vocab] output counts */
} ref_input;

/* Everything the step derives from one row, before the noise. */
typedef struct ref_dist {
    int32_t vocab;
    bool bad;        /* no finite and no +inf value: token -1, row_error 1 */
    bool greedy;     /* top_k == 1 or top_p == 0 */
    bool has_posinf; /* some z' is +inf: S is those tokens, drawn by the noise alone */
    int32_t argmax;  /* greedy token (lowest id among the maxima of z'), -1 for a bad row */
    /* True when a min-p or top-p decision lies within 1e-6 (log scale resp. probability mass) of
     * its threshold: the contract does not fix the floating-point evaluation order there, so an
     * exact token comparison is meaningless for such a row. */
    bool ambiguous;
    float *z;        /* [vocab] NaN -> -inf */
    float *zp;       /* [vocab] penalised logits z' (float32 arithmetic) */
    double *w;       /* [vocab] (double)z' / (double)T */
    int32_t *order;  /* [vocab] (z' desc, id asc) */
    int32_t *pos;    /* [vocab] 1-based position of a token in order (the rank) */
    int32_t *order_raw; /* [vocab] (z desc, id asc) */
    int32_t n_s;     /* |S| */
    int32_t *s;      /* [n_s] survivors in rank order (by id for the +inf case) */
    uint8_t *in_s;   /* [vocab] */
    double *prob;    /* [vocab] exact draw probability, 0 outside S */
} ref_dist;

/* Build the distribution; returns 0, or -1 on allocation failure. */
int ref_dist_build(ref_dist *d, const ref_input *in);
void ref_dist_free(ref_dist *d);

/* The token drawn with the slot's seed and draw counter n (greedy: argmax; bad row: -1). */
int32_t ref_draw(const ref_dist *d, uint64_t seed, uint64_t n);

/* Log-probs of the step that produced `token`, in `mode`. Writes the sampled token's
 * log-prob and rank (1-based in (z' desc, id asc)), and up to n_top (id, log-prob) pairs of
 * the mode's order, skipping -inf entries; returns the number of pairs. Not defined for bad
 * rows or rows with +inf (returns -1). */
int32_t ref_logprobs(const ref_dist *d, ms_logprobs_mode mode, int32_t token, int32_t n_top,
                     double *logprob, int32_t *rank, int32_t *top_ids, double *top_lp);

/* ---- statistics ---- */

/* Regularised upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), a > 0, x >= 0. */
double ref_gamma_q(double a, double x);
/* Upper tail of the chi-square distribution with df degrees of freedom: Q(df/2, x/2). */
double ref_chi2_sf(double x, double df);

/* Pearson chi-square of observed counts against probabilities (sum 1) over n cells. Cells with
 * expected count < 5 are pooled (all of them into one cell, which joins the smallest regular
 * cell while itself < 5). Returns the p-value, writes the statistic and df when not NULL; a
 * single cell returns 1. Observations in cells of probability 0 are not handled here: the
 * caller must check them (they are an outright failure). */
double ref_chi2_test(const double *prob, const int64_t *observed, int32_t n, int64_t total,
                     double *stat, int32_t *df);

#endif
