/*
 * `meshsample demo`: the README's main job on a built-in, deterministic example, no input files.
 *
 * A toy language model decodes 128 users on a 4x8 host mesh (the vocabulary of 128256 ids
 * sharded over the 8 devices of a mesh row, all_gather_axis 1; sampling_dp 4, one DP group of
 * 32 users per mesh row). Each step the model writes the logits of every user into one full
 * [128, 128256] f32 matrix, always the same buffer, which the library reads through the 32
 * device views of ms_generator_device_view. Users mix greedy, top-k, top-p, min-p, penalties
 * and log-probs, all seeded; requests finish and new ones take their slots mid-run
 * (reset_sampling_params with empty_slots, reset_seed, reset_prompt_tokens,
 * reset_output_state for those slots).
 *
 * Every step is sampled twice on the same logits: by the eager generator and by a traced twin
 * (ms_generator_sample with enable_trace; fixed output buffers, so a captured trace stays
 * valid), in alternating order so neither always finds the logits warm in the cache. Only the
 * ms_generator_sample calls are timed. The twin must give the same tokens, log-probs and ranks.
 *
 * The toy model: the logits of request r after tokens (.., a, b) are a normal(0, 2.5)
 * background (a window of a precomputed pool of normals, at an offset hashed from r, a and b:
 * a memcpy per row, so a step costs about one write of the matrix), 8 preferred next tokens
 * that depend on b (6 of them from 512 common ids, 2 anywhere), at 19, 18.2, 17.4, ... plus a
 * jitter hashed from (r, a, b), and 2 topic tokens of request r at about 15. Greedy chains
 * therefore revisit tokens after a while, and penalties visibly steer away from them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define CMD "demo"

#define DEMO_ROWS 4
#define DEMO_COLS 8
#define DEMO_DP 4
#define DEMO_B 32
#define DEMO_U (DEMO_B * DEMO_DP)
#define DEMO_VOCAB 128256
#define DEMO_BOS 128000          /* ids >= this are "special" in the toy vocabulary */
#define DEMO_STEPS_DEFAULT 40
#define DEMO_TOPN 3
#define DEMO_PROMPT_MAX 8
#define DEMO_NPREF 8
#define DEMO_NCOMMON 512
#define DEMO_NTOPIC 2
#define DEMO_POOL (1 << 20)
#define DEMO_SEED 0x6d65736873616d70ull /* "meshsamp" */
#define DEMO_LP_LINES 12
#define DEMO_WRAP 13

static const char demo_usage[] =
    "usage: meshsample demo [--steps N] [--threads N] [--json]\n"
    "\n"
    "Decode loop of a built-in, deterministic toy language model (no input files): 128 users on\n"
    "a 4x8 host mesh (vocabulary 128256 sharded over the 8 devices of a row, all_gather_axis 1;\n"
    "sampling_dp 4: one DP group of 32 users per row), logits in one [128, 128256] f32 matrix\n"
    "read through ms_generator_device_view. Users mix greedy, top-k, top-p, min-p, penalties and\n"
    "log-probs with fixed seeds; requests finish and new ones enter their slots mid-run.\n"
    "\n"
    "Prints the configuration, the lifecycle, the token streams of 4 users, the log-probs of one,\n"
    "and the step time (ms_generator_sample only: median, p10, p90) eager and traced: each step\n"
    "is sampled by the eager generator and by a traced twin on the same logits, and the twin\n"
    "must agree. Everything but the timing lines (those with \"ms\") is deterministic.\n"
    "\n"
    "  --steps N     decode steps (default 40)\n"
    "  --threads N   worker threads (default: the online cores; 0 = the library's choice)\n"
    "  --json        one JSON summary object instead of the text\n"
    "\n"
    "Progress goes to stderr when it is a terminal.\n";

/* ---- user classes ---------------------------------------------------------------------------- */

typedef struct demo_class {
    const char *name;
    float temperature, top_p, min_p, presence, frequency, repetition;
    int64_t top_k;
    bool logprobs;
} demo_class;

#define DEMO_NCLASS 8
static const demo_class demo_classes[DEMO_NCLASS] = {
    {"greedy", 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0, false},
    {"T=0.8 top-k 20", 0.8f, 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 20, false},
    {"T=1.0 top-p 0.9", 1.0f, 0.9f, 0.0f, 0.0f, 0.0f, 1.0f, 0, false},
    {"T=1.0 min-p 0.1, log-probs", 1.0f, 1.0f, 0.1f, 0.0f, 0.0f, 1.0f, 0, true},
    {"T=0.7 k=40 p=0.95, presence 0.5 frequency 0.3 repetition 1.2", 0.7f, 0.95f, 0.0f, 0.5f,
     0.3f, 1.2f, 40, false},
    {"greedy, repetition 1.5, log-probs", 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 1.5f, 0, true},
    {"T=1.2 top-p 0.8, log-probs", 1.2f, 0.8f, 0.0f, 0.0f, 0.0f, 1.0f, 0, true},
    {"T=0.9 k=50 p=0.95 min-p 0.05, frequency 0.5", 0.9f, 0.95f, 0.05f, 0.0f, 0.5f, 1.0f, 50,
     false},
};

/* The users whose streams are printed: four classes, one per DP group. The log-probs user is
 * the first request of LP_SLOT. */
