/*
 * `meshsample sample`: sample next tokens from a [B, V] logits file.
 *
 * Everything is validated and every draw is computed into memory before the first byte goes to
 * stdout, so a failure anywhere leaves stdout empty and one line on stderr (exit 2 for the
 * caller's mistakes). Draws are peeks at offsets 0..N-1 from one state, so they are
 * independent and the generator's counters and histories never move.
 *
 * With --backend mpi the command runs SPMD under `mpiexec -n R` (R = rows * cols): every rank
 * maps the same file and reads only its own shard, and rank 0 prints exactly what the host
 * backend prints for the same arguments (see run_ctx below).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"

#if defined(MESHSAMPLE_WITH_MPI) && MESHSAMPLE_WITH_MPI
#include "meshsample/mpi.h"
#define MS_CLI_MPI 1
#else
#define MS_CLI_MPI 0
#endif

#define CMD "sample"
#define MAX_DRAWS 1000000

static const char sample_usage[] =
    "usage: meshsample sample --logits FILE.npy [options]\n"
    "\n"
    "Sample one next token per user (row) of a [B, V] logits matrix; JSON Lines on stdout:\n"
    "  {\"draw\":d,\"user\":u,\"token\":t[,\"logprob\":x,\"rank\":r,\"top_logprobs\":[[id,x],...]]}\n"
    "\n"
    "input:\n"
    "  --logits FILE.npy       [B, V] float32 or float16 (C order); uint16 with --dtype bf16\n"
    "  --dtype f32|f16|bf16    element type (default: the file's; bf16 needs a <u2 file)\n"
    "  --vocab-size N          real vocabulary N <= V; columns N.. are padding\n"
    "mesh:\n"
    "  --mesh RxC              device mesh (default 1x1); the vocabulary is sharded over it\n"
    "  --axis 0|1              all-gather axis (0 = along rows, 1 = along columns)\n"
    "  --dp N                  data-parallel groups (B must be divisible by N)\n"
    "  --max-top-k K           per-device candidate cap (TT truncated mode); 0 = exact (default)\n"
    "  --threads N             worker threads per process (0 = one per core; default 0, or 1\n"
    "                          per rank with --backend mpi)\n"
    "  --backend host|mpi      transport (default host). host: every device of the mesh in\n"
    "                          this process. mpi: one MPI rank per device, run as\n"
    "                            mpiexec -n R*C meshsample sample --backend mpi --mesh RxC ...\n"
    "                          each rank reads only its own shard of --logits and rank 0\n"
    "                          prints what the host backend prints (byte for byte with --seed)\n"
    "per-user parameters (one value, or a comma-separated list of B values):\n"
    "  --temperature T         0 = greedy (the default when not given)\n"
    "  --top-k K               0 = unlimited (exact mode)\n"
    "  --top-p P  --min-p M\n"
    "  --presence X  --frequency X  --repetition X\n"
    "  --seed S                seeds the draws (default: OS entropy)\n"
    "penalty state:\n"
    "  --penalty-order openai|tt\n"
    "  --prompt FILE.npy       [B, S] int32/int64 prompt tokens, -1 = padding\n"
    "  --output-tokens FILE.npy  [B, S] int32/int64 tokens already generated, -1 = padding\n"
    "output:\n"
    "  --logprobs N            log-prob, rank and top-N log-probs of every user\n"
    "  --logprobs-mode raw|penalized|processed  (default raw)\n"
    "  --draws N               N independent draws from the same state (default 1)\n"
    "  --help                  this text\n"
    "\n"
    "Exit status: 0 success, 1 internal failure, 2 invalid arguments or input (one line on\n"
    "stderr, nothing on stdout).\n";

/* The per-user options, in the order of ms_sampling_params. */
enum { P_TEMPERATURE, P_TOP_K, P_TOP_P, P_MIN_P, P_PRESENCE, P_FREQUENCY, P_REPETITION, P_SEED, P_COUNT };

