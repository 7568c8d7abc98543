/* attention_flash.c — tiled online-softmax varlen attention on the CPU
 * (FlashAttention-2's algorithm), forward and backward, OpenMP over tiles.
 *   q (total_q, h, d) rows stride_q     k, v (total_k, h_kv, d) rows stride_k / stride_v
 *   o, dout (total_q, h, d) contiguous  lse (h, total_q)     dq/dk/dv strided like q/k/v
 * Extra memory is O(T*d): per-thread tiles, D = rowsum(dO*O) (h, total_q), and
 * in the single-pass backward one sequence's K, V, dK, dV per thread; never a
 * (T x T) buffer. Scores are kept in base-2 units (q pre-scaled by scale*log2(e))
 * so that the softmax needs exp2 only. */
#include "cpu/cpu.h"
#include "core/alloc.h"
#include "core/status.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/threads.h"

/* Tile sizes: a (BR x d) query tile, a (BC x d) key tile, their (BC x BR) score
 * tile. With d = 64 each is 16 KiB: a pair's working set sits in L2 and the
 * micro-kernel's B panel (d x 32 floats, 8 KiB) in L1. Any multiples of 8 work
 * (-DBR=.. -DBC=.. to experiment): 64..128 measured within noise of each other. */
#ifndef BR
#define BR 64
#endif
#ifndef BC
#define BC 64
#endif

static const float LOG2E = 1.44269504088896341f;
static const float LN2 = 0.693147180559945309f;

int rg_cpu_flash_bwd_mode = 0;

static int imin(int a, int b) { return a < b ? a : b; }
static int round8(int n) { return (n + 7) & ~7; }

/* ---- exp2 that GCC vectorises -------------------------------------------
 * 2^x = 2^n * 2^f with n = round(x), |f| <= 1/2; 2^f by its Taylor series
 * e^(f ln 2) to degree 7 (relative error < 1e-8, below float rounding).
 * Meant for x <= 0 (softmax arguments): x <= -126 (and -inf) gives 0, and
 * x is clamped at 127 so that a masked-out score never overflows the integers. */
static inline float fexp2(float x) {
    float xc = x > -126.0f ? x : -126.0f;
    xc = xc < 127.0f ? xc : 127.0f;      /* keeps the exponent arithmetic in range */
    float t = xc + 12582912.0f;          /* 1.5 * 2^23: rounds xc to an integer in t's low bits */
    float f = xc - (t - 12582912.0f);
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    int32_t n = ti - 0x4B400000;
    float p = 1.5252733804059838e-05f;   /* (ln 2)^k / k!, k = 7 .. 0 */
    p = fmaf(p, f, 1.5403530393381606e-04f);
    p = fmaf(p, f, 1.3333558146428441e-03f);
    p = fmaf(p, f, 9.6181291076284772e-03f);
    p = fmaf(p, f, 5.5504108664821576e-02f);
    p = fmaf(p, f, 2.4022650695910071e-01f);
    p = fmaf(p, f, 6.9314718055994531e-01f);
    p = fmaf(p, f, 1.0f);
    int32_t pi;
    memcpy(&pi, &p, sizeof pi);
    pi += n * (1 << 23);
    float r;
    memcpy(&r, &pi, sizeof r);
    return x > -126.0f ? r : x != x ? x : 0.0f;   /* NaN stays NaN: bad inputs must show */
}

/* ---- register-blocked micro-kernels -------------------------------------
 * C (R x NC) (+)= A (R x K) B (K x NC), A(r, k) at A[r*ars + k*aks] (so A can be
 * read transposed: every A element is broadcast anyway), B and C row-major.
 * Written so that GCC -O3 vectorises the j loop and keeps acc in registers:
 * 8x32 is 16 zmm accumulators, 2 B loads and 8 broadcasts per k (about 95% of
 * a core's FMA peak in L1). fmaf because ISO C mode (-std=c11) turns off FMA
 * contraction. GCC's unroll-and-jam (-O3) would unroll k by 2, which needs 32
 * accumulators and spills them to the stack in the inner loop: off for these. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-loop-unroll-and-jam")
#endif
#define RG_DEF_MK(R, NC)                                                                      \
    static void mk_##R##x##NC(int K, const float *restrict A, ptrdiff_t ars, ptrdiff_t aks,   \
                              const float *restrict B, ptrdiff_t ldb, float *restrict C,      \
                              ptrdiff_t ldc, int accumulate) {                                \
        float acc[R][NC];                                                                     \
        for (int r = 0; r < R; r++)                                                           \
            for (int j = 0; j < NC; j++) acc[r][j] = accumulate ? C[r * ldc + j] : 0.0f;      \
        for (int k = 0; k < K; k++) {                                                         \
            const float *b = B + k * ldb;                                                     \
            float a[R];                                                                       \
            for (int r = 0; r < R; r++) a[r] = A[r * ars + k * aks];                          \
            for (int j = 0; j < NC; j++) {                                                    \
                float bj = b[j];                                                              \
                for (int r = 0; r < R; r++) acc[r][j] = fmaf(a[r], bj, acc[r][j]);            \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < R; r++)                                                           \
            for (int j = 0; j < NC; j++) C[r * ldc + j] = acc[r][j];                          \
    }
RG_DEF_MK(8, 32) RG_DEF_MK(4, 32) RG_DEF_MK(2, 32) RG_DEF_MK(1, 32)
RG_DEF_MK(8, 16) RG_DEF_MK(4, 16) RG_DEF_MK(2, 16) RG_DEF_MK(1, 16)
RG_DEF_MK(8, 8) RG_DEF_MK(4, 8) RG_DEF_MK(2, 8) RG_DEF_MK(1, 8)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

typedef void (*mk_fn)(int, const float *restrict, ptrdiff_t, ptrdiff_t, const float *restrict,
                      ptrdiff_t, float *restrict, ptrdiff_t, int);
static const mk_fn mk_table[4][3] = {
    {mk_8x32, mk_8x16, mk_8x8}, {mk_4x32, mk_4x16, mk_4x8},
    {mk_2x32, mk_2x16, mk_2x8}, {mk_1x32, mk_1x16, mk_1x8},
};

/* Where a causal mask zeroes part of a tile, each 8-row block of C needs only
 * a band (c is the tile's offset between row and column/k indices):
 *   COLS_FROM: columns >= c + m   (S^T, dP^T: rows are keys, columns queries)
 *   COLS_TO:   columns <  c + m + rows   (S, dP: rows are queries, columns keys)
 *   K_FROM:    k >= c + m         (dV, dK += (.)^T: rows keys, k queries)
 *   K_TO:      k <  c + m + rows  (O, dQ += P V, dS K: rows queries, k keys)
 * Skipped C entries are left as they were: the caller masks them (or they
 * multiply a probability of 0). K bands are exact, column bands are rounded
 * out to 8. */
