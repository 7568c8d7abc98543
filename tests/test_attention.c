/* test_attention.c — CPU varlen attention: flash forward/backward against the
 * reference, packed == one sequence at a time == padded with a key-padding
 * mask, gradients against central finite differences, strided q/k/v views,
 * and sentinels around every output. Bad inputs: test_attention_api.c. */
#include "check.h"
#include "cpu/cpu.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rg_backend *be;
static rg_rng rng;
static const double TOL = 1e-5;   /* fp32 flash vs the double reference, relative L2 */

/* ---- a problem: cu_seqlens, contiguous inputs, optional fused layout ---- */

typedef struct problem {
    int B, h, hk, d;
    bool causal;
    int32_t *cu_q, *cu_k;
    int64_t tq, tk;
    float *q, *k, *v, *dout;   /* contiguous (tq, h, d), (tk, hk, d), (tq, h, d) */
} problem;

typedef struct result {       /* guarded outputs of one run */
    float *o, *lse, *dq, *dk, *dv;
    int64_t nq, nk, nl;
} result;

static void problem_init(problem *p, int B, const int32_t *lq, const int32_t *lk, int h, int hk, int d,
                         bool causal) {
    p->B = B; p->h = h; p->hk = hk; p->d = d; p->causal = causal;
    p->cu_q = malloc((size_t)(B + 1) * sizeof(int32_t));
    p->cu_k = malloc((size_t)(B + 1) * sizeof(int32_t));
    p->cu_q[0] = p->cu_k[0] = 0;
    for (int b = 0; b < B; b++) {
        p->cu_q[b + 1] = p->cu_q[b] + lq[b];
        p->cu_k[b + 1] = p->cu_k[b] + lk[b];
    }
    p->tq = p->cu_q[B];
    p->tk = p->cu_k[B];
    size_t nq = (size_t)p->tq * h * d + 1, nk = (size_t)p->tk * hk * d + 1;
    p->q = malloc(nq * sizeof(float));
    p->k = malloc(nk * sizeof(float));
    p->v = malloc(nk * sizeof(float));
    p->dout = malloc(nq * sizeof(float));
    /* scores of std ~1.3 so that softmax rows are neither flat nor one-hot */
    rg_rng_fill_uniform(&rng, p->q, nq, -2, 2);
    rg_rng_fill_uniform(&rng, p->k, nk, -2, 2);
    rg_rng_fill_uniform(&rng, p->v, nk, -1, 1);
    rg_rng_fill_uniform(&rng, p->dout, nq, -1, 1);
}

static void problem_free(problem *p) {
    free(p->cu_q); free(p->cu_k); free(p->q); free(p->k); free(p->v); free(p->dout);
}

static int32_t max_len(const int32_t *cu, int B) {
    int32_t m = 0;
    for (int b = 0; b < B; b++) if (cu[b + 1] - cu[b] > m) m = cu[b + 1] - cu[b];
    return m;
}

static rg_attn_desc problem_desc(const problem *p, rg_attn_algo algo) {
    rg_attn_desc d = {0};
    d.batch = p->B;
    d.n_heads = p->h;
    d.n_kv_heads = p->hk;
    d.head_dim = p->d;
    d.cu_seqlens_q = p->cu_q;
    d.cu_seqlens_k = p->cu_k;
    d.max_seqlen_q = max_len(p->cu_q, p->B);
    d.max_seqlen_k = max_len(p->cu_k, p->B);
    d.causal = p->causal;
    d.algo = algo;
    return d;
}

static void result_alloc(result *r, const problem *p) {
    r->nq = p->tq * p->h * p->d;
    r->nk = p->tk * p->hk * p->d;
    r->nl = p->tq * p->h;
    r->o = rg_guarded_alloc((size_t)r->nq);
    r->lse = rg_guarded_alloc((size_t)r->nl);
    r->dq = rg_guarded_alloc((size_t)r->nq);
    r->dk = rg_guarded_alloc((size_t)r->nk);
    r->dv = rg_guarded_alloc((size_t)r->nk);
}

