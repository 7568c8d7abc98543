/* test_attention_decode.c — rg_attn_decode over the paged KV cache against a
 * plain double reference on contiguous K/V (contexts 1, 15, 16, 17, 300, 1000+;
 * block sizes 1, 16, 32; MHA, GQA, MQA; many sequences of mixed lengths; fused
 * qkv strides; a fragmented pool), against rg_attn_forward (varlen, causal,
 * one query per sequence) when that op exists, and bad arguments. */
#include "check.h"
#include "kv_util.h"
#include "ops_ref.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rg_backend *be;
static bool varlen_missing_noted;

static float *randn(rg_rng *r, size_t n) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = (float)rg_rng_normal(r);
    return x;
}

typedef struct dcase {
    int32_t n, h, hkv, d, bs;
    const int32_t *lens;
    float scale;       /* <= 0: default */
    bool fused;        /* q, k, v of the last token as views into one (n, (h + 2 hkv) d) buffer */
} dcase;

/* Fills the cache in two steps (all tokens but the last as one packed batch,
 * then one token per sequence), decodes layer 1 and compares. */
static void run_case(rg_rng *r, const dcase *c, const char *label) {
    const int32_t n = c->n, h = c->h, hkv = c->hkv, d = c->d, row = hkv * d;
    int32_t *koff = malloc(sizeof(int32_t) * (size_t)(n + 1)), need = kvt_offsets(n, c->lens, c->bs, koff);
    const int32_t total = koff[n];
    int32_t n_blocks = need + 3 + (int32_t)rg_rng_below(r, 8);
    rg_kv_cache *kv;
    if (!CHECK(rg_kv_cache_init(be, 2, hkv, d, c->bs, n_blocks, &kv) == RG_OK, "%s: init: %s", label,
               rg_last_error())) { free(koff); return; }
    kvt_fragment(r, kv, n_blocks);

    /* Contiguous K/V per layer (total, hkv, d): the reference reads these. */
    float *k[2] = {randn(r, (size_t)total * row), randn(r, (size_t)total * row)};
    float *v[2] = {randn(r, (size_t)total * row), randn(r, (size_t)total * row)};
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n), *cnt = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *cu = malloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int32_t b = 0; b < n; b++) {
        ids[b] = 7 * (n - b) + 3;  /* arbitrary ids, not the batch order */
        rg_kv_cache_add_seq(kv, ids[b]);
    }

    /* Step 1: prefixes (length - 1 tokens; 0 for sequences of length 0 or 1). */
    cu[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        cnt[b] = c->lens[b] > 0 ? c->lens[b] - 1 : 0;
        cu[b + 1] = cu[b] + cnt[b];
    }
    float *pk[2], *pv[2];
    for (int l = 0; l < 2; l++) {
        pk[l] = malloc(sizeof(float) * (size_t)(cu[n] ? cu[n] : 1) * row);
        pv[l] = malloc(sizeof(float) * (size_t)(cu[n] ? cu[n] : 1) * row);
        for (int32_t b = 0; b < n; b++) {
            memcpy(pk[l] + (size_t)cu[b] * row, k[l] + (size_t)koff[b] * row, sizeof(float) * (size_t)cnt[b] * row);
            memcpy(pv[l] + (size_t)cu[b] * row, v[l] + (size_t)koff[b] * row, sizeof(float) * (size_t)cnt[b] * row);
        }
    }
    bool ok = CHECK(rg_kv_cache_append(kv, n, ids, cnt) == RG_OK, "%s: append prefixes: %s", label, rg_last_error());
    ok = ok && CHECK(rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK, "%s: set_batch 1: %s", label, rg_last_error());
    for (int l = 0; ok && l < 2; l++)
        ok = CHECK(rg_kv_cache_write(kv, l, pk[l], 0, pv[l], 0) == RG_OK, "%s: write 1: %s", label, rg_last_error());

    /* Step 2: the last token of every sequence of length >= 1 (a length-0
     * sequence stays in the batch with no new token). */
    const int32_t fw = c->fused ? (h + 2 * hkv) * d : 0, sq = c->fused ? fw : h * d;
    float *qkv = randn(r, (size_t)n * (c->fused ? fw : h * d));
    float *nk[2], *nv[2];
    cu[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        cnt[b] = c->lens[b] > 0;
        cu[b + 1] = cu[b] + cnt[b];
    }
    for (int l = 0; l < 2; l++) {
        /* New rows: packed (cu[n], hkv, d), or inside qkv when fused (layer 1). */
        size_t stride = c->fused && l == 1 ? (size_t)fw : (size_t)row;
        float *base = c->fused && l == 1 ? qkv : NULL;
        nk[l] = base ? NULL : malloc(sizeof(float) * (size_t)(n ? n : 1) * row);
        nv[l] = base ? NULL : malloc(sizeof(float) * (size_t)(n ? n : 1) * row);
        for (int32_t b = 0; b < n; b++) {
            if (!cnt[b]) continue;
            size_t src = (size_t)(koff[b] + c->lens[b] - 1) * row;
            float *dk = base ? base + (size_t)cu[b] * stride + (size_t)h * d : nk[l] + (size_t)cu[b] * row;
            float *dv = base ? base + (size_t)cu[b] * stride + (size_t)(h + hkv) * d : nv[l] + (size_t)cu[b] * row;
            memcpy(dk, k[l] + src, sizeof(float) * row);
            memcpy(dv, v[l] + src, sizeof(float) * row);
        }
    }
    /* Fused rows are indexed by new-token order, so q must follow it too: with
     * every length >= 1 (the only case fused is used with) b == cu[b]. */
    ok = ok && CHECK(rg_kv_cache_append(kv, n, ids, cnt) == RG_OK, "%s: append 1: %s", label, rg_last_error());
    ok = ok && CHECK(rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK, "%s: set_batch 2: %s", label, rg_last_error());
    ok = ok && CHECK(rg_kv_cache_write(kv, 0, nk[0], 0, nv[0], 0) == RG_OK, "%s: write 2: %s", label, rg_last_error());
    if (c->fused)
        ok = ok && CHECK(rg_kv_cache_write(kv, 1, qkv + (size_t)h * d, fw, qkv + (size_t)(h + hkv) * d, fw) == RG_OK,
                         "%s: write fused: %s", label, rg_last_error());
    else
        ok = ok && CHECK(rg_kv_cache_write(kv, 1, nk[1], 0, nv[1], 0) == RG_OK, "%s: write 2: %s", label, rg_last_error());
    for (int32_t b = 0; ok && b < n; b++)
        ok = CHECK(rg_kv_cache_seq_len(kv, ids[b]) == c->lens[b], "%s: seq %d length %d, expected %d", label,
                   ids[b], rg_kv_cache_seq_len(kv, ids[b]), c->lens[b]);

    size_t no = (size_t)n * h * d;
    float *o = rg_guarded_alloc(no), *ref = malloc(sizeof(float) * (no ? no : 1));
    double *ref64 = malloc(sizeof(double) * (no ? no : 1));
    float scale = c->scale > 0 ? c->scale : 1.0f / sqrtf((float)d);
    if (ok) {
        rg_status s = rg_attn_decode(be, kv, 1, h, c->scale, qkv, c->fused ? fw : 0, o);
        if (CHECK(s == RG_OK, "%s: decode: %s", label, rg_last_error())) {
            ref_attn_decode(ref64, qkv, sq, k[1], v[1], c->lens, koff, n, h, hkv, d, scale);
            for (size_t i = 0; i < no; i++) ref[i] = (float)ref64[i];
            char what[160];
            snprintf(what, sizeof what, "%s: decode vs reference", label);
            CHECK_CLOSE(what, o, ref, no, 1e-5);
            rg_guarded_ok(o, no, label);
        }
    }

    /* The same through varlen attention: one causal query per sequence. */
    if (ok && !c->fused) {
        int32_t *cq = malloc(sizeof(int32_t) * (size_t)(n + 1)), maxk = 0;
        for (int32_t b = 0; b <= n; b++) cq[b] = b;
        for (int32_t b = 0; b < n; b++) maxk = c->lens[b] > maxk ? c->lens[b] : maxk;
        rg_attn_desc desc = {.batch = n, .n_heads = h, .n_kv_heads = hkv, .head_dim = d, .cu_seqlens_q = cq,
                             .cu_seqlens_k = koff, .max_seqlen_q = 1, .max_seqlen_k = maxk,
                             .softmax_scale = c->scale, .causal = true};
        float *o2 = rg_guarded_alloc(no);
        rg_status s = rg_attn_forward(be, &desc, qkv, k[1], v[1], o2, NULL);
        if (s == RG_ERR_UNSUPPORTED) {
            if (!varlen_missing_noted) printf("note: rg_attn_forward unsupported here (%s); varlen comparison skipped\n",
                                              rg_last_error());
            varlen_missing_noted = true;
        } else if (CHECK(s == RG_OK, "%s: rg_attn_forward: %s", label, rg_last_error())) {
            char what[160];
            snprintf(what, sizeof what, "%s: decode vs rg_attn_forward", label);
            CHECK_CLOSE(what, o, o2, no, 1e-5);
            rg_guarded_ok(o2, no, label);
        }
        rg_guarded_free(o2);
        free(cq);
    }

    rg_guarded_free(o);
    free(ref);
    free(ref64);
    free(qkv);
    for (int l = 0; l < 2; l++) { free(k[l]); free(v[l]); free(pk[l]); free(pv[l]); free(nk[l]); free(nv[l]); }
    free(ids); free(cnt); free(cu); free(koff);
    rg_kv_cache_free(kv);
}

