/* gather.c — row gather and row argmax (CPU, fp32): generation sends only the
 * last token of each sequence through the final LayerNorm and the LM head, and
 * greedy decoding reads back only the argmax of each row of logits. */
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

/* out[i] = the first index of the largest value of row i of x (n, V). */
rg_status rg_cpu_argmax_rows(rg_backend *be, int32_t *out, const void *x_, int64_t n, int V) {
    (void)be;
    const float *x = x_;
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * V;
        int32_t best = 0;
        for (int32_t j = 1; j < V; j++)
            if (r[j] > r[best]) best = j;
        out[i] = best;
    }
    return RG_OK;
}
