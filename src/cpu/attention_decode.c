/* attention_decode.c — CPU decode attention over a paged KV cache (one query
 * per sequence), split over the KV length as in flash-decoding, and the
 * scatter of new K/V rows into their cache slots. fp32 host memory. */
#include "cpu/cpu.h"
#include "core/alloc.h"
#include "core/status.h"
#include <math.h>
#include <string.h>
#include "core/threads.h"

#define PART RG_ATTN_DECODE_PARTITION

/* One task: the g query heads sharing kv head kvh of sequence b, over keys
 * [j0, j1) (one partition). Each K/V row is read once for the whole group.
 * Writes, per query head, the partition's max score m, sum of exp(s - m) l
 * and unnormalised output acc (d). sc is this thread's (g, PART) scratch. */
static void decode_part(const rg_attn_decode_args *a, const float *q, const float *kc, const float *vc,
                        int32_t b, int32_t kvh, int32_t j0, int32_t j1, float *sc, float *m, float *l,
                        float *acc) {
    const int32_t d = a->head_dim, g = a->n_heads / a->n_kv_heads, hkv = a->n_kv_heads;
    const int32_t bs = a->block_size, n = j1 - j0;
    const int32_t *table = a->block_tables + (int64_t)b * a->max_blocks;
    const float *qb = q + (int64_t)b * a->stride_q + (int64_t)kvh * g * d;  /* g heads (g, d) */

    for (int32_t jj = 0; jj < n; jj++) {
        int32_t j = j0 + jj;
        const float *kr = kc + (((int64_t)table[j / bs] * bs + j % bs) * hkv + kvh) * d;
        for (int32_t gi = 0; gi < g; gi++) {
            const float *qr = qb + (int64_t)gi * d;
            float s = 0;
            /* Without the pragma a float sum stays scalar (no reassociation). */
#pragma omp simd reduction(+ : s)
            for (int32_t c = 0; c < d; c++) s += qr[c] * kr[c];
            sc[(int64_t)gi * PART + jj] = s * a->scale;
        }
    }
    for (int32_t gi = 0; gi < g; gi++) {
        float *s = sc + (int64_t)gi * PART, mx = -INFINITY, sum = 0;
        for (int32_t jj = 0; jj < n; jj++) mx = s[jj] > mx ? s[jj] : mx;
        for (int32_t jj = 0; jj < n; jj++) { s[jj] = expf(s[jj] - mx); sum += s[jj]; }
        m[gi] = mx;
        l[gi] = sum;
        memset(acc + (int64_t)gi * d, 0, sizeof(float) * (size_t)d);
    }
    for (int32_t jj = 0; jj < n; jj++) {
        int32_t j = j0 + jj;
        const float *vr = vc + (((int64_t)table[j / bs] * bs + j % bs) * hkv + kvh) * d;
        for (int32_t gi = 0; gi < g; gi++) {
            float p = sc[(int64_t)gi * PART + jj], *ar = acc + (int64_t)gi * d;
            for (int32_t c = 0; c < d; c++) ar[c] += p * vr[c];
        }
    }
}

