/* gelu.cu — GELU forward/backward on bf16 (n elements), the backward fused
 * with the bias gradient of the layer before it (column sums while dinp is
 * written), and the bias + GELU pass that completes a matmul when cuBLASLt's
 * epilogue cannot (cuBLASLt has no exact erf GELU).
 * Exact (erf) GELU by table: its input is always a bf16 value, so for the
 * 5632 bf16 values with 2^-16 <= |x| < 64 the backend keeps gelu(x) correctly
 * rounded to bf16 and gelu'(x) in fp32, both computed once in double
 * (rg_cuda_gelu_init). A kernel stages the table in shared memory and looks
 * values up; outside the range closed forms are exact to bf16 (|x| < 2^-16:
 * x/2 + x^2/sqrt(2 pi); x >= 64: x; x <= -64: -0). This makes the pass
 * memory-bound: evaluating erfc per element made it issue-bound (139 us
 * against 91 us of memory time for 64M elements on an H100).
 * tanh GELU is cheap to compute and is computed (fp32, one rounding). */
#include "cuda/ops.cuh"

#define LUT_E_LO 111 /* biased exponents [LUT_E_LO, LUT_E_HI): 2^-16 <= |x| < 2^6 */
#define LUT_E_HI 133
#define LUT_NEXP (LUT_E_HI - LUT_E_LO)
#define LUT_N (2 * LUT_NEXP * 128) /* sign x exponent x 7-bit mantissa */
#define LUT_D_OFFSET 16384         /* bytes: gelu values (bf16) first, then gelu' (fp32) */
#define THREADS 512
#define INV_SQRT_2PI 0.3989422804014327f

/* ---- scalar forms ---- */

__device__ __forceinline__ float gelu_tanh_grad(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    float s = 1.0f / (1.0f + __expf(-2.0f * u)), s1 = 1.0f / (1.0f + __expf(2.0f * u)); /* s, 1 - s */
    float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return s + 2.0f * x * s * s1 * du;
}

/* Table slot of a bf16 bit pattern, or -1 outside [2^-16, 64). */
__device__ __forceinline__ int lut_index(uint32_t b) {
    uint32_t k = ((b >> 7) & 0xFFu) - LUT_E_LO;
    return k < LUT_NEXP ? (int)((((b >> 15) * LUT_NEXP + k) << 7) | (b & 0x7Fu)) : -1;
}

__device__ __forceinline__ float bits_to_f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
__device__ __forceinline__ uint16_t f_to_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }

/* erf GELU of a bf16 pattern, as a bf16 pattern. */
__device__ __forceinline__ uint16_t gelu_erf_bits(uint16_t b, const uint16_t *tab) {
    int i = lut_index(b);
    if (i >= 0) return tab[i];
    float x = bits_to_f(b);
    bool tiny = ((b >> 7) & 0xFF) < LUT_E_LO;
    return f_to_bits(tiny ? fmaf(x * x, INV_SQRT_2PI, 0.5f * x) : (x > 0.0f ? x : x * 0.0f));
}

__device__ __forceinline__ float gelu_erf_grad_bits(uint16_t b, const float *tab) {
    int i = lut_index(b);
    if (i >= 0) return tab[i];
    float x = bits_to_f(b);
    bool tiny = ((b >> 7) & 0xFF) < LUT_E_LO;
    return tiny ? fmaf(2.0f * INV_SQRT_2PI, x, 0.5f) : (x > 0.0f ? 1.0f : x * 0.0f);
}

/* VEC raw bf16 patterns <-> memory (VEC 8: one 16-byte access). */
template <int VEC>
__device__ __forceinline__ void load_bits(uint16_t (&b)[VEC], const bf16 *p) {
    if constexpr (VEC == 8) {
        uint4 u = *reinterpret_cast<const uint4 *>(p);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) { b[2 * i] = (uint16_t)(w[i] & 0xFFFF); b[2 * i + 1] = (uint16_t)(w[i] >> 16); }
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) b[i] = __bfloat16_as_ushort(p[i]);
    }
}

