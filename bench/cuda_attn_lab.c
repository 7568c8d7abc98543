/* cuda_attn_lab.c — kernel lab for the CUDA varlen attention: times every
 * compiled variant (tile shapes, occupancy) of the forward and the backward on
 * the benchmark's batches, the way shared/bench/torch_attn_bench.py times
 * PyTorch (per batch: warm-up, then the median of event-timed runs; ms summed
 * over the batches; useful FLOPs 4*sum(L^2)*h*d, halved when causal, x3.5 for
 * forward+backward). Calls the backend op directly with cu_seqlens already on
 * the device, as the model does. Prints a markdown table. */
#include "backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* hooks in src/cuda/attention_sched.cu and attention_bwd.cu */
extern int rg_cuda_attn_set_variant(rg_backend *be, int fwd, int bwd);
extern const char *rg_cuda_attn_variant_name(int bwd, int head_dim, int variant);
extern void *rg_cuda_stream_of(rg_backend *be);

#define MAXB 4096

typedef struct batch {
    int n;
    int32_t cu[MAXB + 1];
    int32_t *cu_dev;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *lse;
} batch;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void die(const char *what) {
    fprintf(stderr, "cuda_attn_lab: %s: %s\n", what, rg_last_error());
    exit(1);
}

static void upload_random(rg_backend *be, void **dst, size_t n, rg_rng *rng) {
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = rg_f32_to_bf16((float)rg_rng_normal(rng));
    if (rg_buffer_alloc(be, n * 2, dst) != RG_OK || rg_buffer_upload(be, *dst, h, n * 2) != RG_OK) die("upload");
    free(h);
}

static rg_attn_args make_args(const batch *b, int h, int d, bool causal) {
    rg_attn_args a;
    memset(&a, 0, sizeof a);
    a.desc.batch = b->n;
    a.desc.n_heads = a.desc.n_kv_heads = h;
    a.desc.head_dim = d;
    a.desc.cu_seqlens_q = a.desc.cu_seqlens_k = b->cu;
    int mx = 0;
    for (int i = 0; i < b->n; i++) if (b->cu[i + 1] - b->cu[i] > mx) mx = b->cu[i + 1] - b->cu[i];
    a.desc.max_seqlen_q = a.desc.max_seqlen_k = mx;
    a.desc.causal = causal;
    a.desc.stride_q = a.desc.stride_k = a.desc.stride_v = h * d;
    a.cu_seqlens_q_dev = a.cu_seqlens_k_dev = b->cu_dev;
    a.scale = 1.0f / sqrtf((float)d);
    a.total_q = a.total_k = b->cu[b->n];
    return a;
}

/* median ms of `iters` event-timed runs after `warm` untimed ones */
static float time_one(rg_backend *be, const batch *b, const rg_attn_args *a, bool bwd, int warm, int iters) {
    cudaStream_t st = (cudaStream_t)rg_cuda_stream_of(be);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float *ts = malloc(sizeof(float) * (size_t)iters);
    for (int i = 0; i < warm + iters; i++) {
        cudaEventRecord(e0, st);
        if (be->ops->attn_forward(be, a, b->q, b->k, b->v, b->o, b->lse) != RG_OK) die("forward");
        if (bwd && be->ops->attn_backward(be, a, b->q, b->k, b->v, b->o, b->lse, b->dout, b->dq, b->dk, b->dv) != RG_OK)
            die("backward");
        cudaEventRecord(e1, st);
        if (cudaEventSynchronize(e1) != cudaSuccess) { fprintf(stderr, "cuda_attn_lab: kernel failed\n"); exit(1); }
        if (i >= warm) cudaEventElapsedTime(&ts[i - warm], e0, e1);
    }
    qsort(ts, (size_t)iters, sizeof(float), cmp_float);
    float med = ts[iters / 2];
    free(ts);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return med;
}

