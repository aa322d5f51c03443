/*
 * `meshsample bench`: time one sampling step and, in the same run, the floor it is judged
 * against: reading the same bytes once with a well-vectorised max reduction (DESIGN.md
 * section 5). Both rotate over enough distinct input buffers (> 512 MiB in all) that no step
 * reads a buffer still hot in the cache from the previous one, as a decode loop would see.
 * Steps and floor reads alternate, so both see the same state of a shared machine.
 *
 * Only medians are reported as the result (p10/p90 show the spread): this machine is shared
 * and noisy, and the ratio to the floor of the same run is the figure to compare.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

#include "cli.h"
#include "npy.h"

#define CMD "bench"
/* Distinct input bytes the runs rotate over: well past any L3 this code meets (this
 * machine's serves a 64 MiB rotation partly from cache). A traced run needs one generator per
 * buffer (a trace is bound to its buffers), so the rotation is also capped at MAX_BUFFERS
 * buffers, eager or traced alike: small shapes then rotate over fewer bytes, the same in both
 * modes, so that a comparison of the two is not one of memory against cache. */
#define ROTATE_BYTES ((size_t)512 << 20)
#define MAX_BUFFERS 64
#define WARMUP_STEPS 5
#define PROMPT_LEN 64

static const char bench_usage[] =
    "usage: meshsample bench [options]\n"
    "\n"
    "Median time of one sampling step (ms) over rotating input buffers (512 MiB, or 64\n"
    "buffers when they are smaller), and the floor: one vectorised read of the same bytes.\n"
    "ratio = median / floor.\n"
    "\n"
    "  --batch B              users per step, all DP groups together (default 32)\n"
    "  --vocab V              vocabulary (default 128256)\n"
    "  --dtype f32|bf16|f16   logits dtype (default f32)\n"
    "  --mesh RxC  --axis A  --dp N  --threads N   as for `sample` (default 1x1, 1 thread)\n"
    "  --temperature T        (default 0.8)\n"
    "  --top-k K  --top-p P  --min-p M   (default 40, 0.95, 0)\n"
    "  --penalties            presence 0.5, frequency 0.5, repetition 1.2, 64-token prompts\n"
    "  --logprobs N           log-probs with top-N\n"
    "  --greedy               temperature 0\n"
    "  --trace on|off         replay the internal trace (default off); one generator per\n"
    "                         rotating buffer, since a trace is bound to its buffers (so\n"
    "                         with --penalties each history grows once per rotation, not\n"
    "                         once per step: compare traced and eager without penalties)\n"
    "  --steps N              timed steps (default 50, after warm-up)\n"
    "  --json                 one JSON object instead of the table\n";

typedef struct bench_opts {
    int32_t batch, vocab, rows, cols, axis, dp, threads, top_k, logprobs, steps;
    bool axis_set, penalties, greedy, trace, json;
    ms_dtype dtype;
    float temperature, top_p, min_p;
} bench_opts;

static const char *dtype_name(ms_dtype d)
{
    return d == MS_DTYPE_F32 ? "f32" : d == MS_DTYPE_BF16 ? "bf16" : "f16";
}

static size_t dtype_size(ms_dtype d)
{
    return d == MS_DTYPE_F32 ? 4 : 2;
}

