/* profile.cu — the CUDA backend's opt-in per-op profile (RG_PROFILE=1 at
 * backend creation; ragged.h section 2). A second op table wraps every op in
 * an event pair on the backend's stream; matmul.cu times its own parts (GEMM,
 * GELU pass, dinp, dweight, dbias) through the same begin/end calls, so its
 * entry points are not wrapped (and no timed op calls another one). Events are read back when the backend
 * synchronises (sync, download, sum_squares, a profile read) or when the pool
 * fills; the normal table records nothing. */
#include "cuda/ops.cuh"
#include "cuda/attention_common.cuh"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#include "core/timer.h"
}

#define PROF_SLOTS 4096   /* event pairs in flight between two read-backs */
#define PROF_KEYS 256     /* distinct (op, shape); the last one collects any overflow */

struct rg_cuda_prof {
    rg_profile_entry keys[PROF_KEYS];
    int n_keys;
    cudaEvent_t ev[2 * PROF_SLOTS];
    int slot_key[PROF_SLOTS];
    double slot_t0[PROF_SLOTS]; /* host clock at prof_begin */
    int n_slots;          /* pairs recorded and not yet read back */
};

/* Reads back every recorded pair (the stream must have passed them). */
static void harvest(rg_cuda_prof *p) {
    for (int i = 0; i < p->n_slots; i++) {
        float ms = 0;
        if (p->slot_key[i] >= 0 && cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) == cudaSuccess)
            p->keys[p->slot_key[i]].ms += ms;
    }
    cudaGetLastError();
    p->n_slots = 0;
}

static rg_status flush(rg_cuda_state *st) {
    RG_CUDA_TRY(cudaStreamSynchronize(st->stream));
    harvest(st->prof);
    return RG_OK;
}

int rg_cuda_prof_begin(rg_cuda_state *st) {
    rg_cuda_prof *p = st->prof;
    if (!p) return -1;
    if (p->n_slots == PROF_SLOTS && flush(st) != RG_OK) return -1;
    int i = p->n_slots++;
    p->slot_key[i] = -1; /* stays -1 (not read) if the op fails before prof_end */
    p->slot_t0[i] = rg_now();
    cudaEventRecord(p->ev[2 * i], st->stream);
    return i;
}

void rg_cuda_prof_end(rg_cuda_state *st, int slot, const char *op, double flops, double bytes, const char *fmt, ...) {
    rg_cuda_prof *p = st->prof;
    if (!p || slot < 0) return;
    cudaEventRecord(p->ev[2 * slot + 1], st->stream);
    char shape[sizeof p->keys[0].shape];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(shape, sizeof shape, fmt, ap);
    va_end(ap);
    int k = 0;
    while (k < p->n_keys && (strcmp(p->keys[k].op, op) || strcmp(p->keys[k].shape, shape))) k++;
    if (k == p->n_keys) {
        if (k == PROF_KEYS) {
            k = PROF_KEYS - 1;
            snprintf(p->keys[k].op, sizeof p->keys[k].op, "(other ops)");
            p->keys[k].shape[0] = 0;
        } else {
            p->n_keys++;
            memset(&p->keys[k], 0, sizeof p->keys[k]);
            snprintf(p->keys[k].op, sizeof p->keys[k].op, "%s", op);
            snprintf(p->keys[k].shape, sizeof p->keys[k].shape, "%s", shape);
        }
    }
    p->slot_key[slot] = k;
    p->keys[k].calls++;
    p->keys[k].host_ms += 1e3 * (rg_now() - p->slot_t0[slot]);
    p->keys[k].flops += flops;
    p->keys[k].bytes += bytes;
}

rg_status rg_cuda_prof_create(rg_cuda_state *st) {
    rg_cuda_prof *p = (rg_cuda_prof *)calloc(1, sizeof *p);
    if (!p) return rg_fail(RG_ERR_OUT_OF_MEMORY, "rg_backend_init: cannot allocate the CUDA profile");
    st->prof = p;
    for (int i = 0; i < 2 * PROF_SLOTS; i++) RG_CUDA_TRY(cudaEventCreate(&p->ev[i]));
    return RG_OK;
}

void rg_cuda_prof_destroy(rg_cuda_state *st) {
    rg_cuda_prof *p = st->prof;
    if (!p) return;
    for (int i = 0; i < 2 * PROF_SLOTS; i++)
        if (p->ev[i]) cudaEventDestroy(p->ev[i]);
    free(p);
    st->prof = NULL;
}

