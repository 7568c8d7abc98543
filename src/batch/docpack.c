/* docpack.c — documents of a token stream (ragged.h section 5): split into
 * pieces of at most row_len tokens, packed by best-fit-decreasing into rows of
 * row_len (rg_plan_build's BEST_FIT), rows_per_batch rows per batch; with the
 * padding that packing avoids against one padded row per piece. */
#include "core/alloc.h"
#include "core/status.h"
#include "ragged.h"
#include <string.h>

#define FN "rg_doc_pack_build"

void rg_doc_pack_free(rg_doc_pack *p) {
    if (!p) return;
    rg_free(p->piece_start);
    rg_free(p->piece_len);
    rg_plan_free(&p->plan);
    memset(p, 0, sizeof *p);
}

rg_status rg_doc_pack_build(int64_t n_docs, const int64_t *doc_offsets, int32_t row_len, int32_t rows_per_batch,
                            uint64_t seed, bool shuffle, rg_doc_pack *out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, FN ": out is NULL");
    memset(out, 0, sizeof *out);
    if (!doc_offsets) return rg_fail(RG_ERR_INVALID_ARG, FN ": doc_offsets is NULL");
    if (n_docs < 1) return rg_fail(RG_ERR_INVALID_ARG, FN ": n_docs is %lld, expected >= 1", (long long)n_docs);
    if (row_len < 1 || rows_per_batch < 1)
        return rg_fail(RG_ERR_INVALID_ARG, FN ": %s is %d, expected >= 1", row_len < 1 ? "row_len" : "rows_per_batch",
                       row_len < 1 ? (int)row_len : (int)rows_per_batch);
    int64_t n_pieces = 0, n_split = 0;
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t len = doc_offsets[d + 1] - doc_offsets[d];
        if (len < 1)
            return rg_fail(RG_ERR_INVALID_ARG, FN ": document %lld has %lld tokens (offsets %lld..%lld), expected >= 1",
                           (long long)d, (long long)len, (long long)doc_offsets[d], (long long)doc_offsets[d + 1]);
        int64_t k = (len + row_len - 1) / row_len;
        n_pieces += k;
        n_split += k > 1;
        if (n_pieces > INT32_MAX)
            return rg_fail(RG_ERR_OVERFLOW, FN ": more than %d pieces of %d tokens", INT32_MAX, (int)row_len);
    }
    rg_doc_pack p = {.row_len = row_len, .n_docs = n_docs, .n_pieces = (int32_t)n_pieces, .n_split = n_split};
    rg_status st;
    if ((st = rg_alloc((void **)&p.piece_start, (size_t)n_pieces, sizeof(int64_t), FN ": pieces")) ||
        (st = rg_alloc((void **)&p.piece_len, (size_t)n_pieces, sizeof(int32_t), FN ": pieces"))) {
        rg_doc_pack_free(&p);
        return st;
    }
    int32_t i = 0;
    for (int64_t d = 0; d < n_docs; d++)
        for (int64_t at = doc_offsets[d]; at < doc_offsets[d + 1]; at += row_len, i++) {
            int64_t left = doc_offsets[d + 1] - at;
            p.piece_start[i] = at;
            p.piece_len[i] = (int32_t)(left < row_len ? left : row_len);
            p.n_real += p.piece_len[i];
        }
    p.pad_max_slots = (int64_t)p.n_pieces * row_len;
    rg_sampler_opts so = {.kind = RG_SAMPLER_BEST_FIT, .seed = seed, .shuffle = shuffle, .row_capacity = row_len,
                          .rows_per_batch = rows_per_batch};
    if ((st = rg_plan_build(&so, p.n_pieces, p.piece_len, &p.plan)) != RG_OK) {
        rg_doc_pack_free(&p);
        return st;
    }
    *out = p;
    rg_clear_error();
    return RG_OK;
}
