/* cuda_decode_bench.c — times the CUDA decode attention op (attn_decode over a
 * paged bf16 KV cache, block size 16) at the shapes of issue 6's generation
 * benchmark: GPT-2 124M heads (12 x 64), batches of 1, 16 and 64 sequences
 * with KV lengths uniform in [16, 640], one long context (batch 1, 8192), and
 * a GQA shape for reference. Bytes counted: K and V of every sequence, q and o
 * (the fewest a decode step must move); GB/s against a device-to-device copy
 * measured here. Each figure is the median of REPS batches of ITERS calls,
 * timed twice: issued from the host (host clock around a sync: launch cost
 * included) and replayed from a CUDA graph (device events: GPU time), rotating
 * over enough copies of the cache (each with its own block table into its own
 * blocks) that L2 cannot serve repeats.
 * Built only with the CUDA backend; prints a markdown table.
 * RG_DECODE_LAB=1 adds a row per forced partition size (the lab for the
 * automatic choice); then kv_write and gather_rows at a decode step's size;
 * then the inference projection (linear_infer) at GPT-2's decode shapes
 * (and, for the automatic choice, once more on a single weight copy that L2
 * serves: what a projection costs when its bytes are not the limit);
 * then a decode step's kernels in one graph (12 layers of qkv, attention,
 * proj, fc1, fc2 + LM head) with the attention as kv_write + attn_decode or
 * as attn_decode_append, batches 1, 2, 4, 8, 16, 64.
 *   usage: cuda_decode_bench [seed] [proj|step]  (default seed 1; "proj": only the projections,
 *          "step": only the decode step's kernels) */
#include "backend.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/timer.h"
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *rg_cuda_stream_of(rg_backend *be);  /* the backend's stream (src/cuda/attention_sched.cu) */
/* Lab hooks of src/cuda/attention_decode.cu. */
void rg_cuda_decode_force_partition(int keys);
int rg_cuda_decode_last_partition(void);
/* Lab hook of src/cuda/linear_infer.cu: 0 picks, 1 the fused kernel, 2 LN + cuBLASLt. */
extern int rg_cuda_linear_infer_mode;
extern int rg_cuda_linear_infer_ksplit; /* 0 picks the cluster split of K, n > 0 asks for n blocks */

#define REPS 9
#define ITERS 50
#define ROTATE_BYTES (256.0 * 1024 * 1024)  /* bytes of cache cycled through: 5x the H100's L2 */
#define MAX_SETS 512

static rg_backend *be;
static rg_rng rng;

static void must(rg_status s, const char *what) {
    if (s != RG_OK) {
        fprintf(stderr, "cuda_decode_bench: %s: %s (%s)\n", what, rg_status_str(s), rg_last_error());
        exit(1);
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "cuda_decode_bench: out of host memory\n"); exit(1); }
    return p;
}

