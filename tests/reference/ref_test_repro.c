/* (e) Reproducibility and slot independence; (f) bad rows and +inf rows.
 *
 * The noise of a token depends only on (seed, counter, token id), so a user's tokens may not
 * depend on its slot, its batch mates, the generator instance or whether a draw was peeked or
 * committed. Bad rows give -1 and a flag without touching anyone else; +inf tokens share the
 * mass equally. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ms_rng.h"
#include "ref_model.h"
#include "ref_util.h"

/* ---- a generator with a mirror of its inputs ---- */
typedef struct rig {
    ms_generator *g;
    ref_gen_config gc;
    ref_batch b;
    ref_out o;
    ms_logits lg;
    ref_raw_params *raw;
    uint64_t *seeds;
} rig;

static void rig_init(rig *x, int32_t V, int32_t padded, int32_t users, int64_t stride, ms_dtype dt,
                     ms_logprobs_mode mode)
{
    x->gc = ref_gen_config_default(V, users);
    x->gc.padded = padded;
    x->gc.mode = mode;
    x->g = ref_gen_create(&x->gc);
    assert_non_null(x->g);
    ref_batch_init(&x->b, dt, users, padded, stride);
    ref_out_init(&x->o, users, ms_generator_max_logprobs(x->g));
    x->lg = ref_batch_logits(&x->b);
    x->raw = calloc((size_t)users, sizeof *x->raw);
    x->seeds = calloc((size_t)users, sizeof *x->seeds);
    assert_non_null(x->raw);
    assert_non_null(x->seeds);
}

static void rig_free(rig *x)
{
    free(x->raw);
    free(x->seeds);
    ref_out_free(&x->o);
    ref_batch_free(&x->b);
    ms_generator_destroy(x->g);
}

static void rig_apply(rig *x)
{
    assert_int_equal(ref_install_params(x->g, x->raw, x->gc.users), MS_OK);
    assert_int_equal(ref_install_seeds(x->g, x->seeds, x->gc.users), MS_OK);
}

static void random_mate(rig *x, int32_t u, ref_rng *r)
{
    const int32_t V = x->gc.vocab;
    const double sg = 0.5 + 3.0 * ref_rng_uniform(r);
    for (int32_t t = 0; t < x->b.padded; t++)
        ref_batch_set(&x->b, u, t, t < V ? (float)(sg * ref_rng_normal(r)) : INFINITY);
    ref_raw_params p = ref_raw_default();
    static const float Ts[4] = {0.0f, 0.6f, 1.0f, 2.0f};
    static const int64_t ks[4] = {0, 1, 7, 40};
    p.temperature = Ts[ref_rng_int(r, 0, 3)];
    p.top_k = ks[ref_rng_int(r, 0, 3)];
    p.top_p = ref_rng_int(r, 0, 1) ? 1.0f : 0.8f;
    p.min_p = ref_rng_int(r, 0, 1) ? 0.0f : 0.05f;
    if (ref_rng_int(r, 0, 1)) {
        p.presence = 1.0f;
        p.frequency = 0.5f;
        p.repetition = 1.7f;
    }
    p.enable_log_probs = ref_rng_int(r, 0, 1);
    p.num_logprobs = 3;
    x->raw[u] = p;
    x->seeds[u] = ref_rng_seed63(r);
}

/* e1: the same user in slot 1 of 4, slot 6 of 8 and slot 0 of 1 (bf16 there), with different
 * mates, paddings, strides and log-prob settings, gives the same tokens, and the model's. */
