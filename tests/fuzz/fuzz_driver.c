/*
 * A standalone driver for LLVMFuzzerTestOneInput targets, so fuzzing runs under plain gcc and
 * ctest: deterministic (fixed seed), bounded in time, and ASan/UBSan-friendly (every input is
 * an exact-size heap copy, so a read one byte past the end is caught).
 *
 *   ms_fuzz_npy [--runs N] [--seed S] [--max-seconds T] [FILE...]
 *
 * With files, runs each once (replaying a crash found by libFuzzer); otherwise mutates a corpus
 * of valid and near-valid .npy files built in memory: bit flips, byte overwrites with
 * interesting values, header-token splices, truncation, extension, insertion and deletion,
 * biased toward the header where the parser's decisions are.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static void run_one(const uint8_t *p, size_t n)
{
    /* An exact-size copy: ASan then flags any read past the end. */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    if (n)
        memcpy(copy, p, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

#ifdef FUZZ_TEXT_CORPUS
/* Text targets (command-line values): short strings, and the pieces to splice into them. */
static size_t build_corpus(blob *c, size_t cap)
{
    static const char *seeds[] = {
        "0.5", "1,2,3,4", "2x4", "nan", "-1", "1e40", "0x1p3", "inf,1", ",", "1,,2", "1x", "x1",
        "99999999999999999999", "-9223372036854775808", " 1", "1 ", "+7", "0.7,0.8,", "4096x4096",
        "1e-50", "-0", "3.4028235e38", "1,nan,-inf",
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0] && n < cap; i++) {
        const size_t len = strlen(seeds[i]);
        blob b = {malloc(len + 1), len};
        if (!b.p)
            exit(1);
        memcpy(b.p, seeds[i], len);
        c[n++] = b;
    }
    return n;
}

static const char *tokens[] = {
    ",", "x", "-", "+", ".", "e", "e-", "e+", "nan", "inf", "0x", "p", "9", "0", "99999999999",
    " ", "\t", "\x00", "\xff", "L", "1e39",
};
#else
/* A version-1 file with the dict text given verbatim and n data bytes. */
static blob raw_file(const char *dict, size_t ndata)
{
    const size_t dl = strlen(dict);
    blob b = {malloc(10 + dl + ndata + 1), 10 + dl + ndata};
    if (!b.p)
        exit(1);
    memcpy(b.p, "\x93NUMPY\x01\x00", 8);
    b.p[8] = (uint8_t)(dl & 0xff);
    b.p[9] = (uint8_t)(dl >> 8);
    memcpy(b.p + 10, dict, dl);
    for (size_t i = 0; i < ndata; i++)
        b.p[10 + dl + i] = (uint8_t)(i * 31);
    return b;
}

static size_t build_corpus(blob *c, size_t cap)
{
    size_t n = 0;
    static const uint8_t data[4 * 8 * 3];
    const npy_dtype types[] = {NPY_F32, NPY_F16, NPY_U16, NPY_I32, NPY_I64};
    const int64_t shapes[][3] = {{2, 3, 0}, {1, 4, 0}, {0, 5, 0}, {3, 1, 0}};
    for (size_t t = 0; t < 5; t++)
        for (int v = 1; v <= 3; v++)
            for (size_t s = 0; s < 4 && n < cap; s++) {
                void *buf;
                size_t len;
                if (npy_write_buffer(types[t], 2, shapes[s], data, v, &buf, &len, NULL) == 0)
                    c[n++] = (blob){buf, len};
            }
    static const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        "{\"descr\": \"=i8\", \"fortran_order\": False, \"shape\": (1, 1, 1)}",
        "{'shape': (), 'descr': '<u2', 'fortran_order': False}",
        "{'descr':'<f2','fortran_order':False,'shape':(3L,)}",
        "{'descr': '>f4', 'fortran_order': True, 'shape': (18446744073709551615, 2), }",
        "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1,), }",
    };
    const size_t ndata[] = {8, 8, 2, 6, 8, 4};
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0] && n < cap; i++)
        c[n++] = raw_file(dicts[i], ndata[i]);
    return n;
}

