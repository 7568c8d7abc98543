/* linear_infer.cu — the inference projection of generation on bf16:
 * out (T,OC) = act(LN(inp) @ weight^T + bias) + residual (contract in backend.h).
 * A decode step reads each weight once and multiplies it by only T = 1..64
 * rows, a shape cuBLAS tiles badly (a GEMV). For small T one kernel does it:
 *   - the weight (OC,C) is the M side of mma.sync m16n8k16 ("swapped"): a warp
 *     owns 16 weight rows and streams them in chunks of 32 columns, one 16-byte
 *     load per row per thread, and the tokens are the N side, 8 per group;
 *   - within a chunk the order of the 32 columns is permuted identically for
 *     the weight and the activations (a dot product does not care), so that
 *     each thread's 8 contiguous columns are exactly its fragment elements and
 *     no shuffles or shared-memory staging of weights are needed;
 *   - the 8 warps of a block split the columns (K) of the block's row tiles
 *     and add their partial sums in shared memory in a fixed order (no
 *     atomics: bit-identical run to run); a cluster of up to 8 blocks can
 *     split K further, each block finishing a share of the outputs from all
 *     blocks' sums through distributed shared memory (Hopper), also in order
 *     (measured slower than no split: used only where a block's staged
 *     columns would not fit in shared memory otherwise, and by the tests);
 *   - the activations (and LN weight and bias) are staged in shared memory by
 *     cp.async, all in flight at once; LayerNorm of the T rows is the
 *     prologue there (fp32 statistics, every block recomputes them: the rows
 *     are tiny), rounded to bf16 as the unfused path rounds its LN output;
 *   - the epilogue adds bias, applies GELU (erf or tanh, fp32), adds the
 *     residual and rounds once to bf16;
 *   - programmatic dependent launch: the first weight chunks are loaded before
 *     griddepcontrol.wait, so inside a CUDA graph the weight stream of one
 *     projection starts while the kernel before it finishes. Weights are never
 *     written by a decode step, everything else is read after the wait.
 * Where the kernel does not pay (measured: see rg_cuda_linear_infer_max_t) or
 * does not apply (T > 64, C % 8 != 0, unaligned pointers, staged rows too
 * large for shared memory) the op runs the existing path: LN kernel + cuBLASLt
 * matmul_forward / matmul_forward_residual (+ add), over the backend's scratch
 * in row chunks. */
#include "cuda/ops.cuh"
#include <cooperative_groups.h>

#define LI_WARPS 8
#define LI_THREADS (32 * LI_WARPS)
#define LI_U 4          /* weight chunks in flight per warp (each 16 rows x 32 columns = 1 KB) */
#define LI_MAX_NG 8     /* token groups of 8: the kernel takes T <= 64 */
#define LI_PAD 8        /* bf16 elements of padding per staged row: 16 bytes, no bank conflicts */

/* When the fused kernel is picked (measured on an H100 against LN + cuBLASLt,
 * bench/cuda_ops_NOTES.md, "inference projection for decode"): T <= max_t when
 * every warp's weight chunks are all in flight before the grid dependency
 * (GPT-2's qkv, proj, fc1: 1.4-1.8x faster at T = 1 and 4, slower from 16),
 * T <= max_t_wide when the row tiles alone give two blocks per SM (the LM
 * head: 1.0x at T = 1, 1.5x at 4, 2.2x at 16, 1.0x at 64); T <= max_t_split
 * when a projection without LN has more chunks per warp than LI_U and K is
 * split over a cluster until it has not (fc2, 3072 -> 768, 48 row tiles: 12
 * chunks per warp unsplit, 12-40 % slower than cuBLASLt; over 4 blocks 4.75 /
 * 4.95 / 6.28 us at T = 1 / 4 / 16 against cuBLASLt's 7.22 / 7.26 / 7.31,
 * 17.5 vs 7.5 at 64: integration call, 2026-11-22 10:55 UTC). */
