/*
 * A trace is bound to its buffers (DESIGN 3, meshsample.h ms_generator_sample / reset_trace).
 *
 * - Replaying with another logits buffer (any one device's view, another stride or dtype over
 *   the same bytes, another count of buffers) or another output buffer (any one field, an
 *   optional field dropped) fails with MS_ERR_TRACE and a message naming reset_trace; nothing
 *   changes: parameters, seeds, counters and histories are as before, and the next correct call
 *   gives the tokens of a twin generator that never saw the failing call.
 * - After ms_generator_reset_trace the new buffers are accepted (a new capture) and the old
 *   ones refused. A capture that fails its own validation binds nothing. Eager calls are never
 *   checked and leave the trace alone.
 * - Each trace key (penalties, log-probs, force-argmax) captures independently: with other
 *   buffers per key, switching keys back and forth replays each key's own buffers and refuses
 *   the others'; changing parameters does not drop any capture.
 * - With enable_internal_trace = false at create, enable_trace is ignored: other buffers are
 *   accepted at every step and the results are those of eager steps.
 * - A traced step that fails in the transport (ms__generator_inject_fault), whether it was a
 *   capture or a replay, in the main gather or in the exact-mode fallback round, changes
 *   nothing and binds nothing new: the next traced call captures or replays as if it had not
 *   happened, and gives the tokens of a twin that never saw it.
 * Each on a 1x1 mesh and a host 2x4 mesh (axis 1, sampling_dp 2, device views of one matrix).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ms_generator_impl.h" /* ms__generator_inject_fault (test-only) */
#include "trace_util.h"

#define V 250
#define VP 256
#define GAP 8
#define USERS 8 /* num_users on both meshes */

static const tr_mesh meshes[2] = {{1, 1, 0, 1}, {2, 4, 1, 2}};

static ms_generator *make_gen(tr_mesh m, bool internal_trace)
{
    ms_generator_config cfg = tr_config(V, VP, USERS / m.dp, m, 1, 0);
    cfg.enable_internal_trace = internal_trace;
    ms_generator *g = tr_create(&cfg);
    ASSERT_INT_EQ(ms_generator_num_users(g), USERS);
    return g;
}

/* Stochastic users with fixed seeds and prompts; penalties and log-probs as asked; greedy:
 * every user greedy. */
static void set_users(ms_generator *g, bool greedy, bool pen, bool lp)
{
    tr_raw raw[USERS];
    for (int32_t u = 0; u < USERS; u++) {
        raw[u] = tr_raw_default();
        raw[u].t = greedy ? 0.0f : 0.7f + 0.1f * (float)u;
        raw[u].k = u % 2 ? 20 : 0;
        raw[u].p = u % 3 ? 0.95f : 1.0f;
        if (pen) {
            raw[u].pres = 1.5f;
            raw[u].rep = 1.3f;
        }
        if (lp) {
            raw[u].lp = u % 2;
            raw[u].nlp = 3;
        }
    }
    tr_splist L;
    tr_splist_build(&L, raw, USERS);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &L.sp, NULL, 0));
}

static void init_gen(ms_generator *g)
{
    int64_t seeds[USERS];
    int32_t prompt[USERS * 4];
    for (int32_t u = 0; u < USERS; u++) {
        seeds[u] = 4242 + 31 * u;
        for (int32_t j = 0; j < 4; j++)
            prompt[u * 4 + j] = (u * 37 + j * 11) % V;
    }
    ASSERT_OK(g, ms_generator_reset_seed(g, seeds, USERS, NULL, USERS));
    ASSERT_OK(g, ms_generator_reset_prompt_tokens(g, prompt, USERS, 4, NULL));
    set_users(g, false, false, false);
}

/* The logits of step `step`, written in place into b. */
static void fill_step(ref_batch *b, int step)
{
    ref_rng r;
    ref_rng_init(&r, 0xb0ff0000ULL + (uint64_t)step);
    for (int32_t u = 0; u < b->users; u++) {
        for (int32_t j = 0; j < V; j++)
            ref_batch_set(b, u, j, (float)(1.2 * ref_rng_normal(&r)));
        for (int32_t j = V; j < b->padded; j++)
            ref_batch_set(b, u, j, 1e30f);
    }
    ref_batch_poison_gap(b, &r);
}

