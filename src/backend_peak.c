/* backend_peak.c — what benchmarks ask of a backend (ragged.h section 2): its
 * thread count and its measured dense matmul rate, the "peak" that useful
 * FLOP/s are compared with. */
#include "backend.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/timer.h"
#include <stdlib.h>

enum { PEAK_MIN_RUNS = 3, PEAK_MAX_RUNS = 25, PEAK_MAX_N = 65536 };
#define PEAK_MIN_SECONDS 0.25

int rg_backend_n_threads(const rg_backend *be) { return be ? be->n_threads : 0; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One product out = a @ b^T of (n, n) matrices, waited for. */
static rg_status run_once(rg_backend *be, void *out, const void *a, const void *b, int n, double *seconds) {
    double t0 = rg_now();
    RG_TRY(be->ops->matmul_forward(be, out, NULL, a, b, NULL, n, n, n, RG_GELU_NONE));
    RG_TRY(rg_backend_sync(be));
    *seconds = rg_now() - t0;
    return RG_OK;
}

rg_status rg_backend_measure_peak(rg_backend *be, int n, double *flops_per_s) {
    if (!be) return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_measure_peak: backend is NULL");
    if (!flops_per_s) return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_measure_peak: flops_per_s is NULL");
    if (n < 1 || n > PEAK_MAX_N)
        return rg_fail(RG_ERR_INVALID_ARG, "rg_backend_measure_peak: n = %d, expected 1..%d", n, PEAK_MAX_N);
    if (!be->ops->matmul_forward)
        return rg_fail(RG_ERR_UNSUPPORTED, "rg_backend_measure_peak: the %s backend has no matmul op yet",
                       be->ops->name);
    size_t elems, bytes;
    if (!rg_mul_ok((size_t)n, (size_t)n, &elems) || !rg_mul_ok(elems, rg_dtype_size(be->ops->act_dtype), &bytes))
        return rg_fail(RG_ERR_OVERFLOW, "rg_backend_measure_peak: an (%d, %d) matrix overflows size_t", n, n);

    float *host = NULL;
    void *a = NULL, *b = NULL, *out = NULL;
    rg_status s = rg_alloc((void **)&host, elems, sizeof(float), "rg_backend_measure_peak: inputs");
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, &a);
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, &b);
    if (s == RG_OK) s = rg_buffer_alloc(be, bytes, &out);
    /* Random inputs: zeros could take a shortcut in some BLAS paths and
     * denormals would slow it; uniform [-1, 1) avoids both. */
    rg_rng rng;
    rg_rng_seed(&rng, 0x5eedull + (uint64_t)n);
    if (s == RG_OK) { rg_rng_fill_uniform(&rng, host, elems, -1.0f, 1.0f); s = rg_buffer_upload_f32(be, a, be->ops->act_dtype, host, elems); }
    if (s == RG_OK) { rg_rng_fill_uniform(&rng, host, elems, -1.0f, 1.0f); s = rg_buffer_upload_f32(be, b, be->ops->act_dtype, host, elems); }

    double times[PEAK_MAX_RUNS], total = 0, t;
    int runs = 0;
    if (s == RG_OK) s = run_once(be, out, a, b, n, &t);   /* warm-up: thread pools, page faults, autotuning */
    while (s == RG_OK && runs < PEAK_MAX_RUNS && (runs < PEAK_MIN_RUNS || total < PEAK_MIN_SECONDS)) {
        s = run_once(be, out, a, b, n, &t);
        if (s == RG_OK) { times[runs++] = t; total += t; }
    }
    rg_buffer_free(be, out);
    rg_buffer_free(be, b);
    rg_buffer_free(be, a);
    rg_free(host);
    if (s != RG_OK) return s;

    qsort(times, (size_t)runs, sizeof times[0], cmp_double);
    double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    if (median <= 0) median = 1e-9;   /* a clock coarser than the product: report a finite rate */
    *flops_per_s = 2.0 * (double)n * (double)n * (double)n / median;
    return RG_OK;
}
