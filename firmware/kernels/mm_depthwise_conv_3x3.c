/* mm_depthwise_conv_3x3.c - 3x3 depthwise kernels for DSP / MVE targets
 * (layouts and requantization in mm_depthwise_conv_3x3.h). */
#include "mm_depthwise_conv_3x3.h"

/* The pad row: dw3_s8 / dw3_s16 fill in_c rounded up to 4 elements (they read at most
 * in_c of them); the Helium int8 kernel fills in_c rounded up to 8 (its loads are
 * predicated to in_c). */
int32_t mm_depthwise_conv_3x3_s8_get_buffer_size_isa(int32_t isa, int32_t in_c)
{
    if (isa == MM_ISA_MVE) return (in_c + 7) & ~7;
    return isa == MM_ISA_DSP ? (in_c + 3) & ~3 : -1;
}

int32_t mm_depthwise_conv_3x3_s8_get_buffer_size(int32_t in_c)
{
    return mm_depthwise_conv_3x3_s8_get_buffer_size_isa(MM_TARGET_ISA, in_c);
}

int32_t mm_depthwise_conv_3x3_s8_q_get_buffer_size_isa(int32_t isa, int32_t in_c)
{
    return isa == MM_ISA_DSP || isa == MM_ISA_MVE ? (in_c + 3) & ~3 : -1; /* dw3_s8 on both */
}

int32_t mm_depthwise_conv_3x3_s8_q_get_buffer_size(int32_t in_c)
{
    return mm_depthwise_conv_3x3_s8_q_get_buffer_size_isa(MM_TARGET_ISA, in_c);
}

int32_t mm_depthwise_conv_3x3_s16_get_buffer_size_isa(int32_t isa, int32_t in_c)
{
    return isa == MM_ISA_DSP || isa == MM_ISA_MVE ? ((in_c + 3) & ~3) * (int32_t)sizeof(int16_t) : -1;
}

int32_t mm_depthwise_conv_3x3_s16_get_buffer_size(int32_t in_c)
{
    return mm_depthwise_conv_3x3_s16_get_buffer_size_isa(MM_TARGET_ISA, in_c);
}

int32_t mm_depthwise_conv_3x3_s16_q_get_buffer_size_isa(int32_t isa, int32_t in_c)
{
    return mm_depthwise_conv_3x3_s16_get_buffer_size_isa(isa, in_c); /* the same dw3_s16 */
}

int32_t mm_depthwise_conv_3x3_s16_q_get_buffer_size(int32_t in_c)
{
    return mm_depthwise_conv_3x3_s16_q_get_buffer_size_isa(MM_TARGET_ISA, in_c);
}

/* The family runs only on DSP and Helium targets (the compiler picks it only for those): on a
 * plain target the file defines nothing but the buffer sizes. */
#if MM_TARGET_ISA != MM_ISA_PLAIN

/* The nine tap pointers of the window at (y0, x0): into the image, or the pad row. */
MM_INLINE void dw3_table(const void **tp, const uint8_t *img, const void *pad, int32_t y0, int32_t x0,
                         const mm_dw3x3_params *p, int32_t pix_bytes)
{
    const int32_t row_bytes = p->in_w * pix_bytes;
    for (int32_t r = 0; r < 3; ++r) {
        const int32_t y = y0 + r * p->dil_h;
        if ((uint32_t)y < (uint32_t)p->in_h) {
            const uint8_t *row = img + y * row_bytes;
            for (int32_t j = 0; j < 3; ++j) {
                const int32_t x = x0 + j * p->dil_w;
                tp[3 * r + j] = (uint32_t)x < (uint32_t)p->in_w ? (const void *)(row + x * pix_bytes) : pad;
            }
        } else {
            tp[3 * r] = tp[3 * r + 1] = tp[3 * r + 2] = pad;
        }
    }
}

/* ------------------------------------------------------------------ int8 */
/* n (1..4) bytes at p as one little-endian word; n is a constant after inlining */
MM_INLINE int32_t dw_ld8x4(const int8_t *p, int32_t n)
{
    if (n >= 4) return mm_read_s32(p);
    uint32_t v = 0;
    for (int32_t k = 0; k < n; ++k) v |= (uint32_t)(uint8_t)p[k] << (8 * k);
    return (int32_t)v;
}

