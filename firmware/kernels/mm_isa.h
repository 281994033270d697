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
#define MM_ISA_DSP 1
#define MM_ISA_MVE 2

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define MM_HAVE_MVE 1
#include <arm_mve.h>
#else
#define MM_HAVE_MVE 0
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MM_HAVE_DSP 1
#define MM_NATIVE_DSP 1
#include <arm_acle.h>
#elif defined(MM_EMULATE_DSP) && MM_EMULATE_DSP
#define MM_HAVE_DSP 1
#define MM_NATIVE_DSP 0
#else
#define MM_HAVE_DSP 0
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
MM_ISA_INLINE int32_t mm_read_s32(const void *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
MM_ISA_INLINE void mm_write_s32(void *p, int32_t v) { __builtin_memcpy(p, &v, 4); }

MM_ISA_INLINE uint32_t mm_ror(uint32_t x, unsigned r) { return (x >> r) | (x << ((32u - r) & 31u)); }

#if MM_HAVE_DSP
#if MM_NATIVE_DSP
/* [b0, b2] of four signed bytes, sign-extended to two halfwords */
MM_ISA_INLINE int32_t mm_sxtb16(int32_t x) { return __sxtb16(x); }
/* [b1, b3] */
/* GCC does not fold a rotate into SXTB16's ROR field: say it in assembly (one instruction). */
MM_ISA_INLINE int32_t mm_sxtb16_ror8(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* a + [b0, b2] halfword-wise */
MM_ISA_INLINE int32_t mm_sxtab16(int32_t a, int32_t x) { return __sxtab16(a, x); }
MM_ISA_INLINE int32_t mm_sxtab16_ror8(int32_t a, int32_t x) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
/* acc + a.lo*b.lo + a.hi*b.hi */
MM_ISA_INLINE int32_t mm_smlad(int32_t a, int32_t b, int32_t acc) { return __smlad(a, b, acc); }
/* acc + a.lo*b.hi + a.hi*b.lo */
MM_ISA_INLINE int32_t mm_smladx(int32_t a, int32_t b, int32_t acc) { return __smladx(a, b, acc); }
MM_ISA_INLINE int64_t mm_smlald(int32_t a, int32_t b, int64_t acc) { return __smlald(a, b, acc); }
MM_ISA_INLINE int32_t mm_smlabb(int32_t a, int32_t b, int32_t acc) { return __smlabb(a, b, acc); }
MM_ISA_INLINE int32_t mm_smlatt(int32_t a, int32_t b, int32_t acc) { return __smlatt(a, b, acc); }
/* halfword-wise a + b (modulo) */
MM_ISA_INLINE int32_t mm_sadd16(int32_t a, int32_t b) { return __sadd16(a, b); }
/* (a*b + 2^31) >> 32: the rounded high word (no ACLE intrinsic) */
MM_ISA_INLINE int32_t mm_smmulr(int32_t a, int32_t b) {
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
/* acc + (a*b + 2^31) >> 32: the rounded high word (no ACLE intrinsic) */
MM_ISA_INLINE int32_t mm_smmlar(int32_t a, int32_t b, int32_t acc) {
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
MM_ISA_INLINE int32_t mm_qadd(int32_t a, int32_t b) { return __qadd(a, b); }
/* lo halfword of a, hi halfword of b */
MM_ISA_INLINE int32_t mm_pkhbt(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b & 0xFFFF0000u));
}
/* hi halfword of a as lo, hi halfword of b as hi */
MM_ISA_INLINE int32_t mm_pkhtb_hi(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
#else  /* exact plain-C models of the instructions, for the host simulator */
MM_ISA_INLINE int32_t mm_halves(int32_t lo, int32_t hi) {
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}
MM_ISA_INLINE int32_t mm_lo16(int32_t x) { return (int16_t)(uint16_t)((uint32_t)x & 0xFFFFu); }
MM_ISA_INLINE int32_t mm_hi16(int32_t x) { return (int16_t)(uint16_t)((uint32_t)x >> 16); }
MM_ISA_INLINE int32_t mm_sxtb16(int32_t x) {
    return mm_halves((int8_t)(uint8_t)((uint32_t)x & 0xFF), (int8_t)(uint8_t)(((uint32_t)x >> 16) & 0xFF));
}
MM_ISA_INLINE int32_t mm_sxtb16_ror8(int32_t x) { return mm_sxtb16((int32_t)mm_ror((uint32_t)x, 8)); }
MM_ISA_INLINE int32_t mm_sxtab16(int32_t a, int32_t x) {
    const int32_t e = mm_sxtb16(x);
    return mm_halves(mm_lo16(a) + mm_lo16(e), mm_hi16(a) + mm_hi16(e));
}
MM_ISA_INLINE int32_t mm_sxtab16_ror8(int32_t a, int32_t x) { return mm_sxtab16(a, (int32_t)mm_ror((uint32_t)x, 8)); }
MM_ISA_INLINE int32_t mm_smlad(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_lo16(b)) + (uint32_t)(mm_hi16(a) * mm_hi16(b)));
}
MM_ISA_INLINE int32_t mm_smladx(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_hi16(b)) + (uint32_t)(mm_hi16(a) * mm_lo16(b)));
}
MM_ISA_INLINE int64_t mm_smlald(int32_t a, int32_t b, int64_t acc) {
    return acc + (int64_t)(mm_lo16(a) * mm_lo16(b)) + (int64_t)(mm_hi16(a) * mm_hi16(b));
}
MM_ISA_INLINE int32_t mm_smlabb(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_lo16(a) * mm_lo16(b)));
}
MM_ISA_INLINE int32_t mm_smlatt(int32_t a, int32_t b, int32_t acc) {
    return (int32_t)((uint32_t)acc + (uint32_t)(mm_hi16(a) * mm_hi16(b)));
}
MM_ISA_INLINE int32_t mm_sadd16(int32_t a, int32_t b) {
    return mm_halves(mm_lo16(a) + mm_lo16(b), mm_hi16(a) + mm_hi16(b));
}
MM_ISA_INLINE int32_t mm_smmulr(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
}
MM_ISA_INLINE int32_t mm_smmlar(int32_t a, int32_t b, int32_t acc) {
    const uint64_t s = ((uint64_t)(uint32_t)acc << 32) + (uint64_t)((int64_t)a * b) + 0x80000000u;
    return (int32_t)(uint32_t)(s >> 32);
}
MM_ISA_INLINE int32_t mm_qadd(int32_t a, int32_t b) {
    const int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}
MM_ISA_INLINE int32_t mm_pkhbt(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b & 0xFFFF0000u));
}
MM_ISA_INLINE int32_t mm_pkhtb_hi(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}
#endif
#endif /* MM_HAVE_DSP */

#endif /* MM_ISA_H */
