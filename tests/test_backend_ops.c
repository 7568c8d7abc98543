/* test_backend_ops.c — every model op of rg_backend_ops, op by op (after ggml's
 * test-backend-ops). Each op case is a table entry: named tensors with a kind
 * (activation dtype, fp32, int32) and a role (input, overwritten output,
 * accumulated/updated output), initial values, and the values a double
 * reference (ops_ref.h) expects. One runner executes a case on any backend:
 * it uploads every tensor between sentinels, calls the op through the
 * backend's table, downloads, and checks the sentinels and that inputs came
 * back unchanged. On top of it:
 *   1. CPU vs the references on fresh random inputs with awkward sizes;
 *      outputs are pre-filled with random values, so "+=" vs "=" is checked
 *      (accumulated outputs are compared as their change); two runs must be
 *      bit-identical, and non-BLAS ops identical with 1 thread and with all;
 *   2. every backward vs central differences of the reference forward;
 *   3. argument behaviours and multi-step optimizers vs double re-implementations;
 *   4. every other available backend (CUDA, bf16 activations) vs the CPU on
 *      the same bf16-exact inputs, normalised error under a per-op threshold;
 *      skipped with a message when there is no such backend. */
#include "backend.h"
#include "check.h"
#include "core/dtype.h"
#include "core/status.h"
#include "ops_ref.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static rg_rng rng;
static bool quick;
/* Activation inputs are rounded to this dtype when cases are made, so that
 * the CPU and a bf16 backend compute from the very same values. */
static rg_dtype quant = RG_DTYPE_F32;

/* ---- op cases ---------------------------------------------------------- */

enum { K_ACT, K_F32, K_I32 };   /* storage: the backend's act dtype, fp32, int32 */
enum { R_IN, R_OUT, R_ACC };    /* input (must come back unchanged); overwritten output;
                                   accumulated or updated in place (compared as its change) */
#define MAXT 10
#define MAXSCRATCH 40

typedef struct tens {
    const char *name;
    int kind, role;
    size_t n;        /* 0: absent, the op gets NULL */
    int alias;       /* >= 0: shares that tensor's buffer (in-place ops) */
    float *init;     /* values before the op: inputs, and the pre-fill of outputs */
    int32_t *iv;     /* values of K_I32 tensors */
    double *want;    /* outputs: expected values after the op */
    double tol_b;    /* > 0: this output's bf16-backend-vs-CPU threshold instead of the case's */
} tens;

typedef struct opcase opcase;
struct opcase {
    char name[160];
    int nt;
    tens t[MAXT];
    int64_t T;
    int C, OC, V, gelu;
    float eps, lr, b1, b2, wd, mom, gscale, dloss;
    int64_t step;
    rg_status (*call)(rg_backend *be, opcase *c, void **d);
    void (*fd)(opcase *c, float **got);  /* finite differences on the CPU's gradients, or NULL */
    double tol;               /* CPU vs the double reference (relative L2) */
    double tol_act, tol_f32;  /* a bf16-activation backend vs the CPU: act outputs, fp32 outputs */
    double floor;             /* errors are relative to at least this RMS value (outputs that can
                                 cross 0 by cancellation, e.g. gelu' near its root) */
    bool cpu_only;            /* aliases act and fp32 memory: valid only where act is f32 */
    bool blas;                /* goes through BLAS: thread-count invariance not promised */
    bool has_scalar;          /* sum_squares: a host double instead of a tensor */
    double scalar_got, scalar_want;
    void *scratch[MAXSCRATCH];
    int nscratch;
};

static void *scratch(opcase *c, size_t bytes) {
    if (c->nscratch == MAXSCRATCH) { fprintf(stderr, "test_backend_ops: scratch full\n"); exit(2); }
    return c->scratch[c->nscratch++] = rg_test_xmalloc(bytes);
}

static float qv(float x) {
    if (quant == RG_DTYPE_BF16) return rg_bf16_to_f32(rg_f32_to_bf16(x));
    if (quant == RG_DTYPE_F16) return rg_f16_to_f32(rg_f32_to_f16(x));
    return x;
}

/* Adds tensor `name` (n elements; 0 = absent). Outputs get a random pre-fill
 * and a want buffer (accumulated ones start from the pre-fill). */
static int add_t(opcase *c, const char *name, int kind, int role, size_t n) {
    int i = c->nt++;
    tens *t = &c->t[i];
    *t = (tens){.name = name, .kind = kind, .role = role, .n = n, .alias = -1};
    if (!n) return i;
    if (kind == K_I32) {
        t->iv = scratch(c, n * sizeof(int32_t));
        return i;
    }
    t->init = scratch(c, n * sizeof(float));
    if (role != R_IN) {
        rg_rng_fill_uniform(&rng, t->init, n, -1.0f, 1.0f);
        if (kind == K_ACT)
            for (size_t j = 0; j < n; j++) t->init[j] = qv(t->init[j]);
        t->want = scratch(c, n * sizeof(double));
        for (size_t j = 0; j < n; j++) t->want[j] = role == R_ACC ? t->init[j] : NAN;
    }
    return i;
}

/* Uniform values in [lo, hi), rounded to the act dtype for act tensors. */
static void fill(opcase *c, int i, float lo, float hi) {
    tens *t = &c->t[i];
    rg_rng_fill_uniform(&rng, t->init, t->n, lo, hi);
    if (t->kind == K_ACT)
        for (size_t j = 0; j < t->n; j++) t->init[j] = qv(t->init[j]);
}

/* A double copy of tensor i's initial values (NULL when absent). */
static double *dcopy(opcase *c, int i) {
    tens *t = &c->t[i];
    if (!t->n) return NULL;
    double *d = scratch(c, t->n * sizeof(double));
    for (size_t j = 0; j < t->n; j++) d[j] = t->init[j];
    return d;
}

static void case_free(opcase *c) {
    for (int i = 0; i < c->nscratch; i++) free(c->scratch[i]);
    c->nscratch = 0;
}

