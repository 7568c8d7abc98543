/* batch.c — token sequences -> one batch in the PAD_MAX, PAD_LONGEST or PACKED
 * layout (ragged.h section 4): tokens, next-token targets that never cross a
 * sequence boundary, positions, sequence ids, key mask and cu_seqlens. */
#include "core/alloc.h"
#include "core/status.h"
#include "ragged.h"
#include <string.h>

#define FN "rg_batch_build"

static rg_status check_opts(const rg_batch_opts *o) {
    if (o->layout != RG_LAYOUT_PAD_MAX && o->layout != RG_LAYOUT_PAD_LONGEST && o->layout != RG_LAYOUT_PACKED)
        return rg_fail(RG_ERR_INVALID_ARG,
                       FN ": opts.layout is %d, expected PAD_MAX (0), PAD_LONGEST (1) or PACKED (2)", (int)o->layout);
    if (o->max_len < 1)
        return rg_fail(RG_ERR_INVALID_ARG, FN ": opts.max_len is %d, expected >= 1", o->max_len);
    if (o->vocab_size < 1)
        return rg_fail(RG_ERR_INVALID_ARG, FN ": opts.vocab_size is %d, expected >= 1", o->vocab_size);
    if (o->pad_id < 0 || o->pad_id >= o->vocab_size)
        return rg_fail(RG_ERR_INVALID_ARG, FN ": opts.pad_id is %d, expected in [0, %d)", o->pad_id,
                       o->vocab_size);
    return RG_OK;
}

/* Lengths only (tokens are not read yet): sets *n_real and *longest. */
static rg_status check_lengths(const rg_batch_opts *o, int32_t n_seqs, const int32_t *const *seqs,
                               const int32_t *lens, int64_t *n_real, int32_t *longest) {
    if (n_seqs < 1)
        return rg_fail(RG_ERR_INVALID_ARG, FN ": n_seqs is %d, expected >= 1 (an empty batch)", n_seqs);
    if (!seqs) return rg_fail(RG_ERR_INVALID_ARG, FN ": seqs is NULL");
    if (!lens) return rg_fail(RG_ERR_INVALID_ARG, FN ": lens is NULL");
    *n_real = 0;
    *longest = 0;
    for (int32_t b = 0; b < n_seqs; b++) {
        if (lens[b] < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": sequence %d has length %d, expected >= 1", b, lens[b]);
        if (lens[b] > o->max_len)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": sequence %d has length %d, expected <= opts.max_len %d",
                           b, lens[b], o->max_len);
        if (!seqs[b]) return rg_fail(RG_ERR_INVALID_ARG, FN ": seqs[%d] is NULL", b);
        *n_real += lens[b];
        if (lens[b] > *longest) *longest = lens[b];
    }
    return RG_OK;
}

static rg_status check_tokens(const rg_batch_opts *o, int32_t n_seqs, const int32_t *const *seqs,
                              const int32_t *lens) {
    for (int32_t b = 0; b < n_seqs; b++)
        for (int32_t i = 0; i < lens[b]; i++) {
            int32_t t = seqs[b][i];
            if (t < 0 || t >= o->vocab_size)
                return rg_fail(RG_ERR_INVALID_ARG, FN ": sequence %d, token %d is %d, expected in [0, %d)",
                               b, i, t, o->vocab_size);
        }
    return RG_OK;
}

static rg_status alloc_arrays(rg_batch *b) {
    size_t n = (size_t)b->n_tokens, B = (size_t)b->n_seqs;
    RG_TRY(rg_alloc((void **)&b->tokens, n, sizeof(int32_t), FN ": tokens"));
    RG_TRY(rg_alloc((void **)&b->targets, n, sizeof(int32_t), FN ": targets"));
    RG_TRY(rg_alloc((void **)&b->position_ids, n, sizeof(int32_t), FN ": position_ids"));
    RG_TRY(rg_alloc((void **)&b->seq_ids, n, sizeof(int32_t), FN ": seq_ids"));
    RG_TRY(rg_alloc((void **)&b->key_mask, n, sizeof(uint8_t), FN ": key_mask"));
    RG_TRY(rg_alloc((void **)&b->cu_seqlens, B + 1, sizeof(int32_t), FN ": cu_seqlens"));
    RG_TRY(rg_alloc((void **)&b->seqlens, B, sizeof(int32_t), FN ": seqlens"));
    return RG_OK;
}

