/* mm_transpose_conv.c - portable TRANSPOSE_CONV kernels (output-stationary). */
#include "mm_transpose_conv.h"

/* Input indices i in [*lo, *hi) reaching output index o: f = o + pad - i*stride
 * in [0, k) and 0 <= i < size. *full is set when no such tap is cut off by
 * the input border. Returns the phase (o + pad) % stride. */
MM_INLINE int32_t tconv_range(int32_t o, int32_t pad, int32_t stride, int32_t k, int32_t size, int32_t *lo,
                              int32_t *hi, int *full)
{
    const int32_t t = o + pad; /* >= 0: pad is never negative */
    const int32_t n = t - k + 1;
    const int32_t lo_u = n >= 0 ? (n + stride - 1) / stride : -((-n) / stride);
    const int32_t hi_u = t / stride + 1; /* exclusive */
    int32_t a = lo_u < 0 ? 0 : lo_u;
    int32_t b = hi_u > size ? size : hi_u;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
    *full = (lo_u >= 0 && hi_u <= size) || lo_u >= hi_u;
    return t % stride;
}

/* ---- int8 and int16x8: one kernel (mm_transpose_conv.inc) per type, with these per-type parts */

/* the accumulator's start: int8 the bias folded for the pixel's phase (no tap cut off by the
 * input border) or the raw bias; int16 0 (TFLM ignores the zero points, 64-bit sums) */
MM_INLINE int32_t tconv_start_s8(const mm_tconv_params *p, int32_t oc, int full, int32_t phase)
{
    return full ? p->bias_folded[phase * p->out_c + oc] : p->bias[oc];
}

MM_INLINE int64_t tconv_start_s16(const mm_tconv_params *p, int32_t oc, int full, int32_t phase)
{
    (void)p, (void)oc, (void)full, (void)phase;
    return 0;
}

MM_INLINE int8_t tconv_out_s8(const mm_tconv_params *p, int32_t acc, int32_t oc)
{
    acc = mm_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
    return (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
}

MM_INLINE int16_t tconv_out_s16(const mm_tconv_params *p, int64_t acc, int32_t oc)
{
    const int32_t r = mm_requantize_s64(acc + p->bias64[oc], p->multiplier[oc], p->shift[oc]);
    return (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

#define MM_T            int8_t
#define MM_ACC          int32_t
#define MM_SFX          s8
#define MM_TCONV_OFFSET 1
#include "mm_transpose_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_TCONV_OFFSET

#define MM_T            int16_t
#define MM_ACC          int64_t
#define MM_SFX          s16
#define MM_TCONV_OFFSET 0
#include "mm_transpose_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_TCONV_OFFSET

void mm_transpose_conv_f32(const mm_tconv_f32_params *p, const float *in, const float *w, float *out)
{
    const int32_t in_c = p->in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * in_c;
    float *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *img = in + b * p->in_h * p->in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            int32_t iy0, iy1;
            int full_y;
            (void)tconv_range(oy, p->pad_h, p->stride_h, p->k_h, p->in_h, &iy0, &iy1, &full_y);
            const int32_t ty = oy + p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                int32_t ix0, ix1;
                int full_x;
                (void)tconv_range(ox, p->pad_w, p->stride_w, p->k_w, p->in_w, &ix0, &ix1, &full_x);
                const int32_t tx = ox + p->pad_w;
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const float *wc = w + oc * w_per_oc;
                    float acc = 0.0f;
                    for (int32_t iy = iy0; iy < iy1; ++iy) {
                        const int32_t fy = ty - iy * p->stride_h;
                        for (int32_t ix = ix0; ix < ix1; ++ix) {
                            const int32_t fx = tx - ix * p->stride_w;
                            const float *x = img + (iy * p->in_w + ix) * in_c;
                            const float *wt = wc + (fy * p->k_w + fx) * in_c;
                            for (int32_t c = 0; c < in_c; ++c) acc += x[c] * wt[c];
                        }
                    }
                    if (p->bias) acc += p->bias[oc];
                    acc = acc < p->act_min ? p->act_min : acc;
                    acc = p->act_max < acc ? p->act_max : acc;
                    *o++ = acc;
                }
            }
        }
    }
}
