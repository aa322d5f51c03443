/*
 * TT's apply_prefill_state (ttmetal-spec 7.3, meshsample.h ms_generator_apply_prefill_state).
 *
 * - Installs the formatted parameters for the listed slots only (value i of each list to
 *   empty_slots[i], scalars to every listed slot); other slots keep theirs.
 * - Resets those slots' seeds from the parameters' seed field in request order (counter 0);
 *   None gives an entropy seed with counter 0. Other slots' seeds and counters are untouched.
 * - Prompt row i becomes slot empty_slots[i]'s prompt (replacing the old one); the output
 *   counts of the listed slots are zeroed; other slots' histories are untouched.
 * - replicate_seeds with one slot: when every row holds the same logits and every slot the
 *   same parameters, every slot draws that slot's token on the next committed step (the token
 *   it draws without replication), and only that slot's counter advances; the step after is
 *   an ordinary one.
 * - empty_slots NULL: every slot.
 * - A bad value anywhere (NaN temperature, out-of-vocabulary prompt id, replicate with two
 *   slots, ...) fails with a message and changes nothing: parameters, seeds, counters, prompt
 *   sets, output counts, and the next steps equal those of a twin that never saw the call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "trace_util.h"

#define V 64
#define U 8

static ms_generator *make_gen(void)
{
    ms_generator_config cfg = tr_config(V, V, U, TR_MESH_1X1, 1, 0);
    ms_generator *g = tr_create(&cfg);
    ASSERT_INT_EQ(ms_generator_num_users(g), U);
    return g;
}

/* Every row: the same near-uniform logits (token t: -0.001 t), so that every token is likely
 * and different seeds draw different tokens. */
static ref_batch *uniform_batch(void)
{
    ref_batch *b = tr_batch(MS_DTYPE_F32, U, V, V);
    for (int32_t u = 0; u < U; u++)
        for (int32_t t = 0; t < V; t++)
            ref_batch_set(b, u, t, -0.001f * (float)t);
    return b;
}

static void step(ms_generator *g, const ref_batch *b, ref_out *o)
{
    ms_logits l = ref_batch_logits(b);
    tr_out_poison(o, 0x77);
    ASSERT_OK(g, ms_generator_sample(g, &l, 1, false, &o->out));
}

/* Distinct parameters, seeds, prompts and outputs in every slot, then 3 committed steps. */
static void busy_state(ms_generator *g, const ref_batch *b, ref_out *o)
{
    ms_slot_params p[U];
    int64_t seeds[U];
    int32_t prompt[U * 2], outs[U * 3];
    for (int32_t u = 0; u < U; u++) {
        p[u] = (ms_slot_params){.temperature = 0.5f + 0.1f * (float)u,
                                .top_k = 3 + u,
                                .top_p = 0.9f,
                                .min_p = 0.0f,
                                .presence_penalty = 0.1f * (float)(u + 1),
                                .frequency_penalty = 0.0f,
                                .repetition_penalty = 1.0f,
                                .seed = 7000 + u,
                                .enable_log_probs = u % 2,
                                .num_logprobs = u % 2 ? 2 : 0};
        seeds[u] = 300 + u;
        prompt[u * 2] = u;
        prompt[u * 2 + 1] = u + 10;
        outs[u * 3] = 20 + u;
        outs[u * 3 + 1] = 20 + u;
        outs[u * 3 + 2] = 30 + u;
    }
    ASSERT_OK(g, ms_generator_set_params(g, p, U, NULL));
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, U, NULL, U));
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, U, 2, NULL));
    ASSERT_OK(g, ms_generator_reset_output_state(g, outs, U, 3, NULL));
    for (int i = 0; i < 3; i++)
        step(g, b, o);
}

/* The formatted parameters of one raw user. */
static ms_slot_params formatted(const tr_raw *raw)
{
    tr_splist L;
    tr_splist_build(&L, raw, 1);
    ms_slot_params f;
    ms_errbuf eb;
    ASSERT_STATUS_MSG(MS_OK, ms_params_format(&L.sp, 1, 0, &f, &eb), eb.msg);
    return f;
}

