/* mm_pool.h - AVERAGE_POOL_2D and MAX_POOL_2D (int8, int16, float32), NHWC.
 *
 * Padding is resolved at compile time into pad_h/pad_w (top/left); windows are
 * clipped to the input, so padded positions never count toward an average.
 */
#ifndef MM_POOL_H
#define MM_POOL_H
#include "mm_math.h"

typedef struct {
    int32_t batches, in_h, in_w, depth, out_h, out_w;
    int32_t stride_h, stride_w, filter_h, filter_w, pad_h, pad_w;
    int32_t act_min, act_max;   /* int8 / int16 output clamp */
    float act_min_f, act_max_f; /* float32 output clamp */
} mm_pool_params;

void mm_avg_pool_s8(const mm_pool_params *p, const int8_t *in, int8_t *out);
void mm_avg_pool_s16(const mm_pool_params *p, const int16_t *in, int16_t *out);
void mm_avg_pool_f32(const mm_pool_params *p, const float *in, float *out);
void mm_max_pool_s8(const mm_pool_params *p, const int8_t *in, int8_t *out);
void mm_max_pool_s16(const mm_pool_params *p, const int16_t *in, int16_t *out);
void mm_max_pool_f32(const mm_pool_params *p, const float *in, float *out);

#endif
