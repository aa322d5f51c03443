/* A deterministic decode scenario shared by the invariance tests (host meshes) and the MPI
 * tests (one rank per device): per-step [U, Vp] logits matrices holding bf16-exact values,
 * mixed per-user parameters, seeds, prompt and output histories; a driver that runs the
 * committed decode loop on a generator through ms_generator_device_view; and a field-by-field
 * comparison of two recorded runs. No cmocka here: the MPI programs are plain executables. */
#ifndef MS_INV_SCENARIO_H
#define MS_INV_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshsample.h"
#include "ref_util.h"

/* One user's raw (unformatted) parameters, as the reference tests hold them. */
typedef ref_raw_params inv_params;

typedef struct inv_scenario {
    int32_t U, V, Vp, steps;
    int64_t stride;      /* row stride of the full matrices (> Vp: a poisoned gap) */
    float *f32;          /* [steps][U][stride] */
    uint16_t *bf16;      /* the same values in bf16 (exact) */
    inv_params *params;  /* [U] */
    int64_t *seeds;      /* [U] */
    int32_t pcols, ocols;
    int32_t *prompt;     /* [U][pcols], -1 padded */
    int32_t *outs;       /* [U][ocols] pre-counted outputs, -1 padded */
} inv_scenario;

/* Build the scenario. Users cycle through 16 parameter kinds (greedy, greedy by k or p, top-k,
 * top-p, min-p, exact k = 0 with p < 1 on flat rows, k = 0 with p = 1, penalties, log-probs with
 * various top-N); rows carry special cases at fixed (step, user): two +inf tokens in different
 * shards, a row of NaN/-inf (bad row), a single finite token, a fully tied row. Padding columns
 * [V, Vp) and the stride gap hold hostile values (huge, +inf, NaN). */
void inv_scenario_build(inv_scenario *s, int32_t U, int32_t V, int32_t Vp, int32_t steps,
                        uint64_t data_seed);
void inv_scenario_free(inv_scenario *s);
/* Make every user greedy (T 0) without log-probs, penalties kept: the force-argmax path. */
void inv_scenario_all_greedy(inv_scenario *s);
/* The scenario the suites run twice: with mixed parameters, and the same made all greedy. */
void inv_scenario_build_pair(inv_scenario *mixed, inv_scenario *greedy, int32_t U, int32_t V,
                             int32_t Vp, int32_t steps, uint64_t data_seed);
void inv_scenario_free_pair(inv_scenario *mixed, inv_scenario *greedy);
const char *inv_kind_name(int32_t u);

/* Install parameters, seeds, prompts and pre-counted outputs on g (num_users must be U). */
ms_status inv_scenario_install(const inv_scenario *s, ms_generator *g);

/* Outputs of every step of a run. */
typedef struct inv_record {
    int32_t steps, U, cap;
    int32_t *tokens;      /* [steps][U] */
    uint8_t *row_error;
    float *logprob;
    int32_t *rank;
    int32_t *top_count;
    int32_t *top_ids;     /* [steps][U][cap] */
    float *top_lp;
} inv_record;

void inv_record_init(inv_record *r, int32_t steps, int32_t U, int32_t cap);
void inv_record_free(inv_record *r);

/* Run the decode loop (reset + install, then steps committed ms_generator_sample calls) with
 * logits of dtype dt copied each step into one run-owned buffer (so traced calls see the same
 * buffers). device < 0: host backend, one view per device; device >= 0: this process is that
 * device (mpi backend, one view). On failure returns the status and writes a message to err. */
ms_status inv_run(ms_generator *g, const inv_scenario *s, ms_dtype dt, bool trace, int32_t device,
                  inv_record *rec, char *err, size_t errn);

/* Compare got against ref: tokens, row errors, ranks, top counts and top ids exactly, log-probs
 * within tol (NaN equals NaN, infinities equal themselves). Prints up to max_print mismatches
 * prefixed with what; returns the number of mismatching fields. */
long inv_record_compare(const inv_record *ref, const inv_record *got, double tol, const char *what,
                        int max_print);
/* Bitwise equality of two records (every field, every byte). Returns the mismatching fields. */
long inv_record_compare_bits(const inv_record *ref, const inv_record *got, const char *what,
                             int max_print);

/* A generator configuration: rows x cols, gather axis, sampling_dp (B = U / dp), threads. */
ms_generator_config inv_config(const inv_scenario *s, int32_t rows, int32_t cols, int32_t axis,
                               int32_t dp, int32_t threads, int32_t max_top_k,
                               ms_logprobs_mode mode, ms_penalty_order order);

/* Self-checks of a reference record that need no second run: greedy users (T 0, k 1 or p 0)
 * without penalties take the argmax (lowest id on ties), no token is padding, the bad row gives -1 with its
 * flag, the +inf row picks one of its +inf tokens, the single-token row picks that token.
 * Returns the number of failures (printed). */
long inv_record_selfcheck(const inv_scenario *s, const inv_record *ref, const char *what);

/* The special cases, for the tests that want to name them. */
#define INV_INF_STEP 2
#define INV_INF_USER 20
#define INV_BAD_STEP 3
#define INV_BAD_USER 27
#define INV_ONE_STEP 4
#define INV_ONE_USER 9
#define INV_TIE_STEP 1
#define INV_TIE_USER 4

#endif