static const struct {
    const char *name;
    bool is_int;
} per_user[P_COUNT] = {
    [P_TEMPERATURE] = {"temperature", false}, [P_TOP_K] = {"top-k", true},
    [P_TOP_P] = {"top-p", false},             [P_MIN_P] = {"min-p", false},
    [P_PRESENCE] = {"presence", false},       [P_FREQUENCY] = {"frequency", false},
    [P_REPETITION] = {"repetition", false},   [P_SEED] = {"seed", true},
};

typedef struct sample_opts {
    const char *logits_path, *prompt_path, *output_path;
    int dtype; /* -1: the file's */
    int32_t vocab_size; /* 0: all columns */
    int32_t rows, cols, axis, dp, max_top_k, threads;
    bool axis_set, threads_set;
    ms_backend backend;
    struct {
        float *f;
        int64_t *i;
        int32_t n; /* 0: not given */
    } vals[P_COUNT];
    int32_t logprobs; /* -1: off */
    ms_logprobs_mode lp_mode;
    ms_penalty_order order;
    int64_t draws;
} sample_opts;

static void opts_free(sample_opts *s)
{
    for (int k = 0; k < P_COUNT; k++) {
        free(s->vals[k].f);
        free(s->vals[k].i);
    }
}

/* Parse argv into s. Returns 0, 1 for --help (printed when print_help), or -1 after reporting
 * the error. */
static int parse_args(int argc, char **argv, sample_opts *s, bool print_help)
{
    memset(s, 0, sizeof *s);
    s->dtype = -1;
    s->rows = s->cols = s->dp = 1;
    s->logprobs = -1;
    s->draws = 1;
    s->backend = MS_BACKEND_HOST;
    s->lp_mode = MS_LOGPROBS_RAW;
    s->order = MS_PENALTY_ORDER_OPENAI;

    cli_opts o;
    cli_opts_init(&o, argc, argv);
    while (cli_opts_next(&o)) {
        if (cli_opt_is(&o, "help")) {
            if (print_help)
                fputs(sample_usage, stdout);
            return 1;
        }
        int k;
        for (k = 0; k < P_COUNT; k++)
            if (cli_opt_is(&o, per_user[k].name))
                break;
        if (k < P_COUNT) {
            const char *v = cli_opt_value(&o);
            if (!v)
                break;
            free(s->vals[k].f);
            free(s->vals[k].i);
            s->vals[k].f = NULL;
            s->vals[k].i = NULL;
            const int rc = per_user[k].is_int ? cli_parse_ilist(v, &s->vals[k].i, &s->vals[k].n)
                                              : cli_parse_flist(v, &s->vals[k].f, &s->vals[k].n);
            if (rc) {
                s->vals[k].n = 0;
                cli_error(CMD, "--%s: '%.100s' is not %s or a comma-separated list of them",
                          per_user[k].name, v, per_user[k].is_int ? "an integer" : "a number");
                return -1;
            }
            continue;
        }
        const char *v = NULL;
        bool bad = false;
        if (cli_opt_is(&o, "logits")) {
            bad = !(s->logits_path = v = cli_opt_value(&o));
        } else if (cli_opt_is(&o, "prompt")) {
            bad = !(s->prompt_path = v = cli_opt_value(&o));
        } else if (cli_opt_is(&o, "output-tokens")) {
            bad = !(s->output_path = v = cli_opt_value(&o));
        } else if (cli_opt_is(&o, "dtype")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"f32", "bf16", "f16"};
            int c = 0;
            bad = cli_parse_choice(v, names, 3, &c) != 0;
            if (!bad) s->dtype = (ms_dtype)c;
        } else if (cli_opt_is(&o, "vocab-size")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, INT32_MAX, &s->vocab_size);
        } else if (cli_opt_is(&o, "mesh")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_mesh(v, &s->rows, &s->cols);
        } else if (cli_opt_is(&o, "axis")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 1, &s->axis);
            s->axis_set = true;
        } else if (cli_opt_is(&o, "dp")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 1 << 20, &s->dp);
        } else if (cli_opt_is(&o, "max-top-k")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, INT32_MAX, &s->max_top_k);
        } else if (cli_opt_is(&o, "threads")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 4096, &s->threads);
            s->threads_set = true;
        } else if (cli_opt_is(&o, "backend")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"host", "mpi"};
            int c = 0;
            bad = cli_parse_choice(v, names, 2, &c) != 0;
            if (!bad) s->backend = (ms_backend)c;
        } else if (cli_opt_is(&o, "penalty-order")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"openai", "tt"};
            int c = 0;
            bad = cli_parse_choice(v, names, 2, &c) != 0;
            if (!bad) s->order = (ms_penalty_order)c;
        } else if (cli_opt_is(&o, "logprobs")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 1 << 20, &s->logprobs);
        } else if (cli_opt_is(&o, "logprobs-mode")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"raw", "penalized", "processed"};
            int c = 0;
            bad = cli_parse_choice(v, names, 3, &c) != 0;
            if (!bad) s->lp_mode = (ms_logprobs_mode)c;
        } else if (cli_opt_is(&o, "draws")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i64(v, &s->draws) || s->draws < 1 ||
                  s->draws > MAX_DRAWS;
        } else {
            cli_opt_unknown(&o);
            break;
        }
        if (cli_opt_bad(&o, bad, v))
            break;
    }
    if (o.error) {
        cli_error(CMD, "%s", o.msg);
        return -1;
    }
    if (!s->logits_path) {
        cli_error(CMD, "--logits FILE.npy is required (see --help)");
        return -1;
    }
    return 0;
}

