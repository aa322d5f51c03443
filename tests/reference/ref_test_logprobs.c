/* (d) Log-probs against float64 log-softmax: raw, penalized and processed modes; the sampled
 * token's log-prob and rank, the top-N ids (exact) and values.
 *
 * Tolerance, |library - model| <= LP_ABS + LP_REL * |model|, with
 *   LP_ABS = 4e-6: the library sums exp in float blocks (then double) with a polynomial exp of
 *     ~2e-7 relative error. Terms are positive, so a float block of b terms errs by at most
 *     (b - 1) 2^-24 relative (b <= 64 gives 3.8e-6, a random-walk typical ~5e-7), and a relative
 *     error e of the sum is an absolute error e of log(sum). The exp argument (x - max) formed in
 *     float adds at most half an ulp of |x - max| per term, also a relative error of the term.
 *   LP_REL = 2.5e-7 (about 4 float ulps): the result is a float (2^-24 |lp| rounding), and up to
 *     three float roundings of magnitude ~|lp| happen on the way (x - max, the subtraction of
 *     log(sum), the store).
 * Logits stay within a few tens of the maximum, so these bounds are a few 1e-6 in practice; ids
 * and ranks are exact (orders are of exact float values with ties to the lower id). */
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

#define LP_ABS 4e-6
#define LP_REL 2.5e-7

static const char *mode_name(ms_logprobs_mode m)
{
    return m == MS_LOGPROBS_RAW ? "raw" : m == MS_LOGPROBS_PENALIZED ? "penalized" : "processed";
}

typedef struct lp_stats {
    long users_checked, values_checked, failures;
    double max_err; /* largest |lib - model| / (LP_ABS + LP_REL |model|) seen */
    double max_abs;
} lp_stats;

static bool close_enough(double lib, double model, lp_stats *st)
{
    if (isinf(model) || isinf(lib))
        return lib == model;
    const double err = fabs(lib - model);
    const double tol = LP_ABS + LP_REL * fabs(model);
    if (err / tol > st->max_err)
        st->max_err = err / tol;
    if (err > st->max_abs)
        st->max_abs = err;
    st->values_checked++;
    return err <= tol;
}

static void fail_user(lp_stats *st, const char *ctx, int32_t u, const ref_raw_params *raw,
                      const char *what)
{
    if (st->failures++ < 15)
        fprintf(stderr,
                "LOGPROB MISMATCH %s slot %d (T %g k %lld p %g min_p %g pres %g freq %g rep %g N %lld): %s\n",
                ctx, u, raw->temperature, (long long)raw->top_k, raw->top_p, raw->min_p, raw->presence,
                raw->frequency, raw->repetition, (long long)raw->num_logprobs, what);
}

