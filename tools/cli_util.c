/*
 * Shared CLI helpers: error lines, option scanning, number parsing, the output buffer, the JSON
 * Lines writer and synthetic data. See cli.h for the contracts.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors -------------------------------------------------------------------------------- */

/* The deferred line (cli_error_defer): the first one since the last flush or discard. */
static bool defer_lines;
static bool have_pending;
static char pending[1200];

static void verror_line(const char *cmd, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* The contract is one line on stderr: library messages must not be able to break it. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (!defer_lines) {
        fprintf(stderr, "meshsample%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", msg);
        return;
    }
    if (!have_pending) {
        snprintf(pending, sizeof pending, "meshsample%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", msg);
        have_pending = true;
    }
}

void cli_error_defer(bool on)
{
    defer_lines = on;
}

bool cli_error_pending(void)
{
    return have_pending;
}

void cli_error_flush(void)
{
    if (have_pending)
        fputs(pending, stderr);
    cli_error_discard();
}

void cli_error_discard(void)
{
    have_pending = false;
    pending[0] = '\0';
}

int cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_line(cmd, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_error_status(int status, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_line(cmd, fmt, ap);
    va_end(ap);
    return status;
}

int cli_exit_for(ms_status s)
{
    switch (s) {
    case MS_OK:
        return CLI_EXIT_OK;
    case MS_ERR_INVALID_ARGUMENT:
    case MS_ERR_INVALID_CONFIG:
    case MS_ERR_UNSUPPORTED:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAILURE;
    }
}

/* ---- option scanning ----------------------------------------------------------------------- */

void cli_opts_init(cli_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->argc = argc;
    o->argv = argv;
    o->i = 1;
}

bool cli_opts_next(cli_opts *o)
{
    if (o->error || o->i >= o->argc)
        return false;
    const char *arg = o->argv[o->i++];
    if (strcmp(arg, "-h") == 0)
        arg = "--help";
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=') {
        o->error = true;
        snprintf(o->msg, sizeof o->msg, "unexpected argument '%.100s' (options start with --)", arg);
        return false;
    }
    o->name = arg + 2;
    const char *eq = strchr(o->name, '=');
    o->name_len = eq ? (size_t)(eq - o->name) : strlen(o->name);
    o->inline_value = eq ? eq + 1 : NULL;
    return true;
}

bool cli_opt_is(const cli_opts *o, const char *name)
{
    return strlen(name) == o->name_len && memcmp(o->name, name, o->name_len) == 0;
}

const char *cli_opt_value(cli_opts *o)
{
    if (o->inline_value)
        return o->inline_value;
    if (o->i < o->argc)
        return o->argv[o->i++];
    o->error = true;
    snprintf(o->msg, sizeof o->msg, "option --%.*s needs a value", (int)(o->name_len > 60 ? 60 : o->name_len),
             o->name);
    return NULL;
}

bool cli_opt_flag(cli_opts *o)
{
    if (!o->inline_value)
        return true;
    o->error = true;
    snprintf(o->msg, sizeof o->msg, "option --%.*s takes no value", (int)(o->name_len > 60 ? 60 : o->name_len),
             o->name);
    return false;
}

void cli_opt_unknown(cli_opts *o)
{
    o->error = true;
    snprintf(o->msg, sizeof o->msg, "unknown option --%.*s (see --help)",
             (int)(o->name_len > 60 ? 60 : o->name_len), o->name);
}

/* ---- numbers ------------------------------------------------------------------------------- */

