/*
 * Helpers shared by the trace suite (tests/trace): object ownership that survives a failed
 * assertion, generator configurations for a host mesh, raw parameters with seeds, output
 * buffers that can be poisoned and compared field by field, and a snapshot of everything a
 * generator exposes (parameters, seeds, counters, every slot's prompt set and output counts)
 * to prove that a failing call changed nothing. Include after <cmocka.h>; everything is static.
 */
#ifndef MS_TRACE_UTIL_H
#define MS_TRACE_UTIL_H

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshsample.h"
#include "ref_util.h"
#include "test.h"

#define TR_LEN(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))
#define TR_MAX_USERS 64

/* ---- ownership: released by tr_teardown even when an assertion longjmps out ---- */
enum { TR_MEM, TR_GEN, TR_BATCH, TR_OUT };
#define TR_MAX_OBJS 256
static void *tr_objs[TR_MAX_OBJS];
static int tr_kinds[TR_MAX_OBJS];

static inline void tr_destroy_obj(void *p, int kind)
{
    switch (kind) {
    case TR_GEN:
        ms_generator_destroy((ms_generator *)p);
        break;
    case TR_BATCH:
        ref_batch_free((ref_batch *)p);
        free(p);
        break;
    case TR_OUT:
        ref_out_free((ref_out *)p);
        free(p);
        break;
    default:
        free(p);
    }
}

static inline void tr_track(void *p, int kind)
{
    for (int i = 0; i < TR_MAX_OBJS; i++)
        if (!tr_objs[i]) {
            tr_objs[i] = p;
            tr_kinds[i] = kind;
            return;
        }
    print_error("tr_track: more than %d live objects\n", TR_MAX_OBJS);
    fail();
}

/* Release one tracked object now. */
static inline void tr_release(void *p)
{
    for (int i = 0; i < TR_MAX_OBJS; i++)
        if (tr_objs[i] == p) {
            tr_destroy_obj(p, tr_kinds[i]);
            tr_objs[i] = NULL;
            return;
        }
}

static inline int tr_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < TR_MAX_OBJS; i++)
        if (tr_objs[i]) {
            tr_destroy_obj(tr_objs[i], tr_kinds[i]);
            tr_objs[i] = NULL;
        }
    return 0;
}

#define TR_TEST(f) cmocka_unit_test_teardown(f, tr_teardown)

static inline void *tr_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    ASSERT_TRUE(p != NULL);
    tr_track(p, TR_MEM);
    return p;
}

/* ---- generators ---- */

typedef struct tr_mesh {
    int32_t rows, cols, axis, dp;
} tr_mesh;

static const tr_mesh TR_MESH_1X1 = {1, 1, 0, 1};
static const tr_mesh TR_MESH_2X4 = {2, 4, 1, 2}; /* gather along columns (T 4), two DP rows */

static inline ms_generator_config tr_config(int32_t vocab, int32_t padded, int32_t batch,
                                            tr_mesh m, int32_t threads, int32_t max_top_k)
{
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = vocab;
    cfg.mesh.padded_vocab_size = padded;
    cfg.mesh.max_batch_size = batch;
    cfg.mesh.rows = m.rows;
    cfg.mesh.cols = m.cols;
    cfg.mesh.all_gather_axis = m.axis;
    cfg.mesh.sampling_dp = m.dp;
    cfg.mesh.max_top_k = max_top_k;
    cfg.num_threads = threads;
    return cfg;
}

static inline ms_generator *tr_create(const ms_generator_config *cfg)
{
    ms_generator *g = NULL;
    ms_status s = ms_generator_create(cfg, &g);
    ASSERT_STATUS_MSG(MS_OK, s, ms_create_last_error());
    ASSERT_TRUE(g != NULL);
    tr_track(g, TR_GEN);
    return g;
}

static inline ref_batch *tr_batch(ms_dtype dt, int32_t users, int32_t padded, int64_t stride)
{
    ref_batch *b = calloc(1, sizeof *b);
    ASSERT_TRUE(b != NULL);
    ref_batch_init(b, dt, users, padded, stride);
    tr_track(b, TR_BATCH);
    return b;
}

static inline size_t tr_batch_bytes(const ref_batch *b)
{
    return (size_t)b->users * (size_t)b->stride * (b->dtype == MS_DTYPE_F32 ? 4u : 2u);
}

