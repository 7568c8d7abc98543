/* attention_decode.cu — decode attention over the paged KV cache on CUDA (one
 * query token per sequence), split over the KV length as in flash-decoding,
 * in one kernel whose launch depends on no per-step host value (so that a
 * CUDA graph of the decode step can replay it).
 *
 * Layouts (backend.h, rg_attn_decode_args): q (n_seqs, h, d) bf16 with row
 * stride stride_q; k_cache, v_cache (n_blocks, block_size, h_kv, d) bf16;
 * block_tables (n_seqs, max_blocks), seq_lens (n_seqs) int32; o (n_seqs, h, d).
 *
 * Work items: a grid of (kv heads x groups of G query heads) x (n_seqs + NW)
 * CTAs (x, y). Every CTA first reads all the device lengths and derives the
 * partition size P = max(STEP, total keys / NW rounded up to STEP), so that
 * the whole step is about NW CTAs' worth of keys per head, and then which
 * (sequence, partition) its item is: sequence b owns max(1, ceil(len_b / P))
 * consecutive items, and since sum ceil(len_b / P) <= total / P + n_seqs <=
 * NW + n_seqs every item fits in the grid; CTAs past the last item exit.
 * NW is chosen on the host from the GPU's size and the batch's shape only.
 * So a batch of short sequences runs unsplit, a long one alone is split
 * finely, and one huge among many tiny is split while the tiny ones are not.
 *
 * A CTA reads the K and V rows of its partition once for all G heads. A key
 * row (d bf16) is read by D/8 lanes, 16 bytes each, K and V of several keys in
 * flight per lane; the scores (fp32, log2 units, the scale folded into q) are
 * reduced across the row's lanes and fed to an online softmax per lane group,
 * and the groups and warps are merged at the end. A sequence of one partition
 * writes o directly; otherwise each CTA leaves (m, l, acc) partials in the
 * decode workspace, and the last CTA of a (sequence, head group) to finish
 * (a per-row counter, which that CTA resets to 0 for the next call) combines
 * them in partition order (deterministic). Length 0 gives zeros.
 * Memory-bound: the bytes are K + V of every sequence, q and o
 * (measurements in bench/cuda_attention_NOTES.md). No host sync; the
 * workspace (partials and counters) is grown only outside a graph capture.
 *
 * Op attn_decode_append (the decode step's kv_write folded in): the new
 * token's k, v are read from the qkv projection's output and written to
 * their slot here, and since every other cache row is constant during the
 * step, a CTA requests its first batch of K/V rows before the grid
 * dependency wait (launched with programmatic dependent launch, as
 * linear_infer does with its weights): at batch 1 the DRAM round trips of
 * the old keys overlap the qkv projection, and only q, the new row and the
 * arithmetic remain after it. */
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

/* CTAs per multiprocessor the register budget must allow (launch bounds):
 * what the plain kernels reach on their own (125 registers at G = 1, 154-168
 * at 2 and 4); the append variants, whose first batch of K/V is live across
 * the grid dependency wait, would otherwise take 137 / 192 registers and lose
 * a CTA per multiprocessor (measured: batch 64 steps 14 % slower). */
template <int G> struct dec_min_ctas { static constexpr int value = G == 1 ? 4 : G <= 4 ? 3 : 2; };

/* Keys a CTA reads per batch of loads: the smallest useful partition. */
template <int D, int G> struct dec_step {
    static constexpr int value = (32 / (D / 8)) * DEC_WARPS * dec_unroll<G>::value;
};

struct dec_params {
    const rg_bf16 *q, *kc, *vc;
    rg_bf16 *o;
    rg_bf16 *kw, *vw;           /* APPEND: the same caches, written at the new token's slot */
    const rg_bf16 *kn, *vn;     /* APPEND: the new token's k, v rows (n_seqs, h_kv * d), strides below */
    int64_t stride_kn, stride_vn;
    bool new_vec;               /* kn, vn rows allow 16-byte loads */
    const int32_t *tables, *lens;
    float *pm, *pl, *pacc;      /* partials: m, l (n_items, h); acc (n_items, h, d) */
    int *count;                 /* (n_seqs, h_kv * n_groups) CTAs done, 0 between calls */
    int h, hkv, d, g, n_groups; /* n_groups: CTAs per kv head (ceil(g / G)) */
    int bs, max_blocks, n_seqs;
    int nw;                     /* partition budget: P >= total keys / nw */
    int force_part;             /* lab: P in keys (a multiple of STEP), 0 = derived */
    int64_t stride_q;
    float scale_log2;           /* softmax scale * log2(e) */
};


