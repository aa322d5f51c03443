#include <stdlib.h>

#include "common/ms_rng.h"
#include "kernels/ms_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void ms__lse_merge(ms__lse *a, const ms__lse *b, double inv_t)
{
    a->ninf += b->ninf;
    if (b->max == -INFINITY) return;
    if (a->max == -INFINITY) {
        a->max = b->max;
        a->sum = b->sum;
        a->sum_t = b->sum_t;
        return;
    }
    float m = a->max > b->max ? a->max : b->max;
    double da = (double)a->max - m, db = (double)b->max - m;
    a->sum = a->sum * exp(da) + b->sum * exp(db);
    a->sum_t = a->sum_t * exp(da * inv_t) + b->sum_t * exp(db * inv_t);
    a->max = m;
}

double ms__lse_value(const ms__lse *l)
{
    if (l->ninf > 0) return INFINITY;
    if (l->max == -INFINITY) return -INFINITY;
    return (double)l->max + log(l->sum);
}

/* Quicksort and quickselect with the comparison inlined (ids are unique, so no key repeats). */
#define MS__DEFINE_SORT(name, T, before)                                                          \
    static void name##_insertion(T *a, size_t n)                                                 \
    {                                                                                             \
        for (size_t i = 1; i < n; i++) {                                                          \
            T t = a[i];                                                                           \
            size_t j = i;                                                                         \
            while (j > 0 && before(&t, &a[j - 1])) {                                              \
                a[j] = a[j - 1];                                                                  \
                j--;                                                                              \
            }                                                                                     \
            a[j] = t;                                                                             \
        }                                                                                         \
    }                                                                                             \
    /* Partition around the median of three; returns the pivot's final index. */                 \
    static size_t name##_partition(T *a, size_t n)                                               \
    {                                                                                             \
        size_t mid = n / 2;                                                                       \
        if (before(&a[mid], &a[0])) MS__SWAP(T, a[mid], a[0]);                                      \
        if (before(&a[n - 1], &a[0])) MS__SWAP(T, a[n - 1], a[0]);                                  \
        if (before(&a[n - 1], &a[mid])) MS__SWAP(T, a[n - 1], a[mid]);                              \
        MS__SWAP(T, a[mid], a[n - 1]);                                                               \
        const T p = a[n - 1];                                                                     \
        size_t w = 0;                                                                             \
        for (size_t i = 0; i + 1 < n; i++)                                                        \
            if (before(&a[i], &p)) {                                                              \
                MS__SWAP(T, a[i], a[w]);                                                             \
                w++;                                                                              \
            }                                                                                     \
        MS__SWAP(T, a[w], a[n - 1]);                                                                 \
        return w;                                                                                 \
    }                                                                                             \
    static void name(T *a, size_t n)                                                              \
    {                                                                                             \
        while (n > 24) {                                                                          \
            size_t p = name##_partition(a, n);                                                    \
            /* recurse into the smaller side, loop on the larger: O(log n) stack */               \
            if (p < n - p - 1) {                                                                  \
                name(a, p);                                                                       \
                a += p + 1;                                                                       \
                n -= p + 1;                                                                       \
            } else {                                                                              \
                name(a + p + 1, n - p - 1);                                                       \
                n = p;                                                                            \
            }                                                                                     \
        }                                                                                         \
        name##_insertion(a, n);                                                                   \
    }

#define MS__SWAP(T, x, y)                                                                         \
    do {                                                                                          \
        T t_ = (x);                                                                               \
        (x) = (y);                                                                                \
        (y) = t_;                                                                                 \
    } while (0)

MS__DEFINE_SORT(sort_rank, ms__cand, ms__cand_before)
MS__DEFINE_SORT(sort_raw, ms__cand, ms__cand_raw_before)

/* Rank order as one integer: the value's order-preserving bits, inverted so that larger
 * values come first, then the id. -0 is read as +0, as the float comparison sees them. */
typedef struct rank_key {
    uint64_t key;
    uint32_t at; /* where the candidate was */
} rank_key;

static inline uint64_t rank_key_of(const ms__cand *c)
{
    uint32_t b;
    const float v = c->v == 0.0f ? 0.0f : c->v;
    memcpy(&b, &v, sizeof b);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return (uint64_t)~b << 32 | (uint32_t)c->id;
}

