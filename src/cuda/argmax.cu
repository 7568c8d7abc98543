/* argmax.cu — index of the largest value of each row (CUDA, bf16 rows): greedy
 * decoding picks its tokens on the GPU and reads back one int per sequence
 * instead of a vocabulary of logits. */
#include "cuda/ops.cuh"
#include <climits>

#define THREADS 1024

namespace {

struct best { float v; int i; };   /* i == INT_MAX: nothing seen yet */

/* The better of two candidates: larger value, then lower index; a NaN already
 * held is kept (some index in range, as the op's contract allows). */
__device__ __forceinline__ best better(best a, best b) {
    if (a.i == INT_MAX) return b;
    if (b.i == INT_MAX) return a;
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

__device__ __forceinline__ void consider(best &b, float v, int j) {
    if (b.i == INT_MAX || v > b.v) b = best{v, j};
}

/* One block per row of x (n, V): each thread scans its elements in
 * increasing order (so '>' keeps its first maximum): one of the elements
 * before the row's first 16-byte boundary (rows of odd V are not aligned),
 * then 16-byte chunks of 8 strided over the block (a decode step's row of
 * 50257 logits is ~7 loads per thread, not ~200 dependent 2-byte ones), then
 * one of the tail; warp shuffles and one shared-memory step reduce the
 * block's candidates (ties to the lower index). Launched with programmatic
 * dependent launch: it waits for the logits before reading them. */
__global__ void __launch_bounds__(THREADS) argmax_rows_kernel(int32_t *out, const bf16 *x, int V) {
    rg_pdl_wait();
    rg_pdl_launch_dependents();
    const bf16 *row = x + (int64_t)blockIdx.x * V;
    const int tid = threadIdx.x;
    int head = (int)((16 - ((uintptr_t)row & 15)) & 15) / 2;  /* bf16 rows are 2-byte aligned */
    if (head > V) head = V;
    const int nvec = (V - head) / 8, tail0 = head + nvec * 8;
    best b = {-INFINITY, INT_MAX};
    if (tid < head) consider(b, __bfloat162float(row[tid]), tid);
    const uint4 *vrow = reinterpret_cast<const uint4 *>(row + head);
    for (int c = tid; c < nvec; c += THREADS) {
        float f[8];
        rg_unpack_bf16x8(f, vrow[c]);
#pragma unroll
        for (int e = 0; e < 8; e++) consider(b, f[e], head + c * 8 + e);
    }
    if (tail0 + tid < V) consider(b, __bfloat162float(row[tail0 + tid]), tail0 + tid);
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
    rg_cuda_state *st = rg_cuda(be);
    cudaLaunchAttribute attr[1];
    cudaLaunchConfig_t cfg = rg_cuda_launch_cfg(st, dim3((unsigned)n), dim3(THREADS), 0, true, attr);
    RG_CUDA_TRY(cudaLaunchKernelEx(&cfg, argmax_rows_kernel, out, (const bf16 *)x, V));
    RG_CUDA_CHECK_LAUNCH("argmax_rows");
    return RG_OK;
}
