/* test_prepare_pack.c — documents packed for training (rg_doc_pack_build):
 * every token of every document lies in exactly one piece of one batch, no
 * piece and no row over row_len, no batch over rows_per_batch rows, the padding
 * it reports (against one padded row per piece) equals a recount, the packing is
 * a function of the seed, and the packed batches restart positions per piece and
 * count targets as training does. Random document lengths: 1-token documents,
 * exact multiples of row_len, one huge document among many tiny ones. */
#include "check.h"
#include "ragged.h"
#include <stdlib.h>
#include <string.h>

static void check_pack(rg_rng *r, int64_t n_docs, const int64_t *offs, int32_t row_len, int32_t rows, uint64_t seed) {
    rg_doc_pack p;
    rg_status st = rg_doc_pack_build(n_docs, offs, row_len, rows, seed, true, &p);
    CHECK(st == RG_OK, "pack of %lld documents, rows of %d: %s", (long long)n_docs, (int)row_len, rg_last_error());
    if (st != RG_OK) return;
    int64_t total = offs[n_docs];
    unsigned char *seen = calloc((size_t)total + 1, 1);
    /* pieces: recount splits, n_pieces, n_real, pad_max_slots */
    int64_t pieces = 0, split = 0;
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t len = offs[d + 1] - offs[d], k = (len + row_len - 1) / row_len;
        pieces += k;
        split += k > 1;
    }
    CHECK(p.n_pieces == pieces && p.n_split == split && p.n_real == total && p.n_docs == n_docs,
          "counts: pieces %d (expected %lld), split %lld (%lld), real %lld (%lld)", (int)p.n_pieces, (long long)pieces,
          (long long)p.n_split, (long long)split, (long long)p.n_real, (long long)total);
    CHECK(p.pad_max_slots == pieces * row_len && p.pad_max_slots - p.n_real == pieces * row_len - total,
          "padding reported %lld slots, recount %lld", (long long)p.pad_max_slots, (long long)(pieces * row_len));
    const rg_plan *pl = &p.plan;
    bool ok_rows = true, ok_batch = true, ok_piece = true, ok_doc = true;
    for (int32_t b = 0; b < pl->n_batches; b++) {
        if (pl->batch_rows[b + 1] - pl->batch_rows[b] > rows || pl->batch_rows[b + 1] <= pl->batch_rows[b]) ok_batch = false;
        for (int32_t row = pl->batch_rows[b]; row < pl->batch_rows[b + 1]; row++) {
            int64_t fill = 0;
            for (int32_t k = pl->row_offsets[row]; k < pl->row_offsets[row + 1]; k++) fill += p.piece_len[pl->order[k]];
            if (fill > row_len) ok_rows = false;
        }
        for (int32_t k = pl->batch_offsets[b]; k < pl->batch_offsets[b + 1]; k++) {
            int32_t i = pl->order[k];
            if (p.piece_len[i] < 1 || p.piece_len[i] > row_len) ok_piece = false;
            /* a piece lies inside one document */
            int64_t lo = 0, hi = n_docs - 1;
            while (lo < hi) {
                int64_t mid = (lo + hi + 1) / 2;
                if (offs[mid] <= p.piece_start[i]) lo = mid; else hi = mid - 1;
            }
            if (p.piece_start[i] + p.piece_len[i] > offs[lo + 1]) ok_doc = false;
            for (int32_t t = 0; t < p.piece_len[i]; t++) seen[p.piece_start[i] + t]++;
        }
    }
    int64_t once = 0;
    for (int64_t t = 0; t < total; t++) once += seen[t] == 1;
    CHECK(once == total, "%lld of %lld tokens appear exactly once across the epoch's batches", (long long)once,
          (long long)total);
    CHECK(ok_rows && ok_batch && ok_piece && ok_doc, "rows within row_len %d, batches within %d rows, pieces in [1, %d] "
          "inside their document", (int)row_len, (int)rows, (int)row_len);

    /* same seed -> same plan; the batches build as packed batches with restarting positions */
    rg_doc_pack q;
    rg_doc_pack_build(n_docs, offs, row_len, rows, seed, true, &q);
    bool same = q.plan.n_batches == pl->n_batches && !memcmp(q.plan.order, pl->order, sizeof(int32_t) * (size_t)p.n_pieces);
    CHECK(same, "the same seed gives the same plan");
    rg_doc_pack_free(&q);
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)rows * (size_t)row_len);
    const int32_t **seqs = malloc(sizeof *seqs * (size_t)p.n_pieces);
    int32_t *lens = malloc(sizeof *lens * (size_t)p.n_pieces);
    int32_t b = (int32_t)rg_rng_below(r, (uint64_t)pl->n_batches);
    int32_t n = pl->batch_offsets[b + 1] - pl->batch_offsets[b], at = 0, want_targets = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t i = pl->order[pl->batch_offsets[b] + k];
        for (int32_t t = 0; t < p.piece_len[i]; t++) tokens[at + t] = (int32_t)((p.piece_start[i] + t) % 50);
        seqs[k] = tokens + at;
        lens[k] = p.piece_len[i];
        at += lens[k];
        want_targets += lens[k] - 1;
    }
    CHECK(at <= rows * row_len, "batch %d holds %d tokens, at most %d", (int)b, (int)at, (int)(rows * row_len));
    rg_batch_opts o = {.layout = RG_LAYOUT_PACKED, .max_len = row_len, .vocab_size = 50, .pad_id = 0};
    rg_batch bt;
    st = rg_batch_build(&o, n, seqs, lens, &bt);
    CHECK(st == RG_OK, "batch build: %s", rg_last_error());
    if (st == RG_OK) {
        bool pos_ok = bt.n_tokens == at && bt.n_targets == want_targets;
        for (int32_t k = 0, t0 = 0; k < n; t0 += lens[k], k++)
            for (int32_t t = 0; t < lens[k]; t++) pos_ok = pos_ok && bt.position_ids[t0 + t] == t && bt.seq_ids[t0 + t] == k;
        CHECK(pos_ok, "packed batch: positions restart per piece, %d targets (expected %d)", (int)bt.n_targets,
              (int)want_targets);
        rg_batch_free(&bt);
    }
    free(tokens);
    free(seqs);
    free(lens);
    free(seen);
    rg_doc_pack_free(&p);
}