#define MS__KEY_BEFORE(x, y) ((x)->key < (y)->key)
MS__DEFINE_SORT(sort_keys, rank_key, MS__KEY_BEFORE)

/* Short lists (the candidates of a shard) sort on 64-bit keys: one integer compare. Up to 64
 * go to the place their rank gives (a count of smaller keys, without a branch on the data);
 * quicksort's branches cost more at that size. */
enum { MS_SORT_CAP = 512, MS_SORT_RANKED = 64 };

/* pos[i] = the place of src[i] in rank order, for n <= MS_SORT_RANKED. */
static void rank_places(const ms__cand *src, int32_t n, int32_t *pos)
{
    uint64_t key[MS_SORT_RANKED] = {0}; /* 512 bytes, cleared so no reader sees garbage */
    for (int32_t i = 0; i < n; i++) key[i] = rank_key_of(&src[i]);
    ms__block_ops_get()->ranks(key, n, pos);
}

void ms__cand_sort_rank_to(ms__cand *restrict dst, const ms__cand *restrict src, size_t n)
{
    if (n > MS_SORT_RANKED) {
        memcpy(dst, src, n * sizeof *dst);
        ms__cand_sort_rank(dst, n);
        return;
    }
    int32_t pos[MS_SORT_RANKED];
    rank_places(src, (int32_t)n, pos);
    for (size_t i = 0; i < n; i++) dst[pos[i]] = src[i];
}

/* The first k in rank order of src[0..n) (n <= MS_SORT_RANKED), into dst in that order. */
static void cand_first_rank_to(ms__cand *restrict dst, const ms__cand *restrict src, int32_t n,
                               int32_t k)
{
    int32_t pos[MS_SORT_RANKED];
    ms__cand all[MS_SORT_RANKED];
    rank_places(src, n, pos);
    for (int32_t i = 0; i < n; i++) all[pos[i]] = src[i];
    memcpy(dst, all, (size_t)(k < n ? k : n) * sizeof *dst);
}

void ms__cand_sort_rank(ms__cand *a, size_t n)
{
    if (n > MS_SORT_CAP) {
        sort_rank(a, n);
        return;
    }
    ms__cand t[MS_SORT_CAP];
    memcpy(t, a, n * sizeof *a);
    if (n <= MS_SORT_RANKED) {
        ms__cand_sort_rank_to(a, t, n);
        return;
    }
    rank_key k[MS_SORT_CAP];
    for (size_t i = 0; i < n; i++) k[i] = (rank_key){rank_key_of(&a[i]), (uint32_t)i};
    sort_keys(k, n);
    for (size_t i = 0; i < n; i++) a[i] = t[k[i].at];
}

void ms__cand_sort_raw(ms__cand *a, size_t n)
{
    sort_raw(a, n);
}


/* ---- portable block primitives ---- */

static double sumexp_portable(const float *x, int32_t n, float m, float scale, const int32_t *skip,
                              int32_t n_skip)
{
    double sum = 0.0;
    for (int32_t i = 0, s = 0; i < n; i++) {
        if (s < n_skip && skip[s] == i) {
            s++;
            continue;
        }
        float d = (x[i] - m) * scale;
        if (d == d) sum += (double)expf(d);
    }
    return sum;
}

static float max_sum_portable(const float *x, int32_t n, const int32_t *skip, int32_t n_skip,
                              float *bm, ms__lse *st, double inv_t)
{
    const bool two = inv_t != 1.0;
    const float scale_t = (float)inv_t;
    bool sums = st && st->max != INFINITY;
    float all = -INFINITY;
    for (int32_t a = 0, s = 0; a < n; a += MS_SUB) {
        const int32_t len = n - a < MS_SUB ? n - a : MS_SUB, s0 = s;
        float b = -INFINITY;
        for (int32_t i = a; i < a + len; i++) {
            if (s < n_skip && skip[s] == i) {
                s++;
                continue;
            }
            b = x[i] > b ? x[i] : b;
        }
        bm[a / MS_SUB] = b;
        all = b > all ? b : all;
        if (!sums || !(b > -INFINITY)) continue;
        if (b == INFINITY) {
            sums = false;
            st->max = INFINITY;
            continue;
        }
        if (b > st->max) {
            if (st->max > -INFINITY) {
                const double dm = (double)st->max - (double)b;
                st->sum *= exp(dm);
                st->sum_t *= exp(dm * inv_t);
            }
            st->max = b;
        }
        for (int32_t i = a, q = s0; i < a + len; i++) {
            if (q < s && skip[q] == i) {
                q++;
                continue;
            }
            const float d = x[i] - st->max;
            if (d == d) st->sum += (double)expf(d);
            const float dt = d * scale_t;
            if (two && dt == dt) st->sum_t += (double)expf(dt);
        }
    }
    return all;
}


