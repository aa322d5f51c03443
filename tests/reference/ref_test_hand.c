/* (c) Hand-computed cases: greedy ties, padding, and the penalty formulas on rows small enough
 * to check on paper. Each expectation is written out, then also checked against the model. */
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

/* A small f32 generator: users rows of V logits (padded to `padded`). */
typedef struct small {
    ms_generator *g;
    ref_batch b;
    ref_out o;
    ms_logits lg;
    int32_t V, users;
} small;

static void small_init(small *s, int32_t V, int32_t padded, int32_t users, ms_penalty_order order,
                       ms_dtype dtype)
{
    ref_gen_config gc = ref_gen_config_default(V, users);
    gc.padded = padded;
    gc.order = order;
    s->g = ref_gen_create(&gc);
    assert_non_null(s->g);
    ref_batch_init(&s->b, dtype, users, padded, padded);
    ref_out_init(&s->o, users, ms_generator_max_logprobs(s->g));
    s->lg = ref_batch_logits(&s->b);
    s->V = V;
    s->users = users;
}

static void small_free(small *s)
{
    ref_out_free(&s->o);
    ref_batch_free(&s->b);
    ms_generator_destroy(s->g);
}

static void small_row(small *s, int32_t u, const float *z)
{
    for (int32_t t = 0; t < s->b.padded; t++)
        ref_batch_set(&s->b, u, t, t < s->V ? z[t] : 1e30f);
}

static void small_params_all(small *s, ref_raw_params p)
{
    ref_raw_params *raw = calloc((size_t)s->users, sizeof *raw);
    assert_non_null(raw);
    for (int32_t u = 0; u < s->users; u++)
        raw[u] = p;
    assert_int_equal(ref_install_params(s->g, raw, s->users), MS_OK);
    free(raw);
}

static int32_t small_sample(small *s, int32_t u)
{
    assert_int_equal(ms_generator_sample(s->g, &s->lg, 1, false, &s->o.out), MS_OK);
    return s->o.tokens[u];
}

static int32_t small_peek(small *s, int32_t u, uint64_t off)
{
    assert_int_equal(ms_generator_sample_peek(s->g, &s->lg, 1, off, &s->o.out), MS_OK);
    return s->o.tokens[u];
}

static ref_raw_params greedy(void)
{
    ref_raw_params p = ref_raw_default();
    p.temperature = 0.0f;
    return p;
}

static void set_output(small *s, int32_t u, const int32_t *tokens, int32_t n)
{
    int32_t slot = u;
    assert_int_equal(ms_generator_reset_output_state(s->g, tokens, 1, n, &slot), MS_OK);
}

static void set_prompt(small *s, int32_t u, const int32_t *tokens, int32_t n)
{
    int32_t slot = u;
    assert_int_equal(ms_generator_reset_prompt_tokens(s->g, tokens, 1, n, &slot), MS_OK);
}

