/*
 * Traced and eager decode loops agree bit for bit (DESIGN 3, meshsample.h ms_generator_sample).
 *
 * Two generators with the same configuration receive the same calls for 130 steps. One samples
 * with enable_trace = true, always from the SAME logits buffer (regenerated in place every step)
 * into the SAME output buffers, so every step after the first of each trace key is a replay.
 * The other samples eagerly from a copy of the logits that alternates between two buffers, into
 * two alternating output sets. Every output field (tokens, row errors, log-probs, ranks, top
 * lists) must match bit for bit at every step, as must seeds, draw counters and, at the end,
 * every slot's prompt set and output counts. Both output sets are poisoned before each step, so
 * a field a replay forgets to write shows as a difference.
 *
 * Parameters change all the time, through every installing call: 13 phases of 10 steps, each
 * with its own kind of users (all greedy without log-probs = the force-argmax key; sampling;
 * sampling with log-probs; penalties; penalties with log-probs; greedy with penalties; greedy
 * with log-probs; exact-mode fallback users k = 0, p < 1 on flat rows; mixed), installed at the
 * phase start by reset_sampling_params, apply_decode_state (one chunk or sampling_dp chunks,
 * sometimes with reset_batch) or set_params; in every phase a request enters one or two slots
 * through apply_prefill_state (sometimes replicate_seeds, once for every slot) and another
 * through reset_sampling_params(empty_slots) + reset_seed + reset_prompt_tokens +
 * reset_output_state; once two slots swap through apply_slot_remap. Mid-phase, two slots get
 * prompts and output histories of hundreds of tokens (more every phase), so replays must cope
 * with state that outgrew everything seen at capture. Rows are sharp, flat, tied,
 * +inf-holding or bad (all NaN / all -inf); the padding and a row-stride gap hold hostile values.
 * The run checks that all six reachable trace keys were used, and at the end that the traced
 * generator really holds a trace (another buffer is refused with MS_ERR_TRACE).
 *
 * Scenarios: 1x1 and host 2x4 (axis 1, sampling_dp 2, one full matrix + device views) x 1 and 2
 * threads x f32 and bf16, exact mode; plus 1x1 f16 in truncated mode (max_top_k 32), 2x4 with
 * penalized log-probs and TT's penalty order, and 1x1 with processed log-probs and
 * allow_force_argmax false (four keys then).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "trace_util.h"

#define V 1000
#define VP 1024
#define GAP 16
#define PHASE_LEN 10
#define NPHASE 13
#define STEPS (PHASE_LEN * NPHASE)
#define PCOLS 6

enum cls {
    C_GREEDY,
    C_SAMPLE,
    C_SAMPLE_LP,
    C_PEN,
    C_PEN_LP,
    C_GREEDY_PEN,
    C_GREEDY_LP,
    C_FALLBACK,
    C_FALLBACK_PEN_LP,
    C_MIXED,
};

static const int phase_cls[NPHASE] = {
    C_GREEDY,   C_SAMPLE,   C_SAMPLE_LP, C_PEN,      C_PEN_LP,          C_GREEDY_PEN, C_GREEDY_LP,
    C_GREEDY,   C_MIXED,    C_FALLBACK,  C_FALLBACK_PEN_LP, C_GREEDY, C_MIXED,
};

typedef struct scen {
    const char *name;
    tr_mesh mesh;
    int32_t batch; /* per DP group */
    int32_t threads, max_top_k;
    ms_dtype dt;
    ms_logprobs_mode mode;
    ms_penalty_order order;
    bool no_force_argmax; /* allow_force_argmax = false: no key has the force-argmax bit */
} scen;

typedef struct run_ctx {
    const scen *sc;
    int32_t U, cap;
} run_ctx;

/* ---- parameters of one kind of user ---- */

