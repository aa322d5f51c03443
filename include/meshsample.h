/*
 * meshsample: the last stage of LLM decoding, turning a batch of logits into next tokens.
 *
 * One umbrella header. Semantics are those of DESIGN.md section 2; every function below states
 * its contract. Handles are opaque and used by one thread at a time. Nothing outside include/
 * is API. The library never aborts or exits: every fallible call returns an ms_status and keeps
 * a message naming the field, the user slot and the bad value on its handle.
 */
#ifndef MESHSAMPLE_H
#define MESHSAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MESHSAMPLE_BUILDING) && defined(__GNUC__)
#define MS_API __attribute__((visibility("default")))
#else
#define MS_API
#endif

#define MS_VERSION_MAJOR 0
#define MS_VERSION_MINOR 1
#define MS_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" of the linked library. */
MS_API const char *ms_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes: one X-macro list gives the enum, the names and the generic messages.
 * ------------------------------------------------------------------------------------------- */
#define MS_STATUS_MAP(XX)                                                                        \
    XX(OK, 0, "success")                                                                          \
    XX(ERR_INVALID_ARGUMENT, 1, "invalid argument")                                              \
    XX(ERR_INVALID_CONFIG, 2, "invalid configuration")                                           \
    XX(ERR_MISUSE, 3, "library misuse")                                                           \
    XX(ERR_NO_MEMORY, 4, "out of memory")                                                         \
    XX(ERR_UNSUPPORTED, 5, "not supported")                                                       \
    XX(ERR_TRANSPORT, 6, "transport failure")                                                     \
    XX(ERR_TRACE, 7, "trace does not match these buffers")

typedef enum ms_status {
#define MS__STATUS_ENUM(name, value, msg) MS_##name = value,
    MS_STATUS_MAP(MS__STATUS_ENUM)
#undef MS__STATUS_ENUM
} ms_status;

/* "MS_ERR_INVALID_ARGUMENT" etc.; "MS_UNKNOWN" for a value outside the list. */
MS_API const char *ms_status_name(ms_status s);
/* Generic one-line message of a status (never NULL). The handle holds the detailed one. */
MS_API const char *ms_status_message(ms_status s);

/* ---------------------------------------------------------------------------------------------
 * Enumerations
 * ------------------------------------------------------------------------------------------- */
typedef enum ms_dtype { MS_DTYPE_F32 = 0, MS_DTYPE_BF16 = 1, MS_DTYPE_F16 = 2 } ms_dtype;

/* OPENAI (default, vLLM): repetition, then frequency, then presence.
 * TT: presence, then frequency, then repetition (sign test after the subtractions). */
typedef enum ms_penalty_order { MS_PENALTY_ORDER_OPENAI = 0, MS_PENALTY_ORDER_TT = 1 } ms_penalty_order;

/* RAW: log_softmax of the logits as given (default, vLLM/OpenAI). PENALIZED: of the penalised
 * logits z' (what TT returns). PROCESSED: of w = z'/T restricted to the survivors S. */
typedef enum ms_logprobs_mode {
    MS_LOGPROBS_RAW = 0,
    MS_LOGPROBS_PENALIZED = 1,
    MS_LOGPROBS_PROCESSED = 2
} ms_logprobs_mode;

typedef enum ms_backend { MS_BACKEND_HOST = 0, MS_BACKEND_MPI = 1 } ms_backend;

/* Where the gather buffers live (TT's DECODE_SAMPLING_INPUT_MEMCFG): DEFAULT heap pages, or
 * HUGEPAGE (transparent huge pages asked for with madvise, fewer TLB misses on big gathers). */
typedef enum ms_buffer_placement {
    MS_BUFFERS_DEFAULT = 0,
    MS_BUFFERS_HUGEPAGE = 1
} ms_buffer_placement;

/* ---------------------------------------------------------------------------------------------
 * Configuration (TT's `args`)
 * ------------------------------------------------------------------------------------------- */
#define MS_MAX_TOP_LOGPROBS_DEFAULT 20
#define MS_EXACT_CANDIDATES_DEFAULT 32
#define MS_SEED_NONE (-1)

