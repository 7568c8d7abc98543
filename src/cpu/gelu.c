/* gelu.c — GELU, exact (erf) and GPT-2's tanh approximation, forward and backward (CPU, fp32). */
#include "cpu/cpu.h"
#include "core/status.h"
#include <math.h>

#define RG_INV_SQRT2 0.70710678118654752440f       /* 1/sqrt(2) */
#define RG_INV_SQRT_2PI 0.39894228040143267794f    /* 1/sqrt(2 pi) */
#define RG_SQRT_2_OVER_PI 0.79788456080286535588f  /* sqrt(2/pi) */
#define RG_GELU_TANH_A 0.044715f

/* erf:  x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
 * tanh: 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3); 1 + tanh u = 2 / (1 + e^(-2u)).
 * The erfc / logistic forms keep full relative precision on the negative
 * tail, where 1 + erf and 1 + tanh would cancel to a few bits (or to 0). */
float rg_cpu_gelu(float x, int gelu) {
    if (gelu == RG_GELU_TANH) {
        float u = RG_SQRT_2_OVER_PI * (x + RG_GELU_TANH_A * x * x * x);
        return x / (1.0f + expf(-2.0f * u));
    }
    return 0.5f * x * erfcf(-x * RG_INV_SQRT2);
}

/* d gelu / dx. erf: Phi(x) + x phi(x). tanh: with s = (1 + tanh u) / 2 (the
 * logistic of 2u) and 1 - tanh^2 u = 4 s (1 - s): s + 2 x s (1 - s) du/dx. */
static float gelu_grad(float x, int gelu) {
    if (gelu == RG_GELU_TANH) {
        float u = RG_SQRT_2_OVER_PI * (x + RG_GELU_TANH_A * x * x * x);
        float sp = 1.0f / (1.0f + expf(-2.0f * u)), sm = 1.0f / (1.0f + expf(2.0f * u));   /* s, 1 - s */
        float du = RG_SQRT_2_OVER_PI * (1.0f + 3.0f * RG_GELU_TANH_A * x * x);
        return sp + 2.0f * x * sp * sm * du;
    }
    return 0.5f * erfcf(-x * RG_INV_SQRT2) + x * RG_INV_SQRT_2PI * expf(-0.5f * x * x);
}

rg_status rg_cpu_gelu_forward(rg_backend *be, void *out_, const void *inp_, int64_t n, int gelu) {
    (void)be;
    float *out = out_;
    const float *inp = inp_;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = rg_cpu_gelu(inp[i], gelu);
    return RG_OK;
}

/* dinp = dout * gelu'(inp); dinp may alias dout. */
rg_status rg_cpu_gelu_backward(rg_backend *be, void *dinp_, const void *inp_, const void *dout_,
                               int64_t n, int gelu) {
    (void)be;
    float *dinp = dinp_;
    const float *inp = inp_, *dout = dout_;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_grad(inp[i], gelu);
    return RG_OK;
}

/* gelu_backward over (T,OC), then dbias += its column sums (dinp may alias dout). */
rg_status rg_cpu_gelu_backward_dbias(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                     int64_t T, int OC, int gelu) {
    RG_TRY(rg_cpu_gelu_backward(be, dinp, inp, dout, T * OC, gelu));
    if (dbias) rg_cpu_bias_grad(dbias, dinp, T, OC);
    return RG_OK;
}
