/*
 * Seeds (TT's SeedManager, adapted): reset_seed, draw counters, get_new_values (keys and
 * replicate), apply_slot_remap, align_seed_counters, and slot independence of a seeded stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ms_rng.h"
#include "unit_util.h"

#define V 256
#define B 4

static void get_seed(const ms_generator *g, int32_t slot, int64_t *seed, uint64_t *counter)
{
    ASSERT_OK(g, ms_generator_get_seed(g, slot, seed, counter));
}

static uint64_t counter_of(const ms_generator *g, int32_t slot)
{
    int64_t seed;
    uint64_t c;
    get_seed(g, slot, &seed, &c);
    return c;
}

static int64_t seed_of(const ms_generator *g, int32_t slot)
{
    int64_t seed;
    uint64_t c;
    get_seed(g, slot, &seed, &c);
    return seed;
}

static void keys_of(ms_generator *g, uint64_t *keys, int32_t n)
{
    int32_t slots[64];
    for (int32_t i = 0; i < n; i++)
        slots[i] = i;
    ASSERT_OK(g, ms_generator_get_new_values(g, slots, n, false, keys));
}

static void test_reset_seed_explicit(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[2] = {11, 22};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, 2, NULL, B));
    ASSERT_INT_EQ(seed_of(g, 0), 11);
    ASSERT_INT_EQ(seed_of(g, 1), 22);
    for (int32_t s = 0; s < B; s++)
        ASSERT_U64_EQ(counter_of(g, s), 0);
    /* Slots past n_seeds got entropy: not 11/22 and not each other (astronomically unlikely). */
    uint64_t keys[B];
    keys_of(g, keys, B);
    ASSERT_U64_NE(keys[2], keys[3]);
    ASSERT_U64_NE(keys[2], keys[0]);
    ASSERT_U64_NE(keys[0], keys[1]);

    /* Explicit slots: slots[i] gets seeds[i]; seed 0 is a real seed. */
    const int64_t s2[2] = {0, 5};
    const int32_t slots[2] = {3, 1};
    ASSERT_OK(g, ms_generator_reset_seed(g, s2, 2, slots, 2));
    ASSERT_INT_EQ(seed_of(g, 3), 0);
    ASSERT_INT_EQ(seed_of(g, 1), 5);
    ASSERT_INT_EQ(seed_of(g, 0), 11);
    unit_destroy(g);
}

static void test_reset_seed_entropy(void **state)
{
    (void)state;
    ms_generator *a = unit_gen(V, 0, B, 0);
    ms_generator *b = unit_gen(V, 0, B, 0);
    const int64_t none[B] = {MS_SEED_NONE, MS_SEED_NONE, MS_SEED_NONE, MS_SEED_NONE};
    ASSERT_OK(a, ms_generator_reset_seed(a, none, B, NULL, B));
    ASSERT_OK(b, ms_generator_reset_seed(b, NULL, 0, NULL, B));
    uint64_t ka[B], kb[B];
    keys_of(a, ka, B);
    keys_of(b, kb, B);
    for (int32_t i = 0; i < B; i++) {
        ASSERT_U64_EQ(counter_of(a, i), 0);
        for (int32_t j = 0; j < B; j++) {
            ASSERT_U64_NE(ka[i], kb[j]);
            if (i != j)
                ASSERT_U64_NE(ka[i], ka[j]);
        }
        /* Reported seed: the entropy seed itself (>= 0), or MS_SEED_NONE. */
        int64_t sa = seed_of(a, i), sb = seed_of(b, i);
        ASSERT_TRUE(sa >= MS_SEED_NONE && sb >= MS_SEED_NONE);
        if (sa >= 0 && sb >= 0)
            ASSERT_INT_NE(sa, sb);
    }
    unit_destroy(a);
    unit_destroy(b);
}

static void test_reset_seed_rejects(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[2] = {11, 22};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, 2, NULL, 2));
    unit_gen_state before, after;
    unit_snapshot(g, &before);
    const int64_t bad[2] = {5, -2};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_seed(g, bad, 2, NULL, 2));
    ASSERT_STR_CONTAINS(ms_generator_last_error(g), "seed");
    const int32_t bad_slots[2] = {0, B};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_reset_seed(g, seeds, 2, bad_slots, 2));
    ASSERT_INT_NE(ms_generator_reset_seed(g, seeds, 2, NULL, B + 1), MS_OK);
    unit_snapshot(g, &after);
    unit_assert_same_state(&before, &after, "reset_seed rejections");
    unit_destroy(g);
}

