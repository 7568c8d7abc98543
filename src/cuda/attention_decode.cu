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
 * each, K and V of several keys in flight per lane; the scores (fp32, log2
 * units, the scale folded into q) are reduced across the row's lanes and fed
 * to an online softmax per lane group, and the groups and warps are merged at
 * the end. A sequence that fits in one partition writes o directly; longer
 * ones leave (m, l, acc) partials in the attention workspace and a second
 * kernel combines them. P is chosen per call from the host lengths by a
 * small cost model (pick_partition), so that batches of short sequences run
 * in one kernel and a long one is still split. Length 0 gives zeros.
 * Memory-bound: the bytes are K + V of every sequence, q and o
 * (measurements in bench/cuda_attention_NOTES.md). No host sync; the
 * partials' scratch is the attention workspace, grown on demand. */
#include "cuda/attention_common.cuh"
#include "cuda/ops.cuh"

namespace {

constexpr int DEC_THREADS = 128;
constexpr int DEC_WARPS = DEC_THREADS / 32;

/* Query heads per CTA at most for a compiled head dim: keeps the per-lane
 * accumulators (G x 8 floats) and the cross-warp buffer (warps x G x D) small. */
template <int D> struct dec_gmax { static constexpr int value = D >= 256 ? 2 : D >= 128 ? 4 : 8; };

/* Key rows each lane has in flight (K and V each) before using them. */
template <int G> struct dec_unroll { static constexpr int value = G <= 2 ? 8 : 4; };

/* Keys a CTA reads per batch of loads: the smallest useful partition. */
template <int D, int G> struct dec_step {
    static constexpr int value = (32 / (D / 8)) * DEC_WARPS * dec_unroll<G>::value;
};

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

/* Running max below any real score: exp2(M0 - s) is 0 for a real s and
 * exp2(M0 - M0) = 1, so empty lanes need no special case (-inf would give NaN). */
#define DEC_M0 (-1e30f)

template <int D, int G>
__global__ void __launch_bounds__(DEC_THREADS) decode_kernel(const dec_params p) {
    constexpr int L = D / 8;              /* lanes per key row, 16 bytes each */
    constexpr int KPW = 32 / L;           /* keys per warp per step */
    constexpr int KPC = KPW * DEC_WARPS;  /* keys per CTA per step */
    constexpr int U = dec_unroll<G>::value;
    constexpr int STEP = KPC * U;         /* keys per CTA per batch of loads */
    __shared__ __align__(16) float sq[G][D];        /* q * scale * log2(e), zero past d */
    __shared__ __align__(16) float sacc[DEC_WARPS][G][D];
    __shared__ float sm[DEC_WARPS][G], sl[DEC_WARPS][G];

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

    /* This lane reads columns col..col+7 of keys first + u * KPC of each batch. */
    const int c8 = lane % L, kg = lane / L, col = c8 * 8;
    const bool col_ok = col < p.d;
    const int first = warp * KPW + kg;
    const int64_t row_stride = (int64_t)p.hkv * p.d, head_off = (int64_t)kvh * p.d + col;
    int64_t off[U];  /* element offsets of this lane's keys in the cache, -1 when none */
    auto find_rows = [&](int base) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            int jj = base + u * KPC + first, j = j0 + jj;
            off[u] = jj < n && col_ok ? ((int64_t)table[j / p.bs] * p.bs + j % p.bs) * row_stride + head_off : -1;
        }
    };
    find_rows(0);
    __syncthreads();

    /* Online softmax over this lane group's keys (every lane of a group holds
     * the same m and l; acc holds its 8 columns). */
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        m[gi] = DEC_M0;
        l[gi] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[gi][e] = 0.0f;
    }
    for (int base = 0; base < n; base += STEP) {
        uint4 kr[U], vr[U];
        bool valid[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            valid[u] = base + u * KPC + first < n;
            kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
            if (off[u] >= 0) {
                kr[u] = __ldg(reinterpret_cast<const uint4 *>(p.kc + off[u]));
                vr[u] = __ldg(reinterpret_cast<const uint4 *>(p.vc + off[u]));
            }
        }
        if (base + STEP < n) find_rows(base + STEP);  /* the next batch's block-table reads overlap these */
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            float qv[8];
            *reinterpret_cast<float4 *>(qv) = *reinterpret_cast<const float4 *>(&sq[gi][col]);
            *reinterpret_cast<float4 *>(qv + 4) = *reinterpret_cast<const float4 *>(&sq[gi][col + 4]);
            float s[U], mx = m[gi];
#pragma unroll
            for (int u = 0; u < U; u++) {
                float kf[8], x = 0.0f;
                unpack8(kf, kr[u]);
#pragma unroll
                for (int e = 0; e < 8; e++) x = fmaf(qv[e], kf[e], x);
#pragma unroll
                for (int o = L / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
                s[u] = valid[u] ? x : -INFINITY;
                mx = fmaxf(mx, s[u]);
            }
            const float sc = exp2f(m[gi] - mx);
            m[gi] = mx;
            l[gi] *= sc;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[gi][e] *= sc;
#pragma unroll
            for (int u = 0; u < U; u++) {
                float pu = exp2f(s[u] - mx), vf[8];
                l[gi] += pu;
                unpack8(vf, vr[u]);
#pragma unroll
                for (int e = 0; e < 8; e++) acc[gi][e] = fmaf(pu, vf[e], acc[gi][e]);
            }
        }
    }

    /* Merge the key groups of the warp (lanes with the same columns), then the warps. */
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
#pragma unroll
        for (int o = L; o < 32; o <<= 1) {
            float mo = __shfl_xor_sync(0xffffffffu, m[gi], o), lo = __shfl_xor_sync(0xffffffffu, l[gi], o);
            float mn = fmaxf(m[gi], mo), a = exp2f(m[gi] - mn), c = exp2f(mo - mn);
            l[gi] = l[gi] * a + lo * c;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[gi][e] = acc[gi][e] * a + __shfl_xor_sync(0xffffffffu, acc[gi][e], o) * c;
            m[gi] = mn;
        }
        if (kg == 0) {
#pragma unroll
            for (int e = 0; e < 8; e++) sacc[warp][gi][col + e] = acc[gi][e];
            if (c8 == 0) { sm[warp][gi] = m[gi]; sl[warp][gi] = l[gi]; }
        }
    }
    __syncthreads();

    for (int i = tid; i < G * D; i += DEC_THREADS) {
        int gi = i / D, c = i % D;
        if (gi >= ng || c >= p.d) continue;
        float M = sm[0][gi];
#pragma unroll
        for (int w = 1; w < DEC_WARPS; w++) M = fmaxf(M, sm[w][gi]);
        float x = 0.0f, Ls = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            float a = exp2f(sm[w][gi] - M);
            x = fmaf(a, sacc[w][gi][c], x);
            Ls = fmaf(a, sl[w][gi], Ls);
        }
        int64_t row = (int64_t)b * p.h + h0 + gi;
        if (np == 1) {
            p.o[row * p.d + c] = __float2bfloat16_rn(x / Ls);
        } else {
            int64_t at = row * p.n_parts + part;
            p.pacc[at * p.d + c] = x;
            if (c == 0) { p.pm[at] = M; p.pl[at] = Ls; }
        }
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
/* A kernel, its keys per load batch, and its resident CTAs per SM (0 until
 * first asked: a property of the device kind, the same for every backend). */
