#include <stdlib.h>

#include "common/ms_rng.h"
#include "kernels/ms_kernels.h"

void ms__lse_add(ms__lse *l, float v, double inv_t)
{
    if (v == INFINITY) {
        l->ninf++;
    } else if (v > -INFINITY) {
        /* at T = 1 both sums are the same number: one exp */
        if (v > l->max) {
            double d = (double)l->max - (double)v, e = exp(d);
            l->sum = l->sum * e + 1.0;
            l->sum_t = l->sum_t * (inv_t == 1.0 ? e : exp(d * inv_t)) + 1.0;
            l->max = v;
        } else {
            double d = (double)v - (double)l->max, e = exp(d);
            l->sum += e;
            l->sum_t += inv_t == 1.0 ? e : exp(d * inv_t);
        }
    }
}

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
#define MS__DEFINE_SORT(name, before)                                                             \
    static void name##_insertion(ms__cand *a, size_t n)                                          \
    {                                                                                             \
        for (size_t i = 1; i < n; i++) {                                                          \
            ms__cand t = a[i];                                                                    \
            size_t j = i;                                                                         \
            while (j > 0 && before(&t, &a[j - 1])) {                                              \
                a[j] = a[j - 1];                                                                  \
                j--;                                                                              \
            }                                                                                     \
            a[j] = t;                                                                             \
        }                                                                                         \
    }                                                                                             \
    /* Partition around the median of three; returns the pivot's final index. */                 \
    static size_t name##_partition(ms__cand *a, size_t n)                                        \
    {                                                                                             \
        size_t mid = n / 2;                                                                       \
        if (before(&a[mid], &a[0])) MS__SWAP(a[mid], a[0]);                                      \
        if (before(&a[n - 1], &a[0])) MS__SWAP(a[n - 1], a[0]);                                  \
        if (before(&a[n - 1], &a[mid])) MS__SWAP(a[n - 1], a[mid]);                              \
        MS__SWAP(a[mid], a[n - 1]);                                                               \
        const ms__cand p = a[n - 1];                                                              \
        size_t w = 0;                                                                             \
        for (size_t i = 0; i + 1 < n; i++)                                                        \
            if (before(&a[i], &p)) {                                                              \
                MS__SWAP(a[i], a[w]);                                                             \
                w++;                                                                              \
            }                                                                                     \
        MS__SWAP(a[w], a[n - 1]);                                                                 \
        return w;                                                                                 \
    }                                                                                             \
    static void name(ms__cand *a, size_t n)                                                       \
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

#define MS__SWAP(x, y)                                                                            \
    do {                                                                                          \
        ms__cand t_ = (x);                                                                        \
        (x) = (y);                                                                                \
        (y) = t_;                                                                                 \
    } while (0)

MS__DEFINE_SORT(sort_rank, ms__cand_before)
MS__DEFINE_SORT(sort_raw, ms__cand_raw_before)

void ms__cand_sort_rank(ms__cand *a, size_t n)
{
    sort_rank(a, n);
}

void ms__cand_sort_raw(ms__cand *a, size_t n)
{
    sort_raw(a, n);
}

#define MS__DEFINE_SELECT(name, sorter)                                                           \
    void name(ms__cand *a, size_t n, size_t k)                                                    \
    {                                                                                             \
        while (n > 24 && k > 0 && k < n) {                                                        \
            size_t p = sorter##_partition(a, n);                                                  \
            if (p == k || p + 1 == k) return;                                                     \
            if (p > k) {                                                                          \
                n = p;                                                                            \
            } else {                                                                              \
                a += p + 1;                                                                       \
                n -= p + 1;                                                                       \
                k -= p + 1;                                                                       \
            }                                                                                     \
        }                                                                                         \
        if (k > 0 && k < n) sorter##_insertion(a, n);                                             \
    }

MS__DEFINE_SELECT(ms__cand_select_rank, sort_rank)
MS__DEFINE_SELECT(ms__cand_select_raw, sort_raw)

/* ---- portable block primitives ---- */

