/* (a) Exact token agreement between the library and the float64 model.
 *
 * The noise (ms__gumbel) and w = (double)z' / (double)T are bit-identical by definition, so for
 * every row, parameter set, seed and draw counter the library's token must equal the model's,
 * not merely follow the same distribution. Rows mix ties, NaN, -inf, +inf, bad rows, hostile
 * padding and stride gaps; parameters cover greedy, T, top-k, top-p, min-p, penalties in both
 * orders, exact and truncated mode, f32/bf16/f16. */
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

#define PEEKS 8 /* draw offsets checked per step */
#define STEPS 4 /* committed steps per trial */

static const char *dtype_name(ms_dtype d)
{
    return d == MS_DTYPE_F32 ? "f32" : d == MS_DTYPE_BF16 ? "bf16" : "f16";
}

static void print_row(const float *z, int32_t V)
{
    fprintf(stderr, "    logits[%d] = {", V);
    for (int32_t t = 0; t < V; t++)
        fprintf(stderr, "%s%.9g", t ? ", " : "", z[t]);
    fprintf(stderr, "}\n");
}

static void print_params(const ref_raw_params *r, const ref_params *f)
{
    fprintf(stderr,
            "    raw: T %.9g k %lld p %.9g min_p %.9g pres %.9g freq %.9g rep %.9g | formatted: T %.9g "
            "k %d p %.9g min_p %.9g\n",
            r->temperature, (long long)r->top_k, r->top_p, r->min_p, r->presence, r->frequency,
            r->repetition, f->temperature, f->top_k, f->top_p, f->min_p);
}

/* Random logits of one user, with the kind of trouble real rows have. */
static void fill_row(ref_batch *b, int32_t u, int32_t V, ref_rng *r)
{
    const int kind = ref_rng_int(r, 0, 99);
    static const double sigmas[4] = {0.5, 1.0, 2.5, 5.0};
    const double sigma = sigmas[ref_rng_int(r, 0, 3)];
    const bool quantize = ref_rng_int(r, 0, 2) == 0; /* many exact ties */
    for (int32_t t = 0; t < V; t++) {
        double v = sigma * ref_rng_normal(r);
        if (quantize)
            v = floor(v * 2.0) / 2.0;
        int x = ref_rng_int(r, 0, 99);
        if (x < 2)
            v = NAN;
        else if (x < 6)
            v = -INFINITY;
        if (kind < 3)
            v = ref_rng_int(r, 0, 1) ? -INFINITY : NAN; /* bad row */
        ref_batch_set(b, u, t, (float)v);
    }
    if (kind >= 3 && kind < 8) {
        int m = ref_rng_int(r, 1, 5); /* +inf tokens */
        for (int i = 0; i < m; i++)
            ref_batch_set(b, u, ref_rng_int(r, 0, V - 1), INFINITY);
    }
    if (kind >= 8 && kind < 11) /* a single finite token */
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(b, u, t, t == V / 3 ? 1.0f : -INFINITY);
    /* Padding columns: values that would win every comparison if they were looked at. */
    static const float hostile[4] = {INFINITY, 1e30f, 60000.0f, NAN};
    for (int32_t j = V; j < b->padded; j++)
        ref_batch_set(b, u, j, hostile[ref_rng_int(r, 0, 3)]);
}