static void test_slot_and_mates_independence(void **state)
{
    (void)state;
    const int32_t V = 257;
    ref_rng r;
    ref_rng_init(&r, 31337);
    float xrow[257];
    for (int32_t t = 0; t < V; t++) /* bf16-exact values so the bf16 rig sees the same row */
        xrow[t] = ref_bf16_to_f32(ref_f32_to_bf16((float)(2.0 * ref_rng_normal(&r))));
    xrow[10] = NAN;
    ref_raw_params xp = ref_raw_default();
    xp.temperature = 0.9f;
    xp.top_k = 0;
    xp.top_p = 0.95f;
    xp.min_p = 0.02f;
    xp.presence = 0.3f;
    xp.frequency = 0.2f;
    xp.repetition = 1.1f;
    const uint64_t xseed = 0x5EED5EEDull;
    const int32_t xprompt[5] = {3, 77, 200, 201, 256};

    rig a, b, c;
    rig_init(&a, V, V, 4, V + 3, MS_DTYPE_F32, MS_LOGPROBS_RAW);
    rig_init(&b, V, V + 7, 8, V + 7, MS_DTYPE_F32, MS_LOGPROBS_PROCESSED);
    rig_init(&c, V, V, 1, V, MS_DTYPE_BF16, MS_LOGPROBS_RAW);
    rig *rigs[3] = {&a, &b, &c};
    const int32_t xslot[3] = {1, 6, 0};
    for (int i = 0; i < 3; i++) {
        rig *x = rigs[i];
        for (int32_t u = 0; u < x->gc.users; u++)
            if (u != xslot[i])
                random_mate(x, u, &r);
        for (int32_t t = 0; t < x->b.padded; t++)
            ref_batch_set(&x->b, xslot[i], t, t < V ? xrow[t] : 1e30f);
        x->raw[xslot[i]] = xp;
        x->raw[xslot[i]].enable_log_probs = i == 1;
        x->raw[xslot[i]].num_logprobs = i == 1 ? 5 : 0;
        x->seeds[xslot[i]] = xseed;
        ref_batch_poison_gap(&x->b, &r);
        rig_apply(x);
        /* Mates get random histories, x its prompt. */
        ref_hist h;
        ref_hist_init(&h, x->gc.users, V);
        assert_int_equal(ref_hist_random(&h, x->g, &r, 6, 6), MS_OK);
        ref_hist_free(&h);
        const int32_t slot = xslot[i];
        assert_int_equal(ms_generator_reset_prompt_tokens(x->g, xprompt, 1, 5, &slot), MS_OK);
        assert_int_equal(ms_generator_reset_output_state(x->g, NULL, 0, 0, &slot), MS_OK);
    }
    uint8_t inp[257] = {0};
    int32_t counts[257] = {0};
    for (int j = 0; j < 5; j++)
        inp[xprompt[j]] = 1;
    const ref_params fx = ref_format(xp.temperature, xp.top_k, xp.top_p, xp.min_p, xp.presence,
                                     xp.frequency, xp.repetition, 0);
    for (int step = 0; step < 10; step++) {
        ref_dist d;
        ref_input in = {xrow, V, fx, MS_PENALTY_ORDER_OPENAI, inp, counts};
        assert_int_equal(ref_dist_build(&d, &in), 0);
        for (int k = 0; k <= 12; k++) {
            const bool commit = k == 12;
            int32_t got[3];
            for (int i = 0; i < 3; i++) {
                rig *x = rigs[i];
                ms_status s = commit ? ms_generator_sample(x->g, &x->lg, 1, false, &x->o.out)
                                     : ms_generator_sample_peek(x->g, &x->lg, 1, (uint64_t)k, &x->o.out);
                assert_int_equal(s, MS_OK);
                got[i] = x->o.tokens[xslot[i]];
            }
            const int32_t want = ref_draw(&d, xseed, (uint64_t)step + (commit ? 0u : (uint64_t)k));
            if (got[0] != got[1] || got[0] != got[2] || (!d.ambiguous && got[0] != want))
                fail_msg("step %d %s %d: slot1/4 %d, slot6/8 %d, slot0/1 bf16 %d, model %d", step,
                         commit ? "sample" : "peek", k, got[0], got[1], got[2], want);
            if (commit && got[0] >= 0)
                counts[got[0]]++;
        }
        ref_dist_free(&d);
    }
    rig_free(&a);
    rig_free(&b);
    rig_free(&c);
}

