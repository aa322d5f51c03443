/* ms_generator: configuration, parameters, seeds and penalty state around the step. */
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/ms_rng.h"
#include "core/ms_generator_impl.h"

static _Thread_local char create_error[MS_ERRMSG_LEN];

const char *ms_create_last_error(void)
{
    return create_error;
}

void ms_mesh_config_init(ms_mesh_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->rows = cfg->cols = 1;
    cfg->sampling_dp = 1;
    cfg->max_batch_size = 32;
    cfg->num_links = 1;
    cfg->allow_force_argmax = true;
}

void ms_generator_config_init(ms_generator_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    ms_mesh_config_init(&cfg->mesh);
    cfg->backend = MS_BACKEND_HOST;
    cfg->max_logprobs = MS_MAX_TOP_LOGPROBS_DEFAULT;
    cfg->exact_candidates = MS_EXACT_CANDIDATES_DEFAULT;
    cfg->logprobs_mode = MS_LOGPROBS_RAW;
    cfg->penalty_order = MS_PENALTY_ORDER_OPENAI;
    cfg->enable_internal_trace = true;
    cfg->transport_timeout_ms = 30000;
}

const char *ms_generator_last_error(const ms_generator *g)
{
    return g ? g->err->msg : "generator is NULL";
}

/* An entropy seed for an unseeded slot: derived from the mesh-wide key, so every rank of an
 * MPI mesh that makes the same calls gets the same seeds. */
static int64_t entropy_seed(ms_generator *g)
{
    return (int64_t)(ms__stream_key(g->comm.entropy_key, g->entropy_ctr++) >> 1);
}

int32_t ms__device_of(const ms_generator *g, int32_t group, int32_t shard)
{
    int32_t other = g->dp > 1 ? group : 0;
    return g->axis == 0 ? shard * g->C + other : other * g->C + shard;
}

#define CFG_FAIL(...)                                                                             \
    do {                                                                                          \
        snprintf(create_error, sizeof create_error, __VA_ARGS__);                                \
        return MS_ERR_INVALID_CONFIG;                                                             \
    } while (0)

static ms_status check_config(const ms_generator_config *cfg)
{
    const ms_mesh_config *m = &cfg->mesh;
    if (m->vocab_size <= 0) CFG_FAIL("vocab_size is %d: must be > 0", (int)m->vocab_size);
    int32_t vp = m->padded_vocab_size ? m->padded_vocab_size : m->vocab_size;
    if (m->padded_vocab_size < 0 || vp < m->vocab_size)
        CFG_FAIL("padded_vocab_size %d is smaller than vocab_size %d", (int)m->padded_vocab_size,
                 (int)m->vocab_size);
    if (m->rows <= 0 || m->cols <= 0)
        CFG_FAIL("cluster shape %dx%d: rows and cols must be > 0", (int)m->rows, (int)m->cols);
    if (m->rows > 4096 || m->cols > 4096)
        CFG_FAIL("cluster shape %dx%d is too large", (int)m->rows, (int)m->cols);
    if (m->all_gather_axis != 0 && m->all_gather_axis != 1)
        CFG_FAIL("all_gather_axis is %d: must be 0 or 1", (int)m->all_gather_axis);
    if (m->max_batch_size <= 0)
        CFG_FAIL("max_batch_size is %d: must be > 0", (int)m->max_batch_size);
    if (m->max_top_k < 0) CFG_FAIL("max_top_k is %d: must be >= 0 (0 = exact mode)", (int)m->max_top_k);
    if (cfg->max_logprobs < 0) CFG_FAIL("max_logprobs is %d: must be >= 0", (int)cfg->max_logprobs);
    if (cfg->exact_candidates < 1)
        CFG_FAIL("exact_candidates is %d: must be >= 1", (int)cfg->exact_candidates);
    if (cfg->num_threads < 0) CFG_FAIL("num_threads is %d: must be >= 0", (int)cfg->num_threads);
    if (cfg->transport_timeout_ms < 0)
        CFG_FAIL("transport_timeout_ms is %d: must be >= 0", (int)cfg->transport_timeout_ms);
    if (m->num_links < 0) CFG_FAIL("num_links is %d: must be >= 0", (int)m->num_links);
    if (m->num_worker_cpus < 0 || (m->num_worker_cpus > 0 && !m->worker_cpus))
        CFG_FAIL("worker_cpus: %d cpus given with a NULL list", (int)m->num_worker_cpus);
    if (m->num_worker_cpus > 0) {
        cpu_set_t allowed;
        CPU_ZERO(&allowed);
        if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
        for (int32_t i = 0; i < m->num_worker_cpus; i++) {
            int32_t c = m->worker_cpus[i];
            if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
                CFG_FAIL("worker_cpus[%d] = %d is not a CPU this process may run on", (int)i,
                         (int)c);
        }
    }
    if ((unsigned)m->buffer_placement > MS_BUFFERS_HUGEPAGE)
        CFG_FAIL("buffer_placement %d unknown", (int)m->buffer_placement);
    if ((unsigned)cfg->logprobs_mode > MS_LOGPROBS_PROCESSED)
        CFG_FAIL("logprobs_mode %d unknown", (int)cfg->logprobs_mode);
    if ((unsigned)cfg->penalty_order > MS_PENALTY_ORDER_TT)
        CFG_FAIL("penalty_order %d unknown", (int)cfg->penalty_order);
    if (cfg->backend != MS_BACKEND_HOST && cfg->backend != MS_BACKEND_MPI)
        CFG_FAIL("backend %d unknown", (int)cfg->backend);
    int32_t R = m->rows, C = m->cols;
    int32_t axis = R == 1 && C > 1 ? 1 : (C == 1 ? 0 : m->all_gather_axis);
    int32_t T = axis == 0 ? R : C;
    int32_t O = (R * C) / T;
    if (vp % T != 0)
        CFG_FAIL("padded_vocab_size %d is not divisible by the %d devices of the gather axis",
                 (int)vp, (int)T);
    if (m->sampling_dp != 1 && m->sampling_dp != O)
        CFG_FAIL("sampling_dp is %d: must be 1%s (the non-gather axis of this %dx%d mesh has "
                 "%d devices)",
                 (int)m->sampling_dp, O > 1 ? " or that size" : "", (int)R, (int)C, (int)O);
    if ((int64_t)m->max_batch_size * m->sampling_dp > (1 << 24))
        CFG_FAIL("max_batch_size * sampling_dp = %lld users is too many",
                 (long long)m->max_batch_size * m->sampling_dp);
    return MS_OK;
}