/* Returns 0, 1 after --help, -1 after printing the error. */
static int parse_args(int argc, char **argv, bench_opts *b)
{
    memset(b, 0, sizeof *b);
    b->batch = 32, b->vocab = 128256, b->rows = b->cols = b->dp = b->threads = 1;
    b->dtype = MS_DTYPE_F32;
    b->temperature = 0.8f, b->top_k = 40, b->top_p = 0.95f, b->min_p = 0.0f;
    b->logprobs = -1, b->steps = 50;

    cli_opts o;
    cli_opts_init(&o, argc, argv);
    while (cli_opts_next(&o)) {
        const char *v = NULL;
        bool bad = false;
        if (cli_opt_is(&o, "help")) {
            fputs(bench_usage, stdout);
            return 1;
        } else if (cli_opt_is(&o, "batch")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 1 << 20, &b->batch);
        } else if (cli_opt_is(&o, "vocab")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 1 << 28, &b->vocab);
        } else if (cli_opt_is(&o, "dtype")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"f32", "bf16", "f16"};
            int c = 0;
            bad = cli_parse_choice(v, names, 3, &c) != 0;
            if (!bad) b->dtype = (ms_dtype)c;
        } else if (cli_opt_is(&o, "mesh")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_mesh(v, &b->rows, &b->cols);
        } else if (cli_opt_is(&o, "axis")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 1, &b->axis);
            b->axis_set = true;
        } else if (cli_opt_is(&o, "dp")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 1 << 20, &b->dp);
        } else if (cli_opt_is(&o, "threads")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 4096, &b->threads);
        } else if (cli_opt_is(&o, "temperature")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_f32(v, &b->temperature);
        } else if (cli_opt_is(&o, "top-k")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, INT32_MIN, INT32_MAX, &b->top_k);
        } else if (cli_opt_is(&o, "top-p")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_f32(v, &b->top_p);
        } else if (cli_opt_is(&o, "min-p")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_f32(v, &b->min_p);
        } else if (cli_opt_is(&o, "penalties")) {
            b->penalties = cli_opt_flag(&o);
        } else if (cli_opt_is(&o, "greedy")) {
            b->greedy = cli_opt_flag(&o);
        } else if (cli_opt_is(&o, "json")) {
            b->json = cli_opt_flag(&o);
        } else if (cli_opt_is(&o, "logprobs")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 0, 1 << 20, &b->logprobs);
        } else if (cli_opt_is(&o, "trace")) {
            if (!(v = cli_opt_value(&o)))
                break;
            static const char *const names[] = {"off", "on"};
            int c = 0;
            bad = cli_parse_choice(v, names, 2, &c) != 0;
            if (!bad) b->trace = (bool)c;
        } else if (cli_opt_is(&o, "steps")) {
            bad = !(v = cli_opt_value(&o)) || cli_parse_i32_range(v, 1, 1000000, &b->steps);
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
    if (b->batch % b->dp != 0) {
        cli_error(CMD, "--dp %d does not divide --batch %d", (int)b->dp, (int)b->batch);
        return -1;
    }
    return 0;
}

/* ---- the floor kernel ------------------------------------------------------------------------
 * A max over the buffer's bytes: float max for f32, unsigned 32-bit max over the 16-bit formats
 * (the value is meaningless there; only the read matters). Four independent accumulators keep
 * the loop bound by loads, not by the max latency. */

static float max_f32_plain(const float *x, size_t n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    for (int j = 1; j < 8; j++)
        m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

static uint32_t max_u32_plain(const uint32_t *x, size_t n)
{
    uint32_t m[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    for (int j = 1; j < 8; j++)
        m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

#if BENCH_X86
__attribute__((target("avx512f"))) static float max_f32_avx512(const float *x, size_t n)
{
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16)
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i));
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

__attribute__((target("avx512f"))) static uint32_t max_u32_avx512(const uint32_t *x, size_t n)
{
    __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_epu32(m0, _mm512_loadu_si512(x + i));
        m1 = _mm512_max_epu32(m1, _mm512_loadu_si512(x + i + 16));
        m2 = _mm512_max_epu32(m2, _mm512_loadu_si512(x + i + 32));
        m3 = _mm512_max_epu32(m3, _mm512_loadu_si512(x + i + 48));
    }
    for (; i + 16 <= n; i += 16)
        m0 = _mm512_max_epu32(m0, _mm512_loadu_si512(x + i));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        m1 = _mm512_max_epu32(m1, _mm512_maskz_loadu_epi32(k, x + i));
    }
    return _mm512_reduce_max_epu32(_mm512_max_epu32(_mm512_max_epu32(m0, m1), _mm512_max_epu32(m2, m3)));
}
#endif

