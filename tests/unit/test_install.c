/*
 * Installing parameters in a generator: ms_generator_set_params,
 * ms_generator_reset_sampling_params (with and without TT's empty_slots) and
 * ms_generator_get_params. Invalid per-user values fail with nothing changed (DESIGN 4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit_util.h"

#define B 8

static void get_all(const ms_generator *g, ms_slot_params *p)
{
    for (int32_t s = 0; s < B; s++)
        ASSERT_OK(g, ms_generator_get_params(g, s, &p[s]));
}

static void test_set_params_all(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ms_slot_params p[B];
    for (int32_t s = 0; s < B; s++)
        p[s] = unit_slot(0.5f + 0.25f * (float)s, s, 0.1f * (float)s, 0.01f * (float)s,
                         0.5f * (float)s - 1.0f, 0.1f * (float)s, 1.0f + 0.1f * (float)s,
                         MS_SEED_NONE, (s & 1) != 0, s);
    ASSERT_OK(g, ms_generator_set_params(g, p, B, NULL));
    for (int32_t s = 0; s < B; s++) {
        ms_slot_params got;
        ASSERT_OK(g, ms_generator_get_params(g, s, &got));
        ASSERT_SLOT_EQ(&got, &p[s], false, "set_params all", s);
    }
    /* slots NULL needs n == num_users. */
    ms_slot_params before[B], after[B];
    get_all(g, before);
    ms_status s = ms_generator_set_params(g, p, B - 1, NULL);
    ASSERT_INT_NE(s, MS_OK);
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    get_all(g, after);
    for (int32_t i = 0; i < B; i++)
        ASSERT_SLOT_EQ(&after[i], &before[i], true, "n != num_users", i);
    unit_destroy(g);
}

static void test_set_params_slots(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ms_slot_params before[B];
    get_all(g, before);
    ms_slot_params p[2] = {unit_slot(0.7f, 5, 0.9f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
                           unit_slot(1.3f, 9, 0.5f, 0.2f, 0.3f, 0.4f, 1.5f, MS_SEED_NONE, true, 4)};
    const int32_t slots[2] = {6, 2};
    ASSERT_OK(g, ms_generator_set_params(g, p, 2, slots));
    ms_slot_params after[B];
    get_all(g, after);
    for (int32_t s = 0; s < B; s++) {
        const ms_slot_params *want = s == 6 ? &p[0] : s == 2 ? &p[1] : &before[s];
        ASSERT_SLOT_EQ(&after[s], want, false, "set_params slots", s);
    }
    unit_destroy(g);
}

/* Each bad value: rejected, message names the field and the slot, nothing changed. */
static void test_set_params_rejects(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ms_slot_params good = unit_slot(0.7f, 5, 0.9f, 0.0f, 0.0f, 0.0f, 1.0f, MS_SEED_NONE, false, 0);
    const struct {
        const char *name;
        const char *field;
        ms_slot_params bad;
    } cases[] = {
        {"NaN temperature", "temperature", unit_slot(NAN, 5, 0.9f, 0, 0, 0, 1, -1, false, 0)},
        {"negative temperature", "temperature", unit_slot(-1.0f, 5, 0.9f, 0, 0, 0, 1, -1, false, 0)},
        {"inf temperature", "temperature", unit_slot(INFINITY, 5, 0.9f, 0, 0, 0, 1, -1, false, 0)},
        {"top_p 1.5", "top_p", unit_slot(1.0f, 5, 1.5f, 0, 0, 0, 1, -1, false, 0)},
        {"top_p -0.1", "top_p", unit_slot(1.0f, 5, -0.1f, 0, 0, 0, 1, -1, false, 0)},
        {"NaN top_p", "top_p", unit_slot(1.0f, 5, NAN, 0, 0, 0, 1, -1, false, 0)},
        {"min_p -0.1", "min_p", unit_slot(1.0f, 5, 1.0f, -0.1f, 0, 0, 1, -1, false, 0)},
        {"NaN presence", "presence", unit_slot(1.0f, 5, 1.0f, 0, NAN, 0, 1, -1, false, 0)},
        {"inf frequency", "frequency", unit_slot(1.0f, 5, 1.0f, 0, 0, INFINITY, 1, -1, false, 0)},
        {"negative repetition", "repetition", unit_slot(1.0f, 5, 1.0f, 0, 0, 0, -2.0f, -1, false, 0)},
        {"top_k -1", "top_k", unit_slot(1.0f, -1, 1.0f, 0, 0, 0, 1, -1, false, 0)},
        {"num_logprobs -1", "num_logprobs", unit_slot(1.0f, 5, 1.0f, 0, 0, 0, 1, -1, true, -1)},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ms_slot_params before[B], after[B];
        get_all(g, before);
        ms_slot_params p[2] = {good, cases[c].bad};
        const int32_t slots[2] = {3, 6};
        ms_status s = ms_generator_set_params(g, p, 2, slots);
        const char *msg = ms_generator_last_error(g);
        if (s != MS_ERR_INVALID_ARGUMENT) {
            print_error("case \"%s\": got %s (\"%s\")\n", cases[c].name, ms_status_name(s),
                        ms_test_str(msg));
            fail();
        }
        ASSERT_STR_CONTAINS(msg, cases[c].field);
        ASSERT_MSG_HAS_NUMBER(msg, 6);
        get_all(g, after);
        for (int32_t i = 0; i < B; i++)
            ASSERT_SLOT_EQ(&after[i], &before[i], true, cases[c].name, i);
    }
    /* A slot out of range: rejected, nothing changed. */
    ms_slot_params before[B], after[B];
    get_all(g, before);
    ms_slot_params p[2] = {good, good};
    const int32_t bad_slots[2] = {1, B};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_set_params(g, p, 2, bad_slots));
    ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), B);
    const int32_t neg_slots[2] = {1, -1};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_set_params(g, p, 2, neg_slots));
    get_all(g, after);
    for (int32_t i = 0; i < B; i++)
        ASSERT_SLOT_EQ(&after[i], &before[i], true, "bad slot", i);
    unit_destroy(g);
}