/* sample() advances every slot's counter by one; sample_peek does not. */
static void test_counters_advance(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[B] = {1, 2, 3, 4};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B];
    /* Greedy users (the default) advance too. */
    for (int step = 1; step <= 3; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        for (int32_t s = 0; s < B; s++)
            ASSERT_U64_EQ(counter_of(g, s), (uint64_t)step);
    }
    unit_set_stochastic(g, 1.0f, 16, 1.0f);
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    for (int32_t s = 0; s < B; s++)
        ASSERT_U64_EQ(counter_of(g, s), 4);
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, tok));
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 5, tok));
    for (int32_t s = 0; s < B; s++)
        ASSERT_U64_EQ(counter_of(g, s), 4);
    /* Resetting one slot restarts only its counter. */
    const int64_t s5 = 5;
    const int32_t slot2 = 2;
    ASSERT_OK(g, ms_generator_reset_seed(g, &s5, 1, &slot2, 1));
    ASSERT_U64_EQ(counter_of(g, 2), 0);
    ASSERT_U64_EQ(counter_of(g, 1), 4);
    unit_free(l);
    unit_destroy(g);
}

/* peek at offset d draws what the d-th later committed step draws (no penalties). */
static void test_peek_offset_matches_future(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    unit_set_stochastic(g, 1.0f, 16, 1.0f);
    const int64_t seeds[B] = {101, 202, 303, 404};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    float *l = unit_logits_ramp(B, V);
    int32_t peek[4][B], real[4][B];
    for (int d = 0; d < 4; d++)
        ASSERT_OK(g, unit_peek_f32(g, l, 0, (uint64_t)d, peek[d]));
    for (int d = 0; d < 4; d++)
        ASSERT_OK(g, unit_sample_f32(g, l, 0, real[d]));
    int distinct = 0;
    for (int d = 0; d < 4; d++)
        for (int32_t s = 0; s < B; s++) {
            ASSERT_INT_EQ(peek[d][s], real[d][s]);
            ASSERT_TRUE(real[d][s] >= 0 && real[d][s] < 16);
            if (real[d][s] != real[0][0])
                distinct++;
        }
    ASSERT_INT_OP(distinct, >, 0); /* the draws do vary */
    unit_free(l);
    unit_destroy(g);
}

static void test_get_new_values_keys(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[B] = {5, 5, 6, 7};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    uint64_t k1[B], k2[B];
    keys_of(g, k1, B);
    keys_of(g, k2, B); /* no advance */
    for (int32_t s = 0; s < B; s++) {
        ASSERT_U64_EQ(k1[s], k2[s]);
        ASSERT_U64_EQ(counter_of(g, s), 0);
        ASSERT_U64_EQ(k1[s], ms__stream_key((uint64_t)seeds[s], 0));
    }
    ASSERT_U64_EQ(k1[0], k1[1]); /* key depends on (seed, counter), not on the slot */
    ASSERT_U64_NE(k1[0], k1[2]);
    /* keys NULL is fine. */
    const int32_t one = 3;
    ASSERT_OK(g, ms_generator_get_new_values(g, &one, 1, false, NULL));
    /* After a committed step the keys move on. */
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    keys_of(g, k2, B);
    for (int32_t s = 0; s < B; s++) {
        ASSERT_U64_NE(k1[s], k2[s]);
        ASSERT_U64_EQ(k2[s], ms__stream_key((uint64_t)seeds[s], 1));
    }
    /* A subset of slots writes keys in list order. */
    const int32_t sub[2] = {3, 0};
    uint64_t ks[2];
    ASSERT_OK(g, ms_generator_get_new_values(g, sub, 2, false, ks));
    ASSERT_U64_EQ(ks[0], k2[3]);
    ASSERT_U64_EQ(ks[1], k2[0]);
    /* Slot out of range. */
    const int32_t bad[1] = {B};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_new_values(g, bad, 1, false, ks));
    unit_free(l);
    unit_destroy(g);
}

static void test_replicate_misuse(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t two[2] = {0, 1};
    uint64_t keys[2];
    ASSERT_STATUS(MS_ERR_MISUSE, g, ms_generator_get_new_values(g, two, 2, true, keys));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    ASSERT_STATUS(MS_ERR_MISUSE, g, ms_generator_get_new_values(g, two, 0, true, keys));
    unit_destroy(g);
}