/* Read a [B, S] int32/int64 token matrix (-1 = padding) as int32. *tokens is malloc'd (at least
 * one element so the library never sees NULL). Prints the error and returns -1 on failure. */
static int read_tokens(const char *opt, const char *path, int32_t batch, int32_t **tokens,
                       int32_t *cols)
{
    char err[NPY_ERR_LEN];
    npy_array a;
    *tokens = NULL;
    if (npy_read_file(path, &a, err))
        return cli_error(CMD, "--%s: %s", opt, err), -1;
    int rc = -1;
    if (a.hdr.dtype != NPY_I32 && a.hdr.dtype != NPY_I64) {
        cli_error(CMD, "--%s: %s: dtype %s, expected int32 or int64 token ids", opt, path,
                  npy_dtype_descr(a.hdr.dtype));
        goto done;
    }
    if (a.hdr.ndim != 2 || a.hdr.shape[0] != batch || a.hdr.shape[1] > INT32_MAX) {
        if (a.hdr.ndim == 2)
            cli_error(CMD, "--%s: %s: expected shape [%d, S] (one row per user), got [%lld, %lld]", opt,
                      path, (int)batch, (long long)a.hdr.shape[0], (long long)a.hdr.shape[1]);
        else
            cli_error(CMD, "--%s: %s: expected shape [%d, S] (one row per user), got a %d-D array", opt,
                      path, (int)batch, a.hdr.ndim);
        goto done;
    }
    const size_t n = a.hdr.count;
    int32_t *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) {
        cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const int64_t v = a.hdr.dtype == NPY_I32 ? ((const int32_t *)a.data)[i] : ((const int64_t *)a.data)[i];
        /* Only the narrowing is checked here; the library judges ids against the vocabulary. */
        if (v < INT32_MIN || v > INT32_MAX) {
            cli_error(CMD, "--%s: %s: token id %lld (row %zu) out of range", opt, path, (long long)v,
                      i / (size_t)(a.hdr.shape[1] ? a.hdr.shape[1] : 1));
            free(t);
            goto done;
        }
        t[i] = (int32_t)v;
    }
    *tokens = t;
    *cols = (int32_t)a.hdr.shape[1];
    rc = 0;
done:
    npy_free(&a);
    return rc;
}

/* Point the per-user fields of p at the option values: one value broadcasts, B values are a
 * list. Prints the error and returns -1 for any other length. */
