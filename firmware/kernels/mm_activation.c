/* mm_activation.c - portable activation kernels. All loops run forward, one
 * element read before it is written, so the output may overlay the input. */
#include "mm_activation.h"

/* Parameters are copied to locals: stores through out (a char type) could alias *p. */
#define MM_RELU_BODY(T)                                                                   \
    const mm_relu_params q = *p;                                                          \
    for (int32_t i = 0; i < q.size; ++i) {                                               \
        const int32_t r = mm_requantize((int32_t)in[i] - q.input_zero_point,             \
                                        q.multiplier, q.shift) + q.output_zero_point;    \
        out[i] = (T)mm_clamp_i32(r, q.act_min, q.act_max);                               \
    }

void mm_relu_s8(const mm_relu_params *p, const int8_t *in, int8_t *out) { MM_RELU_BODY(int8_t) }
void mm_relu_s16(const mm_relu_params *p, const int16_t *in, int16_t *out) { MM_RELU_BODY(int16_t) }

void mm_relu_f32(int32_t size, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float v = in[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

#define MM_RELU6_BODY(T)                                                                  \
    const T lo = (T)p->lo, hi = (T)p->hi;                                                 \
    const int32_t size = p->size;                                                         \
    for (int32_t i = 0; i < size; ++i) {                                                  \
        const T v = in[i];                                                                \
        out[i] = v > hi ? hi : (v < lo ? lo : v);                                         \
    }

void mm_relu6_s8(const mm_relu6_params *p, const int8_t *in, int8_t *out) { MM_RELU6_BODY(int8_t) }
void mm_relu6_s16(const mm_relu6_params *p, const int16_t *in, int16_t *out) { MM_RELU6_BODY(int16_t) }

void mm_relu6_f32(int32_t size, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float v = in[i];
        out[i] = v > 6.0f ? 6.0f : (v < 0.0f ? 0.0f : v);
    }
}

#define MM_LEAKY_BODY(T, LO, HI)                                                          \
    const mm_leaky_relu_params q = *p;                                                    \
    for (int32_t i = 0; i < q.size; ++i) {                                               \
        const int32_t x = (int32_t)in[i] - q.input_zero_point;                           \
        int32_t r = q.output_zero_point;                                                  \
        if (x >= 0) {                                                                     \
            r += mm_requantize(x, q.multiplier_identity, q.shift_identity);              \
        } else {                                                                          \
            const int32_t s = mm_requantize(x, q.multiplier_alpha, q.shift_alpha);       \
            r += q.alpha_negative ? -s : s;                                               \
        }                                                                                 \
        out[i] = (T)mm_clamp_i32(r, LO, HI);                                              \
    }

void mm_leaky_relu_s8(const mm_leaky_relu_params *p, const int8_t *in, int8_t *out)
{
    MM_LEAKY_BODY(int8_t, -128, 127)
}

void mm_leaky_relu_s16(const mm_leaky_relu_params *p, const int16_t *in, int16_t *out)
{
    MM_LEAKY_BODY(int16_t, -32768, 32767)
}

void mm_leaky_relu_f32(int32_t size, float alpha, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float v = in[i];
        out[i] = v > 0.0f ? v : v * alpha;
    }
}

void mm_hard_swish_s8(const mm_lut_s8_params *p, const int8_t *in, int8_t *out)
{
    const int8_t *lut = p->lut;
    const int32_t size = p->size;
    for (int32_t i = 0; i < size; ++i) out[i] = lut[(uint8_t)in[i]];
}

void mm_hard_swish_f32(int32_t size, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float x = in[i];
        const float t = x + 3.0f;
        const float relu = 0.0f < t ? t : 0.0f;        /* std::max(0, x + 3) */
        const float relu6 = relu < 6.0f ? relu : 6.0f;  /* std::min(6, ...) */
        out[i] = x * relu6 / 6.0f;
    }
}
