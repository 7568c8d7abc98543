/* layernorm.cu — LayerNorm forward and backward on bf16 rows (T, C) with fp32
 * statistics and fp32 parameter gradients.
 * Forward: one warp per row; when C % 8 == 0 and C <= 4096 the row stays in
 * registers (16-byte loads), so it is read once; otherwise three passes.
 * Backward, C % 8 == 0 and C <= 1024: a warp per row, column sums in the
 * warp's slice of shared memory (see ln_backward_warp_kernel). C % 8 == 0 and
 * C <= 4096: a block owns a column slice per thread (8 columns, 16-byte
 * loads) and walks tiles of LN_R rows; the two row sums come from a block
 * reduction, dinp is updated in place (+=), and dweight/dbias accumulate in
 * registers. Both leave one partial per block in scratch, summed in a fixed
 * order by rg_cuda_add_partials (deterministic, no atomics). Other shapes: a
 * warp-per-row dinp kernel plus a column-reduction kernel. */
#include "cuda/ops.cuh"

#define LN_FWD_WARPS 8 /* rows per forward block */
#define LN_R 4         /* rows per backward tile */
#define LN_MAX_VEC_C 4096

/* ---- forward ---- */

/* ITEMS vectors of 8 per lane: columns (i * 32 + lane) * 8 .. +7. */
template <int ITEMS>
__global__ void ln_forward_vec_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                      const bf16 *bias, float eps, int64_t T, int C) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * LN_FWD_WARPS + (threadIdx.x >> 5);
    if (row >= T) return;
    const bf16 *x = inp + row * C;
    float v[ITEMS][8];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        int c = (i * 32 + lane) * 8;
        if (c < C) {
            rg_load_bf16<8>(v[i], x + c);
#pragma unroll
            for (int j = 0; j < 8; j++) sum += v[i][j];
        }
    }
    float mu = rg_warp_sum(sum) / C;
    float sq = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        int c = (i * 32 + lane) * 8;
        if (c < C)
#pragma unroll
            for (int j = 0; j < 8; j++) sq += (v[i][j] - mu) * (v[i][j] - mu);
    }
    float rs = rsqrtf(rg_warp_sum(sq) / C + eps);
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        int c = (i * 32 + lane) * 8;
        if (c < C) {
            float w[8], b[8] = {0, 0, 0, 0, 0, 0, 0, 0}, y[8];
            rg_load_bf16<8>(w, weight + c);
            if (bias) rg_load_bf16<8>(b, bias + c);
#pragma unroll
            for (int j = 0; j < 8; j++) y[j] = (v[i][j] - mu) * rs * w[j] + b[j];
            rg_store_bf16<8>(out + row * C + c, y);
        }
    }
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = rs;
    }
}

/* Any C: three passes over the row (the later ones hit L1). */
__global__ void ln_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                  const bf16 *bias, float eps, int64_t T, int C) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * LN_FWD_WARPS + (threadIdx.x >> 5);
    if (row >= T) return;
    const bf16 *x = inp + row * C;
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += __bfloat162float(x[c]);
    float mu = rg_warp_sum(sum) / C;
    float sq = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = __bfloat162float(x[c]) - mu;
        sq += d * d;
    }
    float rs = rsqrtf(rg_warp_sum(sq) / C + eps);
    for (int c = lane; c < C; c += 32) {
        float y = (__bfloat162float(x[c]) - mu) * rs * __bfloat162float(weight[c]);
        if (bias) y += __bfloat162float(bias[c]);
        out[row * C + c] = __float2bfloat16_rn(y);
    }
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = rs;
    }
}

static bool ln_vec_ok(int C, const void *a, const void *b, const void *c, const void *d) {
    return C % 8 == 0 && C <= LN_MAX_VEC_C && rg_aligned16(a) && rg_aligned16(b) && rg_aligned16(c) &&
           (!d || rg_aligned16(d));
}