static int64_t *random_docs(rg_rng *r, int64_t n, int32_t row_len, int kind) {
    int64_t *offs = malloc(sizeof *offs * (size_t)(n + 1));
    offs[0] = 0;
    for (int64_t d = 0; d < n; d++) {
        int64_t len;
        if (kind == 0) len = 1 + (int64_t)rg_rng_below(r, (uint64_t)(3 * row_len));
        else if (kind == 1) len = rg_rng_below(r, 3) == 0 ? row_len * (1 + (int64_t)rg_rng_below(r, 3)) : 1;
        else len = d == n / 2 ? 37 * (int64_t)row_len + 5 : 1 + (int64_t)rg_rng_below(r, 4);
        offs[d + 1] = offs[d] + len;
    }
    return offs;
}

int main(void) {
    rg_rng r;
    rg_test_init("test_prepare_pack", &r);
    int iters = rg_test_quick() ? 20 : 120;
    for (int it = 0; it < iters; it++) {
        int32_t row_len = 1 + (int32_t)rg_rng_below(&r, it % 3 == 0 ? 8 : 200);
        int32_t rows = 1 + (int32_t)rg_rng_below(&r, 9);
        int64_t n = 1 + (int64_t)rg_rng_below(&r, it % 5 == 0 ? 3 : 400);
        int64_t *offs = random_docs(&r, n, row_len, it % 3);
        check_pack(&r, n, offs, row_len, rows, rg_rng_u64(&r));
        free(offs);
    }
    /* errors */
    int64_t bad[4] = {0, 3, 3, 5};
    rg_doc_pack p;
    CHECK(rg_doc_pack_build(3, bad, 4, 2, 1, true, &p) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "document 1") &&
              p.n_pieces == 0,
          "an empty document is refused, naming it: %s", rg_last_error());
    CHECK(rg_doc_pack_build(0, bad, 4, 2, 1, true, &p) == RG_ERR_INVALID_ARG, "no documents");
    CHECK(rg_doc_pack_build(1, bad, 0, 2, 1, true, &p) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "row_len"),
          "row_len 0: %s", rg_last_error());
    CHECK(rg_doc_pack_build(1, NULL, 4, 2, 1, true, &p) == RG_ERR_INVALID_ARG, "NULL offsets");
    rg_doc_pack_free(NULL);
    return rg_test_finish();
}
