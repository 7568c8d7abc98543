/* attention_bwd.cu — varlen flash attention backward on tensor cores
 * (mma.sync m16n8k16 bf16 -> fp32, ldmatrix, cp.async double buffering).
 *
 * Three launches:
 *   1. preprocess: D = rowsum(dO * O) (h, total_q) fp32, and the fp32 dq
 *      accumulator (total_q, h, d) zeroed;
 *   2. main: one CTA per (key tile, kv head) item of a schedule built from
 *      cu_seqlens. The CTA keeps its BN keys of k and v in shared memory, loops
 *      over the query heads of its group (GQA: their dK/dV are summed in
 *      registers, at h_kv size, with no atomics) and over query blocks of BM
 *      rows (q and dO double-buffered through cp.async). Each warp owns 16 keys:
 *      S^T = K Q^T, P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T,
 *      dS^T = P^T (dP^T - D), dK += dS^T Q; dS^T goes through shared memory so
 *      that the warps can split dQ = dS K by query rows, added into the fp32
 *      accumulator with vector atomics;
 *   3. convert: dq = bf16(scale * accumulator), written with dq's row stride.
 * For head dims above 128 the dK/dV accumulators do not fit the registers
 * together: the main pass runs twice, once for dV, once for dK and dQ. */
#include "cuda/attention_common.cuh"
#include <math.h>