typedef struct bufs {
    ref_batch *b;
    ref_out *o;
    ms_logits v[8];
    int32_t nv;
} bufs;

static void bufs_init(bufs *x, ms_generator *g, ms_dtype dt)
{
    x->b = tr_batch(dt, USERS, VP, VP + GAP);
    x->o = tr_out(USERS, ms_generator_max_logprobs(g));
    x->nv = tr_views(g, x->b, x->v);
}

/* One step of g from x (logits regenerated in place as step `step`); returns its status. */
static ms_status step_on(ms_generator *g, bufs *x, int step, bool trace)
{
    fill_step(x->b, step);
    tr_out_poison(x->o, 0x33);
    return ms_generator_sample(g, x->v, x->nv, trace, &x->o->out);
}

/* The failing call changed nothing (parameters, seeds, counters, histories). */
static void expect_refused(ms_generator *g, ms_status st, const tr_state *before, const char *what)
{
    if (st != MS_ERR_TRACE) {
        print_error("%s: expected MS_ERR_TRACE, got %s (\"%s\")\n", what, ms_status_name(st),
                    ms_generator_last_error(g));
        fail();
    }
    ASSERT_STR_CONTAINS(ms_generator_last_error(g), "reset_trace");
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(before, &after, true, what);
    tr_state_free(&after);
}

