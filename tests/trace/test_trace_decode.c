/*
 * TT's apply_decode_state (ttmetal-spec 7.3, meshsample.h ms_generator_apply_decode_state), on
 * a host 2x4 mesh (axis 1, sampling_dp 2, B 4, so 8 users in two DP groups).
 *
 * - One chunk holds everyone: it is formatted to num_users and installed.
 * - sampling_dp chunks: chunk c is formatted to max_batch_size and goes to group c's slots
 *   [c*B, (c+1)*B); the result equals one chunk of the concatenated lists, and what ms_params_chunk
 *   splits, apply_decode_state merges back.
 * - reset_batch replaces every slot's prompt set and output counts with the given [U, cols]
 *   matrices (NULL: empty); without it histories stay whatever matrices are passed.
 * - Seeds and draw counters never change.
 * - A chunk count other than 1 or sampling_dp, a bad value in any chunk, a list longer than a
 *   chunk's users, a bad token id in the matrices: an error with a message, nothing changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "trace_util.h"

#define V 64
#define B 4
#define DP 2
#define U (B * DP)

static ms_generator *make_gen(tr_mesh m)
{
    ms_generator_config cfg = tr_config(V, V, U / m.dp, m, 1, 0);
    ms_generator *g = tr_create(&cfg);
    ASSERT_INT_EQ(ms_generator_num_users(g), U);
    return g;
}

static ms_generator *make_mesh(void) { return make_gen(TR_MESH_2X4); }

static ref_batch *some_logits(int salt)
{
    ref_batch *b = tr_batch(MS_DTYPE_F32, U, V, V);
    ref_rng r;
    ref_rng_init(&r, 0xdec0de00ULL + (uint64_t)salt);
    for (int32_t u = 0; u < U; u++)
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(b, u, t, (float)(0.3 * ref_rng_normal(&r)));
    return b;
}

static void step(ms_generator *g, const ref_batch *b, ref_out *o)
{
    ms_logits v[8];
    const int32_t n = tr_views(g, b, v);
    tr_out_poison(o, 0x66);
    ASSERT_OK(g, ms_generator_sample(g, v, n, false, &o->out));
}

/* Seeds, counters, parameters and histories that differ per slot. */
static void busy_state(ms_generator *g)
{
    ms_slot_params p[U];
    int64_t seeds[U];
    int32_t prompt[U * 2], outs[U * 2];
    for (int32_t u = 0; u < U; u++) {
        p[u] = (ms_slot_params){.temperature = 0.9f,
                                .top_k = 0,
                                .top_p = 1.0f,
                                .repetition_penalty = 1.2f,
                                .seed = MS_SEED_NONE,
                                .enable_log_probs = true,
                                .num_logprobs = 2};
        seeds[u] = 800 + 3 * u;
        prompt[u * 2] = u;
        prompt[u * 2 + 1] = 50 - u;
        outs[u * 2] = 30 + u;
        outs[u * 2 + 1] = 30 + u;
    }
    ASSERT_OK(g, ms_generator_set_params(g, p, U, NULL));
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, U, NULL, U));
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, U, 2, NULL));
    ASSERT_OK(g, ms_generator_reset_output_state(g, outs, U, 2, NULL));
    ref_batch *b = some_logits(1);
    ref_out *o = tr_out(U, ms_generator_max_logprobs(g));
    step(g, b, o);
    step(g, b, o);
}

static void format_into(const ms_sampling_params *sp, int32_t n, ms_slot_params *out)
{
    ms_errbuf eb;
    ASSERT_STATUS_MSG(MS_OK, ms_params_format(sp, n, 0, out, &eb), eb.msg);
}

static void expect_params(ms_generator *g, const ms_slot_params *exp, const char *ctx)
{
    for (int32_t s = 0; s < U; s++)
        ASSERT_PARAMS_OF(g, s, &exp[s], ctx);
}

/* Seeds and counters (and, unless hist_changes, histories) as in before. */
static void expect_seeds_kept(ms_generator *g, const tr_state *before, bool hist_kept,
                              const char *ctx)
{
    tr_state after;
    tr_state_take(g, V, &after);
    for (int32_t s = 0; s < U; s++) {
        if (after.seed[s] != before->seed[s] || after.counter[s] != before->counter[s]) {
            print_error("%s: slot %d seed/counter %lld/%llu became %lld/%llu\n", ctx, s,
                        (long long)before->seed[s], (unsigned long long)before->counter[s],
                        (long long)after.seed[s], (unsigned long long)after.counter[s]);
            fail();
        }
    }
    if (hist_kept) {
        ASSERT_TRUE(memcmp(after.count, before->count, sizeof(int32_t) * U * V) == 0);
        ASSERT_TRUE(memcmp(after.prompt, before->prompt, (size_t)U * V) == 0);
    }
    tr_state_free(&after);
}

