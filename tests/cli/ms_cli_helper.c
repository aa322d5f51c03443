/*
 * ms_cli_helper: the test scripts' C side, so they need neither python nor jq.
 *
 *   gen-logits OUT B V DTYPE SEED [KIND...]   deterministic [B, V] logits (DTYPE f32|f16|bf16);
 *       values are k/16 for integers |k| <= 200, exact in all three dtypes, so files of the
 *       same SEED hold the same values whatever their dtype. KINDs (any number):
 *         ties        each row's maximum (13.0) appears at 2 or 3 random columns
 *         padhot:N    columns N.. get 50.0 (they must never be sampled with --vocab-size N)
 *         badrow:R    row R is all -inf (no finite logit)
 *         nanrow:R    row R is all NaN
 *         infrow:R    row R gets +inf at two random columns (greedy takes the lower one)
 *   gen-tokens OUT B S DTYPE SEED MAXID       [B, S] ids in [0, MAXID) (DTYPE i4|i8), each row
 *       ending in a random run of -1 padding
 *   tokens OUT DTYPE B S v...                 [B, S] ids given on the command line
 *   bad-npy KIND OUT                          a malformed file (see bad_kinds below)
 *   argmax FILE [N]                           per row, the lowest id of the maximum over the
 *       first N columns (default all), one per line; "-1" when no value is finite or +inf
 *   check FILE B DRAWS N V                    validate `meshsample sample` output strictly:
 *       draw-major order, exact field layout, tokens in [0, V) (or -1 with the error field),
 *       N < 0: no log-prob fields; N >= 0: logprob, rank >= 1, at most N top entries with
 *       distinct ids in [0, V), sorted by log-prob (descending), and the sampled token's
 *       log-prob equal to its top-list entry when it has one. Prints "draw user token" lines.
 *   raw-logprobs OUT FILE N                   every log-prob in OUT (a checked sample output in
 *       raw mode) equals log_softmax over the first N columns of its row of FILE, computed in
 *       double (so padding columns must not have entered the normaliser), within 1e-4
 *
 * Exit 0 on success, 1 with a message on stderr otherwise.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ms_cli_helper: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int write_values(const char *out, const char *dtype, int64_t b, int64_t v, const float *vals)
{
    char err[NPY_ERR_LEN];
    const int64_t shape[2] = {b, v};
    const size_t n = (size_t)(b * v);
    int rc;
    if (strcmp(dtype, "f32") == 0) {
        rc = npy_write_file(out, NPY_F32, 2, shape, vals, err);
    } else if (strcmp(dtype, "f16") == 0 || strcmp(dtype, "bf16") == 0) {
        const bool bf = dtype[0] == 'b';
        uint16_t *h = malloc(n * 2 + 2);
        if (!h)
            return die("out of memory");
        for (size_t i = 0; i < n; i++)
            h[i] = bf ? npy_float_to_bf16(vals[i]) : npy_float_to_half(vals[i]);
        rc = npy_write_file(out, bf ? NPY_U16 : NPY_F16, 2, shape, h, err);
        free(h);
    } else {
        return die("unknown dtype %s", dtype);
    }
    return rc ? die("%s", err) : 0;
}

static int gen_logits(int argc, char **argv)
{
    if (argc < 6)
        return die("gen-logits OUT B V DTYPE SEED [KIND...]");
    const int64_t b = atoll(argv[2]), v = atoll(argv[3]);
    uint64_t s = strtoull(argv[5], NULL, 10);
    if (b < 1 || v < 1 || b * v > (1 << 26))
        return die("bad shape");
    float *x = malloc((size_t)(b * v) * sizeof *x);
    if (!x)
        return die("out of memory");
    for (int64_t i = 0; i < b * v; i++)
        x[i] = (float)((int)(rnd(&s) % 401) - 200) / 16.0f;
    for (int a = 6; a < argc; a++) {
        const char *k = argv[a];
        if (strcmp(k, "ties") == 0) {
            for (int64_t r = 0; r < b; r++) {
                const int n = 2 + (int)(rnd(&s) % 2);
                for (int j = 0; j < n; j++)
                    x[r * v + (int64_t)(rnd(&s) % (uint64_t)v)] = 13.0f;
            }
        } else if (strncmp(k, "padhot:", 7) == 0) {
            const int64_t from = atoll(k + 7);
            for (int64_t r = 0; r < b; r++)
                for (int64_t c = from; c < v; c++)
                    x[r * v + c] = 50.0f;
        } else if (strncmp(k, "badrow:", 7) == 0 || strncmp(k, "nanrow:", 7) == 0) {
            const int64_t r = atoll(k + 7);
            if (r < 0 || r >= b) {
                free(x);
                return die("bad row %lld", (long long)r);
            }
            for (int64_t c = 0; c < v; c++)
                x[r * v + c] = k[0] == 'b' ? -INFINITY : NAN;
        } else if (strncmp(k, "infrow:", 7) == 0) {
            const int64_t r = atoll(k + 7);
            if (r < 0 || r >= b) {
                free(x);
                return die("bad row %lld", (long long)r);
            }
            for (int j = 0; j < 2; j++)
                x[r * v + (int64_t)(rnd(&s) % (uint64_t)v)] = INFINITY;
        } else {
            free(x);
            return die("unknown kind %s", k);
        }
    }
    const int rc = write_values(argv[1], argv[4], b, v, x);
    free(x);
    return rc;
}

static int write_tokens(const char *out, const char *dtype, int64_t b, int64_t s, const int64_t *t)
{
    char err[NPY_ERR_LEN];
    const int64_t shape[2] = {b, s};
    const size_t n = (size_t)(b * s);
    int rc;
    if (strcmp(dtype, "i8") == 0) {
        rc = npy_write_file(out, NPY_I64, 2, shape, t, err);
    } else if (strcmp(dtype, "i4") == 0) {
        int32_t *t32 = malloc(n * 4 + 4);
        if (!t32)
            return die("out of memory");
        for (size_t i = 0; i < n; i++)
            t32[i] = (int32_t)t[i];
        rc = npy_write_file(out, NPY_I32, 2, shape, t32, err);
        free(t32);
    } else {
        return die("unknown token dtype %s", dtype);
    }
    return rc ? die("%s", err) : 0;
}

static int gen_tokens(int argc, char **argv)
{
    if (argc != 7)
        return die("gen-tokens OUT B S DTYPE SEED MAXID");
    const int64_t b = atoll(argv[2]), n = atoll(argv[3]), maxid = atoll(argv[6]);
    uint64_t s = strtoull(argv[5], NULL, 10);
    if (b < 1 || n < 0 || b * n > (1 << 24) || maxid < 1)
        return die("bad arguments");
    int64_t *t = malloc((size_t)(b * n) * 8 + 8);
    if (!t)
        return die("out of memory");
    for (int64_t r = 0; r < b; r++) {
        const int64_t len = n ? (int64_t)(rnd(&s) % (uint64_t)(n + 1)) : 0;
        for (int64_t c = 0; c < n; c++)
            t[r * n + c] = c < len ? (int64_t)(rnd(&s) % (uint64_t)maxid) : -1;
    }
    const int rc = write_tokens(argv[1], argv[4], b, n, t);
    free(t);
    return rc;
}

static int tokens_cmd(int argc, char **argv)
{
    if (argc < 5)
        return die("tokens OUT DTYPE B S v...");
    const int64_t b = atoll(argv[3]), n = atoll(argv[4]);
    if (b < 1 || n < 0 || argc != 5 + b * n)
        return die("tokens: expected %lld values", (long long)(b * n));
    int64_t *t = malloc((size_t)(b * n) * 8 + 8);
    if (!t)
        return die("out of memory");
    for (int64_t i = 0; i < b * n; i++)
        t[i] = strtoll(argv[5 + i], NULL, 10);
    const int rc = write_tokens(argv[1], argv[2], b, n, t);
    free(t);
    return rc;
}

/* ---- malformed files ------------------------------------------------------------------------ */

