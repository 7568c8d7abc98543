/* cuda_common.cuh — shared by the CUDA backend's files: error mapping (CUDA
 * failures become RG_ERR_BACKEND with the call and its message, never aborts)
 * and the backend's private state. */
#ifndef RG_CUDA_COMMON_CUH
#define RG_CUDA_COMMON_CUH
#include <cuda_runtime.h>
extern "C" {
#include "backend.h"
#include "core/status.h"
}

struct rg_cuda_attn_ws;

typedef struct rg_cuda_state {
    int device;
    cudaStream_t stream;
    cudaDeviceProp prop;
    struct rg_cuda_attn_ws *attn;   /* attention workspace, grown on demand (attention_common.cuh) */
} rg_cuda_state;

static inline rg_cuda_state *rg_cuda(rg_backend *be) { return (rg_cuda_state *)be->impl; }

#define RG_CUDA_TRY(call)                                                                           \
    do {                                                                                            \
        cudaError_t rg_e_ = (call);                                                                 \
        if (rg_e_ != cudaSuccess)                                                                   \
            return rg_fail(rg_e_ == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND, \
                           "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(rg_e_));   \
    } while (0)

/* After a kernel launch: a bad launch configuration is reported here. */
#define RG_CUDA_CHECK_LAUNCH(what) RG_CUDA_TRY(cudaPeekAtLastError())

#endif
