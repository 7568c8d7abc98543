/* backend_cuda.cu — the CUDA backend's table: device memory on one stream, and
 * dispatch to the kernels (one .cu file per op family, named as in src/cpu). */
#include "cuda/cuda_common.cuh"
#include "cuda/attention_common.cuh"
#include "cuda/ops.cuh"
#include <stdlib.h>
#include <string.h>

/* Fixed buffers of the model ops, sized once so that no op allocates:
 * cuBLASLt's workspace (32 MiB, NVIDIA's advice for Hopper) and a scratch
 * area for reductions and sorts (partials of at most a few MiB at the seed's
 * shapes; embedding sorts need 12 bytes per token plus CUB's temporary). */
#define RG_CUDA_LT_WORKSPACE (32u << 20)
#define RG_CUDA_SCRATCH (32u << 20)

/* Releases what rg_backend_cuda_create made; safe on a partly built state. */
static void cuda_state_free(rg_cuda_state *st) {
    if (!st) return;
    rg_cuda_prof_destroy(st);
    rg_cuda_matmul_destroy(st);
    rg_cuda_attn_ws_free(st->attn);
    if (st->dec_ws) cudaFree(st->dec_ws);
    if (st->lt) cublasLtDestroy(st->lt);
    if (st->lt_workspace) cudaFree(st->lt_workspace);
    if (st->scratch) cudaFree(st->scratch);
    if (st->host_result) cudaFreeHost(st->host_result);
    if (st->gelu_lut) cudaFree(st->gelu_lut);
    if (st->stream) cudaStreamDestroy(st->stream);
    free(st);
}

static void cuda_destroy(rg_backend *be) {
    cuda_state_free(rg_cuda(be));
    free(be);
}

static rg_status cuda_alloc(rg_backend *be, size_t bytes, void **out) {
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *out = NULL;
        cudaGetLastError(); /* clear the sticky-free error so later calls work */
        return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                       "cuda: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    return RG_OK;
}

static void cuda_free(rg_backend *be, void *p) { cudaFree(p); }

static rg_status cuda_upload(rg_backend *be, void *dst, const void *src, size_t bytes) {
    RG_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, rg_cuda(be)->stream));
    return RG_OK;
}

static rg_status cuda_download(rg_backend *be, void *dst, const void *src, size_t bytes) {
    RG_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, rg_cuda(be)->stream));
    RG_CUDA_TRY(cudaStreamSynchronize(rg_cuda(be)->stream));
    return RG_OK;
}

static rg_status cuda_sync(rg_backend *be) {
    RG_CUDA_TRY(cudaStreamSynchronize(rg_cuda(be)->stream));
    return RG_OK;
}

/* Attention: our own tensor-core kernels (attention_fwd.cu, attention_bwd.cu). */
static rg_status cuda_attn_forward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                                   const void *v, void *o, float *lse) {
    return rg_cuda_attn_forward(be, a, q, k, v, o, lse);
}

static rg_status cuda_attn_backward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                                    const void *v, const void *o, const float *lse, const void *dout,
                                    void *dq, void *dk, void *dv) {
    return rg_cuda_attn_backward(be, a, q, k, v, o, lse, dout, dq, dk, dv);
}

static rg_backend_ops make_ops(void) {
    rg_backend_ops o = {};
    o.name = "cuda";
    o.act_dtype = RG_DTYPE_BF16;
    o.destroy = cuda_destroy;
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.upload = cuda_upload;
    o.download = cuda_download;
    o.sync = cuda_sync;
    o.attn_forward = cuda_attn_forward;
    o.attn_backward = cuda_attn_backward;
    o.embedding_forward = rg_cuda_embedding_forward;
    o.embedding_backward = rg_cuda_embedding_backward;
    o.layernorm_forward = rg_cuda_layernorm_forward;
    o.layernorm_backward = rg_cuda_layernorm_backward;
    o.matmul_forward = rg_cuda_matmul_forward;
    o.matmul_backward = rg_cuda_matmul_backward;
    o.gelu_forward = rg_cuda_gelu_forward;
    o.gelu_backward = rg_cuda_gelu_backward;
    o.add = rg_cuda_add;
    o.xent_forward_backward = rg_cuda_xent_forward_backward;
    o.convert = rg_cuda_convert;
    o.zero = rg_cuda_zero;
    o.sum_squares = rg_cuda_sum_squares;
    o.sgd_update = rg_cuda_sgd_update;
    o.adamw_update = rg_cuda_adamw_update;
    o.attn_decode = rg_cuda_attn_decode;
    o.kv_write = rg_cuda_kv_write;
    o.gather_rows = rg_cuda_gather_rows;
    o.argmax_rows = rg_cuda_argmax_rows;
    o.matmul_forward_residual = rg_cuda_matmul_forward_residual;
    o.gelu_backward_dbias = rg_cuda_gelu_backward_dbias;
    o.layernorm_backward_sum = rg_cuda_layernorm_backward_sum;
    o.graph_begin = rg_cuda_graph_begin;
    o.graph_end = rg_cuda_graph_end;
    o.graph_launch = rg_cuda_graph_launch;
    o.graph_free = rg_cuda_graph_free;
    o.linear_infer = rg_cuda_linear_infer;
    o.attn_decode_append = rg_cuda_attn_decode_append;
    return o;
}
static const rg_backend_ops cuda_ops = make_ops();
/* RG_PROFILE=1: the same ops, each timed (profile.cu). */
static const rg_backend_ops cuda_ops_profiled = rg_cuda_profile_ops(&cuda_ops);

