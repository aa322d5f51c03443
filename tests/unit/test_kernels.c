/*
 * Block kernels: the AVX-512 ones against the portable ones (which every other CPU runs), and
 * the per-device scan against a brute-force model of it: maxima, exp sums, selections, with
 * skipped (history) positions, NaN and infinities in the rows.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ms_kernels.h"

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Values with ties, NaN and infinities sprinkled in at the given rate (per mille). */
static void fill(float *x, int32_t n, uint64_t *s, int specials)
{
    for (int32_t i = 0; i < n; i++) {
        uint64_t r = rng_next(s);
        x[i] = (float)((int64_t)(r % 4001) - 2000) / 97.0f;
        if ((int)(r >> 40) % 1000 < specials) {
            static const float sp[] = {NAN, -INFINITY, INFINITY};
            x[i] = sp[(r >> 20) % 3];
        }
    }
}

/* Sorted distinct positions in [0, n), about one in every `every`. */
static int32_t make_skip(int32_t *skip, int32_t n, int32_t every, uint64_t *s)
{
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (every > 0 && rng_next(s) % (uint64_t)every == 0) skip[k++] = i;
    return k;
}

static const ms__block_ops *wide(void)
{
    return ms__block_ops_avx512();
}

/* max_sum without sums: the sub-block maxima alone (the greedy and sampling-only passes). */
static void test_maxima_match_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 7;
    static float x[5000], bw[32], bp[32];
    static int32_t skip[5000];
    for (int rep = 0; rep < 300; rep++) {
        const int32_t n = 1 + (int32_t)(rng_next(&s) % 5000);
        fill(x, n, &s, rep % 3 == 0 ? 5 : 0);
        const int32_t ns = make_skip(skip, n, rep % 4 == 0 ? 0 : 1 + rep % 37, &s);
        const float mw = w->max_sum(x, n, skip, ns, bw, NULL, 1.0);
        const float mp = p->max_sum(x, n, skip, ns, bp, NULL, 1.0);
        assert_memory_equal(&mw, &mp, sizeof mw);
        assert_memory_equal(bw, bp, (size_t)((n + MS_SUB - 1) / MS_SUB) * sizeof *bw);
    }
}

static void test_sumexp_matches_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 11;
    static float x[9000], bm[64];
    static int32_t skip[9000];
    for (int rep = 0; rep < 300; rep++) {
        const int32_t n = 1 + (int32_t)(rng_next(&s) % 9000);
        fill(x, n, &s, rep % 2 ? 3 : 0);
        for (int32_t i = 0; i < n; i++)
            if (x[i] == INFINITY) x[i] = -INFINITY; /* the sum is taken below a finite max */
        const int32_t ns = make_skip(skip, n, rep % 5 == 0 ? 0 : 1 + rep % 23, &s);
        const float m = p->max_sum(x, n, NULL, 0, bm, NULL, 1.0);
        if (!(m > -INFINITY)) continue;
        const float scale = rep % 3 == 0 ? 1.0f : 1.0f / 0.7f;
        const double sw = w->sumexp(x, n, m, scale, skip, ns);
        const double sp = p->sumexp(x, n, m, scale, skip, ns);
        /* Each term of the wide sum carries the 1.7e-7 relative error of its polynomial and
         * its float partial sums at most MS_BLOCK/32 roundings of 6e-8: 5e-6 bounds both. */
        assert_true(fabs(sw - sp) <= 5e-6 * sp);
    }
}

/* max_sum over a row in chunks, as the scan calls it: the running maximum carries across
 * calls and rises inside them (rows that climb make it rescale often), skips, NaN and -inf
 * sub-blocks, +inf rows, and the second sum at another scale. */