#define NEED(be, member)                                                                            \
    do {                                                                                            \
        if (!(be)->ops->member)                                                                     \
            return rg_fail(RG_ERR_UNSUPPORTED, "the %s backend has no " #member, (be)->ops->name); \
    } while (0)

/* ---- the runner: one case on one backend ---------------------------------- */

#define GUARD 16
static const float SENT = 24576.0f;        /* 1.5 * 2^14: exact in f32, bf16 and f16, large
                                              enough that reading it changes a result */
static const int32_t ISENT = 0x5eadbeef;

static rg_dtype kind_dtype(rg_backend *be, int kind) {
    return kind == K_ACT ? rg_backend_act_dtype(be) : kind == K_F32 ? RG_DTYPE_F32 : RG_DTYPE_I32;
}

/* Runs c on be. got[i] receives the final values of every output (malloc'd,
 * NULL for inputs and absent tensors). Sentinel and untouched-input
 * violations are reported as one failed check. Returns the op's status. */
static rg_status run_case(rg_backend *be, opcase *c, float **got) {
    void *buf[MAXT] = {0}, *d[MAXT] = {0};
    float *vals[MAXT] = {0};
    bool clobbered[MAXT] = {0};
    rg_status s = RG_OK;
    for (int i = 0; i < c->nt; i++) {
        got[i] = NULL;
        if (c->t[i].alias >= 0) clobbered[c->t[i].alias] = true;
    }
    for (int i = 0; i < c->nt && s == RG_OK; i++) {
        tens *t = &c->t[i];
        if (!t->n || t->alias >= 0) continue;
        size_t es = rg_dtype_size(kind_dtype(be, t->kind)), tot = t->n + 2 * GUARD;
        s = rg_buffer_alloc(be, tot * es, &buf[i]);
        if (s != RG_OK) break;
        if (t->kind == K_I32) {
            int32_t *st = rg_test_xmalloc(tot * sizeof(int32_t));
            for (size_t j = 0; j < tot; j++) st[j] = ISENT;
            memcpy(st + GUARD, t->iv, t->n * sizeof(int32_t));
            s = rg_buffer_upload(be, buf[i], st, tot * sizeof(int32_t));
            free(st);
        } else {
            float *st = rg_test_xmalloc(tot * sizeof(float));
            for (size_t j = 0; j < tot; j++) st[j] = SENT;
            memcpy(st + GUARD, t->init, t->n * sizeof(float));
            s = rg_buffer_upload_f32(be, buf[i], kind_dtype(be, t->kind), st, tot);
            free(st);
        }
        d[i] = (char *)buf[i] + GUARD * es;
    }
    for (int i = 0; i < c->nt; i++)
        if (c->t[i].alias >= 0) d[i] = d[c->t[i].alias];
    if (s == RG_OK) s = c->call(be, c, d);
    if (s == RG_OK) s = rg_backend_sync(be);
    bool intact = true;
    char why[200] = "";
    for (int i = 0; i < c->nt && s == RG_OK; i++) {
        tens *t = &c->t[i];
        if (!t->n || t->alias >= 0) continue;
        size_t tot = t->n + 2 * GUARD;
        if (t->kind == K_I32) {
            int32_t *st = rg_test_xmalloc(tot * sizeof(int32_t));
            s = rg_buffer_download(be, st, buf[i], tot * sizeof(int32_t));
            for (size_t j = 0; s == RG_OK && j < GUARD; j++)
                if (st[j] != ISENT || st[GUARD + t->n + j] != ISENT) {
                    intact = false;
                    snprintf(why, sizeof why, "%s: sentinel %zu overwritten", t->name, j);
                }
            if (s == RG_OK && memcmp(st + GUARD, t->iv, t->n * sizeof(int32_t)) != 0) {
                intact = false;
                snprintf(why, sizeof why, "%s: int32 input changed", t->name);
            }
            free(st);
            continue;
        }
        float *st = rg_test_xmalloc(tot * sizeof(float));
        s = rg_buffer_download_f32(be, st, buf[i], kind_dtype(be, t->kind), tot);
        for (size_t j = 0; s == RG_OK && j < GUARD; j++) {
            if (st[j] != SENT) {
                intact = false;
                snprintf(why, sizeof why, "%s: written %zu element(s) before its start", t->name, GUARD - j);
            }
            if (st[GUARD + t->n + j] != SENT) {
                intact = false;
                snprintf(why, sizeof why, "%s: written at index n + %zu, past its end", t->name, j);
            }
        }
        vals[i] = rg_test_xmalloc(t->n * sizeof(float));
        memcpy(vals[i], st + GUARD, t->n * sizeof(float));
        free(st);
        if (s == RG_OK && t->role == R_IN && !clobbered[i] && memcmp(vals[i], t->init, t->n * sizeof(float)) != 0) {
            intact = false;
            snprintf(why, sizeof why, "%s: input changed by the op", t->name);
        }
    }
    if (s == RG_OK) {
        CHECK(intact, "%s on %s: %s", c->name, rg_backend_name(be), why);
        for (int i = 0; i < c->nt; i++) {
            tens *t = &c->t[i];
            if (!t->n || t->role == R_IN) continue;
            int owner = t->alias >= 0 ? t->alias : i;
            got[i] = rg_test_xmalloc(t->n * sizeof(float));
            memcpy(got[i], vals[owner], t->n * sizeof(float));
        }
    }
    for (int i = 0; i < c->nt; i++) {
        free(vals[i]);
        rg_buffer_free(be, buf[i]);
    }
    return s;
}

static void free_got(opcase *c, float **got) {
    for (int i = 0; i < c->nt; i++) { free(got[i]); got[i] = NULL; }
}

/* Half a unit in the last place of x stored as dt. */
static double half_ulp(float x, rg_dtype dt) {
    int e;
    if (x == 0 || !isfinite(x)) return 0;
    frexp(x, &e);   /* |x| in [2^(e-1), 2^e) */
    int mant = dt == RG_DTYPE_BF16 ? 8 : dt == RG_DTYPE_F16 ? 11 : 24;
    return ldexp(1.0, e - 1 - mant);
}

/* ||got - want|| / ||want - base||. Accumulated outputs (base != NULL) are
 * compared by their change, so a "=" where "+=" belongs (or the reverse)
 * cannot hide under the pre-fill's magnitude; a change is only known to the
 * precision got is stored in, so `roundings` half-ulps of got (dtype store)
 * are forgiven per element. NaN in got counts as infinite. */
static double rel_err(const float *got, const double *want, const float *base, size_t n, rg_dtype store,
                      int roundings, double floor, size_t *worst) {
    double num = 0, den = 0, wd = -1;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]), b = base ? base[i] : 0.0;
        if (isnan(got[i]) && !isnan(want[i])) return INFINITY;
        if (e > wd) { wd = e; *worst = i; }
        e = fmax(0.0, e - roundings * half_ulp(got[i], store));
        num += e * e;
        den += (want[i] - b) * (want[i] - b);
    }
    den = fmax(den, floor * floor * (double)n);
    return den > 1e-300 ? sqrt(num / den) : sqrt(num);
}

/* How outputs are judged: against the reference (c->tol), another backend
 * against the CPU (c->tol_act / c->tol_f32), or exactly (the harness's self-check). */
enum { TOL_REF, TOL_BACKEND, TOL_EXACT };

/* Compares every output of c (got) with want[i] (or c's own wants); returns the largest error. */
static double compare_outputs(opcase *c, float **got, double **want, rg_backend *be, int mode) {
    const char *who = rg_backend_name(be);
    double worst_err = 0;
    for (int i = 0; i < c->nt; i++) {
        tens *t = &c->t[i];
        if (!t->n || t->role == R_IN) continue;
        const double *w = want ? want[i] : t->want;
        double tol = mode == TOL_REF ? c->tol : mode == TOL_EXACT ? 0 : t->kind == K_ACT ? c->tol_act : c->tol_f32;
        if (mode == TOL_BACKEND && t->tol_b > 0) tol = t->tol_b;
        size_t wi;
        bool acc = t->role == R_ACC;
        double e = rel_err(got[i], w, acc ? t->init : NULL, t->n, kind_dtype(be, t->kind), acc, c->floor, &wi);
        CHECK(e <= tol, "%s %s, %s: rel err %.3g > %.3g (worst index %zu: got %.9g, want %.9g)", who, c->name,
              t->name, e, tol, wi, got[i][wi], w[wi]);
        if (e > worst_err) worst_err = e;
    }
    if (c->has_scalar) {
        double want_s = c->scalar_want;
        double e = fabs(c->scalar_got - want_s) / fmax(fabs(want_s), 1e-300);
        double tol = mode == TOL_REF ? c->tol : mode == TOL_EXACT ? 0 : c->tol_f32;
        CHECK(e <= tol, "%s %s: scalar %.17g vs %.17g, rel err %.3g > %.3g", who, c->name, c->scalar_got, want_s,
              e, tol);
        if (e > worst_err) worst_err = e;
    }
    return worst_err;
}

static bool same_bits(opcase *c, float **a, float **b) {
    for (int i = 0; i < c->nt; i++)
        if (a[i] && memcmp(a[i], b[i], c->t[i].n * sizeof(float)) != 0) return false;
    return true;
}

/* ---- finite differences ----------------------------------------------- */

#define FD_SAMPLES 24
#define FD_TOL 1e-4   /* the CPU's fp32 gradients agree to ~1e-6; a 0.1% error must fail */

/* Central differences of loss() (double, through the reference forward) with
 * respect to x at FD_SAMPLES indices, compared with the op's gradient grad
 * (its change from base when accumulated): half drawn at random, half the
 * gradient's largest entries (so that a sparse gradient, e.g. a peaked
 * softmax, is still tested where it matters). Errors are relative to the
 * sampled FD values, floored at c->floor and 1e-3 of the largest entry (an FD
 * of an entry ~0 is only known to ~1e-11 absolute). x is perturbed in place
 * and restored. */
static void fd_check(opcase *c, const char *what, double *x, size_t n, const float *grad, const float *base,
                     double (*loss)(opcase *, void *), void *ctx) {
    size_t idx[FD_SAMPLES];
    int ns = 0;
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs((double)grad[i] - (base ? base[i] : 0.0)));
    if (n <= FD_SAMPLES) {
        for (size_t i = 0; i < n; i++) idx[ns++] = i;
    } else {
        while (ns < FD_SAMPLES / 2) idx[ns++] = (size_t)rg_rng_below(&rng, n);
        for (int k = 0; k < FD_SAMPLES / 2; k++) {   /* the largest entries not yet taken */
            size_t best = 0;
            double bv = -1;
            for (size_t i = 0; i < n; i++) {
                double g = fabs((double)grad[i] - (base ? base[i] : 0.0));
                bool taken = false;
                for (int j = FD_SAMPLES / 2; j < ns; j++) taken |= idx[j] == i;
                if (!taken && g > bv) { bv = g; best = i; }
            }
            idx[ns++] = best;
        }
    }
    double num = 0, num_bad = 0, den = 0;
    for (int k = 0; k < ns; k++) {
        size_t i = idx[k];
        double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
        x[i] = x0 + h;
        double lp = loss(c, ctx);
        x[i] = x0 - h;
        double lm = loss(c, ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h), g = (double)grad[i] - (base ? (double)base[i] : 0.0);
        num += (g - fd) * (g - fd);
        num_bad += (g * 1.001 - fd) * (g * 1.001 - fd);
        den += fd * fd;
    }
    double floor = fmax(c->floor, 1e-3 * gmax);
    bool floored = den < floor * floor * ns;
    den = fmax(den, floor * floor * ns);
    double e = den > 1e-300 ? sqrt(num / den) : sqrt(num);
    CHECK(e <= FD_TOL, "finite differences, %s %s: rel err %.3g > %g", c->name, what, e, FD_TOL);
    /* The same check must reject a gradient that is 0.1% off (unless the
     * sampled gradient is ~0 or under the floor, as with gelu' at its root). */
    if (gmax > 1e-6 && !floored)
        CHECK(sqrt(num_bad / den) > FD_TOL, "finite differences, %s %s: a 0.1%% error would pass (%.3g)",
              c->name, what, sqrt(num_bad / den));
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- embedding ---------------------------------------------------------- */