#define DEMO_NSHOW 4
static const int32_t demo_show[DEMO_NSHOW] = {0, 45, 76, 110};
#define DEMO_LP_SLOT 110

/* ---- deterministic hashing ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash3(uint64_t a, uint64_t b, uint64_t c)
{
    return mix64(mix64(mix64(DEMO_SEED ^ a) ^ b) ^ c);
}

static double unit(uint64_t h) /* [0, 1) */
{
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- requests -------------------------------------------------------------------------------- */

typedef struct demo_request {
    int32_t id, cls, length, generated, first_step;
    int64_t seed;
    int32_t prompt_len;
    int32_t prompt[DEMO_PROMPT_MAX];
} demo_request;

typedef struct demo_model {
    float *pool;                     /* DEMO_POOL normal(0, 2.5) values */
    int32_t common[DEMO_NCOMMON];    /* the "common" token ids */
} demo_model;

static void request_init(demo_request *r, int32_t id, int32_t cls, int32_t first_step,
                         const demo_model *m)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->cls = cls;
    r->first_step = first_step;
    r->length = 4 + (int32_t)(hash3(1, (uint64_t)id, 0) % 37); /* 4..40 tokens */
    r->seed = 1000 + id;
    r->prompt_len = 4 + (int32_t)(hash3(2, (uint64_t)id, 0) % 5); /* 4..8 tokens */
    for (int32_t j = 0; j < DEMO_PROMPT_MAX; j++)
        r->prompt[j] = -1;
    r->prompt[0] = DEMO_BOS;
    for (int32_t j = 1; j < r->prompt_len; j++)
        r->prompt[j] = m->common[hash3(3, (uint64_t)id, (uint64_t)j) % DEMO_NCOMMON];
}

/* The class of the n-th request that enters mid-run: a fixed walk through the classes. */
static int32_t new_request_class(int32_t id)
{
    return (int32_t)(hash3(4, (uint64_t)id, 0) % DEMO_NCLASS);
}

static int model_init(demo_model *m)
{
    m->pool = malloc((size_t)DEMO_POOL * sizeof *m->pool);
    if (!m->pool)
        return -1;
    uint64_t st = DEMO_SEED;
    for (int32_t i = 0; i < DEMO_POOL; i++)
        m->pool[i] = (float)(2.5 * cli_rand_normal(&st));
    for (int32_t j = 0; j < DEMO_NCOMMON; j++)
        m->common[j] = (int32_t)(hash3(5, (uint64_t)j, 0) % DEMO_BOS);
    return 0;
}

/* One row of logits of request r whose last two tokens are a, b. */
static void model_row(const demo_model *m, float *row, int32_t r, int32_t a, int32_t b)
{
    const uint64_t h = hash3((uint64_t)r, (uint64_t)(uint32_t)a, (uint64_t)(uint32_t)b);
    const uint64_t off = h % (uint64_t)(DEMO_POOL - DEMO_VOCAB + 1);
    memcpy(row, m->pool + off, (size_t)DEMO_VOCAB * sizeof *row);
    /* Topic tokens of the request first, so the previous token's preferences win a collision. */
    for (int32_t i = 0; i < DEMO_NTOPIC; i++) {
        const uint64_t ht = hash3(6, (uint64_t)r, (uint64_t)i);
        row[m->common[ht % DEMO_NCOMMON]] = (float)(14.5 + unit(mix64(h ^ ht)));
    }
    for (int32_t i = 0; i < DEMO_NPREF; i++) {
        const uint64_t hb = hash3(7, (uint64_t)(uint32_t)b, (uint64_t)i);
        const int32_t id = i < 6 ? m->common[hb % DEMO_NCOMMON] : (int32_t)((hb >> 16) % DEMO_BOS);
        row[id] = (float)(19.0 - 0.8 * i + 1.5 * unit(mix64(h + (uint64_t)i)));
    }
}

/* ---- installing requests into a generator ---------------------------------------------------- */

/* Installs reqs[i] into slots[i] (slots NULL: reqs holds all DEMO_U slots, the start state).
 * On failure *what names the call. */
static ms_status install(ms_generator *g, const demo_request *reqs, const int32_t *slots, int32_t n,
                         const char **what)
{
    float temp[DEMO_U], topp[DEMO_U], minp[DEMO_U], pres[DEMO_U], freq[DEMO_U], rep[DEMO_U];
    int64_t topk[DEMO_U], lp[DEMO_U], seeds[DEMO_U];
    int32_t prompts[DEMO_U][DEMO_PROMPT_MAX];
    for (int32_t i = 0; i < n; i++) {
        const demo_class *c = &demo_classes[reqs[i].cls];
        temp[i] = c->temperature, topp[i] = c->top_p, minp[i] = c->min_p;
        pres[i] = c->presence, freq[i] = c->frequency, rep[i] = c->repetition;
        topk[i] = c->top_k, lp[i] = c->logprobs ? 1 : 0, seeds[i] = reqs[i].seed;
        memcpy(prompts[i], reqs[i].prompt, sizeof prompts[i]);
    }
    ms_sampling_params p;
    ms_sampling_params_init(&p);
    p.temperature = ms_flist(temp, n);
    p.top_k = ms_ilist(topk, n);
    p.top_p = ms_flist(topp, n);
    p.min_p = ms_flist(minp, n);
    p.presence_penalty = ms_flist(pres, n);
    p.frequency_penalty = ms_flist(freq, n);
    p.repetition_penalty = ms_flist(rep, n);
    p.seed = ms_ilist(seeds, n);
    p.enable_log_probs = ms_ilist(lp, n);
    p.num_logprobs = ms_iscalar(DEMO_TOPN);
    ms_status st;
    *what = "reset_sampling_params";
    if ((st = ms_generator_reset_sampling_params(g, &p, slots, slots ? n : 0)) != MS_OK)
        return st;
    *what = "reset_seed";
    if ((st = ms_generator_reset_seed(g, seeds, n, slots, n)) != MS_OK)
        return st;
    *what = "reset_prompt_tokens";
    st = ms_generator_reset_prompt_tokens(g, &prompts[0][0], n, DEMO_PROMPT_MAX, slots);
    if (st != MS_OK)
        return st;
    *what = "reset_output_state";
    return ms_generator_reset_output_state(g, NULL, slots ? n : 0, 0, slots);
}

