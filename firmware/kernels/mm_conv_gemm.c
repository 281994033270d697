/* mm_conv_gemm.c - CONV_2D as patch x weight-row dot products (DSP and Helium
 * paths); layouts and the reasoning are in mm_conv_gemm.h. */
#include <string.h>
#include "mm_conv_gemm.h"

/* CONV_2D of one group runs this kernel only on DSP and Helium targets (the compiler picks it
 * only for those): on a plain target the file defines nothing. */
#if MM_TARGET_ISA != MM_ISA_PLAIN

enum { PATCH_S8_TO_S16 = 0, PATCH_S16 = 1, PATCH_S8 = 2 };

#if MM_TARGET_ISA == MM_ISA_MVE
/* int8 patches (Helium): runs are short, so predicated vector copies and no library call */
MM_INLINE void copy_s8(int8_t *d, const int8_t *s, int32_t n)
{
    for (int32_t i = 0; i < n; i += 16) {
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        vstrbq_p_s8(d + i, vldrbq_z_s8(s + i, m), m);
    }
}

MM_INLINE void fill_s8(int8_t *d, int32_t n, int32_t value)
{
    const int8x16_t v = vdupq_n_s8((int8_t)value);
    for (int32_t i = 0; i < n; i += 16) vstrbq_p_s8(d + i, v, vctp8q((uint32_t)(n - i)));
}
#else
/* int8 input + offset widened to the int16 patch (DSP): 4 values per SXTAB16 pair */
MM_INLINE void copy_s8_to_s16(int16_t *d, const int8_t *s, int32_t n, int32_t off)
{
    const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) | ((uint32_t)off << 16));
    for (; n >= 4; n -= 4, s += 4, d += 4) {
        const int32_t v = mm_read_s32(s);
        const int32_t a = mm_sxtab16(off2, v);      /* x0, x2 (+ offset) */
        const int32_t b = mm_sxtab16_ror8(off2, v); /* x1, x3 */
        mm_write_s32(d, mm_pkhbt(a, (int32_t)((uint32_t)b << 16)));
        mm_write_s32(d + 2, mm_pkhtb_hi(a, b));
    }
    for (; n > 0; --n) *d++ = (int16_t)(*s++ + off);
}
#endif

/* n input values from src[at..] into the patch at dst[pos..] */
MM_INLINE void patch_copy(int kind, const void *src, int32_t at, void *dst, int32_t pos, int32_t n,
                          int32_t off)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    if (kind == PATCH_S8) {
        copy_s8((int8_t *)dst + pos, (const int8_t *)src + at, n);
        return;
    }
#else
    if (kind == PATCH_S8_TO_S16) {
        copy_s8_to_s16((int16_t *)dst + pos, (const int8_t *)src + at, n, off);
        return;
    }
#endif
    (void)off;
    memcpy((int16_t *)dst + pos, (const int16_t *)src + at, (size_t)n * 2u);
}

MM_INLINE void patch_fill(int kind, void *dst, int32_t pos, int32_t n, int32_t value)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    if (kind == PATCH_S8) {
        fill_s8((int8_t *)dst + pos, n, value);
        return;
    }
#else
    (void)kind;
#endif
    int16_t *d = (int16_t *)dst + pos;
    for (int32_t i = 0; i < n; ++i) d[i] = (int16_t)value;
}

/* The receptive field of output pixel (oy, ox): k_h x k_w x in_c values, then
 * zeros up to k_pad. Taps outside the image get `pad` (contributes nothing). */