/* Running max below any real score: exp2(M0 - s) is 0 for a real s and
 * exp2(M0 - M0) = 1, so empty lanes need no special case (-inf would give NaN). */
#define DEC_M0 (-1e30f)

/* Warp 0 of a CTA: the partition size P from the device lengths, and which
 * (sequence, partition) work item blockIdx.y is (file comment). out: sequence
 * (-1 when the item is past the last one), partition, partitions of that
 * sequence, P. */
/* A load of an int (lengths, block table): L2 only (CG: before the grid
 * dependency wait, where nothing guarantees that this multiprocessor's L1
 * holds no older copy) or the ordinary cached load (after it; the plain op). */
template <bool CG> __device__ __forceinline__ int ld_int(const int32_t *x) { return CG ? __ldcg(x) : *x; }

template <bool CG>
__device__ void find_item(const dec_params &p, int step, int lane, int *out) {
    long long total = 0;
    for (int i = lane; i < p.n_seqs; i += 32) total += max(ld_int<CG>(p.lens + i), 0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
    long long per = (total + p.nw - 1) / p.nw;
    int P = p.force_part ? p.force_part : (int)max((long long)step, (per + step - 1) / step * step);
    const int item = blockIdx.y;
    int before = 0, b = -1, part = 0, np = 0;
    for (int base = 0; base < p.n_seqs && b < 0; base += 32) {
        int i = base + lane, len = i < p.n_seqs ? max(ld_int<CG>(p.lens + i), 0) : 0;
        int mine = i < p.n_seqs ? max(1, (len + P - 1) / P) : 0, incl = mine;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int t = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += t;
        }
        /* The lane whose items cover `item`, if any in this chunk of 32 sequences. */
        unsigned hit = __ballot_sync(0xffffffffu, mine > 0 && item >= before + incl - mine && item < before + incl);
        if (hit) {
            int src = __ffs(hit) - 1;
            b = base + src;
            part = item - (before + __shfl_sync(0xffffffffu, incl - mine, src));
            np = __shfl_sync(0xffffffffu, mine, src);
        }
        before += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) { out[0] = b; out[1] = part; out[2] = np; out[3] = P; }
}

/* After a CTA has written its partials: the last of the np CTAs of sequence b
 * and this head group (items first..first+np-1) combines them,
 * o = sum_p 2^(m_p - M) acc_p / sum_p 2^(m_p - M) l_p, in partition order, and
 * resets the counter. The fences order the partials before the count (the
 * writers) and the count before the reads (the last CTA); reads go to L2. */
__device__ void merge_if_last(const dec_params &p, int b, int first, int np, int h0, int ng) {
    __shared__ int s_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        int *cnt = p.count + (int64_t)b * gridDim.x + blockIdx.x;
        int done = atomicAdd(cnt, 1) + 1;
        s_last = done == np;
        if (done == np) *cnt = 0;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int i = threadIdx.x; i < ng * p.d; i += DEC_THREADS) {
        const int hh = h0 + i / p.d, c = i % p.d;
        float M = -INFINITY;
        for (int q = 0; q < np; q++) M = fmaxf(M, __ldcg(p.pm + (int64_t)(first + q) * p.h + hh));
        float x = 0.0f, Ls = 0.0f;
        for (int q = 0; q < np; q++) {
            const int64_t at = (int64_t)(first + q) * p.h + hh;
            const float a = exp2f(__ldcg(p.pm + at) - M);
            Ls = fmaf(a, __ldcg(p.pl + at), Ls);
            x = fmaf(a, __ldcg(p.pacc + at * p.d + c), x);
        }
        p.o[((int64_t)b * p.h + hh) * p.d + c] = __float2bfloat16_rn(x / Ls);
    }
}

/* 8 bf16 of a new k or v row (after the grid dependency: the kernel before wrote them). */
__device__ __forceinline__ uint4 load_new8(const rg_bf16 *x, bool vec) {
    if (vec) return __ldcg(reinterpret_cast<const uint4 *>(x));
    uint4 u;
    unsigned short *h = reinterpret_cast<unsigned short *>(&u);
    const unsigned short *xs = reinterpret_cast<const unsigned short *>(x);
#pragma unroll
    for (int e = 0; e < 8; e++) h[e] = __ldcg(xs + e);
    return u;
}