static void test_max_sum_matches_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 23;
    enum { N = 20000 };
    static float x[N], bw[N / MS_SUB + 2], bp[N / MS_SUB + 2];
    static int32_t skip[N];
    for (int rep = 0; rep < 300; rep++) {
        const int32_t n = 1 + (int32_t)(rng_next(&s) % N);
        fill(x, n, &s, rep % 2 ? 3 : 0);
        for (int32_t i = 0; i < n; i++) {
            if (rep % 3 == 0) x[i] += (float)i / 500.0f; /* a climbing row */
            if (x[i] == INFINITY && rep % 5 != 0) x[i] = -INFINITY;
        }
        if (rep % 7 == 0) /* a sub-block of nothing but -inf and NaN */
            for (int32_t i = 0; i < n && i < MS_SUB; i++) x[i] = i % 2 ? NAN : -INFINITY;
        if (rep % 11 == 0) /* a jump of the maximum too far for exps taken against the old one */
            for (int32_t i = n / 2; i < n; i++) x[i] += rep % 2 ? 90.0f : 45.0f;
        if (rep % 6 == 0) /* NaN inside later sub-blocks, with no skips when rep % 4 == 0 too */
            x[n / 3] = x[n / 2] = x[n - 1] = NAN;
        const int32_t ns = make_skip(skip, n, rep % 4 == 0 ? 0 : 1 + rep % 23, &s);
        const double inv_t = rep % 2 ? 1.0 : 1.0 / 0.7;
        ms__lse lw = ms__lse_empty(), lp = ms__lse_empty();
        float mw = -INFINITY, mp = -INFINITY;
        /* chunks of sub-block multiples, as the scan cuts rows */
        const int32_t chunk = MS_SUB * (1 + (int32_t)(rng_next(&s) % 12));
        for (int32_t c0 = 0, s0 = 0; c0 < n; c0 += chunk) {
            const int32_t cn = n - c0 < chunk ? n - c0 : chunk;
            static int32_t rel[N];
            int32_t s1 = s0;
            while (s1 < ns && skip[s1] < c0 + cn) rel[s1 - s0] = skip[s1] - c0, s1++;
            const float cw = w->max_sum(x + c0, cn, rel, s1 - s0, bw + c0 / MS_SUB, &lw, inv_t);
            const float cp = p->max_sum(x + c0, cn, rel, s1 - s0, bp + c0 / MS_SUB, &lp, inv_t);
            assert_memory_equal(&cw, &cp, sizeof cw);
            mw = cw > mw ? cw : mw;
            mp = cp > mp ? cp : mp;
            s0 = s1;
        }
        assert_memory_equal(bw, bp, (size_t)((n + MS_SUB - 1) / MS_SUB) * sizeof *bw);
        assert_true(lw.max == lp.max || (lw.max != lw.max && lp.max != lp.max));
        if (lw.max == INFINITY || !(lw.max > -INFINITY)) continue; /* sums not read */
        /* 5e-6: as in the sumexp test; every term is <= 1 and the largest is 1 */
        assert_true(fabs(lw.sum - lp.sum) <= 5e-6 * lp.sum);
        if (inv_t != 1.0) assert_true(fabs(lw.sum_t - lp.sum_t) <= 5e-6 * lp.sum_t);
    }
}

static void test_kth_matches_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 5;
    static float a[600], b[600];
    for (int rep = 0; rep < 2000; rep++) {
        const int32_t n = 1 + (int32_t)(rng_next(&s) % 600);
        fill(a, n, &s, 20);
        for (int32_t i = 0; i < n; i++)
            if (isnan(a[i])) a[i] = rep % 2 ? -0.0f : 0.0f; /* the contract has no NaN */
        if (rep % 3 == 0) /* keys that share their top bits (a row's maxima), a few equal */
            for (int32_t i = 0; i < n; i++)
                a[i] = (rep % 2 ? -3.0f : 3.0f) + (float)(rng_next(&s) % 64) / 8192.0f;
        if (rep % 7 == 0) /* all equal */
            for (int32_t i = 0; i < n; i++) a[i] = a[0];
        memcpy(b, a, (size_t)n * sizeof *a);
        const int32_t k = (int32_t)(rng_next(&s) % (uint64_t)n);
        const float kw = w->kth(a, n, k), kp = p->kth(b, n, k);
        assert_true(kw == kp);
    }
}

static void test_above_matches_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 31;
    static float x[700];
    static int32_t iw[700], ip[700];
    for (int rep = 0; rep < 3000; rep++) {
        const int32_t n = (int32_t)(rng_next(&s) % 700);
        fill(x, n, &s, 30);
        /* thresholds from the row itself (ties at t), and beyond it */
        const float t = rep % 7 == 0 ? -INFINITY : rep % 11 == 0 ? 100.0f
                        : n > 0                  ? x[rng_next(&s) % (uint64_t)n]
                                                 : 0.0f;
        if (t != t) continue;
        const int32_t base = (int32_t)(rng_next(&s) % 100000);
        const int32_t cw = w->above(x, n, t, base, iw), cp = p->above(x, n, t, base, ip);
        assert_int_equal(cw, cp);
        assert_memory_equal(iw, ip, (size_t)cw * sizeof *iw);
    }
}