static tr_raw raw_sample(ref_rng *r)
{
    static const int64_t ks[] = {0, 5, 20, 50, 1};
    static const float ps[] = {1.0f, 0.9f, 0.5f, 1.0f, 0.0f};
    tr_raw x = tr_raw_default();
    x.t = 0.5f + (float)ref_rng_uniform(r);
    x.k = ks[ref_rng_int(r, 0, TR_LEN(ks) - 1)];
    x.p = ps[ref_rng_int(r, 0, TR_LEN(ps) - 1)];
    if (ref_rng_uniform(r) < 0.2)
        x.min_p = 0.05f;
    if (ref_rng_uniform(r) < 0.15)
        x.t = 0.0f; /* greedy */
    return x;
}

static void add_pen(tr_raw *x, ref_rng *r)
{
    x->pres = 0.1f + 0.8f * (float)ref_rng_uniform(r);
    x->freq = ref_rng_uniform(r) < 0.5 ? 0.0f : 0.4f * (float)ref_rng_uniform(r);
    x->rep = ref_rng_uniform(r) < 0.3 ? 1.0f : 1.0f + (float)ref_rng_uniform(r);
}

static void add_lp(tr_raw *x, ref_rng *r, int32_t cap)
{
    x->lp = 1;
    x->nlp = ref_rng_int(r, 0, cap);
}

static tr_raw raw_fallback(ref_rng *r)
{
    tr_raw x = tr_raw_default();
    x.t = 0.8f + 0.4f * (float)ref_rng_uniform(r);
    x.k = 0;
    x.p = 0.8f + 0.19f * (float)ref_rng_uniform(r);
    return x;
}

/* One user of kind c; force: the kind's penalties / log-probs are surely on for this user. */
static tr_raw raw_for(int c, ref_rng *r, bool force, int32_t cap)
{
    if (c == C_MIXED)
        c = ref_rng_int(r, C_GREEDY, C_FALLBACK_PEN_LP);
    tr_raw x = tr_raw_default();
    const bool on = force || ref_rng_uniform(r) < 0.5;
    switch (c) {
    case C_GREEDY:
        x.t = 0.0f;
        break;
    case C_SAMPLE:
        x = raw_sample(r);
        break;
    case C_SAMPLE_LP:
        x = raw_sample(r);
        if (on) add_lp(&x, r, cap);
        break;
    case C_PEN:
        x = raw_sample(r);
        if (on) add_pen(&x, r);
        break;
    case C_PEN_LP:
        x = raw_sample(r);
        if (on) add_pen(&x, r);
        if (force || ref_rng_uniform(r) < 0.5) add_lp(&x, r, cap);
        break;
    case C_GREEDY_PEN:
        x.t = 0.0f;
        if (on) add_pen(&x, r);
        break;
    case C_GREEDY_LP:
        x.t = 0.0f;
        if (on) add_lp(&x, r, cap);
        break;
    case C_FALLBACK:
        x = raw_fallback(r);
        break;
    case C_FALLBACK_PEN_LP:
        x = raw_fallback(r);
        if (on) add_pen(&x, r);
        if (force || ref_rng_uniform(r) < 0.5) add_lp(&x, r, cap);
        break;
    }
    return x;
}

static void random_tokens(ref_rng *r, int32_t *m, int32_t rows, int32_t cols)
{
    for (int32_t i = 0; i < rows; i++) {
        int32_t n = ref_rng_int(r, 0, cols);
        for (int32_t j = 0; j < cols; j++)
            m[i * cols + j] = j < n ? ref_rng_int(r, 0, V - 1) : -1;
    }
}

/* Distinct random slots. */
static void random_slots(ref_rng *r, int32_t U, int32_t *slots, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        bool dup;
        do {
            slots[i] = ref_rng_int(r, 0, U - 1);
            dup = false;
            for (int32_t j = 0; j < i; j++)
                dup |= slots[j] == slots[i];
        } while (dup);
    }
}

/* ---- the call sequence: the same for both generators (everything derives from step) ---- */