static rg_status call_emb_fwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, embedding_forward);
    return be->ops->embedding_forward(be, d[0], d[1], d[2], d[3], d[4], c->T, c->C);
}

/* tensors: 0 out, 1 tokens, 2 pos, 3 wte (V,C), 4 wpe (P,C) */
static void mk_emb_fwd(opcase *c, int64_t T, int C, int V, int P) {
    snprintf(c->name, sizeof c->name, "embedding_forward T=%lld C=%d V=%d P=%d", (long long)T, C, V, P);
    c->T = T, c->C = C, c->call = call_emb_fwd, c->tol = 1e-6, c->tol_act = 5e-3, c->tol_f32 = 1e-5;
    add_t(c, "out", K_ACT, R_OUT, T * C);
    add_t(c, "tokens", K_I32, R_IN, T);
    add_t(c, "pos", K_I32, R_IN, T);
    add_t(c, "wte", K_ACT, R_IN, (size_t)V * C);
    add_t(c, "wpe", K_ACT, R_IN, (size_t)P * C);
    for (int64_t t = 0; t < T; t++) {
        c->t[1].iv[t] = (int32_t)rg_rng_below(&rng, V);
        c->t[2].iv[t] = (int32_t)rg_rng_below(&rng, P);
    }
    fill(c, 3, -1, 1);
    fill(c, 4, -0.5f, 0.5f);
    ref_embedding_forward(c->t[0].want, c->t[1].iv, c->t[2].iv, dcopy(c, 3), dcopy(c, 4), T, C);
}

static rg_status call_emb_bwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, embedding_backward);
    return be->ops->embedding_backward(be, d[0], d[1], d[2], d[3], d[4], c->T, c->C);
}

typedef struct { double *wte, *wpe, *dout, *out; } emb_ctx;

static double emb_loss(opcase *c, void *p) {
    emb_ctx *x = p;
    ref_embedding_forward(x->out, c->t[3].iv, c->t[4].iv, x->wte, x->wpe, c->T, c->C);
    return dot(x->out, x->dout, (size_t)c->T * c->C);
}

static void fd_emb(opcase *c, float **got) {
    emb_ctx x = {dcopy(c, 0), dcopy(c, 1), dcopy(c, 2), scratch(c, c->T * c->C * sizeof(double))};
    /* the gradient is linear in dout; any tables do: start from the pre-fill */
    fd_check(c, "dwte", x.wte, c->t[0].n, got[0], c->t[0].init, emb_loss, &x);
    fd_check(c, "dwpe", x.wpe, c->t[1].n, got[1], c->t[1].init, emb_loss, &x);
}

/* tensors: 0 dwte (V,C), 1 dwpe (P,C), 2 dout, 3 tokens, 4 pos */
static void mk_emb_bwd(opcase *c, int64_t T, int C, int V, int P) {
    snprintf(c->name, sizeof c->name, "embedding_backward T=%lld C=%d V=%d P=%d", (long long)T, C, V, P);
    c->T = T, c->C = C, c->call = call_emb_bwd, c->tol = 1e-6, c->tol_act = 1e-2, c->tol_f32 = 1e-4;
    add_t(c, "dwte", K_F32, R_ACC, (size_t)V * C);
    add_t(c, "dwpe", K_F32, R_ACC, (size_t)P * C);
    add_t(c, "dout", K_ACT, R_IN, T * C);
    add_t(c, "tokens", K_I32, R_IN, T);
    add_t(c, "pos", K_I32, R_IN, T);
    fill(c, 2, -1, 1);
    for (int64_t t = 0; t < T; t++) {
        c->t[3].iv[t] = (int32_t)rg_rng_below(&rng, V);
        c->t[4].iv[t] = (int32_t)rg_rng_below(&rng, P);
    }
    ref_embedding_backward(c->t[0].want, c->t[1].want, dcopy(c, 2), c->t[3].iv, c->t[4].iv, T, C);
    if (T * C * (V + P) < 2000000) c->fd = fd_emb;
}

/* ---- layernorm ---------------------------------------------------------- */

static rg_status call_ln_fwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, layernorm_forward);
    return be->ops->layernorm_forward(be, d[0], d[1], d[2], d[3], d[4], d[5], c->eps, c->T, c->C);
}

/* tensors: 0 out, 1 mean, 2 rstd, 3 inp, 4 weight, 5 bias (optional). offset
 * shifts the inputs (a two-pass variance keeps its precision). */
static void mk_ln_fwd(opcase *c, int64_t T, int C, bool bias, float offset) {
    snprintf(c->name, sizeof c->name, "layernorm_forward T=%lld C=%d bias=%d offset=%g", (long long)T, C, bias,
             offset);
    c->T = T, c->C = C, c->eps = 1e-5f, c->call = call_ln_fwd, c->tol = 2e-6, c->tol_act = 1e-2, c->tol_f32 = 1e-4;
    add_t(c, "out", K_ACT, R_OUT, T * C);
    add_t(c, "mean", K_F32, R_OUT, T);
    add_t(c, "rstd", K_F32, R_OUT, T);
    add_t(c, "inp", K_ACT, R_IN, T * C);
    add_t(c, "weight", K_ACT, R_IN, C);
    add_t(c, "bias", K_ACT, R_IN, bias ? C : 0);
    fill(c, 3, offset - 2, offset + 2);
    fill(c, 4, 0.5f, 1.5f);
    if (bias) fill(c, 5, -1, 1);
    ref_layernorm_forward(c->t[0].want, c->t[1].want, c->t[2].want, dcopy(c, 3), dcopy(c, 4), dcopy(c, 5),
                          c->eps, T, C);
}

static rg_status call_ln_bwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, layernorm_backward);
    return be->ops->layernorm_backward(be, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], c->T, c->C);
}

typedef struct { double *inp, *w, *b, *dout, *out; } ln_ctx;

static double ln_loss(opcase *c, void *p) {
    ln_ctx *x = p;
    ref_layernorm_forward(x->out, NULL, NULL, x->inp, x->w, x->b, c->eps, c->T, c->C);
    return dot(x->out, x->dout, (size_t)c->T * c->C);
}

static void fd_ln(opcase *c, float **got) {
    ln_ctx x = {dcopy(c, 4), dcopy(c, 5), NULL, dcopy(c, 3), scratch(c, c->T * c->C * sizeof(double))};
    double *b = NULL;
    if (c->t[2].n) {   /* the bias does not change the gradients; any value will do */
        b = scratch(c, c->C * sizeof(double));
        for (int i = 0; i < c->C; i++) b[i] = 0.25 * i;
    }
    x.b = b;
    fd_check(c, "dinp", x.inp, c->t[0].n, got[0], c->t[0].init, ln_loss, &x);
    fd_check(c, "dweight", x.w, c->t[1].n, got[1], c->t[1].init, ln_loss, &x);
    if (b) fd_check(c, "dbias", b, c->C, got[2], c->t[2].init, ln_loss, &x);
}