int main(int argc, char **argv) {
    const char *path = ".bench/lengths.txt";
    int nb = 4, h = 16, d = 64, warm = 5, iters = 20, sweep = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lengths") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) nb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--heads") && i + 1 < argc) h = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc) d = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warm") && i + 1 < argc) warm = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-sweep")) sweep = 0;
        else {
            printf("usage: cuda_attn_lab [--lengths FILE (default .bench/lengths.txt)] [--batches N (4)]\n"
                   "                     [--heads H (16)] [--dim D (64)] [--iters N (20)] [--warm N (5)] [--no-sweep]\n");
            return 2;
        }
    }
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "cuda_attn_lab: cannot open %s\n", path); return 1; }
    rg_backend *be;
    if (rg_backend_init(RG_BACKEND_CUDA, 0, &be) != RG_OK) die("backend");
    rg_rng rng;
    rg_rng_seed(&rng, 1234);
    batch *bs = calloc((size_t)nb, sizeof(batch));
    char line[65536];
    int got = 0;
    double flop_full = 0;
    while (got < nb && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        batch *b = &bs[got];
        char *p = line, *end;
        b->cu[0] = 0;
        for (long x = strtol(p, &end, 10); end != p && b->n < MAXB; x = strtol(p, &end, 10)) {
            b->cu[b->n + 1] = b->cu[b->n] + (int32_t)x;
            b->n++;
            flop_full += 4.0 * (double)x * (double)x * h * d;
            p = end;
        }
        size_t T = (size_t)b->cu[b->n], n = T * (size_t)h * (size_t)d;
        if (rg_buffer_alloc(be, sizeof(int32_t) * (size_t)(b->n + 1), (void **)&b->cu_dev) != RG_OK ||
            rg_buffer_upload(be, b->cu_dev, b->cu, sizeof(int32_t) * (size_t)(b->n + 1)) != RG_OK)
            die("cu_seqlens");
        upload_random(be, &b->q, n, &rng);
        upload_random(be, &b->k, n, &rng);
        upload_random(be, &b->v, n, &rng);
        upload_random(be, &b->dout, n, &rng);
        if (rg_buffer_alloc(be, n * 2, &b->o) || rg_buffer_alloc(be, n * 2, &b->dq) ||
            rg_buffer_alloc(be, n * 2, &b->dk) || rg_buffer_alloc(be, n * 2, &b->dv) ||
            rg_buffer_alloc(be, T * (size_t)h * 4, (void **)&b->lse))
            die("alloc");
        got++;
    }
    fclose(f);
    nb = got;
    printf("cuda_attn_lab: %d batches from %s, %d heads x %d, bf16, median of %d runs after %d warm-ups\n\n", nb,
           path, h, d, iters, warm);
    printf("| kernel | causal | pass | ms/batch | TFLOP/s |\n|---|---|---|---|---|\n");

    int nfv = 0, nbv = 0;
    while (rg_cuda_attn_variant_name(0, d, nfv)) nfv++;
    while (rg_cuda_attn_variant_name(1, d, nbv)) nbv++;
    /* rows: each forward variant (fwd), each backward variant (fwd+bwd with the
     * automatic forward), then the automatic pair, which the summary uses */
    int rows = sweep ? nfv + nbv + 1 : 1;
    for (int r = 0; r < rows; r++) {
        int fv = -1, bv = -1, bwd;
        char name[160];
        if (r < (sweep ? nfv : 0)) {
            fv = r;
            bwd = 0;
            snprintf(name, sizeof name, "%s", rg_cuda_attn_variant_name(0, d, fv));
        } else if (r < (sweep ? nfv + nbv : 0)) {
            bv = r - nfv;
            bwd = 1;
            snprintf(name, sizeof name, "%s", rg_cuda_attn_variant_name(1, d, bv));
        } else {
            bwd = -1;
            snprintf(name, sizeof name, "ragged (auto: %s; %s)", rg_cuda_attn_variant_name(0, d, 0),
                     rg_cuda_attn_variant_name(1, d, 0));
        }
        rg_cuda_attn_set_variant(be, fv, bv);
        for (int pass = (bwd == 1 ? 1 : 0); pass <= (bwd == 0 ? 0 : 1); pass++)
            for (int causal = 0; causal < 2; causal++) {
                double ms = 0;
                for (int i = 0; i < nb; i++) {
                    rg_attn_args a = make_args(&bs[i], h, d, causal);
                    ms += time_one(be, &bs[i], &a, pass == 1, warm, iters);
                }
                double flop = flop_full * (causal ? 0.5 : 1.0) * (pass ? 3.5 : 1.0);
                printf("| %s | %s | %s | %.3f | %.1f |\n", name, causal ? "yes" : "no", pass ? "fwd+bwd" : "fwd",
                       ms / nb, flop / (ms * 1e-3) / 1e12);
                if (bwd == -1)
                    fprintf(stderr, "RESULT ragged d=%d %s %s %.1f TFLOP/s %.3f ms/batch\n", d, causal ? "causal" : "full",
                            pass ? "fwd+bwd" : "fwd", flop / (ms * 1e-3) / 1e12, ms / nb);
                fflush(stdout);
            }
    }
    rg_cuda_attn_set_variant(be, -1, -1);
    for (int i = 0; i < nb; i++) {
        batch *b = &bs[i];
        void *ps[] = {b->cu_dev, b->q, b->k, b->v, b->o, b->dout, b->dq, b->dk, b->dv, b->lse};
        for (size_t j = 0; j < sizeof ps / sizeof ps[0]; j++) rg_buffer_free(be, ps[j]);
    }
    free(bs);
    rg_backend_free(be);
    return 0;
}
