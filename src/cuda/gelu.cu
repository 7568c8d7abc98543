/* gelu.cu — GELU forward/backward on bf16 (n elements) and the bias + GELU
 * pass that completes a matmul when cuBLASLt's epilogue is not used (the
 * exact erf GELU, which cuBLASLt does not offer). fp32 arithmetic, one
 * rounding to bf16 per stored value; 16-byte accesses when aligned. */
#include "cuda/ops.cuh"

#define THREADS 256

template <int VEC>
__global__ void gelu_forward_kernel(bf16 *out, const bf16 *inp, int64_t n, int kind) {
    int64_t nv = n / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < nv; i += stride) {
        float x[VEC];
        rg_load_bf16<VEC>(x, inp + i * VEC);
#pragma unroll
        for (int j = 0; j < VEC; j++) x[j] = kind == RG_GELU_NONE ? x[j] : rg_gelu(x[j], kind);
        rg_store_bf16<VEC>(out + i * VEC, x);
    }
    int64_t i = nv * VEC + tid; /* the n % VEC tail */
    if (i < n) {
        float x = __bfloat162float(inp[i]);
        out[i] = __float2bfloat16_rn(kind == RG_GELU_NONE ? x : rg_gelu(x, kind));
    }
}

template <int VEC>
__global__ void gelu_backward_kernel(bf16 *dinp, const bf16 *inp, const bf16 *dout, int64_t n, int kind) {
    int64_t nv = n / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < nv; i += stride) {
        float x[VEC], d[VEC];
        rg_load_bf16<VEC>(x, inp + i * VEC);
        rg_load_bf16<VEC>(d, dout + i * VEC);
#pragma unroll
        for (int j = 0; j < VEC; j++) d[j] = kind == RG_GELU_NONE ? d[j] : d[j] * rg_gelu_grad(x[j], kind);
        rg_store_bf16<VEC>(dinp + i * VEC, d);
    }
    int64_t i = nv * VEC + tid;
    if (i < n) {
        float x = __bfloat162float(inp[i]), d = __bfloat162float(dout[i]);
        dinp[i] = __float2bfloat16_rn(kind == RG_GELU_NONE ? d : d * rg_gelu_grad(x, kind));
    }
}

/* pre, out (rows, cols); VEC divides cols, so a vector never crosses a row. */
template <int VEC>
__global__ void bias_gelu_kernel(bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows, int cols, int kind) {
    int64_t nv = rows * cols / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nv; i += stride) {
        int col = (int)((i * VEC) % cols);
        float x[VEC];
        rg_load_bf16<VEC>(x, pre + i * VEC);
        if (bias) {
            float b[VEC];
            rg_load_bf16<VEC>(b, bias + col);
#pragma unroll
            for (int j = 0; j < VEC; j++) x[j] += b[j];
        }
        if (kind != RG_GELU_NONE) {
            if (bias) rg_store_bf16<VEC>(pre + i * VEC, x);
#pragma unroll
            for (int j = 0; j < VEC; j++) x[j] = rg_gelu(x[j], kind);
        }
        rg_store_bf16<VEC>(out + i * VEC, x);
    }
}

rg_status rg_cuda_gelu_forward(rg_backend *be, void *out, const void *inp, int64_t n, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    if (rg_aligned16(out) && rg_aligned16(inp)) {
        gelu_forward_kernel<8><<<rg_cuda_blocks(st, n / 8 + 1, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)out, (const bf16 *)inp, n, gelu);
    } else {
        gelu_forward_kernel<1><<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)out, (const bf16 *)inp, n, gelu);
    }
    RG_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
    return RG_OK;
}

rg_status rg_cuda_gelu_backward(rg_backend *be, void *dinp, const void *inp, const void *dout, int64_t n,
                                int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    if (rg_aligned16(dinp) && rg_aligned16(inp) && rg_aligned16(dout)) {
        gelu_backward_kernel<8><<<rg_cuda_blocks(st, n / 8 + 1, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)dinp, (const bf16 *)inp, (const bf16 *)dout, n, gelu);
    } else {
        gelu_backward_kernel<1><<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(
            (bf16 *)dinp, (const bf16 *)inp, (const bf16 *)dout, n, gelu);
    }
    RG_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
    return RG_OK;
}

rg_status rg_cuda_bias_gelu(rg_cuda_state *st, bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows,
                            int cols, int gelu) {
    if (rows <= 0 || cols <= 0) return RG_OK;
    int64_t n = rows * cols;
    if (cols % 8 == 0 && rg_aligned16(out) && rg_aligned16(pre) && (!bias || rg_aligned16(bias))) {
        bias_gelu_kernel<8><<<rg_cuda_blocks(st, n / 8, THREADS, 8), THREADS, 0, st->stream>>>(
            out, pre, bias, rows, cols, gelu);
    } else {
        bias_gelu_kernel<1><<<rg_cuda_blocks(st, n, THREADS, 8), THREADS, 0, st->stream>>>(
            out, pre, bias, rows, cols, gelu);
    }
    RG_CUDA_CHECK_LAUNCH("bias_gelu_kernel");
    return RG_OK;
}