typedef struct ms_mesh_config {
    int32_t vocab_size;        /* real vocabulary; ids >= it are padding. Required, > 0. */
    int32_t padded_vocab_size; /* 0 = vocab_size; must be >= vocab_size and divisible by T. */
    int32_t rows, cols;        /* cluster_shape; default 1x1. */
    int32_t all_gather_axis;   /* sampling_all_gather_axis: 0 = along rows, 1 = along columns;
                                  for a 1-D mesh the axis of size > 1 is used whatever this says. */
    int32_t sampling_dp;       /* 1, or the size of the non-gather axis. */
    int32_t max_batch_size;    /* users per DP group (B). Default 32. */
    int32_t max_top_k;         /* 0 = exact mode (default); > 0 = TT truncated mode cap. */
    /* TT arguments with no direct analogue (see README): */
    const int32_t *worker_cpus; /* sub_core_grids/start_core: the CPUs worker t runs on is
                                   worker_cpus[t % n] (pinned; the calling thread, worker 0, only
                                   during a step). Copied at create; NULL = no pinning. */
    int32_t num_worker_cpus;
    int32_t num_links;          /* GALAXY_NUM_LINKS / SAMPLING_AG_CONFIG.num_links: how many
                                   segments of the gather travel concurrently (mpi); default 1. */
    bool allow_force_argmax;    /* SAMPLING_AG_CONFIG.allow_force_argmax: when every user is
                                   greedy without log-probs, devices send only (max, id); default
                                   true. */
    ms_buffer_placement buffer_placement; /* DECODE_SAMPLING_INPUT_MEMCFG */
} ms_mesh_config;

typedef struct ms_generator_config {
    ms_mesh_config mesh;
    ms_backend backend;              /* default HOST */
    int32_t num_threads;             /* host worker threads; 0 = one per core up to the shards */
    int32_t max_logprobs;            /* cap of top-N per user; default 20 */
    int32_t exact_candidates;        /* exact mode: candidates per shard for k == 0 users (32) */
    ms_logprobs_mode logprobs_mode;  /* default RAW */
    ms_penalty_order penalty_order;  /* default OPENAI */
    bool enable_internal_trace;      /* default true */
    int64_t mpi_comm;                /* set by ms_generator_config_set_mpi (meshsample/mpi.h) */
    int32_t transport_timeout_ms;    /* mpi: a collective still open after this long means a peer
                                        died or hangs; the job is aborted through MPI_Abort so no
                                        rank waits forever. Default 30000; 0 = wait forever. */
} ms_generator_config;