static void test_replicate_one_slot(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    unit_set_stochastic(g, 1.0f, 16, 1.0f);
    const int64_t seeds[B] = {1000, 1001, 1002, 1003};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B], normal[B];
    /* Control: without replication the four seeds draw different tokens. */
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, normal));
    bool all_same = true;
    for (int32_t s = 1; s < B; s++)
        all_same = all_same && normal[s] == normal[0];
    ASSERT_TRUE(!all_same);

    const int32_t src = 2;
    uint64_t key;
    ASSERT_OK(g, ms_generator_get_new_values(g, &src, 1, true, &key));
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    for (int32_t s = 0; s < B; s++)
        ASSERT_INT_EQ(tok[s], normal[src]);
    ASSERT_U64_EQ(counter_of(g, 2), 1);
    ASSERT_U64_EQ(counter_of(g, 0), 0);
    ASSERT_U64_EQ(counter_of(g, 1), 0);
    ASSERT_U64_EQ(counter_of(g, 3), 0);
    /* Only the next committed step replicates. */
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    ASSERT_INT_EQ(tok[0], normal[0]);
    ASSERT_INT_EQ(tok[1], normal[1]);
    ASSERT_INT_EQ(tok[3], normal[3]);
    for (int32_t s = 0; s < B; s++)
        ASSERT_U64_EQ(counter_of(g, s), s == 2 ? 2 : 1);
    unit_free(l);
    unit_destroy(g);
}

/* TT test: seeds [42, _, _, 99] at slots 0 and 3; remap [0, 3, 2, 3]. */
static void test_slot_remap(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    unit_set_stochastic(g, 1.0f, 16, 1.0f);
    const int64_t seeds[2] = {42, 99};
    const int32_t slots[2] = {0, 3};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, 2, slots, 2));
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B], before[B], after[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    const int32_t s3 = 3;
    const int64_t pos = 10;
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s3, &pos, 1, 1));
    ASSERT_U64_EQ(counter_of(g, 3), 11);
    int64_t seed2;
    uint64_t ctr2;
    get_seed(g, 2, &seed2, &ctr2);
    uint64_t keys_before[B];
    keys_of(g, keys_before, B);
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, before));

    const int32_t remap[B] = {0, 3, 2, 3};
    ASSERT_OK(g, ms_generator_apply_slot_remap(g, remap, B));
    ASSERT_INT_EQ(seed_of(g, 0), 42);
    ASSERT_U64_EQ(counter_of(g, 0), 2);
    ASSERT_INT_EQ(seed_of(g, 1), 99);
    ASSERT_U64_EQ(counter_of(g, 1), 11);
    int64_t seed;
    uint64_t ctr;
    get_seed(g, 2, &seed, &ctr);
    ASSERT_INT_EQ(seed, seed2);
    ASSERT_U64_EQ(ctr, ctr2);
    get_seed(g, 3, &seed, &ctr); /* vacated: entropy seed, counter 0 */
    ASSERT_INT_NE(seed, 99);
    ASSERT_INT_NE(seed, 42);
    ASSERT_TRUE(seed >= MS_SEED_NONE);
    ASSERT_U64_EQ(ctr, 0);
    uint64_t keys_after[B];
    keys_of(g, keys_after, B);
    ASSERT_U64_EQ(keys_after[0], keys_before[0]);
    ASSERT_U64_EQ(keys_after[1], keys_before[3]);
    ASSERT_U64_EQ(keys_after[2], keys_before[2]);
    ASSERT_U64_NE(keys_after[3], keys_before[3]);
    /* The moved stream draws what slot 3 would have drawn. */
    ASSERT_OK(g, unit_peek_f32(g, l, 0, 0, after));
    ASSERT_INT_EQ(after[1], before[3]);
    ASSERT_INT_EQ(after[0], before[0]);
    ASSERT_INT_EQ(after[2], before[2]);
    unit_free(l);
    unit_destroy(g);
}

/* A swap: both sources are destinations, nothing is vacated. */
static void test_slot_remap_swap(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[B] = {42, 99, 7, 8};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    const int32_t s1 = 1;
    const int64_t p1 = 20;
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s1, &p1, 1, 0));
    const int32_t remap[B] = {1, 0, -1, 3};
    ASSERT_OK(g, ms_generator_apply_slot_remap(g, remap, B));
    ASSERT_INT_EQ(seed_of(g, 0), 99);
    ASSERT_U64_EQ(counter_of(g, 0), 20);
    ASSERT_INT_EQ(seed_of(g, 1), 42);
    ASSERT_U64_EQ(counter_of(g, 1), 0);
    ASSERT_INT_EQ(seed_of(g, 2), 7);
    ASSERT_INT_EQ(seed_of(g, 3), 8);
    unit_destroy(g);
}