typedef enum { BAND_NONE, BAND_COLS_FROM, BAND_COLS_TO, BAND_K_FROM, BAND_K_TO } band_kind;

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

/* C (M x N) (+)= A (M x K) B (K x N) with A as in the micro-kernels; N a
 * multiple of 8. Column panels outside so that each B panel stays in L1,
 * except under a column band where each row block has its own range. */
static void gemm_band(int M, int N, int K, const float *A, ptrdiff_t ars, ptrdiff_t aks,
                      const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int accumulate,
                      band_kind band, int c) {
    if (band == BAND_COLS_FROM || band == BAND_COLS_TO) {
        for (int m0 = 0, rows; m0 < M; m0 += rows) {
            const int mh = M - m0 >= 8 ? 0 : M - m0 >= 4 ? 1 : M - m0 >= 2 ? 2 : 3;
            rows = 8 >> mh;
            const int n_lo = band == BAND_COLS_FROM ? clampi(c + m0, 0, N) & ~7 : 0;
            const int n_hi = band == BAND_COLS_TO ? round8(clampi(c + m0 + rows, 0, N)) : N;
            for (int n0 = n_lo, width; n0 < n_hi; n0 += width) {
                const int nw = n_hi - n0 >= 32 ? 0 : n_hi - n0 >= 16 ? 1 : 2;
                width = 32 >> nw;
                mk_table[mh][nw](K, A + m0 * ars, ars, aks, B + n0, ldb, C + m0 * ldc + n0, ldc, accumulate);
            }
        }
        return;
    }
    for (int n0 = 0, width; n0 < N; n0 += width) {
        const int nw = N - n0 >= 32 ? 0 : N - n0 >= 16 ? 1 : 2;
        width = 32 >> nw;
        for (int m0 = 0, rows; m0 < M; m0 += rows) {
            const int mh = M - m0 >= 8 ? 0 : M - m0 >= 4 ? 1 : M - m0 >= 2 ? 2 : 3;
            rows = 8 >> mh;
            const int k_lo = band == BAND_K_FROM ? clampi(c + m0, 0, K) : 0;
            const int k_hi = band == BAND_K_TO ? clampi(c + m0 + rows, 0, K) : K;
            float *cb = C + m0 * ldc + n0;
            if (k_hi > k_lo)
                mk_table[mh][nw](k_hi - k_lo, A + m0 * ars + k_lo * aks, ars, aks, B + k_lo * ldb + n0, ldb,
                                 cb, ldc, accumulate);
            else if (!accumulate)
                for (int r = 0; r < rows; r++) memset(cb + r * ldc, 0, (size_t)width * sizeof(float));
        }
    }
}

/* ---- packing ------------------------------------------------------------ */

/* dst (n, D) contiguous <- n rows of D floats, row stride ld, times s. */
static void pack_rows(float *restrict dst, const float *restrict src, ptrdiff_t ld, int n, int D, float s) {
    for (int r = 0; r < n; r++)
        for (int c = 0; c < D; c++) dst[(ptrdiff_t)r * D + c] = src[r * ld + c] * s;
}

/* dst (D, ldd) <- the transpose of n rows of D floats (row stride ld) times s;
 * columns n .. round8(n) are zeroed so that kernels may run on whole vectors. */
static void pack_transposed(float *restrict dst, ptrdiff_t ldd, const float *restrict src,
                            ptrdiff_t ld, int n, int D, float s) {
    for (int r = 0; r < n; r++)
        for (int c = 0; c < D; c++) dst[(ptrdiff_t)c * ldd + r] = src[r * ld + c] * s;
    for (int c = 0; c < D; c++)
        for (int r = n; r < round8(n); r++) dst[(ptrdiff_t)c * ldd + r] = 0;
}

