/*
 * Shared pieces of the meshsample CLI: subcommand entry points, option parsing, an output
 * buffer, the JSON Lines writer of a step's results, and a small deterministic RNG for the
 * synthetic inputs of `demo` and `bench`. The CLI uses the public API only (include/).
 *
 * Exit statuses: 0 success, 1 an internal failure (out of memory, transport), 2 invalid usage
 * or input (exactly one line on stderr, nothing on stdout).
 */
#ifndef MS_TOOLS_CLI_H
#define MS_TOOLS_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meshsample.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* Subcommands: argv[0] is the subcommand name. Return the process exit status. */
int cli_sample_main(int argc, char **argv);
int cli_demo_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);

/* Print "meshsample CMD: message" as exactly one line on stderr (newlines in the message, e.g.
 * from a library error, become spaces). Returns CLI_EXIT_USAGE for `return cli_error(...)`. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same line, returning a caller-chosen status. */
int cli_error_status(int status, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Deferred error lines, for SPMD runs where only one process may print: while deferral is on,
 * cli_error and cli_error_status keep the first line (later ones are dropped) instead of
 * printing it. cli_error_flush prints the kept line, if any, and forgets it; cli_error_discard
 * only forgets it. */
void cli_error_defer(bool on);
bool cli_error_pending(void);
void cli_error_flush(void);
void cli_error_discard(void);
/* The exit status matching a library status: 2 for the caller's mistakes (invalid argument,
 * configuration, unsupported request), 1 for everything else. */
int cli_exit_for(ms_status s);

/* ---- option scanning ----------------------------------------------------------------------- */

/* Iterates argv[1..] as "--name value" or "--name=value". Usage:
 *     cli_opts o; cli_opts_init(&o, argc, argv);
 *     while (cli_opts_next(&o)) { if (cli_opt_is(&o, "seed")) { v = cli_opt_value(&o); ... } }
 *     if (o.error) ...
 * A non-option argument or a missing value sets o.error to a message (static storage in o). */
typedef struct cli_opts {
    int argc, i;
    char **argv;
    const char *name;   /* current option without the dashes, up to '=' */
    size_t name_len;
    const char *inline_value; /* after '=', or NULL */
    bool error;
    char msg[192];
} cli_opts;

void cli_opts_init(cli_opts *o, int argc, char **argv);
/* Advances to the next option; false at the end or on error (check o->error). */
bool cli_opts_next(cli_opts *o);
bool cli_opt_is(const cli_opts *o, const char *name);
/* The option's value (inline or the next argument); NULL and o->error set when missing. */
const char *cli_opt_value(cli_opts *o);
/* An option that takes no value: false and o->error set when one was given with '='. */
bool cli_opt_flag(cli_opts *o);
/* Set o->error to "unknown option --name". */
void cli_opt_unknown(cli_opts *o);
/* When bad, set o->error to "--name: invalid value 'v'" (unless an error is already there);
 * returns whether the option loop must stop. */
bool cli_opt_bad(cli_opts *o, bool bad, const char *v);

/* ---- number parsing (whole string, decimal; 0 on success, -1 otherwise) -------------------- */

int cli_parse_i64(const char *s, int64_t *out);
/* int32 in [lo, hi]. */
int cli_parse_i32_range(const char *s, int32_t lo, int32_t hi, int32_t *out);
/* A float; "nan" and "inf" parse (the library judges them); overflow gives +-inf. */
int cli_parse_f32(const char *s, float *out);
/* "RxC" with R, C in [1, 4096]. */
int cli_parse_mesh(const char *s, int32_t *rows, int32_t *cols);
/* Index of s in names[0..n) into *out (an enum whose values are those indices); 0 or -1. */
int cli_parse_choice(const char *s, const char *const *names, int n, int *out);

/* A comma-separated list of floats or int64s; *n values are written to a malloc'd *out.
 * Returns 0, or -1 (nothing allocated) on an empty or unparsable element or out of memory. */
int cli_parse_flist(const char *s, float **out, int32_t *n);
int cli_parse_ilist(const char *s, int64_t **out, int32_t *n);

/* ---- output buffer ------------------------------------------------------------------------- */

/* A growable string. After an allocation failure it stops growing and sets oom. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(strbuf *b);
/* A float as "%.9g", or "null" when not finite (JSON has no NaN or infinities). */
void sb_float(strbuf *b, float x);

/* Append one JSON line per user of a step:
 *   {"draw":d,"user":u,"token":t[,"logprob":x,"rank":r,"top_logprobs":[[id,x],...]]}
 * or {"draw":d,"user":u,"token":-1,"error":"no finite logit"} for a bad row.
 * The log-prob fields appear when with_logprobs; top lists have top_stride entries per user. */
void cli_emit_step(strbuf *b, int64_t draw, int32_t users, const ms_step_output *out,
                   int32_t top_stride, bool with_logprobs);

/* Caller-owned step outputs for `users` users and top lists of top_stride entries each, all
 * fields allocated. Returns 0 or -1 on out of memory (then nothing is left allocated). */
int cli_step_output_alloc(ms_step_output *out, int32_t users, int32_t top_stride);
void cli_step_output_free(ms_step_output *out);

/* ---- deterministic synthetic data ---------------------------------------------------------- */

/* SplitMix64: a tiny, well-mixed generator; explicit state, no globals. */
uint64_t cli_rand_u64(uint64_t *state);
/* Uniform in [0, 1) with 53 bits. */
double cli_rand_uniform(uint64_t *state);
/* Standard normal (Box-Muller). */
double cli_rand_normal(uint64_t *state);

/* Realistic logits for one row of n values: normal(0, 2.5) background plus a few dozen "hot"
 * tokens lifted well above it, as a language model's output looks. Deterministic in state. */
void cli_synth_logits_row(float *row, int32_t n, uint64_t *state);

/* ---- timing ---------------------------------------------------------------------------------- */

/* Monotonic clock in milliseconds. */
double cli_now_ms(void);
/* qsort comparator for doubles, ascending. */
int cli_cmp_double(const void *a, const void *b);

#endif