extern "C" {
int rg_cuda_linear_infer_max_t = 4;
int rg_cuda_linear_infer_max_t_wide = 16;
int rg_cuda_linear_infer_max_t_split = 16;
/* 0 picks, 1 forces the fused kernel where it can run, 2 forces LN + cuBLASLt (tests, benchmarks). */
int rg_cuda_linear_infer_mode = 0;
/* Blocks of a cluster splitting K: 0 picks (pick_ksplit: a projection
 * without LN whose warps would hold more than LI_U chunks each, or whose
 * staged columns would not fit in shared memory; measured slower where the
 * warps' chunks were already all in flight: qkv at T = 1 8.6 vs 3.5 us);
 * n > 0 asks for n (a power of two <= 8; tests, benchmarks). */
int rg_cuda_linear_infer_ksplit = 0;
}

struct li_args {
    bf16 *out;
    const bf16 *inp, *ln_w, *ln_b, *weight, *bias, *residual;
    float eps;
    int T, C, OC, gelu;
    int mt;     /* row tiles (of 16) per block; the block's 8 warps are mt row tiles x (8 / mt) column splits */
    int ksplit; /* blocks of a cluster splitting K further (1: no cluster) */
};

/* d += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate. */
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* Weights are read once per step: streaming loads (evict first) keep L2 for activations. */
__device__ __forceinline__ uint4 load_stream(const bf16 *p) { return __ldcs(reinterpret_cast<const uint4 *>(p)); }

__device__ __forceinline__ float gelu_f(float x, int kind) {
    if (kind == RG_GELU_TANH) return rg_gelu_tanh(x);
    return 0.5f * x * erfcf(-0.7071067811865476f * x); /* exact (erf) GELU in fp32, rounded once after */
}

/* One chunk of a thread's two weight rows: 8 columns at w0 + k, w1 + k; zeros
 * when k >= lim (past C, where the activations are zero too, so that garbage
 * times zero cannot make NaN). */
__device__ __forceinline__ void load_chunk(uint4 (&w)[2], const bf16 *w0, const bf16 *w1, int k, int lim) {
    if (k < lim) {
        w[0] = load_stream(w0 + k);
        w[1] = load_stream(w1 + k);
    } else {
        w[0] = w[1] = make_uint4(0, 0, 0, 0);
    }
}

/* 16 bytes global -> shared without a register round trip: all of a block's
 * copies are in flight at once (a loop of loads and stores waited on each). */
__device__ __forceinline__ void cp_async16(void *smem_dst, const void *gmem_src) {
    unsigned d = (unsigned)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}

/* Another block's shared memory in the cluster (rank j; j = 0 is the first block's). */
__device__ __forceinline__ const float *rank_ptr(float *p, int j) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    return cooperative_groups::this_cluster().map_shared_rank(p, j);
#else
    (void)j;
    return p;
#endif
}

/* Shared memory, in bytes from the start (each part 16-byte aligned):
 *   red   (8 warps, 16 rows, NT + 1) fp32: each warp's partial sums
 *   bsum  (T, mt * 16) fp32: the block's sums (read by the cluster when K is split)
 *   stats (2, NT) fp32: LN mean and rstd
 *   lnw, lnb (C) bf16: LN weight and bias
 *   xs    (T, W + LI_PAD) bf16: the staged activation columns (all C with LN,
 *         normalised where this block reads them; else this block's range) */
struct li_layout {
    size_t red, bsum, stats, lnw, lnb, xs, total;
};
__host__ __device__ __forceinline__ size_t li_up16(size_t x) { return (x + 15) / 16 * 16; }
__host__ __device__ __forceinline__ li_layout li_layout_of(int ng, int mt, int T, int C, int W, bool ln) {
    li_layout l;
    l.red = 0;
    l.bsum = l.red + li_up16((size_t)LI_WARPS * 16 * (ng * 8 + 1) * sizeof(float));
    l.stats = l.bsum + li_up16((size_t)mt * 16 * T * sizeof(float));
    l.lnw = l.stats + li_up16((size_t)2 * ng * 8 * sizeof(float));
    l.lnb = l.lnw + (ln ? li_up16((size_t)C * sizeof(bf16)) : 0);
    l.xs = l.lnb + (ln ? li_up16((size_t)C * sizeof(bf16)) : 0);
    l.total = l.xs + (size_t)T * (W + LI_PAD) * sizeof(bf16);
    return l;
}

