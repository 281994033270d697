/* mm_hybrid.h - dynamic-range ("hybrid") kernels: float activations, int8 weights.
 *
 * What the TF Lite interpreter does for FULLY_CONNECTED, CONV_2D and
 * DEPTHWISE_CONV_2D with float input and int8 weights (TFLite Micro has no
 * hybrid kernels; the reference is the TF Lite builtin reference op resolver):
 *
 *  1. each batch of the input is quantized to int8 on the fly, symmetrically
 *     (scale = max|x| / 127, zero point 0) or asymmetrically (scale =
 *     (max(x,0) - min(x,0)) / 255, nudged zero point), exactly as the TF Lite
 *     x86 build does it (its NEON kernels through a NEON-to-SSE layer: range
 *     width in float, scale and zero point in double, round(x * 1/scale) + zp
 *     with truncating rounding on the vectorized part, roundf on the tail);
 *  2. an exact integer dot product with the int8 weights;
 *  3. the accumulator is scaled back to float with the input scale and the
 *     weight scale(s), the float bias added, the fused activation applied.
 *
 * The float operations are done in the same order as the reference so the
 * results match it exactly (the generated code is built with
 * -ffp-contract=off).
 *
 * Scratch: the quantized input, int8_t[in_depth] (fully connected, one batch
 * row at a time) or int8_t[in_h * in_w * in_c] (convolutions, one image).
 */
#ifndef MM_HYBRID_H
#define MM_HYBRID_H
#include "mm_math.h"
#include <math.h> /* INFINITY in the generated parameter structs */

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t asymmetric;     /* asymmetric_quantize_inputs */
    float act_min, act_max; /* fused activation (+-INFINITY when none) */
    const float *bias;      /* out_depth entries, or NULL */
    const float *w_scale;   /* per-channel weight scales, or NULL: w_scale0 */
    float w_scale0;
    const int32_t *row_sums; /* sum of w[c, :]; used with asymmetric inputs */
} mm_fc_hybrid_params;

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, k_c; /* filter out_c x k_h x k_w x k_c (conv), 1 x k_h x k_w x out_c (depthwise) */
    int32_t oc_per_group;  /* conv: out_c / groups */
    int32_t depth_mult;    /* depthwise */
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t per_channel; /* conv: 1 = asymmetric inputs and per-channel scales (reference
                                    HybridConvPerChannel), 0 = symmetric inputs, one weight scale */
    float act_min, act_max;
    const float *bias;    /* out_c entries, or NULL */
    const float *w_scale; /* per-channel weight scales (per_channel / depthwise) */
    float w_scale0;       /* the weight scale when per_channel == 0 */
} mm_conv_hybrid_params;

/* Quantize n floats to int8 as the TF Lite hybrid kernels do; returns the scale in *scale
 * and the zero point in *offset (0 for symmetric). */
void mm_hybrid_quantize(const float *x, int32_t n, int8_t *q, int32_t asymmetric, float *scale,
                        int32_t *offset);

/* Scratch bytes (docs/kernels.md, "Scratch contract"), the same at every ISA level;
 * _isa takes the level (MM_ISA_*) explicitly. */
int32_t mm_fully_connected_hybrid_get_buffer_size(int32_t in_depth);
int32_t mm_fully_connected_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_depth);
int32_t mm_conv_hybrid_get_buffer_size(int32_t in_h, int32_t in_w, int32_t in_c);
int32_t mm_conv_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_h, int32_t in_w, int32_t in_c);
int32_t mm_depthwise_conv_hybrid_get_buffer_size(int32_t in_h, int32_t in_w, int32_t in_c);
int32_t mm_depthwise_conv_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_h, int32_t in_w, int32_t in_c);

void mm_fully_connected_hybrid(const mm_fc_hybrid_params *p, const float *in, const int8_t *w, float *out,
                               void *scratch);
void mm_conv_hybrid(const mm_conv_hybrid_params *p, const float *in, const int8_t *w, float *out,
                    void *scratch);
void mm_depthwise_conv_hybrid(const mm_conv_hybrid_params *p, const float *in, const int8_t *w, float *out,
                              void *scratch);

#endif
