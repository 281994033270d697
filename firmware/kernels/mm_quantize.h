/* mm_quantize.h - QUANTIZE (float -> int8/int16, int8/int16 -> int8/int16 requantize)
 * and DEQUANTIZE (int8/int16 -> float), matching TFLM's reference kernels.
 *
 * float -> int uses TFLM's float arithmetic: roundf(x / scale) + zero_point.
 * Dequantize computes scale * (q - zero_point) in float: the product is exact
 * in double, so rounding it once to float gives what TFLM's double math gives.
 */
#ifndef MM_QUANTIZE_H
#define MM_QUANTIZE_H
#include "mm_math.h"

typedef struct {
    int32_t size;
    float scale;
    int32_t zero_point;
} mm_affine_params; /* QUANTIZE from float, DEQUANTIZE */

typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift; /* input scale / output scale */
} mm_requantize_params;

void mm_quantize_f32_s8(const mm_affine_params *p, const float *in, int8_t *out);
void mm_quantize_f32_s16(const mm_affine_params *p, const float *in, int16_t *out);
void mm_quantize_s8_s8(const mm_requantize_params *p, const int8_t *in, int8_t *out);
void mm_quantize_s8_s16(const mm_requantize_params *p, const int8_t *in, int16_t *out);
void mm_quantize_s16_s8(const mm_requantize_params *p, const int16_t *in, int8_t *out);
void mm_quantize_s16_s16(const mm_requantize_params *p, const int16_t *in, int16_t *out);
void mm_dequantize_s8(const mm_affine_params *p, const int8_t *in, float *out);
void mm_dequantize_s16(const mm_affine_params *p, const int16_t *in, float *out);

#endif
