/* matmul.c — the linear layer through CBLAS (OpenBLAS sgemm) with a bias and
 * GELU epilogue, forward and backward (CPU, fp32). weight is (OC,C) as in
 * torch.nn.Linear, so the forward is inp @ weight^T. */
#include "cpu/cpu.h"
#include <cblas.h>
#include <limits.h>
#include <string.h>

/* BLAS dimensions are int: T is split into chunks of at most this many rows
 * (one chunk for any realistic batch). */
#define RG_BLAS_MAX_ROWS ((int64_t)INT_MAX)

/* out (T,OC) = inp (T,C) @ w^T + beta * out. One row (a decode step) goes
 * through sgemv: sgemm would pack the whole weight first, reading it about
 * three times where once is all the product needs. */
static void product(float *out, const float *inp, const float *w, int64_t T, int C, int OC, float beta) {
    if (T == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, w, C, inp, 1, beta, out, 1);
        return;
    }
    for (int64_t t0 = 0; t0 < T; t0 += RG_BLAS_MAX_ROWS) {
        int64_t rows = T - t0 < RG_BLAS_MAX_ROWS ? T - t0 : RG_BLAS_MAX_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, OC, C, 1.0f, inp + t0 * C, C, w, C, beta,
                    out + t0 * OC, OC);
    }
}

/* out (T,OC) = inp (T,C) @ weight^T (+ bias); with gelu, pre_gelu (T,OC)
 * keeps the pre-activation and out = gelu(pre_gelu). */
rg_status rg_cpu_matmul_forward(rg_backend *be, void *out_, void *pre_gelu_, const void *inp_,
                                const void *weight_, const void *bias_, int64_t T, int C, int OC,
                                int gelu) {
    (void)be;
    float *out = out_, *pre = pre_gelu_;
    const float *inp = inp_, *w = weight_, *bias = bias_;
    product(out, inp, w, T, C, OC, 0.0f);
    if (!bias && gelu == RG_GELU_NONE) return RG_OK;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * OC;
        if (bias) {
#pragma omp simd
            for (int j = 0; j < OC; j++) o[j] += bias[j];
        }
        if (gelu != RG_GELU_NONE) {
            float *p = pre + t * OC;
            memcpy(p, o, (size_t)OC * sizeof *p);
            if (gelu == RG_GELU_ERF) {
                rg_cpu_gelu_erf_span(o, p, OC);
            } else {
                for (int j = 0; j < OC; j++) o[j] = rg_cpu_gelu(p[j], gelu);
            }
        }
    }
    return RG_OK;
}

/* dinp (T,C) = dout (T,OC) @ weight (overwritten, skipped when NULL);
 * dweight (OC,C) += dout^T @ inp; dbias (OC) += sum_t dout (may be NULL). */
rg_status rg_cpu_matmul_backward(rg_backend *be, void *dinp_, float *dweight, float *dbias,
                                 const void *dout_, const void *inp_, const void *weight_,
                                 int64_t T, int C, int OC) {
    (void)be;
    float *dinp = dinp_;
    const float *dout = dout_, *inp = inp_, *w = weight_;
    for (int64_t t0 = 0; t0 < T; t0 += RG_BLAS_MAX_ROWS) {
        int64_t rows = T - t0 < RG_BLAS_MAX_ROWS ? T - t0 : RG_BLAS_MAX_ROWS;
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, C, OC, 1.0f, dout + t0 * OC,
                        OC, w, C, 0.0f, dinp + t0 * C, C);
        if (dweight)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, (int)rows, 1.0f, dout + t0 * OC, OC,
                        inp + t0 * C, C, 1.0f, dweight, C);
    }
    if (dbias) rg_cpu_bias_grad(dbias, dout, T, OC);
    return RG_OK;
}

/* out (T,OC) = inp @ weight^T + bias + residual; out may alias residual, so
 * the residual is copied to out first and the product accumulated onto it. */
rg_status rg_cpu_matmul_forward_residual(rg_backend *be, void *out_, const void *inp_, const void *weight_,
                                         const void *bias_, const void *residual_, int64_t T, int C, int OC) {
    (void)be;
    float *out = out_;
    const float *inp = inp_, *w = weight_, *bias = bias_, *res = residual_;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * OC;
        const float *r = res + t * OC;
#pragma omp simd
        for (int j = 0; j < OC; j++) o[j] = r[j] + (bias ? bias[j] : 0.0f);
    }
    product(out, inp, w, T, C, OC, 1.0f);
    return RG_OK;
}

/* dbias (OC) += sum_t dout (T,OC): channel tiles accumulated in double over tokens in order. */
void rg_cpu_bias_grad(float *dbias, const float *dout, int64_t T, int OC) {
    int ntiles = (OC + RG_CPU_CTILE - 1) / RG_CPU_CTILE;
#pragma omp parallel for schedule(static)
    for (int tile = 0; tile < ntiles; tile++) {
        int c0 = tile * RG_CPU_CTILE, nc = OC - c0 < RG_CPU_CTILE ? OC - c0 : RG_CPU_CTILE;
        double acc[RG_CPU_CTILE] = {0};
        for (int64_t t = 0; t < T; t++) {
            const float *d = dout + t * OC + c0;
#pragma omp simd
            for (int j = 0; j < nc; j++) acc[j] += (double)d[j];
        }
        for (int j = 0; j < nc; j++) dbias[c0 + j] += (float)acc[j];
    }
}
