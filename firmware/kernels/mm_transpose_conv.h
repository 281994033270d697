/* mm_transpose_conv.h - TRANSPOSE_CONV kernels (int8, int16x8, float32), NHWC, filter OHWI.
 *
 * TFLite Micro scatters every input pixel into an output-sized accumulator
 * buffer. These kernels compute the same sums output-stationary instead
 * ("gather"): output row oy receives input rows iy with
 * fy = oy + pad_h - iy*stride_h in [0, k_h), so no accumulator buffer is
 * needed. For float32 the contributions are added in the reference order
 * (iy, ix, input channel ascending), which keeps the result bit-exact.
 *
 * int8: the set of taps reaching an output pixel depends on its phase
 * ((oy + pad_h) % stride_h, (ox + pad_w) % stride_w). For pixels whose taps
 * all land inside the input, `bias_folded[phase][oc]` holds
 * bias + input_offset * sum of that phase's filter taps; pixels near the
 * border start from the raw `bias` and add input_offset tap by tap.
 */
#ifndef MM_TRANSPOSE_CONV_H
#define MM_TRANSPOSE_CONV_H
#include "mm_math.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w; /* filter is out_c x k_h x k_w x in_c */
    int32_t stride_h, stride_w, pad_h, pad_w;
    int32_t input_offset;  /* -input zero point (int8 only) */
    int32_t output_offset; /* output zero point (int8 only) */
    int32_t act_min, act_max;
    const int32_t *bias;               /* int8: raw bias (zeros if absent) */
    const int32_t *bias_folded;        /* int8: [stride_h * stride_w][out_c] */
    const int64_t *bias64;             /* int16: bias widened to 64 bits (zeros if absent) */
    const int32_t *multiplier, *shift; /* per output channel */
} mm_tconv_params;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w, pad_h, pad_w;
    float act_min, act_max;
    const float *bias; /* may be NULL (then no bias is added at all) */
} mm_tconv_f32_params;

void mm_transpose_conv_s8(const mm_tconv_params *p, const int8_t *in, const int8_t *w, int8_t *out);
void mm_transpose_conv_s16(const mm_tconv_params *p, const int16_t *in, const int8_t *w, int16_t *out);
void mm_transpose_conv_f32(const mm_tconv_f32_params *p, const float *in, const float *w, float *out);

#endif