/* ---- small helpers --------------------------------------------------------------------------- */

/* Erase the progress line (stderr is a terminal). */
static void progress_clear(bool progress)
{
    if (progress)
        fputs("\r\033[K", stderr);
}


typedef struct demo_stats {
    int32_t n;
    double median, p10, p90;
} demo_stats;

/* Median and nearest-rank p10/p90 of x[0..n); sorts x. */
static demo_stats stats_of(double *x, int32_t n)
{
    demo_stats s = {n, NAN, NAN, NAN};
    if (n <= 0)
        return s;
    qsort(x, (size_t)n, sizeof *x, cli_cmp_double);
    s.median = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
    s.p10 = x[(int32_t)(0.1 * (n - 1) + 0.5)];
    s.p90 = x[(int32_t)(0.9 * (n - 1) + 0.5)];
    return s;
}

static bool same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

/* First user where the two outputs differ (tokens, log-prob, rank, top lists), or -1. */
static int32_t first_difference(const ms_step_output *x, const ms_step_output *y, int32_t stride)
{
    for (int32_t u = 0; u < DEMO_U; u++) {
        if (x->tokens[u] != y->tokens[u] || x->row_error[u] != y->row_error[u] ||
            !same_float(x->logprob[u], y->logprob[u]) || x->rank[u] != y->rank[u] ||
            x->top_count[u] != y->top_count[u])
            return u;
        for (int32_t j = 0; j < x->top_count[u] && j < stride; j++)
            if (x->top_ids[(size_t)u * stride + j] != y->top_ids[(size_t)u * stride + j] ||
                !same_float(x->top_logprobs[(size_t)u * stride + j],
                            y->top_logprobs[(size_t)u * stride + j]))
                return u;
    }
    return -1;
}

static void sb_json_string(strbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            sb_printf(b, " ");
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

static void sb_stats_json(strbuf *b, const char *name, demo_stats s, double first)
{
    sb_printf(b, "\"%s\":{\"steps\":%d,\"median_ms\":", name, (int)s.n);
    sb_float(b, (float)s.median);
    sb_printf(b, ",\"p10_ms\":");
    sb_float(b, (float)s.p10);
    sb_printf(b, ",\"p90_ms\":");
    sb_float(b, (float)s.p90);
    sb_printf(b, ",\"step0_ms\":");
    sb_float(b, (float)first);
    sb_printf(b, "}");
}

static void sb_stats_row(strbuf *b, const char *name, demo_stats s, double first)
{
    if (s.n > 0)
        sb_printf(b, "  %-12s %9.3f %9.3f %9.3f %9.3f\n", name, s.median, s.p10, s.p90, first);
    else
        sb_printf(b, "  %-12s %9s %9s %9s %9.3f\n", name, "-", "-", "-", first);
}

/* ---- options --------------------------------------------------------------------------------- */

typedef struct demo_opts {
    int32_t steps, threads;
    bool json;
} demo_opts;

/* 0, 1 after --help, -1 after printing the error. */
static int parse_args(int argc, char **argv, demo_opts *d)
{
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->steps = DEMO_STEPS_DEFAULT;
    d->threads = cores > 0 ? (int32_t)(cores < 64 ? cores : 64) : 1;
    d->json = false;
    cli_opts o;
    cli_opts_init(&o, argc, argv);
    while (cli_opts_next(&o)) {
        const char *v = NULL;
        bool bad = false;
        if (cli_opt_is(&o, "help")) {
            fputs(demo_usage, stdout);
            return 1;
        } else if (cli_opt_is(&o, "steps")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 100000, &d->steps);
        } else if (cli_opt_is(&o, "threads")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 4096, &d->threads);
        } else if (cli_opt_is(&o, "json")) {
            d->json = cli_opt_flag(&o);
        } else {
            cli_opt_unknown(&o);
        }
        if (cli_opt_bad(&o, bad, v))
            break;
    }
    if (o.error) {
        cli_error(CMD, "%s", o.msg);
        return -1;
    }
    return 0;
}

/* ---- the run --------------------------------------------------------------------------------- */

enum { EAGER = 0, TRACED = 1 };