rg_status rg_cuda_layernorm_forward(rg_backend *be, void *out, float *mean, float *rstd, const void *inp,
                                    const void *weight, const void *bias, float eps, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || C <= 0) return RG_OK;
    unsigned grid = (unsigned)((T + LN_FWD_WARPS - 1) / LN_FWD_WARPS);
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *w = (const bf16 *)weight, *b = (const bf16 *)bias;
    if (ln_vec_ok(C, out, inp, weight, bias)) {
        int items = (C + 255) / 256;
        dim3 blk(32 * LN_FWD_WARPS);
        if (items <= 1) ln_forward_vec_kernel<1><<<grid, blk, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        else if (items <= 2) ln_forward_vec_kernel<2><<<grid, blk, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        else if (items <= 4) ln_forward_vec_kernel<4><<<grid, blk, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        else if (items <= 8) ln_forward_vec_kernel<8><<<grid, blk, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        else ln_forward_vec_kernel<16><<<grid, blk, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        RG_CUDA_CHECK_LAUNCH("ln_forward_vec_kernel");
    } else {
        ln_forward_kernel<<<grid, 32 * LN_FWD_WARPS, 0, st->stream>>>(o, mean, rstd, x, w, b, eps, T, C);
        RG_CUDA_CHECK_LAUNCH("ln_forward_kernel");
    }
    return RG_OK;
}

/* ---- backward, fast path ----
 * dxhat = dout * w;  dinp += rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat)).
 * Block: ceil(C/8) threads rounded up to a warp; thread k owns columns 8k..8k+7. */
template <bool SUM>
__global__ void ln_backward_vec_kernel(bf16 *dinp, float *dw_parts, float *db_parts, float *ds_parts,
                                       const bf16 *dout, const bf16 *inp, const bf16 *weight, const float *mean,
                                       const float *rstd, int64_t T, int C) {
    __shared__ float red[32][2 * LN_R]; /* per warp: the LN_R pairs of row sums */
    int c = threadIdx.x * 8, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
    bool active = c < C;
    float w[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc_w[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc_b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float acc_s[SUM ? 8 : 1] = {0}; /* SUM: column sums of the dinp stored */
    if (active) rg_load_bf16<8>(w, weight + c);
    int64_t n_tiles = (T + LN_R - 1) / LN_R;
    for (int64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        int64_t r0 = tile * LN_R;
        /* every load of the tile first (dout, inp and the dinp being added
         * to, raw 16-byte vectors), so that one memory latency covers the tile */
        uint4 rd[LN_R], rx[LN_R], rg[LN_R];
        float mu[LN_R], rs[LN_R], part[2 * LN_R];
#pragma unroll
        for (int r = 0; r < LN_R; r++) {
            bool ok = active && r0 + r < T;
            mu[r] = r0 + r < T ? mean[r0 + r] : 0.0f;
            rs[r] = r0 + r < T ? rstd[r0 + r] : 0.0f;
            rd[r] = rx[r] = rg[r] = make_uint4(0, 0, 0, 0);
            if (ok) {
                rd[r] = *reinterpret_cast<const uint4 *>(dout + (r0 + r) * C + c);
                rx[r] = *reinterpret_cast<const uint4 *>(inp + (r0 + r) * C + c);
                rg[r] = *reinterpret_cast<const uint4 *>(dinp + (r0 + r) * C + c);
            }
        }
#pragma unroll
        for (int r = 0; r < LN_R; r++) {
            float d[8], xh[8], s1 = 0.0f, s2 = 0.0f;
            rg_load_bf16<8>(d, reinterpret_cast<const bf16 *>(&rd[r]));
            rg_load_bf16<8>(xh, reinterpret_cast<const bf16 *>(&rx[r]));
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float dx = d[j] * w[j];
                s1 += dx;
                s2 += dx * (xh[j] - mu[r]) * rs[r];
            }
            part[2 * r] = rg_warp_sum(s1);
            part[2 * r + 1] = rg_warp_sum(s2);
        }
        if (lane == 0)
#pragma unroll
            for (int k = 0; k < 2 * LN_R; k++) red[warp][k] = part[k];
        __syncthreads();
#pragma unroll
        for (int k = 0; k < 2 * LN_R; k++) {
            float s = 0.0f;
            for (int i = 0; i < n_warps; i++) s += red[i][k];
            part[k] = s / C;
        }
        __syncthreads(); /* red is rewritten by the next tile */
#pragma unroll
        for (int r = 0; r < LN_R; r++) {
            if (!active || r0 + r >= T) continue;
            float d[8], xh[8], g[8];
            rg_load_bf16<8>(d, reinterpret_cast<const bf16 *>(&rd[r]));
            rg_load_bf16<8>(xh, reinterpret_cast<const bf16 *>(&rx[r]));
            rg_load_bf16<8>(g, reinterpret_cast<const bf16 *>(&rg[r]));
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float x = (xh[j] - mu[r]) * rs[r], dx = d[j] * w[j];
                g[j] += rs[r] * (dx - part[2 * r] - x * part[2 * r + 1]);
                acc_w[j] += d[j] * x;
                acc_b[j] += d[j];
                if constexpr (SUM) { /* the value as stored: rounding it again below is exact */
                    g[j] = __bfloat162float(__float2bfloat16_rn(g[j]));
                    acc_s[j] += g[j];
                }
            }
            rg_store_bf16<8>(dinp + (r0 + r) * C + c, g);
        }
    }
    if (active) {
        float *pw = dw_parts + (int64_t)blockIdx.x * C + c;
#pragma unroll
        for (int j = 0; j < 8; j++) pw[j] = acc_w[j];
        if (db_parts) {
            float *pb = db_parts + (int64_t)blockIdx.x * C + c;
#pragma unroll
            for (int j = 0; j < 8; j++) pb[j] = acc_b[j];
        }
        if constexpr (SUM) {
            float *ps = ds_parts + (int64_t)blockIdx.x * C + c;
#pragma unroll
            for (int j = 0; j < 8; j++) ps[j] = acc_s[j];
        }
    }
}

