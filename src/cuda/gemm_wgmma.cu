/* gemm_wgmma.cu — our own forward GEMM for Hopper (sm_90a): out (T,OC) =
 * inp (T,C) @ W^T with W (OC,C) row-major (torch Linear), bf16 in, fp32
 * accumulation, one rounding to bf16 per stored value, and the epilogues of
 * matmul_forward / matmul_forward_residual (src/backend.h):
 *   bias (may be NULL);  bias + GELU (erf or tanh) storing pre_gelu and out;
 *   bias + residual (residual may be out itself).
 * Both operands are K-major, wgmma's natural layout. Persistent CTAs (grid =
 * SM count) walk 128 x 128 tiles of out in a grouped order (neighbours share
 * operands in L2). Warpgroup 0 is the producer: one thread issues TMA loads of
 * 128 x 64 bf16 boxes of inp and W into 128-byte swizzled shared memory, a
 * ring of STAGES stages with a full/empty mbarrier pair each. Warpgroups 1
 * and 2 take alternate tiles ("ping-pong"): each owns a whole tile (two
 * wgmma m64n128k16 per 16-deep k step, 128 fp32 accumulators a thread), their
 * main loops take turns, so one's epilogue (registers -> bias / GELU /
 * residual -> 16-byte stores) runs while the other keeps the tensor cores busy.
 * CTAs run in clusters of CL (2 by default, v6): the pair takes the tiles
 * (m, 2p) and (m, 2p + 1), so they share the 128 x 64 box of inp at every k
 * step; each CTA loads one 64-row half of it with a TMA multicast that lands
 * in both CTAs' shared memory (L2 -> SM bytes per k step 24 KB instead of 32;
 * v5's main loop, at ~8.7 TB/s of L2 reads, was bound there). Each CTA's
 * "empty" barrier then counts the consumer warps of both CTAs.
 * Edges: TMA zero-fills rows past T or OC and columns past C, so the products
 * there are 0; the epilogue masks its stores to row < T, col < OC.
 * Requirements (else the caller uses cuBLASLt): an sm_90 device running this
 * file's sm_90a code, C % 8 == 0 and OC % 8 == 0 (TMA needs 16-byte row
 * strides; the epilogue stores 8-column blocks), every pointer 16-byte
 * aligned, T < 2^31 (TMA coordinates are int32).
 * Tensor maps are encoded per call with cuTensorMapEncodeTiled, obtained
 * through cudaGetDriverEntryPointByVersion so that nothing links libcuda.
 * Versions and their timings: bench/cuda_ops_NOTES.md, "wgmma GEMM". */
#include "cuda/ops.cuh"
#include <cuda.h>
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */
#include <stdlib.h>
#include <string.h>

#define BM 128          /* tile rows (tokens) */
#define BN 128          /* tile columns (output features) */
#define BK 64           /* 64 bf16 = 128 bytes: one swizzle row */
#define STAGES 6
#define A_BYTES (BM * BK * 2)
#define B_BYTES (BN * BK * 2)
#define STAGE_BYTES (A_BYTES + B_BYTES)
#define GL_N (2 * 22 * 128) /* entries of the exact-GELU table (below) */
/* 1024: slack to align the tiles; then the stages, the barriers, the GELU table */
#define SMEM_BYTES (1024 + STAGES * STAGE_BYTES + (2 * STAGES + 2) * 8 + GL_N * 2)
#define THREADS 384     /* producer warpgroup + two consumer warpgroups, a tile each */
#define GROUP_M 16      /* m-tiles per group of the tile order */

/* The exact-GELU table of gelu.cu (st->gelu_lut): gelu(x) correctly rounded to
 * bf16 for the 5632 bf16 patterns with biased exponent in [111, 133), indexed
 * by (sign * 22 + exponent - 111) * 128 + mantissa; closed forms outside. */
#define GL_E_LO 111
#define GL_NEXP 22
#define INV_SQRT_2PI 0.3989422804014327f

enum { EPI_PLAIN = 0, EPI_ERF = 1, EPI_TANH = 2, EPI_RESID = 3 };