static void workers_free(ms_generator *g)
{
    if (!g->workers) return;
    for (int32_t t = 0; t < g->nthreads; t++) {
        ms__free(g->workers[t].scan);
        ms__free(g->workers[t].merge);
        ms__free(g->workers[t].merge_raw);
        free(g->workers[t].fb);
        free(g->workers[t].fb_x);
        free(g->workers[t].fb_bin);
    }
    free(g->workers);
    g->workers = NULL;
}

void ms_generator_destroy(ms_generator *g)
{
    if (!g) return;
    ms__comm_destroy(&g->comm);
    for (int k = 0; k < MS_TRACE_KEYS; k++) free(g->traces[k].logits);
    free(g->xsend);
    free(g->xrecv);
    free(g->fsend);
    free(g->frecv);
    free(g->fcounts);
    free(g->osend);
    free(g->orecv);
    free(g->fall);
    free(g->cpus);
    workers_free(g);
    if (g->hist)
        for (int32_t u = 0; u < g->U; u++) ms__history_free(&g->hist[u]);
    free(g->hist);
    free(g->params);
    free(g->plan);
    free(g->seed);
    free(g->counter);
    ms__free(g->cand);
    ms__free(g->rawc);
    free(g->res);
    free(g->fb);
    free(g->uo);
    free(g->top_ids);
    free(g->top_lp);
    free(g->err);
    free(g);
}

static ms__user_plan plan_user(const ms_generator *g, const ms_slot_params *p)
{
    ms__user_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.greedy = ms__is_greedy(p);
    pl.logprobs = p->enable_log_probs;
    pl.n_top = pl.logprobs ? p->num_logprobs : 0;
    pl.penalties = ms__penalties_on(p);
    int32_t K;
    if (pl.greedy) K = 1;
    else if (p->top_k > 0) K = p->top_k;
    else K = g->cfg.exact_candidates;
    if (pl.n_top > K) K = pl.n_top;
    if (K > g->W) K = g->W;
    if (K < 1) K = 1;
    pl.K = K;
    pl.want_sum = pl.logprobs && g->cfg.logprobs_mode != MS_LOGPROBS_PROCESSED;
    pl.want_sum_t = !pl.greedy && p->top_k == 0 && p->top_p < 1.0f;
    pl.n_raw = pl.logprobs && pl.penalties && g->cfg.logprobs_mode == MS_LOGPROBS_RAW ? pl.n_top : 0;
    return pl;
}

void ms__generator_note_history(ms_generator *g, int32_t u)
{
    const ms__user_plan *pl = &g->plan[u];
    size_t b = ms__scan_scratch_bytes(pl->K, pl->penalties ? g->hist[u].n : 0, g->W);
    if (b > g->scratch_need) g->scratch_need = b;
}

static void recompute_scratch_need(ms_generator *g)
{
    g->scratch_need = 0;
    for (int32_t u = 0; u < g->U; u++) ms__generator_note_history(g, u);
}

