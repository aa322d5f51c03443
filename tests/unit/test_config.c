/*
 * Generator configuration: defaults of the *_config_init functions, validation at
 * ms_generator_create (DESIGN section 4: invalid configuration fails at create with a message
 * naming the field) and the accessors of a valid generator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit_util.h"

static void test_config_defaults(void **state)
{
    (void)state;
    ms_generator_config cfg;
    memset(&cfg, 0x5A, sizeof cfg);
    ms_generator_config_init(&cfg);
    ASSERT_INT_EQ(cfg.mesh.rows, 1);
    ASSERT_INT_EQ(cfg.mesh.cols, 1);
    ASSERT_INT_EQ(cfg.mesh.max_batch_size, 32);
    ASSERT_INT_EQ(cfg.mesh.max_top_k, 0);
    ASSERT_INT_EQ(cfg.mesh.sampling_dp, 1);
    ASSERT_INT_EQ(cfg.mesh.padded_vocab_size, 0);
    ASSERT_INT_EQ(cfg.mesh.num_links, 1);
    ASSERT_TRUE(cfg.mesh.allow_force_argmax);
    ASSERT_TRUE(cfg.mesh.worker_cpus == NULL);
    ASSERT_INT_EQ(cfg.backend, MS_BACKEND_HOST);
    ASSERT_INT_EQ(cfg.max_logprobs, MS_MAX_TOP_LOGPROBS_DEFAULT);
    ASSERT_INT_EQ(cfg.exact_candidates, MS_EXACT_CANDIDATES_DEFAULT);
    ASSERT_INT_EQ(cfg.logprobs_mode, MS_LOGPROBS_RAW);
    ASSERT_INT_EQ(cfg.penalty_order, MS_PENALTY_ORDER_OPENAI);
    ASSERT_TRUE(cfg.enable_internal_trace);

    ms_mesh_config mesh;
    memset(&mesh, 0x5A, sizeof mesh);
    ms_mesh_config_init(&mesh);
    ASSERT_INT_EQ(mesh.rows, 1);
    ASSERT_INT_EQ(mesh.cols, 1);
    ASSERT_INT_EQ(mesh.max_batch_size, 32);
    ASSERT_INT_EQ(mesh.max_top_k, 0);
    ASSERT_INT_EQ(mesh.sampling_dp, 1);
}

static void test_valid_1x1(void **state)
{
    (void)state;
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = 1000;
    ms_generator *g = unit_create(&cfg);
    ASSERT_INT_EQ(ms_generator_num_users(g), 32);
    ASSERT_INT_EQ(ms_generator_num_shards(g), 1);
    ASSERT_INT_EQ(ms_generator_shard_width(g), 1000);
    ASSERT_INT_EQ(ms_generator_max_logprobs(g), 20);
    unit_destroy(g);

    cfg.mesh.padded_vocab_size = 1024;
    cfg.mesh.max_batch_size = 5;
    cfg.mesh.max_top_k = 8;
    g = unit_create(&cfg);
    ASSERT_INT_EQ(ms_generator_num_users(g), 5);
    ASSERT_INT_EQ(ms_generator_shard_width(g), 1024);
    /* "further capped by max_top_k in truncated mode" */
    ASSERT_INT_EQ(ms_generator_max_logprobs(g), 8);
    unit_destroy(g);

    cfg.mesh.max_top_k = 0;
    cfg.max_logprobs = 5;
    g = unit_create(&cfg);
    ASSERT_INT_EQ(ms_generator_max_logprobs(g), 5);
    unit_destroy(g);

    /* padded == vocab is fine; max_top_k 0 and max_logprobs 0 are fine. */
    cfg.mesh.padded_vocab_size = 1000;
    cfg.max_logprobs = 0;
    g = unit_create(&cfg);
    ASSERT_INT_EQ(ms_generator_max_logprobs(g), 0);
    unit_destroy(g);

    /* Every user starts greedy (formatted from all-None params). */
    cfg = unit_config(100, 0, 4, 0);
    g = unit_create(&cfg);
    ms_slot_params want = unit_greedy_default();
    for (int32_t s = 0; s < 4; s++) {
        ms_slot_params got;
        ASSERT_OK(g, ms_generator_get_params(g, s, &got));
        ASSERT_SLOT_EQ(&got, &want, false, "initial params", s);
        int64_t seed;
        uint64_t counter;
        ASSERT_OK(g, ms_generator_get_seed(g, s, &seed, &counter));
        ASSERT_U64_EQ(counter, 0);
    }
    unit_destroy(g);
}

