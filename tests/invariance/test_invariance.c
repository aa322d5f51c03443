/*
 * Mesh invariance (DESIGN 1, 2.4, 7): the same seeds and logits give identical tokens, and
 * log-probs within 1e-5, on every host mesh, thread count, dtype and trace setting.
 *
 * One scenario (inv_scenario.c): U = 32 users, vocab 3500 padded to 4096 (hostile values in
 * the padding and in a row-stride gap), 6 committed decode steps with prompt and output
 * histories (penalties active), 16 mixed parameter kinds (greedy, top-k, top-p, min-p, exact
 * k = 0 with p < 1 and p = 1, ...), log-probs with top-N lists, +inf / bad / single-token / tied
 * rows. The full [U, Vp] matrix of each step drives every mesh through
 * ms_generator_device_view. The reference is the 1x1 mesh, one thread, f32, eager; every other
 * (mesh, threads, dtype, trace) run must match it field for field. Meshes: 1x1, 1x2, 1x8, 8x1,
 * 2x4 (axis 0 and 1; dp 1 and the other axis), 4x8 (axis 1 dp 4 and dp 1, axis 0 dp 8). With
 * sampling_dp = d the same U rows are d groups of B = U / d users.
 *
 * Configurations (one test each): exact mode and truncated mode (max_top_k 32) times the three
 * log-prob modes, with the TT penalty order in two of them; and every user greedy without
 * log-probs (penalties kept), where the meshes may take the force-argmax fast path and the 1x1
 * reference is made with allow_force_argmax false.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "inv_scenario.h"
#include "test.h"

#define U 32
#define V 3500
#define VP 4096
#define STEPS 6
#define TOL 1e-5

typedef struct mesh_case {
    int32_t rows, cols, axis, dp;
} mesh_case;

static const mesh_case meshes[] = {
    {1, 1, 0, 1}, {1, 2, 1, 1}, {1, 8, 1, 1}, {8, 1, 0, 1}, {2, 4, 0, 1}, {2, 4, 1, 1},
    {2, 4, 0, 4}, {2, 4, 1, 2}, {4, 8, 1, 4}, {4, 8, 1, 1}, {4, 8, 0, 8},
};
#define NMESH ((int)(sizeof meshes / sizeof meshes[0]))

typedef struct inv_case {
    const char *name;
    int32_t max_top_k;
    ms_logprobs_mode mode;
    ms_penalty_order order;
    bool all_greedy; /* every user greedy without log-probs: the force-argmax fast path */
} inv_case;

static inv_scenario scen, scen_greedy;