/* ---- work lists ---------------------------------------------------------
 * Work items are flattened over sequences: start[p] is the first item of the
 * p-th sequence in seq[] order, which is by decreasing cost, so that dynamic
 * scheduling starts the long sequences first and many tiny ones fill the gaps. */
typedef enum { WORK_Q_TILES, WORK_K_TILES, WORK_SEQ_KV } work_kind;

typedef struct worklist {
    int32_t *seq;     /* (B) sequences, most expensive first */
    int64_t *start;   /* (B+1) prefix sum of item counts */
    int32_t n;
} worklist;

typedef struct seq_cost { int64_t cost; int32_t b; } seq_cost;

static int by_cost_desc(const void *x, const void *y) {
    const seq_cost *a = x, *b = y;
    if (a->cost != b->cost) return a->cost > b->cost ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

static int64_t items_of(const rg_attn_desc *d, work_kind kind, int32_t b) {
    int32_t lq = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
    int32_t lk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
    switch (kind) {
    case WORK_Q_TILES: return (int64_t)(lq + BR - 1) / BR * d->n_heads;
    case WORK_K_TILES: return (int64_t)(lk + BC - 1) / BC * d->n_kv_heads;
    default: return lq + lk > 0 ? d->n_kv_heads : 0;
    }
}

static rg_status worklist_make(worklist *w, const rg_attn_desc *d, work_kind kind) {
    const int32_t B = d->batch;
    seq_cost *sc;
    w->seq = NULL;
    w->start = NULL;
    RG_TRY(rg_alloc((void **)&sc, (size_t)B, sizeof *sc, "flash attention work list"));
    rg_status s = rg_alloc((void **)&w->seq, (size_t)B, sizeof *w->seq, "flash attention work list");
    if (s == RG_OK) s = rg_alloc((void **)&w->start, (size_t)B + 1, sizeof *w->start, "flash attention work list");
    if (s != RG_OK) {
        rg_free(sc);
        rg_free(w->seq);
        return s;
    }
    for (int32_t b = 0; b < B; b++) {
        int64_t lq = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
        int64_t lk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
        sc[b].cost = lq * lk + lq + lk;
        sc[b].b = b;
    }
    qsort(sc, (size_t)B, sizeof *sc, by_cost_desc);
    w->start[0] = 0;
    for (int32_t p = 0; p < B; p++) {
        w->seq[p] = sc[p].b;
        w->start[p + 1] = w->start[p] + items_of(d, kind, sc[p].b);
    }
    w->n = B;
    rg_free(sc);
    return RG_OK;
}

static void worklist_free(worklist *w) {
    rg_free(w->seq);
    rg_free(w->start);
}

/* Item `it` -> (sequence, index of the item within it). */
static int32_t worklist_find(const worklist *w, int64_t it, int64_t *local) {
    int32_t lo = 0, hi = w->n - 1;
    while (lo < hi) {   /* last p with start[p] <= it */
        int32_t mid = (lo + hi + 1) / 2;
        if (w->start[mid] <= it) lo = mid; else hi = mid - 1;
    }
    *local = it - w->start[lo];
    return w->seq[lo];
}

/* ---- shared geometry ---------------------------------------------------- */

typedef struct seq_geom {
    int32_t q0, lq, k0, lk;
    int32_t off;      /* lk - lq: query i sees keys j <= i + off when causal */
} seq_geom;

static seq_geom geom(const rg_attn_desc *d, int32_t b) {
    seq_geom g;
    g.q0 = d->cu_seqlens_q[b];
    g.lq = d->cu_seqlens_q[b + 1] - g.q0;
    g.k0 = d->cu_seqlens_k[b];
    g.lk = d->cu_seqlens_k[b + 1] - g.k0;
    g.off = g.lk - g.lq;
    return g;
}

/* Keys [0, kend) of the sequence are seen by some row of query tile [i0, i0+nr). */
static int32_t key_end(const rg_attn_desc *d, const seq_geom *g, int32_t i0, int nr) {
    if (!d->causal) return g->lk;
    int64_t e = (int64_t)i0 + nr + g->off;
    return e < 0 ? 0 : e > g->lk ? g->lk : (int32_t)e;
}

/* In a (keys x queries) tile of keys j0.. and queries i0.., zeroes or masks the
 * entries with i < j + off: x[j][i] = fill for i < j0 + j - off - i0. */
static void mask_causal_t(float *x, int nc, int ncols, int32_t i0, int32_t j0, int32_t off, float fill) {
    for (int j = 0; j < nc; j++) {
        int64_t thr = (int64_t)j0 + j - off - i0;
        if (thr <= 0) continue;
        float *row = x + (ptrdiff_t)j * BR;
        int t = thr > ncols ? ncols : (int)thr;
        for (int i = 0; i < t; i++) row[i] = fill;
    }
}

/* ---- forward ------------------------------------------------------------ */

typedef struct fwd_ws {   /* one thread's tiles */
    float *QT;            /* (d, BR)  Q^T of the tile, times scale*log2(e) */
    float *ST;            /* (BC, BR) S^T, then P^T */
    float *O;             /* (BR, d)  unnormalised output */
    float *m, *l, *mt;    /* (BR)     running max (base 2), running sum, new max */
} fwd_ws;

static size_t fwd_ws_floats(int D) { return (size_t)2 * D * BR + (size_t)BC * BR + 3 * BR; }

static fwd_ws fwd_ws_at(float *p, int D) {
    fwd_ws w;
    w.QT = p;
    w.ST = w.QT + (size_t)D * BR;
    w.O = w.ST + (size_t)BC * BR;
    w.m = w.O + (size_t)BR * D;
    w.l = w.m + BR;
    w.mt = w.l + BR;
    return w;
}

/* One (sequence, head, query tile): S^T = K Q^T per key tile, so that the
 * online softmax runs down the columns and vectorises over the queries. */
static void fwd_tile(const rg_attn_args *a, const float *q, const float *k, const float *v,
                     float *o, float *lse, int32_t b, int32_t h, int32_t i0, fwd_ws *w) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, hk = h / (d->n_heads / d->n_kv_heads);
    const seq_geom g = geom(d, b);
    const int nr = imin(BR, g.lq - i0), nrp = round8(nr);
    const int32_t kend = key_end(d, &g, i0, nr);

    pack_transposed(w->QT, BR, q + (ptrdiff_t)(g.q0 + i0) * d->stride_q + (ptrdiff_t)h * D,
                    d->stride_q, nr, D, a->scale * LOG2E);
    for (int i = 0; i < nrp; i++) { w->m[i] = -INFINITY; w->l[i] = 0; }
    memset(w->O, 0, (size_t)nr * D * sizeof(float));

    for (int32_t j0 = 0; j0 < kend; j0 += BC) {
        const int nc = imin(BC, kend - j0);
        const float *Kg = k + (ptrdiff_t)(g.k0 + j0) * d->stride_k + (ptrdiff_t)hk * D;
        const float *Vg = v + (ptrdiff_t)(g.k0 + j0) * d->stride_v + (ptrdiff_t)hk * D;
        /* a tile crossing the diagonal computes only its causal band */
        const bool diag = d->causal && (int64_t)j0 + nc - 1 > (int64_t)i0 + g.off;
        gemm_band(nc, nrp, D, Kg, d->stride_k, 1, w->QT, BR, w->ST, BR, 0, diag ? BAND_COLS_FROM : BAND_NONE,
                  j0 - g.off - i0);
        if (diag) mask_causal_t(w->ST, nc, nrp, i0, j0, g.off, -INFINITY);

        float *restrict m = w->m, *restrict l = w->l, *restrict mt = w->mt;
        for (int i = 0; i < nrp; i++) mt[i] = m[i];
        for (int j = 0; j < nc; j++) {
            const float *restrict s = w->ST + (ptrdiff_t)j * BR;
            for (int i = 0; i < nrp; i++) mt[i] = s[i] > mt[i] ? s[i] : mt[i];
        }
        /* alpha rescales what was accumulated under the old max; a row that
         * has seen nothing yet keeps max -inf and uses 0 to avoid inf - inf. */
        float alpha[BR];
        for (int i = 0; i < nrp; i++) {
            float mu = mt[i] == -INFINITY ? 0.0f : mt[i];
            alpha[i] = fexp2(m[i] - mu);
            m[i] = mt[i];
            mt[i] = mu;
            l[i] *= alpha[i];
        }
        for (int j = 0; j < nc; j++) {
            float *restrict s = w->ST + (ptrdiff_t)j * BR;
            for (int i = 0; i < nrp; i++) {
                float p = fexp2(s[i] - mt[i]);
                s[i] = p;
                l[i] += p;
            }
        }
        for (int i = 0; i < nr; i++) {
            float *restrict oi = w->O + (ptrdiff_t)i * D;
            const float al = alpha[i];
            for (int c = 0; c < D; c++) oi[c] *= al;
        }
        /* O += P V, P read from P^T */
        gemm_band(nr, D, nc, w->ST, 1, BR, Vg, d->stride_v, w->O, D, 1, diag ? BAND_K_TO : BAND_NONE, i0 + g.off - j0);
    }

    for (int i = 0; i < nr; i++) {
        const float inv = w->l[i] == 0 ? 0.0f : 1.0f / w->l[i];
        float *restrict oi = o + ((ptrdiff_t)(g.q0 + i0 + i) * H + h) * D;
        const float *restrict src = w->O + (ptrdiff_t)i * D;
        for (int c = 0; c < D; c++) oi[c] = src[c] * inv;
        if (lse)
            lse[(ptrdiff_t)h * a->total_q + g.q0 + i0 + i] =
                w->l[i] == 0 ? -INFINITY : w->m[i] * LN2 + logf(w->l[i]);
    }
}