static int build_params(const sample_opts *s, int32_t batch, ms_sampling_params *p)
{
    ms_sampling_params_init(p);
    ms_fparam *fdst[P_COUNT] = {
        [P_TEMPERATURE] = &p->temperature, [P_TOP_P] = &p->top_p, [P_MIN_P] = &p->min_p,
        [P_PRESENCE] = &p->presence_penalty, [P_FREQUENCY] = &p->frequency_penalty,
        [P_REPETITION] = &p->repetition_penalty,
    };
    ms_iparam *idst[P_COUNT] = {[P_TOP_K] = &p->top_k, [P_SEED] = &p->seed};
    for (int k = 0; k < P_COUNT; k++) {
        const int32_t n = s->vals[k].n;
        if (n == 0)
            continue;
        if (n != 1 && n != batch) {
            cli_error(CMD, "--%s: %d values given, expected 1 or %d (one per user)", per_user[k].name,
                      (int)n, (int)batch);
            return -1;
        }
        if (per_user[k].is_int)
            *idst[k] = n == 1 ? ms_iscalar(s->vals[k].i[0]) : ms_ilist(s->vals[k].i, n);
        else
            *fdst[k] = n == 1 ? ms_fscalar(s->vals[k].f[0]) : ms_flist(s->vals[k].f, n);
    }
    if (s->logprobs >= 0) {
        p->enable_log_probs = ms_iscalar(1);
        p->num_logprobs = ms_iscalar(s->logprobs);
    }
    return 0;
}

/* The library's message for a failed call on g, or the generic one. */
static const char *gen_error(const ms_generator *g, ms_status st)
{
    const char *m = g ? ms_generator_last_error(g) : "";
    return m && *m ? m : ms_status_message(st);
}

/* ---- SPMD runs (--backend mpi) ----------------------------------------------------------------
 * Under `mpiexec -n R meshsample sample --backend mpi ...` every rank runs this same code on the
 * same arguments. Error lines are deferred (cli_error_defer) and every rank reports its local
 * status at the same agreement points: before each collective call (create, each draw) and
 * before anything reaches stdout. So no rank can wait in a collective for a rank that has
 * already given up, exactly one line reaches stderr (from the lowest failing rank: rank 0
 * whenever it failed too), every rank exits with that rank's status, and only rank 0 writes
 * stdout. */

typedef struct run_ctx {
    bool spmd;       /* one rank of an MPI job: MPI is initialised, error lines are deferred */
    bool threads_ok; /* MPI provides MPI_THREAD_FUNNELED or more */
    int rank, size;  /* in MPI_COMM_WORLD; rank i is device i of the mesh */
} run_ctx;

static bool is_root(const run_ctx *c)
{
    return !c->spmd || c->rank == 0;
}

/* Every rank passes its local exit status (0 = fine); returns the status all ranks continue or
 * exit with. Outside SPMD runs the line was printed already and rc comes back unchanged. */
static int agree(const run_ctx *c, int rc)
{
#if MS_CLI_MPI
    if (!c->spmd)
        return rc;
    int mine = rc ? c->rank : c->size, first = c->size;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
        first = c->rank; /* not reached: MPI_COMM_WORLD's handler aborts on errors */
    if (first >= c->size)
        return CLI_EXIT_OK;
    int status = rc;
    MPI_Bcast(&status, 1, MPI_INT, first, MPI_COMM_WORLD);
    if (c->rank == first)
        cli_error_flush();
    else
        cli_error_discard();
    return status;
#else
    (void)c;
    return rc;
#endif
}

/* Whether argv selects the mpi backend, decided before parsing so that MPI is initialised (and
 * error lines deferred) before anything can fail. The last --backend wins, as in parse_args. */
static bool argv_selects_mpi(int argc, char **argv)
{
    bool mpi = false;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--backend=", 10) == 0)
            mpi = strcmp(argv[i] + 10, "mpi") == 0;
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            mpi = strcmp(argv[++i], "mpi") == 0;
    }
    return mpi;
}

/* Everything one run holds; released by run_free. */
typedef struct run_state {
    sample_opts s;
    npy_array logits;     /* host backend: the whole file in memory */
    npy_mapped mapped;    /* mpi backend: the file mapped, only this rank's shard touched */
    const void *data;     /* the [batch, padded] logits of either */
    ms_dtype dtype;
    int32_t batch, padded, vocab;
    int32_t *prompt, *outtok, prompt_cols, out_cols;
    int64_t *seeds;
    ms_sampling_params params;
    ms_generator *g;
    ms_logits *views;
    int32_t n_views;
    ms_step_output out;
    strbuf buf;
} run_state;

