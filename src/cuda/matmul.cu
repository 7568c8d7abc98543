/* matmul.cu — the linear layer through cuBLASLt: bf16 operands, fp32
 * accumulation.
 *   forward   out (T,OC) = inp (T,C) @ weight^T + bias     (bias, GELU epilogues)
 *   backward  dinp (T,C) = dout @ weight                  (bf16, overwritten)
 *             dweight (OC,C) += dout^T @ inp              (fp32 C/D, beta = 1)
 *             dbias (OC) += sum_t dout                    (own kernel, deterministic)
 * cuBLAS is column-major: a row-major (R, K) matrix is a column-major (K, R)
 * one, so every product below is written for the transposes (see plan_build).
 * GELU: cuBLASLt's epilogue is the tanh approximation, so RG_GELU_TANH uses
 * GELU_AUX_BIAS (pre-activation stored as aux) and RG_GELU_ERF uses the BIAS
 * epilogue into pre_gelu followed by rg_cuda_bias_gelu. Plans (descriptor,
 * layouts, heuristic's algorithm) are cached by shape and pointer alignment so
 * that a step makes no heuristic queries after its first. The token count
 * changes from one packed batch to the next, so a plan is made for a bucket of
 * token counts (rounded up, at most 1/8 above) and its layouts are resized to
 * each call's count: one heuristic query per bucket, not per batch (a plan per
 * exact count, 15 per count in training, overflowed the cache within a few
 * steps and re-planned every GEMM after). If cuBLASLt refuses the bucket's
 * algorithm at the exact size, an exact plan is made.
 * Forward products can instead run on our own wgmma GEMM (gemm_wgmma.cu, sm_90a),
 * whose epilogue applies the exact erf GELU (no separate pass): RG_GEMM=cublas
 * or RG_GEMM=wgmma at backend creation forces one path (for comparisons and
 * tests; wgmma still falls back where it cannot run); unset, wgmma serves the
 * shapes and epilogues where it was measured faster (wgmma_wins: none yet). */
#include "cuda/ops.cuh"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MM_FWD = 0, MM_DINP = 1, MM_DW = 2 };
#define MM_CACHE_SIZE 128

typedef struct mm_key {
    int kind, epi;
    int exact;    /* 1: planned for exactly these dims (a bucket's algorithm was refused) */
    int64_t m, n, k;
    int align[6]; /* A, B, D, bias, aux, C (0 when C is D): largest power of two dividing the address, <= 256 */
} mm_key;

typedef struct mm_plan {
    mm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int64_t m, n, k;   /* the dims the layouts describe now */
} mm_plan;

enum { GEMM_AUTO = 0, GEMM_CUBLAS = 1, GEMM_WGMMA = 2 };

struct rg_cuda_mm_cache {
    bool wgmma_ok; /* this device runs gemm_wgmma.cu's kernels */
    int mode;      /* GEMM_*, from RG_GEMM */
    int n;
    mm_plan plans[MM_CACHE_SIZE];
};


static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && (a & (uintptr_t)(al - 1))) al >>= 1;
    return al;
}