typedef struct gemm_args {
    bf16 *out, *pre;            /* pre: pre_gelu (GELU epilogues) */
    const bf16 *bias, *resid;   /* bias may be NULL; resid: EPI_RESID */
    const uint16_t *lut;        /* EPI_ERF */
    int T, C, OC;
    int m_tiles, n_tiles, n_groups; /* n_groups = ceil(n_tiles / CL) */
    int units;                      /* m_tiles * n_groups: the clusters' work items */
} gemm_args;

/* Set by the device pass that compiled the kernels for real: the host reads it
 * to know that the code loaded for this device is the sm_90a one. */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ int rg_wgmma_compiled = 1;
#else
__device__ int rg_wgmma_compiled = 0;
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RG_WGMMA_DEVICE 1

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *b, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}

/* Waits until the phase of parity `parity` of barrier b has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT_%=;\n"
        "}\n" ::"r"(smem_u32(b)), "r"(parity) : "memory");
}

/* Arrives on barrier b (a local address) of the cluster's CTA `rank`, with
 * the default (CTA-scope release) semantics: the stage's readers are wgmma
 * operations already waited for. v6's first build asked for cluster-scope
 * release: a MEMBAR.ALL.GPU before each arrive, two per warp and k-step,
 * which made the kernel 2.5x slower (and the producer's cluster-scope
 * acquire wait an L1 invalidation per k-step). */
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *b, uint32_t rank) {
    asm volatile(
        "{\n"
        ".reg .b32 ra;\n"
        "mapa.shared::cluster.u32 ra, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [ra];\n"
        "}\n" ::"r"(smem_u32(b)), "r"(rank) : "memory");
}

__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

/* Every thread of every CTA of the cluster (not .aligned: the producer warp
 * reaches the final one after a divergent loop). */
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}

/* TMA multicast: the box at (k, row) lands at dst in every CTA of mask, each
 * completing on its own barrier at bar's offset. */
__device__ __forceinline__ void tma_load_mc(void *dst, const CUtensorMap *map, int k, int row, uint64_t *bar,
                                            uint16_t mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%2, %3}], [%4], %5;"
        ::"r"(smem_u32(dst)), "l"((uint64_t)map), "r"(k), "r"(row), "r"(smem_u32(bar)), "h"(mask) : "memory");
}

/* TMA: the (BK x rows) box at (k, row) of map into dst; completes on bar. */
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, int k, int row, uint64_t *bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
        ::"r"(smem_u32(dst)), "l"((uint64_t)map), "r"(k), "r"(row), "r"(smem_u32(bar)) : "memory");
}

/* Shared-memory matrix descriptor of a K-major tile with 128-byte swizzle:
 * rows of 128 bytes, groups of 8 rows 1024 bytes apart (stride byte offset),
 * the leading byte offset unused for this layout (1), tile 1024-aligned. */
