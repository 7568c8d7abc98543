/* gather.cu — row copies through an index on CUDA: kv_write (scatter the new
 * K/V rows of a step into their cache slots, K and V in one launch) and
 * gather_rows (out[i] = inp[rows[i]]). bf16 rows, 16-byte accesses when every
 * pointer, stride and width allows, else one element at a time. */
#include "cuda/ops.cuh"

#define THREADS 256

namespace {

/* One of up to two row copies done by a launch (blockIdx.y picks it). */
struct row_copy {
    bf16 *dst;
    const bf16 *src;
    int64_t dst_stride, src_stride;   /* elements between rows */
};

/* For i < n: dst row (SCATTER ? idx[i] : i) = src row (SCATTER ? i : idx[i]),
 * `row` elements each (row % VEC == 0). Grid-stride over (row, VEC-chunk). */
template <int VEC, bool SCATTER>
__global__ void copy_rows_kernel(row_copy c0, row_copy c1, const int32_t *idx, int64_t n, int row) {
    const row_copy c = blockIdx.y == 0 ? c0 : c1;
    const int per_row = row / VEC;
    const int64_t total = n * per_row, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        int64_t i = t / per_row;
        int col = (int)(t % per_row) * VEC;
        int64_t r = idx[i];
        int64_t di = SCATTER ? r : i, si = SCATTER ? i : r;
        const bf16 *s = c.src + si * c.src_stride + col;
        bf16 *d = c.dst + di * c.dst_stride + col;
        if constexpr (VEC == 8) *reinterpret_cast<uint4 *>(d) = *reinterpret_cast<const uint4 *>(s);
        else *d = *s;
    }
}

template <bool SCATTER>
rg_status launch(rg_backend *be, const char *what, row_copy c0, row_copy c1, int n_copies, const int32_t *idx,
                 int64_t n, int row) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0 || row <= 0) return RG_OK;
    bool vec = row % 8 == 0;
    for (int k = 0; k < n_copies; k++) {
        const row_copy &c = k ? c1 : c0;
        vec = vec && rg_aligned16(c.dst) && rg_aligned16(c.src) && c.dst_stride % 8 == 0 && c.src_stride % 8 == 0;
    }
    int VEC = vec ? 8 : 1;
    dim3 grid(rg_cuda_blocks(st, n * (row / VEC), THREADS, 8), (unsigned)n_copies);
    if (vec) copy_rows_kernel<8, SCATTER><<<grid, THREADS, 0, st->stream>>>(c0, c1, idx, n, row);
    else copy_rows_kernel<1, SCATTER><<<grid, THREADS, 0, st->stream>>>(c0, c1, idx, n, row);
    RG_CUDA_CHECK_LAUNCH(what);
    return RG_OK;
}

} // namespace

rg_status rg_cuda_kv_write(rg_backend *be, void *k_cache, void *v_cache, const void *k, int32_t stride_k,
                           const void *v, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row) {
    row_copy ck = {(bf16 *)k_cache, (const bf16 *)k, row, stride_k};
    row_copy cv = {(bf16 *)v_cache, (const bf16 *)v, row, stride_v};
    return launch<true>(be, "kv_write", ck, cv, 2, slots, T, row);
}

rg_status rg_cuda_gather_rows(rg_backend *be, void *out, const void *inp, const int32_t *rows, int64_t n, int C) {
    row_copy c = {(bf16 *)out, (const bf16 *)inp, C, C};
    return launch<false>(be, "gather_rows", c, c, 1, rows, n, C);
}
