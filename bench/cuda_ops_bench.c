/* cuda_ops_bench.c — times the CUDA backend's model ops at the seed's shapes
 * (T = 16384 tokens, C = 1024, vocabulary 1024): GEMM TFLOP/s of
 * matmul_forward/backward against the bf16 ceiling, GB/s of the memory-bound
 * ops against a device-to-device copy, and the host cost of one matmul call.
 * Each figure is the median of REPS timed batches of ITERS calls, after a
 * warm-up, over three rotating input sets (so L2 does not serve repeats).
 * Built only with the CUDA backend; prints a markdown table.
 * "gemm" mode compares the forward GEMMs of the paths (RG_GEMM=cublas vs
 * RG_GEMM=wgmma, our sm_90a kernel, in clusters of two CTAs and with single
 * CTAs) at the seed's shapes, each with the epilogue the model uses (fc1:
 * cuBLASLt + the GELU pass vs one fused kernel). RG_BENCH_SHAPE=i and
 * RG_BENCH_PATH=p (0 cublas, 1 wgmma, 2 wgmma single CTAs) restrict it.
 *   usage: cuda_ops_bench [T]            (default T = 16384)
 *          cuda_ops_bench gemm [T ...]   (default T = 16384 16000) */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/timer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPS 7
#define ITERS 10
#define SETS 3

static rg_backend *be;
static rg_rng rng;

static void must(rg_status s, const char *what) {
    if (s != RG_OK) {
        fprintf(stderr, "cuda_ops_bench: %s: %s (%s)\n", what, rg_status_str(s), rg_last_error());
        exit(1);
    }
}

/* A device buffer of n elements of t with values of standard deviation
 * |scale| (never zeros: they can run faster than real data); scale < 0 makes
 * them non-negative. The values are uniform (cheap to draw for a GiB) and one
 * host array is shared by all buffers: the rotating sets exist for their
 * addresses (L2), not their contents. */
