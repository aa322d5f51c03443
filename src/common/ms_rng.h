/* Counter-based randomness (internal). The noise of a token depends only on (seed, draw
 * counter, global token id), which is what makes draws independent of mesh shape, thread
 * count, batch slot and batch mates. */
#ifndef MS_RNG_H
#define MS_RNG_H

#include <stdint.h>

/* u in the open interval (0, 1): Philox4x32-10 keyed by seed (two 32-bit words, low first)
 * with counter (n low, n high, token, 0); the first two output words give 53 bits,
 * u = (bits + 0.5) * 2^-53. */
double ms__uniform(uint64_t seed, uint64_t n, int32_t token);

/* Standard Gumbel noise g = -log(-log(u)) for the same triple; always finite, < 37.5. */
double ms__gumbel(uint64_t seed, uint64_t n, int32_t token);

/* A 63-bit seed from OS entropy (getrandom; falls back to time and address bits). */
int64_t ms__entropy_seed(void);

/* SplitMix64 finaliser: a well-mixed 64-bit key of (seed, counter), reported by
 * get_new_values so callers can log which stream a draw uses. */
uint64_t ms__stream_key(uint64_t seed, uint64_t counter);

#endif
