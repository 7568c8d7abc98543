/* backend_bandwidth.c — a backend's measured memory bandwidth (ragged.h
 * section 2): STREAM's "add" (two reads, one write per element) through the
 * add op, the ceiling that generation's decode floor divides by. */
#include "backend.h"
#include "core/status.h"
#include "core/timer.h"
#include <stdlib.h>

enum { BW_MIN_RUNS = 3, BW_MAX_RUNS = 25 };
#define BW_MIN_SECONDS 0.25

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static rg_status run_once(rg_backend *be, void *out, const void *a, const void *b, int64_t n, double *seconds) {
    double t0 = rg_now();
    RG_TRY(be->ops->add(be, out, a, b, n));
    RG_TRY(rg_backend_sync(be));
    *seconds = rg_now() - t0;
    return RG_OK;
}

rg_status rg_backend_measure_bandwidth(rg_backend *be, size_t bytes, double *bytes_per_s) {
    const char *fn = "rg_backend_measure_bandwidth";
    if (!be || !bytes_per_s) return rg_fail(RG_ERR_INVALID_ARG, "%s: backend or bytes_per_s is NULL", fn);
    if (bytes < ((size_t)1 << 20) || bytes > ((size_t)16 << 30))
        return rg_fail(RG_ERR_INVALID_ARG, "%s: bytes = %zu, expected 1 MiB .. 16 GiB", fn, bytes);
    if (!be->ops->add || !be->ops->zero)
        return rg_fail(RG_ERR_UNSUPPORTED, "%s: the %s backend has no add op", fn, be->ops->name);
    int64_t n = (int64_t)(bytes / rg_dtype_size(be->ops->act_dtype));
    size_t used = (size_t)n * rg_dtype_size(be->ops->act_dtype);
    void *a = NULL, *b = NULL, *out = NULL;
    rg_status s = rg_buffer_alloc(be, used, &a);
    if (s == RG_OK) s = rg_buffer_alloc(be, used, &b);
    if (s == RG_OK) s = rg_buffer_alloc(be, used, &out);
    /* Zeros are fine for an add (no data-dependent shortcut) and touch every page first. */
    if (s == RG_OK) s = be->ops->zero(be, a, used);
    if (s == RG_OK) s = be->ops->zero(be, b, used);
    if (s == RG_OK) s = be->ops->zero(be, out, used);
    double times[BW_MAX_RUNS], total = 0, t;
    int runs = 0;
    if (s == RG_OK) s = run_once(be, out, a, b, n, &t);
    while (s == RG_OK && runs < BW_MAX_RUNS && (runs < BW_MIN_RUNS || total < BW_MIN_SECONDS)) {
        s = run_once(be, out, a, b, n, &t);
        if (s == RG_OK) { times[runs++] = t; total += t; }
    }
    rg_buffer_free(be, out);
    rg_buffer_free(be, b);
    rg_buffer_free(be, a);
    if (s != RG_OK) return s;
    qsort(times, (size_t)runs, sizeof times[0], cmp_double);
    double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    if (median <= 0) median = 1e-9;
    *bytes_per_s = 3.0 * (double)used / median;
    return RG_OK;
}
