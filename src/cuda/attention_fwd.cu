/* attention_fwd.cu — varlen flash attention forward on tensor cores
 * (mma.sync m16n8k16 bf16 -> fp32, ldmatrix, cp.async double buffering).
 *
 * One CTA per (query tile, head) item of a schedule built from cu_seqlens
 * (attention_sched.cu): the tile's BM query rows of q (total_q, h, d) stay in
 * shared memory (and in registers for d <= 128), blocks of BN keys of k and v
 * (total_k, h_kv, d) stream through a two-stage cp.async pipeline, and each
 * warp owns 16*MT query rows with an online softmax in fp32 (exp2 with the
 * scale folded in). Writes o (total_q, h, d) bf16 and lse (h, total_q) fp32;
 * a row that sees no key gets o = 0 and lse = -inf. */
#include "cuda/attention_common.cuh"
#include <math.h>

namespace {

struct fwd_params {
    const rg_bf16 *q, *k, *v;
    rg_bf16 *o;
    float *lse;                 /* may be NULL */
    const int32_t *cu_q, *cu_k;
    const int2 *items;          /* (sequence, query tile) */
    int h, g, d;                /* g = h / h_kv */
    int64_t sq, sk, sv, so;     /* row strides in elements */
    int64_t total_q;
    float scale_log2;           /* softmax_scale * log2(e) */
    float scale;
    int causal;
};

template <int D, int BM, int BN, int NW> struct fwd_cfg {
    static constexpr int MT = BM / (16 * NW);  /* 16-row m-tiles per warp */
    static constexpr int STR = rg_tile<D>::STR;
    static constexpr int NT = BN / 8;          /* 8-column tiles of S */
    static constexpr int KS = D / 16;          /* k-steps over the head dim */
    static constexpr int DT = D / 8;           /* 8-column tiles of O */
    static constexpr bool QREG = MT * D <= 128;
    static constexpr size_t SMEM = (size_t)(BM + 4 * BN) * STR * sizeof(rg_bf16);
    static_assert(BM % (16 * NW) == 0 && MT >= 1, "each warp owns whole 16-row tiles");
    static_assert(BN % 16 == 0 && D % 16 == 0, "tile shapes");
};

template <int D, int BM, int BN, int NW, int MINB, bool SKIP>
__global__ void __launch_bounds__(NW * 32, MINB) attn_fwd_kernel(const fwd_params p) {
    using C = fwd_cfg<D, BM, BN, NW>;
    constexpr int MT = C::MT, STR = C::STR, NT = C::NT, KS = C::KS, DT = C::DT;
    constexpr int NTH = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    rg_bf16 *Qs = reinterpret_cast<rg_bf16 *>(smem_raw);
    rg_bf16 *Ks = Qs + BM * STR;     /* 2 stages of BN x STR */
    rg_bf16 *Vs = Ks + 2 * BN * STR; /* 2 stages */

    const int tile = blockIdx.x / p.h, hq = blockIdx.x % p.h, hk = hq / p.g;
    const int2 item = p.items[tile];
    const int b = item.x, m0 = item.y * BM;
    const int q_start = p.cu_q[b], lq = p.cu_q[b + 1] - q_start;
    const int k_start = p.cu_k[b], lk = p.cu_k[b + 1] - k_start;
    const int nq = min(BM, lq - m0);
    const int off = lk - lq; /* causal: query i sees keys j <= i + off */
    int n_end = lk;
    if (p.causal) n_end = max(0, min(lk, m0 + nq + off));
    const int n_blocks = (n_end + BN - 1) / BN;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g4 = lane >> 2, t4 = lane & 3;
    const int dch = p.d >> 3;
    const int wrow = warp * 16 * MT; /* first tile row of this warp */
    const bool wact = wrow < nq;     /* warp-uniform: the warp has a real query row */
    /* keys past kend are invisible to every row of this warp */
    const int kend = p.causal ? min(lk, m0 + wrow + 16 * MT + off) : lk;

    const rg_bf16 *qg = p.q + (int64_t)(q_start + m0) * p.sq + (int64_t)hq * p.d;
    const rg_bf16 *kg = p.k + (int64_t)k_start * p.sk + (int64_t)hk * p.d;
    const rg_bf16 *vg = p.v + (int64_t)k_start * p.sv + (int64_t)hk * p.d;

    float acc[MT][DT][4];
    float row_m[MT][2], row_l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < DT; i++) acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.f;
        row_m[mt][0] = row_m[mt][1] = -INFINITY;
        row_l[mt][0] = row_l[mt][1] = 0.f;
    }

    if (n_blocks > 0) {
        rg_load_tile<BM, D, NTH>(Qs, qg, p.sq, nq, dch);
        rg_load_tile<BN, D, NTH>(Ks, kg, p.sk, min(BN, lk), dch);
        rg_load_tile<BN, D, NTH>(Vs, vg, p.sv, min(BN, lk), dch);
        rg_cp_commit();
    }

    uint32_t qf[C::QREG ? MT : 1][C::QREG ? KS : 1][4];
    /* lane's ldmatrix row/column offsets (see rg_mma16816's fragment layouts) */
    const int a_row = lane & 15, a_col = (lane >> 4) * 8;                   /* A, non-trans */
    const int b_row = (lane & 7) + (lane >> 4) * 8, b_col = ((lane >> 3) & 1) * 8; /* B from [n][k] */
    const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8; /* B from [k][n], trans */

    for (int kb = 0; kb < n_blocks; kb++) {
        const int buf = kb & 1;
        if (kb + 1 < n_blocks) {
            const int nk = min(BN, lk - (kb + 1) * BN);
            rg_load_tile<BN, D, NTH>(Ks + (buf ^ 1) * BN * STR, kg + (int64_t)(kb + 1) * BN * p.sk, p.sk, nk, dch);
            rg_load_tile<BN, D, NTH>(Vs + (buf ^ 1) * BN * STR, vg + (int64_t)(kb + 1) * BN * p.sv, p.sv, nk, dch);
        }
        rg_cp_commit();
        rg_cp_wait<1>();
        __syncthreads();
        const rg_bf16 *Kb = Ks + buf * BN * STR, *Vb = Vs + buf * BN * STR;
        const int kbase = kb * BN;
        /* 16-key chunks of this block that some row of the warp may see; the
         * others are skipped (and masked to -inf below) */
        const int krem = wact ? kend - kbase : 0;
        const int nv = krem <= 0 ? 0 : min(BN / 16, (krem + 15) >> 4);

        if (C::QREG && kb == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int ks = 0; ks < KS; ks++)
                    rg_ldsm_x4(qf[mt][ks][0], qf[mt][ks][1], qf[mt][ks][2], qf[mt][ks][3],
                               rg_smem_u32(Qs + (wrow + mt * 16 + a_row) * STR + ks * 16 + a_col));
        }

        /* One key block: S = Q K^T, mask, online softmax, O += P V. PART: a
         * boundary block, whose 16-key chunks past nv are skipped; full blocks
         * take the branch-free path (branches inside these unrolled loops keep
         * the compiler from hoisting ldmatrix ahead of the MMAs). */
        auto block = [&](auto part) {
            constexpr bool PART = decltype(part)::value;
            /* S = Q K^T (16*MT x BN per warp) */
            float s[MT][NT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int i = 0; i < NT; i++) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                uint32_t af[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if (C::QREG) {
                        af[mt][0] = qf[C::QREG ? mt : 0][C::QREG ? ks : 0][0];
                        af[mt][1] = qf[C::QREG ? mt : 0][C::QREG ? ks : 0][1];
                        af[mt][2] = qf[C::QREG ? mt : 0][C::QREG ? ks : 0][2];
                        af[mt][3] = qf[C::QREG ? mt : 0][C::QREG ? ks : 0][3];
                    } else {
                        rg_ldsm_x4(af[mt][0], af[mt][1], af[mt][2], af[mt][3],
                                   rg_smem_u32(Qs + (wrow + mt * 16 + a_row) * STR + ks * 16 + a_col));
                    }
                }
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    if (PART && np >= nv) continue;
                    uint32_t b0, b1, b2, b3;
                    rg_ldsm_x4(b0, b1, b2, b3, rg_smem_u32(Kb + (np * 16 + b_row) * STR + ks * 16 + b_col));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        rg_mma16816(s[mt][2 * np], af[mt], b0, b1);
                        rg_mma16816(s[mt][2 * np + 1], af[mt], b2, b3);
                    }
                }
            }

            /* mask the keys past the sequence and, when causal, past the diagonal
             * (this covers every skipped chunk: its keys are >= kend) */
            if (kbase + BN > lk || (p.causal && kbase + BN - 1 > m0 + wrow + off)) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int row = m0 + wrow + mt * 16 + g4 + (e >> 1) * 8;
                            const int col = kbase + nt * 8 + t4 * 2 + (e & 1);
                            if (col >= lk || (p.causal && col > row + off)) s[mt][nt][e] = -INFINITY;
                        }
            }

            /* online softmax: rows g4 and g4 + 8 of each m-tile; the row max is
             * shared by the quad that holds the row, the row sum stays per thread */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float mx = -INFINITY;
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float m_new = fmaxf(row_m[mt][r], mx * p.scale_log2);
                    const float sub = m_new == -INFINITY ? 0.f : m_new;
                    const float corr = exp2f(row_m[mt][r] - sub);
                    row_m[mt][r] = m_new;
                    float sum = 0.f;
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        const float p0 = exp2f(fmaf(s[mt][nt][2 * r], p.scale_log2, -sub));
                        const float p1 = exp2f(fmaf(s[mt][nt][2 * r + 1], p.scale_log2, -sub));
                        s[mt][nt][2 * r] = p0;
                        s[mt][nt][2 * r + 1] = p1;
                        sum += p0 + p1;
                    }
                    row_l[mt][r] = row_l[mt][r] * corr + sum;