static void test_one_chunk(void **state)
{
    (void)state;
    ms_generator *g = make_mesh();
    busy_state(g);
    tr_state before;
    tr_state_take(g, V, &before);
    tr_raw raw[U];
    for (int32_t u = 0; u < U; u++) {
        raw[u] = tr_raw_default();
        raw[u].t = u == 3 ? 0.0f : 0.2f + 0.1f * (float)u;
        raw[u].k = u;
        raw[u].p = 0.5f + 0.05f * (float)u;
        raw[u].pres = u % 2 ? 0.3f : 0.0f;
        raw[u].seed = 40 + u;
        raw[u].lp = u % 3 == 0;
        raw[u].nlp = u % 3 == 0 ? u : 0;
    }
    tr_splist L;
    tr_splist_build(&L, raw, U);
    ms_slot_params exp[U];
    format_into(&L.sp, U, exp);
    ASSERT_OK(g, ms_generator_apply_decode_state(g, &L.sp, 1, false, NULL, 0, NULL, 0));
    ASSERT_STR_EQ(ms_generator_last_error(g), "");
    expect_params(g, exp, "one chunk");
    expect_seeds_kept(g, &before, true, "one chunk");

    /* scalars reach every user; a short list leaves the rest at the defaults */
    const float temps[3] = {0.4f, 0.0f, 1.1f};
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(temps, 3);
    sp.top_k = ms_iscalar(9);
    sp.top_p = ms_fscalar(0.75f);
    format_into(&sp, U, exp);
    ASSERT_OK(g, ms_generator_apply_decode_state(g, &sp, 1, false, NULL, 0, NULL, 0));
    expect_params(g, exp, "one chunk of scalars");
    expect_seeds_kept(g, &before, true, "one chunk of scalars");
}

static void test_dp_chunks(void **state)
{
    (void)state;
    ms_generator *g = make_mesh(), *twin = make_mesh();
    busy_state(g);
    busy_state(twin);
    tr_state before;
    tr_state_take(g, V, &before);

    /* chunk 0: lists of B and scalars; chunk 1: other fields, a short list, greedy scalar */
    const float t0[B] = {0.5f, 0.6f, 0.0f, 1.3f};
    const int64_t lp0[B] = {1, 0, 1, 0};
    const int64_t seed0[B] = {11, 12, 13, 14};
    const float p1[2] = {0.3f, 0.8f};
    const float rep1[B] = {1.0f, 1.5f, 0.0f, 2.0f};
    ms_sampling_params ch[DP];
    ms_sampling_params_init(&ch[0]);
    ch[0].temperature = ms_flist(t0, B);
    ch[0].top_k = ms_iscalar(7);
    ch[0].enable_log_probs = ms_ilist(lp0, B);
    ch[0].num_logprobs = ms_iscalar(2);
    ch[0].seed = ms_ilist(seed0, B);
    ms_sampling_params_init(&ch[1]);
    ch[1].temperature = ms_fscalar(0.9f);
    ch[1].top_p = ms_flist(p1, 2);
    ch[1].repetition_penalty = ms_flist(rep1, B);
    ch[1].seed = ms_iscalar(99);
    ms_slot_params exp[U];
    format_into(&ch[0], B, exp);
    format_into(&ch[1], B, exp + B);
    ASSERT_OK(g, ms_generator_apply_decode_state(g, ch, DP, false, NULL, 0, NULL, 0));
    expect_params(g, exp, "dp chunks");
    expect_seeds_kept(g, &before, true, "dp chunks");

    /* the step uses them: the same tokens as a twin given the merged values directly */
    ASSERT_OK(twin, ms_generator_set_params(twin, exp, U, NULL));
    ref_batch *b = some_logits(2);
    const int32_t cap = ms_generator_max_logprobs(g);
    ref_out *o = tr_out(U, cap), *ot = tr_out(U, cap);
    for (int i = 0; i < 3; i++) {
        step(g, b, o);
        step(twin, b, ot);
        ASSERT_OUT_SAME(o, ot, "dp chunks vs set_params", i);
    }

    /* chunking a full list and merging it back is the identity */
    tr_raw raw[U];
    for (int32_t u = 0; u < U; u++) {
        raw[u] = tr_raw_default();
        raw[u].t = 0.1f * (float)(u + 1);
        raw[u].k = (u * 5) % 11;
        raw[u].p = 1.0f - 0.07f * (float)u;
        raw[u].min_p = 0.01f * (float)u;
        raw[u].freq = 0.05f * (float)u;
        raw[u].seed = 1000 + u;
        raw[u].lp = u % 2;
        raw[u].nlp = u;
    }
    tr_splist L;
    tr_splist_build(&L, raw, U);
    for (int32_t c = 0; c < DP; c++) {
        ms_errbuf eb;
        ASSERT_STATUS_MSG(MS_OK, ms_params_chunk(&L.sp, DP, c, &ch[c], &eb), eb.msg);
    }
    ASSERT_OK(g, ms_generator_apply_decode_state(g, ch, DP, false, NULL, 0, NULL, 0));
    ASSERT_OK(twin, ms_generator_apply_decode_state(twin, &L.sp, 1, false, NULL, 0, NULL, 0));
    format_into(&L.sp, U, exp);
    expect_params(g, exp, "chunked full list");
    expect_params(twin, exp, "full list as one chunk");
}