static void test_slot_remap_identity_50x(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[3] = {42, MS_SEED_NONE, 99};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, 3, NULL, B));
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    unit_gen_state before, after;
    unit_snapshot(g, &before);
    uint64_t kb[B], ka[B];
    keys_of(g, kb, B);
    const int32_t id[B] = {0, 1, 2, 3};
    const int32_t none[B] = {-1, -1, -1, -1};
    for (int i = 0; i < 50; i++) {
        ASSERT_OK(g, ms_generator_apply_slot_remap(g, id, B));
        ASSERT_OK(g, ms_generator_apply_slot_remap(g, none, B));
    }
    unit_snapshot(g, &after);
    unit_assert_same_state(&before, &after, "identity remap");
    keys_of(g, ka, B);
    for (int32_t s = 0; s < B; s++)
        ASSERT_U64_EQ(ka[s], kb[s]);
    unit_free(l);
    unit_destroy(g);
}

static void test_slot_remap_rejects(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[B] = {42, 43, 44, 45};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    unit_gen_state before, after;
    unit_snapshot(g, &before);
    const int32_t bad1[B] = {0, 4, 2, 3};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_apply_slot_remap(g, bad1, B));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    const int32_t bad2[B] = {0, -2, 2, 3};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_apply_slot_remap(g, bad2, B));
    const int32_t big[B + 1] = {0, 1, 2, 3, 0};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_apply_slot_remap(g, big, B + 1));
    ASSERT_INT_NE(ms_generator_apply_slot_remap(g, NULL, B), MS_OK);
    unit_snapshot(g, &after);
    unit_assert_same_state(&before, &after, "remap rejections");
    unit_destroy(g);
}

/* TT test: seeds [101, None, 303], align slots [0] to positions [5] (offset 1) -> counters
 * [6, 0, 0, 0]. */
static void test_align_seed_counters(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[3] = {101, MS_SEED_NONE, 303};
    const int32_t slots3[3] = {0, 1, 2};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, 3, slots3, 3));
    const int32_t s0 = 0;
    const int64_t p5 = 5;
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s0, &p5, 1, 1));
    ASSERT_U64_EQ(counter_of(g, 0), 6);
    ASSERT_U64_EQ(counter_of(g, 1), 0);
    ASSERT_U64_EQ(counter_of(g, 2), 0);
    ASSERT_U64_EQ(counter_of(g, 3), 0);
    ASSERT_INT_EQ(seed_of(g, 0), 101);
    ASSERT_INT_EQ(seed_of(g, 2), 303);

    const int32_t s2 = 2;
    const int64_t p7 = 7, pneg = -10;
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s2, &p7, 1, 1));
    ASSERT_U64_EQ(counter_of(g, 2), 8);
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s2, &pneg, 1, 1));
    ASSERT_U64_EQ(counter_of(g, 2), 0);
    ASSERT_OK(g, ms_generator_align_seed_counters(g, &s0, &p5, 1, 0));
    ASSERT_U64_EQ(counter_of(g, 0), 5);
    const int32_t both[2] = {0, 2};
    const int64_t pos[2] = {3, 4};
    ASSERT_OK(g, ms_generator_align_seed_counters(g, both, pos, 2, 2));
    ASSERT_U64_EQ(counter_of(g, 0), 5);
    ASSERT_U64_EQ(counter_of(g, 2), 6);
    ASSERT_INT_EQ(seed_of(g, 0), 101);

    /* Out of range slot: error, nothing changed. */
    unit_gen_state before, after;
    unit_snapshot(g, &before);
    const int32_t bad[2] = {0, B};
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_align_seed_counters(g, bad, pos, 2, 1));
    unit_snapshot(g, &after);
    unit_assert_same_state(&before, &after, "align rejection");
    unit_destroy(g);
}

/* After align, the draw uses the aligned counter: equal to a fresh stream peeked at that offset. */
static void test_align_drives_draw(void **state)
{
    (void)state;
    ms_generator *a = unit_gen(V, 0, B, 0);
    ms_generator *b = unit_gen(V, 0, B, 0);
    unit_set_stochastic(a, 1.0f, 16, 1.0f);
    unit_set_stochastic(b, 1.0f, 16, 1.0f);
    const int64_t seeds[B] = {101, 102, 103, 104};
    ASSERT_OK(a, ms_generator_reset_seed(a, seeds, B, NULL, B));
    ASSERT_OK(b, ms_generator_reset_seed(b, seeds, B, NULL, B));
    const int32_t slots[B] = {0, 1, 2, 3};
    const int64_t pos[B] = {5, 5, 5, 5};
    ASSERT_OK(a, ms_generator_align_seed_counters(a, slots, pos, B, 1));
    float *l = unit_logits_ramp(B, V);
    int32_t ta[B], tb[B];
    for (uint64_t d = 0; d < 3; d++) {
        ASSERT_OK(a, unit_peek_f32(a, l, 0, d, ta));
        ASSERT_OK(b, unit_peek_f32(b, l, 0, 6 + d, tb));
        for (int32_t s = 0; s < B; s++)
            ASSERT_INT_EQ(ta[s], tb[s]);
    }
    unit_free(l);
    unit_destroy(a);
    unit_destroy(b);
}

