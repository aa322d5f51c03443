/* One sampling step: per-shard stage -> gather -> final stage (DESIGN 3), plus the exact-mode
 * fallback round for users whose survivors may extend past the gathered candidates. */
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/ms_rng.h"
#include "core/ms_generator_impl.h"

/* Fallback histogram: 64 bins per unit of w below the maximum, over 64 units; tokens further
 * down carry a relative mass below e^-64 each and share the last bin. */
#define FB_BINS 4096
#define FB_BINS_PER_UNIT 64.0

static inline int fb_bin(double d)
{
    return d * FB_BINS_PER_UNIT >= FB_BINS - 1 ? FB_BINS - 1 : (int)(d * FB_BINS_PER_UNIT);
}

size_t ms__user_out_size(void);

typedef struct user_out {
    int32_t token;
    bool bad;
    double logprob;
    int32_t rank;
    int32_t n_top;
    int32_t *top_ids;
    float *top_lp;
} user_out;

size_t ms__user_out_size(void)
{
    return sizeof(user_out);
}

static ms_status check_logits(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                              const ms_step_output *out)
{
    MS_RETURN_ERROR_IF(!out || !out->tokens, g->err, MS_ERR_INVALID_ARGUMENT,
                       "sample: out and out->tokens must not be NULL");
    MS_RETURN_ERROR_IF(!logits, g->err, MS_ERR_INVALID_ARGUMENT, "sample: logits is NULL");
    const int32_t want = g->cfg.backend == MS_BACKEND_MPI ? 1 : g->D;
    MS_RETURN_ERROR_IF(n_logits != want, g->err, MS_ERR_INVALID_ARGUMENT,
                       "sample: n_logits is %d but this %dx%d mesh needs %d logits buffers",
                       (int)n_logits, (int)g->R, (int)g->C, (int)want);
    for (int32_t d = 0; d < n_logits; d++) {
        const ms_logits *l = &logits[d];
        MS_RETURN_ERROR_IF(!l->data, g->err, MS_ERR_INVALID_ARGUMENT,
                           "sample: logits[%d].data is NULL", (int)d);
        MS_RETURN_ERROR_IF(l->dtype != MS_DTYPE_F32 && l->dtype != MS_DTYPE_BF16 &&
                               l->dtype != MS_DTYPE_F16,
                           g->err, MS_ERR_INVALID_ARGUMENT, "sample: logits[%d].dtype %d unknown",
                           (int)d, (int)l->dtype);
        MS_RETURN_ERROR_IF(l->row_stride != 0 && l->row_stride < g->W, g->err,
                           MS_ERR_INVALID_ARGUMENT,
                           "sample: logits[%d].row_stride %lld is less than the shard width %d",
                           (int)d, (long long)l->row_stride, (int)g->W);
    }
    return MS_OK;
}

static inline const void *row_ptr(const ms_logits *l, int32_t row, int32_t W)
{
    int64_t stride = l->row_stride ? l->row_stride : W;
    return (const char *)l->data + (size_t)row * (size_t)stride * ms__dtype_size(l->dtype);
}

/* Real tokens in shard s: columns past vocab_size are padding. */
static inline int32_t shard_valid_width(const ms_generator *g, int32_t s)
{
    int64_t w = (int64_t)g->V - (int64_t)s * g->W;
    return w <= 0 ? 0 : (w > g->W ? g->W : (int32_t)w);
}

static void shard_stage(ms_generator *g, const ms_logits *logits, int32_t u, int32_t s,
                        ms__worker *wk)
{
    const ms__user_plan *pl = &g->plan[u];
    const ms_slot_params *sp = &g->params[u];
    const int32_t grp = u / g->B;
    const int32_t dev = g->cfg.backend == MS_BACKEND_MPI ? 0 : ms__device_of(g, grp, s);
    const ms_logits *l = &logits[dev];
    ms__scan_result *r = &g->res[(size_t)u * g->T + s];
    r->cand = g->cand + ((size_t)u * g->T + s) * g->kcap;
    r->raw = g->rawc + ((size_t)u * g->T + s) * (g->rawcap ? g->rawcap : 1);
    const int32_t width = shard_valid_width(g, s);
    int32_t h0 = 0, hn = 0;
    if (pl->penalties)
        ms__history_range(&g->hist[u], s * g->W, s * g->W + width, &h0, &hn);
    ms__scan_job job = {
        .row = row_ptr(l, u % g->B, g->W),
        .dtype = l->dtype,
        .width = width,
        .id_base = s * g->W,
        .K = pl->K,
        .hist = hn ? g->hist[u].e + h0 : NULL,
        .n_hist = hn,
        .sp = sp,
        .order = g->cfg.penalty_order,
        .want_sum = pl->want_sum,
        .want_sum_t = pl->want_sum_t,
        .inv_t = 1.0 / (double)sp->temperature,
        .n_raw = pl->n_raw,
    };
    if (width == 0) {
        r->n_cand = 0;
        r->n_rawc = 0;
        r->truncated = false;
        r->pen = r->raw_lse = ms__lse_empty();
        return;
    }
    ms__scan_row(&job, r, wk->scan);
}

/* K-way merge of the shards' sorted lists (a binary heap of list heads, ordered by the sift's
 * before()): O(n log T), where sorting the concatenation would cost O(n log n). */
