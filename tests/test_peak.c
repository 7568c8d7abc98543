/* test_peak.c — rg_backend_measure_peak and rg_backend_n_threads: argument
 * errors, the "no matmul op" path, the run count and median through a fake
 * matmul op of known minimum duration, failures propagated with nothing
 * written, and a real measurement with a small n when the backend has the op. */
#include "backend.h"
#include "check.h"
#include "core/status.h"
#include "core/timer.h"
#include "ragged.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The fake matmul: checks its arguments, busy-waits `busy` seconds, fails on call `fail_at`. */
static int calls, fail_at, bad_args, expect_n;
static double busy;
static bool saw_nonzero, saw_out_of_range;

static rg_status fake_matmul(rg_backend *be, void *out, void *pre_gelu, const void *inp, const void *weight,
                             const void *bias, int64_t T, int C, int OC, int gelu) {
    (void)be;
    calls++;
    if (T != expect_n || C != expect_n || OC != expect_n || gelu != RG_GELU_NONE || bias || pre_gelu || !out ||
        !inp || !weight || inp == weight || out == inp || out == weight)
        bad_args++;
    const float *a = inp, *w = weight;
    for (int64_t i = 0; i < (int64_t)expect_n * expect_n; i++) {
        saw_nonzero |= a[i] != 0 && w[i] != 0;
        saw_out_of_range |= !(fabsf(a[i]) <= 1) || !(fabsf(w[i]) <= 1);
    }
    if (calls == fail_at) return rg_fail(RG_ERR_BACKEND, "fake matmul failed on call %d", calls);
    double t0 = rg_now();
    while (rg_now() - t0 < busy) {}
    return RG_OK;
}

static void reset_fake(int n, double seconds, int fail_call) {
    calls = bad_args = 0;
    expect_n = n;
    busy = seconds;
    fail_at = fail_call;
    saw_nonzero = saw_out_of_range = false;
}