/* APPEND (op attn_decode_append): the new token's k, v come from p.kn, p.vn
 * and are written to its cache slot by one CTA per (sequence, kv head); all
 * other cache rows, the lengths and the block table are constant during the
 * step, so they are read before the grid dependency wait (programmatic
 * dependent launch: inside the decode graph this overlaps the qkv
 * projection), and only q and the new rows after it. Without APPEND (op
 * attn_decode, whose kv_write ran just before) everything waits. */
template <int D, int G, bool APPEND>
__global__ void __launch_bounds__(DEC_THREADS, dec_min_ctas<G>::value) decode_kernel(const dec_params p) {
    constexpr int L = D / 8;              /* lanes per key row, 16 bytes each */
    constexpr int KPW = 32 / L;           /* keys per warp per step */
    constexpr int KPC = KPW * DEC_WARPS;  /* keys per CTA per step */
    constexpr int U = dec_unroll<G>::value;
    constexpr int STEP = KPC * U;         /* keys per CTA per batch of loads */
    __shared__ __align__(16) float sq[G][D];        /* q * scale * log2(e), zero past d */
    __shared__ __align__(16) float sacc[DEC_WARPS][G][D];
    __shared__ float sm[DEC_WARPS][G], sl[DEC_WARPS][G];
    __shared__ int s_item[4];   /* sequence, partition, partitions of it, P; sequence -1: no item */

    const int kvh = blockIdx.x / p.n_groups, grp = blockIdx.x % p.n_groups;
    const int h0 = kvh * p.g + grp * G, ng = min(G, p.g - grp * G);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    if (warp == 0) find_item<APPEND>(p, STEP, lane, s_item);
    __syncthreads();
    const int b = s_item[0], part = s_item[1], np = s_item[2], P = s_item[3];
    if (b < 0) return;
    const int len = ld_int<APPEND>(p.lens + b), j0 = part * P;
    if (len <= 0) {
        if (APPEND) { /* o may still be read by an earlier kernel: written after the wait */
            rg_pdl_wait();
            rg_pdl_launch_dependents();
        }
        for (int i = tid; i < ng * p.d; i += DEC_THREADS)
            p.o[((int64_t)b * p.h + h0 + i / p.d) * p.d + i % p.d] = __float2bfloat16_rn(0.0f);
        return;
    }
    const int n = min(P, len - j0);
    const int32_t *table = p.tables + (int64_t)b * p.max_blocks;

    /* This lane reads columns col..col+7 of keys first + u * KPC of each batch. */
    const int c8 = lane % L, kg = lane / L, col = c8 * 8;
    const bool col_ok = col < p.d;
    const int first = warp * KPW + kg;
    const int64_t row_stride = (int64_t)p.hkv * p.d, head_off = (int64_t)kvh * p.d + col;
    int64_t off[U];  /* element offsets of this lane's keys in the cache, -1 when none or new */
    unsigned newm = 0;   /* APPEND: bit u set when key u is the new token (read from kn, vn) */
    /* early: before the wait (L2-only loads, see ld_int) */
    auto find_rows = [&](int base, bool early) {
        newm = 0;
#pragma unroll
        for (int u = 0; u < U; u++) {
            int jj = base + u * KPC + first, j = j0 + jj;
            bool in = jj < n && col_ok, fresh = APPEND && in && j == len - 1;
            int blk = in && !fresh ? (early ? ld_int<true>(table + j / p.bs) : ld_int<false>(table + j / p.bs)) : 0;
            off[u] = in && !fresh ? ((int64_t)blk * p.bs + j % p.bs) * row_stride + head_off : -1;
            if (fresh) newm |= 1u << u;
        }
    };
    uint4 kr[U], vr[U];
    /* K and V of the batch whose rows find_rows found (cache rows only):
     * before the wait L2-only loads, after it the read-only path of the
     * plain kernel (session 4's third call, with L2-only loads everywhere and
     * PDL on the plain op too, timed the plain kernel 20-43 % slower; which of
     * the two cost it was not separated, so both went back). */
    auto load_cache = [&](bool early) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
            if (off[u] >= 0) {
                const uint4 *kp = reinterpret_cast<const uint4 *>(p.kc + off[u]);
                const uint4 *vp = reinterpret_cast<const uint4 *>(p.vc + off[u]);
                kr[u] = early ? __ldcg(kp) : __ldg(kp);
                vr[u] = early ? __ldcg(vp) : __ldg(vp);
            }
        }
    };
    auto load_new = [&](unsigned m) {
        if (!APPEND || !m) return;
        const int64_t at = (int64_t)kvh * p.d + col;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (m >> u & 1) {
                kr[u] = load_new8(p.kn + (int64_t)b * p.stride_kn + at, p.new_vec);
                vr[u] = load_new8(p.vn + (int64_t)b * p.stride_vn + at, p.new_vec);
            }
    };
    find_rows(0, APPEND);
    unsigned cur_new = newm;
    if (APPEND) {
        /* the first batch of old rows and the next batch's table entries are
         * in flight before the wait */
        load_cache(true);
        if (STEP < n) find_rows(STEP, true);
        rg_pdl_wait();
        rg_pdl_launch_dependents();
        load_new(cur_new);
        /* The new token's k, v into their slot: by the CTA that holds the last
         * position, for the first head group of the kv head. */
        if (part == np - 1 && blockIdx.x % p.n_groups == 0 && tid < p.d / 8) {
            const int j = len - 1;
            const int64_t at = (int64_t)kvh * p.d + tid * 8;
            const int64_t dst = ((int64_t)table[j / p.bs] * p.bs + j % p.bs) * row_stride + at;
            *reinterpret_cast<uint4 *>(p.kw + dst) = load_new8(p.kn + (int64_t)b * p.stride_kn + at, p.new_vec);
            *reinterpret_cast<uint4 *>(p.vw + dst) =
                load_new8(p.vn + (int64_t)b * p.stride_vn + at, p.new_vec);
        }
    }

    for (int i = tid; i < G * D; i += DEC_THREADS) {
        int gi = i / D, c = i % D;
        float x = 0.0f;
        if (gi < ng && c < p.d) x = __bfloat162float(p.q[(int64_t)b * p.stride_q + (int64_t)(h0 + gi) * p.d + c]);
        sq[gi][c] = x * p.scale_log2;
    }
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
        if (!APPEND || base > 0) {  /* (APPEND's first batch is loaded above) */
            load_cache(false);
            cur_new = newm;
            load_new(cur_new);
            if (base + STEP < n) find_rows(base + STEP, false);  /* the next batch's block-table reads overlap these */
        }
        bool valid[U];
