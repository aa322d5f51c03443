#include <stdlib.h>

#include "kernels/ms_kernels.h"

void ms__lse_add(ms__lse *l, float v, double inv_t)
{
    if (v == INFINITY) {
        l->ninf++;
    } else if (v > -INFINITY) {
        if (v > l->max) {
            double d = (double)l->max - (double)v;
            l->sum = l->sum * exp(d) + 1.0;
            l->sum_t = l->sum_t * exp(d * inv_t) + 1.0;
            l->max = v;
        } else {
            double d = (double)v - (double)l->max;
            l->sum += exp(d);
            l->sum_t += exp(d * inv_t);
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

int ms__cand_cmp_rank(const void *pa, const void *pb)
{
    const ms__cand *a = pa, *b = pb;
    if (a->v > b->v) return -1;
    if (a->v < b->v) return 1;
    return (a->id > b->id) - (a->id < b->id);
}

int ms__cand_cmp_raw(const void *pa, const void *pb)
{
    const ms__cand *a = pa, *b = pb;
    if (a->raw > b->raw) return -1;
    if (a->raw < b->raw) return 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* ---- portable block primitives ---- */

static float max_portable(const float *x, int32_t n)
{
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static double sumexp_portable(const float *x, int32_t n, float m, float scale)
{
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

static const ms__block_ops portable_ops = {
    .name = "portable",
    .max = max_portable,
    .sumexp = sumexp_portable,
    .next_above = next_above_portable,
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

/* The value a new element must beat when scanning in increasing id order. */
static inline float heap_threshold(const heap *hp)
{
    return hp->n < hp->cap ? -INFINITY : hp->h[0].v;
}

typedef struct scan_state {
    const ms__block_ops *ops;
    heap hp;
    bool dropped;
    ms__lse seg; /* statistics of the scanned (non-history) tokens */
    bool want_sum;
    float scale_t;
    double inv_t;
} scan_state;

static void scan_block(scan_state *s, const float *x, int32_t n, int32_t id0)
{
    const float bmax = s->ops->max(x, n);
    if (bmax == -INFINITY) return; /* nothing real here */
    float thr = heap_threshold(&s->hp);
    if (bmax > thr) {
        for (int32_t i = s->ops->next_above(x, 0, n, thr); i < n;
             i = s->ops->next_above(x, i + 1, n, thr)) {
            ms__cand c = {x[i], x[i], id0 + i};
            s->dropped |= heap_offer(&s->hp, c);
            thr = heap_threshold(&s->hp);
        }
    } else if (s->hp.n == s->hp.cap) {
        s->dropped = true;
    }
    if (!s->want_sum) return;
    if (bmax == INFINITY) {
        for (int32_t i = 0; i < n; i++) s->seg.ninf += x[i] == INFINITY;
        return;
    }
    if (s->seg.ninf) return; /* finite tokens carry no mass once a +inf exists */
    if (bmax > s->seg.max) {
        if (s->seg.max > -INFINITY) {
            double d = (double)s->seg.max - (double)bmax;
            s->seg.sum *= exp(d);
            s->seg.sum_t *= exp(d * s->inv_t);
        }
        s->seg.max = bmax;
    }
    s->seg.sum += s->ops->sumexp(x, n, s->seg.max, 1.0f);
    if (s->scale_t != 1.0f) s->seg.sum_t += s->ops->sumexp(x, n, s->seg.max, s->scale_t);
}

static void convert_block(const void *row, ms_dtype t, int32_t a, int32_t n, float *dst)
{
    if (t == MS_DTYPE_BF16) {
        const uint16_t *r = (const uint16_t *)row + a;
        for (int32_t i = 0; i < n; i++) dst[i] = ms__bf16_to_f32(r[i]);
    } else {
        const uint16_t *r = (const uint16_t *)row + a;
        for (int32_t i = 0; i < n; i++) dst[i] = ms__f16_to_f32(r[i]);
    }
}

static void scan_range(scan_state *s, const ms__scan_job *job, float *buf, int32_t a, int32_t b)
{
    while (a < b) {
        int32_t n = b - a < MS_BLOCK ? b - a : MS_BLOCK;
        const float *x;
        if (job->dtype == MS_DTYPE_F32) {
            x = (const float *)job->row + a;
        } else {
            convert_block(job->row, job->dtype, a, n, buf);
            x = buf;
        }
        scan_block(s, x, n, job->id_base + a);
        a += n;
    }
}

size_t ms__scan_scratch_bytes(int32_t K, int32_t n_raw, int32_t n_hist)
{
    return (size_t)MS_BLOCK * sizeof(float) +
           ((size_t)K + (size_t)n_raw + (size_t)n_hist + 1) * sizeof(ms__cand);
}

void ms__scan_row(const ms__scan_job *job, ms__scan_result *res, void *scratch)
{
    float *buf = scratch;
    ms__cand *tmp = (ms__cand *)(buf + MS_BLOCK);
    scan_state s = {
        .ops = ms__block_ops_get(),
        .hp = {res->cand, 0, job->K},
        .dropped = false,
        .seg = ms__lse_empty(),
        .want_sum = job->want_sum || job->want_sum_t || job->n_raw > 0,
        .scale_t = job->want_sum_t ? (float)job->inv_t : 1.0f,
        .inv_t = job->want_sum_t ? job->inv_t : 1.0,
    };
    if (s.scale_t == 1.0f) s.inv_t = 1.0;

    /* Scan the segments between history tokens, in increasing id order. */
    int32_t a = 0;
    for (int32_t h = 0; h < job->n_hist; h++) {
        int32_t col = job->hist[h].id - job->id_base;
        scan_range(&s, job, buf, a, col);
        a = col + 1;
    }
    scan_range(&s, job, buf, a, job->width);
    if (s.scale_t == 1.0f) s.seg.sum_t = s.seg.sum;

    res->pen = s.seg;
    res->raw_lse = s.seg;
    res->n_rawc = 0;
    if (job->n_hist > 0) {
        /* Raw top-n: the non-history candidates (raw == z') and the history tokens' raw values. */
        int32_t nt = 0;
        if (job->n_raw > 0) {
            memcpy(tmp, s.hp.h, (size_t)s.hp.n * sizeof *tmp);
            nt = s.hp.n;
        }
        for (int32_t h = 0; h < job->n_hist; h++) {
            const ms__hist_entry *e = &job->hist[h];
            float z = ms__load(job->row, job->dtype, e->id - job->id_base);
            float zp = ms__penalize(z, e, job->sp, job->order);
            if (zp > -INFINITY) s.dropped |= heap_offer(&s.hp, (ms__cand){zp, z, e->id});
            if (s.want_sum) {
                ms__lse_add(&res->pen, zp, s.inv_t);
                ms__lse_add(&res->raw_lse, z, s.inv_t);
            }
            if (job->n_raw > 0 && z > -INFINITY) tmp[nt++] = (ms__cand){zp, z, e->id};
        }
        if (job->n_raw > 0) {
            qsort(tmp, (size_t)nt, sizeof *tmp, ms__cand_cmp_raw);
            res->n_rawc = nt < job->n_raw ? nt : job->n_raw;
            memcpy(res->raw, tmp, (size_t)res->n_rawc * sizeof *tmp);
        }
    }
    res->n_cand = s.hp.n;
    res->truncated = s.dropped;
    qsort(res->cand, (size_t)res->n_cand, sizeof *res->cand, ms__cand_cmp_rank);
    if (job->n_raw > 0 && job->n_hist == 0) {
        res->n_rawc = res->n_cand < job->n_raw ? res->n_cand : job->n_raw;
        memcpy(res->raw, res->cand, (size_t)res->n_rawc * sizeof *res->cand);
    }
}
