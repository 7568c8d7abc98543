/* attention_decode.cu — decode attention over the paged KV cache on CUDA (one
 * query token per sequence), split over the KV length as in flash-decoding.
 *
 * Layouts (backend.h, rg_attn_decode_args): q (n_seqs, h, d) bf16 with row
 * stride stride_q; k_cache, v_cache (n_blocks, block_size, h_kv, d) bf16;
 * block_tables (n_seqs, max_blocks), seq_lens (n_seqs) int32; o (n_seqs, h, d).
 *
 * One CTA per (sequence, partition of P keys, kv head, group of G query heads
 * of that kv head): K and V rows of the partition are read from global memory
 * once for all G heads. A key row (d bf16) is read by D/8 lanes, 16 bytes
 * each; the scores go to shared memory (fp32, in log2 units with the scale
 * folded into q), then a softmax over the partition, then P.V accumulated in
 * registers and summed across lanes and warps. A sequence that fits in one
 * partition writes o directly; longer ones leave (m, l, acc) partials in the
 * attention workspace and a second kernel combines them. Length 0 gives
 * zeros. Memory-bound: the bytes are K + V of every sequence, q and o. */
#include "cuda/attention_common.cuh"
#include "cuda/ops.cuh"

namespace {

constexpr int DEC_THREADS = 128;
constexpr int DEC_WARPS = DEC_THREADS / 32;
constexpr int DEC_PMAX = 256;   /* the largest partition (keys per CTA) */
constexpr int DEC_UNROLL = 8;   /* key rows each lane has in flight before using them */

/* Query heads per CTA at most for a compiled head dim: keeps the per-lane
 * accumulators (G x 8 floats) and the cross-warp buffer (warps x G x D) small. */
template <int D> struct dec_gmax { static constexpr int value = D >= 256 ? 2 : D >= 128 ? 4 : 8; };

struct dec_params {
    const rg_bf16 *q, *kc, *vc;
    rg_bf16 *o;
    const int32_t *tables, *lens;
    float *pm, *pl, *pacc;      /* partials: m, l (n_seqs, h, n_parts); acc (n_seqs, h, n_parts, d) */
    int h, hkv, d, g, n_groups; /* n_groups: CTAs per kv head (ceil(g / G)) */
    int bs, max_blocks, part, n_parts;
    int64_t stride_q;
    float scale_log2;           /* softmax scale * log2(e) */
};

__device__ __forceinline__ void unpack8(float (&f)[8], uint4 u) {
    const __nv_bfloat162 *h2 = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 x = __bfloat1622float2(h2[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

/* 16 bytes of key/value row j (partition-local index jj) for this lane's columns. */
__device__ __forceinline__ uint4 load_row(const dec_params &p, const rg_bf16 *cache, const int32_t *table, int j,
                                          int kvh, int col) {
    int64_t slot = (int64_t)table[j / p.bs] * p.bs + j % p.bs;
    return __ldg(reinterpret_cast<const uint4 *>(cache + (slot * p.hkv + kvh) * p.d + col));
}

template <int D, int G>
__global__ void __launch_bounds__(DEC_THREADS) decode_kernel(const dec_params p) {
    constexpr int L = D / 8;              /* lanes per key row */
    constexpr int KPW = 32 / L;           /* keys per warp per step */
    constexpr int KPC = KPW * DEC_WARPS;  /* keys per CTA per step */
    __shared__ float sq[G][D];            /* q * scale * log2(e), zero past d */
    __shared__ float ss[G][DEC_PMAX];     /* scores, then exp2(s - m) */
    __shared__ float sred[DEC_WARPS][G * D];
    __shared__ float sm[G], sl[G];

    const int b = blockIdx.x / p.n_parts, part = blockIdx.x % p.n_parts;
    const int kvh = blockIdx.y / p.n_groups, grp = blockIdx.y % p.n_groups;
    const int h0 = kvh * p.g + grp * G, ng = min(G, p.g - grp * G);
    const int len = p.lens[b], j0 = part * p.part;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

    if (len <= 0) {
        if (part == 0)
            for (int i = tid; i < ng * p.d; i += DEC_THREADS)
                p.o[((int64_t)b * p.h + h0 + i / p.d) * p.d + i % p.d] = __float2bfloat16_rn(0.0f);
        return;
    }
    if (j0 >= len) return;
    const int n = min(p.part, len - j0);
    const int np = (len + p.part - 1) / p.part;
    const int32_t *table = p.tables + (int64_t)b * p.max_blocks;

    for (int i = tid; i < G * D; i += DEC_THREADS) {
        int gi = i / D, c = i % D;
        float x = 0.0f;
        if (gi < ng && c < p.d) x = __bfloat162float(p.q[(int64_t)b * p.stride_q + (int64_t)(h0 + gi) * p.d + c]);
        sq[gi][c] = x * p.scale_log2;
    }
    __syncthreads();

    const int c8 = lane % L, kg = lane / L;
    const bool col_ok = c8 * 8 < p.d;
    const int first = warp * KPW + kg;    /* this lane's key within a step */

    /* Scores: s[gi][jj] = q[gi] . k[j0 + jj] (log2 units). */
    {
        float qr[G][8];
#pragma unroll
        for (int gi = 0; gi < G; gi++)
#pragma unroll
            for (int e = 0; e < 8; e++) qr[gi][e] = sq[gi][c8 * 8 + e];
        for (int base = 0; base < n; base += KPC * DEC_UNROLL) {
            uint4 kr[DEC_UNROLL];
#pragma unroll
            for (int u = 0; u < DEC_UNROLL; u++) {
                int jj = base + u * KPC + first;
                kr[u] = make_uint4(0, 0, 0, 0);
                if (jj < n && col_ok) kr[u] = load_row(p, p.kc, table, j0 + jj, kvh, c8 * 8);
            }
#pragma unroll
            for (int u = 0; u < DEC_UNROLL; u++) {
                int jj = base + u * KPC + first;
                float kf[8];
                unpack8(kf, kr[u]);
#pragma unroll
                for (int gi = 0; gi < G; gi++) {
                    float s = 0.0f;
#pragma unroll
                    for (int e = 0; e < 8; e++) s = fmaf(qr[gi][e], kf[e], s);
#pragma unroll
                    for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                    if (c8 == 0 && jj < n) ss[gi][jj] = s;
                }
            }
        }
    }
    __syncthreads();

    /* Softmax over the partition, one warp per head. */
    for (int gi = warp; gi < G; gi += DEC_WARPS) {
        float m = -INFINITY;
        for (int jj = lane; jj < n; jj += 32) m = fmaxf(m, ss[gi][jj]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int jj = lane; jj < n; jj += 32) {
            float e = exp2f(ss[gi][jj] - m);
            ss[gi][jj] = e;
            l += e;
        }
        l = rg_warp_sum(l);
        if (lane == 0) { sm[gi] = m; sl[gi] = l; }
    }
    __syncthreads();

    /* acc[gi] = sum_jj p[gi][jj] v[j0 + jj] over this lane's keys. */
    float acc[G][8];
#pragma unroll
    for (int gi = 0; gi < G; gi++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[gi][e] = 0.0f;
    for (int base = 0; base < n; base += KPC * DEC_UNROLL) {
        uint4 vr[DEC_UNROLL];
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            int jj = base + u * KPC + first;
            vr[u] = make_uint4(0, 0, 0, 0);
            if (jj < n && col_ok) vr[u] = load_row(p, p.vc, table, j0 + jj, kvh, c8 * 8);
        }
#pragma unroll
        for (int u = 0; u < DEC_UNROLL; u++) {
            int jj = base + u * KPC + first;
            if (jj >= n) continue;
            float vf[8];
            unpack8(vf, vr[u]);
#pragma unroll
            for (int gi = 0; gi < G; gi++) {
                float pj = ss[gi][jj];
#pragma unroll
                for (int e = 0; e < 8; e++) acc[gi][e] = fmaf(pj, vf[e], acc[gi][e]);
            }
        }
    }
    /* Sum over the key groups of the warp (lanes with the same c8), then over warps. */
#pragma unroll
    for (int gi = 0; gi < G; gi++)
#pragma unroll
        for (int e = 0; e < 8; e++)
#pragma unroll
            for (int o = L; o < 32; o <<= 1) acc[gi][e] += __shfl_xor_sync(0xffffffffu, acc[gi][e], o);
    if (kg == 0)
#pragma unroll
        for (int gi = 0; gi < G; gi++)
#pragma unroll
            for (int e = 0; e < 8; e++) sred[warp][gi * D + c8 * 8 + e] = acc[gi][e];
    __syncthreads();

    for (int i = tid; i < G * D; i += DEC_THREADS) {
        int gi = i / D, c = i % D;
        if (gi >= ng || c >= p.d) continue;
        float x = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) x += sred[w][i];
        int64_t row = (int64_t)b * p.h + h0 + gi;
        if (np == 1) p.o[row * p.d + c] = __float2bfloat16_rn(x / sl[gi]);
        else p.pacc[(row * p.n_parts + part) * p.d + c] = x;
    }
    if (np > 1 && tid < ng) {
        int64_t i = ((int64_t)b * p.h + h0 + tid) * p.n_parts + part;
        p.pm[i] = sm[tid];
        p.pl[i] = sl[tid];
    }
}

/* Combines the partitions of every (sequence, head) with more than one:
 * o = sum_p 2^(m_p - M) acc_p / sum_p 2^(m_p - M) l_p. One warp per row. */
__global__ void __launch_bounds__(DEC_THREADS) decode_reduce_kernel(const dec_params p, int64_t rows) {
    const int64_t row = (int64_t)blockIdx.x * DEC_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int len = p.lens[row / p.h];
    const int np = (len + p.part - 1) / p.part;
    if (np <= 1) return;  /* written by decode_kernel */
    const float *pm = p.pm + row * p.n_parts, *pl = p.pl + row * p.n_parts;
    float M = -INFINITY;
    for (int i = lane; i < np; i += 32) M = fmaxf(M, pm[i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float Ls = 0.0f;
    for (int i = lane; i < np; i += 32) Ls += exp2f(pm[i] - M) * pl[i];
    const float inv = 1.0f / rg_warp_sum(Ls);
    const float *acc = p.pacc + row * p.n_parts * p.d;
    for (int c = lane; c < p.d; c += 32) {
        float x = 0.0f;
        for (int i = 0; i < np; i++) x = fmaf(exp2f(pm[i] - M), acc[(int64_t)i * p.d + c], x);
        p.o[row * p.d + c] = __float2bfloat16_rn(x * inv);
    }
}

typedef void (*dec_kernel_t)(const dec_params);

template <int D> dec_kernel_t pick_g(int G) {
    constexpr int GM = dec_gmax<D>::value;
    if (G <= 1) return decode_kernel<D, 1>;
    if (G <= 2) return decode_kernel<D, 2>;
    if constexpr (GM >= 4) { if (G <= 4) return decode_kernel<D, 4>; }
    if constexpr (GM >= 8) return decode_kernel<D, 8>;
    return nullptr;
}

/* Heads per CTA: all of a kv head's g query heads when they fit, else groups
 * of the largest compiled G. */
int heads_per_cta(int D, int g) {
    int gm = D >= 256 ? 2 : D >= 128 ? 4 : 8;
    int G = 1;
    while (G < g && G < gm) G *= 2;
    return G;
}

} // namespace

/* Partition size: the largest of 256, 128, 64 keys that still gives at least
 * two CTAs per multiprocessor (shorter partitions only cost more partials). */
static int pick_partition(const rg_attn_decode_args *a, int64_t ctas_per_part, int sms) {
    int P = DEC_PMAX;
    for (; P > 64; P /= 2) {
        int64_t ctas = 0;
        for (int32_t b = 0; b < a->n_seqs; b++) ctas += (a->seq_lens_host[b] + P - 1) / P;
        if (ctas * ctas_per_part >= 2 * (int64_t)sms) break;
    }
    return P;
}

rg_status rg_cuda_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                              const void *k_cache, const void *v_cache) {
    const char *fn = "rg_attn_decode (cuda)";
    rg_cuda_state *st = rg_cuda(be);
    if (a->n_seqs <= 0) return RG_OK;
    if (!rg_aligned16(k_cache) || !rg_aligned16(v_cache))
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: k_cache and v_cache must be 16-byte aligned", fn);
    const int d = a->head_dim, g = a->n_heads / a->n_kv_heads;
    const int D = d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256;
    const int G = heads_per_cta(D, g), n_groups = (g + G - 1) / G;
    dec_kernel_t kern = D == 32 ? pick_g<32>(G) : D == 64 ? pick_g<64>(G) : D == 128 ? pick_g<128>(G)
                                                                                      : pick_g<256>(G);
    const int P = pick_partition(a, (int64_t)a->n_kv_heads * n_groups, st->prop.multiProcessorCount);
    const int n_parts = a->max_seq_len > 0 ? (a->max_seq_len + P - 1) / P : 1;
    if ((int64_t)a->n_seqs * n_parts > INT32_MAX || (int64_t)a->n_kv_heads * n_groups > 65535)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: %d sequences x %d partitions x %d kv heads exceed one grid", fn,
                       a->n_seqs, n_parts, a->n_kv_heads);

    dec_params p;
    p.q = (const rg_bf16 *)q;
    p.kc = (const rg_bf16 *)k_cache;
    p.vc = (const rg_bf16 *)v_cache;
    p.o = (rg_bf16 *)o;
    p.tables = a->block_tables;
    p.lens = a->seq_lens;
    p.pm = p.pl = p.pacc = NULL;
    p.h = a->n_heads;
    p.hkv = a->n_kv_heads;
    p.d = d;
    p.g = g;
    p.n_groups = n_groups;
    p.bs = a->block_size;
    p.max_blocks = a->max_blocks;
    p.part = P;
    p.n_parts = n_parts;
    p.stride_q = a->stride_q;
    p.scale_log2 = a->scale * RG_LOG2E;
    const int64_t rows = (int64_t)a->n_seqs * a->n_heads;
    if (n_parts > 1) {
        /* m, l and acc of every (sequence, head, partition), fp32. */
        size_t n_ml = (size_t)rows * (size_t)n_parts, bytes = n_ml * (size_t)(d + 2) * sizeof(float);
        void *ws;
        RG_TRY(rg_cuda_attn_ws_reserve(be, bytes, &ws));
        p.pm = (float *)ws;
        p.pl = p.pm + n_ml;
        p.pacc = p.pl + n_ml;
    }
    dim3 grid((unsigned)(a->n_seqs * n_parts), (unsigned)(a->n_kv_heads * n_groups));
    kern<<<grid, DEC_THREADS, 0, st->stream>>>(p);
    RG_CUDA_CHECK_LAUNCH("decode attention");
    if (n_parts > 1) {
        decode_reduce_kernel<<<(unsigned)((rows + DEC_WARPS - 1) / DEC_WARPS), DEC_THREADS, 0, st->stream>>>(p, rows);
        RG_CUDA_CHECK_LAUNCH("decode attention reduction");
    }
    return RG_OK;
}