__device__ __forceinline__ uint64_t smem_desc(const void *tile) {
    uint64_t a = smem_u32(tile);
    return ((a & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

/* One wgmma m64n128k16 (bf16 in, fp32 accumulate) of the warpgroup: d (64 x 128,
 * 64 fp32 registers a thread) += A (64 x 16, smem descriptor da) * B (128 x 16,
 * smem descriptor db)^T, both K-major. Written out because asm needs every
 * accumulator register named. */
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(1));
}

/* Pins the accumulators in place around wgmma: the registers wgmma writes
 * asynchronously must not be read or moved by the compiler in between. */
__device__ __forceinline__ void fence_regs(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* erf GELU of a bf16 pattern through gelu.cu's table, staged in shared memory
 * (v1 read it through L1: scattered 2-byte loads cost ~20 us per tile).
 * Branch-free (v6): the index is clamped into the table and the load issued
 * unconditionally; patterns outside the table (|x| < 2^-16, |x| >= 64, rare)
 * are fixed after by gelu_erf_closed. v5 branched on the exponent around
 * each load: every load its own basic block, none overlapping (~170 us of
 * fc1 over the tanh epilogue); selecting the closed form per element instead
 * spilled registers. */
__device__ __forceinline__ uint32_t gelu_erf_tab(uint32_t b, uint32_t tab) {
    uint32_t k = min(((b >> 7) & 0xFFu) - GL_E_LO, (uint32_t)(GL_NEXP - 1)); /* wraps high below the table */
    uint16_t v; /* not volatile, no memory clobber: the table is constant, so the loads may move
                 * past the global stores (through a generic pointer they could not) */
    asm("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(tab + 2 * ((((b >> 15) * GL_NEXP + k) << 7) | (b & 0x7Fu))));
    return v;
}

__device__ __forceinline__ bool gelu_erf_in_tab(uint32_t b) { return ((b >> 7) & 0xFFu) - GL_E_LO < GL_NEXP; }

__device__ __forceinline__ uint32_t gelu_erf_closed(uint32_t b) {
    uint32_t e = (b >> 7) & 0xFFu;
    float x = __uint_as_float(b << 16);
    float g = e < GL_E_LO ? fmaf(x * x, INV_SQRT_2PI, 0.5f * x) : (x > 0.0f ? x : x * 0.0f);
    return __bfloat16_as_ushort(__float2bfloat16_rn(g));
}

/* Unit t of the grouped order: GROUP_M m-tiles at a time, m fastest inside a
 * group, so the CTAs running together share a few A row blocks and W tiles.
 * A unit is CL adjacent n-tiles of one m-tile (the cluster's; a.n_groups of
 * them per row of tiles): this CTA (rank) takes n-tile CL * group + rank,
 * which may lie past the last (then every store is masked). */
template <int CL>
__device__ __forceinline__ void tile_coords(int t, const gemm_args &a, uint32_t rank, int &mt, int &nt) {
    int per_group = GROUP_M * a.n_groups, g = t / per_group, first = g * GROUP_M;
    int gm = min(GROUP_M, a.m_tiles - first), r = t - g * per_group;
    mt = first + r % gm;
    nt = CL * (r / gm) + (int)rank;
}

/* The bias pairs of this thread's 16 column pairs (columns col0 + 8 i +
 * 2 (lane % 4)), loaded before the tile's main loop so that their latency
 * hides behind it (in v1 each load waited behind the stores before it:
 * out may alias nothing the compiler can prove). */
__device__ __forceinline__ void load_bias(uint32_t (&bias2)[16], const gemm_args &a, int col0) {
    int cbase = col0 + 2 * (threadIdx.x % 4);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        int c = cbase + 8 * i;
        bias2[i] = a.bias && c < a.OC ? __ldg(reinterpret_cast<const unsigned int *>(a.bias + c)) : 0u;
    }
}

/* Asks L2 for this warpgroup's 128 x 128 residual block (rows row0..,
 * columns col0..) while the main loop runs: 128 rows x 2 lines of 128 bytes,
 * 2 a thread. */
__device__ __forceinline__ void prefetch_resid(const gemm_args &a, int row0, int col0) {
    int t = threadIdx.x % 128;
#pragma unroll
    for (int j = 0; j < 2; j++) {
        int q = t + 128 * j, r = row0 + q / 2, c = col0 + 64 * (q % 2);
        if (r < a.T && c < a.OC)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(a.resid + (size_t)r * a.OC + c));
    }
}

__device__ __forceinline__ float2 bf2_to_f2(uint32_t u) {
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xFFFF0000u));
}

/* 4 x 4 transpose of bf16 pairs across a quad of lanes (lane % 4 = q):
 * in: v[j] = the pair at columns 8 j + 2 q of four 8-column blocks (wgmma's
 * layout); out: w[r] = lane r's v[q], i.e. the whole block q, 16 contiguous
 * bytes. It is its own inverse. Three xor shuffles; the run-time indices q ^ m
 * go through selects so that v and w stay in registers. */
__device__ __forceinline__ uint32_t pick4(const uint32_t (&v)[4], int i) {
    return i == 0 ? v[0] : i == 1 ? v[1] : i == 2 ? v[2] : v[3];
}

