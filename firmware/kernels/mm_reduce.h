/* mm_reduce.h - MEAN (int8, int16, float32) over any set of axes.
 *
 * The compiler merges adjacent axes so the input is described as up to four
 * kept groups (dims/strides, outer to inner, padded at the front with size-1
 * groups) and up to four reduced groups. Each output element sums its reduced
 * elements in row-major order, which is the order TFLM accumulates in; integer
 * sums wrap in 32 bits exactly like TFLM's int32 accumulator.
 */
#ifndef MM_REDUCE_H
#define MM_REDUCE_H
#include "mm_math.h"

#define MM_REDUCE_GROUPS 4

typedef struct {
    int32_t keep_dims[MM_REDUCE_GROUPS], keep_strides[MM_REDUCE_GROUPS];
    int32_t red_dims[MM_REDUCE_GROUPS], red_strides[MM_REDUCE_GROUPS];
    int32_t count;             /* elements reduced into each output */
    int32_t zp_times_count;    /* input zero point * count, wrapped to 32 bits */
    int32_t multiplier, shift; /* already folded with 1/count as TFLM does */
    int32_t output_zp;
} mm_reduce_params;

void mm_mean_s8(const mm_reduce_params *p, const int8_t *in, int8_t *out);
void mm_mean_s16(const mm_reduce_params *p, const int16_t *in, int16_t *out);
void mm_mean_f32(const mm_reduce_params *p, const float *in, float *out);

#endif
