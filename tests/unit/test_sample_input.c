/*
 * Inputs of a step: dtypes (f32, bf16, f16 of the same values give the same tokens), row
 * strides wider than the shard (the gap is never read), vocabulary padding (never sampled),
 * bad arguments, and NULL generators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit_util.h"

#define V 64
#define B 8
#define STEPS 4

/* Values exactly representable in bf16 and f16: multiples of 1/8 in [-4, 4], distinct enough
 * per row that greedy and sampled tokens vary between users. */
static float value_at(int32_t u, int32_t t)
{
    int32_t k = (u * 7 + t * 13 + (t * t) % 11) % 61;
    return (float)(k - 30) / 8.0f;
}

typedef struct dtype_buf {
    void *data;
    ms_dtype dtype;
    int64_t stride;
} dtype_buf;

/* A [B, V] matrix with the given stride (>= V) in dtype; the columns [V, stride) hold `pad`.
 * The last row is allocated exactly V wide so that reading its gap trips ASan. */
static dtype_buf make_buf(ms_dtype dt, int64_t stride, float pad)
{
    size_t n = (size_t)(B - 1) * (size_t)stride + V;
    size_t esz = dt == MS_DTYPE_F32 ? 4 : 2;
    dtype_buf b = {unit_alloc(n * esz), dt, stride};
    ASSERT_TRUE(b.data != NULL);
    for (size_t i = 0; i < n; i++) {
        int32_t u = (int32_t)(i / (size_t)stride), t = (int32_t)(i % (size_t)stride);
        float v = t < V ? value_at(u, t) : pad;
        if (dt == MS_DTYPE_F32)
            ((float *)b.data)[i] = v;
        else if (dt == MS_DTYPE_BF16) {
            uint16_t h = unit_f32_to_bf16(v);
            if (t < V)
                ASSERT_FLT_EQ(unit_bf16_to_f32(h), v);
            ((uint16_t *)b.data)[i] = h;
        } else {
            uint16_t h = t < V ? unit_f32_to_f16(v) : (uint16_t)0x7BFFu; /* 65504 */
            if (t < V)
                ASSERT_FLT_EQ(unit_f16_to_f32(h), v);
            ((uint16_t *)b.data)[i] = h;
        }
    }
    return b;
}

/* Tokens of STEPS committed steps with seeds 500+slot and the given parameters. */
static void run_steps(const dtype_buf *buf, float temperature, int64_t k, float p,
                      int32_t tokens[STEPS][B])
{
    ms_generator *g = unit_gen(V, 0, B, 0);
    unit_set_stochastic(g, temperature, k, p);
    int64_t seeds[B];
    for (int32_t s = 0; s < B; s++)
        seeds[s] = 500 + s;
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    for (int step = 0; step < STEPS; step++) {
        ASSERT_OK(g, unit_sample_raw(g, buf->data, buf->dtype, buf->stride, tokens[step]));
        for (int32_t s = 0; s < B; s++)
            ASSERT_TRUE(tokens[step][s] >= 0 && tokens[step][s] < V);
    }
    unit_destroy(g);
}

static void assert_same_tokens(int32_t a[STEPS][B], int32_t b[STEPS][B], const char *ctx)
{
    for (int step = 0; step < STEPS; step++)
        for (int32_t s = 0; s < B; s++)
            if (a[step][s] != b[step][s]) {
                print_error("%s: step %d slot %d: %d vs %d\n", ctx, step, s, a[step][s],
                            b[step][s]);
                fail();
            }
}

static int count_distinct(int32_t t[STEPS][B])
{
    int distinct = 0;
    for (int i = 0; i < STEPS * B; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen = seen || t[j / B][j % B] == t[i / B][i % B];
        distinct += !seen;
    }
    return distinct;
}

static const struct {
    const char *name;
    float t;
    int64_t k;
    float p;
} modes[] = {
    {"greedy", 0.0f, 1, 1.0f},
    {"top-k 8", 1.0f, 8, 1.0f},
    {"top-p 0.9 exact", 0.7f, 0, 0.9f},
    {"full vocabulary", 1.5f, 0, 1.0f},
};

