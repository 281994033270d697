/* mm_conv.c - portable CONV_2D kernels.
 *
 * Per output pixel the range of filter taps that lands inside the image is
 * computed once, so the multiply-accumulate loops carry no bounds checks.
 * The innermost loop runs over input channels, which are contiguous in both
 * the input pixel and the filter; with dilation 1 and no groups a whole
 * filter row is one contiguous run.
 */
#include "mm_conv.h"

/* Taps f in [lo, hi) with 0 <= origin + f*dil < size, clipped to [0, k). */
MM_INLINE void conv_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size,
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

/* Shared walk over the taps of one output pixel for one output channel.
 * `xr` points at input tap (fy0, fx0) channel 0 of the channel's group,
 * `wr` at the filter tap (fy0, fx0). `off` is a literal 0 for unclipped
 * int8 windows (folded into the bias), so the compiler drops the add. */
MM_INLINE int32_t conv_window_s8(int32_t acc, const int8_t *xr, const int8_t *wr,
                                 int32_t ny, int32_t nx, int32_t kc, int32_t merge,
                                 int32_t x_row, int32_t x_tap, int32_t w_row, int32_t off)
{
    for (int32_t y = 0; y < ny; ++y) {
        const int8_t *x = xr, *wt = wr;
        if (merge) {
            const int32_t n = nx * kc;
            for (int32_t i = 0; i < n; ++i) acc += ((int32_t)x[i] + off) * wt[i];
        } else {
            for (int32_t t = 0; t < nx; ++t) {
                for (int32_t i = 0; i < kc; ++i) acc += ((int32_t)x[i] + off) * wt[i];
                x += x_tap;
                wt += kc;
            }
        }
        xr += x_row;
        wr += w_row;
    }
    return acc;
}

