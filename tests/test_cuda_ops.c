/* test_cuda_ops.c — the CUDA backend's model ops against plain double-precision
 * references written here (independent of the CPU backend), on fresh random
 * inputs with awkward sizes and misaligned pointers (to reach the scalar and
 * fallback paths), with sentinel bytes around every device output; plus the
 * CUDA-specific promises: gradients accumulate (+=), embedding and layernorm
 * parameter gradients are bit-identical run to run, xent works in place.
 * Thresholds are normalised L2 errors in units of bf16's unit roundoff
 * u = 2^-8 (8 significant bits): one correct rounding of each output element
 * is at most u relative, about 0.5u in L2 over many elements, so an op that
 * rounds once gets 1u; GEMM outputs, which may be rounded twice (the bias or
 * GELU applied after a rounded product), get 2u. fp32 results get 1e-5 or
 * tighter. Exits 77 when the build or machine has no CUDA device. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "backend.h"
#include "check.h"
#include "dev_buf.h"
#include "ops_ref.h"
#include "core/dtype.h"
#include "core/status.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U_BF16 (1.0 / 256.0)

static rg_backend *be;
static rg_rng rng;

/* ---- device buffers: dev_buf.h ---- */

static void dput_i32(dbuf *b, const int32_t *x) { rg_test_must(rg_buffer_upload(be, b->p, x, b->n * 4), "upload i32"); }

/* ---- host helpers ---- */

static float *randn(size_t n, float scale) {
    float *x = rg_test_xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(rg_rng_normal(&rng) * scale);
    return x;
}

/* Round to bf16 in place, so that references see exactly the device's inputs. */
static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rg_bf16_to_f32(rg_f32_to_bf16(x[i]));
}

static float *bf16_randn(size_t n, float scale) {
    float *x = randn(n, scale);
    round_bf16(x, n);
    return x;
}

static bool bits_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* ---- matmul ---- */

static void test_matmul(int64_t T, int C, int OC, int gelu, bool has_bias, size_t off) {
    char tag[128];
    snprintf(tag, sizeof tag, "matmul T=%lld C=%d OC=%d gelu=%d bias=%d off=%zu", (long long)T, C, OC, gelu,
             has_bias, off);
    float *inp = bf16_randn((size_t)T * C, 1.0f), *w = bf16_randn((size_t)OC * C, 1.0f / sqrtf((float)C));
    float *b = has_bias ? bf16_randn(OC, 0.5f) : NULL;
    size_t nout = (size_t)T * OC;
    float *pre = rg_test_xmalloc(nout * 4), *out = rg_test_xmalloc(nout * 4);
    for (int64_t t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[t * C + c] * w[(size_t)o * C + c];
            pre[t * OC + o] = (float)s;
            out[t * OC + o] = (float)(gelu ? ref_gelu(s, gelu == RG_GELU_TANH) : s);
        }
    dbuf d_inp = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)T * C, off), d_w = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)OC * C, off);
    dbuf d_b = dbuf_alloc(be, RG_DTYPE_BF16, OC, off), d_out = dbuf_alloc(be, RG_DTYPE_BF16, nout, off);
    dbuf d_pre = dbuf_alloc(be, RG_DTYPE_BF16, nout, off);
    dbuf_put(&d_inp, inp);
    dbuf_put(&d_w, w);
    if (b) dbuf_put(&d_b, b);
    rg_status s = be->ops->matmul_forward(be, d_out.p, d_pre.p, d_inp.p, d_w.p, b ? d_b.p : NULL, T, C, OC, gelu);
    CHECK(s == RG_OK, "%s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    float *got = rg_test_xmalloc(nout * 4);
    dbuf_get(&d_out, got);
    char what[160];
    snprintf(what, sizeof what, "%s: out", tag);
    CHECK_CLOSE(what, got, out, nout, 2 * U_BF16);
    if (gelu) {
        dbuf_get(&d_pre, got);
        snprintf(what, sizeof what, "%s: pre_gelu", tag);
        CHECK_CLOSE(what, got, pre, nout, 2 * U_BF16);
        dbuf_guard_ok(&d_pre, what);
    }
    dbuf_guard_ok(&d_out, tag);

    /* backward: dinp overwritten, dweight and dbias accumulated onto what is there */
    float *dout = bf16_randn(nout, 1.0f), *dw0 = randn((size_t)OC * C, 1.0f), *db0 = randn(OC, 1.0f);
    float *dinp_ref = rg_test_xmalloc((size_t)T * C * 4), *dw_ref = rg_test_xmalloc((size_t)OC * C * 4), *db_ref = rg_test_xmalloc(OC * 4);
    for (int64_t t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            double acc = 0;
            for (int o = 0; o < OC; o++) acc += (double)dout[t * OC + o] * w[(size_t)o * C + c];
            dinp_ref[t * C + c] = (float)acc;
        }
    for (int o = 0; o < OC; o++) {
        double sb = db0[o];
        for (int64_t t = 0; t < T; t++) sb += dout[t * OC + o];
        db_ref[o] = (float)sb;
        for (int c = 0; c < C; c++) {
            double acc = dw0[(size_t)o * C + c];
            for (int64_t t = 0; t < T; t++) acc += (double)dout[t * OC + o] * inp[t * C + c];
            dw_ref[(size_t)o * C + c] = (float)acc;
        }
    }
    dbuf d_dout = dbuf_alloc(be, RG_DTYPE_BF16, nout, off), d_dinp = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)T * C, off);
    dbuf d_dw = dbuf_alloc(be, RG_DTYPE_F32, (size_t)OC * C, off), d_db = dbuf_alloc(be, RG_DTYPE_F32, OC, off);
    dbuf_put(&d_dout, dout);
    dbuf_put(&d_dw, dw0);
    dbuf_put(&d_db, db0);
    s = be->ops->matmul_backward(be, d_dinp.p, (float *)d_dw.p, has_bias ? (float *)d_db.p : NULL, d_dout.p,
                                 d_inp.p, d_w.p, T, C, OC);
    CHECK(s == RG_OK, "%s: backward status %s (%s)", tag, rg_status_str(s), rg_last_error());
    float *g = rg_test_xmalloc((size_t)(T * C > OC * C ? T * C : OC * C) * 4);
    dbuf_get(&d_dinp, g);
    snprintf(what, sizeof what, "%s: dinp", tag);
    CHECK_CLOSE(what, g, dinp_ref, (size_t)T * C, 1 * U_BF16);
    dbuf_guard_ok(&d_dinp, what);
    dbuf_get(&d_dw, g);
    snprintf(what, sizeof what, "%s: dweight (+=)", tag);
    CHECK_CLOSE(what, g, dw_ref, (size_t)OC * C, 1e-5); /* bf16 inputs are exact in fp32 products */
    dbuf_guard_ok(&d_dw, what);
    if (has_bias) {
        dbuf_get(&d_db, g);
        snprintf(what, sizeof what, "%s: dbias (+=)", tag);
        CHECK_CLOSE(what, g, db_ref, OC, 1e-5);
        dbuf_guard_ok(&d_db, what);
        /* dbias alone (dinp and dweight NULL) adds the sum again */
        s = be->ops->matmul_backward(be, NULL, NULL, (float *)d_db.p, d_dout.p, d_inp.p, d_w.p, T, C, OC);
        CHECK(s == RG_OK, "%s: dbias-only backward status %s (%s)", tag, rg_status_str(s), rg_last_error());
        for (int o = 0; o < OC; o++) db_ref[o] = (float)(2.0 * db_ref[o] - db0[o]);
        dbuf_get(&d_db, g);
        snprintf(what, sizeof what, "%s: dbias only (+= twice)", tag);
        CHECK_CLOSE(what, g, db_ref, OC, 1e-5);
        dbuf_guard_ok(&d_db, what);
    }
    free(inp); free(w); free(b); free(pre); free(out); free(got); free(dout); free(dw0); free(db0);
    free(dinp_ref); free(dw_ref); free(db_ref); free(g);
    dbuf_free(&d_inp); dbuf_free(&d_w); dbuf_free(&d_b); dbuf_free(&d_out); dbuf_free(&d_pre);
    dbuf_free(&d_dout); dbuf_free(&d_dinp); dbuf_free(&d_dw); dbuf_free(&d_db);
}