/* e2: two instances with identical configuration and inputs agree on everything. */
static void test_two_instances_agree(void **state)
{
    (void)state;
    const int32_t V = 300, users = 12;
    rig x[2];
    for (int i = 0; i < 2; i++) {
        ref_rng r;
        ref_rng_init(&r, 555); /* identical streams: identical rigs */
        rig_init(&x[i], V, 304, users, 310, MS_DTYPE_F16, MS_LOGPROBS_PENALIZED);
        for (int32_t u = 0; u < users; u++)
            random_mate(&x[i], u, &r);
        ref_batch_poison_gap(&x[i].b, &r);
        rig_apply(&x[i]);
        ref_hist h;
        ref_hist_init(&h, users, V);
        assert_int_equal(ref_hist_random(&h, x[i].g, &r, 6, 6), MS_OK);
        ref_hist_free(&h);
    }
    const int32_t cap = x[0].o.cap;
    for (int step = 0; step < 20; step++) {
        for (int i = 0; i < 2; i++)
            assert_int_equal(ms_generator_sample(x[i].g, &x[i].lg, 1, false, &x[i].o.out), MS_OK);
        for (int32_t u = 0; u < users; u++) {
            assert_int_equal(x[0].o.tokens[u], x[1].o.tokens[u]);
            assert_int_equal(x[0].o.rank[u], x[1].o.rank[u]);
            assert_int_equal(x[0].o.top_count[u], x[1].o.top_count[u]);
            assert_memory_equal(&x[0].o.logprob[u], &x[1].o.logprob[u], sizeof(float));
            assert_memory_equal(x[0].o.top_ids + (size_t)u * cap, x[1].o.top_ids + (size_t)u * cap,
                                sizeof(int32_t) * (size_t)x[0].o.top_count[u]);
            assert_memory_equal(x[0].o.top_logprobs + (size_t)u * cap,
                                x[1].o.top_logprobs + (size_t)u * cap,
                                sizeof(float) * (size_t)x[0].o.top_count[u]);
        }
    }
    rig_free(&x[0]);
    rig_free(&x[1]);
}

/* e3: commit vs peek. sample() at step n == peek(0) after n commits; without penalties also ==
 * peek(n) before any commit, and peek(d) after n commits == peek(n + d) at the start. */
static void test_commit_vs_peek(void **state)
{
    (void)state;
    const int32_t V = 150, users = 6;
    ref_rng r;
    ref_rng_init(&r, 808);
    rig x;
    rig_init(&x, V, V, users, V, MS_DTYPE_F32, MS_LOGPROBS_RAW);
    for (int32_t u = 0; u < users; u++) {
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(&x.b, u, t, (float)(1.5 * ref_rng_normal(&r)));
        x.raw[u] = ref_raw_default();
        x.raw[u].temperature = 1.2f;
        x.raw[u].top_k = u % 2 ? 20 : 0;
        x.raw[u].top_p = 0.97f;
        if (u >= 4) { /* penalties: history-dependent */
            x.raw[u].presence = 0.5f;
            x.raw[u].frequency = 0.5f;
        }
        x.seeds[u] = 1000 + (uint64_t)u;
    }
    rig_apply(&x);
    enum { N = 16 };
    int32_t initial[N + 4][6];
    for (int d = 0; d < N + 4; d++) {
        assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, (uint64_t)d, &x.o.out), MS_OK);
        memcpy(initial[d], x.o.tokens, sizeof initial[d]);
    }
    for (int n = 0; n < N; n++) {
        int64_t seed = -7;
        uint64_t counter = 99;
        for (int32_t u = 0; u < users; u++) {
            assert_int_equal(ms_generator_get_seed(x.g, u, &seed, &counter), MS_OK);
            assert_true(seed == (int64_t)x.seeds[u]);
            assert_true(counter == (uint64_t)n);
        }
        int32_t peek0[6], peek3[6];
        assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, 0, &x.o.out), MS_OK);
        memcpy(peek0, x.o.tokens, sizeof peek0);
        assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, 3, &x.o.out), MS_OK);
        memcpy(peek3, x.o.tokens, sizeof peek3);
        assert_int_equal(ms_generator_sample(x.g, &x.lg, 1, false, &x.o.out), MS_OK);
        for (int32_t u = 0; u < users; u++) {
            if (x.o.tokens[u] != peek0[u])
                fail_msg("step %d slot %d: sample %d, peek(0) %d", n, u, x.o.tokens[u], peek0[u]);
            if (u < 4 && (x.o.tokens[u] != initial[n][u] || peek3[u] != initial[n + 3][u]))
                fail_msg("step %d slot %d: sample %d / peek(3) %d, initial peek(%d) %d / peek(%d) %d", n,
                         u, x.o.tokens[u], peek3[u], n, initial[n][u], n + 3, initial[n + 3][u]);
        }
    }
    /* reset_seed restarts the counter: back to the initial draws. */
    assert_int_equal(ref_install_seeds(x.g, x.seeds, users), MS_OK);
    assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, 0, &x.o.out), MS_OK);
    for (int32_t u = 0; u < 4; u++)
        assert_int_equal(x.o.tokens[u], initial[0][u]);
    rig_free(&x);
}

