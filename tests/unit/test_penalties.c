/*
 * Penalty state (TT's TTPenalties): prompt sets and output counts, their validation, counting
 * of sampled tokens, remap, and the effect of repetition / frequency / presence on greedy
 * choices (TT's "all 4.0, target 5.0" pattern; DESIGN 2.1 order and formulas).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit_util.h"

#define V 64
#define B 4
#define TARGET 10

static int32_t count_of(const ms_generator *g, int32_t slot, int32_t tok)
{
    int32_t c = -7;
    bool p = false;
    ASSERT_OK(g, ms_generator_get_token_state(g, slot, tok, &c, &p));
    return c;
}

static bool prompt_has(const ms_generator *g, int32_t slot, int32_t tok)
{
    int32_t c = 0;
    bool p = false;
    ASSERT_OK(g, ms_generator_get_token_state(g, slot, tok, &c, &p));
    return p;
}

/* Every (slot, token) of the vocabulary: prompt membership and count. */
typedef struct hist {
    bool prompt[B][V];
    int32_t count[B][V];
} hist;

static void hist_take(const ms_generator *g, int32_t vocab, hist *h)
{
    memset(h, 0, sizeof *h);
    for (int32_t s = 0; s < B; s++)
        for (int32_t t = 0; t < vocab; t++)
            ASSERT_OK(g, ms_generator_get_token_state(g, s, t, &h->count[s][t], &h->prompt[s][t]));
}

static void hist_assert_same(const hist *a, const hist *b, const char *ctx)
{
    for (int32_t s = 0; s < B; s++)
        for (int32_t t = 0; t < V; t++)
            if (a->prompt[s][t] != b->prompt[s][t] || a->count[s][t] != b->count[s][t]) {
                print_error("%s: slot %d token %d: prompt %d count %d became prompt %d count %d\n",
                            ctx, s, t, a->prompt[s][t], a->count[s][t], b->prompt[s][t],
                            b->count[s][t]);
                fail();
            }
}

static void test_prompt_tokens(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    /* Slot 3 gets a prompt through the slots argument. */
    const int32_t row3[2] = {5, -1};
    const int32_t slot3 = 3;
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, row3, 1, 2, &slot3));
    ASSERT_TRUE(prompt_has(g, 3, 5));
    ASSERT_TRUE(!prompt_has(g, 0, 5));

    /* slots NULL: row i is slot i; slots without a row (2, 3) are cleared. */
    const int32_t rows[2 * 5] = {3, 3, 7, -1, -1, /* slot 0 */
                                 -1, -1, -1, -1, -1 /* slot 1 */};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, rows, 2, 5, NULL));
    hist h;
    hist_take(g, V, &h);
    for (int32_t s = 0; s < B; s++)
        for (int32_t t = 0; t < V; t++) {
            bool want = s == 0 && (t == 3 || t == 7);
            if (h.prompt[s][t] != want) {
                print_error("slot %d token %d: in_prompt %d, want %d\n", s, t, h.prompt[s][t], want);
                fail();
            }
            ASSERT_INT_EQ(h.count[s][t], 0);
        }
    /* Explicit slots leave the others alone. */
    const int32_t row[3] = {60, 63, 0};
    const int32_t slot2 = 2;
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, row, 1, 3, &slot2));
    ASSERT_TRUE(prompt_has(g, 2, 60) && prompt_has(g, 2, 63) && prompt_has(g, 2, 0));
    ASSERT_TRUE(prompt_has(g, 0, 3) && prompt_has(g, 0, 7));
    unit_destroy(g);
}

