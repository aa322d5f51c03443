/*
 * Unit checks of tools/npy.c: round trips of every dtype in every format version, header
 * spellings numpy (and other writers) produce, each rejection the reader promises, and the
 * half/bfloat16 conversions over all 65536 bit patterns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

static int failures;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

static void round_trips(void)
{
    const npy_dtype types[] = {NPY_F32, NPY_F16, NPY_U16, NPY_I32, NPY_I64};
    unsigned char data[8 * 3 * 5];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    const int64_t shapes[][2] = {{3, 5}, {1, 1}, {0, 4}};
    for (size_t t = 0; t < 5; t++)
        for (int version = 1; version <= 3; version++)
            for (size_t s = 0; s < 3; s++) {
                void *buf;
                size_t len;
                char err[NPY_ERR_LEN] = "";
                CHECK(npy_write_buffer(types[t], 2, shapes[s], data, version, &buf, &len, err) == 0, "%s", err);
                CHECK((len - npy_dtype_size(types[t]) * (size_t)(shapes[s][0] * shapes[s][1])) % 64 == 0,
                      "data not 64-aligned (v%d)", version);
                npy_array a;
                CHECK(npy_load_buffer(buf, len, &a, err) == 0, "v%d %s: %s", version, npy_dtype_descr(types[t]), err);
                CHECK(a.hdr.dtype == types[t] && a.hdr.ndim == 2 && a.hdr.shape[0] == shapes[s][0] &&
                          a.hdr.shape[1] == shapes[s][1],
                      "header mismatch v%d", version);
                CHECK(a.hdr.nbytes == 0 || memcmp(a.data, data, a.hdr.nbytes) == 0, "data mismatch");
                npy_free(&a);
                /* Every proper prefix is rejected (never read past the end). */
                for (size_t cut = 0; cut < len; cut += 1 + cut / 8) {
                    npy_header h;
                    CHECK(npy_parse_header(buf, cut, &h, err) != 0, "prefix of %zu/%zu accepted", cut, len);
                }
                free(buf);
            }
    /* 0-d and 1-d shapes parse (the CLI then rejects them by shape). */
    const int64_t one[1] = {7};
    void *buf;
    size_t len;
    CHECK(npy_write_buffer(NPY_F32, 1, one, data, 0, &buf, &len, NULL) == 0, "1-d write");
    npy_header h;
    CHECK(npy_parse_header(buf, len, &h, NULL) == 0 && h.ndim == 1 && h.count == 7, "1-d parse");
    free(buf);
    CHECK(npy_write_buffer(NPY_I64, 0, one, data, 0, &buf, &len, NULL) == 0, "0-d write");
    CHECK(npy_parse_header(buf, len, &h, NULL) == 0 && h.ndim == 0 && h.count == 1, "0-d parse");
    free(buf);
}

/* A version-1 file around dict (exact length, no padding rules enforced) and nbytes of data. */
static int parse_dict(const char *dict, size_t nbytes, npy_header *h, char *err)
{
    static unsigned char buf[4096];
    const size_t dl = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(dl & 0xff);
    buf[9] = (unsigned char)(dl >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, 0x5a, nbytes);
    return npy_parse_header(buf, 10 + dl + nbytes, h, err);
}