/* e4: the counter controls of the seed manager, against the model: align_seed_counters sets n,
 * apply_slot_remap moves seed, counter and histories with the user, get_new_values reports
 * ms__stream_key(seed, n) and, with replicate, draws every slot with one slot's (seed, n). */
static void test_seed_controls_against_model(void **state)
{
    (void)state;
    const int32_t V = 120, users = 4;
    ref_rng r;
    ref_rng_init(&r, 2468);
    rig x;
    rig_init(&x, V, V, users, V, MS_DTYPE_F32, MS_LOGPROBS_RAW);
    float rows[4][120];
    for (int32_t u = 0; u < users; u++) {
        for (int32_t t = 0; t < V; t++)
            rows[u][t] = ref_batch_set(&x.b, u, t, (float)(1.2 * ref_rng_normal(&r)));
        x.raw[u] = ref_raw_default();
        x.raw[u].top_p = 0.95f;
        x.raw[u].presence = 0.9f; /* histories matter, so moving them is visible */
        x.raw[u].repetition = 1.5f;
        x.seeds[u] = 10 + (uint64_t)u;
    }
    rig_apply(&x);
    ref_hist h;
    ref_hist_init(&h, users, V);
    assert_int_equal(ref_hist_random(&h, x.g, &r, 10, 10), MS_OK);
    uint64_t n[4] = {0, 0, 0, 0};
    uint64_t seed[4] = {10, 11, 12, 13};
    int32_t owner[4] = {0, 1, 2, 3}; /* which test user sits in each slot */
    const ref_params f = ref_format(1.0f, 0, 0.95f, 0.0f, 0.9f, 0.0f, 1.5f, 0);

#define CHECK_PEEK(what)                                                                           \
    do {                                                                                           \
        assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, 0, &x.o.out), MS_OK);            \
        for (int32_t s = 0; s < users; s++) {                                                      \
            const int32_t w = owner[s];                                                            \
            ref_input in = {rows[w], V, f, MS_PENALTY_ORDER_OPENAI, h.in_prompt + (size_t)w * V,  \
                            h.counts + (size_t)w * V};                                             \
            ref_dist d;                                                                            \
            assert_int_equal(ref_dist_build(&d, &in), 0);                                         \
            const int32_t want = ref_draw(&d, seed[s], n[s]);                                     \
            if (!d.ambiguous && want != x.o.tokens[s])                                             \
                fail_msg("%s: slot %d (user %d, seed %llu, counter %llu): library %d, model %d",   \
                         what, s, w, (unsigned long long)seed[s], (unsigned long long)n[s],        \
                         x.o.tokens[s], want);                                                     \
            ref_dist_free(&d);                                                                     \
            int64_t gs;                                                                            \
            uint64_t gc;                                                                           \
            assert_int_equal(ms_generator_get_seed(x.g, s, &gs, &gc), MS_OK);                     \
            assert_true((uint64_t)gs == seed[s] && gc == n[s]);                                    \
        }                                                                                          \
    } while (0)

    CHECK_PEEK("fresh seeds");
    /* align: counters of slots 1 and 3 := positions - 2 (clamped at 0). */
    const int32_t aslots[2] = {1, 3};
    const int64_t pos[2] = {100, 1};
    assert_int_equal(ms_generator_align_seed_counters(x.g, aslots, pos, 2, -2), MS_OK);
    n[1] = 98;
    n[3] = 0;
    CHECK_PEEK("after align_seed_counters");
    uint64_t keys[4];
    const int32_t all[4] = {0, 1, 2, 3};
    assert_int_equal(ms_generator_get_new_values(x.g, all, 4, false, keys), MS_OK);
    for (int32_t s = 0; s < users; s++)
        assert_true(keys[s] == ms__stream_key(seed[s], n[s]));
    /* Two commits: the histories grow with the sampled tokens. */
    for (int step = 0; step < 2; step++) {
        assert_int_equal(ms_generator_sample(x.g, &x.lg, 1, false, &x.o.out), MS_OK);
        int32_t by_user[4];
        for (int32_t s = 0; s < users; s++) {
            by_user[owner[s]] = x.o.tokens[s];
            n[s]++;
        }
        ref_hist_commit(&h, by_user);
    }
    CHECK_PEEK("after two commits");
    /* remap[new] = old: swap slots 0 and 2, slot 1 stays (-1), slot 3 identity. The users'
     * rows move with them in the next step's logits. */
    const int32_t remap[4] = {2, -1, 0, 3};
    assert_int_equal(ms_generator_apply_slot_remap(x.g, remap, 4), MS_OK);
    uint64_t tmp = seed[0];
    seed[0] = seed[2], seed[2] = tmp;
    tmp = n[0], n[0] = n[2], n[2] = tmp;
    owner[0] = 2, owner[2] = 0;
    for (int32_t s = 0; s < users; s++)
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(&x.b, s, t, rows[owner[s]][t]);
    CHECK_PEEK("after apply_slot_remap");
    /* replicate slot 1: the next commit draws every slot with slot 1's (seed, n); only slot 1's
     * counter advances. */
    const int32_t one = 1;
    assert_int_equal(ms_generator_get_new_values(x.g, &one, 1, true, keys), MS_OK);
    assert_true(keys[0] == ms__stream_key(seed[1], n[1]));
    assert_int_equal(ms_generator_sample(x.g, &x.lg, 1, false, &x.o.out), MS_OK);
    int32_t by_user[4];
    for (int32_t s = 0; s < users; s++) {
        const int32_t w = owner[s];
        ref_input in = {rows[w], V, f, MS_PENALTY_ORDER_OPENAI, h.in_prompt + (size_t)w * V,
                        h.counts + (size_t)w * V};
        ref_dist d;
        assert_int_equal(ref_dist_build(&d, &in), 0);
        const int32_t want = ref_draw(&d, seed[1], n[1]);
        if (!d.ambiguous && want != x.o.tokens[s])
            fail_msg("replicate: slot %d: library %d, model %d (seed %llu counter %llu)", s, x.o.tokens[s],
                     want, (unsigned long long)seed[1], (unsigned long long)n[1]);
        ref_dist_free(&d);
        by_user[w] = x.o.tokens[s];
    }
    ref_hist_commit(&h, by_user);
    n[1]++;
    CHECK_PEEK("after a replicated commit");