namespace {

struct bwd_params {
    const rg_bf16 *q, *k, *v, *o, *dout;
    const float *lse;           /* (h, total_q) */
    float *dq_acc;              /* (total_q, h, d) fp32 */
    float *dvec;                /* (h, total_q) fp32: rowsum(dO * O) */
    rg_bf16 *dq, *dk, *dv;
    const int32_t *cu_q, *cu_k;
    const int2 *items;          /* (sequence, key tile) */
    int h, h_kv, g, d;
    int64_t sq, sk, sv, sdo;    /* row strides in elements (dq/dk/dv share q/k/v's) */
    int64_t total_q;
    float scale, scale_log2;
    int causal;
};

enum { MODE_ALL = 0, MODE_DV = 1, MODE_DKDQ = 2 };

/* acc (16 rows x BM as QT n8 tiles) = A (the warp's 16 rows: held fragments
 * areg when REG, else ldmatrix from As) times Bs^T, Bs (BM x D) in shared
 * memory: S^T = K Q^T and dP^T = V dO^T. PART skips the 16-row chunks of Bs
 * outside [c_lo, c_hi) (their acc tiles stay 0). */
template <bool PART, bool REG, int QT, int KS, int STR>
__device__ __forceinline__ void rows_times_blockT(float (*acc)[4], const uint32_t (*areg)[4], const rg_bf16 *As,
                                                  const rg_bf16 *Bs, int a_row, int a_col, int b_row, int b_col,
                                                  int c_lo, int c_hi) {
#pragma unroll
    for (int i = 0; i < QT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        uint32_t af[4];
        if (REG) {
            af[0] = areg[REG ? ks : 0][0]; af[1] = areg[REG ? ks : 0][1];
            af[2] = areg[REG ? ks : 0][2]; af[3] = areg[REG ? ks : 0][3];
        } else {
            rg_ldsm_x4(af[0], af[1], af[2], af[3], rg_smem_u32(As + a_row * STR + ks * 16 + a_col));
        }
#pragma unroll
        for (int np = 0; np < QT / 2; np++) {
            if (PART && (np < c_lo || np >= c_hi)) continue;
            uint32_t b0, b1, b2, b3;
            rg_ldsm_x4(b0, b1, b2, b3, rg_smem_u32(Bs + (np * 16 + b_row) * STR + ks * 16 + b_col));
            rg_mma16816(acc[2 * np], af, b0, b1);
            rg_mma16816(acc[2 * np + 1], af, b2, b3);
        }
    }
}

/* acc (16 rows x D as DT n8 tiles) += bf16(s) (16 x BM, the C layout of
 * rows_times_blockT) times Bs (BM x D) in shared memory: dV += P^T dO and
 * dK += dS^T Q. PART skips the chunks outside [c_lo, c_hi). */
template <bool PART, int BM, int DT, int STR>
__device__ __forceinline__ void rows_acc_times_block(float (*acc)[4], const float (*s)[4], const rg_bf16 *Bs,
                                                     int v_row, int v_col, int c_lo, int c_hi) {
#pragma unroll
    for (int kk = 0; kk < BM / 16; kk++) {
        if (PART && (kk < c_lo || kk >= c_hi)) continue;
        uint32_t pf[4] = {rg_pack_bf16(s[2 * kk][0], s[2 * kk][1]), rg_pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                          rg_pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                          rg_pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < DT / 2; dp++) {
            uint32_t b0, b1, b2, b3;
            rg_ldsm_x4_t(b0, b1, b2, b3, rg_smem_u32(Bs + (kk * 16 + v_row) * STR + dp * 16 + v_col));
            rg_mma16816(acc[2 * dp], pf, b0, b1);
            rg_mma16816(acc[2 * dp + 1], pf, b2, b3);
        }
    }
}

template <int D, int BM, int NW, bool KVR> struct bwd_cfg {
    static constexpr int BN = 16 * NW;          /* keys per CTA, 16 per warp */
    static constexpr int STR = rg_tile<D>::STR;
    static constexpr int SSTR = BM + 8;         /* dS^T row stride (bf16) */
    static constexpr int QT = BM / 8;           /* 8-column tiles of S^T */
    static constexpr int KS = D / 16;
    static constexpr int DT = D / 8;
    static constexpr int WM = BM / 16;          /* dQ: warps split BM rows in 16s ... */
    static constexpr int WN = NW / WM;          /* ... and D columns in WN parts */
    static constexpr int DN = D / WN;
    static constexpr bool KVREG = KVR;          /* K and V A-fragments kept in registers */
    static constexpr size_t SMEM = (size_t)(2 * BN + 4 * BM) * STR * sizeof(rg_bf16) +
                                   (size_t)BN * SSTR * sizeof(rg_bf16) + 4 * BM * sizeof(float);
    static_assert(BM % 16 == 0 && NW % WM == 0 && DN % 16 == 0, "dQ warp split");
};

template <int D, int BM, int NW, bool KVR, bool SKIP, int MINB, int MODE>
__global__ void __launch_bounds__(NW * 32, MINB) attn_bwd_kernel(const bwd_params p) {
    using C = bwd_cfg<D, BM, NW, KVR>;
    constexpr int BN = C::BN, STR = C::STR, SSTR = C::SSTR, QT = C::QT, KS = C::KS, DT = C::DT;
    constexpr int NTH = NW * 32;
    constexpr bool DO_DV = MODE != MODE_DKDQ, DO_DK = MODE != MODE_DV;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    rg_bf16 *Ks = reinterpret_cast<rg_bf16 *>(smem_raw);
    rg_bf16 *Vs = Ks + BN * STR;
    rg_bf16 *Qs = Vs + BN * STR;          /* 2 stages of BM x STR */
    rg_bf16 *dOs = Qs + 2 * BM * STR;     /* 2 stages */
    rg_bf16 *dSs = dOs + 2 * BM * STR;    /* BN x SSTR */
    float *lse_s = reinterpret_cast<float *>(dSs + BN * SSTR); /* 2 stages of BM */
    float *dvec_s = lse_s + 2 * BM;                            /* 2 stages of BM */

    const int tile = blockIdx.x / p.h_kv, hk = blockIdx.x % p.h_kv;
    const int2 item = p.items[tile];
    const int b = item.x, n0 = item.y * BN;
    const int q_start = p.cu_q[b], lq = p.cu_q[b + 1] - q_start;
    const int k_start = p.cu_k[b], lk = p.cu_k[b + 1] - k_start;
    const int nk = min(BN, lk - n0);
    const int off = lk - lq; /* query i sees key j iff j <= i + off (causal) */
    const int m_first = p.causal ? max(0, n0 - off) / BM : 0;
    const int n_mb = lq > m_first * BM ? (lq + BM - 1) / BM - m_first : 0;
    const int n_it = p.g * n_mb;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g4 = lane >> 2, t4 = lane & 3;
    const int dch = p.d >> 3;
    const int a_row = lane & 15, a_col = (lane >> 4) * 8;
    const int b_row = (lane & 7) + (lane >> 4) * 8, b_col = ((lane >> 3) & 1) * 8;
    const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8, v_col = (lane >> 4) * 8;

    const rg_bf16 *kg = p.k + (int64_t)(k_start + n0) * p.sk + (int64_t)hk * p.d;
    const rg_bf16 *vg = p.v + (int64_t)(k_start + n0) * p.sv + (int64_t)hk * p.d;

    /* issues the loads of iteration it (query head, query block) into stage st */
    auto load_q = [&](int it, int st) {
        const int hq = hk * p.g + it / n_mb, m0 = (m_first + it % n_mb) * BM;
        const int nq = min(BM, lq - m0);
        const int64_t row0 = q_start + m0;
        rg_load_tile<BM, D, NTH>(Qs + st * BM * STR, p.q + row0 * p.sq + (int64_t)hq * p.d, p.sq, nq, dch);
        rg_load_tile<BM, D, NTH>(dOs + st * BM * STR, p.dout + row0 * p.sdo + (int64_t)hq * p.d, p.sdo, nq, dch);
        const float *lg = p.lse + (int64_t)hq * p.total_q + row0;
        const float *dg = p.dvec + (int64_t)hq * p.total_q + row0;
        for (int i = tid; i < BM; i += NTH) {
            rg_cp_async4(rg_smem_u32(lse_s + st * BM + i), i < nq ? lg + i : lg, i < nq);
            if (DO_DK) rg_cp_async4(rg_smem_u32(dvec_s + st * BM + i), i < nq ? dg + i : dg, i < nq);
        }
    };

    float dk_acc[DO_DK ? DT : 1][4], dv_acc[DO_DV ? DT : 1][4];
#pragma unroll
    for (int i = 0; i < (DO_DK ? DT : 1); i++) dk_acc[i][0] = dk_acc[i][1] = dk_acc[i][2] = dk_acc[i][3] = 0.f;
#pragma unroll
    for (int i = 0; i < (DO_DV ? DT : 1); i++) dv_acc[i][0] = dv_acc[i][1] = dv_acc[i][2] = dv_acc[i][3] = 0.f;

    if (n_it > 0) {
        rg_load_tile<BN, D, NTH>(Ks, kg, p.sk, nk, dch);
        if (DO_DK) rg_load_tile<BN, D, NTH>(Vs, vg, p.sv, nk, dch);
        load_q(0, 0);
        rg_cp_commit();
    }
    uint32_t kf[C::KVREG ? KS : 1][4], vf[C::KVREG && DO_DK ? KS : 1][4];
    const int krow = warp * 16; /* this warp's first key in the tile */

    for (int it = 0; it < n_it; it++) {
        const int st = it & 1;
        if (it + 1 < n_it) load_q(it + 1, st ^ 1);
        rg_cp_commit();
        rg_cp_wait<1>();
        __syncthreads();

        if (C::KVREG && it == 0) {
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                rg_ldsm_x4(kf[ks][0], kf[ks][1], kf[ks][2], kf[ks][3],
                           rg_smem_u32(Ks + (krow + a_row) * STR + ks * 16 + a_col));
                if (DO_DK)
                    rg_ldsm_x4(vf[C::KVREG && DO_DK ? ks : 0][0], vf[C::KVREG && DO_DK ? ks : 0][1],
                               vf[C::KVREG && DO_DK ? ks : 0][2], vf[C::KVREG && DO_DK ? ks : 0][3],
                               rg_smem_u32(Vs + (krow + a_row) * STR + ks * 16 + a_col));
            }
        }
        const int hq = hk * p.g + it / n_mb, m0 = (m_first + it % n_mb) * BM;
        const int nq = min(BM, lq - m0);
        const rg_bf16 *Qb = Qs + st * BM * STR, *dOb = dOs + st * BM * STR;
        const float *lse_b = lse_s + st * BM, *dvec_b = dvec_s + st * BM;
        /* 16-query chunks [c_lo, c_hi) of this block that can see one of the
         * warp's keys; the rest are skipped (and masked to P = 0 below) */
        const int c_hi = krow < nk ? min(BM / 16, (nq + 15) >> 4) : 0;
        const int c_lo = p.causal ? min(c_hi, max(0, n0 + krow - off - m0) >> 4) : 0;

        /* S^T, P^T, dV, dP^T, dS^T (also staged for dQ), dK for this warp's 16 keys.
         * PART: a boundary block, whose query chunks outside [c_lo, c_hi) are
         * skipped; full blocks take the branch-free path (see attention_fwd.cu). */
        auto part1 = [&](auto part) {
            constexpr bool PART = decltype(part)::value;
            /* S^T = K Q^T: 16 keys x BM queries per warp */
            float s[QT][4];
            rows_times_blockT<PART, C::KVREG, QT, KS, STR>(s, kf, Ks + krow * STR, Qb, a_row, a_col, b_row, b_col,
                                                           c_lo, c_hi);

            /* P^T = exp(scale * S^T - lse); masked: queries past the sequence,
             * keys past the sequence, and (causal) keys after the query's diagonal */
            const int kmax = n0 + krow + 15;
            const bool need_mask = m0 + BM > lq || kmax >= lk || (p.causal && kmax > m0 + off);
#pragma unroll
            for (int nt = 0; nt < QT; nt++) {
                const float2 L = *reinterpret_cast<const float2 *>(lse_b + nt * 8 + t4 * 2);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float pv = exp2f(fmaf(s[nt][e], p.scale_log2, -((e & 1) ? L.y : L.x) * RG_LOG2E));
                    if (need_mask) {
                        const int j = n0 + krow + g4 + (e >> 1) * 8;
                        const int i = m0 + nt * 8 + t4 * 2 + (e & 1);
                        if (i >= lq || j >= lk || (p.causal && j > i + off)) pv = 0.f;
                    }
                    s[nt][e] = pv;
                }
            }

            if constexpr (DO_DV) {
                /* dV += P^T dO */
                rows_acc_times_block<PART, BM, DT, STR>(dv_acc, s, dOb, v_row, v_col, c_lo, c_hi);
            }
            if constexpr (DO_DK) {
                /* dP^T = V dO^T */
                float dp_[QT][4];
                rows_times_blockT<PART, C::KVREG, QT, KS, STR>(dp_, vf, Vs + krow * STR, dOb, a_row, a_col, b_row,
                                                               b_col, c_lo, c_hi);
                /* dS^T = P^T (dP^T - D), kept in s; also staged (bf16) for dQ */
#pragma unroll
                for (int nt = 0; nt < QT; nt++) {
                    const float2 Dv = *reinterpret_cast<const float2 *>(dvec_b + nt * 8 + t4 * 2);
                    s[nt][0] *= dp_[nt][0] - Dv.x;
                    s[nt][1] *= dp_[nt][1] - Dv.y;
                    s[nt][2] *= dp_[nt][2] - Dv.x;
                    s[nt][3] *= dp_[nt][3] - Dv.y;
                    *reinterpret_cast<uint32_t *>(dSs + (krow + g4) * SSTR + nt * 8 + t4 * 2) =
                        rg_pack_bf16(s[nt][0], s[nt][1]);
                    *reinterpret_cast<uint32_t *>(dSs + (krow + g4 + 8) * SSTR + nt * 8 + t4 * 2) =
                        rg_pack_bf16(s[nt][2], s[nt][3]);
                }
                /* dK += dS^T Q */
                rows_acc_times_block<PART, BM, DT, STR>(dk_acc, s, Qb, v_row, v_col, c_lo, c_hi);
            }
        };
        if (!SKIP || (c_lo == 0 && c_hi == BM / 16)) part1(rg_bool<false>{});
        else part1(rg_bool<true>{});

