/* mm_isa.h - which instruction-set paths the kernels may take, and the
 * ARMv7E-M DSP intrinsics they use.
 *
 * The compiler lowers a model for one ISA level (report.json "isa"):
 *   0 plain  - portable C (Cortex-M0/M3, host)
 *   1 dsp    - ARMv7E-M DSP: SMLAD/SXTB16 on 16-bit pairs (M4, M7, M33)
 *   2 mve    - Helium (M55, M85); DSP is there too
 * model.c defines MM_MODEL_ISA and checks it against the compiler's target,
 * because weight layouts may differ per level.
 *
 * MM_HAVE_DSP is 1 on DSP targets and also on the host when MM_EMULATE_DSP
 * is defined: then the mm_* wrappers below are plain C with the exact
 * semantics of the instructions, so the host simulator runs the very code
 * paths (and weight layouts) a Cortex-M4 runs. MVE has no emulation: MVE
 * paths are tested on the emulated Cortex-M55.
 */
#ifndef MM_ISA_H
#define MM_ISA_H

#include <stdint.h>

#define MM_ISA_PLAIN 0
#define MM_ISA_DSP   1
#define MM_ISA_MVE   2

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define MM_HAVE_MVE 1
#include <arm_mve.h>
#else
#define MM_HAVE_MVE 0
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MM_HAVE_DSP   1
#define MM_NATIVE_DSP 1
#include <arm_acle.h>
#elif defined(MM_EMULATE_DSP) && MM_EMULATE_DSP
#define MM_HAVE_DSP   1
#define MM_NATIVE_DSP 0
#else
#define MM_HAVE_DSP   0
#define MM_NATIVE_DSP 0
#endif

#if MM_HAVE_MVE
#define MM_TARGET_ISA MM_ISA_MVE
#elif MM_HAVE_DSP
#define MM_TARGET_ISA MM_ISA_DSP
#else
#define MM_TARGET_ISA MM_ISA_PLAIN
#endif

#if defined(__GNUC__)
#define MM_ISA_INLINE static inline __attribute__((always_inline))
#else
#define MM_ISA_INLINE static inline
#endif