/* ---- fused ops: projection + residual (out may be the residual), gelu backward + dbias ---- */

static void test_fused(int64_t T, int C, int OC, bool has_bias, bool in_place, size_t off) {
    char tag[160], what[224];
    snprintf(tag, sizeof tag, "T=%lld C=%d OC=%d bias=%d in_place=%d off=%zu", (long long)T, C, OC, has_bias,
             in_place, off);
    size_t nout = (size_t)T * OC;
    float *inp = bf16_randn((size_t)T * C, 1.0f), *w = bf16_randn((size_t)OC * C, 1.0f / sqrtf((float)C));
    float *b = has_bias ? bf16_randn(OC, 0.5f) : NULL, *res = bf16_randn(nout, 2.0f);
    float *ref = rg_test_xmalloc(nout * 4), *got = rg_test_xmalloc(nout * 4);
    for (int64_t t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double acc = (double)res[t * OC + o] + (b ? b[o] : 0.0);
            for (int c = 0; c < C; c++) acc += (double)inp[t * C + c] * w[(size_t)o * C + c];
            ref[t * OC + o] = (float)acc;
        }
    dbuf d_inp = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)T * C, off), d_w = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)OC * C, off);
    dbuf d_b = dbuf_alloc(be, RG_DTYPE_BF16, OC, off), d_res = dbuf_alloc(be, RG_DTYPE_BF16, nout, off);
    dbuf d_out = dbuf_alloc(be, RG_DTYPE_BF16, nout, off);
    dbuf_put(&d_inp, inp);
    dbuf_put(&d_w, w);
    if (b) dbuf_put(&d_b, b);
    dbuf_put(&d_res, res);
    dbuf *o = in_place ? &d_res : &d_out;
    rg_status s = be->ops->matmul_forward_residual(be, o->p, d_inp.p, d_w.p, b ? d_b.p : NULL, d_res.p, T, C, OC);
    CHECK(s == RG_OK, "matmul_forward_residual %s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    dbuf_get(o, got);
    snprintf(what, sizeof what, "matmul_forward_residual %s: out", tag);
    CHECK_CLOSE(what, got, ref, nout, 2 * U_BF16);
    dbuf_guard_ok(o, what);
    if (!in_place) {
        dbuf_get(&d_res, got);
        CHECK(bits_equal(got, res, nout), "matmul_forward_residual %s: the residual is unchanged", tag);
    }

    /* gelu backward + dbias over (T, OC): x of both signs and past the table's range, dout with a mean */
    for (int gelu = RG_GELU_ERF; gelu <= RG_GELU_TANH; gelu++) {
        float *x = bf16_randn(nout, 3.0f), *dout = bf16_randn(nout, 1.0f), *db0 = randn(OC, 1.0f);
        float *db_ref = rg_test_xmalloc(OC * 4), *db_got = rg_test_xmalloc(OC * 4);
        for (size_t i = 0; i < nout; i++) dout[i] = rg_bf16_to_f32(rg_f32_to_bf16(dout[i] + 0.25f));
        x[nout / 2] = 100.0f;
        x[nout - 1] = -70.0f;
        double *acc = rg_test_xmalloc(OC * sizeof *acc);
        for (int c = 0; c < OC; c++) acc[c] = db0[c];
        for (size_t i = 0; i < nout; i++) {
            double g = dout[i] * ref_gelu_grad(x[i], gelu == RG_GELU_TANH);
            ref[i] = (float)g;
            acc[i % OC] += g;
        }
        for (int c = 0; c < OC; c++) db_ref[c] = (float)acc[c];
        dbuf d_x = dbuf_alloc(be, RG_DTYPE_BF16, nout, off), d_d = dbuf_alloc(be, RG_DTYPE_BF16, nout, off);
        dbuf d_db = dbuf_alloc(be, RG_DTYPE_F32, OC, off);
        dbuf_put(&d_x, x);
        dbuf_put(&d_d, dout);
        dbuf_put(&d_db, db0);
        dbuf *g = in_place ? &d_d : &d_out;
        s = be->ops->gelu_backward_dbias(be, g->p, (float *)d_db.p, d_x.p, d_d.p, T, OC, gelu);
        CHECK(s == RG_OK, "gelu_backward_dbias %s gelu=%d: status %s (%s)", tag, gelu, rg_status_str(s),
              rg_last_error());
        dbuf_get(g, got);
        snprintf(what, sizeof what, "gelu_backward_dbias %s gelu=%d: dinp", tag, gelu);
        CHECK_CLOSE(what, got, ref, nout, 1 * U_BF16);
        dbuf_guard_ok(g, what);
        dbuf_get(&d_db, db_got);
        snprintf(what, sizeof what, "gelu_backward_dbias %s gelu=%d: dbias (+=)", tag, gelu);
        CHECK_CLOSE(what, db_got, db_ref, OC, 1e-5);
        dbuf_guard_ok(&d_db, what);
        /* deterministic: the same call on the same inputs gives the same bits */
        dbuf_put(&d_d, dout);
        dbuf_put(&d_db, db0);
        s = be->ops->gelu_backward_dbias(be, g->p, (float *)d_db.p, d_x.p, d_d.p, T, OC, gelu);
        dbuf_get(&d_db, db_ref);
        CHECK(s == RG_OK && bits_equal(db_ref, db_got, OC), "gelu_backward_dbias %s gelu=%d: run to run", tag, gelu);
        free(x); free(dout); free(db0); free(db_ref); free(db_got); free(acc);
        dbuf_free(&d_x); dbuf_free(&d_d); dbuf_free(&d_db);
    }
    free(inp); free(w); free(b); free(res); free(ref); free(got);
    dbuf_free(&d_inp); dbuf_free(&d_w); dbuf_free(&d_b); dbuf_free(&d_res); dbuf_free(&d_out);
}

