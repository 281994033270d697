/* mm_depthwise_conv.h - DEPTHWISE_CONV_2D kernels (int8, int16x8, float32), NHWC.
 *
 * Filter layout 1 x k_h x k_w x out_c with out_c = in_c * depth_mult; output
 * channel ic*depth_mult + m reads input channel ic. Taps outside the image are
 * skipped, as in the TFLite Micro reference.
 *
 * The kernels keep one accumulator per output channel in a scratch buffer
 * (mm_depthwise_conv_<type>_get_buffer_size bytes, planned in the arena) so the
 * innermost loop runs over channels, contiguous in input, filter and output.
 *
 * int8: unclipped windows start from `bias_folded` (bias + input_offset *
 * sum of the channel's taps, folded at compile time); windows clipped by the
 * border start from the raw `bias` and add input_offset tap by tap.
 */
#ifndef MM_DEPTHWISE_CONV_H
#define MM_DEPTHWISE_CONV_H
#include "mm_math.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t depth_mult;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t input_offset;  /* -input zero point (int8 only) */
    int32_t output_offset; /* output zero point (int8 only) */
    int32_t act_min, act_max;
    const int32_t *bias;               /* int8: raw bias (zeros if absent) */
    const int32_t *bias_folded;        /* int8: bias + input_offset * sum of taps, unclipped windows */
    const int64_t *bias64;             /* int16: bias (zeros if absent) */
    const int32_t *multiplier, *shift; /* per output channel */
} mm_dwconv_params;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t depth_mult;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    float act_min, act_max;
    const float *bias; /* may be NULL */
} mm_dwconv_f32_params;

/* Scratch bytes (docs/kernels.md, "Scratch contract"): one accumulator per output
 * channel at every ISA level; _isa takes the level (MM_ISA_*) explicitly. */
int32_t mm_depthwise_conv_s8_get_buffer_size(int32_t out_c);
int32_t mm_depthwise_conv_s8_get_buffer_size_isa(int32_t isa, int32_t out_c);
int32_t mm_depthwise_conv_s16_get_buffer_size(int32_t out_c);
int32_t mm_depthwise_conv_s16_get_buffer_size_isa(int32_t isa, int32_t out_c);
int32_t mm_depthwise_conv_f32_get_buffer_size(int32_t out_c);
int32_t mm_depthwise_conv_f32_get_buffer_size_isa(int32_t isa, int32_t out_c);

/* scratch: int32_t[out_c] (s8), int64_t[out_c] (s16), float[out_c] (f32) */
void mm_depthwise_conv_s8(const mm_dwconv_params *p, const int8_t *in, const int8_t *w, int8_t *out,
                          void *scratch);
void mm_depthwise_conv_s16(const mm_dwconv_params *p, const int16_t *in, const int8_t *w, int16_t *out,
                           void *scratch);
void mm_depthwise_conv_f32(const mm_dwconv_f32_params *p, const float *in, const float *w, float *out,
                           void *scratch);

#endif