static void test_dtypes_agree(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        int32_t t32[STEPS][B], t16b[STEPS][B], t16h[STEPS][B];
        dtype_buf f32 = make_buf(MS_DTYPE_F32, V, 0), bf = make_buf(MS_DTYPE_BF16, V, 0),
                  hf = make_buf(MS_DTYPE_F16, V, 0);
        run_steps(&f32, modes[m].t, modes[m].k, modes[m].p, t32);
        run_steps(&bf, modes[m].t, modes[m].k, modes[m].p, t16b);
        run_steps(&hf, modes[m].t, modes[m].k, modes[m].p, t16h);
        assert_same_tokens(t32, t16b, modes[m].name);
        assert_same_tokens(t32, t16h, modes[m].name);
        ASSERT_INT_OP(count_distinct(t32), >, 1);
        if (m == 0) {
            /* Greedy: the argmax of each row, ties to the lowest id. */
            for (int32_t s = 0; s < B; s++) {
                int32_t best = 0;
                for (int32_t t = 1; t < V; t++)
                    if (value_at(s, t) > value_at(s, best))
                        best = t;
                ASSERT_INT_EQ(t32[0][s], best);
            }
        }
        unit_free(f32.data);
        unit_free(bf.data);
        unit_free(hf.data);
    }
}

/* row_stride > width: results equal the packed layout; the huge padding is never read. */
static void test_row_stride(void **state)
{
    (void)state;
    const ms_dtype dts[3] = {MS_DTYPE_F32, MS_DTYPE_BF16, MS_DTYPE_F16};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        int32_t packed[STEPS][B];
        dtype_buf f32 = make_buf(MS_DTYPE_F32, V, 0);
        run_steps(&f32, modes[m].t, modes[m].k, modes[m].p, packed);
        unit_free(f32.data);
        for (int d = 0; d < 3; d++) {
            int32_t strided[STEPS][B];
            /* bf16 0x7F7F is 3.4e38; make_buf writes 65504 for f16 padding. */
            dtype_buf b = make_buf(dts[d], V + 16, dts[d] == MS_DTYPE_BF16 ? 3.0e38f : 1e30f);
            run_steps(&b, modes[m].t, modes[m].k, modes[m].p, strided);
            assert_same_tokens(packed, strided, modes[m].name);
            unit_free(b.data);
        }
    }
}

/* Padding columns of the vocabulary (>= vocab_size) are never sampled, however large. */
static void test_vocab_padding_never_sampled(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(60, 64, B, 0);
    float *l = unit_logits_fill(B, 64, 0.0f);
    for (int32_t r = 0; r < B; r++) {
        l[r * 64 + 7] = 1.0f;
        for (int32_t t = 60; t < 64; t++)
            l[r * 64 + t] = 1e30f;
    }
    int32_t tok[B];
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    for (int32_t s = 0; s < B; s++)
        ASSERT_INT_EQ(tok[s], 7);
    unit_set_stochastic(g, 2.0f, 0, 1.0f);
    for (int step = 0; step < 10; step++) {
        ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
        for (int32_t s = 0; s < B; s++)
            ASSERT_INT_OP(tok[s], <, 60);
    }
    unit_set_stochastic(g, 1.0f, 8, 1.0f);
    ASSERT_OK(g, unit_sample_f32(g, l, 0, tok));
    for (int32_t s = 0; s < B; s++)
        ASSERT_INT_OP(tok[s], <, 60);
    unit_free(l);
    unit_destroy(g);
}

/* device_view slices one full matrix into the shards of each device. */
static void test_device_view(void **state)
{
    (void)state;
    ms_generator_config cfg = unit_config(60, 64, 2, 0);
    cfg.mesh.rows = 2;
    cfg.mesh.cols = 4;
    cfg.mesh.all_gather_axis = 1;
    cfg.mesh.sampling_dp = 2;
    ms_generator *g = NULL;
    ms_status s = ms_generator_create(&cfg, &g);
    ASSERT_STATUS2(MS_OK, MS_ERR_UNSUPPORTED, s, ms_create_last_error());
    if (s != MS_OK)
        return;
    unit_track(g, true);
    ASSERT_INT_EQ(ms_generator_num_users(g), 4);
    ASSERT_INT_EQ(ms_generator_shard_width(g), 16);
    static uint16_t full[4 * 70];
    ms_logits fl = {full, MS_DTYPE_BF16, 70};
    for (int32_t d = 0; d < 8; d++) {
        ms_logits v;
        memset(&v, 0, sizeof v);
        ASSERT_OK(g, ms_generator_device_view(g, &fl, d, &v));
        int32_t r = d / 4, c = d % 4; /* group r, shard c */
        ASSERT_TRUE(v.data == (const void *)(full + r * 2 * 70 + c * 16));
        ASSERT_INT_EQ(v.dtype, MS_DTYPE_BF16);
        ASSERT_INT_EQ(v.row_stride, 70);
    }
    ms_logits v;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_device_view(g, &fl, 8, &v));
    fl.row_stride = 0; /* 0 = padded_vocab */
    ASSERT_OK(g, ms_generator_device_view(g, &fl, 5, &v));
    ASSERT_TRUE(v.data == (const void *)(full + 1 * 2 * 64 + 1 * 16));
    ASSERT_INT_EQ(v.row_stride, 64);
    unit_destroy(g);
}

