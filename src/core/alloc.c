/* alloc.c — host allocation (see alloc.h). */
#include "core/alloc.h"
#include "core/status.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool rg_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

rg_status rg_alloc(void **out, size_t n, size_t size, const char *what) {
    size_t bytes;
    *out = NULL;
    if (!rg_mul_ok(n, size, &bytes) || bytes > SIZE_MAX - 64)
        return rg_fail(RG_ERR_OVERFLOW, "%s: %zu x %zu bytes overflows", what, n, size);
    if (bytes == 0) bytes = 1;
    bytes = (bytes + 63) & ~(size_t)63; /* aligned_alloc wants a multiple of the alignment */
    void *p = aligned_alloc(64, bytes);
    if (!p) return rg_fail(RG_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what, bytes);
    *out = p;
    return RG_OK;
}

rg_status rg_calloc(void **out, size_t n, size_t size, const char *what) {
    RG_TRY(rg_alloc(out, n, size, what));
    memset(*out, 0, n * size);
    return RG_OK;
}

void rg_free(void *p) { free(p); }