/* ---- the opt-in profile (RG_PROFILE=1 at creation) ---- */

static void test_profile(void) {
    rg_profile_entry e[64];
    int n = -1;
    CHECK(!rg_backend_profiling(be) && rg_backend_profile_read(be, e, 64, &n) == RG_ERR_UNSUPPORTED,
          "a backend made without RG_PROFILE does not profile");
    setenv("RG_PROFILE", "1", 1);
    rg_backend *pb = NULL;
    rg_status s = rg_backend_init(RG_BACKEND_CUDA, 0, &pb);
    unsetenv("RG_PROFILE");
    if (!CHECK(s == RG_OK && rg_backend_profiling(pb), "RG_PROFILE=1: a profiling backend (%s)", rg_last_error()))
        return;
    enum { T = 96, C = 64, OC = 128, REPS = 5000 }; /* more calls than the event pool holds */
    void *x, *w, *y;
    rg_test_must(rg_buffer_alloc(pb, T * C * 2, &x), "alloc");
    rg_test_must(rg_buffer_alloc(pb, OC * C * 2, &w), "alloc");
    rg_test_must(rg_buffer_alloc(pb, T * OC * 2, &y), "alloc");
    rg_test_must(pb->ops->zero(pb, x, T * C * 2), "zero");
    rg_test_must(pb->ops->zero(pb, w, OC * C * 2), "zero");
    rg_test_must(rg_backend_profile_reset(pb), "profile reset");
    for (int i = 0; i < REPS; i++) rg_test_must(pb->ops->matmul_forward(pb, y, NULL, x, w, NULL, T, C, OC, 0), "matmul");
    for (int i = 0; i < 3; i++) rg_test_must(pb->ops->gelu_forward(pb, y, y, T * OC, RG_GELU_ERF), "gelu");
    s = rg_backend_profile_read(pb, e, 64, &n);
    CHECK(s == RG_OK && n == 2, "profile: two (op, shape) entries after reset (got %d, %s)", n, rg_last_error());
    if (s == RG_OK && n == 2) {
        CHECK(!strcmp(e[0].op, "matmul_forward gemm") && !strcmp(e[0].shape, "C=64 OC=128") && e[0].calls == REPS &&
                  e[0].ms > 0 && e[0].flops == 2.0 * T * C * OC * REPS,
              "profile: the matmul entry first (%s [%s], %lld calls, %g ms, %g FLOP)", e[0].op, e[0].shape,
              (long long)e[0].calls, e[0].ms, e[0].flops);
        CHECK(!strcmp(e[1].op, "gelu_forward") && e[1].calls == 3 && e[1].ms > 0 && e[1].bytes == 3 * 4.0 * T * OC,
              "profile: the gelu entry (%s, %lld calls, %g ms, %g bytes)", e[1].op, (long long)e[1].calls, e[1].ms,
              e[1].bytes);
    }
    rg_test_must(rg_backend_profile_reset(pb), "profile reset");
    CHECK(rg_backend_profile_read(pb, e, 64, &n) == RG_OK && n == 0, "profile: empty after reset (%d)", n);
    rg_buffer_free(pb, x);
    rg_buffer_free(pb, w);
    rg_buffer_free(pb, y);
    rg_backend_free(pb);
}

/* ---- layernorm ---- */