/* tensors: 0 dinp (+=), 1 dweight, 2 dbias (optional), 3 dout, 4 inp, 5 weight, 6 mean, 7 rstd */
static void mk_ln_bwd(opcase *c, int64_t T, int C, bool bias, float offset) {
    snprintf(c->name, sizeof c->name, "layernorm_backward T=%lld C=%d bias=%d offset=%g", (long long)T, C, bias,
             offset);
    c->T = T, c->C = C, c->eps = 1e-5f, c->call = call_ln_bwd, c->tol = 1e-5, c->tol_act = 1e-2, c->tol_f32 = 1e-4;
    add_t(c, "dinp", K_ACT, R_ACC, T * C);
    add_t(c, "dweight", K_F32, R_ACC, C);
    add_t(c, "dbias", K_F32, R_ACC, bias ? C : 0);
    add_t(c, "dout", K_ACT, R_IN, T * C);
    add_t(c, "inp", K_ACT, R_IN, T * C);
    add_t(c, "weight", K_ACT, R_IN, C);
    add_t(c, "mean", K_F32, R_IN, T);
    add_t(c, "rstd", K_F32, R_IN, T);
    fill(c, 3, -1, 1);
    fill(c, 4, offset - 2, offset + 2);
    fill(c, 5, 0.5f, 1.5f);
    /* mean and rstd as the forward saves them */
    double *inp = dcopy(c, 4), *w = dcopy(c, 5), *mean = scratch(c, T * sizeof(double)),
           *rstd = scratch(c, T * sizeof(double)), *tmp = scratch(c, T * C * sizeof(double));
    ref_layernorm_forward(tmp, mean, rstd, inp, w, NULL, c->eps, T, C);
    for (int64_t t = 0; t < T; t++) {
        c->t[6].init[t] = (float)mean[t];
        c->t[7].init[t] = (float)rstd[t];
    }
    ref_layernorm_backward(c->t[0].want, c->t[1].want, bias ? c->t[2].want : NULL, dcopy(c, 3), inp, w, c->eps,
                           T, C);
    if (T * C < 20000) c->fd = fd_ln;
}

static rg_status call_ln_bwd_sum(rg_backend *be, opcase *c, void **d) {
    NEED(be, layernorm_backward_sum);
    return be->ops->layernorm_backward_sum(be, d[0], d[1], d[2], d[8], d[3], d[4], d[5], d[6], d[7], c->T, c->C);
}

/* layernorm_backward's tensors, then 8 dinp_sum (C, +=, optional): the column sums of the dinp left */
static void mk_ln_bwd_sum(opcase *c, int64_t T, int C, bool bias, bool sum) {
    mk_ln_bwd(c, T, C, bias, 0);
    c->fd = NULL;
    snprintf(c->name, sizeof c->name, "layernorm_backward_sum T=%lld C=%d bias=%d sum=%d", (long long)T, C, bias,
             sum);
    c->call = call_ln_bwd_sum;
    int i = add_t(c, "dinp_sum", K_F32, R_ACC, sum ? C : 0);
    /* a bf16 backend sums dinp as stored (rounded), the CPU its fp32 values:
     * each of the T terms differs by up to half a bf16 ulp */
    c->t[i].tol_b = 5e-3;
    if (sum)
        for (int64_t t = 0; t < T; t++)
            for (int k = 0; k < C; k++) c->t[i].want[k] += c->t[0].want[t * C + k];
}

/* ---- matmul ------------------------------------------------------------- */

static const char *gelu_name(int g) { return g == RG_GELU_ERF ? "erf" : g == RG_GELU_TANH ? "tanh" : "none"; }

static rg_status call_mm_fwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, matmul_forward);
    return be->ops->matmul_forward(be, d[0], d[1], d[2], d[3], d[4], c->T, c->C, c->OC, c->gelu);
}

/* tensors: 0 out, 1 pre_gelu (with gelu), 2 inp (T,C), 3 weight (OC,C), 4 bias (optional) */
static void mk_mm_fwd(opcase *c, int64_t T, int C, int OC, bool bias, int gelu) {
    snprintf(c->name, sizeof c->name, "matmul_forward T=%lld C=%d OC=%d bias=%d gelu=%s", (long long)T, C, OC,
             bias, gelu_name(gelu));
    c->T = T, c->C = C, c->OC = OC, c->gelu = gelu, c->call = call_mm_fwd, c->blas = true;
    c->tol = 1e-5, c->tol_act = 1e-2, c->tol_f32 = 1e-4;
    add_t(c, "out", K_ACT, R_OUT, T * OC);
    add_t(c, "pre_gelu", K_ACT, R_OUT, gelu ? T * OC : 0);
    add_t(c, "inp", K_ACT, R_IN, T * C);
    add_t(c, "weight", K_ACT, R_IN, (size_t)OC * C);
    add_t(c, "bias", K_ACT, R_IN, bias ? OC : 0);
    float a = 2.0f / sqrtf((float)C);   /* pre-activations of order 1, both GELU regimes */
    fill(c, 2, -1, 1);
    fill(c, 3, -a, a);
    if (bias) fill(c, 4, -1, 1);
    ref_matmul_forward(c->t[0].want, gelu ? c->t[1].want : NULL, dcopy(c, 2), dcopy(c, 3), dcopy(c, 4), T, C, OC,
                       gelu);
}

static rg_status call_mm_bwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, matmul_backward);
    return be->ops->matmul_backward(be, d[0], d[1], d[2], d[3], d[4], d[5], c->T, c->C, c->OC);
}

typedef struct { double *inp, *w, *b, *dout, *out; } mm_ctx;

static double mm_loss(opcase *c, void *p) {
    mm_ctx *x = p;
    ref_matmul_forward(x->out, NULL, x->inp, x->w, x->b, c->T, c->C, c->OC, 0);
    return dot(x->out, x->dout, (size_t)c->T * c->OC);
}

static void fd_mm(opcase *c, float **got) {
    mm_ctx x = {dcopy(c, 4), dcopy(c, 5), scratch(c, c->OC * sizeof(double)), dcopy(c, 3),
                scratch(c, c->T * c->OC * sizeof(double))};
    for (int o = 0; o < c->OC; o++) x.b[o] = 0.1 * o;
    if (c->t[0].n) fd_check(c, "dinp", x.inp, c->t[0].n, got[0], NULL, mm_loss, &x);
    fd_check(c, "dweight", x.w, c->t[1].n, got[1], c->t[1].init, mm_loss, &x);
    if (c->t[2].n) fd_check(c, "dbias", x.b, c->OC, got[2], c->t[2].init, mm_loss, &x);
}

/* tensors: 0 dinp (optional, overwritten), 1 dweight (+=), 2 dbias (optional, +=), 3 dout, 4 inp, 5 weight */
static void mk_mm_bwd(opcase *c, int64_t T, int C, int OC, bool dinp, bool bias) {
    snprintf(c->name, sizeof c->name, "matmul_backward T=%lld C=%d OC=%d dinp=%d dbias=%d", (long long)T, C, OC,
             dinp, bias);
    c->T = T, c->C = C, c->OC = OC, c->call = call_mm_bwd, c->blas = true;
    c->tol = 1e-5, c->tol_act = 1e-2, c->tol_f32 = 1e-3;
    add_t(c, "dinp", K_ACT, R_OUT, dinp ? T * C : 0);
    add_t(c, "dweight", K_F32, R_ACC, (size_t)OC * C);
    add_t(c, "dbias", K_F32, R_ACC, bias ? OC : 0);
    add_t(c, "dout", K_ACT, R_IN, T * OC);
    add_t(c, "inp", K_ACT, R_IN, T * C);
    add_t(c, "weight", K_ACT, R_IN, (size_t)OC * C);
    fill(c, 3, -1, 1);
    fill(c, 4, -1, 1);
    fill(c, 5, -1, 1);
    ref_matmul_backward(dinp ? c->t[0].want : NULL, c->t[1].want, bias ? c->t[2].want : NULL, dcopy(c, 3),
                        dcopy(c, 4), dcopy(c, 5), T, C, OC);
    if ((double)T * C * OC < 300000) c->fd = fd_mm;
}

/* ---- gelu, add ------------------------------------------------------------ */

static rg_status call_gelu_fwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, gelu_forward);
    return be->ops->gelu_forward(be, d[0], d[1], c->T, c->gelu);
}

static void mk_gelu_fwd(opcase *c, int64_t n, int gelu) {
    snprintf(c->name, sizeof c->name, "gelu_forward n=%lld gelu=%s", (long long)n, gelu_name(gelu));
    c->T = n, c->gelu = gelu, c->call = call_gelu_fwd, c->tol = 1e-6, c->tol_act = 5e-3, c->tol_f32 = 1e-5;
    c->floor = 0.01;   /* the far negative tail (|gelu| < 1e-12) is ill-conditioned in x */
    add_t(c, "out", K_ACT, R_OUT, n);
    add_t(c, "inp", K_ACT, R_IN, n);
    fill(c, 1, -8, 8);   /* both tails: gelu -> 0 and gelu -> x */
    for (int64_t i = 0; i < n; i++) c->t[0].want[i] = ref_gelu(c->t[1].init[i], gelu == RG_GELU_TANH);
}

static rg_status call_gelu_bwd(rg_backend *be, opcase *c, void **d) {
    NEED(be, gelu_backward);
    return be->ops->gelu_backward(be, d[0], d[1], d[2], c->T, c->gelu);
}

typedef struct { double *inp, *dout; } gelu_ctx;

static double gelu_loss(opcase *c, void *p) {
    gelu_ctx *x = p;
    double s = 0;
    for (int64_t i = 0; i < c->T; i++) s += x->dout[i] * ref_gelu(x->inp[i], c->gelu == RG_GELU_TANH);
    return s;
}