static void test_ranks_matches_portable(void **state)
{
    (void)state;
    const ms__block_ops *w = wide(), *p = ms__block_ops_portable();
    if (!w) skip();
    uint64_t s = 37;
    uint64_t key[64];
    int32_t pw[64], pp[64];
    for (int rep = 0; rep < 3000; rep++) {
        const int32_t n = (int32_t)(rng_next(&s) % 65);
        for (int32_t i = 0; i < n; i++) /* few distinct keys in some lists: equal ones too */
            key[i] = rep % 3 == 0 ? rng_next(&s) % 5 : rng_next(&s);
        w->ranks(key, n, pw);
        p->ranks(key, n, pp);
        assert_memory_equal(pw, pp, (size_t)n * sizeof *pw);
    }
}

static int cand_cmp(const void *a, const void *b)
{
    const ms__cand *x = a, *y = b;
    return ms__cand_before(x, y) ? -1 : ms__cand_before(y, x) ? 1 : 0;
}

/* The three ways ms__cand_sort_rank sorts (ranks up to 64, keys up to 512, quicksort beyond),
 * in place and into another array, against qsort: the same order, and the candidates
 * themselves moved (raw and -0 kept). */
static void test_sort_rank_matches_qsort(void **state)
{
    (void)state;
    uint64_t s = 41;
    enum { N = 700 };
    static ms__cand a[N], b[N], r[N];
    for (int rep = 0; rep < 400; rep++) {
        const int32_t n = rep < 100 ? rep : (int32_t)(rng_next(&s) % N);
        for (int32_t i = 0; i < n; i++) {
            const uint64_t x = rng_next(&s);
            const float v = rep % 2 ? (float)(int32_t)(x % 7) - 3.0f : (float)(x % 100000) / 7.0f;
            a[i] = (ms__cand){x % 11 == 0 ? -0.0f : v, (float)i, (int32_t)((x >> 20) % 1000000)};
            a[i].id = a[i].id * N + i; /* distinct ids */
        }
        memcpy(r, a, (size_t)n * sizeof *a);
        qsort(r, (size_t)n, sizeof *r, cand_cmp);
        ms__cand_sort_rank_to(b, a, (size_t)n); /* from a list left as it was */
        assert_memory_equal(b, r, (size_t)n * sizeof *b);
        ms__cand_sort_rank(a, (size_t)n);
        assert_memory_equal(a, r, (size_t)n * sizeof *a);
    }
}

/* Brute force of ms__scan_row without history: top K by (v desc, id asc), and the exp sum. */
typedef struct ref_cand {
    float v;
    int32_t id;
} ref_cand;

static int ref_cmp(const void *a, const void *b)
{
    const ref_cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Runs ms__scan_row on the f32 row x (ids from 100) with K candidates and the history h[0..nh)
 * penalised by sp, and checks it against brute force: the candidates exactly, and the
 * penalised and raw exp sums relative to the row's maximum m within 5e-6 (as in the kernel
 * tests above); without history the penalised maximum is m itself. */
