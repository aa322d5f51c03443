/*
 * .npy reader and writer. The format: the magic "\x93NUMPY", a major and minor version byte,
 * a little-endian header length (2 bytes in 1.0, 4 bytes in 2.0 and 3.0), then that many bytes
 * of a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (8, 1000), }
 * padded with spaces and a newline, then the raw data. The dict is parsed by hand here: it is
 * a tiny, fixed grammar, and evaluating anything more general would be a hazard on untrusted
 * input.
 */
#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host ('<' and '=' are then the same byte order)"
#endif

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* printf into err when the caller gave one; always returns -1 so callers can
 * `return fail(err, ...)`. */
static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, NPY_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *npy_dtype_descr(npy_dtype dtype)
{
    switch (dtype) {
    case NPY_F32: return "<f4";
    case NPY_F16: return "<f2";
    case NPY_U16: return "<u2";
    case NPY_I32: return "<i4";
    case NPY_I64: return "<i8";
    }
    return "?";
}

size_t npy_dtype_size(npy_dtype dtype)
{
    switch (dtype) {
    case NPY_F32: return 4;
    case NPY_F16: return 2;
    case NPY_U16: return 2;
    case NPY_I32: return 4;
    case NPY_I64: return 8;
    }
    return 0;
}

/* ---- header dict parsing ------------------------------------------------------------------ */

/* A cursor over the header text [p, end). */
typedef struct cursor {
    const char *p;
    const char *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Consume ch after optional whitespace; false (cursor after the whitespace) otherwise. */
static bool accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes (numpy never writes any): sets [*s, *s + *n). */
static int parse_string(cursor *c, const char **s, size_t *n, char *err)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return fail(err, "expected a quoted string in the header");
    const char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\0' || *c->p == '\n')
            return fail(err, "unsupported character in a header string");
        c->p++;
    }
    if (c->p >= c->end)
        return fail(err, "unterminated string in the header");
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 0;
}

static bool span_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int parse_descr(cursor *c, npy_header *h, char *err)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == '[')
        return fail(err, "structured dtypes are not supported");
    const char *s;
    size_t n;
    if (parse_string(c, &s, &n, err))
        return -1;
    /* Show at most 16 characters of an unexpected descr. */
    const int shown = n > 16 ? 16 : (int)n;
    if (n != 3)
        return fail(err, "unsupported dtype '%.*s'", shown, s);
    if (s[0] == '>')
        return fail(err, "big-endian data ('%.*s') is not supported", shown, s);
    /* All our types are multi-byte, so '|' (byte order not applicable) cannot describe them;
     * '=' is native order, which is little-endian on every host this builds on. */
    if (s[0] != '<' && s[0] != '=')
        return fail(err, "unsupported dtype '%.*s'", shown, s);
    static const struct {
        const char *code;
        npy_dtype dtype;
    } types[] = {{"f4", NPY_F32}, {"f2", NPY_F16}, {"u2", NPY_U16}, {"i4", NPY_I32}, {"i8", NPY_I64}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (s[1] == types[i].code[0] && s[2] == types[i].code[1]) {
            h->dtype = types[i].dtype;
            h->itemsize = npy_dtype_size(types[i].dtype);
            return 0;
        }
    }
    return fail(err, "unsupported dtype '%.*s' (expected <f4, <f2, <u2, <i4 or <i8)", shown, s);
}

static int parse_bool(cursor *c, bool *out, char *err)
{
    skip_ws(c);
    const size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *out = true;
        return 0;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *out = false;
        return 0;
    }
    return fail(err, "'fortran_order' must be True or False");
}

/* A non-negative decimal integer (Python 2 files may carry an 'L' suffix). */
static int parse_dim(cursor *c, int64_t *out, char *err)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return fail(err, "malformed 'shape' in the header");
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        const int d = *c->p - '0';
        if (v > (INT64_MAX - d) / 10)
            return fail(err, "'shape' dimension too large");
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *out = v;
    return 0;
}

