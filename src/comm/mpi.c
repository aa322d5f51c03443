/* The MPI transport: one rank per device, a Cartesian communicator of the cluster shape, the
 * gather on the sub-communicator of the gather axis, MPI-4 persistent all-gathers when the
 * buffers stay the same from step to step. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "comm/ms_comm.h"
#include "common/ms_rng.h"

#ifdef MESHSAMPLE_WITH_MPI
#include <mpi.h>

#include "meshsample/mpi.h"

typedef struct mpi_ctx {
    MPI_Comm cart, gather, groups;
    int T, O;
    /* persistent all-gather on the gather axis, rebuilt when its buffers change */
    MPI_Request req;
    const void *req_send;
    void *req_recv;
    size_t req_bytes;
    int persistent_ok; /* the library's persistent all-gather passed the probe at create */
    int links;         /* concurrent segments of a gather (GALAXY_NUM_LINKS) */
    int timeout_ms;    /* 0: wait forever */
    void *seg;         /* staging of a segmented gather */
    size_t seg_cap;
    MPI_Request *reqs;
    int *counts, *displs;
    char err[MPI_MAX_ERROR_STRING];
} mpi_ctx;

int ms_mpi_available(void)
{
    return 1;
}

ms_status ms_generator_config_set_mpi(ms_generator_config *cfg, MPI_Comm comm)
{
    if (!cfg) return MS_ERR_INVALID_ARGUMENT;
    cfg->backend = MS_BACKEND_MPI;
    cfg->mpi_comm = (int64_t)MPI_Comm_c2f(comm);
    return MS_OK;
}

static ms_status mpi_fail(int rc)
{
    return rc == MPI_SUCCESS ? MS_OK : MS_ERR_TRANSPORT;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Wait for a collective with a deadline. MPICH does not fail a collective whose peer died (its
 * process manager usually kills the job, but not when cleanup is disabled), so an open request
 * past the deadline aborts the job through MPI: no rank is left waiting forever. Spins first,
 * then naps, so a healthy step pays no sleep. */
static int wait_deadline(mpi_ctx *x, MPI_Request *r)
{
    if (x->timeout_ms == 0) return MPI_Wait(r, MPI_STATUS_IGNORE);
    const double t0 = now_s();
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done) return rc;
        if (spins < 20000) continue;
        struct timespec nap = {0, 50000};
        nanosleep(&nap, NULL);
        if ((now_s() - t0) * 1000.0 > (double)x->timeout_ms) {
            fprintf(stderr,
                    "meshsample: a collective of the mpi transport is still open after %d ms: a "
                    "peer died or hangs; aborting the job\n",
                    x->timeout_ms);
            MPI_Abort(x->cart, 70);
            return MPI_ERR_OTHER;
        }
    }
}

static ms_status iallgather(mpi_ctx *x, const void *send, void *recv, size_t bytes, MPI_Comm comm)
{
    MPI_Request r;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm, &r);
    if (rc == MPI_SUCCESS) rc = wait_deadline(x, &r);
    return mpi_fail(rc);
}

/* The gather cut into `links` segments in flight at once (TT's links): segment l of every
 * device lands in staging [l][T][len_l], then moves to its place in recv. */
static ms_status allgather_segmented(mpi_ctx *x, const void *send, void *recv, size_t bytes)
{
    const size_t L = (size_t)x->links, T = (size_t)x->T;
    const size_t seg = (bytes + L - 1) / L;
    if (x->seg_cap < bytes * T) {
        void *p = realloc(x->seg, bytes * T);
        if (!p) return MS_ERR_NO_MEMORY;
        x->seg = p;
        x->seg_cap = bytes * T;
    }
    size_t off = 0;
    int rc = MPI_SUCCESS;
    for (size_t l = 0; l < L; l++) {
        size_t len = l * seg >= bytes ? 0 : (bytes - l * seg < seg ? bytes - l * seg : seg);
        x->reqs[l] = MPI_REQUEST_NULL;
        if (len == 0) continue;
        if (rc == MPI_SUCCESS)
            rc = MPI_Iallgather((const char *)send + l * seg, (int)len, MPI_BYTE,
                                (char *)x->seg + off, (int)len, MPI_BYTE, x->gather, &x->reqs[l]);
        off += len * T;
    }
    int rw = MPI_SUCCESS;
    for (size_t l = 0; l < L; l++)
        if (x->reqs[l] != MPI_REQUEST_NULL && wait_deadline(x, &x->reqs[l]) != MPI_SUCCESS)
            rw = MPI_ERR_OTHER;
    if (rc != MPI_SUCCESS || rw != MPI_SUCCESS) return MS_ERR_TRANSPORT;
    off = 0;
    for (size_t l = 0; l < L; l++) {
        size_t len = l * seg >= bytes ? 0 : (bytes - l * seg < seg ? bytes - l * seg : seg);
        for (size_t s = 0; s < T; s++)
            memcpy((char *)recv + s * bytes + l * seg, (const char *)x->seg + off + s * len, len);
        off += len * T;
    }
    return MS_OK;
}

