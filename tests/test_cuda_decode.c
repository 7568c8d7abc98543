/* test_cuda_decode.c — the CUDA backend's generation ops: decode attention
 * over the paged KV cache through the public API (rg_kv_cache_* and
 * rg_attn_decode on a CUDA backend) against a double reference and against
 * the CPU backend's op on the same bf16-rounded inputs; kv_write and
 * gather_rows (called through the op table) bit-exact against host loops.
 * Lengths 0, 1, 15, 16, 17, 255, 256, 257, 1000, 4000, one huge among many
 * tiny, batches of 1 to 64, MHA/GQA/MQA, head dims 8 to 256, block sizes 16
 * and odd ones, q as a view into a fused qkv buffer, a fragmented pool
 * poisoned with NaN (a read of an unwritten slot shows), sentinels around
 * every device output, the automatic split over the keys and a forced one,
 * each call into freshly poisoned output (a split sequence whose merge
 * counter a previous call left set would skip its merge and show).
 * The decode step's op (rg_attn_decode_append: the new token's k, v written
 * by the attention kernel itself, its old K/V read before the grid
 * dependency) on the same cases: the output as above, and both layer pools
 * bit for bit what they were plus exactly the new rows at their slots (a
 * stray or missing write shows), new rows as fused-qkv views, packed, or
 * with an odd stride (the kernel's element path), calls repeated.
 * Skips (77) without a CUDA device.
 *
 * Threshold, relative L2 per sequence and head group: 1.25u with u = 2^-8
 * (bf16's unit roundoff, as in test_cuda_ops.c). The inputs are bf16 and
 * exact in both the reference and the kernel; the kernel computes in fp32 and
 * rounds o once to bf16, which moves each element by at most u relative (so
 * at most u in L2); fp32 accumulation over up to 4000 keys adds ~1e-5. One
 * dropped key of a 4000-key sequence moves o by about 4u, one dropped block
 * of 16 far more, so the threshold catches them. A length-0 sequence must give
 * exact zeros. */
#include "backend.h"
#include "check.h"
#include "kv_util.h"
#include "ops_ref.h"
#include "core/dtype.h"
#include "gen/kv_cache.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U_BF16 (1.0 / 256.0)
#define TOL (1.25 * U_BF16)
#define GUARD 64                /* sentinel elements on each side of a device output */
#define SENT_BF16 0x4499        /* bf16 of 1224.0: never produced by these outputs */
#define NAN_BF16 0x7FC1         /* fills the pool: a read of an unwritten slot gives NaN */

#ifdef RAGGED_HAVE_CUDA
void rg_cuda_decode_force_partition(int keys);  /* lab hook of src/cuda/attention_decode.cu */
#else
static void rg_cuda_decode_force_partition(int keys) { (void)keys; }
#endif

static rg_backend *gpu, *cpu;
static int32_t dflt_append_max; /* the backend's decode_append_max_seqs (main sets 0: the fused op everywhere) */
static double worst_gpu, worst_cpu;

/* n floats, standard normal rounded to bf16 (exact in both backends). */
static float *randn_bf16(rg_rng *r, size_t n) {
    float *x = rg_test_xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = rg_bf16_to_f32(rg_f32_to_bf16((float)rg_rng_normal(r)));
    return x;
}

/* A device copy of n host floats as bf16 (NULL on failure, reported). */
static void *to_gpu(const float *x, size_t n) {
    void *d = NULL;
    if (!CHECK(rg_buffer_alloc(gpu, 2 * (n ? n : 1), &d) == RG_OK, "alloc: %s", rg_last_error())) return NULL;
    if (n && !CHECK(rg_buffer_upload_f32(gpu, d, RG_DTYPE_BF16, x, n) == RG_OK, "upload: %s", rg_last_error())) {
        rg_buffer_free(gpu, d);
        return NULL;
    }
    return d;
}

