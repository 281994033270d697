/* mm_transpose_conv.c - portable TRANSPOSE_CONV kernels (output-stationary). */
#include "mm_transpose_conv.h"

/* Input indices i in [*lo, *hi) reaching output index o: f = o + pad - i*stride
 * in [0, k) and 0 <= i < size. *full is set when no such tap is cut off by
 * the input border. Returns the phase (o + pad) % stride. */
MM_INLINE int32_t tconv_range(int32_t o, int32_t pad, int32_t stride, int32_t k, int32_t size,
                              int32_t *lo, int32_t *hi, int *full)
{
    const int32_t t = o + pad;                 /* >= 0: pad is never negative */
    const int32_t n = t - k + 1;
    const int32_t lo_u = n >= 0 ? (n + stride - 1) / stride : -((-n) / stride);
    const int32_t hi_u = t / stride + 1;      /* exclusive */
    int32_t a = lo_u < 0 ? 0 : lo_u;
    int32_t b = hi_u > size ? size : hi_u;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
    *full = (lo_u >= 0 && hi_u <= size) || lo_u >= hi_u;
    return t % stride;
}

MM_INLINE int32_t tconv_pixel_s8(int32_t acc, const int8_t *img, const int8_t *wc,
                                 const mm_tconv_params *p, int32_t ty, int32_t tx,
                                 int32_t iy0, int32_t iy1, int32_t ix0, int32_t ix1, int32_t off)
{
    const int32_t in_c = p->in_c;
    for (int32_t iy = iy0; iy < iy1; ++iy) {
        const int32_t fy = ty - iy * p->stride_h;
        for (int32_t ix = ix0; ix < ix1; ++ix) {
            const int32_t fx = tx - ix * p->stride_w;
            const int8_t *x = img + (iy * p->in_w + ix) * in_c;
            const int8_t *wt = wc + (fy * p->k_w + fx) * in_c;
            for (int32_t c = 0; c < in_c; ++c) acc += ((int32_t)x[c] + off) * wt[c];
        }
    }
    return acc;
}

void mm_transpose_conv_s8(const mm_tconv_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t w_per_oc = p->k_h * p->k_w * p->in_c;
    int8_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * p->in_w * p->in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            int32_t iy0, iy1;
            int full_y;
            const int32_t py = tconv_range(oy, p->pad_h, p->stride_h, p->k_h, p->in_h, &iy0, &iy1, &full_y);
            const int32_t ty = oy + p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                int32_t ix0, ix1;
                int full_x;
                const int32_t px = tconv_range(ox, p->pad_w, p->stride_w, p->k_w, p->in_w, &ix0, &ix1, &full_x);
                const int32_t tx = ox + p->pad_w;
                const int32_t *folded = p->bias_folded + (py * p->stride_w + px) * p->out_c;
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int8_t *wc = w + oc * w_per_oc;
                    int32_t acc;
                    if (full_y && full_x)
                        acc = tconv_pixel_s8(folded[oc], img, wc, p, ty, tx, iy0, iy1, ix0, ix1, 0);
                    else
                        acc = tconv_pixel_s8(p->bias[oc], img, wc, p, ty, tx, iy0, iy1, ix0, ix1,
                                             p->input_offset);
                    acc = mm_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
                    *o++ = (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* int16x8: TFLM ignores the zero points and accumulates in 64 bits. */
void mm_transpose_conv_s16(const mm_tconv_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
    const int32_t in_c = p->in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * in_c;
    int16_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *img = in + b * p->in_h * p->in_w * in_c;
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
                    const int8_t *wc = w + oc * w_per_oc;
                    int64_t acc = 0;
                    for (int32_t iy = iy0; iy < iy1; ++iy) {
                        const int32_t fy = ty - iy * p->stride_h;
                        for (int32_t ix = ix0; ix < ix1; ++ix) {
                            const int32_t fx = tx - ix * p->stride_w;
                            const int16_t *x = img + (iy * p->in_w + ix) * in_c;
                            const int8_t *wt = wc + (fy * p->k_w + fx) * in_c;
                            for (int32_t c = 0; c < in_c; ++c) acc += (int32_t)x[c] * wt[c];
                        }
                    }
                    const int32_t r = mm_requantize_s64(acc + p->bias64[oc], p->multiplier[oc], p->shift[oc]);
                    *o++ = (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
                }
            }
        }
    }
}

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
