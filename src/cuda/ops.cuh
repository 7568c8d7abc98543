/* ops.cuh — the CUDA backend's model ops (one .cu per family: matmul, layernorm,
 * gelu, elementwise, embedding, xent, optimizer): their entry points, with the
 * signatures of rg_backend_ops, and the small device helpers they share
 * (bf16 vector loads, GELU, block sizing). Activations are bf16, everything
 * typed float* is fp32; see src/backend.h for each op's contract. */
#ifndef RG_CUDA_OPS_CUH
#define RG_CUDA_OPS_CUH
#include "cuda/cuda_common.cuh"
#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/* ---- entry points (the table in backend_cuda.cu points at these) ---- */
rg_status rg_cuda_embedding_forward(rg_backend *be, void *out, const int32_t *tokens, const int32_t *pos,
                                    const void *wte, const void *wpe, int64_t T, int C);
rg_status rg_cuda_embedding_backward(rg_backend *be, float *dwte, float *dwpe, const void *dout,
                                     const int32_t *tokens, const int32_t *pos, int64_t T, int C);
rg_status rg_cuda_layernorm_forward(rg_backend *be, void *out, float *mean, float *rstd, const void *inp,
                                    const void *weight, const void *bias, float eps, int64_t T, int C);
rg_status rg_cuda_layernorm_backward(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                     const void *dout, const void *inp, const void *weight,
                                     const float *mean, const float *rstd, int64_t T, int C);
rg_status rg_cuda_matmul_forward(rg_backend *be, void *out, void *pre_gelu, const void *inp,
                                 const void *weight, const void *bias, int64_t T, int C, int OC, int gelu);
rg_status rg_cuda_matmul_backward(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                  const void *dout, const void *inp, const void *weight,
                                  int64_t T, int C, int OC);
rg_status rg_cuda_gelu_forward(rg_backend *be, void *out, const void *inp, int64_t n, int gelu);
rg_status rg_cuda_gelu_backward(rg_backend *be, void *dinp, const void *inp, const void *dout,
                                int64_t n, int gelu);
rg_status rg_cuda_add(rg_backend *be, void *out, const void *a, const void *b, int64_t n);
rg_status rg_cuda_xent_forward_backward(rg_backend *be, float *losses, void *dlogits, const void *logits,
                                        const int32_t *targets, int32_t ignore_index, float dloss,
                                        int64_t T, int V);
rg_status rg_cuda_convert(rg_backend *be, void *dst, rg_dtype dst_dtype, const void *src,
                          rg_dtype src_dtype, int64_t n);
rg_status rg_cuda_zero(rg_backend *be, void *p, size_t bytes);
rg_status rg_cuda_sum_squares(rg_backend *be, double *out_host, const float *g, int64_t n);
rg_status rg_cuda_sgd_update(rg_backend *be, float *param, void *compute, float *momentum_buf,
                             const float *grad, int64_t n, float lr, float momentum,
                             float weight_decay, float grad_scale);
rg_status rg_cuda_adamw_update(rg_backend *be, float *param, void *compute, float *m, float *v,
                               const float *grad, int64_t n, float lr, float beta1, float beta2,
                               float eps, float weight_decay, float grad_scale, int64_t t);

/* Generation (attention_decode.cu, gather.cu, argmax.cu). */
rg_status rg_cuda_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                              const void *k_cache, const void *v_cache);
rg_status rg_cuda_kv_write(rg_backend *be, void *k_cache, void *v_cache, const void *k, int32_t stride_k,
                           const void *v, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row);
rg_status rg_cuda_gather_rows(rg_backend *be, void *out, const void *inp, const int32_t *rows, int64_t n, int C);
rg_status rg_cuda_argmax_rows(rg_backend *be, int32_t *out, const void *x, int64_t n, int V);
rg_status rg_cuda_attn_decode_append(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                     void *k_cache, void *v_cache, const void *k, int32_t stride_k, const void *v,
                                     int32_t stride_v);