static void test_output_state(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t prompt[1] = {33};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, 1, 1, NULL));
    const int32_t rows[2 * 5] = {9, 9, 9, 4, -1, /* slot 0: duplicates counted */
                                 4, -1, -1, -1, -1};
    ASSERT_OK(g, ms_generator_reset_output_state(g, rows, 2, 5, NULL));
    ASSERT_INT_EQ(count_of(g, 0, 9), 3);
    ASSERT_INT_EQ(count_of(g, 0, 4), 1);
    ASSERT_INT_EQ(count_of(g, 1, 4), 1);
    ASSERT_INT_EQ(count_of(g, 1, 9), 0);
    ASSERT_INT_EQ(count_of(g, 2, 4), 0);
    ASSERT_TRUE(prompt_has(g, 0, 33)); /* output reset keeps the prompt */
    ASSERT_TRUE(!prompt_has(g, 0, 9));

    const int32_t r2[2] = {12, 12};
    const int32_t slot2 = 2;
    ASSERT_OK(g, ms_generator_reset_output_state(g, r2, 1, 2, &slot2));
    ASSERT_INT_EQ(count_of(g, 2, 12), 2);
    ASSERT_INT_EQ(count_of(g, 0, 9), 3);

    /* tokens NULL: zero the listed slots only (rows = number of listed slots, no columns). */
    const int32_t slot0 = 0;
    ASSERT_OK(g, ms_generator_reset_output_state(g, NULL, 1, 0, &slot0));
    ASSERT_INT_EQ(count_of(g, 0, 9), 0);
    ASSERT_INT_EQ(count_of(g, 0, 4), 0);
    ASSERT_INT_EQ(count_of(g, 1, 4), 1);
    ASSERT_INT_EQ(count_of(g, 2, 12), 2);
    /* Listed slots are zeroed before counting: re-count slot 2 from scratch. */
    const int32_t r3[1] = {12};
    ASSERT_OK(g, ms_generator_reset_output_state(g, r3, 1, 1, &slot2));
    ASSERT_INT_EQ(count_of(g, 2, 12), 1);
    /* Everything. */
    ASSERT_OK(g, ms_generator_reset_output_state(g, NULL, 0, 0, NULL));
    hist h;
    hist_take(g, V, &h);
    for (int32_t s = 0; s < B; s++)
        for (int32_t t = 0; t < V; t++)
            ASSERT_INT_EQ(h.count[s][t], 0);
    ASSERT_TRUE(prompt_has(g, 0, 33));
    unit_destroy(g);
}

/* Ids outside [0, vocab_size) (padding included) are rejected with nothing changed and a
 * message naming the id and the slot. */
static void test_history_rejects(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(60, 64, B, 0);
    const int32_t slot1 = 1;
    const int32_t p7[1] = {7};
    const int32_t o8[2] = {8, 8};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, p7, 1, 1, &slot1));
    ASSERT_OK(g, ms_generator_reset_output_state(g, o8, 1, 2, &slot1));
    hist before, after;
    hist_take(g, 60, &before);

    const int32_t bad_ids[] = {62, 60, 64, -2, INT32_MAX, INT32_MIN};
    const int32_t slots[2] = {1, 3};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        const int32_t rows[2 * 3] = {1, 2, -1, 4, bad_ids[i], -1};
        ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g,
                      ms_generator_reset_prompt_tokens(g, rows, 2, 3, slots));
        ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), bad_ids[i]);
        ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), 3);
        ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g,
                      ms_generator_reset_output_state(g, rows, 2, 3, slots));
        ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), bad_ids[i]);
        ASSERT_MSG_HAS_NUMBER(ms_generator_last_error(g), 3);
        /* slots NULL: row 1 is slot 1. */
        ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g,
                      ms_generator_reset_output_state(g, rows, 2, 3, NULL));
        hist_take(g, 60, &after);
        hist_assert_same(&before, &after, "bad id");
    }
    /* Bad slots and shapes. */
    const int32_t rows[2] = {1, 2};
    const int32_t bad_slot[2] = {1, B};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_prompt_tokens(g, rows, 2, 1, bad_slot));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_output_state(g, rows, 2, 1, bad_slot));
    int32_t many[(B + 1) * 1] = {1, 2, 3, 4, 5};
    ASSERT_INT_NE(ms_generator_reset_prompt_tokens(g, many, B + 1, 1, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_output_state(g, many, B + 1, 1, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_prompt_tokens(g, rows, -1, 1, NULL), MS_OK);
    hist_take(g, 60, &after);
    hist_assert_same(&before, &after, "bad slots");

    int32_t c;
    bool p;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_token_state(g, B, 0, &c, &p));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_token_state(g, 0, 60, &c, &p));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_token_state(g, 0, -1, &c, &p));
    /* The failure leaves a message (after a success cleared the previous one). */
    ASSERT_OK(g, ms_generator_reset_seed(g, NULL, 0, NULL, 0));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_token_state(g, B, 0, &c, &p));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    unit_destroy(g);
}

