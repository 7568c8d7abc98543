/* attention_ref.c — the reference ("math") varlen attention: plain loops in
 * double, optional explicit mask, forward and backward straight from the
 * definition. Slow on purpose; every faster kernel is tested against it.
 *   q (total_q, h, d) rows stride_q     k, v (total_k, h_kv, d) rows stride_k / stride_v
 *   o, dout (total_q, h, d) contiguous  lse (h, total_q)
 *   mask: sequence b's block (lq_b, lk_b) row-major at element sum_{c<b} lq_c*lk_c */
#include "cpu/cpu.h"
#include "core/alloc.h"
#include "core/status.h"
#include <math.h>
#include <string.h>
#include "core/threads.h"

/* Start of sequence b's mask block (elements). */
static int64_t mask_offset(const rg_attn_desc *d, int32_t b) {
    int64_t off = 0;
    for (int32_t c = 0; c < b; c++)
        off += (int64_t)(d->cu_seqlens_q[c + 1] - d->cu_seqlens_q[c]) *
               (d->cu_seqlens_k[c + 1] - d->cu_seqlens_k[c]);
    return off;
}

/* Scaled scores of query row qi (sequence-local index i) against the lk keys
 * of its sequence, with causal and explicit masks applied: s[j] = -inf where
 * masked. Returns the row maximum (-inf if nothing is visible, NaN if a
 * visible score is NaN). */
static double row_scores(const rg_attn_args *a, const float *qi, const float *k0, int32_t hk,
                         int32_t i, int32_t lq, int32_t lk, int64_t moff, double *s) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim;
    double mx = -INFINITY;
    for (int32_t j = 0; j < lk; j++) {
        double x = -INFINITY;
        bool visible = !d->causal || j <= i + lk - lq;
        if (visible && d->mask_kind == RG_ATTN_MASK_BOOL)
            visible = ((const uint8_t *)d->mask)[moff + (int64_t)i * lk + j] != 0;
        if (visible) {
            const float *kj = k0 + (int64_t)j * d->stride_k + (int64_t)hk * D;
            double dot = 0;
            #pragma omp simd reduction(+ : dot)
            for (int c = 0; c < D; c++) dot += (double)qi[c] * kj[c];
            x = dot * a->scale;
            if (d->mask_kind == RG_ATTN_MASK_ADDITIVE)
                x += ((const float *)d->mask)[moff + (int64_t)i * lk + j];
        }
        s[j] = x;
        if (x > mx || x != x) mx = x;   /* a NaN score makes the row NaN */
    }
    return mx;
}

/* Turns scores into probabilities in place; returns the log-sum-exp
 * (-inf when the row sees no key, and then p is all 0). */
static double row_softmax(double *s, int32_t lk, double mx) {
    if (mx == -INFINITY) {
        for (int32_t j = 0; j < lk; j++) s[j] = 0;
        return -INFINITY;
    }
    double l = 0;
    for (int32_t j = 0; j < lk; j++) { s[j] = exp(s[j] - mx); l += s[j]; }
    for (int32_t j = 0; j < lk; j++) s[j] /= l;
    return mx + log(l);
}

rg_status rg_cpu_attn_forward_ref(const rg_attn_args *a, const float *q, const float *k,
                                  const float *v, float *o, float *lse) {
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, group = d->n_heads / d->n_kv_heads;
    int32_t maxk = 1;
    for (int32_t b = 0; b < d->batch; b++)
        if (d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b] > maxk) maxk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
    const int nt = rg_thread_count();
    double *scratch;   /* per thread: scores (maxk) + output accumulator (D) */
    size_t per = (size_t)maxk + (size_t)D;
    RG_TRY(rg_alloc((void **)&scratch, (size_t)nt * per, sizeof(double), "reference attention scratch"));

    #pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int32_t b = 0; b < d->batch; b++) {
        for (int32_t h = 0; h < H; h++) {
            double *s = scratch + (size_t)rg_thread_id() * per, *acc = s + maxk;
            const int32_t q0 = d->cu_seqlens_q[b], lq = d->cu_seqlens_q[b + 1] - q0;
            const int32_t k0 = d->cu_seqlens_k[b], lk = d->cu_seqlens_k[b + 1] - k0;
            const int64_t moff = d->mask_kind ? mask_offset(d, b) : 0;
            const int32_t hk = h / group;
            for (int32_t i = 0; i < lq; i++) {
                const float *qi = q + (int64_t)(q0 + i) * d->stride_q + (int64_t)h * D;
                double l = row_softmax(s, lk, row_scores(a, qi, k + (int64_t)k0 * d->stride_k, hk, i, lq, lk, moff, s));
                for (int c = 0; c < D; c++) acc[c] = 0;
                for (int32_t j = 0; j < lk; j++) {
                    if (s[j] == 0) continue;
                    const float *vj = v + (int64_t)(k0 + j) * d->stride_v + (int64_t)hk * D;
                    for (int c = 0; c < D; c++) acc[c] += s[j] * vj[c];
                }
                float *oi = o + ((int64_t)(q0 + i) * H + h) * D;
                for (int c = 0; c < D; c++) oi[c] = (float)acc[c];
                if (lse) lse[(int64_t)h * a->total_q + q0 + i] = (float)l;
            }
        }
    }
    rg_free(scratch);
    return RG_OK;
}