static void run_other_buffers(tr_mesh m)
{
    ms_generator *g = make_gen(m, true), *twin = make_gen(m, true);
    init_gen(g);
    init_gen(twin);
    bufs A, B, T;
    bufs_init(&A, g, MS_DTYPE_F32);
    bufs_init(&B, g, MS_DTYPE_F32);
    bufs_init(&T, twin, MS_DTYPE_F32);
    int step = 0;

    ASSERT_OK(g, step_on(g, &A, step, true)); /* captures A */
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(A.o, T.o, "capture", step);
    step++;
    ASSERT_OK(g, step_on(g, &A, step, true)); /* replays A */
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(A.o, T.o, "replay", step);
    step++;

    tr_state before;
    tr_state_take(g, V, &before);
    fill_step(A.b, step);
    fill_step(B.b, step);
    ms_logits v[8];
    ms_step_output o;

    /* every view from another buffer */
    expect_refused(g, ms_generator_sample(g, B.v, B.nv, true, &A.o->out), &before, "other logits");
    /* one device's view only */
    for (int32_t d = 0; d < A.nv; d++) {
        memcpy(v, A.v, sizeof v);
        v[d] = B.v[d];
        expect_refused(g, ms_generator_sample(g, v, A.nv, true, &A.o->out), &before,
                       "one other device view");
    }
    /* the same bytes as another stride, and as another dtype */
    memcpy(v, A.v, sizeof v);
    v[0].row_stride = VP;
    expect_refused(g, ms_generator_sample(g, v, A.nv, true, &A.o->out), &before, "other stride");
    memcpy(v, A.v, sizeof v);
    v[0].dtype = MS_DTYPE_BF16;
    expect_refused(g, ms_generator_sample(g, v, A.nv, true, &A.o->out), &before, "other dtype");
    if (A.nv > 1) {
        ms_status st = ms_generator_sample(g, A.v, A.nv - 1, true, &A.o->out);
        ASSERT_STATUS2(MS_ERR_TRACE, MS_ERR_INVALID_ARGUMENT, st, ms_generator_last_error(g));
        tr_state after;
        tr_state_take(g, V, &after);
        ASSERT_STATE_SAME(&before, &after, true, "fewer logits buffers");
        tr_state_free(&after);
    }
    /* other outputs: all of them, or any one field */
    expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &B.o->out), &before, "other outputs");
    for (int f = 0; f < 7; f++) {
        o = A.o->out;
        switch (f) {
        case 0: o.tokens = B.o->out.tokens; break;
        case 1: o.row_error = B.o->out.row_error; break;
        case 2: o.logprob = B.o->out.logprob; break;
        case 3: o.rank = B.o->out.rank; break;
        case 4: o.top_count = B.o->out.top_count; break;
        case 5: o.top_ids = B.o->out.top_ids; break;
        default: o.top_logprobs = B.o->out.top_logprobs; break;
        }
        char what[64];
        snprintf(what, sizeof what, "other output field %d", f);
        expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &o), &before, what);
        if (f > 0) { /* an optional field dropped */
            o = A.o->out;
            switch (f) {
            case 1: o.row_error = NULL; break;
            case 2: o.logprob = NULL; break;
            case 3: o.rank = NULL; break;
            case 4: o.top_count = NULL; break;
            case 5: o.top_ids = NULL; break;
            default: o.top_logprobs = NULL; break;
            }
            snprintf(what, sizeof what, "output field %d dropped", f);
            expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &o), &before, what);
        }
    }

    /* the next correct call is the twin's next step */
    ASSERT_OK(g, step_on(g, &A, step, true));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(A.o, T.o, "after refusals", step);
    step++;

    /* reset_trace: the new buffers are a new capture, the old ones are refused */
    ASSERT_OK(g, ms_generator_reset_trace(g));
    ASSERT_STR_EQ(ms_generator_last_error(g), "");
    ASSERT_OK(g, step_on(g, &B, step, true));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(B.o, T.o, "new capture", step);
    step++;
    tr_state_free(&before);
    tr_state_take(g, V, &before);
    fill_step(A.b, step);
    expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &A.o->out), &before,
                   "old buffers after reset");
    ASSERT_OK(g, step_on(g, &B, step, true));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(B.o, T.o, "replay of the new capture", step);
    step++;

    /* an eager call takes any buffers and leaves the capture alone */
    ASSERT_OK(g, step_on(g, &A, step, false));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(A.o, T.o, "eager between replays", step);
    step++;
    ASSERT_OK(g, step_on(g, &B, step, true));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(B.o, T.o, "replay after an eager call", step);
    step++;

    /* a capture that fails validation binds nothing */
    ASSERT_OK(g, ms_generator_reset_trace(g));
    tr_state_free(&before);
    tr_state_take(g, V, &before);
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g,
                  ms_generator_sample(g, A.v, A.nv + 1, true, &A.o->out));
    o = A.o->out;
    o.tokens = NULL;
    ASSERT_STATUS(MS_ERR_INVALID_ARGUMENT, g, ms_generator_sample(g, A.v, A.nv, true, &o));
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(&before, &after, true, "failed captures");
    ASSERT_OK(g, step_on(g, &B, step, true)); /* this is the capture */
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(B.o, T.o, "capture after failed ones", step);
    step++;
    tr_state_free(&before);
    tr_state_take(g, V, &before);
    fill_step(A.b, step);
    expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &A.o->out), &before,
                   "buffers of a failed capture");
    ASSERT_OK(g, step_on(g, &B, step, true));
    ASSERT_OK(twin, step_on(twin, &T, step, true));
    ASSERT_OUT_SAME(B.o, T.o, "end", step);

    tr_state st, stw;
    tr_state_take(g, V, &st);
    tr_state_take(twin, V, &stw);
    ASSERT_STATE_SAME(&st, &stw, true, "generator vs twin");
}

static void test_other_buffers_1x1(void **state)
{
    (void)state;
    run_other_buffers(meshes[0]);
}

static void test_other_buffers_2x4(void **state)
{
    (void)state;
    run_other_buffers(meshes[1]);
}

/* ---- keys capture independently ---- */

typedef struct key_ctx {
    ms_generator *g, *eager;
    bufs E[2]; /* the eager generator's buffers: f32, bf16 (the values the traced one sees) */
    int step;
} key_ctx;