/* Unaligned-safe 32-bit load/store (compiles to one LDR/STR on Cortex-M). */
MM_ISA_INLINE int32_t mm_read_s32(const void *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
MM_ISA_INLINE void mm_write_s32(void *p, int32_t v)
{
    __builtin_memcpy(p, &v, 4);
}

MM_ISA_INLINE uint32_t mm_ror(uint32_t x, unsigned r)
{
    return (x >> r) | (x << ((32u - r) & 31u));
}

#if MM_HAVE_DSP
#if MM_NATIVE_DSP
/* [b0, b2] of four signed bytes, sign-extended to two halfwords */
MM_ISA_INLINE int32_t mm_sxtb16(int32_t x)
{
    return __sxtb16(x);
}
/* [b1, b3] */
/* GCC does not fold a rotate into SXTB16's ROR field: say it in assembly (one instruction). */
MM_ISA_INLINE int32_t mm_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* a + [b0, b2] halfword-wise */
MM_ISA_INLINE int32_t mm_sxtab16(int32_t a, int32_t x)
{
    return __sxtab16(a, x);
}
MM_ISA_INLINE int32_t mm_sxtab16_ror8(int32_t a, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
/* acc + a.lo*b.lo + a.hi*b.hi */
MM_ISA_INLINE int32_t mm_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}
/* acc + a.lo*b.hi + a.hi*b.lo */
MM_ISA_INLINE int32_t mm_smladx(int32_t a, int32_t b, int32_t acc)
{
    return __smladx(a, b, acc);
}
MM_ISA_INLINE int64_t mm_smlald(int32_t a, int32_t b, int64_t acc)
{
    return __smlald(a, b, acc);
}
MM_ISA_INLINE int32_t mm_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}
MM_ISA_INLINE int32_t mm_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return __smlatt(a, b, acc);
}
/* halfword-wise a + b (modulo) */
MM_ISA_INLINE int32_t mm_sadd16(int32_t a, int32_t b)
{
    return __sadd16(a, b);
}
/* (a*b + 2^31) >> 32: the rounded high word (no ACLE intrinsic) */
MM_ISA_INLINE int32_t mm_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* acc + (a*b + 2^31) >> 32: the rounded high word (no ACLE intrinsic) */
MM_ISA_INLINE int32_t mm_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
MM_ISA_INLINE int32_t mm_qadd(int32_t a, int32_t b)
{
    return __qadd(a, b);
}
/* lo halfword of a, hi halfword of b */
MM_ISA_INLINE int32_t mm_pkhbt(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b & 0xFFFF0000u));
}
/* hi halfword of a as lo, hi halfword of b as hi */
MM_ISA_INLINE int32_t mm_pkhtb_hi(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
/* [lo16(a), lo16(b)]: PKHBT a, b, LSL #16 */
MM_ISA_INLINE int32_t mm_pack_lo16(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* [hi16(a), hi16(b)]: PKHTB b, a, ASR #16 */
MM_ISA_INLINE int32_t mm_pack_hi16(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* saturate to int8 / int16 (SSAT) */
MM_ISA_INLINE int32_t mm_ssat8(int32_t x)
{
    return __ssat(x, 8);
}
MM_ISA_INLINE int32_t mm_ssat16(int32_t x)
{
    return __ssat(x, 16);
}
/* the low bytes of b0..b3 as one word, b0 lowest (BFI: GCC builds it with shifts and ORs) */
MM_ISA_INLINE uint32_t mm_pack_s8x4(int32_t b0, int32_t b1, int32_t b2, int32_t b3)
{
    uint32_t v = (uint32_t)b0 & 0xFFu;
    __asm__("bfi %0, %1, #8, #8" : "+r"(v) : "r"(b1));
    __asm__("bfi %0, %1, #16, #8" : "+r"(v) : "r"(b2));
    __asm__("bfi %0, %1, #24, #8" : "+r"(v) : "r"(b3));
    return v;
}
/* byte-wise max(v, lo) then min(v, hi) on four signed bytes (SSUB8 / SEL) */
MM_ISA_INLINE uint32_t mm_clamp_s8x4(uint32_t v, uint32_t lo, uint32_t hi)
{
    uint32_t t;
    __asm__("ssub8 %1, %0, %2\n\tsel %0, %0, %2\n\tssub8 %1, %3, %0\n\tsel %0, %0, %3"
            : "+r"(v), "=&r"(t)
            : "r"(lo), "r"(hi)
            : "cc");
    return v;
}
#else /* exact plain-C models of the instructions, for the host simulator */
MM_ISA_INLINE int32_t mm_halves(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}
MM_ISA_INLINE int32_t mm_lo16(int32_t x)
{
    return (int16_t)(uint16_t)((uint32_t)x & 0xFFFFu);
}
MM_ISA_INLINE int32_t mm_hi16(int32_t x)
{
    return (int16_t)(uint16_t)((uint32_t)x >> 16);
}
MM_ISA_INLINE int32_t mm_sxtb16(int32_t x)
{
    return mm_halves((int8_t)(uint8_t)((uint32_t)x & 0xFF), (int8_t)(uint8_t)(((uint32_t)x >> 16) & 0xFF));
}
MM_ISA_INLINE int32_t mm_sxtb16_ror8(int32_t x)
{
    return mm_sxtb16((int32_t)mm_ror((uint32_t)x, 8));
}
MM_ISA_INLINE int32_t mm_sxtab16(int32_t a, int32_t x)
{
    const int32_t e = mm_sxtb16(x);
    return mm_halves(mm_lo16(a) + mm_lo16(e), mm_hi16(a) + mm_hi16(e));
}
MM_ISA_INLINE int32_t mm_sxtab16_ror8(int32_t a, int32_t x)
{
    return mm_sxtab16(a, (int32_t)mm_ror((uint32_t)x, 8));
}
MM_ISA_INLINE int32_t mm_smlad(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_lo16(b)) +
                     (uint32_t)(mm_hi16(a) * mm_hi16(b)));
}
MM_ISA_INLINE int32_t mm_smladx(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_hi16(b)) +
                     (uint32_t)(mm_hi16(a) * mm_lo16(b)));
}
MM_ISA_INLINE int64_t mm_smlald(int32_t a, int32_t b, int64_t acc)
{
    return acc + (int64_t)(mm_lo16(a) * mm_lo16(b)) + (int64_t)(mm_hi16(a) * mm_hi16(b));
}
MM_ISA_INLINE int32_t mm_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_lo16(b)));
}
MM_ISA_INLINE int32_t mm_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_hi16(a) * mm_hi16(b)));
}
MM_ISA_INLINE int32_t mm_sadd16(int32_t a, int32_t b)
{
    return mm_halves(mm_lo16(a) + mm_lo16(b), mm_hi16(a) + mm_hi16(b));
}
MM_ISA_INLINE int32_t mm_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
}
MM_ISA_INLINE int32_t mm_smmlar(int32_t a, int32_t b, int32_t acc)
{
    const uint64_t s = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * b) + 0x80000000u;
    return (int32_t)(uint32_t)(s >> 32);
}
MM_ISA_INLINE int32_t mm_qadd(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}
MM_ISA_INLINE int32_t mm_pkhbt(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b & 0xFFFF0000u));
}
MM_ISA_INLINE int32_t mm_pkhtb_hi(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
MM_ISA_INLINE int32_t mm_pack_lo16(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16));
}
MM_ISA_INLINE int32_t mm_pack_hi16(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
MM_ISA_INLINE int32_t mm_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}
MM_ISA_INLINE int32_t mm_ssat16(int32_t x)
{
    return x < -32768 ? -32768 : (x > 32767 ? 32767 : x);
}
MM_ISA_INLINE uint32_t mm_pack_s8x4(int32_t b0, int32_t b1, int32_t b2, int32_t b3)
{
    return ((uint32_t)b0 & 0xFFu) | (((uint32_t)b1 & 0xFFu) << 8) | (((uint32_t)b2 & 0xFFu) << 16) |
           ((uint32_t)b3 << 24);
}
MM_ISA_INLINE uint32_t mm_clamp_s8x4(uint32_t v, uint32_t lo, uint32_t hi)
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
#endif
#endif /* MM_HAVE_DSP */