void mm_conv_s8(const mm_conv_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t in_c = p->in_c, kc = p->k_c, opg = p->oc_per_group;
    const int32_t groups = p->out_c / opg;
    const int32_t img_row = p->in_w * in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * kc;
    const int32_t merge = (p->dil_w == 1 && kc == in_c);
    const int32_t x_row = p->dil_h * img_row, x_tap = p->dil_w * in_c, w_row = p->k_w * kc;
    int8_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *img = in + b * p->in_h * img_row;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            conv_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                conv_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                const int32_t ny = fy1 - fy0, nx = fx1 - fx0;
                const int full = (ny == p->k_h && nx == p->k_w);
                const int32_t x_start = (ny > 0 && nx > 0)
                    ? (y0 + fy0 * p->dil_h) * img_row + (x0 + fx0 * p->dil_w) * in_c : 0;
                const int32_t w_start = fy0 * w_row + fx0 * kc;
                for (int32_t g = 0; g < groups; ++g) {
                    const int8_t *xg = img + x_start + g * kc;
                    for (int32_t j = 0; j < opg; ++j) {
                        const int32_t oc = g * opg + j;
                        const int8_t *wc = w + oc * w_per_oc + w_start;
                        int32_t acc;
                        if (full)
                            acc = conv_window_s8(p->bias_folded[oc], xg, wc, ny, nx, kc, merge,
                                                 x_row, x_tap, w_row, 0);
                        else
                            acc = conv_window_s8(p->bias[oc], xg, wc, ny, nx, kc, merge,
                                                 x_row, x_tap, w_row, p->input_offset);
                        acc = mm_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
                        *o++ = (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

MM_INLINE int64_t conv_window_s16(int64_t acc, const int16_t *xr, const int8_t *wr,
                                  int32_t ny, int32_t nx, int32_t kc, int32_t merge,
                                  int32_t x_row, int32_t x_tap, int32_t w_row)
{
    for (int32_t y = 0; y < ny; ++y) {
        const int16_t *x = xr;
        const int8_t *wt = wr;
        if (merge) {
            const int32_t n = nx * kc;
            for (int32_t i = 0; i < n; ++i) acc += (int32_t)x[i] * wt[i];
        } else {
            for (int32_t t = 0; t < nx; ++t) {
                for (int32_t i = 0; i < kc; ++i) acc += (int32_t)x[i] * wt[i];
                x += x_tap;
                wt += kc;
            }
        }
        xr += x_row;
        wr += w_row;
    }
    return acc;
}

/* int16x8: TFLM ignores the input and output zero points (symmetric int16).
 * The accumulator is 64-bit unless the bias is int32 (bias64 == NULL), then
 * TFLM accumulates in wrap-around int32, which is the low 32 bits of ours. */
void mm_conv_s16(const mm_conv_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
    const int32_t in_c = p->in_c, kc = p->k_c, opg = p->oc_per_group;
    const int32_t groups = p->out_c / opg;
    const int32_t img_row = p->in_w * in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * kc;
    const int32_t merge = (p->dil_w == 1 && kc == in_c);
    const int32_t x_row = p->dil_h * img_row, x_tap = p->dil_w * in_c, w_row = p->k_w * kc;
    int16_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *img = in + b * p->in_h * img_row;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            conv_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                conv_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                const int32_t ny = fy1 - fy0, nx = fx1 - fx0;
                const int32_t x_start = (ny > 0 && nx > 0)
                    ? (y0 + fy0 * p->dil_h) * img_row + (x0 + fx0 * p->dil_w) * in_c : 0;
                const int32_t w_start = fy0 * w_row + fx0 * kc;
                for (int32_t g = 0; g < groups; ++g) {
                    const int16_t *xg = img + x_start + g * kc;
                    for (int32_t j = 0; j < opg; ++j) {
                        const int32_t oc = g * opg + j;
                        const int8_t *wc = w + oc * w_per_oc + w_start;
                        const int64_t acc = conv_window_s16(0, xg, wc, ny, nx, kc, merge,
                                                            x_row, x_tap, w_row);
                        int32_t r;
                        if (p->bias64) {
                            r = mm_requantize_s64(acc + p->bias64[oc], p->multiplier[oc], p->shift[oc]);
                        } else {
                            const int32_t acc32 = (int32_t)(uint32_t)((uint32_t)acc + (uint32_t)p->bias[oc]);
                            r = mm_requantize(acc32, p->multiplier[oc], p->shift[oc]);
                        }
                        *o++ = (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

/* float32: the products are summed in TFLM's order (fy, fx, channel),
 * starting from 0.0f, then the bias (0.0f when absent) is added. */
void mm_conv_f32(const mm_conv_f32_params *p, const float *in, const float *w, float *out)
{
    const int32_t in_c = p->in_c, kc = p->k_c, opg = p->oc_per_group;
    const int32_t groups = p->out_c / opg;
    const int32_t img_row = p->in_w * in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * kc;
    const int32_t merge = (p->dil_w == 1 && kc == in_c);
    const int32_t x_row = p->dil_h * img_row, x_tap = p->dil_w * in_c, w_row = p->k_w * kc;
    float *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *img = in + b * p->in_h * img_row;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            conv_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                conv_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                const int32_t ny = fy1 - fy0, nx = fx1 - fx0;
                const int32_t x_start = (ny > 0 && nx > 0)
                    ? (y0 + fy0 * p->dil_h) * img_row + (x0 + fx0 * p->dil_w) * in_c : 0;
                const int32_t w_start = fy0 * w_row + fx0 * kc;
                for (int32_t g = 0; g < groups; ++g) {
                    const float *xg = img + x_start + g * kc;
                    for (int32_t j = 0; j < opg; ++j) {
                        const int32_t oc = g * opg + j;
                        const float *xr = xg, *wr = w + oc * w_per_oc + w_start;
                        float acc = 0.0f;
                        for (int32_t y = 0; y < ny; ++y) {
                            const float *x = xr, *wt = wr;
                            if (merge) {
                                const int32_t n = nx * kc;
                                for (int32_t i = 0; i < n; ++i) acc += x[i] * wt[i];
                            } else {
                                for (int32_t t = 0; t < nx; ++t) {
                                    for (int32_t i = 0; i < kc; ++i) acc += x[i] * wt[i];
                                    x += x_tap;
                                    wt += kc;
                                }
                            }
                            xr += x_row;
                            wr += w_row;
                        }
                        acc = acc + (p->bias ? p->bias[oc] : 0.0f);
                        acc = acc < p->act_min ? p->act_min : acc;
                        acc = p->act_max < acc ? p->act_max : acc;
                        *o++ = acc;
                    }
                }
            }
        }
    }
}