static void result_check_guards(const result *r, const char *what) {
    char name[160];
    snprintf(name, sizeof name, "%s o", what);   rg_guarded_ok(r->o, (size_t)r->nq, name);
    snprintf(name, sizeof name, "%s lse", what); rg_guarded_ok(r->lse, (size_t)r->nl, name);
    snprintf(name, sizeof name, "%s dq", what);  rg_guarded_ok(r->dq, (size_t)r->nq, name);
    snprintf(name, sizeof name, "%s dk", what);  rg_guarded_ok(r->dk, (size_t)r->nk, name);
    snprintf(name, sizeof name, "%s dv", what);  rg_guarded_ok(r->dv, (size_t)r->nk, name);
}

static void result_free(result *r) {
    rg_guarded_free(r->o); rg_guarded_free(r->lse); rg_guarded_free(r->dq);
    rg_guarded_free(r->dk); rg_guarded_free(r->dv);
}

/* Forward then backward with the given algorithm (and flash backward schedule). */
static bool run(const problem *p, rg_attn_algo algo, int bwd_mode, result *r, const char *what) {
    rg_attn_desc d = problem_desc(p, algo);
    rg_status s = rg_attn_forward(be, &d, p->q, p->k, p->v, r->o, r->lse);
    if (!CHECK(s == RG_OK, "%s: forward returned %s (%s)", what, rg_status_str(s), rg_last_error())) return false;
    rg_cpu_flash_bwd_mode = bwd_mode;
    s = rg_attn_backward(be, &d, p->q, p->k, p->v, r->o, r->lse, p->dout, r->dq, r->dk, r->dv);
    rg_cpu_flash_bwd_mode = 0;
    return CHECK(s == RG_OK, "%s: backward returned %s (%s)", what, rg_status_str(s), rg_last_error());
}

/* lse: the -inf entries (rows that see nothing) must match exactly, the others closely. */
static void check_lse(const char *what, const float *got, const float *ref, int64_t n, double tol) {
    float *g = malloc((size_t)n * sizeof(float) + 4), *f = malloc((size_t)n * sizeof(float) + 4);
    int64_t m = 0, mismatch = -1;
    for (int64_t i = 0; i < n; i++) {
        bool gi = isinf(got[i]) && got[i] < 0, ri = isinf(ref[i]) && ref[i] < 0;
        if (gi != ri) { mismatch = i; break; }
        if (!ri) { g[m] = got[i]; f[m] = ref[i]; m++; }
    }
    if (CHECK(mismatch < 0, "%s: -inf pattern differs at %lld (got %g, ref %g)", what, (long long)mismatch,
              mismatch < 0 ? 0.0 : got[mismatch], mismatch < 0 ? 0.0 : ref[mismatch]))
        CHECK_CLOSE(what, g, f, (size_t)m, tol);
    free(g);
    free(f);
}

static void compare(const char *what, const result *got, const result *ref, double tol, bool grads) {
    char name[200];
    snprintf(name, sizeof name, "%s: o", what);   CHECK_CLOSE(name, got->o, ref->o, (size_t)got->nq, tol);
    snprintf(name, sizeof name, "%s: lse", what); check_lse(name, got->lse, ref->lse, got->nl, tol);
    if (!grads) return;
    snprintf(name, sizeof name, "%s: dq", what);  CHECK_CLOSE(name, got->dq, ref->dq, (size_t)got->nq, tol);
    snprintf(name, sizeof name, "%s: dk", what);  CHECK_CLOSE(name, got->dk, ref->dk, (size_t)got->nk, tol);
    snprintf(name, sizeof name, "%s: dv", what);  CHECK_CLOSE(name, got->dv, ref->dv, (size_t)got->nk, tol);
}

static bool same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* ---- 1. flash == reference ---------------------------------------------- */