/* ------------------------------------------------------------------------------------------
 * Microkernels: the inner loops the kernels share, and every hand-allocated assembly loop.
 * Each DSP one has its exact C model (MM_EMULATE_DSP) built from the wrappers above.
 * ---------------------------------------------------------------------------------------- */

#if MM_HAVE_DSP
/* acc + 4 MACs of one weight word w (4 int8) against two int16 pairs: xe pairs with bytes
 * 0 and 2 of w (SXTB16), xo with bytes 1 and 3 (SXTB16 ROR 8). With xe / xo the SXTB16 /
 * SXTB16 ROR 8 of an int8 input word, it is the int8 x int8 dot product of the two words;
 * with int16 inputs (x0 x1) (x2 x3) the weight bytes are stored w0 w2 w1 w3. */
MM_ISA_INLINE int32_t mm_smlad_s8x4(int32_t acc, int32_t w, int32_t xe, int32_t xo)
{
    acc = mm_smlad(mm_sxtb16(w), xe, acc);
    return mm_smlad(mm_sxtb16_ror8(w), xo, acc);
}
#endif

/* acc + x[0..n) . w[0..n), int8 x int8, wrap-around int32 (the row dot product of FULLY_CONNECTED
 * and of CONV_2D windows) */
MM_ISA_INLINE int32_t mm_dot_s8(int32_t acc, const int8_t *x, const int8_t *w, int32_t n)
{
#if MM_HAVE_MVE
    for (int32_t i = 0; i < n; i += 16) {
        const mve_pred16_t m = vctp8q((uint32_t)(n - i));
        acc = vmladavaq_s8(acc, vldrbq_z_s8(x + i, m), vldrbq_z_s8(w + i, m));
    }
    return acc;
#else
    int32_t i = 0;
#if MM_HAVE_DSP
    for (; i + 4 <= n; i += 4) {
        const int32_t xv = mm_read_s32(x + i);
        acc = mm_smlad_s8x4(acc, mm_read_s32(w + i), mm_sxtb16(xv), mm_sxtb16_ror8(xv));
    }
#endif
    for (; i < n; ++i) acc += (int32_t)x[i] * w[i];
    return acc;
#endif
}

#if MM_HAVE_DSP
/* s[0..3] += patch a . row c, a . row c+1, b . row c, b . row c+1 over `groups` groups of 4
 * (CONV_2D patches, mm_conv_gemm): a, b int16; `w` the channel pair's interleaved block
 * (word g of row c, then word g of row c+1, ...), bytes of each word stored w0 w2 w1 w3,
 * so one LDRD fetches both rows' words. */
#if MM_NATIVE_DSP
/* Hand-allocated: GCC spills this 14-register loop to the stack. 3 LDRD, 4 SXTB16,
 * 8 SMLAD and the loop branch per 16 MACs. */