#undef CHECK_PEEK
    ref_hist_free(&h);
    rig_free(&x);
}

/* f1: bad rows give -1 and row_error without disturbing anyone: the other users' outputs equal
 * those of a batch whose rows are all good, bit for bit. */
static void test_bad_rows_isolated(void **state)
{
    (void)state;
    const int32_t V = 200, users = 8;
    for (int dt = 0; dt < 3; dt++) {
        rig bad, good;
        ref_rng r;
        ref_rng_init(&r, 4040 + (uint64_t)dt);
        rig_init(&bad, V, 208, users, 211, (ms_dtype)dt, MS_LOGPROBS_RAW);
        rig_init(&good, V, 208, users, 211, (ms_dtype)dt, MS_LOGPROBS_RAW);
        for (int32_t u = 0; u < users; u++) {
            for (int32_t t = 0; t < 208; t++) {
                const float v = t < V ? (float)(2.0 * ref_rng_normal(&r)) : 5.0f;
                ref_batch_set(&bad.b, u, t, v);
                ref_batch_set(&good.b, u, t, v);
            }
            ref_raw_params p = ref_raw_default();
            p.temperature = u % 3 == 0 ? 0.0f : 1.0f;
            p.top_k = u % 2 ? 10 : 0;
            p.top_p = 0.9f;
            p.enable_log_probs = 1;
            p.num_logprobs = 4;
            if (u % 4 == 1) {
                p.presence = 0.5f;
                p.repetition = 1.3f;
            }
            bad.raw[u] = good.raw[u] = p;
            bad.seeds[u] = good.seeds[u] = 77 + (uint64_t)u;
        }
        /* Slot 2: all -inf (greedy user); slot 4: all NaN; slot 5: -inf and NaN mixed; padding
         * stays finite and must not rescue them. */
        for (int32_t t = 0; t < V; t++) {
            ref_batch_set(&bad.b, 2, t, -INFINITY);
            ref_batch_set(&bad.b, 4, t, NAN);
            ref_batch_set(&bad.b, 5, t, t % 2 ? NAN : -INFINITY);
        }
        bad.raw[2].temperature = 0.0f;
        good.raw[2].temperature = 0.0f;
        rig_apply(&bad);
        rig_apply(&good);
        const int32_t cap = bad.o.cap;
        for (int step = 0; step < 6; step++) {
            const bool commit = step % 2 == 1;
            for (int i = 0; i < 2; i++) {
                rig *x = i ? &good : &bad;
                ms_status s = commit ? ms_generator_sample(x->g, &x->lg, 1, false, &x->o.out)
                                     : ms_generator_sample_peek(x->g, &x->lg, 1, (uint64_t)step, &x->o.out);
                assert_int_equal(s, MS_OK);
            }
            for (int32_t u = 0; u < users; u++) {
                if (u == 2 || u == 4 || u == 5) {
                    if (bad.o.tokens[u] != -1 || bad.o.row_error[u] != 1)
                        fail_msg("dtype %d step %d: bad slot %d gave token %d row_error %d", dt, step, u,
                                 bad.o.tokens[u], bad.o.row_error[u]);
                    assert_int_equal(good.o.row_error[u], 0);
                    continue;
                }
                if (bad.o.tokens[u] != good.o.tokens[u] || bad.o.row_error[u] != 0 ||
                    bad.o.rank[u] != good.o.rank[u] || bad.o.top_count[u] != good.o.top_count[u] ||
                    memcmp(&bad.o.logprob[u], &good.o.logprob[u], sizeof(float)) != 0 ||
                    memcmp(bad.o.top_ids + (size_t)u * cap, good.o.top_ids + (size_t)u * cap,
                           sizeof(int32_t) * (size_t)bad.o.top_count[u]) != 0 ||
                    memcmp(bad.o.top_logprobs + (size_t)u * cap, good.o.top_logprobs + (size_t)u * cap,
                           sizeof(float) * (size_t)bad.o.top_count[u]) != 0)
                    fail_msg("dtype %d step %d: slot %d disturbed by bad rows: token %d vs %d, "
                             "row_error %d, logprob %.9g vs %.9g",
                             dt, step, u, bad.o.tokens[u], good.o.tokens[u], bad.o.row_error[u],
                             bad.o.logprob[u], good.o.logprob[u]);
            }
        }
        /* A bad row's history is untouched by its -1 tokens. */
        int32_t c = -1;
        bool inp = true;
        for (int32_t t = 0; t < V; t += 37) {
            assert_int_equal(ms_generator_get_token_state(bad.g, 4, t, &c, &inp), MS_OK);
            assert_int_equal(c, 0);
        }
        rig_free(&bad);
        rig_free(&good);
    }
}

