/* cuda_common.cuh — shared by the CUDA backend's files: error mapping (CUDA
 * failures become RG_ERR_BACKEND with the call and its message, never aborts)
 * and the backend's private state. */
#ifndef RG_CUDA_COMMON_CUH
#define RG_CUDA_COMMON_CUH
#include <cuda_runtime.h>
#include <cublasLt.h>
extern "C" {
#include "backend.h"
#include "core/status.h"
}

struct rg_cuda_mm_cache; /* cuBLASLt plans by shape (matmul.cu) */
struct rg_cuda_attn_ws;  /* attention workspace (attention_common.cuh) */
typedef struct rg_cuda_prof rg_cuda_prof; /* per-op profile (profile.cu) */

typedef struct rg_cuda_state {
    int device;
    cudaStream_t stream;
    cudaDeviceProp prop;
    /* model ops (created in rg_backend_cuda_create, sizes fixed there so that
     * no op allocates): */
    cublasLtHandle_t lt;
    void *lt_workspace;           /* cuBLASLt workspace, lt_workspace_bytes */
    size_t lt_workspace_bytes;
    void *scratch;                /* per-op partial sums, sort buffers; scratch_bytes */
    size_t scratch_bytes;
    double *host_result;          /* pinned, sum_squares' readback */
    void *gelu_lut;               /* exact GELU of bf16 inputs (gelu.cu) */
    struct rg_cuda_mm_cache *mm;
    struct rg_cuda_attn_ws *attn;   /* attention workspace, grown on demand (attention_common.cuh) */
    rg_cuda_prof *prof;           /* NULL unless RG_PROFILE=1 at creation (profile.cu) */
    /* decode step graphs (graph.cu): the decode attention's own workspace
     * (attention_decode.cu) and a counter bumped whenever it moves, so that a
     * graph that baked the old address in is known stale */
    void *dec_ws;                 /* counters (dec_ws_counters int32, zero between calls), then partials */
    size_t dec_ws_bytes, dec_ws_counters;
    uint64_t ws_gen;
    /* gemm_wgmma.cu: CTAs per cluster (2, or 1 with RG_WGMMA_CLUSTER=1 at
     * creation: the v5 arrangement, for comparisons) and how many such
     * clusters the device holds at once (its persistent grid) */
    int wgmma_cluster, wgmma_clusters;
} rg_cuda_state;

static inline rg_cuda_state *rg_cuda(rg_backend *be) { return (rg_cuda_state *)be->impl; }

#define RG_CUDA_TRY(call)                                                                           \
    do {                                                                                            \
        cudaError_t rg_e_ = (call);                                                                 \
        if (rg_e_ != cudaSuccess)                                                                   \
            return rg_fail(rg_e_ == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND, \
                           "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(rg_e_));   \
    } while (0)

#define RG_CUBLAS_TRY(call)                                                                         \
    do {                                                                                            \
        cublasStatus_t rg_b_ = (call);                                                              \
        if (rg_b_ != CUBLAS_STATUS_SUCCESS)                                                         \
            return rg_fail(rg_b_ == CUBLAS_STATUS_ALLOC_FAILED ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND, \
                           "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasLtGetStatusString(rg_b_)); \
    } while (0)

/* After a kernel launch: a bad launch configuration is reported here, naming
 * the kernel (cudaGetLastError clears it so that later ops are not blamed). */
#define RG_CUDA_CHECK_LAUNCH(what)                                                                  \
    do {                                                                                            \
        cudaError_t rg_e_ = cudaGetLastError();                                                     \
        if (rg_e_ != cudaSuccess)                                                                   \
            return rg_fail(RG_ERR_BACKEND, "%s:%d: launch of %s: %s", __FILE__, __LINE__, (what),   \
                           cudaGetErrorString(rg_e_));                                              \
    } while (0)

/* tanh-approximated GELU in fp32, one definition for every kernel that
 * applies it (gelu.cu, linear_infer.cu, gemm_wgmma.cu's epilogues). */
__device__ __forceinline__ float rg_gelu_tanh(float x) { /* 0.5 x (1 + tanh u) = x / (1 + e^(-2u)) */
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return x / (1.0f + __expf(-2.0f * u));
}

#endif