#define MS__DEFINE_MERGE(name)                                                           \
    static int32_t name(const ms__scan_result *rs, int32_t T, bool raw, int32_t limit,          \
                        ms__cand *out)                                                            \
    {                                                                                             \
        int32_t heads[256], pos[256], nh = 0, n = 0;                                              \
        const int32_t tmax = T < 256 ? T : 256;                                                   \
        for (int32_t s = 0; s < tmax; s++) {                                                      \
            pos[s] = 0;                                                                           \
            if ((raw ? rs[s].n_rawc : rs[s].n_cand) > 0) heads[nh++] = s;                         \
        }                                                                                         \
        const ms__cand *lists[256];                                                               \
        int32_t lens[256];                                                                        \
        for (int32_t s = 0; s < tmax; s++) {                                                      \
            lists[s] = raw ? rs[s].raw : rs[s].cand;                                              \
            lens[s] = raw ? rs[s].n_rawc : rs[s].n_cand;                                          \
        }                                                                                         \
        /* heapify: the head that comes first on top */                                          \
        for (int32_t i = nh / 2 - 1; i >= 0; i--) name##_sift(heads, nh, i, lists, pos);          \
        while (nh > 0 && n < limit) {                                                             \
            const int32_t s = heads[0];                                                           \
            out[n++] = lists[s][pos[s]++];                                                        \
            if (pos[s] == lens[s]) heads[0] = heads[--nh];                                        \
            name##_sift(heads, nh, 0, lists, pos);                                                \
        }                                                                                         \
        return n;                                                                                 \
    }

#define MS__DEFINE_SIFT(name, before)                                                            \
    static void name##_sift(int32_t *h, int32_t nh, int32_t i, const ms__cand *const *lists,    \
                            const int32_t *pos)                                                   \
    {                                                                                             \
        for (;;) {                                                                                \
            int32_t l = 2 * i + 1, r = l + 1, w = i;                                              \
            if (l < nh && before(&lists[h[l]][pos[h[l]]], &lists[h[w]][pos[h[w]]])) w = l;         \
            if (r < nh && before(&lists[h[r]][pos[h[r]]], &lists[h[w]][pos[h[w]]])) w = r;         \
            if (w == i) return;                                                                   \
            int32_t t = h[i];                                                                     \
            h[i] = h[w];                                                                          \
            h[w] = t;                                                                             \
            i = w;                                                                                \
        }                                                                                         \
    }

MS__DEFINE_SIFT(merge_rank, ms__cand_before)
MS__DEFINE_MERGE(merge_rank)
MS__DEFINE_SIFT(merge_rawo, ms__cand_raw_before)
MS__DEFINE_MERGE(merge_rawo)

/* Merge the shards' lists for user u into wk->merge; returns the count and the safe prefix
 * length (the merged order is exact up to there). When survivors (top-k, or greedy) and the
 * top-N all lie in the first K, the merge stops there; K clamped to the shard width can be
 * less than them, and then it goes on. */
static int32_t merge_candidates(const ms_generator *g, int32_t u, ms__worker *wk,
                                int32_t *safe, bool *complete)
{
    const ms__scan_result *rs = &g->res[(size_t)u * g->T];
    const ms__user_plan *pl = &g->plan[u];
    const int32_t k = g->params[u].top_k;
    const bool bounded = (pl->greedy || (k > 0 && k <= pl->K)) && pl->n_top <= pl->K;
    const int32_t limit = bounded ? pl->K : INT32_MAX;
    int32_t n;
    if (g->T <= 256) {
        n = merge_rank(rs, g->T, false, limit, wk->merge);
    } else {
        n = 0;
        for (int32_t s = 0; s < g->T; s++) {
            memcpy(wk->merge + n, rs[s].cand, (size_t)rs[s].n_cand * sizeof(ms__cand));
            n += rs[s].n_cand;
        }
        ms__cand_sort_rank(wk->merge, (size_t)n);
    }
    *safe = n;
    *complete = true;
    for (int32_t s = 0; s < g->T; s++) {
        if (!rs[s].truncated || rs[s].n_cand == 0) continue;
        *complete = false;
        const ms__cand *last = &rs[s].cand[rs[s].n_cand - 1];
        /* Position of this shard's last candidate: anything it did not send ranks after it. */
        int32_t lo = 0, hi = n;
        while (lo < hi) {
            int32_t mid = lo + (hi - lo) / 2;
            if (ms__cand_before(&wk->merge[mid], last)) lo = mid + 1;
            else hi = mid;
        }
        if (lo + 1 < *safe) *safe = lo + 1;
    }
    return n;
}

static int32_t merge_raw(const ms_generator *g, int32_t u, ms__worker *wk)
{
    const ms__scan_result *rs = &g->res[(size_t)u * g->T];
    if (g->T <= 256) return merge_rawo(rs, g->T, true, g->plan[u].n_raw, wk->merge_raw);
    int32_t n = 0;
    for (int32_t s = 0; s < g->T; s++) {
        memcpy(wk->merge_raw + n, rs[s].raw, (size_t)rs[s].n_rawc * sizeof(ms__cand));
        n += rs[s].n_rawc;
    }
    ms__cand_sort_raw(wk->merge_raw, (size_t)n);
    return n;
}

typedef struct user_stats {
    ms__lse pen, raw;
} user_stats;

static user_stats combine_stats(const ms_generator *g, int32_t u, double inv_t)
{
    user_stats st = {ms__lse_empty(), ms__lse_empty()};
    const ms__scan_result *rs = &g->res[(size_t)u * g->T];
    for (int32_t s = 0; s < g->T; s++) {
        ms__lse_merge(&st.pen, &rs[s].pen, inv_t);
        ms__lse_merge(&st.raw, &rs[s].raw_lse, inv_t);
    }
    return st;
}

/* The key and counter slot u draws with at this step. */
static void draw_stream(const ms_generator *g, int32_t u, uint64_t off, uint64_t *seed,
                        uint64_t *n)
{
    int32_t src = g->replicate_slot >= 0 ? g->replicate_slot : u;
    *seed = (uint64_t)g->seed[src];
    *n = g->counter[src] + off;
}

/* Log-prob of a value given a log-sum-exp and its +inf count. */
static double logprob_of(float v, const ms__lse *l)
{
    if (l->ninf > 0) return v == INFINITY ? -log((double)l->ninf) : -INFINITY;
    return (double)v - ms__lse_value(l);
}

/* Survivors among the first n merged candidates (DESIGN 2.3) when they all lie inside the safe
 * prefix; returns -1 when the survivor set may extend past the gathered candidates and no
 * decision is possible from them. */