template <int VEC>
__device__ __forceinline__ void store_bits(bf16 *p, const uint16_t (&b)[VEC]) {
    if constexpr (VEC == 8) {
        uint4 u;
        u.x = b[0] | ((uint32_t)b[1] << 16);
        u.y = b[2] | ((uint32_t)b[3] << 16);
        u.z = b[4] | ((uint32_t)b[5] << 16);
        u.w = b[6] | ((uint32_t)b[7] << 16);
        *reinterpret_cast<uint4 *>(p) = u;
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) p[i] = __ushort_as_bfloat16(b[i]);
    }
}

/* Stages the forward (bf16) or derivative (fp32) table in shared memory. */
template <typename T>
__device__ __forceinline__ void stage(T *dst, const T *src) {
    const uint4 *s = reinterpret_cast<const uint4 *>(src);
    uint4 *d = reinterpret_cast<uint4 *>(dst);
    for (int i = threadIdx.x; i < (int)(LUT_N * sizeof(T) / 16); i += blockDim.x) d[i] = s[i];
    __syncthreads();
}

/* ---- kernels; KIND is RG_GELU_NONE (identity), RG_GELU_ERF or RG_GELU_TANH ---- */

template <int KIND, int VEC>
__device__ __forceinline__ void gelu_vec(uint16_t (&b)[VEC], const uint16_t *tab) {
#pragma unroll
    for (int j = 0; j < VEC; j++) {
        if (KIND == RG_GELU_ERF) b[j] = gelu_erf_bits(b[j], tab);
        else if (KIND == RG_GELU_TANH) b[j] = f_to_bits(rg_gelu_tanh(bits_to_f(b[j])));
    }
}

template <int KIND, int VEC>
__global__ void __launch_bounds__(THREADS) gelu_forward_kernel(bf16 *out, const bf16 *inp, int64_t n,
                                                               const uint16_t *lut) {
    __shared__ __align__(16) uint16_t tab[KIND == RG_GELU_ERF ? LUT_N : 8];
    if (KIND == RG_GELU_ERF) stage(tab, lut);
    int64_t nv = n / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < nv; i += stride) {
        uint16_t b[VEC];
        load_bits<VEC>(b, inp + i * VEC);
        gelu_vec<KIND, VEC>(b, tab);
        store_bits<VEC>(out + i * VEC, b);
    }
    int64_t i = nv * VEC + tid; /* the n % VEC tail */
    if (i < n) {
        uint16_t b[1];
        load_bits<1>(b, inp + i);
        gelu_vec<KIND, 1>(b, tab);
        store_bits<1>(out + i, b);
    }
}

template <int KIND, int VEC>
__device__ __forceinline__ void gelu_grad_vec(float (&d)[VEC], const uint16_t (&x)[VEC], const float *tab) {
#pragma unroll
    for (int j = 0; j < VEC; j++) {
        if (KIND == RG_GELU_ERF) d[j] *= gelu_erf_grad_bits(x[j], tab);
        else if (KIND == RG_GELU_TANH) d[j] *= gelu_tanh_grad(bits_to_f(x[j]));
    }
}

template <int KIND, int VEC>
__global__ void __launch_bounds__(THREADS) gelu_backward_kernel(bf16 *dinp, const bf16 *inp, const bf16 *dout,
                                                                int64_t n, const float *lut) {
    __shared__ __align__(16) float tab[KIND == RG_GELU_ERF ? LUT_N : 4];
    if (KIND == RG_GELU_ERF) stage(tab, lut);
    int64_t nv = n / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t i = tid; i < nv; i += stride) {
        uint16_t x[VEC];
        float d[VEC];
        load_bits<VEC>(x, inp + i * VEC);
        rg_load_bf16<VEC>(d, dout + i * VEC);
        gelu_grad_vec<KIND, VEC>(d, x, tab);
        rg_store_bf16<VEC>(dinp + i * VEC, d);
    }
    int64_t i = nv * VEC + tid;
    if (i < n) {
        uint16_t x[1];
        float d[1];
        load_bits<1>(x, inp + i);
        rg_load_bf16<1>(d, dout + i);
        gelu_grad_vec<KIND, 1>(d, x, tab);
        rg_store_bf16<1>(dinp + i, d);
    }
}