static void plan_free(mm_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

rg_status rg_cuda_matmul_init(rg_cuda_state *st) {
    st->mm = (struct rg_cuda_mm_cache *)calloc(1, sizeof *st->mm);
    if (!st->mm) return rg_fail(RG_ERR_OUT_OF_MEMORY, "rg_backend_init: cannot allocate the matmul plan cache");
    const char *g = getenv("RG_GEMM");
    if (g && strcmp(g, "cublas") && strcmp(g, "wgmma") && strcmp(g, "auto")) {
        free(st->mm);
        st->mm = NULL;
        return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_init: RG_GEMM=%s (expected cublas, wgmma or auto)", g);
    }
    st->mm->mode = !g ? GEMM_AUTO : !strcmp(g, "cublas") ? GEMM_CUBLAS : !strcmp(g, "wgmma") ? GEMM_WGMMA : GEMM_AUTO;
    st->mm->wgmma_ok = st->mm->mode != GEMM_CUBLAS && rg_cuda_wgmma_init(st);
    return RG_OK;
}

void rg_cuda_matmul_destroy(rg_cuda_state *st) {
    if (!st->mm) return;
    for (int i = 0; i < st->mm->n; i++) plan_free(&st->mm->plans[i]);
    free(st->mm);
    st->mm = NULL;
}

/* The token count rounded up to its bucket: exact up to 256, then to a
 * multiple of an eighth of its power-of-two floor (16000 -> 16384). */
static int64_t token_bucket(int64_t t) {
    if (t <= 256) return t;
    int64_t p = 256;
    while (p * 2 <= t) p *= 2;
    int64_t q = p / 8;
    return (t + q - 1) / q * q;
}

/* The token dimension is n for the forward and dinp products, k for dweight. */
static mm_key bucket_key(const mm_key *key) {
    mm_key b = *key;
    if (key->kind == MM_DW) b.k = token_bucket(key->k);
    else b.n = token_bucket(key->n);
    return b;
}

/* Rows and columns of the A, B and D layouts of a product of kind (column-major). */
static void layout_dims(int kind, int64_t m, int64_t n, int64_t k, uint64_t rows[3], uint64_t cols[3]) {
    bool ta = kind == MM_FWD, tb = kind == MM_DW; /* transposed operands */
    rows[0] = (uint64_t)(ta ? k : m), cols[0] = (uint64_t)(ta ? m : k);
    rows[1] = (uint64_t)(tb ? n : k), cols[1] = (uint64_t)(tb ? k : n);
    rows[2] = (uint64_t)m, cols[2] = (uint64_t)n;
}

/* Resizes p's layouts to (m, n, k); leading dimensions do not depend on the token count. */
static rg_status plan_resize(mm_plan *p, int64_t m, int64_t n, int64_t k) {
    if (p->m == m && p->n == n && p->k == k) return RG_OK;
    uint64_t rows[3], cols[3];
    layout_dims(p->key.kind, m, n, k, rows, cols);
    cublasLtMatrixLayout_t l[3] = {p->la, p->lb, p->ld};
    for (int i = 0; i < 3; i++) {
        RG_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_ROWS, &rows[i], sizeof rows[i]));
        RG_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_COLS, &cols[i], sizeof cols[i]));
    }
    p->m = m, p->n = n, p->k = k;
    return RG_OK;
}

/* Builds the plan for key into p. *found = false (and RG_OK) when cuBLASLt
 * has no algorithm for it, so the caller can fall back to a plainer epilogue. */
static rg_status plan_build(rg_cuda_state *st, const mm_key *key, mm_plan *p, bool *found, const void *bias,
                            const void *aux) {
    memset(p, 0, sizeof *p);
    p->key = *key;
    *found = false;
    int64_t m = key->m, n = key->n, k = key->k, lda, ldb;
    p->m = m, p->n = n, p->k = k;
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cudaDataType_t dtype = key->kind == MM_DW ? CUDA_R_32F : CUDA_R_16BF;
    if (key->kind == MM_FWD) {        /* D(OC,T) = W_cm(C,OC)^T x inp_cm(C,T) */
        ta = CUBLAS_OP_T; lda = k; ldb = k;
    } else if (key->kind == MM_DINP) { /* D(C,T) = W_cm(C,OC) x dout_cm(OC,T) */
        lda = m; ldb = k;
    } else {                           /* D(C,OC) += inp_cm(C,T) x dout_cm(OC,T)^T */
        tb = CUBLAS_OP_T; lda = m; ldb = n;
    }
    rg_status s = RG_OK;
    cublasLtMatmulPreference_t pref = NULL;
#define TRY_LT(call) do { cublasStatus_t b_ = (call); if (b_ != CUBLAS_STATUS_SUCCESS) { \
        s = rg_fail(RG_ERR_BACKEND, "cuda matmul: %s: %s", #call, cublasLtGetStatusString(b_)); goto done; } } while (0)
    TRY_LT(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    {
        cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key->epi;
        TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    if (bias) TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux) {
        int64_t aux_ld = m;
        TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        TRY_LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld));
    }
    TRY_LT(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda));
    TRY_LT(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb));
    TRY_LT(cublasLtMatrixLayoutCreate(&p->ld, dtype, m, n, m));
    TRY_LT(cublasLtMatmulPreferenceCreate(&pref));
    TRY_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &st->lt_workspace_bytes, sizeof st->lt_workspace_bytes));
    {
        const cublasLtMatmulPreferenceAttributes_t which[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; i++) {
            /* C: its own alignment when it is not D (a residual read with beta = 1) */
            uint32_t al = (uint32_t)key->align[i == 2 && key->align[5] ? 5 : i < 3 ? i : 2];
            TRY_LT(cublasLtMatmulPreferenceSetAttribute(pref, which[i], &al, sizeof al));
        }
    }
    {
        cublasLtMatmulHeuristicResult_t res;
        int n_res = 0;
        cublasStatus_t b = cublasLtMatmulAlgoGetHeuristic(st->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1,
                                                          &res, &n_res);
        if (b == CUBLAS_STATUS_SUCCESS && n_res > 0) {
            p->algo = res.algo;
            *found = true;
        } else if (b != CUBLAS_STATUS_SUCCESS && b != CUBLAS_STATUS_NOT_SUPPORTED) {
            s = rg_fail(RG_ERR_BACKEND, "cuda matmul: cublasLtMatmulAlgoGetHeuristic: %s", cublasLtGetStatusString(b));
        }
    }
