/* The generator's state, shared by the core modules (not API). */
#ifndef MS_GENERATOR_IMPL_H
#define MS_GENERATOR_IMPL_H

#include "comm/ms_comm.h"
#include "common/ms_internal.h"
#include "core/ms_params.h"
#include "core/ms_penalties.h"
#include "kernels/ms_kernels.h"

/* What the step needs to know about one user, derived when parameters change. */
typedef struct ms__user_plan {
    int32_t K;        /* candidates per shard */
    int32_t n_top;    /* top-N log-probs wanted (0 when off) */
    int32_t n_raw;    /* raw top list per shard (raw mode with penalties) */
    bool greedy;
    bool logprobs;
    bool want_sum;    /* full-vocabulary statistics at T = 1 */
    bool want_sum_t;  /* full-vocabulary statistics at the user's T (exact nucleus) */
    bool penalties;
} ms__user_plan;

/* Per-thread scratch. */
typedef struct ms__worker {
    void *scan;          /* ms__scan_row scratch */
    size_t scan_bytes;
    ms__cand *merge;     /* T * kcap */
    ms__cand *merge_raw; /* T * rawcap */
    ms__cand *fb;        /* survivors of the fallback round */
    size_t fb_cap;
    float *fb_x;         /* their w - wmax, then their mass */
    uint16_t *fb_bin;
    size_t fb_xcap;
} ms__worker;

/* A user whose survivors may extend past the gathered candidates. */
typedef struct ms__fallback {
    bool active;
    float thr_v; /* collect every real token with z' >= thr_v */
} ms__fallback;

/* A captured step plan (DESIGN 3): bound to its exact input and output buffers. */
typedef struct ms__trace {
    bool captured;
    int32_t n_logits;
    ms_logits *logits; /* [n_logits] descriptors seen at capture */
    ms_step_output out;
} ms__trace;

#define MS_TRACE_KEYS 8 /* penalties x log-probs x force-argmax */

struct ms_generator {
    ms__err *err; /* separate so const getters can report too */
    ms_generator_config cfg;
    /* mesh */
    int32_t V, Vp, R, C, D, T, O, axis, dp, B, U, W;
    int32_t max_lp;
    int32_t nthreads;
    /* per slot */
    ms_slot_params *params;
    ms__user_plan *plan;
    int64_t *seed;
    uint64_t *counter;
    ms__history *hist;
    int32_t replicate_slot;
    /* step buffers */
    int32_t kcap, rawcap;
    ms__cand *cand;       /* [U][T][kcap] */
    ms__cand *rawc;       /* [U][T][rawcap] */
    ms__scan_result *res; /* [U][T] */
    ms__fallback *fb;     /* [U] */
    ms__worker *workers;  /* [nthreads] */
    ms__comm comm;
    uint64_t entropy_ctr;
    ms__trace traces[MS_TRACE_KEYS];
    size_t scratch_need; /* scan scratch the current plans and histories need */
    int32_t *cpus; /* worker pinning, [ncpus] */
    int32_t ncpus;
    bool force_argmax; /* every user greedy without log-probs, and allowed */
    int trace_key;     /* (penalties on, log-probs on, force-argmax) of the current parameters */
    /* exchange buffers (only the mpi transport moves bytes) */
    void *xsend, *xrecv;
    size_t xsend_cap, xrecv_cap;
    void *fsend, *frecv;
    size_t fsend_cap, frecv_cap;
    size_t *fcounts; /* [T] */
    void *osend, *orecv;
    size_t osend_cap, orecv_cap;
    ms__cand *fall; /* survivors of the fallback users, assembled */
    size_t fall_cap;
    /* per-step outputs of the final stage, allocated once */
    void *uo;             /* user_out[U] */
    int32_t *top_ids;     /* [U * max_lp] */
    float *top_lp;
};

/* Device index of (DP group, shard). */
int32_t ms__device_of(const ms_generator *g, int32_t group, int32_t shard);

/* Raise scratch_need for user u's current history (O(1)). */
void ms__generator_note_history(ms_generator *g, int32_t u);

/* Recompute plans and grow the step buffers for the current parameters. */
ms_status ms__generator_replan(ms_generator *g);

/* Test-only: the n-th transport exchange from now (0-based) fails with status (n < 0 clears).
 * Every transport, host included, counts its exchanges, so every error path of the step can be
 * driven: a failed step changes no state. */
void ms__generator_inject_fault(ms_generator *g, int64_t n, ms_status status);

/* Size of the final stage's per-user output record (sampling.c). */
size_t ms__user_out_size(void);

/* One step (sampling.c). commit: advance counters and count tokens. validated: the inputs were
 * checked when the trace was captured. */
ms_status ms__step(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                   uint64_t draw_offset, bool commit, bool validated, const ms_step_output *out);

#endif
