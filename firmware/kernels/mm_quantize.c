/* mm_quantize.c - portable QUANTIZE / DEQUANTIZE kernels.
 * Loops run forward; an output element is never wider than the input element
 * when the lowering lets the output overlay the input. */
#include <math.h>
#include "mm_quantize.h"

/* Parameters are copied to locals: stores through out (a char type) could alias *p. */
#define MM_QUANTIZE_F32_BODY(T, LO, HI)                                                   \
    const mm_affine_params q = *p;                                                        \
    for (int32_t i = 0; i < q.size; ++i) {                                               \
        const float r = roundf(in[i] / q.scale);                                          \
        const int32_t v = (int32_t)r + q.zero_point;                                      \
        out[i] = (T)mm_clamp_i32(v, LO, HI);                                              \
    }

void mm_quantize_f32_s8(const mm_affine_params *p, const float *in, int8_t *out)
{
    MM_QUANTIZE_F32_BODY(int8_t, -128, 127)
}

void mm_quantize_f32_s16(const mm_affine_params *p, const float *in, int16_t *out)
{
    MM_QUANTIZE_F32_BODY(int16_t, -32768, 32767)
}

#define MM_REQUANTIZE_BODY(TO, LO, HI)                                                    \
    const mm_requantize_params q = *p;                                                    \
    for (int32_t i = 0; i < q.size; ++i) {                                               \
        const int32_t v = mm_requantize((int32_t)in[i] - q.input_zero_point,             \
                                        q.multiplier, q.shift) + q.output_zero_point;    \
        out[i] = (TO)mm_clamp_i32(v, LO, HI);                                             \
    }

void mm_quantize_s8_s8(const mm_requantize_params *p, const int8_t *in, int8_t *out)
{
    MM_REQUANTIZE_BODY(int8_t, -128, 127)
}

void mm_quantize_s8_s16(const mm_requantize_params *p, const int8_t *in, int16_t *out)
{
    MM_REQUANTIZE_BODY(int16_t, -32768, 32767)
}

void mm_quantize_s16_s8(const mm_requantize_params *p, const int16_t *in, int8_t *out)
{
    MM_REQUANTIZE_BODY(int8_t, -128, 127)
}

void mm_quantize_s16_s16(const mm_requantize_params *p, const int16_t *in, int16_t *out)
{
    MM_REQUANTIZE_BODY(int16_t, -32768, 32767)
}

void mm_dequantize_s8(const mm_affine_params *p, const int8_t *in, float *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i)
        out[i] = q.scale * (float)((int32_t)in[i] - q.zero_point);
}

void mm_dequantize_s16(const mm_affine_params *p, const int16_t *in, float *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i)
        out[i] = q.scale * (float)((int32_t)in[i] - q.zero_point);
}