MM_ISA_INLINE void mm_dot_2x2_s16(const int16_t *a, const int16_t *b, const int8_t *w, int32_t groups,
                                  int32_t *s)
{
    int32_t a00 = s[0], a01 = s[1], a10 = s[2], a11 = s[3];
    int32_t u, v, u1, v1, x0, x1;
    if (groups <= 0) return;
    __asm__ volatile("1:\n\t"
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
                     : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [pa] "+r"(a),
                       [pb] "+r"(b), [pw] "+r"(w), [n] "+r"(groups), [u] "=&r"(u), [v] "=&r"(v),
                       [u1] "=&r"(u1), [v1] "=&r"(v1), [x0] "=&r"(x0), [x1] "=&r"(x1)
                     :
                     : "cc", "memory");
    s[0] = a00;
    s[1] = a01;
    s[2] = a10;
    s[3] = a11;
}
#else
MM_ISA_INLINE void mm_dot_2x2_s16(const int16_t *a, const int16_t *b, const int8_t *w, int32_t groups,
                                  int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    for (int32_t g = 0; g < groups; ++g, a += 4, b += 4, w += 8) {
        const int32_t u = mm_read_s32(w), v = mm_read_s32(w + 4);
        const int32_t xa01 = mm_read_s32(a), xa23 = mm_read_s32(a + 2);
        const int32_t xb01 = mm_read_s32(b), xb23 = mm_read_s32(b + 2);
        s00 = mm_smlad_s8x4(s00, u, xa01, xa23);
        s01 = mm_smlad_s8x4(s01, v, xa01, xa23);
        s10 = mm_smlad_s8x4(s10, u, xb01, xb23);
        s11 = mm_smlad_s8x4(s11, v, xb01, xb23);
    }
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}
#endif

/* four accumulators by name (a struct, not an array, so that they stay in registers) */
typedef struct {
    int32_t a0, a1, a2, a3;
} mm_acc4;

/* a->a0..a3 += 4 input columns x 4 weight rows of FULLY_CONNECTED's blocked layout (the block's
 * 4 words, row by row), advancing *xp by 4 inputs and *wp by 16 bytes. int8: one input word
 * (SXTB16 / ROR 8 pairs), weights as they are; int16: two input words (pairs straight from
 * memory), weight bytes of each word stored w0 w2 w1 w3. On the device hand-scheduled: GCC
 * neither folds the ROR into SXTB16 nor keeps the 4-row loop out of the stack (2 LDRD with
 * writeback, 21 instructions per 16 MACs). */
#if MM_NATIVE_DSP
#define MM_FC_ROW2(A, B, XA, XB)                                                                             \
    "ldrd   %[w0], %[w1], [%[wp]], #8\n\t"                                                                   \
    "sxtb16 %[t], %[w0], ror #8\n\t"                                                                         \
    "sxtb16 %[w0], %[w0]\n\t"                                                                                \
    "smlad  %[" A "], %[w0], %[" XA "], %[" A "]\n\t"                                                        \
    "smlad  %[" A "], %[t], %[" XB "], %[" A "]\n\t"                                                         \
    "sxtb16 %[t], %[w1], ror #8\n\t"                                                                         \
    "sxtb16 %[w1], %[w1]\n\t"                                                                                \
    "smlad  %[" B "], %[w1], %[" XA "], %[" B "]\n\t"                                                        \
    "smlad  %[" B "], %[t], %[" XB "], %[" B "]\n\t"