/* The K split: C in chunks of 32 columns, ceil(chunks / ksplit) consecutive
 * ones per block of a cluster. */
__host__ __device__ __forceinline__ int li_chunks_per_rank(int C, int ksplit) {
    return ((C + 31) / 32 + ksplit - 1) / ksplit;
}
/* Columns staged per row: all of C with LN (its statistics), else the block's chunks. */
__host__ __device__ __forceinline__ int li_staged_width(int C, int ksplit, bool ln) {
    return ln ? C : min(C, li_chunks_per_rank(C, ksplit) * 32);
}

/* Cluster c (blocks c * ksplit .. + ksplit - 1; one block when ksplit = 1)
 * owns rows [c * mt * 16, (c + 1) * mt * 16) of out's columns; its block of
 * rank kr owns chunks [kr * cpr, (kr + 1) * cpr), warp w of that block row
 * tile w % mt and chunks kr * cpr + w / mt, then every ks-th. In the
 * fragment, thread (g = lane / 4, q = lane % 4) holds rows g and g + 8 and
 * tokens 8 n + g; its 8 columns q*8 .. q*8+7 of a chunk feed the mma's
 * logical columns {2q, 2q+1, 2q+8, 2q+9} (first half) and then the same of
 * the second mma: the same permutation for both operands.
 * Order of work: weight chunks requested (before the grid dependency), then
 * the epilogue's first bias and residual and the activation columns
 * (cp.async, all in flight at once), LN statistics and normalisation in
 * shared memory, the product, the sums (warps, then the cluster's blocks, in
 * a fixed order), the epilogue. */