static void header_spellings(void)
{
    static const struct {
        const char *dict;
        size_t nbytes;
        npy_dtype dtype;
        int ndim;
    } good[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, NPY_F32, 2},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n", 24, NPY_F32, 2},
        {"{\"descr\": \"<f2\", \"fortran_order\": False, \"shape\": (2,3)}", 12, NPY_F16, 2},
        {"{'shape': (2, 3), 'fortran_order': False, 'descr': '=u2'}     \n", 12, NPY_U16, 2},
        {"{'descr':'<i8','fortran_order':False,'shape':(2L, 3L),}", 48, NPY_I64, 2},
        {"{ 'descr' : '<i4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }\t\r\n", 24, NPY_I32, 2},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 24, NPY_F32, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, NPY_F32, 0},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 18446744073709551), }", 0, NPY_F32, 2},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        npy_header h;
        char err[NPY_ERR_LEN] = "";
        CHECK(parse_dict(good[i].dict, good[i].nbytes, &h, err) == 0, "%s: %s", good[i].dict, err);
        CHECK(h.dtype == good[i].dtype && h.ndim == good[i].ndim, "%s: wrong dtype/ndim", good[i].dict);
    }

    static const struct {
        const char *dict;
        size_t nbytes;
        const char *msg; /* a substring of the expected message */
    } bad[] = {
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "big-endian"},
        {"{'descr': '|f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "unsupported dtype"},
        {"{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3), }", 24, "unsupported dtype"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, "unsupported dtype"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48, "unsupported dtype"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", 24, "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", 24, "tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 24, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, }", 24, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 24, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 24, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23, "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25, "unexpected bytes after"},
        {"{'descr': '<f4', 'fortran_order': False }", 0, "lacks 'shape'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, "duplicate"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", 4, "unexpected key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4, "after the header"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", 4, "expected ','"},
        {"{'descr: '<f4', 'fortran_order': False, 'shape': (1,)}", 4, ""},
        {"{'descr': '<f4\\', 'fortran_order': False, 'shape': (1,)}", 4, "unsupported character"},
        {"('descr', '<f4')", 4, "not a dict"},
        {"", 0, "not a dict"},
        {"{", 0, ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        npy_header h;
        char err[NPY_ERR_LEN] = "";
        CHECK(parse_dict(bad[i].dict, bad[i].nbytes, &h, err) != 0, "accepted: %s", bad[i].dict);
        CHECK(strstr(err, bad[i].msg) != NULL, "%s: message '%s' lacks '%s'", bad[i].dict, err, bad[i].msg);
        CHECK(err[0] != '\0', "%s: empty message", bad[i].dict);
    }

    /* Magic and version. */
    npy_header h;
    char err[NPY_ERR_LEN];
    CHECK(npy_parse_header(NULL, 0, &h, err) != 0 && strstr(err, "magic"), "empty input");
    CHECK(npy_parse_header("\x93NUMPY\x01", 7, &h, err) != 0, "short magic");
    CHECK(npy_parse_header("\x93NUMPY\x02\x01\x00\x00\x00\x00", 12, &h, err) != 0 && strstr(err, "version"),
          "version 2.1");
    CHECK(npy_parse_header("\x93NUMPY\x02\x00\x10\x00", 10, &h, err) != 0 && strstr(err, "truncated"),
          "v2 length cut");
    CHECK(npy_parse_header("\x93NUMPY\x01\x00\xff\xff{}", 12, &h, err) != 0 && strstr(err, "truncated"),
          "header longer than the file");
}

static void conversions(void)
{
    for (uint32_t b = 0; b < 65536; b++) {
        const float h = npy_half_to_float((uint16_t)b), f = npy_bf16_to_float((uint16_t)b);
        if (isnan(h))
            CHECK(isnan(npy_half_to_float(npy_float_to_half(h))), "half NaN %04x", b);
        else
            CHECK(npy_float_to_half(h) == b, "half %04x -> %g -> %04x", b, (double)h, npy_float_to_half(h));
        if (isnan(f))
            CHECK(isnan(npy_bf16_to_float(npy_float_to_bf16(f))), "bf16 NaN %04x", b);
        else
            CHECK(npy_float_to_bf16(f) == b, "bf16 %04x", b);
    }
    /* Rounding: ties to even, overflow to infinity, underflow to zero. */
    CHECK(npy_float_to_half(65504.0f) == 0x7bff, "max half");
    CHECK(npy_float_to_half(65519.0f) == 0x7bff, "below the rounding edge");
    CHECK(npy_float_to_half(65520.0f) == 0x7c00, "rounds to inf");
    CHECK(npy_float_to_half(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(npy_float_to_half(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(npy_float_to_half(0x1p-25f) == 0x0000, "2^-25 ties to zero");
    CHECK(npy_float_to_half(0x1.8p-25f) == 0x0001, "above 2^-25 rounds to the smallest subnormal");
    CHECK(npy_float_to_half(-0x1p-24f) == 0x8001, "negative smallest subnormal");
    CHECK(npy_float_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie to even");
    CHECK(npy_float_to_bf16(3.4e38f) == 0x7f80, "bf16 overflow rounds to inf");
    for (int k = -200; k <= 200; k++) {
        const float v = (float)k / 16.0f;
        CHECK(npy_half_to_float(npy_float_to_half(v)) == v, "k/16 exact in half (%d)", k);
        CHECK(npy_bf16_to_float(npy_float_to_bf16(v)) == v, "k/16 exact in bf16 (%d)", k);
    }
}

static void files(const char *dir)
{
    char path[4096], err[NPY_ERR_LEN];
    snprintf(path, sizeof path, "%s/npy_selftest.npy", dir);
    const int64_t shape[2] = {2, 3};
    const int32_t v[6] = {1, -1, 2, 3, 2147483647, -2147483647 - 1};
    CHECK(npy_write_file(path, NPY_I32, 2, shape, v, err) == 0, "%s", err);
    npy_array a;
    CHECK(npy_read_file(path, &a, err) == 0, "%s", err);
    CHECK(a.hdr.count == 6 && memcmp(a.data, v, sizeof v) == 0, "file round trip");
    npy_free(&a);
    npy_free(&a); /* idempotent */
    npy_free(NULL);
    remove(path);
    CHECK(npy_read_file(path, &a, err) != 0 && strstr(err, path), "missing file message: %s", err);
    CHECK(npy_read_file(dir, &a, err) != 0 && strstr(err, "directory"), "directory message: %s", err);
}

int main(int argc, char **argv)
{
    round_trips();
    header_spellings();
    conversions();
    files(argc > 1 ? argv[1] : ".");
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    puts("npy self-test passed");
    return 0;
}
