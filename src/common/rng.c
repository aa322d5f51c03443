#include "common/ms_rng.h"

#include <math.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#include <Random123/philox.h>

double ms__uniform(uint64_t seed, uint64_t n, int32_t token)
{
    philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    philox4x32_ctr_t ctr = {{(uint32_t)n, (uint32_t)(n >> 32), (uint32_t)token, 0u}};
    philox4x32_ctr_t r = philox4x32(ctr, key);
    uint64_t bits = ((uint64_t)r.v[0] | ((uint64_t)r.v[1] << 32)) >> 11;
    /* +0.5 keeps u away from both 0 and 1, so -log(-log(u)) is always finite. */
    return ((double)bits + 0.5) * 0x1p-53;
}

double ms__gumbel(uint64_t seed, uint64_t n, int32_t token)
{
    return -log(-log(ms__uniform(seed, n, token)));
}

int64_t ms__entropy_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&v;
        v = ms__stream_key(v, 0);
    }
    return (int64_t)(v >> 1);
}

uint64_t ms__stream_key(uint64_t seed, uint64_t counter)
{
    uint64_t v = seed ^ (counter + 0x9E3779B97F4A7C15ull);
    v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9ull;
    v = (v ^ (v >> 27)) * 0x94D049BB133111EBull;
    return v ^ (v >> 31);
}