/* g steps from x (traced) and must match the eager generator. */
static void key_ok(key_ctx *k, bufs *x, const char *what)
{
    ASSERT_OK(k->g, step_on(k->g, x, k->step, true));
    bufs *e = &k->E[x->b->dtype == MS_DTYPE_BF16];
    ASSERT_OK(k->eager, step_on(k->eager, e, k->step, false));
    ASSERT_OUT_SAME(x->o, e->o, what, k->step);
    k->step++;
}

static void key_refused(key_ctx *k, bufs *x, const char *what)
{
    tr_state before;
    tr_state_take(k->g, V, &before);
    fill_step(x->b, k->step);
    expect_refused(k->g, ms_generator_sample(k->g, x->v, x->nv, true, &x->o->out), &before, what);
    tr_state_free(&before);
}

static void both_users(key_ctx *k, bool greedy, bool pen, bool lp)
{
    set_users(k->g, greedy, pen, lp);
    set_users(k->eager, greedy, pen, lp);
}

static void run_keys(tr_mesh m)
{
    key_ctx k;
    k.g = make_gen(m, true);
    k.eager = make_gen(m, true);
    k.step = 0;
    init_gen(k.g);
    init_gen(k.eager);
    bufs A, B, C;
    bufs_init(&A, k.g, MS_DTYPE_F32);
    bufs_init(&B, k.g, MS_DTYPE_BF16);
    bufs_init(&C, k.g, MS_DTYPE_F32);
    bufs_init(&k.E[0], k.eager, MS_DTYPE_F32);
    bufs_init(&k.E[1], k.eager, MS_DTYPE_BF16);

    /* key (): A */
    key_ok(&k, &A, "() capture A");
    key_ok(&k, &A, "() replay A");
    key_refused(&k, &B, "() refuses B");

    /* key (penalties): B, a bf16 buffer */
    both_users(&k, false, true, false);
    key_ok(&k, &B, "(pen) capture B");
    key_ok(&k, &B, "(pen) replay B");
    key_refused(&k, &A, "(pen) refuses A");

    /* back to (): A again, B refused */
    both_users(&k, false, false, false);
    key_ok(&k, &A, "() replay A after (pen)");
    key_refused(&k, &B, "() still refuses B");

    /* (log-probs): C */
    both_users(&k, false, false, true);
    key_ok(&k, &C, "(lp) capture C");
    key_refused(&k, &A, "(lp) refuses A");
    key_ok(&k, &C, "(lp) replay C");

    /* force-argmax (every user greedy without log-probs): A may be captured again there */
    both_users(&k, true, false, false);
    key_ok(&k, &A, "(fa) capture A");
    key_refused(&k, &C, "(fa) refuses C");
    key_ok(&k, &A, "(fa) replay A");

    /* greedy with penalties: (pen, fa), C */
    both_users(&k, true, true, false);
    key_ok(&k, &C, "(pen, fa) capture C");
    key_refused(&k, &A, "(pen, fa) refuses A");

    /* every earlier capture is still there */
    both_users(&k, false, true, false);
    key_refused(&k, &A, "(pen) again refuses A");
    key_ok(&k, &B, "(pen) again replays B");
    both_users(&k, false, false, true);
    key_ok(&k, &C, "(lp) again replays C");
    both_users(&k, false, false, false);
    key_refused(&k, &C, "() again refuses C");
    key_ok(&k, &A, "() again replays A");

    /* reset_trace forgets all of them */
    ASSERT_OK(k.g, ms_generator_reset_trace(k.g));
    key_ok(&k, &C, "() capture C after reset");
    both_users(&k, false, true, false);
    key_ok(&k, &A, "(pen) capture A after reset");
    key_refused(&k, &B, "(pen) refuses B after reset");

    tr_state st, se;
    tr_state_take(k.g, V, &st);
    tr_state_take(k.eager, V, &se);
    ASSERT_STATE_SAME(&st, &se, true, "traced vs eager");
}

static void test_keys_1x1(void **state)
{
    (void)state;
    run_keys(meshes[0]);
}