static void flash_vs_ref(const char *label, int B, const int32_t *lq, const int32_t *lk, int h, int hk, int d,
                         bool causal) {
    problem p;
    problem_init(&p, B, lq, lk, h, hk, d, causal);
    char what[160];
    snprintf(what, sizeof what, "%s (B=%d h=%d h_kv=%d d=%d %s)", label, B, h, hk, d, causal ? "causal" : "full");
    result ref, fl;
    result_alloc(&ref, &p);
    result_alloc(&fl, &p);
    if (run(&p, RG_ATTN_REFERENCE, 0, &ref, what)) {
        result fl1;
        result_alloc(&fl1, &p);
        for (int mode = 1; mode <= 2; mode++) {
            char w2[200];
            result *r = mode == 1 ? &fl1 : &fl;
            snprintf(w2, sizeof w2, "%s flash, %s backward", what, mode == 1 ? "single-pass" : "two-pass");
            if (run(&p, RG_ATTN_FLASH, mode, r, w2)) compare(w2, r, &ref, TOL, true);
            result_check_guards(r, w2);
        }
        /* both schedules add the same products in the same order: results do
         * not depend on the schedule (hence not on the thread count either) */
        CHECK(same_bits(fl1.dq, fl.dq, fl.nq) && same_bits(fl1.dk, fl.dk, fl.nk) && same_bits(fl1.dv, fl.dv, fl.nk),
              "%s: single-pass and two-pass backward differ in bits", what);
        result_free(&fl1);
        /* lse may be NULL in the forward */
        rg_attn_desc dd = problem_desc(&p, RG_ATTN_FLASH);
        for (int64_t i = 0; i < fl.nq; i++) fl.o[i] = NAN;
        rg_status s = rg_attn_forward(be, &dd, p.q, p.k, p.v, fl.o, NULL);
        if (CHECK(s == RG_OK, "%s: forward without lse: %s", what, rg_last_error()))
            CHECK_CLOSE(what, fl.o, ref.o, (size_t)fl.nq, TOL);
    }
    result_check_guards(&ref, what);
    result_free(&ref);
    result_free(&fl);
    problem_free(&p);
}

static void test_flash_vs_ref(bool quick) {
    const int32_t L = quick ? 200 : 1000;
    const int32_t lens[] = {1, 2, 7, 63, 64, 65, L};
    const int nl = 7;
    /* the whole length set, causal and not, MHA / GQA / MQA */
    for (int causal = 0; causal <= 1; causal++) {
        flash_vs_ref("lengths", nl, lens, lens, 8, 8, 64, causal);
        flash_vs_ref("lengths", nl, lens, lens, 8, 2, 64, causal);
        flash_vs_ref("lengths", nl, lens, lens, 8, 1, 64, causal);
    }
    /* head dims; the long sequence with d = 256 with fewer heads */
    const int dims[] = {32, 80, 128, 256};
    const int32_t mid[] = {1, 2, 7, 63, 64, 65, quick ? 100 : 300};
    for (int i = 0; i < 4; i++) {
        flash_vs_ref("head dims", nl, mid, mid, 4, i % 2 ? 1 : 4, dims[i], i % 2 == 0);
        flash_vs_ref("head dims", nl, mid, mid, 4, 1, dims[i], i % 2 == 1);
    }
    flash_vs_ref("d=256 long", nl, lens, lens, 2, 1, 256, true);
    if (!quick) flash_vs_ref("d=256 long", nl, lens, lens, 1, 1, 256, false);

    /* many short sequences with one long one */
    int32_t many[81];
    for (int b = 0; b < 80; b++) many[b] = 1 + (int32_t)rg_rng_below(&rng, 9);
    many[37] = quick ? 150 : 700;
    flash_vs_ref("many short, one long", 80, many, many, 4, 1, 64, true);
    flash_vs_ref("many short, one long", 80, many, many, 4, 2, 48, false);

    /* cu_seqlens_q != cu_seqlens_k: lq > lk (causal rows that see nothing),
     * lq < lk (decode-like), empty queries, empty keys */
    const int32_t lq[] = {5, 9, 0, 7, 64, 130, 1, 3, 70, 0};
    const int32_t lk[] = {9, 5, 7, 0, 130, 64, 90, 1, 2, 0};
    for (int causal = 0; causal <= 1; causal++) {
        flash_vs_ref("lq != lk", 10, lq, lk, 4, 2, 64, causal);
        flash_vs_ref("lq != lk", 10, lq, lk, 6, 3, 24, causal);
    }
}

