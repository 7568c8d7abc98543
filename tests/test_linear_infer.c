/* test_linear_infer.c — the CPU backend's inference projection (linear_infer:
 * out = act(LN(inp) @ weight^T + bias) + residual) against a double-precision
 * composition of the plain references in ops_ref.h, on fresh random inputs:
 * T in {1, 2, 7, 16, 17, 64}, C in {8, 24, 768}, OC in {1, 7, 37, 50257/7},
 * every combination of LN (none, weight, weight + bias), GELU (none, erf,
 * tanh), bias and residual, out aliasing the residual, sentinels around every
 * output. The error is ||got - want|| over the L2 size of the terms summed
 * (linear_infer_ref.h: robust where they cancel by chance). The CPU runs in fp32 with fp32 sums
 * (BLAS): 3e-6 is ten times the largest error seen (3e-7) and far below
 * any real mistake (a wrong bias or a missed residual is O(1)). */
#include "backend.h"
#include "check.h"
#include "linear_infer_ref.h"
#include "core/status.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 3e-6
#define EPS 1e-5f

static rg_backend *be;
static rg_rng rng;

static void fill(float *x, size_t n, double mean, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + rg_rng_normal(&rng) * scale);
}

/* ln: 0 none, 1 weight only, 2 weight and bias. alias: out is the residual's buffer. */
static void test_case(int64_t T, int C, int OC, int ln, int gelu, bool bias, bool resid, bool alias) {
    char tag[160];
    snprintf(tag, sizeof tag, "cpu linear_infer T=%lld C=%d OC=%d ln=%d gelu=%d bias=%d residual=%d alias=%d",
             (long long)T, C, OC, ln, gelu, bias, resid, alias);
    size_t nx = (size_t)T * C, ny = (size_t)T * OC;
    float *inp = rg_guarded_alloc(nx), *w = rg_guarded_alloc((size_t)OC * C);
    float *lw = ln ? rg_guarded_alloc(C) : NULL, *lb = ln == 2 ? rg_guarded_alloc(C) : NULL;
    float *b = bias ? rg_guarded_alloc(OC) : NULL, *res = resid ? rg_guarded_alloc(ny) : NULL;
    float *out = alias ? res : rg_guarded_alloc(ny), *want = rg_test_xmalloc(ny * sizeof *want), *mag = rg_test_xmalloc(ny * 4);
    /* an offset on the input rows, so that the LN's centring matters */
    fill(inp, nx, ln ? 3.0 : 0.0, 1.0);
    fill(w, (size_t)OC * C, 0.0, 1.0 / sqrt((double)C));
    if (lw) fill(lw, C, 1.0, 0.2);
    if (lb) fill(lb, C, 0.0, 0.2);
    if (b) fill(b, OC, 0.0, 0.5);
    if (res) fill(res, ny, 0.0, 1.0);
    li_reference(want, mag, inp, lw, lb, w, b, res, EPS, T, C, OC, gelu);
    if (!alias) fill(out, ny, 0.0, 1.0); /* stale values must be overwritten */
    rg_status s = be->ops->linear_infer(be, out, inp, lw, lb, EPS, w, b, res, T, C, OC, gelu);
    CHECK(s == RG_OK, "%s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    li_close(tag, out, want, mag, ny, TOL);
    CHECK(rg_guarded_ok(out, ny, tag), "%s: sentinels of out", tag);
    CHECK(rg_guarded_ok(inp, nx, tag), "%s: sentinels of inp", tag);
    rg_guarded_free(inp); rg_guarded_free(w); rg_guarded_free(lw); rg_guarded_free(lb); rg_guarded_free(b);
    rg_guarded_free(res);
    if (!alias) rg_guarded_free(out);
    free(want);
    free(mag);
}

int main(void) {
    rg_test_init("test_linear_infer", &rng);
    rg_test_must(rg_backend_init(RG_BACKEND_CPU, 0, &be), "cpu backend");
    CHECK(be->ops->linear_infer != NULL, "cpu backend has linear_infer");
    const bool quick = rg_test_quick();
    const int64_t Ts[] = {1, 2, 7, 16, 17, 64};
    const int Cs[] = {8, 24, 768}, OCs[] = {1, 7, 37, 50257 / 7};
    int variant = 0;
    for (int it = 0; it < 6; it++)
        for (int ic = 0; ic < 3; ic++)
            for (int io = 0; io < 4; io++) {
                int64_t T = Ts[it];
                int C = Cs[ic], OC = OCs[io];
                bool big = (int64_t)T * C * OC > 200000;
                if (quick && (int64_t)T * C * OC > 4000000) continue;
                /* every flag combination on the small shapes, a rotating few on the large ones */
                for (int f = 0; f < 36; f++) {
                    if (big && (f + variant) % 18 != 0) continue;
                    int ln = f % 3, gelu = (f / 3) % 3, bias = (f / 9) % 2, resid = f / 18;
                    test_case(T, C, OC, ln, gelu, bias, resid, false);
                    if (resid) test_case(T, C, OC, ln, gelu, bias, true, true);
                }
                variant++;
            }
    /* GPT-2's decode shapes, one of each kind (qkv with LN, fc1 with LN and tanh GELU, fc2 with residual, LM head) */
    test_case(1, 768, 2304, 2, RG_GELU_NONE, true, false, false);
    test_case(1, 768, 3072, 2, RG_GELU_TANH, true, false, false);
    test_case(quick ? 2 : 16, 3072, 768, 0, RG_GELU_NONE, true, true, true);
    test_case(1, 768, 50257, 2, RG_GELU_NONE, false, false, false);
    rg_backend_free(be);
    return rg_test_finish();
}