static void test_listed_slots_only(void **state)
{
    (void)state;
    ms_generator *g = make_gen();
    ref_batch *b = uniform_batch();
    ref_out *o = tr_out(U, ms_generator_max_logprobs(g));
    busy_state(g, b, o);
    tr_state before;
    tr_state_take(g, V, &before);

    tr_raw raw[2] = {tr_raw_default(), tr_raw_default()};
    raw[0].t = 0.7f;
    raw[0].k = 5;
    raw[0].p = 0.9f;
    raw[0].pres = 0.2f;
    raw[0].seed = 111;
    raw[0].lp = 1;
    raw[0].nlp = 3;
    raw[1].t = 0.0f; /* greedy */
    raw[1].k = 3;
    raw[1].p = 0.9f;
    raw[1].seed = 222;
    tr_splist L;
    tr_splist_build(&L, raw, 2);
    const int32_t slots[2] = {5, 2};
    const int32_t prompt[2 * 3] = {40, 41, -1, 42, -1, -1};
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 3, slots, 2, false));
    ASSERT_STR_EQ(ms_generator_last_error(g), "");

    tr_state after;
    tr_state_take(g, V, &after);
    for (int32_t s = 0; s < U; s++) {
        const int32_t i = s == 5 ? 0 : (s == 2 ? 1 : -1);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "after prefill, slot %d", s);
        if (i < 0) {
            /* untouched: parameters, seed, counter, prompt set, output counts */
            ASSERT_TRUE(tr_slot_same(&after.params[s], &before.params[s], ctx, s));
            ASSERT_INT_EQ(after.seed[s], before.seed[s]);
            ASSERT_U64_EQ(after.counter[s], before.counter[s]);
            ASSERT_TRUE(memcmp(after.count + s * V, before.count + s * V, V * sizeof(int32_t)) ==
                        0);
            ASSERT_TRUE(memcmp(after.prompt + s * V, before.prompt + s * V, V) == 0);
            continue;
        }
        ms_slot_params exp = formatted(&raw[i]);
        ASSERT_PARAMS_OF(g, s, &exp, ctx);
        ASSERT_INT_EQ(after.seed[s], raw[i].seed);
        ASSERT_U64_EQ(after.counter[s], 0);
        for (int32_t t = 0; t < V; t++) {
            bool want_prompt = false;
            for (int32_t j = 0; j < 3; j++)
                want_prompt |= prompt[i * 3 + j] == t;
            ASSERT_INT_EQ(after.prompt[s * V + t], want_prompt);
            ASSERT_INT_EQ(after.count[s * V + t], 0);
        }
    }
    /* the greedy one really is greedy (T 1, k 1, p 0 after formatting) */
    ASSERT_INT_EQ(after.params[2].top_k, 1);
    ASSERT_FLT_EQ(after.params[2].top_p, 0.0f);
    ASSERT_INT_EQ(before.count[5 * V + 25], 2); /* the busy state had outputs to zero */

    /* a scalar seed goes to every listed slot; without prompt_tokens the prompts stay */
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(1.0f);
    sp.seed = ms_iscalar(999);
    const int32_t slots2[2] = {0, 7};
    tr_state_free(&before);
    tr_state_take(g, V, &before);
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &sp, NULL, 0, 0, slots2, 2, false));
    for (int32_t i = 0; i < 2; i++) {
        int64_t seed;
        uint64_t ctr;
        ASSERT_OK(g, ms_generator_get_seed(g, slots2[i], &seed, &ctr));
        ASSERT_INT_EQ(seed, 999);
        ASSERT_U64_EQ(ctr, 0);
        bool in = false;
        int32_t cnt = -1;
        ASSERT_OK(g, ms_generator_get_token_state(g, slots2[i], slots2[i] + 10, &cnt, &in));
        ASSERT_TRUE(in);
        ASSERT_OK(g, ms_generator_get_token_state(g, slots2[i], 20 + slots2[i], &cnt, &in));
        ASSERT_INT_EQ(cnt, 0);
    }

    /* seed None: an entropy seed, counter 0 */
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(1.0f);
    const int32_t slot4 = 4;
    int64_t old_seed;
    ASSERT_OK(g, ms_generator_get_seed(g, 4, &old_seed, NULL));
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &sp, NULL, 0, 0, &slot4, 1, false));
    int64_t seed;
    uint64_t ctr;
    ASSERT_OK(g, ms_generator_get_seed(g, 4, &seed, &ctr));
    ASSERT_U64_EQ(ctr, 0);
    ASSERT_INT_NE(seed, old_seed);
}