        if (DO_DK) {
            __syncthreads();
            /* dQ (BM x D) += dS K: warp -> 16 query rows x DN columns */
            constexpr int DN = C::DN;
            const int mt = warp % C::WM, wn = warp / C::WM;
            /* 16-key chunks [0, kk_hi) that hold a real key one of the warp's
             * 16 queries sees; none: nothing to add */
            int kk_hi = m0 + mt * 16 < lq ? (nk + 15) >> 4 : 0;
            if (p.causal) {
                const int last = m0 + mt * 16 + 15 + off - n0; /* last visible key, tile-relative */
                kk_hi = last < 0 ? 0 : min(kk_hi, (last >> 4) + 1);
            }
            auto part2 = [&](auto part) {
                constexpr bool PART = decltype(part)::value;
                float dq[DN / 8][4];
#pragma unroll
                for (int i = 0; i < DN / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0.f;
                const int at_row = (lane & 7) + (lane >> 4) * 8, at_col = ((lane >> 3) & 1) * 8;
#pragma unroll
                for (int kk = 0; kk < BN / 16; kk++) {
                    if (PART && kk >= kk_hi) continue;
                    uint32_t af[4];
                    rg_ldsm_x4_t(af[0], af[1], af[2], af[3], rg_smem_u32(dSs + (kk * 16 + at_row) * SSTR + mt * 16 + at_col));
#pragma unroll
                    for (int nd = 0; nd < DN / 16; nd++) {
                        uint32_t b0, b1, b2, b3;
                        rg_ldsm_x4_t(b0, b1, b2, b3, rg_smem_u32(Ks + (kk * 16 + v_row) * STR + wn * DN + nd * 16 + v_col));
                        rg_mma16816(dq[2 * nd], af, b0, b1);
                        rg_mma16816(dq[2 * nd + 1], af, b2, b3);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const int i = mt * 16 + g4 + r * 8;
                    if (i < nq && kk_hi > 0) {
                        float *dst = p.dq_acc + ((int64_t)(q_start + m0 + i) * p.h + hq) * p.d;
#pragma unroll
                        for (int nt = 0; nt < DN / 8; nt++) {
                            const int c = wn * DN + nt * 8 + t4 * 2;
                            if (c < p.d) rg_atomic_add2(dst + c, dq[nt][2 * r], dq[nt][2 * r + 1]);
                        }
                    }
                }
            };
            if (!SKIP || kk_hi == BN / 16) part2(rg_bool<false>{});
            else part2(rg_bool<true>{});
        } else {
            __syncthreads(); /* the next prefetch overwrites this stage */
        }
    }
    rg_cp_wait<0>();
    __syncthreads();

    /* epilogue: dK (scaled) and dV through shared memory, 16-byte stores */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = krow + g4 + r * 8;
#pragma unroll
        for (int i = 0; i < DT; i++) {
            if (DO_DK)
                *reinterpret_cast<uint32_t *>(Ks + row * STR + i * 8 + t4 * 2) =
                    rg_pack_bf16(dk_acc[DO_DK ? i : 0][2 * r] * p.scale, dk_acc[DO_DK ? i : 0][2 * r + 1] * p.scale);
            if (DO_DV)
                *reinterpret_cast<uint32_t *>(Vs + row * STR + i * 8 + t4 * 2) =
                    rg_pack_bf16(dv_acc[DO_DV ? i : 0][2 * r], dv_acc[DO_DV ? i : 0][2 * r + 1]);
        }
    }
    __syncthreads();
    rg_bf16 *dkg = p.dk + (int64_t)(k_start + n0) * p.sk + (int64_t)hk * p.d;
    rg_bf16 *dvg = p.dv + (int64_t)(k_start + n0) * p.sv + (int64_t)hk * p.d;
    for (int idx = tid; idx < BN * (D / 8); idx += NTH) {
        const int r = idx / (D / 8), c = idx % (D / 8);
        if (r < nk && c < dch) {
            if (DO_DK)
                *reinterpret_cast<uint4 *>(dkg + (int64_t)r * p.sk + c * 8) =
                    *reinterpret_cast<const uint4 *>(Ks + r * STR + c * 8);
            if (DO_DV)
                *reinterpret_cast<uint4 *>(dvg + (int64_t)r * p.sv + c * 8) =
                    *reinterpret_cast<const uint4 *>(Vs + r * STR + c * 8);
        }
    }
}

