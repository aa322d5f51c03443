/* Step time of the mpi transport: `mpiexec -n R*C bench/mpi_step RxC [steps]`.
 * B=32, V=128256, f32, T=0.8, k=40, p=0.95, penalties (64-token prompts) and top-5 log-probs,
 * the configuration of `meshsample bench --penalties --logprobs 5`. Every rank builds the same
 * rotating logits and samples its own shard; rank 0 prints the median step (ms_generator_sample
 * only) and the time of one read of its shard, measured in the same run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "meshsample.h"
#include "meshsample/mpi.h"

#define B 32
#define V 128256
#define NBUF 4

static uint64_t rng(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int provided, rank, size, rows = 1, cols = 2, steps = argc > 2 ? atoi(argv[2]) : 40;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1) sscanf(argv[1], "%dx%d", &rows, &cols);
    ms_generator_config cfg;
    ms_generator_config_init(&cfg);
    cfg.mesh.vocab_size = V;
    cfg.mesh.rows = rows;
    cfg.mesh.cols = cols;
    cfg.mesh.all_gather_axis = rows > 1 && cols > 1 ? 1 : 0;
    cfg.mesh.max_batch_size = B;
    cfg.num_threads = 1;
    ms_generator_config_set_mpi(&cfg, MPI_COMM_WORLD);
    ms_generator *g;
    if (ms_generator_create(&cfg, &g) != MS_OK) {
        if (rank == 0) fprintf(stderr, "create: %s\n", ms_create_last_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    ms_sampling_params p;
    ms_sampling_params_init(&p);
    p.temperature = ms_fscalar(0.8f);
    p.top_k = ms_iscalar(40);
    p.top_p = ms_fscalar(0.95f);
    p.presence_penalty = ms_fscalar(0.5f);
    p.frequency_penalty = ms_fscalar(0.5f);
    p.repetition_penalty = ms_fscalar(1.2f);
    p.enable_log_probs = ms_iscalar(1);
    p.num_logprobs = ms_iscalar(5);
    p.seed = ms_iscalar(7);
    ms_generator_reset_sampling_params(g, &p, NULL, 0);
    uint64_t s = 12345;
    int32_t prompt[B * 64];
    for (int i = 0; i < B * 64; i++) prompt[i] = (int32_t)(rng(&s) % V);
    ms_generator_reset_prompt_tokens(g, prompt, B, 64, NULL);
    /* Only this rank's shard of each rotating matrix is filled and read. */
    float *buf[NBUF];
    ms_logits mine[NBUF];
    for (int k = 0; k < NBUF; k++) {
        buf[k] = malloc(sizeof(float) * (size_t)B * V);
        ms_logits full = {buf[k], MS_DTYPE_F32, 0};
        ms_generator_device_view(g, &full, rank, &mine[k]);
        const int32_t w = ms_generator_shard_width(g);
        /* the view's offset into buf[k], written through the non-const buffer */
        const size_t off = (size_t)((const float *)mine[k].data - buf[k]);
        for (int b = 0; b < B; b++) {
            float *row = buf[k] + off + (size_t)b * V;
            for (int j = 0; j < w; j++) {
                double u1 = ((double)(rng(&s) >> 11) + 0.5) * 0x1p-53, u2 = (double)(rng(&s) >> 11) * 0x1p-53;
                row[j] = (float)(2.5 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
            }
            for (int j = 0; j < 4; j++) row[rng(&s) % (uint64_t)w] = 12.0f + (float)j * 0.1f;
        }
    }
    int32_t tok[B], rk[B], tc[B], tid[B * 20];
    float lp[B], tl[B * 20];
    ms_step_output out = {tok, NULL, lp, rk, tc, tid, tl};
    double *t = malloc(sizeof(double) * (size_t)steps), *f = malloc(sizeof(double) * (size_t)steps);
    volatile float sink = 0; /* keeps the floor read from being optimised away */
    for (int i = -3; i < steps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        ms_generator_sample(g, &mine[(i + 8) % NBUF], 1, false, &out);
        double t1 = MPI_Wtime();
        /* the floor: one read of this rank's shard of another buffer */
        const ms_logits *l = &mine[(i + 10) % NBUF];
        float m = -INFINITY;
        const int32_t w = ms_generator_shard_width(g);
        for (int b = 0; b < B; b++) {
            const float *row = (const float *)l->data + (size_t)b * V;
            for (int j = 0; j < w; j++) m = row[j] > m ? row[j] : m;
        }
        sink += m;
        double t2 = MPI_Wtime();
        if (i >= 0) t[i] = t1 - t0, f[i] = t2 - t1;
    }
    (void)sink;
    qsort(t, (size_t)steps, sizeof *t, cmp);
    qsort(f, (size_t)steps, sizeof *f, cmp);
    if (rank == 0)
        printf("mpi %dx%d (%d ranks): median step %.3f ms, one read of a shard %.3f ms\n", rows, cols,
               size, t[steps / 2] * 1e3, f[steps / 2] * 1e3);
    ms_generator_destroy(g);
    MPI_Finalize();
    return 0;
}
