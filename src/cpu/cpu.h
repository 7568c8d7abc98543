/* cpu.h — the CPU (reference) backend's ops, one file per op family:
 *   attention_ref.c    plain-loop attention with optional mask (the definition of right)
 *   attention_flash.c  tiled online-softmax attention, forward and backward (OpenMP)
 *   attention_decode.c decode attention over a paged KV cache (split over the KV length) and its writes
 * All tensors are float32 in host memory. */
#ifndef RG_CPU_H
#define RG_CPU_H
#include "backend.h"

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

rg_status rg_cpu_attn_decode(rg_backend *be, const rg_attn_decode_args *a, void *o, const void *q,
                             const void *k_cache, const void *v_cache);
rg_status rg_cpu_kv_write(rg_backend *be, void *k_cache, void *v_cache, const void *k, int32_t stride_k,
                          const void *v, int32_t stride_v, const int32_t *slots, int64_t T, int32_t row);

#endif
