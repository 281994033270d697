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
    return isa == MM_ISA_DSP || isa == MM_ISA_MVE ? (in_c + 3) & ~3 : -1;   /* dw3_s8 on both */
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
    return mm_depthwise_conv_3x3_s16_get_buffer_size_isa(isa, in_c);   /* the same dw3_s16 */
}

int32_t mm_depthwise_conv_3x3_s16_q_get_buffer_size(int32_t in_c)
{
    return mm_depthwise_conv_3x3_s16_q_get_buffer_size_isa(MM_TARGET_ISA, in_c);
}

#if MM_HAVE_DSP

/* ------------------------------------------------ instructions not in mm_isa.h */
#if MM_NATIVE_DSP
/* acc + (a*b + 2^31) >> 32 (high word, rounded) */
MM_INLINE int32_t dw_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
MM_INLINE int32_t dw_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
MM_INLINE int32_t dw_ssat8(int32_t x) { return __ssat(x, 8); }
MM_INLINE int32_t dw_sxtb16(int32_t x) { return __sxtb16(x); }
/* v with bits [pos, pos+8) replaced by the low byte of x */
#define dw_bfi8(v, x, pos)                                                         \
    __extension__({                                                                \
        uint32_t v_ = (v);                                                         \
        __asm__("bfi %0, %1, %2, #8" : "+r"(v_) : "r"(x), "i"(pos));               \
        v_;                                                                        \
    })
