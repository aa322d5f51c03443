/* Internal helpers shared by every module (not API). */
#ifndef MS_INTERNAL_H
#define MS_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "meshsample.h"

#define MS_ERRMSG_LEN 512

/* A message slot owned by a handle (sqlite3_errmsg style). */
typedef struct ms__err {
    char msg[MS_ERRMSG_LEN];
} ms__err;

/* Record status and a printf-style message into e (may be NULL); returns status. */
ms_status ms__err_set(ms__err *e, ms_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, into a caller's ms_errbuf (may be NULL). */
ms_status ms__errbuf_set(ms_errbuf *e, ms_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* zstd-style propagation. */
#define MS_RETURN_ERROR_IF(cond, err, status, ...)                                               \
    do {                                                                                          \
        if (cond) return ms__err_set((err), (status), __VA_ARGS__);                               \
    } while (0)
#define MS_FORWARD_IF_ERROR(expr)                                                                 \
    do {                                                                                          \
        ms_status ms__s = (expr);                                                                 \
        if (ms__s != MS_OK) return ms__s;                                                         \
    } while (0)

/* TT's _utils.clamp: NaN passes through unchanged (both comparisons false). */
static inline float ms__clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* 64-byte aligned allocation, zeroed; free with ms__free. NULL on overflow or failure. */
void *ms__calloc(size_t n, size_t size);
void ms__free(void *p);

/* Exact widening conversions of the 16-bit formats. */
static inline float ms__bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float ms__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline size_t ms__dtype_size(ms_dtype t)
{
    return t == MS_DTYPE_F32 ? 4 : 2;
}

/* Element i of a row of dtype t, as float; NaN becomes -inf (DESIGN 2). */
static inline float ms__load(const void *row, ms_dtype t, int64_t i)
{
    float v;
    switch (t) {
    case MS_DTYPE_F32: v = ((const float *)row)[i]; break;
    case MS_DTYPE_BF16: v = ms__bf16_to_f32(((const uint16_t *)row)[i]); break;
    default: v = ms__f16_to_f32(((const uint16_t *)row)[i]); break;
    }
    return v != v ? -INFINITY : v;
}

#endif