MM_INLINE void build_patch(const mm_conv_gemm_params *p, const void *img, int32_t oy, int32_t ox, void *dst,
                           int kind, int32_t pad)
{
    const int32_t in_c = p->in_c, row = p->k_w * in_c;
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    const int full_cols = (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w);
    int32_t pos = 0;
    for (int32_t fy = 0; fy < p->k_h; ++fy, pos += row) {
        const int32_t y = y0 + fy * p->dil_h;
        if (y < 0 || y >= p->in_h) {
            patch_fill(kind, dst, pos, row, pad);
            continue;
        }
        const int32_t base = y * p->in_w;
        if (full_cols) {
            patch_copy(kind, img, (base + x0) * in_c, dst, pos, row, p->input_offset);
            continue;
        }
        for (int32_t fx = 0; fx < p->k_w; ++fx) {
            const int32_t x = x0 + fx * p->dil_w;
            if (x < 0 || x >= p->in_w)
                patch_fill(kind, dst, pos + fx * in_c, in_c, pad);
            else
                patch_copy(kind, img, (base + x) * in_c, dst, pos + fx * in_c, in_c, p->input_offset);
        }
    }
    if (p->k_pad > p->k) patch_fill(kind, dst, p->k, p->k_pad - p->k, 0);
}

/* Output pixels two at a time in raster order, batch after batch:
 *   for (pixel_pair q = pair_first(p); q.batch < p->batches; pair_next(&q))
 * The output geometry is kept in the iterator (registers), not reread from *p. */
typedef struct {
    int32_t out_w, n_pix;       /* the output's width and pixels per batch */
    int32_t batch, base, pix;   /* the batch, its first pixel's index, the pair's first pixel in it */
    int32_t oy0, ox0, oy1, ox1; /* the two pixels; the second only when `two` */
    int two;
} pixel_pair;

MM_INLINE void pair_second(pixel_pair *q)
{
    q->oy1 = q->oy0;
    q->ox1 = q->ox0 + 1;
    if (q->ox1 == q->out_w) {
        q->ox1 = 0;
        ++q->oy1;
    }
    q->two = q->pix + 1 < q->n_pix;
}

MM_INLINE pixel_pair pair_first(const mm_conv_gemm_params *p)
{
    const int32_t n_pix = p->out_h * p->out_w;
    pixel_pair q = {p->out_w, n_pix, n_pix > 0 ? 0 : p->batches, 0, 0, 0, 0, 0, 0, 0};
    pair_second(&q);
    return q;
}

MM_INLINE void pair_next(pixel_pair *q)
{
    q->pix += 2;
    if (q->pix >= q->n_pix) {
        ++q->batch;
        q->base += q->n_pix;
        q->pix = q->oy0 = q->ox0 = 0;
    } else {
        q->oy0 = q->oy1;
        q->ox0 = q->ox1 + 1;
        if (q->ox0 == q->out_w) {
            q->ox0 = 0;
            ++q->oy0;
        }
    }
    pair_second(q);
}

/* index of the pair's first output pixel in the whole output */
MM_INLINE int32_t pair_pixel(const pixel_pair *q)
{
    return q->base + q->pix;
}

