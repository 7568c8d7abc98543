/* test_cuda_attention.c — the CUDA backend's varlen attention (forward and
 * backward, bf16) against a double-precision CPU reference computed from the
 * same bf16-rounded inputs: awkward lengths, many tiny sequences with one huge,
 * causal and not, MHA/GQA/MQA, every kind of head dim, lq != lk, strided q/k/v
 * views (a fused qkv buffer), sentinels around every device buffer and NaN in
 * every gap the kernels must not read. Skips (77) without a CUDA device.
 *
 * Thresholds (relative L2 per sequence, normalised by the tensor's typical
 * size when a sequence's own values are near zero): o 1e-2, dq/dk/dv 2e-2,
 * lse 1e-3 absolute. bf16 rounding of P before P.V and of the output (2^-9
 * relative each, partly averaging out) gives o errors around 2e-3; the
 * gradients add bf16 dS and dO, around 5e-3. A dropped or duplicated key
 * block moves a 1000-key row by about 1/sqrt(1000) = 3e-2 and a short one by
 * far more, so the thresholds leave headroom without hiding such bugs. lse is
 * computed in fp32 from exact bf16 products: errors ~1e-5. */
#include "check.h"
#include "core/dtype.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_ELEMS 64          /* sentinel elements on each side of a device buffer */
#define SENT_BF16 0x4499        /* bf16 of 1224.0: never produced by these outputs */
#define NAN_BF16 0x7FC1         /* planted in gaps that must not be read */
static const float SENT_F32 = -7777.25f;

typedef struct tcase {
    const char *name;
    int B;
    int32_t *lq, *lk;
    int h, h_kv, d;
    bool causal;
    int layout;                 /* 0 contiguous, 1 fused qkv views (needs lq == lk), 2 padded strides */
    float scale;                /* <= 0: default */
} tcase;

static double max_rel_o = 0, max_rel_g = 0, max_lse = 0;

/* ---- reference (double; OpenMP only for sizes where threads pay) ------------- */

typedef struct refctx {
    const tcase *c;
    const int64_t *cq, *ck;
    int64_t tq, tk;
    double scale;
} refctx;

static bool visible(const refctx *r, int b, int64_t i, int64_t j) {
    int64_t lq = r->cq[b + 1] - r->cq[b], lk = r->ck[b + 1] - r->ck[b];
    return !r->c->causal || j <= i + lk - lq;
}

/* q (tq,h,d), k/v (tk,h_kv,d) contiguous -> o (tq,h,d), lse (h,tq) */
static void ref_forward(const refctx *r, const float *q, const float *k, const float *v, double *o, double *lse) {
    const tcase *c = r->c;
    const int h = c->h, hkv = c->h_kv, d = c->d, g = h / hkv;
    int64_t rows = r->tq * h;
#pragma omp parallel for schedule(dynamic, 16) if (rows > 1024)
    for (int64_t x = 0; x < rows; x++) {
        int64_t row = x / h;
        int hq = (int)(x % h), hk = hq / g;
        int b = 0;
        while (r->cq[b + 1] <= row) b++;
        int64_t i = row - r->cq[b], lk = r->ck[b + 1] - r->ck[b];
        double *s = malloc(sizeof(double) * (size_t)(lk > 0 ? lk : 1));
        double m = -INFINITY;
        for (int64_t j = 0; j < lk; j++) {
            s[j] = -INFINITY;
            if (!visible(r, b, i, j)) continue;
            const float *qp = q + (row * h + hq) * d, *kp = k + ((r->ck[b] + j) * hkv + hk) * d;
            double acc = 0;
            for (int e = 0; e < d; e++) acc += (double)qp[e] * kp[e];
            s[j] = acc * r->scale;
            if (s[j] > m) m = s[j];
        }
        double *op = o + (row * h + hq) * d;
        for (int e = 0; e < d; e++) op[e] = 0;
        if (m == -INFINITY) { lse[(int64_t)hq * r->tq + row] = -INFINITY; free(s); continue; }
        double l = 0;
        for (int64_t j = 0; j < lk; j++) {
            if (s[j] == -INFINITY) continue;
            double p = exp(s[j] - m);
            l += p;
            const float *vp = v + ((r->ck[b] + j) * hkv + hk) * d;
            for (int e = 0; e < d; e++) op[e] += p * vp[e];
        }
        for (int e = 0; e < d; e++) op[e] /= l;
        lse[(int64_t)hq * r->tq + row] = m + log(l);
        free(s);
    }
}