static bool profile_requested(void) {
    const char *e = getenv("RG_PROFILE");
    return e && *e && strcmp(e, "0") != 0;
}

extern "C" bool rg_backend_cuda_device_present(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return false; }
    return n > 0;
}

extern "C" rg_status rg_backend_cuda_create(rg_backend **out) {
    if (!rg_backend_cuda_device_present())
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_backend_init: no CUDA device is present");
    rg_backend *be = (rg_backend *)calloc(1, sizeof *be);
    rg_cuda_state *st = (rg_cuda_state *)calloc(1, sizeof *st);
    if (!be || !st) {
        free(be); free(st);
        return rg_fail(RG_ERR_OUT_OF_MEMORY, "rg_backend_init: cannot allocate the CUDA backend");
    }
    be->ops = &cuda_ops;
    be->kind = RG_BACKEND_CUDA;
    be->n_threads = 1;
    be->impl = st;
    /* Decode steps of more sequences than this write the new K/V with
     * kv_write and attend with the plain op: a decode step's kernels in one
     * graph on an H100 (cuda_decode_bench step, 2026-11-22 12:20 UTC), fused
     * vs plain, us: 263 vs 297 at 1 sequence, 322 vs 370 at 2, 336 vs 389 at
     * 4, 482 vs 475 at 8, 593 vs 574 at 16, 946 vs 889 at 64 (from 8 on the
     * projections before it run on cuBLASLt, so its early start buys nothing
     * and its longer kernel costs). */
    be->decode_append_max_seqs = 4;
    const char *what = "cudaGetDevice";
    cudaError_t e = cudaGetDevice(&st->device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&st->prop, st->device), what = "cudaGetDeviceProperties";
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking), what = "cudaStreamCreate";
    if (e == cudaSuccess) {
        st->lt_workspace_bytes = RG_CUDA_LT_WORKSPACE;
        e = cudaMalloc(&st->lt_workspace, st->lt_workspace_bytes), what = "cudaMalloc (cuBLASLt workspace)";
    }
    if (e == cudaSuccess) {
        st->scratch_bytes = RG_CUDA_SCRATCH;
        e = cudaMalloc(&st->scratch, st->scratch_bytes), what = "cudaMalloc (scratch)";
    }
    if (e == cudaSuccess) e = cudaMallocHost((void **)&st->host_result, sizeof(double)), what = "cudaMallocHost";
    if (e != cudaSuccess) {
        cudaGetLastError();
        cuda_state_free(st);
        free(be);
        return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                       "rg_backend_init: cuda: %s: %s", what, cudaGetErrorString(e));
    }
    cublasStatus_t b = cublasLtCreate(&st->lt);
    if (b != CUBLAS_STATUS_SUCCESS) {
        st->lt = NULL;
        cuda_state_free(st);
        free(be);
        return rg_fail(RG_ERR_BACKEND, "rg_backend_init: cublasLtCreate: %s", cublasLtGetStatusString(b));
    }
    rg_status s = rg_cuda_matmul_init(st);
    if (s == RG_OK) s = rg_cuda_gelu_init(st);
    if (s == RG_OK) s = rg_cuda_linear_infer_init(st);
    if (s == RG_OK && profile_requested()) {
        s = rg_cuda_prof_create(st);
        be->ops = &cuda_ops_profiled;
    }
    if (s != RG_OK) {
        cuda_state_free(st);
        free(be);
        return s;
    }
    *out = be;
    return RG_OK;
}
