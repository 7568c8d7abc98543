/* dtype.h — scalar conversions between float32 and the 16-bit formats. */
#ifndef RG_CORE_DTYPE_H
#define RG_CORE_DTYPE_H
#include <stdint.h>

/* Round to nearest even; NaN stays NaN. */
uint16_t rg_f32_to_bf16(float x);
float rg_bf16_to_f32(uint16_t h);
uint16_t rg_f32_to_f16(float x);
float rg_f16_to_f32(uint16_t h);

#endif
