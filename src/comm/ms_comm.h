/* Collective transports (DESIGN 3): how the devices of a gather axis exchange their packed
 * records. Core code calls the ms__comm_* wrappers, never the table, so preconditions and fault
 * injection live in one place (SQLite's sqlite3OsRead). */
#ifndef MS_COMM_H
#define MS_COMM_H

#include "common/ms_internal.h"

typedef struct ms__comm_i {
    const char *name;
    /* Required when the process holds one device: all-gather `bytes` from send into recv
     * (T * bytes, in shard order) over the devices of this device's gather axis. */
    ms_status (*allgather)(void *ctx, const void *send, void *recv, size_t bytes);
    /* Required with allgather: variable sizes; counts[T] receives each device's byte count and
     * recv (grown with realloc as needed, capacity in *cap) the concatenation. */
    ms_status (*allgatherv)(void *ctx, const void *send, size_t bytes, void **recv, size_t *cap,
                            size_t *counts);
    /* Optional (NULL: one DP group per process or replicated groups): all-gather over the other
     * axis, in group order. */
    ms_status (*allgather_groups)(void *ctx, const void *send, void *recv, size_t bytes);
    /* Required: free ctx. */
    void (*destroy)(void *ctx);
} ms__comm_i;

typedef struct ms__comm {
    const ms__comm_i *i; /* NULL for the host transport: every device is in this process */
    void *ctx;
    int32_t shard; /* this process's device on the gather axis; -1 = all (host) */
    int32_t group; /* its DP group; -1 = all (host) */
    int32_t T, O;
    uint64_t entropy_key; /* the same on every device: unseeded users' seeds derive from it */
    /* fault injection (tests): the call numbered fail_at fails with fail_status */
    int64_t calls;
    int64_t fail_at;
    ms_status fail_status;
    char err[MS_ERRMSG_LEN];
} ms__comm;

/* Host transport. */
void ms__comm_init_host(ms__comm *c, int32_t T, int32_t O);
/* MPI transport on a Fortran handle of the caller's communicator (mpi.c); MS_ERR_UNSUPPORTED
 * when the library was built without MPI. Writes a message into msg on failure. */
ms_status ms__comm_init_mpi(ms__comm *c, int64_t fcomm, int32_t rows, int32_t cols, int32_t axis,
                            int32_t dp, int32_t links, int32_t timeout_ms, char *msg,
                            size_t cap);
void ms__comm_destroy(ms__comm *c);

/* Test-only: make the n-th (0-based, counted from now) exchange fail with status; n < 0 clears.
 * Works on every transport, host included, so every error path of the step can be driven. */
void ms__comm_inject_fault(ms__comm *c, int64_t n, ms_status status);

/* Wrappers. With the host transport there is nothing to move and they only count calls. */
ms_status ms__comm_allgather(ms__comm *c, const void *send, void *recv, size_t bytes);
ms_status ms__comm_allgatherv(ms__comm *c, const void *send, size_t bytes, void **recv,
                              size_t *cap, size_t *counts);
ms_status ms__comm_allgather_groups(ms__comm *c, const void *send, void *recv, size_t bytes);

#endif