static void apply_ops(ms_generator *g, const run_ctx *c, int step)
{
    const int32_t U = c->U;
    const int phase = step / PHASE_LEN, within = step % PHASE_LEN, cls = phase_cls[phase];
    ref_rng r;
    ref_rng_init(&r, 0x7ace0000ULL + (uint64_t)step);
    tr_raw raw[TR_MAX_USERS];
    tr_splist L;
    int32_t prompt[TR_MAX_USERS * PCOLS], outs[TR_MAX_USERS * PCOLS];

    if (step == 0) {
        int64_t seeds[TR_MAX_USERS];
        for (int32_t u = 0; u < U; u++)
            seeds[u] = 100 + 17 * u;
        ASSERT_OK(g, ms_generator_reset_seed(g, seeds, U, NULL, U));
    }
    if (within == 0) {
        /* a new kind of users: install everyone */
        for (int32_t u = 0; u < U; u++) {
            raw[u] = raw_for(cls, &r, u == 0, c->cap);
            raw[u].seed = MS_SEED_NONE; /* the parameters' seed field never reseeds */
        }
        tr_splist_build(&L, raw, U);
        const bool histories = ref_rng_uniform(&r) < 0.7;
        random_tokens(&r, prompt, U, PCOLS);
        random_tokens(&r, outs, U, PCOLS);
        switch (phase % 3) {
        case 0:
            ASSERT_OK(g, ms_generator_reset_sampling_params(g, &L.sp, NULL, 0));
            if (histories) {
                ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, U, PCOLS, NULL));
                ASSERT_OK(g, ms_generator_reset_output_state(g, outs, U, PCOLS, NULL));
            }
            break;
        case 1: {
            const int32_t dp = c->sc->mesh.dp;
            ms_sampling_params chunks[8];
            int32_t n = 1;
            if (dp > 1 && phase % 2 == 1) {
                n = dp;
                for (int32_t k = 0; k < dp; k++) {
                    ms_errbuf eb;
                    ASSERT_STATUS_MSG(MS_OK, ms_params_chunk(&L.sp, dp, k, &chunks[k], &eb),
                                      eb.msg);
                }
            } else {
                chunks[0] = L.sp;
            }
            ASSERT_OK(g, ms_generator_apply_decode_state(g, chunks, n, histories,
                                                         histories ? prompt : NULL, PCOLS,
                                                         histories ? outs : NULL, PCOLS));
            break;
        }
        default: {
            ms_slot_params f[TR_MAX_USERS];
            ms_errbuf eb;
            ASSERT_STATUS_MSG(MS_OK, ms_params_format(&L.sp, U, c->sc->max_top_k, f, &eb), eb.msg);
            ASSERT_OK(g, ms_generator_set_params(g, f, U, NULL));
            if (histories)
                ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, U, PCOLS, NULL));
            break;
        }
        }
    } else if (within == 4) {
        /* a request enters through apply_prefill_state */
        const bool all = phase == 8;
        const int32_t n = all ? U : (phase % 3 == 0 ? 1 : 2);
        const bool replicate = n == 1 && phase % 2 == 0;
        int32_t slots[TR_MAX_USERS];
        random_slots(&r, U, slots, n);
        for (int32_t i = 0; i < n; i++) {
            raw[i] = raw_for(cls, &r, i == 0, c->cap);
            raw[i].seed = 5000 + 10 * step + i;
        }
        tr_splist_build(&L, raw, n);
        random_tokens(&r, prompt, n, PCOLS);
        ASSERT_OK(g, ms_generator_apply_prefill_state(g, &L.sp, prompt, n, PCOLS,
                                                      all ? NULL : slots, n, replicate));
    } else if (within == 7) {
        /* a request enters through the separate calls */
        const int32_t n = 1 + (phase % 2);
        int32_t slots[2];
        int64_t seeds[2];
        random_slots(&r, U, slots, n);
        for (int32_t i = 0; i < n; i++) {
            raw[i] = raw_for(cls, &r, i == 0, c->cap);
            seeds[i] = 9000 + 10 * step + i;
        }
        tr_splist_build(&L, raw, n);
        random_tokens(&r, prompt, n, PCOLS);
        ASSERT_OK(g, ms_generator_reset_sampling_params(g, &L.sp, slots, n));
        ASSERT_OK(g, ms_generator_reset_seed(g, seeds, n, slots, n));
        ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, n, PCOLS, slots));
        ASSERT_OK(g, ms_generator_reset_output_state(g, NULL, n, 0, slots));
    } else if (within == 5 && (cls == C_PEN || cls == C_PEN_LP || cls == C_GREEDY_PEN ||
                               cls == C_FALLBACK_PEN_LP)) {
        /* Histories of penalised users grow far past anything seen at capture while the key
         * stays the same (penalties are on already; nothing else changes). */
        const int32_t n = 150 + 80 * phase < V ? 150 + 80 * phase : V;
        int32_t *longp = tr_alloc(sizeof(int32_t) * 2 * (size_t)n);
        const int32_t slots[2] = {1, 6 % U};
        ms_slot_params pp[2];
        for (int32_t i = 0; i < 2; i++) {
            ASSERT_OK(g, ms_generator_get_params(g, slots[i], &pp[i]));
            pp[i].presence_penalty = 0.25f;
            pp[i].repetition_penalty = 1.1f;
        }
        ASSERT_OK(g, ms_generator_set_params(g, pp, 2, slots));
        for (int32_t i = 0; i < n; i++) {
            longp[i] = (7 * i + phase) % V;            /* distinct */
            longp[n + i] = (13 * i + 5 * phase) % V;
        }
        ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, longp, 2, n, slots));
        for (int32_t i = 0; i < n; i++)
            longp[n + i] = (11 * (i / 3) + phase) % V; /* repeats */
        ASSERT_OK(g, ms_generator_reset_output_state(g, longp + n, 1, n, slots + 1));
        tr_release(longp);
    } else if (within == 2 && phase == 8) {
        /* two slots swap (a batch condense) */
        int32_t remap[TR_MAX_USERS];
        for (int32_t u = 0; u < U; u++)
            remap[u] = -1;
        remap[1] = 3;
        remap[3] = 1;
        ASSERT_OK(g, ms_generator_apply_slot_remap(g, remap, U));
    }
}