static void fd_gelu(opcase *c, float **got) {
    gelu_ctx x = {dcopy(c, 1), dcopy(c, 2)};
    fd_check(c, "dinp", x.inp, c->t[0].n, got[0], NULL, gelu_loss, &x);
}

/* tensors: 0 dinp, 1 inp, 2 dout */
static void mk_gelu_bwd(opcase *c, int64_t n, int gelu) {
    snprintf(c->name, sizeof c->name, "gelu_backward n=%lld gelu=%s", (long long)n, gelu_name(gelu));
    c->T = n, c->gelu = gelu, c->call = call_gelu_bwd, c->tol = 1e-5, c->tol_act = 5e-3, c->tol_f32 = 1e-5;
    c->floor = 0.02;   /* dout ~ U(-1,1) times gelu' ~ 0.5: typical values ~0.3 */
    add_t(c, "dinp", K_ACT, R_OUT, n);
    add_t(c, "inp", K_ACT, R_IN, n);
    add_t(c, "dout", K_ACT, R_IN, n);
    fill(c, 1, -8, 8);
    fill(c, 2, -1, 1);
    for (int64_t i = 0; i < n; i++)
        c->t[0].want[i] = c->t[2].init[i] * ref_gelu_grad(c->t[1].init[i], gelu == RG_GELU_TANH);
    if (n < 100000) c->fd = fd_gelu;
}

static rg_status call_add(rg_backend *be, opcase *c, void **d) {
    NEED(be, add);
    return be->ops->add(be, d[0], d[1], d[2], c->T);
}

/* tensors: 0 out (optionally in a's buffer), 1 a, 2 b */
static void mk_add(opcase *c, int64_t n, bool in_place) {
    snprintf(c->name, sizeof c->name, "add n=%lld out=%s", (long long)n, in_place ? "a" : "new");
    c->T = n, c->call = call_add, c->tol = 1e-7, c->tol_act = 5e-3, c->tol_f32 = 1e-6;
    add_t(c, "out", K_ACT, R_OUT, n);
    add_t(c, "a", K_ACT, R_IN, n);
    add_t(c, "b", K_ACT, R_IN, n);
    if (in_place) c->t[0].alias = 1;
    fill(c, 1, -1, 1);
    fill(c, 2, -1, 1);
    for (int64_t i = 0; i < n; i++) c->t[0].want[i] = (double)c->t[1].init[i] + c->t[2].init[i];
}

/* ---- fused ops: projection + residual, gelu backward + dbias ---------------- */

static rg_status call_mm_res(rg_backend *be, opcase *c, void **d) {
    NEED(be, matmul_forward_residual);
    return be->ops->matmul_forward_residual(be, d[0], d[2], d[3], d[4], d[1], c->T, c->C, c->OC);
}

/* tensors: 0 out (optionally in the residual's buffer), 1 residual (T,OC), 2 inp (T,C),
 * 3 weight (OC,C), 4 bias (optional). The residual is larger than the product's
 * terms, as the residual stream is, so a lost product or bias still shows. */
static void mk_mm_res(opcase *c, int64_t T, int C, int OC, bool bias, bool in_place) {
    snprintf(c->name, sizeof c->name, "matmul_forward_residual T=%lld C=%d OC=%d bias=%d out=%s", (long long)T, C,
             OC, bias, in_place ? "residual" : "new");
    c->T = T, c->C = C, c->OC = OC, c->call = call_mm_res, c->blas = true;
    c->tol = 1e-5, c->tol_act = 1e-2, c->tol_f32 = 1e-4;
    add_t(c, "out", K_ACT, R_OUT, T * OC);
    add_t(c, "residual", K_ACT, R_IN, T * OC);
    add_t(c, "inp", K_ACT, R_IN, T * C);
    add_t(c, "weight", K_ACT, R_IN, (size_t)OC * C);
    add_t(c, "bias", K_ACT, R_IN, bias ? OC : 0);
    if (in_place) c->t[0].alias = 1;
    float a = 1.0f / sqrtf((float)C);
    fill(c, 1, -2, 2);
    fill(c, 2, -1, 1);
    fill(c, 3, -a, a);
    if (bias) fill(c, 4, -0.5f, 0.5f);
    ref_matmul_forward(c->t[0].want, NULL, dcopy(c, 2), dcopy(c, 3), dcopy(c, 4), T, C, OC, 0);
    for (size_t i = 0; i < c->t[0].n; i++) c->t[0].want[i] += c->t[1].init[i];
}

static rg_status call_gelu_db(rg_backend *be, opcase *c, void **d) {
    NEED(be, gelu_backward_dbias);
    return be->ops->gelu_backward_dbias(be, d[0], d[1], d[2], d[3], c->T, c->OC, c->gelu);
}

/* tensors: 0 dinp (T,OC) (optionally in dout's buffer), 1 dbias (OC, +=, optional), 2 inp, 3 dout */
static void mk_gelu_db(opcase *c, int64_t T, int OC, int gelu, bool dbias, bool in_place) {
    snprintf(c->name, sizeof c->name, "gelu_backward_dbias T=%lld OC=%d gelu=%s dbias=%d out=%s", (long long)T, OC,
             gelu_name(gelu), dbias, in_place ? "dout" : "new");
    c->T = T, c->OC = OC, c->gelu = gelu, c->call = call_gelu_db, c->tol = 1e-5, c->tol_act = 5e-3;
    c->tol_f32 = 1e-4;   /* both sum dinp before rounding: fp32 summation order alone differs */
    c->floor = 0.02;
    int64_t n = T * OC;
    add_t(c, "dinp", K_ACT, R_OUT, n);
    add_t(c, "dbias", K_F32, R_ACC, dbias ? OC : 0);
    add_t(c, "inp", K_ACT, R_IN, n);
    add_t(c, "dout", K_ACT, R_IN, n);
    if (in_place) c->t[0].alias = 3;
    fill(c, 2, -6, 6);
    /* a bias in dout, so that the column sums are not ~0 by cancellation */
    fill(c, 3, -0.5f, 1);
    for (int64_t i = 0; i < n; i++)
        c->t[0].want[i] = c->t[3].init[i] * ref_gelu_grad(c->t[2].init[i], gelu == RG_GELU_TANH);
    if (dbias)
        for (int64_t t = 0; t < T; t++)
            for (int o = 0; o < OC; o++) c->t[1].want[o] += c->t[0].want[t * OC + o];
}

/* ---- cross-entropy -------------------------------------------------------- */

static rg_status call_xent(rg_backend *be, opcase *c, void **d) {
    NEED(be, xent_forward_backward);
    return be->ops->xent_forward_backward(be, d[0], d[1], d[2], d[3], RG_IGNORE_INDEX, c->dloss, c->T, c->V);
}

typedef struct { double *logits, *losses; } xent_ctx;

static double xent_loss(opcase *c, void *p) {
    xent_ctx *x = p;
    ref_xent(x->losses, NULL, x->logits, c->t[3].iv, RG_IGNORE_INDEX, 1.0, c->T, c->V);
    double s = 0;
    for (int64_t t = 0; t < c->T; t++) s += x->losses[t];
    return s * c->dloss;
}

static void fd_xent(opcase *c, float **got) {
    if (!c->t[1].n) return;
    xent_ctx x = {dcopy(c, 2), scratch(c, c->T * sizeof(double))};
    fd_check(c, "dlogits", x.logits, c->t[1].n, got[1], NULL, xent_loss, &x);
}

/* tensors: 0 losses, 1 dlogits (optional; optionally in the logits' buffer), 2 logits (T,V), 3 targets.
 * A fraction p_ignore of targets is the ignore index; scale spreads the logits. */
static void mk_xent(opcase *c, int64_t T, int V, double p_ignore, float scale, bool grad, bool in_place) {
    snprintf(c->name, sizeof c->name, "xent_forward_backward T=%lld V=%d ignore=%.2f scale=%g dlogits=%s",
             (long long)T, V, p_ignore, scale, !grad ? "none" : in_place ? "in-place" : "new");
    c->T = T, c->V = V, c->call = call_xent, c->tol = 1e-5, c->tol_act = 1e-2, c->tol_f32 = 1e-3;
    c->dloss = 0.25f + (float)rg_rng_uniform(&rng);
    add_t(c, "losses", K_F32, R_OUT, T);
    add_t(c, "dlogits", K_ACT, R_OUT, grad ? T * V : 0);
    add_t(c, "logits", K_ACT, R_IN, T * V);
    add_t(c, "targets", K_I32, R_IN, T);
    if (grad && in_place) c->t[1].alias = 2;
    fill(c, 2, -scale, scale);
    for (int64_t t = 0; t < T; t++)
        c->t[3].iv[t] = rg_rng_uniform(&rng) < p_ignore ? RG_IGNORE_INDEX : (int32_t)rg_rng_below(&rng, V);
    ref_xent(c->t[0].want, grad ? c->t[1].want : NULL, dcopy(c, 2), c->t[3].iv, RG_IGNORE_INDEX, c->dloss, T, V);
    if (T * V < 20000) c->fd = fd_xent;
}