static void check_scan(const float *x, int32_t width, int32_t K, const ms__hist_entry *h,
                       int32_t nh, const ms_slot_params *sp, ref_cand *r)
{
    ms__cand cand[64], raw[8];
    int32_t n = 0, hi = 0;
    double sum_pen = 0.0, sum_raw = 0.0;
    float m = -INFINITY;
    for (int32_t i = 0; i < width; i++) m = x[i] > m ? x[i] : m;
    for (int32_t i = 0; i < width; i++) {
        const float z = x[i] != x[i] ? -INFINITY : x[i];
        float v = z;
        if (hi < nh && h[hi].id == 100 + i) v = ms__penalize(z, &h[hi++], sp, MS_PENALTY_ORDER_TT);
        if (v > -INFINITY) r[n++] = (ref_cand){v, 100 + i};
        if (v > -INFINITY) sum_pen += exp((double)v - (double)m);
        if (z > -INFINITY) sum_raw += exp((double)z - (double)m);
    }
    qsort(r, (size_t)n, sizeof *r, ref_cmp);
    ms__scan_job job = {.row = x, .dtype = MS_DTYPE_F32, .width = width, .id_base = 100, .K = K,
                        .hist = nh ? h : NULL, .n_hist = nh, .sp = sp,
                        .order = MS_PENALTY_ORDER_TT, .want_sum = true, .inv_t = 1.0, .n_raw = 3};
    void *scratch = calloc(1, ms__scan_scratch_bytes(K, nh, width));
    ms__scan_result res = {.cand = cand, .raw = raw};
    ms__scan_row(&job, &res, scratch);
    free(scratch);
    const int32_t want = n < K ? n : K;
    assert_int_equal(res.n_cand, want);
    for (int32_t i = 0; i < want; i++) {
        assert_int_equal(res.cand[i].id, r[i].id);
        assert_true(res.cand[i].v == r[i].v);
    }
    if (n > 0 && m < 1e30f) {
        if (nh == 0) assert_true(res.pen.max == m);
        const double pen = res.pen.sum * exp((double)res.pen.max - (double)m);
        const double rawv = res.raw_lse.sum * exp((double)res.raw_lse.max - (double)m);
        assert_true(fabs(pen - sum_pen) <= 5e-6 * sum_pen);
        assert_true(fabs(rawv - sum_raw) <= 5e-6 * sum_raw);
    }
}

static void test_scan_row_matches_brute_force(void **state)
{
    (void)state;
    uint64_t s = 3;
    enum { MAXW = 40000 };
    float *x = malloc(MAXW * sizeof *x);
    ref_cand *r = malloc(MAXW * sizeof *r);
    for (int rep = 0; rep < 120; rep++) {
        const int32_t width = 1 + (int32_t)(rng_next(&s) % (rep % 2 ? 300 : MAXW));
        const int32_t K = 1 + (int32_t)(rng_next(&s) % 64);
        fill(x, width, &s, rep % 4 == 0 ? 2 : 0);
        for (int32_t i = 0; i < width; i++) /* ties: a coarse grid for some rows */
            if (rep % 3 == 0) x[i] = roundf(x[i]);
        for (int32_t i = 0; i < width; i++)
            if (x[i] == INFINITY) x[i] = 1e30f; /* +inf rows are the invariance tests' business */
        check_scan(x, width, K, NULL, 0, NULL, r);
    }
    /* One value everywhere: every token ties with t0, more than pass B's buffer holds, so it
     * cuts to the K lowest ids again and again. */
    for (int32_t i = 0; i < MAXW; i++) x[i] = 0.5f;
    check_scan(x, MAXW, 3, NULL, 0, NULL, r);
    check_scan(x, MAXW, 64, NULL, 0, NULL, r);
    free(x);
    free(r);
}

/* With history tokens: their penalised values join the others, and the penalised and raw
 * log-sum-exp statistics both count them. Long histories leave sub-blocks with few tokens
 * outside the history, or none, and shards with fewer such sub-blocks than K. */
static void test_scan_row_with_history(void **state)
{
    (void)state;
    uint64_t s = 17;
    enum { MAXW = 30000, MAXH = 3000 };
    float *x = malloc(MAXW * sizeof *x);
    ref_cand *r = malloc(MAXW * sizeof *r);
    ms__hist_entry *h = malloc(MAXH * sizeof *h);
    ms_slot_params sp = {.temperature = 1.0f, .presence_penalty = 0.7f, .frequency_penalty = 0.3f,
                         .repetition_penalty = 1.3f};
    for (int rep = 0; rep < 80; rep++) {
        const int32_t width = 1 + (int32_t)(rng_next(&s) % (rep % 2 ? 2000 : MAXW));
        const int32_t K = 1 + (int32_t)(rng_next(&s) % 64);
        fill(x, width, &s, rep % 4 == 0 ? 2 : 0);
        for (int32_t i = 0; i < width; i++)
            if (x[i] == INFINITY) x[i] = 1e30f;
        /* every token in the history with probability 1/every; some rows nearly all */
        const int32_t every = rep % 5 == 0 ? 2 : 1 + (int32_t)(rng_next(&s) % 200);
        int32_t nh = 0;
        for (int32_t i = 0; i < width && nh < MAXH; i++)
            if (rng_next(&s) % (uint64_t)every == 0)
                h[nh++] = (ms__hist_entry){100 + i, (int32_t)(rng_next(&s) % 3), (int32_t)(i & 1)};
        check_scan(x, width, K, h, nh, &sp, r);
    }
    free(x);
    free(r);
    free(h);
}

