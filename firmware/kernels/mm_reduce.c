/* mm_reduce.c - portable MEAN kernels. */
#include "mm_reduce.h"

/* A walk over a 4-d nest of (dims, strides) in row-major order: the offset of the current
 * element, moved on by nest_next (an odometer; no statement macros, so it can be stepped). */
typedef struct {
    int32_t idx[MM_REDUCE_GROUPS];
    int32_t off;
} mm_nest;

MM_INLINE int32_t nest_count(const int32_t *dims)
{
    int32_t n = 1;
    for (int d = 0; d < MM_REDUCE_GROUPS; ++d) n *= dims[d];
    return n;
}

MM_INLINE mm_nest nest_start(void)
{
    mm_nest it = {{0, 0, 0, 0}, 0};
    return it;
}

MM_INLINE void nest_next(mm_nest *it, const int32_t *dims, const int32_t *strides)
{
    for (int d = MM_REDUCE_GROUPS - 1; d >= 0; --d) {
        it->off += strides[d];
        if (++it->idx[d] < dims[d]) return;
        it->off -= strides[d] * dims[d];
        it->idx[d] = 0;
    }
}

/* int8 / int16: the reduced elements summed in a wrapped 32-bit sum (TFLM's int32 accumulator) */
#define MM_MEAN_INT(NAME, T, LO, HI)                                                                         \
    void NAME(const mm_reduce_params *p, const T *in, T *out)                                                \
    {                                                                                                        \
        const int32_t n_keep = nest_count(p->keep_dims), n_red = nest_count(p->red_dims);                    \
        mm_nest k = nest_start();                                                                            \
        for (int32_t i = 0; i < n_keep; ++i, nest_next(&k, p->keep_dims, p->keep_strides)) {                 \
            const T *base = in + k.off;                                                                      \
            uint32_t sum = 0;                                                                                \
            mm_nest r = nest_start();                                                                        \
            for (int32_t j = 0; j < n_red; ++j, nest_next(&r, p->red_dims, p->red_strides))                  \
                sum += (uint32_t)(int32_t)base[r.off];                                                       \
            const int32_t shifted = (int32_t)(sum - (uint32_t)p->zp_times_count);                            \
            const int32_t v = mm_requantize(shifted, p->multiplier, p->shift) + p->output_zp;                \
            *out++ = (T)mm_clamp_i32(v, LO, HI);                                                             \
        }                                                                                                    \
    }

MM_MEAN_INT(mm_mean_s8, int8_t, -128, 127)
MM_MEAN_INT(mm_mean_s16, int16_t, -32768, 32767)

void mm_mean_f32(const mm_reduce_params *p, const float *in, float *out)
{
    const float count = (float)p->count;
    const int32_t n_keep = nest_count(p->keep_dims), n_red = nest_count(p->red_dims);
    mm_nest k = nest_start();
    for (int32_t i = 0; i < n_keep; ++i, nest_next(&k, p->keep_dims, p->keep_strides)) {
        const float *base = in + k.off;
        float sum = 0.0f;
        mm_nest r = nest_start();
        for (int32_t j = 0; j < n_red; ++j, nest_next(&r, p->red_dims, p->red_strides)) sum += base[r.off];
        *out++ = sum / count;
    }
}
