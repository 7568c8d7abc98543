/* attention_common.cuh — shared by the CUDA varlen attention kernels
 * (attention_fwd.cu, attention_bwd.cu): tensor-core primitives (mma.sync
 * m16n8k16 bf16, ldmatrix, cp.async), cooperative tile loads into padded shared
 * memory, the tile schedule (a prefix sum over sequences, heaviest tiles first)
 * and the lazily grown workspace kept in the backend's state.
 *
 * Layouts (FlashAttention's varlen contract, see ragged.h section 3):
 *   q (total_q, h, d), k and v (total_k, h_kv, d), rows strided by stride_q/k/v;
 *   o and dout (total_q, h, d) contiguous; lse (h, total_q) fp32.
 * Kernels are templated on a compiled head dim D >= d (d a multiple of 8):
 * columns d..D-1 are zero-filled on load and never stored. */
#ifndef RG_CUDA_ATTENTION_COMMON_CUH
#define RG_CUDA_ATTENTION_COMMON_CUH
#include "cuda/cuda_common.cuh"
#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 rg_bf16;

#define RG_LOG2E 1.4426950408889634f
#define RG_LN2 0.6931471805599453f

/* ---- PTX wrappers ------------------------------------------------------ */

__device__ __forceinline__ uint32_t rg_smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte async copy global -> shared; when !valid nothing is read and the
 * destination is zero-filled (src must still be a mapped address). */
__device__ __forceinline__ void rg_cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void rg_cp_async4(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void rg_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void rg_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void rg_ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                           uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void rg_ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                             uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col). Fragment layouts
 * (g = lane/4, t = lane%4): c0,c1 at (g, 2t..2t+1), c2,c3 at (g+8, 2t..);
 * a regs: (g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..);
 * b regs: (k 2t.., n g), (k 2t+8.., n g). */
__device__ __forceinline__ void rg_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats -> one register of two bf16 (lo in the low half). */
__device__ __forceinline__ uint32_t rg_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* dst[0..1] += v atomically (fp32); one vector atomic on sm_90. */
__device__ __forceinline__ void rg_atomic_add2(float *dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(dst), make_float2(a, b));
#else
    atomicAdd(dst, a);
    atomicAdd(dst + 1, b);
#endif
}

/* A compile-time bool as a value, for generic lambdas with a fast and a boundary path. */
template <bool B> struct rg_bool { static constexpr bool value = B; };

/* ---- tiles in shared memory -------------------------------------------- */

/* Shared-memory row stride of a D-wide bf16 tile: one 16-byte pad per row
 * makes the 8 row addresses of an ldmatrix fall in 8 distinct bank groups
 * (D/8 + 1 is odd for every compiled D). */
template <int D> struct rg_tile { static constexpr int STR = D + 8; };

/* Copies rows [0, nrows) x columns [0, d) of a (rows, stride) bf16 tile into
 * shared memory (ROWS x D, row stride D + 8); the rest is zero-filled.
 * nrows >= 1 (g is read only for valid rows). */
template <int ROWS, int D, int NTHREADS>
__device__ __forceinline__ void rg_load_tile(rg_bf16 *s, const rg_bf16 *g, int64_t stride, int nrows,
                                             int dch) {
    constexpr int CH = D / 8;
    constexpr int STR = rg_tile<D>::STR;
#pragma unroll
    for (int i = 0; i < (ROWS * CH + NTHREADS - 1) / NTHREADS; i++) {
        const int idx = threadIdx.x + i * NTHREADS;
        if ((ROWS * CH) % NTHREADS != 0 && idx >= ROWS * CH) break;
        int r = idx / CH, c = idx % CH;
        bool ok = r < nrows && c < dch;
        const rg_bf16 *src = ok ? g + (int64_t)r * stride + c * 8 : g;
        rg_cp_async16(rg_smem_u32(s + r * STR + c * 8), src, ok);
    }
}

/* ---- schedule and workspace --------------------------------------------- */

/* A cached tile schedule: items[i] = (sequence, tile) sorted by decreasing cost,
 * built on the device from cu_seqlens and reused while the batch's host
 * cu_seqlens and the tile shape are unchanged. */
typedef struct rg_attn_sched {
    int2 *items;          /* device, cap entries */
    int64_t cap;
    int64_t n_items;
    int key_valid;
    int key_mode, key_tile, key_unit, key_causal, key_batch;
    int32_t *key_cu;      /* host copy of cu_seqlens_q then cu_seqlens_k, 2 * (batch + 1) */
    int64_t key_cap;
} rg_attn_sched;

enum { RG_SCHED_FWD = 0, RG_SCHED_BWD = 1 };

/* The attention workspace in the backend's state (rg_cuda_state.attn):
 * grown on demand, reused, freed with the backend. */
typedef struct rg_cuda_attn_ws {
    void *buf;            /* backward: dq accumulator (fp32) + D = rowsum(dO*O) (fp32) */
    size_t size;
    rg_attn_sched sched[2];
    int fwd_variant, bwd_variant;   /* -1: automatic (the lab overrides) */
} rg_cuda_attn_ws;

rg_status rg_cuda_attn_ws_get(rg_backend *be, rg_cuda_attn_ws **out);
rg_status rg_cuda_attn_ws_reserve(rg_backend *be, size_t bytes, void **buf);
/* Builds (or reuses) the schedule of tiles of `tile` rows over the query
 * (RG_SCHED_FWD) or key (RG_SCHED_BWD) rows of every sequence; cost is counted
 * in blocks of `unit` rows of the other side. */
rg_status rg_cuda_attn_schedule(rg_backend *be, const rg_attn_args *a, int mode, int tile, int unit,
                                const int2 **items, int64_t *n_items);

/* Checks the 16-byte alignment that cp.async needs. */
rg_status rg_cuda_attn_check_align(const char *fn, const rg_attn_args *a, const void *q, const void *k,
                                   const void *v, const void *o);

/* Entry points behind the backend table (backend_cuda.cu). */
rg_status rg_cuda_attn_forward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                               const void *v, void *o, float *lse);
rg_status rg_cuda_attn_backward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                                const void *v, const void *o, const float *lse, const void *dout,
                                void *dq, void *dk, void *dv);
void rg_cuda_attn_ws_free(rg_cuda_attn_ws *ws);

/* Kernel lab hooks (bench/cuda_attn_lab.c): pick a kernel variant for the
 * compiled head dim (-1 = automatic) and list them. */
extern "C" int rg_cuda_attn_set_variant(rg_backend *be, int fwd, int bwd);
extern "C" const char *rg_cuda_attn_variant_name(int bwd, int head_dim, int variant);
extern "C" void *rg_cuda_stream_of(rg_backend *be);

#endif
