/* attention.c — public varlen attention entry points (ragged.h section 3):
 * validate the description once, move cu_seqlens to the backend, dispatch. */
#include "backend.h"
#include "core/status.h"
#include <math.h>

double rg_attn_flops_forward(int32_t batch, const int32_t *cu_q, const int32_t *cu_k,
                             int32_t n_heads, int32_t head_dim, bool causal) {
    double f = 0;
    for (int32_t b = 0; b < batch; b++)
        f += (double)(cu_q[b + 1] - cu_q[b]) * (double)(cu_k[b + 1] - cu_k[b]);
    return 4.0 * f * n_heads * head_dim * (causal ? 0.5 : 1.0);
}

static rg_status check_cu(const char *fn, const char *name, const int32_t *cu, int32_t batch,
                          int32_t max_seqlen) {
    if (!cu) return rg_fail(RG_ERR_INVALID_ARG, "%s: %s is NULL", fn, name);
    if (cu[0] != 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: %s[0] = %d, expected 0", fn, name, cu[0]);
    for (int32_t b = 0; b < batch; b++) {
        int32_t len = cu[b + 1] - cu[b];
        if (cu[b + 1] < cu[b])
            return rg_fail(RG_ERR_INVALID_ARG, "%s: %s decreases at index %d (%d -> %d)", fn, name,
                           b + 1, cu[b], cu[b + 1]);
        if (len > max_seqlen)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d has length %d in %s, above max_seqlen %d",
                           fn, b, len, name, max_seqlen);
    }
    return RG_OK;
}

/* Fills a from desc after checking every field; fn names the caller in messages. */
static rg_status make_args(rg_backend *be, const rg_attn_desc *d, const char *fn, rg_attn_args *a) {
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "%s: backend is NULL", fn);
    if (!d) return rg_fail(RG_ERR_INVALID_ARG, "%s: desc is NULL", fn);
    if (d->batch < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: batch = %d, expected >= 1", fn, d->batch);
    if (d->n_heads < 1 || d->n_kv_heads < 1 || d->n_heads % d->n_kv_heads != 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_heads = %d must be a positive multiple of n_kv_heads = %d",
                       fn, d->n_heads, d->n_kv_heads);
    if (d->head_dim < 8 || d->head_dim > 256 || d->head_dim % 8 != 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: head_dim = %d, expected a multiple of 8 in [8, 256]",
                       fn, d->head_dim);
    if (d->max_seqlen_q < 0 || d->max_seqlen_k < 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: max_seqlen_q/k must be >= 0 (got %d, %d)", fn,
                       d->max_seqlen_q, d->max_seqlen_k);
    if (!(d->softmax_scale <= 0 || isfinite(d->softmax_scale)))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: softmax_scale is not finite", fn);
    if (d->algo < RG_ATTN_AUTO || d->algo > RG_ATTN_FLASH)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown algo %d", fn, (int)d->algo);
    if (d->mask_kind < RG_ATTN_MASK_NONE || d->mask_kind > RG_ATTN_MASK_ADDITIVE)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown mask_kind %d", fn, (int)d->mask_kind);
    if (d->mask_kind != RG_ATTN_MASK_NONE && !d->mask)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: mask_kind is set but mask is NULL", fn);
    if (d->mask_kind != RG_ATTN_MASK_NONE && d->algo != RG_ATTN_REFERENCE)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: an explicit mask needs algo = RG_ATTN_REFERENCE", fn);
    if (d->algo == RG_ATTN_REFERENCE && be->kind != RG_BACKEND_CPU)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: the reference algorithm runs on the CPU backend only", fn);
    if (d->stride_q < 0 || d->stride_k < 0 || d->stride_v < 0 ||
        (d->stride_q && d->stride_q < d->n_heads * d->head_dim) ||
        (d->stride_k && d->stride_k < d->n_kv_heads * d->head_dim) ||
        (d->stride_v && d->stride_v < d->n_kv_heads * d->head_dim))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: strides (%d, %d, %d) must be 0 or at least a token's row "
                       "(%d for q, %d for k and v)", fn, d->stride_q, d->stride_k, d->stride_v,
                       d->n_heads * d->head_dim, d->n_kv_heads * d->head_dim);
    RG_TRY(check_cu(fn, "cu_seqlens_q", d->cu_seqlens_q, d->batch, d->max_seqlen_q));
    RG_TRY(check_cu(fn, "cu_seqlens_k", d->cu_seqlens_k, d->batch, d->max_seqlen_k));
    a->desc = *d;
    a->scale = d->softmax_scale > 0 ? d->softmax_scale : 1.0f / sqrtf((float)d->head_dim);
    if (!a->desc.stride_q) a->desc.stride_q = d->n_heads * d->head_dim;
    if (!a->desc.stride_k) a->desc.stride_k = d->n_kv_heads * d->head_dim;
    if (!a->desc.stride_v) a->desc.stride_v = d->n_kv_heads * d->head_dim;
    a->total_q = d->cu_seqlens_q[d->batch];
    a->total_k = d->cu_seqlens_k[d->batch];
    a->cu_seqlens_q_dev = d->cu_seqlens_q;
    a->cu_seqlens_k_dev = d->cu_seqlens_k;
    return RG_OK;
}