/* dst := src (same shape): data and exact values. */
static inline void tr_batch_copy(ref_batch *dst, const ref_batch *src)
{
    ASSERT_TRUE(dst->dtype == src->dtype && dst->users == src->users &&
                dst->padded == src->padded && dst->stride == src->stride);
    memcpy(dst->data, src->data, tr_batch_bytes(src));
    memcpy(dst->exact, src->exact, (size_t)src->users * (size_t)src->padded * sizeof(float));
}

/* The per-device views of b for g; returns their number. */
static inline int32_t tr_views(ms_generator *g, const ref_batch *b, ms_logits *views)
{
    int32_t n = ref_batch_views(b, g, views, 64);
    ASSERT_TRUE(n > 0);
    return n;
}

static inline ref_out *tr_out(int32_t users, int32_t cap)
{
    ref_out *o = calloc(1, sizeof *o);
    ASSERT_TRUE(o != NULL);
    ref_out_init(o, users, cap);
    tr_track(o, TR_OUT);
    return o;
}

/* Fill every output field with a byte pattern, so a field the step leaves unwritten shows. */
static inline void tr_out_poison(ref_out *o, unsigned char byte)
{
    const size_t u = (size_t)o->users, c = (size_t)o->cap;
    memset(o->tokens, byte, u * sizeof *o->tokens);
    memset(o->row_error, byte, u);
    memset(o->logprob, byte, u * sizeof *o->logprob);
    memset(o->rank, byte, u * sizeof *o->rank);
    memset(o->top_count, byte, u * sizeof *o->top_count);
    memset(o->top_ids, byte, u * c * sizeof *o->top_ids);
    memset(o->top_logprobs, byte, u * c * sizeof *o->top_logprobs);
}

static inline uint32_t tr_fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Field-by-field, bit-for-bit comparison of two steps' outputs (top lists up to top_count).
 * Prints the first differences; returns true when equal. */
static inline bool tr_out_same(const ref_out *a, const ref_out *b, const char *ctx, int step)
{
    int bad = 0;
    for (int32_t u = 0; u < a->users && bad < 8; u++) {
#define TR_CMP_INT(f)                                                                           \
    if ((long long)a->f[u] != (long long)b->f[u]) {                                             \
        print_error("%s step %d user %d: " #f " %lld vs %lld\n", ctx, step, u,                  \
                    (long long)a->f[u], (long long)b->f[u]);                                    \
        bad++;                                                                                  \
    }
        TR_CMP_INT(tokens)
        TR_CMP_INT(row_error)
        TR_CMP_INT(rank)
        TR_CMP_INT(top_count)
#undef TR_CMP_INT
        if (tr_fbits(a->logprob[u]) != tr_fbits(b->logprob[u])) {
            print_error("%s step %d user %d: logprob %.9g (0x%08x) vs %.9g (0x%08x)\n", ctx, step,
                        u, (double)a->logprob[u], tr_fbits(a->logprob[u]),
                        (double)b->logprob[u], tr_fbits(b->logprob[u]));
            bad++;
        }
        int32_t n = a->top_count[u];
        if (n < 0 || n > a->cap || n != b->top_count[u])
            continue;
        for (int32_t i = 0; i < n; i++) {
            size_t at = (size_t)u * (size_t)a->cap + (size_t)i;
            if (a->top_ids[at] != b->top_ids[at] ||
                tr_fbits(a->top_logprobs[at]) != tr_fbits(b->top_logprobs[at])) {
                print_error("%s step %d user %d: top[%d] (%d, %.9g) vs (%d, %.9g)\n", ctx, step,
                            u, i, a->top_ids[at], (double)a->top_logprobs[at], b->top_ids[at],
                            (double)b->top_logprobs[at]);
                bad++;
                break;
            }
        }
    }
    return bad == 0;
}