static void test_greedy_ties_lowest_id(void **state)
{
    (void)state;
    /* Max 3.0 at ids 17, 40, 41; three greedy spellings and many seeds all give 17. */
    const int32_t V = 64;
    float z[64];
    for (int t = 0; t < V; t++)
        z[t] = (float)(t % 7) * 0.25f;
    z[17] = z[40] = z[41] = 3.0f;
    z[50] = NAN;
    small s;
    small_init(&s, V, 72, 6, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32);
    for (int u = 0; u < 6; u++)
        small_row(&s, u, z);
    ref_raw_params raw[6];
    for (int u = 0; u < 6; u++)
        raw[u] = ref_raw_default();
    raw[0].temperature = 0.0f;                       /* T == 0 */
    raw[1].temperature = 0.8f, raw[1].top_k = 1;     /* k == 1 */
    raw[2].temperature = 2.0f, raw[2].top_p = 0.0f;  /* p == 0 */
    raw[3].temperature = 0.0f, raw[3].top_k = 50;    /* T == 0 wins over k */
    raw[4].temperature = 1.0f, raw[4].top_k = 1, raw[4].min_p = 0.5f;
    raw[5].temperature = 0.0f, raw[5].top_p = 0.7f;
    assert_int_equal(ref_install_params(s.g, raw, 6), MS_OK);
    for (int rep = 0; rep < 10; rep++) {
        int64_t seeds[6];
        for (int u = 0; u < 6; u++)
            seeds[u] = rep * 6 + u;
        assert_int_equal(ms_generator_reset_seed(s.g, seeds, 6, NULL, 6), MS_OK);
        for (uint64_t off = 0; off < 5; off++) {
            small_peek(&s, 0, off);
            for (int u = 0; u < 6; u++) {
                assert_int_equal(s.o.tokens[u], 17);
                assert_int_equal(s.o.row_error[u], 0);
            }
        }
    }
    /* Ties created by bf16 rounding: 3.0 and 3.0078125 are distinct in f32; 3.001 rounds to 3.0 in
     * bf16, so in bf16 the lowest id (5) wins, in f32 the exact maximum (9). */
    small sb;
    small_init(&sb, 16, 16, 1, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_BF16);
    float zb[16] = {0};
    zb[5] = 3.0f;
    zb[9] = 3.001f;
    small_row(&sb, 0, zb);
    small_params_all(&sb, greedy());
    assert_true(sb.b.exact[9] == 3.0f);
    assert_int_equal(small_peek(&sb, 0, 0), 5);
    small sf;
    small_init(&sf, 16, 16, 1, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32);
    small_row(&sf, 0, zb);
    small_params_all(&sf, greedy());
    assert_int_equal(small_peek(&sf, 0, 0), 9);
    /* Greedy over +inf: the lowest +inf id. */
    zb[3] = INFINITY;
    zb[12] = INFINITY;
    small_row(&sf, 0, zb);
    assert_int_equal(small_peek(&sf, 0, 0), 3);
    small_free(&sb);
    small_free(&sf);
    small_free(&s);
}

static void test_padding_never_sampled(void **state)
{
    (void)state;
    /* V 50 padded to 64 with values that would win everything; a flat distribution so every
     * valid token is likely. */
    const int32_t V = 50, padded = 64, users = 64;
    static const float hostile[4] = {INFINITY, 1e30f, 60000.0f, NAN};
    for (int dt = 0; dt < 3; dt++) {
        ref_gen_config gc = ref_gen_config_default(V, users);
        gc.padded = padded;
        ms_generator *g = ref_gen_create(&gc);
        assert_non_null(g);
        ref_batch b;
        ref_batch_init(&b, (ms_dtype)dt, users, padded, padded + 5);
        ref_rng r;
        ref_rng_init(&r, 77 + (uint64_t)dt);
        for (int32_t u = 0; u < users; u++) {
            for (int32_t t = 0; t < padded; t++)
                ref_batch_set(&b, u, t, t < V ? (float)(0.1 * ref_rng_normal(&r)) : hostile[(t + u) % 4]);
        }
        ref_batch_poison_gap(&b, &r);
        ref_raw_params *raw = calloc((size_t)users, sizeof *raw);
        uint64_t *seeds = calloc((size_t)users, sizeof *seeds);
        assert_non_null(raw);
        assert_non_null(seeds);
        for (int32_t u = 0; u < users; u++) {
            raw[u] = ref_raw_default();
            raw[u].temperature = u % 8 == 0 ? 0.0f : 5.0f;
            raw[u].top_k = u % 3 == 0 ? 0 : 40;
            raw[u].top_p = u % 5 == 0 ? 0.5f : 1.0f;
            raw[u].min_p = u % 7 == 0 ? 0.2f : 0.0f;
            seeds[u] = (uint64_t)u * 31u + 5u;
        }
        assert_int_equal(ref_install_params(g, raw, users), MS_OK);
        assert_int_equal(ref_install_seeds(g, seeds, users), MS_OK);
        ref_out o;
        ref_out_init(&o, users, ms_generator_max_logprobs(g));
        ms_logits lg = ref_batch_logits(&b);
        bool seen[50] = {false};
        for (uint64_t off = 0; off < 60; off++) {
            assert_int_equal(ms_generator_sample_peek(g, &lg, 1, off, &o.out), MS_OK);
            for (int32_t u = 0; u < users; u++) {
                if (o.tokens[u] < 0 || o.tokens[u] >= V)
                    fail_msg("%s slot %d offset %llu: token %d outside [0, %d)",
                             dt == 0 ? "f32" : dt == 1 ? "bf16" : "f16", u, (unsigned long long)off,
                             o.tokens[u], V);
                assert_int_equal(o.row_error[u], 0);
                seen[o.tokens[u]] = true;
            }
        }
        int n_seen = 0;
        for (int t = 0; t < V; t++)
            n_seen += seen[t];
        assert_true(n_seen > 45); /* the test did explore the vocabulary */
        /* A row whose only finite values are padding is bad. */
        for (int32_t t = 0; t < padded; t++)
            ref_batch_set(&b, 3, t, t < V ? -INFINITY : 1.0f);
        assert_int_equal(ms_generator_sample_peek(g, &lg, 1, 0, &o.out), MS_OK);
        assert_int_equal(o.tokens[3], -1);
        assert_int_equal(o.row_error[3], 1);
        ref_out_free(&o);
        free(raw);
        free(seeds);
        ref_batch_free(&b);
        ms_generator_destroy(g);
    }
}

