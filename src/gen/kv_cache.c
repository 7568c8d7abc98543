/* kv_cache.c — the paged KV cache (ragged.h section 9): block pools in backend
 * memory, per-sequence block lists, a free list, and the step's batch tables
 * (block table, lengths, slot mapping) built on the host and uploaded once. */
#include "gen/kv_cache.h"
#include "core/alloc.h"
#include "core/status.h"
#include <string.h>

static int32_t blocks_for(int64_t len, int32_t bs) { return (int32_t)((len + bs - 1) / bs); }

static int32_t find_seq(const rg_kv_cache *kv, int32_t id) {
    for (int32_t i = 0; i < kv->n_seqs; i++)
        if (kv->seqs[i].id == id) return i;
    return -1;
}

void *rg_kv_pool(const rg_kv_cache *kv, int32_t layer, int which) {
    size_t esize = rg_dtype_size(rg_backend_act_dtype(kv->be));
    return (char *)kv->pool + ((size_t)layer * 2 + (size_t)which) * kv->layer_elems * esize;
}

rg_status rg_kv_check_batch(const rg_kv_cache *kv, const char *fn) {
    if (!kv->has_batch)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: no batch set (call rg_kv_cache_set_batch first)", fn);
    if (kv->batch_version != kv->version)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: the batch is stale (sequences changed after "
                       "rg_kv_cache_set_batch; set it again)", fn);
    return RG_OK;
}

rg_status rg_kv_cache_init(rg_backend *be, int32_t n_layers, int32_t n_kv_heads, int32_t head_dim,
                           int32_t block_size, int32_t n_blocks, rg_kv_cache **out) {
    const char *fn = "rg_kv_cache_init";
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "%s: backend is NULL", fn);
    if (n_layers < 1 || n_kv_heads < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_layers = %d, n_kv_heads = %d, expected >= 1", fn,
                       n_layers, n_kv_heads);
    if (head_dim < 8 || head_dim > 256 || head_dim % 8 != 0)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: head_dim = %d, expected a multiple of 8 in [8, 256]", fn,
                       head_dim);
    if (block_size < 1 || n_blocks < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: block_size = %d, n_blocks = %d, expected >= 1", fn,
                       block_size, n_blocks);
    if ((int64_t)block_size * n_blocks > INT32_MAX)
        return rg_fail(RG_ERR_OVERFLOW, "%s: n_blocks * block_size = %lld slots, above INT32_MAX", fn,
                       (long long)block_size * n_blocks);
    size_t elems, bytes;
    size_t esize = rg_dtype_size(rg_backend_act_dtype(be));
    if (!rg_mul_ok((size_t)n_blocks * (size_t)block_size, (size_t)n_kv_heads * (size_t)head_dim, &elems) ||
        !rg_mul_ok(elems, 2 * (size_t)n_layers, &bytes) || !rg_mul_ok(bytes, esize, &bytes))
        return rg_fail(RG_ERR_OVERFLOW, "%s: the pools' size overflows a size_t", fn);

    rg_kv_cache *kv;
    RG_TRY(rg_calloc((void **)&kv, 1, sizeof *kv, "kv cache"));
    kv->be = be;
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->head_dim = head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->layer_elems = elems;
    rg_status s = rg_alloc((void **)&kv->free_list, (size_t)n_blocks, sizeof(int32_t), "kv cache free list");
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, &kv->pool);
    if (s != RG_OK) { rg_kv_cache_free(kv); return s; }
    /* Stack order: block 0 is handed out first. */
    for (int32_t i = 0; i < n_blocks; i++) kv->free_list[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;
    *out = kv;
    return RG_OK;
}

void rg_kv_cache_free(rg_kv_cache *kv) {
    if (!kv) return;
    for (int32_t i = 0; i < kv->n_seqs; i++) rg_free(kv->seqs[i].blocks);
    rg_free(kv->seqs);
    rg_free(kv->free_list);
    rg_free(kv->h_buf);
    rg_free(kv->idx);
    rg_buffer_free(kv->be, kv->d_buf);
    rg_buffer_free(kv->be, kv->pool);
    rg_free(kv);
}

