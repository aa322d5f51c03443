/*
 * ms_params_format / ms_params_chunk / ms_params_broadcast (TT's format_sampling_params,
 * chunk_sampling_params, broadcast_sampling_params) and the status/version helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit_util.h"

/* ---- building parameters in static tables ---- */
#define NONE_F {0}
#define FS(v) {true, (v), NULL, 0}
#define FL(arr) {true, 0.0f, (arr), ARRAY_LEN(arr)}
#define IS(v) {true, (v), NULL, 0}
#define IL(arr) {true, 0, (arr), ARRAY_LEN(arr)}
#define SLOT(t, k, p, mp, pr, fr, rp, sd, lp, nl) {(t), (k), (p), (mp), (pr), (fr), (rp), (sd), (lp), (nl)}
#define GREEDY SLOT(1.0f, 1, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, MS_SEED_NONE, false, 0)

#define MAX_USERS 8

typedef struct fmt_case {
    const char *name;
    ms_sampling_params in;
    int32_t n;
    int32_t max_top_k;
    ms_slot_params expect[MAX_USERS];
} fmt_case;

/* Lists are writable (not const) so that a library writing through them is caught by the
 * byte comparison rather than by a fault. */
static float c5_t[] = {0.5f, 2.0f};
static int64_t c5_k[] = {5};
static float c5_p[] = {0.8f, 0.6f, 0.3f};
static float c5_pres[] = {0.1f};
static float c5_freq[] = {9.0f}; /* used with len 0 */
static float c5_rep[] = {1.1f, 0.9f};
static int64_t c5_seed[] = {0, 7};
static int64_t c5_lp[] = {1};
static int64_t c5_nlp[] = {3, 4};
static float c6_t[] = {0.25f, 1.0f, 4.0f, 1e-3f};
static float c7_p[] = {-0.5f, 1.7f, 0.0f, 1.0f, 0.42f};
static float c8_mp[] = {-0.2f, 1.5f, 0.3f};
static int64_t c9_k[] = {0, -1, 33, 32, 1, 7, 1000, INT64_MIN};
static int64_t c10_k[] = {0, -1, 33, 100000, 1, INT64_MIN};
static float c11_t[] = {0.0f, 1.0f};
static int64_t c11_k[] = {50, 50};
static float c12_rep[] = {0.0f, 0.5f, 2.0f};
static float c13_pres[] = {-0.5f, 2.0f};
static float c13_freq[] = {-1.0f, 0.7f};
static int64_t c14_seed[] = {0, 7, -1, INT64_MAX};
static float c15_t[] = {0.0f, 0.0f};
static int64_t c15_k[] = {10, -1};
static float c15_p[] = {0.9f, 0.0f};
static int64_t c19_nlp[] = {2};
static float c20_t[] = {FLT_MAX, 1e-30f, 3.0f};
static float c21_t[] = {0.5f, 0.0f, 0.7f, 1.0f};
static float c21_p[] = {0.5f, 0.6f, 0.7f, 0.8f};
static int64_t c21_k[] = {2, 3, 4, 5};