static void test_single_lengths(rg_rng *r) {
    static const int32_t ctx[] = {1, 15, 16, 17, 255, 256, 257, 300, 1000, 1111};
    static const int32_t bss[] = {1, 16, 32};
    static const int32_t heads[][2] = {{4, 4}, {8, 2}, {6, 1}};
    for (size_t i = 0; i < sizeof ctx / sizeof *ctx; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t hh = 0; hh < 3; hh++) {
                int32_t d = (int32_t[]){8, 32, 64}[rg_rng_below(r, 3)];
                dcase c = {.n = 1, .h = heads[hh][0], .hkv = heads[hh][1], .d = d, .bs = bss[j], .lens = &ctx[i]};
                char label[96];
                snprintf(label, sizeof label, "ctx %d bs %d h %d/%d d %d", ctx[i], bss[j], c.h, c.hkv, d);
                run_case(r, &c, label);
            }
}

static void test_mixed(rg_rng *r, bool quick) {
    int rounds = quick ? 4 : 12;
    for (int it = 0; it < rounds; it++) {
        int32_t n = 1 + (int32_t)rg_rng_below(r, quick ? 12 : 40);
        int32_t *lens = malloc(sizeof(int32_t) * (size_t)n);
        for (int32_t b = 0; b < n; b++) {
            uint64_t kind = rg_rng_below(r, 4);
            lens[b] = kind == 0 ? 1 + (int32_t)rg_rng_below(r, 3) : kind == 1 ? 14 + (int32_t)rg_rng_below(r, 5)
                                                                              : 1 + (int32_t)rg_rng_below(r, 600);
        }
        lens[rg_rng_below(r, (uint64_t)n)] = 1000 + (int32_t)rg_rng_below(r, quick ? 200 : 1200);  /* one long */
        static const int32_t heads[][2] = {{12, 12}, {8, 2}, {8, 1}, {2, 1}};
        int hh = (int)rg_rng_below(r, 4);
        dcase c = {.n = n, .h = heads[hh][0], .hkv = heads[hh][1], .d = (int32_t[]){16, 64, 128}[rg_rng_below(r, 3)],
                   .bs = (int32_t[]){1, 16, 32, 7}[rg_rng_below(r, 4)], .lens = lens,
                   .scale = rg_rng_below(r, 2) ? 0.0f : 0.05f + (float)rg_rng_uniform(r),
                   .fused = rg_rng_below(r, 2) != 0};
        char label[96];
        snprintf(label, sizeof label, "mixed %d seqs bs %d h %d/%d d %d%s", n, c.bs, c.h, c.hkv, c.d,
                 c.fused ? " fused" : "");
        run_case(r, &c, label);
        free(lens);
    }
    /* A sequence of length 0 in the batch outputs zeros. */
    int32_t lens[] = {5, 0, 300};
    dcase c = {.n = 3, .h = 4, .hkv = 2, .d = 16, .bs = 16, .lens = lens};
    run_case(r, &c, "with an empty sequence");
}

