/* mm_hybrid.c - portable dynamic-range (float activations, int8 weights) kernels. */
#include "mm_hybrid.h"
#include "mm_isa.h"

#include <math.h>
#include <string.h>

/* Round x * inv to an integer the way the TF Lite x86 build does (its NEON kernels
 * through a NEON-to-SSE layer): the first n & ~7 values with trunc(m + copysign(0.5, m))
 * in float arithmetic, the tail with roundf. The two differ only when m + 0.5 rounds
 * (e.g. 0.49999997 + 0.5 == 1.0f). */
MM_INLINE int32_t hybrid_round(float m, int32_t vectorized)
{
    if (vectorized) return (int32_t)(m + (m < 0.0f ? -0.5f : 0.5f));
    return (int32_t)roundf(m);
}

void mm_hybrid_quantize(const float *x, int32_t n, int8_t *q, int32_t asymmetric, float *scale,
                        int32_t *offset)
{
    const int32_t vec_end = n & ~7;
    float lo = x[0], hi = x[0];
    for (int32_t i = 1; i < n; ++i) {
        if (x[i] < lo) lo = x[i];
        if (!(x[i] < hi)) hi = x[i];
    }
    if (!asymmetric) {
        const float alo = fabsf(lo), ahi = fabsf(hi);
        const float range = alo < ahi ? ahi : alo;
        *offset = 0;
        if (range == 0.0f) {
            memset(q, 0, (size_t)n);
            *scale = 1.0f;
            return;
        }
        *scale = range / 127.0f;
        const float inv = 127.0f / range;
        for (int32_t i = 0; i < n; ++i) {
            const int32_t v = hybrid_round(inv * x[i], i < vec_end);
            q[i] = (int8_t)mm_clamp_i32(v, -127, 127);
        }
        return;
    }
    /* asymmetric: the range always includes 0; its width in float, the scale and the
     * zero point in double, the reciprocal of the (float) scale in double */
    const float flo = lo < 0.0f ? lo : 0.0f;
    const float fhi = 0.0f < hi ? hi : 0.0f;
    if (flo == fhi) {
        memset(q, 0, (size_t)n);
        *scale = 1.0f;
        *offset = 0;
        return;
    }
    const double rmin = (double)flo, rmax = (double)fhi;
    const double s = (double)(fhi - flo) / 255.0;
    const double zp_min = -128.0 - rmin / s;
    const double zp_max = 127.0 - rmax / s;
    const double err_min = 128.0 + fabs(rmin / s);
    const double err_max = 127.0 + fabs(rmax / s);
    const double zp = err_min < err_max ? zp_min : zp_max;
    int32_t z;
    if (zp <= -128.0)
        z = -128;
    else if (zp >= 127.0)
        z = 127;
    else
        z = (int32_t)(int8_t)round(zp);
    *scale = (float)s;
    *offset = z;
    const float inv = (float)(1.0 / (double)*scale);
    for (int32_t i = 0; i < n; ++i) {
        const int32_t v = z + hybrid_round(inv * x[i], i < vec_end);
        q[i] = (int8_t)mm_clamp_i32(v, -128, 127);
    }
}

MM_INLINE float hybrid_clamp(float v, float lo, float hi)
{
    v = v < lo ? lo : v; /* std::max(v, lo) then std::min(., hi), as the reference */
    return hi < v ? hi : v;
}

/* the quantized input: one batch row (fully connected), one image (convolutions) */
int32_t mm_fully_connected_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_depth)
{
    (void)isa;
    return in_depth;
}

int32_t mm_fully_connected_hybrid_get_buffer_size(int32_t in_depth)
{
    return mm_fully_connected_hybrid_get_buffer_size_isa(MM_TARGET_ISA, in_depth);
}

int32_t mm_conv_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_h, int32_t in_w, int32_t in_c)
{
    (void)isa;
    return in_h * in_w * in_c;
}

int32_t mm_conv_hybrid_get_buffer_size(int32_t in_h, int32_t in_w, int32_t in_c)
{
    return mm_conv_hybrid_get_buffer_size_isa(MM_TARGET_ISA, in_h, in_w, in_c);
}

int32_t mm_depthwise_conv_hybrid_get_buffer_size_isa(int32_t isa, int32_t in_h, int32_t in_w, int32_t in_c)
{
    (void)isa;
    return in_h * in_w * in_c;
}

int32_t mm_depthwise_conv_hybrid_get_buffer_size(int32_t in_h, int32_t in_w, int32_t in_c)
{
    return mm_depthwise_conv_hybrid_get_buffer_size_isa(MM_TARGET_ISA, in_h, in_w, in_c);
}