static bool have_avx512(void)
{
#if BENCH_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* Read nbytes of buf once (the floor). Returns a value derived from the data so the compiler
 * cannot drop the read. nbytes is a multiple of 4 (B*V*2 is, for even B*V; an odd count of
 * 16-bit values leaves its last 2 bytes out of the floor, which is noise). */
static uint32_t floor_read(const void *buf, size_t nbytes, bool f32, bool avx512, int threads)
{
    const size_t n = nbytes / 4;
    uint32_t acc = 0;
    /* Split into one contiguous chunk per thread; a 64-element multiple keeps chunks aligned
     * alike. */
    const int t = threads > 1 ? threads : 1;
    const size_t chunk = (n / (size_t)t + 63) / 64 * 64;
#pragma omp parallel for num_threads(t) reduction(max : acc) schedule(static, 1) if (t > 1)
    for (int i = 0; i < t; i++) {
        const size_t lo = (size_t)i * chunk < n ? (size_t)i * chunk : n;
        const size_t hi = lo + chunk < n ? lo + chunk : n;
        uint32_t r;
        if (f32) {
            const float *x = (const float *)buf + lo;
#if BENCH_X86
            const float m = avx512 ? max_f32_avx512(x, hi - lo) : max_f32_plain(x, hi - lo);
#else
            (void)avx512;
            const float m = max_f32_plain(x, hi - lo);
#endif
            r = m > 0.0f ? (uint32_t)m : 0u;
        } else {
            const uint32_t *x = (const uint32_t *)buf + lo;
#if BENCH_X86
            r = avx512 ? max_u32_avx512(x, hi - lo) : max_u32_plain(x, hi - lo);
#else
            r = max_u32_plain(x, hi - lo);
#endif
        }
        acc = r > acc ? r : acc;
    }
    return acc;
}

/* ---- timing helpers -------------------------------------------------------------------------- */


/* The q-quantile (0..1) of sorted v[n], nearest rank. */
static double quantile(const double *v, int n, double q)
{
    int i = (int)floor(q * (double)(n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- inputs ---------------------------------------------------------------------------------- */

/* Fill one buffer of rows x vocab logits in dtype. A table of normals indexed by random 16-bit
 * numbers gives the normal(0, 2.5) background at memory speed (Box-Muller per element would
 * take longer than the benchmark), and each row gets its own few dozen hot tokens. */
static void fill_buffer(void *buf, ms_dtype dtype, int32_t rows, int32_t vocab, const float *table,
                        float *row, uint64_t *rng)
{
    for (int32_t r = 0; r < rows; r++) {
        for (int32_t i = 0; i < vocab; i += 4) {
            const uint64_t bits = cli_rand_u64(rng);
            for (int32_t j = 0; j < 4 && i + j < vocab; j++)
                row[i + j] = table[(bits >> (16 * j)) & 0xffff];
        }
        const int32_t hot = vocab < 48 ? vocab / 4 : 32 + (int32_t)(cli_rand_u64(rng) % 17);
        for (int32_t h = 0; h < hot; h++)
            row[cli_rand_u64(rng) % (uint64_t)vocab] = (float)(8.0 + 8.0 * cli_rand_uniform(rng));
        const size_t at = (size_t)r * (size_t)vocab;
        if (dtype == MS_DTYPE_F32) {
            memcpy((float *)buf + at, row, (size_t)vocab * sizeof(float));
        } else {
            uint16_t *dst = (uint16_t *)buf + at;
            for (int32_t i = 0; i < vocab; i++)
                dst[i] = dtype == MS_DTYPE_BF16 ? npy_float_to_bf16(row[i]) : npy_float_to_half(row[i]);
        }
    }
}

/* Set up generator *out for the benchmark's parameters. Prints the error on failure. */
static int make_generator(const bench_opts *b, ms_generator **out)
{
    *out = NULL;
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = b->vocab;
    cfg.mesh.rows = b->rows;
    cfg.mesh.cols = b->cols;
    if (b->axis_set)
        cfg.mesh.all_gather_axis = b->axis;
    cfg.mesh.sampling_dp = b->dp;
    cfg.mesh.max_batch_size = b->batch / b->dp;
    cfg.num_threads = b->threads;
    cfg.enable_internal_trace = b->trace;
    if (b->logprobs > cfg.max_logprobs)
        cfg.max_logprobs = b->logprobs;
    ms_generator *g;
    ms_status st = ms_generator_create(&cfg, &g);
    if (st != MS_OK) {
        const char *m = ms_create_last_error();
        cli_error(CMD, "%s", m && *m ? m : ms_status_message(st));
        return -1;
    }

    ms_sampling_params p;
    ms_sampling_params_init(&p);
    p.temperature = ms_fscalar(b->greedy ? 0.0f : b->temperature);
    p.top_k = ms_iscalar(b->top_k);
    p.top_p = ms_fscalar(b->top_p);
    p.min_p = ms_fscalar(b->min_p);
    if (b->penalties) {
        p.presence_penalty = ms_fscalar(0.5f);
        p.frequency_penalty = ms_fscalar(0.5f);
        p.repetition_penalty = ms_fscalar(1.2f);
    }
    if (b->logprobs >= 0) {
        p.enable_log_probs = ms_iscalar(1);
        p.num_logprobs = ms_iscalar(b->logprobs);
    }
    int64_t *seeds = malloc((size_t)b->batch * sizeof *seeds);
    int32_t *prompt = malloc((size_t)b->batch * PROMPT_LEN * sizeof *prompt);
    const char *what = "out of memory";
    st = MS_ERR_NO_MEMORY;
    if (seeds && prompt) {
        uint64_t rng = 777;
        for (int32_t u = 0; u < b->batch; u++)
            seeds[u] = 1234 + u;
        for (size_t i = 0; i < (size_t)b->batch * PROMPT_LEN; i++)
            prompt[i] = (int32_t)(cli_rand_u64(&rng) % (uint64_t)b->vocab);
        what = "parameters";
        if ((st = ms_generator_reset_sampling_params(g, &p, NULL, 0)) == MS_OK &&
            (what = "seeds", st = ms_generator_reset_seed(g, seeds, b->batch, NULL, b->batch)) == MS_OK &&
            b->penalties)
            what = "prompt", st = ms_generator_reset_prompt_tokens(g, prompt, b->batch, PROMPT_LEN, NULL);
    }
    free(seeds);
    free(prompt);
    if (st != MS_OK) {
        cli_error_status(cli_exit_for(st), CMD, "%s: %s", what,
                         st == MS_ERR_NO_MEMORY ? "out of memory" : ms_generator_last_error(g));
        ms_generator_destroy(g);
        return -1;
    }
    *out = g;
    return 0;
}

int cli_bench_main(int argc, char **argv)
{
    bench_opts b;
    const int prc = parse_args(argc, argv, &b);
    if (prc)
        return prc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;

    const bool progress = isatty(STDERR_FILENO);
    const size_t step_bytes = (size_t)b.batch * (size_t)b.vocab * dtype_size(b.dtype);
    size_t nbuf = ROTATE_BYTES / step_bytes + 1;
    if (nbuf < 2)
        nbuf = 2;
    if (nbuf > MAX_BUFFERS)
        nbuf = MAX_BUFFERS;
    const size_t ngen = b.trace ? nbuf : 1;

    int rc = CLI_EXIT_FAILURE;
    void **bufs = calloc(nbuf, sizeof *bufs);
    ms_generator **gens = calloc(ngen, sizeof *gens);
    ms_logits *views = NULL;
    double *t_step = calloc((size_t)b.steps, sizeof *t_step);
    double *t_floor = calloc((size_t)b.steps, sizeof *t_floor);
    float *table = malloc(65536 * sizeof *table);
    float *row = malloc((size_t)b.vocab * sizeof *row);
    ms_step_output out = {0};
    if (!bufs || !gens || !t_step || !t_floor || !table || !row) {
        cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ngen; i++) {
        if (make_generator(&b, &gens[i])) {
            rc = CLI_EXIT_USAGE;
            goto done;
        }
    }
    const int32_t n_views = ms_generator_num_shards(gens[0]);
    views = calloc((size_t)n_views * nbuf, sizeof *views);
    if (!views || cli_step_output_alloc(&out, b.batch, ms_generator_max_logprobs(gens[0]))) {
        cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory");
        goto done;
    }

    if (progress)
        fprintf(stderr, "generating %zu buffers of %.1f MiB...", nbuf, (double)step_bytes / 1048576.0);
    uint64_t rng = 99;
    for (int i = 0; i < 65536; i++)
        table[i] = (float)(2.5 * cli_rand_normal(&rng));
    for (size_t i = 0; i < nbuf; i++) {
        /* 64-byte alignment, as an inference engine's tensors have. */
        const size_t alloc = (step_bytes + 63) / 64 * 64;
        if (!(bufs[i] = aligned_alloc(64, alloc))) {
            cli_error_status(CLI_EXIT_FAILURE, CMD, "out of memory (%zu buffers of %zu bytes)", nbuf, step_bytes);
            goto done;
        }
        fill_buffer(bufs[i], b.dtype, b.batch, b.vocab, table, row, &rng);
        const ms_logits full = {.data = bufs[i], .dtype = b.dtype, .row_stride = 0};
        for (int32_t d = 0; d < n_views; d++) {
            const ms_status st = ms_generator_device_view(gens[0], &full, d, &views[i * (size_t)n_views + (size_t)d]);
            if (st != MS_OK) {
                cli_error_status(cli_exit_for(st), CMD, "view: %s", ms_generator_last_error(gens[0]));
                goto done;
            }
        }
    }
    if (progress)
        fprintf(stderr, "\r\033[K");

    /* Warm-up: page in the outputs and scratch, and capture every generator's trace. Each
     * step is followed by the floor read of the buffer half a rotation away (cold as well). */
    const size_t warm = WARMUP_STEPS > ngen ? WARMUP_STEPS : ngen;
    const bool avx512 = have_avx512();
    const int floor_threads = b.threads > 0 ? b.threads : omp_get_num_procs();
    volatile uint32_t sink = 0;
    size_t k = 0;
    for (size_t i = 0; i < warm + (size_t)b.steps; i++, k = (k + 1) % nbuf) {
        ms_generator *g = gens[b.trace ? k : 0];
        const double t0 = cli_now_ms();
        const ms_status st = ms_generator_sample(g, views + k * (size_t)n_views, n_views, b.trace, &out);
        const double t1 = cli_now_ms();
        if (st != MS_OK) {
            cli_error_status(cli_exit_for(st), CMD, "sample: %s", ms_generator_last_error(g));
            goto done;
        }
        const size_t kf = (k + nbuf / 2) % nbuf;
        const double t2 = cli_now_ms();
        sink = sink + floor_read(bufs[kf], step_bytes, b.dtype == MS_DTYPE_F32, avx512, floor_threads);
        const double t3 = cli_now_ms();
        if (i >= warm) {
            t_step[i - warm] = t1 - t0;
            t_floor[i - warm] = t3 - t2;
        }
        if (progress && (i % 8 == 0))
            fprintf(stderr, "\rstep %zu/%zu", i + 1, warm + (size_t)b.steps);
    }
    if (progress)
        fprintf(stderr, "\r\033[K");

    qsort(t_step, (size_t)b.steps, sizeof *t_step, cli_cmp_double);
    qsort(t_floor, (size_t)b.steps, sizeof *t_floor, cli_cmp_double);
    const double med = quantile(t_step, b.steps, 0.5), p10 = quantile(t_step, b.steps, 0.1),
                 p90 = quantile(t_step, b.steps, 0.9), fl = quantile(t_floor, b.steps, 0.5);
    const double ratio = fl > 0 ? med / fl : 0.0;
    char mesh[32];
    snprintf(mesh, sizeof mesh, "%dx%d", (int)b.rows, (int)b.cols);
    const float temp = b.greedy ? 0.0f : b.temperature;
    if (b.json) {
        /* Unset options print as null; floats with 7 digits so 0.95f reads 0.95. */
        char axis[16], logprobs[16];
        snprintf(axis, sizeof axis, b.axis_set ? "%d" : "null", (int)b.axis);
        snprintf(logprobs, sizeof logprobs, b.logprobs >= 0 ? "%d" : "null", (int)b.logprobs);
        printf("{\"median_ms\":%.6f,\"p10_ms\":%.6f,\"p90_ms\":%.6f,\"floor_ms\":%.6f,\"ratio\":%.4f,"
               "\"config\":{\"batch\":%d,\"vocab\":%d,\"dtype\":\"%s\",\"mesh\":\"%s\",\"axis\":%s,"
               "\"dp\":%d,\"threads\":%d,\"temperature\":%.7g,\"top_k\":%d,\"top_p\":%.7g,\"min_p\":%.7g,"
               "\"penalties\":%s,\"logprobs\":%s,\"greedy\":%s,\"trace\":%s,\"steps\":%d,"
               "\"buffers\":%zu,\"buffer_mib\":%.3f,\"floor_threads\":%d,\"floor_isa\":\"%s\","
               "\"library\":\"%s\"}}\n",
               med, p10, p90, fl, ratio, (int)b.batch, (int)b.vocab, dtype_name(b.dtype), mesh,
               axis, (int)b.dp, (int)b.threads, (double)temp, (int)b.top_k,
               (double)b.top_p, (double)b.min_p, b.penalties ? "true" : "false", logprobs,
               b.greedy ? "true" : "false", b.trace ? "true" : "false", (int)b.steps, nbuf,
               (double)step_bytes / 1048576.0, floor_threads, avx512 ? "avx512f" : "c", ms_version_string());
    } else {
        printf("meshsample bench: B=%d V=%d %s mesh %s dp %d threads %d  T=%g k=%d p=%g min-p %g%s%s%s\n",
               (int)b.batch, (int)b.vocab, dtype_name(b.dtype), mesh, (int)b.dp, (int)b.threads,
               (double)temp, (int)b.top_k, (double)b.top_p, (double)b.min_p,
               b.penalties ? " +penalties" : "", b.logprobs >= 0 ? " +logprobs" : "", b.trace ? " +trace" : "");
        printf("  %zu steps over %zu rotating buffers of %.1f MiB\n", (size_t)b.steps, nbuf,
               (double)step_bytes / 1048576.0);
        printf("  %-22s %10s %10s %10s\n", "", "median", "p10", "p90");
        printf("  %-22s %10.3f %10.3f %10.3f\n", "sample step (ms)", med, p10, p90);
        printf("  %-22s %10.3f %10.3f %10.3f\n", floor_threads > 1 ? "floor read (ms, MT)" : "floor read (ms)", fl,
               quantile(t_floor, b.steps, 0.1), quantile(t_floor, b.steps, 0.9));
        printf("  %-22s %10.2fx   (floor: %s max, %d thread%s, %.1f GB/s)\n", "ratio", ratio,
               avx512 ? "avx512f" : "plain C", floor_threads, floor_threads == 1 ? "" : "s",
               fl > 0 ? (double)step_bytes / (fl * 1e6) : 0.0);
    }
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;

done:
    cli_step_output_free(&out);
    if (gens)
        for (size_t i = 0; i < ngen; i++)
            ms_generator_destroy(gens[i]);
    if (bufs)
        for (size_t i = 0; i < nbuf; i++)
            free(bufs[i]);
    free(bufs);
    free(gens);
    free(views);
    free(t_step);
    free(t_floor);
    free(table);
    free(row);
    return rc;
}