__device__ __forceinline__ void quad_transpose(uint32_t (&w)[4], const uint32_t (&v)[4]) {
    int q = threadIdx.x % 4;
#pragma unroll
    for (int m = 0; m < 4; m++) {
        uint32_t x = pick4(v, q ^ m);
        if (m) x = __shfl_xor_sync(0xffffffffu, x, m);
#pragma unroll
        for (int r = 0; r < 4; r++)
            if (r == (q ^ m)) w[r] = x;
    }
}

__device__ __forceinline__ uint32_t pack_bf2(float x0, float x1) {
    __nv_bfloat162 v = __floats2bfloat162_rn(x0, x1);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* The epilogue of one consumer warpgroup: its 128 x 128 tile as two 64-row
 * halves d0, d1 of wgmma's fragment layout (half m: rows row0 + 64 m + 16 warp
 * + lane / 4 (+ 8 h); element 4 i + 2 h + e: column col0 + 8 i + 2 (lane % 4)
 * + e). Per row, the 16 pairs are computed in that layout (bias, residual,
 * GELU; all table loads before any store), then a quad transpose per group of
 * four 8-column blocks gives each lane one whole block: 16-byte stores, each
 * warp store 8 rows x 64 contiguous bytes (4-byte stores half-filled the
 * 32-byte sectors and took 4x the instructions). The residual is read the
 * same way (16 bytes, transposed back). */
template <int EPI>
__device__ __forceinline__ void epilogue(const float (&d0)[64], const float (&d1)[64], const uint32_t (&bias2)[16],
                                         const gemm_args &a, uint32_t tab, int row0, int col0) {
    int lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % 4, q = lane % 4;
#pragma unroll
    for (int rh = 0; rh < 4; rh++) { /* rh = 2 m + h: the thread's four rows */
        int r = row0 + 64 * (rh / 2) + warp * 16 + lane / 4 + 8 * (rh % 2);
        bool row_ok = r < a.T;
        uint32_t rp[16];
        if (EPI == EPI_RESID)
#pragma unroll
            for (int g = 0; g < 4; g++) {
                int c = col0 + 8 * (4 * g + q);
                uint4 u = row_ok && c < a.OC ? *reinterpret_cast<const uint4 *>(a.resid + (size_t)r * a.OC + c)
                                             : make_uint4(0, 0, 0, 0);
                uint32_t rv[4] = {u.x, u.y, u.z, u.w}, t[4];
                quad_transpose(t, rv);
#pragma unroll
                for (int j = 0; j < 4; j++) rp[4 * g + j] = t[j];
            }
        uint32_t pre[16], out[16];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int e = 4 * i + 2 * (rh % 2);
            float2 b = bf2_to_f2(bias2[i]);
            float x0 = (rh < 2 ? d0[e] : d1[e]) + b.x, x1 = (rh < 2 ? d0[e + 1] : d1[e + 1]) + b.y;
            if (EPI == EPI_RESID) {
                float2 rr = bf2_to_f2(rp[i]);
                x0 += rr.x, x1 += rr.y;
            }
            pre[i] = pack_bf2(x0, x1);
            if (EPI == EPI_ERF) { /* GELU of the stored (rounded) pre-activation, as the backward sees it */
                out[i] = gelu_erf_tab(pre[i] & 0xFFFFu, tab) | (gelu_erf_tab(pre[i] >> 16, tab) << 16);
            } else if (EPI == EPI_TANH) {
                float2 p = bf2_to_f2(pre[i]);
                out[i] = pack_bf2(rg_gelu_tanh(p.x), rg_gelu_tanh(p.y));
            } else {
                out[i] = pre[i];
            }
        }
        if (EPI == EPI_ERF) {
            bool all_in = true;
#pragma unroll
            for (int i = 0; i < 16; i++) all_in &= gelu_erf_in_tab(pre[i] & 0xFFFFu) & gelu_erf_in_tab(pre[i] >> 16);
            if (!all_in) /* rare: a value under 2^-16 or from 64 up */
#pragma unroll
                for (int i = 0; i < 16; i++) {
                    uint32_t lo = pre[i] & 0xFFFFu, hi = pre[i] >> 16;
                    if (!gelu_erf_in_tab(lo)) out[i] = (out[i] & 0xFFFF0000u) | gelu_erf_closed(lo);
                    if (!gelu_erf_in_tab(hi)) out[i] = (out[i] & 0xFFFFu) | (gelu_erf_closed(hi) << 16);
                }
        }
#pragma unroll
        for (int g = 0; g < 4; g++) {
            int c = col0 + 8 * (4 * g + q); /* OC % 8 == 0: a block is all in or all out */
            bool ok = row_ok && c < a.OC;
            size_t off = (size_t)r * a.OC + c;
            uint32_t w[4];
            if (EPI == EPI_ERF || EPI == EPI_TANH) {
                uint32_t v[4] = {pre[4 * g], pre[4 * g + 1], pre[4 * g + 2], pre[4 * g + 3]};
                quad_transpose(w, v);
                if (ok) *reinterpret_cast<uint4 *>(a.pre + off) = make_uint4(w[0], w[1], w[2], w[3]);
            }
            uint32_t v[4] = {out[4 * g], out[4 * g + 1], out[4 * g + 2], out[4 * g + 3]};
            quad_transpose(w, v);
            if (ok) *reinterpret_cast<uint4 *>(a.out + off) = make_uint4(w[0], w[1], w[2], w[3]);
        }
    }
}
/* A consumer warp hands a stage back to the producer of every CTA of the
 * cluster (each may multicast into it next). */
