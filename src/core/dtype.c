/* dtype.c — dtype names, sizes and scalar conversions (see dtype.h). */
#include "core/dtype.h"
#include "ragged.h"
#include <math.h>
#include <string.h>

size_t rg_dtype_size(rg_dtype t) {
    switch (t) {
    case RG_DTYPE_F32: case RG_DTYPE_I32: return 4;
    case RG_DTYPE_BF16: case RG_DTYPE_F16: return 2;
    }
    return 0;
}

const char *rg_dtype_name(rg_dtype t) {
    switch (t) {
    case RG_DTYPE_F32: return "f32";
    case RG_DTYPE_BF16: return "bf16";
    case RG_DTYPE_F16: return "f16";
    case RG_DTYPE_I32: return "i32";
    }
    return "?";
}

uint16_t rg_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float rg_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t rg_f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          /* NaN */
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         /* overflow -> inf */
    if (absu < 0x38800000u) {                                           /* subnormal or zero */
        float a;
        memcpy(&a, &absu, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f));    /* a / 2^-24, ties to even */
    }
    uint32_t r = absu + 0x0fffu + ((absu >> 13) & 1u);                  /* round mantissa to 10 bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float rg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, u;
    if (e == 0) {
        float x = ldexpf((float)m, -24);
        return sign ? -x : x;
    }
    if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e + 112) << 23) | (m << 13);
    float x;
    memcpy(&x, &u, 4);
    return x;
}