static void test_layernorm(int64_t T, int C, bool has_bias, size_t off) {
    char tag[128], what[192];
    snprintf(tag, sizeof tag, "layernorm T=%lld C=%d bias=%d off=%zu", (long long)T, C, has_bias, off);
    size_t n = (size_t)T * C;
    float *x = randn(n, 1.0f);
    for (int64_t t = 0; t < T; t++) /* rows with their own offset and scale, as a residual stream has */
        for (int c = 0; c < C; c++) x[t * C + c] = x[t * C + c] * (float)(0.5 + t % 7) + (float)(t % 5) - 2.0f;
    round_bf16(x, n);
    float *w = bf16_randn(C, 1.0f), *b = has_bias ? bf16_randn(C, 1.0f) : NULL;
    float *out = rg_test_xmalloc(n * 4), *mean = rg_test_xmalloc(T * 4), *rstd = rg_test_xmalloc(T * 4);
    const float eps = 1e-5f;
    for (int64_t t = 0; t < T; t++) {
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[t * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[t * C + c] - m) * (x[t * C + c] - m);
        double rs = 1.0 / sqrt(v / C + eps);
        mean[t] = (float)m;
        rstd[t] = (float)rs;
        for (int c = 0; c < C; c++) out[t * C + c] = (float)((x[t * C + c] - m) * rs * w[c] + (b ? b[c] : 0.0));
    }
    dbuf d_x = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_w = dbuf_alloc(be, RG_DTYPE_BF16, C, off), d_b = dbuf_alloc(be, RG_DTYPE_BF16, C, off);
    dbuf d_out = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_mean = dbuf_alloc(be, RG_DTYPE_F32, T, off), d_rstd = dbuf_alloc(be, RG_DTYPE_F32, T, off);
    dbuf_put(&d_x, x);
    dbuf_put(&d_w, w);
    if (b) dbuf_put(&d_b, b);
    rg_status s = be->ops->layernorm_forward(be, d_out.p, (float *)d_mean.p, (float *)d_rstd.p, d_x.p, d_w.p,
                                             b ? d_b.p : NULL, eps, T, C);
    CHECK(s == RG_OK, "%s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    float *got = rg_test_xmalloc(n * 4);
    dbuf_get(&d_out, got);
    snprintf(what, sizeof what, "%s: out", tag);
    CHECK_CLOSE(what, got, out, n, 1 * U_BF16);
    dbuf_guard_ok(&d_out, what);
    dbuf_get(&d_mean, got);
    snprintf(what, sizeof what, "%s: mean", tag);
    CHECK_CLOSE(what, got, mean, T, 1e-5);
    dbuf_guard_ok(&d_mean, what);
    dbuf_get(&d_rstd, got);
    snprintf(what, sizeof what, "%s: rstd", tag);
    CHECK_CLOSE(what, got, rstd, T, 1e-5);
    dbuf_guard_ok(&d_rstd, what);

    /* backward from the reference statistics (uploaded), dinp += onto a random start */
    float *dout = bf16_randn(n, 1.0f), *g0 = bf16_randn(n, 1.0f), *dw0 = randn(C, 1.0f), *db0 = randn(C, 1.0f);
    float *g_ref = rg_test_xmalloc(n * 4), *dw_ref = rg_test_xmalloc(C * 4), *db_ref = rg_test_xmalloc(C * 4);
    double *aw = calloc(C, sizeof *aw), *ab = calloc(C, sizeof *ab);
    for (int64_t t = 0; t < T; t++) {
        double s1 = 0, s2 = 0;
        for (int c = 0; c < C; c++) {
            double xh = (x[t * C + c] - (double)mean[t]) * rstd[t], dx = (double)dout[t * C + c] * w[c];
            s1 += dx;
            s2 += dx * xh;
            aw[c] += dout[t * C + c] * xh;
            ab[c] += dout[t * C + c];
        }
        s1 /= C;
        s2 /= C;
        for (int c = 0; c < C; c++) {
            double xh = (x[t * C + c] - (double)mean[t]) * rstd[t], dx = (double)dout[t * C + c] * w[c];
            g_ref[t * C + c] = (float)(g0[t * C + c] + rstd[t] * (dx - s1 - xh * s2));
        }
    }
    for (int c = 0; c < C; c++) { dw_ref[c] = (float)(dw0[c] + aw[c]); db_ref[c] = (float)(db0[c] + ab[c]); }
    dbuf d_dout = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_g = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf d_dw = dbuf_alloc(be, RG_DTYPE_F32, C, off), d_db = dbuf_alloc(be, RG_DTYPE_F32, C, off);
    dbuf_put(&d_mean, mean);
    dbuf_put(&d_rstd, rstd);
    dbuf_put(&d_dout, dout);
    float dw_first[8192], db_first[8192];
    /* the second run goes through layernorm_backward_sum: the same dinp, dweight
     * and dbias bits, and dinp_sum += the column sums of the dinp it stored */
    dbuf d_ds = dbuf_alloc(be, RG_DTYPE_F32, C, off);
    float *ds0 = randn(C, 1.0f), *g_first = rg_test_xmalloc(n * 4);
    dbuf_put(&d_ds, ds0);
    for (int rep = 0; rep < 2; rep++) {
        dbuf_put(&d_g, g0);
        dbuf_put(&d_dw, dw0);
        dbuf_put(&d_db, db0);
        if (rep == 0)
            s = be->ops->layernorm_backward(be, d_g.p, (float *)d_dw.p, b ? (float *)d_db.p : NULL, d_dout.p, d_x.p,
                                            d_w.p, (const float *)d_mean.p, (const float *)d_rstd.p, T, C);
        else
            s = be->ops->layernorm_backward_sum(be, d_g.p, (float *)d_dw.p, b ? (float *)d_db.p : NULL,
                                                (float *)d_ds.p, d_dout.p, d_x.p, d_w.p, (const float *)d_mean.p,
                                                (const float *)d_rstd.p, T, C);
        CHECK(s == RG_OK, "%s: backward status %s (%s)", tag, rg_status_str(s), rg_last_error());
        if (rep == 0) {
            dbuf_get(&d_g, g_first);
            snprintf(what, sizeof what, "%s: dinp (+=)", tag);
            CHECK_CLOSE(what, g_first, g_ref, n, 1 * U_BF16);
            dbuf_guard_ok(&d_g, what);
            dbuf_get(&d_dw, dw_first);
            snprintf(what, sizeof what, "%s: dweight (+=)", tag);
            CHECK_CLOSE(what, dw_first, dw_ref, C, 1e-5);
            dbuf_guard_ok(&d_dw, what);
            if (b) {
                dbuf_get(&d_db, db_first);
                snprintf(what, sizeof what, "%s: dbias (+=)", tag);
                CHECK_CLOSE(what, db_first, db_ref, C, 1e-5);
                dbuf_guard_ok(&d_db, what);
            }
        } else {
            float again[8192];
            dbuf_get(&d_dw, again);
            CHECK(bits_equal(again, dw_first, C), "%s: dweight bit-identical on a second run (_sum)", tag);
            if (b) {
                dbuf_get(&d_db, again);
                CHECK(bits_equal(again, db_first, C), "%s: dbias bit-identical on a second run (_sum)", tag);
            }
            dbuf_get(&d_g, got);
            CHECK(bits_equal(got, g_first, n), "%s: layernorm_backward_sum leaves the same dinp", tag);
            double *acc = rg_test_xmalloc(C * sizeof *acc);
            for (int c = 0; c < C; c++) acc[c] = ds0[c];
            for (size_t i = 0; i < n; i++) acc[i % C] += got[i];
            for (int c = 0; c < C; c++) again[c] = (float)acc[c];
            free(acc);
            float ds[8192];
            dbuf_get(&d_ds, ds);
            snprintf(what, sizeof what, "%s: dinp_sum (+=) of the stored dinp", tag);
            CHECK_CLOSE(what, ds, again, C, 1e-5);
            dbuf_guard_ok(&d_ds, what);
        }
    }
    free(ds0); free(g_first);
    dbuf_free(&d_ds);
    free(x); free(w); free(b); free(out); free(mean); free(rstd); free(got); free(dout); free(g0); free(dw0);
    free(db0); free(g_ref); free(dw_ref); free(db_ref); free(aw); free(ab);
    dbuf_free(&d_x); dbuf_free(&d_w); dbuf_free(&d_b); dbuf_free(&d_out); dbuf_free(&d_mean); dbuf_free(&d_rstd);
    dbuf_free(&d_dout); dbuf_free(&d_g); dbuf_free(&d_dw); dbuf_free(&d_db);
}

/* ---- gelu, add ---- */

static void test_elementwise(int64_t n, int gelu, size_t off) {
    char what[128];
    float *x = bf16_randn(n, 2.0f), *y = bf16_randn(n, 1.0f), *ref = rg_test_xmalloc(n * 4), *got = rg_test_xmalloc(n * 4);
    /* the edges of the erf kind's table (2^-16 <= |x| < 64) and beyond it */
    const float edge[] = {0.0f, 1e-6f, -1e-6f, 1.52587890625e-05f, -1.52587890625e-05f, 63.5f, -63.5f,
                          64.0f, -64.0f, 300.0f, -300.0f, -5.0f, -9.0f, 1e-30f};
    for (int64_t i = 0; i < n && i < (int64_t)(sizeof edge / sizeof edge[0]); i++)
        x[(i * 7919) % n] = rg_bf16_to_f32(rg_f32_to_bf16(edge[i]));
    dbuf d_x = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_y = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_o = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf_put(&d_x, x);
    dbuf_put(&d_y, y);
    for (int64_t i = 0; i < n; i++) ref[i] = (float)ref_gelu(x[i], gelu == RG_GELU_TANH);
    CHECK(be->ops->gelu_forward(be, d_o.p, d_x.p, n, gelu) == RG_OK, "gelu_forward status");
    dbuf_get(&d_o, got);
    snprintf(what, sizeof what, "gelu_forward n=%lld kind=%d off=%zu", (long long)n, gelu, off);
    CHECK_CLOSE(what, got, ref, n, 1 * U_BF16);
    dbuf_guard_ok(&d_o, what);
    for (int64_t i = 0; i < n; i++) ref[i] = (float)(y[i] * ref_gelu_grad(x[i], gelu == RG_GELU_TANH));
    CHECK(be->ops->gelu_backward(be, d_o.p, d_x.p, d_y.p, n, gelu) == RG_OK, "gelu_backward status");
    dbuf_get(&d_o, got);
    snprintf(what, sizeof what, "gelu_backward n=%lld kind=%d off=%zu", (long long)n, gelu, off);
    CHECK_CLOSE(what, got, ref, n, 1 * U_BF16);
    dbuf_guard_ok(&d_o, what);
    /* add in place: out aliases a */
    for (int64_t i = 0; i < n; i++) ref[i] = x[i] + y[i];
    CHECK(be->ops->add(be, d_x.p, d_x.p, d_y.p, n) == RG_OK, "add status");
    dbuf_get(&d_x, got);
    snprintf(what, sizeof what, "add in place n=%lld off=%zu", (long long)n, off);
    CHECK_CLOSE(what, got, ref, n, 1 * U_BF16);
    dbuf_guard_ok(&d_x, what);
    free(x); free(y); free(ref); free(got);
    dbuf_free(&d_x); dbuf_free(&d_y); dbuf_free(&d_o);
}

/* ---- cross-entropy ---- */

static void test_xent(int64_t T, int V, bool in_place, size_t off) {
    char tag[128], what[192];
    snprintf(tag, sizeof tag, "xent T=%lld V=%d in_place=%d off=%zu", (long long)T, V, in_place, off);
    size_t n = (size_t)T * V;
    float *x = bf16_randn(n, 3.0f);
    int32_t *tg = rg_test_xmalloc(T * 4);
    int valid = 0;
    for (int64_t t = 0; t < T; t++) {
        tg[t] = rg_rng_below(&rng, 4) == 0 ? RG_IGNORE_INDEX : (int32_t)rg_rng_below(&rng, V);
        valid += tg[t] != RG_IGNORE_INDEX;
    }
    if (T > 1) x[(size_t)(T - 1) * V] = 60.0f; /* a dominant logit: the max must be subtracted */
    float dloss = 1.0f / (valid ? valid : 1);
    float *loss_ref = rg_test_xmalloc(T * 4), *g_ref = rg_test_xmalloc(n * 4);
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + (size_t)t * V;
        if (tg[t] == RG_IGNORE_INDEX) {
            loss_ref[t] = 0.0f;
            for (int v = 0; v < V; v++) g_ref[t * V + v] = 0.0f;
            continue;
        }
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = r[v] > mx ? r[v] : mx;
        for (int v = 0; v < V; v++) s += exp(r[v] - mx);
        double lse = mx + log(s);
        loss_ref[t] = (float)(lse - r[tg[t]]);
        for (int v = 0; v < V; v++) g_ref[t * V + v] = (float)((exp(r[v] - lse) - (v == tg[t])) * dloss);
    }
    dbuf d_x = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_g = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf d_l = dbuf_alloc(be, RG_DTYPE_F32, T, off), d_t = dbuf_alloc(be, RG_DTYPE_I32, T, 0);
    dbuf_put(&d_x, x);
    dput_i32(&d_t, tg);
    void *dl = in_place ? d_x.p : d_g.p;
    rg_status s = be->ops->xent_forward_backward(be, (float *)d_l.p, dl, d_x.p, (const int32_t *)d_t.p,
                                                 RG_IGNORE_INDEX, dloss, T, V);
    CHECK(s == RG_OK, "%s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    float *got = rg_test_xmalloc(n * 4);
    dbuf_get(&d_l, got);
    snprintf(what, sizeof what, "%s: losses", tag);
    CHECK_CLOSE(what, got, loss_ref, T, 1e-5);
    dbuf_guard_ok(&d_l, what);
    dbuf_get(in_place ? &d_x : &d_g, got);
    snprintf(what, sizeof what, "%s: dlogits", tag);
    CHECK_CLOSE(what, got, g_ref, n, 1 * U_BF16);
    dbuf_guard_ok(in_place ? &d_x : &d_g, what);
    bool zero_rows = true;
    for (int64_t t = 0; t < T; t++)
        if (tg[t] == RG_IGNORE_INDEX)
            for (int v = 0; v < V; v++) zero_rows &= got[t * V + v] == 0.0f;
    CHECK(zero_rows, "%s: ignored rows have exactly zero gradient", tag);
    if (!in_place) { /* losses only: dlogits NULL, logits untouched */
        dbuf d_l2 = dbuf_alloc(be, RG_DTYPE_F32, T, 0);
        s = be->ops->xent_forward_backward(be, (float *)d_l2.p, NULL, d_x.p, (const int32_t *)d_t.p,
                                           RG_IGNORE_INDEX, dloss, T, V);
        dbuf_get(&d_l2, got);
        snprintf(what, sizeof what, "%s: losses without dlogits", tag);
        CHECK(s == RG_OK, "%s status", what);
        CHECK_CLOSE(what, got, loss_ref, T, 1e-5);
        dbuf_free(&d_l2);
    }
    free(x); free(tg); free(loss_ref); free(g_ref); free(got);
    dbuf_free(&d_x); dbuf_free(&d_g); dbuf_free(&d_l); dbuf_free(&d_t);
}

/* ---- embedding ---- */

static void test_embedding(int64_t T, int C, int V, int L, size_t off) {
    char tag[128], what[192];
    snprintf(tag, sizeof tag, "embedding T=%lld C=%d V=%d L=%d off=%zu", (long long)T, C, V, L, off);
    float *wte = bf16_randn((size_t)V * C, 1.0f), *wpe = bf16_randn((size_t)L * C, 1.0f);
    int32_t *tok = rg_test_xmalloc(T * 4), *pos = rg_test_xmalloc(T * 4);
    int32_t hot = (int32_t)rg_rng_below(&rng, V);
    for (int64_t t = 0, p = 0; t < T; t++) { /* a frequent token (a long run after sorting), positions restart */
        tok[t] = rg_rng_below(&rng, 3) == 0 ? hot : (int32_t)rg_rng_below(&rng, V);
        if (p >= L || rg_rng_below(&rng, 50) == 0) p = 0;
        pos[t] = (int32_t)p++;
    }
    size_t n = (size_t)T * C;
    float *ref = rg_test_xmalloc(n * 4), *got = rg_test_xmalloc(n * 4);
    for (int64_t t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            ref[t * C + c] = rg_bf16_to_f32(rg_f32_to_bf16(wte[(size_t)tok[t] * C + c] + wpe[(size_t)pos[t] * C + c]));
    dbuf d_wte = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)V * C, off), d_wpe = dbuf_alloc(be, RG_DTYPE_BF16, (size_t)L * C, off);
    dbuf d_tok = dbuf_alloc(be, RG_DTYPE_I32, T, 0), d_pos = dbuf_alloc(be, RG_DTYPE_I32, T, 0), d_out = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf_put(&d_wte, wte);
    dbuf_put(&d_wpe, wpe);
    dput_i32(&d_tok, tok);
    dput_i32(&d_pos, pos);
    rg_status s = be->ops->embedding_forward(be, d_out.p, (const int32_t *)d_tok.p, (const int32_t *)d_pos.p,
                                             d_wte.p, d_wpe.p, T, C);
    CHECK(s == RG_OK, "%s: status %s (%s)", tag, rg_status_str(s), rg_last_error());
    dbuf_get(&d_out, got);
    CHECK(bits_equal(got, ref, n), "%s: forward equals bf16(wte + wpe) exactly", tag);
    dbuf_guard_ok(&d_out, tag);

    float *dout = bf16_randn(n, 1.0f), *dwte0 = randn((size_t)V * C, 1.0f), *dwpe0 = randn((size_t)L * C, 1.0f);
    double *ate = calloc((size_t)V * C, sizeof *ate), *ape = calloc((size_t)L * C, sizeof *ape);
    for (int64_t t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            ate[(size_t)tok[t] * C + c] += dout[t * C + c];
            ape[(size_t)pos[t] * C + c] += dout[t * C + c];
        }
    float *te_ref = rg_test_xmalloc((size_t)V * C * 4), *pe_ref = rg_test_xmalloc((size_t)L * C * 4);
    for (size_t i = 0; i < (size_t)V * C; i++) te_ref[i] = (float)(dwte0[i] + ate[i]);
    for (size_t i = 0; i < (size_t)L * C; i++) pe_ref[i] = (float)(dwpe0[i] + ape[i]);
    dbuf d_dout = dbuf_alloc(be, RG_DTYPE_BF16, n, off), d_dte = dbuf_alloc(be, RG_DTYPE_F32, (size_t)V * C, off);
    dbuf d_dpe = dbuf_alloc(be, RG_DTYPE_F32, (size_t)L * C, off);
    dbuf_put(&d_dout, dout);
    float *te_got = rg_test_xmalloc((size_t)V * C * 4), *te_first = rg_test_xmalloc((size_t)V * C * 4);
    float *pe_got = rg_test_xmalloc((size_t)L * C * 4), *pe_first = rg_test_xmalloc((size_t)L * C * 4);
    for (int rep = 0; rep < 2; rep++) {
        dbuf_put(&d_dte, dwte0);
        dbuf_put(&d_dpe, dwpe0);
        s = be->ops->embedding_backward(be, (float *)d_dte.p, (float *)d_dpe.p, d_dout.p, (const int32_t *)d_tok.p,
                                        (const int32_t *)d_pos.p, T, C);
        CHECK(s == RG_OK, "%s: backward status %s (%s)", tag, rg_status_str(s), rg_last_error());
        dbuf_get(&d_dte, rep ? te_got : te_first);
        dbuf_get(&d_dpe, rep ? pe_got : pe_first);
    }
    snprintf(what, sizeof what, "%s: dwte (+=)", tag);
    CHECK_CLOSE(what, te_first, te_ref, (size_t)V * C, 1e-6);
    dbuf_guard_ok(&d_dte, what);
    snprintf(what, sizeof what, "%s: dwpe (+=)", tag);
    CHECK_CLOSE(what, pe_first, pe_ref, (size_t)L * C, 1e-6);
    dbuf_guard_ok(&d_dpe, what);
    CHECK(bits_equal(te_got, te_first, (size_t)V * C) && bits_equal(pe_got, pe_first, (size_t)L * C),
          "%s: backward bit-identical on a second run", tag);
    free(wte); free(wpe); free(tok); free(pos); free(ref); free(got); free(dout); free(dwte0); free(dwpe0);
    free(ate); free(ape); free(te_ref); free(pe_ref); free(te_got); free(te_first); free(pe_got); free(pe_first);
    dbuf_free(&d_wte); dbuf_free(&d_wpe); dbuf_free(&d_tok); dbuf_free(&d_pos); dbuf_free(&d_out); dbuf_free(&d_dout); dbuf_free(&d_dte);
    dbuf_free(&d_dpe);
}

