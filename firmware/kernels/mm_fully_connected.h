/* mm_fully_connected.h - FULLY_CONNECTED kernels (int8, int16x8, float32).
 *
 * Zero-point corrections are folded into `bias` at compile time
 * (bias[c] + input_offset * sum(w[c,:])), so the inner loop is a plain dot product.
 */
#ifndef MM_FULLY_CONNECTED_H
#define MM_FULLY_CONNECTED_H
#include "mm_math.h"

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t input_offset;   /* -input zero point (only used when filter_offset != 0) */
    int32_t filter_offset;  /* -filter zero point, 0 for symmetric weights */
    int32_t output_offset;
    int32_t act_min, act_max;
    const int32_t *bias;    /* folded bias, out_depth entries (int8) */
    const int64_t *bias64;  /* folded bias for int16x8 */
    const int32_t *multiplier, *shift; /* per output channel */
} mm_fc_params;

typedef struct {
    int32_t batches, in_depth, out_depth;
    float act_min, act_max;
    const float *bias;      /* may be NULL */
} mm_fc_f32_params;

void mm_fully_connected_s8(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out);
void mm_fully_connected_s16(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out);
void mm_fully_connected_f32(const mm_fc_f32_params *p, const float *in, const float *w, float *out);

#endif