static float *host_vals;
static size_t host_n;
static void *drandn(rg_dtype t, size_t n, float scale) {
    if (n > host_n) {
        free(host_vals);
        host_vals = malloc(n * sizeof *host_vals);
        if (!host_vals) { fprintf(stderr, "cuda_ops_bench: out of host memory\n"); exit(1); }
        rg_rng_fill_uniform(&rng, host_vals, n, -1.7320508f, 1.7320508f); /* variance 1 */
        host_n = n;
    }
    float *h = malloc(n * sizeof *h);
    if (!h) { fprintf(stderr, "cuda_ops_bench: out of host memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) {
        float x = host_vals[i] * scale;
        h[i] = scale < 0 && x < 0 ? -x : x;
    }
    void *d;
    must(rg_buffer_alloc(be, n * rg_dtype_size(t), &d), "alloc");
    must(rg_buffer_upload_f32(be, d, t, h, n), "upload");
    free(h);
    return d;
}

static void *dints(size_t n, int below) {
    int32_t *h = malloc(n * sizeof *h);
    if (!h) exit(1);
    for (size_t i = 0; i < n; i++) h[i] = (int32_t)rg_rng_below(&rng, below);
    void *d;
    must(rg_buffer_alloc(be, n * 4, &d), "alloc");
    must(rg_buffer_upload(be, d, h, n * 4), "upload");
    free(h);
    return d;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call of fn(set) over REPS batches of ITERS calls. */
typedef void (*op_fn)(int set, void *ctx);
static double time_op(op_fn fn, void *ctx, double *spread) {
    for (int i = 0; i < 3; i++) fn(i % SETS, ctx);
    must(rg_backend_sync(be), "sync");
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = rg_now();
        for (int i = 0; i < ITERS; i++) fn(i % SETS, ctx);
        must(rg_backend_sync(be), "sync");
        t[r] = (rg_now() - t0) / ITERS;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    if (spread) *spread = (t[REPS - 1] - t[0]) / t[REPS / 2];
    return t[REPS / 2];
}

/* ---- the ops under test ---- */

typedef struct mm_ctx {
    int64_t T;
    int C, OC, gelu;
    void *inp[SETS], *w, *b, *out, *pre, *dout[SETS], *dinp;
    float *dw, *db;
} mm_ctx;

static void mm_fwd(int s, void *c_) {
    mm_ctx *c = c_;
    must(be->ops->matmul_forward(be, c->out, c->pre, c->inp[s], c->w, c->b, c->T, c->C, c->OC, c->gelu), "matmul_forward");
}

static void mm_fwd_resid(int s, void *c_) { /* in place: out is the residual stream, as in the model */
    mm_ctx *c = c_;
    must(be->ops->matmul_forward_residual(be, c->out, c->inp[s], c->w, c->b, c->out, c->T, c->C, c->OC),
         "matmul_forward_residual");
}

static void mm_bwd(int s, void *c_) {
    mm_ctx *c = c_;
    must(be->ops->matmul_backward(be, c->dinp, c->dw, c->db, c->dout[s], c->inp[s], c->w, c->T, c->C, c->OC),
         "matmul_backward");
}

static void mm_dbias_only(int s, void *c_) {
    mm_ctx *c = c_;
    must(be->ops->matmul_backward(be, NULL, NULL, c->db, c->dout[s], c->inp[s], c->w, c->T, c->C, c->OC),
         "matmul_backward");
}

static void mm_bwd_nobias(int s, void *c_) {
    mm_ctx *c = c_;
    must(be->ops->matmul_backward(be, c->dinp, c->dw, NULL, c->dout[s], c->inp[s], c->w, c->T, c->C, c->OC),
         "matmul_backward");
}

typedef struct ln_ctx {
    int64_t T;
    int C;
    void *x[SETS], *w, *out, *dout[SETS], *dinp;
    float *mean, *rstd, *dw;
} ln_ctx;

static void ln_fwd(int s, void *c_) {
    ln_ctx *c = c_;
    must(be->ops->layernorm_forward(be, c->out, c->mean, c->rstd, c->x[s], c->w, NULL, 1e-5f, c->T, c->C), "ln fwd");
}

static void ln_bwd(int s, void *c_) {
    ln_ctx *c = c_;
    must(be->ops->layernorm_backward(be, c->dinp, c->dw, NULL, c->dout[s], c->x[s], c->w, c->mean, c->rstd, c->T, c->C),
         "ln bwd");
}

typedef struct xe_ctx {
    int64_t T;
    int V;
    void *logits[SETS], *dlogits, *targets;
    float *losses;
} xe_ctx;

static void xe_run(int s, void *c_) {
    xe_ctx *c = c_;
    must(be->ops->xent_forward_backward(be, c->losses, c->dlogits, c->logits[s], c->targets, RG_IGNORE_INDEX,
                                        1.0f / (float)c->T, c->T, c->V), "xent");
}

typedef struct misc_ctx {
    int64_t n, T;
    int C;
    void *a[SETS], *b, *out, *tok, *pos, *wte, *wpe;
    float *p, *m, *v, *g, *dwte, *dwpe;
} misc_ctx;

static void copy_run(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->convert(be, c->out, RG_DTYPE_F32, c->a[s], RG_DTYPE_F32, c->n), "copy");
}
static void add_run(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->add(be, c->out, c->a[s], c->b, c->n), "add");
}
static void gelu_run(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->gelu_forward(be, c->out, c->a[s], c->n, RG_GELU_ERF), "gelu");
}
static void gelu_bwd_run(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->gelu_backward(be, c->out, c->a[s], c->b, c->n, RG_GELU_ERF), "gelu bwd");
}
static void adamw_run(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->adamw_update(be, c->p, c->out, c->m, c->v, c->g, c->n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1),
         "adamw");
}
static void emb_fwd(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->embedding_forward(be, c->out, c->tok, c->pos, c->wte, c->wpe, c->T, c->C), "emb fwd");
}
static void emb_bwd_wte(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->embedding_backward(be, c->dwte, NULL, c->a[s], c->tok, c->pos, c->T, c->C), "emb bwd");
}
static void emb_bwd(int s, void *c_) {
    misc_ctx *c = c_;
    must(be->ops->embedding_backward(be, c->dwte, c->dwpe, c->a[s], c->tok, c->pos, c->T, c->C), "emb bwd");
}

static void row(const char *op, const char *shape, double sec, double spread, double flops, double bytes) {
    printf("| %-30s | %-22s | %9.1f | %6.1f%% |", op, shape, sec * 1e6, spread * 100);
    if (flops > 0) printf(" %7.1f TFLOP/s |", flops / sec / 1e12);
    else printf(" %13s |", "");
    if (bytes > 0) printf(" %7.0f GB/s |\n", bytes / sec / 1e9);
    else printf(" %12s |\n", "");
}