ms_status ms__generator_replan(ms_generator *g)
{
    int32_t kcap = 1, rawcap = 0;
    g->force_argmax = g->cfg.mesh.allow_force_argmax;
    bool pen = false, lp = false;
    for (int32_t u = 0; u < g->U; u++) {
        g->plan[u] = plan_user(g, &g->params[u]);
        g->force_argmax &= g->plan[u].greedy && !g->plan[u].logprobs;
        pen |= g->plan[u].penalties;
        lp |= g->plan[u].logprobs;
        if (g->plan[u].K > kcap) kcap = g->plan[u].K;
        if (g->plan[u].n_raw > rawcap) rawcap = g->plan[u].n_raw;
    }
    /* The trace key of these parameters, kept here so a traced step need not scan the users. */
    g->trace_key = (pen ? 4 : 0) | (lp ? 2 : 0) | (g->force_argmax ? 1 : 0);
    if (kcap > g->kcap || rawcap > g->rawcap || !g->cand) {
        size_t slots = (size_t)g->U * (size_t)g->T;
        ms__cand *cand = ms__calloc(slots * (size_t)kcap, sizeof *cand);
        ms__cand *rawc = ms__calloc(slots * (size_t)(rawcap ? rawcap : 1), sizeof *rawc);
        ms__cand **merge = calloc((size_t)g->nthreads, sizeof *merge);
        ms__cand **merge_raw = calloc((size_t)g->nthreads, sizeof *merge_raw);
        bool ok = cand && rawc && merge && merge_raw;
        for (int32_t t = 0; ok && t < g->nthreads; t++) {
            merge[t] = ms__calloc((size_t)g->T * (size_t)kcap, sizeof(ms__cand));
            merge_raw[t] = ms__calloc((size_t)g->T * (size_t)(rawcap ? rawcap : 1),
                                      sizeof(ms__cand));
            ok = merge[t] && merge_raw[t];
        }
        if (!ok) {
            ms__free(cand);
            ms__free(rawc);
            for (int32_t t = 0; t < g->nthreads; t++) {
                if (merge) ms__free(merge[t]);
                if (merge_raw) ms__free(merge_raw[t]);
            }
            free(merge);
            free(merge_raw);
            return ms__err_set(g->err, MS_ERR_NO_MEMORY,
                               "out of memory for %d candidates per shard", (int)kcap);
        }
        ms__free(g->cand);
        ms__free(g->rawc);
        g->cand = cand;
        g->rawc = rawc;
        for (int32_t t = 0; t < g->nthreads; t++) {
            ms__free(g->workers[t].merge);
            ms__free(g->workers[t].merge_raw);
            g->workers[t].merge = merge[t];
            g->workers[t].merge_raw = merge_raw[t];
        }
        free(merge);
        free(merge_raw);
        g->kcap = kcap;
        g->rawcap = rawcap;
    }
    recompute_scratch_need(g);
    return MS_OK;
}