typedef struct demo_lp_entry {
    int32_t step, token, rank, count;
    float logprob;
    int32_t top_ids[DEMO_TOPN];
    float top_lp[DEMO_TOPN];
} demo_lp_entry;

/* Everything a run owns and what it reports. */
typedef struct demo_run {
    demo_opts opt;
    bool progress;
    demo_model model;
    ms_generator *gen[2];
    ms_logits views[DEMO_ROWS * DEMO_COLS];
    int32_t n_views, stride, width;
    ms_step_output out[2];
    float *logits;                /* the one [U, V] matrix */
    demo_request reqs[DEMO_U];    /* the request in each slot */
    int32_t ctx[DEMO_U][2];       /* its last two tokens */
    int32_t next_id;

    double *t_step[2];            /* sample() times of steps 1.. (eager; traced replays) */
    double *t_gen;                /* logits generation per step */
    double first_ms[2];           /* step 0 (warm-up; the trace capture) */
    int32_t n_traced;
    bool trace_on;
    int32_t trace_fallback_step;
    char trace_msg[320];
    int32_t mismatch_step, mismatch_user, mismatch_tok[2];

    int32_t *show_tok, *show_req; /* [steps][DEMO_NSHOW] */
    demo_request *show_hist;      /* [DEMO_NSHOW][steps + 1]: requests that held a shown slot */
    int32_t n_show_hist[DEMO_NSHOW];
    demo_lp_entry *lp_log;
    int32_t n_lp, lp_req;

    int32_t finished, entered, first_entry;
    int64_t tokens_sampled, bad_rows;
    uint64_t digest; /* FNV-1a over every sampled token */
    double wall_s;
} demo_run;

static void run_free(demo_run *r)
{
    for (int k = 0; k < 2; k++) {
        cli_step_output_free(&r->out[k]);
        ms_generator_destroy(r->gen[k]);
        free(r->t_step[k]);
    }
    free(r->model.pool);
    free(r->t_gen);
    free(r->show_tok);
    free(r->show_req);
    free(r->show_hist);
    free(r->lp_log);
    free(r->logits);
}

/* Allocates, creates the two generators and installs requests 0..127. Returns an exit status
 * after printing the error, or CLI_EXIT_OK. */
static int run_setup(demo_run *r)
{
    const int32_t S = r->opt.steps;
    r->logits = malloc((size_t)DEMO_U * DEMO_VOCAB * sizeof *r->logits);
    r->t_step[0] = calloc((size_t)S, sizeof(double));
    r->t_step[1] = calloc((size_t)S, sizeof(double));
    r->t_gen = calloc((size_t)S, sizeof(double));
    r->show_tok = malloc((size_t)S * DEMO_NSHOW * sizeof *r->show_tok);
    r->show_req = malloc((size_t)S * DEMO_NSHOW * sizeof *r->show_req);
    r->show_hist = calloc((size_t)(S + 1) * DEMO_NSHOW, sizeof *r->show_hist);
    r->lp_log = calloc((size_t)S, sizeof *r->lp_log);
    if (!r->logits || !r->t_step[0] || !r->t_step[1] || !r->t_gen || !r->show_tok ||
        !r->show_req || !r->show_hist || !r->lp_log || model_init(&r->model))
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");

    /* Two generators of the same configuration: the eager one and its traced twin. */
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = DEMO_VOCAB;
    cfg.mesh.rows = DEMO_ROWS;
    cfg.mesh.cols = DEMO_COLS;
    cfg.mesh.all_gather_axis = 1;
    cfg.mesh.sampling_dp = DEMO_DP;
    cfg.mesh.max_batch_size = DEMO_B;
    cfg.backend = MS_BACKEND_HOST;
    cfg.num_threads = r->opt.threads;
    cfg.max_logprobs = DEMO_TOPN;
    ms_status st;
    for (int k = 0; k < 2; k++) {
        cfg.enable_internal_trace = k == TRACED;
        if ((st = ms_generator_create(&cfg, &r->gen[k])) != MS_OK) {
            const char *m = ms_create_last_error();
            r->gen[k] = NULL;
            return cli_error_status(cli_exit_for(st), CMD, "create: %s",
                                    m && *m ? m : ms_status_message(st));
        }
    }
    ms_generator *g = r->gen[EAGER];
    r->n_views = ms_generator_num_shards(g);
    r->stride = ms_generator_max_logprobs(g);
    r->width = ms_generator_shard_width(g);
    if (ms_generator_num_users(g) != DEMO_U || r->n_views != DEMO_ROWS * DEMO_COLS || r->stride < 1)
        return cli_error_status(CLI_EXIT_FAILURE, CMD,
                                "unexpected generator shape: %d users, %d shards",
                                (int)ms_generator_num_users(g), (int)r->n_views);
    if (cli_step_output_alloc(&r->out[EAGER], DEMO_U, r->stride) ||
        cli_step_output_alloc(&r->out[TRACED], DEMO_U, r->stride))
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
    /* The views point into the one matrix, the same every step (a trace is bound to them). */
    const ms_logits full = {.data = r->logits, .dtype = MS_DTYPE_F32, .row_stride = 0};
    for (int32_t d = 0; d < r->n_views; d++)
        if ((st = ms_generator_device_view(g, &full, d, &r->views[d])) != MS_OK)
            return cli_error_status(CLI_EXIT_FAILURE, CMD, "device_view %d: %s", (int)d,
                                    ms_generator_last_error(g));

    /* Requests 0..127 start in slots 0..127, class slot % 8. */
    for (int32_t u = 0; u < DEMO_U; u++) {
        request_init(&r->reqs[u], u, u % DEMO_NCLASS, 0, &r->model);
        r->ctx[u][0] = r->reqs[u].prompt[r->reqs[u].prompt_len - 2];
        r->ctx[u][1] = r->reqs[u].prompt[r->reqs[u].prompt_len - 1];
    }
    for (int k = 0; k < 2; k++) {
        const char *what = "";
        if ((st = install(r->gen[k], r->reqs, NULL, DEMO_U, &what)) != MS_OK)
            return cli_error_status(cli_exit_for(st), CMD, "%s: %s", what,
                                    ms_generator_last_error(r->gen[k]));
    }
    for (int32_t i = 0; i < DEMO_NSHOW; i++)
        r->show_hist[(size_t)i * (S + 1) + r->n_show_hist[i]++] = r->reqs[demo_show[i]];
    r->next_id = DEMO_U;
    r->lp_req = r->reqs[DEMO_LP_SLOT].id;
    r->first_entry = r->trace_fallback_step = r->mismatch_step = r->mismatch_user = -1;
    r->first_ms[0] = r->first_ms[1] = NAN;
    r->trace_on = true;
    r->digest = 0xcbf29ce484222325ull;
    return CLI_EXIT_OK;
}