typedef enum { STRICT_INVALID, INVALID_OR_UNSUPPORTED } expect_kind;

typedef struct cfg_case {
    const char *name;
    int32_t vocab, padded, rows, cols, axis, dp, batch, max_top_k, max_logprobs;
    expect_kind kind;
    const char *field;
} cfg_case;

/* vocab, padded, rows, cols, axis, dp, batch, max_top_k, max_logprobs */
static const cfg_case cfg_cases[] = {
    {"vocab_size 0", 0, 0, 1, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "vocab_size"},
    {"vocab_size negative", -3, 0, 1, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "vocab_size"},
    {"padded < vocab", 1000, 500, 1, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "padded_vocab_size"},
    {"padded negative", 1000, -4, 1, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "padded_vocab_size"},
    {"max_batch_size 0", 1000, 0, 1, 1, 1, 1, 0, 0, 20, STRICT_INVALID, "max_batch_size"},
    {"max_batch_size negative", 1000, 0, 1, 1, 1, 1, -1, 0, 20, STRICT_INVALID,
     "max_batch_size"},
    {"axis 2", 1000, 0, 1, 1, 2, 1, 32, 0, 20, STRICT_INVALID, "all_gather_axis"},
    {"axis -1", 1000, 0, 1, 1, -1, 1, 32, 0, 20, STRICT_INVALID, "all_gather_axis"},
    {"rows 0", 1000, 0, 0, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "rows"},
    {"cols 0", 1000, 0, 1, 0, 1, 1, 32, 0, 20, STRICT_INVALID, "cols"},
    {"rows negative", 1000, 0, -2, 1, 1, 1, 32, 0, 20, STRICT_INVALID, "rows"},
    {"sampling_dp 2 on 1x1", 1000, 0, 1, 1, 1, 2, 32, 0, 20, STRICT_INVALID, "sampling_dp"},
    {"sampling_dp 0", 1000, 0, 1, 1, 1, 0, 32, 0, 20, STRICT_INVALID, "sampling_dp"},
    {"sampling_dp negative", 1000, 0, 1, 1, 1, -1, 32, 0, 20, STRICT_INVALID, "sampling_dp"},
    {"max_top_k negative", 1000, 0, 1, 1, 1, 1, 32, -1, 20, STRICT_INVALID, "max_top_k"},
    {"max_logprobs negative", 1000, 0, 1, 1, 1, 1, 32, 0, -1, STRICT_INVALID, "max_logprobs"},
    /* Invalid on meshes the library may not support yet. */
    {"1x3: padded not divisible by 3 shards", 1000, 1000, 1, 3, 1, 1, 32, 0, 20,
     INVALID_OR_UNSUPPORTED, "padded_vocab_size"},
    {"2x4 axis 1: padded 1002 not divisible by 4", 1000, 1002, 2, 4, 1, 1, 32, 0, 20,
     INVALID_OR_UNSUPPORTED, "padded_vocab_size"},
    {"2x4 axis 1: sampling_dp 3 (neither 1 nor 2)", 1000, 1024, 2, 4, 1, 3, 32, 0, 20,
     INVALID_OR_UNSUPPORTED, "sampling_dp"},
    {"2x4 axis 0: sampling_dp 2 (neither 1 nor 4)", 1000, 1024, 2, 4, 0, 2, 32, 0, 20,
     INVALID_OR_UNSUPPORTED, "sampling_dp"},
    {"2x4 axis 2", 1000, 1024, 2, 4, 2, 1, 32, 0, 20, INVALID_OR_UNSUPPORTED, "all_gather_axis"},
};