/* gelu backward over (rows, cols) with the column sums of dinp (fp32, before
 * it is rounded to bf16): a block is DB_LANES row lanes x DB_COLS column threads of VEC columns;
 * lane ty of block x takes rows x * DB_LANES + ty + k * gridDim.x * DB_LANES,
 * two rows' loads in flight, and the lanes' sums are added in shared memory in
 * lane order into parts[x][col] (deterministic for a given grid). dinp may
 * alias dout: each thread reads its elements before it writes them. */
#define DB_LANES 4
#define DB_COLS (THREADS / DB_LANES)

template <int KIND, int VEC>
__device__ __forceinline__ void grad_row(float (&acc)[VEC], bf16 *dinp, const bf16 *inp, const bf16 *dout,
                                         const float *tab) {
    uint16_t x[VEC];
    float d[VEC];
    load_bits<VEC>(x, inp);
    rg_load_bf16<VEC>(d, dout);
    gelu_grad_vec<KIND, VEC>(d, x, tab);
#pragma unroll
    for (int j = 0; j < VEC; j++) acc[j] += d[j];
    rg_store_bf16<VEC>(dinp, d);
}

template <int KIND, int VEC>
__global__ void __launch_bounds__(THREADS) gelu_backward_dbias_kernel(bf16 *dinp, float *parts, const bf16 *inp,
                                                                      const bf16 *dout, int64_t rows, int cols,
                                                                      const float *lut) {
    __shared__ __align__(16) float tab[KIND == RG_GELU_ERF ? LUT_N : 4];
    __shared__ float red[DB_LANES][VEC * DB_COLS]; /* [lane][j * DB_COLS + tx]: no bank conflicts */
    if (KIND == RG_GELU_ERF) stage(tab, lut);
    int tx = threadIdx.x % DB_COLS, ty = threadIdx.x / DB_COLS;
    int c = (blockIdx.y * DB_COLS + tx) * VEC;
    float acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; j++) acc[j] = 0.0f;
    if (c < cols) {
        int64_t step = (int64_t)gridDim.x * DB_LANES, r = (int64_t)blockIdx.x * DB_LANES + ty;
        for (; r + step < rows; r += 2 * step) {
            float a2[VEC];
#pragma unroll
            for (int j = 0; j < VEC; j++) a2[j] = 0.0f;
            grad_row<KIND, VEC>(acc, dinp + r * cols + c, inp + r * cols + c, dout + r * cols + c, tab);
            int64_t r2 = r + step;
            grad_row<KIND, VEC>(a2, dinp + r2 * cols + c, inp + r2 * cols + c, dout + r2 * cols + c, tab);
#pragma unroll
            for (int j = 0; j < VEC; j++) acc[j] += a2[j];
        }
        if (r < rows) grad_row<KIND, VEC>(acc, dinp + r * cols + c, inp + r * cols + c, dout + r * cols + c, tab);
    }
#pragma unroll
    for (int j = 0; j < VEC; j++) red[ty][j * DB_COLS + tx] = acc[j];
    __syncthreads();
    if (ty == 0 && c < cols) {
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            float sum = red[0][j * DB_COLS + tx];
#pragma unroll
            for (int l = 1; l < DB_LANES; l++) sum += red[l][j * DB_COLS + tx];
            parts[(int64_t)blockIdx.x * cols + c + j] = sum;
        }
    }
}

/* pre, out (rows, cols); VEC divides cols, so a vector never crosses a row.
 * With a bias, x = bf16(pre + bias) is stored back to pre (the backward's
 * input) and GELU is applied to that rounded value. */