/* The same seeded users draw the same tokens on every mesh shape (DESIGN 2.4). */
static void test_mesh_invariance(void **state)
{
    (void)state;
    const struct {
        int32_t rows, cols, axis;
    } meshes[] = {{1, 1, 1}, {1, 2, 1}, {2, 1, 0}, {1, 4, 1}, {2, 4, 1}, {2, 4, 0}};
    dtype_buf f32 = make_buf(MS_DTYPE_F32, V, 0);
    int32_t ref[STEPS][B];
    for (size_t m = 0; m < sizeof meshes / sizeof meshes[0]; m++) {
        ms_generator_config cfg = unit_config(V, 0, B, 0);
        cfg.mesh.rows = meshes[m].rows;
        cfg.mesh.cols = meshes[m].cols;
        cfg.mesh.all_gather_axis = meshes[m].axis;
        ms_generator *g = NULL;
        ms_status s = ms_generator_create(&cfg, &g);
        ASSERT_STATUS2(MS_OK, MS_ERR_UNSUPPORTED, s, ms_create_last_error());
        if (s != MS_OK)
            continue;
        unit_track(g, true);
        unit_set_stochastic(g, 1.0f, 8, 0.95f);
        int64_t seeds[B];
        for (int32_t u = 0; u < B; u++)
            seeds[u] = 900 + u;
        ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
        int32_t nd = ms_generator_num_shards(g);
        ms_logits views[8];
        ms_logits full = {f32.data, MS_DTYPE_F32, 0};
        for (int32_t d = 0; d < nd; d++)
            ASSERT_OK(g, ms_generator_device_view(g, &full, d, &views[d]));
        int32_t tok[STEPS][B];
        for (int step = 0; step < STEPS; step++) {
            ms_step_output out;
            memset(&out, 0, sizeof out);
            out.tokens = tok[step];
            ASSERT_OK(g, ms_generator_sample(g, views, nd, false, &out));
        }
        if (m == 0)
            memcpy(ref, tok, sizeof ref);
        else
            assert_same_tokens(ref, tok, "mesh");
        unit_destroy(g);
    }
    unit_free(f32.data);
}

static void expect_bad(ms_generator *g, ms_status s, const char *what)
{
    if (s != MS_ERR_INVALID_ARGUMENT && s != MS_ERR_MISUSE) {
        print_error("%s: got %s, want INVALID_ARGUMENT or MISUSE\n", what, ms_status_name(s));
        fail();
    }
    const char *m = ms_generator_last_error(g);
    if (!m || !m[0]) {
        print_error("%s: empty message\n", what);
        fail();
    }
}