static void run_free(run_state *r)
{
    sb_free(&r->buf);
    cli_step_output_free(&r->out);
    free(r->views);
    ms_generator_destroy(r->g);
    free(r->seeds);
    free(r->prompt);
    free(r->outtok);
    npy_free(&r->logits);
    npy_unmap(&r->mapped);
    opts_free(&r->s);
}

/* The logits file, the histories and the parameters: all local, no collective. */
static int load_inputs(const run_ctx *c, run_state *r)
{
    const sample_opts *s = &r->s;
    char err[NPY_ERR_LEN];
    (void)c;
    if (s->backend == MS_BACKEND_MPI) {
        /* Each rank maps the file read-only and hands the library a view of its own shard of
         * the full matrix (ms_generator_device_view), so the pages this rank touches are its
         * shard's rows and columns only (plus the header page); nothing else is read. */
        if (npy_map_file(s->logits_path, &r->mapped, err))
            return cli_error(CMD, "--logits: %s", err);
        r->data = r->mapped.data;
    } else {
        if (npy_read_file(s->logits_path, &r->logits, err))
            return cli_error(CMD, "--logits: %s", err);
        r->data = r->logits.data;
    }
    const npy_header *h = s->backend == MS_BACKEND_MPI ? &r->mapped.hdr : &r->logits.hdr;
    if (h->ndim != 2 || h->shape[0] < 1 || h->shape[1] < 1 || h->shape[0] > INT32_MAX ||
        h->shape[1] > INT32_MAX) {
        if (h->ndim == 2)
            return cli_error(CMD, "--logits: %s: expected a non-empty [batch, vocab] array, got [%lld, %lld]",
                             s->logits_path, (long long)h->shape[0], (long long)h->shape[1]);
        return cli_error(CMD, "--logits: %s: expected a 2-D [batch, vocab] array, got a %d-D array",
                         s->logits_path, h->ndim);
    }
    switch (h->dtype) {
    case NPY_F32: r->dtype = MS_DTYPE_F32; break;
    case NPY_F16: r->dtype = MS_DTYPE_F16; break;
    case NPY_U16: r->dtype = MS_DTYPE_BF16; break;
    default:
        return cli_error(CMD, "--logits: %s: dtype %s; expected <f4, <f2, or <u2 with --dtype bf16",
                         s->logits_path, npy_dtype_descr(h->dtype));
    }
    if (h->dtype == NPY_U16 && s->dtype != MS_DTYPE_BF16)
        return cli_error(CMD, "--logits: %s: a uint16 array holds bf16 bit patterns only with --dtype bf16",
                         s->logits_path);
    if (s->dtype >= 0 && (ms_dtype)s->dtype != r->dtype)
        return cli_error(CMD, "--dtype %s does not match the file's dtype %s",
                         s->dtype == MS_DTYPE_F32 ? "f32" : s->dtype == MS_DTYPE_F16 ? "f16" : "bf16",
                         npy_dtype_descr(h->dtype));
    r->batch = (int32_t)h->shape[0];
    r->padded = (int32_t)h->shape[1];
    r->vocab = s->vocab_size ? s->vocab_size : r->padded;
    if (r->vocab > r->padded)
        return cli_error(CMD, "--vocab-size %d exceeds the file's %d columns", (int)r->vocab, (int)r->padded);
    if (r->batch % s->dp != 0)
        return cli_error(CMD, "--dp %d does not divide the batch of %d users", (int)s->dp, (int)r->batch);

    /* Histories and parameters (all before the generator, so errors come early). The token
     * files are small: every rank reads them whole. */
    if (s->prompt_path && read_tokens("prompt", s->prompt_path, r->batch, &r->prompt, &r->prompt_cols))
        return CLI_EXIT_USAGE; /* read_tokens reported it */
    if (s->output_path && read_tokens("output-tokens", s->output_path, r->batch, &r->outtok, &r->out_cols))
        return CLI_EXIT_USAGE;
    if (build_params(s, r->batch, &r->params))
        return CLI_EXIT_USAGE;
    return CLI_EXIT_OK;
}