/* Per-sequence relative L2 of got against ref (n, h*d); exact zeros where ref is 0. */
static double compare(const char *label, const char *what, const float *got, const double *ref, int32_t n,
                      int64_t w, double *worst_all) {
    double worst = 0;
    int32_t worst_b = -1;
    bool nan = false, zeros_ok = true;
    for (int32_t b = 0; b < n; b++) {
        double num = 0, den = 0;
        for (int64_t i = (int64_t)b * w; i < (int64_t)(b + 1) * w; i++) {
            if (isnan(got[i])) nan = true;
            double e = got[i] - ref[i];
            num += e * e;
            den += ref[i] * ref[i];
        }
        if (den == 0) { zeros_ok &= num == 0; continue; }
        double e = sqrt(num / den);
        if (e > worst) { worst = e; worst_b = b; }
    }
    if (worst > *worst_all) *worst_all = worst;
    CHECK(!nan && zeros_ok && worst <= TOL, "%s: %s: NaN %d, zero rows exact %d, rel err %.3g (%.2fu) > %.3g at "
          "sequence %d of %d", label, what, nan, zeros_ok, worst, worst / U_BF16, TOL, worst_b, n);
    return worst;
}

typedef struct dcase {
    int32_t n, h, hkv, d, bs;
    const int32_t *lens;
    float scale;   /* <= 0: default */
    bool fused;    /* q (and layer 1's new k, v) are views into one (n, (h + 2 hkv) d) buffer; lens >= 1 */
    bool append;   /* layer 1's new k, v go in through rg_attn_decode_append, not kv_write; lens >= 1 */
} dcase;

/* Layer 1's decode: rg_attn_decode, or with c->append the step's op with the
 * new rows at nk, nv (stride ns elements). */
static rg_status decode_call(const dcase *c, rg_kv_cache *kv, const void *dq, int32_t sq, const void *nk,
                             const void *nv, int32_t ns, void *o) {
    if (!c->append) return rg_attn_decode(gpu, kv, 1, c->h, c->scale, dq, sq, o);
    return rg_attn_decode_append(gpu, kv, 1, c->h, c->scale, dq, sq, nk, ns, nv, ns, o);
}

/* The decode through the CPU backend's op on the same (fp32, bf16-exact) data:
 * one layer, all tokens written in one step. Returns false if it failed. */
static bool cpu_decode(const dcase *c, const int32_t *koff, const float *k, const float *v, const float *q,
                       int64_t sq, float *o) {
    const int32_t n = c->n, row = c->hkv * c->d;
    int32_t need = 0, *ids = rg_test_xmalloc(sizeof(int32_t) * (size_t)n), *cu = rg_test_xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int32_t b = 0; b < n; b++) need += (c->lens[b] + 15) / 16;
    rg_kv_cache *kv = NULL;
    bool ok = CHECK(rg_kv_cache_init(cpu, 1, c->hkv, c->d, 16, need + 1, &kv) == RG_OK, "cpu init: %s",
                    rg_last_error());
    cu[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        ids[b] = b;
        cu[b + 1] = koff[b + 1];
        if (ok) ok = rg_kv_cache_add_seq(kv, b) == RG_OK;
    }
    ok = ok && rg_kv_cache_append(kv, n, ids, c->lens) == RG_OK && rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK;
    ok = ok && rg_kv_cache_write(kv, 0, k, row, v, row) == RG_OK;
    ok = ok && rg_attn_decode(cpu, kv, 0, c->h, c->scale, q, (int32_t)sq, o) == RG_OK;
    CHECK(ok, "cpu decode: %s", rg_last_error());
    rg_kv_cache_free(kv);
    free(ids);
    free(cu);
    return ok;
}

/* Fills a 2-layer CUDA cache in two steps (all tokens but the last as one
 * packed batch, then one token per sequence), decodes layer 1 and compares
 * with the double reference and the CPU op. */
