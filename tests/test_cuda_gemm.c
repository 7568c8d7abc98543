/* test_cuda_gemm.c — the wgmma forward GEMM (src/cuda/gemm_wgmma.cu) against a
 * double reference and against the cuBLASLt path, every epilogue (bias, bias +
 * erf / tanh GELU with pre_gelu, bias + residual, in place too), awkward token
 * counts (1, 7, 127..129, 4097, 16385) and widths off the 128 x 128 tile (72,
 * 1000, 1032), the seed model's shapes, sentinels around every output.
 * Two backends: RG_GEMM=wgmma (profiled, so the test can see that the wgmma
 * kernel ran and not the fallback) and RG_GEMM=cublas.
 * Thresholds (normalised L2, u = 2^-8, bf16's unit roundoff): the wgmma path
 * rounds each stored value once from an fp32 accumulator, so 1u against the
 * reference; out with GELU is gelu of the rounded pre-activation, rounded
 * again: 2u. The cuBLASLt path has 2u (test_cuda_ops.c), so the two paths may
 * differ by the sum (triangle inequality): 3u, or 4u with GELU. The erf out
 * must equal the backend's own gelu_forward of pre_gelu bit for bit (same
 * table). Large products are checked against the reference on a sample of
 * rows (tile edges, the last row, random ones) and in full against cuBLASLt.
 * Exits 77 without a CUDA device, or when the device cannot run the wgmma
 * kernel (not sm_90 / no sm_90a code in the build). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "backend.h"
#include "check.h"
#include "dev_buf.h"
#include "ops_ref.h"
#include "core/dtype.h"
#include "core/status.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U_BF16 (1.0 / 256.0)
#define MAX_REF_ROWS 48

static rg_backend *bw, *bc; /* RG_GEMM=wgmma (profiled), RG_GEMM=cublas */
static rg_rng rng;

/* ---- bf16 device buffers with sentinels: dev_buf.h ---- */

static dbuf dalloc(size_t n) { return dbuf_alloc(bw, RG_DTYPE_BF16, n, 0); }

static float *bf16_randn(size_t n, float scale) {
    float *x = rg_test_xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = rg_bf16_to_f32(rg_f32_to_bf16((float)(rg_rng_normal(&rng) * scale)));
    return x;
}

/* Calls of the wgmma kernel the profiled backend has booked since its last reset. */
static long long wgmma_calls(void) {
    rg_profile_entry e[64];
    int n = 0;
    long long calls = 0;
    rg_test_must(rg_backend_profile_read(bw, e, 64, &n), "profile read");
    for (int i = 0; i < n; i++)
        if (strstr(e[i].op, "wgmma")) calls += e[i].calls;
    rg_test_must(rg_backend_profile_reset(bw), "profile reset");
    return calls;
}

enum { EPI_BIAS, EPI_NOBIAS, EPI_ERF, EPI_TANH, EPI_RESID, EPI_RESID_INPLACE };
static const char *epi_names[] = {"bias", "no bias", "bias+erf", "bias+tanh", "bias+residual", "residual in place"};

/* The rows the double reference covers: all when the product is small, else
 * tile edges, the last row and random ones. */
static int ref_rows(int64_t T, int C, int OC, int64_t *rows) {
    if ((double)T * C * OC <= 6e7 || T <= MAX_REF_ROWS) {
        int n = (int)(T < 4096 ? T : 4096);
        for (int i = 0; i < n; i++) rows[i] = i;
        return n;
    }
    const int64_t fixed[] = {0, 1, 63, 64, 127, 128, 129, 255, 256, T / 2, T - 2, T - 1};
    int n = 0;
    for (int i = 0; i < 12; i++)
        if (fixed[i] < T) rows[n++] = fixed[i];
    while (n < MAX_REF_ROWS) rows[n++] = (int64_t)(rg_rng_uniform(&rng) * (double)T) % T;
    return n;
}

