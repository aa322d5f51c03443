/*
 * kernel_cost: where a step's time goes when memory is not the limit. Prints
 *  - the per-logit cost of the exp sum and of the sub-block max pass, on a buffer that stays
 *    in L1 (the compute the log-sum-exp needs, whatever the memory does);
 *  - the generator step (B=32, V=128256, f32, 1x2 mesh, 2 threads, T=0.8, k=40, p=0.95, top-5
 *    log-probs) on one logits buffer that stays in cache, then over 512 MiB of rotating buffers
 *    beside the floor read of the same buffers (as `meshsample bench`). No penalties: on one
 *    buffer the sampled tokens, hence the histories, would be that buffer's own top tokens.
 * Medians over repeats. Usage: build/kernel_cost
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ms_kernels.h"
#include "meshsample.h"

#define B 32
#define V 128256
#define ROTATE ((size_t)512 << 20)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what, ms_generator *g);

/* One step of g on the full [B, V] matrix L cut into its two shards; returns milliseconds. */
static double step_ms(ms_generator *g, const float *L, ms_step_output *out)
{
    ms_logits full = {.data = L, .dtype = MS_DTYPE_F32}, v[2];
    for (int d = 0; d < 2; d++)
        if (ms_generator_device_view(g, &full, d, &v[d]) != MS_OK) die("view", g);
    const double t0 = now();
    if (ms_generator_sample(g, v, 2, false, out) != MS_OK) die("sample", g);
    return (now() - t0) * 1e3;
}

static void die(const char *what, ms_generator *g)
{
    fprintf(stderr, "kernel_cost: %s: %s\n", what, g ? ms_generator_last_error(g) : "failed");
    exit(1);
}

int main(void)
{
    const ms__block_ops *ops = ms__block_ops_get();
    enum { N = 16384, REPS = 2000, RUNS = 9 };
    static float x[N], bm[N / MS_SUB + 1];
    uint64_t s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = -(float)(s >> 40) / (float)(1 << 20); /* in (-16, 0] */
    }
    double te[RUNS], tm[RUNS], ts[RUNS];
    volatile double sink = 0.0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        for (int k = 0; k < REPS; k++) sink += ops->sumexp(x, N, 0.0f, 1.0f, NULL, 0);
        double t1 = now();
        for (int k = 0; k < REPS; k++) sink += ops->max_sum(x, N, NULL, 0, bm, NULL, 1.0);
        double t2 = now();
        for (int k = 0; k < REPS; k++) { /* passes A and C as a log-prob row runs them */
            ms__lse l = ms__lse_empty();
            sink += ops->max_sum(x, N, NULL, 0, bm, &l, 1.0) + l.sum;
        }
        double t3 = now();
        te[r] = (t1 - t0) / ((double)N * REPS) * 1e9;
        tm[r] = (t2 - t1) / ((double)N * REPS) * 1e9;
        ts[r] = (t3 - t2) / ((double)N * REPS) * 1e9;
    }
    printf("kernels (%s, from L1): exp sum %.4f ns/logit, sub-block max %.4f ns/logit, "
           "max and exp sum %.4f ns/logit\n",
           ops->name, median(te, RUNS), median(tm, RUNS), median(ts, RUNS));

    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = V;
    cfg.mesh.rows = 1;
    cfg.mesh.cols = 2;
    cfg.mesh.max_batch_size = B;
    cfg.num_threads = 2;
    ms_generator *g;
    if (ms_generator_create(&cfg, &g) != MS_OK) die("create", NULL);
    ms_sampling_params p;
    ms_sampling_params_init(&p);
    p.temperature = ms_fscalar(0.8f);
    p.top_k = ms_iscalar(40);
    p.top_p = ms_fscalar(0.95f);
    p.enable_log_probs = ms_iscalar(1);
    p.num_logprobs = ms_iscalar(5);
    if (ms_generator_reset_sampling_params(g, &p, NULL, 0) != MS_OK) die("params", g);

    const size_t per = (size_t)B * V, nbuf = ROTATE / (per * sizeof(float)) + 1;
    float *buf = malloc(per * nbuf * sizeof *buf);
    if (!buf) die("out of memory", NULL);
    for (size_t i = 0; i < per * nbuf; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (float)(s >> 40) / (float)(1 << 20) * 10.0f - 5.0f;
    }
    int32_t tok[B], rank[B], cnt[B], ids[B * 8];
    float lp[B], tlp[B * 8];
    ms_step_output out = {.tokens = tok, .logprob = lp, .rank = rank, .top_count = cnt,
                          .top_ids = ids, .top_logprobs = tlp};
    enum { STEPS = 100, WARM = 5 };
    double hot[STEPS], cold[STEPS], fl[STEPS];
    /* one buffer, step after step: it stays in cache */
    for (int i = 0; i < STEPS + WARM; i++) {
        const double t = step_ms(g, buf, &out);
        if (i >= WARM) hot[i - WARM] = t;
    }
    /* rotating buffers, each step followed by the floor read of a buffer half a rotation away */
    static float bmt[2][(V / 2) / MS_SUB + 2];
    for (int i = 0; i < STEPS + WARM; i++) {
        const double t = step_ms(g, buf + per * ((size_t)i % nbuf), &out);
        const float *L = buf + per * ((size_t)(i + nbuf / 2) % nbuf);
        const double t0 = now();
#pragma omp parallel num_threads(2)
        {
            const int th = omp_get_thread_num();
            for (size_t j = (size_t)th * (per / 2); j < (size_t)(th + 1) * (per / 2); j += V / 2)
                sink += ops->max_sum(L + j, V / 2, NULL, 0, bmt[th], NULL, 1.0);
        }
        if (i >= WARM) {
            cold[i - WARM] = t;
            fl[i - WARM] = (now() - t0) * 1e3;
        }
    }
    printf("generator step, 2 threads: %.3f ms on one cache-resident buffer; %.3f ms over %zu "
           "rotating buffers, floor %.3f ms\n",
           median(hot, STEPS), median(cold, STEPS), nbuf, median(fl, STEPS));
    ms_generator_destroy(g);
    free(buf);
    return sink == 12345.0;
}