rg_status rg_cpu_attn_forward_flash(const rg_attn_args *a, const float *q, const float *k,
                                    const float *v, float *o, float *lse) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, nt = rg_thread_count();
    const size_t per = (fwd_ws_floats(D) + 15) & ~(size_t)15;
    worklist wl;
    float *scratch;
    RG_TRY(worklist_make(&wl, d, WORK_Q_TILES));
    rg_status s = rg_alloc((void **)&scratch, (size_t)nt * per, sizeof(float), "flash attention tiles");
    if (s != RG_OK) { worklist_free(&wl); return s; }

    const int64_t n_items = wl.start[wl.n];
    #pragma omp parallel
    {
        fwd_ws w = fwd_ws_at(scratch + (size_t)rg_thread_id() * per, D);
        #pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            int64_t local;
            const int32_t b = worklist_find(&wl, it, &local);
            const int32_t lq = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
            const int32_t n_tiles = (lq + BR - 1) / BR;
            /* last (most expensive when causal) tiles first */
            const int32_t tile = n_tiles - 1 - (int32_t)(local / H), h = (int32_t)(local % H);
            fwd_tile(a, q, k, v, o, lse, b, h, tile * BR, &w);
        }
    }
    rg_free(scratch);
    worklist_free(&wl);
    return RG_OK;
}