void mm_fully_connected_hybrid(const mm_fc_hybrid_params *p, const float *in, const int8_t *w, float *out,
                               void *scratch)
{
    int8_t *q = (int8_t *)scratch;
    const int32_t depth = p->in_depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        float sf;
        int32_t zp;
        mm_hybrid_quantize(in + b * depth, depth, q, p->asymmetric, &sf, &zp);
        if (!p->w_scale) sf *= p->w_scale0;
        float *o = out + b * p->out_depth;
        for (int32_t c = 0; c < p->out_depth; ++c) {
            const int8_t *wc = w + c * depth;
            int32_t acc = 0;
            for (int32_t d = 0; d < depth; ++d) acc += (int32_t)wc[d] * q[d];
            if (p->asymmetric) acc -= p->row_sums[c] * zp;
            const float scale = p->w_scale ? sf * p->w_scale[c] : sf;
            float v = p->bias ? p->bias[c] : 0.0f;
            v += (float)acc * scale;
            o[c] = hybrid_clamp(v, p->act_min, p->act_max);
        }
    }
}

/* Taps f in [lo, hi) with 0 <= origin + f*dil < size, clipped to [0, k). */
MM_INLINE void hybrid_tap_range(int32_t origin, int32_t dil, int32_t k, int32_t size, int32_t *lo,
                                int32_t *hi)
{
    int32_t a = origin < 0 ? (-origin + dil - 1) / dil : 0;
    int32_t r = size - 1 - origin;
    int32_t e = r < 0 ? 0 : r / dil + 1;
    if (e > k) e = k;
    if (a > e) a = e;
    *lo = a;
    *hi = e;
}

void mm_conv_hybrid(const mm_conv_hybrid_params *p, const float *in, const int8_t *w, float *out,
                    void *scratch)
{
    int8_t *q = (int8_t *)scratch;
    const int32_t in_c = p->in_c, kc = p->k_c, opg = p->oc_per_group;
    const int32_t img = p->in_h * p->in_w * in_c;
    const int32_t w_per_oc = p->k_h * p->k_w * kc;
    float *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        float sf;
        int32_t zp;
        mm_hybrid_quantize(in + b * img, img, q, p->per_channel, &sf, &zp);
        if (!p->per_channel) sf *= p->w_scale0;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            hybrid_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                hybrid_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                for (int32_t oc = 0; oc < p->out_c; ++oc) {
                    const int32_t g = oc / opg;
                    const int8_t *wc = w + oc * w_per_oc;
                    int32_t acc = 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int32_t iy = y0 + fy * p->dil_h;
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            const int32_t ix = x0 + fx * p->dil_w;
                            const int8_t *xp = q + (iy * p->in_w + ix) * in_c + g * kc;
                            const int8_t *wp = wc + (fy * p->k_w + fx) * kc;
                            for (int32_t i = 0; i < kc; ++i) acc += (int32_t)wp[i] * ((int32_t)xp[i] - zp);
                        }
                    }
                    float v;
                    if (p->per_channel) {
                        v = (float)acc * p->w_scale[oc] * sf;
                        if (p->bias) v += p->bias[oc];
                    } else {
                        v = (float)acc * sf;
                        if (p->bias) v = v + p->bias[oc];
                    }
                    *o++ = hybrid_clamp(v, p->act_min, p->act_max);
                }
            }
        }
    }
}

void mm_depthwise_conv_hybrid(const mm_conv_hybrid_params *p, const float *in, const int8_t *w, float *out,
                              void *scratch)
{
    int8_t *q = (int8_t *)scratch;
    const int32_t in_c = p->in_c, out_c = p->out_c, dm = p->depth_mult;
    const int32_t img = p->in_h * p->in_w * in_c;
    float *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        float sf;
        int32_t zp;
        mm_hybrid_quantize(in + b * img, img, q, 1, &sf, &zp);
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy0, fy1;
            hybrid_tap_range(y0, p->dil_h, p->k_h, p->in_h, &fy0, &fy1);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx0, fx1;
                hybrid_tap_range(x0, p->dil_w, p->k_w, p->in_w, &fx0, &fx1);
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    const int32_t ic = oc / dm;
                    int32_t acc = 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        const int32_t iy = y0 + fy * p->dil_h;
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            const int32_t ix = x0 + fx * p->dil_w;
                            const int32_t xv = q[(iy * p->in_w + ix) * in_c + ic];
                            acc += (int32_t)w[(fy * p->k_w + fx) * out_c + oc] * (xv - zp);
                        }
                    }
                    float v = (float)acc;
                    v *= p->w_scale[oc] * sf;
                    if (p->bias) v += p->bias[oc];
                    *o++ = hybrid_clamp(v, p->act_min, p->act_max);
                }
            }
        }
    }
}