/* 16-bit rows wider than a chunk go through the scan's conversion buffer a chunk at a time:
 * the same values as f32 must give the same candidates and bit-identical sums. */
static void test_scan_row_16bit_matches_f32(void **state)
{
    (void)state;
    uint64_t s = 29;
    enum { W = 30001, NH = 300 };
    uint16_t *b = malloc(W * sizeof *b);
    float *x = malloc(W * sizeof *x);
    ms__hist_entry h[NH];
    ms__cand c16[64], r16[8], c32[64], r32[8];
    ms_slot_params sp = {.temperature = 1.0f, .presence_penalty = 0.4f, .repetition_penalty = 1.1f};
    for (int rep = 0; rep < 6; rep++) {
        const ms_dtype dt = rep % 2 ? MS_DTYPE_F16 : MS_DTYPE_BF16;
        for (int32_t i = 0; i < W; i++) {
            /* bf16: sign, exponent 120..135, 7 mantissa bits; f16: exponents 10..20 */
            const uint64_t r = rng_next(&s);
            b[i] = dt == MS_DTYPE_BF16 ? (uint16_t)(((r & 1) << 15) | ((120 + (r >> 1) % 16) << 7) | ((r >> 8) & 0x7f))
                                       : (uint16_t)(((r & 1) << 15) | ((10 + (r >> 1) % 11) << 10) | ((r >> 8) & 0x3ff));
            x[i] = dt == MS_DTYPE_BF16 ? ms__bf16_to_f32(b[i]) : ms__f16_to_f32(b[i]);
        }
        int32_t nh = 0;
        for (int32_t i = 0; i < W && nh < NH; i += 1 + (int32_t)(rng_next(&s) % 200))
            h[nh++] = (ms__hist_entry){i, 1, 0};
        const int32_t K = 40;
        void *scratch = calloc(1, ms__scan_scratch_bytes(K, nh, W));
        ms__scan_job job = {.dtype = dt, .width = W, .K = K, .hist = h, .n_hist = rep < 4 ? nh : 0,
                            .sp = &sp, .order = MS_PENALTY_ORDER_TT, .want_sum = true, .inv_t = 1.0,
                            .n_raw = 5};
        ms__scan_result a = {.cand = c16, .raw = r16}, f = {.cand = c32, .raw = r32};
        job.row = b;
        ms__scan_row(&job, &a, scratch);
        job.row = x;
        job.dtype = MS_DTYPE_F32;
        ms__scan_row(&job, &f, scratch);
        free(scratch);
        assert_int_equal(a.n_cand, f.n_cand);
        assert_memory_equal(a.cand, f.cand, (size_t)a.n_cand * sizeof *a.cand);
        assert_int_equal(a.n_rawc, f.n_rawc);
        assert_memory_equal(a.raw, f.raw, (size_t)a.n_rawc * sizeof *a.raw);
        assert_memory_equal(&a.pen.sum, &f.pen.sum, sizeof a.pen.sum);
        assert_memory_equal(&a.raw_lse.sum, &f.raw_lse.sum, sizeof a.raw_lse.sum);
        assert_true(a.truncated == f.truncated);
    }
    free(b);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxima_match_portable),
        cmocka_unit_test(test_sumexp_matches_portable),
        cmocka_unit_test(test_max_sum_matches_portable),
        cmocka_unit_test(test_kth_matches_portable),
        cmocka_unit_test(test_above_matches_portable),
        cmocka_unit_test(test_ranks_matches_portable),
        cmocka_unit_test(test_sort_rank_matches_qsort),
        cmocka_unit_test(test_scan_row_matches_brute_force),
        cmocka_unit_test(test_scan_row_with_history),
        cmocka_unit_test(test_scan_row_16bit_matches_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
