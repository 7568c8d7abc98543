/* backend_cpu.c — the CPU backend's table: host memory, dispatch to the
 * reference or flash attention kernels, and the model ops (cpu.h). */
#include "cpu/cpu.h"
#include "core/alloc.h"
#include "core/status.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The backend's state: one scratch buffer grown on demand, so that ops
 * needing temporary space (decode attention) stop allocating once a step of
 * the largest size has run. */
typedef struct cpu_state {
    void *scratch;
    size_t scratch_bytes;
} cpu_state;

rg_status rg_cpu_scratch(rg_backend *be, size_t bytes, void **out) {
    cpu_state *st = be->impl;
    if (bytes > st->scratch_bytes) {
        void *p;
        RG_TRY(rg_alloc(&p, bytes, 1, "CPU backend scratch"));
        rg_free(st->scratch);
        st->scratch = p;
        st->scratch_bytes = bytes;
    }
    *out = st->scratch;
    return RG_OK;
}

static void cpu_destroy(rg_backend *be) {
    cpu_state *st = be->impl;
    if (st) rg_free(st->scratch);
    free(st);
    free(be);
}

static rg_status cpu_alloc(rg_backend *be, size_t bytes, void **out) {
    (void)be;
    return rg_alloc(out, bytes, 1, "cpu buffer");
}

static void cpu_free(rg_backend *be, void *p) { (void)be; rg_free(p); }

static rg_status cpu_copy(rg_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return RG_OK;
}

static rg_status cpu_sync(rg_backend *be) { (void)be; return RG_OK; }

static rg_status cpu_attn_forward(rg_backend *be, const rg_attn_args *a, const void *q,
                                  const void *k, const void *v, void *o, float *lse) {
    (void)be;
    if (a->desc.algo == RG_ATTN_REFERENCE) return rg_cpu_attn_forward_ref(a, q, k, v, o, lse);
    return rg_cpu_attn_forward_flash(a, q, k, v, o, lse);
}

static rg_status cpu_attn_backward(rg_backend *be, const rg_attn_args *a, const void *q,
                                   const void *k, const void *v, const void *o, const float *lse,
                                   const void *dout, void *dq, void *dk, void *dv) {
    (void)be;
    if (a->desc.algo == RG_ATTN_REFERENCE)
        return rg_cpu_attn_backward_ref(a, q, k, v, o, lse, dout, dq, dk, dv);
    return rg_cpu_attn_backward_flash(a, q, k, v, o, lse, dout, dq, dk, dv);
}

static const rg_backend_ops cpu_ops = {
    .name = "cpu",
    .act_dtype = RG_DTYPE_F32,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .attn_forward = cpu_attn_forward,
    .attn_backward = cpu_attn_backward,
    .embedding_forward = rg_cpu_embedding_forward,
    .embedding_backward = rg_cpu_embedding_backward,
    .layernorm_forward = rg_cpu_layernorm_forward,
    .layernorm_backward = rg_cpu_layernorm_backward,
    .matmul_forward = rg_cpu_matmul_forward,
    .matmul_backward = rg_cpu_matmul_backward,
    .gelu_forward = rg_cpu_gelu_forward,
    .gelu_backward = rg_cpu_gelu_backward,
    .add = rg_cpu_add,
    .xent_forward_backward = rg_cpu_xent_forward_backward,
    .convert = rg_cpu_convert,
    .zero = rg_cpu_zero,
    .sum_squares = rg_cpu_sum_squares,
    .sgd_update = rg_cpu_sgd_update,
    .adamw_update = rg_cpu_adamw_update,
    .attn_decode = rg_cpu_attn_decode,
    .kv_write = rg_cpu_kv_write,
    .attn_decode_append = rg_cpu_attn_decode_append,
    .gather_rows = rg_cpu_gather_rows,
    .argmax_rows = rg_cpu_argmax_rows,
    .matmul_forward_residual = rg_cpu_matmul_forward_residual,
    .gelu_backward_dbias = rg_cpu_gelu_backward_dbias,
    .layernorm_backward_sum = rg_cpu_layernorm_backward_sum,
    .linear_infer = rg_cpu_linear_infer,
};

rg_status rg_backend_cpu_create(int n_threads, rg_backend **out) {
    rg_backend *be = calloc(1, sizeof *be);
    if (!be) return rg_fail(RG_ERR_OUT_OF_MEMORY, "rg_backend_init: cannot allocate the CPU backend");
    cpu_state *st = calloc(1, sizeof *st);
    if (!st) {
        free(be);
        return rg_fail(RG_ERR_OUT_OF_MEMORY, "rg_backend_init: cannot allocate the CPU backend");
    }
    be->impl = st;
    be->ops = &cpu_ops;
    be->kind = RG_BACKEND_CPU;
#ifdef _OPENMP
    if (n_threads > 0) omp_set_num_threads(n_threads);
    be->n_threads = omp_get_max_threads();
#else
    (void)n_threads;
    be->n_threads = 1;
#endif
    *out = be;
    return RG_OK;
}
