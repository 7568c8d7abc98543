/* test_attention_api.c — bad inputs to rg_attn_forward / rg_attn_backward:
 * each returns its documented status with a message naming the problem, and
 * writes nothing (outputs are sentinel-guarded and pre-filled). */
#include "check.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { B = 2, H = 4, HK = 2, D = 16, T = 7 };
static const float FILL = -42.0f;

static rg_backend *be;
static float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
static int32_t cu_q[B + 1] = {0, 3, 7}, cu_k[B + 1] = {0, 3, 7};

static void fill_outputs(void) {
    for (int i = 0; i < T * H * D; i++) o[i] = dq[i] = FILL;
    for (int i = 0; i < T * HK * D; i++) dk[i] = dv[i] = FILL;
    for (int i = 0; i < T * H; i++) lse[i] = FILL;
}

static bool untouched(const float *p, int n) {
    for (int i = 0; i < n; i++) if (p[i] != FILL) return false;
    return true;
}

static rg_attn_desc good(void) {
    rg_attn_desc d = {0};
    d.batch = B;
    d.n_heads = H;
    d.n_kv_heads = HK;
    d.head_dim = D;
    d.cu_seqlens_q = cu_q;
    d.cu_seqlens_k = cu_k;
    d.max_seqlen_q = d.max_seqlen_k = 4;
    d.causal = true;
    return d;
}

/* Runs forward and backward with desc d (and the given pointers); both must
 * fail with `want`, leave a message containing `needle`, and write nothing. */
static void expect(const char *what, const rg_attn_desc *d, rg_status want, const char *needle,
                   const float *qq, const float *kk, const float *vv, float *oo, const float *dd,
                   float *dqq, float *dkk, float *dvv) {
    fill_outputs();
    rg_status s = rg_attn_forward(be, d, qq, kk, vv, oo, lse);
    CHECK(s == want, "%s: forward returned '%s', expected '%s'", what, rg_status_str(s), rg_status_str(want));
    CHECK(strstr(rg_last_error(), needle) != NULL, "%s: forward message '%s' lacks '%s'", what, rg_last_error(), needle);
    CHECK(untouched(o, T * H * D) && untouched(lse, T * H), "%s: forward wrote an output", what);
    s = rg_attn_backward(be, d, qq, kk, vv, oo ? oo : o, lse, dd, dqq, dkk, dvv);
    CHECK(s == want, "%s: backward returned '%s', expected '%s'", what, rg_status_str(s), rg_status_str(want));
    CHECK(strstr(rg_last_error(), needle) != NULL, "%s: backward message '%s' lacks '%s'", what, rg_last_error(), needle);
    CHECK(untouched(dq, T * H * D) && untouched(dk, T * HK * D) && untouched(dv, T * HK * D),
          "%s: backward wrote an output", what);
}

#define EXPECT(what, d, want, needle) expect(what, d, want, needle, q, k, v, o, dout, dq, dk, dv)