#pragma unroll
        for (int u = 0; u < U; u++) valid[u] = base + u * KPC + first < n;
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            float qv[8];
            *reinterpret_cast<float4 *>(qv) = *reinterpret_cast<const float4 *>(&sq[gi][col]);
            *reinterpret_cast<float4 *>(qv + 4) = *reinterpret_cast<const float4 *>(&sq[gi][col + 4]);
            float s[U], mx = m[gi];
#pragma unroll
            for (int u = 0; u < U; u++) {
                float kf[8], x = 0.0f;
                rg_unpack_bf16x8(kf, kr[u]);
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
                rg_unpack_bf16x8(vf, vr[u]);
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
            int64_t at = (int64_t)blockIdx.y * p.h + h0 + gi;
            p.pacc[at * p.d + c] = x;
            if (c == 0) { p.pm[at] = M; p.pl[at] = Ls; }
        }
    }
    if (np > 1) merge_if_last(p, b, blockIdx.y - part, np, h0, ng);
}

typedef void (*dec_kernel_t)(const dec_params);
/* A kernel and its keys per load batch. */
struct dec_kernel { dec_kernel_t fn; int step; };

template <int D, int G, bool A> dec_kernel make_kernel() {
    return {decode_kernel<D, G, A>, dec_step<D, G>::value};
}

template <int D, bool A> dec_kernel pick_g(int G) {
    constexpr int GM = dec_gmax<D>::value;
    if (G <= 1) return make_kernel<D, 1, A>();
    if constexpr (GM == 2) {
        return make_kernel<D, 2, A>();
    } else {
        if (G <= 2) return make_kernel<D, 2, A>();
        if constexpr (GM == 4) return make_kernel<D, 4, A>();
        else return G <= 4 ? make_kernel<D, 4, A>() : make_kernel<D, 8, A>();
    }
}

