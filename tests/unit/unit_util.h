/*
 * Helpers shared by the unit tests: generator construction, logits buffers in every dtype,
 * one-call steps and field-by-field comparison of formatted parameters. Include after
 * <cmocka.h>; everything is static so each test binary gets its own copy.
 */
#ifndef MS_UNIT_UTIL_H
#define MS_UNIT_UTIL_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshsample.h"
#include "test.h"

#define ARRAY_LEN(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

/* ---- ownership: what a test allocates is released by unit_teardown even when an assertion
 * longjmps out of the test, so LeakSanitizer only ever reports the library's leaks. ---- */
#define UNIT_MAX_OBJS 64
static void *unit_objs[UNIT_MAX_OBJS];
static bool unit_is_gen[UNIT_MAX_OBJS];

static inline void unit_track(void *p, bool is_gen)
{
    for (int i = 0; i < UNIT_MAX_OBJS; i++)
        if (!unit_objs[i]) {
            unit_objs[i] = p;
            unit_is_gen[i] = is_gen;
            return;
        }
    print_error("unit_track: more than %d live objects\n", UNIT_MAX_OBJS);
    fail();
}

static inline void unit_untrack(const void *p)
{
    for (int i = 0; i < UNIT_MAX_OBJS; i++)
        if (unit_objs[i] == p)
            unit_objs[i] = NULL;
}

/* Test-owned memory (freed by unit_free or the teardown). */
static inline void *unit_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ASSERT_TRUE(p != NULL);
    unit_track(p, false);
    return p;
}

static inline void unit_free(void *p)
{
    unit_untrack(p);
    free(p);
}

static inline void unit_destroy(ms_generator *g)
{
    unit_untrack(g);
    ms_generator_destroy(g);
}

static inline int unit_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < UNIT_MAX_OBJS; i++) {
        if (!unit_objs[i])
            continue;
        if (unit_is_gen[i])
            ms_generator_destroy((ms_generator *)unit_objs[i]);
        else
            free(unit_objs[i]);
        unit_objs[i] = NULL;
    }
    return 0;
}

#define UNIT_TEST(f) cmocka_unit_test_teardown(f, unit_teardown)

/* ---- generators ---- */

static inline ms_generator_config unit_config(int32_t vocab, int32_t padded, int32_t batch,
                                              int32_t max_top_k)
{
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = vocab;
    cfg.mesh.padded_vocab_size = padded;
    cfg.mesh.max_batch_size = batch;
    cfg.mesh.max_top_k = max_top_k;
    cfg.num_threads = 1;
    return cfg;
}

static inline ms_generator *unit_create(const ms_generator_config *cfg)
{
    ms_generator *g = NULL;
    ms_status s = ms_generator_create(cfg, &g);
    ASSERT_STATUS_MSG(MS_OK, s, ms_create_last_error());
    ASSERT_TRUE(g != NULL);
    unit_track(g, true);
    return g;
}

/* A 1x1 host generator: vocab (padded 0 = vocab), batch users, max_top_k (0 = exact). */
static inline ms_generator *unit_gen(int32_t vocab, int32_t padded, int32_t batch,
                                     int32_t max_top_k)
{
    ms_generator_config cfg = unit_config(vocab, padded, batch, max_top_k);
    return unit_create(&cfg);
}

/* Install the same stochastic parameters in every slot (T, k, p; no penalties). */
static inline void unit_set_stochastic(ms_generator *g, float t, int64_t k, float p)
{
    ms_sampling_params sp;
    ms_sampling_params_init(&sp);
    sp.temperature = ms_fscalar(t);
    sp.top_k = ms_iscalar(k);
    sp.top_p = ms_fscalar(p);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &sp, NULL, 0));
}

/* ---- steps ---- */

/* One committed step on a single f32 buffer (1x1 mesh). stride 0 = width. */
static inline ms_status unit_sample_f32(ms_generator *g, const float *logits, int64_t stride,
                                        int32_t *tokens)
{
    ms_logits l = {logits, MS_DTYPE_F32, stride};
    ms_step_output out;
    memset(&out, 0, sizeof out);
    out.tokens = tokens;
    return ms_generator_sample(g, &l, 1, false, &out);
}

static inline ms_status unit_peek_f32(ms_generator *g, const float *logits, int64_t stride,
                                      uint64_t offset, int32_t *tokens)
{
    ms_logits l = {logits, MS_DTYPE_F32, stride};
    ms_step_output out;
    memset(&out, 0, sizeof out);
    out.tokens = tokens;
    return ms_generator_sample_peek(g, &l, 1, offset, &out);
}

static inline ms_status unit_sample_raw(ms_generator *g, const void *data, ms_dtype dt,
                                        int64_t stride, int32_t *tokens)
{
    ms_logits l = {data, dt, stride};
    ms_step_output out;
    memset(&out, 0, sizeof out);
    out.tokens = tokens;
    return ms_generator_sample(g, &l, 1, false, &out);
}

/* rows x width f32 matrix where every element is `fill`. Caller frees. */
static inline float *unit_logits_fill(int32_t rows, int32_t width, float fill)
{
    float *l = unit_alloc((size_t)rows * (size_t)width * sizeof *l);
    for (size_t i = 0; i < (size_t)rows * (size_t)width; i++)
        l[i] = fill;
    return l;
}

/* Gently decreasing logits, identical in every row: token t gets -0.01 t. With top_k 16 the
 * survivors are 0..15 at nearly equal probability, so different seeds draw different tokens. */
static inline float *unit_logits_ramp(int32_t rows, int32_t width)
{
    float *l = unit_logits_fill(rows, width, 0.0f);
    for (int32_t r = 0; r < rows; r++)
        for (int32_t t = 0; t < width; t++)
            l[(size_t)r * (size_t)width + (size_t)t] = -0.01f * (float)t;
    return l;
}

