/* memory.c — conversion, zeroing and the sum of squares (for global-norm
 * clipping) over backend memory (CPU, fp32). */
#include "cpu/cpu.h"
#include "core/status.h"
#include <string.h>

/* dst (n) = src (n). Activations are fp32 on the CPU, so f32 -> f32 (a copy;
 * dst may equal src) is the only pair the model asks for. */
rg_status rg_cpu_convert(rg_backend *be, void *dst, rg_dtype dst_dtype, const void *src,
                         rg_dtype src_dtype, int64_t n) {
    (void)be;
    if (dst_dtype != RG_DTYPE_F32 || src_dtype != RG_DTYPE_F32)
        return rg_fail(RG_ERR_UNSUPPORTED, "convert: the CPU backend converts only f32 -> f32 (got %s -> %s)",
                       rg_dtype_name(src_dtype), rg_dtype_name(dst_dtype));
    if (n > 0 && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
    return RG_OK;
}

rg_status rg_cpu_zero(rg_backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) memset(p, 0, bytes);
    return RG_OK;
}

/* A fixed number of blocks (not one per thread), each summed in double, then
 * added in block order: the result does not depend on the thread count. */
#define RG_SUMSQ_BLOCKS 64

rg_status rg_cpu_sum_squares(rg_backend *be, double *out_host, const float *g, int64_t n) {
    (void)be;
    double part[RG_SUMSQ_BLOCKS] = {0};
    int64_t chunk = (n + RG_SUMSQ_BLOCKS - 1) / RG_SUMSQ_BLOCKS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < RG_SUMSQ_BLOCKS; b++) {
        int64_t i0 = b * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = i0; i < i1; i++) s += (double)g[i] * (double)g[i];
        part[b] = s;
    }
    double total = 0.0;
    for (int b = 0; b < RG_SUMSQ_BLOCKS; b++) total += part[b];
    *out_host = total;
    return RG_OK;
}