/* ---- memory: convert, zero, sum_squares --------------------------------------- */

static rg_status call_to_act(rg_backend *be, opcase *c, void **d) {
    NEED(be, convert);
    return be->ops->convert(be, d[0], rg_backend_act_dtype(be), d[1], RG_DTYPE_F32, c->T);
}

static rg_status call_from_act(rg_backend *be, opcase *c, void **d) {
    NEED(be, convert);
    return be->ops->convert(be, d[0], RG_DTYPE_F32, d[1], rg_backend_act_dtype(be), c->T);
}

/* tensors: 0 dst, 1 src; to_act: f32 -> act dtype, else act dtype -> f32 */
static void mk_convert(opcase *c, int64_t n, bool to_act) {
    snprintf(c->name, sizeof c->name, "convert n=%lld %s", (long long)n, to_act ? "f32->act" : "act->f32");
    c->T = n, c->call = to_act ? call_to_act : call_from_act, c->tol = 0, c->tol_act = 5e-3, c->tol_f32 = 0;
    add_t(c, "dst", to_act ? K_ACT : K_F32, R_OUT, n);
    add_t(c, "src", to_act ? K_F32 : K_ACT, R_IN, n);
    fill(c, 1, -3, 3);
    for (int64_t i = 0; i < n; i++) c->t[0].want[i] = c->t[1].init[i];
}

static rg_status call_zero(rg_backend *be, opcase *c, void **d) {
    NEED(be, zero);
    return be->ops->zero(be, d[0], (size_t)c->T * sizeof(float));
}

static void mk_zero(opcase *c, int64_t n) {
    snprintf(c->name, sizeof c->name, "zero n=%lld", (long long)n);
    c->T = n, c->call = call_zero, c->tol = 0, c->tol_act = 0, c->tol_f32 = 0;
    add_t(c, "p", K_F32, R_OUT, n);
    for (int64_t i = 0; i < n; i++) c->t[0].want[i] = 0;
}

static rg_status call_sumsq(rg_backend *be, opcase *c, void **d) {
    NEED(be, sum_squares);
    c->scalar_got = NAN;
    return be->ops->sum_squares(be, &c->scalar_got, d[0], c->T);
}

static void mk_sumsq(opcase *c, int64_t n) {
    snprintf(c->name, sizeof c->name, "sum_squares n=%lld", (long long)n);
    c->T = n, c->call = call_sumsq, c->tol = 1e-12, c->tol_act = 0, c->tol_f32 = 1e-6, c->has_scalar = true;
    add_t(c, "g", K_F32, R_IN, n);
    fill(c, 0, -2, 2);
    c->scalar_want = 0;
    for (int64_t i = 0; i < n; i++) c->scalar_want += (double)c->t[0].init[i] * c->t[0].init[i];
}

/* ---- optimizers ----------------------------------------------------------------- */

static rg_status call_sgd(rg_backend *be, opcase *c, void **d) {
    NEED(be, sgd_update);
    return be->ops->sgd_update(be, d[0], d[1], d[2], d[3], c->T, c->lr, c->mom, c->wd, c->gscale);
}

/* compute: 0 none, 1 separate act buffer, 2 the param buffer itself (CPU only).
 * tensors: 0 param, 1 compute, 2 momentum_buf (with momentum), 3 grad */
static void mk_sgd(opcase *c, int64_t n, float lr, float mom, float wd, float gscale, int compute) {
    snprintf(c->name, sizeof c->name, "sgd_update n=%lld lr=%g momentum=%g wd=%g grad_scale=%g compute=%s",
             (long long)n, lr, mom, wd, gscale, compute == 0 ? "none" : compute == 1 ? "new" : "param");
    c->T = n, c->lr = lr, c->mom = mom, c->wd = wd, c->gscale = gscale, c->call = call_sgd;
    c->tol = 1e-5, c->tol_act = 5e-3, c->tol_f32 = 1e-4, c->cpu_only = compute == 2;
    add_t(c, "param", K_F32, R_ACC, n);
    add_t(c, "compute", K_ACT, R_OUT, compute ? n : 0);
    add_t(c, "momentum_buf", K_F32, R_ACC, mom != 0 ? n : 0);
    add_t(c, "grad", K_F32, R_IN, n);
    if (compute == 2) c->t[1].alias = 0;
    fill(c, 3, -1, 1);
    double *buf = mom != 0 ? c->t[2].want : NULL;
    ref_sgd(c->t[0].want, buf, dcopy(c, 3), n, lr, mom, wd, gscale);
    if (compute) memcpy(c->t[1].want, c->t[0].want, n * sizeof(double));
}

static rg_status call_adamw(rg_backend *be, opcase *c, void **d) {
    NEED(be, adamw_update);
    return be->ops->adamw_update(be, d[0], d[1], d[2], d[3], d[4], c->T, c->lr, c->b1, c->b2, c->eps, c->wd,
                                 c->gscale, c->step);
}

/* tensors: 0 param, 1 compute, 2 m, 3 v, 4 grad; step 1 starts from zero moments */
static void mk_adamw(opcase *c, int64_t n, int64_t step, float wd, float gscale, int compute) {
    snprintf(c->name, sizeof c->name, "adamw_update n=%lld t=%lld wd=%g grad_scale=%g compute=%s", (long long)n,
             (long long)step, wd, gscale, compute == 0 ? "none" : compute == 1 ? "new" : "param");
    c->T = n, c->step = step, c->lr = 1e-2f, c->b1 = 0.9f, c->b2 = 0.95f, c->eps = 1e-8f, c->wd = wd;
    c->gscale = gscale, c->call = call_adamw, c->tol = 1e-5, c->tol_act = 5e-3, c->tol_f32 = 1e-4;
    c->cpu_only = compute == 2;
    add_t(c, "param", K_F32, R_ACC, n);
    add_t(c, "compute", K_ACT, R_OUT, compute ? n : 0);
    add_t(c, "m", K_F32, R_ACC, n);
    add_t(c, "v", K_F32, R_ACC, n);
    add_t(c, "grad", K_F32, R_IN, n);
    if (compute == 2) c->t[1].alias = 0;
    fill(c, 0, -0.1f, 0.1f);
    fill(c, 4, -1, 1);
    for (int64_t i = 0; i < n; i++) {
        /* moments as after step-1 steps; zero at the first */
        c->t[2].init[i] = step == 1 ? 0.0f : 0.1f * c->t[2].init[i];
        c->t[3].init[i] = step == 1 ? 0.0f : 0.01f * fabsf(c->t[3].init[i]);
        c->t[0].want[i] = c->t[0].init[i];
        c->t[2].want[i] = c->t[2].init[i];
        c->t[3].want[i] = c->t[3].init[i];
    }
    ref_adamw(c->t[0].want, c->t[2].want, c->t[3].want, dcopy(c, 4), n, c->lr, c->b1, c->b2, c->eps, wd, gscale,
              step);
    if (compute) memcpy(c->t[1].want, c->t[0].want, n * sizeof(double));
}

/* ---- the table ---------------------------------------------------------------------- */

#define MAXCASES 128

/* Every case, sizes chosen to be awkward: 1, odd, off every tile, repeated
 * tokens, V = 1 and a large V; smaller big cases under RG_TEST_QUICK. */
