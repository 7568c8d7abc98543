/* test_batch.c — rg_batch_build in its three layouts, checked against a plain
 * slot-by-slot re-derivation and against each other, on random sequences
 * (length 1, exactly max_len, one huge among many tiny), and every bad input. */
#include "check.h"
#include "ragged.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rg_batch_layout layouts[3] = {RG_LAYOUT_PAD_MAX, RG_LAYOUT_PAD_LONGEST, RG_LAYOUT_PACKED};
static const char *layout_name[3] = {"PAD_MAX", "PAD_LONGEST", "PACKED"};

typedef struct seqset {
    int32_t n, max_len, vocab;
    int32_t *lens;
    int32_t **seqs;
} seqset;

/* Lengths of one of several shapes, tokens uniform in [0, vocab). */
static seqset make_set(rg_rng *rng, int32_t n, int32_t max_len, int32_t vocab, int shape) {
    seqset s = {n, max_len, vocab, malloc(sizeof(int32_t) * (size_t)n), malloc(sizeof(int32_t *) * (size_t)n)};
    for (int32_t b = 0; b < n; b++) {
        switch (shape) {
        case 0: s.lens[b] = 1 + (int32_t)rg_rng_below(rng, (uint64_t)max_len); break;
        case 1: s.lens[b] = 1; break;
        case 2: s.lens[b] = max_len; break;
        default: s.lens[b] = 1 + (int32_t)rg_rng_below(rng, max_len < 3 ? (uint64_t)max_len : 3); break;
        }
    }
    if (shape == 3) s.lens[rg_rng_below(rng, (uint64_t)n)] = max_len; /* one huge among many tiny */
    if (shape == 0 && n >= 2) {                                        /* both extremes present */
        s.lens[0] = 1;
        s.lens[n - 1] = max_len;
    }
    for (int32_t b = 0; b < n; b++) {
        s.seqs[b] = malloc(sizeof(int32_t) * (size_t)s.lens[b]);
        for (int32_t i = 0; i < s.lens[b]; i++) s.seqs[b][i] = (int32_t)rg_rng_below(rng, (uint64_t)vocab);
    }
    return s;
}

static void free_set(seqset *s) {
    for (int32_t b = 0; b < s->n; b++) free(s->seqs[b]);
    free(s->seqs);
    free(s->lens);
}

/* Compares one per-slot array with its expected values; reports the first difference. */
static void check_slots(const char *what, const char *label, const int32_t *got, const int32_t *want, int32_t n) {
    for (int32_t s = 0; s < n; s++)
        if (got[s] != want[s]) {
            CHECK(false, "%s: %s[%d] = %d, expected %d", label, what, s, got[s], want[s]);
            return;
        }
    CHECK(true, "");
}