/* Fill every field with its default (1x1 mesh, B = 32, exact mode, host backend). */
MS_API void ms_mesh_config_init(ms_mesh_config *cfg);
MS_API void ms_generator_config_init(ms_generator_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Sampling parameters (TT's SamplingParams, user-facing) and their formatting
 * ------------------------------------------------------------------------------------------- */

/* A parameter that is None (is_set false), a scalar applying to every user (list NULL), or a
 * list of len values (user i gets list[i]; users past len get the field's default). */
typedef struct ms_fparam {
    bool is_set;
    float value;
    const float *list;
    int32_t len;
} ms_fparam;

typedef struct ms_iparam {
    bool is_set;
    int64_t value;
    const int64_t *list;
    int32_t len;
} ms_iparam;

static inline ms_fparam ms_fscalar(float v) { ms_fparam p = {true, v, NULL, 0}; return p; }
static inline ms_fparam ms_flist(const float *v, int32_t n) { ms_fparam p = {true, 0.0f, v, n}; return p; }
static inline ms_iparam ms_iscalar(int64_t v) { ms_iparam p = {true, v, NULL, 0}; return p; }
static inline ms_iparam ms_ilist(const int64_t *v, int32_t n) { ms_iparam p = {true, 0, v, n}; return p; }

/* Fields default (when None or past a list's end) to TT's pad values: temperature 0 (greedy),
 * top_k 1, top_p 1, min_p 0, presence 0, frequency 0, repetition 1, seed None,
 * enable_log_probs 0, num_logprobs 0. */
typedef struct ms_sampling_params {
    ms_fparam temperature;
    ms_iparam top_k;
    ms_fparam top_p;
    ms_fparam min_p; /* extension: keep tokens with q >= min_p * max(q) */
    ms_fparam presence_penalty;
    ms_fparam frequency_penalty;
    ms_fparam repetition_penalty;
    ms_iparam seed;             /* >= 0, or MS_SEED_NONE for an entropy seed */
    ms_iparam enable_log_probs; /* 0 or 1 */
    ms_iparam num_logprobs;     /* top-N wanted, 0..max_logprobs */
} ms_sampling_params;

/* All fields None. */
MS_API void ms_sampling_params_init(ms_sampling_params *p);

/* One user's formatted (device) values. temperature is T itself (> 0), never 1/T: the step
 * divides exactly. A greedy user has temperature 1, top_k 1, top_p 0. top_k == 0 means
 * unlimited (exact mode only). */
typedef struct ms_slot_params {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float presence_penalty;
    float frequency_penalty;
    float repetition_penalty;
    int64_t seed; /* MS_SEED_NONE or >= 0 */
    bool enable_log_probs;
    int32_t num_logprobs;
} ms_slot_params;

/* Caller-owned message buffer for calls that have no handle. */
typedef struct ms_errbuf {
    char msg[256];
} ms_errbuf;

/* TT's format_sampling_params: expand `in` to n users (scalars broadcast, lists padded with the
 * defaults), then per user: T == 0 -> greedy (T 1, k 1, p 0); top_p and min_p clamped to [0,1];
 * k < 1 -> max_top_k (0 = unlimited in exact mode); k > max_top_k (> 0) -> max_top_k; repetition
 * 0 -> 1. Rejects (MS_ERR_INVALID_ARGUMENT, message naming field and user in err, out untouched)
 * NaN anywhere, T < 0 or infinite, repetition < 0 or infinite, infinite presence/frequency,
 * seed < -1, num_logprobs < 0, a list longer than n. `in` is never modified. err may be NULL. */
MS_API ms_status ms_params_format(const ms_sampling_params *in, int32_t n, int32_t max_top_k,
                                  ms_slot_params *out, ms_errbuf *err);

/* TT's chunk_sampling_params: chunk idx of dp. Lists are split into dp equal parts (their
 * length must be divisible by dp, else MS_ERR_INVALID_ARGUMENT); scalars and None are shared.
 * out's lists point into in's (no copy). dp == 1 copies in. */
MS_API ms_status ms_params_chunk(const ms_sampling_params *in, int32_t dp, int32_t idx,
                                 ms_sampling_params *out, ms_errbuf *err);

/* TT's broadcast_sampling_params: out[i] = in[idx] for i < slot_len (in[0] if idx >= n). */
MS_API ms_status ms_params_broadcast(const ms_slot_params *in, int32_t n, int32_t idx,
                                     int32_t slot_len, ms_slot_params *out, ms_errbuf *err);

/* ---------------------------------------------------------------------------------------------
 * The generator
 * ------------------------------------------------------------------------------------------- */
typedef struct ms_generator ms_generator;

/* Validate cfg and allocate everything a step needs. Fails with MS_ERR_INVALID_CONFIG (message
 * via ms_create_last_error) on a bad configuration. Every user starts greedy, unseeded (an
 * entropy seed), with empty histories. */
MS_API ms_status ms_generator_create(const ms_generator_config *cfg, ms_generator **out);
/* Message of the last failed ms_generator_create on this thread ("" if none). */
MS_API const char *ms_create_last_error(void);
/* NULL is fine. */
MS_API void ms_generator_destroy(ms_generator *g);
/* Detailed message of the last failing call on g ("" after success). Valid until the next call. */
MS_API const char *ms_generator_last_error(const ms_generator *g);

/* Users handled: max_batch_size * sampling_dp. Slot s belongs to DP group s / max_batch_size. */
MS_API int32_t ms_generator_num_users(const ms_generator *g);
/* Number of logits buffers sample() expects: rows*cols for host (one per device), 1 for mpi. */
MS_API int32_t ms_generator_num_shards(const ms_generator *g);
/* Columns per shard: padded_vocab_size / T. */
MS_API int32_t ms_generator_shard_width(const ms_generator *g);
/* Effective top-N cap (max_logprobs, further capped by max_top_k in truncated mode). */
MS_API int32_t ms_generator_max_logprobs(const ms_generator *g);

/* Install formatted parameters. slots NULL: params[i] goes to slot i for i < n (n must equal
 * num_users). Otherwise params[i] goes to slots[i]. Validates everything first; on error nothing
 * changes. Does not touch seeds or histories. */
MS_API ms_status ms_generator_set_params(ms_generator *g, const ms_slot_params *params, int32_t n,
                                         const int32_t *slots);

/* Format (ms_params_format) and install for all users (empty_slots NULL) or, TT's empty_slots
 * semantics, value i of each list to empty_slots[i] (scalars to every listed slot). */
MS_API ms_status ms_generator_reset_sampling_params(ms_generator *g, const ms_sampling_params *p,
                                                    const int32_t *empty_slots, int32_t n_slots);

/* TT's apply_prefill_state, all or nothing: format p and install it for empty_slots (value i of
 * each list to empty_slots[i]; NULL: every slot, n_slots ignored), reset their seeds from p's seed
 * field (request order; None: entropy), get_new_values(empty_slots, replicate_seeds), then, if
 * prompt_tokens is not NULL, install row i as slot empty_slots[i]'s prompt, and zero their output
 * counts. Validates everything before changing anything. */
MS_API ms_status ms_generator_apply_prefill_state(ms_generator *g, const ms_sampling_params *p,
                                                  const int32_t *prompt_tokens,
                                                  int32_t prompt_rows, int32_t prompt_cols,
                                                  const int32_t *empty_slots, int32_t n_slots,
                                                  bool replicate_seeds);

/* TT's apply_decode_state: chunks[c] holds DP group c's users (n_chunks == sampling_dp, each
 * formatted to max_batch_size) or everyone (n_chunks == 1). With reset_batch, the prompt and
 * output matrices ([num_users, cols], -1 padding; NULL: empty) replace every slot's history.
 * Never touches seeds. All or nothing. */
MS_API ms_status ms_generator_apply_decode_state(ms_generator *g, const ms_sampling_params *chunks,
                                                 int32_t n_chunks, bool reset_batch,
                                                 const int32_t *prompt_tokens, int32_t prompt_cols,
                                                 const int32_t *output_tokens, int32_t output_cols);

/* Read back slot's current parameters. Its seed field is what was installed with the
 * parameters; the seed a slot draws with is set by ms_generator_reset_seed (get_seed). */
MS_API ms_status ms_generator_get_params(const ms_generator *g, int32_t slot, ms_slot_params *out);

/* ---- seeds (TT's SeedManager) ----
 * A slot has a seed and a draw counter n: its draw at a step uses Philox keyed by the seed with
 * counter (n, token id); n advances by one per committed step. */

/* Seeds in request order: slot slots[i] gets seeds[i] (i >= n_seeds, or MS_SEED_NONE: an OS
 * entropy seed); its counter restarts at 0. slots NULL: slots 0..n_slots-1. */
MS_API ms_status ms_generator_reset_seed(ms_generator *g, const int64_t *seeds, int32_t n_seeds,
                                         const int32_t *slots, int32_t n_slots);
/* TT's get_new_values. For each listed slot writes, if keys is not NULL, the 64-bit stream key
 * its next draw uses. replicate: exactly one slot listed (else MS_ERR_MISUSE) and the next
 * committed step draws every slot with that slot's seed and counter (a prefill whose batch holds
 * copies of one request); only that slot's counter advances then. */
MS_API ms_status ms_generator_get_new_values(ms_generator *g, const int32_t *slots, int32_t n_slots,
                                             bool replicate, uint64_t *keys);
/* TT's apply_slot_remap after a batch condense: remap[new] = old for new in [0, n); -1 or the
 * identity leaves a slot alone. Moves seed and counter; sources that are not destinations are
 * vacated (entropy seed, counter 0). Penalty histories move the same way. */
MS_API ms_status ms_generator_apply_slot_remap(ms_generator *g, const int32_t *remap, int32_t n);
/* TT's align_seed_counters_to_positions: counter of slots[i] := max(0, positions[i] + offset). */
MS_API ms_status ms_generator_align_seed_counters(ms_generator *g, const int32_t *slots,
                                                  const int64_t *positions, int32_t n,
                                                  int64_t offset);
/* Read a slot's seed and draw counter. */
MS_API ms_status ms_generator_get_seed(const ms_generator *g, int32_t slot, int64_t *seed,
                                       uint64_t *counter);

/* ---- penalty state (TT's TTPenalties) ----
 * tokens is a row-major [rows, cols] int32 matrix, -1 = padding. slots NULL: row i is slot i and
 * slots without a row are cleared; otherwise row i is slots[i]. Ids outside [0, vocab_size) are
 * an error and nothing changes. Cost is proportional to the tokens given. */
MS_API ms_status ms_generator_reset_prompt_tokens(ms_generator *g, const int32_t *tokens,
                                                  int32_t rows, int32_t cols, const int32_t *slots);
/* Zero the output counts of the listed slots (slots NULL: every slot; with slots, rows is the
 * number listed), then, if tokens is not NULL, count row i as already generated by slot i
 * (or slots[i]). */
MS_API ms_status ms_generator_reset_output_state(ms_generator *g, const int32_t *tokens,
                                                 int32_t rows, int32_t cols, const int32_t *slots);
/* How often token was generated by slot (its output count), and whether it is in its prompt. */
MS_API ms_status ms_generator_get_token_state(const ms_generator *g, int32_t slot, int32_t token,
                                              int32_t *out_count, bool *in_prompt);

/* ---- the step ---- */

/* One device's logits: [max_batch_size rows] x [shard width] of dtype, row_stride elements apart
 * (0 = shard width). Borrowed for the call only. */
typedef struct ms_logits {
    const void *data;
    ms_dtype dtype;
    int64_t row_stride;
} ms_logits;

/* The view device d (= row * cols + col) has of one full row-major [num_users, padded_vocab]
 * matrix `full` (row_stride 0 = padded_vocab): its DP group's rows and its vocabulary shard.
 * Lets single-matrix users drive any host mesh. */
MS_API ms_status ms_generator_device_view(ms_generator *g, const ms_logits *full,
                                          int32_t device, ms_logits *out);

/* Caller-owned outputs, sized for num_users (U). Only tokens is required.
 * Users with log-probs off get logprob NAN, rank 0, top_count 0. */
typedef struct ms_step_output {
    int32_t *tokens;       /* [U] sampled ids; -1 for a bad row */
    uint8_t *row_error;    /* [U] optional: 1 when the row had no finite or +inf logit */
    float *logprob;        /* [U] optional: log-prob of the sampled token (mode of the config) */
    int32_t *rank;         /* [U] optional: 1-based rank in (w desc, id asc) order */
    int32_t *top_count;    /* [U] optional: entries written in the top lists */
    int32_t *top_ids;      /* [U * max_logprobs] optional */
    float *top_logprobs;   /* [U * max_logprobs] optional */
} ms_step_output;

/* One step for every user: logits[d] is device d = row * cols + col (host backend, n_logits =
 * rows*cols), or this rank's shard (mpi, n_logits = 1). Draws with each slot's counter, then
 * advances the counters and counts each sampled token once for penalties. Bad rows give token -1
 * and row_error 1 and never disturb other users; they are not an error of the call.
 * enable_trace (ignored when the config disabled internal tracing): the first traced call for a
 * key (penalties on, log-probs on, force-argmax) captures a plan bound to these logits and output
 * buffers; later traced calls with the same key replay it without validation. Replaying with
 * other buffers fails with MS_ERR_TRACE (reset the trace first). Traced and eager steps give
 * identical results. */
MS_API ms_status ms_generator_sample(ms_generator *g, const ms_logits *logits, int32_t n_logits,
                                     bool enable_trace, const ms_step_output *out);

/* Forget every captured trace (the next traced call captures again). */
MS_API ms_status ms_generator_reset_trace(ms_generator *g);

/* Like sample, but draws with counter (slot counter + draw_offset) and changes no state
 * (counters, histories). Draws at different offsets are independent. */
MS_API ms_status ms_generator_sample_peek(ms_generator *g, const ms_logits *logits,
                                          int32_t n_logits, uint64_t draw_offset,
                                          const ms_step_output *out);

#ifdef __cplusplus
}
#endif
#endif /* MESHSAMPLE_H */
