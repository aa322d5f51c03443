/* AVX-512 block primitives, compiled with target attributes and chosen at run time, so one
 * binary runs on any x86-64 and uses the wide path where the CPU has it. */
#include "kernels/ms_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,f16c,bmi")))

/* Clears from k the lanes of the skipped positions in [i, i + 16) (skip sorted, *s advanced). */
static inline __mmask16 skip_lanes(__mmask16 k, int32_t i, const int32_t *skip, int32_t n_skip,
                                   int32_t *s)
{
    while (*s < n_skip && skip[*s] < i + 16) k &= (__mmask16)~(1u << (skip[(*s)++] - i));
    return k;
}

/* Order-preserving map of floats (no NaN) to unsigned keys. */
MS_AVX512 static inline __m512i float_keys(__m512 v)
{
    const __m512i b = _mm512_castps_si512(v);
    const __m512i neg = _mm512_srai_epi32(b, 31); /* all ones for negatives */
    return _mm512_xor_si512(b, _mm512_or_si512(neg, _mm512_set1_epi32((int)0x80000000u)));
}

/* The float whose key float_keys gives k. */
static inline float key_float(uint32_t k)
{
    const uint32_t bits = (k & 0x80000000u) ? k ^ 0x80000000u : ~k;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* The (k+1)-th largest of a[0..n) (no NaN), bit by bit: the largest key t with at least k+1
 * keys >= t. A counting pass over a few vectors for each bit in which the keys differ (a bit
 * they all share is the answer's too: the maxima of a row mostly agree in sign, exponent and
 * more), without the unpredictable branches of a quickselect. a is turned into the keys first (the
 * contract lets it be reordered, so it may be overwritten). */
MS_AVX512 static float kth_avx512(float *a, int32_t n, int32_t k)
{
    uint32_t *key = (uint32_t *)a;
    const __mmask16 last = n % 16 ? (__mmask16)((1u << (n % 16)) - 1u) : (__mmask16)0xffff;
    __m512i vand = _mm512_set1_epi32(-1), vor = _mm512_setzero_si512();
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : last;
        const __m512i v = float_keys(_mm512_maskz_loadu_ps(m, a + i));
        _mm512_mask_storeu_epi32(key + i, m, v);
        vand = _mm512_mask_and_epi32(vand, m, vand, v);
        vor = _mm512_mask_or_epi32(vor, m, vor, v);
    }
    const uint32_t all1 = (uint32_t)_mm512_reduce_and_epi32(vand),
                   diff = all1 ^ (uint32_t)_mm512_reduce_or_epi32(vor);
    if (diff == 0) return key_float(all1); /* all equal */
    uint32_t t = all1 & ~diff; /* the bits every key has */
    for (int b = 31 - __builtin_clz(diff); b >= 0; b--) {
        if (!(diff >> b & 1)) continue; /* a bit no key differs in is the answer's too */
        const uint32_t cand = t | (1u << b);
        const __m512i vc = _mm512_set1_epi32((int)cand);
        int32_t c = 0, i = 0;
        for (; i + 16 < n; i += 16)
            c += __builtin_popcount(_mm512_cmpge_epu32_mask(_mm512_loadu_si512(key + i), vc));
        c += __builtin_popcount(
            _mm512_mask_cmpge_epu32_mask(last, _mm512_maskz_loadu_epi32(last, key + i), vc));
        if (c >= k + 1) t = cand;
    }
    return key_float(t);
}

/* Four compares make one 64-bit mask; a block with no hit costs no branch miss (most have
 * none), and a hit costs one loop over its set bits. (Compressing the positions into a vector
 * and storing it, without any branch, is slower: vpcompressd is slow on AMD cores.) */