ms_status ms_generator_create(const ms_generator_config *cfg, ms_generator **out)
{
    create_error[0] = '\0';
    if (!out) {
        snprintf(create_error, sizeof create_error, "create: out is NULL");
        return MS_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (!cfg) {
        snprintf(create_error, sizeof create_error, "create: cfg is NULL");
        return MS_ERR_INVALID_ARGUMENT;
    }
    MS_FORWARD_IF_ERROR(check_config(cfg));
    ms_generator *g = calloc(1, sizeof *g);
    if (!g) goto oom;
    g->err = calloc(1, sizeof *g->err);
    if (!g->err) goto oom;
    g->cfg = *cfg;
    g->cfg.mesh.worker_cpus = NULL; /* borrowed during create only: copied below */
    if (cfg->mesh.num_worker_cpus > 0) {
        g->cpus = malloc((size_t)cfg->mesh.num_worker_cpus * sizeof *g->cpus);
        if (!g->cpus) goto oom;
        memcpy(g->cpus, cfg->mesh.worker_cpus, (size_t)cfg->mesh.num_worker_cpus * sizeof *g->cpus);
        g->ncpus = cfg->mesh.num_worker_cpus;
    }
    const ms_mesh_config *m = &cfg->mesh;
    g->V = m->vocab_size;
    g->Vp = m->padded_vocab_size ? m->padded_vocab_size : m->vocab_size;
    g->R = m->rows;
    g->C = m->cols;
    g->D = g->R * g->C;
    g->axis = g->R == 1 && g->C > 1 ? 1 : (g->C == 1 ? 0 : m->all_gather_axis);
    g->T = g->axis == 0 ? g->R : g->C;
    g->O = g->D / g->T;
    g->dp = m->sampling_dp;
    g->B = m->max_batch_size;
    g->U = g->B * g->dp;
    g->W = g->Vp / g->T;
    g->max_lp = cfg->max_logprobs;
    if (m->max_top_k > 0 && g->max_lp > m->max_top_k) g->max_lp = m->max_top_k;
    if (cfg->backend == MS_BACKEND_MPI) {
        ms_status cs = ms__comm_init_mpi(&g->comm, cfg->mpi_comm, g->R, g->C, g->axis, g->dp,
                                         cfg->mesh.num_links, cfg->transport_timeout_ms,
                                         create_error, sizeof create_error);
        if (cs != MS_OK) {
            free(g->err);
            free(g);
            return cs;
        }
    } else {
        ms__comm_init_host(&g->comm, g->T, g->O);
    }
    /* one rank per device shares the cores with its neighbours: one thread unless asked */
    int32_t nt = cfg->num_threads ? cfg->num_threads
                                  : (cfg->backend == MS_BACKEND_MPI ? 1 : omp_get_num_procs());
    if (nt < 1) nt = 1;
    if (nt > 256) nt = 256;
    g->nthreads = nt;
    g->replicate_slot = -1;
    g->params = calloc((size_t)g->U, sizeof *g->params);
    g->plan = calloc((size_t)g->U, sizeof *g->plan);
    g->seed = calloc((size_t)g->U, sizeof *g->seed);
    g->counter = calloc((size_t)g->U, sizeof *g->counter);
    g->hist = calloc((size_t)g->U, sizeof *g->hist);
    g->res = calloc((size_t)g->U * (size_t)g->T, sizeof *g->res);
    g->fb = calloc((size_t)g->U, sizeof *g->fb);
    g->fcounts = calloc((size_t)g->T, sizeof *g->fcounts);
    g->workers = calloc((size_t)nt, sizeof *g->workers);
    const size_t ntop = (size_t)g->U * (size_t)(g->max_lp ? g->max_lp : 1);
    g->uo = calloc((size_t)g->U, ms__user_out_size());
    g->top_ids = calloc(ntop, sizeof *g->top_ids);
    g->top_lp = calloc(ntop, sizeof *g->top_lp);
    if (!g->params || !g->plan || !g->seed || !g->counter || !g->hist || !g->res || !g->fb ||
        !g->workers || !g->uo || !g->top_ids || !g->top_lp || !g->fcounts)
        goto oom;
    const ms_slot_params d = ms__slot_params_default();
    for (int32_t u = 0; u < g->U; u++) {
        g->params[u] = d;
        g->params[u].temperature = 1.0f; /* formatted greedy */
        g->params[u].top_p = 0.0f;
        g->seed[u] = entropy_seed(g);
    }
    if (ms__generator_replan(g) != MS_OK) goto oom;
    *out = g;
    return MS_OK;
oom:
    ms_generator_destroy(g);
    snprintf(create_error, sizeof create_error, "create: out of memory");
    return MS_ERR_NO_MEMORY;
}

int32_t ms_generator_num_users(const ms_generator *g)
{
    return g ? g->U : 0;
}

int32_t ms_generator_num_shards(const ms_generator *g)
{
    return g ? (g->cfg.backend == MS_BACKEND_MPI ? 1 : g->D) : 0;
}

int32_t ms_generator_shard_width(const ms_generator *g)
{
    return g ? g->W : 0;
}

int32_t ms_generator_max_logprobs(const ms_generator *g)
{
    return g ? g->max_lp : 0;
}

ms_status ms_generator_device_view(ms_generator *g, const ms_logits *full, int32_t device,
                                   ms_logits *out)
{
    if (!g) return MS_ERR_MISUSE;
    ms__err *e = g->err;
    MS_RETURN_ERROR_IF(!full || !full->data || !out, e, MS_ERR_INVALID_ARGUMENT,
                       "device_view: full, full->data and out must not be NULL");
    MS_RETURN_ERROR_IF(device < 0 || device >= g->D, e, MS_ERR_INVALID_ARGUMENT,
                       "device_view: device %d outside the %dx%d mesh", (int)device, (int)g->R,
                       (int)g->C);
    int64_t stride = full->row_stride ? full->row_stride : g->Vp;
    MS_RETURN_ERROR_IF(stride < g->Vp, e, MS_ERR_INVALID_ARGUMENT,
                       "device_view: row_stride %lld is less than padded_vocab_size %d",
                       (long long)stride, (int)g->Vp);
    int32_t r = device / g->C, c = device % g->C;
    int32_t s = g->axis == 0 ? r : c;
    int32_t grp = g->dp > 1 ? (g->axis == 0 ? c : r) : 0;
    size_t off = ((size_t)grp * (size_t)g->B * (size_t)stride + (size_t)s * (size_t)g->W) *
                 ms__dtype_size(full->dtype);
    out->data = (const char *)full->data + off;
    out->dtype = full->dtype;
    out->row_stride = stride;
    g->err->msg[0] = '\0';
    return MS_OK;
}

/* ---- parameters ---- */

static ms_status check_slots(ms_generator *g, const int32_t *slots, int32_t n, const char *what)
{
    MS_RETURN_ERROR_IF(n < 0 || n > g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "%s: %d slots given for %d users", what, (int)n, (int)g->U);
    if (!slots) return MS_OK;
    for (int32_t i = 0; i < n; i++)
        MS_RETURN_ERROR_IF(slots[i] < 0 || slots[i] >= g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                           "%s: slot %d at index %d is outside [0, %d)", what, (int)slots[i],
                           (int)i, (int)g->U);
    return MS_OK;
}

ms_status ms_generator_set_params(ms_generator *g, const ms_slot_params *params, int32_t n,
                                  const int32_t *slots)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!params, g->err, MS_ERR_INVALID_ARGUMENT, "set_params: params is NULL");
    MS_RETURN_ERROR_IF(!slots && n != g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "set_params: %d params for %d users (pass slots to set fewer)", (int)n,
                       (int)g->U);
    MS_FORWARD_IF_ERROR(check_slots(g, slots, n, "set_params"));
    for (int32_t i = 0; i < n; i++) {
        int32_t slot = slots ? slots[i] : i;
        ms_status s = ms__slot_params_check(&params[i], slot, g->cfg.mesh.max_top_k, g->max_lp,
                                            g->err->msg, sizeof g->err->msg);
        if (s != MS_OK) return s;
    }
    ms_slot_params *saved = malloc((size_t)g->U * sizeof *saved);
    MS_RETURN_ERROR_IF(!saved, g->err, MS_ERR_NO_MEMORY, "set_params: out of memory");
    memcpy(saved, g->params, (size_t)g->U * sizeof *saved);
    for (int32_t i = 0; i < n; i++) g->params[slots ? slots[i] : i] = params[i];
    ms_status s = ms__generator_replan(g);
    if (s != MS_OK) { /* nothing changes on error */
        memcpy(g->params, saved, (size_t)g->U * sizeof *saved);
        ms__generator_replan(g);
    }
    free(saved);
    if (s == MS_OK) g->err->msg[0] = '\0';
    return s;
}