/* Writes sequence s (len tokens) at slot base, then pad slots up to base + row_len. */
static void fill_row(rg_batch *b, int32_t seq, const int32_t *s, int32_t len, int32_t base, int32_t row_len,
                     int32_t pad_id) {
    for (int32_t i = 0; i < len; i++) {
        b->tokens[base + i] = s[i];
        b->targets[base + i] = i + 1 < len ? s[i + 1] : RG_IGNORE_INDEX;
        b->position_ids[base + i] = i;
        b->seq_ids[base + i] = seq;
        b->key_mask[base + i] = 1;
    }
    for (int32_t i = len; i < row_len; i++) {
        b->tokens[base + i] = pad_id;
        b->targets[base + i] = RG_IGNORE_INDEX;
        b->position_ids[base + i] = i;
        b->seq_ids[base + i] = -1;
        b->key_mask[base + i] = 0;
    }
}

rg_status rg_batch_build(const rg_batch_opts *opts, int32_t n_seqs, const int32_t *const *seqs,
                         const int32_t *lens, rg_batch *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    memset(out, 0, sizeof *out);
    if (!opts) return rg_fail(RG_ERR_INVALID_ARG, FN ": opts is NULL");
    RG_TRY(check_opts(opts));
    int64_t n_real = 0;
    int32_t longest = 0;
    RG_TRY(check_lengths(opts, n_seqs, seqs, lens, &n_real, &longest));

    bool packed = opts->layout == RG_LAYOUT_PACKED;
    int64_t n_rows = packed ? 1 : n_seqs;
    int64_t row_len = packed ? n_real : opts->layout == RG_LAYOUT_PAD_MAX ? opts->max_len : longest;
    if (n_rows * row_len > INT32_MAX) /* both <= INT32_MAX: the product fits int64 */
        return rg_fail(RG_ERR_OVERFLOW, FN ": %lld rows x %lld slots = %lld slots, expected <= INT32_MAX (%d)",
                       (long long)n_rows, (long long)row_len, (long long)(n_rows * row_len), INT32_MAX);
    RG_TRY(check_tokens(opts, n_seqs, seqs, lens));

    rg_batch b = {
        .layout = opts->layout, .n_seqs = n_seqs, .n_rows = (int32_t)n_rows, .row_len = (int32_t)row_len,
        .n_tokens = (int32_t)(n_rows * row_len), .n_real = (int32_t)n_real,
        .n_targets = (int32_t)(n_real - n_seqs), .max_seqlen = longest,
    };
    rg_status st = alloc_arrays(&b);
    if (st != RG_OK) {
        rg_batch_free(&b);
        return st;
    }
    b.cu_seqlens[0] = 0;
    for (int32_t s = 0; s < n_seqs; s++) {
        /* packed: sequence s starts where s-1 ended, with no padding; padded: row s */
        int32_t base = packed ? b.cu_seqlens[s] : s * b.row_len;
        fill_row(&b, s, seqs[s], lens[s], base, packed ? lens[s] : b.row_len, opts->pad_id);
        b.cu_seqlens[s + 1] = base + (packed ? lens[s] : b.row_len);
        b.seqlens[s] = lens[s];
    }
    *out = b;
    rg_clear_error();
    return RG_OK;
}

void rg_batch_free(rg_batch *b) {
    if (!b) return;
    rg_free(b->tokens);
    rg_free(b->targets);
    rg_free(b->position_ids);
    rg_free(b->seq_ids);
    rg_free(b->key_mask);
    rg_free(b->cu_seqlens);
    rg_free(b->seqlens);
    memset(b, 0, sizeof *b);
}