template <int NG>
__global__ void __launch_bounds__(LI_THREADS) linear_infer_kernel(li_args a) {
    extern __shared__ __align__(16) unsigned char smem[];
    constexpr int NT = NG * 8, RS = NT + 1;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const int mt = a.mt, ks = LI_WARPS / mt, wm = warp % mt, kp = warp / mt;
    const int ksplit = a.ksplit, rb = blockIdx.x / ksplit, kr = blockIdx.x % ksplit; /* kr: rank (x-major) */
    const int C = a.C, T = a.T, OC = a.OC, rows = mt * 16;
    const bool ln = a.ln_w != NULL;
    const int nch = (C + 31) / 32, cpr = li_chunks_per_rank(C, ksplit);
    const int c_lo = min(nch, kr * cpr), c_hi = min(nch, c_lo + cpr);
    const int mine = c_lo + kp < c_hi ? (c_hi - c_lo - kp + ks - 1) / ks : 0;
    const int row0 = (rb * mt + wm) * 16 + g;
    /* rows past OC repeat the last one (their results are dropped) */
    const bf16 *w0 = a.weight + (size_t)min(row0, OC - 1) * C + q * 8;
    const bf16 *w1 = a.weight + (size_t)min(row0 + 8, OC - 1) * C + q * 8;
    const int lim = C - q * 8; /* chunk bases k with k < lim hold this thread's 8 columns */

    uint4 wbuf[LI_U][2];
#pragma unroll
    for (int u = 0; u < LI_U; u++)
        if (u < mine) load_chunk(wbuf[u], w0, w1, (c_lo + kp + u * ks) * 32, lim);

    rg_pdl_wait(); /* from here on: inp and residual are the previous kernel's results */
    rg_pdl_launch_dependents();

    /* the epilogue's first output of this thread: its bias and residual requested now */
    const int n_out = rows * T, estride = ksplit * LI_THREADS, e0 = kr * LI_THREADS + tid;
    float bias0 = 0.0f, res0 = 0.0f;
    if (e0 < n_out) {
        int r = rb * rows + e0 % rows;
        if (r < OC) {
            if (a.bias) bias0 = __bfloat162float(a.bias[r]);
            if (a.residual) res0 = __bfloat162float(a.residual[(size_t)(e0 / rows) * OC + r]);
        }
    }

    const int W = li_staged_width(C, ksplit, ln), SA = W + LI_PAD, s0 = ln ? 0 : c_lo * 32;
    const int s1 = ln ? C : min(C, c_hi * 32);
    const li_layout L = li_layout_of(NG, mt, T, C, W, ln);
    float *red = reinterpret_cast<float *>(smem + L.red), *bsum = reinterpret_cast<float *>(smem + L.bsum);
    float *stats = reinterpret_cast<float *>(smem + L.stats);
    bf16 *lnw = reinterpret_cast<bf16 *>(smem + L.lnw), *lnb = reinterpret_cast<bf16 *>(smem + L.lnb);
    bf16 *xs = reinterpret_cast<bf16 *>(smem + L.xs);
    {
        const int per_row = (s1 - s0) / 8;
        for (int i = tid; i < T * per_row; i += LI_THREADS) {
            int t = i / per_row, c = (i - t * per_row) * 8;
            cp_async16(xs + (size_t)t * SA + c, a.inp + (size_t)t * C + s0 + c);
        }
        if (ln)
            for (int i = tid; i < C / 8; i += LI_THREADS) {
                cp_async16(lnw + i * 8, a.ln_w + i * 8);
                if (a.ln_b) cp_async16(lnb + i * 8, a.ln_b + i * 8);
            }
        cp_async_wait_all();
        __syncthreads();
    }
    if (ln) {
        /* statistics, one warp per row, in one pass shifted by the row's first
         * value (no cancellation from a common offset); fp32 */
        for (int t = warp; t < T; t += LI_WARPS) {
            const bf16 *x = xs + (size_t)t * SA;
            float x0 = __bfloat162float(x[0]), sum = 0.0f, sq = 0.0f, v[8];
            for (int c = lane * 8; c < C; c += 256) {
                rg_load_bf16<8>(v, x + c);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float d = v[j] - x0;
                    sum += d;
                    sq += d * d;
                }
            }
            sum = rg_warp_sum(sum);
            sq = rg_warp_sum(sq);
            if (lane == 0) {
                float m = sum / C;
                stats[t] = x0 + m;
                stats[NT + t] = rsqrtf(fmaxf(sq / C - m * m, 0.0f) + a.eps);
            }
        }
        __syncthreads();
        /* normalise the columns this block reads, rounded to bf16 as the unfused path's LN output */
        const int n0 = c_lo * 32, pr = (min(C, c_hi * 32) - n0) / 8;
        for (int i = tid; i < T * pr; i += LI_THREADS) {
            int t = i / pr, c = n0 + (i - t * pr) * 8;
            float v[8], w[8], b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            rg_load_bf16<8>(v, xs + (size_t)t * SA + c);
            rg_load_bf16<8>(w, lnw + c);
            if (a.ln_b) rg_load_bf16<8>(b, lnb + c);
            float m = stats[t], rs = stats[NT + t];
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = (v[j] - m) * rs * w[j] + b[j];
            rg_store_bf16<8>(xs + (size_t)t * SA + c, v);
        }
        __syncthreads();
    }
    int aoff[NG]; /* this thread's token rows in xs, less the staged start (past T: the last row, dropped) */
#pragma unroll
    for (int n = 0; n < NG; n++) aoff[n] = min(n * 8 + g, T - 1) * SA + q * 8 - s0;

    float acc[NG][4];
