/*
 * A peer that dies mid-run (DESIGN 4: "the MPI transport must never hang silently on a peer
 * that died: fail the step with an error, or abort the job through MPI").
 *
 * Two ranks, mesh 1x2 (mpi backend). Both run committed decode steps; after 3 steps rank 1
 * kills itself (raise(SIGKILL)) while rank 0 keeps calling ms_generator_sample. When a call
 * returns an error, rank 0 prints it and exits with 42 (no MPI_Finalize: the peer is gone).
 * When rank 0 is still stepping after 30 s it exits with 43. The wrapper script
 * (run_failure.sh) runs the job under `timeout 60` and passes only if it ended non-zero within
 * 20 s.
 *
 * --ignore-sigusr1: rank 0 ignores SIGUSR1. Hydra's `mpiexec -n 2 -disable-auto-cleanup` does
 * not kill the survivors of a dead rank; it sends them SIGUSR1, whose default action ends the
 * process whatever the library does. Ignoring it (as any program with its own SIGUSR1 use
 * would) leaves only the library's own detection of the dead peer between rank 0 and a hang.
 * With --timeout-ms the transport's deadline is short: an open collective past it aborts the
 * job through MPI_Abort, so the job ends whether or not Hydra kills the survivor
 * (mpi_failure_noclean).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "inv_scenario.h"
#include "meshsample/mpi.h"

#define NUSERS 32
#define VOCAB 3500
#define PADDED 4096
#define NSTEPS 6

int main(int argc, char **argv)
{
    int provided = 0, rank = 0, world = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int timeout_ms = -1; /* -1: the library default */
    int hang = 0;        /* rank 1 stops calling instead of dying */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ignore-sigusr1") == 0 && rank == 0) signal(SIGUSR1, SIG_IGN);
        if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) timeout_ms = atoi(argv[++i]);
        if (strcmp(argv[i], "--hang") == 0) hang = 1;
    }
    if (world != 2) {
        if (rank == 0)
            printf("run me on 2 ranks (got %d)\n", world);
        MPI_Finalize();
        return 2;
    }
    inv_scenario sc;
    inv_scenario_build(&sc, NUSERS, VOCAB, PADDED, NSTEPS, 0x5eed5eedULL);
    ms_generator_config cfg = inv_config(&sc, 1, 2, 1, 1, 1, 0, MS_LOGPROBS_RAW,
                                         MS_PENALTY_ORDER_OPENAI);
    ms_generator_config_set_mpi(&cfg, MPI_COMM_WORLD);
    if (timeout_ms >= 0) cfg.transport_timeout_ms = timeout_ms;
    ms_generator *g = NULL;
    ms_status st = ms_generator_create(&cfg, &g);
    if (st != MS_OK) {
        printf("rank %d: create: %s: %s\n", rank, ms_status_name(st), ms_create_last_error());
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    st = inv_scenario_install(&sc, g);
    if (st != MS_OK) {
        printf("rank %d: install: %s: %s\n", rank, ms_status_name(st), ms_generator_last_error(g));
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    int32_t tokens[NUSERS];
    ms_step_output out = {tokens, NULL, NULL, NULL, NULL, NULL, NULL};
    const double t0 = MPI_Wtime();
    double t_kill = 0.0;
    for (long step = 0;; step++) {
        if (rank == 1 && step == 3) {
            if (hang) { /* alive but silent: only the transport's deadline can end the job */
                printf("rank 1: step %ld: hanging\n", step);
                for (;;) pause();
            }
            printf("rank 1: step %ld: raise(SIGKILL)\n", step);
            raise(SIGKILL);
        }
        if (rank == 0 && step == 3)
            t_kill = MPI_Wtime();
        const ms_logits full = {sc.f32 + (size_t)(step % NSTEPS) * NUSERS * (size_t)sc.stride,
                                MS_DTYPE_F32, sc.stride};
        ms_logits mine;
        ms_generator_device_view(g, &full, rank, &mine);
        st = ms_generator_sample(g, &mine, 1, false, &out);
        if (st != MS_OK) {
            printf("rank %d: step %ld: sample returned %s: \"%s\" (%.2f s after the kill step)\n",
                   rank, step, ms_status_name(st), ms_generator_last_error(g),
                   MPI_Wtime() - t_kill);
            fflush(stdout);
            _exit(42);
        }
        if (step < 3)
            printf("rank %d: step %ld ok (token[0] %d)\n", rank, step, (int)tokens[0]);
        if (MPI_Wtime() - t0 > 30.0) {
            printf("rank %d: still stepping after 30 s (step %ld) without an error\n", rank, step);
            fflush(stdout);
            _exit(43);
        }
    }
}