#undef TRY_LT
    if (getenv("RG_CUDA_VERBOSE")) /* which epilogues cuBLASLt serves (plans are built once per shape) */
        fprintf(stderr, "ragged cuda: matmul plan kind=%d m=%lld n=%lld k=%lld epilogue=%d align=%d/%d/%d: %s\n",
                key->kind, (long long)m, (long long)n, (long long)k, key->epi, key->align[0], key->align[1],
                key->align[2], *found ? "ok" : "no algorithm");
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (s != RG_OK || !*found) plan_free(p);
    return s;
}

/* The cached plan for key (built and cached when missing; a local one in
 * *local when the cache is full). *p = NULL when cuBLASLt has no algorithm. */
static rg_status plan_get(rg_cuda_state *st, const mm_key *key, mm_plan *local, mm_plan **out, const void *bias,
                          const void *aux) {
    struct rg_cuda_mm_cache *c = st->mm;
    for (int i = 0; i < c->n; i++)
        if (memcmp(&c->plans[i].key, key, sizeof *key) == 0) {
            mm_plan *p = &c->plans[i];
            /* same alignment as when planned; only the addresses change */
            if (bias) RG_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
            if (aux) RG_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
            *out = p;
            return RG_OK;
        }
    mm_plan *p = c->n < MM_CACHE_SIZE ? &c->plans[c->n] : local;
    bool found;
    *out = NULL;
    RG_TRY(plan_build(st, key, p, &found, bias, aux));
    if (!found) return RG_OK;
    if (p != local) c->n++;
    *out = p;
    return RG_OK;
}

/* Runs D = alpha * op(A) op(B) + beta * Cm (+ epilogue) for key (exact dims),
 * through its bucket's plan; Cm is D when NULL, else has D's layout (a
 * residual). *found = false when no algorithm exists for the key (nothing ran). */
static rg_status mm_run(rg_cuda_state *st, const mm_key *key, const void *A, const void *B, void *D, const void *Cm,
                        float beta, const void *bias, const void *aux, bool *found) {
    mm_plan local, *p = NULL;
    memset(&local, 0, sizeof local);
    const float alpha = 1.0f;
    mm_key bk = bucket_key(key);
    cublasStatus_t b = CUBLAS_STATUS_NOT_SUPPORTED;
    for (int pass = 0; pass < 2; pass++) {
        RG_TRY(plan_get(st, &bk, &local, &p, bias, aux));
        *found = p != NULL;
        if (!p) return RG_OK;
        rg_status s = plan_resize(p, key->m, key->n, key->k);
        if (s == RG_OK)
            b = cublasLtMatmul(st->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, Cm ? Cm : D, p->ld, D, p->ld,
                               &p->algo, st->lt_workspace, st->lt_workspace_bytes, st->stream);
        if (p == &local) plan_free(p);
        if (s != RG_OK) return s;
        bool refused = b == CUBLAS_STATUS_NOT_SUPPORTED || b == CUBLAS_STATUS_INVALID_VALUE;
        if (b == CUBLAS_STATUS_SUCCESS || !refused || bk.exact || memcmp(&bk, key, sizeof bk) == 0) break;
        bk = *key; /* the bucket's algorithm does not fit this size: plan exactly */
        bk.exact = 1;
    }
    if (b != CUBLAS_STATUS_SUCCESS)
        return rg_fail(RG_ERR_BACKEND, "cuda matmul: cublasLtMatmul (kind %d, m=%lld n=%lld k=%lld, epilogue %d): %s",
                       key->kind, (long long)key->m, (long long)key->n, (long long)key->k, key->epi,
                       cublasLtGetStatusString(b));
    return RG_OK;
}