static void run_case(rg_rng *r, const dcase *c, const char *label) {
    const int32_t n = c->n, h = c->h, hkv = c->hkv, d = c->d, row = hkv * d;
    int32_t *koff = rg_test_xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    const int32_t need = kvt_offsets(n, c->lens, c->bs, koff), total = koff[n];
    const int32_t n_blocks = need + 3 + (int32_t)rg_rng_below(r, 8);
    rg_kv_cache *kv = NULL;
    if (!CHECK(rg_kv_cache_init(gpu, 2, hkv, d, c->bs, n_blocks, &kv) == RG_OK, "%s: init: %s", label,
               rg_last_error())) { free(koff); return; }
    {   /* NaN everywhere, so that a read of a slot nothing wrote shows in the output */
        size_t el = 2 * 2 * kv->layer_elems;
        uint16_t *nan = rg_test_xmalloc(2 * el);
        for (size_t i = 0; i < el; i++) nan[i] = NAN_BF16;
        CHECK(rg_buffer_upload(gpu, kv->pool, nan, 2 * el) == RG_OK, "%s: poison: %s", label, rg_last_error());
        free(nan);
    }
    kvt_fragment(r, kv, n_blocks);

    /* Host K/V per layer (total, hkv, d), contiguous; q (n, sq). */
    float *k[2] = {randn_bf16(r, (size_t)total * row), randn_bf16(r, (size_t)total * row)};
    float *v[2] = {randn_bf16(r, (size_t)total * row), randn_bf16(r, (size_t)total * row)};
    const int64_t fw = (int64_t)(h + 2 * hkv) * d, sq = c->fused ? fw : (int64_t)h * d;
    float *qkv = randn_bf16(r, (size_t)(n * sq));
    int32_t *ids = rg_test_xmalloc(sizeof(int32_t) * (size_t)n), *cnt = rg_test_xmalloc(sizeof(int32_t) * (size_t)n);
    int32_t *cu = rg_test_xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int32_t b = 0; b < n; b++) {
        ids[b] = 5 * (n - b) + 2;
        rg_kv_cache_add_seq(kv, ids[b]);
    }
    /* Step 1: the first len - 1 tokens of each sequence, packed. */
    cu[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        cnt[b] = c->lens[b] > 0 ? c->lens[b] - 1 : 0;
        cu[b + 1] = cu[b] + cnt[b];
    }
    /* Packed new rows of either step (at most `total` of them). */
    float *pk = rg_test_xmalloc(sizeof(float) * (size_t)total * row), *pv = rg_test_xmalloc(sizeof(float) * (size_t)total * row);
    bool ok = CHECK(rg_kv_cache_append(kv, n, ids, cnt) == RG_OK, "%s: append 1: %s", label, rg_last_error()) &&
              CHECK(rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK, "%s: set_batch 1: %s", label, rg_last_error());
    for (int l = 0; ok && l < 2; l++) {
        for (int32_t b = 0; b < n; b++) {
            memcpy(pk + (size_t)cu[b] * row, k[l] + (size_t)koff[b] * row, sizeof(float) * (size_t)cnt[b] * row);
            memcpy(pv + (size_t)cu[b] * row, v[l] + (size_t)koff[b] * row, sizeof(float) * (size_t)cnt[b] * row);
        }
        void *dk = to_gpu(pk, (size_t)cu[n] * row), *dv = to_gpu(pv, (size_t)cu[n] * row);
        ok = dk && dv && CHECK(rg_kv_cache_write(kv, l, dk, 0, dv, 0) == RG_OK, "%s: write 1: %s", label,
                               rg_last_error());
        rg_buffer_free(gpu, dk);
        rg_buffer_free(gpu, dv);
    }
    /* Step 2: the last token of each sequence of length >= 1; for layer 1 of a
     * fused case its k and v sit in qkv beside q (new-token order == batch order). */
    cu[0] = 0;
    for (int32_t b = 0; b < n; b++) {
        cnt[b] = c->lens[b] > 0;
        cu[b + 1] = cu[b] + cnt[b];
    }
    for (int32_t b = 0; c->fused && b < n; b++) {
        memcpy(qkv + b * fw + (int64_t)h * d, k[1] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
        memcpy(qkv + b * fw + (int64_t)(h + hkv) * d, v[1] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
    }
    void *dq = to_gpu(qkv, (size_t)(n * sq));
    ok = ok && dq && CHECK(rg_kv_cache_append(kv, n, ids, cnt) == RG_OK, "%s: append 2: %s", label, rg_last_error());
    ok = ok && CHECK(rg_kv_cache_set_batch(kv, n, ids, cu) == RG_OK, "%s: set_batch 2: %s", label, rg_last_error());
    /* Append: layer 1's new rows stay out of the cache; they are views into
     * qkv (fused) or rows of their own, packed or with an odd stride. */
    void *dnew_k = NULL, *dnew_v = NULL;
    int32_t ns = 0;
    if (ok && c->append) {
        if (c->fused) {
            dnew_k = (uint16_t *)dq + (int64_t)h * d;
            dnew_v = (uint16_t *)dq + (int64_t)(h + hkv) * d;
            ns = (int32_t)fw;
        } else {
            ns = row + (int32_t[]){0, 8, 3}[rg_rng_below(r, 3)];
            float *nk = rg_test_xmalloc(sizeof(float) * (size_t)n * ns), *nv = rg_test_xmalloc(sizeof(float) * (size_t)n * ns);
            for (size_t i = 0; i < (size_t)n * ns; i++) nk[i] = nv[i] = NAN;
            for (int32_t b = 0; b < n; b++) {
                memcpy(nk + (size_t)b * ns, k[1] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
                memcpy(nv + (size_t)b * ns, v[1] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
            }
            dnew_k = to_gpu(nk, (size_t)n * ns);
            dnew_v = to_gpu(nv, (size_t)n * ns);
            free(nk);
            free(nv);
            ok = dnew_k && dnew_v;
        }
    }
    for (int l = 0; ok && l < 2; l++) {
        if (l == 1 && c->append) continue;
        if (l == 1 && c->fused) {
            ok = CHECK(rg_kv_cache_write(kv, 1, (uint16_t *)dq + (int64_t)h * d, (int32_t)fw,
                                         (uint16_t *)dq + (int64_t)(h + hkv) * d, (int32_t)fw) == RG_OK,
                       "%s: write fused: %s", label, rg_last_error());
            continue;
        }
        for (int32_t b = 0; b < n; b++) {
            if (!cnt[b]) continue;
            memcpy(pk + (size_t)cu[b] * row, k[l] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
            memcpy(pv + (size_t)cu[b] * row, v[l] + (size_t)(koff[b + 1] - 1) * row, sizeof(float) * row);
        }
        void *dk = to_gpu(pk, (size_t)cu[n] * row), *dv = to_gpu(pv, (size_t)cu[n] * row);
        ok = dk && dv && CHECK(rg_kv_cache_write(kv, l, dk, 0, dv, 0) == RG_OK, "%s: write 2: %s", label,
                               rg_last_error());
        rg_buffer_free(gpu, dk);
        rg_buffer_free(gpu, dv);
    }

    /* Decode into a sentinel-filled output with guards; twice (same bits). */
    const size_t no = (size_t)n * h * d, tot = no + 2 * GUARD;
    uint16_t *host = rg_test_xmalloc(2 * tot), *again = rg_test_xmalloc(2 * tot);
    for (size_t i = 0; i < tot; i++) host[i] = SENT_BF16;
    void *dout = NULL;
    ok = ok && CHECK(rg_buffer_alloc(gpu, 2 * tot, &dout) == RG_OK && rg_buffer_upload(gpu, dout, host, 2 * tot) == RG_OK,
                     "%s: output buffer: %s", label, rg_last_error());
    uint16_t *o_dev = dout ? (uint16_t *)dout + GUARD : NULL;
    const int32_t sqa = c->fused ? (int32_t)fw : 0;
    /* Append: both layers' pools before the call, to check after it that it
     * wrote exactly the new rows of layer 1. */
    const size_t pool_el = 2 * 2 * kv->layer_elems;
    uint16_t *pool_before = NULL;
    if (ok && c->append) {
        pool_before = rg_test_xmalloc(2 * pool_el);
        ok = CHECK(rg_buffer_download(gpu, pool_before, kv->pool, 2 * pool_el) == RG_OK, "%s: pool: %s", label,
                   rg_last_error());
    }
    ok = ok && CHECK(decode_call(c, kv, dq, sqa, dnew_k, dnew_v, ns, o_dev) == RG_OK,
                     "%s: decode: %s", label, rg_last_error());
    ok = ok && CHECK(rg_buffer_download(gpu, host, dout, 2 * tot) == RG_OK, "%s: download: %s", label, rg_last_error());
    if (ok && c->append) {
        uint16_t *pool_after = rg_test_xmalloc(2 * pool_el);
        ok = CHECK(rg_buffer_download(gpu, pool_after, kv->pool, 2 * pool_el) == RG_OK, "%s: pool: %s", label,
                   rg_last_error());
        /* (layer, K|V, n_blocks, bs, hkv, d): layer 1's new rows at the batch's slots */
        const int32_t *slots = kv->h_buf + (size_t)n * kv->b_max_blocks + n;
        for (int32_t b = 0; b < n; b++)
            for (int32_t i = 0; i < row; i++) {
                size_t at = (size_t)slots[b] * row + i;
                pool_before[2 * kv->layer_elems + at] = rg_f32_to_bf16(k[1][(size_t)(koff[b + 1] - 1) * row + i]);
                pool_before[3 * kv->layer_elems + at] = rg_f32_to_bf16(v[1][(size_t)(koff[b + 1] - 1) * row + i]);
            }
        CHECK(!ok || memcmp(pool_before, pool_after, 2 * pool_el) == 0,
              "%s: the cache after the append differs from the cache before plus the new rows at their slots", label);
        free(pool_after);
    }
    free(pool_before);
    /* Sentinels again first: a call that skipped the merge (a split
     * sequence's counter not reset by the previous call) would otherwise
     * leave the first call's output in place and pass. */
    for (size_t i = 0; i < tot; i++) again[i] = SENT_BF16;
    ok = ok && CHECK(rg_buffer_upload(gpu, dout, again, 2 * tot) == RG_OK &&
                     decode_call(c, kv, dq, sqa, dnew_k, dnew_v, ns, o_dev) == RG_OK &&
                     rg_buffer_download(gpu, again, dout, 2 * tot) == RG_OK, "%s: decode again: %s", label,
                     rg_last_error());
    if (ok) {
        bool guards = true;
        for (size_t i = 0; i < GUARD; i++) guards &= host[i] == SENT_BF16 && host[tot - 1 - i] == SENT_BF16;
        CHECK(guards, "%s: a write landed in the guard region", label);
        CHECK(memcmp(host, again, 2 * tot) == 0, "%s: decode is not deterministic", label);
        float *o = rg_test_xmalloc(sizeof(float) * no), *oc = rg_test_xmalloc(sizeof(float) * no);
        for (size_t i = 0; i < no; i++) o[i] = rg_bf16_to_f32(host[GUARD + i]);
        double *ref = rg_test_xmalloc(sizeof(double) * no), scale = c->scale > 0 ? c->scale : 1.0 / sqrt((double)d);
        ref_attn_decode(ref, qkv, sq, k[1], v[1], c->lens, koff, n, h, hkv, d, scale);
        compare(label, "cuda vs double reference", o, ref, n, (int64_t)h * d, &worst_gpu);
        /* The same with another split over the keys (the smallest partition,
         * an odd one, or none): the result must not depend on it. */
        int forced = (int[]){1, 200, 1 << 30}[rg_rng_below(r, 3)];
        rg_cuda_decode_force_partition(forced);
        for (size_t i = 0; i < tot; i++) again[i] = SENT_BF16;
        ok = CHECK(rg_buffer_upload(gpu, dout, again, 2 * tot) == RG_OK, "%s: sentinels: %s", label, rg_last_error());
        char what[64];
        snprintf(what, sizeof what, "cuda (partition %d) vs double reference", forced);
        if (ok && CHECK(decode_call(c, kv, dq, sqa, dnew_k, dnew_v, ns, o_dev) == RG_OK &&
                  rg_buffer_download(gpu, again, dout, 2 * tot) == RG_OK, "%s: forced partition: %s", label,
                  rg_last_error())) {
            float *o2 = rg_test_xmalloc(sizeof(float) * no);
            for (size_t i = 0; i < no; i++) o2[i] = rg_bf16_to_f32(again[GUARD + i]);
            compare(label, what, o2, ref, n, (int64_t)h * d, &worst_gpu);
            free(o2);
        }
        rg_cuda_decode_force_partition(0);
        if (cpu_decode(c, koff, k[1], v[1], qkv, sq, oc)) {
            for (size_t i = 0; i < no; i++) ref[i] = oc[i];
            compare(label, "cuda vs cpu op", o, ref, n, (int64_t)h * d, &worst_cpu);
        }
        free(o);
        free(oc);
        free(ref);
    }
    rg_buffer_free(gpu, dout);
    if (c->append && !c->fused) {
        rg_buffer_free(gpu, dnew_k);
        rg_buffer_free(gpu, dnew_v);
    }
    rg_buffer_free(gpu, dq);
    free(host);
    free(again);
    free(pk);
    free(pv);
    free(qkv);
    for (int l = 0; l < 2; l++) { free(k[l]); free(v[l]); }
    free(ids);
    free(cnt);
    free(cu);
    free(koff);
    rg_kv_cache_free(kv);
}

static const int32_t head_dims[] = {64, 128, 8, 40, 256, 96, 200};

/* One sequence of each awkward length, every kv-head layout. */
static void test_lengths(rg_rng *r, bool quick) {
    static const int32_t lens[] = {0, 1, 15, 16, 17, 255, 256, 257, 1000, 4000};
    static const int32_t heads[][2] = {{8, 8}, {8, 2}, {8, 1}};
    static const int32_t bss[] = {16, 7, 1, 33};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        if (quick && lens[i] > 1000) continue;
        for (int hh = 0; hh < 3; hh++) {
            int32_t d = i < 2 ? head_dims[hh] : head_dims[rg_rng_below(r, 7)];
            dcase c = {.n = 1, .h = heads[hh][0], .hkv = heads[hh][1], .d = d,
                       .bs = bss[(i + hh) % 4], .lens = &lens[i], .fused = lens[i] > 0 && hh == 1};
            for (int ap = 0; ap < 2; ap++) {
                if (ap && lens[i] == 0) continue;  /* a decode step's sequences hold their new token */
                c.append = ap;
                char label[128];
                snprintf(label, sizeof label, "len %d h %d/%d d %d bs %d%s%s", lens[i], c.h, c.hkv, d, c.bs,
                         c.fused ? " fused" : "", ap ? " append" : "");
                run_case(r, &c, label);
            }
        }
    }
}

/* Batches of mixed lengths, one huge among many tiny. */
static void test_batches(rg_rng *r, bool quick) {
    static const int32_t sizes[] = {1, 2, 5, 16, 33, 64};
    static const int32_t heads[][2] = {{12, 12}, {12, 3}, {12, 1}, {6, 2}, {16, 4}};
    const int rounds = quick ? 6 : 18;
    for (int it = 0; it < rounds; it++) {
        int32_t n = sizes[it % 6];
        int32_t *lens = rg_test_xmalloc(sizeof(int32_t) * (size_t)n);
        bool fused = rg_rng_below(r, 2), append = it % 2 == 1;
        for (int32_t b = 0; b < n; b++) {
            uint64_t kind = rg_rng_below(r, 4);
            lens[b] = kind == 0 ? (int32_t)rg_rng_below(r, 3) : kind == 1 ? 14 + (int32_t)rg_rng_below(r, 5)
                                                                          : 1 + (int32_t)rg_rng_below(r, 300);
            if ((fused || append) && lens[b] == 0) lens[b] = 1;
        }
        lens[rg_rng_below(r, (uint64_t)n)] = (quick ? 700 : 3000) + (int32_t)rg_rng_below(r, 1200);
        int hh = (int)rg_rng_below(r, 5);
        dcase c = {.n = n, .h = heads[hh][0], .hkv = heads[hh][1], .d = head_dims[rg_rng_below(r, 7)],
                   .bs = (int32_t[]){16, 16, 1, 5, 31}[rg_rng_below(r, 5)], .lens = lens,
                   .scale = rg_rng_below(r, 2) ? 0.0f : 0.05f + (float)rg_rng_uniform(r), .fused = fused,
                   .append = append};
        char label[128];
        snprintf(label, sizeof label, "batch %d h %d/%d d %d bs %d%s%s", n, c.h, c.hkv, c.d, c.bs,
                 fused ? " fused" : "", append ? " append" : "");
        run_case(r, &c, label);
        free(lens);
    }
    /* The benchmark's shape: GPT-2 124M heads, lengths uniform in [16, 640]. */
    int32_t n = quick ? 16 : 64, *lens = rg_test_xmalloc(sizeof(int32_t) * (size_t)n);
    for (int32_t b = 0; b < n; b++) lens[b] = 16 + (int32_t)rg_rng_below(r, 625);
    dcase c = {.n = n, .h = 12, .hkv = 12, .d = 64, .bs = 16, .lens = lens, .fused = true};
    run_case(r, &c, "gpt2 batch, lengths in [16, 640]");
    c.append = true;
    run_case(r, &c, "gpt2 batch, lengths in [16, 640], append");
    /* the same through the backend's own choice: above decode_append_max_seqs
     * rg_attn_decode_append takes kv_write + attn_decode (the rest of this
     * program runs the fused op at every size) */
    int32_t keep = gpu->decode_append_max_seqs;
    gpu->decode_append_max_seqs = dflt_append_max;
    CHECK(dflt_append_max > 0 && dflt_append_max < n, "the batch of %d takes the composed path (limit %d)", n,
          dflt_append_max);
    run_case(r, &c, "gpt2 batch, lengths in [16, 640], append, backend's choice");
    gpu->decode_append_max_seqs = keep;
    /* the decode step at batch 1 */
    c.n = 1;
    run_case(r, &c, "gpt2 batch 1, append");
    free(lens);
}

/* ---- kv_write and gather_rows: exact copies ---- */

static uint16_t *rand_bits(rg_rng *r, size_t n) {
    uint16_t *x = rg_test_xmalloc(2 * n);
    for (size_t i = 0; i < n; i++) x[i] = rg_f32_to_bf16((float)rg_rng_normal(r));
    return x;
}

static void *dev_bits(const uint16_t *x, size_t n) {
    void *d = NULL;
    if (rg_buffer_alloc(gpu, 2 * (n ? n : 1), &d) != RG_OK) return NULL;
    if (n && rg_buffer_upload(gpu, d, x, 2 * n) != RG_OK) { rg_buffer_free(gpu, d); return NULL; }
    return d;
}

/* Scatter of T rows into a cache of n_slots rows through random distinct slots;
 * k and v rows with strides (padded, odd offsets reach the scalar path). */
static void test_kv_write(rg_rng *r, int32_t n_slots, int64_t T, int32_t row, int32_t pad, int32_t off) {
    const int32_t sk = row + pad, sv = row + 2 * pad;
    const size_t nc = (size_t)n_slots * row;
    uint16_t *kc = rg_test_xmalloc(2 * nc), *vc = rg_test_xmalloc(2 * nc), *k = rand_bits(r, (size_t)T * sk + off + 1);
    uint16_t *v = rand_bits(r, (size_t)T * sv + off + 1);
    for (size_t i = 0; i < nc; i++) kc[i] = vc[i] = SENT_BF16;
    int32_t *perm = rg_test_xmalloc(sizeof(int32_t) * (size_t)n_slots);
    for (int32_t i = 0; i < n_slots; i++) perm[i] = i;
    for (int32_t i = n_slots - 1; i > 0; i--) {
        int32_t j = (int32_t)rg_rng_below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    void *dkc = dev_bits(kc, nc), *dvc = dev_bits(vc, nc), *dk = dev_bits(k, (size_t)T * sk + off + 1);
    void *dv = dev_bits(v, (size_t)T * sv + off + 1), *ds = NULL;
    bool ok = dkc && dvc && dk && dv && rg_buffer_alloc(gpu, sizeof(int32_t) * (size_t)(T ? T : 1), &ds) == RG_OK &&
              (T == 0 || rg_buffer_upload(gpu, ds, perm, sizeof(int32_t) * (size_t)T) == RG_OK);
    ok = ok && gpu->ops->kv_write(gpu, dkc, dvc, (uint16_t *)dk + off, sk, (uint16_t *)dv + off, sv, ds, T, row) == RG_OK;
    uint16_t *gk = rg_test_xmalloc(2 * nc), *gv = rg_test_xmalloc(2 * nc);
    ok = ok && rg_buffer_download(gpu, gk, dkc, 2 * nc) == RG_OK && rg_buffer_download(gpu, gv, dvc, 2 * nc) == RG_OK;
    if (CHECK(ok, "kv_write T %lld row %d: %s", (long long)T, row, rg_last_error())) {
        for (int64_t t = 0; t < T; t++) {
            memcpy(kc + (size_t)perm[t] * row, k + off + t * sk, 2 * (size_t)row);
            memcpy(vc + (size_t)perm[t] * row, v + off + t * sv, 2 * (size_t)row);
        }
        CHECK(memcmp(gk, kc, 2 * nc) == 0 && memcmp(gv, vc, 2 * nc) == 0,
              "kv_write T %lld row %d pad %d off %d: cache differs from the host scatter", (long long)T, row, pad, off);
    }
    rg_buffer_free(gpu, dkc); rg_buffer_free(gpu, dvc); rg_buffer_free(gpu, dk); rg_buffer_free(gpu, dv);
    rg_buffer_free(gpu, ds);
    free(kc); free(vc); free(k); free(v); free(perm); free(gk); free(gv);
}

static void test_gather(rg_rng *r, int32_t m, int64_t n, int C, int off) {
    const size_t ni = (size_t)m * C + off, no = (size_t)n * C + 2 * GUARD + off;
    uint16_t *inp = rand_bits(r, ni), *out = rg_test_xmalloc(2 * no), *got = rg_test_xmalloc(2 * no);
    for (size_t i = 0; i < no; i++) out[i] = SENT_BF16;
    int32_t *rows = rg_test_xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) rows[i] = (int32_t)rg_rng_below(r, (uint64_t)m);  /* repeats allowed */
    void *di = dev_bits(inp, ni), *dout = dev_bits(out, no), *dr = NULL;
    bool ok = di && dout && rg_buffer_alloc(gpu, sizeof(int32_t) * (size_t)(n ? n : 1), &dr) == RG_OK &&
              (n == 0 || rg_buffer_upload(gpu, dr, rows, sizeof(int32_t) * (size_t)n) == RG_OK);
    ok = ok && gpu->ops->gather_rows(gpu, (uint16_t *)dout + GUARD + off, (uint16_t *)di + off, dr, n, C) == RG_OK;
    ok = ok && rg_buffer_download(gpu, got, dout, 2 * no) == RG_OK;
    if (CHECK(ok, "gather_rows n %lld C %d: %s", (long long)n, C, rg_last_error())) {
        for (int64_t i = 0; i < n; i++) memcpy(out + GUARD + off + i * C, inp + off + (size_t)rows[i] * C, 2 * (size_t)C);
        CHECK(memcmp(got, out, 2 * no) == 0, "gather_rows m %d n %lld C %d off %d: output (or its guards) differs "
              "from the host loop", m, (long long)n, C, off);
    }
    rg_buffer_free(gpu, di); rg_buffer_free(gpu, dout); rg_buffer_free(gpu, dr);
    free(inp); free(out); free(got); free(rows);
}

static void test_copies(rg_rng *r, bool quick) {
    test_kv_write(r, 64, 0, 768, 0, 0);
    test_kv_write(r, 64, 1, 768, 0, 0);
    test_kv_write(r, 300, 37, 768, 2 * 768, 0);       /* fused-qkv-like strides, 16-byte path */
    test_kv_write(r, 300, 255, 64, 8, 0);
    test_kv_write(r, 97, 50, 40, 3, 1);               /* odd stride and offset: element path */
    test_kv_write(r, quick ? 2000 : 20000, quick ? 1500 : 16000, 128, 0, 0);
    test_gather(r, 10, 0, 768, 0);
    test_gather(r, 10, 1, 768, 0);
    test_gather(r, 50257 / (quick ? 64 : 8), 64, 768, 0);
    test_gather(r, 100, 1000, 8, 0);
    test_gather(r, 33, 77, 7, 1);
    test_gather(r, 5, 9, 1, 3);
    test_gather(r, 3000, quick ? 500 : 5000, 96, 0);
}

int main(void) {
    rg_rng r;
    rg_test_init("test_cuda_decode", &r);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        printf("test_cuda_decode: skipped: no CUDA device (or no CUDA backend in this build)\n");
        return 77;
    }
    if (rg_backend_init(RG_BACKEND_CUDA, 0, &gpu) != RG_OK || rg_backend_init(RG_BACKEND_CPU, 0, &cpu) != RG_OK) {
        printf("test_cuda_decode: cannot start the backends: %s\n", rg_last_error());
        return 1;
    }
    const bool quick = rg_test_quick();
    dflt_append_max = gpu->decode_append_max_seqs;
    gpu->decode_append_max_seqs = 0;
    if (!gpu->ops->gather_rows || !gpu->ops->kv_write || !gpu->ops->attn_decode) {
        CHECK(false, "the CUDA backend lacks attn_decode, kv_write or gather_rows");
    } else {
        test_copies(&r, quick);
        test_lengths(&r, quick);
        test_batches(&r, quick);
    }
    printf("worst relative errors: cuda vs reference %.3g (%.2fu), cuda vs cpu %.3g (%.2fu); threshold %.2fu\n",
           worst_gpu, worst_gpu / U_BF16, worst_cpu, worst_cpu / U_BF16, TOL / U_BF16);
    rg_backend_free(gpu);
    rg_backend_free(cpu);
    return rg_test_finish();
}
