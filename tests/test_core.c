/* test_core.c — status strings, last error, allocation overflow, RNG, dtypes. */
#include "check.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "core/status.h"
#include "ragged.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

int main(void) {
    rg_rng rng;
    rg_test_init("test_core", &rng);

    for (int s = RG_OK; s <= RG_ERR_EXHAUSTED; s++)
        CHECK(strcmp(rg_status_str((rg_status)s), "unknown status") != 0, "status %d has a name", s);
    CHECK(rg_fail(RG_ERR_IO, "file %s", "x.bin") == RG_ERR_IO, "rg_fail returns its status");
    CHECK(strcmp(rg_last_error(), "file x.bin") == 0, "last error is the message: '%s'", rg_last_error());

    void *p = (void *)1;
    CHECK(rg_alloc(&p, SIZE_MAX / 2, 4, "huge") == RG_ERR_OVERFLOW && p == NULL, "overflow is an error");
    CHECK(strstr(rg_last_error(), "huge") != NULL, "overflow message names the buffer");
    CHECK(rg_alloc(&p, 10, 3, "small") == RG_OK && ((uintptr_t)p & 63) == 0, "aligned allocation");
    rg_free(p);

    /* RNG: uniform mean and range, below() in range, determinism. */
    double sum = 0;
    bool in_range = true;
    for (int i = 0; i < 100000; i++) {
        double u = rg_rng_uniform(&rng);
        in_range &= u >= 0 && u < 1;
        sum += u;
        in_range &= rg_rng_below(&rng, 7) < 7;
    }
    CHECK(in_range, "rng values in range");
    CHECK(fabs(sum / 100000 - 0.5) < 0.01, "uniform mean %.4f near 0.5", sum / 100000);
    rg_rng a, b;
    rg_rng_seed(&a, 42);
    rg_rng_seed(&b, 42);
    CHECK(rg_rng_u64(&a) == rg_rng_u64(&b), "same seed, same stream");

    /* bf16/f16 round trips: exact for representable values, nearest-even otherwise. */
    CHECK(rg_bf16_to_f32(rg_f32_to_bf16(1.0f)) == 1.0f, "bf16 1.0");
    CHECK(rg_bf16_to_f32(rg_f32_to_bf16(1.00390625f)) == 1.0f, "bf16 tie to even (down)");
    CHECK(rg_bf16_to_f32(rg_f32_to_bf16(1.01171875f)) == 1.015625f, "bf16 tie to even (up)");
    CHECK(isnan(rg_bf16_to_f32(rg_f32_to_bf16(NAN))), "bf16 NaN");
    CHECK(rg_f16_to_f32(rg_f32_to_f16(0.333251953125f)) == 0.333251953125f, "f16 exact");
    CHECK(isinf(rg_f16_to_f32(rg_f32_to_f16(1e6f))), "f16 overflow to inf");
    CHECK(rg_f16_to_f32(rg_f32_to_f16(5.9604644775390625e-08f)) == 5.9604644775390625e-08f, "f16 subnormal");
    double worst = 0;
    for (int i = 0; i < 10000; i++) {
        float x = (float)(rg_rng_normal(&rng) * 10);
        /* the half-ulp relative bound holds in f16's normal range only (|x| >= 2^-14) */
        if (fabs(x) >= 0x1p-14) worst = fmax(worst, fabs(rg_f16_to_f32(rg_f32_to_f16(x)) - x) / fabs(x));
        worst = fmax(worst, fabs(rg_bf16_to_f32(rg_f32_to_bf16(x)) - x) / fabs(x) / 8);
    }
    CHECK(worst <= 0x1p-11 * 1.0001, "16-bit rounding within half an ulp (worst %.3g)", worst);

    /* Backends: CPU always; CUDA either works or says why not. */
    rg_backend *be = NULL;
    CHECK(rg_backend_init(RG_BACKEND_CPU, 0, &be) == RG_OK && be, "cpu backend");
    CHECK(rg_backend_act_dtype(be) == RG_DTYPE_F32, "cpu activations are f32");
    float src[5] = {1, 2, 3, 4, 5}, back[5];
    void *buf;
    CHECK(rg_buffer_alloc(be, sizeof src, &buf) == RG_OK, "cpu alloc");
    CHECK(rg_buffer_upload_f32(be, buf, RG_DTYPE_F32, src, 5) == RG_OK &&
          rg_buffer_download_f32(be, back, buf, RG_DTYPE_F32, 5) == RG_OK && memcmp(src, back, sizeof src) == 0,
          "cpu round trip");
    rg_buffer_free(be, buf);
    rg_backend_free(be);
    if (!rg_backend_available(RG_BACKEND_CUDA)) {
        rg_backend *cu = NULL;
        rg_status s = rg_backend_init(RG_BACKEND_CUDA, 0, &cu);
        CHECK(s != RG_OK && cu == NULL && rg_last_error()[0], "no CUDA: init fails with a message (%s)",
              rg_last_error());
    }
    return rg_test_finish();
}