/* ---- 2. packed == one sequence at a time == padded with a mask -----------
 * Every result is gathered back into the packed layout and compared as a
 * whole (per-sequence relative errors would be ill-conditioned for a sequence
 * of length 1). One at a time must give the very same bits: tiles never cross
 * a sequence, so packing changes no arithmetic. */

static void copy_heads(float *dst, const float *src, int64_t rows, int64_t width) {
    memcpy(dst, src, (size_t)(rows * width) * sizeof(float));
}

static void test_packed_vs_alone_vs_padded(bool quick) {
    const int B = 5, h = 4, hk = 2, d = 32;
    int32_t lens[5] = {1, 17, quick ? 40 : 130, 64, 5};
    for (int causal = 0; causal <= 1; causal++) {
        problem p;
        problem_init(&p, B, lens, lens, h, hk, d, causal);
        const int64_t wq = (int64_t)h * d, wk = (int64_t)hk * d;
        result packed, gathered;
        result_alloc(&packed, &p);
        result_alloc(&gathered, &p);
        char what[120];
        snprintf(what, sizeof what, "packed (%s)", causal ? "causal" : "full");
        bool ok = run(&p, RG_ATTN_FLASH, 0, &packed, what);
        result_check_guards(&packed, what);

        /* one sequence at a time, with the flash kernel */
        for (int b = 0; b < B && ok; b++) {
            problem one;
            problem_init(&one, 1, &lens[b], &lens[b], h, hk, d, causal);
            const int64_t s = p.cu_q[b];
            copy_heads(one.q, p.q + s * wq, lens[b], wq);
            copy_heads(one.k, p.k + s * wk, lens[b], wk);
            copy_heads(one.v, p.v + s * wk, lens[b], wk);
            copy_heads(one.dout, p.dout + s * wq, lens[b], wq);
            result r;
            result_alloc(&r, &one);
            char w2[160];
            snprintf(w2, sizeof w2, "%s: sequence %d alone", what, b);
            if ((ok = run(&one, RG_ATTN_FLASH, 0, &r, w2))) {
                copy_heads(gathered.o + s * wq, r.o, lens[b], wq);
                copy_heads(gathered.dq + s * wq, r.dq, lens[b], wq);
                copy_heads(gathered.dk + s * wk, r.dk, lens[b], wk);
                copy_heads(gathered.dv + s * wk, r.dv, lens[b], wk);
                for (int hh = 0; hh < h; hh++)   /* lse is (h, total_q) */
                    copy_heads(gathered.lse + hh * p.tq + s, r.lse + hh * one.tq, lens[b], 1);
            }
            result_check_guards(&r, w2);
            result_free(&r);
            problem_free(&one);
        }
        if (ok)
            CHECK(same_bits(gathered.o, packed.o, packed.nq) && same_bits(gathered.lse, packed.lse, packed.nl) &&
                  same_bits(gathered.dq, packed.dq, packed.nq) && same_bits(gathered.dk, packed.dk, packed.nk) &&
                  same_bits(gathered.dv, packed.dv, packed.nk),
                  "%s: one sequence at a time gives other bits than packed", what);

        /* padded to the longest with a key-padding mask (reference), both mask
         * kinds; padding rows hold garbage and dout = 0 there */
        int32_t Lp = 0, plens[5];
        for (int b = 0; b < B; b++) if (lens[b] > Lp) Lp = lens[b];
        for (int b = 0; b < B; b++) plens[b] = Lp;
        problem pad;
        problem_init(&pad, B, plens, plens, h, hk, d, causal);
        uint8_t *bmask = malloc((size_t)B * Lp * Lp);
        float *amask = malloc((size_t)B * Lp * Lp * sizeof(float));
        for (int b = 0; b < B; b++) {
            const int64_t s = p.cu_q[b], r0 = (int64_t)b * Lp;
            copy_heads(pad.q + r0 * wq, p.q + s * wq, lens[b], wq);
            copy_heads(pad.k + r0 * wk, p.k + s * wk, lens[b], wk);
            copy_heads(pad.v + r0 * wk, p.v + s * wk, lens[b], wk);
            copy_heads(pad.dout + r0 * wq, p.dout + s * wq, lens[b], wq);
            memset(pad.dout + (r0 + lens[b]) * wq, 0, (size_t)((Lp - lens[b]) * wq) * sizeof(float));
            for (int i = 0; i < Lp; i++)
                for (int j = 0; j < Lp; j++) {
                    size_t e = ((size_t)b * Lp + i) * Lp + j;
                    bmask[e] = j < lens[b];
                    amask[e] = j < lens[b] ? 0.0f : -INFINITY;
                }
        }
        for (int kind = RG_ATTN_MASK_BOOL; kind <= RG_ATTN_MASK_ADDITIVE && ok; kind++) {
            result r;
            result_alloc(&r, &pad);
            rg_attn_desc dd = problem_desc(&pad, RG_ATTN_REFERENCE);
            dd.mask_kind = (rg_attn_mask_kind)kind;
            dd.mask = kind == RG_ATTN_MASK_BOOL ? (const void *)bmask : (const void *)amask;
            char w2[160];
            snprintf(w2, sizeof w2, "%s vs padded with %s mask", what, kind == RG_ATTN_MASK_BOOL ? "bool" : "additive");
            rg_status st = rg_attn_forward(be, &dd, pad.q, pad.k, pad.v, r.o, r.lse);
            if (st == RG_OK)
                st = rg_attn_backward(be, &dd, pad.q, pad.k, pad.v, r.o, r.lse, pad.dout, r.dq, r.dk, r.dv);
            if (CHECK(st == RG_OK, "%s: %s", w2, rg_last_error())) {
                bool pad_keys_quiet = true;
                for (int b = 0; b < B; b++) {
                    const int64_t s = p.cu_q[b], r0 = (int64_t)b * Lp;
                    copy_heads(gathered.o + s * wq, r.o + r0 * wq, lens[b], wq);
                    copy_heads(gathered.dq + s * wq, r.dq + r0 * wq, lens[b], wq);
                    copy_heads(gathered.dk + s * wk, r.dk + r0 * wk, lens[b], wk);
                    copy_heads(gathered.dv + s * wk, r.dv + r0 * wk, lens[b], wk);
                    for (int hh = 0; hh < h; hh++)
                        copy_heads(gathered.lse + hh * p.tq + s, r.lse + hh * pad.tq + r0, lens[b], 1);
                    for (int64_t e = (r0 + lens[b]) * wk; e < (r0 + Lp) * wk; e++)
                        pad_keys_quiet &= r.dk[e] == 0 && r.dv[e] == 0;
                }
                compare(w2, &packed, &gathered, TOL, true);
                CHECK(pad_keys_quiet, "%s: padding keys have a gradient", w2);
            }
            result_check_guards(&r, w2);
            result_free(&r);
        }
        free(bmask);
        free(amask);
        problem_free(&pad);
        result_free(&gathered);
        result_free(&packed);
        problem_free(&p);
    }
}