/* Value of rank k (0-based, descending) of a[0..n), reordering a. */
static float kth_largest(float *a, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float piv = a[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > piv) i++;
            while (a[j] < piv) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

static int32_t above_portable(const float *x, int32_t n, float t, int32_t base, int32_t *idx)
{
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > t) idx[c++] = base + i;
    return c;
}

static void ranks_portable(const uint64_t *key, int32_t n, int32_t *pos)
{
    for (int32_t i = 0; i < n; i++) {
        int32_t r = 0;
        for (int32_t j = 0; j < n; j++) r += key[j] < key[i] || (key[j] == key[i] && j < i);
        pos[i] = r;
    }
}

static void convert_portable(const void *src, ms_dtype t, int32_t n, float *dst)
{
    const uint16_t *r = src;
    if (t == MS_DTYPE_BF16)
        for (int32_t i = 0; i < n; i++) dst[i] = ms__bf16_to_f32(r[i]);
    else
        for (int32_t i = 0; i < n; i++) dst[i] = ms__f16_to_f32(r[i]);
}

static void expv_portable(const float *x, int32_t n, float *y)
{
    for (int32_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static void uniforms_portable(uint64_t seed, uint64_t ctr, const int32_t *ids, int32_t n,
                              double *u)
{
    for (int32_t i = 0; i < n; i++) u[i] = ms__uniform(seed, ctr, ids[i]);
}

static const ms__block_ops portable_ops = {
    .name = "portable",
    .sumexp = sumexp_portable,
    .max_sum = max_sum_portable,
    .kth = kth_largest,
    .above = above_portable,
    .ranks = ranks_portable,
    .convert = convert_portable,
    .expv = expv_portable,
    .uniforms = uniforms_portable,
};

const ms__block_ops *ms__block_ops_portable(void)
{
    return &portable_ops;
}

const ms__block_ops *ms__block_ops_get(void)
{
    static const ms__block_ops *chosen;
    const ms__block_ops *c = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!c) {
        const char *force = getenv("MESHSAMPLE_KERNEL");
        c = NULL;
        if (!(force && strcmp(force, "portable") == 0)) c = ms__block_ops_avx512();
        if (!c) c = &portable_ops;
        __atomic_store_n(&chosen, c, __ATOMIC_RELEASE);
    }
    return c;
}

/* Columns the passes take at a time: what a 16-bit row is converted in (32 KiB of floats), and
 * where the history positions are listed. */
#define MS_CHUNK 8192
/* Positions pass B gathers before turning them into candidates (at least one sub-block). */
#define MS_IDX_CAP 2048
_Static_assert(MS_IDX_CAP >= MS_SUB, "pass B gathers a whole sub-block at once");

/* Floats of columns [a, a+n) of the row: in place for f32, converted into buf otherwise. */
static inline const float *row_floats(const ms__block_ops *ops, const ms__scan_job *job, float *buf,
                                      int32_t a, int32_t n)
{
    if (job->dtype == MS_DTYPE_F32) return (const float *)job->row + a;
    ops->convert((const uint16_t *)job->row + a, job->dtype, n, buf);
    return buf;
}

/* The scratch of ms__scan_row, carved from one block. */
typedef struct scan_scratch {
    float *buf;     /* a converted chunk (16-bit inputs) */
    float *bm;      /* sub-block maxima */
    float *sel;     /* values for a selection: the real sub-block maxima, or a small shard's */
    int32_t *hpos;  /* history positions in the row */
    uint64_t *hbit; /* the same as a bit set over the row (set when n_hist > 0) */
    int32_t *hrel;  /* the same, relative to a chunk: two lists of nhrel (this chunk, the next) */
    int32_t nhrel;
    float *hz, *hzp; /* history tokens' raw and penalised logits */
    ms__cand *tmp;   /* candidates in id order */
    ms__cand *hcand; /* the history tokens' candidates */
    int32_t *idx;    /* positions pass B collects */
    int32_t *list;   /* sub-blocks pass B visits */
    int32_t ntmp;    /* capacity of tmp */
} scan_scratch;

static size_t scratch_layout(int32_t K, int32_t n_hist, int32_t width, void *base,
                             scan_scratch *sc)
{
    const size_t nsb = (size_t)(width + MS_SUB - 1) / MS_SUB + 1, nh = (size_t)n_hist + 1;
    /* tmp holds a small shard's real elements (fewer than K sub-blocks of them), and the best K
     * merged with the history's best K; pass B's collection keeps to it by cutting to K */
    const size_t direct = (size_t)K * MS_SUB < (size_t)width ? (size_t)K * MS_SUB : (size_t)width;
    const size_t ntmp = (direct > 2 * (size_t)K ? direct : 2 * (size_t)K) + 1;
    size_t nsel = nsb > ntmp ? nsb : ntmp; /* values for kth: maxima, tmp or hcand */
    nsel = nsel > nh ? nsel : nh;
    const size_t sizes[] = {MS_CHUNK * sizeof(float),     nsb * sizeof(float), nsel * sizeof(float),
                            nh * sizeof(int32_t),     ((size_t)width / 64 + 1) * sizeof(uint64_t),
                            2 * nh * sizeof(int32_t), nh * sizeof(float),
                            nh * sizeof(float),       ntmp * sizeof(ms__cand),
                            nh * sizeof(ms__cand),    (MS_IDX_CAP + 1) * sizeof(int32_t),
                            nsb * sizeof(int32_t)};
    void **slots[] = {(void **)&sc->buf,  (void **)&sc->bm,   (void **)&sc->sel,
                      (void **)&sc->hpos, (void **)&sc->hbit, (void **)&sc->hrel, (void **)&sc->hz,
                      (void **)&sc->hzp,  (void **)&sc->tmp,  (void **)&sc->hcand,
                      (void **)&sc->idx,  (void **)&sc->list};
    size_t off = 0;
    sc->nhrel = (int32_t)nh;
    sc->ntmp = (int32_t)ntmp;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        off = (off + 63) & ~(size_t)63;
        if (base) *slots[i] = (char *)base + off;
        off += sizes[i];
    }
    return off + 64;
}