static int put(const char *out, const void *p, size_t n)
{
    FILE *f = fopen(out, "wb");
    if (!f)
        return die("cannot write %s", out);
    const bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : die("write error on %s", out);
}

/* A string literal's bytes, without its terminating NUL. */
#define put_lit(out, lit) put((out), (lit), sizeof(lit) - 1)

/* A valid version-1 file of a 2x4 float32 array whose header text is replaced by dict (padded
 * with spaces to keep the declared length right), and data of nbytes bytes. */
static int with_header(const char *out, const char *dict, size_t nbytes)
{
    unsigned char buf[512];
    const size_t dl = strlen(dict);
    size_t hlen = (10 + dl + 1 + 63) / 64 * 64 - 10;
    if (10 + hlen + nbytes > sizeof buf)
        return die("too big");
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, ' ', hlen - dl - 1);
    buf[10 + hlen - 1] = '\n';
    for (size_t i = 0; i < nbytes; i++)
        buf[10 + hlen + i] = (unsigned char)(i * 7);
    return put(out, buf, 10 + hlen + nbytes);
}

static int bad_npy(int argc, char **argv)
{
    if (argc != 3)
        return die("bad-npy KIND OUT");
    const char *k = argv[1], *out = argv[2];
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }";
    if (strcmp(k, "empty") == 0)
        return put(out, "", 0);
    if (strcmp(k, "bad-magic") == 0)
        return put_lit(out, "\x93NUMPX\x01\x00\x10\x00{}             \n");
    if (strcmp(k, "bad-version") == 0)
        return put_lit(out, "\x93NUMPY\x04\x00\x10\x00{}             \n");
    if (strcmp(k, "truncated-header") == 0)
        return put_lit(out, "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortr");
    if (strcmp(k, "truncated-data") == 0)
        return with_header(out, good, 31);
    if (strcmp(k, "extra-data") == 0)
        return with_header(out, good, 33);
    if (strcmp(k, "big-endian") == 0)
        return with_header(out, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 4), }", 32);
    if (strcmp(k, "float64") == 0)
        return with_header(out, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 32);
    if (strcmp(k, "fortran") == 0)
        return with_header(out, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 4), }", 32);
    if (strcmp(k, "three-d") == 0)
        return with_header(out, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32);
    if (strcmp(k, "one-d") == 0)
        return with_header(out, "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }", 32);
    if (strcmp(k, "huge-shape") == 0)
        return with_header(out,
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                           32);
    if (strcmp(k, "missing-key") == 0)
        return with_header(out, "{'descr': '<f4', 'shape': (2, 4), }", 32);
    if (strcmp(k, "garbage-dict") == 0)
        return with_header(out, "{'descr': '<f4', 'fortran_order': Nope, 'shape': (2, 4), }", 32);
    if (strcmp(k, "int32-logits") == 0)
        return with_header(out, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 4), }", 32);
    if (strcmp(k, "empty-shape") == 0)
        return with_header(out, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", 0);
    return die("unknown bad-npy kind %s", k);
}