static fmt_case fmt_cases[] = {
    {"all None: every user greedy with TT defaults", {.temperature = NONE_F}, 4, 32,
     {GREEDY, GREEDY, GREEDY, GREEDY}},
    {"is_set false ignores value",
     {.temperature = {false, 0.8f, NULL, 0},
      .top_k = {false, 5, NULL, 0},
      .top_p = {false, 0.3f, NULL, 0},
      .min_p = {false, 0.5f, NULL, 0},
      .presence_penalty = {false, 1.0f, NULL, 0},
      .repetition_penalty = {false, 3.0f, NULL, 0},
      .seed = {false, 9, NULL, 0},
      .enable_log_probs = {false, 1, NULL, 0},
      .num_logprobs = {false, 4, NULL, 0}},
     3, 32, {GREEDY, GREEDY, GREEDY}},
    {"scalars broadcast to every user",
     {.temperature = FS(0.7f), .top_k = IS(20), .top_p = FS(0.9f), .min_p = FS(0.05f),
      .presence_penalty = FS(0.5f), .frequency_penalty = FS(0.25f),
      .repetition_penalty = FS(1.2f), .seed = IS(7), .enable_log_probs = IS(1),
      .num_logprobs = IS(5)},
     5, 32,
     {SLOT(0.7f, 20, 0.9f, 0.05f, 0.5f, 0.25f, 1.2f, 7, true, 5),
      SLOT(0.7f, 20, 0.9f, 0.05f, 0.5f, 0.25f, 1.2f, 7, true, 5),
      SLOT(0.7f, 20, 0.9f, 0.05f, 0.5f, 0.25f, 1.2f, 7, true, 5),
      SLOT(0.7f, 20, 0.9f, 0.05f, 0.5f, 0.25f, 1.2f, 7, true, 5),
      SLOT(0.7f, 20, 0.9f, 0.05f, 0.5f, 0.25f, 1.2f, 7, true, 5)}},
    {"scalar T 0: greedy (T 1, k 1, p 0), other fields kept",
     {.temperature = FS(0.0f), .top_k = IS(20), .top_p = FS(0.9f), .min_p = FS(0.1f),
      .presence_penalty = FS(0.5f), .seed = IS(3)},
     3, 32,
     {SLOT(1.0f, 1, 0.0f, 0.1f, 0.5f, 0.0f, 1.0f, 3, false, 0),
      SLOT(1.0f, 1, 0.0f, 0.1f, 0.5f, 0.0f, 1.0f, 3, false, 0),
      SLOT(1.0f, 1, 0.0f, 0.1f, 0.5f, 0.0f, 1.0f, 3, false, 0)}},
    {"lists padded with TT defaults",
     {.temperature = FL(c5_t), .top_k = IL(c5_k), .top_p = FL(c5_p),
      .presence_penalty = FL(c5_pres), .frequency_penalty = {true, 0.0f, c5_freq, 0},
      .repetition_penalty = FL(c5_rep), .seed = IL(c5_seed), .enable_log_probs = IL(c5_lp),
      .num_logprobs = IL(c5_nlp)},
     4, 32,
     {SLOT(0.5f, 5, 0.8f, 0.0f, 0.1f, 0.0f, 1.1f, 0, true, 3),
      SLOT(2.0f, 1, 0.6f, 0.0f, 0.0f, 0.0f, 0.9f, 7, false, 4),
      SLOT(1.0f, 1, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, MS_SEED_NONE, false, 0), GREEDY}},
    {"T > 0 kept as T (never inverted); k 0 -> max_top_k; p default 1",
     {.temperature = FL(c6_t), .top_k = IS(0)},
     4, 32,
     {SLOT(0.25f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(4.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1e-3f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"top_p clamped to [0, 1]",
     {.temperature = FS(1.0f), .top_k = IS(10), .top_p = FL(c7_p)},
     5, 32,
     {SLOT(1.0f, 10, 0.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 0.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 0.42f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"min_p clamped to [0, 1]",
     {.temperature = FS(1.0f), .top_k = IS(10), .min_p = FL(c8_mp)},
     3, 32,
     {SLOT(1.0f, 10, 1.0f, 0.0f, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 1.0f, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0.3f, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"truncated mode (max_top_k 32): k < 1 -> 32, k > 32 -> 32",
     {.temperature = FS(1.0f), .top_k = IL(c9_k)},
     8, 32,
     {SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 1, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 7, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 32, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"exact mode (max_top_k 0): k < 1 -> 0 (unlimited), no upper cap",
     {.temperature = FS(1.0f), .top_k = IL(c10_k)},
     6, 0,
     {SLOT(1.0f, 0, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 0, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 33, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 100000, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 1, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 0, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"max_top_k 4: greedy user keeps k 1, others capped",
     {.temperature = FL(c11_t), .top_k = IL(c11_k)},
     2, 4, {GREEDY, SLOT(1.0f, 4, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"repetition 0 -> 1, other values kept",
     {.temperature = FS(1.0f), .top_k = IS(10), .repetition_penalty = FL(c12_rep)},
     3, 32,
     {SLOT(1.0f, 10, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0, 0, 0, 0.5f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0, 0, 0, 2.0f, MS_SEED_NONE, false, 0)}},
    {"negative presence / frequency accepted",
     {.temperature = FS(1.0f), .top_k = IS(10), .presence_penalty = FL(c13_pres),
      .frequency_penalty = FL(c13_freq)},
     2, 32,
     {SLOT(1.0f, 10, 1.0f, 0, -0.5f, -1.0f, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 10, 1.0f, 0, 2.0f, 0.7f, 1.0f, MS_SEED_NONE, false, 0)}},
    {"seed list [0, 7, -1, max] padded with None",
     {.seed = IL(c14_seed)},
     6, 32,
     {SLOT(1.0f, 1, 0.0f, 0, 0, 0, 1.0f, 0, false, 0),
      SLOT(1.0f, 1, 0.0f, 0, 0, 0, 1.0f, 7, false, 0),
      SLOT(1.0f, 1, 0.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 1, 0.0f, 0, 0, 0, 1.0f, INT64_MAX, false, 0), GREEDY, GREEDY}},
    {"T 0 lists: greedy overrides k and p",
     {.temperature = FL(c15_t), .top_k = IL(c15_k), .top_p = FL(c15_p)},
     2, 32, {GREEDY, GREEDY}},
    {"T > 0 with k 1: only T == 0 is normalised (TT)",
     {.temperature = FS(0.5f), .top_k = IS(1), .top_p = FS(0.9f)},
     2, 32,
     {SLOT(0.5f, 1, 0.9f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(0.5f, 1, 0.9f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"T -0.0 equals 0: greedy, not rejected",
     {.temperature = FS(-0.0f), .top_k = IS(7), .top_p = FS(0.5f)},
     2, 32, {GREEDY, GREEDY}},
    {"one user",
     {.temperature = FS(0.8f), .top_k = IS(3)},
     1, 32, {SLOT(0.8f, 3, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"enable_log_probs scalar broadcast, num_logprobs list padded with 0",
     {.temperature = FS(1.0f), .top_k = IS(5), .enable_log_probs = IS(1),
      .num_logprobs = IL(c19_nlp)},
     3, 32,
     {SLOT(1.0f, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, true, 2),
      SLOT(1.0f, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, true, 0),
      SLOT(1.0f, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, true, 0)}},
    {"finite extreme temperatures kept",
     {.temperature = FL(c20_t), .top_k = IS(5)},
     3, 32,
     {SLOT(FLT_MAX, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1e-30f, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(3.0f, 5, 1.0f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
    {"lists of exactly n",
     {.temperature = FL(c21_t), .top_k = IL(c21_k), .top_p = FL(c21_p)},
     4, 32,
     {SLOT(0.5f, 2, 0.5f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0), GREEDY,
      SLOT(0.7f, 4, 0.7f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0),
      SLOT(1.0f, 5, 0.8f, 0, 0, 0, 1.0f, MS_SEED_NONE, false, 0)}},
};

/* ---- deep snapshot of an input, to prove it is never modified ---- */
typedef struct params_snap {
    ms_sampling_params bytes;
    void *lists[10];
    size_t sizes[10];
} params_snap;

static void snap_field(params_snap *s, int i, const void *list, int32_t len, size_t elem)
{
    s->sizes[i] = 0;
    s->lists[i] = NULL;
    if (list && len > 0) {
        s->sizes[i] = (size_t)len * elem;
        s->lists[i] = malloc(s->sizes[i]);
        memcpy(s->lists[i], list, s->sizes[i]);
    }
}

static void snap_take(params_snap *s, const ms_sampling_params *p)
{
    memcpy(&s->bytes, p, sizeof *p);
    snap_field(s, 0, p->temperature.list, p->temperature.len, sizeof(float));
    snap_field(s, 1, p->top_k.list, p->top_k.len, sizeof(int64_t));
    snap_field(s, 2, p->top_p.list, p->top_p.len, sizeof(float));
    snap_field(s, 3, p->min_p.list, p->min_p.len, sizeof(float));
    snap_field(s, 4, p->presence_penalty.list, p->presence_penalty.len, sizeof(float));
    snap_field(s, 5, p->frequency_penalty.list, p->frequency_penalty.len, sizeof(float));
    snap_field(s, 6, p->repetition_penalty.list, p->repetition_penalty.len, sizeof(float));
    snap_field(s, 7, p->seed.list, p->seed.len, sizeof(int64_t));
    snap_field(s, 8, p->enable_log_probs.list, p->enable_log_probs.len, sizeof(int64_t));
    snap_field(s, 9, p->num_logprobs.list, p->num_logprobs.len, sizeof(int64_t));
}

static void snap_check_free(params_snap *s, const ms_sampling_params *p, const char *ctx)
{
    const void *lists[10] = {p->temperature.list, p->top_k.list, p->top_p.list, p->min_p.list,
                             p->presence_penalty.list, p->frequency_penalty.list,
                             p->repetition_penalty.list, p->seed.list, p->enable_log_probs.list,
                             p->num_logprobs.list};
    bool ok = memcmp(&s->bytes, p, sizeof *p) == 0;
    if (!ok)
        print_error("%s: the input struct was modified\n", ctx);
    for (int i = 0; i < 10; i++) {
        if (s->lists[i] && memcmp(s->lists[i], lists[i], s->sizes[i]) != 0) {
            print_error("%s: input list of field #%d was modified\n", ctx, i);
            ok = false;
        }
        free(s->lists[i]);
    }
    if (!ok)
        fail();
}

static void test_format_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t c = 0; c < sizeof fmt_cases / sizeof fmt_cases[0]; c++) {
        const fmt_case *fc = &fmt_cases[c];
        ms_slot_params out[MAX_USERS + 1];
        ms_errbuf err;
        memset(&err, 0, sizeof err);
        memset(out, 0xA5, sizeof out);
        params_snap snap;
        snap_take(&snap, &fc->in);
        ms_status s = ms_params_format(&fc->in, fc->n, fc->max_top_k, out, &err);
        snap_check_free(&snap, &fc->in, fc->name);
        if (s != MS_OK) {
            print_error("case \"%s\": %s (%s)\n", fc->name, ms_status_name(s), err.msg);
            failures++;
            continue;
        }
        for (int32_t u = 0; u < fc->n; u++)
            if (!unit_slot_diff(&out[u], &fc->expect[u], true, fc->name, u))
                failures++;
        /* Nothing written past n users. */
        const unsigned char *tail = (const unsigned char *)&out[fc->n];
        for (size_t b = 0; b < sizeof out[0]; b++)
            if (tail[b] != 0xA5) {
                print_error("case \"%s\": wrote past user n-1\n", fc->name);
                failures++;
                break;
            }
    }
    ASSERT_INT_EQ(failures, 0);
}

/* err may be NULL. */
static void test_format_err_null(void **state)
{
    (void)state;
    ms_sampling_params in;
    ms_sampling_params_init(&in);
    in.temperature = ms_fscalar(0.5f);
    ms_slot_params out[2];
    ASSERT_STATUS_MSG(MS_OK, ms_params_format(&in, 2, 32, out, NULL), NULL);
    ASSERT_FLT_EQ(out[1].temperature, 0.5f);
    in.temperature = ms_fscalar(NAN);
    ASSERT_STATUS_MSG(MS_ERR_INVALID_ARGUMENT, ms_params_format(&in, 2, 32, out, NULL), NULL);
}

static void test_sampling_params_init(void **state)
{
    (void)state;
    ms_sampling_params p;
    memset(&p, 0xFF, sizeof p);
    ms_sampling_params_init(&p);
    ASSERT_TRUE(!p.temperature.is_set);
    ASSERT_TRUE(!p.top_k.is_set);
    ASSERT_TRUE(!p.top_p.is_set);
    ASSERT_TRUE(!p.min_p.is_set);
    ASSERT_TRUE(!p.presence_penalty.is_set);
    ASSERT_TRUE(!p.frequency_penalty.is_set);
    ASSERT_TRUE(!p.repetition_penalty.is_set);
    ASSERT_TRUE(!p.seed.is_set);
    ASSERT_TRUE(!p.enable_log_probs.is_set);
    ASSERT_TRUE(!p.num_logprobs.is_set);
    /* And formats to all-greedy defaults. */
    ms_slot_params out[3];
    ASSERT_STATUS_MSG(MS_OK, ms_params_format(&p, 3, 32, out, NULL), NULL);
    ms_slot_params g = unit_greedy_default();
    for (int u = 0; u < 3; u++)
        ASSERT_SLOT_EQ(&out[u], &g, true, "init", u);
}

/* ---- rejections ---- */
typedef struct rej_case {
    const char *name;
    ms_sampling_params in;
    int32_t n;
    const char *field;
    int32_t user; /* -1: do not check the index */
} rej_case;

static float r_t_nan[] = {1, 1, 1, 1, 1, NAN, 1};
static float r_t_neg[] = {1, 1, 1, 1, 1, -0.5f};
static float r_t_inf[] = {1, 1, 1, 1, 1, INFINITY};
static float r_t_ninf[] = {1, 1, 1, 1, 1, -INFINITY};
static float r_p_nan[] = {1, 1, 1, 1, 1, NAN};
static float r_mp_nan[] = {0, 0, 0, 0, 0, NAN};
static float r_rep_neg[] = {1, 1, 1, 1, 1, -1.0f};
static float r_rep_inf[] = {1, 1, 1, 1, 1, INFINITY};
static float r_rep_nan[] = {1, 1, 1, 1, 1, NAN};
static float r_pres_inf[] = {0, 0, 0, 0, 0, INFINITY};
static float r_pres_ninf[] = {0, 0, 0, 0, 0, -INFINITY};
static float r_pres_nan[] = {0, 0, 0, 0, 0, NAN};
static float r_freq_inf[] = {0, 0, 0, 0, 0, INFINITY};
static float r_freq_nan[] = {0, 0, 0, 0, 0, NAN};
static int64_t r_seed_neg[] = {1, 2, 3, 4, 5, -2};
static int64_t r_seed_min[] = {1, 2, 3, 4, 5, 6, INT64_MIN};
static int64_t r_nlp_neg[] = {0, 0, 0, 0, 0, -1};
static float r_t_long[] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
static int64_t r_seed_long[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static int64_t r_k_long[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static float r_ok_t[] = {1, 1, 1, 1, 1, 1, 1, 1};

static rej_case rej_cases[] = {
    {"NaN temperature", {.temperature = FL(r_t_nan)}, 8, "temperature", 5},
    {"negative temperature", {.temperature = FL(r_t_neg)}, 8, "temperature", 5},
    {"+inf temperature", {.temperature = FL(r_t_inf)}, 8, "temperature", 5},
    {"-inf temperature", {.temperature = FL(r_t_ninf)}, 8, "temperature", 5},
    {"scalar negative temperature", {.temperature = FS(-1.0f)}, 4, "temperature", -1},
    {"NaN top_p", {.temperature = FL(r_ok_t), .top_p = FL(r_p_nan)}, 8, "top_p", 5},
    {"NaN scalar top_p", {.temperature = FL(r_ok_t), .top_p = FS(NAN)}, 8, "top_p", -1},
    {"NaN min_p", {.temperature = FS(1.0f), .min_p = FL(r_mp_nan)}, 8, "min_p", 5},
    {"negative repetition", {.repetition_penalty = FL(r_rep_neg)}, 8, "repetition", 5},
    {"+inf repetition", {.repetition_penalty = FL(r_rep_inf)}, 8, "repetition", 5},
    {"NaN repetition", {.repetition_penalty = FL(r_rep_nan)}, 8, "repetition", 5},
    {"+inf presence", {.presence_penalty = FL(r_pres_inf)}, 8, "presence", 5},
    {"-inf presence", {.presence_penalty = FL(r_pres_ninf)}, 8, "presence", 5},
    {"NaN presence", {.presence_penalty = FL(r_pres_nan)}, 8, "presence", 5},
    {"+inf frequency", {.frequency_penalty = FL(r_freq_inf)}, 8, "frequency", 5},
    {"NaN frequency", {.frequency_penalty = FL(r_freq_nan)}, 8, "frequency", 5},
    {"seed < -1", {.seed = IL(r_seed_neg)}, 8, "seed", 5},
    {"seed INT64_MIN", {.seed = IL(r_seed_min)}, 8, "seed", 6},
    {"negative num_logprobs", {.num_logprobs = IL(r_nlp_neg)}, 8, "num_logprobs", 5},
    {"temperature list longer than n", {.temperature = FL(r_t_long)}, 8, "temperature", -1},
    {"seed list longer than n", {.seed = IL(r_seed_long)}, 8, "seed", -1},
    {"top_k list longer than n", {.top_k = IL(r_k_long)}, 8, "top_k", -1},
};

static void test_format_rejections(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t c = 0; c < sizeof rej_cases / sizeof rej_cases[0]; c++) {
        const rej_case *rc = &rej_cases[c];
        ms_slot_params out[MAX_USERS], sentinel[MAX_USERS];
        memset(out, 0xA5, sizeof out);
        memset(sentinel, 0xA5, sizeof sentinel);
        ms_errbuf err;
        memset(&err, 0, sizeof err);
        params_snap snap;
        snap_take(&snap, &rc->in);
        ms_status s = ms_params_format(&rc->in, rc->n, 32, out, &err);
        snap_check_free(&snap, &rc->in, rc->name);
        if (s != MS_ERR_INVALID_ARGUMENT) {
            print_error("case \"%s\": got %s, want MS_ERR_INVALID_ARGUMENT (msg \"%s\")\n",
                        rc->name, ms_status_name(s), err.msg);
            failures++;
            continue;
        }
        if (memcmp(out, sentinel, sizeof out) != 0) {
            print_error("case \"%s\": out was written on rejection\n", rc->name);
            failures++;
        }
        if (!strstr(err.msg, rc->field)) {
            print_error("case \"%s\": message \"%s\" does not name field \"%s\"\n", rc->name,
                        err.msg, rc->field);
            failures++;
        }
        if (rc->user >= 0 && !ms_test_has_number(err.msg, rc->user)) {
            print_error("case \"%s\": message \"%s\" does not name user %d\n", rc->name, err.msg,
                        rc->user);
            failures++;
        }
    }
    ASSERT_INT_EQ(failures, 0);
}

static void test_format_null_args(void **state)
{
    (void)state;
    ms_sampling_params in;
    ms_sampling_params_init(&in);
    ms_slot_params out[2];
    ms_errbuf err;
    ASSERT_INT_NE(ms_params_format(NULL, 2, 32, out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_format(&in, 2, 32, NULL, &err), MS_OK);
    ASSERT_INT_NE(ms_params_format(&in, -1, 32, out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_format(&in, 2, -1, out, &err), MS_OK);
}

/* ---- chunk ---- */
static float ch_t[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
static int64_t ch_k[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static float ch_pres[8] = {0, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};
static int64_t ch_seed[8] = {10, 11, 12, 13, 14, 15, 16, 17};
static int64_t ch_nlp[8] = {0, 1, 2, 3, 4, 5, 6, 7};

static ms_sampling_params chunk_input(void)
{
    ms_sampling_params in;
    ms_sampling_params_init(&in);
    in.temperature = ms_flist(ch_t, 8);
    in.top_k = ms_ilist(ch_k, 8);
    in.top_p = ms_fscalar(0.9f);
    /* min_p stays None */
    in.presence_penalty = ms_flist(ch_pres, 8);
    in.frequency_penalty = ms_fscalar(0.25f);
    /* repetition_penalty stays None */
    in.seed = ms_ilist(ch_seed, 8);
    in.enable_log_probs = ms_iscalar(1);
    in.num_logprobs = ms_ilist(ch_nlp, 8);
    return in;
}

#define ASSERT_LIST_CHUNK(outf, inf, dp, idx)                                                   \
    do {                                                                                        \
        ASSERT_TRUE((outf).is_set);                                                             \
        ASSERT_TRUE((outf).list == (inf).list + (idx) * ((inf).len / (dp)));                    \
        ASSERT_INT_EQ((outf).len, (inf).len / (dp));                                            \
    } while (0)

#define ASSERT_SCALAR_SHARED(outf, inf)                                                         \
    do {                                                                                        \
        ASSERT_TRUE((outf).is_set);                                                             \
        ASSERT_TRUE((outf).list == NULL);                                                       \
        ASSERT_FLT_EQ((double)(outf).value, (double)(inf).value);                               \
    } while (0)

static void test_chunk(void **state)
{
    (void)state;
    ms_sampling_params in = chunk_input();
    ms_sampling_params before;
    memcpy(&before, &in, sizeof in);
    const int dps[] = {1, 2, 4};
    for (size_t d = 0; d < 3; d++) {
        int dp = dps[d];
        for (int idx = 0; idx < dp; idx++) {
            ms_sampling_params out;
            memset(&out, 0x5A, sizeof out);
            ms_errbuf err;
            memset(&err, 0, sizeof err);
            ASSERT_STATUS_MSG(MS_OK, ms_params_chunk(&in, dp, idx, &out, &err), err.msg);
            ASSERT_LIST_CHUNK(out.temperature, in.temperature, dp, idx);
            ASSERT_LIST_CHUNK(out.top_k, in.top_k, dp, idx);
            ASSERT_LIST_CHUNK(out.presence_penalty, in.presence_penalty, dp, idx);
            ASSERT_LIST_CHUNK(out.seed, in.seed, dp, idx);
            ASSERT_LIST_CHUNK(out.num_logprobs, in.num_logprobs, dp, idx);
            ASSERT_SCALAR_SHARED(out.top_p, in.top_p);
            ASSERT_SCALAR_SHARED(out.frequency_penalty, in.frequency_penalty);
            ASSERT_SCALAR_SHARED(out.enable_log_probs, in.enable_log_probs);
            ASSERT_TRUE(!out.min_p.is_set);
            ASSERT_TRUE(!out.repetition_penalty.is_set);
            /* A chunk formats like the corresponding users of the whole. */
            ms_slot_params whole[8], part[8];
            ASSERT_STATUS_MSG(MS_OK, ms_params_format(&in, 8, 32, whole, &err), err.msg);
            ASSERT_STATUS_MSG(MS_OK, ms_params_format(&out, 8 / dp, 32, part, &err), err.msg);
            for (int u = 0; u < 8 / dp; u++)
                ASSERT_SLOT_EQ(&part[u], &whole[idx * (8 / dp) + u], true, "chunk", u);
        }
    }
    ASSERT_TRUE(memcmp(&before, &in, sizeof in) == 0);
}

static void test_chunk_indivisible(void **state)
{
    (void)state;
    struct {
        int field; /* 0 temperature, 1 seed, 2 top_k */
        int32_t len;
        int dp;
        const char *name;
    } cases[] = {{0, 6, 4, "temperature"}, {1, 6, 4, "seed"}, {2, 7, 2, "top_k"},
                 {0, 3, 2, "temperature"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ms_sampling_params in = chunk_input();
        if (cases[c].field == 0)
            in.temperature.len = cases[c].len;
        else if (cases[c].field == 1)
            in.seed.len = cases[c].len;
        else
            in.top_k.len = cases[c].len;
        ms_sampling_params out;
        ms_errbuf err;
        memset(&err, 0, sizeof err);
        ASSERT_STATUS_MSG(MS_ERR_INVALID_ARGUMENT, ms_params_chunk(&in, cases[c].dp, 0, &out, &err),
                          err.msg);
        ASSERT_STR_CONTAINS(err.msg, cases[c].name);
    }
}

static void test_chunk_bad_index(void **state)
{
    (void)state;
    ms_sampling_params in = chunk_input();
    ms_sampling_params out;
    ms_errbuf err;
    ASSERT_INT_NE(ms_params_chunk(&in, 2, 2, &out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_chunk(&in, 2, -1, &out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_chunk(&in, 0, 0, &out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_chunk(NULL, 1, 0, &out, &err), MS_OK);
    ASSERT_INT_NE(ms_params_chunk(&in, 1, 0, NULL, &err), MS_OK);
}

/* ---- broadcast ---- */
static void test_broadcast(void **state)
{
    (void)state;
    ms_slot_params in[3] = {
        unit_slot(0.5f, 5, 0.9f, 0.1f, 0.2f, 0.3f, 1.1f, 42, true, 3),
        unit_slot(1.5f, 7, 0.8f, 0.0f, -0.2f, 0.0f, 1.3f, MS_SEED_NONE, false, 0),
        unit_slot(1.0f, 1, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 7, true, 20),
    };
    ms_slot_params in_copy[3];
    memcpy(in_copy, in, sizeof in);
    const struct {
        int32_t idx;
        int32_t want;
    } cases[] = {{0, 0}, {1, 1}, {2, 2}, {3, 0}, {100, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ms_slot_params out[6];
        memset(out, 0xA5, sizeof out);
        ms_errbuf err;
        memset(&err, 0, sizeof err);
        ASSERT_STATUS_MSG(MS_OK, ms_params_broadcast(in, 3, cases[c].idx, 4, out, &err), err.msg);
        for (int i = 0; i < 4; i++)
            ASSERT_SLOT_EQ(&out[i], &in[cases[c].want], true, "broadcast", i);
        /* Nothing written past slot_len. */
        const unsigned char *tail = (const unsigned char *)&out[4];
        for (size_t b = 0; b < 2 * sizeof out[0]; b++)
            ASSERT_INT_EQ(tail[b], 0xA5);
    }
    ASSERT_TRUE(memcmp(in_copy, in, sizeof in) == 0);
}

/* ---- status names and messages ---- */
static void test_status_names(void **state)
{
    (void)state;
    static const struct {
        ms_status s;
        const char *name;
        const char *msg;
    } table[] = {
#define XX(name, value, msg) {(ms_status)(value), "MS_" #name, msg},
        MS_STATUS_MAP(XX)
#undef XX
    };
    ASSERT_INT_EQ(sizeof table / sizeof table[0], 8);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        ASSERT_STR_EQ(ms_status_name(table[i].s), table[i].name);
        ASSERT_STR_EQ(ms_status_message(table[i].s), table[i].msg);
    }
    const int bad[] = {8, 99, -1, 1000000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_STR_EQ(ms_status_name((ms_status)bad[i]), "MS_UNKNOWN");
        const char *m = ms_status_message((ms_status)bad[i]);
        ASSERT_MSG_NONEMPTY(m);
    }
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MS_VERSION_MAJOR, MS_VERSION_MINOR, MS_VERSION_PATCH);
    ASSERT_STR_EQ(ms_version_string(), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        UNIT_TEST(test_format_table),
        UNIT_TEST(test_format_err_null),
        UNIT_TEST(test_sampling_params_init),
        UNIT_TEST(test_format_rejections),
        UNIT_TEST(test_format_null_args),
        UNIT_TEST(test_chunk),
        UNIT_TEST(test_chunk_indivisible),
        UNIT_TEST(test_chunk_bad_index),
        UNIT_TEST(test_broadcast),
        UNIT_TEST(test_status_names),
        UNIT_TEST(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
