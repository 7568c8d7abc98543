/* placeholder */
#include "cpu/cpu.h"
#include "core/status.h"
rg_status rg_cpu_attn_forward_ref(const rg_attn_args *a, const float *q, const float *k, const float *v, float *o, float *lse) { return rg_fail(RG_ERR_UNSUPPORTED, "todo"); }
rg_status rg_cpu_attn_backward_ref(const rg_attn_args *a, const float *q, const float *k, const float *v, const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv) { return rg_fail(RG_ERR_UNSUPPORTED, "todo"); }
rg_status rg_cpu_attn_forward_flash(const rg_attn_args *a, const float *q, const float *k, const float *v, float *o, float *lse) { return rg_fail(RG_ERR_UNSUPPORTED, "todo"); }
rg_status rg_cpu_attn_backward_flash(const rg_attn_args *a, const float *q, const float *k, const float *v, const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv) { return rg_fail(RG_ERR_UNSUPPORTED, "todo"); }