#pragma unroll
    for (int n = 0; n < NG; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    for (int i0 = 0; i0 < mine; i0 += LI_U) {
#pragma unroll
        for (int u = 0; u < LI_U; u++) {
            int i = i0 + u;
            if (i < mine) {
                int k = (c_lo + kp + i * ks) * 32;
                bool in = k < lim;
#pragma unroll
                for (int n = 0; n < NG; n++) {
                    uint4 b = in ? *reinterpret_cast<const uint4 *>(xs + aoff[n] + k) : make_uint4(0, 0, 0, 0);
                    mma_bf16(acc[n], wbuf[u][0].x, wbuf[u][1].x, wbuf[u][0].y, wbuf[u][1].y, b.x, b.y);
                    mma_bf16(acc[n], wbuf[u][0].z, wbuf[u][1].z, wbuf[u][0].w, wbuf[u][1].w, b.z, b.w);
                }
                if (i + LI_U < mine) load_chunk(wbuf[u], w0, w1, (c_lo + kp + (i + LI_U) * ks) * 32, lim);
            }
        }
    }

    /* partial sums: red[kp][wm * 16 + row][token]; C fragment rows g, g + 8, tokens 2q, 2q + 1 */
    float *rw = red + ((size_t)kp * mt + wm) * 16 * RS;
#pragma unroll
    for (int n = 0; n < NG; n++) {
        int t = n * 8 + 2 * q;
        rw[g * RS + t] = acc[n][0];
        rw[g * RS + t + 1] = acc[n][1];
        rw[(g + 8) * RS + t] = acc[n][2];
        rw[(g + 8) * RS + t + 1] = acc[n][3];
    }
    __syncthreads();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (ksplit > 1) { /* the block's sums; then every block finishes a share of the cluster's outputs */
        for (int idx = tid; idx < n_out; idx += LI_THREADS) {
            int rl = idx % rows, t = idx / rows;
            float v = 0.0f;
            for (int p = 0; p < ks; p++) v += red[((size_t)p * rows + rl) * RS + t];
            bsum[idx] = v;
        }
        cooperative_groups::this_cluster().sync();
    }
#endif
    int it = 0;
    for (int idx = e0; idx < n_out; idx += estride, it++) {
        int rl = idx % rows, t = idx / rows, r = rb * rows + rl;
        if (r >= OC) continue;
        float s = 0.0f;
        if (ksplit == 1) {
            for (int p = 0; p < ks; p++) s += red[((size_t)p * rows + rl) * RS + t]; /* fixed order */
        } else {
            float part[8]; /* every rank's load in flight at once, summed in rank order */
#pragma unroll
            for (int j = 0; j < 8; j++) part[j] = j < ksplit ? rank_ptr(bsum, j)[idx] : 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) s += part[j];
        }
        size_t o = (size_t)t * OC + r;
        s += it == 0 ? bias0 : (a.bias ? __bfloat162float(a.bias[r]) : 0.0f);
        if (a.gelu != RG_GELU_NONE) s = gelu_f(s, a.gelu);
        s += it == 0 ? res0 : (a.residual ? __bfloat162float(a.residual[o]) : 0.0f);
        a.out[o] = __float2bfloat16_rn(s);
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (ksplit > 1) cooperative_groups::this_cluster().sync(); /* keep bsum alive until the cluster has read it */
#endif
}

/* Row tiles per block: as many as keep at least two blocks per multiprocessor
 * (fewer blocks recompute the LN prologue less), else one. */
static int pick_mt(const rg_cuda_state *st, int OC) {
    int tiles = (OC + 15) / 16, want = 2 * st->prop.multiProcessorCount;
    for (int mt = 4; mt > 1; mt /= 2)
        if ((tiles + mt - 1) / mt >= want) return mt;
    return 1;
}

/* Blocks of a cluster splitting K (Hopper): 1 unless asked for (see
 * rg_cuda_linear_infer_ksplit), or, when nothing is asked and there is no LN
 * prologue, until every warp's chunks are in flight at once (LI_U); as far as
 * every warp keeps a chunk of 32 columns. */
static int pick_ksplit(const rg_cuda_state *st, int C, int mt, bool ln) {
    int nch = (C + 31) / 32, ks = LI_WARPS / mt, k = 1;
    if (st->prop.major < 9) return 1;
    if (rg_cuda_linear_infer_ksplit == 0 && !ln) {
        while (((nch + k - 1) / k + ks - 1) / ks > LI_U && k < 8 && nch >= 2 * k * ks) k *= 2;
        return k;
    }
    while (k < rg_cuda_linear_infer_ksplit && k < 8 && nch >= 2 * k * ks) k *= 2;
    return k;
}

