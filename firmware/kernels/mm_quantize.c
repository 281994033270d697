/* mm_quantize.c - portable QUANTIZE / DEQUANTIZE kernels.
 * Loops run forward; an output element is never wider than the input element
 * when the lowering lets the output overlay the input. */
#include <math.h>
#include "mm_quantize.h"

/* Parameters are copied to locals: stores through out (a char type) could alias *p. */
MM_INLINE int32_t quantize_q(const mm_affine_params *q, float x)
{
    const float r = roundf(x / q->scale);
    return (int32_t)r + q->zero_point;
}

void mm_quantize_f32_s8(const mm_affine_params *p, const float *in, int8_t *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int8_t)mm_clamp_i32(quantize_q(&q, in[i]), -128, 127);
}

void mm_quantize_f32_s16(const mm_affine_params *p, const float *in, int16_t *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int16_t)mm_clamp_i32(quantize_q(&q, in[i]), -32768, 32767);
}

MM_INLINE int32_t requantize_q(const mm_requantize_params *q, int32_t x)
{
    return mm_requantize(x - q->input_zero_point, q->multiplier, q->shift) + q->output_zero_point;
}

void mm_quantize_s8_s8(const mm_requantize_params *p, const int8_t *in, int8_t *out)
{
    const mm_requantize_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int8_t)mm_clamp_i32(requantize_q(&q, in[i]), -128, 127);
}

void mm_quantize_s8_s16(const mm_requantize_params *p, const int8_t *in, int16_t *out)
{
    const mm_requantize_params q = *p;
    for (int32_t i = 0; i < q.size; ++i)
        out[i] = (int16_t)mm_clamp_i32(requantize_q(&q, in[i]), -32768, 32767);
}

void mm_quantize_s16_s8(const mm_requantize_params *p, const int16_t *in, int8_t *out)
{
    const mm_requantize_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int8_t)mm_clamp_i32(requantize_q(&q, in[i]), -128, 127);
}

void mm_quantize_s16_s16(const mm_requantize_params *p, const int16_t *in, int16_t *out)
{
    const mm_requantize_params q = *p;
    for (int32_t i = 0; i < q.size; ++i)
        out[i] = (int16_t)mm_clamp_i32(requantize_q(&q, in[i]), -32768, 32767);
}

void mm_dequantize_s8(const mm_affine_params *p, const int8_t *in, float *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = q.scale * (float)((int32_t)in[i] - q.zero_point);
}

void mm_dequantize_s16(const mm_affine_params *p, const int16_t *in, float *out)
{
    const mm_affine_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = q.scale * (float)((int32_t)in[i] - q.zero_point);
}