/* Replayable op sequences (graph.cu). */
typedef struct rg_cuda_graph rg_cuda_graph;
rg_status rg_cuda_graph_begin(rg_backend *be);
rg_status rg_cuda_graph_end(rg_backend *be, bool failed, void **out);
rg_status rg_cuda_graph_launch(rg_backend *be, void *graph, bool *stale);
void rg_cuda_graph_free(rg_backend *be, void *graph);

rg_status rg_cuda_matmul_forward_residual(rg_backend *be, void *out, const void *inp, const void *weight,
                                          const void *bias, const void *residual, int64_t T, int C, int OC);
rg_status rg_cuda_gelu_backward_dbias(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                      int64_t T, int OC, int gelu);

rg_status rg_cuda_layernorm_backward_sum(rg_backend *be, void *dinp, float *dweight, float *dbias, float *dinp_sum,
                                         const void *dout, const void *inp, const void *weight, const float *mean,
                                         const float *rstd, int64_t T, int C);
/* (linear_infer.cu) the inference projection of generation; see backend.h. */
rg_status rg_cuda_linear_infer(rg_backend *be, void *out, const void *inp, const void *ln_w, const void *ln_b,
                               float eps, const void *weight, const void *bias, const void *residual, int64_t T,
                               int C, int OC, int gelu);
/* (linear_infer.cu) kernel attributes, at backend creation. */
rg_status rg_cuda_linear_infer_init(rg_cuda_state *st);
/* (matmul.cu) dbias (OC) += sum_t dout (T,OC) over bf16 rows, deterministic;
 * uses the scratch area. */
rg_status rg_cuda_bias_grad(rg_cuda_state *st, float *dbias, const bf16 *dout, int64_t T, int OC);

/* Per-op profile (profile.cu). prof_begin records a start event and returns
 * its slot, or -1 when not profiling; prof_end
 * records the stop event and books the pair under (op, shape from fmt) with
 * the call's useful FLOPs and fewest bytes; a slot of -1 does nothing. */
int rg_cuda_prof_begin(rg_cuda_state *st);
void rg_cuda_prof_end(rg_cuda_state *st, int slot, const char *op, double flops, double bytes, const char *fmt, ...);
rg_status rg_cuda_prof_create(rg_cuda_state *st);
void rg_cuda_prof_destroy(rg_cuda_state *st);
/* The profiling table: base with every op wrapped (matmuls time their own parts). */
rg_backend_ops rg_cuda_profile_ops(const rg_backend_ops *base);

/* Our wgmma GEMM (gemm_wgmma.cu, sm_90a): the forward products of matmul.cu.
 * init: true when this device runs the file's sm_90a code (and the tensor-map
 * encoder was found); fits: the shapes and alignments it takes (C % 8 == 0,
 * OC % 8 == 0, 16-byte aligned pointers; NULL pointers are ignored).
 * forward: out (T,OC) = inp (T,C) @ weight^T + bias [+ residual], or with
 * gelu != RG_GELU_NONE pre_gelu = that and out = gelu(pre_gelu), each value
 * rounded to bf16 once; residual and gelu are exclusive. */
bool rg_cuda_wgmma_init(rg_cuda_state *st);
bool rg_cuda_wgmma_fits(const void *out, const void *pre_gelu, const void *inp, const void *weight,
                        const void *bias, const void *residual, int64_t T, int C, int OC);
rg_status rg_cuda_wgmma_forward(rg_cuda_state *st, void *out, void *pre_gelu, const void *inp, const void *weight,
                                const void *bias, const void *residual, int64_t T, int C, int OC, int gelu);

/* cuBLASLt plan cache (matmul.cu), created/destroyed with the backend. */
rg_status rg_cuda_matmul_init(rg_cuda_state *st);
void rg_cuda_matmul_destroy(rg_cuda_state *st);

/* dst[i] += sum_{p < n_parts} parts[p * n + i] for i < n, in order p = 0, 1, ...
 * (elementwise.cu): the second, deterministic stage of the column reductions
 * that layernorm and matmul backward leave in scratch. */
rg_status rg_cuda_add_partials(rg_cuda_state *st, float *dst, const float *parts, int n_parts, int64_t n);

/* ---- device helpers ---- */