/* Seeds in request order: the tokens drawn equal those of slots seeded by reset_seed. */
static void test_seed_request_order(void **state)
{
    (void)state;
    ms_generator *g = make_gen(), *twin = make_gen();
    ref_batch *b = uniform_batch();
    ref_out *o = tr_out(U, 1), *ot = tr_out(U, 1);
    tr_raw raw[U];
    int32_t slots[U];
    int64_t seeds[U];
    for (int32_t i = 0; i < U; i++) {
        raw[i] = tr_raw_default();
        raw[i].seed = 10007 * (i + 1);
        slots[i] = U - 1 - i; /* reversed */
        seeds[i] = raw[i].seed;
    }
    tr_splist L;
    tr_splist_build(&L, raw, U);
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &L.sp, NULL, 0, 0, slots, U, false));
    ASSERT_OK(twin, ms_generator_reset_sampling_params(twin, &L.sp, slots, U));
    ASSERT_OK(twin, ms_generator_reset_seed(twin, seeds, U, slots, U));
    int distinct = 0;
    for (int i = 0; i < 4; i++) {
        step(g, b, o);
        step(twin, b, ot);
        for (int32_t u = 0; u < U; u++) {
            ASSERT_INT_EQ(o->tokens[u], ot->tokens[u]);
            distinct += o->tokens[u] != o->tokens[0];
        }
    }
    ASSERT_INT_OP(distinct, >, 0);
    for (int32_t i = 0; i < U; i++) {
        int64_t s;
        ASSERT_OK(g, ms_generator_get_seed(g, slots[i], &s, NULL));
        ASSERT_INT_EQ(s, seeds[i]);
    }
}

static void test_replicate(void **state)
{
    (void)state;
    ms_generator *g = make_gen(), *plain = make_gen();
    ref_batch *b = uniform_batch();
    ref_out *o = tr_out(U, 1), *op = tr_out(U, 1);
    /* the same stochastic parameters everywhere (T 1, unlimited), distinct seeds */
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(1.0f);
    sp.top_k = ms_iscalar(0);
    sp.top_p = ms_fscalar(1.0f);
    int64_t seeds[U];
    for (int32_t u = 0; u < U; u++)
        seeds[u] = 61 + 1000 * u;
    ms_generator *gs[2] = {g, plain};
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(gs[i], ms_generator_reset_sampling_params(gs[i], &sp, NULL, 0));
        ASSERT_OK(gs[i], ms_generator_reset_seed(gs[i], seeds, U, NULL, U));
    }
    step(g, b, o);
    step(plain, b, op);
    int distinct = 0;
    for (int32_t u = 1; u < U; u++)
        distinct += o->tokens[u] != o->tokens[0];
    ASSERT_INT_OP(distinct, >, 0); /* without replication the slots draw differently */

    ms_sampling_params req = sp;
    req.seed = ms_iscalar(777);
    const int32_t slot = 3;
    tr_state before;
    tr_state_take(g, V, &before);
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &req, NULL, 0, 0, &slot, 1, true));
    ASSERT_OK(plain, ms_generator_apply_prefill_state(plain, &req, NULL, 0, 0, &slot, 1, false));
    step(g, b, o);
    step(plain, b, op);
    for (int32_t u = 0; u < U; u++) {
        if (o->tokens[u] != op->tokens[slot]) {
            print_error("replicated step: slot %d drew %d, slot %d's token is %d\n", u,
                        o->tokens[u], slot, op->tokens[slot]);
            fail();
        }
        int64_t s;
        uint64_t c;
        ASSERT_OK(g, ms_generator_get_seed(g, u, &s, &c));
        ASSERT_INT_EQ(s, u == slot ? 777 : before.seed[u]);
        ASSERT_U64_EQ(c, u == slot ? 1 : before.counter[u]);
    }
    /* the next step is an ordinary one: every slot its own seed and counter */
    ms_generator *fresh = make_gen();
    ASSERT_OK(fresh, ms_generator_reset_sampling_params(fresh, &sp, NULL, 0));
    ASSERT_OK(fresh, ms_generator_reset_seed(fresh, seeds, U, NULL, U));
    ASSERT_OK(fresh, ms_generator_reset_seed(fresh, (int64_t[]){777}, 1, &slot, 1));
    int64_t pos[U];
    int32_t all[U];
    for (int32_t u = 0; u < U; u++) {
        all[u] = u;
        pos[u] = u == slot ? 1 : (int64_t)before.counter[u];
    }
    ASSERT_OK(fresh, ms_generator_align_seed_counters(fresh, all, pos, U, 0));
    ref_out *of = tr_out(U, 1);
    step(g, b, o);
    step(fresh, b, of);
    for (int32_t u = 0; u < U; u++)
        ASSERT_INT_EQ(o->tokens[u], of->tokens[u]);
    distinct = 0;
    for (int32_t u = 1; u < U; u++)
        distinct += o->tokens[u] != o->tokens[0];
    ASSERT_INT_OP(distinct, >, 0);
}

