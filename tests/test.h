/*
 * Test assertions that print both operands (libuv's test/task.h style), on top of cmocka.
 *
 * cmocka 1.1's assert_int_equal prints hexadecimal and assert_float_equal prints "%f"; these
 * print decimal integers, floats with 9 significant digits, statuses by name with the handle's
 * message, and the expression text of both sides. Include after <cmocka.h>.
 */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshsample.h"

#define ASSERT_INT_EQ(a, b)                                                                     \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                     \
        if (a_ != b_) {                                                                         \
            print_error("%s:%d: ASSERT_INT_EQ(%s, %s): %lld != %lld\n", __FILE__, __LINE__, #a, \
                        #b, a_, b_);                                                            \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_INT_NE(a, b)                                                                     \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                     \
        if (a_ == b_) {                                                                         \
            print_error("%s:%d: ASSERT_INT_NE(%s, %s): both %lld\n", __FILE__, __LINE__, #a, #b, \
                        a_);                                                                    \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_U64_EQ(a, b)                                                                     \
    do {                                                                                        \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);          \
        if (a_ != b_) {                                                                         \
            print_error("%s:%d: ASSERT_U64_EQ(%s, %s): %llu != %llu\n", __FILE__, __LINE__, #a, \
                        #b, a_, b_);                                                            \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_U64_NE(a, b)                                                                     \
    do {                                                                                        \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);          \
        if (a_ == b_) {                                                                         \
            print_error("%s:%d: ASSERT_U64_NE(%s, %s): both %llu\n", __FILE__, __LINE__, #a,    \
                        #b, a_);                                                                \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Binary operator comparisons on integers: ASSERT_INT_OP(a, <, b). */
#define ASSERT_INT_OP(a, op, b)                                                                 \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                     \
        if (!(a_ op b_)) {                                                                      \
            print_error("%s:%d: ASSERT(%s %s %s): %lld %s %lld is false\n", __FILE__, __LINE__, \
                        #a, #op, #b, a_, #op, b_);                                              \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Exact float equality (NaN equals NaN here, +0 equals -0). */
#define ASSERT_FLT_EQ(a, b)                                                                     \
    do {                                                                                        \
        double a_ = (double)(a), b_ = (double)(b);                                              \
        if (!(a_ == b_ || (isnan(a_) && isnan(b_)))) {                                          \
            print_error("%s:%d: ASSERT_FLT_EQ(%s, %s): %.9g != %.9g\n", __FILE__, __LINE__, #a, \
                        #b, a_, b_);                                                            \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_TRUE(c)                                                                          \
    do {                                                                                        \
        if (!(c)) {                                                                             \
            print_error("%s:%d: ASSERT_TRUE(%s) failed\n", __FILE__, __LINE__, #c);             \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

static inline const char *ms_test_str(const char *s) { return s ? s : "(null)"; }

/* Status check printing both names and a detail message (may be NULL). */
#define ASSERT_STATUS_MSG(expected, got, detail)                                                \
    do {                                                                                        \
        ms_status e_ = (expected), g_ = (got);                                                  \
        if (e_ != g_) {                                                                         \
            print_error("%s:%d: %s: expected %s, got %s (message: \"%s\")\n", __FILE__,         \
                        __LINE__, #got, ms_status_name(e_), ms_status_name(g_),                 \
                        ms_test_str(detail));                                                   \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* Status check on a generator call: the message printed is the generator's. */
#define ASSERT_STATUS(expected, g, call) ASSERT_STATUS_MSG(expected, call, ms_generator_last_error(g))
#define ASSERT_OK(g, call) ASSERT_STATUS(MS_OK, g, call)

/* The status is one of two. */
#define ASSERT_STATUS2(e1, e2, got, detail)                                                     \
    do {                                                                                        \
        ms_status g_ = (got);                                                                   \
        if (g_ != (e1) && g_ != (e2)) {                                                         \
            print_error("%s:%d: %s: expected %s or %s, got %s (message: \"%s\")\n", __FILE__,   \
                        __LINE__, #got, ms_status_name(e1), ms_status_name(e2),                 \
                        ms_status_name(g_), ms_test_str(detail));                               \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                     \
    do {                                                                                        \
        const char *a_ = (a), *b_ = (b);                                                        \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                \
            print_error("%s:%d: ASSERT_STR_EQ(%s, %s): \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                        #a, #b, ms_test_str(a_), ms_test_str(b_));                              \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                                        \
    do {                                                                                        \
        const char *h_ = (hay), *n_ = (needle);                                                 \
        if (!h_ || !strstr(h_, n_)) {                                                           \
            print_error("%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,          \
                        ms_test_str(h_), n_);                                                   \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* True when the decimal integer v occurs in s as a whole number (not inside a longer digit run
 * nor as the integral part of a decimal like "5.5"). */
static inline int ms_test_has_number(const char *s, long long v)
{
    char want[32];
    snprintf(want, sizeof want, "%lld", v < 0 ? -v : v);
    size_t n = strlen(want);
    if (!s)
        return 0;
    for (const char *p = strstr(s, want); p; p = strstr(p + 1, want)) {
        int before_ok = (p == s) || !isdigit((unsigned char)p[-1]);
        int after_ok = !isdigit((unsigned char)p[n]) &&
                       !(p[n] == '.' && isdigit((unsigned char)p[n + 1]));
        if (before_ok && after_ok && (v >= 0 || (p > s && p[-1] == '-')))
            return 1;
    }
    return 0;
}

#define ASSERT_MSG_HAS_NUMBER(msg, v)                                                           \
    do {                                                                                        \
        const char *m_ = (msg);                                                                 \
        if (!ms_test_has_number(m_, (long long)(v))) {                                          \
            print_error("%s:%d: message \"%s\" does not name %s = %lld\n", __FILE__, __LINE__,  \
                        ms_test_str(m_), #v, (long long)(v));                                   \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#define ASSERT_MSG_NONEMPTY(msg)                                                                \
    do {                                                                                        \
        const char *m_ = (msg);                                                                 \
        if (!m_ || !m_[0]) {                                                                    \
            print_error("%s:%d: message %s is empty\n", __FILE__, __LINE__, #msg);              \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

#endif /* MS_TEST_H */
