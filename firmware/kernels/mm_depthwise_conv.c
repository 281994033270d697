/* mm_depthwise_conv.c - portable DEPTHWISE_CONV_2D kernels. */
#include "mm_depthwise_conv.h"
#include "mm_isa.h"

int32_t mm_depthwise_conv_s8_get_buffer_size_isa(int32_t isa, int32_t out_c)
{
    (void)isa;
    return out_c * (int32_t)sizeof(int32_t);
}

int32_t mm_depthwise_conv_s8_get_buffer_size(int32_t out_c)
{
    return mm_depthwise_conv_s8_get_buffer_size_isa(MM_TARGET_ISA, out_c);
}

int32_t mm_depthwise_conv_s16_get_buffer_size_isa(int32_t isa, int32_t out_c)
{
    (void)isa;
    return out_c * (int32_t)sizeof(int64_t);
}

int32_t mm_depthwise_conv_s16_get_buffer_size(int32_t out_c)
{
    return mm_depthwise_conv_s16_get_buffer_size_isa(MM_TARGET_ISA, out_c);
}

int32_t mm_depthwise_conv_f32_get_buffer_size_isa(int32_t isa, int32_t out_c)
{
    (void)isa;
    return out_c * (int32_t)sizeof(float);
}

int32_t mm_depthwise_conv_f32_get_buffer_size(int32_t out_c)
{
    return mm_depthwise_conv_f32_get_buffer_size_isa(MM_TARGET_ISA, out_c);
}

/* Taps f in [lo, hi) with 0 <= origin + f*dil < size, clipped to [0, k). */
MM_INLINE void dw_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size, int32_t *lo, int32_t *hi)
{
    int32_t a = origin < 0 ? (-origin + dil - 1) / dil : 0;
    int32_t r = size - 1 - origin;
    int32_t b = r < 0 ? 0 : r / dil + 1;
    if (b > k) b = k;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ---- int8 and int16x8: one kernel (mm_depthwise_conv.inc) per type, with these per-type parts */

/* acc[0..out_c) at the window's start: int8 the folded bias (unclipped window) or the raw bias */
MM_INLINE void dw_start_s8(int32_t *acc, const mm_dwconv_params *p, int full)
{
    const int32_t *b = full ? p->bias_folded : p->bias;
    for (int32_t c = 0; c < p->out_c; ++c) acc[c] = b[c];
}

MM_INLINE void dw_start_s16(int64_t *acc, const mm_dwconv_params *p, int full)
{
    (void)full;
    for (int32_t c = 0; c < p->out_c; ++c) acc[c] = p->bias64[c];
}

MM_INLINE int8_t dw_out_s8(const mm_dwconv_params *p, int32_t acc, int32_t c)
{
    const int32_t r = mm_requantize(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
    return (int8_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

/* int16x8: TFLM ignores the zero points; 64-bit accumulators. */
MM_INLINE int16_t dw_out_s16(const mm_dwconv_params *p, int64_t acc, int32_t c)
{
    const int32_t r = mm_requantize_s64(acc, p->multiplier[c], p->shift[c]);
    return (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

#define MM_T         int8_t
#define MM_ACC       int32_t
#define MM_SFX       s8
#define MM_DW_OFFSET 1
#include "mm_depthwise_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_DW_OFFSET

#define MM_T         int16_t
#define MM_ACC       int64_t
#define MM_SFX       s16
#define MM_DW_OFFSET 0
#include "mm_depthwise_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_DW_OFFSET

/* float32: per channel the taps are summed in TFLM's (fy, fx) order from
 * 0.0f, then the bias (0.0f when absent) is added. */
void mm_depthwise_conv_f32(const mm_dwconv_f32_params *p, const float *in, const float *w, float *out,
                           void *scratch)
{
    float *acc = (float *)scratch;
    const int32_t out_c = p->out_c, in_c = p->in_c, dm = p->depth_mult;
    float *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *img = in + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            dw_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                dw_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                for (int32_t c = 0; c < out_c; ++c) acc[c] = 0.0f;
                for (int32_t fy = fy0; fy < fy1; ++fy) {
                    const float *xrow = img + (y0 + fy * p->dil_h) * p->in_w * in_c;
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        const float *x = xrow + (x0 + fx * p->dil_w) * in_c;
                        const float *wt = w + (fy * p->k_w + fx) * out_c;
                        if (dm == 1) {
                            for (int32_t c = 0; c < in_c; ++c) acc[c] += x[c] * wt[c];
                        } else {
                            float *a = acc;
                            for (int32_t c = 0; c < in_c; ++c) {
                                const float xv = x[c];
                                for (int32_t m = 0; m < dm; ++m) a[m] += xv * wt[m];
                                a += dm;
                                wt += dm;
                            }
                        }
                    }
                }
                for (int32_t c = 0; c < out_c; ++c) {
                    float v = acc[c] + (p->bias ? p->bias[c] : 0.0f);
                    v = v < p->act_min ? p->act_min : v;
                    v = p->act_max < v ? p->act_max : v;
                    o[c] = v;
                }
                o += out_c;
            }
        }
    }
}