/* ---- backward -----------------------------------------------------------
 * With P = exp2(S2 - lse2) (S2 = scores in base 2), dP = dO V^T, D = rowsum(dO*O),
 * dS = P*(dP - D) (the gradient of the natural-unit scores):
 *   dV = P^T dO,  dQ = scale dS K,  dK = scale dS^T Q = ln2 dS^T Qs  (Qs = Q*scale*log2 e).
 * Two schedules, both race-free:
 *   single pass: one task per (sequence, kv head) owns that sequence's dK, dV
 *     (accumulated over its query tiles) and the dQ rows of its query heads;
 *   two passes (few, long sequences): tasks per (sequence, kv head, key tile)
 *     for dK, dV, then per (sequence, head, query tile) for dQ, recomputing P
 *     and dP (7 tile products instead of 5, but every thread has work). */

typedef struct qside {    /* a query tile, packed once */
    float *QT, *dOT;      /* (d, BR) Q^T times scale*log2(e), dO^T */
    float *Q, *dO;        /* (BR, d) the same, as rows (for dK, dV) */
    float *lse2, *Dr;     /* (BR) lse in base 2 (+inf for a row that sees nothing), D */
    int nr, nrp;
} qside;

static void qside_pack(qside *t, const rg_attn_args *a, const float *q, const float *dout,
                       const float *lse, const float *Dbuf, const seq_geom *g, int32_t h,
                       int32_t i0, bool rows) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads;
    const float qs = a->scale * LOG2E;
    const float *qp = q + (ptrdiff_t)(g->q0 + i0) * d->stride_q + (ptrdiff_t)h * D;
    const float *dop = dout + ((ptrdiff_t)(g->q0 + i0) * H + h) * D;
    t->nr = imin(BR, g->lq - i0);
    t->nrp = round8(t->nr);
    pack_transposed(t->QT, BR, qp, d->stride_q, t->nr, D, qs);
    pack_transposed(t->dOT, BR, dop, (ptrdiff_t)H * D, t->nr, D, 1.0f);
    if (rows) {
        pack_rows(t->Q, qp, d->stride_q, t->nr, D, qs);
        pack_rows(t->dO, dop, (ptrdiff_t)H * D, t->nr, D, 1.0f);
    }
    for (int i = 0; i < t->nrp; i++) {
        float x = i < t->nr ? lse[(ptrdiff_t)h * a->total_q + g->q0 + i0 + i] : -INFINITY;
        t->lse2[i] = x == -INFINITY ? INFINITY : x * LOG2E;
        t->Dr[i] = i < t->nr ? Dbuf[(ptrdiff_t)h * a->total_q + g->q0 + i0 + i] : 0.0f;
    }
}

/* One (query tile, key tile) pair, queries outside: S^T and dP^T (keys x
 * queries) so that P and dS are elementwise over a query vector.
 * dQ (nr, d) += dS K; if dK, dV are given: dV (nc, d) += P^T dO, dK += dS^T Qs. */
static void bwd_pair_qmajor(const rg_attn_desc *d, const qside *t, const float *K, const float *V,
                            int nc, int32_t i0, int32_t j0, int32_t off, float *ST, float *dPT,
                            float *dQ, float *dK, float *dV) {
    const int D = d->head_dim, nr = t->nr, nrp = t->nrp;
    const bool diag = d->causal && (int64_t)j0 + nc - 1 > (int64_t)i0 + off;
    const band_kind cols = diag ? BAND_COLS_FROM : BAND_NONE, kfrom = diag ? BAND_K_FROM : BAND_NONE;
    const int c = j0 - off - i0;
    gemm_band(nc, nrp, D, K, D, 1, t->QT, BR, ST, BR, 0, cols, c);
    for (int j = 0; j < nc; j++) {
        float *restrict s = ST + (ptrdiff_t)j * BR;
        const float *restrict l2 = t->lse2;
        for (int i = 0; i < nrp; i++) s[i] = fexp2(s[i] - l2[i]);
    }
    if (diag) mask_causal_t(ST, nc, nrp, i0, j0, off, 0.0f);
    if (dV) gemm_band(nc, D, nr, ST, BR, 1, t->dO, D, dV, D, 1, kfrom, c);
    gemm_band(nc, nrp, D, V, D, 1, t->dOT, BR, dPT, BR, 0, cols, c);
    for (int j = 0; j < nc; j++) {
        const float *restrict p = ST + (ptrdiff_t)j * BR;
        float *restrict ds = dPT + (ptrdiff_t)j * BR;
        const float *restrict Dr = t->Dr;
        /* the select keeps entries that the band skipped (stale) out */
        for (int i = 0; i < nrp; i++) ds[i] = p[i] != 0.0f ? p[i] * (ds[i] - Dr[i]) : 0.0f;
    }
    if (dK) gemm_band(nc, D, nr, dPT, BR, 1, t->Q, D, dK, D, 1, kfrom, c);
    gemm_band(nr, D, nc, dPT, 1, BR, K, D, dQ, D, 1, diag ? BAND_K_TO : BAND_NONE, i0 + off - j0);
}