MS_AVX512 static int32_t above_avx512(const float *x, int32_t n, float t, int32_t base,
                                     int32_t *idx)
{
    const __m512 vt = _mm512_set1_ps(t);
    int32_t c = 0, i = 0;
    for (; i + 64 <= n; i += 64) {
        uint64_t b = (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), vt, _CMP_GT_OQ) |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 16), vt, _CMP_GT_OQ)
                         << 16 |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 32), vt, _CMP_GT_OQ)
                         << 32 |
                     (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i + 48), vt, _CMP_GT_OQ)
                         << 48;
        /* the first two hits without a branch (a word mostly holds none or one: a loop's exit
         * would be mispredicted), the rest by the loop; idx has room for the extra store */
        idx[c] = base + i + (int32_t)_tzcnt_u64(b);
        c += b != 0;
        b &= b - 1;
        idx[c] = base + i + (int32_t)_tzcnt_u64(b);
        c += b != 0;
        b &= b - 1;
        for (; b; b &= b - 1) idx[c++] = base + i + __builtin_ctzll(b);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        uint32_t b = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, x + i), vt, _CMP_GT_OQ);
        for (; b; b &= b - 1) idx[c++] = base + i + __builtin_ctz(b);
    }
    return c;
}

/* Each key against eight at a time: how many are smaller, and how many equal ones come before.
 * The keys sit in registers; lists of distinct keys (every real candidate list: the ids
 * differ) need only the first count, and a collision in the places it gives sends the list
 * to the full count. */
MS_AVX512 static void ranks_avx512(const uint64_t *key, int32_t n, int32_t *pos)
{
    __m512i k[8];
    __mmask8 m[8];
    const int32_t nb = (n + 7) / 8;
    for (int32_t b = 0; b < nb; b++) {
        m[b] = n - 8 * b >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - 8 * b)) - 1u);
        k[b] = _mm512_maskz_loadu_epi64(m[b], key + 8 * b);
    }
    uint64_t seen = 0;
    for (int32_t i = 0; i < n; i++) {
        const __m512i ki = _mm512_set1_epi64((long long)key[i]);
        int32_t r = 0;
        for (int32_t b = 0; b < nb; b++)
            r += __builtin_popcount(_mm512_mask_cmplt_epu64_mask(m[b], k[b], ki));
        pos[i] = r;
        seen |= 1ull << r;
    }
    if (seen == (n == 64 ? ~0ull : (1ull << n) - 1)) return;
    for (int32_t i = 0; i < n; i++) { /* equal keys: those before i come first */
        const __m512i ki = _mm512_set1_epi64((long long)key[i]);
        for (int32_t b = 0; b < nb && 8 * b < i; b++) {
            const __mmask8 before = i - 8 * b >= 8 ? (__mmask8)0xff
                                                   : (__mmask8)((1u << (i - 8 * b)) - 1u);
            pos[i] += __builtin_popcount(_mm512_mask_cmpeq_epu64_mask(before, k[b], ki));
        }
    }
}

/* 2^t: t = floor(t) + f, f in [0, 1) by vreduceps, 2^f by a degree-5 fit of least relative
 * error (1.7e-7 with float rounding), scaled by 2^floor(t) exactly by scalef, which floors t
 * itself: three operations besides the polynomial. scalef gives 0 far below; t = -inf gives
 * f = 0 and so 0; t = NaN gives NaN. */
MS_AVX512 static inline __m512 exp2_avx512(__m512 t)
{
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(0.0018775741336867213f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.008989342488348484f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05582632124423981f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24015361070632935f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931530833244324f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999999403953552f));
    return _mm512_scalef_ps(p, t);
}

/* One step of the exp sum. max(t, -200) maps NaN (max returns its second operand) to 2^-200,
 * which scalef flushes to 0: such lanes add nothing, without a mask. */
#define MS_SUMEXP_STEP(acc, xv)                                                                   \
    do {                                                                                          \
        const __m512 t_ = _mm512_max_ps(_mm512_fmadd_ps((xv), c, nmc), lo);                      \
        acc = _mm512_add_ps(acc, exp2_avx512(t_));                                                \
    } while (0)
/* The same without the clamp, for data that holds no NaN (-inf adds 0 as it is): a NaN turns
 * the sum into NaN, which the caller checks. */
#define MS_SUMEXP_STEP_NOCLAMP(acc, xv)                                                           \
    acc = _mm512_add_ps(acc, exp2_avx512(_mm512_fmadd_ps((xv), c, nmc)))