static int32_t survivors_in_candidates(const ms_slot_params *sp, const ms__cand *m, int32_t n,
                                       int32_t safe, bool complete, const user_stats *st)
{
    const double T = sp->temperature;
    const double wmax = (double)m[0].v / T;
    /* min-p on w: keep w - wmax >= log(min_p). */
    (void)n;
    int32_t c = safe;
    if (sp->min_p > 0.0f) {
        const double lw = log((double)sp->min_p);
        c = 0;
        while (c < safe && (double)m[c].v / T - wmax >= lw) c++;
    }
    /* All safe candidates survive min-p and some shard kept more: survivors may go on. */
    bool beyond = !complete && c == safe;
    int32_t nk;
    if (sp->top_k > 0 && (!beyond || sp->top_k <= c)) {
        nk = sp->top_k < c ? sp->top_k : c;
        beyond = false;
    } else if (!beyond) {
        nk = c;
    } else {
        nk = -1; /* unknown length, starting with the first c */
    }
    if (sp->top_p >= 1.0f) return beyond ? -1 : nk;
    const double p = sp->top_p;
    if (!beyond) { /* the first terms kept for the running sum: the same values, once */
        enum { KEPT = 256 };
        double e[KEPT];
        double z = 0.0;
        for (int32_t i = 0; i < nk; i++) {
            const double x = exp((double)m[i].v / T - wmax);
            if (i < KEPT) e[i] = x;
            z += x;
        }
        double cum = 0.0;
        int32_t i = 0;
        for (; i < nk; i++) {
            if (i > 0 && cum >= p * z) break;
            cum += i < KEPT ? e[i] : exp((double)m[i].v / T - wmax);
        }
        return i;
    }
    if (sp->min_p > 0.0f) return -1; /* normaliser over min-p survivors unknown */
    /* k unlimited: normalise by the full-vocabulary sum at temperature T. */
    const double z = st->pen.sum_t * exp(((double)st->pen.max - (double)m[0].v) / T);
    double cum = 0.0;
    for (int32_t i = 0; i < safe; i++) {
        if (i > 0 && cum >= p * z) return i;
        cum += exp((double)m[i].v / T - wmax);
    }
    return -1;
}

static void write_top(user_out *o, int32_t cap, const ms__cand *list, int32_t n, bool raw,
                      double lse, const ms__lse *l)
{
    int32_t w = 0;
    for (int32_t i = 0; i < n && w < cap; i++) {
        float v = raw ? list[i].raw : list[i].v;
        double lp = l ? logprob_of(v, l) : (double)v - lse;
        if (!(lp > -INFINITY)) continue;
        o->top_ids[w] = list[i].id;
        o->top_lp[w] = (float)lp;
        w++;
    }
    o->n_top = w;
}

/* Top-N of the mode's order. For PROCESSED the list is S in rank order: ns survivors when
 * known (ns < 0: the fallback knows S, so the first candidates are stashed with their w and
 * fallback_finish turns them into log-probs). */
static void write_tops(const ms_generator *g, int32_t u, ms__worker *wk, user_out *o,
                       const ms__cand *m, int32_t n, int32_t ns, bool inf_mode,
                       const user_stats *st)
{
    const ms__user_plan *pl = &g->plan[u];
    const int32_t cap = pl->n_top;
    o->n_top = 0;
    if (cap == 0) return;
    const double T = g->params[u].temperature;
    switch (g->cfg.logprobs_mode) {
    case MS_LOGPROBS_RAW:
        if (pl->n_raw > 0) {
            int32_t nr = merge_raw(g, u, wk);
            write_top(o, cap, wk->merge_raw, nr, true, 0.0, &st->raw);
        } else {
            write_top(o, cap, m, n, true, 0.0, &st->raw);
        }
        break;
    case MS_LOGPROBS_PENALIZED: write_top(o, cap, m, n, false, 0.0, &st->pen); break;
    case MS_LOGPROBS_PROCESSED: {
        const bool flat = inf_mode || pl->greedy;
        int32_t lim = ns < 0 ? n : ns;
        const double wmax = flat ? 0.0 : (double)m[0].v / T;
        double z = 0.0;
        if (ns >= 0)
            for (int32_t i = 0; i < ns; i++) z += flat ? 1.0 : exp((double)m[i].v / T - wmax);
        const double lse = ns >= 0 ? wmax + log(z) : 0.0;
        int32_t w = 0;
        for (int32_t i = 0; i < lim && w < cap; i++, w++) {
            o->top_ids[w] = m[i].id;
            o->top_lp[w] = (float)((flat ? 0.0 : (double)m[i].v / T) - lse);
        }
        o->n_top = w;
        break;
    }
    }
}

/* Index of the Gumbel-max winner among A[0..n): max of w + g(seed, ctr, id), ties to the lower
 * id, with w = v / T (0 for +inf tokens). Noise comes 16 tokens at a time, and the two logs are
 * skipped for a token that provably cannot reach the best score bs so far: it would need
 * E = -log(u) <= exp(w - bs) <= exp(wmax - bs) = c, while E >= 1 - u; so 1 - u > c rules it out
 * (c carries a 1e-9 margin for the rounding of exp). */
static size_t gumbel_argmax(const ms__cand *A, size_t n, double T, bool inf_mode, double wmax,
                            uint64_t seed, uint64_t ctr)
{
    const ms__block_ops *ops = ms__block_ops_get();
    int32_t ids[256];
    double u[256];
    size_t best = 0;
    double bs = -INFINITY, c = INFINITY;
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const int32_t m = n - i0 < 256 ? (int32_t)(n - i0) : 256;
        for (int32_t j = 0; j < m; j++) ids[j] = A[i0 + (size_t)j].id;
        ops->uniforms(seed, ctr, ids, m, u);
        for (int32_t j = 0; j < m; j++) {
            if (1.0 - u[j] > c) continue;
            const size_t i = i0 + (size_t)j;
            const double w = inf_mode ? 0.0 : (double)A[i].v / T;
            const double sc = w + -log(-log(u[j]));
            if (sc > bs || (sc == bs && A[i].id < A[best].id)) {
                bs = sc;
                best = i;
                c = exp(wmax - bs) * (1.0 + 1e-9);
            }
        }
    }
    return best;
}