/* A tuple of dimensions: (), (3,), (3, 4), with an optional trailing comma. */
static int parse_shape(cursor *c, npy_header *h, char *err)
{
    if (!accept(c, '('))
        return fail(err, "'shape' must be a tuple");
    h->ndim = 0;
    if (accept(c, ')'))
        return 0;
    for (;;) {
        if (h->ndim == NPY_MAX_DIMS)
            return fail(err, "'shape' has more than %d dimensions", NPY_MAX_DIMS);
        if (parse_dim(c, &h->shape[h->ndim], err))
            return -1;
        h->ndim++;
        if (accept(c, ')'))
            return 0;
        if (!accept(c, ','))
            return fail(err, "malformed 'shape' in the header");
        if (accept(c, ')'))
            return 0;
    }
}

static int parse_dict(const char *text, size_t n, npy_header *h, char *err)
{
    cursor c = {text, text + n};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    if (!accept(&c, '{'))
        return fail(err, "header is not a dict");
    for (;;) {
        if (accept(&c, '}'))
            break;
        const char *key;
        size_t klen;
        if (parse_string(&c, &key, &klen, err))
            return -1;
        if (!accept(&c, ':'))
            return fail(err, "expected ':' after a header key");
        bool *seen;
        int rc;
        if (span_is(key, klen, "descr")) {
            seen = &have_descr;
            rc = parse_descr(&c, h, err);
        } else if (span_is(key, klen, "fortran_order")) {
            seen = &have_order;
            rc = parse_bool(&c, &fortran, err);
        } else if (span_is(key, klen, "shape")) {
            seen = &have_shape;
            rc = parse_shape(&c, h, err);
        } else {
            return fail(err, "unexpected key '%.*s' in the header", klen > 32 ? 32 : (int)klen, key);
        }
        if (rc)
            return -1;
        if (*seen)
            return fail(err, "duplicate key '%.*s' in the header", (int)klen, key);
        *seen = true;
        if (accept(&c, '}'))
            break;
        if (!accept(&c, ','))
            return fail(err, "expected ',' or '}' in the header");
    }
    skip_ws(&c);
    if (c.p != c.end)
        return fail(err, "unexpected bytes after the header dict");
    if (!have_descr || !have_order || !have_shape)
        return fail(err, "header lacks '%s'", !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    if (fortran)
        return fail(err, "Fortran-order arrays are not supported (save with C order)");
    return 0;
}

static uint32_t load_le(const unsigned char *p, int bytes)
{
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Parse the header at the start of the len bytes at b, which may be only a prefix of a file.
 * Returns 0 with every field of hdr set (the data is not looked at), 1 when the prefix is too
 * short to tell (err says what is missing, as for a truncated file), -1 when invalid. */
static int parse_head(const unsigned char *b, size_t len, npy_header *hdr, char *err)
{
    memset(hdr, 0, sizeof *hdr);
    const size_t seen = len < sizeof npy_magic ? len : sizeof npy_magic;
    if (seen && memcmp(b, npy_magic, seen) != 0)
        return fail(err, "not a .npy file (bad magic)");
    if (len < 10) {
        fail(err, "not a .npy file (bad magic)");
        return 1;
    }
    const int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return fail(err, "unsupported .npy version %d.%d", major, minor);
    const size_t lenbytes = major == 1 ? 2 : 4;
    const size_t start = 8 + lenbytes;
    if (len < start) {
        fail(err, "truncated .npy header");
        return 1;
    }
    const size_t hlen = load_le(b + 8, (int)lenbytes);
    if (hlen > len - start) {
        fail(err, "truncated .npy header (declares %zu bytes, %zu present)", hlen, len - start);
        return 1;
    }
    if (parse_dict((const char *)b + start, hlen, hdr, err))
        return -1;

    size_t count = 1;
    for (int i = 0; i < hdr->ndim; i++) {
        const int64_t d = hdr->shape[i];
        /* Multiply in size_t; any product that overflows it cannot be stored anyway. */
        if (d != 0 && count > SIZE_MAX / (uint64_t)d)
            return fail(err, "shape too large");
        count *= (size_t)d;
    }
    hdr->data_offset = start + hlen;
    if (count > (SIZE_MAX - hdr->data_offset) / hdr->itemsize)
        return fail(err, "shape too large");
    hdr->count = count;
    hdr->nbytes = count * hdr->itemsize;
    return 0;
}

int npy_parse_header(const void *buf, size_t len, npy_header *hdr, char *err)
{
    const int r = parse_head(buf, len, hdr, err);
    if (r)
        return -1; /* err already says "bad magic" or "truncated ..." */
    const size_t have = len - hdr->data_offset;
    if (have < hdr->nbytes)
        return fail(err, "truncated data (shape needs %zu bytes, file has %zu)", hdr->nbytes, have);
    if (have > hdr->nbytes)
        return fail(err, "%zu unexpected bytes after the data", have - hdr->nbytes);
    return 0;
}

int npy_load_buffer(const void *buf, size_t len, npy_array *out, char *err)
{
    memset(out, 0, sizeof *out);
    npy_header h;
    if (npy_parse_header(buf, len, &h, err))
        return -1;
    void *data = NULL;
    if (h.nbytes) {
        data = malloc(h.nbytes);
        if (!data)
            return fail(err, "out of memory (%zu bytes)", h.nbytes);
        memcpy(data, (const unsigned char *)buf + h.data_offset, h.nbytes);
    }
    out->hdr = h;
    out->data = data;
    return 0;
}

void npy_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Read f: by its size when it is a regular file, else by growing a buffer (pipes). Reading
 * stops early once the bytes so far cannot start a .npy file, or one byte past the size its
 * header declares (enough to report trailing data), so a stream such as /dev/zero or an
 * endless pipe cannot exhaust memory. */
static int slurp(FILE *f, const char *path, unsigned char **out, size_t *out_len, char *err)
{
    struct stat st;
    size_t cap = 1 << 16;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return fail(err, "%s: is a directory", path);
        if (S_ISREG(st.st_mode) && st.st_size >= 0 && (uint64_t)st.st_size < SIZE_MAX - 1)
            cap = (size_t)st.st_size + 1; /* +1 so EOF is seen without growing */
    }
    unsigned char *buf = malloc(cap);
    if (!buf)
        return fail(err, "%s: out of memory", path);
    size_t len = 0, total = 0;
    bool known = false;
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                free(buf);
                return fail(err, "%s: file too large", path);
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return fail(err, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        const size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                return fail(err, "%s: read error", path);
            }
            break;
        }
        if (!known) {
            npy_header h;
            const int r = parse_head(buf, len, &h, NULL);
            if (r < 0)
                break; /* the parser will say why */
            if (r == 0) {
                known = true;
                total = h.data_offset + h.nbytes; /* parse_head ruled out overflow */
            }
        }
        if (known && len > total)
            break;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int npy_read_file(const char *path, npy_array *out, char *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, "%s: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t len = 0;
    const int rc = slurp(f, path, &buf, &len, err);
    fclose(f);
    if (rc)
        return -1;
    npy_header h;
    char msg[NPY_ERR_LEN];
    if (npy_parse_header(buf, len, &h, msg)) {
        free(buf);
        return fail(err, "%s: %s", path, msg);
    }
    /* Move the data to the front of the buffer: malloc's alignment then holds for it, and the
     * file is held in memory once, not twice. */
    memmove(buf, buf + h.data_offset, h.nbytes);
    out->hdr = h;
    out->data = buf;
    if (h.nbytes == 0) {
        free(buf);
        out->data = NULL;
    }
    return 0;
}

int npy_map_file(const char *path, npy_mapped *out, char *err)
{
    memset(out, 0, sizeof *out);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        close(fd);
        return fail(err, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(err, "%s: is a directory", path);
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
        /* Streams and devices cannot be mapped (an empty file cannot either); read them, which
         * also bounds what an endless stream costs. */
        close(fd);
        goto read_instead;
    }
    const size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        goto read_instead;
    npy_header h;
    char msg[NPY_ERR_LEN];
    /* Only the header's pages are read here: the data is checked by its length alone. */
    if (npy_parse_header(map, len, &h, msg)) {
        munmap(map, len);
        return fail(err, "%s: %s", path, msg);
    }
    const unsigned char *data = (const unsigned char *)map + h.data_offset;
    if (h.nbytes && (uintptr_t)data % h.itemsize != 0) {
        /* NumPy pads headers to 64 bytes, so this is a hand-made file; an unaligned element
         * pointer is not valid C, so the data is read into aligned memory after all. */
        munmap(map, len);
        goto read_instead;
    }
    out->hdr = h;
    out->data = h.nbytes ? data : NULL;
    out->map = map;
    out->map_len = len;
    return 0;

read_instead:
    if (npy_read_file(path, &out->copy, err))
        return -1;
    out->hdr = out->copy.hdr;
    out->data = out->copy.data;
    return 0;
}

void npy_unmap(npy_mapped *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->map_len);
    npy_free(&m->copy);
    memset(m, 0, sizeof *m);
}