/* dq from rows, dk/dv from key rows (P recomputed from lse), D = rowsum(dO*O). */
static void ref_backward(const refctx *r, const float *q, const float *k, const float *v, const double *o,
                         const double *lse, const float *dout, double *dq, double *dk, double *dv) {
    const tcase *c = r->c;
    const int h = c->h, hkv = c->h_kv, d = c->d, g = h / hkv;
    double *D = malloc(sizeof(double) * (size_t)(r->tq * h + 1));
    for (int64_t x = 0; x < r->tq * h; x++) {
        double acc = 0;
        for (int e = 0; e < d; e++) acc += (double)dout[x * d + e] * o[x * d + e];
        D[x] = acc;
    }
#pragma omp parallel for schedule(dynamic, 16) if (r->tq * h > 1024)
    for (int64_t x = 0; x < r->tq * h; x++) {
        int64_t row = x / h;
        int hq = (int)(x % h), hk = hq / g;
        int b = 0;
        while (r->cq[b + 1] <= row) b++;
        int64_t i = row - r->cq[b], lk = r->ck[b + 1] - r->ck[b];
        double *dqp = dq + x * d;
        for (int e = 0; e < d; e++) dqp[e] = 0;
        double L = lse[(int64_t)hq * r->tq + row];
        if (L == -INFINITY) continue;
        for (int64_t j = 0; j < lk; j++) {
            if (!visible(r, b, i, j)) continue;
            const float *kp = k + ((r->ck[b] + j) * hkv + hk) * d, *vp = v + ((r->ck[b] + j) * hkv + hk) * d;
            const float *qp = q + x * d, *dop = dout + x * d;
            double s = 0, dp = 0;
            for (int e = 0; e < d; e++) { s += (double)qp[e] * kp[e]; dp += (double)dop[e] * vp[e]; }
            double p = exp(s * r->scale - L), ds = p * (dp - D[x]);
            for (int e = 0; e < d; e++) dqp[e] += r->scale * ds * kp[e];
        }
    }
#pragma omp parallel for schedule(dynamic, 16) if (r->tk * hkv > 1024)
    for (int64_t x = 0; x < r->tk * hkv; x++) {
        int64_t row = x / hkv;
        int hk = (int)(x % hkv);
        int b = 0;
        while (r->ck[b + 1] <= row) b++;
        int64_t j = row - r->ck[b], lq = r->cq[b + 1] - r->cq[b];
        double *dkp = dk + x * d, *dvp = dv + x * d;
        for (int e = 0; e < d; e++) dkp[e] = dvp[e] = 0;
        const float *kp = k + x * d, *vp = v + x * d;
        for (int hq = hk * g; hq < (hk + 1) * g; hq++)
            for (int64_t i = 0; i < lq; i++) {
                if (!visible(r, b, i, j)) continue;
                int64_t qx = (r->cq[b] + i) * h + hq;
                double L = lse[(int64_t)hq * r->tq + r->cq[b] + i];
                const float *qp = q + qx * d, *dop = dout + qx * d;
                double s = 0, dp = 0;
                for (int e = 0; e < d; e++) { s += (double)qp[e] * kp[e]; dp += (double)dop[e] * vp[e]; }
                double p = exp(s * r->scale - L), ds = p * (dp - D[qx]);
                for (int e = 0; e < d; e++) { dkp[e] += r->scale * ds * qp[e]; dvp[e] += p * dop[e]; }
            }
    }
    free(D);
}

/* ---- device buffers with sentinels ------------------------------------------- */

typedef struct dbuf {
    void *base;                 /* device allocation: GUARD | n elements | GUARD */
    void *p;                    /* the view the op sees */
    size_t n, esz;
} dbuf;

static bool dbuf_alloc(rg_backend *be, dbuf *b, size_t n, size_t esz) {
    b->n = n;
    b->esz = esz;
    if (rg_buffer_alloc(be, (n + 2 * GUARD_ELEMS) * esz, &b->base) != RG_OK) return false;
    b->p = (char *)b->base + GUARD_ELEMS * esz;
    return true;
}

/* Uploads host bits (n elements) surrounded by sentinels (or NaN for inputs). */
static bool dbuf_upload(rg_backend *be, dbuf *b, const void *host, bool input) {
    size_t tot = b->n + 2 * GUARD_ELEMS;
    void *tmp = malloc(tot * b->esz);
    for (size_t i = 0; i < tot; i++) {
        if (b->esz == 2) ((uint16_t *)tmp)[i] = input ? NAN_BF16 : SENT_BF16;
        else ((float *)tmp)[i] = input ? NAN : SENT_F32;
    }
    if (host) memcpy((char *)tmp + GUARD_ELEMS * b->esz, host, b->n * b->esz);
    bool ok = rg_buffer_upload(be, b->base, tmp, tot * b->esz) == RG_OK;
    free(tmp);
    return ok;
}