/* Truncated mode: k above the cap cannot be installed raw (or is capped). */
static void test_set_params_truncated_cap(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 8);
    ms_slot_params p = unit_slot(1.0f, 50, 1.0f, 0, 0, 0, 1, -1, false, 0);
    const int32_t slot = 2;
    ms_status s = ms_generator_set_params(g, &p, 1, &slot);
    ms_slot_params got;
    ASSERT_OK(g, ms_generator_get_params(g, 2, &got));
    if (s == MS_OK)
        ASSERT_INT_OP(got.top_k, <=, 8);
    else {
        ASSERT_INT_EQ(s, MS_ERR_INVALID_ARGUMENT);
        ASSERT_INT_EQ(got.top_k, 1);
    }
    unit_destroy(g);
}

static void test_reset_sampling_params_all(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 32);
    float t[] = {0.5f, 0.0f, 2.0f};
    int64_t k[] = {0, 10, 50};
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(t, 3);
    sp.top_k = ms_ilist(k, 3);
    sp.top_p = ms_fscalar(0.9f);
    sp.repetition_penalty = ms_fscalar(1.2f);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
    ms_slot_params want[B], got[B];
    ASSERT_STATUS_MSG(MS_OK, ms_params_format(&sp, B, 32, want, NULL), NULL);
    get_all(g, got);
    for (int32_t s = 0; s < B; s++)
        ASSERT_SLOT_EQ(&got[s], &want[s], false, "reset all", s);
    /* Spot-check the formatting really happened. */
    ASSERT_FLT_EQ(got[0].temperature, 0.5f);
    ASSERT_INT_EQ(got[0].top_k, 32);
    ASSERT_FLT_EQ(got[1].top_p, 0.0f);
    ASSERT_INT_EQ(got[2].top_k, 32);
    ASSERT_FLT_EQ(got[5].repetition_penalty, 1.2f);
    ASSERT_INT_EQ(got[5].top_k, 1);
    unit_destroy(g);
}

static void test_reset_sampling_params_empty_slots(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    /* A distinctive starting point in every slot. */
    ms_sampling_params base;
    ms_sampling_params_init(&base);
    base.temperature = ms_fscalar(0.3f);
    base.top_k = ms_iscalar(7);
    base.top_p = ms_fscalar(0.75f);
    base.presence_penalty = ms_fscalar(0.125f);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &base, NULL, 0));
    ms_slot_params before[B];
    get_all(g, before);

    float t[] = {0.5f, 0.7f};
    int64_t k[] = {3, 4};
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(t, 2);
    sp.top_k = ms_ilist(k, 2);
    sp.top_p = ms_fscalar(0.9f);
    const int32_t empty[3] = {5, 2, 7};
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, empty, 3));
    ms_slot_params after[B];
    get_all(g, after);
    ms_slot_params w5 = unit_slot(0.5f, 3, 0.9f, 0, 0, 0, 1, -1, false, 0);
    ms_slot_params w2 = unit_slot(0.7f, 4, 0.9f, 0, 0, 0, 1, -1, false, 0);
    ms_slot_params w7 = unit_greedy_default(); /* past the lists: defaults, T 0 -> greedy */
    for (int32_t s = 0; s < B; s++) {
        const ms_slot_params *want = s == 5 ? &w5 : s == 2 ? &w2 : s == 7 ? &w7 : &before[s];
        ASSERT_SLOT_EQ(&after[s], want, false, "empty_slots", s);
    }
    unit_destroy(g);
}