static mm_key make_key(int kind, int epi, int64_t m, int64_t n, int64_t k, const void *A, const void *B,
                       const void *D, const void *bias, const void *aux) {
    mm_key key;
    memset(&key, 0, sizeof key); /* keys are compared with memcmp */
    key.kind = kind;
    key.epi = epi;
    key.m = m;
    key.n = n;
    key.k = k;
    key.align[0] = align_of(A);
    key.align[1] = align_of(B);
    key.align[2] = align_of(D);
    key.align[3] = bias ? align_of(bias) : 0;
    key.align[4] = aux ? align_of(aux) : 0;
    return key;
}

static const char *epi_name(int gelu, bool bias) {
    if (gelu == RG_GELU_NONE) return bias ? " bias" : "";
    return gelu == RG_GELU_ERF ? (bias ? " bias, erf gelu" : " erf gelu") : (bias ? " bias, tanh gelu" : " tanh gelu");
}

/* Where the wgmma GEMM beats cuBLASLt (+ the GELU pass), from `cuda_ops_bench
 * gemm` on an H100 (bench/cuda_ops_NOTES.md, "wgmma GEMM"): nowhere yet. Its
 * best version (v6b, session 4) reaches 0.91x on qkv, 0.88x on the lm head,
 * 0.81x on fc2 + residual, 0.69x on proj + residual, 0.77x on fc1 + tanh GELU
 * and 0.89x on fc1 + erf GELU fused against cuBLASLt + the GELU pass; the
 * seed model with erf fc1 on it ran eval 25.9-26.4 vs 24.5-24.7 ms (same call).
 * So cuBLASLt serves every shape unless RG_GEMM=wgmma. */
static bool wgmma_wins(int64_t T, int C, int OC, int gelu, bool residual) {
    (void)T; (void)C; (void)OC; (void)gelu; (void)residual;
    return false;
}

/* Runs the product on the wgmma GEMM when the mode and the shape allow;
 * *done = false leaves it to cuBLASLt. */
static rg_status try_wgmma(rg_cuda_state *st, bool *done, void *out, void *pre_gelu, const void *inp,
                           const void *weight, const void *bias, const void *residual, int64_t T, int C, int OC,
                           int gelu) {
    *done = false;
    const struct rg_cuda_mm_cache *c = st->mm;
    if (!c->wgmma_ok || c->mode == GEMM_CUBLAS || (gelu != RG_GELU_NONE && !pre_gelu) ||
        !rg_cuda_wgmma_fits(out, gelu != RG_GELU_NONE ? pre_gelu : NULL, inp, weight, bias, residual, T, C, OC))
        return RG_OK;
    if (c->mode == GEMM_AUTO && !wgmma_wins(T, C, OC, gelu, residual != NULL)) return RG_OK;
    int prof = rg_cuda_prof_begin(st);
    RG_TRY(rg_cuda_wgmma_forward(st, out, gelu != RG_GELU_NONE ? pre_gelu : NULL, inp, weight, bias, residual, T, C,
                                 OC, gelu));
    double stores = gelu != RG_GELU_NONE ? 2.0 : residual ? 2.0 : 1.0; /* pre + out, or residual in + out */
    rg_cuda_prof_end(st, prof, residual ? "matmul_forward_residual wgmma" : "matmul_forward wgmma",
                     2.0 * T * C * OC, 2.0 * ((double)T * C + (double)OC * C + stores * T * OC), "C=%d OC=%d%s", C,
                     OC, epi_name(gelu, bias != NULL));
    *done = true;
    return RG_OK;
}

