/* mm_softmax.c - portable SOFTMAX kernels. */
#include <float.h>
#include <math.h>
#include "mm_softmax.h"

static int mm_clz32(uint32_t x)
{
#if defined(__GNUC__)
    return x ? __builtin_clz(x) : 32;
#else
    int n = 0;
    if (!x) return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
#endif
}

/* gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent. */
MM_INLINE int32_t mm_sat_shl(int32_t x, int e)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in, Q0.31 out (Newton-Raphson, 3 steps). */
static int32_t mm_one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x =
        1515870810 + mm_sat_rounding_doubling_high_mul(half, -1010580540); /* 48/17 - 32/17 d, Q2.29 */
    for (int i = 0; i < 3; ++i) {
        const int32_t err = (1 << 29) - mm_sat_rounding_doubling_high_mul(half, x);
        x = x + mm_sat_shl(mm_sat_rounding_doubling_high_mul(x, err), 2);
    }
    return mm_sat_shl(x, 1);
}

#define MM_SOFTMAX_INT8(NAME, OUT_T, OUT_MIN, OUT_MAX, OUT_BITS)                                             \
    void NAME(const mm_softmax_params *p, const int8_t *in, OUT_T *out)                                      \
    {                                                                                                        \
        const int32_t depth = p->depth;                                                                      \
        const int32_t *table = p->exp_table;                                                                 \
        for (int32_t i = 0; i < p->outer; ++i, in += depth, out += depth) {                                  \
            int32_t max = -128;                                                                              \
            for (int32_t c = 0; c < depth; ++c) max = in[c] > max ? in[c] : max;                             \
            int32_t sum = 0; /* Q12.19 */                                                                    \
            for (int32_t c = 0; c < depth; ++c) {                                                            \
                const int32_t diff = in[c] - max;                                                            \
                if (diff >= p->diff_min) sum += mm_rounding_divide_by_pot(table[-diff], 12);                 \
            }                                                                                                \
            const int headroom = mm_clz32((uint32_t)sum);                                                    \
            const int32_t scale =                                                                            \
                mm_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));                \
            const int exponent = 12 - headroom + 31 - (OUT_BITS);                                            \
            for (int32_t c = 0; c < depth; ++c) {                                                            \
                const int32_t diff = in[c] - max;                                                            \
                int32_t r = OUT_MIN;                                                                         \
                if (diff >= p->diff_min) {                                                                   \
                    r = mm_rounding_divide_by_pot(mm_sat_rounding_doubling_high_mul(scale, table[-diff]),    \
                                                  exponent) +                                                \
                        (OUT_MIN);                                                                           \
                    r = mm_clamp_i32(r, OUT_MIN, OUT_MAX);                                                   \
                }                                                                                            \
                out[c] = (OUT_T)r;                                                                           \
            }                                                                                                \
        }                                                                                                    \
    }

MM_SOFTMAX_INT8(mm_softmax_s8, int8_t, -128, 127, 8)
MM_SOFTMAX_INT8(mm_softmax_s8_s16, int16_t, -32768, 32767, 16)

/* TFLM int16 LUT lookup: 512 segments selected by the top 9 bits, linear
 * interpolation with the low 7 bits. */
MM_INLINE int16_t mm_lut16(int16_t v, const int16_t *lut)
{
    const uint16_t index = (uint16_t)(256 + (v >> 7));
    const int16_t offset = (int16_t)(v & 0x7F);
    const int16_t base = lut[index];
    const int16_t slope = (int16_t)(lut[index + 1] - lut[index]);
    const int32_t delta = ((int32_t)slope * offset + 64) >> 7;
    return (int16_t)(base + delta);
}

void mm_softmax_s16(const mm_softmax_params *p, const int16_t *in, int16_t *out)
{
    const int32_t depth = p->depth;
    for (int32_t i = 0; i < p->outer; ++i, in += depth, out += depth) {
        int32_t max = -32768;
        for (int32_t c = 0; c < depth; ++c) max = in[c] > max ? in[c] : max;
        /* exp(x - max) in Q0.15, kept in the output row until the sum is known */
        int32_t sum = 0;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t scaled = mm_requantize(in[c] - max, p->input_multiplier, p->input_shift);
            const int16_t e = mm_lut16(mm_sat_s16(scaled + 32767), p->exp_lut);
            out[c] = e;
            sum += e;
        }
        const int headroom = mm_clz32((uint32_t)sum);
        const int32_t shifted = (int32_t)((((int64_t)sum << (headroom - 1)) + (1 << 13)) >> 14);
        const int16_t recip = mm_lut16(mm_sat_s16(shifted - ((1 << 15) + (1 << 16))), p->recip_lut);
        const int right_shift = 31 - headroom;
        const int64_t round = (int64_t)1 << (right_shift - 1);
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t r = (int32_t)(((int64_t)out[c] * recip + round) >> right_shift);
            out[c] = (int16_t)mm_clamp_i32(r, 0, 32767);
        }
    }
}

void mm_softmax_f32(const mm_softmax_params *p, const float *in, float *out)
{
    const int32_t depth = p->depth;
    const float beta = p->beta;
    for (int32_t i = 0; i < p->outer; ++i, in += depth, out += depth) {
        float max = -FLT_MAX;
        for (int32_t c = 0; c < depth; ++c) max = max < in[c] ? in[c] : max;
        float sum = 0.0f;
        for (int32_t c = 0; c < depth; ++c) {
            const float e = expf((in[c] - max) * beta);
            out[c] = e;
            sum += e;
        }
        for (int32_t c = 0; c < depth; ++c) out[c] = out[c] / sum;
    }
}