/* Each committed step counts each sampled token exactly once; peek counts nothing. */
static void test_sample_counts(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0); /* greedy by default */
    float *l = unit_logits_fill(B, V, 0.0f);
    for (int32_t r = 0; r < B; r++)
        l[r * V + 17] = 3.0f;
    int32_t tok[B];
    for (int step = 0; step < 3; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        for (int32_t s = 0; s < B; s++)
            ASSERT_INT_EQ(tok[s], 17);
    }
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, tok));
    hist h;
    hist_take(g, V, &h);
    for (int32_t s = 0; s < B; s++)
        for (int32_t t = 0; t < V; t++) {
            ASSERT_INT_EQ(h.count[s][t], t == 17 ? 3 : 0);
            ASSERT_TRUE(!h.prompt[s][t]);
        }
    unit_free(l);
    unit_destroy(g);
}

/* A history loaded while every penalty is at its default is kept (TT drops it: a pitfall). */
static void test_history_kept_when_penalties_off(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t p[1] = {TARGET};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, p, 1, 1, NULL));
    /* Then turn repetition on: the prompt loaded earlier counts. */
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.repetition_penalty = ms_fscalar(2.0f);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
    float *l = unit_logits_fill(B, V, 4.0f);
    for (int32_t r = 0; r < B; r++)
        l[r * V + TARGET] = 5.0f;
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    ASSERT_INT_EQ(tok[0], 0);
    ASSERT_INT_EQ(tok[1], TARGET);
    unit_free(l);
    unit_destroy(g);
}

static void test_remap_moves_histories(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t prompts[B * 1] = {9, 8, 20, 5};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompts, B, 1, NULL));
    const int32_t outs[B * 2] = {-1, -1, 30, -1, 21, 21, 17, 17};
    ASSERT_OK(g, ms_generator_reset_output_state(g, outs, B, 2, NULL));
    const int32_t remap[B] = {0, 3, 2, 3};
    ASSERT_OK(g, ms_generator_apply_slot_remap(g, remap, B));
    /* slot 0 unchanged */
    ASSERT_TRUE(prompt_has(g, 0, 9));
    /* slot 1 <- slot 3 */
    ASSERT_TRUE(prompt_has(g, 1, 5));
    ASSERT_TRUE(!prompt_has(g, 1, 8));
    ASSERT_INT_EQ(count_of(g, 1, 17), 2);
    ASSERT_INT_EQ(count_of(g, 1, 30), 0);
    /* slot 2 unchanged */
    ASSERT_TRUE(prompt_has(g, 2, 20));
    ASSERT_INT_EQ(count_of(g, 2, 21), 2);
    /* slot 3 vacated */
    ASSERT_TRUE(!prompt_has(g, 3, 5));
    ASSERT_INT_EQ(count_of(g, 3, 17), 0);

    /* A swap moves both ways. */
    const int32_t swap[B] = {2, -1, 0, 3};
    ASSERT_OK(g, ms_generator_apply_slot_remap(g, swap, B));
    ASSERT_TRUE(prompt_has(g, 0, 20) && !prompt_has(g, 0, 9));
    ASSERT_INT_EQ(count_of(g, 0, 21), 2);
    ASSERT_TRUE(prompt_has(g, 2, 9) && !prompt_has(g, 2, 20));
    ASSERT_INT_EQ(count_of(g, 2, 21), 0);
    unit_destroy(g);
}

/* remap[new] = old with one old slot feeding two new ones: both get its seed, counter and
 * history (TT copies the seed state to every destination). */
static void test_remap_duplicate_source(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t prompts[B * 1] = {9, 8, 20, 5};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompts, B, 1, NULL));
    const int32_t outs[B * 2] = {-1, -1, 30, -1, 21, 21, 17, 17};
    ASSERT_OK(g, ms_generator_reset_output_state(g, outs, B, 2, NULL));
    const int64_t seed = 99;
    const int32_t slot3 = 3;
    ASSERT_OK(g, ms_generator_reset_seed(g, &seed, 1, &slot3, 1));
    const int32_t remap[B] = {3, 3, -1, -1};
    ASSERT_OK(g, ms_generator_apply_slot_remap(g, remap, B));
    for (int32_t s = 0; s < 2; s++) {
        int64_t sd;
        uint64_t ctr;
        ASSERT_OK(g, ms_generator_get_seed(g, s, &sd, &ctr));
        ASSERT_INT_EQ(sd, 99);
        ASSERT_TRUE(prompt_has(g, s, 5));
        ASSERT_INT_EQ(count_of(g, s, 17), 2);
    }
    ASSERT_TRUE(!prompt_has(g, 3, 5));
    ASSERT_INT_EQ(count_of(g, 3, 17), 0);
    ASSERT_TRUE(prompt_has(g, 2, 20));
    unit_destroy(g);
}

