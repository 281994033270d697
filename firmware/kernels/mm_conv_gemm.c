/* mm_conv_gemm.c - CONV_2D as patch x weight-row dot products (DSP and Helium
 * paths); layouts and the reasoning are in mm_conv_gemm.h. */
#include <string.h>
#include "mm_conv_gemm.h"

#if !MM_HAVE_DSP && !MM_HAVE_MVE
#error "mm_conv_gemm needs a core with DSP or MVE instructions (the compiler picks it only for those)"
#endif

/* 32-bit word view of int16/int8 buffers (word-aligned by construction). */
typedef int32_t mm_word __attribute__((may_alias, aligned(4)));

enum { PATCH_S8_TO_S16 = 0, PATCH_S16 = 1, PATCH_S8 = 2 };

/* n input values from src[at..] into the patch at dst[pos..] */
MM_INLINE void patch_copy(int kind, const void *src, int32_t at, void *dst, int32_t pos, int32_t n, int32_t off)
{
    if (kind == PATCH_S8) {
#if MM_HAVE_MVE
        const int8_t *s = (const int8_t *)src + at;
        int8_t *d = (int8_t *)dst + pos;
        for (int32_t i = 0; i < n; i += 16) {     /* runs are short: no library call */
            const mve_pred16_t m = vctp8q((uint32_t)(n - i));
            vstrbq_p_s8(d + i, vldrbq_z_s8(s + i, m), m);
        }
#else
        memcpy((int8_t *)dst + pos, (const int8_t *)src + at, (size_t)n);
#endif
    } else if (kind == PATCH_S16) {
        memcpy((int16_t *)dst + pos, (const int16_t *)src + at, (size_t)n * 2u);
    } else {
        const int8_t *s = (const int8_t *)src + at;
        int16_t *d = (int16_t *)dst + pos;
#if MM_HAVE_DSP
        const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) | ((uint32_t)off << 16));
        for (; n >= 4; n -= 4, s += 4, d += 4) {
            const int32_t v = mm_read_s32(s);
            const int32_t a = mm_sxtab16(off2, v);        /* x0, x2 (+ offset) */
            const int32_t b = mm_sxtab16_ror8(off2, v);   /* x1, x3 */
            mm_write_s32(d, mm_pkhbt(a, (int32_t)((uint32_t)b << 16)));
            mm_write_s32(d + 2, mm_pkhtb_hi(a, b));
        }
#endif
        for (; n > 0; --n) *d++ = (int16_t)(*s++ + off);
    }
}