/* ---- conversion, zero, sum of squares ---- */

static void test_memory(int64_t n, size_t off) {
    char what[128];
    float *x = randn(n, 10.0f), *got = rg_test_xmalloc(n * 4), *ref = rg_test_xmalloc(n * 4);
    x[0] = 1.00390625f; /* a bf16 tie: rounds to even */
    dbuf d_f = dbuf_alloc(be, RG_DTYPE_F32, n, off), d_f2 = dbuf_alloc(be, RG_DTYPE_F32, n, off), d_h = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf d_16 = dbuf_alloc(be, RG_DTYPE_F16, n, off);
    dbuf_put(&d_f, x);
    CHECK(be->ops->convert(be, d_h.p, RG_DTYPE_BF16, d_f.p, RG_DTYPE_F32, n) == RG_OK, "convert f32->bf16");
    dbuf_get(&d_h, got);
    for (int64_t i = 0; i < n; i++) ref[i] = rg_bf16_to_f32(rg_f32_to_bf16(x[i]));
    snprintf(what, sizeof what, "convert f32->bf16 n=%lld off=%zu", (long long)n, off);
    CHECK(bits_equal(got, ref, n), "%s: rounds to nearest even like the host", what);
    dbuf_guard_ok(&d_h, what);
    CHECK(be->ops->convert(be, d_f2.p, RG_DTYPE_F32, d_h.p, RG_DTYPE_BF16, n) == RG_OK, "convert bf16->f32");
    dbuf_get(&d_f2, got);
    CHECK(bits_equal(got, ref, n), "convert bf16->f32 n=%lld: exact", (long long)n);
    dbuf_guard_ok(&d_f2, "convert bf16->f32");
    CHECK(be->ops->convert(be, d_16.p, RG_DTYPE_F16, d_f.p, RG_DTYPE_F32, n) == RG_OK, "convert f32->f16");
    CHECK(be->ops->convert(be, d_f2.p, RG_DTYPE_F32, d_16.p, RG_DTYPE_F16, n) == RG_OK, "convert f16->f32");
    dbuf_get(&d_f2, got);
    for (int64_t i = 0; i < n; i++) ref[i] = rg_f16_to_f32(rg_f32_to_f16(x[i]));
    CHECK(bits_equal(got, ref, n), "convert f32->f16->f32 n=%lld: matches the host's rounding", (long long)n);
    dbuf_guard_ok(&d_16, "convert f32->f16");
    CHECK(be->ops->convert(be, d_f2.p, RG_DTYPE_F32, d_f.p, RG_DTYPE_F32, n) == RG_OK, "convert f32->f32");
    dbuf_get(&d_f2, got);
    CHECK(bits_equal(got, x, n), "convert f32->f32 n=%lld: a copy", (long long)n);
    dbuf_guard_ok(&d_f2, "convert f32->f32");

    double want = 0;
    for (int64_t i = 0; i < n; i++) want += (double)x[i] * x[i];
    double have = -1;
    CHECK(be->ops->sum_squares(be, &have, (const float *)d_f.p, n) == RG_OK, "sum_squares status");
    CHECK(fabs(have - want) <= 1e-12 * want, "sum_squares n=%lld: %.17g vs %.17g", (long long)n, have, want);

    CHECK(be->ops->zero(be, d_f.p, n * sizeof(float)) == RG_OK, "zero status");
    dbuf_get(&d_f, got);
    bool all_zero = true;
    for (int64_t i = 0; i < n; i++) all_zero &= got[i] == 0.0f;
    CHECK(all_zero, "zero n=%lld", (long long)n);
    dbuf_guard_ok(&d_f, "zero");
    free(x); free(got); free(ref);
    dbuf_free(&d_f); dbuf_free(&d_f2); dbuf_free(&d_h); dbuf_free(&d_16);
}