template <int KIND, int VEC>
__global__ void __launch_bounds__(THREADS) bias_gelu_kernel(bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows,
                                                            int cols, const uint16_t *lut) {
    __shared__ __align__(16) uint16_t tab[KIND == RG_GELU_ERF ? LUT_N : 8];
    if (KIND == RG_GELU_ERF) stage(tab, lut);
    int64_t nv = rows * cols / VEC, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nv; i += stride) {
        uint16_t b[VEC];
        if (bias) {
            float x[VEC], bb[VEC];
            rg_load_bf16<VEC>(x, pre + i * VEC);
            rg_load_bf16<VEC>(bb, bias + (int)((i * VEC) % cols));
#pragma unroll
            for (int j = 0; j < VEC; j++) b[j] = f_to_bits(x[j] + bb[j]);
            if (KIND != RG_GELU_NONE) store_bits<VEC>(pre + i * VEC, b);
        } else {
            load_bits<VEC>(b, pre + i * VEC);
        }
        gelu_vec<KIND, VEC>(b, tab);
        store_bits<VEC>(out + i * VEC, b);
    }
}

/* ---- the table ---- */

__global__ void gelu_lut_build_kernel(uint16_t *g, float *d) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= LUT_N) return;
    uint32_t sign = (uint32_t)i / (LUT_NEXP * 128), k = ((uint32_t)i / 128) % LUT_NEXP, m = (uint32_t)i & 127;
    double x = bits_to_f((uint16_t)((sign << 15) | ((k + LUT_E_LO) << 7) | m));
    double phi = 0.5 * erfc(-x / 1.4142135623730951);
    g[i] = __bfloat16_as_ushort(__double2bfloat16(x * phi));
    d[i] = (float)(phi + x * exp(-0.5 * x * x) * 0.3989422804014327);
}

rg_status rg_cuda_gelu_init(rg_cuda_state *st) {
    RG_CUDA_TRY(cudaMalloc(&st->gelu_lut, LUT_D_OFFSET + LUT_N * sizeof(float)));
    uint16_t *g = (uint16_t *)st->gelu_lut;
    float *d = (float *)((char *)st->gelu_lut + LUT_D_OFFSET);
    gelu_lut_build_kernel<<<(LUT_N + 255) / 256, 256, 0, st->stream>>>(g, d);
    RG_CUDA_CHECK_LAUNCH("gelu_lut_build_kernel");
    return RG_OK;
}

/* ---- entry points ---- */

/* F<kind, VEC>(...) with the GELU kind as a template argument. */
#define DISPATCH_KIND(kind, VEC, F, ...)                                                          \
    do {                                                                                          \
        if ((kind) == RG_GELU_ERF) F<RG_GELU_ERF, VEC>(__VA_ARGS__);                              \
        else if ((kind) == RG_GELU_TANH) F<RG_GELU_TANH, VEC>(__VA_ARGS__);                       \
        else F<RG_GELU_NONE, VEC>(__VA_ARGS__);                                                   \
    } while (0)

static const uint16_t *lut_g(const rg_cuda_state *st) { return (const uint16_t *)st->gelu_lut; }
static const float *lut_d(const rg_cuda_state *st) {
    return (const float *)((const char *)st->gelu_lut + LUT_D_OFFSET);
}

/* Grid-stride over at most four blocks per multiprocessor (full occupancy),
 * so that each block stages the table once for many elements. */
static unsigned gelu_grid(const rg_cuda_state *st, int64_t n_items) { return rg_cuda_blocks(st, n_items, THREADS, 4); }

template <int KIND, int VEC>
static void launch_forward(rg_cuda_state *st, bf16 *out, const bf16 *inp, int64_t n) {
    gelu_forward_kernel<KIND, VEC><<<gelu_grid(st, n / VEC + 1), THREADS, 0, st->stream>>>(out, inp, n, lut_g(st));
}

template <int KIND, int VEC>
static void launch_backward(rg_cuda_state *st, bf16 *dinp, const bf16 *inp, const bf16 *dout, int64_t n) {
    gelu_backward_kernel<KIND, VEC><<<gelu_grid(st, n / VEC + 1), THREADS, 0, st->stream>>>(dinp, inp, dout, n,
                                                                                          lut_d(st));
}

template <int KIND, int VEC>
static void launch_bias(rg_cuda_state *st, bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows, int cols) {
    bias_gelu_kernel<KIND, VEC><<<gelu_grid(st, rows * cols / VEC), THREADS, 0, st->stream>>>(out, pre, bias, rows,
                                                                                            cols, lut_g(st));
}

