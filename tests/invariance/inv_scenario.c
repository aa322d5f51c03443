#include "inv_scenario.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_util.h"

#define NKINDS 16

/* Parameter kinds, by user % 16. */
static const struct {
    const char *name;
    inv_params p;
    bool flat; /* small logit spread: large nuclei, the exact-mode fallback */
} kinds[NKINDS] = {
    {"greedy", {0.0f, 0, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 5}, false},
    {"greedy+pen", {0.0f, 0, 1.0f, 0.0f, 0.2f, 0.4f, 1.3f, 1, 3}, false},
    {"top-k 5", {0.7f, 5, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 20}, false},
    {"top-k 40+pen", {1.0f, 40, 1.0f, 0.0f, 0.0f, 0.3f, 1.2f, 1, 7}, false},
    {"k0 p0.8", {1.2f, 0, 0.8f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 10}, false},
    {"k0 p0.9 flat+pen", {1.5f, 0, 0.9f, 0.0f, 0.5f, 0.2f, 1.1f, 1, 4}, true},
    {"k0 p1", {1.0f, 0, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 1}, false},
    {"min-p 0.05", {1.3f, 0, 1.0f, 0.05f, 0.0f, 0.0f, 1.0f, 0, 0}, false},
    {"min-p 0.02 p0.95 flat", {2.0f, 0, 0.95f, 0.02f, 0.0f, 0.0f, 1.0f, 1, 6}, true},
    {"k20 p0.7", {0.9f, 20, 0.7f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 20}, false},
    {"k1 T0.8+pen", {0.8f, 1, 1.0f, 0.0f, 0.0f, 0.0f, 1.5f, 1, 2}, false},
    {"p0 (greedy)", {1.0f, 0, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 0}, false},
    {"k0 p0.5 T0.5", {0.5f, 0, 0.5f, 0.0f, 0.0f, 0.0f, 1.0f, 1, 20}, false},
    {"k0 p0.999 T3 flat", {3.0f, 0, 0.999f, 0.0f, 0.0f, 0.0f, 1.0f, 0, 0}, true},
    {"k3 T5+pen", {5.0f, 3, 1.0f, 0.0f, 1.5f, 1.0f, 1.0f, 1, 2}, false},
    {"k0 p0.95+rep", {1.0f, 0, 0.95f, 0.0f, 0.0f, 0.0f, 1.1f, 1, 0}, false},
};

const char *inv_kind_name(int32_t u) { return kinds[u % NKINDS].name; }

static bool kind_penalised(int32_t u)
{
    const inv_params *p = &kinds[u % NKINDS].p;
    return p->presence != 0.0f || p->frequency != 0.0f || p->repetition != 1.0f;
}

static float bf16_round(float v) { return ref_bf16_to_f32(ref_f32_to_bf16(v)); }

static void argmax3(const float *row, int32_t V, int32_t top[3])
{
    top[0] = top[1] = top[2] = -1;
    for (int32_t t = 0; t < V; t++) {
        float v = row[t];
        for (int i = 0; i < 3; i++) {
            if (top[i] < 0 || v > row[top[i]]) {
                for (int j = 2; j > i; j--)
                    top[j] = top[j - 1];
                top[i] = t;
                break;
            }
        }
    }
}

