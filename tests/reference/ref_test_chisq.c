/* (b) Chi-square goodness of fit of the library's draws against the model's exact
 * probabilities P(t) = exp(w_t) / sum_S exp(w), alpha = 1e-6, fixed seeds (never flaky).
 *
 * Draws are cheap: B users share one row and one parameter set, each with its own seed, and
 * every sample_peek offset is an independent draw of all of them. Any draw outside S fails
 * outright; the fit uses Pearson's statistic with cells of expected count < 5 pooled and the
 * p-value from ref_chi2_sf (regularised incomplete gamma, self-tested in ref_test_model).
 *
 * Scale: 20000 draws per case. Under MS_TEST_SCALE=sanitizer every eighth grid case and the
 * special cases keep 20000; the others drop to 5000 (still far above the 5-per-cell rule). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_model.h"
#include "ref_util.h"

#define ALPHA 1e-6

typedef struct chi_case {
    int32_t V;
    float T;
    int64_t k;
    float p, min_p;
    bool penalties;
    int32_t max_top_k;
    ms_dtype dtype;
    double sigma;
    int64_t draws;
    uint64_t data_seed;
} chi_case;

typedef struct chi_summary {
    int cases, failures, fits, last_ns;
    double min_p;
    long draws;
} chi_summary;

static void describe(const chi_case *c, char *buf, size_t n)
{
    snprintf(buf, n, "V %d T %g k %lld p %g min_p %g penalties %d max_top_k %d dtype %d sigma %g data_seed %llu",
             c->V, c->T, (long long)c->k, c->p, c->min_p, c->penalties, c->max_top_k, c->dtype,
             c->sigma, (unsigned long long)c->data_seed);
}

static void run_case(const chi_case *c, chi_summary *sum)
{
    char what[256];
    describe(c, what, sizeof what);
    const int32_t users = 256, V = c->V;
    ref_rng r;
    ref_rng_init(&r, c->data_seed);
    ref_gen_config gc = ref_gen_config_default(V, users);
    gc.max_top_k = c->max_top_k;
    ms_generator *g = ref_gen_create(&gc);
    assert_non_null(g);
    ref_batch b;
    ref_batch_init(&b, c->dtype, users, V, V);
    float *row = malloc(sizeof(float) * (size_t)V);
    assert_non_null(row);
    for (int32_t t = 0; t < V; t++)
        row[t] = ref_batch_set(&b, 0, t, (float)(c->sigma * ref_rng_normal(&r)));
    for (int32_t u = 1; u < users; u++)
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(&b, u, t, row[t]);

    ref_raw_params *raw = calloc((size_t)users, sizeof *raw);
    uint64_t *seeds = calloc((size_t)users, sizeof *seeds);
    assert_non_null(raw);
    assert_non_null(seeds);
    for (int32_t u = 0; u < users; u++) {
        raw[u] = ref_raw_default();
        raw[u].temperature = c->T;
        raw[u].top_k = c->k;
        raw[u].top_p = c->p;
        raw[u].min_p = c->min_p;
        if (c->penalties) {
            raw[u].presence = 0.7f;
            raw[u].frequency = 0.4f;
            raw[u].repetition = 1.4f;
        }
        seeds[u] = c->data_seed * 1000003ull + (uint64_t)u * 7919ull + 1u;
    }
    assert_int_equal(ref_install_params(g, raw, users), MS_OK);
    assert_int_equal(ref_install_seeds(g, seeds, users), MS_OK);
    const ref_params fmt = ref_format(c->T, c->k, c->p, c->min_p, raw[0].presence, raw[0].frequency,
                                      raw[0].repetition, c->max_top_k);

    /* Penalties hit the head of the distribution (where they matter): every other one of the
     * top 12 in the prompt, the top 3 in the output with counts 3, 2, 1. Same for all users. */
    ref_hist h;
    ref_hist_init(&h, users, V);
    if (c->penalties) {
        ref_dist d0;
        ref_input in0 = {row, V, ref_format(1, 0, 1, 0, 0, 0, 1, 0), gc.order, NULL, NULL};
        assert_int_equal(ref_dist_build(&d0, &in0), 0);
        int32_t *pr = malloc(sizeof(int32_t) * (size_t)users * 6);
        int32_t *ou = malloc(sizeof(int32_t) * (size_t)users * 6);
        assert_non_null(pr);
        assert_non_null(ou);
        static const int out_pos[6] = {0, 0, 0, 1, 1, 2};
        for (int32_t u = 0; u < users; u++)
            for (int j = 0; j < 6; j++) {
                pr[u * 6 + j] = d0.order[2 * j];
                ou[u * 6 + j] = d0.order[out_pos[j]];
            }
        ref_dist_free(&d0);
        assert_int_equal(ref_hist_install(&h, g, pr, 6, ou, 6), MS_OK);
        free(pr);
        free(ou);
    }
    ref_dist d;
    ref_input in = {row, V, fmt, gc.order, h.in_prompt, h.counts};
    assert_int_equal(ref_dist_build(&d, &in), 0);

    int64_t *obs = calloc((size_t)V, sizeof(int64_t));
    assert_non_null(obs);
    ref_out o;
    ref_out_init(&o, users, ms_generator_max_logprobs(g));
    const ms_logits lg = ref_batch_logits(&b);
    const int64_t draws = d.greedy ? users : c->draws;
    const int64_t peeks = (draws + users - 1) / users;
    int64_t total = 0, outside = 0;
    for (int64_t k = 0; k < peeks; k++) {
        assert_int_equal(ms_generator_sample_peek(g, &lg, 1, (uint64_t)k, &o.out), MS_OK);
        for (int32_t u = 0; u < users; u++) {
            const int32_t t = o.tokens[u];
            if (t < 0 || t >= V || !d.in_s[t]) {
                if (outside++ < 3)
                    fprintf(stderr, "OUTSIDE S: %s: slot %d offset %lld token %d (|S| %d, rank %d)\n",
                            what, u, (long long)k, t, d.n_s, t >= 0 && t < V ? d.pos[t] : -1);
                continue;
            }
            obs[t]++;
            total++;
        }
    }
    sum->cases++;
    sum->last_ns = d.n_s;
    sum->draws += (long)(total + outside);
    bool failed = outside > 0;
    if (d.greedy) {
        /* Deterministic: every draw is the argmax. */
        if (obs[d.argmax] != total)
            failed = true;
    } else if (d.ambiguous) {
        fprintf(stderr, "note: %s: the survivor set sits on a threshold; skipped\n", what);
    } else {
        double x2;
        int32_t df;
        const double pv = ref_chi2_test(d.prob, obs, V, total, &x2, &df);
        sum->fits++;
        if (pv < sum->min_p)
            sum->min_p = pv;
        if (!(pv > ALPHA)) {
            failed = true;
            fprintf(stderr, "CHI2 FAIL: %s: |S| %d draws %lld chi2 %.2f df %d p %.3g\n", what, d.n_s,
                    (long long)total, x2, df, pv);
            /* The worst cells, to show where the mass went. */
            for (int32_t i = 0; i < d.n_s && i < 8; i++) {
                int32_t t = d.s[i];
                fprintf(stderr, "    rank %d id %d: expected %.1f observed %lld\n", i + 1, t,
                        d.prob[t] * (double)total, (long long)obs[t]);
            }
        }
    }
    if (failed)
        sum->failures++;
    ref_out_free(&o);
    free(obs);
    ref_dist_free(&d);
    ref_hist_free(&h);
    free(raw);
    free(seeds);
    free(row);
    ref_batch_free(&b);
    ms_generator_destroy(g);
}