static int build_cases(opcase *cs) {
    int n = 0;
    int64_t bigT = quick ? 67 : 257;
    int bigC = quick ? 200 : 1024;
    memset(cs, 0, sizeof(opcase) * MAXCASES);
    mk_emb_fwd(&cs[n++], 1, 1, 1, 1);
    mk_emb_fwd(&cs[n++], 7, 13, 1, 5);
    mk_emb_fwd(&cs[n++], 300, 77, 5, 300);
    mk_emb_fwd(&cs[n++], bigT * 4, bigC, 1000, 1024);
    mk_emb_bwd(&cs[n++], 1, 1, 1, 1);
    mk_emb_bwd(&cs[n++], 7, 13, 1, 5);
    mk_emb_bwd(&cs[n++], 60, 35, 3, 17);
    mk_emb_bwd(&cs[n++], 300, 77, 5, 300);
    mk_emb_bwd(&cs[n++], bigT * 4, bigC, 1000, 1024);
    mk_ln_fwd(&cs[n++], 1, 1, true, 0);
    mk_ln_fwd(&cs[n++], 1, 5, false, 0);
    mk_ln_fwd(&cs[n++], 3, 17, true, 0);
    mk_ln_fwd(&cs[n++], 64, 100, false, 30);
    mk_ln_fwd(&cs[n++], bigT, bigC, true, 0);
    mk_ln_bwd(&cs[n++], 1, 1, true, 0);
    mk_ln_bwd(&cs[n++], 1, 5, false, 0);
    mk_ln_bwd(&cs[n++], 3, 17, true, 0);
    mk_ln_bwd(&cs[n++], 9, 100, false, 30);
    mk_ln_bwd(&cs[n++], 64, 100, true, 0);
    mk_ln_bwd(&cs[n++], bigT, bigC, true, 0);
    mk_ln_bwd_sum(&cs[n++], 1, 1, true, true);
    mk_ln_bwd_sum(&cs[n++], 3, 17, false, true);
    mk_ln_bwd_sum(&cs[n++], 64, 100, true, false);
    mk_ln_bwd_sum(&cs[n++], bigT, bigC, true, true);
    mk_ln_bwd_sum(&cs[n++], 9, 1024, false, true);
    mk_mm_fwd(&cs[n++], 1, 1, 1, false, RG_GELU_NONE);
    mk_mm_fwd(&cs[n++], 5, 3, 7, true, RG_GELU_NONE);
    mk_mm_fwd(&cs[n++], 33, 67, 130, true, RG_GELU_ERF);
    mk_mm_fwd(&cs[n++], 17, 40, 9, false, RG_GELU_TANH);
    mk_mm_fwd(&cs[n++], 1, 77, 1000, true, RG_GELU_ERF);  /* one row: the CPU's gemv path */
    mk_mm_fwd(&cs[n++], bigT, quick ? 96 : 320, quick ? 200 : 1000, true, RG_GELU_ERF);
    mk_mm_bwd(&cs[n++], 1, 1, 1, true, true);
    mk_mm_bwd(&cs[n++], 5, 3, 7, false, true);
    mk_mm_bwd(&cs[n++], 33, 67, 130, true, false);
    mk_mm_bwd(&cs[n++], 17, 40, 9, true, true);
    mk_mm_bwd(&cs[n++], bigT, quick ? 96 : 320, quick ? 200 : 1000, true, true);
    for (int g = RG_GELU_ERF; g <= RG_GELU_TANH; g++) {
        mk_gelu_fwd(&cs[n++], 1, g);
        mk_gelu_fwd(&cs[n++], 1001, g);
        mk_gelu_fwd(&cs[n++], 100003, g);
        mk_gelu_bwd(&cs[n++], 1, g);
        mk_gelu_bwd(&cs[n++], 1001, g);
        mk_gelu_bwd(&cs[n++], 100003, g);
    }
    mk_mm_res(&cs[n++], 1, 1, 1, false, false);
    mk_mm_res(&cs[n++], 1, 96, 130, true, true);  /* one row: the CPU's gemv path, in place */
    mk_mm_res(&cs[n++], 5, 3, 7, true, true);
    mk_mm_res(&cs[n++], 33, 67, 130, true, false);
    mk_mm_res(&cs[n++], 17, 40, 16, false, true);
    mk_mm_res(&cs[n++], bigT, quick ? 96 : 320, quick ? 200 : 1000, true, true);
    for (int g = RG_GELU_ERF; g <= RG_GELU_TANH; g++) {
        mk_gelu_db(&cs[n++], 1, 1, g, true, false);
        mk_gelu_db(&cs[n++], 7, 13, g, true, true);
        mk_gelu_db(&cs[n++], 37, 1001, g, false, false);
        mk_gelu_db(&cs[n++], bigT, quick ? 200 : 1024, g, true, false);
    }
    mk_gelu_db(&cs[n++], bigT + 3, 4104, RG_GELU_ERF, true, true);
    mk_add(&cs[n++], 1, false);
    mk_add(&cs[n++], 1001, true);
    mk_add(&cs[n++], 100003, false);
    mk_xent(&cs[n++], 1, 1, 0, 1, true, false);
    mk_xent(&cs[n++], 5, 1, 0.4, 1, true, true);
    mk_xent(&cs[n++], 1, 7, 1.0, 1, true, false);
    mk_xent(&cs[n++], 9, 13, 0.3, 3, true, false);
    mk_xent(&cs[n++], 37, 1000, 0.25, 4, true, true);
    mk_xent(&cs[n++], 37, 1000, 0.25, 4, false, false);
    mk_xent(&cs[n++], 16, 300, 0.1, 300, true, true);
    mk_xent(&cs[n++], quick ? 2 : 4, 50257, 0.2, 8, true, false);
    for (int to = 0; to <= 1; to++) {
        mk_convert(&cs[n++], 1, to);
        mk_convert(&cs[n++], 4097, to);
    }
    mk_zero(&cs[n++], 1);
    mk_zero(&cs[n++], 1003);
    mk_sumsq(&cs[n++], 1);
    mk_sumsq(&cs[n++], 10);
    mk_sumsq(&cs[n++], 100003);
    mk_sgd(&cs[n++], 1, 1e-3f, 0, 0, 1, 0);
    mk_sgd(&cs[n++], 1001, 1e-2f, 0, 0, 1, 1);
    mk_sgd(&cs[n++], 1001, 1e-2f, 0.9f, 0.01f, 0.5f, 1);
    mk_sgd(&cs[n++], 4099, 1e-2f, 0.9f, 0, 0.75f, 2);
    mk_adamw(&cs[n++], 1, 1, 0, 1, 0);
    mk_adamw(&cs[n++], 1001, 1, 0.1f, 0.7f, 1);
    mk_adamw(&cs[n++], 4099, 7, 0.01f, 1, 0);
    mk_adamw(&cs[n++], 1003, 3, 0.1f, 0.5f, 2);
    if (n > MAXCASES) { fprintf(stderr, "test_backend_ops: raise MAXCASES\n"); exit(2); }
    return n;
}

/* ---- 1 + 2: the CPU against the references ------------------------------------------- */

static void test_case_cpu(rg_backend *cpu, opcase *c) {
    float *got[MAXT], *again[MAXT];
    rg_status s = run_case(cpu, c, got);
    if (!CHECK(s == RG_OK, "cpu %s: %s (%s)", c->name, rg_status_str(s), rg_last_error())) return;
    double e = compare_outputs(c, got, NULL, cpu, TOL_REF);
    printf("  cpu  %-78s err %.2g\n", c->name, e);
    if (c->fd) c->fd(c, got);
    double first = c->scalar_got;
    s = run_case(cpu, c, again);
    CHECK(s == RG_OK && same_bits(c, got, again) && (!c->has_scalar || first == c->scalar_got),
          "cpu %s: a second run is not bit-identical", c->name);
    free_got(c, again);
#ifdef _OPENMP
    int nth = omp_get_max_threads();
    if (!c->blas && nth > 1) {
        omp_set_num_threads(1);
        s = run_case(cpu, c, again);
        omp_set_num_threads(nth);
        CHECK(s == RG_OK && same_bits(c, got, again) && (!c->has_scalar || first == c->scalar_got),
              "cpu %s: 1 thread and %d threads differ", c->name, nth);
        free_got(c, again);
    }
#endif
    free_got(c, got);
}

/* ---- 3: argument behaviours and optimizer sequences ------------------------------------ */

static void test_arguments(rg_backend *be) {
    float a[4] = {1, 2, 3, 4}, b[4];
    CHECK(be->ops->convert(be, b, RG_DTYPE_BF16, a, RG_DTYPE_F32, 4) == RG_ERR_UNSUPPORTED &&
              strstr(rg_last_error(), "bf16") != NULL,
          "convert f32 -> bf16 on the CPU is unsupported with a message (%s)", rg_last_error());
    CHECK(be->ops->convert(be, b, RG_DTYPE_F32, a, RG_DTYPE_F16, 4) == RG_ERR_UNSUPPORTED,
          "convert f16 -> f32 on the CPU is unsupported");
    CHECK(be->ops->convert(be, a, RG_DTYPE_F32, a, RG_DTYPE_F32, 4) == RG_OK && a[3] == 4, "convert in place");

    /* a target outside the vocabulary: refused before anything is written */
    float logits[6] = {1, 2, 3, 4, 5, 6}, losses[2] = {7, 7};
    int32_t targets[2] = {1, 3};
    CHECK(be->ops->xent_forward_backward(be, losses, logits, logits, targets, RG_IGNORE_INDEX, 1, 2, 3) ==
                  RG_ERR_INVALID_ARG &&
              strstr(rg_last_error(), "targets[1]") && losses[0] == 7 && logits[0] == 1,
          "xent: target 3 with V=3 refused, nothing written (%s)", rg_last_error());

    float p[2] = {1, 2}, g[2] = {1, 1}, m[2] = {0, 0}, v[2] = {0, 0};
    CHECK(be->ops->adamw_update(be, p, NULL, m, v, g, 2, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1, 0) ==
                  RG_ERR_INVALID_ARG && p[0] == 1,
          "adamw: step 0 refused (%s)", rg_last_error());
    CHECK(be->ops->sgd_update(be, p, NULL, NULL, g, 2, 1e-3f, 0.9f, 0, 1) == RG_ERR_INVALID_ARG && p[0] == 1,
          "sgd: momentum without a buffer refused (%s)", rg_last_error());
}