/* Float lanes of an exp sum added into double lanes (the float ones hold at most 2048 terms). */
MS_AVX512 static inline __m512d add_lanes(__m512d d, __m512 s)
{
    d = _mm512_add_pd(d, _mm512_cvtps_pd(_mm512_castps512_ps256(s)));
    return _mm512_add_pd(d, _mm512_cvtps_pd(_mm512_extractf32x8_ps(s, 1)));
}

/* exp((x - m) * scale) as 2^(x * cf - m * cf): m * cf rounded, and the factor that corrects the
 * rounding, applied to the sum. */
typedef struct exp_ref {
    __m512 c, nmc;
    double corr;
} exp_ref;

MS_AVX512 static inline exp_ref exp_ref_of(float m, float scale)
{
    const float cf = scale * 1.4426950408889634f;
    const float mc = m * cf;
    const double e = (double)fmaf(m, cf, -mc) * 0.6931471805599453; /* in nats */
    /* 2^-err by its series while err is a rounding error of an ordinary m (error ~e^3/6,
     * below 1e-12 here): a libm call per new maximum cost small shards 4% */
    const double corr = fabs(e) < 1e-4 ? 1.0 - e + 0.5 * e * e : exp(-e);
    return (exp_ref){_mm512_set1_ps(cf), _mm512_set1_ps(-mc), corr};
}

MS_AVX512 static double sumexp_avx512(const float *x, int32_t n, float m, float scale,
                                      const int32_t *skip, int32_t n_skip)
{
    const exp_ref r = exp_ref_of(m, scale);
    const __m512 c = r.c, nmc = r.nmc, ninf = _mm512_set1_ps(-INFINITY),
                 lo = _mm512_set1_ps(-200.0f);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    __m512d d = _mm512_setzero_pd();
    int32_t i = 0, s = 0;
    /* the next skipped position, in a register: one compare an iteration when there is none */
    int32_t next = n_skip > 0 ? skip[0] : INT32_MAX;
    while (i + 32 <= n) {
        const int32_t end = n - i > MS_BLOCK ? i + MS_BLOCK : n;
        for (; i + 32 <= end; i += 32) {
            if (next < i + 32) {
                const __mmask16 k0 = skip_lanes((__mmask16)0xffff, i, skip, n_skip, &s);
                const __mmask16 k1 = skip_lanes((__mmask16)0xffff, i + 16, skip, n_skip, &s);
                next = s < n_skip ? skip[s] : INT32_MAX;
                MS_SUMEXP_STEP(s0, _mm512_mask_loadu_ps(ninf, k0, x + i));
                MS_SUMEXP_STEP(s1, _mm512_mask_loadu_ps(ninf, k1, x + i + 16));
            } else {
                MS_SUMEXP_STEP(s0, _mm512_loadu_ps(x + i));
                MS_SUMEXP_STEP(s1, _mm512_loadu_ps(x + i + 16));
            }
        }
        d = add_lanes(d, _mm512_add_ps(s0, s1));
        s0 = s1 = _mm512_setzero_ps();
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        k = skip_lanes(k, i, skip, n_skip, &s);
        MS_SUMEXP_STEP(s0, _mm512_mask_loadu_ps(ninf, k, x + i));
    }
    d = add_lanes(d, s0);
    return _mm512_reduce_add_pd(d) * r.corr;
}

/* Two vectors' exps into accumulators: (a0, a1) at scale 1 against (c1, n1) and, when two,
 * (b0, b1) at inv_t against (c2, n2). */
#define EXP_PAIR_WITH(STEP, xa, xb, a0, a1, b0, b1)                                               \
    do {                                                                                          \
        const __m512 x0 = (xa), x1 = (xb);                                                        \
        {                                                                                         \
            const __m512 c = c1, nmc = n1;                                                        \
            STEP(a0, x0);                                                                         \
            STEP(a1, x1);                                                                         \
        }                                                                                         \
        if (two) {                                                                                \
            const __m512 c = c2, nmc = n2;                                                        \
            STEP(b0, x0);                                                                         \
            STEP(b1, x1);                                                                         \
        }                                                                                         \
    } while (0)
#define EXP_PAIR(xa, xb, a0, a1, b0, b1) EXP_PAIR_WITH(MS_SUMEXP_STEP, xa, xb, a0, a1, b0, b1)