MM_INLINE int8_t out_s8(const mm_conv_gemm_params *p, int32_t acc, int32_t c)
{
    acc = mm_requantize(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
    return (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
}

MM_INLINE int16_t out_s16(const mm_conv_gemm_params *p, int64_t acc, int32_t c)
{
    int32_t r;
    if (p->bias64) {
        r = mm_requantize_s64(acc + p->bias64[c], p->multiplier[c], p->shift[c]);
    } else {
        const int32_t acc32 = (int32_t)((uint32_t)acc + (uint32_t)(p->bias ? p->bias[c] : 0));
        r = mm_requantize(acc32, p->multiplier[c], p->shift[c]);
    }
    return (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

#if MM_TARGET_ISA == MM_ISA_MVE
/* TFLM's per-channel requantization (double rounding) of 4 channels at once, exactly:
 * VQRDMULH is SaturatingRoundingDoublingHighMul; RoundingDivideByPOT rounds half away
 * from zero, VRSHL half up, so negative values are first moved down by one. */
MM_INLINE int32x4_t mve_requantize(int32x4_t acc, const mm_conv_gemm_params *p, int32_t c)
{
    const int32x4_t shift = vldrwq_s32(p->shift + c);
    const int32x4_t right = vminq_s32(shift, vdupq_n_s32(0)); /* -right shift */
    acc = vshlq_s32(acc, vmaxq_s32(shift, vdupq_n_s32(0)));
    acc = vqrdmulhq_s32(acc, vldrwq_s32(p->multiplier + c));
    acc = vqaddq_s32(acc, vshrq_n_s32(vandq_s32(acc, right), 31));
    acc = vrshlq_s32(acc, right);
    acc = vaddq_n_s32(acc, p->output_offset);
    acc = vmaxq_s32(acc, vdupq_n_s32(p->act_min));
    return vminq_s32(acc, vdupq_n_s32(p->act_max));
}

/* TFLM's int16x8 requantization (x * R + 2^(T-1)) >> T as one rounding high multiply:
 * rq = R << (32 - T), valid for 16 <= T <= 32 with x in int32 (the compiler checks both). */
MM_INLINE int32x4_t mve_requantize_s16(int32x4_t x, const mm_conv_gemm_params *p, int32_t c)
{
    x = vrmulhq_s32(x, vldrwq_s32(p->rq + c));
    x = vmaxq_s32(x, vdupq_n_s32(p->act_min));
    return vminq_s32(x, vdupq_n_s32(p->act_max));
}
#endif

/* k_pad at level isa: the weight row length the compiler lays out (ops/conv_gemm.py) */
static int32_t gemm_k_pad(int32_t isa, int32_t in_c, int32_t k_h, int32_t k_w)
{
    const int32_t k = k_h * k_w * in_c;
    return isa == MM_ISA_MVE ? (k + 15) & ~15 : (k + 3) & ~3;
}

int32_t mm_conv_gemm_s8_get_buffer_size_isa(int32_t isa, int32_t in_c, int32_t k_h, int32_t k_w)
{
    if (isa != MM_ISA_DSP && isa != MM_ISA_MVE) return -1;
    /* pa, pb: int8 on MVE (padding = the zero point), int16 on DSP */
    return 2 * gemm_k_pad(isa, in_c, k_h, k_w) * (isa == MM_ISA_MVE ? 1 : 2);
}

int32_t mm_conv_gemm_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w)
{
    return mm_conv_gemm_s8_get_buffer_size_isa(MM_TARGET_ISA, in_c, k_h, k_w);
}

int32_t mm_conv_gemm_s16_get_buffer_size_isa(int32_t isa, int32_t in_c, int32_t k_h, int32_t k_w)
{
    if (isa != MM_ISA_DSP && isa != MM_ISA_MVE) return -1;
    return 2 * gemm_k_pad(isa, in_c, k_h, k_w) * 2; /* pa, pb: int16 */
}

int32_t mm_conv_gemm_s16_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w)
{
    return mm_conv_gemm_s16_get_buffer_size_isa(MM_TARGET_ISA, in_c, k_h, k_w);
}

/* int16x8: products are below 2^22 in magnitude, so int32 partial sums of up to
 * 508 products are exact; they are added into the int64 accumulator per chunk. */
#define MM_S16_CHUNK_GROUPS 127

#if MM_TARGET_ISA == MM_ISA_MVE
/* ------------------------------------------------------------------ Helium */
/* all channels of one pixel pair; pa / pb the pair's int8 patches (zero point padding) */
MM_INLINE void conv_s8_mve_pair(const mm_conv_gemm_params *p, const pixel_pair *q, const int8_t *pa,
                                const int8_t *pb, const int8_t *w, int8_t *out)
{
    const int32_t kp = p->k_pad, out_c = p->out_c;
    const int two = q->two;
    int8_t *o0 = out + pair_pixel(q) * out_c, *o1 = o0 + out_c;
    for (int32_t c = 0; c < out_c; c += 4) {
        int32_t acc[8];
        for (int k = 0; k < 4; ++k) acc[k] = acc[4 + k] = p->bias[c + k < out_c ? c + k : c];
        mm_mve_dot_2x4_s8(pa, pb, w + c * kp, kp / 16, acc);
        const int32x4_t ra = mve_requantize(vldrwq_s32(acc), p, c);
        const int32x4_t rb = mve_requantize(vldrwq_s32(acc + 4), p, c);
        if (c + 4 <= out_c) {
            vstrbq_s32(o0 + c, ra);
            if (two) vstrbq_s32(o1 + c, rb);
        } else { /* the last 1-3 channels: predicated stores */
            const mve_pred16_t keep = vctp32q((uint32_t)(out_c - c));
            vstrbq_p_s32(o0 + c, ra, keep);
            if (two) vstrbq_p_s32(o1 + c, rb, keep);
        }
    }
}

MM_INLINE void conv_gemm_s8_mve(const mm_conv_gemm_params *p, const int8_t *in, const int8_t *w, int8_t *out,
                                void *scratch)
{
    const int32_t kp = p->k_pad, img_size = p->in_h * p->in_w * p->in_c;
    int8_t *pa = (int8_t *)scratch, *pb = pa + kp;
    const int32_t zp = -p->input_offset;
    /* a 1x1, stride-1 conv whose rows need no padding reads its patches in place */
    const int direct = (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
                        p->pad_w == 0 && p->k == kp && p->out_h == p->in_h && p->out_w == p->in_w);
    for (pixel_pair q = pair_first(p); q.batch < p->batches; pair_next(&q)) {
        const int8_t *xa = pa, *xb;
        if (direct) {
            xa = in + pair_pixel(&q) * kp;
            xb = q.two ? xa + kp : xa;
        } else {
            const int8_t *img = in + q.batch * img_size;
            build_patch(p, img, q.oy0, q.ox0, pa, PATCH_S8, zp);
            if (q.two) build_patch(p, img, q.oy1, q.ox1, pb, PATCH_S8, zp);
            xb = q.two ? pb : pa;
        }
        conv_s8_mve_pair(p, &q, xa, xb, w, out);
    }
}

/* all channels of one pixel pair, int16x8 */
MM_INLINE void conv_s16_pair(const mm_conv_gemm_params *p, const pixel_pair *q, const int16_t *pa,
                             const int16_t *qb, const int8_t *w, int16_t *out)
{
    const int32_t kp = p->k_pad, out_c = p->out_c;
    const int two = q->two;
    int16_t *o0 = out + pair_pixel(q) * out_c, *o1 = o0 + out_c;
    if (p->rq) { /* proven: every accumulator fits int32 (bias: int32, padded to quads) */
        for (int32_t c = 0; c < out_c; c += 4) {
            int32_t acc[8];
            for (int k = 0; k < 4; ++k) acc[k] = acc[4 + k] = p->bias[c + k];
            mm_mve_dot_2x4_s16(pa, qb, w + c * kp, kp / 16, acc);
            const int32x4_t ra = mve_requantize_s16(vldrwq_s32(acc), p, c);
            const int32x4_t rb = mve_requantize_s16(vldrwq_s32(acc + 4), p, c);
            const mve_pred16_t keep = vctp32q((uint32_t)(out_c - c));
            vstrhq_p_s32(o0 + c, ra, keep);
            if (two) vstrhq_p_s32(o1 + c, rb, keep);
        }
        return;
    }
    for (int32_t c = 0; c < out_c; c += 4) {
        const int8_t *wq = w + c * kp; /* the quad's block: 16 bytes per row per step */
        int64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int32_t i = 0; i < kp; i += 16) {
            const int16x8_t xa0 = vldrhq_s16(pa + i), xa1 = vldrhq_s16(pa + i + 8);
            const int16x8_t xb0 = vldrhq_s16(qb + i), xb1 = vldrhq_s16(qb + i + 8);
            for (int r = 0; r < 4; ++r, wq += 16) {
                const int16x8_t w0 = vldrbq_s16(wq), w1 = vldrbq_s16(wq + 8);
                acc[r] = vmlaldavaq_s16(vmlaldavaq_s16(acc[r], xa0, w0), xa1, w1);
                acc[4 + r] = vmlaldavaq_s16(vmlaldavaq_s16(acc[4 + r], xb0, w0), xb1, w1);
            }
        }
        for (int r = 0; r < 4 && c + r < out_c; ++r) {
            o0[c + r] = out_s16(p, acc[r], c + r);
            if (two) o1[c + r] = out_s16(p, acc[4 + r], c + r);
        }
    }
}

#else
/* ------------------------------------------------------------------ DSP */
/* the proven-range requantization of mm_conv_gemm_params.rq: q = {M, C, E} */
MM_INLINE int8_t out_s8_fast(const int32_t *q, int32_t acc, int32_t lo, int32_t hi)
{
    const int32_t a2 = acc * 2;
    const int32_t r = (mm_smmlar(a2, q[0], q[1]) + (a2 >> 31)) >> q[2];
    return (int8_t)mm_clamp_i32(r, lo, hi);
}

/* all channels of one pixel pair; pa / qb the pair's int16 patches (input offset added) */
MM_INLINE void conv_s8_dsp_pair(const mm_conv_gemm_params *p, const pixel_pair *q, const int16_t *pa,
                                const int16_t *qb, const int8_t *w, int8_t *out)
{
    const int32_t kp = p->k_pad, out_c = p->out_c, groups = kp / 4, lo = p->act_min, hi = p->act_max;
    const int two = q->two;
    int8_t *o0 = out + pair_pixel(q) * out_c, *o1 = o0 + out_c;
    if (p->rq) {
        for (int32_t c = 0; c < out_c; c += 2) {
            const int32_t c1 = c + 1 < out_c ? c + 1 : c;
            int32_t s[4] = {p->bias[c], p->bias[c1], p->bias[c], p->bias[c1]};
            mm_dot_2x2_s16(pa, qb, w + c * kp, groups, s);
            const int32_t *q0 = p->rq + 3 * c, *q1 = p->rq + 3 * c1;
            o0[c] = out_s8_fast(q0, s[0], lo, hi);
            if (c1 != c) o0[c1] = out_s8_fast(q1, s[1], lo, hi);
            if (two) {
                o1[c] = out_s8_fast(q0, s[2], lo, hi);
                if (c1 != c) o1[c1] = out_s8_fast(q1, s[3], lo, hi);
            }
        }
    } else {
        for (int32_t c = 0; c < out_c; c += 2) {
            const int32_t c1 = c + 1 < out_c ? c + 1 : c;
            int32_t s[4] = {p->bias[c], p->bias[c1], p->bias[c], p->bias[c1]};
            mm_dot_2x2_s16(pa, qb, w + c * kp, groups, s);
            o0[c] = out_s8(p, s[0], c);
            if (c1 != c) o0[c1] = out_s8(p, s[1], c1);
            if (two) {
                o1[c] = out_s8(p, s[2], c);
                if (c1 != c) o1[c1] = out_s8(p, s[3], c1);
            }
        }
    }
}

MM_INLINE void conv_gemm_s8_dsp(const mm_conv_gemm_params *p, const int8_t *in, const int8_t *w, int8_t *out,
                                void *scratch)
{
    const int32_t kp = p->k_pad, img_size = p->in_h * p->in_w * p->in_c;
    int16_t *pa = (int16_t *)scratch, *pb = pa + kp;
    for (pixel_pair q = pair_first(p); q.batch < p->batches; pair_next(&q)) {
        const int8_t *img = in + q.batch * img_size;
        build_patch(p, img, q.oy0, q.ox0, pa, PATCH_S8_TO_S16, 0);
        if (q.two) build_patch(p, img, q.oy1, q.ox1, pb, PATCH_S8_TO_S16, 0);
        conv_s8_dsp_pair(p, &q, pa, q.two ? pb : pa, w, out);
    }
}

/* all channels of one pixel pair, int16x8 */
MM_INLINE void conv_s16_pair(const mm_conv_gemm_params *p, const pixel_pair *q, const int16_t *pa,
                             const int16_t *qb, const int8_t *w, int16_t *out)
{
    const int32_t kp = p->k_pad, out_c = p->out_c, groups = kp / 4;
    const int two = q->two;
    int16_t *o0 = out + pair_pixel(q) * out_c, *o1 = o0 + out_c;
    if (p->rq) { /* proven: every acc + bias fits int32; one SMMULR requantizes */
        const int32_t lo = p->act_min, hi = p->act_max;
        for (int32_t c = 0; c < out_c; c += 2) {
            const int32_t c1 = c + 1 < out_c ? c + 1 : c;
            int32_t s[4] = {p->bias[c], p->bias[c1], p->bias[c], p->bias[c1]};
            mm_dot_2x2_s16(pa, qb, w + c * kp, groups, s);
            const int32_t r0 = p->rq[c], r1 = p->rq[c1];
            o0[c] = (int16_t)mm_clamp_i32(mm_smmulr(s[0], r0), lo, hi);
            if (c1 != c) o0[c1] = (int16_t)mm_clamp_i32(mm_smmulr(s[1], r1), lo, hi);
            if (two) {
                o1[c] = (int16_t)mm_clamp_i32(mm_smmulr(s[2], r0), lo, hi);
                if (c1 != c) o1[c1] = (int16_t)mm_clamp_i32(mm_smmulr(s[3], r1), lo, hi);
            }
        }
        return;
    }
    for (int32_t c = 0; c < out_c; c += 2) {
        const int32_t c1 = c + 1 < out_c ? c + 1 : c;
        int64_t acc[4] = {0, 0, 0, 0};
        for (int32_t g = 0; g < groups; g += MM_S16_CHUNK_GROUPS) {
            const int32_t n = groups - g < MM_S16_CHUNK_GROUPS ? groups - g : MM_S16_CHUNK_GROUPS;
            int32_t s[4] = {0, 0, 0, 0};
            mm_dot_2x2_s16(pa + 4 * g, qb + 4 * g, w + c * kp + 8 * g, n, s);
            for (int k = 0; k < 4; ++k) acc[k] += s[k];
        }
        o0[c] = out_s16(p, acc[0], c);
        if (c1 != c) o0[c1] = out_s16(p, acc[1], c1);
        if (two) {
            o1[c] = out_s16(p, acc[2], c);
            if (c1 != c) o1[c1] = out_s16(p, acc[3], c1);
        }
    }
}
#endif

void mm_conv_gemm_s8(const mm_conv_gemm_params *p, const int8_t *in, const int8_t *w, int8_t *out,
                     void *scratch)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    conv_gemm_s8_mve(p, in, w, out, scratch);
#else
    conv_gemm_s8_dsp(p, in, w, out, scratch);
#endif
}

/* int16x8: the same int16 patches on both ISAs, conv_s16_pair the ISA's channel loop */
void mm_conv_gemm_s16(const mm_conv_gemm_params *p, const int16_t *in, const int8_t *w, int16_t *out,
                      void *scratch)
{
    const int32_t kp = p->k_pad, img_size = p->in_h * p->in_w * p->in_c;
    int16_t *pa = (int16_t *)scratch, *pb = pa + kp;
    for (pixel_pair q = pair_first(p); q.batch < p->batches; pair_next(&q)) {
        const int16_t *img = in + q.batch * img_size;
        build_patch(p, img, q.oy0, q.ox0, pa, PATCH_S16, 0);
        if (q.two) build_patch(p, img, q.oy1, q.ox1, pb, PATCH_S16, 0);
        conv_s16_pair(p, &q, pa, q.two ? pb : pa, w, out);
    }
}

#endif /* MM_TARGET_ISA != MM_ISA_PLAIN */