template <int CL>
__device__ __forceinline__ void release(uint64_t *empty_s) {
    mbar_arrive(empty_s);
    if (CL > 1) {
        uint32_t me = cluster_rank();
#pragma unroll
        for (int r = 0; r < CL; r++)
            if ((uint32_t)r != me) mbar_arrive_cluster(empty_s, (uint32_t)r);
    }
}
#endif /* RG_WGMMA_DEVICE */

/* ma: inp as (C, T) boxes of 64 x (128 / CL); mb: W as (C, OC) boxes of
 * 64 x 128. The cluster's i-th unit is (blockIdx.x / CL) + i (gridDim.x / CL);
 * its j-th for the CTA is the same (both CTAs of a cluster walk the same
 * units, k-step for k-step). Consumer warpgroup w takes the units with
 * j % 2 == w. The producer loads every unit's k-steps in order through one
 * ring of STAGES buffers (ring position of unit j's k-th step: j kt + k). The
 * main loops take turns: a warpgroup starts unit j only after the other has
 * waited for the last k-step of unit j - 1 (a "turn" mbarrier per
 * warpgroup), so one warpgroup's epilogue runs while the other's products
 * keep the tensor cores busy, and each waits on ring phases at most one ahead
 * of the barriers' (mbarrier parity waits need that: without the turns the
 * second warpgroup passed phases early, v3). With CL = 2 a stage is reused
 * only when the consumers of both CTAs have released it, since either CTA's
 * multicast writes it in both. */