/* Final stage for one user from the gathered candidates. Returns true when it needs the
 * fallback round (fb->thr_v set). */
static bool final_stage(ms_generator *g, int32_t u, uint64_t off, ms__worker *wk, user_out *o,
                        ms__fallback *fb)
{
    const ms_slot_params *sp = &g->params[u];
    const ms__user_plan *pl = &g->plan[u];
    const double T = sp->temperature;
    int32_t safe;
    bool complete;
    const int32_t n = merge_candidates(g, u, wk, &safe, &complete);
    const ms__cand *m = wk->merge;
    o->n_top = 0;
    o->rank = 0;
    o->logprob = NAN;
    if (n == 0) {
        o->token = -1;
        o->bad = true;
        return false;
    }
    o->bad = false;
    const user_stats st = combine_stats(g, u, 1.0 / T);
    uint64_t seed, ctr;
    draw_stream(g, u, off, &seed, &ctr);

    int32_t ns, best = 0;
    bool inf_mode = false;
    if (pl->greedy) {
        ns = 1;
    } else if (m[0].v == INFINITY) {
        /* +inf logits share the mass equally: draw on the noise alone among them. */
        inf_mode = true;
        int32_t ninf_c = 0;
        while (ninf_c < n && m[ninf_c].v == INFINITY) ninf_c++;
        int64_t total = st.pen.ninf;
        int64_t want = sp->top_k > 0 && sp->top_k < total ? sp->top_k : total;
        if (want > ninf_c || want > safe) {
            fb->thr_v = INFINITY;
            if (pl->logprobs) write_tops(g, u, wk, o, m, n, -1, true, &st);
            return true;
        }
        ns = (int32_t)want;
        best = (int32_t)gumbel_argmax(m, (size_t)ns, T, true, 0.0, seed, ctr);
    } else {
        ns = survivors_in_candidates(sp, m, n, safe, complete, &st);
        if (ns < 0) {
            fb->thr_v = -INFINITY;
            if (sp->min_p > 0.0f) {
                /* Conservative: a little below M + T*log(min_p), the exact test is redone per
                 * token in w space. */
                double t = (double)m[0].v + T * log((double)sp->min_p);
                fb->thr_v = (float)(t - 1e-4 * (fabs(t) + 1.0));
            }
            if (pl->logprobs) write_tops(g, u, wk, o, m, n, -1, false, &st);
            return true;
        }
        /* m is in rank order: its first holds the largest w */
        best = (int32_t)gumbel_argmax(m, (size_t)ns, T, false, (double)m[0].v / T, seed, ctr);
    }
    o->token = m[best].id;
    if (!pl->logprobs) return false;
    o->rank = best + 1;
    switch (g->cfg.logprobs_mode) {
    case MS_LOGPROBS_RAW: o->logprob = logprob_of(m[best].raw, &st.raw); break;
    case MS_LOGPROBS_PENALIZED: o->logprob = logprob_of(m[best].v, &st.pen); break;
    case MS_LOGPROBS_PROCESSED: {
        /* every survivor has the same w when greedy (one token) or +inf (w read as 0) */
        const bool flat = inf_mode || pl->greedy;
        const double wmax = flat ? 0.0 : (double)m[0].v / T;
        double z = 0.0;
        for (int32_t i = 0; i < ns; i++) z += flat ? 1.0 : exp((double)m[i].v / T - wmax);
        const double lse = wmax + log(z);
        o->logprob = (flat ? 0.0 : (double)m[best].v / T) - lse;
        break;
    }
    }
    write_tops(g, u, wk, o, m, n, ns, inf_mode, &st);
    return false;
}

/* The fallback round, per shard: every real token of user u with z' >= thr_v. */
static ms_status collect_survivors(ms_generator *g, const ms_logits *logits, int32_t u,
                                   float thr_v, int32_t s_begin, int32_t s_end, ms__worker *wk,
                                   size_t *count)
{
    size_t n = 0;
    const ms_slot_params *sp = &g->params[u];
    const ms__user_plan *pl = &g->plan[u];
    for (int32_t s = s_begin; s < s_end; s++) {
        const int32_t grp = u / g->B;
        const int32_t dev = g->cfg.backend == MS_BACKEND_MPI ? 0 : ms__device_of(g, grp, s);
        const ms_logits *l = &logits[dev];
        const void *row = row_ptr(l, u % g->B, g->W);
        const int32_t width = shard_valid_width(g, s);
        int32_t h0 = 0, hn = 0;
        if (pl->penalties) ms__history_range(&g->hist[u], s * g->W, s * g->W + width, &h0, &hn);
        const ms__hist_entry *h = hn ? g->hist[u].e + h0 : NULL;
        int32_t hi = 0;
        for (int32_t c = 0; c < width; c++) {
            const int32_t id = s * g->W + c;
            float z = ms__load(row, l->dtype, c);
            float v = z;
            if (hi < hn && h[hi].id == id) v = ms__penalize(z, &h[hi++], sp, g->cfg.penalty_order);
            if (!(v > -INFINITY) || v < thr_v) continue;
            if (n == wk->fb_cap) {
                size_t cap = wk->fb_cap ? wk->fb_cap * 2 : 4096;
                ms__cand *p = realloc(wk->fb, cap * sizeof *p);
                if (!p) return MS_ERR_NO_MEMORY;
                wk->fb = p;
                wk->fb_cap = cap;
            }
            wk->fb[n++] = (ms__cand){v, z, id};
        }
    }
    *count = n;
    return MS_OK;
}

