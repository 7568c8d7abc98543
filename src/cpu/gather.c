/* gather.c — row gather (CPU, fp32): generation sends only the last token of
 * each sequence through the final LayerNorm and the LM head. */
#include "cpu/cpu.h"
#include <string.h>

/* out (n, C) = inp[rows[i]]; inp (*, C). */
rg_status rg_cpu_gather_rows(rg_backend *be, void *out_, const void *inp_, const int32_t *rows, int64_t n, int C) {
    (void)be;
    float *out = out_;
    const float *inp = inp_;
    for (int64_t i = 0; i < n; i++) memcpy(out + i * C, inp + (int64_t)rows[i] * C, sizeof(float) * (size_t)C);
    return RG_OK;
}