static void test_chisq_grid(void **state)
{
    (void)state;
    static const float Ts[3] = {0.5f, 1.0f, 1.7f};
    static const int64_t ks[4] = {0, 1, 5, 40};
    static const float ps[3] = {0.3f, 0.9f, 1.0f};
    static const float mps[3] = {0.0f, 0.05f, 0.3f};
    const bool san = ref_scale_sanitizer();
    chi_summary sum = {0, 0, 0, 0, 1.0, 0};
    int idx = 0;
    for (int pen = 0; pen < 2; pen++)
        for (int a = 0; a < 3; a++)
            for (int bk = 0; bk < 4; bk++)
                for (int cp = 0; cp < 3; cp++)
                    for (int dm = 0; dm < 3; dm++, idx++) {
                        chi_case c;
                        c.V = 100 + (int32_t)((idx * 389) % 901); /* 100..1000 */
                        c.T = Ts[a];
                        c.k = ks[bk];
                        c.p = ps[cp];
                        c.min_p = mps[dm];
                        c.penalties = pen != 0;
                        c.max_top_k = 0;
                        c.dtype = MS_DTYPE_F32;
                        c.sigma = 1.0 + (idx % 3);
                        c.draws = san && idx % 8 != 0 ? 5000 : 20000;
                        c.data_seed = 0xC41500ull + (uint64_t)idx;
                        run_case(&c, &sum);
                    }
    printf("chi-square grid: %d cases (%d fits), %ld draws, min p %.3g, %d failures\n", sum.cases,
           sum.fits, sum.draws, sum.min_p, sum.failures);
    assert_int_equal(sum.failures, 0);
}