rg_status rg_kv_cache_add_seq(rg_kv_cache *kv, int32_t seq_id) {
    if (!kv) return rg_fail(RG_ERR_INVALID_ARG, "rg_kv_cache_add_seq: kv is NULL");
    if (seq_id < 0) return rg_fail(RG_ERR_INVALID_ARG, "rg_kv_cache_add_seq: sequence id %d is negative", seq_id);
    if (find_seq(kv, seq_id) >= 0)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_kv_cache_add_seq: sequence %d already exists", seq_id);
    if (kv->n_seqs == kv->seq_cap) {
        int32_t cap = kv->seq_cap ? kv->seq_cap * 2 : 16;
        rg_kv_seq *n;
        RG_TRY(rg_alloc((void **)&n, (size_t)cap, sizeof *n, "kv cache sequences"));
        if (kv->n_seqs) memcpy(n, kv->seqs, sizeof *n * (size_t)kv->n_seqs);
        rg_free(kv->seqs);
        kv->seqs = n;
        kv->seq_cap = cap;
    }
    kv->seqs[kv->n_seqs++] = (rg_kv_seq){.id = seq_id};
    kv->version++;
    return RG_OK;
}

rg_status rg_kv_cache_remove_seq(rg_kv_cache *kv, int32_t seq_id) {
    if (!kv) return rg_fail(RG_ERR_INVALID_ARG, "rg_kv_cache_remove_seq: kv is NULL");
    int32_t i = find_seq(kv, seq_id);
    if (i < 0) return rg_fail(RG_ERR_INVALID_ARG, "rg_kv_cache_remove_seq: unknown sequence %d", seq_id);
    rg_kv_seq *sq = &kv->seqs[i];
    for (int32_t j = sq->n_blocks - 1; j >= 0; j--) kv->free_list[kv->n_free++] = sq->blocks[j];
    rg_free(sq->blocks);
    kv->seqs[i] = kv->seqs[--kv->n_seqs];
    kv->version++;
    return RG_OK;
}

/* Makes sq->blocks hold at least n entries (no observable change). */
static rg_status ensure_cap(rg_kv_seq *sq, int32_t n) {
    if (n <= sq->cap) return RG_OK;
    int32_t cap = sq->cap ? sq->cap : 4;
    while (cap < n) cap = cap > INT32_MAX / 2 ? n : cap * 2;
    int32_t *b;
    RG_TRY(rg_alloc((void **)&b, (size_t)cap, sizeof(int32_t), "kv cache block list"));
    if (sq->n_blocks) memcpy(b, sq->blocks, sizeof(int32_t) * (size_t)sq->n_blocks);
    rg_free(sq->blocks);
    sq->blocks = b;
    sq->cap = cap;
    return RG_OK;
}

/* Blocks sequence sq lacks to hold n_more more tokens (may be <= 0). */
static int64_t blocks_needed(const rg_kv_cache *kv, const rg_kv_seq *sq, int64_t n_more) {
    return (int64_t)blocks_for((int64_t)sq->len + n_more, kv->block_size) - sq->n_blocks;
}

static void take_blocks(rg_kv_cache *kv, rg_kv_seq *sq, int64_t need) {
    for (int64_t j = 0; j < need; j++) sq->blocks[sq->n_blocks++] = kv->free_list[--kv->n_free];
}