rg_status rg_cuda_matmul_forward(rg_backend *be, void *out, void *pre_gelu, const void *inp, const void *weight,
                                 const void *bias, int64_t T, int C, int OC, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || OC <= 0) return RG_OK;
    if (C <= 0) return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_forward: C=%d (no inner dimension)", C);
    bool found = false;
    RG_TRY(try_wgmma(st, &found, out, pre_gelu, inp, weight, bias, NULL, T, C, OC, gelu));
    if (found) return RG_OK;
    mm_key key;
    double flops = 2.0 * T * C * OC, bytes = 2.0 * ((double)T * C + (double)OC * C + (double)T * OC);
    int prof = rg_cuda_prof_begin(st);
    /* tanh GELU fully in cuBLASLt's epilogue; its aux (pre_gelu) needs ld % 8 == 0 */
    if (gelu == RG_GELU_TANH && OC % 8 == 0) {
        int epi = bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
        key = make_key(MM_FWD, epi, OC, T, C, weight, inp, out, bias, pre_gelu);
        rg_status s = mm_run(st, &key, weight, inp, out, NULL, 0.0f, bias, pre_gelu, &found);
        if (s != RG_OK || found) {
            rg_cuda_prof_end(st, prof, "matmul_forward gemm", flops, bytes + 2.0 * T * OC, "C=%d OC=%d%s", C, OC,
                             epi_name(gelu, bias));
            return s;
        }
    }
    void *dst = gelu == RG_GELU_NONE ? out : pre_gelu;
    bool bias_done = false;
    if (bias) {
        key = make_key(MM_FWD, CUBLASLT_EPILOGUE_BIAS, OC, T, C, weight, inp, dst, bias, NULL);
        RG_TRY(mm_run(st, &key, weight, inp, dst, NULL, 0.0f, bias, NULL, &found));
        bias_done = found;
    }
    if (!bias_done) {
        key = make_key(MM_FWD, CUBLASLT_EPILOGUE_DEFAULT, OC, T, C, weight, inp, dst, NULL, NULL);
        RG_TRY(mm_run(st, &key, weight, inp, dst, NULL, 0.0f, NULL, NULL, &found));
        if (!found)
            return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_forward: cuBLASLt has no algorithm for T=%lld C=%d OC=%d",
                           (long long)T, C, OC);
    }
    rg_cuda_prof_end(st, prof, "matmul_forward gemm", flops, bytes, "C=%d OC=%d%s", C, OC,
                     epi_name(RG_GELU_NONE, bias_done));
    if (gelu != RG_GELU_NONE || (bias && !bias_done)) {
        prof = rg_cuda_prof_begin(st);
        RG_TRY(rg_cuda_bias_gelu(st, (bf16 *)out, (bf16 *)dst, bias_done ? NULL : (const bf16 *)bias, T, OC, gelu));
        rg_cuda_prof_end(st, prof, "matmul_forward gelu pass", 0, 2.0 * 2.0 * T * OC, "OC=%d%s", OC,
                         epi_name(gelu, bias && !bias_done));
    }
    return RG_OK;
}