/* D[hq, i] = sum_c dO[i, hq, c] * O[i, hq, c] and dq_acc[i, hq, :] = 0. A group
 * of gs lanes (a power of two >= d/8) handles one (row, head), 8 columns each. */
__global__ void attn_bwd_pre_kernel(const rg_bf16 *o, const rg_bf16 *dout, float *dvec, float *dq_acc,
                                    int64_t total_q, int h, int d, int gs) {
    const int64_t gid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / gs;
    const int c = threadIdx.x % gs;
    const bool row_ok = gid < total_q * h;
    float sum = 0.f;
    if (row_ok && c < d / 8) {
        const int64_t base = gid * d + c * 8; /* (row, head) pairs are contiguous rows of d */
        uint4 ov = *reinterpret_cast<const uint4 *>(o + base);
        uint4 dv = *reinterpret_cast<const uint4 *>(dout + base);
        const __nv_bfloat162 *o2 = reinterpret_cast<const __nv_bfloat162 *>(&ov);
        const __nv_bfloat162 *d2 = reinterpret_cast<const __nv_bfloat162 *>(&dv);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 a = __bfloat1622float2(o2[i]), bb = __bfloat1622float2(d2[i]);
            sum += a.x * bb.x + a.y * bb.y;
        }
        float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
        *reinterpret_cast<float4 *>(dq_acc + base) = z;
        *reinterpret_cast<float4 *>(dq_acc + base + 4) = z;
    }
    for (int w = gs / 2; w > 0; w >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, w);
    if (row_ok && c == 0) {
        const int64_t row = gid / h;
        const int hq = (int)(gid % h);
        dvec[(int64_t)hq * total_q + row] = sum;
    }
}