/* ---- the wrapped table ---- */

static const rg_backend_ops *base_ops; /* the normal table, set by rg_cuda_profile_ops */

#define B2 2.0 /* bytes per bf16 */
#define F4 4.0

static rg_status p_reset(rg_backend *be) {
    rg_cuda_state *st = rg_cuda(be);
    RG_TRY(flush(st));
    st->prof->n_keys = 0;
    return RG_OK;
}

static int by_ms(const void *a, const void *b) {
    double x = ((const rg_profile_entry *)a)->ms, y = ((const rg_profile_entry *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

static rg_status p_read(rg_backend *be, rg_profile_entry *out, int cap, int *n) {
    rg_cuda_state *st = rg_cuda(be);
    RG_TRY(flush(st));
    rg_cuda_prof *p = st->prof;
    qsort(p->keys, (size_t)p->n_keys, sizeof p->keys[0], by_ms);
    /* pending slots were all read back by flush, so reordering the keys is safe */
    for (int i = 0; i < p->n_keys && i < cap; i++) out[i] = p->keys[i];
    *n = p->n_keys;
    return RG_OK;
}

static rg_status p_sync(rg_backend *be) {
    RG_TRY(base_ops->sync(be));
    harvest(rg_cuda(be)->prof);
    return RG_OK;
}

static rg_status p_upload(rg_backend *be, void *dst, const void *src, size_t bytes) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->upload(be, dst, src, bytes);
    rg_cuda_prof_end(st, s, "upload (host to device)", 0, (double)bytes, "");
    return r;
}

static rg_status p_download(rg_backend *be, void *dst, const void *src, size_t bytes) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->download(be, dst, src, bytes); /* synchronises */
    rg_cuda_prof_end(st, s, "download (device to host)", 0, (double)bytes, "");
    if (r == RG_OK) r = flush(st);
    return r;
}

/* Attention pairs (query, visible key) summed over heads: its FLOPs are 4 d per pair forward. */
static double attn_flops_fwd(const rg_attn_args *a) {
    const rg_attn_desc *d = &a->desc;
    return rg_attn_flops_forward(d->batch, d->cu_seqlens_q, d->cu_seqlens_k, d->n_heads, d->head_dim, d->causal);
}

static rg_status p_attn_forward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k, const void *v,
                                void *o, float *lse) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->attn_forward(be, a, q, k, v, o, lse);
    rg_cuda_prof_end(st, s, "attn_forward", attn_flops_fwd(a), 0, "h=%d h_kv=%d d=%d%s", a->desc.n_heads,
                     a->desc.n_kv_heads, a->desc.head_dim, a->desc.causal ? " causal" : "");
    return r;
}

static rg_status p_attn_backward(rg_backend *be, const rg_attn_args *a, const void *q, const void *k,
                                 const void *v, const void *o, const float *lse, const void *dout, void *dq,
                                 void *dk, void *dv) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->attn_backward(be, a, q, k, v, o, lse, dout, dq, dk, dv);
    rg_cuda_prof_end(st, s, "attn_backward", 2.5 * attn_flops_fwd(a), 0, "h=%d h_kv=%d d=%d%s", a->desc.n_heads,
                     a->desc.n_kv_heads, a->desc.head_dim, a->desc.causal ? " causal" : "");
    return r;
}

static rg_status p_emb_fwd(rg_backend *be, void *out, const int32_t *tokens, const int32_t *pos, const void *wte,
                           const void *wpe, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->embedding_forward(be, out, tokens, pos, wte, wpe, T, C);
    rg_cuda_prof_end(st, s, "embedding_forward", 0, (double)T * (C * 3 * B2 + 8), "C=%d", C);
    return r;
}

static rg_status p_emb_bwd(rg_backend *be, float *dwte, float *dwpe, const void *dout, const int32_t *tokens,
                           const int32_t *pos, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->embedding_backward(be, dwte, dwpe, dout, tokens, pos, T, C);
    /* dout once, and a read + write of the fp32 rows it touches (at most T of each table) */
    rg_cuda_prof_end(st, s, "embedding_backward", 0, (double)T * (C * B2 + 8), "C=%d", C);
    return r;
}