/* ---- argmax --------------------------------------------------------------------------------- */

static int argmax_cmd(int argc, char **argv)
{
    if (argc < 2)
        return die("argmax FILE [N]");
    char err[NPY_ERR_LEN];
    npy_array a;
    if (npy_read_file(argv[1], &a, err))
        return die("%s", err);
    if (a.hdr.ndim != 2) {
        npy_free(&a);
        return die("not 2-D");
    }
    const int64_t b = a.hdr.shape[0], v = a.hdr.shape[1];
    const int64_t n = argc > 2 ? atoll(argv[2]) : v;
    for (int64_t r = 0; r < b; r++) {
        int64_t best = -1;
        float bv = -INFINITY;
        for (int64_t c = 0; c < n && c < v; c++) {
            const size_t i = (size_t)(r * v + c);
            float x;
            switch (a.hdr.dtype) {
            case NPY_F32: x = ((const float *)a.data)[i]; break;
            case NPY_F16: x = npy_half_to_float(((const uint16_t *)a.data)[i]); break;
            case NPY_U16: x = npy_bf16_to_float(((const uint16_t *)a.data)[i]); break;
            default: npy_free(&a); return die("not a float file");
            }
            /* NaN counts as -inf; -inf never wins, so a row of them reports -1. */
            if (x > bv || (best < 0 && x == INFINITY)) {
                bv = x;
                best = c;
            }
        }
        printf("%lld\n", (long long)best);
    }
    npy_free(&a);
    return 0;
}

/* ---- the output checker --------------------------------------------------------------------- */

typedef struct scan {
    const char *p;
    int line;
} scan;

