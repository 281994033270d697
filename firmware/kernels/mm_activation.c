/* mm_activation.c - portable activation kernels. All loops run forward, one
 * element read before it is written, so the output may overlay the input. */
#include "mm_activation.h"

/* Parameters are copied to locals: stores through out (a char type) could alias *p. */
MM_INLINE int32_t relu_q(const mm_relu_params *q, int32_t x)
{
    const int32_t r = mm_requantize(x - q->input_zero_point, q->multiplier, q->shift) + q->output_zero_point;
    return mm_clamp_i32(r, q->act_min, q->act_max);
}

void mm_relu_s8(const mm_relu_params *p, const int8_t *in, int8_t *out)
{
    const mm_relu_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int8_t)relu_q(&q, in[i]);
}

void mm_relu_s16(const mm_relu_params *p, const int16_t *in, int16_t *out)
{
    const mm_relu_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int16_t)relu_q(&q, in[i]);
}

void mm_relu_f32(int32_t size, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float v = in[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

void mm_relu6_s8(const mm_relu6_params *p, const int8_t *in, int8_t *out)
{
    const int8_t lo = (int8_t)p->lo, hi = (int8_t)p->hi;
    const int32_t size = p->size;
    for (int32_t i = 0; i < size; ++i) {
        const int8_t v = in[i];
        out[i] = v > hi ? hi : (v < lo ? lo : v);
    }
}

void mm_relu6_s16(const mm_relu6_params *p, const int16_t *in, int16_t *out)
{
    const int16_t lo = (int16_t)p->lo, hi = (int16_t)p->hi;
    const int32_t size = p->size;
    for (int32_t i = 0; i < size; ++i) {
        const int16_t v = in[i];
        out[i] = v > hi ? hi : (v < lo ? lo : v);
    }
}

void mm_relu6_f32(int32_t size, const float *in, float *out)
{
    for (int32_t i = 0; i < size; ++i) {
        const float v = in[i];
        out[i] = v > 6.0f ? 6.0f : (v < 0.0f ? 0.0f : v);
    }
}

MM_INLINE int32_t leaky_q(const mm_leaky_relu_params *q, int32_t in)
{
    const int32_t x = in - q->input_zero_point;
    int32_t r = q->output_zero_point;
    if (x >= 0) {
        r += mm_requantize(x, q->multiplier_identity, q->shift_identity);
    } else {
        const int32_t s = mm_requantize(x, q->multiplier_alpha, q->shift_alpha);
        r += q->alpha_negative ? -s : s;
    }
    return r;
}

void mm_leaky_relu_s8(const mm_leaky_relu_params *p, const int8_t *in, int8_t *out)
{
    const mm_leaky_relu_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int8_t)mm_clamp_i32(leaky_q(&q, in[i]), -128, 127);
}

void mm_leaky_relu_s16(const mm_leaky_relu_params *p, const int16_t *in, int16_t *out)
{
    const mm_leaky_relu_params q = *p;
    for (int32_t i = 0; i < q.size; ++i) out[i] = (int16_t)mm_clamp_i32(leaky_q(&q, in[i]), -32768, 32767);
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
        const float relu6 = relu < 6.0f ? relu : 6.0f; /* std::min(6, ...) */
        out[i] = x * relu6 / 6.0f;
    }
}