/* A backend with RG_GEMM=gemm and, when cluster is not NULL,
 * RG_WGMMA_CLUSTER=cluster (gemm_wgmma.cu's lab switch: 1 = v5's single CTAs). */
static rg_backend *backend_with(const char *gemm, const char *cluster) {
    setenv("RG_GEMM", gemm, 1);
    if (cluster) setenv("RG_WGMMA_CLUSTER", cluster, 1);
    rg_backend *b = NULL;
    must(rg_backend_init(RG_BACKEND_CUDA, 0, &b), gemm);
    unsetenv("RG_GEMM");
    unsetenv("RG_WGMMA_CLUSTER");
    return b;
}

/* An index from the environment (-1 when unset): RG_BENCH_SHAPE and
 * RG_BENCH_PATH restrict gemm mode to one shape / one path, so that a
 * profiler (ncu --launch-skip) sees only the kernels it is meant to. */
static int env_index(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : -1;
}

#define GEMM_PATHS 3

/* The seed's forward products at T tokens: cuBLASLt, our wgmma GEMM (clusters
 * of two CTAs, the default), and the same with single CTAs (v5's
 * arrangement), each timed by time_op on its own backend (same buffers, same
 * rotating inputs). */
static void gemm_compare(int64_t T) {
    int only_shape = env_index("RG_BENCH_SHAPE"), only_path = env_index("RG_BENCH_PATH");
    rg_backend *paths[GEMM_PATHS] = {backend_with("cublas", NULL), backend_with("wgmma", NULL),
                                     backend_with("wgmma", "1")};
    const int shapes[][4] = {{1024, 3072, 0, 0}, {1024, 1024, 0, 1}, {1024, 4096, RG_GELU_ERF, 0},
                             {1024, 4096, RG_GELU_TANH, 0}, {4096, 1024, 0, 1}, {1024, 1024, 0, 0}};
    const char *names[] = {"qkv +bias", "attn proj +bias+resid", "fc1 +bias+erf GELU", "fc1 +bias+tanh GELU",
                           "fc2 +bias+resid", "lm head +bias"};
    printf("\n| T | op | shape | cuBLASLt us | TFLOP/s | wgmma us | TFLOP/s | speed-up | wgmma 1-CTA us | TFLOP/s | "
           "speed-up |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < 6; i++) {
        if (only_shape >= 0 && i != only_shape) continue;
        be = paths[0];
        mm_ctx c = {.T = T, .C = shapes[i][0], .OC = shapes[i][1], .gelu = shapes[i][2]};
        for (int s = 0; s < SETS; s++) c.inp[s] = drandn(RG_DTYPE_BF16, (size_t)T * c.C, 1.0f);
        c.w = drandn(RG_DTYPE_BF16, (size_t)c.OC * c.C, 0.02f);
        c.b = drandn(RG_DTYPE_BF16, c.OC, 0.02f);
        c.out = drandn(RG_DTYPE_BF16, (size_t)T * c.OC, 1.0f);
        must(rg_buffer_alloc(be, (size_t)T * c.OC * 2, &c.pre), "alloc");
        must(rg_backend_sync(be), "sync");
        double us[GEMM_PATHS] = {0}, sp[GEMM_PATHS] = {0}, fl = 2.0 * T * c.C * c.OC;
        for (int p = 0; p < GEMM_PATHS; p++) {
            if (only_path >= 0 && p != only_path) continue;
            be = paths[p];
            us[p] = 1e6 * time_op(shapes[i][3] ? mm_fwd_resid : mm_fwd, &c, &sp[p]);
        }
        printf("| %lld | %s | %dx%d |", (long long)T, names[i], c.C, c.OC);
        for (int p = 0; p < GEMM_PATHS; p++) {
            if (us[p] <= 0) printf(" - | - |%s", p ? " - |" : "");
            else if (p == 0) printf(" %.1f (%.0f%%) | %.0f |", us[p], sp[p] * 100, fl / us[p] / 1e6);
            else printf(" %.1f (%.0f%%) | %.0f | %.2fx |", us[p], sp[p] * 100, fl / us[p] / 1e6,
                        us[0] > 0 ? us[0] / us[p] : 0.0);
        }
        printf("\n");
        be = paths[0];
        for (int s = 0; s < SETS; s++) rg_buffer_free(be, c.inp[s]);
        rg_buffer_free(be, c.w); rg_buffer_free(be, c.b); rg_buffer_free(be, c.out); rg_buffer_free(be, c.pre);
    }
    for (int p = 0; p < GEMM_PATHS; p++) rg_backend_free(paths[p]);
    be = NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "gemm")) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        rg_rng_seed(&rng, 1234);
        if (!rg_backend_available(RG_BACKEND_CUDA)) {
            fprintf(stderr, "cuda_ops_bench: no CUDA device\n");
            return 77;
        }
        printf("cuda_ops_bench gemm: median of %d x %d calls (spread = (max-min)/median in brackets)\n", REPS, ITERS);
        if (argc == 2) {
            gemm_compare(16384);
            gemm_compare(16000);
        }
        for (int i = 2; i < argc; i++) gemm_compare(atoll(argv[i]));
        free(host_vals);
        return 0;
    }
    int64_t T = argc > 1 ? atoll(argv[1]) : 16384;
    setvbuf(stdout, NULL, _IOLBF, 0); /* rows survive a timeout */
    rg_rng_seed(&rng, 1234);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        fprintf(stderr, "cuda_ops_bench: no CUDA device\n");
        return 77;
    }
    must(rg_backend_init(RG_BACKEND_CUDA, 0, &be), "backend");
    const int C = 1024, V = 1024;
    printf("cuda_ops_bench: T=%lld, median of %d x %d calls, spread = (max-min)/median\n\n", (long long)T, REPS, ITERS);
    printf("| op | shape | us/call | spread | compute | memory |\n|---|---|---|---|---|---|\n");

    /* ceilings: device-to-device copy (bytes read + written) */
    misc_ctx mc = {0};
    mc.n = 256ll << 20; /* 1 GiB of fp32 */
    for (int s = 0; s < SETS; s++) mc.a[s] = drandn(RG_DTYPE_F32, mc.n, 1.0f);
    must(rg_buffer_alloc(be, mc.n * 4, &mc.out), "alloc");
    double sp, t = time_op(copy_run, &mc, &sp);
    row("copy f32 (D2D)", "1 GiB", t, sp, 0, 2.0 * mc.n * 4);
    for (int s = 0; s < SETS; s++) rg_buffer_free(be, mc.a[s]);
    rg_buffer_free(be, mc.out);

    /* GEMMs at the seed's shapes */
    const int shapes[][3] = {{1024, 3072, 0}, {1024, 1024, 0}, {1024, 4096, RG_GELU_ERF}, {1024, 4096, RG_GELU_TANH},
                             {4096, 1024, 0}, {1024, 1024, 0}};
    const char *names[] = {"qkv", "attn proj", "fc1 + erf GELU", "fc1 + tanh GELU", "fc2", "lm head (vocab)"};
    for (int i = 0; i < 6; i++) {
        mm_ctx c = {.T = T, .C = shapes[i][0], .OC = shapes[i][1], .gelu = shapes[i][2]};
        for (int s = 0; s < SETS; s++) {
            c.inp[s] = drandn(RG_DTYPE_BF16, (size_t)T * c.C, 1.0f);
            c.dout[s] = drandn(RG_DTYPE_BF16, (size_t)T * c.OC, 1.0f);
        }
        c.w = drandn(RG_DTYPE_BF16, (size_t)c.OC * c.C, 0.02f);
        c.b = drandn(RG_DTYPE_BF16, c.OC, 0.02f);
        c.dw = drandn(RG_DTYPE_F32, (size_t)c.OC * c.C, 1e-3f);
        c.db = drandn(RG_DTYPE_F32, c.OC, 1e-3f);
        must(rg_buffer_alloc(be, (size_t)T * c.OC * 2, &c.out), "alloc");
        must(rg_buffer_alloc(be, (size_t)T * c.OC * 2, &c.pre), "alloc");
        must(rg_buffer_alloc(be, (size_t)T * c.C * 2, &c.dinp), "alloc");
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%d -> %d", (long long)T, c.C, c.OC);
        double fl = 2.0 * T * c.C * c.OC;
        t = time_op(mm_fwd, &c, &sp);
        char nm[64];
        snprintf(nm, sizeof nm, "fwd %s", names[i]);
        row(nm, shape, t, sp, fl, 0);
        if (i != 3) {
            t = time_op(mm_bwd, &c, &sp);
            snprintf(nm, sizeof nm, "bwd %s", names[i]);
            row(nm, shape, t, sp, 2 * fl, 0);
            t = time_op(mm_bwd_nobias, &c, &sp);
            snprintf(nm, sizeof nm, "bwd %s, no dbias", names[i]);
            row(nm, shape, t, sp, 2 * fl, 0);
            t = time_op(mm_dbias_only, &c, &sp);
            snprintf(nm, sizeof nm, "dbias kernel %s", names[i]);
            row(nm, shape, t, sp, 0, (double)T * c.OC * 2);
        }
        for (int s = 0; s < SETS; s++) { rg_buffer_free(be, c.inp[s]); rg_buffer_free(be, c.dout[s]); }
        rg_buffer_free(be, c.w); rg_buffer_free(be, c.b); rg_buffer_free(be, c.dw); rg_buffer_free(be, c.db);
        rg_buffer_free(be, c.out); rg_buffer_free(be, c.pre); rg_buffer_free(be, c.dinp);
    }

    /* host cost of a (cached-plan) matmul call: enqueue only, tiny shape */
    {
        mm_ctx c = {.T = 64, .C = 64, .OC = 64, .gelu = RG_GELU_ERF};
        c.inp[0] = c.inp[1] = c.inp[2] = drandn(RG_DTYPE_BF16, 64 * 64, 1.0f);
        c.w = drandn(RG_DTYPE_BF16, 64 * 64, 1.0f);
        c.b = drandn(RG_DTYPE_BF16, 64, 1.0f);
        must(rg_buffer_alloc(be, 64 * 64 * 2, &c.out), "alloc");
        must(rg_buffer_alloc(be, 64 * 64 * 2, &c.pre), "alloc");
        mm_fwd(0, &c);
        must(rg_backend_sync(be), "sync");
        double t0 = rg_now();
        for (int i = 0; i < 200; i++) mm_fwd(0, &c);
        double host = (rg_now() - t0) / 200;
        must(rg_backend_sync(be), "sync");
        printf("| %-30s | %-22s | %9.1f | %7s | %13s | %12s |\n", "matmul host enqueue", "64x64->64 +bias+GELU",
               host * 1e6, "", "", "");
        rg_buffer_free(be, c.inp[0]); rg_buffer_free(be, c.w); rg_buffer_free(be, c.b);
        rg_buffer_free(be, c.out); rg_buffer_free(be, c.pre);
    }

    /* layernorm: fwd reads x, writes out; bwd reads dout, x, dinp and writes dinp */
    {
        ln_ctx c = {.T = T, .C = C};
        for (int s = 0; s < SETS; s++) {
            c.x[s] = drandn(RG_DTYPE_BF16, (size_t)T * C, 1.0f);
            c.dout[s] = drandn(RG_DTYPE_BF16, (size_t)T * C, 1.0f);
        }
        c.w = drandn(RG_DTYPE_BF16, C, 1.0f);
        c.dinp = drandn(RG_DTYPE_BF16, (size_t)T * C, 1.0f);
        c.dw = drandn(RG_DTYPE_F32, C, 1.0f);
        must(rg_buffer_alloc(be, (size_t)T * C * 2, &c.out), "alloc");
        must(rg_buffer_alloc(be, (size_t)T * 4, (void **)&c.mean), "alloc");
        must(rg_buffer_alloc(be, (size_t)T * 4, (void **)&c.rstd), "alloc");
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%d", (long long)T, C);
        double tc = (double)T * C;
        t = time_op(ln_fwd, &c, &sp);
        row("layernorm fwd", shape, t, sp, 0, tc * 2 * 2 + T * 8.0);
        t = time_op(ln_bwd, &c, &sp);
        row("layernorm bwd", shape, t, sp, 0, tc * 2 * 4 + T * 8.0);
        for (int s = 0; s < SETS; s++) { rg_buffer_free(be, c.x[s]); rg_buffer_free(be, c.dout[s]); }
        rg_buffer_free(be, c.w); rg_buffer_free(be, c.dinp); rg_buffer_free(be, c.dw); rg_buffer_free(be, c.out);
        rg_buffer_free(be, c.mean); rg_buffer_free(be, c.rstd);
    }

    /* xent: reads logits, writes dlogits (separate buffer, as in place would change the inputs) */
    {
        xe_ctx c = {.T = T, .V = V};
        for (int s = 0; s < SETS; s++) c.logits[s] = drandn(RG_DTYPE_BF16, (size_t)T * V, 2.0f);
        must(rg_buffer_alloc(be, (size_t)T * V * 2, &c.dlogits), "alloc");
        c.targets = dints(T, V);
        must(rg_buffer_alloc(be, (size_t)T * 4, (void **)&c.losses), "alloc");
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%d", (long long)T, V);
        t = time_op(xe_run, &c, &sp);
        row("xent fwd+bwd", shape, t, sp, 0, (double)T * V * 2 * 2 + T * 8.0);
        for (int s = 0; s < SETS; s++) rg_buffer_free(be, c.logits[s]);
        rg_buffer_free(be, c.dlogits); rg_buffer_free(be, c.targets); rg_buffer_free(be, c.losses);
    }

    /* elementwise, embedding, optimizer */
    {
        misc_ctx c = {0};
        c.n = (int64_t)T * 4 * C; /* the fc1 activation */
        c.T = T;
        c.C = C;
        for (int s = 0; s < SETS; s++) c.a[s] = drandn(RG_DTYPE_BF16, c.n, 1.0f);
        c.b = drandn(RG_DTYPE_BF16, c.n, 1.0f);
        must(rg_buffer_alloc(be, c.n * 2, &c.out), "alloc");
        char shape[64];
        snprintf(shape, sizeof shape, "%lld bf16", (long long)c.n);
        t = time_op(add_run, &c, &sp);
        row("add", shape, t, sp, 0, c.n * 6.0);
        t = time_op(gelu_run, &c, &sp);
        row("gelu fwd (erf)", shape, t, sp, 0, c.n * 4.0);
        t = time_op(gelu_bwd_run, &c, &sp);
        row("gelu bwd (erf)", shape, t, sp, 0, c.n * 6.0);

        c.tok = dints(T, V);
        c.pos = dints(T, 1024);
        c.wte = drandn(RG_DTYPE_BF16, (size_t)V * C, 1.0f);
        c.wpe = drandn(RG_DTYPE_BF16, (size_t)1024 * C, 1.0f);
        c.dwte = drandn(RG_DTYPE_F32, (size_t)V * C, 1.0f);
        c.dwpe = drandn(RG_DTYPE_F32, (size_t)1024 * C, 1.0f);
        snprintf(shape, sizeof shape, "%lldx%d", (long long)T, C);
        t = time_op(emb_fwd, &c, &sp);
        row("embedding fwd", shape, t, sp, 0, (double)T * C * 2 * 3);
        t = time_op(emb_bwd, &c, &sp);
        row("embedding bwd (sorted)", shape, t, sp, 0, (double)T * C * 2 * 2);
        t = time_op(emb_bwd_wte, &c, &sp);
        row("embedding bwd, wte only", shape, t, sp, 0, (double)T * C * 2);
        rg_buffer_free(be, c.tok); rg_buffer_free(be, c.pos); rg_buffer_free(be, c.wte); rg_buffer_free(be, c.wpe);
        rg_buffer_free(be, c.dwte); rg_buffer_free(be, c.dwpe);

        c.n = 64ll << 20;
        c.p = drandn(RG_DTYPE_F32, c.n, 1.0f);
        c.m = drandn(RG_DTYPE_F32, c.n, 0.1f);
        c.v = drandn(RG_DTYPE_F32, c.n, -0.01f);
        c.g = drandn(RG_DTYPE_F32, c.n, 1.0f);
        snprintf(shape, sizeof shape, "%lld params", (long long)c.n);
        t = time_op(adamw_run, &c, &sp);
        row("adamw (+bf16 copy)", shape, t, sp, 0, c.n * 30.0);
        double ss;
        must(be->ops->sum_squares(be, &ss, c.g, c.n), "sum_squares");
        double t0 = rg_now();
        for (int i = 0; i < ITERS; i++) must(be->ops->sum_squares(be, &ss, c.g, c.n), "sum_squares");
        row("sum_squares (sync)", shape, (rg_now() - t0) / ITERS, 0, 0, c.n * 4.0);
        for (int s = 0; s < SETS; s++) rg_buffer_free(be, c.a[s]);
        rg_buffer_free(be, c.b); rg_buffer_free(be, c.out);
        rg_buffer_free(be, c.p); rg_buffer_free(be, c.m); rg_buffer_free(be, c.v); rg_buffer_free(be, c.g);
    }
    rg_backend_free(be);
    free(host_vals);
    return 0;
}