/* one group of n (4, or the 1..3 left over) channels of one output pixel */
MM_INLINE void dw3_s8_group(const mm_dw3x3_params *p, const int8_t *const *t8, int32_t c, const int32_t *w,
                            const int32_t *bias, const int32_t *q, int8_t *o, const int32_t n, const int fast,
                            const int clamp, uint32_t lo4, uint32_t hi4)
{
    int32_t a[4] = {bias[0], bias[1], bias[2], bias[3]};
    if (n == 4) {
        mm_dw3_s8x4(a, t8, c, w);
    } else {
        for (int32_t r = 0; r < 3; ++r)
            mm_dw3_row_s8x4(a, dw_ld8x4(t8[3 * r] + c, n), dw_ld8x4(t8[3 * r + 1] + c, n),
                            dw_ld8x4(t8[3 * r + 2] + c, n), w + 6 * r);
    }
    int32_t r[4];
    if (fast) {
        mm_rq4_s8(r, a, q);
    } else {
        const int32_t *m = p->multiplier + c, *sh = p->shift + c, oo = p->output_offset;
        for (int32_t k = 0; k < 4; ++k) r[k] = k < n ? mm_ssat8(mm_requantize(a[k], m[k], sh[k]) + oo) : 0;
    }
    uint32_t v = mm_pack_s8x4(r[0], r[1], r[2], r[3]);
    if (clamp) v = mm_clamp_s8x4(v, lo4, hi4);
    if (n == 4) {
        mm_write_s32(o + c, (int32_t)v);
    } else {
        for (int32_t k = 0; k < n; ++k) o[c + k] = (int8_t)(v >> (8 * k));
    }
}

MM_INLINE void dw3_s8(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch, const int fast)
{
    const int32_t in_c = p->in_c, full = in_c & ~3, rem = in_c & 3;
    int8_t *pad = (int8_t *)scratch;
    for (int32_t i = 0; i < ((in_c + 3) & ~3); ++i) pad[i] = (int8_t)p->input_zp;
    const int clamp = p->act_min > -128 || p->act_max < 127;
    const uint32_t lo4 = (uint32_t)(uint8_t)p->act_min * 0x01010101u;
    const uint32_t hi4 = (uint32_t)(uint8_t)p->act_max * 0x01010101u;
    const void *tp[9];
    int8_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const uint8_t *img = (const uint8_t *)(in + b * p->in_h * p->in_w * in_c);
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                dw3_table(tp, img, pad, y0, ox * p->stride_w - p->pad_w, p, in_c);
                const int8_t *const *t8 = (const int8_t *const *)tp;
                const int32_t *w = p->w, *bias = p->bias, *q = p->rq;
                int32_t c = 0;
                for (; c < full; c += 4, w += 18, bias += 4, q += 12)
                    dw3_s8_group(p, t8, c, w, bias, q, o, 4, fast, clamp, lo4, hi4);
                if (rem) dw3_s8_group(p, t8, c, w, bias, q, o, rem, fast, clamp, lo4, hi4);
                o += in_c;
            }
        }
    }
}

#if MM_TARGET_ISA == MM_ISA_MVE
/* Helium, fast requantization only (the compiler picks the DSP _q kernel otherwise).
 * Eight channels a group in int16 lanes: per tap VLDRB.S16 (8 inputs), VLDRH (8
 * doubled int16 weights), VMULLB / VMULLT into even / odd channel int32 lanes,
 * two VADDs. Per group of 8 channels the compiler lays out:
 *   w:    9 taps x 8 int16
 *   bias: even channels [c0 c2 c4 c6], odd [c1 c3 c5 c7] (doubled, folded)
 *   rq:   M even, M odd, C even, C odd, -E even, -E odd (4 int32 each) */
MM_INLINE int32x4_t dw3_mve_rq(int32x4_t acc, const int32_t *q, int32x4_t lo, int32x4_t hi)
{
    int32x4_t u = vaddq_s32(vrmulhq_s32(acc, vldrwq_s32(q)), vldrwq_s32(q + 8));
    u = vaddq_s32(u, vshrq_n_s32(acc, 31));
    u = vshlq_s32(u, vldrwq_s32(q + 16));
    return vminq_s32(vmaxq_s32(u, lo), hi);
}

/* one group of 8 channels; n = 0: all 8, else the n (1..7) left over (predicated) */
MM_INLINE void dw3_mve_group(const int8_t *const *t8, int32_t c, const int16_t *w, const int32_t *bias,
                             const int32_t *q, int8_t *o, int32x4_t lo, int32x4_t hi, const int32_t n)
{
    const mve_pred16_t pr = vctp16q((uint32_t)n);
    int32x4_t ae = vldrwq_s32(bias), ao = vldrwq_s32(bias + 4);
#pragma GCC unroll 3
    for (int32_t k = 0; k < 9; ++k) {
        const int16x8_t x = n ? vldrbq_z_s16(t8[k] + c, pr) : vldrbq_s16(t8[k] + c);
        const int16x8_t wv = vldrhq_s16(w + 8 * k);
        ae = vaddq_s32(ae, vmullbq_int_s16(x, wv));
        ao = vaddq_s32(ao, vmulltq_int_s16(x, wv));
    }
    int16x8_t r = vdupq_n_s16(0);
    r = vmovnbq_s32(r, dw3_mve_rq(ae, q, lo, hi));
    r = vmovntq_s32(r, dw3_mve_rq(ao, q + 4, lo, hi));
    if (n)
        vstrbq_p_s16(o + c, r, pr);
    else
        vstrbq_s16(o + c, r);
}