template <int EPI, int CL>
__global__ void __launch_bounds__(THREADS, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap ma, const __grid_constant__ CUtensorMap mb,
                      const gemm_args a) {
#ifdef RG_WGMMA_DEVICE
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *sa = smem, *sb = smem + STAGES * A_BYTES;
    uint64_t *full = (uint64_t *)(smem + STAGES * STAGE_BYTES), *empty = full + STAGES, *turn = empty + STAGES;
    uint16_t *tab = (uint16_t *)(turn + 2);
    int wg = threadIdx.x / 128;
    uint32_t rank = CL > 1 ? cluster_rank() : 0;
    if (EPI == EPI_ERF)
        for (int i = threadIdx.x; i < GL_N / 2; i += THREADS)
            reinterpret_cast<uint32_t *>(tab)[i] = reinterpret_cast<const uint32_t *>(a.lut)[i];
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(&full[s], 1);       /* the producer's arrive + the TMA bytes */
            mbar_init(&empty[s], 4 * CL); /* one arrive per consumer warp of each CTA of the cluster */
        }
        mbar_init(&turn[0], 1);
        mbar_init(&turn[1], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (CL > 1) cluster_sync(); /* the peer's barriers are initialised before anything lands on them */
    else __syncthreads();
    int kt = (a.C + BK - 1) / BK, step = gridDim.x / CL, first = blockIdx.x / CL;
    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        if (threadIdx.x == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int t = first; t < a.units; t += step) {
                int mt, nt;
                tile_coords<CL>(t, a, rank, mt, nt);
                bool b_in = nt < a.n_tiles; /* else a padding tile: no W to load, stores all masked */
                /* A half that starts past T would be a box wholly out of bounds: load the
                 * first half's rows there instead (their products are never stored) */
                int arow = mt * BM + (int)rank * (BM / CL);
                if (arow >= a.T) arow = mt * BM;
                for (int k = 0; k < kt; k++) {
                    mbar_wait(&empty[s], phase ^ 1);
                    mbar_expect_tx(&full[s], b_in ? STAGE_BYTES : A_BYTES);
                    if (CL > 1) /* this CTA's half of the shared inp box, into both CTAs */
                        tma_load_mc(sa + s * A_BYTES + rank * (A_BYTES / CL), &ma, k * BK, arow, &full[s],
                                    (uint16_t)((1u << CL) - 1));
                    else
                        tma_load(sa + s * A_BYTES, &ma, k * BK, mt * BM, &full[s]);
                    if (b_in) tma_load(sb + s * B_BYTES, &mb, k * BK, nt * BN, &full[s]);
                    if (++s == STAGES) s = 0, phase ^= 1;
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        int w = wg - 1, lane = threadIdx.x % 32;
        uint32_t turns = 0;
        for (int j = w;; j += 2) {
            int t = first + j * step;
            if (t >= a.units) break;
            int mt, nt;
            tile_coords<CL>(t, a, rank, mt, nt);
            uint32_t bias2[16];
            load_bias(bias2, a, nt * BN);
            if (EPI == EPI_RESID) prefetch_resid(a, mt * BM, nt * BN);
            float d0[64], d1[64];
#pragma unroll
            for (int i = 0; i < 64; i++) d0[i] = 0.0f, d1[i] = 0.0f;
            fence_regs(d0);
            fence_regs(d1);
            if (j > 0) mbar_wait(&turn[w], turns++ & 1u); /* the other warpgroup is on its last k-step */
            int prev = -1;
            for (int k = 0; k < kt; k++) {
                int kb = j * kt + k, s = kb % STAGES;
                mbar_wait(&full[s], (uint32_t)(kb / STAGES) & 1u);
                if (k == kt - 1 && threadIdx.x % 128 == 0) mbar_arrive(&turn[1 - w]); /* your turn */
                const uint8_t *ta = sa + s * A_BYTES;
                uint64_t da0 = smem_desc(ta), da1 = smem_desc(ta + 64 * 128), db = smem_desc(sb + s * B_BYTES);
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < BK / 16; kk++) { /* 16 bf16 = 32 bytes further along the swizzled row */
                    wgmma_m64n128k16(d0, da0 + 2 * kk, db + 2 * kk);
                    wgmma_m64n128k16(d1, da1 + 2 * kk, db + 2 * kk);
                }
                wgmma_commit();
                wgmma_wait<1>(); /* the previous stage's products are done: hand it back */
                if (prev >= 0 && lane == 0) release<CL>(&empty[prev]);
                prev = s;
            }
            wgmma_wait<0>();
            fence_regs(d0);
            fence_regs(d1);
            if (prev >= 0 && lane == 0) release<CL>(&empty[prev]);
            epilogue<EPI>(d0, d1, bias2, a, smem_u32(tab), mt * BM, nt * BN);
        }
    }
    if (CL > 1) cluster_sync(); /* no CTA leaves while its peer may still arrive on its barriers */
#endif
}

/* ---- host side ---- */

static PFN_cuTensorMapEncodeTiled_v12000 encode_tiled;

template <int EPI, int CL>
static cudaError_t allow_smem(void) {
    return cudaFuncSetAttribute(gemm_wgmma_kernel<EPI, CL>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES);
}

template <int CL>
static cudaError_t allow_smem_all(void) {
    cudaError_t e;
    if ((e = allow_smem<EPI_PLAIN, CL>()) != cudaSuccess || (e = allow_smem<EPI_ERF, CL>()) != cudaSuccess ||
        (e = allow_smem<EPI_TANH, CL>()) != cudaSuccess)
        return e;
    return allow_smem<EPI_RESID, CL>();
}

