/* mm_math.h - fixed-point helpers shared by every portable kernel.
 *
 * The rounding here decides bit-exactness against the TFLite Micro reference
 * kernels: a saturating rounding doubling high multiply followed by a
 * rounding divide by a power of two ("double rounding", the TFLM default),
 * or a single 64-bit rounding step when MM_SINGLE_ROUNDING is 1.
 */
#ifndef MM_MATH_H
#define MM_MATH_H

#include <stdint.h>
#include <stddef.h>

#ifndef MM_SINGLE_ROUNDING
#define MM_SINGLE_ROUNDING 0
#endif

#if defined(__GNUC__)
#define MM_INLINE static inline __attribute__((always_inline))
#else
#define MM_INLINE static inline
#endif

/* MM_FN(name) is name_<MM_SFX>: the function names of a kernel body written once and
 * included once per type (mm_conv.inc, mm_depthwise_conv.inc, mm_transpose_conv.inc). */
#define MM_CAT_(a, b) a##_##b
#define MM_CAT(a, b)  MM_CAT_(a, b)
#define MM_FN(name)   MM_CAT(name, MM_SFX)

MM_INLINE int32_t mm_min_i32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}
MM_INLINE int32_t mm_max_i32(int32_t a, int32_t b)
{
    return a > b ? a : b;
}
MM_INLINE int32_t mm_clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: (a*b*2 + 2^31) >> 32 with
 * rounding half away from zero and saturation of INT32_MIN*INT32_MIN. */
MM_INLINE int32_t mm_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    int64_t r = ab + nudge;
    /* division truncating toward zero, as in gemmlowp */
    return (int32_t)(r >= 0 ? (r >> 31) : -((-r) >> 31));
}

/* gemmlowp RoundingDivideByPOT: round half away from zero. */
MM_INLINE int32_t mm_rounding_divide_by_pot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier(int32, ...): x * m * 2^shift. */
MM_INLINE int32_t mm_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
#if MM_SINGLE_ROUNDING
    const int64_t total_shift = 31 - shift;
    const int64_t round = (int64_t)1 << (total_shift - 1);
    return (int32_t)(((int64_t)x * multiplier + round) >> total_shift);
#else
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    return mm_rounding_divide_by_pot(
        mm_sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left_shift), multiplier), right_shift);
#endif
}

/* TFLM MultiplyByQuantizedMultiplier(int64, ...), used by int16x8 kernels:
 * the multiplier is reduced to 16 bits and applied in one rounding step. */
MM_INLINE int32_t mm_requantize_s64(int64_t x, int32_t multiplier, int32_t shift)
{
    const int32_t reduced = multiplier < 0x7FFF0000 ? ((multiplier + (1 << 15)) >> 16) : 0x7FFF;
    /* TFLM shifts by 15 - shift unchecked (release builds): a layer with shift >= 16
     * makes the count zero or negative, undefined in C++. The reference build (x86)
     * masks 64-bit shift counts to 6 bits; so do we, on every target, defined. */
    const int total_shift = (15 - shift) & 63;
    const uint64_t round = (uint64_t)1 << ((total_shift - 1) & 63);
    /* TFLM assumes |x| < 2^47; a larger x (a huge bias) overflows its int64 x * m, which
     * the reference build computes modulo 2^64. The product and the rounding add are done
     * in uint64_t here: the same bits, and no signed overflow (undefined in C) for any x. */
    const uint64_t r = (uint64_t)x * (uint64_t)(int64_t)reduced + round;
    return (int32_t)((int64_t)r >> total_shift);
}

/* TFLM MultiplyByQuantizedMultiplierSmallerThanOneExp (double rounding). */
MM_INLINE int32_t mm_requantize_lt1(int32_t x, int32_t multiplier, int32_t left_shift)
{
#if MM_SINGLE_ROUNDING
    return mm_requantize(x, multiplier, left_shift);
#else
    return mm_rounding_divide_by_pot(mm_sat_rounding_doubling_high_mul(x, multiplier), -left_shift);
#endif
}

/* TFLM MultiplyByQuantizedMultiplierGreaterThanOne (double rounding). */
MM_INLINE int32_t mm_requantize_gt1(int32_t x, int32_t multiplier, int32_t left_shift)
{
#if MM_SINGLE_ROUNDING
    return mm_requantize(x, multiplier, left_shift);
#else
    return mm_sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left_shift), multiplier);
#endif
}

MM_INLINE int8_t mm_sat_s8(int32_t v)
{
    return (int8_t)mm_clamp_i32(v, -128, 127);
}
MM_INLINE int16_t mm_sat_s16(int32_t v)
{
    return (int16_t)mm_clamp_i32(v, -32768, 32767);
}

#endif /* MM_MATH_H */