static void test_bad_sample_args(void **state)
{
    (void)state;
    ms_generator *g = unit_gen(V, 0, B, 0);
    const int64_t seeds[B] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, B, NULL, B));
    float *l = unit_logits_ramp(B, V);
    int32_t tok[B];
    ms_logits lg = {l, MS_DTYPE_F32, 0};
    ms_step_output out;
    memset(&out, 0, sizeof out);
    out.tokens = tok;
    unit_gen_state before, after;
    unit_snapshot(g, &before);

    expect_bad(g, ms_generator_sample(g, NULL, 1, false, &out), "NULL logits");
    expect_bad(g, ms_generator_sample(g, &lg, 0, false, &out), "n_logits 0");
    ms_logits two[2] = {lg, lg};
    expect_bad(g, ms_generator_sample(g, two, 2, false, &out), "n_logits 2 on 1x1");
    expect_bad(g, ms_generator_sample(g, &lg, 1, false, NULL), "NULL out");
    ms_step_output no_tokens;
    memset(&no_tokens, 0, sizeof no_tokens);
    expect_bad(g, ms_generator_sample(g, &lg, 1, false, &no_tokens), "NULL tokens");
    ms_logits bad = lg;
    bad.dtype = (ms_dtype)7;
    expect_bad(g, ms_generator_sample(g, &bad, 1, false, &out), "unknown dtype");
    bad = lg;
    bad.dtype = (ms_dtype)-1;
    expect_bad(g, ms_generator_sample(g, &bad, 1, false, &out), "dtype -1");
    bad = lg;
    bad.data = NULL;
    expect_bad(g, ms_generator_sample(g, &bad, 1, false, &out), "NULL data");
    bad = lg;
    bad.row_stride = V - 1;
    expect_bad(g, ms_generator_sample(g, &bad, 1, false, &out), "row_stride < width");
    bad.row_stride = -V;
    expect_bad(g, ms_generator_sample(g, &bad, 1, false, &out), "negative row_stride");
    /* The same for peek. */
    expect_bad(g, ms_generator_sample_peek(g, NULL, 1, 0, &out), "peek NULL logits");
    expect_bad(g, ms_generator_sample_peek(g, &lg, 1, 0, &no_tokens), "peek NULL tokens");
    bad = lg;
    bad.dtype = (ms_dtype)7;
    expect_bad(g, ms_generator_sample_peek(g, &bad, 1, 0, &out), "peek unknown dtype");

    /* Failed steps change nothing (no counter advanced, no token counted). */
    unit_snapshot(g, &after);
    unit_assert_same_state(&before, &after, "failed steps");
    for (int32_t t = 0; t < V; t++) {
        int32_t c;
        bool p;
        ASSERT_OK(g, ms_generator_get_token_state(g, 0, t, &c, &p));
        ASSERT_INT_EQ(c, 0);
    }
    /* And the generator still works. */
    ASSERT_OK(g, ms_generator_sample(g, &lg, 1, false, &out));
    unit_free(l);
    unit_destroy(g);
}

/* Every entry point accepts a NULL generator without crashing. */
static void test_null_generator(void **state)
{
    (void)state;
    ms_generator_destroy(NULL);
    float l[V] = {0};
    int32_t tok[B];
    ms_logits lg = {l, MS_DTYPE_F32, 0};
    ms_step_output out;
    memset(&out, 0, sizeof out);
    out.tokens = tok;
    ms_slot_params sp = unit_greedy_default();
    ms_sampling_params p;
    ms_sampling_params_init(&p);
    int32_t slot = 0, c = 0;
    int64_t seed = 1, pos = 1;
    uint64_t ctr = 0, key = 0;
    bool inp = false;
    ASSERT_INT_NE(ms_generator_sample(NULL, &lg, 1, false, &out), MS_OK);
    ASSERT_INT_NE(ms_generator_sample_peek(NULL, &lg, 1, 0, &out), MS_OK);
    ASSERT_INT_NE(ms_generator_set_params(NULL, &sp, 1, &slot), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_sampling_params(NULL, &p, NULL, 0), MS_OK);
    ASSERT_INT_NE(ms_generator_get_params(NULL, 0, &sp), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_seed(NULL, &seed, 1, &slot, 1), MS_OK);
    ASSERT_INT_NE(ms_generator_get_new_values(NULL, &slot, 1, false, &key), MS_OK);
    ASSERT_INT_NE(ms_generator_apply_slot_remap(NULL, &slot, 1), MS_OK);
    ASSERT_INT_NE(ms_generator_align_seed_counters(NULL, &slot, &pos, 1, 1), MS_OK);
    ASSERT_INT_NE(ms_generator_get_seed(NULL, 0, &seed, &ctr), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_prompt_tokens(NULL, &slot, 1, 1, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_reset_output_state(NULL, NULL, 0, 0, NULL), MS_OK);
    ASSERT_INT_NE(ms_generator_get_token_state(NULL, 0, 0, &c, &inp), MS_OK);
    ms_logits view;
    ASSERT_INT_NE(ms_generator_device_view(NULL, &lg, 0, &view), MS_OK);
    (void)ms_generator_num_users(NULL);
    (void)ms_generator_num_shards(NULL);
    (void)ms_generator_shard_width(NULL);
    (void)ms_generator_max_logprobs(NULL);
    (void)ms_generator_last_error(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_dtypes_agree),
        UNIT_TEST(test_row_stride),
        UNIT_TEST(test_vocab_padding_never_sampled),
        UNIT_TEST(test_device_view),
        UNIT_TEST(test_mesh_invariance),
        UNIT_TEST(test_bad_sample_args),
        UNIT_TEST(test_null_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
