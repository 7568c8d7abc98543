/* test_decode_append.c — rg_attn_decode_append (the decode step's kv_write +
 * decode attention in one op) on the CPU backend: output and cache bit for bit
 * equal to rg_kv_cache_write followed by rg_attn_decode on a twin cache (the
 * op's CPU reference), through the backend's op and through the composition
 * used when a backend lacks it; lengths 1..1000 with one huge among tiny,
 * MHA/GQA/MQA, odd block sizes, new rows as fused-qkv views or packed,
 * a fragmented pool; and the documented errors (a batch that is not one new
 * token per sequence, NULL or short rows). */
#include "backend.h"
#include "check.h"
#include "kv_util.h"
#include "gen/kv_cache.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rg_backend *be;

static float *randn(rg_rng *r, size_t n) {
    float *x = rg_test_xmalloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = (float)rg_rng_normal(r);
    return x;
}

/* A one-layer cache holding the first len - 1 tokens of each sequence (the
 * same K/V in both twins, blocks in the same fragmented order), then the
 * decode step's batch set: one new token per sequence. NULL on failure. */
static rg_kv_cache *make_cache(uint64_t frag_seed, int32_t n, int32_t hkv, int32_t d, int32_t bs,
                               const int32_t *lens, const float *k, const float *v) {
    int32_t need = 0, row = hkv * d, *ids = rg_test_xmalloc(sizeof(int32_t) * (size_t)n);
    int32_t *cnt = rg_test_xmalloc(sizeof(int32_t) * (size_t)n), *cu = rg_test_xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int32_t b = 0; b < n; b++) need += (lens[b] + bs - 1) / bs;
    rg_kv_cache *kv = NULL;
    bool ok = rg_kv_cache_init(be, 1, hkv, d, bs, need + 5, &kv) == RG_OK;
    if (ok) {
        rg_rng fr;
        rg_rng_seed(&fr, frag_seed);
        kvt_fragment(&fr, kv, need + 5);
        memset(kv->pool, 0xFF, sizeof(float) * 2 * kv->layer_elems);  /* NaN: a read of an unwritten slot shows */
    }
    cu[0] = 0;
    for (int32_t b = 0; ok && b < n; b++) {
        ids[b] = 3 * b + 1;
        cnt[b] = lens[b] - 1;
        cu[b + 1] = cu[b] + cnt[b];
        ok = rg_kv_cache_add_seq(kv, ids[b]) == RG_OK;
    }
    ok = ok && rg_kv_cache_append(kv, n, ids, cnt) == RG_OK && rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK;
    float *pk = rg_test_xmalloc(sizeof(float) * (size_t)(cu[n] + 1) * row);
    float *pv = rg_test_xmalloc(sizeof(float) * (size_t)(cu[n] + 1) * row);
    for (int32_t b = 0, at = 0; ok && b < n; at += lens[b], b++) {
        memcpy(pk + (size_t)cu[b] * row, k + (size_t)at * row, sizeof(float) * (size_t)cnt[b] * row);
        memcpy(pv + (size_t)cu[b] * row, v + (size_t)at * row, sizeof(float) * (size_t)cnt[b] * row);
    }
    ok = ok && rg_kv_cache_write(kv, 0, pk, 0, pv, 0) == RG_OK;
    for (int32_t b = 0; b < n; b++) {
        cnt[b] = 1;
        cu[b + 1] = b + 1;
    }
    ok = ok && rg_kv_cache_append(kv, n, ids, cnt) == RG_OK && rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK;
    CHECK(ok, "make_cache: %s", rg_last_error());
    if (!ok) { rg_kv_cache_free(kv); kv = NULL; }
    free(ids); free(cnt); free(cu); free(pk); free(pv);
    return kv;
}

/* The step through the op (or, with composed, through a table without it)
 * against kv_write + attn_decode on a twin cache: same bits everywhere. */