/* The backward from the definition, recomputing P from q and k (o and lse are
 * not used, so this checks the fast kernels' use of them too):
 *   dv_j += p_ij dO_i      dp_ij = dO_i . v_j      D_i = sum_j p_ij dp_ij
 *   ds_ij = p_ij (dp_ij - D_i)   dq_i = scale sum_j ds_ij k_j   dk_j += scale ds_ij q_i
 * One (sequence, kv head) per task, so each owns its dk, dv rows and the dq
 * rows of the query heads that read it: no two tasks write the same element. */
rg_status rg_cpu_attn_backward_ref(const rg_attn_args *a, const float *q, const float *k,
                                   const float *v, const float *o, const float *lse,
                                   const float *dout, float *dq, float *dk, float *dv) {
    (void)o;
    (void)lse;
    const rg_attn_desc *d = &a->desc;
    const int D = d->head_dim, H = d->n_heads, HK = d->n_kv_heads, group = H / HK;
    int32_t maxk = 1;
    for (int32_t b = 0; b < d->batch; b++)
        if (d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b] > maxk) maxk = d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
    const int nt = rg_thread_count();
    /* per thread: p (maxk), dp (maxk), dq row (D), dk and dv of the sequence (2 * maxk * D) */
    size_t per = 2 * (size_t)maxk + (size_t)D + 2 * (size_t)maxk * D;
    double *scratch;
    RG_TRY(rg_alloc((void **)&scratch, (size_t)nt * per, sizeof(double), "reference attention scratch"));

    #pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int32_t b = 0; b < d->batch; b++) {
        for (int32_t hk = 0; hk < HK; hk++) {
            double *p = scratch + (size_t)rg_thread_id() * per, *dp = p + maxk, *dqi = dp + maxk;
            double *dks = dqi + D, *dvs = dks + (size_t)maxk * D;
            const int32_t q0 = d->cu_seqlens_q[b], lq = d->cu_seqlens_q[b + 1] - q0;
            const int32_t k0 = d->cu_seqlens_k[b], lk = d->cu_seqlens_k[b + 1] - k0;
            const int64_t moff = d->mask_kind ? mask_offset(d, b) : 0;
            memset(dks, 0, (size_t)lk * D * sizeof(double));
            memset(dvs, 0, (size_t)lk * D * sizeof(double));
            for (int32_t h = hk * group; h < (hk + 1) * group; h++) {
                for (int32_t i = 0; i < lq; i++) {
                    const float *qi = q + (int64_t)(q0 + i) * d->stride_q + (int64_t)h * D;
                    const float *doi = dout + ((int64_t)(q0 + i) * H + h) * D;
                    row_softmax(p, lk, row_scores(a, qi, k + (int64_t)k0 * d->stride_k, hk, i, lq, lk, moff, p));
                    double Di = 0;
                    for (int32_t j = 0; j < lk; j++) {
                        const float *vj = v + (int64_t)(k0 + j) * d->stride_v + (int64_t)hk * D;
                        double x = 0;
                        #pragma omp simd reduction(+ : x)
                        for (int c = 0; c < D; c++) x += (double)doi[c] * vj[c];
                        dp[j] = x;
                        Di += p[j] * x;
                    }
                    for (int c = 0; c < D; c++) dqi[c] = 0;
                    for (int32_t j = 0; j < lk; j++) {
                        if (p[j] == 0) continue;
                        const float *kj = k + (int64_t)(k0 + j) * d->stride_k + (int64_t)hk * D;
                        double ds = p[j] * (dp[j] - Di) * a->scale;
                        for (int c = 0; c < D; c++) {
                            dqi[c] += ds * kj[c];
                            dks[(size_t)j * D + c] += ds * qi[c];
                            dvs[(size_t)j * D + c] += p[j] * doi[c];
                        }
                    }
                    float *dqo = dq + (int64_t)(q0 + i) * d->stride_q + (int64_t)h * D;
                    for (int c = 0; c < D; c++) dqo[c] = (float)dqi[c];
                }
            }
            for (int32_t j = 0; j < lk; j++) {
                float *dkj = dk + (int64_t)(k0 + j) * d->stride_k + (int64_t)hk * D;
                float *dvj = dv + (int64_t)(k0 + j) * d->stride_v + (int64_t)hk * D;
                for (int c = 0; c < D; c++) {
                    dkj[c] = (float)dks[(size_t)j * D + c];
                    dvj[c] = (float)dvs[(size_t)j * D + c];
                }
            }
        }
    }
    rg_free(scratch);
    return RG_OK;
}
