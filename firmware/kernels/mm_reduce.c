/* mm_reduce.c - portable MEAN kernels. */
#include "mm_reduce.h"

#define MM_FOR_KEEP(p)                                                          \
    for (int32_t k0 = 0; k0 < p->keep_dims[0]; ++k0)                            \
    for (int32_t k1 = 0; k1 < p->keep_dims[1]; ++k1)                            \
    for (int32_t k2 = 0; k2 < p->keep_dims[2]; ++k2)                            \
    for (int32_t k3 = 0; k3 < p->keep_dims[3]; ++k3)

#define MM_KEEP_OFFSET(p) \
    (k0 * p->keep_strides[0] + k1 * p->keep_strides[1] + k2 * p->keep_strides[2] + k3 * p->keep_strides[3])

#define MM_FOR_RED(p)                                                           \
    for (int32_t r0 = 0; r0 < p->red_dims[0]; ++r0)                             \
    for (int32_t r1 = 0; r1 < p->red_dims[1]; ++r1)                             \
    for (int32_t r2 = 0; r2 < p->red_dims[2]; ++r2)                             \
    for (int32_t r3 = 0; r3 < p->red_dims[3]; ++r3)

#define MM_RED_OFFSET(p) \
    (r0 * p->red_strides[0] + r1 * p->red_strides[1] + r2 * p->red_strides[2] + r3 * p->red_strides[3])

#define MM_MEAN_INT(NAME, T, LO, HI)                                            \
void NAME(const mm_reduce_params *p, const T *in, T *out)                       \
{                                                                               \
    MM_FOR_KEEP(p) {                                                            \
        const T *base = in + MM_KEEP_OFFSET(p);                                 \
        uint32_t sum = 0;                                                       \
        MM_FOR_RED(p) { sum += (uint32_t)(int32_t)base[MM_RED_OFFSET(p)]; }     \
        const int32_t shifted = (int32_t)(sum - (uint32_t)p->zp_times_count);   \
        const int32_t r = mm_requantize(shifted, p->multiplier, p->shift) + p->output_zp; \
        *out++ = (T)mm_clamp_i32(r, LO, HI);                                    \
    }                                                                           \
}

MM_MEAN_INT(mm_mean_s8, int8_t, -128, 127)
MM_MEAN_INT(mm_mean_s16, int16_t, -32768, 32767)

void mm_mean_f32(const mm_reduce_params *p, const float *in, float *out)
{
    const float count = (float)p->count;
    MM_FOR_KEEP(p) {
        const float *base = in + MM_KEEP_OFFSET(p);
        float sum = 0.0f;
        MM_FOR_RED(p) { sum += base[MM_RED_OFFSET(p)]; }
        *out++ = sum / count;
    }
}