void inv_scenario_build(inv_scenario *s, int32_t U, int32_t V, int32_t Vp, int32_t steps,
                        uint64_t data_seed)
{
    memset(s, 0, sizeof *s);
    s->U = U;
    s->V = V;
    s->Vp = Vp;
    s->steps = steps;
    s->stride = Vp + 8;
    s->pcols = 16;
    s->ocols = 6;
    const size_t per_step = (size_t)U * (size_t)s->stride;
    s->f32 = malloc(sizeof(float) * per_step * (size_t)steps);
    s->bf16 = malloc(sizeof(uint16_t) * per_step * (size_t)steps);
    s->params = calloc((size_t)U, sizeof *s->params);
    s->seeds = calloc((size_t)U, sizeof *s->seeds);
    s->prompt = malloc(sizeof(int32_t) * (size_t)U * (size_t)s->pcols);
    s->outs = malloc(sizeof(int32_t) * (size_t)U * (size_t)s->ocols);
    float *base = malloc(sizeof(float) * (size_t)U * (size_t)V);
    if (!s->f32 || !s->bf16 || !s->params || !s->seeds || !s->prompt || !s->outs || !base)
        abort();
    ref_rng r;
    ref_rng_init(&r, data_seed);
    static const float hostile[4] = {3.0e38f, INFINITY, NAN, 1.0e30f};
    for (int32_t u = 0; u < U; u++) {
        const double sigma = kinds[u % NKINDS].flat ? 0.6 : 1.0 + (double)(u % 3);
        for (int32_t t = 0; t < V; t++)
            base[(size_t)u * V + t] = (float)(sigma * ref_rng_normal(&r));
        s->params[u] = kinds[u % NKINDS].p;
        s->seeds[u] = (int64_t)(ref_rng_seed63(&r) >> (u % 5 == 0 ? 40 : 0)); /* some small */
    }
    for (int32_t st = 0; st < steps; st++) {
        float *m = s->f32 + (size_t)st * per_step;
        for (int32_t u = 0; u < U; u++) {
            float *row = m + (size_t)u * (size_t)s->stride;
            for (int32_t t = 0; t < V; t++)
                row[t] = bf16_round(base[(size_t)u * V + t] + (float)(0.3 * ref_rng_normal(&r)));
            for (int64_t t = V; t < s->stride; t++)
                row[t] = hostile[ref_rng_int(&r, 0, 3)];
            if (st == INV_INF_STEP && u == INV_INF_USER) {
                row[100] = INFINITY;
                row[V - 100] = INFINITY;
            }
            if (st == INV_BAD_STEP && (u == INV_BAD_USER || u == INV_BAD_USER - 6)) {
                for (int32_t t = 0; t < V; t++)
                    row[t] = (t % 3 == 0) ? -INFINITY : NAN;
            }
            if (st == INV_ONE_STEP && u == INV_ONE_USER) {
                for (int32_t t = 0; t < V; t++)
                    row[t] = -INFINITY;
                row[V - 501] = -3.5f;
            }
            if (st == INV_TIE_STEP && u == INV_TIE_USER) {
                for (int32_t t = 0; t < V; t++)
                    row[t] = 0.5f;
            }
        }
    }
    for (size_t i = 0; i < per_step * (size_t)steps; i++) {
        s->bf16[i] = ref_f32_to_bf16(s->f32[i]);
        if (isnan(s->f32[i]))
            continue;
        /* f32 must hold exactly the bf16 value (huge hostile values are rounded too). */
        s->f32[i] = ref_bf16_to_f32(s->bf16[i]);
    }
    /* Histories: users with penalties get their likely tokens in the prompt and outputs. */
    for (int32_t u = 0; u < U; u++) {
        int32_t top[3];
        argmax3(base + (size_t)u * V, V, top);
        int32_t *p = s->prompt + (size_t)u * s->pcols;
        int32_t *o = s->outs + (size_t)u * s->ocols;
        int32_t np = ref_rng_int(&r, 0, s->pcols - 3), j = 0;
        if (kind_penalised(u)) {
            p[j++] = top[0];
            p[j++] = top[2];
        }
        while (j < np)
            p[j++] = ref_rng_int(&r, 0, V - 1);
        while (j < s->pcols)
            p[j++] = -1;
        j = 0;
        if (kind_penalised(u)) {
            o[j++] = top[1];
            o[j++] = top[1];
            o[j++] = top[0];
        }
        int32_t no = ref_rng_int(&r, j, s->ocols);
        while (j < no)
            o[j++] = ref_rng_int(&r, 0, V - 1);
        while (j < s->ocols)
            o[j++] = -1;
    }
    free(base);
}

void inv_scenario_all_greedy(inv_scenario *s)
{
    for (int32_t u = 0; u < s->U; u++) {
        s->params[u].temperature = 0.0f;
        s->params[u].enable_log_probs = 0;
        s->params[u].num_logprobs = 0;
    }
}

void inv_scenario_build_pair(inv_scenario *mixed, inv_scenario *greedy, int32_t U, int32_t V,
                             int32_t Vp, int32_t steps, uint64_t data_seed)
{
    inv_scenario_build(mixed, U, V, Vp, steps, data_seed);
    inv_scenario_build(greedy, U, V, Vp, steps, data_seed);
    inv_scenario_all_greedy(greedy);
}

void inv_scenario_free_pair(inv_scenario *mixed, inv_scenario *greedy)
{
    inv_scenario_free(mixed);
    inv_scenario_free(greedy);
}

