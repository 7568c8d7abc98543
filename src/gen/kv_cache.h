/* kv_cache.h — the paged KV cache's state, private to the library: the block
 * pools, the per-sequence block lists, the free list and the current step's
 * batch (host tables and their device copy), read by rg_attn_decode. */
#ifndef RG_GEN_KV_CACHE_H
#define RG_GEN_KV_CACHE_H
#include "backend.h"

typedef struct rg_kv_seq {
    int32_t id;
    int32_t len;           /* tokens written or appended */
    int32_t n_blocks;      /* blocks owned (>= ceil(len / block_size), more if reserved) */
    int32_t cap;           /* capacity of blocks */
    int32_t *blocks;       /* (cap) block indices, first n_blocks valid */
} rg_kv_seq;

struct rg_kv_cache {
    rg_backend *be;
    int32_t n_layers, n_kv_heads, head_dim, block_size, n_blocks;
    size_t layer_elems;    /* n_blocks * block_size * h_kv * d */
    void *pool;            /* (n_layers, 2, n_blocks, block_size, h_kv, d) act dtype, backend memory */
    int32_t *free_list;    /* (n_blocks) stack of free blocks, first n_free valid */
    int32_t n_free;
    rg_kv_seq *seqs;       /* (seq_cap) live sequences, first n_seqs valid, unordered */
    int32_t n_seqs, seq_cap;
    uint64_t version;      /* bumped by every change to the sequences */

    /* The step's batch (rg_kv_cache_set_batch); valid while batch_version == version. */
    bool has_batch;
    uint64_t batch_version;
    int32_t b_seqs, b_tokens, b_max_blocks, b_max_len;
    int32_t *h_buf;        /* host: table (b_seqs, b_max_blocks), lens (b_seqs), slots (b_tokens) */
    size_t h_cap;          /* int32 elements of h_buf */
    int32_t *d_buf;        /* backend copy of h_buf */
    size_t d_cap;
    int32_t *idx;          /* (idx_cap) host scratch: the step's sequence indices, kept between steps */
    int32_t idx_cap;
};

/* The K or V pool of a layer (which = 0 for K, 1 for V): (n_blocks, block_size, h_kv, d). */
void *rg_kv_pool(const rg_kv_cache *kv, int32_t layer, int which);
/* rg_kv_cache_set_batch with block tables at least min_blocks wide: a caller
 * that replays recorded ops (a decode graph) fixes the width, so that the
 * tables' layout in d_buf depends on the batch size only. */
rg_status rg_kv_set_batch_wide(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids, const int32_t *cu_new,
                               int32_t min_blocks);
/* The decode step's kv_write + rg_attn_decode in one call: the batch brings
 * one new token per sequence (its last position, length >= 1); k, v rows
 * (h_kv * d, stride_k, stride_v apart; 0 = packed) are written to their slots
 * of this layer and o (n_seqs, n_heads, d) attends over the whole cache,
 * them included (backend.h, attn_decode_append; composed from the two ops
 * where the backend lacks it). Arguments as rg_attn_decode's. */
rg_status rg_attn_decode_append(rg_backend *be, rg_kv_cache *kv, int32_t layer, int32_t n_heads, float softmax_scale,
                                const void *q, int32_t stride_q, const void *k, int32_t stride_k, const void *v,
                                int32_t stride_v, void *o);
/* Checks that the batch exists and is current, naming fn in the message. */
rg_status rg_kv_check_batch(const rg_kv_cache *kv, const char *fn);

#endif