/* Finish user u on the full survivor set A (unsorted). */
static ms_status fallback_finish(ms_generator *g, int32_t u, uint64_t off, ms__cand *A, size_t na,
                                 bool inf_mode, ms__worker *wk, user_out *o)
{
    const ms_slot_params *sp = &g->params[u];
    const ms__user_plan *pl = &g->plan[u];
    const double T = sp->temperature;
    uint64_t seed, ctr;
    draw_stream(g, u, off, &seed, &ctr);
    o->bad = false;
    o->rank = 0;
    o->logprob = NAN;
    if (na == 0) { /* cannot happen: the candidates held at least one real token */
        o->token = -1;
        o->bad = true;
        return MS_OK;
    }
    float vmax = -INFINITY;
    for (size_t i = 0; i < na; i++) vmax = A[i].v > vmax ? A[i].v : vmax;
    const double wmax = inf_mode ? 0.0 : (double)vmax / T; /* the +inf tokens read as w = 0 */
    /* Exact min-p in w space. */
    size_t ns = na;
    if (!inf_mode && sp->min_p > 0.0f) {
        const double lw = log((double)sp->min_p);
        ns = 0;
        for (size_t i = 0; i < na; i++)
            if ((double)A[i].v / T - wmax >= lw) A[ns++] = A[i];
    }
    /* S in A[0..ns); the top-p cut, without sorting the set: bin by w, sort the boundary bin. */
    double zs = (double)ns; /* mass of S relative to wmax (all +inf tokens weigh 1) */
    bool zs_known = inf_mode;
    if (!inf_mode && sp->top_p < 1.0f) {
        if (ns > wk->fb_xcap) {
            float *x = realloc(wk->fb_x, ns * sizeof *x);
            if (x) wk->fb_x = x;
            uint16_t *bb = realloc(wk->fb_bin, ns * sizeof *bb);
            if (bb) wk->fb_bin = bb;
            if (!x || !bb) return MS_ERR_NO_MEMORY;
            wk->fb_xcap = ns;
        }
        float *mass = wk->fb_x;
        uint16_t *bin = wk->fb_bin;
        for (size_t i = 0; i < ns; i++) {
            const double d = wmax - (double)A[i].v / T;
            bin[i] = (uint16_t)fb_bin(d);
            mass[i] = (float)-d;
        }
        /* Masses by the vector exp (relative error ~1e-7): the same survivors in the same order
         * on every mesh give the same bits. */
        for (size_t i = 0; i < ns; i += 1u << 20) {
            size_t m = ns - i < (1u << 20) ? ns - i : (1u << 20);
            ms__block_ops_get()->expv(mass + i, (int32_t)m, mass + i);
        }
        double hist[FB_BINS];
        memset(hist, 0, sizeof hist);
        double z = 0.0;
        for (size_t i = 0; i < ns; i++) {
            hist[bin[i]] += mass[i];
            z += mass[i];
        }
        const double target = (double)sp->top_p * z;
        double cum = 0.0;
        int bstar = FB_BINS;
        for (int b = 0; b < FB_BINS; b++) {
            if (cum + hist[b] >= target) {
                bstar = b;
                break;
            }
            cum += hist[b];
        }
        if (bstar < FB_BINS) {
            /* Partition: bins before b* first, then the boundary bin sorted by rank. */
            size_t w = 0;
            for (size_t i = 0; i < ns; i++) {
                if (bin[i] < bstar) {
                    ms__cand t = A[w];
                    A[w] = A[i];
                    A[i] = t;
                    uint16_t tb = bin[w];
                    bin[w] = bin[i];
                    bin[i] = tb;
                    w++;
                }
            }
            size_t nb = 0;
            for (size_t i = w; i < ns; i++) {
                if (bin[i] == bstar) {
                    ms__cand t = A[w + nb];
                    A[w + nb] = A[i];
                    A[i] = t;
                    nb++;
                }
            }
            ms__cand_sort_rank(A + w, nb);
            size_t keep = 0;
            /* keep while the mass ranked strictly before is < p (at least one token) */
            while (keep < nb && (w + keep == 0 || cum < target)) {
                cum += exp((double)A[w + keep].v / T - wmax);
                keep++;
            }
            ns = w + keep;
            zs = cum;
        } else {
            zs = z;
        }
        zs_known = true;
    } else if (inf_mode && sp->top_k > 0 && (size_t)sp->top_k < ns) {
        /* +inf tokens: the first k by id */
        ms__cand_sort_rank(A, ns);
        ns = (size_t)sp->top_k;
        zs = (double)ns;
    }
    const size_t best = gumbel_argmax(A, ns, T, inf_mode, wmax, seed, ctr);
    o->token = A[best].id;
    if (!pl->logprobs) return MS_OK;
    int32_t rank = 1;
    for (size_t i = 0; i < na; i++) rank += ms__cand_before(&A[i], &A[best]);
    o->rank = rank;
    const user_stats st = combine_stats(g, u, 1.0 / T);
    switch (g->cfg.logprobs_mode) {
    case MS_LOGPROBS_RAW: o->logprob = logprob_of(A[best].raw, &st.raw); break;
    case MS_LOGPROBS_PENALIZED: o->logprob = logprob_of(A[best].v, &st.pen); break;
    case MS_LOGPROBS_PROCESSED: {
        if (!zs_known) {
            zs = 0.0;
            for (size_t i = 0; i < ns; i++) zs += exp((double)A[i].v / T - wmax);
        }
        const double lse = wmax + log(zs);
        o->logprob = (inf_mode ? 0.0 : (double)A[best].v / T) - lse;
        /* the stashed first candidates hold w; S is a prefix of rank order */
        if ((size_t)o->n_top > ns) o->n_top = (int32_t)ns;
        for (int32_t i = 0; i < o->n_top; i++) o->top_lp[i] = (float)((double)o->top_lp[i] - lse);
        break;
    }
    }
    return MS_OK;
}

/* ---- worker pinning (TT's sub_core_grids) ---- */

static _Thread_local const ms_generator *pinned_for;