/* ---- logits of one step, regenerated in place ---- */

static void fill_logits(ref_batch *b, int step)
{
    const int cls = phase_cls[step / PHASE_LEN];
    const double flat_share = (cls == C_FALLBACK || cls == C_FALLBACK_PEN_LP) ? 0.7 : 0.25;
    ref_rng r;
    ref_rng_init(&r, 0x10917500ULL + (uint64_t)step * 7919u);
    for (int32_t u = 0; u < b->users; u++) {
        double x = ref_rng_uniform(&r);
        int shape; /* 0 sharp, 1 flat, 2 tied, 3 +inf, 4 all NaN, 5 all -inf */
        if (x < flat_share)
            shape = 1;
        else if (x < flat_share + 0.08)
            shape = 2;
        else if (x < flat_share + 0.13)
            shape = 3;
        else if (x < flat_share + 0.16)
            shape = 4;
        else if (x < flat_share + 0.19)
            shape = 5;
        else
            shape = 0;
        for (int32_t j = 0; j < V; j++) {
            float v;
            switch (shape) {
            case 1:
                v = (float)(0.05 * ref_rng_normal(&r));
                break;
            case 2:
                v = (float)floor(1.5 * ref_rng_normal(&r));
                break;
            case 4:
                v = NAN;
                break;
            case 5:
                v = -INFINITY;
                break;
            default:
                v = (float)(2.5 * ref_rng_normal(&r));
            }
            ref_batch_set(b, u, j, v);
        }
        if (shape == 3) {
            ref_batch_set(b, u, ref_rng_int(&r, 0, V - 1), INFINITY);
            ref_batch_set(b, u, ref_rng_int(&r, 0, V - 1), INFINITY);
        }
        static const float hostile[3] = {60000.0f, INFINITY, NAN};
        for (int32_t j = V; j < b->padded; j++)
            ref_batch_set(b, u, j, hostile[ref_rng_int(&r, 0, 2)]);
    }
    ref_batch_poison_gap(b, &r);
}

/* The trace key the current parameters select (meshsample.h: penalties on, log-probs on,
 * force-argmax). */