/* dq[i, hq, :] (row stride sq) = bf16(scale * dq_acc[i, hq, :]), 8 columns per thread. */
__global__ void attn_bwd_dq_kernel(const float *dq_acc, rg_bf16 *dq, int64_t total_q, int h, int d, int64_t sq,
                                   float scale) {
    const int dch = d / 8;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total_q * h * dch) return;
    const int64_t pair = idx / dch;
    const int c = (int)(idx % dch);
    const int64_t row = pair / h;
    const int hq = (int)(pair % h);
    const float4 a = *reinterpret_cast<const float4 *>(dq_acc + pair * d + c * 8);
    const float4 bb = *reinterpret_cast<const float4 *>(dq_acc + pair * d + c * 8 + 4);
    uint4 out;
    out.x = rg_pack_bf16(a.x * scale, a.y * scale);
    out.y = rg_pack_bf16(a.z * scale, a.w * scale);
    out.z = rg_pack_bf16(bb.x * scale, bb.y * scale);
    out.w = rg_pack_bf16(bb.z * scale, bb.w * scale);
    *reinterpret_cast<uint4 *>(dq + row * sq + (int64_t)hq * d + c * 8) = out;
}

/* ---- variants ------------------------------------------------------------- */

struct bwd_variant {
    int D, BM, NW;
    bool split; /* two passes (dV, then dK + dQ) for large head dims */
    void (*kern_all)(const bwd_params);
    void (*kern_dv)(const bwd_params);
    void (*kern_dkdq)(const bwd_params);
    size_t smem;
    const char *name;
    bool attr_set;
};

