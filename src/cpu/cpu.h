/* cpu.h — the CPU (reference) backend's ops, one file per op family:
 *   attention_ref.c    plain-loop attention with optional mask (the definition of right)
 *   attention_flash.c  tiled online-softmax attention, forward and backward (OpenMP)
 *   attention_decode.c decode attention over a paged KV cache (split over the KV length) and its writes
 *   linear_infer.c     the inference projection (LN, matmul, GELU, residual composed)
 *   gather.c           row gather (the rows whose logits generation needs), row argmax
 *   embedding.c layernorm.c matmul.c gelu.c add.c xent.c optimizer.c memory.c
 *                      the model ops of rg_backend_ops (signatures and conventions there)
 * All tensors are float32 in host memory. */
#ifndef RG_CPU_H
#define RG_CPU_H
#include "backend.h"

/* bytes of scratch owned by the backend (grown, never shrunk; contents not
 * kept between calls); valid until the next call. One op at a time. */
rg_status rg_cpu_scratch(rg_backend *be, size_t bytes, void **out);

rg_status rg_cpu_attn_forward_ref(const rg_attn_args *a, const float *q, const float *k,
                                  const float *v, float *o, float *lse);
rg_status rg_cpu_attn_backward_ref(const rg_attn_args *a, const float *q, const float *k,
                                   const float *v, const float *o, const float *lse,
                                   const float *dout, float *dq, float *dk, float *dv);
rg_status rg_cpu_attn_forward_flash(const rg_attn_args *a, const float *q, const float *k,
                                    const float *v, float *o, float *lse);
rg_status rg_cpu_attn_backward_flash(const rg_attn_args *a, const float *q, const float *k,
                                     const float *v, const float *o, const float *lse,
                                     const float *dout, float *dq, float *dk, float *dv);

/* ---- model ops: exactly the signatures of rg_backend_ops (backend.h), so the
 * table points at them; "act" pointers are float*. Every reduction runs in a
 * fixed order, so results are bit-identical run to run and, apart from the
 * BLAS calls (matmul), do not depend on the thread count either. */
rg_status rg_cpu_embedding_forward(rg_backend *be, void *out, const int32_t *tokens, const int32_t *pos,
                                   const void *wte, const void *wpe, int64_t T, int C);
rg_status rg_cpu_embedding_backward(rg_backend *be, float *dwte, float *dwpe, const void *dout,
                                    const int32_t *tokens, const int32_t *pos, int64_t T, int C);
rg_status rg_cpu_layernorm_forward(rg_backend *be, void *out, float *mean, float *rstd, const void *inp,
                                   const void *weight, const void *bias, float eps, int64_t T, int C);
rg_status rg_cpu_layernorm_backward(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                    const void *dout, const void *inp, const void *weight,
                                    const float *mean, const float *rstd, int64_t T, int C);
rg_status rg_cpu_matmul_forward(rg_backend *be, void *out, void *pre_gelu, const void *inp,
                                const void *weight, const void *bias, int64_t T, int C, int OC, int gelu);
rg_status rg_cpu_matmul_backward(rg_backend *be, void *dinp, float *dweight, float *dbias,
                                 const void *dout, const void *inp, const void *weight,
                                 int64_t T, int C, int OC);
rg_status rg_cpu_gelu_forward(rg_backend *be, void *out, const void *inp, int64_t n, int gelu);
rg_status rg_cpu_gelu_backward(rg_backend *be, void *dinp, const void *inp, const void *dout,
                               int64_t n, int gelu);
rg_status rg_cpu_add(rg_backend *be, void *out, const void *a, const void *b, int64_t n);
rg_status rg_cpu_xent_forward_backward(rg_backend *be, float *losses, void *dlogits, const void *logits,
                                       const int32_t *targets, int32_t ignore_index, float dloss,
                                       int64_t T, int V);
rg_status rg_cpu_convert(rg_backend *be, void *dst, rg_dtype dst_dtype, const void *src,
                         rg_dtype src_dtype, int64_t n);