static int current_key(const ms_generator *g, int32_t U)
{
    bool pen = false, lp = false, all_greedy = true;
    for (int32_t u = 0; u < U; u++) {
        ms_slot_params p;
        ASSERT_OK(g, ms_generator_get_params(g, u, &p));
        pen |= p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f ||
               p.repetition_penalty != 1.0f;
        lp |= p.enable_log_probs;
        all_greedy &= p.top_k == 1 || p.top_p <= 0.0f;
    }
    return (pen ? 4 : 0) | (lp ? 2 : 0) | (all_greedy && !lp ? 1 : 0);
}

static void run_scenario(const scen *sc)
{
    ms_generator_config cfg = tr_config(V, VP, sc->batch, sc->mesh, sc->threads, sc->max_top_k);
    cfg.logprobs_mode = sc->mode;
    cfg.penalty_order = sc->order;
    cfg.mesh.allow_force_argmax = !sc->no_force_argmax;
    ms_generator *gt = tr_create(&cfg);
    ms_generator *ge = tr_create(&cfg);
    run_ctx c = {sc, ms_generator_num_users(gt), ms_generator_max_logprobs(gt)};
    ASSERT_TRUE(c.U <= TR_MAX_USERS);
    ASSERT_TRUE(c.cap >= 1);

    ref_batch *bt = tr_batch(sc->dt, c.U, VP, VP + GAP);
    ref_batch *be[2] = {tr_batch(sc->dt, c.U, VP, VP + GAP), tr_batch(sc->dt, c.U, VP, VP + GAP)};
    ref_out *ot = tr_out(c.U, c.cap);
    ref_out *oe[2] = {tr_out(c.U, c.cap), tr_out(c.U, c.cap)};
    ms_logits vt[64], ve[64];
    const int32_t nv = tr_views(gt, bt, vt); /* computed once: the same buffers every step */
    unsigned seen_keys = 0;
    int bad_rows = 0, draws_differ = 0;

    for (int step = 0; step < STEPS; step++) {
        apply_ops(gt, &c, step);
        apply_ops(ge, &c, step);
        fill_logits(bt, step);
        ref_batch *e = be[step & 1];
        tr_batch_copy(e, bt);
        ASSERT_INT_EQ(tr_views(ge, e, ve), nv);
        tr_out_poison(ot, 0x5a);
        tr_out_poison(oe[step & 1], 0xa5);

        int key = current_key(gt, c.U);
        ASSERT_INT_EQ(key, current_key(ge, c.U));
        if (sc->no_force_argmax)
            key &= ~1;
        seen_keys |= 1u << key;

        ASSERT_OK(gt, ms_generator_sample(gt, vt, nv, true, &ot->out));
        ASSERT_OK(ge, ms_generator_sample(ge, ve, nv, false, &oe[step & 1]->out));
        ASSERT_OUT_SAME(ot, oe[step & 1], sc->name, step);
        tr_out_valid(ot, V, sc->name, step);
        /* the step reads the logits, never writes them */
        ASSERT_TRUE(memcmp(bt->data, e->data, tr_batch_bytes(bt)) == 0);
        for (int32_t u = 0; u < c.U; u++) {
            bad_rows += ot->row_error[u];
            draws_differ += u > 0 && ot->tokens[u] != ot->tokens[0];
            int64_t s1, s2;
            uint64_t n1, n2;
            ASSERT_OK(gt, ms_generator_get_seed(gt, u, &s1, &n1));
            ASSERT_OK(ge, ms_generator_get_seed(ge, u, &s2, &n2));
            ASSERT_INT_EQ(s1, s2);
            ASSERT_U64_EQ(n1, n2);
        }
    }
    /* every reachable key: none, fa, lp, pen, pen+fa, pen+lp */
    const unsigned want_keys = sc->no_force_argmax ? 0x55u : 0x77u;
    if (seen_keys != want_keys) {
        print_error("%s: trace keys used 0x%02x, expected 0x%02x\n", sc->name, seen_keys,
                    want_keys);
        fail();
    }
    ASSERT_INT_OP(bad_rows, >, 0);
    ASSERT_INT_OP(draws_differ, >, 0);

    tr_state st, se;
    tr_state_take(gt, V, &st);
    tr_state_take(ge, V, &se);
    ASSERT_STATE_SAME(&st, &se, true, sc->name);

    /* The traced generator is bound to its buffers: another logits buffer is refused. */
    ASSERT_INT_EQ(tr_views(gt, be[0], ve), nv);
    ASSERT_STATUS(MS_ERR_TRACE, gt, ms_generator_sample(gt, ve, nv, true, &ot->out));
    ASSERT_STR_CONTAINS(ms_generator_last_error(gt), "reset_trace");
}