void inv_scenario_free(inv_scenario *s)
{
    free(s->f32);
    free(s->bf16);
    free(s->params);
    free(s->seeds);
    free(s->prompt);
    free(s->outs);
    memset(s, 0, sizeof *s);
}

ms_status inv_scenario_install(const inv_scenario *s, ms_generator *g)
{
    const int32_t n = s->U;
    if (ms_generator_num_users(g) != n)
        return MS_ERR_INVALID_ARGUMENT;
    ms_status st = ref_install_params(g, s->params, n);
    if (st == MS_OK)
        st = ms_generator_reset_seed(g, s->seeds, n, NULL, n);
    if (st == MS_OK)
        st = ms_generator_reset_prompt_tokens(g, s->prompt, n, s->pcols, NULL);
    if (st == MS_OK)
        st = ms_generator_reset_output_state(g, s->outs, n, s->ocols, NULL);
    return st;
}

void inv_record_init(inv_record *r, int32_t steps, int32_t U, int32_t cap)
{
    const size_t n = (size_t)steps * (size_t)U, nc = n * (size_t)(cap > 0 ? cap : 1);
    r->steps = steps;
    r->U = U;
    r->cap = cap;
    r->tokens = calloc(n, sizeof *r->tokens);
    r->row_error = calloc(n, 1);
    r->logprob = calloc(n, sizeof *r->logprob);
    r->rank = calloc(n, sizeof *r->rank);
    r->top_count = calloc(n, sizeof *r->top_count);
    r->top_ids = calloc(nc, sizeof *r->top_ids);
    r->top_lp = calloc(nc, sizeof *r->top_lp);
    if (!r->tokens || !r->row_error || !r->logprob || !r->rank || !r->top_count || !r->top_ids ||
        !r->top_lp)
        abort();
}

void inv_record_free(inv_record *r)
{
    free(r->tokens);
    free(r->row_error);
    free(r->logprob);
    free(r->rank);
    free(r->top_count);
    free(r->top_ids);
    free(r->top_lp);
    memset(r, 0, sizeof *r);
}

static size_t dsize(ms_dtype d) { return d == MS_DTYPE_F32 ? 4 : 2; }

ms_status inv_run(ms_generator *g, const inv_scenario *s, ms_dtype dt, bool trace, int32_t device,
                  inv_record *rec, char *err, size_t errn)
{
    ms_status st = inv_scenario_install(s, g);
    if (st != MS_OK) {
        snprintf(err, errn, "install: %s: %s", ms_status_name(st), ms_generator_last_error(g));
        return st;
    }
    if (ms_generator_max_logprobs(g) != rec->cap || rec->U != s->U || rec->steps != s->steps) {
        snprintf(err, errn, "record shape: cap %d vs max_logprobs %d", (int)rec->cap,
                 (int)ms_generator_max_logprobs(g));
        return MS_ERR_INVALID_ARGUMENT;
    }
    const size_t per_step = (size_t)s->U * (size_t)s->stride * dsize(dt);
    void *buf = malloc(per_step);
    ms_logits views[64];
    const int32_t nviews = device < 0 ? ms_generator_num_shards(g) : 1;
    if (!buf || nviews < 1 || nviews > 64) {
        free(buf);
        snprintf(err, errn, "%d views", (int)nviews);
        return MS_ERR_INVALID_ARGUMENT;
    }
    const ms_logits full = {buf, dt, s->stride};
    for (int32_t i = 0; i < nviews; i++) {
        st = ms_generator_device_view(g, &full, device < 0 ? i : device, &views[i]);
        if (st != MS_OK) {
            snprintf(err, errn, "device_view %d: %s: %s", (int)(device < 0 ? i : device),
                     ms_status_name(st), ms_generator_last_error(g));
            free(buf);
            return st;
        }
    }
    const void *src = dt == MS_DTYPE_F32 ? (const void *)s->f32 : (const void *)s->bf16;
    /* One set of output buffers for the whole run, as an engine has (a trace is bound to them). */
    inv_record cur;
    inv_record_init(&cur, 1, s->U, rec->cap);
    const ms_step_output out = {cur.tokens, cur.row_error, cur.logprob, cur.rank,
                                cur.top_count, cur.top_ids, cur.top_lp};
    const size_t nc = (size_t)s->U * (size_t)(rec->cap > 0 ? rec->cap : 1);
    for (int32_t step = 0; step < s->steps; step++) {
        memcpy(buf, (const char *)src + (size_t)step * per_step, per_step);
        st = ms_generator_sample(g, views, nviews, trace, &out);
        if (st != MS_OK) {
            snprintf(err, errn, "step %d: sample: %s: %s", (int)step, ms_status_name(st),
                     ms_generator_last_error(g));
            break;
        }
        const size_t at = (size_t)step * (size_t)s->U;
        memcpy(rec->tokens + at, cur.tokens, sizeof(int32_t) * (size_t)s->U);
        memcpy(rec->row_error + at, cur.row_error, (size_t)s->U);
        memcpy(rec->logprob + at, cur.logprob, sizeof(float) * (size_t)s->U);
        memcpy(rec->rank + at, cur.rank, sizeof(int32_t) * (size_t)s->U);
        memcpy(rec->top_count + at, cur.top_count, sizeof(int32_t) * (size_t)s->U);
        memcpy(rec->top_ids + at * (size_t)rec->cap, cur.top_ids, sizeof(int32_t) * nc);
        memcpy(rec->top_lp + at * (size_t)rec->cap, cur.top_lp, sizeof(float) * nc);
    }
    inv_record_free(&cur);
    free(buf);
    return st;
}