/* ---- 3. gradients against central finite differences --------------------
 * L = sum(dout * o) in double from a plain forward written here (checked
 * against the library's forward first); its central differences with step
 * 1e-4 are accurate to ~1e-8, so the fp32 gradients must match to 1e-4. */

static double loss_double(const problem *p, const double *q, const double *k, const double *v, double scale) {
    const int h = p->h, d = p->d, group = p->h / p->hk;
    double L = 0;
    double s[64];
    for (int b = 0; b < p->B; b++) {
        int q0 = p->cu_q[b], lq = p->cu_q[b + 1] - q0, k0 = p->cu_k[b], lk = p->cu_k[b + 1] - k0;
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < lq; i++) {
                double mx = -INFINITY;
                for (int j = 0; j < lk; j++) {
                    s[j] = -INFINITY;
                    if (p->causal && j > i + lk - lq) continue;
                    double x = 0;
                    for (int c = 0; c < d; c++)
                        x += q[((q0 + i) * h + hh) * d + c] * k[((k0 + j) * p->hk + hh / group) * d + c];
                    s[j] = x * scale;
                    if (s[j] > mx) mx = s[j];
                }
                if (mx == -INFINITY) continue;
                double l = 0;
                for (int j = 0; j < lk; j++) l += exp(s[j] - mx);
                for (int j = 0; j < lk; j++) {
                    double pj = exp(s[j] - mx) / l;
                    for (int c = 0; c < d; c++)
                        L += pj * v[((k0 + j) * p->hk + hh / group) * d + c] * p->dout[((q0 + i) * h + hh) * d + c];
                }
            }
    }
    return L;
}

