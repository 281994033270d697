/* mm_conv.h - CONV_2D kernels (int8, int16x8, float32), NHWC, filter OHWI.
 *
 * Geometry follows the TFLite Micro reference: output (oy, ox) reads input
 * rows oy*stride_h - pad_h + fy*dil_h; taps that fall outside the image are
 * skipped (they contribute nothing). Grouped convolution: the filter has
 * k_c = in_c / groups input channels, out channel oc reads group
 * oc / oc_per_group.
 *
 * int8: for a window lying fully inside the image the input zero-point
 * correction is folded into `bias_folded` at compile time
 * (bias[c] + input_offset * sum(w[c,:,:,:])), so the interior is a plain dot
 * product. A window clipped by the border adds input_offset tap by tap on top
 * of the raw `bias`. Both are exact in wrap-around int32 arithmetic.
 */
#ifndef MM_CONV_H
#define MM_CONV_H
#include "mm_math.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, k_c; /* filter is out_c x k_h x k_w x k_c */
    int32_t oc_per_group;  /* out_c / groups */
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t input_offset;  /* -input zero point (int8 only) */
    int32_t output_offset; /* output zero point (int8 only) */
    int32_t act_min, act_max;
    const int32_t *bias;               /* int8: raw bias (zeros if absent); int16 acc32: the int32 bias */
    const int32_t *bias_folded;        /* int8: bias + input_offset * sum(w[c]) for unclipped windows */
    const int64_t *bias64;             /* int16 with 64-bit accumulator; NULL selects the int32 accumulator */
    const int32_t *multiplier, *shift; /* per output channel */
} mm_conv_params;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, k_c;
    int32_t oc_per_group;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    float act_min, act_max;
    const float *bias; /* may be NULL */
} mm_conv_f32_params;

void mm_conv_s8(const mm_conv_params *p, const int8_t *in, const int8_t *w, int8_t *out);
void mm_conv_s16(const mm_conv_params *p, const int16_t *in, const int8_t *w, int16_t *out);
void mm_conv_f32(const mm_conv_f32_params *p, const float *in, const float *w, float *out);

#endif