/* ---- writer ------------------------------------------------------------------------------- */

int npy_write_buffer(npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
                     int version, void **out_buf, size_t *out_len, char *err)
{
    *out_buf = NULL;
    *out_len = 0;
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return fail(err, "bad ndim %d", ndim);
    const size_t itemsize = npy_dtype_size(dtype);
    if (!itemsize)
        return fail(err, "bad dtype");
    char dict[64 + NPY_MAX_DIMS * 24];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     npy_dtype_descr(dtype));
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return fail(err, "negative dimension");
        if (shape[i] != 0 && count > SIZE_MAX / itemsize / (uint64_t)shape[i])
            return fail(err, "shape too large");
        count *= (size_t)shape[i];
        n += snprintf(dict + n, sizeof dict - (size_t)n, i ? " %lld," : "%lld,", (long long)shape[i]);
    }
    /* numpy writes (3,) for one dimension and (3, 4) for more: drop the last comma then. */
    if (ndim > 1)
        n--;
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    const size_t nbytes = count * itemsize;

    /* numpy pads magic + length + dict + '\n' to a multiple of 64 so the data is aligned. */
    if (version == 0)
        version = (size_t)n + 1 + 10 <= 65535 ? 1 : 2;
    if (version < 1 || version > 3)
        return fail(err, "bad version %d", version);
    const size_t prefix = version == 1 ? 10 : 12;
    size_t total_hdr = prefix + (size_t)n + 1;
    total_hdr = (total_hdr + 63) / 64 * 64;
    const size_t hlen = total_hdr - prefix;
    if (version == 1 && hlen > 65535)
        return fail(err, "header too long for version 1.0");
    if (nbytes > SIZE_MAX - total_hdr)
        return fail(err, "shape too large");
    unsigned char *buf = malloc(total_hdr + nbytes);
    if (!buf)
        return fail(err, "out of memory");
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = (unsigned char)version;
    buf[7] = 0;
    for (size_t i = 0; i < prefix - 8; i++)
        buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + prefix, dict, (size_t)n);
    memset(buf + prefix + n, ' ', hlen - (size_t)n - 1);
    buf[total_hdr - 1] = '\n';
    if (nbytes)
        memcpy(buf + total_hdr, data, nbytes);
    *out_buf = buf;
    *out_len = total_hdr + nbytes;
    return 0;
}