static void test_gemm(int64_t T, int C, int OC, int epi, bool expect_wgmma) {
    char tag[160], what[256];
    snprintf(tag, sizeof tag, "T=%lld C=%d OC=%d %s", (long long)T, C, OC, epi_names[epi]);
    size_t nin = (size_t)T * C, nout = (size_t)T * OC;
    int gelu = epi == EPI_ERF ? RG_GELU_ERF : epi == EPI_TANH ? RG_GELU_TANH : RG_GELU_NONE;
    bool resid = epi == EPI_RESID || epi == EPI_RESID_INPLACE, has_bias = epi != EPI_NOBIAS;
    float *inp = bf16_randn(nin, 1.0f), *w = bf16_randn((size_t)OC * C, 1.0f / sqrtf((float)C));
    float *b = bf16_randn(OC, 0.5f), *res = resid ? bf16_randn(nout, 2.0f) : NULL;
    dbuf d_inp = dalloc(nin), d_w = dalloc((size_t)OC * C), d_b = dalloc(OC);
    dbuf d_out = dalloc(nout), d_pre = dalloc(gelu ? nout : 1), d_res = dalloc(resid ? nout : 1);
    dbuf c_out = dalloc(nout), c_pre = dalloc(gelu ? nout : 1);
    dbuf_put(&d_inp, inp);
    dbuf_put(&d_w, w);
    dbuf_put(&d_b, b);
    const void *bias = has_bias ? d_b.p : NULL;
    rg_status s;
    /* wgmma path, then cuBLASLt on the same inputs */
    if (resid) {
        dbuf_put(&d_res, res);
        void *o = epi == EPI_RESID_INPLACE ? d_res.p : d_out.p;
        s = bw->ops->matmul_forward_residual(bw, o, d_inp.p, d_w.p, bias, d_res.p, T, C, OC);
        CHECK(s == RG_OK, "%s: wgmma status %s (%s)", tag, rg_status_str(s), rg_last_error());
        long long n = wgmma_calls();
        CHECK(n == (expect_wgmma ? 1 : 0), "%s: the wgmma kernel ran %lld times (expected %d)", tag, n, expect_wgmma);
        if (epi == EPI_RESID_INPLACE) { /* the result is in d_res; the cuBLASLt run needs the residual again */
            float *tmp = rg_test_xmalloc(nout * 4);
            dbuf_get(&d_res, tmp);
            dbuf_put(&d_out, tmp);
            free(tmp);
            dbuf_put(&d_res, res);
            rg_test_must(rg_backend_sync(bw), "sync");
            s = bc->ops->matmul_forward_residual(bc, d_res.p, d_inp.p, d_w.p, bias, d_res.p, T, C, OC);
            rg_test_must(rg_backend_sync(bc), "sync");
            float *tmp2 = rg_test_xmalloc(nout * 4);
            dbuf_get(&d_res, tmp2);
            dbuf_put(&c_out, tmp2);
            free(tmp2);
        } else {
            rg_test_must(rg_backend_sync(bw), "sync");
            s = bc->ops->matmul_forward_residual(bc, c_out.p, d_inp.p, d_w.p, bias, d_res.p, T, C, OC);
        }
    } else {
        s = bw->ops->matmul_forward(bw, d_out.p, d_pre.p, d_inp.p, d_w.p, bias, T, C, OC, gelu);
        CHECK(s == RG_OK, "%s: wgmma status %s (%s)", tag, rg_status_str(s), rg_last_error());
        long long n = wgmma_calls();
        CHECK(n == (expect_wgmma ? 1 : 0), "%s: the wgmma kernel ran %lld times (expected %d)", tag, n, expect_wgmma);
        rg_test_must(rg_backend_sync(bw), "sync");
        s = bc->ops->matmul_forward(bc, c_out.p, c_pre.p, d_inp.p, d_w.p, bias, T, C, OC, gelu);
    }
    rg_test_must(rg_backend_sync(bc), "sync"); /* the two backends have their own streams */
    CHECK(s == RG_OK, "%s: cublas status %s (%s)", tag, rg_status_str(s), rg_last_error());

    float *got = rg_test_xmalloc(nout * 4), *cub = rg_test_xmalloc(nout * 4), *gpre = gelu ? rg_test_xmalloc(nout * 4) : NULL;
    dbuf_get(&d_out, got);
    dbuf_get(&c_out, cub);
    if (gelu) dbuf_get(&d_pre, gpre);

    /* against the double reference on the chosen rows */
    int64_t *rows = rg_test_xmalloc(4096 * sizeof *rows);
    int nr = ref_rows(T, C, OC, rows);
    size_t nref = (size_t)nr * OC;
    float *r_out = rg_test_xmalloc(nref * 4), *r_pre = rg_test_xmalloc(nref * 4), *g_out = rg_test_xmalloc(nref * 4),
          *g_pre = rg_test_xmalloc(nref * 4);
    for (int i = 0; i < nr; i++) {
        int64_t t = rows[i];
        for (int o = 0; o < OC; o++) {
            double acc = has_bias ? b[o] : 0.0;
            if (resid) acc += res[t * OC + o];
            const float *x = inp + t * C, *wr = w + (size_t)o * C;
            for (int c = 0; c < C; c++) acc += (double)x[c] * wr[c];
            r_pre[(size_t)i * OC + o] = (float)acc;
            r_out[(size_t)i * OC + o] = (float)(gelu ? ref_gelu(acc, gelu == RG_GELU_TANH) : acc);
            g_out[(size_t)i * OC + o] = got[t * OC + o];
            if (gelu) g_pre[(size_t)i * OC + o] = gpre[t * OC + o];
        }
    }
    snprintf(what, sizeof what, "%s: out vs reference (%d rows)", tag, nr);
    CHECK_CLOSE(what, g_out, r_out, nref, (gelu ? 2 : 1) * U_BF16);
    if (gelu) {
        snprintf(what, sizeof what, "%s: pre_gelu vs reference (%d rows)", tag, nr);
        CHECK_CLOSE(what, g_pre, r_pre, nref, 1 * U_BF16);
    }
    /* against cuBLASLt in full */
    snprintf(what, sizeof what, "%s: out vs cublas", tag);
    CHECK_CLOSE(what, got, cub, nout, (gelu ? 4 : 3) * U_BF16);
    if (gelu) {
        dbuf_get(&c_pre, cub);
        snprintf(what, sizeof what, "%s: pre_gelu vs cublas", tag);
        CHECK_CLOSE(what, gpre, cub, nout, 3 * U_BF16);
    }
    if (gelu == RG_GELU_ERF) { /* out is exactly the backend's own GELU of the stored pre-activation */
        rg_test_must(bw->ops->gelu_forward(bw, c_out.p, d_pre.p, (int64_t)nout, RG_GELU_ERF), "gelu_forward");
        dbuf_get(&c_out, cub);
        CHECK(memcmp(cub, got, nout * 4) == 0, "%s: out == gelu_forward(pre_gelu) bit for bit", tag);
    }
    snprintf(what, sizeof what, "%s: out", tag);
    dbuf_guard_ok(epi == EPI_RESID_INPLACE ? &d_res : &d_out, what);
    if (gelu) dbuf_guard_ok(&d_pre, "pre_gelu");
    if (epi == EPI_RESID) {
        dbuf_get(&d_res, cub);
        CHECK(memcmp(cub, res, nout * 4) == 0, "%s: the residual is unchanged", tag);
    }
    free(inp); free(w); free(b); free(res); free(got); free(cub); free(gpre); free(rows);
    free(r_out); free(r_pre); free(g_out); free(g_pre);
    dbuf_free(&d_inp); dbuf_free(&d_w); dbuf_free(&d_b); dbuf_free(&d_out); dbuf_free(&d_pre); dbuf_free(&d_res);
    dbuf_free(&c_out); dbuf_free(&c_pre);
}