rg_status rg_cuda_matmul_forward_residual(rg_backend *be, void *out, const void *inp, const void *weight,
                                          const void *bias, const void *residual, int64_t T, int C, int OC) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || OC <= 0) return RG_OK;
    if (C <= 0) return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_forward_residual: C=%d (no inner dimension)", C);
    /* C of the GEMM is the residual with beta = 1; cuBLASLt allows it to be D itself */
    const void *cm = residual == out ? NULL : residual;
    bool found = false, bias_done = false;
    RG_TRY(try_wgmma(st, &found, out, NULL, inp, weight, bias, residual, T, C, OC, RG_GELU_NONE));
    if (found) return RG_OK;
    mm_key key;
    int prof = rg_cuda_prof_begin(st);
    if (bias) {
        key = make_key(MM_FWD, CUBLASLT_EPILOGUE_BIAS, OC, T, C, weight, inp, out, bias, NULL);
        key.align[5] = cm ? align_of(cm) : 0;
        RG_TRY(mm_run(st, &key, weight, inp, out, cm, 1.0f, bias, NULL, &found));
        bias_done = found;
    }
    if (!bias_done) {
        key = make_key(MM_FWD, CUBLASLT_EPILOGUE_DEFAULT, OC, T, C, weight, inp, out, NULL, NULL);
        key.align[5] = cm ? align_of(cm) : 0;
        RG_TRY(mm_run(st, &key, weight, inp, out, cm, 1.0f, NULL, NULL, &found));
        if (!found)
            return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_forward_residual: cuBLASLt has no algorithm for "
                           "T=%lld C=%d OC=%d", (long long)T, C, OC);
    }
    rg_cuda_prof_end(st, prof, "matmul_forward_residual gemm", 2.0 * T * C * OC,
                     2.0 * ((double)T * C + (double)OC * C + 2.0 * T * OC), "C=%d OC=%d%s", C, OC,
                     epi_name(RG_GELU_NONE, bias_done));
    if (bias && !bias_done) /* rare: no algorithm with the bias epilogue; add it after (one more rounding) */
        RG_TRY(rg_cuda_bias_gelu(st, (bf16 *)out, (bf16 *)out, (const bf16 *)bias, T, OC, RG_GELU_NONE));
    return RG_OK;
}

/* dbias partials: a block is BG_LANES row lanes x BG_COLS column threads of
 * VEC columns (x: a split of the rows, y: BG_COLS * VEC columns); lane ty
 * takes rows x * BG_LANES + ty + k * gridDim.x * BG_LANES, four rows' loads in
 * flight, and the lanes are added in shared memory in lane order (fixed
 * order: deterministic). Four lanes keep 16 warps per block in flight even
 * when OC = 1024 leaves one column block (one lane of 4 warps reached only
 * 1.6 TB/s there). */
#define BG_LANES 4
#define BG_COLS 128

template <int VEC>
__global__ void __launch_bounds__(BG_LANES * BG_COLS) bias_grad_kernel(float *parts, const bf16 *dout, int64_t T,
                                                                       int OC) {
    __shared__ float red[BG_LANES][VEC * BG_COLS]; /* [lane][j * BG_COLS + tx]: no bank conflicts */
    int tx = threadIdx.x % BG_COLS, ty = threadIdx.x / BG_COLS;
    int c = (blockIdx.y * BG_COLS + tx) * VEC;
    float acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; j++) acc[j] = 0.0f;
    if (c < OC) {
        int64_t step = (int64_t)gridDim.x * BG_LANES, r = (int64_t)blockIdx.x * BG_LANES + ty;
        for (; r + 3 * step < T; r += 4 * step) {
            float d[4][VEC];
#pragma unroll
            for (int k = 0; k < 4; k++) rg_load_bf16<VEC>(d[k], dout + (r + k * step) * OC + c);
#pragma unroll
            for (int k = 0; k < 4; k++)
#pragma unroll
                for (int j = 0; j < VEC; j++) acc[j] += d[k][j];
        }
        for (; r < T; r += step) {
            float d[VEC];
            rg_load_bf16<VEC>(d, dout + r * OC + c);
#pragma unroll
            for (int j = 0; j < VEC; j++) acc[j] += d[j];
        }
    }
#pragma unroll
    for (int j = 0; j < VEC; j++) red[ty][j * BG_COLS + tx] = acc[j];
    __syncthreads();
    if (ty == 0 && c < OC) {
        float *p = parts + (int64_t)blockIdx.x * OC + c;
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            float sum = red[0][j * BG_COLS + tx];
#pragma unroll
            for (int l = 1; l < BG_LANES; l++) sum += red[l][j * BG_COLS + tx];
            p[j] = sum;
        }
    }
}