static void test_reset_batch(void **state)
{
    (void)state;
    ms_generator *g = make_mesh();
    busy_state(g);
    tr_state before;
    tr_state_take(g, V, &before);
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.8f);
    sp.presence_penalty = ms_fscalar(0.5f);

    int32_t prompt[U * 3], outs[U * 4];
    for (int32_t u = 0; u < U; u++) {
        prompt[u * 3] = 60 - u;
        prompt[u * 3 + 1] = u % 2 ? -1 : 2 * u;
        prompt[u * 3 + 2] = -1;
        outs[u * 4] = 20 + u;
        outs[u * 4 + 1] = 20 + u;
        outs[u * 4 + 2] = u % 3 ? -1 : 5;
        outs[u * 4 + 3] = 20 + u;
    }
    /* without reset_batch the matrices are not applied */
    ASSERT_OK(g, ms_generator_apply_decode_state(g, &sp, 1, false, prompt, 3, outs, 4));
    expect_seeds_kept(g, &before, true, "no reset_batch");

    ASSERT_OK(g, ms_generator_apply_decode_state(g, &sp, 1, true, prompt, 3, outs, 4));
    expect_seeds_kept(g, &before, false, "reset_batch");
    tr_state after;
    tr_state_take(g, V, &after);
    for (int32_t u = 0; u < U; u++)
        for (int32_t t = 0; t < V; t++) {
            int32_t want_count = 0;
            bool want_prompt = false;
            for (int32_t j = 0; j < 3; j++)
                want_prompt |= prompt[u * 3 + j] == t;
            for (int32_t j = 0; j < 4; j++)
                want_count += outs[u * 4 + j] == t;
            if (after.prompt[u * V + t] != want_prompt || after.count[u * V + t] != want_count) {
                print_error("reset_batch: slot %d token %d: prompt/count %d/%d, expected %d/%d\n",
                            u, t, after.prompt[u * V + t], after.count[u * V + t], want_prompt,
                            want_count);
                fail();
            }
        }

    /* dp chunks with reset_batch and only a prompt matrix: outputs become empty */
    ms_sampling_params ch[DP] = {sp, sp};
    ASSERT_OK(g, ms_generator_apply_decode_state(g, ch, DP, true, outs, 4, NULL, 0));
    tr_state_free(&after);
    tr_state_take(g, V, &after);
    for (int32_t u = 0; u < U; u++)
        for (int32_t t = 0; t < V; t++) {
            bool want_prompt = false;
            for (int32_t j = 0; j < 4; j++)
                want_prompt |= outs[u * 4 + j] == t;
            ASSERT_INT_EQ(after.prompt[u * V + t], want_prompt);
            ASSERT_INT_EQ(after.count[u * V + t], 0);
        }

    /* NULL matrices: every history empty */
    ASSERT_OK(g, ms_generator_apply_decode_state(g, &sp, 1, true, NULL, 0, NULL, 0));
    tr_state_free(&after);
    tr_state_take(g, V, &after);
    for (int32_t i = 0; i < U * V; i++) {
        ASSERT_INT_EQ(after.prompt[i], 0);
        ASSERT_INT_EQ(after.count[i], 0);
    }
    expect_seeds_kept(g, &before, false, "reset_batch, NULL matrices");
}

/* The call failed with a message (naming number when >= 0, and word when not NULL) and
 * changed nothing. */
static void expect_unchanged_w(ms_generator *g, ms_status st, const tr_state *before,
                               const char *ctx, long long number, const char *word)
{
    if (st == MS_OK) {
        print_error("%s: the call succeeded\n", ctx);
        fail();
    }
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    if (number >= 0)
        ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), number);
    if (word && !tr_contains_ci(ms_generator_last_error(g), word)) {
        print_error("%s: message \"%s\" does not mention %s\n", ctx, ms_generator_last_error(g),
                    word);
        fail();
    }
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(before, &after, true, ctx);
    tr_state_free(&after);
}

#define expect_unchanged(g, st, before, ctx, number)                                            \
    expect_unchanged_w((g), (st), (before), (ctx), (number), NULL)

