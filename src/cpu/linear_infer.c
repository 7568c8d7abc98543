/* linear_infer.c — the inference projection of generation (CPU, fp32): the
 * plain composition of the existing ops, LayerNorm -> matmul (bias, GELU) ->
 * residual add, so that it is the reference the CUDA fused kernel is held to.
 * out (T,OC) = act(LN(inp) @ weight^T + bias) + residual; see backend.h. */
#include "cpu/cpu.h"
#include "core/status.h"
#include <stdint.h>

rg_status rg_cpu_linear_infer(rg_backend *be, void *out, const void *inp, const void *ln_w, const void *ln_b,
                              float eps, const void *weight, const void *bias, const void *residual, int64_t T,
                              int C, int OC, int gelu) {
    if (T <= 0 || OC <= 0) return RG_OK;
    /* scratch: the normalised rows (T,C) when LN, the pre-activation (T,OC)
     * when GELU (matmul_forward keeps it), and the activation (T,OC) when GELU
     * meets a residual (out may alias the residual, so it is summed last) */
    size_t n_ln = ln_w ? (size_t)T * (size_t)C : 0;
    size_t n_pre = gelu != RG_GELU_NONE ? (size_t)T * (size_t)OC : 0;
    size_t n_act = gelu != RG_GELU_NONE && residual ? (size_t)T * (size_t)OC : 0;
    size_t n = n_ln + n_pre + n_act;
    if (n > SIZE_MAX / sizeof(float))
        return rg_fail(RG_ERR_OVERFLOW, "cpu linear_infer: scratch for T=%lld C=%d OC=%d overflows", (long long)T, C,
                       OC);
    float *ws = NULL;
    if (n) RG_TRY(rg_cpu_scratch(be, n * sizeof(float), (void **)&ws));
    float *ln = ws, *pre = ws + n_ln, *act = pre + n_pre;
    const void *x = inp;
    if (ln_w) {
        RG_TRY(rg_cpu_layernorm_forward(be, ln, NULL, NULL, inp, ln_w, ln_b, eps, T, C));
        x = ln;
    }
    if (gelu == RG_GELU_NONE) {
        if (residual) return rg_cpu_matmul_forward_residual(be, out, x, weight, bias, residual, T, C, OC);
        return rg_cpu_matmul_forward(be, out, NULL, x, weight, bias, T, C, OC, RG_GELU_NONE);
    }
    if (!residual) return rg_cpu_matmul_forward(be, out, pre, x, weight, bias, T, C, OC, gelu);
    RG_TRY(rg_cpu_matmul_forward(be, act, pre, x, weight, bias, T, C, OC, gelu));
    return rg_cpu_add(be, out, residual, act, (int64_t)T * OC);
}
