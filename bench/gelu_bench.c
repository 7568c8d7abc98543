/* gelu_bench.c — throughput of the CPU exact GELU, forward and backward: the
 * vector kernels (rg_cpu_gelu_forward/backward) against the scalar libm form they
 * replaced (the same OpenMP loop over rg_cpu_gelu / rg_cpu_gelu_grad).
 * Not built by CMake; against a CPU-only build of the library (a CUDA build's
 * libragged.a needs the CUDA libraries as well):
 *   cmake -S . -B build-cpu -DRAGGED_CUDA=OFF && cmake --build build-cpu -j2 --target ragged
 *   cc -O3 -march=native -fopenmp -std=c11 -Iinclude -Isrc bench/gelu_bench.c build-cpu/libragged.a \
 *      -lopenblas -lm -o build-cpu/gelu_bench && build-cpu/gelu_bench [n] [reps] */
#include <stdio.h>
#include <stdlib.h>
#include "core/rng.h"
#include "core/timer.h"
#include "cpu/cpu.h"

static void scalar_fwd(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = rg_cpu_gelu(inp[i], RG_GELU_ERF);
}

static void scalar_bwd(float *dinp, const float *inp, const float *dout, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * rg_cpu_gelu_grad(inp[i], RG_GELU_ERF);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 8 << 20;   /* (T, 4C) = (8192, 1024) */
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *d = malloc(n * sizeof *d);
    if (!x || !y || !d) return 1;
    rg_rng rng;
    rg_rng_seed(&rng, 1);
    for (int64_t i = 0; i < n; i++) x[i] = (float)rg_rng_normal(&rng) * 1.5f;   /* pre-activations ~ N(0, 1.5^2) */
    rg_rng_fill_uniform(&rng, d, n, -1.0f, 1.0f);
    const char *names[4] = {"forward scalar (libm erfcf)", "forward vector", "backward scalar (libm)", "backward vector"};
    printf("n = %lld floats, %d reps, median (min .. max) in Gelem/s\n", (long long)n, reps);
    for (int k = 0; k < 4; k++) {
        double t[64];
        for (int r = 0; r < reps && r < 64; r++) {
            double t0 = rg_now();
            if (k == 0) scalar_fwd(y, x, n);
            if (k == 1) rg_cpu_gelu_forward(NULL, y, x, n, RG_GELU_ERF);
            if (k == 2) scalar_bwd(y, x, d, n);
            if (k == 3) rg_cpu_gelu_backward(NULL, y, x, d, n, RG_GELU_ERF);
            t[r] = rg_now() - t0;
        }
        qsort(t, reps, sizeof *t, cmp);
        printf("%-28s %7.3f (%.3f .. %.3f)\n", names[k], n / t[reps / 2] * 1e-9, n / t[reps - 1] * 1e-9,
               n / t[0] * 1e-9);
    }
    free(x), free(y), free(d);
    return 0;
}
