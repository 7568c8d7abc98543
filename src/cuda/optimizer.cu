/* optimizer.cu — SGD (momentum, L2 weight decay as torch.optim.SGD) and AdamW
 * (as torch.optim.AdamW) over fp32 master parameters, writing the bf16
 * compute copy in the same pass; and the sum of squares of the gradients
 * for global-norm clipping (double, reduced on the device in a fixed order,
 * then the op's one synchronisation to read the result). */
#include "cuda/ops.cuh"
#include <math.h>

#define THREADS 256
#define SSQ_THREADS 256

/* g = grad * grad_scale + weight_decay * p; buf = momentum * buf + g (when a
 * buffer is used); p -= lr * (buf or g). */
__global__ void sgd_kernel(float *param, bf16 *compute, float *buf, const float *grad, int64_t n, float lr,
                           float momentum, float weight_decay, float grad_scale) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float p = param[i];
        float g = grad[i] * grad_scale + weight_decay * p;
        if (buf) {
            g = momentum * buf[i] + g;
            buf[i] = g;
        }
        p -= lr * g;
        param[i] = p;
        if (compute) compute[i] = __float2bfloat16_rn(p);
    }
}

/* torch.optim.AdamW: p *= 1 - lr*wd; m, v moments; p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps). */
__global__ void adamw_kernel(float *param, bf16 *compute, float *m, float *v, const float *grad, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             float step_size, float inv_sqrt_bc2) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i] * (1.0f - lr * weight_decay);
        p -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        param[i] = p;
        if (compute) compute[i] = __float2bfloat16_rn(p);
    }
}

rg_status rg_cuda_sgd_update(rg_backend *be, float *param, void *compute, float *momentum_buf, const float *grad,
                             int64_t n, float lr, float momentum, float weight_decay, float grad_scale) {
    rg_cuda_state *st = rg_cuda(be);
    if (momentum != 0.0f && !momentum_buf)
        return rg_fail(RG_ERR_INVALID_ARG, "cuda sgd_update: momentum %g needs a momentum buffer (got NULL)",
                       (double)momentum);
    if (n <= 0) return RG_OK;
    float *buf = momentum != 0.0f ? momentum_buf : NULL;
    if (compute == (void *)param) compute = NULL; /* the bf16 copy never lives in the fp32 master */
    sgd_kernel<<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(param, (bf16 *)compute, buf, grad, n,
                                                                              lr, momentum, weight_decay, grad_scale);
    RG_CUDA_CHECK_LAUNCH("sgd_kernel");
    return RG_OK;
}

rg_status rg_cuda_adamw_update(rg_backend *be, float *param, void *compute, float *m, float *v, const float *grad,
                               int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                               float grad_scale, int64_t t) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    if (t < 1) return rg_fail(RG_ERR_INVALID_ARG, "cuda adamw_update: step t=%lld, expected >= 1", (long long)t);
    if (compute == (void *)param) compute = NULL;
    double bc1 = 1.0 - pow((double)beta1, (double)t), bc2 = 1.0 - pow((double)beta2, (double)t);
    adamw_kernel<<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(
        param, (bf16 *)compute, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, grad_scale,
        (float)(lr / bc1), (float)(1.0 / sqrt(bc2)));
    RG_CUDA_CHECK_LAUNCH("adamw_kernel");
    return RG_OK;
}

/* Block sums of g^2 in double: each thread in grid-stride order, then a tree
 * over the block in shared memory (fixed shape, so the result is the same on
 * every run of the same grid). */
__global__ void sum_squares_kernel(double *parts, const float *g, int64_t n) {
    __shared__ double sm[SSQ_THREADS];
    double s = 0.0;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double x = g[i];
        s += x * x;
    }
    sm[threadIdx.x] = s;
    __syncthreads();
    for (int k = SSQ_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) sm[threadIdx.x] += sm[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) parts[blockIdx.x] = sm[0];
}

__global__ void sum_parts_kernel(double *out, const double *parts, int n_parts) {
    __shared__ double sm[SSQ_THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < n_parts; i += SSQ_THREADS) s += parts[i];
    sm[threadIdx.x] = s;
    __syncthreads();
    for (int k = SSQ_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) sm[threadIdx.x] += sm[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = sm[0];
}

rg_status rg_cuda_sum_squares(rg_backend *be, double *out_host, const float *g, int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) {
        *out_host = 0.0;
        return RG_OK;
    }
    double *result = (double *)st->scratch, *parts = result + 1;
    unsigned blocks = rg_cuda_blocks(st, n, SSQ_THREADS, 4);
    sum_squares_kernel<<<blocks, SSQ_THREADS, 0, st->stream>>>(parts, g, n);
    RG_CUDA_CHECK_LAUNCH("sum_squares_kernel");
    sum_parts_kernel<<<1, SSQ_THREADS, 0, st->stream>>>(result, parts, (int)blocks);
    RG_CUDA_CHECK_LAUNCH("sum_parts_kernel");
    RG_CUDA_TRY(cudaMemcpyAsync(st->host_result, result, sizeof(double), cudaMemcpyDeviceToHost, st->stream));
    RG_CUDA_TRY(cudaStreamSynchronize(st->stream));
    *out_host = *st->host_result;
    return RG_OK;
}