static void test_repetition_moves_greedy_off_target(void **state)
{
    (void)state;
    /* All 4.0, target 7 at 5.0: 5 / 1.5 = 3.33 < 4, so greedy moves to id 0. */
    const int32_t V = 16;
    float z[16];
    for (int t = 0; t < V; t++)
        z[t] = 4.0f;
    z[7] = 5.0f;
    small s;
    small_init(&s, V, V, 4, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32);
    for (int u = 0; u < 4; u++)
        small_row(&s, u, z);
    ref_raw_params p = greedy();
    p.repetition = 1.5f;
    small_params_all(&s, p);
    const int32_t tgt = 7, other = 3;
    set_prompt(&s, 0, &tgt, 1);   /* target in prompt */
    set_output(&s, 1, &tgt, 1);   /* target in output */
    set_prompt(&s, 2, &other, 1); /* another token in prompt */
    small_peek(&s, 0, 0);
    assert_int_equal(s.o.tokens[0], 0);
    assert_int_equal(s.o.tokens[1], 0);
    assert_int_equal(s.o.tokens[2], 7);
    assert_int_equal(s.o.tokens[3], 7);
    /* Repetition 1.2: 5 / 1.2 = 4.17 > 4, the target stays. */
    p.repetition = 1.2f;
    small_params_all(&s, p);
    small_peek(&s, 0, 0);
    assert_int_equal(s.o.tokens[0], 7);
    /* Negative logits are multiplied: -1 * 2 = -2 < -1.5. */
    float zn[16];
    for (int t = 0; t < V; t++)
        zn[t] = -10.0f;
    zn[4] = -1.0f;
    zn[9] = -1.5f;
    small_row(&s, 0, zn);
    const int32_t four = 4;
    set_prompt(&s, 0, &four, 1);
    p.repetition = 2.0f;
    small_params_all(&s, p);
    assert_int_equal(small_peek(&s, 0, 0), 9);
    p.repetition = 1.0f; /* penalties off */
    small_params_all(&s, p);
    assert_int_equal(small_peek(&s, 0, 0), 4);
    small_free(&s);
}