int cli_parse_i64(const char *s, int64_t *out)
{
    /* strtoll would skip leading spaces and accept a partial parse; neither is a number here. */
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

int cli_parse_i32_range(const char *s, int32_t lo, int32_t hi, int32_t *out)
{
    int64_t v;
    if (cli_parse_i64(s, &v) || v < lo || v > hi)
        return -1;
    *out = (int32_t)v;
    return 0;
}

int cli_parse_f32(const char *s, float *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    const float v = strtof(s, &end);
    /* ERANGE on overflow leaves +-HUGE_VALF (inf), which the library rejects with a message
     * naming the field; underflow to a tiny value or zero is an honest parse. */
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

int cli_parse_mesh(const char *s, int32_t *rows, int32_t *cols)
{
    if (!s)
        return -1;
    const char *x = strchr(s, 'x');
    if (!x || x == s || strlen(x + 1) == 0 || x - s > 15)
        return -1;
    char left[16];
    memcpy(left, s, (size_t)(x - s));
    left[x - s] = '\0';
    return cli_parse_i32_range(left, 1, 4096, rows) || cli_parse_i32_range(x + 1, 1, 4096, cols) ? -1 : 0;
}

/* Split s at commas; calls parse on each element copied into a terminated buffer. */
static int parse_list(const char *s, void **out, size_t elem, int32_t *n,
                      int (*parse)(const char *, void *))
{
    *out = NULL;
    *n = 0;
    if (!s)
        return -1;
    size_t count = 1;
    for (const char *p = s; *p; p++)
        count += *p == ',';
    if (count > INT32_MAX)
        return -1;
    unsigned char *vals = malloc(count * elem);
    if (!vals)
        return -1;
    const char *p = s;
    for (size_t i = 0; i < count; i++) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char tmp[64];
        if (len == 0 || len >= sizeof tmp) {
            free(vals);
            return -1;
        }
        memcpy(tmp, p, len);
        tmp[len] = '\0';
        if (parse(tmp, vals + i * elem)) {
            free(vals);
            return -1;
        }
        p = comma ? comma + 1 : p + len;
    }
    *out = vals;
    *n = (int32_t)count;
    return 0;
}

static int parse_f32_elem(const char *s, void *out) { return cli_parse_f32(s, out); }
static int parse_i64_elem(const char *s, void *out) { return cli_parse_i64(s, out); }

int cli_parse_flist(const char *s, float **out, int32_t *n)
{
    void *v;
    const int rc = parse_list(s, &v, sizeof(float), n, parse_f32_elem);
    *out = v;
    return rc;
}

int cli_parse_ilist(const char *s, int64_t **out, int32_t *n)
{
    void *v;
    const int rc = parse_list(s, &v, sizeof(int64_t), n, parse_i64_elem);
    *out = v;
    return rc;
}

/* ---- output buffer ------------------------------------------------------------------------- */

void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const size_t room = b->cap - b->len;
        const int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void sb_free(strbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void sb_float(strbuf *b, float x)
{
    if (isfinite(x))
        sb_printf(b, "%.9g", (double)x);
    else
        sb_printf(b, "null");
}

/* ---- step output --------------------------------------------------------------------------- */

void cli_emit_step(strbuf *b, int64_t draw, int32_t users, const ms_step_output *out,
                   int32_t top_stride, bool with_logprobs)
{
    for (int32_t u = 0; u < users; u++) {
        const int32_t tok = out->tokens[u];
        const bool bad = (out->row_error && out->row_error[u]) || tok < 0;
        sb_printf(b, "{\"draw\":%lld,\"user\":%d,\"token\":%d", (long long)draw, (int)u,
                  bad ? -1 : (int)tok);
        if (bad) {
            sb_printf(b, ",\"error\":\"no finite logit\"}\n");
            continue;
        }
        if (with_logprobs) {
            sb_printf(b, ",\"logprob\":");
            sb_float(b, out->logprob[u]);
            sb_printf(b, ",\"rank\":%d,\"top_logprobs\":[", (int)out->rank[u]);
            int32_t n = out->top_count[u];
            if (n < 0)
                n = 0;
            if (n > top_stride)
                n = top_stride;
            for (int32_t i = 0; i < n; i++) {
                const size_t at = (size_t)u * (size_t)top_stride + (size_t)i;
                sb_printf(b, "%s[%d,", i ? "," : "", (int)out->top_ids[at]);
                sb_float(b, out->top_logprobs[at]);
                sb_printf(b, "]");
            }
            sb_printf(b, "]");
        }
        sb_printf(b, "}\n");
    }
}

int cli_step_output_alloc(ms_step_output *out, int32_t users, int32_t top_stride)
{
    memset(out, 0, sizeof *out);
    const size_t u = users > 0 ? (size_t)users : 1;
    const size_t t = u * (size_t)(top_stride > 0 ? top_stride : 1);
    out->tokens = calloc(u, sizeof *out->tokens);
    out->row_error = calloc(u, sizeof *out->row_error);
    out->logprob = calloc(u, sizeof *out->logprob);
    out->rank = calloc(u, sizeof *out->rank);
    out->top_count = calloc(u, sizeof *out->top_count);
    out->top_ids = calloc(t, sizeof *out->top_ids);
    out->top_logprobs = calloc(t, sizeof *out->top_logprobs);
    if (!out->tokens || !out->row_error || !out->logprob || !out->rank || !out->top_count ||
        !out->top_ids || !out->top_logprobs) {
        cli_step_output_free(out);
        return -1;
    }
    return 0;
}

void cli_step_output_free(ms_step_output *out)
{
    free(out->tokens);
    free(out->row_error);
    free(out->logprob);
    free(out->rank);
    free(out->top_count);
    free(out->top_ids);
    free(out->top_logprobs);
    memset(out, 0, sizeof *out);
}

/* ---- synthetic data ------------------------------------------------------------------------ */

uint64_t cli_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cli_rand_uniform(uint64_t *state)
{
    return (double)(cli_rand_u64(state) >> 11) * 0x1.0p-53;
}

double cli_rand_normal(uint64_t *state)
{
    /* 1 - u lies in (0, 1], so the log is finite. */
    const double u1 = 1.0 - cli_rand_uniform(state), u2 = cli_rand_uniform(state);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void cli_synth_logits_row(float *row, int32_t n, uint64_t *state)
{
    for (int32_t i = 0; i < n; i++)
        row[i] = (float)(2.5 * cli_rand_normal(state));
    /* A model's distribution is peaked: a few dozen tokens stand well above the background
     * (about 8 to 16 above its mean), so top-k/top-p nuclei are small, as in real decoding. */
    const int32_t hot = n < 48 ? n / 4 : 32 + (int32_t)(cli_rand_u64(state) % 17);
    for (int32_t h = 0; h < hot; h++) {
        const int32_t t = (int32_t)(cli_rand_u64(state) % (uint64_t)n);
        row[t] = (float)(8.0 + 8.0 * cli_rand_uniform(state));
    }
}

int cli_parse_choice(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

bool cli_opt_bad(cli_opts *o, bool bad, const char *v)
{
    if (bad && !o->error) {
        snprintf(o->msg, sizeof o->msg, "--%.*s: invalid value '%.100s'", (int)o->name_len,
                 o->name, v ? v : "");
        o->error = true;
    }
    return o->error;
}

double cli_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int cli_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
