/* rng.h — a small deterministic RNG (splitmix64 seeding, xoshiro256**), so
 * that results depend on the seed alone, never on the platform's rand(). */
#ifndef RG_CORE_RNG_H
#define RG_CORE_RNG_H
#include <stddef.h>
#include <stdint.h>

typedef struct rg_rng { uint64_t s[4]; } rg_rng;

void rg_rng_seed(rg_rng *r, uint64_t seed);
uint64_t rg_rng_u64(rg_rng *r);
/* Uniform in [0, n) without modulo bias; n >= 1. */
uint64_t rg_rng_below(rg_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double rg_rng_uniform(rg_rng *r);
/* Standard normal (Box-Muller). */
double rg_rng_normal(rg_rng *r);
/* Fills x[0..n) with uniform values in [lo, hi). */
void rg_rng_fill_uniform(rg_rng *r, float *x, size_t n, float lo, float hi);

#endif