static void test_bad_calls(void **state)
{
    (void)state;
    ms_generator *g = make_mesh();
    busy_state(g);
    tr_state before;
    tr_state_take(g, V, &before);
    ms_sampling_params ch[4];
    for (int i = 0; i < 4; i++) {
        ms_sampling_params_init(&ch[i]);
        ch[i].temperature = ms_fscalar(0.3f);
    }
    /* chunk counts other than 1 or sampling_dp */
    const int32_t counts[] = {0, -1, 3, 4};
    for (int i = 0; i < TR_LEN(counts); i++) {
        char ctx[48];
        snprintf(ctx, sizeof ctx, "%d chunks", counts[i]);
        ms_status st = ms_generator_apply_decode_state(g, ch, counts[i], false, NULL, 0, NULL, 0);
        expect_unchanged(g, st, &before, ctx, counts[i] >= 0 ? counts[i] : -1);
    }
    expect_unchanged(g, ms_generator_apply_decode_state(g, NULL, 1, false, NULL, 0, NULL, 0),
                     &before, "NULL chunks", -1);

    /* a bad value in chunk 1: chunk 0's values are not installed either */
    const float t1[B] = {0.5f, 0.5f, NAN, 0.5f};
    ch[1].temperature = ms_flist(t1, B);
    expect_unchanged_w(g, ms_generator_apply_decode_state(g, ch, DP, false, NULL, 0, NULL, 0),
                       &before, "NaN in chunk 1", -1, "temperature");
    /* a chunk's list longer than its users */
    const float t5[B + 1] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    ch[1].temperature = ms_fscalar(0.3f);
    ch[0].temperature = ms_flist(t5, B + 1);
    expect_unchanged(g, ms_generator_apply_decode_state(g, ch, DP, false, NULL, 0, NULL, 0),
                     &before, "list longer than the chunk", -1);
    /* one chunk with a list longer than the users */
    float t9[U + 1];
    for (int i = 0; i < U + 1; i++)
        t9[i] = 0.5f;
    ch[0].temperature = ms_flist(t9, U + 1);
    expect_unchanged(g, ms_generator_apply_decode_state(g, ch, 1, false, NULL, 0, NULL, 0),
                     &before, "list longer than the users", -1);
    ch[0].temperature = ms_fscalar(0.3f);

    /* bad token ids in the matrices: the parameters are not installed either */
    int32_t prompt[U], outs[U];
    for (int32_t u = 0; u < U; u++) {
        prompt[u] = u;
        outs[u] = u;
    }
    outs[6] = V + 71;
    expect_unchanged(g, ms_generator_apply_decode_state(g, ch, DP, true, prompt, 1, outs, 1),
                     &before, "output id outside the vocabulary", V + 71);
    outs[6] = 6;
    prompt[2] = -2;
    expect_unchanged(g, ms_generator_apply_decode_state(g, ch, 1, true, prompt, 1, outs, 1),
                     &before, "prompt id -2", -1);

    /* a 1x1 generator (sampling_dp 1) takes one chunk only */
    ms_generator *g1 = make_gen(TR_MESH_1X1);
    busy_state(g1);
    tr_state b1;
    tr_state_take(g1, V, &b1);
    expect_unchanged(g1, ms_generator_apply_decode_state(g1, ch, 2, false, NULL, 0, NULL, 0), &b1,
                     "2 chunks with sampling_dp 1", 2);
    ASSERT_OK(g1, ms_generator_apply_decode_state(g1, ch, 1, false, NULL, 0, NULL, 0));
}

/* meshsample.h: a failing call keeps a message naming the field, the user SLOT and the bad
 * value. A bad value at index 2 of chunk 1 is slot B + 2 = 6. */
static void test_bad_chunk_message_names_slot(void **state)
{
    (void)state;
    ms_generator *g = make_mesh();
    ms_sampling_params ch[DP];
    ms_sampling_params_init(&ch[0]);
    ms_sampling_params_init(&ch[1]);
    const float t1[B] = {0.5f, 0.5f, -3.0f, 0.5f};
    ch[1].temperature = ms_flist(t1, B);
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g,
                  ms_generator_apply_decode_state(g, ch, DP, false, NULL, 0, NULL, 0));
    const char *msg = ms_generator_last_error(g);
    ASSERT_STR_CONTAINS(msg, "temperature");
    ASSERT_MSG_HAS_NUMBER(msg, B + 2);
    ASSERT_MSG_HAS_NUMBER(msg, -3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TR_TEST(test_one_chunk),
        TR_TEST(test_dp_chunks),
        TR_TEST(test_reset_batch),
        TR_TEST(test_bad_calls),
        TR_TEST(test_bad_chunk_message_names_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