#pragma unroll
                    for (int i = 0; i < DT; i++) {
                        acc[mt][i][2 * r] *= corr;
                        acc[mt][i][2 * r + 1] *= corr;
                    }
                }

            /* O += P V, P from the S accumulators (bf16), V through ldmatrix.trans */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                if (PART && kk >= nv) continue;
                uint32_t pf[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pf[mt][0] = rg_pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pf[mt][1] = rg_pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pf[mt][2] = rg_pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pf[mt][3] = rg_pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < DT / 2; dp++) {
                    uint32_t b0, b1, b2, b3;
                    rg_ldsm_x4_t(b0, b1, b2, b3, rg_smem_u32(Vb + (kk * 16 + v_row) * STR + dp * 16 + v_col));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        rg_mma16816(acc[mt][2 * dp], pf[mt], b0, b1);
                        rg_mma16816(acc[mt][2 * dp + 1], pf[mt], b2, b3);
                    }
                }
            }
        };
        if (SKIP && !wact) {
            /* no real row in this warp: nothing to compute */
        } else if (!SKIP || nv == BN / 16) {
            block(rg_bool<false>{});
        } else {
            block(rg_bool<true>{});
        }
        __syncthreads();
    }
    rg_cp_wait<0>();

    /* epilogue: normalise, stage the bf16 tile in Qs, then 16-byte stores */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float l = row_l[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = wrow + mt * 16 + g4 + r * 8;
#pragma unroll
            for (int i = 0; i < DT; i++)
                *reinterpret_cast<uint32_t *>(Qs + row * STR + i * 8 + t4 * 2) =
                    rg_pack_bf16(acc[mt][i][2 * r] * inv, acc[mt][i][2 * r + 1] * inv);
            if (p.lse && t4 == 0 && row < nq)
                p.lse[(int64_t)hq * p.total_q + q_start + m0 + row] =
                    l > 0.f ? row_m[mt][r] * RG_LN2 + logf(l) : -INFINITY;
        }
    __syncthreads();
    rg_bf16 *og = p.o + (int64_t)(q_start + m0) * p.so + (int64_t)hq * p.d;
    for (int idx = tid; idx < BM * (D / 8); idx += NTH) {
        const int r = idx / (D / 8), c = idx % (D / 8);
        if (r < nq && c < dch)
            *reinterpret_cast<uint4 *>(og + (int64_t)r * p.so + c * 8) =
                *reinterpret_cast<const uint4 *>(Qs + r * STR + c * 8);
    }
}

