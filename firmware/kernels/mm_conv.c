/* mm_conv.c - portable CONV_2D kernels.
 *
 * Per output pixel the range of filter taps that lands inside the image is
 * computed once, so the multiply-accumulate loops carry no bounds checks.
 * The innermost loop runs over input channels, which are contiguous in both
 * the input pixel and the filter; with dilation 1 and no groups a whole
 * filter row is one contiguous run.
 */
#include "mm_conv.h"
#include "mm_isa.h"

/* Taps f in [lo, hi) with 0 <= origin + f*dil < size, clipped to [0, k). */
MM_INLINE void conv_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size, int32_t *lo, int32_t *hi)
{
    int32_t a = origin < 0 ? (-origin + dil - 1) / dil : 0;
    int32_t r = size - 1 - origin;
    int32_t b = r < 0 ? 0 : r / dil + 1;
    if (b > k) b = k;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ---- int8 and int16x8: one kernel (mm_conv.inc) per type, with these per-type parts */

/* acc + the dot product of a run of n inputs (plus `off`) with n weights. `off` is a literal 0
 * for unclipped int8 windows (folded into the bias) and for int16, so the add disappears there. */
MM_INLINE int32_t conv_run_s8(int32_t acc, const int8_t *x, const int8_t *w, int32_t n, int32_t off)
{
    if (off == 0) return mm_dot_s8(acc, x, w, n);
    for (int32_t i = 0; i < n; ++i) acc += ((int32_t)x[i] + off) * w[i];
    return acc;
}

MM_INLINE int64_t conv_run_s16(int64_t acc, const int16_t *x, const int8_t *w, int32_t n, int32_t off)
{
    (void)off;
    for (int32_t i = 0; i < n; ++i) acc += (int32_t)x[i] * w[i];
    return acc;
}

/* the accumulator's start: int8 the folded bias (unclipped window) or the raw bias; int16 0 */
MM_INLINE int32_t conv_start_s8(const mm_conv_params *p, int32_t oc, int full)
{
    return full ? p->bias_folded[oc] : p->bias[oc];
}

MM_INLINE int64_t conv_start_s16(const mm_conv_params *p, int32_t oc, int full)
{
    (void)p, (void)oc, (void)full;
    return 0;
}

MM_INLINE int8_t conv_out_s8(const mm_conv_params *p, int32_t acc, int32_t oc)
{
    acc = mm_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
    return (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
}

/* int16x8: TFLM ignores the input and output zero points (symmetric int16).
 * The accumulator is 64-bit unless the bias is int32 (bias64 == NULL), then
 * TFLM accumulates in wrap-around int32, which is the low 32 bits of ours. */
MM_INLINE int16_t conv_out_s16(const mm_conv_params *p, int64_t acc, int32_t oc)
{
    int32_t r;
    if (p->bias64) {
        r = mm_requantize_s64(acc + p->bias64[oc], p->multiplier[oc], p->shift[oc]);
    } else {
        const int32_t acc32 = (int32_t)(uint32_t)((uint32_t)acc + (uint32_t)p->bias[oc]);
        r = mm_requantize(acc32, p->multiplier[oc], p->shift[oc]);
    }
    return (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

#define MM_T           int8_t
#define MM_ACC         int32_t
#define MM_SFX         s8
#define MM_CONV_OFFSET 1
#include "mm_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_CONV_OFFSET

#define MM_T           int16_t
#define MM_ACC         int64_t
#define MM_SFX         s16
#define MM_CONV_OFFSET 0
#include "mm_conv.inc"
#undef MM_T
#undef MM_ACC
#undef MM_SFX
#undef MM_CONV_OFFSET

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
                const int32_t x_start =
                    (ny > 0 && nx > 0) ? (y0 + fy0 * p->dil_h) * img_row + (x0 + fx0 * p->dil_w) * in_c : 0;
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