/* Samples step s with the eager generator and the traced twin (order alternating), timing only
 * the ms_generator_sample calls. Returns an exit status after printing the error, or OK. */
static int run_sample(demo_run *r, int32_t s)
{
    for (int k = 0; k < 2; k++) {
        const int which = (s % 2) ^ k;
        bool traced = which == TRACED && r->trace_on;
        double t0 = cli_now_ms();
        ms_generator *g = r->gen[which];
        ms_status st = ms_generator_sample(g, r->views, r->n_views, traced, &r->out[which]);
        double dt = cli_now_ms() - t0;
        if (st == MS_ERR_TRACE && traced) {
            /* The trace does not match these buffers: say so and continue eagerly. */
            snprintf(r->trace_msg, sizeof r->trace_msg, "%s", ms_generator_last_error(g));
            r->trace_fallback_step = s;
            r->trace_on = traced = false;
            t0 = cli_now_ms();
            st = ms_generator_sample(g, r->views, r->n_views, false, &r->out[which]);
            dt = cli_now_ms() - t0;
        }
        if (st != MS_OK) {
            progress_clear(r->progress);
            return cli_error_status(cli_exit_for(st), CMD, "step %d (%s): %s", (int)s,
                                    which == EAGER ? "eager" : "traced",
                                    ms_generator_last_error(g));
        }
        if (which == EAGER && s == 0)
            r->first_ms[EAGER] = dt;
        else if (which == EAGER)
            r->t_step[EAGER][s - 1] = dt;
        else if (traced && s == 0)
            r->first_ms[TRACED] = dt;
        else if (traced)
            r->t_step[TRACED][r->n_traced++] = dt;
    }
    const int32_t diff = first_difference(&r->out[EAGER], &r->out[TRACED], r->stride);
    if (diff >= 0 && r->mismatch_step < 0) {
        r->mismatch_step = s, r->mismatch_user = diff;
        r->mismatch_tok[0] = r->out[EAGER].tokens[diff];
        r->mismatch_tok[1] = r->out[TRACED].tokens[diff];
    }
    return CLI_EXIT_OK;
}

/* Advances every user with the eager tokens of step s and records what is shown; finished
 * requests leave and new ones take their slots (in both generators) before the next step. */
static int run_advance(demo_run *r, int32_t s)
{
    const int32_t S = r->opt.steps;
    const ms_step_output *o = &r->out[EAGER];
    int32_t done_slots[DEMO_U], n_done = 0;
    for (int32_t u = 0; u < DEMO_U; u++) {
        const int32_t t = o->tokens[u];
        r->digest = (r->digest ^ (uint32_t)t) * 0x100000001b3ull;
        r->tokens_sampled++;
        if (t < 0 || o->row_error[u]) {
            r->bad_rows++;
        } else {
            r->ctx[u][0] = r->ctx[u][1];
            r->ctx[u][1] = t;
        }
        if (++r->reqs[u].generated >= r->reqs[u].length)
            done_slots[n_done++] = u;
    }
    for (int32_t i = 0; i < DEMO_NSHOW; i++) {
        r->show_tok[(size_t)s * DEMO_NSHOW + i] = o->tokens[demo_show[i]];
        r->show_req[(size_t)s * DEMO_NSHOW + i] = r->reqs[demo_show[i]].id;
    }
    if (r->reqs[DEMO_LP_SLOT].id == r->lp_req) {
        const int32_t u = DEMO_LP_SLOT;
        demo_lp_entry *e = &r->lp_log[r->n_lp++];
        e->step = s, e->token = o->tokens[u], e->rank = o->rank[u], e->logprob = o->logprob[u];
        e->count = o->top_count[u] < DEMO_TOPN ? o->top_count[u] : DEMO_TOPN;
        for (int32_t j = 0; j < e->count; j++) {
            e->top_ids[j] = o->top_ids[(size_t)u * r->stride + j];
            e->top_lp[j] = o->top_logprobs[(size_t)u * r->stride + j];
        }
    }

    r->finished += n_done;
    if (n_done == 0 || s + 1 >= S)
        return CLI_EXIT_OK;
    demo_request fresh[DEMO_U];
    for (int32_t i = 0; i < n_done; i++) {
        const int32_t u = done_slots[i];
        request_init(&fresh[i], r->next_id, new_request_class(r->next_id), s + 1, &r->model);
        r->next_id++;
        r->reqs[u] = fresh[i];
        r->ctx[u][0] = fresh[i].prompt[fresh[i].prompt_len - 2];
        r->ctx[u][1] = fresh[i].prompt[fresh[i].prompt_len - 1];
        for (int32_t j = 0; j < DEMO_NSHOW; j++)
            if (demo_show[j] == u)
                r->show_hist[(size_t)j * (S + 1) + r->n_show_hist[j]++] = fresh[i];
    }
    for (int k = 0; k < 2; k++) {
        const char *what = "";
        const ms_status st = install(r->gen[k], fresh, done_slots, n_done, &what);
        if (st != MS_OK) {
            progress_clear(r->progress);
            return cli_error_status(cli_exit_for(st), CMD, "step %d: %s: %s", (int)s, what,
                                    ms_generator_last_error(r->gen[k]));
        }
    }
    r->entered += n_done;
    if (r->first_entry < 0)
        r->first_entry = s + 1;
    return CLI_EXIT_OK;
}