MM_ISA_INLINE void mm_dot_4x1_s8(mm_acc4 *a, const int8_t **xpp, const int8_t **wpp)
{
    int32_t a0 = a->a0, a1 = a->a1, a2 = a->a2, a3 = a->a3;
    const int8_t *xp = *xpp, *wp = *wpp;
    int32_t xa, xb, w0, w1, t;
    __asm__("ldr    %[xa], [%[xp]], #4\n\t"
            "sxtb16 %[xb], %[xa], ror #8\n\t"
            "sxtb16 %[xa], %[xa]\n\t" MM_FC_ROW2("a0", "a1", "xa", "xb") MM_FC_ROW2("a2", "a3", "xa", "xb")
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp), [wp] "+r"(wp),
              [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), [t] "=&r"(t)
            :
            : "memory");
    a->a0 = a0;
    a->a1 = a1;
    a->a2 = a2;
    a->a3 = a3;
    *xpp = xp;
    *wpp = wp;
}
MM_ISA_INLINE void mm_dot_4x1_s16(mm_acc4 *a, const int16_t **xpp, const int8_t **wpp)
{
    int32_t a0 = a->a0, a1 = a->a1, a2 = a->a2, a3 = a->a3;
    const int16_t *xp = *xpp;
    const int8_t *wp = *wpp;
    int32_t xa, xb, w0, w1, t;
    __asm__("ldr    %[xa], [%[xp]], #4\n\t"
            "ldr    %[xb], [%[xp]], #4\n\t" MM_FC_ROW2("a0", "a1", "xa", "xb")
                MM_FC_ROW2("a2", "a3", "xa", "xb")
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp), [wp] "+r"(wp),
              [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), [t] "=&r"(t)
            :
            : "memory");
    a->a0 = a0;
    a->a1 = a1;
    a->a2 = a2;
    a->a3 = a3;
    *xpp = xp;
    *wpp = wp;
}
#undef MM_FC_ROW2
#else
MM_ISA_INLINE void mm_dot_4x1_s8(mm_acc4 *a, const int8_t **xpp, const int8_t **wpp)
{
    const int32_t xv = mm_read_s32(*xpp);
    const int32_t xe = mm_sxtb16(xv), xo = mm_sxtb16_ror8(xv);
    const int8_t *wp = *wpp;
    a->a0 = mm_smlad_s8x4(a->a0, mm_read_s32(wp), xe, xo);
    a->a1 = mm_smlad_s8x4(a->a1, mm_read_s32(wp + 4), xe, xo);
    a->a2 = mm_smlad_s8x4(a->a2, mm_read_s32(wp + 8), xe, xo);
    a->a3 = mm_smlad_s8x4(a->a3, mm_read_s32(wp + 12), xe, xo);
    *xpp += 4;
    *wpp += 16;
}
MM_ISA_INLINE void mm_dot_4x1_s16(mm_acc4 *a, const int16_t **xpp, const int8_t **wpp)
{
    const int32_t x01 = mm_read_s32(*xpp), x23 = mm_read_s32(*xpp + 2);
    const int8_t *wp = *wpp;
    a->a0 = mm_smlad_s8x4(a->a0, mm_read_s32(wp), x01, x23);
    a->a1 = mm_smlad_s8x4(a->a1, mm_read_s32(wp + 4), x01, x23);
    a->a2 = mm_smlad_s8x4(a->a2, mm_read_s32(wp + 8), x01, x23);
    a->a3 = mm_smlad_s8x4(a->a3, mm_read_s32(wp + 12), x01, x23);
    *xpp += 4;
    *wpp += 16;
}
#endif

/* One filter row of DEPTHWISE_CONV_2D 3x3 (mm_depthwise_conv_3x3) for 4 channels: x0, x1, x2 the
 * words of the row's three taps (4 int8 channels each), w the row's 6 words (int16 pairs, see
 * mm_depthwise_conv_3x3.h); a[0..3] += 12 MACs. */
MM_ISA_INLINE void mm_dw3_row_s8x4(int32_t *a, int32_t x0, int32_t x1, int32_t x2, const int32_t *w)
{
    const int32_t lo = mm_pack_lo16(x0, x1); /* bytes x0.0 x0.1 x1.0 x1.1 */
    const int32_t hi = mm_pack_hi16(x0, x1); /* bytes x0.2 x0.3 x1.2 x1.3 */
    a[0] = mm_smlad(mm_sxtb16(lo), w[0], a[0]);
    a[1] = mm_smlad(mm_sxtb16_ror8(lo), w[1], a[1]);
    a[2] = mm_smlad(mm_sxtb16(hi), w[2], a[2]);
    a[3] = mm_smlad(mm_sxtb16_ror8(hi), w[3], a[3]);
    const int32_t e0 = mm_sxtb16(x2), e1 = mm_sxtb16_ror8(x2);
    a[0] = mm_smlabb(e0, w[4], a[0]);
    a[2] = mm_smlatt(e0, w[4], a[2]);
    a[1] = mm_smlabb(e1, w[5], a[1]);
    a[3] = mm_smlatt(e1, w[5], a[3]);
}