static void test_reset_sampling_params_rejects(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ms_sampling_params base;
    ms_sampling_params_init(&base);
    base.temperature = ms_fscalar(0.3f);
    base.top_k = ms_iscalar(7);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &base, NULL, 0));
    ms_slot_params before[B], after[B];
    get_all(g, before);

    /* Value 1 of the list goes to slot 2: the message must name slot 2. */
    float t[] = {0.5f, NAN};
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(t, 2);
    const int32_t empty[2] = {5, 2};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_sampling_params(g, &sp, empty, 2));
    ASSERT_STR_CONTAINS(ms_generator_last_error(g), "temperature");
    ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), 2);
    get_all(g, after);
    for (int32_t i = 0; i < B; i++)
        ASSERT_SLOT_EQ(&after[i], &before[i], true, "NaN via empty_slots", i);

    /* Without empty_slots: user 6 is slot 6. */
    float rep[7] = {1, 1, 1, 1, 1, 1, -3.0f};
    ms_sampling_params_init(&sp);
    sp.repetition_penalty = ms_flist(rep, 7);
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
    ASSERT_STR_CONTAINS(ms_generator_last_error(g), "repetition");
    ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), 6);
    get_all(g, after);
    for (int32_t i = 0; i < B; i++)
        ASSERT_SLOT_EQ(&after[i], &before[i], true, "negative repetition", i);

    /* A list longer than the listed slots. */
    float t3[3] = {0.5f, 0.6f, 0.7f};
    ms_sampling_params_init(&sp);
    sp.temperature = ms_flist(t3, 3);
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_sampling_params(g, &sp, empty, 2));
    ASSERT_STR_CONTAINS(ms_generator_last_error(g), "temperature");
    /* An empty slot out of range. */
    const int32_t bad[2] = {5, B};
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.9f);
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_sampling_params(g, &sp, bad, 2));
    get_all(g, after);
    for (int32_t i = 0; i < B; i++)
        ASSERT_SLOT_EQ(&after[i], &before[i], true, "after rejections", i);
    unit_destroy(g);
}

/* num_logprobs above the generator's cap: rejected, or capped to it. */
static void test_num_logprobs_cap(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ASSERT_INT_EQ(ms_generator_max_logprobs(g), 20);
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(1.0f);
    sp.enable_log_probs = ms_iscalar(1);
    sp.num_logprobs = ms_iscalar(25);
    ms_status s = ms_generator_reset_sampling_params(g, &sp, NULL, 0);
    ms_slot_params got;
    ASSERT_OK(g, ms_generator_get_params(g, 0, &got));
    if (s == MS_OK)
        ASSERT_INT_OP(got.num_logprobs, <=, 20);
    else {
        ASSERT_INT_EQ(s, MS_ERR_INVALID_ARGUMENT);
        ASSERT_INT_EQ(got.num_logprobs, 0);
    }
    unit_destroy(g);
}

/* Installing parameters touches neither seeds, counters nor histories (even with a seed field). */
static void test_install_keeps_seeds_and_histories(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    const int64_t seeds[B] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    const int32_t s3 = 3;
    const int64_t p9 = 9;
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s3, &p9, 1, 1));
    const int32_t prompt[2] = {11, 12};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, 1, 2, &s3));
    const int32_t outs[2] = {13, 13};
    ASSERT_OK(g, ms_generator_reset_output_state(g, outs, 1, 2, &s3));
    uint64_t keys[B];
    const int32_t all[B] = {0, 1, 2, 3, 4, 5, 6, 7};
    ASSERT_OK(g, ms_generator_get_new_values(g, all, B, false, keys));

    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.9f);
    sp.seed = ms_iscalar(77);
    sp.repetition_penalty = ms_fscalar(1.3f);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
    const int32_t two[2] = {3, 5};
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, two, 2));
    ms_slot_params p = unit_slot(0.5f, 3, 0.9f, 0, 0, 0, 1, 55, false, 0);
    ASSERT_OK(g, ms_generator_set_params(g, &p, 1, &s3));

    uint64_t keys2[B];
    ASSERT_OK(g, ms_generator_get_new_values(g, all, B, false, keys2));
    for (int32_t s = 0; s < B; s++) {
        int64_t sd;
        uint64_t ctr;
        ASSERT_OK(g, ms_generator_get_seed(g, s, &sd, &ctr));
        ASSERT_INT_EQ(sd, seeds[s]);
        ASSERT_U64_EQ(ctr, s == 3 ? 10 : 0);
        ASSERT_U64_EQ(keys2[s], keys[s]);
    }
    int32_t c;
    bool inp;
    ASSERT_OK(g, ms_generator_get_token_state(g, 3, 11, &c, &inp));
    ASSERT_TRUE(inp);
    ASSERT_OK(g, ms_generator_get_token_state(g, 3, 13, &c, &inp));
    ASSERT_INT_EQ(c, 2);
    unit_destroy(g);
}