static int run_loop(demo_run *r)
{
    const int32_t S = r->opt.steps;
    const int nthreads = r->opt.threads > 0 ? r->opt.threads : 1;
    for (int32_t s = 0; s < S; s++) {
        if (r->progress)
            fprintf(stderr, "\rmeshsample demo: step %d/%d", (int)s + 1, (int)S);
        /* The toy model writes this step's logits in place (not part of the step's time). */
        const double t0 = cli_now_ms();
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int32_t u = 0; u < DEMO_U; u++)
            model_row(&r->model, r->logits + (size_t)u * DEMO_VOCAB, r->reqs[u].id, r->ctx[u][0],
                      r->ctx[u][1]);
        r->t_gen[s] = cli_now_ms() - t0;
        int rc = run_sample(r, s);
        if (rc == CLI_EXIT_OK)
            rc = run_advance(r, s);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    progress_clear(r->progress);
    return CLI_EXIT_OK;
}

/* ---- reports --------------------------------------------------------------------------------- */

typedef struct demo_summary {
    demo_stats eager, traced, gen;
    double saved; /* eager median - traced median */
} demo_summary;

static demo_summary summarize(demo_run *r)
{
    demo_summary m;
    m.eager = stats_of(r->t_step[EAGER], r->opt.steps > 1 ? r->opt.steps - 1 : 0);
    m.traced = stats_of(r->t_step[TRACED], r->n_traced);
    m.gen = stats_of(r->t_gen, r->opt.steps);
    m.saved = m.eager.median - m.traced.median;
    return m;
}

static void report_json(strbuf *b, const demo_run *r, const demo_summary *m)
{
    const int32_t S = r->opt.steps;
    sb_printf(b,
              "{\"library\":\"%s\",\"mesh\":\"%dx%d\",\"all_gather_axis\":1,\"sampling_dp\":%d,"
              "\"max_batch_size\":%d,\"users\":%d,\"vocab\":%d,\"shard_width\":%d,"
              "\"backend\":\"host\",\"threads\":%d,\"steps\":%d,\"tokens_sampled\":%lld,"
              "\"bad_rows\":%lld,\"requests_finished\":%d,\"requests_entered\":%d,"
              "\"first_entry_step\":%d,\"digest\":\"%016llx\",\"streams\":[",
              ms_version_string(), DEMO_ROWS, DEMO_COLS, DEMO_DP, DEMO_B, DEMO_U, DEMO_VOCAB,
              (int)r->width, (int)r->opt.threads, (int)S, (long long)r->tokens_sampled,
              (long long)r->bad_rows, (int)r->finished, (int)r->entered, (int)r->first_entry,
              (unsigned long long)r->digest);
    for (int32_t i = 0; i < DEMO_NSHOW; i++) {
        sb_printf(b, "%s{\"slot\":%d,\"requests\":[", i ? "," : "", (int)demo_show[i]);
        for (int32_t h = 0; h < r->n_show_hist[i]; h++) {
            const demo_request *q = &r->show_hist[(size_t)i * (S + 1) + h];
            sb_printf(b, "%s{\"request\":%d,\"params\":\"%s\",\"first_step\":%d,\"tokens\":[",
                      h ? "," : "", (int)q->id, demo_classes[q->cls].name, (int)q->first_step);
            int32_t n = 0;
            for (int32_t s = 0; s < S; s++)
                if (r->show_req[(size_t)s * DEMO_NSHOW + i] == q->id)
                    sb_printf(b, "%s%d", n++ ? "," : "",
                              (int)r->show_tok[(size_t)s * DEMO_NSHOW + i]);
            sb_printf(b, "]}");
        }
        sb_printf(b, "]}");
    }
    sb_printf(b, "],\"logprobs\":{\"slot\":%d,\"request\":%d,\"params\":\"%s\",\"steps\":[",
              DEMO_LP_SLOT, (int)r->lp_req, demo_classes[DEMO_LP_SLOT % DEMO_NCLASS].name);
    for (int32_t i = 0; i < r->n_lp; i++) {
        const demo_lp_entry *e = &r->lp_log[i];
        sb_printf(b, "%s{\"step\":%d,\"token\":%d,\"logprob\":", i ? "," : "", (int)e->step,
                  (int)e->token);
        sb_float(b, e->logprob);
        sb_printf(b, ",\"rank\":%d,\"top_logprobs\":[", (int)e->rank);
        for (int32_t j = 0; j < e->count; j++) {
            sb_printf(b, "%s[%d,", j ? "," : "", (int)e->top_ids[j]);
            sb_float(b, e->top_lp[j]);
            sb_printf(b, "]");
        }
        sb_printf(b, "]}");
    }
    sb_printf(b, "]},\"step_time\":{");
    sb_stats_json(b, "eager", m->eager, r->first_ms[EAGER]);
    sb_printf(b, ",");
    sb_stats_json(b, "traced", m->traced, r->first_ms[TRACED]);
    sb_printf(b, ",\"trace_saves_ms\":");
    sb_float(b, (float)m->saved);
    sb_printf(b, ",\"trace_error\":");
    if (r->trace_fallback_step >= 0) {
        sb_json_string(b, r->trace_msg);
        sb_printf(b, ",\"trace_fallback_step\":%d", (int)r->trace_fallback_step);
    } else {
        sb_printf(b, "null");
    }
    sb_printf(b, ",\"traced_identical\":%s,\"logits_generation_median_ms\":",
              r->mismatch_step < 0 ? "true" : "false");
    sb_float(b, (float)m->gen.median);
    sb_printf(b, ",\"wall_s\":%.3f}}\n", r->wall_s);
}