/* ---- dtypes ---- */

static inline uint32_t unit_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* bf16 of an f32 that bf16 represents exactly (truncation is then exact). */
static inline uint16_t unit_f32_to_bf16(float f) { return (uint16_t)(unit_f32_bits(f) >> 16); }

static inline float unit_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE half of an f32 that half represents exactly as a normal number or zero. */
static inline uint16_t unit_f32_to_f16(float f)
{
    uint32_t u = unit_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    int32_t exp = (int32_t)((u >> 23) & 0xffu);
    uint32_t mant = u & 0x7fffffu;
    if (exp == 0 && mant == 0)
        return sign;
    exp = exp - 127 + 15;
    ASSERT_TRUE(exp > 0 && exp < 31);           /* normal half */
    ASSERT_TRUE((mant & 0x1fffu) == 0);         /* exactly representable */
    return (uint16_t)(sign | (uint16_t)(exp << 10) | (uint16_t)(mant >> 13));
}

static inline float unit_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0 && mant == 0)
        u = sign;
    else if (exp == 31)
        u = sign | 0x7f800000u | (mant << 13);
    else if (exp == 0) {
        /* subnormal: renormalise */
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while ((mant & 0x400u) == 0);
        u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    } else
        u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- formatted parameters ---- */

static inline ms_slot_params unit_slot(float t, int32_t k, float p, float min_p, float pres,
                                       float freq, float rep, int64_t seed, bool lp, int32_t nlp)
{
    ms_slot_params s;
    memset(&s, 0, sizeof s);
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    s.presence_penalty = pres;
    s.frequency_penalty = freq;
    s.repetition_penalty = rep;
    s.seed = seed;
    s.enable_log_probs = lp;
    s.num_logprobs = nlp;
    return s;
}

/* A user formatted from all-None parameters: greedy, unseeded. */
static inline ms_slot_params unit_greedy_default(void)
{
    return unit_slot(1.0f, 1, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, MS_SEED_NONE, false, 0);
}

static inline bool unit_feq(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

/* Compare two formatted users field by field; print every difference. Returns true if equal. */
static inline bool unit_slot_diff(const ms_slot_params *got, const ms_slot_params *exp,
                                  bool with_seed, const char *ctx, int32_t user)
{
    bool ok = true;
#define UNIT_FDIFF(f)                                                                           \
    if (!unit_feq(got->f, exp->f)) {                                                           \
        print_error("%s: user %d: " #f " = %.9g, expected %.9g\n", ctx, user, (double)got->f,   \
                    (double)exp->f);                                                            \
        ok = false;                                                                             \
    }
#define UNIT_IDIFF(f)                                                                           \
    if ((long long)got->f != (long long)exp->f) {                                               \
        print_error("%s: user %d: " #f " = %lld, expected %lld\n", ctx, user,                   \
                    (long long)got->f, (long long)exp->f);                                      \
        ok = false;                                                                             \
    }
    UNIT_FDIFF(temperature)
    UNIT_IDIFF(top_k)
    UNIT_FDIFF(top_p)
    UNIT_FDIFF(min_p)
    UNIT_FDIFF(presence_penalty)
    UNIT_FDIFF(frequency_penalty)
    UNIT_FDIFF(repetition_penalty)
    if (with_seed) {
        UNIT_IDIFF(seed)
    }
    UNIT_IDIFF(enable_log_probs)
    UNIT_IDIFF(num_logprobs)
#undef UNIT_FDIFF
#undef UNIT_IDIFF
    return ok;
}

#define ASSERT_SLOT_EQ(got, exp, with_seed, ctx, user)                                          \
    do {                                                                                        \
        if (!unit_slot_diff((got), (exp), (with_seed), (ctx), (user))) {                        \
            print_error("%s:%d: formatted parameters differ (see above)\n", __FILE__, __LINE__);\
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Snapshot of every slot's parameters, seed and counter, to prove "nothing changed". */
typedef struct unit_gen_state {
    int32_t n;
    ms_slot_params params[64];
    int64_t seed[64];
    uint64_t counter[64];
} unit_gen_state;

static inline void unit_snapshot(const ms_generator *g, unit_gen_state *st)
{
    memset(st, 0, sizeof *st);
    st->n = ms_generator_num_users(g);
    ASSERT_TRUE(st->n > 0 && st->n <= 64);
    for (int32_t s = 0; s < st->n; s++) {
        ASSERT_STATUS_MSG(MS_OK, ms_generator_get_params(g, s, &st->params[s]),
                          ms_generator_last_error(g));
        ASSERT_STATUS_MSG(MS_OK, ms_generator_get_seed(g, s, &st->seed[s], &st->counter[s]),
                          ms_generator_last_error(g));
    }
}

static inline void unit_assert_same_state(const unit_gen_state *a, const unit_gen_state *b,
                                          const char *ctx)
{
    ASSERT_INT_EQ(a->n, b->n);
    bool ok = true;
    for (int32_t s = 0; s < a->n; s++) {
        if (!unit_slot_diff(&b->params[s], &a->params[s], true, ctx, s))
            ok = false;
        if (a->seed[s] != b->seed[s] || a->counter[s] != b->counter[s]) {
            print_error("%s: slot %d: seed/counter %lld/%llu became %lld/%llu\n", ctx, s,
                        (long long)a->seed[s], (unsigned long long)a->counter[s],
                        (long long)b->seed[s], (unsigned long long)b->counter[s]);
            ok = false;
        }
    }
    if (!ok) {
        print_error("%s: generator state changed\n", ctx);
        fail();
    }
}

#endif /* MS_UNIT_UTIL_H */