/* ---- variants: compiled head dims and tile shapes -------------------------- */

struct fwd_variant {
    int D, BM, BN, NW;
    void (*kern)(const fwd_params);
    size_t smem;
    const char *name;
    bool attr_set;
};

/* MINB: CTAs per SM the register allocation must allow (occupancy).
 * SKIP: skip warps and key chunks that only hold padding (measured slower on
 * the benchmark than the plain path, see bench/cuda_attention_NOTES.md; kept
 * for the lab). */
#define FWD_V(D, BM, BN, NW, MINB, SKIP)                                                        \
    { D, BM, BN, NW, attn_fwd_kernel<D, BM, BN, NW, MINB, SKIP>, fwd_cfg<D, BM, BN, NW>::SMEM,  \
      "fwd d" #D " bm" #BM " bn" #BN " w" #NW " occ" #MINB " skip" #SKIP, false }

/* The first entry of each head dim is the automatic choice (measured on an H100:
 * bench/cuda_attention_NOTES.md). */
fwd_variant fwd_variants[] = {
    FWD_V(32, 128, 64, 4, 2, false),
    FWD_V(64, 128, 64, 4, 2, false), FWD_V(64, 128, 64, 8, 2, false),
    FWD_V(64, 64, 64, 4, 4, false), FWD_V(64, 128, 32, 4, 2, false), FWD_V(64, 128, 64, 4, 2, true),
    FWD_V(96, 64, 64, 4, 2, false),
    FWD_V(128, 128, 64, 8, 1, false), FWD_V(128, 64, 64, 4, 2, false),
    FWD_V(192, 64, 32, 4, 1, false),
    FWD_V(256, 64, 32, 4, 1, false),
};
const int n_fwd_variants = (int)(sizeof fwd_variants / sizeof fwd_variants[0]);

int compiled_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : d <= 128 ? 128 : d <= 192 ? 192 : 256; }