/* Launch configuration of the kernel for a grid of `ctas` in clusters of cl. */
static cudaLaunchConfig_t launch_cfg(rg_cuda_state *st, unsigned ctas, int cl, cudaLaunchAttribute *attr) {
    cudaLaunchConfig_t cfg = rg_cuda_launch_cfg(st, dim3(ctas), dim3(THREADS), SMEM_BYTES, false, attr);
    rg_cuda_cfg_cluster(&cfg, (unsigned)cl);
    return cfg;
}

bool rg_cuda_wgmma_init(rg_cuda_state *st) {
    if (st->prop.major != 9 || st->prop.minor != 0 || st->prop.sharedMemPerBlockOptin < SMEM_BYTES) return false;
    int compiled = 0;
    if (cudaMemcpyFromSymbol(&compiled, rg_wgmma_compiled, sizeof compiled) != cudaSuccess || !compiled) {
        cudaGetLastError(); /* no sm_90a code for this device: not an error, cuBLASLt serves */
        return false;
    }
    if (!encode_tiled) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) !=
                cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
            cudaGetLastError();
            return false;
        }
        encode_tiled = (PFN_cuTensorMapEncodeTiled_v12000)fn;
    }
    if (allow_smem_all<1>() != cudaSuccess || allow_smem_all<2>() != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    /* Clusters of 2 unless RG_WGMMA_CLUSTER=1 (a lab switch); without room for
     * a full grid of pairs (the GPCs' SM counts decide), single CTAs. */
    const char *env = getenv("RG_WGMMA_CLUSTER");
    st->wgmma_cluster = env && !strcmp(env, "1") ? 1 : 2;
    st->wgmma_clusters = st->prop.multiProcessorCount;
    if (st->wgmma_cluster == 2) {
        cudaLaunchAttribute attr;
        cudaLaunchConfig_t cfg = launch_cfg(st, (unsigned)st->prop.multiProcessorCount & ~1u, 2, &attr);
        int n = 0;
        if (cudaOccupancyMaxActiveClusters(&n, gemm_wgmma_kernel<EPI_PLAIN, 2>, &cfg) != cudaSuccess || n < 1) {
            cudaGetLastError();
            st->wgmma_cluster = 1;
        } else {
            st->wgmma_clusters = n;
        }
    }
    return true;
}

bool rg_cuda_wgmma_fits(const void *out, const void *pre_gelu, const void *inp, const void *weight,
                        const void *bias, const void *residual, int64_t T, int C, int OC) {
    const void *p[6] = {out, pre_gelu, inp, weight, bias, residual};
    for (int i = 0; i < 6; i++)
        if (p[i] && !rg_aligned16(p[i])) return false;
    return T > 0 && T < INT32_MAX && C > 0 && OC > 0 && C % 8 == 0 && OC % 8 == 0;
}

/* A (rows, C) row-major bf16 matrix as a tensor map of (BK x box_rows) boxes. */
static rg_status make_map(CUtensorMap *m, const void *p, int64_t rows, int C, int box_rows) {
    cuuint64_t dims[2] = {(cuuint64_t)C, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)C * 2};
    cuuint32_t box[2] = {BK, (cuuint32_t)box_rows}, estr[2] = {1, 1};
    CUresult r = encode_tiled(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p, dims, strides, box, estr,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return rg_fail(RG_ERR_BACKEND, "cuda matmul (wgmma): cuTensorMapEncodeTiled (rows=%lld C=%d box %d): error %d",
                       (long long)rows, C, box_rows, (int)r);
    return RG_OK;
}