/* ---- backward, warp per row (C % 8 == 0, C <= LNW_MAX_C) ----
 * Each warp walks its rows alone (no block barrier in the loop): every load
 * of a row first (dout, inp and the dinp being added to: ITEMS 16-byte
 * vectors each per lane), the two row sums by shuffles, then dinp written.
 * The column sums (dweight, dbias, and with SUM the stored dinp) go to the
 * warp's own slice of shared memory, columns owned by the lane that loads
 * them, so no two threads touch one address until the block adds its warps'
 * slices in warp order into one partial (deterministic). The tile kernel
 * above reached 64-69% of the bandwidth (two barriers per 4-row tile). */
#define LNW_WARPS 4
#define LNW_MAX_C 1024

template <int ITEMS, bool SUM>
__global__ void __launch_bounds__(LNW_WARPS * 32) ln_backward_warp_kernel(
    bf16 *dinp, float *dw_parts, float *db_parts, float *ds_parts, const bf16 *dout, const bf16 *inp,
    const bf16 *weight, const float *mean, const float *rstd, int64_t T, int C) {
    extern __shared__ float4 lnw_sh4[]; /* [warp][acc: w, b, (s)][C] */
    float *sh = reinterpret_cast<float *>(lnw_sh4);
    constexpr int N_ACC = SUM ? 3 : 2;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *acc = sh + (size_t)warp * N_ACC * C;
    uint4 wr[ITEMS]; /* the weights, kept as raw bf16 (16 registers at C = 1024, not 32) */
#pragma unroll
    for (int it = 0; it < ITEMS; it++) {
        int c = (it * 32 + lane) * 8;
        wr[it] = make_uint4(0, 0, 0, 0);
        if (c < C) {
            wr[it] = *reinterpret_cast<const uint4 *>(weight + c);
#pragma unroll
            for (int a = 0; a < N_ACC; a++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[a * C + c + j] = 0.0f;
        }
    }
    for (int64_t row = (int64_t)blockIdx.x * LNW_WARPS + warp; row < T; row += (int64_t)gridDim.x * LNW_WARPS) {
        uint4 rd[ITEMS], rx[ITEMS], rg[ITEMS];
#pragma unroll
        for (int it = 0; it < ITEMS; it++) {
            int c = (it * 32 + lane) * 8;
            rd[it] = rx[it] = rg[it] = make_uint4(0, 0, 0, 0);
            if (c < C) {
                rd[it] = *reinterpret_cast<const uint4 *>(dout + row * C + c);
                rx[it] = *reinterpret_cast<const uint4 *>(inp + row * C + c);
                rg[it] = *reinterpret_cast<const uint4 *>(dinp + row * C + c);
            }
        }
        float mu = mean[row], rs = rstd[row], s1 = 0.0f, s2 = 0.0f;
#pragma unroll
        for (int it = 0; it < ITEMS; it++) {
            float d[8], x[8], w[8];
            rg_load_bf16<8>(d, reinterpret_cast<const bf16 *>(&rd[it]));
            rg_load_bf16<8>(x, reinterpret_cast<const bf16 *>(&rx[it]));
            rg_load_bf16<8>(w, reinterpret_cast<const bf16 *>(&wr[it]));
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float dx = d[j] * w[j];
                s1 += dx;
                s2 += dx * (x[j] - mu) * rs;
            }
        }
        s1 = rg_warp_sum(s1) / C;
        s2 = rg_warp_sum(s2) / C;
#pragma unroll
        for (int it = 0; it < ITEMS; it++) {
            int c = (it * 32 + lane) * 8;
            if (c >= C) continue;
            float d[8], x[8], g[8], w[8];
            rg_load_bf16<8>(w, reinterpret_cast<const bf16 *>(&wr[it]));
            rg_load_bf16<8>(d, reinterpret_cast<const bf16 *>(&rd[it]));
            rg_load_bf16<8>(x, reinterpret_cast<const bf16 *>(&rx[it]));
            rg_load_bf16<8>(g, reinterpret_cast<const bf16 *>(&rg[it]));
            float4 *aw = reinterpret_cast<float4 *>(acc + c), *ab = reinterpret_cast<float4 *>(acc + C + c);
            float4 w0 = aw[0], w1 = aw[1], b0 = ab[0], b1 = ab[1];
            float xh[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                xh[j] = (x[j] - mu) * rs;
                g[j] += rs * (d[j] * w[j] - s1 - xh[j] * s2);
                if constexpr (SUM) g[j] = __bfloat162float(__float2bfloat16_rn(g[j])); /* as stored */
            }
            w0.x += d[0] * xh[0], w0.y += d[1] * xh[1], w0.z += d[2] * xh[2], w0.w += d[3] * xh[3];
            w1.x += d[4] * xh[4], w1.y += d[5] * xh[5], w1.z += d[6] * xh[6], w1.w += d[7] * xh[7];
            b0.x += d[0], b0.y += d[1], b0.z += d[2], b0.w += d[3];
            b1.x += d[4], b1.y += d[5], b1.z += d[6], b1.w += d[7];
            aw[0] = w0, aw[1] = w1, ab[0] = b0, ab[1] = b1;
            if constexpr (SUM) {
                float4 *as = reinterpret_cast<float4 *>(acc + 2 * C + c);
                float4 s0 = as[0], s1v = as[1];
                s0.x += g[0], s0.y += g[1], s0.z += g[2], s0.w += g[3];
                s1v.x += g[4], s1v.y += g[5], s1v.z += g[6], s1v.w += g[7];
                as[0] = s0, as[1] = s1v;
            }
            rg_store_bf16<8>(dinp + row * C + c, g);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sw = 0.0f, sb = 0.0f, ss = 0.0f;
#pragma unroll
        for (int k = 0; k < LNW_WARPS; k++) {
            const float *a = sh + (size_t)k * N_ACC * C;
            sw += a[c];
            sb += a[C + c];
            if constexpr (SUM) ss += a[2 * C + c];
        }
        dw_parts[(int64_t)blockIdx.x * C + c] = sw;
        if (db_parts) db_parts[(int64_t)blockIdx.x * C + c] = sb;
        if constexpr (SUM) ds_parts[(int64_t)blockIdx.x * C + c] = ss;
    }
}

template <int ITEMS, bool SUM>
static rg_status launch_ln_backward_warp(rg_cuda_state *st, int &parts, bf16 *g, float *dw_parts, float *db_parts,
                                         float *ds_parts, const bf16 *d, const bf16 *x, const bf16 *w,
                                         const float *mean, const float *rstd, int64_t T, int C) {
    size_t smem = (size_t)LNW_WARPS * (SUM ? 3 : 2) * C * sizeof(float);
    /* one wave: registers (about 160 at C = 1024) allow 3 blocks of 4 warps per multiprocessor */
    int fit = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, ln_backward_warp_kernel<ITEMS, SUM>, LNW_WARPS * 32,
                                                      smem) == cudaSuccess && fit > 0) {
        int64_t cap = (int64_t)fit * st->prop.multiProcessorCount;
        if (parts > cap) parts = (int)cap;
    }
    cudaGetLastError();
    ln_backward_warp_kernel<ITEMS, SUM><<<parts, LNW_WARPS * 32, smem, st->stream>>>(g, dw_parts, db_parts, ds_parts,
                                                                                   d, x, w, mean, rstd, T, C);
    RG_CUDA_CHECK_LAUNCH("ln_backward_warp_kernel");
    return RG_OK;
}

