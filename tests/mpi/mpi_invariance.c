/*
 * MPI invariance (DESIGN 1, 7): one SPMD program, one rank per device. Every rank builds the
 * same deterministic decode scenario (tests/invariance/inv_scenario.c: 32 users, vocab 3500
 * padded to 4096, 6 committed steps, penalties with prompt and output histories, 16 mixed
 * parameter kinds including exact-mode fallback users (k 0, p < 1), log-probs with top-N,
 * +inf / bad / single-token / tied rows), takes its own shard with
 * ms_generator_device_view(g, &full, rank, &mine) and calls ms_generator_sample(g, &mine, 1, ...)
 * on the mpi backend. Rank 0 also runs the same loop on the host backend with the same mesh
 * shape and on a 1x1 host mesh, in-process, and compares field by field (tokens, row errors,
 * ranks, top ids exactly; log-probs within 1e-5). Every rank's outputs must be bitwise identical
 * to rank 0's (MPI_Gather of the records). Then, on the same meshes, injected transport
 * failures (every rank fails the same exchange) must return MS_ERR_TRANSPORT with a message and
 * change no state: the next good step gives the tokens of the clean run.
 *
 * Usage: mpi_invariance MESH...  with MESH = RxC[aAXIS][dDP][lLINKS][f], e.g. 1x8 2x4a0
 * 2x4a1d2f 8x1 2x4a1l3 (f: also the injected-failure phase). The world size must equal R*C for
 * every mesh. Exit 0 only when everything matched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "core/ms_generator_impl.h"
#include "inv_scenario.h"
#include "meshsample/mpi.h"

#define NUSERS 32
#define VOCAB 3500
#define PADDED 4096
#define NSTEPS 6
#define TOL 1e-5

typedef struct mesh_spec {
    int32_t rows, cols, axis, dp, links;
    bool faults; /* also run the injected-failure phase */
    char name[32];
} mesh_spec;

typedef struct run_case {
    const char *name;
    int32_t max_top_k;
    ms_logprobs_mode mode;
    ms_penalty_order order;
    ms_dtype dtype;
    bool trace;
    bool all_greedy;
} run_case;

static const run_case cases[] = {
    {"exact raw f32", 0, MS_LOGPROBS_RAW, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32, false, false},
    {"exact processed bf16 traced", 0, MS_LOGPROBS_PROCESSED, MS_PENALTY_ORDER_OPENAI,
     MS_DTYPE_BF16, true, false},
    {"truncated32 penalized tt-order traced", 32, MS_LOGPROBS_PENALIZED, MS_PENALTY_ORDER_TT,
     MS_DTYPE_F32, true, false},
    {"all greedy (force-argmax)", 0, MS_LOGPROBS_RAW, MS_PENALTY_ORDER_OPENAI, MS_DTYPE_F32, false,
     true},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* LeakSanitizer's check, run before MPI_Finalize: MPICH/UCX leak ~1 KB at finalize (a plain
 * MPI_Init + MPI_Finalize program reports it too, from unloaded modules that no suppression
 * can name), while every allocation of the library and of this program is gone by then. A
 * checked run skips the check at exit. Weak: NULL without the sanitizer. */
void __lsan_do_leak_check(void) __attribute__((weak));

static int rank, world;
static double t_start;

static bool parse_mesh(const char *s, mesh_spec *m)
{
    memset(m, 0, sizeof *m);
    m->dp = 1;
    m->links = 1;
    m->axis = -1;
    char *end;
    m->rows = (int32_t)strtol(s, &end, 10);
    if (*end != 'x')
        return false;
    m->cols = (int32_t)strtol(end + 1, &end, 10);
    while (*end) {
        char k = *end++;
        long v = strtol(end, &end, 10);
        if (k == 'a')
            m->axis = (int32_t)v;
        else if (k == 'd')
            m->dp = (int32_t)v;
        else if (k == 'l')
            m->links = (int32_t)v;
        else if (k == 'f')
            m->faults = true;
        else
            return false;
    }
    if (m->axis < 0)
        m->axis = m->rows == 1 ? 1 : 0;
    snprintf(m->name, sizeof m->name, "%s", s);
    return m->rows > 0 && m->cols > 0;
}

/* Create on every rank; all ranks agree on success. */
static ms_generator *create_all(ms_generator_config *cfg, const char *what)
{
    ms_generator *g = NULL;
    ms_status st = ms_generator_create(cfg, &g);
    int ok = st == MS_OK, all = 0;
    if (!ok)
        printf("rank %d: %s: create: %s: %s\n", rank, what, ms_status_name(st),
               ms_create_last_error());
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all) {
        ms_generator_destroy(g);
        return NULL;
    }
    return g;
}