MM_INLINE int32_t dw_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
MM_INLINE int32_t dw_ssat16(int32_t x) { return __ssat(x, 16); }
/* byte-wise max(v, lo) then min(v, hi) on four signed bytes */
MM_INLINE uint32_t dw_clamp8x4(uint32_t v, uint32_t lo, uint32_t hi)
{
    uint32_t t;
    __asm__("ssub8 %1, %0, %2\n\tsel %0, %0, %2\n\tssub8 %1, %3, %0\n\tsel %0, %0, %3"
            : "+r"(v), "=&r"(t) : "r"(lo), "r"(hi) : "cc");
    return v;
}
/* [lo16(a), lo16(b)] and [hi16(a), hi16(b)]: PKHBT a, b, LSL #16 / PKHTB b, a, ASR #16 */
MM_INLINE int32_t dw_pk_lo(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
MM_INLINE int32_t dw_pk_hi(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
MM_INLINE int32_t dw_smmlar(int32_t a, int32_t b, int32_t acc)
{
    const uint64_t s = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * b) + 0x80000000u;
    return (int32_t)(uint32_t)(s >> 32);
}
MM_INLINE int32_t dw_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
}
MM_INLINE int32_t dw_ssat8(int32_t x) { return mm_clamp_i32(x, -128, 127); }
MM_INLINE int32_t dw_sxtb16(int32_t x) { return mm_sxtb16(x); }
MM_INLINE uint32_t dw_bfi8(uint32_t v, int32_t x, int pos)
{
    return (v & ~(0xFFu << pos)) | (((uint32_t)x & 0xFFu) << pos);
}
MM_INLINE int32_t dw_sxtb16_ror8(int32_t x) { return mm_sxtb16_ror8(x); }
MM_INLINE int32_t dw_ssat16(int32_t x) { return mm_clamp_i32(x, -32768, 32767); }
MM_INLINE uint32_t dw_clamp8x4(uint32_t v, uint32_t lo, uint32_t hi)
{
    uint32_t r = 0;
    for (int k = 0; k < 32; k += 8) {
        int32_t b = (int8_t)(uint8_t)(v >> k);
        const int32_t l = (int8_t)(uint8_t)(lo >> k), h = (int8_t)(uint8_t)(hi >> k);
        b = b < l ? l : b;
        b = b > h ? h : b;
        r |= (uint32_t)(uint8_t)b << k;
    }
    return r;
}
MM_INLINE int32_t dw_pk_lo(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16));
}
MM_INLINE int32_t dw_pk_hi(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
#endif

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

/* one filter row of a group of 4 channels: 12 MACs */
#define DW3_S8_ROW(T0, T1, T2, W)                                            \
    do {                                                                     \
        const int32_t x0 = dw_ld8x4((T0) + c, n);                            \
        const int32_t x1 = dw_ld8x4((T1) + c, n);                            \
        const int32_t x2 = dw_ld8x4((T2) + c, n);                            \
        const int32_t lo = dw_pk_lo(x0, x1); /* bytes x0.0 x0.1 x1.0 x1.1 */ \
        const int32_t hi = dw_pk_hi(x0, x1); /* bytes x0.2 x0.3 x1.2 x1.3 */ \
        a0 = mm_smlad(dw_sxtb16(lo), (W)[0], a0);                            \
        a1 = mm_smlad(dw_sxtb16_ror8(lo), (W)[1], a1);                       \
        a2 = mm_smlad(dw_sxtb16(hi), (W)[2], a2);                            \
        a3 = mm_smlad(dw_sxtb16_ror8(hi), (W)[3], a3);                       \
        const int32_t e0 = dw_sxtb16(x2), e1 = dw_sxtb16_ror8(x2);           \
        a0 = mm_smlabb(e0, (W)[4], a0);                                      \
        a2 = mm_smlatt(e0, (W)[4], a2);                                      \
        a1 = mm_smlabb(e1, (W)[5], a1);                                      \
        a3 = mm_smlatt(e1, (W)[5], a3);                                      \
    } while (0)

#if MM_NATIVE_DSP
#define DW3_S8_ROW_ASM(OFF)                                  \
    "ldrd %[x0], %[x1], [%[tb], #" OFF "]\n\t"              \
    "ldr %[x2], [%[tb], #" OFF "+8]\n\t"                    \
    "ldr %[x0], [%[x0], %[c]]\n\t"                          \
    "ldr %[x1], [%[x1], %[c]]\n\t"                          \
    "ldr %[x2], [%[x2], %[c]]\n\t"                          \
    "pkhbt %[lo], %[x0], %[x1], lsl #16\n\t"                \
    "pkhtb %[x1], %[x1], %[x0], asr #16\n\t"                \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                     \
    "sxtb16 %[x0], %[lo]\n\t"                               \
    "smlad %[a0], %[x0], %[wa], %[a0]\n\t"                  \
    "sxtb16 %[x0], %[lo], ror #8\n\t"                       \
    "smlad %[a1], %[x0], %[wb], %[a1]\n\t"                  \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                     \
    "sxtb16 %[x0], %[x1]\n\t"                               \
    "smlad %[a2], %[x0], %[wa], %[a2]\n\t"                  \
    "sxtb16 %[x0], %[x1], ror #8\n\t"                       \
    "smlad %[a3], %[x0], %[wb], %[a3]\n\t"                  \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                     \
    "sxtb16 %[x0], %[x2]\n\t"                               \
    "smlabb %[a0], %[x0], %[wa], %[a0]\n\t"                 \
    "smlatt %[a2], %[x0], %[wa], %[a2]\n\t"                 \
    "sxtb16 %[x0], %[x2], ror #8\n\t"                       \
    "smlabb %[a1], %[x0], %[wb], %[a1]\n\t"                 \
    "smlatt %[a3], %[x0], %[wb], %[a3]\n\t"
#endif

/* fast requantization of one accumulator (see the header) */
#define DW3_RQF(A, Q, K) dw_ssat8((dw_smmlar((A), (Q)[K], (Q)[4 + K]) + ((A) >> 31)) >> (Q)[8 + K])

MM_INLINE uint32_t dw_pack8x4(int32_t o0, int32_t o1, int32_t o2, int32_t o3)
{
    uint32_t v = (uint32_t)o0 & 0xFFu;
    v = dw_bfi8(v, o1, 8);
    v = dw_bfi8(v, o2, 16);
    return dw_bfi8(v, o3, 24);
}

/* one group of n (4, or the 1..3 left over) channels of one output pixel */
MM_INLINE void dw3_s8_group(const mm_dw3x3_params *p, const int8_t *const *t8, int32_t c, const int32_t *w,
                            const int32_t *bias, const int32_t *q, int8_t *o, const int32_t n, const int fast,
                            const int clamp, uint32_t lo4, uint32_t hi4)
{
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
#if MM_NATIVE_DSP
    if (n == 4) {
        /* the same as DW3_S8_ROW x 3, register-allocated by hand: 25 instructions a row */
        uint32_t x0, x1, x2, lo, wa, wb;
        const int32_t *wp = w;
        __asm__(DW3_S8_ROW_ASM("0") DW3_S8_ROW_ASM("12") DW3_S8_ROW_ASM("24")
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(wp),
                  [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [lo] "=&r"(lo), [wa] "=&r"(wa), [wb] "=&r"(wb)
                : [tb] "r"(t8), [c] "r"(c)
                : "memory");
    } else
#endif
    {
        DW3_S8_ROW(t8[0], t8[1], t8[2], w);
        DW3_S8_ROW(t8[3], t8[4], t8[5], w + 6);
        DW3_S8_ROW(t8[6], t8[7], t8[8], w + 12);
    }
    int32_t r0, r1, r2, r3;
    if (fast) {
#if MM_NATIVE_DSP
        /* DW3_RQF on two channels at once, the M / C / E pairs loaded with LDRD */
#define DW3_RQF2_ASM(K)                                               \
    "ldrd %[m0], %[m1], [%[q], #" K "*4]\n\t"                        \
    "ldrd %[r0], %[r1], [%[q], #16+" K "*4]\n\t"                     \
    "smmlar %[r0], %[a0], %[m0], %[r0]\n\t"                          \
    "smmlar %[r1], %[a1], %[m1], %[r1]\n\t"                          \
    "ldrd %[m0], %[m1], [%[q], #32+" K "*4]\n\t"                     \
    "add %[r0], %[r0], %[a0], asr #31\n\t"                           \
    "add %[r1], %[r1], %[a1], asr #31\n\t"                           \
    "asr %[r0], %[r0], %[m0]\n\t"                                    \
    "asr %[r1], %[r1], %[m1]\n\t"                                    \
    "ssat %[r0], #8, %[r0]\n\t"                                      \
    "ssat %[r1], #8, %[r1]\n\t"
        uint32_t m0, m1;
        __asm__(DW3_RQF2_ASM("0")
                : [r0] "=&r"(r0), [r1] "=&r"(r1), [m0] "=&r"(m0), [m1] "=&r"(m1)
                : [a0] "r"(a0), [a1] "r"(a1), [q] "r"(q) : "memory");
        __asm__(DW3_RQF2_ASM("2")
                : [r0] "=&r"(r2), [r1] "=&r"(r3), [m0] "=&r"(m0), [m1] "=&r"(m1)
                : [a0] "r"(a2), [a1] "r"(a3), [q] "r"(q) : "memory");
#else
        r0 = DW3_RQF(a0, q, 0);
        r1 = DW3_RQF(a1, q, 1);
        r2 = DW3_RQF(a2, q, 2);
        r3 = DW3_RQF(a3, q, 3);
#endif
    } else {
        const int32_t *m = p->multiplier + c, *sh = p->shift + c, oo = p->output_offset;
        r0 = dw_ssat8(mm_requantize(a0, m[0], sh[0]) + oo);
        r1 = n > 1 ? dw_ssat8(mm_requantize(a1, m[1], sh[1]) + oo) : 0;
        r2 = n > 2 ? dw_ssat8(mm_requantize(a2, m[2], sh[2]) + oo) : 0;
        r3 = n > 3 ? dw_ssat8(mm_requantize(a3, m[3], sh[3]) + oo) : 0;
    }
    uint32_t v = dw_pack8x4(r0, r1, r2, r3);
    if (clamp) v = dw_clamp8x4(v, lo4, hi4);
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

#if MM_HAVE_MVE
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

void mm_depthwise_conv_3x3_s8(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch)
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
#else
void mm_depthwise_conv_3x3_s8(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    dw3_s8(p, in, out, scratch, 1);
}
#endif

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
        a0 = mm_smlad(dw_pk_lo(x0a, x1a), w[0], a0);
        a1 = mm_smlad(dw_pk_hi(x0a, x1a), w[1], a1);
        a0 = mm_smlabb(x2a, w[4], a0);
        a1 = mm_smlatt(x2a, w[4], a1);
        if (nb > 0) {
            const int32_t x0b = dw_ld16x2(t0 + 2, nb), x1b = dw_ld16x2(t1 + 2, nb), x2b = dw_ld16x2(t2 + 2, nb);
            a2 = mm_smlad(dw_pk_lo(x0b, x1b), w[2], a2);
            a3 = mm_smlad(dw_pk_hi(x0b, x1b), w[3], a3);
            a2 = mm_smlabb(x2b, w[5], a2);
            a3 = mm_smlatt(x2b, w[5], a3);
        }
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}

MM_INLINE void dw3_s16(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch, const int fast)
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
                        const int32_t r = fast ? dw_smmulr(p->bias[c + k] + acc[k], p->rq[c + k])
                                               : mm_requantize_s64(p->bias64[c + k] + acc[k], p->multiplier[c + k],
                                                                   p->shift[c + k]);
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

#endif /* MM_HAVE_DSP */