/* f2: +inf tokens share the mass equally (chi-square over them), top-k keeps the first k by id,
 * greedy takes the lowest such id, and the draw is the model's. */
static void test_posinf_rows(void **state)
{
    (void)state;
    const int32_t V = 300, users = 256;
    ref_rng r;
    ref_rng_init(&r, 9090);
    const int32_t inf_ids[7] = {12, 40, 41, 150, 151, 230, 299};
    float row[300];
    for (int32_t t = 0; t < V; t++)
        row[t] = (float)(2.0 * ref_rng_normal(&r));
    row[3] = NAN;
    row[4] = -INFINITY;
    for (int i = 0; i < 7; i++)
        row[inf_ids[i]] = INFINITY;
    static const int64_t ks[3] = {0, 3, 1};
    static const float Ts[3] = {1.0f, 0.4f, 1.0f};
    for (int cse = 0; cse < 3; cse++) {
        rig x;
        rig_init(&x, V, V, users, V, MS_DTYPE_F32, MS_LOGPROBS_RAW);
        for (int32_t u = 0; u < users; u++) {
            for (int32_t t = 0; t < V; t++)
                ref_batch_set(&x.b, u, t, row[t]);
            x.raw[u] = ref_raw_default();
            x.raw[u].temperature = Ts[cse];
            x.raw[u].top_k = ks[cse];
            x.seeds[u] = 4000 + 7 * (uint64_t)u + (uint64_t)cse;
        }
        rig_apply(&x);
        ref_dist d;
        ref_input in = {row, V, ref_format(Ts[cse], ks[cse], 1.0f, 0, 0, 0, 1, 0),
                        MS_PENALTY_ORDER_OPENAI, NULL, NULL};
        assert_int_equal(ref_dist_build(&d, &in), 0);
        assert_true(d.has_posinf);
        const int64_t draws = ref_scale_sanitizer() ? 20000 : 40000;
        const int64_t peeks = (draws + users - 1) / users;
        int64_t obs[300] = {0};
        int64_t total = 0, model_mismatch = 0;
        for (int64_t k = 0; k < peeks; k++) {
            assert_int_equal(ms_generator_sample_peek(x.g, &x.lg, 1, (uint64_t)k, &x.o.out), MS_OK);
            for (int32_t u = 0; u < users; u++) {
                const int32_t t = x.o.tokens[u];
                if (t < 0 || t >= V || !d.in_s[t])
                    fail_msg("+inf case %d: slot %d offset %lld drew %d outside S", cse, u, (long long)k, t);
                if (k < 8 && t != ref_draw(&d, x.seeds[u], (uint64_t)k))
                    model_mismatch++;
                assert_int_equal(x.o.row_error[u], 0);
                obs[t]++;
                total++;
            }
        }
        double x2;
        int32_t df;
        const double pv = ref_chi2_test(d.prob, obs, V, total, &x2, &df);
        printf("+inf case %d (k %lld): |S| %d, chi2 %.2f df %d p %.3g, model mismatches %lld\n", cse,
               (long long)ks[cse], d.n_s, x2, df, pv, (long long)model_mismatch);
        assert_int_equal(d.n_s, cse == 0 ? 7 : cse == 1 ? 3 : 1);
        if (cse == 2)
            assert_int_equal(obs[12], total); /* k 1: greedy, lowest +inf id */
        else
            assert_true(pv > 1e-6);
        assert_int_equal(model_mismatch, 0);
        ref_dist_free(&d);
        rig_free(&x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_and_mates_independence),
        cmocka_unit_test(test_two_instances_agree),
        cmocka_unit_test(test_commit_vs_peek),
        cmocka_unit_test(test_seed_controls_against_model),
        cmocka_unit_test(test_bad_rows_isolated),
        cmocka_unit_test(test_posinf_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