rg_status rg_cpu_zero(rg_backend *be, void *p, size_t bytes);
rg_status rg_cpu_sum_squares(rg_backend *be, double *out_host, const float *g, int64_t n);
rg_status rg_cpu_sgd_update(rg_backend *be, float *param, void *compute, float *momentum_buf,
                            const float *grad, int64_t n, float lr, float momentum,
                            float weight_decay, float grad_scale);
rg_status rg_cpu_adamw_update(rg_backend *be, float *param, void *compute, float *m, float *v,
                              const float *grad, int64_t n, float lr, float beta1, float beta2,
                              float eps, float weight_decay, float grad_scale, int64_t t);

rg_status rg_cpu_matmul_forward_residual(rg_backend *be, void *out, const void *inp, const void *weight,
                                         const void *bias, const void *residual, int64_t T, int C, int OC);
rg_status rg_cpu_gelu_backward_dbias(rg_backend *be, void *dinp, float *dbias, const void *inp, const void *dout,
                                     int64_t T, int OC, int gelu);
rg_status rg_cpu_layernorm_backward_sum(rg_backend *be, void *dinp, float *dweight, float *dbias, float *dinp_sum,
                                        const void *dout, const void *inp, const void *weight, const float *mean,
                                        const float *rstd, int64_t T, int C);
/* dbias (OC) += sum_t dout (T,OC), in double, tokens in order (matmul.c). */
void rg_cpu_bias_grad(float *dbias, const float *dout, int64_t T, int OC);

/* Scalar GELU and its derivative (gelu = RG_GELU_ERF or RG_GELU_TANH): the
 * plain definition (libm erfcf / expf), used for tanh and by tests. */
float rg_cpu_gelu(float x, int gelu);
float rg_cpu_gelu_grad(float x, int gelu);
/* Vectorised exact (erf) GELU over n floats, a few ulps from the true value
 * (gelu.c): out = gelu(inp); dinp = dout * gelu'(inp). out may equal inp,
 * dinp may equal dout. The hot loops (gelu.c, matmul.c's epilogue) use these. */
void rg_cpu_gelu_erf_span(float *out, const float *inp, int64_t n);
void rg_cpu_gelu_erf_grad_span(float *dinp, const float *inp, const float *dout, int64_t n);

/* Channel tiles for reductions over tokens (dweight, dbias, embedding
 * backward): each tile of RG_CPU_CTILE channels is owned by one thread and
 * summed over tokens in ascending order, so no races and no thread-count
 * dependence. */
#define RG_CPU_CTILE 32
rg_status rg_cpu_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                             const void *k_cache, const void *v_cache);
rg_status rg_cpu_kv_write(rg_backend *be, void *k_cache, void *v_cache, const void *k, int32_t stride_k,
                          const void *v, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row);
/* The reference of attn_decode_append: the new rows' slots from the tables,
 * then rg_cpu_kv_write's copy and rg_cpu_attn_decode. */
rg_status rg_cpu_attn_decode_append(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                                    void *k_cache, void *v_cache, const void *k, int32_t stride_k, const void *v,
                                    int32_t stride_v);
rg_status rg_cpu_gather_rows(rg_backend *be, void *out, const void *inp, const int32_t *rows, int64_t n, int C);
rg_status rg_cpu_argmax_rows(rg_backend *be, int32_t *out, const void *x, int64_t n, int V);

/* out (T,OC) = act(LN(inp) @ weight^T + bias) + residual (linear_infer.c): the
 * composition of layernorm, matmul and add, the reference of the fused op. */
rg_status rg_cpu_linear_infer(rg_backend *be, void *out, const void *inp, const void *ln_w, const void *ln_b,
                              float eps, const void *weight, const void *bias, const void *residual, int64_t T,
                              int C, int OC, int gelu);

/* Backward schedule of the flash kernel: 0 picks (default), 1 forces the
 * single pass, 2 the two passes. Tests set it to cover both; not thread-safe. */
extern int rg_cpu_flash_bwd_mode;

#endif