/* Whether the fused kernel beats LN + cuBLASLt here (see rg_cuda_linear_infer_max_t). */
static bool fused_pays(const rg_cuda_state *st, int64_t T, int C, int blocks, int mt, int ksplit) {
    int ks = LI_WARPS / mt, per_warp = (li_chunks_per_rank(C, ksplit) + ks - 1) / ks;
    if (blocks >= 2 * st->prop.multiProcessorCount) return T <= rg_cuda_linear_infer_max_t_wide;
    if (ksplit > 1) return per_warp <= LI_U && T <= rg_cuda_linear_infer_max_t_split;
    return per_warp <= LI_U && T <= rg_cuda_linear_infer_max_t;
}

/* Every instantiation may use all the shared memory a block can have: set
 * once at backend creation (not on first use, which may be inside a graph capture). */
rg_status rg_cuda_linear_infer_init(rg_cuda_state *st) {
    int cap = (int)st->prop.sharedMemPerBlockOptin;
    cudaFuncAttribute at = cudaFuncAttributeMaxDynamicSharedMemorySize;
    RG_CUDA_TRY(cudaFuncSetAttribute(linear_infer_kernel<1>, at, cap));
    RG_CUDA_TRY(cudaFuncSetAttribute(linear_infer_kernel<2>, at, cap));
    RG_CUDA_TRY(cudaFuncSetAttribute(linear_infer_kernel<4>, at, cap));
    RG_CUDA_TRY(cudaFuncSetAttribute(linear_infer_kernel<8>, at, cap));
    return RG_OK;
}

template <int NG>
static rg_status launch_fused(rg_cuda_state *st, const li_args &a, size_t smem) {
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = rg_cuda_launch_cfg(st, dim3((unsigned)((a.OC + a.mt * 16 - 1) / (a.mt * 16) * a.ksplit)),
                                                dim3(LI_THREADS), smem, true, attr);
    if (a.ksplit > 1) rg_cuda_cfg_cluster(&cfg, (unsigned)a.ksplit);
    RG_CUDA_TRY(cudaLaunchKernelEx(&cfg, linear_infer_kernel<NG>, a));
    RG_CUDA_CHECK_LAUNCH("linear_infer_kernel");
    return RG_OK;
}

/* LN + cuBLASLt (+ add), in row chunks that fit the scratch: LN rows (rows,C),
 * and with GELU the pre-activation and, before a residual, the activation (rows,OC). */
static rg_status unfused(rg_backend *be, bf16 *out, const bf16 *inp, const bf16 *ln_w, const bf16 *ln_b, float eps,
                         const bf16 *w, const bf16 *bias, const bf16 *res, int64_t T, int C, int OC, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    const size_t al = 256;
    size_t per_row = 0;
    if (ln_w) per_row += (size_t)C * sizeof(bf16);
    if (gelu != RG_GELU_NONE) per_row += (size_t)OC * sizeof(bf16) * (res ? 2 : 1);
    int64_t chunk = T;
    if (per_row) {
        size_t usable = st->scratch_bytes > 4 * al ? st->scratch_bytes - 4 * al : 0;
        chunk = (int64_t)(usable / per_row);
        if (chunk < 1)
            return rg_fail(RG_ERR_UNSUPPORTED, "cuda linear_infer: one row (C=%d, OC=%d) needs %zu bytes of scratch, "
                           "%zu available", C, OC, per_row, st->scratch_bytes);
        if (chunk > T) chunk = T;
    }
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = T - t0 < chunk ? T - t0 : chunk;
        char *p = (char *)st->scratch;
        bf16 *ln = NULL, *pre = NULL, *act = NULL;
        if (ln_w) { ln = (bf16 *)p; p += ((size_t)n * C * sizeof(bf16) + al - 1) / al * al; }
        if (gelu != RG_GELU_NONE) {
            pre = (bf16 *)p;
            p += ((size_t)n * OC * sizeof(bf16) + al - 1) / al * al;
            if (res) act = (bf16 *)p;
        }
        const bf16 *x = inp + t0 * C, *r = res ? res + t0 * OC : NULL;
        bf16 *o = out + t0 * OC;
        if (ln) {
            RG_TRY(rg_cuda_layernorm_forward(be, ln, NULL, NULL, x, ln_w, ln_b, eps, n, C));
            x = ln;
        }
        if (gelu == RG_GELU_NONE) {
            if (r) RG_TRY(rg_cuda_matmul_forward_residual(be, o, x, w, bias, r, n, C, OC));
            else RG_TRY(rg_cuda_matmul_forward(be, o, NULL, x, w, bias, n, C, OC, RG_GELU_NONE));
        } else if (!r) {
            RG_TRY(rg_cuda_matmul_forward(be, o, pre, x, w, bias, n, C, OC, gelu));
        } else {
            RG_TRY(rg_cuda_matmul_forward(be, act, pre, x, w, bias, n, C, OC, gelu));
            RG_TRY(rg_cuda_add(be, o, r, act, n * OC));
        }
    }
    return RG_OK;
}