static void test_keys_2x4(void **state)
{
    (void)state;
    run_keys(meshes[1]);
}

/* ---- enable_internal_trace = false ---- */

static void run_internal_off(tr_mesh m)
{
    ms_generator *g = make_gen(m, false), *eager = make_gen(m, true);
    init_gen(g);
    init_gen(eager);
    bufs X[3], E[2];
    bufs_init(&X[0], g, MS_DTYPE_F32);
    bufs_init(&X[1], g, MS_DTYPE_F32);
    bufs_init(&X[2], g, MS_DTYPE_BF16);
    bufs_init(&E[0], eager, MS_DTYPE_F32);
    bufs_init(&E[1], eager, MS_DTYPE_BF16);
    for (int step = 0; step < 24; step++) {
        /* parameters change too, through every key */
        if (step % 4 == 0) {
            bool greedy = step % 12 == 8, pen = step % 8 == 4, lp = step % 12 == 4;
            set_users(g, greedy, pen, lp);
            set_users(eager, greedy, pen, lp);
        }
        bufs *x = &X[step % 3];
        /* a different logits buffer and different outputs every step, each half of the
         * devices' views from one buffer and half from another at odd steps */
        ms_logits v[8];
        memcpy(v, x->v, sizeof v);
        fill_step(x->b, step);
        if (step % 2 && x != &X[2]) {
            bufs *y = x == &X[0] ? &X[1] : &X[0];
            fill_step(y->b, step);
            for (int32_t d = 0; d < x->nv; d += 2)
                v[d] = y->v[d];
        }
        bufs *e = &E[x->b->dtype == MS_DTYPE_BF16];
        tr_out_poison(x->o, 0x44);
        ASSERT_OK(g, ms_generator_sample(g, v, x->nv, true, &x->o->out));
        ASSERT_OK(eager, step_on(eager, e, step, false));
        ASSERT_OUT_SAME(x->o, e->o, "internal trace off", step);
        if (step == 11)
            ASSERT_OK(g, ms_generator_reset_trace(g));
    }
    tr_state st, se;
    tr_state_take(g, V, &st);
    tr_state_take(eager, V, &se);
    ASSERT_STATE_SAME(&st, &se, true, "internal trace off vs eager");
}

static void test_internal_off_1x1(void **state)
{
    (void)state;
    run_internal_off(meshes[0]);
}

static void test_internal_off_2x4(void **state)
{
    (void)state;
    run_internal_off(meshes[1]);
}

/* ---- failed traced steps ---- */

static void set_fallback_users(ms_generator *g)
{
    /* exact mode, k = 0, p < 1 on flat rows: the nucleus is wider than the gathered
     * candidates, so the step needs its fallback round (a second exchange); penalties and
     * log-probs on so that a committed step would change histories */
    tr_raw raw[USERS];
    for (int32_t u = 0; u < USERS; u++) {
        raw[u] = tr_raw_default();
        raw[u].t = 1.0f;
        raw[u].k = 0;
        raw[u].p = 0.9f;
        raw[u].pres = 0.2f;
        raw[u].lp = 1;
        raw[u].nlp = 2;
    }
    tr_splist L;
    tr_splist_build(&L, raw, USERS);
    ASSERT_OK(g, ms_generator_reset_sampling_params(g, &L.sp, NULL, 0));
}

static void fill_flat(ref_batch *b, int step)
{
    ref_rng r;
    ref_rng_init(&r, 0xf1a70000ULL + (uint64_t)step);
    for (int32_t u = 0; u < b->users; u++) {
        for (int32_t j = 0; j < V; j++)
            ref_batch_set(b, u, j, (float)(0.01 * ref_rng_normal(&r)));
        for (int32_t j = V; j < b->padded; j++)
            ref_batch_set(b, u, j, 1e30f);
    }
}

