/* add.c — elementwise addition (the residual connection) (CPU, fp32). */
#include "cpu/cpu.h"

/* out = a + b over n elements; out may alias a (or b). */
rg_status rg_cpu_add(rg_backend *be, void *out_, const void *a_, const void *b_, int64_t n) {
    (void)be;
    float *out = out_;
    const float *a = a_, *b = b_;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return RG_OK;
}