/* Several steps of the op (fp32 state) against the same steps in double. */
static void test_optimizer_sequences(rg_backend *be) {
    enum { N = 777, STEPS = 3 };
    float *p = rg_test_xmalloc(N * 4), *m = rg_test_xmalloc(N * 4), *v = rg_test_xmalloc(N * 4), *g = rg_test_xmalloc(N * 4), *p0 = rg_test_xmalloc(N * 4);
    double *dp = rg_test_xmalloc(N * 8), *dm = rg_test_xmalloc(N * 8), *dv = rg_test_xmalloc(N * 8), *dg = rg_test_xmalloc(N * 8);
    for (int opt = 0; opt < 3; opt++) {   /* adamw; sgd with momentum and decay; sgd plain (torch defaults) */
        rg_rng_fill_uniform(&rng, p, N, -0.5f, 0.5f);
        memcpy(p0, p, N * 4);
        for (int i = 0; i < N; i++) { m[i] = v[i] = 0; dp[i] = p[i]; dm[i] = dv[i] = 0; }
        bool ok = true;
        for (int t = 1; t <= STEPS; t++) {
            rg_rng_fill_uniform(&rng, g, N, -1, 1);
            for (int i = 0; i < N; i++) dg[i] = g[i];
            if (opt == 0) {
                ok &= be->ops->adamw_update(be, p, NULL, m, v, g, N, 3e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.8f, t) ==
                      RG_OK;
                ref_adamw(dp, dm, dv, dg, N, 3e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.8f, t);
            } else if (opt == 1) {
                ok &= be->ops->sgd_update(be, p, NULL, m, g, N, 5e-2f, 0.9f, 0.01f, 0.8f) == RG_OK;
                ref_sgd(dp, dm, dg, N, 5e-2f, 0.9f, 0.01f, 0.8f);
            } else {
                ok &= be->ops->sgd_update(be, p, p, NULL, g, N, 1e-3f, 0, 0, 1) == RG_OK;
                ref_sgd(dp, NULL, dg, N, 1e-3f, 0, 0, 1);
            }
        }
        size_t wi;
        double e = rel_err(p, dp, p0, N, RG_DTYPE_F32, STEPS, 0, &wi);   /* the total change of the parameters */
        const char *name = opt == 0 ? "adamw" : opt == 1 ? "sgd momentum+decay" : "sgd";
        CHECK(ok && e <= 1e-5, "%s: %d steps vs double: rel err %.3g (status ok: %d)", name, STEPS, e, ok);
        if (opt < 2) {
            double em = rel_err(m, dm, NULL, N, RG_DTYPE_F32, 0, 0, &wi);
            CHECK(em <= 1e-5, "%s: first moment / momentum after %d steps: rel err %.3g", name, STEPS, em);
        }
        if (opt == 0) {
            double ev = rel_err(v, dv, NULL, N, RG_DTYPE_F32, 0, 0, &wi);
            CHECK(ev <= 1e-5, "adamw: second moment after %d steps: rel err %.3g", STEPS, ev);
        }
        printf("  cpu  %-78s err %.2g\n", opt == 0 ? "adamw_update, 3 steps vs double"
                                          : opt == 1 ? "sgd_update momentum + decay, 3 steps vs double"
                                                     : "sgd_update (torch defaults), 3 steps vs double", e);
    }
    free(p); free(m); free(v); free(g); free(p0);
    free(dp); free(dm); free(dv); free(dg);
}

/* ---- 4: another backend against the CPU ------------------------------------------------- */

/* Runs every case (but the CPU-only ones) on the CPU and on be, and compares
 * be's outputs with the CPU's. mode TOL_EXACT with be = the CPU itself checks
 * this very path where no other backend is present. */
static void compare_backend(rg_backend *cpu, rg_backend *be, opcase *cs, int n, int mode) {
    int compared = 0, skipped = 0;
    for (int k = 0; k < n; k++) {
        opcase *c = &cs[k];
        if (c->cpu_only) continue;
        float *ref[MAXT], *got[MAXT];
        double *want[MAXT] = {0};
        rg_status s = run_case(cpu, c, ref);
        if (!CHECK(s == RG_OK, "cpu %s: %s", c->name, rg_last_error())) continue;
        double cpu_scalar = c->scalar_got;
        s = run_case(be, c, got);
        if (s == RG_ERR_UNSUPPORTED) {
            printf("  %-4s %-78s skipped: %s\n", rg_backend_name(be), c->name, rg_last_error());
            skipped++;
            free_got(c, ref);
            continue;
        }
        if (CHECK(s == RG_OK, "%s %s: %s (%s)", rg_backend_name(be), c->name, rg_status_str(s), rg_last_error())) {
            for (int i = 0; i < c->nt; i++) {
                if (!ref[i]) continue;
                want[i] = rg_test_xmalloc(c->t[i].n * sizeof(double));
                for (size_t j = 0; j < c->t[i].n; j++) want[i][j] = ref[i][j];
            }
            double save = c->scalar_want;
            c->scalar_want = cpu_scalar;
            double e = compare_outputs(c, got, want, be, mode);
            c->scalar_want = save;
            if (mode == TOL_EXACT)
                printf("  %-4s %-78s err %.2g (must be 0)\n", rg_backend_name(be), c->name, e);
            else
                printf("  %-4s %-78s err %.2g (tol act %.0e, f32 %.0e)\n", rg_backend_name(be), c->name, e,
                       c->tol_act, c->tol_f32);
            compared++;
            for (int i = 0; i < c->nt; i++) free(want[i]);
            free_got(c, got);
        }
        free_got(c, ref);
    }
    printf("%s vs cpu: %d cases compared, %d skipped (op not implemented)\n", rg_backend_name(be), compared, skipped);
}

int main(void) {
    rg_test_init("test_backend_ops", &rng);
    quick = rg_test_quick();
    rg_backend *cpu = NULL;
    if (!CHECK(rg_backend_init(RG_BACKEND_CPU, 0, &cpu) == RG_OK, "cpu backend: %s", rg_last_error()))
        return rg_test_finish();
    opcase *cs = rg_test_xmalloc(sizeof(opcase) * MAXCASES);

    printf("cpu vs double references (%d threads)%s:\n", cpu->n_threads, quick ? ", quick sizes" : "");
    quant = RG_DTYPE_F32;
    int n = build_cases(cs);
    for (int k = 0; k < n; k++) {
        test_case_cpu(cpu, &cs[k]);
        case_free(&cs[k]);
    }
    test_arguments(cpu);
    test_optimizer_sequences(cpu);

    rg_backend_kind others[] = {RG_BACKEND_CUDA};
    const char *other_names[] = {"cuda"};
    int n_others = 0;
    for (size_t b = 0; b < sizeof others / sizeof *others; b++) {
        rg_backend *be = NULL;
        if (!rg_backend_available(others[b])) {
            rg_status s = rg_backend_init(others[b], 0, &be);
            printf("%s: not available (%s): its comparisons with the cpu are skipped\n", other_names[b],
                   s == RG_OK ? "?" : rg_last_error());
            rg_backend_free(be);
            continue;
        }
        if (!CHECK(rg_backend_init(others[b], 0, &be) == RG_OK, "%s: %s", other_names[b], rg_last_error()))
            continue;
        printf("%s vs cpu (activations %s, inputs rounded to it):\n", rg_backend_name(be),
               rg_dtype_name(rg_backend_act_dtype(be)));
        quant = rg_backend_act_dtype(be);
        n = build_cases(cs);
        compare_backend(cpu, be, cs, n, TOL_BACKEND);
        for (int k = 0; k < n; k++) case_free(&cs[k]);
        rg_backend_free(be);
        n_others++;
    }
    if (!n_others) {
        printf("harness self-check: the backend comparison path, cpu vs cpu on bf16-rounded inputs (exact):\n");
        quant = RG_DTYPE_BF16;
        n = build_cases(cs);
        compare_backend(cpu, cpu, cs, n, TOL_EXACT);
        for (int k = 0; k < n; k++) case_free(&cs[k]);
    }
    free(cs);
    rg_backend_free(cpu);
    return rg_test_finish();
}
