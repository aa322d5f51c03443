#include <stdio.h>
#include <stdlib.h>

#include "common/ms_internal.h"

const char *ms_version_string(void)
{
    return "0.1.0";
}

const char *ms_status_name(ms_status s)
{
    switch (s) {
#define MS__NAME(name, value, msg)                                                               \
    case MS_##name: return "MS_" #name;
        MS_STATUS_MAP(MS__NAME)
#undef MS__NAME
    }
    return "MS_UNKNOWN";
}

const char *ms_status_message(ms_status s)
{
    switch (s) {
#define MS__MSG(name, value, msg)                                                                \
    case MS_##name: return msg;
        MS_STATUS_MAP(MS__MSG)
#undef MS__MSG
    }
    return "unknown status";
}

static void ms__vformat(char *dst, size_t cap, const char *fmt, va_list ap)
{
    int n = vsnprintf(dst, cap, fmt, ap);
    if (n < 0) dst[0] = '\0';
}

ms_status ms__err_set(ms__err *e, ms_status status, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        ms__vformat(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

ms_status ms__errbuf_set(ms_errbuf *e, ms_status status, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        ms__vformat(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

void *ms__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void ms__free(void *p)
{
    free(p);
}