/* empty_slots NULL: every slot, request order = slot order. */
static void test_all_slots(void **state)
{
    (void)state;
    ms_generator *g = make_gen();
    ref_batch *b = uniform_batch();
    ref_out *o = tr_out(U, ms_generator_max_logprobs(g));
    busy_state(g, b, o);
    tr_raw raw[U];
    int32_t prompt[U];
    for (int32_t u = 0; u < U; u++) {
        raw[u] = tr_raw_default();
        raw[u].t = 0.3f + 0.05f * (float)u;
        raw[u].seed = 50 + u;
        prompt[u] = 60 - u;
    }
    tr_splist L;
    tr_splist_build(&L, raw, U);
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &L.sp, prompt, U, 1, NULL, 0, false));
    tr_state after;
    tr_state_take(g, V, &after);
    for (int32_t u = 0; u < U; u++) {
        ms_slot_params exp = formatted(&raw[u]);
        ASSERT_PARAMS_OF(g, u, &exp, "all slots");
        ASSERT_INT_EQ(after.seed[u], 50 + u);
        ASSERT_U64_EQ(after.counter[u], 0);
        for (int32_t t = 0; t < V; t++) {
            ASSERT_INT_EQ(after.prompt[u * V + t], t == 60 - u);
            ASSERT_INT_EQ(after.count[u * V + t], 0);
        }
    }
}

/* ---- bad values: a message, and nothing changes ---- */

typedef struct bad_case {
    const char *name;
    ms_status want;    /* MS_OK: any error */
    const char *words[3]; /* the message contains these (case-insensitive) */
    long long number;  /* and names this number (-1: none) */
} bad_case;

static void check_bad(ms_generator *g, ms_generator *twin, const ref_batch *b, ref_out *o,
                      ref_out *ot, ms_status st, const bad_case *bc)
{
    tr_state before;
    tr_state_take(twin, V, &before); /* the twin's state is g's state before the call */
    if (st == MS_OK || (bc->want != MS_OK && st != bc->want)) {
        print_error("%s: got %s (\"%s\"), expected %s\n", bc->name, ms_status_name(st),
                    ms_generator_last_error(g),
                    bc->want == MS_OK ? "an error" : ms_status_name(bc->want));
        fail();
    }
    const char *msg = ms_generator_last_error(g);
    ASSERT_MSG_NONEMPTY(msg);
    for (int i = 0; i < 3 && bc->words[i]; i++)
        if (!tr_contains_ci(msg, bc->words[i])) {
            print_error("%s: message \"%s\" does not mention \"%s\"\n", bc->name, msg,
                        bc->words[i]);
            fail();
        }
    if (bc->number >= 0)
        ASSERT_MSG_HAS_NUMBER(msg, bc->number);
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(&before, &after, true, bc->name);
    tr_state_free(&before);
    tr_state_free(&after);
    /* and the next step is the twin's */
    step(g, b, o);
    step(twin, b, ot);
    ASSERT_OUT_SAME(o, ot, bc->name, 0);
}