/* "Detailed message of the last failing call on g ("" after success)": every successful
 * mutating call clears the message a failed call left. */
static void fail_once(ms_generator *g)
{
    ms_slot_params bad = unit_slot(NAN, 1, 0, 0, 0, 0, 1, -1, false, 0);
    const int32_t slot = 0;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_set_params(g, &bad, 1, &slot));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
}

static void test_message_cleared_on_success(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    float *l = unit_logits_ramp(B, 100);
    int32_t tok[B];
    const int32_t slot0 = 0;
    const int64_t seed = 5, pos = 3;
    const int32_t id[B] = {0, 1, 2, 3, 4, 5, 6, 7};
    const int32_t row[1] = {4};
    ms_slot_params p = unit_greedy_default();
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    uint64_t key;
    ms_logits full = {l, MS_DTYPE_F32, 0}, view;
    struct {
        const char *name;
        int op;
    } ops[] = {{"set_params", 0},         {"reset_sampling_params", 1}, {"reset_seed", 2},
               {"get_new_values", 3},     {"apply_slot_remap", 4},      {"align_seed_counters", 5},
               {"reset_prompt_tokens", 6}, {"reset_output_state", 7},   {"sample", 8},
               {"sample_peek", 9},        {"device_view", 10}};
    int failures = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        fail_once(g);
        ms_status s = MS_ERR_MISUSE;
        switch (ops[i].op) {
        case 0: s = ms_generator_set_params(g, &p, 1, &slot0); break;
        case 1: s = ms_generator_reset_sampling_params(g, &sp, NULL, 0); break;
        case 2: s = ms_generator_reset_seed(g, &seed, 1, &slot0, 1); break;
        case 3: s = ms_generator_get_new_values(g, &slot0, 1, false, &key); break;
        case 4: s = ms_generator_apply_slot_remap(g, id, B); break;
        case 5: s = ms_generator_align_seed_counters(g, &slot0, &pos, 1, 1); break;
        case 6: s = ms_generator_reset_prompt_tokens(g, row, 1, 1, &slot0); break;
        case 7: s = ms_generator_reset_output_state(g, row, 1, 1, &slot0); break;
        case 8: s = unit_sample_f32(g, l, 0, tok); break;
        case 9: s = unit_peek_f32(g, l, 0, 0, tok); break;
        case 10: s = ms_generator_device_view(g, &full, 0, &view); break;
        }
        ASSERT_STATUS(MS_OK, g, s);
        const char *m = ms_generator_last_error(g);
        if (!m || m[0]) {
            print_error("%s succeeded but the message is \"%s\"\n", ops[i].name, ms_test_str(m));
            failures++;
        }
    }
    ASSERT_INT_EQ(failures, 0);
    unit_free(l);
    unit_destroy(g);
}

static void test_get_params_bad(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(100, 0, B, 0);
    ms_slot_params p;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_params(g, B, &p));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_params(g, -1, &p));
    ASSERT_INT_NE(ms_generator_get_params(g, 0, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_set_params(g, NULL, B, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_sampling_params(g, NULL, NULL, 0), MS_OK);
    /* The message is cleared by a successful call. */
    ASSERT_OK(g, ms_generator_get_params(g, 0, &p));
    ASSERT_STR_EQ(ms_generator_last_error(g), "");
    unit_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_set_params_all),
        UNIT_TEST(test_set_params_slots),
        UNIT_TEST(test_set_params_rejects),
        UNIT_TEST(test_set_params_truncated_cap),
        UNIT_TEST(test_reset_sampling_params_all),
        UNIT_TEST(test_reset_sampling_params_empty_slots),
        UNIT_TEST(test_reset_sampling_params_rejects),
        UNIT_TEST(test_num_logprobs_cap),
        UNIT_TEST(test_install_keeps_seeds_and_histories),
        UNIT_TEST(test_message_cleared_on_success),
        UNIT_TEST(test_get_params_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
