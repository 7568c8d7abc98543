/* optimizer.c — SGD and AdamW steps over fp32 master weights, with
 * torch.optim's semantics (CPU). */
#include "cpu/cpu.h"
#include "core/status.h"
#include <math.h>

/* torch.optim.SGD (dampening 0, no Nesterov): g = grad * grad_scale + wd * param;
 * with momentum, buf = momentum * buf + g (a zeroed buffer makes the first step
 * buf = g, as torch's lazily created one) and g = buf; param -= lr * g.
 * momentum_buf may be NULL when momentum == 0. compute (act dtype = f32 here)
 * receives the new parameters unless it is NULL or param itself. */
rg_status rg_cpu_sgd_update(rg_backend *be, float *param, void *compute_, float *momentum_buf,
                            const float *grad, int64_t n, float lr, float momentum,
                            float weight_decay, float grad_scale) {
    (void)be;
    if (momentum != 0.0f && !momentum_buf)
        return rg_fail(RG_ERR_INVALID_ARG, "sgd_update: momentum %g needs a momentum buffer (got NULL)",
                       (double)momentum);
    float *compute = compute_ == (void *)param ? NULL : compute_;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        if (weight_decay != 0.0f) g += weight_decay * param[i];
        if (momentum != 0.0f) {
            momentum_buf[i] = momentum * momentum_buf[i] + g;
            g = momentum_buf[i];
        }
        param[i] -= lr * g;
        if (compute) compute[i] = param[i];
    }
    return RG_OK;
}

/* torch.optim.AdamW (amsgrad off), step t >= 1, with g = grad * grad_scale:
 *   param *= 1 - lr * wd
 *   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
 *   param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * The bias corrections are computed once in double. */
rg_status rg_cpu_adamw_update(rg_backend *be, float *param, void *compute_, float *m, float *v,
                              const float *grad, int64_t n, float lr, float beta1, float beta2,
                              float eps, float weight_decay, float grad_scale, int64_t t) {
    (void)be;
    if (t < 1) return rg_fail(RG_ERR_INVALID_ARG, "adamw_update: step t must be >= 1 (got %lld)", (long long)t);
    float *compute = compute_ == (void *)param ? NULL : compute_;
    float step_size = (float)((double)lr / (1.0 - pow((double)beta1, (double)t)));
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)t));
    float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i] * decay;
        p -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        param[i] = p;
        if (compute) compute[i] = p;
    }
    return RG_OK;
}