/* Downloads the whole allocation; checks the guards hold the sentinel. Returns
 * the n elements (caller frees) or NULL. */
static void *dbuf_download(rg_backend *be, const dbuf *b, const char *what) {
    size_t tot = b->n + 2 * GUARD_ELEMS;
    char *tmp = malloc(tot * b->esz);
    if (rg_buffer_download(be, tmp, b->base, tot * b->esz) != RG_OK) {
        CHECK(false, "%s: download failed: %s", what, rg_last_error());
        free(tmp);
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < tot && ok; i++) {
        if (i >= GUARD_ELEMS && i < GUARD_ELEMS + b->n) continue;
        if (b->esz == 2) ok = ((uint16_t *)tmp)[i] == SENT_BF16;
        else ok = memcmp(&((float *)tmp)[i], &SENT_F32, 4) == 0;
    }
    CHECK(ok, "%s: a write landed in the guard region", what);
    void *out = malloc(b->n * b->esz);
    memcpy(out, tmp + GUARD_ELEMS * b->esz, b->n * b->esz);
    free(tmp);
    return out;
}

static void dbuf_free(rg_backend *be, dbuf *b) { rg_buffer_free(be, b->base); b->base = b->p = NULL; }

/* ---- comparisons -------------------------------------------------------------- */

/* got (strided bf16 rows: rows x stride, this tensor's columns at col0, width
 * w) vs ref (rows, w) double; per-sequence relative L2 with a floor at the
 * tensor's rms. Also checks every element outside the tensor's columns kept
 * `keep` (the sentinel, or whatever another output wrote there: skipped when
 * keep_check is false). */
static void compare_rows(const char *what, const tcase *c, const int64_t *cu, const uint16_t *got, int64_t rows,
                         int64_t stride, int64_t col0, int64_t w, const double *ref, double tol, double *worst) {
    double tot_ref = 0;
    for (int64_t x = 0; x < rows * w; x++) tot_ref += ref[x] * ref[x];
    double rms = sqrt(tot_ref / (double)(rows * w > 0 ? rows * w : 1));
    bool nan = false;
    double worst_e = 0;
    int worst_b = -1;
    for (int b = 0; b < c->B; b++) {
        double num = 0, den = 0;
        for (int64_t row = cu[b]; row < cu[b + 1]; row++)
            for (int64_t e = 0; e < w; e++) {
                float gv = rg_bf16_to_f32(got[row * stride + col0 + e]);
                if (isnan(gv)) nan = true;
                double dd = gv - ref[row * w + e];
                num += dd * dd;
                den += ref[row * w + e] * ref[row * w + e];
            }
        double n_el = (double)(cu[b + 1] - cu[b]) * w;
        double floor2 = rms * rms * n_el;
        double e = n_el > 0 ? sqrt(num / fmax(den, floor2 > 0 ? floor2 : 1e-300)) : 0;
        if (e > worst_e) { worst_e = e; worst_b = b; }
    }
    if (worst_e > *worst) *worst = worst_e;
    CHECK(!nan, "%s %s: NaN in the output", c->name, what);
    CHECK(worst_e <= tol, "%s %s: rel err %.3g > %.3g (sequence %d of %d)", c->name, what, worst_e, tol, worst_b,
          c->B);
}

/* The gaps of a strided output (columns no output owns) must still hold the sentinel. */
static void check_gaps(const char *what, const tcase *c, const uint16_t *got, int64_t rows, int64_t stride,
                       const int64_t *col0, const int64_t *w, int n_views) {
    bool ok = true;
    for (int64_t row = 0; row < rows && ok; row++)
        for (int64_t e = 0; e < stride && ok; e++) {
            bool owned = false;
            for (int v = 0; v < n_views; v++) owned |= e >= col0[v] && e < col0[v] + w[v];
            if (!owned) ok = got[row * stride + e] == SENT_BF16;
        }
    CHECK(ok, "%s %s: a write landed between rows (outside the tensor's columns)", c->name, what);
}

/* ---- one case ---------------------------------------------------------------- */

static void fill_bf16(rg_rng *rng, float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = rg_bf16_to_f32(rg_f32_to_bf16((float)(rg_rng_normal(rng) * sd)));
}

/* host (rows, w) floats -> bf16 rows of `stride` at column col0 of dst (already NaN-filled) */
static void scatter(uint16_t *dst, const float *src, int64_t rows, int64_t stride, int64_t col0, int64_t w) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t e = 0; e < w; e++) dst[r * stride + col0 + e] = rg_f32_to_bf16(src[r * w + e]);
}

