/*
 * Fuzz target for the .npy reader (tools/npy.c): any input must either be rejected with a
 * message or parse into a header whose sizes account for every byte, and loading it must read
 * only inside the input. Built two ways: with fuzz_driver.c (gcc, a deterministic mutation run
 * under ctest) and, where clang is available, as a libFuzzer binary (build_libfuzzer.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

/* abort() so both libFuzzer and ctest see the failure, with the reason on stderr. */
#define FUZZ_ASSERT(cond)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fuzz_npy: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_header h;
    char err[NPY_ERR_LEN];
    memset(err, 0x55, sizeof err);
    if (npy_parse_header(data, size, &h, err) != 0) {
        /* Rejected: a terminated, non-empty, single-line message. */
        const char *nul = memchr(err, '\0', sizeof err);
        FUZZ_ASSERT(nul != NULL && nul != err);
        FUZZ_ASSERT(strchr(err, '\n') == NULL);
        return 0;
    }
    FUZZ_ASSERT(h.ndim >= 0 && h.ndim <= NPY_MAX_DIMS);
    FUZZ_ASSERT(h.itemsize == npy_dtype_size(h.dtype) && h.itemsize > 0);
    size_t count = 1;
    for (int i = 0; i < h.ndim; i++) {
        FUZZ_ASSERT(h.shape[i] >= 0);
        count *= (size_t)h.shape[i];
    }
    FUZZ_ASSERT(count == h.count);
    FUZZ_ASSERT(h.nbytes == h.count * h.itemsize);
    FUZZ_ASSERT(h.data_offset >= 10 && h.data_offset <= size);
    FUZZ_ASSERT(h.data_offset + h.nbytes == size);

    npy_array a;
    FUZZ_ASSERT(npy_load_buffer(data, size, &a, err) == 0);
    FUZZ_ASSERT(a.hdr.nbytes == h.nbytes);
    FUZZ_ASSERT(h.nbytes == 0 || memcmp(a.data, data + h.data_offset, h.nbytes) == 0);
    npy_free(&a);
    return 0;
}