struct dec_kernel { dec_kernel_t fn; int step; int *per_sm; };

template <int D, int G> dec_kernel make_kernel() {
    static int per_sm = 0;
    return {decode_kernel<D, G>, dec_step<D, G>::value, &per_sm};
}

template <int D> dec_kernel pick_g(int G) {
    constexpr int GM = dec_gmax<D>::value;
    if (G <= 1) return make_kernel<D, 1>();
    if constexpr (GM == 2) {
        return make_kernel<D, 2>();
    } else {
        if (G <= 2) return make_kernel<D, 2>();
        if constexpr (GM == 4) return make_kernel<D, 4>();
        else return G <= 4 ? make_kernel<D, 4>() : make_kernel<D, 8>();
    }
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

/* Kernel lab hooks (bench/cuda_decode_bench.c): force the partition size in
 * keys (rounded up to the kernel's step; 0 = automatic) and read the last one
 * used. Process-wide and unsynchronised: for the benchmark only. */
static int force_part, last_part;
extern "C" void rg_cuda_decode_force_partition(int keys) { force_part = keys > 0 ? keys : 0; }
extern "C" int rg_cuda_decode_last_partition(void) { return last_part; }

/* The partition size P (keys per CTA), from a cost model fitted to the
 * lab's H100 numbers (bench/cuda_attention_NOTES.md), in microseconds:
 *   max(bytes / 2.5 TB/s,                  the whole step at the copy rate,
 *       longest CTA's load batches x 1.5,  a CTA is a chain of load round trips,
 *       all batches x 1.5 / CTAs at once)  latency-bound while the GPU is not full
 *   + 4 if any sequence is split           the reduction kernel and its partials.
 * Candidates: step x 2^k (step = keys of one load batch) and no split; among
 * estimates within 5% of the best the largest P wins (fewer partials, and a
 * grid of fewer waves did better in the lab). */
static int pick_partition(const rg_attn_decode_args *a, int step, int64_t ctas_per_part, int64_t slots) {
    const double t_batch = 1.5, t_reduce = 4.0, bytes_per_us = 2.5e6;
    int64_t keys = 0;
    for (int32_t b = 0; b < a->n_seqs; b++) keys += a->seq_lens_host[b];
    const double t_bytes = (double)keys * ctas_per_part * a->head_dim * 4 / bytes_per_us;
    const int max_len = a->max_seq_len > step ? a->max_seq_len : step;
    double best_t = 1e30;
    int best = max_len;
    double est[40];
    int cand[40], n = 0;
    for (int64_t P = step;; P *= 2) {
        int Pc = P < max_len ? (int)P : max_len;
        int64_t ctas = 0, batches = 0;
        for (int32_t b = 0; b < a->n_seqs; b++) {
            int64_t len = a->seq_lens_host[b], full = len / Pc, rest = len % Pc;
            ctas += full + (rest > 0);
            batches += full * ((Pc + step - 1) / step) + (rest + step - 1) / step;
        }
        ctas *= ctas_per_part;
        batches *= ctas_per_part;
        double t = (double)((Pc + step - 1) / step) * t_batch;
        double t_fill = ctas ? (double)batches * t_batch / (double)(ctas < slots ? ctas : slots) : 0;
        t = t_bytes > t ? t_bytes : t;
        t = t_fill > t ? t_fill : t;
        if (Pc < a->max_seq_len) t += t_reduce;
        est[n] = t;
        cand[n++] = Pc;
        if (t < best_t) best_t = t;
        if (Pc == max_len || n == 40) break;
    }
    for (int i = 0; i < n; i++)
        if (est[i] <= best_t * 1.05) best = cand[i];  /* candidates grow: the last one within 5% */
    return best;
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
    const dec_kernel kern = D == 32 ? pick_g<32>(G) : D == 64 ? pick_g<64>(G) : D == 128 ? pick_g<128>(G)
                                                                                       : pick_g<256>(G);
    if (*kern.per_sm <= 0) {
        int per_sm = 0;
        RG_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern.fn, DEC_THREADS, 0));
        *kern.per_sm = per_sm > 0 ? per_sm : 1;
    }
    int P = pick_partition(a, kern.step, (int64_t)a->n_kv_heads * n_groups,
                           (int64_t)*kern.per_sm * st->prop.multiProcessorCount);
    if (force_part) {
        int64_t f = ((int64_t)force_part + kern.step - 1) / kern.step * kern.step;
        P = f < a->max_seq_len ? (int)f : (a->max_seq_len > kern.step ? a->max_seq_len : kern.step);
    }
    last_part = P;
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
    kern.fn<<<grid, DEC_THREADS, 0, st->stream>>>(p);
    RG_CUDA_CHECK_LAUNCH("decode attention");
    if (n_parts > 1) {
        decode_reduce_kernel<<<(unsigned)((rows + DEC_WARPS - 1) / DEC_WARPS), DEC_THREADS, 0, st->stream>>>(p, rows);
        RG_CUDA_CHECK_LAUNCH("decode attention reduction");
    }
    return RG_OK;
}
