/*
 * The faulty transport (DESIGN 4, STYLE "a test-only faulty one"): every exchange of a step can
 * be made to fail (ms__generator_inject_fault, counted by every transport, host included). Each
 * injected failure must make ms_generator_sample (and sample_peek) return MS_ERR_TRANSPORT with
 * a message and change no state: draw counters and penalty counts stay as they were, and the
 * next good call gives exactly the outputs of a run in which the failed calls never happened.
 *
 * For each step of the invariance scenario (inv_scenario.c), fault n = 0, 1, ... is injected
 * until the step goes through (n is then the number of exchanges of that step), on host meshes
 * 1x1, 2x4 (axis 1), 4x8 (axis 1, dp 4), in exact mode (fallback rounds), truncated mode and
 * with every user greedy (the force-argmax path).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ms_generator_impl.h"
#include "inv_scenario.h"
#include "test.h"

#define NUSERS 32
#define VOCAB 3500
#define PADDED 4096
#define NSTEPS 6

static inv_scenario scen, scen_greedy;

static int setup(void **state)
{
    (void)state;
    inv_scenario_build_pair(&scen, &scen_greedy, NUSERS, VOCAB, PADDED, NSTEPS, 0x1a2b3c4d5eULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    inv_scenario_free_pair(&scen, &scen_greedy);
    return 0;
}

/* Expected output count of token t for user u before step s of the clean run. */
static int32_t expected_count(const inv_scenario *sc, const inv_record *clean, int32_t u,
                              int32_t t, int32_t s)
{
    int32_t n = 0;
    for (int32_t j = 0; j < sc->ocols; j++)
        n += sc->outs[(size_t)u * sc->ocols + j] == t;
    for (int32_t k = 0; k < s; k++)
        n += clean->tokens[(size_t)k * NUSERS + u] == t;
    return n;
}

static void check_state(ms_generator *g, const inv_scenario *sc, const inv_record *clean,
                        int32_t s, const char *what, int n)
{
    for (int32_t u = 0; u < NUSERS; u++) {
        int64_t seed;
        uint64_t ctr;
        ASSERT_OK(g, ms_generator_get_seed(g, u, &seed, &ctr));
        if (ctr != (uint64_t)s || seed != sc->seeds[u]) {
            print_error("%s: step %d fault %d: slot %d seed %lld counter %llu, want %lld, %d\n",
                        what, (int)s, n, (int)u, (long long)seed, (unsigned long long)ctr,
                        (long long)sc->seeds[u], (int)s);
            fail();
        }
        for (int32_t k = s - 1; k <= s; k++) {
            if (k < 0)
                continue;
            const int32_t t = clean->tokens[(size_t)k * NUSERS + u];
            if (t < 0)
                continue;
            int32_t cnt;
            bool in_prompt;
            ASSERT_OK(g, ms_generator_get_token_state(g, u, t, &cnt, &in_prompt));
            const int32_t want = expected_count(sc, clean, u, t, s);
            if (cnt != want) {
                print_error("%s: step %d fault %d: user %d token %d count %d, want %d\n", what,
                            (int)s, n, (int)u, (int)t, (int)cnt, (int)want);
                fail();
            }
        }
    }
}

static void one_step_record(const inv_record *clean, int32_t s, inv_record *one)
{
    const size_t at = (size_t)s * NUSERS, cap = (size_t)clean->cap;
    memcpy(one->tokens, clean->tokens + at, NUSERS * sizeof(int32_t));
    memcpy(one->row_error, clean->row_error + at, NUSERS);
    memcpy(one->logprob, clean->logprob + at, NUSERS * sizeof(float));
    memcpy(one->rank, clean->rank + at, NUSERS * sizeof(int32_t));
    memcpy(one->top_count, clean->top_count + at, NUSERS * sizeof(int32_t));
    memcpy(one->top_ids, clean->top_ids + at * cap, NUSERS * cap * sizeof(int32_t));
    memcpy(one->top_lp, clean->top_lp + at * cap, NUSERS * cap * sizeof(float));
}