int main(void) {
    rg_rng rng;
    rg_test_init("test_peak", &rng);

    rg_backend *cpu = NULL;
    CHECK(rg_backend_init(RG_BACKEND_CPU, 0, &cpu) == RG_OK, "cpu backend: %s", rg_last_error());
    if (!cpu) return rg_test_finish();

    /* threads */
    CHECK(rg_backend_n_threads(cpu) >= 1, "cpu runs on >= 1 thread (got %d)", rg_backend_n_threads(cpu));
    CHECK(rg_backend_n_threads(NULL) == 0, "NULL backend has 0 threads");

    /* argument errors leave the output untouched */
    double f = 123.0;
    CHECK(rg_backend_measure_peak(NULL, 8, &f) == RG_ERR_INVALID_ARG && f == 123.0, "NULL backend");
    CHECK(strstr(rg_last_error(), "backend") != NULL, "message names the backend: '%s'", rg_last_error());
    CHECK(rg_backend_measure_peak(cpu, 8, NULL) == RG_ERR_INVALID_ARG, "NULL output");
    CHECK(strstr(rg_last_error(), "flops_per_s") != NULL, "message names flops_per_s: '%s'", rg_last_error());
    int bad_n[] = {0, -1, -1000, 65537, 1 << 30};
    for (size_t i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
        f = 123.0;
        CHECK(rg_backend_measure_peak(cpu, bad_n[i], &f) == RG_ERR_INVALID_ARG && f == 123.0, "n = %d rejected", bad_n[i]);
        char want[32];
        snprintf(want, sizeof want, "n = %d", bad_n[i]);
        CHECK(strstr(rg_last_error(), want) != NULL, "message says '%s': '%s'", want, rg_last_error());
    }

    /* A backend with no matmul op: unsupported, named, nothing written. */
    rg_backend_ops ops = *cpu->ops;
    rg_backend fake = *cpu;
    fake.ops = &ops;
    ops.matmul_forward = NULL;
    f = 123.0;
    CHECK(rg_backend_measure_peak(&fake, 16, &f) == RG_ERR_UNSUPPORTED && f == 123.0, "no matmul op: unsupported");
    CHECK(strstr(rg_last_error(), "matmul") && strstr(rg_last_error(), ops.name), "message: '%s'", rg_last_error());

    /* Fake op of known minimum duration. Each run takes >= busy seconds, so
     * the median does too: the rate is at most 2 n^3 / busy. With 0.1 s runs
     * the third run passes the 0.25 s budget: exactly 1 warm-up + 3 runs. */
    ops.matmul_forward = fake_matmul;
    int n = 17 + (int)rg_rng_below(&rng, 16);   /* off any tile size */
    reset_fake(n, 0.1, 0);
    f = 0;
    CHECK(rg_backend_measure_peak(&fake, n, &f) == RG_OK, "fake peak: %s", rg_last_error());
    CHECK(calls == 4, "warm-up + 3 timed runs when each takes 0.1 s (got %d calls)", calls);
    CHECK(bad_args == 0, "matmul called as an (n, n) @ (n, n)^T product without bias or GELU");
    CHECK(saw_nonzero && !saw_out_of_range, "inputs random in [-1, 1]");
    double bound = 2.0 * n * n * n / 0.1;
    CHECK(isfinite(f) && f > 0 && f <= bound * (1 + 1e-9), "rate %.4g within (0, %.4g]", f, bound);

    /* Short runs: more runs, never more than 1 + 25 calls. */
    reset_fake(n, 0.002, 0);
    CHECK(rg_backend_measure_peak(&fake, n, &f) == RG_OK, "fake peak, short runs: %s", rg_last_error());
    CHECK(calls >= 4 && calls <= 26, "between 4 and 26 calls (got %d)", calls);
    bound = 2.0 * n * n * n / 0.002;
    CHECK(isfinite(f) && f > 0 && f <= bound * (1 + 1e-9), "rate %.4g within (0, %.4g]", f, bound);

    /* A failing op: its status comes back, the output is untouched (ASan checks that nothing leaks). */
    for (int at = 1; at <= 3; at++) {
        reset_fake(n, 0, at);
        f = 123.0;
        CHECK(rg_backend_measure_peak(&fake, n, &f) == RG_ERR_BACKEND && f == 123.0, "failure on call %d returned", at);
        CHECK(strstr(rg_last_error(), "fake matmul failed") != NULL, "its message kept: '%s'", rg_last_error());
        CHECK(calls == at, "stopped at the failing call (%d calls)", calls);
    }

    /* The real CPU op, when this build has it (branch cpuops). */
    if (cpu->ops->matmul_forward) {
        int sizes[] = {1, 33, rg_test_quick() ? 64 : 256};
        for (int i = 0; i < 3; i++) {
            f = 0;
            CHECK(rg_backend_measure_peak(cpu, sizes[i], &f) == RG_OK, "cpu peak n=%d: %s", sizes[i], rg_last_error());
            CHECK(isfinite(f) && f > 0, "cpu peak n=%d: %.3g FLOP/s finite and positive", sizes[i], f);
        }
        printf("cpu sgemm rate at n=%d: %.1f GFLOP/s (informational)\n", sizes[2], f / 1e9);
    } else {
        f = 123.0;
        CHECK(rg_backend_measure_peak(cpu, 16, &f) == RG_ERR_UNSUPPORTED && f == 123.0,
              "cpu without matmul op: unsupported");
        printf("the cpu backend has no matmul op yet: real measurement not tested\n");
    }
    rg_backend_free(cpu);

    /* CUDA, when present: works or says it cannot. */
    if (rg_backend_available(RG_BACKEND_CUDA)) {
        rg_backend *gpu = NULL;
        if (rg_backend_init(RG_BACKEND_CUDA, 0, &gpu) == RG_OK) {
            rg_status s = rg_backend_measure_peak(gpu, 256, &f);
            CHECK(s == RG_OK || s == RG_ERR_UNSUPPORTED, "cuda peak: %s", rg_last_error());
            if (s == RG_OK) CHECK(isfinite(f) && f > 0, "cuda peak finite and positive");
            rg_backend_free(gpu);
        }
    }
    return rg_test_finish();
}
