/* xent.cu — fused softmax + cross-entropy over bf16 logits (T,V): one block
 * per row. Pass 1 keeps an online (max, sum of exp) per thread and combines
 * them across the block in a fixed order; the loss is lse - logit[target].
 * Pass 2 (when dlogits is wanted) re-reads the row, which is still in L1/L2,
 * and writes (softmax - onehot) * dloss in bf16, in place when dlogits ==
 * logits: no (T,V) probability buffer exists. Rows whose target is
 * ignore_index get loss 0 and zero gradient; a target outside [0,V) gives a
 * NaN loss rather than an out-of-bounds read. */
#include "cuda/ops.cuh"
#include <float.h>

#define XENT_MAX_THREADS 512

/* (m, s) pairs: s = sum exp(x - m). -FLT_MAX (not -inf) as the empty max
 * keeps exp(m - M) finite when both sides are empty. */
__device__ __forceinline__ void lse_combine(float &m, float &s, float m2, float s2) {
    float M = fmaxf(m, m2);
    s = s * __expf(m - M) + s2 * __expf(m2 - M);
    m = M;
}

template <int VEC>
__global__ void xent_kernel(float *losses, bf16 *dlogits, const bf16 *logits, const int32_t *targets,
                            int32_t ignore_index, float dloss, int64_t T, int V) {
    __shared__ float sm_m[XENT_MAX_THREADS / 32], sm_s[XENT_MAX_THREADS / 32];
    __shared__ float sm_lse;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    int nv = V / VEC;
    for (int64_t row = blockIdx.x; row < T; row += gridDim.x) {
        const bf16 *x = logits + row * V;
        int32_t tgt = targets[row];
        if (tgt == ignore_index) {
            if (threadIdx.x == 0) losses[row] = 0.0f;
            if (dlogits) {
                bf16 *g = dlogits + row * V;
                for (int i = threadIdx.x; i < V; i += blockDim.x) g[i] = __float2bfloat16_rn(0.0f);
            }
            continue;
        }
        bool valid = tgt >= 0 && tgt < V;
        float x_tgt = threadIdx.x == 0 && valid ? __bfloat162float(x[tgt]) : 0.0f; /* read before pass 2 writes */
        float m = -FLT_MAX, s = 0.0f;
        for (int i = threadIdx.x; i < nv; i += blockDim.x) {
            float v[VEC];
            rg_load_bf16<VEC>(v, x + (int64_t)i * VEC);
            float vm = v[0];
#pragma unroll
            for (int j = 1; j < VEC; j++) vm = fmaxf(vm, v[j]);
            float M = fmaxf(m, vm), e = 0.0f;
#pragma unroll
            for (int j = 0; j < VEC; j++) e += __expf(v[j] - M);
            s = s * __expf(m - M) + e;
            m = M;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            lse_combine(m, s, m2, s2);
        }
        if (lane == 0) { sm_m[warp] = m; sm_s[warp] = s; }
        __syncthreads();
        if (threadIdx.x == 0) {
            float M = sm_m[0], S = sm_s[0];
            for (int w = 1; w < n_warps; w++) lse_combine(M, S, sm_m[w], sm_s[w]);
            float lse = M + __logf(S);
            sm_lse = lse;
            losses[row] = valid ? lse - x_tgt : __int_as_float(0x7fc00000);
        }
        __syncthreads();
        float lse = sm_lse;
        if (dlogits) {
            bf16 *g = dlogits + row * V;
            for (int i = threadIdx.x; i < nv; i += blockDim.x) {
                float v[VEC];
                rg_load_bf16<VEC>(v, x + (int64_t)i * VEC);
#pragma unroll
                for (int j = 0; j < VEC; j++)
                    v[j] = (__expf(v[j] - lse) - (i * VEC + j == tgt ? 1.0f : 0.0f)) * dloss;
                rg_store_bf16<VEC>(g + (int64_t)i * VEC, v);
            }
        }
        __syncthreads(); /* sm_* are reused by the next row */
    }
}

rg_status rg_cuda_xent_forward_backward(rg_backend *be, float *losses, void *dlogits, const void *logits,
                                        const int32_t *targets, int32_t ignore_index, float dloss, int64_t T,
                                        int V) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0) return RG_OK;
    if (V <= 0) return rg_fail(RG_ERR_INVALID_ARG, "cuda xent: V=%d", V);
    bool vec = V % 8 == 0 && rg_aligned16(logits) && (!dlogits || rg_aligned16(dlogits));
    int per_thread = vec ? 8 : 1;
    int threads = ((V / per_thread + 31) / 32) * 32;
    if (threads > XENT_MAX_THREADS) threads = XENT_MAX_THREADS;
    if (threads < 32) threads = 32;
    unsigned grid = (unsigned)(T < (1 << 30) ? T : (1 << 30));
    if (vec)
        xent_kernel<8><<<grid, threads, 0, st->stream>>>(losses, (bf16 *)dlogits, (const bf16 *)logits, targets,
                                                         ignore_index, dloss, T, V);
    else
        xent_kernel<1><<<grid, threads, 0, st->stream>>>(losses, (bf16 *)dlogits, (const bf16 *)logits, targets,
                                                         ignore_index, dloss, T, V);
    RG_CUDA_CHECK_LAUNCH("xent_kernel");
    return RG_OK;
}