/* Copies cu_seqlens to the backend when it is not host memory. The public ops
 * take host cu_seqlens; the model keeps its own device copies (once per step). */
static rg_status upload_cu(rg_backend *be, rg_attn_args *a, int32_t **dev) {
    *dev = NULL;
    if (be->kind == RG_BACKEND_CPU) return RG_OK;
    size_t n = (size_t)a->desc.batch + 1;
    RG_TRY(rg_buffer_alloc(be, 2 * n * sizeof(int32_t), (void **)dev));
    rg_status s = rg_buffer_upload(be, *dev, a->desc.cu_seqlens_q, n * sizeof(int32_t));
    if (s == RG_OK) s = rg_buffer_upload(be, *dev + n, a->desc.cu_seqlens_k, n * sizeof(int32_t));
    if (s != RG_OK) { rg_buffer_free(be, *dev); *dev = NULL; return s; }
    a->cu_seqlens_q_dev = *dev;
    a->cu_seqlens_k_dev = *dev + n;
    return RG_OK;
}

rg_status rg_attn_forward(rg_backend *be, const rg_attn_desc *desc, const void *q, const void *k,
                          const void *v, void *o, float *lse) {
    rg_attn_args a;
    RG_TRY(make_args(be, desc, "rg_attn_forward", &a));
    if ((a.total_q && (!q || !o)) || (a.total_k && (!k || !v)))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_attn_forward: q, k, v or o is NULL");
    int32_t *dev;
    RG_TRY(upload_cu(be, &a, &dev));
    rg_status s = be->ops->attn_forward(be, &a, q, k, v, o, lse);
    if (dev) { rg_status s2 = rg_backend_sync(be); if (s == RG_OK) s = s2; rg_buffer_free(be, dev); }
    return s;
}

rg_status rg_attn_backward(rg_backend *be, const rg_attn_desc *desc, const void *q, const void *k,
                           const void *v, const void *o, const float *lse, const void *dout,
                           void *dq, void *dk, void *dv) {
    rg_attn_args a;
    RG_TRY(make_args(be, desc, "rg_attn_backward", &a));
    if ((a.total_q && (!q || !o || !lse || !dout || !dq)) || (a.total_k && (!k || !v || !dk || !dv)))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_attn_backward: an input or output pointer is NULL");
    int32_t *dev;
    RG_TRY(upload_cu(be, &a, &dev));
    rg_status s = be->ops->attn_backward(be, &a, q, k, v, o, lse, dout, dq, dk, dv);
    if (dev) { rg_status s2 = rg_backend_sync(be); if (s == RG_OK) s = s2; rg_buffer_free(be, dev); }
    return s;
}
