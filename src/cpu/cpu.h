/* cpu.h — the CPU (reference) backend's ops, one file per op family:
 *   attention_ref.c    plain-loop attention with optional mask (the definition of right)
 *   attention_flash.c  tiled online-softmax attention, forward and backward (OpenMP)
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

/* Backward schedule of the flash kernel: 0 picks (default), 1 forces the
 * single pass, 2 the two passes. Tests set it to cover both; not thread-safe. */
extern int rg_cpu_flash_bwd_mode;

#endif