static double *to_double(const float *x, int64_t n) {
    double *y = malloc((size_t)n * sizeof(double) + 8);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static void fd_check(const problem *p, const result *r, const char *what) {
    const int64_t nq = p->tq * p->h * p->d, nk = p->tk * p->hk * p->d;
    const double scale = 1.0 / sqrt((double)p->d), eps = 1e-4;
    double *q = to_double(p->q, nq), *k = to_double(p->k, nk), *v = to_double(p->v, nk);
    double *x[3] = {q, k, v};
    const float *g[3] = {r->dq, r->dk, r->dv};
    const int64_t n[3] = {nq, nk, nk};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int t = 0; t < 3; t++) {
        float *fd = malloc((size_t)n[t] * sizeof(float) + 4), *off = malloc((size_t)n[t] * sizeof(float) + 4);
        for (int64_t i = 0; i < n[t]; i++) {
            double save = x[t][i];
            x[t][i] = save + eps;
            double lp = loss_double(p, q, k, v, scale);
            x[t][i] = save - eps;
            double lm = loss_double(p, q, k, v, scale);
            x[t][i] = save;
            fd[i] = (float)((lp - lm) / (2 * eps));
            off[i] = g[t][i] * 1.01f;
        }
        char name[160];
        snprintf(name, sizeof name, "%s: %s vs finite differences", what, names[t]);
        CHECK_CLOSE(name, g[t], fd, (size_t)n[t], 1e-4);
        /* the check is sharp enough to see a 1% error in the gradient */
        CHECK(rg_rel_err(off, fd, (size_t)n[t]) > 1e-3, "%s: a 1%% error would go unnoticed", name);
        free(fd);
        free(off);
    }
    free(q); free(k); free(v);
}

static void test_finite_differences(void) {
    /* GQA, causal, lq != lk with rows that see nothing, an empty query sequence */
    const int32_t lq[] = {3, 5, 0, 4}, lk[] = {5, 2, 3, 4};
    for (int causal = 0; causal <= 1; causal++) {
        problem p;
        problem_init(&p, 4, lq, lk, 4, 2, 8, causal);
        /* the plain forward here defines the loss: check it is the library's */
        result ref;
        result_alloc(&ref, &p);
        char what[80];
        snprintf(what, sizeof what, "finite differences (%s)", causal ? "causal" : "full");
        if (run(&p, RG_ATTN_REFERENCE, 0, &ref, what)) {
            double L = 0;
            for (int64_t i = 0; i < ref.nq; i++) L += (double)ref.o[i] * p.dout[i];
            int64_t nq = ref.nq, nk = ref.nk;
            double *q = to_double(p.q, nq), *k = to_double(p.k, nk), *v = to_double(p.v, nk);
            double Ld = loss_double(&p, q, k, v, 1.0 / sqrt((double)p.d));
            CHECK(fabs(L - Ld) <= 1e-5 * (fabs(Ld) + 1), "%s: loss %.9g vs double forward %.9g", what, L, Ld);
            free(q); free(k); free(v);
            char w2[120];
            snprintf(w2, sizeof w2, "%s, reference", what);
            fd_check(&p, &ref, w2);
            for (int mode = 1; mode <= 2; mode++) {
                result fl;
                result_alloc(&fl, &p);
                snprintf(w2, sizeof w2, "%s, flash %s", what, mode == 1 ? "single-pass" : "two-pass");
                if (run(&p, RG_ATTN_FLASH, mode, &fl, w2)) fd_check(&p, &fl, w2);
                result_check_guards(&fl, w2);
                result_free(&fl);
            }
        }
        result_free(&ref);
        problem_free(&p);
    }
}

