/* mm_activation.h - RELU, RELU6, LEAKY_RELU, HARD_SWISH (int8, int16, float32 as TFLM supports).
 *
 * Quantized RELU and LEAKY_RELU requantize from the input to the output scale;
 * quantized RELU6 clamps in the input's scale, like TFLM (it ignores the output
 * quantization). Int8 HARD_SWISH is a 256-entry table computed at compile time
 * with TFLM's 16-bit fixed-point arithmetic.
 */
#ifndef MM_ACTIVATION_H
#define MM_ACTIVATION_H
#include "mm_math.h"

typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift; /* input scale / output scale */
    int32_t act_min, act_max;
} mm_relu_params;

typedef struct {
    int32_t size;
    int32_t lo, hi; /* quantized 0 and 6 in the input's scale */
} mm_relu6_params;

typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier_identity, shift_identity; /* x >= 0 */
    int32_t multiplier_alpha, shift_alpha;       /* x < 0; |multiplier| */
    int32_t alpha_negative;                      /* negate the x < 0 branch */
} mm_leaky_relu_params;

typedef struct {
    int32_t size;
    const int8_t *lut; /* indexed by (uint8_t)input */
} mm_lut_s8_params;

void mm_relu_s8(const mm_relu_params *p, const int8_t *in, int8_t *out);
void mm_relu_s16(const mm_relu_params *p, const int16_t *in, int16_t *out);
void mm_relu_f32(int32_t size, const float *in, float *out);
void mm_relu6_s8(const mm_relu6_params *p, const int8_t *in, int8_t *out);
void mm_relu6_s16(const mm_relu6_params *p, const int16_t *in, int16_t *out);
void mm_relu6_f32(int32_t size, const float *in, float *out);
void mm_leaky_relu_s8(const mm_leaky_relu_params *p, const int8_t *in, int8_t *out);
void mm_leaky_relu_s16(const mm_leaky_relu_params *p, const int16_t *in, int16_t *out);
void mm_leaky_relu_f32(int32_t size, float alpha, const float *in, float *out);
void mm_hard_swish_s8(const mm_lut_s8_params *p, const int8_t *in, int8_t *out);
void mm_hard_swish_f32(int32_t size, const float *in, float *out);

#endif