/* True when every pointer given is 16-byte aligned (for 8 x bf16 vector loads). */
static inline bool rg_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Blocks for a grid-stride loop over n items of `per_block` each: enough to
 * fill every multiprocessor a few times, never more than needed. */
static inline unsigned rg_cuda_blocks(const rg_cuda_state *st, int64_t n, int per_block, int per_sm) {
    int64_t need = (n + per_block - 1) / per_block;
    int64_t cap = (int64_t)st->prop.multiProcessorCount * per_sm;
    if (need < 1) need = 1;
    return (unsigned)(need < cap ? need : cap);
}

/* VEC consecutive bf16 <-> float; VEC is 8 (one 16-byte access, p aligned) or 1. */
/* The 8 bf16 of a 16-byte word as floats. */
__device__ __forceinline__ void rg_unpack_bf16x8(float (&f)[8], uint4 u) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __bfloat1622float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

template <int VEC>
__device__ __forceinline__ void rg_load_bf16(float (&f)[VEC], const bf16 *p) {
    if constexpr (VEC == 8) {
        rg_unpack_bf16x8(f, *reinterpret_cast<const uint4 *>(p));
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) f[i] = __bfloat162float(p[i]);
    }
}

template <int VEC>
__device__ __forceinline__ void rg_store_bf16(bf16 *p, const float (&f)[VEC]) {
    if constexpr (VEC == 8) {
        uint4 u;
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        *reinterpret_cast<uint4 *>(p) = u;
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) p[i] = __float2bfloat16_rn(f[i]);
    }
}

/* Programmatic dependent launch (Hopper; no-ops before sm_90). A kernel
 * launched with rg_cuda_launch_cfg(..., pdl = true, ...) may start while the kernel before it in the
 * stream still runs: before rg_pdl_wait it may read only what no kernel of
 * the last two writes (weights, buffers uploaded before the step), after it
 * everything; rg_pdl_launch_dependents right after the wait lets the next
 * kernel start (never before the wait: the next kernel's reads before its own
 * wait rely on the kernel before this one having finished). */
__device__ __forceinline__ void rg_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void rg_pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/* The cudaLaunchKernelEx configuration of grid x block (smem: dynamic
 * shared bytes) on the backend's stream, launched with programmatic
 * dependent launch when pdl and the device has it (Hopper). Its attributes
 * live in attr, which needs room for every attribute the caller appends
 * (rg_cuda_cfg_cluster: one more). */
static inline cudaLaunchConfig_t rg_cuda_launch_cfg(const rg_cuda_state *st, dim3 grid, dim3 block, size_t smem,
                                                    bool pdl, cudaLaunchAttribute *attr) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st->stream;
    cfg.attrs = attr;
    if (pdl && st->prop.major >= 9) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.numAttrs = 1;
    }
    return cfg;
}
/* Appends to cfg a cluster dimension of x CTAs (Hopper thread-block clusters). */
static inline void rg_cuda_cfg_cluster(cudaLaunchConfig_t *cfg, unsigned x) {
    cudaLaunchAttribute *a = &cfg->attrs[cfg->numAttrs++];
    a->id = cudaLaunchAttributeClusterDimension;
    a->val.clusterDim.x = x;
    a->val.clusterDim.y = 1;
    a->val.clusterDim.z = 1;
}

/* Sum over a warp, every lane gets the result (fixed order: deterministic). */
__device__ __forceinline__ float rg_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* (gelu.cu) Builds the exact-GELU table in st->gelu_lut (at backend creation). */
rg_status rg_cuda_gelu_init(rg_cuda_state *st);

/* (gelu.cu) x = pre + bias[col] over a (rows, cols) bf16 matrix (bias may be
 * NULL). gelu == RG_GELU_NONE: out = x (out may be pre). Otherwise pre = x
 * and out = gelu(x), x rounded to bf16 first. The matmul's epilogue when
 * cuBLASLt's cannot be used (always for the erf kind). */
rg_status rg_cuda_bias_gelu(rg_cuda_state *st, bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows,
                            int cols, int gelu);

#endif
