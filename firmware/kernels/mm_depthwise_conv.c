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
MM_INLINE void dw_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size,
                            int32_t *lo, int32_t *hi)
{
    int32_t a = origin < 0 ? (-origin + dil - 1) / dil : 0;
    int32_t r = size - 1 - origin;
    int32_t b = r < 0 ? 0 : r / dil + 1;
    if (b > k) b = k;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Accumulate one filter tap into acc[0..out_c). `off` is a literal 0 for
 * unclipped int8 windows and for int16, so the add disappears there. */
#define MM_DW_TAP(ACC_T, acc, x, wt, in_c, dm, off)                              \
    do {                                                                         \
        if ((dm) == 1) {                                                         \
            for (int32_t c = 0; c < (in_c); ++c)                                 \
                acc[c] += (ACC_T)(((int32_t)(x)[c] + (off)) * (wt)[c]);          \
        } else {                                                                 \
            ACC_T *a_ = acc;                                                     \
            const int8_t *w_ = (wt);                                             \
            for (int32_t c = 0; c < (in_c); ++c) {                               \
                const int32_t xv = (int32_t)(x)[c] + (off);                      \
                for (int32_t m = 0; m < (dm); ++m) a_[m] += (ACC_T)(xv * w_[m]); \
                a_ += (dm);                                                      \
                w_ += (dm);                                                      \
            }                                                                    \
        }                                                                        \
    } while (0)

MM_INLINE void dw_window_s8(int32_t *acc, const int8_t *img, const int8_t *w,
                            const mm_dwconv_params *p, int32_t y0, int32_t x0,
                            int32_t fy0, int32_t fy1, int32_t fx0, int32_t fx1, int32_t off)
{
    const int32_t in_c = p->in_c, dm = p->depth_mult;
    for (int32_t fy = fy0; fy < fy1; ++fy) {
        const int8_t *xrow = img + (y0 + fy * p->dil_h) * p->in_w * in_c;
        for (int32_t fx = fx0; fx < fx1; ++fx) {
            const int8_t *x = xrow + (x0 + fx * p->dil_w) * in_c;
            const int8_t *wt = w + (fy * p->k_w + fx) * p->out_c;
            MM_DW_TAP(int32_t, acc, x, wt, in_c, dm, off);
        }
    }
}

void mm_depthwise_conv_s8(const mm_dwconv_params *p, const int8_t *in, const int8_t *w,
                          int8_t *out, void *scratch)
{
    int32_t *acc = (int32_t *)scratch;
    const int32_t out_c = p->out_c;
    int8_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            dw_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                dw_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                if (fy1 - fy0 == p->k_h && fx1 - fx0 == p->k_w) {
                    for (int32_t c = 0; c < out_c; ++c) acc[c] = p->bias_folded[c];
                    dw_window_s8(acc, img, w, p, y0, x0, fy0, fy1, fx0, fx1, 0);
                } else {
                    for (int32_t c = 0; c < out_c; ++c) acc[c] = p->bias[c];
                    dw_window_s8(acc, img, w, p, y0, x0, fy0, fy1, fx0, fx1, p->input_offset);
                }
                for (int32_t c = 0; c < out_c; ++c) {
                    const int32_t r = mm_requantize(acc[c], p->multiplier[c], p->shift[c]) + p->output_offset;
                    o[c] = (int8_t)mm_clamp_i32(r, p->act_min, p->act_max);
                }
                o += out_c;
            }
        }
    }
}

/* int16x8: TFLM ignores the zero points; 64-bit accumulators. */
void mm_depthwise_conv_s16(const mm_dwconv_params *p, const int16_t *in, const int8_t *w,
                           int16_t *out, void *scratch)
{
    int64_t *acc = (int64_t *)scratch;
    const int32_t out_c = p->out_c, in_c = p->in_c, dm = p->depth_mult;
    int16_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *img = in + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            dw_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                dw_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                for (int32_t c = 0; c < out_c; ++c) acc[c] = p->bias64[c];
                for (int32_t fy = fy0; fy < fy1; ++fy) {
                    const int16_t *xrow = img + (y0 + fy * p->dil_h) * p->in_w * in_c;
                    for (int32_t fx = fx0; fx < fx1; ++fx) {
                        const int16_t *x = xrow + (x0 + fx * p->dil_w) * in_c;
                        const int8_t *wt = w + (fy * p->k_w + fx) * out_c;
                        MM_DW_TAP(int64_t, acc, x, wt, in_c, dm, 0);
                    }
                }
                for (int32_t c = 0; c < out_c; ++c) {
                    const int32_t r = mm_requantize_s64(acc[c], p->multiplier[c], p->shift[c]);
                    o[c] = (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
                }
                o += out_c;
            }
        }
    }
}

/* float32: per channel the taps are summed in TFLM's (fy, fx) order from
 * 0.0f, then the bias (0.0f when absent) is added. */
void mm_depthwise_conv_f32(const mm_dwconv_f32_params *p, const float *in, const float *w,
                           float *out, void *scratch)
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
