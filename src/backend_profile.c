/* backend_profile.c — the public per-op profile (ragged.h section 2): a thin
 * layer over the backend's profile ops, present only while it profiles. */
#include "backend.h"
#include "core/status.h"

bool rg_backend_profiling(const rg_backend *be) { return be && be->ops->profile_read; }

rg_status rg_backend_profile_reset(rg_backend *be) {
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_profile_reset: backend is NULL");
    if (!be->ops->profile_reset)
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_backend_profile_reset: the %s backend is not profiling "
                       "(CUDA profiles when RG_PROFILE=1 is set before rg_backend_init)", be->ops->name);
    return be->ops->profile_reset(be);
}

rg_status rg_backend_profile_read(rg_backend *be, rg_profile_entry *out, int cap, int *n) {
    if (!be || !n || cap < 0 || (cap > 0 && !out))
        return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_profile_read: NULL backend or n, cap = %d (expected >= 0, "
                       "out not NULL when cap > 0)", cap);
    if (!be->ops->profile_read)
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_backend_profile_read: the %s backend is not profiling "
                       "(CUDA profiles when RG_PROFILE=1 is set before rg_backend_init)", be->ops->name);
    return be->ops->profile_read(be, out, cap, n);
}