rg_status rg_kv_cache_reserve(rg_kv_cache *kv, int32_t seq_id, int32_t n_tokens) {
    const char *fn = "rg_kv_cache_reserve";
    if (!kv) return rg_fail(RG_ERR_INVALID_ARG, "%s: kv is NULL", fn);
    int32_t i = find_seq(kv, seq_id);
    if (i < 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown sequence %d", fn, seq_id);
    if (n_tokens < 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: n_tokens = %d, expected >= 0", fn, n_tokens);
    rg_kv_seq *sq = &kv->seqs[i];
    int64_t need = blocks_needed(kv, sq, n_tokens);
    if (need <= 0) return RG_OK;
    if (need > kv->n_free)
        return rg_fail(RG_ERR_EXHAUSTED, "kv cache: sequence %d needs %lld more blocks, %d free of %d",
                       seq_id, (long long)need, kv->n_free, kv->n_blocks);
    RG_TRY(ensure_cap(sq, sq->n_blocks + (int32_t)need));
    take_blocks(kv, sq, need);
    kv->version++;
    return RG_OK;
}

/* Checks n sequence ids: non-NULL, known, distinct; idx (n) receives their slots. */
static rg_status lookup_ids(const rg_kv_cache *kv, const char *fn, int32_t n, const int32_t *ids, int32_t *idx) {
    for (int32_t b = 0; b < n; b++) {
        idx[b] = find_seq(kv, ids[b]);
        if (idx[b] < 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown sequence %d (index %d)", fn, ids[b], b);
        for (int32_t c = 0; c < b; c++)
            if (idx[c] == idx[b])
                return rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d appears twice (indices %d and %d)", fn,
                               ids[b], c, b);
    }
    return RG_OK;
}

/* kv->idx with room for n indices (grown, never shrunk: a step allocates
 * only when its batch is the largest so far). */
static rg_status idx_scratch(rg_kv_cache *kv, int32_t n, int32_t **out) {
    if (n > kv->idx_cap) {
        int32_t *p;
        RG_TRY(rg_alloc((void **)&p, (size_t)n, sizeof(int32_t), "kv cache batch indices"));
        rg_free(kv->idx);
        kv->idx = p;
        kv->idx_cap = n;
    }
    *out = kv->idx;
    return RG_OK;
}

rg_status rg_kv_cache_append(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids, const int32_t *n_new) {
    const char *fn = "rg_kv_cache_append";
    if (!kv || !seq_ids || !n_new) return rg_fail(RG_ERR_INVALID_ARG, "%s: kv, seq_ids or n_new is NULL", fn);
    if (n_seqs < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: n_seqs = %d, expected >= 1", fn, n_seqs);
    int32_t *idx;
    RG_TRY(idx_scratch(kv, n_seqs, &idx));
    rg_status s = lookup_ids(kv, fn, n_seqs, seq_ids, idx);
    int64_t total = 0;
    for (int32_t b = 0; s == RG_OK && b < n_seqs; b++)
        if (n_new[b] < 0) s = rg_fail(RG_ERR_INVALID_ARG, "%s: n_new[%d] = %d, expected >= 0", fn, b, n_new[b]);
    for (int32_t b = 0; s == RG_OK && b < n_seqs; b++) {
        int64_t need = blocks_needed(kv, &kv->seqs[idx[b]], n_new[b]);
        if (need <= 0) continue;
        if (total + need > kv->n_free) {
            int64_t asked = total;
            for (int32_t c = b; c < n_seqs; c++) {
                int64_t nc = blocks_needed(kv, &kv->seqs[idx[c]], n_new[c]);
                if (nc > 0) asked += nc;
            }
            s = rg_fail(RG_ERR_EXHAUSTED, "kv cache: sequence %d needs %lld more blocks, %lld free of %d "
                        "(the batch of %d sequences asks %lld blocks, %d free)", seq_ids[b], (long long)need,
                        (long long)(kv->n_free - total), kv->n_blocks, n_seqs, (long long)asked, kv->n_free);
            break;
        }
        total += need;
    }
    /* Growing the block lists first keeps an out-of-memory failure harmless. */
    for (int32_t b = 0; s == RG_OK && b < n_seqs; b++) {
        rg_kv_seq *sq = &kv->seqs[idx[b]];
        int64_t need = blocks_needed(kv, sq, n_new[b]);
        if (need > 0) s = ensure_cap(sq, sq->n_blocks + (int32_t)need);
    }
    if (s == RG_OK) {
        for (int32_t b = 0; b < n_seqs; b++) {
            rg_kv_seq *sq = &kv->seqs[idx[b]];
            int64_t need = blocks_needed(kv, sq, n_new[b]);
            if (need > 0) take_blocks(kv, sq, need);
            sq->len += n_new[b];
        }
        kv->version++;
    }
    return s;
}

int32_t rg_kv_cache_seq_len(const rg_kv_cache *kv, int32_t seq_id) {
    int32_t i = kv ? find_seq(kv, seq_id) : -1;
    return i < 0 ? -1 : kv->seqs[i].len;
}

int32_t rg_kv_cache_n_free_blocks(const rg_kv_cache *kv) { return kv ? kv->n_free : 0; }
int32_t rg_kv_cache_n_blocks(const rg_kv_cache *kv) { return kv ? kv->n_blocks : 0; }
int32_t rg_kv_cache_block_size(const rg_kv_cache *kv) { return kv ? kv->block_size : 0; }

rg_status rg_kv_cache_seq_blocks(const rg_kv_cache *kv, int32_t seq_id, int32_t cap, int32_t *blocks,
                                 int32_t *n_out) {
    const char *fn = "rg_kv_cache_seq_blocks";
    if (!kv || !n_out || cap < 0 || (cap > 0 && !blocks))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: kv or n_out is NULL, or cap = %d without blocks", fn, cap);
    int32_t i = find_seq(kv, seq_id);
    if (i < 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: unknown sequence %d", fn, seq_id);
    const rg_kv_seq *sq = &kv->seqs[i];
    int32_t n = sq->n_blocks < cap ? sq->n_blocks : cap;
    if (n) memcpy(blocks, sq->blocks, sizeof(int32_t) * (size_t)n);
    *n_out = sq->n_blocks;
    return RG_OK;
}

/* Fills table (n, max_blocks) (-1 padding) and lens (n) for sequences at idx. */
static void fill_table(const rg_kv_cache *kv, int32_t n, const int32_t *idx, int32_t max_blocks,
                       int32_t *table, int32_t *lens) {
    for (int32_t b = 0; b < n; b++) {
        const rg_kv_seq *sq = &kv->seqs[idx[b]];
        int32_t nb = blocks_for(sq->len, kv->block_size);
        int32_t *row = table + (int64_t)b * max_blocks;
        if (nb) memcpy(row, sq->blocks, sizeof(int32_t) * (size_t)nb);
        for (int32_t j = nb; j < max_blocks; j++) row[j] = -1;
        lens[b] = sq->len;
    }
}

rg_status rg_kv_cache_block_table(const rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids,
                                  int32_t max_blocks, int32_t *table, int32_t *lens) {
    const char *fn = "rg_kv_cache_block_table";
    if (!kv || !seq_ids || !table || !lens)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: kv, seq_ids, table or lens is NULL", fn);
    if (n_seqs < 1 || max_blocks < 1)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: n_seqs = %d, max_blocks = %d, expected >= 1", fn, n_seqs,
                       max_blocks);
    int32_t *idx;
    RG_TRY(rg_alloc((void **)&idx, (size_t)n_seqs, sizeof(int32_t), "rg_kv_cache_block_table indices"));
    rg_status s = lookup_ids(kv, fn, n_seqs, seq_ids, idx);
    for (int32_t b = 0; s == RG_OK && b < n_seqs; b++) {
        int32_t nb = blocks_for(kv->seqs[idx[b]].len, kv->block_size);
        if (nb > max_blocks)
            s = rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d spans %d blocks, above max_blocks = %d", fn,
                        seq_ids[b], nb, max_blocks);
    }
    if (s == RG_OK) fill_table(kv, n_seqs, idx, max_blocks, table, lens);
    rg_free(idx);
    return s;
}

rg_status rg_kv_cache_set_batch(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids, const int32_t *cu_new) {
    return rg_kv_set_batch_wide(kv, n_seqs, seq_ids, cu_new, 1);
}

rg_status rg_kv_set_batch_wide(rg_kv_cache *kv, int32_t n_seqs, const int32_t *seq_ids, const int32_t *cu_new,
                               int32_t min_blocks) {
    const char *fn = "rg_kv_cache_set_batch";
    if (!kv || !seq_ids || !cu_new) return rg_fail(RG_ERR_INVALID_ARG, "%s: kv, seq_ids or cu_new is NULL", fn);
    if (n_seqs < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: n_seqs = %d, expected >= 1", fn, n_seqs);
    if (cu_new[0] != 0) return rg_fail(RG_ERR_INVALID_ARG, "%s: cu_new[0] = %d, expected 0", fn, cu_new[0]);
    if (min_blocks < 1) return rg_fail(RG_ERR_INVALID_ARG, "%s: min_blocks = %d, expected >= 1", fn, min_blocks);
    int32_t *idx;
    RG_TRY(idx_scratch(kv, n_seqs, &idx));
    rg_status s = lookup_ids(kv, fn, n_seqs, seq_ids, idx);
    int32_t max_blocks = min_blocks, max_len = 0;
    for (int32_t b = 0; s == RG_OK && b < n_seqs; b++) {
        const rg_kv_seq *sq = &kv->seqs[idx[b]];
        int64_t nn = (int64_t)cu_new[b + 1] - cu_new[b];
        if (nn < 0)
            s = rg_fail(RG_ERR_INVALID_ARG, "%s: cu_new decreases at index %d (%d -> %d)", fn, b + 1,
                        cu_new[b], cu_new[b + 1]);
        else if (nn > sq->len)
            s = rg_fail(RG_ERR_INVALID_ARG, "%s: sequence %d brings %lld new tokens but has length %d "
                        "(append them first)", fn, seq_ids[b], (long long)nn, sq->len);
        int32_t nb = blocks_for(sq->len, kv->block_size);
        if (nb > max_blocks) max_blocks = nb;
        if (sq->len > max_len) max_len = sq->len;
    }
    int32_t T = s == RG_OK ? cu_new[n_seqs] : 0;
    size_t need = 0;
    if (s == RG_OK && (!rg_mul_ok((size_t)n_seqs, (size_t)max_blocks + 1, &need) || need > SIZE_MAX - (size_t)T))
        s = rg_fail(RG_ERR_OVERFLOW, "%s: the batch tables' size overflows", fn);
    need += (size_t)T;
    /* New buffers are allocated before the old ones go, so that a failure keeps the previous batch. */
    if (s == RG_OK && need > kv->h_cap) {
        int32_t *h = NULL, *d = NULL;
        s = rg_alloc((void **)&h, need, sizeof(int32_t), "kv cache batch tables");
        if (s == RG_OK) s = rg_buffer_alloc(kv->be, need * sizeof(int32_t), (void **)&d);
        if (s != RG_OK) {
            rg_free(h);
        } else {
            rg_free(kv->h_buf);
            rg_buffer_free(kv->be, kv->d_buf);
            kv->h_buf = h;
            kv->d_buf = d;
            kv->h_cap = kv->d_cap = need;
        }
    }
    if (s == RG_OK) {
        int32_t *table = kv->h_buf, *lens = table + (size_t)n_seqs * max_blocks, *slots = lens + n_seqs;
        fill_table(kv, n_seqs, idx, max_blocks, table, lens);
        for (int32_t b = 0; b < n_seqs; b++) {
            const rg_kv_seq *sq = &kv->seqs[idx[b]];
            int32_t nn = cu_new[b + 1] - cu_new[b], pos0 = sq->len - nn;
            for (int32_t i = 0; i < nn; i++) {
                int32_t pos = pos0 + i;
                slots[cu_new[b] + i] = sq->blocks[pos / kv->block_size] * kv->block_size + pos % kv->block_size;
            }
        }
        kv->has_batch = false;  /* the device copy is being replaced */
        s = rg_buffer_upload(kv->be, kv->d_buf, kv->h_buf, need * sizeof(int32_t));
        if (s == RG_OK) {
            kv->has_batch = true;
            kv->batch_version = kv->version;
            kv->b_seqs = n_seqs;
            kv->b_tokens = T;
            kv->b_max_blocks = max_blocks;
            kv->b_max_len = max_len;
        }
    }
    return s;
}

rg_status rg_kv_cache_write(rg_kv_cache *kv, int32_t layer, const void *k, int32_t stride_k, const void *v,
                            int32_t stride_v) {
    const char *fn = "rg_kv_cache_write";
    if (!kv) return rg_fail(RG_ERR_INVALID_ARG, "%s: kv is NULL", fn);
    RG_TRY(rg_kv_check_batch(kv, fn));
    if (layer < 0 || layer >= kv->n_layers)
        return rg_fail(RG_ERR_INVALID_ARG, "%s: layer %d outside [0, %d)", fn, layer, kv->n_layers);
    int32_t row = kv->n_kv_heads * kv->head_dim;
    if (stride_k < 0 || stride_v < 0 || (stride_k && stride_k < row) || (stride_v && stride_v < row))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: strides (%d, %d) must be 0 or at least h_kv * d = %d", fn,
                       stride_k, stride_v, row);
    if (kv->b_tokens && (!k || !v)) return rg_fail(RG_ERR_INVALID_ARG, "%s: k or v is NULL", fn);
    if (!kv->be->ops->kv_write)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: the %s backend has no kv cache write op", fn, kv->be->ops->name);
    if (!kv->b_tokens) return RG_OK;
    const int32_t *slots = kv->d_buf + (size_t)kv->b_seqs * kv->b_max_blocks + kv->b_seqs;
    return kv->be->ops->kv_write(kv->be, rg_kv_pool(kv, layer, 0), rg_kv_pool(kv, layer, 1), k,
                                 stride_k ? stride_k : row, v, stride_v ? stride_v : row, slots,
                                 kv->b_tokens, row);
}