fwd_variant *pick_fwd(int d, int variant) {
    int D = compiled_dim(d), seen = 0;
    fwd_variant *first = NULL;
    for (int i = 0; i < n_fwd_variants; i++) {
        if (fwd_variants[i].D != D) continue;
        if (!first) first = &fwd_variants[i];
        if (seen++ == variant) return &fwd_variants[i];
    }
    return first;
}

} // namespace

extern "C" const char *rg_cuda_attn_fwd_variant_name(int head_dim, int variant) {
    int D = compiled_dim(head_dim), seen = 0;
    for (int i = 0; i < n_fwd_variants; i++)
        if (fwd_variants[i].D == D && seen++ == variant) return fwd_variants[i].name;
    return NULL;
}

rg_status rg_cuda_attn_forward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                               const void *v, void *o, float *lse) {
    const rg_attn_desc *d = &a->desc;
    if (a->total_q == 0) return RG_OK;
    RG_TRY(rg_cuda_attn_check_align("rg_attn_forward", a, q, a->total_k ? k : NULL, a->total_k ? v : NULL, o));
    rg_cuda_attn_ws *ws = NULL;
    RG_TRY(rg_cuda_attn_ws_get(be, &ws));
    fwd_variant *fv = pick_fwd(d->head_dim, ws->fwd_variant);
    if (!fv->attr_set) {
        RG_CUDA_TRY(cudaFuncSetAttribute(fv->kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fv->smem));
        fv->attr_set = true;
    }
    const int2 *items;
    int64_t n_items;
    RG_TRY(rg_cuda_attn_schedule(be, a, RG_SCHED_FWD, fv->BM, fv->BN, &items, &n_items));
    if (n_items == 0) return RG_OK;
    if (n_items * d->n_heads > INT32_MAX)
        return rg_fail(RG_ERR_OVERFLOW, "rg_attn_forward: %lld tiles x %d heads exceed one grid",
                       (long long)n_items, d->n_heads);
    fwd_params p;
    p.q = (const rg_bf16 *)q;
    p.k = (const rg_bf16 *)k;
    p.v = (const rg_bf16 *)v;
    p.o = (rg_bf16 *)o;
    p.lse = lse;
    p.cu_q = a->cu_seqlens_q_dev;
    p.cu_k = a->cu_seqlens_k_dev;
    p.items = items;
    p.h = d->n_heads;
    p.g = d->n_heads / d->n_kv_heads;
    p.d = d->head_dim;
    p.sq = d->stride_q;
    p.sk = d->stride_k;
    p.sv = d->stride_v;
    p.so = (int64_t)d->n_heads * d->head_dim;
    p.total_q = a->total_q;
    p.scale = a->scale;
    p.scale_log2 = a->scale * RG_LOG2E;
    p.causal = d->causal ? 1 : 0;
    fv->kern<<<(unsigned)(n_items * d->n_heads), fv->NW * 32, fv->smem, rg_cuda(be)->stream>>>(p);
    RG_CUDA_CHECK_LAUNCH("attention forward");
    return RG_OK;
}