rg_status rg_cpu_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o_, const void *q_,
                             const void *k_cache, const void *v_cache) {
    const float *q = q_, *kc = k_cache, *vc = v_cache;
    float *o = o_;
    const int32_t S = a->n_seqs, h = a->n_heads, hkv = a->n_kv_heads, d = a->head_dim;
    const int32_t g = h / hkv;
    const int32_t max_parts = a->max_seq_len > 0 ? (a->max_seq_len + PART - 1) / PART : 1;
    const int nt = rg_thread_count();

    /* Task t = (b * hkv + kvh) * max_parts + p owns partials m, l (g) at t * g
     * and acc (g, d) at t * g * d; each thread has scores (g, PART). */
    const int64_t n_tasks = (int64_t)S * hkv * max_parts;
    size_t n_part = (size_t)n_tasks * (size_t)g, n_acc, n_sc;
    if (!rg_mul_ok(n_part, (size_t)d + 2, &n_acc) || !rg_mul_ok((size_t)nt * (size_t)g, PART, &n_sc) ||
        n_acc > SIZE_MAX / sizeof(float) - n_sc)
        return rg_fail(RG_ERR_OVERFLOW, "rg_attn_decode: scratch size overflows");
    float *ws;
    RG_TRY(rg_cpu_scratch(be, (n_acc + n_sc) * sizeof(float), (void **)&ws));
    float *pm = ws, *pl = pm + n_part, *pacc = pl + n_part, *scores = pacc + n_part * (size_t)d;

#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < n_tasks; t++) {
        int32_t p = (int32_t)(t % max_parts), b = (int32_t)(t / max_parts / hkv);
        int32_t kvh = (int32_t)(t / max_parts % hkv);
        int32_t len = a->seq_lens_host[b], j0 = p * PART;
        if (j0 >= len) continue;
        int32_t j1 = len - j0 < PART ? len : j0 + PART;
        float *sc = scores + (size_t)rg_thread_id() * (size_t)g * PART;
        decode_part(a, q, kc, vc, b, kvh, j0, j1, sc, pm + t * g, pl + t * g, pacc + t * g * d);
    }

    /* Reduction over partitions: o = sum_p e^(m_p - M) acc_p / sum_p e^(m_p - M) l_p. */
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < (int64_t)S * h; bh++) {
        int32_t b = (int32_t)(bh / h), head = (int32_t)(bh % h), kvh = head / g, gi = head % g;
        int32_t len = a->seq_lens_host[b], np = (len + PART - 1) / PART;
        float *out = o + bh * d;
        memset(out, 0, sizeof(float) * (size_t)d);
        if (len <= 0) continue;
        int64_t t0 = ((int64_t)b * hkv + kvh) * max_parts;
        float M = -INFINITY, L = 0;
        for (int32_t p = 0; p < np; p++) M = fmaxf(M, pm[(t0 + p) * g + gi]);
        for (int32_t p = 0; p < np; p++) {
            int64_t i = (t0 + p) * g + gi;
            float w = expf(pm[i] - M);
            const float *ac = pacc + i * d;
            L += w * pl[i];
            for (int32_t c = 0; c < d; c++) out[c] += w * ac[c];
        }
        float inv = 1.0f / L;
        for (int32_t c = 0; c < d; c++) out[c] *= inv;
    }
    return RG_OK;
}

rg_status rg_cpu_kv_write(rg_backend *be, void *k_cache, void *v_cache, const void *k_, int32_t stride_k,
                          const void *v_, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row) {
    (void)be;
    const float *k = k_, *v = v_;
    float *kc = k_cache, *vc = v_cache;
    for (int64_t t = 0; t < T; t++) {
        memcpy(kc + (int64_t)slots[t] * row, k + t * stride_k, sizeof(float) * (size_t)row);
        memcpy(vc + (int64_t)slots[t] * row, v + t * stride_v, sizeof(float) * (size_t)row);
    }
    return RG_OK;
}

rg_status rg_cpu_attn_decode_append(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                    void *k_cache, void *v_cache, const void *k_, int32_t stride_k, const void *v_,
                                    int32_t stride_v) {
    const float *k = k_, *v = v_;
    const int32_t row = a->n_kv_heads * a->head_dim, bs = a->block_size;
    for (int32_t b = 0; b < a->n_seqs; b++) {
        int32_t j = a->seq_lens_host[b] - 1;
        if (j < 0) continue;
        /* the same slot rule as the kernel: block table entry of position j */
        int32_t slot = a->block_tables[(int64_t)b * a->max_blocks + j / bs] * bs + j % bs;
        RG_TRY(rg_cpu_kv_write(be, k_cache, v_cache, k + (int64_t)b * stride_k, stride_k, v + (int64_t)b * stride_v,
                               stride_v, &slot, 1, row));
    }
    return rg_cpu_attn_decode(be, a, o, q, k_cache, v_cache);
}