/* KVR: keep this warp's K and V rows as A fragments in registers (saves
 * shared-memory reads, costs D/2 registers). SKIP: skip chunks that only hold
 * padding or masked pairs (measured slower on the benchmark, see
 * bench/cuda_attention_NOTES.md; kept for the lab). MINB: CTAs per SM the
 * register allocation must allow. */
#define BWD_V(D, BM, NW, KVR, SKIP, MINB)                                                              \
    { D, BM, NW, false, attn_bwd_kernel<D, BM, NW, KVR, SKIP, MINB, MODE_ALL>, NULL, NULL,            \
      bwd_cfg<D, BM, NW, KVR>::SMEM,                                                                   \
      "bwd d" #D " bm" #BM " bn" #NW "x16 w" #NW " kvreg" #KVR " skip" #SKIP " occ" #MINB, false }
#define BWD_SPLIT(D, BM, NW)                                                                           \
    { D, BM, NW, true, NULL, attn_bwd_kernel<D, BM, NW, false, false, 1, MODE_DV>,                    \
      attn_bwd_kernel<D, BM, NW, false, false, 1, MODE_DKDQ>, bwd_cfg<D, BM, NW, false>::SMEM,         \
      "bwd d" #D " bm" #BM " bn" #NW "x16 w" #NW " split", false }

/* The first entry of each head dim is the automatic choice (measured on an H100:
 * bench/cuda_attention_NOTES.md). */
bwd_variant bwd_variants[] = {
    BWD_V(32, 64, 8, true, false, 1),
    BWD_V(64, 32, 4, false, false, 4), BWD_V(64, 64, 4, true, false, 2), BWD_V(64, 32, 4, true, false, 3),
    BWD_V(64, 64, 4, false, false, 3), BWD_V(64, 32, 8, true, false, 2), BWD_V(64, 64, 8, false, false, 1),
    BWD_V(64, 64, 4, true, true, 2),
    BWD_V(96, 32, 4, false, false, 2),
    BWD_V(128, 32, 8, false, false, 1), BWD_V(128, 32, 4, false, false, 2),
    BWD_SPLIT(192, 32, 8),
    BWD_SPLIT(256, 32, 8),
};
const int n_bwd_variants = (int)(sizeof bwd_variants / sizeof bwd_variants[0]);

int compiled_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 96 ? 96 : d <= 128 ? 128 : d <= 192 ? 192 : 256; }

bwd_variant *pick_bwd(int d, int variant) {
    int D = compiled_dim(d), seen = 0;
    bwd_variant *first = NULL;
    for (int i = 0; i < n_bwd_variants; i++) {
        if (bwd_variants[i].D != D) continue;
        if (!first) first = &bwd_variants[i];
        if (seen++ == variant) return &bwd_variants[i];
    }
    return first;
}

rg_status set_smem(void (*k)(const bwd_params), size_t smem) {
    if (k) RG_CUDA_TRY(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    return RG_OK;
}

} // namespace

extern "C" const char *rg_cuda_attn_fwd_variant_name(int head_dim, int variant);

extern "C" const char *rg_cuda_attn_variant_name(int bwd, int head_dim, int variant) {
    if (!bwd) return rg_cuda_attn_fwd_variant_name(head_dim, variant);
    int D = compiled_dim(head_dim), seen = 0;
    for (int i = 0; i < n_bwd_variants; i++)
        if (bwd_variants[i].D == D && seen++ == variant) return bwd_variants[i].name;
    return NULL;
}

rg_status rg_cuda_attn_backward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                                const void *v, const void *o, const float *lse, const void *dout,
                                void *dq, void *dk, void *dv) {
    const rg_attn_desc *d = &a->desc;
    const char *fn = "rg_attn_backward";
    const bool hq_ = a->total_q > 0, hk_ = a->total_k > 0;
    RG_TRY(rg_cuda_attn_check_align(fn, a, hq_ ? q : NULL, hk_ ? k : NULL, hk_ ? v : NULL, hq_ ? o : NULL));
    RG_TRY(rg_cuda_attn_check_align(fn, a, hq_ ? dq : NULL, hk_ ? dk : NULL, hk_ ? dv : NULL, hq_ ? dout : NULL));
    if (hq_ && ((uintptr_t)lse & 7))
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: lse must be 8-byte aligned on the CUDA backend", fn);
    rg_cuda_attn_ws *ws = NULL;
    RG_TRY(rg_cuda_attn_ws_get(be, &ws));
    bwd_variant *bv = pick_bwd(d->head_dim, ws->bwd_variant);
    if (!bv->attr_set) {
        RG_TRY(set_smem(bv->kern_all, bv->smem));
        RG_TRY(set_smem(bv->kern_dv, bv->smem));
        RG_TRY(set_smem(bv->kern_dkdq, bv->smem));
        bv->attr_set = true;
    }
    cudaStream_t stream = rg_cuda(be)->stream;
    const int h = d->n_heads, hd = d->head_dim;
    const int64_t nacc = a->total_q * h * hd, ndvec = a->total_q * h;
    void *wsbuf = NULL;
    if (hq_) RG_TRY(rg_cuda_attn_ws_reserve(be, (size_t)(nacc + ndvec) * sizeof(float), &wsbuf));
    float *dq_acc = (float *)wsbuf, *dvec = dq_acc + nacc;

    if (hq_) {
        int gs = 1;
        while (gs < hd / 8) gs *= 2;
        const int64_t threads = a->total_q * h * gs;
        attn_bwd_pre_kernel<<<(unsigned)((threads + 255) / 256), 256, 0, stream>>>(
            (const rg_bf16 *)o, (const rg_bf16 *)dout, dvec, dq_acc, a->total_q, h, hd, gs);
        RG_CUDA_CHECK_LAUNCH("attention backward preprocess");
    }
    if (hk_) {
        const int BN = 16 * bv->NW;
        const int2 *items;
        int64_t n_items;
        RG_TRY(rg_cuda_attn_schedule(be, a, RG_SCHED_BWD, BN, bv->BM, &items, &n_items));
        if (n_items * d->n_kv_heads > INT32_MAX)
            return rg_fail(RG_ERR_OVERFLOW, "%s: %lld tiles x %d kv heads exceed one grid", fn,
                           (long long)n_items, d->n_kv_heads);
        bwd_params p;
        p.q = (const rg_bf16 *)q;
        p.k = (const rg_bf16 *)k;
        p.v = (const rg_bf16 *)v;
        p.o = (const rg_bf16 *)o;
        p.dout = (const rg_bf16 *)dout;
        p.lse = lse;
        p.dq_acc = dq_acc;
        p.dvec = dvec;
        p.dq = (rg_bf16 *)dq;
        p.dk = (rg_bf16 *)dk;
        p.dv = (rg_bf16 *)dv;
        p.cu_q = a->cu_seqlens_q_dev;
        p.cu_k = a->cu_seqlens_k_dev;
        p.items = items;
        p.h = h;
        p.h_kv = d->n_kv_heads;
        p.g = h / d->n_kv_heads;
        p.d = hd;
        p.sq = d->stride_q;
        p.sk = d->stride_k;
        p.sv = d->stride_v;
        p.sdo = (int64_t)h * hd;
        p.total_q = a->total_q;
        p.scale = a->scale;
        p.scale_log2 = a->scale * RG_LOG2E;
        p.causal = d->causal ? 1 : 0;
        const unsigned grid = (unsigned)(n_items * d->n_kv_heads);
        if (grid > 0) {
            if (!bv->split) {
                bv->kern_all<<<grid, bv->NW * 32, bv->smem, stream>>>(p);
                RG_CUDA_CHECK_LAUNCH("attention backward");
            } else {
                bv->kern_dv<<<grid, bv->NW * 32, bv->smem, stream>>>(p);
                RG_CUDA_CHECK_LAUNCH("attention backward (dv)");
                bv->kern_dkdq<<<grid, bv->NW * 32, bv->smem, stream>>>(p);
                RG_CUDA_CHECK_LAUNCH("attention backward (dk, dq)");
            }
        }
    }
    if (hq_) {
        const int64_t threads = a->total_q * h * (hd / 8);
        attn_bwd_dq_kernel<<<(unsigned)((threads + 255) / 256), 256, 0, stream>>>(
            dq_acc, (rg_bf16 *)dq, a->total_q, h, hd, d->stride_q, a->scale);
        RG_CUDA_CHECK_LAUNCH("attention backward dq");
    }
    return RG_OK;
}