/* One generator in `mode`, random rows and parameters, a few committed steps. */
static void run_trial(ms_logprobs_mode mode, int32_t max_top_k, int32_t max_logprobs, int32_t Vmin,
                      int32_t Vmax, uint64_t trial, lp_stats *st)
{
    ref_rng r;
    ref_rng_init(&r, 0x10670000ull + trial * 7 + (uint64_t)mode);
    const int32_t V = ref_rng_int(&r, Vmin, Vmax);
    const int32_t users = 6;
    ref_gen_config gc = ref_gen_config_default(V, users);
    gc.padded = V + ref_rng_int(&r, 0, 8);
    gc.mode = mode;
    gc.max_top_k = max_top_k;
    gc.max_logprobs = max_logprobs;
    gc.order = ref_rng_int(&r, 0, 1) ? MS_PENALTY_ORDER_TT : MS_PENALTY_ORDER_OPENAI;
    ms_generator *g = ref_gen_create(&gc);
    assert_non_null(g);
    const int32_t cap = ms_generator_max_logprobs(g);
    const ms_dtype dtype = (ms_dtype)ref_rng_int(&r, 0, 2);
    ref_batch b;
    ref_batch_init(&b, dtype, users, gc.padded, gc.padded + ref_rng_int(&r, 0, 4));
    static const double sigmas[4] = {0.5, 1.0, 2.0, 4.0};
    for (int32_t u = 0; u < users; u++) {
        const double sg = sigmas[ref_rng_int(&r, 0, 3)];
        const bool ties = ref_rng_int(&r, 0, 2) == 0;
        for (int32_t t = 0; t < gc.padded; t++) {
            double v = sg * ref_rng_normal(&r);
            if (ties)
                v = floor(v * 4.0) / 4.0;
            int x = ref_rng_int(&r, 0, 99);
            if (x < 2)
                v = NAN;
            else if (x < 5)
                v = -INFINITY;
            ref_batch_set(&b, u, t, t < V ? (float)v : 1e30f);
        }
    }
    ref_batch_poison_gap(&b, &r);
    static const float Ts[6] = {0.0f, 0.5f, 1.0f, 1.0f, 1.5f, 2.5f};
    static const int64_t ks[6] = {0, 0, 1, 3, 10, 50};
    static const float ps[5] = {1.0f, 1.0f, 0.9f, 0.5f, 0.0f};
    static const float mps[3] = {0.0f, 0.0f, 0.1f};
    ref_raw_params raw[6];
    ref_params fmt[6];
    uint64_t seeds[6];
    for (int32_t u = 0; u < users; u++) {
        raw[u] = ref_raw_default();
        raw[u].temperature = Ts[ref_rng_int(&r, 0, 5)];
        raw[u].top_k = ks[ref_rng_int(&r, 0, 5)];
        raw[u].top_p = ps[ref_rng_int(&r, 0, 4)];
        raw[u].min_p = mps[ref_rng_int(&r, 0, 2)];
        if (ref_rng_int(&r, 0, 1)) {
            raw[u].presence = 0.8f;
            raw[u].frequency = 0.5f;
            raw[u].repetition = 1.5f;
        }
        raw[u].enable_log_probs = u == 5 ? 0 : 1; /* the last slot stays off */
        raw[u].num_logprobs = ref_rng_int(&r, 0, cap);
        if (u == 0)
            raw[u].num_logprobs = cap;
        fmt[u] = ref_format(raw[u].temperature, raw[u].top_k, raw[u].top_p, raw[u].min_p,
                            raw[u].presence, raw[u].frequency, raw[u].repetition, max_top_k);
        seeds[u] = ref_rng_seed63(&r);
    }
    assert_int_equal(ref_install_params(g, raw, users), MS_OK);
    assert_int_equal(ref_install_seeds(g, seeds, users), MS_OK);
    ref_hist h;
    ref_hist_init(&h, users, V);
    assert_int_equal(ref_hist_random(&h, g, &r, 12, 12), MS_OK);
    ref_out o;
    ref_out_init(&o, users, cap);
    const ms_logits lg = ref_batch_logits(&b);
    int32_t *mids = malloc(sizeof(int32_t) * (size_t)V);
    double *mlps = malloc(sizeof(double) * (size_t)V);
    assert_non_null(mids);
    assert_non_null(mlps);
    char ctx[160];
    for (int step = 0; step < 3; step++) {
        snprintf(ctx, sizeof ctx, "%s trial %llu step %d (V %d, max_top_k %d, max_logprobs %d, %s)",
                 mode_name(mode), (unsigned long long)trial, step, V, max_top_k, cap,
                 gc.order == MS_PENALTY_ORDER_TT ? "tt" : "openai");
        assert_int_equal(ms_generator_sample(g, &lg, 1, false, &o.out), MS_OK);
        for (int32_t u = 0; u < users; u++) {
            ref_input in = {ref_batch_row(&b, u), V, fmt[u], gc.order, h.in_prompt + (size_t)u * V,
                            h.counts + (size_t)u * V};
            ref_dist d;
            assert_int_equal(ref_dist_build(&d, &in), 0);
            const int32_t tok = o.tokens[u];
            char msg[256];
            if (!d.ambiguous && tok != ref_draw(&d, seeds[u], (uint64_t)step)) {
                snprintf(msg, sizeof msg, "token %d, model %d", tok, ref_draw(&d, seeds[u], (uint64_t)step));
                fail_user(st, ctx, u, &raw[u], msg);
            }
            if (!raw[u].enable_log_probs) {
                if (!isnan(o.logprob[u]) || o.rank[u] != 0 || o.top_count[u] != 0)
                    fail_user(st, ctx, u, &raw[u], "log-probs off but logprob/rank/top_count set");
                ref_dist_free(&d);
                continue;
            }
            if (tok < 0 || tok >= V) {
                fail_user(st, ctx, u, &raw[u], "token out of range");
                ref_dist_free(&d);
                continue;
            }
            st->users_checked++;
            double mlp;
            int32_t mrank;
            const int32_t n = (int32_t)raw[u].num_logprobs;
            const int32_t mcnt = ref_logprobs(&d, mode, tok, n, &mlp, &mrank, mids, mlps);
            assert_true(mcnt >= 0);
            if (o.rank[u] != mrank) {
                snprintf(msg, sizeof msg, "rank %d, model %d (token %d)", o.rank[u], mrank, tok);
                fail_user(st, ctx, u, &raw[u], msg);
            }
            if (!close_enough(o.logprob[u], mlp, st)) {
                snprintf(msg, sizeof msg, "logprob %.9g, model %.9g (token %d, diff %.3g)", o.logprob[u],
                         mlp, tok, o.logprob[u] - mlp);
                fail_user(st, ctx, u, &raw[u], msg);
            }
            if (o.top_count[u] != mcnt) {
                snprintf(msg, sizeof msg, "top_count %d, model %d", o.top_count[u], mcnt);
                fail_user(st, ctx, u, &raw[u], msg);
            } else {
                for (int32_t i = 0; i < mcnt; i++) {
                    const int32_t lid = o.top_ids[(size_t)u * (size_t)cap + (size_t)i];
                    const float llp = o.top_logprobs[(size_t)u * (size_t)cap + (size_t)i];
                    if (lid != mids[i] || !close_enough(llp, mlps[i], st)) {
                        snprintf(msg, sizeof msg, "top[%d] = (%d, %.9g), model (%d, %.9g)", i, lid, llp,
                                 mids[i], mlps[i]);
                        fail_user(st, ctx, u, &raw[u], msg);
                        break;
                    }
                }
            }
            ref_dist_free(&d);
        }
        ref_hist_commit(&h, o.tokens);
    }
    free(mids);
    free(mlps);
    ref_out_free(&o);
    ref_hist_free(&h);
    ref_batch_free(&b);
    ms_generator_destroy(g);
}