static ms_status mpi_allgather(void *vctx, const void *send, void *recv, size_t bytes)
{
    mpi_ctx *x = vctx;
    if (bytes > INT32_MAX) return MS_ERR_UNSUPPORTED;
    if (x->links > 1 && bytes >= (size_t)x->links * 1024)
        return allgather_segmented(x, send, recv, bytes);
#if MPI_VERSION >= 4
    if (!x->persistent_ok) return iallgather(x, send, recv, bytes, x->gather);
    if (x->req == MPI_REQUEST_NULL || x->req_send != send || x->req_recv != recv ||
        x->req_bytes != bytes) {
        if (x->req != MPI_REQUEST_NULL) MPI_Request_free(&x->req);
        int rc = MPI_Allgather_init(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE,
                                    x->gather, MPI_INFO_NULL, &x->req);
        if (rc != MPI_SUCCESS) {
            x->req = MPI_REQUEST_NULL;
            return MS_ERR_TRANSPORT;
        }
        x->req_send = send;
        x->req_recv = recv;
        x->req_bytes = bytes;
    }
    int rc = MPI_Start(&x->req);
    if (rc == MPI_SUCCESS) rc = wait_deadline(x, &x->req);
    return mpi_fail(rc);
#else
    return iallgather(x, send, recv, bytes, x->gather);
#endif
}

static ms_status mpi_allgatherv(void *vctx, const void *send, size_t bytes, void **recv,
                                size_t *cap, size_t *counts)
{
    mpi_ctx *x = vctx;
    if (bytes > INT32_MAX) return MS_ERR_UNSUPPORTED;
    int mine = (int)bytes;
    MPI_Request r;
    int rc = MPI_Iallgather(&mine, 1, MPI_INT, x->counts, 1, MPI_INT, x->gather, &r);
    if (rc == MPI_SUCCESS) rc = wait_deadline(x, &r);
    if (rc != MPI_SUCCESS) return MS_ERR_TRANSPORT;
    size_t total = 0;
    for (int s = 0; s < x->T; s++) {
        x->displs[s] = (int)total;
        counts[s] = (size_t)x->counts[s];
        total += (size_t)x->counts[s];
    }
    if (total > INT32_MAX) return MS_ERR_UNSUPPORTED;
    if (total > *cap) {
        void *p = realloc(*recv, total);
        if (!p) return MS_ERR_NO_MEMORY;
        *recv = p;
        *cap = total;
    }
    rc = MPI_Iallgatherv(send, mine, MPI_BYTE, *recv, x->counts, x->displs, MPI_BYTE, x->gather,
                         &r);
    if (rc == MPI_SUCCESS) rc = wait_deadline(x, &r);
    return mpi_fail(rc);
}

static ms_status mpi_allgather_groups(void *vctx, const void *send, void *recv, size_t bytes)
{
    mpi_ctx *x = vctx;
    if (bytes > INT32_MAX) return MS_ERR_UNSUPPORTED;
    return iallgather(x, send, recv, bytes, x->groups);
}

static void mpi_destroy(void *vctx)
{
    mpi_ctx *x = vctx;
    if (!x) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        if (x->req != MPI_REQUEST_NULL) MPI_Request_free(&x->req);
        if (x->groups != MPI_COMM_NULL) MPI_Comm_free(&x->groups);
        if (x->gather != MPI_COMM_NULL) MPI_Comm_free(&x->gather);
        if (x->cart != MPI_COMM_NULL) MPI_Comm_free(&x->cart);
    }
    free(x->counts);
    free(x->displs);
    free(x->seg);
    free(x->reqs);
    free(x);
}

/* MPICH 4.0.2 (Debian 12) accepts MPI_Allgather_init but every later MPI_Start resends the
 * first start's data. Two starts with different contents tell a working implementation from
 * that one; all ranks agree on the verdict through an allreduce. */