/* ---- penalty effect, greedy, logits all 4.0 with the target at 5.0 ---- */

static float *target_logits(float base, float target)
{
    float *l = unit_logits_fill(B, V, base);
    for (int32_t r = 0; r < B; r++)
        l[r * V + TARGET] = target;
    return l;
}

static void set_greedy_penalties(ms_generator *g, const float *rep, const float *pres,
                                 const float *freq)
{
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(0.0f);
    if (rep)
        sp.repetition_penalty = ms_flist(rep, B);
    if (pres)
        sp.presence_penalty = ms_flist(pres, B);
    if (freq)
        sp.frequency_penalty = ms_flist(freq, B);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
}

static void expect_tokens(const int32_t *got, const int32_t *want, int step)
{
    for (int32_t s = 0; s < B; s++)
        if (got[s] != want[s]) {
            print_error("step %d slot %d: token %d, want %d\n", step, s, got[s], want[s]);
            fail();
        }
}

static void test_repetition_prompt(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float rep[B] = {1.5f, 1.0f, 1.2f, 3.0f};
    set_greedy_penalties(g, rep, NULL, NULL);
    const int32_t prompt[B] = {TARGET, TARGET, TARGET, TARGET};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, B, 1, NULL));
    float *l = target_logits(4.0f, 5.0f);
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    /* 5/1.5 = 3.33 < 4: lowest id at 4.0 wins; 5/1.2 = 4.17 > 4 keeps the target. */
    const int32_t want[B] = {0, TARGET, TARGET, 0};
    expect_tokens(tok, want, 0);
    unit_free(l);
    unit_destroy(g);
}

/* z / r landing exactly on the others' value: the tie goes to the lowest id. */
static void test_repetition_exact_tie(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float rep[B] = {1.25f, 1.25f, 1.0f, 1.0f};
    set_greedy_penalties(g, rep, NULL, NULL);
    const int32_t prompt[B] = {TARGET, TARGET, TARGET, TARGET};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, B, 1, NULL));
    float *l = target_logits(4.0f, 5.0f);
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    const int32_t want[B] = {0, 0, TARGET, TARGET};
    expect_tokens(tok, want, 0);
    unit_free(l);
    unit_destroy(g);
}

/* Negative logits are multiplied: -3 * 1.5 = -4.5 < -4. */
static void test_repetition_negative(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float rep[B] = {1.5f, 1.0f, 0.5f, 1.2f};
    set_greedy_penalties(g, rep, NULL, NULL);
    const int32_t prompt[B] = {TARGET, TARGET, TARGET, TARGET};
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, B, 1, NULL));
    float *l = target_logits(-4.0f, -3.0f);
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    /* -3 * 1.2 = -3.6 > -4 keeps the target; rep 0.5 rewards it. */
    const int32_t want[B] = {0, TARGET, TARGET, TARGET};
    expect_tokens(tok, want, 0);
    unit_free(l);
    unit_destroy(g);
}

/* Repetition also covers generated tokens, counted after each step. */
static void test_repetition_output_steps(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float rep[B] = {1.5f, 1.0f, 1.5f, 1.0f};
    set_greedy_penalties(g, rep, NULL, NULL);
    float *l = target_logits(4.0f, 5.0f);
    int32_t tok[B];
    const int32_t want[3][B] = {{TARGET, TARGET, TARGET, TARGET},
                                {0, TARGET, 0, TARGET},
                                {1, TARGET, 1, TARGET}};
    for (int step = 0; step < 3; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        expect_tokens(tok, want[step], step);
    }
    unit_free(l);
    unit_destroy(g);
}

/* TT accumulation test: frequency 0.6 leaves the target at step 2 (5 - 2*0.6 = 3.8 < 4);
 * 0.1 never does within 4 steps. */
