/* xent.c — fused softmax + cross-entropy, loss and gradient in one pass per
 * row, with no vocabulary-sized probability buffer (CPU, fp32). */
#include "cpu/cpu.h"
#include "core/status.h"
#include <math.h>

/* logits (T,V), targets (T): losses[t] = logsumexp(logits[t]) - logits[t][target];
 * dlogits[t] = (softmax(logits[t]) - onehot(target)) * dloss, or 0 (with a 0
 * loss) where targets[t] == ignore_index. dlogits may alias logits: each
 * element is read before it is written. The max is subtracted before exp, and
 * the sum of exponentials is accumulated in double. */
rg_status rg_cpu_xent_forward_backward(rg_backend *be, float *losses, void *dlogits_, const void *logits_,
                                       const int32_t *targets, int32_t ignore_index, float dloss,
                                       int64_t T, int V) {
    (void)be;
    float *dlogits = dlogits_;
    const float *logits = logits_;
    /* A target outside the vocabulary would index outside the row: refuse
     * before anything is written. */
    for (int64_t t = 0; t < T; t++)
        if (targets[t] != ignore_index && (targets[t] < 0 || targets[t] >= V))
            return rg_fail(RG_ERR_INVALID_ARG, "xent_forward_backward: targets[%lld] = %d is outside [0, %d) "
                           "and not the ignore index %d", (long long)t, targets[t], V, ignore_index);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        const float *x = logits + t * V;
        float *dx = dlogits ? dlogits + t * V : NULL;
        int32_t y = targets[t];
        if (y == ignore_index) {
            losses[t] = 0.0f;
            if (dx)
                for (int i = 0; i < V; i++) dx[i] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        float xy = x[y];
        double sum = 0.0;
        if (dx) {
            /* the exponentials go straight into dx (x is dead after this pass) */
            for (int i = 0; i < V; i++) {
                float e = expf(x[i] - mx);
                sum += (double)e;
                dx[i] = e;
            }
        } else {
            for (int i = 0; i < V; i++) sum += (double)expf(x[i] - mx);
        }
        losses[t] = (float)(log(sum) + (double)mx - (double)xy);
        if (!dx) continue;
        float scale = (float)(1.0 / sum) * dloss;
#pragma omp simd
        for (int i = 0; i < V; i++) dx[i] *= scale;
        dx[y] -= dloss;
    }
    return RG_OK;
}