static void report_text(strbuf *b, const demo_run *r, const demo_summary *m)
{
    const int32_t S = r->opt.steps;
    sb_printf(b, "meshsample demo %s: a toy language model decodes %d users for %d steps\n",
              ms_version_string(), DEMO_U, (int)S);
    sb_printf(b, "  mesh %dx%d (%d devices), host backend, ", DEMO_ROWS, DEMO_COLS,
              DEMO_ROWS * DEMO_COLS);
    if (r->opt.threads > 0)
        sb_printf(b, "%d thread%s", (int)r->opt.threads, r->opt.threads == 1 ? "" : "s");
    else
        sb_printf(b, "threads: library default");
    sb_printf(b, ", exact mode (max_top_k 0), raw log-probs, top-%d\n", DEMO_TOPN);
    sb_printf(b, "  vocabulary %d sharded over the %d devices of a mesh row (all_gather_axis 1): "
                 "%d ids each\n",
              DEMO_VOCAB, DEMO_COLS, (int)r->width);
    sb_printf(b, "  sampling_dp %d: mesh row g is DP group g, %d users (slots %d*g .. %d*g+%d)\n",
              DEMO_DP, DEMO_B, DEMO_B, DEMO_B, DEMO_B - 1);
    sb_printf(b, "  logits: one [%d x %d] f32 matrix (%.1f MiB), rewritten in place every step,\n"
                 "          read through %d device views (ms_generator_device_view)\n",
              DEMO_U, DEMO_VOCAB, (double)DEMO_U * DEMO_VOCAB * 4.0 / (1 << 20), (int)r->n_views);
    sb_printf(b, "  toy model: normal(0, 2.5) background, %d preferred successors of the last\n"
                 "          token, %d topic tokens per request; hashed from the request id and\n"
                 "          its last 2 tokens\n",
              DEMO_NPREF, DEMO_NTOPIC);
    sb_printf(b, "  requests: 4..40 tokens, a prompt of 4..8 tokens (BOS %d first), seed\n"
                 "          1000 + id; a finished request's slot takes a new one next step\n",
              DEMO_BOS);
    sb_printf(b, "  parameter classes (request r < %d: class r %% %d; later requests: hashed):\n",
              DEMO_U, DEMO_NCLASS);
    for (int32_t c = 0; c < DEMO_NCLASS; c++)
        sb_printf(b, "    %d  %s\n", (int)c, demo_classes[c].name);

    sb_printf(b, "\nlifecycle: %lld tokens sampled, %lld bad rows\n", (long long)r->tokens_sampled,
              (long long)r->bad_rows);
    sb_printf(b, "  %d requests finished, %d entered mid-run", (int)r->finished, (int)r->entered);
    if (r->first_entry >= 0)
        sb_printf(b, " (first at step %d)", (int)r->first_entry);
    sb_printf(b, "\n");
    sb_printf(b, "  digest of every sampled token (FNV-1a): %016llx\n",
              (unsigned long long)r->digest);

    sb_printf(b, "\nstreams of %d users (token ids), request by request as they held the slot:\n",
              DEMO_NSHOW);
    for (int32_t i = 0; i < DEMO_NSHOW; i++) {
        sb_printf(b, "  slot %d (DP group %d)\n", (int)demo_show[i], (int)(demo_show[i] / DEMO_B));
        for (int32_t h = 0; h < r->n_show_hist[i]; h++) {
            const demo_request *q = &r->show_hist[(size_t)i * (S + 1) + h];
            sb_printf(b, "    req %d, class %d: %s\n", (int)q->id, (int)q->cls,
                      demo_classes[q->cls].name);
            /* DEMO_WRAP ids a line, then "(finished)" where the request ended in the run. */
            int32_t n = 0;
            for (int32_t s = 0; s < S; s++)
                if (r->show_req[(size_t)s * DEMO_NSHOW + i] == q->id) {
                    if (n % DEMO_WRAP == 0)
                        sb_printf(b, "%s     ", n > 0 ? "\n" : "");
                    sb_printf(b, " %d", (int)r->show_tok[(size_t)s * DEMO_NSHOW + i]);
                    n++;
                }
            if (q->first_step + q->length <= S)
                sb_printf(b, "%s(finished)", n % DEMO_WRAP == 0 ? "\n      " : "  ");
            sb_printf(b, "\n");
        }
    }

    sb_printf(b, "\nlog-probs of slot %d, request %d (%s;\n"
                 "  raw log-probs of the sampled token, its rank, the top %d):\n",
              DEMO_LP_SLOT, (int)r->lp_req, demo_classes[DEMO_LP_SLOT % DEMO_NCLASS].name,
              DEMO_TOPN);
    for (int32_t i = 0; i < r->n_lp && i < DEMO_LP_LINES; i++) {
        const demo_lp_entry *e = &r->lp_log[i];
        sb_printf(b, "  step %2d  token %6d  logprob %7.4f  rank %d  top:", (int)e->step,
                  (int)e->token, (double)e->logprob, (int)e->rank);
        for (int32_t j = 0; j < e->count; j++)
            sb_printf(b, "%s %d %.4f", j ? "," : "", (int)e->top_ids[j], (double)e->top_lp[j]);
        sb_printf(b, "\n");
    }
    if (r->n_lp > DEMO_LP_LINES)
        sb_printf(b, "  (%d more steps)\n", (int)(r->n_lp - DEMO_LP_LINES));

    /* Every line that carries a time has the word "ms": the rest of the output is deterministic. */
    sb_printf(b, "\nstep time in ms, ms_generator_sample only (over steps 1..%d; step 0 apart):\n",
              (int)S - 1);
    sb_printf(b, "  %-12s %9s %9s %9s %9s\n", "", "median", "p10", "p90", "step 0");
    sb_stats_row(b, "eager (ms)", m->eager, r->first_ms[EAGER]);
    sb_stats_row(b, "traced (ms)", m->traced, r->first_ms[TRACED]);
    if (r->trace_fallback_step >= 0)
        sb_printf(b, "  trace failed at step %d, the twin continued eagerly: %s\n",
                  (int)r->trace_fallback_step, r->trace_msg);
    if (m->eager.n > 0 && m->traced.n > 0) {
        const double noise = 0.5 * (m->eager.p90 - m->eager.p10);
        sb_printf(b, "  what tracing saves: %.3f ms per step (eager - traced median, %.1f%%)%s\n",
                  m->saved, m->eager.median > 0 ? 100.0 * m->saved / m->eager.median : 0.0,
                  fabs(m->saved) <= noise ? ", within this run's noise" : "");
    } else {
        sb_printf(b, "  what tracing saves: not measured (too few traced steps; ms)\n");
    }
    if (r->mismatch_step < 0)
        sb_printf(b, "  traced twin: tokens, log-probs and ranks identical to eager at every "
                     "step\n");
    else
        sb_printf(b, "  traced twin: DIFFERS from eager, first at step %d user %d (eager token %d, "
                     "traced %d)\n",
                  (int)r->mismatch_step, (int)r->mismatch_user, (int)r->mismatch_tok[0],
                  (int)r->mismatch_tok[1]);
    sb_printf(b, "  toy model logits generation (not in the step time): median %.3f ms per step\n",
              m->gen.median);
    sb_printf(b, "  whole demo: %.0f ms\n", r->wall_s * 1e3);
}