int main(void) {
    rg_rng rng;
    rg_test_init("test_attention_api", &rng);
    if (!CHECK(rg_backend_init(RG_BACKEND_CPU, 0, &be) == RG_OK, "cpu backend")) return rg_test_finish();
    q = rg_guarded_alloc(T * H * D);
    k = rg_guarded_alloc(T * HK * D);
    v = rg_guarded_alloc(T * HK * D);
    dout = rg_guarded_alloc(T * H * D);
    o = rg_guarded_alloc(T * H * D);
    lse = rg_guarded_alloc(T * H);
    dq = rg_guarded_alloc(T * H * D);
    dk = rg_guarded_alloc(T * HK * D);
    dv = rg_guarded_alloc(T * HK * D);
    rg_rng_fill_uniform(&rng, q, T * H * D, -1, 1);
    rg_rng_fill_uniform(&rng, k, T * HK * D, -1, 1);
    rg_rng_fill_uniform(&rng, v, T * HK * D, -1, 1);
    rg_rng_fill_uniform(&rng, dout, T * H * D, -1, 1);

    /* the good description works for both algorithms (so the failures below are the bad field's) */
    for (int algo = RG_ATTN_AUTO; algo <= RG_ATTN_FLASH; algo++) {
        rg_attn_desc d = good();
        d.algo = (rg_attn_algo)algo;
        CHECK(rg_attn_forward(be, &d, q, k, v, o, lse) == RG_OK, "good desc, algo %d: %s", algo, rg_last_error());
        CHECK(rg_attn_backward(be, &d, q, k, v, o, lse, dout, dq, dk, dv) == RG_OK, "good backward: %s", rg_last_error());
    }

    rg_attn_desc d = good();
    CHECK(rg_attn_forward(NULL, &d, q, k, v, o, lse) == RG_ERR_INVALID_ARG, "NULL backend");
    CHECK(strstr(rg_last_error(), "backend") != NULL, "NULL backend message: %s", rg_last_error());
    EXPECT("NULL desc", NULL, RG_ERR_INVALID_ARG, "desc");

    d = good(); d.batch = 0;                 EXPECT("batch 0", &d, RG_ERR_INVALID_ARG, "batch = 0");
    d = good(); d.batch = -3;                EXPECT("batch < 0", &d, RG_ERR_INVALID_ARG, "batch = -3");
    d = good(); d.n_kv_heads = 3;            EXPECT("h % h_kv != 0", &d, RG_ERR_INVALID_ARG, "n_kv_heads = 3");
    d = good(); d.n_kv_heads = 0;            EXPECT("h_kv = 0", &d, RG_ERR_INVALID_ARG, "n_kv_heads = 0");
    d = good(); d.n_heads = 0;               EXPECT("h = 0", &d, RG_ERR_INVALID_ARG, "n_heads = 0");
    d = good(); d.head_dim = 12;             EXPECT("d = 12", &d, RG_ERR_INVALID_ARG, "head_dim = 12");
    d = good(); d.head_dim = 264;            EXPECT("d = 264", &d, RG_ERR_INVALID_ARG, "head_dim = 264");
    d = good(); d.head_dim = 0;              EXPECT("d = 0", &d, RG_ERR_INVALID_ARG, "head_dim = 0");
    d = good(); d.softmax_scale = NAN;       EXPECT("scale NaN", &d, RG_ERR_INVALID_ARG, "softmax_scale");
    d = good(); d.softmax_scale = INFINITY;  EXPECT("scale inf", &d, RG_ERR_INVALID_ARG, "softmax_scale");
    d = good(); d.algo = (rg_attn_algo)7;    EXPECT("unknown algo", &d, RG_ERR_INVALID_ARG, "algo 7");
    d = good(); d.stride_q = H * D - 8;      EXPECT("stride_q too small", &d, RG_ERR_INVALID_ARG, "strides");
    d = good(); d.stride_k = -1;             EXPECT("stride_k negative", &d, RG_ERR_INVALID_ARG, "strides");
    d = good(); d.max_seqlen_q = -1;         EXPECT("max_seqlen < 0", &d, RG_ERR_INVALID_ARG, "max_seqlen");

    /* cu_seqlens */
    int32_t bad[B + 1];
    d = good(); d.cu_seqlens_q = NULL;       EXPECT("cu_seqlens_q NULL", &d, RG_ERR_INVALID_ARG, "cu_seqlens_q is NULL");
    d = good(); d.cu_seqlens_k = NULL;       EXPECT("cu_seqlens_k NULL", &d, RG_ERR_INVALID_ARG, "cu_seqlens_k is NULL");
    memcpy(bad, (int32_t[]){1, 3, 7}, sizeof bad);
    d = good(); d.cu_seqlens_q = bad;        EXPECT("cu_q[0] != 0", &d, RG_ERR_INVALID_ARG, "cu_seqlens_q[0] = 1");
    memcpy(bad, (int32_t[]){0, 3, 2}, sizeof bad);
    d = good(); d.cu_seqlens_k = bad;        EXPECT("cu_k decreasing", &d, RG_ERR_INVALID_ARG, "decreases at index 2");
    memcpy(bad, (int32_t[]){0, 2, 7}, sizeof bad);
    d = good(); d.cu_seqlens_q = bad;        EXPECT("length > max_seqlen_q", &d, RG_ERR_INVALID_ARG, "above max_seqlen 4");
    d = good(); d.max_seqlen_k = 3;          EXPECT("length > max_seqlen_k", &d, RG_ERR_INVALID_ARG, "length 4 in cu_seqlens_k");

    /* masks */
    uint8_t mask[3 * 3 + 4 * 4];
    memset(mask, 1, sizeof mask);
    d = good(); d.mask_kind = RG_ATTN_MASK_BOOL; d.mask = mask;
    EXPECT("mask with flash", &d, RG_ERR_UNSUPPORTED, "RG_ATTN_REFERENCE");
    d.algo = RG_ATTN_AUTO;                   EXPECT("mask with auto", &d, RG_ERR_UNSUPPORTED, "RG_ATTN_REFERENCE");
    d.algo = RG_ATTN_REFERENCE; d.mask = NULL;
    EXPECT("mask kind without mask", &d, RG_ERR_INVALID_ARG, "mask is NULL");
    d = good(); d.mask_kind = (rg_attn_mask_kind)9; d.mask = mask; d.algo = RG_ATTN_REFERENCE;
    EXPECT("unknown mask kind", &d, RG_ERR_INVALID_ARG, "mask_kind 9");

    /* NULL tensors */
    d = good();
    expect("q NULL", &d, RG_ERR_INVALID_ARG, "NULL", NULL, k, v, o, dout, dq, dk, dv);
    expect("k NULL", &d, RG_ERR_INVALID_ARG, "NULL", q, NULL, v, o, dout, dq, dk, dv);
    expect("v NULL", &d, RG_ERR_INVALID_ARG, "NULL", q, k, NULL, o, dout, dq, dk, dv);
    fill_outputs();
    CHECK(rg_attn_forward(be, &d, q, k, v, NULL, lse) == RG_ERR_INVALID_ARG, "o NULL");
    CHECK(untouched(lse, T * H), "o NULL: lse written");
    const rg_status s1 = rg_attn_backward(be, &d, q, k, v, o, lse, NULL, dq, dk, dv);
    const rg_status s2 = rg_attn_backward(be, &d, q, k, v, o, NULL, dout, dq, dk, dv);
    const rg_status s3 = rg_attn_backward(be, &d, q, k, v, NULL, lse, dout, dq, dk, dv);
    const rg_status s4 = rg_attn_backward(be, &d, q, k, v, o, lse, dout, NULL, dk, dv);
    const rg_status s5 = rg_attn_backward(be, &d, q, k, v, o, lse, dout, dq, NULL, dv);
    const rg_status s6 = rg_attn_backward(be, &d, q, k, v, o, lse, dout, dq, dk, NULL);
    CHECK(s1 == RG_ERR_INVALID_ARG && s2 == RG_ERR_INVALID_ARG && s3 == RG_ERR_INVALID_ARG &&
          s4 == RG_ERR_INVALID_ARG && s5 == RG_ERR_INVALID_ARG && s6 == RG_ERR_INVALID_ARG,
          "backward NULL dout/lse/o/dq/dk/dv: %d %d %d %d %d %d", s1, s2, s3, s4, s5, s6);
    CHECK(untouched(dq, T * H * D) && untouched(dk, T * HK * D) && untouched(dv, T * HK * D),
          "backward with a NULL pointer wrote an output");

    rg_guarded_ok(o, T * H * D, "o");
    rg_guarded_ok(lse, T * H, "lse");
    rg_guarded_ok(dq, T * H * D, "dq");
    rg_guarded_ok(dk, T * HK * D, "dk");
    rg_guarded_ok(dv, T * HK * D, "dv");
    rg_guarded_free(q); rg_guarded_free(k); rg_guarded_free(v); rg_guarded_free(dout);
    rg_guarded_free(o); rg_guarded_free(lse); rg_guarded_free(dq); rg_guarded_free(dk); rg_guarded_free(dv);
    rg_backend_free(be);
    return rg_test_finish();
}