static void run_faults(const inv_scenario *sc, int32_t rows, int32_t cols, int32_t axis,
                       int32_t dp, int32_t max_top_k, bool greedy_ref)
{
    char what[200], err[512];
    snprintf(what, sizeof what, "mesh %dx%d axis %d dp %d max_top_k %d%s", rows, cols, axis, dp,
             max_top_k, greedy_ref ? " all greedy" : "");
    ms_generator_config cfg = inv_config(sc, rows, cols, axis, dp, 2, max_top_k, MS_LOGPROBS_RAW,
                                         MS_PENALTY_ORDER_OPENAI);
    ms_generator *g = NULL;
    ASSERT_STATUS_MSG(MS_OK, ms_generator_create(&cfg, &g), ms_create_last_error());
    inv_record clean;
    inv_record_init(&clean, NSTEPS, NUSERS, ms_generator_max_logprobs(g));
    ms_status st = inv_run(g, sc, MS_DTYPE_F32, false, -1, &clean, err, sizeof err);
    ms_generator_destroy(g);
    if (st != MS_OK) {
        print_error("%s: clean run: %s\n", what, err);
        fail();
    }

    g = NULL;
    ASSERT_STATUS_MSG(MS_OK, ms_generator_create(&cfg, &g), ms_create_last_error());
    ASSERT_OK(g, inv_scenario_install(sc, g));
    ms_logits views[32];
    const size_t per_step = (size_t)NUSERS * (size_t)sc->stride;
    /* One logits buffer for the run (traced calls are bound to their buffers). */
    float *buf = malloc(sizeof(float) * per_step);
    ASSERT_TRUE(buf != NULL);
    const ms_logits full = {buf, MS_DTYPE_F32, sc->stride};
    const int32_t nv = ms_generator_num_shards(g);
    for (int32_t d = 0; d < nv; d++)
        ASSERT_OK(g, ms_generator_device_view(g, &full, d, &views[d]));
    inv_record got, one;
    inv_record_init(&got, 1, NUSERS, clean.cap);
    inv_record_init(&one, 1, NUSERS, clean.cap);
    ms_step_output out = {got.tokens, got.row_error, got.logprob, got.rank,
                          got.top_count, got.top_ids, got.top_lp};
    int injected = 0, ex_min = 1 << 30, ex_max = 0;
    for (int32_t s = 0; s < NSTEPS; s++) {
        memcpy(buf, sc->f32 + (size_t)s * per_step, sizeof(float) * per_step);
        int n = 0;
        for (;; n++) {
            /* peek first: a failed peek changes nothing either */
            ms__generator_inject_fault(g, n, MS_ERR_TRANSPORT);
            ms_status sp = ms_generator_sample_peek(g, views, nv, 0, &out);
            ms__generator_inject_fault(g, n, MS_ERR_TRANSPORT);
            st = ms_generator_sample(g, views, nv, n % 2 == 1, &out);
            if (sp != st) {
                print_error("%s: step %d fault %d: sample_peek %s but sample %s\n", what, (int)s, n,
                            ms_status_name(sp), ms_status_name(st));
                fail();
            }
            if (st == MS_OK)
                break;
            injected++;
            ASSERT_STATUS(MS_ERR_TRANSPORT, g, st);
            if (ms_generator_last_error(g)[0] == '\0') {
                print_error("%s: step %d fault %d: MS_ERR_TRANSPORT without a message\n", what,
                            (int)s, n);
                fail();
            }
            check_state(g, sc, &clean, s, what, n);
            ASSERT_INT_OP(n, <, 64);
        }
        ms__generator_inject_fault(g, -1, MS_OK);
        ex_min = n < ex_min ? n : ex_min;
        ex_max = n > ex_max ? n : ex_max;
        one_step_record(&clean, s, &one);
        char w[260];
        snprintf(w, sizeof w, "%s step %d after %d failed calls", what, (int)s, n);
        long bad = inv_record_compare_bits(&one, &got, w, 8);
        ASSERT_INT_EQ(bad, 0);
    }
    printf("%s: %d injected failures, %d..%d exchanges per step, every later step as clean\n",
           what, injected, ex_min, ex_max);
    /* Every step had at least one exchange that could fail (the host transport counts too). */
    ASSERT_INT_OP(ex_min, >=, 1);
    inv_record_free(&got);
    inv_record_free(&one);
    inv_record_free(&clean);
    free(buf);
    ms_generator_destroy(g);
}

static void test_faults_exact(void **state)
{
    (void)state;
    run_faults(&scen, 1, 1, 0, 1, 0, false);
    run_faults(&scen, 2, 4, 1, 1, 0, false);
    run_faults(&scen, 4, 8, 1, 4, 0, false);
}

static void test_faults_truncated(void **state)
{
    (void)state;
    run_faults(&scen, 1, 8, 1, 1, 32, false);
    run_faults(&scen, 2, 4, 0, 4, 32, false);
}

static void test_faults_force_argmax(void **state)
{
    (void)state;
    run_faults(&scen_greedy, 1, 1, 0, 1, 0, true);
    run_faults(&scen_greedy, 2, 4, 1, 2, 0, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_exact),
        cmocka_unit_test(test_faults_truncated),
        cmocka_unit_test(test_faults_force_argmax),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