static int setup(void **state)
{
    (void)state;
    inv_scenario_build_pair(&scen, &scen_greedy, U, V, VP, STEPS, 0x1a2b3c4d5eULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    inv_scenario_free_pair(&scen, &scen_greedy);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ms_generator *create(const ms_generator_config *cfg, const char *what)
{
    ms_generator *g = NULL;
    ms_status st = ms_generator_create(cfg, &g);
    if (st != MS_OK) {
        print_error("%s: create: %s: %s\n", what, ms_status_name(st), ms_create_last_error());
        fail();
    }
    return g;
}

static void run_case(const inv_case *c)
{
    const double t0 = now_s();
    const inv_scenario *sc = c->all_greedy ? &scen_greedy : &scen;
    inv_record ref;
    char err[512], what[256];
    ms_generator_config cfg = inv_config(sc, 1, 1, 0, 1, 1, c->max_top_k, c->mode, c->order);
    /* The all-greedy reference takes the general path; every other run may take the fast one. */
    cfg.mesh.allow_force_argmax = !c->all_greedy;
    ms_generator *g = create(&cfg, c->name);
    inv_record_init(&ref, STEPS, U, ms_generator_max_logprobs(g));
    ms_status st = inv_run(g, sc, MS_DTYPE_F32, false, -1, &ref, err, sizeof err);
    ms_generator_destroy(g);
    if (st != MS_OK) {
        print_error("%s: reference run: %s\n", c->name, err);
        fail();
    }
    snprintf(what, sizeof what, "%s 1x1 reference", c->name);
    long bad = inv_record_selfcheck(sc, &ref, what);

    /* The reference is not degenerate: many distinct tokens. */
    int distinct = 0;
    for (int32_t i = 0; i < STEPS * U; i++) {
        bool seen = false;
        for (int32_t j = 0; j < i && !seen; j++)
            seen = ref.tokens[j] == ref.tokens[i];
        distinct += !seen;
    }
    if (distinct < (c->all_greedy ? U / 2 : U)) {
        printf("%s: only %d distinct tokens in %d draws\n", c->name, distinct, STEPS * U);
        bad++;
    }

    int runs = 0;
    long run_bad = 0;
    for (int mi = 0; mi < NMESH; mi++) {
        const mesh_case *m = &meshes[mi];
        for (int32_t threads = 1; threads <= 2; threads++) {
            for (int d = 0; d < 2; d++) {
                const ms_dtype dt = d == 0 ? MS_DTYPE_F32 : MS_DTYPE_BF16;
                for (int trace = 0; trace < 2; trace++) {
                    if (mi == 0 && threads == 1 && d == 0 && trace == 0)
                        continue; /* the reference itself */
                    snprintf(what, sizeof what, "%s mesh %dx%d axis %d dp %d threads %d %s %s",
                             c->name, m->rows, m->cols, m->axis, m->dp, threads,
                             d ? "bf16" : "f32", trace ? "traced" : "eager");
                    cfg = inv_config(sc, m->rows, m->cols, m->axis, m->dp, threads,
                                     c->max_top_k, c->mode, c->order);
                    g = create(&cfg, what);
                    inv_record got;
                    inv_record_init(&got, STEPS, U, ms_generator_max_logprobs(g));
                    st = inv_run(g, sc, dt, trace != 0, -1, &got, err, sizeof err);
                    ms_generator_destroy(g);
                    runs++;
                    long b;
                    if (st != MS_OK) {
                        printf("MISMATCH %s: run failed: %s\n", what, err);
                        b = 1;
                    } else {
                        b = inv_record_compare(&ref, &got, TOL, what, 8);
                    }
                    if (b)
                        printf("%s: %ld mismatching fields\n", what, b);
                    run_bad += b;
                    inv_record_free(&got);
                }
            }
        }
    }
    inv_record_free(&ref);
    printf("%s: %d runs x %d steps x %d users compared with 1x1: %ld mismatching fields, "
           "%ld self-check failures, %d distinct tokens, %.2f s\n",
           c->name, runs, STEPS, U, run_bad, bad, distinct, now_s() - t0);
    ASSERT_INT_EQ(bad, 0);
    ASSERT_INT_EQ(run_bad, 0);
}

#define CASE(fn, nm, k, md, ord, greedy)                                                         \
    static void fn(void **state)                                                                 \
    {                                                                                            \
        (void)state;                                                                             \
        const inv_case c = {nm, k, md, ord, greedy};                                             \
        run_case(&c);                                                                            \
    }

CASE(test_exact_raw, "exact raw", 0, MS_LOGPROBS_RAW, MS_PENALTY_ORDER_OPENAI, false)
CASE(test_exact_penalized_tt, "exact penalized tt-order", 0, MS_LOGPROBS_PENALIZED,
     MS_PENALTY_ORDER_TT, false)
CASE(test_exact_processed, "exact processed", 0, MS_LOGPROBS_PROCESSED, MS_PENALTY_ORDER_OPENAI,
     false)
CASE(test_trunc_raw, "truncated32 raw", 32, MS_LOGPROBS_RAW, MS_PENALTY_ORDER_OPENAI, false)
CASE(test_trunc_penalized, "truncated32 penalized", 32, MS_LOGPROBS_PENALIZED,
     MS_PENALTY_ORDER_OPENAI, false)
CASE(test_trunc_processed_tt, "truncated32 processed tt-order", 32, MS_LOGPROBS_PROCESSED,
     MS_PENALTY_ORDER_TT, false)
CASE(test_force_argmax, "all greedy (force-argmax vs general 1x1)", 0, MS_LOGPROBS_RAW,
     MS_PENALTY_ORDER_OPENAI, true)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_raw),       cmocka_unit_test(test_exact_penalized_tt),
        cmocka_unit_test(test_exact_processed), cmocka_unit_test(test_trunc_raw),
        cmocka_unit_test(test_trunc_penalized), cmocka_unit_test(test_trunc_processed_tt),
        cmocka_unit_test(test_force_argmax),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