/* Passes A and C, one sub-block at a time, each vector loaded once for its maximum and its exps.
 * The exps run against the maximum so far, before the sub-block's own is known; a sub-block
 * that raises it by a few tens is summed as it stands (its terms exceed 1, which floats hold)
 * and then rescaled with the rest. A larger jump, no maximum yet, or a NaN in a whole
 * sub-block (whose exps run without the clamp that takes NaN out) takes a second sweep of the
 * sub-block from L1. The hardware prefetcher streams the row. */
MS_AVX512 static inline __attribute__((always_inline)) float
max_sum_body(const float *x, int32_t n, const int32_t *skip, int32_t n_skip, float *bm,
             ms__lse *st, double inv_t, const bool two)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY), lo = _mm512_set1_ps(-200.0f),
                 zero = _mm512_setzero_ps();
    const float scale_t = (float)inv_t;
    /* the largest rise of the maximum whose exps (at either scale) still fit a float: e^60 */
    const double rise_cap = 60.0 / (inv_t > 1.0 ? inv_t : 1.0);
    bool sums = st && st->max != INFINITY;
    exp_ref r1 = {0}, r2 = {0};
    if (sums && st->max > -INFINITY) {
        r1 = exp_ref_of(st->max, 1.0f);
        if (two) r2 = exp_ref_of(st->max, scale_t);
    }
    __m512 all = ninf, s0 = zero, s1 = s0, t0 = s0, t1 = s0;
    __m512d d1 = _mm512_setzero_pd(), d2 = d1;
    int32_t s = 0, pending = 0;
    for (int32_t a = 0; a < n; a += MS_SUB) {
        const int32_t len = n - a < MS_SUB ? n - a : MS_SUB, nv = (len + 15) / 16;
        const bool plain = len == MS_SUB && !(s < n_skip && skip[s] < a + len);
        const bool fused = sums && st->max > -INFINITY;
        __mmask16 k[MS_SUB / 16];
        __m512 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, e0 = zero, e1 = zero, f0 = zero,
               f1 = zero;
        __m512 c1 = r1.c, n1 = r1.nmc, c2 = r2.c, n2 = r2.nmc;
        if (!plain) {
            /* lane masks of the sub-block's vectors: the tail and the skipped positions off */
            for (int32_t v = 0; v < nv; v++) k[v] = (__mmask16)0xffff;
            if (len % 16) k[nv - 1] = (__mmask16)((1u << (len % 16)) - 1u);
            for (; s < n_skip && skip[s] < a + len; s++)
                k[(skip[s] - a) / 16] &= (__mmask16) ~(1u << ((skip[s] - a) % 16));
            for (int32_t v = nv; v < MS_SUB / 16; v++) k[v] = 0; /* past the row's end */
        }
        /* max(x, acc) returns acc when x is NaN: NaN logits count as -inf */
        if (fused && plain) { /* unclamped: a NaN shows in the sums, and the block is redone */
            for (int32_t i = a; i < a + MS_SUB; i += 32) {
                const __m512 xa = _mm512_loadu_ps(x + i), xb = _mm512_loadu_ps(x + i + 16);
                m0 = _mm512_max_ps(xa, m0);
                m1 = _mm512_max_ps(xb, m1);
                EXP_PAIR_WITH(MS_SUMEXP_STEP_NOCLAMP, xa, xb, e0, e1, f0, f1);
            }
        } else if (fused) { /* lanes masked off read -inf, which adds 0 unclamped too */
            for (int32_t v = 0; v < nv; v += 2) { /* k[nv] is 0 when nv is odd */
                const __m512 xa = _mm512_mask_loadu_ps(ninf, k[v], x + a + 16 * v),
                             xb = _mm512_mask_loadu_ps(ninf, k[v + 1], x + a + 16 * v + 16);
                m0 = _mm512_max_ps(xa, m0);
                m1 = _mm512_max_ps(xb, m1);
                EXP_PAIR_WITH(MS_SUMEXP_STEP_NOCLAMP, xa, xb, e0, e1, f0, f1);
            }
        } else if (plain) {
            for (int32_t i = a; i < a + MS_SUB; i += 64) {
                m0 = _mm512_max_ps(_mm512_loadu_ps(x + i), m0);
                m1 = _mm512_max_ps(_mm512_loadu_ps(x + i + 16), m1);
                m2 = _mm512_max_ps(_mm512_loadu_ps(x + i + 32), m2);
                m3 = _mm512_max_ps(_mm512_loadu_ps(x + i + 48), m3);
            }
        } else {
            for (int32_t v = 0; v < MS_SUB / 16; v += 4) {
                m0 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, k[v], x + a + 16 * v), m0);
                m1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, k[v + 1], x + a + 16 * v + 16), m1);
                m2 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, k[v + 2], x + a + 16 * v + 32), m2);
                m3 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, k[v + 3], x + a + 16 * v + 48), m3);
            }
        }
        const __m512 mv = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
        const float b = _mm512_reduce_max_ps(mv);
        bm[a / MS_SUB] = b;
        all = _mm512_max_ps(mv, all);
        if (!sums || !(b > -INFINITY)) continue; /* nothing to add, or sums no longer read */
        if (b == INFINITY) { /* +inf tokens alone carry the mass: the sums are never read */
            sums = false;
            st->max = INFINITY;
            continue;
        }
        /* the sub-block's exps as summed, unless the maximum rose past what they can hold */
        const __m512 ef = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(f0, f1));
        const bool keep = fused && !((double)b - (double)st->max > rise_cap) &&
                          !_mm512_cmp_ps_mask(ef, ef, _CMP_UNORD_Q);
        if (keep) {
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
            t0 = _mm512_add_ps(t0, f0);
            t1 = _mm512_add_ps(t1, f1);
        }
        if (b > st->max) { /* a new reference: what was summed is rescaled to it */
            if (st->max > -INFINITY) {
                st->sum += _mm512_reduce_add_pd(add_lanes(d1, _mm512_add_ps(s0, s1))) * r1.corr;
                const double dm = (double)st->max - (double)b;
                st->sum *= exp(dm);
                if (two) {
                    const __m512d d2t = add_lanes(d2, _mm512_add_ps(t0, t1));
                    st->sum_t += _mm512_reduce_add_pd(d2t) * r2.corr;
                    st->sum_t *= exp(dm * inv_t);
                }
                d1 = d2 = _mm512_setzero_pd();
                s0 = s1 = t0 = t1 = zero;
                pending = 0;
            }
            st->max = b;
            r1 = exp_ref_of(b, 1.0f);
            if (two) r2 = exp_ref_of(b, scale_t);
        }
        if (!keep) { /* the sub-block again, from L1, against the new reference */
            c1 = r1.c, n1 = r1.nmc, c2 = r2.c, n2 = r2.nmc;
            if (plain) {
                for (int32_t i = a; i < a + MS_SUB; i += 32)
                    EXP_PAIR(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16), s0, s1, t0, t1);
            } else {
                for (int32_t v = 0; v < nv; v += 2)
                    EXP_PAIR(_mm512_mask_loadu_ps(ninf, k[v], x + a + 16 * v),
                             _mm512_mask_loadu_ps(ninf, k[v + 1], x + a + 16 * v + 16), s0, s1,
                             t0, t1);
            }
        }
        if (++pending == MS_BLOCK / MS_SUB) { /* each float lane has taken its share of terms */
            d1 = add_lanes(d1, _mm512_add_ps(s0, s1));
            d2 = add_lanes(d2, _mm512_add_ps(t0, t1));
            s0 = s1 = t0 = t1 = zero;
            pending = 0;
        }
    }
    if (sums) {
        st->sum += _mm512_reduce_add_pd(add_lanes(d1, _mm512_add_ps(s0, s1))) * r1.corr;
        if (two)
            st->sum_t += _mm512_reduce_add_pd(add_lanes(d2, _mm512_add_ps(t0, t1))) * r2.corr;
    }
    return _mm512_reduce_max_ps(all);
}
#undef EXP_PAIR
#undef EXP_PAIR_WITH