/* ---- backward, any shape ---- */

/* dinp only: one warp per row, two passes. */
__global__ void ln_backward_dinp_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const bf16 *weight,
                                        const float *mean, const float *rstd, int64_t T, int C) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * LN_FWD_WARPS + (threadIdx.x >> 5);
    if (row >= T) return;
    const bf16 *d = dout + row * C, *x = inp + row * C;
    float mu = mean[row], rs = rstd[row], s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dx = __bfloat162float(d[c]) * __bfloat162float(weight[c]);
        s1 += dx;
        s2 += dx * (__bfloat162float(x[c]) - mu) * rs;
    }
    s1 = rg_warp_sum(s1) / C;
    s2 = rg_warp_sum(s2) / C;
    for (int c = lane; c < C; c += 32) {
        float dx = __bfloat162float(d[c]) * __bfloat162float(weight[c]);
        float xh = (__bfloat162float(x[c]) - mu) * rs;
        bf16 *g = dinp + row * C + c;
        *g = __float2bfloat16_rn(__bfloat162float(*g) + rs * (dx - s1 - xh * s2));
    }
}

/* dweight/dbias partials: block (x: 256 columns, y: a split of the rows). */
__global__ void ln_backward_params_kernel(float *dw_parts, float *db_parts, const bf16 *dout, const bf16 *inp,
                                          const float *mean, const float *rstd, int64_t T, int C) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int64_t r = blockIdx.x; r < T; r += gridDim.x) {
        float d = __bfloat162float(dout[r * C + c]);
        aw += d * (__bfloat162float(inp[r * C + c]) - mean[r]) * rstd[r];
        ab += d;
    }
    dw_parts[(int64_t)blockIdx.x * C + c] = aw;
    if (db_parts) db_parts[(int64_t)blockIdx.x * C + c] = ab;
}