template <bool A> dec_kernel pick_kernel(int D, int G) {
    return D == 32 ? pick_g<32, A>(G) : D == 64 ? pick_g<64, A>(G) : D == 128 ? pick_g<128, A>(G)
                                                                          : pick_g<256, A>(G);
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
 * keys (rounded up to the kernel's step; 0 = derived on the device) and read
 * the last one used (when derived: the host's replay of the device rule over
 * seq_lens_host). Process-wide and unsynchronised: for the benchmark only. */
static int force_part, last_part;
extern "C" void rg_cuda_decode_force_partition(int keys) { force_part = keys > 0 ? keys : 0; }
extern "C" int rg_cuda_decode_last_partition(void) { return last_part; }

/* The partition budget NW: the device picks P so that all the keys of the
 * step make about NW partitions per head group, i.e. about 2 CTAs per SM in
 * all (ctas_per_part = kv heads x head groups). The lab's H100 numbers
 * (bench/results/cuda_decode_2026-11-22_h100.md) put the best P of every case
 * there within a few percent of total keys x ctas_per_part / (2 x SMs):
 * batch 1 of 604 keys -> 128, one of 8192 -> 384 (best 512, 256 close),
 * batch 64 of 21056 keys -> no split, GQA 16 x 2048 -> 1024, 63 tiny + 4000
 * -> 256 (best 512, 256 within 12%). It depends on no length, so the launch
 * is the same at every step of a graph. */
static int partition_budget(const rg_cuda_state *st, int64_t ctas_per_part) {
    int64_t nw = 2 * (int64_t)st->prop.multiProcessorCount / ctas_per_part;
    return nw < 1 ? 1 : (int)nw;
}

/* The decode workspace: a region of counters (at least n_seqs x
 * ctas_per_part int32), zero between calls, then the partials (n_items x h x
 * (d + 2) fp32). The counters' region never moves or shrinks while the
 * buffer lives, so that no call's partials land on a counter another call
 * will read. Grown (zeroed) outside a capture only: a graph that baked the
 * old buffer in sees st->ws_gen change. */
static size_t counter_bytes(size_t counters) { return (counters * sizeof(int) + 255) / 256 * 256; }

static rg_status dec_ws_reserve(rg_cuda_state *st, size_t floats, size_t counters, float **part, int **count) {
    const char *fn = "rg_attn_decode (cuda)";
    size_t n_cnt = counters > st->dec_ws_counters ? counters + counters / 4 : st->dec_ws_counters;
    size_t need = counter_bytes(n_cnt) + floats * sizeof(float);
    if (need > st->dec_ws_bytes || n_cnt != st->dec_ws_counters) {
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        RG_CUDA_TRY(cudaStreamIsCapturing(st->stream, &cs));
        if (cs != cudaStreamCaptureStatusNone)
            return rg_fail(RG_ERR_UNSUPPORTED, "%s: the decode workspace must grow to %zu bytes during a graph "
                           "capture (run the step once without a graph first)", fn, need);
        size_t want = counter_bytes(n_cnt) + (floats + floats / 4) * sizeof(float);
        /* Running work may still use the old buffer: freeing it synchronises. */
        if (st->dec_ws) RG_CUDA_TRY(cudaFree(st->dec_ws));
        st->dec_ws = NULL;
        st->dec_ws_bytes = st->dec_ws_counters = 0;
        st->ws_gen++;
        cudaError_t e = cudaMalloc(&st->dec_ws, want);
        /* On the backend's stream (non-blocking: a plain cudaMemset would not order before the kernel). */
        if (e == cudaSuccess) e = cudaMemsetAsync(st->dec_ws, 0, counter_bytes(n_cnt), st->stream);
        if (e != cudaSuccess) {
            cudaGetLastError();
            cudaFree(st->dec_ws);
            st->dec_ws = NULL;
            return rg_fail(e == cudaErrorMemoryAllocation ? RG_ERR_OUT_OF_MEMORY : RG_ERR_BACKEND,
                           "%s: cannot allocate a %zu-byte decode workspace: %s", fn, want, cudaGetErrorString(e));
        }
        st->dec_ws_bytes = want;
        st->dec_ws_counters = n_cnt;
    }
    *count = (int *)st->dec_ws;
    *part = (float *)((char *)st->dec_ws + counter_bytes(st->dec_ws_counters));
    return RG_OK;
}

/* Both ops: append is false for attn_decode (kn, vn unused). */
static rg_status decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q, void *k_cache,
                        void *v_cache, bool append, const void *kn, int32_t stride_kn, const void *vn,
                        int32_t stride_vn) {
    const char *fn = append ? "attn_decode_append (cuda)" : "rg_attn_decode (cuda)";
    rg_cuda_state *st = rg_cuda(be);
    if (a->n_seqs <= 0) return RG_OK;
    if (!rg_aligned16(k_cache) || !rg_aligned16(v_cache))
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: k_cache and v_cache must be 16-byte aligned", fn);
    const int d = a->head_dim, g = a->n_heads / a->n_kv_heads;
    const int D = d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256;
    const int G = heads_per_cta(D, g), n_groups = (g + G - 1) / G;
    const dec_kernel kern = append ? pick_kernel<true>(D, G) : pick_kernel<false>(D, G);
    const int64_t cpp = (int64_t)a->n_kv_heads * n_groups;
    const int nw = partition_budget(st, cpp);
    int fp = 0;
    if (force_part) {
        int64_t f = ((int64_t)force_part + kern.step - 1) / kern.step * kern.step;
        fp = f < (1 << 30) ? (int)f : 1 << 30;
    }
    /* Items: n_seqs + nw cover any lengths when P is derived; a forced P is
     * sized from the host lengths (lab only). */
    int64_t n_items = (int64_t)a->n_seqs + nw, total = 0;
    if (a->seq_lens_host) {
        for (int32_t b = 0; b < a->n_seqs; b++) total += a->seq_lens_host[b];
        int64_t per = (total + nw - 1) / nw, P = fp ? fp : (per + kern.step - 1) / kern.step * kern.step;
        if (P < kern.step) P = kern.step;
        last_part = (int)(P < a->max_seq_len ? P : a->max_seq_len);
        if (fp) {
            n_items = 0;
            for (int32_t b = 0; b < a->n_seqs; b++) {
                int64_t np = (a->seq_lens_host[b] + P - 1) / P;
                n_items += np > 1 ? np : 1;
            }
        }
    } else if (fp) {
        return rg_fail(RG_ERR_INVALID_ARG, "%s: a forced partition needs seq_lens_host", fn);
    }
    if (n_items > 65535 || cpp > INT32_MAX)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: %lld work items x %lld head groups exceed one grid", fn,
                       (long long)n_items, (long long)cpp);

    dec_params p;
    p.q = (const rg_bf16 *)q;
    p.kc = (const rg_bf16 *)k_cache;
    p.vc = (const rg_bf16 *)v_cache;
    p.o = (rg_bf16 *)o;
    p.kw = append ? (rg_bf16 *)k_cache : NULL;
    p.vw = append ? (rg_bf16 *)v_cache : NULL;
    p.kn = (const rg_bf16 *)kn;
    p.vn = (const rg_bf16 *)vn;
    p.stride_kn = stride_kn;
    p.stride_vn = stride_vn;
    p.new_vec = rg_aligned16(kn) && rg_aligned16(vn) && stride_kn % 8 == 0 && stride_vn % 8 == 0;
    p.tables = a->block_tables;
    p.lens = a->seq_lens;
    p.h = a->n_heads;
    p.hkv = a->n_kv_heads;
    p.d = d;
    p.g = g;
    p.n_groups = n_groups;
    p.bs = a->block_size;
    p.max_blocks = a->max_blocks;
    p.n_seqs = a->n_seqs;
    p.nw = nw;
    p.force_part = fp;
    p.stride_q = a->stride_q;
    p.scale_log2 = a->scale * RG_LOG2E;
    /* m, l and acc of every (item, head), fp32; a counter per (sequence, head group). */
    size_t n_ml = (size_t)n_items * (size_t)a->n_heads;
    float *part = NULL;
    RG_TRY(dec_ws_reserve(st, n_ml * (size_t)(d + 2), (size_t)a->n_seqs * (size_t)cpp, &part, &p.count));
    p.pm = part;
    p.pl = p.pm + n_ml;
    p.pacc = p.pl + n_ml;
    /* Head groups along x, items along y: CTAs are dispatched x first, so every
     * real item is issued before the empty ones at the end of y. */
    /* PDL only for append: the plain op follows the kv_write it reads, so it
     * could only wait first (see load_cache for what that measured) */
    cudaLaunchAttribute attr[1];
    cudaLaunchConfig_t cfg =
        rg_cuda_launch_cfg(st, dim3((unsigned)cpp, (unsigned)n_items), dim3(DEC_THREADS), 0, append, attr);
    RG_CUDA_TRY(cudaLaunchKernelEx(&cfg, kern.fn, p));
    RG_CUDA_CHECK_LAUNCH("decode attention");
    return RG_OK;
}

rg_status rg_cuda_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                              const void *k_cache, const void *v_cache) {
    /* not written without append */
    return decode(be, a, o, q, (void *)k_cache, (void *)v_cache, false, NULL, 0, NULL, 0);
}

rg_status rg_cuda_attn_decode_append(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                     void *k_cache, void *v_cache, const void *k, int32_t stride_k, const void *v,
                                     int32_t stride_v) {
    return decode(be, a, o, q, k_cache, v_cache, true, k, stride_k, v, stride_v);
}