ms_status ms_generator_reset_sampling_params(ms_generator *g, const ms_sampling_params *p,
                                             const int32_t *empty_slots, int32_t n_slots)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!p, g->err, MS_ERR_INVALID_ARGUMENT, "reset_sampling_params: params is NULL");
    int32_t n = empty_slots ? n_slots : g->U;
    MS_FORWARD_IF_ERROR(check_slots(g, empty_slots, n, "reset_sampling_params"));
    if (n == 0) {
        g->err->msg[0] = '\0';
        return MS_OK;
    }
    ms_slot_params *f = malloc((size_t)n * sizeof *f);
    MS_RETURN_ERROR_IF(!f, g->err, MS_ERR_NO_MEMORY, "reset_sampling_params: out of memory");
    ms_errbuf eb;
    ms_status s = ms__params_format_slots(p, n, g->cfg.mesh.max_top_k, empty_slots, f, &eb);
    if (s != MS_OK) {
        free(f);
        return ms__err_set(g->err, s, "%s", eb.msg);
    }
    s = ms_generator_set_params(g, f, n, empty_slots);
    free(f);
    return s;
}

ms_status ms_generator_get_params(const ms_generator *g, int32_t slot, ms_slot_params *out)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!out || slot < 0 || slot >= g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "get_params: slot %d outside [0, %d) or out is NULL", (int)slot, (int)g->U);
    *out = g->params[slot];
    g->err->msg[0] = '\0';
    return MS_OK;
}

/* ---- seeds ---- */

ms_status ms_generator_reset_seed(ms_generator *g, const int64_t *seeds, int32_t n_seeds,
                                  const int32_t *slots, int32_t n_slots)
{
    if (!g) return MS_ERR_MISUSE;
    MS_FORWARD_IF_ERROR(check_slots(g, slots, n_slots, "reset_seed"));
    MS_RETURN_ERROR_IF(n_seeds < 0 || (n_seeds > 0 && !seeds), g->err, MS_ERR_INVALID_ARGUMENT,
                       "reset_seed: %d seeds with a NULL list", (int)n_seeds);
    for (int32_t i = 0; i < n_seeds && i < n_slots; i++)
        MS_RETURN_ERROR_IF(seeds[i] < MS_SEED_NONE, g->err, MS_ERR_INVALID_ARGUMENT,
                           "reset_seed: seed %lld for slot %d: must be >= 0 or -1 (none)",
                           (long long)seeds[i], (int)(slots ? slots[i] : i));
    for (int32_t i = 0; i < n_slots; i++) {
        int32_t s = slots ? slots[i] : i;
        int64_t v = i < n_seeds ? seeds[i] : MS_SEED_NONE;
        g->seed[s] = v == MS_SEED_NONE ? entropy_seed(g) : v;
        g->params[s].seed = v;
        g->counter[s] = 0;
    }
    g->err->msg[0] = '\0';
    return MS_OK;
}

ms_status ms_generator_get_new_values(ms_generator *g, const int32_t *slots, int32_t n_slots,
                                      bool replicate, uint64_t *keys)
{
    if (!g) return MS_ERR_MISUSE;
    MS_FORWARD_IF_ERROR(check_slots(g, slots, n_slots, "get_new_values"));
    MS_RETURN_ERROR_IF(replicate && n_slots != 1, g->err, MS_ERR_MISUSE,
                       "get_new_values: replicate_seeds needs exactly one slot, got %d",
                       (int)n_slots);
    for (int32_t i = 0; i < n_slots; i++) {
        int32_t s = slots ? slots[i] : i;
        if (keys) keys[i] = ms__stream_key((uint64_t)g->seed[s], g->counter[s]);
    }
    g->replicate_slot = replicate ? (slots ? slots[0] : 0) : -1;
    g->err->msg[0] = '\0';
    return MS_OK;
}

ms_status ms_generator_apply_slot_remap(ms_generator *g, const int32_t *remap, int32_t n)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!remap || n < 0 || n > g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "apply_slot_remap: remap of %d entries for %d users", (int)n, (int)g->U);
    for (int32_t i = 0; i < n; i++)
        MS_RETURN_ERROR_IF(remap[i] < -1 || remap[i] >= g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                           "apply_slot_remap: remap[%d] = %d is outside [-1, %d)", (int)i,
                           (int)remap[i], (int)g->U);
    /* Snapshot the sources so chains and swaps read the old state. */
    int64_t *seed = malloc((size_t)g->U * sizeof *seed);
    uint64_t *ctr = malloc((size_t)g->U * sizeof *ctr);
    int64_t *pseed = malloc((size_t)g->U * sizeof *pseed);
    ms__history *hist = calloc((size_t)g->U, sizeof *hist);
    bool *is_dst = calloc((size_t)g->U, sizeof *is_dst);
    bool *is_src = calloc((size_t)g->U, sizeof *is_src);
    ms_status st = (seed && ctr && pseed && hist && is_dst && is_src) ? MS_OK : MS_ERR_NO_MEMORY;
    for (int32_t i = 0; st == MS_OK && i < n; i++) {
        if (remap[i] < 0 || remap[i] == i) continue;
        is_dst[i] = true;
        is_src[remap[i]] = true;
    }
    for (int32_t u = 0; st == MS_OK && u < g->U; u++) {
        seed[u] = g->seed[u];
        ctr[u] = g->counter[u];
        pseed[u] = g->params[u].seed;
        if (is_src[u]) st = ms__history_copy(&hist[u], &g->hist[u]);
    }
    if (st == MS_OK) {
        for (int32_t i = 0; i < n; i++) {
            if (!is_dst[i]) continue;
            int32_t s = remap[i];
            g->seed[i] = seed[s];
            g->counter[i] = ctr[s];
            g->params[i].seed = pseed[s];
            if (ms__history_copy(&g->hist[i], &hist[s]) != MS_OK) st = MS_ERR_NO_MEMORY;
        }
        for (int32_t u = 0; u < g->U; u++) {
            if (!is_src[u] || is_dst[u]) continue;
            g->seed[u] = entropy_seed(g);
            g->params[u].seed = MS_SEED_NONE;
            g->counter[u] = 0;
            ms__history_clear(&g->hist[u]);
        }
    }
    if (hist)
        for (int32_t u = 0; u < g->U; u++) ms__history_free(&hist[u]);
    free(seed);
    free(ctr);
    free(pseed);
    free(hist);
    free(is_dst);
    free(is_src);
    MS_RETURN_ERROR_IF(st != MS_OK, g->err, st, "apply_slot_remap: out of memory");
    recompute_scratch_need(g);
    g->err->msg[0] = '\0';
    return MS_OK;
}