static void run_mode(ms_logprobs_mode mode)
{
    lp_stats st = {0, 0, 0, 0.0, 0.0};
    const int trials = ref_scale_sanitizer() ? 25 : 80;
    for (int t = 0; t < trials; t++) {
        run_trial(mode, 0, MS_MAX_TOP_LOGPROBS_DEFAULT, 50, 300, (uint64_t)t, &st);
        run_trial(mode, 32, MS_MAX_TOP_LOGPROBS_DEFAULT, 50, 300, 1000 + (uint64_t)t, &st);
        if (t % 4 == 0) {
            run_trial(mode, 0, 32, 40, 200, 2000 + (uint64_t)t, &st);
            run_trial(mode, 0, MS_MAX_TOP_LOGPROBS_DEFAULT, 2000, 4000, 3000 + (uint64_t)t, &st);
        }
    }
    printf("%s: %ld users, %ld values, max |err| %.3g (%.2f of the tolerance), %ld failures\n",
           mode_name(mode), st.users_checked, st.values_checked, st.max_abs, st.max_err, st.failures);
    assert_true(st.values_checked > 1000);
    assert_int_equal(st.failures, 0);
}

static void test_logprobs_raw(void **state)
{
    (void)state;
    run_mode(MS_LOGPROBS_RAW);
}

static void test_logprobs_penalized(void **state)
{
    (void)state;
    run_mode(MS_LOGPROBS_PENALIZED);
}

static void test_logprobs_processed(void **state)
{
    (void)state;
    run_mode(MS_LOGPROBS_PROCESSED);
}

/* A row by hand: log-probs of log([.5 .25 .125 .125]) are exact small numbers. */
static void test_logprobs_by_hand(void **state)
{
    (void)state;
    const float z[4] = {(float)log(0.125), (float)log(0.5), (float)log(0.125), (float)log(0.25)};
    for (int m = 0; m < 3; m++) {
        ref_gen_config gc = ref_gen_config_default(4, 1);
        gc.mode = (ms_logprobs_mode)m;
        ms_generator *g = ref_gen_create(&gc);
        assert_non_null(g);
        ref_batch b;
        ref_batch_init(&b, MS_DTYPE_F32, 1, 4, 4);
        for (int t = 0; t < 4; t++)
            ref_batch_set(&b, 0, t, z[t]);
        ref_raw_params p = ref_raw_default();
        p.temperature = 1.0f;
        p.top_p = 0.7f; /* S = {1, 3}: masses before 0 and 0.5 */
        p.enable_log_probs = 1;
        p.num_logprobs = 4;
        assert_int_equal(ref_install_params(g, &p, 1), MS_OK);
        int64_t seed = 3;
        assert_int_equal(ms_generator_reset_seed(g, &seed, 1, NULL, 1), MS_OK);
        ref_out o;
        ref_out_init(&o, 1, ms_generator_max_logprobs(g));
        ms_logits lg = ref_batch_logits(&b);
        assert_int_equal(ms_generator_sample_peek(g, &lg, 1, 0, &o.out), MS_OK);
        const int32_t tok = o.tokens[0];
        assert_true(tok == 1 || tok == 3);
        assert_int_equal(o.rank[0], tok == 1 ? 1 : 2);
        if (m == MS_LOGPROBS_PROCESSED) {
            /* S renormalised: 2/3, 1/3. */
            assert_int_equal(o.top_count[0], 2);
            assert_int_equal(o.top_ids[0], 1);
            assert_int_equal(o.top_ids[1], 3);
            assert_true(fabs(o.top_logprobs[0] - log(2.0 / 3.0)) < 1e-6);
            assert_true(fabs(o.top_logprobs[1] - log(1.0 / 3.0)) < 1e-6);
        } else {
            const int32_t ids[4] = {1, 3, 0, 2};
            const double lps[4] = {log(0.5), log(0.25), log(0.125), log(0.125)};
            assert_int_equal(o.top_count[0], 4);
            for (int i = 0; i < 4; i++) {
                assert_int_equal(o.top_ids[i], ids[i]);
                assert_true(fabs(o.top_logprobs[i] - lps[i]) < 1e-6);
            }
            assert_true(fabs(o.logprob[0] - (tok == 1 ? log(0.5) : log(0.25))) < 1e-6);
        }
        ref_out_free(&o);
        ref_batch_free(&b);
        ms_generator_destroy(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logprobs_by_hand),
        cmocka_unit_test(test_logprobs_raw),
        cmocka_unit_test(test_logprobs_penalized),
        cmocka_unit_test(test_logprobs_processed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