/* layernorm_backward, plus dinp_sum (+=, may be NULL): the column sums of
 * the dinp it stores (the fast kernel sums them as it writes them; the other
 * paths, and C so wide that the summing kernel's block does not fit, sum the
 * stored rows after). */
rg_status rg_cuda_layernorm_backward_sum(rg_backend *be, void *dinp, float *dweight, float *dbias, float *dinp_sum,
                                         const void *dout, const void *inp, const void *weight, const float *mean,
                                         const float *rstd, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || C <= 0) return RG_OK;
    bf16 *g = (bf16 *)dinp;
    const bf16 *d = (const bf16 *)dout, *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    bool vec = ln_vec_ok(C, dinp, dout, inp, weight);
    int threads = ((C / 8 + 31) / 32) * 32, fit = 0;
    /* the summing kernel's blocks must fit a multiprocessor (160 registers a
     * thread: not at C = 4096, 512 threads); else the stored rows are summed after */
    bool fused_sum = dinp_sum && vec && C <= LNW_MAX_C; /* the warp kernel always can */
    if (dinp_sum && vec && C > LNW_MAX_C) {
        fused_sum = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, ln_backward_vec_kernel<true>, threads, 0) ==
                        cudaSuccess && fit > 0;
        cudaGetLastError();
    }
    /* partials: parts blocks x C floats for dweight, as many again for dbias and dinp_sum */
    int64_t per_part = (int64_t)C * (1 + (dbias ? 1 : 0) + (fused_sum ? 1 : 0));
    int64_t max_parts = (int64_t)(st->scratch_bytes / sizeof(float)) / per_part;
    if (max_parts < 1)
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda layernorm_backward: C=%d needs more than %zu bytes of scratch", C,
                       st->scratch_bytes);
    float *dw_parts = (float *)st->scratch, *db_parts = dbias ? dw_parts + (int64_t)C * max_parts : NULL;
    float *ds_parts = dw_parts + (int64_t)C * max_parts * (dbias ? 2 : 1);
    int parts;
    if (vec && C <= LNW_MAX_C) {
        /* at most four blocks of four warps per multiprocessor (48 KiB of shared memory each at C = 1024
         * with SUM); the launch lowers parts to what fits at once */
        int64_t p = (T + LNW_WARPS - 1) / LNW_WARPS, cap = 4 * (int64_t)st->prop.multiProcessorCount;
        if (p > cap) p = cap;
        parts = (int)(p < max_parts ? p : max_parts);
        bool sum = dinp_sum != NULL;
        int items = (C + 255) / 256;
#define LNW(IT) (sum ? launch_ln_backward_warp<IT, true>(st, parts, g, dw_parts, db_parts, ds_parts, d, x, w, mean, rstd, T, C) \
                     : launch_ln_backward_warp<IT, false>(st, parts, g, dw_parts, db_parts, NULL, d, x, w, mean, rstd, T, C))
        RG_TRY(items == 1 ? LNW(1) : items == 2 ? LNW(2) : LNW(4));
