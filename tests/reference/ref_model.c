#include "ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/ms_rng.h"

/* Decisions closer than this to a threshold are "ambiguous" (see ref_dist.ambiguous). */
#define REF_AMBIGUITY 1e-6

ref_params ref_format(float temperature, int64_t top_k, float top_p, float min_p, float presence,
                      float frequency, float repetition, int32_t max_top_k)
{
    ref_params p;
    p.temperature = temperature;
    p.top_p = top_p < 0.0f ? 0.0f : (top_p > 1.0f ? 1.0f : top_p);
    p.min_p = min_p < 0.0f ? 0.0f : (min_p > 1.0f ? 1.0f : min_p);
    int64_t k = top_k;
    if (temperature == 0.0f) {
        p.temperature = 1.0f;
        k = 1;
        p.top_p = 0.0f;
    }
    if (k < 1)
        k = max_top_k; /* 0 in exact mode: unlimited */
    if (max_top_k > 0 && k > max_top_k)
        k = max_top_k;
    if (k > INT32_MAX)
        k = INT32_MAX;
    p.top_k = (int32_t)k;
    p.presence = presence;
    p.frequency = frequency;
    p.repetition = repetition == 0.0f ? 1.0f : repetition;
    return p;
}

/* The penalty of one token, in float32 arithmetic; the build uses -ffp-contract=off, so
 * f * c and the subtraction round separately as the contract says. */
static float penalize(float z, const ref_params *p, ms_penalty_order order, bool inp, int32_t c)
{
    const bool rep_applies = inp || c > 0;
    if (order == MS_PENALTY_ORDER_OPENAI) {
        if (rep_applies)
            z = z > 0.0f ? z / p->repetition : z * p->repetition;
        float fc = p->frequency * (float)c;
        z = z - fc;
        if (c > 0)
            z = z - p->presence;
    } else {
        if (c > 0)
            z = z - p->presence;
        float fc = p->frequency * (float)c;
        z = z - fc;
        if (rep_applies)
            z = z > 0.0f ? z / p->repetition : z * p->repetition;
    }
    return z;
}

/* Stable merge sort of idx[0..n) by key desc; equal keys keep index order (ids ascending when
 * idx starts as the identity). -inf sorts last; there are no NaN keys. */
static void sort_desc(int32_t *idx, int32_t *tmp, int32_t n, const float *key)
{
    if (n < 2)
        return;
    int32_t h = n / 2;
    sort_desc(idx, tmp, h, key);
    sort_desc(idx + h, tmp, n - h, key);
    int32_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        /* Take from the right half only when strictly greater: ties keep the lower id. */
        if (key[idx[j]] > key[idx[i]])
            tmp[o++] = idx[j++];
        else
            tmp[o++] = idx[i++];
    }
    while (i < h)
        tmp[o++] = idx[i++];
    while (j < n)
        tmp[o++] = idx[j++];
    memcpy(idx, tmp, sizeof(int32_t) * (size_t)n);
}

void ref_dist_free(ref_dist *d)
{
    free(d->z);
    free(d->zp);
    free(d->w);
    free(d->order);
    free(d->pos);
    free(d->order_raw);
    free(d->s);
    free(d->in_s);
    free(d->prob);
    memset(d, 0, sizeof *d);
}

