/* mm_nonlinear.h - LOGISTIC and TANH (int8, int16, float32).
 *
 * int8: a 256-entry table computed by the compiler (TFLM's fixed-point
 * logistic/tanh evaluated for every input value), indexed by (uint8_t)x.
 * int16: TFLM's scaled interpolation in the Q0.16 sigmoid table.
 * float32: libm, with TFLM's logistic cut-offs.
 */
#ifndef MM_NONLINEAR_H
#define MM_NONLINEAR_H
#include "mm_math.h"

typedef struct {
    int32_t input_multiplier; /* int16: input rescale to the table's 1/(3*4096) step */
    int32_t input_left_shift; /* right shift applied after the multiply */
} mm_nonlinear_params;

void mm_logistic_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t n);
void mm_tanh_s8(const int8_t *lut, const int8_t *in, int8_t *out, int32_t n);
void mm_logistic_s16(const mm_nonlinear_params *p, const int16_t *in, int16_t *out, int32_t n);
void mm_tanh_s16(const mm_nonlinear_params *p, const int16_t *in, int16_t *out, int32_t n);
void mm_logistic_f32(const float *in, float *out, int32_t n);
void mm_tanh_f32(const float *in, float *out, int32_t n);

#endif
