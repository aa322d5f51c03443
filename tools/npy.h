/*
 * npy: a small reader and writer for NumPy's .npy format (versions 1.0, 2.0 and 3.0), just
 * enough for the meshsample CLI and its tests: little-endian f32, f16, u16 (bf16 bit patterns),
 * i32 and i64 arrays in C order.
 *
 * The reader treats its input as hostile: every field of the header is checked, sizes are
 * computed with overflow checks, and the data must be exactly as long as the header says.
 * Nothing here aborts or exits; failures return -1 with a one-line message in the caller's
 * buffer. Not thread-hostile: no global state.
 */
#ifndef MS_TOOLS_NPY_H
#define MS_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8
#define NPY_ERR_LEN 256

typedef enum npy_dtype {
    NPY_F32 = 0, /* '<f4' */
    NPY_F16 = 1, /* '<f2' */
    NPY_U16 = 2, /* '<u2' (the CLI reads bf16 bit patterns from it) */
    NPY_I32 = 3, /* '<i4' */
    NPY_I64 = 4  /* '<i8' */
} npy_dtype;

/* What a header says. data_offset + nbytes == the input length once parsed successfully. */
typedef struct npy_header {
    npy_dtype dtype;
    size_t itemsize;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;       /* product of shape (1 for a 0-d array) */
    size_t nbytes;      /* count * itemsize */
    size_t data_offset; /* where the data starts in the input */
} npy_header;

/* An array read into memory. data is owned (free with npy_free), at least 16-byte aligned, and
 * NULL only when nbytes is 0. */
typedef struct npy_array {
    npy_header hdr;
    void *data;
} npy_array;

/* Parse and validate the header of the len bytes at buf (a whole .npy file in memory): magic,
 * version, header length, the dict ('descr', 'fortran_order', 'shape', nothing else), dtype,
 * shape overflow, and that exactly hdr->nbytes bytes of data follow. Returns 0, or -1 with a
 * message in err (NPY_ERR_LEN bytes; may be NULL) and *hdr unspecified. buf may be NULL when
 * len is 0. */
int npy_parse_header(const void *buf, size_t len, npy_header *hdr, char *err);

/* npy_parse_header, then copy the data into a fresh buffer owned by out. */
int npy_load_buffer(const void *buf, size_t len, npy_array *out, char *err);

/* Read and validate a whole file. The message names the path. out is zeroed on failure. */
int npy_read_file(const char *path, npy_array *out, char *err);

/* Free what npy_read_file/npy_load_buffer allocated; zeroes the struct. NULL is fine. */
void npy_free(npy_array *a);

/* A file's array mapped read-only instead of read: data points into a private read-only mapping
 * of the whole file, so only the pages the caller touches are ever read from it (an MPI rank
 * that reads just its own vocabulary shard touches only that shard's pages). Non-regular files
 * (pipes, devices) and data not aligned to its element size are read into memory instead, as
 * npy_read_file does. Validation and messages are those of npy_read_file. If the file is cut
 * short while mapped, touching the lost pages raises SIGBUS (as for any mapping). */
typedef struct npy_mapped {
    npy_header hdr;
    const void *data; /* NULL only when hdr.nbytes is 0 */
    void *map;        /* the mapping (NULL when read into memory) */
    size_t map_len;
    npy_array copy;   /* the in-memory fallback */
} npy_mapped;

/* Map and validate a whole file. Returns 0, or -1 with a message naming the path in err; out is
 * zeroed on failure. */
int npy_map_file(const char *path, npy_mapped *out, char *err);
/* Release what npy_map_file set up; zeroes the struct. NULL is fine. */
void npy_unmap(npy_mapped *m);

/* Write a version 1.0 file (2.0 when the header does not fit in 64 KiB) of ndim dimensions in
 * C order. data holds the product of shape elements of dtype. Returns 0 or -1 with err. */
int npy_write_file(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, char *err);

/* Same, into a malloc'd buffer (*out_buf, *out_len) instead of a file; version forces the
 * format version (1, 2 or 3; 0 = the smallest that fits). Used by tests and the fuzz corpus. */
int npy_write_buffer(npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
                     int version, void **out_buf, size_t *out_len, char *err);

/* '<f4' etc. and the element size of a dtype. */
const char *npy_dtype_descr(npy_dtype dtype);
size_t npy_dtype_size(npy_dtype dtype);

/* IEEE half and bfloat16 bit patterns to float, exactly (every such value is a float). */
float npy_half_to_float(uint16_t h);
float npy_bf16_to_float(uint16_t b);
/* Round-to-nearest-even conversions the other way (tests write the same values in all three
 * dtypes; they choose values these represent exactly). NaN stays NaN. */
uint16_t npy_float_to_half(float f);
uint16_t npy_float_to_bf16(float f);

#endif