int ref_dist_build(ref_dist *d, const ref_input *in)
{
    const int32_t V = in->vocab;
    const ref_params *p = &in->params;
    memset(d, 0, sizeof *d);
    if (V <= 0)
        return -1;
    d->vocab = V;
    d->z = malloc(sizeof(float) * (size_t)V);
    d->zp = malloc(sizeof(float) * (size_t)V);
    d->w = malloc(sizeof(double) * (size_t)V);
    d->order = malloc(sizeof(int32_t) * (size_t)V);
    d->pos = malloc(sizeof(int32_t) * (size_t)V);
    d->order_raw = malloc(sizeof(int32_t) * (size_t)V);
    d->s = malloc(sizeof(int32_t) * (size_t)V);
    d->in_s = calloc((size_t)V, 1);
    d->prob = calloc((size_t)V, sizeof(double));
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)V);
    if (!d->z || !d->zp || !d->w || !d->order || !d->pos || !d->order_raw || !d->s || !d->in_s ||
        !d->prob || !tmp) {
        free(tmp);
        ref_dist_free(d);
        return -1;
    }

    /* 1. Penalties, only when one is non-default; NaN is -inf first. */
    const bool pen_on = p->presence != 0.0f || p->frequency != 0.0f || p->repetition != 1.0f;
    for (int32_t t = 0; t < V; t++) {
        float z = isnan(in->z[t]) ? -INFINITY : in->z[t];
        d->z[t] = z;
        if (pen_on) {
            bool inp = in->in_prompt != NULL && in->in_prompt[t] != 0;
            int32_t c = in->counts != NULL ? in->counts[t] : 0;
            z = penalize(z, p, in->order, inp, c);
        }
        d->zp[t] = z;
    }

    /* Rank orders: (z' desc, id asc) and (z desc, id asc). */
    for (int32_t t = 0; t < V; t++)
        d->order[t] = d->order_raw[t] = t;
    sort_desc(d->order, tmp, V, d->zp);
    sort_desc(d->order_raw, tmp, V, d->z);
    free(tmp);
    for (int32_t i = 0; i < V; i++)
        d->pos[d->order[i]] = i + 1;

    const float top = d->zp[d->order[0]];
    d->bad = top == -INFINITY;
    d->greedy = p->top_k == 1 || p->top_p == 0.0f;
    d->has_posinf = top == INFINITY;
    d->argmax = d->bad ? -1 : d->order[0];
    for (int32_t t = 0; t < V; t++)
        d->w[t] = (double)d->zp[t] / (double)p->temperature;
    if (d->bad)
        return 0;

    /* 2. Greedy. */
    if (d->greedy) {
        d->n_s = 1;
        d->s[0] = d->argmax;
        d->in_s[d->argmax] = 1;
        d->prob[d->argmax] = 1.0;
        return 0;
    }

    /* 6. +inf: the +inf tokens, by id (they lead the rank order, ids ascending), top-k on them. */
    if (d->has_posinf) {
        int32_t m = 0;
        while (m < V && d->zp[d->order[m]] == INFINITY)
            m++;
        if (p->top_k > 0 && p->top_k < m)
            m = p->top_k;
        d->n_s = m;
        for (int32_t i = 0; i < m; i++) {
            d->s[i] = d->order[i];
            d->in_s[d->s[i]] = 1;
            d->prob[d->s[i]] = 1.0 / m;
        }
        return 0;
    }

    /* 3. Survivors: a prefix of the rank order. */
    const double wmax = d->w[d->order[0]];
    int32_t n = V;
    if (p->min_p > 0.0f) {
        const double lmin = log((double)p->min_p);
        n = 0;
        for (int32_t i = 0; i < V; i++) {
            double gap = d->w[d->order[i]] - wmax; /* -inf for -inf tokens: dropped */
            /* gap == lmin == 0 (min_p 1 and a token tied with the max) is exact anywhere. */
            if (fabs(gap - lmin) < REF_AMBIGUITY && !(gap == 0.0 && lmin == 0.0))
                d->ambiguous = true;
            if (gap >= lmin)
                n = i + 1;
        }
    }
    if (p->top_k > 0 && p->top_k < n)
        n = p->top_k;
    if (p->top_p < 1.0f) {
        /* Renormalise over the n left; keep position i while the mass before it is < p. */
        double sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += exp(d->w[d->order[i]] - wmax);
        const double pp = (double)p->top_p;
        double before = 0.0;
        int32_t keep = 0;
        for (int32_t i = 0; i < n; i++) {
            double frac = before / sum;
            if (i > 0 && fabs(frac - pp) < REF_AMBIGUITY)
                d->ambiguous = true;
            if (i == 0 || frac < pp)
                keep = i + 1;
            else
                break;
            before += exp(d->w[d->order[i]] - wmax);
        }
        n = keep;
    }
    d->n_s = n;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        int32_t t = d->order[i];
        d->s[i] = t;
        d->in_s[t] = 1;
        sum += exp(d->w[t] - wmax);
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t t = d->s[i];
        d->prob[t] = exp(d->w[t] - wmax) / sum;
    }
    return 0;
}

int32_t ref_draw(const ref_dist *d, uint64_t seed, uint64_t n)
{
    if (d->bad)
        return -1;
    if (d->greedy)
        return d->argmax;
    int32_t best = -1;
    double best_v = -INFINITY;
    for (int32_t i = 0; i < d->n_s; i++) {
        const int32_t t = d->s[i];
        const double g = ms__gumbel(seed, n, t);
        const double v = d->has_posinf ? g : d->w[t] + g;
        if (v == -INFINITY)
            continue;
        if (best < 0 || v > best_v || (v == best_v && t < best)) {
            best = t;
            best_v = v;
        }
    }
    return best;
}

/* Log-sum-exp of key over the listed tokens (all when list NULL); -inf when none finite. */
static double lse_f(const float *key, int32_t V)
{
    double m = -INFINITY;
    for (int32_t t = 0; t < V; t++)
        if ((double)key[t] > m)
            m = key[t];
    if (m == -INFINITY)
        return m;
    double s = 0.0;
    for (int32_t t = 0; t < V; t++)
        s += exp((double)key[t] - m);
    return m + log(s);
}