static void run_case(rg_rng *r, int32_t n, int32_t h, int32_t hkv, int32_t d, int32_t bs, const int32_t *lens,
                     bool fused, bool composed) {
    const int32_t row = hkv * d;
    int32_t total = 0;
    for (int32_t b = 0; b < n; b++) total += lens[b];
    float *k = randn(r, (size_t)total * row), *v = randn(r, (size_t)total * row);
    const int32_t fw = (h + 2 * hkv) * d, sq = fused ? fw : h * d, sn = fused ? fw : row;
    float *q = randn(r, (size_t)n * sq), *nk = fused ? q + (size_t)h * d : randn(r, (size_t)n * row);
    float *nv = fused ? q + (size_t)(h + hkv) * d : randn(r, (size_t)n * row);
    for (int32_t b = 0, at = 0; b < n; b++) {  /* the new rows are the sequences' last K/V */
        at += lens[b];
        memcpy(nk + (size_t)b * sn, k + (size_t)(at - 1) * row, sizeof(float) * row);
        memcpy(nv + (size_t)b * sn, v + (size_t)(at - 1) * row, sizeof(float) * row);
    }
    uint64_t frag = rg_rng_u64(r);
    rg_kv_cache *a = make_cache(frag, n, hkv, d, bs, lens, k, v), *ref = make_cache(frag, n, hkv, d, bs, lens, k, v);
    float *oa = randn(r, (size_t)n * h * d), *oref = randn(r, (size_t)n * h * d);
    char label[160];
    snprintf(label, sizeof label, "n %d h %d/%d d %d bs %d lens[0] %d%s%s", n, h, hkv, d, bs, lens[0],
             fused ? " fused" : "", composed ? " composed" : "");
    if (a && ref) {
        rg_backend_ops without = *be->ops;
        const rg_backend_ops *saved = be->ops;
        without.attn_decode_append = NULL;
        if (composed) be->ops = &without;
        rg_status s = rg_attn_decode_append(be, a, 0, h, 0.0f, q, sq, nk, sn, nv, sn, oa);
        be->ops = saved;
        bool ok = CHECK(s == RG_OK, "%s: append: %s", label, rg_last_error()) &&
                  CHECK(rg_kv_cache_write(ref, 0, nk, sn, nv, sn) == RG_OK &&
                        rg_attn_decode(be, ref, 0, h, 0.0f, q, sq, oref) == RG_OK, "%s: reference: %s", label,
                        rg_last_error());
        if (ok) {
            CHECK(memcmp(oa, oref, sizeof(float) * (size_t)n * h * d) == 0, "%s: output differs from kv_write + "
                  "attn_decode", label);
            CHECK(memcmp(a->pool, ref->pool, sizeof(float) * 2 * a->layer_elems) == 0,
                  "%s: cache differs from kv_write's", label);
            bool finite = true;
            for (size_t i = 0; i < (size_t)n * h * d; i++) finite &= isfinite(oa[i]);
            CHECK(finite, "%s: output not finite (an unwritten slot was read)", label);
        }
    }
    rg_kv_cache_free(a);
    rg_kv_cache_free(ref);
    free(k); free(v); free(q); free(oa); free(oref);
    if (!fused) { free(nk); free(nv); }
}

static void test_cases(rg_rng *r, bool quick) {
    static const int32_t heads[][2] = {{8, 8}, {8, 2}, {8, 1}, {12, 12}};
    static const int32_t one[] = {1, 2, 16, 17, 300, 1000};
    for (size_t i = 0; i < sizeof one / sizeof *one; i++)
        for (int hh = 0; hh < 4; hh++)
            run_case(r, 1, heads[hh][0], heads[hh][1], (int32_t[]){8, 64, 40, 128}[hh],
                     (int32_t[]){16, 1, 7, 33}[(i + hh) % 4], &one[i], hh % 2 == 0, hh == 3);
    for (int it = 0; it < (quick ? 4 : 12); it++) {
        int32_t n = (int32_t[]){2, 5, 16, 33}[it % 4], *lens = rg_test_xmalloc(sizeof(int32_t) * (size_t)n);
        for (int32_t b = 0; b < n; b++) lens[b] = 1 + (int32_t)rg_rng_below(r, rg_rng_below(r, 2) ? 4 : 200);
        lens[rg_rng_below(r, (uint64_t)n)] = (quick ? 300 : 900) + (int32_t)rg_rng_below(r, 200);
        int hh = (int)rg_rng_below(r, 4);
        run_case(r, n, heads[hh][0], heads[hh][1], 8 * (1 + (int32_t)rg_rng_below(r, 16)),
                 (int32_t[]){16, 1, 5, 31}[rg_rng_below(r, 4)], lens, rg_rng_below(r, 2), it % 3 == 2);
        free(lens);
    }
}