static rg_status p_ln_fwd(rg_backend *be, void *out, float *mean, float *rstd, const void *inp, const void *w,
                          const void *b, float eps, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->layernorm_forward(be, out, mean, rstd, inp, w, b, eps, T, C);
    rg_cuda_prof_end(st, s, "layernorm_forward", 0, (double)T * (2 * C * B2 + 2 * F4), "C=%d", C);
    return r;
}

static rg_status p_ln_bwd(rg_backend *be, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                          const void *w, const float *mean, const float *rstd, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, T, C);
    rg_cuda_prof_end(st, s, "layernorm_backward", 0, (double)T * (4 * C * B2 + 2 * F4), "C=%d", C);
    return r;
}

static rg_status p_ln_bwd_sum(rg_backend *be, void *dinp, float *dw, float *db, float *ds, const void *dout,
                              const void *inp, const void *w, const float *mean, const float *rstd, int64_t T, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->layernorm_backward_sum(be, dinp, dw, db, ds, dout, inp, w, mean, rstd, T, C);
    rg_cuda_prof_end(st, s, "layernorm_backward_sum", 0, (double)T * (4 * C * B2 + 2 * F4), "C=%d%s", C,
                     ds ? " +dinp sum" : "");
    return r;
}

static rg_status p_gelu_fwd(rg_backend *be, void *out, const void *inp, int64_t n, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->gelu_forward(be, out, inp, n, gelu);
    rg_cuda_prof_end(st, s, "gelu_forward", 0, 2 * B2 * (double)n, "gelu=%d", gelu);
    return r;
}

static rg_status p_gelu_bwd(rg_backend *be, void *dinp, const void *inp, const void *dout, int64_t n, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->gelu_backward(be, dinp, inp, dout, n, gelu);
    rg_cuda_prof_end(st, s, "gelu_backward", 0, 3 * B2 * (double)n, "gelu=%d", gelu);
    return r;
}

static rg_status p_gelu_bwd_dbias(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                  int64_t T, int OC, int gelu) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->gelu_backward_dbias(be, dinp, dbias, inp, dout, T, OC, gelu);
    rg_cuda_prof_end(st, s, "gelu_backward_dbias", 0, 3 * B2 * (double)T * OC, "OC=%d gelu=%d%s", OC, gelu,
                     dbias ? " dbias" : "");
    return r;
}

static rg_status p_add(rg_backend *be, void *out, const void *a, const void *b, int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->add(be, out, a, b, n);
    rg_cuda_prof_end(st, s, "add", 0, 3 * B2 * (double)n, "");
    return r;
}

static rg_status p_xent(rg_backend *be, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                        int32_t ignore, float dloss, int64_t T, int V) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->xent_forward_backward(be, losses, dlogits, logits, targets, ignore, dloss, T, V);
    rg_cuda_prof_end(st, s, "xent_forward_backward", 0, (double)T * ((dlogits ? 2 : 1) * V * B2 + 8), "V=%d%s", V,
                     dlogits ? " +dlogits" : "");
    return r;
}

static rg_status p_convert(rg_backend *be, void *dst, rg_dtype dt, const void *src, rg_dtype sdt, int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->convert(be, dst, dt, src, sdt, n);
    rg_cuda_prof_end(st, s, "convert", 0, (double)n * (rg_dtype_size(dt) + rg_dtype_size(sdt)), "%s <- %s",
                     rg_dtype_name(dt), rg_dtype_name(sdt));
    return r;
}

static rg_status p_zero(rg_backend *be, void *ptr, size_t bytes) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->zero(be, ptr, bytes);
    rg_cuda_prof_end(st, s, "zero", 0, (double)bytes, "");
    return r;
}

static rg_status p_sumsq(rg_backend *be, double *out, const float *g, int64_t n) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->sum_squares(be, out, g, n); /* synchronises */
    rg_cuda_prof_end(st, s, "sum_squares (+ readback)", 0, F4 * (double)n, "");
    return r;
}

static rg_status p_sgd(rg_backend *be, float *param, void *compute, float *mom, const float *grad, int64_t n,
                       float lr, float momentum, float wd, float gs) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->sgd_update(be, param, compute, mom, grad, n, lr, momentum, wd, gs);
    double per = 3 * F4 + (compute ? B2 : 0) + (mom ? 2 * F4 : 0);
    rg_cuda_prof_end(st, s, "sgd_update", 0, per * (double)n, "%s%s", mom ? "momentum" : "plain",
                     compute ? " +bf16 copy" : "");
    return r;
}