ms_status ms_generator_align_seed_counters(ms_generator *g, const int32_t *slots,
                                           const int64_t *positions, int32_t n, int64_t offset)
{
    if (!g) return MS_ERR_MISUSE;
    MS_FORWARD_IF_ERROR(check_slots(g, slots, n, "align_seed_counters"));
    MS_RETURN_ERROR_IF(n > 0 && (!slots || !positions), g->err, MS_ERR_INVALID_ARGUMENT,
                       "align_seed_counters: slots and positions must not be NULL");
    for (int32_t i = 0; i < n; i++) {
        /* position + offset in 128 bits (no signed overflow), clamped to the counter range */
        __int128 c = (__int128)positions[i] + offset;
        g->counter[slots[i]] = c < 0 ? 0 : (c > (__int128)UINT64_MAX ? UINT64_MAX : (uint64_t)c);
    }
    g->err->msg[0] = '\0';
    return MS_OK;
}

ms_status ms_generator_get_seed(const ms_generator *g, int32_t slot, int64_t *seed,
                                uint64_t *counter)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(slot < 0 || slot >= g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "get_seed: slot %d outside [0, %d)", (int)slot, (int)g->U);
    if (seed) *seed = g->seed[slot];
    if (counter) *counter = g->counter[slot];
    g->err->msg[0] = '\0';
    return MS_OK;
}

/* ---- penalty state ---- */

static ms_status check_tokens(ms_generator *g, const int32_t *tokens, int32_t rows, int32_t cols,
                              const int32_t *slots, const char *what)
{
    MS_RETURN_ERROR_IF(rows < 0 || cols < 0 || (rows > 0 && cols > 0 && !tokens), g->err,
                       MS_ERR_INVALID_ARGUMENT, "%s: [%d, %d] tokens with a NULL matrix", what,
                       (int)rows, (int)cols);
    MS_RETURN_ERROR_IF(rows > g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "%s: %d rows for %d users", what, (int)rows, (int)g->U);
    MS_FORWARD_IF_ERROR(check_slots(g, slots, slots ? rows : 0, what));
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < cols; c++) {
            int32_t t = tokens[(size_t)r * cols + c];
            MS_RETURN_ERROR_IF(t < -1 || t >= g->V, g->err, MS_ERR_INVALID_ARGUMENT,
                               "%s: token %d of slot %d (row %d, column %d) is outside the "
                               "vocabulary [0, %d) (-1 is padding)",
                               what, (int)t, (int)(slots ? slots[r] : r), (int)r, (int)c, (int)g->V);
        }
    return MS_OK;
}

static ms_status reset_history(ms_generator *g, const int32_t *tokens, int32_t rows, int32_t cols,
                               const int32_t *slots, bool prompt, const char *what)
{
    if (!g) return MS_ERR_MISUSE;
    MS_FORWARD_IF_ERROR(check_tokens(g, tokens, rows, cols, slots, what));
    /* Stage into copies so an allocation failure changes nothing. */
    int32_t nslots = slots ? rows : g->U;
    ms__history *next = calloc((size_t)(nslots ? nslots : 1), sizeof *next);
    MS_RETURN_ERROR_IF(!next, g->err, MS_ERR_NO_MEMORY, "%s: out of memory", what);
    ms_status st = MS_OK;
    for (int32_t i = 0; st == MS_OK && i < nslots; i++) {
        int32_t s = slots ? slots[i] : i;
        st = ms__history_copy(&next[i], &g->hist[s]);
        if (st != MS_OK) break;
        ms__history_reset(&next[i], prompt);
        if (tokens && i < rows)
            for (int32_t c = 0; st == MS_OK && c < cols; c++) {
                int32_t t = tokens[(size_t)i * cols + c];
                if (t < 0) continue;
                st = prompt ? ms__history_add_prompt(&next[i], t)
                            : ms__history_add_output(&next[i], t, 1);
            }
    }
    if (st == MS_OK) {
        for (int32_t i = 0; i < nslots; i++) {
            int32_t s = slots ? slots[i] : i;
            ms__history_free(&g->hist[s]);
            g->hist[s] = next[i];
            next[i] = (ms__history){0};
        }
    }
    for (int32_t i = 0; i < nslots; i++) ms__history_free(&next[i]);
    free(next);
    MS_RETURN_ERROR_IF(st != MS_OK, g->err, st, "%s: out of memory", what);
    recompute_scratch_need(g);
    g->err->msg[0] = '\0';
    return MS_OK;
}

ms_status ms_generator_reset_prompt_tokens(ms_generator *g, const int32_t *tokens, int32_t rows,
                                           int32_t cols, const int32_t *slots)
{
    return reset_history(g, tokens, rows, cols, slots, true, "reset_prompt_tokens");
}