static void run_case(rg_backend *be, rg_rng *rng, const tcase *c) {
    const int h = c->h, hkv = c->h_kv, d = c->d, B = c->B;
    int32_t *cq32 = malloc(sizeof(int32_t) * (B + 1)), *ck32 = malloc(sizeof(int32_t) * (B + 1));
    int64_t *cq = malloc(sizeof(int64_t) * (B + 1)), *ck = malloc(sizeof(int64_t) * (B + 1));
    cq32[0] = ck32[0] = 0;
    int32_t maxq = 0, maxk = 0;
    for (int b = 0; b < B; b++) {
        cq32[b + 1] = cq32[b] + c->lq[b];
        ck32[b + 1] = ck32[b] + c->lk[b];
        if (c->lq[b] > maxq) maxq = c->lq[b];
        if (c->lk[b] > maxk) maxk = c->lk[b];
    }
    for (int b = 0; b <= B; b++) { cq[b] = cq32[b]; ck[b] = ck32[b]; }
    const int64_t tq = cq[B], tk = ck[B];
    const int64_t wq = (int64_t)h * d, wk = (int64_t)hkv * d;

    float *q = malloc(sizeof(float) * (tq * wq + 1)), *k = malloc(sizeof(float) * (tk * wk + 1));
    float *v = malloc(sizeof(float) * (tk * wk + 1)), *dout = malloc(sizeof(float) * (tq * wq + 1));
    fill_bf16(rng, q, tq * wq, 1.0);
    fill_bf16(rng, k, tk * wk, 1.0);
    fill_bf16(rng, v, tk * wk, 1.0);
    fill_bf16(rng, dout, tq * wq, 1.0);

    /* input/gradient layouts */
    int64_t sq = wq, sk = wk, sv = wk, coq = 0, cok = 0, cov = 0;
    bool fused = c->layout == 1;
    if (fused) {
        sq = sk = sv = wq + 2 * wk;
        cok = wq;
        cov = wq + wk;
    } else if (c->layout == 2) {
        sq = wq + 8;
        sk = wk + 24;
        sv = wk + 16;
    }
    int64_t nq_el = tq * sq, nk_el = tk * sk, nv_el = tk * sv;
    dbuf bq = {0}, bk = {0}, bv = {0}, bo = {0}, blse = {0}, bdo = {0}, bdq = {0}, bdk = {0}, bdv = {0};
    bool ok = true;
    uint16_t *hq16 = NULL, *hk16 = NULL, *hv16 = NULL;
    if (fused) {
        ok &= dbuf_alloc(be, &bq, (size_t)nq_el, 2);
        hq16 = malloc(2 * (size_t)(nq_el + 1));
        for (int64_t i = 0; i < nq_el; i++) hq16[i] = NAN_BF16;
        scatter(hq16, q, tq, sq, coq, wq);
        scatter(hq16, k, tk, sk, cok, wk);
        scatter(hq16, v, tk, sv, cov, wk);
        ok &= dbuf_upload(be, &bq, hq16, true);
        bk = bq;
        bv = bq;
    } else {
        ok &= dbuf_alloc(be, &bq, (size_t)nq_el, 2) && dbuf_alloc(be, &bk, (size_t)nk_el, 2) &&
              dbuf_alloc(be, &bv, (size_t)nv_el, 2);
        hq16 = malloc(2 * (size_t)(nq_el + 1));
        hk16 = malloc(2 * (size_t)(nk_el + 1));
        hv16 = malloc(2 * (size_t)(nv_el + 1));
        for (int64_t i = 0; i < nq_el; i++) hq16[i] = NAN_BF16;
        for (int64_t i = 0; i < nk_el; i++) hk16[i] = NAN_BF16;
        for (int64_t i = 0; i < nv_el; i++) hv16[i] = NAN_BF16;
        scatter(hq16, q, tq, sq, 0, wq);
        scatter(hk16, k, tk, sk, 0, wk);
        scatter(hv16, v, tk, sv, 0, wk);
        ok &= dbuf_upload(be, &bq, hq16, true) && dbuf_upload(be, &bk, hk16, true) && dbuf_upload(be, &bv, hv16, true);
    }
    ok &= dbuf_alloc(be, &bo, (size_t)(tq * wq), 2) && dbuf_upload(be, &bo, NULL, false);
    ok &= dbuf_alloc(be, &blse, (size_t)(tq * h), 4) && dbuf_upload(be, &blse, NULL, false);
    uint16_t *hdo16 = malloc(2 * (size_t)(tq * wq + 1));
    scatter(hdo16, dout, tq, wq, 0, wq);
    ok &= dbuf_alloc(be, &bdo, (size_t)(tq * wq), 2) && dbuf_upload(be, &bdo, hdo16, true);
    if (fused) {
        ok &= dbuf_alloc(be, &bdq, (size_t)nq_el, 2) && dbuf_upload(be, &bdq, NULL, false);
    } else {
        ok &= dbuf_alloc(be, &bdq, (size_t)nq_el, 2) && dbuf_upload(be, &bdq, NULL, false) &&
              dbuf_alloc(be, &bdk, (size_t)nk_el, 2) && dbuf_upload(be, &bdk, NULL, false) &&
              dbuf_alloc(be, &bdv, (size_t)nv_el, 2) && dbuf_upload(be, &bdv, NULL, false);
    }
    if (!CHECK(ok, "%s: device buffers: %s", c->name, rg_last_error())) goto done;

    rg_attn_desc desc = {0};
    desc.batch = B;
    desc.n_heads = h;
    desc.n_kv_heads = hkv;
    desc.head_dim = d;
    desc.cu_seqlens_q = cq32;
    desc.cu_seqlens_k = ck32;
    desc.max_seqlen_q = maxq;
    desc.max_seqlen_k = maxk;
    desc.softmax_scale = c->scale;
    desc.causal = c->causal;
    desc.algo = RG_ATTN_AUTO;
    desc.stride_q = c->layout ? (int32_t)sq : 0;
    desc.stride_k = c->layout ? (int32_t)sk : 0;
    desc.stride_v = c->layout ? (int32_t)sv : 0;
    const uint16_t *qd = (const uint16_t *)bq.p + coq, *kd = (const uint16_t *)bk.p + cok, *vd = (const uint16_t *)bv.p + cov;

    rg_status s = rg_attn_forward(be, &desc, qd, kd, vd, bo.p, (float *)blse.p);
    if (!CHECK(s == RG_OK, "%s: forward: %s", c->name, rg_last_error())) goto done;
    uint16_t *o16 = dbuf_download(be, &bo, "o");
    float *lse = dbuf_download(be, &blse, "lse");
    /* a second run must give the same bits (no races, no dependence on timing) */
    s = rg_attn_forward(be, &desc, qd, kd, vd, bo.p, (float *)blse.p);
    uint16_t *o16b = dbuf_download(be, &bo, "o (rerun)");
    CHECK(s == RG_OK && o16 && o16b && memcmp(o16, o16b, 2 * (size_t)(tq * wq)) == 0,
          "%s: forward is not deterministic", c->name);
    free(o16b);

    refctx r = {c, cq, ck, tq, tk, c->scale > 0 ? c->scale : 1.0 / sqrt((double)d)};
    double *o_ref = malloc(sizeof(double) * (tq * wq + 1)), *lse_ref = malloc(sizeof(double) * (tq * h + 1));
    ref_forward(&r, q, k, v, o_ref, lse_ref);
    if (o16 && lse) {
        compare_rows("o", c, cq, o16, tq, wq, 0, wq, o_ref, 1e-2, &max_rel_o);
        double worst = 0;
        bool inf_ok = true, nan = false;
        for (int64_t x = 0; x < tq * h; x++) {
            if (isnan(lse[x])) nan = true;
            else if (isinf(lse_ref[x]) || isinf(lse[x])) inf_ok &= lse[x] == lse_ref[x];
            else worst = fmax(worst, fabs(lse[x] - lse_ref[x]));
        }
        if (worst > max_lse) max_lse = worst;
        CHECK(!nan && inf_ok && worst <= 1e-3, "%s lse: nan %d, -inf rows match %d, max abs err %.3g", c->name, nan,
              inf_ok, worst);
    }

    /* backward, from the GPU's own o and lse (as in training) */
    s = rg_attn_backward(be, &desc, qd, kd, vd, bo.p, (float *)blse.p, bdo.p, (uint16_t *)bdq.p + coq,
                         (uint16_t *)(fused ? bdq.p : bdk.p) + cok, (uint16_t *)(fused ? bdq.p : bdv.p) + cov);
    if (CHECK(s == RG_OK, "%s: backward: %s", c->name, rg_last_error())) {
        double *dq_ref = malloc(sizeof(double) * (tq * wq + 1)), *dk_ref = malloc(sizeof(double) * (tk * wk + 1));
        double *dv_ref = malloc(sizeof(double) * (tk * wk + 1));
        ref_backward(&r, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
        if (fused) {
            uint16_t *g = dbuf_download(be, &bdq, "dqkv");
            if (g) {
                compare_rows("dq", c, cq, g, tq, sq, coq, wq, dq_ref, 2e-2, &max_rel_g);
                compare_rows("dk", c, ck, g, tk, sk, cok, wk, dk_ref, 2e-2, &max_rel_g);
                compare_rows("dv", c, ck, g, tk, sv, cov, wk, dv_ref, 2e-2, &max_rel_g);
                int64_t c0[3] = {coq, cok, cov}, w[3] = {wq, wk, wk};
                check_gaps("dqkv", c, g, tq, sq, c0, w, 3);
            }
            free(g);
        } else {
            uint16_t *gq = dbuf_download(be, &bdq, "dq"), *gk = dbuf_download(be, &bdk, "dk");
            uint16_t *gv = dbuf_download(be, &bdv, "dv");
            if (gq && gk && gv) {
                compare_rows("dq", c, cq, gq, tq, sq, 0, wq, dq_ref, 2e-2, &max_rel_g);
                compare_rows("dk", c, ck, gk, tk, sk, 0, wk, dk_ref, 2e-2, &max_rel_g);
                compare_rows("dv", c, ck, gv, tk, sv, 0, wk, dv_ref, 2e-2, &max_rel_g);
                int64_t c0 = 0;
                check_gaps("dq", c, gq, tq, sq, &c0, &wq, 1);
                check_gaps("dk", c, gk, tk, sk, &c0, &wk, 1);
                check_gaps("dv", c, gv, tk, sv, &c0, &wk, 1);
            }
            free(gq); free(gk); free(gv);
        }
        free(dq_ref); free(dk_ref); free(dv_ref);
    }
    printf("  %-28s B=%-4d tq=%-6lld tk=%-6lld h=%d/%d d=%-3d %s layout %d  (worst so far: o %.2e, grads %.2e)\n",
           c->name, B, (long long)tq, (long long)tk, h, hkv, d, c->causal ? "causal" : "full  ", c->layout,
           max_rel_o, max_rel_g);
    fflush(stdout);
    free(o16); free(lse); free(o_ref); free(lse_ref);
done:
    if (!fused) { dbuf_free(be, &bk); dbuf_free(be, &bv); dbuf_free(be, &bdk); dbuf_free(be, &bdv); }
    dbuf_free(be, &bq); dbuf_free(be, &bo); dbuf_free(be, &blse); dbuf_free(be, &bdo); dbuf_free(be, &bdq);
    free(hq16); free(hk16); free(hv16); free(hdo16);
    free(q); free(k); free(v); free(dout);
    free(cq32); free(ck32); free(cq); free(ck);
}

/* ---- bad input: statuses, nothing written ------------------------------------- */

static void check_bad_input(rg_backend *be) {
    int32_t cu[2] = {0, 16};
    dbuf b = {0}, bo = {0};
    if (!dbuf_alloc(be, &b, 3 * 16 * 64 + 8, 2) || !dbuf_alloc(be, &bo, 16 * 64, 2)) {
        CHECK(false, "bad input: alloc: %s", rg_last_error());
        return;
    }
    dbuf_upload(be, &b, NULL, true);
    dbuf_upload(be, &bo, NULL, false);
    rg_attn_desc desc = {0};
    desc.batch = 1;
    desc.n_heads = desc.n_kv_heads = 1;
    desc.head_dim = 64;
    desc.cu_seqlens_q = desc.cu_seqlens_k = cu;
    desc.max_seqlen_q = desc.max_seqlen_k = 16;
    uint16_t *q = b.p;
    rg_status s = rg_attn_forward(be, &desc, q + 1, q + 1024, q + 2048, bo.p, NULL);
    CHECK(s == RG_ERR_UNSUPPORTED && strstr(rg_last_error(), "aligned"), "misaligned q is refused (%s)",
          rg_last_error());
    desc.stride_q = 68;
    s = rg_attn_forward(be, &desc, q, q + 1088, q + 2048, bo.p, NULL);
    CHECK(s == RG_ERR_UNSUPPORTED && strstr(rg_last_error(), "multiples of 8"), "stride 68 is refused (%s)",
          rg_last_error());
    desc.stride_q = 0;
    desc.head_dim = 12;
    s = rg_attn_forward(be, &desc, q, q + 1024, q + 2048, bo.p, NULL);
    CHECK(s == RG_ERR_INVALID_ARG, "head_dim 12 is refused (%s)", rg_last_error());
    uint16_t *o = dbuf_download(be, &bo, "o after refused calls");
    bool untouched = o != NULL;
    for (int i = 0; o && i < 16 * 64; i++) untouched &= o[i] == SENT_BF16;
    CHECK(untouched, "refused calls write nothing");
    free(o);
    dbuf_free(be, &b);
    dbuf_free(be, &bo);
}

static int32_t *ints(int n, const int32_t *v) {
    int32_t *p = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(p, v, sizeof(int32_t) * (size_t)n);
    return p;
}

/* ---- the reference's own backward against central finite differences ---------- */

/* loss = sum(dout * o) on a tiny GQA case, causal and not, lq != lk; checks
 * ref_backward's dq, dk, dv against (loss(x + e) - loss(x - e)) / 2e. Runs on
 * every machine (no GPU needed), so the definition of right is itself checked. */
static void check_reference(rg_rng *rng) {
    int32_t lq[2] = {3, 5}, lk[2] = {4, 5};
    int64_t cq[3] = {0, 3, 8}, ck[3] = {0, 4, 9};
    for (int causal = 0; causal < 2; causal++) {
        tcase c = {"reference", 2, lq, lk, 2, 1, 8, causal, 0, 0};
        refctx r = {&c, cq, ck, 8, 9, 0.4};
        float q[8 * 16], k[9 * 8], v[9 * 8], dout[8 * 16];
        fill_bf16(rng, q, 128, 1.0);
        fill_bf16(rng, k, 72, 1.0);
        fill_bf16(rng, v, 72, 1.0);
        fill_bf16(rng, dout, 128, 1.0);
        double o[128], lse[16], dq[128], dk[72], dv[72], o2[128], lse2[16];
        ref_forward(&r, q, k, v, o, lse);
        ref_backward(&r, q, k, v, o, lse, dout, dq, dk, dv);
        float *xs[3] = {q, k, v};
        const double *gs[3] = {dq, dk, dv};
        int ns[3] = {128, 72, 72};
        double worst = 0;
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < ns[t]; i++) {
                float x0 = xs[t][i];
                double f[2], xe[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    xs[t][i] = x0 + (sgn ? -1e-3f : 1e-3f);
                    xe[sgn] = xs[t][i];
                    ref_forward(&r, q, k, v, o2, lse2);
                    f[sgn] = 0;
                    for (int e = 0; e < 128; e++) f[sgn] += dout[e] * o2[e];
                }
                xs[t][i] = x0;
                double fd = (f[0] - f[1]) / (xe[0] - xe[1]);
                worst = fmax(worst, fabs(fd - gs[t][i]) / (1 + fabs(gs[t][i])));
            }
        CHECK(worst < 1e-4, "reference backward vs finite differences (%s): worst %.3g",
              causal ? "causal" : "full", worst);
    }
}