int npy_write_file(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, char *err)
{
    void *buf;
    size_t len;
    if (npy_write_buffer(dtype, ndim, shape, data, 0, &buf, &len, err))
        return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return fail(err, "%s: %s", path, strerror(errno));
    }
    const bool ok = fwrite(buf, 1, len, f) == len;
    free(buf);
    if (fclose(f) != 0 || !ok)
        return fail(err, "%s: write error", path);
    return 0;
}

/* ---- half-precision conversions ----------------------------------------------------------- */

static float bits_to_float(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static uint32_t float_to_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

float npy_half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in float. */
        const float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_to_float(sign | 0x7f800000u | (mant << 13));
    return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

float npy_bf16_to_float(uint16_t b)
{
    return bits_to_float((uint32_t)b << 16);
}

uint16_t npy_float_to_half(float f)
{
    const uint32_t x = float_to_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return sign | 0x7c00;
    if (ax < 0x38800000u) {
        /* Below the smallest normal half (2^-14): a subnormal in units of 2^-24. */
        if (ax <= 0x33000000u) /* <= 2^-25 rounds (to even) to zero */
            return sign;
        const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = (ax >> 13) - ((127u - 15u) << 10);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
        r++; /* a carry into the exponent is the right rounding, up to infinity */
    return sign | (uint16_t)r;
}

uint16_t npy_float_to_bf16(float f)
{
    uint32_t x = float_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* keep NaN a (quiet) NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