static float max_portable(const float *x, int32_t n)
{
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static double sumexp_portable(const float *x, int32_t n, float m, float scale, const void *pf,
                              size_t pf_bytes)
{
    (void)pf, (void)pf_bytes;
    double s = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float d = (x[i] - m) * scale;
        if (d == d) s += (double)expf(d);
    }
    return s;
}

static int32_t next_above_portable(const float *x, int32_t i, int32_t n, float t)
{
    while (i < n && !(x[i] > t)) i++;
    return i;
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
    .max = max_portable,
    .sumexp = sumexp_portable,
    .next_above = next_above_portable,
    .convert = convert_portable,
    .expv = expv_portable,
    .uniforms = uniforms_portable,
};

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

/* ---- min-heap of candidates; the root is the one ranked last ---- */

static void heap_sift_down(ms__cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ms__cand_before(&h[w], &h[l])) w = l;
        if (r < n && ms__cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        ms__cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void heap_sift_up(ms__cand *h, int32_t i)
{
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (!ms__cand_before(&h[p], &h[i])) return;
        ms__cand t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

typedef struct heap {
    ms__cand *h;
    int32_t n, cap;
} heap;

/* Offer c; returns true when something real was dropped (c itself or an evicted entry). */
static bool heap_offer(heap *hp, ms__cand c)
{
    if (hp->n < hp->cap) {
        hp->h[hp->n] = c;
        heap_sift_up(hp->h, hp->n++);
        return false;
    }
    if (ms__cand_before(&c, &hp->h[0])) {
        hp->h[0] = c;
        heap_sift_down(hp->h, hp->n, 0);
    }
    return true;
}

/* Sub-block length of the first pass: each sub-block's maximum is one real element, so the
 * K-th largest sub-block maximum is a lower bound on the K-th largest value of the row. */
#define MS_SUB 256
/* Chunk of the pipelined passes: 64 KiB of f32, well inside L2 next to its successor. */
#define MS_CHUNK 16384

/* Floats of columns [a, a+n) of the row: in place for f32, converted into buf otherwise. */
static inline const float *row_floats(const ms__block_ops *ops, const ms__scan_job *job, float *buf,
                                      int32_t a, int32_t n)
{
    if (job->dtype == MS_DTYPE_F32) return (const float *)job->row + a;
    ops->convert((const uint16_t *)job->row + a, job->dtype, n, buf);
    return buf;
}

size_t ms__scan_scratch_bytes(int32_t K, int32_t n_raw, int32_t n_hist, int32_t width)
{
    size_t nsb = (size_t)width / MS_SUB + (size_t)n_hist + 2;
    /* tmp holds a small shard's real elements (fewer than K sub-blocks of them) or the
     * candidates plus the history tokens, whichever is more */
    size_t direct = (size_t)K * MS_SUB < (size_t)width ? (size_t)K * MS_SUB : (size_t)width;
    size_t merged = (size_t)K + (size_t)n_raw + (size_t)n_hist + 1;
    return (size_t)MS_BLOCK * sizeof(float) + nsb * (2 * sizeof(float) + 2 * sizeof(int32_t)) +
           (direct > merged ? direct : merged) * sizeof(ms__cand) + 64;
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

void ms__scan_row(const ms__scan_job *job, ms__scan_result *res, void *scratch)
{
    const ms__block_ops *ops = ms__block_ops_get();
    const int32_t nsb_cap = job->width / MS_SUB + job->n_hist + 2;
    float *buf = scratch;
    float *bm = buf + MS_BLOCK;
    float *sel = bm + nsb_cap;
    int32_t *start = (int32_t *)(sel + nsb_cap);
    int32_t *len = start + nsb_cap;
    ms__cand *tmp = (ms__cand *)(((uintptr_t)(len + nsb_cap) + 15) & ~(uintptr_t)15);

    /* Pass A and pass C, chunk by chunk: the maxima of sub-blocks laid over the segments
     * between history tokens (so no sub-block holds a penalised token), then, when statistics
     * are wanted, the exp sum of the chunk while the next chunk is prefetched. */
    const bool want_sum = job->want_sum || job->want_sum_t || job->n_raw > 0;
    const float scale_t = job->want_sum_t ? (float)job->inv_t : 1.0f;
    const double inv_t = scale_t == 1.0f ? 1.0 : job->inv_t;
    const size_t esz = ms__dtype_size(job->dtype);
    ms__lse seg = ms__lse_empty();
    int32_t nsb = 0, nreal = 0;
    float m = -INFINITY;
    int32_t hn = 0; /* next history token at or after the chunk */
    for (int32_t c0 = 0; c0 < job->width; c0 += MS_CHUNK) {
        const int32_t c1 = job->width - c0 < MS_CHUNK ? job->width : c0 + MS_CHUNK;
        const int32_t first = nsb;
        float cm = -INFINITY;
        /* the segments of [c0, c1) between history tokens, cut into sub-blocks */
        for (int32_t a = c0; a < c1;) {
            while (hn < job->n_hist && job->hist[hn].id - job->id_base < a) hn++;
            if (hn < job->n_hist && job->hist[hn].id - job->id_base == a) {
                a++;
                continue;
            }
            int32_t b = hn < job->n_hist ? job->hist[hn].id - job->id_base : c1;
            if (b > c1) b = c1;
            for (; a < b; a += MS_SUB) {
                int32_t n = b - a < MS_SUB ? b - a : MS_SUB;
                float v = ops->max(row_floats(ops, job, buf, a, n), n);
                bm[nsb] = v;
                start[nsb] = a;
                len[nsb] = n;
                if (v > -INFINITY) sel[nreal++] = v;
                nsb++;
                cm = v > cm ? v : cm;
            }
            a = b;
        }
        m = cm > m ? cm : m;
        if (!want_sum || !(cm > -INFINITY) || cm == INFINITY || seg.ninf != 0) continue;
        if (cm > seg.max) { /* rescale what was summed to the new maximum */
            if (seg.max > -INFINITY) {
                double d = (double)seg.max - (double)cm;
                seg.sum *= exp(d);
                seg.sum_t *= exp(d * inv_t);
            }
            seg.max = cm;
        }
        /* the next chunk of this row, or the start of the next row this worker scans */
        const size_t pf_bytes =
            c1 < job->width ? (size_t)(job->width - c1 < MS_CHUNK ? job->width - c1 : MS_CHUNK) * esz
                            : (job->next ? job->next_bytes : 0);
        const char *pf = c1 < job->width ? (const char *)job->row + (size_t)c1 * esz
                                         : (const char *)job->next;
        size_t pf_left = pf_bytes;
        const int32_t cn = c1 - c0;
        for (int32_t j = first; j < nsb;) {
            /* runs of adjacent real sub-blocks, up to MS_BLOCK elements a call */
            if (bm[j] == -INFINITY) {
                j++;
                continue;
            }
            int32_t x0 = start[j], n = len[j];
            j++;
            while (j < nsb && bm[j] > -INFINITY && start[j] == x0 + n && n + len[j] <= MS_BLOCK)
                n += len[j++];
            const float *x = row_floats(ops, job, buf, x0, n);
            /* this call's share of the next chunk, in proportion to its length */
            size_t share = (pf_bytes * (size_t)n + (size_t)cn - 1) / (size_t)cn;
            if (share > pf_left) share = pf_left;
            seg.sum += ops->sumexp(x, n, seg.max, 1.0f, pf, share);
            pf += share;
            pf_left -= share;
            if (scale_t != 1.0f) seg.sum_t += ops->sumexp(x, n, seg.max, scale_t, NULL, 0);
        }
    }
    if (scale_t == 1.0f) seg.sum_t = seg.sum;
    /* +inf tokens are always counted: they alone carry the mass, and the draw needs how many. */
    if (m == INFINITY) {
        seg = ms__lse_empty();
        for (int32_t j = 0; j < nsb; j++) {
            if (bm[j] != INFINITY) continue;
            const float *x = row_floats(ops, job, buf, start[j], len[j]);
            for (int32_t i = 0; i < len[j]; i++) seg.ninf += x[i] == INFINITY;
        }
    }

    /* Pass B: only sub-blocks whose maximum reaches t0 can hold a top-K element. */
    heap hp = {res->cand, 0, job->K};
    if (nreal < job->K) {
        /* Fewer real sub-blocks than K (a small shard): select directly instead of offering
         * every element to the heap. */
        int32_t nt = 0;
        for (int32_t j = 0; j < nsb; j++) {
            if (bm[j] == -INFINITY) continue;
            const float *x = row_floats(ops, job, buf, start[j], len[j]);
            for (int32_t i = 0; i < len[j]; i++)
                if (x[i] > -INFINITY) tmp[nt++] = (ms__cand){x[i], x[i], job->id_base + start[j] + i};
        }
        int32_t keep = nt < job->K ? nt : job->K;
        ms__cand_select_rank(tmp, (size_t)nt, (size_t)keep);
        for (int32_t i = 0; i < keep; i++) {
            hp.h[i] = tmp[i];
            heap_sift_up(hp.h, i);
        }
        hp.n = keep;
        nsb = 0; /* nothing left for the filter below */
    }
    const float t0 = nreal >= job->K ? kth_largest(sel, nreal, job->K - 1) : -INFINITY;
    const float below_t0 = nextafterf(t0, -INFINITY); /* x > below_t0  <=>  x >= t0 */
    for (int32_t j = 0; j < nsb; j++) {
        if (!(bm[j] >= t0) || bm[j] == -INFINITY) continue;
        const float *x = row_floats(ops, job, buf, start[j], len[j]);
        float thr = hp.n < hp.cap ? below_t0 : (hp.h[0].v > below_t0 ? hp.h[0].v : below_t0);
        for (int32_t i = ops->next_above(x, 0, len[j], thr); i < len[j];
             i = ops->next_above(x, i + 1, len[j], thr)) {
            heap_offer(&hp, (ms__cand){x[i], x[i], job->id_base + start[j] + i});
            if (hp.n == hp.cap && hp.h[0].v > thr) thr = hp.h[0].v;
        }
    }

    res->pen = seg;
    res->raw_lse = seg;
    res->n_rawc = 0;
    bool dropped = hp.n == hp.cap && job->width > hp.cap;
    if (job->n_hist > 0) {
        /* Raw top-n: the non-history candidates (raw == z') and the history tokens' raw values. */
        int32_t nt = 0;
        if (job->n_raw > 0) {
            memcpy(tmp, hp.h, (size_t)hp.n * sizeof *tmp);
            nt = hp.n;
        }
        for (int32_t h = 0; h < job->n_hist; h++) {
            const ms__hist_entry *e = &job->hist[h];
            float z = ms__load(job->row, job->dtype, e->id - job->id_base);
            float zp = ms__penalize(z, e, job->sp, job->order);
            if (zp > -INFINITY) dropped |= heap_offer(&hp, (ms__cand){zp, z, e->id});
            if (want_sum) {
                ms__lse_add(&res->pen, zp, inv_t);
                ms__lse_add(&res->raw_lse, z, inv_t);
            } else {
                res->pen.ninf += zp == INFINITY;
                res->raw_lse.ninf += z == INFINITY;
            }
            if (job->n_raw > 0 && z > -INFINITY) tmp[nt++] = (ms__cand){zp, z, e->id};
        }
        if (job->n_raw > 0) {
            /* only the first n_raw matter: select them, then sort those */
            res->n_rawc = nt < job->n_raw ? nt : job->n_raw;
            ms__cand_select_raw(tmp, (size_t)nt, (size_t)res->n_rawc);
            ms__cand_sort_raw(tmp, (size_t)res->n_rawc);
            memcpy(res->raw, tmp, (size_t)res->n_rawc * sizeof *tmp);
        }
    }
    res->n_cand = hp.n;
    res->truncated = dropped;
    ms__cand_sort_rank(res->cand, (size_t)res->n_cand);
    if (job->n_raw > 0 && job->n_hist == 0) {
        res->n_rawc = res->n_cand < job->n_raw ? res->n_cand : job->n_raw;
        memcpy(res->raw, res->cand, (size_t)res->n_rawc * sizeof *res->cand);
    }
}