size_t ms__scan_scratch_bytes(int32_t K, int32_t n_hist, int32_t width)
{
    scan_scratch sc;
    return scratch_layout(K, n_hist, width, NULL, &sc);
}

/* The history positions in columns [a, b), relative to a, into rel; *h moves to the first at
 * or after a (callers visit ranges in column order). Returns how many. */
static int32_t skips_in(const scan_scratch *sc, int32_t nh, int32_t *h, int32_t a, int32_t b,
                        int32_t *rel)
{
    int32_t ns = 0;
    while (*h < nh && sc->hpos[*h] < a) (*h)++;
    while (*h + ns < nh && sc->hpos[*h + ns] < b) {
        rel[ns] = sc->hpos[*h + ns] - a;
        ns++;
    }
    return ns;
}

/* Add the values v[0..n) to l, with their sums from the vector exp. */
static void lse_add_many(const ms__block_ops *ops, ms__lse *l, const float *v, int32_t n,
                         double inv_t)
{
    float vm = -INFINITY;
    int64_t ninf = 0;
    for (int32_t i = 0; i < n; i++) {
        if (v[i] == INFINITY) ninf++;
        else if (v[i] > vm) vm = v[i];
    }
    l->ninf += ninf;
    /* with a +inf anywhere the sums are never read: the +inf tokens alone carry the mass */
    if (l->ninf > 0 || !(vm > -INFINITY)) return;
    if (vm > l->max) {
        if (l->max > -INFINITY) {
            const double d = (double)l->max - (double)vm;
            l->sum *= exp(d);
            l->sum_t *= exp(d * inv_t);
        } else {
            l->sum = l->sum_t = 0.0;
        }
        l->max = vm;
    }
    const double s = ops->sumexp(v, n, l->max, 1.0f, NULL, 0);
    l->sum += s;
    l->sum_t += inv_t == 1.0 ? s : ops->sumexp(v, n, l->max, (float)inv_t, NULL, 0);
}

/* Offer c to the list a[0..*n) kept sorted in raw order, at most cap long. */
static inline void raw_top_offer(ms__cand *a, int32_t *n, int32_t cap, const ms__cand *c)
{
    if (*n == cap && !ms__cand_raw_before(c, &a[cap - 1])) return;
    int32_t i = *n < cap ? (*n)++ : cap - 1;
    for (; i > 0 && ms__cand_raw_before(c, &a[i - 1]); i--) a[i] = a[i - 1];
    a[i] = *c;
}