static rg_status p_adamw(rg_backend *be, float *param, void *compute, float *m, float *v, const float *grad,
                         int64_t n, float lr, float b1, float b2, float eps, float wd, float gs, int64_t t) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->adamw_update(be, param, compute, m, v, grad, n, lr, b1, b2, eps, wd, gs, t);
    rg_cuda_prof_end(st, s, "adamw_update", 0, (7 * F4 + (compute ? B2 : 0)) * (double)n, "%s",
                     compute ? "+bf16 copy" : "");
    return r;
}

static rg_status p_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                               const void *kc, const void *vc) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->attn_decode(be, a, o, q, kc, vc);
    rg_cuda_prof_end(st, s, "attn_decode", 0, 0, "h=%d h_kv=%d d=%d", a->n_heads, a->n_kv_heads, a->head_dim);
    return r;
}

static rg_status p_attn_decode_append(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                      void *kc, void *vc, const void *k, int32_t sk, const void *v, int32_t sv) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->attn_decode_append(be, a, o, q, kc, vc, k, sk, v, sv);
    rg_cuda_prof_end(st, s, "attn_decode_append", 0, 0, "h=%d h_kv=%d d=%d", a->n_heads, a->n_kv_heads,
                     a->head_dim);
    return r;
}

static rg_status p_kv_write(rg_backend *be, void *kc, void *vc, const void *k, int32_t sk, const void *v, int32_t sv,
                            const int32_t *slots, int64_t T, int32_t row) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->kv_write(be, kc, vc, k, sk, v, sv, slots, T, row);
    rg_cuda_prof_end(st, s, "kv_write", 0, 4 * B2 * (double)T * row, "row=%d", row);
    return r;
}

static rg_status p_gather_rows(rg_backend *be, void *out, const void *inp, const int32_t *rows, int64_t n, int C) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->gather_rows(be, out, inp, rows, n, C);
    rg_cuda_prof_end(st, s, "gather_rows", 0, (double)n * (2 * C * B2 + 4), "C=%d", C);
    return r;
}

static rg_status p_argmax_rows(rg_backend *be, int32_t *out, const void *x, int64_t n, int V) {
    rg_cuda_state *st = rg_cuda(be);
    int s = rg_cuda_prof_begin(st);
    rg_status r = base_ops->argmax_rows(be, out, x, n, V);
    rg_cuda_prof_end(st, s, "argmax_rows", 0, (double)n * (V * B2 + 4), "V=%d", V);
    return r;
}

rg_backend_ops rg_cuda_profile_ops(const rg_backend_ops *base) {
    base_ops = base;
    rg_backend_ops o = *base;
    o.sync = p_sync;
    o.upload = p_upload;
    o.download = p_download;
    o.attn_forward = p_attn_forward;
    o.attn_backward = p_attn_backward;
    o.embedding_forward = p_emb_fwd;
    o.embedding_backward = p_emb_bwd;
    o.layernorm_forward = p_ln_fwd;
    o.layernorm_backward = p_ln_bwd;
    if (base->layernorm_backward_sum) o.layernorm_backward_sum = p_ln_bwd_sum;
    /* matmul_forward, matmul_backward, matmul_forward_residual time their own parts (matmul.cu) */
    o.gelu_forward = p_gelu_fwd;
    o.gelu_backward = p_gelu_bwd;
    if (base->gelu_backward_dbias) o.gelu_backward_dbias = p_gelu_bwd_dbias;
    o.add = p_add;
    o.xent_forward_backward = p_xent;
    o.convert = p_convert;
    o.zero = p_zero;
    o.sum_squares = p_sumsq;
    o.sgd_update = p_sgd;
    o.adamw_update = p_adamw;
    if (base->attn_decode) o.attn_decode = p_attn_decode;
    if (base->kv_write) o.kv_write = p_kv_write;
    if (base->attn_decode_append) o.attn_decode_append = p_attn_decode_append;
    if (base->gather_rows) o.gather_rows = p_gather_rows;
    if (base->argmax_rows) o.argmax_rows = p_argmax_rows;
    o.profile_reset = p_reset;
    o.profile_read = p_read;
    /* Timing each op needs it run on its own: the profile runs without graphs. */
    o.graph_begin = NULL;
    o.graph_end = NULL;
    o.graph_launch = NULL;
    o.graph_free = NULL;
    return o;
}
