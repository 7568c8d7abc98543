/* kv_util.h — helpers for tests of the paged KV cache (header-only). */
#ifndef RG_TESTS_KV_UTIL_H
#define RG_TESTS_KV_UTIL_H
#include "ragged.h"
#include "core/rng.h"

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
#endif