/* The generator (a collective call under mpi). */
static int create_generator(const run_ctx *c, run_state *r)
{
    const sample_opts *s = &r->s;
    (void)c;
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = r->vocab;
    cfg.mesh.padded_vocab_size = r->padded;
    cfg.mesh.rows = s->rows;
    cfg.mesh.cols = s->cols;
    if (s->axis_set)
        cfg.mesh.all_gather_axis = s->axis;
    cfg.mesh.sampling_dp = s->dp;
    cfg.mesh.max_batch_size = r->batch / s->dp;
    cfg.mesh.max_top_k = s->max_top_k;
    cfg.backend = s->backend;
    if (s->threads_set)
        cfg.num_threads = s->threads;
    cfg.logprobs_mode = s->lp_mode;
    cfg.penalty_order = s->order;
    /* Let --logprobs ask for more than the default cap of 20; the library still bounds it. */
    if (s->logprobs > cfg.max_logprobs)
        cfg.max_logprobs = s->logprobs;
    if (s->backend == MS_BACKEND_MPI) {
#if MS_CLI_MPI
        /* Ranks share the machine's cores: one worker each unless --threads says otherwise. */
        if (!s->threads_set)
            cfg.num_threads = 1;
        ms_generator_config_set_mpi(&cfg, MPI_COMM_WORLD);
#else
        return cli_error(CMD, "--backend mpi: this meshsample was built without MPI "
                              "(MESHSAMPLE_WITH_MPI=OFF)");
#endif
    }
    const ms_status st = ms_generator_create(&cfg, &r->g);
    if (st != MS_OK) {
        r->g = NULL;
        const char *m = ms_create_last_error();
        return cli_error(CMD, "%s", m && *m ? m : ms_status_message(st));
    }
    return CLI_EXIT_OK;
}

/* Parameters, seeds, histories and the logits views: local calls. */
static int set_up(const run_ctx *c, run_state *r)
{
    const sample_opts *s = &r->s;
    ms_generator *g = r->g;
    const int32_t batch = r->batch;
    ms_status st;
    if (ms_generator_num_users(g) != batch)
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "generator has %d users, the file %d",
                                (int)ms_generator_num_users(g), (int)batch);
    if ((st = ms_generator_reset_sampling_params(g, &r->params, NULL, 0)) != MS_OK)
        return cli_error_status(cli_exit_for(st), CMD, "%s", gen_error(g, st));
    if (s->vals[P_SEED].n) {
        if (!(r->seeds = malloc((size_t)batch * sizeof *r->seeds)))
            return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        for (int32_t u = 0; u < batch; u++)
            r->seeds[u] = s->vals[P_SEED].i[s->vals[P_SEED].n == 1 ? 0 : u];
        if ((st = ms_generator_reset_seed(g, r->seeds, batch, NULL, batch)) != MS_OK)
            return cli_error_status(cli_exit_for(st), CMD, "--seed: %s", gen_error(g, st));
    }
    if (r->prompt &&
        (st = ms_generator_reset_prompt_tokens(g, r->prompt, batch, r->prompt_cols, NULL)) != MS_OK)
        return cli_error_status(cli_exit_for(st), CMD, "--prompt: %s", gen_error(g, st));
    if (r->outtok &&
        (st = ms_generator_reset_output_state(g, r->outtok, batch, r->out_cols, NULL)) != MS_OK)
        return cli_error_status(cli_exit_for(st), CMD, "--output-tokens: %s", gen_error(g, st));

    /* The views of the full matrix: every device's (host), or this rank's alone (mpi). */
    const int32_t shards = ms_generator_num_shards(g);
    const bool mpi = s->backend == MS_BACKEND_MPI;
    r->n_views = mpi ? 1 : shards;
    if (shards < 1 || (mpi && shards != 1))
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "bad shard count %d", (int)shards);
    if (!(r->views = calloc((size_t)r->n_views, sizeof *r->views)))
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
    const ms_logits full = {.data = r->data, .dtype = r->dtype, .row_stride = 0};
    for (int32_t i = 0; i < r->n_views; i++) {
        const int32_t d = mpi ? c->rank : i;
        if ((st = ms_generator_device_view(g, &full, d, &r->views[i])) != MS_OK)
            return cli_error_status(cli_exit_for(st), CMD, "device %d: %s", (int)d, gen_error(g, st));
    }
    if (cli_step_output_alloc(&r->out, batch, ms_generator_max_logprobs(g)))
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
    return CLI_EXIT_OK;
}