static ms_generator *create_host(const ms_generator_config *cfg, const char *what)
{
    ms_generator *g = NULL;
    ms_status st = ms_generator_create(cfg, &g);
    if (st != MS_OK) {
        printf("rank 0: %s: create: %s: %s\n", what, ms_status_name(st), ms_create_last_error());
        return NULL;
    }
    return g;
}

/* A record as bytes, for the gather. */
static size_t rec_bytes(const inv_record *r)
{
    const size_t n = (size_t)r->steps * r->U, nc = n * (size_t)(r->cap > 0 ? r->cap : 1);
    return n * (4 + 1 + 4 + 4 + 4) + nc * (4 + 4);
}

static void rec_pack(const inv_record *r, unsigned char *b, bool unpack)
{
    const size_t n = (size_t)r->steps * r->U, nc = n * (size_t)(r->cap > 0 ? r->cap : 1);
    struct {
        void *p;
        size_t bytes;
    } f[] = {{r->tokens, n * 4},    {r->row_error, n},       {r->logprob, n * 4},
             {r->rank, n * 4},      {r->top_count, n * 4},   {r->top_ids, nc * 4},
             {r->top_lp, nc * 4}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (unpack)
            memcpy(f[i].p, b, f[i].bytes);
        else
            memcpy(b, f[i].p, f[i].bytes);
        b += f[i].bytes;
    }
}

/* Every rank's record against rank 0's, bitwise. Returns mismatches (on rank 0). */
static long cross_rank_check(const inv_record *mine, const char *what)
{
    const size_t nb = rec_bytes(mine);
    unsigned char *send = malloc(nb), *all = rank == 0 ? malloc(nb * (size_t)world) : NULL;
    if (!send || (rank == 0 && !all))
        abort();
    rec_pack(mine, send, false);
    MPI_Gather(send, (int)nb, MPI_BYTE, all, (int)nb, MPI_BYTE, 0, MPI_COMM_WORLD);
    long bad = 0;
    if (rank == 0) {
        inv_record other;
        inv_record_init(&other, mine->steps, mine->U, mine->cap);
        for (int r = 1; r < world; r++) {
            rec_pack(&other, all + (size_t)r * nb, true);
            char w[320];
            snprintf(w, sizeof w, "%s: rank %d vs rank 0", what, r);
            bad += inv_record_compare_bits(mine, &other, w, 4);
        }
        inv_record_free(&other);
    }
    free(send);
    free(all);
    return bad;
}

/* A barrier that sleeps instead of spinning: with 8 ranks on 2 cores, ranks busy-polling in a
 * collective would take the CPU from rank 0's host runs. */