/* The body twice, with and without the second sum, so that its loops test nothing. */
MS_AVX512 static float max_sum_avx512(const float *x, int32_t n, const int32_t *skip,
                                      int32_t n_skip, float *bm, ms__lse *st, double inv_t)
{
    return inv_t != 1.0 ? max_sum_body(x, n, skip, n_skip, bm, st, inv_t, true)
                        : max_sum_body(x, n, skip, n_skip, bm, st, inv_t, false);
}

MS_AVX512 static void convert_avx512(const void *src, ms_dtype t, int32_t n, float *dst)
{
    const uint16_t *s = src;
    int32_t i = 0;
    if (t == MS_DTYPE_BF16) {
        for (; i + 16 <= n; i += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
        }
        for (; i < n; i++) dst[i] = ms__bf16_to_f32(s[i]);
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i,
                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
        for (; i < n; i++) dst[i] = ms__f16_to_f32(s[i]);
    }
}

MS_AVX512 static void expv_avx512(const float *x, int32_t n, float *y)
{
    const __m512 c = _mm512_set1_ps(1.4426950408889634f);
    for (int32_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(y + i, k, exp2_avx512(_mm512_mul_ps(v, c)));
    }
}

/* 32x32 -> 64-bit products of every lane with the constant m: high and low words. */
MS_AVX512 static inline void mulhilo_avx512(__m512i a, __m512i m, __m512i *hi, __m512i *lo)
{
    const __m512i pe = _mm512_mul_epu32(a, m);                        /* even lanes */
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m); /* odd lanes */
    *lo = _mm512_mullo_epi32(a, m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* Philox4x32-10 for 16 token ids at once, the same rounds and key schedule as Random123's
 * philox4x32 (counter (ctr low, ctr high, id, 0), key (seed low, seed high)). */
MS_AVX512 static void uniforms_avx512(uint64_t seed, uint64_t ctr, const int32_t *ids, int32_t n,
                                      double *u)
{
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    const __m512d half = _mm512_set1_pd(0.5), scale = _mm512_set1_pd(0x1p-53);
    /* unpacklo/hi of 32-bit words pair tokens {0,1,4,5,8,9,12,13} and {2,3,6,7,...} */
    static const int order_lo[8] = {0, 1, 4, 5, 8, 9, 12, 13};
    static const int order_hi[8] = {2, 3, 6, 7, 10, 11, 14, 15};
    int32_t i = 0;
    for (; i < n; i += 16) {
        const int32_t m = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)(m == 16 ? 0xffffu : ((1u << m) - 1u));
        __m512i c0 = _mm512_set1_epi32((int)(uint32_t)ctr);
        __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(ctr >> 32));
        __m512i c2 = _mm512_maskz_loadu_epi32(k, ids + i);
        __m512i c3 = _mm512_setzero_si512();
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int r = 0; r < 10; r++) {
            __m512i hi0, lo0, hi1, lo1;
            mulhilo_avx512(c0, m0, &hi0, &lo0);
            mulhilo_avx512(c2, m1, &hi1, &lo1);
            c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);
            c1 = lo1;
            c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);
            c3 = lo0;
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const __m512i blo = _mm512_srli_epi64(_mm512_unpacklo_epi32(c0, c1), 11);
        const __m512i bhi = _mm512_srli_epi64(_mm512_unpackhi_epi32(c0, c1), 11);
        double tl[8], th[8];
        _mm512_storeu_pd(tl, _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepu64_pd(blo), half), scale));
        _mm512_storeu_pd(th, _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepu64_pd(bhi), half), scale));
        for (int j = 0; j < 8; j++) {
            if (order_lo[j] < m) u[i + order_lo[j]] = tl[j];
            if (order_hi[j] < m) u[i + order_hi[j]] = th[j];
        }
    }
}

static const ms__block_ops avx512_ops = {
    .name = "avx512",
    .sumexp = sumexp_avx512,
    .max_sum = max_sum_avx512,
    .above = above_avx512,
    .ranks = ranks_avx512,
    .kth = kth_avx512,
    .convert = convert_avx512,
    .expv = expv_avx512,
    .uniforms = uniforms_avx512,
};

const ms__block_ops *ms__block_ops_avx512(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return &avx512_ops;
    return NULL;
}

#else
const ms__block_ops *ms__block_ops_avx512(void)
{
    return NULL;
}
#endif
