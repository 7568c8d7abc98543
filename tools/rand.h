/* rand.h — the tools' deterministic random numbers (splitmix64): benchmark
 * inputs and generated lengths depend on --seed alone, never on the platform. */
#ifndef RG_TOOLS_RAND_H
#define RG_TOOLS_RAND_H
#include <stdint.h>

static inline uint64_t tool_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1 (rejection sampling: no modulo bias). */
static inline uint64_t tool_rand_below(uint64_t *state, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = tool_rand_u64(state); while (x >= limit);
    return x % n;
}

/* Uniform in [-1, 1): 24 random bits, so every value is exact in float. */
static inline float tool_rand_sym(uint64_t *state) {
    return (float)(tool_rand_u64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

#endif