static ref_raw_params random_params(ref_rng *r)
{
    static const float Ts[7] = {0.0f, 0.25f, 0.7f, 1.0f, 1.0f, 1.5f, 3.0f};
    static const int64_t ks[9] = {0, 0, 1, 2, 5, 20, 40, -1, 1000};
    static const float ps[7] = {0.0f, 0.1f, 0.5f, 0.9f, 0.95f, 1.0f, 1.0f};
    static const float mps[5] = {0.0f, 0.0f, 0.01f, 0.1f, 0.5f};
    static const float pres[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
    static const float freqs[4] = {0.0f, 0.3f, -0.2f, 1.1f};
    static const float reps[5] = {1.0f, 0.8f, 1.3f, 2.0f, 0.0f};
    ref_raw_params p = ref_raw_default();
    p.temperature = Ts[ref_rng_int(r, 0, 6)];
    p.top_k = ks[ref_rng_int(r, 0, 8)];
    p.top_p = ps[ref_rng_int(r, 0, 6)];
    p.min_p = mps[ref_rng_int(r, 0, 4)];
    if (ref_rng_int(r, 0, 1)) {
        p.presence = pres[ref_rng_int(r, 0, 3)];
        p.frequency = freqs[ref_rng_int(r, 0, 3)];
        p.repetition = reps[ref_rng_int(r, 0, 4)];
    }
    p.enable_log_probs = ref_rng_int(r, 0, 3) == 0;
    p.num_logprobs = p.enable_log_probs ? ref_rng_int(r, 0, 5) : 0;
    return p;
}

typedef struct stats stats;
static void report(const stats *s, int trials, const char *what);

struct stats {
    long compared, skipped_ambiguous, mismatches, trials;
    long mis_greedy, mis_posinf, mis_bad, mis_regular; /* mismatches by kind of row */
};

/* Host meshes for the mesh variant: rows, cols, gather axis (sampling_dp 1: replicas). */
static const int32_t meshes[6][3] = {{1, 2, 1}, {1, 4, 1}, {2, 1, 0}, {2, 2, 1}, {2, 4, 1}, {4, 2, 0}};

/* One generator with random rows and parameters, STEPS commits with PEEKS peeks each. With
 * mesh, a random host mesh (vocabulary sharded, threads 2) instead of 1x1. */
static void run_trial(uint64_t trial, stats *st, bool mesh)
{
    ref_rng r;
    ref_rng_init(&r, (mesh ? 0x3E5B0000ull : 0xA9EE0000ull) + trial);
    /* One trial in ten has a larger vocabulary: nuclei far beyond the first candidates. */
    const int32_t V = trial % 10 == 9 ? ref_rng_int(&r, 1000, 4000) : ref_rng_int(&r, 50, 300);
    const int32_t *mesh_shape = meshes[ref_rng_int(&r, 0, 5)];
    const int32_t shards = mesh ? mesh_shape[mesh_shape[2] == 1 ? 1 : 0] : 1;
    int32_t padded = V + ref_rng_int(&r, 0, 16);
    padded = (padded + shards - 1) / shards * shards;
    const int32_t users = 1 + (int32_t)(ref_rng_u64(&r) % 8u); /* [1, 8], visibly to the compiler */
    const int64_t stride = padded + ref_rng_int(&r, 1, 9); /* always a gap after the row */
    static const int32_t caps[4] = {0, 0, 32, 5};
    ref_gen_config gc = ref_gen_config_default(V, users);
    gc.padded = padded;
    gc.max_top_k = caps[ref_rng_int(&r, 0, 3)];
    gc.order = ref_rng_int(&r, 0, 1) ? MS_PENALTY_ORDER_TT : MS_PENALTY_ORDER_OPENAI;
    gc.mode = (ms_logprobs_mode)ref_rng_int(&r, 0, 2);
    if (mesh) {
        gc.rows = mesh_shape[0];
        gc.cols = mesh_shape[1];
        gc.axis = mesh_shape[2];
        gc.threads = trial % 8 == 0 ? 2 : 1; /* threads are the invariance suite's topic */
    }
    const ms_dtype dtype = (ms_dtype)ref_rng_int(&r, 0, 2);

    ms_generator *g = ref_gen_create(&gc);
    assert_non_null(g);
    ref_batch b;
    ref_batch_init(&b, dtype, users, padded, stride);
    for (int32_t u = 0; u < users; u++)
        fill_row(&b, u, V, &r);
    ref_batch_poison_gap(&b, &r);

    ref_raw_params *raw = calloc((size_t)users, sizeof *raw);
    ref_params *fmt = calloc((size_t)users, sizeof *fmt);
    uint64_t *seeds = calloc((size_t)users, sizeof *seeds);
    assert_non_null(raw);
    assert_non_null(fmt);
    assert_non_null(seeds);
    for (int32_t u = 0; u < users; u++) {
        raw[u] = random_params(&r);
        fmt[u] = ref_format(raw[u].temperature, raw[u].top_k, raw[u].top_p, raw[u].min_p,
                            raw[u].presence, raw[u].frequency, raw[u].repetition, gc.max_top_k);
        seeds[u] = ref_rng_seed63(&r);
    }
    /* Half the trials go through reset_sampling_params, half through format + set_params. */
    if (trial % 2 == 0) {
        assert_int_equal(ref_install_params(g, raw, users), MS_OK);
    } else {
        ms_slot_params *sp = calloc((size_t)users, sizeof *sp);
        assert_non_null(sp);
        for (int32_t u = 0; u < users; u++) {
            sp[u].temperature = raw[u].temperature;
            sp[u].top_k = (int32_t)raw[u].top_k;
            sp[u].top_p = raw[u].top_p;
            sp[u].min_p = raw[u].min_p;
            sp[u].presence_penalty = raw[u].presence;
            sp[u].frequency_penalty = raw[u].frequency;
            sp[u].repetition_penalty = raw[u].repetition;
        }
        /* Format through the library's own ms_params_format, one user at a time. */
        for (int32_t u = 0; u < users; u++) {
            float T = raw[u].temperature, P = raw[u].top_p, MP = raw[u].min_p;
            float PR = raw[u].presence, FR = raw[u].frequency, RP = raw[u].repetition;
            int64_t K = raw[u].top_k, EL = raw[u].enable_log_probs, NL = raw[u].num_logprobs;
            ms_sampling_params in;
            ms_sampling_params_init(&in);
            in.temperature = ms_fscalar(T);
            in.top_p = ms_fscalar(P);
            in.min_p = ms_fscalar(MP);
            in.presence_penalty = ms_fscalar(PR);
            in.frequency_penalty = ms_fscalar(FR);
            in.repetition_penalty = ms_fscalar(RP);
            in.top_k = ms_iscalar(K);
            in.enable_log_probs = ms_iscalar(EL);
            in.num_logprobs = ms_iscalar(NL);
            ms_errbuf eb;
            assert_int_equal(ms_params_format(&in, 1, gc.max_top_k, &sp[u], &eb), MS_OK);
        }
        ms_status s = ms_generator_set_params(g, sp, users, NULL);
        if (s != MS_OK)
            fail_msg("set_params: %s", ms_generator_last_error(g));
        free(sp);
    }
    /* The library's formatting must be the header's. */
    for (int32_t u = 0; u < users; u++) {
        ms_slot_params got;
        assert_int_equal(ms_generator_get_params(g, u, &got), MS_OK);
        if (got.temperature != fmt[u].temperature || got.top_k != fmt[u].top_k ||
            got.top_p != fmt[u].top_p || got.min_p != fmt[u].min_p ||
            got.repetition_penalty != fmt[u].repetition) {
            print_params(&raw[u], &fmt[u]);
            fail_msg("trial %llu slot %d: library formatted T %g k %d p %g min_p %g rep %g",
                     (unsigned long long)trial, u, got.temperature, got.top_k, got.top_p, got.min_p,
                     got.repetition_penalty);
        }
    }
    assert_int_equal(ref_install_seeds(g, seeds, users), MS_OK);
    ref_hist h;
    ref_hist_init(&h, users, V);
    /* One trial in five has long prompts: many history tokens split the scan into segments. */
    assert_int_equal(ref_hist_random(&h, g, &r, trial % 5 == 4 ? 150 : 8, 10), MS_OK);

    ref_out o;
    ref_out_init(&o, users, ms_generator_max_logprobs(g));
    ms_logits views[16];
    const int32_t nv = ref_batch_views(&b, g, views, 16);
    assert_true(nv == (mesh ? gc.rows * gc.cols : 1));
    ref_dist *d = calloc((size_t)users, sizeof *d);
    assert_non_null(d);

    for (int step = 0; step < STEPS; step++) {
        for (int32_t u = 0; u < users; u++) {
            ref_input in = {ref_batch_row(&b, u), V, fmt[u], gc.order,
                            h.in_prompt + (size_t)u * V, h.counts + (size_t)u * V};
            assert_int_equal(ref_dist_build(&d[u], &in), 0);
        }
        for (int k = 0; k <= PEEKS; k++) {
            const bool commit = k == PEEKS;
            ms_status s = commit ? ms_generator_sample(g, views, nv, false, &o.out)
                                 : ms_generator_sample_peek(g, views, nv, (uint64_t)k, &o.out);
            if (s != MS_OK)
                fail_msg("trial %llu step %d: %s: %s", (unsigned long long)trial, step,
                         ms_status_name(s), ms_generator_last_error(g));
            const uint64_t n = (uint64_t)step + (commit ? 0u : (uint64_t)k);
            for (int32_t u = 0; u < users; u++) {
                if (d[u].ambiguous) {
                    st->skipped_ambiguous++;
                    continue;
                }
                const int32_t want = ref_draw(&d[u], seeds[u], n);
                const uint8_t want_err = want < 0;
                st->compared++;
                if (o.tokens[u] != want || o.row_error[u] != want_err) {
                    if (d[u].bad)
                        st->mis_bad++;
                    else if (d[u].has_posinf)
                        st->mis_posinf++;
                    else if (d[u].greedy)
                        st->mis_greedy++;
                    else
                        st->mis_regular++;
                    if (st->mismatches++ < 12) {
                        fprintf(stderr,
                                "MISMATCH trial %llu%s (mesh %dx%d axis %d) step %d %s %d: slot %d of "
                                "%d, V %d padded %d stride %lld %s max_top_k %d order %s seed %llu "
                                "counter %llu: library %d (err %d), model %d (|S| %d%s%s)\n",
                                (unsigned long long)trial, mesh ? "m" : "", gc.rows, gc.cols, gc.axis,
                                step, commit ? "sample" : "peek",
                                commit ? 0 : k, u, users, V, padded, (long long)stride,
                                dtype_name(dtype), gc.max_top_k,
                                gc.order == MS_PENALTY_ORDER_TT ? "tt" : "openai",
                                (unsigned long long)seeds[u], (unsigned long long)n, o.tokens[u],
                                o.row_error[u], want, d[u].n_s, d[u].greedy ? ", greedy" : "",
                                d[u].has_posinf ? ", +inf" : "");
                        print_params(&raw[u], &fmt[u]);
                        if (st->mismatches <= 3)
                            print_row(ref_batch_row(&b, u), V);
                    }
                }
            }
            if (commit)
                ref_hist_commit(&h, o.tokens);
        }
        for (int32_t u = 0; u < users; u++)
            ref_dist_free(&d[u]);
    }
    st->trials++;
    free(d);
    ref_out_free(&o);
    ref_hist_free(&h);
    free(raw);
    free(fmt);
    free(seeds);
    ref_batch_free(&b);
    ms_generator_destroy(g);
}

static void test_exact_token_agreement(void **state)
{
    (void)state;
    stats st;
    memset(&st, 0, sizeof st);
    const int trials = ref_scale_sanitizer() ? 600 : 2500;
    for (int t = 0; t < trials; t++)
        run_trial((uint64_t)t, &st, false);
    report(&st, trials, "1x1");
}

/* The same on host meshes: the token may not depend on how the vocabulary is sharded. */
static void test_exact_token_agreement_meshes(void **state)
{
    (void)state;
    stats st;
    memset(&st, 0, sizeof st);
    const int trials = ref_scale_sanitizer() ? 100 : 400;
    for (int t = 0; t < trials; t++)
        run_trial((uint64_t)t, &st, true);
    report(&st, trials, "meshes");
}

static void report(const stats *s, int trials, const char *what)
{
    const stats st = *s;
    printf("agreement (%s): %d trials, %ld draws compared, %ld skipped (ambiguous threshold), %ld "
           "mismatches\n",
           what, trials, st.compared, st.skipped_ambiguous, st.mismatches);
    printf("mismatches by row kind: regular %ld, greedy %ld, +inf %ld, bad %ld\n", st.mis_regular,
           st.mis_greedy, st.mis_posinf, st.mis_bad);
    assert_true(st.compared > 10000);
    /* Skips are rare boundary cases; many would mean the model is not checking much. */
    assert_true(st.skipped_ambiguous * 20 < st.compared);
    assert_int_equal(st.mismatches, 0);
}

/* Focused sweep: one row, every parameter combination of a grid, both orders and dtypes, many
 * seeds: no randomness in the parameters so a failure names its combination directly. */
static void test_grid_agreement(void **state)
{
    (void)state;
    static const float Ts[4] = {0.0f, 0.5f, 1.0f, 1.7f};
    static const int64_t ks[5] = {0, 1, 3, 17, 64};
    static const float ps[4] = {0.0f, 0.35f, 0.9f, 1.0f};
    static const float mps[3] = {0.0f, 0.05f, 0.3f};
    const int32_t V = 97, padded = 104, users = (int32_t)(4 * 5 * 4 * 3);
    long mismatches = 0, compared = 0, skipped = 0;
    for (int variant = 0; variant < 6; variant++) {
        ref_rng r;
        ref_rng_init(&r, 4242 + (uint64_t)variant);
        const ms_dtype dtype = (ms_dtype)(variant % 3);
        ref_gen_config gc = ref_gen_config_default(V, users);
        gc.padded = padded;
        gc.order = variant % 2 ? MS_PENALTY_ORDER_TT : MS_PENALTY_ORDER_OPENAI;
        gc.max_top_k = variant >= 4 ? 16 : 0;
        ms_generator *g = ref_gen_create(&gc);
        assert_non_null(g);
        ref_batch b;
        ref_batch_init(&b, dtype, users, padded, padded + 3);
        float row[97];
        for (int32_t t = 0; t < V; t++)
            row[t] = (float)(floor(ref_rng_normal(&r) * 8.0) / 4.0); /* ties */
        row[5] = NAN;
        row[11] = -INFINITY;
        ref_raw_params raw[240];
        ref_params fmt[240];
        uint64_t seeds[240];
        const bool pen = variant >= 2;
        for (int32_t u = 0; u < users; u++) {
            for (int32_t t = 0; t < V; t++)
                ref_batch_set(&b, u, t, row[t]);
            for (int32_t t = V; t < padded; t++)
                ref_batch_set(&b, u, t, 1e9f);
            int i = u;
            raw[u] = ref_raw_default();
            raw[u].temperature = Ts[i % 4];
            i /= 4;
            raw[u].top_k = ks[i % 5];
            i /= 5;
            raw[u].top_p = ps[i % 4];
            i /= 4;
            raw[u].min_p = mps[i % 3];
            if (pen) {
                raw[u].presence = 0.4f;
                raw[u].frequency = 0.3f;
                raw[u].repetition = 1.3f;
            }
            fmt[u] = ref_format(raw[u].temperature, raw[u].top_k, raw[u].top_p, raw[u].min_p,
                                raw[u].presence, raw[u].frequency, raw[u].repetition, gc.max_top_k);
            seeds[u] = 1000003ull * (uint64_t)u + (uint64_t)variant;
        }
        ref_batch_poison_gap(&b, &r);
        assert_int_equal(ref_install_params(g, raw, users), MS_OK);
        assert_int_equal(ref_install_seeds(g, seeds, users), MS_OK);
        ref_hist h;
        ref_hist_init(&h, users, V);
        if (pen) {
            /* Same history for everyone: the top tokens in prompt and output. */
            int32_t *pr = malloc(sizeof(int32_t) * (size_t)users * 4);
            int32_t *ou = malloc(sizeof(int32_t) * (size_t)users * 6);
            assert_non_null(pr);
            assert_non_null(ou);
            ref_dist d0;
            ref_input in0 = {row, V, ref_format(1, 0, 1, 0, 0, 0, 1, 0), gc.order, NULL, NULL};
            assert_int_equal(ref_dist_build(&d0, &in0), 0);
            for (int32_t u = 0; u < users; u++) {
                for (int j = 0; j < 4; j++)
                    pr[u * 4 + j] = d0.order[j * 2];
                for (int j = 0; j < 6; j++)
                    ou[u * 6 + j] = d0.order[j / 2];
            }
            ref_dist_free(&d0);
            assert_int_equal(ref_hist_install(&h, g, pr, 4, ou, 6), MS_OK);
            free(pr);
            free(ou);
        }
        ref_out o;
        ref_out_init(&o, users, ms_generator_max_logprobs(g));
        ms_logits lg = ref_batch_logits(&b);
        ref_dist *d = calloc((size_t)users, sizeof *d);
        assert_non_null(d);
        for (int32_t u = 0; u < users; u++) {
            ref_input in = {ref_batch_row(&b, u), V, fmt[u], gc.order, h.in_prompt + (size_t)u * V,
                            h.counts + (size_t)u * V};
            assert_int_equal(ref_dist_build(&d[u], &in), 0);
        }
        const int offsets = ref_scale_sanitizer() ? 8 : 24;
        for (int k = 0; k < offsets; k++) {
            assert_int_equal(ms_generator_sample_peek(g, &lg, 1, (uint64_t)k * 7919u, &o.out), MS_OK);
            for (int32_t u = 0; u < users; u++) {
                if (d[u].ambiguous) {
                    skipped++;
                    continue;
                }
                int32_t want = ref_draw(&d[u], seeds[u], (uint64_t)k * 7919u);
                compared++;
                if (want != o.tokens[u] && mismatches++ < 10) {
                    fprintf(stderr,
                            "GRID MISMATCH variant %d (%s, %s, max_top_k %d, penalties %d) slot %d "
                            "offset %d: library %d model %d |S| %d\n",
                            variant, dtype_name(dtype), variant % 2 ? "tt" : "openai", gc.max_top_k,
                            pen, u, k * 7919, o.tokens[u], want, d[u].n_s);
                    print_params(&raw[u], &fmt[u]);
                }
            }
        }
        for (int32_t u = 0; u < users; u++)
            ref_dist_free(&d[u]);
        free(d);
        ref_out_free(&o);
        ref_hist_free(&h);
        ref_batch_free(&b);
        ms_generator_destroy(g);
    }
    printf("grid: %ld draws compared, %ld skipped, %ld mismatches\n", compared, skipped, mismatches);
    assert_int_equal(mismatches, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_token_agreement),
        cmocka_unit_test(test_exact_token_agreement_meshes),
        cmocka_unit_test(test_grid_agreement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