template <int CL>
static cudaError_t launch(rg_cuda_state *st, int epi, unsigned ctas, const CUtensorMap &ma, const CUtensorMap &mb,
                          const gemm_args &a) {
    if (CL == 1) { /* a plain launch (v6's first build launched clusters of 1: 15-19 % slower than v5, unexplained) */
        switch (epi) {
        case EPI_ERF: gemm_wgmma_kernel<EPI_ERF, 1><<<ctas, THREADS, SMEM_BYTES, st->stream>>>(ma, mb, a); break;
        case EPI_TANH: gemm_wgmma_kernel<EPI_TANH, 1><<<ctas, THREADS, SMEM_BYTES, st->stream>>>(ma, mb, a); break;
        case EPI_RESID: gemm_wgmma_kernel<EPI_RESID, 1><<<ctas, THREADS, SMEM_BYTES, st->stream>>>(ma, mb, a); break;
        default: gemm_wgmma_kernel<EPI_PLAIN, 1><<<ctas, THREADS, SMEM_BYTES, st->stream>>>(ma, mb, a); break;
        }
        return cudaGetLastError();
    }
    cudaLaunchAttribute attr;
    cudaLaunchConfig_t cfg = launch_cfg(st, ctas, CL, &attr);
    switch (epi) {
    case EPI_ERF: return cudaLaunchKernelEx(&cfg, gemm_wgmma_kernel<EPI_ERF, CL>, ma, mb, a);
    case EPI_TANH: return cudaLaunchKernelEx(&cfg, gemm_wgmma_kernel<EPI_TANH, CL>, ma, mb, a);
    case EPI_RESID: return cudaLaunchKernelEx(&cfg, gemm_wgmma_kernel<EPI_RESID, CL>, ma, mb, a);
    default: return cudaLaunchKernelEx(&cfg, gemm_wgmma_kernel<EPI_PLAIN, CL>, ma, mb, a);
    }
}

rg_status rg_cuda_wgmma_forward(rg_cuda_state *st, void *out, void *pre_gelu, const void *inp, const void *weight,
                                const void *bias, const void *residual, int64_t T, int C, int OC, int gelu) {
    if (!encode_tiled || !rg_cuda_wgmma_fits(out, pre_gelu, inp, weight, bias, residual, T, C, OC) ||
        (gelu != RG_GELU_NONE && (!pre_gelu || residual)))
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul (wgmma): T=%lld C=%d OC=%d gelu=%d not supported here",
                       (long long)T, C, OC, gelu);
    gemm_args a;
    memset(&a, 0, sizeof a);
    a.out = (bf16 *)out;
    a.pre = (bf16 *)pre_gelu;
    a.bias = (const bf16 *)bias;
    a.resid = (const bf16 *)residual;
    a.lut = (const uint16_t *)st->gelu_lut;
    a.T = (int)T, a.C = C, a.OC = OC;
    a.m_tiles = (int)((T + BM - 1) / BM);
    a.n_tiles = (OC + BN - 1) / BN;
    /* a single column of tiles would leave every second CTA of a pair idle */
    int cl = st->wgmma_cluster == 2 && a.n_tiles > 1 ? 2 : 1;
    a.n_groups = (a.n_tiles + cl - 1) / cl;
    int64_t units = (int64_t)a.m_tiles * a.n_groups;
    if (units > INT32_MAX) return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul (wgmma): %lld tiles", (long long)units);
    a.units = (int)units;
    CUtensorMap ma, mb;
    RG_TRY(make_map(&ma, inp, T, C, BM / cl));
    RG_TRY(make_map(&mb, weight, OC, C, BN));
    int64_t most = cl == 2 ? st->wgmma_clusters : st->prop.multiProcessorCount;
    unsigned ctas = (unsigned)((units < most ? units : most) * cl);
    int epi = residual ? EPI_RESID : gelu == RG_GELU_ERF ? EPI_ERF : gelu == RG_GELU_TANH ? EPI_TANH : EPI_PLAIN;
    cudaError_t e = cl == 2 ? launch<2>(st, epi, ctas, ma, mb, a) : launch<1>(st, epi, ctas, ma, mb, a);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return rg_fail(RG_ERR_BACKEND, "cuda matmul (wgmma): launch of %u CTAs in clusters of %d: %s", ctas, cl,
                       cudaGetErrorString(e));
    }
    RG_CUDA_CHECK_LAUNCH("gemm_wgmma_kernel");
    return RG_OK;
}
