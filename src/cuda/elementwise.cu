/* elementwise.cu — add (bf16), dtype conversion (f32 <-> bf16/f16, same-type
 * copies), zero, and the second stage of the column reductions (partial sums
 * left in scratch, added to an fp32 gradient in a fixed order). */
#include "cuda/ops.cuh"
#include <cuda_fp16.h>

#define THREADS 256

/* out = a + b over n bf16; out may alias a or b (each thread reads before it writes). */
template <int VEC>
__global__ void add_kernel(bf16 *out, const bf16 *a, const bf16 *b, int64_t n) {
    int64_t nv = n / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < nv; i += stride) {
        float x[VEC], y[VEC];
        rg_load_bf16<VEC>(x, a + i * VEC);
        rg_load_bf16<VEC>(y, b + i * VEC);
#pragma unroll
        for (int j = 0; j < VEC; j++) x[j] += y[j];
        rg_store_bf16<VEC>(out + i * VEC, x);
    }
    int64_t i = nv * VEC + tid;
    if (i < n) out[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

rg_status rg_cuda_add(rg_backend *be, void *out, const void *a, const void *b, int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    if (rg_aligned16(out) && rg_aligned16(a) && rg_aligned16(b))
        add_kernel<8><<<rg_cuda_blocks(st, n / 8 + 1, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)out, (const bf16 *)a, (const bf16 *)b, n);
    else
        add_kernel<1><<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)out, (const bf16 *)a, (const bf16 *)b, n);
    RG_CUDA_CHECK_LAUNCH("add_kernel");
    return RG_OK;
}

/* ---- conversion: one element per thread and grid-stride; rounding to nearest even ---- */

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

/* The hot case (the optimizer's f32 master -> bf16 copy is fused into the
 * update; this one serves initialisation and loading): 8 per thread, 16-byte stores. */
__global__ void f32_to_bf16_vec_kernel(bf16 *dst, const float *src, int64_t n8) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
        float4 a = reinterpret_cast<const float4 *>(src)[2 * i];
        float4 b = reinterpret_cast<const float4 *>(src)[2 * i + 1];
        float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        rg_store_bf16<8>(dst + 8 * i, f);
    }
}

template <typename D, typename S>
static rg_status launch_convert(rg_cuda_state *st, void *dst, const void *src, int64_t n) {
    convert_kernel<D, S><<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>((D *)dst, (const S *)src, n);
    RG_CUDA_CHECK_LAUNCH("convert_kernel");
    return RG_OK;
}

rg_status rg_cuda_convert(rg_backend *be, void *dst, rg_dtype dst_dtype, const void *src, rg_dtype src_dtype,
                          int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    if (dst_dtype == src_dtype) {
        if (dst != src)
            RG_CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)n * rg_dtype_size(dst_dtype), cudaMemcpyDeviceToDevice,
                                        st->stream));
        return RG_OK;
    }
    if (src_dtype == RG_DTYPE_F32 && dst_dtype == RG_DTYPE_BF16) {
        int64_t n8 = rg_aligned16(dst) && rg_aligned16(src) ? n / 8 : 0;
        if (n8) {
            f32_to_bf16_vec_kernel<<<rg_cuda_blocks(st, n8, THREADS, 8), THREADS, 0, st->stream>>>(
                (bf16 *)dst, (const float *)src, n8);
            RG_CUDA_CHECK_LAUNCH("f32_to_bf16_vec_kernel");
        }
        if (n8 * 8 == n) return RG_OK;
        return launch_convert<bf16, float>(st, (bf16 *)dst + n8 * 8, (const float *)src + n8 * 8, n - n8 * 8);
    }
    if (src_dtype == RG_DTYPE_BF16 && dst_dtype == RG_DTYPE_F32) return launch_convert<float, bf16>(st, dst, src, n);
    if (src_dtype == RG_DTYPE_F32 && dst_dtype == RG_DTYPE_F16) return launch_convert<__half, float>(st, dst, src, n);
    if (src_dtype == RG_DTYPE_F16 && dst_dtype == RG_DTYPE_F32) return launch_convert<float, __half>(st, dst, src, n);
    return rg_fail(RG_ERR_UNSUPPORTED, "cuda convert: %s -> %s is not supported", rg_dtype_name(src_dtype),
                   rg_dtype_name(dst_dtype));
}

rg_status rg_cuda_zero(rg_backend *be, void *p, size_t bytes) {
    if (bytes) RG_CUDA_TRY(cudaMemsetAsync(p, 0, bytes, rg_cuda(be)->stream));
    return RG_OK;
}

/* ---- second stage of column reductions ----
 * Block (32, 16): x picks a column of a 32-wide strip, y a residue class of
 * parts; each thread sums its parts in order, then y = 0 sums the 16 results
 * in order: the same answer on every run. */
__global__ void add_partials_kernel(float *dst, const float *parts, int n_parts, int64_t n) {
    __shared__ float acc[16][33];
    int64_t col = (int64_t)blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (col < n)
        for (int p = threadIdx.y; p < n_parts; p += 16) s += parts[(int64_t)p * n + col];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < n) {
        float t = 0.0f;
#pragma unroll
        for (int y = 0; y < 16; y++) t += acc[y][threadIdx.x];
        dst[col] += t;
    }
}

rg_status rg_cuda_add_partials(rg_cuda_state *st, float *dst, const float *parts, int n_parts, int64_t n) {
    if (n <= 0) return RG_OK;
    add_partials_kernel<<<(unsigned)((n + 31) / 32), dim3(32, 16), 0, st->stream>>>(dst, parts, n_parts, n);
    RG_CUDA_CHECK_LAUNCH("add_partials_kernel");
    return RG_OK;
}
