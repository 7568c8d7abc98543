/* attention_decode.c — public decode attention (ragged.h section 9): check the
 * arguments against the KV cache and its current batch, then dispatch to the
 * backend's attn_decode op with the batch's device block table. Also the
 * library's own decode step entry rg_attn_decode_append (gen/kv_cache.h):
 * the new token's K/V written and attended over in one op. */
#include "gen/kv_cache.h"
#include "core/status.h"
#include <math.h>

/* The checks both entries share, and the op's arguments from the batch. */
static rg_status decode_args(const char *fn, rg_backend *be, const rg_kv_cache *kv, int32_t layer, int32_t n_heads,
                             float softmax_scale, const void *q, int32_t stride_q, void *o, rg_attn_decode_args *a) {
    if (!be || !kv) return rg_fail(RG_ERR_INVALID_ARG, "%s: backend or kv is NULL", fn);
    if (kv->be != be) return rg_fail(RG_ERR_INVALID_ARG, "%s: the kv cache belongs to another backend", fn);
    RG_TRY(rg_kv_check_batch(kv, fn));
    if (layer < 0 || layer >= kv->n_layers)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: layer %d outside [0, %d)", fn, layer, kv->n_layers);
    if (n_heads < 1 || n_heads % kv->n_kv_heads != 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_heads = %d must be a positive multiple of the cache's "
                       "n_kv_heads = %d", fn, n_heads, kv->n_kv_heads);
    int32_t d = kv->head_dim;
    if ((int64_t)n_heads * d > INT32_MAX)
        return rg_fail(RG_ERR_OVERFLOW, "%s: n_heads * head_dim = %lld overflows", fn, (long long)n_heads * d);
    if (stride_q < 0 || (stride_q && stride_q < n_heads * d))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: stride_q = %d must be 0 or at least h * d = %d", fn, stride_q,
                       n_heads * d);
    if (!(softmax_scale <= 0 || isfinite(softmax_scale)))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: softmax_scale is not finite", fn);
    if (!q || !o) return rg_fail(RG_ERR_INVALID_ARG, "%s: q or o is NULL", fn);
    if (!be->ops->attn_decode)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: the %s backend has no decode attention op", fn, be->ops->name);
    *a = (rg_attn_decode_args){
        .n_seqs = kv->b_seqs,
        .n_heads = n_heads,
        .n_kv_heads = kv->n_kv_heads,
        .head_dim = d,
        .block_size = kv->block_size,
        .max_blocks = kv->b_max_blocks,
        .max_seq_len = kv->b_max_len,
        .stride_q = stride_q ? stride_q : n_heads * d,
        .scale = softmax_scale > 0 ? softmax_scale : 1.0f / sqrtf((float)d),
        .block_tables = kv->d_buf,
        .seq_lens = kv->d_buf + (size_t)kv->b_seqs * kv->b_max_blocks,
        .seq_lens_host = kv->h_buf + (size_t)kv->b_seqs * kv->b_max_blocks,
    };
    return RG_OK;
}

rg_status rg_attn_decode(rg_backend *be, const rg_kv_cache *kv, int32_t layer, int32_t n_heads,
                         float softmax_scale, const void *q, int32_t stride_q, void *o) {
    rg_attn_decode_args a;
    RG_TRY(decode_args("rg_attn_decode", be, kv, layer, n_heads, softmax_scale, q, stride_q, o, &a));
    return be->ops->attn_decode(be, &a, o, q, rg_kv_pool(kv, layer, 0), rg_kv_pool(kv, layer, 1));
}

rg_status rg_attn_decode_append(rg_backend *be, rg_kv_cache *kv, int32_t layer, int32_t n_heads, float softmax_scale,
                                const void *q, int32_t stride_q, const void *k, int32_t stride_k, const void *v,
                                int32_t stride_v, void *o) {
    const char *fn = "rg_attn_decode_append";
    rg_attn_decode_args a;
    RG_TRY(decode_args(fn, be, kv, layer, n_heads, softmax_scale, q, stride_q, o, &a));
    const int32_t row = kv->n_kv_heads * kv->head_dim;
    if (stride_k < 0 || stride_v < 0 || (stride_k && stride_k < row) || (stride_v && stride_v < row))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: strides (%d, %d) must be 0 or at least h_kv * d = %d", fn, stride_k,
                       stride_v, row);
    if (!k || !v) return rg_fail(RG_ERR_INVALID_ARG, "%s: k or v is NULL", fn);
    /* A decode batch: token b of the batch is sequence b's last position
     * (the op derives the slot from the table, kv_write takes the batch's). */
    const int32_t S = kv->b_seqs, mb = kv->b_max_blocks, bs = kv->block_size;
    const int32_t *table = kv->h_buf, *lens = table + (size_t)S * mb, *slots = lens + S;
    if (kv->b_tokens != S)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: the batch brings %d new tokens for %d sequences, expected one each",
                       fn, kv->b_tokens, S);
    for (int32_t b = 0; b < S; b++) {
        int32_t j = lens[b] - 1;
        if (j < 0 || slots[b] != table[(size_t)b * mb + j / bs] * bs + j % bs)
            return rg_fail(RG_ERR_INVALID_ARG, "%s: new token %d is not the last position of sequence %d of the "
                           "batch (length %d)", fn, b, b, lens[b]);
    }
    stride_k = stride_k ? stride_k : row;
    stride_v = stride_v ? stride_v : row;
    void *kc = rg_kv_pool(kv, layer, 0), *vc = rg_kv_pool(kv, layer, 1);
    if (be->ops->attn_decode_append && (be->decode_append_max_seqs <= 0 || S <= be->decode_append_max_seqs))
        return be->ops->attn_decode_append(be, &a, o, q, kc, vc, k, stride_k, v, stride_v);
    RG_TRY(rg_kv_cache_write(kv, layer, k, stride_k, v, stride_v));
    return be->ops->attn_decode(be, &a, o, q, kc, vc);
}