#define ASSERT_OUT_SAME(a, b, ctx, step)                                                        \
    do {                                                                                        \
        if (!tr_out_same((a), (b), (ctx), (step))) {                                            \
            print_error("%s:%d: outputs differ (see above)\n", __FILE__, __LINE__);             \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Sanity of one step: a bad row has token -1 and row_error 1, any other a real token. */
static inline void tr_out_valid(const ref_out *o, int32_t vocab, const char *ctx, int step)
{
    for (int32_t u = 0; u < o->users; u++) {
        bool ok = o->row_error[u] == 1 ? o->tokens[u] == -1
                                       : (o->row_error[u] == 0 && o->tokens[u] >= 0 &&
                                          o->tokens[u] < vocab);
        if (!ok) {
            print_error("%s step %d user %d: token %d with row_error %d (vocab %d)\n", ctx, step,
                        u, o->tokens[u], o->row_error[u], vocab);
            fail();
        }
    }
}

/* ---- raw parameters with seeds ---- */

typedef struct tr_raw {
    float t;
    int64_t k;
    float p, min_p, pres, freq, rep;
    int64_t seed, lp, nlp;
} tr_raw;

/* temperature 1, k 0, p 1, no penalties, seed None, no log-probs */
static inline tr_raw tr_raw_default(void)
{
    tr_raw r = {1.0f, 0, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, MS_SEED_NONE, 0, 0};
    return r;
}

/* Backing lists of an ms_sampling_params built from raw users (do not copy: sp points in). */
typedef struct tr_splist {
    float f[7][TR_MAX_USERS];
    int64_t i[4][TR_MAX_USERS];
    ms_sampling_params sp;
} tr_splist;

static inline void tr_splist_build(tr_splist *L, const tr_raw *raw, int32_t n)
{
    ASSERT_TRUE(n >= 0 && n <= TR_MAX_USERS);
    for (int32_t u = 0; u < n; u++) {
        L->f[0][u] = raw[u].t;
        L->f[1][u] = raw[u].p;
        L->f[2][u] = raw[u].min_p;
        L->f[3][u] = raw[u].pres;
        L->f[4][u] = raw[u].freq;
        L->f[5][u] = raw[u].rep;
        L->i[0][u] = raw[u].k;
        L->i[1][u] = raw[u].seed;
        L->i[2][u] = raw[u].lp;
        L->i[3][u] = raw[u].nlp;
    }
    ms_sampling_params_init(&L->sp);
    L->sp.temperature = ms_flist(L->f[0], n);
    L->sp.top_p = ms_flist(L->f[1], n);
    L->sp.min_p = ms_flist(L->f[2], n);
    L->sp.presence_penalty = ms_flist(L->f[3], n);
    L->sp.frequency_penalty = ms_flist(L->f[4], n);
    L->sp.repetition_penalty = ms_flist(L->f[5], n);
    L->sp.top_k = ms_ilist(L->i[0], n);
    L->sp.seed = ms_ilist(L->i[1], n);
    L->sp.enable_log_probs = ms_ilist(L->i[2], n);
    L->sp.num_logprobs = ms_ilist(L->i[3], n);
}

/* ---- formatted parameters ---- */

static inline bool tr_feq(float a, float b)
{
    return tr_fbits(a) == tr_fbits(b) || (isnan(a) && isnan(b));
}

static inline bool tr_slot_same(const ms_slot_params *got, const ms_slot_params *exp,
                                const char *ctx, int32_t slot)
{
    bool ok = tr_feq(got->temperature, exp->temperature) && got->top_k == exp->top_k &&
              tr_feq(got->top_p, exp->top_p) && tr_feq(got->min_p, exp->min_p) &&
              tr_feq(got->presence_penalty, exp->presence_penalty) &&
              tr_feq(got->frequency_penalty, exp->frequency_penalty) &&
              tr_feq(got->repetition_penalty, exp->repetition_penalty) &&
              got->seed == exp->seed && got->enable_log_probs == exp->enable_log_probs &&
              got->num_logprobs == exp->num_logprobs;
    if (!ok)
        print_error("%s: slot %d: got {T %.9g k %d p %.9g minp %.9g pres %.9g freq %.9g rep "
                    "%.9g seed %lld lp %d n %d}, expected {T %.9g k %d p %.9g minp %.9g pres "
                    "%.9g freq %.9g rep %.9g seed %lld lp %d n %d}\n",
                    ctx, slot, (double)got->temperature, got->top_k, (double)got->top_p,
                    (double)got->min_p, (double)got->presence_penalty,
                    (double)got->frequency_penalty, (double)got->repetition_penalty,
                    (long long)got->seed, got->enable_log_probs, got->num_logprobs,
                    (double)exp->temperature, exp->top_k, (double)exp->top_p, (double)exp->min_p,
                    (double)exp->presence_penalty, (double)exp->frequency_penalty,
                    (double)exp->repetition_penalty, (long long)exp->seed, exp->enable_log_probs,
                    exp->num_logprobs);
    return ok;
}

#define ASSERT_PARAMS_OF(g, slot, exp, ctx)                                                     \
    do {                                                                                        \
        ms_slot_params got_;                                                                    \
        ASSERT_OK((g), ms_generator_get_params((g), (slot), &got_));                            \
        if (!tr_slot_same(&got_, (exp), (ctx), (slot))) {                                       \
            print_error("%s:%d: parameters differ (see above)\n", __FILE__, __LINE__);          \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* ---- everything observable about a generator's per-slot state ---- */

typedef struct tr_state {
    int32_t users, vocab;
    ms_slot_params params[TR_MAX_USERS];
    int64_t seed[TR_MAX_USERS];
    uint64_t counter[TR_MAX_USERS];
    int32_t *count;    /* [users * vocab] output counts */
    uint8_t *prompt;   /* [users * vocab] prompt membership */
} tr_state;

static inline void tr_state_take(const ms_generator *g, int32_t vocab, tr_state *st)
{
    memset(st, 0, sizeof *st);
    st->users = ms_generator_num_users(g);
    st->vocab = vocab;
    ASSERT_TRUE(st->users > 0 && st->users <= TR_MAX_USERS);
    st->count = tr_alloc((size_t)st->users * (size_t)vocab * sizeof *st->count);
    st->prompt = tr_alloc((size_t)st->users * (size_t)vocab);
    for (int32_t s = 0; s < st->users; s++) {
        ASSERT_OK(g, ms_generator_get_params(g, s, &st->params[s]));
        ASSERT_OK(g, ms_generator_get_seed(g, s, &st->seed[s], &st->counter[s]));
        for (int32_t t = 0; t < vocab; t++) {
            bool in = false;
            int32_t c = 0;
            ASSERT_OK(g, ms_generator_get_token_state(g, s, t, &c, &in));
            st->count[(size_t)s * (size_t)vocab + (size_t)t] = c;
            st->prompt[(size_t)s * (size_t)vocab + (size_t)t] = in;
        }
    }
}

static inline void tr_state_free(tr_state *st)
{
    tr_release(st->count);
    tr_release(st->prompt);
    st->count = NULL;
    st->prompt = NULL;
}

/* Compare two snapshots; with_seeds false skips seeds and counters. Prints every slot that
 * differs; returns true when equal. */
static inline bool tr_state_same(const tr_state *a, const tr_state *b, bool with_seeds,
                                 const char *ctx)
{
    bool ok = a->users == b->users && a->vocab == b->vocab;
    for (int32_t s = 0; ok && s < a->users; s++) {
        if (!tr_slot_same(&b->params[s], &a->params[s], ctx, s))
            ok = false;
        if (with_seeds && (a->seed[s] != b->seed[s] || a->counter[s] != b->counter[s])) {
            print_error("%s: slot %d: seed/counter %lld/%llu became %lld/%llu\n", ctx, s,
                        (long long)a->seed[s], (unsigned long long)a->counter[s],
                        (long long)b->seed[s], (unsigned long long)b->counter[s]);
            ok = false;
        }
        for (int32_t t = 0; t < a->vocab; t++) {
            size_t at = (size_t)s * (size_t)a->vocab + (size_t)t;
            if (a->count[at] != b->count[at] || a->prompt[at] != b->prompt[at]) {
                print_error("%s: slot %d token %d: count/prompt %d/%d became %d/%d\n", ctx, s, t,
                            a->count[at], a->prompt[at], b->count[at], b->prompt[at]);
                ok = false;
                break;
            }
        }
    }
    return ok;
}

#define ASSERT_STATE_SAME(a, b, with_seeds, ctx)                                                \
    do {                                                                                        \
        if (!tr_state_same((a), (b), (with_seeds), (ctx))) {                                    \
            print_error("%s:%d: generator state differs (see above)\n", __FILE__, __LINE__);    \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Case-insensitive substring test (for "nan" in a message). */
static inline bool tr_contains_ci(const char *hay, const char *needle)
{
    if (!hay)
        return false;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

#endif /* MS_TRACE_UTIL_H */