/* One draw (a collective call under mpi), buffered as JSON Lines on the printing rank. */
static int draw(const run_ctx *c, run_state *r, int64_t d)
{
    const ms_status st = ms_generator_sample_peek(r->g, r->views, r->n_views, (uint64_t)d, &r->out);
    if (st != MS_OK)
        return cli_error_status(cli_exit_for(st), CMD, "%s", gen_error(r->g, st));
    if (!is_root(c))
        return CLI_EXIT_OK;
    cli_emit_step(&r->buf, d, r->batch, &r->out, ms_generator_max_logprobs(r->g), r->s.logprobs >= 0);
    if (r->buf.oom)
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory buffering the output");
    return CLI_EXIT_OK;
}

static int write_output(const run_ctx *c, run_state *r)
{
    if (!is_root(c))
        return CLI_EXIT_OK;
    if (r->buf.len && fwrite(r->buf.p, 1, r->buf.len, stdout) != r->buf.len)
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "write error on stdout");
    if (fflush(stdout) != 0)
        return cli_error_status(CLI_EXIT_FAILURE, CMD, "write error on stdout");
    return CLI_EXIT_OK;
}

/* Everything is validated and every draw is computed into memory before the first byte goes to
 * stdout, so a failure anywhere leaves stdout empty and one line on stderr. */
static int sample_run(int argc, char **argv, const run_ctx *c)
{
    run_state r;
    memset(&r, 0, sizeof r);
    const int prc = parse_args(argc, argv, &r.s, is_root(c));
    if (prc > 0) { /* --help, printed by the root alone; the same on every rank */
        opts_free(&r.s);
        return CLI_EXIT_OK;
    }
    int rc = prc ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    if (!rc && r.s.backend == MS_BACKEND_MPI && c->spmd) {
        if (!c->threads_ok)
            rc = cli_error(CMD, "--backend mpi: MPI does not provide MPI_THREAD_FUNNELED");
        else if ((int64_t)r.s.rows * r.s.cols != c->size)
            rc = cli_error(CMD, "--backend mpi: the %dx%d mesh needs %lld ranks, MPI_COMM_WORLD has %d "
                           "(run under mpiexec -n %lld)", (int)r.s.rows, (int)r.s.cols,
                           (long long)r.s.rows * r.s.cols, c->size, (long long)r.s.rows * r.s.cols);
    }
    if ((rc = agree(c, rc)))
        goto done;
    if ((rc = agree(c, load_inputs(c, &r))))
        goto done;
    if ((rc = agree(c, create_generator(c, &r))))
        goto done;
    if ((rc = agree(c, set_up(c, &r))))
        goto done;
    /* Draws are peeks at offsets 0..N-1 from one state: independent, and the generator's
     * counters and histories never move. */
    for (int64_t d = 0; d < r.s.draws; d++)
        if ((rc = agree(c, draw(c, &r, d))))
            goto done;
    rc = agree(c, write_output(c, &r));
done:
    run_free(&r);
    return rc;
}

int cli_sample_main(int argc, char **argv)
{
    run_ctx c = {.spmd = false, .threads_ok = true, .rank = 0, .size = 1};
#if MS_CLI_MPI
    /* MPI is touched only when --backend mpi asks for it. */
    if (argv_selects_mpi(argc, argv)) {
        int inited = 0, provided = MPI_THREAD_SINGLE;
        MPI_Initialized(&inited);
        if (inited)
            MPI_Query_thread(&provided);
        else if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return cli_error_status(CLI_EXIT_FAILURE, CMD, "--backend mpi: MPI_Init_thread failed");
        MPI_Comm_rank(MPI_COMM_WORLD, &c.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c.size);
        c.spmd = true;
        c.threads_ok = provided >= MPI_THREAD_FUNNELED;
        cli_error_defer(true);
        const int rc = sample_run(argc, argv, &c);
        cli_error_defer(false);
        if (!inited)
            MPI_Finalize();
        return rc;
    }
#else
    (void)argv_selects_mpi;
#endif
    return sample_run(argc, argv, &c);
}
