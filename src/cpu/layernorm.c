/* layernorm.c — LayerNorm over the last dimension, forward and backward (CPU, fp32). */
#include "cpu/cpu.h"
#include "core/status.h"
#include <math.h>

/* out (T,C) = (inp - mean) * rstd * weight + bias; mean, rstd (T) saved.
 * The statistics are accumulated in double, in two passes (mean, then the
 * biased variance around it), so that rows with a large offset keep their
 * precision; the normalisation itself runs in float. */
rg_status rg_cpu_layernorm_forward(rg_backend *be, void *out_, float *mean, float *rstd, const void *inp_,
                                   const void *weight_, const void *bias_, float eps, int64_t T, int C) {
    (void)be;
    float *out = out_;
    const float *inp = inp_, *w = weight_, *b = bias_;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        const float *x = inp + t * C;
        float *o = out + t * C;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += (double)x[c];
        double md = s / C, v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += ((double)x[c] - md) * ((double)x[c] - md);
        float m = (float)md, r = (float)(1.0 / sqrt(v / C + (double)eps));
        if (b) {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c];
        }
        if (mean) mean[t] = m;
        if (rstd) rstd[t] = r;
    }
    return RG_OK;
}

/* With n = (x - mean) * rstd and g = dout * weight:
 *   dinp += rstd * (g - mean(g) - n * mean(g * n))      (per row)
 *   dweight += sum_t dout * n,  dbias += sum_t dout      (per channel)
 * The row part runs over tokens; the channel sums over channel tiles, each
 * accumulated in double over all tokens in order (deterministic, no races). */
rg_status rg_cpu_layernorm_backward(rg_backend *be, void *dinp_, float *dweight, float *dbias,
                                    const void *dout_, const void *inp_, const void *weight_,
                                    const float *mean, const float *rstd, int64_t T, int C) {
    (void)be;
    float *dinp = dinp_;
    const float *dout = dout_, *inp = inp_, *w = weight_;
    int ntiles = (C + RG_CPU_CTILE - 1) / RG_CPU_CTILE;
#pragma omp parallel
    {
        if (dinp) {
#pragma omp for schedule(static) nowait
            for (int64_t t = 0; t < T; t++) {
                const float *x = inp + t * C, *d = dout + t * C;
                float *dx = dinp + t * C;
                float m = mean[t], r = rstd[t], sg = 0.0f, sgn = 0.0f;
#pragma omp simd reduction(+ : sg, sgn)
                for (int c = 0; c < C; c++) {
                    float g = d[c] * w[c];
                    sg += g;
                    sgn += g * (x[c] - m) * r;
                }
                sg /= (float)C;
                sgn /= (float)C;
#pragma omp simd
                for (int c = 0; c < C; c++) dx[c] += r * (d[c] * w[c] - sg - (x[c] - m) * r * sgn);
            }
        }
#pragma omp for schedule(static)
        for (int tile = 0; tile < ntiles; tile++) {
            int c0 = tile * RG_CPU_CTILE, nc = C - c0 < RG_CPU_CTILE ? C - c0 : RG_CPU_CTILE;
            double aw[RG_CPU_CTILE] = {0}, ab[RG_CPU_CTILE] = {0};
            for (int64_t t = 0; t < T; t++) {
                const float *x = inp + t * C + c0, *d = dout + t * C + c0;
                float m = mean[t], r = rstd[t];
#pragma omp simd
                for (int j = 0; j < nc; j++) {
                    aw[j] += (double)(d[j] * ((x[j] - m) * r));
                    ab[j] += (double)d[j];
                }
            }
            for (int j = 0; j < nc; j++) {
                dweight[c0 + j] += (float)aw[j];
                if (dbias) dbias[c0 + j] += (float)ab[j];
            }
        }
    }
    return RG_OK;
}

/* layernorm_backward, then dinp_sum += the column sums of the dinp it left. */
rg_status rg_cpu_layernorm_backward_sum(rg_backend *be, void *dinp, float *dweight, float *dbias, float *dinp_sum,
                                        const void *dout, const void *inp, const void *weight, const float *mean,
                                        const float *rstd, int64_t T, int C) {
    RG_TRY(rg_cpu_layernorm_backward(be, dinp, dweight, dbias, dout, inp, weight, mean, rstd, T, C));
    if (dinp_sum) rg_cpu_bias_grad(dinp_sum, dinp, T, C);
    return RG_OK;
}