/* ---- optimizers: three steps against the same arithmetic in double ---- */

static void test_optim(int64_t n, bool adamw, size_t off) {
    char what[128];
    float *p = randn(n, 1.0f), *m = calloc(n, 4), *v = calloc(n, 4), *got = rg_test_xmalloc(n * 4), *pc = rg_test_xmalloc(n * 4);
    double *P = rg_test_xmalloc(n * 8), *M = calloc(n, 8), *Vv = calloc(n, 8);
    for (int64_t i = 0; i < n; i++) P[i] = p[i];
    dbuf d_p = dbuf_alloc(be, RG_DTYPE_F32, n, off), d_m = dbuf_alloc(be, RG_DTYPE_F32, n, off), d_v = dbuf_alloc(be, RG_DTYPE_F32, n, off);
    dbuf d_g = dbuf_alloc(be, RG_DTYPE_F32, n, off), d_c = dbuf_alloc(be, RG_DTYPE_BF16, n, off);
    dbuf_put(&d_p, p);
    dbuf_put(&d_m, m);
    dbuf_put(&d_v, v);
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, mom = 0.9f, scale = 0.5f;
    for (int step = 1; step <= 3; step++) {
        float *g = randn(n, 1.0f);
        dbuf_put(&d_g, g);
        rg_status s;
        if (adamw) {
            s = be->ops->adamw_update(be, (float *)d_p.p, d_c.p, (float *)d_m.p, (float *)d_v.p, (const float *)d_g.p,
                                      n, lr, b1, b2, eps, wd, scale, step);
            double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
            for (int64_t i = 0; i < n; i++) {
                double gi = (double)g[i] * scale;
                M[i] = b1 * M[i] + (1 - b1) * gi;
                Vv[i] = b2 * Vv[i] + (1 - b2) * gi * gi;
                P[i] = P[i] * (1 - (double)lr * wd) - lr / bc1 * M[i] / (sqrt(Vv[i]) / sqrt(bc2) + eps);
            }
        } else {
            s = be->ops->sgd_update(be, (float *)d_p.p, d_c.p, (float *)d_m.p, (const float *)d_g.p, n, lr, mom, wd,
                                    scale);
            for (int64_t i = 0; i < n; i++) {
                double gi = (double)g[i] * scale + wd * P[i];
                M[i] = mom * M[i] + gi;
                P[i] -= lr * M[i];
            }
        }
        CHECK(s == RG_OK, "%s step %d status %s (%s)", adamw ? "adamw" : "sgd", step, rg_status_str(s),
              rg_last_error());
        free(g);
    }
    for (int64_t i = 0; i < n; i++) pc[i] = (float)P[i];
    dbuf_get(&d_p, got);
    snprintf(what, sizeof what, "%s n=%lld off=%zu: params after 3 steps", adamw ? "adamw" : "sgd", (long long)n, off);
    CHECK_CLOSE(what, got, pc, n, 1e-6);
    dbuf_guard_ok(&d_p, what);
    float *c = rg_test_xmalloc(n * 4);
    dbuf_get(&d_c, c);
    for (int64_t i = 0; i < n; i++) got[i] = rg_bf16_to_f32(rg_f32_to_bf16(got[i]));
    CHECK(bits_equal(c, got, n), "%s: compute copy is bf16(param)", what);
    dbuf_guard_ok(&d_c, "optimizer compute copy");
    free(p); free(m); free(v); free(got); free(pc); free(P); free(M); free(Vv); free(c);
    dbuf_free(&d_p); dbuf_free(&d_m); dbuf_free(&d_v); dbuf_free(&d_g); dbuf_free(&d_c);
}