static void lazy_barrier(void)
{
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    for (;;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            break;
        const struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* One (mesh, case): the mpi run on every rank, the host runs and comparisons on rank 0. */
static long run_one(const inv_scenario *sc, const mesh_spec *m, const run_case *c)
{
    const double t0 = MPI_Wtime();
    char what[256], err[512];
    snprintf(what, sizeof what, "mpi %s [%s]", m->name, c->name);
    long bad = 0;
    ms_generator_config cfg =
        inv_config(sc, m->rows, m->cols, m->axis, m->dp, 1, c->max_top_k, c->mode, c->order);
    cfg.mesh.num_links = m->links;
    ms_generator_config hcfg = cfg; /* host, same shape */
    ms_generator_config_set_mpi(&cfg, MPI_COMM_WORLD);
    ms_generator *g = create_all(&cfg, what);
    if (!g)
        return 1;
    inv_record rec;
    inv_record_init(&rec, NSTEPS, NUSERS, ms_generator_max_logprobs(g));
    if (ms_generator_num_shards(g) != 1) {
        printf("rank %d: %s: num_shards %d, want 1\n", rank, what, (int)ms_generator_num_shards(g));
        bad++;
    }
    ms_status st = inv_run(g, sc, c->dtype, c->trace, rank, &rec, err, sizeof err);
    int ok = st == MS_OK, all = 0;
    if (!ok)
        printf("rank %d: %s: %s\n", rank, what, err);
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    /* Counters advanced once per committed step on every rank. */
    for (int32_t u = 0; all && u < NUSERS; u++) {
        int64_t seed;
        uint64_t ctr;
        if (ms_generator_get_seed(g, u, &seed, &ctr) != MS_OK || ctr != NSTEPS || seed != sc->seeds[u]) {
            printf("rank %d: %s: slot %d seed %lld counter %llu, want %lld and %d\n", rank, what,
                   (int)u, (long long)seed, (unsigned long long)ctr, (long long)sc->seeds[u], NSTEPS);
            bad++;
            break;
        }
    }
    ms_generator_destroy(g);
    if (!all) {
        inv_record_free(&rec);
        return bad + 1;
    }
    long xr = cross_rank_check(&rec, what);
    bad += xr;
    long vs_host = 0, vs_1x1 = 0;
    if (rank == 0) {
        ms_generator *h = create_host(&hcfg, "host same shape");
        inv_record hr;
        inv_record_init(&hr, NSTEPS, NUSERS, rec.cap);
        char w[300];
        if (!h || inv_run(h, sc, c->dtype, c->trace, -1, &hr, err, sizeof err) != MS_OK) {
            printf("%s: host run failed: %s\n", what, h ? err : "create");
            vs_host = 1;
        } else {
            snprintf(w, sizeof w, "%s vs host %s", what, m->name);
            vs_host = inv_record_compare(&hr, &rec, TOL, w, 8);
        }
        ms_generator_destroy(h);
        ms_generator_config rcfg = inv_config(sc, 1, 1, 0, 1, 1, c->max_top_k, c->mode, c->order);
        rcfg.mesh.allow_force_argmax = !c->all_greedy;
        h = create_host(&rcfg, "host 1x1");
        if (!h || inv_run(h, sc, MS_DTYPE_F32, false, -1, &hr, err, sizeof err) != MS_OK) {
            printf("%s: host 1x1 run failed: %s\n", what, h ? err : "create");
            vs_1x1 = 1;
        } else {
            snprintf(w, sizeof w, "%s vs host 1x1", what);
            vs_1x1 = inv_record_compare(&hr, &rec, TOL, w, 8);
            vs_1x1 += inv_record_selfcheck(sc, &hr, "host 1x1 reference");
        }
        ms_generator_destroy(h);
        inv_record_free(&hr);
        printf("%-52s mismatching fields: vs host same shape %ld, vs host 1x1 %ld, ranks vs rank 0 "
               "%ld (%.2f s)\n",
               what, vs_host, vs_1x1, xr, MPI_Wtime() - t0);
        fflush(stdout);
    }
    lazy_barrier();
    inv_record_free(&rec);
    return bad + vs_host + vs_1x1;
}

/* Injected failures on every rank at once: each exchange of each step fails in turn, then the
 * step succeeds and must give the clean run's outputs. */
static long run_faults(const inv_scenario *sc, const mesh_spec *m)
{
    const double t0 = MPI_Wtime();
    const run_case *c = &cases[0];
    char what[256], err[512];
    snprintf(what, sizeof what, "mpi %s faults [%s]", m->name, c->name);
    ms_generator_config cfg =
        inv_config(sc, m->rows, m->cols, m->axis, m->dp, 1, c->max_top_k, c->mode, c->order);
    cfg.mesh.num_links = m->links;
    ms_generator_config_set_mpi(&cfg, MPI_COMM_WORLD);
    ms_generator *g = create_all(&cfg, what);
    if (!g)
        return 1;
    inv_record clean;
    inv_record_init(&clean, NSTEPS, NUSERS, ms_generator_max_logprobs(g));
    ms_status st = inv_run(g, sc, c->dtype, false, rank, &clean, err, sizeof err);
    ms_generator_destroy(g);
    if (st != MS_OK) {
        printf("rank %d: %s: clean run: %s\n", rank, what, err);
        inv_record_free(&clean);
        return 1;
    }
    g = create_all(&cfg, what);
    if (!g) {
        inv_record_free(&clean);
        return 1;
    }
    long bad = 0;
    if (inv_scenario_install(sc, g) != MS_OK) /* same on every rank */
        bad++;
    const size_t per_step = (size_t)NUSERS * (size_t)sc->stride;
    ms_logits full = {NULL, MS_DTYPE_F32, sc->stride}, mine;
    inv_record got;
    inv_record_init(&got, 1, NUSERS, clean.cap);
    int injected = 0, exchanges_min = 1 << 30;
    for (int32_t step = 0; step < NSTEPS; step++) {
        full.data = sc->f32 + (size_t)step * per_step;
        if (ms_generator_device_view(g, &full, rank, &mine) != MS_OK) {
            bad++;
            break;
        }
        ms_step_output out = {got.tokens, got.row_error, got.logprob, got.rank,
                              got.top_count, got.top_ids, got.top_lp};
        int n = 0;
        bool diverged = false;
        for (;; n++) {
            ms__generator_inject_fault(g, n, MS_ERR_TRANSPORT);
            st = ms_generator_sample(g, &mine, 1, false, &out);
            /* Every rank must see the same status, or the next collective would hang. */
            int code[2] = {(int)st, -(int)st}, red[2];
            MPI_Allreduce(code, red, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (red[0] != -red[1]) {
                if (rank == 0)
                    printf("%s: step %d, fault at exchange %d: ranks disagree on the status "
                           "(max %d, min %d)\n",
                           what, (int)step, n, red[0], -red[1]);
                diverged = true;
                bad++;
                break;
            }
            if (st == MS_OK)
                break;
            injected++;
            if (st != MS_ERR_TRANSPORT || ms_generator_last_error(g)[0] == '\0') {
                printf("rank %d: %s: step %d, fault at exchange %d: %s, message \"%s\"\n", rank,
                       what, (int)step, n, ms_status_name(st), ms_generator_last_error(g));
                bad++;
                if (st != MS_ERR_TRANSPORT) /* the same on every rank (checked above) */
                    break;
            }
            for (int32_t u = 0; u < NUSERS; u++) {
                int64_t seed;
                uint64_t ctr;
                ms_generator_get_seed(g, u, &seed, &ctr);
                if (ctr != (uint64_t)step) {
                    printf("rank %d: %s: step %d: failed call moved slot %d's counter to %llu\n",
                           rank, what, (int)step, (int)u, (unsigned long long)ctr);
                    bad++;
                    break;
                }
            }
            if (n > 64) {
                printf("rank %d: %s: step %d: more than 64 exchanges fail\n", rank, what, (int)step);
                bad++;
                break;
            }
        }
        ms__generator_inject_fault(g, -1, MS_OK);
        if (n < exchanges_min)
            exchanges_min = n;
        long any = 0;
        MPI_Allreduce(&bad, &any, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (diverged || any || st != MS_OK)
            break;
        /* The good step equals step `step` of the clean run. */
        inv_record one;
        inv_record_init(&one, 1, NUSERS, clean.cap);
        const size_t at = (size_t)step * NUSERS;
        memcpy(one.tokens, clean.tokens + at, NUSERS * sizeof(int32_t));
        memcpy(one.row_error, clean.row_error + at, NUSERS);
        memcpy(one.logprob, clean.logprob + at, NUSERS * sizeof(float));
        memcpy(one.rank, clean.rank + at, NUSERS * sizeof(int32_t));
        memcpy(one.top_count, clean.top_count + at, NUSERS * sizeof(int32_t));
        memcpy(one.top_ids, clean.top_ids + at * clean.cap, (size_t)NUSERS * clean.cap * sizeof(int32_t));
        memcpy(one.top_lp, clean.top_lp + at * clean.cap, (size_t)NUSERS * clean.cap * sizeof(float));
        char w[300];
        snprintf(w, sizeof w, "%s rank %d step %d after %d failures", what, rank, (int)step, n);
        bad += inv_record_compare_bits(&one, &got, w, 4);
        inv_record_free(&one);
    }
    if (exchanges_min < 1) {
        printf("rank %d: %s: a step had no failable exchange\n", rank, what);
        bad++;
    }
    inv_record_free(&got);
    inv_record_free(&clean);
    ms_generator_destroy(g);
    long all = 0;
    MPI_Allreduce(&bad, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%-52s %d injected failures on rank 0 (>= %d exchanges per step), %ld problems "
               "(%.2f s)\n",
               what, injected, exchanges_min, all, MPI_Wtime() - t0);
    return bad;
}

int main(int argc, char **argv)
{
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    t_start = MPI_Wtime();
    setvbuf(stdout, NULL, _IOLBF, 0);
    long bad = 0;
    if (!ms_mpi_available()) {
        if (rank == 0)
            printf("ms_mpi_available() is 0\n");
        bad++;
    }
    if (provided < MPI_THREAD_FUNNELED && rank == 0)
        printf("note: MPI provides thread level %d only\n", provided);
    inv_scenario sc, scg;
    inv_scenario_build_pair(&sc, &scg, NUSERS, VOCAB, PADDED, NSTEPS, 0x1a2b3c4d5eULL);
    for (int a = 1; a < argc && !bad; a++) {
        mesh_spec m;
        if (!parse_mesh(argv[a], &m) || m.rows * m.cols != world) {
            if (rank == 0)
                printf("bad mesh \"%s\" for %d ranks\n", argv[a], world);
            bad++;
            break;
        }
        for (int c = 0; c < NCASES; c++)
            bad += run_one(cases[c].all_greedy ? &scg : &sc, &m, &cases[c]);
        if (m.faults)
            bad += run_faults(&sc, &m);
    }
    inv_scenario_free_pair(&sc, &scg);
    long total = 0;
    MPI_Allreduce(&bad, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%s: %ld problems over %d meshes on %d ranks (%.2f s)\n",
               total ? "FAIL" : "PASS", total, argc - 1, world, MPI_Wtime() - t_start);
    if (__lsan_do_leak_check)
        __lsan_do_leak_check();
    MPI_Finalize();
    return total ? 1 : 0;
}