static void test_frequency_steps(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float freq[B] = {0.6f, 0.1f, 0.6f, 0.0f};
    set_greedy_penalties(g, NULL, NULL, freq);
    float *l = target_logits(4.0f, 5.0f);
    int32_t tok[B];
    const int32_t want[4][B] = {{TARGET, TARGET, TARGET, TARGET},
                                {TARGET, TARGET, TARGET, TARGET},
                                {0, TARGET, 0, TARGET},
                                {1, TARGET, 1, TARGET}};
    for (int step = 0; step < 4; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        expect_tokens(tok, want[step], step);
    }
    ASSERT_INT_EQ(count_of(g, 0, TARGET), 2);
    ASSERT_INT_EQ(count_of(g, 1, TARGET), 4);
    /* Peek counts nothing, so repeating a peek gives the same token. */
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, tok));
    ASSERT_INT_EQ(tok[0], 2);
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, tok));
    ASSERT_INT_EQ(tok[0], 2);
    ASSERT_INT_EQ(count_of(g, 0, 2), 0);
    unit_free(l);
    unit_destroy(g);
}

/* Presence is applied once however often the token was generated, and only for output tokens
 * (not the prompt). */
static void test_presence_once(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const float pres[B] = {0.6f, 1.5f, 2.0f, 0.0f};
    set_greedy_penalties(g, NULL, pres, NULL);
    const int32_t out[B * 3] = {TARGET, TARGET, TARGET, TARGET, TARGET, TARGET,
                                -1, -1, -1, -1, -1, -1};
    ASSERT_OK(g, ms_generator_reset_output_state(g, out, B, 3, NULL));
    const int32_t prompt[1] = {TARGET};
    const int32_t slot2 = 2;
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, 1, 1, &slot2));
    float *l = target_logits(4.0f, 5.0f);
    int32_t tok[B];
    /* step 0: 5-0.6 = 4.4 keeps; 5-1.5 = 3.5 leaves; slot 2's target is only in its prompt. */
    const int32_t want[3][B] = {{TARGET, 0, TARGET, TARGET},
                                {TARGET, 1, 0, TARGET},
                                {TARGET, 2, 1, TARGET}};
    for (int step = 0; step < 3; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        expect_tokens(tok, want[step], step);
    }
    ASSERT_INT_EQ(count_of(g, 0, TARGET), 6);
    unit_free(l);
    unit_destroy(g);
}

/* OPENAI order (repetition first) vs TT order (presence, frequency, then repetition with the
 * sign test after the subtraction). Target 0.5, others -0.9, presence 1, repetition 2:
 * OPENAI 0.5/2 - 1 = -0.75 (> -0.9, kept); TT (0.5 - 1) * 2 = -1.0 (< -0.9, left). */
static void test_penalty_order(void **state)
{
    (void)state;
    const ms_penalty_order orders[2] = {MS_PENALTY_ORDER_OPENAI, MS_PENALTY_ORDER_TT};
    const int32_t expect[2] = {TARGET, 0};
    for (int o = 0; o < 2; o++) {
        ms_generator_config cfg = unit_config(V, 0, B, 0);
        cfg.penalty_order = orders[o];
        ms_generator *g = unit_create(&cfg);
        const float rep[B] = {2.0f, 2.0f, 2.0f, 2.0f};
        const float pres[B] = {1.0f, 1.0f, 1.0f, 1.0f};
        set_greedy_penalties(g, rep, pres, NULL);
        const int32_t out[B] = {TARGET, TARGET, TARGET, TARGET};
        ASSERT_OK(g, ms_generator_reset_output_state(g, out, B, 1, NULL));
        float *l = target_logits(-0.9f, 0.5f);
        int32_t tok[B];
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        for (int32_t s = 0; s < B; s++)
            ASSERT_INT_EQ(tok[s], expect[o]);
        unit_free(l);
        unit_destroy(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_prompt_tokens),
        UNIT_TEST(test_output_state),
        UNIT_TEST(test_history_rejects),
        UNIT_TEST(test_sample_counts),
        UNIT_TEST(test_history_kept_when_penalties_off),
        UNIT_TEST(test_remap_moves_histories),
        UNIT_TEST(test_remap_duplicate_source),
        UNIT_TEST(test_repetition_prompt),
        UNIT_TEST(test_repetition_exact_tie),
        UNIT_TEST(test_repetition_negative),
        UNIT_TEST(test_repetition_output_steps),
        UNIT_TEST(test_frequency_steps),
        UNIT_TEST(test_presence_once),
        UNIT_TEST(test_penalty_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