#undef LNW
    } else if (vec) {
        int64_t n_tiles = (T + LN_R - 1) / LN_R;
        /* one wave: as many blocks as fit at once (registers bound it: the
         * summing variant fits 3 of 128 threads per multiprocessor, not 4) */
        int per_sm = 2048 / threads > 4 ? 4 : 2048 / threads;
        if (!fused_sum &&
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, ln_backward_vec_kernel<false>, threads, 0) != cudaSuccess)
            fit = 0;
        cudaGetLastError();
        if (fit > 0 && fit < per_sm) per_sm = fit;
        int64_t p = rg_cuda_blocks(st, n_tiles, 1, per_sm);
        parts = (int)(p < max_parts ? p : max_parts);
        if (fused_sum)
            ln_backward_vec_kernel<true><<<parts, threads, 0, st->stream>>>(g, dw_parts, db_parts, ds_parts, d, x, w,
                                                                            mean, rstd, T, C);
        else
            ln_backward_vec_kernel<false><<<parts, threads, 0, st->stream>>>(g, dw_parts, db_parts, NULL, d, x, w,
                                                                             mean, rstd, T, C);
        RG_CUDA_CHECK_LAUNCH("ln_backward_vec_kernel");
    } else {
        ln_backward_dinp_kernel<<<(unsigned)((T + LN_FWD_WARPS - 1) / LN_FWD_WARPS), 32 * LN_FWD_WARPS, 0,
                                  st->stream>>>(g, d, x, w, mean, rstd, T, C);
        RG_CUDA_CHECK_LAUNCH("ln_backward_dinp_kernel");
        int64_t col_blocks = (C + 255) / 256;
        int64_t p = 2 * st->prop.multiProcessorCount / col_blocks + 1;
        if (p > T) p = T;
        parts = (int)(p < max_parts ? p : max_parts);
        ln_backward_params_kernel<<<dim3(parts, (unsigned)col_blocks), 256, 0, st->stream>>>(dw_parts, db_parts, d,
                                                                                             x, mean, rstd, T, C);
        RG_CUDA_CHECK_LAUNCH("ln_backward_params_kernel");
    }
    RG_TRY(rg_cuda_add_partials(st, dweight, dw_parts, parts, C));
    if (dbias) RG_TRY(rg_cuda_add_partials(st, dbias, db_parts, parts, C));
    if (fused_sum) RG_TRY(rg_cuda_add_partials(st, dinp_sum, ds_parts, parts, C));
    /* otherwise sum the stored rows (the scratch is free again: same stream) */
    if (dinp_sum && !fused_sum) RG_TRY(rg_cuda_bias_grad(st, dinp_sum, g, T, C));
    return RG_OK;
}

rg_status rg_cuda_layernorm_backward(rg_backend *be, void *dinp, float *dweight, float *dbias, const void *dout,
                                     const void *inp, const void *weight, const float *mean, const float *rstd,
                                     int64_t T, int C) {
    return rg_cuda_layernorm_backward_sum(be, dinp, dweight, dbias, NULL, dout, inp, weight, mean, rstd, T, C);
}