static void test_frequency_accumulates_over_commits(void **state)
{
    (void)state;
    /* Zeros with the target 3 at 1.0, frequency 0.3, greedy: 1 - 0.3c stays > 0 for c <= 3, then
     * the target drops below the zeros, which are taken in id order and penalised in turn. */
    const int32_t V = 8;
    float z[8] = {0, 0, 0, 1.0f, 0, 0, 0, 0};
    small s;
    small_init(&s, V, V, 2, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32);
    small_row(&s, 0, z);
    small_row(&s, 1, z);
    ref_raw_params p = greedy();
    p.frequency = 0.3f;
    small_params_all(&s, p);
    const int32_t want[12] = {3, 3, 3, 3, 0, 1, 2, 4, 5, 6, 7, 3};
    /* The same sequence from the model, step by step. */
    int32_t counts[8] = {0};
    for (int step = 0; step < 12; step++) {
        ref_input in = {z, V, ref_format(0, 0, 1, 0, 0, 0.3f, 1, 0), MS_PENALTY_ORDER_OPENAI, NULL,
                        counts};
        ref_dist d;
        assert_int_equal(ref_dist_build(&d, &in), 0);
        const int32_t model = ref_draw(&d, 0, 0);
        ref_dist_free(&d);
        assert_int_equal(model, want[step]);
        const int32_t got = small_sample(&s, 0);
        if (got != want[step])
            fail_msg("step %d: library %d, expected %d", step, got, want[step]);
        counts[got]++;
        int32_t c = -1;
        bool inp = true;
        assert_int_equal(ms_generator_get_token_state(s.g, 0, got, &c, &inp), MS_OK);
        assert_int_equal(c, counts[got]);
        assert_false(inp);
    }
    /* reset_output_state clears the counts: the target is back. */
    assert_int_equal(ms_generator_reset_output_state(s.g, NULL, 0, 0, NULL), MS_OK);
    assert_int_equal(small_peek(&s, 0, 0), 3);
    small_free(&s);
}

static void test_presence_once_and_negative(void **state)
{
    (void)state;
    const int32_t V = 8;
    float z[8] = {0, 0, 1.0f, 0, 0, 0, 0, 0};
    small s;
    small_init(&s, V, V, 1, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32);
    small_row(&s, 0, z);
    const int32_t three[3] = {2, 2, 2};
    ref_raw_params p = greedy();
    p.presence = 0.6f;
    small_params_all(&s, p);
    set_output(&s, 0, three, 3);
    int32_t c = 0;
    bool inp = true;
    assert_int_equal(ms_generator_get_token_state(s.g, 0, 2, &c, &inp), MS_OK);
    assert_int_equal(c, 3);
    /* Once: 1 - 0.6 = 0.4 > 0 (per occurrence would be 1 - 1.8 < 0). */
    assert_int_equal(small_peek(&s, 0, 0), 2);
    p.presence = 1.5f; /* 1 - 1.5 < 0 */
    small_params_all(&s, p);
    assert_int_equal(small_peek(&s, 0, 0), 0);
    /* Negative presence raises: 0.0 - (-1.0) = 1.0 > 0.5. */
    float zn[8] = {0.5f, -1, -1, -1, 0.0f, -1, -1, -1};
    small_row(&s, 0, zn);
    p.presence = -1.0f;
    small_params_all(&s, p);
    const int32_t four = 4;
    set_output(&s, 0, &four, 1);
    assert_int_equal(small_peek(&s, 0, 0), 4);
    assert_int_equal(ms_generator_reset_output_state(s.g, NULL, 0, 0, NULL), MS_OK);
    assert_int_equal(small_peek(&s, 0, 0), 0);
    /* Presence in the prompt alone does nothing. */
    set_prompt(&s, 0, &four, 1);
    assert_int_equal(small_peek(&s, 0, 0), 0);
    small_free(&s);
}

static void test_penalty_orders_differ(void **state)
{
    (void)state;
    /* Target 2 at 0.5 in the output once, presence 1, repetition 2, competitor 0 at -0.9.
     * OpenAI: 0.5 / 2 - 1 = -0.75 > -0.9 -> 2.  TT: (0.5 - 1) * 2 = -1.0 < -0.9 -> 0. */
    const float z[4] = {-0.9f, -5.0f, 0.5f, -5.0f};
    const int32_t two = 2;
    int32_t got[2];
    for (int o = 0; o < 2; o++) {
        small s;
        const ms_penalty_order order = o ? MS_PENALTY_ORDER_TT : MS_PENALTY_ORDER_OPENAI;
        small_init(&s, 4, 4, 1, order, MS_DTYPE_F32);
        small_row(&s, 0, z);
        ref_raw_params p = greedy();
        p.presence = 1.0f;
        p.repetition = 2.0f;
        small_params_all(&s, p);
        set_output(&s, 0, &two, 1);
        got[o] = small_peek(&s, 0, 0);
        int32_t cnt[4] = {0, 0, 1, 0};
        ref_input in = {z, 4, ref_format(0, 0, 1, 0, 1.0f, 0, 2.0f, 0), order, NULL, cnt};
        ref_dist d;
        assert_int_equal(ref_dist_build(&d, &in), 0);
        assert_true(d.zp[2] == (o ? -1.0f : -0.75f));
        assert_int_equal(ref_draw(&d, 0, 0), o ? 0 : 2);
        ref_dist_free(&d);
        small_free(&s);
    }
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 0);
}

