/* check.c — the tests' small harness (see check.h). */
#include "check.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int rg_test_failed, rg_test_passed;
static uint64_t test_seed;
static const char *test_name = "test";
static const float sentinel = 1234567.0f;

uint64_t rg_test_init(const char *name, rg_rng *rng) {
    const char *env = getenv("RG_TEST_SEED");
    test_name = name;
    test_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    printf("%s: seed %llu (rerun with RG_TEST_SEED=%llu)\n", name, (unsigned long long)test_seed,
           (unsigned long long)test_seed);
    if (rng) rg_rng_seed(rng, test_seed);
    return test_seed;
}

bool rg_test_quick(void) {
    const char *e = getenv("RG_TEST_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

int rg_test_finish(void) {
    if (rg_test_failed)
        printf("%s: FAILED with seed %llu (RG_TEST_SEED=%llu reproduces)\n", test_name,
               (unsigned long long)test_seed, (unsigned long long)test_seed);
    printf("%d passed, %d failed\n", rg_test_passed, rg_test_failed);
    return rg_test_failed ? 1 : 0;
}

bool rg_check_(bool ok, const char *file, int line, const char *fmt, ...) {
    if (ok) { rg_test_passed++; return true; }
    rg_test_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    return false;
}

double rg_rel_err(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    if (den < 1e-300) return sqrt(num);
    return sqrt(num / den);
}

bool rg_check_close_(const char *what, const float *got, const float *ref, size_t n, double tol,
                     const char *file, int line) {
    for (size_t i = 0; i < n; i++)
        if (isnan(got[i]) != isnan(ref[i]))
            return rg_check_(false, file, line, "%s: NaN mismatch at index %zu (got %g, ref %g)", what, i,
                             got[i], ref[i]);
    double e = rg_rel_err(got, ref, n);
    /* RG_TEST_VERBOSE: every comparison's margin (recorded in the benchmark notes) */
    if (getenv("RG_TEST_VERBOSE")) printf("  %-88s rel err %.3g (threshold %.3g)\n", what, e, tol);
    if (e <= tol) return rg_check_(true, file, line, "");
    size_t worst = 0;
    double wd = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > wd) { wd = d; worst = i; }
    }
    return rg_check_(false, file, line, "%s: rel err %.3g > %.3g (worst index %zu: got %.8g, ref %.8g)",
                     what, e, tol, worst, n ? got[worst] : 0.0f, n ? ref[worst] : 0.0f);
}

float *rg_guarded_alloc(size_t n) {
    float *p = malloc((n + 2 * RG_GUARD) * sizeof(float));
    if (!p) { fprintf(stderr, "out of memory in test\n"); exit(2); }
    for (size_t i = 0; i < n + 2 * RG_GUARD; i++) p[i] = sentinel;
    return p + RG_GUARD;
}

bool rg_guarded_ok(const float *p, size_t n, const char *what) {
    for (size_t i = 1; i <= RG_GUARD; i++) {
        if (p[-(ptrdiff_t)i] != sentinel)
            return CHECK(false, "%s: write %zu elements before the buffer", what, i);
        if (p[n + i - 1] != sentinel)
            return CHECK(false, "%s: write at element %zu past the end", what, i - 1);
    }
    return CHECK(true, "");
}

void rg_guarded_free(float *p) { if (p) free(p - RG_GUARD); }

void rg_test_must(rg_status s, const char *what) {
    if (s != RG_OK) {
        printf("FATAL %s: %s (%s)\n", what, rg_status_str(s), rg_last_error());
        exit(1);
    }
}

void *rg_test_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { printf("FATAL out of host memory\n"); exit(1); }
    return p;
}