int32_t ref_logprobs(const ref_dist *d, ms_logprobs_mode mode, int32_t token, int32_t n_top,
                     double *logprob, int32_t *rank, int32_t *top_ids, double *top_lp)
{
    if (d->bad || d->has_posinf || token < 0 || token >= d->vocab)
        return -1;
    *rank = d->pos[token];
    int32_t cnt = 0;
    if (mode == MS_LOGPROBS_RAW || mode == MS_LOGPROBS_PENALIZED) {
        const float *key = mode == MS_LOGPROBS_RAW ? d->z : d->zp;
        const int32_t *ord = mode == MS_LOGPROBS_RAW ? d->order_raw : d->order;
        const double lse = lse_f(key, d->vocab);
        *logprob = (double)key[token] - lse;
        for (int32_t i = 0; i < d->vocab && cnt < n_top; i++) {
            double v = (double)key[ord[i]] - lse;
            if (v == -INFINITY)
                break; /* the rest is -inf too */
            top_ids[cnt] = ord[i];
            top_lp[cnt] = v;
            cnt++;
        }
        return cnt;
    }
    /* PROCESSED: w over S; a greedy user's S is {argmax}. */
    double m = -INFINITY;
    for (int32_t i = 0; i < d->n_s; i++)
        if (d->w[d->s[i]] > m)
            m = d->w[d->s[i]];
    double s = 0.0;
    for (int32_t i = 0; i < d->n_s; i++)
        s += exp(d->w[d->s[i]] - m);
    const double lse = d->greedy ? d->w[d->argmax] : m + log(s);
    *logprob = d->in_s[token] ? d->w[token] - lse : -INFINITY;
    for (int32_t i = 0; i < d->n_s && cnt < n_top; i++) {
        double v = d->w[d->s[i]] - lse;
        if (v == -INFINITY)
            break;
        top_ids[cnt] = d->s[i];
        top_lp[cnt] = v;
        cnt++;
    }
    return cnt;
}

/* ---- statistics ---- */

double ref_gamma_q(double a, double x)
{
    if (!(a > 0.0) || !(x >= 0.0))
        return NAN;
    if (x == 0.0)
        return 1.0;
    /* log of x^a e^-x / Gamma(a), the common prefactor of both expansions. */
    const double lpre = a * log(x) - x - lgamma(a);
    if (x < a + 1.0) {
        /* Series (DLMF 8.7.1; Numerical Recipes 3rd ed. eq. 6.2.5):
         * P(a, x) = x^a e^-x / Gamma(a) * sum_{n>=0} x^n / (a (a+1) ... (a+n)); Q = 1 - P.
         * Converges fast for x < a + 1, where P is not close to 1, so 1 - P keeps precision. */
        double ap = a, del = 1.0 / a, sum = del;
        for (int n = 1; n < 100000; n++) {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * 1e-17)
                break;
        }
        return 1.0 - sum * exp(lpre);
    }
    /* Legendre's continued fraction (DLMF 8.9.2; Numerical Recipes eq. 6.2.7):
     * Q(a, x) = x^a e^-x / Gamma(a) * 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...))),
     * evaluated with the modified Lentz method. */
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, dd = 1.0 / b, h = dd;
    for (int i = 1; i < 100000; i++) {
        const double an = -i * (i - a);
        b += 2.0;
        dd = an * dd + b;
        if (fabs(dd) < tiny)
            dd = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        dd = 1.0 / dd;
        const double del = dd * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16)
            break;
    }
    return exp(lpre) * h;
}

double ref_chi2_sf(double x, double df) { return ref_gamma_q(0.5 * df, 0.5 * x); }

typedef struct cell {
    double e;
    int64_t o;
} cell;

static int cell_cmp(const void *a, const void *b)
{
    double x = ((const cell *)a)->e, y = ((const cell *)b)->e;
    return (x > y) - (x < y);
}

double ref_chi2_test(const double *prob, const int64_t *observed, int32_t n, int64_t total,
                     double *stat, int32_t *df)
{
    cell *c = malloc(sizeof(cell) * (size_t)(n + 1));
    if (c == NULL)
        abort();
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (prob[i] <= 0.0)
            continue;
        c[m].e = prob[i] * (double)total;
        c[m].o = observed[i];
        m++;
    }
    qsort(c, (size_t)m, sizeof(cell), cell_cmp);
    /* Pool every cell with E < 5 into one; while the pool is itself < 5 and a regular cell is
     * left, absorb the smallest regular cell. */
    cell pool = {0.0, 0};
    int32_t first = 0;
    while (first < m && c[first].e < 5.0) {
        pool.e += c[first].e;
        pool.o += c[first].o;
        first++;
    }
    while (pool.e > 0.0 && pool.e < 5.0 && first < m) {
        pool.e += c[first].e;
        pool.o += c[first].o;
        first++;
    }
    double x2 = 0.0;
    int32_t cells = 0;
    for (int32_t i = first; i < m; i++, cells++)
        x2 += (c[i].o - c[i].e) * (c[i].o - c[i].e) / c[i].e;
    if (pool.e > 0.0) {
        x2 += (pool.o - pool.e) * (pool.o - pool.e) / pool.e;
        cells++;
    }
    free(c);
    if (stat)
        *stat = x2;
    if (df)
        *df = cells - 1;
    if (cells < 2)
        return 1.0;
    return ref_chi2_sf(x2, (double)(cells - 1));
}