/* ---- 4. strided views into a fused (T, (h + 2 h_kv) d + pad) buffer ----- */

static void test_strided(void) {
    const int32_t lens[] = {3, 70, 1, 129};
    const int B = 4, h = 4, hk = 2, d = 40, pad = 8;
    const int W = (h + 2 * hk) * d + pad;   /* row stride of the fused buffer */
    for (int algo = RG_ATTN_REFERENCE; algo <= RG_ATTN_FLASH; algo++) {
        problem p;
        problem_init(&p, B, lens, lens, h, hk, d, algo == RG_ATTN_FLASH);
        char what[80];
        snprintf(what, sizeof what, "strided views (%s)", algo == RG_ATTN_FLASH ? "flash" : "reference");
        result contig;
        result_alloc(&contig, &p);
        if (run(&p, (rg_attn_algo)algo, 0, &contig, what)) {
            const int64_t T = p.tq, nf = T * W;
            float *qkv = rg_guarded_alloc((size_t)nf), *dqkv = rg_guarded_alloc((size_t)nf);
            rg_rng_fill_uniform(&rng, qkv, (size_t)nf, -9, 9);   /* the gaps hold garbage */
            for (int64_t i = 0; i < nf; i++) dqkv[i] = 777.0f;
            for (int64_t t = 0; t < T; t++) {
                memcpy(qkv + t * W, p.q + t * h * d, (size_t)h * d * sizeof(float));
                memcpy(qkv + t * W + h * d, p.k + t * hk * d, (size_t)hk * d * sizeof(float));
                memcpy(qkv + t * W + (h + hk) * d, p.v + t * hk * d, (size_t)hk * d * sizeof(float));
            }
            rg_attn_desc dd = problem_desc(&p, (rg_attn_algo)algo);
            dd.stride_q = dd.stride_k = dd.stride_v = W;
            result r;
            result_alloc(&r, &p);
            float *dq = dqkv, *dk = dqkv + h * d, *dv = dqkv + (h + hk) * d;
            rg_status s = rg_attn_forward(be, &dd, qkv, qkv + h * d, qkv + (h + hk) * d, r.o, r.lse);
            for (int mode = 1; mode <= 2 && s == RG_OK; mode++) {
                rg_cpu_flash_bwd_mode = mode;
                s = rg_attn_backward(be, &dd, qkv, qkv + h * d, qkv + (h + hk) * d, r.o, r.lse, p.dout, dq, dk, dv);
                rg_cpu_flash_bwd_mode = 0;
                for (int64_t t = 0; t < T; t++) {   /* unpack the gradients */
                    memcpy(r.dq + t * h * d, dq + t * W, (size_t)h * d * sizeof(float));
                    memcpy(r.dk + t * hk * d, dk + t * W, (size_t)hk * d * sizeof(float));
                    memcpy(r.dv + t * hk * d, dv + t * W, (size_t)hk * d * sizeof(float));
                }
                if (CHECK(s == RG_OK, "%s: %s", what, rg_last_error())) compare(what, &r, &contig, 1e-6, true);
            }
            bool gaps = true;
            for (int64_t t = 0; t < T; t++)
                for (int c = (h + 2 * hk) * d; c < W; c++) gaps &= dqkv[t * W + c] == 777.0f;
            CHECK(gaps, "%s: the gradient buffer's gap columns were written", what);
            rg_guarded_ok(qkv, (size_t)nf, "fused qkv");
            rg_guarded_ok(dqkv, (size_t)nf, "fused dqkv");
            result_check_guards(&r, what);
            result_free(&r);
            rg_guarded_free(qkv);
            rg_guarded_free(dqkv);
        }
        result_free(&contig);
        problem_free(&p);
    }
}