/* Pin the calling OpenMP worker to its CPU once per generator (threads of the pool are reused). */
static void pin_worker(const ms_generator *g)
{
    if (!g->ncpus) return;
    const int t = omp_get_thread_num();
    if (t == 0 || pinned_for == g) return; /* worker 0 is the caller: pinned per step */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(g->cpus[t % g->ncpus], &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    pinned_for = g;
}

/* ---- exchange of the per-shard records (one packed all-gather per step) ---- */

typedef struct rec_hdr {
    int32_t n_cand, n_rawc, truncated, pad;
    ms__lse pen, raw;
} rec_hdr;

/* Force-argmax fast path: when every user is greedy without log-probs, a record is the local
 * (max, id) alone. */
static size_t rec_bytes(const ms_generator *g)
{
    if (g->force_argmax) return sizeof(ms__cand);
    return sizeof(rec_hdr) + (size_t)(g->kcap + (g->rawcap ? g->rawcap : 0)) * sizeof(ms__cand);
}

static ms_status grow(void **p, size_t *cap, size_t need)
{
    if (need <= *cap) return MS_OK;
    void *q = realloc(*p, need);
    if (!q) return MS_ERR_NO_MEMORY;
    *p = q;
    *cap = need;
    return MS_OK;
}

/* Gather buffers honour the placement asked for (TT's DECODE_SAMPLING_INPUT_MEMCFG). */
static ms_status grow_gather(const ms_generator *g, void **p, size_t *cap, size_t need)
{
    if (need <= *cap) return MS_OK;
    if (g->cfg.mesh.buffer_placement != MS_BUFFERS_HUGEPAGE) return grow(p, cap, need);
    const size_t huge = (size_t)2 << 20;
    size_t bytes = (need + huge - 1) / huge * huge;
    void *q = NULL;
    if (posix_memalign(&q, huge, bytes) != 0) return MS_ERR_NO_MEMORY;
    madvise(q, bytes, MADV_HUGEPAGE); /* advice only: without THP the pages stay small */
    free(*p);
    *p = q;
    *cap = bytes;
    return MS_OK;
}

static ms_status transport_error(ms_generator *g, ms_status st, const char *what)
{
    if (g->comm.err[0]) {
        ms__err_set(g->err, st, "sample: %s: %s", what, g->comm.err);
        g->comm.err[0] = '\0';
        return st;
    }
    return ms__err_set(g->err, st, "sample: %s failed (%s)", what, ms_status_message(st));
}

/* Pack this device's records of users [u0, u1), gather them over the gather axis and unpack
 * every shard's records into g->res. */
static ms_status exchange_records(ms_generator *g, int32_t u0, int32_t u1)
{
    if (g->comm.shard < 0) { /* host: the records already sit in shared memory */
        ms_status st = ms__comm_allgather(&g->comm, NULL, NULL, 0);
        return st == MS_OK ? st : transport_error(g, st, "gather of the candidates");
    }
    const size_t rb = rec_bytes(g), n = (size_t)(u1 - u0);
    MS_RETURN_ERROR_IF(grow_gather(g, &g->xsend, &g->xsend_cap, rb * n) != MS_OK ||
                           grow_gather(g, &g->xrecv, &g->xrecv_cap, rb * n * (size_t)g->T) != MS_OK,
                       g->err, MS_ERR_NO_MEMORY, "sample: out of memory for the gather buffers");
    const int32_t me = g->comm.shard;
    for (int32_t u = u0; u < u1; u++) {
        const ms__scan_result *r = &g->res[(size_t)u * g->T + me];
        char *p = (char *)g->xsend + rb * (size_t)(u - u0);
        if (g->force_argmax) { /* an id of -1 marks a shard without a real token */
            ms__cand c = r->n_cand ? r->cand[0] : (ms__cand){-INFINITY, -INFINITY, -1};
            memcpy(p, &c, sizeof c);
            continue;
        }
        rec_hdr h = {r->n_cand, r->n_rawc, r->truncated, 0, r->pen, r->raw_lse};
        memcpy(p, &h, sizeof h);
        memcpy(p + sizeof h, r->cand, (size_t)r->n_cand * sizeof(ms__cand));
        memcpy(p + sizeof h + (size_t)g->kcap * sizeof(ms__cand), r->raw,
               (size_t)r->n_rawc * sizeof(ms__cand));
    }
    ms_status st = ms__comm_allgather(&g->comm, g->xsend, g->xrecv, rb * n);
    if (st != MS_OK) return transport_error(g, st, "gather of the candidates");
    for (int32_t s = 0; s < g->T; s++)
        for (int32_t u = u0; u < u1; u++) {
            const char *p = (const char *)g->xrecv + rb * ((size_t)s * n + (size_t)(u - u0));
            ms__scan_result *r = &g->res[(size_t)u * g->T + s];
            r->cand = g->cand + ((size_t)u * g->T + s) * g->kcap;
            r->raw = g->rawc + ((size_t)u * g->T + s) * (g->rawcap ? g->rawcap : 1);
            if (g->force_argmax) {
                ms__cand c;
                memcpy(&c, p, sizeof c);
                r->n_cand = c.id >= 0;
                r->cand[0] = c;
                r->n_rawc = 0;
                r->truncated = true;
                r->pen = r->raw_lse = ms__lse_empty();
                continue;
            }
            rec_hdr h;
            memcpy(&h, p, sizeof h);
            r->n_cand = h.n_cand;
            r->n_rawc = h.n_rawc;
            r->truncated = h.truncated != 0;
            r->pen = h.pen;
            r->raw_lse = h.raw;
            if (s == g->comm.shard) continue;
            memcpy(r->cand, p + sizeof h, (size_t)h.n_cand * sizeof(ms__cand));
            memcpy(r->raw, p + sizeof h + (size_t)g->kcap * sizeof(ms__cand),
                   (size_t)h.n_rawc * sizeof(ms__cand));
        }
    return MS_OK;
}

/* The fallback round over a transport: each device sends its survivors of every flagged user
 * (in user order: a count, then the candidates); the receivers concatenate per user. */
static ms_status fallback_round_mpi(ms_generator *g, const ms_logits *logits, int32_t u0,
                                    int32_t u1, uint64_t off, user_out *uo)
{
    ms__worker *wk = &g->workers[0];
    size_t used = 0;
    for (int32_t u = u0; u < u1; u++) {
        if (!g->fb[u].active) continue;
        size_t na = 0;
        MS_RETURN_ERROR_IF(collect_survivors(g, logits, u, g->fb[u].thr_v, g->comm.shard,
                                             g->comm.shard + 1, wk, &na) != MS_OK,
                           g->err, MS_ERR_NO_MEMORY, "sample: out of memory in the fallback");
        size_t need = used + sizeof(int64_t) + na * sizeof(ms__cand);
        MS_RETURN_ERROR_IF(grow(&g->fsend, &g->fsend_cap, need) != MS_OK, g->err,
                           MS_ERR_NO_MEMORY, "sample: out of memory in the fallback");
        int64_t c = (int64_t)na;
        memcpy((char *)g->fsend + used, &c, sizeof c);
        if (na) memcpy((char *)g->fsend + used + sizeof c, wk->fb, na * sizeof(ms__cand));
        used = need;
    }
    ms_status st = ms__comm_allgatherv(&g->comm, g->fsend, used, &g->frecv, &g->frecv_cap,
                                       g->fcounts);
    if (st != MS_OK) return transport_error(g, st, "gather of the fallback survivors");
    /* cursors into each device's segment */
    size_t cur[64], *curs = g->T <= 64 ? cur : calloc((size_t)g->T, sizeof *curs);
    MS_RETURN_ERROR_IF(!curs, g->err, MS_ERR_NO_MEMORY, "sample: out of memory in the fallback");
    size_t base = 0;
    for (int32_t s = 0; s < g->T; s++) {
        curs[s] = base;
        base += g->fcounts[s];
    }
    for (int32_t u = u0; u < u1 && st == MS_OK; u++) {
        if (!g->fb[u].active) continue;
        size_t na = 0;
        for (int32_t s = 0; s < g->T; s++) {
            int64_t c;
            memcpy(&c, (char *)g->frecv + curs[s], sizeof c);
            if (grow((void **)&g->fall, &g->fall_cap, (na + (size_t)c) * sizeof(ms__cand)) !=
                MS_OK) {
                st = MS_ERR_NO_MEMORY;
                break;
            }
            memcpy(g->fall + na, (char *)g->frecv + curs[s] + sizeof c,
                   (size_t)c * sizeof(ms__cand));
            curs[s] += sizeof c + (size_t)c * sizeof(ms__cand);
            na += (size_t)c;
        }
        if (st == MS_OK)
            st = fallback_finish(g, u, off, g->fall, na, g->fb[u].thr_v == INFINITY, &g->workers[0],
                                 &uo[u]);
    }
    if (curs != cur) free(curs);
    MS_RETURN_ERROR_IF(st != MS_OK, g->err, st, "sample: out of memory in the fallback");
    return MS_OK;
}

/* Outputs of one user as they travel between DP groups. */
typedef struct out_hdr {
    int32_t token, bad, rank, n_top;
    double logprob;
} out_hdr;

static ms_status share_outputs(ms_generator *g, int32_t u0, int32_t u1, user_out *uo)
{
    if (g->comm.group < 0 || g->dp == 1) { /* host, or every group sampled every user */
        ms_status st = ms__comm_allgather_groups(&g->comm, NULL, NULL, 0);
        return st == MS_OK ? st : transport_error(g, st, "exchange of the outputs");
    }
    const size_t cap = (size_t)g->max_lp;
    const size_t ob = sizeof(out_hdr) + cap * (sizeof(int32_t) + sizeof(float));
    const size_t n = (size_t)(u1 - u0);
    MS_RETURN_ERROR_IF(grow(&g->osend, &g->osend_cap, ob * n) != MS_OK ||
                           grow(&g->orecv, &g->orecv_cap, ob * (size_t)g->U) != MS_OK,
                       g->err, MS_ERR_NO_MEMORY, "sample: out of memory for the outputs");
    for (int32_t u = u0; u < u1; u++) {
        char *p = (char *)g->osend + ob * (size_t)(u - u0);
        out_hdr h = {uo[u].token, uo[u].bad, uo[u].rank, uo[u].n_top, uo[u].logprob};
        memcpy(p, &h, sizeof h);
        memcpy(p + sizeof h, uo[u].top_ids, (size_t)uo[u].n_top * sizeof(int32_t));
        memcpy(p + sizeof h + cap * sizeof(int32_t), uo[u].top_lp,
               (size_t)uo[u].n_top * sizeof(float));
    }
    ms_status st = ms__comm_allgather_groups(&g->comm, g->osend, g->orecv, ob * n);
    if (st != MS_OK) return transport_error(g, st, "exchange of the outputs");
    for (int32_t u = 0; u < g->U; u++) {
        const char *p = (const char *)g->orecv + ob * (size_t)u; /* group order = user order */
        out_hdr h;
        memcpy(&h, p, sizeof h);
        uo[u].token = h.token;
        uo[u].bad = h.bad != 0;
        uo[u].rank = h.rank;
        uo[u].n_top = h.n_top;
        uo[u].logprob = h.logprob;
        memcpy(uo[u].top_ids, p + sizeof h, (size_t)h.n_top * sizeof(int32_t));
        memcpy(uo[u].top_lp, p + sizeof h + cap * sizeof(int32_t), (size_t)h.n_top * sizeof(float));
    }
    return MS_OK;
}

static ms_status step_impl(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                           uint64_t draw_offset, bool commit, bool validated,
                           const ms_step_output *out);

ms_status ms__step(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                   uint64_t draw_offset, bool commit, bool validated, const ms_step_output *out)
{
    if (!g->ncpus) return step_impl(g, logits, n_logits, draw_offset, commit, validated, out);
    /* The caller is worker 0: it runs on worker_cpus[0] for the step, then gets its own
     * affinity back. */
    cpu_set_t saved, set;
    bool have = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
    CPU_ZERO(&set);
    CPU_SET(g->cpus[0], &set);
    if (have) pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    ms_status st = step_impl(g, logits, n_logits, draw_offset, commit, validated, out);
    if (have) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    return st;
}

static ms_status step_impl(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                           uint64_t draw_offset, bool commit, bool validated,
                           const ms_step_output *out)
{
    if (!validated) MS_FORWARD_IF_ERROR(check_logits(g, logits, n_logits, out));
    const int32_t U = g->U, T = g->T;
    /* The users and shards this process computes: all of them on the host transport. */
    const int32_t u0 = g->comm.group < 0 ? 0 : g->comm.group * g->B;
    const int32_t u1 = g->comm.group < 0 ? U : u0 + (g->dp > 1 ? g->B : U);
    const int32_t s0 = g->comm.shard < 0 ? 0 : g->comm.shard;
    const int32_t ns = g->comm.shard < 0 ? T : 1;

    /* Per-thread scan scratch follows the plans and the longest history (kept up to date by
     * every call that changes them), so a step only compares two numbers here. It grows by
     * half again: histories grow a token a step, and a fresh block each step (its pages
     * faulted in anew) cost 44 us of a 0.66 ms step (B=32, V=128256, 1x2, penalties). */
    const size_t need = g->scratch_need;
    for (int32_t t = 0; t < g->nthreads; t++) {
        ms__worker *wk = &g->workers[t];
        if (wk->scan_bytes >= need) continue;
        const size_t room = need + need / 2;
        void *p = ms__calloc(1, room);
        MS_RETURN_ERROR_IF(!p, g->err, MS_ERR_NO_MEMORY, "sample: out of memory for scratch");
        ms__free(wk->scan);
        wk->scan = p;
        wk->scan_bytes = room;
    }

    /* Per-device stage. */
    const int64_t items = (int64_t)(u1 - u0) * ns;
#pragma omp parallel num_threads(g->nthreads)
    {
        pin_worker(g);
        /* Contiguous ranges per worker: each streams rows that follow one another. */
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t lo = items * t / nt, hi = items * (t + 1) / nt;
        for (int64_t it = lo; it < hi; it++)
            shard_stage(g, logits, u0 + (int32_t)(it / ns), s0 + (int32_t)(it % ns),
                        &g->workers[t]);
    }

    MS_FORWARD_IF_ERROR(exchange_records(g, u0, u1));

    /* Final stage, replicated on every device of a group. */
    user_out *uo = g->uo;
    const int32_t cap = g->max_lp;
    for (int32_t u = 0; u < U; u++) {
        uo[u].top_ids = g->top_ids + (size_t)u * (size_t)cap;
        uo[u].top_lp = g->top_lp + (size_t)u * (size_t)cap;
    }
    int32_t n_fb = 0;
#pragma omp parallel for num_threads(g->nthreads) schedule(dynamic, 4) reduction(+ : n_fb)
    for (int32_t u = u0; u < u1; u++) {
        g->fb[u].active = final_stage(g, u, draw_offset, &g->workers[omp_get_thread_num()],
                                      &uo[u], &g->fb[u]);
        n_fb += g->fb[u].active;
    }
    if (n_fb > 0) {
        /* The fallback round: gather every survivor of the flagged users, then finish them. */
        if (g->comm.shard >= 0) {
            MS_FORWARD_IF_ERROR(fallback_round_mpi(g, logits, u0, u1, draw_offset, uo));
        } else {
            ms_status st = ms__comm_allgatherv(&g->comm, NULL, 0, NULL, NULL, NULL);
            if (st != MS_OK) return transport_error(g, st, "gather of the fallback survivors");
#pragma omp parallel for num_threads(g->nthreads) schedule(dynamic, 1)
            for (int32_t u = u0; u < u1; u++) {
                if (!g->fb[u].active) continue;
                ms__worker *wk = &g->workers[omp_get_thread_num()];
                size_t na = 0;
                ms_status s1 = collect_survivors(g, logits, u, g->fb[u].thr_v, 0, T, wk, &na);
                if (s1 == MS_OK)
                    s1 = fallback_finish(g, u, draw_offset, wk->fb, na,
                                         g->fb[u].thr_v == INFINITY, wk, &uo[u]);
                if (s1 != MS_OK) {
#pragma omp critical(ms_step_err)
                    st = s1;
                }
            }
            if (st != MS_OK)
                return ms__err_set(g->err, st, "sample: out of memory in the exact-mode fallback");
        }
    }
    MS_FORWARD_IF_ERROR(share_outputs(g, u0, u1, uo));

    for (int32_t u = 0; u < U; u++) {
        out->tokens[u] = uo[u].token;
        if (out->row_error) out->row_error[u] = uo[u].bad;
        const bool lp = g->plan[u].logprobs && !uo[u].bad;
        if (out->logprob) out->logprob[u] = lp ? (float)uo[u].logprob : NAN;
        if (out->rank) out->rank[u] = lp ? uo[u].rank : 0;
        int32_t nt = lp ? uo[u].n_top : 0;
        if (out->top_count) out->top_count[u] = nt;
        for (int32_t i = 0; i < nt; i++) {
            if (out->top_ids) out->top_ids[(size_t)u * cap + i] = uo[u].top_ids[i];
            if (out->top_logprobs) out->top_logprobs[(size_t)u * cap + i] = uo[u].top_lp[i];
        }
    }

    if (commit) {
        for (int32_t u = 0; u < U; u++) {
            int32_t tok = out->tokens[u];
            if (tok < 0) continue;
            ms_status st = ms__history_add_output(&g->hist[u], tok, 1);
            MS_RETURN_ERROR_IF(st != MS_OK, g->err, st,
                               "sample: out of memory growing the history of user %d", (int)u);
            if (g->plan[u].penalties) ms__generator_note_history(g, u);
        }
        if (g->replicate_slot >= 0) {
            g->counter[g->replicate_slot]++;
            g->replicate_slot = -1;
        } else {
            for (int32_t u = 0; u < U; u++) g->counter[u]++;
        }
    }
    g->err->msg[0] = '\0';
    return MS_OK;
}