rg_status rg_cuda_gelu_forward(rg_backend *be, void *out, const void *inp, int64_t n, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp;
    if (rg_aligned16(out) && rg_aligned16(inp)) DISPATCH_KIND(gelu, 8, launch_forward, st, o, x, n);
    else DISPATCH_KIND(gelu, 1, launch_forward, st, o, x, n);
    RG_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
    return RG_OK;
}

rg_status rg_cuda_gelu_backward(rg_backend *be, void *dinp, const void *inp, const void *dout, int64_t n,
                                int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (n <= 0) return RG_OK;
    bf16 *g = (bf16 *)dinp;
    const bf16 *x = (const bf16 *)inp, *d = (const bf16 *)dout;
    if (rg_aligned16(dinp) && rg_aligned16(inp) && rg_aligned16(dout))
        DISPATCH_KIND(gelu, 8, launch_backward, st, g, x, d, n);
    else DISPATCH_KIND(gelu, 1, launch_backward, st, g, x, d, n);
    RG_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
    return RG_OK;
}

template <int KIND, int VEC>
static void launch_backward_dbias(rg_cuda_state *st, dim3 grid, bf16 *dinp, float *parts, const bf16 *inp,
                                  const bf16 *dout, int64_t rows, int cols) {
    gelu_backward_dbias_kernel<KIND, VEC><<<grid, THREADS, 0, st->stream>>>(dinp, parts, inp, dout, rows, cols,
                                                                             lut_d(st));
}

rg_status rg_cuda_gelu_backward_dbias(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                      int64_t T, int OC, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (!dbias) return rg_cuda_gelu_backward(be, dinp, inp, dout, T * OC, gelu);
    if (T <= 0 || OC <= 0) return RG_OK;
    int vec = OC % 8 == 0 && rg_aligned16(dinp) && rg_aligned16(inp) && rg_aligned16(dout) ? 8 : 1;
    int64_t col_blocks = (OC + (int64_t)DB_COLS * vec - 1) / ((int64_t)DB_COLS * vec);
    if (col_blocks > 65535)
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda gelu_backward_dbias: OC=%d is too wide for the column grid", OC);
    /* about four blocks per multiprocessor in all, at least one row per lane */
    int64_t parts = (4 * (int64_t)st->prop.multiProcessorCount + col_blocks - 1) / col_blocks;
    int64_t max_rows = (T + DB_LANES - 1) / DB_LANES, max_parts = (int64_t)(st->scratch_bytes / sizeof(float)) / OC;
    if (parts > max_rows) parts = max_rows;
    if (parts > max_parts) parts = max_parts;
    if (parts < 1)
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda gelu_backward_dbias: OC=%d needs more than %zu bytes of scratch", OC,
                       st->scratch_bytes);
    dim3 grid((unsigned)parts, (unsigned)col_blocks);
    float *scratch = (float *)st->scratch;
    bf16 *g = (bf16 *)dinp;
    const bf16 *x = (const bf16 *)inp, *d = (const bf16 *)dout;
    if (vec == 8) DISPATCH_KIND(gelu, 8, launch_backward_dbias, st, grid, g, scratch, x, d, T, OC);
    else DISPATCH_KIND(gelu, 1, launch_backward_dbias, st, grid, g, scratch, x, d, T, OC);
    RG_CUDA_CHECK_LAUNCH("gelu_backward_dbias_kernel");
    return rg_cuda_add_partials(st, dbias, scratch, (int)parts, OC);
}

rg_status rg_cuda_bias_gelu(rg_cuda_state *st, bf16 *out, bf16 *pre, const bf16 *bias, int64_t rows, int cols,
                            int gelu) {
    if (rows <= 0 || cols <= 0) return RG_OK;
    if (cols % 8 == 0 && rg_aligned16(out) && rg_aligned16(pre) && (!bias || rg_aligned16(bias)))
        DISPATCH_KIND(gelu, 8, launch_bias, st, out, pre, bias, rows, cols);
    else DISPATCH_KIND(gelu, 1, launch_bias, st, out, pre, bias, rows, cols);
    RG_CUDA_CHECK_LAUNCH("bias_gelu_kernel");
    return RG_OK;
}
