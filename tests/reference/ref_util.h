/* Test-side helpers of the reference suite: a deterministic data RNG, exact float <-> bf16/f16
 * conversion, a logits batch that remembers the exact float32 value the library will see, and
 * thin wrappers that install raw (unformatted) parameters through the public API. */
#ifndef MS_REF_UTIL_H
#define MS_REF_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshsample.h"

/* xoshiro256** seeded through SplitMix64: test data only, never the library's noise. */
typedef struct ref_rng {
    uint64_t s[4];
} ref_rng;

void ref_rng_init(ref_rng *r, uint64_t seed);
uint64_t ref_rng_u64(ref_rng *r);
double ref_rng_uniform(ref_rng *r);                        /* [0, 1) */
int32_t ref_rng_int(ref_rng *r, int32_t lo, int32_t hi);   /* uniform in [lo, hi] */
double ref_rng_normal(ref_rng *r);                          /* standard normal */
uint64_t ref_rng_seed63(ref_rng *r);                        /* a seed in [0, 2^63) */

/* bf16 / f16 conversions. to_*: round to nearest even (NaN stays NaN); from_*: exact. */
uint16_t ref_f32_to_bf16(float f);
float ref_bf16_to_f32(uint16_t h);
uint16_t ref_f32_to_f16(float f);
float ref_f16_to_f32(uint16_t h);

/* True when MS_TEST_SCALE=sanitizer (ASan/UBSan build: draw counts may be cut). */
bool ref_scale_sanitizer(void);

/* A [users, padded] logits matrix of one dtype with row stride >= padded. exact[u*padded + j]
 * is the float32 value the library reads at (u, j) (the conversion is exact by construction). */
typedef struct ref_batch {
    ms_dtype dtype;
    int32_t users, padded;
    int64_t stride;
    void *data;
    float *exact;
} ref_batch;

void ref_batch_init(ref_batch *b, ms_dtype dtype, int32_t users, int32_t padded, int64_t stride);
void ref_batch_free(ref_batch *b);
/* Store v (rounded to the dtype) at (u, j); returns the exact value stored. */
float ref_batch_set(ref_batch *b, int32_t u, int32_t j, float v);
/* Fill the stride gap of every row with hostile values (huge, +inf, NaN). */
void ref_batch_poison_gap(ref_batch *b, ref_rng *r);
ms_logits ref_batch_logits(const ref_batch *b);
/* The per-device views of a full batch for a host mesh (views[d], d < num_shards), through
 * ms_generator_device_view. Returns the number of views, or -1 on error. */
int32_t ref_batch_views(const ref_batch *b, ms_generator *g, ms_logits *views, int32_t max);
const float *ref_batch_row(const ref_batch *b, int32_t u);

/* One user's raw, unformatted parameters (what a caller would pass to reset_sampling_params). */
typedef struct ref_raw_params {
    float temperature;
    int64_t top_k;
    float top_p;
    float min_p;
    float presence, frequency, repetition;
    int64_t enable_log_probs;
    int64_t num_logprobs;
} ref_raw_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, no penalties, no log-probs. */
ref_raw_params ref_raw_default(void);

/* Generator configuration (host backend; 1x1 mesh and one thread by default). */
typedef struct ref_gen_config {
    int32_t vocab, padded, users, max_top_k, max_logprobs;
    ms_logprobs_mode mode;
    ms_penalty_order order;
    int32_t rows, cols, axis, threads;
} ref_gen_config;

ref_gen_config ref_gen_config_default(int32_t vocab, int32_t users);
/* Returns NULL (after printing the message) when create fails. */
ms_generator *ref_gen_create(const ref_gen_config *c);

/* Install raw[0..n) (n == num_users) through ms_generator_reset_sampling_params with lists. */
ms_status ref_install_params(ms_generator *g, const ref_raw_params *raw, int32_t n);
/* Seeds seeds[0..n) into slots 0..n-1 (counters restart at 0). */
ms_status ref_install_seeds(ms_generator *g, const uint64_t *seeds, int32_t n);

/* Output buffers for U users and a top-N cap. */
typedef struct ref_out {
    int32_t users, cap;
    int32_t *tokens;
    uint8_t *row_error;
    float *logprob;
    int32_t *rank;
    int32_t *top_count;
    int32_t *top_ids;
    float *top_logprobs;
    ms_step_output out;
} ref_out;

void ref_out_init(ref_out *o, int32_t users, int32_t cap);
void ref_out_free(ref_out *o);

/* Penalty histories mirrored on the test side. */
typedef struct ref_hist {
    int32_t users, vocab;
    uint8_t *in_prompt; /* [users * vocab] */
    int32_t *counts;    /* [users * vocab] */
} ref_hist;

void ref_hist_init(ref_hist *h, int32_t users, int32_t vocab);
void ref_hist_free(ref_hist *h);
/* Random prompts (up to max_prompt ids) and pre-counted outputs (up to max_out ids, with
 * repeats) for every user, installed with reset_prompt_tokens / reset_output_state. */
ms_status ref_hist_random(ref_hist *h, ms_generator *g, ref_rng *r, int32_t max_prompt,
                          int32_t max_out);
/* Install explicit histories: prompt[u] / out[u] rows of width cols, -1 padded. */
ms_status ref_hist_install(ref_hist *h, ms_generator *g, const int32_t *prompt, int32_t pcols,
                           const int32_t *out, int32_t ocols);
/* Count one committed step's tokens (-1 ignored). */
void ref_hist_commit(ref_hist *h, const int32_t *tokens);

#endif