ms_status ms_generator_reset_output_state(ms_generator *g, const int32_t *tokens, int32_t rows,
                                          int32_t cols, const int32_t *slots)
{
    if (g && !tokens && !slots) rows = 0; /* zero every slot */
    return reset_history(g, tokens, rows, cols, slots, false, "reset_output_state");
}

ms_status ms_generator_get_token_state(const ms_generator *g, int32_t slot, int32_t token,
                                       int32_t *out_count, bool *in_prompt)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(slot < 0 || slot >= g->U, g->err, MS_ERR_INVALID_ARGUMENT,
                       "get_token_state: slot %d outside [0, %d)", (int)slot, (int)g->U);
    MS_RETURN_ERROR_IF(token < 0 || token >= g->V, g->err, MS_ERR_INVALID_ARGUMENT,
                       "get_token_state: token %d outside the vocabulary [0, %d)", (int)token,
                       (int)g->V);
    const ms__hist_entry *e = ms__history_find(&g->hist[slot], token);
    if (out_count) *out_count = e ? e->count : 0;
    if (in_prompt) *in_prompt = e ? e->in_prompt != 0 : false;
    g->err->msg[0] = '\0';
    return MS_OK;
}

/* ---- the step ---- */

ms_status ms_generator_reset_trace(ms_generator *g)
{
    if (!g) return MS_ERR_MISUSE;
    for (int k = 0; k < MS_TRACE_KEYS; k++) {
        free(g->traces[k].logits);
        memset(&g->traces[k], 0, sizeof g->traces[k]);
    }
    g->err->msg[0] = '\0';
    return MS_OK;
}

static bool same_output(const ms_step_output *a, const ms_step_output *b)
{
    return a->tokens == b->tokens && a->row_error == b->row_error && a->logprob == b->logprob &&
           a->rank == b->rank && a->top_count == b->top_count && a->top_ids == b->top_ids &&
           a->top_logprobs == b->top_logprobs;
}

ms_status ms_generator_sample(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                              bool enable_trace, const ms_step_output *out)
{
    if (!g) return MS_ERR_MISUSE;
    if (!enable_trace || !g->cfg.enable_internal_trace)
        return ms__step(g, logits, n_logits, 0, true, false, out);
    const int key = g->trace_key;
    ms__trace *t = &g->traces[key];
    if (!t->captured) {
        /* Capture: a full eager step, then remember the exact buffers it was bound to. */
        ms_status st = ms__step(g, logits, n_logits, 0, true, false, out);
        if (st != MS_OK) return st;
        ms_logits *copy = malloc((size_t)n_logits * sizeof *copy);
        MS_RETURN_ERROR_IF(!copy, g->err, MS_ERR_NO_MEMORY, "sample: out of memory for the trace");
        memcpy(copy, logits, (size_t)n_logits * sizeof *copy);
        t->logits = copy;
        t->n_logits = n_logits;
        t->out = *out;
        t->captured = true;
        return MS_OK;
    }
    /* Replay: only the buffers' identity is checked. */
    static const char *const names[] = {"", "force-argmax", "log-probs", "log-probs, force-argmax",
                                        "penalties", "penalties, force-argmax",
                                        "penalties, log-probs", "penalties, log-probs, force-argmax"};
    MS_RETURN_ERROR_IF(!logits || !out || n_logits != t->n_logits, g->err, MS_ERR_TRACE,
                       "sample: the trace for key (%s) was captured with %d logits buffers and "
                       "other outputs; call ms_generator_reset_trace() before tracing with new "
                       "buffers",
                       names[key], (int)t->n_logits);
    for (int32_t d = 0; d < n_logits; d++)
        MS_RETURN_ERROR_IF(logits[d].data != t->logits[d].data ||
                               logits[d].dtype != t->logits[d].dtype ||
                               logits[d].row_stride != t->logits[d].row_stride,
                           g->err, MS_ERR_TRACE,
                           "sample: logits buffer %d is not the one the trace for key (%s) was "
                           "captured with; call ms_generator_reset_trace() before tracing with "
                           "new buffers",
                           (int)d, names[key]);
    MS_RETURN_ERROR_IF(!same_output(out, &t->out), g->err, MS_ERR_TRACE,
                       "sample: the output buffers are not the ones the trace for key (%s) was "
                       "captured with; call ms_generator_reset_trace() before tracing with new "
                       "buffers",
                       names[key]);
    return ms__step(g, logits, n_logits, 0, true, true, out);
}

ms_status ms_generator_sample_peek(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                                   uint64_t draw_offset, const ms_step_output *out)
{
    if (!g) return MS_ERR_MISUSE;
    return ms__step(g, logits, n_logits, draw_offset, false, false, out);
}

void ms__generator_inject_fault(ms_generator *g, int64_t n, ms_status status)
{
    if (g) ms__comm_inject_fault(&g->comm, n, status);
}

/* ---- TT's lifecycle calls ---- */

