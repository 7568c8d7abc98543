/* check.h — the tests' small harness: checks that count, a per-run seed that is
 * printed on failure (RG_TEST_SEED=N reproduces a run), error norms against a
 * reference, and sentinel-guarded buffers that catch out-of-bounds writes.
 * RG_TEST_QUICK=1 (set by the sanitizer run) asks tests for smaller sizes. */
#ifndef RG_TEST_CHECK_H
#define RG_TEST_CHECK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/rng.h"
#include "ragged.h"

extern int rg_test_failed, rg_test_passed;

/* Seeds rng from RG_TEST_SEED or the clock and prints the seed. */
uint64_t rg_test_init(const char *name, rg_rng *rng);
/* Prints "N passed, N failed" and returns the exit code (0 or 1). */
int rg_test_finish(void);
/* True when RG_TEST_QUICK is set. */
bool rg_test_quick(void);

bool rg_check_(bool ok, const char *file, int line, const char *fmt, ...);
#define CHECK(cond, ...) rg_check_((cond), __FILE__, __LINE__, __VA_ARGS__)

/* ||got - ref|| / max(||ref||, tiny), computed in double. */
double rg_rel_err(const float *got, const float *ref, size_t n);
/* Checks rel_err <= tol and that got has no NaN; names the tensor on failure. */
bool rg_check_close_(const char *what, const float *got, const float *ref, size_t n, double tol,
                     const char *file, int line);
#define CHECK_CLOSE(what, got, ref, n, tol) rg_check_close_((what), (got), (ref), (n), (tol), __FILE__, __LINE__)

/* Test set-up that cannot go on: an rg_status other than RG_OK (with
 * rg_last_error) or a host allocation that fails prints FATAL and exits 1. */
void rg_test_must(rg_status s, const char *what);
void *rg_test_xmalloc(size_t bytes);

/* A float buffer of n elements with RG_GUARD sentinels on each side. */
#define RG_GUARD 16
float *rg_guarded_alloc(size_t n);
bool rg_guarded_ok(const float *p, size_t n, const char *what);   /* sentinels intact? */
void rg_guarded_free(float *p);

#endif