/* A seeded user's stream is the same in slot 0 of one generator and slot 5 of another, whatever
 * its batch mates; another seed gives another stream. */
static void test_stream_slot_independent(void **state)
{
    (void)state;
    enum { BB = 8, STEPS = 6 };
    ms_generator *a = unit_gen(V, 0, BB, 0);
    ms_generator *b = unit_gen(V, 0, BB, 0);
    ms_generator *c = unit_gen(V, 0, BB, 0);
    unit_set_stochastic(a, 1.0f, 16, 1.0f);
    unit_set_stochastic(b, 1.0f, 16, 1.0f);
    unit_set_stochastic(c, 1.0f, 16, 1.0f);
    const int64_t sa[BB] = {777, 1, 2, 3, 4, 5, 6, 7};
    ASSERT_OK(a, ms_generator_reset_seed(a, sa, BB, NULL, BB));
    const int64_t sb[BB] = {90, 91, 92, 93, 94, 95, 96, 97};
    ASSERT_OK(b, ms_generator_reset_seed(b, sb, BB, NULL, BB));
    const int64_t s777 = 777, s778 = 778;
    const int32_t slot5 = 5;
    ASSERT_OK(b, ms_generator_reset_seed(b, &s777, 1, &slot5, 1));
    ASSERT_OK(c, ms_generator_reset_seed(c, &s778, 1, &slot5, 1));
    float *l = unit_logits_ramp(BB, V);
    int32_t ta[BB], tb[BB], tc[BB];
    int differ = 0, distinct = 0;
    int32_t first = -1;
    for (int step = 0; step < STEPS; step++) {
        ASSERT_OK(a, unit_sample_f32(a, l, 0, ta));
        ASSERT_OK(b, unit_sample_f32(b, l, 0, tb));
        ASSERT_OK(c, unit_sample_f32(c, l, 0, tc));
        ASSERT_INT_EQ(ta[0], tb[5]);
        if (tc[5] != tb[5])
            differ++;
        if (step == 0)
            first = ta[0];
        else if (ta[0] != first)
            distinct++;
    }
    ASSERT_INT_OP(differ, >, 0);
    ASSERT_INT_OP(distinct, >, 0);
    unit_free(l);
    unit_destroy(a);
    unit_destroy(b);
    unit_destroy(c);
}

/* counter := max(0, position + offset) computed without signed overflow (UBSan would trap):
 * the exact value, or a rejection. */
static void test_align_extremes(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int32_t s0 = 0, s1 = 1;
    const int64_t pmax = INT64_MAX, pmin = INT64_MIN;
    ms_status st = ms_generator_align_seed_counters(g, &s0, &pmax, 1, 1);
    if (st == MS_OK)
        ASSERT_U64_EQ(counter_of(g, 0), (uint64_t)INT64_MAX + 1u);
    else
        ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, st);
    st = ms_generator_align_seed_counters(g, &s1, &pmin, 1, -1);
    if (st == MS_OK)
        ASSERT_U64_EQ(counter_of(g, 1), 0);
    else
        ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, st);
    unit_destroy(g);
}

static void test_get_seed_bad(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    int64_t seed;
    uint64_t ctr;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_seed(g, B, &seed, &ctr));
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_get_seed(g, -1, &seed, &ctr));
    unit_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_reset_seed_explicit),
        UNIT_TEST(test_reset_seed_entropy),
        UNIT_TEST(test_reset_seed_rejects),
        UNIT_TEST(test_counters_advance),
        UNIT_TEST(test_peek_offset_matches_future),
        UNIT_TEST(test_get_new_values_keys),
        UNIT_TEST(test_replicate_misuse),
        UNIT_TEST(test_replicate_one_slot),
        UNIT_TEST(test_slot_remap),
        UNIT_TEST(test_slot_remap_swap),
        UNIT_TEST(test_slot_remap_identity_50x),
        UNIT_TEST(test_slot_remap_rejects),
        UNIT_TEST(test_align_seed_counters),
        UNIT_TEST(test_align_drives_draw),
        UNIT_TEST(test_stream_slot_independent),
        UNIT_TEST(test_get_seed_bad),
        UNIT_TEST(test_align_extremes), /* last: UBSan aborts the binary on overflow */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
