/* mm_softmax.h - SOFTMAX over the innermost axis (int8, int8->int16, int16, float32).
 *
 * int8: exp() of every possible (x - row max) is a compile-time table
 * (exp_table[-diff], Q0.31); the device sums, takes the gemmlowp reciprocal
 * and scales, exactly as TFLM's reference kernel.
 * int16: TFLM's LUT method (exp_lut and recip_lut, 513 entries each, interpolated).
 */
#ifndef MM_SOFTMAX_H
#define MM_SOFTMAX_H
#include "mm_math.h"

typedef struct {
    int32_t outer, depth;
    int32_t input_multiplier, input_shift; /* int16: rescale of (x - max) onto the exp LUT */
    int32_t diff_min;                      /* int8: differences below this give exp() = 0 */
    const int32_t *exp_table;              /* int8: 256 entries */
    const int16_t *exp_lut, *recip_lut;    /* int16: 513 entries each */
    float beta;                            /* float32 */
} mm_softmax_params;

void mm_softmax_s8(const mm_softmax_params *p, const int8_t *in, int8_t *out);
void mm_softmax_s8_s16(const mm_softmax_params *p, const int8_t *in, int16_t *out);
void mm_softmax_s16(const mm_softmax_params *p, const int16_t *in, int16_t *out);
void mm_softmax_f32(const mm_softmax_params *p, const float *in, float *out);

#endif