/* Everything b should hold, re-derived slot by slot from the sequences. */
static void check_batch(const rg_batch *b, const rg_batch_opts *o, const seqset *s, const char *label) {
    int64_t sum = 0;
    int32_t longest = 0;
    for (int32_t i = 0; i < s->n; i++) {
        sum += s->lens[i];
        if (s->lens[i] > longest) longest = s->lens[i];
    }
    bool packed = o->layout == RG_LAYOUT_PACKED;
    int32_t rows = packed ? 1 : s->n;
    int32_t row_len = packed ? (int32_t)sum : o->layout == RG_LAYOUT_PAD_MAX ? o->max_len : longest;
    if (!CHECK(b->layout == o->layout && b->n_seqs == s->n && b->n_rows == rows && b->row_len == row_len &&
                   b->n_tokens == rows * row_len && b->n_real == sum && b->n_targets == sum - s->n &&
                   b->max_seqlen == longest,
               "%s: header (rows %d row_len %d tokens %d real %d targets %d max %d), expected (%d %d %d %lld %lld %d)",
               label, b->n_rows, b->row_len, b->n_tokens, b->n_real, b->n_targets, b->max_seqlen, rows, row_len,
               rows * row_len, (long long)sum, (long long)(sum - s->n), longest))
        return;

    int32_t n = b->n_tokens;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n), *tgt = malloc(sizeof(int32_t) * (size_t)n),
            *pos = malloc(sizeof(int32_t) * (size_t)n), *sid = malloc(sizeof(int32_t) * (size_t)n),
            *mask = malloc(sizeof(int32_t) * (size_t)n), *got_mask = malloc(sizeof(int32_t) * (size_t)n),
            *cu = malloc(sizeof(int32_t) * (size_t)(s->n + 1));
    if (packed) { /* a running cursor over the concatenation */
        int32_t at = 0;
        for (int32_t q = 0; q < s->n; q++) {
            cu[q] = at;
            for (int32_t i = 0; i < s->lens[q]; i++, at++) {
                tok[at] = s->seqs[q][i];
                tgt[at] = i == s->lens[q] - 1 ? RG_IGNORE_INDEX : s->seqs[q][i + 1];
                pos[at] = i;
                sid[at] = q;
                mask[at] = 1;
            }
        }
        cu[s->n] = at;
    } else { /* slot = row * row_len + column */
        for (int32_t slot = 0; slot < n; slot++) {
            int32_t r = slot / row_len, i = slot % row_len;
            bool real = i < s->lens[r];
            tok[slot] = real ? s->seqs[r][i] : o->pad_id;
            tgt[slot] = real && i + 1 < s->lens[r] ? s->seqs[r][i + 1] : RG_IGNORE_INDEX;
            pos[slot] = i;
            sid[slot] = real ? r : -1;
            mask[slot] = real;
        }
        for (int32_t q = 0; q <= s->n; q++) cu[q] = q * row_len;
    }
    for (int32_t slot = 0; slot < n; slot++) got_mask[slot] = b->key_mask[slot];
    check_slots("tokens", label, b->tokens, tok, n);
    check_slots("targets", label, b->targets, tgt, n);
    check_slots("position_ids", label, b->position_ids, pos, n);
    check_slots("seq_ids", label, b->seq_ids, sid, n);
    check_slots("key_mask", label, got_mask, mask, n);
    check_slots("cu_seqlens", label, b->cu_seqlens, cu, s->n + 1);
    check_slots("seqlens", label, b->seqlens, s->lens, s->n);

    /* The boundary rule straight from the output: a target is the next slot's
     * token of the same sequence at the next position, never across a boundary. */
    int32_t n_targets = 0, n_mask = 0, bad = -1;
    for (int32_t slot = 0; slot < n; slot++) {
        n_mask += b->key_mask[slot];
        if (b->targets[slot] == RG_IGNORE_INDEX) continue;
        n_targets++;
        if (slot + 1 >= n || b->seq_ids[slot] < 0 || b->seq_ids[slot + 1] != b->seq_ids[slot] ||
            b->position_ids[slot + 1] != b->position_ids[slot] + 1 || b->targets[slot] != b->tokens[slot + 1])
            if (bad < 0) bad = slot;
    }
    CHECK(bad < 0, "%s: target at slot %d crosses a boundary or is not the next token", label, bad);
    CHECK(n_targets == b->n_targets && n_mask == b->n_real, "%s: %d targets and %d mask ones, expected %d and %d",
          label, n_targets, n_mask, b->n_targets, b->n_real);
    free(tok); free(tgt); free(pos); free(sid); free(mask); free(got_mask); free(cu);
}

/* The three layouts of one set hold the same sequences: packed sequence q ==
 * padded row q's real prefix, tokens, targets and positions alike. */
static void check_same_sequences(const rg_batch bs[3], const seqset *s, const char *label) {
    const rg_batch *p = &bs[2];
    int32_t bad = -1;
    for (int l = 0; l < 2; l++)
        for (int32_t q = 0; q < s->n && bad < 0; q++) {
            const rg_batch *d = &bs[l];
            size_t off = (size_t)q * (size_t)d->row_len, len = (size_t)s->lens[q] * sizeof(int32_t);
            if (memcmp(d->tokens + off, p->tokens + p->cu_seqlens[q], len) ||
                memcmp(d->targets + off, p->targets + p->cu_seqlens[q], len) ||
                memcmp(d->position_ids + off, p->position_ids + p->cu_seqlens[q], len))
                bad = q;
        }
    CHECK(bad < 0, "%s: padded and packed differ on sequence %d", label, bad);
}

