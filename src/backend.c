/* backend.c — public backend lifecycle and device memory (ragged.h section 2). */
#include "backend.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"
#include <stdlib.h>

bool rg_backend_available(rg_backend_kind kind) {
    if (kind == RG_BACKEND_CPU) return true;
#ifdef RAGGED_HAVE_CUDA
    if (kind == RG_BACKEND_CUDA) return rg_backend_cuda_device_present();
#endif
    return false;
}

rg_status rg_backend_init(rg_backend_kind kind, int n_threads, rg_backend **out) {
    if (!out) return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_init: out is NULL");
    *out = NULL;
    switch (kind) {
    case RG_BACKEND_CPU: return rg_backend_cpu_create(n_threads, out);
    case RG_BACKEND_CUDA:
#ifdef RAGGED_HAVE_CUDA
        return rg_backend_cuda_create(out);
#else
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_backend_init: this build has no CUDA backend "
                                           "(nvcc was not found or -DRAGGED_CUDA=OFF)");
#endif
    }
    return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_init: unknown backend kind %d", (int)kind);
}

void rg_backend_free(rg_backend *be) {
    if (be) be->ops->destroy(be);
}

const char *rg_backend_name(const rg_backend *be) { return be ? be->ops->name : "(null)"; }

rg_dtype rg_backend_act_dtype(const rg_backend *be) { return be->ops->act_dtype; }

rg_status rg_backend_sync(rg_backend *be) {
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_sync: backend is NULL");
    return be->ops->sync(be);
}

rg_status rg_buffer_alloc(rg_backend *be, size_t bytes, void **out) {
    if (!be || !out) return rg_fail(RG_ERR_INVALID_ARG, "rg_buffer_alloc: backend or out is NULL");
    *out = NULL;
    return be->ops->alloc(be, bytes, out);
}

void rg_buffer_free(rg_backend *be, void *p) {
    if (be && p) be->ops->free(be, p);
}

rg_status rg_buffer_upload(rg_backend *be, void *dst, const void *src, size_t bytes) {
    if (!be || (bytes && (!dst || !src)))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_buffer_upload: NULL backend, dst or src");
    return be->ops->upload(be, dst, src, bytes);
}

rg_status rg_buffer_download(rg_backend *be, void *dst, const void *src, size_t bytes) {
    if (!be || (bytes && (!dst || !src)))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_buffer_download: NULL backend, dst or src");
    return be->ops->download(be, dst, src, bytes);
}

/* f32 <-> dtype conversion goes through a host staging buffer so that every
 * backend only needs raw copies. */
rg_status rg_buffer_upload_f32(rg_backend *be, void *dst, rg_dtype t, const float *src, size_t n) {
    if (t == RG_DTYPE_F32) return rg_buffer_upload(be, dst, src, n * 4);
    if (t != RG_DTYPE_BF16 && t != RG_DTYPE_F16)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_buffer_upload_f32: cannot convert f32 to %s", rg_dtype_name(t));
    uint16_t *tmp;
    RG_TRY(rg_alloc((void **)&tmp, n, 2, "rg_buffer_upload_f32 staging"));
    for (size_t i = 0; i < n; i++) tmp[i] = t == RG_DTYPE_BF16 ? rg_f32_to_bf16(src[i]) : rg_f32_to_f16(src[i]);
    rg_status s = rg_buffer_upload(be, dst, tmp, n * 2);
    rg_free(tmp);
    return s;
}

rg_status rg_buffer_download_f32(rg_backend *be, float *dst, const void *src, rg_dtype t, size_t n) {
    if (t == RG_DTYPE_F32) return rg_buffer_download(be, dst, src, n * 4);
    if (t != RG_DTYPE_BF16 && t != RG_DTYPE_F16)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_buffer_download_f32: cannot convert %s to f32", rg_dtype_name(t));
    uint16_t *tmp;
    RG_TRY(rg_alloc((void **)&tmp, n, 2, "rg_buffer_download_f32 staging"));
    rg_status s = rg_buffer_download(be, tmp, src, n * 2);
    if (s == RG_OK)
        for (size_t i = 0; i < n; i++) dst[i] = t == RG_DTYPE_BF16 ? rg_bf16_to_f32(tmp[i]) : rg_f16_to_f32(tmp[i]);
    rg_free(tmp);
    return s;
}