static bool fails_with(rg_status got, rg_status want, const char *needle, const char *label) {
    const char *m = rg_last_error();
    return CHECK(got == want && strstr(m, needle) != NULL, "%s: got %s \"%s\", expected %s mentioning \"%s\"",
                 label, rg_status_str(got), m, rg_status_str(want), needle);
}

static void test_bad_args(void) {
    rg_kv_cache *kv;
    if (!CHECK(rg_kv_cache_init(be, 2, 2, 16, 16, 8, &kv) == RG_OK, "init: %s", rg_last_error())) return;
    float q[4 * 16], o[4 * 16], kvr[2 * 16] = {0};
    for (int i = 0; i < 64; i++) q[i] = 0.1f * (float)i;
    int32_t id = 4, one = 1, cu[2] = {0, 1};
    rg_kv_cache_add_seq(kv, id);
    fails_with(rg_attn_decode(be, kv, 0, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "no batch", "no batch");
    rg_kv_cache_append(kv, 1, &id, &one);
    CHECK(rg_kv_cache_set_batch(kv, 1, &id, cu) == RG_OK, "set_batch: %s", rg_last_error());
    CHECK(rg_kv_cache_write(kv, 0, kvr, 0, kvr + 16 * 0, 0) == RG_OK, "write: %s", rg_last_error());
    fails_with(rg_attn_decode(NULL, kv, 0, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "NULL", "NULL backend");
    fails_with(rg_attn_decode(be, NULL, 0, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "NULL", "NULL kv");
    fails_with(rg_attn_decode(be, kv, 2, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "layer 2", "layer");
    fails_with(rg_attn_decode(be, kv, -1, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "layer -1", "negative layer");
    fails_with(rg_attn_decode(be, kv, 0, 3, 0, q, 0, o), RG_ERR_INVALID_ARG, "n_heads = 3", "heads not multiple");
    fails_with(rg_attn_decode(be, kv, 0, 0, 0, q, 0, o), RG_ERR_INVALID_ARG, "n_heads = 0", "zero heads");
    fails_with(rg_attn_decode(be, kv, 0, 4, 0, q, 63, o), RG_ERR_INVALID_ARG, "stride_q = 63", "stride_q");
    fails_with(rg_attn_decode(be, kv, 0, 4, NAN, q, 0, o), RG_ERR_INVALID_ARG, "not finite", "nan scale");
    fails_with(rg_attn_decode(be, kv, 0, 4, 0, NULL, 0, o), RG_ERR_INVALID_ARG, "NULL", "NULL q");
    fails_with(rg_attn_decode(be, kv, 0, 4, 0, q, 0, NULL), RG_ERR_INVALID_ARG, "NULL", "NULL o");
    rg_backend *other;
    if (rg_backend_init(RG_BACKEND_CPU, 1, &other) == RG_OK) {
        fails_with(rg_attn_decode(other, kv, 0, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "another backend", "other be");
        rg_backend_free(other);
    }
    CHECK(rg_attn_decode(be, kv, 0, 4, 0, q, 0, o) == RG_OK, "valid decode: %s", rg_last_error());
    /* One key: the output is that key's value row (zeros here) for every head. */
    bool zero = true;
    for (int i = 0; i < 64; i++) zero = zero && o[i] == 0.0f;
    CHECK(zero, "decode over one zero value row is not zero");
    rg_kv_cache_add_seq(kv, 9);  /* any change makes the batch stale */
    fails_with(rg_attn_decode(be, kv, 0, 4, 0, q, 0, o), RG_ERR_INVALID_ARG, "stale", "stale batch");
    rg_kv_cache_free(kv);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_attention_decode", &r);
    if (rg_backend_init(RG_BACKEND_CPU, 0, &be) != RG_OK) { printf("no cpu backend: %s\n", rg_last_error()); return 1; }
    test_single_lengths(&r);
    test_mixed(&r, rg_test_quick());
    test_bad_args();
    rg_backend_free(be);
    return rg_test_finish();
}
