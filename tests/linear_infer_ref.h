/* linear_infer_ref.h — the double reference of the inference projection
 * (backend.h linear_infer) for test_linear_infer.c and test_cuda_linear_infer.c,
 * composed of ops_ref.h's plain loops, and the error measure both use. */
#ifndef RG_TEST_LINEAR_INFER_REF_H
#define RG_TEST_LINEAR_INFER_REF_H
#include "check.h"
#include "ops_ref.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static inline double *li_widen(const float *x, size_t n, int square) {
    if (!x) return NULL;
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) { printf("FATAL out of host memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) d[i] = square ? (double)x[i] * x[i] : x[i];
    return d;
}

/* want (T,OC) = act(LN(inp) @ w^T + b) + res in double (ln_w, ln_b, b, res may
 * be NULL; gelu 0 none, 1 erf, 2 tanh), and size (T,OC): the L2 norm of the
 * terms each output sums, sqrt(sum_c (x_c w_c)^2 + b^2) * 1.13 (GELU's
 * largest slope) and the residual, x the normalised input. Rounding errors of
 * such sums scale with it, and unlike |want| it does not vanish when the terms
 * cancel by chance (one output of T = OC = 1 relative to itself measures only
 * the cancellation). */
static inline void li_reference(float *want, float *size, const float *inp, const float *ln_w, const float *ln_b,
                                const float *w, const float *b, const float *res, float eps, int64_t T, int C,
                                int OC, int gelu) {
    size_t nx = (size_t)T * C, ny = (size_t)T * OC, nw = (size_t)OC * C;
    double *x = li_widen(inp, nx, 0), *dw = li_widen(w, nw, 0), *db = li_widen(b, OC, 0);
    double *y = malloc((ny ? ny : 1) * sizeof *y);
    if (!y) { printf("FATAL out of host memory\n"); exit(1); }
    if (ln_w) {
        double *lw = li_widen(ln_w, C, 0), *lb = li_widen(ln_b, C, 0), *xn = li_widen(inp, nx, 0);
        ref_layernorm_forward(xn, NULL, NULL, x, lw, lb, eps, T, C);
        free(x); free(lw); free(lb);
        x = xn;
    }
    ref_matmul_forward(y, NULL, x, dw, db, T, C, OC, gelu);
    for (size_t i = 0; i < ny; i++) want[i] = (float)(y[i] + (res ? res[i] : 0.0));
    for (size_t i = 0; i < nx; i++) x[i] *= x[i];
    for (size_t i = 0; i < nw; i++) dw[i] *= dw[i];
    for (int i = 0; db && i < OC; i++) db[i] *= db[i];
    ref_matmul_forward(y, NULL, x, dw, db, T, C, OC, 0);
    for (size_t i = 0; i < ny; i++) {
        double r = res ? res[i] : 0.0;
        size[i] = (float)sqrt(1.13 * 1.13 * y[i] + r * r);
    }
    free(x); free(dw); free(db); free(y);
}

/* ||got - want|| / ||size|| in double. */
static inline double li_err(const float *got, const float *want, const float *size, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)size[i] * size[i];
    }
    return sqrt(num / (den > 1e-300 ? den : 1e-300));
}

/* The check: error within tol and no NaN (NaN fails the comparison). */
static inline bool li_close(const char *what, const float *got, const float *want, const float *size, size_t n,
                            double tol) {
    double e = li_err(got, want, size, n);
    if (getenv("RG_TEST_VERBOSE")) printf("  %-90s err %.3g (threshold %.3g)\n", what, e, tol);
    return CHECK(e <= tol, "%s: error %.3g > %.3g (||got - want|| / ||terms||)", what, e, tol);
}
#endif