static bool lp_close(float a, float b, double tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    return fabs((double)a - (double)b) <= tol;
}

#define REPORT(...)                                                                              \
    do {                                                                                          \
        if (bad < max_print) {                                                                    \
            printf("MISMATCH %s: step %d user %d (%s): ", what, (int)st, (int)u,                 \
                   inv_kind_name(u));                                                             \
            printf(__VA_ARGS__);                                                                  \
            printf("\n");                                                                         \
        }                                                                                         \
        bad++;                                                                                    \
    } while (0)

long inv_record_compare(const inv_record *ref, const inv_record *got, double tol, const char *what,
                        int max_print)
{
    long bad = 0;
    if (ref->steps != got->steps || ref->U != got->U || ref->cap != got->cap) {
        printf("MISMATCH %s: record shapes differ\n", what);
        return 1;
    }
    for (int32_t st = 0; st < ref->steps; st++) {
        for (int32_t u = 0; u < ref->U; u++) {
            const size_t i = (size_t)st * ref->U + u;
            if (ref->tokens[i] != got->tokens[i])
                REPORT("token %d != %d (reference first)", ref->tokens[i], got->tokens[i]);
            if (ref->row_error[i] != got->row_error[i])
                REPORT("row_error %d != %d", ref->row_error[i], got->row_error[i]);
            if (!lp_close(ref->logprob[i], got->logprob[i], tol))
                REPORT("logprob %.9g != %.9g (diff %.3g)", ref->logprob[i], got->logprob[i],
                       fabs((double)ref->logprob[i] - (double)got->logprob[i]));
            if (ref->rank[i] != got->rank[i])
                REPORT("rank %d != %d", ref->rank[i], got->rank[i]);
            if (ref->top_count[i] != got->top_count[i]) {
                REPORT("top_count %d != %d", ref->top_count[i], got->top_count[i]);
                continue;
            }
            for (int32_t k = 0; k < ref->top_count[i]; k++) {
                const size_t j = i * (size_t)ref->cap + (size_t)k;
                if (ref->top_ids[j] != got->top_ids[j])
                    REPORT("top_ids[%d] %d != %d", k, ref->top_ids[j], got->top_ids[j]);
                if (!lp_close(ref->top_lp[j], got->top_lp[j], tol))
                    REPORT("top_logprobs[%d] %.9g != %.9g", k, ref->top_lp[j], got->top_lp[j]);
            }
        }
    }
    return bad;
}