static void test_bad_values_change_nothing(void **state)
{
    (void)state;
    ms_generator *g = make_gen(), *twin = make_gen();
    ref_batch *b = uniform_batch();
    const int32_t cap = ms_generator_max_logprobs(g);
    ref_out *o = tr_out(U, cap), *ot = tr_out(U, cap);
    busy_state(g, b, o);
    busy_state(twin, b, ot);
    /* a valid request for slots {5, 2}, made bad one field at a time */
    tr_raw raw[2] = {tr_raw_default(), tr_raw_default()};
    raw[0].t = 0.7f;
    raw[0].seed = 111;
    raw[1].t = 0.9f;
    raw[1].seed = 222;
    raw[1].pres = 0.5f;
    const int32_t slots[2] = {5, 2};
    int32_t prompt[2 * 2] = {40, 41, 42, -1};
    tr_splist L;

    /* NaN temperature of the second request (slot 2) */
    tr_raw r2[2] = {raw[0], raw[1]};
    r2[1].t = NAN;
    tr_splist_build(&L, r2, 2);
    bad_case c1 = {"NaN temperature", MS_ERR_INVALID_ARGUMENT, {"temperature", "nan", NULL}, 2};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c1);

    /* infinite presence penalty of the first request (slot 5) */
    memcpy(r2, raw, sizeof r2);
    r2[0].pres = INFINITY;
    tr_splist_build(&L, r2, 2);
    bad_case c2 = {"infinite presence", MS_ERR_INVALID_ARGUMENT, {"presence", NULL, NULL}, 5};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c2);

    /* a seed below -1 */
    memcpy(r2, raw, sizeof r2);
    r2[1].seed = -5;
    tr_splist_build(&L, r2, 2);
    bad_case c3 = {"seed -5", MS_ERR_INVALID_ARGUMENT, {"seed", NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c3);

    /* num_logprobs above the cap */
    memcpy(r2, raw, sizeof r2);
    r2[0].lp = 1;
    r2[0].nlp = cap + 1;
    tr_splist_build(&L, r2, 2);
    bad_case c4 = {"num_logprobs above the cap", MS_ERR_INVALID_ARGUMENT,
                   {"logprobs", NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c4);

    /* out-of-vocabulary prompt id (valid parameters) */
    tr_splist_build(&L, raw, 2);
    prompt[3] = V + 936;
    bad_case c5 = {"prompt id outside the vocabulary", MS_ERR_INVALID_ARGUMENT,
                   {NULL, NULL, NULL}, V + 936};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c5);
    prompt[3] = -7;
    bad_case c6 = {"prompt id -7", MS_ERR_INVALID_ARGUMENT, {NULL, NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false), &c6);
    prompt[3] = -1;

    /* replicate_seeds with two slots, and with every slot */
    bad_case c7 = {"replicate with two slots", MS_OK, {"replicate", NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, true), &c7);
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.5f);
    sp.seed = ms_iscalar(5);
    bad_case c8 = {"replicate with every slot", MS_OK, {"replicate", NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &sp, NULL, 0, 0, NULL, 0, true), &c8);

    /* a slot outside the batch, more prompt rows than slots, a list longer than the slots */
    const int32_t bad_slots[2] = {5, U + 3};
    bad_case c9 = {"slot outside the batch", MS_ERR_INVALID_ARGUMENT, {NULL, NULL, NULL}, U + 3};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, bad_slots, 2, false), &c9);
    bad_case c10 = {"more prompt rows than slots", MS_OK, {NULL, NULL, NULL}, -1};
    check_bad(g, twin, b, o, ot,
              ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 1, false), &c10);

    /* and a valid call still works afterwards, exactly as on the twin */
    tr_splist_build(&L, raw, 2);
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &L.sp, prompt, 2, 2, slots, 2, false));
    ASSERT_OK(twin, ms_generator_apply_prefill_state(twin, &L.sp, prompt, 2, 2, slots, 2, false));
    tr_state sg, st;
    tr_state_take(g, V, &sg);
    tr_state_take(twin, V, &st);
    ASSERT_STATE_SAME(&st, &sg, true, "valid call after the bad ones");
    step(g, b, o);
    step(twin, b, ot);
    ASSERT_OUT_SAME(o, ot, "valid call after the bad ones", 0);
}

/* An empty request (n_slots 0) changes nothing and is a success: the message of an earlier
 * failure is gone ("" after success, meshsample.h ms_generator_last_error). */
static void test_empty_request(void **state)
{
    (void)state;
    ms_generator *g = make_gen();
    ref_batch *b = uniform_batch();
    ref_out *o = tr_out(U, ms_generator_max_logprobs(g));
    busy_state(g, b, o);
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.5f);
    const int32_t slots[2] = {1, 2};
    tr_state before;
    tr_state_take(g, V, &before);
    ASSERT_TRUE(ms_generator_apply_prefill_state(g, &sp, NULL, 0, 0, slots, 2, true) != MS_OK);
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    ASSERT_OK(g, ms_generator_apply_prefill_state(g, &sp, NULL, 0, 0, slots, 0, false));
    ASSERT_STR_EQ(ms_generator_last_error(g), "");
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(&before, &after, true, "empty request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TR_TEST(test_listed_slots_only), TR_TEST(test_seed_request_order),
        TR_TEST(test_replicate),         TR_TEST(test_all_slots),
        TR_TEST(test_bad_values_change_nothing), TR_TEST(test_empty_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
