/*
 * Fuzz target for the CLI's value parsers (tools/cli_util.c): numbers, comma-separated
 * per-user lists and mesh shapes. Any text must either be rejected or give values that print
 * back as what was parsed; nothing may read outside the input.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define FUZZ_ASSERT(cond)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_cli_args: invariant failed: %s (%s:%d)\n", #cond, __FILE__,     \
                    __LINE__);                                                                    \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* The parsers take C strings (argv): an exact-size terminated copy. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    size_t commas = 0;
    for (size_t i = 0; i < size && s[i]; i++)
        commas += s[i] == ',';

    float *f = NULL;
    int64_t *v = NULL;
    int32_t n = -1;
    if (cli_parse_flist(s, &f, &n) == 0) {
        FUZZ_ASSERT(n >= 1 && (size_t)n == commas + 1);
        free(f);
    } else {
        FUZZ_ASSERT(f == NULL);
    }
    if (cli_parse_ilist(s, &v, &n) == 0) {
        FUZZ_ASSERT(n >= 1 && (size_t)n == commas + 1);
        /* A one-element list is the plain integer, and prints back to the same text modulo a
         * leading '+' or zeros. */
        if (n == 1) {
            int64_t x;
            FUZZ_ASSERT(cli_parse_i64(s, &x) == 0 && x == v[0]);
        }
        free(v);
    } else {
        FUZZ_ASSERT(v == NULL);
    }
    int32_t r = 0, c = 0;
    if (cli_parse_mesh(s, &r, &c) == 0)
        FUZZ_ASSERT(r >= 1 && r <= 4096 && c >= 1 && c <= 4096);
    int32_t k;
    if (cli_parse_i32_range(s, -5, 5, &k) == 0)
        FUZZ_ASSERT(k >= -5 && k <= 5);
    float x;
    if (cli_parse_f32(s, &x) == 0) {
        /* Whatever parsed must survive a JSON-safe print (the CLI's output path). */
        strbuf b = {0};
        sb_float(&b, x);
        FUZZ_ASSERT(!b.oom && b.len > 0);
        FUZZ_ASSERT(isfinite(x) || strcmp(b.p, "null") == 0);
        sb_free(&b);
    }
    free(s);
    return 0;
}