static void test_invalid_configs(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t c = 0; c < sizeof cfg_cases / sizeof cfg_cases[0]; c++) {
        const cfg_case *cc = &cfg_cases[c];
        ms_generator_config cfg;
        ms_generator_config_init(&cfg);
        cfg.mesh.vocab_size = cc->vocab;
        cfg.mesh.padded_vocab_size = cc->padded;
        cfg.mesh.rows = cc->rows;
        cfg.mesh.cols = cc->cols;
        cfg.mesh.all_gather_axis = cc->axis;
        cfg.mesh.sampling_dp = cc->dp;
        cfg.mesh.max_batch_size = cc->batch;
        cfg.mesh.max_top_k = cc->max_top_k;
        cfg.max_logprobs = cc->max_logprobs;
        ms_generator *g = NULL;
        ms_status s = ms_generator_create(&cfg, &g);
        const char *msg = ms_create_last_error();
        bool ok_status = s == MS_ERR_INVALID_CONFIG ||
                         (cc->kind == INVALID_OR_UNSUPPORTED && s == MS_ERR_UNSUPPORTED);
        if (!ok_status) {
            print_error("case \"%s\": got %s (message \"%s\")\n", cc->name, ms_status_name(s),
                        ms_test_str(msg));
            failures++;
            unit_destroy(g);
            continue;
        }
        if (g != NULL) {
            print_error("case \"%s\": *out is not NULL after a failed create\n", cc->name);
            failures++;
        }
        if (!msg || !msg[0]) {
            print_error("case \"%s\": empty ms_create_last_error()\n", cc->name);
            failures++;
        } else if (s == MS_ERR_INVALID_CONFIG && !strstr(msg, cc->field)) {
            print_error("case \"%s\": message \"%s\" does not name \"%s\"\n", cc->name, msg,
                        cc->field);
            failures++;
        }
    }
    ASSERT_INT_EQ(failures, 0);
}

static void test_create_null_args(void **state)
{
    (void)state;
    ms_generator *g = NULL;
    ASSERT_INT_NE(ms_generator_create(NULL, &g), MS_OK);
    ASSERT_TRUE(g == NULL);
    ms_generator_config cfg = unit_config(100, 0, 4, 0);
    ASSERT_INT_NE(ms_generator_create(&cfg, NULL), MS_OK);
}

/* Valid multi-device meshes: created, or refused as not supported yet. */
static void test_valid_meshes(void **state)
{
    (void)state;
    const struct {
        int32_t rows, cols, axis, dp, vocab, padded;
        int32_t users, shards, width;
    } cases[] = {
        {1, 2, 1, 1, 1000, 0, 32, 2, 500},
        {1, 2, 0, 1, 1000, 0, 32, 2, 500}, /* 1-D mesh: the axis of size > 1 is used */
        {2, 1, 0, 1, 1000, 1024, 32, 2, 512},
        {2, 4, 1, 2, 1000, 1024, 64, 8, 256},
        {2, 4, 1, 1, 1000, 1024, 32, 8, 256},
        {2, 4, 0, 4, 1000, 1024, 128, 8, 512},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ms_generator_config cfg;
        ms_generator_config_init(&cfg);
        cfg.mesh.vocab_size = cases[c].vocab;
        cfg.mesh.padded_vocab_size = cases[c].padded;
        cfg.mesh.rows = cases[c].rows;
        cfg.mesh.cols = cases[c].cols;
        cfg.mesh.all_gather_axis = cases[c].axis;
        cfg.mesh.sampling_dp = cases[c].dp;
        cfg.num_threads = 1;
        ms_generator *g = NULL;
        ms_status s = ms_generator_create(&cfg, &g);
        ASSERT_STATUS2(MS_OK, MS_ERR_UNSUPPORTED, s, ms_create_last_error());
        if (s != MS_OK)
            continue;
        ASSERT_INT_EQ(ms_generator_num_users(g), cases[c].users);
        ASSERT_INT_EQ(ms_generator_num_shards(g), cases[c].shards);
        ASSERT_INT_EQ(ms_generator_shard_width(g), cases[c].width);
        unit_destroy(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_config_defaults),
        UNIT_TEST(test_valid_1x1),
        UNIT_TEST(test_invalid_configs),
        UNIT_TEST(test_create_null_args),
        UNIT_TEST(test_valid_meshes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