static void random_batches(rg_rng *rng) {
    int iters = rg_test_quick() ? 80 : 400;
    for (int it = 0; it < iters; it++) {
        int shape = it % 4;
        int32_t n = it % 13 == 0 ? 1 : 1 + (int32_t)rg_rng_below(rng, 48);
        int32_t max_len = it % 7 == 0 ? 1 + (int32_t)rg_rng_below(rng, 3) : 1 + (int32_t)rg_rng_below(rng, 700);
        int32_t vocab = 1 + (int32_t)rg_rng_below(rng, it % 5 == 0 ? 2 : 50000);
        seqset s = make_set(rng, n, max_len, vocab, shape);
        rg_batch bs[3];
        char label[128];
        for (int l = 0; l < 3; l++) {
            rg_batch_opts o = {layouts[l], max_len, vocab, (int32_t)rg_rng_below(rng, (uint64_t)vocab)};
            snprintf(label, sizeof label, "%s n=%d max_len=%d shape=%d", layout_name[l], n, max_len, shape);
            rg_status st = rg_batch_build(&o, n, (const int32_t *const *)s.seqs, s.lens, &bs[l]);
            if (!CHECK(st == RG_OK, "%s: status %s (%s)", label, rg_status_str(st), rg_last_error())) {
                for (int k = 0; k < l; k++) rg_batch_free(&bs[k]);
                free_set(&s);
                return;
            }
            check_batch(&bs[l], &o, &s, label);
        }
        snprintf(label, sizeof label, "n=%d max_len=%d shape=%d", n, max_len, shape);
        check_same_sequences(bs, &s, label);
        for (int l = 0; l < 3; l++) rg_batch_free(&bs[l]);
        CHECK(bs[0].tokens == NULL && bs[2].cu_seqlens == NULL && bs[1].n_tokens == 0, "free zeroes the batch");
        free_set(&s);
    }
}

/* A failing build returns want, says something containing needle, and leaves out zeroed. */
static void expect_fail(const char *label, rg_status want, const char *needle, const rg_batch_opts *o, int32_t n,
                        const int32_t *const *seqs, const int32_t *lens) {
    rg_batch out, zero;
    memset(&out, 0x5a, sizeof out);
    memset(&zero, 0, sizeof zero);
    rg_status st = rg_batch_build(o, n, seqs, lens, &out);
    CHECK(st == want, "%s: status '%s', expected '%s'", label, rg_status_str(st), rg_status_str(want));
    CHECK(strstr(rg_last_error(), "rg_batch_build") && strstr(rg_last_error(), needle),
          "%s: message '%s' should contain '%s'", label, rg_last_error(), needle);
    CHECK(memcmp(&out, &zero, sizeof out) == 0, "%s: out is not zeroed", label);
    if (st == RG_OK) rg_batch_free(&out);
}