/* The best `keep` of c[0..n) (held in id order, so ties at the cut go to the lower ids), moved to
 * its front in the same order; *kth (when not NULL) gets the value at the cut. sel is room for
 * n floats. Returns how many remain. */
static int32_t keep_best(const ms__block_ops *ops, float *sel, ms__cand *c, int32_t n,
                         int32_t keep, float *kth)
{
    if (n <= keep) return n;
    for (int32_t i = 0; i < n; i++) sel[i] = c[i].v;
    const float t = ops->kth(sel, n, keep - 1);
    int32_t w = 0, ties = 0;
    for (int32_t i = 0; i < n; i++) ties += c[i].v > t;
    ties = keep - ties; /* how many equal to t get in */
    /* Which ones stay is random: their places are listed without a branch (into sel, free
     * after kth, so that no store aliases the loads of c), then they move to the front. */
    int32_t *at = (int32_t *)sel;
    for (int32_t i = 0, eq = 0; i < n; i++) { /* eq: ties seen before i, a one-add chain */
        const float v = c[i].v;
        at[w] = i;
        w += (v > t) | ((v == t) & (eq < ties));
        eq += v == t;
    }
    for (int32_t i = 0; i < keep; i++) c[i] = c[at[i]];
    if (kth) *kth = t;
    return keep;
}

/* The first `cap` of a[0..na) and b[0..nb), both in rank order, merged into dst in rank order.
 * Returns how many. */
static int32_t merge_rank(ms__cand *restrict dst, int32_t cap, const ms__cand *a, int32_t na,
                          const ms__cand *b, int32_t nb)
{
    int32_t i = 0, j = 0, w = 0;
    for (; w < cap && (i < na || j < nb); w++)
        dst[w] = j == nb || (i < na && ms__cand_before(&a[i], &b[j])) ? a[i++] : b[j++];
    return w;
}

/* Whether position i of the row holds a history token (the bit set is filled when any does). */
static inline bool is_hist(const scan_scratch *sc, int32_t n_hist, int32_t i)
{
    return n_hist > 0 && (sc->hbit[i / 64] >> (i % 64) & 1);
}

/* Pass B's collection: the tokens above *thr in the sub-blocks list[0..nl) (in column order),
 * outside the history (those are offered later with their penalised values; a bit set says
 * which, without the branches of a walk along their list), into tmp from
 * nt on. Positions are gathered first, a batch of sub-blocks at a time, then turned into
 * candidates: a heap offered one token at a time cost twice as much here. When tmp fills
 * (only with many ties at t0) the best K so far stay and *thr rises to the K-th: a later token
 * equal to it loses the tie (higher id). Returns the new count. */
static int32_t collect(const ms__block_ops *ops, const ms__scan_job *job, scan_scratch *sc,
                       const int32_t *list, int32_t nl, float *thr, int32_t nt)
{
    int32_t c = 0, q = 0;
    for (;;) {
        for (; q < nl; q++) {
            const int32_t a = list[q] * MS_SUB;
            const int32_t len = job->width - a < MS_SUB ? job->width - a : MS_SUB;
            if (c + len > MS_IDX_CAP) break;
            c += ops->above(row_floats(ops, job, sc->buf, a, len), len, *thr, a, sc->idx + c);
        }
        for (int32_t k = 0; k < c; k++) {
            const int32_t i = sc->idx[k];
            if (is_hist(sc, job->n_hist, i)) continue;
            const float v = ms__load(job->row, job->dtype, i);
            if (!(v > *thr)) continue; /* *thr rose meanwhile */
            if (nt == sc->ntmp) nt = keep_best(ops, sc->sel, sc->tmp, nt, job->K, thr);
            if (!(v > *thr)) continue;
            sc->tmp[nt++] = (ms__cand){v, v, job->id_base + i};
        }
        if (q == nl) return nt;
        c = 0;
    }
}

/* Phase times of the scan, for tuning (cmake -DMESHSAMPLE_PROFILE_SCAN=ON): nanoseconds a
 * row spent in each phase, printed when the process exits. Compiled out otherwise. */