/* Writes n rows of (n, D) src times s into a strided output. */
static void store_rows(float *dst, ptrdiff_t ld, const float *src, int n, int D, float s) {
    for (int r = 0; r < n; r++) {
        float *restrict y = dst + r * ld;
        const float *restrict x = src + (ptrdiff_t)r * D;
        for (int c = 0; c < D; c++) y[c] = x[c] * s;
    }
}

typedef struct bwd_ctx {
    const rg_attn_args *a;
    const float *q, *k, *v, *dout, *lse, *Dbuf;
    float *dq, *dk, *dv;
} bwd_ctx;

/* dQ of one query tile over all its visible key tiles; K, V (lk, d) either the
 * whole sequence packed (Kseq != NULL) or packed tile by tile into Kt, Vt. */
static void bwd_qtile(const bwd_ctx *c, const seq_geom *g, int32_t h, int32_t i0, qside *t,
                      const float *Kseq, const float *Vseq, float *Kt, float *Vt, float *ST,
                      float *dPT, float *dQ, float *dKseq, float *dVseq) {
    const rg_attn_desc *d = &c->a->desc;
    const int D = d->head_dim, hk = h / (d->n_heads / d->n_kv_heads);
    qside_pack(t, c->a, c->q, c->dout, c->lse, c->Dbuf, g, h, i0, dKseq != NULL);
    memset(dQ, 0, (size_t)t->nr * D * sizeof(float));
    const int32_t kend = key_end(d, g, i0, t->nr);
    for (int32_t j0 = 0; j0 < kend; j0 += BC) {
        const int nc = imin(BC, kend - j0);
        const float *K = Kseq ? Kseq + (ptrdiff_t)j0 * D : Kt, *V = Vseq ? Vseq + (ptrdiff_t)j0 * D : Vt;
        if (!Kseq) {
            pack_rows(Kt, c->k + (ptrdiff_t)(g->k0 + j0) * d->stride_k + (ptrdiff_t)hk * D, d->stride_k, nc, D, 1.0f);
            pack_rows(Vt, c->v + (ptrdiff_t)(g->k0 + j0) * d->stride_v + (ptrdiff_t)hk * D, d->stride_v, nc, D, 1.0f);
        }
        bwd_pair_qmajor(d, t, K, V, nc, i0, j0, g->off, ST, dPT, dQ,
                        dKseq ? dKseq + (ptrdiff_t)j0 * D : NULL, dVseq ? dVseq + (ptrdiff_t)j0 * D : NULL);
    }
    store_rows(c->dq + (ptrdiff_t)(g->q0 + i0) * d->stride_q + (ptrdiff_t)h * D, d->stride_q, dQ, t->nr,
               D, c->a->scale);
}

static size_t qside_floats(int D) { return (size_t)4 * D * BR + 2 * BR; }

static qside qside_at(float *p, int D) {
    qside t;
    t.QT = p;
    t.dOT = t.QT + (size_t)D * BR;
    t.Q = t.dOT + (size_t)D * BR;
    t.dO = t.Q + (size_t)BR * D;
    t.lse2 = t.dO + (size_t)BR * D;
    t.Dr = t.lse2 + BR;
    t.nr = t.nrp = 0;
    return t;
}

/* Single pass, one task per (sequence, kv head). Per thread: qside, S^T, dP^T,
 * dQ tile, and the sequence's K, V, dK, dV (4 * maxk * d). */
static size_t single_ws_floats(int D, int32_t maxk) {
    return qside_floats(D) + 2 * (size_t)BC * BR + (size_t)BR * D + 4 * (size_t)maxk * D;
}

static void bwd_single_task(const bwd_ctx *c, int32_t b, int32_t hk, float *ws) {
    const rg_attn_desc *d = &c->a->desc;
    const int D = d->head_dim, group = d->n_heads / d->n_kv_heads;
    const seq_geom g = geom(d, b);
    qside t = qside_at(ws, D);
    float *ST = ws + qside_floats(D), *dPT = ST + (size_t)BC * BR, *dQ = dPT + (size_t)BC * BR;
    float *Ks = dQ + (size_t)BR * D, *Vs = Ks + (size_t)g.lk * D;
    float *dKs = Vs + (size_t)g.lk * D, *dVs = dKs + (size_t)g.lk * D;
    pack_rows(Ks, c->k + (ptrdiff_t)g.k0 * d->stride_k + (ptrdiff_t)hk * D, d->stride_k, g.lk, D, 1.0f);
    pack_rows(Vs, c->v + (ptrdiff_t)g.k0 * d->stride_v + (ptrdiff_t)hk * D, d->stride_v, g.lk, D, 1.0f);
    memset(dKs, 0, 2 * (size_t)g.lk * D * sizeof(float));
    for (int32_t h = hk * group; h < (hk + 1) * group; h++)
        for (int32_t i0 = 0; i0 < g.lq; i0 += BR)
            bwd_qtile(c, &g, h, i0, &t, Ks, Vs, NULL, NULL, ST, dPT, dQ, dKs, dVs);
    store_rows(c->dk + (ptrdiff_t)g.k0 * d->stride_k + (ptrdiff_t)hk * D, d->stride_k, dKs, g.lk, D, LN2);
    store_rows(c->dv + (ptrdiff_t)g.k0 * d->stride_v + (ptrdiff_t)hk * D, d->stride_v, dVs, g.lk, D, 1.0f);
}

