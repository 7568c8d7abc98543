/* embedding.c — token + position embedding, forward and backward (CPU, fp32). */
#include "cpu/cpu.h"

/* out (T,C) = wte[tokens[t]] + wpe[pos[t]]; wte (V,C), wpe (maxT,C). */
rg_status rg_cpu_embedding_forward(rg_backend *be, void *out_, const int32_t *tokens, const int32_t *pos,
                                   const void *wte_, const void *wpe_, int64_t T, int C) {
    (void)be;
    float *out = out_;
    const float *wte = wte_, *wpe = wpe_;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * C;
        const float *a = wte + (int64_t)tokens[t] * C, *b = wpe + (int64_t)pos[t] * C;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = a[c] + b[c];
    }
    return RG_OK;
}

/* dwte[tokens[t]] += dout[t]; dwpe[pos[t]] += dout[t]. Repeated tokens add
 * into the same row, so threads split the channels, not the tokens: each tile
 * of channels walks all tokens in order (race-free and deterministic). */
rg_status rg_cpu_embedding_backward(rg_backend *be, float *dwte, float *dwpe, const void *dout_,
                                    const int32_t *tokens, const int32_t *pos, int64_t T, int C) {
    (void)be;
    const float *dout = dout_;
    int ntiles = (C + RG_CPU_CTILE - 1) / RG_CPU_CTILE;
#pragma omp parallel for schedule(static)
    for (int tile = 0; tile < ntiles; tile++) {
        int c0 = tile * RG_CPU_CTILE, c1 = c0 + RG_CPU_CTILE < C ? c0 + RG_CPU_CTILE : C;
        for (int64_t t = 0; t < T; t++) {
            const float *d = dout + t * C;
            float *a = dwte + (int64_t)tokens[t] * C, *b = dwpe + (int64_t)pos[t] * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                a[c] += d[c];
                b[c] += d[c];
            }
        }
    }
    return RG_OK;
}