/* The 3 rows (mm_dw3_row_s8x4) of 4 whole channels: the taps at tb[0..8][c..c+3], w 18 words. */
#if MM_NATIVE_DSP
#define MM_DW3_ROW_ASM(OFF)                                                                                  \
    "ldrd %[x0], %[x1], [%[tb], #" OFF "]\n\t"                                                               \
    "ldr %[x2], [%[tb], #" OFF "+8]\n\t"                                                                     \
    "ldr %[x0], [%[x0], %[c]]\n\t"                                                                           \
    "ldr %[x1], [%[x1], %[c]]\n\t"                                                                           \
    "ldr %[x2], [%[x2], %[c]]\n\t"                                                                           \
    "pkhbt %[lo], %[x0], %[x1], lsl #16\n\t"                                                                 \
    "pkhtb %[x1], %[x1], %[x0], asr #16\n\t"                                                                 \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                                                                      \
    "sxtb16 %[x0], %[lo]\n\t"                                                                                \
    "smlad %[a0], %[x0], %[wa], %[a0]\n\t"                                                                   \
    "sxtb16 %[x0], %[lo], ror #8\n\t"                                                                        \
    "smlad %[a1], %[x0], %[wb], %[a1]\n\t"                                                                   \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                                                                      \
    "sxtb16 %[x0], %[x1]\n\t"                                                                                \
    "smlad %[a2], %[x0], %[wa], %[a2]\n\t"                                                                   \
    "sxtb16 %[x0], %[x1], ror #8\n\t"                                                                        \
    "smlad %[a3], %[x0], %[wb], %[a3]\n\t"                                                                   \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"                                                                      \
    "sxtb16 %[x0], %[x2]\n\t"                                                                                \
    "smlabb %[a0], %[x0], %[wa], %[a0]\n\t"                                                                  \
    "smlatt %[a2], %[x0], %[wa], %[a2]\n\t"                                                                  \
    "sxtb16 %[x0], %[x2], ror #8\n\t"                                                                        \
    "smlabb %[a1], %[x0], %[wb], %[a1]\n\t"                                                                  \
    "smlatt %[a3], %[x0], %[wb], %[a3]\n\t"
/* register-allocated by hand: 25 instructions a row */
MM_ISA_INLINE void mm_dw3_s8x4(int32_t *a, const int8_t *const *tb, int32_t c, const int32_t *w)
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    uint32_t x0, x1, x2, lo, wa, wb;
    const int32_t *wp = w;
    __asm__(MM_DW3_ROW_ASM("0") MM_DW3_ROW_ASM("12") MM_DW3_ROW_ASM("24")
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(wp), [x0] "=&r"(x0),
              [x1] "=&r"(x1), [x2] "=&r"(x2), [lo] "=&r"(lo), [wa] "=&r"(wa), [wb] "=&r"(wb)
            : [tb] "r"(tb), [c] "r"(c)
            : "memory");
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#undef MM_DW3_ROW_ASM
#else
MM_ISA_INLINE void mm_dw3_s8x4(int32_t *a, const int8_t *const *tb, int32_t c, const int32_t *w)
{
    for (int r = 0; r < 3; ++r)
        mm_dw3_row_s8x4(a, mm_read_s32(tb[3 * r] + c), mm_read_s32(tb[3 * r + 1] + c),
                        mm_read_s32(tb[3 * r + 2] + c), w + 6 * r);
}
#endif

/* r[k] = SSAT8((SMMLAR(a[k], M[k], C[k]) + (a[k] >> 31)) >> E[k]) for 4 channels, q = M[4] C[4] E[4]
 * (the fast int8 requantization of mm_depthwise_conv_3x3.h); on the device the M / C / E pairs
 * are loaded with LDRD. */
#if MM_NATIVE_DSP
#define MM_RQ2_ASM(K)                                                                                        \
    "ldrd %[m0], %[m1], [%[q], #" K "*4]\n\t"                                                                \
    "ldrd %[r0], %[r1], [%[q], #16+" K "*4]\n\t"                                                             \
    "smmlar %[r0], %[a0], %[m0], %[r0]\n\t"                                                                  \
    "smmlar %[r1], %[a1], %[m1], %[r1]\n\t"                                                                  \
    "ldrd %[m0], %[m1], [%[q], #32+" K "*4]\n\t"                                                             \
    "add %[r0], %[r0], %[a0], asr #31\n\t"                                                                   \
    "add %[r1], %[r1], %[a1], asr #31\n\t"                                                                   \
    "asr %[r0], %[r0], %[m0]\n\t"                                                                            \
    "asr %[r1], %[r1], %[m1]\n\t"                                                                            \
    "ssat %[r0], #8, %[r0]\n\t"                                                                              \
    "ssat %[r1], #8, %[r1]\n\t"