MM_INLINE void dw3_s8_mve(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    const int32_t in_c = p->in_c;
    int8_t *pad = (int8_t *)scratch;
    for (int32_t i = 0; i < ((in_c + 7) & ~7); ++i) pad[i] = (int8_t)p->input_zp;
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    const void *tp[9];
    int8_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const uint8_t *img = (const uint8_t *)(in + b * p->in_h * p->in_w * in_c);
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                dw3_table(tp, img, pad, y0, ox * p->stride_w - p->pad_w, p, in_c);
                const int8_t *const *t8 = (const int8_t *const *)tp;
                const int16_t *w = (const int16_t *)p->w;
                const int32_t *bias = p->bias, *q = p->rq;
                int32_t c = 0;
                for (; c + 8 <= in_c; c += 8, w += 72, bias += 8, q += 24)
                    dw3_mve_group(t8, c, w, bias, q, o, lo, hi, 0);
                if (c < in_c) dw3_mve_group(t8, c, w, bias, q, o, lo, hi, in_c - c);
                o += in_c;
            }
        }
    }
}
#endif

void mm_depthwise_conv_3x3_s8(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    dw3_s8_mve(p, in, out, scratch);
#else
    dw3_s8(p, in, out, scratch, 1);
#endif
}

void mm_depthwise_conv_3x3_s8_q(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    dw3_s8(p, in, out, scratch, 0);
}

/* ----------------------------------------------------------------- int16x8 */
/* channels k, k+1 at p as [lo, hi]; n (0..2) valid, a constant after inlining */
MM_INLINE int32_t dw_ld16x2(const int16_t *p, int32_t n)
{
    if (n >= 2) return mm_read_s32(p);
    return n == 1 ? (int32_t)(uint16_t)p[0] : 0;
}

MM_INLINE void dw3_s16_group(int32_t acc[4], const int16_t *const *tp, int32_t c, const int32_t *w, int32_t n)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int32_t na = n < 2 ? n : 2, nb = n < 2 ? 0 : n - 2;
    for (int32_t r = 0; r < 3; ++r, w += 6) {
        const int16_t *t0 = tp[3 * r] + c, *t1 = tp[3 * r + 1] + c, *t2 = tp[3 * r + 2] + c;
        const int32_t x0a = dw_ld16x2(t0, na), x1a = dw_ld16x2(t1, na), x2a = dw_ld16x2(t2, na);
        a0 = mm_smlad(mm_pack_lo16(x0a, x1a), w[0], a0);
        a1 = mm_smlad(mm_pack_hi16(x0a, x1a), w[1], a1);
        a0 = mm_smlabb(x2a, w[4], a0);
        a1 = mm_smlatt(x2a, w[4], a1);
        if (nb > 0) {
            const int32_t x0b = dw_ld16x2(t0 + 2, nb), x1b = dw_ld16x2(t1 + 2, nb),
                          x2b = dw_ld16x2(t2 + 2, nb);
            a2 = mm_smlad(mm_pack_lo16(x0b, x1b), w[2], a2);
            a3 = mm_smlad(mm_pack_hi16(x0b, x1b), w[3], a3);
            a2 = mm_smlabb(x2b, w[5], a2);
            a3 = mm_smlatt(x2b, w[5], a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

MM_INLINE void dw3_s16(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch,
                       const int fast)
{
    const int32_t in_c = p->in_c, full = in_c & ~3, rem = in_c & 3;
    int16_t *pad = (int16_t *)scratch;
    for (int32_t i = 0; i < ((in_c + 3) & ~3); ++i) pad[i] = 0;
    const void *tp[9];
    int16_t *o = out;
    for (int32_t b = 0; b < p->batches; ++b) {
        const uint8_t *img = (const uint8_t *)(in + b * p->in_h * p->in_w * in_c);
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                dw3_table(tp, img, pad, y0, ox * p->stride_w - p->pad_w, p, in_c * 2);
                const int16_t *const *t16 = (const int16_t *const *)tp;
                const int32_t *w = p->w;
                for (int32_t c = 0;; c += 4, w += 18) {
                    const int32_t n = c < full ? 4 : rem;
                    if (n == 0) break;
                    int32_t acc[4];
                    if (n == 4)
                        dw3_s16_group(acc, t16, c, w, 4);
                    else
                        dw3_s16_group(acc, t16, c, w, rem);
                    for (int32_t k = 0; k < n; ++k) {
                        const int32_t r = fast ? mm_smmulr(p->bias[c + k] + acc[k], p->rq[c + k])
                                               : mm_requantize_s64(p->bias64[c + k] + acc[k],
                                                                   p->multiplier[c + k], p->shift[c + k]);
                        o[c + k] = (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
                    }
                    if (n < 4) break;
                }
                o += in_c;
            }
        }
    }
}

/* fast: (x * R + 2^(T-1)) >> T with x = bias + acc in int32 and 16 <= T <= 32 is
 * SMMULR(x, R << (32 - T)); rq holds R << (32 - T) (the compiler checked the bounds) */
void mm_depthwise_conv_3x3_s16(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch)
{
    dw3_s16(p, in, out, scratch, 1);
}

void mm_depthwise_conv_3x3_s16_q(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch)
{
    dw3_s16(p, in, out, scratch, 0);
}

#endif /* MM_TARGET_ISA != MM_ISA_PLAIN */