/* ---- every compiled kernel variant (the lab may promote any to the default) ---- */

#ifdef RAGGED_HAVE_CUDA
int rg_cuda_attn_set_variant(rg_backend *be, int fwd, int bwd);
const char *rg_cuda_attn_variant_name(int bwd, int head_dim, int variant);

static void check_variants(rg_backend *be, rg_rng *rng, bool quick) {
    static const int dims[] = {32, 64, 96, 128, 192, 256};
    static const int32_t lens[] = {1, 7, 65, 130, 300};
    for (int di = 0; di < 6; di++) {
        if (quick && dims[di] != 64) continue;
        for (int bwd = 0; bwd < 2; bwd++)
            for (int v = 1; rg_cuda_attn_variant_name(bwd, dims[di], v); v++) {
                char name[64];
                snprintf(name, sizeof name, "%s v%d", bwd ? "bwd" : "fwd", v);
                rg_cuda_attn_set_variant(be, bwd ? -1 : v, bwd ? v : -1);
                tcase c = {name, 5, ints(5, lens), ints(5, lens), 4, 2, dims[di], v & 1, v % 3, 0};
                run_case(be, rng, &c);
                free(c.lq); free(c.lk);
            }
    }
    rg_cuda_attn_set_variant(be, -1, -1);
}
#endif