/* Two passes, pass 1: one task per (sequence, kv head, key tile), queries
 * inside: S = Qs K^T and dP = dO V^T (queries x keys) with K^T, V^T packed
 * once per task; dK, dV of the tile accumulated locally. */
static size_t kmajor_ws_floats(int D) {
    return 4 * (size_t)D * BC + 2 * (size_t)BR * D + 2 * (size_t)BR * BC + 2 * BR;
}

static void bwd_ktile_task(const bwd_ctx *c, int32_t b, int32_t hk, int32_t j0, float *ws) {
    const rg_attn_args *a = c->a;
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, group = H / d->n_kv_heads;
    const seq_geom g = geom(d, b);
    const int nc = imin(BC, g.lk - j0), ncp = round8(nc);
    float *KT = ws, *VT = KT + (size_t)D * BC, *dK = VT + (size_t)D * BC, *dV = dK + (size_t)BC * D;
    float *Q = dV + (size_t)BC * D, *dO = Q + (size_t)BR * D, *S = dO + (size_t)BR * D;
    float *dP = S + (size_t)BR * BC, *lse2 = dP + (size_t)BR * BC, *Dr = lse2 + BR;
    const float qs = a->scale * LOG2E;
    pack_transposed(KT, BC, c->k + (ptrdiff_t)(g.k0 + j0) * d->stride_k + (ptrdiff_t)hk * D, d->stride_k, nc, D, 1.0f);
    pack_transposed(VT, BC, c->v + (ptrdiff_t)(g.k0 + j0) * d->stride_v + (ptrdiff_t)hk * D, d->stride_v, nc, D, 1.0f);
    memset(dK, 0, 2 * (size_t)BC * D * sizeof(float));
    /* query rows that see key j0 at least: i >= j0 - off */
    int64_t first = d->causal ? (int64_t)j0 - g.off : 0;
    int32_t i_start = first <= 0 ? 0 : (int32_t)(first / BR * BR);
    for (int32_t h = hk * group; h < (hk + 1) * group; h++) {
        for (int32_t i0 = i_start; i0 < g.lq; i0 += BR) {
            const int nr = imin(BR, g.lq - i0);
            const float *qp = c->q + (ptrdiff_t)(g.q0 + i0) * d->stride_q + (ptrdiff_t)h * D;
            const float *dop = c->dout + ((ptrdiff_t)(g.q0 + i0) * H + h) * D;
            pack_rows(Q, qp, d->stride_q, nr, D, qs);
            pack_rows(dO, dop, (ptrdiff_t)H * D, nr, D, 1.0f);
            for (int i = 0; i < nr; i++) {
                float x = c->lse[(ptrdiff_t)h * a->total_q + g.q0 + i0 + i];
                lse2[i] = x == -INFINITY ? INFINITY : x * LOG2E;
                Dr[i] = c->Dbuf[(ptrdiff_t)h * a->total_q + g.q0 + i0 + i];
            }
            const bool diag = d->causal && (int64_t)j0 + nc - 1 > (int64_t)i0 + g.off;
            const band_kind cols = diag ? BAND_COLS_TO : BAND_NONE, kfrom = diag ? BAND_K_FROM : BAND_NONE;
            gemm_band(nr, ncp, D, Q, D, 1, KT, BC, S, BC, 0, cols, i0 + g.off - j0);
            gemm_band(nr, ncp, D, dO, D, 1, VT, BC, dP, BC, 0, cols, i0 + g.off - j0);
            for (int i = 0; i < nr; i++) {
                float *restrict p = S + (ptrdiff_t)i * BC, *restrict ds = dP + (ptrdiff_t)i * BC;
                const float l2 = lse2[i], Di = Dr[i];
                /* causal: key j visible iff j0 + j <= i0 + i + off */
                int64_t lim = d->causal ? (int64_t)i0 + i + g.off - j0 + 1 : ncp;
                const int vis = lim < 0 ? 0 : lim > ncp ? ncp : (int)lim;
                for (int j = 0; j < ncp; j++) {
                    float pj = j < vis ? fexp2(p[j] - l2) : 0.0f;
                    p[j] = pj;
                    ds[j] = j < vis ? pj * (ds[j] - Di) : 0.0f;   /* past vis: stale, skipped by the band */
                }
            }
            gemm_band(nc, D, nr, S, 1, BC, dO, D, dV, D, 1, kfrom, j0 - g.off - i0);
            gemm_band(nc, D, nr, dP, 1, BC, Q, D, dK, D, 1, kfrom, j0 - g.off - i0);
        }
    }
    store_rows(c->dk + (ptrdiff_t)(g.k0 + j0) * d->stride_k + (ptrdiff_t)hk * D, d->stride_k, dK, nc, D, LN2);
    store_rows(c->dv + (ptrdiff_t)(g.k0 + j0) * d->stride_v + (ptrdiff_t)hk * D, d->stride_v, dV, nc, D, 1.0f);
}

