#include <stdio.h>

#include "comm/ms_comm.h"
#include "common/ms_rng.h"

void ms__comm_init_host(ms__comm *c, int32_t T, int32_t O)
{
    memset(c, 0, sizeof *c);
    c->shard = -1;
    c->group = -1;
    c->T = T;
    c->O = O;
    c->fail_at = -1;
    c->entropy_key = (uint64_t)ms__entropy_seed();
}

void ms__comm_destroy(ms__comm *c)
{
    if (c && c->i && c->i->destroy) c->i->destroy(c->ctx);
    if (c) {
        c->i = NULL;
        c->ctx = NULL;
    }
}

void ms__comm_inject_fault(ms__comm *c, int64_t n, ms_status status)
{
    c->fail_at = n < 0 ? -1 : c->calls + n;
    c->fail_status = status;
}

/* Count the call and fail it when asked to. */
static ms_status faulty(ms__comm *c, const char *what)
{
    int64_t k = c->calls++;
    if (c->fail_at >= 0 && k == c->fail_at) {
        c->fail_at = -1;
        snprintf(c->err, sizeof c->err, "injected transport failure in %s (call %lld)", what,
                 (long long)k);
        return c->fail_status;
    }
    return MS_OK;
}

ms_status ms__comm_allgather(ms__comm *c, const void *send, void *recv, size_t bytes)
{
    MS_FORWARD_IF_ERROR(faulty(c, "allgather"));
    if (!c->i) return MS_OK;
    return c->i->allgather(c->ctx, send, recv, bytes);
}

ms_status ms__comm_allgatherv(ms__comm *c, const void *send, size_t bytes, void **recv,
                              size_t *cap, size_t *counts)
{
    MS_FORWARD_IF_ERROR(faulty(c, "allgatherv"));
    if (!c->i) return MS_OK;
    return c->i->allgatherv(c->ctx, send, bytes, recv, cap, counts);
}

ms_status ms__comm_allgather_groups(ms__comm *c, const void *send, void *recv, size_t bytes)
{
    MS_FORWARD_IF_ERROR(faulty(c, "allgather_groups"));
    if (!c->i || !c->i->allgather_groups) return MS_OK;
    return c->i->allgather_groups(c->ctx, send, recv, bytes);
}