#define SCEN_TEST(fn, nm, mesh, batch, threads, mtk, dt, mode, order, nofa)                    \
    static void fn(void **state)                                                                \
    {                                                                                           \
        (void)state;                                                                            \
        static const scen sc = {nm, mesh, batch, threads, mtk, dt, mode, order, nofa};          \
        run_scenario(&sc);                                                                      \
    }

#define M11 {1, 1, 0, 1}
#define M24 {2, 4, 1, 2}
#define RAW MS_LOGPROBS_RAW
#define OAI MS_PENALTY_ORDER_OPENAI
SCEN_TEST(test_1x1_t1_f32, "1x1 t1 f32", M11, 8, 1, 0, MS_DTYPE_F32, RAW, OAI, false)
SCEN_TEST(test_1x1_t2_f32, "1x1 t2 f32", M11, 8, 2, 0, MS_DTYPE_F32, RAW, OAI, false)
SCEN_TEST(test_1x1_t1_bf16, "1x1 t1 bf16", M11, 8, 1, 0, MS_DTYPE_BF16, RAW, OAI, false)
SCEN_TEST(test_1x1_t2_bf16, "1x1 t2 bf16", M11, 8, 2, 0, MS_DTYPE_BF16, RAW, OAI, false)
SCEN_TEST(test_2x4_t1_f32, "2x4 t1 f32", M24, 4, 1, 0, MS_DTYPE_F32, RAW, OAI, false)
SCEN_TEST(test_2x4_t2_f32, "2x4 t2 f32", M24, 4, 2, 0, MS_DTYPE_F32, RAW, OAI, false)
SCEN_TEST(test_2x4_t1_bf16, "2x4 t1 bf16", M24, 4, 1, 0, MS_DTYPE_BF16, RAW, OAI, false)
SCEN_TEST(test_2x4_t2_bf16, "2x4 t2 bf16", M24, 4, 2, 0, MS_DTYPE_BF16, RAW, OAI, false)
/* other paths through the step: truncated mode, f16, the other log-prob modes, TT's penalty
 * order, no force-argmax fast path */
SCEN_TEST(test_1x1_truncated_f16, "1x1 t2 f16 max_top_k 32", M11, 8, 2, 32, MS_DTYPE_F16, RAW,
          OAI, false)
SCEN_TEST(test_2x4_penalized_tt, "2x4 t2 f32 penalized TT order", M24, 4, 2, 0, MS_DTYPE_F32,
          MS_LOGPROBS_PENALIZED, MS_PENALTY_ORDER_TT, false)
SCEN_TEST(test_1x1_processed_nofa, "1x1 t1 bf16 processed no force-argmax", M11, 8, 1, 0,
          MS_DTYPE_BF16, MS_LOGPROBS_PROCESSED, OAI, true)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TR_TEST(test_1x1_t1_f32),  TR_TEST(test_1x1_t2_f32),  TR_TEST(test_1x1_t1_bf16),
        TR_TEST(test_1x1_t2_bf16), TR_TEST(test_2x4_t1_f32),  TR_TEST(test_2x4_t2_f32),
        TR_TEST(test_2x4_t1_bf16), TR_TEST(test_2x4_t2_bf16), TR_TEST(test_1x1_truncated_f16),
        TR_TEST(test_2x4_penalized_tt), TR_TEST(test_1x1_processed_nofa),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