#ifdef MS_PROFILE_SCAN
#include <stdio.h>
#include <time.h>
enum { MS_PH_PASSES, MS_PH_T0, MS_PH_PASS_B, MS_PH_HISTORY, MS_PH_SORT, MS_PH_N };
static long long ms_phase_ns[MS_PH_N], ms_phase_rows;
static long long ms_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static void ms_phase_end(int ph, long long *t)
{
    const long long now = ms_now_ns();
    __atomic_fetch_add(&ms_phase_ns[ph], now - *t, __ATOMIC_RELAXED);
    *t = now;
}
__attribute__((destructor)) static void ms_phase_report(void)
{
    const double n = (double)ms_phase_rows;
    if (n == 0) return;
    fprintf(stderr,
            "scan phases, ns a row over %lld rows: passes A+C %.0f, t0 %.0f, pass B %.0f, "
            "history %.0f, sort %.0f\n",
            ms_phase_rows, ms_phase_ns[MS_PH_PASSES] / n, ms_phase_ns[MS_PH_T0] / n,
            ms_phase_ns[MS_PH_PASS_B] / n, ms_phase_ns[MS_PH_HISTORY] / n,
            ms_phase_ns[MS_PH_SORT] / n);
}
#define MS_PHASE_START(t) long long t = ms_now_ns()
#define MS_PHASE_END(ph, t) ms_phase_end(ph, &(t))
#define MS_PHASE_ROW() __atomic_fetch_add(&ms_phase_rows, 1, __ATOMIC_RELAXED)
#else
#define MS_PHASE_START(t) ((void)0)
#define MS_PHASE_END(ph, t) ((void)0)
#define MS_PHASE_ROW() ((void)0)
#endif

/* The largest float <= v whose order key ends in 12 zero bits (v > -inf, not NaN): a positive
 * v loses its low 12 bits of mantissa, a negative one has them all set (a larger magnitude). */