MM_ISA_INLINE void mm_rq4_s8(int32_t *r, const int32_t *a, const int32_t *q)
{
    int32_t r0, r1, r2, r3;
    uint32_t m0, m1;
    __asm__(MM_RQ2_ASM("0")
            : [r0] "=&r"(r0), [r1] "=&r"(r1), [m0] "=&r"(m0), [m1] "=&r"(m1)
            : [a0] "r"(a[0]), [a1] "r"(a[1]), [q] "r"(q)
            : "memory");
    __asm__(MM_RQ2_ASM("2")
            : [r0] "=&r"(r2), [r1] "=&r"(r3), [m0] "=&r"(m0), [m1] "=&r"(m1)
            : [a0] "r"(a[2]), [a1] "r"(a[3]), [q] "r"(q)
            : "memory");
    r[0] = r0;
    r[1] = r1;
    r[2] = r2;
    r[3] = r3;
}
#undef MM_RQ2_ASM
#else
MM_ISA_INLINE void mm_rq4_s8(int32_t *r, const int32_t *a, const int32_t *q)
{
    for (int k = 0; k < 4; ++k) r[k] = mm_ssat8((mm_smmlar(a[k], q[k], q[4 + k]) + (a[k] >> 31)) >> q[8 + k]);
}
#endif
#endif /* MM_HAVE_DSP */

#if MM_HAVE_MVE
/* acc[0..3] += patch a . rows c..c+3, acc[4..7] += patch b . rows c..c+3, over `steps`
 * steps of 16 (CONV_2D patches, mm_conv_gemm); `w` is the quad's block (16 bytes of each of the
 * 4 rows, step by step). Hand-allocated: VMLADAVA accumulates into even registers only, and 8
 * accumulators take all of them (lr included), so the loop counts in r9 rather than with LE.
 * 2 patch loads + 4 weight loads + 8 VMLADAVA + loop per 128 MACs. */
MM_ISA_INLINE void mm_mve_dot_2x4_s8(const int8_t *a, const int8_t *b, const int8_t *w, int32_t steps,
                                     int32_t *acc)
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
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b0] "+r"(b0), [b1] "+r"(b1),
          [b2] "+r"(b2), [b3] "+r"(b3), [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), [n] "+r"(n)
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

/* int16x8 version of mm_mve_dot_2x4_s8 for the proven-range case (every sum fits int32):
 * int16 patches, int8 weights widened by the load, 8 MACs per VMLADAVA. */
MM_ISA_INLINE void mm_mve_dot_2x4_s16(const int16_t *a, const int16_t *b, const int8_t *w, int32_t steps,
                                      int32_t *acc)
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
#define MM_S16_ROW(A, B)                                                                                     \
    "vldrb.s16    q2, [%[pw]], #8\n\t"                                                                       \
    "vmladava.s16 %[" A "], q0, q2\n\t"                                                                      \
    "vmladava.s16 %[" B "], q3, q2\n\t"                                                                      \
    "vldrb.s16    q2, [%[pw]], #8\n\t"                                                                       \
    "vmladava.s16 %[" A "], q1, q2\n\t"                                                                      \
    "vmladava.s16 %[" B "], q4, q2\n\t"
    __asm__ volatile(
        "1:\n\t"
        "vldrh.16     q0, [%[pa]], #16\n\t"
        "vldrh.16     q1, [%[pa]], #16\n\t"
        "vldrh.16     q3, [%[pb]], #16\n\t"
        "vldrh.16     q4, [%[pb]], #16\n\t" MM_S16_ROW("a0", "b0") MM_S16_ROW("a1", "b1")
            MM_S16_ROW("a2", "b2") MM_S16_ROW("a3", "b3") "subs         %[n], %[n], #1\n\t"
                                                          "bne          1b\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b0] "+r"(b0), [b1] "+r"(b1),
          [b2] "+r"(b2), [b3] "+r"(b3), [pa] "+r"(pa), [pb] "+r"(pb), [pw] "+r"(pw), [n] "+r"(n)
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
#endif /* MM_HAVE_MVE */

#endif /* MM_ISA_H */