MM_INLINE void patch_fill(int kind, void *dst, int32_t pos, int32_t n, int32_t value)
{
    if (kind == PATCH_S8) {
#if MM_HAVE_MVE
        int8_t *d = (int8_t *)dst + pos;
        const int8x16_t v = vdupq_n_s8((int8_t)value);
        for (int32_t i = 0; i < n; i += 16) vstrbq_p_s8(d + i, v, vctp8q((uint32_t)(n - i)));
#else
        memset((int8_t *)dst + pos, value, (size_t)n);
#endif
    } else {
        int16_t *d = (int16_t *)dst + pos;
        for (int32_t i = 0; i < n; ++i) d[i] = (int16_t)value;
    }
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

MM_INLINE int8_t out_s8(const mm_conv_gemm_params *p, int32_t acc, int32_t c)
{
    acc = mm_requantize(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
    return (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
}

#if MM_HAVE_DSP
/* the proven-range requantization of mm_conv_gemm_params.rq: q = {M, C, E} */
MM_INLINE int8_t out_s8_fast(const int32_t *q, int32_t acc, int32_t lo, int32_t hi)
{
    const int32_t a2 = acc * 2;
    const int32_t r = (mm_smmlar(a2, q[0], q[1]) + (a2 >> 31)) >> q[2];
    return (int8_t)mm_clamp_i32(r, lo, hi);
}
#endif

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

/* Walk output pixels two at a time in raster order; `pair` computes every channel of both. */
#define MM_FOR_PIXEL_PAIRS(p, ...)                                                          \
    do {                                                                                    \
        const int32_t n_pix_ = (p)->out_h * (p)->out_w;                                     \
        for (int32_t b_ = 0; b_ < (p)->batches; ++b_) {                                     \
            int32_t oy_ = 0, ox_ = 0;                                                       \
            for (int32_t pix_ = 0; pix_ < n_pix_; pix_ += 2) {                              \
                const int32_t oy0 = oy_, ox0 = ox_;                                         \
                if (++ox_ == (p)->out_w) { ox_ = 0; ++oy_; }                                \
                const int two = pix_ + 1 < n_pix_;                                          \
                const int32_t oy1 = oy_, ox1 = ox_;                                         \
                if (two && ++ox_ == (p)->out_w) { ox_ = 0; ++oy_; }                         \
                const int32_t batch = b_, first_pixel = b_ * n_pix_ + pix_;                 \
                (void)batch;                                                                \
                __VA_ARGS__                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)

#if MM_HAVE_DSP && !MM_HAVE_MVE
/* s[0..3] += patch a . row c, a . row c+1, b . row c, b . row c+1 over `groups`
 * groups of 4; `w` is the channel pair's interleaved block (word g of row c,
 * then word g of row c+1, ...), so one LDRD fetches both rows' words. */
#if MM_NATIVE_DSP
/* Hand-allocated: GCC spills this 14-register loop to the stack. 3 LDRD, 4 SXTB16,
 * 8 SMLAD and the loop branch per 16 MACs. */
MM_INLINE void dot_2x2(const int16_t *a, const int16_t *b, const int8_t *w, int32_t groups, int32_t *s)
{
    int32_t a00 = s[0], a01 = s[1], a10 = s[2], a11 = s[3];
    int32_t u, v, u1, v1, x0, x1;
    if (groups <= 0) return;
    __asm__ volatile(
        "1:\n\t"
        "ldrd   %[u], %[v], [%[pw]], #8\n\t"
        "ldrd   %[x0], %[x1], [%[pa]], #8\n\t"
        "sxtb16 %[u1], %[u], ror #8\n\t"
        "sxtb16 %[u], %[u]\n\t"
        "sxtb16 %[v1], %[v], ror #8\n\t"
        "sxtb16 %[v], %[v]\n\t"
        "smlad  %[a00], %[x0], %[u], %[a00]\n\t"
        "smlad  %[a00], %[x1], %[u1], %[a00]\n\t"
        "smlad  %[a01], %[x0], %[v], %[a01]\n\t"
        "smlad  %[a01], %[x1], %[v1], %[a01]\n\t"
        "ldrd   %[x0], %[x1], [%[pb]], #8\n\t"
        "smlad  %[a10], %[x0], %[u], %[a10]\n\t"
        "smlad  %[a10], %[x1], %[u1], %[a10]\n\t"
        "smlad  %[a11], %[x0], %[v], %[a11]\n\t"
        "smlad  %[a11], %[x1], %[v1], %[a11]\n\t"
        "subs   %[n], %[n], #1\n\t"
        "bne    1b\n\t"
        : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11),
          [pa] "+r"(a), [pb] "+r"(b), [pw] "+r"(w), [n] "+r"(groups),
          [u] "=&r"(u), [v] "=&r"(v), [u1] "=&r"(u1), [v1] "=&r"(v1), [x0] "=&r"(x0), [x1] "=&r"(x1)
        :
        : "cc", "memory");
    s[0] = a00;
    s[1] = a01;
    s[2] = a10;
    s[3] = a11;
}
#else
MM_INLINE void dot_2x2(const int16_t *a, const int16_t *b, const int8_t *w, int32_t groups, int32_t *s)
{
    const mm_word *A = (const mm_word *)a, *B = (const mm_word *)b, *W = (const mm_word *)w;
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t u = W[2 * g], v = W[2 * g + 1];
        const int32_t u01 = mm_sxtb16(u), u23 = mm_sxtb16_ror8(u);
        const int32_t v01 = mm_sxtb16(v), v23 = mm_sxtb16_ror8(v);
        int32_t x01 = A[2 * g], x23 = A[2 * g + 1];
        s00 = mm_smlad(x01, u01, s00);
        s00 = mm_smlad(x23, u23, s00);
        s01 = mm_smlad(x01, v01, s01);
        s01 = mm_smlad(x23, v23, s01);
        x01 = B[2 * g];
        x23 = B[2 * g + 1];
        s10 = mm_smlad(x01, u01, s10);
        s10 = mm_smlad(x23, u23, s10);
        s11 = mm_smlad(x01, v01, s11);
        s11 = mm_smlad(x23, v23, s11);
    }
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}
#endif
#endif

#if MM_HAVE_MVE
/* TFLM's per-channel requantization (double rounding) of 4 channels at once, exactly:
 * VQRDMULH is SaturatingRoundingDoublingHighMul; RoundingDivideByPOT rounds half away
 * from zero, VRSHL half up, so negative values are first moved down by one. */
MM_INLINE int32x4_t mve_requantize(int32x4_t acc, const mm_conv_gemm_params *p, int32_t c)
{
    const int32x4_t shift = vldrwq_s32(p->shift + c);
    const int32x4_t right = vminq_s32(shift, vdupq_n_s32(0));    /* -right shift */
    acc = vshlq_s32(acc, vmaxq_s32(shift, vdupq_n_s32(0)));
    acc = vqrdmulhq_s32(acc, vldrwq_s32(p->multiplier + c));
    acc = vqaddq_s32(acc, vshrq_n_s32(vandq_s32(acc, right), 31));
    acc = vrshlq_s32(acc, right);
    acc = vaddq_n_s32(acc, p->output_offset);
    acc = vmaxq_s32(acc, vdupq_n_s32(p->act_min));
    return vminq_s32(acc, vdupq_n_s32(p->act_max));
}

MM_INLINE int32x4_t mve_lanes(int32_t a, int32_t b, int32_t c, int32_t d)
{
    int32x4_t v = vdupq_n_s32(a);
    v = vsetq_lane_s32(b, v, 1);
    v = vsetq_lane_s32(c, v, 2);
    return vsetq_lane_s32(d, v, 3);
}
#endif

#if MM_HAVE_MVE
/* acc[0..3] += patch a . rows c..c+3, acc[4..7] += patch b . rows c..c+3, over `steps`
 * steps of 16; `w` is the quad's block (16 bytes of each of the 4 rows, step by step).
 * Hand-allocated: VMLADAVA accumulates into even registers only, and 8 accumulators
 * take all of them (lr included), so the loop counts in r9 rather than with LE.
 * 2 patch loads + 4 weight loads + 8 VMLADAVA + loop per 128 MACs. */
MM_INLINE void mve_dot_2x4(const int8_t *a, const int8_t *b, const int8_t *w, int32_t steps, int32_t *acc)
{
    register int32_t a0 __asm__("r0") = acc[0];
    register int32_t a1 __asm__("r2") = acc[1];
    register int32_t a2 __asm__("r4") = acc[2];
    register int32_t a3 __asm__("r6") = acc[3];
    register int32_t b0 __asm__("r8") = acc[4];
    register int32_t b1 __asm__("r10") = acc[5];
    register int32_t b2 __asm__("r12") = acc[6];
    register int32_t b3 __asm__("lr") = acc[7];
    register const int8_t *pa __asm__("r1") = a;
    register const int8_t *pb __asm__("r3") = b;
    register const int8_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r9") = steps;
    __asm__ volatile(
        "1:\n\t"
        "vldrb.8      q0, [%[pa]], #16\n\t"
        "vldrb.8      q1, [%[pb]], #16\n\t"
        "vldrb.8      q2, [%[pw]], #16\n\t"
        "vmladava.s8  %[a0], q0, q2\n\t"
        "vmladava.s8  %[b0], q1, q2\n\t"
        "vldrb.8      q2, [%[pw]], #16\n\t"
        "vmladava.s8  %[a1], q0, q2\n\t"
        "vmladava.s8  %[b1], q1, q2\n\t"
        "vldrb.8      q2, [%[pw]], #16\n\t"
        "vmladava.s8  %[a2], q0, q2\n\t"
        "vmladava.s8  %[b2], q1, q2\n\t"
        "vldrb.8      q2, [%[pw]], #16\n\t"
        "vmladava.s8  %[a3], q0, q2\n\t"
        "vmladava.s8  %[b3], q1, q2\n\t"
        "subs         %[n], %[n], #1\n\t"
        "bne          1b\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
          [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2), [b3] "+r"(b3),
          [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), [n] "+r"(n)
        :
        : "d0", "d1", "d2", "d3", "d4", "d5", "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = b0;
    acc[5] = b1;
    acc[6] = b2;
    acc[7] = b3;
}
#endif

#if MM_HAVE_MVE
/* int16x8 version of mve_dot_2x4 for the proven-range case (every sum fits int32):
 * int16 patches, int8 weights widened by the load, 8 MACs per VMLADAVA. */
MM_INLINE void mve_dot_2x4_s16(const int16_t *a, const int16_t *b, const int8_t *w, int32_t steps, int32_t *acc)
{
    register int32_t a0 __asm__("r0") = acc[0];
    register int32_t a1 __asm__("r2") = acc[1];
    register int32_t a2 __asm__("r4") = acc[2];
    register int32_t a3 __asm__("r6") = acc[3];
    register int32_t b0 __asm__("r8") = acc[4];
    register int32_t b1 __asm__("r10") = acc[5];
    register int32_t b2 __asm__("r12") = acc[6];
    register int32_t b3 __asm__("lr") = acc[7];
    register const int16_t *pa __asm__("r1") = a;
    register const int16_t *pb __asm__("r3") = b;
    register const int8_t *pw __asm__("r5") = w;
    register int32_t n __asm__("r9") = steps;
#define MM_S16_ROW(A, B)                              \
        "vldrb.s16    q2, [%[pw]], #8\n\t"            \
        "vmladava.s16 %[" A "], q0, q2\n\t"           \
        "vmladava.s16 %[" B "], q3, q2\n\t"           \
        "vldrb.s16    q2, [%[pw]], #8\n\t"            \
        "vmladava.s16 %[" A "], q1, q2\n\t"           \
        "vmladava.s16 %[" B "], q4, q2\n\t"
    __asm__ volatile(
        "1:\n\t"
        "vldrh.16     q0, [%[pa]], #16\n\t"
        "vldrh.16     q1, [%[pa]], #16\n\t"
        "vldrh.16     q3, [%[pb]], #16\n\t"
        "vldrh.16     q4, [%[pb]], #16\n\t"
        MM_S16_ROW("a0", "b0") MM_S16_ROW("a1", "b1") MM_S16_ROW("a2", "b2") MM_S16_ROW("a3", "b3")
        "subs         %[n], %[n], #1\n\t"
        "bne          1b\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
          [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2), [b3] "+r"(b3),
          [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), [n] "+r"(n)
        :
        : "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "cc", "memory");
#undef MM_S16_ROW
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = b0;
    acc[5] = b1;
    acc[6] = b2;
    acc[7] = b3;
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
    return 2 * gemm_k_pad(isa, in_c, k_h, k_w) * 2;   /* pa, pb: int16 */
}

int32_t mm_conv_gemm_s16_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w)
{
    return mm_conv_gemm_s16_get_buffer_size_isa(MM_TARGET_ISA, in_c, k_h, k_w);
}

void mm_conv_gemm_s8(const mm_conv_gemm_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch)
{
    const int32_t kp = p->k_pad, out_c = p->out_c;
    const int32_t img_size = p->in_h * p->in_w * p->in_c;
#if MM_HAVE_MVE
    int8_t *pa = (int8_t *)scratch, *pb = pa + kp;
    const int32_t zp = -p->input_offset;
    /* a 1x1, stride-1 conv whose rows need no padding reads its patches in place */
    const int direct = (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                        p->pad_h == 0 && p->pad_w == 0 && p->k == kp &&
                        p->out_h == p->in_h && p->out_w == p->in_w);
    MM_FOR_PIXEL_PAIRS(p, {
        const int8_t *img = in + batch * img_size;
        const int8_t *pa_ = pa, *qb;
        if (direct) {
            pa_ = in + first_pixel * kp;
            qb = two ? pa_ + kp : pa_;
        } else {
            build_patch(p, img, oy0, ox0, pa, PATCH_S8, zp);
            if (two) build_patch(p, img, oy1, ox1, pb, PATCH_S8, zp);
            qb = two ? pb : pa;
        }
        int8_t *o0 = out + first_pixel * out_c, *o1 = o0 + out_c;
        for (int32_t c = 0; c < out_c; c += 4) {
            int32_t acc[8];
            for (int k = 0; k < 4; ++k) acc[k] = acc[4 + k] = p->bias[c + k < out_c ? c + k : c];
            mve_dot_2x4(pa_, qb, w + c * kp, kp / 16, acc);
            const int32x4_t ra = mve_requantize(vldrwq_s32(acc), p, c);
            const int32x4_t rb = mve_requantize(vldrwq_s32(acc + 4), p, c);
            if (c + 4 <= out_c) {
                vstrbq_s32(o0 + c, ra);
                if (two) vstrbq_s32(o1 + c, rb);
            } else {              /* the last 1-3 channels: predicated stores */
                const mve_pred16_t keep = vctp32q((uint32_t)(out_c - c));
                vstrbq_p_s32(o0 + c, ra, keep);
                if (two) vstrbq_p_s32(o1 + c, rb, keep);
            }
        }
    });
#else
    int16_t *pa = (int16_t *)scratch, *pb = pa + kp;
    const int32_t groups = kp / 4, lo = p->act_min, hi = p->act_max;
    MM_FOR_PIXEL_PAIRS(p, {
        const int8_t *img = in + batch * img_size;
        build_patch(p, img, oy0, ox0, pa, PATCH_S8_TO_S16, 0);
        if (two) build_patch(p, img, oy1, ox1, pb, PATCH_S8_TO_S16, 0);
        const int16_t *qb = two ? pb : pa;
        int8_t *o0 = out + first_pixel * out_c, *o1 = o0 + out_c;
        if (p->rq) {
            for (int32_t c = 0; c < out_c; c += 2) {
                const int32_t c1 = c + 1 < out_c ? c + 1 : c;
                int32_t s[4] = {p->bias[c], p->bias[c1], p->bias[c], p->bias[c1]};
                dot_2x2(pa, qb, w + c * kp, groups, s);
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
                dot_2x2(pa, qb, w + c * kp, groups, s);
                o0[c] = out_s8(p, s[0], c);
                if (c1 != c) o0[c1] = out_s8(p, s[1], c1);
                if (two) {
                    o1[c] = out_s8(p, s[2], c);
                    if (c1 != c) o1[c1] = out_s8(p, s[3], c1);
                }
            }
        }
    });
#endif
}

/* int16x8: products are below 2^22 in magnitude, so int32 partial sums of up to
 * 508 products are exact; they are added into the int64 accumulator per chunk. */
#define MM_S16_CHUNK_GROUPS 127

void mm_conv_gemm_s16(const mm_conv_gemm_params *p, const int16_t *in, const int8_t *w, int16_t *out,
                      void *scratch)
{
    const int32_t kp = p->k_pad, out_c = p->out_c;
    const int32_t img_size = p->in_h * p->in_w * p->in_c;
    int16_t *pa = (int16_t *)scratch, *pb = pa + kp;
#if MM_HAVE_MVE
    MM_FOR_PIXEL_PAIRS(p, {
        const int16_t *img = in + batch * img_size;
        build_patch(p, img, oy0, ox0, pa, PATCH_S16, 0);
        if (two) build_patch(p, img, oy1, ox1, pb, PATCH_S16, 0);
        const int16_t *qb = two ? pb : pa;
        int16_t *o0 = out + first_pixel * out_c, *o1 = o0 + out_c;
        if (p->rq) {     /* proven: every accumulator fits int32 (bias: int32, padded to quads) */
            for (int32_t c = 0; c < out_c; c += 4) {
                int32_t acc[8];
                for (int k = 0; k < 4; ++k) acc[k] = acc[4 + k] = p->bias[c + k];
                mve_dot_2x4_s16(pa, qb, w + c * kp, kp / 16, acc);
                const int32x4_t ra = mve_requantize_s16(vldrwq_s32(acc), p, c);
                const int32x4_t rb = mve_requantize_s16(vldrwq_s32(acc + 4), p, c);
                const mve_pred16_t keep = vctp32q((uint32_t)(out_c - c));
                vstrhq_p_s32(o0 + c, ra, keep);
                if (two) vstrhq_p_s32(o1 + c, rb, keep);
            }
            continue;
        }
        for (int32_t c = 0; c < out_c; c += 4) {
            const int8_t *q = w + c * kp;       /* the quad's block: 16 bytes per row per step */
            int64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int32_t i = 0; i < kp; i += 16) {
                const int16x8_t xa0 = vldrhq_s16(pa + i), xa1 = vldrhq_s16(pa + i + 8);
                const int16x8_t xb0 = vldrhq_s16(qb + i), xb1 = vldrhq_s16(qb + i + 8);
                for (int r = 0; r < 4; ++r, q += 16) {
                    const int16x8_t w0 = vldrbq_s16(q), w1 = vldrbq_s16(q + 8);
                    acc[r] = vmlaldavaq_s16(vmlaldavaq_s16(acc[r], xa0, w0), xa1, w1);
                    acc[4 + r] = vmlaldavaq_s16(vmlaldavaq_s16(acc[4 + r], xb0, w0), xb1, w1);
                }
            }
            for (int r = 0; r < 4 && c + r < out_c; ++r) {
                o0[c + r] = out_s16(p, acc[r], c + r);
                if (two) o1[c + r] = out_s16(p, acc[4 + r], c + r);
            }
        }
    });
#else
    const int32_t groups = kp / 4;
    MM_FOR_PIXEL_PAIRS(p, {
        const int16_t *img = in + batch * img_size;
        build_patch(p, img, oy0, ox0, pa, PATCH_S16, 0);
        if (two) build_patch(p, img, oy1, ox1, pb, PATCH_S16, 0);
        const int16_t *qb = two ? pb : pa;
        int16_t *o0 = out + first_pixel * out_c, *o1 = o0 + out_c;
        if (p->rq) {     /* proven: every acc + bias fits int32; one SMMULR requantizes */
            const int32_t lo = p->act_min, hi = p->act_max;
            for (int32_t c = 0; c < out_c; c += 2) {
                const int32_t c1 = c + 1 < out_c ? c + 1 : c;
                int32_t s[4] = {p->bias[c], p->bias[c1], p->bias[c], p->bias[c1]};
                dot_2x2(pa, qb, w + c * kp, groups, s);
                const int32_t r0 = p->rq[c], r1 = p->rq[c1];
                o0[c] = (int16_t)mm_clamp_i32(mm_smmulr(s[0], r0), lo, hi);
                if (c1 != c) o0[c1] = (int16_t)mm_clamp_i32(mm_smmulr(s[1], r1), lo, hi);
                if (two) {
                    o1[c] = (int16_t)mm_clamp_i32(mm_smmulr(s[2], r0), lo, hi);
                    if (c1 != c) o1[c1] = (int16_t)mm_clamp_i32(mm_smmulr(s[3], r1), lo, hi);
                }
            }
            continue;
        }
        for (int32_t c = 0; c < out_c; c += 2) {
            const int32_t c1 = c + 1 < out_c ? c + 1 : c;
            int64_t acc[4] = {0, 0, 0, 0};
            for (int32_t g = 0; g < groups; g += MM_S16_CHUNK_GROUPS) {
                const int32_t n = groups - g < MM_S16_CHUNK_GROUPS ? groups - g : MM_S16_CHUNK_GROUPS;
                int32_t s[4] = {0, 0, 0, 0};
                dot_2x2(pa + 4 * g, qb + 4 * g, w + c * kp + 8 * g, n, s);
                for (int k = 0; k < 4; ++k) acc[k] += s[k];
            }
            o0[c] = out_s16(p, acc[0], c);
            if (c1 != c) o0[c1] = out_s16(p, acc[1], c1);
            if (two) {
                o1[c] = out_s16(p, acc[2], c);
                if (c1 != c) o1[c1] = out_s16(p, acc[3], c1);
            }
        }
    });
#endif
}