static int probe_persistent(MPI_Comm comm)
{
#if MPI_VERSION >= 4
    int n = 0, r = 0;
    MPI_Comm_size(comm, &n);
    MPI_Comm_rank(comm, &r);
    /* The broken implementation also reads past the receive buffer: room to spare keeps the
     * probe itself from tripping over it. */
    int *recv = calloc((size_t)n * 4 + 16, sizeof *recv);
    if (!recv) return 0;
    int send = 0, ok = 1;
    MPI_Request req = MPI_REQUEST_NULL;
    if (MPI_Allgather_init(&send, 1, MPI_INT, recv, 1, MPI_INT, comm, MPI_INFO_NULL, &req) !=
        MPI_SUCCESS) {
        ok = 0;
    } else {
        for (int round = 0; round < 2 && ok; round++) {
            send = r * 2 + round;
            if (MPI_Start(&req) != MPI_SUCCESS || MPI_Wait(&req, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                ok = 0;
            for (int i = 0; ok && i < n; i++) ok = recv[i] == i * 2 + round;
        }
        MPI_Request_free(&req);
    }
    free(recv);
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
    return all;
#else
    (void)comm;
    return 0;
#endif
}

static const ms__comm_i mpi_i = {
    .name = "mpi",
    .allgather = mpi_allgather,
    .allgatherv = mpi_allgatherv,
    .allgather_groups = mpi_allgather_groups,
    .destroy = mpi_destroy,
};

ms_status ms__comm_init_mpi(ms__comm *c, int64_t fcomm, int32_t rows, int32_t cols, int32_t axis,
                            int32_t dp, int32_t links, int32_t timeout_ms, char *msg, size_t cap)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        snprintf(msg, cap, "backend mpi: MPI is not initialised (call MPI_Init first)");
        return MS_ERR_MISUSE;
    }
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)fcomm);
    int size = 0, rank = 0;
    if (comm == MPI_COMM_NULL || MPI_Comm_size(comm, &size) != MPI_SUCCESS) {
        snprintf(msg, cap, "backend mpi: invalid communicator");
        return MS_ERR_INVALID_CONFIG;
    }
    MPI_Comm_rank(comm, &rank);
    if (size != rows * cols) {
        snprintf(msg, cap, "backend mpi: the communicator has %d ranks but the %dx%d mesh needs %d",
                 size, (int)rows, (int)cols, (int)(rows * cols));
        return MS_ERR_INVALID_CONFIG;
    }
    mpi_ctx *x = calloc(1, sizeof *x);
    int T = axis == 0 ? rows : cols;
    if (x) {
        x->counts = calloc((size_t)T, sizeof *x->counts);
        x->displs = calloc((size_t)T, sizeof *x->displs);
        x->links = links < 1 ? 1 : links;
        x->timeout_ms = timeout_ms;
        x->reqs = calloc((size_t)x->links, sizeof *x->reqs);
    }
    if (!x || !x->counts || !x->displs || !x->reqs) {
        if (x) {
            free(x->counts);
            free(x->displs);
            free(x->reqs);
        }
        free(x);
        snprintf(msg, cap, "backend mpi: out of memory");
        return MS_ERR_NO_MEMORY;
    }
    x->req = MPI_REQUEST_NULL;
    x->cart = x->gather = x->groups = MPI_COMM_NULL;
    x->T = T;
    x->O = (rows * cols) / T;
    int dims[2] = {rows, cols}, periods[2] = {0, 0};
    /* reorder 0: rank i stays device i, as the header promises */
    int rc = MPI_Cart_create(comm, 2, dims, periods, 0, &x->cart);
    int keep_g[2] = {axis == 0, axis == 1}, keep_o[2] = {axis != 0, axis != 1};
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(x->cart, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Cart_sub(x->cart, keep_g, &x->gather);
    if (rc == MPI_SUCCESS) rc = MPI_Cart_sub(x->cart, keep_o, &x->groups);
    if (rc != MPI_SUCCESS) {
        int len = 0;
        MPI_Error_string(rc, x->err, &len);
        snprintf(msg, cap, "backend mpi: building the mesh communicators failed: %s", x->err);
        mpi_destroy(x);
        return MS_ERR_TRANSPORT;
    }
    MPI_Comm_set_errhandler(x->gather, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(x->groups, MPI_ERRORS_RETURN);
    x->persistent_ok = probe_persistent(x->cart);
    /* One entropy key for the whole mesh, so unseeded users draw the same seed on every rank. */
    unsigned long long key = 0;
    if (rank == 0) key = (unsigned long long)ms__entropy_seed();
    MPI_Bcast(&key, 1, MPI_UNSIGNED_LONG_LONG, 0, x->cart);
    c->entropy_key = (uint64_t)key;
    int coords[2];
    MPI_Cart_coords(x->cart, rank, 2, coords);
    const uint64_t entropy_key = c->entropy_key;
    memset(c, 0, sizeof *c);
    c->entropy_key = entropy_key;
    c->i = &mpi_i;
    c->ctx = x;
    c->T = T;
    c->O = x->O;
    c->shard = axis == 0 ? coords[0] : coords[1];
    c->group = dp > 1 ? (axis == 0 ? coords[1] : coords[0]) : 0;
    c->fail_at = -1;
    return MS_OK;
}

#else

MS_API int ms_mpi_available(void);
int ms_mpi_available(void)
{
    return 0;
}

ms_status ms__comm_init_mpi(ms__comm *c, int64_t fcomm, int32_t rows, int32_t cols, int32_t axis,
                            int32_t dp, int32_t links, int32_t timeout_ms, char *msg, size_t cap)
{
    (void)c, (void)fcomm, (void)rows, (void)cols, (void)axis, (void)dp, (void)links,
        (void)timeout_ms;
    snprintf(msg, cap, "backend mpi: this build of meshsample has no MPI transport");
    return MS_ERR_UNSUPPORTED;
}
#endif