static const char *tokens[] = {
    "'descr'", "'fortran_order'", "'shape'", "True", "False", "(", ")", ",", ":", "{", "}", "'", "\"",
    "<f4", ">f4", "|f4", "=f2", "<u2", "<i4", "<i8", "<f8", "L", "0", "1", "9223372036854775807",
    "18446744073709551616", "4294967296", " ", "\n", "\\", "[", "]", "\x00", "\xff",
};
#endif

/* Apply one random mutation to b in place (it may grow or shrink). */
static void mutate(blob *b)
{
    /* Most of the parser's decisions are in the first ~128 bytes. */
    const size_t hot = b->n < 128 ? b->n : 128;
    const size_t at = b->n && rnd() % 4 ? below(hot) : below(b->n);
    switch (rnd() % 9) {
    case 0: /* bit flip */
        if (b->n)
            b->p[at] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: { /* interesting byte */
        static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, '(', ')', ',', '\'', '9', '<', '>', ' '};
        if (b->n)
            b->p[at] = vals[below(sizeof vals)];
        break;
    }
    case 2: /* truncate */
        b->n = below(b->n + 1);
        break;
    case 3: /* extend with random bytes */ {
        const size_t add = 1 + below(16);
        uint8_t *p = realloc(b->p, b->n + add);
        if (!p)
            exit(1);
        b->p = p;
        for (size_t i = 0; i < add; i++)
            b->p[b->n + i] = (uint8_t)rnd();
        b->n += add;
        break;
    }
    case 4: /* delete a run */
        if (b->n) {
            const size_t len = 1 + below(8 < b->n - at ? 8 : b->n - at);
            memmove(b->p + at, b->p + at + len, b->n - at - len);
            b->n -= len;
        }
        break;
    case 5:
    case 6: { /* splice a header token (overwrite or insert) */
        const char *t = tokens[below(sizeof tokens / sizeof tokens[0])];
        const size_t tl = strlen(t) ? strlen(t) : 1;
        const bool insert = rnd() % 2;
        const size_t need = insert ? b->n + tl : (at + tl > b->n ? at + tl : b->n);
        uint8_t *p = realloc(b->p, need ? need : 1);
        if (!p)
            exit(1);
        b->p = p;
        if (insert)
            memmove(b->p + at + tl, b->p + at, b->n - at);
        memcpy(b->p + at, t, tl);
        b->n = need;
        break;
    }
    case 7: /* rewrite the header length field */
        if (b->n >= 12) {
            const size_t f = 8 + below(b->p[6] == 1 ? 2 : 4);
            b->p[f] = (uint8_t)(rnd() % 3 == 0 ? 0xff : b->p[f] + (int)below(5) - 2);
        }
        break;
    default: /* version byte */
        if (b->n >= 8)
            b->p[6 + below(2)] = (uint8_t)below(5);
        break;
    }
}

int main(int argc, char **argv)
{
    long runs = 4000, max_seconds = 20;
    uint64_t seed = 1;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc)
            max_seconds = atol(argv[++i]);
        else {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                fprintf(stderr, "cannot open %s\n", argv[i]);
                return 1;
            }
            static uint8_t buf[1 << 20];
            const size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            run_one(buf, n);
            files++;
        }
    }
    if (files) {
        printf("replayed %d file(s)\n", files);
        return 0;
    }

    rng_state = seed;
    blob corpus[128];
    const size_t nc = build_corpus(corpus, 128);
    for (size_t i = 0; i < nc; i++)
        run_one(corpus[i].p, corpus[i].n); /* the unmutated seeds themselves */

    const time_t start = time(NULL);
    long done = 0;
    for (; done < runs; done++) {
        const blob *s = &corpus[below(nc)];
        blob b = {malloc(s->n ? s->n : 1), s->n};
        if (!b.p)
            return 1;
        memcpy(b.p, s->p, s->n);
        const int k = 1 + (int)below(4);
        for (int j = 0; j < k; j++)
            mutate(&b);
        run_one(b.p, b.n);
        free(b.p);
        if ((done & 255) == 0 && time(NULL) - start > max_seconds)
            break;
    }
    for (size_t i = 0; i < nc; i++)
        free(corpus[i].p);
    printf("%ld mutated inputs, %zu seeds, seed %llu: no invariant broken\n", done, nc,
           (unsigned long long)seed);
    return 0;
}