int cli_demo_main(int argc, char **argv)
{
    static demo_run run; /* large (the request tables): not on the stack */
    demo_run *r = &run;
    memset(r, 0, sizeof *r);
    const int prc = parse_args(argc, argv, &r->opt);
    if (prc != 0)
        return prc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    const double wall0 = cli_now_ms();
    r->progress = isatty(STDERR_FILENO) == 1;

    int rc = run_setup(r);
    if (rc == CLI_EXIT_OK)
        rc = run_loop(r);
    if (rc == CLI_EXIT_OK) {
        r->wall_s = (cli_now_ms() - wall0) * 1e-3;
        const demo_summary m = summarize(r);
        strbuf buf = {0};
        if (r->opt.json)
            report_json(&buf, r, &m);
        else
            report_text(&buf, r, &m);
        if (buf.oom) {
            rc = cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        } else {
            fwrite(buf.p, 1, buf.len, stdout);
            rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        }
        sb_free(&buf);
        if (rc == CLI_EXIT_OK && r->mismatch_step >= 0)
            rc = cli_error_status(CLI_EXIT_FAILURE, CMD,
                                  "traced step %d differs from eager (user %d)",
                                  (int)r->mismatch_step, (int)r->mismatch_user);
    }
    run_free(r);
    return rc;
}
