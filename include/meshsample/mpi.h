/*
 * meshsample over MPI: one rank per device of the mesh, SPMD. The only public header that
 * includes <mpi.h>. The caller initialises MPI (MPI_THREAD_FUNNELED or higher: the library calls
 * MPI from the thread that calls it, never from its workers).
 */
#ifndef MESHSAMPLE_MPI_H
#define MESHSAMPLE_MPI_H

#include <mpi.h>

#include "meshsample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Select the mpi backend on comm: rank i of comm is device i (row i / cols, column i % cols), and
 * comm must hold exactly rows*cols ranks (checked at create). The library duplicates comm at
 * create, so the caller's communicator is never used for library traffic. Every rank calls every
 * generator function with the same arguments, except the logits: ms_generator_sample gets one
 * ms_logits, this rank's shard, and every rank receives the outputs of all users. */
MS_API ms_status ms_generator_config_set_mpi(ms_generator_config *cfg, MPI_Comm comm);

/* 1 when the library was built with the MPI transport, else 0 (then create with the mpi backend
 * fails with MS_ERR_UNSUPPORTED). */
MS_API int ms_mpi_available(void);

#ifdef __cplusplus
}
#endif
#endif