static bool lit(scan *s, const char *l)
{
    const size_t n = strlen(l);
    if (strncmp(s->p, l, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool integer(scan *s, long long *v)
{
    const char *q = s->p;
    if (*q == '-')
        q++;
    if (!isdigit((unsigned char)*q))
        return false;
    /* JSON integers: no leading zeros. */
    if (*q == '0' && isdigit((unsigned char)q[1]))
        return false;
    char *end;
    *v = strtoll(s->p, &end, 10);
    if (*end == '.' || *end == 'e' || *end == 'E')
        return false;
    s->p = end;
    return true;
}

/* A JSON number (as %.9g writes it) or null (-> NAN). */
static bool number(scan *s, double *v)
{
    if (lit(s, "null")) {
        *v = NAN;
        return true;
    }
    const char *q = s->p;
    if (*q == '-')
        q++;
    if (!isdigit((unsigned char)*q))
        return false; /* rejects "inf", "nan", "+1", ".5" */
    char *end;
    *v = strtod(s->p, &end);
    s->p = end;
    return isfinite(*v);
}

static int check_cmd(int argc, char **argv)
{
    if (argc != 6)
        return die("check FILE B DRAWS N V");
    const long long B = atoll(argv[2]), D = atoll(argv[3]), N = atoll(argv[4]), V = atoll(argv[5]);
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return die("cannot open %s", argv[1]);
    char line[1 << 16];
    long long count = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        const size_t len = strlen(line);
        if (len == 0 || line[len - 1] != '\n') {
            rc = die("line %lld: unterminated or too long", count + 1);
            break;
        }
        line[len - 1] = '\0';
        scan s = {line, (int)count + 1};
        long long d, u, t;
        const long long ed = count / B, eu = count % B;
        count++;
#define FAIL(...)                                                                                 \
    do {                                                                                          \
        rc = die(__VA_ARGS__);                                                                    \
        goto out;                                                                                 \
    } while (0)
        if (!lit(&s, "{\"draw\":") || !integer(&s, &d) || !lit(&s, ",\"user\":") || !integer(&s, &u) ||
            !lit(&s, ",\"token\":") || !integer(&s, &t))
            FAIL("line %lld: bad prefix: %s", count, line);
        if (d != ed || u != eu)
            FAIL("line %lld: draw %lld user %lld, expected draw %lld user %lld", count, d, u, ed, eu);
        if (t == -1) {
            if (!lit(&s, ",\"error\":\"no finite logit\"}") || *s.p)
                FAIL("line %lld: token -1 without the exact error field: %s", count, line);
            printf("%lld %lld %lld\n", d, u, t);
            continue;
        }
        if (t < 0 || t >= V)
            FAIL("line %lld: token %lld outside [0, %lld)", count, t, V);
        if (N >= 0) {
            double lp;
            long long rank;
            if (!lit(&s, ",\"logprob\":") || !number(&s, &lp) || !lit(&s, ",\"rank\":") || !integer(&s, &rank) ||
                !lit(&s, ",\"top_logprobs\":["))
                FAIL("line %lld: bad log-prob fields: %s", count, line);
            if (!(lp <= 0.0))
                FAIL("line %lld: logprob %g is not <= 0", count, lp);
            if (rank < 1 || rank > V)
                FAIL("line %lld: rank %lld outside [1, %lld]", count, rank, V);
            long long ids[1024];
            int n = 0;
            double prev = INFINITY;
            if (!lit(&s, "]")) {
                for (;;) {
                    long long id;
                    double x;
                    if (!lit(&s, "[") || !integer(&s, &id) || !lit(&s, ",") || !number(&s, &x) || !lit(&s, "]"))
                        FAIL("line %lld: bad top entry: %s", count, line);
                    if (id < 0 || id >= V)
                        FAIL("line %lld: top id %lld outside [0, %lld)", count, id, V);
                    if (!(x <= 0.0))
                        FAIL("line %lld: top log-prob %g is not <= 0", count, x);
                    if (x > prev)
                        FAIL("line %lld: top list not sorted (%g after %g)", count, x, prev);
                    for (int i = 0; i < n; i++)
                        if (ids[i] == id)
                            FAIL("line %lld: top id %lld repeated", count, id);
                    if (id == t && fabs(x - lp) > 1e-6 * (1 + fabs(lp)))
                        FAIL("line %lld: token %lld has logprob %.9g but %.9g in the top list", count, t, lp, x);
                    if (n == 1024)
                        FAIL("line %lld: top list too long", count);
                    ids[n++] = id;
                    prev = x;
                    if (lit(&s, "]"))
                        break;
                    if (!lit(&s, ","))
                        FAIL("line %lld: bad top list: %s", count, line);
                }
            }
            if (n > N)
                FAIL("line %lld: %d top entries, at most %lld expected", count, n, N);
        }
        if (!lit(&s, "}") || *s.p)
            FAIL("line %lld: unexpected text: %s", count, s.p);
        printf("%lld %lld %lld\n", d, u, t);
    }
    if (!rc && count != B * D)
        rc = die("%lld lines, expected %lld", count, B * D);
out:
    fclose(f);
    return rc;
#undef FAIL
}

/* ---- raw log-probs against a float64 log_softmax ------------------------------------------- */

static float value_at(const npy_array *a, size_t i)
{
    switch (a->hdr.dtype) {
    case NPY_F32: return ((const float *)a->data)[i];
    case NPY_F16: return npy_half_to_float(((const uint16_t *)a->data)[i]);
    case NPY_U16: return npy_bf16_to_float(((const uint16_t *)a->data)[i]);
    default: return NAN;
    }
}

static int raw_logprobs_cmd(int argc, char **argv)
{
    if (argc != 4)
        return die("raw-logprobs OUT FILE N");
    char err[NPY_ERR_LEN];
    npy_array a;
    if (npy_read_file(argv[2], &a, err))
        return die("%s", err);
    const int64_t b = a.hdr.ndim == 2 ? a.hdr.shape[0] : 0, v = a.hdr.ndim == 2 ? a.hdr.shape[1] : 0;
    const int64_t n = atoll(argv[3]);
    FILE *f = fopen(argv[1], "rb");
    if (!f || b < 1 || n < 1 || n > v) {
        if (f)
            fclose(f);
        npy_free(&a);
        return die("bad arguments");
    }
    /* log-sum-exp of each row's first n columns, in double. */
    double *lse = malloc((size_t)b * sizeof *lse);
    for (int64_t r = 0; lse && r < b; r++) {
        double m = -INFINITY, sum = 0.0;
        for (int64_t c = 0; c < n; c++)
            m = fmax(m, (double)value_at(&a, (size_t)(r * v + c)));
        for (int64_t c = 0; c < n; c++)
            sum += exp((double)value_at(&a, (size_t)(r * v + c)) - m);
        lse[r] = m + log(sum);
    }
    char line[1 << 16];
    int rc = 0;
    long long checked = 0;
    while (lse && rc == 0 && fgets(line, sizeof line, f)) {
        long long u, t;
        double lp;
        const char *p = strstr(line, "\"user\":"), *q = strstr(line, "\"token\":"), *l = strstr(line, "\"logprob\":");
        if (!p || !q || sscanf(p + 7, "%lld", &u) != 1 || sscanf(q + 8, "%lld", &t) != 1 || u < 0 || u >= b) {
            rc = die("unparsable line: %s", line);
            break;
        }
        if (!l || t < 0)
            continue;
        /* The sampled token, then every top entry: (id, log-prob) pairs. */
        if (sscanf(l + 10, "%lf", &lp) != 1) {
            rc = die("line without a numeric logprob: %s", line);
            break;
        }
        long long id = t;
        const char *e = strstr(line, "\"top_logprobs\":[");
        e = e ? e + 16 : NULL;
        for (;;) {
            if (id >= n) {
                rc = die("user %lld: id %lld is padding", u, id);
                break;
            }
            const double want = (double)value_at(&a, (size_t)(u * v + id)) - lse[u];
            if (fabs(want - lp) > 1e-4) {
                rc = die("user %lld token %lld: logprob %.9g, float64 log_softmax gives %.9g", u, id, lp, want);
                break;
            }
            checked++;
            if (!e || *e != '[' || sscanf(e, "[%lld,%lf]", &id, &lp) != 2)
                break;
            e = strchr(e, ']') + 1;
            if (*e == ',')
                e++;
        }
    }
    if (!lse)
        rc = die("out of memory");
    if (rc == 0 && checked == 0)
        rc = die("no log-probs to check");
    free(lse);
    fclose(f);
    npy_free(&a);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return die("usage: ms_cli_helper gen-logits|gen-tokens|tokens|bad-npy|argmax|check ...");
    const char *c = argv[1];
    if (strcmp(c, "gen-logits") == 0)
        return gen_logits(argc - 1, argv + 1);
    if (strcmp(c, "gen-tokens") == 0)
        return gen_tokens(argc - 1, argv + 1);
    if (strcmp(c, "tokens") == 0)
        return tokens_cmd(argc - 1, argv + 1);
    if (strcmp(c, "bad-npy") == 0)
        return bad_npy(argc - 1, argv + 1);
    if (strcmp(c, "argmax") == 0)
        return argmax_cmd(argc - 1, argv + 1);
    if (strcmp(c, "check") == 0)
        return check_cmd(argc - 1, argv + 1);
    if (strcmp(c, "raw-logprobs") == 0)
        return raw_logprobs_cmd(argc - 1, argv + 1);
    return die("unknown command %s", c);
}