/* ---- main ---------------------------------------------------------------------- */


int main(void) {
    rg_rng rng;
    rg_test_init("test_cuda_attention", &rng);
    check_reference(&rng);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        printf("test_cuda_attention: skipped: no CUDA device (or no CUDA backend in this build); "
               "the CPU reference passed its finite-difference check: %s\n", rg_test_failed ? "no" : "yes");
        return rg_test_failed ? 1 : 77;
    }
    rg_backend *be = NULL;
    if (rg_backend_init(RG_BACKEND_CUDA, 0, &be) != RG_OK) {
        printf("test_cuda_attention: cannot start the CUDA backend: %s\n", rg_last_error());
        return 1;
    }
    const bool quick = rg_test_quick();
    check_bad_input(be);

    /* 1. awkward lengths: every (d, h_kv, causal), layouts rotating */
    static const int32_t full_lens[] = {1, 2, 7, 63, 64, 65, 127, 128, 129, 1000};
    static const int32_t quick_lens[] = {1, 7, 65, 130};
    const int32_t *lens = quick ? quick_lens : full_lens;
    int nl = quick ? 4 : 10;
    static const int dims_full[] = {32, 64, 80, 128, 256}, dims_quick[] = {64, 128};
    const int *dims = quick ? dims_quick : dims_full;
    int nd = quick ? 2 : 5;
    int layout = 0;
    for (int di = 0; di < nd; di++)
        for (int hv = 0; hv < 3; hv++)
            for (int causal = 0; causal < 2; causal++) {
                if (quick && hv == 1) continue;
                tcase c = {"lengths", nl, ints(nl, lens), ints(nl, lens), 8, hv == 0 ? 8 : hv == 1 ? 2 : 1,
                           dims[di], causal, layout++ % 3, 0};
                /* shuffle the order so the long sequence is not always last */
                for (int i = nl - 1; i > 0; i--) {
                    int j = (int)rg_rng_below(&rng, (uint64_t)i + 1);
                    int32_t t = c.lq[i]; c.lq[i] = c.lq[j]; c.lq[j] = t;
                }
                memcpy(c.lk, c.lq, sizeof(int32_t) * (size_t)nl);
                run_case(be, &rng, &c);
                free(c.lq); free(c.lk);
            }

    /* 2. cu_seqlens_q != cu_seqlens_k: more queries than keys (causal rows with
     * no key), a sequence with no queries, one with no keys */
    {
        static const int32_t lq[] = {5, 64, 100, 1, 300, 0, 33, 9};
        static const int32_t lk[] = {17, 64, 40, 200, 1, 50, 0, 130};
        for (int causal = 0; causal < 2; causal++)
            for (int di = 0; di < (quick ? 1 : 2); di++) {
                tcase c = {"lq != lk", 8, ints(8, lq), ints(8, lk), 4, 2, di ? 128 : 64, causal, 2, 0};
                run_case(be, &rng, &c);
                free(c.lq); free(c.lk);
            }
    }

    /* 3. many tiny sequences and one huge (MQA, fused qkv views) */
    for (int causal = 0; causal < 2; causal++) {
        int n = quick ? 40 : 300;
        int32_t *l = malloc(sizeof(int32_t) * (size_t)(n + 1));
        for (int i = 0; i < n; i++) l[i] = 1 + (int32_t)rg_rng_below(&rng, 9);
        int at = (int)rg_rng_below(&rng, (uint64_t)n + 1);
        memmove(l + at + 1, l + at, sizeof(int32_t) * (size_t)(n - at));
        l[at] = quick ? 300 : 1500;
        tcase c = {"tiny + huge", n + 1, l, ints(n + 1, l), 4, 1, 64, causal, 1, 0};
        run_case(be, &rng, &c);
        free(c.lq); free(c.lk);
    }

    /* 4. every other kind of head dim (rounded up to a compiled size inside) */
    {
        static const int more_full[] = {8, 16, 24, 40, 96, 104, 136, 192, 200, 248};
        static const int more_quick[] = {40, 200};
        const int *more = quick ? more_quick : more_full;
        int nm = quick ? 2 : 10;
        static const int32_t l3[] = {3, 70, 150};
        for (int i = 0; i < nm; i++) {
            tcase c = {"head dims", 3, ints(3, l3), ints(3, l3), 2, 1, more[i], i & 1, i % 3, 0};
            run_case(be, &rng, &c);
            free(c.lq); free(c.lk);
        }
    }

    /* 5. an explicit softmax scale */
    {
        static const int32_t l2[] = {90, 257};
        tcase c = {"scale 0.3", 2, ints(2, l2), ints(2, l2), 4, 4, 64, true, 0, 0.3f};
        run_case(be, &rng, &c);
        free(c.lq); free(c.lk);
    }

#ifdef RAGGED_HAVE_CUDA
    check_variants(be, &rng, quick);
#endif
    printf("worst errors: o %.3g (tol 1e-2), grads %.3g (tol 2e-2), lse %.3g (tol 1e-3)\n", max_rel_o, max_rel_g,
           max_lse);
    rg_backend_free(be);
    return rg_test_finish();
}