static inline float key_floor(float v)
{
    const uint32_t low = (1u << 12) - 1u;
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    b = (b & 0x80000000u) ? b | low : b & ~low;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* zp[h] = z' of the job's history token h, whose raw logit is z[h]. Four at a time where SSE2
 * is (every x86-64): the same IEEE operations in the same order as ms__penalize_count, so the
 * same bits, without its moves between float and integer registers (20 cycles a token). */
static void penalize_all(const ms__scan_job *job, const float *z, float *zp)
{
    const float r = job->sp->repetition_penalty, fp = job->sp->frequency_penalty,
                pp = job->sp->presence_penalty;
    const bool openai = job->order == MS_PENALTY_ORDER_OPENAI;
    const ms__hist_entry *e = job->hist;
    int32_t h = 0;
#if defined(__SSE2__)
    const __m128 vr = _mm_set1_ps(r), vfp = _mm_set1_ps(fp), vpp = _mm_set1_ps(pp),
                 zero = _mm_setzero_ps(), ninf = _mm_set1_ps(-INFINITY);
#define SEL(m, a, b) _mm_or_ps(_mm_and_ps((m), (a)), _mm_andnot_ps((m), (b)))
    for (; h + 4 <= job->n_hist; h += 4) {
        const __m128i cnt = _mm_setr_epi32(e[h].count, e[h + 1].count, e[h + 2].count,
                                           e[h + 3].count);
        const __m128 seen = _mm_castsi128_ps(_mm_cmpgt_epi32(cnt, _mm_setzero_si128()));
        const __m128 freq = _mm_mul_ps(vfp, _mm_cvtepi32_ps(cnt));
        __m128 v = _mm_loadu_ps(z + h);
        if (openai) {
            v = SEL(_mm_cmpgt_ps(v, zero), _mm_div_ps(v, vr), _mm_mul_ps(v, vr));
            v = _mm_sub_ps(v, freq);
            v = SEL(seen, _mm_sub_ps(v, vpp), v);
        } else {
            v = SEL(seen, _mm_sub_ps(v, vpp), v);
            v = _mm_sub_ps(v, freq);
            v = SEL(_mm_cmpgt_ps(v, zero), _mm_div_ps(v, vr), _mm_mul_ps(v, vr));
        }
        _mm_storeu_ps(zp + h, SEL(_mm_cmpunord_ps(v, v), ninf, v));
    }
#undef SEL
#endif
    for (; h < job->n_hist; h++)
        zp[h] = ms__penalize_count(z[h], e[h].count, r, fp, pp, job->order);
}

/* A small shard (fewer real sub-blocks than K): all its real tokens outside the history go to
 * tmp (fewer than K sub-blocks of them: tmp has the room), appended without a branch. */
static int32_t collect_all(const ms__block_ops *ops, const ms__scan_job *job, scan_scratch *sc,
                           int32_t nsb)
{
    int32_t nt = 0;
    for (int32_t j = 0; j < nsb; j++) {
        const int32_t a = j * MS_SUB, len = job->width - a < MS_SUB ? job->width - a : MS_SUB;
        if (sc->bm[j] == -INFINITY) continue;
        const float *x = row_floats(ops, job, sc->buf, a, len);
        for (int32_t i = 0; i < len; i++) {
            sc->tmp[nt] = (ms__cand){x[i], x[i], job->id_base + a + i};
            nt += (x[i] > -INFINITY) & !is_hist(sc, job->n_hist, a + i);
        }
    }
    return nt;
}

void ms__scan_row(const ms__scan_job *job, ms__scan_result *res, void *scratch)
{
    MS_PHASE_START(ph);
    const ms__block_ops *ops = ms__block_ops_get();
    scan_scratch sc;
    scratch_layout(job->K, job->n_hist, job->width, scratch, &sc);
    const int32_t width = job->width, nh = job->n_hist;
    const int32_t nsb = (width + MS_SUB - 1) / MS_SUB;
    for (int32_t h = 0; h < nh; h++) sc.hpos[h] = job->hist[h].id - job->id_base;
    if (nh > 0) { /* pass B (and the rarer paths) ask of a token whether it is in the history */
        memset(sc.hbit, 0, ((size_t)width / 64 + 1) * sizeof *sc.hbit);
        for (int32_t h = 0; h < nh; h++) sc.hbit[sc.hpos[h] / 64] |= 1ull << (sc.hpos[h] % 64);
    }

    /* Pass A and pass C: the maxima of sub-blocks and, when statistics are wanted, the exp sum
     * of the row. Both leave out the history tokens, whose penalised values are handled one by
     * one below: each maximum is a real value of z', so t0 can come from any of them. */
    const bool want_sum = job->want_sum || job->want_sum_t || job->n_raw > 0;
    const float scale_t = job->want_sum_t ? (float)job->inv_t : 1.0f;
    const double inv_t = scale_t == 1.0f ? 1.0 : job->inv_t;
    ms__lse seg = ms__lse_empty();
    float m = -INFINITY;
    /* Chunk by chunk (16-bit inputs are converted a chunk at a time), sub-block by sub-block. */
    int32_t hc = 0; /* the chunk's first history token */
    for (int32_t c0 = 0; c0 < width; c0 += MS_CHUNK) {
        const int32_t c1 = width - c0 < MS_CHUNK ? width : c0 + MS_CHUNK, cn = c1 - c0;
        const float *xc = row_floats(ops, job, sc.buf, c0, cn);
        const int32_t ns = skips_in(&sc, nh, &hc, c0, c1, sc.hrel);
        const float cm = ops->max_sum(xc, cn, sc.hrel, ns, sc.bm + c0 / MS_SUB,
                                      want_sum ? &seg : NULL, inv_t);
        m = cm > m ? cm : m;
        /* the history tokens' logits, read while the chunk is in cache (NaN as -inf) */
        for (int32_t i = 0; i < ns; i++) {
            const float z = xc[sc.hrel[i]];
            sc.hz[hc + i] = z != z ? -INFINITY : z;
        }
        hc += ns;
    }
    if (scale_t == 1.0f) seg.sum_t = seg.sum;
    /* +inf tokens are always counted: they alone carry the mass, and the draw needs how many. */
    if (m == INFINITY) {
        seg = ms__lse_empty();
        for (int32_t j = 0; j < nsb; j++) {
            if (sc.bm[j] != INFINITY) continue;
            const int32_t a = j * MS_SUB, len = width - a < MS_SUB ? width - a : MS_SUB;
            const float *x = row_floats(ops, job, sc.buf, a, len);
            for (int32_t i = 0; i < len; i++)
                seg.ninf += x[i] == INFINITY && !is_hist(&sc, nh, a + i);
        }
    }

    MS_PHASE_END(MS_PH_PASSES, ph);

    /* Pass B: only sub-blocks whose maximum reaches t0 can hold a top-K element. t0 is the
     * K-th largest of the maxima (each one the value of a token outside the history) rounded
     * down to 11 bits of mantissa: still at or below the K-th largest value of the row, and
     * its search counts 12 bits fewer (a sub-block more to read, now and then). */
    int32_t nreal = 0;
    for (int32_t j = 0; j < nsb; j++)
        sc.sel[nreal] = key_floor(sc.bm[j]), nreal += sc.bm[j] > -INFINITY;
    int32_t nt = 0, nl = 0;
    if (nreal < job->K) {
        MS_PHASE_END(MS_PH_T0, ph);
        nt = collect_all(ops, job, &sc, nsb);
    } else {
        const float t0 = ops->kth(sc.sel, nreal, job->K - 1);
        MS_PHASE_END(MS_PH_T0, ph);
        float thr = nextafterf(t0, -INFINITY); /* x > thr  <=>  x >= t0 */
        for (int32_t j = 0; j < nsb; j++) sc.list[nl] = j, nl += sc.bm[j] >= t0;
        nt = collect(ops, job, &sc, sc.list, nl, &thr, 0);
    }
    /* The best K outside the history, in rank order: for them raw == z', so the first n_raw
     * are also the raw top-n so far. A short list (pass B finds a few more than K, as a rule)
     * is ranked whole and cut, which is the sort it needs anyway. */
    ms__cand *cand = res->cand;
    if (nt <= MS_SORT_RANKED) {
        MS_PHASE_END(MS_PH_PASS_B, ph);
        cand_first_rank_to(cand, sc.tmp, nt, job->K);
        nt = nt < job->K ? nt : job->K;
    } else {
        nt = keep_best(ops, sc.sel, sc.tmp, nt, job->K, NULL);
        MS_PHASE_END(MS_PH_PASS_B, ph);
        ms__cand_sort_rank_to(cand, sc.tmp, (size_t)nt);
    }
    res->pen = seg;
    res->raw_lse = seg;
    int32_t nr = nt < job->n_raw ? nt : job->n_raw;
    memcpy(res->raw, cand, (size_t)nr * sizeof *cand);
    MS_PHASE_END(MS_PH_SORT, ph);
    if (nh > 0) {
        /* with K candidates already, a history token below the last of them cannot get in */
        const float low = nt == job->K ? cand[nt - 1].v : -INFINITY;
        /* z' first, without a branch; then the few tokens that enter a list, by a branch that
         * is nearly always not taken */
        penalize_all(job, sc.hz, sc.hzp);
        int32_t nc = 0;
        /* the raw value a history token needs to enter the raw top-n (+inf: no such list) */
        const int32_t nrw = job->n_raw;
        float rlow = nrw == 0 ? INFINITY : nr == nrw ? res->raw[nrw - 1].raw : -INFINITY;
        for (int32_t h = 0; h < nh; h++) {
            if (!(sc.hzp[h] >= low) && !(sc.hz[h] >= rlow)) continue; /* most of them */
            const ms__cand c = {sc.hzp[h], sc.hz[h], job->hist[h].id};
            if (c.v > -INFINITY && c.v >= low) sc.hcand[nc++] = c;
            if (nrw > 0 && c.raw > -INFINITY) {
                raw_top_offer(res->raw, &nr, nrw, &c);
                rlow = nr == nrw ? res->raw[nrw - 1].raw : -INFINITY;
            }
        }
        if (nc > 0) { /* the two lists merged in rank order, the first K kept */
            nc = keep_best(ops, sc.sel, sc.hcand, nc, job->K, NULL);
            ms__cand_sort_rank(sc.hcand, (size_t)nc);
            memcpy(sc.tmp, cand, (size_t)nt * sizeof *cand);
            nt = merge_rank(cand, job->K, sc.tmp, nt, sc.hcand, nc);
        }
        if (want_sum) {
            lse_add_many(ops, &res->pen, sc.hzp, nh, inv_t);
            lse_add_many(ops, &res->raw_lse, sc.hz, nh, inv_t);
        } else {
            for (int32_t h = 0; h < nh; h++) {
                res->pen.ninf += sc.hzp[h] == INFINITY;
                res->raw_lse.ninf += sc.hz[h] == INFINITY;
            }
        }
    }
    MS_PHASE_END(MS_PH_HISTORY, ph);
    MS_PHASE_ROW();
    res->n_cand = nt;
    res->n_rawc = nr;
    res->truncated = nt == job->K && width > job->K;
}