/* Truncated mode (TT): k clamped to [1, K], top-p over the renormalised top-k; bf16/f16 rows. */
static void test_chisq_truncated_and_dtypes(void **state)
{
    (void)state;
    chi_summary sum = {0, 0, 0, 0, 1.0, 0};
    const chi_case cases[] = {
        {600, 1.0f, 0, 0.9f, 0.0f, false, 32, MS_DTYPE_F32, 1.0, 20000, 11},  /* k 0 -> 32 */
        {600, 1.3f, 100, 1.0f, 0.0f, false, 32, MS_DTYPE_F32, 0.5, 20000, 12}, /* k 100 -> 32 */
        {300, 0.8f, 20, 0.8f, 0.02f, true, 8, MS_DTYPE_F32, 1.5, 20000, 13},  /* k 20 -> 8 */
        {500, 1.0f, 0, 0.95f, 0.0f, false, 0, MS_DTYPE_BF16, 2.0, 20000, 14},
        {500, 0.7f, 30, 0.9f, 0.01f, true, 0, MS_DTYPE_F16, 2.0, 20000, 15},
        {1000, 1.0f, 0, 1.0f, 0.0f, false, 0, MS_DTYPE_F32, 0.7, 20000, 16}, /* full softmax */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], &sum);
    printf("chi-square truncated/dtypes: %d cases, min p %.3g, %d failures\n", sum.cases, sum.min_p,
           sum.failures);
    assert_int_equal(sum.failures, 0);
}

/* Exact mode with a nucleus far larger than the 32 candidates a shard gathers first: the
 * library must widen (or fall back) and still sample the exact top-p distribution. */
static void test_chisq_flat_large_nucleus(void **state)
{
    (void)state;
    chi_summary sum = {0, 0, 0, 0, 1.0, 0};
    const chi_case c = {2000, 1.5f, 0, 0.9f, 0.0f, false, 0, MS_DTYPE_F32, 1.0, 20000, 2000};
    run_case(&c, &sum);
    printf("flat nucleus: |S| %d, min p %.3g, %d failures\n", sum.last_ns, sum.min_p, sum.failures);
    assert_true(sum.last_ns > 500);
    assert_int_equal(sum.fits, 1);
    assert_int_equal(sum.failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chisq_grid),
        cmocka_unit_test(test_chisq_truncated_and_dtypes),
        cmocka_unit_test(test_chisq_flat_large_nucleus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
