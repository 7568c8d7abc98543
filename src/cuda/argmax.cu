/* argmax.cu — index of the largest value of each row (CUDA, bf16 rows): greedy
 * decoding picks its tokens on the GPU and reads back one int per sequence
 * instead of a vocabulary of logits. */
#include "cuda/ops.cuh"
#include <climits>

#define THREADS 256

namespace {

struct best { float v; int i; };   /* i == INT_MAX: nothing seen yet */

/* The better of two candidates: larger value, then lower index; a NaN already
 * held is kept (some index in range, as the op's contract allows). */
__device__ __forceinline__ best better(best a, best b) {
    if (a.i == INT_MAX) return b;
    if (b.i == INT_MAX) return a;
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

/* One block per row of x (n, V): each thread scans a strided slice in
 * increasing order (so '>' keeps its first maximum), then warp shuffles and
 * one shared-memory step reduce the block's candidates. */
__global__ void argmax_rows_kernel(int32_t *out, const bf16 *x, int V) {
    const bf16 *row = x + (int64_t)blockIdx.x * V;
    best b = {-INFINITY, INT_MAX};
    for (int j = threadIdx.x; j < V; j += THREADS) {
        float v = __bfloat162float(row[j]);
        if (b.i == INT_MAX || v > b.v) b = best{v, j};
    }
    for (int o = 16; o > 0; o >>= 1) {
        best other = {__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)};
        b = better(b, other);
    }
    __shared__ best warp_best[THREADS / 32];
    if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
        best r = warp_best[0];
        for (int w = 1; w < THREADS / 32; w++) r = better(r, warp_best[w]);
        out[blockIdx.x] = r.i;
    }
}

} // namespace

rg_status rg_cuda_argmax_rows(rg_backend *be, int32_t *out, const void *x, int64_t n, int V) {
    if (n <= 0 || V <= 0) return RG_OK;
    if (n > INT_MAX) return rg_fail(RG_ERR_INVALID_ARG, "argmax_rows: %lld rows exceed one grid", (long long)n);
    argmax_rows_kernel<<<(unsigned)n, THREADS, 0, rg_cuda(be)->stream>>>(out, (const bf16 *)x, V);
    RG_CUDA_CHECK_LAUNCH("argmax_rows");
    return RG_OK;
}