int main(void) {
    rg_test_init("test_cuda_ops", &rng);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        printf("test_cuda_ops: skipped: no CUDA backend in this build or no GPU on this machine\n");
        return 77;
    }
    rg_test_must(rg_backend_init(RG_BACKEND_CUDA, 0, &be), "cuda backend");
    bool quick = rg_test_quick();

    /* matmul: tile-aligned, off-tile, tiny and unaligned shapes; each GELU kind */
    const int mm[][3] = {{64, 64, 128}, {37, 72, 200}, {1, 8, 8}, {5, 3, 7}, {130, 1024, 3072}};
    int n_mm = quick ? 4 : 5;
    for (int i = 0; i < n_mm; i++)
        for (int gelu = RG_GELU_NONE; gelu <= RG_GELU_TANH; gelu++)
            for (int bias = 0; bias <= 1; bias++) test_matmul(mm[i][0], mm[i][1], mm[i][2], gelu, bias, 0);
    test_matmul(33, 64, 96, RG_GELU_ERF, true, 1);  /* 2-byte aligned operands */
    test_matmul(33, 64, 96, RG_GELU_TANH, true, 4); /* 8-byte aligned: cuBLASLt plans per alignment */
    /* token counts sharing a plan bucket (300 and 290 -> 320; 1000 -> 1024): one
     * plan, its layouts resized per call, larger and smaller than the last */
    test_matmul(300, 64, 96, RG_GELU_ERF, true, 0);
    test_matmul(290, 64, 96, RG_GELU_ERF, true, 0);
    test_matmul(319, 64, 96, RG_GELU_NONE, true, 0);
    test_matmul(1000, 64, 96, RG_GELU_TANH, true, 0);

    test_fused(1, 8, 8, true, false, 0);
    test_fused(5, 3, 7, false, true, 0);
    test_fused(37, 72, 200, true, true, 0);
    test_fused(33, 64, 96, true, false, 1); /* 2-byte aligned: the scalar paths */
    test_fused(quick ? 65 : 257, 1024, quick ? 1024 : 4096, true, false, 0);
    test_fused(130, 1024, 1024, true, true, 0);
    test_profile();

    /* C = 8 .. 1024: the warp-per-row backward (1, 2 or 4 vectors a lane; 264 and 768 leave lanes idle);
     * 4096: the tile kernel; 100, 4104 and the misaligned case: the generic kernels */
    const int ln[][2] = {{1, 8}, {33, 1024}, {17, 100}, {9, 4104}, {64, 768}, {300, 1024}, {5, 4096}, {40, 512},
                         {33, 264}};
    for (int i = 0; i < 9; i++)
        for (int bias = 0; bias <= 1; bias++) test_layernorm(ln[i][0], ln[i][1], bias, 0);
    test_layernorm(20, 256, true, 3);

    const int64_t ew[] = {1, 7, 8, 1000, 4099, 65536 + 5};
    for (int i = 0; i < 6; i++)
        for (int gelu = RG_GELU_ERF; gelu <= RG_GELU_TANH; gelu++) test_elementwise(ew[i], gelu, i % 2);

    const int xe[][2] = {{1, 1}, {17, 1024}, {33, 1001}, {5, 50257}, {300, 1024}};
    for (int i = 0; i < 5; i++) {
        test_xent(xe[i][0], xe[i][1], false, 0);
        test_xent(xe[i][0], xe[i][1], true, 0);
    }
    test_xent(9, 256, false, 5);

    test_embedding(1, 8, 4, 2, 0);
    test_embedding(300, 64, 50, 40, 0);
    test_embedding(quick ? 500 : 4000, 1024, 1024, 1024, 0);
    test_embedding(77, 20, 30, 16, 1);

    const int64_t mem[] = {1, 9, 1000, 100003};
    for (int i = 0; i < 4; i++) test_memory(mem[i], i % 2);
    for (int i = 0; i < 4; i++) {
        test_optim(mem[i], false, i % 2);
        test_optim(mem[i], true, i % 2);
    }

    rg_backend_free(be);
    return rg_test_finish();
}