rg_status rg_cuda_bias_grad(rg_cuda_state *st, float *dbias, const bf16 *dout, int64_t T, int OC) {
    int64_t max_parts = (int64_t)(st->scratch_bytes / sizeof(float)) / OC;
    if (max_parts < 1)
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_backward: OC=%d needs more than %zu bytes of scratch", OC,
                       st->scratch_bytes);
    int vec = OC % 8 == 0 && rg_aligned16(dout) ? 8 : 1;
    int64_t col_blocks = (OC + (int64_t)BG_COLS * vec - 1) / ((int64_t)BG_COLS * vec);
    if (col_blocks > 65535)
        return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_backward: OC=%d is too wide for the dbias grid", OC);
    /* about four blocks of 16 warps per multiprocessor in all, at least one row per lane */
    int64_t parts = (4 * (int64_t)st->prop.multiProcessorCount + col_blocks - 1) / col_blocks;
    if (parts > (T + BG_LANES - 1) / BG_LANES) parts = (T + BG_LANES - 1) / BG_LANES;
    if (parts > max_parts) parts = max_parts;
    float *scratch = (float *)st->scratch;
    dim3 grid((unsigned)parts, (unsigned)col_blocks);
    if (vec == 8) bias_grad_kernel<8><<<grid, BG_LANES * BG_COLS, 0, st->stream>>>(scratch, dout, T, OC);
    else bias_grad_kernel<1><<<grid, BG_LANES * BG_COLS, 0, st->stream>>>(scratch, dout, T, OC);
    RG_CUDA_CHECK_LAUNCH("bias_grad_kernel");
    return rg_cuda_add_partials(st, dbias, scratch, (int)parts, OC);
}

rg_status rg_cuda_matmul_backward(rg_backend *be, void *dinp, float *dweight, float *dbias, const void *dout,
                                  const void *inp, const void *weight, int64_t T, int C, int OC) {
    rg_cuda_state *st = rg_cuda(be);
    if (T <= 0 || C <= 0 || OC <= 0) {
        /* nothing to accumulate; an empty inner dimension still defines dinp = 0 */
        if (dinp && T > 0 && C > 0) RG_CUDA_TRY(cudaMemsetAsync(dinp, 0, (size_t)T * C * sizeof(bf16), st->stream));
        return RG_OK;
    }
    bool found;
    mm_key key;
    int prof = rg_cuda_prof_begin(st);
    double flops = 2.0 * T * C * OC;
    if (dinp) {
        key = make_key(MM_DINP, CUBLASLT_EPILOGUE_DEFAULT, C, T, OC, weight, dout, dinp, NULL, NULL);
        RG_TRY(mm_run(st, &key, weight, dout, dinp, NULL, 0.0f, NULL, NULL, &found));
        if (!found)
            return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_backward: no cuBLASLt algorithm for dinp (T=%lld C=%d OC=%d)",
                           (long long)T, C, OC);
        rg_cuda_prof_end(st, prof, "matmul_backward dinp", flops,
                         2.0 * ((double)T * OC + (double)OC * C + (double)T * C), "C=%d OC=%d", C, OC);
    }
    /* dbias: cuBLASLt's BGRADB epilogue on the dweight GEMM was measured no
     * faster than this GEMM plus bias_grad (bench/cuda_ops_NOTES.md), so the
     * simpler path stays. */
    if (dweight) {
        if (dinp) prof = rg_cuda_prof_begin(st);
        key = make_key(MM_DW, CUBLASLT_EPILOGUE_DEFAULT, C, OC, T, inp, dout, dweight, NULL, NULL);
        RG_TRY(mm_run(st, &key, inp, dout, dweight, NULL, 1.0f, NULL, NULL, &found));
        if (!found)
            return rg_fail(RG_ERR_UNSUPPORTED, "cuda matmul_backward: no cuBLASLt algorithm for dweight (T=%lld C=%d OC=%d)",
                           (long long)T, C, OC);
        rg_cuda_prof_end(st, prof, "matmul_backward dweight", flops,
                         2.0 * ((double)T * OC + (double)T * C) + 8.0 * OC * C, "C=%d OC=%d", C, OC);
    }
    if (dbias) {
        if (dinp || dweight) prof = rg_cuda_prof_begin(st);
        RG_TRY(rg_cuda_bias_grad(st, dbias, (const bf16 *)dout, T, OC));
        rg_cuda_prof_end(st, prof, "matmul_backward dbias", 0, 2.0 * T * OC + 8.0 * OC, "OC=%d", OC);
    }
    return RG_OK;
}
