/* kv_util.h — helpers for tests of the paged KV cache (header-only). */
#ifndef RG_TESTS_KV_UTIL_H
#define RG_TESTS_KV_UTIL_H
#include "ragged.h"
#include "core/rng.h"
#include <string.h>

/* Leaves the pool's free list shuffled: throw-away sequences grab about
 * n_blocks blocks, a random half of them is released, then the rest, so the
 * next sequences get blocks in no particular order. */
static inline void kvt_fragment(rg_rng *r, rg_kv_cache *kv, int32_t n_blocks) {
    int32_t bs = rg_kv_cache_block_size(kv), ids[64], n = 0, left = n_blocks;
    while (left > 0 && n < 64) {
        int32_t nb = 1 + (int32_t)rg_rng_below(r, 4), len;
        if (nb > left) nb = left;
        len = nb * bs;
        ids[n] = 1000000 + n;
        if (rg_kv_cache_add_seq(kv, ids[n]) != RG_OK || rg_kv_cache_append(kv, 1, &ids[n], &len) != RG_OK) break;
        left -= nb;
        n++;
    }
    for (int32_t i = 0; i < n; i++)
        if (rg_rng_below(r, 2)) rg_kv_cache_remove_seq(kv, ids[i]);
    for (int32_t i = 0; i < n; i++)
        if (rg_kv_cache_seq_len(kv, ids[i]) >= 0) rg_kv_cache_remove_seq(kv, ids[i]);
}

/* koff (n + 1) = the prefix sum of lens; returns the blocks of block_size
 * the n sequences need. */
static inline int32_t kvt_offsets(int32_t n, const int32_t *lens, int32_t block_size, int32_t *koff) {
    int32_t need = 0;
    koff[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        koff[b + 1] = koff[b] + lens[b];
        need += (lens[b] + block_size - 1) / block_size;
    }
    return need;
}

/* A prefill batch: sequences ids[0..n) enter the cache holding the first
 * lens[i] tokens of seqs[i], which are packed into tokens with cu (n + 1)
 * offsets, as rg_model_forward_kv takes them. */
static inline rg_status kvt_prefill(rg_kv_cache *kv, int32_t n, const int32_t *ids, int32_t *const *seqs,
                                    const int32_t *lens, int32_t *cu, int32_t *tokens) {
    cu[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        rg_status s = rg_kv_cache_add_seq(kv, ids[i]);
        if (s != RG_OK) return s;
        memcpy(tokens + cu[i], seqs[i], sizeof(int32_t) * (size_t)lens[i]);
        cu[i + 1] = cu[i] + lens[i];
    }
    return rg_kv_cache_append(kv, n, ids, lens);
}

/* A decode batch (n <= 64): every sequence brings its next token of seqs[i]
 * (at lens[i], which grows by one) into dtok, with cu offsets 0..n. */
static inline rg_status kvt_decode_step(rg_kv_cache *kv, int32_t n, const int32_t *ids, int32_t *const *seqs,
                                        int32_t *lens, int32_t *cu, int32_t *dtok) {
    int32_t ones[64];
    if (n > 64) return RG_ERR_INVALID_ARG;
    for (int32_t i = 0; i < n; i++) {
        ones[i] = 1;
        cu[i] = i;
        dtok[i] = seqs[i][lens[i]++];
    }
    cu[n] = n;
    return rg_kv_cache_append(kv, n, ids, ones);
}
#endif