static void bad_inputs(void) {
    int32_t t0[3] = {1, 2, 3}, t1[2] = {4, 5}, t2[4] = {0, 9, 7, 6};
    const int32_t *seqs[3] = {t0, t1, t2};
    int32_t lens[3] = {3, 2, 4};
    rg_batch_opts ok = {RG_LAYOUT_PACKED, 4, 10, 0};
    rg_batch_opts o;

    CHECK(rg_batch_build(&ok, 3, seqs, lens, NULL) == RG_ERR_INVALID_ARG && strstr(rg_last_error(), "out is NULL"),
          "NULL out: %s", rg_last_error());
    expect_fail("NULL opts", RG_ERR_INVALID_ARG, "opts is NULL", NULL, 3, seqs, lens);
    expect_fail("NULL seqs", RG_ERR_INVALID_ARG, "seqs is NULL", &ok, 3, NULL, lens);
    expect_fail("NULL lens", RG_ERR_INVALID_ARG, "lens is NULL", &ok, 3, seqs, NULL);
    expect_fail("empty batch", RG_ERR_INVALID_ARG, "n_seqs is 0, expected >= 1", &ok, 0, seqs, lens);
    expect_fail("negative batch", RG_ERR_INVALID_ARG, "n_seqs is -2", &ok, -2, seqs, lens);
    o = ok; o.layout = (rg_batch_layout)7;
    expect_fail("bad layout", RG_ERR_INVALID_ARG, "opts.layout is 7", &o, 3, seqs, lens);
    o = ok; o.max_len = 0;
    expect_fail("max_len 0", RG_ERR_INVALID_ARG, "opts.max_len is 0, expected >= 1", &o, 3, seqs, lens);
    o = ok; o.vocab_size = 0;
    expect_fail("vocab 0", RG_ERR_INVALID_ARG, "opts.vocab_size is 0", &o, 3, seqs, lens);
    o = ok; o.pad_id = 10;
    expect_fail("pad_id = vocab", RG_ERR_INVALID_ARG, "opts.pad_id is 10, expected in [0, 10)", &o, 3, seqs, lens);
    o = ok; o.pad_id = -1;
    expect_fail("pad_id < 0", RG_ERR_INVALID_ARG, "opts.pad_id is -1", &o, 3, seqs, lens);

    const int32_t *with_null[3] = {t0, NULL, t2};
    expect_fail("NULL sequence", RG_ERR_INVALID_ARG, "seqs[1] is NULL", &ok, 3, with_null, lens);
    int32_t l_zero[3] = {3, 0, 4}, l_neg[3] = {3, 2, -5}, l_long[3] = {3, 2, 5};
    expect_fail("zero length", RG_ERR_INVALID_ARG, "sequence 1 has length 0, expected >= 1", &ok, 3, seqs, l_zero);
    expect_fail("negative length", RG_ERR_INVALID_ARG, "sequence 2 has length -5", &ok, 3, seqs, l_neg);
    o = ok; o.max_len = 4;
    expect_fail("length > max_len", RG_ERR_INVALID_ARG, "sequence 2 has length 5, expected <= opts.max_len 4", &o, 3,
                seqs, l_long);
    for (int l = 0; l < 3; l++) {
        o = ok; o.layout = layouts[l];
        t2[2] = 10;
        expect_fail("token = vocab", RG_ERR_INVALID_ARG, "sequence 2, token 2 is 10, expected in [0, 10)", &o, 3,
                    seqs, lens);
        t2[2] = 7;
        t1[0] = -3;
        expect_fail("token < 0", RG_ERR_INVALID_ARG, "sequence 1, token 0 is -3", &o, 3, seqs, lens);
        t1[0] = 4;
    }

    /* Slot counts just past INT32_MAX. The sequences point at a 3-token buffer
     * although they claim 2^30 tokens: lengths and sizes must be rejected before
     * any token is read (the sanitizer run would catch a read). */
    int32_t huge = 1 << 30, l_one[3] = {1, 1, 1}, l_huge[3] = {huge, huge, huge};
    const int32_t *small[3] = {t0, t0, t0};
    o = (rg_batch_opts){RG_LAYOUT_PAD_MAX, huge, 10, 0};
    expect_fail("PAD_MAX overflow", RG_ERR_OVERFLOW, "2 rows x 1073741824 slots", &o, 2, small, l_one);
    o.layout = RG_LAYOUT_PAD_LONGEST;
    expect_fail("PAD_LONGEST overflow", RG_ERR_OVERFLOW, "expected <= INT32_MAX", &o, 2, small, l_huge);
    o.layout = RG_LAYOUT_PACKED;
    expect_fail("PACKED overflow", RG_ERR_OVERFLOW, "3221225472 slots", &o, 3, small, l_huge);

    /* A success after failures leaves no stale message. */
    rg_batch b;
    CHECK(rg_batch_build(&ok, 3, seqs, lens, &b) == RG_OK && rg_last_error()[0] == '\0', "valid after invalid");
    rg_batch_free(&b);
    rg_batch_free(&b); /* zeroed: a no-op */
    rg_batch_free(NULL);
    CHECK(true, "free of NULL and of a zeroed batch");
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_batch", &rng);
    random_batches(&rng);
    bad_inputs();
    return rg_test_finish();
}