static void expect_failed(ms_generator *g, ms_status st, const tr_state *before, const char *what)
{
    if (st != MS_ERR_TRANSPORT) {
        print_error("%s: expected MS_ERR_TRANSPORT, got %s (\"%s\")\n", what,
                    ms_status_name(st), ms_generator_last_error(g));
        fail();
    }
    ASSERT_MSG_NONEMPTY(ms_generator_last_error(g));
    tr_state after;
    tr_state_take(g, V, &after);
    ASSERT_STATE_SAME(before, &after, true, what);
    tr_state_free(&after);
}

static void run_faults(tr_mesh m)
{
    ms_generator *g = make_gen(m, true), *twin = make_gen(m, true);
    init_gen(g);
    init_gen(twin);
    set_fallback_users(g);
    set_fallback_users(twin);
    bufs A, B, T;
    bufs_init(&A, g, MS_DTYPE_F32);
    bufs_init(&B, g, MS_DTYPE_F32);
    bufs_init(&T, twin, MS_DTYPE_F32);
    int step = 0;
    tr_state before;

    /* a capture whose gather fails binds nothing */
    fill_flat(A.b, step);
    tr_state_take(g, V, &before);
    ms__generator_inject_fault(g, 0, MS_ERR_TRANSPORT);
    expect_failed(g, ms_generator_sample(g, A.v, A.nv, true, &A.o->out), &before,
                  "failed capture (gather)");
    tr_state_free(&before);
    /* nor one whose fallback round fails */
    tr_state_take(g, V, &before);
    ms__generator_inject_fault(g, 1, MS_ERR_TRANSPORT);
    expect_failed(g, ms_generator_sample(g, A.v, A.nv, true, &A.o->out), &before,
                  "failed capture (fallback round)");
    tr_state_free(&before);
    ms__generator_inject_fault(g, -1, MS_OK);

    /* B is the capture */
    fill_flat(B.b, step);
    fill_flat(T.b, step);
    ASSERT_OK(g, ms_generator_sample(g, B.v, B.nv, true, &B.o->out));
    ASSERT_OK(twin, ms_generator_sample(twin, T.v, T.nv, true, &T.o->out));
    ASSERT_OUT_SAME(B.o, T.o, "capture after failed ones", step);
    step++;
    tr_state_take(g, V, &before);
    fill_flat(A.b, step);
    expect_refused(g, ms_generator_sample(g, A.v, A.nv, true, &A.o->out), &before,
                   "buffers of a failed capture");
    tr_state_free(&before);

    /* failed replays (gather, fallback round) change nothing */
    for (int64_t n = 0; n < 2; n++) {
        fill_flat(B.b, step);
        tr_state_take(g, V, &before);
        ms__generator_inject_fault(g, n, MS_ERR_TRANSPORT);
        expect_failed(g, ms_generator_sample(g, B.v, B.nv, true, &B.o->out), &before,
                      n ? "failed replay (fallback round)" : "failed replay (gather)");
        tr_state_free(&before);
        ms__generator_inject_fault(g, -1, MS_OK);
        fill_flat(B.b, step);
        fill_flat(T.b, step);
        ASSERT_OK(g, ms_generator_sample(g, B.v, B.nv, true, &B.o->out));
        ASSERT_OK(twin, ms_generator_sample(twin, T.v, T.nv, true, &T.o->out));
        ASSERT_OUT_SAME(B.o, T.o, "replay after a failed one", step);
        step++;
    }
    tr_state sg, st;
    tr_state_take(g, V, &sg);
    tr_state_take(twin, V, &st);
    ASSERT_STATE_SAME(&st, &sg, true, "after failed steps");
}

static void test_faults_1x1(void **state)
{
    (void)state;
    run_faults(meshes[0]);
}

static void test_faults_2x4(void **state)
{
    (void)state;
    run_faults(meshes[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TR_TEST(test_other_buffers_1x1), TR_TEST(test_other_buffers_2x4),
        TR_TEST(test_keys_1x1),          TR_TEST(test_keys_2x4),
        TR_TEST(test_internal_off_1x1),  TR_TEST(test_internal_off_2x4),
        TR_TEST(test_faults_1x1),        TR_TEST(test_faults_2x4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