/* Documented errors, with nothing written on failure. */
static void test_errors(void) {
    const int32_t h = 4, hkv = 2, d = 8, row = hkv * d;
    rg_kv_cache *kv = NULL;
    if (!CHECK(rg_kv_cache_init(be, 1, hkv, d, 4, 8, &kv) == RG_OK, "errors: init: %s", rg_last_error())) return;
    int32_t ids[2] = {7, 9}, two[2] = {2, 1}, cu[3] = {0, 2, 3};
    float q[2 * 4 * 8] = {0}, nk[2 * 16] = {0}, o[2 * 4 * 8];
    rg_kv_cache_add_seq(kv, 7);
    rg_kv_cache_add_seq(kv, 9);
    /* a prefill batch: sequence 7 brings two tokens */
    bool ok = rg_kv_cache_append(kv, 2, ids, two) == RG_OK && rg_kv_cache_set_batch(kv, 2, ids, cu) == RG_OK;
    CHECK(ok, "errors: batch: %s", rg_last_error());
    float *before = rg_test_xmalloc(sizeof(float) * 2 * kv->layer_elems);
    memcpy(before, kv->pool, sizeof(float) * 2 * kv->layer_elems);
    CHECK(rg_attn_decode_append(be, kv, 0, h, 0.0f, q, 0, nk, 0, nk, 0, o) == RG_ERR_INVALID_ARG &&
          strstr(rg_last_error(), "new tokens") != NULL, "errors: prefill batch accepted (%s)", rg_last_error());
    int32_t ones[2] = {1, 1}, cu1[3] = {0, 1, 2};
    ok = rg_kv_cache_append(kv, 2, ids, ones) == RG_OK && rg_kv_cache_set_batch(kv, 2, ids, cu1) == RG_OK;
    CHECK(ok, "errors: decode batch: %s", rg_last_error());
    CHECK(rg_attn_decode_append(be, kv, 0, h, 0.0f, q, 0, NULL, 0, nk, 0, o) == RG_ERR_INVALID_ARG,
          "errors: NULL k accepted");
    CHECK(rg_attn_decode_append(be, kv, 0, h, 0.0f, q, 0, nk, row - 1, nk, 0, o) == RG_ERR_INVALID_ARG,
          "errors: stride_k below h_kv * d accepted");
    CHECK(rg_attn_decode_append(be, kv, 1, h, 0.0f, q, 0, nk, 0, nk, 0, o) == RG_ERR_INVALID_ARG,
          "errors: layer 1 of a one-layer cache accepted");
    CHECK(rg_attn_decode_append(be, kv, 0, 3, 0.0f, q, 0, nk, 0, nk, 0, o) == RG_ERR_INVALID_ARG,
          "errors: 3 heads over 2 kv heads accepted");
    CHECK(memcmp(before, kv->pool, sizeof(float) * 2 * kv->layer_elems) == 0, "errors: a failed call wrote the cache");
    CHECK(rg_attn_decode_append(be, kv, 0, h, 0.0f, q, 0, nk, 0, nk, 0, o) == RG_OK, "errors: valid call: %s",
          rg_last_error());
    free(before);
    rg_kv_cache_free(kv);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_decode_append", &r);
    if (rg_backend_init(RG_BACKEND_CPU, 0, &be) != RG_OK) {
        printf("test_decode_append: no cpu backend: %s\n", rg_last_error());
        return 1;
    }
    test_cases(&r, rg_test_quick());
    test_errors();
    rg_backend_free(be);
    return rg_test_finish();
}