rg_status rg_cuda_linear_infer(rg_backend *be, void *out, const void *inp, const void *ln_w, const void *ln_b,
                               float eps, const void *weight, const void *bias, const void *residual, int64_t T,
                               int C, int OC, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || OC <= 0) return RG_OK;
    if (C <= 0) return rg_fail(RG_ERR_UNSUPPORTED, "cuda linear_infer: C=%d (no inner dimension)", C);
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *lw = (const bf16 *)ln_w, *lb = (const bf16 *)ln_b;
    const bf16 *w = (const bf16 *)weight, *b = (const bf16 *)bias, *r = (const bf16 *)residual;
    int ng = T <= 8 ? 1 : T <= 16 ? 2 : T <= 32 ? 4 : 8;
    bool fits = T <= LI_MAX_NG * 8 && C % 8 == 0 && rg_aligned16(inp) && rg_aligned16(weight) &&
                (!ln_w || (rg_aligned16(ln_w) && (!ln_b || rg_aligned16(ln_b))));
    int mt = pick_mt(st, OC), blocks = (OC + mt * 16 - 1) / (mt * 16), ksplit = 1;
    size_t smem = 0, cap = (size_t)st->prop.sharedMemPerBlockOptin;
    if (fits) {
        ksplit = pick_ksplit(st, C, mt, ln_w != NULL);
        smem = li_layout_of(ng, mt, (int)T, C, li_staged_width(C, ksplit, ln_w != NULL), ln_w != NULL).total;
        /* without LN a block stages only its columns: a wider split may make them fit */
        while (smem > cap && !ln_w && st->prop.major >= 9 && ksplit < 8 &&
               (C + 31) / 32 >= 2 * ksplit * (LI_WARPS / mt)) {
            ksplit *= 2;
            smem = li_layout_of(ng, mt, (int)T, C, li_staged_width(C, ksplit, false), false).total;
        }
        fits = smem <= cap;
    }
    bool fused = fits && (rg_cuda_linear_infer_mode == 1 ||
                          (rg_cuda_linear_infer_mode == 0 && fused_pays(st, T, C, blocks, mt, ksplit)));
    /* the unfused path's matmuls time themselves (matmul.cu) */
    if (!fused) return unfused(be, o, x, lw, lb, eps, w, b, r, T, C, OC, gelu);
    int prof = rg_cuda_prof_begin(st);
    li_args a = {o, x, lw, lb, w, b, r, eps, (int)T, C, OC, gelu, mt, ksplit};
    rg_status s = ng == 1   ? launch_fused<1>(st, a, smem)
                  : ng == 2 ? launch_fused<2>(st, a, smem)
                  : ng == 4 ? launch_fused<4>(st, a, smem)
                            : launch_fused<8>(st, a, smem);
    double bytes = 2.0 * ((double)OC * C + (double)T * C + (double)T * OC * (residual ? 2 : 1));
    rg_cuda_prof_end(st, prof, "linear_infer fused", 2.0 * T * C * OC, bytes, "T=%lld C=%d OC=%d", (long long)T, C,
                     OC);
    return s;
}