/* n bf16 values, uniform with variance 1 (never zeros). */
static void *dev_uniform(size_t n) {
    float *h = xmalloc(n * sizeof *h);
    rg_rng_fill_uniform(&rng, h, n, -1.7320508f, 1.7320508f);
    void *d;
    must(rg_buffer_alloc(be, n * 2, &d), "alloc");
    must(rg_buffer_upload_f32(be, d, RG_DTYPE_BF16, h, n), "upload");
    free(h);
    return d;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Seconds per call of fn(i) (median over REPS batches), and (max - min) / median. */
typedef void (*call_fn)(int i, void *ctx);
static double time_calls(call_fn fn, void *ctx, double *spread) {
    for (int i = 0; i < 5; i++) fn(i, ctx);
    must(rg_backend_sync(be), "sync");
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = rg_now();
        for (int i = 0; i < ITERS; i++) fn(r * ITERS + i, ctx);
        must(rg_backend_sync(be), "sync");
        t[r] = (rg_now() - t0) / ITERS;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    *spread = (t[REPS - 1] - t[0]) / t[REPS / 2];
    return t[REPS / 2];
}

static void cuda_must(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "cuda_decode_bench: %s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}

/* GPU seconds per call of fn(i): ITERS calls captured in a CUDA graph (no
 * host launch cost between them), median of REPS timed replays. */
static double time_graph(call_fn fn, void *ctx) {
    cudaStream_t st = (cudaStream_t)rg_cuda_stream_of(be);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    cudaEvent_t e0, e1;
    cuda_must(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed), "begin capture");
    for (int i = 0; i < ITERS; i++) fn(i, ctx);
    cuda_must(cudaStreamEndCapture(st, &g), "end capture");
    cuda_must(cudaGraphInstantiate(&ge, g, 0), "instantiate");
    cuda_must(cudaEventCreate(&e0), "event");
    cuda_must(cudaEventCreate(&e1), "event");
    cuda_must(cudaGraphLaunch(ge, st), "graph launch");  /* warm-up */
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        float ms = 0;
        cuda_must(cudaEventRecord(e0, st), "record");
        cuda_must(cudaGraphLaunch(ge, st), "graph launch");
        cuda_must(cudaEventRecord(e1, st), "record");
        cuda_must(cudaEventSynchronize(e1), "graph replay");
        cuda_must(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
        t[r] = ms * 1e-3 / ITERS;
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return t[REPS / 2];
}

typedef struct dec_ctx {
    rg_attn_decode_args a[MAX_SETS];
    int n_sets;
    void *q, *o, *kc, *vc;
} dec_ctx;

static void dec_run(int i, void *c_) {
    dec_ctx *c = c_;
    must(be->ops->attn_decode(be, &c->a[i % c->n_sets], c->o, c->q, c->kc, c->vc), "attn_decode");
}

typedef struct copy_ctx { void *a, *b; int64_t n; } copy_ctx;
static void copy_run(int i, void *c_) {
    copy_ctx *c = c_;
    must(be->ops->convert(be, c->b, RG_DTYPE_F32, c->a, RG_DTYPE_F32, c->n), "copy");
}

static double copy_gbs;

/* One row per partition size in parts[] (0 = automatic; n_parts of them): n
 * sequences of the given lengths, h query heads over hkv kv heads of d. */
static void bench_case(const char *name, int32_t n, const int32_t *lens, int32_t h, int32_t hkv, int32_t d,
                       const int *parts, int n_parts) {
    const int32_t bs = 16;
    int64_t blocks_per_set = 0, tokens = 0;
    int32_t max_len = 0, max_blocks = 1;
    for (int32_t b = 0; b < n; b++) {
        int32_t nb = (lens[b] + bs - 1) / bs;
        blocks_per_set += nb;
        tokens += lens[b];
        if (lens[b] > max_len) max_len = lens[b];
        if (nb > max_blocks) max_blocks = nb;
    }
    const double kv_bytes = 2.0 * (double)tokens * hkv * d * 2;
    const double bytes = kv_bytes + 2.0 * (double)n * h * d * 2;   /* + q + o */
    const double set_bytes = 2.0 * (double)blocks_per_set * bs * hkv * d * 2;
    int n_sets = (int)(ROTATE_BYTES / set_bytes) + 1;
    if (n_sets > MAX_SETS) n_sets = MAX_SETS;
    const int64_t n_blocks = blocks_per_set * n_sets;
    const size_t block_elems = (size_t)bs * hkv * d;

    dec_ctx *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->n_sets = n_sets;
    c->kc = dev_uniform((size_t)n_blocks * block_elems);
    c->vc = dev_uniform((size_t)n_blocks * block_elems);
    c->q = dev_uniform((size_t)n * h * d);
    must(rg_buffer_alloc(be, (size_t)n * h * d * 2, &c->o), "alloc");
    /* Every set's blocks: a random permutation of its own range of the pool. */
    int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)blocks_per_set);
    int32_t *table = xmalloc(sizeof(int32_t) * (size_t)n * max_blocks);
    int32_t *lens_dev;
    must(rg_buffer_alloc(be, sizeof(int32_t) * (size_t)n, (void **)&lens_dev), "alloc");
    must(rg_buffer_upload(be, lens_dev, lens, sizeof(int32_t) * (size_t)n), "upload");
    for (int s = 0; s < n_sets; s++) {
        for (int64_t i = 0; i < blocks_per_set; i++) perm[i] = (int32_t)(s * blocks_per_set + i);
        for (int64_t i = blocks_per_set - 1; i > 0; i--) {
            int64_t j = (int64_t)rg_rng_below(&rng, (uint64_t)i + 1);
            int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int64_t next = 0;
        for (int32_t b = 0; b < n; b++) {
            int32_t nb = (lens[b] + bs - 1) / bs;
            for (int32_t j = 0; j < max_blocks; j++) table[(int64_t)b * max_blocks + j] = j < nb ? perm[next++] : -1;
        }
        int32_t *table_dev;
        must(rg_buffer_alloc(be, sizeof(int32_t) * (size_t)n * max_blocks, (void **)&table_dev), "alloc");
        must(rg_buffer_upload(be, table_dev, table, sizeof(int32_t) * (size_t)n * max_blocks), "upload");
        c->a[s] = (rg_attn_decode_args){.n_seqs = n, .n_heads = h, .n_kv_heads = hkv, .head_dim = d,
                                        .block_size = bs, .max_blocks = max_blocks, .max_seq_len = max_len,
                                        .stride_q = h * d, .scale = 0.125f, .block_tables = table_dev,
                                        .seq_lens = lens_dev, .seq_lens_host = lens};
    }
    for (int v = 0; v < n_parts; v++) {
        rg_cuda_decode_force_partition(parts[v]);
        double spread, th = time_calls(dec_run, c, &spread), t = time_graph(dec_run, c);
        char shape[96], part[32];
        snprintf(shape, sizeof shape, "%d seqs, %lld keys, h %d/%d d %d", n, (long long)tokens, h, hkv, d);
        snprintf(part, sizeof part, "%s%d", parts[v] ? "" : "auto ", rg_cuda_decode_last_partition());
        printf("| %-28s | %-38s | %-9s | %8.1f | %5.1f%% | %8.1f | %8.1f | %6.0f | %5.1f%% | %6.2f |\n", name, shape,
               part, th * 1e6, spread * 100, t * 1e6, bytes / 1e6, bytes / t / 1e9, 100.0 * bytes / t / 1e9 / copy_gbs,
               bytes / copy_gbs / 1e3);
    }
    rg_cuda_decode_force_partition(0);
    for (int s = 0; s < n_sets; s++) rg_buffer_free(be, (void *)c->a[s].block_tables);
    rg_buffer_free(be, lens_dev);
    rg_buffer_free(be, c->kc);
    rg_buffer_free(be, c->vc);
    rg_buffer_free(be, c->q);
    rg_buffer_free(be, c->o);
    free(perm);
    free(table);
    free(c);
}

typedef struct rows_ctx {
    void *kc, *vc, *src, *out;
    int32_t *idx;
    int64_t n;
    int row;
} rows_ctx;
static void kvw_run(int i, void *c_) {
    rows_ctx *c = c_;
    must(be->ops->kv_write(be, c->kc, c->vc, c->src, c->row, c->src, c->row, c->idx, c->n, c->row), "kv_write");
}
static void gather_run(int i, void *c_) {
    rows_ctx *c = c_;
    must(be->ops->gather_rows(be, c->out, c->src, c->idx, c->n, c->row), "gather_rows");
}

/* kv_write (K and V rows of 768 into random slots of a 65536-slot cache) and
 * gather_rows (rows of 768 out of 16384) at a decode step's and a prefill's size. */
static void bench_copies(void) {
    printf("\n| op | rows x width | host us | spread | graph us | GB/s |\n|---|---|---|---|---|---|\n");
    const int64_t slots = 65536, src_rows = 16384;
    const int row = 768;
    rows_ctx c = {.row = row};
    c.kc = dev_uniform((size_t)slots * row);
    c.vc = dev_uniform((size_t)slots * row);
    c.src = dev_uniform((size_t)src_rows * row);
    must(rg_buffer_alloc(be, (size_t)src_rows * row * 2, &c.out), "alloc");
    int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)slots);
    for (int64_t i = 0; i < slots; i++) perm[i] = (int32_t)i;
    for (int64_t i = slots - 1; i > 0; i--) {
        int64_t j = (int64_t)rg_rng_below(&rng, (uint64_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    must(rg_buffer_alloc(be, sizeof(int32_t) * (size_t)slots, (void **)&c.idx), "alloc");
    const int64_t sizes[] = {64, 16384};
    for (int k = 0; k < 2; k++) {
        c.n = sizes[k];
        must(rg_buffer_upload(be, c.idx, perm, sizeof(int32_t) * (size_t)c.n), "upload");
        double sp, th = time_calls(kvw_run, &c, &sp), t = time_graph(kvw_run, &c);
        printf("| kv_write (K and V) | %lld x %d | %8.1f | %5.1f%% | %8.1f | %6.0f |\n", (long long)c.n, row,
               th * 1e6, sp * 100, t * 1e6, 2.0 * 2 * c.n * row * 2 / t / 1e9);
        for (int64_t i = 0; i < c.n; i++) perm[i] = (int32_t)rg_rng_below(&rng, (uint64_t)src_rows);
        must(rg_buffer_upload(be, c.idx, perm, sizeof(int32_t) * (size_t)c.n), "upload");
        th = time_calls(gather_run, &c, &sp);
        t = time_graph(gather_run, &c);
        printf("| gather_rows | %lld x %d | %8.1f | %5.1f%% | %8.1f | %6.0f |\n", (long long)c.n, row, th * 1e6,
               sp * 100, t * 1e6, 2.0 * c.n * row * 2 / t / 1e9);
        for (int64_t i = 0; i < slots; i++) perm[i] = (int32_t)i;  /* distinct slots again for the next size */
        for (int64_t i = slots - 1; i > 0; i--) {
            int64_t j = (int64_t)rg_rng_below(&rng, (uint64_t)i + 1);
            int32_t tt = perm[i];
            perm[i] = perm[j];
            perm[j] = tt;
        }
    }
    rg_buffer_free(be, c.kc);
    rg_buffer_free(be, c.vc);
    rg_buffer_free(be, c.src);
    rg_buffer_free(be, c.out);
    rg_buffer_free(be, c.idx);
    free(perm);
}

/* ---- the inference projection (linear_infer) at GPT-2 124M's decode shapes ---- */

typedef struct proj_shape {
    const char *name;
    int C, OC, ln, gelu, bias, resid;
} proj_shape;

static const proj_shape gpt2_proj[5] = {
    {"qkv (LN1)", 768, 2304, 1, RG_GELU_NONE, 1, 0},
    {"attn proj (+res)", 768, 768, 0, RG_GELU_NONE, 1, 1},
    {"fc1 (LN2, tanh GELU)", 768, 3072, 1, RG_GELU_TANH, 1, 0},
    {"fc2 (+res)", 3072, 768, 0, RG_GELU_NONE, 1, 1},
    {"LM head (LNf)", 768, 50257, 1, RG_GELU_NONE, 0, 0},
};

typedef struct proj_ctx {
    const proj_shape *s;
    int64_t T;
    int sets;
    void *w[ITERS];                        /* weight copies cycled through (L2 cannot serve repeats) */
    void *inp, *out, *res, *ln_w, *ln_b, *bias;
} proj_ctx;

static void proj_run(int i, void *c_) {
    proj_ctx *c = c_;
    const proj_shape *s = c->s;
    must(be->ops->linear_infer(be, c->out, c->inp, s->ln ? c->ln_w : NULL, s->ln ? c->ln_b : NULL, 1e-5f,
                               c->w[i % c->sets], s->bias ? c->bias : NULL, s->resid ? c->res : NULL, c->T, s->C,
                               s->OC, s->gelu),
         "linear_infer");
}

/* A decode step's projections: 12 layers (own weights each) and the LM head. */
typedef struct chain_ctx {
    int64_t T;
    void *w[12][4], *lm, *x, *x1, *qkv, *atty, *h, *logits, *ln_w, *ln_b, *bias;
} chain_ctx;

static void chain_run(int i, void *c_) {
    (void)i;
    chain_ctx *c = c_;
    const int64_t T = c->T;
    for (int l = 0; l < 12; l++) {
        must(be->ops->linear_infer(be, c->qkv, c->x, c->ln_w, c->ln_b, 1e-5f, c->w[l][0], c->bias, NULL, T, 768, 2304,
                                   RG_GELU_NONE), "qkv");
        must(be->ops->linear_infer(be, c->x1, c->atty, NULL, NULL, 0.0f, c->w[l][1], c->bias, c->x, T, 768, 768,
                                   RG_GELU_NONE), "proj");
        must(be->ops->linear_infer(be, c->h, c->x1, c->ln_w, c->ln_b, 1e-5f, c->w[l][2], c->bias, NULL, T, 768, 3072,
                                   RG_GELU_TANH), "fc1");
        must(be->ops->linear_infer(be, c->x, c->h, NULL, NULL, 0.0f, c->w[l][3], c->bias, c->x1, T, 3072, 768,
                                   RG_GELU_NONE), "fc2");
    }
    must(be->ops->linear_infer(be, c->logits, c->x, c->ln_w, c->ln_b, 1e-5f, c->lm, NULL, NULL, T, 768, 50257,
                               RG_GELU_NONE), "lm head");
}

/* A decode step's kernels: the projection chain with each layer's attention
 * between qkv and proj, over a cache of its own per layer (shared tables). */
typedef struct step_ctx {
    chain_ctx *ch;
    int mode;                  /* 0: projections only, 1: kv_write + attn_decode, 2: attn_decode_append */
    rg_attn_decode_args a;
    void *kc[12], *vc[12];
    int32_t *slots;            /* (S) the new token's slot per sequence, for kv_write */
} step_ctx;

static void step_run(int i, void *c_) {
    (void)i;
    step_ctx *c = c_;
    chain_ctx *ch = c->ch;
    const int64_t T = ch->T;
    const int Q = 2304, C = 768;
    for (int l = 0; l < 12; l++) {
        must(be->ops->linear_infer(be, ch->qkv, ch->x, ch->ln_w, ch->ln_b, 1e-5f, ch->w[l][0], ch->bias, NULL, T, C, Q,
                                   RG_GELU_NONE), "qkv");
        const uint16_t *k = (const uint16_t *)ch->qkv + C, *v = k + C;
        if (c->mode == 1) {
            must(be->ops->kv_write(be, c->kc[l], c->vc[l], k, Q, v, Q, c->slots, T, C), "kv_write");
            must(be->ops->attn_decode(be, &c->a, ch->atty, ch->qkv, c->kc[l], c->vc[l]), "attn_decode");
        } else if (c->mode == 2) {
            must(be->ops->attn_decode_append(be, &c->a, ch->atty, ch->qkv, c->kc[l], c->vc[l], k, Q, v, Q),
                 "attn_decode_append");
        }
        must(be->ops->linear_infer(be, ch->x1, ch->atty, NULL, NULL, 0.0f, ch->w[l][1], ch->bias, ch->x, T, C, C,
                                   RG_GELU_NONE), "proj");
        must(be->ops->linear_infer(be, ch->h, ch->x1, ch->ln_w, ch->ln_b, 1e-5f, ch->w[l][2], ch->bias, NULL, T, C, 3072,
                                   RG_GELU_TANH), "fc1");
        must(be->ops->linear_infer(be, ch->x, ch->h, NULL, NULL, 0.0f, ch->w[l][3], ch->bias, ch->x1, T, 3072, C,
                                   RG_GELU_NONE), "fc2");
    }
    must(be->ops->linear_infer(be, ch->logits, ch->x, ch->ln_w, ch->ln_b, 1e-5f, ch->lm, NULL, NULL, T, C, 50257,
                               RG_GELU_NONE), "lm head");
}

static void bench_step(chain_ctx *ch) {
    printf("\n| decode step's kernels (one graph, GPT-2 124M, lengths in [16, 640]) | S | projections us | "
           "+ kv_write + attn_decode us | + attn_decode_append us | attention per layer, before -> after us |\n"
           "|---|---|---|---|---|---|\n");
    const int Ss[] = {1, 2, 4, 8, 16, 64};
    for (int it = 0; it < (int)(sizeof Ss / sizeof *Ss); it++) {
        const int32_t S = Ss[it], bs = 16;
        int32_t lens[64], max_len = 0, nb_all = 0;
        for (int32_t b = 0; b < S; b++) {
            lens[b] = 16 + (int32_t)rg_rng_below(&rng, 625);
            if (lens[b] > max_len) max_len = lens[b];
            nb_all += (lens[b] + bs - 1) / bs;
        }
        const int32_t mb = (max_len + bs - 1) / bs;
        int32_t *table = xmalloc(sizeof(int32_t) * (size_t)S * mb), *perm = xmalloc(sizeof(int32_t) * (size_t)nb_all);
        int32_t slots[64];
        for (int32_t i = 0; i < nb_all; i++) perm[i] = i;
        for (int32_t i = nb_all - 1; i > 0; i--) {
            int32_t j = (int32_t)rg_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int32_t b = 0, next = 0; b < S; b++) {
            int32_t nb = (lens[b] + bs - 1) / bs;
            for (int32_t j = 0; j < mb; j++) table[(int64_t)b * mb + j] = j < nb ? perm[next++] : -1;
            int32_t p = lens[b] - 1;
            slots[b] = table[(int64_t)b * mb + p / bs] * bs + p % bs;
        }
        step_ctx c;
        memset(&c, 0, sizeof c);
        c.ch = ch;
        int32_t *dev;  /* table | lens | slots */
        size_t n_int = (size_t)S * mb + 2 * (size_t)S;
        int32_t *host = xmalloc(sizeof(int32_t) * n_int);
        memcpy(host, table, sizeof(int32_t) * (size_t)S * mb);
        memcpy(host + (size_t)S * mb, lens, sizeof(int32_t) * (size_t)S);
        memcpy(host + (size_t)S * mb + S, slots, sizeof(int32_t) * (size_t)S);
        must(rg_buffer_alloc(be, sizeof(int32_t) * n_int, (void **)&dev), "alloc");
        must(rg_buffer_upload(be, dev, host, sizeof(int32_t) * n_int), "upload");
        c.slots = dev + (size_t)S * mb + S;
        c.a = (rg_attn_decode_args){.n_seqs = S, .n_heads = 12, .n_kv_heads = 12, .head_dim = 64, .block_size = bs,
                                    .max_blocks = mb, .max_seq_len = max_len, .stride_q = 2304, .scale = 0.125f,
                                    .block_tables = dev, .seq_lens = dev + (size_t)S * mb, .seq_lens_host = lens};
        for (int l = 0; l < 12; l++) {
            c.kc[l] = dev_uniform((size_t)nb_all * bs * 768);
            c.vc[l] = dev_uniform((size_t)nb_all * bs * 768);
        }
        ch->T = S;
        double t[3];
        for (int m = 0; m < 3; m++) {
            c.mode = m;
            step_run(0, &c);  /* once directly: the decode workspace grows outside the capture */
            t[m] = time_graph(step_run, &c);
        }
        printf("| 12 layers + LM head | %d | %7.1f | %7.1f | %7.1f | %5.2f -> %5.2f |\n", S, t[0] * 1e6, t[1] * 1e6,
               t[2] * 1e6, (t[1] - t[0]) * 1e6 / 12, (t[2] - t[0]) * 1e6 / 12);
        for (int l = 0; l < 12; l++) {
            rg_buffer_free(be, c.kc[l]);
            rg_buffer_free(be, c.vc[l]);
        }
        rg_buffer_free(be, dev);
        free(host);
        free(table);
        free(perm);
    }
}

/* The per-projection table (skipped with only_step) and the chain of a
 * decode step's projections in one graph, then bench_step on the same weights. */
static void bench_projections(int only_step) {
    const int64_t Ts[] = {1, 4, 16, 64};
    const double step_bytes = 2.0 * (12.0 * 768 * (2304 + 768 + 3072 + 3072) + 768.0 * 50257);
    const double floor_us = step_bytes / copy_gbs / 1e3;
    if (!only_step) {
        printf("\ninference projection (linear_infer), GPT-2 124M decode shapes; us per call from a CUDA graph of %d\n"
               "back-to-back calls (launch cost excluded; the fused kernel overlaps the next call's weight loads with\n"
               "programmatic dependent launch); GB/s and floor: weight bytes only, floor at the copy bandwidth\n\n",
               ITERS);
        printf("| projection | C -> OC | T | fused (K split as picked) us | fused, K over 4 blocks us | LN + cuBLASLt us | speedup | fused GB/s | "
               "of copy | floor us | auto picks |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        double layer_t1[2] = {0, 0}; /* T = 1: 12 x (qkv + proj + fc1 + fc2) + LM head, fused / unfused */
        double hot[5][4];            /* auto picks, weights served by L2 (one copy), [projection][T] */
        for (int k = 0; k < 5; k++) {
            const proj_shape *s = &gpt2_proj[k];
            proj_ctx c = {.s = s};
            const double wbytes = 2.0 * s->C * s->OC;
            c.sets = (int)(ROTATE_BYTES / wbytes) + 1;
            if (c.sets > ITERS) c.sets = ITERS;
            for (int i = 0; i < c.sets; i++) c.w[i] = dev_uniform((size_t)s->C * s->OC);
            c.inp = dev_uniform((size_t)64 * s->C);
            c.res = dev_uniform((size_t)64 * s->OC);
            must(rg_buffer_alloc(be, (size_t)64 * s->OC * 2, &c.out), "alloc");
            c.ln_w = dev_uniform(s->C);
            c.ln_b = dev_uniform(s->C);
            c.bias = dev_uniform(s->OC);
            for (int it = 0; it < 4; it++) {
                c.T = Ts[it];
                double t[2], t_split, t_auto;
                for (int m = 0; m < 2; m++) {
                    rg_cuda_linear_infer_mode = m + 1;
                    t[m] = time_graph(proj_run, &c);
                }
                rg_cuda_linear_infer_mode = 1;
                rg_cuda_linear_infer_ksplit = 4;
                t_split = time_graph(proj_run, &c);
                rg_cuda_linear_infer_ksplit = 0;
                rg_cuda_linear_infer_mode = 0;
                t_auto = time_graph(proj_run, &c);
                /* the same calls on one weight copy: L2 serves it from the second call on */
                int sets = c.sets;
                c.sets = 1;
                hot[k][it] = time_graph(proj_run, &c);
                c.sets = sets;
                if (c.T == 1)
                    for (int m = 0; m < 2; m++) layer_t1[m] += t[m] * (k == 4 ? 1 : 12);
                printf("| %-20s | %d -> %d | %lld | %7.2f | %7.2f | %7.2f | %5.2fx | %6.0f | %5.1f%% | %5.2f | %7.2f us |\n",
                       s->name, s->C, s->OC, (long long)c.T, t[0] * 1e6, t_split * 1e6, t[1] * 1e6, t[1] / t[0],
                       wbytes / t[0] / 1e9, 100.0 * wbytes / t[0] / 1e9 / copy_gbs, wbytes / copy_gbs / 1e3, t_auto * 1e6);
            }
            for (int i = 0; i < c.sets; i++) rg_buffer_free(be, c.w[i]);
            rg_buffer_free(be, c.inp);
            rg_buffer_free(be, c.res);
            rg_buffer_free(be, c.out);
            rg_buffer_free(be, c.ln_w);
            rg_buffer_free(be, c.ln_b);
            rg_buffer_free(be, c.bias);
        }
        printf("\nauto picks on one weight copy (L2 serves it where it fits: all but the LM head), us, T = 1 / 4 / "
               "16 / 64:\n");
        for (int k = 0; k < 5; k++)
            printf("  %-20s %7.2f %7.2f %7.2f %7.2f\n", gpt2_proj[k].name, hot[k][0] * 1e6, hot[k][1] * 1e6,
                   hot[k][2] * 1e6, hot[k][3] * 1e6);
        printf("\nT = 1, sum of the rows above, 12 x (qkv + proj + fc1 + fc2) + LM head: fused %.1f us, LN + cuBLASLt "
               "%.1f us; floor %.1f us (%.1f MB of weights at %.0f GB/s)\n",
               layer_t1[0] * 1e6, layer_t1[1] * 1e6, floor_us, step_bytes / 1e6, copy_gbs);
    }

    /* the same chain in one graph, each layer with its own weights, as a decode step runs it */
    chain_ctx ch;
    memset(&ch, 0, sizeof ch);
    for (int l = 0; l < 12; l++) {
        ch.w[l][0] = dev_uniform((size_t)768 * 2304);
        ch.w[l][1] = dev_uniform((size_t)768 * 768);
        ch.w[l][2] = dev_uniform((size_t)768 * 3072);
        ch.w[l][3] = dev_uniform((size_t)3072 * 768);
    }
    ch.lm = dev_uniform((size_t)768 * 50257);
    ch.x = dev_uniform((size_t)64 * 768);
    ch.x1 = dev_uniform((size_t)64 * 768);
    ch.atty = dev_uniform((size_t)64 * 768);
    ch.qkv = dev_uniform((size_t)64 * 2304);
    ch.h = dev_uniform((size_t)64 * 3072);
    ch.logits = dev_uniform((size_t)64 * 50257);
    ch.ln_w = dev_uniform(3072);
    ch.ln_b = dev_uniform(3072);
    ch.bias = dev_uniform(3072);
    printf("\n| decode step's projections (one graph) | T | fused us | LN + cuBLASLt us | auto us | floor us | auto / floor |\n"
           "|---|---|---|---|---|---|---|\n");
    for (int it = 0; it < 4 && !only_step; it++) {
        ch.T = Ts[it];
        double t[3];
        for (int m = 0; m < 3; m++) {
            rg_cuda_linear_infer_mode = (m + 1) % 3; /* fused, unfused, then the automatic choice */
            t[m] = time_graph(chain_run, &ch);
        }
        rg_cuda_linear_infer_mode = 0;
        printf("| 12 layers + LM head | %lld | %7.1f | %7.1f | %7.1f | %6.1f | %4.2fx |\n", (long long)ch.T, t[0] * 1e6,
               t[1] * 1e6, t[2] * 1e6, floor_us, t[2] * 1e6 / floor_us);
    }
    bench_step(&ch);
    for (int l = 0; l < 12; l++)
        for (int j = 0; j < 4; j++) rg_buffer_free(be, ch.w[l][j]);
    void *bufs[] = {ch.lm, ch.x, ch.x1, ch.atty, ch.qkv, ch.h, ch.logits, ch.ln_w, ch.ln_b, ch.bias};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) rg_buffer_free(be, bufs[i]);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rg_rng_seed(&rng, argc > 1 ? strtoull(argv[1], NULL, 10) : 1);
    const int only_proj = argc > 2 && strcmp(argv[2], "proj") == 0;
    const int only_step = argc > 2 && strcmp(argv[2], "step") == 0;
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        fprintf(stderr, "cuda_decode_bench: no CUDA device\n");
        return 77;
    }
    must(rg_backend_init(RG_BACKEND_CUDA, 0, &be), "backend");

    copy_ctx cc = {.n = 256ll << 20};  /* 1 GiB of fp32, read + written */
    must(rg_buffer_alloc(be, (size_t)cc.n * 4, &cc.a), "alloc");
    must(rg_buffer_alloc(be, (size_t)cc.n * 4, &cc.b), "alloc");
    void *fill = dev_uniform((size_t)cc.n);  /* random data: zeros can copy faster */
    must(be->ops->convert(be, cc.a, RG_DTYPE_F32, fill, RG_DTYPE_BF16, cc.n), "convert");
    rg_buffer_free(be, fill);
    double sp, t = time_calls(copy_run, &cc, &sp);
    copy_gbs = 2.0 * cc.n * 4 / t / 1e9;
    rg_buffer_free(be, cc.a);
    rg_buffer_free(be, cc.b);
    printf("cuda_decode_bench: device copy %.0f GB/s (1 GiB, read + write, spread %.1f%%); median of %d x %d calls\n\n",
           copy_gbs, sp * 100, REPS, ITERS);
    if (only_proj || only_step) {
        bench_projections(only_step);
        rg_backend_free(be);
        return 0;
    }
    printf("us/call: host = calls issued back to back (host launch cost included), graph = the same calls\n"
           "replayed from a CUDA graph (GPU time); GB/s, of copy: from the graph time\n\n");
    printf("| case | shape | partition | host us | spread | graph us | MB moved | GB/s | of copy | floor us |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    const int lab = getenv("RG_DECODE_LAB") != NULL;  /* also every forced partition size */
    const int all_parts[] = {0, 128, 256, 512, 1024, 1 << 20}, n_all = lab ? 6 : 1;

    static int32_t lens[64];
    const int batches[] = {1, 16, 64};
    for (int i = 0; i < 3; i++) {
        int32_t n = batches[i];
        for (int32_t b = 0; b < n; b++) lens[b] = 16 + (int32_t)rg_rng_below(&rng, 625);
        char name[64];
        snprintf(name, sizeof name, "gpt2 batch %d, len [16,640]", n);
        bench_case(name, n, lens, 12, 12, 64, all_parts, n_all);
    }
    int32_t long_len = 8192;
    bench_case("gpt2 batch 1, len 8192", 1, &long_len, 12, 12, 64, all_parts, n_all);
    for (int32_t b = 0; b < 16; b++) lens[b] = 2048;
    bench_case("gqa batch 16, len 2048", 16, lens, 32, 8, 128, all_parts, n_all);
    for (int32_t b = 0; b < 64; b++) lens[b] = 1 + (int32_t)rg_rng_below(&rng, 16);
    lens[7] = 4000;
    bench_case("gpt2 63 tiny + one 4000", 64, lens, 12, 12, 64, all_parts, n_all);
    bench_copies();
    bench_projections(0);
    rg_backend_free(be);
    return 0;
}