static rg_backend *make_backend(const char *gemm, bool profile) {
    setenv("RG_GEMM", gemm, 1);
    if (profile) setenv("RG_PROFILE", "1", 1);
    rg_backend *be = NULL;
    rg_test_must(rg_backend_init(RG_BACKEND_CUDA, 0, &be), gemm);
    unsetenv("RG_GEMM");
    unsetenv("RG_PROFILE");
    return be;
}

int main(void) {
    rg_test_init("test_cuda_gemm", &rng);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        printf("test_cuda_gemm: skipped: no CUDA backend in this build or no GPU on this machine\n");
        return 77;
    }
    bw = make_backend("wgmma", true);
    bc = make_backend("cublas", false);
    CHECK(rg_backend_profiling(bw), "the wgmma backend profiles (to see which path ran)");
    { /* does this device run the wgmma kernel at all? */
        dbuf x = dalloc(64 * 64), y = dalloc(64 * 64);
        float *z = bf16_randn(64 * 64, 1.0f);
        dbuf_put(&x, z);
        rg_test_must(rg_backend_profile_reset(bw), "profile reset");
        rg_test_must(bw->ops->matmul_forward(bw, y.p, NULL, x.p, x.p, NULL, 64, 64, 64, RG_GELU_NONE), "probe");
        long long n = wgmma_calls();
        free(z); dbuf_free(&x); dbuf_free(&y);
        if (n == 0) {
            printf("test_cuda_gemm: skipped: this device or build cannot run the wgmma GEMM (needs sm_90 + sm_90a code)\n");
            rg_backend_free(bw);
            rg_backend_free(bc);
            return 77;
        }
    }
    bool quick = rg_test_quick();
    /* token counts around the 128-row tile, widths off the 128-column tile and the 64-wide k step */
    const int64_t Ts[] = {1, 7, 64, 127, 128, 129, 1000, 4097, 16385};
    const int widths[][2] = {{72, 1000}, {1000, 1032}, {1032, 72}, {64, 256}};
    int nT = quick ? 6 : 9;
    for (int i = 0; i < nT; i++)
        for (int j = 0; j < 4; j++) {
            if (Ts[i] > 4097 && j != 1) continue;
            for (int epi = EPI_BIAS; epi <= EPI_RESID_INPLACE; epi++)
                if (Ts[i] <= 129 || epi != EPI_NOBIAS) test_gemm(Ts[i], widths[j][0], widths[j][1], epi, true);
        }
    /* the seed model's products (qkv, proj, fc1, fc2) with their epilogues */
    const int64_t seedT = quick ? 300 : 16385;
    test_gemm(seedT, 1024, 3072, EPI_BIAS, true);
    test_gemm(seedT, 1024, 1024, EPI_RESID_INPLACE, true);
    test_gemm(seedT, 1024, 1024, EPI_BIAS, true);
    test_gemm(seedT, 1024, 4096, EPI_ERF, true);
    test_gemm(seedT, 1024, 4096, EPI_TANH, true);
    test_gemm(seedT, 4096, 1024, EPI_RESID_INPLACE, true);
    test_gemm(quick ? 129 : 4097, 4096, 1024, EPI_RESID, true);
    /* shapes the kernel does not take fall back to cuBLASLt, still correct */
    test_gemm(33, 100, 64, EPI_ERF, false);  /* C % 8 != 0 */
    test_gemm(33, 64, 100, EPI_BIAS, false); /* OC % 8 != 0 */
    test_gemm(5, 3, 7, EPI_RESID, false);
    rg_backend_free(bw);
    rg_backend_free(bc);
    return rg_test_finish();
}