long inv_record_compare_bits(const inv_record *ref, const inv_record *got, const char *what,
                             int max_print)
{
    long bad = 0;
    for (int32_t st = 0; st < ref->steps; st++) {
        for (int32_t u = 0; u < ref->U; u++) {
            const size_t i = (size_t)st * ref->U + u;
            const size_t j = i * (size_t)ref->cap;
            /* entries past top_count are not outputs */
            const size_t nt = ref->top_count[i] > 0 ? (size_t)ref->top_count[i] : 0;
            if (ref->tokens[i] != got->tokens[i] || ref->row_error[i] != got->row_error[i] ||
                memcmp(&ref->logprob[i], &got->logprob[i], sizeof(float)) != 0 ||
                ref->rank[i] != got->rank[i] || ref->top_count[i] != got->top_count[i] ||
                memcmp(&ref->top_ids[j], &got->top_ids[j], sizeof(int32_t) * nt) != 0 ||
                memcmp(&ref->top_lp[j], &got->top_lp[j], sizeof(float) * nt) != 0)
                REPORT("outputs not bitwise identical (token %d/%d logprob %.9g/%.9g rank %d/%d "
                       "top_count %d/%d)",
                       ref->tokens[i], got->tokens[i], ref->logprob[i], got->logprob[i],
                       ref->rank[i], got->rank[i], ref->top_count[i], got->top_count[i]);
        }
    }
    return bad;
}

ms_generator_config inv_config(const inv_scenario *s, int32_t rows, int32_t cols, int32_t axis,
                               int32_t dp, int32_t threads, int32_t max_top_k,
                               ms_logprobs_mode mode, ms_penalty_order order)
{
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = s->V;
    cfg.mesh.padded_vocab_size = s->Vp;
    cfg.mesh.rows = rows;
    cfg.mesh.cols = cols;
    cfg.mesh.all_gather_axis = axis;
    cfg.mesh.sampling_dp = dp;
    cfg.mesh.max_batch_size = s->U / dp;
    cfg.mesh.max_top_k = max_top_k;
    cfg.num_threads = threads;
    cfg.logprobs_mode = mode;
    cfg.penalty_order = order;
    return cfg;
}

long inv_record_selfcheck(const inv_scenario *s, const inv_record *ref, const char *what)
{
    long bad = 0;
    const int max_print = 20;
    for (int32_t st = 0; st < s->steps; st++) {
        const float *m = s->f32 + (size_t)st * (size_t)s->U * (size_t)s->stride;
        for (int32_t u = 0; u < s->U; u++) {
            const float *row = m + (size_t)u * (size_t)s->stride;
            const size_t i = (size_t)st * s->U + u;
            const int32_t tok = ref->tokens[i];
            const bool is_bad = st == INV_BAD_STEP && (u == INV_BAD_USER || u == INV_BAD_USER - 6);
            if (is_bad) {
                if (tok != -1 || ref->row_error[i] != 1)
                    REPORT("bad row: token %d row_error %d, want -1 and 1", tok, ref->row_error[i]);
                continue;
            }
            if (tok < 0 || tok >= s->V || ref->row_error[i] != 0) {
                REPORT("token %d row_error %d: want a real token", tok, ref->row_error[i]);
                continue;
            }
            if (st == INV_INF_STEP && u == INV_INF_USER && tok != 100 && tok != s->V - 100)
                REPORT("+inf row: token %d is not one of the +inf tokens", tok);
            if (st == INV_ONE_STEP && u == INV_ONE_USER && tok != s->V - 501)
                REPORT("single-token row: token %d != %d", tok, s->V - 501);
            if (st == INV_TIE_STEP && u == INV_TIE_USER) {
                /* Flat row: id i survives top-p while i / V < p (p as the float it is). */
                const double pv = (double)s->params[u].top_p * (double)s->V;
                int32_t n_keep = 1;
                while (n_keep < s->V && (double)n_keep < pv)
                    n_keep++;
                if (tok >= n_keep)
                    REPORT("tied row: token %d outside the nucleus [0, %d)", tok, (int)n_keep);
                if (s->params[u].enable_log_probs && ref->rank[i] != tok + 1)
                    REPORT("tied row: rank %d != token + 1 = %d", ref->rank[i], tok + 1);
                continue;
            }
            const inv_params *pp = &s->params[u];
            const bool greedy = pp->temperature == 0.0f || pp->top_k == 1 || pp->top_p == 0.0f;
            const bool pen = pp->presence != 0.0f || pp->frequency != 0.0f || pp->repetition != 1.0f;
            if (greedy && !pen) {
                int32_t best = -1;
                for (int32_t t = 0; t < s->V; t++)
                    if (!isnan(row[t]) && (best < 0 || row[t] > row[best]))
                        best = t;
                if (tok != best)
                    REPORT("greedy: token %d != argmax %d", tok, best);
            }
        }
    }
    return bad;
}