/* Pass 2: one task per (sequence, head, query tile) for dQ. */
static size_t qtile_ws_floats(int D) {
    return qside_floats(D) + 2 * (size_t)BC * BR + (size_t)BR * D + 2 * (size_t)BC * D;
}

static void bwd_qtile_task(const bwd_ctx *c, int32_t b, int32_t h, int32_t i0, float *ws) {
    const int D = c->a->desc.head_dim;
    const seq_geom g = geom(&c->a->desc, b);
    qside t = qside_at(ws, D);
    float *ST = ws + qside_floats(D), *dPT = ST + (size_t)BC * BR, *dQ = dPT + (size_t)BC * BR;
    float *Kt = dQ + (size_t)BR * D, *Vt = Kt + (size_t)BC * D;
    bwd_qtile(c, &g, h, i0, &t, NULL, NULL, Kt, Vt, ST, dPT, dQ, NULL, NULL);
}

/* Single pass unless its (sequence, kv head) tasks are too few or too uneven
 * for the threads (the longest task above 1.3x a fair share: then the two-pass
 * schedule's 7/5 work is the smaller evil), or the threads' copies of one
 * sequence's K, V, dK, dV would exceed both 64 MiB and twice the size of k and v
 * (so that extra memory stays O(T*d) whatever the thread count). */
static bool use_single_pass(const rg_attn_desc *d, int nt, int32_t maxk, int64_t total_k) {
    if (rg_cpu_flash_bwd_mode) return rg_cpu_flash_bwd_mode == 1;
    const double floats = 4.0 * nt * maxk * d->head_dim;
    if (floats > 16.0 * 1024 * 1024 && floats > 4.0 * total_k * d->n_kv_heads * d->head_dim) return false;
    double total = 0, worst = 0;
    const int group = d->n_heads / d->n_kv_heads;
    for (int32_t b = 0; b < d->batch; b++) {
        double lq = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
        double lk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
        double w = (lq * lk + lq + lk) * group;
        total += w * d->n_kv_heads;
        if (w > worst) worst = w;
    }
    return worst <= 1.3 * total / nt;
}

rg_status rg_cpu_attn_backward_flash(const rg_attn_args *a, const float *q, const float *k,
                                     const float *v, const float *o, const float *lse,
                                     const float *dout, float *dq, float *dk, float *dv) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, HK = d->n_kv_heads, nt = rg_thread_count();
    const int64_t TQ = a->total_q;
    int32_t maxk = 0;
    for (int32_t b = 0; b < d->batch; b++)
        if (d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b] > maxk) maxk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
    const bool single = use_single_pass(d, nt, maxk, a->total_k);
    size_t per = single ? single_ws_floats(D, maxk) : kmajor_ws_floats(D);
    if (!single && qtile_ws_floats(D) > per) per = qtile_ws_floats(D);
    per = (per + 15) & ~(size_t)15;

    worklist w1, w2 = {0};
    float *Dbuf = NULL, *scratch = NULL;
    RG_TRY(worklist_make(&w1, d, single ? WORK_SEQ_KV : WORK_K_TILES));
    rg_status s = single ? RG_OK : worklist_make(&w2, d, WORK_Q_TILES);
    if (s == RG_OK) s = rg_alloc((void **)&Dbuf, (size_t)H * TQ + 1, sizeof(float), "flash attention D");
    if (s == RG_OK) s = rg_alloc((void **)&scratch, (size_t)nt * per, sizeof(float), "flash attention tiles");
    if (s != RG_OK) {
        worklist_free(&w1);
        worklist_free(&w2);
        rg_free(Dbuf);
        return s;
    }

    const bwd_ctx c = {a, q, k, v, dout, lse, Dbuf, dq, dk, dv};
    const int64_t n1 = w1.start[w1.n], n2 = single ? 0 : w2.start[w2.n];
    #pragma omp parallel
    {
        float *ws = scratch + (size_t)rg_thread_id() * per;
        /* D_i = rowsum(dO_i * O_i), laid out (h, total_q) like lse */
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < TQ; t++)
            for (int h = 0; h < H; h++) {
                const float *x = o + (t * H + h) * D, *y = dout + (t * H + h) * D;
                float acc = 0;
                #pragma omp simd reduction(+ : acc)
                for (int e = 0; e < D; e++) acc += x[e] * y[e];
                Dbuf[(int64_t)h * TQ + t] = acc;
            }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n1; it++) {
            int64_t local;
            const int32_t b = worklist_find(&w1, it, &local);
            if (single) {
                bwd_single_task(&c, b, (int32_t)local, ws);
            } else {
                /* first key tiles first: with causal masks they see the most queries */
                bwd_ktile_task(&c, b, (int32_t)(local % HK), (int32_t)(local / HK) * BC, ws);
            }
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n2; it++) {
            int64_t local;
            const int32_t b = worklist_find(&w2, it, &local);
            const int32_t lq = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
            const int32_t n_tiles = (lq + BR - 1) / BR;
            bwd_qtile_task(&c, b, (int32_t)(local % H), (n_tiles - 1 - (int32_t)(local / H)) * BR, ws);
        }
    }
    rg_free(scratch);
    rg_free(Dbuf);
    worklist_free(&w1);
    worklist_free(&w2);
    return RG_OK;
}