/* Penalised values, read back through PENALIZED log-probs: differences of log-probs are
 * differences of z' (the log-sum-exp cancels), checked against hand values. */
static void test_penalized_values_via_logprobs(void **state)
{
    (void)state;
    const float z[6] = {2.0f, -2.0f, 3.0f, 0.5f, 1.0f, -1.0f};
    const int32_t prompt[3] = {0, 1, 5};
    const int32_t out[7] = {1, 1, 2, 2, 2, 3, 5};
    for (int o = 0; o < 2; o++) {
        const ms_penalty_order order = o ? MS_PENALTY_ORDER_TT : MS_PENALTY_ORDER_OPENAI;
        ref_gen_config gc = ref_gen_config_default(6, 1);
        gc.order = order;
        gc.mode = MS_LOGPROBS_PENALIZED;
        ms_generator *g = ref_gen_create(&gc);
        assert_non_null(g);
        ref_batch b;
        ref_batch_init(&b, MS_DTYPE_F32, 1, 6, 6);
        for (int t = 0; t < 6; t++)
            ref_batch_set(&b, 0, t, z[t]);
        ref_raw_params p = greedy();
        p.presence = 0.5f;
        p.frequency = 0.25f;
        p.repetition = 2.0f;
        p.enable_log_probs = 1;
        p.num_logprobs = 6;
        assert_int_equal(ref_install_params(g, &p, 1), MS_OK);
        assert_int_equal(ms_generator_reset_prompt_tokens(g, prompt, 1, 3, NULL), MS_OK);
        assert_int_equal(ms_generator_reset_output_state(g, out, 1, 7, NULL), MS_OK);
        ref_out ro;
        ref_out_init(&ro, 1, ms_generator_max_logprobs(g));
        ms_logits lg = ref_batch_logits(&b);
        assert_int_equal(ms_generator_sample_peek(g, &lg, 1, 0, &ro.out), MS_OK);
        /* Same values as ref_test_model's hand case. */
        const float openai[6] = {1.0f, -5.0f, 0.25f, -0.5f, 1.0f, -2.75f};
        const float tt[6] = {1.0f, -6.0f, 0.875f, -0.5f, 1.0f, -3.5f};
        const float *want = o ? tt : openai;
        assert_int_equal(ro.top_count[0], 6);
        double lp[6];
        bool have[6] = {false};
        for (int i = 0; i < 6; i++) {
            int32_t id = ro.top_ids[i];
            assert_true(id >= 0 && id < 6);
            lp[id] = ro.top_logprobs[i];
            have[id] = true;
        }
        for (int t = 0; t < 6; t++)
            assert_true(have[t]);
        for (int t = 1; t < 6; t++) {
            double diff = lp[t] - lp[0], wdiff = (double)want[t] - (double)want[0];
            if (fabs(diff - wdiff) > 1e-5)
                fail_msg("%s: z'[%d] - z'[0] = %.7g, want %.7g", o ? "tt" : "openai", t, diff, wdiff);
        }
        /* Greedy argmax of z' (ties 0 and 4 at 1.0): the lowest id. */
        assert_int_equal(ro.tokens[0], 0);
        ref_out_free(&ro);
        ref_batch_free(&b);
        ms_generator_destroy(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_ties_lowest_id),
        cmocka_unit_test(test_padding_never_sampled),
        cmocka_unit_test(test_repetition_moves_greedy_off_target),
        cmocka_unit_test(test_frequency_accumulates_over_commits),
        cmocka_unit_test(test_presence_once_and_negative),
        cmocka_unit_test(test_penalty_orders_differ),
        cmocka_unit_test(test_penalized_values_via_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