ms_status ms_generator_apply_prefill_state(ms_generator *g, const ms_sampling_params *p,
                                           const int32_t *prompt_tokens, int32_t prompt_rows,
                                           int32_t prompt_cols, const int32_t *empty_slots,
                                           int32_t n_slots, bool replicate_seeds)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!p, g->err, MS_ERR_INVALID_ARGUMENT, "apply_prefill_state: params is NULL");
    const int32_t n = empty_slots ? n_slots : g->U;
    MS_FORWARD_IF_ERROR(check_slots(g, empty_slots, n, "apply_prefill_state"));
    MS_RETURN_ERROR_IF(replicate_seeds && n != 1, g->err, MS_ERR_MISUSE,
                       "apply_prefill_state: replicate_seeds needs exactly one slot, got %d",
                       (int)n);
    MS_RETURN_ERROR_IF(prompt_tokens && prompt_rows > n, g->err, MS_ERR_INVALID_ARGUMENT,
                       "apply_prefill_state: %d prompt rows for %d slots", (int)prompt_rows,
                       (int)n);
    if (n == 0) {
        g->err->msg[0] = '\0';
        return MS_OK;
    }
    /* Everything is checked before anything changes. */
    ms_slot_params *f = malloc((size_t)n * sizeof *f);
    int64_t *seeds = malloc((size_t)n * sizeof *seeds);
    int32_t *all = empty_slots ? NULL : malloc((size_t)n * sizeof *all);
    if (!f || !seeds || (!empty_slots && !all)) {
        free(f);
        free(seeds);
        free(all);
        return ms__err_set(g->err, MS_ERR_NO_MEMORY, "apply_prefill_state: out of memory");
    }
    const int32_t *slots = empty_slots;
    if (!slots) {
        for (int32_t i = 0; i < n; i++) all[i] = i;
        slots = all;
    }
    ms_errbuf eb;
    ms_status st = ms__params_format_slots(p, n, g->cfg.mesh.max_top_k, slots, f, &eb);
    if (st != MS_OK) ms__err_set(g->err, st, "apply_prefill_state: %s", eb.msg);
    for (int32_t i = 0; st == MS_OK && i < n; i++) {
        st = ms__slot_params_check(&f[i], slots[i], g->cfg.mesh.max_top_k, g->max_lp, g->err->msg,
                                   sizeof g->err->msg);
        seeds[i] = f[i].seed;
    }
    if (st == MS_OK && prompt_tokens)
        st = check_tokens(g, prompt_tokens, prompt_rows, prompt_cols, slots, "apply_prefill_state");
    /* TT's order: params, seeds, new values, prompt, output counts. */
    if (st == MS_OK) st = ms_generator_set_params(g, f, n, slots);
    if (st == MS_OK) st = ms_generator_reset_seed(g, seeds, n, slots, n);
    if (st == MS_OK) st = ms_generator_get_new_values(g, slots, n, replicate_seeds, NULL);
    if (st == MS_OK && prompt_tokens)
        st = ms_generator_reset_prompt_tokens(g, prompt_tokens, prompt_rows, prompt_cols, slots);
    if (st == MS_OK) st = ms_generator_reset_output_state(g, NULL, n, 0, slots);
    free(f);
    free(seeds);
    free(all);
    return st;
}

ms_status ms_generator_apply_decode_state(ms_generator *g, const ms_sampling_params *chunks,
                                          int32_t n_chunks, bool reset_batch,
                                          const int32_t *prompt_tokens, int32_t prompt_cols,
                                          const int32_t *output_tokens, int32_t output_cols)
{
    if (!g) return MS_ERR_MISUSE;
    MS_RETURN_ERROR_IF(!chunks, g->err, MS_ERR_INVALID_ARGUMENT, "apply_decode_state: chunks is NULL");
    MS_RETURN_ERROR_IF(n_chunks != 1 && n_chunks != g->dp, g->err, MS_ERR_INVALID_ARGUMENT,
                       "apply_decode_state: %d chunks: must be 1 or sampling_dp (%d)",
                       (int)n_chunks, (int)g->dp);
    ms_slot_params *f = calloc((size_t)g->U, sizeof *f);
    MS_RETURN_ERROR_IF(!f, g->err, MS_ERR_NO_MEMORY, "apply_decode_state: out of memory");
    const int32_t per = g->U / n_chunks;
    int32_t *slots = malloc((size_t)g->U * sizeof *slots);
    if (!slots) {
        free(f);
        return ms__err_set(g->err, MS_ERR_NO_MEMORY, "apply_decode_state: out of memory");
    }
    for (int32_t u = 0; u < g->U; u++) slots[u] = u; /* messages name the slot, not the index */
    ms_status st = MS_OK;
    for (int32_t c = 0; st == MS_OK && c < n_chunks; c++) {
        /* Row-sharded chunks, each formatted to its group's users, then merged in order. */
        ms_errbuf eb;
        st = ms__params_format_slots(&chunks[c], per, g->cfg.mesh.max_top_k,
                                     slots + (size_t)c * per, f + (size_t)c * per, &eb);
        if (st != MS_OK)
            ms__err_set(g->err, st, "apply_decode_state: chunk %d: %s", (int)c, eb.msg);
    }
    if (st == MS_OK && reset_batch && prompt_tokens)
        st = check_tokens(g, prompt_tokens, g->U, prompt_cols, NULL, "apply_decode_state");
    if (st == MS_OK && reset_batch && output_tokens)
        st = check_tokens(g, output_tokens, g->U, output_cols, NULL, "apply_decode_state");
    if (st == MS_OK) st = ms_generator_set_params(g, f, g->U, NULL);
    free(f);
    free(slots);
    if (st != MS_OK || !reset_batch) return st;
    st = ms_generator_reset_prompt_tokens(g, prompt_tokens, prompt_tokens ? g->U : 0,
                                          prompt_cols, NULL);
    if (st == MS_OK)
        st = ms_generator_reset_output_state(g, output_tokens, output_tokens ? g->U : 0,
                                             output_cols, NULL);
    return st;
}