/* ---- 5. degenerate but valid: no tokens at all, all queries blind ------- */

static void test_degenerate(void) {
    const int32_t zero[] = {0, 0}, lq[] = {4, 3}, lk[] = {0, 1};
    problem p;
    problem_init(&p, 2, zero, zero, 2, 1, 8, true);
    rg_attn_desc d = problem_desc(&p, RG_ATTN_FLASH);
    CHECK(rg_attn_forward(be, &d, NULL, NULL, NULL, NULL, NULL) == RG_OK, "no tokens: %s", rg_last_error());
    CHECK(rg_attn_backward(be, &d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL) == RG_OK,
          "no tokens backward: %s", rg_last_error());
    problem_free(&p);
    /* causal with lq > lk: most rows see nothing -> o = 0, lse = -inf, dq = 0 */
    problem_init(&p, 2, lq, lk, 2, 1, 8, true);
    for (int algo = RG_ATTN_REFERENCE; algo <= RG_ATTN_FLASH; algo++) {
        result r;
        result_alloc(&r, &p);
        if (run(&p, (rg_attn_algo)algo, 0, &r, "blind rows")) {
            /* sequence 0 has no keys; in sequence 1 only its last query sees the key */
            bool ok = true;
            for (int hh = 0; hh < 2; hh++)
                for (int t = 0; t < 7; t++) {
                    bool blind = t < 6;
                    float l = r.lse[hh * 7 + t];
                    ok &= blind ? (isinf(l) && l < 0) : isfinite(l);
                    for (int c = 0; c < 8; c++) {
                        float oo = r.o[(t * 2 + hh) * 8 + c], g = r.dq[(t * 2 + hh) * 8 + c];
                        ok &= blind ? (oo == 0 && g == 0) : isfinite(oo);
                    }
                }
            CHECK(ok, "blind rows (%s): o = 0, lse = -inf, dq = 0", algo == RG_ATTN_FLASH ? "flash" : "reference");
        }
        result_check_guards(&r, "blind rows");
        result_free(&r);
    }
    problem_free(&p);
}

/* A NaN in q reaches its row's output and lse (and only that row's). */
static void test_nan_propagates(void) {
    const int32_t lens[] = {5, 70};
    problem p;
    problem_init(&p, 2, lens, lens, 2, 1, 16, true);
    const int64_t bad_t = 5 + 40, bad_h = 1;
    p.q[(bad_t * 2 + bad_h) * 16 + 3] = NAN;
    for (int algo = RG_ATTN_REFERENCE; algo <= RG_ATTN_FLASH; algo++) {
        result r;
        result_alloc(&r, &p);
        rg_attn_desc d = problem_desc(&p, (rg_attn_algo)algo);
        if (CHECK(rg_attn_forward(be, &d, p.q, p.k, p.v, r.o, r.lse) == RG_OK, "NaN forward: %s", rg_last_error())) {
            bool ok = true;
            for (int64_t t = 0; t < p.tq; t++)
                for (int hh = 0; hh < 2; hh++) {
                    bool bad = t == bad_t && hh == bad_h;
                    ok &= bad == (bool)isnan(r.lse[hh * p.tq + t]);
                    for (int c = 0; c < 16; c++) ok &= bad == (bool)isnan(r.o[(t * 2 + hh) * 16 + c]);
                }
            CHECK(ok, "NaN in q (%s): exactly its row's o and lse are NaN", algo == RG_ATTN_FLASH ? "flash" : "reference");
        }
        result_free(&r);
    }
    problem_free(&p);
}

int main(void) {
    rg_test_init("test_attention", &rng);
    const bool quick = rg_test_quick();
    rg_status s = rg_backend_init(RG_BACKEND_CPU, 0, &be);
    if (!CHECK(s == RG_OK, "cpu backend: %s", rg_last_error())) return rg_test_finish();
    test_degenerate();
    test_nan_propagates();
    test_finite_differences();
    test_strided();
    test_packed_vs_alone_vs_padded(quick);
    test_flash_vs_ref(quick);
    rg_backend_free(be);
    return rg_test_finish();
}
